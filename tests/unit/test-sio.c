/* Unit tests of src/protocol/sio: Socket.IO v5 packets, with the frames
 * captured in PROTOCOL.md §1.7 - §1.10 (whole WebSocket messages, Engine.IO
 * digit included, run through eio_decode() first). */
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
#include "protocol/sio.h"

#define TOKEN                                                                                       \
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI2NjUwYTFiMmMzZDRlNWY2MDcxODI5MzAiLCJ0eXBlIjoib" \
        "m9kZSIsIm5vZGVJZCI6IjY2NTBhMWIyYzNkNGU1ZjYwNzE4MjkzMCIsImlhdCI6MTc5NTgzNDM0MywiZXhwIjoxODI3Mzcw" \
        "MzQzfQ.btSMifY-TZfnYonwLL0zi7X_DWjl2XljDi4tV_f74KM"

/* Captured frames that are byte-exact (no cuts). */
static const char *const captured[] = {
        "40/ws/node,{\"token\":\"" TOKEN "\"}",
        "40/ws/node,{\"sid\":\"1GyUs6mXeJy0pqdPAAAA\"}",
        "44/ws/node,{\"message\":\"TOKEN_INVALID\"}",
        "44/ws/node,{\"message\":\"TOKEN_EXPIRED\"}",
        "44/ws/node,{\"message\":\"TOKEN_MISSING\"}",
        "44/ws/node,{\"message\":\"AUTH_FAILED\"}",
        "40/foo,{\"token\":\"x\"}",
        "44/foo,{\"message\":\"Invalid namespace\"}",
        "42/ws/node,0[\"ping.test\",{\"hello\":1}]",
        "43/ws/node,0[{\"ok\":true}]",
        "41/ws/node,",
        "42/ws/node,[\"connection.ack\",{\"type\":\"connection.ack\",\"messageId\":\"1cabe154-c142-49fb-89eb-"
        "9362c6199a01\",\"timestamp\":\"2026-11-28T02:52:27.169Z\",\"status\":\"success\",\"nodeId\":"
        "\"6650a1b2c3d4e5f607182930\",\"controllerId\":\"controller-main\",\"serverVersion\":\"1.0.0\"}]",
        "42/ws/node,[\"register.ack\",{\"type\":\"register.ack\",\"messageId\":\"9b2176ef-8733-44b2-96cb-"
        "173b5e6675fa\",\"timestamp\":\"2026-11-28T02:52:27.217Z\",\"data\":{\"status\":\"success\",\"nodeId\":"
        "\"6650a1b2c3d4e5f607182930\",\"registeredAt\":\"2026-11-28T02:52:27.217Z\",\"controllerInfo\":{"
        "\"controllerId\":\"controller-main\",\"heartbeatInterval\":30000,\"metricsInterval\":60000,"
        "\"timezone\":\"UTC\"},\"pendingCommands\":[]}}]",
        "42/ws/node,[\"telemetry.heartbeat\",{\"type\":\"telemetry.heartbeat\",\"messageId\":\"f01e7bb3-0879-"
        "4d0f-8636-93ce33d40995\",\"timestamp\":\"2026-11-28T02:52:27.219Z\",\"data\":{\"nodeId\":"
        "\"6650a1b2c3d4e5f607182930\",\"status\":\"healthy\",\"uptimeSeconds\":1,\"activeDeployments\":0,"
        "\"cpuUsage\":3,\"ramUsage\":40,\"gpuStatus\":[]}}]",
        "42/ws/node,[\"deployment.create\",{\"type\":\"deployment.create\",\"messageId\":\"77f18987-1786-4fb9-"
        "b49b-6c7dc4089f81\",\"timestamp\":\"2026-11-28T02:52:27.419Z\",\"resource\":{\"type\":\"deployment\","
        "\"id\":\"deploy-abc123\"},\"data\":{\"modelId\":\"m1\",\"modelPath\":\"s3://b/m1\",\"containerName\":"
        "\"c1\",\"containerImage\":\"img:1\",\"containerPort\":8000,\"gpuDeviceId\":\"0\"},\"metadata\":{"
        "\"priority\":\"normal\",\"executionId\":\"6f1c2b8e-1d2a-4c3b-9e8f-0a1b2c3d4e5f\",\"stepIndex\":0,"
        "\"timeout\":120}}]",
        "42/ws/node,[\"command.ack\",{\"type\":\"command.ack\",\"messageId\":\"92db998c-7812-4a51-80cb-"
        "26ac9807491e\",\"timestamp\":\"2026-11-28T02:52:27.421Z\",\"data\":{\"originalMessageId\":\"77f18987-"
        "1786-4fb9-b49b-6c7dc4089f81\",\"status\":\"acknowledged\",\"estimatedDuration\":60},\"metadata\":{"
        "\"priority\":\"normal\",\"executionId\":\"6f1c2b8e-1d2a-4c3b-9e8f-0a1b2c3d4e5f\",\"stepIndex\":0,"
        "\"timeout\":120}}]",
        /* from the reference encoder, not in the capture */
        "40",
        "41",
        "43/ws/node,7[]",
        "44\"plain string error\"",
        "42[\"x\"]",
        "421[\"x\",null,true,false,-1,2.5,\"\\u0001\"]",
};

