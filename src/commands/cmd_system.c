#include "commands/cmd_system.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "core/buf.h"
#include "core/http.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"

#define DEFAULT_CONFIRM_MS 300000
#define DEFAULT_SMOKE_TIMEOUT_MS 10000
#define DEFAULT_MAX_DOWNLOAD (512ull * 1024 * 1024)
#define DEFAULT_DOWNLOAD_TIMEOUT_MS 600000
#define MAX_URL 2048
#define MAX_REASON 1024
#define MAX_VERSION 64
#define MAX_RESTART_DELAY_S 3600
#define SMOKE_OUTPUT_MAX 4096

#define KV_PENDING "update.pending"
#define KV_ROLLED_BACK "update.rolledBack"

typedef struct sys_update sys_update;

/* Shared by the four handlers (ctx). */
typedef struct sys_ctx {
        cmd_engine *e;
        char *exe_path;
        uint64_t confirm_ms, smoke_timeout_ms, max_download, download_timeout_ms;
        loop_timer *confirm_timer;
        sys_update *active; /* the system.update in progress, if any */
} sys_ctx;

/* ---- validation helpers ---- */

static int bad(char *err, size_t errlen, const char *msg) {
        if (errlen)
                snprintf(err, errlen, "%s", msg);
        return -EINVAL;
}

/* Optional boolean member: 0 and *ret (default when absent or null). */
static int opt_bool(const json_t *data, const char *key, bool def, bool *ret) {
        json_t *v = json_object_get(data, key);

        if (!v || json_is_null(v)) {
                *ret = def;
                return 0;
        }
        if (!json_is_boolean(v))
                return -EINVAL;
        *ret = json_is_true(v);
        return 0;
}

/* Optional string member of 1..max bytes without NUL: NULL when absent. */
static int opt_string(const json_t *data, const char *key, size_t max, const char **ret) {
        json_t *v = json_object_get(data, key);
        const char *s;

        if (!v || json_is_null(v)) {
                *ret = NULL;
                return 0;
        }
        s = json_string_value(v);
        if (!s || json_string_length(v) == 0 || json_string_length(v) > max ||
            strlen(s) != json_string_length(v))
                return -EINVAL;
        *ret = s;
        return 0;
}

/* Serialises and releases o (NULL stays NULL). */
static char *dump_free(json_t *o) {
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

        json_decref(o);
        return s;
}

static const char *host_node_status(const cmd_host *h) {
        const char *s = h->node_status ? h->node_status(h->ud) : NULL;

        return s ? s : "healthy";
}

static int64_t host_uptime(const cmd_host *h) {
        struct timespec ts;

        if (h->uptime_seconds)
                return h->uptime_seconds(h->ud);
        if (clock_gettime(CLOCK_BOOTTIME, &ts) < 0)
                return 0;
        return (int64_t)ts.tv_sec;
}

/* ---- system.healthCheck ---- */

static int health_validate(const json_t *data, const json_t *resource, char *err, size_t errlen) {
        bool b;

        if (opt_bool(data, "includeMetrics", false, &b) < 0)
                return bad(err, errlen, "data.includeMetrics must be a boolean");
        if (opt_bool(data, "includeDeployments", false, &b) < 0)
                return bad(err, errlen, "data.includeDeployments must be a boolean");
        return 0;
}

static int health_estimate(const json_t *data) {
        return 2;
}

/* Copies src[k1][k2] (k2 may be NULL) into dst[key] when it is a number. */
static void copy_number(json_t *dst, const char *key, const json_t *src, const char *k1,
                        const char *k2) {
        json_t *v = json_object_get(src, k1);

        if (k2)
                v = json_object_get(v, k2);
        if (json_is_number(v))
                json_object_set(dst, key, v);
}

/* {cpuUsage, ramUsed, diskUsed, gpuDevices} from telemetry.metrics data. */
static json_t *health_metrics(const cmd_host *h) {
        json_t *m = h->metrics ? h->metrics(h->ud) : NULL;
        json_t *o = json_object(), *gpus;

        if (!o)
                goto out;
        copy_number(o, "cpuUsage", m, "cpu", "usage");
        copy_number(o, "ramUsed", m, "memory", "used");
        copy_number(o, "diskUsed", m, "disk", "used");
        gpus = json_object_get(m, "gpuDevices");
        if (json_is_array(gpus))
                json_object_set(o, "gpuDevices", gpus);
        else
                json_object_set_new(o, "gpuDevices", json_array());
out:
        json_decref(m);
        return o;
}

