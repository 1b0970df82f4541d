/* hw_disk: a filesystem's size through statvfs(2), for node.register
 * (diskTotal) and telemetry.metrics (disk.*), with df(1)'s definitions so
 * the figures equal `df -m <path>` column for column:
 *   total = f_blocks × f_frsize
 *   used  = (f_blocks − f_bfree) × f_frsize
 *   free  = f_bavail × f_frsize (what an unprivileged user can still write;
 *           reserved blocks make used + free < total on ext4)
 *   MB    = MiB rounded up, as df does for -m
 *   usage = df's Use% = ceil(used × 100 / (used + free)), 0 when both are 0. */
#pragma once

#include <stdint.h>

typedef struct hw_disk_info {
        uint64_t total_mb, used_mb, free_mb;
        int usage; /* percent 0..100 */
} hw_disk_info;

/* Pure computation from statvfs fields (f_frsize, f_blocks, f_bfree,
 * f_bavail). A zero frsize gives all zeros. */
void hw_disk_compute(uint64_t frsize, uint64_t blocks, uint64_t bfree, uint64_t bavail, hw_disk_info *ret);
/* statvfs(path). Returns 0 or a negative errno. */
int hw_disk_read(const char *path, hw_disk_info *ret);
/* fstatvfs(fd); fd may be an O_PATH descriptor such as hw_proc_root_open()'s,
 * which saves the path lookup on every metrics tick. */
int hw_disk_read_fd(int fd, hw_disk_info *ret);
