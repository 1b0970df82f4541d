/* cmd: the command engine (PROTOCOL.md §3.4, §5.3). Every controller
 * command goes through cmd_engine_receive():
 *
 *   envelope not an object / no messageId  -> dropped (error returned)
 *   messageId seen before                  -> done: the stored command.result
 *                                             is queued again; otherwise a new
 *                                             command.ack; the handler does not
 *                                             run again
 *   invalid envelope or data, unknown or   -> command.ack, then command.result
 *   unimplemented type                        error 2001 naming the field
 *   otherwise                              -> command.ack (estimatedDuration),
 *                                             the handler, then exactly one
 *                                             command.result
 *
 * Both replies carry a copy of the command's metadata; the result carries
 * originalMessageId and deploymentId = resource.id (the node id when the
 * command has none). Every reply goes through the database outbox (db.h):
 * the ack is written in the transaction that records the command, the result
 * in the transaction that marks it done, so replies produced while
 * disconnected are sent after the next connection and a command is never run
 * twice, across restarts too. host->outbox_notify() is called after each
 * commit that added outbox rows.
 *
 * Handlers run on the loop, never in threads: start() begins the work and the
 * handler completes the job later with cmd_job_succeed()/cmd_job_fail() from
 * one of its own loop callbacks (or at once, inside start(), for quick ones).
 * At most config.max_concurrent jobs run at once; the others wait in a queue
 * (at most config.max_queued; beyond it error 3003) ordered by
 * metadata.priority (high, normal, low; FIFO within one). metadata.timeout
 * (s), counted from receipt, ends a job with error 3002 after calling the
 * handler's cancel hook. On cmd_engine_start() the commands a previous process
 * left unfinished are resumed through their handler's resume hook when it has
 * one, and otherwise finished with error 3001 "interrupted by restart"
 * (retryable). Finished commands and stale outbox rows older than
 * config.retention_ms are pruned at start and every config.prune_interval_ms.
 *
 * Callbacks given to the engine must not block: data providers return what
 * they have (cached samples). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/loop.h"
#include "state/db.h"

/* Error codes of PROTOCOL.md §4.5 (strings on the wire). */
#define CMD_E_COMMAND_INVALID "2001"           /* not retryable */
#define CMD_E_DEPLOYMENT_NOT_FOUND "2002"      /* not retryable */
#define CMD_E_MODEL_NOT_FOUND "2003"           /* not retryable */
#define CMD_E_GPU_NOT_AVAILABLE "2004"         /* retryable */
#define CMD_E_INSUFFICIENT_MEMORY "2005"       /* retryable */
#define CMD_E_CONTAINER_START_FAILED "2006"    /* retryable */
#define CMD_E_DEPLOYMENT_ALREADY_RUNNING "2007" /* not retryable */
#define CMD_E_DEPLOYMENT_NOT_RUNNING "2008"    /* not retryable */
#define CMD_E_INTERNAL "3001"                  /* retryable */
#define CMD_E_TIMEOUT "3002"                   /* retryable */
#define CMD_E_RESOURCE_EXHAUSTED "3003"        /* retryable */
#define CMD_E_NETWORK "3004"                   /* retryable */

/* Caps on what the controller controls. */
#define CMD_MAX_MESSAGE_ID 128        /* bytes of messageId; longer: dropped */
#define CMD_MAX_TYPE 64               /* bytes of type */
#define CMD_MAX_RESOURCE_ID 256       /* bytes of resource.id */
#define CMD_MAX_PAYLOAD (1024 * 1024) /* bytes of the serialised envelope */
#define CMD_MAX_TIMEOUT_S (7 * 86400) /* metadata.timeout */

typedef struct cmd_engine cmd_engine;
typedef struct cmd_job cmd_job;

/* What the engine and the handlers need from the rest of the worker. The
 * data providers return a new reference (the engine releases it) or NULL
 * when they have nothing; any of them may be NULL. */
typedef struct cmd_host {
        loop *l;
        db *db;
        const char *node_id;
        void *ud; /* passed to every callback below */
        /* New outbox rows were committed: flush them if connected. May read
         * and delete outbox rows; must not call cmd_engine_receive(). */
        void (*outbox_notify)(void *ud);
        json_t *(*inventory)(void *ud);   /* node.register data */
        json_t *(*metrics)(void *ud);     /* telemetry.metrics data */
        json_t *(*config_json)(void *ud); /* configuration, secrets redacted */
        json_t *(*deployments)(void *ud); /* [{deploymentId, status, uptime}] */
        const char *(*node_status)(void *ud); /* NodeStatus; NULL: "healthy" */
        /* Host uptime in seconds; NULL: CLOCK_BOOTTIME. */
        int64_t (*uptime_seconds)(void *ud);
        /* Flush the outbox, close the session and re-exec after delay_ms. */
        void (*request_restart)(void *ud, uint64_t delay_ms);
        /* A command's result was stored: outcome "success", "error" or
         * "invalid" (rejected by validation). For counters; may be NULL. */
        void (*command_done)(void *ud, const char *type, const char *outcome);
} cmd_host;

typedef struct cmd_config {
        unsigned max_concurrent;    /* MAX_CONCURRENT_COMMANDS; 0: 4 */
        unsigned max_queued;        /* 0: 1000 */
        uint64_t retention_ms;      /* age of rows pruned; 0: 7 days */
        uint64_t prune_interval_ms; /* 0: 1 day */
        const char *version;        /* worker version; NULL: AIWM_VERSION */
} cmd_config;

