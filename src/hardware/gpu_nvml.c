#include "hardware/gpu_nvml.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/util.h"

/* ---- the few NVML declarations we need (ABI as in nvml.h; no NVIDIA
 * header is used) ---- */

typedef int nvmlReturn_t;
typedef struct nvmlDevice_st *nvmlDevice_t;
typedef struct nvmlEventSet_st *nvmlEventSet_t;

enum {
        NVML_SUCCESS = 0,
        NVML_ERROR_UNINITIALIZED = 1,
        NVML_ERROR_INVALID_ARGUMENT = 2,
        NVML_ERROR_NOT_SUPPORTED = 3,
        NVML_ERROR_NO_PERMISSION = 4,
        NVML_ERROR_NOT_FOUND = 6,
        NVML_ERROR_INSUFFICIENT_SIZE = 7,
        NVML_ERROR_DRIVER_NOT_LOADED = 9,
        NVML_ERROR_TIMEOUT = 10,
        NVML_ERROR_FUNCTION_NOT_FOUND = 13,
        NVML_ERROR_GPU_IS_LOST = 15,
        NVML_ERROR_RESET_REQUIRED = 16,
        NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18,
        NVML_ERROR_NO_DATA = 21,
        NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
        NVML_ERROR_UNKNOWN = 999,
};

#define NVML_TEMPERATURE_GPU 0
#define NVML_EVENT_TYPE_XID_CRITICAL_ERROR 0x0000000000000008ULL
#define NVML_NAME_BUFFER 96   /* NVML_DEVICE_NAME_V2_BUFFER_SIZE */
#define NVML_UUID_BUFFER 96   /* NVML_DEVICE_UUID_V2_BUFFER_SIZE */
#define NVML_DRIVER_BUFFER 80 /* NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE */
#define PROCESS_NAME_BUFFER 256

typedef struct nvml_memory_v1 {
        unsigned long long total, free, used;
} nvml_memory_v1;

typedef struct nvml_memory_v2 {
        unsigned int version;
        unsigned long long total, reserved, free, used;
} nvml_memory_v2;
/* NVML_STRUCT_VERSION(Memory, 2) */
#define NVML_MEMORY_V2 ((unsigned int)(sizeof(nvml_memory_v2) | (2u << 24)))

typedef struct nvml_utilization {
        unsigned int gpu, memory;
} nvml_utilization;

/* nvmlPciInfo_t as filled by nvmlDeviceGetPciInfo_v2/_v3. The unversioned
 * nvmlDeviceGetPciInfo fills the older, shorter layout whose busId[16]
 * ("0000:19:00.0") is at offset 0, where busIdLegacy is here. */
typedef struct nvml_pci_info {
        char bus_id_legacy[16];
        unsigned int domain, bus, device, pci_device_id, pci_subsystem_id;
        char bus_id[32];
} nvml_pci_info;

/* Process entries. _v1 (unversioned symbol) is 16 bytes, _v2 24 bytes. _v3
 * takes nvmlProcessInfo_t, which R535 drivers (CUDA 12.2) wrote with an
 * extra usedGpuCcProtectedMemory (32 bytes) and other drivers with the 24-byte
 * _v2 layout: the stride is measured on each call (see read_processes). The
 * fields we read have the same offsets in all of them. */
typedef struct nvml_process_v1 {
        unsigned int pid;
        unsigned long long used_gpu_memory;
} nvml_process_v1;

typedef struct nvml_process_v2 {
        unsigned int pid;
        unsigned long long used_gpu_memory;
        unsigned int gpu_instance_id, compute_instance_id;
} nvml_process_v2;

#define PROCESS_STRIDE_MAX 32

/* nvmlEventData_t (the gpuInstanceId/computeInstanceId tail was added for
 * nvmlEventSetWait_v2; the unversioned one writes less). */
typedef struct nvml_event_data {
        nvmlDevice_t device;
        unsigned long long event_type;
        unsigned long long event_data;
        unsigned int gpu_instance_id, compute_instance_id;
} nvml_event_data;

