/* deploy_spec: the pure half of deployments (no loop, no I/O), separated for
 * unit tests and fuzzing: validation of the deployment.* and container.*
 * command data the controller sends (PROTOCOL.md §3.5, §3.7), the model
 * source behind a modelPath, the image registry allow-list, the container
 * configuration sent to the engine (labels, environment, ports, GPU
 * requests, restart policy, the read-only model mount) and the mapping of
 * the engine's container JSON to the protocol's IContainerInfo.
 *
 * Every container this worker creates carries the labels
 *   aiwm.managed=true, aiwm.deployment.id, aiwm.node.id, aiwm.model.id,
 *   aiwm.gpu.uuid (GPU deployments), and aiwm.spec (sha256 of the spec)
 *   when the caller passes one
 * and is never privileged; its only host mount is the model, read-only, at
 * DEPLOY_MODEL_MOUNT, with MODEL_PATH set to it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* Where the model is mounted in the container (read-only). */
#define DEPLOY_MODEL_MOUNT "/model"

#define DEPLOY_LABEL_MANAGED "aiwm.managed"
#define DEPLOY_LABEL_DEPLOYMENT "aiwm.deployment.id"
#define DEPLOY_LABEL_NODE "aiwm.node.id"
#define DEPLOY_LABEL_MODEL "aiwm.model.id"
#define DEPLOY_LABEL_GPU "aiwm.gpu.uuid"
#define DEPLOY_LABEL_SPEC "aiwm.spec"

/* How a GPU is given to the container (DEPLOY_GPU_MODE). */
typedef enum deploy_gpu_mode {
        DEPLOY_GPU_DEVICE_REQUESTS = 0, /* HostConfig.DeviceRequests, driver "nvidia" */
        DEPLOY_GPU_CDI,                 /* CDI device nvidia.com/gpu=<uuid> */
        DEPLOY_GPU_NVIDIA_RUNTIME,      /* Runtime "nvidia" + NVIDIA_VISIBLE_DEVICES */
} deploy_gpu_mode;

/* "device-requests", "cdi", "nvidia-runtime". Returns 0 or -EINVAL. */
int deploy_gpu_mode_parse(const char *s, deploy_gpu_mode *ret);
const char *deploy_gpu_mode_name(deploy_gpu_mode m);

/* ---- command data ---- */

/* deployment.create data: modelId, modelPath, containerName (Docker's name
 * rule), containerImage (a reference), containerPort (1024..65535),
 * gpuDeviceId (optional: an index or a GPU UUID; absent or "" runs on CPU),
 * gpuMemoryLimit (>= 1024), environment (names [A-Za-z_][A-Za-z0-9_]*,
 * string values without NUL), healthCheckPath ("/..."), healthCheckInterval
 * (>= 5). Returns 0 or -EINVAL with a message naming the field. */
int deploy_create_validate(const json_t *data, char *err, size_t errlen);
/* deployment.update data: config {environment?, healthCheckPath?,
 * healthCheckInterval?, containerImage?, gpuDeviceId?} (at least one). */
int deploy_update_validate(const json_t *data, char *err, size_t errlen);
/* deployment.stop / restart / delete: force, removeVolumes, preserveData
 * (bools), timeout (stop: 5..300; restart: 1..300). */
int deploy_stop_validate(const json_t *data, char *err, size_t errlen);
int deploy_restart_validate(const json_t *data, char *err, size_t errlen);
int deploy_delete_validate(const json_t *data, char *err, size_t errlen);
/* container.list {all?}, container.logs {tail? 1..10000, since? ISO-8601}. */
int deploy_container_list_validate(const json_t *data, char *err, size_t errlen);
int deploy_container_logs_validate(const json_t *data, char *err, size_t errlen);

/* The spec after an update: a copy of spec with data.config applied, and
 * the names of the fields that changed in *ret_applied (new array). Sets
 * *ret_recreate when the container must be recreated (environment, image or
 * GPU changed; health settings alone do not). */
int deploy_spec_apply_update(const json_t *spec, const json_t *config, json_t **ret_spec, json_t **ret_applied,
                             bool *ret_recreate);

/* sha256 hex of the spec's canonical JSON (keys sorted). */
int deploy_spec_hash(const json_t *spec, char out[65]);

/* ---- the model ---- */

