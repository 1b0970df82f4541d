/* Unit tests of src/core/config: sources and their priority, defaults,
 * every validation path (each names its key), NODE_ID from the token, the
 * token file, URL parsing and the redacted JSON view. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"

/* PROTOCOL.md §1.7 test vector; sub = 6650a1b2c3d4e5f607182930, exp 1827370343. */
#define TOKEN                                                                                       \
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI2NjUwYTFiMmMzZDRlNWY2MDcxODI5MzAiLCJ0eXBlIjoib" \
        "m9kZSIsIm5vZGVJZCI6IjY2NTBhMWIyYzNkNGU1ZjYwNzE4MjkzMCIsImlhdCI6MTc5NTgzNDM0MywiZXhwIjoxODI3Mzcw" \
        "MzQzfQ.btSMifY-TZfnYonwLL0zi7X_DWjl2XljDi4tV_f74KM"
#define SUB "6650a1b2c3d4e5f607182930"
/* {"alg":"HS256","typ":"JWT"}.{"type":"node"}.sig: a JWT without sub */
#define TOKEN_NO_SUB "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0eXBlIjoibm9kZSJ9.sig"

/* A fake environment: NULL-terminated key/value pairs. */
typedef struct env {
        const char *kv[64];
} env;

static const char *env_get(const char *key, void *userdata) {
        const env *e = userdata;

        for (size_t i = 0; e->kv[i]; i += 2)
                if (strcmp(e->kv[i], key) == 0)
                        return e->kv[i + 1];
        return NULL;
}

typedef struct fixture {
        char dir[64];
} fixture;

static int setup(void **state) {
        fixture *f = calloc(1, sizeof *f);

        if (!f)
                return -1;
        snprintf(f->dir, sizeof f->dir, "/tmp/test-config-XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        fixture *f = *state;
        char cmd[128];

        snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
        if (system(cmd) != 0)
                return -1;
        free(f);
        return 0;
}

static void write_file(const char *path, const char *text) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        close(fd);
}

/* Loads with env e and no .env file. */
static int load(env *e, config **ret, char *err, size_t errlen) {
        config_source src = { .getenv = env_get, .userdata = e, .default_env_file = "" };
        return config_load(&src, ret, err, errlen);
}

static void test_defaults(void **state) {
        env e = { { "NODE_TOKEN", TOKEN, NULL } };
        config *c = NULL;
        char err[256] = "";

        assert_int_equal(load(&e, &c, err, sizeof err), 0);
        assert_string_equal(c->controller_ws_url, "ws://localhost:3003/ws/node");
        assert_false(c->ws.tls);
        assert_string_equal(c->ws.host, "localhost");
        assert_int_equal(c->ws.port, 3003);
        assert_string_equal(c->ws.nsp, "/ws/node");
        assert_null(c->ws.query);
        assert_string_equal(c->node_token, TOKEN);
        assert_null(c->node_token_file);
        assert_int_equal(c->token_exp, 1827370343);
        assert_string_equal(c->node_id, SUB);
        assert_string_equal(c->node_name, "worker-node");
        assert_int_equal(c->heartbeat_interval_ms, 30000);
        assert_int_equal(c->metrics_interval_ms, 60000);
        assert_int_equal(c->reconnect_delay_ms, 5000);
        assert_int_equal(c->reconnect_delay_max_ms, 60000);
        assert_string_equal(c->docker_socket, "/var/run/docker.sock");
        assert_string_equal(c->nvidia_smi_path, "nvidia-smi");
        assert_int_equal(c->log_level, LOG_INFO);
        assert_int_equal(c->log_format, LOG_FORMAT_TEXT);
        assert_null(c->node_env);
        assert_null(c->tls_ca_file);
        assert_false(c->tls_insecure);
        assert_string_equal(c->state_dir, "/var/lib/aiwm-worker");
        assert_string_equal(c->model_cache_dir, "/var/lib/aiwm-worker/models");
        assert_string_equal(c->disk_path, "/");
        assert_null(c->public_ip);
        assert_int_equal(c->n_public_ip_urls, 2);
        assert_string_equal(c->public_ip_urls[0], "https://api.ipify.org");
        assert_string_equal(c->public_ip_urls[1], "https://ifconfig.me/ip");
        assert_null(c->metrics_listen);
        assert_int_equal(c->max_concurrent_commands, 4);
        assert_null(c->env_file);
        assert_int_equal(c->n_env_invalid_lines, 0);
        assert_null(config_free(c));
        assert_null(config_free(NULL));
}

