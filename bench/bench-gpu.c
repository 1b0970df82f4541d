/* bench-gpu: what one GPU sample costs through each backend, in the same run:
 * the NVML backend (dlopen()ed fake libnvidia-ml, tests/helpers/fake-nvml.c)
 * against the nvidia-smi backend (the fake nvidia-smi script,
 * tests/helpers/fake-nvidia-smi, one child per query), both driven through
 * gpu_probe_sample() and a real loop, on the h100 load capture.
 *
 * Both fakes answer from files, so this measures the worker's side (dlopen'd
 * calls, parsing, fork/exec, pipes, reaping) plus the fakes' own cost; a real
 * driver adds ioctl time to NVML and NVML initialisation to every nvidia-smi.
 *
 * Prints `BENCH <figure>\t<ours>\t<baseline>\t<unit>` lines for
 * scripts/bench.sh: NVML (the default) as "ours", nvidia-smi as the baseline.
 *
 * Usage: bench-gpu [nvml_samples [smi_samples]]
 * Environment: AIWM_BENCH_NVML_LIB, AIWM_BENCH_SMI, AIWM_BENCH_FIXTURES override
 * the default paths (next to this binary / in the source tree). */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/loop.h"
#include "core/util.h"
#include "hardware/gpu.h"

typedef struct counter {
        int calls;
        size_t n_devices;
        bool failed;
        char reason[256];
} counter;

static void on_sample(gpu_probe *p, const gpu_list *list, void *userdata) {
        counter *c = userdata;

        c->calls++;
        c->n_devices = list->n_devices;
        if (list->reason || list->n_devices == 0) {
                c->failed = true;
                snprintf(c->reason, sizeof c->reason, "%s", list->reason ? list->reason : "no GPU");
        }
}

