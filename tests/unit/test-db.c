/* Unit tests of src/state/db: schema, migrations, outbox, commands, prune,
 * persistence and error paths. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "core/util.h"
#include "state/db.h"

typedef struct fixture {
        char dir[64];
        db *d;
} fixture;

static void rm_rf(const char *path) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
        assert_int_equal(system(cmd), 0);
}

static int setup(void **state) {
        fixture *f = calloc(1, sizeof *f);
        char err[256];

        assert_non_null(f);
        snprintf(f->dir, sizeof f->dir, "/tmp/test-db-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        assert_int_equal(db_open(f->dir, err, sizeof err, &f->d), 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        fixture *f = *state;
        db_close(f->d);
        rm_rf(f->dir);
        free(f);
        return 0;
}

static int64_t pragma(sqlite3 *s, const char *sql) {
        sqlite3_stmt *st;
        int64_t v;
        assert_int_equal(sqlite3_prepare_v2(s, sql, -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        return v;
}

static void test_schema_created(void **state) {
        fixture *f = *state;
        char path[128], sub[128], err[256];
        struct stat st;
        sqlite3_stmt *s;
        const char *tables[] = { "commands", "outbox", "kv", "deployments", "models" };
        db *d2;

        assert_int_equal(pragma(db_sqlite(f->d), "PRAGMA user_version"), DB_SCHEMA_VERSION);
        /* synchronous NORMAL = 1 */
        assert_int_equal(pragma(db_sqlite(f->d), "PRAGMA synchronous"), 1);
        assert_true(pragma(db_sqlite(f->d), "PRAGMA busy_timeout") > 0);
        assert_int_equal(sqlite3_prepare_v2(db_sqlite(f->d), "PRAGMA journal_mode", -1, &s, NULL),
                         SQLITE_OK);
        assert_int_equal(sqlite3_step(s), SQLITE_ROW);
        assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
        sqlite3_finalize(s);
        for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
                char q[128];
                snprintf(q, sizeof q, "SELECT count(*) FROM sqlite_master WHERE name = '%s'", tables[i]);
                assert_int_equal(pragma(db_sqlite(f->d), q), 1);
        }
        snprintf(path, sizeof path, "%s/state.db", f->dir);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);

        /* A missing state directory is created, parents too, with 0700. */
        snprintf(sub, sizeof sub, "%s/a/b", f->dir);
        assert_int_equal(db_open(sub, err, sizeof err, &d2), 0);
        assert_int_equal(stat(sub, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0700);
        db_close(d2);
}

