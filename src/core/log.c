#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/util.h"

static log_level g_level = LOG_INFO;
static log_format g_format = LOG_FORMAT_TEXT;
static int g_fd = 2;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void log_setup(log_level level, log_format format) {
        g_level = level;
        g_format = format;
}

void log_set_level(log_level level) {
        g_level = level;
}

log_level log_get_level(void) {
        return g_level;
}

void log_set_fd(int fd) {
        g_fd = fd;
}

int log_level_parse(const char *s, log_level *ret_level) {
        if (!strcasecmp(s, "debug") || !strcasecmp(s, "trace"))
                *ret_level = LOG_DEBUG;
        else if (!strcasecmp(s, "info"))
                *ret_level = LOG_INFO;
        else if (!strcasecmp(s, "warn") || !strcasecmp(s, "warning"))
                *ret_level = LOG_WARN;
        else if (!strcasecmp(s, "error"))
                *ret_level = LOG_ERROR;
        else
                return -EINVAL;
        return 0;
}

int log_format_parse(const char *s, log_format *ret_format) {
        if (!strcasecmp(s, "text"))
                *ret_format = LOG_FORMAT_TEXT;
        else if (!strcasecmp(s, "json"))
                *ret_format = LOG_FORMAT_JSON;
        else
                return -EINVAL;
        return 0;
}

static void json_escape(buf *b, const char *s) {
        static const char hex[] = "0123456789abcdef";
        buf_append(b, "\"", 1);
        for (; *s; s++) {
                unsigned char c = (unsigned char)*s;
                if (c == '"' || c == '\\') {
                        char e[2] = { '\\', (char)c };
                        buf_append(b, e, 2);
                } else if (c == '\n') {
                        buf_append(b, "\\n", 2);
                } else if (c == '\r') {
                        buf_append(b, "\\r", 2);
                } else if (c == '\t') {
                        buf_append(b, "\\t", 2);
                } else if (c < 0x20) {
                        char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
                        buf_append(b, e, 6);
                } else {
                        buf_append(b, s, 1);
                }
        }
        buf_append(b, "\"", 1);
}

/* Text values with spaces or quotes are quoted so a line stays parseable. */
static void text_value(buf *b, const char *s) {
        if (*s && !strpbrk(s, " \t\"=\n"))
                buf_append_str(b, s);
        else
                json_escape(b, s);
}

void log_msg(log_level level, const char *msg, ...) {
        char ts[25];
        va_list ap;
        buf b;
        const char *k, *v;
        int saved = errno;

        if (level < g_level)
                return;
        buf_init(&b, 1 << 20);
        util_iso_now(ts);
        if (g_format == LOG_FORMAT_JSON) {
                buf_appendf(&b, "{\"time\":\"%s\",\"level\":\"%s\",\"message\":", ts,
                            level_names[level]);
                json_escape(&b, msg);
        } else {
                buf_appendf(&b, "%s %-5s %s", ts, level_names[level], msg);
        }
        va_start(ap, msg);
        while ((k = va_arg(ap, const char *))) {
                v = va_arg(ap, const char *);
                if (!v)
                        v = "(null)";
                if (g_format == LOG_FORMAT_JSON) {
                        buf_append(&b, ",", 1);
                        json_escape(&b, k);
                        buf_append(&b, ":", 1);
                        json_escape(&b, v);
                } else {
                        buf_appendf(&b, " %s=", k);
                        text_value(&b, v);
                }
        }
        va_end(ap);
        buf_append_str(&b, g_format == LOG_FORMAT_JSON ? "}\n" : "\n");
        if (b.data) {
                size_t off = 0;
                while (off < b.len) {
                        ssize_t n = write(g_fd, b.data + off, b.len - off);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n <= 0)
                                break;
                        off += (size_t)n;
                }
        }
        buf_done(&b);
        errno = saved;
}
