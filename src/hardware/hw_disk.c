#include "hardware/hw_disk.h"

#include <errno.h>
#include <sys/statvfs.h>

void hw_disk_compute(uint64_t frsize, uint64_t blocks, uint64_t bfree, uint64_t bavail, hw_disk_info *ret) {
        uint64_t used_b, avail_b, denom;

        if (bfree > blocks)
                bfree = blocks;
        used_b = blocks - bfree;
        avail_b = bavail;
        denom = used_b + avail_b;
        ret->total_mb = (uint64_t)((__uint128_t)blocks * frsize / 1048576);
        ret->used_mb = (uint64_t)((__uint128_t)used_b * frsize / 1048576);
        ret->free_mb = (uint64_t)((__uint128_t)avail_b * frsize / 1048576);
        /* df rounds Use% up. */
        ret->usage = denom ? (double)((used_b * 100 + denom - 1) / denom) : 0.0;
}

int hw_disk_read(const char *path, hw_disk_info *ret) {
        struct statvfs sv;

        if (statvfs(path, &sv) < 0)
                return -errno;
        hw_disk_compute(sv.f_frsize ? sv.f_frsize : sv.f_bsize, sv.f_blocks, sv.f_bfree, sv.f_bavail, ret);
        return 0;
}
