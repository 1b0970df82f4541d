#include "docker/docker.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/http.h"
#include "core/util.h"

#define JSON_VALUE_MAX_DEFAULT (1024u * 1024u)
#define JSON_DEPTH_MAX 64u
#define LOG_LINE_MAX_DEFAULT (16u * 1024u)
#define LOGS_BYTES_MAX_DEFAULT (64u * 1024u * 1024u)
#define REPLY_MAX (16u * 1024u * 1024u)
#define ERRBODY_MAX (64u * 1024u)
#define TIMEOUT_DEFAULT_MS 60000u
#define PULL_LAYERS_MAX 256u
#define REF_MAX 512u

/* ==== small helpers ==== */

const char *docker_runtime_name(docker_runtime rt) {
        switch (rt) {
        case DOCKER_RUNTIME_DOCKER:
                return "docker";
        case DOCKER_RUNTIME_PODMAN:
                return "podman";
        default:
                return "unknown";
        }
}

static void copy_json_str(json_t *obj, const char *key, char *out, size_t size) {
        const char *v = json_string_value(json_object_get(obj, key));
        if (v)
                util_strlcpy(out, v, size);
}

static int64_t json_i64(json_t *obj, const char *key) {
        json_t *v = json_object_get(obj, key);
        double f;

        if (json_is_integer(v))
                return (int64_t)json_integer_value(v);
        if (!json_is_real(v))
                return 0;
        f = json_real_value(v);
        if (f >= 9.2e18)
                return INT64_MAX;
        return f <= -9.2e18 ? INT64_MIN : (int64_t)f;
}

/* A counter: negative or absent values count as 0. Reals come from
 * load_json() falling back to JSON_DECODE_INT_AS_REAL. */
static uint64_t json_u64(json_t *obj, const char *key) {
        json_t *v = json_object_get(obj, key);
        double f;

        if (json_is_integer(v))
                return json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
        if (!json_is_real(v))
                return 0;
        f = json_real_value(v);
        if (!(f > 0))
                return 0;
        return f >= 18446744073709551615.0 ? UINT64_MAX : (uint64_t)f;
}

/* Parses JSON. Engines print unsigned 64-bit values that jansson's signed
 * integers cannot hold (Docker's pids_stats.limit "unlimited" is 2^64-1):
 * such a document is read again with every integer as a double, exact to
 * 2^53 and within a few hundred ns for nanosecond counters beyond. */
static json_t *load_json(const char *data, size_t len) {
        json_t *j;

        if (!data)
                return NULL;
        j = json_loadb(data, len, 0, NULL);
        if (!j)
                j = json_loadb(data, len, JSON_DECODE_INT_AS_REAL, NULL);
        return j;
}

static bool contains_ci(const char *hay, const char *needle) {
        return hay && strcasestr(hay, needle) != NULL;
}

static json_t *load_object(const char *data, size_t len) {
        json_t *j = load_json(data, len);
        if (j && !json_is_object(j)) {
                json_decref(j);
                j = NULL;
        }
        return j;
}

/* ==== /version, /info, negotiation ==== */

int docker_version_parse(const char *data, size_t len, docker_version *ret) {
        docker_version v = { 0 };
        json_t *j = load_object(data, len), *comps, *c;
        const char *api, *ver, *pname;
        size_t i;
        int r = -EBADMSG;

        if (!j)
                return -EBADMSG;
        api = json_string_value(json_object_get(j, "ApiVersion"));
        ver = json_string_value(json_object_get(j, "Version"));
        if (!api || !ver || !*api)
                goto out;
        util_strlcpy(v.api_version, api, sizeof v.api_version);
        util_strlcpy(v.version, ver, sizeof v.version);
        copy_json_str(j, "MinAPIVersion", v.min_api_version, sizeof v.min_api_version);
        copy_json_str(j, "Os", v.os, sizeof v.os);
        copy_json_str(j, "Arch", v.arch, sizeof v.arch);
        copy_json_str(j, "KernelVersion", v.kernel, sizeof v.kernel);
        /* Podman names itself in Components[].Name ("Podman Engine"); some
         * versions also in Platform.Name. Docker says "Engine". */
        v.runtime = DOCKER_RUNTIME_DOCKER;
        comps = json_object_get(j, "Components");
        json_array_foreach(comps, i, c) {
                if (contains_ci(json_string_value(json_object_get(c, "Name")), "podman"))
                        v.runtime = DOCKER_RUNTIME_PODMAN;
        }
        pname = json_string_value(json_object_get(json_object_get(j, "Platform"), "Name"));
        if (contains_ci(pname, "podman"))
                v.runtime = DOCKER_RUNTIME_PODMAN;
        *ret = v;
        r = 0;
out:
        json_decref(j);
        return r;
}

int docker_api_negotiate(const char *server_api, unsigned *ret_minor) {
        int64_t minor;
        const char *dot;
        char tmp[16];

        if (!server_api || strncmp(server_api, "1.", 2) != 0)
                return -EINVAL;
        dot = server_api + 2;
        if (strlen(dot) >= sizeof tmp)
                return -EINVAL;
        util_strlcpy(tmp, dot, sizeof tmp);
        if (util_parse_i64(tmp, 0, 1000, &minor) < 0)
                return -EINVAL;
        if (minor < DOCKER_API_MIN_MINOR)
                return -EPROTONOSUPPORT;
        *ret_minor = minor > DOCKER_API_MAX_MINOR ? DOCKER_API_MAX_MINOR : (unsigned)minor;
        return 0;
}

int docker_info_parse(const char *data, size_t len, docker_info *ret) {
        docker_info v = { 0 };
        json_t *j = load_object(data, len), *store, *rt, *host;

        if (!j)
                return -EBADMSG;
        copy_json_str(j, "DockerRootDir", v.root_dir, sizeof v.root_dir);
        if (!v.root_dir[0]) {
                /* Podman's libpod /info: store.graphRoot; some compat replies: Store.GraphRoot. */
                store = json_object_get(j, "Store");
                if (!store)
                        store = json_object_get(j, "store");
                copy_json_str(store, "GraphRoot", v.root_dir, sizeof v.root_dir);
                if (!v.root_dir[0])
                        copy_json_str(store, "graphRoot", v.root_dir, sizeof v.root_dir);
        }
        copy_json_str(j, "Driver", v.driver, sizeof v.driver);
        copy_json_str(j, "CgroupDriver", v.cgroup_driver, sizeof v.cgroup_driver);
        copy_json_str(j, "CgroupVersion", v.cgroup_version, sizeof v.cgroup_version);
        copy_json_str(j, "OperatingSystem", v.operating_system, sizeof v.operating_system);
        copy_json_str(j, "Name", v.name, sizeof v.name);
        copy_json_str(j, "ServerVersion", v.server_version, sizeof v.server_version);
        copy_json_str(j, "DefaultRuntime", v.default_runtime, sizeof v.default_runtime);
        rt = json_object_get(j, "Runtimes");
        v.nvidia_runtime = json_object_get(rt, "nvidia") != NULL;
        v.ncpu = json_i64(j, "NCPU");
        v.mem_total = json_i64(j, "MemTotal");
        v.containers = json_i64(j, "Containers");
        v.containers_running = json_i64(j, "ContainersRunning");
        v.images = json_i64(j, "Images");
        host = json_object_get(j, "host");
        if (host && !v.ncpu) { /* libpod shape */
                v.ncpu = json_i64(host, "cpus");
                v.mem_total = json_i64(host, "memTotal");
        }
        json_decref(j);
        if (!v.root_dir[0] && !v.server_version[0] && !v.driver[0] && !v.ncpu)
                return -EBADMSG; /* an object, but not an /info reply */
        *ret = v;
        return 0;
}

/* ==== errors ==== */

