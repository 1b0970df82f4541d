#include "state/db.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "core/util.h"

#define DB_FILE "state.db"
#define DB_BUSY_TIMEOUT_MS 5000

typedef struct stmt_entry {
        char *sql;
        sqlite3_stmt *stmt;
        struct stmt_entry *next;
} stmt_entry;

struct db {
        sqlite3 *sql;
        stmt_entry *stmts;
        bool in_tx;
        char errmsg[256];
};

/* Schema migrations: migrations[i] takes user_version i to i + 1. Append
 * only; never edit a released entry. */
static const char *const migrations[DB_SCHEMA_VERSION] = {
        /* 0 -> 1: commands, outbox, kv */
        "CREATE TABLE commands ("
        "  message_id TEXT PRIMARY KEY NOT NULL,"
        "  type TEXT NOT NULL,"
        "  payload TEXT NOT NULL,"
        "  state INTEGER NOT NULL CHECK (state IN (0, 1, 2)),"
        "  result TEXT,"
        "  received_at INTEGER NOT NULL,"
        "  finished_at INTEGER"
        ");"
        "CREATE INDEX commands_state ON commands (state, finished_at);"
        "CREATE TABLE outbox ("
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  type TEXT NOT NULL,"
        "  json TEXT NOT NULL,"
        "  created_at INTEGER NOT NULL"
        ");"
        "CREATE TABLE kv ("
        "  key TEXT PRIMARY KEY NOT NULL,"
        "  value TEXT NOT NULL,"
        "  updated_at INTEGER NOT NULL"
        ");",
        /* 1 -> 2: deployments, models */
        "CREATE TABLE deployments ("
        "  id TEXT PRIMARY KEY NOT NULL,"
        "  spec TEXT NOT NULL,"
        "  container_id TEXT,"
        "  status TEXT NOT NULL,"
        "  updated_at INTEGER NOT NULL"
        ");"
        "CREATE TABLE models ("
        "  id TEXT PRIMARY KEY NOT NULL,"
        "  path TEXT,"
        "  manifest TEXT,"
        "  state TEXT NOT NULL,"
        "  updated_at INTEGER NOT NULL"
        ");",
};

/* ---- errors ---- */

static int errno_of(int rc, int sys_errno) {
        switch (rc & 0xff) {
        case SQLITE_OK:
        case SQLITE_ROW:
        case SQLITE_DONE:
                return 0;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_READONLY:
                return -EROFS;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
                return -EBADMSG;
        case SQLITE_CANTOPEN:
                return sys_errno > 0 ? -sys_errno : -EACCES;
        case SQLITE_CONSTRAINT:
                return -EEXIST;
        case SQLITE_TOOBIG:
                return -E2BIG;
        case SQLITE_PERM:
        case SQLITE_AUTH:
                return -EPERM;
        case SQLITE_MISMATCH:
        case SQLITE_RANGE:
        case SQLITE_MISUSE:
                return -EINVAL;
        case SQLITE_INTERRUPT:
                return -EINTR;
        default:
                return -EIO;
        }
}

int db_error(db *d, int sqlite_rc) {
        int r = errno_of(sqlite_rc, d && d->sql ? sqlite3_system_errno(d->sql) : 0);

        if (r < 0 && d)
                snprintf(d->errmsg, sizeof d->errmsg, "%s",
                         d->sql ? sqlite3_errmsg(d->sql) : sqlite3_errstr(sqlite_rc));
        return r;
}

const char *db_errmsg(const db *d) {
        return d ? d->errmsg : "";
}

sqlite3 *db_sqlite(db *d) {
        return d->sql;
}

static int fail(db *d, int r, const char *msg) {
        snprintf(d->errmsg, sizeof d->errmsg, "%s", msg);
        return r;
}

/* ---- statements ---- */

