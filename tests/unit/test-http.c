/* http on a real loop against a small HTTP server forked by the test, and
 * against tests/helpers/http-fixture-server.py for TLS, Unix sockets, resets
 * and many concurrent requests. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/http.h"
#include "core/loop.h"

static pid_t srv_pid;
static int srv_port;

static void reply(int fd, const char *status, const char *extra, const char *body, size_t len) {
        char h[512];
        int n = snprintf(h, sizeof h, "HTTP/1.1 %s\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n", status, len,
                         extra);
        if (write(fd, h, (size_t)n) < 0)
                return;
        while (len > 0) {
                ssize_t w = write(fd, body, len);
                if (w <= 0)
                        return;
                body += w;
                len -= (size_t)w;
        }
}

static void serve(int lfd) {
        for (;;) {
                char req[4096] = "";
                int fd = accept(lfd, NULL, NULL);
                ssize_t n;
                if (fd < 0)
                        continue;
                n = read(fd, req, sizeof req - 1);
                if (n <= 0) {
                        close(fd);
                        continue;
                }
                if (strncmp(req, "GET /ok ", 8) == 0) {
                        reply(fd, "200 OK", "ETag: \"abc\"\r\n", "hello", 5);
                } else if (strncmp(req, "POST /echo ", 11) == 0) {
                        char *b = strstr(req, "\r\n\r\n");
                        b = b ? b + 4 : req;
                        reply(fd, "201 Created", "", b, strlen(b));
                } else if (strncmp(req, "GET /redir ", 11) == 0) {
                        reply(fd, "302 Found", "Location: /ok\r\n", "", 0);
                } else if (strncmp(req, "GET /big ", 9) == 0) {
                        static char big[1 << 20];
                        memset(big, 'x', sizeof big);
                        reply(fd, "200 OK", "", big, sizeof big);
                } else if (strncmp(req, "GET /range ", 11) == 0) {
                        const char *rg = strstr(req, "Range: bytes=");
                        int from = rg ? atoi(rg + 13) : 0;
                        const char *all = "0123456789";
                        if (from > 0)
                                reply(fd, "206 Partial Content", "Content-Range: bytes 4-9/10\r\n", all + from,
                                      strlen(all + from));
                        else
                                reply(fd, "200 OK", "", all, 10);
                } else if (strncmp(req, "GET /slow ", 10) == 0) {
                        sleep(3);
                        reply(fd, "200 OK", "", "late", 4);
                } else {
                        reply(fd, "404 Not Found", "", "nope", 4);
                }
                close(fd);
        }
}

static int setup(void **state) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t sl = sizeof sa;
        int lfd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 64) < 0)
                return -1;
        getsockname(lfd, (struct sockaddr *)&sa, &sl);
        srv_port = ntohs(sa.sin_port);
        srv_pid = fork();
        if (srv_pid == 0) {
                setpgid(0, 0); /* one group, killed as a whole in teardown */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                /* A few workers so /slow does not block the others. */
                for (int i = 0; i < 3; i++)
                        if (fork() == 0) {
                                prctl(PR_SET_PDEATHSIG, SIGKILL);
                                serve(lfd);
                        }
                serve(lfd);
        }
        close(lfd);
        return 0;
}

static int teardown(void **state) {
        kill(-srv_pid, SIGKILL);
        kill(srv_pid, SIGKILL);
        waitpid(srv_pid, NULL, 0);
        return 0;
}

typedef struct res {
        loop *l;
        int done, err;
        long status;
        char body[64];
        size_t bytes;
        char etag[32];
        char error[256];
        int ticks;
} res;

static void on_done(http_request *req, const http_result *r, void *ud) {
        res *x = ud;
        const char *et = http_request_header(req, "etag");
        x->done++;
        x->err = r->err;
        x->status = r->status;
        x->bytes = (size_t)r->bytes;
        snprintf(x->body, sizeof x->body, "%s", r->body->data ? r->body->data : "");
        snprintf(x->etag, sizeof x->etag, "%s", et ? et : "");
        snprintf(x->error, sizeof x->error, "%s", r->error);
        loop_stop(x->l);
}

static void run(loop *l, http_client *c, const http_options *o, res *x) {
        x->l = l;
        assert_int_equal(http_request_start(c, o, on_done, x, NULL), 0);
        assert_int_equal(x->done, 0); /* never from inside start */
        loop_run(l);
}

