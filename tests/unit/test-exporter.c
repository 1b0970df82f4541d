/* Unit tests of src/commands/exporter.c: exact rendering of a fixed
 * telemetry.metrics object, escaping, absent and mistyped figures, command
 * counters, /healthz and the route; every rendering also goes through a
 * real Prometheus text parser (tests/tools/prom-check.py: the official
 * Python client's parser, strict checks, and promtool when installed). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "commands/exporter.h"
#include "core/buf.h"
#include "core/util.h"

#define FIX AIWM_FIXTURES "/exporter/"
#define PROM_CHECK AIWM_FIXTURES "/../tools/prom-check.py"

static json_t *load(const char *name) {
        json_error_t je;
        char path[512];
        json_t *j;

        snprintf(path, sizeof path, FIX "%s", name);
        j = json_load_file(path, 0, &je);
        if (!j)
                fail_msg("%s: %s", path, je.text);
        return j;
}

static char *slurp(const char *name) {
        char path[512], *data = NULL;
        size_t len;

        snprintf(path, sizeof path, FIX "%s", name);
        assert_int_equal(util_read_file(path, 1 << 20, &data, &len), 0);
        return data;
}

/* 1: the checker accepted text, 0: rejected, -1: no checker here. */
static int prom_check(const char *text) {
        char cmd[600];
        FILE *p;
        int st;

        if (access("/usr/bin/python3", X_OK) != 0 ||
            system("/usr/bin/python3 -c 'import prometheus_client.parser' 2>/dev/null") != 0)
                return -1;
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s", PROM_CHECK);
        p = popen(cmd, "w");
        assert_non_null(p);
        fputs(text, p);
        st = pclose(p);
        assert_true(WIFEXITED(st));
        if (WEXITSTATUS(st) == 77)
                return -1;
        return WEXITSTATUS(st) == 0;
}

static void assert_valid_exposition(const char *text) {
        int r = prom_check(text);
        if (r < 0) {
                print_message("python3-prometheus-client missing: exposition not parsed (run scripts/install-deps.sh)\n");
                return;
        }
        if (r != 1)
                fail_msg("prom-check rejected the exposition:\n%s", text);
}

static exporter *new_exporter(void) {
        exporter_options o = { .version = "0.1.0", .disk_path = "/" };
        exporter *e = NULL;
        assert_int_equal(exporter_new(NULL, &o, &e), 0);
        return e;
}

static char *render(exporter *e, const exporter_snapshot *s) {
        buf b;
        buf_init(&b, 0);
        assert_int_equal(exporter_render(e, s, &b), 0);
        return buf_steal(&b);
}

static void test_render_exact(void **state) {
        json_t *m = load("metrics.json");
        json_t *hb = json_pack("{s:i,s:s}", "uptimeSeconds", 86400, "status", "degraded");
        json_t *deps = json_loads("[{\"deploymentId\":\"dep-a\",\"status\":\"running\",\"uptime\":3600},"
                                  "{\"deploymentId\":\"dep-\\\"b\\\"\\n\",\"status\":\"failed\",\"uptime\":0},"
                                  "{\"deploymentId\":\"dep-c\",\"status\":\"weird\"}]",
                                  0, NULL);
        json_t *dls = json_loads("[{\"modelId\":\"m1\",\"bytesDownloaded\":1024,\"bytesTotal\":4096},"
                                 "{\"modelId\":\"m2\",\"bytesDownloaded\":5,\"bytesTotal\":0}]",
                                 0, NULL);
        exporter *e = new_exporter();
        exporter_snapshot s = { .metrics = m, .heartbeat = hb, .deployments = deps, .downloads = dls,
                                .has_worker = true,
                                .worker = { .connected = true, .registered = true, .reconnects = 2, .outbox_depth = 3 } };
        char *text, *want;

        assert_non_null(deps);
        assert_non_null(dls);
        exporter_count_command(e, "system.healthCheck", "success");
        exporter_count_command(e, "system.healthCheck", "success");
        exporter_count_command(e, "deployment.create", "error");
        text = render(e, &s);
        want = slurp("expected.prom");
        if (strcmp(text, want) != 0) {
                /* Show the first differing line. */
                const char *a = text, *b = want;
                while (*a && *a == *b)
                        a++, b++;
                while (a > text && a[-1] != '\n')
                        a--, b--;
                fail_msg("rendering differs at:\n got: %.160s\nwant: %.160s", a, b);
        }
        assert_valid_exposition(text);
        free(text);
        free(want);
        exporter_free(e);
        json_decref(m);
        json_decref(hb);
        json_decref(deps);
        json_decref(dls);
}

