/* gpu: NVIDIA GPU inventory, metrics and health.
 *
 * Two backends fill the same plain structs:
 *   - NVML (gpu_nvml), loaded at run time with dlopen("libnvidia-ml.so.1");
 *   - nvidia-smi (gpu_smi), run as a child process on the loop when NVML
 *     cannot be loaded.
 * The facade (gpu_probe) picks one, samples asynchronously and caches the last
 * result; the JSON builders turn a gpu_list into the PROTOCOL §3.6 shapes.
 *
 * Absent values: a string field is NULL when unknown; a numeric field is only
 * meaningful when its has_* flag is true. "Absent" covers NOT_SUPPORTED,
 * "[N/A]", a missing NVML symbol and the like; JSON builders omit absent
 * fields rather than writing null. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/loop.h"

/* Caps on what a backend may report (peer-controlled sizes). */
#define GPU_MAX_DEVICES 64
#define GPU_MAX_PROCESSES 1024 /* per device */
#define GPU_MAX_ERRORS 8       /* per device */

typedef enum gpu_status {
        GPU_STATUS_IDLE = 0,   /* no utilization and no compute process */
        GPU_STATUS_ACTIVE = 1, /* utilization > 0 or a compute process */
        GPU_STATUS_ERROR = 2,  /* lost, unreadable, or a recent critical XID */
} gpu_status;

typedef struct gpu_process {
        uint32_t pid;
        char *name;              /* NULL when unknown */
        bool has_memory_used;
        int64_t memory_used_mib; /* MiB */
} gpu_process;

typedef struct gpu_device {
        unsigned index;          /* deviceId in the protocol (as a string) */
        char *name;              /* "NVIDIA H100 80GB HBM3" */
        char *uuid;              /* "GPU-…" */
        char *pci_bus_id;        /* 8-digit domain form "00000000:19:00.0" */
        char *driver_version;    /* "590.48.01" */
        char *cuda_version;      /* "13.1" */

        bool has_memory_total, has_memory_used, has_utilization, has_temperature;
        bool has_power_draw, has_power_limit;
        int64_t memory_total_mib; /* MiB */
        int64_t memory_used_mib;  /* MiB */
        int utilization;          /* % 0-100 */
        int temperature;          /* °C */
        double power_draw_w;      /* W */
        double power_limit_w;     /* W */

        /* Compute processes; has_processes is false when the list could not
         * be read (then processes is NULL and n_processes 0). */
        bool has_processes;
        gpu_process *processes;
        size_t n_processes;

        gpu_status status;
        char **errors;           /* reasons for GPU_STATUS_ERROR */
        size_t n_errors;
} gpu_device;

typedef struct gpu_list {
        gpu_device *devices;
        size_t n_devices;
        /* NULL when the sample fully succeeded. Otherwise why the list is
         * empty (no driver, no GPU, backend failure) or incomplete (e.g.
         * process list unavailable); the caller logs it once. */
        char *reason;
} gpu_list;

/* ---- plain-data helpers (shared by the backends) ---- */

/* Allocates an empty list. Returns NULL on allocation failure. */
gpu_list *gpu_list_new(void);
/* Frees a list and everything it owns. Returns NULL. */
gpu_list *gpu_list_free(gpu_list *list);
/* Deep copy. Returns NULL on allocation failure. */
gpu_list *gpu_list_dup(const gpu_list *list);
/* Appends a zeroed device (index set) and returns it, or NULL when the list
 * is full (GPU_MAX_DEVICES) or allocation fails. */