static void url(char *out, size_t n, const char *path) {
        snprintf(out, n, "http://127.0.0.1:%d%s", srv_port, path);
}

static void test_get_post_status(void **state) {
        loop *l;
        http_client *c;
        char u[128];
        assert_int_equal(loop_new(&l), 0);
        assert_int_equal(http_client_new(l, &c), 0);
        {
                res x = { 0 };
                url(u, sizeof u, "/ok");
                http_options o = { .url = u };
                run(l, c, &o, &x);
                assert_int_equal(x.err, 0);
                assert_int_equal(x.status, 200);
                assert_string_equal(x.body, "hello");
                assert_string_equal(x.etag, "\"abc\"");
        }
        {
                res x = { 0 };
                const char *h[] = { "Content-Type: application/json", NULL };
                url(u, sizeof u, "/echo");
                http_options o = { .url = u, .method = "POST", .body = "{\"a\":1}", .body_len = 7, .headers = h };
                run(l, c, &o, &x);
                assert_int_equal(x.status, 201);
                assert_string_equal(x.body, "{\"a\":1}");
        }
        {
                res x = { 0 };
                url(u, sizeof u, "/missing");
                http_options o = { .url = u };
                run(l, c, &o, &x);
                assert_int_equal(x.err, 0);
                assert_int_equal(x.status, 404);
        }
        {
                res x = { 0 };
                url(u, sizeof u, "/redir");
                http_options o = { .url = u, .follow_redirects = true };
                run(l, c, &o, &x);
                assert_int_equal(x.status, 200);
                assert_string_equal(x.body, "hello");
        }
        {
                res x = { 0 };
                url(u, sizeof u, "/range");
                http_options o = { .url = u, .resume_from = 4 };
                run(l, c, &o, &x);
                assert_int_equal(x.status, 206);
                assert_string_equal(x.body, "456789");
        }
        {
                res x = { 0 };
                url(u, sizeof u, "/big");
                http_options o = { .url = u, .max_response = 1000 };
                run(l, c, &o, &x);
                assert_int_equal(x.err, -E2BIG);
        }
        {
                res x = { 0 };
                http_options o = { .url = "http://127.0.0.1:1/" };
                run(l, c, &o, &x);
                assert_int_equal(x.err, -ECONNREFUSED);
        }
        http_client_free(c);
        loop_run_once(l, 0);
        loop_free(l);
}

static int count_data(http_request *req, const void *d, size_t n, void *ud) {
        ((res *)ud)->bytes += n;
        return 0;
}

static void tick(loop_timer *t, void *ud) {
        ((res *)ud)->ticks++;
        loop_timer_arm(t, 10);
}

static void test_stream_and_timer_keeps_firing(void **state) {
        loop *l;
        http_client *c;
        loop_timer *t;
        char u1[128], u2[128];
        res a = { 0 }, b = { 0 };
        assert_int_equal(loop_new(&l), 0);
        assert_int_equal(http_client_new(l, &c), 0);
        assert_int_equal(loop_timer_new(l, tick, &b, &t), 0);
        loop_timer_arm(t, 10);
        url(u1, sizeof u1, "/slow");
        http_options o = { .url = u1, .on_data = count_data };
        run(l, c, &o, &a);
        assert_string_equal(a.body, ""); /* streamed, not buffered */
        assert_true(b.ticks > 100);      /* the loop went on during the 3 s transfer */
        url(u2, sizeof u2, "/slow");
        {
                res x = { 0 };
                http_options o2 = { .url = u2, .timeout_ms = 300 };
                run(l, c, &o2, &x);
                assert_int_equal(x.err, -ETIMEDOUT);
        }
        {
                http_request *r;
                res x = { 0 };
                http_options o3 = { .url = u2 };
                assert_int_equal(http_request_start(c, &o3, on_done, &x, &r), 0);
                http_request_cancel(r);
                loop_run_once(l, 50);
                assert_int_equal(x.done, 0);
                assert_int_equal(http_client_active(c), 0);
        }
        loop_timer_free(t);
        http_client_free(c);
        loop_run_once(l, 0);
        loop_free(l);
}


/* ---- against tests/helpers/http-fixture-server.py ---- */

#define REPO AIWM_FIXTURES "/../.."

