#include "hardware/gpu.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/util.h"
#include "hardware/gpu_nvml.h"
#include "hardware/gpu_smi.h"

#define DEFAULT_NVML_PATH "libnvidia-ml.so.1"
#define DEFAULT_SMI_PATH "nvidia-smi"
#define DEFAULT_SMI_TIMEOUT_MS 5000
#define DEFAULT_SMI_MAX_OUTPUT (256u * 1024u)
#define DEFAULT_XID_HOLD_MS 300000
#define REASON_MAX 1024

/* ---- plain data ---- */

static void process_done(gpu_process *pr) {
        free(pr->name);
        pr->name = NULL;
}

static void device_done(gpu_device *d) {
        size_t i;

        free(d->name);
        free(d->uuid);
        free(d->pci_bus_id);
        free(d->driver_version);
        free(d->cuda_version);
        for (i = 0; i < d->n_processes; i++)
                process_done(&d->processes[i]);
        free(d->processes);
        for (i = 0; i < d->n_errors; i++)
                free(d->errors[i]);
        free(d->errors);
        memset(d, 0, sizeof *d);
}

gpu_list *gpu_list_new(void) {
        return calloc(1, sizeof(gpu_list));
}

gpu_list *gpu_list_free(gpu_list *list) {
        size_t i;

        if (!list)
                return NULL;
        for (i = 0; i < list->n_devices; i++)
                device_done(&list->devices[i]);
        free(list->devices);
        free(list->reason);
        free(list);
        return NULL;
}

static int dup_str(const char *s, char **ret) {
        char *c;

        if (!s) {
                *ret = NULL;
                return 0;
        }
        c = strdup(s);
        if (!c)
                return -ENOMEM;
        *ret = c;
        return 0;
}

static int device_copy(const gpu_device *src, gpu_device *dst) {
        size_t i;
        int r = 0;

        *dst = *src;
        dst->name = dst->uuid = dst->pci_bus_id = dst->driver_version = dst->cuda_version = NULL;
        dst->processes = NULL;
        dst->n_processes = 0;
        dst->errors = NULL;
        dst->n_errors = 0;
        if (dup_str(src->name, &dst->name) < 0 || dup_str(src->uuid, &dst->uuid) < 0 ||
            dup_str(src->pci_bus_id, &dst->pci_bus_id) < 0 ||
            dup_str(src->driver_version, &dst->driver_version) < 0 ||
            dup_str(src->cuda_version, &dst->cuda_version) < 0) {
                r = -ENOMEM;
                goto out;
        }
        if (src->n_processes > 0) {
                dst->processes = calloc(src->n_processes, sizeof *dst->processes);
                if (!dst->processes) {
                        r = -ENOMEM;
                        goto out;
                }
                for (i = 0; i < src->n_processes; i++) {
                        dst->processes[i] = src->processes[i];
                        dst->processes[i].name = NULL;
                        dst->n_processes = i + 1;
                        if (dup_str(src->processes[i].name, &dst->processes[i].name) < 0) {
                                r = -ENOMEM;
                                goto out;
                        }
                }
        }
        if (src->n_errors > 0) {
                dst->errors = calloc(src->n_errors, sizeof *dst->errors);
                if (!dst->errors) {
                        r = -ENOMEM;
                        goto out;
                }
                for (i = 0; i < src->n_errors; i++) {
                        dst->n_errors = i + 1;
                        if (dup_str(src->errors[i], &dst->errors[i]) < 0) {
                                r = -ENOMEM;
                                goto out;
                        }
                }
        }
out:
        if (r < 0)
                device_done(dst);
        return r;
}

gpu_list *gpu_list_dup(const gpu_list *list) {
        gpu_list *c;
        size_t i;

        if (!list)
                return NULL;
        c = gpu_list_new();
        if (!c)
                return NULL;
        if (dup_str(list->reason, &c->reason) < 0)
                return gpu_list_free(c);
        if (list->n_devices > 0) {
                c->devices = calloc(list->n_devices, sizeof *c->devices);
                if (!c->devices)
                        return gpu_list_free(c);
                for (i = 0; i < list->n_devices; i++) {
                        if (device_copy(&list->devices[i], &c->devices[i]) < 0)
                                return gpu_list_free(c);
                        c->n_devices = i + 1;
                }
        }
        return c;
}

gpu_device *gpu_list_add(gpu_list *list, unsigned index) {
        gpu_device *n;

        if (list->n_devices >= GPU_MAX_DEVICES)
                return NULL;
        n = realloc(list->devices, (list->n_devices + 1) * sizeof *n);
        if (!n)
                return NULL;
        list->devices = n;
        n = &list->devices[list->n_devices++];
        memset(n, 0, sizeof *n);
        n->index = index;
        return n;
}

