#include "models/model_cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "core/util.h"

#define MAX_TREE_DEPTH 128
#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)

struct model_cache {
        char *dir;  /* as configured, normalised */
        char *real; /* realpath() of dir */
        int fd, manifests_fd, locks_fd;
};

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

static void close_fd(int *fd) {
        if (*fd >= 0)
                close(*fd);
        *fd = -1;
}

/* Collapses repeated slashes and drops a trailing one (not the root's). */
static char *normalise_abs(const char *p) {
        char *s = malloc(strlen(p) + 1), *w = s;

        if (!s)
                return NULL;
        for (; *p; p++) {
                if (*p == '/' && w > s && w[-1] == '/')
                        continue;
                *w++ = *p;
        }
        if (w > s + 1 && w[-1] == '/')
                w--;
        *w = '\0';
        return s;
}

/* The next component of a '/'-separated path, copied into comp: its length,
 * 0 at the end, -ENAMETOOLONG when longer than NAME_MAX. */
static int next_comp(const char **p, char comp[NAME_MAX + 1]) {
        const char *s = *p, *e;
        size_t n;

        while (*s == '/')
                s++;
        e = strchr(s, '/');
        if (!e)
                e = s + strlen(s);
        n = (size_t)(e - s);
        *p = e;
        if (n > NAME_MAX)
                return -ENAMETOOLONG;
        memcpy(comp, s, n);
        comp[n] = '\0';
        return (int)n;
}

/* mkdir -p for the configured root (links allowed there: it is the
 * operator's choice). */
static int mkdir_parents(const char *dir) {
        char *p = strdup(dir), *q;
        int r = 0;

        if (!p)
                return -ENOMEM;
        for (q = p + 1; r == 0; q++) {
                bool end = *q == '\0';
                if (*q != '/' && !end)
                        continue;
                *q = '\0';
                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                        r = -errno;
                if (end)
                        break;
                *q = '/';
        }
        free(p);
        return r;
}

int model_cache_open(const char *dir, model_cache **ret_cache, char *err, size_t errlen) {
        static const char *const subdirs[] = { MODEL_CACHE_HUB, MODEL_CACHE_STAGING,
                                               MODEL_CACHE_MANIFESTS, MODEL_CACHE_LOCKS };
        model_cache *c;
        size_t i;
        int r;

        if (!dir || dir[0] != '/')
                return fail(err, errlen, -EINVAL, "MODEL_CACHE_DIR must be an absolute path");
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->fd = c->manifests_fd = c->locks_fd = -1;
        c->dir = normalise_abs(dir);
        if (!c->dir) {
                r = -ENOMEM;
                goto fail;
        }
        r = mkdir_parents(c->dir);
        if (r < 0) {
                fail(err, errlen, r, "cannot create %s: %s", c->dir, strerror(-r));
                goto fail;
        }
        c->real = realpath(c->dir, NULL);
        if (!c->real) {
                r = -errno;
                fail(err, errlen, r, "cannot resolve %s: %s", c->dir, strerror(-r));
                goto fail;
        }
        c->fd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (c->fd < 0) {
                r = -errno;
                fail(err, errlen, r, "cannot open %s: %s", c->dir, strerror(-r));
                goto fail;
        }
        for (i = 0; i < sizeof subdirs / sizeof subdirs[0]; i++) {
                r = model_cache_mkdirs(c->fd, subdirs[i], NULL);
                if (r < 0) {
                        fail(err, errlen, r, "cannot create %s/%s: %s", c->dir, subdirs[i],
                             strerror(-r));
                        goto fail;
                }
        }
        r = model_cache_opendir(c->fd, MODEL_CACHE_MANIFESTS, &c->manifests_fd);
        if (r == 0)
                r = model_cache_opendir(c->fd, MODEL_CACHE_LOCKS, &c->locks_fd);
        if (r < 0) {
                fail(err, errlen, r, "cannot open the cache's directories: %s", strerror(-r));
                goto fail;
        }
        *ret_cache = c;
        return 0;
fail:
        model_cache_free(c);
        return r;
}

model_cache *model_cache_free(model_cache *c) {
        if (!c)
                return NULL;
        close_fd(&c->fd);
        close_fd(&c->manifests_fd);
        close_fd(&c->locks_fd);
        free(c->dir);
        free(c->real);
        free(c);
        return NULL;
}

