/* docker-driver: drives src/docker against a real engine (Podman's Docker
 * API from scripts/podman-env.sh) for tests/integration/test-docker-api.sh.
 *
 * Environment: DOCKER_SOCKET, REGISTRY (host:port), REGISTRY_IMAGE (an image
 * in that registry). Prints one "ok - ..." or "not ok - ..." line per check
 * and a last line "N passed, M failed"; exits 0 when nothing failed.
 *
 * The calls are asynchronous; the driver starts one (or several) and runs the
 * loop until their callbacks have run, with a 10 ms timer ticking the whole
 * time to show that the loop never stalls. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/http.h"
#include "core/loop.h"
#include "core/util.h"
#include "docker/docker.h"

#define NAME "aiwm-drv-web"

static loop *L;
static docker *D;
static int passes, fails;
static uint64_t last_tick, max_gap;

static void check(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool cond, const char *fmt, ...) {
        va_list ap;
        printf("%s - ", cond ? "ok" : "not ok");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
        fflush(stdout);
        if (cond)
                passes++;
        else
                fails++;
}

static void tick(loop_timer *t, void *ud) {
        uint64_t now = loop_now(L);
        if (last_tick && now - last_tick > max_gap)
                max_gap = now - last_tick;
        last_tick = now;
        loop_timer_arm(t, 10);
}

/* ---- one call's result ---- */

typedef struct res {
        bool done;
        int err;
        long status;
        char msg[512];
        char id[128];
        json_t *json;
} res;

static void on_done(docker_op *op, const docker_reply *r, void *ud) {
        res *x = ud;
        x->done = true;
        x->err = r->err;
        x->status = r->status;
        snprintf(x->msg, sizeof x->msg, "%s", r->message);
        snprintf(x->id, sizeof x->id, "%s", r->id ? r->id : "");
        x->json = json_incref(r->json);
}

static void res_clear(res *x) {
        json_decref(x->json);
        memset(x, 0, sizeof *x);
}

/* Runs the loop until every flag is set or timeout_ms passes. */
static bool wait_all(bool *const *flags, size_t n, uint64_t timeout_ms) {
        uint64_t end = loop_now_update(L) + timeout_ms;
        for (;;) {
                size_t i;
                for (i = 0; i < n && *flags[i]; i++)
                        ;
                if (i == n)
                        return true;
                if (loop_now_update(L) >= end)
                        return false;
                loop_run_once(L, 50);
        }
}

static bool wait_res(res *x, uint64_t timeout_ms) {
        bool *f[] = { &x->done };
        return wait_all(f, 1, timeout_ms);
}

/* Starts a call (r: what docker_* returned) and waits for it. */
static void run(int r, res *x, uint64_t timeout_ms, const char *what) {
        if (r < 0) {
                check(false, "%s: could not start (%s)", what, strerror(-r));
                x->done = true;
                x->err = r;
                return;
        }
        if (!wait_res(x, timeout_ms)) {
                check(false, "%s: no answer within %" PRIu64 " ms", what, timeout_ms);
                x->err = -ETIMEDOUT;
        }
}

/* ---- pulls, events, logs ---- */

typedef struct pull_state {
        unsigned events, layers;
        uint64_t bytes_total;
} pull_state;

static pull_state pulls;

static void on_progress(docker_op *op, const docker_pull_event *ev, void *ud) {
        pulls.events++;
        pulls.layers = ev->layers;
        pulls.bytes_total = ev->bytes_total;
}

typedef struct events_state {
        char id[128];
        int seen_start, seen_die;
        char exit_code[16];
        bool cancel_on_die;
        docker_op *op;
        res end;
} events_state;

static events_state evs;

static void on_event(docker_op *op, json_t *ev, void *ud) {
        const char *action = json_string_value(json_object_get(ev, "Action"));
        const char *id = json_string_value(json_object_get(json_object_get(ev, "Actor"), "ID"));
        if (!action || !id || strcmp(id, evs.id) != 0)
                return;
        if (strcmp(action, "start") == 0)
                evs.seen_start++;
        if (strcmp(action, "die") == 0) {
                const char *ec = json_string_value(
                        json_object_get(json_object_get(json_object_get(ev, "Actor"), "Attributes"), "exitCode"));
                evs.seen_die++;
                snprintf(evs.exit_code, sizeof evs.exit_code, "%s", ec ? ec : "");
                if (evs.cancel_on_die) {
                        /* From inside the stream's own callback. */
                        docker_op_cancel(op);
                        evs.op = NULL;
                }
        }
}

