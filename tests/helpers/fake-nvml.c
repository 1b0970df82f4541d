/* A fake libnvidia-ml.so.1 for the tests of src/hardware/gpu_nvml.c. It
 * exports the NVML entry points the worker uses (names and ABI as in the real
 * library's export list, tests/fixtures/nvidia-smi/ and the captures'
 * "nvml-symbols" section) and answers from a fixture file derived from the real
 * captures (tests/fixtures/nvidia-smi/<gpu>/<state>/nvml.txt, written by
 * tests/helpers/extract-smi-fixture.py):
 *
 *   driver 590.48.01          cuda 13010
 *   gpu 0                     (starts a device; the keys below apply to it)
 *   name …  uuid …  pci 00000000:00:09.0
 *   memory_total_mib N  memory_used_mib N  utilization N  temperature N
 *   power_mw N  power_limit_mw N          (NS: NVML_ERROR_NOT_SUPPORTED)
 *   proc PID MIB NAME…                    (MIB may be NS: memory unknown)
 *
 * Environment, read on every call so a test can flip it between samples:
 *   AIWM_FAKE_NVML_FIXTURE     the fixture file (read by nvmlInit)
 *   AIWM_FAKE_NVML_FAIL_INIT=1 nvmlInit fails with DRIVER_NOT_LOADED
 *   AIWM_FAKE_NVML_FAIL_COUNT=1 nvmlDeviceGetCount fails with UNKNOWN
 *   AIWM_FAKE_NVML_LOST=i[,j]  device calls on those indexes fail with GPU_IS_LOST
 *   AIWM_FAKE_NVML_XID=i:xid   one critical XID event on device i (again when the value changes)
 *   AIWM_FAKE_NVML_PROC_STRIDE=32  _v3 process entries 32 bytes long, as R535 drivers wrote them
 *   AIWM_FAKE_NVML_NO_EVENTS=1 nvmlDeviceRegisterEvents answers NOT_SUPPORTED
 *
 * Build variants (see fake-nvml.cmake):
 *   default            every symbol
 *   FAKE_NVML_NO_V3    without the _v3 entry points (fallback to _v2)
 *   FAKE_NVML_LEGACY   only unversioned entry points with their old layouts, and
 *                      without nvmlSystemGetProcessName, nvmlDeviceGetPowerUsage,
 *                      nvmlDeviceGetPowerManagementLimit (the worker must fall back
 *                      or disable those fields with a note). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

typedef int nvmlReturn_t;
typedef struct fake_gpu *nvmlDevice_t;
typedef struct fake_set *nvmlEventSet_t;

enum {
        SUCCESS = 0,
        E_UNINITIALIZED = 1,
        E_INVALID_ARGUMENT = 2,
        E_NOT_SUPPORTED = 3,
        E_NOT_FOUND = 6,
        E_INSUFFICIENT_SIZE = 7,
        E_DRIVER_NOT_LOADED = 9,
        E_TIMEOUT = 10,
        E_GPU_IS_LOST = 15,
        E_ARGUMENT_VERSION_MISMATCH = 25,
        E_UNKNOWN = 999,
};

#define MAX_GPUS 8
#define MAX_PROCS 32
#define NS (-1LL)

struct fake_proc {
        unsigned pid;
        long long mem_mib;
        char name[256];
};

struct fake_gpu {
        unsigned index;
        char name[96], uuid[96], pci[32];
        long long mem_total, mem_used, util, temp, power, limit;
        struct fake_proc procs[MAX_PROCS];
        unsigned n_procs;
        bool registered;
};

struct fake_set {
        int unused;
};

static struct fake_gpu gpus[MAX_GPUS];
static unsigned n_gpus;
static char driver[80];
static int cuda;
static int init_count;
static struct fake_set the_set;
static char xid_delivered[64];

static const char *env(const char *k) {
        const char *v = getenv(k);
        return v && *v ? v : NULL;
}

static long long value(const char *v) {
        return strcmp(v, "NS") == 0 ? NS : strtoll(v, NULL, 10);
}

static int load_fixture(void) {
        const char *path = env("AIWM_FAKE_NVML_FIXTURE");
        char line[512], *k, *v;
        struct fake_gpu *g = NULL;
        FILE *f;

        if (!path || !(f = fopen(path, "re")))
                return -1;
        memset(gpus, 0, sizeof gpus);
        n_gpus = 0;
        driver[0] = '\0';
        cuda = 0;
        while (fgets(line, sizeof line, f)) {
                line[strcspn(line, "\n")] = '\0';
                if (line[0] == '#' || !line[0])
                        continue;
                k = line;
                v = strchr(line, ' ');
                if (!v)
                        continue;
                *v++ = '\0';
                if (strcmp(k, "driver") == 0) {
                        snprintf(driver, sizeof driver, "%s", v);
                } else if (strcmp(k, "cuda") == 0) {
                        cuda = (int)strtol(v, NULL, 10);
                } else if (strcmp(k, "gpu") == 0 && n_gpus < MAX_GPUS) {
                        g = &gpus[n_gpus++];
                        g->index = (unsigned)strtoul(v, NULL, 10);
                } else if (!g) {
                        continue;
                } else if (strcmp(k, "name") == 0) {
                        snprintf(g->name, sizeof g->name, "%s", v);
                } else if (strcmp(k, "uuid") == 0) {
                        snprintf(g->uuid, sizeof g->uuid, "%s", v);
                } else if (strcmp(k, "pci") == 0) {
                        snprintf(g->pci, sizeof g->pci, "%s", v);
                } else if (strcmp(k, "memory_total_mib") == 0) {
                        g->mem_total = value(v);
                } else if (strcmp(k, "memory_used_mib") == 0) {
                        g->mem_used = value(v);
                } else if (strcmp(k, "utilization") == 0) {
                        g->util = value(v);
                } else if (strcmp(k, "temperature") == 0) {
                        g->temp = value(v);
                } else if (strcmp(k, "power_mw") == 0) {
                        g->power = value(v);
                } else if (strcmp(k, "power_limit_mw") == 0) {
                        g->limit = value(v);
                } else if (strcmp(k, "proc") == 0 && g->n_procs < MAX_PROCS) {
                        struct fake_proc *p = &g->procs[g->n_procs++];
                        char *mem = strchr(v, ' '), *name;
                        p->pid = (unsigned)strtoul(v, NULL, 10);
                        p->mem_mib = mem ? value(mem + 1) : NS;
                        name = mem ? strchr(mem + 1, ' ') : NULL;
                        snprintf(p->name, sizeof p->name, "%s", name ? name + 1 : "");
                }
        }
        fclose(f);
        return 0;
}

static bool listed(const char *list, unsigned index) {
        const char *p = list;
        char *end;

        while (p && *p) {
                unsigned long v = strtoul(p, &end, 10);
                if (end == p)
                        return false;
                if (v == index)
                        return true;
                p = *end == ',' ? end + 1 : NULL;
        }
        return false;
}

/* Common checks of every device call. */
static nvmlReturn_t check(nvmlDevice_t d) {
        if (init_count <= 0)
                return E_UNINITIALIZED;
        if (!d || d < gpus || d >= gpus + n_gpus)
                return E_INVALID_ARGUMENT;
        if (listed(env("AIWM_FAKE_NVML_LOST"), d->index))
                return E_GPU_IS_LOST;
        return SUCCESS;
}