static void test_all_set(void **state) {
        fixture *f = *state;
        char ca[128], err[256] = "";
        config *c = NULL;

        snprintf(ca, sizeof ca, "%s/ca.pem", f->dir);
        write_file(ca, "-----BEGIN CERTIFICATE-----\n");
        env e = { {
                "CONTROLLER_WS_URL", "  WSS://Controller.Example:8443/ws/node?x=1#frag  ",
                "NODE_TOKEN", "opaque-token",
                "NODE_ID", "node-001",
                "NODE_NAME", "GPU Node 01",
                "HEARTBEAT_INTERVAL", "1000",
                "METRICS_INTERVAL", "2000",
                "RECONNECT_DELAY", "100",
                "RECONNECT_DELAY_MAX", "100",
                "DOCKER_SOCKET", "/run/docker.sock",
                "NVIDIA_SMI_PATH", "/usr/bin/nvidia-smi",
                "LOG_LEVEL", "DEBUG",
                "LOG_FORMAT", "json",
                "NODE_ENV", "production",
                "TLS_CA_FILE", ca,
                "TLS_INSECURE", "Yes",
                "STATE_DIR", "/srv/aiwm/",
                "DISK_PATH", "/data",
                "PUBLIC_IP", "2001:db8::1",
                "PUBLIC_IP_URLS", " http://a.example/ip , ,https://b.example ",
                "METRICS_LISTEN", "[::1]:9100",
                "MAX_CONCURRENT_COMMANDS", "16",
                NULL,
        } };

        assert_int_equal(load(&e, &c, err, sizeof err), 0);
        assert_string_equal(c->controller_ws_url, "WSS://Controller.Example:8443/ws/node?x=1#frag");
        assert_true(c->ws.tls);
        assert_string_equal(c->ws.host, "controller.example");
        assert_int_equal(c->ws.port, 8443);
        assert_string_equal(c->ws.nsp, "/ws/node");
        assert_string_equal(c->ws.query, "x=1");
        assert_string_equal(c->node_token, "opaque-token");
        assert_int_equal(c->token_exp, 0);
        assert_string_equal(c->node_id, "node-001");
        assert_string_equal(c->node_name, "GPU Node 01");
        assert_int_equal(c->heartbeat_interval_ms, 1000);
        assert_int_equal(c->metrics_interval_ms, 2000);
        assert_int_equal(c->reconnect_delay_ms, 100);
        assert_int_equal(c->reconnect_delay_max_ms, 100);
        assert_string_equal(c->docker_socket, "/run/docker.sock");
        assert_string_equal(c->nvidia_smi_path, "/usr/bin/nvidia-smi");
        assert_int_equal(c->log_level, LOG_DEBUG);
        assert_int_equal(c->log_format, LOG_FORMAT_JSON);
        assert_string_equal(c->node_env, "production");
        assert_string_equal(c->tls_ca_file, ca);
        assert_true(c->tls_insecure);
        assert_string_equal(c->state_dir, "/srv/aiwm/");
        assert_string_equal(c->model_cache_dir, "/srv/aiwm/models");
        assert_string_equal(c->disk_path, "/data");
        assert_string_equal(c->public_ip, "2001:db8::1");
        assert_int_equal(c->n_public_ip_urls, 2);
        assert_string_equal(c->public_ip_urls[0], "http://a.example/ip");
        assert_string_equal(c->public_ip_urls[1], "https://b.example");
        assert_string_equal(c->metrics_listen, "[::1]:9100");
        assert_string_equal(c->metrics_host, "::1");
        assert_int_equal(c->metrics_port, 9100);
        assert_int_equal(c->max_concurrent_commands, 16);
        config_free(c);
}