typedef struct nvml_api {
        nvmlReturn_t (*init)(void);
        nvmlReturn_t (*shutdown)(void);
        const char *(*error_string)(nvmlReturn_t);
        nvmlReturn_t (*get_count)(unsigned int *);
        nvmlReturn_t (*get_handle)(unsigned int, nvmlDevice_t *);
        nvmlReturn_t (*get_name)(nvmlDevice_t, char *, unsigned int);
        nvmlReturn_t (*get_uuid)(nvmlDevice_t, char *, unsigned int);
        nvmlReturn_t (*get_memory_v2)(nvmlDevice_t, nvml_memory_v2 *);
        nvmlReturn_t (*get_memory)(nvmlDevice_t, nvml_memory_v1 *);
        nvmlReturn_t (*get_utilization)(nvmlDevice_t, nvml_utilization *);
        nvmlReturn_t (*get_temperature)(nvmlDevice_t, int, unsigned int *);
        nvmlReturn_t (*get_power_usage)(nvmlDevice_t, unsigned int *);
        nvmlReturn_t (*get_power_limit)(nvmlDevice_t, unsigned int *);
        nvmlReturn_t (*get_pci)(nvmlDevice_t, nvml_pci_info *);
        nvmlReturn_t (*get_driver_version)(char *, unsigned int);
        nvmlReturn_t (*get_cuda_version)(int *);
        nvmlReturn_t (*get_processes)(nvmlDevice_t, unsigned int *, void *);
        nvmlReturn_t (*get_process_name)(unsigned int, char *, unsigned int);
        nvmlReturn_t (*event_set_create)(nvmlEventSet_t *);
        nvmlReturn_t (*event_set_free)(nvmlEventSet_t);
        nvmlReturn_t (*register_events)(nvmlDevice_t, unsigned long long, nvmlEventSet_t);
        nvmlReturn_t (*event_wait)(nvmlEventSet_t, nvml_event_data *, unsigned int);
} nvml_api;

/* Which entry point of a family was found: 0 = first name listed. */
typedef struct nvml_versions {
        int pci;
        int processes;
} nvml_versions;

typedef struct symbol {
        const char *names[3]; /* newest first */
        size_t offset;        /* of the pointer in nvml_api */
        int *version;         /* where to store the index of the name found */
        bool required;
        const char *feature;  /* what a missing symbol disables */
} symbol;

typedef struct xid_state {
        bool seen;
        unsigned long long xid;
        uint64_t last_ms;
} xid_state;

struct gpu_nvml {
        void *dl;
        nvml_api api;
        nvml_versions ver;
        char *proc_root;
        buf notes;          /* one line per disabled feature */
        buf init_notes;     /* same, found at nvmlInit time (XID support) */
        bool initialized;
        nvmlEventSet_t events;
        unsigned n_handles; /* devices registered for events */
        nvmlDevice_t handles[GPU_MAX_DEVICES];
        xid_state xid[GPU_MAX_DEVICES];
        char *notes_all;    /* notes + init_notes, for gpu_nvml_notes() */
};

#define API(f) offsetof(nvml_api, f)

static const char *nvml_strerror(gpu_nvml *n, nvmlReturn_t r) {
        const char *s = NULL;

        if (n->api.error_string)
                s = n->api.error_string(r);
        if (s && *s)
                return s;
        switch (r) {
        case NVML_ERROR_UNINITIALIZED:
                return "Uninitialized";
        case NVML_ERROR_NOT_SUPPORTED:
                return "Not Supported";
        case NVML_ERROR_NO_PERMISSION:
                return "Insufficient Permissions";
        case NVML_ERROR_DRIVER_NOT_LOADED:
                return "Driver Not Loaded";
        case NVML_ERROR_GPU_IS_LOST:
                return "GPU is lost";
        default:
                return "Unknown Error";
        }
}

