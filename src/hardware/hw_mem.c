#include <errno.h>
#include <string.h>

#include "hardware/hw_mem.h"
#include "hardware/hw_proc.h"

/* meminfo is ~1.5 KiB; the fields used are all in its first 30 lines, so a
 * read cut at this size still holds them. */
#define MEMINFO_BUF 4096

enum {
        F_TOTAL,
        F_FREE,
        F_AVAILABLE,
        F_BUFFERS,
        F_CACHED,
        F_SRECLAIMABLE,
        F_COUNT,
};

static const struct {
        const char *key;
        size_t len;
} fields[F_COUNT] = {
        [F_TOTAL] = { "MemTotal", 8 },     [F_FREE] = { "MemFree", 7 },
        [F_AVAILABLE] = { "MemAvailable", 12 }, [F_BUFFERS] = { "Buffers", 7 },
        [F_CACHED] = { "Cached", 6 },      [F_SRECLAIMABLE] = { "SReclaimable", 12 },
};

int hw_mem_parse(const char *text, size_t len, hw_mem_info *ret) {
        const char *p = text, *end = text + len, *eol, *colon, *q;
        uint64_t v[F_COUNT] = { 0 }, avail, used_kb;
        unsigned seen = 0, all = (1u << F_COUNT) - 1;
        hw_mem_info m = { 0 };
        size_t i, klen;

        while (p < end && seen != all) {
                eol = hw_proc_eol(p, end);
                colon = memchr(p, ':', (size_t)(eol - p));
                if (colon) {
                        klen = (size_t)(colon - p);
                        for (i = 0; i < F_COUNT; i++) {
                                if (fields[i].len != klen || memcmp(p, fields[i].key, klen) != 0)
                                        continue;
                                q = hw_proc_skip_blank(colon + 1, eol);
                                if (!(seen & (1u << i)) && hw_proc_scan_u64(&q, eol, &v[i]))
                                        seen |= 1u << i;
                                break;
                        }
                }
                p = eol < end ? eol + 1 : end;
        }
        if (!(seen & (1u << F_TOTAL)) || v[F_TOTAL] == 0)
                return -EINVAL;

        if (seen & (1u << F_AVAILABLE)) {
                avail = v[F_AVAILABLE];
        } else {
                /* Pre-3.14 kernels: the estimate procps used before. */
                avail = v[F_FREE];
                avail = avail > UINT64_MAX - v[F_BUFFERS] ? UINT64_MAX : avail + v[F_BUFFERS];
                avail = avail > UINT64_MAX - v[F_CACHED] ? UINT64_MAX : avail + v[F_CACHED];
                m.estimated_available = true;
        }
        if (avail > v[F_TOTAL])
                avail = v[F_TOTAL];

        m.total_kb = v[F_TOTAL];
        m.available_kb = avail;
        m.cached_kb = v[F_CACHED] > UINT64_MAX - v[F_SRECLAIMABLE] ? UINT64_MAX
                                                                    : v[F_CACHED] + v[F_SRECLAIMABLE];
        m.total_mb = m.total_kb / 1024;
        m.free_mb = m.available_kb / 1024;
        m.used_mb = m.total_mb - m.free_mb;
        m.cached_mb = m.cached_kb / 1024;
        /* round(used / total * 100) without overflow for any kB count. */
        used_kb = m.total_kb - m.available_kb;
        m.usage = (int)((double)used_kb * 100.0 / (double)m.total_kb + 0.5);
        if (m.usage > 100)
                m.usage = 100;
        *ret = m;
        return 0;
}

int hw_mem_read_at(int root_fd, hw_mem_info *ret) {
        char buf[MEMINFO_BUF];
        hw_proc_text t;
        int r;

        r = hw_proc_read(root_fd, "proc/meminfo", buf, sizeof(buf), sizeof(buf), &t);
        if (r >= 0) {
                r = hw_mem_parse(t.data, t.len, ret);
                hw_proc_text_done(&t);
        }
        return r;
}