/* Decodes a whole WebSocket message (Engine.IO MESSAGE + Socket.IO). */
static int decode_frame(const char *frame, sio_packet *ret, char *err, size_t errlen) {
        eio_packet e;
        int r = eio_decode(frame, strlen(frame), &e);

        if (r < 0)
                return r;
        if (e.type != EIO_MESSAGE)
                return -EPROTO;
        return sio_decode(e.payload, e.len, NULL, ret, err, errlen);
}

static char *encode_frame(const sio_packet *p) {
        buf b;

        buf_init(&b, 0);
        assert_int_equal(eio_encode(&b, EIO_MESSAGE, NULL, 0), 0);
        assert_int_equal(sio_encode(&b, p), 0);
        return buf_steal(&b);
}

static void test_captured_round_trip(void **state) {
        for (size_t i = 0; i < sizeof captured / sizeof *captured; i++) {
                sio_packet p, q;
                char err[160] = "";
                char *again;

                print_message("frame %zu\n", i);
                assert_int_equal(decode_frame(captured[i], &p, err, sizeof err), 0);
                /* Same bytes as the reference: JSON.stringify layout included. */
                again = encode_frame(&p);
                assert_string_equal(again, captured[i]);
                assert_int_equal(decode_frame(again, &q, err, sizeof err), 0);
                assert_int_equal(p.type, q.type);
                assert_string_equal(p.nsp, q.nsp);
                assert_int_equal(p.ack_id, q.ack_id);
                assert_true((!p.data && !q.data) || json_equal(p.data, q.data));
                free(again);
                sio_packet_done(&p);
                sio_packet_done(&q);
        }
}

static void test_captured_fields(void **state) {
        sio_packet p;
        char err[160];

        assert_int_equal(decode_frame(captured[0], &p, err, sizeof err), 0);
        assert_int_equal(p.type, SIO_CONNECT);
        assert_string_equal(p.nsp, "/ws/node");
        assert_int_equal(p.ack_id, -1);
        assert_string_equal(json_string_value(json_object_get(p.data, "token")), TOKEN);
        sio_packet_done(&p);

        assert_int_equal(decode_frame("44/ws/node,{\"message\":\"TOKEN_INVALID\"}", &p, err, sizeof err), 0);
        assert_int_equal(p.type, SIO_CONNECT_ERROR);
        assert_string_equal(json_string_value(json_object_get(p.data, "message")), "TOKEN_INVALID");
        sio_packet_done(&p);

        assert_int_equal(decode_frame("44/foo,{\"message\":\"Invalid namespace\"}", &p, err, sizeof err), 0);
        assert_string_equal(p.nsp, "/foo");
        sio_packet_done(&p);

        assert_int_equal(decode_frame("43/ws/node,0[{\"ok\":true}]", &p, err, sizeof err), 0);
        assert_int_equal(p.type, SIO_ACK);
        assert_int_equal(p.ack_id, 0);
        assert_true(json_is_true(json_object_get(json_array_get(p.data, 0), "ok")));
        sio_packet_done(&p);

        assert_int_equal(decode_frame("41/ws/node,", &p, err, sizeof err), 0);
        assert_int_equal(p.type, SIO_DISCONNECT);
        assert_string_equal(p.nsp, "/ws/node");
        assert_null(p.data);
        sio_packet_done(&p);

        assert_int_equal(decode_frame(captured[11], &p, err, sizeof err), 0);
        assert_int_equal(p.type, SIO_EVENT);
        assert_string_equal(json_string_value(json_array_get(p.data, 0)), "connection.ack");
        assert_string_equal(json_string_value(json_object_get(json_array_get(p.data, 1), "nodeId")),
                            "6650a1b2c3d4e5f607182930");
        sio_packet_done(&p);
        sio_packet_done(&p); /* idempotent */
        sio_packet_done(NULL);
}

