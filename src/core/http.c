#include "core/http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#define MAX_HEADERS 64
#define HEADER_BYTES_MAX (32u * 1024u)
#define BODY_MAX_DEFAULT (16u * 1024u * 1024u)

struct http_client {
        loop *l;
        CURLM *multi;
        loop_timer *timer;
        /* Runs on the next turn the libcurl calls that cannot be made from
         * inside libcurl's callbacks: adding requests started there and
         * removing requests cancelled there. */
        loop_timer *kick;
        http_request *reqs;    /* running, doubly linked */
        http_request *zombies; /* cancelled inside a callback, singly linked */
        unsigned active;
        unsigned in_cb;        /* depth of user callbacks run from inside libcurl */
};

struct http_request {
        http_client *c;
        CURL *easy;
        struct curl_slist *hdrs;
        http_request *prev, *next;
        http_done_cb done;
        void *ud;
        bool added;     /* the easy handle is in the multi handle */
        bool cancelled; /* waiting on the zombie list */
        bool in_done;   /* its done callback is running */
        bool was_https; /* some hop of this transfer used https */
        int fail_err;   /* set by header_cb: overrides the result's err */
        const char *fail_msg;
        int (*on_data)(http_request *, const void *, size_t, void *);
        int (*on_headers)(http_request *, long, void *);
        bool headers_seen;
        int abort_code;
        size_t max_body;
        buf body;
        uint64_t bytes;
        /* Response headers of the latest response: "Name: value" strings. */
        char *resp[MAX_HEADERS];
        size_t nresp, resp_bytes;
        char errbuf[CURL_ERROR_SIZE];
        char *url;
};

/* ---- curl ↔ loop glue ---- */

static void check_done(http_client *c);
static void req_free(http_request *r);

static void on_sock_io(loop_io *io, int fd, unsigned ev, void *ud) {
        http_client *c = ud;
        int running = 0, mask = 0;

        if (ev & LOOP_READ)
                mask |= CURL_CSELECT_IN;
        if (ev & LOOP_WRITE)
                mask |= CURL_CSELECT_OUT;
        if (ev & LOOP_ERROR)
                mask |= CURL_CSELECT_ERR;
        curl_multi_socket_action(c->multi, fd, mask, &running);
        check_done(c);
}

static int sock_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp) {
        http_client *c = userp;
        loop_io *io = socketp;
        unsigned ev = 0;

        if (what == CURL_POLL_REMOVE) {
                if (io) {
                        loop_io_stop(io);
                        curl_multi_assign(c->multi, s, NULL);
                }
                return 0;
        }
        if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
                ev |= LOOP_READ;
        if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
                ev |= LOOP_WRITE;
        if (!io) {
                if (loop_io_start(c->l, s, ev, on_sock_io, c, &io) < 0)
                        return -1;
                curl_multi_assign(c->multi, s, io);
        } else {
                loop_io_set(io, ev);
        }
        return 0;
}

static void on_timer(loop_timer *t, void *ud) {
        http_client *c = ud;
        int running = 0;
        curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        check_done(c);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp) {
        http_client *c = userp;
        if (timeout_ms < 0)
                loop_timer_disarm(c->timer);
        else
                loop_timer_arm(c->timer, (uint64_t)timeout_ms);
        return 0;
}

/* ---- requests ---- */

static void req_unlink(http_request *r) {
        http_client *c = r->c;
        if (r->prev)
                r->prev->next = r->next;
        else
                c->reqs = r->next;
        if (r->next)
                r->next->prev = r->prev;
        r->prev = r->next = NULL;
        c->active--;
}

static void req_free(http_request *r) {
        size_t i;
        if (r->easy) {
                if (r->added)
                        curl_multi_remove_handle(r->c->multi, r->easy);
                curl_easy_cleanup(r->easy);
        }
        curl_slist_free_all(r->hdrs);
        for (i = 0; i < r->nresp; i++)
                free(r->resp[i]);
        buf_done(&r->body);
        free(r->url);
        free(r);
}

