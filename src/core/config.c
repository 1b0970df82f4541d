#include "core/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/dotenv.h"
#include "core/jwt.h"
#include "core/util.h"

typedef struct loader {
        const config_source *src;
        dotenv env;
        char *err;
        size_t errlen;
} loader;

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
        va_list ap;

        if (!err || errlen == 0)
                return;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
}

/* Writes "KEY: <message>" to the loader's err and returns -EINVAL. */
static int fail(loader *l, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(loader *l, const char *key, const char *fmt, ...) {
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        set_err(l->err, l->errlen, "%s: %s", key, msg);
        return -EINVAL;
}

/* A printable, bounded rendering of a user value for error messages. */
static const char *shown(const char *v, char out[72]) {
        size_t i, o = 0;

        for (i = 0; v[i] && o < 64; i++) {
                unsigned char c = (unsigned char)v[i];
                out[o++] = c < 0x20 || c == 0x7f || c == '"' ? '?' : (char)c;
        }
        if (v[i]) {
                memcpy(out + o, "...", 3);
                o += 3;
        }
        out[o] = '\0';
        return out;
}

static json_t *str_or_null(const char *s) {
        json_t *j;

        if (!s)
                return json_null();
        j = json_string(s);
        return j ? j : json_string("[not UTF-8]");
}

/* Values that go on the wire inside JSON must be UTF-8. */
static int check_utf8(loader *l, const char *key, const char *v) {
        json_t *j = json_string(v);

        if (!j)
                return fail(l, key, "must be valid UTF-8");
        json_decref(j);
        return 0;
}

static const char *process_getenv(const char *key, void *userdata) {
        return getenv(key);
}

/* The raw value of key: the environment first, then the .env file. */
static const char *lookup_raw(loader *l, const char *key) {
        config_getenv_fn fn = l->src->getenv ? l->src->getenv : process_getenv;
        const char *v = fn(key, l->src->userdata);

        if (v)
                return v;
        return dotenv_get(&l->env, key);
}

/* The trimmed value of key in *ret (caller frees), or NULL when unset or
 * blank. Returns 0 or -ENOMEM. */
static int lookup(loader *l, const char *key, char **ret) {
        const char *v = lookup_raw(l, key);
        char *s;

        *ret = NULL;
        if (!v)
                return 0;
        s = strdup(v);
        if (!s)
                return -ENOMEM;
        util_strstrip(s);
        if (!*s) {
                free(s);
                return 0;
        }
        *ret = s;
        return 0;
}

/* Like lookup() but falls back to def (which may be NULL). */
static int lookup_default(loader *l, const char *key, const char *def, char **ret) {
        int r = lookup(l, key, ret);

        if (r == 0 && !*ret && def) {
                *ret = strdup(def);
                if (!*ret)
                        r = -ENOMEM;
        }
        return r;
}

static int lookup_ms(loader *l, const char *key, int64_t def, int64_t *ret) {
        char *v = NULL, tmp[72];
        int64_t n = 0;
        int r, rr;

        r = lookup(l, key, &v);
        if (r < 0)
                return r;
        if (!v) {
                *ret = def;
                return 0;
        }
        rr = util_parse_i64(v, INT64_MIN, INT64_MAX, &n);
        if ((rr == -ERANGE && v[0] != '-') || (rr == 0 && n > INT32_MAX))
                r = fail(l, key, "must be at most %d milliseconds, got \"%s\"", INT32_MAX, shown(v, tmp));
        else if (util_parse_i64(v, 1, INT32_MAX, ret) < 0)
                r = fail(l, key, "must be a positive number of milliseconds, got \"%s\"", shown(v, tmp));
        free(v);
        return r;
}

static int lookup_bool(loader *l, const char *key, bool def, bool *ret) {
        static const char *const yes[] = { "1", "true", "yes", "on" };
        static const char *const no[] = { "0", "false", "no", "off" };
        char *v = NULL, tmp[72];
        size_t i;
        int r;

        r = lookup(l, key, &v);
        if (r < 0)
                return r;
        *ret = def;
        if (!v)
                return 0;
        for (i = 0; i < 4; i++) {
                if (strcasecmp(v, yes[i]) == 0) {
                        *ret = true;
                        goto out;
                }
                if (strcasecmp(v, no[i]) == 0) {
                        *ret = false;
                        goto out;
                }
        }
        r = fail(l, key, "must be one of 1, 0, true, false, yes, no, on, off, got \"%s\"", shown(v, tmp));
out:
        free(v);
        return r;
}

static int lookup_abs_path(loader *l, const char *key, const char *def, char **ret) {
        char tmp[72];
        int r = lookup_default(l, key, def, ret);

        if (r == 0 && (*ret)[0] != '/') {
                r = fail(l, key, "must be an absolute path, got \"%s\"", shown(*ret, tmp));
                free(*ret);
                *ret = NULL;
        }
        return r;
}

/* ---- URLs ---- */

static bool host_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
               c == '-' || c == '_' || c == '~';
}

static int parse_port(const char *s, size_t len, uint16_t *ret) {
        uint32_t v = 0;
        size_t i;

        if (len == 0 || len > 5)
                return -EINVAL;
        for (i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                v = v * 10 + (uint32_t)(s[i] - '0');
        }
        if (v < 1 || v > 65535)
                return -EINVAL;
        *ret = (uint16_t)v;
        return 0;
}

