#include "commands/exporter.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB 1048576
/* Rows rendered at most per list the provider hands over (deployments,
 * downloads), so a runaway list cannot make a scrape unbounded. */
#define MAX_ROWS 4096u

typedef struct cmd_series {
        char *type, *outcome;
        uint64_t n;
} cmd_series;

struct exporter {
        exporter_provider p;
        char *version;
        char *disk_path;
        cmd_series *cmds;
        size_t n_cmds;
};

/* ---- values ---- */

typedef struct value {
        bool is_int;
        int64_t i;
        double d;
} value;

static value v_int(int64_t i) {
        return (value){ .is_int = true, .i = i };
}

static value v_real(double d) {
        return (value){ .d = d };
}

/* A JSON number under key (integers stay exact); false when absent or not
 * a number. */
static bool get_num(const json_t *o, const char *key, value *ret) {
        const json_t *v = json_object_get(o, key);

        if (json_is_integer(v)) {
                *ret = v_int((int64_t)json_integer_value(v));
                return true;
        }
        if (json_is_real(v) && isfinite(json_real_value(v))) {
                *ret = v_real(json_real_value(v));
                return true;
        }
        return false;
}

static value scale(value v, int64_t k) {
        if (v.is_int && (v.i <= INT64_MAX / k && v.i >= INT64_MIN / k))
                return v_int(v.i * k);
        return v_real((v.is_int ? (double)v.i : v.d) * (double)k);
}

static bool get_scaled(const json_t *o, const char *key, int64_t k, value *ret) {
        value v;

        if (!get_num(o, key, &v))
                return false;
        *ret = scale(v, k);
        return true;
}

/* ---- the text format ---- */

typedef struct ctx {
        buf *b;
        int r;
        /* Family whose HELP/TYPE lines are written with its first sample. */
        const char *name, *type, *help;
        bool header_done;
} ctx;

static void out(ctx *c, const char *s, size_t n) {
        if (c->r == 0)
                c->r = buf_append(c->b, s, n);
}

static void outs(ctx *c, const char *s) {
        out(c, s, strlen(s));
}

/* HELP text: backslash and line feed escaped. Label value: double quote
 * too. */
static void escaped(ctx *c, const char *s, bool label) {
        const char *run = s;

        for (; *s; s++) {
                const char *e = NULL;
                if (*s == '\\')
                        e = "\\\\";
                else if (*s == '\n')
                        e = "\\n";
                else if (*s == '"' && label)
                        e = "\\\"";
                if (e) {
                        out(c, run, (size_t)(s - run));
                        outs(c, e);
                        run = s + 1;
                }
        }
        out(c, run, (size_t)(s - run));
}

static void family(ctx *c, const char *name, const char *type, const char *help) {
        c->name = name;
        c->type = type;
        c->help = help;
        c->header_done = false;
}

static void format_value(value v, char *s, size_t n) {
        if (v.is_int) {
                snprintf(s, n, "%" PRId64, v.i);
                return;
        }
        /* The shortest form that reads back as the same double. */
        for (int prec = 15; prec <= 17; prec++) {
                snprintf(s, n, "%.*g", prec, v.d);
                if (strtod(s, NULL) == v.d)
                        return;
        }
}

/* One sample of the current family. labels: name, value pairs, then NULL. */
static void sample(ctx *c, const char *const *labels, value v) {
        char num[40];
        size_t i;

        if (!c->header_done) {
                outs(c, "# HELP ");
                outs(c, c->name);
                outs(c, " ");
                escaped(c, c->help, false);
                outs(c, "\n# TYPE ");
                outs(c, c->name);
                outs(c, " ");
                outs(c, c->type);
                outs(c, "\n");
                c->header_done = true;
        }
        outs(c, c->name);
        if (labels && labels[0]) {
                outs(c, "{");
                for (i = 0; labels[i]; i += 2) {
                        if (i)
                                outs(c, ",");
                        outs(c, labels[i]);
                        outs(c, "=\"");
                        escaped(c, labels[i + 1] ? labels[i + 1] : "", true);
                        outs(c, "\"");
                }
                outs(c, "}");
        }
        format_value(v, num, sizeof num);
        outs(c, " ");
        outs(c, num);
        outs(c, "\n");
}

/* A family with one unlabelled sample. */
static void single(ctx *c, const char *name, const char *type, const char *help, value v) {
        family(c, name, type, help);
        sample(c, NULL, v);
}

