#include "core/httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* After the response is written the write side is shut down and the socket
 * drained for at most this long (or this many bytes), so that unread request
 * bytes do not turn the close into a reset that destroys the response. */
#define LINGER_MS 1000u
#define LINGER_MAX_BYTES (64u * 1024u)
/* Grace given to writing a 408 after the request timeout. */
#define TIMEOUT_WRITE_MS 1000u
/* Pause after accept() ran out of descriptors. */
#define ACCEPT_RETRY_MS 100u

typedef struct listener {
        httpd *h;
        int fd;
        loop_io *io;
} listener;

typedef enum conn_state {
        CONN_READING,
        CONN_WRITING,
        CONN_LINGER,
} conn_state;

typedef struct conn {
        httpd *h;
        struct conn *prev, *next;
        int fd;
        loop_io *io;
        loop_timer *timer;
        conn_state state;
        buf in;          /* request head; never longer than max_header */
        buf out;         /* the whole response */
        size_t out_off;  /* bytes of out already sent */
        size_t drained;  /* bytes discarded while lingering */
} conn;

struct httpd {
        loop *l;
        httpd_route_fn route;
        void *userdata;
        unsigned max_connections;
        size_t max_header;
        uint64_t timeout_ms;
        size_t max_body;
        listener ls[HTTPD_MAX_LISTENERS];
        size_t n_ls;
        conn *conns;
        unsigned n_conns;
        bool paused;
        loop_timer *retry; /* resumes accepting after EMFILE */
        uint16_t port;
        uint64_t requests;
};

const char *httpd_reason(int status) {
        switch (status) {
        case 200: return "OK";
        case 204: return "No Content";
        case 301: return "Moved Permanently";
        case 304: return "Not Modified";
        case 400: return "Bad Request";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 408: return "Request Timeout";
        case 413: return "Content Too Large";
        case 414: return "URI Too Long";
        case 431: return "Request Header Fields Too Large";
        case 500: return "Internal Server Error";
        case 501: return "Not Implemented";
        case 503: return "Service Unavailable";
        case 505: return "HTTP Version Not Supported";
        default: return "Unknown";
        }
}

/* ---- connections ---- */

static void listeners_set(httpd *h, bool on) {
        size_t i;

        if (h->paused == !on)
                return;
        h->paused = !on;
        for (i = 0; i < h->n_ls; i++)
                loop_io_set(h->ls[i].io, on ? LOOP_READ : 0);
}

static void conn_close(conn *c) {
        httpd *h = c->h;

        if (c->prev)
                c->prev->next = c->next;
        else
                h->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        h->n_conns--;
        loop_io_stop(c->io);
        loop_timer_free(c->timer);
        close(c->fd);
        buf_done(&c->in);
        buf_done(&c->out);
        free(c);
        if (h->paused && h->n_conns < h->max_connections && !loop_timer_armed(h->retry))
                listeners_set(h, true);
}

/* Returns false when c was closed. */
static bool conn_linger(conn *c) {
        c->state = CONN_LINGER;
        shutdown(c->fd, SHUT_WR);
        if (loop_io_set(c->io, LOOP_READ) < 0) {
                conn_close(c);
                return false;
        }
        loop_timer_arm(c->timer, LINGER_MS);
        return true;
}

/* Writes what it can; returns false when c was closed. */
static bool conn_flush(conn *c) {
        while (c->out_off < c->out.len) {
                ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                        if (loop_io_set(c->io, LOOP_WRITE) < 0) {
                                conn_close(c);
                                return false;
                        }
                        return true;
                }
                if (n <= 0) {
                        conn_close(c);
                        return false;
                }
                c->out_off += (size_t)n;
        }
        return conn_linger(c);
}

/* Replaces whatever was queued by a complete response and starts writing
 * it. The body is not sent for HEAD. */