static void clear_headers(http_request *r) {
        size_t i;
        for (i = 0; i < r->nresp; i++)
                free(r->resp[i]);
        r->nresp = 0;
        r->resp_bytes = 0;
}

/* Refuses a redirect from https to http before libcurl follows it (the
 * protocol restriction set at start only covers a transfer that starts on
 * https; this also covers http → https → http). */
static bool downgrade_refused(http_request *r, const char *data, size_t l) {
        const char *eff = NULL, *v;
        long status = 0;

        curl_easy_getinfo(r->easy, CURLINFO_EFFECTIVE_URL, &eff);
        if (eff && strncasecmp(eff, "https:", 6) == 0)
                r->was_https = true;
        if (l < 9 || strncasecmp(data, "location:", 9) != 0 || !r->was_https)
                return false;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status < 300 || status > 399)
                return false;
        for (v = data + 9; v < data + l && (*v == ' ' || *v == '\t'); v++)
                ;
        if ((size_t)(data + l - v) < 5 || strncasecmp(v, "http:", 5) != 0)
                return false;
        r->fail_err = -ELOOP;
        r->fail_msg = "refused a redirect from https to http";
        return true;
}

static size_t header_cb(char *data, size_t size, size_t n, void *ud) {
        http_request *r = ud;
        size_t len = size * n, l = len;

        if (r->cancelled)
                return 0;
        if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
                clear_headers(r); /* a new response (redirect, 100 Continue) */
                return len;
        }
        while (l > 0 && (data[l - 1] == '\r' || data[l - 1] == '\n'))
                l--;
        if (l == 0 || !memchr(data, ':', l))
                return len;
        if (downgrade_refused(r, data, l))
                return 0;
        if (r->nresp >= MAX_HEADERS || r->resp_bytes + l > HEADER_BYTES_MAX)
                return len; /* ignore the excess rather than fail */
        r->resp[r->nresp] = strndup(data, l);
        if (!r->resp[r->nresp])
                return 0;
        r->nresp++;
        r->resp_bytes += l;
        return len;
}

static int headers_done(http_request *r) {
        long status = 0;
        if (r->headers_seen)
                return 0;
        r->headers_seen = true;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        if (r->on_headers) {
                int rc;
                r->c->in_cb++;
                rc = r->on_headers(r, status, r->ud);
                r->c->in_cb--;
                if (r->cancelled)
                        return -ECANCELED;
                if (rc < 0) {
                        r->abort_code = rc;
                        return rc;
                }
        }
        return 0;
}

static size_t write_cb(char *data, size_t size, size_t n, void *ud) {
        http_request *r = ud;
        size_t len = size * n;

        if (r->cancelled || headers_done(r) < 0)
                return 0;
        r->bytes += len;
        if (r->on_data) {
                int rc;
                r->c->in_cb++;
                rc = r->on_data(r, data, len, r->ud);
                r->c->in_cb--;
                if (r->cancelled)
                        return 0;
                if (rc < 0) {
                        r->abort_code = rc;
                        return 0;
                }
                return len;
        }
        if (buf_append(&r->body, data, len) < 0) {
                r->abort_code = -E2BIG;
                return 0;
        }
        return len;
}

static int map_curl(CURLcode cc) {
        switch (cc) {
        case CURLE_OK:
                return 0;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                return -EHOSTUNREACH;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
                return -EKEYREJECTED;
        case CURLE_SSL_CONNECT_ERROR:
                return -EPROTO;
        case CURLE_WRITE_ERROR:
        case CURLE_ABORTED_BY_CALLBACK:
                return -ECANCELED;
        case CURLE_TOO_MANY_REDIRECTS:
        case CURLE_UNSUPPORTED_PROTOCOL:
                return -ELOOP;
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
                return -ECONNRESET;
        case CURLE_RANGE_ERROR:
                return -ERANGE;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        default:
                return -EIO;
        }
}