typedef struct pysrv {
        pid_t pid;
        int port;
} pysrv;

/* Starts the fixture server with extra arguments (NULL-terminated) and waits
 * for its "ready <port>" line. */
static void pysrv_start(pysrv *p, ...) {
        const char *argv[16] = { "python3", REPO "/tests/helpers/http-fixture-server.py" };
        size_t n = 2;
        int fds[2];
        char line[64] = "";
        size_t got = 0;
        va_list ap;

        va_start(ap, p);
        for (const char *a; (a = va_arg(ap, const char *)) && n < 15;)
                argv[n++] = a;
        va_end(ap);
        argv[n] = NULL;
        assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
        p->pid = fork();
        assert_true(p->pid >= 0);
        if (p->pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                dup2(fds[1], 1);
                execvp("python3", (char *const *)argv);
                _exit(127);
        }
        close(fds[1]);
        while (got < sizeof line - 1) {
                ssize_t r = read(fds[0], line + got, 1);
                if (r <= 0 || line[got] == '\n')
                        break;
                got++;
        }
        close(fds[0]);
        line[got] = 0;
        assert_true(strncmp(line, "ready ", 6) == 0);
        p->port = (int)strtol(line + 6, NULL, 10);
}

static void pysrv_stop(pysrv *p) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
}

typedef struct env {
        loop *l;
        http_client *c;
} env;

static void env_init(env *e) {
        assert_int_equal(loop_new(&e->l), 0);
        assert_int_equal(http_client_new(e->l, &e->c), 0);
}

static void env_done(env *e) {
        assert_int_equal(http_client_active(e->c), 0);
        http_client_free(e->c);
        loop_run_once(e->l, 0);
        loop_free(e->l);
}

static void test_unix_socket(void **state) {
        char dir[] = "/tmp/test-http-XXXXXX", sock[128];
        pysrv p;
        env e;

        assert_non_null(mkdtemp(dir));
        snprintf(sock, sizeof sock, "%s/s.sock", dir);
        pysrv_start(&p, "--unix", sock, NULL);
        env_init(&e);
        {
                res x = { 0 };
                http_options o = { .url = "http://localhost/ok", .unix_socket = sock };
                run(e.l, e.c, &o, &x);
                assert_int_equal(x.err, 0);
                assert_int_equal(x.status, 200);
                assert_string_equal(x.body, "hello");
        }
        {
                res x = { 0 };
                http_options o = { .url = "http://localhost/echo", .unix_socket = sock, .method = "POST",
                                   .body = "{\"k\":[1,2]}", .body_len = 11 };
                run(e.l, e.c, &o, &x);
                assert_int_equal(x.status, 201);
                assert_string_equal(x.body, "{\"k\":[1,2]}");
        }
        {
                res x = { 0 };
                char missing[160];
                snprintf(missing, sizeof missing, "%s/none.sock", dir);
                http_options o = { .url = "http://localhost/ok", .unix_socket = missing };
                run(e.l, e.c, &o, &x);
                assert_int_equal(x.err, -ECONNREFUSED);
        }
        env_done(&e);
        pysrv_stop(&p);
        unlink(sock);
        rmdir(dir);
}

