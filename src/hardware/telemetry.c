#include "hardware/telemetry.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "hardware/gpu.h"
#include "hardware/hw_cpu.h"
#include "hardware/hw_disk.h"
#include "hardware/hw_json.h"
#include "hardware/hw_mem.h"
#include "hardware/hw_net.h"
#include "hardware/hw_os.h"
#include "hardware/hw_proc.h"
#include "hardware/runtime.h"

struct telemetry {
        loop *l;
        int root_fd;
        char *node_id, *node_name, *disk_path, *model_cache_dir, *version;
        bool cache_separate;      /* MODEL_CACHE_DIR on another filesystem than DISK_PATH */
        /* One sampler per consumer, so each reports the CPU usage over its
         * own interval (heartbeat, metrics, health check). */
        hw_cpu_sampler *cpu, *cpu_hb, *cpu_health;
        hw_cpu_info cpu_info;
        gpu_probe *gpus;
        loop_timer *t_gpu;
        uint64_t gpu_interval_ms;
        bool gpu_sampled;
        runtime_probe *runtime;
        telemetry_deployments dep;

        loop_timer *t_ready;
        void (*ready_cb)(void *);
        void *ready_ud;
        void (*gpu_done)(void *);
        void *gpu_done_ud;
};

static char *dup_or(const char *s, const char *dflt) {
        return strdup(s && *s ? s : dflt);
}

static void on_gpu_sample(gpu_probe *p, const gpu_list *list, void *ud);

static void on_gpu_timer(loop_timer *timer, void *ud) {
        telemetry *t = ud;
        gpu_probe_sample(t->gpus, on_gpu_sample, t);
}

static void check_ready(telemetry *t) {
        if (!t->ready_cb || !t->gpu_sampled || !runtime_probe_settled(t->runtime))
                return;
        loop_timer_disarm(t->t_ready);
        {
                void (*cb)(void *) = t->ready_cb;
                t->ready_cb = NULL;
                cb(t->ready_ud);
        }
}

static void on_gpu_sample(gpu_probe *p, const gpu_list *list, void *ud) {
        telemetry *t = ud;
        t->gpu_sampled = true;
        loop_timer_arm(t->t_gpu, t->gpu_interval_ms);
        if (t->gpu_done) {
                void (*cb)(void *) = t->gpu_done;
                t->gpu_done = NULL;
                cb(t->gpu_done_ud);
        }
        check_ready(t);
}

static void on_runtime_settled(void *ud) {
        check_ready(ud);
}

static void on_ready_timeout(loop_timer *timer, void *ud) {
        telemetry *t = ud;
        t->gpu_sampled = true; /* give up waiting */
        if (t->ready_cb) {
                void (*cb)(void *) = t->ready_cb;
                t->ready_cb = NULL;
                cb(t->ready_ud);
        }
}

int telemetry_new(loop *l, const telemetry_options *o, telemetry **ret) {
        gpu_probe_options go = { 0 };
        runtime_probe_options ro = { 0 };
        telemetry *t = calloc(1, sizeof *t);
        int r = -ENOMEM;

        if (!t)
                return -ENOMEM;
        t->l = l;
        t->root_fd = -1;
        t->node_id = dup_or(o->node_id, "");
        t->node_name = dup_or(o->node_name, "worker-node");
        t->disk_path = dup_or(o->disk_path, "/");
        t->model_cache_dir = o->model_cache_dir ? strdup(o->model_cache_dir) : NULL;
        t->version = dup_or(o->daemon_version, AIWM_VERSION);
        t->gpu_interval_ms = o->gpu_interval_ms ? o->gpu_interval_ms : 5000;
        if (!t->node_id || !t->node_name || !t->disk_path || !t->version)
                goto fail;
        r = hw_proc_root_open(o->root ? o->root : "/", &t->root_fd);
        if (r < 0)
                goto fail;
        t->cpu = hw_cpu_sampler_new();
        t->cpu_hb = hw_cpu_sampler_new();
        t->cpu_health = hw_cpu_sampler_new();
        if (!t->cpu || !t->cpu_hb || !t->cpu_health) {
                r = -ENOMEM;
                goto fail;
        }
        hw_cpu_info_at(t->root_fd, &t->cpu_info);
        if (t->model_cache_dir) {
                struct stat a, b;
                t->cache_separate = stat(t->disk_path, &a) == 0 && stat(t->model_cache_dir, &b) == 0 &&
                                    a.st_dev != b.st_dev;
        }
        go.loop = l;
        go.nvml_path = o->nvml_path;
        go.smi_path = o->nvidia_smi_path;
        go.proc_root = o->root;
        r = gpu_probe_new(&go, &t->gpus);
        if (r < 0)
                goto fail;
        ro.docker_socket = o->docker_socket;
        ro.public_ip = o->public_ip;
        ro.public_ip_urls = o->public_ip_urls;
        ro.n_public_ip_urls = o->n_public_ip_urls;
        r = runtime_probe_new(l, &ro, on_runtime_settled, t, &t->runtime);
        if (r < 0)
                goto fail;
        if ((r = loop_timer_new(l, on_gpu_timer, t, &t->t_gpu)) < 0 ||
            (r = loop_timer_new(l, on_ready_timeout, t, &t->t_ready)) < 0)
                goto fail;
        /* A first CPU reading, so the first report covers a real window. */
        {
                hw_cpu_sample cs;
                hw_cpu_sampler_read_at(t->cpu, t->root_fd, &cs);
                hw_cpu_sampler_read_at(t->cpu_hb, t->root_fd, &cs);
                hw_cpu_sampler_read_at(t->cpu_health, t->root_fd, &cs);
        }
        *ret = t;
        return 0;
fail:
        telemetry_free(t);
        return r;
}

