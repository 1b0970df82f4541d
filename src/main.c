/* aiwm-worker: the AIWM node agent. main.c wires the modules together, owns
 * the process (arguments, configuration, signals, re-exec) and is the only
 * place that exits. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "commands/cmd.h"
#include "commands/cmd_system.h"
#include "commands/doctor.h"
#include "commands/exporter.h"
#include "core/config.h"
#include "core/httpd.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/notify.h"
#include "core/util.h"
#include "hardware/telemetry.h"
#include "models/model_cmd.h"
#include "deploy/deployment.h"
#include "hardware/hw_net.h"
#include "protocol/session.h"
#include "state/db.h"
#include "transport/net.h"

#define EXIT_CONFIG 78 /* EX_CONFIG */

typedef struct agent {
        config *cfg;
        config_source src;
        loop *l;
        telemetry *tm;
        db *db;
        cmd_engine *cmd;
        session *s;
        exporter *exp;  /* METRICS_LISTEN: /metrics and /healthz */
        deploy_mgr *dep; /* owned by cmd */
        char node_ip[64];
        uint64_t node_ip_at;
        httpd *httpd;
        loop_timer *t_restart;
        loop_timer *t_watchdog;
        uint64_t watchdog_ms;
        char exe[PATH_MAX];
        char **argv;
        int exit_code;
        bool restart;
        bool stopping;
} agent;

static void usage(FILE *f) {
        fputs("Usage: aiwm-worker [run] [--env-file PATH]\n"
              "       aiwm-worker inventory [--env-file PATH]   print the node.register data as JSON\n"
              "       aiwm-worker check [--env-file PATH]       check configuration and dependencies\n"
              "       aiwm-worker --version | --help\n"
              "\n"
              "Configuration comes from the environment and a .env file (./.env, or --env-file);\n"
              "the environment wins. See README.md for every key.\n",
              f);
}

/* ---- session hooks ---- */

static char *hook_token(void *ud, char *err, size_t errlen) {
        agent *a = ud;
        char *tok = NULL;
        if (config_read_token(a->cfg, &tok, err, errlen) < 0)
                return NULL;
        return tok;
}

static json_t *hook_register(void *ud) {
        return telemetry_register_data(((agent *)ud)->tm);
}

static json_t *hook_heartbeat(void *ud) {
        return telemetry_heartbeat_data(((agent *)ud)->tm);
}

static json_t *hook_metrics(void *ud) {
        return telemetry_metrics_data(((agent *)ud)->tm);
}

static void hook_command(void *ud, json_t *env) {
        agent *a = ud;
        char err[256] = "";
        int r;

        if (a->stopping) {
                log_warn("shutting down: command left for redelivery", "messageId",
                         json_string_value(json_object_get(env, "messageId")), NULL);
                return;
        }
        r = cmd_engine_receive(a->cmd, env, err, sizeof err);
        if (r < 0)
                log_warn("command dropped", "reason", err, NULL);
}

static int hook_outbox_next(void *ud, int64_t after, int64_t *ret_id, char **ret_type, char **ret_json) {
        return db_outbox_next(((agent *)ud)->db, after, ret_id, ret_type, ret_json);
}

static void hook_outbox_sent(void *ud, int64_t id) {
        agent *a = ud;
        int r = db_outbox_delete(a->db, id);
        if (r < 0)
                log_error("cannot delete a sent outbox row", "error", db_errmsg(a->db), NULL);
}

static void hook_state(void *ud, session_state st, const char *detail) {
        agent *a = ud;
        char status[300];

        snprintf(status, sizeof status, "%sSTATUS=%s%s%s", st == SESSION_REGISTERED ? "READY=1\n" : "",
                 session_state_name(st), *detail ? ": " : "", detail);
        notify_send(status);
        if (st == SESSION_REGISTERED) {
                cmd_system_update_confirmed(a->cmd);
                deploy_resync(a->dep);
        }
}

/* ---- command host ---- */

static void host_outbox_notify(void *ud) {
        agent *a = ud;
        if (a->s)
                session_outbox_kick(a->s);
}

static json_t *host_inventory(void *ud) {
        return telemetry_register_data(((agent *)ud)->tm);
}

static json_t *host_metrics(void *ud) {
        return telemetry_health_metrics(((agent *)ud)->tm);
}

static json_t *host_config(void *ud) {
        return config_to_json(((agent *)ud)->cfg);
}

static const char *host_node_status(void *ud) {
        return telemetry_node_status(((agent *)ud)->tm);
}