const char *model_cache_dir(const model_cache *c) {
        return c->dir;
}

int model_cache_fd(const model_cache *c) {
        return c->fd;
}

/* ---- paths ---- */

bool model_cache_relpath_valid(const char *rel) {
        size_t n = rel ? strlen(rel) : 0, i, comp = 0;

        if (n == 0 || n > MODEL_CACHE_MAX_PATH || rel[0] == '/' || rel[n - 1] == '/')
                return false;
        for (i = 0; i <= n; i++) {
                unsigned char ch = (unsigned char)rel[i];
                if (ch == '/' || ch == '\0') {
                        if (comp == 0 || comp > NAME_MAX)
                                return false;
                        if ((comp == 1 && rel[i - 1] == '.') ||
                            (comp == 2 && rel[i - 1] == '.' && rel[i - 2] == '.'))
                                return false;
                        comp = 0;
                        continue;
                }
                if (ch < 0x20 || ch == 0x7F || ch == '\\')
                        return false;
                comp++;
        }
        return true;
}

/* The part of an absolute target below root (NULL when not below it). */
static const char *below(const char *target, const char *root) {
        size_t n = strlen(root);

        if (strcmp(root, "/") == 0)
                return target + 1;
        if (strncmp(target, root, n) == 0 && target[n] == '/')
                return target + n + 1;
        return NULL;
}

int model_cache_resolve_target(const model_cache *c, const char *target, char **ret_rel,
                               char *err, size_t errlen) {
        char *norm = NULL, *rel = NULL, comp[NAME_MAX + 1];
        const char *rest, *p;
        size_t n, i, w = 0;
        int fd = -1, r = 0, k;
        bool exists = true, first = true;

        n = target ? strlen(target) : 0;
        if (n == 0)
                return fail(err, errlen, -EINVAL, "targetPath is empty");
        if (n > MODEL_CACHE_MAX_PATH)
                return fail(err, errlen, -EINVAL, "targetPath is longer than %d bytes",
                            MODEL_CACHE_MAX_PATH);
        for (i = 0; i < n; i++)
                if ((unsigned char)target[i] < 0x20 || target[i] == 0x7F || target[i] == '\\')
                        return fail(err, errlen, -EINVAL,
                                    "targetPath has control characters or backslashes");
        if (target[0] == '/') {
                norm = normalise_abs(target);
                if (!norm)
                        return -ENOMEM;
                rest = below(norm, c->dir);
                if (!rest)
                        rest = below(norm, c->real);
                if (!rest) {
                        r = fail(err, errlen, -EINVAL, "targetPath is outside MODEL_CACHE_DIR (%s)",
                                 c->dir);
                        goto out;
                }
        } else {
                rest = target;
        }
        rel = malloc(strlen(rest) + 1);
        if (!rel) {
                r = -ENOMEM;
                goto out;
        }
        fd = dup(c->fd);
        if (fd < 0) {
                r = -errno;
                goto out;
        }
        for (p = rest; (k = next_comp(&p, comp)) != 0;) {
                if (k < 0) {
                        r = fail(err, errlen, -EINVAL,
                                 "targetPath has a component longer than %d bytes", NAME_MAX);
                        goto out;
                }
                if (strcmp(comp, ".") == 0)
                        continue;
                if (strcmp(comp, "..") == 0) {
                        r = fail(err, errlen, -EINVAL, "targetPath must not contain \"..\"");
                        goto out;
                }
                if (first && (comp[0] == '.' || strcmp(comp, MODEL_CACHE_HUB) == 0)) {
                        r = fail(err, errlen, -EINVAL,
                                 "targetPath must not start with \"%s\" (reserved by the cache)", comp);
                        goto out;
                }
                first = false;
                if (w > 0)
                        rel[w++] = '/';
                memcpy(rel + w, comp, (size_t)k);
                w += (size_t)k;
                rel[w] = '\0';
                if (exists) {
                        int nfd = openat(fd, comp, DIR_FLAGS);
                        if (nfd < 0 && errno == ENOENT) {
                                exists = false;
                        } else if (nfd < 0) {
                                r = fail(err, errlen, -EINVAL,
                                         "targetPath goes through %s, which is a symbolic link or "
                                         "not a directory",
                                         rel);
                                goto out;
                        } else {
                                close(fd);
                                fd = nfd;
                        }
                }
        }
        if (w == 0) {
                r = fail(err, errlen, -EINVAL, "targetPath names MODEL_CACHE_DIR itself");
                goto out;
        }
        *ret_rel = rel;
        rel = NULL;
out:
        if (fd >= 0)
                close(fd);
        free(norm);
        free(rel);
        return r;
}

