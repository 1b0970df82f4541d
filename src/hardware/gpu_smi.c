#include "hardware/gpu_smi.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/util.h"

#define QUERY_COLUMNS 11
#define STDERR_MAX 4096
#define REASON_LINE_MAX 200
#define BANNER_TRIES 3
#define APPS_MAX_ROWS (GPU_MAX_DEVICES * 64)

extern char **environ;

/* ---- value parsing ---- */

typedef enum value_kind {
        VALUE_OK,
        VALUE_ABSENT, /* [N/A], [Not Supported], N/A, empty, any other [..] */
        VALUE_ERROR,  /* [GPU is lost], [Unknown Error], [GPU requires reset] */
} value_kind;

static value_kind classify(const char *v) {
        if (!*v || strcmp(v, "N/A") == 0)
                return VALUE_ABSENT;
        if (v[0] != '[')
                return VALUE_OK;
        if (strstr(v, "lost") || strstr(v, "Error") || strstr(v, "reset"))
                return VALUE_ERROR;
        return VALUE_ABSENT;
}

/* Removes an optional unit suffix ("MiB", "%", "W"), with or without a space
 * before it, in place. */
static void strip_unit(char *v, const char *unit) {
        size_t n = strlen(v), u = strlen(unit);

        if (n > u && strcmp(v + n - u, unit) == 0) {
                n -= u;
                while (n > 0 && v[n - 1] == ' ')
                        n--;
                v[n] = '\0';
        }
}

static bool parse_int(char *v, const char *unit, int64_t min, int64_t max, int64_t *ret) {
        strip_unit(v, unit);
        return util_parse_i64(v, min, max, ret) == 0;
}

static bool parse_double(char *v, const char *unit, double min, double max, double *ret) {
        char *end;
        double d;

        strip_unit(v, unit);
        if (!*v || !(v[0] == '-' || (v[0] >= '0' && v[0] <= '9')))
                return false;
        errno = 0;
        d = strtod(v, &end);
        if (errno || *end || !isfinite(d) || d < min || d > max)
                return false;
        *ret = d;
        return true;
}

/* Trims spaces (and a CR) around s in place; returns s. */
static char *trim(char *s) {
        size_t n;

        while (*s == ' ' || *s == '\t')
                s++;
        n = strlen(s);
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
                s[--n] = '\0';
        return s;
}

/* Writes the first non-empty line of text (cleaned, shortened) into err. */
static void first_line(const char *text, size_t len, char *err, size_t err_size) {
        const char *p = text, *end = text + len, *nl;
        char *c;

        if (!err || err_size == 0)
                return;
        err[0] = '\0';
        while (p < end) {
                nl = memchr(p, '\n', (size_t)(end - p));
                if (!nl)
                        nl = end;
                c = gpu_strndup_clean(p, (size_t)(nl - p) > REASON_LINE_MAX ? REASON_LINE_MAX
                                                                             : (size_t)(nl - p));
                if (c && *c) {
                        util_strlcpy(err, c, err_size);
                        free(c);
                        return;
                }
                free(c);
                p = nl + 1;
        }
}

/* Splits a line at commas into at most max fields (in place); the last one
 * holds the rest of the line. Returns the number of fields. */
static size_t split(char *line, char **f, size_t max) {
        size_t n = 0;
        char *p = line, *c;

        while (n < max) {
                f[n++] = p;
                if (n == max)
                        break; /* the last field keeps the rest of the line */
                c = strchr(p, ',');
                if (!c)
                        break;
                *c = '\0';
                p = c + 1;
        }
        return n;
}

/* Iterates over the lines of text: copies the next non-blank one into
 * *line (heap, NUL-terminated). Returns 1, 0 at the end, -ENOMEM. */