typedef struct logs_state {
        int out, err, stamped, health;
        int64_t first_ms;
} logs_state;

static logs_state logs;

static void on_line(docker_op *op, int stream, const char *line, size_t len, void *ud) {
        int64_t ms;
        size_t skip;
        if (stream == DOCKER_STDOUT)
                logs.out++;
        else
                logs.err++;
        if (docker_log_timestamp_parse(line, len, &ms, &skip) == 0) {
                logs.stamped++;
                if (!logs.first_ms)
                        logs.first_ms = ms;
        }
        if (memmem(line, len, "response:200", 12))
                logs.health++;
}

/* Runs the loop for ms milliseconds. */
static void sleep_loop(uint64_t ms) {
        uint64_t end = loop_now_update(L) + ms;
        while (loop_now_update(L) < end)
                loop_run_once(L, 10);
}

/* ---- HTTP health check of the container ---- */

typedef struct health {
        bool done;
        int err;
        long status;
        char body[32];
} health;

static void on_health(http_request *req, const http_result *r, void *ud) {
        health *h = ud;
        h->done = true;
        h->err = r->err;
        h->status = r->status;
        snprintf(h->body, sizeof h->body, "%s", r->body->data ? r->body->data : "");
}

static bool get_health(http_client *hc, const char *port) {
        char url[128];
        snprintf(url, sizeof url, "http://127.0.0.1:%s/health", port);
        for (int i = 0; i < 50; i++) {
                health h = { 0 };
                http_options o = { .url = url, .timeout_ms = 2000 };
                bool *f[] = { &h.done };
                if (http_request_start(hc, &o, on_health, &h, NULL) < 0)
                        return false;
                wait_all(f, 1, 5000);
                if (h.err == 0 && h.status == 200 && strcmp(h.body, "ok\n") == 0)
                        return true;
                sleep_loop(100); /* httpd starting: try again */
        }
        return false;
}

static const char *host_port(json_t *inspect) {
        json_t *b = json_object_get(json_object_get(json_object_get(inspect, "NetworkSettings"), "Ports"), "8000/tcp");
        return json_string_value(json_object_get(json_array_get(b, 0), "HostPort"));
}

