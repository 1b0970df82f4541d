/* Unit tests of the /proc probes: hw_os, hw_cpu, hw_mem, hw_disk, hw_net,
 * hw_json (src/hardware/hw_*.c). Parsers are checked table by table against
 * fixture trees (tests/fixtures/proc/<case>/) with exact expected numbers;
 * the live tests compare this machine's readings with independent tools
 * (free, df, uname, sh). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <math.h>
#include <net/if.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/util.h"
#include "hardware/hw_cpu.h"
#include "hardware/hw_disk.h"
#include "hardware/hw_json.h"
#include "hardware/hw_mem.h"
#include "hardware/hw_net.h"
#include "hardware/hw_os.h"
#include "hardware/hw_proc.h"

#define FIX AIWM_FIXTURES "/proc/"
#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* Reads tests/fixtures/proc/<c>/<rel> (NUL-terminated, caller frees). */
static char *fixture(const char *c, const char *rel, size_t *ret_len) {
        char path[512];
        char *data = NULL;

        snprintf(path, sizeof(path), FIX "%s/%s", c, rel);
        assert_int_equal(util_read_file(path, 1 << 20, &data, ret_len), 0);
        return data;
}

static int root_fd(const char *c) {
        char path[512];
        int fd = -1;

        snprintf(path, sizeof(path), FIX "%s", c);
        assert_int_equal(hw_proc_root_open(path, &fd), 0);
        return fd;
}

/* Runs a shell command and returns its first line, or NULL if it failed. */
static char *run_line(const char *cmd, char *out, size_t size) {
        FILE *f = popen(cmd, "r");
        char *r = NULL;

        if (!f)
                return NULL;
        if (fgets(out, (int)size, f)) {
                out[strcspn(out, "\n")] = '\0';
                r = out;
        }
        if (pclose(f) != 0)
                r = NULL;
        return r;
}

/* ---- hw_proc ------------------------------------------------------------ */

static void test_proc_scanners(void **state) {
        static const struct {
                const char *in;
                bool ok;
                double want;
                size_t used;
        } dec[] = {
                { "0.82", true, 0.82, 4 },  { "12", true, 12, 2 },     { ".5 ", true, 0.5, 2 },
                { "7.", true, 7, 2 },       { "", false, 0, 0 },       { ".", false, 0, 0 },
                { "-1", false, 0, 0 },      { "1e5", true, 1, 1 },     { "99999999999999999999", false, 0, 0 },
        };
        const char *p;
        uint64_t v;
        double d;
        size_t i;
        char out[16];

        for (i = 0; i < N_ELEMS(dec); i++) {
                p = dec[i].in;
                d = -1;
                assert_int_equal(hw_proc_scan_decimal(&p, p + strlen(p), &d), dec[i].ok);
                if (dec[i].ok) {
                        assert_true(fabs(d - dec[i].want) < 1e-12);
                        assert_int_equal(p - dec[i].in, dec[i].used);
                } else {
                        assert_ptr_equal(p, dec[i].in);
                }
        }
        p = "18446744073709551615x";
        assert_true(hw_proc_scan_u64(&p, p + strlen(p), &v));
        assert_true(v == UINT64_MAX);
        assert_int_equal(*p, 'x');
        p = "18446744073709551616";
        assert_false(hw_proc_scan_u64(&p, p + strlen(p), &v));
        p = "00000000FFFFFFFF";
        assert_true(hw_proc_scan_hex(&p, p + strlen(p), &v));
        assert_true(v == 0xffffffffu);
        p = "12345678901234567";
        assert_false(hw_proc_scan_hex(&p, p + strlen(p), &v));

        /* Trimming, UTF-8 repair and truncation on a character boundary. */
        hw_proc_copy_text(out, sizeof(out), "  ab\tc  ", 8);
        assert_string_equal(out, "ab c");
        hw_proc_copy_text(out, sizeof(out), "a\xff\xc3\xa9", 4);
        assert_string_equal(out, "a?\xc3\xa9");
        hw_proc_copy_text(out, 4, "ab\xc3\xa9", 4);
        assert_string_equal(out, "ab");
        hw_proc_copy_text(out, sizeof(out), "\xed\xa0\x80", 3); /* surrogate */
        assert_string_equal(out, "???");
}

static void test_proc_read_spill(void **state) {
        char small[16];
        hw_proc_text t;
        int fd = root_fd("many-if");
        size_t len;
        char *want = fixture("many-if", "proc/net/dev", &len);

        /* Spills to the heap and keeps reading. */
        assert_int_equal(hw_proc_read(fd, "proc/net/dev", small, sizeof(small), 1 << 20, &t), 0);
        assert_non_null(t.heap);
        assert_false(t.truncated);
        assert_int_equal(t.len, len);
        assert_memory_equal(t.data, want, len);
        hw_proc_text_done(&t);
        /* Truncates when not allowed to grow. */
        assert_int_equal(hw_proc_read(fd, "proc/net/dev", small, sizeof(small), sizeof(small), &t), 0);
        assert_null(t.heap);
        assert_true(t.truncated);
        assert_int_equal(t.len, sizeof(small) - 1);
        assert_memory_equal(t.data, want, sizeof(small) - 1);
        /* Refuses past max. */
        assert_int_equal(hw_proc_read(fd, "proc/net/dev", small, sizeof(small), 64, &t), -EFBIG);
        assert_int_equal(hw_proc_read(fd, "proc/nope", small, sizeof(small), 64, &t), -ENOENT);
        free(want);
        close(fd);
}