static void single_from(ctx *c, const json_t *o, const char *key, int64_t k, const char *name, const char *type,
                        const char *help) {
        value v;
        if (get_scaled(o, key, k, &v))
                single(c, name, type, help, v);
}

static const char *str_or(const json_t *o, const char *key, const char *dflt) {
        const char *s = json_string_value(json_object_get(o, key));
        return s ? s : dflt;
}

/* ---- node ---- */

static void render_node(const exporter *e, ctx *c, const json_t *m, const json_t *hb) {
        const json_t *cpu = json_object_get(m, "cpu"), *mem = json_object_get(m, "memory"),
                     *net = json_object_get(m, "network"), *la = json_object_get(cpu, "loadAverage");
        const json_t *disks[2] = { json_object_get(m, "disk"), json_object_get(m, "modelCacheDisk") };
        const char *paths[2] = { e->disk_path, str_or(disks[1], "path", "") };
        static const char *const load_names[3] = { "aiwm_node_load1", "aiwm_node_load5", "aiwm_node_load15" };
        static const char *const load_help[3] = {
                "Run-queue load average over 1 minute.",
                "Run-queue load average over 5 minutes.",
                "Run-queue load average over 15 minutes.",
        };
        static const struct {
                const char *key, *name, *type, *help;
        } disk_f[] = {
                { "total", "aiwm_node_disk_total_bytes", "gauge", "Size of the filesystem." },
                { "used", "aiwm_node_disk_used_bytes", "gauge", "Space used on the filesystem." },
                { "free", "aiwm_node_disk_free_bytes", "gauge", "Space available to unprivileged users on the filesystem." },
                { "usage", "aiwm_node_disk_usage_percent", "gauge", "Share of the filesystem in use (df Use%)." },
        }, net_f[] = {
                { "bytesReceived", "aiwm_node_network_receive_bytes_total", "counter", "Bytes received on all interfaces but loopback since boot." },
                { "bytesSent", "aiwm_node_network_transmit_bytes_total", "counter", "Bytes sent on all interfaces but loopback since boot." },
                { "packetsReceived", "aiwm_node_network_receive_packets_total", "counter", "Packets received on all interfaces but loopback since boot." },
                { "packetsSent", "aiwm_node_network_transmit_packets_total", "counter", "Packets sent on all interfaces but loopback since boot." },
        };
        static const char *const node_states[] = { "healthy", "degraded", "error" };
        size_t i, j;

        single_from(c, cpu, "usage", 1, "aiwm_node_cpu_usage_percent", "gauge",
                    "CPU busy share over the last sampling window, 0-100.");
        single_from(c, cpu, "cores", 1, "aiwm_node_cpu_cores", "gauge", "Online logical CPUs.");
        for (i = 0; i < 3; i++) {
                const json_t *v = json_array_get(la, i);
                if (json_is_integer(v))
                        single(c, load_names[i], "gauge", load_help[i], v_int((int64_t)json_integer_value(v)));
                else if (json_is_real(v))
                        single(c, load_names[i], "gauge", load_help[i], v_real(json_real_value(v)));
        }
        single_from(c, mem, "total", MIB, "aiwm_node_memory_total_bytes", "gauge", "Physical memory (MemTotal).");
        single_from(c, mem, "used", MIB, "aiwm_node_memory_used_bytes", "gauge",
                    "Memory in use: MemTotal - MemAvailable.");
        single_from(c, mem, "free", MIB, "aiwm_node_memory_free_bytes", "gauge",
                    "Memory available to new work (MemAvailable).");
        single_from(c, mem, "cached", MIB, "aiwm_node_memory_cached_bytes", "gauge", "Page cache (Cached).");
        single_from(c, mem, "usage", 1, "aiwm_node_memory_usage_percent", "gauge", "Share of memory in use, 0-100.");
        for (j = 0; j < sizeof disk_f / sizeof *disk_f; j++) {
                family(c, disk_f[j].name, disk_f[j].type, disk_f[j].help);
                for (i = 0; i < 2; i++) {
                        const char *labels[] = { "path", paths[i], NULL };
                        value v;
                        if (!json_is_object(disks[i]))
                                continue;
                        if (i == 1 && !strcmp(paths[0], paths[1]))
                                continue; /* same label set twice */
                        if (get_scaled(disks[i], disk_f[j].key, strcmp(disk_f[j].key, "usage") ? MIB : 1, &v))
                                sample(c, labels, v);
                }
        }
        for (j = 0; j < sizeof net_f / sizeof *net_f; j++)
                single_from(c, net, net_f[j].key, 1, net_f[j].name, net_f[j].type, net_f[j].help);
        single_from(c, hb, "uptimeSeconds", 1, "aiwm_node_uptime_seconds", "gauge", "Host uptime.");
        if (json_is_string(json_object_get(hb, "status"))) {
                const char *st = json_string_value(json_object_get(hb, "status"));
                bool known = false;
                family(c, "aiwm_node_status", "gauge",
                       "The status the worker reports in its heartbeat: 1 for the current one.");
                for (i = 0; i < sizeof node_states / sizeof *node_states; i++) {
                        const char *labels[] = { "status", node_states[i], NULL };
                        known |= !strcmp(st, node_states[i]);
                        sample(c, labels, v_int(!strcmp(st, node_states[i])));
                }
                if (!known) {
                        const char *labels[] = { "status", st, NULL };
                        sample(c, labels, v_int(1));
                }
        }
}

