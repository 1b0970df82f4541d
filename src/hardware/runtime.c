#include "hardware/runtime.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/util.h"

#define REPLY_MAX (256u * 1024u)

/* One HTTP/1.0 GET over the engine's Unix socket, driven by the loop: the
 * engine answers with a complete body and closes, so no chunked decoding is
 * needed. */
typedef struct uget {
        runtime_probe *p;
        int fd;
        loop_io *io;
        buf req, reply;
        size_t sent;
        void (*done)(runtime_probe *p, int status, const char *body);
} uget;

struct runtime_probe {
        loop *l;
        char *socket_path;
        char *public_ip;
        unsigned timeout_ms, refresh_ms;
        bool version_done, info_done, available;
        char type[16], version[64], root_dir[512];
        uget *get;
        loop_timer *t_timeout, *t_refresh;
        int pending; /* probes in flight */
        void (*settled)(void *);
        void *ud;
};

static void uget_free(uget *g) {
        if (!g)
                return;
        loop_io_stop(g->io);
        if (g->fd >= 0)
                close(g->fd);
        buf_done(&g->req);
        buf_done(&g->reply);
        free(g);
}

static void next_step(runtime_probe *p);

static void uget_finish(uget *g, int status) {
        runtime_probe *p = g->p;
        const char *body = NULL;

        if (status > 0 && g->reply.data) {
                body = strstr(g->reply.data, "\r\n\r\n");
                body = body ? body + 4 : NULL;
        }
        p->get = NULL;
        loop_timer_disarm(p->t_timeout);
        g->done(p, body ? status : -EPROTO, body);
        uget_free(g);
        next_step(p);
}

static void uget_io(loop_io *io, int fd, unsigned ev, void *ud) {
        uget *g = ud;
        char chunk[16384];

        if (ev & LOOP_WRITE) {
                int soerr = 0;
                socklen_t sl = sizeof soerr;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
                if (soerr) {
                        uget_finish(g, -soerr);
                        return;
                }
                while (g->sent < g->req.len) {
                        ssize_t n = send(fd, g->req.data + g->sent, g->req.len - g->sent, MSG_NOSIGNAL);
                        if (n < 0) {
                                if (errno == EAGAIN)
                                        return;
                                uget_finish(g, -errno);
                                return;
                        }
                        g->sent += (size_t)n;
                }
                loop_io_set(io, LOOP_READ);
                return;
        }
        for (;;) {
                ssize_t n = read(fd, chunk, sizeof chunk);
                if (n < 0) {
                        if (errno == EAGAIN)
                                return;
                        uget_finish(g, -errno);
                        return;
                }
                if (n == 0)
                        break;
                if (buf_append(&g->reply, chunk, (size_t)n) < 0) {
                        uget_finish(g, -E2BIG);
                        return;
                }
        }
        {
                int status = 0;
                if (g->reply.data && strncmp(g->reply.data, "HTTP/1.", 7) == 0 && g->reply.len > 12)
                        status = atoi(g->reply.data + 9);
                uget_finish(g, status > 0 ? status : -EPROTO);
        }
}

