#include "models/model_fetch.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "core/buf.h"
#include "core/util.h"
#include "models/model_cache.h"

#define DEFAULT_PARALLEL 4
#define DEFAULT_ATTEMPTS 6
#define DEFAULT_RETRY_BASE_MS 500
#define MAX_RETRY_MS 30000
#define DEFAULT_STALL_S 60
#define DEFAULT_MAX_UNKNOWN (1ull << 40)
#define HASH_CHUNK (1024 * 1024)
#define HASH_PER_TURN 8 /* chunks per file per loop turn */
#define ERRBODY_MAX 2048
#define VALIDATOR_MAX 256
#define META_MAX 8192
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

enum fstate {
        F_PENDING, /* waiting for a slot */
        F_HASHING, /* re-hashing the bytes kept from before */
        F_ACTIVE,  /* a request runs */
        F_WAIT,    /* backing off before the next attempt */
        F_DONE,    /* verified */
};

typedef struct ffile {
        model_fetch *f;
        size_t idx;
        char *url, *stage, *meta;
        char *shown; /* url without user info and query: for messages */
        char url_hash[65]; /* sha256 of url: what .meta records (no secrets on disk) */
        uint64_t size;
        bool size_known;
        bool size_listed;      /* the size came from the caller, not from a response */
        char sha256[65], md5[33], git_sha1[41];
        enum fstate st;
        int fd;
        EVP_MD_CTX *h256, *hmd5, *hsha1;
        uint64_t off;          /* bytes in the file, all hashed */
        uint64_t req_off;      /* where the current request started */
        uint64_t hash_off;     /* re-hashing cursor */
        bool resumed;          /* kept bytes from an earlier attempt at some point */
        bool restarted;        /* already restarted from 0 after a mismatch */
        char etag[VALIDATOR_MAX], last_modified[VALIDATOR_MAX], meta_url_match;
        http_request *req;
        loop_timer *timer;     /* hashing steps and retries */
        unsigned failures;
        long status;           /* status of the current response */
        bool error_status;     /* a non-2xx response: its body goes to errbody */
        buf errbody;
        int abort_r;           /* why we aborted the transfer */
        char abort_msg[256];
        char got_sha256[65];
} ffile;

struct model_fetch {
        model_fetch_config cfg;
        char *bearer_header, *userpwd, *aws_sigv4, *ca_file;
        ffile **files;
        size_t n, cap;
        size_t next;       /* first file never started */
        unsigned active;   /* files hashing, transferring or waiting */
        size_t done;
        bool started, finished;
        int result;
        char message[512];
        loop_timer *done_timer, *start_timer;
        unsigned char *chunk;
        uint64_t net_bytes;
        uint64_t speed_last_bytes, speed_last_ms;
        double speed;
};

static void file_next_step(ffile *ff);
static void pump(model_fetch *f);

/* ---- small helpers ---- */

static void hexify(const unsigned char *md, unsigned n, char *out) {
        static const char hex[] = "0123456789abcdef";
        unsigned i;

        for (i = 0; i < n; i++) {
                out[2 * i] = hex[md[i] >> 4];
                out[2 * i + 1] = hex[md[i] & 15];
        }
        out[2 * n] = '\0';
}

static bool is_hex_n(const char *s, size_t n) {
        size_t i;

        if (!s || strlen(s) != n)
                return false;
        for (i = 0; i < n; i++)
                if (!strchr("0123456789abcdefABCDEF", s[i]))
                        return false;
        return true;
}

static void lower_copy(char *dst, const char *src, size_t n) {
        size_t i;

        for (i = 0; i < n; i++)
                dst[i] = (char)((src[i] >= 'A' && src[i] <= 'F') ? src[i] - 'A' + 'a' : src[i]);
        dst[n] = '\0';
}

/* The URL without "user:password@" and without the query (presigned URLs
 * carry signatures there): safe for messages and logs. */
static char *display_url(const char *url) {
        const char *scheme = strstr(url, "://"), *host, *at, *end, *q;
        char *out;

        if (!scheme)
                return strdup("(url)");
        host = scheme + 3;
        end = host + strcspn(host, "/?#");
        at = memchr(host, '@', (size_t)(end - host));
        q = host + strcspn(host, "?#");
        if (asprintf(&out, "%.*s%.*s", (int)(host - url), url, (int)(q - (at ? at + 1 : host)),
                     at ? at + 1 : host) < 0)
                return NULL;
        return out;
}