/* Lines that must (or must not) appear for small inputs. */
static void expect_lines(const char *text, const char *const *want, const char *const *absent) {
        for (; want && *want; want++)
                if (!strstr(text, *want))
                        fail_msg("missing line %s in:\n%s", *want, text);
        for (; absent && *absent; absent++)
                if (strstr(text, *absent))
                        fail_msg("unexpected %s in:\n%s", *absent, text);
}

static void test_absent_and_mistyped(void **state) {
        static const struct {
                const char *metrics;
                const char *want[6];
                const char *absent[6];
        } cases[] = {
                /* Nothing known: only the worker families. */
                { "{}", { "aiwm_worker_info{version=\"0.1.0\"} 1\n" },
                  { "aiwm_node_", "aiwm_gpu", "# HELP aiwm_worker_commands_total" } },
                /* Strings, booleans and nulls are not numbers: no sample. */
                { "{\"cpu\":{\"usage\":\"12\",\"cores\":true,\"loadAverage\":[null,1,2.5]},"
                  "\"memory\":{\"total\":null,\"used\":1}}",
                  { "aiwm_node_load5 1\n", "aiwm_node_load15 2.5\n", "aiwm_node_memory_used_bytes 1048576\n" },
                  { "aiwm_node_cpu_usage_percent", "aiwm_node_cpu_cores", "aiwm_node_load1 ",
                    "aiwm_node_memory_total_bytes" } },
                /* A GPU without deviceId is skipped; absent fields give no sample. */
                { "{\"gpuDevices\":[{\"model\":\"x\"},{\"deviceId\":\"3\",\"status\":\"idle\"}]}",
                  { "aiwm_gpus 1\n", "aiwm_gpu_up{gpu=\"3\",uuid=\"\",name=\"\"} 1\n" },
                  { "aiwm_gpu_utilization_percent{", "aiwm_gpu_memory_used_bytes{", "# HELP aiwm_gpu_process" } },
                /* No GPUs: a count of 0 and nothing per device. */
                { "{\"gpuDevices\":[]}", { "aiwm_gpus 0\n" }, { "aiwm_gpu_up" } },
                /* Reals stay exact, big integers too; MB overflow becomes a float. */
                { "{\"cpu\":{\"usage\":0.1},\"network\":{\"bytesReceived\":9007199254740993},"
                  "\"memory\":{\"total\":9223372036854775807}}",
                  { "aiwm_node_cpu_usage_percent 0.1\n", "aiwm_node_network_receive_bytes_total 9007199254740993\n",
                    "aiwm_node_memory_total_bytes 9.671406556917033e+24\n" },
                  { NULL } },
                /* The model cache on the main disk's path is not a second series. */
                { "{\"disk\":{\"total\":1},\"modelCacheDisk\":{\"total\":2,\"path\":\"/\"}}",
                  { "aiwm_node_disk_total_bytes{path=\"/\"} 1048576\n" }, { "2097152" } },
        };

        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
                json_t *m = json_loads(cases[i].metrics, 0, NULL);
                exporter *e = new_exporter();
                exporter_snapshot s = { .metrics = m };
                char *text;

                assert_non_null(m);
                text = render(e, &s);
                expect_lines(text, cases[i].want, cases[i].absent);
                assert_valid_exposition(text);
                free(text);
                exporter_free(e);
                json_decref(m);
        }
}