static void check_done(http_client *c) {
        CURLMsg *m;
        int left;

        while ((m = curl_multi_info_read(c->multi, &left))) {
                http_request *r = NULL;
                http_result res = { 0 };
                double secs = 0;

                if (m->msg != CURLMSG_DONE)
                        continue;
                curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
                if (!r || r->cancelled)
                        continue; /* a zombie: freed by the kick timer */
                if (m->data.result == CURLE_OK && headers_done(r) < 0 && r->cancelled)
                        continue; /* empty bodies never reach write_cb */
                res.err = map_curl(m->data.result);
                if (r->abort_code && (res.err == -ECANCELED || res.err == 0)) {
                        res.err = r->abort_code == -E2BIG ? -E2BIG : -ECANCELED;
                        res.abort_code = r->abort_code;
                }
                res.error = r->errbuf[0] ? r->errbuf : res.err ? curl_easy_strerror(m->data.result) : "";
                if (res.err == -E2BIG && !r->on_data)
                        res.error = "response larger than the configured cap";
                if (r->fail_err) {
                        res.err = r->fail_err;
                        res.error = r->fail_msg;
                }
                curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &res.status);
                curl_easy_getinfo(m->easy_handle, CURLINFO_TOTAL_TIME, &secs);
                {
                        char *eff = NULL;
                        curl_easy_getinfo(m->easy_handle, CURLINFO_EFFECTIVE_URL, &eff);
                        if (eff) {
                                free(r->url);
                                r->url = strdup(eff);
                        }
                }
                res.seconds = secs;
                res.bytes = r->bytes;
                res.body = &r->body;
                req_unlink(r);
                curl_multi_remove_handle(c->multi, r->easy);
                r->added = false;
                r->in_done = true;
                r->done(r, &res, r->ud);
                req_free(r);
        }
}

/* A request whose easy handle could not be added: reported as failed. */
static void fail_unadded(http_request *r) {
        http_result res = { .err = -EIO, .error = "cannot start the transfer" };

        res.body = &r->body;
        req_unlink(r);
        r->in_done = true;
        r->done(r, &res, r->ud);
        req_free(r);
}

static void on_kick(loop_timer *t, void *ud) {
        http_client *c = ud;
        http_request *r, *next;

        while ((r = c->zombies)) {
                c->zombies = r->next;
                req_free(r);
        }
        for (r = c->reqs; r; r = next) {
                next = r->next;
                if (r->added)
                        continue;
                if (curl_multi_add_handle(c->multi, r->easy) == CURLM_OK) {
                        r->added = true;
                } else {
                        /* Its callback may start or cancel others: rescan. */
                        fail_unadded(r);
                        next = c->reqs;
                }
        }
}

int http_client_new(loop *l, http_client **ret) {
        static bool global_done;
        http_client *c;
        int r;

        if (!global_done) {
                if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                        return -EIO;
                global_done = true;
        }
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->l = l;
        c->multi = curl_multi_init();
        if (!c->multi) {
                free(c);
                return -ENOMEM;
        }
        r = loop_timer_new(l, on_timer, c, &c->timer);
        if (r >= 0)
                r = loop_timer_new(l, on_kick, c, &c->kick);
        if (r < 0) {
                loop_timer_free(c->timer);
                curl_multi_cleanup(c->multi);
                free(c);
                return r;
        }
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
        curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
        curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
        *ret = c;
        return 0;
}

http_client *http_client_free(http_client *c) {
        if (!c)
                return NULL;
        while (c->reqs) {
                http_request *r = c->reqs;
                req_unlink(r);
                req_free(r);
        }
        while (c->zombies) {
                http_request *r = c->zombies;
                c->zombies = r->next;
                req_free(r);
        }
        curl_multi_cleanup(c->multi);
        loop_timer_free(c->timer);
        loop_timer_free(c->kick);
        free(c);
        return NULL;
}

