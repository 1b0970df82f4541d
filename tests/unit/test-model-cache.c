/* Unit tests of src/models/model_cache.c on a private directory: target
 * path resolution (table: traversal, absolute paths, reserved names,
 * symbolic links planted on the way), file names for keys, directories that
 * refuse links, manifests, locks, trees, placement and the huggingface_hub
 * layout (blobs, relative snapshot links, refs). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "models/model_cache.h"

typedef struct fx {
        char base[64];   /* the test's private directory */
        char root[128];  /* base/cache */
        model_cache *c;
        int fds_before;
} fx;

static int count_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *e;
        int n = 0;

        if (!d)
                return -1;
        while ((e = readdir(d)))
                if (e->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

static void write_file(const char *path, const char *text) {
        FILE *f = fopen(path, "w");

        assert_non_null(f);
        fputs(text, f);
        fclose(f);
}

static int setup(void **state) {
        fx *f = calloc(1, sizeof *f);
        char err[256] = "";

        assert_non_null(f);
        f->fds_before = count_fds();
        snprintf(f->base, sizeof f->base, "/tmp/test-model-cache.XXXXXX");
        assert_non_null(mkdtemp(f->base));
        snprintf(f->root, sizeof f->root, "%s/cache", f->base);
        assert_int_equal(model_cache_open(f->root, &f->c, err, sizeof err), 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        fx *f = *state;
        char cmd[200];

        f->c = model_cache_free(f->c);
        assert_null(f->c);
        assert_int_equal(count_fds(), f->fds_before);
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->base);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

static void test_open(void **state) {
        fx *f = *state;
        static const char *const dirs[] = { "hub", ".staging", ".manifests", ".locks" };
        model_cache *c = NULL;
        char err[256], p[256];
        struct stat st;
        size_t i;

        for (i = 0; i < 4; i++) {
                snprintf(p, sizeof p, "%s/%s", f->root, dirs[i]);
                assert_int_equal(stat(p, &st), 0);
                assert_true(S_ISDIR(st.st_mode));
        }
        assert_string_equal(model_cache_dir(f->c), f->root);
        assert_int_equal(model_cache_open("relative/dir", &c, err, sizeof err), -EINVAL);
        assert_null(c);
        /* A trailing slash and doubled slashes are normalised. */
        snprintf(p, sizeof p, "%s//cache2/", f->base);
        assert_int_equal(model_cache_open(p, &c, err, sizeof err), 0);
        snprintf(p, sizeof p, "%s/cache2", f->base);
        assert_string_equal(model_cache_dir(c), p);
        model_cache_free(c);
        assert_null(model_cache_free(NULL));
}

static void test_resolve(void **state) {
        fx *f = *state;
        char p[256], abs_in[256], abs_out[256], abs_root[256];
        struct {
                const char *target;
                const char *rel; /* NULL: refused */
        } cases[] = {
                { "m1", "m1" },
                { "a/b/./c//", "a/b/c" },
                { "./x", "x" },
                { "models/llama-7b", "models/llama-7b" },
                { abs_in, "abs/model" },
                { abs_out, NULL },
                { abs_root, NULL },
                { "../x", NULL },
                { "a/../b", NULL },
                { "a/..", NULL },
                { "", NULL },
                { ".", NULL },
                { "/", NULL },
                { "hub/models--x--y", NULL },
                { ".staging/x", NULL },
                { ".manifests", NULL },
                { "a/.hidden", "a/.hidden" },
                { "tab\tname", NULL },
                { "back\\slash", NULL },
                { "escape/x", NULL },   /* escape -> / */
                { "inside/x", NULL },   /* inside -> a directory of the cache: links are refused */
                { "file/x", NULL },     /* a regular file on the way */
                { "dir/sub/new", "dir/sub/new" },
        };
        size_t i;

        snprintf(abs_in, sizeof abs_in, "%s/abs/model", f->root);
        snprintf(abs_out, sizeof abs_out, "%s/elsewhere", f->base);
        snprintf(abs_root, sizeof abs_root, "%s/", f->root);
        snprintf(p, sizeof p, "%s/escape", f->root);
        assert_int_equal(symlink("/", p), 0);
        snprintf(p, sizeof p, "%s/dir/sub", f->root);
        assert_int_equal(model_cache_mkdirs(model_cache_fd(f->c), "dir/sub", NULL), 0);
        snprintf(p, sizeof p, "%s/inside", f->root);
        assert_int_equal(symlink("dir", p), 0);
        snprintf(p, sizeof p, "%s/file", f->root);
        write_file(p, "x");
        for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                char *rel = NULL, err[256] = "";
                int r = model_cache_resolve_target(f->c, cases[i].target, &rel, err, sizeof err);
                print_message("case \"%s\": %d %s\n", cases[i].target, r, err);
                if (cases[i].rel) {
                        assert_int_equal(r, 0);
                        assert_string_equal(rel, cases[i].rel);
                } else {
                        assert_int_equal(r, -EINVAL);
                        assert_null(rel);
                        assert_true(err[0] != '\0');
                }
                free(rel);
        }
}

static void test_resolve_through_linked_root(void **state) {
        fx *f = *state;
        model_cache *c = NULL;
        char link[256], real[256], target[300], err[256], *rel = NULL;

        /* The operator's MODEL_CACHE_DIR may itself be a link; absolute
         * targets written with either spelling are accepted. */
        snprintf(real, sizeof real, "%s/real", f->base);
        snprintf(link, sizeof link, "%s/link", f->base);
        assert_int_equal(mkdir(real, 0755), 0);
        assert_int_equal(symlink(real, link), 0);
        assert_int_equal(model_cache_open(link, &c, err, sizeof err), 0);
        snprintf(target, sizeof target, "%s/m", real);
        assert_int_equal(model_cache_resolve_target(c, target, &rel, err, sizeof err), 0);
        assert_string_equal(rel, "m");
        free(rel);
        snprintf(target, sizeof target, "%s/m2", link);
        assert_int_equal(model_cache_resolve_target(c, target, &rel, err, sizeof err), 0);
        assert_string_equal(rel, "m2");
        free(rel);
        model_cache_free(c);
}

static void test_key_names(void **state) {
        static const struct {
                const char *key, *name;
        } cases[] = {
                { "m1", "m1" },
                { "llama-7b_v2.1", "llama-7b_v2.1" },
                { ".hidden", "%2ehidden" },
                { "a/b", "a%2fb" },
                { "x y", "x%20y" },
                { "", "%00" },
        };
        char out[MODEL_CACHE_KEY_NAME_MAX], longkey[300];
        size_t i;

        for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                model_cache_key_name(cases[i].key, out);
                assert_string_equal(out, cases[i].name);
        }
        memset(longkey, 'k', sizeof longkey - 1);
        longkey[sizeof longkey - 1] = '\0';
        model_cache_key_name(longkey, out);
        assert_int_equal(strlen(out), 66);
        assert_true(strncmp(out, "h-", 2) == 0);
        memset(longkey, '/', 50);
        longkey[50] = '\0';
        model_cache_key_name(longkey, out);
        assert_int_equal(strlen(out), 66);
}