static void test_decode_table(void **state) {
        static const struct {
                const char *in; /* Socket.IO text (after the Engine.IO '4') */
                int r;
                sio_type type;
                const char *nsp;
                int64_t ack;
                const char *data; /* as re-encoded, NULL for none */
        } cases[] = {
                { "0", 0, SIO_CONNECT, "/", -1, NULL },
                { "0{}", 0, SIO_CONNECT, "/", -1, "{}" },
                { "0/ws/node", 0, SIO_CONNECT, "/ws/node", -1, NULL }, /* no ',' at the end */
                { "0/ws/node,", 0, SIO_CONNECT, "/ws/node", -1, NULL },
                { "1", 0, SIO_DISCONNECT, "/", -1, NULL },
                { "2[\"a\"]", 0, SIO_EVENT, "/", -1, "[\"a\"]" },
                { "2/x,12[\"a\",{}]", 0, SIO_EVENT, "/x", 12, "[\"a\",{}]" },
                { "2/x,007[\"a\"]", 0, SIO_EVENT, "/x", 7, "[\"a\"]" },
                { "2/x,9223372036854775807[\"a\"]", 0, SIO_EVENT, "/x", INT64_MAX, "[\"a\"]" },
                { "2/ws/node,[\"x\"]  \n", 0, SIO_EVENT, "/ws/node", -1, "[\"x\"]" },
                { "2[\"é✓\",\"\\u00e9\\ud83d\\ude00\"]", 0, SIO_EVENT, "/", -1, "[\"é✓\",\"é😀\"]" },
                { "3/ws/node,5[]", 0, SIO_ACK, "/ws/node", 5, "[]" },
                { "4\"nope\"", 0, SIO_CONNECT_ERROR, "/", -1, "\"nope\"" },
                { "4{\"message\":\"m\",\"data\":{\"a\":1}}", 0, SIO_CONNECT_ERROR, "/", -1,
                  "{\"message\":\"m\",\"data\":{\"a\":1}}" },
                /* numbers keep their JavaScript spelling */
                { "2[\"n\",0.1,1e21,1e-7,100,3.0,-0,1.5e300,123456789012]", 0, SIO_EVENT, "/", -1,
                  "[\"n\",0.1,1e+21,1e-7,100,3,0,1.5e+300,123456789012]" },
                /* errors */
                { "", -EBADMSG, 0, NULL, 0, NULL },
                { "7", -EBADMSG, 0, NULL, 0, NULL },
                { "x", -EBADMSG, 0, NULL, 0, NULL },
                { "2/ws/node,notjson", -EBADMSG, 0, NULL, 0, NULL },
                { "2/ws/node,[\"x\"] garbage", -EBADMSG, 0, NULL, 0, NULL },
                { "2/ws/node,[\"x\"][]", -EBADMSG, 0, NULL, 0, NULL },
                { "2/ws/node,{\"a\":1}", -EBADMSG, 0, NULL, 0, NULL },
                { "2/ws/node,[]", -EBADMSG, 0, NULL, 0, NULL },
                { "2/ws/node,[1]", -EBADMSG, 0, NULL, 0, NULL },
                { "2/ws/node,", -EBADMSG, 0, NULL, 0, NULL },
                { "2/ws/node,5", -EBADMSG, 0, NULL, 0, NULL },
                { "2[\"connect\"]", -EBADMSG, 0, NULL, 0, NULL },
                { "2[\"connect_error\"]", -EBADMSG, 0, NULL, 0, NULL },
                { "2[\"disconnect\"]", -EBADMSG, 0, NULL, 0, NULL },
                { "2[\"disconnecting\"]", -EBADMSG, 0, NULL, 0, NULL },
                { "2[\"newListener\"]", -EBADMSG, 0, NULL, 0, NULL },
                { "2[\"removeListener\"]", -EBADMSG, 0, NULL, 0, NULL },
                { "2/x,9223372036854775808[\"a\"]", -EBADMSG, 0, NULL, 0, NULL },
                { "2/x,99999999999999999999999[\"a\"]", -EBADMSG, 0, NULL, 0, NULL },
                { "3/ws/node,[]", -EBADMSG, 0, NULL, 0, NULL }, /* ACK without id */
                { "3/ws/node,1{}", -EBADMSG, 0, NULL, 0, NULL },
                { "1/ws/node,{}", -EBADMSG, 0, NULL, 0, NULL },
                { "0/ws/node,[]", -EBADMSG, 0, NULL, 0, NULL },
                { "0/ws/node,\"s\"", -EBADMSG, 0, NULL, 0, NULL },
                { "4/ws/node,", -EBADMSG, 0, NULL, 0, NULL },
                { "4/ws/node,[]", -EBADMSG, 0, NULL, 0, NULL },
                { "4/ws/node,3", -EBADMSG, 0, NULL, 0, NULL },
                { "2[\"a\\u0000b\"]", -EBADMSG, 0, NULL, 0, NULL },
                { "2[\"x\",123456789012345678901234]", -EBADMSG, 0, NULL, 0, NULL },
                { "2[\"x\",\"\\ud800\"]", -EBADMSG, 0, NULL, 0, NULL },
                { "2[\"x\xff\"]", -EBADMSG, 0, NULL, 0, NULL },
                { "51-[\"x\",{\"_placeholder\":true,\"num\":0}]", -EOPNOTSUPP, 0, NULL, 0, NULL },
                { "61-/ws/node,3[{\"_placeholder\":true,\"num\":0}]", -EOPNOTSUPP, 0, NULL, 0, NULL },
        };

        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
                sio_packet p = { .nsp = (char *)"untouched" };
                char err[160] = "";
                int r = sio_decode(cases[i].in, strlen(cases[i].in), NULL, &p, err, sizeof err);

                print_message("case %zu: %s -> %d %s\n", i, cases[i].in, r, err);
                assert_int_equal(r, cases[i].r);
                if (r < 0) {
                        assert_string_equal(p.nsp, "untouched");
                        assert_true(err[0] != '\0');
                        continue;
                }
                assert_int_equal(p.type, cases[i].type);
                assert_string_equal(p.nsp, cases[i].nsp);
                assert_int_equal(p.ack_id, cases[i].ack);
                if (!cases[i].data) {
                        assert_null(p.data);
                } else {
                        buf b;
                        buf_init(&b, 0);
                        assert_int_equal(sio_json_write(&b, p.data), 0);
                        assert_string_equal(b.data, cases[i].data);
                        buf_done(&b);
                }
                sio_packet_done(&p);
        }
}

