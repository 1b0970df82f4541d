#include "core/dotenv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
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

static bool is_blank(char c) {
        return c == ' ' || c == '\t' || c == '\v' || c == '\f';
}

static bool is_key_char(char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
               c == '.' || c == '-';
}

/* A cursor over the normalised text (LF line ends, NUL-terminated). */
typedef struct cursor {
        const char *s;
        size_t pos, len;
        unsigned line;
} cursor;

static char peek(const cursor *c) {
        return c->pos < c->len ? c->s[c->pos] : '\0';
}

static void skip_blanks(cursor *c) {
        while (c->pos < c->len && is_blank(c->s[c->pos]))
                c->pos++;
}

/* Moves past the end of the current line. */
static void skip_line(cursor *c) {
        while (c->pos < c->len && c->s[c->pos] != '\n')
                c->pos++;
        if (c->pos < c->len) {
                c->pos++;
                c->line++;
        }
}

static int add_invalid(dotenv *d, unsigned line) {
        unsigned *p;

        if ((d->n_invalid & (d->n_invalid - 1)) == 0) {
                size_t cap = d->n_invalid ? d->n_invalid * 2 : 8;
                p = realloc(d->invalid_lines, cap * sizeof *p);
                if (!p)
                        return -ENOMEM;
                d->invalid_lines = p;
        }
        d->invalid_lines[d->n_invalid++] = line;
        return 0;
}

/* Stores key=value, taking ownership of both (freed on failure). */
static int add_entry(dotenv *d, char *key, char *value, unsigned line) {
        dotenv_entry *p;
        size_t i;

        for (i = 0; i < d->n_entries; i++) {
                if (strcmp(d->entries[i].key, key) == 0) {
                        free(d->entries[i].value);
                        d->entries[i].value = value;
                        d->entries[i].line = line;
                        free(key);
                        return 0;
                }
        }
        if (d->n_entries >= DOTENV_MAX_ENTRIES) {
                free(key);
                free(value);
                return -E2BIG;
        }
        if ((d->n_entries & (d->n_entries - 1)) == 0) {
                size_t cap = d->n_entries ? d->n_entries * 2 : 8;
                p = realloc(d->entries, cap * sizeof *p);
                if (!p) {
                        free(key);
                        free(value);
                        return -ENOMEM;
                }
                d->entries = p;
        }
        d->entries[d->n_entries++] = (dotenv_entry){ key, value, line };
        return 0;
}

/* Reads a quoted value whose opening quote is at the cursor into *val.
 * Returns 0, 1 when the quote is never closed (cursor unchanged), or
 * -ENOMEM. */
static int read_quoted(cursor *c, buf *val) {
        char q = c->s[c->pos];
        size_t i = c->pos + 1;
        unsigned lines = 0;
        int r;

        buf_reset(val);
        for (; i < c->len && c->s[i] != q; i++) {
                char ch = c->s[i];
                if (ch == '\n')
                        lines++;
                if (q == '"' && ch == '\\' && i + 1 < c->len) {
                        char e = c->s[i + 1];
                        char out = 0;
                        switch (e) {
                        case 'n': out = '\n'; break;
                        case 'r': out = '\r'; break;
                        case 't': out = '\t'; break;
                        case '\\': out = '\\'; break;
                        case '"': out = '"'; break;
                        }
                        if (out) {
                                r = buf_append(val, &out, 1);
                                if (r < 0)
                                        return r;
                                i++;
                                continue;
                        }
                }
                r = buf_append(val, &ch, 1);
                if (r < 0)
                        return r;
        }
        if (i >= c->len)
                return 1;
        c->pos = i + 1;
        c->line += lines;
        return 0;
}

/* Reads an unquoted value up to the end of the line or a comment. */
static int read_unquoted(cursor *c, buf *val) {
        size_t start = c->pos, end;

        while (c->pos < c->len && c->s[c->pos] != '\n') {
                if (c->s[c->pos] == '#' && (c->pos == start || is_blank(c->s[c->pos - 1])))
                        break;
                c->pos++;
        }
        end = c->pos;
        while (end > start && is_blank(c->s[end - 1]))
                end--;
        skip_line(c);
        buf_reset(val);
        return buf_append(val, c->s + start, end - start);
}

/* Parses one logical line at the cursor. Returns 0 (assignment, blank or
 * comment), 1 (invalid line; the cursor has moved past it) or a negative
 * errno. */
