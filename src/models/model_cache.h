/* model_cache: the on-disk layout of MODEL_CACHE_DIR, with no network:
 *
 *   <root>/<targetPath>/...                 http and minio models
 *   <root>/hub/models--{org}--{name}/       Hugging Face models, exactly as
 *       blobs/{etag}                        huggingface_hub lays them out, so
 *       snapshots/{commit}/{path} -> ../../blobs/{etag}   a container given
 *       refs/{revision}  (the commit)       HF_HUB_CACHE=<root>/hub and
 *                                           HF_HUB_OFFLINE=1 finds the files
 *   <root>/.staging/<key>/                  partial files of a download
 *   <root>/.manifests/<model id>.json       one manifest per complete model
 *   <root>/.locks/<key>.lock                flock()ed while a process works
 *                                           on <key>; dies with the process
 *
 * Every path below the root is walked component by component with openat()
 * and O_NOFOLLOW, so a symbolic link planted anywhere in a model's directory
 * never leads outside the root. Top-level names starting with '.' and "hub"
 * are reserved. Files are written to a temporary name, fsync()ed and renamed
 * into place, then the directory is fsync()ed.
 *
 * Functions return 0 or a negative errno; those with err/errlen also write a
 * sentence there. Not thread-safe (one loop thread). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#define MODEL_CACHE_HUB "hub"
#define MODEL_CACHE_STAGING ".staging"
#define MODEL_CACHE_MANIFESTS ".manifests"
#define MODEL_CACHE_LOCKS ".locks"
#define MODEL_CACHE_MAX_PATH 4096
#define MODEL_CACHE_MAX_MANIFEST (64u * 1024 * 1024)
/* Longest file name made by model_cache_key_name() (NUL included). */
#define MODEL_CACHE_KEY_NAME_MAX 160

typedef struct model_cache model_cache;

/* Opens (creating with mode 0755 when missing, parents too) the cache at dir,
 * an absolute path, and its hub, staging, manifest and lock directories. */
int model_cache_open(const char *dir, model_cache **ret_cache, char *err, size_t errlen);
model_cache *model_cache_free(model_cache *c);
/* The root as configured (absolute, without trailing slash). */
const char *model_cache_dir(const model_cache *c);
/* A descriptor of the root directory (owned by the cache). */
int model_cache_fd(const model_cache *c);

/* Resolves a model.download targetPath: relative to the root, or absolute
 * and inside it. Refused (-EINVAL, reason in err): empty, too long, control
 * characters or backslashes, a ".." component, an absolute path elsewhere,
 * the root itself, a reserved top-level name, an existing component that is
 * a symbolic link or not a directory. Returns the normalised relative path
 * ("a/b") in *ret_rel (heap). Components that do not exist yet are fine. */
int model_cache_resolve_target(const model_cache *c, const char *target, char **ret_rel,
                               char *err, size_t errlen);
/* A file path inside a model (from a listing or data.files): relative, at
 * most MODEL_CACHE_MAX_PATH bytes, components not empty, "." or "..", each at
 * most 255 bytes, no control characters or backslashes. */
bool model_cache_relpath_valid(const char *rel);

/* Turns an arbitrary key (a model id, a target path) into a file name:
 * [A-Za-z0-9_-] and '.' (not leading) kept, other bytes %XX; names that would
 * be longer than 120 bytes become "h-" + the key's sha256 in hex. */
void model_cache_key_name(const char *key, char out[MODEL_CACHE_KEY_NAME_MAX]);

/* Creates (mode 0755) and opens the directory rel below dir_fd, refusing
 * symbolic links on the way (-ELOOP) and non-directories (-ENOTDIR).
 * *ret_fd (O_DIRECTORY|O_CLOEXEC) may be NULL. rel "" opens dir_fd itself. */
int model_cache_mkdirs(int dir_fd, const char *rel, int *ret_fd);
/* Opens the existing directory rel below dir_fd without following links. */
int model_cache_opendir(int dir_fd, const char *rel, int *ret_fd);

