/* Unit tests of src/core/httpd.c over real sockets on the loopback: the
 * server runs on a loop in this process; clients are non-blocking sockets
 * pumped between loop turns. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/httpd.h"
#include "core/loop.h"
#include "core/util.h"

#define BIG_BODY (2u * 1024u * 1024u)
#define GET_METRICS "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"

static unsigned route_calls;

static int route(void *ud, const httpd_request *req, httpd_response *res) {
        route_calls++;
        if (!strcmp(req->path, "/metrics")) {
                res->content_type = "text/plain; version=0.0.4; charset=utf-8";
                return buf_append_str(&res->body, "a_metric 1\n");
        }
        if (!strcmp(req->path, "/echo"))
                return buf_appendf(&res->body, "method=%s path=%s query=%s head=%d", req->method, req->path,
                                   req->query ? req->query : "(none)", req->head);
        if (!strcmp(req->path, "/big")) {
                int r = buf_reserve(&res->body, BIG_BODY);
                if (r < 0)
                        return r;
                memset(res->body.data, 'x', BIG_BODY);
                res->body.len = BIG_BODY;
                res->body.data[BIG_BODY] = '\0';
                return 0;
        }
        if (!strcmp(req->path, "/fail"))
                return -ENOMEM;
        if (!strcmp(req->path, "/teapot")) {
                res->status = 1000; /* invalid: becomes 500 */
                return 0;
        }
        res->status = 404;
        return buf_append_str(&res->body, "not found\n");
}

typedef struct fixture {
        loop *l;
        httpd *h;
        uint16_t port;
        int fds_before;
} fixture;

static int count_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *e;
        int n = 0;
        if (!d)
                return -1;
        while ((e = readdir(d)))
                if (e->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

static void start(fixture *f, const httpd_options *extra) {
        httpd_options o = { .host = "127.0.0.1", .route = route };
        char err[256] = "";

        if (extra)
                o = *extra;
        f->fds_before = count_fds();
        assert_int_equal(loop_new(&f->l), 0);
        assert_int_equal(httpd_new(f->l, &o, err, sizeof err, &f->h), 0);
        f->port = httpd_port(f->h);
        assert_true(f->port != 0);
}

static void stop(fixture *f) {
        f->h = httpd_free(f->h);
        loop_run_once(f->l, 0); /* reap */
        f->l = loop_free(f->l);
        assert_int_equal(count_fds(), f->fds_before);
}

static int fcntl_nonblock(int fd) {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
                return -errno;
        return 0;
}

/* A connected client socket, non-blocking once connected. */
static int client(int family, uint16_t port) {
        int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int r;

        assert_true(fd >= 0);
        if (family == AF_INET6) {
                struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_port = htons(port),
                                           .sin6_addr = IN6ADDR_LOOPBACK_INIT };
                r = connect(fd, (struct sockaddr *)&s6, sizeof s6);
        } else {
                struct sockaddr_in s4 = { .sin_family = AF_INET, .sin_port = htons(port) };
                s4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                r = connect(fd, (struct sockaddr *)&s4, sizeof s4);
        }
        /* A blocking connect to the loopback completes through the kernel's
         * backlog without the server's loop turning. */
        assert_int_equal(r, 0);
        assert_int_equal(fcntl_nonblock(fd), 0);
        return fd;
}

static void send_all(fixture *f, int fd, const char *data, size_t len) {
        size_t off = 0;
        uint64_t deadline = util_mono_ms() + 3000;

        while (off < len) {
                ssize_t n = send(fd, data + off, len - off, MSG_NOSIGNAL);
                if (n > 0) {
                        off += (size_t)n;
                        continue;
                }
                if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
                        break; /* the server may close early (431): fine */
                assert_true(util_mono_ms() < deadline);
                loop_run_once(f->l, 5);
        }
}

/* Pumps the loop and reads from fd until EOF, an error or max_ms (fd < 0:
 * only turns the loop for max_ms). Returns what was read (caller frees) and
 * whether EOF was seen. */
static char *pump(fixture *f, int fd, uint64_t max_ms, bool *ret_eof, size_t *ret_len) {
        buf b;
        uint64_t deadline = util_mono_ms() + max_ms;
        char tmp[65536];
        bool eof = false;

        buf_init(&b, 0);
        while (!eof && util_mono_ms() < deadline) {
                loop_run_once(f->l, 5);
                for (; fd >= 0;) {
                        ssize_t n = recv(fd, tmp, sizeof tmp, 0);
                        if (n > 0) {
                                assert_int_equal(buf_append(&b, tmp, (size_t)n), 0);
                                continue;
                        }
                        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
                                eof = true;
                        break;
                }
        }
        if (ret_eof)
                *ret_eof = eof;
        if (ret_len)
                *ret_len = b.len;
        return buf_steal(&b);
}

