/* Unit tests of transport/net against real peers started by the test: an
 * in-process TCP echo/sink server on the same loop, forked TLS servers with a
 * CA and certificates made at test time, and a forked HTTP CONNECT proxy. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/buf.h"
#include "core/loop.h"
#include "core/util.h"
#include "transport/net.h"

/* ---- shared fixtures ---- */

static char tmpdir[64];
static char ca_path[128];
static EVP_PKEY *ca_key, *good_key, *other_key;
static X509 *ca_cert, *good_cert, *other_cert;

static void add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value) {
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
        assert_non_null(ext);
        assert_int_equal(X509_add_ext(x, ext, -1), 1);
        X509_EXTENSION_free(ext);
}

/* A certificate for key, signed by issuer (self-signed when NULL). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                       const char *san) {
        static long serial = 1;
        X509 *x = X509_new();
        X509V3_CTX ctx;

        assert_non_null(x);
        X509_set_version(x, 2);
        ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
        X509_gmtime_adj(X509_getm_notBefore(x), -3600);
        X509_gmtime_adj(X509_getm_notAfter(x), 86400);
        X509_set_pubkey(x, key);
        X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                   (const unsigned char *)cn, -1, -1, 0);
        X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
        if (!issuer) {
                add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE");
                add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
                add_ext(x, &ctx, NID_subject_key_identifier, "hash");
        } else {
                add_ext(x, &ctx, NID_basic_constraints, "CA:FALSE");
                add_ext(x, &ctx, NID_ext_key_usage, "serverAuth");
                add_ext(x, &ctx, NID_subject_alt_name, san);
                add_ext(x, &ctx, NID_authority_key_identifier, "keyid");
        }
        assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
        return x;
}

static int group_setup(void **state) {
        FILE *f;

        signal(SIGPIPE, SIG_IGN);
        snprintf(tmpdir, sizeof tmpdir, "/tmp/test-net-XXXXXX");
        if (!mkdtemp(tmpdir))
                return -1;
        ca_key = EVP_EC_gen("P-256");
        good_key = EVP_EC_gen("P-256");
        other_key = EVP_EC_gen("P-256");
        if (!ca_key || !good_key || !other_key)
                return -1;
        ca_cert = make_cert(ca_key, "aiwm test CA", NULL, NULL, NULL);
        good_cert = make_cert(good_key, "localhost", ca_cert, ca_key, "DNS:localhost,IP:127.0.0.1");
        other_cert = make_cert(other_key, "other.example", ca_cert, ca_key, "DNS:other.example");
        snprintf(ca_path, sizeof ca_path, "%s/ca.pem", tmpdir);
        f = fopen(ca_path, "we");
        if (!f)
                return -1;
        PEM_write_X509(f, ca_cert);
        fclose(f);
        return 0;
}

static int group_teardown(void **state) {
        unlink(ca_path);
        rmdir(tmpdir);
        X509_free(ca_cert);
        X509_free(good_cert);
        X509_free(other_cert);
        EVP_PKEY_free(ca_key);
        EVP_PKEY_free(good_key);
        EVP_PKEY_free(other_key);
        return 0;
}

/* A listening socket on 127.0.0.1, ephemeral port. */
static int listen_local(int backlog, uint16_t *ret_port) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t sl = sizeof sa;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        assert_int_equal(listen(fd, backlog), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
        *ret_port = ntohs(sa.sin_port);
        return fd;
}

static void reap(pid_t pid) {
        int status;
        if (pid <= 0)
                return;
        kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
}

static int count_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        int n = 0;

        assert_non_null(d);
        while (readdir(d))
                n++;
        closedir(d);
        return n;
}

static int fds_at_start;

/* Every test must end with the descriptors it started with. */
static int fd_setup(void **state) {
        fds_at_start = count_fds();
        return 0;
}

static int fd_teardown(void **state) {
        int now = count_fds();
        /* A lookup abandoned while getaddrinfo_a() runs finishes on glibc's
         * resolver thread, whose socket closes when it answers: give it up to
         * 3 s on a loaded machine before calling a difference a leak. */
        for (int i = 0; i < 300 && now != fds_at_start; i++) {
                usleep(10000);
                now = count_fds();
        }
        if (now != fds_at_start) {
                fprintf(stderr, "descriptor leak: %d at start, %d at end\n", fds_at_start, now);
                return -1;
        }
        return 0;
}

/* ---- the client side: an event recorder ---- */

typedef struct rec {
        net_conn *c;
        int connected, readable, writable, error, closed, order_bad;
        int err;
        char msg[512];
        buf rx;
        int free_on;            /* free the connection inside this event */
        const char *send_on_connect;
        bool done;
} rec;

static void on_net(net_conn *c, net_event ev, void *userdata) {
        rec *r = userdata;
        char tmp[4096];
        ssize_t n;

        assert_ptr_equal(c, r->c);
        if (r->error || r->closed)
                r->order_bad++;
        switch (ev) {
        case NET_EV_CONNECTED:
                if (r->connected)
                        r->order_bad++;
                r->connected++;
                if (r->send_on_connect)
                        assert_int_equal(net_write(c, r->send_on_connect, strlen(r->send_on_connect)), 0);
                break;
        case NET_EV_READABLE:
                r->readable++;
                while ((n = net_read(c, tmp, sizeof tmp)) > 0)
                        assert_int_equal(buf_append(&r->rx, tmp, (size_t)n), 0);
                break;
        case NET_EV_WRITABLE:
                r->writable++;
                break;
        case NET_EV_ERROR:
                r->error++;
                r->err = net_conn_errno(c);
                util_strlcpy(r->msg, net_conn_error(c), sizeof r->msg);
                r->done = true;
                break;
        case NET_EV_CLOSED:
                r->closed++;
                r->done = true;
                break;
        }
        if (r->free_on == (int)ev) {
                net_conn_free(c);
                net_conn_free(c); /* a second call from the callback is harmless */
                r->c = NULL;
                r->done = true;
        }
}