int db_stmt(db *d, const char *sql, sqlite3_stmt **ret_stmt) {
        stmt_entry *e, **prev;
        int rc;

        /* Looked up by content (callers may build SQL in reused buffers);
         * the entry found moves to the front, so hot statements are cheap. */
        for (prev = &d->stmts; (e = *prev); prev = &e->next) {
                if (strcmp(e->sql, sql) == 0) {
                        *prev = e->next;
                        e->next = d->stmts;
                        d->stmts = e;
                        sqlite3_reset(e->stmt);
                        sqlite3_clear_bindings(e->stmt);
                        *ret_stmt = e->stmt;
                        return 0;
                }
        }
        e = calloc(1, sizeof *e);
        if (!e)
                return fail(d, -ENOMEM, "out of memory");
        e->sql = strdup(sql);
        if (!e->sql) {
                free(e);
                return fail(d, -ENOMEM, "out of memory");
        }
        rc = sqlite3_prepare_v3(d->sql, sql, -1, SQLITE_PREPARE_PERSISTENT, &e->stmt, NULL);
        if (rc != SQLITE_OK || !e->stmt) {
                int r = rc != SQLITE_OK ? db_error(d, rc) : fail(d, -EINVAL, "empty statement");
                free(e->sql);
                free(e);
                return r;
        }
        e->next = d->stmts;
        d->stmts = e;
        *ret_stmt = e->stmt;
        return 0;
}

/* Steps a statement that returns no rows, then resets it. */
static int step_done(db *d, sqlite3_stmt *s) {
        int rc = sqlite3_step(s);
        int r = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : db_error(d, rc);

        sqlite3_reset(s);
        return r;
}

static int bind_text(db *d, sqlite3_stmt *s, int idx, const char *v) {
        int rc = v ? sqlite3_bind_text(s, idx, v, -1, SQLITE_STATIC) : sqlite3_bind_null(s, idx);
        return rc == SQLITE_OK ? 0 : db_error(d, rc);
}

static int bind_i64(db *d, sqlite3_stmt *s, int idx, int64_t v) {
        int rc = sqlite3_bind_int64(s, idx, v);
        return rc == SQLITE_OK ? 0 : db_error(d, rc);
}

/* Copies text column i (NULL stays NULL). Returns 0 or -ENOMEM. */
static int column_dup(db *d, sqlite3_stmt *s, int i, char **ret) {
        const unsigned char *t = sqlite3_column_text(s, i);
        char *c = NULL;

        if (t) {
                c = strdup((const char *)t);
                if (!c)
                        return fail(d, -ENOMEM, "out of memory");
        } else if (sqlite3_column_type(s, i) != SQLITE_NULL) {
                return fail(d, -ENOMEM, "out of memory");
        }
        *ret = c;
        return 0;
}

int db_exec(db *d, const char *sql) {
        char *msg = NULL;
        int rc = sqlite3_exec(d->sql, sql, NULL, NULL, &msg);
        int r = 0;

        if (rc != SQLITE_OK) {
                r = errno_of(rc, sqlite3_system_errno(d->sql));
                snprintf(d->errmsg, sizeof d->errmsg, "%s", msg ? msg : sqlite3_errstr(rc));
                if (r == 0)
                        r = -EIO;
        }
        sqlite3_free(msg);
        return r;
}

/* ---- transactions ---- */

int db_begin(db *d) {
        sqlite3_stmt *s;
        int r;

        if (d->in_tx)
                return fail(d, -EALREADY, "transaction already open");
        r = db_stmt(d, "BEGIN IMMEDIATE", &s);
        if (r < 0)
                return r;
        r = step_done(d, s);
        if (r == 0)
                d->in_tx = true;
        return r;
}

int db_commit(db *d) {
        sqlite3_stmt *s;
        int r;

        if (!d->in_tx)
                return fail(d, -EINVAL, "no transaction open");
        r = db_stmt(d, "COMMIT", &s);
        if (r < 0)
                goto fail_rollback;
        r = step_done(d, s);
        if (r < 0)
                goto fail_rollback;
        d->in_tx = false;
        return 0;
fail_rollback:
        db_rollback(d);
        return r;
}

void db_rollback(db *d) {
        sqlite3_stmt *s;

        if (!d || !d->in_tx)
                return;
        if (sqlite3_get_autocommit(d->sql) == 0 && db_stmt(d, "ROLLBACK", &s) == 0)
                (void)step_done(d, s);
        d->in_tx = false;
}

bool db_in_transaction(const db *d) {
        return d->in_tx;
}

/* ---- open / close ---- */