typedef enum deploy_model_kind {
        DEPLOY_MODEL_LOCAL = 0, /* a path inside MODEL_CACHE_DIR */
        DEPLOY_MODEL_S3,        /* s3://bucket/prefix (minio source) */
        DEPLOY_MODEL_HF,        /* hf://org/name[@revision] */
        DEPLOY_MODEL_HTTP,      /* http(s)://... one file */
} deploy_model_kind;

/* Classifies modelPath. For remote kinds, *ret_cache_data (may be NULL) gets
 * a new model.cache data object {source, sourcePath, version?, targetPath}
 * whose targetPath is "deployments/<model id as a file name>"; for LOCAL it
 * is NULL. Returns 0 or -EINVAL with a message (s3:// without a bucket, hf://
 * without org/name, an unknown scheme). */
int deploy_model_source(const char *model_path, const char *model_id, deploy_model_kind *ret_kind,
                        json_t **ret_cache_data, char *err, size_t errlen);

/* ---- images ---- */

/* The registry part of an image reference: the first component when it has
 * a '.' or ':' or is "localhost" and more follows, else "docker.io".
 * Lowercased. Returns 0 or -EINVAL (empty or too long). */
int deploy_image_registry(const char *image, char *out, size_t size);
/* True when allowed is empty, or an entry equals the image's registry
 * ("docker.io" also covers "index.docker.io"), or an entry "host/path" is a
 * prefix of the image at a component boundary. */
bool deploy_image_allowed(const char *image, char *const *allowed, size_t n_allowed);

/* Registry credentials for registry (as deploy_image_registry() gives it)
 * from a Docker client config (config.json: {"auths": {"<server>":
 * {"auth": base64("user:password")} or {"username", "password"} or
 * {"identitytoken"}}}); server keys match with or without a scheme and a
 * path ("https://index.docker.io/v1/" for docker.io). Returns 0 and heap
 * strings (*ret_user and *ret_password, or *ret_token; the others NULL; the
 * caller wipes and frees them), -ENOENT (no entry) or -EINVAL (an entry
 * that cannot be decoded). */
int deploy_registry_auth_lookup(const json_t *config, const char *registry, char **ret_user, char **ret_password,
                                char **ret_token);

/* ---- the container ---- */

typedef struct deploy_container_opts {
        const char *deployment_id;
        const char *node_id;
        deploy_gpu_mode gpu_mode;
        bool podman;              /* CDI through HostConfig.Devices (Podman) */
        const char *gpu_uuid;     /* NULL: a CPU deployment */
        bool host_network;        /* NetworkMode host: no port publishing */
        const char *bind_ip;      /* published on this address; NULL/"": all */
        int host_port;            /* 0: the engine picks a free port */
        const char *model_host_path; /* NULL: nothing mounted */
        const char *model_container_path; /* MODEL_PATH; NULL: DEPLOY_MODEL_MOUNT */
        const char *spec_hash;    /* for the aiwm.spec label; NULL: none */
} deploy_container_opts;

/* The body of POST /containers/create for a validated create spec. New
 * reference, or NULL on allocation failure. */
json_t *deploy_container_config(const json_t *spec, const deploy_container_opts *o);

/* IContainerInfo from an entry of GET /containers/json or from GET
 * /containers/{id}/json: {containerId, containerName, image, status,
 * createdAt, startedAt?, ports?}; with inspect, also labels, gpuDeviceIds,
 * exitCode, restartCount (never the environment). New reference or NULL
 * when c is not a container object. */
json_t *deploy_container_info(const json_t *c, bool inspect);

/* From an inspect reply: the host port bound to container_port/tcp (0 when
 * none), State.Running, State.StartedAt in ms since the epoch (0 if
 * unknown), State.ExitCode, RestartCount. Returns 0 or -EINVAL. */
typedef struct deploy_container_state {
        bool running, restarting;
        int host_port;
        long long started_ms;
        long long exit_code;
        long long restart_count;
        char error[256];          /* State.Error */
} deploy_container_state;
int deploy_container_state_parse(const json_t *inspect, int container_port, deploy_container_state *ret);

/* ISO-8601 (RFC 3339, optional fraction and offset) to ms since the epoch.
 * Returns 0 or -EINVAL. Docker's zero time "0001-01-01T00:00:00Z" is -ERANGE. */
int deploy_time_parse(const char *s, long long *ret_ms);

/* True when status may follow from (PROTOCOL.md §4.3; "" as from: any). */
bool deploy_status_transition_ok(const char *from, const char *to);
