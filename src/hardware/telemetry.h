/* telemetry: everything the worker reports about its machine, assembled into
 * the `data` objects of node.register, telemetry.heartbeat and
 * telemetry.metrics (PROTOCOL.md §3.4, §3.6).
 *
 * Cheap figures (/proc, statvfs) are read when a message is built; slow ones
 * are refreshed in the background on the loop and cached: GPUs (NVML, or an
 * nvidia-smi child that is killed when it hangs), the container runtime and
 * the public IP address. Building a message therefore never waits. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "core/loop.h"

typedef struct telemetry telemetry;

typedef struct telemetry_options {
        const char *root;            /* "/" (tests: a fixture tree) */
        const char *node_id;
        const char *node_name;
        const char *disk_path;       /* DISK_PATH */
        const char *model_cache_dir; /* also reported when on another filesystem */
        const char *nvml_path;       /* NULL: libnvidia-ml.so.1; "": no NVML */
        const char *nvidia_smi_path; /* NULL: nvidia-smi; "": none */
        const char *docker_socket;   /* NULL: no runtime probe */
        const char *public_ip;       /* PUBLIC_IP, or NULL */
        const char *const *public_ip_urls; /* looked up in the background */
        size_t n_public_ip_urls;
        uint64_t gpu_interval_ms;    /* background GPU sampling; 0 = 5000 */
        const char *daemon_version;
} telemetry_options;

/* Provider of live deployment figures (the deployments module). */
typedef struct telemetry_deployments {
        void *userdata;
        unsigned (*active)(void *ud);
} telemetry_deployments;

int telemetry_new(loop *l, const telemetry_options *opts, telemetry **ret);
telemetry *telemetry_free(telemetry *t);

/* Starts the background probes (first GPU sample, runtime, public IP). */
void telemetry_start(telemetry *t);
/* Takes one GPU sample now and calls done when it is in (on a later turn).
 * For `inventory`, which wants real GPUs in its one-shot output. */
void telemetry_sample_gpus(telemetry *t, void (*done)(void *ud), void *ud);
/* Calls done once every background probe has answered or given up (or after
 * timeout_ms). */
void telemetry_when_ready(telemetry *t, uint64_t timeout_ms, void (*done)(void *ud), void *ud);

void telemetry_set_deployments(telemetry *t, const telemetry_deployments *d);

/* New references; never NULL except on allocation failure. */
json_t *telemetry_register_data(telemetry *t);
json_t *telemetry_heartbeat_data(telemetry *t);
json_t *telemetry_metrics_data(telemetry *t);
/* telemetry.metrics data measured over the health checks' own CPU window
 * (system.healthCheck builds its `metrics` member from it). */
json_t *telemetry_health_metrics(telemetry *t);

/* Worker's state for the heartbeat `status`: "healthy", or "degraded" when a
 * GPU is in error or the GPU driver cannot be read. */
const char *telemetry_node_status(telemetry *t);
/* GPU backend in use and why there are none, for `check` and the logs. */
const char *telemetry_gpu_backend(telemetry *t);
const char *telemetry_gpu_reason(telemetry *t);
/* The last GPU list (for /metrics and deployments). */
const struct gpu_list *telemetry_gpus(telemetry *t);
