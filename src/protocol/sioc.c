#include "protocol/sioc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/eio.h"
#include "protocol/sio.h"
#include "transport/ws.h"

#define SIOC_MAX_MESSAGE_DEFAULT (16u * 1024u * 1024u)

typedef enum sioc_state {
        ST_HANDSHAKE,  /* waiting for HTTP 101 */
        ST_WS_OPEN,    /* waiting for Engine.IO OPEN */
        ST_EIO_OPEN,   /* CONNECT sent, waiting for the answer */
        ST_CONNECTED,  /* namespace joined */
        ST_LEFT,       /* namespace left or refused; no more events */
        ST_CLOSED,     /* WebSocket closed */
} sioc_state;

struct sioc {
        sioc_state state;
        char *nsp;
        char *token;
        ws_handshake *hs;
        ws_parser *parser;
        uint64_t liveness_ms;
        uint64_t max_payload;
        sio_limits limits;
        char err[256];
        int errcode;
};

static int fail(sioc *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(sioc *c, int code, const char *fmt, ...) {
        va_list ap;

        if (!c->errcode) {
                c->errcode = code;
                va_start(ap, fmt);
                vsnprintf(c->err, sizeof c->err, fmt, ap);
                va_end(ap);
        }
        return c->errcode;
}

sioc *sioc_free(sioc *c) {
        if (!c)
                return NULL;
        ws_handshake_free(c->hs);
        ws_parser_free(c->parser);
        free(c->nsp);
        if (c->token) {
                explicit_bzero(c->token, strlen(c->token));
                free(c->token);
        }
        free(c);
        return NULL;
}

int sioc_new(const sioc_options *opts, buf *out, sioc **ret) {
        ws_parser_options po = { 0 };
        char key[WS_KEY_LEN + 1];
        buf path;
        sioc *c;
        int r;

        if (!opts->host || !opts->nsp || opts->nsp[0] != '/' || !opts->token)
                return -EINVAL;
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->nsp = strdup(opts->nsp);
        c->token = strdup(opts->token);
        if (!c->nsp || !c->token) {
                r = -ENOMEM;
                goto out_free;
        }
        po.max_message = opts->max_message ? opts->max_message : SIOC_MAX_MESSAGE_DEFAULT;
        c->limits.max_len = po.max_message;
        r = ws_parser_new(&po, &c->parser);
        if (r < 0)
                goto out_free;
        buf_init(&path, 8192);
        r = buf_append_str(&path, "/socket.io/?EIO=4&transport=websocket");
        if (r == 0 && opts->query && *opts->query)
                r = buf_appendf(&path, "&%s", opts->query);
        if (r == 0)
                r = ws_request_build(out, opts->host, opts->port, opts->tls, path.data, NULL, key);
        buf_done(&path);
        if (r < 0)
                goto out_free;
        r = ws_handshake_new(key, &c->hs);
        if (r < 0)
                goto out_free;
        c->state = ST_HANDSHAKE;
        *ret = c;
        return 0;
out_free:
        sioc_free(c);
        return r;
}

static int send_eio(buf *out, eio_type type, const char *payload, size_t len) {
        buf tmp;
        int r;

        buf_init(&tmp, 0);
        r = eio_encode(&tmp, type, payload, len);
        if (r == 0)
                r = ws_frame_encode(out, WS_OP_TEXT, tmp.data, tmp.len);
        buf_done(&tmp);
        return r;
}

static int send_sio(sioc *c, buf *out, sio_type type, int64_t ack_id, json_t *data) {
        sio_packet sp = { .type = type, .nsp = c->nsp, .ack_id = ack_id, .data = data };
        buf tmp;
        int r;

        buf_init(&tmp, 0);
        r = eio_encode(&tmp, EIO_MESSAGE, NULL, 0);
        if (r == 0)
                r = sio_encode(&tmp, &sp);
        if (r == 0 && c->max_payload && tmp.len > c->max_payload)
                r = -EMSGSIZE;
        if (r == 0)
                r = ws_frame_encode(out, WS_OP_TEXT, tmp.data, tmp.len);
        buf_done(&tmp);
        return r;
}

static int on_open(sioc *c, const eio_packet *p, buf *out, sioc_event_cb cb, void *ud) {
        eio_handshake hs = { 0 };
        char err[160];
        json_t *auth;
        sioc_event ev = { .type = SIOC_OPEN };
        int r;

        if (c->state != ST_WS_OPEN)
                return fail(c, -EPROTO, "unexpected Engine.IO OPEN");
        r = eio_parse_handshake(p->payload, p->len, &hs, err, sizeof err);
        if (r < 0)
                return fail(c, -EPROTO, "bad Engine.IO handshake: %s", err);
        c->liveness_ms = (uint64_t)hs.ping_interval_ms + (uint64_t)hs.ping_timeout_ms;
        c->max_payload = (uint64_t)hs.max_payload;
        eio_handshake_done(&hs);
        auth = json_pack("{s:s}", "token", c->token);
        if (!auth)
                return fail(c, -ENOMEM, "out of memory");
        r = send_sio(c, out, SIO_CONNECT, -1, auth);
        json_decref(auth);
        if (r < 0)
                return fail(c, r, "cannot send CONNECT");
        c->state = ST_EIO_OPEN;
        cb(&ev, ud);
        return 0;
}

static const char *connect_error_text(const json_t *data) {
        if (json_is_string(data))
                return json_string_value(data);
        if (json_is_object(data) && json_is_string(json_object_get(data, "message")))
                return json_string_value(json_object_get(data, "message"));
        return "connect_error";
}

static int on_sio(sioc *c, const eio_packet *p, buf *out, sioc_event_cb cb, void *ud) {
        sio_packet sp;
        sioc_event ev = { 0 };
        char err[160];
        int r;

        r = sio_decode(p->payload, p->len, &c->limits, &sp, err, sizeof err);
        if (r < 0)
                return fail(c, -EPROTO, "bad Socket.IO packet: %s", err);
        if (strcmp(sp.nsp, c->nsp) != 0) {
                /* The server never sends for a namespace we did not join;
                 * socket.io-client ignores such packets, and so do we. */
                sio_packet_done(&sp);
                return 0;
        }
        switch (sp.type) {
        case SIO_CONNECT:
                if (c->state != ST_EIO_OPEN) {
                        r = fail(c, -EPROTO, "unexpected CONNECT");
                        break;
                }
                c->state = ST_CONNECTED;
                ev.type = SIOC_CONNECTED;
                ev.text = json_string_value(json_object_get(sp.data, "sid"));
                cb(&ev, ud);
                break;
        case SIO_CONNECT_ERROR:
                c->state = ST_LEFT;
                ev.type = SIOC_CONNECT_ERROR;
                ev.text = connect_error_text(sp.data);
                cb(&ev, ud);
                break;
        case SIO_DISCONNECT:
                c->state = ST_LEFT;
                ev.type = SIOC_DISCONNECTED;
                cb(&ev, ud);
                break;
        case SIO_EVENT:
                if (c->state != ST_CONNECTED)
                        break;
                if (sp.ack_id >= 0) {
                        json_t *none = json_array();
                        r = none ? send_sio(c, out, SIO_ACK, sp.ack_id, none) : -ENOMEM;
                        json_decref(none);
                        if (r < 0) {
                                r = fail(c, r, "cannot send ACK");
                                break;
                        }
                }
                ev.type = SIOC_EVENT;
                ev.text = json_string_value(json_array_get(sp.data, 0));
                ev.data = json_array_get(sp.data, 1);
                cb(&ev, ud);
                break;
        default:
                /* ACKs to our events: we never ask for any. */
                break;
        }
        sio_packet_done(&sp);
        return r < 0 ? r : 0;
}

static int on_text(sioc *c, const char *data, size_t len, buf *out, sioc_event_cb cb, void *ud) {
        eio_packet p;
        sioc_event ev = { .type = SIOC_PING };
        int r;

        r = eio_decode(data, len, &p);
        if (r < 0) {
                char excerpt[40];
                size_t n = len < sizeof excerpt - 1 ? len : sizeof excerpt - 1;
                memcpy(excerpt, data, n);
                excerpt[n] = '\0';
                for (size_t i = 0; i < n; i++)
                        if ((unsigned char)excerpt[i] < 0x20)
                                excerpt[i] = '.';
                return fail(c, -EPROTO, "not an Engine.IO packet: \"%s\"", excerpt);
        }
        switch (p.type) {
        case EIO_OPEN:
                return on_open(c, &p, out, cb, ud);
        case EIO_PING:
                r = send_eio(out, EIO_PONG, p.payload, p.len);
                if (r < 0)
                        return fail(c, r, "cannot send PONG");
                cb(&ev, ud);
                return 0;
        case EIO_MESSAGE:
                if (c->state < ST_EIO_OPEN)
                        return fail(c, -EPROTO, "MESSAGE before Engine.IO OPEN");
                return on_sio(c, &p, out, cb, ud);
        case EIO_CLOSE:
                /* The server closes the WebSocket right after; nothing to do. */
                return 0;
        default:
                return 0; /* NOOP, and PONG/UPGRADE that a server never sends */
        }
}

int sioc_feed(sioc *c, const void *data, size_t len, buf *out, sioc_event_cb cb, void *ud) {
        const char *p = data;
        size_t used;
        int r;

        if (c->errcode)
                return c->errcode;
        if (c->state == ST_HANDSHAKE) {
                r = ws_handshake_feed(c->hs, p, len, &used);
                if (r < 0)
                        return fail(c, r == -ENOMEM ? -ENOMEM : -EPROTO, "WebSocket upgrade refused: %s",
                                    ws_handshake_error(c->hs));
                if (r == 0)
                        return 0;
                c->state = ST_WS_OPEN;
                c->hs = ws_handshake_free(c->hs);
                p += used;
                len -= used;
        }
        while (len > 0) {
                size_t chunk = len > 65536 ? 65536 : len;
                ws_message m;

                r = ws_parser_feed(c->parser, p, chunk);
                if (r < 0)
                        return fail(c, r, "WebSocket: %s", ws_parser_error(c->parser));
                p += chunk;
                len -= chunk;
                while ((r = ws_parser_next(c->parser, &m)) == 1) {
                        if (c->state == ST_CLOSED)
                                continue;
                        switch (m.opcode) {
                        case WS_OP_TEXT:
                                r = on_text(c, m.data, m.len, out, cb, ud);
                                if (r < 0)
                                        return r;
                                break;
                        case WS_OP_BINARY:
                                return fail(c, -EPROTO, "unexpected binary WebSocket message");
                        case WS_OP_PING:
                                r = ws_frame_encode(out, WS_OP_PONG, m.data, m.len);
                                if (r < 0)
                                        return fail(c, r, "cannot send pong");
                                break;
                        case WS_OP_CLOSE: {
                                sioc_event ev = { .type = SIOC_CLOSED, .code = m.close_code,
                                                  .text = m.close_reason };
                                /* Echo the close without a status, as the server does. */
                                ws_close_encode(out, 0, NULL);
                                c->state = ST_CLOSED;
                                cb(&ev, ud);
                                break;
                        }
                        default:
                                break;
                        }
                        if (c->errcode)
                                return c->errcode;
                }
                if (r < 0) {
                        if (r == -EMSGSIZE)
                                return fail(c, r, "WebSocket: %s", ws_parser_error(c->parser));
                        return fail(c, r, "WebSocket: %s", ws_parser_error(c->parser));
                }
        }
        return 0;
}

int sioc_eof(sioc *c) {
        if (c->errcode)
                return c->errcode;
        if (c->state == ST_HANDSHAKE) {
                int r = ws_handshake_eof(c->hs);
                return fail(c, r, "connection closed during the WebSocket upgrade: %s",
                            ws_handshake_error(c->hs));
        }
        return fail(c, -ECONNRESET, "connection closed by the controller");
}

int sioc_emit_raw(sioc *c, const char *name, const char *json, size_t json_len, buf *out) {
        buf tmp;
        json_t *jname;
        char *qname;
        int r;

        if (c->state != ST_CONNECTED)
                return -ENOTCONN;
        jname = json_string(name);
        qname = jname ? json_dumps(jname, JSON_ENCODE_ANY) : NULL;
        json_decref(jname);
        if (!qname)
                return -ENOMEM;
        buf_init(&tmp, 0);
        r = buf_appendf(&tmp, "42%s,[%s", strcmp(c->nsp, "/") ? c->nsp : "", qname);
        if (strcmp(c->nsp, "/") == 0 && r == 0) {
                /* Root namespace: no "<nsp>," part. */
                buf_reset(&tmp);
                r = buf_appendf(&tmp, "42[%s", qname);
        }
        if (r == 0 && json) {
                r = buf_append(&tmp, ",", 1);
                if (r == 0)
                        r = buf_append(&tmp, json, json_len);
        }
        if (r == 0)
                r = buf_append(&tmp, "]", 1);
        if (r == 0 && c->max_payload && tmp.len > c->max_payload)
                r = -EMSGSIZE;
        if (r == 0)
                r = ws_frame_encode(out, WS_OP_TEXT, tmp.data, tmp.len);
        buf_done(&tmp);
        free(qname);
        return r;
}

int sioc_emit(sioc *c, const char *name, const json_t *data, buf *out) {
        buf json;
        int r = 0;

        /* sio_json_write() writes what JSON.stringify would (numbers, key
         * order, escapes), so the controller sees the original's bytes. */
        buf_init(&json, 0);
        if (data)
                r = sio_json_write(&json, data);
        if (r == 0)
                r = sioc_emit_raw(c, name, data ? json.data : NULL, json.len, out);
        buf_done(&json);
        return r;
}

int sioc_close(sioc *c, buf *out) {
        int r = 0;

        if (c->state == ST_CONNECTED || c->state == ST_EIO_OPEN)
                r = send_sio(c, out, SIO_DISCONNECT, -1, NULL);
        if (r == 0 && c->state >= ST_WS_OPEN && c->state != ST_CLOSED)
                r = ws_close_encode(out, 1000, NULL);
        if (c->state != ST_HANDSHAKE)
                c->state = ST_CLOSED;
        return r;
}

bool sioc_connected(const sioc *c) {
        return c->state == ST_CONNECTED;
}

bool sioc_open(const sioc *c) {
        return c->state >= ST_EIO_OPEN && c->state != ST_CLOSED;
}

uint64_t sioc_liveness_ms(const sioc *c) {
        return c->liveness_ms;
}

uint64_t sioc_max_payload(const sioc *c) {
        return c->max_payload;
}

const char *sioc_error(const sioc *c) {
        return c->err;
}