static void test_migration_from_v1(void **state) {
        fixture *f = *state;
        char dir[128], path[160], err[256], *v = NULL;
        sqlite3 *s;
        db_cmd_state st;
        int64_t id;
        db *d;

        /* Build a version-1 database by hand (what a v1 worker left). */
        snprintf(dir, sizeof dir, "%s/v1", f->dir);
        assert_int_equal(mkdir(dir, 0700), 0);
        snprintf(path, sizeof path, "%s/state.db", dir);
        assert_int_equal(sqlite3_open(path, &s), SQLITE_OK);
        assert_int_equal(sqlite3_exec(s,
                "CREATE TABLE commands (message_id TEXT PRIMARY KEY NOT NULL, type TEXT NOT NULL,"
                " payload TEXT NOT NULL, state INTEGER NOT NULL CHECK (state IN (0, 1, 2)),"
                " result TEXT, received_at INTEGER NOT NULL, finished_at INTEGER);"
                "CREATE INDEX commands_state ON commands (state, finished_at);"
                "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL,"
                " json TEXT NOT NULL, created_at INTEGER NOT NULL);"
                "CREATE TABLE kv (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL,"
                " updated_at INTEGER NOT NULL);"
                "INSERT INTO commands VALUES ('m1', 'system.query', '{}', 2, '{\"r\":1}', 1, 2);"
                "INSERT INTO outbox (type, json, created_at) VALUES ('command.ack', '{\"a\":1}', 5);"
                "INSERT INTO kv VALUES ('k', '\"v\"', 1);"
                "PRAGMA user_version = 1;",
                NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(s);

        assert_int_equal(db_open(dir, err, sizeof err, &d), 0);
        assert_int_equal(pragma(db_sqlite(d), "PRAGMA user_version"), DB_SCHEMA_VERSION);
        assert_int_equal(db_cmd_get(d, "m1", &st, &v), 0);
        assert_int_equal(st, DB_CMD_DONE);
        assert_string_equal(v, "{\"r\":1}");
        free(v);
        assert_int_equal(db_outbox_next(d, 0, &id, NULL, NULL), 0);
        assert_int_equal(db_kv_get(d, "k", &v), 0);
        assert_string_equal(v, "\"v\"");
        free(v);
        /* The tables of version 2 exist and work. */
        assert_int_equal(db_deployment_put(d, "dep1", "{}", NULL, "queued"), 0);
        assert_int_equal(db_model_put(d, "m", "/models/m", NULL, "complete"), 0);
        db_close(d);

        /* A newer schema than this binary knows is refused. */
        assert_int_equal(sqlite3_open(path, &s), SQLITE_OK);
        assert_int_equal(sqlite3_exec(s, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(s);
        assert_int_equal(db_open(dir, err, sizeof err, &d), -EPROTONOSUPPORT);
        assert_non_null(strstr(err, "newer"));
}

static void test_outbox_order(void **state) {
        fixture *f = *state;
        int64_t ids[5], id, after = 0, n;
        char *type, *json, want[32];

        for (int i = 0; i < 5; i++) {
                snprintf(want, sizeof want, "{\"n\":%d}", i);
                assert_int_equal(db_outbox_push(f->d, i % 2 ? "command.result" : "command.ack", want,
                                                &ids[i]), 0);
                if (i > 0)
                        assert_true(ids[i] > ids[i - 1]);
        }
        assert_int_equal(db_outbox_count(f->d, &n), 0);
        assert_int_equal(n, 5);
        for (int i = 0; i < 5; i++) {
                assert_int_equal(db_outbox_next(f->d, after, &id, &type, &json), 0);
                snprintf(want, sizeof want, "{\"n\":%d}", i);
                assert_int_equal(id, ids[i]);
                assert_string_equal(json, want);
                assert_string_equal(type, i % 2 ? "command.result" : "command.ack");
                free(type);
                free(json);
                after = id;
        }
        assert_int_equal(db_outbox_next(f->d, after, &id, &type, &json), -ENOENT);
        /* Delete from the front: the next is the following one; ids are never
         * reused (AUTOINCREMENT), even after the table is emptied. */
        assert_int_equal(db_outbox_delete(f->d, ids[0]), 0);
        assert_int_equal(db_outbox_next(f->d, 0, &id, NULL, NULL), 0);
        assert_int_equal(id, ids[1]);
        for (int i = 1; i < 5; i++)
                assert_int_equal(db_outbox_delete(f->d, ids[i]), 0);
        assert_int_equal(db_outbox_delete(f->d, ids[4]), 0); /* absent: fine */
        assert_int_equal(db_outbox_count(f->d, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(db_outbox_push(f->d, "x", "{}", &id), 0);
        assert_true(id > ids[4]);
}

static void test_commands(void **state) {
        fixture *f = *state;
        db_cmd_state st;
        db_cmd_row *rows;
        size_t n;
        char *res;

        assert_int_equal(db_cmd_insert(f->d, "a", "t1", "{\"a\":1}", DB_CMD_RECEIVED, 10), 0);
        assert_int_equal(db_cmd_insert(f->d, "b", "t2", "{\"b\":1}", DB_CMD_RECEIVED, 20), 0);
        assert_int_equal(db_cmd_insert(f->d, "c", "t3", "{}", DB_CMD_RECEIVED, 15), 0);
        assert_int_equal(db_cmd_insert(f->d, "a", "t1", "{}", DB_CMD_RECEIVED, 30), -EEXIST);
        assert_int_equal(db_cmd_set_state(f->d, "b", DB_CMD_RUNNING), 0);
        assert_int_equal(db_cmd_set_state(f->d, "zz", DB_CMD_RUNNING), -ENOENT);
        assert_int_equal(db_cmd_finish(f->d, "c", "{\"done\":true}", 40), 0);
        assert_int_equal(db_cmd_finish(f->d, "zz", "{}", 40), -ENOENT);
        assert_int_equal(db_cmd_get(f->d, "c", &st, &res), 0);
        assert_int_equal(st, DB_CMD_DONE);
        assert_string_equal(res, "{\"done\":true}");
        free(res);
        assert_int_equal(db_cmd_get(f->d, "b", &st, &res), 0);
        assert_int_equal(st, DB_CMD_RUNNING);
        assert_null(res);
        assert_int_equal(db_cmd_get(f->d, "nope", &st, &res), -ENOENT);

        assert_int_equal(db_cmd_unfinished(f->d, &rows, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(rows[0].message_id, "a");
        assert_string_equal(rows[0].type, "t1");
        assert_string_equal(rows[0].payload, "{\"a\":1}");
        assert_int_equal(rows[0].state, DB_CMD_RECEIVED);
        assert_int_equal(rows[0].received_at, 10);
        assert_string_equal(rows[1].message_id, "b");
        assert_int_equal(rows[1].state, DB_CMD_RUNNING);
        db_cmd_rows_free(rows, n);
}

static void test_transactions(void **state) {
        fixture *f = *state;
        int64_t n;

        assert_int_equal(db_begin(f->d), 0);
        assert_true(db_in_transaction(f->d));
        assert_int_equal(db_begin(f->d), -EALREADY);
        assert_int_equal(db_outbox_push(f->d, "x", "{}", NULL), 0);
        db_rollback(f->d);
        assert_false(db_in_transaction(f->d));
        assert_int_equal(db_outbox_count(f->d, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(db_begin(f->d), 0);
        assert_int_equal(db_outbox_push(f->d, "x", "{}", NULL), 0);
        assert_int_equal(db_commit(f->d), 0);
        assert_int_equal(db_outbox_count(f->d, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(db_commit(f->d), -EINVAL);
        db_rollback(f->d); /* no-op */
}

static void test_prune(void **state) {
        fixture *f = *state;
        int64_t now = util_wall_ms(), removed, n, id;
        db_cmd_state st;

        assert_int_equal(db_cmd_insert(f->d, "old-done", "t", "{}", DB_CMD_RECEIVED, now - 10000), 0);
        assert_int_equal(db_cmd_finish(f->d, "old-done", "{}", now - 9000), 0);
        assert_int_equal(db_cmd_insert(f->d, "old-running", "t", "{}", DB_CMD_RUNNING, now - 10000), 0);
        assert_int_equal(db_cmd_insert(f->d, "new-done", "t", "{}", DB_CMD_RECEIVED, now), 0);
        assert_int_equal(db_cmd_finish(f->d, "new-done", "{}", now), 0);
        assert_int_equal(db_outbox_push(f->d, "x", "{}", &id), 0);
        /* Age the outbox row. */
        assert_int_equal(db_exec(f->d, "UPDATE outbox SET created_at = 1"), 0);
        assert_int_equal(db_outbox_push(f->d, "y", "{}", NULL), 0);

        assert_int_equal(db_prune(f->d, now - 5000, &removed), 0);
        assert_int_equal(removed, 2);
        assert_int_equal(db_cmd_get(f->d, "old-done", &st, NULL), -ENOENT);
        assert_int_equal(db_cmd_get(f->d, "old-running", &st, NULL), 0); /* never pruned */
        assert_int_equal(db_cmd_get(f->d, "new-done", &st, NULL), 0);
        assert_int_equal(db_outbox_count(f->d, &n), 0);
        assert_int_equal(n, 1);
}

static void test_reopen_keeps_data(void **state) {
        fixture *f = *state;
        char err[256], *v, *spec, *cid, *status, *path, *manifest, *mstate;
        int64_t id, id2;
        db_cmd_state st;

        assert_int_equal(db_cmd_insert(f->d, "m", "t", "{}", DB_CMD_RUNNING, 1), 0);
        assert_int_equal(db_outbox_push(f->d, "command.ack", "{\"x\":1}", &id), 0);
        assert_int_equal(db_kv_set(f->d, "update.pending", "{\"a\":1}"), 0);
        assert_int_equal(db_kv_set(f->d, "update.pending", "{\"a\":2}"), 0);
        assert_int_equal(db_deployment_put(f->d, "d1", "{\"s\":1}", "c1", "running"), 0);
        assert_int_equal(db_model_put(f->d, "m1", "/p", "{\"files\":[]}", "complete"), 0);
        f->d = db_close(f->d);

        assert_int_equal(db_open(f->dir, err, sizeof err, &f->d), 0);
        assert_int_equal(db_cmd_get(f->d, "m", &st, NULL), 0);
        assert_int_equal(st, DB_CMD_RUNNING);
        assert_int_equal(db_outbox_next(f->d, 0, &id2, NULL, &v), 0);
        assert_int_equal(id2, id);
        assert_string_equal(v, "{\"x\":1}");
        free(v);
        assert_int_equal(db_kv_get(f->d, "update.pending", &v), 0);
        assert_string_equal(v, "{\"a\":2}");
        free(v);
        assert_int_equal(db_kv_delete(f->d, "update.pending"), 0);
        assert_int_equal(db_kv_get(f->d, "update.pending", &v), -ENOENT);
        assert_int_equal(db_kv_delete(f->d, "update.pending"), 0);

        assert_int_equal(db_deployment_get(f->d, "d1", &spec, &cid, &status), 0);
        assert_string_equal(spec, "{\"s\":1}");
        assert_string_equal(cid, "c1");
        assert_string_equal(status, "running");
        free(spec);
        free(cid);
        free(status);
        assert_int_equal(db_deployment_put(f->d, "d1", "{}", NULL, "stopped"), 0);
        assert_int_equal(db_deployment_get(f->d, "d1", NULL, &cid, NULL), 0);
        assert_null(cid);
        assert_int_equal(db_deployment_delete(f->d, "d1"), 0);
        assert_int_equal(db_deployment_get(f->d, "d1", NULL, NULL, NULL), -ENOENT);
        assert_int_equal(db_model_get(f->d, "m1", &path, &manifest, &mstate), 0);
        assert_string_equal(path, "/p");
        assert_string_equal(manifest, "{\"files\":[]}");
        assert_string_equal(mstate, "complete");
        free(path);
        free(manifest);
        free(mstate);
        assert_int_equal(db_model_delete(f->d, "m1"), 0);
        assert_int_equal(db_model_get(f->d, "m1", NULL, NULL, NULL), -ENOENT);
}

static void test_errors(void **state) {
        fixture *f = *state;
        char path[160], err[256];
        sqlite3_stmt *s;
        db *d = NULL;
        int fd;

        /* Corrupt file. */
        snprintf(path, sizeof path, "%s/corrupt", f->dir);
        assert_int_equal(mkdir(path, 0700), 0);
        snprintf(path, sizeof path, "%s/corrupt/state.db", f->dir);
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        for (int i = 0; i < 64; i++)
                assert_int_equal(write(fd, "this is not a sqlite database at all!!!!", 40), 40);
        close(fd);
        snprintf(path, sizeof path, "%s/corrupt", f->dir);
        err[0] = '\0';
        assert_int_equal(db_open(path, err, sizeof err, &d), -EBADMSG);
        assert_null(d);
        assert_true(strlen(err) > 0);

        /* The state directory path goes through a regular file. */
        snprintf(path, sizeof path, "%s/corrupt/state.db/sub", f->dir);
        assert_int_equal(db_open(path, err, sizeof err, &d), -ENOTDIR);
        assert_non_null(strstr(err, "state directory"));

        /* state.db is a directory. */
        snprintf(path, sizeof path, "%s/isdir", f->dir);
        assert_int_equal(mkdir(path, 0700), 0);
        snprintf(path, sizeof path, "%s/isdir/state.db", f->dir);
        assert_int_equal(mkdir(path, 0700), 0);
        snprintf(path, sizeof path, "%s/isdir", f->dir);
        assert_int_equal(db_open(path, err, sizeof err, &d), -EISDIR);

        /* A directory that cannot be created (sysfs refuses even root). */
        assert_true(db_open("/sys/aiwm-test-state", err, sizeof err, &d) < 0);
        assert_non_null(strstr(err, "cannot create state directory"));

        /* A read-only directory (only meaningful when not root). */
        if (geteuid() != 0) {
                snprintf(path, sizeof path, "%s/ro", f->dir);
                assert_int_equal(mkdir(path, 0500), 0);
                assert_int_equal(db_open(path, err, sizeof err, &d), -EACCES);
        }

        /* SQL errors are translated and described. */
        assert_int_equal(db_stmt(f->d, "SELECT * FROM no_such_table", &s), -EIO);
        assert_non_null(strstr(db_errmsg(f->d), "no_such_table"));
        assert_int_equal(db_exec(f->d, "not sql"), -EIO);
        assert_true(strlen(db_errmsg(f->d)) > 0);
        assert_int_equal(db_error(f->d, SQLITE_BUSY), -EBUSY);
        assert_int_equal(db_error(f->d, SQLITE_FULL), -ENOSPC);
        assert_int_equal(db_error(f->d, SQLITE_READONLY), -EROFS);
        assert_int_equal(db_error(f->d, SQLITE_CONSTRAINT_PRIMARYKEY), -EEXIST);
        assert_int_equal(db_error(f->d, SQLITE_DONE), 0);
        assert_null(db_close(NULL));
}

static void test_memory_and_stmt_cache(void **state) {
        char err[256], sql[64];
        sqlite3_stmt *a, *b;
        int64_t n;
        db *d;

        assert_int_equal(db_open(NULL, err, sizeof err, &d), 0);
        assert_int_equal(db_outbox_push(d, "x", "{}", NULL), 0);
        assert_int_equal(db_outbox_count(d, &n), 0);
        assert_int_equal(n, 1);
        /* Statements are cached by content, not by pointer. */
        snprintf(sql, sizeof sql, "SELECT 1");
        assert_int_equal(db_stmt(d, sql, &a), 0);
        snprintf(sql, sizeof sql, "SELECT 2");
        assert_int_equal(db_stmt(d, sql, &b), 0);
        assert_ptr_not_equal(a, b);
        assert_int_equal(db_stmt(d, "SELECT 1", &b), 0);
        assert_ptr_equal(a, b);
        db_close(d);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_schema_created, setup, teardown),
                cmocka_unit_test_setup_teardown(test_migration_from_v1, setup, teardown),
                cmocka_unit_test_setup_teardown(test_outbox_order, setup, teardown),
                cmocka_unit_test_setup_teardown(test_commands, setup, teardown),
                cmocka_unit_test_setup_teardown(test_transactions, setup, teardown),
                cmocka_unit_test_setup_teardown(test_prune, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup, teardown),
                cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
                cmocka_unit_test(test_memory_and_stmt_cache),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