/* Copies text as one printable line. */
static void copy_line(char *out, size_t size, const char *s, size_t len) {
        size_t o = 0, i;

        if (size == 0)
                return;
        for (i = 0; i < len && o + 1 < size; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c == '\n' || c == '\r') {
                        if (i + 1 < len)
                                out[o++] = ' ';
                        continue;
                }
                out[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
        }
        while (o > 0 && out[o - 1] == ' ')
                o--;
        out[o] = 0;
}

int docker_error_map(docker_call call, long status, const char *body, size_t len, char *msg, size_t msg_size) {
        json_t *j;
        const char *m = NULL, *cause = NULL;
        char low[512] = "";
        int r;

        if (msg_size)
                msg[0] = 0;
        if (status >= 200 && status <= 299)
                return 0;
        j = load_object(body, len);
        if (j) {
                m = json_string_value(json_object_get(j, "message"));
                cause = json_string_value(json_object_get(j, "cause"));
        }
        if (m)
                copy_line(msg, msg_size, m, strlen(m));
        else if (body && len && !j)
                copy_line(msg, msg_size, body, len > 1024 ? 1024 : len);
        snprintf(low, sizeof low, "%s %s", cause ? cause : "", m ? m : "");

        switch (status) {
        case 304:
                if (call == DOCKER_CALL_STOP) {
                        r = -ESRCH;
                        if (msg_size && !msg[0])
                                snprintf(msg, msg_size, "container already stopped");
                } else {
                        r = -EALREADY;
                        if (msg_size && !msg[0])
                                snprintf(msg, msg_size, "container already started");
                }
                break;
        case 400:
                r = -EINVAL;
                break;
        case 401:
        case 403:
                r = -EACCES;
                break;
        case 404:
                r = -ENOENT;
                break;
        case 409:
                if (call == DOCKER_CALL_CREATE)
                        r = -EEXIST;
                else if (call == DOCKER_CALL_KILL || (call == DOCKER_CALL_STOP && contains_ci(low, "not running")))
                        r = -ESRCH;
                else
                        r = -EBUSY;
                break;
        default:
                if (status >= 500 && status <= 599) {
                        /* Podman answers several conflicts with 500 and a cause. */
                        if (contains_ci(low, "no such container") || contains_ci(low, "no such image") ||
                            contains_ci(low, "no such object"))
                                r = -ENOENT;
                        else if (contains_ci(low, "already in use"))
                                r = -EEXIST;
                        else if (contains_ci(low, "container state improper"))
                                r = (call == DOCKER_CALL_KILL || call == DOCKER_CALL_STOP) ? -ESRCH : -EBUSY;
                        else if (contains_ci(low, "image is in use"))
                                r = -EBUSY;
                        else
                                r = -EIO;
                } else {
                        r = -EPROTO;
                }
                break;
        }
        if (msg_size && !msg[0])
                snprintf(msg, msg_size, "HTTP %ld", status);
        json_decref(j);
        return r;
}

int docker_pull_error_map(const char *message) {
        if (contains_ci(message, "manifest unknown") || contains_ci(message, "not found") ||
            contains_ci(message, "does not exist") || contains_ci(message, "name unknown") ||
            contains_ci(message, "no such"))
                return -ENOENT;
        if (contains_ci(message, "unauthorized") || contains_ci(message, "authentication required") ||
            contains_ci(message, "denied") || contains_ci(message, "forbidden"))
                return -EACCES;
        return -EIO;
}

/* ==== JSON stream splitter ==== */

void docker_jsonstream_init(docker_jsonstream *s, size_t max_value) {
        memset(s, 0, sizeof *s);
        s->max_value = max_value ? max_value : JSON_VALUE_MAX_DEFAULT;
        buf_init(&s->pending, s->max_value);
}

void docker_jsonstream_done(docker_jsonstream *s) {
        buf_done(&s->pending);
}

static int jsonstream_emit(docker_jsonstream *s, docker_json_cb cb, void *userdata) {
        json_t *v = load_json(s->pending.data ? s->pending.data : "", s->pending.len);
        int r;

        buf_reset(&s->pending);
        if (!v)
                return -EBADMSG;
        r = cb(v, userdata);
        json_decref(v);
        return r < 0 ? r : 0;
}