static void conn_respond(conn *c, int status, const char *content_type, const char *extra_headers,
                         const char *body, size_t body_len, bool head) {
        int r;

        if (status < 100 || status > 599)
                status = 500;
        c->h->requests++;
        buf_reset(&c->out);
        c->out_off = 0;
        r = buf_appendf(&c->out,
                        "HTTP/1.1 %d %s\r\n"
                        "Content-Type: %s\r\n"
                        "Content-Length: %zu\r\n"
                        "Cache-Control: no-store\r\n"
                        "%s"
                        "Connection: close\r\n"
                        "\r\n",
                        status, httpd_reason(status),
                        content_type ? content_type : "text/plain; charset=utf-8", body_len,
                        extra_headers ? extra_headers : "");
        if (r == 0 && !head && body_len)
                r = buf_append(&c->out, body, body_len);
        if (r < 0) {
                conn_close(c);
                return;
        }
        c->state = CONN_WRITING;
        conn_flush(c);
}

static void conn_error(conn *c, int status) {
        char body[64];
        int n = snprintf(body, sizeof body, "%s\n", httpd_reason(status));

        conn_respond(c, status, NULL, status == 405 ? "Allow: GET, HEAD\r\n" : NULL, body,
                     n > 0 ? (size_t)n : 0, false);
}

