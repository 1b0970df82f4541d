#include "models/model_cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/util.h"
#include "models/model_cache.h"
#include "models/model_fetch.h"
#include "models/model_hf.h"
#include "models/model_s3.h"

#define ESTIMATE_DOWNLOAD_S 300
#define PROGRESS_MS 1000
#define MAX_FIELD 4096
#define MAX_SECRET 16384
#define MAX_FILES_SPEC 10000
#define MAX_PATTERNS 256
#define MAX_S3_OBJECTS 100000
#define MAX_S3_PAGES 1000
#define MAX_LIST_BODY (64u * 1024 * 1024)
#define LIST_TIMEOUT_MS 120000
#define DEFAULT_REGION "us-east-1"

enum source { SRC_HF, SRC_S3, SRC_HTTP };

typedef struct dl dl;

/* Shared by the four handlers. */
typedef struct mctx {
        cmd_engine *e;
        loop *l;
        db *db;
        model_cache *cache;
        http_client *http;
        bool own_http;
        char *hf_endpoint, *hf_token, *s3_endpoint, *s3_access, *s3_secret, *s3_region, *ca_file;
        unsigned max_parallel, stall_s;
        uint64_t retry_base_ms;
        dl *dls; /* downloads in progress or waiting for a lock */
        model_ensure *ensures; /* every handle not yet freed */
        loop_timer *reap; /* stops the downloads nobody waits for any more */
} mctx;

/* A command or an ensure handle waiting for a download. */
typedef struct waiter {
        cmd_job *job;        /* a command, or NULL and: */
        model_ensure *ens;   /* a model_cmd_ensure() handle */
        bool cache;  /* model.cache (else model.download) */
        struct waiter *next;
} waiter;

/* A model_cmd_ensure() caller. Waiting: d set, a waiter in d->waiters.
 * Finished: d NULL, the result stored, timer armed to deliver it. Orphaned
 * (the engine was freed): m NULL, no timer, waits for model_ensure_cancel(). */
struct model_ensure {
        mctx *m;
        dl *d;
        model_ensure *next;  /* m->ensures */
        model_ensure_progress_cb progress;
        model_ensure_done_cb done;
        void *ud;
        loop_timer *timer;
        bool live;           /* model_cmd_ensure() has returned it */
        bool cancelled;      /* during a progress call: reaped after it */
        bool delivering;     /* inside done */
        bool finished;
        int r;
        char *path;
        uint64_t size;
        const char *code;
        char message[640];
};

/* One file of a download plan. */
typedef struct pfile {
        char *rel;       /* path inside the model (repository path, key below the prefix, data.files path) */
        char *url;
        char stage[80];  /* staging file name */
        uint64_t size;
        bool size_known;
        char sha256[65]; /* expected */
        char md5[33];
        char git_sha1[41];
        char etag[128];  /* S3 ETag, for the manifest */
        char blob[65];   /* Hugging Face blob name */
        bool skip;       /* already in place */
        bool size_from_manifest;
        bool link_only;  /* same blob as an earlier file */
        ssize_t fetch_idx;
        char got_sha256[65];
} pfile;

/* One download: the first command's parameters, the commands waiting for it. */
struct dl {
        mctx *m;
        dl *next;
        char *sig;      /* identical requests coalesce on this */
        char key[MODEL_CACHE_KEY_NAME_MAX + 4]; /* lock and staging name */
        enum source src;
        char *model_id, *source_path, *revision, *target_given, *target_rel;
        char *repo_dir; /* Hugging Face */
        char *endpoint, *bucket, *prefix; /* S3 */
        json_t *data;   /* the first command's data (own reference) */
        char *token, *userpwd; /* secrets */
        bool force;
        bool waiting_lock;
        int lock_fd, stage_fd;
        http_request *list_req;
        char *s3_token;
        unsigned s3_pages;
        char commit[41];
        pfile *files;
        size_t n_files, cap_files;
        uint64_t skipped_bytes;
        model_fetch *fetch;
        loop_timer *tick;
        waiter *waiters;
        unsigned in_cb; /* inside ensure progress callbacks */
        char *path;     /* the model's path on success */
        uint64_t started_ms;
};

static void dl_begin(dl *d);
static void dl_fail(dl *d, int r, const char *message, json_t *details);
static void fetch_done(model_fetch *f, int r, const char *message, void *userdata);
static bool manifest_complete(const json_t *mf);
static char *request_sig(const char *model_id, const json_t *data, const char *target_rel,
                         const char *revision, bool with_sha);

/* ---- small helpers ---- */

static int bad(char *err, size_t errlen, const char *msg) {
        if (errlen)
                snprintf(err, errlen, "%s", msg);
        return -EINVAL;
}

static const char *str_member(const json_t *o, const char *key) {
        return json_string_value(json_object_get(o, key));
}

/* Optional string: absent/null ok; else 1..max bytes without NUL. */
static bool opt_str_ok(const json_t *o, const char *key, size_t max) {
        json_t *v = json_object_get(o, key);

        if (!v || json_is_null(v))
                return true;
        return json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) <= max &&
               strlen(json_string_value(v)) == json_string_length(v);
}

static bool has_ctl(const char *s) {
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || *s == 0x7F)
                        return true;
        return false;
}

static bool url_ok(const char *u) {
        return u && strlen(u) <= MAX_FIELD &&
               (strncasecmp(u, "http://", 7) == 0 || strncasecmp(u, "https://", 8) == 0) &&
               !strpbrk(u, " \t\r\n") && !has_ctl(u);
}

static bool hex_ok(const char *s, size_t n) {
        size_t i;

        if (!s || strlen(s) != n)
                return false;
        for (i = 0; i < n; i++)
                if (!strchr("0123456789abcdefABCDEF", s[i]))
                        return false;
        return true;
}

static void lower(char *s) {
        for (; *s; s++)
                if (*s >= 'A' && *s <= 'Z')
                        *s = (char)(*s - 'A' + 'a');
}

static void sha256_hex(const void *data, size_t len, char out[65]) {
        static const char hex[] = "0123456789abcdef";
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0, i;

        EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
        for (i = 0; i < n && i < 32; i++) {
                out[2 * i] = hex[md[i] >> 4];
                out[2 * i + 1] = hex[md[i] & 15];
        }
        out[2 * i] = '\0';
}

static void free_secret(char **s) {
        if (*s) {
                explicit_bzero(*s, strlen(*s));
                free(*s);
                *s = NULL;
        }
}

static char *dup_or_null(const char *s) {
        return s ? strdup(s) : NULL;
}

static const char *source_name(enum source s) {
        return s == SRC_HF ? "huggingface" : s == SRC_S3 ? "minio" : "http";
}

/* Patterns: a string or an array of strings. */
static bool patterns_ok(const json_t *v) {
        size_t i;
        json_t *p;

        if (!v || json_is_null(v))
                return true;
        if (json_is_string(v))
                return json_string_length(v) > 0 && json_string_length(v) <= MAX_FIELD;
        if (!json_is_array(v) || json_array_size(v) > MAX_PATTERNS)
                return false;
        json_array_foreach(v, i, p) {
                if (!json_is_string(p) || json_string_length(p) == 0 || json_string_length(p) > MAX_FIELD)
                        return false;
        }
        return true;
}

static bool patterns_match(const json_t *v, const char *path) {
        size_t i;
        json_t *p;

        if (json_is_string(v))
                return model_hf_pattern_match(json_string_value(v), path);
        json_array_foreach(v, i, p) {
                if (model_hf_pattern_match(json_string_value(p), path))
                        return true;
        }
        return false;
}

/* The file name a URL is saved under: its last path segment. */
static char *url_basename(const char *url) {
        const char *p = strstr(url, "://"), *end, *slash;
        char *name;

        p = p ? p + 3 : url;
        end = p + strcspn(p, "?#");
        slash = NULL;
        for (const char *q = p; q < end; q++)
                if (*q == '/')
                        slash = q;
        if (!slash || slash + 1 >= end)
                return strdup("download");
        name = strndup(slash + 1, (size_t)(end - slash - 1));
        if (name && !model_cache_relpath_valid(name)) {
                free(name);
                name = strdup("download");
        }
        return name;
}

/* ---- validation ---- */

