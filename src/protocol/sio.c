#include "protocol/sio.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const reserved_events[] = {
        "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener",
};

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
        va_list ap;

        if (!err || errlen == 0)
                return;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
}

bool sio_is_reserved_event(const char *name) {
        size_t i;

        for (i = 0; i < sizeof reserved_events / sizeof *reserved_events; i++)
                if (strcmp(name, reserved_events[i]) == 0)
                        return true;
        return false;
}

const char *sio_type_name(sio_type type) {
        static const char *const names[] = {
                "CONNECT", "DISCONNECT", "EVENT", "ACK", "CONNECT_ERROR", "BINARY_EVENT", "BINARY_ACK",
        };

        if ((int)type < SIO_CONNECT || type > SIO_BINARY_ACK)
                return "UNKNOWN";
        return names[type];
}

/* Counts nesting of [ and { outside strings. Only an upper bound check: text
 * that is not JSON is left for jansson to refuse. */
static bool depth_within(const char *s, size_t len, unsigned max_depth) {
        unsigned depth = 0;
        bool in_str = false;
        size_t i;

        for (i = 0; i < len; i++) {
                char c = s[i];
                if (in_str) {
                        if (c == '\\')
                                i++;
                        else if (c == '"')
                                in_str = false;
                } else if (c == '"') {
                        in_str = true;
                } else if (c == '[' || c == '{') {
                        if (++depth > max_depth)
                                return false;
                } else if ((c == ']' || c == '}') && depth > 0) {
                        depth--;
                }
        }
        return true;
}

int sio_json_parse(const char *text, size_t len, size_t max_len, unsigned max_depth,
                   json_t **ret_json, char *err, size_t errlen) {
        json_error_t jerr;
        json_t *j;

        if (max_len == 0)
                max_len = SIO_DEFAULT_MAX_LEN;
        if (max_depth == 0)
                max_depth = SIO_DEFAULT_MAX_DEPTH;
        if (max_depth > SIO_MAX_DEPTH)
                max_depth = SIO_MAX_DEPTH;
        if (len > max_len) {
                set_err(err, errlen, "JSON too large (%zu bytes, limit %zu)", len, max_len);
                return -E2BIG;
        }
        if (!depth_within(text, len, max_depth)) {
                set_err(err, errlen, "JSON nested deeper than %u", max_depth);
                return -ELOOP;
        }
        /* Without JSON_DISABLE_EOF_CHECK jansson refuses anything but
         * whitespace after the value. */
        j = json_loadb(text, len, JSON_DECODE_ANY, &jerr);
        if (!j) {
                if (json_error_code(&jerr) == json_error_out_of_memory) {
                        set_err(err, errlen, "out of memory parsing JSON");
                        return -ENOMEM;
                }
                set_err(err, errlen, "invalid JSON: %s at byte %d", jerr.text, jerr.position);
                return -EBADMSG;
        }
        *ret_json = j;
        return 0;
}

/* Checks data against the shape each packet type carries; NULL means the
 * packet has no JSON part. Returns NULL when valid, else the reason. */
static const char *shape_error(sio_type type, const json_t *data) {
        const json_t *first;

        switch (type) {
        case SIO_CONNECT:
                return !data || json_is_object(data) ? NULL : "CONNECT data is not an object";
        case SIO_DISCONNECT:
                return !data ? NULL : "DISCONNECT carries data";
        case SIO_EVENT:
                if (!json_is_array(data))
                        return "EVENT data is not an array";
                first = json_array_get(data, 0);
                if (!json_is_string(first))
                        return "EVENT name is not a string";
                if (sio_is_reserved_event(json_string_value(first)))
                        return "EVENT name is reserved";
                return NULL;
        case SIO_ACK:
                return json_is_array(data) ? NULL : "ACK data is not an array";
        case SIO_CONNECT_ERROR:
                return json_is_object(data) || json_is_string(data)
                               ? NULL
                               : "CONNECT_ERROR data is neither an object nor a string";
        default:
                return "unknown packet type";
        }
}