/* ---- GPUs ---- */

typedef struct proc_row {
        int64_t pid;
        const char *name;
        value mem;
} proc_row;

static int cmp_proc(const void *a, const void *b) {
        const proc_row *x = a, *y = b;
        return (x->pid > y->pid) - (x->pid < y->pid);
}

static void gpu_labels(const json_t *d, const char *labels[7]) {
        labels[0] = "gpu";
        labels[1] = str_or(d, "deviceId", "");
        labels[2] = "uuid";
        labels[3] = str_or(d, "uuid", "");
        labels[4] = "name";
        labels[5] = str_or(d, "model", "");
        labels[6] = NULL;
}

static void render_gpus(ctx *c, const json_t *m) {
        const json_t *gpus = json_object_get(m, "gpuDevices"), *d;
        static const struct {
                const char *key, *name, *help;
                int64_t k;
        } f[] = {
                { "utilization", "aiwm_gpu_utilization_percent", "GPU busy share, 0-100.", 1 },
                { "memoryUsed", "aiwm_gpu_memory_used_bytes", "GPU memory in use.", MIB },
                { "memoryTotal", "aiwm_gpu_memory_total_bytes", "GPU memory size.", MIB },
                { "temperature", "aiwm_gpu_temperature_celsius", "GPU core temperature.", 1 },
                { "powerDraw", "aiwm_gpu_power_draw_watts", "GPU power draw.", 1 },
                { "powerLimit", "aiwm_gpu_power_limit_watts", "GPU power limit.", 1 },
        };
        size_t i, j, n;

        if (!json_is_array(gpus))
                return;
        n = 0;
        json_array_foreach(gpus, i, d)
                n += json_is_string(json_object_get(d, "deviceId"));
        single(c, "aiwm_gpus", "gauge", "GPUs the worker sees.", v_int((int64_t)n));
        family(c, "aiwm_gpu_up", "gauge", "1 when the GPU is usable, 0 when it is in error (lost, XID).");
        json_array_foreach(gpus, i, d) {
                const char *labels[7];
                if (!json_is_string(json_object_get(d, "deviceId")))
                        continue;
                gpu_labels(d, labels);
                sample(c, labels, v_int(strcmp(str_or(d, "status", ""), "error") != 0));
        }
        for (j = 0; j < sizeof f / sizeof *f; j++) {
                family(c, f[j].name, "gauge", f[j].help);
                json_array_foreach(gpus, i, d) {
                        const char *labels[7];
                        value v;
                        if (!json_is_string(json_object_get(d, "deviceId")) || !get_scaled(d, f[j].key, f[j].k, &v))
                                continue;
                        gpu_labels(d, labels);
                        sample(c, labels, v);
                }
        }
        family(c, "aiwm_gpu_process_memory_used_bytes", "gauge", "GPU memory used by a compute process.");
        json_array_foreach(gpus, i, d) {
                const json_t *procs = json_object_get(d, "processes"), *p;
                proc_row *rows;
                size_t k, nr = 0;

                if (!json_is_string(json_object_get(d, "deviceId")) || !json_array_size(procs))
                        continue;
                rows = calloc(json_array_size(procs), sizeof *rows);
                if (!rows) {
                        if (c->r == 0)
                                c->r = -ENOMEM;
                        return;
                }
                json_array_foreach(procs, k, p) {
                        const json_t *pid = json_object_get(p, "pid");
                        value mem;
                        if (!json_is_integer(pid) || !get_scaled(p, "memoryUsed", MIB, &mem))
                                continue;
                        rows[nr].pid = (int64_t)json_integer_value(pid);
                        rows[nr].name = str_or(p, "processName", "");
                        rows[nr].mem = mem;
                        nr++;
                }
                /* One series per pid: a process seen twice (MIG slices) adds up. */
                qsort(rows, nr, sizeof *rows, cmp_proc);
                for (k = 0; k < nr; k++) {
                        char pid[24];
                        const char *labels[] = { "gpu", str_or(d, "deviceId", ""), "uuid", str_or(d, "uuid", ""),
                                                 "pid", pid, "process", rows[k].name, NULL };
                        value sum = rows[k].mem;
                        while (k + 1 < nr && rows[k + 1].pid == rows[k].pid) {
                                value nx = rows[++k].mem;
                                if (sum.is_int && nx.is_int && nx.i <= INT64_MAX - sum.i && nx.i >= 0 && sum.i >= 0)
                                        sum.i += nx.i;
                                else
                                        sum = v_real((sum.is_int ? (double)sum.i : sum.d) +
                                                     (nx.is_int ? (double)nx.i : nx.d));
                        }
                        snprintf(pid, sizeof pid, "%" PRId64, rows[k].pid);
                        sample(c, labels, sum);
                }
                free(rows);
        }
}

