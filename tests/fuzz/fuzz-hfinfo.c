/* libFuzzer target for src/models/model_hf.c: the Hub's revision listing
 * (JSON) from arbitrary bytes. Every accepted listing has a 40-hex commit,
 * sorted unique safe paths, hex digests, and a total that is the sum of the
 * sizes. The name checks must agree with what the cache accepts. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "models/model_cache.h"
#include "models/model_hf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        model_hf_info info;
        char err[256], *s;
        uint64_t total = 0;
        size_t i;

        /* The name checks on the raw bytes as a string. */
        s = strndup((const char *)data, size < 512 ? size : 512);
        if (s) {
                if (model_hf_path_valid(s))
                        assert(model_cache_relpath_valid(s));
                if (model_hf_repo_valid(s)) {
                        char *dir = NULL;
                        assert(model_hf_repo_dir(s, &dir) == 0);
                        assert(model_cache_relpath_valid(dir) && !strchr(dir, '/'));
                        free(dir);
                }
                free(s);
        }
        if (model_hf_parse_info((const char *)data, size, &info, err, sizeof err) < 0) {
                assert(err[0]);
                return 0;
        }
        assert(model_hf_is_commit(info.commit));
        for (i = 0; i < info.n_files; i++) {
                const model_hf_file *f = &info.files[i];
                assert(model_hf_path_valid(f->path) && model_cache_relpath_valid(f->path));
                assert(i == 0 || strcmp(info.files[i - 1].path, f->path) < 0);
                assert(f->lfs == (f->sha256[0] != '\0'));
                assert(!f->sha256[0] || strlen(f->sha256) == 64);
                assert(!f->blob_id[0] || strlen(f->blob_id) == 40);
                assert(f->size <= MODEL_HF_MAX_FILE_SIZE);
                total += f->size;
        }
        assert(total == info.total_size);
        model_hf_info_done(&info);
        return 0;
}