static int next_line(const char **pos, const char *end, char **line) {
        const char *p = *pos, *nl;
        size_t i, n;

        while (p < end) {
                nl = memchr(p, '\n', (size_t)(end - p));
                if (!nl)
                        nl = end;
                n = (size_t)(nl - p);
                for (i = 0; i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r'); i++)
                        ;
                if (i < n) {
                        *line = strndup(p, n);
                        if (!*line)
                                return -ENOMEM;
                        /* An embedded NUL ends the line early; harmless. */
                        *pos = nl < end ? nl + 1 : end;
                        return 1;
                }
                p = nl < end ? nl + 1 : end;
        }
        *pos = end;
        return 0;
}

static const char *const query_names[QUERY_COLUMNS] = {
        "index",          "name",        "uuid",          "memory.total",
        "memory.used",    "pci.bus_id",  "driver_version", "utilization.gpu",
        "temperature.gpu", "power.draw", "power.limit",
};

/* Fills d from the 11 column values of one row. */
static int fill_device(gpu_device *d, char **col) {
        int64_t v;
        double w;
        char bus[17];
        size_t i;
        int r;

        for (i = 1; i < QUERY_COLUMNS; i++) {
                char *s = col[i];
                value_kind k = classify(s);

                if (k == VALUE_ERROR) {
                        size_t n = strlen(s);
                        char *c;

                        if (n >= 2 && s[n - 1] == ']') {
                                s[n - 1] = '\0';
                                s++;
                        }
                        c = gpu_strndup_clean(s, 64);
                        if (!c)
                                return -ENOMEM;
                        r = gpu_device_add_error(d, "nvidia-smi %s: %s", query_names[i], c);
                        free(c);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (k == VALUE_ABSENT)
                        continue;
                switch (i) {
                case 1:
                case 2:
                case 6: {
                        char *c = gpu_strndup_clean(s, strlen(s));
                        if (!c)
                                return -ENOMEM;
                        if (i == 1)
                                d->name = c;
                        else if (i == 2)
                                d->uuid = c;
                        else
                                d->driver_version = c;
                        break;
                }
                case 3:
                        if ((d->has_memory_total = parse_int(s, "MiB", 0, INT64_C(1) << 40, &v)))
                                d->memory_total_mib = v;
                        break;
                case 4:
                        if ((d->has_memory_used = parse_int(s, "MiB", 0, INT64_C(1) << 40, &v)))
                                d->memory_used_mib = v;
                        break;
                case 5:
                        if (gpu_pci_bus_id_normalize(s, bus)) {
                                d->pci_bus_id = strdup(bus);
                                if (!d->pci_bus_id)
                                        return -ENOMEM;
                        }
                        break;
                case 7:
                        if ((d->has_utilization = parse_int(s, "%", 0, 100, &v)))
                                d->utilization = (int)v;
                        break;
                case 8:
                        if ((d->has_temperature = parse_int(s, "C", -100, 300, &v)))
                                d->temperature = (int)v;
                        break;
                case 9:
                        if ((d->has_power_draw = parse_double(s, "W", 0, 1e6, &w)))
                                d->power_draw_w = w;
                        break;
                case 10:
                        if ((d->has_power_limit = parse_double(s, "W", 0, 1e6, &w)))
                                d->power_limit_w = w;
                        break;
                default:
                        break;
                }
        }
        gpu_device_update_status(d);
        return 0;
}

int gpu_smi_parse_query(const char *text, size_t len, char *err, size_t err_size,
                        gpu_list **ret_list) {
        const char *pos = text, *end = text + len;
        char *line = NULL, *f[64], *col[QUERY_COLUMNS];
        gpu_list *list;
        gpu_device *d;
        int64_t idx;
        size_t n, i;
        int r;

        if (err && err_size)
                err[0] = '\0';
        list = gpu_list_new();
        if (!list)
                return -ENOMEM;
        while ((r = next_line(&pos, end, &line)) > 0) {
                n = split(line, f, sizeof f / sizeof f[0]);
                if (n < QUERY_COLUMNS || n == sizeof f / sizeof f[0]) {
                        r = -EBADMSG;
                        goto fail_line;
                }
                /* A name with commas: index first, the 9 columns after the
                 * name from the right, the name is what lies between. */
                col[0] = trim(f[0]);
                for (i = 2; i < QUERY_COLUMNS; i++)
                        col[i] = trim(f[n - QUERY_COLUMNS + i]);
                for (i = 2; i < n - QUERY_COLUMNS + 2; i++)
                        f[i][-1] = ',';
                col[1] = trim(f[1]);
                if (util_parse_i64(col[0], 0, 65535, &idx) < 0) {
                        r = -EBADMSG;
                        goto fail_line;
                }
                d = gpu_list_add(list, (unsigned)idx);
                if (!d) {
                        r = list->n_devices >= GPU_MAX_DEVICES ? -E2BIG : -ENOMEM;
                        if (r == -E2BIG && err && err_size)
                                snprintf(err, err_size, "more than %d GPUs", GPU_MAX_DEVICES);
                        goto fail;
                }
                r = fill_device(d, col);
                if (r < 0)
                        goto fail;
                free(line);
                line = NULL;
        }
        if (r < 0)
                goto fail;
        *ret_list = list;
        return 0;
fail_line:
        first_line(text, len, err, err_size);
fail:
        free(line);
        gpu_list_free(list);
        return r;
}

typedef struct app_row {
        char *uuid;
        char *name;
        uint32_t pid;
        bool has_mem;
        int64_t mem;
} app_row;

int gpu_smi_parse_apps(const char *text, size_t len, char *err, size_t err_size, gpu_list *list) {
        const char *pos = text, *end = text + len;
        app_row *rows = NULL, *nr;
        size_t n_rows = 0, i, n;
        char *line = NULL, *f[4], *c, *name, *mem;
        int64_t pid;
        int r;

        if (err && err_size)
                err[0] = '\0';
        while ((r = next_line(&pos, end, &line)) > 0) {
                /* uuid, pid, then the name (may hold commas), then memory
                 * after the last comma. */
                n = split(line, f, 3);
                c = n == 3 ? strrchr(f[2], ',') : NULL;
                if (!c) {
                        r = -EBADMSG;
                        first_line(text, len, err, err_size);
                        goto out;
                }
                *c = '\0';
                name = trim(f[2]);
                mem = trim(c + 1);
                f[0] = trim(f[0]);
                f[1] = trim(f[1]);
                if (classify(f[1]) != VALUE_OK) {
                        free(line);
                        line = NULL;
                        continue;
                }
                if (util_parse_i64(f[1], 1, UINT32_MAX, &pid) < 0) {
                        r = -EBADMSG;
                        first_line(text, len, err, err_size);
                        goto out;
                }
                if (n_rows >= APPS_MAX_ROWS) {
                        free(line);
                        line = NULL;
                        continue;
                }
                nr = realloc(rows, (n_rows + 1) * sizeof *rows);
                if (!nr) {
                        r = -ENOMEM;
                        goto out;
                }
                rows = nr;
                nr = &rows[n_rows++];
                memset(nr, 0, sizeof *nr);
                nr->pid = (uint32_t)pid;
                nr->uuid = gpu_strndup_clean(f[0], strlen(f[0]));
                if (classify(name) == VALUE_OK)
                        nr->name = gpu_strndup_clean(name, strlen(name));
                if (!nr->uuid || (classify(name) == VALUE_OK && !nr->name)) {
                        r = -ENOMEM;
                        goto out;
                }
                if (classify(mem) == VALUE_OK)
                        nr->has_mem = parse_int(mem, "MiB", 0, INT64_C(1) << 40, &nr->mem);
                free(line);
                line = NULL;
        }
        if (r < 0)
                goto out;
        for (i = 0; i < list->n_devices; i++)
                list->devices[i].has_processes = true;
        for (i = 0; i < n_rows; i++) {
                gpu_device *d = gpu_list_find_uuid(list, rows[i].uuid);
                if (!d)
                        continue;
                r = gpu_device_add_process(d, rows[i].pid, rows[i].name, rows[i].has_mem,
                                           rows[i].mem);
                if (r == -ENOMEM)
                        goto out;
        }
        for (i = 0; i < list->n_devices; i++)
                gpu_device_update_status(&list->devices[i]);
        r = 0;
out:
        for (i = 0; i < n_rows; i++) {
                free(rows[i].uuid);
                free(rows[i].name);
        }
        free(rows);
        free(line);
        return r;
}

/* Matches "CUDA Version", "CUDA UMD Version", then spaces, ':' and spaces at
 * p; returns the position after them or NULL. */
static const char *match_cuda_label(const char *p, const char *end) {
        static const char *const labels[] = { "CUDA Version", "CUDA UMD Version" };
        size_t i, n;

        for (i = 0; i < sizeof labels / sizeof labels[0]; i++) {
                n = strlen(labels[i]);
                if ((size_t)(end - p) >= n && memcmp(p, labels[i], n) == 0) {
                        p += n;
                        while (p < end && *p == ' ')
                                p++;
                        if (p >= end || *p != ':')
                                return NULL;
                        p++;
                        while (p < end && *p == ' ')
                                p++;
                        return p;
                }
        }
        return NULL;
}

int gpu_smi_parse_banner_cuda(const char *text, size_t len, char **ret_version) {
        const char *p = text, *end = text + len, *v, *q;
        char *s;

        while (p < end) {
                q = memchr(p, 'C', (size_t)(end - p));
                if (!q)
                        break;
                v = match_cuda_label(q, end);
                p = q + 1;
                if (!v)
                        continue;
                q = v;
                while (q < end && ((*q >= '0' && *q <= '9') || *q == '.'))
                        q++;
                if (q == v || q - v > 15 || *v == '.' || q[-1] == '.')
                        continue;
                if (q < end && !(*q == ' ' || *q == '\n' || *q == '\r' || *q == '|'))
                        continue;
                s = strndup(v, (size_t)(q - v));
                if (!s)
                        return -ENOMEM;
                *ret_version = s;
                return 0;
        }
        return -ENOENT;
}

/* ---- running nvidia-smi ---- */

typedef enum step {
        STEP_QUERY,
        STEP_APPS,
        STEP_BANNER,
        STEP_DONE,
} step;

typedef struct child_run {
        pid_t pid;            /* 0 when none */
        loop_child *watch;
        int out_fd, err_fd;
        loop_io *out_io, *err_io;
        buf out, err;
        bool overflow, timed_out, killed;
} child_run;

struct gpu_smi {
        loop *l;
        char *path;
        uint64_t timeout_ms;
        size_t max_output;
        loop_timer *timer;    /* child timeout, or a deferred report */
        bool report_due;      /* timer fires the report rather than a timeout */

        bool running;
        step step;
        child_run c;
        gpu_list *list;
        int result;
        gpu_smi_cb cb;
        void *userdata;

        char *cuda_version;
        unsigned banner_tries;
};

static void child_kill(child_run *c) {
        if (c->pid <= 0 || c->killed)
                return;
        /* The child leads its own process group: take its children too. */
        if (kill(-c->pid, SIGKILL) < 0)
                kill(c->pid, SIGKILL);
        c->killed = true;
}

static void close_pipe(loop_io **io, int *fd) {
        *io = loop_io_stop(*io);
        if (*fd >= 0)
                close(*fd);
        *fd = -1;
}

/* Reads what is available. Returns true at end of file or on error. */
static bool drain(child_run *c, int fd, bool is_out) {
        buf *b = is_out ? &c->out : &c->err;
        char tmp[16384];
        ssize_t n;

        for (;;) {
                n = read(fd, tmp, sizeof tmp);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return errno != EAGAIN;
                if (n == 0)
                        return true;
                if (is_out) {
                        if (c->overflow)
                                continue;
                        if (buf_append(b, tmp, (size_t)n) < 0) {
                                /* buf_append freed the buffer; keep nothing. */
                                c->overflow = true;
                                child_kill(c);
                        }
                } else if (b->len < STDERR_MAX) {
                        size_t room = STDERR_MAX - b->len;
                        if (buf_append(b, tmp, (size_t)n < room ? (size_t)n : room) < 0)
                                buf_reset(b);
                }
        }
}

static void on_pipe(loop_io *io, int fd, unsigned events, void *userdata) {
        gpu_smi *s = userdata;
        child_run *c = &s->c;
        bool is_out = fd == c->out_fd;

        if (drain(c, fd, is_out)) {
                if (is_out)
                        close_pipe(&c->out_io, &c->out_fd);
                else
                        close_pipe(&c->err_io, &c->err_fd);
        }
}

static void child_cleanup(child_run *c) {
        close_pipe(&c->out_io, &c->out_fd);
        close_pipe(&c->err_io, &c->err_fd);
        buf_done(&c->out);
        buf_done(&c->err);
        c->pid = 0;
        c->watch = NULL;
}

static void report(gpu_smi *s) {
        gpu_list *list = s->list;
        gpu_smi_cb cb = s->cb;
        void *ud = s->userdata;
        int r = s->result;

        s->list = NULL;
        s->cb = NULL;
        s->userdata = NULL;
        s->running = false;
        cb(s, r, list, ud);
}

/* Ends the sample with an error of the device query: empty list + reason. */
static void fail_sample(gpu_smi *s, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail_sample(gpu_smi *s, int r, const char *fmt, ...) {
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        s->list = gpu_list_free(s->list);
        s->list = gpu_list_new();
        if (s->list)
                gpu_list_set_reason(s->list, "%s", msg);
        s->result = r;
}

static int start_step(gpu_smi *s);

static void finish(gpu_smi *s) {
        size_t i;

        if (s->list && s->cuda_version)
                for (i = 0; i < s->list->n_devices; i++) {
                        gpu_device *d = &s->list->devices[i];
                        if (!d->cuda_version)
                                d->cuda_version = strdup(s->cuda_version);
                }
        if (!s->list) {
                /* Out of memory building even an empty list: try once more
                 * on a later turn. */
                s->list = gpu_list_new();
                if (!s->list) {
                        s->report_due = true;
                        loop_timer_arm(s->timer, 100);
                        return;
                }
        }
        report(s);
}

/* Describes how the child ended into msg; returns 0 when it exited 0. */
static int describe_end(gpu_smi *s, int status, char *msg, size_t size) {
        child_run *c = &s->c;
        char line[REASON_LINE_MAX + 1];

        if (c->timed_out) {
                snprintf(msg, size, "nvidia-smi timed out after %llu ms (killed)",
                         (unsigned long long)s->timeout_ms);
                return -ETIMEDOUT;
        }
        if (c->overflow) {
                snprintf(msg, size, "nvidia-smi output exceeds %zu bytes (killed)", s->max_output);
                return -E2BIG;
        }
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return 0;
        first_line(c->out.data ? c->out.data : "", c->out.len, line, sizeof line);
        if (!line[0])
                first_line(c->err.data ? c->err.data : "", c->err.len, line, sizeof line);
        if (WIFEXITED(status))
                snprintf(msg, size, "nvidia-smi exited with status %d%s%s", WEXITSTATUS(status),
                         line[0] ? ": " : "", line);
        else
                snprintf(msg, size, "nvidia-smi killed by signal %d",
                         WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        return -EIO;
}

static void step_done(gpu_smi *s, int status) {
        child_run *c = &s->c;
        char msg[512], err[REASON_LINE_MAX + 1];
        const char *out = c->out.data ? c->out.data : "";
        int r;

        r = describe_end(s, status, msg, sizeof msg);
        switch (s->step) {
        case STEP_QUERY:
                if (r < 0) {
                        fail_sample(s, r, "%s", msg);
                        break;
                }
                s->list = gpu_list_free(s->list);
                r = gpu_smi_parse_query(out, c->out.len, err, sizeof err, &s->list);
                if (r < 0) {
                        fail_sample(s, r, "cannot parse nvidia-smi --query-gpu output (%s)%s%s",
                                    strerror(-r), err[0] ? ": " : "", err);
                        break;
                }
                if (s->list->n_devices == 0)
                        gpu_list_set_reason(s->list, "nvidia-smi reports no GPU");
                s->step = STEP_APPS;
                break;
        case STEP_APPS:
                if (r == 0) {
                        r = gpu_smi_parse_apps(out, c->out.len, err, sizeof err, s->list);
                        if (r < 0)
                                snprintf(msg, sizeof msg, "cannot parse nvidia-smi --query-compute-apps output (%s)%s%s",
                                         strerror(-r), err[0] ? ": " : "", err);
                }
                if (r < 0)
                        gpu_list_set_reason(s->list, "process list unavailable: %s", msg);
                s->step = STEP_BANNER;
                break;
        case STEP_BANNER:
                s->banner_tries++;
                if (r == 0 && gpu_smi_parse_banner_cuda(out, c->out.len, &s->cuda_version) == 0)
                        s->banner_tries = 0;
                s->step = STEP_DONE;
                break;
        case STEP_DONE:
                break;
        }
        child_cleanup(c);

        if (s->result < 0 || s->step == STEP_DONE ||
            (s->step == STEP_BANNER && (s->cuda_version || s->banner_tries >= BANNER_TRIES))) {
                finish(s);
                return;
        }
        r = start_step(s);
        if (r < 0) {
                if (s->step == STEP_APPS)
                        gpu_list_set_reason(s->list, "process list unavailable: cannot run %s: %s",
                                            s->path, strerror(-r));
                finish(s);
        }
}

static void on_child(loop_child *lc, pid_t pid, int status, void *userdata) {
        gpu_smi *s = userdata;
        child_run *c = &s->c;

        c->watch = NULL;
        loop_timer_disarm(s->timer);
        /* Whatever the child wrote before exiting is in the pipes; do not
         * wait for end of file, a grandchild may hold them open. */
        if (c->out_fd >= 0)
                drain(c, c->out_fd, true);
        if (c->err_fd >= 0)
                drain(c, c->err_fd, false);
        step_done(s, status);
}

static void on_timer(loop_timer *t, void *userdata) {
        gpu_smi *s = userdata;

        if (s->report_due) {
                s->report_due = false;
                finish(s);
                return;
        }
        s->c.timed_out = true;
        child_kill(&s->c);
}

static int spawn(gpu_smi *s, char *const argv[]) {
        child_run *c = &s->c;
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t at;
        int out[2] = { -1, -1 }, err[2] = { -1, -1 };
        sigset_t none, dfl;
        pid_t pid;
        int r;

        if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
                r = -errno;
                goto out_close;
        }
        if (fcntl(out[0], F_SETFL, O_NONBLOCK) < 0 || fcntl(err[0], F_SETFL, O_NONBLOCK) < 0) {
                r = -errno;
                goto out_close;
        }
        r = posix_spawn_file_actions_init(&fa);
        if (r) {
                r = -r;
                goto out_close;
        }
        r = posix_spawnattr_init(&at);
        if (r) {
                r = -r;
                goto out_fa;
        }
        sigemptyset(&none);
        sigemptyset(&dfl);
        sigaddset(&dfl, SIGPIPE);
        sigaddset(&dfl, SIGINT);
        sigaddset(&dfl, SIGTERM);
        sigaddset(&dfl, SIGHUP);
        sigaddset(&dfl, SIGQUIT);
        sigaddset(&dfl, SIGCHLD);
        if ((r = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)) ||
            (r = posix_spawn_file_actions_adddup2(&fa, out[1], 1)) ||
            (r = posix_spawn_file_actions_adddup2(&fa, err[1], 2)) ||
            (r = posix_spawnattr_setsigmask(&at, &none)) ||
            (r = posix_spawnattr_setsigdefault(&at, &dfl)) ||
            (r = posix_spawnattr_setpgroup(&at, 0)) ||
            (r = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                                   POSIX_SPAWN_SETPGROUP))) {
                r = -r;
                goto out_attr;
        }
        r = posix_spawnp(&pid, s->path, &fa, &at, argv, environ);
        if (r) {
                r = -r;
                goto out_attr;
        }
        close(out[1]);
        close(err[1]);
        out[1] = err[1] = -1;
        c->pid = pid;
        c->out_fd = out[0];
        c->err_fd = err[0];
        out[0] = err[0] = -1;
        buf_init(&c->out, s->max_output);
        buf_init(&c->err, 0);
        c->overflow = c->timed_out = c->killed = false;
        r = loop_child_watch(s->l, pid, on_child, s, &c->watch);
        if (r >= 0)
                r = loop_io_start(s->l, c->out_fd, LOOP_READ, on_pipe, s, &c->out_io);
        if (r >= 0)
                r = loop_io_start(s->l, c->err_fd, LOOP_READ, on_pipe, s, &c->err_io);
        if (r < 0) {
                child_kill(c);
                if (c->watch)
                        loop_child_cancel(c->watch);
                while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                        ;
                child_cleanup(c);
                goto out_attr;
        }
        s->report_due = false;
        /* The loop's cached time may be old when called from outside a turn. */
        loop_now_update(s->l);
        loop_timer_arm(s->timer, s->timeout_ms);
        r = 0;
out_attr:
        posix_spawnattr_destroy(&at);
out_fa:
        posix_spawn_file_actions_destroy(&fa);
out_close:
        if (out[0] >= 0)
                close(out[0]);
        if (out[1] >= 0)
                close(out[1]);
        if (err[0] >= 0)
                close(err[0]);
        if (err[1] >= 0)
                close(err[1]);
        return r;
}

static int start_step(gpu_smi *s) {
        char *argv[4] = { s->path, NULL, NULL, NULL };

        switch (s->step) {
        case STEP_QUERY:
                argv[1] = (char *)"--query-gpu=" GPU_SMI_QUERY_FIELDS;
                argv[2] = (char *)"--format=csv,noheader,nounits";
                break;
        case STEP_APPS:
                argv[1] = (char *)"--query-compute-apps=" GPU_SMI_APPS_FIELDS;
                argv[2] = (char *)"--format=csv,noheader,nounits";
                break;
        case STEP_BANNER:
        default:
                break;
        }
        return spawn(s, argv);
}

int gpu_smi_new(loop *l, const char *path, uint64_t timeout_ms, size_t max_output,
                gpu_smi **ret_smi) {
        gpu_smi *s;
        int r;

        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->l = l;
        s->c.out_fd = s->c.err_fd = -1;
        s->timeout_ms = timeout_ms ? timeout_ms : 5000;
        s->max_output = max_output ? max_output : 256u * 1024u;
        s->path = strdup(path ? path : "nvidia-smi");
        if (!s->path) {
                r = -ENOMEM;
                goto fail;
        }
        r = loop_timer_new(l, on_timer, s, &s->timer);
        if (r < 0)
                goto fail;
        *ret_smi = s;
        return 0;
fail:
        gpu_smi_free(s);
        return r;
}

gpu_smi *gpu_smi_free(gpu_smi *s) {
        if (!s)
                return NULL;
        if (s->c.pid > 0) {
                child_kill(&s->c);
                if (s->c.watch)
                        loop_child_cancel(s->c.watch);
                while (waitpid(s->c.pid, NULL, 0) < 0 && errno == EINTR)
                        ;
        }
        child_cleanup(&s->c);
        s->timer = loop_timer_free(s->timer);
        gpu_list_free(s->list);
        free(s->cuda_version);
        free(s->path);
        free(s);
        return NULL;
}

int gpu_smi_sample(gpu_smi *s, gpu_smi_cb cb, void *userdata) {
        int r;

        if (!s || !cb)
                return -EINVAL;
        if (s->running)
                return -EBUSY;
        s->running = true;
        s->cb = cb;
        s->userdata = userdata;
        s->result = 0;
        s->step = STEP_QUERY;
        s->list = gpu_list_free(s->list);
        r = start_step(s);
        if (r < 0) {
                /* Errors of an asynchronous operation arrive through its
                 * callback on a later turn. */
                if (r == -ENOENT)
                        fail_sample(s, r, "nvidia-smi not found (%s)", s->path);
                else
                        fail_sample(s, r, "cannot run %s: %s", s->path, strerror(-r));
                s->report_due = true;
                loop_timer_arm(s->timer, 0);
        }
        return 0;
}