static void test_misc_values(void **state) {
        static const struct {
                const char *key, *value;
        } ok[] = {
                { "TLS_INSECURE", "0" },       { "TLS_INSECURE", "off" },  { "TLS_INSECURE", "TRUE" },
                { "TLS_INSECURE", "on" },      { "LOG_LEVEL", "warning" }, { "LOG_LEVEL", "error" },
                { "METRICS_LISTEN", ":9100" }, { "METRICS_LISTEN", "0.0.0.0:1" },
                { "METRICS_LISTEN", "localhost:65535" }, { "PUBLIC_IP", "203.0.113.7" },
                { "PUBLIC_IP_URLS", "" },      { "HEARTBEAT_INTERVAL", "2147483647" },
                { "MAX_CONCURRENT_COMMANDS", "1024" }, { "NODE_NAME", "nœud ✓" },
                { "HEARTBEAT_INTERVAL", "  " }, /* blank = unset */
        };

        for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
                env e = { { "NODE_TOKEN", TOKEN, ok[i].key, ok[i].value, NULL } };
                config *c = NULL;
                char err[256] = "";

                print_message("ok %zu: %s=%s\n", i, ok[i].key, ok[i].value);
                assert_int_equal(load(&e, &c, err, sizeof err), 0);
                if (strcmp(ok[i].key, "PUBLIC_IP_URLS") == 0)
                        assert_int_equal(c->n_public_ip_urls, 0);
                if (strcmp(ok[i].value, ":9100") == 0)
                        assert_string_equal(c->metrics_host, "");
                if (strcmp(ok[i].key, "HEARTBEAT_INTERVAL") == 0 && ok[i].value[0] == ' ')
                        assert_int_equal(c->heartbeat_interval_ms, 30000);
                config_free(c);
        }
}

static void test_validation(void **state) {
        static const struct {
                const char *key, *value;
                const char *expect; /* exact message */
        } cases[] = {
                { "HEARTBEAT_INTERVAL", "abc",
                  "HEARTBEAT_INTERVAL: must be a positive number of milliseconds, got \"abc\"" },
                { "HEARTBEAT_INTERVAL", "0", NULL },
                { "HEARTBEAT_INTERVAL", "-5", NULL },
                { "HEARTBEAT_INTERVAL", "30s", NULL },
                { "HEARTBEAT_INTERVAL", "2147483648",
                  "HEARTBEAT_INTERVAL: must be at most 2147483647 milliseconds, got \"2147483648\"" },
                { "HEARTBEAT_INTERVAL", "99999999999999999999999", NULL },
                { "HEARTBEAT_INTERVAL", "-99999999999999999999999", NULL },
                { "HEARTBEAT_INTERVAL", "1.5", NULL },
                { "METRICS_INTERVAL", "x", NULL },
                { "RECONNECT_DELAY", "0", NULL },
                { "RECONNECT_DELAY_MAX", "1000",
                  "RECONNECT_DELAY_MAX: must be at least RECONNECT_DELAY (5000 ms), got 1000" },
                { "RECONNECT_DELAY_MAX", "", NULL }, /* placeholder: empty is fine, skipped below */
                { "LOG_LEVEL", "verbose", "LOG_LEVEL: must be one of debug, info, warn, error, got \"verbose\"" },
                { "LOG_FORMAT", "xml", "LOG_FORMAT: must be text or json, got \"xml\"" },
                { "TLS_INSECURE", "maybe", NULL },
                { "TLS_INSECURE", "2", NULL },
                { "TLS_CA_FILE", "/nonexistent/ca.pem",
                  "TLS_CA_FILE: cannot read \"/nonexistent/ca.pem\": No such file or directory" },
                { "TLS_CA_FILE", "/", "TLS_CA_FILE: \"/\" is not a regular file" },
                { "CONTROLLER_WS_URL", "ftp://h/x", NULL },
                { "CONTROLLER_WS_URL", "controller:3003", NULL },
                { "CONTROLLER_WS_URL", "ws://", NULL },
                { "CONTROLLER_WS_URL", "ws://:3003/ws/node", NULL },
                { "CONTROLLER_WS_URL", "ws://h:0/ws/node", NULL },
                { "CONTROLLER_WS_URL", "ws://h:65536/ws/node", NULL },
                { "CONTROLLER_WS_URL", "ws://h:/ws/node", NULL },
                { "CONTROLLER_WS_URL", "ws://h:80x/ws/node", NULL },
                { "CONTROLLER_WS_URL", "ws://user:pw@h/ws/node", NULL },
                { "CONTROLLER_WS_URL", "ws://h h/ws/node", NULL },
                { "CONTROLLER_WS_URL", "ws://[::1/ws/node", NULL },
                { "CONTROLLER_WS_URL", "ws://[zz::1]/ws/node", NULL },
                { "CONTROLLER_WS_URL", "ws://h/a,b", NULL },
                { "CONTROLLER_URL", "gopher://h", NULL },
                { "CONTROLLER_URL", "http://h:99999", NULL },
                { "DOCKER_SOCKET", "docker.sock", "DOCKER_SOCKET: must be an absolute path, got \"docker.sock\"" },
                { "STATE_DIR", "state", NULL },
                { "MODEL_CACHE_DIR", "models", NULL },
                { "DISK_PATH", "data", NULL },
                { "PUBLIC_IP", "my-host", "PUBLIC_IP: must be an IPv4 or IPv6 address, got \"my-host\"" },
                { "PUBLIC_IP", "1.2.3.256", NULL },
                { "PUBLIC_IP_URLS", "ftp://x", NULL },
                { "PUBLIC_IP_URLS", "https://a,not a url", NULL },
                { "PUBLIC_IP_URLS", "https://", NULL },
                { "METRICS_LISTEN", "9100", NULL },
                { "METRICS_LISTEN", "h:0", NULL },
                { "METRICS_LISTEN", "h:", NULL },
                { "METRICS_LISTEN", "[::1]9100", NULL },
                { "METRICS_LISTEN", "a b:1", NULL },
                { "MAX_CONCURRENT_COMMANDS", "0", NULL },
                { "MAX_CONCURRENT_COMMANDS", "1025", NULL },
                { "MAX_CONCURRENT_COMMANDS", "four", NULL },
                { "NODE_ID", "node-001", "NODE_ID: \"node-001\" differs from the token's sub \"" SUB "\"" },
                { "NODE_NAME", "bad\xff", "NODE_NAME: must be valid UTF-8" },
                { "NODE_TOKEN", "has space", "NODE_TOKEN: the token contains whitespace or control characters" },
        };

        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
                /* NODE_TOKEN first so a case can override it (first match wins) */
                env e = { { cases[i].key, cases[i].value, "NODE_TOKEN", TOKEN, NULL } };
                config *c = (config *)0x1;
                char err[256] = "";
                size_t klen = strlen(cases[i].key);
                int r;

                if (!cases[i].value[0])
                        continue;
                r = load(&e, &c, err, sizeof err);
                print_message("case %zu: %s=%s -> %s\n", i, cases[i].key, cases[i].value, err);
                assert_int_equal(r, -EINVAL);
                assert_ptr_equal(c, (config *)0x1); /* untouched */
                /* one line, starting with the key */
                assert_null(strchr(err, '\n'));
                assert_true(strncmp(err, cases[i].key, klen) == 0 && err[klen] == ':');
                if (cases[i].expect)
                        assert_string_equal(err, cases[i].expect);
        }
}

