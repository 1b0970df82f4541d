/* Unit tests of the WebSocket framing layer (transport/ws). Bytes only. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "transport/ws.h"

/* ---- helpers ---- */

/* A server frame (unmasked) appended to b. */
static void srv_frame(buf *b, ws_opcode op, bool fin, const void *data, size_t len) {
        assert_int_equal(ws_frame_write(b, op, fin, false, data, len), 0);
}

typedef struct got {
        ws_opcode op;
        char *data;
        size_t len;
        uint16_t code;
        char *reason;
} got;

typedef struct collected {
        got items[16];
        size_t n;
        int error;
        uint16_t close_code;
} collected;

static void collected_done(collected *c) {
        for (size_t i = 0; i < c->n; i++) {
                free(c->items[i].data);
                free(c->items[i].reason);
        }
        c->n = 0;
}

/* Drains p into c; stops at the first error. */
static void drain(ws_parser *p, collected *c) {
        ws_message m;
        int r;

        while ((r = ws_parser_next(p, &m)) == 1) {
                got *g;
                assert_true(c->n < 16);
                g = &c->items[c->n++];
                g->op = m.opcode;
                g->data = malloc(m.len + 1);
                assert_non_null(g->data);
                memcpy(g->data, m.data, m.len + 1);
                assert_int_equal(m.data[m.len], '\0');
                g->len = m.len;
                g->code = m.close_code;
                g->reason = m.opcode == WS_OP_CLOSE ? strdup(m.close_reason) : NULL;
        }
        if (r < 0) {
                c->error = r;
                c->close_code = ws_parser_close_code(p);
        }
}

/* Feeds stream split into chunks of the given sizes (0-terminated list,
 * the last chunk takes the rest), draining after each. */
static void feed_split(ws_parser *p, const char *data, size_t len, size_t split, collected *c) {
        size_t first = split < len ? split : len;
        if (first) {
                assert_int_equal(ws_parser_feed(p, data, first), 0);
                drain(p, c);
        }
        if (c->error == 0 && len > first) {
                int r = ws_parser_feed(p, data + first, len - first);
                if (r < 0) {
                        c->error = r;
                        return;
                }
                drain(p, c);
        }
}

static ws_parser *parser(size_t max) {
        ws_parser_options o = { .max_message = max };
        ws_parser *p = NULL;
        assert_int_equal(ws_parser_new(&o, &p), 0);
        return p;
}

/* ---- handshake ---- */

static void test_accept_rfc_example(void **state) {
        char acc[WS_ACCEPT_LEN + 1];

        assert_int_equal(ws_accept_for_key("dGhlIHNhbXBsZSBub25jZQ==", acc), 0);
        assert_string_equal(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_int_equal(ws_accept_for_key("OE9IZtTgxvtTplg17qOKhg==", acc), 0);
        assert_string_equal(acc, "kPzX5+fGrvYKayArelftOl0ckX0=");
        assert_int_equal(ws_accept_for_key("short", acc), -EINVAL);
}

static void test_key_new(void **state) {
        char a[WS_KEY_LEN + 1], b[WS_KEY_LEN + 1];
        assert_int_equal(ws_key_new(a), 0);
        assert_int_equal(ws_key_new(b), 0);
        assert_int_equal(strlen(a), WS_KEY_LEN);
        assert_int_equal(a[22], '=');
        assert_string_not_equal(a, b);
}

static void test_request_build(void **state) {
        static const struct {
                const char *host;
                uint16_t port;
                bool tls;
                const char *host_line;
        } t[] = {
                { "controller.example", 3003, false, "Host: controller.example:3003\r\n" },
                { "controller.example", 80, false, "Host: controller.example\r\n" },
                { "controller.example", 443, true, "Host: controller.example\r\n" },
                { "controller.example", 80, true, "Host: controller.example:80\r\n" },
                { "::1", 4000, false, "Host: [::1]:4000\r\n" },
                { "[::1]", 443, true, "Host: [::1]\r\n" },
                { "127.0.0.1", 4000, false, "Host: 127.0.0.1:4000\r\n" },
        };
        const char *extra[] = { "User-Agent: aiwm-worker/0.1", "X-Empty:", NULL };

        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
                char key[WS_KEY_LEN + 1], acc[WS_ACCEPT_LEN + 1];
                buf b;
                buf_init(&b, 0);
                assert_int_equal(ws_request_build(&b, t[i].host, t[i].port, t[i].tls,
                                                  "/socket.io/?EIO=4&transport=websocket", extra, key),
                                 0);
                assert_true(strncmp(b.data, "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n",
                                    52) == 0);
                assert_non_null(strstr(b.data, t[i].host_line));
                assert_non_null(strstr(b.data, "\r\nUpgrade: websocket\r\n"));
                assert_non_null(strstr(b.data, "\r\nConnection: Upgrade\r\n"));
                assert_non_null(strstr(b.data, "\r\nSec-WebSocket-Version: 13\r\n"));
                assert_non_null(strstr(b.data, "\r\nUser-Agent: aiwm-worker/0.1\r\nX-Empty:\r\n\r\n"));
                assert_null(strstr(b.data, "Extensions"));
                assert_int_equal(strlen(key), WS_KEY_LEN);
                assert_non_null(strstr(b.data, key));
                assert_int_equal(ws_accept_for_key(key, acc), 0);
                assert_int_equal(b.len, strlen(b.data));
                assert_string_equal(b.data + b.len - 4, "\r\n\r\n");
                buf_done(&b);
        }
}