/* ---- deployments and downloads ---- */

static bool seen_before(const json_t *arr, size_t upto, const char *key, const char *s) {
        size_t i;
        for (i = 0; i < upto; i++)
                if (!strcmp(str_or(json_array_get(arr, i), key, ""), s))
                        return true;
        return false;
}

static void render_deployments(ctx *c, const json_t *deps) {
        static const char *const statuses[] = { "queued", "starting", "running", "stopping",
                                                "stopped", "failed", "restarting" };
        size_t i, j, n = json_array_size(deps);
        const json_t *d;

        if (!json_is_array(deps))
                return;
        if (n > MAX_ROWS)
                n = MAX_ROWS;
        family(c, "aiwm_deployments", "gauge", "Deployments on this node by status.");
        for (j = 0; j < sizeof statuses / sizeof *statuses; j++) {
                const char *labels[] = { "status", statuses[j], NULL };
                int64_t cnt = 0;
                for (i = 0; i < n; i++)
                        cnt += !strcmp(str_or(json_array_get(deps, i), "status", ""), statuses[j]);
                sample(c, labels, v_int(cnt));
        }
        /* Statuses outside the enum, once each. */
        for (i = 0; i < n; i++) {
                const char *st = str_or(json_array_get(deps, i), "status", NULL);
                bool known = false;
                int64_t cnt = 0;
                if (!st || seen_before(deps, i, "status", st))
                        continue;
                for (j = 0; j < sizeof statuses / sizeof *statuses; j++)
                        known |= !strcmp(st, statuses[j]);
                if (known)
                        continue;
                for (j = i; j < n; j++)
                        cnt += !strcmp(str_or(json_array_get(deps, j), "status", ""), st);
                {
                        const char *labels[] = { "status", st, NULL };
                        sample(c, labels, v_int(cnt));
                }
        }
        family(c, "aiwm_deployment_up", "gauge", "1 while the deployment is running, else 0.");
        for (i = 0; i < n; i++) {
                const char *id = str_or(json_array_get(deps, i), "deploymentId", NULL);
                const char *labels[] = { "deployment", id, NULL };
                if (!id || seen_before(deps, i, "deploymentId", id))
                        continue;
                sample(c, labels, v_int(!strcmp(str_or(json_array_get(deps, i), "status", ""), "running")));
        }
        family(c, "aiwm_deployment_uptime_seconds", "gauge", "Time since the deployment's container started.");
        json_array_foreach(deps, i, d) {
                const char *id = str_or(d, "deploymentId", NULL);
                const char *labels[] = { "deployment", id, NULL };
                value v;
                if (i >= n)
                        break;
                if (!id || seen_before(deps, i, "deploymentId", id) || !get_num(d, "uptime", &v))
                        continue;
                sample(c, labels, v);
        }
}