static void test_decode_nul_namespace(void **state) {
        sio_packet p;
        const char text[] = "2/ws\0node,[\"x\"]";

        assert_int_equal(sio_decode(text, sizeof text - 1, NULL, &p, NULL, 0), -EBADMSG);
        /* a NUL inside the JSON part is not JSON */
        const char text2[] = "2[\"x\"]\0";
        assert_int_equal(sio_decode(text2, sizeof text2 - 1, NULL, &p, NULL, 0), -EBADMSG);
}

static void test_limits(void **state) {
        sio_limits lim = { .max_len = 16, .max_depth = 3 };
        sio_packet p;
        char err[160];
        char *deep;
        size_t n = 5000, i;

        assert_int_equal(sio_decode("2[\"a\",[[1]]]", 12, &lim, &p, err, sizeof err), 0);
        sio_packet_done(&p);
        assert_int_equal(sio_decode("2[\"a\",[[[1]]]]", 14, &lim, &p, err, sizeof err), -ELOOP);
        /* brackets inside strings do not count */
        assert_int_equal(sio_decode("2[\"[[[[{{\"]", 11, &lim, &p, err, sizeof err), 0);
        sio_packet_done(&p);
        assert_int_equal(sio_decode("2[\"a\\\"[[[[\"]", 12, &lim, &p, err, sizeof err), 0);
        sio_packet_done(&p);
        assert_int_equal(sio_decode("2[\"abcdefghijklmn\"]", 19, &lim, &p, err, sizeof err), -E2BIG);

        /* default depth: 64; far deeper input is refused before jansson sees it */
        deep = malloc(2 * n + 8);
        assert_non_null(deep);
        deep[0] = '2';
        deep[1] = '[';
        deep[2] = '"';
        deep[3] = 'a';
        deep[4] = '"';
        deep[5] = ',';
        for (i = 0; i < n; i++)
                deep[6 + i] = '[';
        for (i = 0; i < n; i++)
                deep[6 + n + i] = ']';
        deep[6 + 2 * n] = ']';
        assert_int_equal(sio_decode(deep, 7 + 2 * n, NULL, &p, err, sizeof err), -ELOOP);
        free(deep);
}

