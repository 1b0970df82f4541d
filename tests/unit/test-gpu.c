/* Unit tests of src/hardware/gpu*.c: the nvidia-smi parsers on real captured
 * output, the NVML backend against the fake libnvidia-ml (tests/helpers/
 * fake-nvml.c, built by fake-nvml.cmake), the nvidia-smi backend against the
 * fake nvidia-smi script through a real loop, and the JSON builders. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/loop.h"
#include "core/util.h"
#include "hardware/gpu.h"
#include "hardware/gpu_nvml.h"
#include "hardware/gpu_smi.h"

#ifndef AIWM_FIXTURES
#define AIWM_FIXTURES "tests/fixtures"
#endif
#ifndef AIWM_BUILD_DIR
#define AIWM_BUILD_DIR "build"
#endif

#define SMI_FIX AIWM_FIXTURES "/nvidia-smi"
#define FAKE_SMI AIWM_FIXTURES "/../helpers/fake-nvidia-smi"
#define FAKE_NVML AIWM_BUILD_DIR "/fake-nvml/libnvidia-ml.so.1"
#define FAKE_NVML_NOV3 AIWM_BUILD_DIR "/fake-nvml-nov3/libnvidia-ml.so.1"
#define FAKE_NVML_LEGACY AIWM_BUILD_DIR "/fake-nvml-legacy/libnvidia-ml.so.1"

#define H100_UUID "GPU-00000000-0000-0000-0000-000000000000"

static const char *const fake_env[] = {
        "AIWM_FAKE_NVML_FIXTURE", "AIWM_FAKE_NVML_FAIL_INIT", "AIWM_FAKE_NVML_FAIL_COUNT",
        "AIWM_FAKE_NVML_LOST", "AIWM_FAKE_NVML_XID", "AIWM_FAKE_NVML_PROC_STRIDE",
        "AIWM_FAKE_NVML_NO_EVENTS", "AIWM_FAKE_SMI_DIR", "AIWM_FAKE_SMI_MODE",
        "AIWM_FAKE_SMI_INVALID_FIELDS", "AIWM_FAKE_SMI_PIDFILE", "AIWM_FAKE_SMI_LOG",
};

static int reset_env(void **state) {
        size_t i;

        for (i = 0; i < sizeof fake_env / sizeof fake_env[0]; i++)
                unsetenv(fake_env[i]);
        return 0;
}

static int count_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        int n = 0;

        assert_non_null(d);
        while (readdir(d))
                n++;
        closedir(d);
        return n;
}

static bool have_file(const char *p) {
        return access(p, R_OK) == 0;
}

#define REQUIRE_FAKE_NVML(path)                                                   \
        do {                                                                      \
                if (!have_file(path)) {                                           \
                        print_message("skipped: %s not built\n", path);           \
                        skip();                                                   \
                }                                                                 \
        } while (0)

/* ---- small helpers ---- */

static char *read_fixture(const char *rel, size_t *ret_len) {
        char path[512], *data = NULL;
        size_t len = 0;

        snprintf(path, sizeof path, "%s/%s", SMI_FIX, rel);
        assert_int_equal(util_read_file(path, 1 << 20, &data, &len), 0);
        if (ret_len)
                *ret_len = len;
        return data;
}

static gpu_list *parse_query_str(const char *text, int expect_r, char *err, size_t err_size) {
        gpu_list *list = NULL;
        int r = gpu_smi_parse_query(text, strlen(text), err, err_size, &list);

        assert_int_equal(r, expect_r);
        if (r < 0)
                assert_null(list);
        return list;
}

static bool has_error(const gpu_device *d, const char *needle) {
        size_t i;

        for (i = 0; i < d->n_errors; i++)
                if (strstr(d->errors[i], needle))
                        return true;
        return false;
}

/* ---- parsers ---- */

/* What nvidia-smi prints for GPU_SMI_QUERY_FIELDS on each captured GPU (the
 * fake script's output for those fixtures, i.e. the captured values). */
typedef struct query_case {
        const char *what;
        const char *text;
        int r;
        size_t n;
        /* expectations for device 0 */
        const char *name, *bus, *driver;
        int64_t total, used;       /* -1: absent */
        int util, temp;            /* -1: absent */
        double power, limit;       /* NAN: absent */
        gpu_status status;
        const char *error;         /* substring of an error, or NULL */
} query_case;