gpu_device *gpu_list_add(gpu_list *list, unsigned index);
/* Returns the device with this UUID, or NULL. */
gpu_device *gpu_list_find_uuid(gpu_list *list, const char *uuid);
/* Sets (replaces) list->reason from a printf format. Returns 0 or -ENOMEM. */
int gpu_list_set_reason(gpu_list *list, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Records a reason on a device and sets its status to GPU_STATUS_ERROR.
 * Duplicates and errors past GPU_MAX_ERRORS are dropped. 0 or -ENOMEM. */
int gpu_device_add_error(gpu_device *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends a process (name copied, may be NULL). 0, -ENOMEM, or -E2BIG past
 * GPU_MAX_PROCESSES. Sets has_processes. */
int gpu_device_add_process(gpu_device *d, uint32_t pid, const char *name, bool has_mem,
                           int64_t mem_mib);
/* Sets status from the data unless it is GPU_STATUS_ERROR: ACTIVE when
 * utilization > 0 or there is a compute process, else IDLE. */
void gpu_device_update_status(gpu_device *d);
const char *gpu_status_to_string(gpu_status s);
/* Copies at most len bytes of s (stopping at a NUL), trimmed of surrounding
 * whitespace, with control bytes and invalid UTF-8 replaced by '?', so the
 * result is always a valid JSON string. Returns NULL on allocation failure. */
char *gpu_strndup_clean(const char *s, size_t len);
/* Writes a PCI bus id ("0000:19:00.0", "00000000:19:00.0", any case) in
 * nvidia-smi's form "00000000:19:00.0" (17 bytes with the NUL). Returns false
 * (out untouched) when in is not a bus id. */
bool gpu_pci_bus_id_normalize(const char *in, char out[static 17]);

/* ---- JSON (PROTOCOL §3.4/§3.6); each returns a new reference or NULL on
 * allocation failure. Absent fields are omitted. Whole-number watts are
 * written as JSON integers; dump with JSON_REAL_PRECISION(15) or less to
 * avoid binary-fraction noise in the others (69.85, not 69.849999999999994). */

/* node.register gpuDevices: [{deviceId, model, memoryTotal, pcieBusId,
 * driverVersion, cudaVersion, uuid}] */
json_t *gpu_json_inventory(const gpu_list *list);
/* telemetry.metrics gpuDevices: full IGpuDevice, including memoryUsed,
 * memoryUsage = round(used / total × 100), utilization, temperature,
 * powerDraw, powerLimit, processes [{pid, processName, memoryUsed}], status,
 * errors []. */
json_t *gpu_json_metrics(const gpu_list *list);
/* telemetry.heartbeat gpuStatus: [{deviceId, utilization, status}] */
json_t *gpu_json_status(const gpu_list *list);

/* ---- the probe ---- */

typedef struct gpu_probe gpu_probe;

typedef struct gpu_probe_options {
        loop *loop;                /* required */
        /* NVML library to dlopen. NULL: "libnvidia-ml.so.1"; "": skip NVML. */
        const char *nvml_path;
        /* nvidia-smi to run when NVML cannot be loaded (PATH is searched when
         * it has no slash). NULL: "nvidia-smi"; "": no fallback. */
        const char *smi_path;
        uint64_t smi_timeout_ms;   /* 0: 5000; the child is killed after it */
        size_t smi_max_output;     /* 0: 256 KiB; cap on each child's stdout */
        /* How long a critical XID keeps a GPU in error after the last one. 0: 300000. */
        uint64_t xid_hold_ms;
        /* Root for the /proc/<pid>/comm fallback of process names. NULL: "/". */
        const char *proc_root;
} gpu_probe_options;

/* Called with the latest result. The list is owned by the probe and stays
 * valid until the next sample completes or the probe is freed; it is never
 * NULL. The probe may be freed from inside the callback. */
typedef void (*gpu_probe_cb)(gpu_probe *p, const gpu_list *list, void *userdata);

/* Creates a probe: tries to load NVML (a failure there only selects the
 * nvidia-smi fallback; the reason is kept, see gpu_probe_reason()). Returns 0
 * and *ret_probe, or a negative errno (-EINVAL without a loop, -ENOMEM). */
int gpu_probe_new(const gpu_probe_options *opts, gpu_probe **ret_probe);
/* Kills a running nvidia-smi, drops pending callbacks without calling them.
 * Accepts NULL. Returns NULL. */
gpu_probe *gpu_probe_free(gpu_probe *p);
/* Starts a sample; cb fires exactly once on a later loop turn (NVML: the next
 * turn; nvidia-smi: when the children finish or time out). While a sample is
 * running, further requests join it. Returns 0, or -ENOMEM (cb not called). */
int gpu_probe_sample(gpu_probe *p, gpu_probe_cb cb, void *userdata);
/* The last completed result, or NULL before the first one. */
const gpu_list *gpu_probe_last(const gpu_probe *p);
/* "nvml", "nvidia-smi" or "none". */
const char *gpu_probe_backend(const gpu_probe *p);
/* Why the backend is not NVML / why the last sample failed, or NULL. */
const char *gpu_probe_reason(const gpu_probe *p);
/* Features disabled (missing NVML symbols; XID events unsupported, known
 * after the first successful nvmlInit), one per line, or NULL. Log it when
 * it changes. */
const char *gpu_probe_notes(const gpu_probe *p);