static void on_restart_timer(loop_timer *t, void *ud);

static void host_command_done(void *ud, const char *type, const char *outcome) {
        agent *a = ud;
        if (a->exp)
                exporter_count_command(a->exp, type, outcome);
}

static json_t *host_deployments(void *ud) {
        return deploy_summary(((agent *)ud)->dep);
}

static const gpu_list *dep_gpus(void *ud) {
        agent *a = ud;
        return a->tm ? telemetry_gpus(a->tm) : NULL;
}

static const char *dep_node_ip(void *ud) {
        agent *a = ud;
        if (a->cfg->public_ip)
                return a->cfg->public_ip;
        uint64_t now = util_mono_ms();
        int root;

        /* Endpoints are built on status changes only: a minute of caching. */
        if (a->node_ip[0] && now - a->node_ip_at < 60000)
                return a->node_ip;
        root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root < 0 || hw_net_private_ip(root, a->node_ip, sizeof a->node_ip) < 0)
                util_strlcpy(a->node_ip, "127.0.0.1", sizeof a->node_ip);
        if (root >= 0)
                close(root);
        a->node_ip_at = now;
        return a->node_ip;
}

static unsigned dep_active(void *ud) {
        return deploy_active(((agent *)ud)->dep);
}

static void host_request_restart(void *ud, uint64_t delay_ms) {
        agent *a = ud;
        loop_timer_arm(a->t_restart, delay_ms);
}

/* ---- life cycle ---- */

static void stopped(void *ud) {
        loop_stop(((agent *)ud)->l);
}

static void begin_stop(agent *a, bool restart) {
        if (a->stopping)
                return;
        a->stopping = true;
        a->restart = restart;
        log_info(restart ? "restarting" : "shutting down", NULL);
        notify_send(restart ? "RELOADING=1\nSTATUS=restarting" : "STOPPING=1\nSTATUS=shutting down");
        session_stop(a->s, 3000, stopped, a);
}

static void on_restart_timer(loop_timer *t, void *ud) {
        begin_stop(ud, true);
}

static void on_signal(loop *l, int signo, void *ud) {
        agent *a = ud;

        if (signo == SIGHUP) {
                config *fresh = NULL;
                char err[512];
                log_info("SIGHUP: reloading the log level and the token", NULL);
                if (config_load(&a->src, &fresh, err, sizeof err) == 0) {
                        log_set_level(fresh->log_level);
                        config_free(fresh);
                } else {
                        log_warn("configuration reload failed; keeping the old one", "error", err, NULL);
                }
                /* The token file is re-read by the next connection attempt. */
                if (a->cfg->node_token_file)
                        session_reconnect(a->s, "SIGHUP: token reloaded");
                return;
        }
        begin_stop(a, false);
}

static void on_watchdog(loop_timer *t, void *ud) {
        agent *a = ud;
        /* The main loop is turning (we are in it); only a healthy worker pings. */
        loop_timer_arm(t, a->watchdog_ms / 2);
        if (session_get_state(a->s) != SESSION_STOPPED)
                notify_send("WATCHDOG=1");
}

