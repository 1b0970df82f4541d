/* Unit tests of src/commands/cmd (the engine) and cmd_system, driving a real
 * loop and a real database in a temporary directory. */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/sha.h>

#include "commands/cmd.h"
#include "commands/cmd_system.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"
#include "state/db.h"

/* ---- fixture ---- */

typedef struct T {
        char dir[64];
        loop *l;
        db *d;
        cmd_engine *e;
        cmd_config cfg;
        cmd_system_config sys;
        json_t *sent; /* envelopes taken from the outbox, in order */
        bool no_drain;
        /* storm mode: check the stream instead of keeping it */
        bool storm;
        unsigned storm_acks, storm_results;
        bool storm_bad;
        /* fakes of the host */
        int restarts;
        uint64_t restart_delay;
        bool result_queued_at_restart;
        const char *restart_mid;
        json_t *metrics, *deployments, *inventory;
} T;

/* Counters of the fake handlers (reset per test). */
static struct {
        int starts, cancels, resumes, active, max_active;
        char order[64][16];
        int norder;
} fk;

static void drain(T *t) {
        int64_t id;
        char *json;

        while (db_outbox_next(t->d, 0, &id, NULL, &json) == 0) {
                json_t *env = json_loads(json, 0, NULL);
                assert_non_null(env);
                free(json);
                assert_int_equal(db_outbox_delete(t->d, id), 0);
                if (t->storm) {
                        const char *type = json_string_value(json_object_get(env, "type"));
                        char want[32];
                        snprintf(want, sizeof want, "s-%u",
                                 strcmp(type, "command.ack") == 0 ? t->storm_acks : t->storm_results);
                        const char *mid = json_string_value(
                                json_object_get(json_object_get(env, "data"), "originalMessageId"));
                        if (!mid || strcmp(mid, want) != 0)
                                t->storm_bad = true;
                        if (strcmp(type, "command.ack") == 0) {
                                if (t->storm_acks != t->storm_results)
                                        t->storm_bad = true;
                                t->storm_acks++;
                        } else {
                                t->storm_results++;
                                if (t->storm_acks != t->storm_results)
                                        t->storm_bad = true;
                        }
                        json_decref(env);
                } else {
                        json_array_append_new(t->sent, env);
                }
        }
}

static void host_notify(void *ud) {
        T *t = ud;
        if (!t->no_drain)
                drain(t);
}

static json_t *host_metrics(void *ud) {
        T *t = ud;
        return json_incref(t->metrics);
}

static json_t *host_deployments(void *ud) {
        T *t = ud;
        return json_incref(t->deployments);
}

static json_t *host_inventory(void *ud) {
        T *t = ud;
        return json_incref(t->inventory);
}

static json_t *host_config(void *ud) {
        return json_pack("{s:s, s:s}", "NODE_TOKEN", "[redacted]", "LOG_LEVEL", "info");
}

static int64_t host_uptime(void *ud) {
        return 86400;
}

static json_t *result_of(T *t, const char *mid);

static void host_restart(void *ud, uint64_t delay_ms) {
        T *t = ud;
        int64_t id = 0;
        char *json;

        t->restarts++;
        t->restart_delay = delay_ms;
        /* The result must already be queued (or even sent). */
        if (t->restart_mid && result_of(t, t->restart_mid))
                t->result_queued_at_restart = true;
        while (db_outbox_next(t->d, id, &id, NULL, &json) == 0) {
                json_t *env = json_loads(json, 0, NULL);
                const char *mid = json_string_value(
                        json_object_get(json_object_get(env, "data"), "originalMessageId"));
                if (t->restart_mid && mid && strcmp(mid, t->restart_mid) == 0 &&
                    strcmp(json_string_value(json_object_get(env, "type")), "command.result") == 0)
                        t->result_queued_at_restart = true;
                json_decref(env);
                free(json);
        }
}

/* ---- fake handlers ---- */

typedef struct slow {
        cmd_job *job;
        loop_timer *timer;
} slow;

static void slow_fire(loop_timer *tm, void *userdata) {
        slow *s = userdata;
        cmd_job *job = s->job;
        json_t *r = json_pack("{s:s?, s:b}", "tag",
                              json_string_value(json_object_get(cmd_job_data(job), "tag")),
                              "resumed", cmd_job_resumed(job));
        loop_timer_free(s->timer);
        free(s);
        fk.active--;
        assert_int_equal(cmd_job_succeed(job, r), 0);
}

static int slow_start(cmd_job *job) {
        const json_t *data = cmd_job_data(job);
        const char *tag = json_string_value(json_object_get(data, "tag"));
        slow *s = calloc(1, sizeof *s);
        int r;

        assert_non_null(s);
        s->job = job;
        r = loop_timer_new(cmd_engine_host(cmd_job_engine(job))->l, slow_fire, s, &s->timer);
        assert_int_equal(r, 0);
        loop_timer_arm(s->timer, (uint64_t)json_integer_value(json_object_get(data, "ms")));
        cmd_job_set_userdata(job, s);
        fk.starts++;
        fk.active++;
        if (fk.active > fk.max_active)
                fk.max_active = fk.active;
        if (tag && fk.norder < 64)
                snprintf(fk.order[fk.norder++], sizeof fk.order[0], "%s", tag);
        return 0;
}

static void slow_cancel(cmd_job *job) {
        slow *s = cmd_job_get_userdata(job);
        /* A completion attempted while cancelling is refused. */
        assert_int_equal(cmd_job_succeed(job, json_object()), -ESTALE);
        loop_timer_free(s->timer);
        free(s);
        fk.active--;
        fk.cancels++;
}

static int slow_resume(cmd_job *job) {
        fk.resumes++;
        return slow_start(job);
}

static int slow_validate(const json_t *data, const json_t *resource, char *err, size_t errlen) {
        if (!json_is_integer(json_object_get(data, "ms"))) {
                snprintf(err, errlen, "data.ms must be an integer");
                return -EINVAL;
        }
        return 0;
}

static int count_start(cmd_job *job) {
        fk.starts++;
        return cmd_job_succeed(job, json_pack("{s:i}", "n", fk.starts));
}

static int fail_start(cmd_job *job) {
        return -EIO;
}

static int emit_start(cmd_job *job) {
        assert_int_equal(cmd_job_emit(job, "deployment.status",
                                      json_pack("{s:s, s:s}", "deploymentId",
                                                cmd_job_resource_id(job), "status", "starting")),
                         0);
        return cmd_job_succeed(job, NULL);
}

