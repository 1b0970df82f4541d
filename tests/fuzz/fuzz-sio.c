/* libFuzzer target for src/protocol/sio: decode; when that succeeds,
 * encode, decode again and compare (parse -> write -> parse gives the same
 * value), and check the encoding is a fixed point. */
#include <assert.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "core/buf.h"
#include "protocol/sio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Equality as JavaScript sees it: one number type, so the real 3.0 (written
 * "3") equals the integer 3 it reads back as. */
static bool js_equal(json_t *a, json_t *b) {
        const char *key;
        json_t *v;
        size_t i;

        if (json_is_number(a) && json_is_number(b)) {
                if (json_is_integer(a) && json_is_integer(b))
                        return json_integer_value(a) == json_integer_value(b);
                return json_number_value(a) == json_number_value(b);
        }
        if (json_typeof(a) != json_typeof(b))
                return false;
        switch (json_typeof(a)) {
        case JSON_OBJECT:
                if (json_object_size(a) != json_object_size(b))
                        return false;
                json_object_foreach(a, key, v) {
                        json_t *w = json_object_get(b, key);
                        if (!w || !js_equal(v, w))
                                return false;
                }
                return true;
        case JSON_ARRAY:
                if (json_array_size(a) != json_array_size(b))
                        return false;
                for (i = 0; i < json_array_size(a); i++)
                        if (!js_equal(json_array_get(a, i), json_array_get(b, i)))
                                return false;
                return true;
        default:
                return json_equal(a, b);
        }
}

/* JSON.stringify writes integral reals below 1e21 as plain digits; from
 * 2^63 up jansson (and so sio_decode) refuses those as too big an integer.
 * Such values cannot round-trip; skip inputs that hold one. */
static bool has_unreadable_real(json_t *j) {
        const char *key;
        json_t *v;
        size_t i;

        switch (json_typeof(j)) {
        case JSON_REAL: {
                double d = fabs(json_real_value(j));
                return d >= 9223372036854775808.0 && d < 1e21 && d == floor(d);
        }
        case JSON_OBJECT:
                json_object_foreach(j, key, v)
                        if (has_unreadable_real(v))
                                return true;
                return false;
        case JSON_ARRAY:
                for (i = 0; i < json_array_size(j); i++)
                        if (has_unreadable_real(json_array_get(j, i)))
                                return true;
                return false;
        default:
                return false;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        sio_limits lim = { .max_len = 1 << 20, .max_depth = 32 };
        sio_packet p, q;
        char err[256];
        buf b, c;
        int r;

        if (sio_decode((const char *)data, size, &lim, &p, err, sizeof err) < 0)
                return 0;
        if (p.data && has_unreadable_real(p.data)) {
                sio_packet_done(&p);
                return 0;
        }

        buf_init(&b, 0);
        buf_init(&c, 0);
        r = sio_encode(&b, &p);
        assert(r == 0);
        r = sio_decode(b.data, b.len, &lim, &q, err, sizeof err);
        assert(r == 0);
        assert(q.type == p.type);
        assert(strcmp(q.nsp, p.nsp) == 0);
        assert(q.ack_id == p.ack_id);
        assert((!p.data && !q.data) || (p.data && q.data && js_equal(p.data, q.data)));
        /* The writer's output is canonical: writing it again changes nothing. */
        r = sio_encode(&c, &q);
        assert(r == 0);
        assert(b.len == c.len && memcmp(b.data, c.data, b.len) == 0);

        sio_packet_done(&p);
        sio_packet_done(&q);
        buf_done(&b);
        buf_done(&c);
        return 0;
}