static bool valid_ipv6(const char *s, size_t len) {
        struct in6_addr a;
        char tmp[64];

        if (len == 0 || len >= sizeof tmp)
                return false;
        memcpy(tmp, s, len);
        tmp[len] = '\0';
        return inet_pton(AF_INET6, tmp, &a) == 1;
}

/* Splits "host:port", "[v6]:port" or ":port" into a host (maybe empty) and
 * a port. The host, if any, is returned in *ret_host (caller frees). */
static int parse_host_port(const char *s, char **ret_host, uint16_t *ret_port) {
        const char *colon, *host = s;
        size_t host_len;

        if (s[0] == '[') {
                const char *close = strchr(s, ']');
                if (!close || close[1] != ':' || !valid_ipv6(s + 1, (size_t)(close - s - 1)))
                        return -EINVAL;
                host = s + 1;
                host_len = (size_t)(close - s - 1);
                colon = close + 1;
        } else {
                size_t i;
                colon = strrchr(s, ':');
                if (!colon)
                        return -EINVAL;
                host_len = (size_t)(colon - s);
                for (i = 0; i < host_len; i++)
                        if (!host_char(s[i]))
                                return -EINVAL;
        }
        if (parse_port(colon + 1, strlen(colon + 1), ret_port) < 0)
                return -EINVAL;
        *ret_host = strndup(host, host_len);
        return *ret_host ? 0 : -ENOMEM;
}

int config_parse_ws_url(const char *url, config_url *ret_url, char *err, size_t errlen) {
        config_url u = { 0 };
        const char *sep, *auth, *auth_end, *host, *rest, *path_end;
        size_t scheme_len, host_len, i;
        int r = -EINVAL;

        for (i = 0; url[i]; i++) {
                unsigned char c = (unsigned char)url[i];
                if (c <= 0x20 || c == 0x7f) {
                        set_err(err, errlen, "URL contains whitespace or control characters");
                        return -EINVAL;
                }
        }
        sep = strstr(url, "://");
        if (!sep) {
                set_err(err, errlen, "not a URL (expected ws://, wss://, http:// or https://)");
                return -EINVAL;
        }
        scheme_len = (size_t)(sep - url);
        if ((scheme_len == 2 && strncasecmp(url, "ws", 2) == 0) ||
            (scheme_len == 4 && strncasecmp(url, "http", 4) == 0))
                u.tls = false;
        else if ((scheme_len == 3 && strncasecmp(url, "wss", 3) == 0) ||
                 (scheme_len == 5 && strncasecmp(url, "https", 5) == 0))
                u.tls = true;
        else {
                set_err(err, errlen, "scheme must be ws, wss, http or https");
                return -EINVAL;
        }

        auth = sep + 3;
        auth_end = auth + strcspn(auth, "/?#");
        if (memchr(auth, '@', (size_t)(auth_end - auth))) {
                set_err(err, errlen, "user info in the URL is not supported");
                return -EINVAL;
        }
        if (*auth == '[') {
                const char *close = memchr(auth, ']', (size_t)(auth_end - auth));
                if (!close || !valid_ipv6(auth + 1, (size_t)(close - auth - 1))) {
                        set_err(err, errlen, "invalid IPv6 address in the URL");
                        return -EINVAL;
                }
                host = auth + 1;
                host_len = (size_t)(close - auth - 1);
                rest = close + 1;
                if (rest != auth_end && *rest != ':') {
                        set_err(err, errlen, "invalid characters after the IPv6 address");
                        return -EINVAL;
                }
        } else {
                host = auth;
                rest = memchr(auth, ':', (size_t)(auth_end - auth));
                if (!rest)
                        rest = auth_end;
                host_len = (size_t)(rest - auth);
                for (i = 0; i < host_len; i++) {
                        if (!host_char(host[i])) {
                                set_err(err, errlen, "invalid character in the host name");
                                return -EINVAL;
                        }
                }
        }
        if (host_len == 0) {
                set_err(err, errlen, "the URL has no host");
                return -EINVAL;
        }
        if (host_len > 253) {
                set_err(err, errlen, "host name too long");
                return -EINVAL;
        }
        if (rest < auth_end) {
                if (parse_port(rest + 1, (size_t)(auth_end - rest - 1), &u.port) < 0) {
                        set_err(err, errlen, "port must be 1-65535");
                        return -EINVAL;
                }
        } else {
                u.port = u.tls ? 443 : 80;
        }

        path_end = auth_end + strcspn(auth_end, "?#");
        if (memchr(auth_end, ',', (size_t)(path_end - auth_end))) {
                set_err(err, errlen, "the path (Socket.IO namespace) must not contain ','");
                return -EINVAL;
        }
        u.host = strndup(host, host_len);
        u.nsp = path_end > auth_end ? strndup(auth_end, (size_t)(path_end - auth_end)) : strdup("/");
        if (!u.host || !u.nsp) {
                r = -ENOMEM;
                goto out;
        }
        for (i = 0; i < host_len; i++)
                if (u.host[i] >= 'A' && u.host[i] <= 'Z')
                        u.host[i] = (char)(u.host[i] - 'A' + 'a');
        if (*path_end == '?') {
                const char *q = path_end + 1;
                size_t qlen = strcspn(q, "#");
                if (qlen > 0) {
                        u.query = strndup(q, qlen);
                        if (!u.query) {
                                r = -ENOMEM;
                                goto out;
                        }
                }
        }
        *ret_url = u;
        memset(&u, 0, sizeof u);
        r = 0;
out:
        config_url_done(&u);
        return r;
}