telemetry *telemetry_free(telemetry *t) {
        if (!t)
                return NULL;
        loop_timer_free(t->t_gpu);
        loop_timer_free(t->t_ready);
        gpu_probe_free(t->gpus);
        runtime_probe_free(t->runtime);
        hw_cpu_sampler_free(t->cpu);
        hw_cpu_sampler_free(t->cpu_hb);
        hw_cpu_sampler_free(t->cpu_health);
        if (t->root_fd >= 0)
                close(t->root_fd);
        free(t->node_id);
        free(t->node_name);
        free(t->disk_path);
        free(t->model_cache_dir);
        free(t->version);
        free(t);
        return NULL;
}

void telemetry_start(telemetry *t) {
        gpu_probe_sample(t->gpus, on_gpu_sample, t);
        runtime_probe_start(t->runtime);
}

void telemetry_sample_gpus(telemetry *t, void (*done)(void *ud), void *ud) {
        t->gpu_done = done;
        t->gpu_done_ud = ud;
        loop_timer_disarm(t->t_gpu);
        gpu_probe_sample(t->gpus, on_gpu_sample, t);
}

void telemetry_when_ready(telemetry *t, uint64_t timeout_ms, void (*done)(void *ud), void *ud) {
        t->ready_cb = done;
        t->ready_ud = ud;
        loop_timer_arm(t->t_ready, timeout_ms);
        check_ready(t);
}

void telemetry_set_deployments(telemetry *t, const telemetry_deployments *d) {
        t->dep = *d;
}

const gpu_list *telemetry_gpus(telemetry *t) {
        return gpu_probe_last(t->gpus);
}

const char *telemetry_gpu_backend(telemetry *t) {
        return gpu_probe_backend(t->gpus);
}

const char *telemetry_gpu_reason(telemetry *t) {
        const char *r = gpu_probe_reason(t->gpus);
        return r ? r : "";
}

const char *telemetry_node_status(telemetry *t) {
        const gpu_list *g = gpu_probe_last(t->gpus);
        size_t i;
        for (i = 0; g && i < g->n_devices; i++)
                if (g->devices[i].status == GPU_STATUS_ERROR)
                        return "degraded";
        return "healthy";
}

static unsigned active_deployments(telemetry *t) {
        return t->dep.active ? t->dep.active(t->dep.userdata) : 0;
}