int docker_jsonstream_feed(docker_jsonstream *s, const void *data, size_t len, docker_json_cb cb, void *userdata) {
        const char *p = data;
        size_t i = 0, seg;
        int r;

        while (i < len) {
                if (s->depth == 0) {
                        /* Between values: whitespace, then '{' or '['. */
                        char c = p[i];
                        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
                                i++;
                                continue;
                        }
                        if (c != '{' && c != '[')
                                return -EBADMSG;
                        s->depth = 1;
                        s->in_string = s->escape = false;
                        seg = i++;
                } else {
                        seg = i;
                }
                /* Inside a value: scan to its end or the end of the data. */
                while (i < len && s->depth > 0) {
                        char c = p[i++];
                        if (s->in_string) {
                                if (s->escape)
                                        s->escape = false;
                                else if (c == '\\')
                                        s->escape = true;
                                else if (c == '"')
                                        s->in_string = false;
                        } else if (c == '"') {
                                s->in_string = true;
                        } else if (c == '{' || c == '[') {
                                if (++s->depth > JSON_DEPTH_MAX)
                                        return -ELOOP;
                        } else if (c == '}' || c == ']') {
                                s->depth--;
                        }
                }
                r = buf_append(&s->pending, p + seg, i - seg);
                if (r < 0)
                        return r == -E2BIG ? -E2BIG : r;
                if (s->depth == 0) {
                        r = jsonstream_emit(s, cb, userdata);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

int docker_jsonstream_finish(const docker_jsonstream *s) {
        return s->depth > 0 ? -EBADMSG : 0;
}

/* ==== log stream demultiplexer ==== */

void docker_logs_demux_init(docker_logs_demux *d, docker_logs_mode mode, size_t max_line) {
        size_t i;

        memset(d, 0, sizeof *d);
        d->mode = mode;
        d->max_line = max_line ? max_line : LOG_LINE_MAX_DEFAULT;
        for (i = 0; i < 3; i++)
                buf_init(&d->line[i], d->max_line);
}

void docker_logs_demux_done(docker_logs_demux *d) {
        size_t i;
        for (i = 0; i < 3; i++)
                buf_done(&d->line[i]);
}

static int line_out(int stream, const char *s, size_t n, bool strip_cr, docker_log_line_cb cb, void *ud) {
        if (strip_cr && n > 0 && s[n - 1] == '\r')
                n--;
        return cb(stream, s, n, ud);
}

/* Splits payload bytes of one stream into lines. */
static int demux_bytes(docker_logs_demux *d, int stream, const char *p, size_t n, docker_log_line_cb cb,
                       void *ud) {
        buf *lb = &d->line[stream];
        int r;

        while (n > 0) {
                const char *nl = memchr(p, '\n', n);
                size_t seg = nl ? (size_t)(nl - p) : n;

                /* A line over the cap goes out in pieces of max_line bytes. */
                while (lb->len + seg > d->max_line) {
                        size_t take = d->max_line - lb->len;
                        if (lb->len == 0) {
                                r = cb(stream, p, take, ud);
                        } else {
                                r = buf_append(lb, p, take);
                                if (r >= 0)
                                        r = cb(stream, lb->data, lb->len, ud);
                                buf_reset(lb);
                        }
                        if (r < 0)
                                return r;
                        p += take;
                        seg -= take;
                        n -= take;
                }
                if (!nl) {
                        r = buf_append(lb, p, seg);
                        return r < 0 ? r : 0;
                }
                if (lb->len == 0) {
                        r = line_out(stream, p, seg, true, cb, ud);
                } else {
                        r = buf_append(lb, p, seg);
                        if (r >= 0)
                                r = line_out(stream, lb->data, lb->len, true, cb, ud);
                        buf_reset(lb);
                }
                if (r < 0)
                        return r;
                p += seg + 1;
                n -= seg + 1;
        }
        return 0;
}

/* AUTO: a multiplexed stream starts with a frame header: a stream type 0-2
 * and three zero bytes; text output (a TTY) practically never does. Returns
 * true once decided. */
static bool demux_decide(docker_logs_demux *d) {
        size_t i;

        if (d->hdr_len >= 1 && d->hdr[0] > 2) {
                d->mode = DOCKER_LOGS_RAW;
                return true;
        }
        for (i = 1; i < d->hdr_len && i < 4; i++)
                if (d->hdr[i] != 0) {
                        d->mode = DOCKER_LOGS_RAW;
                        return true;
                }
        if (d->hdr_len >= 4) {
                d->mode = DOCKER_LOGS_MUX;
                return true;
        }
        return false;
}

int docker_logs_demux_feed(docker_logs_demux *d, const void *data, size_t len, docker_log_line_cb cb,
                           void *userdata) {
        const char *p = data;
        int r;

        if (d->mode == DOCKER_LOGS_AUTO) {
                while (len > 0 && d->hdr_len < 4) {
                        d->hdr[d->hdr_len++] = (unsigned char)*p++;
                        len--;
                        if (demux_decide(d))
                                break;
                }
                if (d->mode == DOCKER_LOGS_AUTO)
                        return 0; /* need more bytes */
                if (d->mode == DOCKER_LOGS_RAW) {
                        size_t held = d->hdr_len;
                        d->hdr_len = 0;
                        r = demux_bytes(d, DOCKER_STDOUT, (const char *)d->hdr, held, cb, userdata);
                        if (r < 0)
                                return r;
                }
        }
        if (d->mode == DOCKER_LOGS_RAW)
                return demux_bytes(d, DOCKER_STDOUT, p, len, cb, userdata);

        while (len > 0) {
                if (d->frame_left == 0) {
                        size_t take = 8 - d->hdr_len;
                        if (take > len)
                                take = len;
                        memcpy(d->hdr + d->hdr_len, p, take);
                        d->hdr_len += take;
                        p += take;
                        len -= take;
                        if (d->hdr_len < 8)
                                return 0;
                        if (d->hdr[0] > 2 || d->hdr[1] || d->hdr[2] || d->hdr[3])
                                return -EBADMSG;
                        d->stream = d->hdr[0] == 2 ? DOCKER_STDERR : DOCKER_STDOUT;
                        d->frame_left = (uint32_t)d->hdr[4] << 24 | (uint32_t)d->hdr[5] << 16 |
                                        (uint32_t)d->hdr[6] << 8 | (uint32_t)d->hdr[7];
                        d->hdr_len = 0;
                        continue;
                }
                {
                        size_t n = len < d->frame_left ? len : d->frame_left;
                        r = demux_bytes(d, d->stream, p, n, cb, userdata);
                        if (r < 0)
                                return r;
                        d->frame_left -= (uint32_t)n;
                        p += n;
                        len -= n;
                }
        }
        return 0;
}

int docker_logs_demux_finish(docker_logs_demux *d, docker_log_line_cb cb, void *userdata) {
        bool cut = false;
        int r, s;

        if (d->mode == DOCKER_LOGS_AUTO && d->hdr_len > 0) {
                /* Fewer than 4 bytes in all: text. */
                size_t held = d->hdr_len;
                d->mode = DOCKER_LOGS_RAW;
                d->hdr_len = 0;
                r = demux_bytes(d, DOCKER_STDOUT, (const char *)d->hdr, held, cb, userdata);
                if (r < 0)
                        return r;
        }
        if (d->mode == DOCKER_LOGS_MUX && (d->hdr_len > 0 || d->frame_left > 0))
                cut = true;
        for (s = DOCKER_STDOUT; s <= DOCKER_STDERR; s++) {
                buf *lb = &d->line[s];
                if (lb->len > 0) {
                        r = line_out(s, lb->data, lb->len, false, cb, userdata);
                        buf_reset(lb);
                        if (r < 0)
                                return r;
                }
        }
        return cut ? -EBADMSG : 0;
}

static int digits(const char *s, size_t n, int *ret) {
        int v = 0;
        size_t i;
        for (i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                v = v * 10 + (s[i] - '0');
        }
        *ret = v;
        return 0;
}

int docker_log_timestamp_parse(const char *line, size_t len, int64_t *ret_epoch_ms, size_t *ret_prefix) {
        struct tm tm = { 0 };
        int y, mo, d, h, mi, sec, ms = 0, off = 0;
        size_t i = 19, fd = 0;
        time_t t;

        /* YYYY-MM-DDTHH:MM:SS */
        if (len < 21 || line[4] != '-' || line[7] != '-' || (line[10] != 'T' && line[10] != 't') ||
            line[13] != ':' || line[16] != ':')
                return -EINVAL;
        if (digits(line, 4, &y) < 0 || digits(line + 5, 2, &mo) < 0 || digits(line + 8, 2, &d) < 0 ||
            digits(line + 11, 2, &h) < 0 || digits(line + 14, 2, &mi) < 0 || digits(line + 17, 2, &sec) < 0)
                return -EINVAL;
        if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
                return -EINVAL;
        if (line[i] == '.') {
                for (i++; i < len && line[i] >= '0' && line[i] <= '9'; i++, fd++)
                        if (fd < 3)
                                ms = ms * 10 + (line[i] - '0');
                if (fd == 0 || fd > 9)
                        return -EINVAL;
                for (; fd < 3; fd++)
                        ms *= 10;
        }
        if (i < len && (line[i] == 'Z' || line[i] == 'z')) {
                i++;
        } else if (i + 6 <= len && (line[i] == '+' || line[i] == '-') && line[i + 3] == ':') {
                int oh, om;
                if (digits(line + i + 1, 2, &oh) < 0 || digits(line + i + 4, 2, &om) < 0 || oh > 23 || om > 59)
                        return -EINVAL;
                off = (oh * 60 + om) * 60 * (line[i] == '-' ? -1 : 1);
                i += 6;
        } else {
                return -EINVAL;
        }
        if (i >= len || line[i] != ' ')
                return -EINVAL;
        tm.tm_year = y - 1900;
        tm.tm_mon = mo - 1;
        tm.tm_mday = d;
        tm.tm_hour = h;
        tm.tm_min = mi;
        tm.tm_sec = sec;
        t = timegm(&tm);
        *ret_epoch_ms = ((int64_t)t - off) * 1000 + ms;
        *ret_prefix = i + 1;
        return 0;
}

/* ==== stats ==== */

int docker_stats_compute(json_t *j, const docker_stats *prev, docker_stats *ret) {
        docker_stats s = { 0 };
        json_t *cpu = json_object_get(j, "cpu_stats"), *pre = json_object_get(j, "precpu_stats");
        json_t *mem = json_object_get(j, "memory_stats"), *ms, *nets, *n, *blk, *e;
        uint64_t pre_total = 0, pre_system = 0;
        const char *key;
        size_t i;

        if (!json_is_object(j) || !json_is_object(cpu) || !json_is_object(mem))
                return -EBADMSG;
        s.cpu_total_ns = json_u64(json_object_get(cpu, "cpu_usage"), "total_usage");
        s.system_cpu_ns = json_u64(cpu, "system_cpu_usage");
        s.online_cpus = (unsigned)json_u64(cpu, "online_cpus");
        if (s.online_cpus == 0)
                s.online_cpus = (unsigned)json_array_size(json_object_get(json_object_get(cpu, "cpu_usage"),
                                                                          "percpu_usage"));
        if (prev && prev->system_cpu_ns > 0) {
                pre_total = prev->cpu_total_ns;
                pre_system = prev->system_cpu_ns;
                s.cpu_valid = true;
        } else if (json_u64(pre, "system_cpu_usage") > 0) {
                pre_total = json_u64(json_object_get(pre, "cpu_usage"), "total_usage");
                pre_system = json_u64(pre, "system_cpu_usage");
                s.cpu_valid = true;
        }
        if (s.cpu_valid && s.system_cpu_ns > pre_system && s.cpu_total_ns > pre_total)
                s.cpu_percent = (double)(s.cpu_total_ns - pre_total) / (double)(s.system_cpu_ns - pre_system) *
                                (double)s.online_cpus * 100.0;

        /* Memory as `docker stats`: usage minus inactive file pages
         * (total_inactive_file on cgroup v1, inactive_file on v2), or minus
         * the page cache for engines that only report that. */
        s.mem_usage = json_u64(mem, "usage");
        s.mem_limit = json_u64(mem, "limit");
        s.mem_used = s.mem_usage;
        ms = json_object_get(mem, "stats");
        if (json_object_get(ms, "total_inactive_file")) {
                uint64_t v = json_u64(ms, "total_inactive_file");
                if (v < s.mem_usage)
                        s.mem_used = s.mem_usage - v;
        } else if (json_object_get(ms, "inactive_file")) {
                uint64_t v = json_u64(ms, "inactive_file");
                if (v < s.mem_usage)
                        s.mem_used = s.mem_usage - v;
        } else if (json_object_get(ms, "cache")) {
                uint64_t v = json_u64(ms, "cache");
                if (v < s.mem_usage)
                        s.mem_used = s.mem_usage - v;
        }
        if (s.mem_limit > 0)
                s.mem_percent = (double)s.mem_used / (double)s.mem_limit * 100.0;

        nets = json_object_get(j, "networks");
        json_object_foreach(nets, key, n) {
                s.net_rx += json_u64(n, "rx_bytes");
                s.net_tx += json_u64(n, "tx_bytes");
        }
        blk = json_object_get(json_object_get(j, "blkio_stats"), "io_service_bytes_recursive");
        json_array_foreach(blk, i, e) {
                const char *op = json_string_value(json_object_get(e, "op"));
                if (op && strcasecmp(op, "read") == 0)
                        s.blk_read += json_u64(e, "value");
                else if (op && strcasecmp(op, "write") == 0)
                        s.blk_write += json_u64(e, "value");
        }
        s.pids = json_u64(json_object_get(j, "pids_stats"), "current");
        *ret = s;
        return 0;
}

int docker_stats_parse(const char *data, size_t len, const docker_stats *prev, docker_stats *ret) {
        json_t *j = load_object(data, len);
        int r;

        if (!j)
                return -EBADMSG;
        r = docker_stats_compute(j, prev, ret);
        json_decref(j);
        return r;
}

/* ==== references and ids ==== */

static bool ref_char(char c) {
        return isalnum((unsigned char)c) || c == '.' || c == '_' || c == '-' || c == '/' || c == ':' || c == '@';
}

static bool valid_ref(const char *s) {
        size_t n = s ? strlen(s) : 0, i;

        if (n == 0 || n > REF_MAX || s[0] == '/' || s[0] == '.' || s[0] == ':' || s[0] == '@')
                return false;
        for (i = 0; i < n; i++)
                if (!ref_char(s[i]))
                        return false;
        /* Keeps the path the engine routes what we meant. */
        return !strstr(s, "..") && !strstr(s, "//");
}

static bool valid_id(const char *s) {
        size_t n = s ? strlen(s) : 0, i;

        if (n == 0 || n > 255 || !isalnum((unsigned char)s[0]))
                return false;
        for (i = 0; i < n; i++)
                if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
                        return false;
        return true;
}

int docker_image_ref_split(const char *ref, char *repo, size_t repo_size, char *tag, size_t tag_size) {
        const char *at, *slash, *colon;
        size_t rl;

        if (!valid_ref(ref))
                return -EINVAL;
        at = strchr(ref, '@');
        slash = strrchr(ref, '/');
        if (at) {
                rl = (size_t)(at - ref);
                if (strchr(at + 1, '@') || !strchr(at + 1, ':') || rl == 0)
                        return -EINVAL;
                if (rl >= repo_size || strlen(at + 1) >= tag_size)
                        return -EINVAL;
                memcpy(repo, ref, rl);
                repo[rl] = 0;
                util_strlcpy(tag, at + 1, tag_size);
                return 0;
        }
        colon = strrchr(ref, ':');
        if (colon && (!slash || colon > slash)) {
                rl = (size_t)(colon - ref);
                if (rl == 0 || !colon[1] || rl >= repo_size || strlen(colon + 1) >= tag_size)
                        return -EINVAL;
                memcpy(repo, ref, rl);
                repo[rl] = 0;
                util_strlcpy(tag, colon + 1, tag_size);
                return 0;
        }
        if (strlen(ref) >= repo_size || tag_size < sizeof "latest")
                return -EINVAL;
        util_strlcpy(repo, ref, repo_size);
        util_strlcpy(tag, "latest", tag_size);
        return 0;
}

/* Percent-encodes s (RFC 3986 unreserved characters kept) onto b. */
static int url_escape(buf *b, const char *s) {
        static const char hex[] = "0123456789ABCDEF";
        int r = 0;

        for (; *s && r >= 0; s++) {
                unsigned char c = (unsigned char)*s;
                if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
                        r = buf_append(b, s, 1);
                } else {
                        char e[3] = { '%', hex[c >> 4], hex[c & 15] };
                        r = buf_append(b, e, 3);
                }
        }
        return r;
}

/* ==== the client ==== */

typedef enum op_kind {
        OP_CALL,   /* one buffered reply */
        OP_PROBE,  /* /version (unversioned), then /info */
        OP_PULL,   /* JSON progress stream */
        OP_EVENTS, /* JSON event stream */
        OP_LOGS,   /* log stream */
} op_kind;

typedef struct pull_layer {
        char id[80];
        int64_t current, total;
        bool done;
} pull_layer;

struct docker_op {
        docker *d;
        docker_op *prev, *next;
        op_kind kind;
        docker_call call;
        bool internal;      /* the client's own negotiation: no user callback */
        bool waiting;       /* for the API version */
        unsigned wait_gen;  /* ... from this negotiation */
        bool cancelled;     /* inside a streaming callback: freed when it returns */
        bool in_done;
        unsigned in_cb;
        int stage;          /* OP_PROBE: 0 /version, 1 /info */
        char *method;
        char *path;         /* after the version prefix */
        char *body;         /* JSON text */
        char *auth_hdr;     /* "X-Registry-Auth: ...", wiped when freed */
        uint64_t timeout_ms;
        http_request *req;
        docker_done_cb done;
        void *ud;
        long status;
        bool error_reply;   /* status >= 300: the body is an error text */
        buf errbody;
        int stream_err;
        char stream_msg[512];
        /* streaming kinds */
        docker_jsonstream js;
        docker_logs_demux dm;
        docker_logs_mode logs_mode;
        size_t max_bytes, got_bytes;
        docker_pull_cb on_progress;
        docker_event_cb on_event;
        docker_logs_cb on_line;
        pull_layer *layers;
        unsigned nlayers;
        int pull_err;
        char pull_msg[512];
};

struct docker {
        loop *l;
        http_client *http;
        char *socket;
        uint64_t timeout_ms;
        docker_op *ops;     /* every live op, doubly linked */
        docker_op *neg;     /* the negotiation in flight, if any */
        unsigned neg_gen;   /* counts negotiations */
        unsigned api_minor; /* 0 until negotiated */
        char prefix[16];    /* "/v1.41" */
        docker_version version;
        bool have_version;
        docker_info info;
        bool have_info;
};

static int op_start_http(docker_op *op);
static void op_finish(docker_op *op, int err, const char *message, json_t *json, const char *id);

static void op_link(docker_op *op) {
        docker *d = op->d;
        op->prev = NULL;
        op->next = d->ops;
        if (d->ops)
                d->ops->prev = op;
        d->ops = op;
}

static void op_unlink(docker_op *op) {
        docker *d = op->d;
        if (op->prev)
                op->prev->next = op->next;
        else if (d->ops == op)
                d->ops = op->next;
        if (op->next)
                op->next->prev = op->prev;
        op->prev = op->next = NULL;
        if (d->neg == op)
                d->neg = NULL;
}

static void op_free(docker_op *op) {
        if (!op)
                return;
        if (op->req)
                http_request_cancel(op->req);
        free(op->method);
        free(op->path);
        free(op->body);
        if (op->auth_hdr) {
                explicit_bzero(op->auth_hdr, strlen(op->auth_hdr));
                free(op->auth_hdr);
        }
        buf_done(&op->errbody);
        docker_jsonstream_done(&op->js);
        docker_logs_demux_done(&op->dm);
        free(op->layers);
        free(op);
}

static docker_op *op_new(docker *d, op_kind kind, docker_call call, const char *method, docker_done_cb done,
                         void *ud) {
        docker_op *op = calloc(1, sizeof *op);

        if (!op)
                return NULL;
        op->d = d;
        op->kind = kind;
        op->call = call;
        op->done = done;
        op->ud = ud;
        op->timeout_ms = d->timeout_ms;
        op->method = strdup(method);
        buf_init(&op->errbody, ERRBODY_MAX);
        docker_jsonstream_init(&op->js, 0);
        docker_logs_demux_init(&op->dm, DOCKER_LOGS_AUTO, 0);
        if (!op->method) {
                op_free(op);
                return NULL;
        }
        return op;
}

/* Starts the negotiation when none is running. */
static int negotiate(docker *d) {
        docker_op *op;
        int r;

        if (d->neg)
                return 0;
        op = op_new(d, OP_PROBE, DOCKER_CALL_OTHER, "GET", NULL, NULL);
        if (!op)
                return -ENOMEM;
        op->path = strdup("/version");
        if (!op->path) {
                op_free(op);
                return -ENOMEM;
        }
        op->internal = true;
        op->wait_gen = ++d->neg_gen;
        op_link(op);
        r = op_start_http(op);
        if (r < 0) {
                op_unlink(op);
                op_free(op);
                return r;
        }
        d->neg = op;
        return 0;
}

/* Starts op now, or after the negotiation. On failure op is freed and
 * nothing is called back. */
static int op_submit(docker_op *op, docker_op **ret) {
        docker *d = op->d;
        int r;

        op_link(op);
        if (op->kind != OP_PROBE && d->api_minor == 0) {
                op->waiting = true;
                r = negotiate(d);
                op->wait_gen = d->neg_gen;
        } else {
                r = op_start_http(op);
        }
        if (r < 0) {
                op_unlink(op);
                op_free(op);
                return r;
        }
        if (ret)
                *ret = op;
        return 0;
}

/* Negotiation neg ended (err 0: d->api_minor is set): starts or fails the
 * calls that waited for it. Their callbacks may start or cancel others, so
 * the list is rescanned from its head each time; calls submitted meanwhile
 * wait for a newer negotiation and are left alone. */
static void release_waiting(docker_op *neg, int err, const char *message) {
        docker *d = neg->d;
        unsigned gen = neg->wait_gen;
        char msg[600];

        if (d->neg == neg)
                d->neg = NULL; /* the next call starts a new negotiation */
        snprintf(msg, sizeof msg, "cannot negotiate the Docker API version: %s", message ? message : "");
        for (;;) {
                docker_op *op;
                int r;

                for (op = d->ops; op && !(op->waiting && op->wait_gen == gen); op = op->next)
                        ;
                if (!op)
                        return;
                op->waiting = false;
                if (err < 0) {
                        op_finish(op, err, msg, NULL, NULL);
                        continue;
                }
                r = op_start_http(op);
                if (r < 0)
                        op_finish(op, r, "cannot start the request", NULL, NULL);
        }
}

/* ---- http callbacks ---- */

static void pull_progress(docker_op *op, json_t *ev) {
        docker_pull_event pe = { 0 };
        json_t *pd = json_object_get(ev, "progressDetail");
        pull_layer *ly = NULL;
        unsigned i;

        pe.status = json_string_value(json_object_get(ev, "status"));
        pe.id = json_string_value(json_object_get(ev, "id"));
        if (!pe.status)
                pe.status = "";
        if (!pe.id)
                pe.id = "";
        pe.current = json_i64(pd, "current");
        pe.total = json_i64(pd, "total");
        pe.raw = ev;
        if (pe.id[0]) {
                for (i = 0; i < op->nlayers; i++)
                        if (strcmp(op->layers[i].id, pe.id) == 0)
                                ly = &op->layers[i];
                if (!ly && op->nlayers < PULL_LAYERS_MAX && !util_startswith(pe.status, "Pulling from") &&
                    !util_startswith(pe.status, "Digest") && !util_startswith(pe.status, "Status")) {
                        if (!op->layers)
                                op->layers = calloc(PULL_LAYERS_MAX, sizeof *op->layers);
                        if (op->layers) {
                                ly = &op->layers[op->nlayers++];
                                util_strlcpy(ly->id, pe.id, sizeof ly->id);
                        }
                }
        }
        if (ly) {
                if (strcmp(pe.status, "Downloading") == 0 && pe.total > 0) {
                        ly->current = pe.current;
                        ly->total = pe.total;
                } else if (strcmp(pe.status, "Download complete") == 0 || strcmp(pe.status, "Pull complete") == 0 ||
                           strcmp(pe.status, "Already exists") == 0) {
                        ly->done = true;
                        ly->current = ly->total;
                }
        }
        for (i = 0; i < op->nlayers; i++) {
                pe.bytes_done += (uint64_t)(op->layers[i].current > 0 ? op->layers[i].current : 0);
                pe.bytes_total += (uint64_t)(op->layers[i].total > 0 ? op->layers[i].total : 0);
                pe.layers_done += op->layers[i].done;
        }
        pe.layers = op->nlayers;
        if (op->on_progress) {
                op->in_cb++;
                op->on_progress(op, &pe, op->ud);
                op->in_cb--;
        }
}

static int on_json(json_t *v, void *ud) {
        docker_op *op = ud;

        if (op->kind == OP_PULL) {
                json_t *ed = json_object_get(v, "errorDetail");
                const char *m = json_string_value(json_object_get(ed, "message"));
                if (!m)
                        m = json_string_value(json_object_get(v, "error"));
                if (m || ed) {
                        if (!op->pull_err) {
                                op->pull_err = docker_pull_error_map(m);
                                copy_line(op->pull_msg, sizeof op->pull_msg, m ? m : "pull failed",
                                          strlen(m ? m : "pull failed"));
                        }
                } else {
                        pull_progress(op, v);
                }
        } else if (op->on_event) {
                op->in_cb++;
                op->on_event(op, v, op->ud);
                op->in_cb--;
        }
        return op->cancelled ? -ECANCELED : 0;
}

static int on_line(int stream, const char *line, size_t len, void *ud) {
        docker_op *op = ud;

        if (op->on_line) {
                op->in_cb++;
                op->on_line(op, stream, line, len, op->ud);
                op->in_cb--;
        }
        return op->cancelled ? -ECANCELED : 0;
}

static int on_headers(http_request *req, long status, void *ud) {
        docker_op *op = ud;
        const char *ct;

        op->status = status;
        op->error_reply = status >= 300;
        if (op->kind == OP_LOGS && op->logs_mode == DOCKER_LOGS_AUTO) {
                /* Docker (API >= 1.42) says which; Podman says octet-stream. */
                ct = http_request_header(req, "content-type");
                if (contains_ci(ct, "multiplexed-stream"))
                        op->dm.mode = DOCKER_LOGS_MUX;
                else if (contains_ci(ct, "raw-stream") && op->d->api_minor >= 42)
                        op->dm.mode = DOCKER_LOGS_RAW;
        }
        return 0;
}

static void set_stream_err(docker_op *op, int r, const char *what) {
        if (op->stream_err)
                return;
        op->stream_err = r;
        snprintf(op->stream_msg, sizeof op->stream_msg, "%s: %s", what,
                 r == -E2BIG ? "over the size cap" : r == -EBADMSG ? "malformed stream" : strerror(-r));
}

static int on_data(http_request *req, const void *data, size_t len, void *ud) {
        docker_op *op = ud;
        int r;

        if (op->error_reply) {
                if (op->errbody.len + len > ERRBODY_MAX)
                        len = ERRBODY_MAX - op->errbody.len;
                if (len > 0 && buf_append(&op->errbody, data, len) < 0)
                        return -ENOMEM;
                return 0;
        }
        if (op->kind == OP_LOGS) {
                op->got_bytes += len;
                if (op->got_bytes > op->max_bytes) {
                        set_stream_err(op, -E2BIG, "container logs");
                        return -E2BIG;
                }
                r = docker_logs_demux_feed(&op->dm, data, len, on_line, op);
        } else {
                r = docker_jsonstream_feed(&op->js, data, len, on_json, op);
        }
        if (op->cancelled) {
                /* Cancelled from one of its own callbacks: the http request
                 * is already cancelled; nobody else holds op. */
                op->req = NULL;
                op_free(op);
                return -ECANCELED;
        }
        if (r < 0) {
                set_stream_err(op, r, op->kind == OP_LOGS ? "container logs" : "JSON stream");
                return r;
        }
        return 0;
}

/* Delivers the reply and frees op. */
static void op_finish(docker_op *op, int err, const char *message, json_t *json, const char *id) {
        docker_reply rep = { .err = err, .message = message ? message : "", .status = op->status, .json = json,
                             .id = id };

        op_unlink(op);
        op->in_done = true;
        if (op->done)
                op->done(op, &rep, op->ud);
        op_free(op);
}

static void probe_done(docker_op *op, const http_result *res, json_t *j) {
        docker *d = op->d;
        char msg[600];
        int r;

        if (op->stage == 0) {
                docker_version v;
                unsigned minor = 0;
                r = docker_version_parse(res->body->data, res->body->len, &v);
                if (r < 0) {
                        snprintf(msg, sizeof msg, "GET /version: not a version reply");
                        r = -EPROTO;
                } else {
                        r = docker_api_negotiate(v.api_version, &minor);
                        if (r < 0)
                                snprintf(msg, sizeof msg, "engine API %s is older than 1.%d", v.api_version,
                                         DOCKER_API_MIN_MINOR);
                }
                if (r < 0) {
                        if (op->internal)
                                release_waiting(op, r, msg);
                        op_finish(op, r, msg, NULL, NULL);
                        return;
                }
                d->version = v;
                d->have_version = true;
                d->api_minor = minor;
                snprintf(d->prefix, sizeof d->prefix, "/v1.%u", minor);
                if (op->internal)
                        release_waiting(op, 0, NULL);
                /* On to /info, versioned. */
                op->stage = 1;
                op->status = 0;
                free(op->path);
                op->path = strdup("/info");
                r = op->path ? op_start_http(op) : -ENOMEM;
                if (r < 0)
                        op_finish(op, r, "cannot start GET /info", NULL, NULL);
                return;
        }
        r = docker_info_parse(res->body->data, res->body->len, &d->info);
        if (r < 0) {
                op_finish(op, -EPROTO, "GET /info: not an info reply", NULL, NULL);
                return;
        }
        d->have_info = true;
        op_finish(op, 0, NULL, j, NULL);
}

static void http_done(http_request *req, const http_result *res, void *ud) {
        docker_op *op = ud;
        char msg[600] = "";
        json_t *j = NULL;
        const char *id = NULL;
        int err = 0;

        op->req = NULL;
        if (op->status == 0)
                op->status = res->status;
        if (res->err < 0) {
                if (op->stream_err) {
                        err = op->stream_err;
                        util_strlcpy(msg, op->stream_msg, sizeof msg);
                } else {
                        err = res->err;
                        snprintf(msg, sizeof msg, "%s%s", res->error,
                                 res->err == -ECONNREFUSED ? " (is the engine running?)" : "");
                }
                if (op->internal && op->stage == 0)
                        release_waiting(op, err, msg);
                op_finish(op, err, msg, NULL, NULL);
                return;
        }
        if (res->status >= 300 || res->status < 200) {
                const buf *b = op->error_reply && op->errbody.len ? &op->errbody : res->body;
                err = docker_error_map(op->call, res->status, b->data, b->len, msg, sizeof msg);
                if (err == 0)
                        err = -EPROTO;
                if (op->internal && op->stage == 0)
                        release_waiting(op, err, msg);
                op_finish(op, err, msg, NULL, NULL);
                return;
        }
        switch (op->kind) {
        case OP_CALL:
                if (res->body->len > 0) {
                        j = load_json(res->body->data, res->body->len);
                        if (!j && contains_ci(http_request_header(req, "content-type"), "json")) {
                                err = -EPROTO;
                                util_strlcpy(msg, "the engine's reply is not valid JSON", sizeof msg);
                        }
                } else if (strstr(op->path, "/stats?")) {
                        err = -ESRCH;
                        util_strlcpy(msg, "no stats: the container is not running", sizeof msg);
                }
                if (!err && op->call == DOCKER_CALL_CREATE) {
                        id = json_string_value(json_object_get(j, "Id"));
                        if (!id) {
                                err = -EPROTO;
                                util_strlcpy(msg, "the engine's reply has no Id", sizeof msg);
                        }
                }
                break;
        case OP_PROBE:
                if (res->body->len > 0)
                        j = load_json(res->body->data, res->body->len);
                probe_done(op, res, j);
                json_decref(j);
                return;
        case OP_PULL:
                if (docker_jsonstream_finish(&op->js) < 0) {
                        err = -ECONNRESET;
                        util_strlcpy(msg, "the pull's progress stream was cut off", sizeof msg);
                }
                if (op->pull_err) {
                        err = op->pull_err;
                        util_strlcpy(msg, op->pull_msg, sizeof msg);
                }
                break;
        case OP_EVENTS:
                util_strlcpy(msg, "the engine closed the event stream", sizeof msg);
                break;
        case OP_LOGS:
                err = docker_logs_demux_finish(&op->dm, on_line, op);
                if (op->cancelled) {
                        op_free(op); /* cancelled from on_line: no done */
                        return;
                }
                if (err < 0)
                        util_strlcpy(msg, "the log stream was cut off", sizeof msg);
                break;
        }
        op_finish(op, err, msg, err ? NULL : j, err ? NULL : id);
        json_decref(j);
}

static int op_start_http(docker_op *op) {
        docker *d = op->d;
        const char *headers[3] = { NULL };
        size_t nh = 0;
        buf url;
        int r;

        buf_init(&url, 0);
        r = buf_appendf(&url, "http://docker%s%s", op->kind == OP_PROBE && op->stage == 0 ? "" : d->prefix,
                        op->path);
        if (r < 0)
                return r;
        if (op->body)
                headers[nh++] = "Content-Type: application/json";
        if (op->auth_hdr)
                headers[nh++] = op->auth_hdr;
        {
                http_options o = {
                        .method = op->method,
                        .url = url.data,
                        .headers = headers,
                        .body = op->body,
                        .body_len = op->body ? strlen(op->body) : 0,
                        .unix_socket = d->socket,
                        .timeout_ms = op->timeout_ms,
                        .connect_timeout_ms = 5000,
                        .max_response = REPLY_MAX,
                        .on_headers = on_headers,
                        .on_data = op->kind == OP_CALL || op->kind == OP_PROBE ? NULL : on_data,
                };
                op->status = 0;
                op->error_reply = false;
                r = http_request_start(d->http, &o, http_done, op, &op->req);
        }
        buf_done(&url);
        return r;
}

/* ---- public ---- */

int docker_new(loop *l, const docker_options *o, docker **ret) {
        docker *d;
        int r;

        if (!l || !o || !o->socket || !o->socket[0])
                return -EINVAL;
        d = calloc(1, sizeof *d);
        if (!d)
                return -ENOMEM;
        d->l = l;
        d->timeout_ms = o->timeout_ms ? o->timeout_ms : TIMEOUT_DEFAULT_MS;
        d->socket = strdup(o->socket);
        if (!d->socket) {
                r = -ENOMEM;
                goto fail;
        }
        r = http_client_new(l, &d->http);
        if (r < 0)
                goto fail;
        *ret = d;
        return 0;
fail:
        free(d->socket);
        free(d);
        return r;
}

docker *docker_free(docker *d) {
        if (!d)
                return NULL;
        while (d->ops) {
                docker_op *op = d->ops;
                op_unlink(op);
                op_free(op);
        }
        http_client_free(d->http);
        free(d->socket);
        free(d);
        return NULL;
}

void docker_op_cancel(docker_op *op) {
        if (!op || op->in_done || op->cancelled)
                return;
        op_unlink(op);
        if (op->req) {
                http_request_cancel(op->req);
                op->req = NULL;
        }
        if (op->in_cb > 0) {
                op->cancelled = true; /* on_data frees it when the callback returns */
                return;
        }
        op_free(op);
}

const docker_version *docker_get_version(const docker *d) {
        return d->have_version ? &d->version : NULL;
}

const docker_info *docker_get_info(const docker *d) {
        return d->have_info ? &d->info : NULL;
}

unsigned docker_api_minor(const docker *d) {
        return d->api_minor;
}

/* Creates an op for method + formatted path. */
static docker_op *op_make(docker *d, op_kind kind, docker_call call, const char *method, docker_done_cb done,
                          void *ud, const char *fmt, ...) __attribute__((format(printf, 7, 8)));

static docker_op *op_make(docker *d, op_kind kind, docker_call call, const char *method, docker_done_cb done,
                          void *ud, const char *fmt, ...) {
        docker_op *op;
        va_list ap;
        int r;

        if (!d || !done)
                return NULL;
        op = op_new(d, kind, call, method, done, ud);
        if (!op)
                return NULL;
        va_start(ap, fmt);
        r = vasprintf(&op->path, fmt, ap);
        va_end(ap);
        if (r < 0) {
                op->path = NULL;
                op_free(op);
                return NULL;
        }
        return op;
}

static int set_body(docker_op *op, json_t *body) {
        if (!body)
                return 0;
        op->body = json_dumps(body, JSON_COMPACT);
        return op->body ? 0 : -ENOMEM;
}

int docker_probe(docker *d, docker_done_cb done, void *userdata, docker_op **ret) {
        docker_op *op;

        if (!d || !done)
                return -EINVAL;
        op = op_make(d, OP_PROBE, DOCKER_CALL_OTHER, "GET", done, userdata, "/version");
        if (!op)
                return -ENOMEM;
        return op_submit(op, ret);
}

int docker_request(docker *d, const char *method, const char *path, json_t *body, docker_done_cb done,
                   void *userdata, docker_op **ret) {
        docker_op *op;

        if (!d || !method || !path || path[0] != '/' || !done || strpbrk(path, " \r\n\t"))
                return -EINVAL;
        op = op_make(d, OP_CALL, DOCKER_CALL_OTHER, method, done, userdata, "%s", path);
        if (!op)
                return -ENOMEM;
        if (set_body(op, body) < 0) {
                op_free(op);
                return -ENOMEM;
        }
        return op_submit(op, ret);
}

int docker_image_inspect(docker *d, const char *ref, docker_done_cb done, void *userdata, docker_op **ret) {
        docker_op *op;

        if (!d || !done || !valid_ref(ref))
                return -EINVAL;
        op = op_make(d, OP_CALL, DOCKER_CALL_OTHER, "GET", done, userdata, "/images/%s/json", ref);
        if (!op)
                return -ENOMEM;
        return op_submit(op, ret);
}

int docker_registry_auth_encode(const docker_registry_auth *a, char **ret) {
        json_t *j;
        char *s = NULL, *out = NULL;
        size_t n, i;
        int r = -ENOMEM;

        if (a->identity_token)
                j = json_pack("{s:s}", "identitytoken", a->identity_token);
        else
                j = json_pack("{s:s,s:s,s:s}", "username", a->username ? a->username : "", "password",
                              a->password ? a->password : "", "serveraddress", a->server ? a->server : "");
        if (!j)
                return -EINVAL;
        s = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        if (!s)
                return -ENOMEM;
        n = strlen(s);
        out = malloc(4 * ((n + 2) / 3) + 1);
        if (!out)
                goto out;
        util_base64_encode(s, n, out);
        for (i = 0; out[i]; i++) {
                if (out[i] == '+')
                        out[i] = '-';
                else if (out[i] == '/')
                        out[i] = '_';
        }
        *ret = out;
        r = 0;
out:
        explicit_bzero(s, n);
        free(s);
        return r;
}

int docker_image_pull(docker *d, const docker_pull_options *o, docker_pull_cb on_progress, docker_done_cb done,
                      void *userdata, docker_op **ret) {
        char repo[REF_MAX + 1], tag[REF_MAX + 1];
        docker_op *op;
        buf path;
        int r;

        if (!d || !o || !done || docker_image_ref_split(o->image, repo, sizeof repo, tag, sizeof tag) < 0)
                return -EINVAL;
        buf_init(&path, 0);
        r = buf_append_str(&path, "/images/create?fromImage=");
        if (r >= 0)
                r = url_escape(&path, repo);
        if (r >= 0)
                r = buf_append_str(&path, "&tag=");
        if (r >= 0)
                r = url_escape(&path, tag);
        if (r < 0) {
                buf_done(&path);
                return r;
        }
        op = op_make(d, OP_PULL, DOCKER_CALL_PULL, "POST", done, userdata, "%s", path.data);
        buf_done(&path);
        if (!op)
                return -ENOMEM;
        op->on_progress = on_progress;
        op->timeout_ms = o->timeout_ms;
        if (o->auth) {
                char *v = NULL;
                r = docker_registry_auth_encode(o->auth, &v);
                if (r >= 0 && asprintf(&op->auth_hdr, "X-Registry-Auth: %s", v) < 0) {
                        op->auth_hdr = NULL;
                        r = -ENOMEM;
                }
                if (v) {
                        explicit_bzero(v, strlen(v));
                        free(v);
                }
                if (r < 0) {
                        op_free(op);
                        return r;
                }
        }
        return op_submit(op, ret);
}

int docker_container_create(docker *d, const char *name, json_t *config, docker_done_cb done, void *userdata,
                            docker_op **ret) {
        docker_op *op;

        if (!d || !done || !json_is_object(config) || (name && !valid_id(name)))
                return -EINVAL;
        op = op_make(d, OP_CALL, DOCKER_CALL_CREATE, "POST", done, userdata, "/containers/create%s%s",
                     name ? "?name=" : "", name ? name : "");
        if (!op)
                return -ENOMEM;
        if (set_body(op, config) < 0) {
                op_free(op);
                return -ENOMEM;
        }
        return op_submit(op, ret);
}

/* method /containers/{id}{what}: what is "" or "/verb", with a query. */
static int container_call(docker *d, const char *id, docker_call call, const char *method, uint64_t extra_ms,
                          docker_done_cb done, void *userdata, docker_op **ret, const char *what) {
        docker_op *op;

        if (!d || !done || !valid_id(id))
                return -EINVAL;
        op = op_make(d, OP_CALL, call, method, done, userdata, "/containers/%s%s", id, what);
        if (!op)
                return -ENOMEM;
        op->timeout_ms += extra_ms;
        return op_submit(op, ret);
}

int docker_container_start(docker *d, const char *id, docker_done_cb done, void *userdata, docker_op **ret) {
        return container_call(d, id, DOCKER_CALL_START, "POST", 0, done, userdata, ret, "/start");
}

static int stop_like(docker *d, const char *id, int timeout_s, docker_call call, const char *verb,
                     docker_done_cb done, void *userdata, docker_op **ret) {
        char what[48];

        if (timeout_s > 86400)
                return -EINVAL;
        if (timeout_s >= 0)
                snprintf(what, sizeof what, "/%s?t=%d", verb, timeout_s);
        else
                snprintf(what, sizeof what, "/%s", verb);
        /* The engine waits up to the stop timeout before it answers. */
        return container_call(d, id, call, "POST", (uint64_t)(timeout_s >= 0 ? timeout_s : 10) * 1000u, done,
                              userdata, ret, what);
}

int docker_container_stop(docker *d, const char *id, int timeout_s, docker_done_cb done, void *userdata,
                          docker_op **ret) {
        return stop_like(d, id, timeout_s, DOCKER_CALL_STOP, "stop", done, userdata, ret);
}

int docker_container_restart(docker *d, const char *id, int timeout_s, docker_done_cb done, void *userdata,
                             docker_op **ret) {
        return stop_like(d, id, timeout_s, DOCKER_CALL_RESTART, "restart", done, userdata, ret);
}

int docker_container_kill(docker *d, const char *id, const char *signal, docker_done_cb done, void *userdata,
                          docker_op **ret) {
        char what[48];
        size_t i;

        if (!signal)
                signal = "SIGKILL";
        if (!signal[0] || strlen(signal) > 20)
                return -EINVAL;
        for (i = 0; signal[i]; i++)
                if (!isalnum((unsigned char)signal[i]) && signal[i] != '+')
                        return -EINVAL;
        snprintf(what, sizeof what, "/kill?signal=%s", signal);
        return container_call(d, id, DOCKER_CALL_KILL, "POST", 0, done, userdata, ret, what);
}

int docker_container_remove(docker *d, const char *id, bool force, bool volumes, docker_done_cb done,
                            void *userdata, docker_op **ret) {
        char what[32];

        snprintf(what, sizeof what, "?force=%d&v=%d", force, volumes);
        return container_call(d, id, DOCKER_CALL_REMOVE, "DELETE", 0, done, userdata, ret, what);
}

int docker_container_inspect(docker *d, const char *id, docker_done_cb done, void *userdata, docker_op **ret) {
        return container_call(d, id, DOCKER_CALL_OTHER, "GET", 0, done, userdata, ret, "/json");
}

int docker_container_stats(docker *d, const char *id, docker_done_cb done, void *userdata, docker_op **ret) {
        return container_call(d, id, DOCKER_CALL_OTHER, "GET", 0, done, userdata, ret,
                              "/stats?stream=false&one-shot=true");
}

/* Appends "filters=<url-encoded JSON>" for the non-empty lists, after '?'
 * or '&'. */
static int append_filters(buf *b, const char *const *types, const char *const *labels) {
        json_t *f = json_object(), *a;
        char *s;
        int r = 0;

        if (!f)
                return -ENOMEM;
        for (int k = 0; k < 2 && r >= 0; k++) {
                const char *const *list = k == 0 ? types : labels;
                if (!list || !list[0])
                        continue;
                a = json_array();
                if (!a || json_object_set_new(f, k == 0 ? "type" : "label", a) < 0) {
                        r = -ENOMEM;
                        break;
                }
                for (; *list; list++) {
                        if (!**list || strlen(*list) > 1024 || json_array_append_new(a, json_string(*list)) < 0) {
                                r = -EINVAL;
                                break;
                        }
                }
        }
        if (r >= 0 && json_object_size(f) > 0) {
                s = json_dumps(f, JSON_COMPACT);
                r = s ? buf_append_str(b, strchr(b->data ? b->data : "", '?') ? "&filters=" : "?filters=") : -ENOMEM;
                if (r >= 0)
                        r = url_escape(b, s);
                free(s);
        }
        json_decref(f);
        return r;
}

int docker_container_list(docker *d, const docker_list_options *o, docker_done_cb done, void *userdata,
                          docker_op **ret) {
        docker_op *op;
        buf path;
        int r;

        if (!d || !done)
                return -EINVAL;
        buf_init(&path, 0);
        r = buf_appendf(&path, "/containers/json?all=%d", o && o->all);
        if (r >= 0 && o)
                r = append_filters(&path, NULL, o->labels);
        if (r < 0) {
                buf_done(&path);
                return r;
        }
        op = op_make(d, OP_CALL, DOCKER_CALL_OTHER, "GET", done, userdata, "%s", path.data);
        buf_done(&path);
        if (!op)
                return -ENOMEM;
        return op_submit(op, ret);
}

int docker_container_logs(docker *d, const char *id, const docker_logs_options *o, docker_logs_cb on_line_cb,
                          docker_done_cb done, void *userdata, docker_op **ret) {
        static const docker_logs_options defaults = { 0 };
        char tail[16] = "all";
        docker_op *op;

        if (!o)
                o = &defaults;
        if (!d || !done || !valid_id(id) || o->tail < 0 || o->since < 0 || (o->no_stdout && o->no_stderr))
                return -EINVAL;
        if (o->tail > 0)
                snprintf(tail, sizeof tail, "%d", o->tail);
        op = op_make(d, OP_LOGS, DOCKER_CALL_OTHER, "GET", done, userdata,
                     "/containers/%s/logs?stdout=%d&stderr=%d&timestamps=%d&tail=%s&since=%lld", id,
                     !o->no_stdout, !o->no_stderr, o->timestamps, tail, (long long)o->since);
        if (!op)
                return -ENOMEM;
        op->on_line = on_line_cb;
        op->logs_mode = o->mode;
        op->dm.mode = o->mode;
        op->max_bytes = o->max_bytes ? o->max_bytes : LOGS_BYTES_MAX_DEFAULT;
        return op_submit(op, ret);
}

int docker_events_start(docker *d, const docker_events_options *o, docker_event_cb on_event, docker_done_cb done,
                        void *userdata, docker_op **ret) {
        docker_op *op;
        buf path;
        int r;

        if (!d || !done || !on_event || (o && o->since < 0))
                return -EINVAL;
        buf_init(&path, 0);
        r = buf_append_str(&path, "/events");
        if (r >= 0 && o && o->since > 0)
                r = buf_appendf(&path, "?since=%lld", (long long)o->since);
        if (r >= 0 && o)
                r = append_filters(&path, o->types, o->labels);
        if (r < 0) {
                buf_done(&path);
                return r;
        }
        op = op_make(d, OP_EVENTS, DOCKER_CALL_OTHER, "GET", done, userdata, "%s", path.data);
        buf_done(&path);
        if (!op)
                return -ENOMEM;
        op->on_event = on_event;
        op->timeout_ms = 0; /* long-lived */
        return op_submit(op, ret);
}