static void open_engine(T *t) {
        char err[256];
        cmd_host host = {
                .l = t->l, .db = NULL, .node_id = "node-1", .ud = t,
                .outbox_notify = host_notify, .inventory = host_inventory,
                .metrics = host_metrics, .config_json = host_config,
                .deployments = host_deployments, .uptime_seconds = host_uptime,
                .request_restart = host_restart,
        };
        const cmd_handler fakes[] = {
                { .type = "test.slow", .validate = slow_validate, .start = slow_start,
                  .cancel = slow_cancel, .estimated_duration = NULL },
                { .type = "test.resumable", .validate = slow_validate, .start = slow_start,
                  .cancel = slow_cancel, .resume = slow_resume },
                { .type = "test.count", .start = count_start },
                { .type = "test.fail", .start = fail_start },
                { .type = "test.emit", .start = emit_start },
        };

        assert_int_equal(db_open(t->dir, err, sizeof err, &t->d), 0);
        host.db = t->d;
        assert_int_equal(cmd_engine_new(&host, &t->cfg, &t->e), 0);
        assert_int_equal(cmd_system_register(t->e, &t->sys), 0);
        for (size_t i = 0; i < sizeof fakes / sizeof fakes[0]; i++)
                assert_int_equal(cmd_engine_register(t->e, &fakes[i]), 0);
        assert_int_equal(cmd_engine_register(t->e, &fakes[0]), -EEXIST);
        assert_int_equal(cmd_engine_start(t->e, err, sizeof err), 0);
}

static void close_engine(T *t) {
        t->e = cmd_engine_free(t->e);
        t->d = db_close(t->d);
        /* Let the loop reap what the engine freed. */
        assert_int_equal(loop_run_once(t->l, 0), 0);
}

static int setup(void **state) {
        T *t = calloc(1, sizeof *t);

        assert_non_null(t);
        memset(&fk, 0, sizeof fk);
        snprintf(t->dir, sizeof t->dir, "/tmp/test-cmd-XXXXXX");
        assert_non_null(mkdtemp(t->dir));
        assert_int_equal(loop_new(&t->l), 0);
        t->sent = json_array();
        *state = t;
        return 0;
}

static int teardown(void **state) {
        T *t = *state;
        char cmd[128];

        close_engine(t);
        t->l = loop_free(t->l);
        json_decref(t->sent);
        json_decref(t->metrics);
        json_decref(t->deployments);
        json_decref(t->inventory);
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->dir);
        assert_int_equal(system(cmd), 0);
        free(t);
        return 0;
}

/* ---- helpers ---- */

static json_t *mk(const char *type, const char *mid, const char *data, const char *meta) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:{s:s, s:s}}", "type", type, "messageId", mid,
                              "timestamp", "2026-11-28T02:52:27.169Z", "resource", "type", "system",
                              "id", "res-1");
        assert_non_null(o);
        if (data) {
                json_t *d = json_loads(data, JSON_DECODE_ANY, NULL);
                assert_non_null(d);
                json_object_set_new(o, "data", d);
        }
        if (meta) {
                json_t *m = json_loads(meta, JSON_DECODE_ANY, NULL);
                assert_non_null(m);
                json_object_set_new(o, "metadata", m);
        }
        return o;
}

static int recv_env(T *t, json_t *env) {
        char err[256];
        int r = cmd_engine_receive(t->e, env, err, sizeof err);
        json_decref(env);
        return r;
}

static int send_cmd(T *t, const char *type, const char *mid, const char *data, const char *meta) {
        return recv_env(t, mk(type, mid, data, meta));
}

static const char *orig_of(const json_t *env) {
        return json_string_value(json_object_get(json_object_get(env, "data"), "originalMessageId"));
}

/* The n-th (0-based) message of type answering mid, or NULL. */
static json_t *nth(T *t, const char *type, const char *mid, int n) {
        size_t i;
        json_t *env;

        json_array_foreach(t->sent, i, env) {
                const char *o = orig_of(env);
                if (strcmp(json_string_value(json_object_get(env, "type")), type) == 0 && o &&
                    strcmp(o, mid) == 0 && n-- == 0)
                        return env;
        }
        return NULL;
}

static int count(T *t, const char *type, const char *mid) {
        int n = 0;
        while (nth(t, type, mid, n))
                n++;
        return n;
}

/* Index in t->sent, or -1. */
static int index_of(T *t, const json_t *env) {
        size_t i;
        json_t *v;
        json_array_foreach(t->sent, i, v) if (v == env) return (int)i;
        return -1;
}

static json_t *result_of(T *t, const char *mid) {
        return nth(t, "command.result", mid, 0);
}

static bool has_result(T *t, const char *mid) {
        return result_of(t, mid) != NULL;
}

static void run_until_result(T *t, const char *mid, int timeout_ms) {
        uint64_t end = util_mono_ms() + (uint64_t)timeout_ms;
        while (!has_result(t, mid)) {
                assert_true(util_mono_ms() < end);
                assert_int_equal(loop_run_once(t->l, 20), 0);
        }
}

static void run_for(T *t, int ms) {
        uint64_t end = util_mono_ms() + (uint64_t)ms;
        while (util_mono_ms() < end)
                assert_int_equal(loop_run_once(t->l, 10), 0);
}

static const char *err_code(const json_t *res) {
        return json_string_value(json_object_get(json_object_get(json_object_get(res, "data"), "error"),
                                                 "code"));
}

static const char *err_msg(const json_t *res) {
        return json_string_value(
                json_object_get(json_object_get(json_object_get(res, "data"), "error"), "message"));
}

static bool err_retryable(const json_t *res) {
        return json_is_true(
                json_object_get(json_object_get(json_object_get(res, "data"), "error"), "retryable"));
}

static const char *status_of(const json_t *res) {
        return json_string_value(json_object_get(json_object_get(res, "data"), "status"));
}

static void assert_envelope(const json_t *env) {
        const char *id = json_string_value(json_object_get(env, "messageId"));
        const char *ts = json_string_value(json_object_get(env, "timestamp"));
        assert_non_null(id);
        assert_int_equal(strlen(id), 36);
        assert_int_equal(id[14], '4');
        assert_non_null(ts);
        assert_int_equal(strlen(ts), 24);
        assert_int_equal(ts[23], 'Z');
        assert_true(json_is_object(json_object_get(env, "data")));
}

/* ---- tests ---- */

static void test_valid_flow_and_metadata_echo(void **state) {
        T *t = *state;
        const char *meta = "{\"priority\":\"normal\",\"executionId\":\"e1c2d3f4-0000-4000-8000-000000000001\","
                           "\"stepIndex\":3,\"correlationId\":\"c-1\",\"retryCount\":0}";
        json_t *ack, *res, *want = json_loads(meta, 0, NULL);

        open_engine(t);
        assert_int_equal(send_cmd(t, "system.healthCheck", "m-1", "{}", meta), 0);
        ack = nth(t, "command.ack", "m-1", 0);
        res = result_of(t, "m-1");
        assert_non_null(ack);
        assert_non_null(res);
        assert_true(index_of(t, ack) < index_of(t, res));
        assert_envelope(ack);
        assert_envelope(res);
        assert_string_equal(json_string_value(json_object_get(json_object_get(ack, "data"), "status")),
                            "acknowledged");
        assert_int_equal(json_integer_value(
                                 json_object_get(json_object_get(ack, "data"), "estimatedDuration")),
                         2);
        assert_true(json_equal(json_object_get(ack, "metadata"), want));
        assert_true(json_equal(json_object_get(res, "metadata"), want));
        assert_string_equal(status_of(res), "success");
        assert_string_equal(json_string_value(json_object_get(json_object_get(res, "data"),
                                                              "deploymentId")),
                            "res-1");
        assert_string_not_equal(json_string_value(json_object_get(ack, "messageId")),
                                json_string_value(json_object_get(res, "messageId")));
        json_decref(want);

        /* Without resource the node id is the deploymentId; without metadata
         * none is sent. */
        json_t *env = json_pack("{s:s, s:s}", "type", "system.healthCheck", "messageId", "m-2");
        assert_int_equal(recv_env(t, env), 0);
        res = result_of(t, "m-2");
        assert_string_equal(json_string_value(json_object_get(json_object_get(res, "data"),
                                                              "deploymentId")),
                            "node-1");
        assert_null(json_object_get(res, "metadata"));
        assert_null(json_object_get(nth(t, "command.ack", "m-2", 0), "metadata"));
}