static void test_relpath(void **state) {
        static const struct {
                const char *p;
                bool ok;
        } cases[] = {
                { "a", true },          { "a/b/c.bin", true }, { "sub dir/x", true }, { ".hidden", true },
                { "", false },          { "/a", false },       { "a/", false },       { "a//b", false },
                { "..", false },        { "a/../b", false },   { "./a", false },      { "a\nb", false },
                { "a\\b", false },
        };
        char longname[300];
        size_t i;

        for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
                assert_int_equal(model_cache_relpath_valid(cases[i].p), cases[i].ok);
        memset(longname, 'n', 256);
        longname[256] = '\0';
        assert_false(model_cache_relpath_valid(longname));
        assert_false(model_cache_relpath_valid(NULL));
}

static void test_mkdirs_refuse_links(void **state) {
        fx *f = *state;
        int root = model_cache_fd(f->c), fd = -1;
        char p[256];
        struct stat st;

        assert_int_equal(model_cache_mkdirs(root, "x/y/z", &fd), 0);
        assert_true(fd >= 0);
        close(fd);
        snprintf(p, sizeof p, "%s/out", f->base);
        assert_int_equal(mkdir(p, 0755), 0);
        snprintf(p, sizeof p, "%s/x/link", f->root);
        assert_int_equal(symlink("../../out", p), 0);
        assert_true(model_cache_mkdirs(root, "x/link/evil", NULL) < 0);
        snprintf(p, sizeof p, "%s/out/evil", f->base);
        assert_int_equal(stat(p, &st), -1);
        assert_true(model_cache_opendir(root, "x/link", &fd) < 0);
        assert_int_equal(model_cache_opendir(root, "missing", &fd), -ENOENT);
        assert_int_equal(model_cache_mkdirs(root, "x/../y", NULL), -EINVAL);
}

