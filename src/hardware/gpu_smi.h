/* gpu_smi: the nvidia-smi backend of gpu, used when NVML cannot be loaded.
 *
 * One sample runs, one after the other, as children on the loop (posix_spawn,
 * stdout and stderr through non-blocking pipes, exit through
 * loop_child_watch, each killed with its process group after the timeout,
 * stdout capped):
 *   nvidia-smi --query-gpu=GPU_SMI_QUERY_FIELDS --format=csv,noheader,nounits
 *   nvidia-smi --query-compute-apps=GPU_SMI_APPS_FIELDS --format=csv,noheader,nounits
 *   nvidia-smi            (banner, for "CUDA Version: 12.4"; until it is known)
 * Every field name was checked against the --help-query-gpu and
 * --help-query-compute-apps sections of the real captures; `cuda_version` is
 * not a valid field (PROTOCOL §7).
 *
 * The parsers are pure and take outside input: values such as "[N/A]",
 * "[Not Supported]" or "N/A" become absent; "[GPU is lost]" and
 * "[Unknown Error]" put the device in error. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "core/loop.h"
#include "hardware/gpu.h"

#define GPU_SMI_QUERY_FIELDS                                                                   \
        "index,name,uuid,memory.total,memory.used,pci.bus_id,driver_version,utilization.gpu," \
        "temperature.gpu,power.draw,power.limit"
#define GPU_SMI_APPS_FIELDS "gpu_uuid,pid,process_name,used_memory"

/* Parses the --query-gpu output above (one device per line; units after
 * numbers are tolerated). Returns 0 and *ret_list (possibly empty), or
 * -EBADMSG when a line is not such a row (nvidia-smi printed an error
 * message instead: its first line goes to err), -E2BIG past GPU_MAX_DEVICES,
 * -ENOMEM. */
int gpu_smi_parse_query(const char *text, size_t len, char *err, size_t err_size,
                        gpu_list **ret_list);
/* Parses the --query-compute-apps output above and attaches each process to
 * the device of list with that UUID (rows for unknown UUIDs are dropped);
 * every device of list gets has_processes = true and its status updated.
 * list is left unchanged on -EBADMSG (rows are checked before any is
 * attached). Returns 0, -EBADMSG, -ENOMEM. */
int gpu_smi_parse_apps(const char *text, size_t len, char *err, size_t err_size, gpu_list *list);
/* Finds the CUDA version in plain nvidia-smi output ("CUDA Version: 12.4",
 * newer drivers: "CUDA UMD Version: 13.3") or in nvidia-smi -q
 * ("CUDA Version : 13.3 [Deprecated; …]"). Returns 0 and *ret_version (heap
 * string, digits and dots only), -ENOENT when absent, -ENOMEM. */
int gpu_smi_parse_banner_cuda(const char *text, size_t len, char **ret_version);

typedef struct gpu_smi gpu_smi;

/* Called once per gpu_smi_sample(), on a later loop turn. list is handed
 * over to the callee (free with gpu_list_free()) and is never NULL; r is 0,
 * or a negative errno when the device query failed (list empty with
 * list->reason): -ENOENT nvidia-smi not found, -ETIMEDOUT killed after the
 * timeout, -EIO non-zero exit, -EBADMSG unparsable output, -E2BIG output cap. */
typedef void (*gpu_smi_cb)(gpu_smi *s, int r, gpu_list *list, void *userdata);

/* path NULL: "nvidia-smi" (PATH search); timeout_ms 0: 5000; max_output 0:
 * 256 KiB. Returns 0 and *ret_smi, or -ENOMEM. */
int gpu_smi_new(loop *l, const char *path, uint64_t timeout_ms, size_t max_output,
                gpu_smi **ret_smi);
/* Kills and reaps a running child; the pending callback is not called.
 * Accepts NULL. Returns NULL. Not from inside the callback's own sample
 * (the callback runs after the sample ended, so freeing there is fine). */
gpu_smi *gpu_smi_free(gpu_smi *s);
/* Starts a sample. Returns 0, -EBUSY while one is running, -ENOMEM. */
int gpu_smi_sample(gpu_smi *s, gpu_smi_cb cb, void *userdata);
