/* sioc on bytes: the captured session of PROTOCOL.md §1.10 played by a fake
 * server made of ws.h in server mode. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "protocol/sioc.h"
#include "transport/ws.h"

#define TOKEN "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30.x"

typedef struct peer {
        sioc *c;
        buf out;            /* client -> server bytes */
        ws_parser *srv;     /* server-side parser of the client's frames */
        char events[16][256];
        int nevents;
        int pings;
} peer;

static void on_event(const sioc_event *ev, void *ud) {
        peer *p = ud;
        char *d = ev->data ? json_dumps(ev->data, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        if (ev->type == SIOC_PING) {
                p->pings++;
        } else if (p->nevents < 16) {
                snprintf(p->events[p->nevents++], 256, "%d|%s|%s|%u", ev->type, ev->text ? ev->text : "",
                         d ? d : "", ev->code);
        }
        free(d);
}

/* Feeds one server frame (unmasked text) to the client. */
static int server_send(peer *p, const char *text) {
        buf f;
        int r;
        buf_init(&f, 0);
        assert_int_equal(ws_frame_write(&f, WS_OP_TEXT, true, false, text, strlen(text)), 0);
        r = sioc_feed(p->c, f.data, f.len, &p->out, on_event, p);
        buf_done(&f);
        return r;
}

/* Takes the next text message the client sent, as a string (static). */
static const char *client_sent(peer *p) {
        static char msg[4096];
        ws_message m;
        if (p->out.len) {
                assert_int_equal(ws_parser_feed(p->srv, p->out.data, p->out.len), 0);
                buf_reset(&p->out);
        }
        int r = ws_parser_next(p->srv, &m);
        if (r != 1)
                return NULL;
        if (m.opcode == WS_OP_CLOSE) {
                snprintf(msg, sizeof msg, "<close %u>", m.close_code);
                return msg;
        }
        snprintf(msg, sizeof msg, "%.*s", (int)m.len, m.data);
        return msg;
}

static void peer_open(peer *p, const char *nsp) {
        sioc_options o = { .host = "127.0.0.1", .port = 4000, .nsp = nsp, .token = TOKEN };
        ws_parser_options so = { .server = true };
        char key[WS_KEY_LEN + 1], accept[WS_ACCEPT_LEN + 1], resp[512];
        const char *k;

        memset(p, 0, sizeof *p);
        buf_init(&p->out, 0);
        assert_int_equal(sioc_new(&o, &p->out, &p->c), 0);
        assert_non_null(strstr(p->out.data, "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"));
        assert_null(strstr(p->out.data, "permessage-deflate"));
        k = strstr(p->out.data, "Sec-WebSocket-Key: ");
        assert_non_null(k);
        memcpy(key, k + 19, WS_KEY_LEN);
        key[WS_KEY_LEN] = 0;
        assert_int_equal(ws_accept_for_key(key, accept), 0);
        buf_reset(&p->out);
        assert_int_equal(ws_parser_new(&so, &p->srv), 0);
        snprintf(resp, sizeof resp,
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: %s\r\n\r\n", accept);
        assert_int_equal(sioc_feed(p->c, resp, strlen(resp), &p->out, on_event, p), 0);
        assert_false(sioc_open(p->c));
}

static void peer_done(peer *p) {
        sioc_free(p->c);
        ws_parser_free(p->srv);
        buf_done(&p->out);
}

static void test_captured_session(void **state) {
        peer p;
        const char *s;
        peer_open(&p, "/ws/node");
        assert_int_equal(server_send(&p, "0{\"sid\":\"Ys1WtiLB6Iuco7JVAAAA\",\"upgrades\":[],\"pingInterval\":25000,"
                                         "\"pingTimeout\":20000,\"maxPayload\":1000000}"), 0);
        assert_int_equal(sioc_liveness_ms(p.c), 45000);
        assert_int_equal(sioc_max_payload(p.c), 1000000);
        s = client_sent(&p);
        assert_string_equal(s, "40/ws/node,{\"token\":\"" TOKEN "\"}");
        assert_false(sioc_connected(p.c));
        assert_int_equal(server_send(&p, "40/ws/node,{\"sid\":\"1GyUs6mXeJy0pqdPAAAA\"}"), 0);
        assert_true(sioc_connected(p.c));
        assert_int_equal(server_send(&p, "42/ws/node,[\"connection.ack\",{\"type\":\"connection.ack\",\"status\":\"success\"}]"), 0);
        assert_int_equal(p.nevents, 3);
        assert_string_equal(p.events[1], "2|1GyUs6mXeJy0pqdPAAAA||0");
        assert_string_equal(p.events[2], "4|connection.ack|{\"type\":\"connection.ack\",\"status\":\"success\"}|0");
        /* Server ping is answered with a pong at once. */
        assert_int_equal(server_send(&p, "2"), 0);
        assert_int_equal(p.pings, 1);
        assert_string_equal(client_sent(&p), "3");
        /* Emit. */
        json_t *d = json_pack("{s:s}", "type", "node.register");
        assert_int_equal(sioc_emit(p.c, "node.register", d, &p.out), 0);
        json_decref(d);
        assert_string_equal(client_sent(&p), "42/ws/node,[\"node.register\",{\"type\":\"node.register\"}]");
        /* A server event with an ack id is acknowledged. */
        assert_int_equal(server_send(&p, "42/ws/node,7[\"x.y\",{}]"), 0);
        assert_string_equal(client_sent(&p), "43/ws/node,7[]");
        /* Packets for another namespace are ignored. */
        assert_int_equal(server_send(&p, "42/other,[\"x\",{}]"), 0);
        assert_int_equal(p.nevents, 4);
        /* Leave. */
        assert_int_equal(sioc_close(p.c, &p.out), 0);
        assert_string_equal(client_sent(&p), "41/ws/node,");
        assert_string_equal(client_sent(&p), "<close 1000>");
        peer_done(&p);
}

static void test_connect_error(void **state) {
        peer p;
        peer_open(&p, "/ws/node");
        assert_int_equal(server_send(&p, "0{\"sid\":\"a\",\"upgrades\":[],\"pingInterval\":300,\"pingTimeout\":200,\"maxPayload\":100}"), 0);
        assert_int_equal(sioc_liveness_ms(p.c), 500);
        assert_int_equal(server_send(&p, "44/ws/node,{\"message\":\"TOKEN_EXPIRED\"}"), 0);
        assert_string_equal(p.events[1], "3|TOKEN_EXPIRED||0");
        peer_done(&p);
}

static void test_max_payload(void **state) {
        peer p;
        char big[200];
        peer_open(&p, "/ws/node");
        assert_int_equal(server_send(&p, "0{\"sid\":\"a\",\"upgrades\":[],\"pingInterval\":300,\"pingTimeout\":200,\"maxPayload\":120}"), 0);
        client_sent(&p);
        assert_int_equal(server_send(&p, "40/ws/node,{\"sid\":\"b\"}"), 0);
        memset(big, 'a', sizeof big - 1);
        big[sizeof big - 1] = 0;
        json_t *d = json_string(big);
        assert_int_equal(sioc_emit(p.c, "x", d, &p.out), -EMSGSIZE);
        json_decref(d);
        assert_int_equal(p.out.len, 0);
        peer_done(&p);
}

static void test_garbage(void **state) {
        static const char *bad[] = { "hello", "9hello", "42/ws/node,notjson" };
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
                peer p;
                peer_open(&p, "/ws/node");
                assert_int_equal(server_send(&p, "0{\"sid\":\"a\",\"upgrades\":[],\"pingInterval\":300,\"pingTimeout\":200,\"maxPayload\":120}"), 0);
                assert_int_equal(server_send(&p, "40/ws/node,{\"sid\":\"b\"}"), 0);
                assert_int_equal(server_send(&p, bad[i]), -EPROTO);
                assert_true(strlen(sioc_error(p.c)) > 0);
                /* Sticky. */
                assert_int_equal(server_send(&p, "2"), -EPROTO);
                peer_done(&p);
        }
}

static void test_refused_upgrade(void **state) {
        sioc_options o = { .host = "h", .port = 80, .nsp = "/ws/node", .token = "t" };
        buf out;
        sioc *c;
        const char *resp = "HTTP/1.1 400 Bad Request\r\nContent-Length: 40\r\n\r\n{\"code\":0,\"message\":\"Transport unknown\"}";
        buf_init(&out, 0);
        assert_int_equal(sioc_new(&o, &out, &c), 0);
        assert_int_equal(sioc_feed(c, resp, strlen(resp), &out, on_event, NULL), -EPROTO);
        assert_non_null(strstr(sioc_error(c), "400"));
        sioc_free(c);
        buf_done(&out);
}

static void test_server_close(void **state) {
        peer p;
        buf f;
        peer_open(&p, "/ws/node");
        buf_init(&f, 0);
        assert_int_equal(ws_frame_write(&f, WS_OP_CLOSE, true, false, "\x03\xf1", 2), 0); /* 1009 */
        assert_int_equal(sioc_feed(p.c, f.data, f.len, &p.out, on_event, &p), 0);
        assert_string_equal(p.events[0], "6|||1009");
        assert_string_equal(client_sent(&p), "<close 1005>");
        buf_done(&f);
        peer_done(&p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_captured_session), cmocka_unit_test(test_connect_error),
                cmocka_unit_test(test_max_payload),      cmocka_unit_test(test_garbage),
                cmocka_unit_test(test_refused_upgrade),  cmocka_unit_test(test_server_close),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
