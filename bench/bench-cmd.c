/* bench-cmd: what durability costs per command, in the same run:
 *   1. baseline: raw SQLite inserts (prepared, one autocommit transaction
 *      each) into a table shaped like the outbox, same pragmas (WAL,
 *      synchronous=NORMAL), same directory;
 *   2. db_outbox_push() per message, then draining (next + delete);
 *   3. system.healthCheck through the engine: receive -> ack and result in
 *      the outbox (two transactions: record + ack, finish + result) -> drained
 *      by the outbox_notify callback as the session would.
 * Ratios are against the raw insert. The database lives in $TMPDIR (default
 * /tmp): put it on the disk you care about.
 *
 * Prints `BENCH <figure>\t<ours>\t<baseline>\t<unit>` lines for
 * scripts/bench.sh, each against the raw insert.
 *
 * Usage: bench-cmd [outbox_messages [commands]] */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sqlite3.h>

#include "commands/cmd.h"
#include "commands/cmd_system.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"
#include "state/db.h"

static double now_s(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *sample_ack =
        "{\"type\":\"command.ack\",\"messageId\":\"1cabe154-c142-49fb-89eb-9362c6199a01\","
        "\"timestamp\":\"2026-11-28T02:52:27.169Z\",\"data\":{\"originalMessageId\":"
        "\"0b6a6f57-3f4c-4d8e-9a51-4d0e3c9f7d11\",\"status\":\"acknowledged\",\"estimatedDuration\":2},"
        "\"metadata\":{\"priority\":\"normal\",\"executionId\":\"0b6a6f57-3f4c-4d8e-9a51-4d0e3c9f7d12\","
        "\"stepIndex\":0}}";

static int raw_inserts(const char *dir, long n, double *ret_us) {
        char path[600];
        sqlite3 *s = NULL;
        sqlite3_stmt *st = NULL;
        double t0;
        int rc;

        snprintf(path, sizeof path, "%s/raw.db", dir);
        rc = sqlite3_open(path, &s);
        if (rc == SQLITE_OK)
                rc = sqlite3_exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                                     "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                                     " type TEXT NOT NULL, json TEXT NOT NULL, created_at INTEGER NOT NULL)",
                                  NULL, NULL, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_prepare_v2(s, "INSERT INTO t (type, json, created_at) VALUES (?, ?, ?)",
                                        -1, &st, NULL);
        if (rc != SQLITE_OK)
                goto out;
        t0 = now_s();
        for (long i = 0; i < n && rc == SQLITE_OK; i++) {
                sqlite3_bind_text(st, 1, "command.ack", -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, sample_ack, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 3, util_wall_ms());
                rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
                sqlite3_reset(st);
        }
        *ret_us = (now_s() - t0) / (double)n * 1e6;
out:
        if (rc != SQLITE_OK)
                fprintf(stderr, "bench-cmd: raw sqlite: %s\n", s ? sqlite3_errmsg(s) : "open failed");
        sqlite3_finalize(st);
        sqlite3_close(s);
        return rc == SQLITE_OK ? 0 : -EIO;
}

static long drained;

static void drain(db *d) {
        int64_t id;
        char *json;

        while (db_outbox_next(d, 0, &id, NULL, &json) == 0) {
                free(json);
                db_outbox_delete(d, id);
                drained++;
        }
}

static bool drain_on_notify = true;

static void on_notify(void *ud) {
        if (drain_on_notify)
                drain(ud);
}

/* Sends n healthChecks with message ids prefix-0..n-1. Returns 0 or -1. */
static int send_health(cmd_engine *e, const char *prefix, long n, const char *node_id) {
        char mid[48], err[256];

        for (long i = 0; i < n; i++) {
                json_t *env;
                int r;
                snprintf(mid, sizeof mid, "%s-%ld", prefix, i);
                env = json_pack("{s:s, s:s, s:s, s:{s:s, s:s}, s:{}, s:{s:s, s:s, s:i}}", "type",
                                "system.healthCheck", "messageId", mid, "timestamp",
                                "2026-11-28T02:52:27.169Z", "resource", "type", "system", "id",
                                node_id, "data", "metadata", "priority", "normal",
                                "executionId", "0b6a6f57-3f4c-4d8e-9a51-4d0e3c9f7d11", "stepIndex", 0);
                r = cmd_engine_receive(e, env, err, sizeof err);
                json_decref(env);
                if (r < 0) {
                        fprintf(stderr, "bench-cmd: receive: %s\n", err);
                        return -1;
                }
        }
        return 0;
}