static void test_request_build_rejects(void **state) {
        const char *bad_hdr1[] = { "X-Evil: a\r\nInjected: b", NULL };
        const char *bad_hdr2[] = { "NoColon", NULL };
        const char *bad_hdr3[] = { ": empty-name", NULL };
        const char *bad_hdr4[] = { "Bad Name: x", NULL };
        char key[WS_KEY_LEN + 1];
        buf b;

        buf_init(&b, 0);
        assert_int_equal(ws_request_build(&b, "h", 80, false, "nopath", NULL, key), -EINVAL);
        assert_int_equal(ws_request_build(&b, "h", 80, false, "/a b", NULL, key), -EINVAL);
        assert_int_equal(ws_request_build(&b, "h", 80, false, "/a\r\nX: y", NULL, key), -EINVAL);
        assert_int_equal(ws_request_build(&b, "h\r\n", 80, false, "/", NULL, key), -EINVAL);
        assert_int_equal(ws_request_build(&b, "", 80, false, "/", NULL, key), -EINVAL);
        assert_int_equal(ws_request_build(&b, "[::1", 80, false, "/", NULL, key), -EINVAL);
        assert_int_equal(ws_request_build(&b, "[]", 80, false, "/", NULL, key), -EINVAL);
        assert_int_equal(ws_request_build(&b, "[example.com]", 80, false, "/", NULL, key), -EINVAL);
        assert_int_equal(ws_request_build(&b, "example.com:80", 80, false, "/", NULL, key), -EINVAL);
        assert_int_equal(ws_request_build(&b, "h", 0, false, "/", NULL, key), -EINVAL);
        assert_int_equal(ws_request_build(&b, "h", 80, false, "/", bad_hdr1, key), -EINVAL);
        assert_int_equal(ws_request_build(&b, "h", 80, false, "/", bad_hdr2, key), -EINVAL);
        assert_int_equal(ws_request_build(&b, "h", 80, false, "/", bad_hdr3, key), -EINVAL);
        assert_int_equal(ws_request_build(&b, "h", 80, false, "/", bad_hdr4, key), -EINVAL);
        assert_int_equal(b.len, 0);
        buf_done(&b);
}

/* PROTOCOL.md §1.1, captured response, followed by the first server frame. */
static const char captured_101[] = "HTTP/1.1 101 Switching Protocols\r\n"
                                   "Upgrade: websocket\r\n"
                                   "Connection: Upgrade\r\n"
                                   "Sec-WebSocket-Accept: kPzX5+fGrvYKayArelftOl0ckX0=\r\n"
                                   "Access-Control-Allow-Origin: *\r\n"
                                   "Access-Control-Allow-Credentials: true\r\n"
                                   "\r\n";
static const char captured_key[] = "OE9IZtTgxvtTplg17qOKhg==";
static const char open_packet[] =
        "0{\"sid\":\"Ys1WtiLB6Iuco7JVAAAA\",\"upgrades\":[],\"pingInterval\":25000,"
        "\"pingTimeout\":20000,\"maxPayload\":1000000}";

static void test_handshake_captured_every_split(void **state) {
        buf stream;
        size_t hlen = strlen(captured_101);

        buf_init(&stream, 0);
        assert_int_equal(buf_append_str(&stream, captured_101), 0);
        srv_frame(&stream, WS_OP_TEXT, true, open_packet, strlen(open_packet));

        for (size_t split = 0; split <= stream.len; split++) {
                ws_handshake *h = NULL;
                ws_parser *p = parser(0);
                collected c = { 0 };
                size_t used = 0, off = 0;
                int r;

                assert_int_equal(ws_handshake_new(captured_key, &h), 0);
                r = ws_handshake_feed(h, stream.data, split, &used);
                if (r == 0) {
                        assert_int_equal(used, split);
                        off = split;
                        r = ws_handshake_feed(h, stream.data + off, stream.len - off, &used);
                }
                assert_int_equal(r, 1);
                assert_int_equal(off + used, hlen);
                assert_int_equal(ws_handshake_status(h), 101);
                assert_string_equal(ws_handshake_error(h), "");
                /* Bytes after the response are the first frame. */
                feed_split(p, stream.data + hlen, stream.len - hlen, stream.len, &c);
                assert_int_equal(c.error, 0);
                assert_int_equal(c.n, 1);
                assert_int_equal(c.items[0].op, WS_OP_TEXT);
                assert_string_equal(c.items[0].data, open_packet);
                collected_done(&c);
                ws_parser_free(p);
                ws_handshake_free(h);
        }
        buf_done(&stream);
}