static int health_start(cmd_job *job) {
        const cmd_host *h = cmd_engine_host(cmd_job_engine(job));
        const json_t *data = cmd_job_data(job);
        bool with_metrics = false, with_deployments = false;
        json_t *r = json_object(), *v;
        char ts[25];

        opt_bool(data, "includeMetrics", false, &with_metrics);
        opt_bool(data, "includeDeployments", false, &with_deployments);
        util_iso_now(ts);
        if (!r)
                return -ENOMEM;
        json_object_set_new(r, "nodeStatus", json_string(host_node_status(h)));
        json_object_set_new(r, "uptimeSeconds", json_integer(host_uptime(h)));
        json_object_set_new(r, "timestamp", json_string(ts));
        if (with_metrics) {
                v = health_metrics(h);
                if (v)
                        json_object_set_new(r, "metrics", v);
        }
        if (with_deployments) {
                v = h->deployments ? h->deployments(h->ud) : NULL;
                if (!json_is_array(v)) {
                        json_decref(v);
                        v = json_array();
                }
                json_object_set_new(r, "deployments", v);
        }
        cmd_job_succeed(job, r);
        return 0;
}

/* ---- system.query ---- */

static int query_estimate(const json_t *data) {
        return 1;
}

static int query_start(cmd_job *job) {
        cmd_engine *e = cmd_job_engine(job);
        const cmd_host *h = cmd_engine_host(e);
        json_t *inv = h->inventory ? h->inventory(h->ud) : NULL, *r, *cfg;

        if (!json_is_object(inv)) {
                json_decref(inv);
                cmd_job_fail(job, CMD_E_INTERNAL, "the node inventory is not available yet", true,
                             NULL);
                return 0;
        }
        r = json_deep_copy(inv);
        json_decref(inv);
        if (!r)
                return -ENOMEM;
        cfg = h->config_json ? h->config_json(h->ud) : NULL;
        json_object_set_new(r, "configuration", cfg ? cfg : json_object());
        json_object_set_new(r, "version", json_string(cmd_engine_version(e)));
        cmd_job_succeed(job, r);
        return 0;
}

/* ---- system.restart ---- */

static int restart_validate(const json_t *data, const json_t *resource, char *err, size_t errlen) {
        json_t *v = json_object_get(data, "delaySeconds");
        const char *s;

        if (v && !json_is_null(v) &&
            (!json_is_integer(v) || json_integer_value(v) < 0 ||
             json_integer_value(v) > MAX_RESTART_DELAY_S))
                return bad(err, errlen, "data.delaySeconds must be an integer between 0 and 3600");
        if (opt_string(data, "reason", MAX_REASON, &s) < 0)
                return bad(err, errlen, "data.reason must be a string of 1 to 1024 bytes");
        return 0;
}

static int64_t restart_delay_s(const json_t *data) {
        json_t *v = json_object_get(data, "delaySeconds");

        return json_is_integer(v) ? json_integer_value(v) : 0;
}

static int restart_estimate(const json_t *data) {
        return (int)restart_delay_s(data);
}

static int restart_start(cmd_job *job) {
        const cmd_host *h = cmd_engine_host(cmd_job_engine(job));
        int64_t delay_s = restart_delay_s(cmd_job_data(job));
        const char *reason = json_string_value(json_object_get(cmd_job_data(job), "reason"));
        char at[25];

        if (!h->request_restart) {
                cmd_job_fail(job, CMD_E_INTERNAL, "this worker cannot restart itself", false, NULL);
                return 0;
        }
        util_iso_ms(util_wall_ms() + delay_s * 1000, at);
        log_info("restart requested by the controller", "reason", reason ? reason : "(none)",
                 "restartingAt", at, NULL);
        /* The result must be in the outbox before the host starts to close
         * the session, so that its flush sends it. */
        cmd_job_succeed(job, json_pack("{s:s}", "restartingAt", at));
        h->request_restart(h->ud, (uint64_t)delay_s * 1000);
        return 0;
}

/* ---- system.update ---- */


/* ---- downloads: the adapter over core/http.h ----
 *   - dl_start() begins a GET of url (redirects followed, never from https to
 *     http, at most timeout_ms in all) and returns 0, or a negative errno
 *     with no callback to come;
 *   - on_data() receives the body as it arrives; a negative return aborts
 *     the transfer, and that errno is what on_done() then reports;
 *   - on_done() runs exactly once, on a later loop turn, with 0 or a negative
 *     errno, the HTTP status (0 when none) and a sentence (may be NULL);
 *   - dl_abort() stops a transfer whose on_done() has not run; no callback
 *     follows. */

