/* docker: an asynchronous client of the Docker Engine API (Docker, or Podman's
 * Docker-compatible API) over the Unix socket DOCKER_SOCKET, through
 * core/http on the loop. Nothing blocks: every call returns at once and its
 * result arrives through a callback on a later loop turn.
 *
 * API version: before its first call the client asks GET /version (and
 * /info) and then prefixes every path with /v<min(server ApiVersion,
 * DOCKER_API_MAX)>; calls made meanwhile wait for that answer. A failed
 * negotiation fails the waiting calls and is retried by the next call.
 *
 * Errors: every call ends with a docker_reply whose err is 0 or a negative
 * errno, with the engine's message (or libcurl's) in message:
 *   -ENOENT   no such container / image (404)
 *   -EEXIST   container name in use (create: 409; Podman: 500 "already in use")
 *   -EBUSY    conflict (409), e.g. removing a running container or an image in use
 *   -EALREADY start: the container was already running (304)
 *   -ESRCH    stop: the container was not running (304); kill: not running
 *   -EINVAL   bad request (400); -EACCES (401/403, registry auth refused)
 *   -EIO      engine error (5xx) or a failed pull; -EPROTO unexpected reply
 *   transport errors as in core/http, with status 0: -ECONNREFUSED (no
 *   engine on the socket), -ETIMEDOUT, -ECONNRESET, -E2BIG (reply over a cap);
 *   -EPROTONOSUPPORT: the engine's API is older than 1.24.
 *
 * Pure parsers (no loop, no I/O) are separated for unit tests and fuzzing:
 * the JSON stream splitter, the log stream demultiplexer, version/info
 * parsing, error mapping and stats computation. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/loop.h"

/* The newest API version this client speaks, and the oldest it accepts. */
#define DOCKER_API_MAX_MINOR 43
#define DOCKER_API_MIN_MINOR 24

/* ---- pure parsers ---- */

typedef enum docker_runtime {
        DOCKER_RUNTIME_UNKNOWN = 0,
        DOCKER_RUNTIME_DOCKER,
        DOCKER_RUNTIME_PODMAN,
} docker_runtime;

/* "docker", "podman" or "unknown". */
const char *docker_runtime_name(docker_runtime rt);

/* GET /version. */
typedef struct docker_version {
        docker_runtime runtime;
        char version[64];         /* server version: "24.0.7", Podman "4.3.1" */
        char api_version[16];     /* the server's ApiVersion, e.g. "1.41" */
        char min_api_version[16]; /* "" when not reported */
        char os[32];
        char arch[32];
        char kernel[128];
} docker_version;

/* Parses a /version reply. Returns 0, or -EBADMSG (not a JSON object, or no
 * ApiVersion / Version string). */
int docker_version_parse(const char *data, size_t len, docker_version *ret);

/* Chooses the API version to speak: min(server, 1.DOCKER_API_MAX_MINOR).
 * Returns 0 and the minor number (major is 1), -EINVAL when api is not
 * "1.N", -EPROTONOSUPPORT when the server is older than 1.24. */
int docker_api_negotiate(const char *server_api, unsigned *ret_minor);

/* GET /info (the fields the worker uses). */
typedef struct docker_info {
        char root_dir[1024];      /* DockerRootDir; Podman: Store.GraphRoot */
        char driver[64];          /* storage driver */
        char cgroup_driver[32];
        char cgroup_version[8];
        char operating_system[128];
        char name[256];           /* host name */
        char server_version[64];
        char default_runtime[64];
        bool nvidia_runtime;      /* Runtimes has "nvidia" */
        int64_t ncpu;
        int64_t mem_total;        /* bytes */
        int64_t containers, containers_running, images;
} docker_info;

/* Parses an /info reply (Docker, Podman compat or Podman libpod shape).
 * Returns 0 or -EBADMSG. */
int docker_info_parse(const char *data, size_t len, docker_info *ret);

/* What a call did, for docker_error_map(). */
typedef enum docker_call {
        DOCKER_CALL_OTHER = 0,
        DOCKER_CALL_CREATE,
        DOCKER_CALL_START,
        DOCKER_CALL_STOP,
        DOCKER_CALL_RESTART,
        DOCKER_CALL_KILL,
        DOCKER_CALL_REMOVE,
        DOCKER_CALL_PULL,
} docker_call;

/* Maps an engine reply with HTTP status (and JSON {"message": ...} body, or
 * any body) to 0 (2xx) or a negative errno as listed at the top, and writes a
 * one-line message (the engine's, else "HTTP <status>"; never more than
 * msg_size-1 bytes, control characters replaced) into msg. */
