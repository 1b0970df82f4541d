/* libFuzzer target for the /proc parsers of src/hardware: the same input is
 * fed to every pure parser (proc/stat, meminfo, loadavg, uptime, net/dev,
 * net/route, cpuinfo, os-release) and each result's invariants are checked,
 * including that every string the parsers produce is accepted by jansson
 * (valid UTF-8), since they end up in protocol messages. */
#include <net/if.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "hardware/hw_cpu.h"
#include "hardware/hw_disk.h"
#include "hardware/hw_json.h"
#include "hardware/hw_mem.h"
#include "hardware/hw_net.h"
#include "hardware/hw_os.h"

#define CHECK(x)                \
        do {                    \
                if (!(x))       \
                        abort(); \
        } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_string(const char *s, size_t cap) {
        json_t *j;

        CHECK(strlen(s) < cap);
        j = json_string(s);
        CHECK(j != NULL);
        json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *text = (const char *)data;
        hw_cpu_sampler *s;
        hw_cpu_stat st;
        hw_cpu_sample cs;
        hw_mem_info m;
        hw_net_counters nc;
        hw_os_release rel;
        hw_disk_info d;
        char ifname[IFNAMSIZ], model[128];
        double load[3], pct;
        uint64_t up;
        json_t *j;

        if (hw_cpu_parse_stat(text, size, &st) == 0) {
                s = hw_cpu_sampler_new();
                CHECK(s != NULL);
                hw_cpu_sampler_feed(s, &st, &cs);
                CHECK(cs.since_boot && cs.usage >= 0.0 && cs.usage <= 100.0 && cs.cores >= 1);
                hw_cpu_sampler_feed(s, &st, &cs);
                CHECK(!cs.since_boot && cs.usage >= 0.0 && cs.usage <= 100.0);
                if (hw_cpu_usage_between(&(hw_cpu_times){ 0 }, &st.total, &pct) == 0)
                        CHECK(pct >= 0.0 && pct <= 100.0);
                hw_cpu_sampler_free(s);
        }

        if (hw_mem_parse(text, size, &m) == 0) {
                CHECK(m.total_kb > 0 && m.available_kb <= m.total_kb);
                CHECK(m.used_mb + m.free_mb == m.total_mb);
                CHECK(m.usage >= 0 && m.usage <= 100);
                j = hw_json_mem(&m);
                CHECK(j != NULL);
                json_decref(j);
        }

        if (hw_cpu_parse_loadavg(text, size, load) == 0) {
                for (int i = 0; i < 3; i++)
                        CHECK(load[i] >= 0.0);
                cs = (hw_cpu_sample){ .usage = 50, .cores = 1 };
                j = hw_json_cpu(&cs, load);
                CHECK(j != NULL);
                json_decref(j);
        }

        hw_os_parse_uptime(text, size, &up);

        if (hw_net_parse_dev(text, size, &nc) == 0) {
                j = hw_json_net(&nc);
                CHECK(j != NULL);
                json_decref(j);
        }

        if (hw_net_parse_default_route(text, size, ifname, sizeof(ifname)) == 0) {
                CHECK(ifname[0] != '\0' && strlen(ifname) < IFNAMSIZ);
                for (const char *c = ifname; *c; c++)
                        CHECK((unsigned char)*c > ' ' && *c != ':' && *c != '/');
        }

        CHECK(hw_cpu_parse_model(text, size, model, sizeof(model)) == 0);
        CHECK(model[0] != '\0');
        check_string(model, sizeof(model));

        CHECK(hw_os_parse_os_release(text, size, &rel) == 0);
        check_string(rel.name, sizeof(rel.name));
        check_string(rel.version, sizeof(rel.version));
        check_string(rel.version_id, sizeof(rel.version_id));
        check_string(rel.pretty_name, sizeof(rel.pretty_name));

        /* statvfs arithmetic on the first 32 input bytes. */
        if (size >= 32) {
                uint64_t v[4];
                memcpy(v, data, sizeof(v));
                hw_disk_compute(v[0], v[1], v[2], v[3], &d);
                CHECK(d.usage >= 0 && d.usage <= 100);
                CHECK(v[0] == 0 || d.used_mb <= d.total_mb);
        }
        return 0;
}
