#include "commands/doctor.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/jwt.h"
#include "docker/docker.h"
#include "core/util.h"
#include "hardware/gpu.h"
#include "protocol/session.h"
#include "transport/net.h"

typedef struct doctor {
        FILE *out;
        int fails, warns;
} doctor;

static void line(doctor *d, const char *level, const char *what, const char *msg, const char *fix) {
        fprintf(d->out, "%-4s  %-16s %s", level, what, msg);
        if (fix && *fix)
                fprintf(d->out, "\n      %-16s fix: %s", "", fix);
        fputc('\n', d->out);
        if (!strcmp(level, "FAIL"))
                d->fails++;
        else if (!strcmp(level, "WARN"))
                d->warns++;
}

static void check_token(doctor *d, const config *cfg) {
        char err[256] = "", msg[512];
        char *tok = NULL;
        jwt_claims c = { 0 };

        if (config_read_token(cfg, &tok, err, sizeof err) < 0) {
                line(d, "FAIL", "token", err, "set NODE_TOKEN, or NODE_TOKEN_FILE to a readable file (mode 0600)");
                return;
        }
        if (jwt_decode(tok, &c, err, sizeof err) < 0) {
                line(d, "WARN", "token", "not a decodable JWT; the controller will decide",
                     NULL);
        } else if (c.has_exp) {
                int64_t left = c.exp - (int64_t)time(NULL);
                char exp[25];
                util_iso_ms(c.exp * 1000, exp);
                if (left <= 0) {
                        snprintf(msg, sizeof msg, "node %s, expired at %s", c.sub ? c.sub : "?", exp);
                        line(d, "FAIL", "token", msg, "mint a new token: POST /nodes/<id>/token on the controller");
                } else {
                        snprintf(msg, sizeof msg, "node %s, expires %s (%lld days left)", c.sub ? c.sub : "?", exp,
                                 (long long)(left / 86400));
                        line(d, left < 7 * 86400 ? "WARN" : "OK", "token", msg, NULL);
                }
        } else {
                snprintf(msg, sizeof msg, "node %s, no expiry", c.sub ? c.sub : "?");
                line(d, "OK", "token", msg, NULL);
        }
        jwt_claims_done(&c);
        explicit_bzero(tok, strlen(tok));
        free(tok);
}

typedef struct probe {
        const config *cfg;
        loop *l;
        session_state state;
        char detail[512];
        bool done;
} probe;

static char *probe_token(void *ud, char *err, size_t errlen) {
        probe *p = ud;
        char *t = NULL;
        return config_read_token(p->cfg, &t, err, errlen) < 0 ? NULL : t;
}

static void probe_state(void *ud, session_state st, const char *detail) {
        probe *p = ud;
        if (p->done)
                return;
        if (st == SESSION_REGISTERED || st == SESSION_IDLE) {
                p->state = st;
                util_strlcpy(p->detail, detail, sizeof p->detail);
                p->done = true;
                loop_stop(p->l);
        }
}

static void probe_timeout(loop_timer *t, void *ud) {
        probe *p = ud;
        if (!p->done) {
                p->done = true;
                p->state = SESSION_IDLE;
                util_strlcpy(p->detail, "no answer within 15 s", sizeof p->detail);
        }
        loop_stop(p->l);
}