static void test_long_value_in_message(void **state) {
        char value[300], err[256] = "";
        env e = { { "NODE_TOKEN", TOKEN, "LOG_LEVEL", value, NULL } };
        config *c = NULL;

        memset(value, 'x', sizeof value - 1);
        value[sizeof value - 1] = '\0';
        value[5] = '\n'; /* control characters are not echoed */
        assert_int_equal(load(&e, &c, err, sizeof err), -EINVAL);
        assert_null(strchr(err, '\n'));
        assert_non_null(strstr(err, "xxxxx?xxx"));
        assert_non_null(strstr(err, "...\""));
        assert_true(strlen(err) < 160);
}

static void test_token_and_node_id(void **state) {
        config *c = NULL;
        char err[256] = "";

        /* missing token names NODE_TOKEN */
        {
                env e = { { "NODE_ID", "n", NULL } };
                assert_int_equal(load(&e, &c, err, sizeof err), -EINVAL);
                assert_string_equal(err, "NODE_TOKEN: not set (set NODE_TOKEN or NODE_TOKEN_FILE)");
        }
        {
                env e = { { "NODE_TOKEN", "   ", "NODE_ID", "n", NULL } };
                assert_int_equal(load(&e, &c, err, sizeof err), -EINVAL);
                assert_true(strncmp(err, "NODE_TOKEN: ", 12) == 0);
        }
        /* NODE_ID equal to sub is fine */
        {
                env e = { { "NODE_TOKEN", TOKEN, "NODE_ID", SUB, NULL } };
                assert_int_equal(load(&e, &c, err, sizeof err), 0);
                assert_string_equal(c->node_id, SUB);
                c = config_free(c);
        }
        /* opaque token: NODE_ID required */
        {
                env e = { { "NODE_TOKEN", "opaque", NULL } };
                assert_int_equal(load(&e, &c, err, sizeof err), -EINVAL);
                assert_true(strncmp(err, "NODE_ID: ", 9) == 0);
        }
        /* JWT without sub: NODE_ID required, and then not compared */
        {
                env e = { { "NODE_TOKEN", TOKEN_NO_SUB, NULL } };
                assert_int_equal(load(&e, &c, err, sizeof err), -EINVAL);
                assert_true(strncmp(err, "NODE_ID: ", 9) == 0);
        }
        {
                env e = { { "NODE_TOKEN", TOKEN_NO_SUB, "NODE_ID", "anything", NULL } };
                assert_int_equal(load(&e, &c, err, sizeof err), 0);
                assert_string_equal(c->node_id, "anything");
                c = config_free(c);
        }
        /* surrounding whitespace is trimmed */
        {
                env e = { { "NODE_TOKEN", "  " TOKEN "\n", NULL } };
                assert_int_equal(load(&e, &c, err, sizeof err), 0);
                assert_string_equal(c->node_token, TOKEN);
                c = config_free(c);
        }
}