static bool is_tchar(unsigned char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
               (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* A request-target in origin form: '/' then visible ASCII. */
static bool valid_target(const char *s) {
        if (*s != '/')
                return false;
        for (; *s; s++)
                if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
                        return false;
        return true;
}

int httpd_parse_head(char *head, size_t len, httpd_request *ret_req) {
        char *p = head, *end = head + len, *line, *eol, *sp1, *sp2, *q;
        httpd_request req = { 0 };
        bool has_host = false, http11;

        if (memchr(head, '\0', len))
                return 400;
        /* RFC 9112 §2.2: ignore empty lines before the request line. */
        while (p < end && (*p == '\r' || *p == '\n'))
                p++;
        line = p;
        eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
                return 400;
        *eol = '\0';
        if (eol > line && eol[-1] == '\r')
                eol[-1] = '\0';
        sp1 = strchr(line, ' ');
        sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
        if (!sp1 || !sp2 || strchr(sp2 + 1, ' ') || sp1 == line || sp2 == sp1 + 1)
                return 400;
        *sp1 = *sp2 = '\0';
        for (q = line; *q; q++)
                if (!is_tchar((unsigned char)*q))
                        return 400;
        if (strcmp(sp2 + 1, "HTTP/1.1") == 0) {
                http11 = true;
        } else if (strcmp(sp2 + 1, "HTTP/1.0") == 0) {
                http11 = false;
        } else {
                const char *v = sp2 + 1;
                bool looks = strncmp(v, "HTTP/", 5) == 0 && v[5] >= '0' && v[5] <= '9' && v[6] == '.' &&
                             v[7] >= '0' && v[7] <= '9' && !v[8];
                return looks ? 505 : 400;
        }
        if (!valid_target(sp1 + 1))
                return 400;
        /* Header fields: name ":" value, no whitespace before the colon, no
         * obsolete line folding (a line starting with a blank fails the name
         * check). */
        for (p = eol + 1; p < end;) {
                char *colon;
                eol = memchr(p, '\n', (size_t)(end - p));
                if (!eol)
                        return 400; /* no empty line at the end */
                *eol = '\0';
                if (eol > p && eol[-1] == '\r')
                        eol[-1] = '\0';
                if (!*p)
                        break; /* the empty line that ends the head */
                colon = strchr(p, ':');
                if (!colon || colon == p)
                        return 400;
                for (q = p; q < colon; q++)
                        if (!is_tchar((unsigned char)*q))
                                return 400;
                if ((size_t)(colon - p) == 4 && strncasecmp(p, "host", 4) == 0) {
                        if (has_host)
                                return 400; /* RFC 9112 §3.2 */
                        has_host = true;
                }
                p = eol + 1;
        }
        if (p >= end)
                return 400;
        if (http11 && !has_host)
                return 400;
        if (strcmp(line, "GET") != 0 && strcmp(line, "HEAD") != 0)
                return 405;
        req.method = line;
        req.head = strcmp(line, "HEAD") == 0;
        req.path = sp1 + 1;
        q = strchr(sp1 + 1, '?');
        if (q) {
                *q = '\0';
                req.query = q + 1;
        }
        *ret_req = req;
        return 0;
}

/* Answers the complete head in c->in (head_len bytes, up to and including
 * the empty line). */
static void conn_handle(conn *c, size_t head_len) {
        httpd *h = c->h;
        httpd_request req;
        httpd_response res = { .status = 200 };
        int r;

        r = httpd_parse_head(c->in.data, head_len, &req);
        if (r > 0) {
                conn_error(c, r);
                return;
        }
        if (!h->route) {
                conn_error(c, 404);
                return;
        }
        buf_init(&res.body, h->max_body);
        r = h->route(h->userdata, &req, &res);
        if (r < 0) {
                buf_done(&res.body);
                conn_error(c, 500);
                return;
        }
        conn_respond(c, res.status, res.content_type, NULL, res.body.data ? res.body.data : "", res.body.len,
                     req.head);
        buf_done(&res.body);
}

/* Reads the request head; returns when it is complete (and answered), when
 * the socket has no more bytes, or when c was closed. */
static void conn_read(conn *c) {
        httpd *h = c->h;
        char tmp[4096];

        for (;;) {
                size_t room = h->max_header - c->in.len, want = room < sizeof tmp ? room : sizeof tmp;
                ssize_t n;
                char *end;

                if (room == 0) {
                        conn_error(c, 431);
                        return;
                }
                n = recv(c->fd, tmp, want, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        return;
                if (n <= 0) {
                        /* Gone before finishing its request: nothing to answer. */
                        conn_close(c);
                        return;
                }
                if (buf_append(&c->in, tmp, (size_t)n) < 0) {
                        conn_close(c);
                        return;
                }
                /* The head ends with an empty line (CRLF CRLF, or bare LFs,
                 * which RFC 9112 §2.2 lets a server accept). */
                end = memmem(c->in.data, c->in.len, "\n\r\n", 3);
                {
                        char *lf = memmem(c->in.data, c->in.len, "\n\n", 2);
                        if (lf && (!end || lf < end))
                                end = lf;
                }
                if (end) {
                        size_t head_len = (size_t)(end - c->in.data) + (end[1] == '\r' ? 3 : 2);
                        conn_handle(c, head_len);
                        return;
                }
        }
}

static void conn_drain(conn *c) {
        char tmp[4096];

        for (;;) {
                ssize_t n = recv(c->fd, tmp, sizeof tmp, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        return;
                if (n <= 0) {
                        conn_close(c);
                        return;
                }
                c->drained += (size_t)n;
                if (c->drained > LINGER_MAX_BYTES) {
                        conn_close(c);
                        return;
                }
        }
}

static void on_conn_io(loop_io *io, int fd, unsigned events, void *userdata) {
        conn *c = userdata;

        switch (c->state) {
        case CONN_READING:
                conn_read(c);
                break;
        case CONN_WRITING:
                if (events & (LOOP_WRITE | LOOP_ERROR))
                        conn_flush(c);
                break;
        case CONN_LINGER:
                conn_drain(c);
                break;
        }
}

static void on_conn_timer(loop_timer *t, void *userdata) {
        conn *c = userdata;

        if (c->state == CONN_READING) {
                /* Slow or silent client: tell it, give the write a moment. */
                loop_timer_arm(c->timer, TIMEOUT_WRITE_MS);
                conn_error(c, 408);
                return;
        }
        conn_close(c);
}

static void accept_all(httpd *h, listener *ls) {
        while (h->n_conns < h->max_connections) {
                conn *c;
                int fd = accept4(ls->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                                continue;
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                                /* Level-triggered: stop asking until some
                                 * descriptors are free again. */
                                listeners_set(h, false);
                                loop_timer_arm(h->retry, ACCEPT_RETRY_MS);
                        }
                        return;
                }
                c = calloc(1, sizeof *c);
                if (!c) {
                        close(fd);
                        return;
                }
                c->h = h;
                c->fd = fd;
                buf_init(&c->in, h->max_header);
                buf_init(&c->out, 0);
                if (loop_timer_new(h->l, on_conn_timer, c, &c->timer) < 0 ||
                    loop_io_start(h->l, fd, LOOP_READ, on_conn_io, c, &c->io) < 0) {
                        loop_timer_free(c->timer);
                        close(fd);
                        free(c);
                        return;
                }
                loop_timer_arm(c->timer, h->timeout_ms);
                c->next = h->conns;
                if (h->conns)
                        h->conns->prev = c;
                h->conns = c;
                h->n_conns++;
        }
        /* At the cap: the backlog holds the rest until a connection closes. */
        listeners_set(h, false);
}

static void on_listen_io(loop_io *io, int fd, unsigned events, void *userdata) {
        listener *ls = userdata;
        accept_all(ls->h, ls);
}

static void on_retry(loop_timer *t, void *userdata) {
        httpd *h = userdata;
        if (h->n_conns < h->max_connections)
                listeners_set(h, true);
}

/* ---- listening ---- */

static void format_addr(const struct sockaddr *sa, char *out, size_t outlen) {
        char host[INET6_ADDRSTRLEN] = "?";
        unsigned port = 0;

        if (sa->sa_family == AF_INET6) {
                const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
                inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
                port = ntohs(s6->sin6_port);
                snprintf(out, outlen, "[%s]:%u", host, port);
        } else {
                const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
                inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
                port = ntohs(s4->sin_port);
                snprintf(out, outlen, "%s:%u", host, port);
        }
}

static void set_port(struct sockaddr *sa, uint16_t port) {
        if (sa->sa_family == AF_INET6)
                ((struct sockaddr_in6 *)sa)->sin6_port = htons(port);
        else
                ((struct sockaddr_in *)sa)->sin_port = htons(port);
}

/* Opens one listening socket on sa (port already set). dual_stack: an IPv6
 * wildcard that also takes IPv4. Returns the fd or a negative errno with
 * err written. */
static int listen_one(const struct sockaddr *sa, socklen_t salen, bool dual_stack, char *err, size_t errlen) {
        char addr[INET6_ADDRSTRLEN + 16];
        int fd, one = 1, v6only = dual_stack ? 0 : 1, r;

        fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                r = -errno;
                goto fail;
        }
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (sa->sa_family == AF_INET6)
                (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
        if (bind(fd, sa, salen) < 0 || listen(fd, 64) < 0) {
                r = -errno;
                close(fd);
                goto fail;
        }
        return fd;
fail:
        format_addr(sa, addr, sizeof addr);
        if (err && errlen)
                snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(-r));
        return r;
}

static int bound_port(int fd, uint16_t *ret_port) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;

        if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
                return -errno;
        *ret_port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                             : ntohs(((struct sockaddr_in *)&ss)->sin_port);
        return 0;
}

static int add_listener(httpd *h, int fd, char *err, size_t errlen) {
        listener *ls = &h->ls[h->n_ls];
        int r;

        if (h->n_ls == 0) {
                r = bound_port(fd, &h->port);
                if (r < 0) {
                        close(fd);
                        return r;
                }
        }
        ls->h = h;
        ls->fd = fd;
        r = loop_io_start(h->l, fd, LOOP_READ, on_listen_io, ls, &ls->io);
        if (r < 0) {
                close(fd);
                if (err && errlen)
                        snprintf(err, errlen, "cannot watch the listening socket: %s", strerror(-r));
                return r;
        }
        h->n_ls++;
        return 0;
}

static int listen_any(httpd *h, uint16_t port, char *err, size_t errlen) {
        struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT };
        struct sockaddr_in s4 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY) };
        int fd;

        s6.sin6_port = s4.sin_port = htons(port);
        fd = listen_one((struct sockaddr *)&s6, sizeof s6, true, err, errlen);
        if (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL)
                fd = listen_one((struct sockaddr *)&s4, sizeof s4, false, err, errlen);
        if (fd < 0)
                return fd;
        return add_listener(h, fd, err, errlen);
}