void config_url_done(config_url *u) {
        if (!u)
                return;
        free(u->host);
        free(u->nsp);
        free(u->query);
        memset(u, 0, sizeof *u);
}

/* CONTROLLER_URL -> WebSocket URL: scheme http(s) -> ws(s), path /ws/node
 * when there is none. url has been checked by config_parse_ws_url(). */
static int derive_ws_url(const char *url, bool tls, char **ret) {
        const char *auth = strstr(url, "://") + 3;
        const char *auth_end = auth + strcspn(auth, "/?#");
        const char *path_end = auth_end + strcspn(auth_end, "?#");
        buf b;
        int r;

        buf_init(&b, 0);
        r = buf_appendf(&b, "%s://%.*s", tls ? "wss" : "ws", (int)(auth_end - auth), auth);
        if (r == 0) {
                if (path_end - auth_end > 1)
                        r = buf_append(&b, auth_end, (size_t)(path_end - auth_end));
                else
                        r = buf_append_str(&b, CONFIG_DEFAULT_NAMESPACE);
        }
        if (r == 0)
                r = buf_append_str(&b, path_end);
        if (r < 0)
                return r;
        *ret = buf_steal(&b);
        return *ret ? 0 : -ENOMEM;
}

static int load_controller_url(loader *l, config *cfg) {
        char *ws = NULL, *http = NULL, msg[256], tmp[72];
        int r;

        r = lookup(l, "CONTROLLER_WS_URL", &ws);
        if (r < 0)
                return r;
        if (ws) {
                r = config_parse_ws_url(ws, &cfg->ws, msg, sizeof msg);
                if (r == -EINVAL)
                        r = fail(l, "CONTROLLER_WS_URL", "%s, got \"%s\"", msg, shown(ws, tmp));
                if (r == 0) {
                        cfg->controller_ws_url = ws;
                        ws = NULL;
                }
                goto out;
        }
        r = lookup(l, "CONTROLLER_URL", &http);
        if (r < 0)
                goto out;
        if (!http) {
                cfg->controller_ws_url = strdup(CONFIG_DEFAULT_WS_URL);
                if (!cfg->controller_ws_url) {
                        r = -ENOMEM;
                        goto out;
                }
        } else {
                config_url u;
                r = config_parse_ws_url(http, &u, msg, sizeof msg);
                if (r == -EINVAL)
                        r = fail(l, "CONTROLLER_URL", "%s, got \"%s\"", msg, shown(http, tmp));
                if (r < 0)
                        goto out;
                r = derive_ws_url(http, u.tls, &cfg->controller_ws_url);
                config_url_done(&u);
                if (r < 0)
                        goto out;
        }
        r = config_parse_ws_url(cfg->controller_ws_url, &cfg->ws, msg, sizeof msg);
        if (r == -EINVAL)
                r = fail(l, "CONTROLLER_URL", "%s, got \"%s\"", msg, shown(cfg->controller_ws_url, tmp));
out:
        free(ws);
        free(http);
        return r;
}

/* ---- token ---- */

static int check_token(const char *tok, const char *key, char *err, size_t errlen) {
        size_t i, len = strlen(tok);

        if (len == 0) {
                set_err(err, errlen, "%s: the token is empty", key);
                return -EINVAL;
        }
        if (len > CONFIG_TOKEN_MAX) {
                set_err(err, errlen, "%s: the token is longer than %u bytes", key, CONFIG_TOKEN_MAX);
                return -EINVAL;
        }
        for (i = 0; i < len; i++) {
                unsigned char c = (unsigned char)tok[i];
                if (c <= 0x20 || c == 0x7f) {
                        set_err(err, errlen, "%s: the token contains whitespace or control characters",
                                key);
                        return -EINVAL;
                }
        }
        return 0;
}

static int read_token_file(const char *path, char **ret_token, char *err, size_t errlen) {
        char *data = NULL;
        size_t len = 0;
        int r;

        r = util_read_file(path, CONFIG_TOKEN_FILE_MAX, &data, &len);
        if (r < 0) {
                if (r == -ENOMEM)
                        return r;
                set_err(err, errlen, "NODE_TOKEN_FILE: cannot read \"%s\": %s", path,
                        r == -EFBIG ? "file too large" : strerror(-r));
                return -EINVAL;
        }
        if (memchr(data, '\0', len)) {
                set_err(err, errlen, "NODE_TOKEN_FILE: \"%s\" contains a NUL byte", path);
                r = -EINVAL;
                goto out;
        }
        util_strstrip(data);
        r = check_token(data, "NODE_TOKEN_FILE", err, errlen);
        if (r < 0)
                goto out;
        *ret_token = data;
        data = NULL;
out:
        free(data);
        return r;
}