static int uget_start(runtime_probe *p, const char *path, void (*done)(runtime_probe *, int, const char *)) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        uget *g;
        int r;

        if (strlen(p->socket_path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        g = calloc(1, sizeof *g);
        if (!g)
                return -ENOMEM;
        g->p = p;
        g->done = done;
        buf_init(&g->req, 4096);
        buf_init(&g->reply, REPLY_MAX);
        r = buf_appendf(&g->req, "GET %s HTTP/1.0\r\nHost: docker\r\nUser-Agent: aiwm-worker/%s\r\n\r\n", path,
                        AIWM_VERSION);
        if (r < 0)
                goto fail;
        g->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (g->fd < 0) {
                r = -errno;
                goto fail;
        }
        memcpy(sa.sun_path, p->socket_path, strlen(p->socket_path));
        if (connect(g->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS && errno != EAGAIN) {
                r = -errno;
                goto fail;
        }
        r = loop_io_start(p->l, g->fd, LOOP_WRITE, uget_io, g, &g->io);
        if (r < 0)
                goto fail;
        p->get = g;
        loop_timer_arm(p->t_timeout, p->timeout_ms);
        return 0;
fail:
        uget_free(g);
        return r;
}

static void copy_str(json_t *o, const char *key, char *dst, size_t size) {
        json_t *v = json_object_get(o, key);
        if (json_is_string(v))
                util_strlcpy(dst, json_string_value(v), size);
}

static void on_version(runtime_probe *p, int status, const char *body) {
        json_t *j = status == 200 && body ? json_loads(body, 0, NULL) : NULL;
        json_t *comps, *c;
        size_t i;

        p->version_done = true;
        if (!j) {
                p->available = false;
                return;
        }
        p->available = true;
        copy_str(j, "Version", p->version, sizeof p->version);
        util_strlcpy(p->type, "docker", sizeof p->type);
        /* Podman's compat API names itself in Components[].Name. */
        comps = json_object_get(j, "Components");
        json_array_foreach(comps, i, c) {
                const char *n = json_string_value(json_object_get(c, "Name"));
                if (n && strstr(n, "Podman"))
                        util_strlcpy(p->type, "podman", sizeof p->type);
        }
        {
                const char *pn = json_string_value(json_object_get(json_object_get(j, "Platform"), "Name"));
                if (pn && strstr(pn, "Podman"))
                        util_strlcpy(p->type, "podman", sizeof p->type);
        }
        json_decref(j);
}

static void on_info(runtime_probe *p, int status, const char *body) {
        json_t *j = status == 200 && body ? json_loads(body, 0, NULL) : NULL;

        p->info_done = true;
        if (!j)
                return;
        copy_str(j, "DockerRootDir", p->root_dir, sizeof p->root_dir);
        if (!p->root_dir[0])
                copy_str(json_object_get(j, "Store"), "GraphRoot", p->root_dir, sizeof p->root_dir);
        json_decref(j);
}

static void next_step(runtime_probe *p) {
        if (!p->version_done) {
                if (uget_start(p, "/version", on_version) < 0)
                        p->version_done = true, p->available = false;
                else
                        return;
        }
        if (p->available && !p->info_done) {
                if (uget_start(p, "/info", on_info) < 0)
                        p->info_done = true;
                else
                        return;
        }
        p->info_done = true;
        loop_timer_arm(p->t_refresh, p->refresh_ms);
        if (p->settled)
                p->settled(p->ud);
}

static void on_timeout(loop_timer *t, void *ud) {
        runtime_probe *p = ud;
        if (p->get)
                uget_finish(p->get, -ETIMEDOUT);
}

static void on_refresh(loop_timer *t, void *ud) {
        runtime_probe *p = ud;
        p->version_done = p->info_done = false;
        next_step(p);
}

int runtime_probe_new(loop *l, const runtime_probe_options *o, void (*settled)(void *ud), void *ud,
                      runtime_probe **ret) {
        runtime_probe *p = calloc(1, sizeof *p);
        int r = -ENOMEM;

        if (!p)
                return -ENOMEM;
        p->l = l;
        p->settled = settled;
        p->ud = ud;
        p->timeout_ms = o->docker_timeout_ms ? o->docker_timeout_ms : 5000;
        p->refresh_ms = o->refresh_ms ? o->refresh_ms : 300000;
        p->socket_path = o->docker_socket && *o->docker_socket ? strdup(o->docker_socket) : NULL;
        p->public_ip = strdup(o->public_ip && *o->public_ip ? o->public_ip : "unknown");
        if (!p->public_ip || (o->docker_socket && *o->docker_socket && !p->socket_path))
                goto fail;
        if ((r = loop_timer_new(l, on_timeout, p, &p->t_timeout)) < 0 ||
            (r = loop_timer_new(l, on_refresh, p, &p->t_refresh)) < 0)
                goto fail;
        if (!p->socket_path)
                p->version_done = p->info_done = true;
        *ret = p;
        return 0;
fail:
        runtime_probe_free(p);
        return r;
}

runtime_probe *runtime_probe_free(runtime_probe *p) {
        if (!p)
                return NULL;
        uget_free(p->get);
        loop_timer_free(p->t_timeout);
        loop_timer_free(p->t_refresh);
        free(p->socket_path);
        free(p->public_ip);
        free(p);
        return NULL;
}

void runtime_probe_start(runtime_probe *p) {
        if (p->socket_path && !p->get)
                next_step(p);
}

bool runtime_probe_settled(const runtime_probe *p) {
        return p->version_done && p->info_done;
}

const char *runtime_probe_public_ip(const runtime_probe *p) {
        return p->public_ip;
}

bool runtime_probe_available(const runtime_probe *p) {
        return p->available;
}

json_t *runtime_probe_json(const runtime_probe *p) {
        if (!p->available)
                return json_pack("{s:s, s:s, s:s, s:b}", "type", "docker", "version", "unavailable", "rootDir", "",
                                 "available", 0);
        return json_pack("{s:s, s:s, s:s}", "type", p->type, "version", p->version[0] ? p->version : "unknown",
                         "rootDir", p->root_dir);
}
