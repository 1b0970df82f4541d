#include "core/jwt.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/util.h"

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
        va_list ap;

        if (!err || errlen == 0)
                return;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
}

static bool is_b64url(char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
               c == '_';
}

/* Checks s[0..len) is base64url with optional '=' padding at the end
 * (padding, when present, must complete a 4-character group). */
static bool valid_segment(const char *s, size_t len) {
        size_t i = 0, pad = 0;

        while (i < len && is_b64url(s[i]))
                i++;
        while (i < len && s[i] == '=') {
                i++;
                pad++;
        }
        return i == len && pad <= 2 && (pad == 0 || len % 4 == 0);
}

/* Decodes one segment into a JSON object. The token size cap keeps the
 * nesting far below jansson's own depth limit. */
static int decode_segment(const char *s, size_t len, const char *what, json_t **ret, char *err,
                          size_t errlen) {
        unsigned char *raw;
        json_error_t jerr;
        json_t *j;
        int n, r = -EINVAL;

        if (len == 0 || !valid_segment(s, len)) {
                set_err(err, errlen, "token %s is not base64url", what);
                return -EINVAL;
        }
        raw = malloc(len * 3 / 4 + 3);
        if (!raw)
                return -ENOMEM;
        n = util_base64_decode(s, len, raw);
        if (n <= 0) {
                set_err(err, errlen, "token %s is not base64url", what);
                goto out;
        }
        j = json_loadb((const char *)raw, (size_t)n, 0, &jerr);
        if (!j) {
                set_err(err, errlen, "token %s is not a JSON object", what);
                goto out;
        }
        if (!json_is_object(j)) {
                json_decref(j);
                set_err(err, errlen, "token %s is not a JSON object", what);
                goto out;
        }
        *ret = j;
        r = 0;
out:
        free(raw);
        return r;
}

static int get_string(json_t *payload, const char *key, char **ret, char *err, size_t errlen) {
        json_t *v = json_object_get(payload, key);

        if (!v)
                return 0;
        if (!json_is_string(v)) {
                set_err(err, errlen, "token claim \"%s\" is not a string", key);
                return -EINVAL;
        }
        *ret = strdup(json_string_value(v));
        return *ret ? 0 : -ENOMEM;
}

static int get_time(json_t *payload, const char *key, int64_t *ret, bool *ret_has, char *err,
                    size_t errlen) {
        json_t *v = json_object_get(payload, key);
        double d;

        if (!v)
                return 0;
        if (json_is_integer(v)) {
                *ret = json_integer_value(v);
        } else if (json_is_real(v)) {
                d = floor(json_real_value(v));
                /* 2^63 is exactly representable; anything at or above it is not an int64. */
                if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) {
                        set_err(err, errlen, "token claim \"%s\" is out of range", key);
                        return -EINVAL;
                }
                *ret = (int64_t)d;
        } else {
                set_err(err, errlen, "token claim \"%s\" is not a number", key);
                return -EINVAL;
        }
        *ret_has = true;
        return 0;
}

int jwt_decode(const char *token, jwt_claims *ret_claims, char *err, size_t errlen) {
        jwt_claims c = { 0 };
        json_t *header = NULL, *payload = NULL;
        const char *dot1, *dot2;
        size_t len;
        int r;

        if (!token || !*token) {
                set_err(err, errlen, "token is empty");
                return -EINVAL;
        }
        len = strnlen(token, JWT_MAX_LEN + 1);
        if (len > JWT_MAX_LEN) {
                set_err(err, errlen, "token longer than %d bytes", JWT_MAX_LEN);
                return -E2BIG;
        }
        dot1 = strchr(token, '.');
        dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
        if (!dot1 || !dot2 || strchr(dot2 + 1, '.')) {
                set_err(err, errlen, "token does not have three segments");
                return -EINVAL;
        }
        /* The signature may be empty (alg "none") but must be base64url. */
        if (!valid_segment(dot2 + 1, strlen(dot2 + 1))) {
                set_err(err, errlen, "token signature is not base64url");
                return -EINVAL;
        }
        r = decode_segment(token, (size_t)(dot1 - token), "header", &header, err, errlen);
        if (r < 0)
                goto out;
        r = decode_segment(dot1 + 1, (size_t)(dot2 - dot1 - 1), "payload", &payload, err, errlen);
        if (r < 0)
                goto out;

        r = get_string(payload, "sub", &c.sub, err, errlen);
        if (r == 0)
                r = get_string(payload, "nodeId", &c.node_id, err, errlen);
        if (r == 0)
                r = get_string(payload, "type", &c.type, err, errlen);
        if (r == 0)
                r = get_time(payload, "exp", &c.exp, &c.has_exp, err, errlen);
        if (r == 0)
                r = get_time(payload, "iat", &c.iat, &c.has_iat, err, errlen);
        if (r < 0)
                goto out;

        *ret_claims = c;
        memset(&c, 0, sizeof c);
out:
        jwt_claims_done(&c);
        json_decref(header);
        json_decref(payload);
        return r;
}

void jwt_claims_done(jwt_claims *c) {
        if (!c)
                return;
        free(c->sub);
        free(c->node_id);
        free(c->type);
        memset(c, 0, sizeof *c);
}