/* ---- hw_os --------------------------------------------------------------- */

static void test_os_release_table(void **state) {
        static const struct {
                const char *in;
                const char *name, *version, *version_id;
        } t[] = {
                { "NAME=Fedora\nVERSION=\"39 (Server Edition)\"\nVERSION_ID=39\n", "Fedora",
                  "39 (Server Edition)", "39" },
                { "NAME='Single \"quoted\" $x'\n", "Single \"quoted\" $x", "", "" },
                { "NAME=\"esc \\\"q\\\" \\\\ \\$HOME \\`cmd\\` \\n\"\n", "esc \"q\" \\ $HOME `cmd` \\n", "", "" },
                { "NAME=un\\ quoted\\\"\n", "un quoted\"", "", "" },
                { "# comment\n\n   \nNAME=A\n#NAME=B\nNAME=C", "C", "", "" }, /* last wins, no final \n */
                { "  NAME = \"spaced\"  \r\nVERSION=\"1\"\r\n", "spaced", "1", "" },
                { "NAME=\"a\"'b'c\n", "abc", "", "" },                 /* concatenation */
                { "NAME=\"multi\\\nline\"\n", "multiline", "", "" },   /* continuation */
                { "NAME=\"two\nlines\"\n", "two lines", "", "" },     /* newline kept, shown as space */
                { "NAME=ok\nVERSION=\"unterminated\nVERSION_ID=1\n", "ok", "", "" },
                { "NAME=ok\nVERSION='unterminated\n", "ok", "", "" },
                { "NAME=x # trailing comment\n", "x", "", "" },
                { "NAME=#notvalue\n", "", "", "" },
                { "garbage line\nNAME\n=value\nNAME=real\n", "real", "", "" },
                { "NAMEX=no\nXNAME=no\n", "", "", "" },
                { "NAME=\"caf\xc3\xa9 \xff\"\n", "caf\xc3\xa9 ?", "", "" },
                { "", "", "", "" },
        };
        hw_os_release rel;
        size_t i;

        for (i = 0; i < N_ELEMS(t); i++) {
                memset(&rel, 'X', sizeof(rel));
                assert_int_equal(hw_os_parse_os_release(t[i].in, strlen(t[i].in), &rel), 0);
                if (strcmp(rel.name, t[i].name) || strcmp(rel.version, t[i].version) ||
                    strcmp(rel.version_id, t[i].version_id))
                        fail_msg("case %zu: got [%s] [%s] [%s]", i, rel.name, rel.version, rel.version_id);
        }
}

static void test_os_fixtures(void **state) {
        static const struct {
                const char *c;
                const char *distro, *version;
                uint64_t uptime; /* UINT64_MAX: live CLOCK_BOOTTIME fallback */
        } t[] = {
                { "debian12-x64", "Debian GNU/Linux", "12 (bookworm)", 5228 },
                { "ubuntu2204-arm64", "Ubuntu", "22.04.4 LTS (Jammy Jellyfish)", 93784 },
                { "alpine-usrlib", "Alpine Linux", "3.19.1", UINT64_MAX },
                { "stat-a", "Linux", "unknown", UINT64_MAX }, /* no os-release at all */
        };
        struct utsname u;
        hw_os_info os;
        size_t i;

        assert_int_equal(uname(&u), 0);
        for (i = 0; i < N_ELEMS(t); i++) {
                char path[512];
                snprintf(path, sizeof(path), FIX "%s", t[i].c);
                assert_int_equal(hw_os_read(path, &os), 0);
                assert_string_equal(os.platform, "linux");
                assert_string_equal(os.distro, t[i].distro);
                assert_string_equal(os.version, t[i].version);
                assert_string_equal(os.kernel, u.release);
                assert_string_equal(os.hostname, u.nodename);
                assert_string_equal(os.arch, hw_os_arch(u.machine));
                if (t[i].uptime != UINT64_MAX) {
                        assert_int_equal(os.uptime_s, t[i].uptime);
                } else {
                        struct timespec ts;
                        clock_gettime(CLOCK_BOOTTIME, &ts);
                        assert_true(os.uptime_s <= (uint64_t)ts.tv_sec && os.uptime_s + 2 >= (uint64_t)ts.tv_sec);
                }
        }
        assert_int_equal(hw_os_read(FIX "does-not-exist", &os), -ENOENT);
}

static void test_os_arch(void **state) {
        static const char *const t[][2] = {
                { "x86_64", "x64" },   { "aarch64", "arm64" }, { "i686", "ia32" },     { "i386", "ia32" },
                { "armv7l", "arm" },   { "armv6l", "arm" },    { "ppc64le", "ppc64" }, { "s390x", "s390x" },
                { "riscv64", "riscv64" }, { "loongarch64", "loong64" }, { "sparc64", "sparc64" },
        };
        size_t i;

        for (i = 0; i < N_ELEMS(t); i++)
                assert_string_equal(hw_os_arch(t[i][0]), t[i][1]);
}

static void test_os_uptime_parse(void **state) {
        static const struct {
                const char *in;
                int r;
                uint64_t want;
        } t[] = {
                { "773.44 1480.33\n", 0, 773 }, { "0.00 0.00\n", 0, 0 }, { "86400.99 1.0", 0, 86400 },
                { "5", 0, 5 },                  { "", -EINVAL, 0 },       { "abc 1\n", -EINVAL, 0 },
                { "12.x 3\n", -EINVAL, 0 },     { "12. 3\n", -EINVAL, 0 }, { "-5.00 1\n", -EINVAL, 0 },
        };
        uint64_t v;
        size_t i;

        for (i = 0; i < N_ELEMS(t); i++) {
                v = 12345;
                assert_int_equal(hw_os_parse_uptime(t[i].in, strlen(t[i].in), &v), t[i].r);
                assert_int_equal(v, t[i].r == 0 ? t[i].want : 12345);
        }
}