static void rec_init(rec *r) {
        memset(r, 0, sizeof *r);
        buf_init(&r->rx, 0);
}

static void rec_done(rec *r) {
        r->c = net_conn_free(r->c);
        buf_done(&r->rx);
}

#define RUN_UNTIL(l, cond, ms)                                                  \
        do {                                                                    \
                uint64_t end_ = util_mono_ms() + (ms);                          \
                while (!(cond) && util_mono_ms() < end_)                        \
                        assert_int_equal(loop_run_once((l), 20), 0);            \
        } while (0)

static int start(loop *l, rec *r, const net_options *o) {
        return net_conn_new(l, o, on_net, r, &r->c);
}

/* ---- in-process TCP server on the loop ---- */

typedef struct srv {
        loop *l;
        int lfd;
        uint16_t port;
        loop_io *lio;
        int cfd;
        loop_io *cio;
        bool echo;       /* echo what arrives; else sink (read only when draining) */
        bool draining;
        size_t received;
        const char *greeting;   /* sent on accept, then close */
} srv;

static void srv_client_cb(loop_io *io, int fd, unsigned events, void *userdata) {
        srv *s = userdata;
        char tmp[65536];
        ssize_t n;

        if (!s->echo && !s->draining)
                return;
        n = read(fd, tmp, sizeof tmp);
        if (n <= 0) {
                s->cio = loop_io_stop(s->cio);
                close(s->cfd);
                s->cfd = -1;
                return;
        }
        s->received += (size_t)n;
        if (s->echo)
                assert_int_equal(write(fd, tmp, (size_t)n), n);
}

static void srv_accept_cb(loop_io *io, int fd, unsigned events, void *userdata) {
        srv *s = userdata;
        int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

        if (cfd < 0)
                return;
        if (s->greeting) {
                assert_int_equal(write(cfd, s->greeting, strlen(s->greeting)),
                                 (ssize_t)strlen(s->greeting));
                close(cfd);
                return;
        }
        assert_int_equal(s->cfd, -1);
        s->cfd = cfd;
        assert_int_equal(loop_io_start(s->l, cfd, s->echo ? LOOP_READ : 0, srv_client_cb, s, &s->cio), 0);
}

static void srv_start(srv *s, loop *l, bool echo) {
        memset(s, 0, sizeof *s);
        s->l = l;
        s->cfd = -1;
        s->echo = echo;
        s->lfd = listen_local(16, &s->port);
        assert_int_equal(loop_io_start(l, s->lfd, LOOP_READ, srv_accept_cb, s, &s->lio), 0);
}

static void srv_drain(srv *s) {
        s->draining = true;
        if (s->cio)
                assert_int_equal(loop_io_set(s->cio, LOOP_READ), 0);
}

static void srv_stop(srv *s) {
        s->lio = loop_io_stop(s->lio);
        s->cio = loop_io_stop(s->cio);
        if (s->cfd >= 0)
                close(s->cfd);
        close(s->lfd);
}

static void srv_close_client(srv *s) {
        s->cio = loop_io_stop(s->cio);
        if (s->cfd >= 0)
                close(s->cfd);
        s->cfd = -1;
}

/* ---- forked TLS server ---- */

/* Accepts one connection, completes the handshake, sends "sni=<name>\n"
 * and then echoes until EOF. */
static pid_t tls_server_fork(X509 *cert, EVP_PKEY *key, uint16_t *ret_port) {
        int lfd = listen_local(4, ret_port);
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0) {
                SSL_CTX *ctx;
                SSL *ssl;
                char tmp[4096], hello[300];
                const char *sni;
                int cfd, n;

                alarm(10);
                ctx = SSL_CTX_new(TLS_server_method());
                if (!ctx || SSL_CTX_use_certificate(ctx, cert) != 1 ||
                    SSL_CTX_use_PrivateKey(ctx, key) != 1)
                        _exit(2);
                cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (cfd < 0)
                        _exit(3);
                ssl = SSL_new(ctx);
                SSL_set_fd(ssl, cfd);
                if (SSL_accept(ssl) != 1)
                        _exit(4);
                sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
                snprintf(hello, sizeof hello, "sni=%s\n", sni ? sni : "");
                SSL_write(ssl, hello, (int)strlen(hello));
                while ((n = SSL_read(ssl, tmp, sizeof tmp)) > 0) {
                        if (n == 4 && memcmp(tmp, "quit", 4) == 0)
                                break;
                        if (SSL_write(ssl, tmp, n) != n)
                                _exit(5);
                }
                SSL_shutdown(ssl);
                _exit(0);
        }
        close(lfd);
        return pid;
}

/* ---- forked HTTP CONNECT proxy ---- */

typedef struct proxy_cfg {
        const char *want_auth;    /* expected Proxy-Authorization value, or NULL */
        const char *extra;        /* bytes sent right after the 200, in the same write */
} proxy_cfg;

