/* Unit tests of src/models/model_hf.c: repository ids, revisions and paths
 * (tables), the revision listing parser (the recorded fixture plus broken
 * answers), URLs, ETag normalisation and include/exclude patterns. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/util.h"
#include "models/model_hf.h"

static void test_names(void **state) {
        static const struct {
                const char *s;
                bool repo, rev, path;
        } cases[] = {
                { "openai/whisper-large-v3", true, true, true },
                { "gpt2", true, true, true },
                { "org/name.v1_2", true, true, true },
                { "a/b/c", false, true, true },
                { "org--x/name", false, true, true },
                { "org/na..me", false, false, true },
                { "-org/name", false, false, true },
                { "org/name-", false, true, true },
                { "org/.name", false, true, true },
                { "refs/pr/1", false, true, true },
                { "v1.0", true, true, true },
                { "../x", false, false, false },
                { "x/../y", false, false, false },
                { "x/./y", false, false, false },
                { "/abs", false, false, false },
                { "x//y", false, false, false },
                { "x/", false, false, false },
                { "", false, false, false },
                { "with space", false, false, true },
                { "tab\there", false, false, false },
                { "back\\slash", false, false, false },
                { "7c8a2f3e9d1b4a6c5e0f1a2b3c4d5e6f70819203", true, true, true },
        };
        size_t i;

        for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                print_message("case \"%s\"\n", cases[i].s);
                assert_int_equal(model_hf_repo_valid(cases[i].s), cases[i].repo);
                assert_int_equal(model_hf_revision_valid(cases[i].s), cases[i].rev);
                assert_int_equal(model_hf_path_valid(cases[i].s), cases[i].path);
        }
        assert_false(model_hf_repo_valid(NULL));
        assert_true(model_hf_is_commit("7c8a2f3e9d1b4a6c5e0f1a2b3c4d5e6f70819203"));
        assert_false(model_hf_is_commit("7C8A2F3E9D1B4A6C5E0F1A2B3C4D5E6F70819203"));
        assert_false(model_hf_is_commit("main"));
}

static void test_parse_fixture(void **state) {
        char *data = NULL, err[256];
        size_t len = 0;
        model_hf_info info;

        assert_int_equal(util_read_file(AIWM_FIXTURES "/hf/aiwm-test/tiny-model/info.json", 1 << 20, &data, &len),
                         0);
        assert_int_equal(model_hf_parse_info(data, len, &info, err, sizeof err), 0);
        assert_string_equal(info.commit, "7c8a2f3e9d1b4a6c5e0f1a2b3c4d5e6f70819203");
        assert_int_equal(info.n_files, 6);
        /* Sorted by path. */
        assert_string_equal(info.files[0].path, ".gitattributes");
        assert_string_equal(info.files[3].path, "model.safetensors");
        assert_true(info.files[3].lfs);
        assert_string_equal(info.files[3].sha256, "2e243149358cb65715004f12356a2b61b751d8ed07278e44f0633804b166305d");
        assert_true(info.files[3].size == 12112);
        assert_string_equal(info.files[4].path, "onnx/model.onnx");
        assert_false(info.files[2].lfs);
        assert_string_equal(info.files[2].blob_id, "161568a6756de576780879e9c62be6b3f6ed337b");
        assert_string_equal(info.files[2].sha256, "");
        assert_true(info.total_size == 32551);
        model_hf_info_done(&info);
        model_hf_info_done(&info);
        free(data);
}