static const query_case query_cases[] = {
        { "h100 load",
          "0, NVIDIA H100 80GB HBM3, " H100_UUID ", 81559, 19818, 00000000:00:09.0, 590.48.01, 100, 59, 631.95, 700.00\n",
          0, 1, "NVIDIA H100 80GB HBM3", "00000000:00:09.0", "590.48.01", 81559, 19818, 100, 59, 631.95, 700.0,
          GPU_STATUS_ACTIVE, NULL },
        { "h100 idle",
          "0, NVIDIA H100 80GB HBM3, " H100_UUID ", 81559, 0, 00000000:00:09.0, 590.48.01, 0, 41, 69.85, 700.00\n",
          0, 1, "NVIDIA H100 80GB HBM3", "00000000:00:09.0", "590.48.01", 81559, 0, 0, 41, 69.85, 700.0,
          GPU_STATUS_IDLE, NULL },
        { "h200 MIG: utilization [N/A]",
          "0, NVIDIA H200, " H100_UUID ", 143771, 16959, 00000000:83:00.0, 590.48.01, [N/A], 36, 295.01, 700.00\n",
          0, 1, "NVIDIA H200", "00000000:83:00.0", "590.48.01", 143771, 16959, -1, 36, 295.01, 700.0,
          GPU_STATUS_IDLE, NULL },
        { "geforce without power management",
          "0, NVIDIA GeForce RTX 4080 SUPER, " H100_UUID ", 16376, 1474, 00000000:01:00.0, 595.71.05, 7, 46, [Not Supported], [Not Supported]\n",
          0, 1, "NVIDIA GeForce RTX 4080 SUPER", "00000000:01:00.0", "595.71.05", 16376, 1474, 7, 46, NAN, NAN,
          GPU_STATUS_ACTIVE, NULL },
        { "l40s idle at 100 %, CRLF",
          "0, NVIDIA L40S, " H100_UUID ", 46068, 0, 00000000:01:00.0, 595.80, 100, 63, 144.97, 350.00\r\n",
          0, 1, "NVIDIA L40S", "00000000:01:00.0", "595.80", 46068, 0, 100, 63, 144.97, 350.0,
          GPU_STATUS_ACTIVE, NULL },
        { "two GPUs",
          "0, NVIDIA H100 80GB HBM3, " H100_UUID ", 81559, 19818, 00000000:00:09.0, 590.48.01, 100, 59, 631.95, 700.00\n"
          "1, NVIDIA H100 80GB HBM3, GPU-00000000-0000-0000-0000-000000000001, 81559, 0, 00000000:84:00.0, 590.48.01, 0, 41, 69.85, 700.00\n",
          0, 2, "NVIDIA H100 80GB HBM3", "00000000:00:09.0", "590.48.01", 81559, 19818, 100, 59, 631.95, 700.0,
          GPU_STATUS_ACTIVE, NULL },
        { "with units (csv without nounits)",
          "0, NVIDIA H100 80GB HBM3, " H100_UUID ", 81559 MiB, 19818 MiB, 00000000:00:09.0, 590.48.01, 100 %, 59, 631.95 W, 700.00 W\n",
          0, 1, "NVIDIA H100 80GB HBM3", "00000000:00:09.0", "590.48.01", 81559, 19818, 100, 59, 631.95, 700.0,
          GPU_STATUS_ACTIVE, NULL },
        { "a name with commas",
          "3, NVIDIA, Odd, Name, GPU-x, 1024, 1, 0000:01:00.0, 550.54.15, 0, 30, 10.5, 100\n",
          0, 1, "NVIDIA, Odd, Name", "00000000:01:00.0", "550.54.15", 1024, 1, 0, 30, 10.5, 100.0,
          GPU_STATUS_IDLE, NULL },
        { "lost GPU",
          "0, NVIDIA H100 80GB HBM3, " H100_UUID ", [GPU is lost], [GPU is lost], 00000000:00:09.0, 590.48.01, [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost]\n",
          0, 1, "NVIDIA H100 80GB HBM3", "00000000:00:09.0", "590.48.01", -1, -1, -1, -1, NAN, NAN,
          GPU_STATUS_ERROR, "GPU is lost" },
        { "unknown error on one field",
          "0, NVIDIA H100 80GB HBM3, " H100_UUID ", 81559, 19818, 00000000:00:09.0, 590.48.01, 100, [Unknown Error], 631.95, 700.00\n",
          0, 1, "NVIDIA H100 80GB HBM3", "00000000:00:09.0", "590.48.01", 81559, 19818, 100, -1, 631.95, 700.0,
          GPU_STATUS_ERROR, "temperature.gpu: Unknown Error" },
        { "garbage values become absent",
          "0, NVIDIA H100 80GB HBM3, " H100_UUID ", lots, -5, 19:00, , 250, hot, 1e400, -3\n",
          0, 1, "NVIDIA H100 80GB HBM3", NULL, NULL, -1, -1, -1, -1, NAN, NAN,
          GPU_STATUS_IDLE, NULL },
        { "N/A and Insufficient Permissions",
          "0, NVIDIA H100 80GB HBM3, [Insufficient Permissions], N/A, N/A, [N/A], [N/A], N/A, N/A, N/A, N/A\n",
          0, 1, "NVIDIA H100 80GB HBM3", NULL, NULL, -1, -1, -1, -1, NAN, NAN,
          GPU_STATUS_IDLE, NULL },
        { "empty output", "", 0, 0, NULL, NULL, NULL, 0, 0, 0, 0, 0, 0, GPU_STATUS_IDLE, NULL },
        { "the original's bad field (PROTOCOL §7)",
          "Field \"cuda_version\" is not a valid field to query.\n\n", -EBADMSG, 0, NULL, NULL, NULL,
          0, 0, 0, 0, 0, 0, GPU_STATUS_IDLE, "Field \"cuda_version\" is not a valid field to query." },
        { "driver not loaded",
          "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n\n",
          -EBADMSG, 0, NULL, NULL, NULL, 0, 0, 0, 0, 0, 0, GPU_STATUS_IDLE, "NVIDIA-SMI has failed" },
        { "no devices", "No devices were found\n", -EBADMSG, 0, NULL, NULL, NULL, 0, 0, 0, 0, 0, 0,
          GPU_STATUS_IDLE, "No devices were found" },
        { "bad index", "x, a, b, 1, 1, 0000:01:00.0, 1, 1, 1, 1, 1\n", -EBADMSG, 0, NULL, NULL, NULL,
          0, 0, 0, 0, 0, 0, GPU_STATUS_IDLE, NULL },
};

static void check_device(const query_case *c, const gpu_device *d) {
        if (c->name)
                assert_string_equal(d->name, c->name);
        if (c->bus)
                assert_string_equal(d->pci_bus_id, c->bus);
        else
                assert_null(d->pci_bus_id);
        if (c->driver)
                assert_string_equal(d->driver_version, c->driver);
        else
                assert_null(d->driver_version);
        assert_int_equal(d->has_memory_total, c->total >= 0);
        if (c->total >= 0)
                assert_int_equal(d->memory_total_mib, c->total);
        assert_int_equal(d->has_memory_used, c->used >= 0);
        if (c->used >= 0)
                assert_int_equal(d->memory_used_mib, c->used);
        assert_int_equal(d->has_utilization, c->util >= 0);
        if (c->util >= 0)
                assert_int_equal(d->utilization, c->util);
        assert_int_equal(d->has_temperature, c->temp >= 0);
        if (c->temp >= 0)
                assert_int_equal(d->temperature, c->temp);
        assert_int_equal(d->has_power_draw, !isnan(c->power));
        if (!isnan(c->power))
                assert_true(fabs(d->power_draw_w - c->power) < 1e-9);
        assert_int_equal(d->has_power_limit, !isnan(c->limit));
        if (!isnan(c->limit))
                assert_true(fabs(d->power_limit_w - c->limit) < 1e-9);
        assert_int_equal(d->status, c->status);
        if (c->error)
                assert_true(has_error(d, c->error));
        else
                assert_int_equal(d->n_errors, 0);
        assert_false(d->has_processes);
}

static void test_parse_query(void **state) {
        size_t i;

        for (i = 0; i < sizeof query_cases / sizeof query_cases[0]; i++) {
                const query_case *c = &query_cases[i];
                char err[256];
                gpu_list *list;

                print_message("case: %s\n", c->what);
                list = parse_query_str(c->text, c->r, err, sizeof err);
                if (c->r < 0) {
                        /* err holds nvidia-smi's message (its first line). */
                        if (c->error)
                                assert_non_null(strstr(err, c->error));
                        continue;
                }
                assert_int_equal(list->n_devices, c->n);
                if (c->n > 0)
                        check_device(c, &list->devices[0]);
                gpu_list_free(list);
        }
}