static void test_handshake_byte_by_byte(void **state) {
        ws_handshake *h = NULL;
        size_t used, n = strlen(captured_101);

        assert_int_equal(ws_handshake_new(captured_key, &h), 0);
        for (size_t i = 0; i < n; i++) {
                int r = ws_handshake_feed(h, captured_101 + i, 1, &used);
                assert_int_equal(used, 1);
                assert_int_equal(r, i + 1 == n ? 1 : 0);
        }
        ws_handshake_free(h);
}

static void test_handshake_failures(void **state) {
        static const struct {
                const char *resp;
                int error;
                int status;
                const char *msg;
        } t[] = {
                { "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: application/json\r\n"
                  "Content-Length: 40\r\n\r\n{\"code\":0,\"message\":\"Transport unknown\"}",
                  -EPROTO, 400, "HTTP 400 Bad Request: {\"code\":0,\"message\":\"Transport unknown\"}" },
                { "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", -EPROTO, 400,
                  "HTTP 400 Bad Request" },
                { "HTTP/1.1 404 Not Found\r\n\r\nno such\r\nthing", -EPROTO, 404,
                  "HTTP 404 Not Found: no such  thing" },
                { "HTTP/1.0 503\r\n\r\n", -EPROTO, 503, "HTTP 503" },
                { "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                  -EPROTO, 101, "handshake response with no Sec-WebSocket-Accept" },
                { "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
                  -EPROTO, 101, "handshake response with a wrong Sec-WebSocket-Accept" },
                { "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Accept: kPzX5+fGrvYKayArelftOl0ckX0=\r\n"
                  "Sec-WebSocket-Accept: kPzX5+fGrvYKayArelftOl0ckX0=\r\n\r\n",
                  -EPROTO, 101, "handshake response with a wrong Sec-WebSocket-Accept" },
                { "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Accept: kPzX5+fGrvYKayArelftOl0ckX0=\r\n\r\n",
                  -EPROTO, 101, "handshake response without Upgrade: websocket" },
                { "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
                  "Sec-WebSocket-Accept: kPzX5+fGrvYKayArelftOl0ckX0=\r\n\r\n",
                  -EPROTO, 101, "handshake response without Connection: upgrade" },
                { "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Accept: kPzX5+fGrvYKayArelftOl0ckX0=\r\n"
                  "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
                  -EPROTO, 101, "server selected an extension that was not offered" },
                { "HTTP/1.1 abc\r\n\r\n", -EBADMSG, 0, "malformed HTTP status line" },
                { "SSH-2.0-OpenSSH_9.2\r\n\r\n", -EBADMSG, 0, "malformed HTTP status line" },
                { "\r\n\r\n", -EBADMSG, 0, "malformed HTTP status line" },
                { "HTTP/1.1 101 OK\r\n folded\r\n\r\n", -EBADMSG, 101, "folded HTTP header line" },
                { "HTTP/1.1 101 OK\r\nNo colon\r\n\r\n", -EBADMSG, 101, "malformed HTTP header line" },
                { "HTTP/1.1 101 OK\r\nBad name: x\r\n\r\n", -EBADMSG, 101, "malformed HTTP header name" },
                { "HTTP/1.1 400 X\r\nContent-Length: -1\r\n\r\n", -EBADMSG, 400, "bad Content-Length" },
                /* Corrupted before the end of the head: fails without waiting for it. */
                { "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\x0c\n\x81\x7e", -EBADMSG, 101,
                  "control byte 0x0c in the HTTP response head" },
                { "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r*\x81\x7e", -EBADMSG, 101,
                  "CR without LF in the HTTP response head" },
                { "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nM\n\x81\x7e", -EBADMSG, 101,
                  "malformed HTTP header line" },
                { "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nX: \x01", -EBADMSG, 101,
                  "control byte 0x01 in the HTTP response head" },
                { "HTTP/1.1 101 Switching\rProtocols\r\n", -EBADMSG, 0, "CR without LF in the HTTP response head" },
                { "HTTX/1.1", -EBADMSG, 0, "malformed HTTP status line" },
                { "\x16\x03\x01", -EBADMSG, 0, "malformed HTTP status line" },
        };

        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
                ws_handshake *h = NULL;
                size_t used = 0;
                int r;

                assert_int_equal(ws_handshake_new(captured_key, &h), 0);
                r = ws_handshake_feed(h, t[i].resp, strlen(t[i].resp), &used);
                if (r != t[i].error)
                        fail_msg("case %zu: got %d (%s)", i, r, ws_handshake_error(h));
                assert_int_equal(ws_handshake_status(h), t[i].status);
                assert_string_equal(ws_handshake_error(h), t[i].msg);
                /* Sticky. */
                assert_int_equal(ws_handshake_feed(h, "x", 1, &used), t[i].error);
                assert_int_equal(ws_handshake_eof(h), t[i].error);
                ws_handshake_free(h);
        }
}

