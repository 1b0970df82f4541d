#include "models/model_s3.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

#define MAX_NAME 64

/* ---- a small XML reader ----
 *
 * Walks the document once and reports element starts and ends; the text of
 * an element without child elements comes with its end. Only what S3 sends
 * is accepted (see the header). */

typedef struct xml_reader xml_reader;
typedef int (*xml_start_fn)(xml_reader *x, const char *name, unsigned depth);
/* text is NUL-terminated (text_len bytes, may hold NUL only if the document
 * did, which the reader refuses); leaf is false when the element had child
 * elements (its text is then meaningless). */
typedef int (*xml_end_fn)(xml_reader *x, const char *name, unsigned depth, const char *text,
                          size_t text_len, bool leaf);

struct xml_reader {
        const char *p, *end;
        char stack[MODEL_S3_MAX_DEPTH][MAX_NAME + 1];
        bool has_child[MODEL_S3_MAX_DEPTH];
        unsigned depth;
        bool seen_root;
        buf text;
        xml_start_fn on_start;
        xml_end_fn on_end;
        void *ud;
        char *err;
        size_t errlen;
};

static int xfail(xml_reader *x, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int xfail(xml_reader *x, int r, const char *fmt, ...) {
        va_list ap;

        if (x->errlen) {
                va_start(ap, fmt);
                vsnprintf(x->err, x->errlen, fmt, ap);
                va_end(ap);
        }
        return r;
}

static bool is_space(char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_name_start(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
               (unsigned char)c >= 0x80;
}

static bool is_name_char(char c) {
        return is_name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

static const char *find(const char *p, const char *end, const char *needle) {
        size_t n = strlen(needle);

        for (; (size_t)(end - p) >= n; p++)
                if (memcmp(p, needle, n) == 0)
                        return p;
        return NULL;
}

static bool starts(const char *p, const char *end, const char *s) {
        size_t n = strlen(s);

        return (size_t)(end - p) >= n && memcmp(p, s, n) == 0;
}

static void skip_space(xml_reader *x) {
        while (x->p < x->end && is_space(*x->p))
                x->p++;
}

/* Reads a name into out (local part: any prefix before ':' dropped). */
static int read_name(xml_reader *x, char out[MAX_NAME + 1]) {
        const char *s = x->p, *local;
        size_t n;

        if (x->p >= x->end || !is_name_start(*x->p))
                return xfail(x, -EBADMSG, "malformed XML: a tag name was expected");
        while (x->p < x->end && is_name_char(*x->p))
                x->p++;
        local = s;
        for (const char *q = s; q < x->p; q++)
                if (*q == ':')
                        local = q + 1;
        n = (size_t)(x->p - local);
        if (n == 0 || n > MAX_NAME)
                return xfail(x, -EBADMSG, "malformed XML: bad tag name");
        memcpy(out, local, n);
        out[n] = '\0';
        return 0;
}

static int put_utf8(buf *b, unsigned long cp) {
        char u[4];
        size_t n;

        if (cp < 0x80) {
                u[0] = (char)cp;
                n = 1;
        } else if (cp < 0x800) {
                u[0] = (char)(0xC0 | (cp >> 6));
                u[1] = (char)(0x80 | (cp & 0x3F));
                n = 2;
        } else if (cp < 0x10000) {
                u[0] = (char)(0xE0 | (cp >> 12));
                u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
                u[2] = (char)(0x80 | (cp & 0x3F));
                n = 3;
        } else {
                u[0] = (char)(0xF0 | (cp >> 18));
                u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
                u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
                u[3] = (char)(0x80 | (cp & 0x3F));
                n = 4;
        }
        return buf_append(b, u, n);
}

/* The XML 1.0 Char production. */
static bool xml_char_ok(unsigned long cp) {
        return cp == 0x9 || cp == 0xA || cp == 0xD || (cp >= 0x20 && cp <= 0xD7FF) ||
               (cp >= 0xE000 && cp <= 0xFFFD) || (cp >= 0x10000 && cp <= 0x10FFFF);
}

/* Decodes one reference at x->p ('&') into the text buffer. */
static int read_reference(xml_reader *x) {
        static const struct {
                const char *name;
                char c;
        } named[] = { { "lt", '<' }, { "gt", '>' }, { "amp", '&' }, { "quot", '"' }, { "apos", '\'' } };
        const char *semi, *s = x->p + 1;
        unsigned long cp = 0;
        size_t n, i;
        int r;

        semi = memchr(s, ';', (size_t)(x->end - s) < 12 ? (size_t)(x->end - s) : 12);
        if (!semi)
                return xfail(x, -EBADMSG, "malformed XML: bad character reference");
        n = (size_t)(semi - s);
        x->p = semi + 1;
        if (n >= 2 && s[0] == '#') {
                bool hex = s[1] == 'x';
                size_t k = hex ? 2 : 1;
                if (k >= n)
                        return xfail(x, -EBADMSG, "malformed XML: bad character reference");
                for (; k < n; k++) {
                        char c = s[k];
                        unsigned d;
                        if (c >= '0' && c <= '9')
                                d = (unsigned)(c - '0');
                        else if (hex && c >= 'a' && c <= 'f')
                                d = (unsigned)(c - 'a' + 10);
                        else if (hex && c >= 'A' && c <= 'F')
                                d = (unsigned)(c - 'A' + 10);
                        else
                                return xfail(x, -EBADMSG, "malformed XML: bad character reference");
                        cp = cp * (hex ? 16 : 10) + d;
                        if (cp > 0x10FFFF)
                                return xfail(x, -EBADMSG, "malformed XML: character out of range");
                }
                if (!xml_char_ok(cp))
                        return xfail(x, -EBADMSG, "malformed XML: character not allowed");
                r = put_utf8(&x->text, cp);
                goto out;
        }
        for (i = 0; i < sizeof named / sizeof named[0]; i++)
                if (strlen(named[i].name) == n && memcmp(named[i].name, s, n) == 0) {
                        r = buf_append(&x->text, &named[i].c, 1);
                        goto out;
                }
        return xfail(x, -EBADMSG, "malformed XML: unknown entity");
out:
        if (r == -E2BIG)
                return xfail(x, -E2BIG, "XML text longer than %d bytes", MODEL_S3_MAX_TEXT);
        return r;
}

static int append_text(xml_reader *x, const char *s, size_t n) {
        int r = buf_append(&x->text, s, n);

        if (r == -E2BIG)
                return xfail(x, -E2BIG, "XML text longer than %d bytes", MODEL_S3_MAX_TEXT);
        return r;
}

static int read_text(xml_reader *x) {
        int r;

        while (x->p < x->end && *x->p != '<') {
                const char *s = x->p;
                while (x->p < x->end && *x->p != '<' && *x->p != '&')
                        x->p++;
                if (x->depth == 0) {
                        for (const char *q = s; q < x->p; q++)
                                if (!is_space(*q))
                                        return xfail(x, -EBADMSG,
                                                     "malformed XML: text outside the root element");
                } else if (x->p > s) {
                        r = append_text(x, s, (size_t)(x->p - s));
                        if (r < 0)
                                return r;
                }
                if (x->p < x->end && *x->p == '&') {
                        if (x->depth == 0)
                                return xfail(x, -EBADMSG,
                                             "malformed XML: text outside the root element");
                        r = read_reference(x);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int start_element(xml_reader *x) {
        char name[MAX_NAME + 1];
        bool empty = false;
        int r;

        x->p++; /* '<' */
        r = read_name(x, name);
        if (r < 0)
                return r;
        for (;;) {
                char attr[MAX_NAME + 1], q;
                const char *close;
                bool had_space = x->p < x->end && is_space(*x->p);

                skip_space(x);
                if (x->p >= x->end)
                        return xfail(x, -EBADMSG, "malformed XML: unterminated tag");
                if (*x->p == '>') {
                        x->p++;
                        break;
                }
                if (starts(x->p, x->end, "/>")) {
                        x->p += 2;
                        empty = true;
                        break;
                }
                if (!had_space)
                        return xfail(x, -EBADMSG, "malformed XML: bad attribute");
                r = read_name(x, attr);
                if (r < 0)
                        return r;
                skip_space(x);
                if (x->p >= x->end || *x->p != '=')
                        return xfail(x, -EBADMSG, "malformed XML: bad attribute");
                x->p++;
                skip_space(x);
                if (x->p >= x->end || (*x->p != '"' && *x->p != '\''))
                        return xfail(x, -EBADMSG, "malformed XML: bad attribute");
                q = *x->p++;
                close = memchr(x->p, q, (size_t)(x->end - x->p));
                if (!close || memchr(x->p, '<', (size_t)(close - x->p)))
                        return xfail(x, -EBADMSG, "malformed XML: bad attribute");
                x->p = close + 1;
        }
        if (x->depth == 0 && x->seen_root)
                return xfail(x, -EBADMSG, "malformed XML: more than one root element");
        if (x->depth >= MODEL_S3_MAX_DEPTH)
                return xfail(x, -E2BIG, "XML nested deeper than %d elements", MODEL_S3_MAX_DEPTH);
        if (x->depth > 0)
                x->has_child[x->depth - 1] = true;
        memcpy(x->stack[x->depth], name, sizeof name);
        x->has_child[x->depth] = false;
        x->depth++;
        x->seen_root = true;
        buf_reset(&x->text);
        r = x->on_start ? x->on_start(x, name, x->depth) : 0;
        if (r < 0)
                return r;
        if (empty) {
                r = x->on_end ? x->on_end(x, name, x->depth, "", 0, true) : 0;
                x->depth--;
        }
        return r;
}

static int end_element(xml_reader *x) {
        char name[MAX_NAME + 1];
        const char *text;
        bool leaf;
        int r;

        x->p += 2; /* "</" */
        r = read_name(x, name);
        if (r < 0)
                return r;
        skip_space(x);
        if (x->p >= x->end || *x->p != '>')
                return xfail(x, -EBADMSG, "malformed XML: unterminated end tag");
        x->p++;
        if (x->depth == 0 || strcmp(x->stack[x->depth - 1], name) != 0)
                return xfail(x, -EBADMSG, "malformed XML: mismatched end tag </%s>", name);
        leaf = !x->has_child[x->depth - 1];
        text = x->text.data ? x->text.data : "";
        r = x->on_end ? x->on_end(x, name, x->depth, text, x->text.len, leaf) : 0;
        x->depth--;
        buf_reset(&x->text);
        return r;
}

static int xml_walk(const char *xml, size_t len, xml_start_fn on_start, xml_end_fn on_end, void *ud,
                    char *err, size_t errlen) {
        xml_reader *x = calloc(1, sizeof *x);
        int r = 0;

        if (!x)
                return -ENOMEM;
        x->p = xml;
        x->end = xml + len;
        x->on_start = on_start;
        x->on_end = on_end;
        x->ud = ud;
        x->err = err;
        x->errlen = errlen;
        buf_init(&x->text, MODEL_S3_MAX_TEXT);
        if (memchr(xml, '\0', len)) {
                r = xfail(x, -EBADMSG, "malformed XML: NUL byte");
                goto out;
        }
        if (starts(x->p, x->end, "\xEF\xBB\xBF"))
                x->p += 3;
        while (x->p < x->end) {
                if (*x->p != '<') {
                        r = read_text(x);
                } else if (starts(x->p, x->end, "<?")) {
                        const char *e = find(x->p, x->end, "?>");
                        if (!e || x->depth > 0)
                                r = xfail(x, -EBADMSG, "malformed XML: bad processing instruction");
                        else
                                x->p = e + 2;
                } else if (starts(x->p, x->end, "<!--")) {
                        const char *e = find(x->p + 4, x->end, "-->");
                        if (!e)
                                r = xfail(x, -EBADMSG, "malformed XML: unterminated comment");
                        else
                                x->p = e + 3;
                } else if (starts(x->p, x->end, "<![CDATA[")) {
                        const char *s = x->p + 9, *e = find(s, x->end, "]]>");
                        if (!e || x->depth == 0)
                                r = xfail(x, -EBADMSG, "malformed XML: bad CDATA section");
                        else {
                                r = append_text(x, s, (size_t)(e - s));
                                x->p = e + 3;
                        }
                } else if (starts(x->p, x->end, "<!")) {
                        r = xfail(x, -EBADMSG, "XML declarations (DOCTYPE) are not accepted");
                } else if (starts(x->p, x->end, "</")) {
                        r = end_element(x);
                } else {
                        r = start_element(x);
                }
                if (r < 0)
                        goto out;
        }
        if (x->depth != 0 || !x->seen_root)
                r = xfail(x, -EBADMSG, "malformed XML: truncated document");
out:
        buf_done(&x->text);
        free(x);
        return r;
}

/* ---- ListObjectsV2 ---- */

typedef struct list_ctx {
        model_s3_page page;
        size_t cap;
        bool in_contents, have_key, have_size;
        model_s3_object cur;
        char *err;
        size_t errlen;
        int r;
} list_ctx;

static int lfail(list_ctx *c, int r, const char *msg) {
        if (c->errlen)
                snprintf(c->err, c->errlen, "%s", msg);
        return r;
}

static int list_start(xml_reader *x, const char *name, unsigned depth) {
        list_ctx *c = x->ud;

        if (depth == 1 && strcmp(name, "ListBucketResult") != 0)
                return lfail(c, -EBADMSG, "not a ListBucketResult document");
        if (depth == 2 && strcmp(name, "Contents") == 0) {
                c->in_contents = true;
                c->have_key = c->have_size = false;
                memset(&c->cur, 0, sizeof c->cur);
        }
        return 0;
}

static int list_end(xml_reader *x, const char *name, unsigned depth, const char *text,
                    size_t len, bool leaf) {
        list_ctx *c = x->ud;

        if (depth == 2 && strcmp(name, "IsTruncated") == 0) {
                if (strcmp(text, "true") == 0)
                        c->page.truncated = true;
                else if (strcmp(text, "false") == 0)
                        c->page.truncated = false;
                else
                        return lfail(c, -EBADMSG, "IsTruncated is neither true nor false");
        } else if (depth == 2 && strcmp(name, "NextContinuationToken") == 0) {
                if (!leaf || len == 0 || len > MODEL_S3_MAX_TOKEN || strlen(text) != len)
                        return lfail(c, -EBADMSG, "bad NextContinuationToken");
                free(c->page.next_token);
                c->page.next_token = strdup(text);
                if (!c->page.next_token)
                        return -ENOMEM;
        } else if (depth == 3 && c->in_contents && strcmp(name, "Key") == 0) {
                if (!leaf || len == 0 || strlen(text) != len)
                        return lfail(c, -EBADMSG, "empty or bad Key");
                if (len > MODEL_S3_MAX_KEY)
                        return lfail(c, -E2BIG, "Key longer than 1024 bytes");
                free(c->cur.key);
                c->cur.key = strdup(text);
                if (!c->cur.key)
                        return -ENOMEM;
                c->have_key = true;
        } else if (depth == 3 && c->in_contents && strcmp(name, "Size") == 0) {
                if (!leaf || util_parse_u64(text, &c->cur.size) < 0)
                        return lfail(c, -EBADMSG, "bad Size");
                c->have_size = true;
        } else if (depth == 3 && c->in_contents && strcmp(name, "ETag") == 0) {
                size_t n = len;
                const char *s = text;
                if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
                        s++;
                        n -= 2;
                }
                free(c->cur.etag);
                c->cur.etag = strndup(s, n);
                if (!c->cur.etag)
                        return -ENOMEM;
        } else if (depth == 2 && strcmp(name, "Contents") == 0) {
                c->in_contents = false;
                if (!c->have_key || !c->have_size) {
                        free(c->cur.key);
                        free(c->cur.etag);
                        return lfail(c, -EBADMSG, "Contents without Key or Size");
                }
                if (c->page.n_objects >= MODEL_S3_MAX_PAGE) {
                        free(c->cur.key);
                        free(c->cur.etag);
                        return lfail(c, -E2BIG, "more than 10000 objects in one page");
                }
                if (c->page.n_objects == c->cap) {
                        size_t ncap = c->cap ? c->cap * 2 : 16;
                        model_s3_object *o = realloc(c->page.objects, ncap * sizeof *o);
                        if (!o) {
                                free(c->cur.key);
                                free(c->cur.etag);
                                return -ENOMEM;
                        }
                        c->page.objects = o;
                        c->cap = ncap;
                }
                c->page.objects[c->page.n_objects++] = c->cur;
                memset(&c->cur, 0, sizeof c->cur);
        }
        return 0;
}

int model_s3_parse_list(const char *xml, size_t len, model_s3_page *ret_page, char *err,
                        size_t errlen) {
        list_ctx c;
        int r;

        memset(&c, 0, sizeof c);
        c.err = err;
        c.errlen = errlen;
        if (errlen)
                err[0] = '\0';
        r = xml_walk(xml, len, list_start, list_end, &c, err, errlen);
        if (r == 0 && c.page.truncated && !c.page.next_token)
                r = lfail(&c, -EBADMSG, "truncated listing without NextContinuationToken");
        if (r < 0) {
                if (c.in_contents) {
                        free(c.cur.key);
                        free(c.cur.etag);
                }
                model_s3_page_done(&c.page);
                if (r == -ENOMEM && errlen)
                        snprintf(err, errlen, "out of memory");
                return r;
        }
        *ret_page = c.page;
        return 0;
}

void model_s3_page_done(model_s3_page *page) {
        size_t i;

        if (!page)
                return;
        for (i = 0; i < page->n_objects; i++) {
                free(page->objects[i].key);
                free(page->objects[i].etag);
        }
        free(page->objects);
        free(page->next_token);
        memset(page, 0, sizeof *page);
}

/* ---- <Error> ---- */

typedef struct error_ctx {
        char *code, *message;
        size_t codelen, messagelen;
        bool is_error;
} error_ctx;

static int error_start(xml_reader *x, const char *name, unsigned depth) {
        error_ctx *c = x->ud;

        if (depth == 1)
                c->is_error = strcmp(name, "Error") == 0;
        return 0;
}

static int error_end(xml_reader *x, const char *name, unsigned depth, const char *text,
                     size_t len, bool leaf) {
        error_ctx *c = x->ud;

        if (depth == 2 && c->is_error && leaf) {
                if (strcmp(name, "Code") == 0 && c->codelen)
                        util_strlcpy(c->code, text, c->codelen);
                else if (strcmp(name, "Message") == 0 && c->messagelen)
                        util_strlcpy(c->message, text, c->messagelen);
        }
        return 0;
}

int model_s3_parse_error(const char *xml, size_t len, char *code, size_t codelen, char *message,
                         size_t messagelen) {
        error_ctx c = { .code = code, .message = message, .codelen = codelen, .messagelen = messagelen };
        char err[8];
        int r;

        if (codelen)
                code[0] = '\0';
        if (messagelen)
                message[0] = '\0';
        r = xml_walk(xml, len, error_start, error_end, &c, err, sizeof err);
        if (r < 0 || !c.is_error)
                return -EBADMSG;
        return 0;
}

/* ---- names and URLs ---- */

bool model_s3_etag_is_md5(const char *etag) {
        size_t i;

        if (!etag || strlen(etag) != 32)
                return false;
        for (i = 0; i < 32; i++)
                if (!strchr("0123456789abcdefABCDEF", etag[i]))
                        return false;
        return true;
}

static bool bucket_valid(const char *b, size_t n) {
        size_t i;

        if (n < 3 || n > 63)
                return false;
        for (i = 0; i < n; i++) {
                char c = b[i];
                bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
                if (!alnum && c != '.' && c != '-')
                        return false;
                if ((i == 0 || i == n - 1) && !alnum)
                        return false;
        }
        return true;
}

int model_s3_split_path(const char *source_path, char **ret_bucket, char **ret_prefix) {
        const char *s = source_path, *slash, *q;
        char *bucket, *prefix;
        size_t n;

        if (!s)
                return -EINVAL;
        if (util_startswith(s, "s3://"))
                s += 5;
        slash = strchr(s, '/');
        n = slash ? (size_t)(slash - s) : strlen(s);
        if (!bucket_valid(s, n))
                return -EINVAL;
        for (q = slash ? slash + 1 : ""; *q; q++)
                if ((unsigned char)*q < 0x20 || *q == 0x7F)
                        return -EINVAL;
        bucket = strndup(s, n);
        prefix = strdup(slash ? slash + 1 : "");
        if (!bucket || !prefix) {
                free(bucket);
                free(prefix);
                return -ENOMEM;
        }
        *ret_bucket = bucket;
        *ret_prefix = prefix;
        return 0;
}

int model_s3_uri_encode(buf *b, const char *s, bool keep_slash) {
        static const char hex[] = "0123456789ABCDEF";
        int r = 0;

        for (; *s && r == 0; s++) {
                unsigned char c = (unsigned char)*s;
                if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
                        r = buf_append(b, s, 1);
                } else {
                        char e[3] = { '%', hex[c >> 4], hex[c & 15] };
                        r = buf_append(b, e, 3);
                }
        }
        return r;
}

static int append_endpoint(buf *b, const char *endpoint) {
        size_t n = strlen(endpoint);

        while (n > 0 && endpoint[n - 1] == '/')
                n--;
        return buf_append(b, endpoint, n);
}

int model_s3_list_url(const char *endpoint, const char *bucket, const char *prefix,
                      const char *token, unsigned max_keys, char **ret_url) {
        buf b;
        int r;

        buf_init(&b, 0);
        /* Parameters in canonical (sorted) order. */
        r = append_endpoint(&b, endpoint);
        if (r == 0)
                r = buf_append_str(&b, "/");
        if (r == 0)
                r = model_s3_uri_encode(&b, bucket, false);
        if (r == 0)
                r = buf_append_str(&b, "?");
        if (r == 0 && token) {
                r = buf_append_str(&b, "continuation-token=");
                if (r == 0)
                        r = model_s3_uri_encode(&b, token, false);
                if (r == 0)
                        r = buf_append_str(&b, "&");
        }
        if (r == 0)
                r = buf_appendf(&b, "list-type=2&max-keys=%u&prefix=", max_keys ? max_keys : 1000);
        if (r == 0)
                r = model_s3_uri_encode(&b, prefix ? prefix : "", false);
        if (r < 0) {
                buf_done(&b);
                return r;
        }
        *ret_url = buf_steal(&b);
        return 0;
}

int model_s3_object_url(const char *endpoint, const char *bucket, const char *key,
                        char **ret_url) {
        buf b;
        int r;

        buf_init(&b, 0);
        r = append_endpoint(&b, endpoint);
        if (r == 0)
                r = buf_append_str(&b, "/");
        if (r == 0)
                r = model_s3_uri_encode(&b, bucket, false);
        if (r == 0)
                r = buf_append_str(&b, "/");
        if (r == 0)
                r = model_s3_uri_encode(&b, key, true);
        if (r < 0) {
                buf_done(&b);
                return r;
        }
        *ret_url = buf_steal(&b);
        return 0;
}

int model_s3_sigv4_param(const char *region, char *out, size_t outlen) {
        size_t i, n = region ? strlen(region) : 0;
        int w;

        if (n == 0 || n > 32)
                return -EINVAL;
        for (i = 0; i < n; i++)
                if (!((region[i] >= 'a' && region[i] <= 'z') || (region[i] >= '0' && region[i] <= '9') ||
                      region[i] == '-'))
                        return -EINVAL;
        w = snprintf(out, outlen, "aws:amz:%s:s3", region);
        if (w < 0 || (size_t)w >= outlen)
                return -ENOBUFS;
        return 0;
}