static void test_validation_errors(void **state) {
        static const struct {
                const char *type, *data, *meta, *want;
        } cases[] = {
                { "system.restart", "{\"delaySeconds\":\"x\"}", NULL, "data.delaySeconds" },
                { "system.restart", "{\"delaySeconds\":4000}", NULL, "data.delaySeconds" },
                { "system.restart", "{\"delaySeconds\":-1}", NULL, "data.delaySeconds" },
                { "system.restart", "{\"delaySeconds\":1.5}", NULL, "data.delaySeconds" },
                { "system.restart", "{\"reason\":5}", NULL, "data.reason" },
                { "system.healthCheck", "{\"includeMetrics\":\"yes\"}", NULL, "data.includeMetrics" },
                { "system.healthCheck", "{\"includeDeployments\":1}", NULL, "data.includeDeployments" },
                { "system.update", "{\"sha256\":\"" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" "\"}", NULL, "data.url" },
                { "system.update", "{\"url\":\"ftp://h/x\",\"sha256\":\"" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" "\"}", NULL, "data.url" },
                { "system.update", "{\"url\":\"http://h/x\"}", NULL, "data.sha256" },
                { "system.update", "{\"url\":\"http://h/x\",\"sha256\":\"abc\"}", NULL, "data.sha256" },
                { "system.update", "{\"url\":\"http://h/x\",\"sha256\":\"" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg" "\"}", NULL, "data.sha256" },
                { "system.update", "{\"url\":\"http://h/x\",\"sha256\":\"" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" "\",\"version\":7}", NULL, "data.version" },
                { "system.update", "{\"url\":\"http://h/x\",\"sha256\":\"" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" "\",\"restart\":\"no\"}", NULL, "data.restart" },
                { "test.slow", "{}", NULL, "data.ms" },
                { "system.healthCheck", "[]", NULL, "data must be an object" },
                { "system.healthCheck", "{}", "{\"priority\":\"urgent\"}", "metadata.priority" },
                { "system.healthCheck", "{}", "{\"timeout\":-1}", "metadata.timeout" },
                { "system.healthCheck", "{}", "{\"timeout\":\"5\"}", "metadata.timeout" },
                { "system.healthCheck", "{}", "{\"timeout\":99999999}", "metadata.timeout" },
                { "foo.bar", "{}", NULL, "unknown command type foo.bar" },
                { "telemetry.heartbeat", "{}", NULL, "unknown command type" },
                { "job.start", "{}", NULL, "job.start is not implemented" },
                { "deployment.create", "{}", NULL, "not implemented" },
        };
        T *t = *state;
        char mid[32];

        open_engine(t);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                json_t *ack, *res;
                snprintf(mid, sizeof mid, "v-%zu", i);
                assert_int_equal(send_cmd(t, cases[i].type, mid, cases[i].data,
                                          cases[i].meta ? cases[i].meta : "{\"executionId\":\"x\",\"stepIndex\":1}"),
                                 0);
                ack = nth(t, "command.ack", mid, 0);
                res = result_of(t, mid);
                assert_non_null(ack);
                assert_non_null(res);
                assert_true(index_of(t, ack) < index_of(t, res));
                assert_string_equal(status_of(res), "error");
                assert_string_equal(err_code(res), "2001");
                assert_false(err_retryable(res));
                if (!strstr(err_msg(res), cases[i].want))
                        fail_msg("case %zu: message \"%s\" lacks \"%s\"", i, err_msg(res), cases[i].want);
                assert_string_equal(json_string_value(json_object_get(json_object_get(res, "data"),
                                                                      "deploymentId")),
                                    "res-1");
                assert_non_null(json_object_get(res, "metadata"));
        }
        assert_int_equal(fk.starts, 0);

        /* Envelope-level errors. */
        json_t *env = mk("system.healthCheck", "e-1", NULL, NULL);
        json_object_set_new(env, "metadata", json_string("x"));
        assert_int_equal(recv_env(t, env), 0);
        assert_non_null(strstr(err_msg(result_of(t, "e-1")), "metadata must be an object"));
        assert_null(json_object_get(result_of(t, "e-1"), "metadata"));
        env = mk("system.healthCheck", "e-2", NULL, NULL);
        json_object_set_new(env, "resource", json_integer(5));
        assert_int_equal(recv_env(t, env), 0);
        assert_non_null(strstr(err_msg(result_of(t, "e-2")), "resource must be an object"));
        env = mk("system.healthCheck", "e-3", NULL, NULL);
        json_object_set_new(env, "resource", json_pack("{s:i}", "id", 5));
        assert_int_equal(recv_env(t, env), 0);
        assert_non_null(strstr(err_msg(result_of(t, "e-3")), "resource.id"));
        env = mk("system.healthCheck", "e-4", NULL, NULL);
        json_object_del(env, "type");
        assert_int_equal(recv_env(t, env), 0);
        assert_non_null(strstr(err_msg(result_of(t, "e-4")), "type must be a string"));
        assert_non_null(nth(t, "command.ack", "e-4", 0));

        /* cmd_engine_validate() agrees and has no side effect. */
        char err[256];
        size_t before = json_array_size(t->sent);
        env = mk("system.restart", "x-1", "{\"delaySeconds\":\"x\"}", NULL);
        assert_int_equal(cmd_engine_validate(t->e, env, err, sizeof err), -EBADMSG);
        assert_non_null(strstr(err, "data.delaySeconds"));
        json_object_set_new(env, "data", json_pack("{s:i}", "delaySeconds", 3));
        assert_int_equal(cmd_engine_validate(t->e, env, err, sizeof err), 0);
        json_decref(env);
        assert_int_equal(json_array_size(t->sent), before);
        assert_int_equal(fk.starts, 0);
}