void model_cache_key_name(const char *key, char out[MODEL_CACHE_KEY_NAME_MAX]) {
        static const char hex[] = "0123456789abcdef";
        size_t i, w = 0, n = strlen(key);
        bool too_long = false;

        for (i = 0; i < n && !too_long; i++) {
                unsigned char ch = (unsigned char)key[i];
                bool keep = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                            (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || (ch == '.' && i > 0);
                if (keep) {
                        if (w + 1 > 120)
                                too_long = true;
                        else
                                out[w++] = (char)ch;
                } else {
                        if (w + 3 > 120) {
                                too_long = true;
                        } else {
                                out[w++] = '%';
                                out[w++] = hex[ch >> 4];
                                out[w++] = hex[ch & 15];
                        }
                }
        }
        if (n == 0) {
                memcpy(out, "%00", 4);
                return;
        }
        if (too_long) {
                unsigned char md[EVP_MAX_MD_SIZE];
                unsigned int mdlen = 0;
                EVP_Digest(key, n, md, &mdlen, EVP_sha256(), NULL);
                memcpy(out, "h-", 2);
                for (i = 0; i < mdlen && i < 32; i++) {
                        out[2 + 2 * i] = hex[md[i] >> 4];
                        out[3 + 2 * i] = hex[md[i] & 15];
                }
                out[2 + 2 * i] = '\0';
                return;
        }
        out[w] = '\0';
}

/* ---- directories ---- */

static int walk_dirs(int dir_fd, const char *rel, bool create, int *ret_fd) {
        char comp[NAME_MAX + 1];
        const char *p;
        int fd, r = 0, k;

        fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        for (p = rel; (k = next_comp(&p, comp)) != 0;) {
                int nfd;
                if (k < 0) {
                        r = k;
                        break;
                }
                if (strcmp(comp, ".") == 0)
                        continue;
                if (strcmp(comp, "..") == 0) {
                        r = -EINVAL;
                        break;
                }
                nfd = openat(fd, comp, DIR_FLAGS);
                if (nfd < 0 && errno == ENOENT && create) {
                        if (mkdirat(fd, comp, 0755) < 0 && errno != EEXIST) {
                                r = -errno;
                                break;
                        }
                        nfd = openat(fd, comp, DIR_FLAGS);
                }
                if (nfd < 0) {
                        r = -errno;
                        break;
                }
                close(fd);
                fd = nfd;
        }
        if (r < 0) {
                close(fd);
                return r;
        }
        if (ret_fd)
                *ret_fd = fd;
        else
                close(fd);
        return 0;
}

int model_cache_mkdirs(int dir_fd, const char *rel, int *ret_fd) {
        return walk_dirs(dir_fd, rel, true, ret_fd);
}

int model_cache_opendir(int dir_fd, const char *rel, int *ret_fd) {
        return walk_dirs(dir_fd, rel, false, ret_fd);
}

/* ---- locks and staging ---- */

int model_cache_lock(model_cache *c, const char *key_name, int *ret_fd) {
        char name[MODEL_CACHE_KEY_NAME_MAX + 8];
        int fd;

        snprintf(name, sizeof name, "%s.lock", key_name);
        fd = openat(c->locks_fd, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
                return -errno;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                int r = errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;
                close(fd);
                return r;
        }
        *ret_fd = fd;
        return 0;
}

void model_cache_unlock(int fd) {
        if (fd >= 0)
                close(fd);
}

int model_cache_staging_open(model_cache *c, const char *key_name, bool create, int *ret_fd) {
        char rel[MODEL_CACHE_KEY_NAME_MAX + 16];

        snprintf(rel, sizeof rel, "%s/%s", MODEL_CACHE_STAGING, key_name);
        return create ? model_cache_mkdirs(c->fd, rel, ret_fd) : model_cache_opendir(c->fd, rel, ret_fd);
}

int model_cache_staging_remove(model_cache *c, const char *key_name) {
        char rel[MODEL_CACHE_KEY_NAME_MAX + 16];

        snprintf(rel, sizeof rel, "%s/%s", MODEL_CACHE_STAGING, key_name);
        return model_cache_remove_tree(c->fd, rel, NULL);
}

/* ---- files ---- */

int model_cache_write_atomic(int dir_fd, const char *name, const void *data, size_t len,
                             mode_t mode) {
        char tmp[NAME_MAX + 1];
        const char *p = data;
        size_t left = len;
        int fd, r = 0;

        if (snprintf(tmp, sizeof tmp, ".%.200s.tmp.%ld", name, (long)getpid()) >= (int)sizeof tmp)
                return -ENAMETOOLONG;
        fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return -errno;
        while (left > 0) {
                ssize_t w = write(fd, p, left);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0) {
                        r = -errno;
                        break;
                }
                p += w;
                left -= (size_t)w;
        }
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r == 0 && renameat(dir_fd, tmp, dir_fd, name) < 0)
                r = -errno;
        if (r < 0)
                unlinkat(dir_fd, tmp, 0);
        else
                fsync(dir_fd);
        return r;
}

