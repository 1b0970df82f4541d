/* model_fetch: downloads a set of files into a staging directory, on the
 * loop, through core/http.h.
 *
 * For each file, <stage_name> holds the bytes received so far and
 * <stage_name>.meta (JSON: urlSha256, etag, lastModified, size) the validators of
 * the server that sent them. A file is:
 *   1. opened; bytes already there (a previous attempt, a previous process)
 *      are hashed again, a few MiB per loop turn ("verifying"): they are
 *      kept when the .meta names the same URL, or when the content is
 *      checked by a known digest anyway; otherwise dropped. A partial file
 *      already of the expected size needs no request at all;
 *   2. requested with "Range: bytes=<have>-" and "If-Range: <etag or
 *      Last-Modified>" when bytes are kept. 206 continues where the file
 *      ends (Content-Range checked); 200 means the source changed (or the
 *      server ignores ranges): the file restarts from 0 within the same
 *      response; 416 means the file was already complete (when it has the
 *      size the server reports) or restarts from 0;
 *   3. written with pwrite() and hashed (SHA-256 always; MD5 when the
 *      expected S3 ETag is one; the git blob SHA-1 when expected) as bytes
 *      arrive, at most `size` bytes when the size is known;
 *   4. verified: size, then the expected digests. A mismatch after a resumed
 *      transfer restarts the file from 0 once; otherwise the file and its
 *      .meta are deleted and the fetch fails with -EBADMSG.
 * Transfers that break (connection reset, timeout, stall below 1 KiB/s for
 * stall_timeout_s, 5xx, 408, 429) are retried with exponential backoff from
 * where they stopped; max_attempts consecutive failures without a new byte
 * end the fetch. At most max_parallel files transfer at once, in the order
 * they were added.
 *
 * The fetch ends with one call of on_done on a later loop turn (never from
 * inside model_fetch_start()) with 0, or the first fatal error:
 *   -ENOENT (404, 410), -EACCES (401, 403), -ENOSPC / -EDQUOT (disk full:
 *   the partial files stay for a later resume), -EBADMSG (checksum or size
 *   mismatch), -ESTALE (the source changed size during the download),
 *   -EFBIG (more bytes than expected or than max_unknown_size), -EPROTO
 *   (another HTTP status, a bad Content-Range), -ELOOP (a refused redirect),
 *   -EKEYREJECTED (TLS verification), -EIO (local I/O), or the network
 *   error of the last attempt (-ECONNRESET, -ETIMEDOUT, -ECONNREFUSED,
 *   -EHOSTUNREACH). The message never contains credentials.
 * On a fatal error the other transfers are cancelled and their partial files
 * kept. on_done may free the fetch. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/http.h"
#include "core/loop.h"

typedef struct model_fetch model_fetch;

typedef struct model_fetch_config {
        loop *l;
        http_client *http;
        int stage_fd;           /* the staging directory; borrowed, must outlive the fetch */
        const char *bearer;     /* token for "Authorization: Bearer"; copied; NULL: none */
        const char *aws_sigv4;  /* CURLOPT_AWS_SIGV4 ("aws:amz:<region>:s3"), with userpwd; copied */
        const char *userpwd;    /* "access:secret"; copied */
        const char *ca_file;    /* NULL: system store; copied */
        unsigned max_parallel;  /* 0: 4 */
        unsigned max_attempts;  /* consecutive failures without progress; 0: 6 */
        uint64_t retry_base_ms; /* first backoff, doubled each time up to 30 s; 0: 500 */
        uint64_t stall_timeout_s; /* below 1 KiB/s this long: retry; 0: 60 */
        uint64_t max_unknown_size; /* cap for files of unknown size; 0: 1 TiB */
        void (*on_done)(model_fetch *f, int r, const char *message, void *userdata);
        void *userdata;
} model_fetch_config;

/* One file to fetch (strings copied). */
typedef struct model_fetch_spec {
        const char *url;
        const char *stage_name; /* a plain file name inside the staging directory */
        uint64_t size;          /* expected bytes, when size_known */
        bool size_known;
        const char *sha256;     /* expected, 64 hex digits, or NULL */
        const char *md5;        /* expected, 32 hex digits, or NULL */
        const char *git_sha1;   /* expected git blob id (needs size_known), or NULL */
} model_fetch_spec;

typedef struct model_fetch_progress {
        uint64_t bytes_done;    /* bytes on disk, verified or being received */
        uint64_t bytes_total;   /* sum of the sizes, when total_known */
        bool total_known;
        uint64_t speed_bps;     /* network bytes per second, smoothed */
        uint64_t bytes_network; /* bytes received from the network so far */
        bool verifying;         /* some file is re-hashing bytes kept from before */
        size_t files_done, files_total;
} model_fetch_progress;

int model_fetch_new(const model_fetch_config *cfg, model_fetch **ret_fetch);
/* Cancels what runs (no callback; partial files kept). Returns NULL. */
model_fetch *model_fetch_free(model_fetch *f);
/* Adds a file (before model_fetch_start()). -EINVAL for a bad spec. */
int model_fetch_add(model_fetch *f, const model_fetch_spec *spec);
/* Starts; on_done follows on a later turn. -EALREADY when started. */
int model_fetch_start(model_fetch *f);
void model_fetch_get_progress(model_fetch *f, model_fetch_progress *ret);
/* After success: the size and SHA-256 (hex) of file i (in add order). */
int model_fetch_file_result(const model_fetch *f, size_t i, uint64_t *ret_size,
                            char ret_sha256[65]);