int config_read_token(const config *cfg, char **ret_token, char *err, size_t errlen) {
        char *t;

        if (cfg->node_token_file)
                return read_token_file(cfg->node_token_file, ret_token, err, errlen);
        if (!cfg->node_token) {
                set_err(err, errlen, "NODE_TOKEN: not set (set NODE_TOKEN or NODE_TOKEN_FILE)");
                return -EINVAL;
        }
        t = strdup(cfg->node_token);
        if (!t)
                return -ENOMEM;
        *ret_token = t;
        return 0;
}

static int load_token_and_id(loader *l, config *cfg) {
        jwt_claims claims = { 0 };
        char *node_id = NULL, tmp[72], tmp2[72];
        bool have_claims = false;
        int r;

        r = lookup(l, "NODE_TOKEN_FILE", &cfg->node_token_file);
        if (r < 0)
                return r;
        if (cfg->node_token_file) {
                r = read_token_file(cfg->node_token_file, &cfg->node_token, l->err, l->errlen);
                if (r < 0)
                        return r;
        } else {
                r = lookup(l, "NODE_TOKEN", &cfg->node_token);
                if (r < 0)
                        return r;
                if (!cfg->node_token)
                        return fail(l, "NODE_TOKEN", "not set (set NODE_TOKEN or NODE_TOKEN_FILE)");
                r = check_token(cfg->node_token, "NODE_TOKEN", l->err, l->errlen);
                if (r < 0)
                        return r;
        }

        /* Decoding is best effort: an opaque token is fine when NODE_ID is set. */
        if (jwt_decode(cfg->node_token, &claims, NULL, 0) == 0) {
                have_claims = claims.sub && claims.sub[0];
                if (claims.has_exp)
                        cfg->token_exp = claims.exp;
        }

        r = lookup(l, "NODE_ID", &node_id);
        if (r < 0)
                goto out;
        if (node_id && have_claims && strcmp(node_id, claims.sub) != 0) {
                r = fail(l, "NODE_ID", "\"%s\" differs from the token's sub \"%s\"", shown(node_id, tmp),
                         shown(claims.sub, tmp2));
                goto out;
        }
        if (!node_id && !have_claims) {
                r = fail(l, "NODE_ID", "not set, and the token carries no \"sub\" claim to take it from");
                goto out;
        }
        if (!node_id) {
                node_id = claims.sub;
                claims.sub = NULL;
        }
        r = check_utf8(l, "NODE_ID", node_id);
        if (r < 0)
                goto out;
        cfg->node_id = node_id;
        node_id = NULL;
out:
        free(node_id);
        jwt_claims_done(&claims);
        return r;
}

/* ---- other keys ---- */

static int load_public_ip(loader *l, config *cfg) {
        const char *raw;
        char *list = NULL, *p, *next, tmp[72], msg[256];
        struct in6_addr a6;
        struct in_addr a4;
        int r;

        r = lookup(l, "PUBLIC_IP", &cfg->public_ip);
        if (r < 0)
                return r;
        if (cfg->public_ip && inet_pton(AF_INET, cfg->public_ip, &a4) != 1 &&
            inet_pton(AF_INET6, cfg->public_ip, &a6) != 1)
                return fail(l, "PUBLIC_IP", "must be an IPv4 or IPv6 address, got \"%s\"",
                            shown(cfg->public_ip, tmp));

        raw = lookup_raw(l, "PUBLIC_IP_URLS");
        list = strdup(raw ? raw : "https://api.ipify.org,https://ifconfig.me/ip");
        if (!list)
                return -ENOMEM;
        cfg->public_ip_urls = calloc(CONFIG_MAX_PUBLIC_IP_URLS, sizeof *cfg->public_ip_urls);
        if (!cfg->public_ip_urls) {
                r = -ENOMEM;
                goto out;
        }
        for (p = list; p; p = next) {
                config_url u;

                next = strchr(p, ',');
                if (next)
                        *next++ = '\0';
                util_strstrip(p);
                if (!*p)
                        continue;
                if (cfg->n_public_ip_urls >= CONFIG_MAX_PUBLIC_IP_URLS) {
                        r = fail(l, "PUBLIC_IP_URLS", "more than %u URLs", CONFIG_MAX_PUBLIC_IP_URLS);
                        goto out;
                }
                if (strncasecmp(p, "http://", 7) != 0 && strncasecmp(p, "https://", 8) != 0) {
                        r = fail(l, "PUBLIC_IP_URLS", "must be http(s) URLs separated by ',', got \"%s\"",
                                 shown(p, tmp));
                        goto out;
                }
                r = config_parse_ws_url(p, &u, msg, sizeof msg);
                if (r < 0) {
                        if (r == -EINVAL)
                                r = fail(l, "PUBLIC_IP_URLS", "%s, got \"%s\"", msg, shown(p, tmp));
                        goto out;
                }
                config_url_done(&u);
                cfg->public_ip_urls[cfg->n_public_ip_urls] = strdup(p);
                if (!cfg->public_ip_urls[cfg->n_public_ip_urls]) {
                        r = -ENOMEM;
                        goto out;
                }
                cfg->n_public_ip_urls++;
        }
out:
        free(list);
        return r;
}