static void test_dropped(void **state) {
        T *t = *state;
        char err[256];
        json_t *bad[] = {
                json_string("x"),
                json_array(),
                json_pack("{s:s}", "type", "system.healthCheck"),
                json_pack("{s:s, s:i}", "type", "system.healthCheck", "messageId", 5),
                json_pack("{s:s, s:s}", "type", "system.healthCheck", "messageId", ""),
                json_pack("{s:s, s:s}", "type", "system.healthCheck", "messageId",
                          "0123456789012345678901234567890123456789012345678901234567890123456789"
                          "0123456789012345678901234567890123456789012345678901234567890123456789"),
                NULL,
        };
        int64_t n;

        /* Before cmd_engine_start(): refused. */
        {
                char e2[256];
                cmd_host host = { .l = t->l, .node_id = "n" };
                cmd_engine *e;
                assert_int_equal(db_open(NULL, e2, sizeof e2, &t->d), 0);
                host.db = t->d;
                assert_int_equal(cmd_engine_new(&host, NULL, &e), 0);
                json_t *env = mk("system.healthCheck", "m", NULL, NULL);
                assert_int_equal(cmd_engine_receive(e, env, err, sizeof err), -EAGAIN);
                json_decref(env);
                cmd_engine_free(e);
                t->d = db_close(t->d);
        }

        open_engine(t);
        for (size_t i = 0; bad[i]; i++) {
                err[0] = '\0';
                assert_int_equal(cmd_engine_receive(t->e, bad[i], err, sizeof err), -EINVAL);
                assert_true(strlen(err) > 0);
                json_decref(bad[i]);
        }
        assert_int_equal(cmd_engine_receive(t->e, NULL, err, sizeof err), -EINVAL);
        assert_int_equal(json_array_size(t->sent), 0);
        assert_int_equal(db_outbox_count(t->d, &n), 0);
        assert_int_equal(n, 0);
}

static void test_duplicate_runs_once(void **state) {
        T *t = *state;
        json_t *res, *res2;

        open_engine(t);
        assert_int_equal(send_cmd(t, "test.slow", "d-1", "{\"ms\":50}", "{\"executionId\":\"x\"}"), 0);
        assert_int_equal(send_cmd(t, "test.slow", "d-1", "{\"ms\":50}", "{\"executionId\":\"x\"}"), 0);
        assert_int_equal(count(t, "command.ack", "d-1"), 2); /* running: acknowledged again */
        assert_int_equal(fk.starts, 1);
        run_until_result(t, "d-1", 2000);
        assert_int_equal(send_cmd(t, "test.slow", "d-1", "{\"ms\":50}", "{\"executionId\":\"x\"}"), 0);
        assert_int_equal(count(t, "command.result", "d-1"), 2);
        res = nth(t, "command.result", "d-1", 0);
        res2 = nth(t, "command.result", "d-1", 1);
        assert_true(json_equal(res, res2)); /* the stored result, byte for byte */
        assert_int_equal(count(t, "command.ack", "d-1"), 2);
        run_for(t, 100);
        assert_int_equal(fk.starts, 1);

        /* An invalid command re-sent gets its stored error again. */
        assert_int_equal(send_cmd(t, "foo.bar", "d-2", NULL, NULL), 0);
        assert_int_equal(send_cmd(t, "foo.bar", "d-2", NULL, NULL), 0);
        assert_int_equal(count(t, "command.result", "d-2"), 2);
        assert_int_equal(count(t, "command.ack", "d-2"), 1);
}

static void test_duplicate_across_restart(void **state) {
        T *t = *state;

        open_engine(t);
        assert_int_equal(send_cmd(t, "test.count", "r-1", NULL, "{\"stepIndex\":0}"), 0);
        assert_int_equal(fk.starts, 1);
        assert_int_equal(count(t, "command.result", "r-1"), 1);
        close_engine(t);
        open_engine(t);
        assert_int_equal(send_cmd(t, "test.count", "r-1", NULL, "{\"stepIndex\":0}"), 0);
        assert_int_equal(fk.starts, 1);
        assert_int_equal(count(t, "command.result", "r-1"), 2);
        assert_true(json_equal(nth(t, "command.result", "r-1", 0), nth(t, "command.result", "r-1", 1)));
}

static void test_results_wait_in_outbox(void **state) {
        T *t = *state;
        int64_t n;

        /* "Disconnected": nothing is drained; the replies survive a restart
         * and come out in order afterwards. */
        t->no_drain = true;
        open_engine(t);
        assert_int_equal(send_cmd(t, "test.count", "o-1", NULL, NULL), 0);
        assert_int_equal(send_cmd(t, "test.count", "o-2", NULL, NULL), 0);
        close_engine(t);
        open_engine(t);
        assert_int_equal(db_outbox_count(t->d, &n), 0);
        assert_int_equal(n, 4);
        t->no_drain = false;
        drain(t);
        assert_int_equal(json_array_size(t->sent), 4);
        assert_ptr_equal(nth(t, "command.ack", "o-1", 0), json_array_get(t->sent, 0));
        assert_ptr_equal(nth(t, "command.result", "o-1", 0), json_array_get(t->sent, 1));
        assert_ptr_equal(nth(t, "command.ack", "o-2", 0), json_array_get(t->sent, 2));
        assert_ptr_equal(nth(t, "command.result", "o-2", 0), json_array_get(t->sent, 3));
}

static void test_interrupted_by_restart(void **state) {
        T *t = *state;
        json_t *res;

        t->cfg.max_concurrent = 1;
        open_engine(t);
        assert_int_equal(send_cmd(t, "test.slow", "i-1", "{\"ms\":60000}", "{\"executionId\":\"x\",\"stepIndex\":2}"), 0);
        assert_int_equal(send_cmd(t, "test.slow", "i-2", "{\"ms\":60000}", NULL), 0); /* queued */
        assert_int_equal(cmd_engine_running(t->e), 1);
        assert_int_equal(cmd_engine_queued(t->e), 1);
        close_engine(t);
        assert_int_equal(fk.cancels, 1); /* the running one was cancelled */
        assert_int_equal(count(t, "command.result", "i-1"), 0);

        open_engine(t);
        res = result_of(t, "i-1");
        assert_non_null(res);
        assert_string_equal(err_code(res), "3001");
        assert_true(err_retryable(res));
        assert_non_null(strstr(err_msg(res), "interrupted by restart"));
        assert_int_equal(json_integer_value(json_object_get(json_object_get(res, "metadata"), "stepIndex")), 2);
        assert_string_equal(json_string_value(json_object_get(json_object_get(res, "data"), "deploymentId")),
                            "res-1");
        assert_string_equal(err_code(result_of(t, "i-2")), "3001");
        assert_int_equal(fk.starts, 1);
        close_engine(t);
        open_engine(t);
        assert_int_equal(count(t, "command.result", "i-1"), 1);
        assert_int_equal(count(t, "command.result", "i-2"), 1);
}

static void test_resumable(void **state) {
        T *t = *state;
        json_t *res;

        open_engine(t);
        assert_int_equal(send_cmd(t, "test.resumable", "s-1", "{\"ms\":60000,\"tag\":\"R\"}", "{\"executionId\":\"x\"}"), 0);
        close_engine(t);
        /* The resumed run is shorter: the fake reads ms from the stored data,
         * so rewrite it in the database as a handler's progress would. */
        {
                char err[256];
                assert_int_equal(db_open(t->dir, err, sizeof err, &t->d), 0);
                assert_int_equal(db_exec(t->d, "UPDATE commands SET payload = replace(payload, '60000', '10')"), 0);
                t->d = db_close(t->d);
        }
        open_engine(t);
        assert_int_equal(fk.resumes, 1);
        run_until_result(t, "s-1", 2000);
        res = result_of(t, "s-1");
        assert_string_equal(status_of(res), "success");
        assert_true(json_is_true(json_object_get(json_object_get(json_object_get(res, "data"), "result"), "resumed")));
        assert_int_equal(count(t, "command.ack", "s-1"), 1);
        close_engine(t);
        open_engine(t);
        assert_int_equal(fk.resumes, 1);
        assert_int_equal(count(t, "command.result", "s-1"), 1);
}