static int parse_line(cursor *c, dotenv *d, buf *val) {
        unsigned line = c->line;
        size_t key_start, key_len;
        char *key = NULL, *value;
        int r;

        skip_blanks(c);
        if (peek(c) == '\n' || peek(c) == '\0' || peek(c) == '#') {
                skip_line(c);
                return 0;
        }
        if (c->len - c->pos > 6 && strncmp(c->s + c->pos, "export", 6) == 0 &&
            is_blank(c->s[c->pos + 6])) {
                size_t save = c->pos;
                c->pos += 6;
                skip_blanks(c);
                if (!is_key_char(peek(c)))
                        c->pos = save; /* "export = x" assigns the key "export" */
        }
        key_start = c->pos;
        while (is_key_char(peek(c)))
                c->pos++;
        key_len = c->pos - key_start;
        skip_blanks(c);
        if (key_len == 0 || peek(c) != '=')
                goto invalid;
        c->pos++;
        skip_blanks(c);

        if (peek(c) == '"' || peek(c) == '\'' || peek(c) == '`') {
                r = read_quoted(c, val);
                if (r < 0)
                        return r;
                if (r > 0)
                        goto invalid;
                skip_blanks(c);
                if (peek(c) != '\n' && peek(c) != '\0' && peek(c) != '#')
                        goto invalid;
                skip_line(c);
        } else {
                r = read_unquoted(c, val);
                if (r < 0)
                        return r;
        }

        key = strndup(c->s + key_start, key_len);
        value = buf_steal(val);
        if (!key || !value) {
                free(key);
                free(value);
                return -ENOMEM;
        }
        return add_entry(d, key, value, line);

invalid:
        skip_line(c);
        r = add_invalid(d, line);
        return r < 0 ? r : 1;
}

int dotenv_parse(const char *text, size_t len, dotenv *ret, char *err, size_t errlen) {
        dotenv d = { 0 };
        char *norm = NULL;
        size_t i, n = 0;
        cursor c;
        buf val;
        int r;

        buf_init(&val, 0);
        if (len > DOTENV_MAX_SIZE) {
                set_err(err, errlen, "file larger than %u bytes", DOTENV_MAX_SIZE);
                return -EFBIG;
        }
        if (len > 0 && memchr(text, '\0', len)) {
                set_err(err, errlen, "file contains a NUL byte");
                return -EINVAL;
        }
        norm = malloc(len + 1);
        if (!norm)
                return -ENOMEM;
        i = len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
        for (; i < len; i++) {
                if (text[i] == '\r') {
                        norm[n++] = '\n';
                        if (i + 1 < len && text[i + 1] == '\n')
                                i++;
                } else {
                        norm[n++] = text[i];
                }
        }
        norm[n] = '\0';

        c = (cursor){ .s = norm, .pos = 0, .len = n, .line = 1 };
        while (c.pos < c.len) {
                r = parse_line(&c, &d, &val);
                if (r < 0) {
                        if (r == -E2BIG)
                                set_err(err, errlen, "more than %u keys", DOTENV_MAX_ENTRIES);
                        goto out;
                }
        }
        *ret = d;
        memset(&d, 0, sizeof d);
        r = 0;
out:
        buf_done(&val);
        dotenv_done(&d);
        free(norm);
        return r;
}

int dotenv_load(const char *path, dotenv *ret, char *err, size_t errlen) {
        char *data = NULL;
        size_t len = 0;
        int r;

        r = util_read_file(path, DOTENV_MAX_SIZE, &data, &len);
        if (r < 0) {
                if (r == -EFBIG)
                        set_err(err, errlen, "%s: larger than %u bytes", path, DOTENV_MAX_SIZE);
                else
                        set_err(err, errlen, "%s: %s", path, strerror(-r));
                return r;
        }
        r = dotenv_parse(data, len, ret, err, errlen);
        if (r < 0 && err && errlen) {
                char tmp[256];
                util_strlcpy(tmp, err, sizeof tmp);
                set_err(err, errlen, "%s: %s", path, tmp);
        }
        free(data);
        return r;
}

const char *dotenv_get(const dotenv *d, const char *key) {
        size_t i;

        for (i = 0; i < d->n_entries; i++)
                if (strcmp(d->entries[i].key, key) == 0)
                        return d->entries[i].value;
        return NULL;
}

void dotenv_done(dotenv *d) {
        size_t i;

        if (!d)
                return;
        for (i = 0; i < d->n_entries; i++) {
                free(d->entries[i].key);
                free(d->entries[i].value);
        }
        free(d->entries);
        free(d->invalid_lines);
        memset(d, 0, sizeof *d);
}