static void test_parse_query_two(void **state) {
        gpu_list *list = parse_query_str(query_cases[5].text, 0, NULL, 0);

        assert_int_equal(list->n_devices, 2);
        assert_int_equal(list->devices[1].index, 1);
        assert_string_equal(list->devices[1].uuid, "GPU-00000000-0000-0000-0000-000000000001");
        assert_string_equal(list->devices[1].pci_bus_id, "00000000:84:00.0");
        assert_int_equal(list->devices[1].status, GPU_STATUS_IDLE);
        gpu_list_free(list);
}

static void test_parse_query_too_many(void **state) {
        char *text = NULL;
        size_t len = 0, i;
        gpu_list *list = NULL;
        FILE *f = open_memstream(&text, &len);

        for (i = 0; i <= GPU_MAX_DEVICES; i++)
                fprintf(f, "%zu, G, U%zu, 1, 1, 0:1:0.0, 1, 1, 1, 1, 1\n", i, i);
        fclose(f);
        assert_int_equal(gpu_smi_parse_query(text, len, NULL, 0, &list), -E2BIG);
        assert_null(list);
        free(text);
}

static void test_parse_apps(void **state) {
        char *apps;
        size_t len;
        gpu_list *list = parse_query_str(query_cases[0].text, 0, NULL, 0);
        gpu_device *d = &list->devices[0];
        /* What nvidia-smi prints for GPU_SMI_APPS_FIELDS, from the h100 load capture. */
        static const char text[] =
                H100_UUID ", 11327, /root/tools/memhog, 2566\n"
                H100_UUID ", 11328, /root/tools/memhog, 1542\n"
                H100_UUID ", 11345, ./gpu_burn, 15690\n"
                "GPU-ffffffff-0000-0000-0000-000000000000, 1, other-gpu, 5\n"
                H100_UUID ", 77, a, name, with, commas, [N/A]\n"
                H100_UUID ", [N/A], ghost, 5\n"
                H100_UUID ", 78, [Insufficient Permissions], 7\n";

        assert_int_equal(gpu_smi_parse_apps(text, strlen(text), NULL, 0, list), 0);
        assert_true(d->has_processes);
        assert_int_equal(d->n_processes, 5);
        assert_int_equal(d->processes[0].pid, 11327);
        assert_string_equal(d->processes[0].name, "/root/tools/memhog");
        assert_true(d->processes[0].has_memory_used);
        assert_int_equal(d->processes[0].memory_used_mib, 2566);
        assert_int_equal(d->processes[2].pid, 11345);
        assert_string_equal(d->processes[2].name, "./gpu_burn");
        assert_int_equal(d->processes[2].memory_used_mib, 15690);
        assert_string_equal(d->processes[3].name, "a, name, with, commas");
        assert_false(d->processes[3].has_memory_used);
        assert_null(d->processes[4].name);
        assert_int_equal(d->status, GPU_STATUS_ACTIVE);

        /* Bad input leaves the list alone. */
        assert_int_equal(gpu_smi_parse_apps("Unable to determine the device handle\n", 38, NULL, 0, list),
                         -EBADMSG);
        assert_int_equal(d->n_processes, 5);
        gpu_list_free(list);

        /* The captured csv with header and units is not our format... */
        apps = read_fixture("h100/load/query-compute-apps.csv", &len);
        list = parse_query_str(query_cases[0].text, 0, NULL, 0);
        assert_int_equal(gpu_smi_parse_apps(apps, len, NULL, 0, list), -EBADMSG);
        free(apps);
        /* ...and an idle GPU without processes becomes idle with an empty list. */
        gpu_list_free(list);
        list = parse_query_str(query_cases[1].text, 0, NULL, 0);
        assert_int_equal(gpu_smi_parse_apps("", 0, NULL, 0, list), 0);
        assert_true(list->devices[0].has_processes);
        assert_int_equal(list->devices[0].n_processes, 0);
        assert_int_equal(list->devices[0].status, GPU_STATUS_IDLE);
        gpu_list_free(list);
}

static void test_parse_banner(void **state) {
        static const struct {
                const char *file;
                const char *want;
        } files[] = {
                { "h100/load/banner.txt", "13.1" },
                { "h100/idle/q.txt", "13.1" },
                { "h200-mig/load/banner.txt", "13.1" },
                { "l40s/idle/banner.txt", "13.2" },
                { "rtx4080s/load/q.txt", "13.2" },
                /* 610 drivers: "CUDA UMD Version: 13.3" in the banner and
                 * "CUDA Version : 13.3 [Deprecated; …]" in -q */
                { "rtx2080s-610/load/banner.txt", "13.3" },
                { "rtx2080s-610/load/q.txt", "13.3" },
        };
        static const struct {
                const char *text;
                const char *want;
        } strs[] = {
                { "| NVIDIA-SMI 550.54.15    Driver Version: 550.54.15    CUDA Version: 12.4     |\n", "12.4" },
                { "CUDA Version: 12.4", "12.4" },
                { "CUDA Version: N/A |", NULL },
                { "CUDA Version: 12.", NULL },
                { "CUDA Version: 12.4x", NULL },
                { "CUDA version : Deprecated, see \"CUDA UMD version\" instead\n", NULL },
                { "CUDA Version:", NULL },
                { "CUDA", NULL },
                { "", NULL },
                { "CUDA Version: 1234567890.1234567 |", NULL },
        };
        size_t i, len;
        char *v, *text;

        for (i = 0; i < sizeof files / sizeof files[0]; i++) {
                text = read_fixture(files[i].file, &len);
                v = NULL;
                assert_int_equal(gpu_smi_parse_banner_cuda(text, len, &v), 0);
                assert_string_equal(v, files[i].want);
                free(v);
                free(text);
        }
        for (i = 0; i < sizeof strs / sizeof strs[0]; i++) {
                v = NULL;
                assert_int_equal(gpu_smi_parse_banner_cuda(strs[i].text, strlen(strs[i].text), &v),
                                 strs[i].want ? 0 : -ENOENT);
                if (strs[i].want)
                        assert_string_equal(v, strs[i].want);
                else
                        assert_null(v);
                free(v);
        }
}

static void test_pci_normalize(void **state) {
        static const struct {
                const char *in, *out;
        } t[] = {
                { "00000000:19:00.0", "00000000:19:00.0" },
                { "0000:19:00.0", "00000000:19:00.0" },
                { "0000:af:1f.7", "00000000:AF:1F.7" },
                { "1:2:3.4", "00000001:02:03.4" },
                { "000000000:19:00.0", NULL },
                { "0000:119:00.0", NULL },
                { "0000:19:00", NULL },
                { "0000:19:00.0 ", NULL },
                { "[N/A]", NULL },
                { "", NULL },
        };
        char out[17];
        size_t i;

        for (i = 0; i < sizeof t / sizeof t[0]; i++) {
                memcpy(out, "untouched", 10);
                assert_int_equal(gpu_pci_bus_id_normalize(t[i].in, out), t[i].out != NULL);
                assert_string_equal(out, t[i].out ? t[i].out : "untouched");
        }
}