typedef struct dl_transfer dl_transfer;
typedef int (*dl_data_cb)(void *userdata, const void *data, size_t len);
typedef void (*dl_done_cb)(void *userdata, int result, long http_status, const char *errmsg);

struct dl_transfer {
        http_request *req;
        dl_data_cb on_data;
        dl_done_cb on_done;
        void *userdata;
        long status;
};

/* One client for the module's downloads, made on first use and freed with
 * the handlers' context. */
static http_client *dl_client;

static int dl_headers(http_request *req, long status, void *ud) {
        dl_transfer *t = ud;
        t->status = status;
        return status >= 200 && status < 300 ? 0 : -EPROTO;
}

static int dl_data(http_request *req, const void *data, size_t len, void *ud) {
        dl_transfer *t = ud;
        return t->on_data(t->userdata, data, len);
}

static void dl_done(http_request *req, const http_result *res, void *ud) {
        dl_transfer *t = ud;
        int r = res->err;
        const char *msg = res->error;
        char text[160];

        if (r == -ECANCELED && res->abort_code == -EPROTO) {
                /* A non-2xx answer: reported through the status, body skipped. */
                snprintf(text, sizeof text, "HTTP %ld", res->status);
                msg = text;
                r = 0;
        } else if (r == -ECANCELED && res->abort_code) {
                r = res->abort_code;
        }
        t->on_done(t->userdata, r, res->status, msg);
        free(t);
}

static int dl_start(loop *l, const char *url, uint64_t timeout_ms, dl_data_cb on_data,
                    dl_done_cb on_done, void *userdata, dl_transfer **ret) {
        http_options o = {
                .url = url,
                .timeout_ms = timeout_ms,
                .follow_redirects = true,
                .low_speed_limit = 1,
                .low_speed_time_s = 60,
                .on_headers = dl_headers,
                .on_data = dl_data,
        };
        dl_transfer *t;
        int r;

        if (!dl_client) {
                r = http_client_new(l, &dl_client);
                if (r < 0)
                        return r;
        }
        t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        t->on_data = on_data;
        t->on_done = on_done;
        t->userdata = userdata;
        r = http_request_start(dl_client, &o, dl_done, t, &t->req);
        if (r < 0) {
                free(t);
                return r;
        }
        *ret = t;
        return 0;
}

static dl_transfer *dl_abort(dl_transfer *t) {
        if (t) {
                http_request_cancel(t->req);
                free(t);
        }
        return NULL;
}

struct sys_update {
        sys_ctx *sys;
        cmd_job *job;
        char *url, *sha256, *version;
        bool restart;
        char *new_path;      /* <exe>.new while downloading */
        int fd;
        EVP_MD_CTX *md;
        uint64_t bytes;
        dl_transfer *dl;     /* the download, while it runs */
        pid_t pid;           /* the smoke test, while it runs */
        loop_child *child;
        int out_fd;
        loop_io *out_io;
        loop_timer *smoke_timer;
        buf out;
        bool swapped;
};

static int update_validate(const json_t *data, const json_t *resource, char *err, size_t errlen) {
        const char *url, *sha, *version;
        bool b;
        size_t i;

        if (opt_string(data, "url", MAX_URL, &url) < 0 || !url ||
            (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0) ||
            strpbrk(url, " \t\r\n"))
                return bad(err, errlen, "data.url must be an http or https URL");
        if (opt_string(data, "sha256", 64, &sha) < 0 || !sha || strlen(sha) != 64)
                return bad(err, errlen, "data.sha256 must be 64 hexadecimal characters");
        for (i = 0; i < 64; i++)
                if (!strchr("0123456789abcdefABCDEF", sha[i]))
                        return bad(err, errlen, "data.sha256 must be 64 hexadecimal characters");
        if (opt_string(data, "version", MAX_VERSION, &version) < 0)
                return bad(err, errlen, "data.version must be a string of 1 to 64 bytes");
        if (opt_bool(data, "restart", true, &b) < 0)
                return bad(err, errlen, "data.restart must be a boolean");
        return 0;
}

static int update_estimate(const json_t *data) {
        return 120;
}

/* Releases everything the update holds; the job is not touched. */
static void update_free(sys_update *u) {
        if (!u)
                return;
        if (u->dl)
                u->dl = dl_abort(u->dl);
        if (u->child) {
                /* Killed and reaped at once: SIGKILL cannot be caught. */
                loop_child_cancel(u->child);
                kill(u->pid, SIGKILL);
                while (waitpid(u->pid, NULL, 0) < 0 && errno == EINTR)
                        ;
        }
        loop_io_stop(u->out_io);
        if (u->out_fd >= 0)
                close(u->out_fd);
        loop_timer_free(u->smoke_timer);
        if (u->fd >= 0)
                close(u->fd);
        if (u->new_path && !u->swapped)
                unlink(u->new_path);
        EVP_MD_CTX_free(u->md);
        buf_done(&u->out);
        if (u->sys && u->sys->active == u)
                u->sys->active = NULL;
        free(u->url);
        free(u->sha256);
        free(u->version);
        free(u->new_path);
        free(u);
}