int docker_error_map(docker_call call, long status, const char *body, size_t len, char *msg, size_t msg_size);

/* Maps the error text of a pull (errorDetail.message) to -ENOENT (unknown
 * image or tag), -EACCES (authentication refused) or -EIO. */
int docker_pull_error_map(const char *message);

/* JSON stream splitter: the bodies of /images/create, /events and the like
 * are a sequence of JSON values (newline separated or not). Embedded; the
 * fields are private. */
typedef struct docker_jsonstream {
        buf pending;        /* bytes of the value being read */
        unsigned depth;     /* nesting depth inside the current value */
        bool in_string, escape;
        size_t max_value;
} docker_jsonstream;

/* max_value caps one value's size (0: 1 MiB). */
void docker_jsonstream_init(docker_jsonstream *s, size_t max_value);
void docker_jsonstream_done(docker_jsonstream *s);
/* Called for each complete top-level value (object or array; borrowed, valid
 * during the call). Return < 0 to stop: feed returns that value. */
typedef int (*docker_json_cb)(json_t *value, void *userdata);
/* Feeds bytes. Returns 0, the callback's negative value, -E2BIG (a value over
 * max_value), -ELOOP (nesting over 64) or -EBADMSG (not JSON values: a
 * stray byte between values, or a value jansson refuses). After an error the
 * stream must not be fed again. */
int docker_jsonstream_feed(docker_jsonstream *s, const void *data, size_t len, docker_json_cb cb, void *userdata);
/* At the end of the stream: -EBADMSG when a value was cut off, else 0. */
int docker_jsonstream_finish(const docker_jsonstream *s);

/* Log streams: GET /containers/{id}/logs is multiplexed (8-byte header:
 * stream type 0/1/2, three zero bytes, payload size big-endian 32) unless
 * the container has a TTY, when it is raw. */
typedef enum docker_logs_mode {
        DOCKER_LOGS_AUTO = 0, /* decided on the first bytes */
        DOCKER_LOGS_MUX,
        DOCKER_LOGS_RAW,
} docker_logs_mode;

enum {
        DOCKER_STDOUT = 1,
        DOCKER_STDERR = 2,
};

typedef struct docker_logs_demux {
        docker_logs_mode mode;
        unsigned char hdr[8];
        size_t hdr_len;
        uint32_t frame_left;  /* payload bytes left in the current frame */
        int stream;           /* of the current frame */
        buf line[3];          /* partial line per stream (index 1, 2) */
        size_t max_line;
} docker_logs_demux;

/* max_line caps a line (0: 16 KiB): longer lines come in pieces. */
void docker_logs_demux_init(docker_logs_demux *d, docker_logs_mode mode, size_t max_line);
void docker_logs_demux_done(docker_logs_demux *d);
/* One line of output, without its "\n" (and "\r" before it). stream is
 * DOCKER_STDOUT or DOCKER_STDERR (stdin frames count as stdout; raw streams
 * are all stdout). Return < 0 to stop. */
typedef int (*docker_log_line_cb)(int stream, const char *line, size_t len, void *userdata);
/* Feeds bytes. Returns 0, the callback's negative value, -EBADMSG (a frame
 * header with an unknown stream type or non-zero padding) or -ENOMEM. */
int docker_logs_demux_feed(docker_logs_demux *d, const void *data, size_t len, docker_log_line_cb cb,
                           void *userdata);
/* At the end of the stream: emits unterminated last lines. Returns 0, the
 * callback's value, or -EBADMSG when the stream stopped inside a frame. */
int docker_logs_demux_finish(docker_logs_demux *d, docker_log_line_cb cb, void *userdata);

/* A log line with timestamps=1 starts with an RFC 3339 time and a space
 * ("2026-11-28T07:23:29.123456789Z msg"; Podman: second precision). Returns
 * 0 with the time in ms since the epoch and the length of the prefix
 * (including the space), or -EINVAL. */
int docker_log_timestamp_parse(const char *line, size_t len, int64_t *ret_epoch_ms, size_t *ret_prefix);

