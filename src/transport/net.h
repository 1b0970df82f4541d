/* net: one outgoing byte-stream connection driven by the loop: name
 * resolution (getaddrinfo_a, polled by a loop timer), non-blocking TCP connect
 * trying each address in turn, an optional HTTP CONNECT proxy tunnel, then an
 * optional TLS layer (OpenSSL 3). Inside, the transport is a small table of
 * operations (connect, read, write, close) with a plain TCP and a TLS
 * implementation; callers only see net_read()/net_write().
 *
 * Life cycle and events (all through the net_cb given to net_conn_new()):
 *
 *   net_conn_new() ──(later turns)──> NET_EV_CONNECTED ─┬─> NET_EV_READABLE*
 *                    \                                  ├─> NET_EV_WRITABLE*
 *                     `──> NET_EV_ERROR                  ├─> NET_EV_CLOSED   (peer EOF)
 *                                                        └─> NET_EV_ERROR
 *
 *   - Nothing is reported from inside net_conn_new(): even an immediate
 *     failure arrives as NET_EV_ERROR on a later loop turn.
 *   - NET_EV_ERROR and NET_EV_CLOSED are terminal and come at most once,
 *     always on a later turn than the call that detected them (also when
 *     net_read()/net_write() detect them: those calls return the error and the
 *     event follows). After them no other event comes; the caller frees the
 *     connection.
 *   - net_conn_free() may be called at any time, including from inside the
 *     callback: the real free is deferred until the callback returns, and no
 *     event is delivered after net_conn_free().
 *
 * The process must ignore SIGPIPE (main.c: signal(SIGPIPE, SIG_IGN)): OpenSSL
 * writes to the socket with write(2). Plain TCP writes use MSG_NOSIGNAL.
 *
 * Error codes (negative errno, with text from net_conn_error()):
 *   -ENXIO        host name does not exist (EAI_NONAME)
 *   -EHOSTUNREACH temporary resolver failure (EAI_AGAIN) or no route
 *   -ECONNREFUSED, -ENETUNREACH, -ECONNRESET, -EPIPE ... from the kernel
 *   -ETIMEDOUT    connect_timeout_ms passed before NET_EV_CONNECTED
 *   -EKEYREJECTED TLS certificate verification failed; the text carries
 *                 OpenSSL's reason, e.g. "... certificate verify failed:
 *                 hostname mismatch"
 *   -EPROTO       other TLS failures, malformed proxy reply
 *   -ENOENT, -EACCES, -EINVAL  ca_file cannot be opened / holds no PEM
 *                 certificate
 *   -EACCES       proxy answered 407 (authentication required / refused)
 *   -ECONNABORTED proxy answered CONNECT with another non-2xx status
 *   -ENOMEM */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/loop.h"

#define NET_CONNECT_TIMEOUT_DEFAULT_MS 30000u
#define NET_PENDING_MAX_DEFAULT (16u * 1024u * 1024u)
/* Cap on the proxy's reply to CONNECT (status line and headers). */
#define NET_PROXY_REPLY_MAX (16u * 1024u)

typedef struct net_conn net_conn;

typedef enum net_event {
        /* Transport ready (TCP connected, proxy tunnel up, TLS verified).
         * Bytes written before this were buffered and are now being sent. */
        NET_EV_CONNECTED = 1,
        /* Data (or EOF, or an error) can be read: call net_read() until it
         * returns -EAGAIN (or 0 / an error). Must drain: TLS may hold
         * decrypted bytes that no descriptor event will announce again. */
        NET_EV_READABLE,
        /* The internal write buffer was non-empty and has just been fully
         * handed to the kernel (net_pending() == 0). */
        NET_EV_WRITABLE,
        /* Terminal: connect, resolve, TLS or I/O failure. See
         * net_conn_errno() and net_conn_error(). */
        NET_EV_ERROR,
        /* Terminal: the peer closed the stream (net_read() returned 0). */
        NET_EV_CLOSED,
} net_event;

typedef void (*net_cb)(net_conn *c, net_event ev, void *userdata);

