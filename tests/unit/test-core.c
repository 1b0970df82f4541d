/* Unit tests of src/core: buf, util, loop, log. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"

static void test_buf_basic(void **state) {
        buf b;
        buf_init(&b, 16);
        assert_int_equal(buf_append_str(&b, "hello"), 0);
        assert_int_equal(buf_appendf(&b, " %d", 42), 0);
        assert_string_equal(b.data, "hello 42");
        buf_consume(&b, 6);
        assert_string_equal(b.data, "42");
        assert_int_equal(buf_append_str(&b, "0123456789abcdef"), -E2BIG);
        assert_null(b.data); /* freed on failure */
        assert_int_equal(b.len, 0);
        assert_int_equal(buf_append(&b, "x", 1), 0);
        char *s = buf_steal(&b);
        assert_string_equal(s, "x");
        free(s);
        assert_null(b.data);
        buf_done(&b);
}

static void test_util_uuid(void **state) {
        char a[37], b[37];
        util_uuid4(a);
        util_uuid4(b);
        assert_int_equal(strlen(a), 36);
        assert_string_not_equal(a, b);
        assert_int_equal(a[8], '-');
        assert_int_equal(a[14], '4');
        assert_true(strchr("89ab", a[19]) != NULL);
        for (int i = 0; i < 36; i++)
                assert_true(a[i] == '-' || strchr("0123456789abcdef", a[i]));
}

static void test_util_iso(void **state) {
        char out[25];
        util_iso_ms(1795834347169LL, out);
        assert_string_equal(out, "2026-11-28T02:52:27.169Z");
        util_iso_ms(0, out);
        assert_string_equal(out, "1970-01-01T00:00:00.000Z");
        util_iso_now(out);
        assert_int_equal(strlen(out), 24);
        assert_int_equal(out[23], 'Z');
}

static void test_util_parse(void **state) {
        static const struct {
                const char *in;
                int r;
                int64_t v;
        } cases[] = {
                { "30000", 0, 30000 }, { "0", 0, 0 },       { "-1", -ERANGE, 0 },
                { "", -EINVAL, 0 },    { "12a", -EINVAL, 0 }, { " 5", -EINVAL, 0 },
                { "99999999999999999999", -ERANGE, 0 },
        };
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
                int64_t v = -7;
                int r = util_parse_i64(cases[i].in, 0, INT64_MAX, &v);
                assert_int_equal(r, cases[i].r);
                if (r == 0)
                        assert_int_equal(v, cases[i].v);
        }
}

