#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "hardware/hw_os.h"
#include "hardware/hw_proc.h"

/* Longest value kept while unescaping; the fields we keep are shorter. */
#define OS_VALUE_MAX 512
/* os-release files are a few hundred bytes; refuse anything absurd. */
#define OS_RELEASE_MAX (64 * 1024)

typedef struct value_buf {
        char data[OS_VALUE_MAX];
        size_t len;
} value_buf;

static void value_add(value_buf *v, const char *s, size_t n) {
        size_t room = sizeof(v->data) - v->len;

        if (n > room)
                n = room;
        memcpy(v->data + v->len, s, n);
        v->len += n;
}

static bool is_key_char(char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

static bool is_blank(char c) {
        return c == ' ' || c == '\t' || c == '\r';
}

/* Unescapes one value starting at *pp (just after '=' and blanks) up to the
 * end of its logical line. Returns false when a quote is never closed. */
static bool parse_value(const char **pp, const char *end, value_buf *v) {
        const char *p = *pp, *q;
        bool word_start = true, ok = true;

        v->len = 0;
        while (p < end && *p != '\n') {
                char c = *p;

                if (c == '\'') {
                        q = memchr(p + 1, '\'', (size_t)(end - p - 1));
                        if (!q) {
                                ok = false;
                                p = end;
                                break;
                        }
                        value_add(v, p + 1, (size_t)(q - p - 1));
                        p = q + 1;
                        word_start = false;
                } else if (c == '"') {
                        for (p++;; p++) {
                                if (p >= end) {
                                        ok = false;
                                        break;
                                }
                                if (*p == '"') {
                                        p++;
                                        break;
                                }
                                if (*p == '\\' && p + 1 < end) {
                                        char n = p[1];
                                        if (n == '\n') {
                                                p++;
                                                continue;
                                        }
                                        if (n == '"' || n == '\\' || n == '`' || n == '$') {
                                                value_add(v, &n, 1);
                                                p++;
                                                continue;
                                        }
                                }
                                value_add(v, p, 1);
                        }
                        if (!ok)
                                break;
                        word_start = false;
                } else if (c == '\\') {
                        if (p + 1 < end && p[1] != '\n')
                                value_add(v, p + 1, 1);
                        p += p + 1 < end ? 2 : 1;
                        word_start = false;
                } else if (c == '#' && word_start) {
                        /* Shell comment: the rest of the line is ignored. */
                        p = hw_proc_eol(p, end);
                } else {
                        value_add(v, p, 1);
                        word_start = is_blank(c);
                        p++;
                }
        }
        *pp = p;
        return ok;
}

static bool key_is(const char *key, size_t n, const char *want) {
        return strlen(want) == n && memcmp(key, want, n) == 0;
}

int hw_os_parse_os_release(const char *text, size_t len, hw_os_release *ret) {
        const char *p = text, *end = text + len, *key;
        hw_os_release rel = { 0 };
        value_buf v;
        size_t klen;

        while (p < end) {
                while (p < end && (is_blank(*p) || *p == '\n'))
                        p++;
                if (p >= end)
                        break;
                if (*p == '#' || *p == ';') {
                        p = hw_proc_eol(p, end);
                        continue;
                }
                key = p;
                while (p < end && is_key_char(*p))
                        p++;
                klen = (size_t)(p - key);
                p = hw_proc_skip_blank(p, end);
                if (klen == 0 || p >= end || *p != '=') {
                        p = hw_proc_eol(p, end);
                        continue;
                }
                p = hw_proc_skip_blank(p + 1, end);
                if (!parse_value(&p, end, &v))
                        continue;
                if (key_is(key, klen, "NAME"))
                        hw_proc_copy_text(rel.name, sizeof(rel.name), v.data, v.len);
                else if (key_is(key, klen, "VERSION"))
                        hw_proc_copy_text(rel.version, sizeof(rel.version), v.data, v.len);
                else if (key_is(key, klen, "VERSION_ID"))
                        hw_proc_copy_text(rel.version_id, sizeof(rel.version_id), v.data, v.len);
                else if (key_is(key, klen, "PRETTY_NAME"))
                        hw_proc_copy_text(rel.pretty_name, sizeof(rel.pretty_name), v.data, v.len);
        }
        *ret = rel;
        return 0;
}

const char *hw_os_arch(const char *machine) {
        static const struct {
                const char *machine;
                const char *arch;
        } table[] = {
                { "x86_64", "x64" },     { "amd64", "x64" },         { "aarch64", "arm64" },
                { "arm64", "arm64" },    { "aarch64_be", "arm64" },  { "i386", "ia32" },
                { "i486", "ia32" },      { "i586", "ia32" },         { "i686", "ia32" },
                { "ppc64le", "ppc64" },  { "ppc64", "ppc64" },       { "ppc", "ppc" },
                { "s390x", "s390x" },    { "s390", "s390" },         { "riscv64", "riscv64" },
                { "loongarch64", "loong64" }, { "mips", "mips" },    { "mipsel", "mipsel" },
                { "mips64", "mips64" },  { "mips64el", "mips64el" },
        };
        size_t i;

        if (!machine)
                return NULL;
        for (i = 0; i < sizeof(table) / sizeof(table[0]); i++)
                if (strcmp(machine, table[i].machine) == 0)
                        return table[i].arch;
        /* armv5tel, armv6l, armv7l, armv8l (32-bit userland), arm... */
        if (strncmp(machine, "arm", 3) == 0)
                return "arm";
        return machine;
}

int hw_os_parse_uptime(const char *text, size_t len, uint64_t *ret_seconds) {
        const char *p = text, *end = text + len;
        uint64_t secs;

        p = hw_proc_skip_blank(p, end);
        if (!hw_proc_scan_u64(&p, end, &secs))
                return -EINVAL;
        /* Whole seconds; the fraction (centiseconds) is dropped. */
        if (p < end && *p == '.') {
                p++;
                if (p >= end || *p < '0' || *p > '9')
                        return -EINVAL;
                while (p < end && *p >= '0' && *p <= '9')
                        p++;
        }
        if (p < end && *p != ' ' && *p != '\t' && *p != '\n')
                return -EINVAL;
        *ret_seconds = secs;
        return 0;
}

int hw_os_uptime_at(int root_fd, uint64_t *ret_seconds) {
        char buf[128];
        hw_proc_text t;
        struct timespec ts;
        uint64_t secs;
        int r;

        r = hw_proc_read(root_fd, "proc/uptime", buf, sizeof(buf), sizeof(buf), &t);
        if (r == -ENOENT) {
                /* No proc/uptime under this root: the running host's. */
                r = clock_gettime(CLOCK_BOOTTIME, &ts) < 0 ? -errno : 0;
                secs = (uint64_t)ts.tv_sec;
        } else if (r >= 0) {
                r = hw_os_parse_uptime(t.data, t.len, &secs);
                hw_proc_text_done(&t);
        }
        if (r >= 0)
                *ret_seconds = secs;
        return r;
}

int hw_os_read_at(int root_fd, hw_os_info *ret) {
        hw_os_info info = { .platform = "linux" };
        hw_os_release rel = { 0 };
        struct utsname u;
        const char *arch;
        char *data = NULL;
        size_t len = 0;
        int r;

        r = util_read_file_at(root_fd, "etc/os-release", OS_RELEASE_MAX, &data, &len);
        if (r < 0)
                r = util_read_file_at(root_fd, "usr/lib/os-release", OS_RELEASE_MAX, &data, &len);
        if (r >= 0) {
                hw_os_parse_os_release(data, len, &rel);
                free(data);
        }
        util_strlcpy(info.distro, rel.name[0] ? rel.name : "Linux", sizeof(info.distro));
        util_strlcpy(info.version,
                     rel.version[0] ? rel.version : rel.version_id[0] ? rel.version_id : "unknown",
                     sizeof(info.version));

        if (uname(&u) < 0) {
                r = -errno;
                goto out;
        }
        hw_proc_copy_text(info.kernel, sizeof(info.kernel), u.release, strnlen(u.release, sizeof(u.release)));
        hw_proc_copy_text(info.hostname, sizeof(info.hostname), u.nodename,
                          strnlen(u.nodename, sizeof(u.nodename)));
        arch = hw_os_arch(u.machine);
        hw_proc_copy_text(info.arch, sizeof(info.arch), arch, strlen(arch));

        r = hw_os_uptime_at(root_fd, &info.uptime_s);
        if (r >= 0)
                *ret = info;
out:
        return r;
}

int hw_os_read(const char *root, hw_os_info *ret) {
        int fd, r;

        r = hw_proc_root_open(root, &fd);
        if (r >= 0) {
                r = hw_os_read_at(fd, ret);
                close(fd);
        }
        return r;
}