int sio_decode(const char *text, size_t len, const sio_limits *lim, sio_packet *ret_packet,
               char *err, size_t errlen) {
        sio_packet p = { .ack_id = -1 };
        size_t max_len = lim && lim->max_len ? lim->max_len : SIO_DEFAULT_MAX_LEN;
        unsigned max_depth = lim && lim->max_depth ? lim->max_depth : SIO_DEFAULT_MAX_DEPTH;
        const char *why;
        size_t pos = 1;
        int r;

        if (!text || len == 0) {
                set_err(err, errlen, "empty Socket.IO packet");
                return -EBADMSG;
        }
        if (len > max_len) {
                set_err(err, errlen, "Socket.IO packet too large (%zu bytes, limit %zu)", len, max_len);
                return -E2BIG;
        }
        if (text[0] < '0' || text[0] > '6') {
                set_err(err, errlen, "unknown Socket.IO packet type");
                return -EBADMSG;
        }
        p.type = (sio_type)(text[0] - '0');
        if (p.type == SIO_BINARY_EVENT || p.type == SIO_BINARY_ACK) {
                set_err(err, errlen, "binary Socket.IO packets are not supported");
                return -EOPNOTSUPP;
        }

        /* Namespace: from '/' up to ',' or the end of the packet. */
        if (pos < len && text[pos] == '/') {
                const char *comma = memchr(text + pos, ',', len - pos);
                size_t end = comma ? (size_t)(comma - text) : len;

                if (memchr(text + pos, '\0', end - pos)) {
                        set_err(err, errlen, "namespace contains a NUL byte");
                        return -EBADMSG;
                }
                p.nsp = strndup(text + pos, end - pos);
                pos = comma ? end + 1 : len;
        } else {
                p.nsp = strdup("/");
        }
        if (!p.nsp) {
                r = -ENOMEM;
                goto out;
        }

        if (pos < len && text[pos] >= '0' && text[pos] <= '9') {
                int64_t id = 0;

                for (; pos < len && text[pos] >= '0' && text[pos] <= '9'; pos++) {
                        int d = text[pos] - '0';
                        if (id > (INT64_MAX - d) / 10) {
                                set_err(err, errlen, "ack id out of range");
                                r = -EBADMSG;
                                goto out;
                        }
                        id = id * 10 + d;
                }
                p.ack_id = id;
        }

        if (pos < len) {
                r = sio_json_parse(text + pos, len - pos, max_len, max_depth, &p.data, err, errlen);
                if (r < 0)
                        goto out;
        }

        why = shape_error(p.type, p.data);
        if (!why && p.type == SIO_ACK && p.ack_id < 0)
                why = "ACK without an ack id";
        if (why) {
                set_err(err, errlen, "%s", why);
                r = -EBADMSG;
                goto out;
        }

        *ret_packet = p;
        p.nsp = NULL;
        p.data = NULL;
        r = 0;
out:
        sio_packet_done(&p);
        return r;
}

void sio_packet_done(sio_packet *p) {
        if (!p)
                return;
        free(p->nsp);
        p->nsp = NULL;
        json_decref(p->data);
        p->data = NULL;
        p->ack_id = -1;
}

/* ---- JSON writer with JSON.stringify's output ---- */

static int write_string(buf *out, const char *s, size_t len) {
        static const char hex[] = "0123456789abcdef";
        size_t i, run = 0;
        int r;

        r = buf_append(out, "\"", 1);
        for (i = 0; r == 0 && i < len; i++) {
                unsigned char c = (unsigned char)s[i];
                char esc[7];
                size_t n = 2;

                if (c >= 0x20 && c != '"' && c != '\\') {
                        run++;
                        continue;
                }
                if (run)
                        r = buf_append(out, s + i - run, run);
                run = 0;
                if (r < 0)
                        break;
                esc[0] = '\\';
                switch (c) {
                case '"': esc[1] = '"'; break;
                case '\\': esc[1] = '\\'; break;
                case '\b': esc[1] = 'b'; break;
                case '\f': esc[1] = 'f'; break;
                case '\n': esc[1] = 'n'; break;
                case '\r': esc[1] = 'r'; break;
                case '\t': esc[1] = 't'; break;
                default:
                        esc[1] = 'u';
                        esc[2] = '0';
                        esc[3] = '0';
                        esc[4] = hex[c >> 4];
                        esc[5] = hex[c & 15];
                        n = 6;
                }
                r = buf_append(out, esc, n);
        }
        if (r == 0 && run)
                r = buf_append(out, s + len - run, run);
        if (r == 0)
                r = buf_append(out, "\"", 1);
        return r;
}

