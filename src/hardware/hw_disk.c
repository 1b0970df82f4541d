#include <errno.h>
#include <math.h>
#include <sys/statvfs.h>

#include "hardware/hw_disk.h"

#define MIB 1048576u

/* ceil(n × size / MiB) without overflow (saturates at UINT64_MAX). */
static uint64_t mib_ceil(uint64_t n, uint64_t size) {
        uint64_t q = n / MIB, r = n % MIB, hi, lo;

        /* n × size / MiB = q × size + r × size / MiB, with r × size < 2^20 × size. */
        if (q && size > UINT64_MAX / q)
                return UINT64_MAX;
        hi = q * size;
        if (r && size > UINT64_MAX / r) {
                /* r < 2^20, so size >= 2^44 here: divide first, exact enough
                 * for a figure that large, and round up. */
                if (size / MIB > UINT64_MAX / r)
                        return UINT64_MAX;
                lo = r * (size / MIB) + (r * (size % MIB) + MIB - 1) / MIB;
        } else {
                lo = (r * size + MIB - 1) / MIB;
        }
        return hi > UINT64_MAX - lo ? UINT64_MAX : hi + lo;
}

void hw_disk_compute(uint64_t frsize, uint64_t blocks, uint64_t bfree, uint64_t bavail, hw_disk_info *ret) {
        hw_disk_info d = { 0 };
        uint64_t used, denom, u100;

        if (frsize == 0)
                goto out;
        if (bfree > blocks)
                bfree = blocks;
        used = blocks - bfree;
        d.total_mb = mib_ceil(blocks, frsize);
        d.used_mb = mib_ceil(used, frsize);
        d.free_mb = mib_ceil(bavail, frsize);
        /* Use% in blocks, as df computes it: integers while they fit. */
        if (used > UINT64_MAX - bavail) {
                d.usage = (int)ceill((long double)used * 100.0L / ((long double)used + (long double)bavail));
        } else if ((denom = used + bavail) == 0) {
                d.usage = 0;
        } else if (used <= UINT64_MAX / 100) {
                u100 = used * 100;
                d.usage = (int)(u100 / denom + (u100 % denom != 0));
        } else {
                d.usage = (int)ceill((long double)used * 100.0L / (long double)denom);
        }
        if (d.usage > 100)
                d.usage = 100;
out:
        *ret = d;
}

static void from_statvfs(const struct statvfs *sv, hw_disk_info *ret) {
        hw_disk_compute(sv->f_frsize ? sv->f_frsize : sv->f_bsize, sv->f_blocks, sv->f_bfree, sv->f_bavail, ret);
}

int hw_disk_read(const char *path, hw_disk_info *ret) {
        struct statvfs sv;
        int r = 0;

        if (statvfs(path, &sv) < 0)
                r = -errno;
        else
                from_statvfs(&sv, ret);
        return r;
}

int hw_disk_read_fd(int fd, hw_disk_info *ret) {
        struct statvfs sv;
        int r = 0;

        if (fstatvfs(fd, &sv) < 0)
                r = -errno;
        else
                from_statvfs(&sv, ret);
        return r;
}