/* A command handler. The engine copies the struct (type included). */
typedef struct cmd_handler {
        const char *type; /* e.g. "system.healthCheck" */
        /* Checks data (never NULL: {} when the command has none) and resource
         * (NULL when absent). Returns 0, or -EINVAL and a message naming the
         * field ("data.delaySeconds must be ...") in err. May be NULL. */
        int (*validate)(const json_t *data, const json_t *resource, char *err, size_t errlen);
        /* estimatedDuration of the ack, in s (data already validated).
         * NULL: 0. */
        int (*estimated_duration)(const json_t *data);
        /* Begins the work. Returns 0 (the job is then completed now or later
         * with cmd_job_succeed/fail) or a negative errno: the engine then fails
         * the job with 3001 unless it was completed already. */
        int (*start)(cmd_job *job);
        /* Stops the work (timeout, engine freed): release everything attached
         * to the job and never touch it again. The engine writes the result
         * (3002 on timeout; none when the engine is freed, so that the next
         * start resumes or fails the command). May be NULL. */
        void (*cancel)(cmd_job *job);
        /* Continues a command a previous process left unfinished; same
         * contract as start (cmd_job_resumed() is true). NULL: not resumable. */
        int (*resume)(cmd_job *job);
        /* Completes inside start() (healthCheck, query): runs at once, never
         * queued behind long jobs nor counted against max_concurrent. */
        bool quick;
        void *ctx;                  /* cmd_job_ctx() */
        void (*ctx_free)(void *ctx); /* called by cmd_engine_free(); may be NULL */
} cmd_handler;

/* Creates an engine on host (copied; host->l and host->db must outlive the
 * engine). cfg may be NULL. Returns 0 or a negative errno. */
int cmd_engine_new(const cmd_host *host, const cmd_config *cfg, cmd_engine **ret_engine);
/* Cancels running jobs (their handlers' cancel hooks run; their commands stay
 * unfinished in the database), drops queued ones, frees handler contexts.
 * Returns NULL. */
cmd_engine *cmd_engine_free(cmd_engine *e);
/* Adds a handler. -EEXIST when the type has one, -EINVAL when h lacks type
 * or start. Call before cmd_engine_start() so that resume hooks apply. */
int cmd_engine_register(cmd_engine *e, const cmd_handler *h);
/* Resumes or fails the commands left unfinished by a previous process,
 * prunes old rows and arms the daily prune. Returns 0 or a negative errno
 * with a sentence in err. */
int cmd_engine_start(cmd_engine *e, char *err, size_t errlen);
/* Takes one incoming command envelope (borrowed; kept by reference while the
 * job lives, so do not modify it afterwards). Returns 0 when the command was
 * answered or accepted; -EINVAL when it was dropped (not an object, no valid
 * messageId); another negative errno when it could not be recorded (database
 * error; nothing was sent). err gets a sentence for the caller's log. */
int cmd_engine_receive(cmd_engine *e, json_t *envelope, char *err, size_t errlen);
/* The checks cmd_engine_receive() makes before running anything, with no
 * side effect: 0, -EINVAL (dropped) or -EBADMSG (would be answered with
 * 2001), with the message in err. */
int cmd_engine_validate(const cmd_engine *e, const json_t *envelope, char *err, size_t errlen);
/* Queues an event that is not tied to a command, e.g. deployment.status for
 * a container that died: {type, messageId, timestamp, resource?, data}.
 * resource (may be NULL) and data are stolen. */
int cmd_engine_emit(cmd_engine *e, const char *type, json_t *resource, json_t *data);
const cmd_host *cmd_engine_host(const cmd_engine *e);
const char *cmd_engine_version(const cmd_engine *e);
/* The ctx of the handler registered for type, or NULL. */
void *cmd_engine_handler_ctx(const cmd_engine *e, const char *type);
unsigned cmd_engine_running(const cmd_engine *e);
unsigned cmd_engine_queued(const cmd_engine *e);

/* ---- jobs (valid from start/resume until the job is completed or
 * cancelled; everything returned is borrowed from the job) ---- */

const char *cmd_job_type(const cmd_job *job);
const char *cmd_job_message_id(const cmd_job *job);
/* resource.id, or the node id when the command has none. */
const char *cmd_job_resource_id(const cmd_job *job);
const json_t *cmd_job_resource(const cmd_job *job); /* NULL when absent */
const json_t *cmd_job_data(const cmd_job *job);     /* {} when absent */
const json_t *cmd_job_metadata(const cmd_job *job); /* NULL when absent */
bool cmd_job_resumed(const cmd_job *job);
cmd_engine *cmd_job_engine(const cmd_job *job);
void *cmd_job_ctx(const cmd_job *job);
void cmd_job_set_userdata(cmd_job *job, void *userdata);
void *cmd_job_get_userdata(const cmd_job *job);

/* Completes the job with status success and result (stolen; NULL: no result
 * key). The command.result is in the outbox when this returns; the job must
 * not be used afterwards (the engine frees it once the handler's callback has
 * returned). Returns 0, -ESTALE when the job was already completed or
 * cancelled (result is released), or a database error (logged; the command
 * stays unfinished and is failed with 3001 at the next start). */
int cmd_job_succeed(cmd_job *job, json_t *result);
/* Completes the job with status error: {code, message, retryable, details?}.
 * details (may be NULL) is stolen. Same contract as cmd_job_succeed(). */
int cmd_job_fail(cmd_job *job, const char *code, const char *message, bool retryable,
                 json_t *details);
/* Queues a progress event (deployment.status, model.downloadProgress, ...):
 * {type, messageId, timestamp, resource, data, metadata} with the command's
 * resource and metadata. data is stolen. */
int cmd_job_emit(cmd_job *job, const char *type, json_t *data);
