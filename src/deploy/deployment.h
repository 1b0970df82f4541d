/* deployment: model-serving deployments as containers on the Docker Engine
 * API (src/docker), driven by the controller's commands (PROTOCOL.md §3.5,
 * §3.7) and watched for as long as they live.
 *
 * Commands registered on the engine:
 *   deployment.create   allow-listed image (ALLOWED_IMAGE_REGISTRIES, else
 *                       2001); the GPU of gpuDeviceId (index or UUID) must be
 *                       on this machine (2004, before anything is made); the
 *                       model: a path inside MODEL_CACHE_DIR (2003 when
 *                       missing) or s3:// / hf:// / http(s):// fetched into
 *                       the cache first (model.downloadProgress events);
 *                       image pulled when missing; container created with
 *                       the labels of deploy_spec.h, started, and its
 *                       health path polled until healthy or the deadline.
 *                       deployment.status starting -> running | failed.
 *                       Result {containerId, endpoint, gpuAllocated,
 *                       startedAt}. Any failure removes what was made and
 *                       answers 2006 with the engine's message. 2007 when
 *                       the id is already deployed (not stopped or failed).
 *   deployment.stop     2002 unknown, 2008 not running; graceful stop with
 *                       data.timeout (default 30 s) or data.force (kill).
 *   deployment.restart  restarting -> running; a stopped one is started.
 *   deployment.update   data.config applied; environment, image or GPU
 *                       changes recreate the container under the same name,
 *                       and a new container that fails its health check is
 *                       removed and the old one put back (2006, rolled back).
 *   deployment.delete   stop, remove, forget: {deletedAt, containerRemoved}.
 *   deployment.query    the deployment.status data of one (or, with id "*",
 *                       {deployments: [...]} of all); data.includeLogs also
 *                       sends deployment.logs with the last data.tail lines.
 *   container.list / inspect / logs / stats
 *                       containers of this worker and node only (labels);
 *                       any other container is 2002.
 *
 * Watching: health checks every healthCheckInterval (default 30 s; three
 * failures in a row -> failed, then the container is recreated); the
 * engine's event stream reports deaths at once (failed; the restart policy's
 * restart, or the worker's own after 10 s -> starting -> running); a
 * reconcile every 30 s and after the engine comes back catches what events
 * missed. At start the worker adopts the containers it finds running (never
 * restarting a healthy one), restarts or recreates the ones that should run,
 * and removes orphans (its labels and this node's id, no deployment, older
 * than the grace period). Containers without the labels, or with another
 * node's id, are never touched. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "commands/cmd.h"
#include "deploy/deploy_spec.h"
#include "hardware/gpu.h"

typedef struct deploy_mgr deploy_mgr;

typedef struct deploy_config {
        const char *docker_socket;        /* required */
        const char *model_cache_dir;      /* required */
        deploy_gpu_mode gpu_mode;         /* DEPLOY_GPU_MODE */
        bool host_network;                /* DEPLOY_NETWORK=host */
        const char *bind_ip;              /* DEPLOY_BIND_IP; NULL: all addresses */
        const char *endpoint_host;        /* DEPLOY_ENDPOINT_HOST; NULL: node_ip() */
        uint64_t health_timeout_ms;       /* DEPLOY_HEALTH_TIMEOUT; 0: 300 s */
        uint64_t orphan_grace_ms;         /* DEPLOY_ORPHAN_GRACE; 0: 300 s */
        uint64_t reconcile_ms;            /* 0: 30 s */
        uint64_t restart_grace_ms;        /* after a death, the engine's turn; 0: 10 s */
        const char *registry_auth_file;   /* REGISTRY_AUTH_FILE: a Docker config.json, read at each pull */
        char *const *allowed_registries;  /* ALLOWED_IMAGE_REGISTRIES */
        size_t n_allowed_registries;
        /* The GPUs as last sampled (NULL: none known). */
        const gpu_list *(*gpus)(void *ud);
        /* The node's address for endpoints (NULL: "127.0.0.1"). */
        const char *(*node_ip)(void *ud);
        void *ud;
} deploy_config;

/* Registers the deployment.* and container.* commands on e and loads the
 * deployments of the database (call before cmd_engine_start(), so that an
 * interrupted deployment.create resumes). The manager belongs to the engine
 * (freed by cmd_engine_free()); *ret (may be NULL) is valid until then.
 * Returns 0 or a negative errno (-EINVAL: missing socket or cache dir). */
int deploy_register(cmd_engine *e, const deploy_config *cfg, deploy_mgr **ret);
/* After cmd_engine_start(): adopts and reconciles containers, starts the
 * event stream, health checks and the periodic reconcile. */
void deploy_start(deploy_mgr *m);
/* Before cmd_engine_free() at shutdown: stop touching containers (running
 * ones are left running). */
void deploy_shutdown(deploy_mgr *m);
/* After each registration with the controller: a deployment.status of
 * every deployment, since events may have been missed. */
void deploy_resync(deploy_mgr *m);
/* Deployments that should be running (not stopped). */
unsigned deploy_active(const deploy_mgr *m);
/* [{deploymentId, status, uptime}] for system.healthCheck (new reference). */
json_t *deploy_summary(const deploy_mgr *m);