static nvmlReturn_t copy_str(char *dst, unsigned len, const char *src) {
        if (strlen(src) + 1 > len)
                return E_INSUFFICIENT_SIZE;
        memcpy(dst, src, strlen(src) + 1);
        return SUCCESS;
}

/* ---- init ---- */

static nvmlReturn_t do_init(void) {
        if (env("AIWM_FAKE_NVML_FAIL_INIT"))
                return E_DRIVER_NOT_LOADED;
        if (init_count == 0 && load_fixture() < 0)
                return E_DRIVER_NOT_LOADED;
        init_count++;
        return SUCCESS;
}

EXPORT nvmlReturn_t nvmlInit(void) {
        return do_init();
}

EXPORT nvmlReturn_t nvmlShutdown(void) {
        if (init_count <= 0)
                return E_UNINITIALIZED;
        if (--init_count == 0) {
                unsigned i;
                for (i = 0; i < n_gpus; i++)
                        gpus[i].registered = false;
        }
        return SUCCESS;
}

EXPORT const char *nvmlErrorString(nvmlReturn_t r) {
        switch (r) {
        case SUCCESS: return "Success";
        case E_UNINITIALIZED: return "Uninitialized";
        case E_INVALID_ARGUMENT: return "Invalid Argument";
        case E_NOT_SUPPORTED: return "Not Supported";
        case E_NOT_FOUND: return "Not Found";
        case E_INSUFFICIENT_SIZE: return "Insufficient Size";
        case E_DRIVER_NOT_LOADED: return "Driver Not Loaded";
        case E_TIMEOUT: return "Timeout";
        case E_GPU_IS_LOST: return "GPU is lost";
        case E_ARGUMENT_VERSION_MISMATCH: return "Argument Version Mismatch";
        default: return "Unknown Error";
        }
}

