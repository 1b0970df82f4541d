/* eio: Engine.IO v4 packets as carried by WebSocket text messages
 * (PROTOCOL.md §1.2, §1.3). One message holds exactly one packet: one ASCII
 * type digit followed by the payload, no separator. Pure functions, no I/O.
 *
 * Over WebSocket the client answers PING (2) with PONG (3) and never sends 2;
 * MESSAGE (4) carries a Socket.IO packet (see protocol/sio.h). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

typedef enum eio_type {
        EIO_OPEN = 0,
        EIO_CLOSE = 1,
        EIO_PING = 2,
        EIO_PONG = 3,
        EIO_MESSAGE = 4,
        EIO_UPGRADE = 5,
        EIO_NOOP = 6,
} eio_type;

/* A decoded packet. payload points into the decoded message (no copy, not
 * NUL-terminated); it is empty (len 0) when nothing follows the digit. */
typedef struct eio_packet {
        eio_type type;
        const char *payload;
        size_t len;
} eio_packet;

/* The Engine.IO server's defaults, as the controller sends them. For
 * documentation and tests only: eio_parse_handshake() requires every number
 * to be present in the OPEN packet and never substitutes these. */
#define EIO_DEFAULT_PING_INTERVAL_MS 25000
#define EIO_DEFAULT_PING_TIMEOUT_MS 20000
#define EIO_DEFAULT_MAX_PAYLOAD 1000000

/* Largest OPEN payload (JSON text) eio_parse_handshake() accepts. */
#define EIO_HANDSHAKE_MAX_LEN 4096
/* Longest sid accepted (the server sends 20 characters). */
#define EIO_SID_MAX_LEN 128
/* Most entries accepted in "upgrades". */
#define EIO_UPGRADES_MAX 16

/* The OPEN handshake (§1.3). Owns its strings; release with
 * eio_handshake_done(). */
typedef struct eio_handshake {
        char *sid;                /* Engine.IO session id, non-empty */
        char **upgrades;          /* n_upgrades strings; NULL when none */
        size_t n_upgrades;
        int64_t ping_interval_ms; /* 1 .. INT32_MAX */
        int64_t ping_timeout_ms;  /* 1 .. INT32_MAX */
        int64_t max_payload;      /* bytes, 1 .. INT64_MAX */
} eio_handshake;

/* Decodes one WebSocket text message msg[0..len) into *ret_packet, which
 * then points into msg (msg must outlive it). Returns 0; -EBADMSG for an
 * empty message or a first byte that is not '0'..'6'; -EOPNOTSUPP for a
 * base64 binary packet ("b..."), which only occurs on long-polling. The
 * payload is not checked here: PING may carry "probe", and callers decide
 * what a payload on CLOSE/PONG/NOOP means (the reference client ignores it). */
int eio_decode(const char *msg, size_t len, eio_packet *ret_packet);

/* Appends the packet <digit><payload> to out (payload may be NULL when len
 * is 0). Typical use: eio_encode(&b, EIO_PONG, NULL, 0), or
 * eio_encode(&b, EIO_MESSAGE, NULL, 0) followed by sio_encode(&b, ...).
 * Returns 0, -EINVAL for a type outside 0..6, or buf_append()'s error (in
 * which case out has been freed and reset, see core/buf.h). */
int eio_encode(buf *out, eio_type type, const char *payload, size_t len);

/* Returns the packet name ("open", "close", "ping", ...) or "unknown". */
const char *eio_type_name(eio_type type);

/* Parses the OPEN payload (the JSON after the digit '0'), at most
 * EIO_HANDSHAKE_MAX_LEN bytes. Required: a JSON object with "sid" (non-empty
 * string, at most EIO_SID_MAX_LEN bytes), "pingInterval" and "pingTimeout"
 * (integers 1..2^31-1 ms) and "maxPayload" (integer >= 1). Optional:
 * "upgrades" (array of strings; missing = empty). Unknown fields are ignored.
 * On success fills *ret_handshake (caller calls eio_handshake_done()) and
 * returns 0; otherwise -EBADMSG (or -E2BIG / -ENOMEM) with a one-line reason
 * in err (err may be NULL). */
int eio_parse_handshake(const char *json, size_t len, eio_handshake *ret_handshake, char *err,
                        size_t errlen);

/* Frees what eio_parse_handshake() stored and zeroes *h. Accepts NULL and
 * an all-zero struct. */
void eio_handshake_done(eio_handshake *h);