/* The chaos proxy's finding: one flipped bit anywhere in the upgrade reply
 * (followed, as on the wire, by the Engine.IO OPEN frame) either still
 * yields an acceptable handshake or fails at once; the parser never waits
 * for more bytes, which would stall the attempt until the connect timeout.
 * Fed whole and byte by byte. */
static void test_handshake_bit_flips_never_stall(void **state) {
        buf stream;
        size_t hlen = strlen(captured_101), ok = 0, failed = 0;

        buf_init(&stream, 0);
        assert_int_equal(buf_append_str(&stream, captured_101), 0);
        srv_frame(&stream, WS_OP_TEXT, true, open_packet, strlen(open_packet));
        for (size_t at = 0; at < hlen; at++) {
                for (int bit = 0; bit < 8; bit++) {
                        ws_handshake *h = NULL;
                        size_t used = 0;
                        int r = 0, r1 = 0;

                        stream.data[at] ^= (char)(1 << bit);
                        assert_int_equal(ws_handshake_new(captured_key, &h), 0);
                        r = ws_handshake_feed(h, stream.data, stream.len, &used);
                        ws_handshake_free(h);
                        assert_int_equal(ws_handshake_new(captured_key, &h), 0);
                        for (size_t i = 0; i < stream.len && r1 == 0; i++)
                                r1 = ws_handshake_feed(h, stream.data + i, 1, &used);
                        if (r == 0 || r1 == 0 || (r < 0) != (r1 < 0))
                                fail_msg("bit %d of byte %zu (0x%02x): whole %d, byte by byte %d (%s)", bit, at,
                                         (unsigned char)stream.data[at], r, r1, ws_handshake_error(h));
                        ws_handshake_free(h);
                        stream.data[at] ^= (char)(1 << bit);
                        if (r == 1)
                                ok++;
                        else
                                failed++;
                }
        }
        /* Most flips break the handshake; case flips in header names do not. */
        assert_true(failed > hlen * 4);
        assert_true(ok > 0);
        buf_done(&stream);
}

static void test_handshake_body_split(void **state) {
        const char *head = "HTTP/1.1 400 Bad Request\r\nContent-Length: 34\r\n\r\n{\"code\":3,";
        const char *rest = "\"message\":\"Bad request\"}";
        ws_handshake *h = NULL;
        size_t used;

        assert_int_equal(ws_handshake_new(captured_key, &h), 0);
        assert_int_equal(ws_handshake_feed(h, head, strlen(head), &used), 0);
        assert_int_equal(used, strlen(head));
        assert_int_equal(ws_handshake_status(h), 400);
        assert_int_equal(ws_handshake_feed(h, rest, strlen(rest), &used), -EPROTO);
        assert_string_equal(ws_handshake_error(h),
                            "HTTP 400 Bad Request: {\"code\":3,\"message\":\"Bad request\"}");
        ws_handshake_free(h);

        /* Peer closes before the announced body arrives. */
        assert_int_equal(ws_handshake_new(captured_key, &h), 0);
        assert_int_equal(ws_handshake_feed(h, head, strlen(head), &used), 0);
        assert_int_equal(ws_handshake_eof(h), -EPROTO);
        assert_string_equal(ws_handshake_error(h), "HTTP 400 Bad Request: {\"code\":3,");
        ws_handshake_free(h);
}

static void test_handshake_eof_and_cap(void **state) {
        ws_handshake *h = NULL;
        char *big;
        size_t used;

        assert_int_equal(ws_handshake_new(captured_key, &h), 0);
        assert_int_equal(ws_handshake_eof(h), -ECONNRESET);
        assert_string_equal(ws_handshake_error(h), "connection closed before the handshake response");
        ws_handshake_free(h);

        assert_int_equal(ws_handshake_new(captured_key, &h), 0);
        assert_int_equal(ws_handshake_feed(h, "HTTP/1.1 101", 12, &used), 0);
        assert_int_equal(ws_handshake_eof(h), -ECONNRESET);
        assert_string_equal(ws_handshake_error(h), "connection closed during the handshake response");
        ws_handshake_free(h);

        /* Headers that never end are capped. */
        big = malloc(WS_HANDSHAKE_MAX + 100);
        assert_non_null(big);
        memset(big, 'a', WS_HANDSHAKE_MAX + 100);
        memcpy(big, "HTTP/1.1 101 OK\r\nX: ", 20);
        assert_int_equal(ws_handshake_new(captured_key, &h), 0);
        assert_int_equal(ws_handshake_feed(h, big, 1000, &used), 0);
        assert_int_equal(ws_handshake_feed(h, big + 1000, WS_HANDSHAKE_MAX + 100 - 1000, &used),
                         -E2BIG);
        ws_handshake_free(h);
        free(big);
}

