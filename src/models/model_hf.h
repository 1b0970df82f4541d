/* model_hf: the Hugging Face Hub side of model downloads, without any I/O:
 * names, URLs and the repository listing.
 *
 *   GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=true
 *       -> {"sha": "<40 hex commit>", "siblings": [{"rfilename", "size",
 *           "blobId", "lfs"?: {"sha256", "size", "pointerSize"}}], ...}
 *   GET {endpoint}/{repo}/resolve/{commit}/{path}
 *       -> the file; LFS files through a redirect to a CDN, with
 *          X-Linked-Etag: "<sha256>" and X-Repo-Commit on the first answer.
 *
 * Files are named in the cache the way huggingface_hub names them
 * (hub/models--{org}--{name}/blobs/{etag}): the sha256 for LFS files, the git
 * blob id (sha1 of "blob <size>\0" + content) for the others, so both can be
 * verified as bytes arrive. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MODEL_HF_DEFAULT_ENDPOINT "https://huggingface.co"
#define MODEL_HF_DEFAULT_REVISION "main"
#define MODEL_HF_MAX_FILES 100000
#define MODEL_HF_MAX_PATH 1024
#define MODEL_HF_MAX_FILE_SIZE (1ull << 50) /* 1 PiB: keeps sums far from overflow */

/* One file of a revision. */
typedef struct model_hf_file {
        char *path;        /* rfilename, checked with model_hf_path_valid() */
        uint64_t size;     /* bytes (lfs.size for LFS files) */
        char blob_id[41];  /* git blob id, "" when the listing had none */
        char sha256[65];   /* LFS files: the content's sha256; else "" */
        bool lfs;
} model_hf_file;

/* A revision's listing. */
typedef struct model_hf_info {
        char commit[41];
        model_hf_file *files;
        size_t n_files;
        uint64_t total_size;
} model_hf_info;

/* Parses the body of the revision call (with blobs=true). Returns 0 and
 * fills *ret_info (release with model_hf_info_done()), -EBADMSG (not JSON,
 * no 40-hex sha, a sibling without rfilename/size, a bad path, a bad
 * blobId/sha256, duplicate paths), -E2BIG (more than MODEL_HF_MAX_FILES) or
 * -ENOMEM; err gets a sentence. */
int model_hf_parse_info(const char *json, size_t len, model_hf_info *ret_info, char *err,
                        size_t errlen);
void model_hf_info_done(model_hf_info *info);

/* "org/name" with both parts 1..96 of [A-Za-z0-9._-], neither starting or
 * ending with '.' or '-', no "--" or ".." (the Hub's rules), or a bare
 * "name" (legacy repositories). */
bool model_hf_repo_valid(const char *repo);
/* A branch, tag or commit: 1..255 bytes, no control characters, spaces,
 * "..", "\\", leading '/' or '-', empty components. May contain '/'
 * (refs/pr/1). */
bool model_hf_revision_valid(const char *rev);
/* True for a full 40-hex commit id. */
bool model_hf_is_commit(const char *rev);
/* A repository file path: relative, 1..MODEL_HF_MAX_PATH bytes, components
 * of 1..255 bytes, not "." or "..", no control characters or backslashes. */
bool model_hf_path_valid(const char *path);

/* "models--org--name" (heap). -EINVAL when repo is not valid. */
int model_hf_repo_dir(const char *repo, char **ret_dir);
/* {endpoint}/api/models/{repo}/revision/{rev encoded}?blobs=true (heap). */
int model_hf_info_url(const char *endpoint, const char *repo, const char *rev, char **ret_url);
/* {endpoint}/{repo}/resolve/{commit}/{path encoded, '/' kept} (heap). */
int model_hf_file_url(const char *endpoint, const char *repo, const char *commit,
                      const char *path, char **ret_url);
/* Normalises an ETag header value the way huggingface_hub does: a leading
 * "W/" and surrounding quotes removed, into out. -EINVAL when nothing is
 * left or it does not fit. */
int model_hf_normalize_etag(const char *value, char *out, size_t outlen);
/* True when pattern (fnmatch, '*' also matching '/'; a trailing '/' means
 * everything under it, as huggingface_hub's allow_patterns) matches path. */
bool model_hf_pattern_match(const char *pattern, const char *path);