/* ---- hw_cpu -------------------------------------------------------------- */

static void test_cpu_stat_parse(void **state) {
        static const struct {
                const char *c;
                hw_cpu_times want;
                unsigned ncpu;
        } t[] = {
                { "debian12-x64", { 107372, 0, 54805, 874786, 4007, 0, 2123, 0 }, 2 },
                { "ubuntu2204-arm64", { 4705, 356, 584, 3699176, 23060, 0, 277, 0 }, 4 },
                { "stat-b", { 107672, 0, 54905, 875336, 4057, 0, 2123, 0 }, 2 },
                { "stat-256cpu", { 140109472, 125053, 14415179, 1350958036, 1161586, 0, 124860, 0 }, 256 },
        };
        static const struct {
                const char *in;
                int r;
                unsigned ncpu;
                uint64_t idle;
        } inl[] = {
                { "cpu  1 2 3 4\ncpu0 1 2 3 4\n", 0, 1, 4 },       /* 2.4-era: four fields */
                { "cpu  1 2 3\n", -EINVAL, 0, 0 },
                { "intr 1 2\n", -EINVAL, 0, 0 },
                { "", -EINVAL, 0, 0 },
                { "cpu\t5 6 7 8 9 10 11 12 13 14\ncpu0 x\ncpu1 y\nintr 5\ncpu2 1\n", 0, 2, 8 },
        };
        hw_cpu_stat st;
        size_t i, len;
        char *text;

        for (i = 0; i < N_ELEMS(t); i++) {
                text = fixture(t[i].c, "proc/stat", &len);
                assert_int_equal(hw_cpu_parse_stat(text, len, &st), 0);
                assert_memory_equal(&st.total, &t[i].want, sizeof(hw_cpu_times));
                assert_int_equal(st.ncpu, t[i].ncpu);
                free(text);
        }
        for (i = 0; i < N_ELEMS(inl); i++) {
                memset(&st, 0, sizeof(st));
                assert_int_equal(hw_cpu_parse_stat(inl[i].in, strlen(inl[i].in), &st), inl[i].r);
                if (inl[i].r == 0) {
                        assert_int_equal(st.ncpu, inl[i].ncpu);
                        assert_int_equal(st.total.idle, inl[i].idle);
                }
        }
}

static void test_cpu_usage_fixtures(void **state) {
        hw_cpu_sampler *s = hw_cpu_sampler_new();
        hw_cpu_sample a, b, c;
        int fa = root_fd("stat-a"), fb = root_fd("stat-b");

        assert_non_null(s);
        /* First reading: since boot, 164300 busy of 1043093 ticks. */
        assert_int_equal(hw_cpu_sampler_read_at(s, fa, &a), 0);
        assert_true(a.since_boot);
        assert_int_equal(a.cores, 2);
        assert_true(fabs(a.usage - 164300.0 * 100 / 1043093.0) < 1e-9);
        /* stat-b: user +300, system +100, idle +550, iowait +50 = 400 busy of 1000. */
        assert_int_equal(hw_cpu_sampler_read_at(s, fb, &b), 0);
        assert_false(b.since_boot);
        assert_true(fabs(b.usage - 40.0) < 1e-12);
        /* No time elapsed: the last value again. */
        assert_int_equal(hw_cpu_sampler_read_at(s, fb, &c), 0);
        assert_true(fabs(c.usage - 40.0) < 1e-12);
        /* Missing file: error, sampler untouched. */
        close(fa);
        fa = root_fd("many-if");
        assert_int_equal(hw_cpu_sampler_read_at(s, fa, &c), -ENOENT);
        assert_int_equal(hw_cpu_sampler_read_at(s, fb, &c), 0);
        assert_true(fabs(c.usage - 40.0) < 1e-12);
        close(fa);
        close(fb);
        s = hw_cpu_sampler_free(s);
        assert_null(s);
        assert_null(hw_cpu_sampler_free(NULL));
}

static void test_cpu_sampler_window(void **state) {
        hw_cpu_sampler *s = hw_cpu_sampler_new();
        hw_cpu_stat st = { .total = { .user = 1000, .idle = 9000 }, .ncpu = 0 };
        hw_cpu_sample r;
        double pct;

        assert_int_equal(hw_cpu_sampler_feed(s, &st, &r), 0);
        assert_true(r.since_boot);
        assert_true(fabs(r.usage - 10.0) < 1e-12);
        assert_true(r.cores >= 1); /* no cpuN lines: sysconf */
        /* 10 ticks later (< HW_CPU_MIN_WINDOW_TICKS): 5 busy -> 50%, base kept. */
        st.total.user += 5;
        st.total.idle += 5;
        hw_cpu_sampler_feed(s, &st, &r);
        assert_true(fabs(r.usage - 50.0) < 1e-12);
        /* 100 more ticks, all idle: measured from the old base: 5 of 110. */
        st.total.idle += 100;
        hw_cpu_sampler_feed(s, &st, &r);
        assert_true(fabs(r.usage - 500.0 / 110.0) < 1e-12);
        /* The base moved: next window is fresh. 100 ticks all busy. */
        st.total.system += 100;
        hw_cpu_sampler_feed(s, &st, &r);
        assert_true(fabs(r.usage - 100.0) < 1e-12);
        /* Counters going backwards (iowait on NO_HZ) clamp at 0 per field. */
        {
                hw_cpu_times p = { .user = 10, .idle = 100, .iowait = 50 };
                hw_cpu_times q = { .user = 40, .idle = 190, .iowait = 40 };
                assert_int_equal(hw_cpu_usage_between(&p, &q, &pct), 0);
                assert_true(fabs(pct - 25.0) < 1e-12);
                assert_int_equal(hw_cpu_usage_between(&p, &p, &pct), -EAGAIN);
                assert_true(hw_cpu_usage_since_boot(&(hw_cpu_times){ 0 }) == 0.0);
        }
        hw_cpu_sampler_free(s);
}

