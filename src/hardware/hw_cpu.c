#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"
#include "hardware/hw_cpu.h"
#include "hardware/hw_proc.h"

/* proc/stat is read into a buffer that starts here and doubles while the cpu
 * lines do not fit, up to the cap (4096 CPUs need ~400 KiB). */
#define STAT_BUF_INITIAL 8192
#define STAT_BUF_MAX (1024 * 1024)
/* Only CPU 0's block matters for the model (plus "Hardware", which arm
 * kernels print at the end; on very large machines it may be cut off). */
#define CPUINFO_READ_MAX (64 * 1024)

struct hw_cpu_sampler {
        hw_cpu_times base;  /* start of the current window */
        bool have_base;
        double last;        /* last usage reported */
        char *buf;          /* proc/stat read buffer */
        size_t buf_size;
};

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

/* Parses proc/stat; *ret_complete tells whether the line after the last cpu
 * line was seen (so a truncated read still holds every cpu line). */
static int stat_parse(const char *text, size_t len, hw_cpu_stat *ret, bool *ret_complete) {
        const char *p = text, *end = text + len, *eol;
        hw_cpu_stat st = { 0 };
        bool have_total = false, complete = false;

        while (p < end) {
                size_t n;

                eol = hw_proc_eol(p, end);
                n = (size_t)(eol - p);
                /* "cpuN" needs 4 bytes to classify; a shorter line cut off
                 * by the end of a truncated read proves nothing. */
                if (n < 4 && eol == end)
                        break;
                if (n >= 4 && memcmp(p, "cpu", 3) == 0 && is_digit(p[3])) {
                        st.ncpu++;
                } else if (n >= 4 && memcmp(p, "cpu", 3) == 0 && (p[3] == ' ' || p[3] == '\t') && !have_total) {
                        uint64_t v[8] = { 0 };
                        const char *q = p + 3;
                        int i;

                        for (i = 0; i < 8; i++) {
                                q = hw_proc_skip_blank(q, eol);
                                if (!hw_proc_scan_u64(&q, eol, &v[i]))
                                        break;
                        }
                        if (i < 4)
                                return -EINVAL;
                        st.total = (hw_cpu_times){
                                .user = v[0], .nice = v[1], .system = v[2], .idle = v[3],
                                .iowait = v[4], .irq = v[5], .softirq = v[6], .steal = v[7],
                        };
                        have_total = true;
                } else if (have_total) {
                        complete = true;
                        break;
                }
                p = eol < end ? eol + 1 : end;
        }
        if (!have_total)
                return -EINVAL;
        *ret = st;
        *ret_complete = complete;
        return 0;
}

int hw_cpu_parse_stat(const char *text, size_t len, hw_cpu_stat *ret) {
        bool complete;

        return stat_parse(text, len, ret, &complete);
}

static uint64_t sub0(uint64_t a, uint64_t b) {
        return a > b ? a - b : 0;
}