static void test_parse_errors(void **state) {
        static const struct {
                const char *json;
                int r;
        } cases[] = {
                { "{\"sha\":\"0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0\",\"siblings\":[]}", 0 },
                { "not json", -EBADMSG },
                { "[]", -EBADMSG },
                { "{\"siblings\":[]}", -EBADMSG },
                { "{\"sha\":\"abc\",\"siblings\":[]}", -EBADMSG },
                { "{\"sha\":\"0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0\"}", -EBADMSG },
                /* no size: the answer of a call without blobs=true */
                { "{\"sha\":\"0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0\",\"siblings\":[{\"rfilename\":\"a\"}]}",
                  -EBADMSG },
                { "{\"sha\":\"0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0\",\"siblings\":[{\"rfilename\":\"../a\",\"size\":1}]}",
                  -EBADMSG },
                { "{\"sha\":\"0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0\",\"siblings\":[{\"rfilename\":\"/etc/x\",\"size\":1}]}",
                  -EBADMSG },
                { "{\"sha\":\"0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0\",\"siblings\":[{\"rfilename\":\"a\",\"size\":-1}]}",
                  -EBADMSG },
                { "{\"sha\":\"0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0\",\"siblings\":[{\"rfilename\":\"a\",\"size\":1,"
                  "\"blobId\":\"xyz\"}]}",
                  -EBADMSG },
                { "{\"sha\":\"0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0\",\"siblings\":[{\"rfilename\":\"a\",\"size\":1,"
                  "\"lfs\":{\"sha256\":\"00\",\"size\":1}}]}",
                  -EBADMSG },
                { "{\"sha\":\"0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0\",\"siblings\":[{\"rfilename\":\"a\",\"size\":1},"
                  "{\"rfilename\":\"a\",\"size\":2}]}",
                  -EBADMSG },
                { "{\"sha\":\"0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0\",\"siblings\":[{\"rfilename\":\"a\",\"size\":"
                  "9007199254740992}]}",
                  -E2BIG },
                { "{\"sha\":\"0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0\",\"sha\":\"0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0\","
                  "\"siblings\":[]}",
                  -EBADMSG },
        };
        size_t i;

        for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                model_hf_info info;
                char err[256] = "";
                int r = model_hf_parse_info(cases[i].json, strlen(cases[i].json), &info, err, sizeof err);
                print_message("case %zu: %d %s\n", i, r, err);
                assert_int_equal(r, cases[i].r);
                if (r == 0)
                        model_hf_info_done(&info);
                else
                        assert_true(err[0] != '\0');
        }
}

static void test_urls(void **state) {
        char *s = NULL;

        assert_int_equal(model_hf_repo_dir("openai/whisper-large-v3", &s), 0);
        assert_string_equal(s, "models--openai--whisper-large-v3");
        free(s);
        assert_int_equal(model_hf_repo_dir("gpt2", &s), 0);
        assert_string_equal(s, "models--gpt2");
        free(s);
        assert_int_equal(model_hf_repo_dir("a/b/c", &s), -EINVAL);
        assert_int_equal(model_hf_info_url("https://huggingface.co/", "org/m", "refs/pr/1", &s), 0);
        assert_string_equal(s, "https://huggingface.co/api/models/org/m/revision/refs%2Fpr%2F1?blobs=true");
        free(s);
        assert_int_equal(model_hf_file_url("http://127.0.0.1:8080", "org/m", "7c8a2f3e9d1b4a6c5e0f1a2b3c4d5e6f70819203",
                                           "sub dir/x+y.bin", &s),
                         0);
        assert_string_equal(s, "http://127.0.0.1:8080/org/m/resolve/7c8a2f3e9d1b4a6c5e0f1a2b3c4d5e6f70819203/"
                               "sub%20dir/x%2By.bin");
        free(s);
        assert_int_equal(model_hf_file_url("http://h", "org/m", "main", "../x", &s), -EINVAL);
        assert_int_equal(model_hf_info_url("http://h", "org/m", "a..b", &s), -EINVAL);
}

static void test_etag(void **state) {
        static const struct {
                const char *in, *out;
        } ok[] = {
                { "\"2e243149358cb65715004f12356a2b61b751d8ed07278e44f0633804b166305d\"",
                  "2e243149358cb65715004f12356a2b61b751d8ed07278e44f0633804b166305d" },
                { "W/\"abc\"", "abc" },
                { "  \"x\"\r\n", "x" },
                { "plain", "plain" },
        };
        char out[80];
        size_t i;

        for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
                assert_int_equal(model_hf_normalize_etag(ok[i].in, out, sizeof out), 0);
                assert_string_equal(out, ok[i].out);
        }
        assert_int_equal(model_hf_normalize_etag("\"\"", out, sizeof out), -EINVAL);
        assert_int_equal(model_hf_normalize_etag(NULL, out, sizeof out), -EINVAL);
        assert_int_equal(model_hf_normalize_etag("\"abcdef\"", out, 4), -EINVAL);
}

static void test_patterns(void **state) {
        static const struct {
                const char *pattern, *path;
                bool match;
        } cases[] = {
                { "*.safetensors", "model.safetensors", true },
                { "*.safetensors", "sub/model.safetensors", true }, /* '*' crosses '/' like Python's fnmatch */
                { "*.json", "model.safetensors", false },
                { "onnx/", "onnx/model.onnx", true },
                { "onnx/", "onnx2/model.onnx", false },
                { "onnx/*", "onnx/model.onnx", true },
                { "config.json", "config.json", true },
                { "[ct]*.json", "tokenizer.json", true },
                { "", "x", false },
        };
        size_t i;

        for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
                assert_int_equal(model_hf_pattern_match(cases[i].pattern, cases[i].path), cases[i].match);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_parse_fixture),
                cmocka_unit_test(test_parse_errors),
                cmocka_unit_test(test_urls),
                cmocka_unit_test(test_etag),
                cmocka_unit_test(test_patterns),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
