/* config: the worker's configuration, from the environment and a `.env`
 * file (see core/dotenv.h), validated once at start-up.
 *
 * Sources, highest priority first: the environment (through a getenv-like
 * callback, so tests pass a table), then the .env file: `--env-file PATH`
 * when given (a missing file is an error), else `./.env` when it exists. A
 * variable present in the environment wins even when empty. An empty (or
 * all-blank) value counts as unset and gets the default, except
 * PUBLIC_IP_URLS, where empty disables the lookup. Values are trimmed of
 * surrounding whitespace.
 *
 * Keys and defaults:
 *   CONTROLLER_WS_URL        ws|wss|http|https URL; path = Socket.IO namespace
 *   CONTROLLER_URL           used when CONTROLLER_WS_URL is unset: http->ws,
 *                            https->wss, path "/ws/node" when it has none.
 *                            Both unset: ws://localhost:3003/ws/node
 *   NODE_TOKEN               token for the namespace CONNECT (required unless
 *   NODE_TOKEN_FILE            NODE_TOKEN_FILE is set; the file wins)
 *   NODE_ID                  default: the token's `sub`; must equal it
 *   NODE_NAME                worker-node
 *   HEARTBEAT_INTERVAL       30000 ms     METRICS_INTERVAL    60000 ms
 *   RECONNECT_DELAY          5000 ms      RECONNECT_DELAY_MAX 60000 ms (>= RECONNECT_DELAY)
 *   DOCKER_SOCKET            /var/run/docker.sock (absolute path)
 *   NVIDIA_SMI_PATH          nvidia-smi
 *   LOG_LEVEL                info (debug|info|warn|error)
 *   LOG_FORMAT               text (text|json)
 *   NODE_ENV                 unset
 *   TLS_CA_FILE              unset; must be a readable file when set
 *   TLS_INSECURE             off (1/0/true/false/yes/no/on/off)
 *   STATE_DIR                /var/lib/aiwm-worker (absolute path)
 *   MODEL_CACHE_DIR          $STATE_DIR/models (absolute path)
 *   DISK_PATH                / (absolute path)
 *   PUBLIC_IP                unset; an IPv4 or IPv6 address when set
 *   PUBLIC_IP_URLS           https://api.ipify.org,https://ifconfig.me/ip
 *   METRICS_LISTEN           unset; host:port, [v6]:port or :port
 *   MAX_CONCURRENT_COMMANDS  4 (1..1024)
 *   DEPLOY_GPU_MODE          device-requests (device-requests|cdi|nvidia-runtime)
 *   DEPLOY_NETWORK           bridge (bridge: published ports | host)
 *   DEPLOY_BIND_IP           unset: ports published on all addresses; an IPv4 address
 *   DEPLOY_ENDPOINT_HOST     unset: the node's IP address; host name or IP for endpoints
 *   DEPLOY_HEALTH_TIMEOUT    300 s (1..86400): start to healthy, else failed
 *   DEPLOY_ORPHAN_GRACE      300 s (0..86400): age before an orphan is removed
 *   HF_ENDPOINT, HF_TOKEN, S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION
 *                            model sources (strings; tokens and keys are secrets)
 *   MODEL_MAX_PARALLEL_FILES 4 (1..64)   MODEL_STALL_TIMEOUT 60 s (1..3600)
 *   MODEL_RETRY_BASE_MS      500 (1..60000)
 *   REGISTRY_AUTH_FILE       unset; a readable Docker config.json with registry credentials
 *   ALLOWED_IMAGE_REGISTRIES unset: any; comma-separated registries (host[:port]
 *                            or host/path prefixes; docker.io for Docker Hub)
 * Intervals are integers 1..2147483647. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/log.h"

#define CONFIG_DEFAULT_WS_URL "ws://localhost:3003/ws/node"
#define CONFIG_DEFAULT_NAMESPACE "/ws/node"
/* Largest NODE_TOKEN_FILE read, and longest token accepted. */
#define CONFIG_TOKEN_FILE_MAX (64u * 1024)
#define CONFIG_TOKEN_MAX 16384u
#define CONFIG_MAX_PUBLIC_IP_URLS 16u
#define CONFIG_MAX_CONCURRENT_COMMANDS_LIMIT 1024

/* Returns the value of key, or NULL when unset. */
typedef const char *(*config_getenv_fn)(const char *key, void *userdata);

/* Where config_load() reads from. */
typedef struct config_source {
        config_getenv_fn getenv;      /* NULL: the process environment */
        void *userdata;               /* passed to getenv */
        const char *env_file;         /* --env-file PATH, or NULL */
        const char *default_env_file; /* read when present and env_file is NULL;
                                       * NULL: "./.env", "": none */
} config_source;