static int load_misc(loader *l, config *cfg) {
        char *v = NULL, tmp[72], *models_default = NULL;
        int64_t n;
        int r;

        r = lookup_default(l, "NODE_NAME", "worker-node", &cfg->node_name);
        if (r == 0)
                r = check_utf8(l, "NODE_NAME", cfg->node_name);
        if (r == 0)
                r = lookup_ms(l, "HEARTBEAT_INTERVAL", 30000, &cfg->heartbeat_interval_ms);
        if (r == 0)
                r = lookup_ms(l, "METRICS_INTERVAL", 60000, &cfg->metrics_interval_ms);
        if (r == 0)
                r = lookup_ms(l, "RECONNECT_DELAY", 5000, &cfg->reconnect_delay_ms);
        if (r == 0)
                r = lookup_ms(l, "RECONNECT_DELAY_MAX", 60000, &cfg->reconnect_delay_max_ms);
        if (r < 0)
                return r;
        if (cfg->reconnect_delay_max_ms < cfg->reconnect_delay_ms)
                return fail(l, "RECONNECT_DELAY_MAX", "must be at least RECONNECT_DELAY (%lld ms), got %lld",
                            (long long)cfg->reconnect_delay_ms, (long long)cfg->reconnect_delay_max_ms);

        r = lookup_abs_path(l, "DOCKER_SOCKET", "/var/run/docker.sock", &cfg->docker_socket);
        if (r == 0)
                r = lookup_default(l, "NVIDIA_SMI_PATH", "nvidia-smi", &cfg->nvidia_smi_path);
        if (r == 0)
                r = lookup(l, "NODE_ENV", &cfg->node_env);
        if (r < 0)
                return r;

        r = lookup(l, "LOG_LEVEL", &v);
        if (r < 0)
                return r;
        cfg->log_level = LOG_INFO;
        if (v && log_level_parse(v, &cfg->log_level) < 0)
                r = fail(l, "LOG_LEVEL", "must be one of debug, info, warn, error, got \"%s\"",
                         shown(v, tmp));
        free(v);
        v = NULL;
        if (r < 0)
                return r;
        r = lookup(l, "LOG_FORMAT", &v);
        if (r < 0)
                return r;
        cfg->log_format = LOG_FORMAT_TEXT;
        if (v && log_format_parse(v, &cfg->log_format) < 0)
                r = fail(l, "LOG_FORMAT", "must be text or json, got \"%s\"", shown(v, tmp));
        free(v);
        v = NULL;
        if (r < 0)
                return r;

        r = lookup(l, "TLS_CA_FILE", &cfg->tls_ca_file);
        if (r < 0)
                return r;
        if (cfg->tls_ca_file) {
                struct stat st;
                if (stat(cfg->tls_ca_file, &st) < 0 || access(cfg->tls_ca_file, R_OK) < 0)
                        return fail(l, "TLS_CA_FILE", "cannot read \"%s\": %s", shown(cfg->tls_ca_file, tmp),
                                    strerror(errno));
                if (!S_ISREG(st.st_mode))
                        return fail(l, "TLS_CA_FILE", "\"%s\" is not a regular file",
                                    shown(cfg->tls_ca_file, tmp));
        }
        r = lookup_bool(l, "TLS_INSECURE", false, &cfg->tls_insecure);
        if (r < 0)
                return r;

        r = lookup_abs_path(l, "STATE_DIR", "/var/lib/aiwm-worker", &cfg->state_dir);
        if (r < 0)
                return r;
        if (asprintf(&models_default, "%s%smodels", cfg->state_dir,
                     cfg->state_dir[strlen(cfg->state_dir) - 1] == '/' ? "" : "/") < 0)
                return -ENOMEM;
        r = lookup_abs_path(l, "MODEL_CACHE_DIR", models_default, &cfg->model_cache_dir);
        free(models_default);
        if (r == 0)
                r = lookup_abs_path(l, "DISK_PATH", "/", &cfg->disk_path);
        if (r == 0)
                r = load_public_ip(l, cfg);
        if (r < 0)
                return r;

        r = lookup(l, "METRICS_LISTEN", &cfg->metrics_listen);
        if (r < 0)
                return r;
        if (cfg->metrics_listen) {
                r = parse_host_port(cfg->metrics_listen, &cfg->metrics_host, &cfg->metrics_port);
                if (r == -EINVAL)
                        return fail(l, "METRICS_LISTEN",
                                    "must be host:port, [ipv6]:port or :port, got \"%s\"",
                                    shown(cfg->metrics_listen, tmp));
                if (r < 0)
                        return r;
        }

        r = lookup(l, "MAX_CONCURRENT_COMMANDS", &v);
        if (r < 0)
                return r;
        cfg->max_concurrent_commands = 4;
        if (v) {
                if (util_parse_i64(v, 1, CONFIG_MAX_CONCURRENT_COMMANDS_LIMIT, &n) < 0)
                        r = fail(l, "MAX_CONCURRENT_COMMANDS",
                                 "must be a positive integer (at most %d), got \"%s\"",
                                 CONFIG_MAX_CONCURRENT_COMMANDS_LIMIT, shown(v, tmp));
                else
                        cfg->max_concurrent_commands = (unsigned)n;
        }
        free(v);
        return r;
}

static bool has_ctl_or_space(const char *s) {
        for (; *s; s++)
                if ((unsigned char)*s <= 0x20 || *s == 0x7f)
                        return true;
        return false;
}

