/* exporter: the worker's local observability endpoints, served by
 * core/httpd on METRICS_LISTEN:
 *
 *   GET /metrics  Prometheus text exposition format 0.0.4
 *                 (Content-Type: text/plain; version=0.0.4; charset=utf-8)
 *   GET /healthz  200 {"status":"ok","connected":true,"registered":true}
 *                 when registered with the controller, else 503 with
 *                 status "unavailable" (JSON either way)
 *   anything else 404
 *
 * The figures come from a provider of callbacks, so the exporter does not
 * depend on any module's internals. Node and GPU figures are rendered from
 * the very `data` object of telemetry.metrics (PROTOCOL.md §3.4/§3.6), so
 * /metrics always agrees with what the controller receives; MB become bytes
 * (× 1048576). Metric families (every one with HELP and TYPE, base units):
 *
 *   aiwm_node_cpu_usage_percent, aiwm_node_cpu_cores, aiwm_node_load1|5|15
 *   aiwm_node_memory_{total,used,free,cached}_bytes, aiwm_node_memory_usage_percent
 *   aiwm_node_disk_{total,used,free}_bytes{path}, aiwm_node_disk_usage_percent{path}
 *   aiwm_node_network_{receive,transmit}_{bytes,packets}_total   (counters)
 *   aiwm_node_uptime_seconds, aiwm_node_status{status} 1
 *   aiwm_gpus  (GPUs seen)
 *   aiwm_gpu_up{gpu,uuid,name}  1, or 0 when the GPU is in error
 *   aiwm_gpu_utilization_percent, aiwm_gpu_memory_{used,total}_bytes,
 *   aiwm_gpu_temperature_celsius, aiwm_gpu_power_{draw,limit}_watts {gpu,uuid,name}
 *   aiwm_gpu_process_memory_used_bytes{gpu,uuid,pid,process}
 *   aiwm_deployments{status}  (every DeploymentStatus, 0 included)
 *   aiwm_deployment_up{deployment}, aiwm_deployment_uptime_seconds{deployment}
 *   aiwm_model_downloads_in_progress, aiwm_model_download_bytes{model},
 *   aiwm_model_download_size_bytes{model}
 *   aiwm_worker_info{version} 1, aiwm_worker_connected, aiwm_worker_registered,
 *   aiwm_worker_reconnects_total, aiwm_worker_outbox_depth,
 *   aiwm_worker_commands_total{type,outcome}, aiwm_worker_scrapes_total
 *
 * A figure missing from the input (absent key, wrong JSON type) produces no
 * sample rather than a made-up 0. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/httpd.h"

#define EXPORTER_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
/* Distinct {type, outcome} pairs counted; further pairs are counted under
 * type="other" (command types come from the controller). */
#define EXPORTER_MAX_COMMAND_SERIES 128u
#define EXPORTER_MAX_LABEL 128u /* bytes of a counted type or outcome */

typedef struct exporter exporter;

/* Live state of the worker process. */
typedef struct exporter_worker_state {
        bool connected;        /* namespace joined */
        bool registered;       /* register.ack received */
        uint64_t reconnects;   /* established connections lost: session_reconnects() */
        int64_t outbox_depth;  /* queued outgoing messages; < 0: unknown (no sample) */
} exporter_worker_state;

/* Where the figures come from; every member may be NULL (that part is then
 * left out). The JSON callbacks return a new reference or NULL; they run on
 * the loop for each scrape and must not block (return cached samples). */
typedef struct exporter_provider {
        void *userdata;
        /* The telemetry.metrics `data` object: telemetry_metrics_data(). */
        json_t *(*metrics)(void *ud);
        /* The telemetry.heartbeat `data` object (uptimeSeconds, status):
         * telemetry_heartbeat_data(). */
        json_t *(*heartbeat)(void *ud);
        /* [{deploymentId, status, uptime}] as in system.healthCheck. */
        json_t *(*deployments)(void *ud);
        /* Downloads in progress: [{modelId, bytesDownloaded, bytesTotal}]
         * (bytesTotal 0 when unknown), as in model.downloadProgress. */
        json_t *(*downloads)(void *ud);
        /* Fills *ret (zeroed first, outbox_depth -1). */
        void (*worker)(void *ud, exporter_worker_state *ret);
} exporter_provider;

typedef struct exporter_options {
        const char *version;   /* aiwm_worker_info{version}; NULL: AIWM_VERSION */
        const char *disk_path; /* path label of the main disk (DISK_PATH); NULL: "/" */
} exporter_options;

/* Everything one rendering needs; borrowed. For exporter_render() and the
 * tests: the provider's callbacks fill one per scrape. */
typedef struct exporter_snapshot {
        const json_t *metrics;     /* NULL: no node/GPU families */
        const json_t *heartbeat;   /* NULL: no uptime/status */
        const json_t *deployments; /* NULL: no deployment families */
        const json_t *downloads;   /* NULL: no download families */
        exporter_worker_state worker;
        bool has_worker;           /* false: no connection families */
} exporter_snapshot;

/* Creates an exporter; provider and opts are copied (strings too). opts may
 * be NULL. Returns 0 and *ret_exporter, or -ENOMEM. */
int exporter_new(const exporter_provider *provider, const exporter_options *opts, exporter **ret_exporter);
exporter *exporter_free(exporter *e);

/* Counts one finished (or rejected) command, for
 * aiwm_worker_commands_total{type,outcome}. Suggested outcomes: "success",
 * "error", "invalid" (answered 2001 before running), "duplicate" (a
 * messageId seen before), "dropped" (not an envelope). Strings are copied
 * (cut at EXPORTER_MAX_LABEL bytes); NULL counts as "unknown". */
void exporter_count_command(exporter *e, const char *type, const char *outcome);

/* Renders s into out (appended) in the text format. Returns 0, or -ENOMEM /
 * -E2BIG from the buffer (which is then freed, see buf.h). */
int exporter_render(const exporter *e, const exporter_snapshot *s, buf *out);

/* Takes a snapshot from the provider and renders /metrics into out. */
int exporter_metrics(exporter *e, buf *out);

/* /healthz body into out; returns the HTTP status (200 or 503), or a
 * negative errno from the buffer. */
int exporter_healthz(exporter *e, buf *out);

/* An httpd route (httpd_options.route, userdata = the exporter) serving
 * /metrics, /healthz and 404 for the rest. */
int exporter_route(void *userdata, const httpd_request *req, httpd_response *res);
