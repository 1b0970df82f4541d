#include "core/buf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t buf_limit(const buf *b) {
        return b->max ? b->max : SIZE_MAX / 2;
}

void buf_init(buf *b, size_t max) {
        b->data = NULL;
        b->len = 0;
        b->cap = 0;
        b->max = max;
}

void buf_done(buf *b) {
        free(b->data);
        b->data = NULL;
        b->len = 0;
        b->cap = 0;
}

void buf_reset(buf *b) {
        b->len = 0;
        if (b->data)
                b->data[0] = '\0';
}

int buf_reserve(buf *b, size_t n) {
        size_t need, ncap;
        char *p;

        if (n > buf_limit(b) - b->len) {
                buf_done(b);
                return -E2BIG;
        }
        need = b->len + n + 1;
        if (need <= b->cap)
                return 0;
        ncap = b->cap ? b->cap : 64;
        while (ncap < need)
                ncap *= 2;
        p = realloc(b->data, ncap);
        if (!p) {
                buf_done(b);
                return -ENOMEM;
        }
        b->data = p;
        b->cap = ncap;
        return 0;
}

int buf_append(buf *b, const void *data, size_t len) {
        int r = buf_reserve(b, len);
        if (r < 0)
                return r;
        if (len)
                memcpy(b->data + b->len, data, len);
        b->len += len;
        b->data[b->len] = '\0';
        return 0;
}

int buf_append_str(buf *b, const char *s) {
        return buf_append(b, s, strlen(s));
}

int buf_appendv(buf *b, const char *fmt, va_list ap) {
        va_list aq;
        int n, r;

        va_copy(aq, ap);
        n = vsnprintf(NULL, 0, fmt, aq);
        va_end(aq);
        if (n < 0)
                return -EINVAL;
        r = buf_reserve(b, (size_t)n);
        if (r < 0)
                return r;
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
        b->len += (size_t)n;
        return 0;
}

int buf_appendf(buf *b, const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = buf_appendv(b, fmt, ap);
        va_end(ap);
        return r;
}

void buf_consume(buf *b, size_t n) {
        if (n >= b->len) {
                buf_reset(b);
                return;
        }
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
        b->data[b->len] = '\0';
}

char *buf_steal(buf *b) {
        char *p = b->data;
        if (!p)
                p = calloc(1, 1);
        b->data = NULL;
        b->len = 0;
        b->cap = 0;
        return p;
}
