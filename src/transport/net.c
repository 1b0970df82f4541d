#include "transport/net.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "core/buf.h"
#include "core/util.h"

#define DNS_POLL_MAX_MS 50u
#define ATTEMPT_MIN_MS 500u

typedef struct net_ops net_ops;

/* Where a connection is. Transitions only go down this list, except that
 * ST_FAILED and ST_EOF can be entered from any state before them. */
typedef enum conn_state {
        ST_START,       /* waiting for the first turn */
        ST_RESOLVING,   /* getaddrinfo_a in flight, polled by step_timer */
        ST_CONNECTING,  /* non-blocking connect() to one address */
        ST_PROXY_SEND,  /* writing CONNECT to the proxy */
        ST_PROXY_RECV,  /* reading the proxy's reply */
        ST_HANDSHAKE,   /* ops->connect (TLS handshake) */
        ST_OPEN,
        ST_EOF,         /* peer closed; NET_EV_CLOSED pending or reported */
        ST_FAILED,      /* NET_EV_ERROR pending or reported */
} conn_state;

/* One getaddrinfo_a() request. It lives apart from the connection because
 * glibc writes into it until it completes, which may be after the connection
 * is gone: such requests are parked on an orphan list and reaped later. */
typedef struct net_dns {
        struct gaicb req;
        struct addrinfo hints;
        char service[8];
        char *name;
        struct net_dns *next;
} net_dns;

static net_dns *dns_orphans;

typedef struct proxy_url {
        char *host;  /* without brackets */
        uint16_t port;
        char *auth;  /* base64("user:pass"), or NULL */
} proxy_url;

/* The transport operations. The TCP connection (and proxy tunnel) is
 * established by the common code; connect finishes the transport on top of
 * it. All return -EAGAIN (with the wanted loop events stored in the
 * connection) when they must wait; other failures go through conn_fail(). */
struct net_ops {
        const char *name;
        int (*connect)(net_conn *c);
        ssize_t (*read)(net_conn *c, void *data, size_t len);
        ssize_t (*write)(net_conn *c, const void *data, size_t len);
        /* Releases the transport state; graceful: the stream is healthy and
         * may be told goodbye (TLS close_notify). Does not close the fd. */
        void (*close)(net_conn *c, bool graceful);
};

struct net_conn {
        loop *l;
        net_cb cb;
        void *userdata;
        const net_ops *ops;

        /* Options. */
        char *host;             /* target, without brackets */
        uint16_t port;
        bool host_is_ip;
        bool insecure;
        char *ca_file;
        bool use_proxy;
        proxy_url proxy;
        unsigned timeout_ms;
        size_t max_pending;
        char target[300];       /* "host:port" for messages */
        char route[640];        /* target, " via proxy host:port" when proxied */

        conn_state state;
        int fd;
        loop_io *io;
        loop_timer *ev_timer;       /* 0 ms: start, and the terminal events */
        loop_timer *deadline_timer; /* connect timeout */
        loop_timer *step_timer;     /* resolver polling, per-address timeout */
        uint64_t deadline_at;
        unsigned poll_ms;

        net_dns *dns;
        struct addrinfo *ai_list, *ai_next;
        size_t ai_left;
        int last_err;

        buf ctl;                /* proxy request, then reply */
        size_t ctl_pos;

        unsigned hs_wants, read_wants, write_wants;

        SSL_CTX *ssl_ctx;
        SSL *ssl;
        bool tls_up;

        buf out;                /* pending writes, from out_pos */
        size_t out_pos;

        bool reported;          /* the terminal event was delivered */
        unsigned in_cb;
        bool doomed;            /* net_conn_free() was called */

        int error;
        char errmsg[512];
        char peer[64];
        char last_addr[64];     /* address of the last connect attempt */
};

/* ---- helpers ---- */

static const char *state_name(conn_state s) {
        switch (s) {
        case ST_START:
        case ST_RESOLVING:
                return "resolving";
        case ST_CONNECTING:
                return "connecting";
        case ST_PROXY_SEND:
        case ST_PROXY_RECV:
                return "waiting for the proxy";
        case ST_HANDSHAKE:
                return "TLS handshake";
        default:
                return "connected";
        }
}

static size_t pending_len(const net_conn *c) {
        return c->out.len - c->out_pos;
}

static void format_hostport(char *out, size_t size, const char *host, uint16_t port) {
        bool v6 = strchr(host, ':') != NULL;
        snprintf(out, size, "%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "", (unsigned)port);
}

static void format_sockaddr(char *out, size_t size, const struct sockaddr *sa) {
        char a[INET6_ADDRSTRLEN] = "?";
        uint16_t port = 0;

        if (sa->sa_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
                inet_ntop(AF_INET, &in->sin_addr, a, sizeof a);
                port = ntohs(in->sin_port);
        } else if (sa->sa_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
                inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof a);
                port = ntohs(in6->sin6_port);
        }
        format_hostport(out, size, a, port);
}

static bool is_ip_literal(const char *s) {
        unsigned char tmp[sizeof(struct in6_addr)];
        return inet_pton(AF_INET, s, tmp) == 1 || inet_pton(AF_INET6, s, tmp) == 1;
}

/* Copies host without surrounding brackets. Returns 0, -EINVAL or -ENOMEM. */
static int host_dup(const char *h, char **ret) {
        size_t len = strlen(h);
        char *d;

        if (len == 0 || (h[0] == '[' && (len < 3 || h[len - 1] != ']')))
                return -EINVAL;
        d = h[0] == '[' ? strndup(h + 1, len - 2) : strdup(h);
        if (!d)
                return -ENOMEM;
        *ret = d;
        return 0;
}

static bool host_chars_ok(const char *h) {
        for (; *h; h++) {
                unsigned char ch = (unsigned char)*h;
                if (ch <= 0x20 || ch == 0x7f || strchr("/?#@[]\\\"", ch))
                        return false;
        }
        return true;
}

/* ---- proxy URLs ---- */

static int hexval(char ch) {
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        if (ch >= 'a' && ch <= 'f')
                return ch - 'a' + 10;
        if (ch >= 'A' && ch <= 'F')
                return ch - 'A' + 10;
        return -1;
}