static int listen_host(httpd *h, const char *host, uint16_t port, char *err, size_t errlen) {
        struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
        struct addrinfo *res = NULL, *ai;
        char first_err[256] = "";
        int r, first_r = 0;

        r = getaddrinfo(host, NULL, &hints, &res);
        if (r != 0) {
                if (err && errlen)
                        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(r));
                return r == EAI_MEMORY ? -ENOMEM : -ENXIO;
        }
        for (ai = res; ai && h->n_ls < HTTPD_MAX_LISTENERS; ai = ai->ai_next) {
                struct sockaddr_storage ss;
                struct addrinfo *prev;
                bool dup = false;
                int fd;

                if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) || ai->ai_addrlen > sizeof ss)
                        continue;
                for (prev = res; prev != ai; prev = prev->ai_next)
                        if (prev->ai_addrlen == ai->ai_addrlen && !memcmp(prev->ai_addr, ai->ai_addr, ai->ai_addrlen))
                                dup = true;
                if (dup)
                        continue;
                memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
                /* Every address shares one port: the first one's when it was
                 * ephemeral. */
                set_port((struct sockaddr *)&ss, h->n_ls ? h->port : port);
                fd = listen_one((struct sockaddr *)&ss, ai->ai_addrlen, false, first_r ? NULL : first_err,
                                sizeof first_err);
                if (fd < 0) {
                        if (!first_r)
                                first_r = fd;
                        continue;
                }
                r = add_listener(h, fd, err, errlen);
                if (r < 0)
                        goto out;
        }
        /* Some addresses of a name may be unusable (::1 with IPv6 off): one
         * socket is enough. */
        if (h->n_ls == 0) {
                r = first_r ? first_r : -EADDRNOTAVAIL;
                if (err && errlen)
                        snprintf(err, errlen, "%s", first_err[0] ? first_err : "no usable address");
                goto out;
        }
        r = 0;
