/* libFuzzer target for src/core/dotenv: parse arbitrary text and check the
 * result's invariants. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/dotenv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char err[256];
        dotenv d;
        size_t i, j;

        if (dotenv_parse((const char *)data, size, &d, err, sizeof err) < 0)
                return 0;
        assert(d.n_entries <= DOTENV_MAX_ENTRIES);
        for (i = 0; i < d.n_entries; i++) {
                const char *k = d.entries[i].key;
                assert(k[0]);
                for (j = 0; k[j]; j++)
                        assert(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-", k[j]));
                assert(strlen(d.entries[i].value) <= size);
                assert(d.entries[i].line >= 1);
                assert(dotenv_get(&d, k) == d.entries[i].value); /* keys are unique */
        }
        for (i = 1; i < d.n_invalid; i++)
                assert(d.invalid_lines[i] > d.invalid_lines[i - 1]);
        dotenv_done(&d);
        return 0;
}