/* Percent-decodes s[0..len) into a new string; NULL when malformed. */
static char *pct_decode(const char *s, size_t len) {
        char *out = malloc(len + 1);
        size_t o = 0;

        if (!out)
                return NULL;
        for (size_t i = 0; i < len; i++) {
                if (s[i] == '%') {
                        int hi = i + 2 < len ? hexval(s[i + 1]) : -1;
                        int lo = i + 2 < len ? hexval(s[i + 2]) : -1;
                        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                                free(out);
                                return NULL;
                        }
                        out[o++] = (char)(hi * 16 + lo);
                        i += 2;
                } else {
                        out[o++] = s[i];
                }
        }
        out[o] = '\0';
        return out;
}

static void proxy_url_done(proxy_url *p) {
        free(p->host);
        free(p->auth);
        p->host = NULL;
        p->auth = NULL;
}

static int parse_port(const char *s, size_t len, uint16_t *ret) {
        char tmp[8];
        int64_t v;

        if (len == 0 || len >= sizeof tmp)
                return -EINVAL;
        memcpy(tmp, s, len);
        tmp[len] = '\0';
        if (tmp[0] < '0' || tmp[0] > '9' || util_parse_i64(tmp, 1, 65535, &v) < 0)
                return -EINVAL;
        *ret = (uint16_t)v;
        return 0;
}

static int proxy_parse(const char *url, proxy_url *ret) {
        proxy_url p = { .port = 1080 };
        const char *a = url, *end, *at, *hp, *hend, *colon = NULL;
        char *user = NULL, *pass = NULL, *plain = NULL;
        int r = -EINVAL;

        if (strncasecmp(a, "http://", 7) == 0)
                a += 7;
        else if (strstr(a, "://"))
                goto out;
        end = a + strcspn(a, "/?#");
        for (const char *s = a; s < end; s++)
                if ((unsigned char)*s <= 0x20 || *s == 0x7f)
                        goto out;
        at = NULL;
        for (const char *s = a; s < end; s++)
                if (*s == '@')
                        at = s;
        hp = a;
        if (at) {
                const char *uc = memchr(a, ':', (size_t)(at - a));
                user = pct_decode(a, (size_t)((uc ? uc : at) - a));
                pass = uc ? pct_decode(uc + 1, (size_t)(at - uc - 1)) : strdup("");
                if (!user || !pass)
                        goto out;
                hp = at + 1;
        }
        if (*hp == '[') {
                const char *cb = memchr(hp, ']', (size_t)(end - hp));
                if (!cb)
                        goto out;
                p.host = strndup(hp + 1, (size_t)(cb - hp - 1));
                hend = cb + 1;
                if (hend < end) {
                        if (*hend != ':')
                                goto out;
                        colon = hend;
                }
                if (!p.host || !is_ip_literal(p.host) || !strchr(p.host, ':'))
                        goto out;
        } else {
                colon = memchr(hp, ':', (size_t)(end - hp));
                hend = colon ? colon : end;
                p.host = strndup(hp, (size_t)(hend - hp));
                if (!p.host || !*p.host || !host_chars_ok(p.host) || strchr(p.host, ':'))
                        goto out;
        }
        if (colon && parse_port(colon + 1, (size_t)(end - colon - 1), &p.port) < 0)
                goto out;
        if (at) {
                size_t ulen = strlen(user), plen = strlen(pass);
                plain = malloc(ulen + plen + 2);
                p.auth = malloc(4 * ((ulen + plen + 1 + 2) / 3) + 1);
                if (!plain || !p.auth) {
                        r = -ENOMEM;
                        goto out;
                }
                memcpy(plain, user, ulen);
                plain[ulen] = ':';
                memcpy(plain + ulen + 1, pass, plen);
                util_base64_encode(plain, ulen + plen + 1, p.auth);
        }
        *ret = p;
        p = (proxy_url){ 0 };
        r = 0;
out:
        if (plain) {
                explicit_bzero(plain, strlen(user) + strlen(pass) + 1);
                free(plain);
        }
        free(user);
        free(pass);
        proxy_url_done(&p);
        return r;
}

bool net_proxy_valid(const char *url) {
        proxy_url p;

        if (!url || proxy_parse(url, &p) < 0)
                return false;
        proxy_url_done(&p);
        return true;
}

/* ---- no_proxy ---- */

typedef struct ipaddr {
        int family;             /* AF_INET, AF_INET6 or 0 */
        unsigned char a[16];
} ipaddr;

static bool parse_ip(const char *s, size_t len, ipaddr *ret) {
        char tmp[INET6_ADDRSTRLEN + 1];

        if (len == 0 || len >= sizeof tmp)
                return false;
        memcpy(tmp, s, len);
        tmp[len] = '\0';
        if (inet_pton(AF_INET, tmp, ret->a) == 1) {
                ret->family = AF_INET;
                return true;
        }
        if (inet_pton(AF_INET6, tmp, ret->a) == 1) {
                ret->family = AF_INET6;
                return true;
        }
        return false;
}

static bool prefix_match(const ipaddr *a, const ipaddr *net, unsigned bits) {
        unsigned full = bits / 8, rest = bits % 8;

        if (memcmp(a->a, net->a, full) != 0)
                return false;
        if (rest == 0)
                return true;
        return ((a->a[full] ^ net->a[full]) & (0xFF00u >> rest) & 0xFF) == 0;
}