/* mkdir -p with mode 0700 for the directories it creates. */
static int mkdir_p(const char *path) {
        char *p = strdup(path), *c;
        struct stat st;
        int r = 0;

        if (!p)
                return -ENOMEM;
        for (c = p + 1; ; c++) {
                if (*c != '/' && *c != '\0')
                        continue;
                char saved = *c;
                *c = '\0';
                if (mkdir(p, 0700) < 0 && errno != EEXIST) {
                        r = -errno;
                        goto out;
                }
                *c = saved;
                if (saved == '\0')
                        break;
        }
        if (stat(path, &st) < 0)
                r = -errno;
        else if (!S_ISDIR(st.st_mode))
                r = -ENOTDIR;
out:
        free(p);
        return r;
}

static int pragma_int(db *d, const char *sql, int64_t *ret) {
        sqlite3_stmt *s = NULL;
        int rc = sqlite3_prepare_v2(d->sql, sql, -1, &s, NULL);
        int r;

        if (rc != SQLITE_OK) {
                r = db_error(d, rc);
                goto out;
        }
        rc = sqlite3_step(s);
        if (rc != SQLITE_ROW) {
                r = rc == SQLITE_DONE ? fail(d, -EIO, "pragma returned no row") : db_error(d, rc);
                goto out;
        }
        *ret = sqlite3_column_int64(s, 0);
        r = 0;
out:
        sqlite3_finalize(s);
        return r;
}

static int migrate(db *d) {
        int64_t version = 0;
        char sql[64];
        int r;

        r = pragma_int(d, "PRAGMA user_version", &version);
        if (r < 0)
                return r;
        if (version < 0 || version > DB_SCHEMA_VERSION) {
                snprintf(d->errmsg, sizeof d->errmsg,
                         "database schema version %lld is newer than this worker's (%d)",
                         (long long)version, DB_SCHEMA_VERSION);
                return -EPROTONOSUPPORT;
        }
        for (; version < DB_SCHEMA_VERSION; version++) {
                r = db_exec(d, "BEGIN IMMEDIATE");
                if (r < 0)
                        return r;
                r = db_exec(d, migrations[version]);
                if (r == 0) {
                        snprintf(sql, sizeof sql, "PRAGMA user_version = %lld", (long long)version + 1);
                        r = db_exec(d, sql);
                }
                if (r == 0)
                        r = db_exec(d, "COMMIT");
                if (r < 0) {
                        char msg[sizeof d->errmsg];
                        snprintf(msg, sizeof msg, "%s", d->errmsg);
                        (void)db_exec(d, "ROLLBACK");
                        snprintf(d->errmsg, sizeof d->errmsg, "migration to version %lld: %.200s",
                                 (long long)version + 1, msg);
                        return r;
                }
        }
        return 0;
}