static double now_s(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(int who) {
        struct rusage ru;

        getrusage(who, &ru);
        return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
               (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

typedef struct result {
        double wall, cpu_self, cpu_children; /* seconds per sample */
        bool ok;
} result;

/* Runs n samples one after the other (plus one warm-up) and returns the
 * averages. */
static result run(loop *l, gpu_probe *p, int64_t n) {
        counter c = { 0 };
        result res = { 0 };
        double t0, s0, k0;
        int64_t i;

        if (gpu_probe_sample(p, on_sample, &c) < 0)
                return res;
        while (c.calls < 1)
                loop_run_once(l, 100);
        if (c.failed) {
                fprintf(stderr, "bench-gpu: sample failed: %s\n", c.reason);
                return res;
        }
        t0 = now_s();
        s0 = cpu_s(RUSAGE_SELF);
        k0 = cpu_s(RUSAGE_CHILDREN);
        for (i = 0; i < n; i++) {
                int want = c.calls + 1;
                if (gpu_probe_sample(p, on_sample, &c) < 0)
                        return res;
                /* A turn that does not wait first: the NVML answer comes
                 * from a zero-delay timer at the start of the next turn. */
                loop_run_once(l, 0);
                while (c.calls < want)
                        loop_run_once(l, 100);
        }
        res.wall = (now_s() - t0) / (double)n;
        res.cpu_self = (cpu_s(RUSAGE_SELF) - s0) / (double)n;
        res.cpu_children = (cpu_s(RUSAGE_CHILDREN) - k0) / (double)n;
        res.ok = !c.failed;
        return res;
}

/* Returns false when the path does not fit. */
static bool default_path(char *out, size_t size, const char *env, const char *base, const char *rel) {
        const char *e = env ? getenv(env) : NULL;
        int n;

        if (e && *e)
                n = snprintf(out, size, "%s", e);
        else
                n = snprintf(out, size, "%s/%s", base, rel);
        return n >= 0 && (size_t)n < size;
}

int main(int argc, char **argv) {
        char exe[PATH_MAX], exe_dir[PATH_MAX], src[PATH_MAX], lib[PATH_MAX], smi[PATH_MAX];
        char fixtures[PATH_MAX], nvml_fixture[PATH_MAX], smi_dir[PATH_MAX];
        int64_t n_nvml = 2000, n_smi = 20;
        gpu_probe_options o = { 0 };
        gpu_probe *pn = NULL, *ps = NULL;
        result rn, rs;
        loop *l = NULL;
        ssize_t len;

        if ((argc > 1 && util_parse_i64(argv[1], 1, 10000000, &n_nvml) < 0) ||
            (argc > 2 && util_parse_i64(argv[2], 1, 100000, &n_smi) < 0)) {
                fprintf(stderr, "usage: bench-gpu [nvml_samples [smi_samples]]\n");
                return 2;
        }
        len = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (len < 0)
                return 1;
        exe[len] = '\0';
        snprintf(exe_dir, sizeof exe_dir, "%s", dirname(exe));
        /* The source tree: two levels above this file (CMake compiles it
         * by absolute path). */
        snprintf(exe, sizeof exe, "%s", __FILE__);
        snprintf(src, sizeof src, "%s", dirname(dirname(exe)));
        if (!default_path(lib, sizeof lib, "AIWM_BENCH_NVML_LIB", exe_dir, "fake-nvml/libnvidia-ml.so.1") ||
            !default_path(smi, sizeof smi, "AIWM_BENCH_SMI", src, "tests/helpers/fake-nvidia-smi") ||
            !default_path(fixtures, sizeof fixtures, "AIWM_BENCH_FIXTURES", src, "tests/fixtures/nvidia-smi") ||
            !default_path(nvml_fixture, sizeof nvml_fixture, NULL, fixtures, "h100/load/nvml.txt") ||
            !default_path(smi_dir, sizeof smi_dir, NULL, fixtures, "h100/load")) {
                fprintf(stderr, "bench-gpu: path too long\n");
                return 1;
        }
        if (access(lib, R_OK) < 0 || access(smi, X_OK) < 0 || access(nvml_fixture, R_OK) < 0) {
                printf("bench-gpu: skipped (need %s, %s and %s; build with tests on)\n", lib, smi,
                       nvml_fixture);
                return 0;
        }
        setenv("AIWM_FAKE_NVML_FIXTURE", nvml_fixture, 1);
        setenv("AIWM_FAKE_SMI_DIR", smi_dir, 1);

        if (loop_new(&l) < 0)
                return 1;
        o.loop = l;
        o.nvml_path = lib;
        o.smi_path = "";
        if (gpu_probe_new(&o, &pn) < 0 || strcmp(gpu_probe_backend(pn), "nvml") != 0) {
                fprintf(stderr, "bench-gpu: cannot load %s\n", lib);
                return 1;
        }
        o.nvml_path = "";
        o.smi_path = smi;
        if (gpu_probe_new(&o, &ps) < 0)
                return 1;

        printf("bench-gpu: one sample (1 GPU, 3 compute processes: h100 load capture), loop-driven\n");
        rn = run(l, pn, n_nvml);
        rs = run(l, ps, n_smi);
        if (!rn.ok || !rs.ok) {
                fprintf(stderr, "bench-gpu: a backend failed\n");
                return 1;
        }
        printf("  nvml       (fake libnvidia-ml) %6lld samples: %10.1f us wall, %8.1f us cpu\n", (long long)n_nvml,
               rn.wall * 1e6, rn.cpu_self * 1e6);
        printf("  nvidia-smi (fake script)       %6lld samples: %10.1f us wall, %8.1f us cpu in the worker, "
               "%8.1f us in children\n",
               (long long)n_smi, rs.wall * 1e6, rs.cpu_self * 1e6, rs.cpu_children * 1e6);
        printf("    per nvidia-smi process (2 per sample: --query-gpu, --query-compute-apps): %.1f us wall\n",
               rs.wall * 1e6 / 2);
        printf("  ratio nvidia-smi/nvml per sample: %.0fx wall, %.0fx cpu (worker + children)\n",
               rs.wall / rn.wall, (rs.cpu_self + rs.cpu_children) / rn.cpu_self);
        printf("  ratio one nvidia-smi process / one NVML sample: %.0fx wall\n", rs.wall / 2 / rn.wall);
        printf("BENCH GPU sample, wall (NVML vs nvidia-smi, fakes)\t%.1f\t%.1f\tus\n", rn.wall * 1e6,
               rs.wall * 1e6);
        printf("BENCH GPU sample, CPU incl. children (NVML vs nvidia-smi, fakes)\t%.1f\t%.1f\tus\n",
               rn.cpu_self * 1e6, (rs.cpu_self + rs.cpu_children) * 1e6);

        gpu_probe_free(pn);
        gpu_probe_free(ps);
        loop_free(l);
        return 0;
}