/* PROTOCOL.md §1.1: with EIO=3 the server answers 101 and then writes a raw
 * HTTP 400 into the stream. The frame parser must fail cleanly. */
static void test_raw_http_after_101(void **state) {
        const char *raw = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-type: text/html\r\n"
                          "\r\nUnsupported protocol version";
        ws_parser *p = parser(0);
        collected c = { 0 };

        feed_split(p, raw, strlen(raw), strlen(raw), &c);
        assert_int_equal(c.n, 0);
        assert_int_equal(c.error, -EPROTO);
        assert_int_equal(c.close_code, WS_CLOSE_PROTOCOL_ERROR);
        assert_string_equal(ws_parser_error(p), "frame with reserved bits set (first byte 0x48)");
        /* Sticky, also for feed. */
        assert_int_equal(ws_parser_feed(p, "x", 1), -EPROTO);
        ws_parser_free(p);
}

/* ---- frame decoding ---- */

static void test_frames_every_split(void **state) {
        static char mid[300], big[70000];
        buf s;

        memset(mid, 'm', sizeof mid);
        for (size_t i = 0; i < sizeof big; i++)
                big[i] = (char)('a' + i % 26);
        buf_init(&s, 0);
        srv_frame(&s, WS_OP_TEXT, true, "2", 1);
        srv_frame(&s, WS_OP_TEXT, true, mid, sizeof mid);   /* 16-bit length */
        srv_frame(&s, WS_OP_BINARY, true, big, sizeof big); /* 64-bit length */
        srv_frame(&s, WS_OP_PING, true, "hi", 2);
        srv_frame(&s, WS_OP_TEXT, true, "", 0);
        srv_frame(&s, WS_OP_CLOSE, true, "\x03\xe8" "bye", 5);
        assert_int_equal((unsigned char)s.data[4], 126);

        /* Every split point in the small part, a sample through the big frame. */
        for (size_t split = 0; split <= s.len; split += split < 400 || split > s.len - 400 ? 1 : 997) {
                ws_parser *p = parser(0);
                collected c = { 0 };

                feed_split(p, s.data, s.len, split, &c);
                assert_int_equal(c.error, 0);
                assert_int_equal(c.n, 6);
                assert_int_equal(c.items[0].op, WS_OP_TEXT);
                assert_string_equal(c.items[0].data, "2");
                assert_int_equal(c.items[1].len, sizeof mid);
                assert_memory_equal(c.items[1].data, mid, sizeof mid);
                assert_int_equal(c.items[2].op, WS_OP_BINARY);
                assert_int_equal(c.items[2].len, sizeof big);
                assert_memory_equal(c.items[2].data, big, sizeof big);
                assert_int_equal(c.items[3].op, WS_OP_PING);
                assert_string_equal(c.items[3].data, "hi");
                assert_int_equal(c.items[4].op, WS_OP_TEXT);
                assert_int_equal(c.items[4].len, 0);
                assert_int_equal(c.items[5].op, WS_OP_CLOSE);
                assert_int_equal(c.items[5].code, 1000);
                assert_string_equal(c.items[5].reason, "bye");
                collected_done(&c);
                ws_parser_free(p);
        }
        buf_done(&s);
}

static void test_frames_byte_by_byte(void **state) {
        ws_parser *p = parser(0);
        collected c = { 0 };
        buf s;

        buf_init(&s, 0);
        srv_frame(&s, WS_OP_TEXT, false, "he", 2);
        srv_frame(&s, WS_OP_PING, true, "p", 1);
        srv_frame(&s, WS_OP_CONT, false, "ll", 2);
        srv_frame(&s, WS_OP_CONT, true, "o", 1);
        for (size_t i = 0; i < s.len; i++) {
                assert_int_equal(ws_parser_feed(p, s.data + i, 1), 0);
                drain(p, &c);
        }
        assert_int_equal(c.error, 0);
        assert_int_equal(c.n, 2);
        assert_int_equal(c.items[0].op, WS_OP_PING);
        assert_string_equal(c.items[1].data, "hello");
        collected_done(&c);
        ws_parser_free(p);
        buf_done(&s);
}

