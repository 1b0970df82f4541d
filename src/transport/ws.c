#include "transport/ws.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <openssl/evp.h>

#include "core/util.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_EXCERPT_MAX 200u
#define WS_FEED_SLACK (64u * 1024u)

/* ---- small helpers ---- */

static int fill_random(void *out, size_t len) {
        unsigned char *p = out;
        size_t got = 0;

        while (got < len) {
                ssize_t n = getrandom(p + got, len - got, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -EIO;
                }
                got += (size_t)n;
        }
        return 0;
}

bool ws_utf8_valid(const void *data, size_t len) {
        const unsigned char *s = data;
        size_t i = 0;

        while (i < len) {
                unsigned char c = s[i];
                size_t n;
                uint32_t cp;

                if (c < 0x80) {
                        i++;
                        continue;
                }
                if (c >= 0xC2 && c <= 0xDF) {
                        n = 1;
                        cp = c & 0x1F;
                } else if (c >= 0xE0 && c <= 0xEF) {
                        n = 2;
                        cp = c & 0x0F;
                } else if (c >= 0xF0 && c <= 0xF4) {
                        n = 3;
                        cp = c & 0x07;
                } else {
                        return false;
                }
                if (len - i - 1 < n)
                        return false;
                for (size_t k = 1; k <= n; k++) {
                        if ((s[i + k] & 0xC0) != 0x80)
                                return false;
                        cp = (cp << 6) | (s[i + k] & 0x3F);
                }
                if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
                    (cp >= 0xD800 && cp <= 0xDFFF))
                        return false;
                i += n + 1;
        }
        return true;
}

bool ws_close_code_valid(uint16_t code) {
        return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
               (code >= 3000 && code <= 4999);
}

/* Copies at most max bytes of s into out as printable ASCII (others become
 * '?', line breaks a space), NUL-terminated; out holds max + 1 bytes. */
static void sanitize(char *out, const char *s, size_t len, size_t max) {
        size_t i, o = 0;

        for (i = 0; i < len && o < max; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c == '\r' || c == '\n' || c == '\t')
                        out[o++] = ' ';
                else if (c < 0x20 || c >= 0x7f)
                        out[o++] = '?';
                else
                        out[o++] = (char)c;
        }
        while (o > 0 && out[o - 1] == ' ')
                o--;
        out[o] = '\0';
}

/* True when s has no control bytes (HT allowed when allow_tab) and, unless
 * allow_space, no space. */
static bool clean_text(const char *s, bool allow_space, bool allow_tab) {
        for (; *s; s++) {
                unsigned char c = (unsigned char)*s;
                if (c == '\t' && allow_tab)
                        continue;
                if (c < 0x20 || c == 0x7f || (c == ' ' && !allow_space))
                        return false;
        }
        return true;
}

/* ---- handshake: request ---- */

static bool ipv6_literal(const char *s, size_t len) {
        char tmp[INET6_ADDRSTRLEN + 1];
        struct in6_addr a;

        if (len == 0 || len >= sizeof tmp)
                return false;
        memcpy(tmp, s, len);
        tmp[len] = '\0';
        return inet_pton(AF_INET6, tmp, &a) == 1;
}

int ws_key_new(char ret_key[WS_KEY_LEN + 1]) {
        unsigned char raw[16];
        int r = fill_random(raw, sizeof raw);

        if (r < 0)
                return r;
        util_base64_encode(raw, sizeof raw, ret_key);
        return 0;
}

int ws_accept_for_key(const char *key, char ret_accept[WS_ACCEPT_LEN + 1]) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        char tmp[WS_KEY_LEN + sizeof WS_GUID];
        size_t klen = strlen(key);
        int r = 0;

        if (klen != WS_KEY_LEN)
                return -EINVAL;
        memcpy(tmp, key, klen);
        memcpy(tmp + klen, WS_GUID, sizeof WS_GUID - 1);
        if (EVP_Digest(tmp, klen + sizeof WS_GUID - 1, md, &mdlen, EVP_sha1(), NULL) != 1 ||
            mdlen != 20) {
                r = -EIO;
                goto out;
        }
        util_base64_encode(md, mdlen, ret_accept);
out:
        return r;
}