static bool no_proxy_entry_match(const char *host, size_t hlen, const ipaddr *hip,
                                 uint16_t port, const char *e, size_t elen) {
        const char *name = e, *slash;
        size_t nlen = elen;
        uint16_t eport = 0;
        ipaddr eip;

        if (e[0] == '[') {
                const char *cb = memchr(e, ']', elen);
                size_t rest;
                if (!cb)
                        return false;
                name = e + 1;
                nlen = (size_t)(cb - name);
                rest = elen - (size_t)(cb + 1 - e);
                if (rest > 0 && (cb[1] != ':' || parse_port(cb + 2, rest - 1, &eport) < 0))
                        return false;
        } else {
                const char *c1 = memchr(e, ':', elen);
                if (c1 && !memchr(c1 + 1, ':', elen - (size_t)(c1 + 1 - e))) {
                        nlen = (size_t)(c1 - e);
                        if (parse_port(c1 + 1, elen - nlen - 1, &eport) < 0)
                                return false;
                }
        }
        if (eport && eport != port)
                return false;
        if (nlen == 1 && name[0] == '*')
                return true;

        slash = memchr(name, '/', nlen);
        if (slash) {
                char tmp[4];
                size_t blen = nlen - (size_t)(slash + 1 - name);
                int64_t bits;
                if (!hip->family || !parse_ip(name, (size_t)(slash - name), &eip) ||
                    eip.family != hip->family || blen == 0 || blen >= sizeof tmp)
                        return false;
                memcpy(tmp, slash + 1, blen);
                tmp[blen] = '\0';
                if (util_parse_i64(tmp, 0, eip.family == AF_INET ? 32 : 128, &bits) < 0)
                        return false;
                return prefix_match(hip, &eip, (unsigned)bits);
        }
        if (parse_ip(name, nlen, &eip))
                return hip->family == eip.family &&
                       memcmp(hip->a, eip.a, eip.family == AF_INET ? 4 : 16) == 0;
        if (hip->family)
                return false;

        if (nlen >= 2 && name[0] == '*' && name[1] == '.') {
                name += 2;
                nlen -= 2;
        } else if (nlen >= 1 && name[0] == '.') {
                name++;
                nlen--;
        }
        while (nlen > 0 && name[nlen - 1] == '.')
                nlen--;
        if (nlen == 0)
                return false;
        if (hlen == nlen && strncasecmp(host, name, nlen) == 0)
                return true;
        return hlen > nlen && host[hlen - nlen - 1] == '.' &&
               strncasecmp(host + hlen - nlen, name, nlen) == 0;
}

static bool no_proxy_match(const char *host, uint16_t port, const char *no_proxy) {
        const char *h = host, *p = no_proxy;
        size_t hlen = strlen(host);
        ipaddr hip = { 0 };

        if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
                h++;
                hlen -= 2;
        }
        while (hlen > 0 && h[hlen - 1] == '.')
                hlen--;
        if (hlen == 0)
                return false;
        parse_ip(h, hlen, &hip);

        while (*p) {
                size_t n;
                while (*p == ',' || *p == ' ' || *p == '\t')
                        p++;
                n = strcspn(p, ", \t");
                if (n > 0 && no_proxy_entry_match(h, hlen, &hip, port, p, n))
                        return true;
                p += n;
        }
        return false;
}

const char *net_proxy_for(const char *host, uint16_t port, bool tls, const char *http_proxy,
                          const char *https_proxy, const char *no_proxy) {
        const char *proxy = tls ? https_proxy : http_proxy;

        if (!proxy || !*proxy || !host)
                return NULL;
        if (no_proxy && no_proxy_match(host, port, no_proxy))
                return NULL;
        return proxy;
}

/* ---- the connection core ---- */

static void on_io(loop_io *io, int fd, unsigned events, void *userdata);

static void conn_destroy(net_conn *c);

/* Calls the user's callback. Returns false when the connection was freed
 * inside it (the caller must then return at once without touching c). */
static bool emit(net_conn *c, net_event ev) {
        c->in_cb++;
        c->cb(c, ev, c->userdata);
        c->in_cb--;
        if (c->doomed) {
                if (c->in_cb == 0)
                        conn_destroy(c);
                return false;
        }
        return true;
}

static void dns_release(net_dns *d) {
        if (!d)
                return;
        if (gai_cancel(&d->req) == EAI_NOTCANCELED) {
                d->next = dns_orphans;
                dns_orphans = d;
                return;
        }
        if (d->req.ar_result)
                freeaddrinfo(d->req.ar_result);
        free(d->name);
        free(d);
}

static void dns_reap_orphans(void) {
        net_dns **pp = &dns_orphans;

        while (*pp) {
                net_dns *d = *pp;
                if (gai_error(&d->req) == EAI_INPROGRESS) {
                        pp = &d->next;
                        continue;
                }
                *pp = d->next;
                if (d->req.ar_result)
                        freeaddrinfo(d->req.ar_result);
                free(d->name);
                free(d);
        }
}

static void close_socket(net_conn *c) {
        c->io = loop_io_stop(c->io);
        if (c->fd >= 0) {
                close(c->fd);
                c->fd = -1;
        }
}

/* Releases everything but the timers and the option strings. */
static void teardown(net_conn *c, bool graceful) {
        if (c->deadline_timer)
                loop_timer_disarm(c->deadline_timer);
        if (c->step_timer)
                loop_timer_disarm(c->step_timer);
        dns_release(c->dns);
        c->dns = NULL;
        if (c->ai_list)
                freeaddrinfo(c->ai_list);
        c->ai_list = c->ai_next = NULL;
        c->ops->close(c, graceful);
        close_socket(c);
        buf_done(&c->ctl);
        buf_done(&c->out);
        c->out_pos = 0;
}