json_t *telemetry_register_data(telemetry *t) {
        hw_os_info os;
        hw_mem_info mem = { 0 };
        hw_disk_info disk = { 0 };
        char ip[64] = "127.0.0.1";
        json_t *d;

        hw_os_read_at(t->root_fd, &os);
        hw_mem_read_at(t->root_fd, &mem);
        hw_disk_read(t->disk_path, &disk);
        hw_net_private_ip(t->root_fd, ip, sizeof ip);
        d = json_object();
        if (!d)
                return NULL;
        json_object_set_new(d, "nodeId", json_string(t->node_id));
        json_object_set_new(d, "name", json_string(t->node_name));
        json_object_set_new(d, "hostname", json_string(os.hostname));
        json_object_set_new(d, "ipAddress", json_string(ip));
        json_object_set_new(d, "publicIpAddress", json_string(runtime_probe_public_ip(t->runtime)));
        json_object_set_new(d, "os", hw_json_os(&os));
        json_object_set_new(d, "cpuCores", json_integer(t->cpu_info.cores ? t->cpu_info.cores : 1));
        json_object_set_new(d, "cpuModel", json_string(t->cpu_info.model[0] ? t->cpu_info.model : "Unknown"));
        json_object_set_new(d, "ramTotal", json_integer((json_int_t)mem.total_mb));
        json_object_set_new(d, "diskTotal", json_integer((json_int_t)disk.total_mb));
        json_object_set_new(d, "gpuDevices", gpu_json_inventory(gpu_probe_last(t->gpus)));
        json_object_set_new(d, "daemonVersion", json_string(t->version));
        json_object_set_new(d, "nodeStatus", json_string("ready"));
        json_object_set_new(d, "uptimeSeconds", json_integer((json_int_t)os.uptime_s));
        json_object_set_new(d, "containerRuntime", runtime_probe_json(t->runtime));
        return d;
}

static int cpu_now(telemetry *t, hw_cpu_sampler *sampler, double *ret) {
        hw_cpu_sample cs;
        int r = hw_cpu_sampler_read_at(sampler, t->root_fd, &cs);
        if (r == 0)
                *ret = cs.usage;
        return r;
}

json_t *telemetry_heartbeat_data(telemetry *t) {
        hw_mem_info mem = { 0 };
        uint64_t up = 0;
        double cpu = 0;
        json_t *d = json_object();

        if (!d)
                return NULL;
        cpu_now(t, t->cpu_hb, &cpu);
        hw_mem_read_at(t->root_fd, &mem);
        hw_os_uptime_at(t->root_fd, &up);
        json_object_set_new(d, "nodeId", json_string(t->node_id));
        json_object_set_new(d, "status", json_string(telemetry_node_status(t)));
        json_object_set_new(d, "uptimeSeconds", json_integer((json_int_t)up));
        json_object_set_new(d, "activeDeployments", json_integer(active_deployments(t)));
        json_object_set_new(d, "cpuUsage", json_integer(hw_json_percent_int(cpu)));
        json_object_set_new(d, "ramUsage", json_integer(hw_json_percent_int(mem.usage)));
        json_object_set_new(d, "gpuStatus", gpu_json_status(gpu_probe_last(t->gpus)));
        return d;
}

static json_t *build_metrics(telemetry *t, hw_cpu_sampler *sampler) {
        hw_cpu_sample cs = { 0 };
        hw_mem_info mem = { 0 };
        hw_disk_info disk = { 0 };
        hw_net_counters net = { 0 };
        double load[3] = { 0, 0, 0 };
        json_t *d = json_object();

        if (!d)
                return NULL;
        hw_cpu_sampler_read_at(sampler, t->root_fd, &cs);
        if (!cs.cores)
                cs.cores = t->cpu_info.cores;
        hw_cpu_loadavg_at(t->root_fd, load);
        hw_mem_read_at(t->root_fd, &mem);
        hw_disk_read(t->disk_path, &disk);
        hw_net_read_at(t->root_fd, &net);
        json_object_set_new(d, "nodeId", json_string(t->node_id));
        json_object_set_new(d, "cpu", hw_json_cpu(&cs, load));
        json_object_set_new(d, "memory", hw_json_mem(&mem));
        json_object_set_new(d, "disk", hw_json_disk(&disk));
        if (t->cache_separate) {
                hw_disk_info mc = { 0 };
                if (hw_disk_read(t->model_cache_dir, &mc) == 0) {
                        json_t *o = hw_json_disk(&mc);
                        json_object_set_new(o, "path", json_string(t->model_cache_dir));
                        json_object_set_new(d, "modelCacheDisk", o);
                }
        }
        json_object_set_new(d, "network", hw_json_net(&net));
        json_object_set_new(d, "gpuDevices", gpu_json_metrics(gpu_probe_last(t->gpus)));
        return d;
}

json_t *telemetry_metrics_data(telemetry *t) {
        return build_metrics(t, t->cpu);
}

json_t *telemetry_health_metrics(telemetry *t) {
        return build_metrics(t, t->cpu_health);
}
