/* http on a real loop against a small HTTP server forked by the test. */
#include <arpa/inet.h>
#include <errno.h>
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

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_get_post_status),
                cmocka_unit_test(test_stream_and_timer_keeps_firing),
        };
        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, setup, teardown);
}