static int conn_fail(net_conn *c, int error, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static int conn_fail(net_conn *c, int error, const char *fmt, ...) {
        va_list ap;

        if (c->state == ST_FAILED)
                return c->error;
        if (c->state == ST_EOF)
                return -EPIPE;
        va_start(ap, fmt);
        vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
        va_end(ap);
        c->error = error;
        c->state = ST_FAILED;
        teardown(c, false);
        if (c->ev_timer)
                loop_timer_arm(c->ev_timer, 0);
        return error;
}

static void conn_eof(net_conn *c) {
        if (c->state != ST_OPEN)
                return;
        c->state = ST_EOF;
        teardown(c, false);
        loop_timer_arm(c->ev_timer, 0);
}

/* Sets the descriptor's event mask from the state. */
static void update_io(net_conn *c) {
        unsigned ev = 0;
        int r;

        if (!c->io)
                return;
        switch (c->state) {
        case ST_CONNECTING:
        case ST_PROXY_SEND:
                ev = LOOP_WRITE;
                break;
        case ST_PROXY_RECV:
                ev = LOOP_READ;
                break;
        case ST_HANDSHAKE:
                ev = c->hs_wants;
                break;
        case ST_OPEN:
                ev = c->read_wants | (pending_len(c) > 0 ? c->write_wants : 0);
                break;
        default:
                break;
        }
        r = loop_io_set(c->io, ev);
        if (r < 0)
                conn_fail(c, r, "cannot watch the socket to %s: %s", c->target, strerror(-r));
}

static void conn_open(net_conn *c);
static void handshake_step(net_conn *c);
static void proxy_send(net_conn *c);
static void try_next_address(net_conn *c);

/* Writes pending bytes until done or the kernel refuses more. Returns 0 or
 * the connection's error. */
static int flush(net_conn *c) {
        while (pending_len(c) > 0) {
                ssize_t n = c->ops->write(c, c->out.data + c->out_pos, pending_len(c));
                if (n == -EAGAIN)
                        break;
                if (n < 0)
                        return (int)n;
                c->out_pos += (size_t)n;
        }
        if (pending_len(c) == 0) {
                buf_reset(&c->out);
                c->out_pos = 0;
        } else if (c->out_pos >= 64 * 1024) {
                buf_consume(&c->out, c->out_pos);
                c->out_pos = 0;
        }
        update_io(c);
        return c->state == ST_FAILED ? c->error : 0;
}

/* ---- plain TCP operations ---- */

static int tcp_connect(net_conn *c) {
        return 0;
}

static ssize_t tcp_read(net_conn *c, void *data, size_t len) {
        ssize_t n;

        do
                n = recv(c->fd, data, len, 0);
        while (n < 0 && errno == EINTR);
        if (n >= 0)
                return n;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->read_wants = LOOP_READ;
                return -EAGAIN;
        }
        return conn_fail(c, -errno, "read from %s failed: %s", c->target, strerror(errno));
}

static ssize_t tcp_write(net_conn *c, const void *data, size_t len) {
        ssize_t n;

        do
                n = send(c->fd, data, len, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n >= 0)
                return n;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->write_wants = LOOP_WRITE;
                return -EAGAIN;
        }
        return conn_fail(c, -errno, "write to %s failed: %s", c->target, strerror(errno));
}

static void tcp_close(net_conn *c, bool graceful) {
}

static const net_ops tcp_ops = {
        .name = "tcp",
        .connect = tcp_connect,
        .read = tcp_read,
        .write = tcp_write,
        .close = tcp_close,
};

/* ---- TLS operations ---- */

/* True when dir holds OpenSSL hash links (8 hex digits, '.', a digit). */
static bool dir_has_hash_links(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *de;
        bool found = false;

        if (!d)
                return false;
        while (!found && (de = readdir(d))) {
                const char *n = de->d_name;
                size_t i;
                for (i = 0; i < 8 && hexval(n[i]) >= 0; i++)
                        ;
                found = i == 8 && n[8] == '.' && n[9] >= '0' && n[9] <= '9';
        }
        closedir(d);
        return found;
}

/* Trusts the system store. Through its hashed directory when there is one,
 * so only the certificates a handshake needs are read; otherwise (or when the
 * user points SSL_CERT_FILE/SSL_CERT_DIR elsewhere) through OpenSSL's
 * defaults, which may load the whole bundle. */
static int tls_load_system_roots(SSL_CTX *ctx) {
        const char *dir = X509_get_default_cert_dir();

        if (!getenv(X509_get_default_cert_file_env()) && !getenv(X509_get_default_cert_dir_env()) &&
            dir_has_hash_links(dir)) {
                X509_LOOKUP *lu = X509_STORE_add_lookup(SSL_CTX_get_cert_store(ctx),
                                                        X509_LOOKUP_hash_dir());
                if (lu && X509_LOOKUP_add_dir(lu, dir, X509_FILETYPE_PEM) == 1)
                        return 0;
        }
        return SSL_CTX_set_default_verify_paths(ctx) == 1 ? 0 : -EIO;
}

/* Text of the newest OpenSSL error, or fallback. */
static const char *ssl_reason(char *tmp, size_t size, const char *fallback) {
        unsigned long e = ERR_peek_last_error();
        const char *r;

        if (!e)
                return fallback;
        r = ERR_reason_error_string(e);
        if (r)
                return r;
        ERR_error_string_n(e, tmp, size);
        return tmp;
}

/* Maps a failed SSL_* call to the connection's error. */
static int tls_fail(net_conn *c, int ssl_err, const char *what) {
        int e = errno;
        char tmp[256];
        int r;

        if (ssl_err == SSL_ERROR_SYSCALL && e != 0 && !ERR_peek_last_error()) {
                r = conn_fail(c, -e, "%s %s failed: %s", what, c->target, strerror(e));
        } else if (ssl_err == SSL_ERROR_SYSCALL && !ERR_peek_last_error()) {
                r = conn_fail(c, -ECONNRESET, "%s %s failed: connection closed by peer", what,
                              c->target);
        } else {
                r = conn_fail(c, -EPROTO, "%s %s failed: %s", what, c->target,
                              ssl_reason(tmp, sizeof tmp, "unknown TLS error"));
        }
        ERR_clear_error();
        return r;
}