static pid_t proxy_fork(const proxy_cfg *cfg, uint16_t *ret_port) {
        int lfd = listen_local(4, ret_port);
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0) {
                char req[8192], host[256], reply[1024];
                size_t len = 0;
                unsigned port;
                int cfd, tfd;
                struct pollfd pf[2];
                struct sockaddr_in sa = { .sin_family = AF_INET };

                alarm(10);
                cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (cfd < 0)
                        _exit(3);
                while (len < sizeof req - 1) {
                        ssize_t n = read(cfd, req + len, 1);
                        if (n <= 0)
                                _exit(4);
                        len++;
                        req[len] = '\0';
                        if (len >= 4 && memcmp(req + len - 4, "\r\n\r\n", 4) == 0)
                                break;
                }
                if (sscanf(req, "CONNECT %255[^:]:%u HTTP/1.1\r\n", host, &port) != 2)
                        _exit(5);
                if (cfg->want_auth) {
                        char want[512];
                        snprintf(want, sizeof want, "\r\nProxy-Authorization: %s\r\n", cfg->want_auth);
                        if (!strstr(req, want)) {
                                const char *no = "HTTP/1.1 407 Proxy Authentication Required\r\n"
                                                 "Proxy-Authenticate: Basic realm=\"t\"\r\n"
                                                 "Content-Length: 0\r\n\r\n";
                                (void)!write(cfd, no, strlen(no));
                                _exit(0);
                        }
                }
                if (strcmp(host, "127.0.0.1") != 0 && strcmp(host, "localhost") != 0) {
                        const char *no = "HTTP/1.1 403 Forbidden\r\n\r\n";
                        (void)!write(cfd, no, strlen(no));
                        _exit(0);
                }
                tfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                sa.sin_port = htons((uint16_t)port);
                if (connect(tfd, (struct sockaddr *)&sa, sizeof sa) < 0)
                        _exit(6);
                snprintf(reply, sizeof reply, "HTTP/1.1 200 Connection established\r\n\r\n%s",
                         cfg->extra ? cfg->extra : "");
                if (write(cfd, reply, strlen(reply)) < 0)
                        _exit(7);
                pf[0] = (struct pollfd){ .fd = cfd, .events = POLLIN };
                pf[1] = (struct pollfd){ .fd = tfd, .events = POLLIN };
                for (;;) {
                        char tmp[16384];
                        if (poll(pf, 2, -1) < 0)
                                _exit(8);
                        for (int i = 0; i < 2; i++) {
                                ssize_t n;
                                if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                                        continue;
                                n = read(pf[i].fd, tmp, sizeof tmp);
                                if (n <= 0)
                                        _exit(0);
                                if (write(pf[1 - i].fd, tmp, (size_t)n) != n)
                                        _exit(9);
                        }
                }
        }
        close(lfd);
        return pid;
}

/* ---- tests: plain TCP ---- */

static void test_tcp_echo_and_eof(void **state) {
        loop *l = NULL;
        srv s;
        rec r;
        net_options o = { .host = "127.0.0.1" };

        assert_int_equal(loop_new(&l), 0);
        srv_start(&s, l, true);
        rec_init(&r);
        o.port = s.port;
        assert_int_equal(start(l, &r, &o), 0);
        assert_false(net_connected(r.c));
        assert_int_equal(net_read(r.c, (char[4]){ 0 }, 4), -ENOTCONN);
        /* Written before the connection is up: buffered, sent once connected. */
        assert_int_equal(net_write(r.c, "hello ", 6), 0);
        assert_int_equal(net_pending(r.c), 6);
        r.send_on_connect = "world";
        RUN_UNTIL(l, r.rx.len >= 11, 3000);
        assert_int_equal(r.connected, 1);
        assert_true(net_connected(r.c));
        assert_int_equal(net_pending(r.c), 0);
        assert_string_equal(r.rx.data, "hello world");
        assert_true(util_startswith(net_conn_peer(r.c), "127.0.0.1:"));

        /* The server closes: CLOSED, once; then reads give 0, writes -EPIPE. */
        srv_close_client(&s);
        RUN_UNTIL(l, r.done, 3000);
        assert_int_equal(r.closed, 1);
        assert_int_equal(r.error, 0);
        assert_int_equal(r.order_bad, 0);
        assert_false(net_connected(r.c));
        assert_int_equal(net_read(r.c, (char[4]){ 0 }, 4), 0);
        assert_int_equal(net_write(r.c, "x", 1), -EPIPE);
        assert_int_equal(net_conn_errno(r.c), 0);
        rec_done(&r);
        srv_stop(&s);
        assert_int_equal(loop_run_once(l, 0), 0);
        loop_free(l);
}

static void test_tcp_localhost_resolved(void **state) {
        loop *l = NULL;
        srv s;
        rec r;
        net_options o = { .host = "localhost" };

        assert_int_equal(loop_new(&l), 0);
        srv_start(&s, l, true);
        rec_init(&r);
        o.port = s.port;
        r.send_on_connect = "ping";
        assert_int_equal(start(l, &r, &o), 0);
        RUN_UNTIL(l, r.rx.len >= 4 || r.done, 5000);
        if (r.error)
                fail_msg("%s", r.msg);
        assert_string_equal(r.rx.data, "ping");
        rec_done(&r);
        srv_stop(&s);
        assert_int_equal(loop_run_once(l, 0), 0);
        loop_free(l);
}

