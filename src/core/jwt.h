/* jwt: reads the claims of a JSON Web Token (RFC 7519) without verifying
 * it. The worker has no secret; it only looks at the payload to learn its
 * node id (`sub`) and the expiry (PROTOCOL.md §2.1). Pure functions. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest token accepted (the controller's are about 250 bytes). */
#define JWT_MAX_LEN 16384

/* Claims this project uses. Strings are owned; release with
 * jwt_claims_done(). A claim that is absent is NULL / has_* false. */
typedef struct jwt_claims {
        char *sub;     /* node id */
        char *node_id; /* "nodeId", same value as sub in the controller's tokens */
        char *type;    /* "node" */
        int64_t exp;   /* Unix seconds, valid when has_exp */
        int64_t iat;   /* Unix seconds, valid when has_iat */
        bool has_exp;
        bool has_iat;
} jwt_claims;

/* Decodes token (NUL-terminated, compact serialisation
 * header.payload.signature). Checks the form only: exactly three segments,
 * header and payload base64url (padding optional) decoding to JSON
 * objects, at most JWT_MAX_LEN bytes. The signature is never checked.
 * Claim types when present: sub, nodeId, type strings; exp, iat numbers
 * (a fraction is dropped) within int64. Other claims are ignored.
 * Returns 0 and fills *ret_claims (caller calls jwt_claims_done()), or
 * -EINVAL (malformed) / -E2BIG / -ENOMEM with a one-line reason in err
 * (may be NULL). */
int jwt_decode(const char *token, jwt_claims *ret_claims, char *err, size_t errlen);

/* Frees the strings and zeroes *c. Accepts NULL. */
void jwt_claims_done(jwt_claims *c);
