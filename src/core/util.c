#include "core/util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

void util_uuid4(char out[37]) {
        static const char hex[] = "0123456789abcdef";
        unsigned char b[16];
        size_t got = 0;
        int i, o = 0;

        while (got < sizeof b) {
                ssize_t n = getrandom(b + got, sizeof b - got, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        /* getrandom() cannot fail on Linux >= 3.17 once the pool is
                         * initialised; fall back to a time-seeded value rather than
                         * abort. */
                        for (; got < sizeof b; got++)
                                b[got] = (unsigned char)(rand() ^ (int)util_mono_ms());
                        break;
                }
                got += (size_t)n;
        }
        b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
        b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
        for (i = 0; i < 16; i++) {
                if (i == 4 || i == 6 || i == 8 || i == 10)
                        out[o++] = '-';
                out[o++] = hex[b[i] >> 4];
                out[o++] = hex[b[i] & 15];
        }
        out[o] = '\0';
}

int64_t util_wall_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t util_mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void put_digits(char *p, unsigned v, int n) {
        while (n-- > 0) {
                p[n] = (char)('0' + v % 10);
                v /= 10;
        }
}

void util_iso_ms(int64_t epoch_ms, char out[25]) {
        time_t s = (time_t)(epoch_ms / 1000);
        int ms = (int)(epoch_ms % 1000);
        struct tm tm;

        if (ms < 0) {
                ms += 1000;
                s -= 1;
        }
        gmtime_r(&s, &tm);
        put_digits(out, (unsigned)((tm.tm_year + 1900) % 10000 + 10000) % 10000, 4);
        out[4] = '-';
        put_digits(out + 5, (unsigned)tm.tm_mon + 1, 2);
        out[7] = '-';
        put_digits(out + 8, (unsigned)tm.tm_mday, 2);
        out[10] = 'T';
        put_digits(out + 11, (unsigned)tm.tm_hour, 2);
        out[13] = ':';
        put_digits(out + 14, (unsigned)tm.tm_min, 2);
        out[16] = ':';
        put_digits(out + 17, (unsigned)tm.tm_sec % 100, 2);
        out[19] = '.';
        put_digits(out + 20, (unsigned)ms, 3);
        out[23] = 'Z';
        out[24] = '\0';
}

void util_iso_now(char out[25]) {
        util_iso_ms(util_wall_ms(), out);
}

int util_parse_i64(const char *s, int64_t min, int64_t max, int64_t *ret) {
        char *end;
        long long v;

        if (!s || !*s || isspace((unsigned char)*s))
                return -EINVAL;
        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (*end != '\0' || end == s)
                return -EINVAL;
        if (v < min || v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

int util_parse_u64(const char *s, uint64_t *ret) {
        char *end;
        unsigned long long v;

        if (!s || !isdigit((unsigned char)*s))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (*end != '\0')
                return -EINVAL;
        *ret = v;
        return 0;
}

void util_base64_encode(const void *data, size_t len, char *out) {
        static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const unsigned char *p = data;
        size_t i, o = 0;

        for (i = 0; i + 2 < len; i += 3) {
                out[o++] = tbl[p[i] >> 2];
                out[o++] = tbl[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
                out[o++] = tbl[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)];
                out[o++] = tbl[p[i + 2] & 63];
        }
        if (i < len) {
                out[o++] = tbl[p[i] >> 2];
                if (i + 1 < len) {
                        out[o++] = tbl[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
                        out[o++] = tbl[(p[i + 1] & 15) << 2];
                } else {
                        out[o++] = tbl[(p[i] & 3) << 4];
                        out[o++] = '=';
                }
                out[o++] = '=';
        }
        out[o] = '\0';
}

static int b64val(char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+' || c == '-')
                return 62;
        if (c == '/' || c == '_')
                return 63;
        return -1;
}

int util_base64_decode(const char *in, size_t len, unsigned char *out) {
        uint32_t acc = 0;
        int bits = 0, o = 0;
        size_t i;

        while (len > 0 && in[len - 1] == '=')
                len--;
        if (len % 4 == 1)
                return -EINVAL;
        for (i = 0; i < len; i++) {
                int v = b64val(in[i]);
                if (v < 0)
                        return -EINVAL;
                acc = (acc << 6) | (uint32_t)v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[o++] = (unsigned char)((acc >> bits) & 0xff);
                }
        }
        return o;
}

int util_read_file_at(int dir_fd, const char *path, size_t max, char **ret_data, size_t *ret_len) {
        char *data = NULL, *p;
        size_t len = 0, cap = 4096;
        int fd, r = 0;

        fd = openat(dir_fd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        data = malloc(cap + 1);
        if (!data) {
                r = -ENOMEM;
                goto out_close;
        }
        for (;;) {
                ssize_t n;
                if (len == cap) {
                        if (cap >= max) {
                                r = -EFBIG;
                                goto out_free;
                        }
                        cap = cap * 2 > max ? max : cap * 2;
                        p = realloc(data, cap + 1);
                        if (!p) {
                                r = -ENOMEM;
                                goto out_free;
                        }
                        data = p;
                }
                n = read(fd, data + len, cap - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        goto out_free;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        data[len] = '\0';
        *ret_data = data;
        if (ret_len)
                *ret_len = len;
        data = NULL;
out_free:
        free(data);
out_close:
        close(fd);
        return r;
}

int util_read_file(const char *path, size_t max, char **ret_data, size_t *ret_len) {
        return util_read_file_at(AT_FDCWD, path, max, ret_data, ret_len);
}

bool util_startswith(const char *s, const char *prefix) {
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

size_t util_strlcpy(char *dst, const char *src, size_t size) {
        size_t n = strlen(src);
        if (size) {
                size_t c = n < size - 1 ? n : size - 1;
                memcpy(dst, src, c);
                dst[c] = '\0';
        }
        return n;
}

char *util_strstrip(char *s) {
        char *b = s, *e;
        while (isspace((unsigned char)*b))
                b++;
        if (b != s)
                memmove(s, b, strlen(b) + 1);
        e = s + strlen(s);
        while (e > s && isspace((unsigned char)e[-1]))
                *--e = '\0';
        return s;
}