static void test_fragmentation_and_control(void **state) {
        ws_parser *p = parser(0);
        collected c = { 0 };
        buf s;

        buf_init(&s, 0);
        srv_frame(&s, WS_OP_TEXT, false, "42/ws/node,", 11);
        srv_frame(&s, WS_OP_PING, true, "a", 1);
        srv_frame(&s, WS_OP_CONT, false, "[\"x\",", 5);
        srv_frame(&s, WS_OP_PONG, true, "", 0);
        srv_frame(&s, WS_OP_CONT, false, "", 0);
        srv_frame(&s, WS_OP_CLOSE, true, "", 0);
        srv_frame(&s, WS_OP_CONT, true, "{}]", 3);
        srv_frame(&s, WS_OP_BINARY, false, "\x00\xff", 2);
        srv_frame(&s, WS_OP_CONT, true, "\x01", 1);
        feed_split(p, s.data, s.len, s.len, &c);
        assert_int_equal(c.error, 0);
        assert_int_equal(c.n, 5);
        assert_int_equal(c.items[0].op, WS_OP_PING);
        assert_string_equal(c.items[0].data, "a");
        assert_int_equal(c.items[1].op, WS_OP_PONG);
        assert_int_equal(c.items[2].op, WS_OP_CLOSE);
        assert_int_equal(c.items[2].code, WS_CLOSE_NO_STATUS);
        assert_string_equal(c.items[2].reason, "");
        assert_int_equal(c.items[3].op, WS_OP_TEXT);
        assert_string_equal(c.items[3].data, "42/ws/node,[\"x\",{}]");
        assert_int_equal(c.items[4].op, WS_OP_BINARY);
        assert_int_equal(c.items[4].len, 3);
        assert_memory_equal(c.items[4].data, "\x00\xff\x01", 3);
        collected_done(&c);
        ws_parser_free(p);
        buf_done(&s);
}

/* Each case is a stream of raw bytes that must fail. */
static void test_protocol_errors(void **state) {
        static const struct {
                const char *name;
                const char *bytes;
                size_t len;
                int error;
                uint16_t code;
        } t[] = {
#define B(s) s, sizeof(s) - 1
                { "rsv1", B("\xc1\x00"), -EPROTO, 1002 },
                { "rsv2", B("\xa1\x00"), -EPROTO, 1002 },
                { "rsv3", B("\x91\x00"), -EPROTO, 1002 },
                { "opcode 3", B("\x83\x00"), -EPROTO, 1002 },
                { "opcode 7", B("\x87\x00"), -EPROTO, 1002 },
                { "opcode 11", B("\x8b\x00"), -EPROTO, 1002 },
                { "opcode 15", B("\x8f\x00"), -EPROTO, 1002 },
                { "masked", B("\x81\x81\x01\x02\x03\x04\x60"), -EPROTO, 1002 },
                { "fragmented ping", B("\x09\x00"), -EPROTO, 1002 },
                { "fragmented close", B("\x08\x00"), -EPROTO, 1002 },
                { "ping 126", B("\x89\x7e\x00\x7e"), -EPROTO, 1002 },
                { "continuation first", B("\x80\x01x"), -EPROTO, 1002 },
                { "text inside fragments", B("\x01\x01x\x81\x01y"), -EPROTO, 1002 },
                { "64-bit msb", B("\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00"), -EPROTO, 1002 },
                { "close 1 byte", B("\x88\x01\x03"), -EPROTO, 1002 },
                { "close 1005", B("\x88\x02\x03\xed"), -EPROTO, 1002 },
                { "close 999", B("\x88\x02\x03\xe7"), -EPROTO, 1002 },
                { "close 5000", B("\x88\x02\x13\x88"), -EPROTO, 1002 },
                { "close bad utf8", B("\x88\x03\x03\xe8\xff"), -EILSEQ, 1007 },
                { "text bad utf8", B("\x81\x02\xc3\x28"), -EILSEQ, 1007 },
                { "text surrogate", B("\x81\x03\xed\xa0\x80"), -EILSEQ, 1007 },
                { "text bad utf8 fragmented", B("\x01\x01\xe2\x80\x02\x82\xff"), -EILSEQ, 1007 },
                { "too big 16-bit", B("\x82\x7e\x01\x00"), -EMSGSIZE, 1009 },
                { "too big 64-bit", B("\x82\x7f\x7f\xff\xff\xff\xff\xff\xff\xff"), -EMSGSIZE, 1009 },
#undef B
        };

        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
                ws_parser *p = parser(200);
                collected c = { 0 };

                feed_split(p, t[i].bytes, t[i].len, t[i].len, &c);
                if (c.error != t[i].error)
                        fail_msg("%s: got %d, want %d", t[i].name, c.error, t[i].error);
                assert_int_equal(c.close_code, t[i].code);
                assert_true(ws_parser_error(p)[0] != '\0');
                collected_done(&c);
                ws_parser_free(p);
        }
}