static int tls_setup(net_conn *c) {
        char tmp[256];
        int r = 0;

        ERR_clear_error();
        c->ssl_ctx = SSL_CTX_new(TLS_client_method());
        if (!c->ssl_ctx) {
                r = conn_fail(c, -ENOMEM, "cannot create a TLS context: %s",
                              ssl_reason(tmp, sizeof tmp, "out of memory"));
                goto out;
        }
        SSL_CTX_set_min_proto_version(c->ssl_ctx, TLS1_2_VERSION);
        SSL_CTX_set_mode(c->ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                             SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                             SSL_MODE_RELEASE_BUFFERS);
        /* A peer closing without close_notify reads as EOF: the WebSocket
         * layer above has its own closing handshake. */
        SSL_CTX_set_options(c->ssl_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
        if (!c->insecure) {
                if (tls_load_system_roots(c->ssl_ctx) < 0) {
                        r = conn_fail(c, -EIO, "cannot load the system CA store: %s",
                                      ssl_reason(tmp, sizeof tmp, "unknown error"));
                        goto out;
                }
                if (c->ca_file) {
                        /* For a clear message: OpenSSL says only "system lib". */
                        int fd = open(c->ca_file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                        if (fd < 0) {
                                int e = errno;
                                r = conn_fail(c, -e, "cannot load CA file %s: %s", c->ca_file,
                                              strerror(e));
                                goto out;
                        }
                        close(fd);
                }
                if (c->ca_file && SSL_CTX_load_verify_locations(c->ssl_ctx, c->ca_file, NULL) != 1) {
                        r = conn_fail(c, -EINVAL, "cannot load CA file %s: %s", c->ca_file,
                                      ssl_reason(tmp, sizeof tmp, "unknown error"));
                        goto out;
                }
        }
        SSL_CTX_set_verify(c->ssl_ctx, c->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);

        c->ssl = SSL_new(c->ssl_ctx);
        if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
                r = conn_fail(c, -ENOMEM, "cannot create a TLS session: %s",
                              ssl_reason(tmp, sizeof tmp, "out of memory"));
                goto out;
        }
        if (!c->host_is_ip && SSL_set_tlsext_host_name(c->ssl, c->host) != 1) {
                r = conn_fail(c, -EINVAL, "cannot set TLS SNI to %s: %s", c->host,
                              ssl_reason(tmp, sizeof tmp, "invalid name"));
                goto out;
        }
        if (!c->insecure) {
                X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
                X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
                if ((c->host_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, c->host)
                                   : X509_VERIFY_PARAM_set1_host(vp, c->host, 0)) != 1) {
                        r = conn_fail(c, -EINVAL, "cannot verify TLS host name %s: %s", c->host,
                                      ssl_reason(tmp, sizeof tmp, "invalid name"));
                        goto out;
                }
        }
out:
        ERR_clear_error();
        return r;
}

static int tls_connect(net_conn *c) {
        long vr;
        int n, e, r;

        if (!c->ssl) {
                r = tls_setup(c);
                if (r < 0)
                        return r;
        }
        ERR_clear_error();
        errno = 0;
        n = SSL_connect(c->ssl);
        if (n == 1) {
                c->tls_up = true;
                return 0;
        }
        e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                c->hs_wants = e == SSL_ERROR_WANT_READ ? LOOP_READ : LOOP_WRITE;
                return -EAGAIN;
        }
        vr = SSL_get_verify_result(c->ssl);
        if (!c->insecure && vr != X509_V_OK) {
                r = conn_fail(c, -EKEYREJECTED, "TLS certificate verify failed for %s: %s",
                              c->target, X509_verify_cert_error_string(vr));
                ERR_clear_error();
                return r;
        }
        return tls_fail(c, e, "TLS handshake with");
}

static ssize_t tls_read(net_conn *c, void *data, size_t len) {
        int n, e;

        if (len > INT_MAX)
                len = INT_MAX;
        ERR_clear_error();
        errno = 0;
        n = SSL_read(c->ssl, data, (int)len);
        if (n > 0)
                return n;
        e = SSL_get_error(c->ssl, n);
        switch (e) {
        case SSL_ERROR_ZERO_RETURN:
                return 0;
        case SSL_ERROR_WANT_READ:
                c->read_wants = LOOP_READ;
                return -EAGAIN;
        case SSL_ERROR_WANT_WRITE:
                c->read_wants = LOOP_WRITE;
                return -EAGAIN;
        default:
                return tls_fail(c, e, "TLS read from");
        }
}

static ssize_t tls_write(net_conn *c, const void *data, size_t len) {
        int n, e;

        if (len > INT_MAX)
                len = INT_MAX;
        ERR_clear_error();
        errno = 0;
        n = SSL_write(c->ssl, data, (int)len);
        if (n > 0)
                return n;
        e = SSL_get_error(c->ssl, n);
        switch (e) {
        case SSL_ERROR_WANT_READ:
                c->write_wants = LOOP_READ;
                return -EAGAIN;
        case SSL_ERROR_WANT_WRITE:
                c->write_wants = LOOP_WRITE;
                return -EAGAIN;
        default:
                return tls_fail(c, e, "TLS write to");
        }
}

static void tls_close(net_conn *c, bool graceful) {
        if (c->ssl && graceful && c->tls_up)
                SSL_shutdown(c->ssl); /* one try: queue close_notify */
        SSL_free(c->ssl);
        SSL_CTX_free(c->ssl_ctx);
        c->ssl = NULL;
        c->ssl_ctx = NULL;
        c->tls_up = false;
        ERR_clear_error();
}

static const net_ops tls_ops = {
        .name = "tls",
        .connect = tls_connect,
        .read = tls_read,
        .write = tls_write,
        .close = tls_close,
};

/* ---- resolving ---- */

static int map_gai_error(int e) {
        switch (e) {
        case EAI_NONAME:
#ifdef EAI_NODATA
        case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
        case EAI_ADDRFAMILY:
#endif
                return -ENXIO;
        case EAI_AGAIN:
                return -EHOSTUNREACH;
        case EAI_MEMORY:
                return -ENOMEM;
        default:
                return -EIO;
        }
}

static const char *hop_name(const net_conn *c) {
        return c->use_proxy ? c->proxy.host : c->host;
}

static uint16_t hop_port(const net_conn *c) {
        return c->use_proxy ? c->proxy.port : c->port;
}

static void on_resolved(net_conn *c, struct addrinfo *list) {
        c->ai_list = c->ai_next = list;
        c->ai_left = 0;
        for (struct addrinfo *ai = list; ai; ai = ai->ai_next)
                c->ai_left++;
        c->state = ST_CONNECTING;
        try_next_address(c);
}