static void test_escaping(void **state) {
        json_t *m = json_pack("{s:[{s:s, s:s, s:s, s:[{s:i, s:s, s:i}]}]}", "gpuDevices", "deviceId", "0", "uuid",
                              "GPU-\\\"x\"", "model", "line1\nline2 \xc3\xa9", "processes", "pid", 7, "processName",
                              "a\\b\"c\nd", "memoryUsed", 1);
        exporter_options o = { .version = "1.2.3-\"rc\"", .disk_path = "/srv/\"q\"" };
        exporter *e = NULL;
        exporter_snapshot s = { .metrics = m };
        char *text;

        assert_non_null(m);
        assert_int_equal(exporter_new(NULL, &o, &e), 0);
        text = render(e, &s);
        {
                const char *want[] = {
                        "aiwm_gpu_up{gpu=\"0\",uuid=\"GPU-\\\\\\\"x\\\"\",name=\"line1\\nline2 \xc3\xa9\"} 1\n",
                        "pid=\"7\",process=\"a\\\\b\\\"c\\nd\"} 1048576\n",
                        "aiwm_worker_info{version=\"1.2.3-\\\"rc\\\"\"} 1\n",
                        NULL,
                };
                expect_lines(text, want, NULL);
        }
        assert_valid_exposition(text);
        free(text);
        exporter_free(e);
        json_decref(m);
}

static void test_command_counters(void **state) {
        exporter *e = new_exporter();
        exporter_snapshot s = { 0 };
        char *text, name[32], big[300];

        exporter_count_command(e, NULL, NULL);
        exporter_count_command(e, "bad\x01type\xff", "error");
        /* Cut at EXPORTER_MAX_LABEL bytes on a character boundary. */
        memset(big, 'a', sizeof big);
        memcpy(big + EXPORTER_MAX_LABEL - 1, "\xc3\xa9", 2);
        big[sizeof big - 1] = '\0';
        exporter_count_command(e, big, "success");
        /* Flood of distinct types from a hostile controller: capped. */
        for (int i = 0; i < 1000; i++) {
                snprintf(name, sizeof name, "x.%d", i);
                exporter_count_command(e, name, "invalid");
        }
        exporter_count_command(e, "x.3", "invalid"); /* known: own series */
        text = render(e, &s);
        {
                const char *want[] = {
                        "aiwm_worker_commands_total{type=\"unknown\",outcome=\"unknown\"} 1\n",
                        "aiwm_worker_commands_total{type=\"bad?type?\",outcome=\"error\"} 1\n",
                        "aiwm_worker_commands_total{type=\"x.3\",outcome=\"invalid\"} 2\n",
                        "aiwm_worker_commands_total{type=\"other\",outcome=\"invalid\"} ",
                        NULL,
                };
                const char *absent[] = { "\xc3\"", "type=\"x.999\"", NULL };
                size_t n = 0;
                const char *p;
                expect_lines(text, want, absent);
                for (p = text; (p = strstr(p, "\naiwm_worker_commands_total{")); p++)
                        n++;
                assert_int_equal(n, EXPORTER_MAX_COMMAND_SERIES);
                /* 1000 + 1 counted under x.* in all: the ones past the cap in "other". */
                p = strstr(text, "type=\"other\",outcome=\"invalid\"} ");
                assert_int_equal(strtol(p + strlen("type=\"other\",outcome=\"invalid\"} "), NULL, 10),
                                 1000 - (EXPORTER_MAX_COMMAND_SERIES - 4));
        }
        /* The long type: 127 'a' then no half character. */
        {
                char want[EXPORTER_MAX_LABEL + 20];
                snprintf(want, sizeof want, "type=\"%.*s\",", (int)EXPORTER_MAX_LABEL - 1, big);
                assert_non_null(strstr(text, want));
        }
        assert_valid_exposition(text);
        free(text);
        exporter_free(e);
}

/* ---- provider, /healthz and the route ---- */

typedef struct fake {
        exporter_worker_state w;
        unsigned calls;
} fake;

static json_t *fake_metrics(void *ud) {
        ((fake *)ud)->calls++;
        return json_pack("{s:{s:i}}", "cpu", "cores", 4);
}

static json_t *fake_heartbeat(void *ud) {
        return json_pack("{s:i, s:s}", "uptimeSeconds", 5, "status", "healthy");
}

static json_t *fake_deployments(void *ud) {
        return json_pack("[{s:s, s:s, s:i}]", "deploymentId", "d1", "status", "running", "uptime", 9);
}

static json_t *fake_downloads(void *ud) {
        return json_array();
}

static void fake_worker(void *ud, exporter_worker_state *ret) {
        *ret = ((fake *)ud)->w;
}