static void test_oversize(void **state) {
        char data[120];
        ws_parser *p;
        collected c = { 0 };
        buf s;

        memset(data, 'x', sizeof data);
        buf_init(&s, 0);

        /* Exactly at the cap passes. */
        p = parser(100);
        srv_frame(&s, WS_OP_TEXT, true, data, 100);
        feed_split(p, s.data, s.len, s.len, &c);
        assert_int_equal(c.error, 0);
        assert_int_equal(c.n, 1);
        collected_done(&c);
        ws_parser_free(p);

        /* One over fails from the header alone, before the payload arrives. */
        buf_reset(&s);
        p = parser(100);
        srv_frame(&s, WS_OP_TEXT, true, data, 101);
        feed_split(p, s.data, 2, 2, &c);
        assert_int_equal(c.error, -EMSGSIZE);
        assert_int_equal(c.close_code, WS_CLOSE_TOO_BIG);
        ws_parser_free(p);

        /* Fragments adding up past the cap. */
        c = (collected){ 0 };
        buf_reset(&s);
        p = parser(100);
        srv_frame(&s, WS_OP_TEXT, false, data, 60);
        srv_frame(&s, WS_OP_CONT, false, data, 40);
        srv_frame(&s, WS_OP_CONT, true, data, 1);
        feed_split(p, s.data, s.len, s.len, &c);
        assert_int_equal(c.error, -EMSGSIZE);
        assert_int_equal(c.close_code, WS_CLOSE_TOO_BIG);
        ws_parser_free(p);

        /* Feeding past the input cap is refused without losing state. */
        p = parser(10);
        {
                size_t cap = 2 * 10 + 64 * 1024;
                char *junk = calloc(1, cap + 1);
                assert_non_null(junk);
                assert_int_equal(ws_parser_feed(p, junk, cap + 1), -ENOBUFS);
                assert_int_equal(ws_parser_feed(p, "\x81\x01", 2), 0);
                assert_int_equal(ws_parser_feed(p, "z", 1), 0);
                c = (collected){ 0 };
                drain(p, &c);
                assert_int_equal(c.n, 1);
                assert_string_equal(c.items[0].data, "z");
                collected_done(&c);
                free(junk);
        }
        ws_parser_free(p);
        buf_done(&s);
}

static void test_close_frames(void **state) {
        static const struct {
                const char *bytes;
                size_t len;
                uint16_t code;
                const char *reason;
        } t[] = {
                { "\x88\x00", 2, 1005, "" },
                { "\x88\x02\x03\xe8", 4, 1000, "" },
                { "\x88\x02\x03\xf1", 4, 1009, "" },
                { "\x88\x06\x0f\xa0" "bye!", 8, 4000, "bye!" },
                { "\x88\x05\x03\xe9\xc3\xa9\x21", 7, 1001, "\xc3\xa9!" },
        };

        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
                ws_parser *p = parser(0);
                collected c = { 0 };
                feed_split(p, t[i].bytes, t[i].len, t[i].len, &c);
                assert_int_equal(c.error, 0);
                assert_int_equal(c.n, 1);
                assert_int_equal(c.items[0].op, WS_OP_CLOSE);
                assert_int_equal(c.items[0].code, t[i].code);
                assert_string_equal(c.items[0].reason, t[i].reason);
                collected_done(&c);
                ws_parser_free(p);
        }
}

/* ---- encoding ---- */

static void test_encode_roundtrip(void **state) {
        static char big[70000];
        ws_parser_options so = { .server = true };
        ws_parser *srv = NULL;
        collected c = { 0 };
        buf s;

        memset(big, 'q', sizeof big);
        buf_init(&s, 0);
        assert_int_equal(ws_parser_new(&so, &srv), 0);
        assert_int_equal(ws_frame_encode(&s, WS_OP_TEXT, "40/ws/node,{}", 13), 0);
        /* Masked: the mask bit is set and the payload is not in clear. */
        assert_int_equal((unsigned char)s.data[0], 0x81);
        assert_int_equal((unsigned char)s.data[1], 0x80 | 13);
        assert_int_equal(s.len, 2 + 4 + 13);
        assert_int_equal(ws_frame_encode(&s, WS_OP_BINARY, big, sizeof big), 0);
        assert_int_equal(ws_frame_encode(&s, WS_OP_PONG, "p", 1), 0);
        assert_int_equal(ws_close_encode(&s, 0, NULL), 0);
        assert_int_equal(ws_close_encode(&s, 1000, "done"), 0);
        feed_split(srv, s.data, s.len, 7, &c);
        assert_int_equal(c.error, 0);
        assert_int_equal(c.n, 5);
        assert_string_equal(c.items[0].data, "40/ws/node,{}");
        assert_int_equal(c.items[1].len, sizeof big);
        assert_memory_equal(c.items[1].data, big, sizeof big);
        assert_int_equal(c.items[2].op, WS_OP_PONG);
        assert_int_equal(c.items[3].code, 1005);
        assert_int_equal(c.items[4].code, 1000);
        assert_string_equal(c.items[4].reason, "done");
        collected_done(&c);

        /* A client parser refuses those masked frames. */
        {
                ws_parser *cli = parser(0);
                feed_split(cli, s.data, s.len, s.len, &c);
                assert_int_equal(c.error, -EPROTO);
                assert_string_equal(ws_parser_error(cli), "masked frame from the server");
                ws_parser_free(cli);
        }
        /* A server parser refuses unmasked frames. */
        {
                ws_parser *srv2 = NULL;
                c = (collected){ 0 };
                assert_int_equal(ws_parser_new(&so, &srv2), 0);
                feed_split(srv2, "\x81\x00", 2, 2, &c);
                assert_int_equal(c.error, -EPROTO);
                ws_parser_free(srv2);
        }
        ws_parser_free(srv);
        buf_done(&s);
}