int http_request_start(http_client *c, const http_options *o, http_done_cb done, void *userdata,
                       http_request **ret) {
        http_request *r;
        CURL *e;
        int rc = -ENOMEM;

        if (!o || !o->url || !done)
                return -EINVAL;
        r = calloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        r->c = c;
        r->done = done;
        r->ud = userdata;
        r->on_data = o->on_data;
        r->on_headers = o->on_headers;
        buf_init(&r->body, o->max_response ? o->max_response : BODY_MAX_DEFAULT);
        r->url = strdup(o->url);
        r->easy = e = curl_easy_init();
        if (!e || !r->url)
                goto fail;
        curl_easy_setopt(e, CURLOPT_PRIVATE, r);
        curl_easy_setopt(e, CURLOPT_URL, o->url);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
        curl_easy_setopt(e, CURLOPT_USERAGENT, "aiwm-worker/" AIWM_VERSION);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(o->connect_timeout_ms ? o->connect_timeout_ms : 10000));
        if (o->timeout_ms)
                curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)o->timeout_ms);
        if (o->low_speed_time_s > 0) {
                curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, o->low_speed_limit > 0 ? o->low_speed_limit : 1L);
                curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, o->low_speed_time_s);
        }
        if (o->follow_redirects) {
                curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
                curl_easy_setopt(e, CURLOPT_MAXREDIRS, o->max_redirects > 0 ? o->max_redirects : 10L);
                /* Never downgrade: from https only https redirects are followed.
                 * libcurl drops Authorization when the host changes. */
                curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR,
                                 strncasecmp(o->url, "https:", 6) == 0 ? "https" : "http,https");
        }
        if (o->unix_socket)
                curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, o->unix_socket);
        if (o->resume_from > 0)
                curl_easy_setopt(e, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)o->resume_from);
        if (o->userpwd)
                curl_easy_setopt(e, CURLOPT_USERPWD, o->userpwd);
        if (o->aws_sigv4)
                curl_easy_setopt(e, CURLOPT_AWS_SIGV4, o->aws_sigv4);
        if (o->ca_file)
                curl_easy_setopt(e, CURLOPT_CAINFO, o->ca_file);
        if (o->insecure) {
                curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
                curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
        }
        if (o->headers) {
                for (const char *const *h = o->headers; *h; h++) {
                        struct curl_slist *n = curl_slist_append(r->hdrs, *h);
                        if (!n)
                                goto fail;
                        r->hdrs = n;
                }
                curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
        }
        if (o->body) {
                curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
                curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, o->body);
        }
        if (o->method) {
                if (!strcmp(o->method, "HEAD"))
                        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
                else if (strcmp(o->method, "GET") != 0 || o->body)
                        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, o->method);
        }
        if (c->in_cb > 0) {
                loop_timer_arm(c->kick, 0); /* libcurl refuses adds from its callbacks */
        } else if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
                rc = -EIO;
                goto fail;
        } else {
                r->added = true;
        }
        r->next = c->reqs;
        if (c->reqs)
                c->reqs->prev = r;
        c->reqs = r;
        c->active++;
        if (ret)
                *ret = r;
        return 0;
fail:
        if (r->easy) {
                curl_easy_cleanup(r->easy);
                r->easy = NULL;
        }
        req_free(r);
        return rc;
}

void http_request_cancel(http_request *r) {
        http_client *c;

        if (!r || r->in_done || r->cancelled)
                return;
        c = r->c;
        req_unlink(r);
        if (c->in_cb > 0 && r->added) {
                /* Inside libcurl: it must not lose the handle now. Its
                 * callbacks return "abort" from here on; the kick timer
                 * removes and frees it on the next turn. */
                r->cancelled = true;
                r->next = c->zombies;
                c->zombies = r;
                loop_timer_arm(c->kick, 0);
                return;
        }
        req_free(r);
}

const char *http_request_header(const http_request *r, const char *name) {
        size_t n = strlen(name), i;
        for (i = r->nresp; i-- > 0;) {
                const char *h = r->resp[i];
                if (strncasecmp(h, name, n) == 0 && h[n] == ':') {
                        h += n + 1;
                        while (*h == ' ' || *h == '\t')
                                h++;
                        return h;
                }
        }
        return NULL;
}

const char *http_request_url(const http_request *r) {
        return r->url;
}

unsigned http_client_active(const http_client *c) {
        return c->active;
}