int ws_request_build(buf *out, const char *host, uint16_t port, bool tls, const char *path,
                     const char *const *extra_headers, char ret_key[WS_KEY_LEN + 1]) {
        char key[WS_KEY_LEN + 1];
        bool bracket, default_port;
        size_t hlen;
        int r;

        if (!host || !*host || !clean_text(host, false, false) || !path || path[0] != '/' ||
            !clean_text(path, false, false) || port == 0) {
                r = -EINVAL;
                goto out;
        }
        for (const char *const *h = extra_headers; h && *h; h++) {
                const char *colon = strchr(*h, ':');
                if (!colon || colon == *h || !clean_text(*h, true, true)) {
                        r = -EINVAL;
                        goto out;
                }
                for (const char *c = *h; c < colon; c++)
                        if (*c == ' ' || *c == '\t') {
                                r = -EINVAL;
                                goto out;
                        }
        }
        r = ws_key_new(key);
        if (r < 0)
                goto out;

        hlen = strlen(host);
        bracket = strchr(host, ':') && host[0] != '[';
        if (host[0] == '[' ? host[hlen - 1] != ']' || !ipv6_literal(host + 1, hlen - 2)
                           : bracket && !ipv6_literal(host, hlen)) {
                r = -EINVAL;
                goto out;
        }
        default_port = tls ? port == 443 : port == 80;
        r = buf_appendf(out, "GET %s HTTP/1.1\r\nHost: %s%s%s", path, bracket ? "[" : "", host,
                        bracket ? "]" : "");
        if (r < 0)
                goto out;
        if (!default_port) {
                r = buf_appendf(out, ":%u", (unsigned)port);
                if (r < 0)
                        goto out;
        }
        r = buf_appendf(out,
                        "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n",
                        key);
        if (r < 0)
                goto out;
        for (const char *const *h = extra_headers; h && *h; h++) {
                r = buf_appendf(out, "%s\r\n", *h);
                if (r < 0)
                        goto out;
        }
        r = buf_append_str(out, "\r\n");
        if (r < 0)
                goto out;
        memcpy(ret_key, key, sizeof key);
out:
        return r;
}

/* ---- handshake: response ---- */

typedef enum hs_state {
        HS_HEADERS,
        HS_BODY,
        HS_DONE,
        HS_FAILED,
} hs_state;

struct ws_handshake {
        hs_state state;
        int error;
        int status;
        char accept[WS_ACCEPT_LEN + 1];
        char reason[65];
        buf in;               /* status line and headers */
        size_t scanned;       /* bytes of `in` already checked by hs_scan() */
        size_t line_start;    /* start of the line being received */
        size_t body_want;     /* HS_BODY: excerpt bytes still awaited */
        char body[WS_EXCERPT_MAX + 1];
        size_t body_len;
        char err[512];
};

int ws_handshake_new(const char *key, ws_handshake **ret_handshake) {
        ws_handshake *h;
        int r;

        h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        r = ws_accept_for_key(key, h->accept);
        if (r < 0) {
                free(h);
                return r;
        }
        buf_init(&h->in, WS_HANDSHAKE_MAX);
        *ret_handshake = h;
        return 0;
}

ws_handshake *ws_handshake_free(ws_handshake *h) {
        if (!h)
                return NULL;
        buf_done(&h->in);
        free(h);
        return NULL;
}

int ws_handshake_status(const ws_handshake *h) {
        return h->status;
}

const char *ws_handshake_error(const ws_handshake *h) {
        return h->err;
}