static void test_token_file(void **state) {
        fixture *f = *state;
        char path[128], err[256] = "", *tok = NULL;
        config *c = NULL;

        snprintf(path, sizeof path, "%s/token", f->dir);
        write_file(path, "\n  " TOKEN "  \n");
        env e = { { "NODE_TOKEN_FILE", path, "NODE_TOKEN", "ignored-env-token", NULL } };

        /* the file wins over NODE_TOKEN; NODE_ID comes from its sub */
        assert_int_equal(load(&e, &c, err, sizeof err), 0);
        assert_string_equal(c->node_token_file, path);
        assert_string_equal(c->node_token, TOKEN);
        assert_string_equal(c->node_id, SUB);
        assert_int_equal(config_read_token(c, &tok, err, sizeof err), 0);
        assert_string_equal(tok, TOKEN);
        free(tok);

        /* re-read after being rewritten */
        write_file(path, "rotated-token\n");
        assert_int_equal(config_read_token(c, &tok, err, sizeof err), 0);
        assert_string_equal(tok, "rotated-token");
        free(tok);

        /* errors name NODE_TOKEN_FILE; *ret_token untouched */
        tok = (char *)0x1;
        write_file(path, " \n\t");
        assert_int_equal(config_read_token(c, &tok, err, sizeof err), -EINVAL);
        assert_true(strncmp(err, "NODE_TOKEN_FILE: ", 17) == 0);
        write_file(path, "two\nlines");
        assert_int_equal(config_read_token(c, &tok, err, sizeof err), -EINVAL);
        assert_true(strncmp(err, "NODE_TOKEN_FILE: ", 17) == 0);
        unlink(path);
        assert_int_equal(config_read_token(c, &tok, err, sizeof err), -EINVAL);
        assert_true(strncmp(err, "NODE_TOKEN_FILE: cannot read \"", 30) == 0);
        assert_ptr_equal(tok, (char *)0x1);
        c = config_free(c);

        /* missing at load time */
        assert_int_equal(load(&e, &c, err, sizeof err), -EINVAL);
        assert_true(strncmp(err, "NODE_TOKEN_FILE: cannot read", 28) == 0);
        assert_non_null(strstr(err, "No such file or directory"));

        /* NODE_TOKEN alone: read_token returns a copy */
        env e2 = { { "NODE_TOKEN", TOKEN, NULL } };
        assert_int_equal(load(&e2, &c, err, sizeof err), 0);
        assert_int_equal(config_read_token(c, &tok, err, sizeof err), 0);
        assert_string_equal(tok, TOKEN);
        assert_ptr_not_equal(tok, c->node_token);
        free(tok);
        config_free(c);
}