static void test_timeout(void **state) {
        T *t = *state;
        json_t *res;

        t->cfg.max_concurrent = 1;
        open_engine(t);
        assert_int_equal(send_cmd(t, "test.slow", "t-1", "{\"ms\":1500,\"tag\":\"A\"}", NULL), 0);
        assert_int_equal(send_cmd(t, "test.slow", "t-2", "{\"ms\":10}", "{\"timeout\":1}"), 0);
        /* t-2 times out while queued: no start, no cancel. */
        run_until_result(t, "t-2", 3000);
        res = result_of(t, "t-2");
        assert_string_equal(err_code(res), "3002");
        assert_true(err_retryable(res));
        assert_int_equal(fk.starts, 1);
        assert_int_equal(fk.cancels, 0);
        run_until_result(t, "t-1", 3000);
        assert_string_equal(status_of(result_of(t, "t-1")), "success");

        /* A running job that outlives its timeout is cancelled. */
        assert_int_equal(send_cmd(t, "test.slow", "t-3", "{\"ms\":10000}", "{\"timeout\":1,\"executionId\":\"x\"}"), 0);
        run_until_result(t, "t-3", 3000);
        res = result_of(t, "t-3");
        assert_string_equal(err_code(res), "3002");
        assert_non_null(strstr(err_msg(res), "timed out"));
        assert_string_equal(json_string_value(json_object_get(json_object_get(res, "metadata"), "executionId")), "x");
        assert_int_equal(fk.cancels, 1);
        assert_int_equal(fk.active, 0);
        assert_int_equal(count(t, "command.result", "t-3"), 1);
        run_for(t, 50);
        assert_int_equal(cmd_engine_running(t->e), 0);
}

static void test_concurrency_and_priority(void **state) {
        T *t = *state;
        const char *want[] = { "A1", "A2", "H1", "H2", "N1", "N2", "L" };

        t->cfg.max_concurrent = 2;
        open_engine(t);
        assert_int_equal(send_cmd(t, "test.slow", "p-a1", "{\"ms\":100,\"tag\":\"A1\"}", "{\"priority\":\"low\"}"), 0);
        assert_int_equal(send_cmd(t, "test.slow", "p-a2", "{\"ms\":100,\"tag\":\"A2\"}", NULL), 0);
        assert_int_equal(send_cmd(t, "test.slow", "p-l", "{\"ms\":10,\"tag\":\"L\"}", "{\"priority\":\"low\"}"), 0);
        assert_int_equal(send_cmd(t, "test.slow", "p-n1", "{\"ms\":10,\"tag\":\"N1\"}", "{\"priority\":\"normal\"}"), 0);
        assert_int_equal(send_cmd(t, "test.slow", "p-h1", "{\"ms\":10,\"tag\":\"H1\"}", "{\"priority\":\"high\"}"), 0);
        assert_int_equal(send_cmd(t, "test.slow", "p-n2", "{\"ms\":10,\"tag\":\"N2\"}", NULL), 0);
        assert_int_equal(send_cmd(t, "test.slow", "p-h2", "{\"ms\":10,\"tag\":\"H2\"}", "{\"priority\":\"high\"}"), 0);
        assert_int_equal(cmd_engine_running(t->e), 2);
        assert_int_equal(cmd_engine_queued(t->e), 5);
        /* Every command is acknowledged at once, queued or not. */
        assert_int_equal(json_array_size(t->sent), 7);
        /* Quick commands are not held up behind the slow ones. */
        assert_int_equal(send_cmd(t, "system.healthCheck", "p-hc", NULL, NULL), 0);
        assert_non_null(result_of(t, "p-hc"));
        run_until_result(t, "p-l", 3000);
        assert_int_equal(fk.norder, 7);
        for (int i = 0; i < 7; i++)
                assert_string_equal(fk.order[i], want[i]);
        assert_int_equal(fk.max_active, 2);
        run_for(t, 30);
        assert_int_equal(cmd_engine_running(t->e), 0);
        assert_int_equal(cmd_engine_queued(t->e), 0);
}

static void test_queue_full_and_start_failure(void **state) {
        T *t = *state;

        t->cfg.max_concurrent = 1;
        t->cfg.max_queued = 1;
        open_engine(t);
        assert_int_equal(send_cmd(t, "test.slow", "q-1", "{\"ms\":20}", NULL), 0);
        assert_int_equal(send_cmd(t, "test.slow", "q-2", "{\"ms\":20}", NULL), 0);
        assert_int_equal(send_cmd(t, "test.slow", "q-3", "{\"ms\":20}", NULL), 0);
        assert_string_equal(err_code(result_of(t, "q-3")), "3003");
        assert_true(err_retryable(result_of(t, "q-3")));
        run_until_result(t, "q-2", 2000);
        assert_string_equal(status_of(result_of(t, "q-1")), "success");

        assert_int_equal(send_cmd(t, "test.fail", "f-1", NULL, NULL), 0);
        assert_string_equal(err_code(result_of(t, "f-1")), "3001");
        assert_non_null(strstr(err_msg(result_of(t, "f-1")), "could not start"));
}

static void test_emit(void **state) {
        T *t = *state;
        json_t *ev = NULL, *v;
        size_t i;

        open_engine(t);
        json_t *env = mk("test.emit", "em-1", NULL, "{\"executionId\":\"x\"}");
        json_object_set_new(env, "resource", json_pack("{s:s, s:s}", "type", "deployment", "id", "dep-9"));
        assert_int_equal(recv_env(t, env), 0);
        json_array_foreach(t->sent, i, v) if (strcmp(json_string_value(json_object_get(v, "type")), "deployment.status") == 0) ev = v;
        assert_non_null(ev);
        assert_envelope(ev);
        assert_string_equal(json_string_value(json_object_get(json_object_get(ev, "resource"), "id")), "dep-9");
        assert_string_equal(json_string_value(json_object_get(json_object_get(ev, "metadata"), "executionId")), "x");
        assert_true(index_of(t, nth(t, "command.ack", "em-1", 0)) < index_of(t, ev));
        assert_true(index_of(t, ev) < index_of(t, result_of(t, "em-1")));
        assert_null(json_object_get(json_object_get(result_of(t, "em-1"), "data"), "result"));
        assert_string_equal(json_string_value(json_object_get(json_object_get(result_of(t, "em-1"), "data"), "deploymentId")), "dep-9");

        assert_int_equal(cmd_engine_emit(t->e, "deployment.status", NULL, json_pack("{s:s}", "status", "failed")), 0);
        ev = json_array_get(t->sent, json_array_size(t->sent) - 1);
        assert_string_equal(json_string_value(json_object_get(ev, "type")), "deployment.status");
        assert_null(json_object_get(ev, "resource"));
}

