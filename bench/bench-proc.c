/* bench-proc: CPU time of one telemetry.metrics "tick" of the /proc probes
 * (CPU sample of proc/stat, meminfo, loadavg, net/dev, statvfs of /) against
 * a baseline in the same run that only opens, reads to EOF and closes the
 * same four files and calls statvfs("/") without parsing anything: the floor
 * any implementation pays to the kernel. Also the parsers alone, on buffers
 * read once.
 *
 * The two loops alternate in rounds so that frequency changes and noisy
 * neighbours hit both alike. CPU time is CLOCK_PROCESS_CPUTIME_ID.
 *
 * Usage: bench-proc [iterations] (default 20000). Exits 1 if a probe fails.
 * Prints `BENCH <figure>\t<ours>\t<baseline>\t<unit>` lines for
 * scripts/bench.sh (the tick against the bare loop; the parsers alone have no
 * baseline). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "hardware/hw_cpu.h"
#include "hardware/hw_disk.h"
#include "hardware/hw_mem.h"
#include "hardware/hw_net.h"
#include "hardware/hw_proc.h"

#define ROUNDS 10

static const char *const files[] = { "/proc/stat", "/proc/meminfo", "/proc/loadavg", "/proc/net/dev" };
static char sink[65536];
static volatile size_t sink_total;

static double cpu_us(void) {
        struct timespec ts;

        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* The floor: what reading the same data costs with no parsing at all. */
static int baseline_tick(void) {
        struct statvfs sv;
        size_t i, total = 0;
        ssize_t n;
        int fd;

        for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
                fd = open(files[i], O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        return -errno;
                while ((n = read(fd, sink, sizeof(sink))) > 0)
                        total += (size_t)n;
                close(fd);
        }
        if (statvfs("/", &sv) < 0)
                return -errno;
        sink_total += total + sv.f_blocks;
        return 0;
}

static int probe_tick(int root_fd, hw_cpu_sampler *s) {
        hw_cpu_sample cs;
        hw_mem_info m;
        hw_net_counters nc;
        hw_disk_info d;
        double load[3];
        int r;

        if ((r = hw_cpu_sampler_read_at(s, root_fd, &cs)) < 0 || (r = hw_mem_read_at(root_fd, &m)) < 0 ||
            (r = hw_cpu_loadavg_at(root_fd, load)) < 0 || (r = hw_net_read_at(root_fd, &nc)) < 0 ||
            (r = hw_disk_read("/", &d)) < 0)
                return r;
        sink_total += m.total_mb + nc.rx_bytes + d.total_mb + cs.cores + (size_t)load[0];
        return 0;
}

int main(int argc, char **argv) {
        long iters = 20000, per_round, i, k;
        double t0, base = 0, probe = 0, parse = 0;
        hw_cpu_sampler *s = NULL;
        hw_proc_text text[4];
        char bufs[4][16384];
        int root_fd = -1, rc = 1, r = 0;

        if (argc > 1) {
                char *end;
                errno = 0;
                iters = strtol(argv[1], &end, 10);
                if (errno || *end || iters < ROUNDS) {
                        fprintf(stderr, "usage: bench-proc [iterations >= %d]\n", ROUNDS);
                        return 2;
                }
        }
        per_round = iters / ROUNDS;
        iters = per_round * ROUNDS;
        if ((r = hw_proc_root_open("/", &root_fd)) < 0 || !(s = hw_cpu_sampler_new())) {
                fprintf(stderr, "bench-proc: setup failed: %s\n", strerror(r ? -r : ENOMEM));
                goto out;
        }
        /* Warm up both paths (page cache, dentries, the sampler's buffer). */
        for (i = 0; i < 200; i++)
                if ((r = baseline_tick()) < 0 || (r = probe_tick(root_fd, s)) < 0)
                        goto fail;

        for (k = 0; k < ROUNDS; k++) {
                t0 = cpu_us();
                for (i = 0; i < per_round; i++)
                        if ((r = baseline_tick()) < 0)
                                goto fail;
                base += cpu_us() - t0;
                t0 = cpu_us();
                for (i = 0; i < per_round; i++)
                        if ((r = probe_tick(root_fd, s)) < 0)
                                goto fail;
                probe += cpu_us() - t0;
        }

        /* Parsers alone, on the files as read once. */
        for (i = 0; i < 4; i++)
                if ((r = hw_proc_read(root_fd, files[i] + 1, bufs[i], sizeof(bufs[i]), sizeof(bufs[i]), &text[i])) < 0)
                        goto fail;
        t0 = cpu_us();
        for (i = 0; i < iters; i++) {
                hw_cpu_stat st;
                hw_mem_info m;
                double load[3];
                hw_net_counters nc;
                hw_disk_info d;

                r = hw_cpu_parse_stat(text[0].data, text[0].len, &st) | hw_mem_parse(text[1].data, text[1].len, &m) |
                    hw_cpu_parse_loadavg(text[2].data, text[2].len, load) |
                    hw_net_parse_dev(text[3].data, text[3].len, &nc);
                hw_disk_compute(4096, 1000000 + (uint64_t)i, 5000, 4000, &d);
                if (r)
                        goto fail;
                sink_total += st.ncpu + m.total_mb + nc.rx_bytes + d.used_mb;
        }
        parse = cpu_us() - t0;
        for (i = 0; i < 4; i++)
                hw_proc_text_done(&text[i]);

        printf("bench-proc: one metrics tick (proc/stat sample, meminfo, loadavg, net/dev, statvfs /), %ld iterations\n",
               iters);
        printf("  baseline: open/read-to-EOF/close x4 + statvfs, no parsing: %8.2f us cpu\n", base / (double)iters);
        printf("  probes:   hw_cpu/hw_mem/loadavg/hw_net/hw_disk             : %8.2f us cpu\n", probe / (double)iters);
        printf("  parsers alone (same data, no I/O)                         : %8.3f us cpu\n", parse / (double)iters);
        printf("  ratio probes/baseline: %.3f (target <= 2)\n", probe / base);
        printf("BENCH metrics tick without GPUs, CPU (vs bare /proc read loop)\t%.2f\t%.2f\tus\n",
               probe / (double)iters, base / (double)iters);
        printf("BENCH /proc parsers alone, CPU per tick (no I/O)\t%.3f\t-\tus\n", parse / (double)iters);
        rc = 0;
        goto out;
fail:
        fprintf(stderr, "bench-proc: probe failed: %s\n", strerror(-r));
out:
        hw_cpu_sampler_free(s);
        if (root_fd >= 0)
                close(root_fd);
        return rc;
}
