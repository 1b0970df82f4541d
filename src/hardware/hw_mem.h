/* hw_mem: memory figures for node.register (ramTotal), telemetry.heartbeat
 * (ramUsage) and telemetry.metrics (memory.*), from <root>/proc/meminfo.
 *
 * Definitions (MB means MiB, rounded down as `free -m` does):
 *   available = MemAvailable; on kernels without it (< 3.14)
 *               MemFree + Buffers + Cached; never above MemTotal
 *   total     = MemTotal
 *   free      = available (the original worker's definition; `free`'s
 *               "available" column, not its "free" column)
 *   used      = total - free, so used + free == total in MB
 *   cached    = Cached + SReclaimable (`free`'s buff/cache without Buffers)
 *   usage     = round((total - available) / total * 100), computed in kB. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct hw_mem_info {
        uint64_t total_kb, available_kb, cached_kb; /* kB as in meminfo (KiB) */
        uint64_t total_mb, used_mb, free_mb, cached_mb;
        int usage;                 /* percent 0..100 */
        bool estimated_available;  /* MemAvailable was missing */
} hw_mem_info;

/* Parses /proc/meminfo text. Returns 0 or -EINVAL (no MemTotal, or 0). */
int hw_mem_parse(const char *text, size_t len, hw_mem_info *ret);
/* Reads and parses <root_fd>/proc/meminfo. Returns 0 or a negative errno. */
int hw_mem_read_at(int root_fd, hw_mem_info *ret);