static void manifest_name(const char *model_id, char out[MODEL_CACHE_KEY_NAME_MAX + 8]) {
        char key[MODEL_CACHE_KEY_NAME_MAX];

        model_cache_key_name(model_id, key);
        snprintf(out, MODEL_CACHE_KEY_NAME_MAX + 8, "%s.json", key);
}

int model_cache_manifest_write(model_cache *c, const char *model_id, const json_t *manifest) {
        char name[MODEL_CACHE_KEY_NAME_MAX + 8];
        char *s = json_dumps(manifest, JSON_INDENT(2) | JSON_SORT_KEYS);
        int r;

        if (!s)
                return -ENOMEM;
        manifest_name(model_id, name);
        r = model_cache_write_atomic(c->manifests_fd, name, s, strlen(s), 0644);
        free(s);
        return r;
}

static int read_json_at(int dir_fd, const char *name, json_t **ret) {
        struct stat st;
        char *data = NULL;
        size_t len = 0;
        json_t *j;
        int fd, r = 0;

        /* O_NOFOLLOW: a planted link must not make us read elsewhere. */
        fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0) {
                r = -errno;
                goto out;
        }
        if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > MODEL_CACHE_MAX_MANIFEST) {
                r = -EBADMSG;
                goto out;
        }
        data = malloc((size_t)st.st_size + 1);
        if (!data) {
                r = -ENOMEM;
                goto out;
        }
        while (len < (size_t)st.st_size) {
                ssize_t n = read(fd, data + len, (size_t)st.st_size - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = -errno;
                        goto out;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        j = json_loadb(data, len, 0, NULL);
        if (!json_is_object(j)) {
                json_decref(j);
                r = -EBADMSG;
                goto out;
        }
        *ret = j;
out:
        free(data);
        close(fd);
        return r;
}

int model_cache_manifest_read(model_cache *c, const char *model_id, json_t **ret_manifest) {
        char name[MODEL_CACHE_KEY_NAME_MAX + 8];

        manifest_name(model_id, name);
        return read_json_at(c->manifests_fd, name, ret_manifest);
}

int model_cache_manifest_remove(model_cache *c, const char *model_id) {
        char name[MODEL_CACHE_KEY_NAME_MAX + 8];

        manifest_name(model_id, name);
        if (unlinkat(c->manifests_fd, name, 0) < 0 && errno != ENOENT)
                return -errno;
        fsync(c->manifests_fd);
        return 0;
}

int model_cache_manifest_all(model_cache *c, json_t **ret_array) {
        json_t *arr = json_array();
        struct dirent *de;
        DIR *d;
        int fd;

        if (!arr)
                return -ENOMEM;
        fd = openat(c->manifests_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || !(d = fdopendir(fd))) {
                int r = -errno;
                if (fd >= 0)
                        close(fd);
                json_decref(arr);
                return r;
        }
        while ((de = readdir(d))) {
                size_t n = strlen(de->d_name);
                json_t *m = NULL;
                if (de->d_name[0] == '.' || n < 6 || strcmp(de->d_name + n - 5, ".json") != 0)
                        continue;
                if (read_json_at(c->manifests_fd, de->d_name, &m) == 0)
                        json_array_append_new(arr, m);
        }
        closedir(d);
        *ret_array = arr;
        return 0;
}

int model_cache_available(const model_cache *c, uint64_t *ret_bytes) {
        struct statvfs st;

        if (fstatvfs(c->fd, &st) < 0)
                return -errno;
        *ret_bytes = (uint64_t)st.f_bavail * (uint64_t)st.f_frsize;
        return 0;
}

/* ---- trees ---- */

static int tree_walk(int dir_fd, const char *name, bool remove, unsigned depth, uint64_t *bytes) {
        struct stat st;
        struct dirent *de;
        DIR *d;
        int fd, r = 0;

        if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISDIR(st.st_mode)) {
                if (remove && unlinkat(dir_fd, name, 0) < 0 && errno != ENOENT)
                        return -errno;
                if (S_ISREG(st.st_mode))
                        *bytes += (uint64_t)st.st_size;
                return 0;
        }
        if (depth >= MAX_TREE_DEPTH)
                return -ELOOP;
        fd = openat(dir_fd, name, DIR_FLAGS);
        if (fd < 0)
                return -errno;
        d = fdopendir(fd);
        if (!d) {
                r = -errno;
                close(fd);
                return r;
        }
        while ((de = readdir(d)) && r == 0) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                r = tree_walk(dirfd(d), de->d_name, remove, depth + 1, bytes);
        }
        closedir(d);
        if (r == 0 && remove && unlinkat(dir_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                r = -errno;
        return r;
}

/* Opens the parent directory of rel (no links followed) and points *base at
 * rel's last component. */
static int open_parent(int dir_fd, const char *rel, bool create, int *ret_fd, const char **base) {
        const char *slash = strrchr(rel, '/');
        char *parent;
        int r;

        if (!slash) {
                *base = rel;
                return walk_dirs(dir_fd, "", false, ret_fd);
        }
        parent = strndup(rel, (size_t)(slash - rel));
        if (!parent)
                return -ENOMEM;
        r = walk_dirs(dir_fd, parent, create, ret_fd);
        free(parent);
        *base = slash + 1;
        return r;
}

int model_cache_tree_size(int dir_fd, const char *rel, uint64_t *ret_bytes) {
        const char *base;
        uint64_t bytes = 0;
        int pfd, r;

        r = open_parent(dir_fd, rel, false, &pfd, &base);
        if (r == -ENOENT) {
                *ret_bytes = 0;
                return 0;
        }
        if (r < 0)
                return r;
        r = tree_walk(pfd, base, false, 0, &bytes);
        close(pfd);
        if (r == 0)
                *ret_bytes = bytes;
        return r;
}

int model_cache_remove_tree(int dir_fd, const char *rel, uint64_t *ret_freed) {
        const char *base;
        uint64_t bytes = 0;
        int pfd, r;

        if (!rel || !rel[0] || strcmp(rel, ".") == 0)
                return -EINVAL;
        r = open_parent(dir_fd, rel, false, &pfd, &base);
        if (r == -ENOENT) {
                if (ret_freed)
                        *ret_freed = 0;
                return 0;
        }
        if (r < 0)
                return r;
        r = tree_walk(pfd, base, true, 0, &bytes);
        if (r == 0)
                fsync(pfd);
        close(pfd);
        if (r == 0 && ret_freed)
                *ret_freed = bytes;
        return r;
}

int model_cache_place(int stage_fd, const char *stage_name, int dir_fd, const char *dest_rel) {
        const char *base;
        int pfd, r;

        if (!model_cache_relpath_valid(dest_rel))
                return -EINVAL;
        r = open_parent(dir_fd, dest_rel, true, &pfd, &base);
        if (r < 0)
                return r;
        if (renameat(stage_fd, stage_name, pfd, base) < 0)
                r = -errno;
        else
                fsync(pfd);
        close(pfd);
        return r;
}

/* ---- models in use ---- */

static model_cache_in_use_fn in_use_fn;
static void *in_use_ud;

void model_cache_set_in_use(model_cache_in_use_fn fn, void *ud) {
        in_use_fn = fn;
        in_use_ud = ud;
}

json_t *model_cache_in_use(const char *path) {
        json_t *ids = in_use_fn ? in_use_fn(path, in_use_ud) : NULL, *out, *v;
        size_t i;

        out = json_array();
        if (!out) {
                json_decref(ids);
                return NULL;
        }
        /* Keep only strings, whatever the hook returned. */
        json_array_foreach(ids, i, v) {
                if (json_is_string(v))
                        json_array_append(out, v);
        }
        json_decref(ids);
        return out;
}

/* ---- Hugging Face layout ---- */

static int hf_dir(model_cache *c, const char *repo_dir, const char *sub, bool create, int *ret_fd) {
        char rel[PATH_MAX];

        if (snprintf(rel, sizeof rel, "%s/%s/%s", MODEL_CACHE_HUB, repo_dir, sub) >= (int)sizeof rel)
                return -ENAMETOOLONG;
        return walk_dirs(c->fd, rel, create, ret_fd);
}

bool model_cache_hf_blob_present(model_cache *c, const char *repo_dir, const char *blob,
                                 uint64_t size) {
        struct stat st;
        int fd;
        bool ok;

        if (hf_dir(c, repo_dir, "blobs", false, &fd) < 0)
                return false;
        ok = fstatat(fd, blob, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
             (uint64_t)st.st_size == size;
        close(fd);
        return ok;
}

int model_cache_hf_place_blob(model_cache *c, const char *repo_dir, int stage_fd,
                              const char *stage_name, const char *blob) {
        int fd, r;

        if (!model_cache_relpath_valid(blob) || strchr(blob, '/'))
                return -EINVAL;
        r = hf_dir(c, repo_dir, "blobs", true, &fd);
        if (r < 0)
                return r;
        r = model_cache_place(stage_fd, stage_name, fd, blob);
        close(fd);
        return r;
}

int model_cache_hf_link(model_cache *c, const char *repo_dir, const char *commit,
                        const char *path, const char *blob) {
        char sub[128], target[PATH_MAX], tmp[NAME_MAX + 1];
        const char *base, *q;
        size_t w = 0;
        int dfd, pfd, r;

        if (!model_cache_relpath_valid(path) || !model_cache_relpath_valid(commit) ||
            strchr(commit, '/'))
                return -EINVAL;
        snprintf(sub, sizeof sub, "snapshots/%s", commit);
        r = hf_dir(c, repo_dir, sub, true, &dfd);
        if (r < 0)
                return r;
        r = open_parent(dfd, path, true, &pfd, &base);
        close(dfd);
        if (r < 0)
                return r;
        /* From snapshots/<commit>/<dirs...>/ back up to the repo directory. */
        for (q = path; (q = strchr(q, '/')); q++)
                w += (size_t)snprintf(target + w, sizeof target - w, "../");
        w += (size_t)snprintf(target + w, sizeof target - w, "../../blobs/%s", blob);
        if (w >= sizeof target) {
                close(pfd);
                return -ENAMETOOLONG;
        }
        snprintf(tmp, sizeof tmp, ".%.200s.lnk.%ld", base, (long)getpid());
        unlinkat(pfd, tmp, 0);
        if (symlinkat(target, pfd, tmp) < 0)
                r = -errno;
        else if (renameat(pfd, tmp, pfd, base) < 0) {
                r = -errno;
                unlinkat(pfd, tmp, 0);
        }
        if (r == 0)
                fsync(pfd);
        close(pfd);
        return r;
}

int model_cache_hf_write_ref(model_cache *c, const char *repo_dir, const char *revision,
                             const char *commit) {
        char rel[PATH_MAX];
        const char *base;
        int dfd, pfd, r;

        if (strcmp(revision, commit) == 0)
                return 0;
        if (!model_cache_relpath_valid(revision))
                return -EINVAL;
        r = hf_dir(c, repo_dir, "refs", true, &dfd);
        if (r < 0)
                return r;
        snprintf(rel, sizeof rel, "%s", revision);
        r = open_parent(dfd, rel, true, &pfd, &base);
        close(dfd);
        if (r < 0)
                return r;
        r = model_cache_write_atomic(pfd, base, commit, strlen(commit), 0644);
        close(pfd);
        return r;
}

int model_cache_hf_snapshot_path(const model_cache *c, const char *repo_dir, const char *commit,
                                 char **ret_path) {
        char *s;

        if (asprintf(&s, "%s/%s/%s/snapshots/%s", c->dir, MODEL_CACHE_HUB, repo_dir, commit) < 0)
                return -ENOMEM;
        *ret_path = s;
        return 0;
}
