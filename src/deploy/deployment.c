/* deployment: see deployment.h.
 *
 * Every deployment (a `dep`) runs at most one operation at a time (create,
 * stop, restart, update, delete, or a recovery the worker starts itself);
 * commands that arrive meanwhile wait in the deployment's queue. An
 * operation is a chain of callbacks, each one Docker call, HTTP probe or
 * timer; the dep's single timer serves the startup polling, the periodic
 * health check and the delayed recovery, never two at once. */
#include "deploy/deployment.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/http.h"
#include "core/log.h"
#include "core/util.h"
#include "docker/docker.h"
#include "models/model_cache.h"
#include "models/model_cmd.h"
#include "state/db.h"

#define STARTUP_POLL_MS 500
#define DEFAULT_HEALTH_INTERVAL_S 30
#define HEALTH_FAILS_MAX 3
#define HEALTH_TIMEOUT_MS 5000
#define MAX_EVENTS_KEPT 10
#define RECOVERY_BACKOFF_MIN_MS 2000
#define RECOVERY_BACKOFF_MAX_MS 300000
#define LOG_TAIL_DEFAULT 100
#define FAIL_LOG_LINES 20

typedef enum op_kind {
        OP_NONE = 0,
        OP_CREATE,
        OP_STOP,
        OP_RESTART,
        OP_UPDATE,
        OP_DELETE,
        OP_RECOVER, /* the worker's own: start or recreate what should run */
} op_kind;

typedef struct qjob {
        cmd_job *job;
        op_kind kind;
        struct qjob *next;
} qjob;

typedef struct dep dep;
typedef void (*probe_cb)(dep *d, bool ok, const char *why);

struct deploy_mgr {
        loop *l;
        cmd_engine *e;
        db *db;
        docker *dk;
        http_client *hc;
        model_cache *cache;
        char *node_id;
        deploy_config cfg;
        char **allowed;          /* owned copies */
        char *bind_ip, *endpoint_host, *auth_file;
        dep *deps;
        docker_op *events_op;
        loop_timer *t_events;    /* event stream retry */
        uint64_t events_backoff;
        int64_t events_since;    /* unix s of the last event seen */
        loop_timer *t_reconcile;
        docker_op *reconcile_op;
        bool started, closing, adopting;
};

struct dep {
        deploy_mgr *m;
        dep *next;
        char *id;
        json_t *spec;            /* the create data, as updated */
        char cid[128];
        char status[16];
        char health[10];
        char gpu_uuid[96], gpu_index[16];
        char *model_path;        /* host path mounted; NULL: none */
        int host_port;
        int64_t started_ms, last_health_ms;
        int64_t gpu_mem_mb;
        unsigned health_fails;
        unsigned recoveries;
        uint64_t died_at;        /* loop ms of a death not yet handled; 0: none */
        /* the operation */
        op_kind op;
        cmd_job *job;
        qjob *queue;
        docker_op *dop;
        http_request *hreq;
        probe_cb probe_cb;       /* of the health probe in flight */
        model_ensure *ens;
        loop_timer *t;
        void (*on_timer)(dep *d);
        uint64_t deadline;       /* loop ms: the startup health deadline */
        unsigned polls;
        bool recreate;           /* OP_RECOVER: make a new container */
        bool stop_force;
        int stop_timeout;
        bool remove_volumes;
        uint64_t op_started;
        json_t *new_spec, *applied;    /* update */
        char old_cid[128];             /* update: the container being replaced */
        char err_code[8];
        char *err_msg;
        json_t *err_details;
        struct logs_ctx *lc;     /* logs being read for a failure report */
        bool gone;               /* deleted: freed when idle */
        bool established;        /* created once: the worker keeps it running */
};

static void op_next(dep *d);
static void op_finish(dep *d);
static void health_schedule(dep *d);
static void create_pull_or_create(dep *d);
static void reconcile_now(deploy_mgr *m);
static void recovery_schedule(dep *d, uint64_t delay_ms);

/* ---- small helpers ---- */

static const char *jstr(const json_t *o, const char *k) {
        return json_string_value(json_object_get(o, k));
}

static dep *dep_find(deploy_mgr *m, const char *id) {
        dep *d;
        for (d = m->deps; d; d = d->next)
                if (!d->gone && !strcmp(d->id, id))
                        return d;
        return NULL;
}

static dep *dep_find_cid(deploy_mgr *m, const char *cid) {
        dep *d;
        if (!cid || !*cid)
                return NULL;
        for (d = m->deps; d; d = d->next)
                if (!d->gone && d->cid[0] && (!strcmp(d->cid, cid) || !strncmp(d->cid, cid, strlen(cid))))
                        return d;
        return NULL;
}

static bool wants_running(const dep *d) {
        return strcmp(d->status, "stopped") && strcmp(d->status, "stopping") && !d->gone;
}

static int container_port(const dep *d) {
        return (int)json_integer_value(json_object_get(d->spec, "containerPort"));
}

static const char *probe_host(const deploy_mgr *m) {
        if (m->bind_ip && *m->bind_ip && strcmp(m->bind_ip, "0.0.0.0") && strcmp(m->bind_ip, "::"))
                return m->bind_ip;
        return "127.0.0.1";
}

static void endpoint_of(const dep *d, char *out, size_t size) {
        const deploy_mgr *m = d->m;
        const char *h = m->endpoint_host;
        if (!h && m->cfg.node_ip)
                h = m->cfg.node_ip(m->cfg.ud);
        if (!h || !*h)
                h = "127.0.0.1";
        if (d->host_port <= 0) {
                out[0] = 0;
                return;
        }
        snprintf(out, size, strchr(h, ':') ? "http://[%s]:%d" : "http://%s:%d", h, d->host_port);
}