static void test_encode(void **state) {
        sio_packet p = { .type = SIO_CONNECT, .nsp = (char *)"/ws/node", .ack_id = -1 };
        json_t *auth = json_pack("{s:s}", "token", "abc");
        buf b;

        buf_init(&b, 0);
        p.data = auth;
        assert_int_equal(sio_encode(&b, &p), 0);
        assert_string_equal(b.data, "0/ws/node,{\"token\":\"abc\"}");
        buf_reset(&b);

        p.type = SIO_DISCONNECT;
        p.data = NULL;
        assert_int_equal(sio_encode(&b, &p), 0);
        assert_string_equal(b.data, "1/ws/node,");
        buf_reset(&b);

        /* "/" and NULL omit the namespace */
        p.nsp = (char *)"/";
        assert_int_equal(sio_encode(&b, &p), 0);
        p.nsp = NULL;
        assert_int_equal(sio_encode(&b, &p), 0);
        assert_string_equal(b.data, "11");
        buf_reset(&b);

        /* ACK with a result; the default reply to a server EVENT with an id */
        p.type = SIO_ACK;
        p.nsp = (char *)"/ws/node";
        p.ack_id = 42;
        p.data = json_array();
        assert_int_equal(sio_encode(&b, &p), 0);
        assert_string_equal(b.data, "3/ws/node,42[]");
        json_decref(p.data);
        buf_reset(&b);

        assert_int_equal(sio_encode_event(&b, "/ws/node", -1, "node.register", auth), 0);
        assert_string_equal(b.data, "2/ws/node,[\"node.register\",{\"token\":\"abc\"}]");
        buf_reset(&b);
        assert_int_equal(sio_encode_event(&b, NULL, 3, "x", NULL), 0);
        assert_string_equal(b.data, "23[\"x\"]");
        buf_reset(&b);

        /* invalid packets leave the buffer as it was */
        assert_int_equal(buf_append_str(&b, "4"), 0);
        assert_int_equal(sio_encode_event(&b, "/ws/node", -1, "disconnect", NULL), -EINVAL);
        assert_int_equal(sio_encode_event(&b, "ws/node", -1, "x", NULL), -EINVAL);
        assert_int_equal(sio_encode_event(&b, "/a,b", -1, "x", NULL), -EINVAL);
        assert_int_equal(sio_encode_event(&b, "/a", -2, "x", NULL), -EINVAL);
        assert_int_equal(sio_encode_event(&b, "/a", -1, "bad\xff", NULL), -EINVAL);
        assert_int_equal(sio_encode_event(&b, "/a", -1, NULL, NULL), -EINVAL);
        p = (sio_packet){ .type = SIO_ACK, .ack_id = -1, .data = json_array() };
        assert_int_equal(sio_encode(&b, &p), -EINVAL); /* ACK needs an id */
        json_decref(p.data);
        p = (sio_packet){ .type = SIO_DISCONNECT, .ack_id = -1, .data = auth };
        assert_int_equal(sio_encode(&b, &p), -EINVAL);
        p = (sio_packet){ .type = SIO_CONNECT, .ack_id = -1, .data = json_array() };
        assert_int_equal(sio_encode(&b, &p), -EINVAL);
        json_decref(p.data);
        p = (sio_packet){ .type = SIO_CONNECT_ERROR, .ack_id = -1, .data = NULL };
        assert_int_equal(sio_encode(&b, &p), -EINVAL);
        p = (sio_packet){ .type = SIO_BINARY_EVENT, .ack_id = -1 };
        assert_int_equal(sio_encode(&b, &p), -EOPNOTSUPP);
        p = (sio_packet){ .type = (sio_type)9, .ack_id = -1 };
        assert_int_equal(sio_encode(&b, &p), -EINVAL);
        assert_string_equal(b.data, "4");

        json_decref(auth);
        buf_done(&b);
}