int main(void) {
        const char *sock = getenv("DOCKER_SOCKET"), *image = getenv("REGISTRY_IMAGE"), *registry = getenv("REGISTRY");
        loop_timer *ticker;
        http_client *hc;
        char id[128] = "", port[16] = "", nope[256];
        uint64_t t0;

        if (!sock || !image || !registry) {
                fprintf(stderr, "docker-driver: DOCKER_SOCKET, REGISTRY and REGISTRY_IMAGE must be set\n");
                return 2;
        }
        setvbuf(stdout, NULL, _IOLBF, 0);
        if (loop_new(&L) < 0 || loop_timer_new(L, tick, NULL, &ticker) < 0 || http_client_new(L, &hc) < 0)
                return 2;
        loop_timer_arm(ticker, 10);
        {
                docker_options o = { .socket = sock, .timeout_ms = 30000 };
                if (docker_new(L, &o, &D) < 0)
                        return 2;
        }

        /* 1. Calls made before the API version is known wait for it; a
         *    404 maps to -ENOENT with the engine's message. */
        {
                res a = { 0 }, b = { 0 };
                bool *f[] = { &a.done, &b.done };
                const char *const labels[] = { "aiwm.test=driver", NULL };
                docker_list_options lo = { .all = true, .labels = labels };
                t0 = loop_now_update(L);
                check(docker_api_minor(D) == 0, "no API version before the first call");
                check(docker_container_inspect(D, "aiwm-no-such-container", on_done, &a, NULL) == 0 &&
                              docker_container_list(D, &lo, on_done, &b, NULL) == 0,
                      "two calls started before negotiation");
                check(!a.done && !b.done, "no callback from inside the calls");
                check(wait_all(f, 2, 20000), "both answered after negotiation (%" PRIu64 " ms)",
                      loop_now_update(L) - t0);
                check(a.err == -ENOENT && a.status == 404 && strstr(a.msg, "aiwm-no-such-container"),
                      "inspect of an unknown container: -ENOENT, 404, \"%s\"", a.msg);
                check(b.err == 0 && json_is_array(b.json), "list by label answers an array");
                check(docker_api_minor(D) == 41, "negotiated API 1.%u (Podman 4.3 reports 1.41)", docker_api_minor(D));
                res_clear(&a);
                res_clear(&b);
        }
        /* 2. version/info. */
        {
                res a = { 0 };
                const docker_version *v;
                const docker_info *in;
                run(docker_probe(D, on_done, &a, NULL), &a, 20000, "probe");
                v = docker_get_version(D);
                in = docker_get_info(D);
                check(a.err == 0 && v && in, "GET /version and /info");
                if (v && in) {
                        check(v->runtime == DOCKER_RUNTIME_PODMAN, "runtime %s", docker_runtime_name(v->runtime));
                        check(v->version[0] != 0, "version %s, API %s", v->version, v->api_version);
                        check(in->root_dir[0] == '/', "root dir %s", in->root_dir);
                        check(in->ncpu > 0 && in->mem_total > 0, "%" PRId64 " CPUs, %" PRId64 " bytes", in->ncpu,
                              in->mem_total);
                }
                res_clear(&a);
        }
        /* Leftovers of an earlier run. */
        {
                res a = { 0 };
                run(docker_container_remove(D, NAME, true, true, on_done, &a, NULL), &a, 30000, "cleanup");
                res_clear(&a);
        }
        /* 3. Pull from the local registry, with progress. */
        {
                res a = { 0 };
                docker_pull_options po = { .image = image, .timeout_ms = 120000 };
                t0 = loop_now_update(L);
                run(docker_image_pull(D, &po, on_progress, on_done, &a, NULL), &a, 130000, "pull");
                check(a.err == 0, "pull %s (%" PRIu64 " ms): %s", image, loop_now_update(L) - t0,
                      a.err ? a.msg : "done");
                check(pulls.events > 0, "%u progress events, %u layers", pulls.events, pulls.layers);
                res_clear(&a);
                run(docker_image_inspect(D, image, on_done, &a, NULL), &a, 20000, "image inspect");
                check(a.err == 0 && json_is_string(json_object_get(a.json, "Id")), "image inspect finds it");
                res_clear(&a);
        }
        /* 4. Pulling an unknown image: the errorDetail in the stream. */
        {
                res a = { 0 };
                docker_pull_options po = { .image = nope, .timeout_ms = 60000 };
                snprintf(nope, sizeof nope, "%s/aiwm/no-such-image:1", registry);
                run(docker_image_pull(D, &po, NULL, on_done, &a, NULL), &a, 70000, "pull unknown");
                check(a.err == -ENOENT, "pull of an unknown image: %d (%s)", a.err, a.msg);
                res_clear(&a);
        }
        /* 5. The event stream, before the container exists. */
        {
                const char *const types[] = { "container", NULL };
                const char *const labels[] = { "aiwm.managed=true", NULL };
                docker_events_options eo = { .types = types, .labels = labels };
                check(docker_events_start(D, &eo, on_event, on_done, &evs.end, &evs.op) == 0, "event stream started");
        }
        /* 6. create, create again, start, start again. */
        {
                res a = { 0 };
                json_t *cfg = json_pack("{s:s, s:{s:s, s:s}, s:{s:{}}, s:{s:{s:[{s:s, s:s}]}}}", "Image", image,
                                        "Labels", "aiwm.managed", "true", "aiwm.test", "driver", "ExposedPorts",
                                        "8000/tcp", "HostConfig", "PortBindings", "8000/tcp", "HostIp", "127.0.0.1",
                                        "HostPort", "");
                run(docker_container_create(D, NAME, cfg, on_done, &a, NULL), &a, 30000, "create");
                check(a.err == 0 && strlen(a.id) == 64, "create %s: id %.12s", NAME, a.id);
                snprintf(id, sizeof id, "%s", a.id);
                snprintf(evs.id, sizeof evs.id, "%s", a.id);
                res_clear(&a);
                run(docker_container_create(D, NAME, cfg, on_done, &a, NULL), &a, 30000, "create again");
                check(a.err == -EEXIST, "create with a name in use: -EEXIST (%s)", a.msg);
                res_clear(&a);
                json_decref(cfg);
                t0 = loop_now_update(L);
                run(docker_container_start(D, id, on_done, &a, NULL), &a, 30000, "start");
                check(a.err == 0, "start (%" PRIu64 " ms) %s", loop_now_update(L) - t0, a.msg);
                res_clear(&a);
                run(docker_container_start(D, id, on_done, &a, NULL), &a, 30000, "start again");
                check(a.err == -EALREADY && a.status == 304, "start again: -EALREADY, 304");
                res_clear(&a);
        }
        /* 7. inspect, and the published port answers. */
        {
                res a = { 0 };
                const char *p;
                run(docker_container_inspect(D, NAME, on_done, &a, NULL), &a, 30000, "inspect");
                check(a.err == 0 && json_is_true(json_object_get(json_object_get(a.json, "State"), "Running")),
                      "inspect: running");
                p = host_port(a.json);
                check(p && p[0], "port 8000 published on 127.0.0.1:%s", p ? p : "?");
                snprintf(port, sizeof port, "%s", p ? p : "");
                res_clear(&a);
                check(port[0] && get_health(hc, port), "GET /health through the published port: ok");
        }
        /* 8. list by label. */
        {
                res a = { 0 };
                const char *const mine[] = { "aiwm.test=driver", NULL }, *const none[] = { "aiwm.test=none", NULL };
                docker_list_options lo = { .labels = mine };
                run(docker_container_list(D, &lo, on_done, &a, NULL), &a, 30000, "list");
                check(a.err == 0 && json_array_size(a.json) == 1 &&
                              strcmp(json_string_value(json_object_get(json_array_get(a.json, 0), "Id")), id) == 0,
                      "list by label aiwm.test=driver: our container");
                res_clear(&a);
                lo.labels = none;
                run(docker_container_list(D, &lo, on_done, &a, NULL), &a, 30000, "list none");
                check(a.err == 0 && json_array_size(a.json) == 0, "list by label aiwm.test=none: empty");
                res_clear(&a);
        }
        /* 9. logs: httpd -v logged the health checks on stderr. */
        {
                res a = { 0 };
                docker_logs_options lo = { .timestamps = true };
                run(docker_container_logs(D, id, &lo, on_line, on_done, &a, NULL), &a, 30000, "logs");
                check(a.err == 0 && logs.err > 0 && logs.health > 0 && logs.stamped == logs.out + logs.err,
                      "logs: %d stdout, %d stderr lines, %d with timestamps, %d health requests", logs.out, logs.err,
                      logs.stamped, logs.health);
                check(logs.first_ms > util_wall_ms() - 600000 && logs.first_ms <= util_wall_ms() + 5000,
                      "first log timestamp is recent");
                res_clear(&a);
                memset(&logs, 0, sizeof logs);
                lo.tail = 1;
                lo.no_stdout = true;
                run(docker_container_logs(D, id, &lo, on_line, on_done, &a, NULL), &a, 30000, "logs tail");
                check(a.err == 0 && logs.err == 1 && logs.out == 0, "logs tail=1 stderr only: %d line(s)", logs.err);
                res_clear(&a);
        }
        /* 10. stats, twice: CPU % from the pair. */
        {
                res a = { 0 }, b = { 0 };
                docker_stats s1 = { 0 }, s2 = { 0 };
                int r1, r2;
                run(docker_container_stats(D, id, on_done, &a, NULL), &a, 30000, "stats");
                r1 = a.err ? a.err : docker_stats_compute(a.json, NULL, &s1);
                check(r1 == 0, "stats one-shot");
                get_health(hc, port); /* some work in between */
                run(docker_container_stats(D, id, on_done, &b, NULL), &b, 30000, "stats 2");
                r2 = b.err ? b.err : docker_stats_compute(b.json, &s1, &s2);
                check(r2 == 0 && s2.cpu_valid && s2.mem_used > 0 && s2.mem_limit > 0 && s2.pids >= 1,
                      "stats: cpu %.2f %%, memory %" PRIu64 " of %" PRIu64 ", pids %" PRIu64 ", net rx %" PRIu64
                      " tx %" PRIu64,
                      s2.cpu_percent, s2.mem_used, s2.mem_limit, s2.pids, s2.net_rx, s2.net_tx);
                res_clear(&a);
                res_clear(&b);
        }
        /* 11. restart. */
        {
                res a = { 0 };
                run(docker_container_restart(D, id, 1, on_done, &a, NULL), &a, 60000, "restart");
                check(a.err == 0, "restart with t=1 %s", a.msg);
                res_clear(&a);
        }
        /* 12. kill: the event stream sees the container die; kill, stop and
         *     stats of a dead container. */
        {
                res a = { 0 };
                int before = evs.seen_die; /* the restart's */
                bool died;
                evs.cancel_on_die = true;
                t0 = loop_now_update(L);
                run(docker_container_kill(D, id, NULL, on_done, &a, NULL), &a, 30000, "kill");
                check(a.err == 0, "kill SIGKILL");
                res_clear(&a);
                for (int i = 0; i < 200 && evs.seen_die == before; i++)
                        loop_run_once(L, 50);
                died = evs.seen_die == before + 1 && strcmp(evs.exit_code, "137") == 0;
                check(died, "event stream: die (exitCode %s) %" PRIu64 " ms after the kill, after %d start(s)",
                      evs.exit_code, loop_now_update(L) - t0, evs.seen_start);
                check(evs.seen_start >= 2, "event stream: start events of start and restart (%d)", evs.seen_start);
                check(evs.op == NULL && !evs.end.done, "event stream cancelled from its own callback: no done");
                run(docker_container_kill(D, id, NULL, on_done, &a, NULL), &a, 30000, "kill again");
                check(a.err == -ESRCH, "kill of a stopped container: -ESRCH (%s)", a.msg);
                res_clear(&a);
                run(docker_container_stop(D, id, 1, on_done, &a, NULL), &a, 30000, "stop");
                check(a.err == -ESRCH && a.status == 304, "stop of a stopped container: -ESRCH, 304");
                res_clear(&a);
                run(docker_container_stats(D, id, on_done, &a, NULL), &a, 30000, "stats stopped");
                check(a.err == -ESRCH, "stats of a stopped container: -ESRCH");
                res_clear(&a);
        }
        /* 13. stop of a running container; remove; 404 after. */
        {
                res a = { 0 };
                run(docker_container_start(D, id, on_done, &a, NULL), &a, 30000, "start 2");
                res_clear(&a);
                run(docker_container_remove(D, id, false, false, on_done, &a, NULL), &a, 30000, "remove running");
                check(a.err == -EBUSY, "remove of a running container without force: -EBUSY");
                res_clear(&a);
                t0 = loop_now_update(L);
                run(docker_container_stop(D, id, 2, on_done, &a, NULL), &a, 30000, "stop running");
                check(a.err == 0, "stop with t=2 (%" PRIu64 " ms)", loop_now_update(L) - t0);
                res_clear(&a);
                run(docker_container_remove(D, id, true, true, on_done, &a, NULL), &a, 30000, "remove");
                check(a.err == 0, "remove (force, volumes)");
                res_clear(&a);
                run(docker_container_inspect(D, id, on_done, &a, NULL), &a, 30000, "inspect removed");
                check(a.err == -ENOENT, "inspect after remove: -ENOENT");
                res_clear(&a);
                run(docker_container_remove(D, id, true, true, on_done, &a, NULL), &a, 30000, "remove again");
                check(a.err == -ENOENT, "remove again: -ENOENT");
                res_clear(&a);
        }
        /* 14. Cancelling a call in flight: no callback; the client goes on. */
        {
                res a = { 0 }, b = { 0 };
                docker_op *op = NULL;
                docker_pull_options po = { .image = image };
                check(docker_image_pull(D, &po, NULL, on_done, &a, &op) == 0, "pull started");
                docker_op_cancel(op);
                run(docker_container_list(D, NULL, on_done, &b, NULL), &b, 30000, "list after cancel");
                for (int i = 0; i < 10; i++)
                        loop_run_once(L, 20);
                check(!a.done && b.err == 0, "cancelled pull never called back; list still works");
                res_clear(&b);
        }
        /* 15. Invalid arguments fail at once. */
        check(docker_container_start(D, "../images", on_done, NULL, NULL) == -EINVAL &&
                      docker_image_inspect(D, "a b", on_done, NULL, NULL) == -EINVAL,
              "bad ids and references: -EINVAL, no call");
        /* 16. No engine on the socket. */
        {
                docker *none;
                res a = { 0 };
                docker_options o = { .socket = "/nonexistent/docker.sock" };
                check(docker_new(L, &o, &none) == 0, "client on a missing socket");
                run(docker_container_list(none, NULL, on_done, &a, NULL), &a, 10000, "list without engine");
                check(a.err == -ECONNREFUSED && a.status == 0, "no engine: -ECONNREFUSED (%s)", a.msg);
                res_clear(&a);
                docker_free(none);
        }
        check(max_gap < 250, "the loop never stalled: longest gap between 10 ms ticks %" PRIu64 " ms", max_gap);

        docker_free(D);
        http_client_free(hc);
        loop_timer_free(ticker);
        loop_run_once(L, 0);
        loop_free(L);
        printf("%d passed, %d failed\n", passes, fails);
        return fails ? 1 : 0;
}