static void test_strndup_clean(void **state) {
        static const struct {
                const char *in;
                size_t len;
                const char *out;
        } t[] = {
                { "  NVIDIA H100  \r\n", 100, "NVIDIA H100" },
                { "a\tb\x01" "c", 100, "a?b?c" },
                { "caf\xc3\xa9", 100, "caf\xc3\xa9" },
                { "bad\xff\xfe", 100, "bad??" },
                { "cut\xc3\xa9", 4, "cut?" },
                { "overlong\xc0\xaf", 100, "overlong??" },
                { "surrogate\xed\xa0\x80", 100, "surrogate???" },
                { "abcdef", 3, "abc" },
        };
        size_t i;

        for (i = 0; i < sizeof t / sizeof t[0]; i++) {
                char *c = gpu_strndup_clean(t[i].in, t[i].len);
                assert_string_equal(c, t[i].out);
                free(c);
        }
}

/* ---- JSON ---- */

static char *dump(json_t *j) {
        char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15));
        json_decref(j);
        return s;
}

static void test_json(void **state) {
        static const char apps[] = H100_UUID ", 11327, /root/tools/memhog, 2566\n"
                                   H100_UUID ", 11345, ./gpu_burn, [N/A]\n";
        gpu_list *list = parse_query_str(query_cases[0].text, 0, NULL, 0);
        gpu_list *nopower = parse_query_str(query_cases[3].text, 0, NULL, 0);
        gpu_list *mig = parse_query_str(query_cases[2].text, 0, NULL, 0);
        gpu_list *empty = gpu_list_new(), *copy;
        char *s;

        assert_int_equal(gpu_smi_parse_apps(apps, strlen(apps), NULL, 0, list), 0);
        list->devices[0].cuda_version = strdup("13.1");

        s = dump(gpu_json_inventory(list));
        assert_string_equal(s, "[{\"deviceId\":\"0\",\"model\":\"NVIDIA H100 80GB HBM3\",\"memoryTotal\":81559,"
                               "\"pcieBusId\":\"00000000:00:09.0\",\"driverVersion\":\"590.48.01\","
                               "\"cudaVersion\":\"13.1\",\"uuid\":\"" H100_UUID "\"}]");
        free(s);
        s = dump(gpu_json_metrics(list));
        assert_string_equal(s, "[{\"deviceId\":\"0\",\"model\":\"NVIDIA H100 80GB HBM3\",\"memoryTotal\":81559,"
                               "\"pcieBusId\":\"00000000:00:09.0\",\"driverVersion\":\"590.48.01\","
                               "\"cudaVersion\":\"13.1\",\"uuid\":\"" H100_UUID "\",\"memoryUsed\":19818,"
                               "\"memoryUsage\":24,\"utilization\":100,\"temperature\":59,"
                               "\"powerDraw\":631.95,\"powerLimit\":700,\"processes\":["
                               "{\"pid\":11327,\"processName\":\"/root/tools/memhog\",\"memoryUsed\":2566},"
                               "{\"pid\":11345,\"processName\":\"./gpu_burn\"}],"
                               "\"status\":\"active\",\"errors\":[]}]");
        free(s);
        s = dump(gpu_json_status(list));
        assert_string_equal(s, "[{\"deviceId\":\"0\",\"utilization\":100,\"status\":\"active\"}]");
        free(s);

        /* Absent fields are omitted, never null. */
        s = dump(gpu_json_metrics(nopower));
        assert_null(strstr(s, "power"));
        assert_null(strstr(s, "null"));
        assert_null(strstr(s, "processes")); /* not read: unknown, not [] */
        free(s);
        s = dump(gpu_json_status(mig));
        assert_string_equal(s, "[{\"deviceId\":\"0\",\"status\":\"idle\"}]");
        free(s);

        /* Errors. */
        gpu_device_add_error(&mig->devices[0], "GPU is lost (NVML)");
        gpu_device_add_error(&mig->devices[0], "GPU is lost (NVML)");
        s = dump(gpu_json_status(mig));
        assert_string_equal(s, "[{\"deviceId\":\"0\",\"status\":\"error\"}]");
        free(s);
        s = dump(gpu_json_metrics(mig));
        assert_non_null(strstr(s, "\"status\":\"error\",\"errors\":[\"GPU is lost (NVML)\"]"));
        free(s);

        /* A copy serialises the same. */
        copy = gpu_list_dup(list);
        s = dump(gpu_json_metrics(list));
        {
                char *t = dump(gpu_json_metrics(copy));
                assert_string_equal(s, t);
                free(t);
        }
        free(s);

        s = dump(gpu_json_inventory(empty));
        assert_string_equal(s, "[]");
        free(s);

        gpu_list_free(copy);
        gpu_list_free(list);
        gpu_list_free(nopower);
        gpu_list_free(mig);
        gpu_list_free(empty);
}

/* ---- NVML backend ---- */

static gpu_nvml *nvml_open_fixture(const char *lib, const char *fixture) {
        char path[512], err[512];
        gpu_nvml *n = NULL;

        snprintf(path, sizeof path, "%s/%s/nvml.txt", SMI_FIX, fixture);
        setenv("AIWM_FAKE_NVML_FIXTURE", path, 1);
        assert_int_equal(gpu_nvml_open(lib, AIWM_FIXTURES "/gpu-proc", err, sizeof err, &n), 0);
        return n;
}

static gpu_list *nvml_sample(gpu_nvml *n, uint64_t now) {
        gpu_list *list = NULL;

        assert_int_equal(gpu_nvml_query(n, now, 1000, &list), 0);
        assert_non_null(list);
        return list;
}