/* The figures of one stats reply, computed as `docker stats` does. */
typedef struct docker_stats {
        bool cpu_valid;           /* false: no previous sample to compare with */
        double cpu_percent;       /* of one CPU: 200 = two CPUs busy */
        uint64_t cpu_total_ns;    /* raw counters, kept as the next "prev" */
        uint64_t system_cpu_ns;
        unsigned online_cpus;
        uint64_t mem_usage;       /* memory_stats.usage */
        uint64_t mem_used;        /* usage minus inactive file pages (or cache) */
        uint64_t mem_limit;
        double mem_percent;       /* mem_used / mem_limit */
        uint64_t net_rx, net_tx;  /* bytes, all interfaces */
        uint64_t blk_read, blk_write;
        uint64_t pids;
} docker_stats;

/* Computes figures from a stats reply. CPU % uses prev (an earlier reply's
 * figures for the same container) when given, else the reply's own
 * precpu_stats (filled by Docker's streaming stats, empty in one-shot
 * replies); without either cpu_valid is false. Returns 0 or -EBADMSG (not a
 * stats object: no cpu_stats or memory_stats). */
int docker_stats_compute(json_t *stats, const docker_stats *prev, docker_stats *ret);
int docker_stats_parse(const char *data, size_t len, const docker_stats *prev, docker_stats *ret);

/* Splits an image reference into what POST /images/create takes: "repo"
 * "tag" (default "latest"), or "repo" and "sha256:..." for repo@digest.
 * Returns 0 or -EINVAL (empty, too long, or characters outside a reference). */
int docker_image_ref_split(const char *ref, char *repo, size_t repo_size, char *tag, size_t tag_size);

/* ---- the client ---- */

typedef struct docker docker;
typedef struct docker_op docker_op;

typedef struct docker_options {
        const char *socket;       /* path of the engine's Unix socket (required) */
        uint64_t timeout_ms;      /* per call, not for streams; 0: 60000 */
} docker_options;

typedef struct docker_reply {
        int err;                  /* 0 or a negative errno (top of file) */
        const char *message;      /* "" on success */
        long status;              /* HTTP status; 0 when no reply came */
        json_t *json;             /* the reply body when it was JSON (borrowed) */
        const char *id;           /* create: the new container's Id */
} docker_reply;

/* Called once per call that was not cancelled, on a later loop turn; the op
 * is freed when it returns. */
typedef void (*docker_done_cb)(docker_op *op, const docker_reply *reply, void *userdata);

/* Returns 0 and *ret, -EINVAL (no socket path) or -ENOMEM. */
int docker_new(loop *l, const docker_options *o, docker **ret);
/* Cancels every call (no callbacks). Not from inside a callback of this
 * client. Returns NULL. */
docker *docker_free(docker *d);

/* Stops a call: no callback of it runs afterwards. Safe from any callback of
 * this client, the call's own streaming callbacks included; a no-op from its
 * own done callback. Accepts NULL. */
void docker_op_cancel(docker_op *op);

/* Every call below returns 0 (and *ret when ret is not NULL: the handle for
 * docker_op_cancel(), valid until the done callback returns), or -EINVAL
 * (bad argument: ids must be [A-Za-z0-9_.-], images a reference) or
 * -ENOMEM, in which case no callback runs. */

/* GET /version and /info now (also refreshes what the getters return); the
 * reply's json is the /info object. */
int docker_probe(docker *d, docker_done_cb done, void *userdata, docker_op **ret);
/* NULL until a negotiation has succeeded. */
const docker_version *docker_get_version(const docker *d);
/* NULL until /info has been read. */
const docker_info *docker_get_info(const docker *d);
/* The negotiated API minor version (1.N), 0 until negotiated. */
unsigned docker_api_minor(const docker *d);

/* Any call: method, path after the version prefix ("/containers/x/top?..."),
 * optional JSON body (borrowed). The reply's json is the parsed body. */
int docker_request(docker *d, const char *method, const char *path, json_t *body, docker_done_cb done,
                   void *userdata, docker_op **ret);

/* GET /images/{ref}/json. */
int docker_image_inspect(docker *d, const char *ref, docker_done_cb done, void *userdata, docker_op **ret);

typedef struct docker_registry_auth {
        const char *username;
        const char *password;
        const char *server;        /* serveraddress, e.g. "registry.example:5000" */
        const char *identity_token;
} docker_registry_auth;

/* The X-Registry-Auth value: base64url of {"username","password",
 * "serveraddress"} (or {"identitytoken"}). Returns 0 and a heap string the
 * caller wipes and frees, -EINVAL (a value that is not UTF-8) or -ENOMEM. */
int docker_registry_auth_encode(const docker_registry_auth *a, char **ret);

