/* The pure parts of docker/: version and info parsing (replies captured from
 * Podman 4.3 in tests/fixtures/docker, Docker replies written from the Engine
 * API reference), API negotiation, error mapping, the JSON stream splitter
 * and the log demultiplexer at every split point, timestamps, stats. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/util.h"
#include "docker/docker.h"

#define FIX AIWM_FIXTURES "/docker/"

static char *load(const char *name, size_t *ret_len) {
        char path[512], *data = NULL;
        size_t len = 0;
        snprintf(path, sizeof path, FIX "%s", name);
        if (util_read_file(path, 1 << 20, &data, &len) < 0)
                fail_msg("cannot read %s", path);
        if (ret_len)
                *ret_len = len;
        return data;
}

/* ---- version, info, negotiation ---- */

static void test_version(void **state) {
        static const struct {
                const char *file;
                docker_runtime rt;
                const char *version, *api;
                unsigned minor;
        } cases[] = {
                { "version-podman.json", DOCKER_RUNTIME_PODMAN, "4.3.1", "1.41", 41 },
                { "version-docker.json", DOCKER_RUNTIME_DOCKER, "24.0.7", "1.43", 43 },
                { "version-docker-new.json", DOCKER_RUNTIME_DOCKER, "27.3.1", "1.47", DOCKER_API_MAX_MINOR },
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                size_t len;
                char *d = load(cases[i].file, &len);
                docker_version v;
                unsigned minor = 0;
                assert_int_equal(docker_version_parse(d, len, &v), 0);
                assert_int_equal(v.runtime, cases[i].rt);
                assert_string_equal(v.version, cases[i].version);
                assert_string_equal(v.api_version, cases[i].api);
                assert_string_equal(v.os, "linux");
                assert_int_equal(docker_api_negotiate(v.api_version, &minor), 0);
                assert_int_equal(minor, cases[i].minor);
                free(d);
        }
        {
                /* Platform.Name alone also says Podman. */
                const char *s = "{\"Platform\":{\"Name\":\"Podman Engine\"},\"Version\":\"3.4.4\",\"ApiVersion\":\"1.40\"}";
                docker_version v;
                assert_int_equal(docker_version_parse(s, strlen(s), &v), 0);
                assert_int_equal(v.runtime, DOCKER_RUNTIME_PODMAN);
                assert_string_equal(docker_runtime_name(v.runtime), "podman");
        }
        static const char *bad[] = { "", "[]", "null", "{", "{\"Version\":\"1\"}", "{\"ApiVersion\":\"1.41\"}",
                                     "{\"ApiVersion\":1.41,\"Version\":\"x\"}", "{\"ApiVersion\":\"\",\"Version\":\"x\"}" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                docker_version v;
                assert_int_equal(docker_version_parse(bad[i], strlen(bad[i]), &v), -EBADMSG);
        }
}

static void test_negotiate(void **state) {
        static const struct {
                const char *api;
                int r;
                unsigned minor;
        } cases[] = {
                { "1.41", 0, 41 }, { "1.43", 0, 43 }, { "1.44", 0, 43 }, { "1.47", 0, 43 },
                { "1.24", 0, 24 }, { "1.23", -EPROTONOSUPPORT, 0 }, { "1.12", -EPROTONOSUPPORT, 0 },
                { "2.0", -EINVAL, 0 }, { "1.", -EINVAL, 0 }, { "1.x", -EINVAL, 0 }, { "1.41.1", -EINVAL, 0 },
                { "", -EINVAL, 0 }, { NULL, -EINVAL, 0 }, { "1.-3", -EINVAL, 0 },
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                unsigned minor = 0;
                assert_int_equal(docker_api_negotiate(cases[i].api, &minor), cases[i].r);
                assert_int_equal(minor, cases[i].minor);
        }
}

static void assert_suffix(const char *s, const char *suffix) {
        size_t a = strlen(s), b = strlen(suffix);
        if (a < b || strcmp(s + a - b, suffix) != 0)
                fail_msg("\"%s\" does not end with \"%s\"", s, suffix);
}