static void test_nvml_h100(void **state) {
        gpu_nvml *n;
        gpu_list *list;
        gpu_device *d;

        REQUIRE_FAKE_NVML(FAKE_NVML);
        n = nvml_open_fixture(FAKE_NVML, "h100/load");
        list = nvml_sample(n, 1);
        assert_null(list->reason);
        assert_int_equal(list->n_devices, 1);
        d = &list->devices[0];
        assert_string_equal(d->name, "NVIDIA H100 80GB HBM3");
        assert_string_equal(d->uuid, H100_UUID);
        assert_string_equal(d->pci_bus_id, "00000000:00:09.0");
        assert_string_equal(d->driver_version, "590.48.01");
        assert_string_equal(d->cuda_version, "13.1");
        assert_int_equal(d->memory_total_mib, 81559);
        assert_int_equal(d->memory_used_mib, 19818);
        assert_int_equal(d->utilization, 100);
        assert_int_equal(d->temperature, 59);
        assert_true(fabs(d->power_draw_w - 631.95) < 1e-9);
        assert_true(fabs(d->power_limit_w - 700.0) < 1e-9);
        assert_true(d->has_processes);
        assert_int_equal(d->n_processes, 3);
        assert_int_equal(d->processes[2].pid, 11345);
        assert_string_equal(d->processes[2].name, "./gpu_burn");
        assert_int_equal(d->processes[2].memory_used_mib, 15690);
        assert_int_equal(d->status, GPU_STATUS_ACTIVE);
        assert_int_equal(d->n_errors, 0);
        assert_null(gpu_nvml_notes(n));
        gpu_list_free(list);
        gpu_nvml_close(n);
}

static void test_nvml_not_supported(void **state) {
        gpu_nvml *n;
        gpu_list *list;
        gpu_device *d;

        REQUIRE_FAKE_NVML(FAKE_NVML);
        n = nvml_open_fixture(FAKE_NVML, "h200-mig/load");
        list = nvml_sample(n, 1);
        d = &list->devices[0];
        assert_false(d->has_utilization); /* MIG: NOT_SUPPORTED */
        assert_true(d->has_temperature);
        assert_int_equal(d->n_errors, 0);
        assert_int_equal(d->status, GPU_STATUS_ACTIVE); /* by its processes */
        gpu_list_free(list);
        gpu_nvml_close(n);

        n = nvml_open_fixture(FAKE_NVML, "geforce-nopower/load");
        list = nvml_sample(n, 1);
        d = &list->devices[0];
        assert_false(d->has_power_draw);
        assert_false(d->has_power_limit);
        assert_int_equal(d->n_errors, 0);
        assert_int_equal(d->n_processes, 3);
        gpu_list_free(list);
        gpu_nvml_close(n);
}

static void test_nvml_lost(void **state) {
        gpu_nvml *n;
        gpu_list *list;

        REQUIRE_FAKE_NVML(FAKE_NVML);
        n = nvml_open_fixture(FAKE_NVML, "multi/load");
        setenv("AIWM_FAKE_NVML_LOST", "1", 1);
        list = nvml_sample(n, 1);
        assert_int_equal(list->n_devices, 2);
        assert_int_equal(list->devices[0].status, GPU_STATUS_ACTIVE);
        assert_int_equal(list->devices[1].status, GPU_STATUS_ERROR);
        assert_true(has_error(&list->devices[1], "GPU is lost"));
        assert_int_equal(list->devices[1].n_errors, 1);
        assert_null(list->devices[1].name); /* unreadable: absent, not stale */
        assert_false(list->devices[1].has_utilization);
        gpu_list_free(list);

        unsetenv("AIWM_FAKE_NVML_LOST");
        list = nvml_sample(n, 2);
        assert_int_equal(list->devices[1].status, GPU_STATUS_IDLE);
        assert_int_equal(list->devices[1].n_errors, 0);
        assert_string_equal(list->devices[1].pci_bus_id, "00000000:84:00.0");
        gpu_list_free(list);
        gpu_nvml_close(n);
}

static void test_nvml_init_failure(void **state) {
        gpu_nvml *n;
        gpu_list *list;

        REQUIRE_FAKE_NVML(FAKE_NVML);
        setenv("AIWM_FAKE_NVML_FAIL_INIT", "1", 1);
        n = nvml_open_fixture(FAKE_NVML, "h100/load");
        list = nvml_sample(n, 1);
        assert_int_equal(list->n_devices, 0);
        assert_non_null(list->reason);
        assert_non_null(strstr(list->reason, "Driver Not Loaded"));
        gpu_list_free(list);

        unsetenv("AIWM_FAKE_NVML_FAIL_INIT");
        list = nvml_sample(n, 2);
        assert_null(list->reason);
        assert_int_equal(list->n_devices, 1);
        gpu_list_free(list);

        /* The driver goes away at run time: empty + reason, no stale GPUs;
         * NVML is initialised again once it is back. */
        setenv("AIWM_FAKE_NVML_FAIL_COUNT", "1", 1);
        list = nvml_sample(n, 3);
        assert_int_equal(list->n_devices, 0);
        assert_non_null(strstr(list->reason, "nvmlDeviceGetCount"));
        gpu_list_free(list);
        unsetenv("AIWM_FAKE_NVML_FAIL_COUNT");
        list = nvml_sample(n, 4);
        assert_int_equal(list->n_devices, 1);
        assert_int_equal(list->devices[0].status, GPU_STATUS_ACTIVE);
        gpu_list_free(list);
        gpu_nvml_close(n);
}

static void test_nvml_xid(void **state) {
        gpu_nvml *n;
        gpu_list *list;

        REQUIRE_FAKE_NVML(FAKE_NVML);
        n = nvml_open_fixture(FAKE_NVML, "multi/load");
        setenv("AIWM_FAKE_NVML_XID", "1:79", 1);
        list = nvml_sample(n, 10000);
        assert_int_equal(list->devices[0].status, GPU_STATUS_ACTIVE);
        assert_int_equal(list->devices[1].status, GPU_STATUS_ERROR);
        assert_true(has_error(&list->devices[1], "critical XID 79"));
        /* The other fields are still read. */
        assert_true(list->devices[1].has_temperature);
        gpu_list_free(list);

        /* Held for xid_hold_ms (1000 in nvml_sample) after the event... */
        list = nvml_sample(n, 10999);
        assert_int_equal(list->devices[1].status, GPU_STATUS_ERROR);
        gpu_list_free(list);
        /* ...then cleared. */
        list = nvml_sample(n, 11000);
        assert_int_equal(list->devices[1].status, GPU_STATUS_IDLE);
        assert_int_equal(list->devices[1].n_errors, 0);
        gpu_list_free(list);
        gpu_nvml_close(n);

        /* Devices that cannot register events are noted. */
        setenv("AIWM_FAKE_NVML_NO_EVENTS", "1", 1);
        n = nvml_open_fixture(FAKE_NVML, "h100/load");
        assert_non_null(gpu_nvml_notes(n));
        assert_non_null(strstr(gpu_nvml_notes(n), "XID events unavailable on GPU 0"));
        gpu_nvml_close(n);
}