static void render_downloads(ctx *c, const json_t *dls) {
        size_t i, n = json_array_size(dls);
        const json_t *d;

        if (!json_is_array(dls))
                return;
        if (n > MAX_ROWS)
                n = MAX_ROWS;
        single(c, "aiwm_model_downloads_in_progress", "gauge", "Model downloads running now.",
               v_int((int64_t)json_array_size(dls)));
        family(c, "aiwm_model_download_bytes", "gauge", "Bytes downloaded so far by a running model download.");
        json_array_foreach(dls, i, d) {
                const char *id = str_or(d, "modelId", NULL);
                const char *labels[] = { "model", id, NULL };
                value v;
                if (i >= n)
                        break;
                if (id && !seen_before(dls, i, "modelId", id) && get_num(d, "bytesDownloaded", &v))
                        sample(c, labels, v);
        }
        family(c, "aiwm_model_download_size_bytes", "gauge", "Expected size of a running model download, when known.");
        json_array_foreach(dls, i, d) {
                const char *id = str_or(d, "modelId", NULL);
                const char *labels[] = { "model", id, NULL };
                value v;
                if (i >= n)
                        break;
                if (id && !seen_before(dls, i, "modelId", id) && get_num(d, "bytesTotal", &v) &&
                    (v.is_int ? v.i > 0 : v.d > 0))
                        sample(c, labels, v);
        }
}

/* ---- worker ---- */

static void render_worker(const exporter *e, ctx *c, const exporter_snapshot *s) {
        const char *info[] = { "version", e->version, NULL };
        size_t i;

        family(c, "aiwm_worker_info", "gauge", "Always 1; the labels describe the worker.");
        sample(c, info, v_int(1));
        if (s->has_worker) {
                single(c, "aiwm_worker_connected", "gauge", "1 while the worker is connected to the controller.",
                       v_int(s->worker.connected));
                single(c, "aiwm_worker_registered", "gauge", "1 while the worker is registered with the controller.",
                       v_int(s->worker.registered));
                single(c, "aiwm_worker_reconnects_total", "counter",
                       "Established controller connections that were lost (each is followed by a reconnect).",
                       s->worker.reconnects > INT64_MAX ? v_real((double)s->worker.reconnects)
                                                        : v_int((int64_t)s->worker.reconnects));
                if (s->worker.outbox_depth >= 0)
                        single(c, "aiwm_worker_outbox_depth", "gauge",
                               "Messages waiting in the outbox for the controller.", v_int(s->worker.outbox_depth));
        }
        family(c, "aiwm_worker_commands_total", "counter", "Controller commands handled, by type and outcome.");
        for (i = 0; i < e->n_cmds; i++) {
                const char *labels[] = { "type", e->cmds[i].type, "outcome", e->cmds[i].outcome, NULL };
                sample(c, labels, e->cmds[i].n > INT64_MAX ? v_real((double)e->cmds[i].n) : v_int((int64_t)e->cmds[i].n));
        }
}

int exporter_render(const exporter *e, const exporter_snapshot *s, buf *b) {
        ctx c = { .b = b };

        if (json_is_object(s->metrics)) {
                render_node(e, &c, s->metrics, json_is_object(s->heartbeat) ? s->heartbeat : NULL);
                render_gpus(&c, s->metrics);
        } else if (json_is_object(s->heartbeat)) {
                render_node(e, &c, NULL, s->heartbeat);
        }
        render_deployments(&c, s->deployments);
        render_downloads(&c, s->downloads);
        render_worker(e, &c, s);
        return c.r;
}

/* ---- the object ---- */

/* A label value we keep: at most EXPORTER_MAX_LABEL bytes, cut on a
 * character boundary, invalid UTF-8 and control bytes as '?'. */
static char *clean_label(const char *s) {
        size_t n = 0, i = 0, len;
        char *outp;

        if (!s)
                s = "unknown";
        len = strlen(s);
        outp = malloc((len < EXPORTER_MAX_LABEL ? len : EXPORTER_MAX_LABEL) + 1);
        if (!outp)
                return NULL;
        while (i < len) {
                unsigned char ch = (unsigned char)s[i];
                size_t k = ch < 0x80 ? 1 : (ch >> 5) == 6 ? 2 : (ch >> 4) == 14 ? 3 : (ch >> 3) == 30 ? 4 : 0, m;
                bool ok = k > 0 && i + k <= len;

                for (m = 1; ok && m < k; m++)
                        ok = ((unsigned char)s[i + m] & 0xc0) == 0x80;
                if (ok && k == 2 && ch < 0xc2)
                        ok = false; /* overlong */
                if (!ok || (k == 1 && (ch < 0x20 || ch == 0x7f)))
                        k = 1, ok = false;
                if (n + k > EXPORTER_MAX_LABEL)
                        break;
                if (ok)
                        memcpy(outp + n, s + i, k);
                else
                        outp[n] = '?';
                n += ok ? k : 1;
                i += k;
        }
        outp[n] = '\0';
        return outp;
}