static void test_tls_and_redirects(void **state) {
        char dir[] = "/tmp/test-http-XXXXXX", cmd[256], cert[128], key[128], ca[128], u[512];
        pysrv tls, plain;
        env e;

        assert_non_null(mkdtemp(dir));
        snprintf(cmd, sizeof cmd, "bash " REPO "/scripts/gen-test-certs.sh %s >/dev/null", dir);
        assert_int_equal(system(cmd), 0);
        snprintf(cert, sizeof cert, "%s/server.crt", dir);
        snprintf(key, sizeof key, "%s/server.key", dir);
        snprintf(ca, sizeof ca, "%s/ca.crt", dir);
        pysrv_start(&tls, "--cert", cert, "--key", key, NULL);
        pysrv_start(&plain, NULL);
        env_init(&e);
        {
                res x = { 0 };
                snprintf(u, sizeof u, "https://localhost:%d/ok", tls.port);
                http_options o = { .url = u, .ca_file = ca };
                run(e.l, e.c, &o, &x);
                assert_int_equal(x.err, 0);
                assert_int_equal(x.status, 200);
        }
        {
                /* Not trusted without the test CA; the credential stays out of the error. */
                res x = { 0 };
                const char *h[] = { "Authorization: Bearer sekrit-token", NULL };
                snprintf(u, sizeof u, "https://localhost:%d/ok", tls.port);
                http_options o = { .url = u, .headers = h, .userpwd = "user:sekrit-pw" };
                http_request *r;
                x.l = e.l;
                assert_int_equal(http_request_start(e.c, &o, on_done, &x, &r), 0);
                loop_run(e.l);
                assert_int_equal(x.err, -EKEYREJECTED);
                assert_true(x.error[0] != 0);
                assert_null(strstr(x.error, "sekrit"));
        }
        {
                res x = { 0 };
                snprintf(u, sizeof u, "https://localhost:%d/redirect?to=https://localhost:%d/ok", tls.port, tls.port);
                http_options o = { .url = u, .ca_file = ca, .follow_redirects = true };
                run(e.l, e.c, &o, &x);
                assert_int_equal(x.err, 0);
                assert_string_equal(x.body, "hello");
        }
        {
                res x = { 0 };
                snprintf(u, sizeof u, "https://localhost:%d/redirect?to=http://127.0.0.1:%d/ok", tls.port,
                         plain.port);
                http_options o = { .url = u, .ca_file = ca, .follow_redirects = true };
                run(e.l, e.c, &o, &x);
                assert_int_equal(x.err, -ELOOP);
        }
        {
                /* http → https → http: the second hop is the downgrade. */
                res x = { 0 };
                snprintf(u, sizeof u,
                         "http://127.0.0.1:%d/redirect?to=https://localhost:%d/redirect%%3Fto%%3Dhttp://127.0.0.1:%d/ok",
                         plain.port, tls.port, plain.port);
                http_options o = { .url = u, .ca_file = ca, .follow_redirects = true };
                run(e.l, e.c, &o, &x);
                assert_int_equal(x.err, -ELOOP);
        }
        {
                /* Plain http redirects are followed, up to max_redirects. */
                res x = { 0 };
                snprintf(u, sizeof u, "http://127.0.0.1:%d/redirect?to=/redirect%%3Fto%%3D/ok", plain.port);
                http_options o = { .url = u, .follow_redirects = true, .max_redirects = 1 };
                run(e.l, e.c, &o, &x);
                assert_int_equal(x.err, -ELOOP);
                o.max_redirects = 2;
                memset(&x, 0, sizeof x);
                run(e.l, e.c, &o, &x);
                assert_int_equal(x.err, 0);
                assert_string_equal(x.body, "hello");
        }
        {
                /* Without follow_redirects the 302 is the answer. */
                res x = { 0 };
                snprintf(u, sizeof u, "http://127.0.0.1:%d/redirect?to=/ok", plain.port);
                http_options o = { .url = u };
                run(e.l, e.c, &o, &x);
                assert_int_equal(x.err, 0);
                assert_int_equal(x.status, 302);
        }
        env_done(&e);
        pysrv_stop(&tls);
        pysrv_stop(&plain);
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        assert_int_equal(system(cmd), 0);
}

static void test_faults(void **state) {
        char u[128];
        pysrv p;
        env e;

        pysrv_start(&p, NULL);
        env_init(&e);
        {
                res x = { 0 };
                snprintf(u, sizeof u, "http://127.0.0.1:%d/drop", p.port);
                http_options o = { .url = u };
                run(e.l, e.c, &o, &x);
                assert_int_equal(x.err, -ECONNRESET);
        }
        {
                /* Stalled before the headers: low-speed limit. */
                res x = { 0 };
                snprintf(u, sizeof u, "http://127.0.0.1:%d/slow?s=5", p.port);
                http_options o = { .url = u, .low_speed_limit = 1, .low_speed_time_s = 1 };
                uint64_t t0 = loop_now_update(e.l);
                run(e.l, e.c, &o, &x);
                assert_int_equal(x.err, -ETIMEDOUT);
                assert_true(loop_now_update(e.l) - t0 < 3000);
        }
        {
                res x = { 0 };
                snprintf(u, sizeof u, "http://127.0.0.1:%d/range", p.port);
                http_options o = { .url = u, .resume_from = 20 };
                run(e.l, e.c, &o, &x);
                assert_int_equal(x.status, 416);
        }
        env_done(&e);
        pysrv_stop(&p);
}