static void test_storm(void **state) {
        T *t = *state;
        size_t mem_early = 0;
        char mid[32];
        int64_t n;

        open_engine(t);
        t->storm = true;
        log_set_level(LOG_ERROR);
        for (unsigned i = 0; i < 10000; i++) {
                snprintf(mid, sizeof mid, "s-%u", i);
                assert_int_equal(send_cmd(t, "system.healthCheck", mid, "{\"includeMetrics\":true}", "{\"executionId\":\"x\"}"), 0);
                if (i % 100 == 0)
                        assert_int_equal(loop_run_once(t->l, 0), 0);
                if (i == 1000)
                        mem_early = mallinfo2().uordblks;
        }
        assert_false(t->storm_bad);
        assert_int_equal(t->storm_acks, 10000);
        assert_int_equal(t->storm_results, 10000);
        assert_int_equal(cmd_engine_running(t->e), 0);
        assert_int_equal(cmd_engine_queued(t->e), 0);
        assert_int_equal(db_outbox_count(t->d, &n), 0);
        assert_int_equal(n, 0);
        /* Memory does not grow with the number of commands (SQLite's page
         * cache aside, which is bounded). */
        size_t mem_late = mallinfo2().uordblks;
        if (mem_late > mem_early)
                assert_true(mem_late - mem_early < 4u * 1024 * 1024);
}

static void test_health_shapes(void **state) {
        T *t = *state;
        json_t *r;

        t->metrics = json_loads("{\"cpu\":{\"usage\":45.5,\"cores\":8},\"memory\":{\"used\":65536,\"total\":1},"
                                "\"disk\":{\"used\":512000},\"gpuDevices\":[{\"deviceId\":\"0\",\"utilization\":3}]}",
                                0, NULL);
        open_engine(t);
        assert_int_equal(send_cmd(t, "system.healthCheck", "h-1", NULL, NULL), 0);
        r = json_object_get(json_object_get(result_of(t, "h-1"), "data"), "result");
        assert_string_equal(json_string_value(json_object_get(r, "nodeStatus")), "healthy");
        assert_int_equal(json_integer_value(json_object_get(r, "uptimeSeconds")), 86400);
        assert_int_equal(strlen(json_string_value(json_object_get(r, "timestamp"))), 24);
        assert_null(json_object_get(r, "metrics"));
        assert_null(json_object_get(r, "deployments"));

        assert_int_equal(send_cmd(t, "system.healthCheck", "h-2", "{\"includeMetrics\":true,\"includeDeployments\":true}", NULL), 0);
        r = json_object_get(json_object_get(result_of(t, "h-2"), "data"), "result");
        json_t *m = json_object_get(r, "metrics");
        assert_true(json_real_value(json_object_get(m, "cpuUsage")) == 45.5);
        assert_int_equal(json_integer_value(json_object_get(m, "ramUsed")), 65536);
        assert_int_equal(json_integer_value(json_object_get(m, "diskUsed")), 512000);
        assert_int_equal(json_array_size(json_object_get(m, "gpuDevices")), 1);
        assert_true(json_is_array(json_object_get(r, "deployments")));
        assert_int_equal(json_array_size(json_object_get(r, "deployments")), 0); /* provider: none */

        t->deployments = json_loads("[{\"deploymentId\":\"deploy-abc123\",\"status\":\"running\",\"uptime\":3600}]", 0, NULL);
        json_decref(t->metrics);
        t->metrics = NULL;
        assert_int_equal(send_cmd(t, "system.healthCheck", "h-3", "{\"includeMetrics\":true,\"includeDeployments\":true}", NULL), 0);
        r = json_object_get(json_object_get(result_of(t, "h-3"), "data"), "result");
        assert_true(json_equal(json_object_get(r, "deployments"), t->deployments));
        m = json_object_get(r, "metrics");
        assert_non_null(m); /* no sample yet: empty metrics, never a failure */
        assert_int_equal(json_array_size(json_object_get(m, "gpuDevices")), 0);
}

static void test_query(void **state) {
        T *t = *state;
        json_t *r;

        open_engine(t);
        assert_int_equal(send_cmd(t, "system.query", "qy-1", NULL, NULL), 0);
        assert_string_equal(err_code(result_of(t, "qy-1")), "3001"); /* no inventory yet */
        t->inventory = json_pack("{s:s, s:s, s:i}", "nodeId", "node-1", "hostname", "gpu-01", "cpuCores", 16);
        assert_int_equal(send_cmd(t, "system.query", "qy-2", NULL, NULL), 0);
        r = json_object_get(json_object_get(result_of(t, "qy-2"), "data"), "result");
        assert_string_equal(json_string_value(json_object_get(r, "hostname")), "gpu-01");
        assert_int_equal(json_integer_value(json_object_get(r, "cpuCores")), 16);
        assert_string_equal(json_string_value(json_object_get(json_object_get(r, "configuration"), "NODE_TOKEN")),
                            "[redacted]");
        assert_non_null(json_string_value(json_object_get(r, "version")));
        /* The provider's object is not modified. */
        assert_null(json_object_get(t->inventory, "configuration"));
}

static void test_restart(void **state) {
        T *t = *state;
        json_t *res;

        open_engine(t);
        t->restart_mid = "rs-1";
        t->no_drain = true; /* as when the session has not flushed yet */
        assert_int_equal(send_cmd(t, "system.restart", "rs-1", "{\"delaySeconds\":5,\"reason\":\"maintenance\"}", NULL), 0);
        t->no_drain = false;
        drain(t);
        assert_int_equal(t->restarts, 1);
        assert_int_equal(t->restart_delay, 5000);
        assert_true(t->result_queued_at_restart);
        res = result_of(t, "rs-1");
        assert_string_equal(status_of(res), "success");
        assert_int_equal(strlen(json_string_value(json_object_get(json_object_get(json_object_get(res, "data"), "result"), "restartingAt"))), 24);
        assert_int_equal(json_integer_value(json_object_get(json_object_get(nth(t, "command.ack", "rs-1", 0), "data"), "estimatedDuration")), 5);
        /* Redelivered after the restart: not restarted again. */
        close_engine(t);
        open_engine(t);
        assert_int_equal(send_cmd(t, "system.restart", "rs-1", "{\"delaySeconds\":5}", NULL), 0);
        assert_int_equal(t->restarts, 1);
        assert_int_equal(count(t, "command.result", "rs-1"), 2);
}

/* ---- update rollback (the download itself is tested with http) ---- */

static void write_file(const char *path, const char *content) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
        close(fd);
}

static char *read_all(const char *path) {
        char *data;
        size_t len;
        assert_int_equal(util_read_file(path, 1 << 20, &data, &len), 0);
        return data;
}

static void put_pending(T *t, const char *exe, const char *prev, const char *sha, int starts) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:i}", "exePath", exe,
                                       "previousPath", prev, "previousVersion", "0.1.0",
                                       "newVersion", "0.2.0", "sha256", sha, "confirmWithinMs", 100,
                                       "starts", starts);
        char *s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        assert_int_equal(db_kv_set(t->d, "update.pending", s), 0);
        free(s);
}