static int lookup_seconds(loader *l, const char *key, int64_t def, int64_t min, int64_t max, int64_t *ret) {
        char *v = NULL, tmp[72];
        int r = lookup(l, key, &v);

        if (r < 0)
                return r;
        *ret = def;
        if (v && util_parse_i64(v, min, max, ret) < 0)
                r = fail(l, key, "must be a number of seconds from %lld to %lld, got \"%s\"", (long long)min,
                         (long long)max, shown(v, tmp));
        free(v);
        return r;
}

static int load_deploy(loader *l, config *cfg) {
        char *v = NULL, tmp[72], *save = NULL, *tok;
        struct in_addr a4;
        int r;

        r = lookup_default(l, "DEPLOY_GPU_MODE", "device-requests", &cfg->deploy_gpu_mode);
        if (r < 0)
                return r;
        if (strcasecmp(cfg->deploy_gpu_mode, "device-requests") && strcasecmp(cfg->deploy_gpu_mode, "cdi") &&
            strcasecmp(cfg->deploy_gpu_mode, "nvidia-runtime"))
                return fail(l, "DEPLOY_GPU_MODE", "must be device-requests, cdi or nvidia-runtime, got \"%s\"",
                            shown(cfg->deploy_gpu_mode, tmp));
        r = lookup(l, "DEPLOY_NETWORK", &v);
        if (r < 0)
                return r;
        if (v && strcasecmp(v, "bridge") && strcasecmp(v, "host"))
                r = fail(l, "DEPLOY_NETWORK", "must be bridge or host, got \"%s\"", shown(v, tmp));
        cfg->deploy_host_network = v && !strcasecmp(v, "host");
        free(v);
        v = NULL;
        if (r < 0)
                return r;
        r = lookup(l, "DEPLOY_BIND_IP", &cfg->deploy_bind_ip);
        if (r < 0)
                return r;
        if (cfg->deploy_bind_ip && inet_pton(AF_INET, cfg->deploy_bind_ip, &a4) != 1)
                return fail(l, "DEPLOY_BIND_IP", "must be an IPv4 address, got \"%s\"", shown(cfg->deploy_bind_ip, tmp));
        r = lookup(l, "DEPLOY_ENDPOINT_HOST", &cfg->deploy_endpoint_host);
        if (r < 0)
                return r;
        if (cfg->deploy_endpoint_host && (strpbrk(cfg->deploy_endpoint_host, "/ @?#") || has_ctl_or_space(cfg->deploy_endpoint_host)))
                return fail(l, "DEPLOY_ENDPOINT_HOST", "must be a host name or an IP address, got \"%s\"",
                            shown(cfg->deploy_endpoint_host, tmp));
        r = lookup_seconds(l, "DEPLOY_HEALTH_TIMEOUT", 300, 1, 86400, &cfg->deploy_health_timeout_s);
        if (r == 0)
                r = lookup_seconds(l, "DEPLOY_ORPHAN_GRACE", 300, 0, 86400, &cfg->deploy_orphan_grace_s);
        if (r < 0)
                return r;
        r = lookup(l, "REGISTRY_AUTH_FILE", &cfg->registry_auth_file);
        if (r < 0)
                return r;
        if (cfg->registry_auth_file && access(cfg->registry_auth_file, R_OK) < 0)
                return fail(l, "REGISTRY_AUTH_FILE", "cannot read \"%s\": %s", shown(cfg->registry_auth_file, tmp),
                            strerror(errno));
        r = lookup(l, "ALLOWED_IMAGE_REGISTRIES", &v);
        if (r < 0 || !v)
                return r;
        for (tok = strtok_r(v, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                char **grown, *t = util_strstrip(tok);
                if (!*t)
                        continue;
                if (strpbrk(t, " \t@") || has_ctl_or_space(t)) {
                        r = fail(l, "ALLOWED_IMAGE_REGISTRIES", "invalid registry \"%s\"", shown(t, tmp));
                        break;
                }
                grown = realloc(cfg->allowed_registries, (cfg->n_allowed_registries + 1) * sizeof *grown);
                if (!grown || !(grown[cfg->n_allowed_registries] = strdup(t))) {
                        if (grown)
                                cfg->allowed_registries = grown;
                        r = -ENOMEM;
                        break;
                }
                cfg->allowed_registries = grown;
                cfg->n_allowed_registries++;
        }
        free(v);
        return r;
}

static void free_secret(char **v) {
        if (*v)
                explicit_bzero(*v, strlen(*v));
        free(*v);
        *v = NULL;
}

static int lookup_uint(loader *l, const char *key, int64_t min, int64_t max, unsigned *ret) {
        char *v = NULL, tmp[72];
        int64_t n;
        int r = lookup(l, key, &v);

        if (r < 0 || !v)
                return r;
        if (util_parse_i64(v, min, max, &n) < 0)
                r = fail(l, key, "must be an integer from %lld to %lld, got \"%s\"", (long long)min, (long long)max,
                         shown(v, tmp));
        else
                *ret = (unsigned)n;
        free(v);
        return r;
}

/* Model sources: the same names the model commands read from the
 * environment, so that the .env file serves them too. */
static int load_models(loader *l, config *cfg) {
        static const char *const urls[] = { "HF_ENDPOINT", "S3_ENDPOINT" };
        char **url_fields[] = { &cfg->hf_endpoint, &cfg->s3_endpoint };
        char tmp[72];
        size_t i;
        int r = 0;

        for (i = 0; i < 2 && r == 0; i++) {
                r = lookup(l, urls[i], url_fields[i]);
                if (r == 0 && *url_fields[i] && strncasecmp(*url_fields[i], "http://", 7) &&
                    strncasecmp(*url_fields[i], "https://", 8))
                        r = fail(l, urls[i], "must be an http(s) URL, got \"%s\"", shown(*url_fields[i], tmp));
        }
        if (r == 0)
                r = lookup(l, "HF_TOKEN", &cfg->hf_token);
        if (r == 0)
                r = lookup(l, "S3_ACCESS_KEY", &cfg->s3_access_key);
        if (r == 0)
                r = lookup(l, "S3_SECRET_KEY", &cfg->s3_secret_key);
        if (r == 0)
                r = lookup(l, "S3_REGION", &cfg->s3_region);
        if (r == 0)
                r = lookup_uint(l, "MODEL_MAX_PARALLEL_FILES", 1, 64, &cfg->model_max_parallel_files);
        if (r == 0)
                r = lookup_uint(l, "MODEL_STALL_TIMEOUT", 1, 3600, &cfg->model_stall_timeout_s);
        if (r == 0)
                r = lookup_uint(l, "MODEL_RETRY_BASE_MS", 1, 60000, &cfg->model_retry_base_ms);
        return r;
}

/* Reads --env-file or the default .env into l->env. */
static int load_env_file(loader *l, config *cfg) {
        const char *path = l->src->env_file;
        const char *label = "--env-file";
        char msg[512];
        int r;

        if (!path) {
                path = l->src->default_env_file ? l->src->default_env_file : "./.env";
                label = ".env";
                if (!*path || access(path, F_OK) < 0)
                        return 0;
        }
        r = dotenv_load(path, &l->env, msg, sizeof msg);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                set_err(l->err, l->errlen, "%s: %s", label, msg);
                return -EINVAL;
        }
        cfg->env_file = strdup(path);
        if (!cfg->env_file)
                return -ENOMEM;
        if (l->env.n_invalid > 0) {
                cfg->env_invalid_lines = malloc(l->env.n_invalid * sizeof *cfg->env_invalid_lines);
                if (!cfg->env_invalid_lines)
                        return -ENOMEM;
                memcpy(cfg->env_invalid_lines, l->env.invalid_lines,
                       l->env.n_invalid * sizeof *cfg->env_invalid_lines);
                cfg->n_env_invalid_lines = l->env.n_invalid;
        }
        return 0;
}