/* Takes the lock of key_name (a model_cache_key_name()): 0 and a descriptor
 * to give to model_cache_unlock(), or -EWOULDBLOCK when another process
 * holds it. The lock ends with the descriptor (and the process). */
int model_cache_lock(model_cache *c, const char *key_name, int *ret_fd);
void model_cache_unlock(int fd);

/* The staging directory of key_name: opened (created when create) into
 * *ret_fd; -ENOENT when absent and !create. */
int model_cache_staging_open(model_cache *c, const char *key_name, bool create, int *ret_fd);
/* Removes the staging directory of key_name and everything in it. */
int model_cache_staging_remove(model_cache *c, const char *key_name);

/* Writes data to dir_fd/name atomically: a temporary file, fsync, rename,
 * fsync of the directory. mode e.g. 0644. */
int model_cache_write_atomic(int dir_fd, const char *name, const void *data, size_t len,
                             mode_t mode);

/* Manifests, keyed by model id. write: atomic, pretty JSON. read: -ENOENT
 * when absent, -EBADMSG when unreadable JSON. all: a new array of every
 * readable manifest (others skipped). */
int model_cache_manifest_write(model_cache *c, const char *model_id, const json_t *manifest);
int model_cache_manifest_read(model_cache *c, const char *model_id, json_t **ret_manifest);
int model_cache_manifest_remove(model_cache *c, const char *model_id);
int model_cache_manifest_all(model_cache *c, json_t **ret_array);

/* Bytes an unprivileged writer may still use on the cache's filesystem. */
int model_cache_available(const model_cache *c, uint64_t *ret_bytes);

/* Sum of st_size of the regular files below dir_fd/rel (links not
 * followed; a missing rel is 0). */
int model_cache_tree_size(int dir_fd, const char *rel, uint64_t *ret_bytes);
/* Removes dir_fd/rel (a file, a link or a whole tree, links never followed);
 * *ret_freed (may be NULL) gets the bytes of the regular files removed.
 * A missing rel is not an error. */
int model_cache_remove_tree(int dir_fd, const char *rel, uint64_t *ret_freed);

/* Moves stage_fd/stage_name to dir_fd/dest_rel (parents created, links
 * refused, an existing file replaced) and fsyncs the directory. */
int model_cache_place(int stage_fd, const char *stage_name, int dir_fd, const char *dest_rel);

/* ---- models in use ----
 *
 * The deployments module tells the cache which models running deployments
 * mount: fn(path, ud) returns a new JSON array of the deployment ids whose
 * containers mount path or anything below it (NULL or [] when none). One
 * hook per process; fn NULL removes it. model.delete refuses (2007) to
 * remove a model in use unless forced; model.list reports usedBy. */
typedef json_t *(*model_cache_in_use_fn)(const char *path, void *ud);
void model_cache_set_in_use(model_cache_in_use_fn fn, void *ud);
/* The ids using path: a new array (empty when no hook or none). NULL only
 * on allocation failure. */
json_t *model_cache_in_use(const char *path);

/* ---- the Hugging Face layout (repo_dir = "models--org--name") ---- */

/* True when hub/<repo_dir>/blobs/<blob> is a regular file of size bytes. */
bool model_cache_hf_blob_present(model_cache *c, const char *repo_dir, const char *blob,
                                 uint64_t size);
/* Moves a verified staging file to hub/<repo_dir>/blobs/<blob>. */
int model_cache_hf_place_blob(model_cache *c, const char *repo_dir, int stage_fd,
                              const char *stage_name, const char *blob);
/* snapshots/<commit>/<path> -> ../../blobs/<blob> (one more ../ per directory
 * level of path), replacing what was there. */
int model_cache_hf_link(model_cache *c, const char *repo_dir, const char *commit,
                        const char *path, const char *blob);
/* refs/<revision> = commit (no newline), unless revision is the commit. */
int model_cache_hf_write_ref(model_cache *c, const char *repo_dir, const char *revision,
                             const char *commit);
/* "<root>/hub/<repo_dir>/snapshots/<commit>" (heap). */
int model_cache_hf_snapshot_path(const model_cache *c, const char *repo_dir, const char *commit,
                                 char **ret_path);