static int agent_open_state(agent *a) {
        char err[512];
        cmd_host host = {
                .l = a->l,
                .node_id = a->cfg->node_id,
                .ud = a,
                .outbox_notify = host_outbox_notify,
                .inventory = host_inventory,
                .metrics = host_metrics,
                .config_json = host_config,
                .node_status = host_node_status,
                .request_restart = host_request_restart,
                .command_done = host_command_done,
                .deployments = host_deployments,
        };
        cmd_config cc = { .max_concurrent = a->cfg->max_concurrent_commands, .version = AIWM_VERSION };
        int r;

        r = db_open(a->cfg->state_dir, err, sizeof err, &a->db);
        if (r < 0) {
                log_error("cannot open the state database", "STATE_DIR", a->cfg->state_dir, "error", err, NULL);
                return r;
        }
        host.db = a->db;
        r = cmd_engine_new(&host, &cc, &a->cmd);
        if (r < 0)
                return r;
        {
                cmd_system_config sc = { .exe_path = a->exe };
                r = cmd_system_register(a->cmd, &sc);
        }
        if (r < 0)
                return r;
        {
                model_cmd_config mc = {
                        .model_cache_dir = a->cfg->model_cache_dir,
                        .hf_endpoint = a->cfg->hf_endpoint,
                        .hf_token = a->cfg->hf_token,
                        .s3_endpoint = a->cfg->s3_endpoint,
                        .s3_access_key = a->cfg->s3_access_key,
                        .s3_secret_key = a->cfg->s3_secret_key,
                        .s3_region = a->cfg->s3_region,
                        .max_parallel_files = a->cfg->model_max_parallel_files,
                        .stall_timeout_s = a->cfg->model_stall_timeout_s,
                        .retry_base_ms = a->cfg->model_retry_base_ms,
                };
                r = model_cmd_register(a->cmd, &mc);
                if (r < 0) {
                        log_error("cannot open the model cache", "MODEL_CACHE_DIR", a->cfg->model_cache_dir,
                                  "error", strerror(-r), NULL);
                        return r;
                }
        }
        if (r < 0)
                return r;
        {
                deploy_config dc = {
                        .docker_socket = a->cfg->docker_socket,
                        .model_cache_dir = a->cfg->model_cache_dir,
                        .host_network = a->cfg->deploy_host_network,
                        .bind_ip = a->cfg->deploy_bind_ip,
                        .endpoint_host = a->cfg->deploy_endpoint_host,
                        .health_timeout_ms = (uint64_t)a->cfg->deploy_health_timeout_s * 1000,
                        .orphan_grace_ms = a->cfg->deploy_orphan_grace_s ? (uint64_t)a->cfg->deploy_orphan_grace_s * 1000 : 1,
                        .registry_auth_file = a->cfg->registry_auth_file,
                        .allowed_registries = a->cfg->allowed_registries,
                        .n_allowed_registries = a->cfg->n_allowed_registries,
                        .gpus = dep_gpus,
                        .node_ip = dep_node_ip,
                        .ud = a,
                };
                deploy_gpu_mode_parse(a->cfg->deploy_gpu_mode, &dc.gpu_mode);
                r = deploy_register(a->cmd, &dc, &a->dep);
                if (r < 0) {
                        log_error("cannot set up deployments", "error", strerror(-r), NULL);
                        return r;
                }
        }
        r = cmd_engine_start(a->cmd, err, sizeof err);
        if (r < 0) {
                log_error("cannot recover unfinished commands", "error", err, NULL);
                return r;
        }
        return 0;
}

static int telemetry_open(agent *a) {
        telemetry_options to = {
                .root = "/",
                .node_id = a->cfg->node_id,
                .node_name = a->cfg->node_name,
                .disk_path = a->cfg->disk_path,
                .model_cache_dir = a->cfg->model_cache_dir,
                .nvml_path = getenv("AIWM_NVML_PATH"),
                .nvidia_smi_path = a->cfg->nvidia_smi_path,
                .docker_socket = a->cfg->docker_socket,
                .public_ip = a->cfg->public_ip,
                .public_ip_urls = (const char *const *)a->cfg->public_ip_urls,
                .n_public_ip_urls = a->cfg->n_public_ip_urls,
                .daemon_version = AIWM_VERSION,
        };
        return telemetry_new(a->l, &to, &a->tm);
}

/* ---- METRICS_LISTEN: /metrics and /healthz ---- */

static json_t *exp_metrics(void *ud) {
        return telemetry_metrics_data(((agent *)ud)->tm);
}

static json_t *exp_heartbeat(void *ud) {
        return telemetry_heartbeat_data(((agent *)ud)->tm);
}

static void exp_worker(void *ud, exporter_worker_state *ret) {
        agent *a = ud;
        session_state st = a->s ? session_get_state(a->s) : SESSION_IDLE;
        int64_t n = -1;

        ret->connected = st == SESSION_CONNECTED || st == SESSION_REGISTERING || st == SESSION_REGISTERED ||
                         st == SESSION_UNREGISTERED;
        ret->registered = a->s && session_is_registered(a->s);
        ret->reconnects = a->s ? session_reconnects(a->s) : 0;
        ret->outbox_depth = a->db && db_outbox_count(a->db, &n) == 0 ? n : -1;
}

/* A listener that cannot be opened is logged, not fatal: the worker's job
 * is the controller's commands, not its own metrics. */