static void test_util_base64(void **state) {
        static const struct {
                const char *raw, *enc;
        } cases[] = { { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" }, { "foobar", "Zm9vYmFy" } };
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
                char enc[32];
                unsigned char dec[32];
                util_base64_encode(cases[i].raw, strlen(cases[i].raw), enc);
                assert_string_equal(enc, cases[i].enc);
                int n = util_base64_decode(enc, strlen(enc), dec);
                assert_int_equal(n, (int)strlen(cases[i].raw));
                assert_memory_equal(dec, cases[i].raw, (size_t)n);
        }
        unsigned char d[8];
        assert_int_equal(util_base64_decode("-_8", 3, d), 2); /* base64url */
        assert_int_equal(d[0], 0xfb);
        assert_int_equal(util_base64_decode("a*b=", 4, d), -EINVAL);
}

static void test_util_strip(void **state) {
        char s[] = "  \t token \n";
        assert_string_equal(util_strstrip(s), "token");
}

/* ---- loop ---- */

typedef struct {
        int order[8];
        int n;
        loop_timer *rearm;
        int rearm_count;
} timer_rec;

static void rec_cb(loop_timer *t, void *ud) {
        timer_rec *r = ud;
        (void)t;
        r->order[r->n++] = 1;
}

static void rec_cb2(loop_timer *t, void *ud) {
        timer_rec *r = ud;
        (void)t;
        r->order[r->n++] = 2;
}

static void stop_cb(loop_timer *t, void *ud) {
        loop_stop(ud);
        loop_timer_free(t);
}

static void test_loop_timers(void **state) {
        loop *l;
        loop_timer *a, *b, *c, *s;
        timer_rec rec = { 0 };

        assert_int_equal(loop_new(&l), 0);
        assert_int_equal(loop_timer_new(l, rec_cb, &rec, &a), 0);
        assert_int_equal(loop_timer_new(l, rec_cb2, &rec, &b), 0);
        assert_int_equal(loop_timer_new(l, rec_cb2, &rec, &c), 0);
        assert_int_equal(loop_timer_new(l, stop_cb, l, &s), 0);
        loop_timer_arm(a, 30);
        loop_timer_arm(b, 10);
        loop_timer_arm(c, 5);
        loop_timer_disarm(c);
        assert_false(loop_timer_armed(c));
        loop_timer_arm(s, 50);
        uint64_t t0 = util_mono_ms();
        assert_int_equal(loop_run(l), 0);
        uint64_t el = util_mono_ms() - t0;
        assert_true(el >= 45 && el < 500);
        assert_int_equal(rec.n, 2);
        assert_int_equal(rec.order[0], 2);
        assert_int_equal(rec.order[1], 1);
        loop_timer_free(a);
        loop_timer_free(b);
        loop_timer_free(c);
        l = loop_free(l);
        assert_null(l);
}

static int zero_count;
static void zero_cb(loop_timer *t, void *ud) {
        zero_count++;
        if (zero_count < 5)
                loop_timer_arm(t, 0); /* must not starve the turn */
}

static void test_loop_timer_rearm_zero(void **state) {
        loop *l;
        loop_timer *t;
        assert_int_equal(loop_new(&l), 0);
        assert_int_equal(loop_timer_new(l, zero_cb, NULL, &t), 0);
        loop_timer_arm(t, 0);
        assert_int_equal(loop_run_once(l, 0), 0);
        assert_int_equal(zero_count, 1);
        for (int i = 0; i < 10; i++)
                loop_run_once(l, 0);
        assert_int_equal(zero_count, 5);
        loop_timer_free(t);
        loop_free(l);
}

typedef struct {
        int reads;
        char data[16];
        loop *l;
} io_rec;

static void io_cb(loop_io *io, int fd, unsigned events, void *ud) {
        io_rec *r = ud;
        ssize_t n = read(fd, r->data, sizeof r->data - 1);
        if (n > 0)
                r->data[n] = 0;
        r->reads++;
        loop_io_stop(io); /* freeing from inside the callback is safe */
        loop_stop(r->l);
}

static void test_loop_io(void **state) {
        loop *l;
        loop_io *io;
        int p[2];
        io_rec r = { 0 };

        assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
        assert_int_equal(loop_new(&l), 0);
        r.l = l;
        assert_int_equal(loop_io_start(l, p[0], LOOP_READ, io_cb, &r, &io), 0);
        assert_int_equal(write(p[1], "ping", 4), 4);
        assert_int_equal(loop_run(l), 0);
        assert_int_equal(r.reads, 1);
        assert_string_equal(r.data, "ping");
        close(p[0]);
        close(p[1]);
        loop_free(l);
}

static int got_signal;
static void sig_cb(loop *l, int signo, void *ud) {
        got_signal = signo;
        loop_stop(l);
}

static void test_loop_signal(void **state) {
        loop *l;
        assert_int_equal(loop_new(&l), 0);
        assert_int_equal(loop_signal(l, SIGUSR1, sig_cb, NULL), 0);
        kill(getpid(), SIGUSR1);
        assert_int_equal(loop_run(l), 0);
        assert_int_equal(got_signal, SIGUSR1);
        loop_signal(l, SIGUSR1, NULL, NULL);
        loop_free(l);
}

static int child_status = -1;
static void child_cb(loop_child *c, pid_t pid, int status, void *ud) {
        child_status = status;
        loop_stop(ud);
}

static void test_loop_child(void **state) {
        loop *l;
        pid_t pid;
        assert_int_equal(loop_new(&l), 0);
        pid = fork();
        if (pid == 0)
                _exit(7);
        assert_true(pid > 0);
        assert_int_equal(loop_child_watch(l, pid, child_cb, l, NULL), 0);
        assert_int_equal(loop_run(l), 0);
        assert_true(WIFEXITED(child_status));
        assert_int_equal(WEXITSTATUS(child_status), 7);
        loop_free(l);
}

static int deferred[3];
static int ndeferred;
static void defer_cb(void *ud) {
        deferred[ndeferred++] = (int)(intptr_t)ud;
}

static void test_loop_defer(void **state) {
        loop *l;
        assert_int_equal(loop_new(&l), 0);
        loop_defer(l, defer_cb, (void *)1);
        loop_defer(l, defer_cb, (void *)2);
        assert_int_equal(loop_run_once(l, 1000), 0); /* does not wait: deferred work pending */
        assert_int_equal(ndeferred, 2);
        assert_int_equal(deferred[0], 1);
        assert_int_equal(deferred[1], 2);
        loop_free(l);
}

static void test_loop_many_timers(void **state) {
        loop *l;
        enum { N = 1000 };
        loop_timer *t[N];
        assert_int_equal(loop_new(&l), 0);
        for (int i = 0; i < N; i++) {
                assert_int_equal(loop_timer_new(l, rec_cb, NULL, &t[i]), 0);
                loop_timer_arm(t[i], (uint64_t)((i * 7919) % 1000) + 100000);
        }
        for (int i = 0; i < N; i += 2)
                loop_timer_free(t[i]);
        for (int i = 1; i < N; i += 2)
                loop_timer_free(t[i]);
        loop_run_once(l, 0);
        loop_free(l);
}

static void test_log_json(void **state) {
        char path[] = "/tmp/aiwm-log-XXXXXX";
        int fd = mkstemp(path);
        char *out = NULL;
        assert_true(fd >= 0);
        log_setup(LOG_INFO, LOG_FORMAT_JSON);
        log_set_fd(fd);
        log_debug("hidden", NULL);
        log_info("connected \"x\"", "url", "ws://a/b", NULL);
        log_set_fd(2);
        log_setup(LOG_INFO, LOG_FORMAT_TEXT);
        assert_int_equal(util_read_file(path, 4096, &out, NULL), 0);
        assert_non_null(strstr(out, "\"level\":\"info\",\"message\":\"connected \\\"x\\\"\",\"url\":\"ws://a/b\"}\n"));
        assert_null(strstr(out, "hidden"));
        free(out);
        close(fd);
        unlink(path);
        log_level lv;
        assert_int_equal(log_level_parse("WARN", &lv), 0);
        assert_int_equal(lv, LOG_WARN);
        assert_int_equal(log_level_parse("loud", &lv), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_buf_basic),       cmocka_unit_test(test_util_uuid),
                cmocka_unit_test(test_util_iso),        cmocka_unit_test(test_util_parse),
                cmocka_unit_test(test_util_base64),     cmocka_unit_test(test_util_strip),
                cmocka_unit_test(test_loop_timers),     cmocka_unit_test(test_loop_timer_rearm_zero),
                cmocka_unit_test(test_loop_io),         cmocka_unit_test(test_loop_signal),
                cmocka_unit_test(test_loop_child),      cmocka_unit_test(test_loop_defer),
                cmocka_unit_test(test_loop_many_timers), cmocka_unit_test(test_log_json),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