static int resolve(gpu_nvml *n, char *err, size_t err_size) {
        const symbol table[] = {
                { { "nvmlInit_v2", "nvmlInit" }, API(init), NULL, true, NULL },
                { { "nvmlShutdown" }, API(shutdown), NULL, true, NULL },
                { { "nvmlErrorString" }, API(error_string), NULL, false, "NVML error texts" },
                { { "nvmlDeviceGetCount_v2", "nvmlDeviceGetCount" }, API(get_count), NULL, true, NULL },
                { { "nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex" }, API(get_handle), NULL, true, NULL },
                { { "nvmlDeviceGetName" }, API(get_name), NULL, false, "model" },
                { { "nvmlDeviceGetUUID" }, API(get_uuid), NULL, false, "uuid" },
                { { "nvmlDeviceGetMemoryInfo_v2" }, API(get_memory_v2), NULL, false, NULL },
                { { "nvmlDeviceGetMemoryInfo" }, API(get_memory), NULL, false, NULL },
                { { "nvmlDeviceGetUtilizationRates" }, API(get_utilization), NULL, false, "utilization" },
                { { "nvmlDeviceGetTemperature" }, API(get_temperature), NULL, false, "temperature" },
                { { "nvmlDeviceGetPowerUsage" }, API(get_power_usage), NULL, false, "powerDraw" },
                { { "nvmlDeviceGetPowerManagementLimit", "nvmlDeviceGetEnforcedPowerLimit" }, API(get_power_limit), NULL, false, "powerLimit" },
                { { "nvmlDeviceGetPciInfo_v3", "nvmlDeviceGetPciInfo_v2", "nvmlDeviceGetPciInfo" }, API(get_pci), &n->ver.pci, false, "pcieBusId" },
                { { "nvmlSystemGetDriverVersion" }, API(get_driver_version), NULL, false, "driverVersion" },
                { { "nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion" }, API(get_cuda_version), NULL, false, "cudaVersion" },
                { { "nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2", "nvmlDeviceGetComputeRunningProcesses" }, API(get_processes), &n->ver.processes, false, "processes" },
                { { "nvmlSystemGetProcessName" }, API(get_process_name), NULL, false, "process names from NVML (using /proc/<pid>/comm)" },
                { { "nvmlEventSetCreate" }, API(event_set_create), NULL, false, "XID events" },
                { { "nvmlEventSetFree" }, API(event_set_free), NULL, false, "XID events" },
                { { "nvmlDeviceRegisterEvents" }, API(register_events), NULL, false, "XID events" },
                { { "nvmlEventSetWait_v2", "nvmlEventSetWait" }, API(event_wait), NULL, false, "XID events" },
        };
        size_t i, j;

        for (i = 0; i < sizeof table / sizeof table[0]; i++) {
                const symbol *s = &table[i];
                void *p = NULL;

                for (j = 0; j < 3 && s->names[j] && !p; j++)
                        p = dlsym(n->dl, s->names[j]);
                if (p) {
                        /* dlsym returns data pointers; POSIX guarantees they
                         * convert to function pointers of the same size. */
                        memcpy((char *)&n->api + s->offset, &p, sizeof p);
                        if (s->version)
                                *s->version = (int)(j - 1);
                        continue;
                }
                if (s->required) {
                        if (err && err_size)
                                snprintf(err, err_size, "NVML library lacks %s", s->names[0]);
                        return -ENOSYS;
                }
                if (s->feature &&
                    buf_appendf(&n->notes, "NVML: %s missing: %s disabled\n", s->names[0], s->feature) < 0)
                        return -ENOMEM;
        }
        if (!n->api.get_memory_v2 && !n->api.get_memory &&
            buf_append_str(&n->notes, "NVML: nvmlDeviceGetMemoryInfo missing: memoryTotal/memoryUsed disabled\n") < 0)
                return -ENOMEM;
        /* Events need the whole set. */
        if (!n->api.event_set_create || !n->api.event_set_free || !n->api.register_events ||
            !n->api.event_wait)
                n->api.event_set_create = NULL;
        return 0;
}

static void update_notes(gpu_nvml *n) {
        buf all;

        free(n->notes_all);
        n->notes_all = NULL;
        if (n->notes.len == 0 && n->init_notes.len == 0)
                return;
        buf_init(&all, 0);
        if (buf_append(&all, n->notes.data ? n->notes.data : "", n->notes.len) < 0 ||
            buf_append(&all, n->init_notes.data ? n->init_notes.data : "", n->init_notes.len) < 0)
                return;
        /* Drop the last newline. */
        if (all.len > 0 && all.data[all.len - 1] == '\n')
                all.data[--all.len] = '\0';
        n->notes_all = buf_steal(&all);
}