/* JavaScript Number.prototype.toString for finite doubles (ECMA-262
 * Number::toString): the shortest digit string that reads back as v, laid
 * out in plain notation for exponents -7 < e < 21, else as d.ddde+x. */
static int write_real(buf *out, double v) {
        char tmp[40], digits[24];
        const char *e;
        int prec, k = 0, n, exp10, i;
        bool neg;
        int r = 0;

        if (!isfinite(v))
                return buf_append_str(out, "null");
        if (v == 0)
                return buf_append_str(out, "0");
        for (prec = 1; prec <= 17; prec++) {
                snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
                if (strtod(tmp, NULL) == v)
                        break;
        }
        /* tmp is [-]d[.ddd]e(+|-)xx */
        neg = tmp[0] == '-';
        for (i = neg ? 1 : 0; tmp[i] && tmp[i] != 'e'; i++)
                if (tmp[i] != '.' && k < (int)sizeof digits - 1)
                        digits[k++] = tmp[i];
        while (k > 1 && digits[k - 1] == '0')
                k--;
        digits[k] = '\0';
        e = strchr(tmp, 'e');
        exp10 = e ? (int)strtol(e + 1, NULL, 10) : 0;
        n = exp10 + 1; /* the decimal point sits after n digits */

        if (neg)
                r = buf_append(out, "-", 1);
        if (r < 0)
                return r;
        if (k <= n && n <= 21) {
                r = buf_append(out, digits, (size_t)k);
                for (i = 0; r == 0 && i < n - k; i++)
                        r = buf_append(out, "0", 1);
        } else if (0 < n && n <= 21) {
                r = buf_append(out, digits, (size_t)n);
                if (r == 0)
                        r = buf_append(out, ".", 1);
                if (r == 0)
                        r = buf_append(out, digits + n, (size_t)(k - n));
        } else if (-6 < n && n <= 0) {
                r = buf_append(out, "0.", 2);
                for (i = 0; r == 0 && i < -n; i++)
                        r = buf_append(out, "0", 1);
                if (r == 0)
                        r = buf_append(out, digits, (size_t)k);
        } else {
                r = buf_append(out, digits, 1);
                if (r == 0 && k > 1) {
                        r = buf_append(out, ".", 1);
                        if (r == 0)
                                r = buf_append(out, digits + 1, (size_t)(k - 1));
                }
                if (r == 0)
                        r = buf_appendf(out, "e%c%d", n - 1 < 0 ? '-' : '+', abs(n - 1));
        }
        return r;
}

/* An array index in the JS sense: canonical decimal below 2^32 - 1. */
static bool array_index(const char *key, uint32_t *ret) {
        uint64_t v = 0;
        const char *p = key;

        if (!*p || (p[0] == '0' && p[1]))
                return false;
        for (; *p; p++) {
                if (*p < '0' || *p > '9')
                        return false;
                v = v * 10 + (uint64_t)(*p - '0');
                if (v >= UINT32_MAX)
                        return false;
        }
        *ret = (uint32_t)v;
        return true;
}

typedef struct member {
        uint32_t index;
        const char *key;
        json_t *value;
} member;

static int cmp_member(const void *a, const void *b) {
        const member *x = a, *y = b;
        return x->index < y->index ? -1 : x->index > y->index;
}

static int write_value(buf *out, const json_t *j, unsigned depth);

static int write_member(buf *out, bool *first, const char *key, const json_t *value,
                        unsigned depth) {
        int r = 0;

        if (!*first)
                r = buf_append(out, ",", 1);
        *first = false;
        if (r == 0)
                r = write_string(out, key, strlen(key));
        if (r == 0)
                r = buf_append(out, ":", 1);
        if (r == 0)
                r = write_value(out, value, depth);
        return r;
}