static void test_info(void **state) {
        size_t len;
        char *d;
        docker_info in;

        d = load("info-podman.json", &len);
        assert_int_equal(docker_info_parse(d, len, &in), 0);
        assert_suffix(in.root_dir, "/storage"); /* DockerRootDir: graphroot of scripts/podman-env.sh */
        assert_string_equal(in.driver, "vfs");
        assert_string_equal(in.cgroup_driver, "cgroupfs");
        assert_string_equal(in.server_version, "4.3.1");
        assert_true(in.ncpu >= 1);
        assert_true(in.mem_total > 0);
        assert_false(in.nvidia_runtime);
        free(d);

        d = load("info-podman-libpod.json", &len);
        assert_int_equal(docker_info_parse(d, len, &in), 0);
        assert_suffix(in.root_dir, "/storage"); /* store.graphRoot */
        assert_true(in.ncpu >= 1);
        free(d);

        d = load("info-docker.json", &len);
        assert_int_equal(docker_info_parse(d, len, &in), 0);
        assert_string_equal(in.root_dir, "/var/lib/docker");
        assert_string_equal(in.driver, "overlay2");
        assert_string_equal(in.cgroup_version, "2");
        assert_string_equal(in.default_runtime, "runc");
        assert_true(in.nvidia_runtime);
        assert_int_equal(in.ncpu, 64);
        assert_int_equal(in.mem_total, 540431679488LL);
        assert_int_equal(in.containers_running, 3);
        free(d);

        assert_int_equal(docker_info_parse("{}", 2, &in), -EBADMSG);
        assert_int_equal(docker_info_parse("[1]", 3, &in), -EBADMSG);
        assert_int_equal(docker_info_parse("{\"NCPU\":", 8, &in), -EBADMSG);
}

/* ---- errors ---- */

static void test_error_map(void **state) {
        static const struct {
                docker_call call;
                long status;
                const char *body;
                int r;
                const char *msg; /* substring */
        } cases[] = {
                { DOCKER_CALL_START, 204, "", 0, "" },
                { DOCKER_CALL_OTHER, 200, "{}", 0, "" },
                { DOCKER_CALL_START, 304, "", -EALREADY, "already started" },
                { DOCKER_CALL_STOP, 304, "", -ESRCH, "already stopped" },
                { DOCKER_CALL_OTHER, 404, "{\"message\":\"No such container: x\"}", -ENOENT, "No such container: x" },
                { DOCKER_CALL_CREATE, 409, "{\"message\":\"Conflict. The container name \\\"/web\\\" is already in use\"}",
                  -EEXIST, "already in use" },
                { DOCKER_CALL_REMOVE, 409, "{\"message\":\"You cannot remove a running container\"}", -EBUSY,
                  "cannot remove" },
                { DOCKER_CALL_KILL, 409, "{\"message\":\"Container abc is not running\"}", -ESRCH, "not running" },
                { DOCKER_CALL_OTHER, 400, "{\"message\":\"bad parameter\"}", -EINVAL, "bad parameter" },
                { DOCKER_CALL_PULL, 401, "{\"message\":\"unauthorized\"}", -EACCES, "unauthorized" },
                { DOCKER_CALL_PULL, 403, "", -EACCES, "HTTP 403" },
                { DOCKER_CALL_OTHER, 500, "{\"message\":\"oops\"}", -EIO, "oops" },
                { DOCKER_CALL_OTHER, 503, "plain\ntext\x01", -EIO, "plain text?" },
                { DOCKER_CALL_OTHER, 418, "", -EPROTO, "HTTP 418" },
                /* Podman: conflicts as 500 with a cause. */
                { DOCKER_CALL_CREATE, 500,
                  "{\"cause\":\"that name is already in use\",\"message\":\"the container name \\\"w\\\" is already in use\",\"response\":500}",
                  -EEXIST, "already in use" },
                { DOCKER_CALL_REMOVE, 500,
                  "{\"cause\":\"container state improper\",\"message\":\"cannot remove container x as it is running\",\"response\":500}",
                  -EBUSY, "it is running" },
                { DOCKER_CALL_KILL, 500,
                  "{\"cause\":\"container state improper\",\"message\":\"can only kill running containers\",\"response\":500}",
                  -ESRCH, "can only kill" },
                { DOCKER_CALL_OTHER, 500, "{\"cause\":\"no such container\",\"message\":\"no container x\"}", -ENOENT,
                  "no container x" },
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                char msg[128];
                int r = docker_error_map(cases[i].call, cases[i].status, cases[i].body, strlen(cases[i].body), msg,
                                         sizeof msg);
                if (r != cases[i].r || !strstr(msg, cases[i].msg))
                        fail_msg("case %zu: %d \"%s\", want %d \"%s\"", i, r, msg, cases[i].r, cases[i].msg);
        }
        {
                /* Captured replies; and a message longer than the buffer is cut. */
                static const struct {
                        const char *file;
                        docker_call call;
                        long status;
                        int r;
                } files[] = {
                        { "error-podman-404.json", DOCKER_CALL_OTHER, 404, -ENOENT },
                        { "error-podman-name-in-use.json", DOCKER_CALL_CREATE, 500, -EEXIST },
                        { "error-podman-remove-running.json", DOCKER_CALL_REMOVE, 500, -EBUSY },
                        { "error-docker-409.json", DOCKER_CALL_CREATE, 409, -EEXIST },
                };
                for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
                        size_t len;
                        char *d = load(files[i].file, &len), msg[16];
                        assert_int_equal(docker_error_map(files[i].call, files[i].status, d, len, msg, sizeof msg),
                                         files[i].r);
                        assert_int_equal(strlen(msg), sizeof msg - 1);
                        free(d);
                }
        }
}

