#include "models/model_hf.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/util.h"
#include "models/model_cache.h"
#include "models/model_s3.h"

static int fail(char *err, size_t errlen, int r, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int r, const char *fmt, ...) {
        va_list ap;

        if (errlen) {
                va_start(ap, fmt);
                vsnprintf(err, errlen, fmt, ap);
                va_end(ap);
        }
        return r;
}

static bool is_hex(const char *s, size_t n) {
        size_t i;

        if (!s || strlen(s) != n)
                return false;
        for (i = 0; i < n; i++)
                if (!strchr("0123456789abcdef", s[i]))
                        return false;
        return true;
}

bool model_hf_is_commit(const char *rev) {
        return is_hex(rev, 40);
}

static bool repo_part_valid(const char *s, size_t n) {
        size_t i;

        if (n == 0 || n > 96)
                return false;
        if (s[0] == '.' || s[0] == '-' || s[n - 1] == '.' || s[n - 1] == '-')
                return false;
        for (i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-'))
                        return false;
                if (i + 1 < n && ((c == '-' && s[i + 1] == '-') || (c == '.' && s[i + 1] == '.')))
                        return false;
        }
        return true;
}

bool model_hf_repo_valid(const char *repo) {
        const char *slash;

        if (!repo)
                return false;
        slash = strchr(repo, '/');
        if (!slash)
                return repo_part_valid(repo, strlen(repo));
        if (strchr(slash + 1, '/'))
                return false;
        return repo_part_valid(repo, (size_t)(slash - repo)) &&
               repo_part_valid(slash + 1, strlen(slash + 1));
}

/* Relative path check shared by revisions and file paths. */
static bool rel_path_valid(const char *p, size_t max, bool allow_space) {
        size_t n = p ? strlen(p) : 0, i, comp = 0;

        if (n == 0 || n > max || p[0] == '/' || p[n - 1] == '/')
                return false;
        for (i = 0; i <= n; i++) {
                unsigned char c = (unsigned char)p[i];
                if (c == '/' || c == '\0') {
                        if (comp == 0)
                                return false;
                        if ((comp == 1 && p[i - 1] == '.') ||
                            (comp == 2 && p[i - 1] == '.' && p[i - 2] == '.'))
                                return false;
                        comp = 0;
                        continue;
                }
                if (c < 0x20 || c == 0x7F || c == '\\' || (!allow_space && c == ' '))
                        return false;
                comp++;
        }
        return true;
}

bool model_hf_revision_valid(const char *rev) {
        if (!rev || rev[0] == '-' || strstr(rev, ".."))
                return false;
        return rel_path_valid(rev, 255, false);
}

bool model_hf_path_valid(const char *path) {
        /* Also what the cache can store: components of at most NAME_MAX. */
        return rel_path_valid(path, MODEL_HF_MAX_PATH, true) && model_cache_relpath_valid(path);
}

int model_hf_repo_dir(const char *repo, char **ret_dir) {
        const char *slash;
        char *s;
        int n;

        if (!model_hf_repo_valid(repo))
                return -EINVAL;
        slash = strchr(repo, '/');
        if (slash)
                n = asprintf(&s, "models--%.*s--%s", (int)(slash - repo), repo, slash + 1);
        else
                n = asprintf(&s, "models--%s", repo);
        if (n < 0)
                return -ENOMEM;
        *ret_dir = s;
        return 0;
}

static int append_endpoint(buf *b, const char *endpoint) {
        size_t n = strlen(endpoint);

        while (n > 0 && endpoint[n - 1] == '/')
                n--;
        return buf_append(b, endpoint, n);
}

int model_hf_info_url(const char *endpoint, const char *repo, const char *rev, char **ret_url) {
        buf b;
        int r;

        if (!model_hf_repo_valid(repo) || !model_hf_revision_valid(rev))
                return -EINVAL;
        buf_init(&b, 0);
        r = append_endpoint(&b, endpoint);
        if (r == 0)
                r = buf_append_str(&b, "/api/models/");
        if (r == 0)
                r = buf_append_str(&b, repo);
        if (r == 0)
                r = buf_append_str(&b, "/revision/");
        if (r == 0)
                r = model_s3_uri_encode(&b, rev, false);
        if (r == 0)
                r = buf_append_str(&b, "?blobs=true");
        if (r < 0) {
                buf_done(&b);
                return r;
        }
        *ret_url = buf_steal(&b);
        return 0;
}

int model_hf_file_url(const char *endpoint, const char *repo, const char *commit,
                      const char *path, char **ret_url) {
        buf b;
        int r;

        if (!model_hf_repo_valid(repo) || !model_hf_revision_valid(commit) ||
            !model_hf_path_valid(path))
                return -EINVAL;
        buf_init(&b, 0);
        r = append_endpoint(&b, endpoint);
        if (r == 0)
                r = buf_append_str(&b, "/");
        if (r == 0)
                r = buf_append_str(&b, repo);
        if (r == 0)
                r = buf_append_str(&b, "/resolve/");
        if (r == 0)
                r = model_s3_uri_encode(&b, commit, false);
        if (r == 0)
                r = buf_append_str(&b, "/");
        if (r == 0)
                r = model_s3_uri_encode(&b, path, true);
        if (r < 0) {
                buf_done(&b);
                return r;
        }
        *ret_url = buf_steal(&b);
        return 0;
}

