/* Unit tests of src/core/jwt: payload decoding without verification, with
 * the test vector of PROTOCOL.md §1.7 (claims in §2.1). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/jwt.h"
#include "core/util.h"

#define TOKEN                                                                                       \
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI2NjUwYTFiMmMzZDRlNWY2MDcxODI5MzAiLCJ0eXBlIjoib" \
        "m9kZSIsIm5vZGVJZCI6IjY2NTBhMWIyYzNkNGU1ZjYwNzE4MjkzMCIsImlhdCI6MTc5NTgzNDM0MywiZXhwIjoxODI3Mzcw" \
        "MzQzfQ.btSMifY-TZfnYonwLL0zi7X_DWjl2XljDi4tV_f74KM"

#define HEADER "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" /* {"alg":"HS256","typ":"JWT"} */

/* base64url without padding of s, into out (caller frees). */
static char *b64url(const char *s) {
        size_t len = strlen(s), i, o = 0;
        char *tmp = malloc(4 * ((len + 2) / 3) + 1);

        assert_non_null(tmp);
        util_base64_encode(s, len, tmp);
        for (i = 0; tmp[i] && tmp[i] != '='; i++)
                tmp[o++] = tmp[i] == '+' ? '-' : tmp[i] == '/' ? '_' : tmp[i];
        tmp[o] = '\0';
        return tmp;
}

/* HEADER.<payload json>.sig (caller frees). */
static char *make_token(const char *payload) {
        char *p = b64url(payload), *t;

        assert_true(asprintf(&t, HEADER ".%s.sig", p) > 0);
        free(p);
        return t;
}

static void test_vector(void **state) {
        jwt_claims c;
        char err[128] = "";

        assert_int_equal(jwt_decode(TOKEN, &c, err, sizeof err), 0);
        assert_string_equal(c.sub, "6650a1b2c3d4e5f607182930");
        assert_string_equal(c.node_id, "6650a1b2c3d4e5f607182930");
        assert_string_equal(c.type, "node");
        assert_true(c.has_iat);
        assert_int_equal(c.iat, 1795834343);
        assert_true(c.has_exp);
        assert_int_equal(c.exp, 1827370343);
        jwt_claims_done(&c);
        assert_null(c.sub);
        jwt_claims_done(&c);
        jwt_claims_done(NULL);
}

static void test_claims(void **state) {
        static const struct {
                const char *payload;
                int r;
                const char *sub;
                int64_t exp; /* -1: absent */
        } cases[] = {
                { "{}", 0, NULL, -1 },
                { "{\"sub\":\"n1\",\"extra\":[1,{\"x\":null}],\"roles\":[\"a\"]}", 0, "n1", -1 },
                { "{\"sub\":\"n1\",\"exp\":1.9e9}", 0, "n1", 1900000000 },
                { "{\"exp\":1700000000.75}", 0, NULL, 1700000000 },
                { "{\"exp\":-5}", 0, NULL, -5 },
                { "{\"sub\":\"é\"}", 0, "é", -1 },
                { "{\"sub\":5}", -EINVAL, NULL, -1 },
                { "{\"nodeId\":[]}", -EINVAL, NULL, -1 },
                { "{\"type\":null}", -EINVAL, NULL, -1 },
                { "{\"exp\":\"tomorrow\"}", -EINVAL, NULL, -1 },
                { "{\"iat\":true}", -EINVAL, NULL, -1 },
                { "{\"exp\":1e300}", -EINVAL, NULL, -1 },
                { "[\"sub\"]", -EINVAL, NULL, -1 },
                { "\"sub\"", -EINVAL, NULL, -1 },
                { "{\"sub\":\"a\"} x", -EINVAL, NULL, -1 },
                { "{\"sub\":\"a\"", -EINVAL, NULL, -1 },
                { "", -EINVAL, NULL, -1 },
        };

        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
                char *t = make_token(cases[i].payload), err[128] = "";
                jwt_claims c = { .sub = (char *)"untouched" };
                int r = jwt_decode(t, &c, err, sizeof err);

                print_message("case %zu: %s -> %d %s\n", i, cases[i].payload, r, err);
                assert_int_equal(r, cases[i].r);
                if (r < 0) {
                        assert_string_equal(c.sub, "untouched");
                        assert_true(err[0] != '\0');
                } else {
                        if (cases[i].sub)
                                assert_string_equal(c.sub, cases[i].sub);
                        else
                                assert_null(c.sub);
                        assert_int_equal(c.has_exp, cases[i].exp != -1);
                        if (c.has_exp)
                                assert_int_equal(c.exp, cases[i].exp);
                        jwt_claims_done(&c);
                }
                free(t);
        }
}

static void test_malformed(void **state) {
        static const char *const cases[] = {
                "",
                "abc",
                "a.b",
                HEADER,
                HEADER ".",
                HEADER "..",
                "." HEADER ".x",
                TOKEN ".extra",
                HEADER ".eyJzdWIiOiJhIn0.sig.",
                HEADER ".eyJzdWIiOiJhIn0!.sig",        /* bad character */
                HEADER ".eyJzdWIiOiJhIn0.si+g",        /* '+' is not base64url */
                HEADER ".eyJzdWIiOiJhIn0==.sig",       /* padding that does not fit */
                HEADER ".e.sig",                       /* 1 char: not base64 */
                HEADER ".eyJzdWIi=OiJhIn0.sig",        /* '=' inside */
                HEADER ".eyJzdWIiOiJhIn0===.sig",      /* too much padding */
                "bm90IGpzb24.eyJzdWIiOiJhIn0.sig",     /* header "not json" */
                "WyJhbGciXQ.eyJzdWIiOiJhIn0.sig",      /* header ["alg"] */
                "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.sig", /* payload "not json" */
                " " TOKEN,
        };

        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
                jwt_claims c;
                char err[128] = "";

                print_message("case %zu: %s\n", i, cases[i]);
                assert_int_equal(jwt_decode(cases[i], &c, err, sizeof err), -EINVAL);
                assert_true(err[0] != '\0');
        }
        jwt_claims c;
        assert_int_equal(jwt_decode(NULL, &c, NULL, 0), -EINVAL);
}

static void test_forms(void **state) {
        jwt_claims c;

        /* padded base64url and an empty signature (alg none) are fine */
        assert_int_equal(jwt_decode(HEADER ".eyJzdWIiOiJhYiJ9.", &c, NULL, 0), 0);
        assert_string_equal(c.sub, "ab");
        jwt_claims_done(&c);
        assert_int_equal(jwt_decode(HEADER ".eyJzdWIiOiJhYmMifQ==.x", &c, NULL, 0), 0);
        assert_string_equal(c.sub, "abc");
        jwt_claims_done(&c);
}

static void test_too_long(void **state) {
        size_t n = JWT_MAX_LEN + 1;
        char *t = malloc(n + 1), err[128];
        jwt_claims c;

        assert_non_null(t);
        memset(t, 'a', n);
        t[10] = '.';
        t[20] = '.';
        t[n] = '\0';
        assert_int_equal(jwt_decode(t, &c, err, sizeof err), -E2BIG);
        free(t);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_vector),    cmocka_unit_test(test_claims),
                cmocka_unit_test(test_malformed), cmocka_unit_test(test_forms),
                cmocka_unit_test(test_too_long),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