static void test_manifests(void **state) {
        fx *f = *state;
        json_t *m = json_pack("{s:s,s:I}", "modelId", "a/b", "sizeBytes", (json_int_t)42), *r = NULL, *all = NULL;
        char p[256];
        struct stat st;

        assert_int_equal(model_cache_manifest_write(f->c, "a/b", m), 0);
        assert_int_equal(model_cache_manifest_write(f->c, "m2", m), 0);
        assert_int_equal(model_cache_manifest_read(f->c, "a/b", &r), 0);
        assert_true(json_equal(m, r));
        json_decref(r);
        snprintf(p, sizeof p, "%s/.manifests/a%%2fb.json", f->root);
        assert_int_equal(stat(p, &st), 0);
        /* Garbage and temporary files are skipped by the listing. */
        snprintf(p, sizeof p, "%s/.manifests/bad.json", f->root);
        write_file(p, "{not json");
        snprintf(p, sizeof p, "%s/.manifests/.x.json.tmp.1", f->root);
        write_file(p, "{}");
        assert_int_equal(model_cache_manifest_read(f->c, "bad", &r), -EBADMSG);
        assert_int_equal(model_cache_manifest_all(f->c, &all), 0);
        assert_int_equal(json_array_size(all), 2);
        json_decref(all);
        assert_int_equal(model_cache_manifest_remove(f->c, "a/b"), 0);
        assert_int_equal(model_cache_manifest_remove(f->c, "a/b"), 0);
        assert_int_equal(model_cache_manifest_read(f->c, "a/b", &r), -ENOENT);
        /* A link planted in place of a manifest is not followed. */
        snprintf(p, sizeof p, "%s/.manifests/evil.json", f->root);
        assert_int_equal(symlink("/etc/passwd", p), 0);
        assert_int_equal(model_cache_manifest_read(f->c, "evil", &r), -ELOOP);
        json_decref(m);
}

static void test_locks(void **state) {
        fx *f = *state;
        int a = -1, b = -1;

        assert_int_equal(model_cache_lock(f->c, "k", &a), 0);
        assert_int_equal(model_cache_lock(f->c, "k", &b), -EWOULDBLOCK);
        assert_int_equal(model_cache_lock(f->c, "other", &b), 0);
        model_cache_unlock(b);
        model_cache_unlock(a);
        assert_int_equal(model_cache_lock(f->c, "k", &a), 0);
        model_cache_unlock(a);
        model_cache_unlock(-1);
}