static void resolve_poll(net_conn *c) {
        struct addrinfo *list;
        int e;

        dns_reap_orphans();
        e = gai_error(&c->dns->req);
        if (e == EAI_INPROGRESS) {
                c->poll_ms = c->poll_ms * 2 > DNS_POLL_MAX_MS ? DNS_POLL_MAX_MS : c->poll_ms * 2;
                loop_timer_arm(c->step_timer, c->poll_ms);
                return;
        }
        list = c->dns->req.ar_result;
        c->dns->req.ar_result = NULL;
        dns_release(c->dns);
        c->dns = NULL;
        if (e != 0) {
                if (list)
                        freeaddrinfo(list);
                conn_fail(c, map_gai_error(e), "cannot resolve %s%s: %s",
                          c->use_proxy ? "proxy " : "", hop_name(c), gai_strerror(e));
                return;
        }
        on_resolved(c, list);
}

static void resolve_start(net_conn *c) {
        struct gaicb *reqs[1];
        const char *name = hop_name(c);
        net_dns *d;
        int e;

        c->state = ST_RESOLVING;
        if (is_ip_literal(name)) {
                /* A literal needs no lookup: resolve it here, without blocking. */
                struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                                          .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
                struct addrinfo *list = NULL;
                char service[8];
                snprintf(service, sizeof service, "%u", (unsigned)hop_port(c));
                e = getaddrinfo(name, service, &hints, &list);
                if (e != 0) {
                        conn_fail(c, map_gai_error(e), "cannot use address %s: %s", name,
                                  gai_strerror(e));
                        return;
                }
                on_resolved(c, list);
                return;
        }
        d = calloc(1, sizeof *d);
        if (!d || !(d->name = strdup(name))) {
                free(d);
                conn_fail(c, -ENOMEM, "cannot resolve %s: out of memory", name);
                return;
        }
        snprintf(d->service, sizeof d->service, "%u", (unsigned)hop_port(c));
        d->hints.ai_socktype = SOCK_STREAM;
        d->hints.ai_flags = AI_NUMERICSERV;
        d->req.ar_name = d->name;
        d->req.ar_service = d->service;
        d->req.ar_request = &d->hints;
        reqs[0] = &d->req;
        e = getaddrinfo_a(GAI_NOWAIT, reqs, 1, NULL);
        if (e != 0) {
                free(d->name);
                free(d);
                conn_fail(c, e == EAI_MEMORY ? -ENOMEM : -EIO, "cannot start resolving %s: %s", name,
                          gai_strerror(e));
                return;
        }
        c->dns = d;
        c->poll_ms = 1;
        loop_timer_arm(c->step_timer, c->poll_ms);
}

/* ---- connecting ---- */

/* Tries the remaining addresses in order until one connects or starts to. */
static void try_next_address(net_conn *c) {
        const char *addr = c->last_addr;
        int r;

        while (c->ai_next) {
                struct addrinfo *ai = c->ai_next;
                int fd, one = 1;

                c->ai_next = ai->ai_next;
                c->ai_left--;
                if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
                        continue;
                format_sockaddr(c->last_addr, sizeof c->last_addr, ai->ai_addr);
                fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
                if (fd < 0) {
                        c->last_err = -errno;
                        continue;
                }
                (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
                        c->last_err = -errno;
                        close(fd);
                        continue;
                }
                c->fd = fd;
                util_strlcpy(c->peer, addr, sizeof c->peer);
                r = loop_io_start(c->l, fd, LOOP_WRITE, on_io, c, &c->io);
                if (r < 0) {
                        conn_fail(c, r, "cannot watch the socket to %s: %s", addr, strerror(-r));
                        return;
                }
                if (c->ai_next && c->timeout_ms) {
                        /* Leave time for the other addresses. */
                        uint64_t now = loop_now(c->l);
                        uint64_t left = c->deadline_at > now ? c->deadline_at - now : 0;
                        uint64_t slice = left / (c->ai_left + 1);
                        loop_timer_arm(c->step_timer, slice < ATTEMPT_MIN_MS ? ATTEMPT_MIN_MS : slice);
                }
                return;
        }
        if (!c->last_err)
                c->last_err = -EHOSTUNREACH;
        if (is_ip_literal(hop_name(c)))
                addr = "";
        conn_fail(c, c->last_err, "connect to %s failed: %s%s%s%s", c->route,
                  strerror(-c->last_err), addr[0] ? " (" : "", addr, addr[0] ? ")" : "");
}

static void attempt_failed(net_conn *c, int error) {
        c->last_err = error;
        loop_timer_disarm(c->step_timer);
        close_socket(c);
        c->peer[0] = '\0';
        try_next_address(c);
}

static void handshake_start(net_conn *c) {
        c->state = ST_HANDSHAKE;
        c->hs_wants = LOOP_READ | LOOP_WRITE;
        handshake_step(c);
}

static void proxy_start(net_conn *c) {
        char hp[300];
        int r;

        format_hostport(hp, sizeof hp, c->host, c->port);
        buf_reset(&c->ctl);
        r = buf_appendf(&c->ctl, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", hp, hp);
        if (r >= 0 && c->proxy.auth)
                r = buf_appendf(&c->ctl, "Proxy-Authorization: Basic %s\r\n", c->proxy.auth);
        if (r >= 0)
                r = buf_append_str(&c->ctl, "\r\n");
        if (r < 0) {
                conn_fail(c, r, "cannot build the CONNECT request: %s", strerror(-r));
                return;
        }
        c->ctl_pos = 0;
        c->state = ST_PROXY_SEND;
        proxy_send(c);
}

static void on_tcp_connected(net_conn *c) {
        loop_timer_disarm(c->step_timer);
        if (c->ai_list)
                freeaddrinfo(c->ai_list);
        c->ai_list = c->ai_next = NULL;
        if (c->use_proxy)
                proxy_start(c);
        else
                handshake_start(c);
}

static void connect_ready(net_conn *c, unsigned events) {
        int soerr = 0;
        socklen_t sl = sizeof soerr;

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
                soerr = errno;
        if (soerr != 0) {
                attempt_failed(c, -soerr);
                return;
        }
        if (events & LOOP_WRITE)
                on_tcp_connected(c);
}

/* ---- proxy tunnel ---- */

static void proxy_send(net_conn *c) {
        while (c->ctl_pos < c->ctl.len) {
                ssize_t n = send(c->fd, c->ctl.data + c->ctl_pos, c->ctl.len - c->ctl_pos,
                                 MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK) {
                                update_io(c);
                                return;
                        }
                        conn_fail(c, -errno, "sending CONNECT to proxy %s failed: %s", c->peer,
                                  strerror(errno));
                        return;
                }
                c->ctl_pos += (size_t)n;
        }
        /* Keep the request's bytes out of the reply buffer. */
        explicit_bzero(c->ctl.data, c->ctl.len);
        buf_reset(&c->ctl);
        c->state = ST_PROXY_RECV;
        update_io(c);
}

