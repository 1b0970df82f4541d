#include "hardware/runtime.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <stdio.h>

#include "core/http.h"
#include "core/util.h"
#include "docker/docker.h"

struct runtime_probe {
        loop *l;
        http_client *http;
        char *socket_path;
        char public_ip[64];
        bool public_ip_fixed;
        char **ip_urls;
        size_t n_ip_urls, ip_idx;
        unsigned timeout_ms, ip_timeout_ms, refresh_ms;
        bool version_done, info_done, ip_done, available;
        char type[16], version[64], root_dir[512];
        http_request *docker_req, *ip_req;
        loop_timer *t_refresh;
        void (*settled)(void *);
        void *ud;
};

static void docker_step(runtime_probe *p);
static void ip_step(runtime_probe *p);

static void maybe_settled(runtime_probe *p) {
        if (runtime_probe_settled(p) && p->settled)
                p->settled(p->ud);
}

static int docker_get(runtime_probe *p, const char *path, http_done_cb done) {
        char url[256];
        http_options o = {
                .url = url,
                .unix_socket = p->socket_path,
                .timeout_ms = p->timeout_ms,
                .max_response = 1u << 20,
        };
        snprintf(url, sizeof url, "http://docker%s", path);
        return http_request_start(p->http, &o, done, p, &p->docker_req);
}

/* The answers are parsed by src/docker's parsers, the ones the deployment
 * client uses: the same engine detection (Podman names itself in
 * Components / Platform) and root directory (Podman: Store.GraphRoot). */
static void on_version(http_request *req, const http_result *res, void *ud) {
        runtime_probe *p = ud;
        docker_version v;
        (void)req;

        p->docker_req = NULL;
        p->version_done = true;
        if (res->err < 0 || res->status != 200 || !res->body->data ||
            docker_version_parse(res->body->data, res->body->len, &v) < 0) {
                p->available = false;
                p->info_done = true;
                docker_step(p);
                return;
        }
        p->available = true;
        util_strlcpy(p->version, v.version, sizeof p->version);
        util_strlcpy(p->type, v.runtime == DOCKER_RUNTIME_PODMAN ? "podman" : "docker", sizeof p->type);
        docker_step(p);
}

static void on_info(http_request *req, const http_result *res, void *ud) {
        runtime_probe *p = ud;
        docker_info *i = NULL;
        (void)req;

        p->docker_req = NULL;
        p->info_done = true;
        if (res->err == 0 && res->status == 200 && res->body->data && (i = calloc(1, sizeof *i)) &&
            docker_info_parse(res->body->data, res->body->len, i) == 0)
                util_strlcpy(p->root_dir, i->root_dir, sizeof p->root_dir);
        free(i);
        docker_step(p);
}

static void docker_step(runtime_probe *p) {
        if (!p->version_done) {
                if (docker_get(p, "/version", on_version) == 0)
                        return;
                p->version_done = p->info_done = true;
                p->available = false;
        } else if (!p->info_done) {
                if (docker_get(p, "/info", on_info) == 0)
                        return;
                p->info_done = true;
        }
        maybe_settled(p);
}

/* The answer of a what-is-my-IP service: one IPv4 or IPv6 address. */
static bool plausible_ip(const char *s, char *out, size_t size) {
        unsigned char tmp[16];
        char addr[64];
        size_t n;

        s += strspn(s, " \t\r\n");
        n = strcspn(s, " \t\r\n");
        if (n == 0 || n >= sizeof addr)
                return false;
        memcpy(addr, s, n);
        addr[n] = '\0';
        if (inet_pton(AF_INET, addr, tmp) != 1 && inet_pton(AF_INET6, addr, tmp) != 1)
                return false;
        util_strlcpy(out, addr, size);
        return true;
}

static void on_ip(http_request *req, const http_result *res, void *ud) {
        runtime_probe *p = ud;

        p->ip_req = NULL;
        if (res->err == 0 && res->status == 200 && res->body->data &&
            plausible_ip(res->body->data, p->public_ip, sizeof p->public_ip)) {
                p->ip_done = true;
                maybe_settled(p);
                return;
        }
        p->ip_idx++;
        ip_step(p);
}