static void test_trees_and_place(void **state) {
        fx *f = *state;
        int root = model_cache_fd(f->c), st_fd = -1;
        char p[256], outside[256];
        uint64_t n = 0, avail = 0;
        struct stat st;

        assert_int_equal(model_cache_mkdirs(root, "m/a/b", NULL), 0);
        snprintf(p, sizeof p, "%s/m/a/b/f1", f->root);
        write_file(p, "12345");
        snprintf(p, sizeof p, "%s/m/f2", f->root);
        write_file(p, "123");
        snprintf(outside, sizeof outside, "%s/outside.txt", f->base);
        write_file(outside, "precious");
        snprintf(p, sizeof p, "%s/m/link", f->root);
        assert_int_equal(symlink(outside, p), 0);
        assert_int_equal(model_cache_tree_size(root, "m", &n), 0);
        assert_int_equal(n, 8);
        assert_int_equal(model_cache_tree_size(root, "missing/x", &n), 0);
        assert_int_equal(n, 0);
        /* Staging, then placement over an existing file. */
        assert_int_equal(model_cache_staging_open(f->c, "k", true, &st_fd), 0);
        assert_int_equal(model_cache_write_atomic(st_fd, "part", "new!", 4, 0644), 0);
        assert_int_equal(model_cache_place(st_fd, "part", root, "m/f2"), 0);
        snprintf(p, sizeof p, "%s/m/f2", f->root);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_size, 4);
        assert_int_equal(model_cache_write_atomic(st_fd, "part2", "x", 1, 0644), 0);
        assert_int_equal(model_cache_place(st_fd, "part2", root, "m/new/dir/f3"), 0);
        assert_int_equal(model_cache_write_atomic(st_fd, "part3", "x", 1, 0644), 0);
        assert_true(model_cache_place(st_fd, "part3", root, "m/link/f4") < 0);
        assert_int_equal(model_cache_place(st_fd, "part3", root, "../f4"), -EINVAL);
        close(st_fd);
        assert_int_equal(model_cache_staging_remove(f->c, "k"), 0);
        assert_int_equal(model_cache_staging_open(f->c, "k", false, &st_fd), -ENOENT);
        /* Removal never follows the link. */
        assert_int_equal(model_cache_remove_tree(root, "m", &n), 0);
        assert_int_equal(n, 5 + 4 + 1);
        snprintf(p, sizeof p, "%s/m", f->root);
        assert_int_equal(lstat(p, &st), -1);
        assert_int_equal(stat(outside, &st), 0);
        assert_int_equal(model_cache_remove_tree(root, "m", &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(model_cache_remove_tree(root, "", &n), -EINVAL);
        assert_int_equal(model_cache_available(f->c, &avail), 0);
        assert_true(avail > 0);
}

static void test_hf_layout(void **state) {
        fx *f = *state;
        const char *commit = "7c8a2f3e9d1b4a6c5e0f1a2b3c4d5e6f70819203";
        const char *blob = "2e243149358cb65715004f12356a2b61b751d8ed07278e44f0633804b166305d";
        char p[512], target[256], *snap = NULL;
        int st_fd = -1;
        ssize_t n;
        struct stat st;

        assert_int_equal(model_cache_staging_open(f->c, "hf-x", true, &st_fd), 0);
        assert_int_equal(model_cache_write_atomic(st_fd, blob, "weights", 7, 0644), 0);
        assert_false(model_cache_hf_blob_present(f->c, "models--org--m", blob, 7));
        assert_int_equal(model_cache_hf_place_blob(f->c, "models--org--m", st_fd, blob, blob), 0);
        assert_true(model_cache_hf_blob_present(f->c, "models--org--m", blob, 7));
        assert_false(model_cache_hf_blob_present(f->c, "models--org--m", blob, 8));
        assert_int_equal(model_cache_hf_place_blob(f->c, "models--org--m", st_fd, blob, "../x"), -EINVAL);
        close(st_fd);
        assert_int_equal(model_cache_hf_link(f->c, "models--org--m", commit, "model.safetensors", blob), 0);
        assert_int_equal(model_cache_hf_link(f->c, "models--org--m", commit, "onnx/deep/model.onnx", blob), 0);
        /* Linking again replaces the link. */
        assert_int_equal(model_cache_hf_link(f->c, "models--org--m", commit, "model.safetensors", blob), 0);
        snprintf(p, sizeof p, "%s/hub/models--org--m/snapshots/%s/model.safetensors", f->root, commit);
        n = readlink(p, target, sizeof target - 1);
        assert_true(n > 0);
        target[n] = '\0';
        snprintf(p, sizeof p, "../../blobs/%s", blob);
        assert_string_equal(target, p);
        snprintf(p, sizeof p, "%s/hub/models--org--m/snapshots/%s/onnx/deep/model.onnx", f->root, commit);
        n = readlink(p, target, sizeof target - 1);
        target[n] = '\0';
        snprintf(p, sizeof p, "../../../../blobs/%s", blob);
        assert_string_equal(target, p);
        snprintf(p, sizeof p, "%s/hub/models--org--m/snapshots/%s/onnx/deep/model.onnx", f->root, commit);
        assert_int_equal(stat(p, &st), 0); /* the link resolves */
        assert_int_equal(st.st_size, 7);
        assert_int_equal(model_cache_hf_write_ref(f->c, "models--org--m", "main", commit), 0);
        assert_int_equal(model_cache_hf_write_ref(f->c, "models--org--m", "refs/pr/1", commit), 0);
        assert_int_equal(model_cache_hf_write_ref(f->c, "models--org--m", commit, commit), 0);
        snprintf(p, sizeof p, "%s/hub/models--org--m/refs/main", f->root);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_size, 40);
        snprintf(p, sizeof p, "%s/hub/models--org--m/refs/refs/pr/1", f->root);
        assert_int_equal(stat(p, &st), 0);
        snprintf(p, sizeof p, "%s/hub/models--org--m/refs/%s", f->root, commit);
        assert_int_equal(stat(p, &st), -1);
        assert_int_equal(model_cache_hf_link(f->c, "models--org--m", commit, "../escape", blob), -EINVAL);
        assert_int_equal(model_cache_hf_snapshot_path(f->c, "models--org--m", commit, &snap), 0);
        snprintf(p, sizeof p, "%s/hub/models--org--m/snapshots/%s", f->root, commit);
        assert_string_equal(snap, p);
        free(snap);
}