static void test_env_file(void **state) {
        fixture *f = *state;
        char path[128], err[256] = "", cwd[PATH_MAX];
        config *c = NULL;

        snprintf(path, sizeof path, "%s/worker.env", f->dir);
        write_file(path, "NODE_TOKEN=" TOKEN "\n"
                         "NODE_NAME=from-file\n"
                         "HEARTBEAT_INTERVAL=1234\n"
                         "METRICS_INTERVAL=777\n"
                         "bogus line\n"
                         "LOG_LEVEL=debug\n");

        /* env beats the file, even when empty (then the default applies) */
        env e = { { "NODE_NAME", "from-env", "HEARTBEAT_INTERVAL", "", NULL } };
        config_source src = { .getenv = env_get, .userdata = &e, .env_file = path };
        assert_int_equal(config_load(&src, &c, err, sizeof err), 0);
        assert_string_equal(c->node_name, "from-env");
        assert_int_equal(c->heartbeat_interval_ms, 30000);
        assert_int_equal(c->metrics_interval_ms, 777);
        assert_int_equal(c->log_level, LOG_DEBUG);
        assert_string_equal(c->node_token, TOKEN);
        assert_string_equal(c->env_file, path);
        assert_int_equal(c->n_env_invalid_lines, 1);
        assert_int_equal(c->env_invalid_lines[0], 5);
        c = config_free(c);

        /* an invalid value in the file is reported with its key */
        write_file(path, "NODE_TOKEN=" TOKEN "\nMETRICS_INTERVAL=soon\n");
        assert_int_equal(config_load(&src, &c, err, sizeof err), -EINVAL);
        assert_true(strncmp(err, "METRICS_INTERVAL: ", 18) == 0);

        /* --env-file that does not exist */
        src.env_file = "/nonexistent/worker.env";
        assert_int_equal(config_load(&src, &c, err, sizeof err), -EINVAL);
        assert_string_equal(err, "--env-file: /nonexistent/worker.env: No such file or directory");

        /* default ./.env, used when present */
        env none = { { NULL } };
        config_source def = { .getenv = env_get, .userdata = &none };
        assert_non_null(getcwd(cwd, sizeof cwd));
        assert_int_equal(chdir(f->dir), 0);
        assert_int_equal(config_load(&def, &c, err, sizeof err), -EINVAL); /* no .env, no token */
        assert_true(strncmp(err, "NODE_TOKEN: ", 12) == 0);
        write_file(".env", "export NODE_TOKEN='" TOKEN "' # token\nNODE_ENV=\"production\"\n");
        assert_int_equal(config_load(&def, &c, err, sizeof err), 0);
        assert_string_equal(c->env_file, "./.env");
        assert_string_equal(c->node_env, "production");
        assert_string_equal(c->node_id, SUB);
        c = config_free(c);
        /* an explicit default path, and "" for none */
        def.default_env_file = "";
        assert_int_equal(config_load(&def, &c, err, sizeof err), -EINVAL);
        unlink(".env");
        assert_int_equal(chdir(cwd), 0);
        def.default_env_file = path;
        write_file(path, "NODE_TOKEN=" TOKEN "\n");
        assert_int_equal(config_load(&def, &c, err, sizeof err), 0);
        assert_string_equal(c->env_file, path);
        config_free(c);
}

static void test_controller_url(void **state) {
        static const struct {
                const char *ws, *http; /* values of CONTROLLER_WS_URL / CONTROLLER_URL */
                const char *url;       /* effective URL */
                bool tls;
                const char *host;
                int port;
                const char *nsp, *query;
        } cases[] = {
                { NULL, NULL, "ws://localhost:3003/ws/node", false, "localhost", 3003, "/ws/node", NULL },
                { NULL, "http://ctl:3003", "ws://ctl:3003/ws/node", false, "ctl", 3003, "/ws/node", NULL },
                { NULL, "https://ctl", "wss://ctl/ws/node", true, "ctl", 443, "/ws/node", NULL },
                { NULL, "HTTPS://ctl/", "wss://ctl/ws/node", true, "ctl", 443, "/ws/node", NULL },
                { NULL, "wss://host:3003", "wss://host:3003/ws/node", true, "host", 3003, "/ws/node", NULL },
                { NULL, "http://ctl:81/custom", "ws://ctl:81/custom", false, "ctl", 81, "/custom", NULL },
                { NULL, "http://ctl?a=b", "ws://ctl/ws/node?a=b", false, "ctl", 80, "/ws/node", "a=b" },
                { NULL, "http://[::1]:3003", "ws://[::1]:3003/ws/node", false, "::1", 3003, "/ws/node", NULL },
                { "ws://a:1/x", "http://ignored", "ws://a:1/x", false, "a", 1, "/x", NULL },
                { "http://a", NULL, "http://a", false, "a", 80, "/", NULL },
                { "https://a/", NULL, "https://a/", true, "a", 443, "/", NULL },
                { "ws://127.0.0.1:4000/ws/node?token=1&b=2", NULL, "ws://127.0.0.1:4000/ws/node?token=1&b=2", false,
                  "127.0.0.1", 4000, "/ws/node", "token=1&b=2" },
                { "ws://h/ws/node?", NULL, "ws://h/ws/node?", false, "h", 80, "/ws/node", NULL },
                { "ws://h#frag", NULL, "ws://h#frag", false, "h", 80, "/", NULL },
        };

        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
                env e = { { "NODE_TOKEN", TOKEN, NULL } };
                size_t n = 2;
                config *c = NULL;
                char err[256] = "";

                if (cases[i].ws) {
                        e.kv[n++] = "CONTROLLER_WS_URL";
                        e.kv[n++] = cases[i].ws;
                }
                if (cases[i].http) {
                        e.kv[n++] = "CONTROLLER_URL";
                        e.kv[n++] = cases[i].http;
                }
                print_message("case %zu\n", i);
                assert_int_equal(load(&e, &c, err, sizeof err), 0);
                assert_string_equal(c->controller_ws_url, cases[i].url);
                assert_int_equal(c->ws.tls, cases[i].tls);
                assert_string_equal(c->ws.host, cases[i].host);
                assert_int_equal(c->ws.port, cases[i].port);
                assert_string_equal(c->ws.nsp, cases[i].nsp);
                if (cases[i].query)
                        assert_string_equal(c->ws.query, cases[i].query);
                else
                        assert_null(c->ws.query);
                config_free(c);
        }
}

