/* hw_cpu: CPU model and core count (node.register), CPU usage and load
 * averages (telemetry.heartbeat / telemetry.metrics).
 *
 * Usage is measured between two readings of <root>/proc/stat, never as the
 * since-boot average the original worker reported (PROTOCOL.md §7): a
 * hw_cpu_sampler keeps the previous reading. Policy:
 *   - busy = total - (idle + iowait), total = user + nice + system + idle +
 *     iowait + irq + softirq + steal (guest/guest_nice are already counted in
 *     user/nice); deltas are taken per field and clamp at 0 (iowait may step
 *     back on NO_HZ kernels);
 *   - the very first reading of a sampler has no window: it reports the
 *     since-boot average and sets since_boot. Callers prime a sampler once
 *     at startup (hw_cpu_sampler_read_at and ignore the result) so that every
 *     telemetry tick measures the interval since the previous tick. Give each
 *     periodic consumer (heartbeat, metrics) its own sampler so its window is
 *     its own interval;
 *   - the window only moves forward once it holds at least
 *     HW_CPU_MIN_WINDOW_TICKS of CPU time summed over all CPUs; a reading
 *     closer than that to the previous one is measured against the older
 *     baseline (a longer, less noisy window), and a reading with no elapsed
 *     time at all repeats the last value. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 100 ticks = 1 CPU-second at USER_HZ 100. */
#define HW_CPU_MIN_WINDOW_TICKS 100

/* Aggregate "cpu " line of /proc/stat, USER_HZ ticks. */
typedef struct hw_cpu_times {
        uint64_t user, nice, system, idle, iowait, irq, softirq, steal;
} hw_cpu_times;

typedef struct hw_cpu_stat {
        hw_cpu_times total;
        unsigned ncpu; /* number of "cpuN" lines (online CPUs) */
} hw_cpu_stat;

/* Parses /proc/stat: the "cpu " line (at least user nice system idle;
 * missing later fields count 0) and the cpuN lines that follow. Stops at the
 * first line that is not a cpu line. Returns 0 or -EINVAL (no "cpu " line). */
int hw_cpu_parse_stat(const char *text, size_t len, hw_cpu_stat *ret);

/* Busy share in percent (0..100) between two readings. Returns 0, or
 * -EAGAIN when no time elapsed between them (total delta 0). */
int hw_cpu_usage_between(const hw_cpu_times *prev, const hw_cpu_times *cur, double *ret_pct);
/* Busy share since boot (the original worker's figure), 0 when total is 0. */
double hw_cpu_usage_since_boot(const hw_cpu_times *t);

typedef struct hw_cpu_sample {
        double usage;    /* percent 0..100 */
        unsigned cores;  /* online CPUs (cpuN lines; sysconf when none) */
        bool since_boot; /* first reading: usage is the since-boot average */
} hw_cpu_sample;

typedef struct hw_cpu_sampler hw_cpu_sampler;

/* NULL on allocation failure. */
hw_cpu_sampler *hw_cpu_sampler_new(void);
hw_cpu_sampler *hw_cpu_sampler_free(hw_cpu_sampler *s);
/* Feeds one parsed reading (pure; no I/O). Always succeeds: returns 0. */
int hw_cpu_sampler_feed(hw_cpu_sampler *s, const hw_cpu_stat *st, hw_cpu_sample *ret);
/* Reads <root_fd>/proc/stat and feeds it. Returns 0 or a negative errno; on
 * error the sampler is unchanged. */
int hw_cpu_sampler_read_at(hw_cpu_sampler *s, int root_fd, hw_cpu_sample *ret);

/* Parses /proc/loadavg ("0.82 0.23 0.08 1/88 4661") into 1/5/15-minute
 * load averages. Returns 0 or -EINVAL. */
int hw_cpu_parse_loadavg(const char *text, size_t len, double ret_load[3]);
int hw_cpu_loadavg_at(int root_fd, double ret_load[3]);

/* Extracts the model of CPU 0 from /proc/cpuinfo into buf (size >= 8):
 * "model name"; else, for Arm, "<implementer> <part>" from a table of known
 * "CPU implementer"/"CPU part" values (e.g. "ARM Neoverse-V2"); else
 * "Hardware", "cpu model" (MIPS), "cpu" (POWER), "uarch" (RISC-V), "Processor"
 * (old ARM); else the raw Arm ids ("ARM part 0xd99"); else "Unknown".
 * Always writes buf; returns 0. */
int hw_cpu_parse_model(const char *text, size_t len, char *buf, size_t size);

typedef struct hw_cpu_info {
        char model[128];
        unsigned cores; /* cpuN lines of proc/stat; sysconf(_SC_NPROCESSORS_ONLN) when none */
} hw_cpu_info;

/* Inventory for node.register from <root_fd>/proc/cpuinfo and proc/stat.
 * A missing cpuinfo gives "Unknown"; returns 0 or a negative errno. */
int hw_cpu_info_at(int root_fd, hw_cpu_info *ret);