typedef struct many {
        loop *l;
        int done, ok;
} many;

static void many_done(http_request *req, const http_result *r, void *ud) {
        many *m = ud;
        m->done++;
        if (r->err == 0 && r->status == 200 && r->body->len == 5)
                m->ok++;
        else
                fprintf(stderr, "many: %d %s %ld\n", r->err, r->error, r->status);
        if (m->done == 100)
                loop_stop(m->l);
}

static void test_many_concurrent(void **state) {
        char u[128];
        pysrv p;
        env e;
        many m = { 0 };

        pysrv_start(&p, NULL);
        env_init(&e);
        m.l = e.l;
        snprintf(u, sizeof u, "http://127.0.0.1:%d/ok", p.port);
        for (int i = 0; i < 100; i++) {
                http_options o = { .url = u, .timeout_ms = 20000 };
                assert_int_equal(http_request_start(e.c, &o, many_done, &m, NULL), 0);
        }
        assert_int_equal(http_client_active(e.c), 100);
        loop_run(e.l);
        assert_int_equal(m.ok, 100);
        env_done(&e);
        pysrv_stop(&p);
}

/* Re-entrancy: from inside on_data, start a request, cancel another one and
 * cancel the request itself. */
typedef struct reent {
        env *e;
        char url_ok[128];
        http_request *self, *other;
        res started;
        int self_done, other_done, chunks;
} reent;

static void reent_self_done(http_request *req, const http_result *r, void *ud) {
        ((reent *)ud)->self_done++;
}

static void reent_other_done(http_request *req, const http_result *r, void *ud) {
        ((reent *)ud)->other_done++;
}

static int reent_data(http_request *req, const void *d, size_t n, void *ud) {
        reent *x = ud;
        http_options o = { .url = x->url_ok };

        x->chunks++;
        x->started.l = x->e->l;
        assert_int_equal(http_request_start(x->e->c, &o, on_done, &x->started, NULL), 0);
        http_request_cancel(x->other);
        http_request_cancel(req);
        http_request_cancel(req); /* twice is harmless */
        return 0;
}

static void cancel_self_in_done(http_request *req, const http_result *r, void *ud) {
        res *x = ud;
        http_request_cancel(req); /* a no-op here */
        on_done(req, r, ud);
        (void)x;
}

static void test_reentrancy(void **state) {
        char u[128], u2[128];
        pysrv p;
        env e;
        reent x = { 0 };

        pysrv_start(&p, NULL);
        env_init(&e);
        x.e = &e;
        snprintf(x.url_ok, sizeof x.url_ok, "http://127.0.0.1:%d/ok", p.port);
        snprintf(u, sizeof u, "http://127.0.0.1:%d/trickle?n=20", p.port);
        snprintf(u2, sizeof u2, "http://127.0.0.1:%d/slow?s=2", p.port);
        {
                http_options o = { .url = u, .on_data = reent_data };
                http_options o2 = { .url = u2 };
                assert_int_equal(http_request_start(e.c, &o, reent_self_done, &x, &x.self), 0);
                assert_int_equal(http_request_start(e.c, &o2, reent_other_done, &x, &x.other), 0);
                loop_run(e.l); /* stopped by the request started from on_data */
        }
        assert_int_equal(x.chunks, 1);
        assert_int_equal(x.self_done, 0);
        assert_int_equal(x.other_done, 0);
        assert_int_equal(x.started.done, 1);
        assert_int_equal(x.started.status, 200);
        assert_string_equal(x.started.body, "hello");
        {
                res y = { 0 };
                http_options o = { .url = x.url_ok };
                y.l = e.l;
                assert_int_equal(http_request_start(e.c, &o, cancel_self_in_done, &y, NULL), 0);
                loop_run(e.l);
                assert_int_equal(y.done, 1);
        }
        env_done(&e);
        pysrv_stop(&p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_get_post_status),
                cmocka_unit_test(test_stream_and_timer_keeps_firing),
                cmocka_unit_test(test_unix_socket),
                cmocka_unit_test(test_tls_and_redirects),
                cmocka_unit_test(test_faults),
                cmocka_unit_test(test_many_concurrent),
                cmocka_unit_test(test_reentrancy),
        };
        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, setup, teardown);
}