static nvmlReturn_t get_count(unsigned *count) {
        if (init_count <= 0)
                return E_UNINITIALIZED;
        if (env("AIWM_FAKE_NVML_FAIL_COUNT"))
                return E_UNKNOWN;
        *count = n_gpus;
        return SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetCount(unsigned *count) {
        return get_count(count);
}

static nvmlReturn_t get_handle(unsigned index, nvmlDevice_t *dev) {
        if (init_count <= 0)
                return E_UNINITIALIZED;
        if (index >= n_gpus)
                return E_INVALID_ARGUMENT;
        *dev = &gpus[index];
        return SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned index, nvmlDevice_t *dev) {
        return get_handle(index, dev);
}

/* ---- system ---- */

EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned len) {
        if (init_count <= 0)
                return E_UNINITIALIZED;
        return copy_str(version, len, driver);
}

EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *v) {
        *v = cuda;
        return cuda ? SUCCESS : E_NOT_SUPPORTED;
}

static __attribute__((unused)) struct fake_proc *find_proc(unsigned pid) {
        unsigned i, j;

        for (i = 0; i < n_gpus; i++)
                for (j = 0; j < gpus[i].n_procs; j++)
                        if (gpus[i].procs[j].pid == pid)
                                return &gpus[i].procs[j];
        return NULL;
}

/* ---- device ---- */

EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned len) {
        nvmlReturn_t r = check(d);
        return r ? r : copy_str(name, len, d->name);
}

EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *uuid, unsigned len) {
        nvmlReturn_t r = check(d);
        return r ? r : copy_str(uuid, len, d->uuid);
}

typedef struct {
        unsigned long long total, free, used;
} memory_v1;

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t d, memory_v1 *m) {
        nvmlReturn_t r = check(d);
        if (r)
                return r;
        m->total = (unsigned long long)d->mem_total << 20;
        m->used = (unsigned long long)d->mem_used << 20;
        m->free = m->total - m->used;
        return SUCCESS;
}

typedef struct {
        unsigned int gpu, memory;
} utilization;

EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, utilization *u) {
        nvmlReturn_t r = check(d);
        if (r)
                return r;
        if (d->util == NS)
                return E_NOT_SUPPORTED;
        u->gpu = (unsigned)d->util;
        u->memory = 0;
        return SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor, unsigned *t) {
        nvmlReturn_t r = check(d);
        if (r)
                return r;
        if (sensor != 0)
                return E_INVALID_ARGUMENT;
        if (d->temp == NS)
                return E_NOT_SUPPORTED;
        *t = (unsigned)d->temp;
        return SUCCESS;
}