static void test_encode_too_deep(void **state) {
        json_t *root = json_array(), *cur = root;
        buf b;

        json_array_append_new(root, json_string("x"));
        for (unsigned i = 0; i < SIO_MAX_DEPTH + 5; i++) {
                json_t *a = json_array();
                json_array_append_new(cur, a);
                cur = a;
        }
        buf_init(&b, 0);
        assert_int_equal(buf_append_str(&b, "4"), 0);
        assert_int_equal(sio_encode_event(&b, NULL, -1, "x", root), -ELOOP);
        assert_string_equal(b.data, "4");
        buf_done(&b);
        json_decref(root);
}

static void test_json_write(void **state) {
        static const struct {
                const char *in;
                const char *out;
        } cases[] = {
                /* JS objects put array-index keys first, ascending */
                { "{\"b\":1,\"10\":2,\"a\":3,\"2\":4,\"01\":5,\"4294967295\":6,\"4294967294\":7}",
                  "{\"2\":4,\"10\":2,\"4294967294\":7,\"b\":1,\"a\":3,\"01\":5,\"4294967295\":6}" },
                /* a duplicate key keeps its first position and the last value */
                { "{\"a\":1,\"b\":2,\"a\":3}", "{\"a\":3,\"b\":2}" },
                { "\"\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f\\\"\\\\/\\u2028\"",
                  "\"\\b\\f\\n\\r\\t\\u0001\\u001f\x7f\\\"\\\\/\xe2\x80\xa8\"" },
                { "[0.5,-2.5e-7,123.456,1e300,-1e-300,5e-324,1.7976931348623157e308]",
                  "[0.5,-2.5e-7,123.456,1e+300,-1e-300,5e-324,1.7976931348623157e+308]" },
                { "[100000000000000000000.0,1000000000000000000000.0,0.000001,0.0000001]",
                  "[100000000000000000000,1e+21,0.000001,1e-7]" },
                { "[9223372036854775807,-9223372036854775808]", "[9223372036854775807,-9223372036854775808]" },
                { "[0.30000000000000004,2.2250738585072014e-308]", "[0.30000000000000004,2.2250738585072014e-308]" },
                { "{}", "{}" },
                { "[]", "[]" },
                { "null", "null" },
        };

        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
                json_t *j = NULL;
                buf b;

                print_message("case %zu: %s\n", i, cases[i].in);
                assert_int_equal(sio_json_parse(cases[i].in, strlen(cases[i].in), 0, 0, &j, NULL, 0), 0);
                buf_init(&b, 0);
                assert_int_equal(sio_json_write(&b, j), 0);
                assert_string_equal(b.data, cases[i].out);
                buf_done(&b);
                json_decref(j);
        }
        buf b;
        buf_init(&b, 0);
        assert_int_equal(sio_json_write(&b, NULL), -EINVAL);
        buf_done(&b);
}

static void test_names(void **state) {
        assert_true(sio_is_reserved_event("newListener"));
        assert_false(sio_is_reserved_event("connection.ack"));
        assert_false(sio_is_reserved_event("Connect"));
        assert_string_equal(sio_type_name(SIO_CONNECT_ERROR), "CONNECT_ERROR");
        assert_string_equal(sio_type_name((sio_type)8), "UNKNOWN");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_captured_round_trip),
                cmocka_unit_test(test_captured_fields),
                cmocka_unit_test(test_decode_table),
                cmocka_unit_test(test_decode_nul_namespace),
                cmocka_unit_test(test_limits),
                cmocka_unit_test(test_encode),
                cmocka_unit_test(test_encode_too_deep),
                cmocka_unit_test(test_json_write),
                cmocka_unit_test(test_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