int config_load(const config_source *src, config **ret_cfg, char *err, size_t errlen) {
        static const config_source defaults = { 0 };
        loader l = { .src = src ? src : &defaults, .err = err, .errlen = errlen };
        config *cfg;
        int r;

        cfg = calloc(1, sizeof *cfg);
        if (!cfg)
                return -ENOMEM;
        r = load_env_file(&l, cfg);
        if (r == 0)
                r = load_controller_url(&l, cfg);
        if (r == 0)
                r = load_token_and_id(&l, cfg);
        if (r == 0)
                r = load_misc(&l, cfg);
        if (r == 0)
                r = load_deploy(&l, cfg);
        if (r == 0)
                r = load_models(&l, cfg);
        if (r == -ENOMEM)
                set_err(err, errlen, "out of memory reading the configuration");
        if (r == 0) {
                *ret_cfg = cfg;
                cfg = NULL;
        }
        config_free(cfg);
        dotenv_done(&l.env);
        return r;
}

config *config_free(config *cfg) {
        size_t i;

        if (!cfg)
                return NULL;
        free(cfg->controller_ws_url);
        config_url_done(&cfg->ws);
        if (cfg->node_token)
                explicit_bzero(cfg->node_token, strlen(cfg->node_token));
        free(cfg->node_token);
        free(cfg->node_token_file);
        free(cfg->node_id);
        free(cfg->node_name);
        free(cfg->docker_socket);
        free(cfg->nvidia_smi_path);
        free(cfg->node_env);
        free(cfg->tls_ca_file);
        free(cfg->state_dir);
        free(cfg->model_cache_dir);
        free(cfg->disk_path);
        free(cfg->public_ip);
        for (i = 0; i < cfg->n_public_ip_urls; i++)
                free(cfg->public_ip_urls[i]);
        free(cfg->public_ip_urls);
        free(cfg->metrics_listen);
        free(cfg->metrics_host);
        free(cfg->env_file);
        free(cfg->env_invalid_lines);
        free(cfg->deploy_gpu_mode);
        free(cfg->deploy_bind_ip);
        free(cfg->deploy_endpoint_host);
        free(cfg->registry_auth_file);
        free(cfg->hf_endpoint);
        free_secret(&cfg->hf_token);
        free(cfg->s3_endpoint);
        free_secret(&cfg->s3_access_key);
        free_secret(&cfg->s3_secret_key);
        free(cfg->s3_region);
        for (i = 0; i < cfg->n_allowed_registries; i++)
                free(cfg->allowed_registries[i]);
        free(cfg->allowed_registries);
        free(cfg);
        return NULL;
}