static void test_tcp_refused(void **state) {
        loop *l = NULL;
        rec r;
        uint16_t port;
        int fd = listen_local(1, &port);
        net_options o = { .host = "127.0.0.1" };

        close(fd); /* nothing listens there now */
        assert_int_equal(loop_new(&l), 0);
        rec_init(&r);
        o.port = port;
        assert_int_equal(start(l, &r, &o), 0);
        /* Never reported from inside net_conn_new(). */
        assert_int_equal(r.error, 0);
        RUN_UNTIL(l, r.done, 3000);
        assert_int_equal(r.error, 1);
        assert_int_equal(r.connected, 0);
        assert_int_equal(r.err, -ECONNREFUSED);
        assert_non_null(strstr(r.msg, "Connection refused"));
        assert_non_null(strstr(r.msg, "127.0.0.1:"));
        assert_int_equal(net_write(r.c, "x", 1), -ECONNREFUSED);
        assert_int_equal(net_read(r.c, (char[4]){ 0 }, 4), -ECONNREFUSED);
        /* Nothing more comes. */
        for (int i = 0; i < 5; i++)
                assert_int_equal(loop_run_once(l, 0), 0);
        assert_int_equal(r.error, 1);
        assert_int_equal(r.order_bad, 0);
        rec_done(&r);
        assert_int_equal(loop_run_once(l, 0), 0);
        loop_free(l);
}

static void test_dns_failure(void **state) {
        loop *l = NULL;
        rec r;
        net_options o = { .host = "does-not-exist.invalid", .port = 80, .connect_timeout_ms = 3000 };

        assert_int_equal(loop_new(&l), 0);
        rec_init(&r);
        assert_int_equal(start(l, &r, &o), 0);
        RUN_UNTIL(l, r.done, 5000);
        assert_int_equal(r.error, 1);
        /* NXDOMAIN normally; a sandbox without DNS may say "try again" or time out. */
        if (r.err != -ENXIO && r.err != -EHOSTUNREACH && r.err != -ETIMEDOUT)
                fail_msg("unexpected error %d: %s", r.err, r.msg);
        assert_non_null(strstr(r.msg, "does-not-exist.invalid"));
        rec_done(&r);
        assert_int_equal(loop_run_once(l, 0), 0);
        loop_free(l);
}

static void test_connect_timeout(void **state) {
        loop *l = NULL;
        rec r;
        uint16_t port;
        int lfd = listen_local(0, &port), fillers[64], nf = 0;
        bool hanging = false;
        net_options o = { .host = "127.0.0.1", .connect_timeout_ms = 300 };
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                  .sin_port = htons(port) };

        /* Fill the accept queue until a connect stays pending. */
        while (nf < 64 && !hanging) {
                struct pollfd pf;
                int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                assert_true(fd >= 0);
                fillers[nf++] = fd;
                if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
                        continue;
                pf = (struct pollfd){ .fd = fd, .events = POLLOUT };
                hanging = poll(&pf, 1, 100) == 0;
        }
        if (hanging) {
                assert_int_equal(loop_new(&l), 0);
                rec_init(&r);
                o.port = port;
                assert_int_equal(start(l, &r, &o), 0);
                RUN_UNTIL(l, r.done, 3000);
                assert_int_equal(r.error, 1);
                assert_int_equal(r.err, -ETIMEDOUT);
                assert_non_null(strstr(r.msg, "timed out after 300 ms (connecting)"));
                rec_done(&r);
                assert_int_equal(loop_run_once(l, 0), 0);
                loop_free(l);
        }
        while (nf > 0)
                close(fillers[--nf]);
        close(lfd);
        if (!hanging)
                skip();
}

static void test_free_anywhere(void **state) {
        loop *l = NULL;
        srv s;
        rec r;
        net_options o = { .host = "127.0.0.1" };

        assert_int_equal(loop_new(&l), 0);
        srv_start(&s, l, true);
        o.port = s.port;

        /* Freed before the first turn: no event ever. */
        rec_init(&r);
        assert_int_equal(start(l, &r, &o), 0);
        rec_done(&r);
        for (int i = 0; i < 3; i++)
                assert_int_equal(loop_run_once(l, 0), 0);

        /* Freed inside CONNECTED. */
        rec_init(&r);
        r.free_on = NET_EV_CONNECTED;
        assert_int_equal(start(l, &r, &o), 0);
        RUN_UNTIL(l, r.done, 3000);
        assert_int_equal(r.connected, 1);
        assert_null(r.c);
        rec_done(&r);

        /* Freed inside ERROR. */
        rec_init(&r);
        r.free_on = NET_EV_ERROR;
        o.port = 1; /* tcpmux: nothing listens */
        assert_int_equal(start(l, &r, &o), 0);
        RUN_UNTIL(l, r.done, 3000);
        assert_int_equal(r.error, 1);
        assert_null(r.c);
        rec_done(&r);

        /* Freed while the resolver is busy. */
        rec_init(&r);
        o.host = "localhost";
        assert_int_equal(start(l, &r, &o), 0);
        assert_int_equal(loop_run_once(l, 0), 0);
        rec_done(&r);

        /* Freed inside READABLE, with the TCP stream open. */
        rec_init(&r);
        o.host = "127.0.0.1";
        o.port = s.port;
        r.send_on_connect = "x";
        r.free_on = NET_EV_READABLE;
        assert_int_equal(start(l, &r, &o), 0);
        RUN_UNTIL(l, r.done, 3000);
        assert_int_equal(r.readable, 1);
        rec_done(&r);

        for (int i = 0; i < 3; i++)
                assert_int_equal(loop_run_once(l, 0), 0);
        srv_stop(&s);
        assert_int_equal(loop_run_once(l, 0), 0);
        loop_free(l);
}