static int hash_reset(ffile *ff) {
        const EVP_MD *md5 = NULL;
        int ok = 1;

        ok &= EVP_DigestInit_ex(ff->h256, EVP_sha256(), NULL);
        if (ff->hmd5) {
                md5 = EVP_md5();
                ok &= md5 && EVP_DigestInit_ex(ff->hmd5, md5, NULL);
        }
        if (ff->hsha1) {
                char head[48];
                int n = snprintf(head, sizeof head, "blob %llu", (unsigned long long)ff->size);
                ok &= EVP_DigestInit_ex(ff->hsha1, EVP_sha1(), NULL);
                ok &= EVP_DigestUpdate(ff->hsha1, head, (size_t)n + 1); /* with the NUL */
        }
        return ok ? 0 : -EIO;
}

static int hash_update(ffile *ff, const void *data, size_t len) {
        int ok = EVP_DigestUpdate(ff->h256, data, len);

        if (ff->hmd5)
                ok &= EVP_DigestUpdate(ff->hmd5, data, len);
        if (ff->hsha1)
                ok &= EVP_DigestUpdate(ff->hsha1, data, len);
        return ok ? 0 : -EIO;
}

/* ---- the end of the fetch ---- */

static void done_cb(loop_timer *t, void *userdata) {
        model_fetch *f = userdata;

        /* Last statement: the owner may free f from on_done. */
        f->cfg.on_done(f, f->result, f->message[0] ? f->message : NULL, f->cfg.userdata);
}

static void file_stop(ffile *ff) {
        if (ff->req) {
                http_request_cancel(ff->req);
                ff->req = NULL;
        }
        loop_timer_disarm(ff->timer);
        if (ff->fd >= 0) {
                close(ff->fd);
                ff->fd = -1;
        }
}