/* Turns the loop until the server has closed every connection (it lingers
 * until the client closes). */
static void settle(fixture *f) {
        uint64_t deadline = util_mono_ms() + 2000;
        while (httpd_connections(f->h) > 0 && util_mono_ms() < deadline)
                loop_run_once(f->l, 5);
        assert_int_equal(httpd_connections(f->h), 0);
}

static char *request(fixture *f, int family, const char *req, size_t *ret_len) {
        int fd = client(family, f->port);
        bool eof = false;
        char *resp;

        send_all(f, fd, req, strlen(req));
        resp = pump(f, fd, 3000, &eof, ret_len);
        assert_true(eof);
        close(fd);
        settle(f);
        return resp;
}

static int status_of(const char *resp) {
        int s = 0;
        if (strncmp(resp, "HTTP/1.1 ", 9) != 0)
                return -1;
        for (const char *p = resp + 9; *p >= '0' && *p <= '9'; p++)
                s = s * 10 + (*p - '0');
        return s;
}

static const char *body_of(const char *resp) {
        const char *p = strstr(resp, "\r\n\r\n");
        return p ? p + 4 : NULL;
}

static void test_get_metrics(void **state) {
        fixture f;
        char *r;

        start(&f, NULL);
        r = request(&f, AF_INET, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nUser-Agent: t\r\n\r\n", NULL);
        assert_int_equal(status_of(r), 200);
        assert_non_null(strstr(r, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert_non_null(strstr(r, "\r\nContent-Length: 11\r\n"));
        assert_non_null(strstr(r, "\r\nConnection: close\r\n"));
        assert_string_equal(body_of(r), "a_metric 1\n");
        free(r);
        assert_int_equal(httpd_requests(f.h), 1);
        assert_int_equal(httpd_connections(f.h), 0);
        stop(&f);
}

static void test_statuses(void **state) {
        static const struct {
                const char *req;
                int status;
                const char *body;   /* NULL: do not check */
                const char *header; /* NULL: do not check */
        } cases[] = {
                { "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not found\n", NULL },
                { "GET /echo?a=1&b=2 HTTP/1.1\r\nHost: x\r\n\r\n", 200, "method=GET path=/echo query=a=1&b=2 head=0", NULL },
                { "GET /echo HTTP/1.0\r\n\r\n", 200, "method=GET path=/echo query=(none) head=0", NULL },
                { "GET /echo HTTP/1.1\nHost: x\n\n", 200, NULL, NULL },              /* bare LF */
                { "\r\nGET /echo HTTP/1.1\r\nHost: x\r\n\r\n", 200, NULL, NULL },    /* leading CRLF */
                { "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 200, "", "\r\nContent-Length: 11\r\n" },
                { "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405, NULL, "\r\nAllow: GET, HEAD\r\n" },
                { "DELETE / HTTP/1.1\r\nHost: x\r\n\r\n", 405, NULL, NULL },
                { "GET /metrics HTTP/1.1\r\n\r\n", 400, NULL, NULL },                /* no Host */
                { "GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, NULL, NULL },
                { "GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n", 505, NULL, NULL },
                { "GET /metrics FTP/1.0\r\nHost: x\r\n\r\n", 400, NULL, NULL },
                { "GET  /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400, NULL, NULL },
                { "GET http://x/metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400, NULL, NULL },
                { "G@T /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400, NULL, NULL },
                { "GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n", 400, NULL, NULL },
                { "GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400, NULL, NULL },
                { "GET /metrics HTTP/1.1\r\nnocolon\r\n\r\n", 400, NULL, NULL },
                { "GET /fail HTTP/1.1\r\nHost: x\r\n\r\n", 500, NULL, NULL },
                { "GET /teapot HTTP/1.1\r\nHost: x\r\n\r\n", 500, NULL, NULL },
                { "GET /big HTTP/1.1\r\nHost: x\r\n\r\n", 200, NULL, "\r\nContent-Length: 2097152\r\n" },
        };
        fixture f;

        start(&f, NULL);
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
                size_t len = 0;
                char *r = request(&f, AF_INET, cases[i].req, &len);
                if (status_of(r) != cases[i].status)
                        fail_msg("case %zu: %s: got %.40s", i, cases[i].req, r);
                assert_non_null(strstr(r, "\r\nConnection: close\r\n"));
                if (cases[i].body)
                        assert_string_equal(body_of(r), cases[i].body);
                if (cases[i].header)
                        assert_non_null(strstr(r, cases[i].header));
                if (cases[i].status == 200 && strstr(cases[i].req, "/big"))
                        assert_int_equal(strlen(body_of(r)), BIG_BODY);
                free(r);
        }
        assert_int_equal(httpd_connections(f.h), 0);
        stop(&f);
}

static void test_no_route(void **state) {
        httpd_options o = { .host = "127.0.0.1" };
        fixture f;
        char *r;

        start(&f, &o);
        r = request(&f, AF_INET, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", NULL);
        assert_int_equal(status_of(r), 404);
        free(r);
        stop(&f);
}

static void test_oversize_headers(void **state) {
        fixture f;
        buf req;
        char *r;

        start(&f, NULL);
        buf_init(&req, 0);
        assert_int_equal(buf_append_str(&req, "GET /metrics HTTP/1.1\r\nHost: x\r\n"), 0);
        for (int i = 0; i < 200; i++)
                assert_int_equal(buf_appendf(&req, "X-Filler-%03d: %040d\r\n", i, i), 0);
        assert_true(req.len > HTTPD_MAX_HEADER_DEFAULT);
        /* Never finished: the cap, not the end of the head, ends it. */
        r = request(&f, AF_INET, req.data, NULL);
        assert_int_equal(status_of(r), 431);
        free(r);
        /* A head just under the cap is fine. */
        buf_reset(&req);
        assert_int_equal(buf_append_str(&req, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: "), 0);
        while (req.len < HTTPD_MAX_HEADER_DEFAULT - 8)
                assert_int_equal(buf_append(&req, "p", 1), 0);
        assert_int_equal(buf_append_str(&req, "\r\n\r\n"), 0);
        assert_true(req.len <= HTTPD_MAX_HEADER_DEFAULT);
        r = request(&f, AF_INET, req.data, NULL);
        assert_int_equal(status_of(r), 200);
        free(r);
        buf_done(&req);
        stop(&f);
}

static void test_slowloris(void **state) {
        httpd_options o = { .host = "127.0.0.1", .route = route, .timeout_ms = 300 };
        fixture f;
        uint64_t t0;
        bool eof;
        char *r;
        int a, b;

        start(&f, &o);
        t0 = util_mono_ms();
        a = client(AF_INET, f.port); /* trickles */
        b = client(AF_INET, f.port); /* silent */
        send_all(&f, a, "GET /metrics HTTP/1.1\r\n", 23);
        r = pump(&f, a, 150, &eof, NULL);
        assert_false(eof);
        assert_string_equal(r, "");
        free(r);
        send_all(&f, a, "Host: x\r\n", 9);
        r = pump(&f, a, 2000, &eof, NULL);
        assert_true(eof);
        assert_int_equal(status_of(r), 408);
        assert_true(util_mono_ms() - t0 >= 290);
        assert_true(util_mono_ms() - t0 < 1500);
        free(r);
        r = pump(&f, b, 1000, &eof, NULL);
        assert_true(eof);
        assert_int_equal(status_of(r), 408);
        free(r);
        close(a);
        close(b);
        r = pump(&f, -1, 50, NULL, NULL);
        free(r);
        assert_int_equal(httpd_connections(f.h), 0);
        assert_int_equal(route_calls > 0, true);
        stop(&f);
}

static void test_connection_cap(void **state) {
        fixture f;
        int idle[HTTPD_MAX_CONNECTIONS_DEFAULT], extra;
        bool eof;
        char *r;

        start(&f, NULL);
        for (unsigned i = 0; i < HTTPD_MAX_CONNECTIONS_DEFAULT; i++)
                idle[i] = client(AF_INET, f.port);
        r = pump(&f, -1, 100, NULL, NULL);
        free(r);
        assert_int_equal(httpd_connections(f.h), HTTPD_MAX_CONNECTIONS_DEFAULT);
        /* The 17th waits in the backlog: no answer while the others hold. */
        extra = client(AF_INET, f.port);
        send_all(&f, extra, GET_METRICS, strlen(GET_METRICS));
        r = pump(&f, extra, 300, &eof, NULL);
        assert_false(eof);
        assert_string_equal(r, "");
        free(r);
        assert_int_equal(httpd_connections(f.h), HTTPD_MAX_CONNECTIONS_DEFAULT);
        /* One leaves: the waiting one is served. */
        close(idle[0]);
        r = pump(&f, extra, 3000, &eof, NULL);
        assert_true(eof);
        assert_int_equal(status_of(r), 200);
        free(r);
        close(extra);
        for (unsigned i = 1; i < HTTPD_MAX_CONNECTIONS_DEFAULT; i++)
                close(idle[i]);
        r = pump(&f, -1, 100, NULL, NULL);
        free(r);
        assert_int_equal(httpd_connections(f.h), 0);
        stop(&f);
}

/* httpd_free() with connections open (one mid-request, one idle). */
static void test_free_with_connections(void **state) {
        fixture f;
        int a, b;
        char *r;

        start(&f, NULL);
        a = client(AF_INET, f.port);
        b = client(AF_INET, f.port);
        send_all(&f, a, "GET /metrics HTTP/1.1\r\n", 23);
        r = pump(&f, -1, 50, NULL, NULL);
        free(r);
        assert_int_equal(httpd_connections(f.h), 2);
        close(a);
        close(b);
        stop(&f);
}

static bool have_ipv6_loopback(void) {
        struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
        int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&s6, sizeof s6) == 0;
        if (fd >= 0)
                close(fd);
        return ok;
}

static void test_addresses(void **state) {
        fixture f;
        char *r;

        /* All addresses (""): IPv4 always, IPv6 too where the host has it. */
        {
                httpd_options o = { .host = "", .route = route };
                start(&f, &o);
                r = request(&f, AF_INET, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", NULL);
                assert_int_equal(status_of(r), 200);
                free(r);
                if (have_ipv6_loopback()) {
                        r = request(&f, AF_INET6, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", NULL);
                        assert_int_equal(status_of(r), 200);
                        free(r);
                }
                stop(&f);
        }
        if (have_ipv6_loopback()) {
                httpd_options o = { .host = "::1", .route = route };
                start(&f, &o);
                r = request(&f, AF_INET6, "GET /metrics HTTP/1.1\r\nHost: [::1]\r\n\r\n", NULL);
                assert_int_equal(status_of(r), 200);
                free(r);
                stop(&f);
        } else {
                print_message("no IPv6 loopback here: ::1 literal not tested\n");
        }
        /* A host name: every address it resolves to, one port. */
        {
                httpd_options o = { .host = "localhost", .route = route };
                start(&f, &o);
                r = request(&f, AF_INET, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n", NULL);
                assert_int_equal(status_of(r), 200);
                free(r);
                stop(&f);
        }
}

static void test_listen_errors(void **state) {
        fixture f;
        httpd *h2 = NULL;
        char err[256] = "", want[64];
        httpd_options o = { .host = "127.0.0.1", .route = route };
        int r;

        start(&f, NULL);
        o.port = f.port;
        r = httpd_new(f.l, &o, err, sizeof err, &h2);
        assert_int_equal(r, -EADDRINUSE);
        assert_null(h2);
        snprintf(want, sizeof want, "127.0.0.1:%u", f.port);
        assert_non_null(strstr(err, want));
        o.host = "no-such-host.invalid";
        o.port = 0;
        r = httpd_new(f.l, &o, err, sizeof err, &h2);
        assert_int_equal(r, -ENXIO);
        assert_non_null(strstr(err, "no-such-host.invalid"));
        o.host = "192.0.2.1"; /* TEST-NET-1: not ours */
        r = httpd_new(f.l, &o, err, sizeof err, &h2);
        assert_int_equal(r, -EADDRNOTAVAIL);
        assert_int_equal(httpd_new(f.l, NULL, err, sizeof err, &h2), -EINVAL);
        assert_null(httpd_free(NULL));
        stop(&f);
}

/* httpd_parse_head() on its own: inputs with explicit lengths (NULs). */
static void test_parse_head(void **state) {
        static const struct {
                const char *in;
                size_t len; /* 0: strlen */
                int r;
                const char *method, *path, *query;
        } cases[] = {
                { "GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 0, 0, "GET", "/a", NULL },
                { "HEAD /a?b=c HTTP/1.0\r\n\r\n", 0, 0, "HEAD", "/a", "b=c" },
                { "GET /?  HTTP/1.0\r\n\r\n", 0, 400, NULL, NULL, NULL },
                { "GET /? HTTP/1.0\r\n\r\n", 0, 0, "GET", "/", "" },
                { "GET /a HTTP/1.1\r\nhOsT:x\r\n\r\n", 0, 0, "GET", "/a", NULL },
                { "GET /a HTTP/1.0\r\nX: \x01\xff\r\n\r\n", 0, 0, "GET", "/a", NULL }, /* values are not ours */
                { "GET /a HTTP/1.1\r\nHost: x\r\n\0\r\n\r\n", 30, 400, NULL, NULL, NULL },
                { "GET /a\0 HTTP/1.1\r\n\r\n", 20, 400, NULL, NULL, NULL },
                { "GET /a HTTP/1.1\r\n", 0, 400, NULL, NULL, NULL },            /* no empty line */
                { "GET /a HTTP/1.0\r\nX: y\r\n", 0, 400, NULL, NULL, NULL },
                { "\r\n\r\n", 0, 400, NULL, NULL, NULL },
                { "", 0, 400, NULL, NULL, NULL },
                { "GET\r\n\r\n", 0, 400, NULL, NULL, NULL },
                { "GET /a\r\n\r\n", 0, 400, NULL, NULL, NULL },               /* HTTP/0.9 */
                { "GET /a HTTP/1.1 x\r\n\r\n", 0, 400, NULL, NULL, NULL },
                { "GET /\x7f HTTP/1.0\r\n\r\n", 0, 400, NULL, NULL, NULL },
                { "GET /\xc3\xa9 HTTP/1.0\r\n\r\n", 0, 400, NULL, NULL, NULL }, /* raw UTF-8 */
                { "GET * HTTP/1.1\r\nHost: x\r\n\r\n", 0, 400, NULL, NULL, NULL },
                { "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 0, 400, NULL, NULL, NULL },
                { "PUT /a HTTP/1.1\r\nHost: x\r\n\r\n", 0, 405, NULL, NULL, NULL },
                { "get /a HTTP/1.0\r\n\r\n", 0, 405, NULL, NULL, NULL },       /* methods are case-sensitive */
                { "GET /a HTTP/3.0\r\n\r\n", 0, 505, NULL, NULL, NULL },
                { "GET /a HTTP/1.10\r\n\r\n", 0, 400, NULL, NULL, NULL },
                { "GET /a http/1.1\r\n\r\n", 0, 400, NULL, NULL, NULL },
                { "GET /a HTTP/1.1\r\n: v\r\nHost: x\r\n\r\n", 0, 400, NULL, NULL, NULL },
                { "GET /a HTTP/1.1\r\nHo st: x\r\n\r\n", 0, 400, NULL, NULL, NULL },
                { "GET /a HTTP/1.1\r\nHost: x\r\n\tcontinued\r\n\r\n", 0, 400, NULL, NULL, NULL },
        };
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
                size_t len = cases[i].len ? cases[i].len : strlen(cases[i].in);
                char *copy = malloc(len + 1);
                httpd_request req = { 0 };
                int r;

                assert_non_null(copy);
                memcpy(copy, cases[i].in, len);
                copy[len] = '\0';
                r = httpd_parse_head(copy, len, &req);
                if (r != cases[i].r)
                        fail_msg("case %zu: got %d, want %d", i, r, cases[i].r);
                if (r == 0) {
                        assert_string_equal(req.method, cases[i].method);
                        assert_string_equal(req.path, cases[i].path);
                        if (cases[i].query)
                                assert_string_equal(req.query, cases[i].query);
                        else
                                assert_null(req.query);
                        assert_int_equal(req.head, !strcmp(cases[i].method, "HEAD"));
                }
                free(copy);
        }
}

static void test_reason(void **state) {
        assert_string_equal(httpd_reason(431), "Request Header Fields Too Large");
        assert_string_equal(httpd_reason(503), "Service Unavailable");
        assert_string_equal(httpd_reason(299), "Unknown");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_get_metrics),
                cmocka_unit_test(test_statuses),
                cmocka_unit_test(test_no_route),
                cmocka_unit_test(test_oversize_headers),
                cmocka_unit_test(test_slowloris),
                cmocka_unit_test(test_connection_cap),
                cmocka_unit_test(test_free_with_connections),
                cmocka_unit_test(test_addresses),
                cmocka_unit_test(test_listen_errors),
                cmocka_unit_test(test_parse_head),
                cmocka_unit_test(test_reason),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