int main(int argc, char **argv) {
        long n_out = argc > 1 ? strtol(argv[1], NULL, 10) : 20000;
        long n_cmd = argc > 2 ? strtol(argv[2], NULL, 10) : 20000;
        const char *tmp = getenv("TMPDIR");
        char dir[512], err[256], cmd[600];
        double raw_us = 0, push_us, drain_us, cmd_us, engine_us, t0;
        cmd_engine *e = NULL;
        cmd_host host = { 0 };
        loop *l = NULL;
        db *d = NULL;
        int r = 1;

        if (n_out <= 0 || n_cmd <= 0) {
                fprintf(stderr, "usage: bench-cmd [outbox_messages [commands]]\n");
                return 2;
        }
        log_set_level(LOG_ERROR);
        snprintf(dir, sizeof dir, "%s/bench-cmd-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
                perror("bench-cmd: mkdtemp");
                return 1;
        }
        if (raw_inserts(dir, n_out, &raw_us) < 0)
                goto out;
        if (db_open(dir, err, sizeof err, &d) < 0) {
                fprintf(stderr, "bench-cmd: %s\n", err);
                goto out;
        }

        t0 = now_s();
        for (long i = 0; i < n_out; i++)
                if (db_outbox_push(d, "command.ack", sample_ack, NULL) < 0) {
                        fprintf(stderr, "bench-cmd: push: %s\n", db_errmsg(d));
                        goto out;
                }
        push_us = (now_s() - t0) / (double)n_out * 1e6;
        t0 = now_s();
        drain(d);
        drain_us = (now_s() - t0) / (double)n_out * 1e6;

        if (loop_new(&l) < 0)
                goto out;
        host.l = l;
        host.db = d;
        host.node_id = "6650a1b2c3d4e5f607182930";
        host.ud = d;
        host.outbox_notify = on_notify;
        if (cmd_engine_new(&host, NULL, &e) < 0 || cmd_system_register(e, NULL) < 0 ||
            cmd_engine_start(e, err, sizeof err) < 0) {
                fprintf(stderr, "bench-cmd: engine: %s\n", err);
                goto out;
        }
        drained = 0;
        t0 = now_s();
        if (send_health(e, "a", n_cmd, host.node_id) < 0)
                goto out;
        cmd_us = (now_s() - t0) / (double)n_cmd * 1e6;
        if (drained != 2 * n_cmd) {
                fprintf(stderr, "bench-cmd: %ld messages drained, expected %ld\n", drained, 2 * n_cmd);
                goto out;
        }
        /* The engine's side alone: the outbox is emptied afterwards in one
         * transaction, as a session batching its deletes would. */
        drain_on_notify = false;
        t0 = now_s();
        if (send_health(e, "b", n_cmd, host.node_id) < 0)
                goto out;
        engine_us = (now_s() - t0) / (double)n_cmd * 1e6;
        db_begin(d);
        drain(d);
        db_commit(d);

        printf("bench-cmd: state in %s (WAL, synchronous=NORMAL)\n", dir);
        printf("  raw sqlite insert (autocommit)      %8.2f us/row      (baseline)\n", raw_us);
        printf("  db_outbox_push (autocommit)         %8.2f us/message  %5.2fx baseline\n", push_us,
               push_us / raw_us);
        printf("  outbox drain (next + delete)        %8.2f us/message  %5.2fx baseline\n", drain_us,
               drain_us / raw_us);
        printf("  healthCheck, engine + drain per msg %8.2f us/command  %5.2fx baseline  %.0f commands/s\n",
               cmd_us, cmd_us / raw_us, 1e6 / cmd_us);
        printf("  healthCheck, engine only            %8.2f us/command  %5.2fx baseline  %.0f commands/s\n",
               engine_us, engine_us / raw_us, 1e6 / engine_us);
        printf("BENCH outbox write per message (vs raw SQLite insert)\t%.2f\t%.2f\tus\n", push_us, raw_us);
        printf("BENCH outbox drain per message, next + delete (vs raw insert)\t%.2f\t%.2f\tus\n", drain_us,
               raw_us);
        printf("BENCH healthCheck through the engine + outbox drain (vs raw insert)\t%.2f\t%.2f\tus\n", cmd_us,
               raw_us);
        printf("BENCH healthCheck commands per second, engine + drain\t%.0f\t-\t1/s\n", 1e6 / cmd_us);
        r = 0;
out:
        cmd_engine_free(e);
        db_close(d);
        if (l) {
                loop_run_once(l, 0);
                loop_free(l);
        }
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
                r = 1;
        return r;
}
