/* libFuzzer target for src/core/jwt: decode arbitrary tokens. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *token, err[256];
        jwt_claims c;

        if (size > JWT_MAX_LEN + 16)
                return 0;
        token = malloc(size + 1);
        if (!token)
                return 0;
        memcpy(token, data, size);
        token[size] = '\0';
        if (jwt_decode(token, &c, err, sizeof err) == 0) {
                assert(!c.sub || strlen(c.sub) < size);
                jwt_claims_done(&c);
        }
        free(token);
        return 0;
}
