/* Unit tests of src/protocol/eio: Engine.IO v4 packets and the OPEN
 * handshake, with the frames captured in PROTOCOL.md §1.3 - §1.10. */
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
#include "protocol/eio.h"

#define OPEN_FRAME                                                                                  \
        "0{\"sid\":\"Ys1WtiLB6Iuco7JVAAAA\",\"upgrades\":[],\"pingInterval\":25000,\"pingTimeout\":20000," \
        "\"maxPayload\":1000000}"

static void test_decode_table(void **state) {
        static const struct {
                const char *in;
                int r;
                eio_type type;
                const char *payload;
        } cases[] = {
                { OPEN_FRAME, 0, EIO_OPEN, &OPEN_FRAME[1] },
                { "1", 0, EIO_CLOSE, "" },
                { "2", 0, EIO_PING, "" },
                { "2probe", 0, EIO_PING, "probe" },
                { "3", 0, EIO_PONG, "" },
                { "40/ws/node,{\"sid\":\"1GyUs6mXeJy0pqdPAAAA\"}", 0, EIO_MESSAGE,
                  "0/ws/node,{\"sid\":\"1GyUs6mXeJy0pqdPAAAA\"}" },
                { "41/ws/node,", 0, EIO_MESSAGE, "1/ws/node," },
                { "4", 0, EIO_MESSAGE, "" },
                { "5", 0, EIO_UPGRADE, "" },
                { "6", 0, EIO_NOOP, "" },
                { "9hello", -EBADMSG, 0, NULL },
                { "", -EBADMSG, 0, NULL },
                { "7", -EBADMSG, 0, NULL },
                { "x", -EBADMSG, 0, NULL },
                { " 4", -EBADMSG, 0, NULL },
                { "bAAEC", -EOPNOTSUPP, 0, NULL },
        };

        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
                eio_packet p = { .type = EIO_NOOP, .payload = NULL, .len = 99 };
                int r = eio_decode(cases[i].in, strlen(cases[i].in), &p);

                print_message("case %zu: %s\n", i, cases[i].in);
                assert_int_equal(r, cases[i].r);
                if (r < 0) {
                        assert_int_equal(p.len, 99); /* untouched */
                        continue;
                }
                assert_int_equal(p.type, cases[i].type);
                assert_int_equal(p.len, strlen(cases[i].payload));
                assert_memory_equal(p.payload, cases[i].payload, p.len);
                assert_ptr_equal(p.payload, cases[i].in + 1); /* no copy */
        }
        assert_int_equal(eio_decode(NULL, 0, NULL), -EBADMSG);
}

static void test_decode_embedded_nul(void **state) {
        eio_packet p;
        const char msg[] = "4a\0b";

        assert_int_equal(eio_decode(msg, 4, &p), 0);
        assert_int_equal(p.len, 3);
        assert_memory_equal(p.payload, "a\0b", 3);
}

static void test_encode(void **state) {
        buf b;

        buf_init(&b, 0);
        assert_int_equal(eio_encode(&b, EIO_PONG, NULL, 0), 0);
        assert_string_equal(b.data, "3");
        buf_reset(&b);
        assert_int_equal(eio_encode(&b, EIO_MESSAGE, "1/ws/node,", 10), 0);
        assert_string_equal(b.data, "41/ws/node,");
        /* appends */
        assert_int_equal(eio_encode(&b, EIO_PING, "probe", 5), 0);
        assert_string_equal(b.data, "41/ws/node,2probe");
        assert_int_equal(eio_encode(&b, (eio_type)7, NULL, 0), -EINVAL);
        assert_int_equal(eio_encode(&b, (eio_type)-1, NULL, 0), -EINVAL);
        assert_int_equal(eio_encode(&b, EIO_MESSAGE, NULL, 3), -EINVAL);
        assert_string_equal(b.data, "41/ws/node,2probe");
        buf_done(&b);

        /* over the cap: buf frees itself */
        buf_init(&b, 4);
        assert_int_equal(eio_encode(&b, EIO_MESSAGE, "12345", 5), -E2BIG);
        assert_null(b.data);
        buf_done(&b);
}