static void update_cancel(cmd_job *job) {
        update_free(cmd_job_get_userdata(job));
        cmd_job_set_userdata(job, NULL);
}

static void update_fail(sys_update *u, const char *code, bool retryable, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static void update_fail(sys_update *u, const char *code, bool retryable, const char *fmt, ...) {
        cmd_job *job = u->job;
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        log_warn("system.update failed", "error", msg, NULL);
        update_free(u);
        cmd_job_set_userdata(job, NULL);
        cmd_job_fail(job, code, msg, retryable, NULL);
}

/* Hex SHA-256 of a whole file. */
static int sha256_file(const char *path, char out[65]) {
        unsigned char md[EVP_MAX_MD_SIZE], chunk[65536];
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        unsigned int mdlen = 0, i;
        int fd = -1, r = 0;
        ssize_t n;

        if (!ctx)
                return -ENOMEM;
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                goto out;
        }
        if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
                r = -EIO;
                goto out;
        }
        while ((n = read(fd, chunk, sizeof chunk)) != 0) {
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        goto out;
                }
                if (EVP_DigestUpdate(ctx, chunk, (size_t)n) != 1) {
                        r = -EIO;
                        goto out;
                }
        }
        if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32) {
                r = -EIO;
                goto out;
        }
        for (i = 0; i < 32; i++)
                snprintf(out + 2 * i, 3, "%02x", md[i]);
out:
        if (fd >= 0)
                close(fd);
        EVP_MD_CTX_free(ctx);
        return r;
}

static int fsync_dir_of(const char *path) {
        char *dir = strdup(path), *slash;
        int fd, r = 0;

        if (!dir)
                return -ENOMEM;
        slash = strrchr(dir, '/');
        if (slash == dir)
                slash[1] = '\0';
        else if (slash)
                *slash = '\0';
        else
                snprintf(dir, strlen(path) + 1, ".");
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) < 0)
                r = -errno;
        if (fd >= 0)
                close(fd);
        free(dir);
        return r;
}

/* Copies src to dst (created 0755), for file systems without hard links. */
static int copy_file(const char *src, const char *dst) {
        char chunk[65536];
        int in = -1, out = -1, r = 0;
        ssize_t n;

        in = open(src, O_RDONLY | O_CLOEXEC);
        if (in < 0)
                return -errno;
        out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0755);
        if (out < 0) {
                r = -errno;
                goto out;
        }
        while ((n = read(in, chunk, sizeof chunk)) != 0) {
                ssize_t off = 0;
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        goto out;
                }
                while (off < n) {
                        ssize_t w = write(out, chunk + off, (size_t)(n - off));
                        if (w < 0) {
                                if (errno == EINTR)
                                        continue;
                                r = -errno;
                                goto out;
                        }
                        off += w;
                }
        }
        if (fsync(out) < 0)
                r = -errno;
out:
        if (out >= 0 && close(out) < 0 && r == 0)
                r = -errno;
        if (in >= 0)
                close(in);
        return r;
}

static char *path_with_suffix(const char *path, const char *suffix) {
        size_t n = strlen(path) + strlen(suffix) + 1;
        char *p = malloc(n);

        if (p)
                snprintf(p, n, "%s%s", path, suffix);
        return p;
}

/* The version the new binary printed: the last word of its first line. */
static char *printed_version(const char *out) {
        char line[256], *p, *word;
        size_t n = strcspn(out, "\n");

        if (n >= sizeof line)
                n = sizeof line - 1;
        memcpy(line, out, n);
        line[n] = '\0';
        p = util_strstrip(line);
        word = strrchr(p, ' ');
        word = word ? word + 1 : p;
        if (!*word || strlen(word) > MAX_VERSION)
                return NULL;
        return strdup(word);
}

/* The new binary passed: keep the old one as <exe>.previous, move the new one
 * into place, record the pending update, answer and restart. */