/* Saturating sums: counters from a fuzzer may be near UINT64_MAX. */
static uint64_t add_sat(uint64_t a, uint64_t b) {
        return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static void split(const hw_cpu_times *t, uint64_t *ret_busy, uint64_t *ret_total) {
        uint64_t idle = add_sat(t->idle, t->iowait);
        uint64_t busy = add_sat(add_sat(add_sat(t->user, t->nice), add_sat(t->system, t->irq)),
                                add_sat(t->softirq, t->steal));

        *ret_busy = busy;
        *ret_total = add_sat(busy, idle);
}

static double pct(uint64_t busy, uint64_t total) {
        double v = (double)busy * 100.0 / (double)total;

        return v > 100.0 ? 100.0 : v;
}

int hw_cpu_usage_between(const hw_cpu_times *prev, const hw_cpu_times *cur, double *ret_pct) {
        hw_cpu_times d = {
                .user = sub0(cur->user, prev->user),
                .nice = sub0(cur->nice, prev->nice),
                .system = sub0(cur->system, prev->system),
                .idle = sub0(cur->idle, prev->idle),
                .iowait = sub0(cur->iowait, prev->iowait),
                .irq = sub0(cur->irq, prev->irq),
                .softirq = sub0(cur->softirq, prev->softirq),
                .steal = sub0(cur->steal, prev->steal),
        };
        uint64_t busy, total;

        split(&d, &busy, &total);
        if (total == 0)
                return -EAGAIN;
        *ret_pct = pct(busy, total);
        return 0;
}

double hw_cpu_usage_since_boot(const hw_cpu_times *t) {
        uint64_t busy, total;

        split(t, &busy, &total);
        return total ? pct(busy, total) : 0.0;
}

hw_cpu_sampler *hw_cpu_sampler_new(void) {
        return calloc(1, sizeof(hw_cpu_sampler));
}

hw_cpu_sampler *hw_cpu_sampler_free(hw_cpu_sampler *s) {
        if (s) {
                free(s->buf);
                free(s);
        }
        return NULL;
}

static unsigned cores_or_sysconf(unsigned ncpu) {
        long n;

        if (ncpu > 0)
                return ncpu;
        n = sysconf(_SC_NPROCESSORS_ONLN);
        return n > 0 && n < (long)UINT32_MAX ? (unsigned)n : 1;
}

int hw_cpu_sampler_feed(hw_cpu_sampler *s, const hw_cpu_stat *st, hw_cpu_sample *ret) {
        hw_cpu_sample out = { .cores = cores_or_sysconf(st->ncpu) };
        uint64_t busy_prev, total_prev, busy_cur, total_cur;
        double usage;

        if (!s->have_base) {
                out.usage = hw_cpu_usage_since_boot(&st->total);
                out.since_boot = true;
                s->base = st->total;
                s->have_base = true;
        } else if (hw_cpu_usage_between(&s->base, &st->total, &usage) < 0) {
                /* No time elapsed since the baseline: repeat the last value. */
                out.usage = s->last;
        } else {
                out.usage = usage;
                split(&s->base, &busy_prev, &total_prev);
                split(&st->total, &busy_cur, &total_cur);
                /* Move the window on only once it is long enough; a counter
                 * that went backwards (total shrank) restarts it too. */
                if (total_cur < total_prev || total_cur - total_prev >= HW_CPU_MIN_WINDOW_TICKS)
                        s->base = st->total;
        }
        s->last = out.usage;
        *ret = out;
        return 0;
}

int hw_cpu_sampler_read_at(hw_cpu_sampler *s, int root_fd, hw_cpu_sample *ret) {
        hw_proc_text t = { 0 };
        hw_cpu_stat st;
        bool complete;
        char *nb;
        int r;

        for (;;) {
                if (!s->buf) {
                        s->buf = malloc(STAT_BUF_INITIAL);
                        if (!s->buf) {
                                r = -ENOMEM;
                                goto out;
                        }
                        s->buf_size = STAT_BUF_INITIAL;
                }
                /* A truncated read is fine as long as every cpu line is in:
                 * the rest of proc/stat (interrupt counters) is not needed. */
                r = hw_proc_read(root_fd, "proc/stat", s->buf, s->buf_size, s->buf_size, &t);
                if (r < 0)
                        goto out;
                r = stat_parse(t.data, t.len, &st, &complete);
                if (r < 0 || complete || !t.truncated)
                        break;
                if (s->buf_size >= STAT_BUF_MAX) {
                        r = -EFBIG;
                        goto out;
                }
                nb = malloc(s->buf_size * 2);
                if (!nb) {
                        r = -ENOMEM;
                        goto out;
                }
                free(s->buf);
                s->buf = nb;
                s->buf_size *= 2;
        }
        if (r >= 0)
                r = hw_cpu_sampler_feed(s, &st, ret);
out:
        return r;
}

int hw_cpu_parse_loadavg(const char *text, size_t len, double ret_load[3]) {
        const char *p = text, *end = text + len;
        double v[3];
        int i;

        for (i = 0; i < 3; i++) {
                p = hw_proc_skip_blank(p, end);
                if (!hw_proc_scan_decimal(&p, end, &v[i]))
                        return -EINVAL;
                if (p < end && *p != ' ' && *p != '\t' && *p != '\n')
                        return -EINVAL;
        }
        memcpy(ret_load, v, sizeof(v));
        return 0;
}

int hw_cpu_loadavg_at(int root_fd, double ret_load[3]) {
        char buf[256];
        hw_proc_text t;
        int r;

        r = hw_proc_read(root_fd, "proc/loadavg", buf, sizeof(buf), sizeof(buf), &t);
        if (r >= 0) {
                r = hw_cpu_parse_loadavg(t.data, t.len, ret_load);
                hw_proc_text_done(&t);
        }
        return r;
}

/* Names as util-linux lscpu prints them (lscpu-arm.c), for the parts found in
 * servers and boards a GPU node is likely to have. */
static const struct arm_vendor {
        unsigned id;
        const char *name;
} arm_vendors[] = {
        { 0x41, "ARM" },    { 0x42, "Broadcom" }, { 0x43, "Cavium" },   { 0x46, "Fujitsu" },
        { 0x48, "HiSilicon" }, { 0x4e, "NVIDIA" }, { 0x50, "APM" },     { 0x51, "Qualcomm" },
        { 0x61, "Apple" },  { 0x6d, "Microsoft" }, { 0xc0, "Ampere" },
};

static const struct arm_part {
        unsigned vendor, part;
        const char *name;
} arm_parts[] = {
        { 0x41, 0xd03, "Cortex-A53" },  { 0x41, 0xd04, "Cortex-A35" },  { 0x41, 0xd05, "Cortex-A55" },
        { 0x41, 0xd07, "Cortex-A57" },  { 0x41, 0xd08, "Cortex-A72" },  { 0x41, 0xd09, "Cortex-A73" },
        { 0x41, 0xd0a, "Cortex-A75" },  { 0x41, 0xd0b, "Cortex-A76" },  { 0x41, 0xd0c, "Neoverse-N1" },
        { 0x41, 0xd0d, "Cortex-A77" },  { 0x41, 0xd40, "Neoverse-V1" }, { 0x41, 0xd41, "Cortex-A78" },
        { 0x41, 0xd42, "Cortex-A78AE" }, { 0x41, 0xd44, "Cortex-X1" },  { 0x41, 0xd46, "Cortex-A510" },
        { 0x41, 0xd47, "Cortex-A710" }, { 0x41, 0xd48, "Cortex-X2" },   { 0x41, 0xd49, "Neoverse-N2" },
        { 0x41, 0xd4a, "Neoverse-E1" }, { 0x41, 0xd4b, "Cortex-A78C" }, { 0x41, 0xd4f, "Neoverse-V2" },
        { 0x41, 0xd80, "Cortex-A520" }, { 0x41, 0xd81, "Cortex-A720" }, { 0x41, 0xd82, "Cortex-X4" },
        { 0x41, 0xd84, "Neoverse-V3" }, { 0x41, 0xd8e, "Neoverse-N3" },
        { 0x43, 0x0af, "ThunderX2-99xx" }, { 0x46, 0x001, "A64FX" },   { 0x48, 0xd01, "TaiShan-v110" },
        { 0x4e, 0x000, "Denver" },      { 0x4e, 0x003, "Denver-2" },    { 0x4e, 0x004, "Carmel" },
        { 0x50, 0x000, "X-Gene" },      { 0xc0, 0xac3, "Ampere-1" },    { 0xc0, 0xac4, "Ampere-1a" },
};

enum {
        K_MODEL_NAME,
        K_PROCESSOR,
        K_CPU_MODEL,
        K_CPU,
        K_UARCH,
        K_HARDWARE,
        K_VENDOR_ID,
        K_IMPLEMENTER,
        K_PART,
        K_COUNT,
};

static const char *const model_keys[K_COUNT] = {
        [K_MODEL_NAME] = "model name", [K_PROCESSOR] = "Processor",     [K_CPU_MODEL] = "cpu model",
        [K_CPU] = "cpu",               [K_UARCH] = "uarch",             [K_HARDWARE] = "Hardware",
        [K_VENDOR_ID] = "vendor_id",   [K_IMPLEMENTER] = "CPU implementer", [K_PART] = "CPU part",
};

static bool parse_hex_value(const char *s, size_t n, unsigned *ret) {
        const char *p = s, *end = s + n;
        uint64_t v;

        if (n > 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
                p += 2;
        if (!hw_proc_scan_hex(&p, end, &v) || p != end || v > 0xffffffu)
                return false;
        *ret = (unsigned)v;
        return true;
}

static const char *trim(const char *s, const char *e, size_t *ret_len) {
        while (s < e && (*s == ' ' || *s == '\t' || *s == '\r'))
                s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
                e--;
        *ret_len = (size_t)(e - s);
        return s;
}

int hw_cpu_parse_model(const char *text, size_t len, char *buf, size_t size) {
        static const int order[] = { K_PROCESSOR, K_CPU_MODEL, K_CPU, K_UARCH, K_HARDWARE, K_VENDOR_ID };
        const char *p = text, *end = text + len, *val[K_COUNT] = { 0 };
        size_t vlen[K_COUNT] = { 0 }, i, klen;
        unsigned impl = 0, part = 0;
        bool have_arm;
        const char *vendor = NULL;
        char tmp[96];

        while (p < end) {
                const char *eol = hw_proc_eol(p, end), *colon = memchr(p, ':', (size_t)(eol - p)), *key;

                if (colon) {
                        key = trim(p, colon, &klen);
                        for (i = 0; i < K_COUNT; i++) {
                                if (!val[i] && strlen(model_keys[i]) == klen &&
                                    memcmp(key, model_keys[i], klen) == 0) {
                                        val[i] = trim(colon + 1, eol, &vlen[i]);
                                        break;
                                }
                        }
                }
                p = eol < end ? eol + 1 : end;
        }

        have_arm = val[K_IMPLEMENTER] && val[K_PART] &&
                   parse_hex_value(val[K_IMPLEMENTER], vlen[K_IMPLEMENTER], &impl) &&
                   parse_hex_value(val[K_PART], vlen[K_PART], &part);
        if (have_arm)
                for (i = 0; i < sizeof(arm_vendors) / sizeof(arm_vendors[0]); i++)
                        if (arm_vendors[i].id == impl)
                                vendor = arm_vendors[i].name;

        if (val[K_MODEL_NAME] && vlen[K_MODEL_NAME] > 0) {
                hw_proc_copy_text(buf, size, val[K_MODEL_NAME], vlen[K_MODEL_NAME]);
                goto out;
        }
        if (have_arm && vendor)
                for (i = 0; i < sizeof(arm_parts) / sizeof(arm_parts[0]); i++)
                        if (arm_parts[i].vendor == impl && arm_parts[i].part == part) {
                                snprintf(tmp, sizeof(tmp), "%s %s", vendor, arm_parts[i].name);
                                hw_proc_copy_text(buf, size, tmp, strlen(tmp));
                                goto out;
                        }
        for (i = 0; i < sizeof(order) / sizeof(order[0]); i++)
                if (val[order[i]] && vlen[order[i]] > 0) {
                        hw_proc_copy_text(buf, size, val[order[i]], vlen[order[i]]);
                        goto out;
                }
        if (have_arm) {
                if (vendor)
                        snprintf(tmp, sizeof(tmp), "%s part 0x%03x", vendor, part);
                else
                        snprintf(tmp, sizeof(tmp), "implementer 0x%02x part 0x%03x", impl, part);
                hw_proc_copy_text(buf, size, tmp, strlen(tmp));
                goto out;
        }
        hw_proc_copy_text(buf, size, "Unknown", 7);
out:
        /* A value of only blanks or control bytes must not leave "". */
        if (buf[0] == '\0')
                hw_proc_copy_text(buf, size, "Unknown", 7);
        return 0;
}

int hw_cpu_info_at(int root_fd, hw_cpu_info *ret) {
        hw_cpu_info info = { .model = "Unknown" };
        hw_cpu_sampler *s = NULL;
        hw_cpu_sample sample;
        hw_proc_text t;
        char *buf = NULL;
        int r;

        buf = malloc(CPUINFO_READ_MAX);
        if (!buf) {
                r = -ENOMEM;
                goto out;
        }
        r = hw_proc_read(root_fd, "proc/cpuinfo", buf, CPUINFO_READ_MAX, CPUINFO_READ_MAX, &t);
        if (r >= 0) {
                hw_cpu_parse_model(t.data, t.len, info.model, sizeof(info.model));
                hw_proc_text_done(&t);
        } else if (r != -ENOENT)
                goto out;

        s = hw_cpu_sampler_new();
        if (!s) {
                r = -ENOMEM;
                goto out;
        }
        r = hw_cpu_sampler_read_at(s, root_fd, &sample);
        if (r < 0)
                goto out;
        info.cores = sample.cores;
        *ret = info;
out:
        hw_cpu_sampler_free(s);
        free(buf);
        return r;
}