static void test_parse_ws_url(void **state) {
        config_url u = { .host = (char *)"untouched" };
        char err[128] = "";

        assert_int_equal(config_parse_ws_url("ws://h:3003/ws/node", &u, err, sizeof err), 0);
        assert_string_equal(u.nsp, "/ws/node");
        config_url_done(&u);
        assert_null(u.host);
        config_url_done(&u);
        config_url_done(NULL);

        u.host = (char *)"untouched";
        assert_int_equal(config_parse_ws_url("ws://h:3003/a,b", &u, err, sizeof err), -EINVAL);
        assert_string_equal(u.host, "untouched");
        assert_true(err[0] != '\0');
        assert_int_equal(config_parse_ws_url("ws://h\x01/", &u, NULL, 0), -EINVAL);
        assert_int_equal(config_parse_ws_url("ws://[::1]x/", &u, NULL, 0), -EINVAL);
        assert_int_equal(config_parse_ws_url("ws://[]/", &u, NULL, 0), -EINVAL);
        assert_int_equal(config_parse_ws_url("ws://h:123456/", &u, NULL, 0), -EINVAL);
        assert_int_equal(config_parse_ws_url("wsx://h/", &u, NULL, 0), -EINVAL);
        assert_int_equal(config_parse_ws_url("://h/", &u, NULL, 0), -EINVAL);
}

static void test_to_json(void **state) {
        env e = { { "NODE_TOKEN", TOKEN, "PUBLIC_IP_URLS", "https://x", "TLS_INSECURE", "1", NULL } };
        config *c = NULL;
        char err[256] = "", *s;
        json_t *j;

        assert_int_equal(load(&e, &c, err, sizeof err), 0);
        j = config_to_json(c);
        assert_non_null(j);
        s = json_dumps(j, JSON_COMPACT);
        assert_non_null(s);
        assert_null(strstr(s, TOKEN));
        assert_null(strstr(s, "eyJ"));
        assert_string_equal(json_string_value(json_object_get(j, "NODE_TOKEN")), "[redacted]");
        assert_string_equal(json_string_value(json_object_get(j, "NODE_ID")), SUB);
        assert_int_equal(json_integer_value(json_object_get(j, "HEARTBEAT_INTERVAL")), 30000);
        assert_true(json_is_true(json_object_get(j, "TLS_INSECURE")));
        assert_true(json_is_null(json_object_get(j, "PUBLIC_IP")));
        assert_string_equal(json_string_value(json_object_get(j, "LOG_LEVEL")), "info");
        assert_string_equal(json_string_value(json_array_get(json_object_get(j, "PUBLIC_IP_URLS"), 0)),
                            "https://x");
        free(s);
        json_decref(j);
        config_free(c);
}

/* Deployment and model-source keys: values, defaults, errors naming the
 * key, secrets redacted in the JSON view. */
