#include <math.h>
#include <stdint.h>

#include "hardware/hw_json.h"

static json_int_t jint(uint64_t v) {
        return v > (uint64_t)INT64_MAX ? (json_int_t)INT64_MAX : (json_int_t)v;
}

/* json_real() refuses NaN and infinities; they become 0. */
static json_t *real_rounded(double v, double scale) {
        if (!isfinite(v))
                v = 0.0;
        return json_real(round(v * scale) / scale);
}

json_int_t hw_json_percent_int(double pct) {
        if (!(pct > 0.0))
                return 0;
        if (pct >= 100.0)
                return 100;
        return (json_int_t)lround(pct);
}

json_t *hw_json_os(const hw_os_info *os) {
        return json_pack("{s:s, s:s, s:s, s:s, s:s}", "platform", os->platform, "distro", os->distro, "version",
                         os->version, "arch", os->arch, "kernel", os->kernel);
}

json_t *hw_json_cpu(const hw_cpu_sample *cpu, const double load[3]) {
        double usage = cpu->usage < 0.0 ? 0.0 : cpu->usage > 100.0 ? 100.0 : cpu->usage;

        /* "o" steals the reference and json_pack releases it on failure;
         * a NULL from real_rounded makes json_pack fail cleanly. */
        return json_pack("{s:o, s:I, s:[o,o,o]}", "usage", real_rounded(usage, 10.0), "cores",
                         (json_int_t)cpu->cores, "loadAverage", real_rounded(load[0], 100.0),
                         real_rounded(load[1], 100.0), real_rounded(load[2], 100.0));
}

json_t *hw_json_mem(const hw_mem_info *m) {
        return json_pack("{s:I, s:I, s:I, s:I, s:I}", "total", jint(m->total_mb), "used", jint(m->used_mb), "free",
                         jint(m->free_mb), "cached", jint(m->cached_mb), "usage", (json_int_t)m->usage);
}

json_t *hw_json_disk(const hw_disk_info *d) {
        return json_pack("{s:I, s:I, s:I, s:I}", "total", jint(d->total_mb), "used", jint(d->used_mb), "free",
                         jint(d->free_mb), "usage", (json_int_t)d->usage);
}

json_t *hw_json_net(const hw_net_counters *n) {
        return json_pack("{s:I, s:I, s:I, s:I}", "bytesReceived", jint(n->rx_bytes), "bytesSent", jint(n->tx_bytes),
                         "packetsReceived", jint(n->rx_packets), "packetsSent", jint(n->tx_packets));
}