static int configure(db *d, bool on_disk) {
        sqlite3_stmt *s = NULL;
        int rc, r;

        sqlite3_extended_result_codes(d->sql, 1);
        rc = sqlite3_busy_timeout(d->sql, DB_BUSY_TIMEOUT_MS);
        if (rc != SQLITE_OK)
                return db_error(d, rc);
        if (on_disk) {
                /* The first statement that reads the file: a corrupt or foreign
                 * file fails here with SQLITE_NOTADB. */
                rc = sqlite3_prepare_v2(d->sql, "PRAGMA journal_mode = WAL", -1, &s, NULL);
                if (rc == SQLITE_OK)
                        rc = sqlite3_step(s);
                if (rc != SQLITE_ROW) {
                        r = db_error(d, rc);
                        sqlite3_finalize(s);
                        return r < 0 ? r : -EIO;
                }
                if (strcmp((const char *)sqlite3_column_text(s, 0), "wal") != 0) {
                        sqlite3_finalize(s);
                        return fail(d, -ENOTSUP, "cannot switch the database to WAL mode");
                }
                sqlite3_finalize(s);
        }
        /* A small page cache (64 KiB): the worker's tables are tiny and hot, and
         * the default 2 MiB would be most of its private memory. */
        r = db_exec(d, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -64;");
        if (r < 0)
                return r;
        return migrate(d);
}

int db_open(const char *state_dir, char *err, size_t errlen, db **ret_db) {
        db *d = calloc(1, sizeof *d);
        char *path = NULL;
        int r, rc, fd;

        if (!d) {
                r = -ENOMEM;
                if (errlen)
                        snprintf(err, errlen, "out of memory");
                goto out;
        }
        if (state_dir) {
                size_t n;

                r = mkdir_p(state_dir);
                if (r < 0) {
                        snprintf(d->errmsg, sizeof d->errmsg, "cannot create state directory %s: %s",
                                 state_dir, strerror(-r));
                        goto out_close;
                }
                n = strlen(state_dir) + sizeof "/" DB_FILE;
                path = malloc(n);
                if (!path) {
                        r = fail(d, -ENOMEM, "out of memory");
                        goto out_close;
                }
                snprintf(path, n, "%s/%s", state_dir, DB_FILE);
                /* Create the file ourselves so that it is private (0600). */
                fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (fd < 0) {
                        r = -errno;
                        snprintf(d->errmsg, sizeof d->errmsg, "cannot open %s: %s", path,
                                 strerror(-r));
                        goto out_close;
                }
                close(fd);
        }
        rc = sqlite3_open_v2(path ? path : ":memory:", &d->sql,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc != SQLITE_OK) {
                r = db_error(d, rc);
                if (r == 0)
                        r = -EIO;
                goto out_close;
        }
        r = configure(d, path != NULL);
        if (r < 0)
                goto out_close;
        free(path);
        *ret_db = d;
        return 0;

out_close:
        if (errlen)
                snprintf(err, errlen, "%s%s%s", path && !strstr(d->errmsg, path) ? path : "",
                         path && !strstr(d->errmsg, path) ? ": " : "", d->errmsg);
        free(path);
        db_close(d);
out:
        return r;
}

db *db_close(db *d) {
        if (!d)
                return NULL;
        db_rollback(d);
        while (d->stmts) {
                stmt_entry *e = d->stmts;
                d->stmts = e->next;
                sqlite3_finalize(e->stmt);
                free(e->sql);
                free(e);
        }
        if (d->sql)
                sqlite3_close(d->sql);
        free(d);
        return NULL;
}

/* ---- outbox ---- */

int db_outbox_push(db *d, const char *type, const char *json, int64_t *ret_id) {
        sqlite3_stmt *s;
        int r;

        r = db_stmt(d, "INSERT INTO outbox (type, json, created_at) VALUES (?, ?, ?)", &s);
        if (r < 0)
                return r;
        if ((r = bind_text(d, s, 1, type)) < 0 || (r = bind_text(d, s, 2, json)) < 0 ||
            (r = bind_i64(d, s, 3, util_wall_ms())) < 0)
                return r;
        r = step_done(d, s);
        if (r < 0)
                return r;
        if (ret_id)
                *ret_id = sqlite3_last_insert_rowid(d->sql);
        return 0;
}

int db_outbox_next(db *d, int64_t after_id, int64_t *ret_id, char **ret_type,
                   char **ret_json) {
        sqlite3_stmt *s;
        char *type = NULL, *json = NULL;
        int64_t id;
        int r, rc;

        r = db_stmt(d, "SELECT id, type, json FROM outbox WHERE id > ? ORDER BY id LIMIT 1", &s);
        if (r < 0)
                return r;
        r = bind_i64(d, s, 1, after_id);
        if (r < 0)
                return r;
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE) {
                r = -ENOENT;
                goto out;
        }
        if (rc != SQLITE_ROW) {
                r = db_error(d, rc);
                goto out;
        }
        id = sqlite3_column_int64(s, 0);
        if ((ret_type && (r = column_dup(d, s, 1, &type)) < 0) ||
            (ret_json && (r = column_dup(d, s, 2, &json)) < 0))
                goto out;
        *ret_id = id;
        if (ret_type)
                *ret_type = type;
        if (ret_json)
                *ret_json = json;
        type = json = NULL;
        r = 0;
out:
        free(type);
        free(json);
        sqlite3_reset(s);
        return r;
}

int db_outbox_delete(db *d, int64_t id) {
        sqlite3_stmt *s;
        int r = db_stmt(d, "DELETE FROM outbox WHERE id = ?", &s);

        if (r < 0)
                return r;
        r = bind_i64(d, s, 1, id);
        return r < 0 ? r : step_done(d, s);
}