static json_t *in_use(const char *path, void *ud) {
        if (strstr(path, "busy"))
                return json_pack("[s,i,s]", "dep-1", 7, "dep-2");
        return NULL;
}

static void test_in_use(void **state) {
        json_t *a = model_cache_in_use("/x/busy");

        assert_int_equal(json_array_size(a), 0);
        json_decref(a);
        model_cache_set_in_use(in_use, NULL);
        a = model_cache_in_use("/x/busy");
        assert_int_equal(json_array_size(a), 2);
        assert_string_equal(json_string_value(json_array_get(a, 1)), "dep-2");
        json_decref(a);
        a = model_cache_in_use("/x/idle");
        assert_int_equal(json_array_size(a), 0);
        json_decref(a);
        model_cache_set_in_use(NULL, NULL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_open, setup, teardown),
                cmocka_unit_test_setup_teardown(test_resolve, setup, teardown),
                cmocka_unit_test_setup_teardown(test_resolve_through_linked_root, setup, teardown),
                cmocka_unit_test(test_key_names),
                cmocka_unit_test(test_relpath),
                cmocka_unit_test_setup_teardown(test_mkdirs_refuse_links, setup, teardown),
                cmocka_unit_test_setup_teardown(test_manifests, setup, teardown),
                cmocka_unit_test_setup_teardown(test_locks, setup, teardown),
                cmocka_unit_test_setup_teardown(test_trees_and_place, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hf_layout, setup, teardown),
                cmocka_unit_test(test_in_use),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
