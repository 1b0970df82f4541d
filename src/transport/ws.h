/* ws: RFC 6455 WebSocket client framing on bytes only. Nothing here touches a
 * descriptor: the caller moves bytes between these functions and net.h.
 *
 * Typical client flow:
 *   1. ws_request_build() appends the upgrade request to a buf and returns
 *      the Sec-WebSocket-Key; send those bytes.
 *   2. ws_handshake_new(key) then ws_handshake_feed() with every received
 *      chunk until it returns 1 (101 accepted). The bytes of that chunk past
 *      the response (*ret_used onwards) already belong to the frame stream.
 *   3. ws_parser_feed() with received bytes, then ws_parser_next() until it
 *      returns 0; handle each message (answer PING with PONG, CLOSE with
 *      CLOSE).
 *   4. ws_frame_encode() / ws_close_encode() append masked frames to a buf.
 *
 * Extensions (permessage-deflate) are never offered and a response that
 * selects one is rejected. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* Length of a Sec-WebSocket-Key (base64 of 16 bytes) and of an accept value
 * (base64 of a SHA-1), without the NUL. */
#define WS_KEY_LEN 24
#define WS_ACCEPT_LEN 28

/* Caps. */
#define WS_HANDSHAKE_MAX (16u * 1024u)            /* response status line + headers */
#define WS_MESSAGE_MAX_DEFAULT (16u * 1024u * 1024u) /* reassembled message */
#define WS_CONTROL_MAX 125u                        /* control frame payload (RFC) */

typedef enum ws_opcode {
        WS_OP_CONT = 0x0,
        WS_OP_TEXT = 0x1,
        WS_OP_BINARY = 0x2,
        WS_OP_CLOSE = 0x8,
        WS_OP_PING = 0x9,
        WS_OP_PONG = 0xA,
} ws_opcode;

/* Close status codes (RFC 6455 §7.4.1). */
enum {
        WS_CLOSE_NORMAL = 1000,
        WS_CLOSE_GOING_AWAY = 1001,
        WS_CLOSE_PROTOCOL_ERROR = 1002,
        WS_CLOSE_UNSUPPORTED = 1003,
        WS_CLOSE_NO_STATUS = 1005,   /* never on the wire: "close frame had no status" */
        WS_CLOSE_ABNORMAL = 1006,    /* never on the wire: "no close frame at all" */
        WS_CLOSE_INVALID_DATA = 1007,
        WS_CLOSE_POLICY = 1008,
        WS_CLOSE_TOO_BIG = 1009,
        WS_CLOSE_INTERNAL_ERROR = 1011,
};

/* ---- handshake ---- */

/* Fills key with a fresh Sec-WebSocket-Key (16 bytes from getrandom(),
 * base64, NUL-terminated). Returns 0 or a negative errno. */
int ws_key_new(char ret_key[WS_KEY_LEN + 1]);

/* Computes the Sec-WebSocket-Accept value the server must send for key:
 * base64(SHA-1(key "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")). Returns 0, or
 * -EIO when the digest cannot be computed. */
int ws_accept_for_key(const char *key, char ret_accept[WS_ACCEPT_LEN + 1]);

/* Appends the upgrade request to out:
 *   GET <path> HTTP/1.1, Host (port left out when it is the default for tls),
 *   Upgrade: websocket, Connection: Upgrade, Sec-WebSocket-Key (fresh),
 *   Sec-WebSocket-Version: 13, then extra_headers (NULL or a NULL-terminated
 *   array of complete "Name: value" lines without CRLF), then the empty line.
 * host is a name or an IP literal (IPv6 with or without brackets); path must
 * start with '/' and may carry a query. CR, LF and other control bytes in any
 * argument are rejected with -EINVAL (no header injection). On success the
 * key that was sent is written to ret_key (pass it to ws_handshake_new()).
 * Returns 0, -EINVAL, or an error of buf_append (out is then freed). */
int ws_request_build(buf *out, const char *host, uint16_t port, bool tls, const char *path,
                     const char *const *extra_headers, char ret_key[WS_KEY_LEN + 1]);

/* Incremental parser of the server's HTTP response to the upgrade request. */
typedef struct ws_handshake ws_handshake;

/* Creates a response parser expecting the accept value derived from key.
 * Returns 0 and *ret_handshake, -EINVAL for a malformed key, or -ENOMEM. */
int ws_handshake_new(const char *key, ws_handshake **ret_handshake);
ws_handshake *ws_handshake_free(ws_handshake *h);

/* Feeds received bytes. Returns
 *    1: "101 Switching Protocols" with Upgrade: websocket, Connection: upgrade
 *       and the right Sec-WebSocket-Accept: the connection is open.
 *       *ret_used says how many bytes of data belonged to the response; the
 *       rest (data + *ret_used, len - *ret_used) are WebSocket frames and must
 *       go to ws_parser_feed().
 *    0: need more bytes (*ret_used = len).
 *   <0: failure, sticky (every later call returns it again):
 *       -EPROTO  a well-formed HTTP response that is not an acceptable
 *                upgrade (status other than 101, missing/wrong
 *                Sec-WebSocket-Accept, Upgrade or Connection, an extension
 *                selected); ws_handshake_status() has the status;
 *       -EBADMSG malformed HTTP;
 *       -E2BIG   status line and headers over WS_HANDSHAKE_MAX;
 *       -ENOMEM.
 * For a status other than 101 the parser waits (returning 0) for up to a short
 * excerpt of the body when a Content-Length announces one, so the error text
 * can quote it, e.g. `HTTP 400 Bad Request: {"code":0,"message":"Transport
 * unknown"}`. ws_handshake_error() has the text. */