/* Index just past the empty line ending the headers, searching from `from`,
 * or 0 when not there yet. Lines end in LF or CRLF. */
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

static void proxy_reply(net_conn *c) {
        const char *s = c->ctl.data;
        char reason[80];
        size_t ll = strcspn(s, "\r\n"), o = 0;
        int status;

        if (ll < 12 || strncmp(s, "HTTP/1.", 7) != 0 || s[8] != ' ' || s[9] < '1' || s[9] > '5' ||
            s[10] < '0' || s[10] > '9' || s[11] < '0' || s[11] > '9' || (ll > 12 && s[12] != ' ')) {
                conn_fail(c, -EPROTO, "proxy %s sent a malformed reply to CONNECT", c->peer);
                return;
        }
        status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
        for (size_t i = 13; i < ll && o < sizeof reason - 1; i++)
                reason[o++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
        reason[o] = '\0';
        if (status / 100 != 2) {
                conn_fail(c, status == 407 ? -EACCES : -ECONNABORTED,
                          "proxy %s refused CONNECT %s: HTTP %d%s%s", c->peer, c->target, status,
                          o ? " " : "", reason);
                return;
        }
        buf_done(&c->ctl);
        handshake_start(c);
}

/* Reads the proxy's reply without reading past it: the bytes after it belong
 * to the tunnelled stream (for TLS, to OpenSSL). Peeks, then consumes only up
 * to the end of the headers. */
static void proxy_recv(net_conn *c) {
        char tmp[4096];

        for (;;) {
                size_t room = NET_PROXY_REPLY_MAX - c->ctl.len, old = c->ctl.len, end, take;
                ssize_t n;
                int r;

                if (room == 0) {
                        conn_fail(c, -EPROTO, "proxy %s reply to CONNECT is over %u bytes", c->peer,
                                  NET_PROXY_REPLY_MAX);
                        return;
                }
                n = recv(c->fd, tmp, room < sizeof tmp ? room : sizeof tmp, MSG_PEEK);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                return;
                        conn_fail(c, -errno, "reading the proxy %s reply failed: %s", c->peer,
                                  strerror(errno));
                        return;
                }
                if (n == 0) {
                        conn_fail(c, -ECONNRESET, "proxy %s closed the connection during CONNECT",
                                  c->peer);
                        return;
                }
                r = buf_append(&c->ctl, tmp, (size_t)n);
                if (r < 0) {
                        conn_fail(c, r, "reading the proxy reply: %s", strerror(-r));
                        return;
                }
                end = find_header_end(c->ctl.data, c->ctl.len, old >= 2 ? old - 2 : 0);
                take = end ? end - old : (size_t)n;
                /* Consume exactly what was peeked and is part of the reply. */
                do
                        n = recv(c->fd, tmp, take, 0);
                while (n < 0 && errno == EINTR);
                if (n != (ssize_t)take) {
                        conn_fail(c, -EIO, "reading the proxy %s reply failed", c->peer);
                        return;
                }
                if (end) {
                        c->ctl.len = end;
                        c->ctl.data[end] = '\0';
                        proxy_reply(c);
                        return;
                }
        }
}

/* ---- handshake and open ---- */

static void handshake_step(net_conn *c) {
        int r = c->ops->connect(c);

        if (r == -EAGAIN) {
                update_io(c);
                return;
        }
        if (r < 0) {
                if (c->state != ST_FAILED)
                        conn_fail(c, r, "connecting to %s failed: %s", c->target, strerror(-r));
                return;
        }
        conn_open(c);
}

static void conn_open(net_conn *c) {
        c->state = ST_OPEN;
        loop_timer_disarm(c->deadline_timer);
        c->read_wants = LOOP_READ;
        c->write_wants = LOOP_WRITE;
        if (flush(c) < 0)
                return;
        emit(c, NET_EV_CONNECTED);
}

static void open_ready(net_conn *c, unsigned events) {
        if (pending_len(c) > 0 && (events & (c->write_wants | LOOP_ERROR))) {
                if (flush(c) < 0)
                        return;
                if (pending_len(c) == 0 && !emit(c, NET_EV_WRITABLE))
                        return;
        }
        if (c->state == ST_OPEN && (events & (c->read_wants | LOOP_ERROR)))
                emit(c, NET_EV_READABLE);
}

static void on_io(loop_io *io, int fd, unsigned events, void *userdata) {
        net_conn *c = userdata;

        switch (c->state) {
        case ST_CONNECTING:
                connect_ready(c, events);
                break;
        case ST_PROXY_SEND:
                proxy_send(c);
                break;
        case ST_PROXY_RECV:
                proxy_recv(c);
                break;
        case ST_HANDSHAKE:
                handshake_step(c);
                break;
        case ST_OPEN:
                open_ready(c, events);
                break;
        default:
                break;
        }
}

/* ---- timers ---- */

static void on_ev_timer(loop_timer *t, void *userdata) {
        net_conn *c = userdata;

        switch (c->state) {
        case ST_START:
                if (c->timeout_ms) {
                        c->deadline_at = loop_now(c->l) + c->timeout_ms;
                        loop_timer_arm(c->deadline_timer, c->timeout_ms);
                }
                resolve_start(c);
                break;
        case ST_FAILED:
                if (!c->reported) {
                        c->reported = true;
                        emit(c, NET_EV_ERROR);
                }
                break;
        case ST_EOF:
                if (!c->reported) {
                        c->reported = true;
                        emit(c, NET_EV_CLOSED);
                }
                break;
        default:
                break;
        }
}