int model_hf_normalize_etag(const char *value, char *out, size_t outlen) {
        size_t n;

        if (!value)
                return -EINVAL;
        while (*value == ' ' || *value == '\t')
                value++;
        if (util_startswith(value, "W/"))
                value += 2;
        n = strlen(value);
        while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t' || value[n - 1] == '\r' ||
                         value[n - 1] == '\n'))
                n--;
        if (n >= 2 && value[0] == '"' && value[n - 1] == '"') {
                value++;
                n -= 2;
        }
        if (n == 0 || n >= outlen)
                return -EINVAL;
        memcpy(out, value, n);
        out[n] = '\0';
        return 0;
}

bool model_hf_pattern_match(const char *pattern, const char *path) {
        size_t n = pattern ? strlen(pattern) : 0;
        bool r;
        char *p;

        if (n == 0)
                return false;
        if (pattern[n - 1] != '/')
                return fnmatch(pattern, path, 0) == 0;
        if (asprintf(&p, "%s*", pattern) < 0)
                return false;
        r = fnmatch(p, path, 0) == 0;
        free(p);
        return r;
}

/* ---- listing ---- */

static int cmp_path(const void *a, const void *b) {
        return strcmp(((const model_hf_file *)a)->path, ((const model_hf_file *)b)->path);
}

void model_hf_info_done(model_hf_info *info) {
        size_t i;

        if (!info)
                return;
        for (i = 0; i < info->n_files; i++)
                free(info->files[i].path);
        free(info->files);
        memset(info, 0, sizeof *info);
}

static int parse_sibling(json_t *s, model_hf_file *f, char *err, size_t errlen) {
        json_t *name = json_object_get(s, "rfilename"), *size = json_object_get(s, "size");
        json_t *blob = json_object_get(s, "blobId"), *lfs = json_object_get(s, "lfs");
        const char *path = json_string_value(name);

        if (!path || strlen(path) != json_string_length(name) || !model_hf_path_valid(path))
                return fail(err, errlen, -EBADMSG, "a sibling has a missing or unsafe rfilename");
        if (!json_is_integer(size) || json_integer_value(size) < 0)
                return fail(err, errlen, -EBADMSG, "sibling %s has no size (blobs=true missing?)",
                            path);
        f->size = (uint64_t)json_integer_value(size);
        if (blob && !json_is_null(blob)) {
                if (!is_hex(json_string_value(blob), 40))
                        return fail(err, errlen, -EBADMSG, "sibling %s has a bad blobId", path);
                memcpy(f->blob_id, json_string_value(blob), 41);
        }
        if (lfs && !json_is_null(lfs)) {
                json_t *sha = json_object_get(lfs, "sha256"), *lsize = json_object_get(lfs, "size");
                if (!is_hex(json_string_value(sha), 64))
                        return fail(err, errlen, -EBADMSG, "sibling %s has a bad lfs.sha256", path);
                memcpy(f->sha256, json_string_value(sha), 65);
                if (json_is_integer(lsize)) {
                        if (json_integer_value(lsize) < 0)
                                return fail(err, errlen, -EBADMSG, "sibling %s has a bad lfs.size",
                                            path);
                        f->size = (uint64_t)json_integer_value(lsize);
                }
                f->lfs = true;
        }
        if (f->size > MODEL_HF_MAX_FILE_SIZE)
                return fail(err, errlen, -E2BIG, "sibling %s is larger than 1 PiB", path);
        f->path = strdup(path);
        return f->path ? 0 : -ENOMEM;
}

int model_hf_parse_info(const char *json, size_t len, model_hf_info *ret_info, char *err,
                        size_t errlen) {
        model_hf_info info;
        json_t *root, *sha, *sibs, *s;
        json_error_t jerr;
        size_t i;
        int r = 0;

        memset(&info, 0, sizeof info);
        root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(root)) {
                r = fail(err, errlen, -EBADMSG, "the Hub's answer is not a JSON object: %s",
                         root ? "wrong type" : jerr.text);
                goto out;
        }
        sha = json_object_get(root, "sha");
        if (!is_hex(json_string_value(sha), 40)) {
                r = fail(err, errlen, -EBADMSG, "the Hub's answer has no 40-hex commit sha");
                goto out;
        }
        memcpy(info.commit, json_string_value(sha), 41);
        sibs = json_object_get(root, "siblings");
        if (!json_is_array(sibs)) {
                r = fail(err, errlen, -EBADMSG, "the Hub's answer has no siblings list");
                goto out;
        }
        if (json_array_size(sibs) > MODEL_HF_MAX_FILES) {
                r = fail(err, errlen, -E2BIG, "the repository has more than %d files",
                         MODEL_HF_MAX_FILES);
                goto out;
        }
        if (json_array_size(sibs) > 0) {
                info.files = calloc(json_array_size(sibs), sizeof *info.files);
                if (!info.files) {
                        r = -ENOMEM;
                        goto out;
                }
        }
        json_array_foreach(sibs, i, s) {
                r = parse_sibling(s, &info.files[info.n_files], err, errlen);
                if (r < 0)
                        goto out;
                info.n_files++;
                info.total_size += info.files[info.n_files - 1].size;
        }
        if (info.n_files > 1)
                qsort(info.files, info.n_files, sizeof *info.files, cmp_path);
        for (i = 1; i < info.n_files; i++)
                if (strcmp(info.files[i - 1].path, info.files[i].path) == 0) {
                        r = fail(err, errlen, -EBADMSG, "the listing names %s twice",
                                 info.files[i].path);
                        goto out;
                }
        *ret_info = info;
        memset(&info, 0, sizeof info);
out:
        model_hf_info_done(&info);
        json_decref(root);
        return r;
}