int ws_handshake_feed(ws_handshake *h, const void *data, size_t len, size_t *ret_used);

/* Tells the parser that the peer closed the connection. Returns the
 * failure to report: -EPROTO (non-101 response already complete enough to
 * describe, see ws_handshake_error()) or -ECONNRESET (closed before the
 * response ended), or 0 when the handshake had already succeeded. Sticky
 * like a feed failure. */
int ws_handshake_eof(ws_handshake *h);

/* HTTP status of the response once its status line was parsed, else 0. */
int ws_handshake_status(const ws_handshake *h);
/* Text describing the failure ("" when none). Owned by h. */
const char *ws_handshake_error(const ws_handshake *h);

/* ---- frames: encoding ---- */

/* Appends one frame to out. mask: client frames must be masked (a fresh
 * 4-byte key from getrandom() per frame); servers send unmasked frames
 * (tests use mask=false to play a server). Control frames (opcode >= 8) must
 * have len <= 125 and fin. Returns 0, -EINVAL, -EIO (getrandom failed) or an
 * error of buf_append (out is then freed). */
int ws_frame_write(buf *out, ws_opcode opcode, bool fin, bool mask, const void *data,
                   size_t len);

/* Appends a complete, masked client frame: ws_frame_write(out, opcode, true,
 * true, data, len). */
int ws_frame_encode(buf *out, ws_opcode opcode, const void *data, size_t len);

/* Appends a masked close frame. code 0 sends no status (and reason must be
 * NULL or ""); else code must be a valid wire code (1000-1003, 1007-1014,
 * 3000-4999) and reason (NULL or UTF-8) at most 123 bytes. Returns 0,
 * -EINVAL, or as ws_frame_write(). */
int ws_close_encode(buf *out, uint16_t code, const char *reason);

/* ---- frames: decoding ---- */

typedef struct ws_parser ws_parser;

typedef struct ws_parser_options {
        /* Largest reassembled message (sum of fragments); 0 = default
         * WS_MESSAGE_MAX_DEFAULT. */
        size_t max_message;
        /* Skip UTF-8 validation of text messages and close reasons. */
        bool no_utf8_check;
        /* Act as a server: frames must be masked (and are unmasked). Default
         * (client): masked frames are rejected. For tests and fake peers. */
        bool server;
} ws_parser_options;

/* One complete message or control frame. All pointers are owned by the
 * parser and stay valid until the next ws_parser_next(), ws_parser_feed() does
 * not touch them, ws_parser_free() ends them. */
typedef struct ws_message {
        ws_opcode opcode;       /* TEXT, BINARY, PING, PONG or CLOSE; never CONT */
        const char *data;       /* payload (reassembled), followed by a NUL not counted in len */
        size_t len;
        /* CLOSE only: */
        uint16_t close_code;    /* status, WS_CLOSE_NO_STATUS (1005) when the frame had none */
        const char *close_reason; /* NUL-terminated reason, "" when none */
} ws_message;

/* opts may be NULL for the defaults. Returns 0 and *ret_parser, or -ENOMEM. */
int ws_parser_new(const ws_parser_options *opts, ws_parser **ret_parser);
ws_parser *ws_parser_free(ws_parser *p);

/* Copies len received bytes into the parser's input buffer. The buffer holds
 * at most one partial frame plus what was fed since the last drain, capped at
 * 2 * max_message + 64 KiB: feed chunks of at most 64 KiB and drain with
 * ws_parser_next() after each. Returns 0, -ENOBUFS (over the cap; nothing was
 * copied), -ENOMEM, or the sticky protocol error (see ws_parser_next()). */
int ws_parser_feed(ws_parser *p, const void *data, size_t len);

/* Takes the next complete message or control frame. Control frames that
 * arrive between the fragments of a message are returned on their own, before
 * the message they interrupt. Returns
 *    1: *ret_msg filled;
 *    0: more bytes are needed;
 *   <0: protocol error, sticky: -EPROTO (framing: reserved bits, unknown
 *       opcode, masked server frame, bad fragmentation, control frame over
 *       125 bytes or fragmented, bad close payload), -EMSGSIZE (message over
 *       max_message), -EILSEQ (invalid UTF-8 in text or close reason), or
 *       -ENOMEM. ws_parser_error() describes it and ws_parser_close_code()
 *       suggests the status to close with (1002, 1009, 1007, 1011).
 * After a CLOSE the parser keeps parsing, but the peer should send nothing. */
int ws_parser_next(ws_parser *p, ws_message *ret_msg);

/* Text of the last error ("" when none). Owned by p. */
const char *ws_parser_error(const ws_parser *p);
/* Suggested close status for the last error, 0 when none. */
uint16_t ws_parser_close_code(const ws_parser *p);

/* True when a close status may appear on the wire (1000-1003, 1007-1014,
 * 3000-4999). */
bool ws_close_code_valid(uint16_t code);

/* True when data is valid UTF-8 (no overlongs, surrogates or code points
 * above U+10FFFF). */
bool ws_utf8_valid(const void *data, size_t len);
