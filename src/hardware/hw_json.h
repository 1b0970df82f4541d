/* hw_json: the probes' results as the JSON shapes of PROTOCOL.md §3.4 and
 * §3.6, with its field names and units. All functions return a new
 * reference, or NULL on allocation failure.
 *
 * Number types (documented choice):
 *   - integers wherever the original produced integers: every MB figure,
 *     cpu.cores, memory.usage, disk.usage, network counters;
 *   - cpu.usage (metrics) is a number rounded to one decimal (12.3); the
 *     heartbeat's cpuUsage and ramUsage are integers: use
 *     hw_json_percent_int() (the telemetry builder does lround, same result);
 *   - loadAverage entries are numbers rounded to two decimals, the
 *     kernel's own precision. jansson prints reals with 17 significant
 *     digits unless the serialiser passes JSON_REAL_PRECISION(n): dump with
 *     JSON_REAL_PRECISION(15) or less to get "0.82" rather than
 *     "0.81999999999999995".
 * Counters above INT64_MAX (never seen in practice) are clamped to it. */
#pragma once

#include <jansson.h>

#include "hardware/hw_cpu.h"
#include "hardware/hw_disk.h"
#include "hardware/hw_mem.h"
#include "hardware/hw_net.h"
#include "hardware/hw_os.h"

/* IOsInfo: {platform, distro, version, arch, kernel}. */
json_t *hw_json_os(const hw_os_info *os);
/* metrics cpu: {usage, cores, loadAverage: [1m, 5m, 15m]}. */
json_t *hw_json_cpu(const hw_cpu_sample *cpu, const double load[3]);
/* metrics memory: {total, used, free, cached, usage}, MB and %. */
json_t *hw_json_mem(const hw_mem_info *m);
/* metrics disk: {total, used, free, usage}, MB and %. */
json_t *hw_json_disk(const hw_disk_info *d);
/* metrics network: {bytesReceived, bytesSent, packetsReceived, packetsSent}. */
json_t *hw_json_net(const hw_net_counters *n);
/* A percentage as the heartbeat's integer: rounded half away from zero and
 * clamped to 0..100 (NaN gives 0). */
json_int_t hw_json_percent_int(double pct);