static void update_swap(sys_update *u) {
        sys_ctx *s = u->sys;
        cmd_engine *e = s->e;
        const cmd_host *h = cmd_engine_host(e);
        char *previous = NULL, *pending = NULL, *printed = NULL, at[25];
        const char *new_version;
        bool restart = u->restart;
        cmd_job *job = u->job;
        json_t *result;
        int r;

        printed = printed_version(u->out.data ? u->out.data : "");
        new_version = u->version ? u->version : printed ? printed : "unknown";
        previous = path_with_suffix(s->exe_path, ".previous");
        pending = dump_free(json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:i}",
                                       "exePath", s->exe_path, "previousPath", previous ? previous : "",
                                       "previousVersion", cmd_engine_version(e),
                                       "newVersion", new_version, "sha256", u->sha256,
                                       "confirmWithinMs", (json_int_t)s->confirm_ms, "starts", 0));
        if (!previous || !pending) {
                update_fail(u, CMD_E_INTERNAL, true, "out of memory");
                goto out;
        }
        /* Record first: a crash between the two steps below then leaves a
         * pending record whose hash does not match the executable, which
         * the next start discards. */
        r = db_kv_set(h->db, KV_PENDING, pending);
        if (r < 0) {
                update_fail(u, CMD_E_INTERNAL, true, "cannot record the update: %s", db_errmsg(h->db));
                goto out;
        }
        if (unlink(previous) < 0 && errno != ENOENT) {
                r = -errno;
                goto fail_swap;
        }
        if (link(s->exe_path, previous) < 0) {
                r = copy_file(s->exe_path, previous);
                if (r < 0)
                        goto fail_swap;
        }
        if (rename(u->new_path, s->exe_path) < 0) {
                r = -errno;
                goto fail_swap;
        }
        u->swapped = true;
        (void)fsync_dir_of(s->exe_path);
        util_iso_now(at);
        result = json_pack("{s:s, s:s}", "previousVersion", cmd_engine_version(e), "newVersion",
                           new_version);
        if (result && restart)
                json_object_set_new(result, "restartingAt", json_string(at));
        log_info("executable updated", "path", s->exe_path, "previousVersion",
                 cmd_engine_version(e), "newVersion", new_version, NULL);
        update_free(u);
        cmd_job_set_userdata(job, NULL);
        cmd_job_succeed(job, result);
        if (restart && h->request_restart)
                h->request_restart(h->ud, 0);
        goto out;
fail_swap:
        (void)db_kv_delete(h->db, KV_PENDING);
        update_fail(u, CMD_E_INTERNAL, true, "cannot replace %s: %s", s->exe_path, strerror(-r));
out:
        free(previous);
        free(pending);
        free(printed);
}

static void smoke_read(sys_update *u) {
        char chunk[1024];
        ssize_t n;

        while ((n = read(u->out_fd, chunk, sizeof chunk)) > 0)
                if (u->out.len + (size_t)n <= SMOKE_OUTPUT_MAX)
                        (void)buf_append(&u->out, chunk, (size_t)n);
}

static void smoke_io_cb(loop_io *io, int fd, unsigned events, void *userdata) {
        sys_update *u = userdata;

        smoke_read(u);
        if (events & LOOP_ERROR)
                u->out_io = loop_io_stop(u->out_io);
}

static void smoke_exit_cb(loop_child *c, pid_t pid, int status, void *userdata) {
        sys_update *u = userdata;

        u->child = NULL;
        smoke_read(u);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                bool timed_out = u->smoke_timer && !loop_timer_armed(u->smoke_timer);
                if (timed_out)
                        update_fail(u, CMD_E_COMMAND_INVALID, false,
                                    "the new binary did not answer --version within %llu ms",
                                    (unsigned long long)u->sys->smoke_timeout_ms);
                else if (WIFEXITED(status))
                        update_fail(u, CMD_E_COMMAND_INVALID, false,
                                    "the new binary failed its smoke test (--version exited with "
                                    "status %d)", WEXITSTATUS(status));
                else
                        update_fail(u, CMD_E_COMMAND_INVALID, false,
                                    "the new binary failed its smoke test (killed by signal %d)",
                                    WTERMSIG(status));
                return;
        }
        update_swap(u);
}

static void smoke_timeout_cb(loop_timer *t, void *userdata) {
        sys_update *u = userdata;

        if (u->child)
                kill(u->pid, SIGKILL); /* smoke_exit_cb reports it */
}

/* Runs `<new> --version` with stdout on a pipe, stdin and stderr on
 * /dev/null. */
