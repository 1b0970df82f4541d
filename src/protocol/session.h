/* session: the worker's life on the controller's socket (PROTOCOL.md §5).
 *
 *   connect (net) → WebSocket + Engine.IO + namespace (sioc) → connection.ack
 *   → node.register → register.ack (or the `error` fallback) → telemetry
 *   timers, outbox flush, commands … → any loss → backoff → connect again.
 *
 * It reconnects forever with exponential backoff and full jitter, re-reads
 * the token before every attempt, answers pings, detects a dead link after
 * pingInterval + pingTimeout of silence, and keeps no secret in its logs.
 * This is the application layer: it logs state changes (once per change for
 * repeated failures) through core/log.h. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "core/loop.h"

typedef struct session session;

typedef enum session_state {
        SESSION_IDLE,          /* waiting to (re)connect */
        SESSION_CONNECTING,    /* TCP/TLS/WebSocket/Engine.IO/namespace */
        SESSION_CONNECTED,     /* namespace joined, waiting for connection.ack */
        SESSION_REGISTERING,   /* node.register sent */
        SESSION_REGISTERED,    /* register.ack received */
        SESSION_UNREGISTERED,  /* registration refused (`error`): telemetry on configured intervals */
        SESSION_STOPPING,
        SESSION_STOPPED,
} session_state;

typedef struct session_hooks {
        void *userdata;
        /* Token for the next attempt (re-read from NODE_TOKEN_FILE each time).
         * Returns a malloc'd string, or NULL with a reason in err. */
        char *(*token)(void *ud, char *err, size_t errlen);
        /* `data` of node.register, telemetry.heartbeat, telemetry.metrics
         * (new references; NULL to skip that message). */
        json_t *(*register_data)(void *ud);
        json_t *(*heartbeat_data)(void *ud);
        json_t *(*metrics_data)(void *ud);
        /* A command envelope (borrowed) from the controller or from
         * register.ack.pendingCommands. */
        void (*command)(void *ud, json_t *envelope);
        /* Outbox of queued messages (results, status events): returns 0 and
         * the oldest row after after_id, -ENOENT when none. Strings are
         * malloc'd and freed by the session. May be NULL: no outbox. */
        int (*outbox_next)(void *ud, int64_t after_id, int64_t *ret_id, char **ret_type,
                           char **ret_json);
        /* The row was written to the socket. */
        void (*outbox_sent)(void *ud, int64_t id);
        /* State changes (readiness, STATUS=, metrics). May be NULL. */
        void (*state_changed)(void *ud, session_state state, const char *detail);
} session_hooks;

typedef struct session_options {
        const char *host;
        uint16_t port;
        bool tls;
        const char *nsp;             /* "/ws/node" */
        const char *query;           /* extra Engine.IO query, may be NULL */
        const char *ca_file;
        bool tls_insecure;
        const char *proxy;           /* NULL: direct */
        const char *node_id;         /* NODE_ID, compared with connection.ack's nodeId; may be NULL */
        uint64_t heartbeat_ms;       /* configured intervals, until register.ack */
        uint64_t metrics_ms;
        uint64_t reconnect_ms;       /* RECONNECT_DELAY */
        uint64_t reconnect_max_ms;   /* RECONNECT_DELAY_MAX */
        uint64_t connect_timeout_ms; /* until the namespace is joined; 0 = 20000 */
        uint64_t register_timeout_ms;/* wait for register.ack; 0 = 10000 */
        /* `check`: stop at connection.ack success (reported as
         * SESSION_REGISTERED with a detail saying so); never register. */
        bool check_only;
} session_options;

/* Creates the session; nothing happens before session_start(). Strings in
 * opts are copied. Returns 0 or a negative errno. */
int session_new(loop *l, const session_options *opts, const session_hooks *hooks,
                session **ret);
session *session_free(session *s);

/* Starts connecting (on a later loop turn). */
int session_start(session *s);

/* Leaves the controller cleanly (41<nsp>, WebSocket close), waits at most
 * timeout_ms for the bytes to go out, then calls done (on a later turn). No
 * reconnect happens after this. */
void session_stop(session *s, uint64_t timeout_ms, void (*done)(void *ud), void *ud);

/* Sends an event now if the socket is up (returns 0), else -ENOTCONN.
 * Messages that must not be lost go through the outbox instead. */
int session_emit(session *s, const char *type, json_t *envelope);

/* Tells the session that the outbox has new rows: they are flushed at once
 * when registered (or unregistered-but-connected). */
void session_outbox_kick(session *s);

/* Drops the current connection (if any) and reconnects after the backoff.
 * Used by SIGHUP after the token changed, and by tests. */
void session_reconnect(session *s, const char *why);

session_state session_get_state(const session *s);
const char *session_state_name(session_state st);
bool session_is_registered(const session *s);
/* Counters for /metrics and `check`. */
uint64_t session_reconnects(const session *s);
uint64_t session_messages_sent(const session *s);
/* Current intervals (from register.ack when received). */
uint64_t session_heartbeat_ms(const session *s);
uint64_t session_metrics_ms(const session *s);
