/* libFuzzer target for the nvidia-smi output parsers (src/hardware/gpu_smi.c)
 * and what consumes their result: the same bytes go to the --query-gpu
 * parser, the --query-compute-apps parser (against that result and against a
 * fixed one-GPU list), the CUDA banner parser and the JSON builders. Seeds:
 * tests/fuzz/corpus/smi/ (real captured outputs and error messages). */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "hardware/gpu.h"
#include "hardware/gpu_smi.h"

static void check_list(const gpu_list *list) {
        json_t *j;
        size_t i, k;

        assert(list->n_devices <= GPU_MAX_DEVICES);
        for (i = 0; i < list->n_devices; i++) {
                const gpu_device *d = &list->devices[i];
                assert(!d->has_utilization || (d->utilization >= 0 && d->utilization <= 100));
                assert(!d->has_memory_total || d->memory_total_mib >= 0);
                assert(!d->has_power_draw || d->power_draw_w >= 0);
                assert(d->n_errors <= GPU_MAX_ERRORS);
                assert(d->n_processes <= GPU_MAX_PROCESSES);
                assert((d->status == GPU_STATUS_ERROR) == (d->n_errors > 0));
                for (k = 0; k < d->n_processes; k++)
                        assert(d->processes[k].pid > 0);
                /* Every string a parser produced is valid JSON text. */
                if (d->name) {
                        j = json_string(d->name);
                        assert(j);
                        json_decref(j);
                }
        }
        j = gpu_json_metrics(list);
        assert(j && json_array_size(j) == list->n_devices);
        json_decref(j);
        j = gpu_json_inventory(list);
        assert(j);
        json_decref(j);
        j = gpu_json_status(list);
        assert(j);
        json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char one[] =
                "0, NVIDIA H100 80GB HBM3, GPU-00000000-0000-0000-0000-000000000000, 81559, 19818, "
                "00000000:00:09.0, 590.48.01, 100, 59, 631.95, 700.00\n";
        const char *text = (const char *)data;
        gpu_list *list = NULL, *fixed = NULL;
        char err[256], *v = NULL, bus[17], *c;

        if (gpu_smi_parse_query(text, size, err, sizeof err, &list) == 0) {
                check_list(list);
                if (gpu_smi_parse_apps(text, size, err, sizeof err, list) == 0)
                        check_list(list);
                gpu_list_free(list);
        }
        if (gpu_smi_parse_query(one, sizeof one - 1, NULL, 0, &fixed) == 0) {
                gpu_smi_parse_apps(text, size, NULL, 0, fixed);
                check_list(fixed);
                gpu_list_free(fixed);
        }
        if (gpu_smi_parse_banner_cuda(text, size, &v) == 0) {
                assert(v[0] >= '0' && v[0] <= '9' && strlen(v) <= 15);
                free(v);
        }
        c = gpu_strndup_clean(text, size);
        if (c) {
                json_t *j = json_string(c);
                assert(j);
                json_decref(j);
                if (gpu_pci_bus_id_normalize(c, bus))
                        assert(strlen(bus) == 16);
                free(c);
        }
        return 0;
}