static void test_cpu_loadavg(void **state) {
        static const struct {
                const char *in;
                int r;
                double l[3];
        } t[] = {
                { "0.82 0.23 0.08 1/88 4661\n", 0, { 0.82, 0.23, 0.08 } },
                { "123.45 67.00 0.00 10/2000 1\n", 0, { 123.45, 67, 0 } },
                { "1 2 3", 0, { 1, 2, 3 } },
                { "0.82 0.23\n", -EINVAL, { 0 } },
                { "0.82,0.23,0.08\n", -EINVAL, { 0 } },
                { "", -EINVAL, { 0 } },
        };
        double l[3];
        size_t i;
        int fd;

        for (i = 0; i < N_ELEMS(t); i++) {
                assert_int_equal(hw_cpu_parse_loadavg(t[i].in, strlen(t[i].in), l), t[i].r);
                if (t[i].r == 0)
                        for (int k = 0; k < 3; k++)
                                assert_true(fabs(l[k] - t[i].l[k]) < 1e-12);
        }
        fd = root_fd("ubuntu2204-arm64");
        assert_int_equal(hw_cpu_loadavg_at(fd, l), 0);
        assert_true(l[0] == 12.5 && l[1] == 8.25 && l[2] == 4.0);
        close(fd);
}

static void test_cpu_model(void **state) {
        static const struct {
                const char *in;
                const char *want;
        } t[] = {
                { "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n", "Intel(R) Xeon(R) Platinum 8480+" },
                { "processor : 0\nmodel name : ARMv7 Processor rev 4 (v7l)\nHardware : BCM2835\n",
                  "ARMv7 Processor rev 4 (v7l)" },
                { "Processor\t: ARMv6-compatible processor rev 7 (v6l)\nHardware\t: BCM2708\n",
                  "ARMv6-compatible processor rev 7 (v6l)" },
                { "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\nHardware\t: X\n", "ARM Neoverse-N1" },
                { "CPU implementer\t: 0x48\nCPU part\t: 0xd01\n", "HiSilicon TaiShan-v110" },
                { "CPU implementer\t: 0x41\nCPU part\t: 0xfff\nHardware\t: Qualcomm Technologies, Inc SM8150\n",
                  "Qualcomm Technologies, Inc SM8150" },
                { "CPU implementer\t: 0x41\nCPU part\t: 0xfff\n", "ARM part 0xfff" },
                { "CPU implementer\t: 0x99\nCPU part\t: 0x123\n", "implementer 0x99 part 0x123" },
                { "CPU implementer\t: zz\nCPU part\t: 0x123\n", "Unknown" },
                { "processor\t: 0\ncpu\t\t: POWER9 (raw), altivec supported\nclock\t: 2.3GHz\n",
                  "POWER9 (raw), altivec supported" },
                { "processor\t: 0\nhart\t\t: 0\nisa\t\t: rv64imafdc\nmmu\t\t: sv39\nuarch\t\t: sifive,u74-mc\n",
                  "sifive,u74-mc" },
                { "vendor_id       : IBM/S390\n# processors    : 4\n", "IBM/S390" },
                { "cpu family\t: 6\ncpu MHz\t: 2000\ncpu cores\t: 4\n", "Unknown" },
                { "model name\t:   \n", "Unknown" },
                { "model name\t: \x01\x02\n", "Unknown" }, /* control bytes trim to nothing */
                { "", "Unknown" },
                { "model name: a\xffz\n", "a?z" },
        };
        char buf[128], small[8];
        size_t i, len;
        char *text;

        for (i = 0; i < N_ELEMS(t); i++) {
                assert_int_equal(hw_cpu_parse_model(t[i].in, strlen(t[i].in), buf, sizeof(buf)), 0);
                if (strcmp(buf, t[i].want))
                        fail_msg("case %zu: got [%s] want [%s]", i, buf, t[i].want);
        }
        hw_cpu_parse_model(t[0].in, strlen(t[0].in), small, sizeof(small));
        assert_string_equal(small, "Intel(R");

        text = fixture("debian12-x64", "proc/cpuinfo", &len);
        hw_cpu_parse_model(text, len, buf, sizeof(buf));
        assert_string_equal(buf, "AMD EPYC");
        free(text);
        text = fixture("ubuntu2204-arm64", "proc/cpuinfo", &len);
        hw_cpu_parse_model(text, len, buf, sizeof(buf));
        assert_string_equal(buf, "ARM Neoverse-V2");
        free(text);
}