static int validate_fetch(const json_t *data, const json_t *resource, char *err, size_t errlen) {
        const char *src = str_member(data, "source"), *sp = str_member(data, "sourcePath");
        const char *tp = str_member(data, "targetPath"), *ver = str_member(data, "version");
        json_t *cred = json_object_get(data, "credentials"), *files = json_object_get(data, "files");
        json_t *v;
        size_t i;

        if (!json_is_string(json_object_get(resource, "id")) ||
            json_string_length(json_object_get(resource, "id")) == 0)
                return bad(err, errlen, "resource.id (the model id) is required");
        if (!src || (strcmp(src, "huggingface") != 0 && strcmp(src, "minio") != 0 &&
                     strcmp(src, "http") != 0))
                return bad(err, errlen, "data.source must be huggingface, minio or http");
        if (!sp || !opt_str_ok(data, "sourcePath", MAX_FIELD) || has_ctl(sp))
                return bad(err, errlen, "data.sourcePath must be a string of 1 to 4096 bytes");
        if (!tp || !opt_str_ok(data, "targetPath", MAX_FIELD))
                return bad(err, errlen, "data.targetPath must be a string of 1 to 4096 bytes");
        if (!opt_str_ok(data, "version", 255))
                return bad(err, errlen, "data.version must be a string of 1 to 255 bytes");
        if (cred && !json_is_null(cred)) {
                if (!json_is_object(cred) || !opt_str_ok(cred, "token", MAX_SECRET) ||
                    !opt_str_ok(cred, "username", MAX_SECRET) || !opt_str_ok(cred, "password", MAX_SECRET))
                        return bad(err, errlen,
                                   "data.credentials must be {token?, username?, password?} strings");
        }
        v = json_object_get(data, "force");
        if (v && !json_is_null(v) && !json_is_boolean(v))
                return bad(err, errlen, "data.force must be a boolean");
        if (!strcmp(src, "huggingface")) {
                if (!model_hf_repo_valid(sp))
                        return bad(err, errlen, "data.sourcePath must be a Hugging Face repo id (org/name)");
                if (ver && !model_hf_revision_valid(ver))
                        return bad(err, errlen, "data.version is not a valid revision");
                if (!patterns_ok(json_object_get(data, "include")) ||
                    !patterns_ok(json_object_get(data, "exclude")))
                        return bad(err, errlen,
                                   "data.include and data.exclude must be patterns (a string or an array of strings)");
        } else if (!strcmp(src, "minio")) {
                char *b = NULL, *p = NULL;
                int r = model_s3_split_path(sp, &b, &p);
                free(b);
                free(p);
                if (r < 0)
                        return bad(err, errlen, "data.sourcePath must be bucket[/prefix] with a valid bucket name");
                if (!opt_str_ok(data, "endpoint", MAX_FIELD) ||
                    (str_member(data, "endpoint") && !url_ok(str_member(data, "endpoint"))))
                        return bad(err, errlen, "data.endpoint must be an http or https URL");
        } else {
                if (files && !json_is_null(files)) {
                        if (!json_is_array(files) || json_array_size(files) == 0 ||
                            json_array_size(files) > MAX_FILES_SPEC)
                                return bad(err, errlen,
                                           "data.files must be an array of 1 to 10000 {url, path, sha256?}");
                        json_array_foreach(files, i, v) {
                                const char *u = str_member(v, "url"), *p = str_member(v, "path");
                                const char *h = str_member(v, "sha256");
                                size_t k;
                                if (!url_ok(u))
                                        return bad(err, errlen, "data.files[].url must be an http or https URL");
                                if (!p || !model_cache_relpath_valid(p))
                                        return bad(err, errlen,
                                                   "data.files[].path must be a relative path without \"..\"");
                                if (json_object_get(v, "sha256") && !hex_ok(h, 64))
                                        return bad(err, errlen,
                                                   "data.files[].sha256 must be 64 hexadecimal characters");
                                for (k = 0; k < i; k++)
                                        if (!strcmp(p, str_member(json_array_get(files, k), "path")))
                                                return bad(err, errlen, "data.files names a path twice");
                        }
                } else if (!url_ok(sp)) {
                        return bad(err, errlen, "data.sourcePath must be an http or https URL");
                }
                if (json_object_get(data, "sha256") && !hex_ok(str_member(data, "sha256"), 64))
                        return bad(err, errlen, "data.sha256 must be 64 hexadecimal characters");
                if (json_object_get(data, "filename") &&
                    !model_cache_relpath_valid(str_member(data, "filename")))
                        return bad(err, errlen, "data.filename must be a relative path without \"..\"");
        }
        return 0;
}

static int estimate_fetch(const json_t *data) {
        return ESTIMATE_DOWNLOAD_S;
}

/* ---- database rows ---- */