static void test_deploy_and_models(void **state) {
        env e = { { "NODE_TOKEN", TOKEN, "DEPLOY_GPU_MODE", "cdi", "DEPLOY_NETWORK", "host", "DEPLOY_BIND_IP",
                    "10.0.0.5", "DEPLOY_HEALTH_TIMEOUT", "60", "DEPLOY_ORPHAN_GRACE", "0", "ALLOWED_IMAGE_REGISTRIES",
                    " nvcr.io , ghcr.io/acme,,localhost:5000 ", "HF_ENDPOINT", "https://hf-mirror.example",
                    "HF_TOKEN", "hf_secret", "S3_ACCESS_KEY", "AKIA", "S3_SECRET_KEY", "s3secret",
                    "MODEL_STALL_TIMEOUT", "30", NULL } };
        config *cfg = NULL;
        char err[256] = "", *txt;
        json_t *j;
        (void)state;

        assert_int_equal(load(&e, &cfg, err, sizeof err), 0);
        assert_string_equal(cfg->deploy_gpu_mode, "cdi");
        assert_true(cfg->deploy_host_network);
        assert_string_equal(cfg->deploy_bind_ip, "10.0.0.5");
        assert_int_equal(cfg->deploy_health_timeout_s, 60);
        assert_int_equal(cfg->deploy_orphan_grace_s, 0);
        assert_int_equal(cfg->n_allowed_registries, 3);
        assert_string_equal(cfg->allowed_registries[1], "ghcr.io/acme");
        assert_string_equal(cfg->allowed_registries[2], "localhost:5000");
        assert_string_equal(cfg->hf_endpoint, "https://hf-mirror.example");
        assert_string_equal(cfg->hf_token, "hf_secret");
        assert_int_equal(cfg->model_stall_timeout_s, 30);
        assert_int_equal(cfg->model_max_parallel_files, 0); /* unset: the module's default */
        j = config_to_json(cfg);
        txt = json_dumps(j, JSON_COMPACT);
        assert_null(strstr(txt, "hf_secret"));
        assert_null(strstr(txt, "s3secret"));
        assert_null(strstr(txt, "AKIA"));
        assert_non_null(strstr(txt, "\"ALLOWED_IMAGE_REGISTRIES\":[\"nvcr.io\",\"ghcr.io/acme\",\"localhost:5000\"]"));
        free(txt);
        json_decref(j);
        cfg = config_free(cfg);

        /* defaults */
        {
                env d = { { "NODE_TOKEN", TOKEN, NULL } };
                assert_int_equal(load(&d, &cfg, err, sizeof err), 0);
                assert_string_equal(cfg->deploy_gpu_mode, "device-requests");
                assert_false(cfg->deploy_host_network);
                assert_null(cfg->deploy_bind_ip);
                assert_int_equal(cfg->deploy_health_timeout_s, 300);
                assert_int_equal(cfg->deploy_orphan_grace_s, 300);
                assert_int_equal(cfg->n_allowed_registries, 0);
                assert_null(cfg->registry_auth_file);
                cfg = config_free(cfg);
        }
        /* each error names its key */
        {
                static const char *const bad[][3] = {
                        { "DEPLOY_GPU_MODE", "mig", "DEPLOY_GPU_MODE:" },
                        { "DEPLOY_NETWORK", "overlay", "DEPLOY_NETWORK:" },
                        { "DEPLOY_BIND_IP", "eth0", "DEPLOY_BIND_IP:" },
                        { "DEPLOY_ENDPOINT_HOST", "a b", "DEPLOY_ENDPOINT_HOST:" },
                        { "DEPLOY_HEALTH_TIMEOUT", "0", "DEPLOY_HEALTH_TIMEOUT:" },
                        { "DEPLOY_ORPHAN_GRACE", "soon", "DEPLOY_ORPHAN_GRACE:" },
                        { "ALLOWED_IMAGE_REGISTRIES", "a b", "ALLOWED_IMAGE_REGISTRIES:" },
                        { "REGISTRY_AUTH_FILE", "/nonexistent/config.json", "REGISTRY_AUTH_FILE:" },
                        { "HF_ENDPOINT", "ftp://x", "HF_ENDPOINT:" },
                        { "MODEL_MAX_PARALLEL_FILES", "65", "MODEL_MAX_PARALLEL_FILES:" },
                        { "MODEL_STALL_TIMEOUT", "-1", "MODEL_STALL_TIMEOUT:" },
                };
                size_t i;
                for (i = 0; i < sizeof bad / sizeof *bad; i++) {
                        env b = { { "NODE_TOKEN", TOKEN, bad[i][0], bad[i][1], NULL } };
                        err[0] = 0;
                        assert_int_equal(load(&b, &cfg, err, sizeof err), -EINVAL);
                        assert_true(strncmp(err, bad[i][2], strlen(bad[i][2])) == 0);
                }
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults),
                cmocka_unit_test_setup_teardown(test_all_set, setup, teardown),
                cmocka_unit_test(test_misc_values),
                cmocka_unit_test(test_validation),
                cmocka_unit_test(test_long_value_in_message),
                cmocka_unit_test(test_token_and_node_id),
                cmocka_unit_test_setup_teardown(test_token_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_env_file, setup, teardown),
                cmocka_unit_test(test_controller_url),
                cmocka_unit_test(test_parse_ws_url),
                cmocka_unit_test(test_to_json),
                cmocka_unit_test(test_deploy_and_models),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