static void test_round_trip(void **state) {
        for (int t = EIO_OPEN; t <= EIO_NOOP; t++) {
                buf b;
                eio_packet p;

                buf_init(&b, 0);
                assert_int_equal(eio_encode(&b, (eio_type)t, "xyz", 3), 0);
                assert_int_equal(eio_decode(b.data, b.len, &p), 0);
                assert_int_equal(p.type, t);
                assert_int_equal(p.len, 3);
                assert_memory_equal(p.payload, "xyz", 3);
                buf_done(&b);
        }
        assert_string_equal(eio_type_name(EIO_MESSAGE), "message");
        assert_string_equal(eio_type_name((eio_type)42), "unknown");
}

static void test_handshake_captured(void **state) {
        eio_packet p;
        eio_handshake h;
        char err[128] = "";

        assert_int_equal(eio_decode(OPEN_FRAME, strlen(OPEN_FRAME), &p), 0);
        assert_int_equal(p.type, EIO_OPEN);
        assert_int_equal(eio_parse_handshake(p.payload, p.len, &h, err, sizeof err), 0);
        assert_string_equal(h.sid, "Ys1WtiLB6Iuco7JVAAAA");
        assert_int_equal(h.n_upgrades, 0);
        assert_null(h.upgrades);
        assert_int_equal(h.ping_interval_ms, EIO_DEFAULT_PING_INTERVAL_MS);
        assert_int_equal(h.ping_timeout_ms, EIO_DEFAULT_PING_TIMEOUT_MS);
        assert_int_equal(h.max_payload, EIO_DEFAULT_MAX_PAYLOAD);
        eio_handshake_done(&h);
        assert_null(h.sid);
        eio_handshake_done(&h); /* twice is fine */
        eio_handshake_done(NULL);
}

static void test_handshake_extra(void **state) {
        static const char json[] = "{\"maxPayload\":5,\"future\":{\"x\":[1,2]},\"sid\":\"abc\","
                                   "\"upgrades\":[\"websocket\",\"webtransport\"],"
                                   "\"pingTimeout\":1,\"pingInterval\":2147483647}";
        eio_handshake h;

        assert_int_equal(eio_parse_handshake(json, strlen(json), &h, NULL, 0), 0);
        assert_string_equal(h.sid, "abc");
        assert_int_equal(h.n_upgrades, 2);
        assert_string_equal(h.upgrades[0], "websocket");
        assert_string_equal(h.upgrades[1], "webtransport");
        assert_int_equal(h.ping_interval_ms, 2147483647);
        assert_int_equal(h.ping_timeout_ms, 1);
        assert_int_equal(h.max_payload, 5);
        eio_handshake_done(&h);

        /* upgrades is optional */
        static const char nou[] = "{\"sid\":\"a\",\"pingInterval\":1,\"pingTimeout\":1,\"maxPayload\":1}";
        assert_int_equal(eio_parse_handshake(nou, strlen(nou), &h, NULL, 0), 0);
        assert_int_equal(h.n_upgrades, 0);
        eio_handshake_done(&h);
}