static nvmlReturn_t power_value(nvmlDevice_t d, long long v, unsigned *out) {
        nvmlReturn_t r = check(d);
        if (r)
                return r;
        if (v == NS)
                return E_NOT_SUPPORTED;
        *out = (unsigned)v;
        return SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t d, unsigned *mw) {
        return power_value(d, d ? d->limit : 0, mw);
}

/* Old layout of nvmlPciInfo_t (unversioned nvmlDeviceGetPciInfo). */
typedef struct {
        char bus_id[16];
        unsigned domain, bus, device, pci_device_id, pci_subsystem_id;
        unsigned reserved[4];
} pci_v1;

typedef struct {
        char bus_id_legacy[16];
        unsigned domain, bus, device, pci_device_id, pci_subsystem_id;
        char bus_id[32];
} pci_v2;

static void pci_numbers(nvmlDevice_t d, unsigned *dom, unsigned *bus, unsigned *dev, unsigned *fn) {
        *dom = *bus = *dev = *fn = 0;
        sscanf(d->pci, "%x:%x:%x.%x", dom, bus, dev, fn);
}

EXPORT nvmlReturn_t nvmlDeviceGetPciInfo(nvmlDevice_t d, pci_v1 *p) {
        unsigned dom, bus, dev, fn;
        nvmlReturn_t r = check(d);
        if (r)
                return r;
        memset(p, 0, sizeof *p);
        pci_numbers(d, &dom, &bus, &dev, &fn);
        snprintf(p->bus_id, sizeof p->bus_id, "%04x:%02x:%02x.%x", dom & 0xffff, bus, dev, fn);
        p->domain = dom;
        p->bus = bus;
        p->device = dev;
        return SUCCESS;
}

static __attribute__((unused)) nvmlReturn_t pci_new(nvmlDevice_t d, pci_v2 *p) {
        unsigned dom, bus, dev, fn;
        nvmlReturn_t r = check(d);
        if (r)
                return r;
        memset(p, 0, sizeof *p);
        pci_numbers(d, &dom, &bus, &dev, &fn);
        snprintf(p->bus_id_legacy, sizeof p->bus_id_legacy, "%04X:%02X:%02X.%X", dom & 0xffff, bus, dev, fn);
        snprintf(p->bus_id, sizeof p->bus_id, "%s", d->pci);
        p->domain = dom;
        p->bus = bus;
        p->device = dev;
        return SUCCESS;
}

/* Process entries: v1 16 bytes, v2 24, v3 24 (or 32 with AIWM_FAKE_NVML_PROC_STRIDE=32). */
static nvmlReturn_t processes(nvmlDevice_t d, unsigned *count, void *infos, size_t stride) {
        unsigned i;
        nvmlReturn_t r = check(d);

        if (r)
                return r;
        if (*count < d->n_procs) {
                *count = d->n_procs;
                return E_INSUFFICIENT_SIZE;
        }
        for (i = 0; i < d->n_procs; i++) {
                unsigned char *e = (unsigned char *)infos + i * stride;
                unsigned long long mem = d->procs[i].mem_mib == NS ? ~0ULL
                                                                   : (unsigned long long)d->procs[i].mem_mib << 20;
                unsigned ff = 0xffffffffu;
                unsigned long long zero = 0;

                memset(e, 0, stride);
                memcpy(e, &d->procs[i].pid, 4);
                memcpy(e + 8, &mem, 8);
                if (stride >= 24) {
                        memcpy(e + 16, &ff, 4); /* gpuInstanceId: no MIG */
                        memcpy(e + 20, &ff, 4);
                }
                if (stride >= 32)
                        memcpy(e + 24, &zero, 8);
        }
        *count = d->n_procs;
        return SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t d, unsigned *count, void *infos) {
        return processes(d, count, infos, 16);
}

/* ---- events ---- */

EXPORT nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set) {
        if (init_count <= 0)
                return E_UNINITIALIZED;
        *set = &the_set;
        return SUCCESS;
}

EXPORT nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
        return set == &the_set ? SUCCESS : E_INVALID_ARGUMENT;
}