static void test_write_buffering(void **state) {
        static char chunk[65536];
        loop *l = NULL;
        srv s;
        rec r;
        size_t accepted = 0;
        int rc = 0;
        net_options o = { .host = "127.0.0.1", .max_pending = 1024 * 1024 };

        memset(chunk, 'w', sizeof chunk);
        assert_int_equal(loop_new(&l), 0);
        srv_start(&s, l, false); /* sink that does not read yet */
        rec_init(&r);
        o.port = s.port;
        assert_int_equal(start(l, &r, &o), 0);
        RUN_UNTIL(l, r.connected && s.cfd >= 0, 3000);
        assert_int_equal(r.connected, 1);

        /* Write until the kernel buffers and ours (1 MiB) are full. */
        for (int i = 0; i < 4096 && rc == 0; i++) {
                rc = net_write(r.c, chunk, sizeof chunk);
                if (rc == 0)
                        accepted += sizeof chunk;
                if ((i & 7) == 0)
                        assert_int_equal(loop_run_once(l, 0), 0);
        }
        assert_int_equal(rc, -ENOBUFS);
        assert_true(net_pending(r.c) > 0);
        assert_true(net_pending(r.c) <= o.max_pending);
        assert_int_equal(r.writable, 0);

        /* The peer starts reading: everything arrives, then WRITABLE. */
        srv_drain(&s);
        RUN_UNTIL(l, r.writable > 0 && s.received == accepted, 5000);
        assert_int_equal(net_pending(r.c), 0);
        assert_int_equal(r.writable, 1);
        assert_int_equal(s.received, accepted);
        assert_int_equal(r.error, 0);
        rec_done(&r);
        srv_stop(&s);
        assert_int_equal(loop_run_once(l, 0), 0);
        loop_free(l);
}

static void test_invalid_options(void **state) {
        loop *l = NULL;
        net_conn *c = NULL;
        static const char *bad_proxies[] = {
                "https://proxy:3128", "socks5://proxy:1080", "http://", "http://proxy:0",
                "http://proxy:65536", "http://proxy:x", "http://[::1", "http://u:p%zz@proxy:1",
                "http://pro xy:1", "http://[fe80::1]x",
        };
        net_options o = { .host = "example.com", .port = 443 };

        assert_int_equal(loop_new(&l), 0);
        assert_int_equal(net_conn_new(l, NULL, on_net, NULL, &c), -EINVAL);
        o.port = 0;
        assert_int_equal(net_conn_new(l, &o, on_net, NULL, &c), -EINVAL);
        o.port = 443;
        o.host = "";
        assert_int_equal(net_conn_new(l, &o, on_net, NULL, &c), -EINVAL);
        o.host = "exa mple.com";
        assert_int_equal(net_conn_new(l, &o, on_net, NULL, &c), -EINVAL);
        o.host = "[::1";
        assert_int_equal(net_conn_new(l, &o, on_net, NULL, &c), -EINVAL);
        o.host = "example.com";
        for (size_t i = 0; i < sizeof bad_proxies / sizeof bad_proxies[0]; i++) {
                o.proxy = bad_proxies[i];
                assert_false(net_proxy_valid(bad_proxies[i]));
                if (net_conn_new(l, &o, on_net, NULL, &c) != -EINVAL)
                        fail_msg("proxy %s accepted", bad_proxies[i]);
        }
        assert_true(net_proxy_valid("http://proxy.corp:3128"));
        assert_true(net_proxy_valid("http://user:p%40ss@proxy.corp:3128/"));
        assert_true(net_proxy_valid("proxy.corp"));
        assert_true(net_proxy_valid("HTTP://[::1]:8080"));
        assert_true(net_proxy_valid("http://10.0.0.1"));
        assert_null(c);
        assert_int_equal(loop_run_once(l, 0), 0);
        loop_free(l);
}

/* ---- tests: TLS ---- */

typedef struct tls_case {
        const char *name;
        bool other_cert;
        const char *host;
        bool with_ca;
        bool insecure;
        int want_err;           /* 0: must connect */
        const char *want_msg;   /* substring of the error */
        const char *want_sni;   /* first line from the server */
} tls_case;

static void run_tls_case(const tls_case *t) {
        loop *l = NULL;
        rec r;
        uint16_t port;
        pid_t pid = tls_server_fork(t->other_cert ? other_cert : good_cert,
                                    t->other_cert ? other_key : good_key, &port);
        net_options o = { .host = t->host, .port = port, .tls = true, .insecure = t->insecure,
                          .ca_file = t->with_ca ? ca_path : NULL, .connect_timeout_ms = 5000 };

        assert_int_equal(loop_new(&l), 0);
        rec_init(&r);
        r.send_on_connect = "over tls";
        assert_int_equal(start(l, &r, &o), 0);
        RUN_UNTIL(l, r.done || (r.rx.data && strstr(r.rx.data, "over tls")), 5000);
        if (t->want_err == 0) {
                char want[300];
                if (r.error)
                        fail_msg("%s: %s", t->name, r.msg);
                assert_int_equal(r.connected, 1);
                snprintf(want, sizeof want, "sni=%s\nover tls", t->want_sni);
                assert_string_equal(r.rx.data, want);
        } else {
                if (r.err != t->want_err || !strstr(r.msg, t->want_msg))
                        fail_msg("%s: got %d \"%s\", want %d \"...%s...\"", t->name, r.err, r.msg,
                                 t->want_err, t->want_msg);
                assert_int_equal(r.connected, 0);
        }
        rec_done(&r);
        assert_int_equal(loop_run_once(l, 0), 0);
        loop_free(l);
        reap(pid);
}