static int write_object(buf *out, const json_t *j, unsigned depth) {
        member *idx = NULL;
        size_t n_idx = 0, i;
        const char *key;
        json_t *value;
        uint32_t index;
        bool first = true;
        int r;

        /* JS objects list array-index keys first, ascending. */
        json_object_foreach((json_t *)j, key, value) {
                if (array_index(key, &index)) {
                        if (!idx) {
                                idx = malloc(json_object_size(j) * sizeof *idx);
                                if (!idx)
                                        return -ENOMEM;
                        }
                        idx[n_idx++] = (member){ index, key, value };
                }
        }
        if (n_idx > 1)
                qsort(idx, n_idx, sizeof *idx, cmp_member);

        r = buf_append(out, "{", 1);
        for (i = 0; r == 0 && i < n_idx; i++)
                r = write_member(out, &first, idx[i].key, idx[i].value, depth);
        json_object_foreach((json_t *)j, key, value) {
                if (r < 0)
                        break;
                if (n_idx && array_index(key, &index))
                        continue;
                r = write_member(out, &first, key, value, depth);
        }
        if (r == 0)
                r = buf_append(out, "}", 1);
        free(idx);
        return r;
}

static int write_value(buf *out, const json_t *j, unsigned depth) {
        size_t i;
        int r;

        switch (json_typeof(j)) {
        case JSON_OBJECT:
                if (depth >= SIO_MAX_DEPTH)
                        return -ELOOP;
                return write_object(out, j, depth + 1);
        case JSON_ARRAY:
                if (depth >= SIO_MAX_DEPTH)
                        return -ELOOP;
                r = buf_append(out, "[", 1);
                for (i = 0; r == 0 && i < json_array_size(j); i++) {
                        if (i > 0)
                                r = buf_append(out, ",", 1);
                        if (r == 0)
                                r = write_value(out, json_array_get(j, i), depth + 1);
                }
                if (r == 0)
                        r = buf_append(out, "]", 1);
                return r;
        case JSON_STRING:
                return write_string(out, json_string_value(j), json_string_length(j));
        case JSON_INTEGER:
                return buf_appendf(out, "%" PRId64, (int64_t)json_integer_value(j));
        case JSON_REAL:
                return write_real(out, json_real_value(j));
        case JSON_TRUE:
                return buf_append(out, "true", 4);
        case JSON_FALSE:
                return buf_append(out, "false", 5);
        case JSON_NULL:
                return buf_append(out, "null", 4);
        }
        return -EINVAL;
}

int sio_json_write(buf *out, const json_t *json) {
        if (!json)
                return -EINVAL;
        return write_value(out, json, 0);
}

/* Drops whatever was appended after the first 'mark' bytes. */
static void truncate_to(buf *out, size_t mark) {
        if (out->data && mark <= out->len) {
                out->len = mark;
                out->data[mark] = '\0';
        }
}

int sio_encode(buf *out, const sio_packet *p) {
        size_t mark = out->len;
        bool has_nsp;
        char digit;
        int r;

        if ((int)p->type < SIO_CONNECT || p->type > SIO_BINARY_ACK)
                return -EINVAL;
        if (p->type == SIO_BINARY_EVENT || p->type == SIO_BINARY_ACK)
                return -EOPNOTSUPP;
        has_nsp = p->nsp && strcmp(p->nsp, "/") != 0;
        if (has_nsp && (p->nsp[0] != '/' || strchr(p->nsp, ',')))
                return -EINVAL;
        if (p->ack_id < -1 || (p->type == SIO_ACK && p->ack_id < 0))
                return -EINVAL;
        if (shape_error(p->type, p->data))
                return -EINVAL;

        digit = (char)('0' + (int)p->type);
        r = buf_append(out, &digit, 1);
        if (r == 0 && has_nsp)
                r = buf_appendf(out, "%s,", p->nsp);
        if (r == 0 && p->ack_id >= 0)
                r = buf_appendf(out, "%" PRId64, p->ack_id);
        if (r == 0 && p->data) {
                r = sio_json_write(out, p->data);
                if (r == -ELOOP || r == -EINVAL)
                        truncate_to(out, mark);
        }
        return r;
}

int sio_encode_event(buf *out, const char *nsp, int64_t ack_id, const char *name,
                     json_t *payload) {
        sio_packet p = { .type = SIO_EVENT, .nsp = (char *)nsp, .ack_id = ack_id };
        json_t *arr;
        int r;

        if (!name)
                return -EINVAL;
        arr = json_array();
        if (!arr)
                return -ENOMEM;
        if (json_array_append_new(arr, json_string(name)) < 0 ||
            (payload && json_array_append(arr, payload) < 0)) {
                /* json_string() refuses invalid UTF-8. */
                json_decref(arr);
                return -EINVAL;
        }
        p.data = arr;
        r = sio_encode(out, &p);
        json_decref(arr);
        return r;
}
