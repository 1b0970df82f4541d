/* libFuzzer target for the pure parsers of src/docker/docker.c: /version and
 * /info replies, stats, error replies, the JSON stream splitter and the log
 * demultiplexer, log timestamps and image references, all from the same
 * bytes. The streaming parsers are fed twice, whole and split at a point
 * chosen by the input, and must give the same values, lines and result. */
#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "docker/docker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int json_collect(json_t *v, void *ud) {
        char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        if (s) {
                buf_append_str(ud, s);
                buf_append_str(ud, "\n");
                free(s);
        }
        return 0;
}

static int stream_run(const uint8_t *d, size_t n, size_t at, buf *out) {
        docker_jsonstream s;
        int r;

        docker_jsonstream_init(&s, 4096);
        r = docker_jsonstream_feed(&s, d, at, json_collect, out);
        if (r == 0)
                r = docker_jsonstream_feed(&s, d + at, n - at, json_collect, out);
        if (r == 0)
                r = docker_jsonstream_finish(&s);
        docker_jsonstream_done(&s);
        return r;
}

static int line_collect(int stream, const char *line, size_t len, void *ud) {
        assert(stream == DOCKER_STDOUT || stream == DOCKER_STDERR);
        assert(len <= 64);
        buf_appendf(ud, "%d:%zu:", stream, len);
        buf_append(ud, line, len);
        return 0;
}

static int demux_run(const uint8_t *d, size_t n, size_t at, docker_logs_mode mode, buf *out) {
        docker_logs_demux dm;
        int r;

        docker_logs_demux_init(&dm, mode, 64);
        r = docker_logs_demux_feed(&dm, d, at, line_collect, out);
        if (r == 0)
                r = docker_logs_demux_feed(&dm, d + at, n - at, line_collect, out);
        if (r == 0)
                r = docker_logs_demux_finish(&dm, line_collect, out);
        docker_logs_demux_done(&dm);
        return r;
}

static void check_msg(const char *m, size_t size) {
        size_t i, n = strlen(m);
        assert(n < size);
        for (i = 0; i < n; i++)
                assert((unsigned char)m[i] >= 0x20 && m[i] != 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *s = (const char *)data;
        size_t at = size ? (size_t)data[0] * size / 256 : 0;
        char *z;

        {
                docker_version v;
                unsigned minor;
                if (docker_version_parse(s, size, &v) == 0) {
                        assert(strlen(v.version) < sizeof v.version && v.api_version[0]);
                        assert(v.runtime == DOCKER_RUNTIME_DOCKER || v.runtime == DOCKER_RUNTIME_PODMAN);
                        if (docker_api_negotiate(v.api_version, &minor) == 0)
                                assert(minor >= DOCKER_API_MIN_MINOR && minor <= DOCKER_API_MAX_MINOR);
                }
        }
        {
                docker_info in;
                if (docker_info_parse(s, size, &in) == 0)
                        assert(strlen(in.root_dir) < sizeof in.root_dir);
        }
        {
                docker_stats st, st2;
                if (docker_stats_parse(s, size, NULL, &st) == 0) {
                        assert(st.mem_used <= st.mem_usage);
                        assert(st.cpu_percent >= 0 && !isnan(st.cpu_percent));
                        assert(!isnan(st.mem_percent));
                        assert(docker_stats_parse(s, size, &st, &st2) == 0);
                        if (st.system_cpu_ns > 0)
                                assert(st2.cpu_valid && st2.cpu_percent == 0); /* same counters */
                }
        }
        {
                static const long statuses[] = { 200, 304, 400, 404, 409, 500, 503, 418 };
                char msg[64];
                for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
                        int r = docker_error_map((docker_call)(i % 8), statuses[i], s, size, msg, sizeof msg);
                        assert(r <= 0 && (r == 0) == (statuses[i] == 200));
                        check_msg(msg, sizeof msg);
                }
        }
        {
                buf a, b;
                int ra, rb;
                buf_init(&a, 0);
                buf_init(&b, 0);
                ra = stream_run(data, size, size, &a);
                rb = stream_run(data, size, at, &b);
                assert(ra == rb);
                assert(a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0));
                buf_done(&a);
                buf_done(&b);
        }
        for (int mode = DOCKER_LOGS_AUTO; mode <= DOCKER_LOGS_RAW; mode++) {
                buf a, b;
                int ra, rb;
                buf_init(&a, 0);
                buf_init(&b, 0);
                ra = demux_run(data, size, size, (docker_logs_mode)mode, &a);
                rb = demux_run(data, size, at, (docker_logs_mode)mode, &b);
                assert(ra == rb);
                assert(a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0));
                buf_done(&a);
                buf_done(&b);
        }
        {
                int64_t ms;
                size_t prefix;
                if (docker_log_timestamp_parse(s, size, &ms, &prefix) == 0)
                        assert(prefix >= 21 && prefix <= size && s[prefix - 1] == ' ');
        }
        z = strndup(s, size < 600 ? size : 600);
        if (z) {
                char repo[600], tag[600];
                docker_registry_auth a = { .username = z, .password = z, .server = z };
                char *enc = NULL;
                if (docker_image_ref_split(z, repo, sizeof repo, tag, sizeof tag) == 0) {
                        assert(repo[0] && tag[0]);
                        assert(strlen(repo) + strlen(tag) <= strlen(z) + 6);
                }
                (void)docker_pull_error_map(z);
                if (docker_registry_auth_encode(&a, &enc) == 0) {
                        assert(!strpbrk(enc, "+/"));
                        free(enc);
                }
                free(z);
        }
        return 0;
}