json_t *config_to_json(const config *cfg) {
        static const char *const levels[] = { "debug", "info", "warn", "error" };
        json_t *o = json_object(), *urls = json_array();
        size_t i;
        int bad = 0;

        if (!o || !urls)
                goto fail;
        for (i = 0; i < cfg->n_public_ip_urls; i++)
                bad |= json_array_append_new(urls, json_string(cfg->public_ip_urls[i]));
        bad |= json_object_set_new(o, "CONTROLLER_WS_URL", str_or_null(cfg->controller_ws_url));
        bad |= json_object_set_new(o, "NODE_TOKEN", json_string("[redacted]"));
        bad |= json_object_set_new(o, "NODE_TOKEN_FILE", str_or_null(cfg->node_token_file));
        bad |= json_object_set_new(o, "NODE_ID", str_or_null(cfg->node_id));
        bad |= json_object_set_new(o, "NODE_NAME", str_or_null(cfg->node_name));
        bad |= json_object_set_new(o, "HEARTBEAT_INTERVAL", json_integer(cfg->heartbeat_interval_ms));
        bad |= json_object_set_new(o, "METRICS_INTERVAL", json_integer(cfg->metrics_interval_ms));
        bad |= json_object_set_new(o, "RECONNECT_DELAY", json_integer(cfg->reconnect_delay_ms));
        bad |= json_object_set_new(o, "RECONNECT_DELAY_MAX", json_integer(cfg->reconnect_delay_max_ms));
        bad |= json_object_set_new(o, "DOCKER_SOCKET", str_or_null(cfg->docker_socket));
        bad |= json_object_set_new(o, "NVIDIA_SMI_PATH", str_or_null(cfg->nvidia_smi_path));
        bad |= json_object_set_new(
                o, "LOG_LEVEL",
                json_string((unsigned)cfg->log_level < 4 ? levels[cfg->log_level] : "info"));
        bad |= json_object_set_new(o, "LOG_FORMAT",
                                   json_string(cfg->log_format == LOG_FORMAT_JSON ? "json" : "text"));
        bad |= json_object_set_new(o, "NODE_ENV", str_or_null(cfg->node_env));
        bad |= json_object_set_new(o, "TLS_CA_FILE", str_or_null(cfg->tls_ca_file));
        bad |= json_object_set_new(o, "TLS_INSECURE", json_boolean(cfg->tls_insecure));
        bad |= json_object_set_new(o, "STATE_DIR", str_or_null(cfg->state_dir));
        bad |= json_object_set_new(o, "MODEL_CACHE_DIR", str_or_null(cfg->model_cache_dir));
        bad |= json_object_set_new(o, "DISK_PATH", str_or_null(cfg->disk_path));
        bad |= json_object_set_new(o, "PUBLIC_IP", str_or_null(cfg->public_ip));
        bad |= json_object_set_new(o, "PUBLIC_IP_URLS", urls);
        urls = NULL;
        bad |= json_object_set_new(o, "METRICS_LISTEN", str_or_null(cfg->metrics_listen));
        bad |= json_object_set_new(o, "MAX_CONCURRENT_COMMANDS", json_integer(cfg->max_concurrent_commands));
        bad |= json_object_set_new(o, "DEPLOY_GPU_MODE", str_or_null(cfg->deploy_gpu_mode));
        bad |= json_object_set_new(o, "DEPLOY_NETWORK", json_string(cfg->deploy_host_network ? "host" : "bridge"));
        bad |= json_object_set_new(o, "DEPLOY_BIND_IP", str_or_null(cfg->deploy_bind_ip));
        bad |= json_object_set_new(o, "DEPLOY_ENDPOINT_HOST", str_or_null(cfg->deploy_endpoint_host));
        bad |= json_object_set_new(o, "DEPLOY_HEALTH_TIMEOUT", json_integer(cfg->deploy_health_timeout_s));
        bad |= json_object_set_new(o, "DEPLOY_ORPHAN_GRACE", json_integer(cfg->deploy_orphan_grace_s));
        bad |= json_object_set_new(o, "REGISTRY_AUTH_FILE", str_or_null(cfg->registry_auth_file));
        bad |= json_object_set_new(o, "HF_ENDPOINT", str_or_null(cfg->hf_endpoint));
        bad |= json_object_set_new(o, "HF_TOKEN", cfg->hf_token ? json_string("[redacted]") : json_null());
        bad |= json_object_set_new(o, "S3_ENDPOINT", str_or_null(cfg->s3_endpoint));
        bad |= json_object_set_new(o, "S3_ACCESS_KEY", cfg->s3_access_key ? json_string("[redacted]") : json_null());
        bad |= json_object_set_new(o, "S3_SECRET_KEY", cfg->s3_secret_key ? json_string("[redacted]") : json_null());
        bad |= json_object_set_new(o, "S3_REGION", str_or_null(cfg->s3_region));
        {
                json_t *regs = json_array();
                for (i = 0; regs && i < cfg->n_allowed_registries; i++)
                        json_array_append_new(regs, json_string(cfg->allowed_registries[i]));
                bad |= json_object_set_new(o, "ALLOWED_IMAGE_REGISTRIES", regs ? regs : json_null());
        }
        if (bad)
                goto fail;
        return o;
fail:
        json_decref(urls);
        json_decref(o);
        return NULL;
}