static int count_query(db *d, const char *sql, int64_t *ret_count) {
        sqlite3_stmt *s;
        int r = db_stmt(d, sql, &s), rc;

        if (r < 0)
                return r;
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
                *ret_count = sqlite3_column_int64(s, 0);
                r = 0;
        } else {
                r = db_error(d, rc);
                if (r == 0)
                        r = -EIO;
        }
        sqlite3_reset(s);
        return r;
}

int db_outbox_count(db *d, int64_t *ret_count) {
        return count_query(d, "SELECT count(*) FROM outbox", ret_count);
}

/* ---- commands ---- */

int db_cmd_insert(db *d, const char *message_id, const char *type,
                  const char *payload_json, db_cmd_state state, int64_t received_at) {
        sqlite3_stmt *s;
        int r;

        r = db_stmt(d, "INSERT INTO commands (message_id, type, payload, state, received_at) "
                       "VALUES (?, ?, ?, ?, ?)", &s);
        if (r < 0)
                return r;
        if ((r = bind_text(d, s, 1, message_id)) < 0 || (r = bind_text(d, s, 2, type)) < 0 ||
            (r = bind_text(d, s, 3, payload_json)) < 0 || (r = bind_i64(d, s, 4, state)) < 0 ||
            (r = bind_i64(d, s, 5, received_at)) < 0)
                return r;
        return step_done(d, s);
}

int db_cmd_get(db *d, const char *message_id, db_cmd_state *ret_state, char **ret_result) {
        sqlite3_stmt *s;
        char *result = NULL;
        int64_t state;
        int r, rc;

        r = db_stmt(d, "SELECT state, result FROM commands WHERE message_id = ?", &s);
        if (r < 0)
                return r;
        r = bind_text(d, s, 1, message_id);
        if (r < 0)
                return r;
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE) {
                r = -ENOENT;
                goto out;
        }
        if (rc != SQLITE_ROW) {
                r = db_error(d, rc);
                goto out;
        }
        state = sqlite3_column_int64(s, 0);
        if (ret_result && (r = column_dup(d, s, 1, &result)) < 0)
                goto out;
        if (ret_state)
                *ret_state = (db_cmd_state)state;
        if (ret_result)
                *ret_result = result;
        result = NULL;
        r = 0;
out:
        free(result);
        sqlite3_reset(s);
        return r;
}

int db_cmd_set_state(db *d, const char *message_id, db_cmd_state state) {
        sqlite3_stmt *s;
        int r = db_stmt(d, "UPDATE commands SET state = ? WHERE message_id = ?", &s);

        if (r < 0)
                return r;
        if ((r = bind_i64(d, s, 1, state)) < 0 || (r = bind_text(d, s, 2, message_id)) < 0)
                return r;
        r = step_done(d, s);
        if (r == 0 && sqlite3_changes(d->sql) == 0)
                r = fail(d, -ENOENT, "no such command");
        return r;
}

int db_cmd_finish(db *d, const char *message_id, const char *result_json, int64_t finished_at) {
        sqlite3_stmt *s;
        int r = db_stmt(d, "UPDATE commands SET state = 2, result = ?, finished_at = ? "
                           "WHERE message_id = ?", &s);

        if (r < 0)
                return r;
        if ((r = bind_text(d, s, 1, result_json)) < 0 || (r = bind_i64(d, s, 2, finished_at)) < 0 ||
            (r = bind_text(d, s, 3, message_id)) < 0)
                return r;
        r = step_done(d, s);
        if (r == 0 && sqlite3_changes(d->sql) == 0)
                r = fail(d, -ENOENT, "no such command");
        return r;
}

void db_cmd_rows_free(db_cmd_row *rows, size_t n) {
        size_t i;

        if (!rows)
                return;
        for (i = 0; i < n; i++) {
                free(rows[i].message_id);
                free(rows[i].type);
                free(rows[i].payload);
        }
        free(rows);
}

