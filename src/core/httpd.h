/* httpd: a minimal HTTP/1.1 server on the loop, for local observability
 * (/metrics, /healthz on METRICS_LISTEN). Not a general web server:
 *
 *   - GET and HEAD only (anything else: 405 with "Allow: GET, HEAD");
 *   - one request per connection, every response says "Connection: close";
 *   - the request head (request line and headers) must fit in max_header
 *     bytes (default 8 KiB), else 431; a request body is never read;
 *   - each connection has timeout_ms (default 5 s) from accept to the last
 *     byte of the response; a client that has not finished its request by
 *     then gets 408 and is closed (slowloris);
 *   - at most max_connections (default 16) connections at once: at the cap
 *     the listening sockets stop accepting (new clients wait in the kernel's
 *     backlog) until a connection closes;
 *   - non-blocking sockets with O_CLOEXEC throughout; no threads.
 *
 * The route callback runs on the loop once the request head is complete and
 * must not block: it fills a response (status, content type, body) that the
 * server then writes. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/loop.h"

#define HTTPD_MAX_CONNECTIONS_DEFAULT 16u
#define HTTPD_MAX_HEADER_DEFAULT (8u * 1024u)
#define HTTPD_TIMEOUT_DEFAULT_MS 5000u
/* Cap on a response body built by a route. */
#define HTTPD_MAX_BODY_DEFAULT (16u * 1024u * 1024u)
/* Listening sockets at most (one per address a host name resolves to). */
#define HTTPD_MAX_LISTENERS 8u

typedef struct httpd httpd;

/* A parsed request head; every string is NUL-terminated and valid only
 * during the route callback. Paths are compared as sent (no percent
 * decoding, no normalisation). */
typedef struct httpd_request {
        const char *method; /* "GET" or "HEAD" */
        const char *path;   /* the origin-form target up to '?': "/metrics" */
        const char *query;  /* after '?', or NULL */
        bool head;          /* HEAD: the body is computed but not sent */
} httpd_request;

/* What a route fills. On entry: status 200, content_type NULL, body empty
 * (capped at max_body). */
typedef struct httpd_response {
        int status;               /* 100..599; anything else becomes 500 */
        const char *content_type; /* must outlive the callback (a literal);
                                   * NULL: "text/plain; charset=utf-8" */
        buf body;
} httpd_response;

/* Returns 0 to send res, or a negative errno (e.g. a failed append to
 * res->body) to answer 500 instead. */
typedef int (*httpd_route_fn)(void *userdata, const httpd_request *req, httpd_response *res);

typedef struct httpd_options {
        /* Address to listen on: NULL or "" for all addresses (one dual-stack
         * IPv6 socket, or IPv4 0.0.0.0 where IPv6 is unavailable), an IPv4 or
         * IPv6 literal (without brackets), or a host name (resolved once,
         * here; every address it has gets a socket). */
        const char *host;
        uint16_t port;              /* 0: an ephemeral port, see httpd_port() */
        httpd_route_fn route;       /* NULL: every path answers 404 */
        void *userdata;
        unsigned max_connections;   /* 0: HTTPD_MAX_CONNECTIONS_DEFAULT */
        size_t max_header;          /* 0: HTTPD_MAX_HEADER_DEFAULT */
        uint64_t timeout_ms;        /* 0: HTTPD_TIMEOUT_DEFAULT_MS */
        size_t max_body;            /* 0: HTTPD_MAX_BODY_DEFAULT */
} httpd_options;

/* Binds and listens now (so a busy port is reported at start-up), then
 * serves on the loop. Returns 0 and *ret_httpd, or a negative errno
 * (-EADDRINUSE, -EACCES, -EADDRNOTAVAIL, -ENXIO for a host that does not
 * resolve, -EINVAL, -ENOMEM) with one line in err naming the address. */
int httpd_new(loop *l, const httpd_options *opts, char *err, size_t errlen, httpd **ret_httpd);
/* Closes the listening sockets and every open connection (responses still
 * being written are cut). Must not be called from a route callback. Accepts
 * NULL; returns NULL. */
httpd *httpd_free(httpd *h);

/* The port actually bound (the ephemeral one when opts.port was 0). */
uint16_t httpd_port(const httpd *h);
/* Connections open right now. */
unsigned httpd_connections(const httpd *h);
/* Requests answered since start (any status), for tests and /metrics. */
uint64_t httpd_requests(const httpd *h);
/* Parses a request head in place (NULs are written into it): head[0..len)
 * holds the request line, the header fields and the empty line that ends
 * them (CRLF or bare LF). Strict where it matters for a server: one SP
 * between the three parts, a token method, an origin-form target ('/' and
 * visible ASCII), HTTP/1.0 or HTTP/1.1, token field names with no blank
 * before the colon, no line folding, no NUL, exactly one Host for HTTP/1.1.
 * Returns 0 and fills *ret_req (pointers into head), or the status to
 * answer: 400, 405 (a valid method other than GET/HEAD) or 505 (another
 * HTTP version). For the server, the unit tests and the fuzz target. */
int httpd_parse_head(char *head, size_t len, httpd_request *ret_req);
/* The reason phrase of an HTTP status ("Not Found"), "Unknown" when none. */
const char *httpd_reason(int status);
