/* hw_os: operating-system facts for node.register (IOsInfo, hostname) and
 * the host uptime sent with register and every heartbeat.
 *
 * distro/version come from <root>/etc/os-release, falling back to
 * <root>/usr/lib/os-release (os-release(5)); kernel, arch and hostname come
 * from uname(2) (they describe the running kernel whatever the root); uptime
 * from <root>/proc/uptime. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* The fields of os-release(5) this project uses, unquoted and unescaped,
 * valid UTF-8 (invalid bytes become '?'), "" when absent. */
typedef struct hw_os_release {
        char name[128];       /* NAME */
        char version[128];    /* VERSION */
        char version_id[64];  /* VERSION_ID */
        char pretty_name[128];/* PRETTY_NAME */
} hw_os_release;

typedef struct hw_os_info {
        char platform[8];     /* always "linux" */
        char distro[128];     /* NAME; "Linux" when there is no os-release or no NAME (os-release(5) default) */
        char version[128];    /* VERSION, else VERSION_ID, else "unknown" */
        char arch[32];        /* Node's process.arch vocabulary, see hw_os_arch() */
        char kernel[65];      /* uname -r */
        char hostname[65];    /* uname -n */
        uint64_t uptime_s;    /* host uptime in whole seconds */
} hw_os_info;

/* Parses os-release text: KEY=VALUE lines, '#' comments, blank lines; values
 * unquoted, "double-quoted" (backslash escapes \" \\ \$ \` and line
 * continuation; other backslashes are kept) or 'single-quoted' (literal), as
 * in shell; adjacent quoted/unquoted pieces concatenate; the last assignment
 * wins; an assignment whose quote is never closed is ignored. Never fails on
 * content: returns 0 and writes *ret (all fields "" if nothing matched). */
int hw_os_parse_os_release(const char *text, size_t len, hw_os_release *ret);

/* Maps a uname machine string to Node's process.arch name: x86_64 -> x64,
 * aarch64/arm64 -> arm64, i386..i686 -> ia32, arm* -> arm, ppc64/ppc64le ->
 * ppc64, ppc -> ppc, s390x, s390, riscv64, loongarch64 -> loong64,
 * mips/mipsel, mips64* -> mips64el/mips64. Any other string is returned
 * unchanged. Never NULL for non-NULL input. */
const char *hw_os_arch(const char *machine);

/* Parses /proc/uptime ("773.44 1480.33"): whole seconds of the first
 * figure. Returns 0 or -EINVAL. */
int hw_os_parse_uptime(const char *text, size_t len, uint64_t *ret_seconds);

/* Host uptime from <root_fd>/proc/uptime; when that file does not exist,
 * CLOCK_BOOTTIME. Returns 0 or a negative errno. */
int hw_os_uptime_at(int root_fd, uint64_t *ret_seconds);

/* Fills every field of hw_os_info. A missing os-release is not an error
 * (defaults above). Returns 0 or a negative errno (uptime unreadable or
 * malformed, uname failure). */
int hw_os_read_at(int root_fd, hw_os_info *ret);
/* Same with a root path ("/" or a fixture tree). */
int hw_os_read(const char *root, hw_os_info *ret);