static void set_err(dep *d, const char *code, json_t *details, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void set_err(dep *d, const char *code, json_t *details, const char *fmt, ...) {
        va_list ap;
        char *msg = NULL;

        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        free(d->err_msg);
        d->err_msg = msg;
        util_strlcpy(d->err_code, code, sizeof d->err_code);
        json_decref(d->err_details);
        d->err_details = details;
}

/* The row: {spec, modelPath, gpuUuid, gpuIndex, established}. */
static void persist(dep *d) {
        json_t *w = json_pack("{s:O,s:s?,s:s,s:s,s:b}", "spec", d->spec, "modelPath", d->model_path, "gpuUuid",
                              d->gpu_uuid, "gpuIndex", d->gpu_index, "established", d->established);
        char *txt = w ? json_dumps(w, JSON_COMPACT) : NULL;

        if (!txt || db_deployment_put(d->m->db, d->id, txt, d->cid[0] ? d->cid : NULL, d->status) < 0)
                log_error("cannot record a deployment", "deploymentId", d->id, "error", db_errmsg(d->m->db), NULL);
        free(txt);
        json_decref(w);
}

/* ---- status ---- */

static json_t *status_data(dep *d, const char *prev, json_t *event) {
        char ep[320], iso[25];
        json_t *o = json_pack("{s:s,s:s,s:s}", "deploymentId", d->id, "nodeId", d->m->node_id, "status", d->status);

        if (!o) {
                json_decref(event);
                return NULL;
        }
        if (prev && *prev)
                json_object_set_new(o, "previousStatus", json_string(prev));
        if (d->cid[0])
                json_object_set_new(o, "containerId", json_string(d->cid));
        if (jstr(d->spec, "containerName"))
                json_object_set_new(o, "containerName", json_string(jstr(d->spec, "containerName")));
        endpoint_of(d, ep, sizeof ep);
        if (ep[0] && wants_running(d))
                json_object_set_new(o, "endpoint", json_string(ep));
        if (d->gpu_index[0])
                json_object_set_new(o, "gpuDeviceId", json_string(d->gpu_index));
        if (d->gpu_uuid[0])
                json_object_set_new(o, "gpuMemoryUsed", json_integer(d->gpu_mem_mb));
        json_object_set_new(o, "uptimeSeconds",
                            json_integer(!strcmp(d->status, "running") && d->started_ms > 0 &&
                                                         util_wall_ms() > d->started_ms
                                                 ? (util_wall_ms() - d->started_ms) / 1000
                                                 : 0));
        if (d->last_health_ms > 0) {
                util_iso_ms(d->last_health_ms, iso);
                json_object_set_new(o, "lastHealthCheck", json_string(iso));
        }
        json_object_set_new(o, "healthStatus", json_string(d->health[0] ? d->health : "unknown"));
        json_object_set_new(o, "events", event ? json_pack("[o]", event) : json_array());
        return o;
}

static void emit_status(dep *d, const char *prev, json_t *event) {
        json_t *data = status_data(d, prev, event);
        int r;

        if (!data || d->m->closing) {
                json_decref(data);
                return;
        }
        if (d->job)
                r = cmd_job_emit(d->job, "deployment.status", data);
        else
                r = cmd_engine_emit(d->m->e, "deployment.status", json_pack("{s:s,s:s}", "type", "deployment", "id", d->id),
                                    data);
        if (r < 0)
                log_warn("cannot queue deployment.status", "deploymentId", d->id, NULL);
}

static json_t *make_event(const char *event, const char *severity, const char *message) {
        char iso[25];
        util_iso_now(iso);
        return json_pack("{s:s,s:s,s:s,s:s}", "timestamp", iso, "event", event, "message", message ? message : "",
                         "severity", severity);
}

/* Moves to status (emitting deployment.status with one event) and records it. */
static void set_status(dep *d, const char *status, const char *event, const char *severity, const char *message) {
        char prev[16];

        util_strlcpy(prev, d->status, sizeof prev);
        if (!strcmp(prev, status) && !event)
                return;
        if (strcmp(prev, status) && !deploy_status_transition_ok(prev, status))
                log_debug("deployment status transition outside the table", "deploymentId", d->id, "from", prev,
                          "to", status, NULL);
        util_strlcpy(d->status, status, sizeof d->status);
        if (strcmp(status, "running"))
                d->gpu_mem_mb = 0;
        log_info("deployment status", "deploymentId", d->id, "status", status, "previous", prev, "event",
                 event ? event : "", "message", message ? message : "", NULL);
        persist(d);
        emit_status(d, strcmp(prev, status) ? prev : NULL,
                    make_event(event ? event : "status_changed", severity ? severity : "info", message));
}

/* ---- lifetime ---- */

static void lc_free(dep *d);

static void op_cancel_io(dep *d) {
        docker_op_cancel(d->dop);
        d->dop = NULL;
        lc_free(d);
        http_request_cancel(d->hreq);
        d->hreq = NULL;
        model_ensure_cancel(d->ens);
        d->ens = NULL;
        loop_timer_disarm(d->t);
        d->on_timer = NULL;
}

static void dep_free(dep *d) {
        qjob *q;

        op_cancel_io(d);
        while ((q = d->queue)) {
                d->queue = q->next;
                free(q);
        }
        loop_timer_free(d->t);
        json_decref(d->spec);
        json_decref(d->new_spec);
        json_decref(d->applied);
        json_decref(d->err_details);
        free(d->err_msg);
        free(d->model_path);
        free(d->id);
        free(d);
}

static void dep_unlink(dep *d) {
        dep **pp;
        for (pp = &d->m->deps; *pp; pp = &(*pp)->next)
                if (*pp == d) {
                        *pp = d->next;
                        break;
                }
}

static void timer_cb(loop_timer *t, void *ud) {
        dep *d = ud;
        void (*fn)(dep *) = d->on_timer;
        (void)t;
        d->on_timer = NULL;
        if (fn)
                fn(d);
}

static void arm(dep *d, uint64_t ms, void (*fn)(dep *)) {
        d->on_timer = fn;
        loop_timer_arm(d->t, ms);
}

static dep *dep_new(deploy_mgr *m, const char *id) {
        dep *d = calloc(1, sizeof *d);

        if (!d)
                return NULL;
        d->m = m;
        d->id = strdup(id);
        if (!d->id || loop_timer_new(m->l, timer_cb, d, &d->t) < 0) {
                free(d->id);
                free(d);
                return NULL;
        }
        util_strlcpy(d->health, "unknown", sizeof d->health);
        d->next = m->deps;
        m->deps = d;
        return d;
}

/* ---- GPUs ---- */

/* Resolves gpuDeviceId (an index or a UUID) against the last GPU sample.
 * Returns 0 (uuid and index filled; both empty for a CPU deployment) or
 * -ENODEV with a message. */
static int gpu_resolve(deploy_mgr *m, const json_t *g, char *uuid, size_t usize, char *index, size_t isize,
                       char *msg, size_t msize) {
        const gpu_list *gl = m->cfg.gpus ? m->cfg.gpus(m->cfg.ud) : NULL;
        char want[128];
        size_t i;

        uuid[0] = index[0] = 0;
        if (!g || json_is_null(g) || (json_is_string(g) && !*json_string_value(g)))
                return 0;
        if (json_is_integer(g))
                snprintf(want, sizeof want, "%lld", (long long)json_integer_value(g));
        else
                util_strlcpy(want, json_string_value(g), sizeof want);
        for (i = 0; gl && i < gl->n_devices; i++) {
                const gpu_device *dv = &gl->devices[i];
                char idx[16];
                snprintf(idx, sizeof idx, "%u", dv->index);
                if (!strcmp(idx, want) || (dv->uuid && !strcasecmp(dv->uuid, want))) {
                        if (!dv->uuid || !*dv->uuid) {
                                snprintf(msg, msize, "GPU %s has no UUID to request it by", want);
                                return -ENODEV;
                        }
                        if (dv->status == GPU_STATUS_ERROR) {
                                snprintf(msg, msize, "GPU %s is in error: %s", want,
                                         dv->n_errors ? dv->errors[0] : "unknown");
                                return -ENODEV;
                        }
                        util_strlcpy(uuid, dv->uuid, usize);
                        util_strlcpy(index, idx, isize);
                        return 0;
                }
        }
        snprintf(msg, msize, "GPU %s is not on this node (%zu GPU%s found)", want, gl ? gl->n_devices : 0,
                 gl && gl->n_devices == 1 ? "" : "s");
        return -ENODEV;
}

/* GPU memory used by the container's processes: the GPU's compute
 * processes whose cgroup names the container. */
static void gpu_mem_update(dep *d) {
        const gpu_list *gl = d->m->cfg.gpus ? d->m->cfg.gpus(d->m->cfg.ud) : NULL;
        int64_t sum = 0;
        size_t i, j;

        if (!gl || !d->gpu_uuid[0] || !d->cid[0])
                return;
        for (i = 0; i < gl->n_devices; i++) {
                const gpu_device *dv = &gl->devices[i];
                if (!dv->uuid || strcasecmp(dv->uuid, d->gpu_uuid))
                        continue;
                for (j = 0; j < dv->n_processes; j++) {
                        char path[64], *text = NULL;
                        size_t len = 0;
                        snprintf(path, sizeof path, "/proc/%u/cgroup", dv->processes[j].pid);
                        if (util_read_file(path, 64 * 1024, &text, &len) == 0 && strstr(text, d->cid))
                                sum += dv->processes[j].has_memory_used ? dv->processes[j].memory_used_mib : 0;
                        free(text);
                }
        }
        d->gpu_mem_mb = sum;
}

/* ---- the end of an operation ---- */

static void job_fail(dep *d) {
        bool retryable = !strcmp(d->err_code, CMD_E_GPU_NOT_AVAILABLE) ||
                         !strcmp(d->err_code, CMD_E_CONTAINER_START_FAILED) || d->err_code[0] == '3';
        if (d->job)
                cmd_job_fail(d->job, d->err_code, d->err_msg ? d->err_msg : "failed", retryable,
                             d->err_details ? json_incref(d->err_details) : NULL);
        d->job = NULL;
}

static void job_succeed(dep *d, json_t *result) {
        if (d->job)
                cmd_job_succeed(d->job, result);
        else
                json_decref(result);
        d->job = NULL;
}

/* The operation is over (its job answered): run the next queued command,
 * or go back to watching. */
static void op_finish(dep *d) {
        op_cancel_io(d);
        d->op = OP_NONE;
        d->job = NULL;
        json_decref(d->new_spec);
        d->new_spec = NULL;
        json_decref(d->applied);
        d->applied = NULL;
        d->old_cid[0] = 0;
        free(d->err_msg);
        d->err_msg = NULL;
        json_decref(d->err_details);
        d->err_details = NULL;
        d->err_code[0] = 0;
        if (d->gone && !d->queue) {
                dep_unlink(d);
                dep_free(d);
                return;
        }
        if (d->queue) {
                op_next(d);
                return;
        }
        health_schedule(d);
}

/* ---- logs ---- */

typedef struct logs_ctx {
        json_t *entries;
        size_t max;
        bool more;
        docker_done_cb then;
        void *ud;
} logs_ctx;

static const char *level_of(int stream, const char *line, size_t len) {
        char head[160];
        size_t n = len < sizeof head - 1 ? len : sizeof head - 1;

        memcpy(head, line, n);
        head[n] = 0;
        if (strcasestr(head, "error") || strcasestr(head, "fatal") || strcasestr(head, "panic") ||
            strcasestr(head, "critical"))
                return "error";
        if (strcasestr(head, "warn"))
                return "warn";
        if (strcasestr(head, "debug") || strcasestr(head, "trace"))
                return "debug";
        (void)stream;
        return "info";
}

static void log_line_cb(docker_op *op, int stream, const char *line, size_t len, void *ud) {
        logs_ctx *c = ud;
        int64_t ms = 0;
        size_t pre = 0;
        char iso[25];
        json_t *e;
        (void)op;

        if (docker_log_timestamp_parse(line, len, &ms, &pre) < 0)
                ms = util_wall_ms();
        util_iso_ms(ms, iso);
        e = json_pack("{s:s,s:s,s:s,s:s%}", "timestamp", iso, "level", level_of(stream, line + pre, len - pre),
                      "source", stream == DOCKER_STDERR ? "stderr" : "stdout", "message", line + pre, len - pre);
        if (!e)
                return;
        json_array_append_new(c->entries, e);
        if (json_array_size(c->entries) > c->max) {
                json_array_remove(c->entries, 0);
                c->more = true;
        }
}

static void logs_fwd(docker_op *op, const docker_reply *rep, void *ud) {
        logs_ctx *c = ud;
        c->then(op, rep, c->ud);
}

/* Starts GET logs (the last tail lines, one more to learn whether there
 * are more), collecting ILogEntry items in c->entries; then done(op, reply,
 * ud). c must live until then. */
static int logs_start(deploy_mgr *m, const char *cid, int tail, int64_t since, logs_ctx *c, docker_done_cb done,
                      void *ud, docker_op **ret) {
        docker_logs_options lo = { .timestamps = true, .tail = tail + 1, .since = since, .max_bytes = 8u << 20 };
        c->max = (size_t)tail;
        c->more = false;
        c->then = done;
        c->ud = ud;
        c->entries = json_array();
        if (!c->entries)
                return -ENOMEM;
        return docker_container_logs(m->dk, cid, &lo, log_line_cb, logs_fwd, c, ret);
}

/* ---- create ---- */

static void create_fail_cleanup(dep *d);

/* The create (or recovery) failed: remove what was made, report failed. */
static void create_failed(dep *d) {
        log_warn("deployment failed", "deploymentId", d->id, "code", d->err_code, "error",
                 d->err_msg ? d->err_msg : "", NULL);
        op_cancel_io(d);
        if (d->cid[0]) {
                create_fail_cleanup(d);
                return;
        }
        util_strlcpy(d->health, "unknown", sizeof d->health);
        set_status(d, "failed", d->op == OP_RECOVER ? "recovery_failed" : "deployment_failed", "error", d->err_msg);
        job_fail(d);
        op_finish(d); /* an established deployment is retried by health_schedule() */
}

static void removed_after_failure(docker_op *op, const docker_reply *rep, void *ud) {
        dep *d = ud;
        (void)op;
        d->dop = NULL;
        if (rep->err < 0 && rep->err != -ENOENT)
                log_warn("cannot remove a failed deployment's container", "deploymentId", d->id, "containerId",
                         d->cid, "error", rep->message, NULL);
        d->cid[0] = 0;
        d->host_port = 0;
        create_failed(d);
}


static void lc_free(dep *d) {
        if (d->lc) {
                json_decref(d->lc->entries);
                free(d->lc);
                d->lc = NULL;
        }
}

static void remove_after_failure(dep *d) {
        if (docker_container_remove(d->m->dk, d->cid, true, true, removed_after_failure, d, &d->dop) < 0) {
                d->cid[0] = 0;
                create_failed(d);
        }
}

static void fail_logs_done(docker_op *op, const docker_reply *rep, void *ud) {
        dep *d = ud;
        (void)op;
        (void)rep;
        d->dop = NULL;
        if (d->lc && json_array_size(d->lc->entries)) {
                if (!d->err_details)
                        d->err_details = json_object();
                if (d->err_details)
                        json_object_set(d->err_details, "logs", d->lc->entries);
        }
        lc_free(d);
        remove_after_failure(d);
}

/* Keeps the container's last lines for the error's details, then removes it. */
static void create_fail_cleanup(dep *d) {
        d->lc = calloc(1, sizeof *d->lc);
        if (!d->lc || logs_start(d->m, d->cid, FAIL_LOG_LINES, 0, d->lc, fail_logs_done, d, &d->dop) < 0) {
                lc_free(d);
                remove_after_failure(d);
        }
}

static const json_t *target_spec(const dep *d) {
        return d->new_spec ? d->new_spec : d->spec;
}

/* The engine's message, with a hint when it is about GPUs. */
static void engine_fail(dep *d, const char *what, const docker_reply *rep) {
        const char *msg = rep->message && *rep->message ? rep->message : strerror(-rep->err);
        const char *hint = "";

        if (d->gpu_uuid[0] && (strcasestr(msg, "nvidia") || strcasestr(msg, "device driver") ||
                               strcasestr(msg, "cdi") || strcasestr(msg, "runtime")))
                hint = "; is the NVIDIA Container Toolkit installed and configured for this engine? "
                       "(see DEPLOY_GPU_MODE)";
        set_err(d, CMD_E_CONTAINER_START_FAILED, json_pack("{s:s}", "engineMessage", msg), "%s: %s%s", what, msg,
                hint);
}

/* ---- health probes ---- */

static void probe_done(http_request *req, const http_result *res, void *ud) {
        dep *d = ud;
        probe_cb cb = d->probe_cb;
        bool any = !jstr(target_spec(d), "healthCheckPath");
        char why[200];
        bool ok;
        (void)req;

        d->hreq = NULL;
        d->probe_cb = NULL;
        if (res->err < 0)
                snprintf(why, sizeof why, "%s", *res->error ? res->error : strerror(-res->err));
        else
                snprintf(why, sizeof why, "HTTP %ld", res->status);
        /* Without a health path any HTTP answer means the server is up. */
        ok = res->err == 0 && (any ? res->status > 0 : res->status >= 200 && res->status < 400);
        if (ok)
                d->last_health_ms = util_wall_ms();
        cb(d, ok, why);
}

/* GET healthCheckPath (or /) on the published port. */
static void probe_start(dep *d, probe_cb cb) {
        const char *path = jstr(target_spec(d), "healthCheckPath");
        const char *host = probe_host(d->m);
        char url[1200];
        http_options o = { .timeout_ms = HEALTH_TIMEOUT_MS, .connect_timeout_ms = 2000, .max_response = 64 * 1024 };

        snprintf(url, sizeof url, strchr(host, ':') ? "http://[%s]:%d%s" : "http://%s:%d%s", host, d->host_port,
                 path ? path : "/");
        o.url = url;
        d->probe_cb = cb;
        if (d->host_port <= 0 || http_request_start(d->m->hc, &o, probe_done, d, &d->hreq) < 0) {
                d->probe_cb = NULL;
                cb(d, false, d->host_port <= 0 ? "no published port" : "cannot start the request");
        }
}

/* ---- starting: inspect, then poll health until the deadline ---- */

static void startup_ok(dep *d);
static void startup_failed(dep *d);
static void startup_poll(dep *d);
static uint64_t poll_delay(const dep *d);

static void startup_inspected(docker_op *op, const docker_reply *rep, void *ud) {
        dep *d = ud;
        deploy_container_state st;
        (void)op;

        d->dop = NULL;
        if (rep->err == -ENOENT) {
                set_err(d, CMD_E_CONTAINER_START_FAILED, NULL, "the container was removed while starting");
                d->cid[0] = 0;
                startup_failed(d);
                return;
        }
        if (rep->err == 0 && deploy_container_state_parse(rep->json, container_port(d), &st) == 0) {
                if (!d->m->cfg.host_network && st.host_port > 0)
                        d->host_port = st.host_port;
                if (st.started_ms > 0)
                        d->started_ms = st.started_ms;
                if (!st.running && !st.restarting) {
                        set_err(d, CMD_E_CONTAINER_START_FAILED, json_pack("{s:I}", "exitCode", (json_int_t)st.exit_code),
                                "the container exited with code %lld%s%s", st.exit_code, st.error[0] ? ": " : "",
                                st.error);
                        startup_failed(d);
                        return;
                }
        }
        if (loop_now(d->m->l) >= d->deadline) {
                set_err(d, CMD_E_CONTAINER_START_FAILED, NULL, "health check %s did not pass within %llu s",
                        jstr(target_spec(d), "healthCheckPath") ? jstr(target_spec(d), "healthCheckPath") : "/",
                        (unsigned long long)(d->m->cfg.health_timeout_ms / 1000));
                startup_failed(d);
                return;
        }
        arm(d, d->polls ? poll_delay(d) : 0, startup_poll);
}

/* 10, 20, 40 ... ms between probes, at most STARTUP_POLL_MS: a server that
 * is up at once is seen at once, a slow one costs few probes. */
static uint64_t poll_delay(const dep *d) {
        uint64_t ms = 10ull << (d->polls < 6 ? d->polls : 6);
        return ms < STARTUP_POLL_MS ? ms : STARTUP_POLL_MS;
}

static void startup_probed(dep *d, bool ok, const char *why) {
        (void)why;
        if (ok) {
                startup_ok(d);
                return;
        }
        /* Every fourth failed probe, look at the container: one that
         * exited will not become healthy. */
        if (++d->polls % 4 == 1 || loop_now(d->m->l) >= d->deadline) {
                if (docker_container_inspect(d->m->dk, d->cid, startup_inspected, d, &d->dop) == 0)
                        return;
        }
        arm(d, poll_delay(d), startup_poll);
}

static void startup_poll(dep *d) {
        probe_start(d, startup_probed);
}

/* The container runs (or was just started): wait for health. */
static void startup_watch(dep *d) {
        d->polls = 0;
        d->deadline = loop_now(d->m->l) + d->m->cfg.health_timeout_ms;
        if (docker_container_inspect(d->m->dk, d->cid, startup_inspected, d, &d->dop) < 0) {
                set_err(d, CMD_E_INTERNAL, NULL, "cannot inspect the container");
                startup_failed(d);
        }
}

static void started_cb(docker_op *op, const docker_reply *rep, void *ud) {
        dep *d = ud;
        (void)op;
        d->dop = NULL;
        if (rep->err < 0 && rep->err != -EALREADY) {
                engine_fail(d, "cannot start the container", rep);
                startup_failed(d);
                return;
        }
        startup_watch(d);
}

static void start_container(dep *d) {
        if (docker_container_start(d->m->dk, d->cid, started_cb, d, &d->dop) < 0) {
                set_err(d, CMD_E_INTERNAL, NULL, "cannot start the container");
                startup_failed(d);
        }
}

/* ---- creating the container ---- */

static bool port_free(const char *ip, int port) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool ok;

        if (fd < 0)
                return false;
        if (!ip || !*ip || inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
                sa.sin_addr.s_addr = htonl(INADDR_ANY);
        ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
        close(fd);
        return ok;
}

static int ephemeral_port(const char *ip) {
        struct sockaddr_in sa = { .sin_family = AF_INET };
        socklen_t len = sizeof sa;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = 0;

        if (fd < 0)
                return 0;
        if (!ip || !*ip || inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
                sa.sin_addr.s_addr = htonl(INADDR_ANY);
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
                port = ntohs(sa.sin_port);
        close(fd);
        return port;
}

static void created_cb(docker_op *op, const docker_reply *rep, void *ud);

/* A host port the engine has published for a running container (Podman's
 * rootful forwarding is firewall rules: no socket shows it). */
static bool engine_port_used(const json_t *list, int port) {
        const json_t *c, *p;
        size_t i, j;

        json_array_foreach (list, i, c)
                json_array_foreach (json_object_get(c, "Ports"), j, p)
                        if (json_integer_value(json_object_get(p, "PublicPort")) == port)
                                return true;
        return false;
}

static bool host_port_ok(const dep *d, const json_t *list, int port) {
        return port > 0 && port_free(d->m->bind_ip, port) && !engine_port_used(list, port);
}

static void create_with_ports(dep *d, const json_t *running);

static void ports_listed(docker_op *op, const docker_reply *rep, void *ud) {
        dep *d = ud;
        (void)op;
        d->dop = NULL;
        create_with_ports(d, rep->err == 0 ? rep->json : NULL);
}

/* Lists the running containers first, to stay off their host ports. */
static void create_container(dep *d) {
        docker_list_options lo = { .all = false };

        if (d->m->cfg.host_network || docker_container_list(d->m->dk, &lo, ports_listed, d, &d->dop) < 0)
                create_with_ports(d, NULL);
}

static void create_with_ports(dep *d, const json_t *running) {
        const json_t *spec = target_spec(d);
        deploy_container_opts o = {
                .deployment_id = d->id,
                .node_id = d->m->node_id,
                .gpu_mode = d->m->cfg.gpu_mode,
                .podman = docker_get_version(d->m->dk) &&
                          docker_get_version(d->m->dk)->runtime == DOCKER_RUNTIME_PODMAN,
                .gpu_uuid = d->gpu_uuid[0] ? d->gpu_uuid : NULL,
                .host_network = d->m->cfg.host_network,
                .bind_ip = d->m->bind_ip,
        };
        char mount[PATH_MAX], inside[PATH_MAX + 16];
        int cport = (int)json_integer_value(json_object_get(spec, "containerPort"));
        json_t *cfg;

        /* The model: a Hugging Face snapshot is links into its repository's
         * blobs, so the whole repository is mounted. */
        if (d->model_path) {
                const char *root = model_cache_dir(d->m->cache);
                size_t rl = strlen(root);
                util_strlcpy(mount, d->model_path, sizeof mount);
                snprintf(inside, sizeof inside, "%s", DEPLOY_MODEL_MOUNT);
                if (!strncmp(d->model_path, root, rl) && !strncmp(d->model_path + rl, "/hub/models--", 13)) {
                        const char *repo = d->model_path + rl + 5, *slash = strchr(repo, '/');
                        if (slash) {
                                snprintf(mount, sizeof mount, "%.*s", (int)(slash - d->model_path), d->model_path);
                                snprintf(inside, sizeof inside, "%s%s", DEPLOY_MODEL_MOUNT, slash);
                        }
                }
                o.model_host_path = mount;
                o.model_container_path = inside;
        }
        if (d->m->cfg.host_network) {
                d->host_port = cport;
                if (!port_free(NULL, cport)) {
                        set_err(d, CMD_E_CONTAINER_START_FAILED, NULL,
                                "port %d is in use on the host (DEPLOY_NETWORK=host)", cport);
                        startup_failed(d);
                        return;
                }
        } else {
                /* The port it had (a recreate keeps its endpoint), else the
                 * container's own port when free, else one the kernel hands
                 * out; pinned, so restarts keep the endpoint. */
                int had = d->op != OP_CREATE ? d->host_port : 0, tries;
                if (host_port_ok(d, running, had))
                        d->host_port = had;
                else if (host_port_ok(d, running, cport))
                        d->host_port = cport;
                else
                        for (tries = 0, d->host_port = 0; tries < 20 && !host_port_ok(d, running, d->host_port); tries++)
                                d->host_port = ephemeral_port(d->m->bind_ip);
                o.host_port = d->host_port;
        }
        cfg = deploy_container_config(spec, &o);
        if (!cfg || docker_container_create(d->m->dk, jstr(spec, "containerName"), cfg, created_cb, d, &d->dop) < 0) {
                json_decref(cfg);
                set_err(d, CMD_E_INTERNAL, NULL, "cannot create the container");
                startup_failed(d);
                return;
        }
        json_decref(cfg);
}

static void name_conflict_removed(docker_op *op, const docker_reply *rep, void *ud) {
        dep *d = ud;
        (void)op;
        d->dop = NULL;
        if (rep->err < 0 && rep->err != -ENOENT) {
                engine_fail(d, "cannot remove the leftover container", rep);
                startup_failed(d);
                return;
        }
        d->polls = 1000; /* one retry only */
        create_container(d);
}

/* The name is taken: ours (a leftover of this deployment) is removed and
 * the create retried once; anyone else's is an error. */
static void name_conflict_inspected(docker_op *op, const docker_reply *rep, void *ud) {
        dep *d = ud;
        const json_t *labels = json_object_get(json_object_get(rep->json, "Config"), "Labels");
        const char *name = jstr(target_spec(d), "containerName");
        (void)op;

        d->dop = NULL;
        if (rep->err == 0 && d->polls < 1000 && d->op != OP_UPDATE &&
            !strcmp(jstr(labels, DEPLOY_LABEL_MANAGED) ? jstr(labels, DEPLOY_LABEL_MANAGED) : "", "true") &&
            jstr(labels, DEPLOY_LABEL_NODE) && !strcmp(jstr(labels, DEPLOY_LABEL_NODE), d->m->node_id) &&
            jstr(labels, DEPLOY_LABEL_DEPLOYMENT) && !strcmp(jstr(labels, DEPLOY_LABEL_DEPLOYMENT), d->id) &&
            jstr(rep->json, "Id")) {
                log_info("removing a leftover container of this deployment", "deploymentId", d->id, "containerId",
                         jstr(rep->json, "Id"), NULL);
                if (docker_container_remove(d->m->dk, jstr(rep->json, "Id"), true, false, name_conflict_removed, d,
                                            &d->dop) == 0)
                        return;
        }
        set_err(d, CMD_E_CONTAINER_START_FAILED, NULL,
                "container name %s is in use by another container (not this deployment's)", name);
        startup_failed(d);
}

static void created_cb(docker_op *op, const docker_reply *rep, void *ud) {
        dep *d = ud;
        (void)op;

        d->dop = NULL;
        if (rep->err == -EEXIST) {
                if (docker_container_inspect(d->m->dk, jstr(target_spec(d), "containerName"), name_conflict_inspected,
                                             d, &d->dop) == 0)
                        return;
        }
        if (rep->err < 0 || !rep->id) {
                engine_fail(d, "cannot create the container", rep);
                startup_failed(d);
                return;
        }
        util_strlcpy(d->cid, rep->id, sizeof d->cid);
        persist(d);
        start_container(d);
}

/* ---- the image ---- */

/* Credentials for the image's registry from REGISTRY_AUTH_FILE (re-read at
 * every pull, so a rotated file needs no restart), then the pull. */
typedef struct pull_auth {
        char *user, *pass, *token;
        char server[300];
        docker_registry_auth a;
} pull_auth;

static void pull_auth_done(pull_auth *pa) {
        if (pa->pass)
                explicit_bzero(pa->pass, strlen(pa->pass));
        if (pa->token)
                explicit_bzero(pa->token, strlen(pa->token));
        free(pa->user);
        free(pa->pass);
        free(pa->token);
}

static const docker_registry_auth *pull_auth_get(deploy_mgr *m, const char *image, pull_auth *pa) {
        char *text = NULL;
        size_t len = 0;
        json_t *cfg;
        int r;

        memset(pa, 0, sizeof *pa);
        if (!m->auth_file || deploy_image_registry(image, pa->server, sizeof pa->server) < 0)
                return NULL;
        r = util_read_file(m->auth_file, 1 << 20, &text, &len);
        if (r < 0) {
                log_warn("cannot read REGISTRY_AUTH_FILE; pulling anonymously", "file", m->auth_file, "error",
                         strerror(-r), NULL);
                return NULL;
        }
        cfg = json_loadb(text, len, 0, NULL);
        explicit_bzero(text, len);
        free(text);
        r = cfg ? deploy_registry_auth_lookup(cfg, pa->server, &pa->user, &pa->pass, &pa->token) : -EINVAL;
        json_decref(cfg);
        if (r == -ENOENT)
                return NULL;
        if (r < 0) {
                log_warn("REGISTRY_AUTH_FILE: unreadable entry; pulling anonymously", "registry", pa->server, NULL);
                return NULL;
        }
        pa->a.username = pa->user;
        pa->a.password = pa->pass;
        pa->a.identity_token = pa->token;
        pa->a.server = pa->server;
        return &pa->a;
}

static int pull_image(dep *d, const char *image, docker_pull_cb progress, docker_done_cb done) {
        pull_auth pa;
        docker_pull_options po = { .image = image };
        int r;

        po.auth = pull_auth_get(d->m, image, &pa);
        r = docker_image_pull(d->m->dk, &po, progress, done, d, &d->dop);
        pull_auth_done(&pa);
        return r;
}

static void pull_progress(docker_op *op, const docker_pull_event *ev, void *ud) {
        dep *d = ud;
        uint64_t now = loop_now(d->m->l);
        char msg[200];
        (void)op;

        if (now - d->op_started < 5000 || now < d->deadline)
                return;
        d->deadline = now + 5000; /* at most one progress event per 5 s */
        snprintf(msg, sizeof msg, "pulling %s: %llu of %llu MB, %u of %u layers", jstr(target_spec(d), "containerImage"),
                 (unsigned long long)(ev->bytes_done >> 20), (unsigned long long)(ev->bytes_total >> 20),
                 ev->layers_done, ev->layers);
        set_status(d, d->status, "image_pull", "info", msg);
}

static void pulled_cb(docker_op *op, const docker_reply *rep, void *ud) {
        dep *d = ud;
        (void)op;
        d->dop = NULL;
        if (rep->err < 0) {
                engine_fail(d, "cannot pull the image", rep);
                startup_failed(d);
                return;
        }
        log_info("image pulled", "deploymentId", d->id, "image", jstr(target_spec(d), "containerImage"), NULL);
        create_container(d);
}

static void image_inspected(docker_op *op, const docker_reply *rep, void *ud) {
        dep *d = ud;
        const char *image = jstr(target_spec(d), "containerImage");
        (void)op;

        d->dop = NULL;
        if (rep->err == 0) {
                create_container(d);
                return;
        }
        if (rep->err != -ENOENT) {
                engine_fail(d, "cannot inspect the image", rep);
                startup_failed(d);
                return;
        }
        log_info("pulling the image", "deploymentId", d->id, "image", image, NULL);
        d->deadline = 0;
        if (pull_image(d, image, pull_progress, pulled_cb) < 0) {
                set_err(d, CMD_E_INTERNAL, NULL, "cannot start the image pull");
                startup_failed(d);
        }
}

static void create_pull_or_create(dep *d) {
        if (docker_image_inspect(d->m->dk, jstr(target_spec(d), "containerImage"), image_inspected, d, &d->dop) < 0) {
                set_err(d, CMD_E_COMMAND_INVALID, NULL, "containerImage is not an image reference");
                startup_failed(d);
        }
}

/* ---- the model ---- */

static void ens_progress(const json_t *progress, void *ud) {
        dep *d = ud;
        json_t *p;

        if (!d->job)
                return;
        p = json_deep_copy(progress);
        if (!p)
                return;
        json_object_set_new(p, "originalMessageId", json_string(cmd_job_message_id(d->job)));
        json_object_set_new(p, "deploymentId", json_string(d->id));
        cmd_job_emit(d->job, "model.downloadProgress", p);
}

static void ens_done(int r, const char *path, uint64_t size, const char *code, const char *message, void *ud) {
        dep *d = ud;
        (void)size;

        d->ens = NULL;
        if (r < 0) {
                set_err(d, code && *code ? code : CMD_E_INTERNAL, NULL, "model %s: %s",
                        jstr(target_spec(d), "modelPath"), message ? message : strerror(-r));
                startup_failed(d);
                return;
        }
        free(d->model_path);
        d->model_path = strdup(path);
        if (!d->model_path) {
                set_err(d, CMD_E_INTERNAL, NULL, "out of memory");
                startup_failed(d);
                return;
        }
        persist(d);
        create_pull_or_create(d);
}

/* A local modelPath: inside MODEL_CACHE_DIR (relative to it or absolute),
 * existing, no link leading out. */
static int model_local(deploy_mgr *m, const char *path, char **ret, char *err, size_t errlen) {
        const char *root = model_cache_dir(m->cache);
        char joined[PATH_MAX], real[PATH_MAX], realroot[PATH_MAX];
        size_t rl;

        if (path[0] == '/')
                util_strlcpy(joined, path, sizeof joined);
        else
                snprintf(joined, sizeof joined, "%s/%s", root, path);
        if (!realpath(root, realroot)) {
                snprintf(err, errlen, "MODEL_CACHE_DIR: %s", strerror(errno));
                return -EIO;
        }
        if (!realpath(joined, real)) {
                int e = errno;
                snprintf(err, errlen, "model not found in the cache: %s (%s)", path, strerror(e));
                return e == ENOENT || e == ENOTDIR ? -ENOENT : -EINVAL;
        }
        rl = strlen(realroot);
        if (strncmp(real, realroot, rl) || real[rl] != '/' || !strncmp(real + rl, "/.", 2)) {
                snprintf(err, errlen, "data.modelPath must be inside MODEL_CACHE_DIR (%s)", root);
                return -EINVAL;
        }
        *ret = strdup(real);
        return *ret ? 0 : -ENOMEM;
}

static void create_model(dep *d) {
        const json_t *spec = target_spec(d);
        deploy_model_kind kind;
        json_t *data = NULL;
        char err[400] = "";
        int r;

        if (d->model_path) { /* known (a recovery or a resumed create) */
                create_pull_or_create(d);
                return;
        }
        r = deploy_model_source(jstr(spec, "modelPath"), jstr(spec, "modelId"), &kind, &data, err, sizeof err);
        if (r < 0) {
                set_err(d, r == -ENOMEM ? CMD_E_INTERNAL : CMD_E_COMMAND_INVALID, NULL, "%s", err);
                startup_failed(d);
                return;
        }
        if (kind == DEPLOY_MODEL_LOCAL) {
                r = model_local(d->m, jstr(spec, "modelPath"), &d->model_path, err, sizeof err);
                if (r < 0) {
                        set_err(d,
                                r == -ENOENT ? CMD_E_MODEL_NOT_FOUND
                                : r == -EINVAL ? CMD_E_COMMAND_INVALID
                                               : CMD_E_INTERNAL,
                                NULL, "%s", err);
                        startup_failed(d);
                        return;
                }
                create_pull_or_create(d);
                return;
        }
        log_info("fetching the deployment's model into the cache", "deploymentId", d->id, "modelId",
                 jstr(spec, "modelId"), "source", jstr(data, "source"), NULL);
        r = model_cmd_ensure(d->m->e, jstr(spec, "modelId"), data, ens_progress, ens_done, d, &d->ens, err, sizeof err);
        json_decref(data);
        if (r < 0) {
                set_err(d, r == -EINVAL ? CMD_E_COMMAND_INVALID : CMD_E_INTERNAL, NULL, "model: %s",
                        *err ? err : strerror(-r));
                startup_failed(d);
        }
}

/* ---- outcomes of a start ---- */

static void forget_cb(docker_op *op, const docker_reply *rep, void *ud) {
        (void)op;
        (void)ud;
        if (rep->err < 0 && rep->err != -ENOENT)
                log_warn("cannot remove a replaced or orphaned container", "error", rep->message, NULL);
}

/* Removes a container nobody waits for (nothing to free if the client is
 * freed first). */
static void remove_quietly(deploy_mgr *m, const char *cid) {
        if (docker_container_remove(m->dk, cid, true, false, forget_cb, NULL, NULL) < 0)
                log_warn("cannot remove a container", "containerId", cid, NULL);
}

static void startup_ok(dep *d) {
        char ep[320], iso[25];
        json_t *res;

        util_strlcpy(d->health, "healthy", sizeof d->health);
        d->health_fails = 0;
        d->died_at = 0;
        d->last_health_ms = util_wall_ms();
        if (!d->started_ms)
                d->started_ms = util_wall_ms();
        gpu_mem_update(d);
        endpoint_of(d, ep, sizeof ep);
        util_iso_ms(d->started_ms, iso);
        switch (d->op) {
        case OP_CREATE:
                d->recoveries = 0;
                d->established = true;
                set_status(d, "running", "container_healthy", "info", "the health check passed");
                res = json_pack("{s:s,s:s,s:s}", "containerId", d->cid, "endpoint", ep, "startedAt", iso);
                if (res)
                        json_object_set_new(res, "gpuAllocated", d->gpu_index[0] ? json_string(d->gpu_index) : json_null());
                job_succeed(d, res);
                break;
        case OP_RESTART:
                d->recoveries = 0;
                set_status(d, "running", "container_healthy", "info", "restarted; the health check passed");
                util_iso_now(iso);
                job_succeed(d, json_pack("{s:s,s:s,s:s}", "containerId", d->cid, "endpoint", ep, "restartedAt", iso));
                break;
        case OP_UPDATE:
                if (d->err_msg) { /* rolled back: the old container is healthy again */
                        set_status(d, "running", "update_rolled_back", "warn", d->err_msg);
                        job_fail(d);
                        break;
                }
                json_decref(d->spec);
                d->spec = d->new_spec;
                d->new_spec = NULL;
                if (d->old_cid[0])
                        remove_quietly(d->m, d->old_cid);
                set_status(d, "running", "deployment_updated", "info", "the new container passed its health check");
                util_iso_now(iso);
                job_succeed(d, json_pack("{s:s,s:b,s:O}", "updatedAt", iso, "restarted", 1, "applied", d->applied));
                break;
        default: /* OP_RECOVER */
                set_status(d, "running", "container_healthy", "info", "recovered; the health check passed");
                break;
        }
        persist(d);
        op_finish(d);
}

static void rollback_start(dep *d);

static void update_new_removed(docker_op *op, const docker_reply *rep, void *ud) {
        dep *d = ud;
        (void)op;
        (void)rep;
        d->dop = NULL;
        rollback_start(d);
}

static void rollback_renamed(docker_op *op, const docker_reply *rep, void *ud) {
        dep *d = ud;
        (void)op;
        d->dop = NULL;
        if (rep->err < 0)
                log_warn("cannot give the old container its name back", "deploymentId", d->id, "error", rep->message,
                         NULL);
        start_container(d);
}

/* Puts the old container back: its name, then start and health. */
static void rollback_start(dep *d) {
        char path[400];

        util_strlcpy(d->cid, d->old_cid, sizeof d->cid);
        d->old_cid[0] = 0;
        json_decref(d->new_spec);
        d->new_spec = NULL;
        snprintf(path, sizeof path, "/containers/%s/rename?name=%s", d->cid, jstr(d->spec, "containerName"));
        if (docker_request(d->m->dk, "POST", path, NULL, rollback_renamed, d, &d->dop) < 0)
                start_container(d);
}

static void startup_failed(dep *d) {
        if (d->op == OP_UPDATE && d->old_cid[0]) {
                char msg[1200];
                /* The new container failed: remove it, bring the old one back. */
                snprintf(msg, sizeof msg, "update failed (%s); rolled back to the previous container",
                         d->err_msg ? d->err_msg : "unknown error");
                set_err(d, CMD_E_CONTAINER_START_FAILED, d->err_details ? json_incref(d->err_details) : NULL, "%s", msg);
                op_cancel_io(d);
                log_warn("deployment update failed; rolling back", "deploymentId", d->id, "error", msg, NULL);
                if (d->cid[0] && strcmp(d->cid, d->old_cid) &&
                    docker_container_remove(d->m->dk, d->cid, true, false, update_new_removed, d, &d->dop) == 0)
                        return;
                rollback_start(d);
                return;
        }
        if (d->op == OP_CREATE || (d->op == OP_RECOVER && d->recreate)) {
                create_failed(d);
                return;
        }
        /* restart, a recovery that started the existing container, or a
         * failed rollback: keep the container, report, retry later. */
        op_cancel_io(d);
        util_strlcpy(d->health, "unhealthy", sizeof d->health);
        log_warn("deployment failed", "deploymentId", d->id, "code", d->err_code, "error",
                 d->err_msg ? d->err_msg : "", NULL);
        set_status(d, "failed", "start_failed", "error", d->err_msg);
        job_fail(d);
        d->recreate = true;
        op_finish(d); /* health_schedule() plans the recovery */
}

/* ---- recovery: what should run, runs ---- */

static void recover_begin(dep *d);

static void recovery_schedule(dep *d, uint64_t delay_ms) {
        uint64_t backoff;

        if (d->m->closing || d->gone || d->op != OP_NONE || !wants_running(d) || !d->established)
                return;
        if (!delay_ms) {
                backoff = d->recoveries == 0 ? 0 : RECOVERY_BACKOFF_MIN_MS << (d->recoveries < 8 ? d->recoveries - 1 : 7);
                delay_ms = backoff > RECOVERY_BACKOFF_MAX_MS ? RECOVERY_BACKOFF_MAX_MS : backoff;
        }
        arm(d, delay_ms, recover_begin);
}

static void recover_removed(docker_op *op, const docker_reply *rep, void *ud) {
        dep *d = ud;
        (void)op;
        d->dop = NULL;
        if (rep->err < 0 && rep->err != -ENOENT) {
                engine_fail(d, "cannot remove the unhealthy container", rep);
                startup_failed(d);
                return;
        }
        d->cid[0] = 0;
        create_model(d);
}

static void recover_recreate(dep *d) {
        d->recreate = true;
        set_status(d, "starting", "recreating", "warn", "recreating the container");
        if (d->cid[0] && docker_container_remove(d->m->dk, d->cid, true, false, recover_removed, d, &d->dop) == 0)
                return;
        d->cid[0] = 0;
        create_model(d);
}

static void recover_inspected(docker_op *op, const docker_reply *rep, void *ud) {
        dep *d = ud;
        deploy_container_state st;
        (void)op;

        d->dop = NULL;
        if (rep->err == -ENOENT || (rep->err == 0 && deploy_container_state_parse(rep->json, container_port(d), &st) < 0)) {
                recover_recreate(d);
                return;
        }
        if (rep->err < 0) { /* the engine is away: try again later */
                d->op = OP_NONE;
                d->recoveries++;
                recovery_schedule(d, 0);
                return;
        }
        if (st.running || st.restarting) {
                set_status(d, "starting", "container_restarted", "info", "the container runs again");
                startup_watch(d);
        } else {
                set_status(d, "starting", "container_starting", "info", "starting the stopped container");
                start_container(d);
        }
}

static void recover_begin(dep *d) {
        if (d->op != OP_NONE || !wants_running(d) || d->m->closing)
                return;
        d->op = OP_RECOVER;
        d->op_started = loop_now(d->m->l);
        d->recoveries++;
        d->died_at = 0;
        log_info("recovering a deployment", "deploymentId", d->id, "status", d->status, NULL);
        if (!d->cid[0] || d->recreate) {
                recover_recreate(d);
                return;
        }
        if (docker_container_inspect(d->m->dk, d->cid, recover_inspected, d, &d->dop) < 0)
                recover_recreate(d);
}

/* ---- watching a running deployment ---- */

static void health_tick(dep *d);

static void health_probed(dep *d, bool ok, const char *why) {
        uint64_t iv = (uint64_t)json_number_value(json_object_get(d->spec, "healthCheckInterval")) * 1000;

        if (!iv)
                iv = DEFAULT_HEALTH_INTERVAL_S * 1000;
        if (ok) {
                d->health_fails = 0;
                gpu_mem_update(d);
                if (strcmp(d->health, "healthy")) {
                        util_strlcpy(d->health, "healthy", sizeof d->health);
                        set_status(d, d->status, "health_recovered", "info", "the health check passes again");
                }
                arm(d, iv, health_tick);
                return;
        }
        d->health_fails++;
        util_strlcpy(d->health, "unhealthy", sizeof d->health);
        log_warn("deployment health check failed", "deploymentId", d->id, "reason", why, NULL);
        if (d->health_fails < HEALTH_FAILS_MAX) {
                if (d->health_fails == 1)
                        set_status(d, d->status, "health_check_failed", "warn", why);
                /* Look again sooner than the interval. */
                arm(d, iv < 5000 ? iv : 5000, health_tick);
                return;
        }
        {
                char msg[300];
                snprintf(msg, sizeof msg, "%u health checks failed in a row (%s); recreating the container",
                         d->health_fails, why);
                set_status(d, "failed", "unhealthy", "error", msg);
        }
        d->recreate = true;
        d->recoveries = 0;
        recovery_schedule(d, 0);
}

static void health_tick(dep *d) {
        if (d->op != OP_NONE || strcmp(d->status, "running"))
                return;
        probe_start(d, health_probed);
}

static void health_schedule(dep *d) {
        if (d->m->closing || d->gone || d->op != OP_NONE)
                return;
        if (!strcmp(d->status, "running"))
                arm(d, d->m->adopting ? 1000 : 2000, health_tick);
        else if (!strcmp(d->status, "failed") && d->established)
                recovery_schedule(d, 0);
        else {
                loop_timer_disarm(d->t);
                d->on_timer = NULL;
        }
}

/* ---- operations begun by commands ---- */

static deploy_mgr *mgr_of(cmd_job *job) {
        return cmd_job_ctx(job);
}

static void op_begin(dep *d, cmd_job *job, op_kind kind) {
        op_cancel_io(d);
        d->op = kind;
        d->job = job;
        d->op_started = loop_now(d->m->l);
        d->polls = 0;
        d->deadline = 0;
        if (job)
                cmd_job_set_userdata(job, d);
}

static void create_begin(dep *d, cmd_job *job) {
        deploy_mgr *m = d->m;
        const json_t *data = cmd_job_data(job);
        char msg[300], uuid[96], idx[16];
        json_t *spec;
        int r;

        op_begin(d, job, OP_CREATE);
        r = gpu_resolve(m, json_object_get(data, "gpuDeviceId"), uuid, sizeof uuid, idx, sizeof idx, msg, sizeof msg);
        spec = r < 0 ? NULL : json_deep_copy(data);
        if (!spec) {
                /* Before anything is made: nothing to report but the error. */
                set_err(d, r < 0 ? CMD_E_GPU_NOT_AVAILABLE : CMD_E_INTERNAL, NULL, "%s", r < 0 ? msg : "out of memory");
                job_fail(d);
                if (!d->status[0])
                        d->gone = true; /* a new one: forget it */
                op_finish(d);
                return;
        }
        json_decref(d->spec);
        d->spec = spec;
        util_strlcpy(d->gpu_uuid, uuid, sizeof d->gpu_uuid);
        util_strlcpy(d->gpu_index, idx, sizeof d->gpu_index);
        d->established = false;
        d->recreate = false;
        d->recoveries = 0;
        d->started_ms = 0;
        d->host_port = 0;
        free(d->model_path);
        d->model_path = NULL;
        util_strlcpy(d->health, "unknown", sizeof d->health);
        set_status(d, "starting", "deployment_started", "info", "creating the container");
        create_model(d);
}

static void stopped_cb(docker_op *op, const docker_reply *rep, void *ud) {
        dep *d = ud;
        uint64_t took = loop_now(d->m->l) - d->op_started;
        int64_t gpu_mem = d->gpu_mem_mb;
        char iso[25];
        (void)op;

        d->dop = NULL;
        if (rep->err < 0 && rep->err != -ESRCH && rep->err != -EALREADY && rep->err != -ENOENT) {
                engine_fail(d, "cannot stop the container", rep);
                util_strlcpy(d->err_code, CMD_E_INTERNAL, sizeof d->err_code);
                set_status(d, "stopped", "stop_failed", "error", d->err_msg);
                job_fail(d);
                op_finish(d);
                return;
        }
        if (rep->err == -ENOENT)
                d->cid[0] = 0;
        util_strlcpy(d->health, "unknown", sizeof d->health);
        set_status(d, "stopped", "container_stopped", "info", d->stop_force ? "killed" : "stopped");
        util_iso_now(iso);
        job_succeed(d, json_pack("{s:s,s:b,s:{s:I,s:i}}", "stoppedAt", iso, "gracefulShutdown",
                                 !d->stop_force && took < (uint64_t)d->stop_timeout * 1000, "resourcesReleased",
                                 "gpuMemory", (json_int_t)gpu_mem, "cpuCores", 0));
        op_finish(d);
}

static int stop_container(dep *d, docker_done_cb cb) {
        if (d->stop_force)
                return docker_container_kill(d->m->dk, d->cid, NULL, cb, d, &d->dop);
        return docker_container_stop(d->m->dk, d->cid, d->stop_timeout, cb, d, &d->dop);
}

static void stop_begin(dep *d, cmd_job *job) {
        const json_t *data = cmd_job_data(job);

        if (!strcmp(d->status, "stopped") || !d->cid[0]) {
                cmd_job_fail(job, CMD_E_DEPLOYMENT_NOT_RUNNING, "deployment is not running", false,
                             json_pack("{s:s}", "status", d->status));
                if (d->op == OP_NONE)
                        health_schedule(d);
                return;
        }
        op_begin(d, job, OP_STOP);
        d->stop_force = json_is_true(json_object_get(data, "force"));
        d->stop_timeout = json_object_get(data, "timeout") ? (int)json_number_value(json_object_get(data, "timeout")) : 30;
        set_status(d, "stopping", "stop_requested", "info", d->stop_force ? "killing the container" : "stopping the container");
        if (stop_container(d, stopped_cb) < 0) {
                set_err(d, CMD_E_INTERNAL, NULL, "cannot stop the container");
                set_status(d, "stopped", "stop_failed", "error", d->err_msg);
                job_fail(d);
                op_finish(d);
        }
}

static void restart_begin(dep *d, cmd_job *job);

static void restarted_cb(docker_op *op, const docker_reply *rep, void *ud) {
        dep *d = ud;
        (void)op;
        d->dop = NULL;
        if (rep->err == -ENOENT) { /* gone behind our back: make a new one */
                d->cid[0] = 0;
                d->recreate = true;
                create_model(d);
                return;
        }
        if (rep->err < 0) {
                engine_fail(d, "cannot restart the container", rep);
                startup_failed(d);
                return;
        }
        d->started_ms = 0;
        startup_watch(d);
}

static void restart_begin(dep *d, cmd_job *job) {
        const json_t *data = cmd_job_data(job);
        int timeout = json_object_get(data, "timeout") ? (int)json_number_value(json_object_get(data, "timeout")) : 60;

        op_begin(d, job, OP_RESTART);
        if (!d->cid[0]) {
                set_status(d, "starting", "recreating", "info", "the deployment has no container; creating one");
                create_model(d);
                return;
        }
        if (!strcmp(d->status, "running"))
                set_status(d, "restarting", "restart_requested", "info", "restarting the container");
        else
                set_status(d, "starting", "restart_requested", "info", "starting the container");
        if (docker_container_restart(d->m->dk, d->cid, timeout, restarted_cb, d, &d->dop) < 0) {
                set_err(d, CMD_E_INTERNAL, NULL, "cannot restart the container");
                startup_failed(d);
        }
}

static void update_old_renamed(docker_op *op, const docker_reply *rep, void *ud) {
        dep *d = ud;
        (void)op;
        d->dop = NULL;
        if (rep->err < 0) {
                engine_fail(d, "cannot rename the old container", rep);
                util_strlcpy(d->old_cid, "", sizeof d->old_cid);
                /* The old one still has its name: start it again. */
                startup_failed(d);
                return;
        }
        d->cid[0] = 0;
        create_pull_or_create(d);
}

static void update_old_stopped(docker_op *op, const docker_reply *rep, void *ud) {
        dep *d = ud;
        char path[400];
        (void)op;

        d->dop = NULL;
        if (rep->err < 0 && rep->err != -ESRCH && rep->err != -EALREADY) {
                engine_fail(d, "cannot stop the old container", rep);
                d->old_cid[0] = 0;
                startup_failed(d);
                return;
        }
        snprintf(path, sizeof path, "/containers/%s/rename?name=%s-aiwm-old", d->old_cid, jstr(d->spec, "containerName"));
        if (docker_request(d->m->dk, "POST", path, NULL, update_old_renamed, d, &d->dop) < 0) {
                set_err(d, CMD_E_INTERNAL, NULL, "cannot rename the old container");
                startup_failed(d);
        }
}

static void update_image_ready(docker_op *op, const docker_reply *rep, void *ud);

static void update_begin(dep *d, cmd_job *job) {
        const json_t *cfg = json_object_get(cmd_job_data(job), "config");
        json_t *ns = NULL, *applied = NULL;
        bool recreate = false;
        char iso[25], msg[300], uuid[96], idx[16];
        int r;

        op_begin(d, job, OP_UPDATE);
        if (deploy_spec_apply_update(d->spec, cfg, &ns, &applied, &recreate) < 0) {
                set_err(d, CMD_E_INTERNAL, NULL, "out of memory");
                job_fail(d);
                op_finish(d);
                return;
        }
        d->new_spec = ns;
        d->applied = applied;
        if (!recreate || !d->cid[0]) {
                json_decref(d->spec);
                d->spec = d->new_spec;
                d->new_spec = NULL;
                persist(d);
                util_iso_now(iso);
                job_succeed(d, json_pack("{s:s,s:b,s:O}", "updatedAt", iso, "restarted", 0, "applied", d->applied));
                op_finish(d);
                return;
        }
        if (!deploy_image_allowed(jstr(ns, "containerImage"), d->m->allowed, d->m->cfg.n_allowed_registries)) {
                set_err(d, CMD_E_COMMAND_INVALID, NULL, "image %s is not from a registry in ALLOWED_IMAGE_REGISTRIES",
                        jstr(ns, "containerImage"));
                job_fail(d);
                op_finish(d);
                return;
        }
        r = gpu_resolve(d->m, json_object_get(ns, "gpuDeviceId"), uuid, sizeof uuid, idx, sizeof idx, msg, sizeof msg);
        if (r < 0) {
                set_err(d, CMD_E_GPU_NOT_AVAILABLE, NULL, "%s", msg);
                job_fail(d);
                op_finish(d);
                return;
        }
        util_strlcpy(d->gpu_uuid, uuid, sizeof d->gpu_uuid);
        util_strlcpy(d->gpu_index, idx, sizeof d->gpu_index);
        util_strlcpy(d->old_cid, d->cid, sizeof d->old_cid);
        set_status(d, "restarting", "update_started", "info", "recreating the container with the new settings");
        /* The new image first, while the old container still serves. */
        if (docker_image_inspect(d->m->dk, jstr(ns, "containerImage"), update_image_ready, d, &d->dop) < 0) {
                set_err(d, CMD_E_COMMAND_INVALID, NULL, "containerImage is not an image reference");
                startup_failed(d);
        }
}

static void update_pulled(docker_op *op, const docker_reply *rep, void *ud) {
        dep *d = ud;
        (void)op;
        d->dop = NULL;
        if (rep->err < 0) {
                engine_fail(d, "cannot pull the image", rep);
                /* nothing touched yet: the old container still runs */
                d->old_cid[0] = 0;
                json_decref(d->new_spec);
                d->new_spec = NULL;
                set_status(d, "running", "update_failed", "error", d->err_msg);
                job_fail(d);
                op_finish(d);
                return;
        }
        if (stop_container(d, update_old_stopped) < 0) {
                set_err(d, CMD_E_INTERNAL, NULL, "cannot stop the old container");
                startup_failed(d);
        }
}

static void update_image_ready(docker_op *op, const docker_reply *rep, void *ud) {
        dep *d = ud;
        (void)op;

        d->dop = NULL;
        d->stop_force = false;
        d->stop_timeout = 30;
        if (rep->err == 0) {
                update_pulled(NULL, &(docker_reply){ .err = 0 }, d);
                return;
        }
        if (pull_image(d, jstr(d->new_spec, "containerImage"), NULL, update_pulled) < 0) {
                set_err(d, CMD_E_INTERNAL, NULL, "cannot start the image pull");
                d->old_cid[0] = 0;
                startup_failed(d);
        }
}

static void delete_removed(docker_op *op, const docker_reply *rep, void *ud) {
        dep *d = ud;
        bool removed = rep->err == 0;
        char iso[25];
        (void)op;

        d->dop = NULL;
        if (rep->err < 0 && rep->err != -ENOENT) {
                engine_fail(d, "cannot remove the container", rep);
                util_strlcpy(d->err_code, CMD_E_INTERNAL, sizeof d->err_code);
                set_status(d, "stopped", "delete_failed", "error", d->err_msg);
                job_fail(d);
                op_finish(d);
                return;
        }
        d->cid[0] = 0;
        util_strlcpy(d->health, "unknown", sizeof d->health);
        set_status(d, "stopped", "deployment_deleted", "info", "container removed");
        db_deployment_delete(d->m->db, d->id);
        util_iso_now(iso);
        job_succeed(d, json_pack("{s:s,s:b}", "deletedAt", iso, "containerRemoved", removed));
        d->gone = true;
        op_finish(d);
}

static void delete_after_stop(docker_op *op, const docker_reply *rep, void *ud) {
        dep *d = ud;
        (void)op;
        d->dop = NULL;
        if (rep->err == -ENOENT || !d->cid[0]) {
                delete_removed(NULL, &(docker_reply){ .err = -ENOENT }, d);
                return;
        }
        if (docker_container_remove(d->m->dk, d->cid, true, d->remove_volumes, delete_removed, d, &d->dop) < 0)
                delete_removed(NULL, &(docker_reply){ .err = -EIO, .message = "cannot remove the container" }, d);
}

static void delete_begin(dep *d, cmd_job *job) {
        const json_t *data = cmd_job_data(job);

        op_begin(d, job, OP_DELETE);
        d->stop_force = json_is_true(json_object_get(data, "force"));
        d->stop_timeout = json_object_get(data, "timeout") ? (int)json_number_value(json_object_get(data, "timeout")) : 30;
        d->remove_volumes = json_is_true(json_object_get(data, "removeVolumes"));
        if (!d->cid[0]) {
                delete_after_stop(NULL, &(docker_reply){ .err = -ENOENT }, d);
                return;
        }
        if (strcmp(d->status, "stopped"))
                set_status(d, "stopping", "delete_requested", "info", "stopping the container before removal");
        if (stop_container(d, delete_after_stop) < 0)
                delete_after_stop(NULL, &(docker_reply){ .err = 0 }, d);
}

static void op_next(dep *d) {
        qjob *q = d->queue;

        if (!q)
                return;
        d->queue = q->next;
        switch (q->kind) {
        case OP_STOP:
                stop_begin(d, q->job);
                break;
        case OP_RESTART:
                restart_begin(d, q->job);
                break;
        case OP_UPDATE:
                update_begin(d, q->job);
                break;
        default:
                delete_begin(d, q->job);
                break;
        }
        free(q);
        if (d->op == OP_NONE && d->queue)
                op_next(d);
}

/* ---- command handlers ---- */

static int fail_now(cmd_job *job, const char *code, bool retryable, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static int fail_now(cmd_job *job, const char *code, bool retryable, const char *fmt, ...) {
        char msg[600];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        cmd_job_fail(job, code, msg, retryable, NULL);
        return 0;
}

static int v_create(const json_t *data, const json_t *resource, char *err, size_t errlen) {
        (void)resource;
        return deploy_create_validate(data, err, errlen);
}

static int create_start(cmd_job *job) {
        deploy_mgr *m = mgr_of(job);
        const json_t *data = cmd_job_data(job);
        const char *id = cmd_job_resource_id(job);
        dep *d = dep_find(m, id), *o;

        if (!cmd_job_resource(job) || !strcmp(id, m->node_id) || !strcmp(id, "*"))
                return fail_now(job, CMD_E_COMMAND_INVALID, false, "resource.id (the deployment id) is required");
        if (d && (d->op != OP_NONE && d->op != OP_RECOVER))
                return fail_now(job, CMD_E_DEPLOYMENT_ALREADY_RUNNING, false,
                                "deployment %s is being changed by another command", id);
        if (d && strcmp(d->status, "stopped") && strcmp(d->status, "failed"))
                return fail_now(job, CMD_E_DEPLOYMENT_ALREADY_RUNNING, false, "deployment %s is already %s", id,
                                d->status);
        for (o = m->deps; o; o = o->next)
                if (o != d && !o->gone && !strcmp(jstr(o->spec, "containerName") ? jstr(o->spec, "containerName") : "",
                                                  jstr(data, "containerName")))
                        return fail_now(job, CMD_E_DEPLOYMENT_ALREADY_RUNNING, false,
                                        "container name %s is used by deployment %s", jstr(data, "containerName"),
                                        o->id);
        if (!deploy_image_allowed(jstr(data, "containerImage"), m->allowed, m->cfg.n_allowed_registries))
                return fail_now(job, CMD_E_COMMAND_INVALID, false,
                                "image %s is not from a registry in ALLOWED_IMAGE_REGISTRIES",
                                jstr(data, "containerImage"));
        if (d && d->cid[0] && d->op == OP_NONE) {
                /* A stopped or failed deployment created again: its old
                 * container goes (the create removes a leftover of the same
                 * name; another name is removed here). */
                if (strcmp(jstr(d->spec, "containerName") ? jstr(d->spec, "containerName") : "",
                           jstr(data, "containerName")))
                        remove_quietly(m, d->cid);
                d->cid[0] = 0;
        }
        if (!d && !(d = dep_new(m, id)))
                return -ENOMEM;
        create_begin(d, job);
        return 0;
}

static dep *dep_for(cmd_job *job) {
        deploy_mgr *m = mgr_of(job);
        dep *d = dep_find(m, cmd_job_resource_id(job));
        if (!d)
                fail_now(job, CMD_E_DEPLOYMENT_NOT_FOUND, false, "deployment %s is not on this node",
                         cmd_job_resource_id(job));
        return d;
}

/* Runs the command now, or after the operation in progress (a recovery is
 * interrupted instead). */
static int run_or_queue(dep *d, cmd_job *job, op_kind kind) {
        qjob *q, **pp;

        if (d->op == OP_RECOVER) {
                log_info("recovery interrupted by a command", "deploymentId", d->id, "type", cmd_job_type(job), NULL);
                op_cancel_io(d);
                d->op = OP_NONE;
        }
        if (d->op == OP_NONE && !d->queue) {
                d->queue = calloc(1, sizeof *d->queue);
                if (!d->queue)
                        return -ENOMEM;
                d->queue->job = job;
                d->queue->kind = kind;
                op_next(d);
                return 0;
        }
        q = calloc(1, sizeof *q);
        if (!q)
                return -ENOMEM;
        q->job = job;
        q->kind = kind;
        for (pp = &d->queue; *pp; pp = &(*pp)->next)
                ;
        *pp = q;
        cmd_job_set_userdata(job, d);
        return 0;
}

static int v_stop(const json_t *data, const json_t *r, char *err, size_t errlen) {
        (void)r;
        return deploy_stop_validate(data, err, errlen);
}
static int v_restart(const json_t *data, const json_t *r, char *err, size_t errlen) {
        (void)r;
        return deploy_restart_validate(data, err, errlen);
}
static int v_update(const json_t *data, const json_t *r, char *err, size_t errlen) {
        (void)r;
        return deploy_update_validate(data, err, errlen);
}
static int v_delete(const json_t *data, const json_t *r, char *err, size_t errlen) {
        (void)r;
        return deploy_delete_validate(data, err, errlen);
}

static int stop_start(cmd_job *job) {
        dep *d = dep_for(job);
        if (!d)
                return 0;
        if (d->op == OP_NONE && !strcmp(d->status, "stopped"))
                return fail_now(job, CMD_E_DEPLOYMENT_NOT_RUNNING, false, "deployment %s is not running", d->id);
        return run_or_queue(d, job, OP_STOP);
}

static int restart_start(cmd_job *job) {
        dep *d = dep_for(job);
        return d ? run_or_queue(d, job, OP_RESTART) : 0;
}

static int update_start(cmd_job *job) {
        dep *d = dep_for(job);
        return d ? run_or_queue(d, job, OP_UPDATE) : 0;
}

static int delete_start(cmd_job *job) {
        dep *d = dep_for(job);
        return d ? run_or_queue(d, job, OP_DELETE) : 0;
}

/* Timeout (or the engine going away): the job is answered by the engine. */
static void dep_job_cancel(cmd_job *job) {
        deploy_mgr *m = mgr_of(job);
        dep *d = cmd_job_get_userdata(job);
        qjob **pp;

        if (!d)
                return;
        for (pp = &d->queue; *pp; pp = &(*pp)->next)
                if ((*pp)->job == job) {
                        qjob *q = *pp;
                        *pp = q->next;
                        free(q);
                        return;
                }
        if (d->job != job)
                return;
        d->job = NULL;
        if (m->closing) {
                op_cancel_io(d);
                d->op = OP_NONE;
                return;
        }
        if (d->op == OP_CREATE) {
                /* Nothing half-made stays behind a command that timed out. */
                set_err(d, CMD_E_TIMEOUT, NULL, "the command timed out");
                op_cancel_io(d);
                startup_failed(d);
        }
        /* Other operations finish on their own, without a job. */
}

/* ---- deployment.query ---- */

typedef struct qctx {
        deploy_mgr *m;
        cmd_job *job;
        char *id;
        logs_ctx lc;
        docker_op *op;
} qctx;

static void query_logs_done(docker_op *op, const docker_reply *rep, void *ud) {
        qctx *q = ud;
        json_t *data;
        dep *d;
        (void)op;
        (void)rep;

        q->op = NULL;
        cmd_job_set_userdata(q->job, NULL);
        data = json_pack("{s:s,s:O,s:b}", "deploymentId", q->id, "logs", q->lc.entries, "moreAvailable", q->lc.more);
        if (data)
                cmd_job_emit(q->job, "deployment.logs", data);
        d = dep_find(q->m, q->id); /* deleted meanwhile? */
        if (d)
                cmd_job_succeed(q->job, status_data(d, NULL, NULL));
        else
                cmd_job_fail(q->job, CMD_E_DEPLOYMENT_NOT_FOUND, "deployment deleted meanwhile", false, NULL);
        json_decref(q->lc.entries);
        free(q->id);
        free(q);
}

static int query_start(cmd_job *job) {
        deploy_mgr *m = mgr_of(job);
        const json_t *data = cmd_job_data(job);
        const char *id = cmd_job_resource_id(job);
        qctx *q;
        dep *d;

        if (!cmd_job_resource(job) || !strcmp(id, "*") || !strcmp(id, m->node_id)) {
                json_t *all = json_array();
                for (d = m->deps; d; d = d->next)
                        if (!d->gone)
                                json_array_append_new(all, status_data(d, NULL, NULL));
                cmd_job_succeed(job, json_pack("{s:o}", "deployments", all));
                return 0;
        }
        d = dep_for(job);
        if (!d)
                return 0;
        if (!json_is_true(json_object_get(data, "includeLogs")) || !d->cid[0]) {
                cmd_job_succeed(job, status_data(d, NULL, NULL));
                return 0;
        }
        q = calloc(1, sizeof *q);
        if (!q)
                return -ENOMEM;
        q->m = m;
        q->job = job;
        q->id = strdup(d->id);
        if (!q->id) {
                free(q);
                return -ENOMEM;
        }
        if (logs_start(m, d->cid,
                       json_is_integer(json_object_get(data, "tail")) ? (int)json_integer_value(json_object_get(data, "tail"))
                                                                      : LOG_TAIL_DEFAULT,
                       0, &q->lc, query_logs_done, q, &q->op) < 0) {
                json_decref(q->lc.entries);
                free(q->id);
                free(q);
                cmd_job_succeed(job, status_data(d, NULL, NULL));
                return 0;
        }
        cmd_job_set_userdata(job, q);
        return 0;
}

static void query_cancel(cmd_job *job) {
        qctx *q = cmd_job_get_userdata(job);
        if (!q)
                return;
        docker_op_cancel(q->op);
        json_decref(q->lc.entries);
        free(q->id);
        free(q);
}

static int v_query(const json_t *data, const json_t *r, char *err, size_t errlen) {
        const json_t *t = json_object_get(data, "tail");
        (void)r;
        if (json_object_get(data, "includeLogs") && !json_is_boolean(json_object_get(data, "includeLogs"))) {
                snprintf(err, errlen, "data.includeLogs must be a boolean");
                return -EINVAL;
        }
        if (t && (!json_is_integer(t) || json_integer_value(t) < 1 || json_integer_value(t) > 10000)) {
                snprintf(err, errlen, "data.tail must be an integer from 1 to 10000");
                return -EINVAL;
        }
        return 0;
}

/* ---- container.* ---- */

typedef struct cctx {
        deploy_mgr *m;
        cmd_job *job;
        docker_op *op;
        loop_timer *t;
        logs_ctx lc;
        docker_stats prev;
        char cid[128];
        unsigned samples;
} cctx;

static void cctx_free(cctx *c) {
        if (!c)
                return;
        docker_op_cancel(c->op);
        loop_timer_free(c->t);
        json_decref(c->lc.entries);
        free(c);
}

static void container_cancel(cmd_job *job) {
        cctx_free(cmd_job_get_userdata(job));
}

static void c_done(cctx *c, json_t *result) {
        cmd_job_set_userdata(c->job, NULL);
        cmd_job_succeed(c->job, result);
        c->op = NULL;
        cctx_free(c);
}

static void c_fail(cctx *c, const char *code, bool retryable, const char *msg) {
        cmd_job_set_userdata(c->job, NULL);
        cmd_job_fail(c->job, code, msg, retryable, NULL);
        c->op = NULL;
        cctx_free(c);
}

static bool ours(const deploy_mgr *m, const json_t *labels) {
        const char *mg = jstr(labels, DEPLOY_LABEL_MANAGED), *node = jstr(labels, DEPLOY_LABEL_NODE);
        return mg && !strcmp(mg, "true") && node && !strcmp(node, m->node_id);
}

static void c_engine_fail(cctx *c, const docker_reply *rep) {
        char msg[600];
        snprintf(msg, sizeof msg, "container engine: %s", *rep->message ? rep->message : strerror(-rep->err));
        c_fail(c, CMD_E_INTERNAL, true, msg);
}

static void list_done(docker_op *op, const docker_reply *rep, void *ud) {
        cctx *c = ud;
        json_t *out, *v;
        size_t i;
        (void)op;

        c->op = NULL;
        if (rep->err < 0) {
                c_engine_fail(c, rep);
                return;
        }
        out = json_array();
        json_array_foreach (rep->json, i, v)
                if (ours(c->m, json_object_get(v, "Labels")))
                        json_array_append_new(out, deploy_container_info(v, false));
        c_done(c, json_pack("{s:o}", "containers", out));
}

static cctx *cctx_new(cmd_job *job) {
        cctx *c = calloc(1, sizeof *c);
        if (!c)
                return NULL;
        c->m = mgr_of(job);
        c->job = job;
        util_strlcpy(c->cid, cmd_job_resource_id(job), sizeof c->cid);
        cmd_job_set_userdata(job, c);
        return c;
}

static int clist_start(cmd_job *job) {
        deploy_mgr *m = mgr_of(job);
        char node_label[300];
        const char *labels[] = { DEPLOY_LABEL_MANAGED "=true", node_label, NULL };
        docker_list_options lo = { .all = json_is_true(json_object_get(cmd_job_data(job), "all")), .labels = labels };
        cctx *c = cctx_new(job);

        if (!c)
                return -ENOMEM;
        snprintf(node_label, sizeof node_label, DEPLOY_LABEL_NODE "=%s", m->node_id);
        if (docker_container_list(m->dk, &lo, list_done, c, &c->op) < 0) {
                cmd_job_set_userdata(job, NULL);
                cctx_free(c);
                return -EIO;
        }
        return 0;
}

/* inspect, refusing containers that are not ours; then what. */
static void c_after_inspect(cctx *c, const json_t *inspect);

static void c_inspected(docker_op *op, const docker_reply *rep, void *ud) {
        cctx *c = ud;
        char msg[300];
        (void)op;

        c->op = NULL;
        if (rep->err == -ENOENT || (rep->err == 0 && !ours(c->m, json_object_get(json_object_get(rep->json, "Config"), "Labels")))) {
                snprintf(msg, sizeof msg, "container %s is not managed by this worker on this node", c->cid);
                c_fail(c, CMD_E_DEPLOYMENT_NOT_FOUND, false, msg);
                return;
        }
        if (rep->err < 0 || !jstr(rep->json, "Id")) {
                c_engine_fail(c, rep);
                return;
        }
        util_strlcpy(c->cid, jstr(rep->json, "Id"), sizeof c->cid);
        c_after_inspect(c, rep->json);
}

static bool id_ok(const char *s) {
        size_t i;
        if (!*s || strlen(s) > 127)
                return false;
        for (i = 0; s[i]; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
                      s[i] == '_' || s[i] == '.' || s[i] == '-'))
                        return false;
        return true;
}

static int c_start_inspect(cmd_job *job) {
        cctx *c;

        if (!id_ok(cmd_job_resource_id(job)) || !cmd_job_resource(job))
                return fail_now(job, CMD_E_DEPLOYMENT_NOT_FOUND, false, "resource.id must name a container of this worker");
        c = cctx_new(job);
        if (!c)
                return -ENOMEM;
        if (docker_container_inspect(c->m->dk, c->cid, c_inspected, c, &c->op) < 0) {
                cmd_job_set_userdata(job, NULL);
                cctx_free(c);
                return -EIO;
        }
        return 0;
}

static void logs_done(docker_op *op, const docker_reply *rep, void *ud) {
        cctx *c = ud;
        json_t *r;
        (void)op;

        c->op = NULL;
        if (rep->err < 0 && !json_array_size(c->lc.entries)) {
                c_engine_fail(c, rep);
                return;
        }
        r = json_pack("{s:O,s:b}", "logs", c->lc.entries, "moreAvailable", c->lc.more);
        c_done(c, r);
}

static void stats_done(docker_op *op, const docker_reply *rep, void *ud);

static void stats_again(loop_timer *t, void *ud) {
        cctx *c = ud;
        (void)t;
        if (docker_container_stats(c->m->dk, c->cid, stats_done, c, &c->op) < 0)
                c_fail(c, CMD_E_INTERNAL, true, "cannot read the container's stats");
}

static void stats_done(docker_op *op, const docker_reply *rep, void *ud) {
        cctx *c = ud;
        docker_stats s;
        (void)op;

        c->op = NULL;
        if (rep->err == -ESRCH) {
                c_fail(c, CMD_E_DEPLOYMENT_NOT_RUNNING, false, "the container is not running");
                return;
        }
        if (rep->err < 0 || docker_stats_compute(rep->json, c->samples ? &c->prev : NULL, &s) < 0) {
                c_engine_fail(c, rep->err < 0 ? rep : &(docker_reply){ .err = -EPROTO, .message = "unreadable stats" });
                return;
        }
        if (!s.cpu_valid && c->samples++ == 0 && loop_timer_new(c->m->l, stats_again, c, &c->t) == 0) {
                /* One-shot stats carry no previous sample: take a second. */
                c->prev = s;
                loop_timer_arm(c->t, 500);
                return;
        }
        c_done(c, json_pack("{s:f,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "cpuUsage", s.cpu_valid ? s.cpu_percent : 0.0,
                            "memoryUsed", (json_int_t)(s.mem_used >> 20), "memoryLimit", (json_int_t)(s.mem_limit >> 20),
                            "networkRx", (json_int_t)s.net_rx, "networkTx", (json_int_t)s.net_tx, "blockRead",
                            (json_int_t)s.blk_read, "blockWrite", (json_int_t)s.blk_write, "pids", (json_int_t)s.pids));
}

static void c_after_inspect(cctx *c, const json_t *inspect) {
        const char *type = cmd_job_type(c->job);
        const json_t *data = cmd_job_data(c->job);
        int r = 0;

        if (!strcmp(type, "container.inspect")) {
                c_done(c, deploy_container_info(inspect, true));
                return;
        }
        if (!strcmp(type, "container.logs")) {
                const json_t *t = json_object_get(data, "tail");
                long long since = 0;
                if (jstr(data, "since") && deploy_time_parse(jstr(data, "since"), &since) == 0)
                        since /= 1000;
                r = logs_start(c->m, c->cid, t ? (int)json_integer_value(t) : LOG_TAIL_DEFAULT, since, &c->lc, logs_done,
                               c, &c->op);
        } else {
                r = docker_container_stats(c->m->dk, c->cid, stats_done, c, &c->op);
        }
        if (r < 0)
                c_fail(c, CMD_E_INTERNAL, true, "cannot start the request to the container engine");
}

static int v_clist(const json_t *data, const json_t *r, char *err, size_t errlen) {
        (void)r;
        return deploy_container_list_validate(data, err, errlen);
}
static int v_clogs(const json_t *data, const json_t *r, char *err, size_t errlen) {
        (void)r;
        return deploy_container_logs_validate(data, err, errlen);
}

/* ---- the engine's events ---- */

static void events_start(deploy_mgr *m);

static void on_event(docker_op *op, json_t *ev, void *ud) {
        deploy_mgr *m = ud;
        const char *action = jstr(ev, "Action") ? jstr(ev, "Action") : jstr(ev, "status");
        const json_t *actor = json_object_get(ev, "Actor"), *attrs = json_object_get(actor, "Attributes");
        const char *cid = jstr(actor, "ID") ? jstr(actor, "ID") : jstr(ev, "id");
        const char *code = jstr(attrs, "exitCode") ? jstr(attrs, "exitCode") : jstr(attrs, "containerExitCode");
        char msg[200];
        dep *d;
        (void)op;

        if (json_is_integer(json_object_get(ev, "time")))
                m->events_since = (int64_t)json_integer_value(json_object_get(ev, "time"));
        m->events_backoff = 0;
        if (!action || !(d = dep_find_cid(m, cid)) || d->op != OP_NONE)
                return;
        if (!strcmp(action, "die") || !strcmp(action, "died")) {
                if (strcmp(d->status, "running") && strcmp(d->status, "starting"))
                        return;
                snprintf(msg, sizeof msg, "the container exited with code %s", code ? code : "?");
                util_strlcpy(d->health, "unhealthy", sizeof d->health);
                d->died_at = loop_now(m->l);
                set_status(d, "failed", "container_died", "error", msg);
                /* The engine's restart policy goes first; then the worker. */
                arm(d, m->cfg.restart_grace_ms, recover_begin);
        } else if (!strcmp(action, "start") || !strcmp(action, "restart")) {
                if (strcmp(d->status, "failed") || !d->established)
                        return;
                recover_begin(d);
        } else if (!strcmp(action, "destroy") || !strcmp(action, "remove")) {
                if (!wants_running(d) && strcmp(d->status, "stopped"))
                        return;
                d->cid[0] = 0;
                persist(d);
                if (!strcmp(d->status, "stopped"))
                        return;
                util_strlcpy(d->health, "unhealthy", sizeof d->health);
                set_status(d, "failed", "container_removed", "error", "the container was removed outside the worker");
                d->recreate = true;
                recovery_schedule(d, 0);
        }
}

static void events_retry(loop_timer *t, void *ud) {
        (void)t;
        events_start(ud);
}

static void events_ended(docker_op *op, const docker_reply *rep, void *ud) {
        deploy_mgr *m = ud;
        (void)op;

        m->events_op = NULL;
        if (m->closing)
                return;
        m->events_backoff = m->events_backoff ? m->events_backoff * 2 : 1000;
        if (m->events_backoff > 30000)
                m->events_backoff = 30000;
        if (m->events_backoff == 1000)
                log_warn("container engine event stream ended; reconnecting", "error",
                         rep->err < 0 ? (*rep->message ? rep->message : strerror(-rep->err)) : "closed by the engine",
                         NULL);
        loop_timer_arm(m->t_events, m->events_backoff);
}

static void events_start(deploy_mgr *m) {
        char node_label[300];
        const char *types[] = { "container", NULL };
        const char *labels[] = { DEPLOY_LABEL_MANAGED "=true", node_label, NULL };
        docker_events_options eo = { .types = types, .labels = labels, .since = m->events_since };

        if (m->closing || m->events_op)
                return;
        snprintf(node_label, sizeof node_label, DEPLOY_LABEL_NODE "=%s", m->node_id);
        if (docker_events_start(m->dk, &eo, on_event, events_ended, m, &m->events_op) < 0)
                loop_timer_arm(m->t_events, 5000);
        /* Whatever happened while the stream was down, the list tells. */
        if (m->events_since)
                reconcile_now(m);
}

/* ---- reconcile: the engine's containers against the deployments ---- */

static void adopt_inspected(docker_op *op, const docker_reply *rep, void *ud) {
        dep *d = ud;
        deploy_container_state st;
        (void)op;

        d->dop = NULL;
        if (rep->err == 0 && deploy_container_state_parse(rep->json, container_port(d), &st) == 0) {
                if (st.host_port > 0)
                        d->host_port = st.host_port;
                else if (d->m->cfg.host_network)
                        d->host_port = container_port(d);
                d->started_ms = st.started_ms;
        }
        set_status(d, d->status, "adopted", "info", "found running after a worker restart; adopted");
        health_schedule(d);
}

static void reconciled(docker_op *op, const docker_reply *rep, void *ud) {
        deploy_mgr *m = ud;
        int64_t now_s = util_wall_ms() / 1000;
        bool adopting = m->adopting;
        json_t *c;
        size_t i;
        dep *d;
        (void)op;

        m->reconcile_op = NULL;
        m->adopting = false;
        loop_timer_arm(m->t_reconcile, m->cfg.reconcile_ms);
        if (rep->err < 0 || !json_is_array(rep->json)) {
                log_debug("reconcile: container list failed", "error", rep->message, NULL);
                m->adopting = adopting;
                return;
        }
        /* Containers: ours, or orphans. */
        json_array_foreach (rep->json, i, c) {
                const json_t *labels = json_object_get(c, "Labels");
                const char *id = jstr(c, "Id"), *dep_id = jstr(labels, DEPLOY_LABEL_DEPLOYMENT);
                json_int_t created = json_integer_value(json_object_get(c, "Created"));
                bool owned = false;

                if (!id || !ours(m, labels))
                        continue;
                for (d = m->deps; d; d = d->next) {
                        if (d->gone)
                                continue;
                        if ((d->cid[0] && !strncmp(d->cid, id, strlen(d->cid))) ||
                            (d->old_cid[0] && !strcmp(d->old_cid, id))) {
                                owned = true;
                                break;
                        }
                        if (!d->cid[0] && dep_id && !strcmp(d->id, dep_id) && d->op == OP_NONE) {
                                /* Known by its label (the id was lost, e.g. a
                                 * create cut short by a restart). */
                                util_strlcpy(d->cid, id, sizeof d->cid);
                                persist(d);
                                owned = true;
                                break;
                        }
                        if (dep_id && !strcmp(d->id, dep_id) && d->op != OP_NONE) {
                                owned = true; /* being made or replaced right now */
                                break;
                        }
                }
                if (owned)
                        continue;
                if (created > 0 && now_s - created < (int64_t)(m->cfg.orphan_grace_ms / 1000))
                        continue;
                log_warn("removing an orphaned container", "containerId", id, "deploymentId", dep_id ? dep_id : "",
                         NULL);
                remove_quietly(m, id);
        }
        /* Deployments: what should run, runs. */
        for (d = m->deps; d; d = d->next) {
                json_t *found = NULL;
                const char *state;

                if (d->gone || d->op != OP_NONE)
                        continue;
                json_array_foreach (rep->json, i, c)
                        if (d->cid[0] && jstr(c, "Id") && !strncmp(jstr(c, "Id"), d->cid, strlen(d->cid))) {
                                found = c;
                                break;
                        }
                state = found ? (json_is_string(json_object_get(found, "State"))
                                         ? jstr(found, "State")
                                         : jstr(json_object_get(found, "State"), "Status"))
                              : NULL;
                if (!strcmp(d->status, "stopped")) {
                        if (d->cid[0] && !found) {
                                d->cid[0] = 0;
                                persist(d);
                        }
                        continue;
                }
                if (!d->established)
                        continue;
                if (!found) {
                        if (d->cid[0])
                                log_warn("a deployment's container is gone", "deploymentId", d->id, NULL);
                        d->cid[0] = 0;
                        d->recreate = true;
                        if (strcmp(d->status, "failed")) {
                                util_strlcpy(d->health, "unhealthy", sizeof d->health);
                                set_status(d, "failed", "container_missing", "error", "the container is gone");
                        }
                        recovery_schedule(d, 1);
                } else if (state && !strcmp(state, "running")) {
                        if (adopting && !strcmp(d->status, "running")) {
                                if (docker_container_inspect(m->dk, d->cid, adopt_inspected, d, &d->dop) < 0)
                                        health_schedule(d);
                        } else if (strcmp(d->status, "running")) {
                                recovery_schedule(d, 1);
                        }
                } else if (!d->died_at || loop_now(m->l) - d->died_at >= m->cfg.restart_grace_ms) {
                        if (!strcmp(d->status, "running")) {
                                util_strlcpy(d->health, "unhealthy", sizeof d->health);
                                set_status(d, "failed", "container_not_running", "error", "the container is not running");
                        }
                        if (!loop_timer_armed(d->t) || d->on_timer != recover_begin)
                                recovery_schedule(d, 1);
                }
        }
}

static void reconcile_now(deploy_mgr *m) {
        char node_label[300];
        const char *labels[] = { DEPLOY_LABEL_MANAGED "=true", node_label, NULL };
        docker_list_options lo = { .all = true, .labels = labels };

        if (m->closing || m->reconcile_op)
                return;
        snprintf(node_label, sizeof node_label, DEPLOY_LABEL_NODE "=%s", m->node_id);
        if (docker_container_list(m->dk, &lo, reconciled, m, &m->reconcile_op) < 0)
                loop_timer_arm(m->t_reconcile, m->cfg.reconcile_ms);
}

static void reconcile_tick(loop_timer *t, void *ud) {
        (void)t;
        reconcile_now(ud);
}

/* ---- the manager ---- */

static json_t *in_use(const char *path, void *ud) {
        deploy_mgr *m = ud;
        json_t *ids = json_array();
        size_t n = strlen(path);
        dep *d;

        while (n > 1 && path[n - 1] == '/')
                n--;
        for (d = m->deps; d && ids; d = d->next)
                if (!d->gone && d->model_path && !strncmp(d->model_path, path, n) &&
                    (d->model_path[n] == 0 || d->model_path[n] == '/') && strcmp(d->status, "stopped"))
                        json_array_append_new(ids, json_string(d->id));
        return ids;
}

static void mgr_free(void *p) {
        deploy_mgr *m = p;
        size_t i;

        if (!m)
                return;
        m->closing = true;
        model_cache_set_in_use(NULL, NULL);
        while (m->deps) {
                dep *d = m->deps;
                m->deps = d->next;
                dep_free(d);
        }
        docker_op_cancel(m->events_op);
        docker_op_cancel(m->reconcile_op);
        loop_timer_free(m->t_events);
        loop_timer_free(m->t_reconcile);
        m->dk = docker_free(m->dk);
        m->hc = http_client_free(m->hc);
        m->cache = model_cache_free(m->cache);
        for (i = 0; i < m->cfg.n_allowed_registries; i++)
                free(m->allowed[i]);
        free(m->allowed);
        free(m->bind_ip);
        free(m->endpoint_host);
        free(m->auth_file);
        free(m->node_id);
        free(m);
}

/* The deployments of the database, in memory (no engine call yet). */
static int load(deploy_mgr *m) {
        char **ids = NULL;
        size_t n = 0, i;
        int r = db_deployment_ids(m->db, &ids, &n);

        if (r < 0)
                return r;
        for (i = 0; i < n; i++) {
                char *spec = NULL, *cid = NULL, *status = NULL;
                json_t *w = NULL;
                dep *d;

                if (db_deployment_get(m->db, ids[i], &spec, &cid, &status) == 0 &&
                    (w = json_loads(spec ? spec : "", 0, NULL)) && json_is_object(json_object_get(w, "spec")) &&
                    (d = dep_new(m, ids[i]))) {
                        d->spec = json_incref(json_object_get(w, "spec"));
                        util_strlcpy(d->cid, cid ? cid : "", sizeof d->cid);
                        util_strlcpy(d->status, status ? status : "failed", sizeof d->status);
                        util_strlcpy(d->gpu_uuid, jstr(w, "gpuUuid") ? jstr(w, "gpuUuid") : "", sizeof d->gpu_uuid);
                        util_strlcpy(d->gpu_index, jstr(w, "gpuIndex") ? jstr(w, "gpuIndex") : "", sizeof d->gpu_index);
                        d->model_path = jstr(w, "modelPath") ? strdup(jstr(w, "modelPath")) : NULL;
                        d->established = json_is_true(json_object_get(w, "established"));
                        if (!strcmp(d->status, "stopping"))
                                util_strlcpy(d->status, "stopped", sizeof d->status);
                        if (!strcmp(d->status, "starting") || !strcmp(d->status, "restarting"))
                                util_strlcpy(d->status, d->established ? "running" : "failed", sizeof d->status);
                }
                json_decref(w);
                free(spec);
                free(cid);
                free(status);
                free(ids[i]);
        }
        free(ids);
        return 0;
}

int deploy_register(cmd_engine *e, const deploy_config *cfg, deploy_mgr **ret) {
        const cmd_host *host = cmd_engine_host(e);
        docker_options dopt = { .socket = cfg->docker_socket, .timeout_ms = 120000 };
        char err[300];
        deploy_mgr *m;
        size_t i;
        int r;

        if (!cfg->docker_socket || !cfg->model_cache_dir || cfg->model_cache_dir[0] != '/')
                return -EINVAL;
        m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        m->l = host->l;
        m->e = e;
        m->db = host->db;
        m->cfg = *cfg;
        if (!m->cfg.health_timeout_ms)
                m->cfg.health_timeout_ms = 300000;
        if (!m->cfg.orphan_grace_ms)
                m->cfg.orphan_grace_ms = 300000;
        if (!m->cfg.reconcile_ms)
                m->cfg.reconcile_ms = 30000;
        if (!m->cfg.restart_grace_ms)
                m->cfg.restart_grace_ms = 10000;
        m->node_id = strdup(host->node_id);
        m->allowed = calloc(cfg->n_allowed_registries + 1, sizeof *m->allowed);
        r = -ENOMEM;
        if (!m->node_id || !m->allowed)
                goto fail;
        for (i = 0; i < cfg->n_allowed_registries; i++)
                if (!(m->allowed[i] = strdup(cfg->allowed_registries[i])))
                        goto fail;
        if ((cfg->registry_auth_file && !(m->auth_file = strdup(cfg->registry_auth_file))) ||
            (cfg->bind_ip && !(m->bind_ip = strdup(cfg->bind_ip))) ||
            (cfg->endpoint_host && !(m->endpoint_host = strdup(cfg->endpoint_host))))
                goto fail;
        m->cfg.allowed_registries = NULL;
        m->cfg.bind_ip = m->cfg.endpoint_host = m->cfg.registry_auth_file = NULL;
        r = model_cache_open(cfg->model_cache_dir, &m->cache, err, sizeof err);
        if (r < 0)
                goto fail;
        if ((r = docker_new(m->l, &dopt, &m->dk)) < 0 || (r = http_client_new(m->l, &m->hc)) < 0 ||
            (r = loop_timer_new(m->l, events_retry, m, &m->t_events)) < 0 ||
            (r = loop_timer_new(m->l, reconcile_tick, m, &m->t_reconcile)) < 0)
                goto fail;
        r = load(m);
        if (r < 0)
                goto fail;
        {
                const cmd_handler hs[] = {
                        { .type = "deployment.create", .validate = v_create, .start = create_start,
                          .resume = create_start, /* a create cut short by a restart runs again; its leftover is replaced */ .cancel = dep_job_cancel, .ctx = m, .ctx_free = mgr_free },
                        { .type = "deployment.stop", .validate = v_stop, .start = stop_start, .cancel = dep_job_cancel,
                          .ctx = m },
                        { .type = "deployment.restart", .validate = v_restart, .start = restart_start,
                          .cancel = dep_job_cancel, .ctx = m },
                        { .type = "deployment.update", .validate = v_update, .start = update_start,
                          .cancel = dep_job_cancel, .ctx = m },
                        { .type = "deployment.delete", .validate = v_delete, .start = delete_start,
                          .cancel = dep_job_cancel, .ctx = m },
                        { .type = "deployment.query", .validate = v_query, .start = query_start, .cancel = query_cancel,
                          .ctx = m },
                        { .type = "container.list", .validate = v_clist, .start = clist_start, .cancel = container_cancel,
                          .ctx = m },
                        { .type = "container.inspect", .start = c_start_inspect, .cancel = container_cancel, .ctx = m },
                        { .type = "container.logs", .validate = v_clogs, .start = c_start_inspect,
                          .cancel = container_cancel, .ctx = m },
                        { .type = "container.stats", .start = c_start_inspect, .cancel = container_cancel, .ctx = m },
                };
                for (i = 0; i < sizeof hs / sizeof *hs; i++) {
                        r = cmd_engine_register(e, &hs[i]);
                        if (r < 0) {
                                if (i == 0)
                                        goto fail;
                                /* m belongs to the engine now (deployment.create's ctx_free) */
                                return r;
                        }
                }
        }
        model_cache_set_in_use(in_use, m);
        if (ret)
                *ret = m;
        return 0;
fail:
        mgr_free(m);
        return r;
}

void deploy_start(deploy_mgr *m) {
        if (!m || m->started)
                return;
        m->started = true;
        m->adopting = true;
        log_info("deployments: watching the container engine", NULL);
        events_start(m);
        reconcile_now(m);
}

void deploy_shutdown(deploy_mgr *m) {
        dep *d;
        if (!m)
                return;
        m->closing = true;
        for (d = m->deps; d; d = d->next)
                op_cancel_io(d);
        docker_op_cancel(m->events_op);
        m->events_op = NULL;
        docker_op_cancel(m->reconcile_op);
        m->reconcile_op = NULL;
        loop_timer_disarm(m->t_events);
        loop_timer_disarm(m->t_reconcile);
}

void deploy_resync(deploy_mgr *m) {
        dep *d;
        if (!m)
                return;
        for (d = m->deps; d; d = d->next)
                if (!d->gone)
                        emit_status(d, NULL, make_event("status_report", "debug", "status after (re)connection"));
}

unsigned deploy_active(const deploy_mgr *m) {
        const dep *d;
        unsigned n = 0;
        for (d = m ? m->deps : NULL; d; d = d->next)
                if (!d->gone && wants_running(d) && d->established)
                        n++;
        return n;
}

json_t *deploy_summary(const deploy_mgr *m) {
        json_t *a = json_array();
        const dep *d;

        for (d = m ? m->deps : NULL; d && a; d = d->next)
                if (!d->gone)
                        json_array_append_new(a, json_pack("{s:s,s:s,s:I}", "deploymentId", d->id, "status", d->status,
                                                           "uptime",
                                                           (json_int_t)(!strcmp(d->status, "running") && d->started_ms
                                                                                ? (util_wall_ms() - d->started_ms) / 1000
                                                                                : 0)));
        return a;
}