static void db_put(mctx *m, const char *id, const char *path, const json_t *manifest,
                   const char *state) {
        char *s = manifest ? json_dumps(manifest, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        int r = db_model_put(m->db, id, path, s, state);

        if (r < 0)
                log_warn("model state not stored", "modelId", id, "error", db_errmsg(m->db), NULL);
        free(s);
}

/* ---- ensure handles ---- */

static void ensure_unlink(model_ensure *h) {
        model_ensure **pp;

        if (!h->m)
                return;
        for (pp = &h->m->ensures; *pp; pp = &(*pp)->next)
                if (*pp == h) {
                        *pp = h->next;
                        break;
                }
        h->next = NULL;
}

static void ensure_free(model_ensure *h) {
        ensure_unlink(h);
        loop_timer_free(h->timer);
        free(h->path);
        free(h);
}

static void ensure_deliver(loop_timer *t, void *userdata) {
        model_ensure *h = userdata;

        /* Off the context's list: whatever done does (even freeing the
         * engine), h is freed here afterwards. */
        ensure_unlink(h);
        h->m = NULL;
        h->delivering = true;
        if (h->done)
                h->done(h->r, h->r < 0 ? NULL : h->path, h->size, h->r < 0 ? h->code : NULL,
                        h->r < 0 ? h->message : NULL, h->ud);
        ensure_free(h);
}

/* Stores the outcome of the handle of w and detaches it from w's download;
 * done runs on a later turn. */
static void ensure_finish(waiter *w, int r, const char *path, uint64_t size, const char *code,
                          const char *message) {
        model_ensure *h = w->ens;
        char *p;

        if (!h || h->cancelled || h->finished)
                return;
        w->ens = NULL;
        h->finished = true;
        h->d = NULL;
        if (r == 0 && !(h->path = strdup(path))) {
                r = -ENOMEM;
                code = CMD_E_INTERNAL;
                message = "out of memory";
        }
        h->r = r;
        h->size = r == 0 ? size : 0;
        h->code = code ? code : CMD_E_INTERNAL;
        snprintf(h->message, sizeof h->message, "%s", message ? message : "");
        for (p = h->message; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7F)
                        *p = ' ';
        loop_timer_arm(h->timer, 0);
}

/* Completes a waiter with an error: the command's result, or the handle's
 * done (details, stolen, are for commands only). */
static void waiter_fail(waiter *w, int r, const char *code, const char *message, bool retryable, json_t *details) {
        if (w->job) {
                cmd_job_fail(w->job, code, message, retryable, details);
                return;
        }
        json_decref(details);
        ensure_finish(w, r, NULL, 0, code, message);
}

/* Frees the handles cancelled from inside d's progress calls; when nobody
 * waits any more, d is stopped on a later turn (its callers still use it). */
static void reap_cancelled(dl *d) {
        waiter **pp = &d->waiters;
        bool removed = false;

        while (*pp) {
                waiter *w = *pp;
                if (w->ens && w->ens->cancelled) {
                        *pp = w->next;
                        ensure_free(w->ens);
                        free(w);
                        removed = true;
                } else {
                        pp = &w->next;
                }
        }
        if (removed && !d->waiters)
                loop_timer_arm(d->m->reap, 0);
}

/* ---- progress ---- */

static void progress_numbers(dl *d, uint64_t *done, uint64_t *total, uint64_t *speed,
                             bool *verifying) {
        model_fetch_progress p;

        *done = d->skipped_bytes;
        *total = 0;
        *speed = 0;
        *verifying = false;
        if (!d->fetch) {
                return;
        }
        model_fetch_get_progress(d->fetch, &p);
        *done += p.bytes_done;
        *total = p.total_known ? p.bytes_total + d->skipped_bytes : 0;
        *speed = p.speed_bps;
        *verifying = p.verifying;
}

static void emit_progress(dl *d, const char *status) {
        uint64_t done, total, speed;
        json_t *edata = NULL;
        bool verifying;
        waiter *w;
        int pct;

        progress_numbers(d, &done, &total, &speed, &verifying);
        if (!status)
                status = verifying ? "verifying" : "downloading";
        if (!strcmp(status, "completed")) {
                pct = 100;
                if (total == 0)
                        total = done;
        } else {
                pct = total ? (int)(done * 100 / total) : 0;
                if (pct > 99 && strcmp(status, "completed") != 0)
                        pct = 99;
        }
        d->in_cb++;
        for (w = d->waiters; w; w = w->next) {
                if (!w->job) {
                        model_ensure *h = w->ens;
                        /* Not before model_cmd_ensure() has returned it. */
                        if (!h || !h->live || h->cancelled || !h->progress)
                                continue;
                        if (!edata)
                                edata = json_pack("{s:s,s:s,s:I,s:I,s:i,s:I,s:I}", "modelId", d->model_id,
                                                  "status", status, "bytesDownloaded", (json_int_t)done,
                                                  "bytesTotal", (json_int_t)total, "progress", pct, "speedBps",
                                                  (json_int_t)speed, "etaSeconds",
                                                  (json_int_t)(speed && total > done ? (total - done) / speed : 0));
                        if (edata)
                                h->progress(edata, h->ud);
                        continue;
                }
                json_t *data = json_pack("{s:s,s:s,s:s,s:I,s:I,s:i,s:I,s:I}", "modelId", d->model_id,
                                         "originalMessageId", cmd_job_message_id(w->job), "status",
                                         status, "bytesDownloaded", (json_int_t)done, "bytesTotal",
                                         (json_int_t)total, "progress", pct, "speedBps",
                                         (json_int_t)speed, "etaSeconds",
                                         (json_int_t)(speed && total > done ? (total - done) / speed : 0));
                cmd_job_emit(w->job, "model.downloadProgress", data);
        }
        if (--d->in_cb == 0)
                reap_cancelled(d);
        json_decref(edata);
}

static void tick_cb(loop_timer *t, void *userdata) {
        dl *d = userdata;

        emit_progress(d, NULL);
        loop_timer_arm(t, PROGRESS_MS);
}

/* ---- the life of a download ---- */

static void dl_free(dl *d) {
        mctx *m;
        dl **pp;
        size_t i;

        if (!d)
                return;
        m = d->m;
        for (pp = &m->dls; *pp; pp = &(*pp)->next)
                if (*pp == d) {
                        *pp = d->next;
                        break;
                }
        while (d->waiters) {
                waiter *w = d->waiters;
                d->waiters = w->next;
                free(w);
        }
        if (d->list_req)
                http_request_cancel(d->list_req);
        d->fetch = model_fetch_free(d->fetch);
        loop_timer_free(d->tick);
        if (d->stage_fd >= 0)
                close(d->stage_fd);
        model_cache_unlock(d->lock_fd);
        for (i = 0; i < d->n_files; i++) {
                free(d->files[i].rel);
                free(d->files[i].url);
        }
        free(d->files);
        free(d->sig);
        free(d->model_id);
        free(d->source_path);
        free(d->revision);
        free(d->target_given);
        free(d->target_rel);
        free(d->repo_dir);
        free(d->endpoint);
        free(d->bucket);
        free(d->prefix);
        free(d->s3_token);
        free(d->path);
        free_secret(&d->token);
        free_secret(&d->userpwd);
        json_decref(d->data);
        free(d);
}

/* Starts the oldest download that waited for key (the list is newest
 * first); one at a time: it then holds the key. */
static void release_blocked(mctx *m, const char *key) {
        dl *o, *oldest = NULL;

        for (o = m->dls; o; o = o->next)
                if (o->waiting_lock && !strcmp(o->key, key))
                        oldest = o;
        if (oldest) {
                oldest->waiting_lock = false;
                dl_begin(oldest);
        }
}

/* Removes d and, when it held its key, wakes the next one waiting for it. */
static void dl_end(dl *d) {
        mctx *m = d->m;
        bool held = !d->waiting_lock;
        char key[sizeof d->key];

        memcpy(key, d->key, sizeof key);
        dl_free(d);
        if (held)
                release_blocked(m, key);
}

static const char *map_error(int r, bool *retryable) {
        *retryable = true;
        switch (r) {
        case -EINVAL:
                *retryable = false;
                return CMD_E_COMMAND_INVALID;
        case -ENOENT:
        case -EACCES:
                *retryable = false;
                return CMD_E_MODEL_NOT_FOUND;
        case -ENOSPC:
        case -EDQUOT:
        case -EWOULDBLOCK:
                return CMD_E_RESOURCE_EXHAUSTED;
        case -ELOOP:
        case -EKEYREJECTED:
                *retryable = false;
                return CMD_E_NETWORK;
        case -ECONNRESET:
        case -ETIMEDOUT:
        case -ECONNREFUSED:
        case -EHOSTUNREACH:
        case -EPROTO:
                return CMD_E_NETWORK;
        default:
                return CMD_E_INTERNAL;
        }
}

/* Ends every waiting command with an error (details stolen) and d itself. */
static void dl_fail(dl *d, int r, const char *message, json_t *details) {
        bool retryable;
        const char *code = map_error(r, &retryable);
        waiter *w;
        json_t *manifest = NULL;

        log_warn("model download failed", "modelId", d->model_id, "source", source_name(d->src),
                 "error", message, NULL);
        emit_progress(d, "failed");
        for (w = d->waiters; w; w = w->next)
                if (w->job || w->ens)
                        waiter_fail(w, r, code, message, retryable, details ? json_incref(details) : NULL);
        json_decref(details);
        if (model_cache_manifest_read(d->m->cache, d->model_id, &manifest) == 0)
                db_put(d->m, d->model_id, str_member(manifest, "path"), manifest, "complete");
        else
                db_put(d->m, d->model_id, NULL, NULL, "failed");
        json_decref(manifest);
        dl_end(d);
}

static void dl_failf(dl *d, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void dl_failf(dl *d, int r, const char *fmt, ...) {
        char msg[600];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        dl_fail(d, r, msg, NULL);
}

static pfile *add_file(dl *d) {
        pfile *f;

        if (d->n_files == d->cap_files) {
                size_t ncap = d->cap_files ? d->cap_files * 2 : 16;
                pfile *nf = realloc(d->files, ncap * sizeof *nf);
                if (!nf)
                        return NULL;
                d->files = nf;
                d->cap_files = ncap;
        }
        f = &d->files[d->n_files++];
        memset(f, 0, sizeof *f);
        f->fetch_idx = -1;
        return f;
}

/* "<target>/<rel>" relative to the cache root. */
static char *dest_rel(const dl *d, const char *rel) {
        size_t n = strlen(d->target_rel) + 1 + strlen(rel) + 1;
        char *s = malloc(n);

        if (s)
                snprintf(s, n, "%s/%s", d->target_rel, rel);
        return s;
}

/* The previous manifest's record of rel, if any. */
static json_t *manifest_file(json_t *manifest, const char *rel) {
        json_t *files = json_object_get(manifest, "files"), *f;
        size_t i;

        json_array_foreach(files, i, f) {
                if (!strcmp(str_member(f, "path") ? str_member(f, "path") : "", rel))
                        return f;
        }
        return NULL;
}

static bool file_has_size(int dir_fd, const char *rel, uint64_t size) {
        const char *slash = strrchr(rel, '/');
        size_t cut = slash ? (size_t)(slash - rel) : 0;
        struct stat st;
        char *parent;
        int fd, r;
        bool ok;

        parent = strndup(rel, cut);
        if (!parent)
                return false;
        r = cut ? model_cache_opendir(dir_fd, parent, &fd) : model_cache_opendir(dir_fd, "", &fd);
        free(parent);
        if (r < 0)
                return false;
        ok = fstatat(fd, rel + (cut ? cut + 1 : 0), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
             (uint64_t)st.st_size == size;
        close(fd);
        return ok;
}

/* Decides, for the files of the plan, what is already in place and where
 * the others are staged; then checks space and starts the transfer. */
static void dl_fetch(dl *d) {
        mctx *m = d->m;
        json_t *manifest = NULL;
        model_fetch_config fc = {
                .l = m->l,
                .http = m->http,
                .stage_fd = d->stage_fd,
                .bearer = d->src == SRC_HF ? d->token : NULL,
                .ca_file = m->ca_file,
                .max_parallel = m->max_parallel,
                .stall_timeout_s = m->stall_s,
                .retry_base_ms = m->retry_base_ms,
        };
        uint64_t need = 0, avail = 0;
        bool sizes_known = true;
        char sigv4[64];
        size_t i, k;
        int r;

        if (d->src == SRC_S3 && d->userpwd) {
                if (model_s3_sigv4_param(m->s3_region, sigv4, sizeof sigv4) < 0) {
                        dl_failf(d, -EINVAL, "S3_REGION %s is not a valid region", m->s3_region);
                        return;
                }
                fc.aws_sigv4 = sigv4;
                fc.userpwd = d->userpwd;
        }
        if (!d->force)
                model_cache_manifest_read(m->cache, d->model_id, &manifest);
        for (i = 0; i < d->n_files; i++) {
                pfile *f = &d->files[i];
                char h[65];
                if (d->src == SRC_HF) {
                        for (k = 0; k < i; k++)
                                if (!strcmp(d->files[k].blob, f->blob)) {
                                        f->link_only = true;
                                        break;
                                }
                        if (f->link_only)
                                continue;
                        snprintf(f->stage, sizeof f->stage, "%s", f->blob);
                        if (!d->force && model_cache_hf_blob_present(m->cache, d->repo_dir, f->blob, f->size))
                                f->skip = true;
                } else {
                        sha256_hex(f->rel, strlen(f->rel), h);
                        snprintf(f->stage, sizeof f->stage, "f-%.40s", h);
                        json_t *old = manifest_file(manifest, f->rel);
                        char *dest = dest_rel(d, f->rel);
                        if (!dest) {
                                json_decref(manifest);
                                dl_failf(d, -ENOMEM, "out of memory");
                                return;
                        }
                        /* http sizes are unknown before the request: the manifest's. */
                        if (old && d->src == SRC_HTTP && !f->size_known &&
                            json_integer_value(json_object_get(old, "size")) >= 0) {
                                f->size = (uint64_t)json_integer_value(json_object_get(old, "size"));
                                f->size_known = true;
                                f->size_from_manifest = true;
                        }
                        if (old && f->size_known &&
                            json_integer_value(json_object_get(old, "size")) == (json_int_t)f->size &&
                            file_has_size(model_cache_fd(m->cache), dest, f->size)) {
                                const char *os = str_member(old, "sha256"), *oe = str_member(old, "etag");
                                const char *ou = str_member(old, "urlSha256");
                                char uh[65];
                                sha256_hex(f->url, strlen(f->url), uh);
                                if (d->src == SRC_S3 && oe && f->etag[0] && !strcmp(oe, f->etag))
                                        f->skip = true;
                                else if (d->src == SRC_HTTP && f->sha256[0] && os && !strcmp(os, f->sha256) &&
                                         ou && !strcmp(ou, uh))
                                        f->skip = true;
                                /* http without sha256: the content is unknown, fetch again. */
                                if (f->skip && os)
                                        memcpy(f->got_sha256, os, strlen(os) < 65 ? strlen(os) + 1 : 1);
                        }
                        free(dest);
                        if (f->size_from_manifest && !f->skip) {
                                /* Not ours to promise: let the server say. */
                                f->size = 0;
                                f->size_known = false;
                                f->size_from_manifest = false;
                        }
                }
                if (f->skip) {
                        d->skipped_bytes += f->size;
                        continue;
                }
                if (!f->size_known) {
                        sizes_known = false;
                } else {
                        struct stat st;
                        uint64_t have = 0;
                        if (fstatat(d->stage_fd, f->stage, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                            S_ISREG(st.st_mode) && (uint64_t)st.st_size <= f->size)
                                have = (uint64_t)st.st_size;
                        need += f->size - have;
                }
        }
        json_decref(manifest);
        if (sizes_known && need > 0 && model_cache_available(m->cache, &avail) == 0 && need > avail) {
                json_t *details = json_pack("{s:I,s:I}", "neededBytes", (json_int_t)need,
                                            "availableBytes", (json_int_t)avail);
                char msg[200];
                snprintf(msg, sizeof msg, "not enough disk space in MODEL_CACHE_DIR: %llu bytes needed, %llu available",
                         (unsigned long long)need, (unsigned long long)avail);
                dl_fail(d, -ENOSPC, msg, details);
                return;
        }
        fc.userdata = d;
        fc.on_done = fetch_done;
        r = model_fetch_new(&fc, &d->fetch);
        for (i = 0; r == 0 && i < d->n_files; i++) {
                pfile *f = &d->files[i];
                model_fetch_spec s = {
                        .url = f->url,
                        .stage_name = f->stage,
                        .size = f->size,
                        .size_known = f->size_known,
                        .sha256 = f->sha256[0] ? f->sha256 : NULL,
                        .md5 = f->md5[0] ? f->md5 : NULL,
                        .git_sha1 = f->git_sha1[0] ? f->git_sha1 : NULL,
                };
                if (f->skip || f->link_only)
                        continue;
                f->fetch_idx = 0;
                for (k = 0; k < i; k++)
                        if (d->files[k].fetch_idx >= 0)
                                f->fetch_idx++;
                r = model_fetch_add(d->fetch, &s);
        }
        if (r == 0)
                r = model_fetch_start(d->fetch);
        if (r < 0)
                dl_failf(d, r, "cannot start the transfer: %s", strerror(-r));
}

/* ---- placing the verified files ---- */

static json_t *build_manifest(dl *d, uint64_t *ret_size) {
        json_t *files = json_array(), *mf;
        char now[25], uh[65];
        uint64_t total = 0;
        size_t i;

        util_iso_now(now);
        for (i = 0; i < d->n_files; i++) {
                pfile *f = &d->files[i];
                json_t *o = json_pack("{s:s,s:I}", "path", f->rel, "size", (json_int_t)f->size);
                if (!o)
                        continue;
                if (f->got_sha256[0])
                        json_object_set_new(o, "sha256", json_string(f->got_sha256));
                if (f->etag[0])
                        json_object_set_new(o, "etag", json_string(f->etag));
                if (f->blob[0])
                        json_object_set_new(o, "blob", json_string(f->blob));
                if (d->src == SRC_HTTP) {
                        sha256_hex(f->url, strlen(f->url), uh);
                        json_object_set_new(o, "urlSha256", json_string(uh));
                }
                json_array_append_new(files, o);
                total += f->size;
        }
        mf = json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:I,s:s,s:i}", "modelId", d->model_id, "source",
                       source_name(d->src), "sourcePath", d->source_path, "targetPath", d->target_given,
                       "path", d->path, "files", files, "sizeBytes", (json_int_t)total, "completedAt",
                       now, "version", 1);
        if (!mf)
                return NULL;
        if (d->revision)
                json_object_set_new(mf, "revision", json_string(d->revision));
        if (d->commit[0])
                json_object_set_new(mf, "commit", json_string(d->commit));
        if (d->endpoint)
                json_object_set_new(mf, "endpoint", json_string(d->endpoint));
        json_object_set_new(mf, "targetRel", json_string(d->target_rel));
        {
                char *id = request_sig(d->model_id, d->data, d->target_rel, d->revision, false);
                if (id)
                        json_object_set_new(mf, "request", json_string(id));
                free(id);
        }
        *ret_size = total;
        return mf;
}

static int place_files(dl *d, char *err, size_t errlen) {
        mctx *m = d->m;
        size_t i;
        int r;

        for (i = 0; i < d->n_files; i++) {
                pfile *f = &d->files[i];
                if (f->fetch_idx >= 0) {
                        r = model_fetch_file_result(d->fetch, (size_t)f->fetch_idx, &f->size, f->got_sha256);
                        if (r < 0) {
                                snprintf(err, errlen, "internal error: %s has no result", f->rel);
                                return -EIO;
                        }
                }
        }
        for (i = 0; i < d->n_files; i++) {
                pfile *f = &d->files[i];
                if (d->src == SRC_HF) {
                        if (f->link_only) {
                                size_t k;
                                for (k = 0; k < i; k++)
                                        if (!strcmp(d->files[k].blob, f->blob))
                                                memcpy(f->got_sha256, d->files[k].got_sha256, 65);
                        }
                        if (!f->skip && !f->link_only) {
                                r = model_cache_hf_place_blob(m->cache, d->repo_dir, d->stage_fd, f->stage, f->blob);
                                if (r < 0) {
                                        snprintf(err, errlen, "cannot move %s into the cache: %s", f->rel,
                                                 strerror(-r));
                                        return r;
                                }
                        }
                        r = model_cache_hf_link(m->cache, d->repo_dir, d->commit, f->rel, f->blob);
                        if (r < 0) {
                                snprintf(err, errlen, "cannot link %s in the snapshot: %s", f->rel, strerror(-r));
                                return r;
                        }
                } else if (!f->skip) {
                        char *dest = dest_rel(d, f->rel);
                        r = dest ? model_cache_place(d->stage_fd, f->stage, model_cache_fd(m->cache), dest) : -ENOMEM;
                        free(dest);
                        if (r < 0) {
                                snprintf(err, errlen, "cannot move %s into %s: %s", f->rel, d->target_rel,
                                         strerror(-r));
                                return r;
                        }
                }
        }
        if (d->src == SRC_HF) {
                r = model_cache_hf_write_ref(m->cache, d->repo_dir, d->revision, d->commit);
                if (r < 0) {
                        snprintf(err, errlen, "cannot write refs/%s: %s", d->revision, strerror(-r));
                        return r;
                }
        }
        return 0;
}

static void dl_succeed(dl *d) {
        mctx *m = d->m;
        json_t *manifest;
        uint64_t total = 0;
        char err[300], now[25], size_s[32];
        waiter *w;
        int r;

        emit_progress(d, "verifying");
        r = place_files(d, err, sizeof err);
        if (r < 0) {
                dl_fail(d, r == -ENOSPC || r == -EDQUOT ? r : -EIO, err, NULL);
                return;
        }
        manifest = build_manifest(d, &total);
        r = manifest ? model_cache_manifest_write(m->cache, d->model_id, manifest) : -ENOMEM;
        if (r < 0) {
                json_decref(manifest);
                dl_failf(d, r == -ENOSPC ? r : -EIO, "cannot write the model's manifest: %s", strerror(-r));
                return;
        }
        db_put(m, d->model_id, d->path, manifest, "complete");
        model_cache_staging_remove(m->cache, d->key);
        emit_progress(d, "completed");
        util_iso_now(now);
        snprintf(size_s, sizeof size_s, "%llu", (unsigned long long)total);
        log_info("model downloaded", "modelId", d->model_id, "source", source_name(d->src), "path", d->path,
                 "bytes", size_s, NULL);
        for (w = d->waiters; w; w = w->next) {
                json_t *res;
                if (!w->job) {
                        ensure_finish(w, 0, d->path, total, NULL, NULL);
                        continue;
                }
                if (w->cache) {
                        res = json_pack("{s:s,s:I,s:b,s:s}", "path", d->path, "sizeBytes", (json_int_t)total,
                                        "alreadyCached", 0, "cachedAt", now);
                } else {
                        res = json_pack("{s:s,s:s,s:I,s:I,s:s}", "downloadedAt", now, "path", d->path,
                                        "sizeBytes", (json_int_t)total, "files", (json_int_t)d->n_files,
                                        "source", source_name(d->src));
                        if (res && d->src == SRC_HF)
                                json_object_set_new(res, "revision", json_string(d->commit));
                }
                cmd_job_succeed(w->job, res);
        }
        json_decref(manifest);
        dl_end(d);
}

static void fetch_done(model_fetch *f, int r, const char *message, void *userdata) {
        dl *d = userdata;

        if (r < 0) {
                json_t *details = NULL;
                if (r == -ENOSPC || r == -EDQUOT) {
                        uint64_t avail = 0;
                        model_cache_available(d->m->cache, &avail);
                        details = json_pack("{s:I}", "availableBytes", (json_int_t)avail);
                }
                dl_fail(d, r, message ? message : strerror(-r), details);
                return;
        }
        dl_succeed(d);
}

/* ---- listings ---- */

static void hf_listed(http_request *req, const http_result *res, void *userdata) {
        dl *d = userdata;
        json_t *inc = json_object_get(d->data, "include"), *exc = json_object_get(d->data, "exclude");
        model_hf_info info;
        char err[300];
        size_t i;
        int r;

        d->list_req = NULL;
        if (res->err < 0 && res->status == 0) {
                dl_failf(d, res->err == -E2BIG ? -EFBIG : res->err, "cannot list %s at the Hub: %s",
                         d->source_path, res->error);
                return;
        }
        if (res->status == 401 || res->status == 403 || res->status == 404) {
                const char *code = http_request_header(req, "X-Error-Code");
                bool rev = code && !strcmp(code, "RevisionNotFound");
                dl_failf(d, rev ? -ENOENT : (res->status == 404 ? -ENOENT : -EACCES),
                         rev ? "revision %s not found in %s"
                             : "repository %s not found or not accessible%s (HTTP %ld)",
                         rev ? d->revision : d->source_path,
                         rev ? d->source_path
                             : (d->token ? " with the given token"
                                         : "; private repositories need credentials.token"),
                         res->status);
                return;
        }
        if (res->status != 200 || res->err < 0) {
                dl_failf(d, -EPROTO, "the Hub answered HTTP %ld listing %s",
                         res->status, d->source_path);
                return;
        }
        r = model_hf_parse_info(res->body->data ? res->body->data : "", res->body->len, &info, err, sizeof err);
        if (r < 0) {
                dl_failf(d, -EPROTO, "unusable listing of %s: %s", d->source_path, err);
                return;
        }
        memcpy(d->commit, info.commit, sizeof d->commit);
        for (i = 0; i < info.n_files; i++) {
                model_hf_file *hf = &info.files[i];
                char *url = NULL;
                pfile *f;
                if ((inc && !json_is_null(inc) && !patterns_match(inc, hf->path)) ||
                    (exc && !json_is_null(exc) && patterns_match(exc, hf->path)))
                        continue;
                if (!hf->lfs && !hf->blob_id[0]) {
                        model_hf_info_done(&info);
                        dl_failf(d, -EPROTO, "the Hub listed %s without a blob id", hf->path);
                        return;
                }
                r = model_hf_file_url(d->m->hf_endpoint, d->source_path, d->commit, hf->path, &url);
                f = r == 0 ? add_file(d) : NULL;
                if (!f) {
                        free(url);
                        model_hf_info_done(&info);
                        dl_failf(d, r < 0 ? r : -ENOMEM, "cannot plan %s", hf->path);
                        return;
                }
                f->rel = strdup(hf->path);
                f->url = url;
                f->size = hf->size;
                f->size_known = true;
                if (hf->lfs) {
                        memcpy(f->sha256, hf->sha256, sizeof f->sha256);
                        memcpy(f->blob, hf->sha256, sizeof f->blob);
                } else {
                        memcpy(f->git_sha1, hf->blob_id, sizeof f->git_sha1);
                        memcpy(f->blob, hf->blob_id, sizeof hf->blob_id);
                }
                if (!f->rel) {
                        model_hf_info_done(&info);
                        dl_failf(d, -ENOMEM, "out of memory");
                        return;
                }
        }
        model_hf_info_done(&info);
        if (d->n_files == 0) {
                dl_failf(d, -ENOENT, "no file of %s matches data.include/data.exclude", d->source_path);
                return;
        }
        free(d->path);
        d->path = NULL;
        if (model_cache_hf_snapshot_path(d->m->cache, d->repo_dir, d->commit, &d->path) < 0) {
                dl_failf(d, -ENOMEM, "out of memory");
                return;
        }
        dl_fetch(d);
}

static void hf_list(dl *d) {
        const char *headers[2] = { NULL, NULL };
        char *url = NULL, *auth = NULL;
        http_options o = {
                .follow_redirects = true,
                .timeout_ms = LIST_TIMEOUT_MS,
                .max_response = MAX_LIST_BODY,
                .ca_file = d->m->ca_file,
        };
        int r;

        r = model_hf_info_url(d->m->hf_endpoint, d->source_path, d->revision, &url);
        if (r == 0 && d->token) {
                if (asprintf(&auth, "Authorization: Bearer %s", d->token) < 0) {
                        auth = NULL;
                        r = -ENOMEM;
                }
                headers[0] = auth;
        }
        o.url = url;
        o.headers = headers;
        if (r == 0)
                r = http_request_start(d->m->http, &o, hf_listed, d, &d->list_req);
        free(url);
        free_secret(&auth);
        if (r < 0)
                dl_failf(d, r, "cannot list %s: %s", d->source_path, strerror(-r));
}

static void s3_list_page(dl *d);

/* The name an object gets below the target, or NULL to skip it. */
static const char *s3_rel(const dl *d, const char *key) {
        size_t n = strlen(d->prefix);

        if (strncmp(key, d->prefix, n) != 0)
                return NULL;
        if (key[n] == '\0') {
                const char *slash = strrchr(key, '/');
                return slash ? slash + 1 : key; /* the prefix is one object */
        }
        if (n == 0 || d->prefix[n - 1] == '/')
                return key + n;
        return key[n] == '/' ? key + n + 1 : NULL;
}

static void s3_listed(http_request *req, const http_result *res, void *userdata) {
        dl *d = userdata;
        model_s3_page page;
        char err[300];
        size_t i;
        int r;

        d->list_req = NULL;
        if (res->err < 0 && res->status == 0) {
                dl_failf(d, res->err, "cannot list s3://%s/%s: %s", d->bucket, d->prefix, res->error);
                return;
        }
        if (res->status != 200 || res->err < 0) {
                char code[64] = "", msg[200] = "";
                model_s3_parse_error(res->body->data ? res->body->data : "", res->body->len, code, sizeof code,
                                     msg, sizeof msg);
                int rerr = res->status == 404 ? -ENOENT
                           : (res->status == 401 || res->status == 403) ? -EACCES
                                                                         : -EPROTO;
                dl_failf(d, rerr,
                         "listing s3://%s/%s failed: HTTP %ld %s %s", d->bucket, d->prefix, res->status, code,
                         msg);
                return;
        }
        r = model_s3_parse_list(res->body->data ? res->body->data : "", res->body->len, &page, err, sizeof err);
        if (r < 0) {
                dl_failf(d, -EPROTO, "unusable listing of s3://%s/%s: %s", d->bucket, d->prefix, err);
                return;
        }
        for (i = 0; i < page.n_objects; i++) {
                model_s3_object *o = &page.objects[i];
                const char *rel = s3_rel(d, o->key);
                size_t n = strlen(o->key);
                pfile *f;
                if (!rel || (n > 0 && o->key[n - 1] == '/'))
                        continue; /* outside the prefix, or a "directory" marker */
                if (!model_cache_relpath_valid(rel)) {
                        model_s3_page_done(&page);
                        dl_failf(d, -EINVAL, "object key %.200s is not a safe path", o->key);
                        return;
                }
                if (d->n_files >= MAX_S3_OBJECTS) {
                        model_s3_page_done(&page);
                        dl_failf(d, -EFBIG, "more than %d objects under s3://%s/%s", MAX_S3_OBJECTS, d->bucket,
                                 d->prefix);
                        return;
                }
                f = add_file(d);
                if (!f) {
                        model_s3_page_done(&page);
                        dl_failf(d, -ENOMEM, "out of memory");
                        return;
                }
                f->rel = strdup(rel);
                r = model_s3_object_url(d->endpoint, d->bucket, o->key, &f->url);
                if (!f->rel || r < 0) {
                        model_s3_page_done(&page);
                        dl_failf(d, -ENOMEM, "out of memory");
                        return;
                }
                f->size = o->size;
                f->size_known = true;
                if (o->etag) {
                        util_strlcpy(f->etag, o->etag, sizeof f->etag);
                        if (model_s3_etag_is_md5(o->etag)) {
                                memcpy(f->md5, o->etag, 33);
                                lower(f->md5);
                        }
                }
        }
        free(d->s3_token);
        d->s3_token = page.truncated ? page.next_token : NULL;
        page.next_token = NULL;
        model_s3_page_done(&page);
        if (d->s3_token) {
                if (++d->s3_pages >= MAX_S3_PAGES) {
                        dl_failf(d, -EFBIG, "listing s3://%s/%s has more than %d pages", d->bucket, d->prefix,
                                 MAX_S3_PAGES);
                        return;
                }
                s3_list_page(d);
                return;
        }
        if (d->n_files == 0) {
                dl_failf(d, -ENOENT, "no object under s3://%s/%s", d->bucket, d->prefix);
                return;
        }
        dl_fetch(d);
}

static void s3_list_page(dl *d) {
        const char *headers[] = {
                "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", NULL
        };
        char sigv4[64], *url = NULL;
        http_options o = {
                .follow_redirects = true,
                .timeout_ms = LIST_TIMEOUT_MS,
                .max_response = MAX_LIST_BODY,
                .ca_file = d->m->ca_file,
        };
        int r;

        r = model_s3_list_url(d->endpoint, d->bucket, d->prefix, d->s3_token, 1000, &url);
        if (r == 0 && d->userpwd) {
                r = model_s3_sigv4_param(d->m->s3_region, sigv4, sizeof sigv4);
                o.aws_sigv4 = sigv4;
                o.userpwd = d->userpwd;
                o.headers = headers;
        }
        o.url = url;
        if (r == 0)
                r = http_request_start(d->m->http, &o, s3_listed, d, &d->list_req);
        free(url);
        if (r < 0)
                dl_failf(d, r, "cannot list s3://%s/%s: %s", d->bucket, d->prefix, strerror(-r));
}

static void http_plan(dl *d) {
        json_t *files = json_object_get(d->data, "files"), *v;
        size_t i;

        if (json_is_array(files)) {
                json_array_foreach(files, i, v) {
                        pfile *f = add_file(d);
                        const char *h = str_member(v, "sha256");
                        if (!f || !(f->rel = strdup(str_member(v, "path"))) ||
                            !(f->url = strdup(str_member(v, "url")))) {
                                dl_failf(d, -ENOMEM, "out of memory");
                                return;
                        }
                        if (h) {
                                memcpy(f->sha256, h, 65);
                                lower(f->sha256);
                        }
                }
        } else {
                pfile *f = add_file(d);
                const char *name = str_member(d->data, "filename"), *h = str_member(d->data, "sha256");
                if (!f || !(f->rel = name ? strdup(name) : url_basename(d->source_path)) ||
                    !(f->url = strdup(d->source_path))) {
                        dl_failf(d, -ENOMEM, "out of memory");
                        return;
                }
                if (h) {
                        memcpy(f->sha256, h, 65);
                        lower(f->sha256);
                }
        }
        dl_fetch(d);
}

/* Takes the key's lock and the staging directory, then lists. */
static void dl_begin(dl *d) {
        mctx *m = d->m;
        int r;

        r = model_cache_lock(m->cache, d->key, &d->lock_fd);
        if (r < 0) {
                dl_failf(d, r == -EWOULDBLOCK ? -EWOULDBLOCK : -EIO,
                         r == -EWOULDBLOCK ? "another process is downloading into the same place"
                                           : "cannot lock the model: %s",
                         strerror(-r));
                return;
        }
        r = model_cache_staging_open(m->cache, d->key, true, &d->stage_fd);
        if (r < 0) {
                dl_failf(d, r == -ENOSPC ? r : -EIO, "cannot create the staging directory: %s", strerror(-r));
                return;
        }
        d->started_ms = loop_now(m->l);
        db_put(m, d->model_id, NULL, NULL, "downloading");
        log_info("model download started", "modelId", d->model_id, "source", source_name(d->src), NULL);
        emit_progress(d, "downloading");
        loop_timer_arm(d->tick, PROGRESS_MS);
        if (d->src == SRC_HF)
                hf_list(d);
        else if (d->src == SRC_S3)
                s3_list_page(d);
        else
                http_plan(d);
}

/* ---- model.download / model.cache ---- */

/* The request's identity: what makes two commands the same download
 * (with_sha) or the same model on disk (without: data.sha256 only checks). */
static char *request_sig(const char *model_id, const json_t *data, const char *target_rel,
                         const char *revision, bool with_sha) {
        static const char *const keys[] = { "source", "sourcePath", "include", "exclude", "files",
                                            "filename", "endpoint", "sha256" };
        json_t *o = json_object();
        char *s;
        size_t i;

        if (!o)
                return NULL;
        for (i = 0; i < sizeof keys / sizeof keys[0]; i++) {
                json_t *v = json_object_get(data, keys[i]);
                if (!with_sha && !strcmp(keys[i], "sha256"))
                        continue;
                if (v && !json_is_null(v))
                        json_object_set(o, keys[i], v);
        }
        json_object_set_new(o, "modelId", json_string(model_id));
        json_object_set_new(o, "target", json_string(target_rel));
        if (revision)
                json_object_set_new(o, "revision", json_string(revision));
        s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(o);
        return s;
}

/* model.cache: the manifest was written for the same request (source,
 * path, revision, target, filters) and its files are all there. */
static bool cache_hit(mctx *m, const char *model_id, const json_t *data, const char *target_rel,
                      json_t **ret_manifest) {
        const char *ver = str_member(data, "version");
        json_t *mf = NULL;
        char *sig;
        bool ok;

        if (!ver && !strcmp(str_member(data, "source"), "huggingface"))
                ver = MODEL_HF_DEFAULT_REVISION;
        if (model_cache_manifest_read(m->cache, model_id, &mf) < 0)
                return false;
        sig = request_sig(model_id, data, target_rel, ver, false);
        ok = sig && str_member(mf, "request") && !strcmp(sig, str_member(mf, "request")) &&
             manifest_complete(mf);
        if (ok && str_member(data, "sha256")) {
                const char *have = str_member(json_array_get(json_object_get(mf, "files"), 0), "sha256");
                ok = have && !strcasecmp(have, str_member(data, "sha256"));
        }
        free(sig);
        if (!ok) {
                json_decref(mf);
                return false;
        }
        *ret_manifest = mf;
        return true;
}

/* Attaches the waiter w (a command or an ensure handle) to d. */
static void waiter_attach(waiter *w, dl *d) {
        if (w->job)
                cmd_job_set_userdata(w->job, d);
        else
                w->ens->d = d;
}

/* model.download (cache false) and model.cache for req, a command or an
 * ensure handle (copied into the waiter attached to the download): starts,
 * joins or waits for the download data asks for, or completes req at once
 * (refused targetPath, model already complete, no S3 endpoint). Returns 0,
 * or a negative errno with nothing attached nor completed. */
static int fetch_request(mctx *m, const char *model_id, const json_t *data, bool cache, const waiter *req) {
        const json_t *cred = json_object_get(data, "credentials");
        const char *src = str_member(data, "source");
        const char *ver = str_member(data, "version");
        char err[300], *target_rel = NULL, *sig = NULL, key[MODEL_CACHE_KEY_NAME_MAX];
        json_t *mf = NULL;
        waiter *w = NULL, once = *req;
        dl *d, *o;
        int r;

        r = model_cache_resolve_target(m->cache, str_member(data, "targetPath"), &target_rel, err, sizeof err);
        if (r < 0) {
                char msg[400];
                snprintf(msg, sizeof msg, "data.targetPath refused: %s", err);
                waiter_fail(&once, -EINVAL, CMD_E_COMMAND_INVALID, msg, false, NULL);
                return 0;
        }
        if (cache && cache_hit(m, model_id, data, target_rel, &mf)) {
                db_put(m, model_id, str_member(mf, "path"), mf, "complete"); /* lastUsedAt */
                if (req->job) {
                        json_t *res = json_pack("{s:s,s:O,s:b,s:s}", "path", str_member(mf, "path"), "sizeBytes",
                                                json_object_get(mf, "sizeBytes"), "alreadyCached", 1, "cachedAt",
                                                str_member(mf, "completedAt") ? str_member(mf, "completedAt") : "");
                        cmd_job_succeed(req->job, res);
                } else {
                        json_int_t size = json_integer_value(json_object_get(mf, "sizeBytes"));
                        ensure_finish(&once, 0, str_member(mf, "path"), size > 0 ? (uint64_t)size : 0, NULL,
                                      NULL);
                }
                json_decref(mf);
                free(target_rel);
                return 0;
        }
        if (!strcmp(src, "huggingface") && !ver)
                ver = MODEL_HF_DEFAULT_REVISION;
        sig = request_sig(model_id, data, target_rel, ver, true);
        w = calloc(1, sizeof *w);
        if (!sig || !w) {
                free(sig);
                free(w);
                free(target_rel);
                return -ENOMEM;
        }
        *w = *req;
        w->cache = cache;
        w->next = NULL;
        if (w->job)
                cmd_job_set_userdata(w->job, NULL);
        /* Identical request in progress: wait for its result. */
        for (o = m->dls; o; o = o->next)
                if (!strcmp(o->sig, sig)) {
                        w->next = o->waiters;
                        o->waiters = w;
                        waiter_attach(w, o);
                        free(sig);
                        free(target_rel);
                        if (w->job)
                                log_info("model download joined one in progress", "modelId", model_id,
                                         "messageId", cmd_job_message_id(w->job), NULL);
                        else
                                log_info("model download joined one in progress", "modelId", model_id, NULL);
                        return 0;
                }
        d = calloc(1, sizeof *d);
        if (!d) {
                free(sig);
                free(w);
                free(target_rel);
                return -ENOMEM;
        }
        d->m = m;
        d->lock_fd = d->stage_fd = -1;
        d->sig = sig;
        d->target_rel = target_rel;
        d->waiters = w;
        d->src = !strcmp(src, "huggingface") ? SRC_HF : !strcmp(src, "minio") ? SRC_S3 : SRC_HTTP;
        d->data = json_incref((json_t *)data);
        d->force = json_is_true(json_object_get(data, "force"));
        d->model_id = strdup(model_id);
        d->source_path = strdup(str_member(data, "sourcePath"));
        d->target_given = strdup(str_member(data, "targetPath"));
        d->revision = dup_or_null(ver);
        r = -ENOMEM;
        if (!d->model_id || !d->source_path || !d->target_given || (ver && !d->revision))
                goto fail;
        if (d->src == SRC_HF) {
                const char *tok = str_member(cred, "token") ? str_member(cred, "token") : m->hf_token;
                r = model_hf_repo_dir(d->source_path, &d->repo_dir);
                if (r < 0)
                        goto fail;
                if (tok && !(d->token = strdup(tok)))
                        goto fail;
                snprintf(d->key, sizeof d->key, "hf-%s", d->repo_dir);
        } else {
                model_cache_key_name(d->target_rel, key);
                snprintf(d->key, sizeof d->key, "t-%s", key);
                if (asprintf(&d->path, "%s/%s", model_cache_dir(m->cache), d->target_rel) < 0) {
                        d->path = NULL;
                        goto fail;
                }
        }
        if (d->src == SRC_S3) {
                const char *ep = str_member(data, "endpoint") ? str_member(data, "endpoint") : m->s3_endpoint;
                const char *user = str_member(cred, "username"), *pass = str_member(cred, "password");
                if (!ep) {
                        waiter_fail(&once, -EINVAL, CMD_E_COMMAND_INVALID,
                                    "no S3 endpoint: set S3_ENDPOINT on the worker or data.endpoint", false, NULL);
                        d->waiters = NULL;
                        free(w);
                        dl_free(d);
                        return 0;
                }
                if (!url_ok(ep)) {
                        r = -EINVAL;
                        goto fail;
                }
                if (!user || !pass) {
                        user = m->s3_access;
                        pass = m->s3_secret;
                }
                if (user && pass && asprintf(&d->userpwd, "%s:%s", user, pass) < 0) {
                        d->userpwd = NULL;
                        goto fail;
                }
                if (!(d->endpoint = strdup(ep)))
                        goto fail;
                r = model_s3_split_path(d->source_path, &d->bucket, &d->prefix);
                if (r < 0)
                        goto fail;
        }
        r = loop_timer_new(m->l, tick_cb, d, &d->tick);
        if (r < 0)
                goto fail;
        waiter_attach(w, d);
        d->next = m->dls;
        m->dls = d;
        /* Another download of the same files: wait for it to finish. */
        for (o = d->next; o; o = o->next)
                if (!strcmp(o->key, d->key)) {
                        d->waiting_lock = true;
                        log_info("model download waits for another one on the same files", "modelId",
                                 model_id, NULL);
                        return 0;
                }
        dl_begin(d);
        return 0;
fail:
        d->waiters = NULL;
        free(w);
        dl_free(d);
        return r;
}

static int fetch_start(cmd_job *job, bool cache) {
        const waiter req = { .job = job };

        return fetch_request(cmd_job_ctx(job), cmd_job_resource_id(job), cmd_job_data(job), cache, &req);
}

static int download_start(cmd_job *job) {
        return fetch_start(job, false);
}

static int cache_start(cmd_job *job) {
        return fetch_start(job, true);
}

static void fetch_cancel(cmd_job *job) {
        dl *d = cmd_job_get_userdata(job);
        waiter **pp;

        if (!d)
                return;
        for (pp = &d->waiters; *pp; pp = &(*pp)->next)
                if ((*pp)->job == job) {
                        waiter *w = *pp;
                        *pp = w->next;
                        free(w);
                        break;
                }
        cmd_job_set_userdata(job, NULL);
        if (!d->waiters) {
                /* Nobody waits any more: stop, keeping the partial files. */
                log_info("model download stopped", "modelId", d->model_id, NULL);
                dl_end(d);
        }
}

/* ---- ensuring a model without a command ---- */

/* Stops the downloads whose last waiter was cancelled: those waiting for a
 * lock first, so that none is started only to be stopped. */
static void reap_cb(loop_timer *t, void *userdata) {
        mctx *m = userdata;
        dl *d, *stop;

        for (;;) {
                stop = NULL;
                for (d = m->dls; d; d = d->next)
                        if (!d->waiters && (!stop || d->waiting_lock))
                                stop = d;
                if (!stop)
                        break;
                log_info("model download stopped", "modelId", stop->model_id, NULL);
                dl_end(stop);
        }
}

int model_cmd_ensure(cmd_engine *e, const char *model_id, const json_t *data, model_ensure_progress_cb progress,
                     model_ensure_done_cb done, void *ud, model_ensure **ret, char *err, size_t errlen) {
        mctx *m = e ? cmd_engine_handler_ctx(e, "model.cache") : NULL;
        json_t *resource = NULL, *copy = NULL;
        model_ensure *h = NULL;
        waiter req = { 0 };
        int r;

        if (errlen)
                err[0] = '\0';
        if (!m)
                return -ENOENT;
        if (!model_id || !*model_id || strlen(model_id) > CMD_MAX_RESOURCE_ID || has_ctl(model_id))
                return bad(err, errlen, "the model id must be a string of 1 to 256 bytes");
        if (!json_is_object(data))
                return bad(err, errlen, "data must be an object");
        resource = json_pack("{s:s,s:s}", "type", "model", "id", model_id);
        if (!resource)
                return -ENOMEM;
        r = validate_fetch(data, resource, err, errlen);
        json_decref(resource);
        if (r < 0)
                return r;
        /* The caller may change data once this returns. */
        copy = json_deep_copy(data);
        h = calloc(1, sizeof *h);
        r = -ENOMEM;
        if (!copy || !h)
                goto out_free;
        r = loop_timer_new(m->l, ensure_deliver, h, &h->timer);
        if (r < 0)
                goto out_free;
        h->m = m;
        h->progress = progress;
        h->done = done;
        h->ud = ud;
        h->next = m->ensures;
        m->ensures = h;
        req.ens = h;
        r = fetch_request(m, model_id, copy, true, &req);
        if (r < 0) {
                snprintf(err, errlen, "cannot start the download: %s", strerror(-r));
                goto out_free;
        }
        h->live = true;
        if (ret)
                *ret = h;
        h = NULL;
        /* The download has taken what it needs of them. */
        json_object_del(copy, "credentials");
        r = 0;
out_free:
        if (h)
                ensure_free(h);
        json_decref(copy);
        return r;
}

void model_ensure_cancel(model_ensure *h) {
        waiter **pp;
        dl *d;

        if (!h || h->delivering || h->cancelled)
                return;
        d = h->d;
        if (d && d->in_cb) {
                /* Inside d's progress calls: emit_progress() reaps it. */
                h->cancelled = true;
                return;
        }
        if (d) {
                for (pp = &d->waiters; *pp; pp = &(*pp)->next)
                        if ((*pp)->ens == h) {
                                waiter *w = *pp;
                                *pp = w->next;
                                free(w);
                                break;
                        }
                if (!d->waiters)
                        loop_timer_arm(h->m->reap, 0);
        }
        ensure_free(h);
}

/* ---- model.delete ---- */

static int delete_validate(const json_t *data, const json_t *resource, char *err, size_t errlen) {
        json_t *v = json_object_get(data, "force");

        if (!json_is_string(json_object_get(resource, "id")) ||
            json_string_length(json_object_get(resource, "id")) == 0)
                return bad(err, errlen, "resource.id (the model id) is required");
        if (v && !json_is_null(v) && !json_is_boolean(v))
                return bad(err, errlen, "data.force must be a boolean");
        if (!opt_str_ok(data, "modelPath", MAX_FIELD))
                return bad(err, errlen, "data.modelPath must be a string of 1 to 4096 bytes");
        return 0;
}

static int delete_estimate(const json_t *data) {
        return 5;
}

static int delete_start(cmd_job *job) {
        mctx *m = cmd_job_ctx(job);
        const json_t *data = cmd_job_data(job);
        const char *model_id = cmd_job_resource_id(job);
        bool force = json_is_true(json_object_get(data, "force"));
        json_t *mf = NULL, *used = NULL, *res;
        char *rel = NULL, *path = NULL, *db_path = NULL, key[MODEL_CACHE_KEY_NAME_MAX],
             lock_key[MODEL_CACHE_KEY_NAME_MAX + 4], stage_key[MODEL_CACHE_KEY_NAME_MAX + 4], now[25], err[300];
        uint64_t freed = 0;
        int r, lock_fd = -1;
        dl *d;

        if (model_cache_manifest_read(m->cache, model_id, &mf) == 0) {
                const char *src = str_member(mf, "source");
                if (src && !strcmp(src, "huggingface")) {
                        char *repo_dir = NULL;
                        if (model_hf_repo_dir(str_member(mf, "sourcePath"), &repo_dir) == 0 &&
                            asprintf(&rel, "%s/%s", MODEL_CACHE_HUB, repo_dir) > 0)
                                snprintf(lock_key, sizeof lock_key, "hf-%s", repo_dir);
                        free(repo_dir);
                } else if (str_member(mf, "targetRel") && model_cache_relpath_valid(str_member(mf, "targetRel"))) {
                        rel = strdup(str_member(mf, "targetRel"));
                }
                if (str_member(mf, "path"))
                        path = strdup(str_member(mf, "path"));
        } else if (str_member(data, "modelPath")) {
                r = model_cache_resolve_target(m->cache, str_member(data, "modelPath"), &rel, err, sizeof err);
                if (r < 0) {
                        char msg[400];
                        snprintf(msg, sizeof msg, "data.modelPath refused: %s", err);
                        cmd_job_fail(job, CMD_E_COMMAND_INVALID, msg, false, NULL);
                        return 0;
                }
        } else if (db_model_get(m->db, model_id, &db_path, NULL, NULL) == 0 && db_path) {
                const char *root = model_cache_dir(m->cache);
                size_t n = strlen(root);
                if (!strncmp(db_path, root, n) && db_path[n] == '/' &&
                    model_cache_resolve_target(m->cache, db_path, &rel, err, sizeof err) == 0)
                        path = strdup(db_path);
        }
        free(db_path);
        if (!rel) {
                json_decref(mf);
                free(path);
                db_model_delete(m->db, model_id);
                cmd_job_fail(job, CMD_E_MODEL_NOT_FOUND, "no such model in the cache", false, NULL);
                return 0;
        }
        if (!path && asprintf(&path, "%s/%s", model_cache_dir(m->cache), rel) < 0)
                path = NULL;
        if (!path) {
                r = -ENOMEM;
                goto out;
        }
        if (!strncmp(rel, MODEL_CACHE_HUB "/", 4)) {
                snprintf(stage_key, sizeof stage_key, "%s", lock_key);
        } else {
                model_cache_key_name(rel, key);
                snprintf(lock_key, sizeof lock_key, "t-%s", key);
                snprintf(stage_key, sizeof stage_key, "%s", lock_key);
        }
        used = model_cache_in_use(path);
        if (used && json_array_size(used) > 0 && !force) {
                cmd_job_fail(job, CMD_E_DEPLOYMENT_ALREADY_RUNNING,
                             "the model is in use by a running deployment (use data.force to delete it anyway)",
                             false, json_pack("{s:O}", "usedBy", used));
                r = 0;
                goto out;
        }
        for (d = m->dls; d; d = d->next)
                if (!strcmp(d->key, lock_key) || !strcmp(d->model_id, model_id))
                        break;
        if (d && !force) {
                cmd_job_fail(job, CMD_E_RESOURCE_EXHAUSTED,
                             "a download of this model is in progress (use data.force to stop it)", true, NULL);
                r = 0;
                goto out;
        }
        while (d) {
                dl_fail(d, -EIO, "the model was deleted while downloading", NULL);
                for (d = m->dls; d; d = d->next)
                        if (!strcmp(d->key, lock_key) || !strcmp(d->model_id, model_id))
                                break;
        }
        r = model_cache_lock(m->cache, lock_key, &lock_fd);
        if (r < 0) {
                cmd_job_fail(job, CMD_E_RESOURCE_EXHAUSTED, "another process is working on this model", true, NULL);
                r = 0;
                goto out;
        }
        r = model_cache_remove_tree(model_cache_fd(m->cache), rel, &freed);
        if (r == 0)
                r = model_cache_staging_remove(m->cache, stage_key);
        if (r == 0)
                r = model_cache_manifest_remove(m->cache, model_id);
        if (r < 0) {
                char msg[300];
                snprintf(msg, sizeof msg, "cannot delete %s: %s", path, strerror(-r));
                cmd_job_fail(job, CMD_E_INTERNAL, msg, true, NULL);
                r = 0;
                goto out;
        }
        db_model_delete(m->db, model_id);
        util_iso_now(now);
        log_info("model deleted", "modelId", model_id, "path", path, NULL);
        res = json_pack("{s:s,s:I,s:s}", "path", path, "freedBytes", (json_int_t)freed, "deletedAt", now);
        cmd_job_succeed(job, res);
        r = 0;
out:
        model_cache_unlock(lock_fd);
        json_decref(used);
        json_decref(mf);
        free(rel);
        free(path);
        return r;
}

/* ---- model.list ---- */

static int list_estimate(const json_t *data) {
        return 1;
}

/* True when every file of the manifest is there with its size. */
static bool manifest_complete(const json_t *mf) {
        const char *path = str_member(mf, "path");
        json_t *files = json_object_get(mf, "files"), *f;
        size_t i;
        int dfd;
        bool ok = true;

        if (!path || !json_is_array(files))
                return false;
        dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return false;
        json_array_foreach(files, i, f) {
                const char *p = str_member(f, "path");
                struct stat st;
                if (!p || !model_cache_relpath_valid(p) || fstatat(dfd, p, &st, 0) < 0 ||
                    !S_ISREG(st.st_mode) || st.st_size != json_integer_value(json_object_get(f, "size"))) {
                        ok = false;
                        break;
                }
        }
        close(dfd);
        return ok;
}

static int list_start(cmd_job *job) {
        mctx *m = cmd_job_ctx(job);
        const json_t *resource = cmd_job_resource(job);
        const char *only = NULL;
        json_t *manifests = NULL, *models = json_array(), *byid = json_object(), *mf, *e;
        sqlite3_stmt *st = NULL;
        const char *k;
        size_t i;
        int r;

        if (resource && str_member(resource, "type") && !strcmp(str_member(resource, "type"), "model") &&
            str_member(resource, "id") && strcmp(str_member(resource, "id"), "*") != 0)
                only = str_member(resource, "id");
        if (!models || !byid) {
                r = -ENOMEM;
                goto out;
        }
        if (model_cache_manifest_all(m->cache, &manifests) == 0) {
                json_array_foreach(manifests, i, mf) {
                        const char *id = str_member(mf, "modelId");
                        if (!id || (only && strcmp(id, only) != 0))
                                continue;
                        e = json_pack("{s:s,s:s,s:I,s:b,s:s}", "modelId", id, "path",
                                      str_member(mf, "path") ? str_member(mf, "path") : "", "sizeBytes",
                                      json_integer_value(json_object_get(mf, "sizeBytes")), "complete",
                                      manifest_complete(mf), "lastUsedAt",
                                      str_member(mf, "completedAt") ? str_member(mf, "completedAt") : "");
                        if (e)
                                json_object_set_new(byid, id, e);
                }
        }
        /* The database adds lastUsedAt and downloads not complete yet. */
        if (db_stmt(m->db, "SELECT id, path, state, updated_at FROM models", &st) == 0) {
                while (sqlite3_step(st) == SQLITE_ROW) {
                        const char *id = (const char *)sqlite3_column_text(st, 0);
                        const char *path = (const char *)sqlite3_column_text(st, 1);
                        const char *state = (const char *)sqlite3_column_text(st, 2);
                        char at[25];
                        if (!id || (only && strcmp(id, only) != 0))
                                continue;
                        util_iso_ms(sqlite3_column_int64(st, 3), at);
                        e = json_object_get(byid, id);
                        if (e) {
                                json_object_set_new(e, "lastUsedAt", json_string(at));
                                continue;
                        }
                        if (state && !strcmp(state, "complete"))
                                continue; /* manifest gone: not in the cache any more */
                        e = json_pack("{s:s,s:s,s:i,s:b,s:s,s:s}", "modelId", id, "path", path ? path : "",
                                      "sizeBytes", 0, "complete", 0, "lastUsedAt", at, "state",
                                      state ? state : "unknown");
                        if (e)
                                json_object_set_new(byid, id, e);
                }
                sqlite3_reset(st);
        }
        json_object_foreach(byid, k, e) {
                json_t *used = model_cache_in_use(str_member(e, "path"));
                json_object_set_new(e, "usedBy", used ? used : json_array());
                json_array_append(models, e);
        }
        cmd_job_succeed(job, json_pack("{s:O}", "models", models));
        r = 0;
out:
        json_decref(manifests);
        json_decref(models);
        json_decref(byid);
        return r;
}

/* ---- registration ---- */

static void mctx_free(void *p) {
        mctx *m = p;

        if (!m)
                return;
        /* Pending handles get no callback; each stays valid for its owner's
         * model_ensure_cancel(). */
        while (m->ensures) {
                model_ensure *h = m->ensures;
                m->ensures = h->next;
                h->next = NULL;
                h->m = NULL;
                h->d = NULL;
                h->timer = loop_timer_free(h->timer);
        }
        m->reap = loop_timer_free(m->reap);
        while (m->dls)
                dl_free(m->dls);
        if (m->own_http)
                http_client_free(m->http);
        model_cache_free(m->cache);
        free(m->hf_endpoint);
        free_secret(&m->hf_token);
        free(m->s3_endpoint);
        free_secret(&m->s3_access);
        free_secret(&m->s3_secret);
        free(m->s3_region);
        free(m->ca_file);
        free(m);
}

static char *cfg_str(const char *v, const char *env, const char *def) {
        if (!v || !*v)
                v = getenv(env);
        if (!v || !*v)
                v = def;
        return v ? strdup(v) : NULL;
}

static uint64_t cfg_num(uint64_t v, const char *env, uint64_t def, uint64_t max) {
        uint64_t n;

        if (v)
                return v > max ? max : v;
        if (getenv(env) && util_parse_u64(getenv(env), &n) == 0 && n > 0)
                return n > max ? max : n;
        return def;
}

int model_cmd_register(cmd_engine *e, const model_cmd_config *cfg) {
        const cmd_host *host = cmd_engine_host(e);
        cmd_handler h;
        char err[300];
        mctx *m;
        int r;

        if (!cfg || !cfg->model_cache_dir || cfg->model_cache_dir[0] != '/')
                return -EINVAL;
        m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        m->e = e;
        m->l = host->l;
        m->db = host->db;
        r = loop_timer_new(m->l, reap_cb, m, &m->reap);
        if (r < 0)
                goto fail;
        r = model_cache_open(cfg->model_cache_dir, &m->cache, err, sizeof err);
        if (r < 0)
                goto fail;
        if (cfg->http) {
                m->http = cfg->http;
        } else {
                r = http_client_new(m->l, &m->http);
                if (r < 0)
                        goto fail;
                m->own_http = true;
        }
        m->hf_endpoint = cfg_str(cfg->hf_endpoint, "HF_ENDPOINT", MODEL_HF_DEFAULT_ENDPOINT);
        m->hf_token = cfg_str(cfg->hf_token, "HF_TOKEN", NULL);
        m->s3_endpoint = cfg_str(cfg->s3_endpoint, "S3_ENDPOINT", NULL);
        m->s3_access = cfg_str(cfg->s3_access_key, "S3_ACCESS_KEY", NULL);
        m->s3_secret = cfg_str(cfg->s3_secret_key, "S3_SECRET_KEY", NULL);
        m->s3_region = cfg_str(cfg->s3_region, "S3_REGION", DEFAULT_REGION);
        m->ca_file = cfg->ca_file ? strdup(cfg->ca_file) : NULL;
        m->max_parallel = (unsigned)cfg_num(cfg->max_parallel_files, "MODEL_MAX_PARALLEL_FILES", 4, 64);
        m->stall_s = (unsigned)cfg_num(cfg->stall_timeout_s, "MODEL_STALL_TIMEOUT", 60, 3600);
        m->retry_base_ms = cfg_num(cfg->retry_base_ms, "MODEL_RETRY_BASE_MS", 500, 60000);
        r = -ENOMEM;
        if (!m->hf_endpoint || !m->s3_region || (cfg->ca_file && !m->ca_file))
                goto fail;
        if (!url_ok(m->hf_endpoint) || (m->s3_endpoint && !url_ok(m->s3_endpoint))) {
                r = -EINVAL;
                goto fail;
        }
        memset(&h, 0, sizeof h);
        h.ctx = m;
        h.ctx_free = mctx_free;
        h.type = "model.download";
        h.validate = validate_fetch;
        h.estimated_duration = estimate_fetch;
        h.start = download_start;
        h.resume = download_start;
        h.cancel = fetch_cancel;
        r = cmd_engine_register(e, &h);
        if (r < 0)
                goto fail;
        h.type = "model.cache";
        h.start = cache_start;
        h.resume = cache_start;
        r = cmd_engine_register(e, &h);
        if (r < 0)
                return r; /* the engine owns m now (ctx of model.download) */
        memset(&h, 0, sizeof h);
        h.ctx = m;
        h.ctx_free = mctx_free;
        h.type = "model.delete";
        h.validate = delete_validate;
        h.estimated_duration = delete_estimate;
        h.start = delete_start;
        h.quick = true;
        r = cmd_engine_register(e, &h);
        if (r < 0)
                return r;
        h.type = "model.list";
        h.validate = NULL;
        h.estimated_duration = list_estimate;
        h.start = list_start;
        return cmd_engine_register(e, &h);
fail:
        mctx_free(m);
        return r;
}
