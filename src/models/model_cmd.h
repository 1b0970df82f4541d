/* model_cmd: the model.* commands (PROTOCOL.md §3.5, §3.7).
 *
 *   model.download  fetches a model into MODEL_CACHE_DIR:
 *     source "huggingface": sourcePath a repo id, version a revision
 *       (default main); the revision's files are listed through the Hub's
 *       API, filtered by data.include / data.exclude (fnmatch patterns, as
 *       huggingface_hub's allow/ignore_patterns) and stored in the
 *       huggingface_hub cache layout under <cache>/hub (path: the snapshot
 *       directory); credentials.token (else HF_TOKEN) as bearer token;
 *     source "minio": sourcePath "bucket[/prefix]" listed with ListObjectsV2
 *       (all pages) at data.endpoint or S3_ENDPOINT, signed with AWS SigV4
 *       from credentials.username/password or S3_ACCESS_KEY/S3_SECRET_KEY
 *       (anonymous when none), region S3_REGION (default us-east-1); objects
 *       land under <cache>/<targetPath>/<key below the prefix>;
 *     source "http": sourcePath one http(s) URL saved as
 *       <targetPath>/<data.filename or the URL's last segment>, verified
 *       against data.sha256 when given; or data.files [{url, path, sha256?}].
 *   targetPath must resolve inside MODEL_CACHE_DIR (else 2001). Downloads
 *   resume (Range + If-Range), verify (sha256, S3 MD5 ETags, git blob ids),
 *   check free space first when sizes are known (3003 with neededBytes and
 *   availableBytes), report model.downloadProgress at most once a second and
 *   once at the end, and continue after a worker restart from their staging
 *   files. Identical concurrent requests for one model share one transfer;
 *   different requests for the same files wait for each other. Files already
 *   in place with the size and digest of the manifest are not fetched again.
 *   Result: {downloadedAt, path, sizeBytes, files, source, revision?}.
 *   command.ack estimatedDuration: 300 s (the size is unknown at ack time;
 *   the original worker's value).
 *
 *   model.cache     the same fields: {path, sizeBytes, alreadyCached,
 *                   cachedAt}; no network at all when the model's manifest
 *                   says it is complete and every file is there with its size.
 *   model.delete    removes the model's files (Hugging Face: its whole
 *                   hub/models--org--name entry), staging files and manifest:
 *                   {path, freedBytes, deletedAt}; 2007 with details.usedBy
 *                   while a running deployment mounts it (unless data.force);
 *                   2003 when unknown.
 *   model.list      {models: [{modelId, path, sizeBytes, complete, lastUsedAt,
 *                   usedBy}]} from the manifests and the database; resource.id
 *                   other than "*" selects one model.
 *
 * Credentials are never logged, never written to disk (manifests and
 * partial-file metadata keep a hash of URLs, never tokens or keys). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "commands/cmd.h"
#include "core/http.h"

typedef struct model_cmd_config {
        const char *model_cache_dir;   /* required, absolute */
        /* Unset (NULL / 0) fields are read from the environment variable
         * named, then get the default. */
        const char *hf_endpoint;       /* HF_ENDPOINT; https://huggingface.co */
        const char *hf_token;          /* HF_TOKEN; none */
        const char *s3_endpoint;       /* S3_ENDPOINT; none (then data.endpoint is needed) */
        const char *s3_access_key;     /* S3_ACCESS_KEY; none (anonymous) */
        const char *s3_secret_key;     /* S3_SECRET_KEY */
        const char *s3_region;         /* S3_REGION; us-east-1 */
        unsigned max_parallel_files;   /* MODEL_MAX_PARALLEL_FILES; 4 (1..64) */
        unsigned stall_timeout_s;      /* MODEL_STALL_TIMEOUT; 60 s below 1 KiB/s */
        uint64_t retry_base_ms;        /* MODEL_RETRY_BASE_MS; 500 */
        const char *ca_file;           /* TLS trust for downloads; NULL: system store */
        http_client *http;             /* NULL: a client of its own on the engine's loop */
} model_cmd_config;

/* Registers model.download, model.cache, model.delete and model.list on e
 * (before cmd_engine_start(), so that interrupted downloads resume). Opens
 * (creates) the cache directory and its .staging, .manifests, .locks and hub
 * directories. Returns 0 or a negative errno (-EINVAL: no or a relative
 * model_cache_dir; else the error of creating or opening it). */
int model_cmd_register(cmd_engine *e, const model_cmd_config *cfg);

/* ---- ensuring a model without a command (deployments) ----
 *
 * The download machinery of model.cache for other modules: the same
 * coalescing, locks, resume, verification, manifests and progress, with
 * callbacks instead of command results and events. */

typedef struct model_ensure model_ensure;

/* progress: the data object model.downloadProgress would carry (borrowed,
 * valid during the call): {modelId, status, bytesDownloaded, bytesTotal,
 * progress, speedBps, etaSeconds}, without originalMessageId; at most once a
 * second while transferring and once at the end, never from inside
 * model_cmd_ensure() and never for a model already complete. */
typedef void (*model_ensure_progress_cb)(const json_t *progress, void *ud);
/* done: r 0 with path (the model's absolute local path; for Hugging Face the
 * snapshot directory) and size_bytes, code and message NULL; or r < 0 (a
 * negative errno) with code (a PROTOCOL.md §4.5 code string: the code a
 * model.cache command would fail with, e.g. "2001", "2003", "3001", "3003",
 * "3004") and a one-line message, path NULL. Everything is borrowed for the
 * call. Always on a later loop turn than model_cmd_ensure(); the handle is
 * freed after done returns (model_ensure_cancel() on it from inside done does
 * nothing). */
typedef void (*model_ensure_done_cb)(int r, const char *path, uint64_t size_bytes, const char *code,
                                     const char *message, void *ud);

/* Makes sure model_id is complete in the cache, exactly as a model.cache
 * command with resource.id model_id and this data would: data (borrowed,
 * copied) has the fields of model.download (source, sourcePath, version,
 * targetPath, credentials, include/exclude, files, filename, sha256,
 * endpoint, force) and is validated the same way. No network when the
 * model's manifest says it is complete with every file in place; else a
 * download, joining an identical one in progress (a command's or another
 * ensure's) or waiting for another one on the same files, as commands do.
 * e is the engine model_cmd_register() was called on. progress and done may
 * be NULL. Returns 0 and, when ret is not NULL, *ret (until done has
 * returned or model_ensure_cancel()); -EINVAL with a message in err when
 * model_id or data is invalid (the validator's message; a targetPath
 * outside the cache, which only shows when resolving it, comes through done
 * with "2001" like for a command); -ENOENT when the model commands are not
 * registered on e; -ENOMEM. Errors of the download arrive through done. */
int model_cmd_ensure(cmd_engine *e, const char *model_id, const json_t *data, model_ensure_progress_cb progress,
                     model_ensure_done_cb done, void *ud, model_ensure **ret, char *err, size_t errlen);

/* Stops waiting: no callback afterwards, the handle is freed. The transfer
 * stops (its partial files kept for a later resume) on a later loop turn
 * when nobody else (command or ensure) waits for it. Safe from inside
 * progress (this or any other handle's) and done (another handle's); accepts
 * NULL. A handle still pending when the engine is freed gets no callback and
 * stays valid for this call alone, which frees it. */
void model_ensure_cancel(model_ensure *h);