static void check_controller(doctor *d, const config *cfg, loop *l) {
        probe p = { .cfg = cfg, .l = l };
        session_options so = {
                .host = cfg->ws.host, .port = cfg->ws.port, .tls = cfg->ws.tls, .nsp = cfg->ws.nsp,
                .query = cfg->ws.query, .ca_file = cfg->tls_ca_file, .tls_insecure = cfg->tls_insecure,
                .reconnect_ms = 1000, .reconnect_max_ms = 1000, .connect_timeout_ms = 10000,
                .check_only = true,
        };
        session_hooks h = { .userdata = &p, .token = probe_token, .state_changed = probe_state };
        const char *hp = getenv("http_proxy") ? getenv("http_proxy") : getenv("HTTP_PROXY");
        const char *sp = getenv("https_proxy") ? getenv("https_proxy") : getenv("HTTPS_PROXY");
        const char *np = getenv("no_proxy") ? getenv("no_proxy") : getenv("NO_PROXY");
        session *s = NULL;
        loop_timer *t = NULL;
        char msg[700];

        so.proxy = net_proxy_for(cfg->ws.host, cfg->ws.port, cfg->ws.tls, hp, sp, np);
        if (session_new(l, &so, &h, &s) < 0 || loop_timer_new(l, probe_timeout, &p, &t) < 0) {
                line(d, "FAIL", "controller", "out of memory", NULL);
                goto out;
        }
        loop_timer_arm(t, 15000);
        session_start(s);
        loop_run(l);
        if (p.state == SESSION_REGISTERED) {
                snprintf(msg, sizeof msg, "%s: handshake accepted%s", cfg->controller_ws_url,
                         cfg->ws.tls ? (cfg->tls_insecure ? " (TLS NOT verified: TLS_INSECURE)" : ", TLS verified")
                                     : " (no TLS)");
                line(d, cfg->tls_insecure ? "WARN" : "OK", "controller", msg, NULL);
        } else {
                const char *fix = "check CONTROLLER_WS_URL and that the controller is up and reachable";
                if (strstr(p.detail, "TOKEN") || strstr(p.detail, "1004") || strstr(p.detail, "1005"))
                        fix = "the controller refused this node's token: mint a new one for this node id";
                else if (strstr(p.detail, "certificate") || strstr(p.detail, "verify"))
                        fix = "set TLS_CA_FILE to the CA that signed the controller's certificate";
                snprintf(msg, sizeof msg, "%s: %s", cfg->controller_ws_url, p.detail);
                line(d, "FAIL", "controller", msg, fix);
        }
out:
        session_free(s);
        loop_timer_free(t);
        loop_run_once(l, 0);
}

typedef struct docker_wait {
        loop *l;
        bool done;
        int err;
        char message[300];
} docker_wait;

static void docker_probed(docker_op *op, const docker_reply *rep, void *ud) {
        docker_wait *w = ud;
        (void)op;
        w->done = true;
        w->err = rep->err;
        util_strlcpy(w->message, rep->message ? rep->message : "", sizeof w->message);
        loop_stop(w->l);
}

static void docker_timeout(loop_timer *t, void *ud) {
        (void)t;
        loop_stop(((docker_wait *)ud)->l);
}

/* The same client the daemon uses: negotiation (GET /version) and /info. */
static void check_docker(doctor *d, const config *cfg, loop *l) {
        docker_options o = { .socket = cfg->docker_socket, .timeout_ms = 10000 };
        docker_wait w = { .l = l };
        loop_timer *t = NULL;
        docker *dk = NULL;
        char msg[700];

        if (access(cfg->docker_socket, F_OK) < 0) {
                snprintf(msg, sizeof msg, "%s does not exist", cfg->docker_socket);
                line(d, "FAIL", "docker", msg, "install and start Docker (or podman.socket), or set DOCKER_SOCKET");
                return;
        }
        if (access(cfg->docker_socket, R_OK | W_OK) < 0) {
                snprintf(msg, sizeof msg, "%s: permission denied", cfg->docker_socket);
                line(d, "FAIL", "docker", msg, "add the worker's user to the docker group");
                return;
        }
        if (docker_new(l, &o, &dk) < 0 || loop_timer_new(l, docker_timeout, &w, &t) < 0 ||
            docker_probe(dk, docker_probed, &w, NULL) < 0) {
                line(d, "FAIL", "docker", "out of memory", NULL);
                goto out;
        }
        loop_timer_arm(t, 12000);
        loop_run(l);
        if (!w.done || w.err < 0) {
                snprintf(msg, sizeof msg, "%s: %s", cfg->docker_socket,
                         !w.done ? "no answer within 12 s" : *w.message ? w.message : strerror(-w.err));
                line(d, "FAIL", "docker", msg, "start (or restart) the container engine");
        } else {
                const docker_version *v = docker_get_version(dk);
                const docker_info *i = docker_get_info(dk);
                bool want_nvidia = cfg->deploy_gpu_mode && !strcasecmp(cfg->deploy_gpu_mode, "nvidia-runtime");
                snprintf(msg, sizeof msg, "%s: %s %s, API 1.%u, %lld containers (%lld running)%s", cfg->docker_socket,
                         docker_runtime_name(v->runtime), v->version, docker_api_minor(dk),
                         i ? (long long)i->containers : 0LL, i ? (long long)i->containers_running : 0LL,
                         i && i->nvidia_runtime ? ", nvidia runtime" : "");
                if (want_nvidia && !(i && i->nvidia_runtime))
                        line(d, "WARN", "docker", msg,
                             "DEPLOY_GPU_MODE=nvidia-runtime but the engine has no nvidia runtime: install the "
                             "NVIDIA Container Toolkit, or use device-requests / cdi");
                else
                        line(d, "OK", "docker", msg, NULL);
        }
out:
        docker_free(dk);
        loop_timer_free(t);
        loop_run_once(l, 0);
}