static void test_tls(void **state) {
        const tls_case t[] = {
                { "name verified", false, "localhost", true, false, 0, NULL, "localhost" },
                { "ip verified, no SNI", false, "127.0.0.1", true, false, 0, NULL, "" },
                { "wrong name", true, "localhost", true, false, -EKEYREJECTED,
                  "TLS certificate verify failed for localhost:", "" },
                { "wrong name reason", true, "localhost", true, false, -EKEYREJECTED,
                  X509_verify_cert_error_string(X509_V_ERR_HOSTNAME_MISMATCH), "" },
                { "wrong ip", true, "127.0.0.1", true, false, -EKEYREJECTED,
                  X509_verify_cert_error_string(X509_V_ERR_IP_ADDRESS_MISMATCH), "" },
                { "untrusted", false, "localhost", false, false, -EKEYREJECTED,
                  X509_verify_cert_error_string(X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY), "" },
                { "insecure untrusted", false, "localhost", false, true, 0, NULL, "localhost" },
                { "insecure wrong name", true, "localhost", false, true, 0, NULL, "localhost" },
        };
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
                run_tls_case(&t[i]);
}

/* Megabytes through TLS both ways: partial writes, WANT_WRITE retries from the
 * internal buffer, reads in the same turns; then a TLS close from the server. */
static void test_tls_bulk_and_close(void **state) {
        static char chunk[50000];
        loop *l = NULL;
        rec r;
        uint16_t port;
        size_t sent = 0, total = 4u * 1024u * 1024u;
        pid_t pid = tls_server_fork(good_cert, good_key, &port);
        net_options o = { .host = "localhost", .port = port, .tls = true, .ca_file = ca_path };
        const size_t hello = strlen("sni=localhost\n");

        for (size_t i = 0; i < sizeof chunk; i++)
                chunk[i] = (char)('A' + i % 61);
        assert_int_equal(loop_new(&l), 0);
        rec_init(&r);
        assert_int_equal(start(l, &r, &o), 0);
        RUN_UNTIL(l, r.connected || r.done, 5000);
        assert_int_equal(r.connected, 1);
        while ((sent < total || r.rx.len < hello + total) && !r.done) {
                uint64_t end = util_mono_ms() + 10000;
                while (sent < total && net_pending(r.c) < 512 * 1024) {
                        size_t n = total - sent < sizeof chunk ? total - sent : sizeof chunk;
                        assert_int_equal(net_write(r.c, chunk, n), 0);
                        sent += n;
                }
                assert_int_equal(loop_run_once(l, 50), 0);
                assert_true(util_mono_ms() < end);
        }
        assert_int_equal(r.error, 0);
        assert_int_equal(r.rx.len, hello + total);
        for (size_t i = 0; i < total; i++)
                if (r.rx.data[hello + i] != chunk[i % sizeof chunk])
                        fail_msg("byte %zu differs", i);
        /* The server ends the session with close_notify: CLOSED. */
        assert_int_equal(net_write(r.c, "quit", 4), 0);
        RUN_UNTIL(l, r.done, 5000);
        assert_int_equal(r.closed, 1);
        assert_int_equal(r.error, 0);
        rec_done(&r);
        assert_int_equal(loop_run_once(l, 0), 0);
        loop_free(l);
        reap(pid);
}

static void test_tls_bad_ca_file(void **state) {
        loop *l = NULL;
        rec r;
        uint16_t port;
        int lfd = listen_local(4, &port); /* TLS fails before any byte is read */
        net_options o = { .host = "localhost", .port = port, .tls = true,
                          .ca_file = "/nonexistent/ca.pem" };

        assert_int_equal(loop_new(&l), 0);
        rec_init(&r);
        assert_int_equal(start(l, &r, &o), 0);
        RUN_UNTIL(l, r.done, 5000);
        assert_int_equal(r.err, -ENOENT);
        assert_string_equal(r.msg, "cannot load CA file /nonexistent/ca.pem: No such file or directory");
        rec_done(&r);

        /* A file that holds no certificate. */
        {
                char bad[160];
                FILE *f;
                snprintf(bad, sizeof bad, "%s/bad.pem", tmpdir);
                f = fopen(bad, "we");
                assert_non_null(f);
                fputs("not a certificate\n", f);
                fclose(f);
                rec_init(&r);
                o.ca_file = bad;
                assert_int_equal(start(l, &r, &o), 0);
                RUN_UNTIL(l, r.done, 5000);
                unlink(bad);
                assert_int_equal(r.err, -EINVAL);
                assert_true(util_startswith(r.msg, "cannot load CA file "));
                rec_done(&r);
        }
        assert_int_equal(loop_run_once(l, 0), 0);
        loop_free(l);
        close(lfd);
}

/* A server that accepts TCP and then says nothing: the TLS handshake times out. */
static void test_tls_handshake_timeout(void **state) {
        loop *l = NULL;
        rec r;
        uint16_t port;
        int lfd = listen_local(4, &port);
        net_options o = { .host = "127.0.0.1", .port = port, .tls = true, .insecure = true,
                          .connect_timeout_ms = 200 };

        assert_int_equal(loop_new(&l), 0);
        rec_init(&r);
        assert_int_equal(start(l, &r, &o), 0);
        RUN_UNTIL(l, r.done, 3000);
        assert_int_equal(r.err, -ETIMEDOUT);
        assert_non_null(strstr(r.msg, "(TLS handshake)"));
        rec_done(&r);
        close(lfd);
        assert_int_equal(loop_run_once(l, 0), 0);
        loop_free(l);
}