static void test_handshake_errors(void **state) {
        static const struct {
                const char *json;
                int r;
                const char *needle; /* expected in the message */
        } cases[] = {
                { "", -EBADMSG, "no payload" },
                { "[]", -EBADMSG, "not a JSON object" },
                { "not json", -EBADMSG, "not JSON" },
                { "{\"sid\":\"a\",\"pingInterval\":1,\"pingTimeout\":1,\"maxPayload\":1} x", -EBADMSG, "not JSON" },
                { "{\"pingInterval\":1,\"pingTimeout\":1,\"maxPayload\":1}", -EBADMSG, "sid" },
                { "{\"sid\":\"\",\"pingInterval\":1,\"pingTimeout\":1,\"maxPayload\":1}", -EBADMSG, "sid" },
                { "{\"sid\":5,\"pingInterval\":1,\"pingTimeout\":1,\"maxPayload\":1}", -EBADMSG, "sid" },
                { "{\"sid\":\"a\",\"pingTimeout\":1,\"maxPayload\":1}", -EBADMSG, "lacks \"pingInterval\"" },
                { "{\"sid\":\"a\",\"pingInterval\":1,\"maxPayload\":1}", -EBADMSG, "lacks \"pingTimeout\"" },
                { "{\"sid\":\"a\",\"pingInterval\":1,\"pingTimeout\":1}", -EBADMSG, "lacks \"maxPayload\"" },
                { "{\"sid\":\"a\",\"pingInterval\":\"25000\",\"pingTimeout\":1,\"maxPayload\":1}", -EBADMSG,
                  "\"pingInterval\" is not an integer" },
                { "{\"sid\":\"a\",\"pingInterval\":25000.5,\"pingTimeout\":1,\"maxPayload\":1}", -EBADMSG,
                  "\"pingInterval\" is not an integer" },
                { "{\"sid\":\"a\",\"pingInterval\":0,\"pingTimeout\":1,\"maxPayload\":1}", -EBADMSG,
                  "\"pingInterval\" out of range" },
                { "{\"sid\":\"a\",\"pingInterval\":1,\"pingTimeout\":-5,\"maxPayload\":1}", -EBADMSG,
                  "\"pingTimeout\" out of range" },
                { "{\"sid\":\"a\",\"pingInterval\":2147483648,\"pingTimeout\":1,\"maxPayload\":1}", -EBADMSG,
                  "\"pingInterval\" out of range" },
                { "{\"sid\":\"a\",\"pingInterval\":1,\"pingTimeout\":1,\"maxPayload\":0}", -EBADMSG,
                  "\"maxPayload\" out of range" },
                { "{\"sid\":\"a\",\"pingInterval\":1,\"pingTimeout\":1,\"maxPayload\":null}", -EBADMSG,
                  "\"maxPayload\" is not an integer" },
                { "{\"sid\":\"a\",\"upgrades\":\"websocket\",\"pingInterval\":1,\"pingTimeout\":1,\"maxPayload\":1}",
                  -EBADMSG, "upgrades" },
                { "{\"sid\":\"a\",\"upgrades\":[1],\"pingInterval\":1,\"pingTimeout\":1,\"maxPayload\":1}",
                  -EBADMSG, "upgrades" },
        };

        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
                eio_handshake h = { .sid = (char *)"untouched" };
                char err[160] = "";
                int r = eio_parse_handshake(cases[i].json, strlen(cases[i].json), &h, err, sizeof err);

                print_message("case %zu: %s -> %s\n", i, cases[i].json, err);
                assert_int_equal(r, cases[i].r);
                assert_non_null(strstr(err, cases[i].needle));
                assert_string_equal(h.sid, "untouched");
        }
}

static void test_handshake_caps(void **state) {
        eio_handshake h;
        char err[128];
        char *big = malloc(EIO_HANDSHAKE_MAX_LEN + 2);
        char sid[EIO_SID_MAX_LEN + 2];
        char json[512];

        assert_non_null(big);
        memset(big, ' ', EIO_HANDSHAKE_MAX_LEN + 1);
        big[EIO_HANDSHAKE_MAX_LEN + 1] = '\0';
        assert_int_equal(eio_parse_handshake(big, EIO_HANDSHAKE_MAX_LEN + 1, &h, err, sizeof err), -E2BIG);
        free(big);

        memset(sid, 'a', sizeof sid - 1);
        sid[sizeof sid - 1] = '\0';
        snprintf(json, sizeof json, "{\"sid\":\"%s\",\"pingInterval\":1,\"pingTimeout\":1,\"maxPayload\":1}", sid);
        assert_int_equal(eio_parse_handshake(json, strlen(json), &h, err, sizeof err), -EBADMSG);
        sid[sizeof sid - 2] = '\0'; /* exactly EIO_SID_MAX_LEN */
        snprintf(json, sizeof json, "{\"sid\":\"%s\",\"pingInterval\":1,\"pingTimeout\":1,\"maxPayload\":1}", sid);
        assert_int_equal(eio_parse_handshake(json, strlen(json), &h, err, sizeof err), 0);
        eio_handshake_done(&h);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_decode_table),
                cmocka_unit_test(test_decode_embedded_nul),
                cmocka_unit_test(test_encode),
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_handshake_captured),
                cmocka_unit_test(test_handshake_extra),
                cmocka_unit_test(test_handshake_errors),
                cmocka_unit_test(test_handshake_caps),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