/* sha256("new binary\n") */
#define NEW_SHA "9a1f4b4d8fb5f0c2bd80ddb43c7a62a34b7a2bab7b8a9e3b6b0b2bc8f2f0c0f1"

static void test_update_rollback(void **state) {
        T *t = *state;
        char exe[128], prev[128], sha[65], *c, *v;
        json_t *note;

        snprintf(exe, sizeof exe, "%s/aiwm-worker", t->dir);
        snprintf(prev, sizeof prev, "%s/aiwm-worker.previous", t->dir);
        t->sys.exe_path = exe;
        t->sys.confirm_ms = 100;
        open_engine(t);
        write_file(exe, "new binary\n");
        write_file(prev, "old binary\n");
        {
                /* The real hash of exe. */
                FILE *p;
                char cmd[256];
                snprintf(cmd, sizeof cmd, "sha256sum '%s'", exe);
                p = popen(cmd, "r");
                assert_non_null(p);
                assert_non_null(fgets(sha, sizeof sha, p));
                pclose(p);
        }

        /* Nothing pending. */
        assert_int_equal(cmd_system_check_update(t->e), 0);
        assert_int_equal(cmd_system_take_rollback(t->e, &note), -ENOENT);

        /* A stale record (hash of another file) is discarded. */
        put_pending(t, exe, prev, NEW_SHA, 0);
        assert_int_equal(cmd_system_check_update(t->e), 0);
        assert_int_equal(db_kv_get(t->d, "update.pending", &v), -ENOENT);

        /* First start of the new binary, confirmed in time. */
        put_pending(t, exe, prev, sha, 0);
        assert_int_equal(cmd_system_check_update(t->e), 0);
        assert_int_equal(db_kv_get(t->d, "update.pending", &v), 0);
        assert_non_null(strstr(v, "\"starts\":1"));
        free(v);
        cmd_system_update_confirmed(t->e);
        assert_int_equal(db_kv_get(t->d, "update.pending", &v), -ENOENT);
        run_for(t, 150);
        assert_int_equal(t->restarts, 0);

        /* Not confirmed before the deadline: rolled back and re-executed. */
        put_pending(t, exe, prev, sha, 0);
        assert_int_equal(cmd_system_check_update(t->e), 0);
        run_for(t, 200);
        assert_int_equal(t->restarts, 1);
        c = read_all(exe);
        assert_string_equal(c, "old binary\n");
        free(c);
        assert_int_equal(cmd_system_take_rollback(t->e, &note), 0);
        assert_string_equal(json_string_value(json_object_get(note, "fromVersion")), "0.2.0");
        assert_string_equal(json_string_value(json_object_get(note, "toVersion")), "0.1.0");
        assert_non_null(strstr(json_string_value(json_object_get(note, "reason")), "in time"));
        json_decref(note);
        assert_int_equal(cmd_system_take_rollback(t->e, &note), -ENOENT);

        /* The new binary crashed before confirming: the next start rolls back. */
        write_file(exe, "new binary\n");
        write_file(prev, "old binary\n");
        put_pending(t, exe, prev, sha, 1);
        assert_int_equal(cmd_system_check_update(t->e), 1);
        assert_int_equal(t->restarts, 2);
        c = read_all(exe);
        assert_string_equal(c, "old binary\n");
        free(c);
        assert_int_equal(cmd_system_take_rollback(t->e, &note), 0);
        assert_non_null(strstr(json_string_value(json_object_get(note, "reason")), "exited"));
        json_decref(note);
        assert_int_equal(db_kv_get(t->d, "update.pending", &v), -ENOENT);
}


/* ---- system.update against a small HTTP server on the loop ---- */

typedef struct srv srv;

typedef struct srv_conn {
        srv *s;
        int fd;
        loop_io *io;
        char req[4096];
        size_t len;
} srv_conn;

struct srv {
        loop *l;
        int fd;
        loop_io *io;
        int port;
        int status; /* 0: accept and never answer */
        const char *body;
        srv_conn conns[8];
        int n;
};

static void srv_conn_cb(loop_io *io, int fd, unsigned events, void *userdata) {
        srv_conn *c = userdata;
        char head[256];
        ssize_t n = read(fd, c->req + c->len, sizeof c->req - 1 - c->len);

        if (n <= 0) {
                c->io = loop_io_stop(c->io);
                return;
        }
        c->len += (size_t)n;
        c->req[c->len] = '\0';
        if (!strstr(c->req, "\r\n\r\n") || c->s->status == 0)
                return;
        snprintf(head, sizeof head, "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                 c->s->status, strlen(c->s->body));
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        assert_int_equal(write(fd, head, strlen(head)), (ssize_t)strlen(head));
        assert_int_equal(write(fd, c->s->body, strlen(c->s->body)), (ssize_t)strlen(c->s->body));
        c->io = loop_io_stop(c->io);
        close(fd);
        c->fd = -1;
}

static void srv_accept_cb(loop_io *io, int fd, unsigned events, void *userdata) {
        srv *s = userdata;
        int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        srv_conn *c;

        if (cfd < 0)
                return;
        assert_true(s->n < 8);
        c = &s->conns[s->n++];
        c->s = s;
        c->fd = cfd;
        assert_int_equal(loop_io_start(s->l, cfd, LOOP_READ, srv_conn_cb, c, &c->io), 0);
}

static void srv_start(srv *s, loop *l, int status, const char *body) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof a;

        memset(s, 0, sizeof *s);
        s->l = l;
        s->status = status;
        s->body = body;
        s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        assert_true(s->fd >= 0);
        assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof a), 0);
        assert_int_equal(listen(s->fd, 8), 0);
        assert_int_equal(getsockname(s->fd, (struct sockaddr *)&a, &len), 0);
        s->port = ntohs(a.sin_port);
        assert_int_equal(loop_io_start(l, s->fd, LOOP_READ, srv_accept_cb, s, &s->io), 0);
}

static void srv_stop(srv *s) {
        for (int i = 0; i < s->n; i++) {
                loop_io_stop(s->conns[i].io);
                if (s->conns[i].fd >= 0)
                        close(s->conns[i].fd);
        }
        loop_io_stop(s->io);
        close(s->fd);
}