static void test_cpu_info_fixtures(void **state) {
        static const struct {
                const char *c;
                const char *model;
                unsigned cores;
        } t[] = {
                { "debian12-x64", "AMD EPYC", 2 },
                { "ubuntu2204-arm64", "ARM Neoverse-V2", 4 },
                { "stat-a", "Unknown", 2 }, /* no cpuinfo */
                /* cpu lines end past the sampler's first 8 KiB buffer */
                { "stat-256cpu", "Unknown", 256 },
        };
        hw_cpu_info ci;
        size_t i;
        int fd;

        for (i = 0; i < N_ELEMS(t); i++) {
                fd = root_fd(t[i].c);
                assert_int_equal(hw_cpu_info_at(fd, &ci), 0);
                assert_string_equal(ci.model, t[i].model);
                assert_int_equal(ci.cores, t[i].cores);
                close(fd);
        }
        fd = root_fd("many-if");
        assert_int_equal(hw_cpu_info_at(fd, &ci), -ENOENT); /* no proc/stat */
        close(fd);
}

/* ---- hw_mem -------------------------------------------------------------- */

static void test_mem_fixtures(void **state) {
        static const struct {
                const char *c;
                uint64_t total, used, free, cached;
                int usage;
                bool estimated;
        } t[] = {
                { "debian12-x64", 24105, 423, 23682, 508, 2, false },
                { "ubuntu2204-arm64", 481996, 24854, 457142, 65536, 5, false },
                { "old-kernel", 7872, 2085, 5787, 4720, 26, true },
        };
        hw_mem_info m;
        size_t i, len;
        char *text;
        int fd;

        for (i = 0; i < N_ELEMS(t); i++) {
                text = fixture(t[i].c, "proc/meminfo", &len);
                assert_int_equal(hw_mem_parse(text, len, &m), 0);
                assert_int_equal(m.total_mb, t[i].total);
                assert_int_equal(m.used_mb, t[i].used);
                assert_int_equal(m.free_mb, t[i].free);
                assert_int_equal(m.cached_mb, t[i].cached);
                assert_int_equal(m.usage, t[i].usage);
                assert_int_equal(m.estimated_available, t[i].estimated);
                assert_int_equal(m.used_mb + m.free_mb, m.total_mb);
                free(text);
                fd = root_fd(t[i].c);
                memset(&m, 0, sizeof(m));
                assert_int_equal(hw_mem_read_at(fd, &m), 0);
                assert_int_equal(m.total_mb, t[i].total);
                close(fd);
        }
}

static void test_mem_inline(void **state) {
        static const struct {
                const char *in;
                int r;
                uint64_t total_kb, avail_kb;
                int usage;
        } t[] = {
                { "MemFree: 10 kB\n", -EINVAL, 0, 0, 0 },
                { "MemTotal: 0 kB\nMemAvailable: 0 kB\n", -EINVAL, 0, 0, 0 },
                { "MemTotal: 1000 kB\nMemAvailable: 2000 kB\n", 0, 1000, 1000, 0 }, /* clamped */
                { "MemTotal: 1000 kB\nMemAvailable: 0 kB\n", 0, 1000, 0, 100 },
                { "MemTotal: 1000 kB\nMemAvailable: 995 kB\n", 0, 1000, 995, 1 },   /* 0.5 rounds up */
                { "MemTotal: 1000 kB\nMemAvailable: 996 kB\n", 0, 1000, 996, 0 },
                { "MemTotal:1000 kB\nMemFree: 100 kB\n", 0, 1000, 100, 90 },        /* old kernel, no Buffers */
                { "MemTotal: 1000 kB\nMemTotal: 5 kB\nMemAvailable: 500 kB", 0, 1000, 500, 50 }, /* first wins */
                { "MemTotal: 18446744073709551615 kB\nMemFree: 18446744073709551615 kB\nBuffers: 9 kB\n", 0,
                  UINT64_MAX, UINT64_MAX, 0 },
        };
        hw_mem_info m;
        size_t i;

        for (i = 0; i < N_ELEMS(t); i++) {
                assert_int_equal(hw_mem_parse(t[i].in, strlen(t[i].in), &m), t[i].r);
                if (t[i].r)
                        continue;
                assert_true(m.total_kb == t[i].total_kb);
                assert_true(m.available_kb == t[i].avail_kb);
                assert_int_equal(m.usage, t[i].usage);
        }
}

/* ---- hw_disk ------------------------------------------------------------- */

static void test_disk_compute(void **state) {
        static const struct {
                uint64_t frsize, blocks, bfree, bavail;
                uint64_t total, used, free;
                int usage;
        } t[] = {
                /* This machine's / (ext4, 4 KiB blocks, many reserved): as df -m showed. */
                { 4096, 66053021, 61898923, 20930199, 258020, 16227, 81759, 17 },
                { 4096, 0, 0, 0, 0, 0, 0, 0 },
                { 0, 100, 50, 50, 0, 0, 0, 0 },
                { 4096, 256, 0, 0, 1, 1, 0, 100 },           /* full */
                { 512, 1, 1, 1, 1, 0, 1, 0 },                 /* rounds up */
                { 4096, 100, 200, 50, 1, 0, 1, 0 },          /* bfree > blocks */
                { 1048576, 3, 2, 1, 3, 1, 1, 50 },
                { 4096, 1000, 999, 999, 4, 1, 4, 1 },         /* 1/1000 -> ceil to 1 */
                /* 2^62 blocks of 4 KiB: saturates instead of wrapping. */
                { 4096, 1ULL << 62, 1ULL << 61, 1ULL << 61, 1ULL << 54, 1ULL << 53, 1ULL << 53, 50 },
                { UINT64_MAX, UINT64_MAX, 0, 0, UINT64_MAX, UINT64_MAX, 0, 100 },
        };
        hw_disk_info d;
        size_t i;

        for (i = 0; i < N_ELEMS(t); i++) {
                hw_disk_compute(t[i].frsize, t[i].blocks, t[i].bfree, t[i].bavail, &d);
                if (d.total_mb != t[i].total || d.used_mb != t[i].used || d.free_mb != t[i].free ||
                    d.usage != t[i].usage)
                        fail_msg("case %zu: got %llu %llu %llu %d", i, (unsigned long long)d.total_mb,
                                 (unsigned long long)d.used_mb, (unsigned long long)d.free_mb, d.usage);
        }
        assert_int_equal(hw_disk_read("/nonexistent/path", &d), -ENOENT);
}