static int smoke_start(sys_update *u) {
        const cmd_host *h = cmd_engine_host(u->sys->e);
        posix_spawn_file_actions_t fa;
        char *argv[] = { u->new_path, (char *)"--version", NULL };
        char *envp[] = { (char *)"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };
        int p[2], r;

        if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
                return -errno;
        u->out_fd = p[0];
        r = posix_spawn_file_actions_init(&fa);
        if (r != 0) {
                close(p[1]);
                return -r;
        }
        r = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, p[1], 1);
        if (r == 0)
                r = posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
        if (r == 0)
                r = posix_spawn(&u->pid, u->new_path, &fa, NULL, argv, envp);
        posix_spawn_file_actions_destroy(&fa);
        close(p[1]);
        if (r != 0)
                return -r;
        r = loop_child_watch(h->l, u->pid, smoke_exit_cb, u, &u->child);
        if (r < 0) {
                kill(u->pid, SIGKILL);
                while (waitpid(u->pid, NULL, 0) < 0 && errno == EINTR)
                        ;
                return r;
        }
        r = loop_io_start(h->l, u->out_fd, LOOP_READ, smoke_io_cb, u, &u->out_io);
        if (r == 0)
                r = loop_timer_new(h->l, smoke_timeout_cb, u, &u->smoke_timer);
        if (r < 0)
                return r; /* update_free() kills and reaps */
        loop_timer_arm(u->smoke_timer, u->sys->smoke_timeout_ms);
        return 0;
}

/* ---- download callbacks ---- */