static void test_pull_error_map(void **state) {
        static const struct {
                const char *msg;
                int r;
        } cases[] = {
                { "reading manifest 1 in 127.0.0.1:5000/aiwm/nope: manifest unknown: manifest unknown", -ENOENT },
                { "pull access denied for nosuchimage, repository does not exist or may require 'docker login'",
                  -ENOENT },
                { "Get \"https://r/v2/\": unauthorized: authentication required", -EACCES },
                { "denied: requested access to the resource is denied", -EACCES },
                { "write /var/lib/docker/tmp/x: no space left on device", -EIO },
                { NULL, -EIO },
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
                assert_int_equal(docker_pull_error_map(cases[i].msg), cases[i].r);
}

/* ---- JSON stream ---- */

typedef struct collect {
        buf out;   /* each value, compact, one per line */
        int n;
        int stop_at;
} collect;

static int collect_cb(json_t *v, void *ud) {
        collect *c = ud;
        char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
        assert_non_null(s);
        buf_append_str(&c->out, s);
        buf_append_str(&c->out, "\n");
        free(s);
        c->n++;
        return c->stop_at && c->n == c->stop_at ? -EINTR : 0;
}

/* Feeds data in two pieces split at `at` (len: whole). */
static int feed_split(const char *data, size_t len, size_t at, collect *c, size_t max) {
        docker_jsonstream s;
        int r;

        docker_jsonstream_init(&s, max);
        r = docker_jsonstream_feed(&s, data, at, collect_cb, c);
        if (r == 0)
                r = docker_jsonstream_feed(&s, data + at, len - at, collect_cb, c);
        if (r == 0)
                r = docker_jsonstream_finish(&s);
        docker_jsonstream_done(&s);
        return r;
}

static void check_stream_file(const char *file, int want) {
        size_t len;
        char *d = load(file, &len);
        collect whole = { 0 };
        buf_init(&whole.out, 0);
        assert_int_equal(feed_split(d, len, len, &whole, 0), 0);
        assert_int_equal(whole.n, want);
        for (size_t at = 0; at <= len; at++) {
                collect c = { 0 };
                buf_init(&c.out, 0);
                assert_int_equal(feed_split(d, len, at, &c, 0), 0);
                assert_int_equal(c.n, want);
                assert_string_equal(c.out.data, whole.out.data);
                buf_done(&c.out);
        }
        {
                /* One byte at a time. */
                docker_jsonstream s;
                collect c = { 0 };
                buf_init(&c.out, 0);
                docker_jsonstream_init(&s, 0);
                for (size_t i = 0; i < len; i++)
                        assert_int_equal(docker_jsonstream_feed(&s, d + i, 1, collect_cb, &c), 0);
                assert_int_equal(docker_jsonstream_finish(&s), 0);
                assert_string_equal(c.out.data, whole.out.data);
                docker_jsonstream_done(&s);
                buf_done(&c.out);
        }
        {
                /* Parse, write, parse: the same values. */
                collect again = { 0 };
                buf_init(&again.out, 0);
                assert_int_equal(feed_split(whole.out.data, whole.out.len, 0, &again, 0), 0);
                assert_string_equal(again.out.data, whole.out.data);
                buf_done(&again.out);
        }
        buf_done(&whole.out);
        free(d);
}

static void test_jsonstream_files(void **state) {
        check_stream_file("pull-podman.jsonl", 4);
        check_stream_file("pull-podman-unknown.jsonl", 1);
        check_stream_file("pull-docker.jsonl", 13);
        check_stream_file("pull-docker-denied.jsonl", 2);
        check_stream_file("events-podman.jsonl", 7);
}

static void test_jsonstream_edges(void **state) {
        static const struct {
                const char *in;
                size_t max;
                int r;
                int n;
        } cases[] = {
                { "", 0, 0, 0 },
                { " \r\n\t ", 0, 0, 0 },
                { "{}{}[1,2]", 0, 0, 3 },
                { "{\"a\":\"}{[\\\"\"}\n{\"b\":\"\\\\\"}", 0, 0, 2 }, /* brackets and escapes inside strings */
                { "{\"a\":1}x", 0, -EBADMSG, 1 },
                { "\"str\"", 0, -EBADMSG, 0 },
                { "42", 0, -EBADMSG, 0 },
                { "{\"a\":1]", 0, -EBADMSG, 0 },     /* brackets balance, jansson refuses */
                { "{\"a\":", 0, -EBADMSG, 0 },      /* cut off: finish */
                { "{\"a\":\"xxxxxxxxxx\"}", 8, -E2BIG, 0 },
                { "{\"a\":\"xxxx\"}", 12, 0, 1 },     /* exactly the cap */
                { "{\"big\":18446744073709551615}", 0, 0, 1 }, /* over int64: read as a double */
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                collect c = { 0 };
                int r;
                buf_init(&c.out, 0);
                r = feed_split(cases[i].in, strlen(cases[i].in), strlen(cases[i].in), &c, cases[i].max);
                if (r != cases[i].r || c.n != cases[i].n)
                        fail_msg("case %zu: r=%d n=%d, want %d %d", i, r, c.n, cases[i].r, cases[i].n);
                buf_done(&c.out);
        }
        {
                /* Nesting over 64 levels. */
                char deep[200];
                collect c = { 0 };
                memset(deep, '[', 65);
                memset(deep + 65, ']', 65);
                buf_init(&c.out, 0);
                assert_int_equal(feed_split(deep, 130, 130, &c, 0), -ELOOP);
                assert_int_equal(feed_split(deep + 1, 128, 128, &c, 0), 0);
                buf_done(&c.out);
        }
        {
                /* The callback stops the feed. */
                collect c = { .stop_at = 2 };
                buf_init(&c.out, 0);
                assert_int_equal(feed_split("{}{}{}", 6, 6, &c, 0), -EINTR);
                assert_int_equal(c.n, 2);
                buf_done(&c.out);
        }
}

/* ---- logs ---- */

static int lines_cb(int stream, const char *line, size_t len, void *ud) {
        buf *b = ud;
        buf_appendf(b, "%d:", stream);
        buf_append(b, line, len);
        buf_append_str(b, "|");
        return 0;
}

static int demux_split(const char *d, size_t len, size_t at, docker_logs_mode mode, size_t max_line, buf *out) {
        docker_logs_demux dm;
        int r;

        docker_logs_demux_init(&dm, mode, max_line);
        r = docker_logs_demux_feed(&dm, d, at, lines_cb, out);
        if (r == 0)
                r = docker_logs_demux_feed(&dm, d + at, len - at, lines_cb, out);
        if (r == 0)
                r = docker_logs_demux_finish(&dm, lines_cb, out);
        docker_logs_demux_done(&dm);
        return r;
}

static void check_demux(const char *d, size_t len, docker_logs_mode mode, size_t max_line, int want_r,
                        const char *want) {
        for (size_t at = 0; at <= len; at++) {
                buf out;
                int r;
                buf_init(&out, 0);
                r = demux_split(d, len, at, mode, max_line, &out);
                if (r != want_r || strcmp(out.data ? out.data : "", want) != 0)
                        fail_msg("split at %zu (mode %d): %d \"%s\", want %d \"%s\"", at, mode, r,
                                 out.data ? out.data : "", want_r, want);
                buf_done(&out);
        }
        {
                docker_logs_demux dm;
                buf out;
                int r = 0;
                buf_init(&out, 0);
                docker_logs_demux_init(&dm, mode, max_line);
                for (size_t i = 0; i < len && r == 0; i++)
                        r = docker_logs_demux_feed(&dm, d + i, 1, lines_cb, &out);
                if (r == 0)
                        r = docker_logs_demux_finish(&dm, lines_cb, &out);
                assert_int_equal(r, want_r);
                assert_string_equal(out.data ? out.data : "", want);
                docker_logs_demux_done(&dm);
                buf_done(&out);
        }
}

static void test_logs_files(void **state) {
        size_t len;
        char *d;

        d = load("logs-podman-mux.bin", &len);
        check_demux(d, len, DOCKER_LOGS_AUTO, 0, 0, "1:out1|2:err1|1:no newline|");
        check_demux(d, len, DOCKER_LOGS_MUX, 0, 0, "1:out1|2:err1|1:no newline|");
        free(d);
        d = load("logs-podman-tty.bin", &len);
        check_demux(d, len, DOCKER_LOGS_AUTO, 0, 0, "1:out1|1:err1|");
        check_demux(d, len, DOCKER_LOGS_RAW, 0, 0, "1:out1|1:err1|");
        free(d);
        d = load("logs-podman-mux-ts.bin", &len);
        {
                buf out;
                buf_init(&out, 0);
                assert_int_equal(demux_split(d, len, len, DOCKER_LOGS_AUTO, 0, &out), 0);
                /* 2026-11-28T07:39:32Z out1 */
                assert_non_null(strstr(out.data, "Z out1|"));
                assert_non_null(strstr(out.data, "2:20"));
                buf_done(&out);
        }
        free(d);
}

static int stop_cb(int stream, const char *line, size_t len, void *ud) {
        return -EINTR;
}

static void test_logs_edges(void **state) {
        static const struct {
                const char *in;
                size_t len;
                docker_logs_mode mode;
                size_t max_line;
                int r;
                const char *out;
        } cases[] = {
                { "", 0, DOCKER_LOGS_AUTO, 0, 0, "" },
                { "hi", 2, DOCKER_LOGS_AUTO, 0, 0, "1:hi|" },                    /* shorter than a header */
                { "\x01\x05", 2, DOCKER_LOGS_AUTO, 0, 0, "1:\x01\x05|" },        /* text after all */
                { "a\r\nb\n\nc", 7, DOCKER_LOGS_RAW, 0, 0, "1:a|1:b|1:|1:c|" },
                { "abcdefghij\n", 11, DOCKER_LOGS_RAW, 4, 0, "1:abcd|1:efgh|1:ij|" },
                { "abcd\n", 5, DOCKER_LOGS_RAW, 4, 0, "1:abcd|" },
                { "\x00\x00\x00\x00\x00\x00\x00\x03in\n", 11, DOCKER_LOGS_AUTO, 0, 0, "1:in|" }, /* stdin frame */
                { "\x02\x00\x00\x00\x00\x00\x00\x00", 8, DOCKER_LOGS_MUX, 0, 0, "" },            /* empty frame */
                { "\x03\x00\x00\x00\x00\x00\x00\x01x", 9, DOCKER_LOGS_MUX, 0, -EBADMSG, "" },
                { "\x01\x00\x01\x00\x00\x00\x00\x01x", 9, DOCKER_LOGS_MUX, 0, -EBADMSG, "" },
                { "\x01\x00\x00\x00\x00\x00\x00\x09" "abc", 11, DOCKER_LOGS_MUX, 0, -EBADMSG, "1:abc|" }, /* cut */
                { "\x01\x00\x00\x00\x00\x00", 6, DOCKER_LOGS_MUX, 0, -EBADMSG, "" },                 /* cut header */
                /* One line across frames and streams interleaved. */
                { "\x01\x00\x00\x00\x00\x00\x00\x02" "ab\x02\x00\x00\x00\x00\x00\x00\x02" "e\n"
                  "\x01\x00\x00\x00\x00\x00\x00\x02" "c\n",
                  30, DOCKER_LOGS_AUTO, 0, 0, "2:e|1:abc|" },
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
                check_demux(cases[i].in, cases[i].len, cases[i].mode, cases[i].max_line, cases[i].r, cases[i].out);
        {
                /* The callback stops the feed. */
                docker_logs_demux dm;
                docker_logs_demux_init(&dm, DOCKER_LOGS_RAW, 0);
                assert_int_equal(docker_logs_demux_feed(&dm, "a\nb\n", 4, stop_cb, NULL), -EINTR);
                docker_logs_demux_done(&dm);
        }
}

static void test_timestamps(void **state) {
        static const struct {
                const char *in;
                int r;
                int64_t ms;
                size_t prefix;
        } cases[] = {
                { "2026-11-28T07:39:32Z out1", 0, 1795851572000LL, 21 },
                { "2026-11-28T07:39:32.123456789Z x", 0, 1795851572123LL, 31 },
                { "2026-11-28T07:39:32.5Z x", 0, 1795851572500LL, 23 },
                { "2026-11-28T09:39:32+02:00 x", 0, 1795851572000LL, 26 },
                { "2026-11-28T02:39:32.010-05:00 ", 0, 1795851572010LL, 30 },
                { "1970-01-01T00:00:00Z ", 0, 0, 21 },
                { "2026-11-28T07:39:32Z", -EINVAL, 0, 0 },        /* no space */
                { "2026-11-28 07:39:32Z x", -EINVAL, 0, 0 },
                { "2026-13-28T07:39:32Z x", -EINVAL, 0, 0 },
                { "2026-11-28T07:39:32.Z x", -EINVAL, 0, 0 },
                { "2026-11-28T07:39:32.1234567890Z x", -EINVAL, 0, 0 },
                { "2026-11-28T07:39:32+0200 x", -EINVAL, 0, 0 },
                { "hello world this is text", -EINVAL, 0, 0 },
                { "", -EINVAL, 0, 0 },
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                int64_t ms = 0;
                size_t prefix = 0;
                int r = docker_log_timestamp_parse(cases[i].in, strlen(cases[i].in), &ms, &prefix);
                if (r != cases[i].r || (r == 0 && (ms != cases[i].ms || prefix != cases[i].prefix)))
                        fail_msg("case %zu \"%s\": %d %lld %zu", i, cases[i].in, r, (long long)ms, prefix);
        }
}

/* ---- stats ---- */

static void test_stats(void **state) {
        size_t l1, l2;
        char *s1 = load("stats-podman-1.json", &l1), *s2 = load("stats-podman-2.json", &l2), *d;
        docker_stats a, b;

        /* Podman's one-shot replies have empty precpu_stats: no CPU % alone. */
        assert_int_equal(docker_stats_parse(s1, l1, NULL, &a), 0);
        assert_false(a.cpu_valid);
        assert_true(a.cpu_percent == 0);
        assert_int_equal(a.cpu_total_ns, 69104815);
        assert_int_equal(a.online_cpus, 2);
        assert_int_equal(a.mem_usage, 360448);
        assert_int_equal(a.mem_used, 360448); /* no stats breakdown from Podman on cgroup v1 */
        assert_int_equal(a.pids, 1);
        assert_true(a.net_rx > 0 && a.net_tx > 0);
        /* With the earlier sample: as `docker stats`. */
        assert_int_equal(docker_stats_parse(s2, l2, &a, &b), 0);
        assert_true(b.cpu_valid);
        assert_true(fabs(b.cpu_percent - 34.62367940171561) < 1e-9);
        free(s1);
        free(s2);

        d = load("stats-docker-v1.json", &l1);
        assert_int_equal(docker_stats_parse(d, l1, NULL, &a), 0); /* pids limit 2^64-1 */
        assert_true(a.cpu_valid);
        assert_true(fabs(a.cpu_percent - 0.41776) < 1e-6);
        assert_int_equal(a.mem_used, 6537216 - 1310720); /* total_inactive_file */
        assert_true(fabs(a.mem_percent - 7.7880859375) < 1e-9);
        assert_int_equal(a.net_rx, 5338 + 4641);
        assert_int_equal(a.net_tx, 648 + 690);
        assert_int_equal(a.blk_read, 1048576 + 2048);
        assert_int_equal(a.blk_write, 4096 + 8192);
        assert_int_equal(a.pids, 12);
        assert_int_equal(a.system_cpu_ns, 739306590000000ULL);
        free(d);

        d = load("stats-docker-v2.json", &l1);
        assert_int_equal(docker_stats_parse(d, l1, NULL, &a), 0);
        assert_true(fabs(a.cpu_percent - 50.0) < 1e-9);
        assert_int_equal(a.mem_used, 104857600 - 31457280); /* inactive_file */
        assert_true(fabs(a.mem_percent - 6.8359375) < 1e-9);
        assert_int_equal(a.blk_read, 20480);
        assert_int_equal(a.blk_write, 409600);
        free(d);

        {
                /* Older engines: usage minus cache; online_cpus from percpu_usage. */
                const char *s = "{\"cpu_stats\":{\"cpu_usage\":{\"total_usage\":300,\"percpu_usage\":[1,2,3]},"
                                "\"system_cpu_usage\":2000},\"precpu_stats\":{\"cpu_usage\":{\"total_usage\":100},"
                                "\"system_cpu_usage\":1000},\"memory_stats\":{\"usage\":1000,\"limit\":0,"
                                "\"stats\":{\"cache\":400}}}";
                assert_int_equal(docker_stats_parse(s, strlen(s), NULL, &a), 0);
                assert_int_equal(a.online_cpus, 3);
                assert_true(fabs(a.cpu_percent - 60.0) < 1e-9);
                assert_int_equal(a.mem_used, 600);
                assert_true(a.mem_percent == 0);
        }
        d = load("stats-podman-stopped.json", &l1);
        assert_int_equal(docker_stats_parse(d, l1, NULL, &a), -EBADMSG); /* empty body */
        free(d);
        assert_int_equal(docker_stats_parse("{}", 2, NULL, &a), -EBADMSG);
        assert_int_equal(docker_stats_parse("{\"cpu_stats\":{}}", 16, NULL, &a), -EBADMSG);
}

/* ---- references, auth ---- */

static void test_image_ref(void **state) {
        static const struct {
                const char *ref;
                int r;
                const char *repo, *tag;
        } cases[] = {
                { "busybox", 0, "busybox", "latest" },
                { "busybox:1.36", 0, "busybox", "1.36" },
                { "127.0.0.1:5000/aiwm/test-httpd:1", 0, "127.0.0.1:5000/aiwm/test-httpd", "1" },
                { "127.0.0.1:5000/aiwm/test-httpd", 0, "127.0.0.1:5000/aiwm/test-httpd", "latest" },
                { "nvcr.io/nvidia/pytorch@sha256:abcdef0123", 0, "nvcr.io/nvidia/pytorch", "sha256:abcdef0123" },
                { "", -EINVAL, NULL, NULL },
                { "busybox:", -EINVAL, NULL, NULL },
                { ":tag", -EINVAL, NULL, NULL },
                { "a b", -EINVAL, NULL, NULL },
                { "repo@", -EINVAL, NULL, NULL },
                { "repo@sha256", -EINVAL, NULL, NULL },
                { "../etc/passwd", -EINVAL, NULL, NULL },
                { "a/../b", -EINVAL, NULL, NULL },
                { "a//b", -EINVAL, NULL, NULL },
                { "/abs", -EINVAL, NULL, NULL },
                { "x?y", -EINVAL, NULL, NULL },
                { "x%2F", -EINVAL, NULL, NULL },
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                char repo[128] = "", tag[128] = "";
                int r = docker_image_ref_split(cases[i].ref, repo, sizeof repo, tag, sizeof tag);
                if (r != cases[i].r)
                        fail_msg("case %zu \"%s\": %d", i, cases[i].ref, r);
                if (r == 0) {
                        assert_string_equal(repo, cases[i].repo);
                        assert_string_equal(tag, cases[i].tag);
                }
        }
        {
                char repo[8], tag[8];
                assert_int_equal(docker_image_ref_split("averylongname:1", repo, sizeof repo, tag, sizeof tag), -EINVAL);
        }
}

static void test_registry_auth(void **state) {
        docker_registry_auth a = { .username = "u", .password = "p\xc3\xa9?>>", .server = "r:5000" };
        char *v = NULL;
        unsigned char dec[256];
        int n;

        assert_int_equal(docker_registry_auth_encode(&a, &v), 0);
        assert_null(strpbrk(v, "+/")); /* base64url */
        n = util_base64_decode(v, strlen(v), dec);
        assert_true(n > 0);
        dec[n] = 0;
        assert_string_equal((char *)dec, "{\"username\":\"u\",\"password\":\"p\xc3\xa9?>>\",\"serveraddress\":\"r:5000\"}");
        free(v);
        {
                docker_registry_auth t = { .identity_token = "tok" };
                assert_int_equal(docker_registry_auth_encode(&t, &v), 0);
                n = util_base64_decode(v, strlen(v), dec);
                dec[n] = 0;
                assert_string_equal((char *)dec, "{\"identitytoken\":\"tok\"}");
                free(v);
        }
        {
                docker_registry_auth bad = { .username = "u", .password = "\xff" };
                assert_int_equal(docker_registry_auth_encode(&bad, &v), -EINVAL);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_version),        cmocka_unit_test(test_negotiate),
                cmocka_unit_test(test_info),           cmocka_unit_test(test_error_map),
                cmocka_unit_test(test_pull_error_map), cmocka_unit_test(test_jsonstream_files),
                cmocka_unit_test(test_jsonstream_edges), cmocka_unit_test(test_logs_files),
                cmocka_unit_test(test_logs_edges),     cmocka_unit_test(test_timestamps),
                cmocka_unit_test(test_stats),          cmocka_unit_test(test_image_ref),
                cmocka_unit_test(test_registry_auth),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