static void test_nvml_process_layouts(void **state) {
        static const char *const libs[] = { FAKE_NVML, FAKE_NVML, FAKE_NVML_NOV3, FAKE_NVML_LEGACY };
        static const char *const stride[] = { "24", "32", NULL, NULL };
        size_t i;

        for (i = 0; i < sizeof libs / sizeof libs[0]; i++) {
                gpu_nvml *n;
                gpu_list *list;
                gpu_device *d;

                REQUIRE_FAKE_NVML(libs[i]);
                print_message("lib %s stride %s\n", libs[i], stride[i] ? stride[i] : "-");
                if (stride[i])
                        setenv("AIWM_FAKE_NVML_PROC_STRIDE", stride[i], 1);
                else
                        unsetenv("AIWM_FAKE_NVML_PROC_STRIDE");
                n = nvml_open_fixture(libs[i], "h100/load");
                list = nvml_sample(n, 1);
                d = &list->devices[0];
                assert_int_equal(d->n_processes, 3);
                assert_int_equal(d->processes[0].pid, 11327);
                assert_int_equal(d->processes[0].memory_used_mib, 2566);
                assert_int_equal(d->processes[1].pid, 11328);
                assert_int_equal(d->processes[1].memory_used_mib, 1542);
                assert_int_equal(d->processes[2].pid, 11345);
                assert_int_equal(d->processes[2].memory_used_mib, 15690);
                assert_string_equal(d->pci_bus_id, "00000000:00:09.0");
                assert_string_equal(d->cuda_version, "13.1");
                assert_int_equal(d->memory_total_mib, 81559);
                gpu_list_free(list);
                gpu_nvml_close(n);
        }
}

static void test_nvml_legacy(void **state) {
        gpu_nvml *n;
        gpu_list *list;
        gpu_device *d;
        const char *notes;

        REQUIRE_FAKE_NVML(FAKE_NVML_LEGACY);
        n = nvml_open_fixture(FAKE_NVML_LEGACY, "h100/load");
        notes = gpu_nvml_notes(n);
        assert_non_null(notes);
        assert_non_null(strstr(notes, "nvmlDeviceGetPowerUsage missing: powerDraw disabled"));
        assert_non_null(strstr(notes, "nvmlSystemGetProcessName missing"));
        assert_null(strstr(notes, "powerLimit")); /* falls back to the enforced limit */
        list = nvml_sample(n, 1);
        d = &list->devices[0];
        assert_false(d->has_power_draw);
        assert_true(d->has_power_limit);
        assert_true(fabs(d->power_limit_w - 700.0) < 1e-9);
        /* Process names from <proc_root>/proc/<pid>/comm. */
        assert_string_equal(d->processes[0].name, "memhog");
        assert_string_equal(d->processes[2].name, "gpu_burn");
        assert_string_equal(d->pci_bus_id, "00000000:00:09.0"); /* from "0000:00:09.0" */
        assert_int_equal(d->status, GPU_STATUS_ACTIVE);
        gpu_list_free(list);
        gpu_nvml_close(n);
}

static void test_nvml_missing_library(void **state) {
        char err[512];
        gpu_nvml *n = NULL;

        assert_int_equal(gpu_nvml_open("/nonexistent/libnvidia-ml.so.1", NULL, err, sizeof err, &n),
                         -ENOENT);
        assert_null(n);
        assert_non_null(strstr(err, "/nonexistent/libnvidia-ml.so.1"));
        /* A library without NVML at all. */
        assert_int_equal(gpu_nvml_open("libm.so.6", NULL, err, sizeof err, &n), -ENOSYS);
        assert_non_null(strstr(err, "nvmlInit_v2"));
}

/* ---- the probe through a real loop ---- */

typedef struct sample_result {
        int calls;
        gpu_list *list; /* copy */
        const gpu_list *seen;
        bool free_probe;
} sample_result;

static void on_sample(gpu_probe *p, const gpu_list *list, void *userdata) {
        sample_result *r = userdata;

        r->calls++;
        r->seen = list;
        gpu_list_free(r->list);
        r->list = gpu_list_dup(list);
        if (r->free_probe)
                gpu_probe_free(p);
}

static void run_until(loop *l, const int *calls, int want, uint64_t max_ms) {
        uint64_t start = util_mono_ms();

        while (*calls < want && util_mono_ms() - start < max_ms)
                assert_int_equal(loop_run_once(l, 50), 0);
        assert_int_equal(*calls, want);
}

static gpu_probe *probe_new(loop *l, const char *nvml, const char *smi, uint64_t timeout_ms) {
        gpu_probe_options o = { .loop = l, .nvml_path = nvml, .smi_path = smi,
                                .smi_timeout_ms = timeout_ms, .proc_root = AIWM_FIXTURES "/gpu-proc" };
        gpu_probe *p = NULL;

        assert_int_equal(gpu_probe_new(&o, &p), 0);
        return p;
}

static gpu_list *smi_sample(const char *fixture, const char *mode, int *ret_calls) {
        char dir[512];
        sample_result res = { 0 };
        loop *l = NULL;
        gpu_probe *p;

        snprintf(dir, sizeof dir, "%s/%s", SMI_FIX, fixture);
        setenv("AIWM_FAKE_SMI_DIR", dir, 1);
        if (mode)
                setenv("AIWM_FAKE_SMI_MODE", mode, 1);
        assert_int_equal(loop_new(&l), 0);
        p = probe_new(l, "/nonexistent/libnvidia-ml.so.1", FAKE_SMI, 0);
        assert_string_equal(gpu_probe_backend(p), "nvidia-smi");
        assert_int_equal(gpu_probe_sample(p, on_sample, &res), 0);
        assert_int_equal(res.calls, 0);
        run_until(l, &res.calls, 1, 10000);
        assert_ptr_equal(gpu_probe_last(p), res.seen);
        gpu_probe_free(p);
        loop_free(l);
        unsetenv("AIWM_FAKE_SMI_MODE");
        if (ret_calls)
                *ret_calls = res.calls;
        return res.list;
}

static gpu_list *nvml_probe_sample(const char *fixture) {
        char path[512];
        sample_result res = { 0 };
        loop *l = NULL;
        gpu_probe *p;

        snprintf(path, sizeof path, "%s/%s/nvml.txt", SMI_FIX, fixture);
        setenv("AIWM_FAKE_NVML_FIXTURE", path, 1);
        assert_int_equal(loop_new(&l), 0);
        p = probe_new(l, FAKE_NVML, FAKE_SMI, 0);
        assert_string_equal(gpu_probe_backend(p), "nvml");
        assert_int_equal(gpu_probe_sample(p, on_sample, &res), 0);
        assert_int_equal(res.calls, 0); /* never from inside the call */
        run_until(l, &res.calls, 1, 5000);
        gpu_probe_free(p);
        loop_free(l);
        return res.list;
}

static void assert_str_eq_null(const char *a, const char *b) {
        if (!a || !b)
                assert_ptr_equal(a, b);
        else
                assert_string_equal(a, b);
}

