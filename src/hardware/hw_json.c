#include "hardware/hw_json.h"

#include <math.h>

static json_t *num2(double v) {
        /* Two decimals are plenty for a percentage or a load average. */
        return json_real(round(v * 100.0) / 100.0);
}

json_t *hw_json_os(const hw_os_info *os) {
        return json_pack("{s:s, s:s, s:s, s:s, s:s}", "platform", os->platform, "distro", os->distro,
                         "version", os->version, "arch", os->arch, "kernel", os->kernel);
}

json_t *hw_json_cpu(const hw_cpu_sample *cpu, const double load[3]) {
        return json_pack("{s:o, s:I, s:[o,o,o]}", "usage", num2(cpu->usage), "cores", (json_int_t)cpu->cores,
                         "loadAverage", num2(load[0]), num2(load[1]), num2(load[2]));
}

json_t *hw_json_mem(const hw_mem_info *m) {
        return json_pack("{s:I, s:I, s:I, s:I, s:o}", "total", (json_int_t)m->total_mb, "used",
                         (json_int_t)m->used_mb, "free", (json_int_t)m->free_mb, "cached",
                         (json_int_t)m->cached_mb, "usage", num2(m->usage));
}

json_t *hw_json_disk(const hw_disk_info *d) {
        return json_pack("{s:I, s:I, s:I, s:I}", "total", (json_int_t)d->total_mb, "used", (json_int_t)d->used_mb,
                         "free", (json_int_t)d->free_mb, "usage", (json_int_t)d->usage);
}

json_t *hw_json_net(const hw_net_counters *n) {
        return json_pack("{s:I, s:I, s:I, s:I}", "bytesReceived", (json_int_t)n->rx_bytes, "bytesSent",
                         (json_int_t)n->tx_bytes, "packetsReceived", (json_int_t)n->rx_packets, "packetsSent",
                         (json_int_t)n->tx_packets);
}