/* ---- hw_net -------------------------------------------------------------- */

static void test_net_dev(void **state) {
        static const struct {
                const char *c;
                uint64_t rxb, txb, rxp, txp;
                unsigned n;
        } t[] = {
                { "debian12-x64", 67599597, 354658, 3501, 2942, 3 },
                { "many-if", 18548515741624ULL, 31270079772ULL, 190203235, 112756691, 9 },
        };
        static const struct {
                const char *in;
                int r;
                uint64_t rxb, txp;
                unsigned n;
        } inl[] = {
                { "", -EBADMSG, 0, 0, 0 },
                { "Inter-|   Receive\n face |bytes\n", -EBADMSG, 0, 0, 0 },
                { "lo: 1 2 3 4 5 6 7 8 9 10\n", 0, 0, 0, 0 },               /* loopback only */
                { "eth0:1 2 3 4 5 6 7 8 9 10 11 12\nbad: 1 2\n: 1 2 3 4 5 6 7 8 9 10\n", 0, 1, 10, 1 },
                { "a:18446744073709551615 0 0 0 0 0 0 0 0 0\nb:5 0 0 0 0 0 0 0 0 0\n", 0, UINT64_MAX, 0, 2 },
                { "lo0: 1 2 3 4 5 6 7 8 9 10", 0, 1, 10, 1 },               /* not "lo" */
        };
        hw_net_counters c;
        size_t i, len;
        char *text;
        int fd;

        for (i = 0; i < N_ELEMS(t); i++) {
                text = fixture(t[i].c, "proc/net/dev", &len);
                assert_int_equal(hw_net_parse_dev(text, len, &c), 0);
                assert_true(c.rx_bytes == t[i].rxb);
                assert_true(c.tx_bytes == t[i].txb);
                assert_true(c.rx_packets == t[i].rxp);
                assert_true(c.tx_packets == t[i].txp);
                assert_int_equal(c.interfaces, t[i].n);
                free(text);
                fd = root_fd(t[i].c);
                assert_int_equal(hw_net_read_at(fd, &c), 0);
                assert_true(c.rx_bytes == t[i].rxb);
                close(fd);
        }
        for (i = 0; i < N_ELEMS(inl); i++) {
                memset(&c, 0, sizeof(c));
                assert_int_equal(hw_net_parse_dev(inl[i].in, strlen(inl[i].in), &c), inl[i].r);
                if (inl[i].r == 0) {
                        assert_true(c.rx_bytes == inl[i].rxb);
                        assert_true(c.tx_packets == inl[i].txp);
                        assert_int_equal(c.interfaces, inl[i].n);
                }
        }
}

static void test_net_route(void **state) {
        static const struct {
                const char *in;
                int r;
                const char *want;
        } t[] = {
                { "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
                  "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n",
                  -ENOENT, "" },
                { "", -ENOENT, "" },
                { "a\t00000000\t0\t0003\t0\t0\t7\t00000000\nb\t00000000\t0\t0003\t0\t0\t7\t00000000\n", 0, "a" },
                { "a\t00000000\t0\t0003\t0\t0\t7\t00000000\nb\t00000000\t0\t0003\t0\t0\t6\t00000000\n", 0, "b" },
                { "a\t00000000\t0\t0003\t0\t0\tx\t00000000\n", -ENOENT, "" },
                { "averyveryverylongname\t00000000\t0\t0003\t0\t0\t1\t00000000\n", -ENOENT, "" },
        };
        char ifname[IFNAMSIZ];
        size_t i, len;
        char *text;

        for (i = 0; i < N_ELEMS(t); i++) {
                ifname[0] = '\0';
                assert_int_equal(hw_net_parse_default_route(t[i].in, strlen(t[i].in), ifname, sizeof(ifname)),
                                 t[i].r);
                assert_string_equal(ifname, t[i].want);
        }
        text = fixture("debian12-x64", "proc/net/route", &len);
        assert_int_equal(hw_net_parse_default_route(text, len, ifname, sizeof(ifname)), 0);
        assert_string_equal(ifname, "eth0");
        free(text);
        /* Lowest metric among up defaults; eth1 (metric 0) is not up, tun0 is
         * 0.0.0.0/1, eth0 and ib0 tie at 100 and eth0 comes first. */
        text = fixture("many-if", "proc/net/route", &len);
        assert_int_equal(hw_net_parse_default_route(text, len, ifname, sizeof(ifname)), 0);
        assert_string_equal(ifname, "eth0");
        free(text);
}

static struct sockaddr_in v4(const char *s) {
        struct sockaddr_in sin = { .sin_family = AF_INET };
        inet_pton(AF_INET, s, &sin.sin_addr);
        return sin;
}