static void metrics_open(agent *a) {
        exporter_provider p = {
                .userdata = a,
                .metrics = exp_metrics,
                .heartbeat = exp_heartbeat,
                .worker = exp_worker,
                .deployments = host_deployments,
        };
        exporter_options eo = { .version = AIWM_VERSION, .disk_path = a->cfg->disk_path };
        httpd_options ho = {
                .host = a->cfg->metrics_host,
                .port = a->cfg->metrics_port,
                .route = exporter_route,
        };
        char err[256] = "";

        if (!a->cfg->metrics_listen)
                return;
        if (exporter_new(&p, &eo, &a->exp) < 0) {
                log_error("METRICS_LISTEN: out of memory", NULL);
                return;
        }
        ho.userdata = a->exp;
        if (httpd_new(a->l, &ho, err, sizeof err, &a->httpd) < 0) {
                log_error("METRICS_LISTEN: cannot serve /metrics and /healthz", "error", err, NULL);
                return;
        }
        log_info("serving /metrics and /healthz", "listen", a->cfg->metrics_listen, NULL);
}

static int run(agent *a) {
        session_options so = {
                .host = a->cfg->ws.host,
                .port = a->cfg->ws.port,
                .tls = a->cfg->ws.tls,
                .nsp = a->cfg->ws.nsp,
                .query = a->cfg->ws.query,
                .ca_file = a->cfg->tls_ca_file,
                .tls_insecure = a->cfg->tls_insecure,
                .node_id = a->cfg->node_id,
                .heartbeat_ms = (uint64_t)a->cfg->heartbeat_interval_ms,
                .metrics_ms = (uint64_t)a->cfg->metrics_interval_ms,
                .reconnect_ms = (uint64_t)a->cfg->reconnect_delay_ms,
                .reconnect_max_ms = (uint64_t)a->cfg->reconnect_delay_max_ms,
        };
        session_hooks hooks = {
                .userdata = a,
                .token = hook_token,
                .register_data = hook_register,
                .heartbeat_data = hook_heartbeat,
                .metrics_data = hook_metrics,
                .command = hook_command,
                .outbox_next = hook_outbox_next,
                .outbox_sent = hook_outbox_sent,
                .state_changed = hook_state,
        };
        char *proxy = NULL;
        int r;

        {
                const char *hp = getenv("http_proxy") ? getenv("http_proxy") : getenv("HTTP_PROXY");
                const char *sp = getenv("https_proxy") ? getenv("https_proxy") : getenv("HTTPS_PROXY");
                const char *np = getenv("no_proxy") ? getenv("no_proxy") : getenv("NO_PROXY");
                const char *p = net_proxy_for(a->cfg->ws.host, a->cfg->ws.port, a->cfg->ws.tls, hp, sp, np);
                if (p && *p) {
                        proxy = strdup(p);
                        so.proxy = proxy;
                        log_info("connecting through a proxy", NULL);
                }
        }
        if (a->cfg->tls_insecure)
                log_warn("TLS_INSECURE is on: the controller's certificate is NOT verified; "
                         "anyone on the path can impersonate it. Use TLS_CA_FILE instead.", NULL);
        r = agent_open_state(a);
        if (r < 0)
                goto out;
        r = telemetry_open(a);
        if (r < 0) {
                log_error("cannot start telemetry", "error", strerror(-r), NULL);
                goto out;
        }
        telemetry_start(a->tm);
        {
                telemetry_deployments td = { .userdata = a, .active = dep_active };
                telemetry_set_deployments(a->tm, &td);
        }
        deploy_start(a->dep);
        metrics_open(a);
        r = session_new(a->l, &so, &hooks, &a->s);
        if (r < 0)
                goto out;
        loop_timer_new(a->l, on_restart_timer, a, &a->t_restart);
        loop_signal(a->l, SIGTERM, on_signal, a);
        loop_signal(a->l, SIGINT, on_signal, a);
        loop_signal(a->l, SIGHUP, on_signal, a);
        a->watchdog_ms = notify_watchdog_ms();
        if (a->watchdog_ms) {
                loop_timer_new(a->l, on_watchdog, a, &a->t_watchdog);
                loop_timer_arm(a->t_watchdog, a->watchdog_ms / 2);
        }
        cmd_system_check_update(a->cmd);
        log_info("aiwm-worker starting", "version", AIWM_VERSION, "nodeId", a->cfg->node_id, "controller",
                 a->cfg->controller_ws_url, NULL);
        session_start(a->s);
        r = loop_run(a->l);
out:
        free(proxy);
        return r;
}

static void agent_done(agent *a) {
        a->httpd = httpd_free(a->httpd);
        a->exp = exporter_free(a->exp);
        a->s = session_free(a->s);
        deploy_shutdown(a->dep);
        a->cmd = cmd_engine_free(a->cmd);
        a->dep = NULL;
        a->tm = telemetry_free(a->tm);
        a->db = db_close(a->db);
        loop_timer_free(a->t_restart);
        loop_timer_free(a->t_watchdog);
        if (a->l) {
                loop_run_once(a->l, 0); /* reap deferred frees */
                a->l = loop_free(a->l);
        }
        a->cfg = config_free(a->cfg);
}