out:
        freeaddrinfo(res);
        return r;
}

int httpd_new(loop *l, const httpd_options *opts, char *err, size_t errlen, httpd **ret_httpd) {
        httpd *h;
        int r;

        if (!l || !opts) {
                if (err && errlen)
                        snprintf(err, errlen, "httpd_new: missing loop or options");
                return -EINVAL;
        }
        h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        h->l = l;
        h->route = opts->route;
        h->userdata = opts->userdata;
        h->max_connections = opts->max_connections ? opts->max_connections : HTTPD_MAX_CONNECTIONS_DEFAULT;
        h->max_header = opts->max_header ? opts->max_header : HTTPD_MAX_HEADER_DEFAULT;
        h->timeout_ms = opts->timeout_ms ? opts->timeout_ms : HTTPD_TIMEOUT_DEFAULT_MS;
        h->max_body = opts->max_body ? opts->max_body : HTTPD_MAX_BODY_DEFAULT;
        r = loop_timer_new(l, on_retry, h, &h->retry);
        if (r < 0)
                goto fail;
        if (!opts->host || !*opts->host)
                r = listen_any(h, opts->port, err, errlen);
        else
                r = listen_host(h, opts->host, opts->port, err, errlen);
        if (r < 0)
                goto fail;
        *ret_httpd = h;
        return 0;
fail:
        httpd_free(h);
        return r;
}

httpd *httpd_free(httpd *h) {
        size_t i;

        if (!h)
                return NULL;
        while (h->conns) {
                h->paused = false; /* no resume while tearing down */
                conn_close(h->conns);
        }
        for (i = 0; i < h->n_ls; i++) {
                loop_io_stop(h->ls[i].io);
                close(h->ls[i].fd);
        }
        loop_timer_free(h->retry);
        free(h);
        return NULL;
}

uint16_t httpd_port(const httpd *h) {
        return h->port;
}

unsigned httpd_connections(const httpd *h) {
        return h->n_conns;
}

uint64_t httpd_requests(const httpd *h) {
        return h->requests;
}
