/* hw_json: the /proc probes' results as the JSON shapes of PROTOCOL.md §3.4
 * and §3.6, with its field names and units (MB = MiB, % 0–100, bytes for
 * network). Integers where the original produced integers; load averages
 * and CPU usage as numbers with two decimals. New references. */
#pragma once

#include <jansson.h>

#include "hardware/hw_cpu.h"
#include "hardware/hw_disk.h"
#include "hardware/hw_mem.h"
#include "hardware/hw_net.h"
#include "hardware/hw_os.h"

json_t *hw_json_os(const hw_os_info *os);                          /* IOsInfo */
json_t *hw_json_cpu(const hw_cpu_sample *cpu, const double load[3]); /* {usage, cores, loadAverage} */
json_t *hw_json_mem(const hw_mem_info *m);                          /* {total, used, free, cached, usage} */
json_t *hw_json_disk(const hw_disk_info *d);                        /* {total, used, free, usage} */
json_t *hw_json_net(const hw_net_counters *n);                      /* {bytesReceived, …} */