static void finish(model_fetch *f, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void finish(model_fetch *f, int r, const char *fmt, ...) {
        va_list ap;
        size_t i;

        if (f->finished)
                return;
        f->finished = true;
        f->result = r;
        if (fmt) {
                va_start(ap, fmt);
                vsnprintf(f->message, sizeof f->message, fmt, ap);
                va_end(ap);
        }
        if (r < 0)
                for (i = 0; i < f->n; i++)
                        if (f->files[i]->st != F_DONE)
                                file_stop(f->files[i]);
        loop_timer_arm(f->done_timer, 0);
}

/* A file failed fatally: the whole fetch ends. */
static void file_fatal(ffile *ff, int r, const char *msg) {
        ff->st = F_WAIT;
        finish(ff->f, r, "%s", msg);
}

/* ---- metadata of partial files ---- */

static void meta_write(ffile *ff) {
        json_t *m = json_pack("{s:s,s:s,s:s}", "urlSha256", ff->url_hash, "etag", ff->etag, "lastModified",
                              ff->last_modified);
        char *s;

        if (!m)
                return;
        if (ff->size_known)
                json_object_set_new(m, "size", json_integer((json_int_t)ff->size));
        s = json_dumps(m, JSON_COMPACT);
        json_decref(m);
        if (s) {
                /* Best effort: without it a later resume restarts from 0. */
                model_cache_write_atomic(ff->f->cfg.stage_fd, ff->meta, s, strlen(s), 0644);
                free(s);
        }
}

/* Reads the .meta of a partial file: fills etag/last_modified and tells
 * whether it was for the same URL. */
static void meta_read(ffile *ff) {
        char text[META_MAX + 1];
        ssize_t n;
        json_t *m;
        int fd;

        ff->etag[0] = ff->last_modified[0] = '\0';
        ff->meta_url_match = 0;
        fd = openat(ff->f->cfg.stage_fd, ff->meta, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return;
        n = read(fd, text, META_MAX);
        close(fd);
        if (n <= 0)
                return;
        m = json_loadb(text, (size_t)n, 0, NULL);
        if (json_is_object(m)) {
                const char *u = json_string_value(json_object_get(m, "urlSha256"));
                const char *e = json_string_value(json_object_get(m, "etag"));
                const char *lm = json_string_value(json_object_get(m, "lastModified"));
                ff->meta_url_match = u && strcmp(u, ff->url_hash) == 0;
                if (e)
                        util_strlcpy(ff->etag, e, sizeof ff->etag);
                if (lm)
                        util_strlcpy(ff->last_modified, lm, sizeof ff->last_modified);
        }
        json_decref(m);
}

static int truncate_to_zero(ffile *ff) {
        if (ftruncate(ff->fd, 0) < 0)
                return -errno;
        ff->off = 0;
        ff->hash_off = 0;
        ff->etag[0] = ff->last_modified[0] = '\0';
        return hash_reset(ff);
}

/* ---- verification ---- */

static void file_verified(ffile *ff) {
        model_fetch *f = ff->f;

        if (fsync(ff->fd) < 0) {
                int r = -errno;
                char msg[300];
                snprintf(msg, sizeof msg, "cannot sync %s: %s", ff->stage, strerror(-r));
                file_fatal(ff, r == -ENOSPC || r == -EDQUOT ? r : -EIO, msg);
                return;
        }
        close(ff->fd);
        ff->fd = -1;
        unlinkat(f->cfg.stage_fd, ff->meta, 0);
        ff->st = F_DONE;
        f->done++;
        f->active--;
        if (f->done == f->n)
                finish(f, 0, NULL);
        else
                pump(f);
}

/* All bytes are in: compare sizes and digests. */
static void file_verify(ffile *ff) {
        unsigned char md[EVP_MAX_MD_SIZE];
        char got[65], msg[400];
        unsigned n = 0;
        const char *what = NULL, *want = NULL;

        if (ff->size_known && ff->off != ff->size) {
                snprintf(msg, sizeof msg, "%s: got %llu bytes, expected %llu", ff->stage,
                         (unsigned long long)ff->off, (unsigned long long)ff->size);
                file_fatal(ff, -EBADMSG, msg);
                return;
        }
        EVP_DigestFinal_ex(ff->h256, md, &n);
        hexify(md, n, ff->got_sha256);
        if (ff->sha256[0] && strcmp(ff->got_sha256, ff->sha256) != 0) {
                what = "sha256";
                want = ff->sha256;
                memcpy(got, ff->got_sha256, sizeof got);
        }
        if (!what && ff->hmd5) {
                EVP_DigestFinal_ex(ff->hmd5, md, &n);
                hexify(md, n, got);
                if (strcmp(got, ff->md5) != 0) {
                        what = "md5 (S3 ETag)";
                        want = ff->md5;
                }
        }
        if (!what && ff->hsha1) {
                EVP_DigestFinal_ex(ff->hsha1, md, &n);
                hexify(md, n, got);
                if (strcmp(got, ff->git_sha1) != 0) {
                        what = "git blob sha1";
                        want = ff->git_sha1;
                }
        }
        if (!what) {
                file_verified(ff);
                return;
        }
        if (ff->resumed && !ff->restarted) {
                /* The kept bytes may have come from another version of the
                 * source: one more try from scratch. */
                int r;
                ff->restarted = true;
                ff->resumed = false;
                r = truncate_to_zero(ff);
                if (r < 0) {
                        file_fatal(ff, -EIO, "cannot truncate a partial file");
                        return;
                }
                unlinkat(ff->f->cfg.stage_fd, ff->meta, 0);
                ff->st = F_WAIT;
                loop_timer_arm(ff->timer, 0);
                return;
        }
        snprintf(msg, sizeof msg, "checksum mismatch for %s: %s %s, expected %s", ff->shown, what, got,
                 want);
        close(ff->fd);
        ff->fd = -1;
        unlinkat(ff->f->cfg.stage_fd, ff->stage, 0);
        unlinkat(ff->f->cfg.stage_fd, ff->meta, 0);
        file_fatal(ff, -EBADMSG, msg);
}

/* ---- transfers ---- */

static int on_headers(http_request *req, long status, void *userdata) {
        ffile *ff = userdata;
        const char *v;
        char msg[256];

        ff->status = status;
        ff->error_status = false;
        if (status == 416) {
                ff->abort_r = -ERANGE;
                return -ERANGE;
        }
        if (status < 200 || status > 299) {
                ff->error_status = true;
                buf_reset(&ff->errbody);
                return 0;
        }
        if (status == 206) {
                unsigned long long a = 0, b = 0, total = 0;
                v = http_request_header(req, "Content-Range");
                if (!v || sscanf(v, "bytes %llu-%llu/%llu", &a, &b, &total) != 3 || a != ff->req_off ||
                    b < a) {
                        snprintf(msg, sizeof msg, "bad Content-Range from the server: %.80s",
                                 v ? v : "(none)");
                        util_strlcpy(ff->abort_msg, msg, sizeof ff->abort_msg);
                        ff->abort_r = -EPROTO;
                        return -EPROTO;
                }
                if (ff->size_listed && total != ff->size) {
                        snprintf(ff->abort_msg, sizeof ff->abort_msg,
                                 "the source changed: %llu bytes now, %llu listed", total,
                                 (unsigned long long)ff->size);
                        ff->abort_r = -ESTALE;
                        return -ESTALE;
                }
                if (total < ff->off) {
                        ff->abort_r = -EPROTO;
                        snprintf(ff->abort_msg, sizeof ff->abort_msg, "bad Content-Range from the server");
                        return -EPROTO;
                }
                ff->size = total;
                ff->size_known = true;
        } else {
                unsigned long long cl = 0;
                if (ff->off > 0) {
                        /* The validator no longer matched (or ranges are not
                         * supported): the whole new content follows. */
                        int r = truncate_to_zero(ff);
                        if (r < 0) {
                                ff->abort_r = -EIO;
                                return -EIO;
                        }
                }
                ff->req_off = 0;
                v = http_request_header(req, "Content-Length");
                if (v && sscanf(v, "%llu", &cl) == 1) {
                        if (ff->size_listed && cl != ff->size) {
                                snprintf(ff->abort_msg, sizeof ff->abort_msg,
                                         "the source changed: %llu bytes now, %llu listed", cl,
                                         (unsigned long long)ff->size);
                                ff->abort_r = -ESTALE;
                                return -ESTALE;
                        }
                        ff->size = cl;
                        ff->size_known = true;
                }
        }
        v = http_request_header(req, "ETag");
        util_strlcpy(ff->etag, v ? v : "", sizeof ff->etag);
        v = http_request_header(req, "Last-Modified");
        util_strlcpy(ff->last_modified, v ? v : "", sizeof ff->last_modified);
        meta_write(ff);
        return 0;
}

static int on_data(http_request *req, const void *data, size_t len, void *userdata) {
        ffile *ff = userdata;
        const char *p = data;
        size_t left = len;
        uint64_t cap;

        if (ff->error_status) {
                if (ff->errbody.len + len > ERRBODY_MAX)
                        len = ERRBODY_MAX - ff->errbody.len;
                buf_append(&ff->errbody, data, len);
                return 0;
        }
        cap = ff->size_known ? ff->size : ff->f->cfg.max_unknown_size;
        if (ff->off + len > cap) {
                snprintf(ff->abort_msg, sizeof ff->abort_msg, "%s: the server sent more than %llu bytes",
                         ff->stage, (unsigned long long)cap);
                ff->abort_r = -EFBIG;
                return -EFBIG;
        }
        while (left > 0) {
                ssize_t w = pwrite(ff->fd, p, left, (off_t)(ff->off + (uint64_t)(p - (const char *)data)));
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0) {
                        int r = -errno;
                        snprintf(ff->abort_msg, sizeof ff->abort_msg, "cannot write %s: %s", ff->stage,
                                 strerror(-r));
                        ff->abort_r = (r == -ENOSPC || r == -EDQUOT) ? r : -EIO;
                        /* Keep the file consistent with what was hashed. */
                        if (ftruncate(ff->fd, (off_t)ff->off) < 0) {
                                /* The bytes past off are ignored on resume anyway. */
                        }
                        return ff->abort_r;
                }
                p += w;
                left -= (size_t)w;
        }
        if (hash_update(ff, data, len) < 0) {
                ff->abort_r = -EIO;
                return -EIO;
        }
        ff->off += len;
        ff->f->net_bytes += len;
        return 0;
}

static bool transient_status(long s) {
        return s == 408 || s == 425 || s == 429 || (s >= 500 && s <= 599);
}

static void retry_later(ffile *ff, int r, const char *why) {
        model_fetch *f = ff->f;
        uint64_t delay;
        char msg[560];

        if (ff->off > ff->req_off)
                ff->failures = 0;
        ff->failures++;
        if (ff->failures >= f->cfg.max_attempts) {
                snprintf(msg, sizeof msg, "%.200s: %.300s (gave up after %u attempts)", ff->shown, why,
                         ff->failures);
                file_fatal(ff, r, msg);
                return;
        }
        delay = f->cfg.retry_base_ms << (ff->failures - 1 < 16 ? ff->failures - 1 : 16);
        if (delay > MAX_RETRY_MS)
                delay = MAX_RETRY_MS;
        ff->st = F_WAIT;
        loop_timer_arm(ff->timer, delay);
}

static void on_done(http_request *req, const http_result *res, void *userdata) {
        ffile *ff = userdata;
        int r = res->err;
        char why[400];

        ff->req = NULL;
        if (r == -ECANCELED || r == -E2BIG || ff->abort_r) {
                r = ff->abort_r ? ff->abort_r : r;
                ff->abort_r = 0;
        }
        if (r == -ERANGE) {
                unsigned long long total = 0;
                const char *v = http_request_header(req, "Content-Range");
                bool complete = ff->size_known ? ff->off == ff->size
                                               : (v && sscanf(v, "bytes */%llu", &total) == 1 &&
                                                  total == ff->off);
                if (complete) {
                        file_verify(ff);
                        return;
                }
                if (truncate_to_zero(ff) < 0) {
                        file_fatal(ff, -EIO, "cannot truncate a partial file");
                        return;
                }
                retry_later(ff, -EPROTO, "the server refused the range");
                return;
        }
        if (r == -ESTALE) {
                /* A lying or changing server: retried, fatal when it persists. */
                snprintf(why, sizeof why, "%s", ff->abort_msg);
                retry_later(ff, r, why);
                return;
        }
        if (r == -ENOSPC || r == -EDQUOT || r == -EIO || r == -EFBIG) {
                file_fatal(ff, r, ff->abort_msg[0] ? ff->abort_msg : strerror(-r));
                return;
        }
        if (ff->error_status || (r == 0 && (res->status < 200 || res->status > 299))) {
                long s = res->status ? res->status : ff->status;
                size_t i;
                /* A short, printable excerpt of the error body. */
                for (i = 0; i < ff->errbody.len; i++)
                        if ((unsigned char)ff->errbody.data[i] < 0x20)
                                ff->errbody.data[i] = ' ';
                snprintf(why, sizeof why, "HTTP %ld from %s%s%.200s", s, ff->shown,
                         ff->errbody.len ? ": " : "", ff->errbody.len ? ff->errbody.data : "");
                if (s == 404 || s == 410)
                        file_fatal(ff, -ENOENT, why);
                else if (s == 401 || s == 403)
                        file_fatal(ff, -EACCES, why);
                else if (transient_status(s))
                        retry_later(ff, -EPROTO, why);
                else
                        file_fatal(ff, -EPROTO, why);
                return;
        }
        if (r == -ELOOP || r == -EKEYREJECTED || r == -EPROTO) {
                snprintf(why, sizeof why, "%s: %s", ff->shown,
                         ff->abort_msg[0] ? ff->abort_msg : res->error);
                if (r == -EPROTO && !ff->abort_msg[0]) {
                        retry_later(ff, r, why); /* TLS handshake trouble */
                        return;
                }
                file_fatal(ff, r, why);
                return;
        }
        if (r < 0) {
                snprintf(why, sizeof why, "%s", res->error && res->error[0] ? res->error : strerror(-r));
                retry_later(ff, r, why);
                return;
        }
        if (ff->size_known && ff->off < ff->size) {
                retry_later(ff, -ECONNRESET, "the connection ended early");
                return;
        }
        file_verify(ff);
}

static void file_request(ffile *ff) {
        model_fetch *f = ff->f;
        const char *headers[6];
        char range[64], ifrange[VALIDATOR_MAX + 16];
        size_t nh = 0;
        http_options o = {
                .url = ff->url,
                .follow_redirects = true,
                .low_speed_limit = 1024,
                .low_speed_time_s = (long)f->cfg.stall_timeout_s,
                .aws_sigv4 = f->aws_sigv4,
                .userpwd = f->userpwd,
                .ca_file = f->ca_file,
                .on_data = on_data,
                .on_headers = on_headers,
        };
        int r;

        if (f->bearer_header)
                headers[nh++] = f->bearer_header;
        if (f->aws_sigv4)
                headers[nh++] = "x-amz-content-sha256: " EMPTY_SHA256;
        if (ff->off > 0) {
                snprintf(range, sizeof range, "Range: bytes=%llu-", (unsigned long long)ff->off);
                headers[nh++] = range;
                /* A weak ETag cannot validate a range. */
                if (ff->etag[0] && strncmp(ff->etag, "W/", 2) != 0) {
                        snprintf(ifrange, sizeof ifrange, "If-Range: %s", ff->etag);
                        headers[nh++] = ifrange;
                } else if (ff->last_modified[0]) {
                        snprintf(ifrange, sizeof ifrange, "If-Range: %s", ff->last_modified);
                        headers[nh++] = ifrange;
                }
        }
        headers[nh] = NULL;
        o.headers = headers;
        ff->req_off = ff->off;
        ff->status = 0;
        ff->error_status = false;
        ff->abort_r = 0;
        ff->abort_msg[0] = '\0';
        buf_reset(&ff->errbody);
        ff->st = F_ACTIVE;
        r = http_request_start(f->cfg.http, &o, on_done, ff, &ff->req);
        if (r < 0) {
                ff->req = NULL;
                file_fatal(ff, r, "cannot start an HTTP request");
        }
}

/* Re-hashes a few MiB of the kept bytes; then verifies or requests. */
static void file_hash_step(ffile *ff) {
        model_fetch *f = ff->f;
        int i;

        for (i = 0; i < HASH_PER_TURN && ff->hash_off < ff->off; i++) {
                uint64_t want = ff->off - ff->hash_off;
                ssize_t n = pread(ff->fd, f->chunk, want < HASH_CHUNK ? (size_t)want : HASH_CHUNK,
                                  (off_t)ff->hash_off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        /* Shorter than fstat said: keep what was hashed. */
                        if (ftruncate(ff->fd, (off_t)ff->hash_off) < 0) {
                                file_fatal(ff, -EIO, "cannot read back a partial file");
                                return;
                        }
                        ff->off = ff->hash_off;
                        break;
                }
                if (hash_update(ff, f->chunk, (size_t)n) < 0) {
                        file_fatal(ff, -EIO, "hashing failed");
                        return;
                }
                ff->hash_off += (uint64_t)n;
        }
        if (ff->hash_off < ff->off) {
                loop_timer_arm(ff->timer, 0);
                return;
        }
        if (ff->size_known && ff->off == ff->size && ff->off > 0) {
                file_verify(ff);
                return;
        }
        file_request(ff);
}

/* Opens the partial file and decides what to keep. */
static void file_begin(ffile *ff) {
        model_fetch *f = ff->f;
        struct stat st;
        bool keep;

        ff->fd = openat(f->cfg.stage_fd, ff->stage, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (ff->fd < 0 || fstat(ff->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                char msg[300];
                snprintf(msg, sizeof msg, "cannot open the staging file %s: %s", ff->stage,
                         strerror(errno));
                file_fatal(ff, errno == ENOSPC || errno == EDQUOT ? -errno : -EIO, msg);
                return;
        }
        if (hash_reset(ff) < 0) {
                file_fatal(ff, -EIO, "cannot initialise hashing");
                return;
        }
        meta_read(ff);
        ff->off = (uint64_t)st.st_size;
        keep = ff->off > 0 && (ff->meta_url_match || ff->sha256[0] || ff->hsha1 || ff->hmd5);
        if (ff->size_known && ff->off > ff->size)
                keep = false;
        if (!keep && ff->off > 0 && truncate_to_zero(ff) < 0) {
                file_fatal(ff, -EIO, "cannot truncate a partial file");
                return;
        }
        if (!ff->meta_url_match)
                ff->etag[0] = ff->last_modified[0] = '\0';
        ff->resumed = ff->off > 0;
        ff->hash_off = 0;
        if (ff->off > 0) {
                ff->st = F_HASHING;
                loop_timer_arm(ff->timer, 0);
                return;
        }
        file_request(ff);
}

static void file_timer_cb(loop_timer *t, void *userdata) {
        file_next_step(userdata);
}

static void file_next_step(ffile *ff) {
        if (ff->f->finished)
                return;
        if (ff->st == F_HASHING)
                file_hash_step(ff);
        else if (ff->st == F_WAIT)
                file_request(ff);
}

static void pump(model_fetch *f) {
        while (!f->finished && f->active < f->cfg.max_parallel && f->next < f->n) {
                ffile *ff = f->files[f->next++];
                f->active++;
                file_begin(ff);
        }
}

static void start_cb(loop_timer *t, void *userdata) {
        model_fetch *f = userdata;

        if (f->n == 0) {
                finish(f, 0, NULL);
                return;
        }
        pump(f);
}

/* ---- public ---- */

int model_fetch_new(const model_fetch_config *cfg, model_fetch **ret_fetch) {
        model_fetch *f;
        int r;

        if (!cfg || !cfg->l || !cfg->http || cfg->stage_fd < 0 || !cfg->on_done)
                return -EINVAL;
        f = calloc(1, sizeof *f);
        if (!f)
                return -ENOMEM;
        f->cfg = *cfg;
        /* Strings are copied below; the caller's may go away. */
        f->cfg.bearer = NULL;
        f->cfg.userpwd = NULL;
        f->cfg.aws_sigv4 = NULL;
        f->cfg.ca_file = NULL;
        if (!f->cfg.max_parallel)
                f->cfg.max_parallel = DEFAULT_PARALLEL;
        if (!f->cfg.max_attempts)
                f->cfg.max_attempts = DEFAULT_ATTEMPTS;
        if (!f->cfg.retry_base_ms)
                f->cfg.retry_base_ms = DEFAULT_RETRY_BASE_MS;
        if (!f->cfg.stall_timeout_s)
                f->cfg.stall_timeout_s = DEFAULT_STALL_S;
        if (!f->cfg.max_unknown_size)
                f->cfg.max_unknown_size = DEFAULT_MAX_UNKNOWN;
        r = -ENOMEM;
        if (cfg->bearer && asprintf(&f->bearer_header, "Authorization: Bearer %s", cfg->bearer) < 0) {
                f->bearer_header = NULL;
                goto fail;
        }
        if (cfg->userpwd && !(f->userpwd = strdup(cfg->userpwd)))
                goto fail;
        if (cfg->aws_sigv4 && !(f->aws_sigv4 = strdup(cfg->aws_sigv4)))
                goto fail;
        if (cfg->ca_file && !(f->ca_file = strdup(cfg->ca_file)))
                goto fail;
        f->chunk = malloc(HASH_CHUNK);
        if (!f->chunk)
                goto fail;
        r = loop_timer_new(cfg->l, done_cb, f, &f->done_timer);
        if (r == 0)
                r = loop_timer_new(cfg->l, start_cb, f, &f->start_timer);
        if (r < 0)
                goto fail;
        f->speed_last_ms = loop_now(cfg->l);
        *ret_fetch = f;
        return 0;
fail:
        model_fetch_free(f);
        return r;
}

static void ffile_free(ffile *ff) {
        if (!ff)
                return;
        file_stop(ff);
        loop_timer_free(ff->timer);
        EVP_MD_CTX_free(ff->h256);
        EVP_MD_CTX_free(ff->hmd5);
        EVP_MD_CTX_free(ff->hsha1);
        buf_done(&ff->errbody);
        free(ff->url);
        free(ff->shown);
        free(ff->stage);
        free(ff->meta);
        free(ff);
}

model_fetch *model_fetch_free(model_fetch *f) {
        size_t i;

        if (!f)
                return NULL;
        for (i = 0; i < f->n; i++)
                ffile_free(f->files[i]);
        free(f->files);
        loop_timer_free(f->done_timer);
        loop_timer_free(f->start_timer);
        if (f->bearer_header) {
                explicit_bzero(f->bearer_header, strlen(f->bearer_header));
                free(f->bearer_header);
        }
        if (f->userpwd) {
                explicit_bzero(f->userpwd, strlen(f->userpwd));
                free(f->userpwd);
        }
        free(f->aws_sigv4);
        free(f->ca_file);
        free(f->chunk);
        free(f);
        return NULL;
}

int model_fetch_add(model_fetch *f, const model_fetch_spec *spec) {
        ffile *ff;
        int r = -ENOMEM;

        if (f->started)
                return -EALREADY;
        if (!spec || !spec->url || !spec->stage_name || !spec->stage_name[0] ||
            strchr(spec->stage_name, '/') || spec->stage_name[0] == '.' ||
            strlen(spec->stage_name) > 200 || (spec->sha256 && !is_hex_n(spec->sha256, 64)) ||
            (spec->md5 && !is_hex_n(spec->md5, 32)) ||
            (spec->git_sha1 && (!is_hex_n(spec->git_sha1, 40) || !spec->size_known)))
                return -EINVAL;
        if (f->n == f->cap) {
                size_t ncap = f->cap ? f->cap * 2 : 16;
                ffile **nf = realloc(f->files, ncap * sizeof *nf);
                if (!nf)
                        return -ENOMEM;
                f->files = nf;
                f->cap = ncap;
        }
        ff = calloc(1, sizeof *ff);
        if (!ff)
                return -ENOMEM;
        ff->f = f;
        ff->idx = f->n;
        ff->fd = -1;
        buf_init(&ff->errbody, ERRBODY_MAX + 1);
        ff->url = strdup(spec->url);
        ff->shown = display_url(spec->url);
        ff->stage = strdup(spec->stage_name);
        if (asprintf(&ff->meta, "%s.meta", spec->stage_name) < 0)
                ff->meta = NULL;
        ff->h256 = EVP_MD_CTX_new();
        if (!ff->url || !ff->shown || !ff->stage || !ff->meta || !ff->h256)
                goto fail;
        if (spec->md5 && !(ff->hmd5 = EVP_MD_CTX_new()))
                goto fail;
        if (spec->git_sha1 && !(ff->hsha1 = EVP_MD_CTX_new()))
                goto fail;
        {
                unsigned char md[EVP_MAX_MD_SIZE];
                unsigned int mdlen = 0;
                if (!EVP_Digest(spec->url, strlen(spec->url), md, &mdlen, EVP_sha256(), NULL))
                        goto fail;
                hexify(md, mdlen, ff->url_hash);
        }
        ff->size = spec->size;
        ff->size_known = spec->size_known;
        ff->size_listed = spec->size_known;
        if (spec->sha256)
                lower_copy(ff->sha256, spec->sha256, 64);
        if (spec->md5)
                lower_copy(ff->md5, spec->md5, 32);
        if (spec->git_sha1)
                lower_copy(ff->git_sha1, spec->git_sha1, 40);
        r = loop_timer_new(f->cfg.l, file_timer_cb, ff, &ff->timer);
        if (r < 0)
                goto fail;
        f->files[f->n++] = ff;
        return 0;
fail:
        ffile_free(ff);
        return r;
}

int model_fetch_start(model_fetch *f) {
        if (f->started)
                return -EALREADY;
        f->started = true;
        /* Everything begins on a later turn, errors included. */
        loop_timer_arm(f->start_timer, 0);
        return 0;
}

void model_fetch_get_progress(model_fetch *f, model_fetch_progress *ret) {
        model_fetch_progress p;
        uint64_t now = loop_now_update(f->cfg.l);
        size_t i;

        memset(&p, 0, sizeof p);
        p.total_known = true;
        for (i = 0; i < f->n; i++) {
                ffile *ff = f->files[i];
                p.bytes_done += ff->off;
                if (ff->size_known)
                        p.bytes_total += ff->size;
                else
                        p.total_known = false;
                if (ff->st == F_HASHING)
                        p.verifying = true;
        }
        if (!p.total_known)
                p.bytes_total = 0;
        if (now > f->speed_last_ms + 200) {
                double inst = (double)(f->net_bytes - f->speed_last_bytes) * 1000.0 /
                              (double)(now - f->speed_last_ms);
                f->speed = f->speed == 0 ? inst : 0.5 * f->speed + 0.5 * inst;
                f->speed_last_bytes = f->net_bytes;
                f->speed_last_ms = now;
        }
        p.speed_bps = (uint64_t)f->speed;
        p.bytes_network = f->net_bytes;
        p.files_done = f->done;
        p.files_total = f->n;
        *ret = p;
}

int model_fetch_file_result(const model_fetch *f, size_t i, uint64_t *ret_size,
                            char ret_sha256[65]) {
        if (i >= f->n || f->files[i]->st != F_DONE)
                return -ENOENT;
        *ret_size = f->files[i]->off;
        memcpy(ret_sha256, f->files[i]->got_sha256, 65);
        return 0;
}