typedef struct gpu_wait {
        loop *l;
        bool done;
} gpu_wait;

static void gpu_cb(gpu_probe *p, const gpu_list *list, void *ud) {
        gpu_wait *w = ud;
        w->done = true;
        loop_stop(w->l);
}

static void check_gpus(doctor *d, const config *cfg, loop *l) {
        gpu_probe_options go = { .loop = l, .nvml_path = getenv("AIWM_NVML_PATH"), .smi_path = cfg->nvidia_smi_path };
        gpu_probe *p = NULL;
        gpu_wait w = { .l = l };
        char msg[512];

        if (gpu_probe_new(&go, &p) < 0 || gpu_probe_sample(p, gpu_cb, &w) < 0) {
                line(d, "FAIL", "gpu", "cannot start the GPU probe", NULL);
                gpu_probe_free(p);
                return;
        }
        loop_run(l);
        {
                const gpu_list *g = gpu_probe_last(p);
                size_t i, errs = 0;
                for (i = 0; g && i < g->n_devices; i++)
                        if (g->devices[i].status == GPU_STATUS_ERROR)
                                errs++;
                if (g && g->n_devices > 0) {
                        snprintf(msg, sizeof msg, "%zu GPU(s) through %s: %s%s", g->n_devices, gpu_probe_backend(p),
                                 g->devices[0].name ? g->devices[0].name : "?", errs ? "; some in error" : "");
                        line(d, errs ? "FAIL" : "OK", "gpu", msg, errs ? "see nvidia-smi -q and dmesg for XID errors" : NULL);
                } else {
                        snprintf(msg, sizeof msg, "no GPU: %s", gpu_probe_reason(p) ? gpu_probe_reason(p) : "none found");
                        line(d, "WARN", "gpu", msg,
                             "on a GPU node install the NVIDIA driver (libnvidia-ml.so.1) or set NVIDIA_SMI_PATH");
                }
        }
        gpu_probe_free(p);
        loop_run_once(l, 0);
}

static void check_dir(doctor *d, const char *what, const char *dir) {
        char path[4096], msg[700];
        struct statvfs sv;
        int fd;

        if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
                snprintf(msg, sizeof msg, "%s: cannot create: %s", dir, strerror(errno));
                line(d, "FAIL", what, msg, "create it and give it to the worker's user");
                return;
        }
        snprintf(path, sizeof path, "%s/.aiwm-check-XXXXXX", dir);
        fd = mkstemp(path);
        if (fd < 0) {
                snprintf(msg, sizeof msg, "%s: not writable: %s", dir, strerror(errno));
                line(d, "FAIL", what, msg, "chown it to the worker's user");
                return;
        }
        close(fd);
        unlink(path);
        if (statvfs(dir, &sv) == 0) {
                unsigned long long free_mb = (unsigned long long)sv.f_bavail * sv.f_frsize / 1048576;
                snprintf(msg, sizeof msg, "%s writable, %llu MB free", dir, free_mb);
                line(d, free_mb < 1024 ? "WARN" : "OK", what, msg, free_mb < 1024 ? "free some space" : NULL);
        } else {
                snprintf(msg, sizeof msg, "%s writable", dir);
                line(d, "OK", what, msg, NULL);
        }
}

int doctor_run(const config *cfg, loop *l, FILE *out) {
        doctor d = { .out = out };
        char msg[700];

        snprintf(msg, sizeof msg, "loaded%s%s; controller %s; node %s", cfg->env_file ? " from " : "",
                 cfg->env_file ? cfg->env_file : "", cfg->controller_ws_url, cfg->node_id);
        line(&d, "OK", "configuration", msg, NULL);
        check_token(&d, cfg);
        check_controller(&d, cfg, l);
        check_docker(&d, cfg, l);
        check_gpus(&d, cfg, l);
        check_dir(&d, "STATE_DIR", cfg->state_dir);
        check_dir(&d, "MODEL_CACHE_DIR", cfg->model_cache_dir);
        fprintf(out, "%d failed, %d warnings\n", d.fails, d.warns);
        fflush(out);
        return d.fails ? 1 : 0;
}