gpu_device *gpu_list_find_uuid(gpu_list *list, const char *uuid) {
        size_t i;

        for (i = 0; uuid && i < list->n_devices; i++)
                if (list->devices[i].uuid && strcmp(list->devices[i].uuid, uuid) == 0)
                        return &list->devices[i];
        return NULL;
}

int gpu_list_set_reason(gpu_list *list, const char *fmt, ...) {
        char *s = NULL;
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -ENOMEM;
        free(list->reason);
        list->reason = s;
        return 0;
}

int gpu_device_add_error(gpu_device *d, const char *fmt, ...) {
        char *s = NULL, **n;
        va_list ap;
        size_t i;
        int r;

        d->status = GPU_STATUS_ERROR;
        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        for (i = 0; i < d->n_errors; i++)
                if (strcmp(d->errors[i], s) == 0)
                        goto drop;
        if (d->n_errors >= GPU_MAX_ERRORS)
                goto drop;
        n = realloc(d->errors, (d->n_errors + 1) * sizeof *n);
        if (!n) {
                free(s);
                return -ENOMEM;
        }
        d->errors = n;
        d->errors[d->n_errors++] = s;
        return 0;
drop:
        free(s);
        return 0;
}

int gpu_device_add_process(gpu_device *d, uint32_t pid, const char *name, bool has_mem,
                           int64_t mem_mib) {
        gpu_process *n;
        char *c = NULL;

        if (d->n_processes >= GPU_MAX_PROCESSES)
                return -E2BIG;
        if (dup_str(name, &c) < 0)
                return -ENOMEM;
        n = realloc(d->processes, (d->n_processes + 1) * sizeof *n);
        if (!n) {
                free(c);
                return -ENOMEM;
        }
        d->processes = n;
        n = &d->processes[d->n_processes++];
        n->pid = pid;
        n->name = c;
        n->has_memory_used = has_mem;
        n->memory_used_mib = has_mem ? mem_mib : 0;
        d->has_processes = true;
        return 0;
}

void gpu_device_update_status(gpu_device *d) {
        if (d->status == GPU_STATUS_ERROR || d->n_errors > 0) {
                d->status = GPU_STATUS_ERROR;
                return;
        }
        if ((d->has_utilization && d->utilization > 0) || d->n_processes > 0)
                d->status = GPU_STATUS_ACTIVE;
        else
                d->status = GPU_STATUS_IDLE;
}