typedef struct net_options {
        /* Target host: DNS name or IP literal (IPv6 with or without brackets). */
        const char *host;
        uint16_t port;
        /* Speak TLS to the target (through the proxy tunnel if any). Sends SNI
         * for names (not for IP literals) and verifies chain and host name
         * (IP literals against iPAddress SANs) unless insecure. */
        bool tls;
        /* Optional PEM file with extra trusted CAs, added on top of the
         * system store. The system store is used through its hashed
         * directory when there is one, so certificates are loaded lazily. */
        const char *ca_file;
        /* Skip certificate verification (chain and name). */
        bool insecure;
        /* "http://[user:pass@]host[:port][/]" (port defaults to 1080, like
         * curl; user and pass may be percent-encoded), or NULL for a direct
         * connection. See net_proxy_for(). */
        const char *proxy;
        /* Limit for resolve + connect + proxy + TLS handshake; 0 = default. */
        unsigned connect_timeout_ms;
        /* Cap on bytes buffered by net_write(); 0 = default. */
        size_t max_pending;
} net_options;

/* Starts connecting. opts and its strings are copied. Returns 0 with
 * *ret_conn, -EINVAL for invalid options (no host, port 0, malformed proxy
 * URL), or -ENOMEM; nothing is reported through cb in those cases. On success
 * the outcome arrives through cb on later loop turns: NET_EV_CONNECTED or
 * NET_EV_ERROR. */
int net_conn_new(loop *l, const net_options *opts, net_cb cb, void *userdata,
                 net_conn **ret_conn);

/* Closes the connection and frees it (safe from inside the callback, see
 * above). Tries once, without blocking, to flush buffered bytes and to send a
 * TLS close_notify; wait for net_pending() == 0 (NET_EV_WRITABLE) first if
 * the last bytes matter. Accepts NULL; returns NULL. */
net_conn *net_conn_free(net_conn *c);

/* Reads up to len bytes. Returns the number read (> 0), 0 at EOF (then
 * NET_EV_CLOSED follows), -EAGAIN when nothing more is available now (wait
 * for NET_EV_READABLE), -ENOTCONN before NET_EV_CONNECTED, or a negative
 * errno on failure (then NET_EV_ERROR follows; later calls return it again). */
ssize_t net_read(net_conn *c, void *buf, size_t len);

/* Queues len bytes for sending: writes what the kernel accepts now and
 * buffers the rest, which the loop flushes as the socket becomes writable.
 * Also allowed before NET_EV_CONNECTED (everything is buffered and sent once
 * connected). All or nothing: returns 0 when the bytes were written or
 * buffered, -ENOBUFS when they would take the buffer past max_pending
 * (nothing queued; wait for NET_EV_WRITABLE), -EPIPE after EOF, or the
 * connection's error (a failure detected here is also reported as
 * NET_EV_ERROR on a later turn). */
int net_write(net_conn *c, const void *data, size_t len);

/* Bytes accepted by net_write() and not yet handed to the kernel. */
size_t net_pending(const net_conn *c);

/* True between NET_EV_CONNECTED and a terminal event. */
bool net_connected(const net_conn *c);

/* The error of the connection (negative errno) and its text, 0 and "" while
 * there is none. The text names the stage and the peer, e.g. "connect to
 * 127.0.0.1:9 failed: Connection refused". Owned by c. */
int net_conn_errno(const net_conn *c);
const char *net_conn_error(const net_conn *c);

/* Numeric address of the TCP peer ("203.0.113.7:443", "[::1]:8080"; the
 * proxy's when tunnelling), "" until the TCP connection is up. Owned by c. */
const char *net_conn_peer(const net_conn *c);

/* True when url is a proxy URL that net_conn_new() accepts. */
bool net_proxy_valid(const char *url);

/* Picks the proxy for a connection to host:port following the usual
 * environment rules; the caller reads http_proxy/HTTP_PROXY,
 * https_proxy/HTTPS_PROXY and no_proxy/NO_PROXY (lower case first) and passes
 * the values (NULL when unset). Returns https_proxy when tls, else http_proxy,
 * or NULL when that is NULL or empty or when no_proxy excludes the host.
 * no_proxy is a comma (or space) separated list of
 *   "*"                    no proxy for any host;
 *   name, .name, *.name    the domain and all its subdomains (case
 *                          insensitive, trailing dots ignored);
 *   IPv4/IPv6 address      that literal host only (IPv6 bare or in
 *                          brackets);
 *   address/prefix         CIDR block, for literal hosts;
 * each optionally followed by :port (IPv6 then in brackets) to apply to that
 * port only. Host names are not resolved to match address entries. */
const char *net_proxy_for(const char *host, uint16_t port, bool tls, const char *http_proxy,
                          const char *https_proxy, const char *no_proxy);
