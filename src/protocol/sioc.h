/* sioc: the Socket.IO v5 client of one connection attempt, on bytes alone.
 *
 * It stacks the WebSocket handshake and framing (ws.h), Engine.IO v4
 * (eio.h) and Socket.IO v5 (sio.h) and knows PROTOCOL.md §1: the upgrade
 * request to /socket.io/?EIO=4&transport=websocket, the OPEN handshake,
 * joining the namespace with {"token": …}, answering every server ping,
 * ACKs for server events that carry an id, maxPayload on what it sends, and
 * the leave sequence (41<nsp>, then a WebSocket close).
 *
 * It never touches a descriptor or a clock: the owner moves bytes between a
 * net connection and sioc_feed() / the out buffer, and runs the liveness
 * timer (sioc_liveness_ms() after OPEN and after each ping). One sioc serves
 * one attempt; make a new one to reconnect. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/buf.h"

typedef struct sioc sioc;

typedef struct sioc_options {
        const char *host;       /* for the Host header */
        uint16_t port;
        bool tls;
        const char *nsp;        /* namespace, e.g. "/ws/node" */
        const char *query;      /* extra Engine.IO query (without '?'), may be NULL */
        const char *token;      /* sent as auth {"token": …}; copied */
        size_t max_message;     /* cap on one received message; 0 = 16 MiB */
} sioc_options;

typedef enum sioc_event_type {
        SIOC_OPEN,          /* Engine.IO session open; CONNECT was queued */
        SIOC_PING,          /* server ping answered: re-arm the liveness timer */
        SIOC_CONNECTED,     /* namespace joined; text = socket id */
        SIOC_CONNECT_ERROR, /* namespace refused; text = message (e.g. TOKEN_INVALID) */
        SIOC_EVENT,         /* text = event name, data = first argument (may be NULL) */
        SIOC_DISCONNECTED,  /* server left the namespace (41<nsp>) */
        SIOC_CLOSED,        /* WebSocket close received (code, text = reason); close echoed */
} sioc_event_type;

typedef struct sioc_event {
        sioc_event_type type;
        const char *text;
        json_t *data;       /* borrowed: valid during the callback */
        uint16_t code;
} sioc_event;

typedef void (*sioc_event_cb)(const sioc_event *ev, void *userdata);

/* Creates the client and appends the HTTP upgrade request to out. Returns 0
 * and *ret, -EINVAL for bad options, or -ENOMEM. */
int sioc_new(const sioc_options *opts, buf *out, sioc **ret);
sioc *sioc_free(sioc *c);

/* Feeds received bytes; replies (pong, CONNECT, ACK, close echo) are appended
 * to out; events go to cb in order. Returns 0, or a negative errno for a
 * protocol violation (sticky), with sioc_error() saying what it was:
 * -EPROTO (bad handshake, WebSocket framing, Engine.IO or Socket.IO packet),
 * -EMSGSIZE (a message over max_message), -ENOMEM. */
int sioc_feed(sioc *c, const void *data, size_t len, buf *out, sioc_event_cb cb, void *userdata);

/* Tells the client that the peer closed the stream. Returns the error that
 * describes it (-ECONNRESET, or -EPROTO with the HTTP status of a refused
 * upgrade) with sioc_error() set. */
int sioc_eof(sioc *c);

/* Appends EVENT [name, data] (data may be NULL) to out. Only valid once
 * connected (-ENOTCONN otherwise). Returns -EMSGSIZE, leaving out unchanged,
 * when the Engine.IO text would exceed the server's maxPayload. */
int sioc_emit(sioc *c, const char *name, const json_t *data, buf *out);
/* Like sioc_emit() for an already serialised JSON argument. */
int sioc_emit_raw(sioc *c, const char *name, const char *json, size_t json_len, buf *out);

/* Appends the leave sequence: 41<nsp>, (when connected) then a WebSocket
 * close with status 1000. */
int sioc_close(sioc *c, buf *out);

bool sioc_connected(const sioc *c);
bool sioc_open(const sioc *c);
/* pingInterval + pingTimeout from OPEN (ms); 0 before OPEN. */
uint64_t sioc_liveness_ms(const sioc *c);
/* maxPayload from OPEN (bytes); 0 before OPEN. */
uint64_t sioc_max_payload(const sioc *c);
const char *sioc_error(const sioc *c);