int exporter_new(const exporter_provider *provider, const exporter_options *opts, exporter **ret_exporter) {
        exporter *e = calloc(1, sizeof *e);

        if (!e)
                return -ENOMEM;
        if (provider)
                e->p = *provider;
        e->version = strdup(opts && opts->version ? opts->version : AIWM_VERSION);
        e->disk_path = strdup(opts && opts->disk_path ? opts->disk_path : "/");
        if (!e->version || !e->disk_path) {
                exporter_free(e);
                return -ENOMEM;
        }
        *ret_exporter = e;
        return 0;
}

exporter *exporter_free(exporter *e) {
        size_t i;

        if (!e)
                return NULL;
        for (i = 0; i < e->n_cmds; i++) {
                free(e->cmds[i].type);
                free(e->cmds[i].outcome);
        }
        free(e->cmds);
        free(e->version);
        free(e->disk_path);
        free(e);
        return NULL;
}

void exporter_count_command(exporter *e, const char *type, const char *outcome) {
        char *t, *o;
        cmd_series *grown;
        size_t i;

        if (!e)
                return;
        t = clean_label(type);
        o = clean_label(outcome);
        if (!t || !o)
                goto out;
        if (e->n_cmds >= EXPORTER_MAX_COMMAND_SERIES - 1 && strcmp(t, "other") != 0) {
                /* Past the cap, new types fold into "other" (one slot is kept
                 * for it); known pairs still count under their own name. */
                bool known = false;
                for (i = 0; i < e->n_cmds && !known; i++)
                        known = !strcmp(e->cmds[i].type, t) && !strcmp(e->cmds[i].outcome, o);
                if (!known) {
                        free(t);
                        t = strdup("other");
                        if (!t)
                                goto out;
                }
        }
        for (i = 0; i < e->n_cmds; i++)
                if (!strcmp(e->cmds[i].type, t) && !strcmp(e->cmds[i].outcome, o)) {
                        e->cmds[i].n++;
                        goto out;
                }
        if (e->n_cmds >= EXPORTER_MAX_COMMAND_SERIES)
                goto out; /* "other" with yet another outcome: dropped */
        grown = realloc(e->cmds, (e->n_cmds + 1) * sizeof *grown);
        if (!grown)
                goto out;
        e->cmds = grown;
        e->cmds[e->n_cmds++] = (cmd_series){ .type = t, .outcome = o, .n = 1 };
        t = o = NULL;
out:
        free(t);
        free(o);
}

int exporter_metrics(exporter *e, buf *b) {
        exporter_snapshot s = { .worker = { .outbox_depth = -1 } };
        json_t *m = NULL, *hb = NULL, *deps = NULL, *dls = NULL;
        int r;

        if (e->p.metrics)
                m = e->p.metrics(e->p.userdata);
        if (e->p.heartbeat)
                hb = e->p.heartbeat(e->p.userdata);
        if (e->p.deployments)
                deps = e->p.deployments(e->p.userdata);
        if (e->p.downloads)
                dls = e->p.downloads(e->p.userdata);
        if (e->p.worker) {
                e->p.worker(e->p.userdata, &s.worker);
                s.has_worker = true;
        }
        s.metrics = m;
        s.heartbeat = hb;
        s.deployments = deps;
        s.downloads = dls;
        r = exporter_render(e, &s, b);
        json_decref(m);
        json_decref(hb);
        json_decref(deps);
        json_decref(dls);
        return r;
}

int exporter_healthz(exporter *e, buf *b) {
        exporter_worker_state w = { .outbox_depth = -1 };
        int r;

        if (e->p.worker)
                e->p.worker(e->p.userdata, &w);
        r = buf_appendf(b, "{\"status\":\"%s\",\"connected\":%s,\"registered\":%s}\n",
                        w.registered ? "ok" : "unavailable", w.connected ? "true" : "false",
                        w.registered ? "true" : "false");
        if (r < 0)
                return r;
        return w.registered ? 200 : 503;
}

int exporter_route(void *userdata, const httpd_request *req, httpd_response *res) {
        exporter *e = userdata;
        int r;

        if (!strcmp(req->path, "/metrics")) {
                res->content_type = EXPORTER_CONTENT_TYPE;
                return exporter_metrics(e, &res->body);
        }
        if (!strcmp(req->path, "/healthz")) {
                r = exporter_healthz(e, &res->body);
                if (r < 0)
                        return r;
                res->status = r;
                res->content_type = "application/json";
                return 0;
        }
        res->status = 404;
        return buf_append_str(&res->body, "Not Found: try /metrics or /healthz\n");
}