/* A parsed controller URL. Owns its strings; release with config_url_done(). */
typedef struct config_url {
        bool tls;      /* wss or https */
        char *host;    /* lowercased; IPv6 without brackets */
        uint16_t port; /* explicit, else 80 / 443 */
        char *nsp;     /* the path as Socket.IO namespace; "/" when none */
        char *query;   /* after '?' (no '?'), NULL when none; fragment dropped */
} config_url;

/* The configuration: plain data, read the fields directly. Strings are
 * owned by the struct; optional ones are NULL when unset. */
typedef struct config {
        char *controller_ws_url;      /* effective URL, given or derived */
        config_url ws;                /* controller_ws_url parsed */
        char *node_token;             /* token as read at load time (from the file
                                       * when node_token_file is set); secret */
        char *node_token_file;        /* NULL unless NODE_TOKEN_FILE */
        int64_t token_exp;            /* the token's exp (Unix s), 0 if unknown */
        char *node_id;
        char *node_name;
        int64_t heartbeat_interval_ms;
        int64_t metrics_interval_ms;
        int64_t reconnect_delay_ms;
        int64_t reconnect_delay_max_ms;
        char *docker_socket;
        char *nvidia_smi_path;
        log_level log_level;
        log_format log_format;
        char *node_env;               /* NULL when unset */
        char *tls_ca_file;            /* NULL when unset */
        bool tls_insecure;
        char *state_dir;
        char *model_cache_dir;
        char *disk_path;
        char *public_ip;              /* NULL when unset */
        char **public_ip_urls;        /* n_public_ip_urls; none when disabled */
        size_t n_public_ip_urls;
        char *metrics_listen;         /* NULL when unset, else as given */
        char *metrics_host;           /* "" for all addresses; IPv6 without brackets */
        uint16_t metrics_port;
        unsigned max_concurrent_commands;
        char *deploy_gpu_mode;        /* as given, validated */
        bool deploy_host_network;
        char *deploy_bind_ip;         /* NULL when unset */
        char *deploy_endpoint_host;   /* NULL when unset */
        int64_t deploy_health_timeout_s;
        int64_t deploy_orphan_grace_s;
        char *registry_auth_file;     /* NULL when unset */
        char *hf_endpoint, *hf_token;  /* NULL when unset; hf_token secret */
        char *s3_endpoint, *s3_access_key, *s3_secret_key, *s3_region; /* NULL when unset; keys secret */
        unsigned model_max_parallel_files; /* 0: unset (default) */
        unsigned model_stall_timeout_s;
        unsigned model_retry_base_ms;
        char **allowed_registries;    /* n_allowed_registries; none: any */
        size_t n_allowed_registries;
        char *env_file;               /* the .env file read, NULL when none */
        unsigned *env_invalid_lines;  /* its skipped lines, for a warning */
        size_t n_env_invalid_lines;
} config;

/* Reads and validates the configuration. On success returns 0 and a new
 * config in *ret_cfg (free with config_free()). On failure returns -EINVAL
 * (invalid or missing value, unreadable file) or -ENOMEM, and writes one
 * line to err naming the key, e.g.
 *   HEARTBEAT_INTERVAL: must be a positive number of milliseconds, got "abc"
 * (a missing token names NODE_TOKEN; an unreadable token file
 * NODE_TOKEN_FILE; a bad --env-file starts with "--env-file:"). Secrets are
 * never quoted in err. Does not print or exit: main.c prints err and exits
 * with 78 (EX_CONFIG). */
int config_load(const config_source *src, config **ret_cfg, char *err, size_t errlen);

/* Frees cfg; accepts NULL; returns NULL. */
config *config_free(config *cfg);

/* Returns the token to send now in *ret_token (caller frees): re-reads
 * NODE_TOKEN_FILE on every call when set (so a rotated token is picked up
 * on the next connection), trimming surrounding whitespace; else a copy of
 * NODE_TOKEN. Returns 0, or -EINVAL (file unreadable, empty, too long, or
 * containing whitespace/control characters) / -ENOMEM with one line in err
 * naming NODE_TOKEN_FILE. */
int config_read_token(const config *cfg, char **ret_token, char *err, size_t errlen);

/* Parses a controller URL: scheme ws, wss, http or https (any case), a host
 * (name, IPv4 or [IPv6]; no user info), an optional port 1..65535, an
 * optional path (the namespace; must not contain ','), query and fragment.
 * No whitespace or control characters anywhere. Returns 0 and fills *ret_url
 * (caller calls config_url_done()), or -EINVAL / -ENOMEM with a reason in
 * err (may be NULL; the reason does not name a key). */
int config_parse_ws_url(const char *url, config_url *ret_url, char *err, size_t errlen);

/* Frees the strings and zeroes *u. Accepts NULL. */
void config_url_done(config_url *u);

/* Returns a new JSON object mapping each key above to its effective value
 * (numbers and booleans typed, unset optional values null, PUBLIC_IP_URLS
 * as an array), with NODE_TOKEN as "[redacted]". For system.query and
 * debugging. NULL on allocation failure. */
json_t *config_to_json(const config *cfg);