int db_cmd_unfinished(db *d, db_cmd_row **ret_rows, size_t *ret_n) {
        sqlite3_stmt *s;
        db_cmd_row *rows = NULL;
        size_t n = 0, cap = 0;
        int r, rc;

        r = db_stmt(d, "SELECT message_id, type, payload, state, received_at FROM commands "
                       "WHERE state < 2 ORDER BY received_at, rowid", &s);
        if (r < 0)
                return r;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
                db_cmd_row *row;
                if (n == cap) {
                        size_t ncap = cap ? cap * 2 : 8;
                        db_cmd_row *nr = realloc(rows, ncap * sizeof *nr);
                        if (!nr) {
                                r = fail(d, -ENOMEM, "out of memory");
                                goto out;
                        }
                        rows = nr;
                        cap = ncap;
                }
                row = &rows[n];
                memset(row, 0, sizeof *row);
                n++;
                if ((r = column_dup(d, s, 0, &row->message_id)) < 0 ||
                    (r = column_dup(d, s, 1, &row->type)) < 0 ||
                    (r = column_dup(d, s, 2, &row->payload)) < 0)
                        goto out;
                row->state = (db_cmd_state)sqlite3_column_int64(s, 3);
                row->received_at = sqlite3_column_int64(s, 4);
        }
        if (rc != SQLITE_DONE) {
                r = db_error(d, rc);
                goto out;
        }
        *ret_rows = rows;
        *ret_n = n;
        rows = NULL;
        n = 0;
        r = 0;
out:
        sqlite3_reset(s);
        db_cmd_rows_free(rows, n);
        return r;
}

int db_prune(db *d, int64_t cutoff_ms, int64_t *ret_removed) {
        sqlite3_stmt *s;
        int64_t removed = 0;
        int r;

        r = db_stmt(d, "DELETE FROM commands WHERE state = 2 AND finished_at < ?", &s);
        if (r < 0)
                return r;
        if ((r = bind_i64(d, s, 1, cutoff_ms)) < 0 || (r = step_done(d, s)) < 0)
                return r;
        removed += sqlite3_changes(d->sql);
        r = db_stmt(d, "DELETE FROM outbox WHERE created_at < ?", &s);
        if (r < 0)
                return r;
        if ((r = bind_i64(d, s, 1, cutoff_ms)) < 0 || (r = step_done(d, s)) < 0)
                return r;
        removed += sqlite3_changes(d->sql);
        if (ret_removed)
                *ret_removed = removed;
        return 0;
}

/* ---- key/value ---- */

int db_kv_set(db *d, const char *key, const char *value) {
        sqlite3_stmt *s;
        int r = db_stmt(d, "INSERT OR REPLACE INTO kv (key, value, updated_at) VALUES (?, ?, ?)", &s);

        if (r < 0)
                return r;
        if ((r = bind_text(d, s, 1, key)) < 0 || (r = bind_text(d, s, 2, value)) < 0 ||
            (r = bind_i64(d, s, 3, util_wall_ms())) < 0)
                return r;
        return step_done(d, s);
}

int db_kv_get(db *d, const char *key, char **ret_value) {
        sqlite3_stmt *s;
        char *v = NULL;
        int r = db_stmt(d, "SELECT value FROM kv WHERE key = ?", &s), rc;

        if (r < 0)
                return r;
        if ((r = bind_text(d, s, 1, key)) < 0)
                return r;
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW)
                r = column_dup(d, s, 0, &v);
        else
                r = rc == SQLITE_DONE ? -ENOENT : db_error(d, rc);
        sqlite3_reset(s);
        if (r == 0)
                *ret_value = v;
        return r;
}

int db_kv_delete(db *d, const char *key) {
        sqlite3_stmt *s;
        int r = db_stmt(d, "DELETE FROM kv WHERE key = ?", &s);

        if (r < 0)
                return r;
        r = bind_text(d, s, 1, key);
        return r < 0 ? r : step_done(d, s);
}

/* ---- deployments and models ---- */

