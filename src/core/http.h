/* http: every HTTP transfer of the worker, through libcurl's multi interface
 * driven by the loop (curl's sockets are loop I/O sources, its timeout a loop
 * timer). Nothing blocks: a download or a slow Docker call never delays a
 * heartbeat. Completion callbacks always arrive on a later loop turn, never
 * from inside http_request_start().
 *
 * Bodies are either buffered (capped by max_response) or streamed to
 * on_data. Credentials given in headers or userpwd never appear in error
 * texts.
 *
 * Re-entrancy: from inside on_headers/on_data (which run inside libcurl) a
 * caller may start new requests and cancel any request, its own included:
 * the client defers the libcurl calls that are not allowed there to the
 * next loop turn. From inside a done callback it may start requests and
 * cancel other requests; cancelling the finishing request there is a no-op.
 * http_client_free() must not be called from any of these callbacks. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/loop.h"

typedef struct http_client http_client;
typedef struct http_request http_request;

typedef struct http_options {
        const char *method;                 /* NULL: GET (POST when body is set) */
        const char *url;
        const char *const *headers;         /* NULL-terminated "Name: value" lines */
        const void *body;                   /* request body, copied by libcurl */
        size_t body_len;
        const char *unix_socket;            /* CURLOPT_UNIX_SOCKET_PATH */
        uint64_t timeout_ms;                /* whole transfer; 0: none */
        uint64_t connect_timeout_ms;        /* 0: 10000 */
        long low_speed_limit;               /* bytes/s ... */
        long low_speed_time_s;              /* ... for this long aborts; 0: off */
        size_t max_response;                /* buffered body cap; 0: 16 MiB */
        bool follow_redirects;              /* never from https to http (-ELOOP) */
        int64_t resume_from;                /* > 0: Range: bytes=N- */
        const char *aws_sigv4;              /* CURLOPT_AWS_SIGV4, with userpwd */
        const char *userpwd;                /* "user:password" */
        const char *ca_file;
        bool insecure;
        /* Streaming: called with each chunk of the body (of the final
         * response, after redirects); return < 0 to abort the transfer with
         * that error. When set, nothing is buffered. */
        int (*on_data)(http_request *req, const void *data, size_t len, void *userdata);
        /* Called once the final response's headers are in (before any body
         * byte); return < 0 to abort. May be NULL. */
        int (*on_headers)(http_request *req, long status, void *userdata);
        long max_redirects;                 /* with follow_redirects; 0: 10 */
} http_options;

typedef struct http_result {
        int err;            /* 0, or a negative errno: -ETIMEDOUT, -ECONNREFUSED,
                             * -EHOSTUNREACH (resolve), -EKEYREJECTED (TLS
                             * verification), -E2BIG (over max_response),
                             * -ECANCELED (on_data/on_headers abort: the code
                             * they returned is in abort_code), -EIO */
        int abort_code;
        const char *error;  /* human text, "" when none */
        long status;        /* HTTP status of the final response, 0 when none */
        const buf *body;    /* buffered body (empty when streamed) */
        uint64_t bytes;     /* body bytes received */
        double seconds;     /* total time */
} http_result;

/* Called exactly once per started request that was not cancelled, on a later
 * loop turn. The request (and result) is freed after it returns. */
typedef void (*http_done_cb)(http_request *req, const http_result *res, void *userdata);

int http_client_new(loop *l, http_client **ret);
/* Cancels every running request (no callbacks). Returns NULL. */
http_client *http_client_free(http_client *c);

/* Starts a transfer. Returns 0 and *ret (may be NULL when not needed), or
 * -EINVAL / -ENOMEM (no callback then). */
int http_request_start(http_client *c, const http_options *o, http_done_cb done, void *userdata,
                       http_request **ret);
/* Stops a running transfer; its done callback is not called (nor on_data or
 * on_headers again). Accepts NULL. Safe from on_headers/on_data (see above). */
void http_request_cancel(http_request *req);

/* A header of the latest response (case-insensitive name), or NULL. Valid in
 * on_headers, on_data and the done callback. */
const char *http_request_header(const http_request *req, const char *name);
/* The effective URL after redirects. */
const char *http_request_url(const http_request *req);
/* Running transfers. */
unsigned http_client_active(const http_client *c);