/* Both backends, fed from the same capture, must report the same. */
static void test_backends_agree(void **state) {
        static const char *const fixtures[] = {
                "h100/load", "h100/idle", "h100-mig/load", "h200-mig/load", "l40s/idle",
                "l40s/load", "rtx2080s-610/load", "rtx4080s/load", "geforce-nopower/load",
                "multi/load",
        };
        size_t i, k, j;
        int fds = count_fds();

        REQUIRE_FAKE_NVML(FAKE_NVML);
        for (i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) {
                gpu_list *a = smi_sample(fixtures[i], NULL, NULL);
                gpu_list *b = nvml_probe_sample(fixtures[i]);
                char *ja, *jb;

                print_message("fixture %s: %zu GPU(s)\n", fixtures[i], a->n_devices);
                assert_null(a->reason);
                assert_null(b->reason);
                assert_true(a->n_devices >= 1);
                assert_int_equal(a->n_devices, b->n_devices);
                for (k = 0; k < a->n_devices; k++) {
                        gpu_device *x = &a->devices[k], *y = &b->devices[k];
                        assert_int_equal(x->index, y->index);
                        assert_str_eq_null(x->name, y->name);
                        assert_str_eq_null(x->uuid, y->uuid);
                        assert_str_eq_null(x->pci_bus_id, y->pci_bus_id);
                        assert_str_eq_null(x->driver_version, y->driver_version);
                        assert_non_null(x->cuda_version);
                        assert_str_eq_null(x->cuda_version, y->cuda_version);
                        assert_int_equal(x->n_processes, y->n_processes);
                        for (j = 0; j < x->n_processes; j++) {
                                assert_int_equal(x->processes[j].pid, y->processes[j].pid);
                                assert_str_eq_null(x->processes[j].name, y->processes[j].name);
                                assert_int_equal(x->processes[j].memory_used_mib,
                                                 y->processes[j].memory_used_mib);
                        }
                }
                ja = dump(gpu_json_metrics(a));
                jb = dump(gpu_json_metrics(b));
                assert_string_equal(ja, jb);
                free(ja);
                free(jb);
                gpu_list_free(a);
                gpu_list_free(b);
        }
        assert_int_equal(count_fds(), fds); /* pipes, pidfds, epoll: all closed */
}

static void test_smi_values(void **state) {
        gpu_list *list = smi_sample("h100/load", NULL, NULL);
        gpu_device *d = &list->devices[0];

        assert_null(list->reason);
        check_device(&(query_case){ .name = "NVIDIA H100 80GB HBM3", .bus = "00000000:00:09.0",
                                    .driver = "590.48.01", .total = 81559, .used = 19818,
                                    .util = 100, .temp = 59, .power = 631.95, .limit = 700.0,
                                    .status = GPU_STATUS_ACTIVE },
                     &(gpu_device){ .name = d->name, .pci_bus_id = d->pci_bus_id,
                                    .driver_version = d->driver_version,
                                    .has_memory_total = d->has_memory_total,
                                    .memory_total_mib = d->memory_total_mib,
                                    .has_memory_used = d->has_memory_used,
                                    .memory_used_mib = d->memory_used_mib,
                                    .has_utilization = d->has_utilization, .utilization = d->utilization,
                                    .has_temperature = d->has_temperature, .temperature = d->temperature,
                                    .has_power_draw = d->has_power_draw, .power_draw_w = d->power_draw_w,
                                    .has_power_limit = d->has_power_limit, .power_limit_w = d->power_limit_w,
                                    .status = d->status });
        assert_string_equal(d->cuda_version, "13.1");
        assert_int_equal(d->n_processes, 3);
        assert_string_equal(d->processes[1].name, "/root/tools/memhog");
        gpu_list_free(list);

        /* Newer drivers: "CUDA UMD Version" banner. */
        list = smi_sample("rtx2080s-610/load", NULL, NULL);
        assert_string_equal(list->devices[0].cuda_version, "13.3");
        assert_string_equal(list->devices[0].driver_version, "610.57.04");
        gpu_list_free(list);
}

static void test_smi_errors(void **state) {
        static const struct {
                const char *mode, *invalid, *reason;
        } t[] = {
                { "driver-error", NULL,
                  "nvidia-smi exited with status 9: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver." },
                { "no-devices", NULL, "nvidia-smi exited with status 6: No devices were found" },
                { NULL, "power.limit", "nvidia-smi exited with status 2: Field \"power.limit\" is not a valid field to query." },
                { "garbage", NULL, "cannot parse nvidia-smi --query-gpu output" },
                { "huge", NULL, "nvidia-smi output exceeds 262144 bytes (killed)" },
        };
        size_t i;

        for (i = 0; i < sizeof t / sizeof t[0]; i++) {
                gpu_list *list;

                print_message("mode %s invalid %s\n", t[i].mode ? t[i].mode : "-",
                              t[i].invalid ? t[i].invalid : "-");
                if (t[i].invalid)
                        setenv("AIWM_FAKE_SMI_INVALID_FIELDS", t[i].invalid, 1);
                list = smi_sample("h100/load", t[i].mode, NULL);
                unsetenv("AIWM_FAKE_SMI_INVALID_FIELDS");
                assert_int_equal(list->n_devices, 0);
                assert_non_null(list->reason);
                print_message("  reason: %s\n", list->reason);
                assert_non_null(strstr(list->reason, t[i].reason));
                gpu_list_free(list);
        }

        /* The process query failing keeps the devices, processes unknown. */
        {
                gpu_list *list = smi_sample("h100/load", "apps-fail", NULL);
                assert_int_equal(list->n_devices, 1);
                assert_false(list->devices[0].has_processes);
                assert_non_null(strstr(list->reason, "process list unavailable: nvidia-smi exited with status 15"));
                assert_int_equal(list->devices[0].status, GPU_STATUS_ACTIVE); /* 100 % */
                gpu_list_free(list);
        }
}

static bool pid_alive(pid_t pid) {
        return kill(pid, 0) == 0;
}