static void test_net_pick(void **state) {
        struct sockaddr_in a_lo = v4("127.0.0.1"), a_ll = v4("169.254.3.4"), a_docker = v4("172.17.0.1"),
                           a_eth = v4("10.0.0.21"), a_alias = v4("10.0.0.99"), a_down = v4("192.168.9.9");
        struct sockaddr_in6 a6 = { .sin6_family = AF_INET6 };
        struct ifaddrs l[7];
        char out[INET_ADDRSTRLEN];

        memset(l, 0, sizeof(l));
        l[0] = (struct ifaddrs){ .ifa_name = "lo", .ifa_flags = IFF_UP | IFF_LOOPBACK, .ifa_addr = (void *)&a_lo };
        l[1] = (struct ifaddrs){ .ifa_name = "eth9", .ifa_flags = 0, .ifa_addr = (void *)&a_down };
        l[2] = (struct ifaddrs){ .ifa_name = "docker0", .ifa_flags = IFF_UP, .ifa_addr = (void *)&a_docker };
        l[3] = (struct ifaddrs){ .ifa_name = "eth0", .ifa_flags = IFF_UP, .ifa_addr = (void *)&a6 };
        l[4] = (struct ifaddrs){ .ifa_name = "eth0", .ifa_flags = IFF_UP, .ifa_addr = (void *)&a_ll };
        l[5] = (struct ifaddrs){ .ifa_name = "eth0:1", .ifa_flags = IFF_UP, .ifa_addr = (void *)&a_alias };
        l[6] = (struct ifaddrs){ .ifa_name = "eth0", .ifa_flags = IFF_UP, .ifa_addr = (void *)&a_eth };
        for (int i = 0; i < 6; i++)
                l[i].ifa_next = &l[i + 1];

        /* Default-route interface: its first usable IPv4 (the alias here). */
        assert_int_equal(hw_net_pick_ipv4(l, "eth0", out, sizeof(out)), 0);
        assert_string_equal(out, "10.0.0.99");
        /* "eth" must not match "eth0". */
        assert_int_equal(hw_net_pick_ipv4(l, "eth", out, sizeof(out)), 0);
        assert_string_equal(out, "172.17.0.1");
        /* No route: first up, non-loopback, non-link-local. */
        assert_int_equal(hw_net_pick_ipv4(l, NULL, out, sizeof(out)), 0);
        assert_string_equal(out, "172.17.0.1");
        assert_int_equal(hw_net_pick_ipv4(l, "", out, sizeof(out)), 0);
        assert_string_equal(out, "172.17.0.1");
        /* Only loopback and link-local: nothing. */
        l[0].ifa_next = &l[4];
        l[4].ifa_next = NULL;
        util_strlcpy(out, "keep", sizeof(out));
        assert_int_equal(hw_net_pick_ipv4(l, "eth0", out, sizeof(out)), -ENOENT);
        assert_string_equal(out, "keep");
        assert_int_equal(hw_net_pick_ipv4(NULL, NULL, out, sizeof(out)), -ENOENT);
}

/* ---- hw_json ------------------------------------------------------------- */

static void assert_json(json_t *j, const char *want) {
        char *s;

        assert_non_null(j);
        s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10));
        if (strcmp(s, want))
                fail_msg("got  %s\nwant %s", s, want);
        free(s);
        json_decref(j);
}

static void test_json(void **state) {
        hw_os_info os = { .platform = "linux", .distro = "Ubuntu", .version = "22.04.4 LTS (Jammy Jellyfish)",
                          .arch = "x64", .kernel = "5.15.0-113-generic", .hostname = "h", .uptime_s = 1 };
        hw_cpu_sample cpu = { .usage = 40.04, .cores = 16 };
        double load[3] = { 0.82, 0.234, 12.5 };
        hw_mem_info mem = { .total_mb = 128722, .used_mb = 10000, .free_mb = 118722, .cached_mb = 5000, .usage = 8 };
        hw_disk_info disk = { .total_mb = 61440, .used_mb = 20000, .free_mb = 38000, .usage = 35 };
        hw_net_counters net = { .rx_bytes = 1ULL << 40, .tx_bytes = UINT64_MAX, .rx_packets = 3, .tx_packets = 4 };

        assert_json(hw_json_os(&os), "{\"platform\":\"linux\",\"distro\":\"Ubuntu\",\"version\":\"22.04.4 LTS "
                                     "(Jammy Jellyfish)\",\"arch\":\"x64\",\"kernel\":\"5.15.0-113-generic\"}");
        assert_json(hw_json_cpu(&cpu, load), "{\"usage\":40.0,\"cores\":16,\"loadAverage\":[0.82,0.23,12.5]}");
        cpu.usage = NAN;
        load[0] = INFINITY;
        assert_json(hw_json_cpu(&cpu, load), "{\"usage\":0.0,\"cores\":16,\"loadAverage\":[0.0,0.23,12.5]}");
        cpu.usage = 100.7;
        assert_json(hw_json_cpu(&cpu, load), "{\"usage\":100.0,\"cores\":16,\"loadAverage\":[0.0,0.23,12.5]}");
        assert_json(hw_json_mem(&mem), "{\"total\":128722,\"used\":10000,\"free\":118722,\"cached\":5000,\"usage\":8}");
        assert_json(hw_json_disk(&disk), "{\"total\":61440,\"used\":20000,\"free\":38000,\"usage\":35}");
        assert_json(hw_json_net(&net), "{\"bytesReceived\":1099511627776,\"bytesSent\":9223372036854775807,"
                                       "\"packetsReceived\":3,\"packetsSent\":4}");
        assert_int_equal(hw_json_percent_int(49.5), 50);
        assert_int_equal(hw_json_percent_int(49.49), 49);
        assert_int_equal(hw_json_percent_int(-3), 0);
        assert_int_equal(hw_json_percent_int(NAN), 0);
        assert_int_equal(hw_json_percent_int(250), 100);
        /* Invalid UTF-8 never reaches jansson: the parsers repair it. */
        {
                hw_os_release rel;
                hw_os_parse_os_release("NAME=\"\xc3\x28\"\n", 10, &rel);
                util_strlcpy(os.distro, rel.name, sizeof(os.distro));
                assert_json(hw_json_os(&os), "{\"platform\":\"linux\",\"distro\":\"?(\",\"version\":\"22.04.4 LTS "
                                             "(Jammy Jellyfish)\",\"arch\":\"x64\",\"kernel\":\"5.15.0-113-generic\"}");
        }
}

