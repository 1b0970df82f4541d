/* hw_disk: a filesystem's size through statvfs(2), in MB (MiB), with df's
 * definitions: used = (blocks − bfree) × frsize, free = bavail × frsize (what
 * an unprivileged user can still write, so used + free < total on ext4),
 * usage = df's Use% = ceil(used × 100 / (used + free)). */
#pragma once

#include <stdint.h>

typedef struct hw_disk_info {
        uint64_t total_mb, used_mb, free_mb;
        double usage;
} hw_disk_info;

/* Pure computation from statvfs fields (for tests). */
void hw_disk_compute(uint64_t frsize, uint64_t blocks, uint64_t bfree, uint64_t bavail, hw_disk_info *ret);
/* statvfs(path). Returns 0 or a negative errno. */
int hw_disk_read(const char *path, hw_disk_info *ret);