static void test_smi_timeout(void **state) {
        char dir[512], pidfile[] = "/tmp/aiwm-test-gpu-XXXXXX", *data = NULL;
        sample_result res = { 0 };
        loop *l = NULL;
        gpu_probe *p;
        uint64_t start;
        int64_t pid = 0;
        size_t len;
        int fd, fds = count_fds();

        fd = mkstemp(pidfile);
        assert_true(fd >= 0);
        close(fd);
        snprintf(dir, sizeof dir, "%s/h100/load", SMI_FIX);
        setenv("AIWM_FAKE_SMI_DIR", dir, 1);
        setenv("AIWM_FAKE_SMI_MODE", "hang", 1);
        setenv("AIWM_FAKE_SMI_PIDFILE", pidfile, 1);
        assert_int_equal(loop_new(&l), 0);
        p = probe_new(l, "", FAKE_SMI, 300);
        start = util_mono_ms();
        assert_int_equal(gpu_probe_sample(p, on_sample, &res), 0);
        run_until(l, &res.calls, 1, 5000);
        assert_true(util_mono_ms() - start >= 300);
        assert_true(util_mono_ms() - start < 3000);
        assert_int_equal(res.list->n_devices, 0);
        assert_non_null(strstr(res.list->reason, "nvidia-smi timed out after 300 ms (killed)"));
        /* The whole process group went: the sleeping grandchild too. */
        assert_int_equal(util_read_file(pidfile, 64, &data, &len), 0);
        data[strcspn(data, "\n")] = '\0';
        assert_int_equal(util_parse_i64(data, 1, INT32_MAX, &pid), 0);
        free(data);
        start = util_mono_ms();
        while (pid_alive((pid_t)pid) && util_mono_ms() - start < 2000)
                usleep(10000);
        assert_false(pid_alive((pid_t)pid));

        /* Freeing the probe while a child runs kills and reaps it. */
        res.calls = 0;
        assert_int_equal(gpu_probe_sample(p, on_sample, &res), 0);
        for (int i = 0; i < 5; i++)
                loop_run_once(l, 20);
        gpu_probe_free(p);
        if (res.calls)
                print_message("unexpected: %s\n", res.list->reason ? res.list->reason : "-");
        assert_int_equal(res.calls, 0);
        assert_int_equal(waitpid(-1, NULL, WNOHANG), -1); /* no child left, no zombie */
        assert_int_equal(errno, ECHILD);

        gpu_list_free(res.list);
        loop_free(l);
        unlink(pidfile);
        assert_int_equal(count_fds(), fds);
}

static void test_probe_none(void **state) {
        sample_result res = { 0 };
        loop *l = NULL;
        gpu_probe *p;

        assert_int_equal(loop_new(&l), 0);
        p = probe_new(l, "/nonexistent/libnvidia-ml.so.1", "/nonexistent/nvidia-smi", 0);
        assert_non_null(strstr(gpu_probe_reason(p), "cannot load NVML"));
        assert_int_equal(gpu_probe_sample(p, on_sample, &res), 0);
        assert_int_equal(res.calls, 0);
        run_until(l, &res.calls, 1, 2000);
        assert_int_equal(res.list->n_devices, 0);
        assert_non_null(strstr(res.list->reason, "no NVIDIA driver: cannot load NVML"));
        assert_non_null(strstr(res.list->reason, "nvidia-smi not found (/nonexistent/nvidia-smi)"));
        assert_string_equal(gpu_probe_backend(p), "none");
        assert_string_equal(gpu_probe_reason(p), res.list->reason);
        gpu_probe_free(p);

        /* Both disabled. */
        res.calls = 0;
        p = probe_new(l, "", "", 0);
        assert_string_equal(gpu_probe_backend(p), "none");
        assert_int_equal(gpu_probe_sample(p, on_sample, &res), 0);
        run_until(l, &res.calls, 1, 2000);
        assert_int_equal(res.list->n_devices, 0);
        assert_non_null(res.list->reason);
        gpu_probe_free(p);
        gpu_list_free(res.list);
        loop_free(l);
}

static void test_probe_join_and_free(void **state) {
        char path[512];
        sample_result a = { 0 }, b = { 0 }, c = { .free_probe = true };
        loop *l = NULL;
        gpu_probe *p;

        REQUIRE_FAKE_NVML(FAKE_NVML);
        snprintf(path, sizeof path, "%s/h100/idle/nvml.txt", SMI_FIX);
        setenv("AIWM_FAKE_NVML_FIXTURE", path, 1);
        assert_int_equal(loop_new(&l), 0);
        p = probe_new(l, FAKE_NVML, NULL, 0);
        assert_null(gpu_probe_last(p));
        assert_null(gpu_probe_reason(p));
        assert_int_equal(gpu_probe_sample(p, on_sample, &a), 0);
        assert_int_equal(gpu_probe_sample(p, on_sample, &b), 0);
        run_until(l, &a.calls, 1, 2000);
        assert_int_equal(b.calls, 1);
        assert_ptr_equal(a.seen, b.seen);
        assert_int_equal(a.list->devices[0].status, GPU_STATUS_IDLE);
        assert_int_equal(a.list->devices[0].n_processes, 0);
        assert_true(a.list->devices[0].has_processes);

        /* Freed from inside its own callback, with another waiter after it. */
        assert_int_equal(gpu_probe_sample(p, on_sample, &c), 0);
        assert_int_equal(gpu_probe_sample(p, on_sample, &a), 0);
        run_until(l, &c.calls, 1, 2000);
        assert_int_equal(a.calls, 1); /* dropped: the probe was freed first */
        loop_run_once(l, 0);

        gpu_list_free(a.list);
        gpu_list_free(b.list);
        gpu_list_free(c.list);
        loop_free(l);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_parse_query, reset_env),
                cmocka_unit_test_setup(test_parse_query_two, reset_env),
                cmocka_unit_test_setup(test_parse_query_too_many, reset_env),
                cmocka_unit_test_setup(test_parse_apps, reset_env),
                cmocka_unit_test_setup(test_parse_banner, reset_env),
                cmocka_unit_test_setup(test_pci_normalize, reset_env),
                cmocka_unit_test_setup(test_strndup_clean, reset_env),
                cmocka_unit_test_setup(test_json, reset_env),
                cmocka_unit_test_setup(test_nvml_h100, reset_env),
                cmocka_unit_test_setup(test_nvml_not_supported, reset_env),
                cmocka_unit_test_setup(test_nvml_lost, reset_env),
                cmocka_unit_test_setup(test_nvml_init_failure, reset_env),
                cmocka_unit_test_setup(test_nvml_xid, reset_env),
                cmocka_unit_test_setup(test_nvml_process_layouts, reset_env),
                cmocka_unit_test_setup(test_nvml_legacy, reset_env),
                cmocka_unit_test_setup(test_nvml_missing_library, reset_env),
                cmocka_unit_test_setup(test_smi_values, reset_env),
                cmocka_unit_test_setup(test_smi_errors, reset_env),
                cmocka_unit_test_setup(test_smi_timeout, reset_env),
                cmocka_unit_test_setup(test_probe_none, reset_env),
                cmocka_unit_test_setup(test_probe_join_and_free, reset_env),
                cmocka_unit_test_setup(test_backends_agree, reset_env),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
