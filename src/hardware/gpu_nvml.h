/* gpu_nvml: the NVML backend of gpu. libnvidia-ml is dlopen()ed once and
 * resolved into a table of function pointers; versioned entry points are
 * looked up newest first (_v3, _v2, plain). A missing optional symbol disables
 * its field (noted in gpu_nvml_notes()); only nvmlInit, nvmlShutdown,
 * nvmlDeviceGetCount and nvmlDeviceGetHandleByIndex are required.
 *
 * Queries are synchronous (NVML answers from the driver in microseconds).
 * nvmlInit failing is not fatal: each query retries it, and returns an empty
 * list with the reason until it succeeds. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "hardware/gpu.h"

typedef struct gpu_nvml gpu_nvml;

/* Loads the library at path (NULL: "libnvidia-ml.so.1") and resolves its
 * symbols, then tries nvmlInit. proc_root (NULL: "/") is used for the
 * /proc/<pid>/comm fallback of process names. Returns 0 and *ret_nvml, or
 * -ENOENT (library not loadable), -ENOSYS (a required symbol missing),
 * -ENOMEM; the reason is written to err (err_size bytes, may be 0). */
int gpu_nvml_open(const char *path, const char *proc_root, char *err, size_t err_size,
                  gpu_nvml **ret_nvml);
/* Shuts NVML down (when initialised) and unloads it. Accepts NULL. Returns NULL. */
gpu_nvml *gpu_nvml_close(gpu_nvml *n);

/* Reads every device. now_ms is a monotonic time used for the XID hold:
 * a device stays in error for xid_hold_ms after its last critical XID event
 * (events are polled with timeout 0). Returns 0 and *ret_list (never NULL;
 * on NVML failure it is empty with list->reason set), or -ENOMEM. */
int gpu_nvml_query(gpu_nvml *n, uint64_t now_ms, uint64_t xid_hold_ms, gpu_list **ret_list);

/* Disabled features (missing symbols, XID events not supported), one per
 * line, or NULL. */
const char *gpu_nvml_notes(const gpu_nvml *n);