static void on_deadline(loop_timer *t, void *userdata) {
        net_conn *c = userdata;

        if (c->state >= ST_OPEN)
                return;
        conn_fail(c, -ETIMEDOUT, "connect to %s timed out after %u ms (%s)", c->route,
                  c->timeout_ms, state_name(c->state));
}

static void on_step(loop_timer *t, void *userdata) {
        net_conn *c = userdata;

        if (c->state == ST_RESOLVING && c->dns)
                resolve_poll(c);
        else if (c->state == ST_CONNECTING)
                attempt_failed(c, -ETIMEDOUT);
}

/* ---- public API ---- */

int net_conn_new(loop *l, const net_options *opts, net_cb cb, void *userdata,
                 net_conn **ret_conn) {
        net_conn *c = NULL;
        int r;

        dns_reap_orphans();
        if (!l || !opts || !cb || !opts->host || opts->port == 0)
                return -EINVAL;
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->l = l;
        c->cb = cb;
        c->userdata = userdata;
        c->fd = -1;
        c->ops = opts->tls ? &tls_ops : &tcp_ops;
        c->port = opts->port;
        c->insecure = opts->insecure;
        c->timeout_ms = opts->connect_timeout_ms ? opts->connect_timeout_ms
                                                 : NET_CONNECT_TIMEOUT_DEFAULT_MS;
        c->max_pending = opts->max_pending ? opts->max_pending : NET_PENDING_MAX_DEFAULT;
        buf_init(&c->ctl, 0);
        buf_init(&c->out, 0);

        r = host_dup(opts->host, &c->host);
        if (r < 0)
                goto fail;
        c->host_is_ip = is_ip_literal(c->host);
        if (!c->host_is_ip && (!host_chars_ok(c->host) || strchr(c->host, ':'))) {
                r = -EINVAL;
                goto fail;
        }
        format_hostport(c->target, sizeof c->target, c->host, c->port);
        if (opts->ca_file && opts->ca_file[0] && !(c->ca_file = strdup(opts->ca_file))) {
                r = -ENOMEM;
                goto fail;
        }
        if (opts->proxy && opts->proxy[0]) {
                r = proxy_parse(opts->proxy, &c->proxy);
                if (r < 0)
                        goto fail;
                c->use_proxy = true;
        }
        if (c->use_proxy) {
                char php[300];
                format_hostport(php, sizeof php, c->proxy.host, c->proxy.port);
                snprintf(c->route, sizeof c->route, "%s via proxy %s", c->target, php);
        } else {
                util_strlcpy(c->route, c->target, sizeof c->route);
        }
        r = loop_timer_new(l, on_ev_timer, c, &c->ev_timer);
        if (r < 0)
                goto fail;
        r = loop_timer_new(l, on_deadline, c, &c->deadline_timer);
        if (r < 0)
                goto fail;
        r = loop_timer_new(l, on_step, c, &c->step_timer);
        if (r < 0)
                goto fail;
        loop_timer_arm(c->ev_timer, 0);
        *ret_conn = c;
        return 0;
fail:
        net_conn_free(c);
        return r;
}

static void conn_destroy(net_conn *c) {
        free(c->host);
        free(c->ca_file);
        proxy_url_done(&c->proxy);
        free(c);
}

net_conn *net_conn_free(net_conn *c) {
        if (!c || c->doomed)
                return NULL;
        c->doomed = true;
        if (c->state == ST_OPEN && pending_len(c) > 0)
                (void)flush(c);
        teardown(c, c->state == ST_OPEN);
        c->ev_timer = loop_timer_free(c->ev_timer);
        c->deadline_timer = loop_timer_free(c->deadline_timer);
        c->step_timer = loop_timer_free(c->step_timer);
        if (c->in_cb == 0)
                conn_destroy(c);
        return NULL;
}

ssize_t net_read(net_conn *c, void *data, size_t len) {
        ssize_t n;

        if (c->state == ST_FAILED)
                return c->error;
        if (c->state == ST_EOF)
                return 0;
        if (c->state != ST_OPEN || c->doomed)
                return -ENOTCONN;
        if (len == 0)
                return -EINVAL;
        n = c->ops->read(c, data, len);
        if (n == 0) {
                conn_eof(c);
                return 0;
        }
        if (n == -EAGAIN)
                update_io(c);
        return n;
}

int net_write(net_conn *c, const void *data, size_t len) {
        const char *p = data;
        int r;

        if (c->state == ST_FAILED)
                return c->error;
        if (c->state == ST_EOF)
                return -EPIPE;
        if (c->doomed)
                return -ENOTCONN;
        if (len == 0)
                return 0;
        if (len > c->max_pending - pending_len(c))
                return -ENOBUFS;
        if (c->state == ST_OPEN && pending_len(c) == 0) {
                while (len > 0) {
                        ssize_t n = c->ops->write(c, p, len);
                        if (n == -EAGAIN)
                                break;
                        if (n < 0)
                                return (int)n;
                        p += n;
                        len -= (size_t)n;
                }
                if (len == 0)
                        return 0;
        }
        r = buf_append(&c->out, p, len);
        if (r < 0)
                return conn_fail(c, r, "cannot buffer %zu bytes for %s: %s", len, c->target,
                                 strerror(-r));
        if (c->state == ST_OPEN)
                update_io(c);
        return 0;
}

size_t net_pending(const net_conn *c) {
        return pending_len(c);
}

bool net_connected(const net_conn *c) {
        return c->state == ST_OPEN;
}

int net_conn_errno(const net_conn *c) {
        return c->state == ST_FAILED ? c->error : 0;
}

const char *net_conn_error(const net_conn *c) {
        return c->state == ST_FAILED ? c->errmsg : "";
}

const char *net_conn_peer(const net_conn *c) {
        return c->peer;
}
