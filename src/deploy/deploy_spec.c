/* deploy_spec: see deploy_spec.h. */
#include "deploy/deploy_spec.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>

#include "core/util.h"
#include "models/model_cache.h"

#define MAX_ENV 256
#define MAX_STR 4096
#define MAX_IMAGE 512

static int bad(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(char *err, size_t errlen, const char *fmt, ...) {
        va_list ap;

        if (err && errlen) {
                va_start(ap, fmt);
                vsnprintf(err, errlen, fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

static const char *str(const json_t *o, const char *key) {
        return json_string_value(json_object_get(o, key));
}

static bool has_ctl(const char *s) {
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || *s == 0x7f)
                        return true;
        return false;
}

/* A JSON string without NUL bytes, control characters and at most max bytes. */
static bool plain_string(const json_t *v, size_t max) {
        const char *s = json_string_value(v);
        size_t n;

        if (!s)
                return false;
        n = json_string_length(v);
        return n == strlen(s) && n <= max && !has_ctl(s);
}

int deploy_gpu_mode_parse(const char *s, deploy_gpu_mode *ret) {
        if (!s)
                return -EINVAL;
        if (!strcasecmp(s, "device-requests"))
                *ret = DEPLOY_GPU_DEVICE_REQUESTS;
        else if (!strcasecmp(s, "cdi"))
                *ret = DEPLOY_GPU_CDI;
        else if (!strcasecmp(s, "nvidia-runtime"))
                *ret = DEPLOY_GPU_NVIDIA_RUNTIME;
        else
                return -EINVAL;
        return 0;
}

const char *deploy_gpu_mode_name(deploy_gpu_mode m) {
        switch (m) {
        case DEPLOY_GPU_CDI:
                return "cdi";
        case DEPLOY_GPU_NVIDIA_RUNTIME:
                return "nvidia-runtime";
        default:
                return "device-requests";
        }
}

/* ---- validation ---- */

/* Docker's container name rule: [a-zA-Z0-9][a-zA-Z0-9_.-]+ (one character
 * is accepted too), at most 128 bytes here. */
static bool container_name_ok(const char *s) {
        size_t i, n = strlen(s);

        if (n == 0 || n > 128 || !isalnum((unsigned char)s[0]))
                return false;
        for (i = 1; i < n; i++)
                if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
                        return false;
        return true;
}

/* An image reference: [a-z0-9] start, then the characters a reference may
 * contain (name components, ':' tag or port, '@' digest, '/'). */
static bool image_ok(const char *s) {
        size_t i, n = strlen(s);

        if (n == 0 || n > MAX_IMAGE || !isalnum((unsigned char)s[0]))
                return false;
        for (i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                if (!isalnum(c) && !strchr("._-/:@+", c))
                        return false;
        }
        return !strstr(s, "//") && s[n - 1] != '/' && s[n - 1] != ':';
}

static bool env_name_ok(const char *s) {
        size_t i;

        if (!s[0] || !(isalpha((unsigned char)s[0]) || s[0] == '_') || strlen(s) > 256)
                return false;
        for (i = 1; s[i]; i++)
                if (!isalnum((unsigned char)s[i]) && s[i] != '_')
                        return false;
        return true;
}

static int check_env(const json_t *env, const char *field, char *err, size_t errlen) {
        const char *k;
        json_t *v;

        if (!env)
                return 0;
        if (!json_is_object(env))
                return bad(err, errlen, "%s must be an object of strings", field);
        if (json_object_size(env) > MAX_ENV)
                return bad(err, errlen, "%s has more than %d variables", field, MAX_ENV);
        json_object_foreach ((json_t *)env, k, v) {
                const char *s = json_string_value(v);
                if (!env_name_ok(k))
                        return bad(err, errlen, "%s: invalid variable name", field);
                if (!s || json_string_length(v) != strlen(s) || json_string_length(v) > 65536)
                        return bad(err, errlen, "%s.%s must be a string without NUL bytes", field, k);
        }
        return 0;
}

static int check_health(const json_t *d, char *err, size_t errlen, const char *prefix) {
        const json_t *p = json_object_get(d, "healthCheckPath"), *i = json_object_get(d, "healthCheckInterval");

        if (p && !json_is_null(p)) {
                const char *s = json_string_value(p);
                if (!plain_string(p, 1024) || s[0] != '/' || strchr(s, ' ') || strchr(s, '#'))
                        return bad(err, errlen, "%shealthCheckPath must be a path starting with /", prefix);
        }
        if (i && !json_is_null(i) &&
            (!json_is_number(i) || json_number_value(i) < 5 || json_number_value(i) > 86400))
                return bad(err, errlen, "%shealthCheckInterval must be a number of seconds, at least 5", prefix);
        return 0;
}

static int check_gpu(const json_t *g, const char *field, char *err, size_t errlen) {
        const char *s;

        if (!g || json_is_null(g))
                return 0;
        if (json_is_integer(g) && json_integer_value(g) >= 0 && json_integer_value(g) < 1024)
                return 0;
        s = json_string_value(g);
        if (!s || !plain_string(g, 128) || strchr(s, ',') || strchr(s, ' '))
                return bad(err, errlen, "%s must be a GPU index (\"0\") or a GPU UUID", field);
        return 0;
}

int deploy_create_validate(const json_t *data, char *err, size_t errlen) {
        static const char *const req[] = { "modelId", "modelPath", "containerName", "containerImage" };
        const json_t *port = json_object_get(data, "containerPort"), *mem = json_object_get(data, "gpuMemoryLimit");
        size_t i;
        int r;

        for (i = 0; i < sizeof req / sizeof *req; i++) {
                const json_t *v = json_object_get(data, req[i]);
                if (!v)
                        return bad(err, errlen, "data.%s is required", req[i]);
                if (!plain_string(v, MAX_STR) || !json_string_length(v))
                        return bad(err, errlen, "data.%s must be a non-empty string", req[i]);
        }
        if (!container_name_ok(str(data, "containerName")))
                return bad(err, errlen, "data.containerName must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 128)");
        if (!image_ok(str(data, "containerImage")))
                return bad(err, errlen, "data.containerImage is not an image reference");
        if (!port)
                return bad(err, errlen, "data.containerPort is required");
        if (!json_is_integer(port) || json_integer_value(port) < 1024 || json_integer_value(port) > 65535)
                return bad(err, errlen, "data.containerPort must be an integer from 1024 to 65535");
        r = check_gpu(json_object_get(data, "gpuDeviceId"), "data.gpuDeviceId", err, errlen);
        if (r < 0)
                return r;
        if (mem && !json_is_null(mem) && (!json_is_number(mem) || json_number_value(mem) < 1024))
                return bad(err, errlen, "data.gpuMemoryLimit must be a number of MB, at least 1024");
        r = check_env(json_object_get(data, "environment"), "data.environment", err, errlen);
        if (r < 0)
                return r;
        return check_health(data, err, errlen, "data.");
}

int deploy_update_validate(const json_t *data, char *err, size_t errlen) {
        const json_t *c = json_object_get(data, "config"), *img;
        int r;

        if (!c)
                return bad(err, errlen, "data.config is required");
        if (!json_is_object(c) || json_object_size(c) == 0)
                return bad(err, errlen, "data.config must be a non-empty object");
        r = check_env(json_object_get(c, "environment"), "data.config.environment", err, errlen);
        if (r == 0)
                r = check_health(c, err, errlen, "data.config.");
        if (r == 0)
                r = check_gpu(json_object_get(c, "gpuDeviceId"), "data.config.gpuDeviceId", err, errlen);
        if (r < 0)
                return r;
        img = json_object_get(c, "containerImage");
        if (img && (!plain_string(img, MAX_IMAGE) || !image_ok(json_string_value(img))))
                return bad(err, errlen, "data.config.containerImage is not an image reference");
        if (!json_object_get(c, "environment") && !json_object_get(c, "healthCheckPath") &&
            !json_object_get(c, "healthCheckInterval") && !img && !json_object_get(c, "gpuDeviceId"))
                return bad(err, errlen,
                           "data.config has none of environment, healthCheckPath, healthCheckInterval, "
                           "containerImage, gpuDeviceId");
        return 0;
}

static int check_bool(const json_t *data, const char *key, char *err, size_t errlen) {
        const json_t *v = json_object_get(data, key);
        if (v && !json_is_boolean(v))
                return bad(err, errlen, "data.%s must be a boolean", key);
        return 0;
}

static int check_timeout(const json_t *data, int min, int max, char *err, size_t errlen) {
        const json_t *v = json_object_get(data, "timeout");
        if (v && (!json_is_number(v) || json_number_value(v) < min || json_number_value(v) > max))
                return bad(err, errlen, "data.timeout must be a number of seconds from %d to %d", min, max);
        return 0;
}

int deploy_stop_validate(const json_t *data, char *err, size_t errlen) {
        int r = check_bool(data, "force", err, errlen);
        return r < 0 ? r : check_timeout(data, 5, 300, err, errlen);
}

int deploy_restart_validate(const json_t *data, char *err, size_t errlen) {
        int r = check_bool(data, "preserveData", err, errlen);
        return r < 0 ? r : check_timeout(data, 1, 300, err, errlen);
}

int deploy_delete_validate(const json_t *data, char *err, size_t errlen) {
        int r = check_bool(data, "force", err, errlen);
        if (r == 0)
                r = check_bool(data, "removeVolumes", err, errlen);
        return r < 0 ? r : check_timeout(data, 1, 300, err, errlen);
}

int deploy_container_list_validate(const json_t *data, char *err, size_t errlen) {
        return check_bool(data, "all", err, errlen);
}

int deploy_container_logs_validate(const json_t *data, char *err, size_t errlen) {
        const json_t *t = json_object_get(data, "tail"), *s = json_object_get(data, "since");
        long long ms;

        if (t && (!json_is_integer(t) || json_integer_value(t) < 1 || json_integer_value(t) > 10000))
                return bad(err, errlen, "data.tail must be an integer from 1 to 10000");
        if (s && (!json_is_string(s) || deploy_time_parse(json_string_value(s), &ms) < 0))
                return bad(err, errlen, "data.since must be an ISO-8601 time");
        return 0;
}

/* ---- update ---- */

int deploy_spec_apply_update(const json_t *spec, const json_t *config, json_t **ret_spec, json_t **ret_applied,
                             bool *ret_recreate) {
        static const struct {
                const char *key;
                bool recreate;
        } fields[] = {
                { "environment", true },         { "containerImage", true },      { "gpuDeviceId", true },
                { "healthCheckPath", false },    { "healthCheckInterval", false },
        };
        json_t *s = json_deep_copy(spec), *applied = json_array();
        bool recreate = false;
        size_t i;

        if (!s || !applied)
                goto fail;
        for (i = 0; i < sizeof fields / sizeof *fields; i++) {
                json_t *v = json_object_get(config, fields[i].key);
                if (!v || json_equal(v, json_object_get(s, fields[i].key)))
                        continue;
                if (json_is_null(v)) {
                        if (!json_object_get(s, fields[i].key))
                                continue;
                        json_object_del(s, fields[i].key);
                } else if (json_object_set(s, fields[i].key, v) < 0)
                        goto fail;
                if (json_array_append_new(applied, json_string(fields[i].key)) < 0)
                        goto fail;
                recreate |= fields[i].recreate;
        }
        *ret_spec = s;
        *ret_applied = applied;
        *ret_recreate = recreate;
        return 0;
fail:
        json_decref(s);
        json_decref(applied);
        return -ENOMEM;
}

int deploy_spec_hash(const json_t *spec, char out[65]) {
        char *txt = json_dumps(spec, JSON_SORT_KEYS | JSON_COMPACT);
        unsigned char md[32];
        unsigned len = 0, i;

        if (!txt)
                return -ENOMEM;
        if (!EVP_Digest(txt, strlen(txt), md, &len, EVP_sha256(), NULL)) {
                free(txt);
                return -EIO;
        }
        free(txt);
        for (i = 0; i < 32; i++)
                snprintf(out + 2 * i, 3, "%02x", md[i]);
        return 0;
}

/* ---- the model ---- */

int deploy_model_source(const char *model_path, const char *model_id, deploy_model_kind *ret_kind,
                        json_t **ret_cache_data, char *err, size_t errlen) {
        char key[MODEL_CACHE_KEY_NAME_MAX], target[MODEL_CACHE_KEY_NAME_MAX + 16], *tmp = NULL;
        const char *source = NULL, *source_path = NULL, *version = NULL;
        deploy_model_kind kind;
        json_t *d = NULL;
        int r = 0;

        if (!strncasecmp(model_path, "s3://", 5)) {
                const char *b = model_path + 5;
                if (!*b || *b == '/')
                        return bad(err, errlen, "data.modelPath: s3:// needs a bucket");
                kind = DEPLOY_MODEL_S3;
                source = "minio";
                tmp = strdup(b);
                if (!tmp)
                        return -ENOMEM;
                while (*tmp && tmp[strlen(tmp) - 1] == '/')
                        tmp[strlen(tmp) - 1] = 0;
                source_path = tmp;
        } else if (!strncasecmp(model_path, "hf://", 5)) {
                char *at, *slash;
                kind = DEPLOY_MODEL_HF;
                source = "huggingface";
                tmp = strdup(model_path + 5);
                if (!tmp)
                        return -ENOMEM;
                at = strchr(tmp, '@');
                if (at) {
                        *at = 0;
                        version = at + 1;
                }
                slash = strchr(tmp, '/');
                if (!slash || slash == tmp || !slash[1] || strchr(slash + 1, '/') || (version && !*version)) {
                        free(tmp);
                        return bad(err, errlen, "data.modelPath: hf:// must be hf://org/name[@revision]");
                }
                source_path = tmp;
        } else if (!strncasecmp(model_path, "http://", 7) || !strncasecmp(model_path, "https://", 8)) {
                const char *h = strstr(model_path, "://") + 3;
                if (!*h || *h == '/')
                        return bad(err, errlen, "data.modelPath: the URL has no host");
                kind = DEPLOY_MODEL_HTTP;
                source = "http";
                source_path = model_path;
        } else if (strstr(model_path, "://")) {
                return bad(err, errlen, "data.modelPath: unknown scheme (s3://, hf://, http(s):// or a cache path)");
        } else {
                kind = DEPLOY_MODEL_LOCAL;
        }
        if (kind != DEPLOY_MODEL_LOCAL && ret_cache_data) {
                model_cache_key_name(model_id, key);
                snprintf(target, sizeof target, "deployments/%s", key);
                d = json_pack("{s:s,s:s,s:s}", "source", source, "sourcePath", source_path, "targetPath", target);
                if (d && version && json_object_set_new(d, "version", json_string(version)) < 0)
                        json_decref(d), d = NULL;
                if (!d)
                        r = -ENOMEM;
        }
        free(tmp);
        if (r < 0)
                return r;
        *ret_kind = kind;
        if (ret_cache_data)
                *ret_cache_data = d;
        return 0;
}

/* ---- images ---- */

int deploy_image_registry(const char *image, char *out, size_t size) {
        const char *slash = strchr(image, '/');
        size_t n, i;

        if (!*image || strlen(image) > MAX_IMAGE)
                return -EINVAL;
        n = slash ? (size_t)(slash - image) : 0;
        if (slash && (memchr(image, '.', n) || memchr(image, ':', n) || (n == 9 && !strncmp(image, "localhost", 9)))) {
                if (n + 1 > size)
                        return -EINVAL;
                for (i = 0; i < n; i++)
                        out[i] = (char)tolower((unsigned char)image[i]);
                out[n] = 0;
                return 0;
        }
        if (size < 10)
                return -EINVAL;
        strcpy(out, "docker.io");
        return 0;
}

bool deploy_image_allowed(const char *image, char *const *allowed, size_t n_allowed) {
        char reg[MAX_IMAGE + 1];
        size_t i;

        if (n_allowed == 0)
                return true;
        if (deploy_image_registry(image, reg, sizeof reg) < 0)
                return false;
        for (i = 0; i < n_allowed; i++) {
                const char *a = allowed[i];
                size_t n = strlen(a);
                while (n && a[n - 1] == '/')
                        n--;
                if (!n)
                        continue;
                if (!memchr(a, '/', n)) {
                        if ((strlen(reg) == n && !strncasecmp(reg, a, n)) ||
                            (!strcmp(reg, "docker.io") && n == 15 && !strncasecmp(a, "index.docker.io", n)))
                                return true;
                } else if (!strncmp(image, a, n) && image[n] == '/') {
                        return true;
                } else if (!strcmp(reg, "docker.io") && !strncasecmp(a, "docker.io/", 10)) {
                        /* docker.io/org matches the bare "org/name" form. */
                        const char *rest = a + 10;
                        size_t rn = n - 10;
                        if (!strncmp(image, rest, rn) && image[rn] == '/')
                                return true;
                }
        }
        return false;
}

/* ---- registry credentials ---- */

/* "https://host:port/v1/" -> "host:port", lowercased, into out. */
static void server_key(const char *k, char *out, size_t size) {
        const char *p = strstr(k, "://");
        size_t n, i;

        p = p ? p + 3 : k;
        n = strcspn(p, "/");
        if (n >= size)
                n = size - 1;
        for (i = 0; i < n; i++)
                out[i] = (char)tolower((unsigned char)p[i]);
        out[n] = 0;
}

int deploy_registry_auth_lookup(const json_t *config, const char *registry, char **ret_user, char **ret_password,
                                char **ret_token) {
        const json_t *auths = json_object_get(config, "auths"), *e = NULL, *v;
        const char *k;
        char key[300];
        char *user = NULL, *pass = NULL, *tok = NULL;
        unsigned char *dec = NULL;
        int r = -ENOENT;

        json_object_foreach ((json_t *)auths, k, v) {
                server_key(k, key, sizeof key);
                if (!strcasecmp(key, registry) ||
                    (!strcmp(registry, "docker.io") && (!strcmp(key, "index.docker.io") || !strcmp(key, "registry-1.docker.io")))) {
                        e = v;
                        break;
                }
        }
        if (!json_is_object(e))
                return -ENOENT;
        r = -EINVAL;
        if (json_string_value(json_object_get(e, "identitytoken")) &&
            *json_string_value(json_object_get(e, "identitytoken"))) {
                tok = strdup(json_string_value(json_object_get(e, "identitytoken")));
                r = tok ? 0 : -ENOMEM;
        } else if (json_string_value(json_object_get(e, "auth")) && *json_string_value(json_object_get(e, "auth"))) {
                const char *a = json_string_value(json_object_get(e, "auth"));
                size_t n = strlen(a);
                int len;
                char *colon;
                dec = malloc(n + 4);
                if (!dec)
                        return -ENOMEM;
                len = util_base64_decode(a, n, dec);
                if (len > 0) {
                        dec[len] = 0;
                        colon = memchr(dec, ':', (size_t)len);
                        if (colon && strlen((char *)dec) == (size_t)len) {
                                *colon = 0;
                                user = strdup((char *)dec);
                                pass = strdup(colon + 1);
                                r = user && pass ? 0 : -ENOMEM;
                        }
                }
                explicit_bzero(dec, n + 4);
                free(dec);
        } else if (json_string_value(json_object_get(e, "username")) &&
                   json_string_value(json_object_get(e, "password"))) {
                user = strdup(json_string_value(json_object_get(e, "username")));
                pass = strdup(json_string_value(json_object_get(e, "password")));
                r = user && pass ? 0 : -ENOMEM;
        }
        if (r < 0) {
                if (pass)
                        explicit_bzero(pass, strlen(pass));
                free(user);
                free(pass);
                free(tok);
                return r;
        }
        *ret_user = user;
        *ret_password = pass;
        *ret_token = tok;
        return 0;
}

/* ---- the container ---- */

json_t *deploy_container_config(const json_t *spec, const deploy_container_opts *o) {
        json_t *c = NULL, *env = NULL, *labels = NULL, *hc = NULL, *v;
        const json_t *user_env = json_object_get(spec, "environment");
        json_int_t port = json_integer_value(json_object_get(spec, "containerPort"));
        char pk[16], hp[16], *line = NULL;
        const char *k;
        int bad_ = 0;

        c = json_object();
        env = json_array();
        labels = json_object();
        hc = json_object();
        if (!c || !env || !labels || !hc)
                goto fail;
        snprintf(pk, sizeof pk, "%lld/tcp", (long long)port);
        json_object_foreach ((json_t *)user_env, k, v) {
                /* Ours win: the model's location is not the controller's to move. */
                if (!strcmp(k, "MODEL_PATH") || (o->gpu_uuid && !strcmp(k, "NVIDIA_VISIBLE_DEVICES")))
                        continue;
                if (asprintf(&line, "%s=%s", k, json_string_value(v)) < 0) {
                        line = NULL;
                        goto fail;
                }
                bad_ |= json_array_append_new(env, json_string(line));
                free(line);
                line = NULL;
        }
        if (o->model_host_path) {
                if (asprintf(&line, "MODEL_PATH=%s",
                             o->model_container_path ? o->model_container_path : DEPLOY_MODEL_MOUNT) < 0) {
                        line = NULL;
                        goto fail;
                }
                bad_ |= json_array_append_new(env, json_string(line));
                free(line);
                line = NULL;
        }
        if (json_string_value(json_object_get(spec, "modelId")) &&
            asprintf(&line, "MODEL_ID=%s", json_string_value(json_object_get(spec, "modelId"))) >= 0) {
                if (!json_object_get(user_env, "MODEL_ID"))
                        bad_ |= json_array_append_new(env, json_string(line));
                free(line);
                line = NULL;
        }
        if (!o->gpu_uuid) {
                /* A CPU deployment: an image that asks for all GPUs (CUDA
                 * images set NVIDIA_VISIBLE_DEVICES=all) must not get them
                 * from an nvidia default runtime. */
                if (!json_object_get(user_env, "NVIDIA_VISIBLE_DEVICES"))
                        bad_ |= json_array_append_new(env, json_string("NVIDIA_VISIBLE_DEVICES=void"));
        } else if (o->gpu_mode == DEPLOY_GPU_NVIDIA_RUNTIME) {
                if (asprintf(&line, "NVIDIA_VISIBLE_DEVICES=%s", o->gpu_uuid) < 0) {
                        line = NULL;
                        goto fail;
                }
                bad_ |= json_array_append_new(env, json_string(line));
                bad_ |= json_array_append_new(env, json_string("NVIDIA_DRIVER_CAPABILITIES=compute,utility"));
                free(line);
                line = NULL;
        }

        bad_ |= json_object_set_new(labels, DEPLOY_LABEL_MANAGED, json_string("true"));
        bad_ |= json_object_set_new(labels, DEPLOY_LABEL_DEPLOYMENT, json_string(o->deployment_id));
        bad_ |= json_object_set_new(labels, DEPLOY_LABEL_NODE, json_string(o->node_id));
        bad_ |= json_object_set_new(labels, DEPLOY_LABEL_MODEL,
                                    json_string(json_string_value(json_object_get(spec, "modelId"))));
        if (o->gpu_uuid)
                bad_ |= json_object_set_new(labels, DEPLOY_LABEL_GPU, json_string(o->gpu_uuid));
        if (o->spec_hash)
                bad_ |= json_object_set_new(labels, DEPLOY_LABEL_SPEC, json_string(o->spec_hash));

        bad_ |= json_object_set_new(hc, "RestartPolicy", json_pack("{s:s,s:i}", "Name", "unless-stopped",
                                                                    "MaximumRetryCount", 0));
        bad_ |= json_object_set_new(hc, "Privileged", json_false());
        bad_ |= json_object_set_new(hc, "SecurityOpt", json_pack("[s]", "no-new-privileges"));
        if (o->model_host_path) {
                line = NULL;
                if (asprintf(&line, "%s:%s:ro", o->model_host_path, DEPLOY_MODEL_MOUNT) < 0) {
                        line = NULL;
                        goto fail;
                }
                bad_ |= json_object_set_new(hc, "Binds", json_pack("[s]", line));
                free(line);
                line = NULL;
        }
        if (o->host_network) {
                bad_ |= json_object_set_new(hc, "NetworkMode", json_string("host"));
        } else {
                if (o->host_port > 0)
                        snprintf(hp, sizeof hp, "%d", o->host_port);
                else
                        hp[0] = 0;
                bad_ |= json_object_set_new(
                        hc, "PortBindings",
                        json_pack("{s:[{s:s,s:s}]}", pk, "HostIp", o->bind_ip ? o->bind_ip : "", "HostPort", hp));
                bad_ |= json_object_set_new(c, "ExposedPorts", json_pack("{s:{}}", pk));
        }
        if (o->gpu_uuid) {
                switch (o->gpu_mode) {
                case DEPLOY_GPU_DEVICE_REQUESTS:
                        bad_ |= json_object_set_new(
                                hc, "DeviceRequests",
                                json_pack("[{s:s,s:i,s:[s],s:[[s,s,s]]}]", "Driver", "nvidia", "Count", 0,
                                          "DeviceIDs", o->gpu_uuid, "Capabilities", "gpu", "utility", "compute"));
                        break;
                case DEPLOY_GPU_CDI:
                        if (asprintf(&line, "nvidia.com/gpu=%s", o->gpu_uuid) < 0) {
                                line = NULL;
                                goto fail;
                        }
                        if (o->podman)
                                bad_ |= json_object_set_new(hc, "Devices",
                                                            json_pack("[{s:s,s:s,s:s}]", "PathOnHost", line,
                                                                      "PathInContainer", "", "CgroupPermissions",
                                                                      ""));
                        else
                                bad_ |= json_object_set_new(hc, "DeviceRequests",
                                                            json_pack("[{s:s,s:[s]}]", "Driver", "cdi",
                                                                      "DeviceIDs", line));
                        free(line);
                        line = NULL;
                        break;
                case DEPLOY_GPU_NVIDIA_RUNTIME:
                        bad_ |= json_object_set_new(hc, "Runtime", json_string("nvidia"));
                        break;
                }
        }
        bad_ |= json_object_set_new(c, "Image", json_string(json_string_value(json_object_get(spec, "containerImage"))));
        bad_ |= json_object_set_new(c, "Env", env);
        env = NULL;
        bad_ |= json_object_set_new(c, "Labels", labels);
        labels = NULL;
        bad_ |= json_object_set_new(c, "HostConfig", hc);
        hc = NULL;
        if (bad_)
                goto fail;
        return c;
fail:
        free(line);
        json_decref(env);
        json_decref(labels);
        json_decref(hc);
        json_decref(c);
        return NULL;
}

/* ---- container info ---- */

static const char *status_of(const char *state) {
        if (!state)
                return "stopped";
        if (!strcmp(state, "running") || !strcmp(state, "restarting") || !strcmp(state, "paused"))
                return state;
        return "stopped";
}

static const char *name_of(const json_t *c) {
        const char *n = str(c, "Name");
        if (!n || !*n) /* lists: Names (Podman also sends an empty Name) */
                n = json_string_value(json_array_get(json_object_get(c, "Names"), 0));
        if (n && n[0] == '/')
                n++;
        return n ? n : "";
}

/* Ports of an inspect reply (NetworkSettings.Ports) or of a list entry
 * (Ports [{PrivatePort, PublicPort, Type}]) as {"8000": 32768}. */
static json_t *ports_of(const json_t *c, bool inspect) {
        json_t *out = json_object(), *v;
        const char *k;
        size_t i;

        if (!out)
                return NULL;
        if (inspect) {
                json_object_foreach (json_object_get(json_object_get(c, "NetworkSettings"), "Ports"), k, v) {
                        const char *hp = str(json_array_get(v, 0), "HostPort");
                        char key[16];
                        long long n;
                        if (!hp || sscanf(hp, "%lld", &n) != 1 || n <= 0)
                                continue;
                        snprintf(key, sizeof key, "%.*s", (int)strcspn(k, "/"), k);
                        json_object_set_new(out, key, json_integer(n));
                }
        } else {
                json_array_foreach (json_object_get(c, "Ports"), i, v) {
                        json_int_t pp = json_integer_value(json_object_get(v, "PrivatePort"));
                        json_int_t pub = json_integer_value(json_object_get(v, "PublicPort"));
                        char key[24];
                        if (pp <= 0 || pub <= 0)
                                continue;
                        snprintf(key, sizeof key, "%lld", (long long)pp);
                        json_object_set_new(out, key, json_integer(pub));
                }
        }
        return out;
}

json_t *deploy_container_info(const json_t *c, bool inspect) {
        const json_t *state = json_object_get(c, "State"), *cfg = json_object_get(c, "Config");
        const json_t *labels = inspect ? json_object_get(cfg, "Labels") : json_object_get(c, "Labels");
        char iso[25];
        json_t *o, *ports;
        const char *id = str(c, "Id"), *image;
        long long ms;

        if (!json_is_object(c) || !id)
                return NULL;
        image = inspect ? str(cfg, "Image") : str(c, "Image");
        o = json_pack("{s:s,s:s,s:s,s:s}", "containerId", id, "containerName", name_of(c), "image",
                      image ? image : "", "status",
                      status_of(inspect ? str(state, "Status") : json_is_string(state) ? json_string_value(state)
                                                                                       : NULL));
        if (!o)
                return NULL;
        if (inspect && json_is_true(json_object_get(state, "Paused")))
                json_object_set_new(o, "status", json_string("paused"));
        if (inspect && json_is_true(json_object_get(state, "Restarting")))
                json_object_set_new(o, "status", json_string("restarting"));
        /* Created: ISO in inspect, Unix seconds in lists. */
        if (inspect && deploy_time_parse(str(c, "Created"), &ms) == 0) {
                util_iso_ms(ms, iso);
                json_object_set_new(o, "createdAt", json_string(iso));
        } else if (!inspect && json_is_integer(json_object_get(c, "Created"))) {
                util_iso_ms((int64_t)json_integer_value(json_object_get(c, "Created")) * 1000, iso);
                json_object_set_new(o, "createdAt", json_string(iso));
        }
        if (inspect && deploy_time_parse(str(state, "StartedAt"), &ms) == 0) {
                util_iso_ms(ms, iso);
                json_object_set_new(o, "startedAt", json_string(iso));
        } else if (!inspect && json_is_integer(json_object_get(c, "StartedAt")) &&
                   json_integer_value(json_object_get(c, "StartedAt")) > 0) {
                /* Podman's list entries carry StartedAt in Unix seconds. */
                util_iso_ms((int64_t)json_integer_value(json_object_get(c, "StartedAt")) * 1000, iso);
                json_object_set_new(o, "startedAt", json_string(iso));
        }
        ports = ports_of(c, inspect);
        if (ports && json_object_size(ports))
                json_object_set_new(o, "ports", ports);
        else
                json_decref(ports);
        if (inspect) {
                const char *g = str(labels, DEPLOY_LABEL_GPU);
                json_object_set_new(o, "labels", json_is_object(labels) ? json_deep_copy(labels) : json_object());
                json_object_set_new(o, "gpuDeviceIds", g ? json_pack("[s]", g) : json_array());
                json_object_set_new(o, "exitCode", json_integer(json_integer_value(json_object_get(state, "ExitCode"))));
                json_object_set_new(o, "restartCount",
                                    json_integer(json_integer_value(json_object_get(c, "RestartCount"))));
        }
        return o;
}

int deploy_container_state_parse(const json_t *inspect, int container_port, deploy_container_state *ret) {
        const json_t *state = json_object_get(inspect, "State"), *ports;
        deploy_container_state s = { 0 };
        char key[16];
        long long ms;

        if (!json_is_object(inspect) || !json_is_object(state))
                return -EINVAL;
        s.running = json_is_true(json_object_get(state, "Running"));
        s.restarting = json_is_true(json_object_get(state, "Restarting"));
        s.exit_code = json_integer_value(json_object_get(state, "ExitCode"));
        s.restart_count = json_integer_value(json_object_get(inspect, "RestartCount"));
        if (deploy_time_parse(str(state, "StartedAt"), &ms) == 0)
                s.started_ms = ms;
        if (str(state, "Error"))
                util_strlcpy(s.error, str(state, "Error"), sizeof s.error);
        snprintf(key, sizeof key, "%d/tcp", container_port);
        ports = json_object_get(json_object_get(json_object_get(inspect, "NetworkSettings"), "Ports"), key);
        if (json_is_array(ports)) {
                size_t i;
                json_t *b;
                json_array_foreach (ports, i, b) {
                        const char *hp = str(b, "HostPort");
                        int n;
                        if (hp && sscanf(hp, "%d", &n) == 1 && n > 0 && n < 65536) {
                                s.host_port = n;
                                break;
                        }
                }
        }
        *ret = s;
        return 0;
}

/* ---- time ---- */

static int digits(const char *s, int n, int *ret) {
        int v = 0, i;
        for (i = 0; i < n; i++) {
                if (!isdigit((unsigned char)s[i]))
                        return -EINVAL;
                v = v * 10 + (s[i] - '0');
        }
        *ret = v;
        return 0;
}

int deploy_time_parse(const char *s, long long *ret_ms) {
        int Y, M, D, h, m, sec, ms = 0, off = 0;
        const char *p;
        struct tm tm = { 0 };
        long long t;

        if (!s || strlen(s) < 20)
                return -EINVAL;
        if (digits(s, 4, &Y) < 0 || s[4] != '-' || digits(s + 5, 2, &M) < 0 || s[7] != '-' ||
            digits(s + 8, 2, &D) < 0 || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
            digits(s + 11, 2, &h) < 0 || s[13] != ':' || digits(s + 14, 2, &m) < 0 || s[16] != ':' ||
            digits(s + 17, 2, &sec) < 0)
                return -EINVAL;
        if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
                return -EINVAL;
        p = s + 19;
        if (*p == '.') {
                int n = 0;
                p++;
                if (!isdigit((unsigned char)*p))
                        return -EINVAL;
                for (; isdigit((unsigned char)*p); p++, n++)
                        if (n < 3)
                                ms = ms * 10 + (*p - '0');
                for (; n < 3; n++)
                        ms *= 10;
        }
        if (*p == 'Z' || *p == 'z') {
                p++;
        } else if (*p == '+' || *p == '-') {
                int oh, om;
                if (digits(p + 1, 2, &oh) < 0 || p[3] != ':' || digits(p + 4, 2, &om) < 0 || oh > 23 || om > 59)
                        return -EINVAL;
                off = (oh * 60 + om) * 60 * (*p == '-' ? -1 : 1);
                p += 6;
        } else {
                return -EINVAL;
        }
        if (*p)
                return -EINVAL;
        if (Y < 1970)
                return -ERANGE; /* Docker's zero time: never started */
        tm.tm_year = Y - 1900;
        tm.tm_mon = M - 1;
        tm.tm_mday = D;
        tm.tm_hour = h;
        tm.tm_min = m;
        tm.tm_sec = sec;
        t = (long long)timegm(&tm);
        *ret_ms = (t - off) * 1000 + ms;
        return 0;
}

/* ---- status ---- */

bool deploy_status_transition_ok(const char *from, const char *to) {
        static const struct {
                const char *from, *to;
        } ok[] = {
                { "queued", "starting" },     { "queued", "failed" },       { "starting", "running" },
                { "starting", "failed" },     { "running", "stopping" },    { "running", "restarting" },
                { "running", "failed" },      { "stopping", "stopped" },    { "stopped", "starting" },
                { "failed", "starting" },     { "restarting", "running" },  { "restarting", "failed" },
        };
        size_t i;

        if (!from || !*from)
                return true;
        for (i = 0; i < sizeof ok / sizeof *ok; i++)
                if (!strcmp(ok[i].from, from) && !strcmp(ok[i].to, to))
                        return true;
        return false;
}