/* ---- tests: proxy ---- */

static void test_proxy_tcp_with_auth(void **state) {
        loop *l = NULL;
        srv s;
        rec r;
        uint16_t pport;
        char url[128];
        /* base64("user:p@ss") */
        proxy_cfg cfg = { .want_auth = "Basic dXNlcjpwQHNz", .extra = "early " };
        pid_t pid = proxy_fork(&cfg, &pport);
        net_options o = { .host = "127.0.0.1" };

        assert_int_equal(loop_new(&l), 0);
        srv_start(&s, l, true);
        rec_init(&r);
        snprintf(url, sizeof url, "http://user:p%%40ss@127.0.0.1:%u", (unsigned)pport);
        o.port = s.port;
        o.proxy = url;
        r.send_on_connect = "tunnelled";
        assert_int_equal(start(l, &r, &o), 0);
        RUN_UNTIL(l, r.rx.len >= 15 || r.done, 5000);
        if (r.error)
                fail_msg("%s", r.msg);
        /* Bytes the proxy sent right after its reply are stream data. */
        assert_string_equal(r.rx.data, "early tunnelled");
        assert_true(util_startswith(net_conn_peer(r.c), "127.0.0.1:"));
        rec_done(&r);
        srv_stop(&s);
        assert_int_equal(loop_run_once(l, 0), 0);
        loop_free(l);
        reap(pid);
}

static void test_proxy_auth_refused(void **state) {
        loop *l = NULL;
        rec r;
        uint16_t pport;
        char url[128];
        proxy_cfg cfg = { .want_auth = "Basic dXNlcjpwQHNz" };
        pid_t pid = proxy_fork(&cfg, &pport);
        net_options o = { .host = "127.0.0.1", .port = 9 };

        assert_int_equal(loop_new(&l), 0);
        rec_init(&r);
        snprintf(url, sizeof url, "http://user:wrong@127.0.0.1:%u/", (unsigned)pport);
        o.proxy = url;
        assert_int_equal(start(l, &r, &o), 0);
        RUN_UNTIL(l, r.done, 5000);
        assert_int_equal(r.err, -EACCES);
        assert_non_null(strstr(r.msg, "HTTP 407 Proxy Authentication Required"));
        rec_done(&r);
        assert_int_equal(loop_run_once(l, 0), 0);
        loop_free(l);
        reap(pid);
}

static void test_proxy_forbidden_target(void **state) {
        loop *l = NULL;
        rec r;
        uint16_t pport;
        char url[128];
        proxy_cfg cfg = { 0 };
        pid_t pid = proxy_fork(&cfg, &pport);
        net_options o = { .host = "blocked.example", .port = 443 };

        assert_int_equal(loop_new(&l), 0);
        rec_init(&r);
        snprintf(url, sizeof url, "127.0.0.1:%u", (unsigned)pport);
        o.proxy = url;
        assert_int_equal(start(l, &r, &o), 0);
        RUN_UNTIL(l, r.done, 5000);
        assert_int_equal(r.err, -ECONNABORTED);
        assert_non_null(strstr(r.msg, "refused CONNECT blocked.example:443: HTTP 403 Forbidden"));
        rec_done(&r);
        assert_int_equal(loop_run_once(l, 0), 0);
        loop_free(l);
        reap(pid);
}

static void test_proxy_tls(void **state) {
        loop *l = NULL;
        rec r;
        uint16_t pport, tport;
        char url[128];
        proxy_cfg cfg = { 0 };
        pid_t tpid = tls_server_fork(good_cert, good_key, &tport);
        pid_t ppid = proxy_fork(&cfg, &pport);
        net_options o = { .host = "localhost", .tls = true, .ca_file = ca_path };

        assert_int_equal(loop_new(&l), 0);
        rec_init(&r);
        snprintf(url, sizeof url, "http://127.0.0.1:%u", (unsigned)pport);
        o.port = tport;
        o.proxy = url;
        r.send_on_connect = "via proxy";
        assert_int_equal(start(l, &r, &o), 0);
        RUN_UNTIL(l, r.done || (r.rx.data && strstr(r.rx.data, "via proxy")), 5000);
        if (r.error)
                fail_msg("%s", r.msg);
        assert_string_equal(r.rx.data, "sni=localhost\nvia proxy");
        rec_done(&r);
        assert_int_equal(loop_run_once(l, 0), 0);
        loop_free(l);
        reap(ppid);
        reap(tpid);
}

static void test_proxy_refused(void **state) {
        loop *l = NULL;
        rec r;
        uint16_t port;
        char url[64];
        int fd = listen_local(1, &port);
        net_options o = { .host = "example.com", .port = 80 };

        close(fd);
        snprintf(url, sizeof url, "http://127.0.0.1:%u", (unsigned)port);
        o.proxy = url;
        assert_int_equal(loop_new(&l), 0);
        rec_init(&r);
        assert_int_equal(start(l, &r, &o), 0);
        RUN_UNTIL(l, r.done, 3000);
        assert_int_equal(r.err, -ECONNREFUSED);
        snprintf(url, sizeof url, "connect to example.com:80 via proxy 127.0.0.1:%u failed: ",
                 (unsigned)port);
        assert_true(util_startswith(r.msg, url));
        rec_done(&r);
        assert_int_equal(loop_run_once(l, 0), 0);
        loop_free(l);
}

