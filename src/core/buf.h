/* buf: a growable byte buffer with a hard size cap (peer data never grows it
 * past the cap). The contents are always followed by a NUL byte that is not
 * counted in len, so text can be used as a C string. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct buf {
        char *data;   /* NULL until the first append */
        size_t len;   /* bytes used */
        size_t cap;   /* bytes allocated */
        size_t max;   /* largest len allowed; 0 = SIZE_MAX/2 */
} buf;

void buf_init(buf *b, size_t max);
/* Frees the storage; the buffer can be reused after buf_init(). */
void buf_done(buf *b);
/* Empties the buffer, keeping its storage. */
void buf_reset(buf *b);
/* Append: 0, or -ENOMEM (allocation failed) / -E2BIG (would pass max). On
 * failure the buffer is freed and reset (curl dynbuf), so callers cannot
 * carry on with truncated data by accident. */
int buf_append(buf *b, const void *data, size_t len);
int buf_append_str(buf *b, const char *s);
int buf_appendf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_appendv(buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Makes room for at least n more bytes without changing len. */
int buf_reserve(buf *b, size_t n);
/* Drops the first n bytes (n <= len). */
void buf_consume(buf *b, size_t n);
/* Hands the storage to the caller (NUL-terminated; "" when empty) and resets b. */
char *buf_steal(buf *b);