static void test_provider_and_route(void **state) {
        fake f = { .w = { .connected = true, .registered = false, .reconnects = 7, .outbox_depth = -1 } };
        exporter_provider p = { .userdata = &f, .metrics = fake_metrics, .heartbeat = fake_heartbeat,
                                .deployments = fake_deployments, .downloads = fake_downloads, .worker = fake_worker };
        exporter *e = NULL;
        httpd_request req = { .method = "GET", .path = "/metrics" };
        httpd_response res = { .status = 200 };

        assert_int_equal(exporter_new(&p, NULL, &e), 0);
        buf_init(&res.body, 0);
        assert_int_equal(exporter_route(e, &req, &res), 0);
        assert_int_equal(res.status, 200);
        assert_string_equal(res.content_type, EXPORTER_CONTENT_TYPE);
        {
                const char *want[] = { "aiwm_node_cpu_cores 4\n", "aiwm_node_uptime_seconds 5\n",
                                       "aiwm_node_status{status=\"healthy\"} 1\n", "aiwm_deployment_up{deployment=\"d1\"} 1\n",
                                       "aiwm_deployments{status=\"running\"} 1\n", "aiwm_model_downloads_in_progress 0\n",
                                       "aiwm_worker_connected 1\n", "aiwm_worker_registered 0\n",
                                       "aiwm_worker_reconnects_total 7\n", "aiwm_worker_info{version=\"" AIWM_VERSION "\"} 1\n",
                                       NULL };
                const char *absent[] = { "aiwm_worker_outbox_depth", NULL };
                expect_lines(res.body.data, want, absent);
        }
        assert_valid_exposition(res.body.data);
        assert_int_equal(f.calls, 1);
        buf_done(&res.body);

        /* /healthz: 503 until registered. */
        res = (httpd_response){ .status = 200 };
        buf_init(&res.body, 0);
        req.path = "/healthz";
        assert_int_equal(exporter_route(e, &req, &res), 0);
        assert_int_equal(res.status, 503);
        assert_string_equal(res.content_type, "application/json");
        assert_string_equal(res.body.data, "{\"status\":\"unavailable\",\"connected\":true,\"registered\":false}\n");
        buf_done(&res.body);
        f.w.registered = true;
        buf_init(&res.body, 0);
        assert_int_equal(exporter_healthz(e, &res.body), 200);
        assert_string_equal(res.body.data, "{\"status\":\"ok\",\"connected\":true,\"registered\":true}\n");
        {
                json_t *j = json_loads(res.body.data, 0, NULL);
                assert_non_null(j);
                assert_true(json_is_true(json_object_get(j, "registered")));
                json_decref(j);
        }
        buf_done(&res.body);

        res = (httpd_response){ .status = 200 };
        buf_init(&res.body, 0);
        req.path = "/nope";
        assert_int_equal(exporter_route(e, &req, &res), 0);
        assert_int_equal(res.status, 404);
        buf_done(&res.body);
        exporter_free(e);

        /* No provider at all: /healthz is 503, /metrics has the info line. */
        assert_int_equal(exporter_new(NULL, NULL, &e), 0);
        buf_init(&res.body, 0);
        assert_int_equal(exporter_healthz(e, &res.body), 503);
        buf_reset(&res.body);
        assert_int_equal(exporter_metrics(e, &res.body), 0);
        assert_non_null(strstr(res.body.data, "aiwm_worker_info{"));
        assert_null(strstr(res.body.data, "aiwm_worker_connected"));
        buf_done(&res.body);
        assert_null(exporter_free(e));
        assert_null(exporter_free(NULL));
        exporter_count_command(NULL, "x", "y");
}

static void test_buffer_cap(void **state) {
        json_t *m = load("metrics.json");
        exporter *e = new_exporter();
        exporter_snapshot s = { .metrics = m };
        buf b;

        buf_init(&b, 512);
        assert_int_equal(exporter_render(e, &s, &b), -E2BIG);
        assert_null(b.data);
        buf_done(&b);
        exporter_free(e);
        json_decref(m);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_render_exact),
                cmocka_unit_test(test_absent_and_mistyped),
                cmocka_unit_test(test_escaping),
                cmocka_unit_test(test_command_counters),
                cmocka_unit_test(test_provider_and_route),
                cmocka_unit_test(test_buffer_cap),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
