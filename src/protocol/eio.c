#include "protocol/eio.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
        va_list ap;

        if (!err || errlen == 0)
                return;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
}

int eio_decode(const char *msg, size_t len, eio_packet *ret_packet) {
        if (!msg || len == 0)
                return -EBADMSG;
        if (msg[0] == 'b')
                return -EOPNOTSUPP;
        if (msg[0] < '0' || msg[0] > '6')
                return -EBADMSG;
        ret_packet->type = (eio_type)(msg[0] - '0');
        ret_packet->payload = msg + 1;
        ret_packet->len = len - 1;
        return 0;
}

int eio_encode(buf *out, eio_type type, const char *payload, size_t len) {
        char digit;
        int r;

        if ((int)type < EIO_OPEN || type > EIO_NOOP)
                return -EINVAL;
        if (len > 0 && !payload)
                return -EINVAL;
        digit = (char)('0' + (int)type);
        r = buf_append(out, &digit, 1);
        if (r < 0)
                return r;
        if (len > 0)
                r = buf_append(out, payload, len);
        return r;
}

const char *eio_type_name(eio_type type) {
        static const char *const names[] = {
                "open", "close", "ping", "pong", "message", "upgrade", "noop",
        };

        if ((int)type < EIO_OPEN || type > EIO_NOOP)
                return "unknown";
        return names[type];
}

/* Reads an integer member into *ret; min..max inclusive. */
static int get_int(json_t *root, const char *key, int64_t min, int64_t max, int64_t *ret, char *err,
                   size_t errlen) {
        json_t *v = json_object_get(root, key);
        json_int_t n;

        if (!v) {
                set_err(err, errlen, "OPEN packet lacks \"%s\"", key);
                return -EBADMSG;
        }
        if (!json_is_integer(v)) {
                set_err(err, errlen, "OPEN packet \"%s\" is not an integer", key);
                return -EBADMSG;
        }
        n = json_integer_value(v);
        if (n < min || n > max) {
                set_err(err, errlen, "OPEN packet \"%s\" out of range: %lld", key, (long long)n);
                return -EBADMSG;
        }
        *ret = n;
        return 0;
}

int eio_parse_handshake(const char *json, size_t len, eio_handshake *ret_handshake, char *err,
                        size_t errlen) {
        eio_handshake h = { 0 };
        json_error_t jerr;
        json_t *root = NULL, *v;
        size_t i;
        int r;

        if (!json || len == 0) {
                set_err(err, errlen, "OPEN packet has no payload");
                return -EBADMSG;
        }
        if (len > EIO_HANDSHAKE_MAX_LEN) {
                set_err(err, errlen, "OPEN packet too large (%zu bytes)", len);
                return -E2BIG;
        }
        /* An object with few members: the size cap bounds nesting well below
         * jansson's own depth limit. */
        root = json_loadb(json, len, 0, &jerr);
        if (!root) {
                set_err(err, errlen, "OPEN packet is not JSON: %s", jerr.text);
                return -EBADMSG;
        }
        r = -EBADMSG;
        if (!json_is_object(root)) {
                set_err(err, errlen, "OPEN packet is not a JSON object");
                goto out;
        }

        v = json_object_get(root, "sid");
        if (!json_is_string(v) || json_string_length(v) == 0 ||
            json_string_length(v) > EIO_SID_MAX_LEN) {
                set_err(err, errlen, "OPEN packet \"sid\" missing or not a valid string");
                goto out;
        }
        h.sid = strdup(json_string_value(v));
        if (!h.sid) {
                r = -ENOMEM;
                goto out;
        }

        v = json_object_get(root, "upgrades");
        if (v) {
                if (!json_is_array(v) || json_array_size(v) > EIO_UPGRADES_MAX) {
                        set_err(err, errlen, "OPEN packet \"upgrades\" is not a short array");
                        goto out;
                }
                if (json_array_size(v) > 0) {
                        h.upgrades = calloc(json_array_size(v), sizeof *h.upgrades);
                        if (!h.upgrades) {
                                r = -ENOMEM;
                                goto out;
                        }
                }
                for (i = 0; i < json_array_size(v); i++) {
                        json_t *e = json_array_get(v, i);
                        if (!json_is_string(e)) {
                                set_err(err, errlen, "OPEN packet \"upgrades\" holds a non-string");
                                goto out;
                        }
                        h.upgrades[i] = strdup(json_string_value(e));
                        if (!h.upgrades[i]) {
                                r = -ENOMEM;
                                goto out;
                        }
                        h.n_upgrades++;
                }
        }

        if (get_int(root, "pingInterval", 1, INT32_MAX, &h.ping_interval_ms, err, errlen) < 0 ||
            get_int(root, "pingTimeout", 1, INT32_MAX, &h.ping_timeout_ms, err, errlen) < 0 ||
            get_int(root, "maxPayload", 1, INT64_MAX, &h.max_payload, err, errlen) < 0)
                goto out;

        *ret_handshake = h;
        memset(&h, 0, sizeof h);
        r = 0;
out:
        eio_handshake_done(&h);
        json_decref(root);
        return r;
}

void eio_handshake_done(eio_handshake *h) {
        size_t i;

        if (!h)
                return;
        free(h->sid);
        for (i = 0; i < h->n_upgrades; i++)
                free(h->upgrades[i]);
        free(h->upgrades);
        memset(h, 0, sizeof *h);
}