/* ---- live checks against independent tools ------------------------------- */

static void test_live(void **state) {
        char line[512], want[512], *p;
        struct utsname u;
        hw_cpu_sampler *s;
        hw_cpu_sample cs;
        hw_cpu_info ci;
        hw_mem_info m;
        hw_disk_info d;
        hw_os_info os;
        hw_net_counters nc;
        double load[3];
        struct in_addr ia;
        char ip[INET_ADDRSTRLEN];
        long n;
        int fd = -1;

        assert_int_equal(hw_proc_root_open("/", &fd), 0);

        /* cores == sysconf */
        assert_int_equal(hw_cpu_info_at(fd, &ci), 0);
        n = sysconf(_SC_NPROCESSORS_ONLN);
        assert_int_equal(ci.cores, n);
        assert_true(ci.model[0] != '\0');

        /* Two samples a few ms apart: usage within range; cores agree. */
        s = hw_cpu_sampler_new();
        assert_int_equal(hw_cpu_sampler_read_at(s, fd, &cs), 0);
        assert_true(cs.since_boot);
        usleep(20000);
        assert_int_equal(hw_cpu_sampler_read_at(s, fd, &cs), 0);
        assert_false(cs.since_boot);
        assert_true(cs.usage >= 0.0 && cs.usage <= 100.0);
        assert_int_equal(cs.cores, n);
        hw_cpu_sampler_free(s);
        assert_int_equal(hw_cpu_loadavg_at(fd, load), 0);

        /* mem total within 1 MB of free -m */
        assert_int_equal(hw_mem_read_at(fd, &m), 0);
        if (run_line("LC_ALL=C free -m | awk '/^Mem:/ {print $2}'", line, sizeof(line)) && line[0]) {
                long long fm = strtoll(line, NULL, 10);
                assert_true(llabs((long long)m.total_mb - fm) <= 1);
        } else {
                print_message("free(1) unavailable: mem total not cross-checked\n");
        }

        /* disk total == df -m / */
        assert_int_equal(hw_disk_read("/", &d), 0);
        if (run_line("LC_ALL=C df -m -P / | awk 'NR==2 {print $2}'", line, sizeof(line)) && line[0]) {
                assert_int_equal(d.total_mb, strtoull(line, NULL, 10));
        } else {
                print_message("df(1) unavailable: disk total not cross-checked\n");
        }
        {
                hw_disk_info d2;
                assert_int_equal(hw_disk_read_fd(fd, &d2), 0);
                assert_int_equal(d2.total_mb, d.total_mb);
        }

        /* kernel == uname -r, distro == NAME as sh sources it */
        assert_int_equal(hw_os_read_at(fd, &os), 0);
        assert_int_equal(uname(&u), 0);
        if (run_line("uname -r", line, sizeof(line)))
                assert_string_equal(os.kernel, line);
        assert_string_equal(os.kernel, u.release);
        if (access("/etc/os-release", R_OK) == 0 &&
            run_line("sh -c '. /etc/os-release && printf \"%s\\n\" \"$NAME\"'", want, sizeof(want)))
                assert_string_equal(os.distro, want);
        p = run_line("cut -d' ' -f1 /proc/uptime | cut -d. -f1", line, sizeof(line));
        if (p)
                assert_true(llabs((long long)os.uptime_s - strtoll(p, NULL, 10)) <= 1);

        /* Network: the counters parse; the address is a dotted quad. */
        assert_int_equal(hw_net_read_at(fd, &nc), 0);
        hw_net_private_ip(fd, ip, sizeof(ip));
        assert_int_equal(inet_pton(AF_INET, ip, &ia), 1);
        close(fd);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_proc_scanners),   cmocka_unit_test(test_proc_read_spill),
                cmocka_unit_test(test_os_release_table), cmocka_unit_test(test_os_fixtures),
                cmocka_unit_test(test_os_arch),         cmocka_unit_test(test_os_uptime_parse),
                cmocka_unit_test(test_cpu_stat_parse),  cmocka_unit_test(test_cpu_usage_fixtures),
                cmocka_unit_test(test_cpu_sampler_window), cmocka_unit_test(test_cpu_loadavg),
                cmocka_unit_test(test_cpu_model),       cmocka_unit_test(test_cpu_info_fixtures),
                cmocka_unit_test(test_mem_fixtures),    cmocka_unit_test(test_mem_inline),
                cmocka_unit_test(test_disk_compute),    cmocka_unit_test(test_net_dev),
                cmocka_unit_test(test_net_route),       cmocka_unit_test(test_net_pick),
                cmocka_unit_test(test_json),            cmocka_unit_test(test_live),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