static void sha256_hex(const char *text, char out[65]) {
        unsigned char md[32];
        SHA256((const unsigned char *)text, strlen(text), md);
        for (int i = 0; i < 32; i++)
                snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static const char *new_exe = "#!/bin/sh\necho aiwm-worker 0.2.0\n";

static void update_cmd(T *t, srv *s, const char *mid, const char *body_for_sha, const char *extra,
                       const char *meta) {
        char data[512], sha[65];
        sha256_hex(body_for_sha, sha);
        snprintf(data, sizeof data, "{\"url\":\"http://127.0.0.1:%d/aiwm-worker\",\"sha256\":\"%s\"%s}",
                 s->port, sha, extra ? extra : "");
        assert_int_equal(send_cmd(t, "system.update", mid, data, meta), 0);
}

static void test_update(void **state) {
        T *t = *state;
        char exe[128], prev[128], newp[128], *c, *v;
        json_t *res, *r;
        struct stat st;
        srv s;

        snprintf(exe, sizeof exe, "%s/aiwm-worker", t->dir);
        snprintf(prev, sizeof prev, "%s/aiwm-worker.previous", t->dir);
        snprintf(newp, sizeof newp, "%s/aiwm-worker.new", t->dir);
        write_file(exe, "old binary\n");
        t->sys.exe_path = exe;
        t->sys.smoke_timeout_ms = 300;
        t->cfg.version = "0.1.0";
        open_engine(t);

        /* Success: swapped, previous kept, pending recorded, restarted after
         * the result was queued. */
        srv_start(&s, t->l, 200, new_exe);
        t->restart_mid = "u-1";
        update_cmd(t, &s, "u-1", new_exe, NULL, "{\"executionId\":\"x\"}");
        assert_non_null(nth(t, "command.ack", "u-1", 0));
        run_until_result(t, "u-1", 5000);
        res = result_of(t, "u-1");
        assert_string_equal(status_of(res), "success");
        r = json_object_get(json_object_get(res, "data"), "result");
        assert_string_equal(json_string_value(json_object_get(r, "previousVersion")), "0.1.0");
        assert_string_equal(json_string_value(json_object_get(r, "newVersion")), "0.2.0");
        assert_non_null(json_string_value(json_object_get(r, "restartingAt")));
        assert_int_equal(t->restarts, 1);
        assert_true(t->result_queued_at_restart);
        c = read_all(exe);
        assert_string_equal(c, new_exe);
        free(c);
        c = read_all(prev);
        assert_string_equal(c, "old binary\n");
        free(c);
        assert_int_equal(stat(exe, &st), 0);
        assert_true(st.st_mode & S_IXUSR);
        assert_int_equal(stat(newp, &st), -1);
        assert_int_equal(db_kv_get(t->d, "update.pending", &v), 0);
        assert_non_null(strstr(v, "\"newVersion\":\"0.2.0\""));
        assert_non_null(strstr(v, "\"starts\":0"));
        free(v);
        srv_stop(&s);

        /* restart false, version given: no restart, no restartingAt. */
        write_file(exe, "old binary\n");
        srv_start(&s, t->l, 200, new_exe);
        update_cmd(t, &s, "u-2", new_exe, ",\"restart\":false,\"version\":\"0.2.0-rc1\"", NULL);
        run_until_result(t, "u-2", 5000);
        r = json_object_get(json_object_get(result_of(t, "u-2"), "data"), "result");
        assert_string_equal(json_string_value(json_object_get(r, "newVersion")), "0.2.0-rc1");
        assert_null(json_object_get(r, "restartingAt"));
        assert_int_equal(t->restarts, 1);
        srv_stop(&s);

        /* Checksum mismatch: 2001, nothing replaced, temporary file gone. */
        write_file(exe, "old binary\n");
        srv_start(&s, t->l, 200, new_exe);
        update_cmd(t, &s, "u-3", "something else", NULL, NULL);
        run_until_result(t, "u-3", 5000);
        assert_string_equal(err_code(result_of(t, "u-3")), "2001");
        assert_non_null(strstr(err_msg(result_of(t, "u-3")), "data.sha256"));
        c = read_all(exe);
        assert_string_equal(c, "old binary\n");
        free(c);
        assert_int_equal(stat(newp, &st), -1);
        srv_stop(&s);

        /* HTTP 404: 2001, not retryable. */
        srv_start(&s, t->l, 404, "nope");
        update_cmd(t, &s, "u-4", "nope", NULL, NULL);
        run_until_result(t, "u-4", 5000);
        assert_string_equal(err_code(result_of(t, "u-4")), "2001");
        assert_non_null(strstr(err_msg(result_of(t, "u-4")), "404"));
        srv_stop(&s);

        /* Smoke test fails, then hangs. */
        srv_start(&s, t->l, 200, "#!/bin/sh\nexit 3\n");
        update_cmd(t, &s, "u-5", "#!/bin/sh\nexit 3\n", NULL, NULL);
        run_until_result(t, "u-5", 5000);
        assert_string_equal(err_code(result_of(t, "u-5")), "2001");
        assert_non_null(strstr(err_msg(result_of(t, "u-5")), "status 3"));
        srv_stop(&s);
        srv_start(&s, t->l, 200, "#!/bin/sh\nexec sleep 30\n");
        update_cmd(t, &s, "u-6", "#!/bin/sh\nexec sleep 30\n", NULL, NULL);
        run_until_result(t, "u-6", 5000);
        assert_non_null(strstr(err_msg(result_of(t, "u-6")), "did not answer"));
        srv_stop(&s);
        c = read_all(exe);
        assert_string_equal(c, "old binary\n");
        free(c);

        /* Nobody listening: 3004, retryable. */
        srv_start(&s, t->l, 200, new_exe);
        srv_stop(&s);
        update_cmd(t, &s, "u-7", new_exe, NULL, NULL);
        run_until_result(t, "u-7", 5000);
        assert_string_equal(err_code(result_of(t, "u-7")), "3004");
        assert_true(err_retryable(result_of(t, "u-7")));

        /* The server never answers: metadata.timeout cancels the download. */
        srv_start(&s, t->l, 0, "");
        update_cmd(t, &s, "u-8", new_exe, NULL, "{\"timeout\":1}");
        run_for(t, 100);
        /* A second update while one runs is refused. */
        update_cmd(t, &s, "u-9", new_exe, NULL, NULL);
        assert_string_equal(err_code(result_of(t, "u-9")), "3003");
        run_until_result(t, "u-8", 3000);
        assert_string_equal(err_code(result_of(t, "u-8")), "3002");
        assert_int_equal(stat(newp, &st), -1);
        srv_stop(&s);
        assert_int_equal(t->restarts, 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_valid_flow_and_metadata_echo, setup, teardown),
                cmocka_unit_test_setup_teardown(test_validation_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dropped, setup, teardown),
                cmocka_unit_test_setup_teardown(test_duplicate_runs_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_duplicate_across_restart, setup, teardown),
                cmocka_unit_test_setup_teardown(test_results_wait_in_outbox, setup, teardown),
                cmocka_unit_test_setup_teardown(test_interrupted_by_restart, setup, teardown),
                cmocka_unit_test_setup_teardown(test_resumable, setup, teardown),
                cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
                cmocka_unit_test_setup_teardown(test_concurrency_and_priority, setup, teardown),
                cmocka_unit_test_setup_teardown(test_queue_full_and_start_failure, setup, teardown),
                cmocka_unit_test_setup_teardown(test_emit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_storm, setup, teardown),
                cmocka_unit_test_setup_teardown(test_health_shapes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_query, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restart, setup, teardown),
                cmocka_unit_test_setup_teardown(test_update_rollback, setup, teardown),
                cmocka_unit_test_setup_teardown(test_update, setup, teardown),
        };
        log_set_level(LOG_ERROR);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