static void ip_step(runtime_probe *p) {
        while (!p->ip_done && p->ip_idx < p->n_ip_urls) {
                http_options o = {
                        .url = p->ip_urls[p->ip_idx],
                        .timeout_ms = p->ip_timeout_ms,
                        .connect_timeout_ms = p->ip_timeout_ms,
                        .max_response = 4096,
                        .follow_redirects = true,
                };
                if (http_request_start(p->http, &o, on_ip, p, &p->ip_req) == 0)
                        return;
                p->ip_idx++;
        }
        p->ip_done = true; /* every service failed: keep the last known or "unknown" */
        maybe_settled(p);
}

static void on_refresh(loop_timer *t, void *ud) {
        runtime_probe *p = ud;
        loop_timer_arm(t, p->refresh_ms);
        if (p->socket_path && !p->docker_req) {
                p->version_done = p->info_done = false;
                docker_step(p);
        }
        if (!p->public_ip_fixed && p->n_ip_urls && !p->ip_req) {
                p->ip_done = false;
                p->ip_idx = 0;
                ip_step(p);
        }
}

int runtime_probe_new(loop *l, const runtime_probe_options *o, void (*settled)(void *ud), void *ud,
                      runtime_probe **ret) {
        runtime_probe *p = calloc(1, sizeof *p);
        size_t i;
        int r = -ENOMEM;

        if (!p)
                return -ENOMEM;
        p->l = l;
        p->settled = settled;
        p->ud = ud;
        p->timeout_ms = o->docker_timeout_ms ? o->docker_timeout_ms : 5000;
        p->ip_timeout_ms = o->public_ip_timeout_ms ? o->public_ip_timeout_ms : 3000;
        p->refresh_ms = o->refresh_ms ? o->refresh_ms : 300000;
        util_strlcpy(p->public_ip, "unknown", sizeof p->public_ip);
        if (o->public_ip && *o->public_ip) {
                util_strlcpy(p->public_ip, o->public_ip, sizeof p->public_ip);
                p->public_ip_fixed = true;
        } else if (o->n_public_ip_urls) {
                p->ip_urls = calloc(o->n_public_ip_urls, sizeof *p->ip_urls);
                if (!p->ip_urls)
                        goto fail;
                for (i = 0; i < o->n_public_ip_urls; i++)
                        if (!(p->ip_urls[p->n_ip_urls++] = strdup(o->public_ip_urls[i])))
                                goto fail;
        }
        if (o->docker_socket && *o->docker_socket && !(p->socket_path = strdup(o->docker_socket)))
                goto fail;
        if ((r = http_client_new(l, &p->http)) < 0 || (r = loop_timer_new(l, on_refresh, p, &p->t_refresh)) < 0)
                goto fail;
        p->version_done = p->info_done = !p->socket_path;
        p->ip_done = p->n_ip_urls == 0;
        *ret = p;
        return 0;
fail:
        runtime_probe_free(p);
        return r;
}

runtime_probe *runtime_probe_free(runtime_probe *p) {
        size_t i;
        if (!p)
                return NULL;
        http_client_free(p->http); /* cancels what runs, without callbacks */
        loop_timer_free(p->t_refresh);
        for (i = 0; i < p->n_ip_urls; i++)
                free(p->ip_urls[i]);
        free(p->ip_urls);
        free(p->socket_path);
        free(p);
        return NULL;
}

/* Starts the probes; both run in the background, every refresh_ms again. */
void runtime_probe_start(runtime_probe *p) {
        if (p->socket_path && !p->docker_req)
                docker_step(p);
        if (!p->ip_done && !p->ip_req)
                ip_step(p);
        loop_timer_arm(p->t_refresh, p->refresh_ms);
}

bool runtime_probe_settled(const runtime_probe *p) {
        return p->version_done && p->info_done && p->ip_done;
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
