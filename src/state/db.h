/* db: the worker's durable state, one SQLite database STATE_DIR/state.db
 * (WAL journal, synchronous=NORMAL, busy timeout), created on first start.
 *
 * Tables (schema versioned with PRAGMA user_version; migrations run in order
 * at open, each in its own transaction; a newer schema than this binary knows
 * is refused):
 *   commands    every command received: message_id (PK), type, payload (the
 *               whole envelope, JSON), state received|running|done, result
 *               (the command.result envelope, JSON), received_at, finished_at
 *   outbox      messages for the controller not yet written to the socket:
 *               id (autoincrement, the sending order), type, json, created_at
 *   kv          generic key -> JSON text
 *   deployments id (PK), spec (JSON), container_id, status, updated_at
 *   models      id (PK), path, manifest (JSON), state, updated_at
 * Times are wall-clock milliseconds since the epoch. Modules that need more
 * tables or columns add a migration at the end of the list in db.c.
 *
 * Errors: functions return 0 or a negative errno; SQLite result codes are
 * translated (BUSY/LOCKED -EBUSY, NOMEM -ENOMEM, READONLY -EROFS, FULL
 * -ENOSPC, CORRUPT/NOTADB -EBADMSG, CANTOPEN the OS errno or -EACCES,
 * CONSTRAINT -EEXIST, TOOBIG -E2BIG, others -EIO) and the detail is kept in
 * db_errmsg(). Strings returned through ret_* are heap copies the caller
 * frees. Not thread-safe: one connection used from the loop's thread. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct db db;
typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;

/* The schema version this binary creates and migrates to. */
#define DB_SCHEMA_VERSION 2

typedef enum db_cmd_state {
        DB_CMD_RECEIVED = 0, /* acknowledged, waiting for a slot */
        DB_CMD_RUNNING = 1,  /* handler started */
        DB_CMD_DONE = 2,     /* result written to the outbox */
} db_cmd_state;

/* Opens (creating when missing) state_dir/state.db. state_dir is created
 * with mode 0700 (parents too) when it does not exist. state_dir NULL opens
 * a private in-memory database (tests, fuzzing). On failure returns a
 * negative errno and writes a sentence into err (errlen may be 0). */
int db_open(const char *state_dir, char *err, size_t errlen, db **ret_db);
/* Finalizes the cached statements and closes the database. Returns NULL. */
db *db_close(db *d);
/* The detail of the last error on d (empty string when none). */
const char *db_errmsg(const db *d);
/* The underlying connection, for modules that run their own SQL. */
sqlite3 *db_sqlite(db *d);
/* Translates a SQLite result code into a negative errno (0 for OK, ROW,
 * DONE) and records the connection's message in db_errmsg(). */
int db_error(db *d, int sqlite_rc);
/* Returns a cached prepared statement for sql (prepared on first use and
 * kept until db_close), reset and with its bindings cleared. sql must be a
 * single statement. */
int db_stmt(db *d, const char *sql, sqlite3_stmt **ret_stmt);
/* Runs one or more SQL statements without results. */
int db_exec(db *d, const char *sql);

/* Transactions (BEGIN IMMEDIATE). They do not nest: db_begin() inside an open
 * transaction returns -EALREADY. db_rollback() on no transaction is a no-op. */
int db_begin(db *d);
int db_commit(db *d);
void db_rollback(db *d);
bool db_in_transaction(const db *d);

/* ---- outbox ---- */

/* Appends a message; *ret_id (may be NULL) gets its id. */
int db_outbox_push(db *d, const char *type, const char *json, int64_t *ret_id);
/* The first message with id > after_id: 0 and the three outputs, or -ENOENT
 * when there is none. ret_type / ret_json may be NULL. */
int db_outbox_next(db *d, int64_t after_id, int64_t *ret_id, char **ret_type,
                   char **ret_json);
/* Removes message id (no error when absent). */
int db_outbox_delete(db *d, int64_t id);
int db_outbox_count(db *d, int64_t *ret_count);

/* ---- commands ---- */

/* Records a new command. -EEXIST when message_id is already known. */
int db_cmd_insert(db *d, const char *message_id, const char *type,
                  const char *payload_json, db_cmd_state state, int64_t received_at);
/* Looks a command up: -ENOENT when unknown. ret_result (may be NULL) gets
 * the stored result envelope, or NULL when not done. */
int db_cmd_get(db *d, const char *message_id, db_cmd_state *ret_state,
               char **ret_result);
int db_cmd_set_state(db *d, const char *message_id, db_cmd_state state);
/* Marks the command done with its result envelope. */
int db_cmd_finish(db *d, const char *message_id, const char *result_json,
                  int64_t finished_at);

/* One command not yet done, as db_cmd_unfinished() reports it. */
typedef struct db_cmd_row {
        char *message_id;
        char *type;
        char *payload;
        db_cmd_state state;
        int64_t received_at;
} db_cmd_row;

/* Returns every command not done, oldest first, as a heap array of *ret_n
 * rows (NULL and 0 when none); free it with db_cmd_rows_free(). */
int db_cmd_unfinished(db *d, db_cmd_row **ret_rows, size_t *ret_n);
void db_cmd_rows_free(db_cmd_row *rows, size_t n);

/* Deletes done commands finished before cutoff_ms and outbox messages
 * created before cutoff_ms (undelivered for that long: stale). *ret_removed
 * (may be NULL) gets the number of rows removed. */
int db_prune(db *d, int64_t cutoff_ms, int64_t *ret_removed);

/* ---- key/value ---- */

/* value is JSON text by convention (not checked). */
int db_kv_set(db *d, const char *key, const char *value);
/* -ENOENT when absent. */
int db_kv_get(db *d, const char *key, char **ret_value);
/* No error when absent. */
int db_kv_delete(db *d, const char *key);

/* ---- deployments and models (kept simple; their modules extend them) ---- */

/* Inserts or replaces. container_id may be NULL. */
int db_deployment_put(db *d, const char *id, const char *spec_json,
                      const char *container_id, const char *status);
/* -ENOENT when absent; each ret_* may be NULL; *ret_container_id may be NULL. */
int db_deployment_get(db *d, const char *id, char **ret_spec_json,
                      char **ret_container_id, char **ret_status);
int db_deployment_delete(db *d, const char *id);
/* Every deployment id (heap array of heap strings, sorted). */
int db_deployment_ids(db *d, char ***ret_ids, size_t *ret_n);

/* Inserts or replaces. path and manifest_json may be NULL. */
int db_model_put(db *d, const char *id, const char *path, const char *manifest_json,
                 const char *state);
int db_model_get(db *d, const char *id, char **ret_path, char **ret_manifest_json,
                 char **ret_state);
int db_model_delete(db *d, const char *id);