const char *gpu_status_to_string(gpu_status s) {
        switch (s) {
        case GPU_STATUS_ACTIVE:
                return "active";
        case GPU_STATUS_ERROR:
                return "error";
        case GPU_STATUS_IDLE:
        default:
                return "idle";
        }
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *p, size_t n) {
        size_t need, i;
        uint32_t cp;

        if (p[0] < 0x80)
                return 1;
        if ((p[0] & 0xe0) == 0xc0) {
                need = 2;
                cp = p[0] & 0x1f;
        } else if ((p[0] & 0xf0) == 0xe0) {
                need = 3;
                cp = p[0] & 0x0f;
        } else if ((p[0] & 0xf8) == 0xf0) {
                need = 4;
                cp = p[0] & 0x07;
        } else {
                return 0;
        }
        if (need > n)
                return 0;
        for (i = 1; i < need; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (p[i] & 0x3f);
        }
        /* Overlong forms, surrogates and values past U+10FFFF. */
        if ((need == 2 && cp < 0x80) || (need == 3 && cp < 0x800) || (need == 4 && cp < 0x10000) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
                return 0;
        return need;
}

char *gpu_strndup_clean(const char *s, size_t len) {
        const unsigned char *p = (const unsigned char *)s;
        size_t n = strnlen(s, len), i = 0, o = 0, k;
        char *out;

        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r' || p[n - 1] == '\n'))
                n--;
        while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
                i++;
        out = malloc(n - i + 1);
        if (!out)
                return NULL;
        while (i < n) {
                k = utf8_len(p + i, n - i);
                if (k == 0 || (k == 1 && (p[i] < 0x20 || p[i] == 0x7f))) {
                        out[o++] = '?';
                        i++;
                        continue;
                }
                memcpy(out + o, p + i, k);
                o += k;
                i += k;
        }
        out[o] = '\0';
        return out;
}

static int hexval(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Parses 1..maxd hex digits ending at the delimiter stop ('\0' allowed). */
static bool hex_part(const char **p, int maxd, char stop, unsigned long *ret) {
        unsigned long v = 0;
        int n = 0, h;

        while ((h = hexval(**p)) >= 0) {
                if (++n > maxd)
                        return false;
                v = v * 16 + (unsigned long)h;
                (*p)++;
        }
        if (n == 0 || **p != stop)
                return false;
        if (stop)
                (*p)++;
        *ret = v;
        return true;
}

bool gpu_pci_bus_id_normalize(const char *in, char out[static 17]) {
        unsigned long dom, bus, dev, fn;
        const char *p = in;

        if (!in)
                return false;
        if (!hex_part(&p, 8, ':', &dom) || !hex_part(&p, 2, ':', &bus) ||
            !hex_part(&p, 2, '.', &dev) || !hex_part(&p, 1, '\0', &fn))
                return false;
        /* The masks only tell the compiler what hex_part() already checked. */
        snprintf(out, 17, "%08X:%02X:%02X.%X", (unsigned)(dom & 0xffffffffu), (unsigned)(bus & 0xffu),
                 (unsigned)(dev & 0xffu), (unsigned)(fn & 0xfu));
        return true;
}

/* ---- JSON ---- */

/* Strings come from the backends already cleaned (gpu_strndup_clean); one
 * that jansson still refuses is omitted rather than failing the array. */
static int obj_set_str(json_t *o, const char *k, const char *v) {
        json_t *s;

        if (!v)
                return 0;
        s = json_string(v);
        if (!s)
                return 0;
        return json_object_set_new(o, k, s);
}

static int obj_set_int(json_t *o, const char *k, json_int_t v) {
        return json_object_set_new(o, k, json_integer(v));
}

static int obj_set_watts(json_t *o, const char *k, double w) {
        double r = round(w * 100.0) / 100.0;

        if (!isfinite(r))
                return 0;
        if (r == floor(r) && fabs(r) < 1e15)
                return json_object_set_new(o, k, json_integer((json_int_t)r));
        return json_object_set_new(o, k, json_real(r));
}

static int set_device_id(json_t *o, const gpu_device *d) {
        char id[16];

        snprintf(id, sizeof id, "%u", d->index);
        return obj_set_str(o, "deviceId", id);
}

static json_t *inventory_one(const gpu_device *d) {
        json_t *o = json_object();
        int r = 0;

        if (!o)
                return NULL;
        r |= set_device_id(o, d);
        r |= obj_set_str(o, "model", d->name);
        if (d->has_memory_total)
                r |= obj_set_int(o, "memoryTotal", d->memory_total_mib);
        r |= obj_set_str(o, "pcieBusId", d->pci_bus_id);
        r |= obj_set_str(o, "driverVersion", d->driver_version);
        r |= obj_set_str(o, "cudaVersion", d->cuda_version);
        r |= obj_set_str(o, "uuid", d->uuid);
        if (r) {
                json_decref(o);
                return NULL;
        }
        return o;
}

static json_t *processes_json(const gpu_device *d) {
        json_t *a = json_array();
        size_t i;

        if (!a)
                return NULL;
        for (i = 0; i < d->n_processes; i++) {
                const gpu_process *pr = &d->processes[i];
                json_t *o = json_object();
                int r = 0;

                if (!o)
                        goto fail;
                r |= obj_set_int(o, "pid", pr->pid);
                r |= obj_set_str(o, "processName", pr->name);
                if (pr->has_memory_used)
                        r |= obj_set_int(o, "memoryUsed", pr->memory_used_mib);
                if (r || json_array_append_new(a, o) < 0) {
                        if (!r)
                                o = NULL; /* append_new consumed it */
                        json_decref(o);
                        goto fail;
                }
        }
        return a;
fail:
        json_decref(a);
        return NULL;
}

static json_t *metrics_one(const gpu_device *d) {
        json_t *o = inventory_one(d), *a;
        size_t i;
        int r = 0;

        if (!o)
                return NULL;
        if (d->has_memory_used)
                r |= obj_set_int(o, "memoryUsed", d->memory_used_mib);
        if (d->has_memory_used && d->has_memory_total && d->memory_total_mib > 0)
                r |= obj_set_int(o, "memoryUsage",
                                 (json_int_t)llround((double)d->memory_used_mib * 100.0 /
                                                     (double)d->memory_total_mib));
        if (d->has_utilization)
                r |= obj_set_int(o, "utilization", d->utilization);
        if (d->has_temperature)
                r |= obj_set_int(o, "temperature", d->temperature);
        if (d->has_power_draw)
                r |= obj_set_watts(o, "powerDraw", d->power_draw_w);
        if (d->has_power_limit)
                r |= obj_set_watts(o, "powerLimit", d->power_limit_w);
        if (d->has_processes) {
                a = processes_json(d);
                r |= a ? json_object_set_new(o, "processes", a) : -1;
        }
        r |= obj_set_str(o, "status", gpu_status_to_string(d->status));
        a = json_array();
        for (i = 0; a && i < d->n_errors; i++) {
                json_t *e = json_string(d->errors[i]);
                if (e && json_array_append_new(a, e) < 0)
                        r = -1;
        }
        r |= a ? json_object_set_new(o, "errors", a) : -1;
        if (r) {
                json_decref(o);
                return NULL;
        }
        return o;
}

static json_t *status_one(const gpu_device *d) {
        json_t *o = json_object();
        int r = 0;

        if (!o)
                return NULL;
        r |= set_device_id(o, d);
        if (d->has_utilization)
                r |= obj_set_int(o, "utilization", d->utilization);
        r |= obj_set_str(o, "status", gpu_status_to_string(d->status));
        if (r) {
                json_decref(o);
                return NULL;
        }
        return o;
}

static json_t *build_array(const gpu_list *list, json_t *(*one)(const gpu_device *)) {
        json_t *a = json_array();
        size_t i;

        if (!a)
                return NULL;
        for (i = 0; list && i < list->n_devices; i++) {
                if (json_array_append_new(a, one(&list->devices[i])) < 0) {
                        json_decref(a);
                        return NULL;
                }
        }
        return a;
}

json_t *gpu_json_inventory(const gpu_list *list) {
        return build_array(list, inventory_one);
}

json_t *gpu_json_metrics(const gpu_list *list) {
        return build_array(list, metrics_one);
}

json_t *gpu_json_status(const gpu_list *list) {
        return build_array(list, status_one);
}

/* ---- the probe ---- */

typedef enum backend {
        BACKEND_NONE,
        BACKEND_NVML,
        BACKEND_SMI,
} backend;

typedef struct waiter {
        gpu_probe_cb cb;
        void *userdata;
} waiter;

struct gpu_probe {
        loop *l;
        backend backend;
        bool smi_found;          /* nvidia-smi could be started at least once */
        gpu_nvml *nvml;
        gpu_smi *smi;
        loop_timer *turn;        /* zero-delay timer: reports NVML/none on the next turn */
        uint64_t xid_hold_ms;
        char *load_reason;       /* why NVML is not used */
        gpu_list *last;

        waiter *waiters;
        size_t n_waiters, cap_waiters;
        bool running;
        bool dispatching;
        bool free_requested;
};

static void probe_destroy(gpu_probe *p) {
        p->smi = gpu_smi_free(p->smi);
        p->nvml = gpu_nvml_close(p->nvml);
        p->turn = loop_timer_free(p->turn);
        p->last = gpu_list_free(p->last);
        free(p->load_reason);
        free(p->waiters);
        free(p);
}

/* Installs list as the last result and calls every waiter. Requests made
 * from a callback start a new sample; a free requested from a callback
 * happens once all callbacks have returned. */
static void probe_complete(gpu_probe *p, gpu_list *list) {
        waiter *w = p->waiters;
        size_t i, n = p->n_waiters;

        gpu_list_free(p->last);
        p->last = list;
        p->waiters = NULL;
        p->n_waiters = p->cap_waiters = 0;
        p->running = false;
        p->dispatching = true;
        for (i = 0; i < n && !p->free_requested; i++)
                w[i].cb(p, p->last, w[i].userdata);
        p->dispatching = false;
        free(w);
        if (p->free_requested)
                probe_destroy(p);
}

static gpu_list *empty_list(const char *reason) {
        gpu_list *list = gpu_list_new();

        if (list && reason && gpu_list_set_reason(list, "%s", reason) < 0)
                list = gpu_list_free(list);
        return list;
}

static void on_turn(loop_timer *t, void *userdata) {
        gpu_probe *p = userdata;
        gpu_list *list = NULL;

        if (p->backend == BACKEND_NVML) {
                if (gpu_nvml_query(p->nvml, util_mono_ms(), p->xid_hold_ms, &list) < 0)
                        list = empty_list("out of memory while reading NVML");
        } else {
                list = empty_list(p->load_reason ? p->load_reason : "GPU probing disabled");
        }
        if (!list) {
                /* Out of memory: retry on a later turn rather than report nothing. */
                loop_timer_arm(p->turn, 100);
                return;
        }
        probe_complete(p, list);
}

static void on_smi(gpu_smi *s, int r, gpu_list *list, void *userdata) {
        gpu_probe *p = userdata;

        if (r == -ENOENT || r == -EACCES) {
                /* Neither NVML nor nvidia-smi: say both. */
                if (!p->smi_found)
                        p->backend = BACKEND_NONE;
                gpu_list_set_reason(list, "no NVIDIA driver: %s; %s",
                                    p->load_reason ? p->load_reason : "NVML not loaded",
                                    list->reason ? list->reason : "nvidia-smi not found");
        } else {
                p->smi_found = true;
                p->backend = BACKEND_SMI;
        }
        probe_complete(p, list);
}

int gpu_probe_new(const gpu_probe_options *opts, gpu_probe **ret_probe) {
        const char *nvml_path, *smi_path;
        char err[REASON_MAX];
        gpu_probe *p;
        int r;

        if (!opts || !opts->loop || !ret_probe)
                return -EINVAL;
        p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        p->l = opts->loop;
        p->xid_hold_ms = opts->xid_hold_ms ? opts->xid_hold_ms : DEFAULT_XID_HOLD_MS;
        nvml_path = opts->nvml_path ? opts->nvml_path : DEFAULT_NVML_PATH;
        smi_path = opts->smi_path ? opts->smi_path : DEFAULT_SMI_PATH;

        r = loop_timer_new(p->l, on_turn, p, &p->turn);
        if (r < 0)
                goto fail;

        err[0] = '\0';
        if (*nvml_path) {
                r = gpu_nvml_open(nvml_path, opts->proc_root, err, sizeof err, &p->nvml);
                if (r == -ENOMEM)
                        goto fail;
                if (r >= 0)
                        p->backend = BACKEND_NVML;
        } else {
                snprintf(err, sizeof err, "NVML disabled");
        }
        if (p->backend != BACKEND_NVML) {
                p->load_reason = strdup(err[0] ? err : "NVML not loaded");
                if (!p->load_reason) {
                        r = -ENOMEM;
                        goto fail;
                }
                if (*smi_path) {
                        r = gpu_smi_new(p->l, smi_path, opts->smi_timeout_ms
                                                ? opts->smi_timeout_ms : DEFAULT_SMI_TIMEOUT_MS,
                                        opts->smi_max_output ? opts->smi_max_output
                                                             : DEFAULT_SMI_MAX_OUTPUT,
                                        &p->smi);
                        if (r < 0)
                                goto fail;
                        p->backend = BACKEND_SMI;
                }
        }
        *ret_probe = p;
        return 0;
fail:
        probe_destroy(p);
        return r;
}

gpu_probe *gpu_probe_free(gpu_probe *p) {
        if (!p)
                return NULL;
        if (p->dispatching) {
                p->free_requested = true;
                return NULL;
        }
        probe_destroy(p);
        return NULL;
}

int gpu_probe_sample(gpu_probe *p, gpu_probe_cb cb, void *userdata) {
        int r;

        if (!p || !cb)
                return -EINVAL;
        if (p->n_waiters == p->cap_waiters) {
                size_t ncap = p->cap_waiters ? p->cap_waiters * 2 : 4;
                waiter *n = realloc(p->waiters, ncap * sizeof *n);
                if (!n)
                        return -ENOMEM;
                p->waiters = n;
                p->cap_waiters = ncap;
        }
        p->waiters[p->n_waiters].cb = cb;
        p->waiters[p->n_waiters].userdata = userdata;
        p->n_waiters++;
        if (p->running)
                return 0;

        if (p->smi && p->backend != BACKEND_NVML) {
                r = gpu_smi_sample(p->smi, on_smi, p);
                if (r < 0) {
                        p->n_waiters--;
                        return r;
                }
        } else {
                loop_timer_arm(p->turn, 0);
        }
        p->running = true;
        return 0;
}

const gpu_list *gpu_probe_last(const gpu_probe *p) {
        return p ? p->last : NULL;
}

const char *gpu_probe_backend(const gpu_probe *p) {
        if (!p)
                return "none";
        switch (p->backend) {
        case BACKEND_NVML:
                return "nvml";
        case BACKEND_SMI:
                return "nvidia-smi";
        case BACKEND_NONE:
        default:
                return "none";
        }
}

const char *gpu_probe_reason(const gpu_probe *p) {
        if (!p)
                return NULL;
        if (p->last && p->last->reason)
                return p->last->reason;
        return p->backend == BACKEND_NVML ? NULL : p->load_reason;
}

const char *gpu_probe_notes(const gpu_probe *p) {
        return p && p->nvml ? gpu_nvml_notes(p->nvml) : NULL;
}