static int hs_fail(ws_handshake *h, int error, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static int hs_fail(ws_handshake *h, int error, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(h->err, sizeof h->err, fmt, ap);
        va_end(ap);
        h->state = HS_FAILED;
        h->error = error;
        buf_done(&h->in);
        return error;
}

/* Fails with the status line and the body excerpt gathered so far. */
static int hs_fail_status(ws_handshake *h) {
        char excerpt[WS_EXCERPT_MAX + 1];

        sanitize(excerpt, h->body, h->body_len, WS_EXCERPT_MAX);
        return hs_fail(h, -EPROTO, "HTTP %d%s%s%s%s", h->status, h->reason[0] ? " " : "",
                       h->reason, excerpt[0] ? ": " : "", excerpt);
}

/* Index just past the empty line ending the headers, searching from
 * `from`, or 0 when not there yet. Lines end in LF or CRLF. */
static size_t find_header_end(const char *s, size_t len, size_t from) {
        for (size_t i = from; i < len; i++) {
                if (s[i] != '\n')
                        continue;
                if (i + 1 < len && s[i + 1] == '\n')
                        return i + 2;
                if (i + 2 < len && s[i + 1] == '\r' && s[i + 2] == '\n')
                        return i + 3;
        }
        return 0;
}

static bool is_tchar(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* True when the comma-separated list value contains token (ASCII case-insensitive). */
static bool list_has_token(const char *v, size_t vlen, const char *token) {
        size_t tlen = strlen(token), i = 0;

        while (i < vlen) {
                size_t s, e;
                while (i < vlen && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
                        i++;
                s = i;
                while (i < vlen && v[i] != ',')
                        i++;
                e = i;
                while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
                        e--;
                if (e - s == tlen && strncasecmp(v + s, token, tlen) == 0)
                        return true;
        }
        return false;
}

typedef struct hs_headers {
        bool upgrade_ok, connection_ok, extensions;
        int accept_seen;
        bool accept_ok;
        bool have_length;
        uint64_t content_length;
} hs_headers;

/* Checks the syntax of one line of the response head (without its line
 * end): the status line when first (and takes the status and reason from
 * it), else a header line or the empty line. Returns 0 or fails h. */
static int hs_line_syntax(ws_handshake *h, const char *line, size_t ll, bool first) {
        const char *colon;

        if (first) {
                /* HTTP/1.x SP 3DIGIT [SP reason] */
                if (ll < 12 || strncmp(line, "HTTP/1.", 7) != 0 || line[7] < '0' || line[7] > '9' ||
                    line[8] != ' ' || line[9] < '1' || line[9] > '5' || line[10] < '0' || line[10] > '9' ||
                    line[11] < '0' || line[11] > '9' || (ll > 12 && line[12] != ' '))
                        return hs_fail(h, -EBADMSG, "malformed HTTP status line");
                h->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
                if (ll > 13)
                        sanitize(h->reason, line + 13, ll - 13, sizeof h->reason - 1);
                return 0;
        }
        if (ll == 0)
                return 0;
        if (line[0] == ' ' || line[0] == '\t')
                return hs_fail(h, -EBADMSG, "folded HTTP header line");
        colon = memchr(line, ':', ll);
        if (!colon || colon == line)
                return hs_fail(h, -EBADMSG, "malformed HTTP header line");
        for (const char *c = line; c < colon; c++)
                if (!is_tchar(*c))
                        return hs_fail(h, -EBADMSG, "malformed HTTP header name");
        return 0;
}

/* Checks the bytes s[h->scanned..len) of the response head as they arrive,
 * so that a corrupted upgrade reply fails the attempt at once instead of
 * leaving the parser waiting for an end of headers that never comes (one
 * flipped bit in the final "\r\n\r\n" does that: the WebSocket frames that
 * follow never contain an empty line). Fails on a control byte, on a CR not
 * followed by LF, on a first line that cannot become an HTTP/1.x status
 * line, and on each complete line whose syntax is wrong. A CR at the very
 * end waits for the next byte. Returns 0 or fails h. */
static int hs_scan(ws_handshake *h, const char *s, size_t len) {
        static const char prefix[] = "HTTP/1.";
        size_t i;
        int r;

        for (i = h->scanned; i < len; i++) {
                unsigned char c = (unsigned char)s[i];

                if (h->line_start == 0 && i < sizeof prefix - 1 && c != (unsigned char)prefix[i])
                        return hs_fail(h, -EBADMSG, "malformed HTTP status line");
                if (c == '\n') {
                        size_t ll = i - h->line_start;
                        if (ll > 0 && s[i - 1] == '\r')
                                ll--;
                        r = hs_line_syntax(h, s + h->line_start, ll, h->line_start == 0);
                        if (r < 0)
                                return r;
                        h->line_start = i + 1;
                } else if (c == '\r') {
                        if (i + 1 == len)
                                break;
                        if (s[i + 1] != '\n')
                                return hs_fail(h, -EBADMSG, "CR without LF in the HTTP response head");
                } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
                        return hs_fail(h, -EBADMSG, "control byte 0x%02x in the HTTP response head", c);
                }
        }
        h->scanned = i;
        return 0;
}

/* Parses the status line and headers in s (ending with the empty line). */
static int hs_parse(ws_handshake *h, char *s, size_t len, hs_headers *hd) {
        char *line = s, *end = s + len;
        bool first = true;
        int r;

        while (line < end) {
                char *nl = memchr(line, '\n', (size_t)(end - line));
                char *le = nl ? nl : end;
                size_t ll;

                if (le > line && le[-1] == '\r')
                        le--;
                ll = (size_t)(le - line);
                r = hs_line_syntax(h, line, ll, first);
                if (r < 0)
                        return r;
                if (first) {
                        first = false;
                } else if (ll > 0) {
                        char *colon = memchr(line, ':', ll);
                        const char *v;
                        size_t nlen, vlen;

                        nlen = (size_t)(colon - line);
                        v = colon + 1;
                        vlen = (size_t)(le - v);
                        while (vlen > 0 && (*v == ' ' || *v == '\t')) {
                                v++;
                                vlen--;
                        }
                        while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
                                vlen--;
                        if (nlen == 7 && strncasecmp(line, "upgrade", 7) == 0) {
                                hd->upgrade_ok = vlen == 9 && strncasecmp(v, "websocket", 9) == 0;
                        } else if (nlen == 10 && strncasecmp(line, "connection", 10) == 0) {
                                hd->connection_ok = hd->connection_ok ||
                                                    list_has_token(v, vlen, "upgrade");
                        } else if (nlen == 20 && strncasecmp(line, "sec-websocket-accept", 20) == 0) {
                                hd->accept_seen++;
                                hd->accept_ok = vlen == WS_ACCEPT_LEN &&
                                                memcmp(v, h->accept, WS_ACCEPT_LEN) == 0;
                        } else if (nlen == 24 &&
                                   strncasecmp(line, "sec-websocket-extensions", 24) == 0) {
                                hd->extensions = hd->extensions || vlen > 0;
                        } else if (nlen == 14 && strncasecmp(line, "content-length", 14) == 0) {
                                char tmp[24];
                                uint64_t cl;
                                if (vlen == 0 || vlen >= sizeof tmp)
                                        return hs_fail(h, -EBADMSG, "bad Content-Length");
                                memcpy(tmp, v, vlen);
                                tmp[vlen] = '\0';
                                if (util_parse_u64(tmp, &cl) < 0)
                                        return hs_fail(h, -EBADMSG, "bad Content-Length");
                                hd->have_length = true;
                                hd->content_length = cl;
                        }
                }
                line = nl ? nl + 1 : end;
        }
        return 0;
}

static void hs_take_body(ws_handshake *h, const char *data, size_t len) {
        size_t n = len < h->body_want ? len : h->body_want;

        memcpy(h->body + h->body_len, data, n);
        h->body_len += n;
        h->body_want -= n;
}

int ws_handshake_feed(ws_handshake *h, const void *data, size_t len, size_t *ret_used) {
        hs_headers hd = { 0 };
        size_t old, add, end, used;
        int r;

        switch (h->state) {
        case HS_FAILED:
                return h->error;
        case HS_DONE:
                *ret_used = 0;
                return 1;
        case HS_BODY:
                hs_take_body(h, data, len);
                if (h->body_want == 0)
                        return hs_fail_status(h);
                *ret_used = len;
                return 0;
        case HS_HEADERS:
                break;
        }

        old = h->in.len;
        add = WS_HANDSHAKE_MAX - old;
        if (add > len)
                add = len;
        if (add > 0) {
                r = buf_append(&h->in, data, add);
                if (r < 0)
                        return hs_fail(h, r, "out of memory");
        }
        end = find_header_end(h->in.data ? h->in.data : "", h->in.len, old >= 2 ? old - 2 : 0);
        if (h->in.len > 0) {
                r = hs_scan(h, h->in.data, end ? end : h->in.len);
                if (r < 0)
                        return r;
        }
        if (end == 0) {
                if (h->in.len >= WS_HANDSHAKE_MAX)
                        return hs_fail(h, -E2BIG, "HTTP response headers over %u bytes",
                                       WS_HANDSHAKE_MAX);
                *ret_used = len;
                return 0;
        }
        used = end - old;
        h->in.len = end;
        r = hs_parse(h, h->in.data, end, &hd);
        if (r < 0)
                return r;
        buf_done(&h->in);

        if (h->status != 101) {
                if (hd.have_length) {
                        h->body_want = hd.content_length < WS_EXCERPT_MAX ? hd.content_length
                                                                          : WS_EXCERPT_MAX;
                        hs_take_body(h, (const char *)data + used, len - used);
                        if (h->body_want > 0) {
                                h->state = HS_BODY;
                                *ret_used = len;
                                return 0;
                        }
                } else {
                        h->body_want = WS_EXCERPT_MAX;
                        hs_take_body(h, (const char *)data + used, len - used);
                }
                return hs_fail_status(h);
        }
        if (!hd.upgrade_ok)
                return hs_fail(h, -EPROTO, "handshake response without Upgrade: websocket");
        if (!hd.connection_ok)
                return hs_fail(h, -EPROTO, "handshake response without Connection: upgrade");
        if (hd.accept_seen != 1 || !hd.accept_ok)
                return hs_fail(h, -EPROTO, "handshake response with %s Sec-WebSocket-Accept",
                               hd.accept_seen == 0 ? "no" : "a wrong");
        if (hd.extensions)
                return hs_fail(h, -EPROTO, "server selected an extension that was not offered");
        h->state = HS_DONE;
        *ret_used = used;
        return 1;
}

int ws_handshake_eof(ws_handshake *h) {
        switch (h->state) {
        case HS_FAILED:
                return h->error;
        case HS_DONE:
                return 0;
        case HS_BODY:
                return hs_fail_status(h);
        case HS_HEADERS:
                break;
        }
        return hs_fail(h, -ECONNRESET, "connection closed %s the handshake response",
                       h->in.len == 0 ? "before" : "during");
}

/* ---- frames: encoding ---- */

static bool opcode_known(unsigned op) {
        return op <= 2 || (op >= 8 && op <= 10);
}

int ws_frame_write(buf *out, ws_opcode opcode, bool fin, bool mask, const void *data,
                   size_t len) {
        unsigned char hdr[14], key[4] = { 0 };
        const unsigned char *src = data;
        size_t hlen = 2;
        unsigned char *dst;
        int r;

        if (!opcode_known((unsigned)opcode) ||
            ((opcode & 0x8) && (len > WS_CONTROL_MAX || !fin)) || (len > 0 && !data)) {
                r = -EINVAL;
                goto out;
        }
        hdr[0] = (unsigned char)((fin ? 0x80 : 0) | (unsigned)opcode);
        hdr[1] = mask ? 0x80 : 0;
        if (len < 126) {
                hdr[1] |= (unsigned char)len;
        } else if (len <= 0xFFFF) {
                hdr[1] |= 126;
                hdr[2] = (unsigned char)(len >> 8);
                hdr[3] = (unsigned char)len;
                hlen = 4;
        } else {
                hdr[1] |= 127;
                for (int i = 0; i < 8; i++)
                        hdr[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
                hlen = 10;
        }
        if (mask) {
                r = fill_random(key, sizeof key);
                if (r < 0)
                        goto out;
                memcpy(hdr + hlen, key, 4);
                hlen += 4;
        }
        r = buf_reserve(out, hlen + len);
        if (r < 0)
                goto out;
        dst = (unsigned char *)out->data + out->len;
        memcpy(dst, hdr, hlen);
        dst += hlen;
        if (mask) {
                for (size_t i = 0; i < len; i++)
                        dst[i] = src[i] ^ key[i & 3];
        } else if (len > 0) {
                memcpy(dst, src, len);
        }
        out->len += hlen + len;
        out->data[out->len] = '\0';
out:
        return r;
}

int ws_frame_encode(buf *out, ws_opcode opcode, const void *data, size_t len) {
        return ws_frame_write(out, opcode, true, true, data, len);
}

int ws_close_encode(buf *out, uint16_t code, const char *reason) {
        unsigned char payload[WS_CONTROL_MAX];
        size_t rlen = reason ? strlen(reason) : 0;

        if (code == 0)
                return rlen ? -EINVAL : ws_frame_encode(out, WS_OP_CLOSE, NULL, 0);
        if (!ws_close_code_valid(code) || rlen > WS_CONTROL_MAX - 2 ||
            !ws_utf8_valid(reason ? reason : "", rlen))
                return -EINVAL;
        payload[0] = (unsigned char)(code >> 8);
        payload[1] = (unsigned char)code;
        if (rlen)
                memcpy(payload + 2, reason, rlen);
        return ws_frame_encode(out, WS_OP_CLOSE, payload, rlen + 2);
}

/* ---- frames: decoding ---- */

struct ws_parser {
        size_t max_message;
        bool check_utf8;
        bool server;

        buf in;               /* received bytes; unparsed from pos */
        size_t pos;
        size_t in_cap;

        bool in_frag;         /* a fragmented data message is being reassembled */
        ws_opcode frag_op;
        buf frag;

        buf out;              /* payload of the message last returned */

        int error;
        uint16_t close_code;
        char err[256];
};

int ws_parser_new(const ws_parser_options *opts, ws_parser **ret_parser) {
        ws_parser *p = calloc(1, sizeof *p);

        if (!p)
                return -ENOMEM;
        p->max_message = opts && opts->max_message ? opts->max_message : WS_MESSAGE_MAX_DEFAULT;
        if (p->max_message > SIZE_MAX / 4)
                p->max_message = SIZE_MAX / 4;
        p->check_utf8 = !(opts && opts->no_utf8_check);
        p->server = opts && opts->server;
        p->in_cap = 2 * p->max_message + WS_FEED_SLACK;
        buf_init(&p->in, 0);
        buf_init(&p->frag, 0);
        buf_init(&p->out, 0);
        *ret_parser = p;
        return 0;
}

ws_parser *ws_parser_free(ws_parser *p) {
        if (!p)
                return NULL;
        buf_done(&p->in);
        buf_done(&p->frag);
        buf_done(&p->out);
        free(p);
        return NULL;
}

const char *ws_parser_error(const ws_parser *p) {
        return p->err;
}

uint16_t ws_parser_close_code(const ws_parser *p) {
        return p->close_code;
}

static int ps_fail(ws_parser *p, int error, uint16_t code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static int ps_fail(ws_parser *p, int error, uint16_t code, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(p->err, sizeof p->err, fmt, ap);
        va_end(ap);
        p->error = error;
        p->close_code = code;
        buf_done(&p->in);
        buf_done(&p->frag);
        p->pos = 0;
        p->in_frag = false;
        return error;
}

int ws_parser_feed(ws_parser *p, const void *data, size_t len) {
        int r;

        if (p->error)
                return p->error;
        if (p->pos > 0) {
                buf_consume(&p->in, p->pos);
                p->pos = 0;
        }
        if (len > p->in_cap - p->in.len)
                return -ENOBUFS;
        if (len == 0)
                return 0;
        r = buf_append(&p->in, data, len);
        if (r < 0)
                return ps_fail(p, r, WS_CLOSE_INTERNAL_ERROR, "out of memory");
        return 0;
}

static int parse_close(ws_parser *p, ws_message *m) {
        if (m->len == 0) {
                m->close_code = WS_CLOSE_NO_STATUS;
                m->close_reason = "";
                return 0;
        }
        if (m->len == 1)
                return ps_fail(p, -EPROTO, WS_CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload");
        m->close_code = (uint16_t)(((unsigned char)m->data[0] << 8) | (unsigned char)m->data[1]);
        if (!ws_close_code_valid(m->close_code))
                return ps_fail(p, -EPROTO, WS_CLOSE_PROTOCOL_ERROR, "close frame with invalid status %u",
                               (unsigned)m->close_code);
        if (p->check_utf8 && !ws_utf8_valid(m->data + 2, m->len - 2))
                return ps_fail(p, -EILSEQ, WS_CLOSE_INVALID_DATA, "close reason is not valid UTF-8");
        m->close_reason = m->data + 2;
        return 0;
}

static void swap_buf(buf *a, buf *b) {
        buf t = *a;
        *a = *b;
        *b = t;
}

int ws_parser_next(ws_parser *p, ws_message *ret_msg) {
        ws_message m = { 0 };
        int r;

        if (p->error)
                return p->error;
        buf_reset(&p->out);

        for (;;) {
                unsigned char *f = (unsigned char *)p->in.data + p->pos;
                size_t avail = p->in.len - p->pos, hlen = 2;
                unsigned op, len7;
                bool fin, masked;
                uint64_t plen;
                unsigned char *payload;

                if (avail < 2)
                        return 0;
                fin = f[0] & 0x80;
                op = f[0] & 0x0F;
                masked = f[1] & 0x80;
                len7 = f[1] & 0x7F;
                if (f[0] & 0x70)
                        return ps_fail(p, -EPROTO, WS_CLOSE_PROTOCOL_ERROR,
                                       "frame with reserved bits set (first byte 0x%02x)", f[0]);
                if (!opcode_known(op))
                        return ps_fail(p, -EPROTO, WS_CLOSE_PROTOCOL_ERROR, "frame with unknown opcode %u", op);
                if (masked != p->server)
                        return ps_fail(p, -EPROTO, WS_CLOSE_PROTOCOL_ERROR,
                                       p->server ? "unmasked frame from a client"
                                                 : "masked frame from the server");
                if (op & 0x8) {
                        if (!fin)
                                return ps_fail(p, -EPROTO, WS_CLOSE_PROTOCOL_ERROR, "fragmented control frame");
                        if (len7 > WS_CONTROL_MAX)
                                return ps_fail(p, -EPROTO, WS_CLOSE_PROTOCOL_ERROR,
                                               "control frame payload over 125 bytes");
                } else if (op == WS_OP_CONT && !p->in_frag) {
                        return ps_fail(p, -EPROTO, WS_CLOSE_PROTOCOL_ERROR,
                                       "continuation frame without a message to continue");
                } else if (op != WS_OP_CONT && p->in_frag) {
                        return ps_fail(p, -EPROTO, WS_CLOSE_PROTOCOL_ERROR,
                                       "new data frame inside a fragmented message");
                }

                if (len7 == 126) {
                        if (avail < 4)
                                return 0;
                        plen = ((uint64_t)f[2] << 8) | f[3];
                        hlen = 4;
                } else if (len7 == 127) {
                        if (avail < 10)
                                return 0;
                        if (f[2] & 0x80)
                                return ps_fail(p, -EPROTO, WS_CLOSE_PROTOCOL_ERROR,
                                               "frame length with the most significant bit set");
                        plen = 0;
                        for (int i = 0; i < 8; i++)
                                plen = (plen << 8) | f[2 + i];
                        hlen = 10;
                } else {
                        plen = len7;
                }
                if (!(op & 0x8)) {
                        size_t have = p->in_frag ? p->frag.len : 0;
                        if (plen > p->max_message - have)
                                return ps_fail(p, -EMSGSIZE, WS_CLOSE_TOO_BIG,
                                               "message over %zu bytes", p->max_message);
                }
                if (masked)
                        hlen += 4;
                if (avail < hlen || avail - hlen < plen)
                        return 0;

                payload = f + hlen;
                if (masked) {
                        const unsigned char *key = f + hlen - 4;
                        for (size_t i = 0; i < plen; i++)
                                payload[i] ^= key[i & 3];
                }
                p->pos += hlen + (size_t)plen;

                if (op & 0x8) {
                        r = buf_append(&p->out, payload, (size_t)plen);
                        if (r < 0)
                                return ps_fail(p, r, WS_CLOSE_INTERNAL_ERROR, "out of memory");
                        m.opcode = (ws_opcode)op;
                        break;
                }
                if (!fin || p->in_frag) {
                        if (!p->in_frag) {
                                p->in_frag = true;
                                p->frag_op = (ws_opcode)op;
                                buf_reset(&p->frag);
                        }
                        r = buf_append(&p->frag, payload, (size_t)plen);
                        if (r < 0)
                                return ps_fail(p, r, WS_CLOSE_INTERNAL_ERROR, "out of memory");
                        if (!fin)
                                continue;
                        p->in_frag = false;
                        m.opcode = p->frag_op;
                        swap_buf(&p->out, &p->frag);
                        buf_reset(&p->frag);
                        break;
                }
                r = buf_append(&p->out, payload, (size_t)plen);
                if (r < 0)
                        return ps_fail(p, r, WS_CLOSE_INTERNAL_ERROR, "out of memory");
                m.opcode = (ws_opcode)op;
                break;
        }

        m.data = p->out.data ? p->out.data : "";
        m.len = p->out.len;
        if (m.opcode == WS_OP_CLOSE) {
                r = parse_close(p, &m);
                if (r < 0)
                        return r;
        } else if (m.opcode == WS_OP_TEXT && p->check_utf8 && !ws_utf8_valid(m.data, m.len)) {
                return ps_fail(p, -EILSEQ, WS_CLOSE_INVALID_DATA, "text message is not valid UTF-8");
        }
        *ret_msg = m;
        return 1;
}
