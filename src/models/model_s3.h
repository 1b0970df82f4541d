/* model_s3: the S3 (MinIO, AWS, s3rver) side of model downloads, without any
 * I/O: ListObjectsV2 response pages parsed by a small hand-written XML reader,
 * S3 error documents, and the path-style URLs the downloader requests.
 *
 * The XML reader accepts the subset S3 produces: a prolog (<?xml ...?>),
 * comments, elements with attributes, character data with the five named
 * entities and numeric character references (decoded to UTF-8), CDATA
 * sections. A DOCTYPE is refused (no entity definitions, so no expansion
 * attacks). Tags must nest properly. Namespace prefixes are ignored. Limits:
 * MODEL_S3_MAX_DEPTH element depth, MODEL_S3_MAX_KEY bytes per key (S3's own
 * limit), MODEL_S3_MAX_PAGE objects per page, MODEL_S3_MAX_TEXT bytes of text
 * in any element.
 *
 * URLs are path-style: <endpoint>/<bucket>/<key>, every byte of the key
 * except unreserved characters and '/' percent-encoded with upper-case hex,
 * which is also the canonical form AWS Signature V4 signs; list queries are
 * written with their parameters sorted and encoded canonically, so the
 * signature libcurl computes (CURLOPT_AWS_SIGV4) matches whatever
 * canonicalisation the server applies. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define MODEL_S3_MAX_DEPTH 16
#define MODEL_S3_MAX_KEY 1024
#define MODEL_S3_MAX_PAGE 10000
#define MODEL_S3_MAX_TEXT 4096
#define MODEL_S3_MAX_TOKEN 1024

/* One object of a listing. */
typedef struct model_s3_object {
        char *key;      /* as stored, decoded */
        uint64_t size;  /* bytes */
        char *etag;     /* without the surrounding quotes; NULL when absent */
} model_s3_object;

/* One ListObjectsV2 page. */
typedef struct model_s3_page {
        model_s3_object *objects;
        size_t n_objects;
        bool truncated;   /* IsTruncated */
        char *next_token; /* NextContinuationToken; NULL when absent */
} model_s3_page;

/* Parses a ListObjectsV2 response body (len bytes, need not be
 * NUL-terminated). Returns 0 and fills *ret_page (release with
 * model_s3_page_done()), -EBADMSG for malformed XML, a document that is not
 * a ListBucketResult, a Contents without Key or with a bad Size, or a
 * truncated page without a continuation token; -E2BIG when a limit is
 * passed; -ENOMEM. err gets a sentence (errlen may be 0). */
int model_s3_parse_list(const char *xml, size_t len, model_s3_page *ret_page, char *err,
                        size_t errlen);
/* Frees the page's contents and zeroes it; accepts NULL. */
void model_s3_page_done(model_s3_page *page);

/* Parses an S3 <Error> document: 0 with Code and Message copied (truncated)
 * into code/message, or -EBADMSG when the body is not one. */
int model_s3_parse_error(const char *xml, size_t len, char *code, size_t codelen, char *message,
                         size_t messagelen);

/* True when etag is the MD5 of the object's content: 32 hex digits, which is
 * what S3 reports for objects uploaded in one part (multipart uploads give
 * "<hex>-<parts>", encrypted objects something else). */
bool model_s3_etag_is_md5(const char *etag);

/* Splits a sourcePath "bucket/prefix..." (a leading "s3://" is accepted) into
 * a heap bucket and prefix (may be "": the whole bucket). -EINVAL when the
 * bucket name is not a valid S3 bucket name (3-63 of [a-z0-9.-], starting and
 * ending with a letter or digit) or the prefix has control characters. */
int model_s3_split_path(const char *source_path, char **ret_bucket, char **ret_prefix);

/* Appends s percent-encoded as SigV4 wants it: A-Z a-z 0-9 - _ . ~ kept,
 * '/' kept when keep_slash, every other byte %XX (upper-case). Also right for
 * the path segments of Hub URLs. 0 or buf_append()'s error. */
int model_s3_uri_encode(buf *b, const char *s, bool keep_slash);

/* <endpoint>/<bucket>?continuation-token=..&list-type=2&max-keys=N&prefix=..
 * (token omitted when NULL; max_keys 0: 1000). endpoint is http(s)://host[:port]
 * with an optional path, no trailing slash needed. Heap string. */
int model_s3_list_url(const char *endpoint, const char *bucket, const char *prefix,
                      const char *token, unsigned max_keys, char **ret_url);
/* <endpoint>/<bucket>/<key encoded>. Heap string. */
int model_s3_object_url(const char *endpoint, const char *bucket, const char *key,
                        char **ret_url);
/* The SigV4 provider string for CURLOPT_AWS_SIGV4: "aws:amz:<region>:s3"
 * into out. -EINVAL when region is empty, too long or not [a-z0-9-]. */
int model_s3_sigv4_param(const char *region, char *out, size_t outlen);