typedef struct docker_pull_options {
        const char *image;                  /* reference; no tag means :latest */
        const docker_registry_auth *auth;   /* NULL: anonymous */
        uint64_t timeout_ms;                /* 0: none */
} docker_pull_options;

typedef struct docker_pull_event {
        const char *status;       /* "Pulling fs layer", "Downloading", ... */
        const char *id;           /* layer id or "" */
        int64_t current, total;   /* this layer's progressDetail, 0 when absent */
        uint64_t bytes_done;      /* all layers seen so far */
        uint64_t bytes_total;     /* 0 while no layer reported its size */
        unsigned layers, layers_done;
        json_t *raw;              /* the event object (borrowed) */
} docker_pull_event;

typedef void (*docker_pull_cb)(docker_op *op, const docker_pull_event *ev, void *userdata);

/* POST /images/create?fromImage=&tag=, reading the progress stream as it
 * comes (on_progress may be NULL). An errorDetail in the stream ends the
 * call with docker_pull_error_map()'s code and the engine's message. */
int docker_image_pull(docker *d, const docker_pull_options *o, docker_pull_cb on_progress, docker_done_cb done,
                      void *userdata, docker_op **ret);

/* POST /containers/create[?name=]; config is the body (borrowed). The
 * reply's id is the new container's Id. */
int docker_container_create(docker *d, const char *name, json_t *config, docker_done_cb done, void *userdata,
                            docker_op **ret);
int docker_container_start(docker *d, const char *id, docker_done_cb done, void *userdata, docker_op **ret);
/* timeout_s: seconds before SIGKILL; < 0: the container's default (10). */
int docker_container_stop(docker *d, const char *id, int timeout_s, docker_done_cb done, void *userdata,
                          docker_op **ret);
int docker_container_restart(docker *d, const char *id, int timeout_s, docker_done_cb done, void *userdata,
                             docker_op **ret);
/* signal: "SIGTERM", "9", ...; NULL: SIGKILL. */
int docker_container_kill(docker *d, const char *id, const char *signal, docker_done_cb done, void *userdata,
                          docker_op **ret);
int docker_container_remove(docker *d, const char *id, bool force, bool volumes, docker_done_cb done,
                            void *userdata, docker_op **ret);
int docker_container_inspect(docker *d, const char *id, docker_done_cb done, void *userdata, docker_op **ret);

typedef struct docker_list_options {
        bool all;                     /* stopped containers too */
        const char *const *labels;    /* NULL-terminated "key" or "key=value" filters */
} docker_list_options;

/* GET /containers/json; the reply's json is the array. */
int docker_container_list(docker *d, const docker_list_options *o, docker_done_cb done, void *userdata,
                          docker_op **ret);

typedef struct docker_logs_options {
        bool no_stdout, no_stderr;    /* both streams by default */
        bool timestamps;              /* prefix lines (docker_log_timestamp_parse) */
        int tail;                     /* last N lines; 0: all */
        int64_t since;                /* unix seconds; 0: from the start */
        docker_logs_mode mode;        /* AUTO: detected (TTY containers are raw) */
        size_t max_bytes;             /* cap on the whole body; 0: 64 MiB */
} docker_logs_options;

typedef void (*docker_logs_cb)(docker_op *op, int stream, const char *line, size_t len, void *userdata);

/* GET /containers/{id}/logs (not followed), line by line to on_line. */
int docker_container_logs(docker *d, const char *id, const docker_logs_options *o, docker_logs_cb on_line,
                          docker_done_cb done, void *userdata, docker_op **ret);

/* GET /containers/{id}/stats?stream=false&one-shot=true; the reply's json is
 * the stats object (docker_stats_compute()). A container that is not running
 * gives -ESRCH (Podman answers with an empty body). */
int docker_container_stats(docker *d, const char *id, docker_done_cb done, void *userdata, docker_op **ret);

typedef struct docker_events_options {
        const char *const *types;     /* NULL-terminated: "container", "image", ... */
        const char *const *labels;    /* NULL-terminated "key=value" filters */
        int64_t since;                /* unix seconds; 0: from now */
} docker_events_options;

typedef void (*docker_event_cb)(docker_op *op, json_t *event, void *userdata);

/* GET /events: a long-lived stream; each event object goes to on_event.
 * done runs when the stream ends: err 0 when the engine closed it, else the
 * error. Reconnecting (with since) is the caller's business. */
int docker_events_start(docker *d, const docker_events_options *o, docker_event_cb on_event, docker_done_cb done,
                        void *userdata, docker_op **ret);