static void deinit(gpu_nvml *n) {
        if (!n->initialized)
                return;
        if (n->events)
                n->api.event_set_free(n->events);
        n->events = NULL;
        n->n_handles = 0;
        n->api.shutdown();
        n->initialized = false;
}

/* Creates the event set and registers every device for critical XIDs. */
static void setup_events(gpu_nvml *n) {
        unsigned count = 0, i;
        nvmlReturn_t r;

        buf_reset(&n->init_notes);
        memset(n->xid, 0, sizeof n->xid);
        if (!n->api.event_set_create)
                return;
        r = n->api.event_set_create(&n->events);
        if (r != NVML_SUCCESS) {
                n->events = NULL;
                buf_appendf(&n->init_notes, "NVML: nvmlEventSetCreate failed (%s): XID events disabled\n",
                            nvml_strerror(n, r));
                return;
        }
        if (n->api.get_count(&count) != NVML_SUCCESS)
                count = 0;
        if (count > GPU_MAX_DEVICES)
                count = GPU_MAX_DEVICES;
        for (i = 0; i < count; i++) {
                nvmlDevice_t h = NULL;

                r = n->api.get_handle(i, &h);
                if (r == NVML_SUCCESS)
                        r = n->api.register_events(h, NVML_EVENT_TYPE_XID_CRITICAL_ERROR, n->events);
                if (r != NVML_SUCCESS) {
                        h = NULL;
                        buf_appendf(&n->init_notes, "NVML: XID events unavailable on GPU %u (%s)\n", i,
                                    nvml_strerror(n, r));
                }
                n->handles[i] = h;
        }
        n->n_handles = count;
}

/* Returns 0, or -EIO with the reason set on list. */
static int ensure_init(gpu_nvml *n, gpu_list *list) {
        nvmlReturn_t r;

        if (n->initialized)
                return 0;
        r = n->api.init();
        if (r != NVML_SUCCESS) {
                gpu_list_set_reason(list, "NVML initialisation failed: %s", nvml_strerror(n, r));
                return -EIO;
        }
        n->initialized = true;
        setup_events(n);
        update_notes(n);
        return 0;
}

