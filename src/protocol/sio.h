/* sio: Socket.IO v5 packets, the text inside an Engine.IO MESSAGE
 * (PROTOCOL.md §1.6 - §1.9). Grammar:
 *
 *     <type digit> [<attachments> "-"] [<namespace> ","] [<ack id>] [<JSON>]
 *
 * Decoding follows socket.io-parser 4.2 (what the controller runs), more
 * strictly where the reference accepts packets this protocol never uses
 * (noted per function). Encoding produces the bytes socket.io-client would:
 * the JSON is written like JavaScript's JSON.stringify (see sio_json_write).
 * Pure functions, no I/O. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/buf.h"

typedef enum sio_type {
        SIO_CONNECT = 0,
        SIO_DISCONNECT = 1,
        SIO_EVENT = 2,
        SIO_ACK = 3,
        SIO_CONNECT_ERROR = 4,
        SIO_BINARY_EVENT = 5, /* never used by this protocol: rejected */
        SIO_BINARY_ACK = 6,   /* never used by this protocol: rejected */
} sio_type;

/* A packet. Decoded packets own nsp and data; release with
 * sio_packet_done(). For encoding, the caller fills the fields and keeps
 * ownership (sio_encode() only reads). */
typedef struct sio_packet {
        sio_type type;
        char *nsp;      /* namespace; "/" when omitted on the wire (encode: NULL = "/") */
        int64_t ack_id; /* 0..INT64_MAX, or -1 when none */
        json_t *data;   /* NULL when absent; see sio_decode() for the shape per type */
} sio_packet;

/* Caps on a peer's packet. */
typedef struct sio_limits {
        size_t max_len;     /* bytes of packet text; 0 = SIO_DEFAULT_MAX_LEN */
        unsigned max_depth; /* JSON nesting ([ and {); 0 = SIO_DEFAULT_MAX_DEPTH */
} sio_limits;

/* The controller sends messages of several MiB at most (pendingCommands);
 * the application envelopes nest about 6 deep. */
#define SIO_DEFAULT_MAX_LEN (16u * 1024 * 1024)
#define SIO_DEFAULT_MAX_DEPTH 64u
/* Hard bound on nesting for both directions (jansson's parser stops at 2048). */
#define SIO_MAX_DEPTH 1024u

/* Decodes one Socket.IO packet text[0..len) (the Engine.IO payload after the
 * '4'). lim may be NULL for the defaults. On success fills *ret_packet and
 * returns 0; the caller owns it and calls sio_packet_done(). Errors, with a
 * one-line reason in err (err may be NULL):
 *   -EBADMSG    empty text, type not '0'..'6', a namespace containing a NUL
 *               byte, an ack id above INT64_MAX,
 *               JSON that does not parse (trailing garbage included: only
 *               JSON whitespace may follow the value; "\u0000" in strings is
 *               refused), or data of the wrong shape:
 *                 CONNECT        object, or absent
 *                 DISCONNECT     absent
 *                 EVENT          array whose first element is a string that
 *                                is not a reserved name (connect,
 *                                connect_error, disconnect, disconnecting,
 *                                newListener, removeListener). Stricter than
 *                                socket.io-parser, which also allows a
 *                                number or an absent payload.
 *                 ACK            array; an ack id is required (stricter)
 *                 CONNECT_ERROR  object or string
 *   -EOPNOTSUPP BINARY_EVENT / BINARY_ACK
 *   -E2BIG      text longer than lim->max_len
 *   -ELOOP      JSON nested deeper than lim->max_depth
 *   -ENOMEM
 * JSON numbers are jansson's: integers beyond int64 are refused (-EBADMSG)
 * where JavaScript would round them to a double. */
int sio_decode(const char *text, size_t len, const sio_limits *lim, sio_packet *ret_packet,
               char *err, size_t errlen);

/* Frees nsp and data and resets *p (nsp NULL, ack_id -1, data NULL).
 * Accepts NULL. */
void sio_packet_done(sio_packet *p);

/* Appends the text of packet p (without the Engine.IO '4') to out. The
 * namespace is omitted when NULL or "/"; otherwise it must start with '/'
 * and contain no ',' and is always followed by ',' (e.g. "41/ws/node,").
 * The data must have the shape sio_decode() accepts for p->type (EVENT
 * names may not be reserved), so that whatever is encoded decodes again.
 * Returns 0; -EINVAL for a bad type/namespace/ack id/shape; -EOPNOTSUPP for
 * binary types; -ELOOP when data nests deeper than SIO_MAX_DEPTH; or
 * buf_append()'s error (then out has been freed and reset). On -EINVAL,
 * -EOPNOTSUPP and -ELOOP, out is left as it was. */
int sio_encode(buf *out, const sio_packet *p);

/* Convenience: appends EVENT [name, payload] in namespace nsp (NULL = "/"),
 * with ack id ack_id (-1 for none). payload may be NULL for [name] alone.
 * Does not take ownership of payload. Same returns as sio_encode(). */
int sio_encode_event(buf *out, const char *nsp, int64_t ack_id, const char *name,
                     json_t *payload);

/* True for the event names the reference parser rejects. */
bool sio_is_reserved_event(const char *name);

/* Returns "CONNECT", "EVENT", ... or "UNKNOWN". */
const char *sio_type_name(sio_type type);

/* Parses JSON text[0..len) with the caps this module applies to peer data:
 * at most max_len bytes (0 = SIO_DEFAULT_MAX_LEN), nesting at most max_depth
 * (0 = SIO_DEFAULT_MAX_DEPTH, capped at SIO_MAX_DEPTH), any JSON value at the
 * top level, nothing but whitespace after it, no "\u0000". Returns 0 and a
 * new reference in *ret_json, or -EBADMSG / -E2BIG / -ELOOP / -ENOMEM with a
 * reason in err (may be NULL). Usable by any module that parses peer JSON. */
int sio_json_parse(const char *text, size_t len, size_t max_len, unsigned max_depth,
                   json_t **ret_json, char *err, size_t errlen);

/* Appends json to out exactly as JavaScript's JSON.stringify would write the
 * same value: no whitespace; object members in insertion order except that
 * array-index keys ("0", "1", ... up to 4294967294, no leading zeros) come
 * first in ascending order, as JS objects order them; strings as raw UTF-8,
 * escaping only '"', '\\' and U+0000..U+001F (\b \t \n \f \r, else \u00xx
 * lowercase); integers in decimal; reals in JavaScript's shortest
 * round-trip form (0.1, 3, 1e+21, 1e-7). Note that an integral real of
 * magnitude 2^63 .. 1e21 comes out as plain digits, as in JS, which jansson
 * (so sio_decode()) then refuses as too big an integer. Returns 0, -EINVAL for a NULL
 * json, -ELOOP beyond SIO_MAX_DEPTH levels, or buf_append()'s error. On
 * -ELOOP out may hold a partial value; callers discard it. */
int sio_json_write(buf *out, const json_t *json);
