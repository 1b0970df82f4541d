/* Fuzz target of the command engine: arbitrary bytes, parsed as JSON, go in
 * as a command envelope, as they are and once as each registered command
 * type, through validation and (for the commands that complete at once)
 * through the whole receive path into an in-memory database. Every message
 * the engine queues must be a JSON envelope; nothing may crash, leak or hang. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "commands/cmd.h"
#include "commands/cmd_system.h"
#include "core/log.h"
#include "core/loop.h"
#include "state/db.h"

/* Commands that complete inside receive; system.update would download. */
static const char *const types[] = {
        "system.healthCheck", "system.query", "system.restart", "system.update",
        "deployment.create", "no.such.type",
};

static json_t *fake_inventory(void *ud) {
        return json_pack("{s:s, s:i}", "nodeId", "n", "cpuCores", 1);
}

static json_t *fake_metrics(void *ud) {
        return json_pack("{s:{s:f}, s:[]}", "cpu", "usage", 1.5, "gpuDevices");
}

/* Takes every queued message and checks that it is an envelope. */
static void drain(db *d) {
        int64_t id;
        char *type, *json;

        while (db_outbox_next(d, 0, &id, &type, &json) == 0) {
                json_t *env = json_loads(json, 0, NULL);
                if (!env || !json_is_string(json_object_get(env, "messageId")) ||
                    strcmp(json_string_value(json_object_get(env, "type")), type) != 0 ||
                    !json_is_object(json_object_get(env, "data")))
                        abort();
                json_decref(env);
                free(type);
                free(json);
                if (db_outbox_delete(d, id) < 0)
                        abort();
        }
}

static bool may_run(const char *type) {
        return !type || strcmp(type, "system.update") != 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char err[256];
        loop *l = NULL;
        db *d = NULL;
        cmd_engine *e = NULL;
        cmd_host host = { 0 };
        json_t *env;
        size_t i;

        log_set_level(LOG_ERROR);
        env = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
        if (!env)
                return 0;
        if (loop_new(&l) < 0 || db_open(NULL, err, sizeof err, &d) < 0)
                abort();
        host.l = l;
        host.db = d;
        host.node_id = "node";
        host.inventory = fake_inventory;
        host.metrics = fake_metrics;
        if (cmd_engine_new(&host, NULL, &e) < 0 || cmd_system_register(e, NULL) < 0 ||
            cmd_engine_start(e, err, sizeof err) < 0)
                abort();

        /* As it came. */
        if (may_run(json_string_value(json_object_get(env, "type"))))
                (void)cmd_engine_receive(e, env, err, sizeof err);
        else
                (void)cmd_engine_validate(e, env, err, sizeof err);
        drain(d);

        /* As each type, with a fresh messageId. */
        if (json_is_object(env)) {
                for (i = 0; i < sizeof types / sizeof types[0]; i++) {
                        json_t *c = json_deep_copy(env);
                        char mid[32];
                        int v;
                        if (!c)
                                break;
                        snprintf(mid, sizeof mid, "fuzz-%zu", i);
                        json_object_set_new(c, "type", json_string(types[i]));
                        json_object_set_new(c, "messageId", json_string(mid));
                        v = cmd_engine_validate(e, c, err, sizeof err);
                        if (v != 0 && v != -EBADMSG)
                                abort(); /* it has a messageId: never dropped */
                        if (may_run(types[i])) {
                                int64_t n = 0;
                                if (cmd_engine_receive(e, c, err, sizeof err) < 0)
                                        abort();
                                /* ack and result, both queued at once */
                                if (db_outbox_count(d, &n) < 0 || n != 2)
                                        abort();
                        }
                        json_decref(c);
                        drain(d);
                }
        }
        (void)loop_run_once(l, 0);
        drain(d);

        json_decref(env);
        cmd_engine_free(e);
        db_close(d);
        (void)loop_run_once(l, 0);
        loop_free(l);
        return 0;
}