static int update_on_data(void *userdata, const void *data, size_t len) {
        sys_update *u = userdata;
        const char *p = data;
        size_t off = 0;

        u->bytes += len;
        if (u->bytes > u->sys->max_download)
                return -EFBIG;
        if (EVP_DigestUpdate(u->md, data, len) != 1)
                return -EIO;
        while (off < len) {
                ssize_t n = write(u->fd, p + off, len - off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                off += (size_t)n;
        }
        return 0;
}

static void update_on_done(void *userdata, int result, long http_status, const char *errmsg) {
        sys_update *u = userdata;
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0, i;
        char hex[65];
        int r;

        u->dl = NULL; /* the transfer is finished and freed by its owner */
        if (result == -EFBIG) {
                update_fail(u, CMD_E_COMMAND_INVALID, false, "data.url is larger than %llu bytes",
                            (unsigned long long)u->sys->max_download);
                return;
        }
        if (result < 0) {
                update_fail(u, CMD_E_NETWORK, true, "download of data.url failed: %s",
                            errmsg && *errmsg ? errmsg : strerror(-result));
                return;
        }
        if (http_status != 200) {
                update_fail(u, http_status >= 500 || http_status == 429 ? CMD_E_NETWORK
                                                                        : CMD_E_COMMAND_INVALID,
                            http_status >= 500 || http_status == 429,
                            "data.url answered HTTP %ld", http_status);
                return;
        }
        if (EVP_DigestFinal_ex(u->md, md, &mdlen) != 1 || mdlen != 32) {
                update_fail(u, CMD_E_INTERNAL, true, "cannot compute the SHA-256 of the download");
                return;
        }
        for (i = 0; i < 32; i++)
                snprintf(hex + 2 * i, 3, "%02x", md[i]);
        if (strcasecmp(hex, u->sha256) != 0) {
                update_fail(u, CMD_E_COMMAND_INVALID, false,
                            "data.sha256 does not match the downloaded file (sha256 %s)", hex);
                return;
        }
        if (fchmod(u->fd, 0755) < 0 || fsync(u->fd) < 0) {
                update_fail(u, CMD_E_INTERNAL, true, "cannot write %s: %s", u->new_path,
                            strerror(errno));
                return;
        }
        r = close(u->fd);
        u->fd = -1;
        if (r < 0) {
                update_fail(u, CMD_E_INTERNAL, true, "cannot write %s: %s", u->new_path,
                            strerror(errno));
                return;
        }
        r = smoke_start(u);
        if (r < 0)
                update_fail(u, CMD_E_INTERNAL, true, "cannot run the new binary: %s", strerror(-r));
}

static int update_start(cmd_job *job) {
        sys_ctx *s = cmd_job_ctx(job);
        const json_t *data = cmd_job_data(job);
        const char *version = json_string_value(json_object_get(data, "version"));
        sys_update *u;
        int r;

        if (s->active) {
                cmd_job_fail(job, CMD_E_RESOURCE_EXHAUSTED, "an update is already in progress",
                             true, NULL);
                return 0;
        }
        u = calloc(1, sizeof *u);
        if (!u)
                return -ENOMEM;
        u->sys = s;
        u->job = job;
        u->fd = -1;
        u->out_fd = -1;
        buf_init(&u->out, SMOKE_OUTPUT_MAX);
        opt_bool(data, "restart", true, &u->restart);
        u->url = strdup(json_string_value(json_object_get(data, "url")));
        u->sha256 = strdup(json_string_value(json_object_get(data, "sha256")));
        u->version = version ? strdup(version) : NULL;
        u->new_path = path_with_suffix(s->exe_path, ".new");
        u->md = EVP_MD_CTX_new();
        if (!u->url || !u->sha256 || (version && !u->version) || !u->new_path || !u->md) {
                r = -ENOMEM;
                goto fail;
        }
        if (EVP_DigestInit_ex(u->md, EVP_sha256(), NULL) != 1) {
                r = -EIO;
                goto fail;
        }
        u->fd = open(u->new_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0700);
        if (u->fd < 0) {
                r = -errno;
                goto fail;
        }
        r = dl_start(cmd_engine_host(s->e)->l, u->url, s->download_timeout_ms, update_on_data,
                     update_on_done, u, &u->dl);
        if (r == -ENOTSUP) {
                update_free(u);
                cmd_job_fail(job, CMD_E_COMMAND_INVALID,
                             "system.update is not available in this build", false, NULL);
                return 0;
        }
        if (r < 0)
                goto fail;
        s->active = u;
        cmd_job_set_userdata(job, u);
        log_info("system.update started", "url", u->url, NULL);
        return 0;
fail:
        update_free(u);
        return r;
}

/* ---- rollback ---- */

static sys_ctx *sys_of(cmd_engine *e) {
        return cmd_engine_handler_ctx(e, "system.update");
}

/* Restores <exe>.previous, notes why, and asks the host to re-exec. */
static int rollback(sys_ctx *s, json_t *pending, const char *reason) {
        const cmd_host *h = cmd_engine_host(s->e);
        const char *previous = json_string_value(json_object_get(pending, "previousPath"));
        char at[25], *note;
        int r = 0;

        util_iso_now(at);
        if (!previous || rename(previous, s->exe_path) < 0) {
                r = previous ? -errno : -EINVAL;
                log_error("rollback of the update failed", "path", s->exe_path, "error",
                          strerror(-r), NULL);
        } else {
                (void)fsync_dir_of(s->exe_path);
        }
        note = dump_free(json_pack("{s:O?, s:O?, s:s, s:s, s:b}",
                                    "fromVersion", json_object_get(pending, "newVersion"),
                                    "toVersion", json_object_get(pending, "previousVersion"),
                                    "reason", reason, "at", at, "restored", r == 0));
        if (note)
                (void)db_kv_set(h->db, KV_ROLLED_BACK, note);
        free(note);
        (void)db_kv_delete(h->db, KV_PENDING);
        if (r < 0)
                return r;
        log_warn("update rolled back", "reason", reason, NULL);
        if (h->request_restart)
                h->request_restart(h->ud, 0);
        return 1;
}

static void confirm_timeout_cb(loop_timer *t, void *userdata) {
        sys_ctx *s = userdata;
        const cmd_host *h = cmd_engine_host(s->e);
        json_t *pending = NULL;
        char *text = NULL;

        if (db_kv_get(h->db, KV_PENDING, &text) == 0)
                pending = json_loads(text, 0, NULL);
        free(text);
        if (pending)
                (void)rollback(s, pending, "the new version did not connect to the controller in time");
        json_decref(pending);
}

int cmd_system_check_update(cmd_engine *e) {
        sys_ctx *s = sys_of(e);
        const cmd_host *h;
        json_t *pending = NULL;
        char *text = NULL, hex[65], *updated = NULL;
        const char *sha, *exe;
        int r;

        if (!s)
                return -ENOENT;
        h = cmd_engine_host(e);
        r = db_kv_get(h->db, KV_PENDING, &text);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        pending = json_loads(text, 0, NULL);
        sha = json_string_value(json_object_get(pending, "sha256"));
        exe = json_string_value(json_object_get(pending, "exePath"));
        /* Only the new binary itself, running from the path it was installed
         * to, watches the update. Anything else means the record is stale. */
        if (!sha || !exe || strcmp(exe, s->exe_path) != 0 || sha256_file(s->exe_path, hex) < 0 ||
            strcasecmp(hex, sha) != 0) {
                (void)db_kv_delete(h->db, KV_PENDING);
                r = 0;
                goto out;
        }
        if (json_integer_value(json_object_get(pending, "starts")) >= 1) {
                r = rollback(s, pending, "the new version exited before connecting to the controller");
                goto out;
        }
        json_object_set_new(pending, "starts", json_integer(1));
        updated = json_dumps(pending, JSON_COMPACT);
        r = updated ? db_kv_set(h->db, KV_PENDING, updated) : -ENOMEM;
        if (r < 0)
                goto out;
        loop_timer_arm(s->confirm_timer, s->confirm_ms);
        r = 0;
out:
        json_decref(pending);
        free(text);
        free(updated);
        return r;
}

void cmd_system_update_confirmed(cmd_engine *e) {
        sys_ctx *s = sys_of(e);

        if (!s || !loop_timer_armed(s->confirm_timer))
                return;
        loop_timer_disarm(s->confirm_timer);
        (void)db_kv_delete(cmd_engine_host(e)->db, KV_PENDING);
        log_info("update confirmed", NULL);
}

int cmd_system_take_rollback(cmd_engine *e, json_t **ret_note) {
        sys_ctx *s = sys_of(e);
        const cmd_host *h;
        char *text = NULL;
        json_t *note;
        int r;

        if (!s)
                return -ENOENT;
        h = cmd_engine_host(e);
        r = db_kv_get(h->db, KV_ROLLED_BACK, &text);
        if (r < 0)
                return r;
        note = json_loads(text, 0, NULL);
        free(text);
        (void)db_kv_delete(h->db, KV_ROLLED_BACK);
        if (!note)
                return -ENOENT;
        *ret_note = note;
        return 0;
}

/* ---- registration ---- */

static void sys_free(void *ctx) {
        sys_ctx *s = ctx;

        if (!s)
                return;
        loop_timer_free(s->confirm_timer);
        free(s->exe_path);
        free(s);
        dl_client = http_client_free(dl_client);
}

static int resolve_exe(const char *configured, char **ret) {
        char path[4096];
        ssize_t n;

        if (configured) {
                *ret = strdup(configured);
                return *ret ? 0 : -ENOMEM;
        }
        n = readlink("/proc/self/exe", path, sizeof path - 1);
        if (n < 0)
                return -errno;
        if ((size_t)n >= sizeof path - 1)
                return -ENAMETOOLONG;
        path[n] = '\0';
        *ret = strdup(path);
        return *ret ? 0 : -ENOMEM;
}

int cmd_system_register(cmd_engine *e, const cmd_system_config *cfg) {
        const cmd_host *h = cmd_engine_host(e);
        sys_ctx *s = calloc(1, sizeof *s);
        cmd_handler hd[4];
        size_t i;
        int r;

        if (!s)
                return -ENOMEM;
        s->e = e;
        s->confirm_ms = cfg && cfg->confirm_ms ? cfg->confirm_ms : DEFAULT_CONFIRM_MS;
        s->smoke_timeout_ms =
                cfg && cfg->smoke_timeout_ms ? cfg->smoke_timeout_ms : DEFAULT_SMOKE_TIMEOUT_MS;
        s->max_download = cfg && cfg->max_download ? cfg->max_download : DEFAULT_MAX_DOWNLOAD;
        s->download_timeout_ms = cfg && cfg->download_timeout_ms ? cfg->download_timeout_ms
                                                                : DEFAULT_DOWNLOAD_TIMEOUT_MS;
        r = resolve_exe(cfg ? cfg->exe_path : NULL, &s->exe_path);
        if (r < 0)
                goto fail;
        r = loop_timer_new(h->l, confirm_timeout_cb, s, &s->confirm_timer);
        if (r < 0)
                goto fail;

        /* The update handler owns the context (ctx_free): registered first,
         * so that the engine frees it from then on. */
        memset(hd, 0, sizeof hd);
        hd[0] = (cmd_handler){ .type = "system.update", .validate = update_validate,
                               .estimated_duration = update_estimate, .start = update_start,
                               .cancel = update_cancel, .ctx = s, .ctx_free = sys_free };
        hd[1] = (cmd_handler){ .type = "system.healthCheck", .validate = health_validate,
                               .estimated_duration = health_estimate, .start = health_start,
                               .quick = true, .ctx = s };
        hd[2] = (cmd_handler){ .type = "system.query", .estimated_duration = query_estimate,
                               .start = query_start, .quick = true, .ctx = s };
        hd[3] = (cmd_handler){ .type = "system.restart", .validate = restart_validate,
                               .estimated_duration = restart_estimate, .start = restart_start,
                               .quick = true, .ctx = s };
        r = cmd_engine_register(e, &hd[0]);
        if (r < 0)
                goto fail;
        for (i = 1; i < 4; i++) {
                r = cmd_engine_register(e, &hd[i]);
                if (r < 0)
                        return r;
        }
        return 0;
fail:
        sys_free(s);
        return r;
}