/* ---- net_proxy_for ---- */

static void test_proxy_for(void **state) {
        static const struct {
                const char *host;
                uint16_t port;
                bool tls;
                const char *no_proxy;
                bool proxied;
        } t[] = {
                { "controller.example", 443, true, NULL, true },
                { "controller.example", 443, true, "", true },
                { "controller.example", 443, true, "*", false },
                { "controller.example", 443, true, "controller.example", false },
                { "CONTROLLER.example.", 443, true, "controller.EXAMPLE", false },
                { "controller.example", 443, true, "example", false },
                { "controller.example", 443, true, ".example", false },
                { "controller.example", 443, true, "*.example", false },
                { "example", 443, true, ".example", false },
                { "controller.example", 443, true, "ller.example", true },
                { "controller.example", 443, true, "other.example, foo", true },
                { "controller.example", 443, true, "other.example,  controller.example ", false },
                { "controller.example", 443, true, "other.example controller.example", false },
                { "controller.example", 443, true, "controller.example:443", false },
                { "controller.example", 443, true, "controller.example:8443", true },
                { "controller.example", 443, true, "controller.example:bad", true },
                { "10.1.2.3", 80, false, "10.1.2.3", false },
                { "10.1.2.3", 80, false, "10.1.2.4", true },
                { "10.1.2.3", 80, false, "10.0.0.0/8", false },
                { "10.1.2.3", 80, false, "10.1.2.0/24:80", false },
                { "10.1.2.3", 80, false, "10.1.2.0/24:81", true },
                { "11.1.2.3", 80, false, "10.0.0.0/8", true },
                { "10.1.2.3", 80, false, "0.0.0.0/0", false },
                { "10.1.2.3", 80, false, "1.2.3", true },
                { "10.1.2.3", 80, false, ".2.3", true },
                { "::1", 80, false, "::1", false },
                { "[::1]", 80, false, "::1", false },
                { "::1", 80, false, "[::1]", false },
                { "::1", 80, false, "[::1]:80", false },
                { "::1", 80, false, "[::1]:81", true },
                { "fd00::5", 80, false, "fd00::/8", false },
                { "fe80::5", 80, false, "fd00::/8", true },
                { "0:0:0:0:0:0:0:1", 80, false, "::1", false },
                { "localhost", 80, false, "localhost,127.0.0.1", false },
                { "127.0.0.1", 80, false, "localhost", true },
                { "localhost.", 80, false, "localhost", false },
                { "host", 80, false, ",,, ,", true },
                { "host", 80, false, ".", true },
        };

        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
                const char *p = net_proxy_for(t[i].host, t[i].port, t[i].tls, "http://h:1",
                                              "http://s:2", t[i].no_proxy);
                if ((p != NULL) != t[i].proxied)
                        fail_msg("case %zu: %s:%u no_proxy=\"%s\": %s", i, t[i].host,
                                 (unsigned)t[i].port, t[i].no_proxy ? t[i].no_proxy : "(null)",
                                 p ? p : "direct");
                if (p)
                        assert_string_equal(p, t[i].tls ? "http://s:2" : "http://h:1");
        }
        assert_null(net_proxy_for("a", 80, false, NULL, "http://s:2", NULL));
        assert_null(net_proxy_for("a", 80, false, "", "http://s:2", NULL));
        assert_null(net_proxy_for("a", 443, true, "http://h:1", NULL, NULL));
        assert_string_equal(net_proxy_for("a", 443, true, "http://h:1", "http://s:2", NULL),
                            "http://s:2");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_proxy_for, fd_setup, fd_teardown),
                cmocka_unit_test_setup_teardown(test_invalid_options, fd_setup, fd_teardown),
                cmocka_unit_test_setup_teardown(test_tcp_echo_and_eof, fd_setup, fd_teardown),
                cmocka_unit_test_setup_teardown(test_tcp_localhost_resolved, fd_setup, fd_teardown),
                cmocka_unit_test_setup_teardown(test_tcp_refused, fd_setup, fd_teardown),
                cmocka_unit_test_setup_teardown(test_dns_failure, fd_setup, fd_teardown),
                cmocka_unit_test_setup_teardown(test_connect_timeout, fd_setup, fd_teardown),
                cmocka_unit_test_setup_teardown(test_free_anywhere, fd_setup, fd_teardown),
                cmocka_unit_test_setup_teardown(test_write_buffering, fd_setup, fd_teardown),
                cmocka_unit_test_setup_teardown(test_tls, fd_setup, fd_teardown),
                cmocka_unit_test_setup_teardown(test_tls_bulk_and_close, fd_setup, fd_teardown),
                cmocka_unit_test_setup_teardown(test_tls_bad_ca_file, fd_setup, fd_teardown),
                cmocka_unit_test_setup_teardown(test_tls_handshake_timeout, fd_setup, fd_teardown),
                cmocka_unit_test_setup_teardown(test_proxy_tcp_with_auth, fd_setup, fd_teardown),
                cmocka_unit_test_setup_teardown(test_proxy_auth_refused, fd_setup, fd_teardown),
                cmocka_unit_test_setup_teardown(test_proxy_forbidden_target, fd_setup, fd_teardown),
                cmocka_unit_test_setup_teardown(test_proxy_tls, fd_setup, fd_teardown),
                cmocka_unit_test_setup_teardown(test_proxy_refused, fd_setup, fd_teardown),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