int gpu_nvml_open(const char *path, const char *proc_root, char *err, size_t err_size,
                  gpu_nvml **ret_nvml) {
        gpu_nvml *n;
        const char *e;
        gpu_list *scratch;
        int r;

        if (err && err_size)
                err[0] = '\0';
        n = calloc(1, sizeof *n);
        if (!n)
                return -ENOMEM;
        buf_init(&n->notes, 16384);
        buf_init(&n->init_notes, 16384);
        n->proc_root = strdup(proc_root ? proc_root : "/");
        if (!n->proc_root) {
                r = -ENOMEM;
                goto fail;
        }
        n->dl = dlopen(path ? path : "libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
        if (!n->dl) {
                e = dlerror();
                if (err && err_size)
                        snprintf(err, err_size, "cannot load NVML: %s", e ? e : "unknown error");
                r = -ENOENT;
                goto fail;
        }
        r = resolve(n, err, err_size);
        if (r < 0)
                goto fail;
        update_notes(n);
        /* A failing nvmlInit is retried on each query. */
        scratch = gpu_list_new();
        if (!scratch) {
                r = -ENOMEM;
                goto fail;
        }
        ensure_init(n, scratch);
        gpu_list_free(scratch);
        *ret_nvml = n;
        return 0;
fail:
        gpu_nvml_close(n);
        return r;
}

gpu_nvml *gpu_nvml_close(gpu_nvml *n) {
        if (!n)
                return NULL;
        if (n->dl) {
                deinit(n);
                dlclose(n->dl);
        }
        buf_done(&n->notes);
        buf_done(&n->init_notes);
        free(n->notes_all);
        free(n->proc_root);
        free(n);
        return NULL;
}

const char *gpu_nvml_notes(const gpu_nvml *n) {
        return n ? n->notes_all : NULL;
}

/* Sorts an NVML answer for one field: true when the value can be used.
 * Not supported / no permission / no data leave the field absent; a lost
 * GPU or any other error puts the device in error with the reason. */
static bool field_ok(gpu_nvml *n, gpu_device *d, nvmlReturn_t r, const char *what, bool *fatal) {
        switch (r) {
        case NVML_SUCCESS:
                return true;
        case NVML_ERROR_NOT_SUPPORTED:
        case NVML_ERROR_NO_PERMISSION:
        case NVML_ERROR_NO_DATA:
        case NVML_ERROR_FUNCTION_NOT_FOUND:
                return false;
        case NVML_ERROR_GPU_IS_LOST:
                gpu_device_add_error(d, "GPU is lost (NVML)");
                return false;
        case NVML_ERROR_UNINITIALIZED:
        case NVML_ERROR_DRIVER_NOT_LOADED:
        case NVML_ERROR_LIB_RM_VERSION_MISMATCH:
                *fatal = true;
                /* fall through */
        default:
                gpu_device_add_error(d, "cannot read %s: %s", what, nvml_strerror(n, r));
                return false;
        }
}

static char *read_comm(gpu_nvml *n, unsigned pid) {
        char path[PATH_MAX], *data = NULL, *c;
        size_t len = 0;

        snprintf(path, sizeof path, "%s/proc/%u/comm",
                 strcmp(n->proc_root, "/") == 0 ? "" : n->proc_root, pid);
        if (util_read_file(path, 4096, &data, &len) < 0)
                return NULL;
        c = gpu_strndup_clean(data, len);
        free(data);
        if (c && !*c) {
                free(c);
                c = NULL;
        }
        return c;
}

static char *process_name(gpu_nvml *n, unsigned pid) {
        char name[PROCESS_NAME_BUFFER];

        if (n->api.get_process_name) {
                memset(name, 0, sizeof name);
                if (n->api.get_process_name(pid, name, sizeof name) == NVML_SUCCESS && name[0])
                        return gpu_strndup_clean(name, sizeof name);
        }
        return read_comm(n, pid);
}

static void read_processes(gpu_nvml *n, gpu_device *d, nvmlDevice_t h, bool *fatal) {
        static const size_t base_stride[] = { sizeof(nvml_process_v2), sizeof(nvml_process_v2),
                                              sizeof(nvml_process_v1) };
        unsigned cap = 16, count, i, tries;
        unsigned char *mem = NULL;
        size_t stride = base_stride[n->ver.processes];
        nvmlReturn_t r = NVML_ERROR_INSUFFICIENT_SIZE;

        if (!n->api.get_processes)
                return;
        for (tries = 0; tries < 4 && r == NVML_ERROR_INSUFFICIENT_SIZE; tries++) {
                free(mem);
                mem = malloc((size_t)cap * PROCESS_STRIDE_MAX);
                if (!mem)
                        return;
                /* Sentinel fill: tells the 24-byte from the 32-byte _v3 layout. */
                memset(mem, 0xA5, (size_t)cap * PROCESS_STRIDE_MAX);
                count = cap;
                r = n->api.get_processes(h, &count, mem);
                if (r == NVML_ERROR_INSUFFICIENT_SIZE) {
                        if (count <= cap)
                                count = cap * 2;
                        cap = count + 8 > GPU_MAX_PROCESSES ? GPU_MAX_PROCESSES : count + 8;
                }
        }
        if (!field_ok(n, d, r, "compute processes", fatal))
                goto out;
        if (count > cap)
                count = cap;
        if (n->ver.processes == 0 && count > 0) {
                static const unsigned char sentinel[8] = { 0xA5, 0xA5, 0xA5, 0xA5,
                                                           0xA5, 0xA5, 0xA5, 0xA5 };
                /* With 24-byte entries nothing past 24 * count was written. */
                if (memcmp(mem + (size_t)count * sizeof(nvml_process_v2), sentinel, 8) != 0)
                        stride = PROCESS_STRIDE_MAX;
        }
        d->has_processes = true;
        for (i = 0; i < count; i++) {
                nvml_process_v1 e;
                char *name;

                memcpy(&e, mem + (size_t)i * stride, sizeof e);
                name = process_name(n, e.pid);
                /* NVML reports (unsigned long long)-1 when the memory is unknown. */
                gpu_device_add_process(d, e.pid, name, e.used_gpu_memory != ~0ULL,
                                       (int64_t)(e.used_gpu_memory / (1024 * 1024)));
                free(name);
        }
out:
        free(mem);
}

static void drain_events(gpu_nvml *n, uint64_t now_ms) {
        nvml_event_data ev;
        unsigned i, k;

        if (!n->events)
                return;
        /* Bounded: a storm of events must not stall the loop. */
        for (k = 0; k < 256; k++) {
                memset(&ev, 0, sizeof ev);
                if (n->api.event_wait(n->events, &ev, 0) != NVML_SUCCESS)
                        break;
                if (!(ev.event_type & NVML_EVENT_TYPE_XID_CRITICAL_ERROR))
                        continue;
                for (i = 0; i < n->n_handles; i++)
                        if (n->handles[i] && n->handles[i] == ev.device) {
                                n->xid[i].seen = true;
                                n->xid[i].xid = ev.event_data;
                                n->xid[i].last_ms = now_ms;
                        }
        }
}

static char *cuda_version_string(int v) {
        char s[32];

        if (v <= 0)
                return NULL;
        snprintf(s, sizeof s, "%d.%d", v / 1000, (v % 1000) / 10);
        return strdup(s);
}

static void read_device(gpu_nvml *n, gpu_device *d, unsigned i, uint64_t now_ms,
                        uint64_t xid_hold_ms, bool *fatal) {
        char name[NVML_NAME_BUFFER], uuid[NVML_UUID_BUFFER], bus[17];
        nvmlDevice_t h = NULL;
        nvml_utilization u;
        nvml_pci_info pci;
        unsigned v;
        nvmlReturn_t r;

        if (i < n->n_handles && n->xid[i].seen) {
                if (now_ms - n->xid[i].last_ms < xid_hold_ms)
                        gpu_device_add_error(d, "critical XID %llu reported by the driver",
                                             n->xid[i].xid);
                else
                        n->xid[i].seen = false;
        }
        r = n->api.get_handle(i, &h);
        if (!field_ok(n, d, r, "device handle", fatal))
                goto out;

        if (n->api.get_name) {
                memset(name, 0, sizeof name);
                if (field_ok(n, d, n->api.get_name(h, name, sizeof name), "name", fatal))
                        d->name = gpu_strndup_clean(name, sizeof name);
        }
        if (n->api.get_uuid) {
                memset(uuid, 0, sizeof uuid);
                if (field_ok(n, d, n->api.get_uuid(h, uuid, sizeof uuid), "uuid", fatal))
                        d->uuid = gpu_strndup_clean(uuid, sizeof uuid);
        }
        if (n->api.get_memory_v2) {
                nvml_memory_v2 m;

                memset(&m, 0, sizeof m);
                m.version = NVML_MEMORY_V2;
                r = n->api.get_memory_v2(h, &m);
                if (r == NVML_ERROR_ARGUMENT_VERSION_MISMATCH && n->api.get_memory) {
                        /* Older driver behind a newer symbol: use the v1 call from now on. */
                        n->api.get_memory_v2 = NULL;
                } else if (field_ok(n, d, r, "memory", fatal)) {
                        d->has_memory_total = d->has_memory_used = true;
                        d->memory_total_mib = (int64_t)(m.total / (1024 * 1024));
                        d->memory_used_mib = (int64_t)(m.used / (1024 * 1024));
                }
        }
        if (!n->api.get_memory_v2 && n->api.get_memory) {
                nvml_memory_v1 m;

                memset(&m, 0, sizeof m);
                if (field_ok(n, d, n->api.get_memory(h, &m), "memory", fatal)) {
                        d->has_memory_total = d->has_memory_used = true;
                        d->memory_total_mib = (int64_t)(m.total / (1024 * 1024));
                        d->memory_used_mib = (int64_t)(m.used / (1024 * 1024));
                }
        }
        if (n->api.get_utilization) {
                memset(&u, 0, sizeof u);
                if (field_ok(n, d, n->api.get_utilization(h, &u), "utilization", fatal) && u.gpu <= 100) {
                        d->has_utilization = true;
                        d->utilization = (int)u.gpu;
                }
        }
        if (n->api.get_temperature) {
                v = 0;
                if (field_ok(n, d, n->api.get_temperature(h, NVML_TEMPERATURE_GPU, &v), "temperature", fatal) &&
                    v < 1000) {
                        d->has_temperature = true;
                        d->temperature = (int)v;
                }
        }
        if (n->api.get_power_usage) {
                v = 0;
                if (field_ok(n, d, n->api.get_power_usage(h, &v), "power draw", fatal)) {
                        d->has_power_draw = true;
                        d->power_draw_w = v / 1000.0;
                }
        }
        if (n->api.get_power_limit) {
                v = 0;
                if (field_ok(n, d, n->api.get_power_limit(h, &v), "power limit", fatal)) {
                        d->has_power_limit = true;
                        d->power_limit_w = v / 1000.0;
                }
        }
        if (n->api.get_pci) {
                memset(&pci, 0, sizeof pci);
                if (field_ok(n, d, n->api.get_pci(h, &pci), "PCI info", fatal)) {
                        pci.bus_id[sizeof pci.bus_id - 1] = '\0';
                        pci.bus_id_legacy[sizeof pci.bus_id_legacy - 1] = '\0';
                        if ((n->ver.pci < 2 && gpu_pci_bus_id_normalize(pci.bus_id, bus)) ||
                            gpu_pci_bus_id_normalize(pci.bus_id_legacy, bus))
                                d->pci_bus_id = strdup(bus);
                }
        }
        read_processes(n, d, h, fatal);
out:
        gpu_device_update_status(d);
}

int gpu_nvml_query(gpu_nvml *n, uint64_t now_ms, uint64_t xid_hold_ms, gpu_list **ret_list) {
        char drv[NVML_DRIVER_BUFFER];
        char *driver = NULL, *cuda = NULL;
        unsigned count = 0, i;
        bool fatal = false;
        gpu_list *list;
        nvmlReturn_t r;
        int cv = 0;

        list = gpu_list_new();
        if (!list)
                return -ENOMEM;
        if (ensure_init(n, list) < 0)
                goto done;
        r = n->api.get_count(&count);
        if (r != NVML_SUCCESS) {
                gpu_list_set_reason(list, "nvmlDeviceGetCount failed: %s", nvml_strerror(n, r));
                /* Start over with nvmlInit on the next query. */
                deinit(n);
                goto done;
        }
        if (count == 0) {
                gpu_list_set_reason(list, "NVML reports no GPU");
                goto done;
        }
        if (count > GPU_MAX_DEVICES) {
                gpu_list_set_reason(list, "%u GPUs, only the first %d reported", count, GPU_MAX_DEVICES);
                count = GPU_MAX_DEVICES;
        }
        drain_events(n, now_ms);
        if (n->api.get_driver_version) {
                memset(drv, 0, sizeof drv);
                if (n->api.get_driver_version(drv, sizeof drv) == NVML_SUCCESS && drv[0])
                        driver = gpu_strndup_clean(drv, sizeof drv);
        }
        if (n->api.get_cuda_version && n->api.get_cuda_version(&cv) == NVML_SUCCESS)
                cuda = cuda_version_string(cv);

        for (i = 0; i < count; i++) {
                gpu_device *d = gpu_list_add(list, i);

                if (!d) {
                        list = gpu_list_free(list);
                        goto done;
                }
                if (driver)
                        d->driver_version = strdup(driver);
                if (cuda)
                        d->cuda_version = strdup(cuda);
                read_device(n, d, i, now_ms, xid_hold_ms, &fatal);
        }
        if (fatal) {
                /* The library lost its driver: re-initialise next time. */
                deinit(n);
        }
done:
        free(driver);
        free(cuda);
        if (!list)
                return -ENOMEM;
        *ret_list = list;
        return 0;
}