/* Reads one row of three text columns keyed by id. */
static int get3(db *d, const char *sql, const char *id, char **ret_a, char **ret_b,
                char **ret_c) {
        sqlite3_stmt *s;
        char *a = NULL, *b = NULL, *c = NULL;
        int r = db_stmt(d, sql, &s), rc;

        if (r < 0)
                return r;
        if ((r = bind_text(d, s, 1, id)) < 0)
                return r;
        rc = sqlite3_step(s);
        if (rc != SQLITE_ROW) {
                r = rc == SQLITE_DONE ? -ENOENT : db_error(d, rc);
                goto out;
        }
        if ((ret_a && (r = column_dup(d, s, 0, &a)) < 0) ||
            (ret_b && (r = column_dup(d, s, 1, &b)) < 0) ||
            (ret_c && (r = column_dup(d, s, 2, &c)) < 0))
                goto out;
        if (ret_a)
                *ret_a = a;
        if (ret_b)
                *ret_b = b;
        if (ret_c)
                *ret_c = c;
        a = b = c = NULL;
        r = 0;
out:
        free(a);
        free(b);
        free(c);
        sqlite3_reset(s);
        return r;
}

static int delete_by_id(db *d, const char *sql, const char *id) {
        sqlite3_stmt *s;
        int r = db_stmt(d, sql, &s);

        if (r < 0)
                return r;
        r = bind_text(d, s, 1, id);
        return r < 0 ? r : step_done(d, s);
}

int db_deployment_put(db *d, const char *id, const char *spec_json, const char *container_id,
                      const char *status) {
        sqlite3_stmt *s;
        int r = db_stmt(d, "INSERT OR REPLACE INTO deployments "
                           "(id, spec, container_id, status, updated_at) VALUES (?, ?, ?, ?, ?)", &s);

        if (r < 0)
                return r;
        if ((r = bind_text(d, s, 1, id)) < 0 || (r = bind_text(d, s, 2, spec_json)) < 0 ||
            (r = bind_text(d, s, 3, container_id)) < 0 || (r = bind_text(d, s, 4, status)) < 0 ||
            (r = bind_i64(d, s, 5, util_wall_ms())) < 0)
                return r;
        return step_done(d, s);
}

int db_deployment_get(db *d, const char *id, char **ret_spec_json, char **ret_container_id,
                      char **ret_status) {
        return get3(d, "SELECT spec, container_id, status FROM deployments WHERE id = ?", id,
                    ret_spec_json, ret_container_id, ret_status);
}

int db_deployment_delete(db *d, const char *id) {
        return delete_by_id(d, "DELETE FROM deployments WHERE id = ?", id);
}

int db_deployment_ids(db *d, char ***ret_ids, size_t *ret_n) {
        sqlite3_stmt *s;
        char **ids = NULL, **grown, *id = NULL;
        size_t n = 0;
        int r = db_stmt(d, "SELECT id FROM deployments ORDER BY id", &s), rc;

        if (r < 0)
                return r;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
                if ((r = column_dup(d, s, 0, &id)) < 0)
                        goto out;
                grown = realloc(ids, (n + 1) * sizeof *ids);
                if (!grown) {
                        free(id);
                        r = -ENOMEM;
                        goto out;
                }
                ids = grown;
                ids[n++] = id;
        }
        if (rc != SQLITE_DONE) {
                r = db_error(d, rc);
                goto out;
        }
        *ret_ids = ids;
        *ret_n = n;
        ids = NULL;
        n = 0;
        r = 0;
out:
        while (n)
                free(ids[--n]);
        free(ids);
        sqlite3_reset(s);
        return r;
}

int db_model_put(db *d, const char *id, const char *path, const char *manifest_json,
                 const char *state) {
        sqlite3_stmt *s;
        int r = db_stmt(d, "INSERT OR REPLACE INTO models "
                           "(id, path, manifest, state, updated_at) VALUES (?, ?, ?, ?, ?)", &s);

        if (r < 0)
                return r;
        if ((r = bind_text(d, s, 1, id)) < 0 || (r = bind_text(d, s, 2, path)) < 0 ||
            (r = bind_text(d, s, 3, manifest_json)) < 0 || (r = bind_text(d, s, 4, state)) < 0 ||
            (r = bind_i64(d, s, 5, util_wall_ms())) < 0)
                return r;
        return step_done(d, s);
}

int db_model_get(db *d, const char *id, char **ret_path, char **ret_manifest_json,
                 char **ret_state) {
        return get3(d, "SELECT path, manifest, state FROM models WHERE id = ?", id, ret_path,
                    ret_manifest_json, ret_state);
}

int db_model_delete(db *d, const char *id) {
        return delete_by_id(d, "DELETE FROM models WHERE id = ?", id);
}