EXPORT nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t d, unsigned long long types, nvmlEventSet_t set) {
        nvmlReturn_t r = check(d);
        if (r)
                return r;
        if (env("AIWM_FAKE_NVML_NO_EVENTS") || types != 0x8ULL)
                return E_NOT_SUPPORTED;
        d->registered = true;
        return SUCCESS;
}

typedef struct {
        nvmlDevice_t device;
        unsigned long long event_type, event_data;
        unsigned gpu_instance_id, compute_instance_id;
} event_data;

static nvmlReturn_t event_wait(nvmlEventSet_t set, event_data *ev, unsigned timeout_ms, bool v2) {
        const char *x = env("AIWM_FAKE_NVML_XID");
        unsigned idx;
        unsigned long long xid;

        if (init_count <= 0)
                return E_UNINITIALIZED;
        if (set != &the_set)
                return E_INVALID_ARGUMENT;
        if (!x) {
                xid_delivered[0] = '\0';
                return E_TIMEOUT;
        }
        if (strcmp(x, xid_delivered) == 0 || sscanf(x, "%u:%llu", &idx, &xid) != 2 ||
            idx >= n_gpus || !gpus[idx].registered)
                return E_TIMEOUT;
        snprintf(xid_delivered, sizeof xid_delivered, "%s", x);
        ev->device = &gpus[idx];
        ev->event_type = 0x8ULL;
        ev->event_data = xid;
        if (v2) {
                ev->gpu_instance_id = 0xffffffffu;
                ev->compute_instance_id = 0xffffffffu;
        }
        return SUCCESS;
}

EXPORT nvmlReturn_t nvmlEventSetWait(nvmlEventSet_t set, event_data *ev, unsigned timeout_ms) {
        return event_wait(set, ev, timeout_ms, false);
}

/* ---- versioned entry points ---- */

#ifndef FAKE_NVML_LEGACY
EXPORT nvmlReturn_t nvmlInit_v2(void) {
        return do_init();
}

EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned *count) {
        return get_count(count);
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned index, nvmlDevice_t *dev) {
        return get_handle(index, dev);
}

EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *v) {
        return nvmlSystemGetCudaDriverVersion(v);
}

typedef struct {
        unsigned int version;
        unsigned long long total, reserved, free, used;
} memory_v2;

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t d, memory_v2 *m) {
        nvmlReturn_t r = check(d);
        if (r)
                return r;
        if (m->version != (unsigned)(sizeof(memory_v2) | (2u << 24)))
                return E_ARGUMENT_VERSION_MISMATCH;
        m->total = (unsigned long long)d->mem_total << 20;
        m->used = (unsigned long long)d->mem_used << 20;
        m->reserved = 0;
        m->free = m->total - m->used;
        return SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned *mw) {
        return power_value(d, d ? d->power : 0, mw);
}

EXPORT nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t d, unsigned *mw) {
        return power_value(d, d ? d->limit : 0, mw);
}

EXPORT nvmlReturn_t nvmlSystemGetProcessName(unsigned pid, char *name, unsigned len) {
        struct fake_proc *p;

        if (init_count <= 0)
                return E_UNINITIALIZED;
        p = find_proc(pid);
        if (!p)
                return E_NOT_FOUND;
        return copy_str(name, len, p->name);
}

EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v2(nvmlDevice_t d, pci_v2 *p) {
        return pci_new(d, p);
}

EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t d, unsigned *count, void *infos) {
        return processes(d, count, infos, 24);
}

EXPORT nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, event_data *ev, unsigned timeout_ms) {
        return event_wait(set, ev, timeout_ms, true);
}

#ifndef FAKE_NVML_NO_V3
EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t d, pci_v2 *p) {
        return pci_new(d, p);
}

EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned *count, void *infos) {
        const char *s = env("AIWM_FAKE_NVML_PROC_STRIDE");
        return processes(d, count, infos, s && strcmp(s, "32") == 0 ? 32 : 24);
}
#endif
#endif