/* inventory: one-shot; works without a token so an operator can run it on a
 * machine before it is provisioned. */
static const char *inventory_getenv(const char *key, void *ud) {
        const char *v = getenv(key);
        if (v)
                return v;
        if (!strcmp(key, "NODE_TOKEN") && !getenv("NODE_TOKEN_FILE"))
                return "unprovisioned";
        if (!strcmp(key, "NODE_ID") && !getenv("NODE_TOKEN") && !getenv("NODE_TOKEN_FILE"))
                return "unprovisioned";
        return NULL;
}

static void inventory_ready(void *ud) {
        loop_stop(((agent *)ud)->l);
}

static int inventory(agent *a) {
        json_t *data;
        char *s;
        int r = telemetry_open(a);

        if (r < 0)
                return r;
        telemetry_start(a->tm);
        telemetry_when_ready(a->tm, 6000, inventory_ready, a);
        loop_run(a->l);
        data = telemetry_register_data(a->tm);
        s = data ? json_dumps(data, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
        json_decref(data);
        if (!s)
                return -ENOMEM;
        puts(s);
        free(s);
        if (strcmp(telemetry_gpu_backend(a->tm), "none") == 0 && *telemetry_gpu_reason(a->tm))
                log_info("no GPUs reported", "reason", telemetry_gpu_reason(a->tm), NULL);
        return 0;
}

int main(int argc, char **argv) {
        agent a = { .exit_code = 0 };
        const char *cmd = "run", *env_file = NULL;
        char err[512];
        int i, r;

        for (i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--version") || !strcmp(argv[i], "-V")) {
                        printf("aiwm-worker %s\n", AIWM_VERSION);
                        return 0;
                } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
                        usage(stdout);
                        return 0;
                } else if (!strcmp(argv[i], "--env-file") && i + 1 < argc) {
                        env_file = argv[++i];
                } else if (!strncmp(argv[i], "--env-file=", 11)) {
                        env_file = argv[i] + 11;
                } else if (!strcmp(argv[i], "run") || !strcmp(argv[i], "inventory") || !strcmp(argv[i], "check")) {
                        cmd = argv[i];
                } else {
                        fprintf(stderr, "aiwm-worker: unknown argument: %s\n", argv[i]);
                        usage(stderr);
                        return 64;
                }
        }
        signal(SIGPIPE, SIG_IGN);
        a.argv = argv;
        a.src.env_file = env_file;
        if (!strcmp(cmd, "inventory"))
                a.src.getenv = inventory_getenv;
        r = config_load(&a.src, &a.cfg, err, sizeof err);
        if (r < 0) {
                fprintf(stderr, "aiwm-worker: configuration error: %s\n", err);
                return EXIT_CONFIG;
        }
        log_setup(a.cfg->log_level, a.cfg->log_format);
        if (a.cfg->n_env_invalid_lines > 0) {
                char n[32];
                snprintf(n, sizeof n, "%zu", a.cfg->n_env_invalid_lines);
                log_warn("ignored invalid lines in the .env file", "file", a.cfg->env_file, "lines", n, NULL);
        }
        /* The path to re-execute, resolved now: after system.update renames a
         * new binary into place, /proc/self/exe names the old, deleted inode. */
        if (!realpath("/proc/self/exe", a.exe))
                util_strlcpy(a.exe, argv[0], sizeof a.exe);
        r = loop_new(&a.l);
        if (r < 0) {
                fprintf(stderr, "aiwm-worker: cannot create the event loop: %s\n", strerror(-r));
                return 1;
        }
        if (!strcmp(cmd, "inventory"))
                r = inventory(&a);
        else if (!strcmp(cmd, "check")) {
                /* The report is the output; the probes' own log lines would
                 * only interleave with it. */
                log_set_level((log_level)(LOG_ERROR + 1));
                r = doctor_run(a.cfg, a.l, stdout);
        }
        else
                r = run(&a);
        a.exit_code = r < 0 ? 1 : r;
        agent_done(&a);
        if (a.restart && a.exit_code == 0) {
                log_info("re-executing", "path", a.exe, NULL);
                execv(a.exe, a.argv);
                fprintf(stderr, "aiwm-worker: re-exec of %s failed: %s\n", a.exe, strerror(errno));
                return 1;
        }
        return a.exit_code;
}
