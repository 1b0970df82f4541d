#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hardware/hw_proc.h"

int hw_proc_root_open(const char *root, int *ret_fd) {
        int fd;

        if (!root || !*root)
                return -EINVAL;
        fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        *ret_fd = fd;
        return 0;
}

int hw_proc_read(int dir_fd, const char *path, char *buf, size_t size, size_t max, hw_proc_text *ret) {
        char *data = buf, *heap = NULL, *p;
        size_t len = 0, cap, heap_size = 0, new_size;
        bool truncated = false;
        ssize_t n;
        int fd, r = 0;

        if (size < 2)
                return -EINVAL;
        cap = size - 1;
        fd = openat(dir_fd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        for (;;) {
                if (len == cap) {
                        if (max <= size) {
                                truncated = true;
                                break;
                        }
                        if (heap_size >= max) {
                                r = -EFBIG;
                                goto out_close;
                        }
                        new_size = heap ? heap_size : size;
                        new_size = new_size > max / 2 ? max : new_size * 2;
                        p = realloc(heap, new_size);
                        if (!p) {
                                r = -ENOMEM;
                                goto out_close;
                        }
                        if (!heap)
                                memcpy(p, buf, len);
                        heap = data = p;
                        heap_size = new_size;
                        cap = new_size - 1;
                }
                n = read(fd, data + len, cap - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        goto out_close;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        data[len] = '\0';
        *ret = (hw_proc_text){
                .data = data,
                .len = len,
                .truncated = truncated,
                .heap = heap,
                .heap_size = heap_size,
        };
        heap = NULL;
out_close:
        free(heap);
        close(fd);
        return r;
}

void hw_proc_text_done(hw_proc_text *t) {
        if (!t)
                return;
        free(t->heap);
        t->heap = NULL;
        t->heap_size = 0;
}

const char *hw_proc_eol(const char *p, const char *end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        return nl ? nl : end;
}

const char *hw_proc_skip_blank(const char *p, const char *end) {
        while (p < end && (*p == ' ' || *p == '\t'))
                p++;
        return p;
}

bool hw_proc_scan_u64(const char **p, const char *end, uint64_t *ret) {
        const char *s = *p;
        uint64_t v = 0;

        if (s >= end || *s < '0' || *s > '9')
                return false;
        for (; s < end && *s >= '0' && *s <= '9'; s++) {
                unsigned d = (unsigned)(*s - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return false;
                v = v * 10 + d;
        }
        *p = s;
        *ret = v;
        return true;
}

static int hex_digit(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

bool hw_proc_scan_hex(const char **p, const char *end, uint64_t *ret) {
        const char *s = *p;
        uint64_t v = 0;
        int d, n = 0;

        for (; s < end && (d = hex_digit(*s)) >= 0; s++) {
                if (++n > 16)
                        return false;
                v = (v << 4) | (uint64_t)d;
        }
        if (n == 0)
                return false;
        *p = s;
        *ret = v;
        return true;
}

bool hw_proc_scan_decimal(const char **p, const char *end, double *ret) {
        const char *s = *p;
        uint64_t ip = 0, fp = 0, scale = 1;
        bool any = false;

        /* Integer part; a value with more than 19 digits is not a /proc
         * figure, so overflow is simply a parse failure. */
        if (s < end && *s >= '0' && *s <= '9') {
                if (!hw_proc_scan_u64(&s, end, &ip))
                        return false;
                any = true;
        }
        if (s < end && *s == '.') {
                s++;
                /* Keep up to 18 fractional digits; ignore the rest. */
                for (; s < end && *s >= '0' && *s <= '9'; s++) {
                        any = true;
                        if (scale < 1000000000000000000ULL) {
                                fp = fp * 10 + (uint64_t)(*s - '0');
                                scale *= 10;
                        }
                }
        }
        if (!any)
                return false;
        *p = s;
        *ret = (double)ip + (double)fp / (double)scale;
        return true;
}

/* Length of the valid UTF-8 sequence at s (n bytes available), 0 if invalid.
 * Rejects overlong forms, surrogates and code points above U+10FFFF, as
 * jansson does. */
static size_t utf8_len(const unsigned char *s, size_t n) {
        unsigned char c = s[0];
        size_t len, i;
        uint32_t cp;

        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf) {
                len = 2;
                cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
                len = 3;
                cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
                len = 4;
                cp = c & 0x07;
        } else
                return 0;
        if (n < len)
                return 0;
        for (i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return len;
}

static bool is_space(unsigned char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

void hw_proc_copy_text(char *dst, size_t size, const char *src, size_t n) {
        const unsigned char *s = (const unsigned char *)src, *e = s + n;
        size_t o = 0, l;

        if (size == 0)
                return;
        while (s < e && is_space(*s))
                s++;
        while (e > s && is_space(e[-1]))
                e--;
        while (s < e) {
                l = utf8_len(s, (size_t)(e - s));
                if (l == 0 || (l == 1 && (*s < 0x20 || *s == 0x7f))) {
                        if (o + 1 >= size)
                                break;
                        dst[o++] = (l == 0) ? '?' : ' ';
                        s++;
                        continue;
                }
                if (o + l >= size)
                        break;
                memcpy(dst + o, s, l);
                o += l;
                s += l;
        }
        /* Control bytes became blanks: trim those too. */
        while (o > 0 && dst[o - 1] == ' ')
                o--;
        dst[o] = '\0';
        for (l = 0; dst[l] == ' '; l++)
                ;
        if (l)
                memmove(dst, dst + l, o - l + 1);
}