static void test_encode_rejects(void **state) {
        char data[126] = { 0 };
        char reason[125];
        buf s;

        memset(reason, 'r', sizeof reason);
        reason[124] = '\0';
        buf_init(&s, 0);
        assert_int_equal(ws_frame_encode(&s, WS_OP_PING, data, 126), -EINVAL);
        assert_int_equal(ws_frame_write(&s, WS_OP_CLOSE, false, true, NULL, 0), -EINVAL);
        assert_int_equal(ws_frame_encode(&s, (ws_opcode)3, NULL, 0), -EINVAL);
        assert_int_equal(ws_frame_encode(&s, WS_OP_TEXT, NULL, 5), -EINVAL);
        assert_int_equal(ws_close_encode(&s, 1005, NULL), -EINVAL);
        assert_int_equal(ws_close_encode(&s, 1006, NULL), -EINVAL);
        assert_int_equal(ws_close_encode(&s, 0, "reason without code"), -EINVAL);
        assert_int_equal(ws_close_encode(&s, 1000, "\xff"), -EINVAL);
        assert_int_equal(ws_close_encode(&s, 1000, reason), -EINVAL);
        assert_int_equal(s.len, 0);
        reason[123] = '\0';
        assert_int_equal(ws_close_encode(&s, 4999, reason), 0);
        assert_int_equal(s.len, 2 + 4 + 2 + 123);
        buf_done(&s);
}

static void test_utf8(void **state) {
        static const struct {
                const char *s;
                bool ok;
        } t[] = {
                { "", true },
                { "plain ascii", true },
                { "\xc3\xa9t\xc3\xa9", true },
                { "\xe2\x82\xac", true },
                { "\xf0\x9f\x98\x80", true },
                { "\xf4\x8f\xbf\xbf", true },   /* U+10FFFF */
                { "\xed\x9f\xbf", true },       /* U+D7FF */
                { "\xee\x80\x80", true },       /* U+E000 */
                { "\x80", false },
                { "\xc0\xaf", false },          /* overlong / */
                { "\xc1\xbf", false },
                { "\xe0\x80\xaf", false },      /* overlong */
                { "\xf0\x80\x80\xaf", false },  /* overlong */
                { "\xed\xa0\x80", false },      /* surrogate */
                { "\xf4\x90\x80\x80", false },  /* > U+10FFFF */
                { "\xf5\x80\x80\x80", false },
                { "\xe2\x82", false },          /* truncated */
                { "\xc3", false },
                { "\xc3\x28", false },
                { "\xfe", false },
        };
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
                if (ws_utf8_valid(t[i].s, strlen(t[i].s)) != t[i].ok)
                        fail_msg("utf8 case %zu", i);
}

static void test_close_code_valid(void **state) {
        static const struct {
                uint16_t code;
                bool ok;
        } t[] = { { 0, false },    { 999, false },  { 1000, true },  { 1003, true },
                  { 1004, false }, { 1005, false }, { 1006, false }, { 1007, true },
                  { 1011, true },  { 1014, true },  { 1015, false }, { 2999, false },
                  { 3000, true },  { 4999, true },  { 5000, false } };
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
                if (ws_close_code_valid(t[i].code) != t[i].ok)
                        fail_msg("close code %u", (unsigned)t[i].code);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_accept_rfc_example),
                cmocka_unit_test(test_key_new),
                cmocka_unit_test(test_request_build),
                cmocka_unit_test(test_request_build_rejects),
                cmocka_unit_test(test_handshake_captured_every_split),
                cmocka_unit_test(test_handshake_byte_by_byte),
                cmocka_unit_test(test_handshake_failures),
                cmocka_unit_test(test_handshake_bit_flips_never_stall),
                cmocka_unit_test(test_handshake_body_split),
                cmocka_unit_test(test_handshake_eof_and_cap),
                cmocka_unit_test(test_raw_http_after_101),
                cmocka_unit_test(test_frames_every_split),
                cmocka_unit_test(test_frames_byte_by_byte),
                cmocka_unit_test(test_fragmentation_and_control),
                cmocka_unit_test(test_protocol_errors),
                cmocka_unit_test(test_oversize),
                cmocka_unit_test(test_close_frames),
                cmocka_unit_test(test_encode_roundtrip),
                cmocka_unit_test(test_encode_rejects),
                cmocka_unit_test(test_utf8),
                cmocka_unit_test(test_close_code_valid),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
