#include "protocol/session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/util.h"
#include "protocol/backoff.h"
#include "protocol/msg.h"
#include "protocol/sioc.h"
#include "transport/net.h"

#define OUTBOX_BATCH 256
#define OUTBOX_HIGH_WATER (1u << 20)

struct session {
        loop *l;
        session_options o;
        session_hooks h;
        session_state state;

        net_conn *conn;
        sioc *io;
        buf out;
        bool drop;              /* tear the connection down after the current callback */
        char drop_reason[300];
        bool auth_refused;      /* the last drop was an authentication refusal */
        bool node_id_warned;    /* connection.ack named another node (this connection) */

        backoff bo;
        loop_timer *t_reconnect;
        loop_timer *t_handshake; /* connect → connection.ack */
        loop_timer *t_liveness;  /* pingInterval + pingTimeout */
        loop_timer *t_register;  /* node.register → register.ack */
        loop_timer *t_heartbeat;
        loop_timer *t_metrics;
        loop_timer *t_stop;

        uint64_t heartbeat_ms, metrics_ms;
        int64_t outbox_after;
        bool outbox_flushing;

        char last_problem[300];  /* for "log once per change" */
        uint64_t reconnects, sent;
        bool ever_registered;

        void (*stop_done)(void *);
        void *stop_ud;
};

const char *session_state_name(session_state st) {
        static const char *const n[] = { "idle", "connecting", "connected", "registering",
                                         "registered", "unregistered", "stopping", "stopped" };
        return (unsigned)st < sizeof n / sizeof *n ? n[st] : "unknown";
}

static void set_state(session *s, session_state st, const char *detail) {
        if (s->state == st)
                return;
        s->state = st;
        if (s->h.state_changed)
                s->h.state_changed(s->h.userdata, st, detail ? detail : "");
}

/* Logs a failure as an error the first time it is seen, then at debug level
 * while it repeats, so a controller that keeps refusing does not flood the
 * journal; a success clears the memory. */
static void problem(session *s, const char *msg, const char *detail) {
        char key[300];
        snprintf(key, sizeof key, "%s|%s", msg, detail ? detail : "");
        if (strcmp(key, s->last_problem) != 0) {
                util_strlcpy(s->last_problem, key, sizeof s->last_problem);
                log_error(msg, "reason", detail ? detail : "", NULL);
        } else {
                log_debug(msg, "reason", detail ? detail : "", NULL);
        }
}

static void problem_clear(session *s) {
        s->last_problem[0] = '\0';
}

static void stop_telemetry(session *s) {
        loop_timer_disarm(s->t_heartbeat);
        loop_timer_disarm(s->t_metrics);
        loop_timer_disarm(s->t_register);
}

static void flush_out(session *s) {
        int r;
        if (!s->conn || s->out.len == 0)
                return;
        r = net_write(s->conn, s->out.data, s->out.len);
        if (r == -ENOBUFS) {
                s->drop = true;
                util_strlcpy(s->drop_reason, "send buffer full (controller not reading)", sizeof s->drop_reason);
        }
        buf_reset(&s->out);
}

static void schedule_reconnect_why(session *s, const char *why);

static void schedule_reconnect(session *s) {
        schedule_reconnect_why(s, "waiting to reconnect");
}

static void schedule_reconnect_why(session *s, const char *why) {
        uint32_t rnd = 0;
        uint64_t d;
        char ms[32];

        if (s->state == SESSION_STOPPING || s->state == SESSION_STOPPED)
                return;
        if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != sizeof rnd)
                rnd = (uint32_t)util_mono_ms() * 2654435761u;
        d = backoff_next(&s->bo, rnd);
        snprintf(ms, sizeof ms, "%llu", (unsigned long long)d);
        log_info("reconnecting after backoff", "delay_ms", ms, NULL);
        set_state(s, SESSION_IDLE, why);
        loop_timer_arm(s->t_reconnect, d);
}

/* Tears down the current connection (not from inside a net/sioc callback:
 * callers set s->drop there). */
static void teardown(session *s) {
        loop_timer_disarm(s->t_handshake);
        loop_timer_disarm(s->t_liveness);
        stop_telemetry(s);
        s->conn = net_conn_free(s->conn);
        s->io = sioc_free(s->io);
        buf_reset(&s->out);
        s->drop = false;
        s->outbox_flushing = false;
}

static void finish_stop(session *s);
static void stop_poll(void *ud);

static void drop_now(session *s, const char *why, bool is_problem) {
        bool was_up = s->state >= SESSION_CONNECTED && s->state <= SESSION_UNREGISTERED;

        if (s->state == SESSION_STOPPING) {
                finish_stop(s);
                return;
        }

        if (is_problem)
                problem(s, was_up ? "connection lost" : "connection attempt failed", why);
        else
                log_info("disconnected", "reason", why, NULL);
        teardown(s);
        if (was_up)
                s->reconnects++;
        schedule_reconnect_why(s, why);
}

static void request_drop(session *s, const char *why) {
        if (!s->drop) {
                s->drop = true;
                util_strlcpy(s->drop_reason, why, sizeof s->drop_reason);
        }
}

int session_emit(session *s, const char *type, json_t *envelope) {
        int r;
        if (!s->io || !sioc_connected(s->io) || s->drop)
                return -ENOTCONN;
        r = sioc_emit(s->io, type, envelope, &s->out);
        if (r == 0) {
                s->sent++;
                flush_out(s);
        }
        return r;
}

static void emit_data(session *s, const char *type, json_t *data) {
        json_t *env;
        int r;

        if (!data)
                return;
        env = msg_envelope(type, data);
        if (!env)
                return;
        r = session_emit(s, type, env);
        if (r < 0 && r != -ENOTCONN) {
                char e[32];
                snprintf(e, sizeof e, "%d", r);
                log_warn("cannot send message", "type", type, "error", e, NULL);
        }
        json_decref(env);
}

/* Sends queued outbox rows in order, a batch per loop turn, pausing while the
 * socket's send buffer is above the high-water mark. */
static void outbox_step(void *ud);

static void outbox_schedule(session *s) {
        if (s->outbox_flushing || !s->h.outbox_next)
                return;
        if (s->state != SESSION_REGISTERED && s->state != SESSION_UNREGISTERED)
                return;
        s->outbox_flushing = true;
        loop_defer(s->l, outbox_step, s);
}

static void outbox_step(void *ud) {
        session *s = ud;
        int n;

        if (!s->outbox_flushing)
                return;
        s->outbox_flushing = false;
        if (!s->io || !sioc_connected(s->io) || s->drop)
                return;
        for (n = 0; n < OUTBOX_BATCH; n++) {
                int64_t id;
                char *type = NULL, *json = NULL;
                int r;

                if (s->conn && net_pending(s->conn) > OUTBOX_HIGH_WATER)
                        return; /* resumed from NET_EV_WRITABLE */
                r = s->h.outbox_next(s->h.userdata, s->outbox_after, &id, &type, &json);
                if (r < 0)
                        return;
                r = sioc_emit_raw(s->io, type, json, strlen(json), &s->out);
                if (r == -EMSGSIZE) {
                        log_error("outbox message larger than the controller's maxPayload: dropped",
                                  "type", type, NULL);
                        s->h.outbox_sent(s->h.userdata, id);
                } else if (r < 0) {
                        free(type);
                        free(json);
                        return;
                } else {
                        flush_out(s);
                        s->sent++;
                        s->h.outbox_sent(s->h.userdata, id);
                }
                s->outbox_after = id;
                free(type);
                free(json);
                if (s->drop)
                        return;
        }
        s->outbox_flushing = true;
        loop_defer(s->l, outbox_step, s);
}

void session_outbox_kick(session *s) {
        outbox_schedule(s);
}

static void start_telemetry(session *s) {
        loop_timer_arm(s->t_heartbeat, s->heartbeat_ms);
        loop_timer_arm(s->t_metrics, s->metrics_ms);
}

static void send_register(session *s) {
        json_t *data = s->h.register_data ? s->h.register_data(s->h.userdata) : json_object();
        emit_data(s, "node.register", data);
        loop_timer_arm(s->t_register, s->o.register_timeout_ms);
}

/* PROTOCOL.md §3.3: connection.ack's nodeId is the node id the controller
 * took from our token, and the controller ignores the nodeId inside our
 * messages (§3.4). A different id means this connection is booked under
 * another node (e.g. NODE_TOKEN_FILE now holds another node's token): say so
 * once per connection, naming both, and go on; the controller decides. */
static void check_ack_node_id(session *s, json_t *env) {
        const char *theirs = msg_str(env, "nodeId");

        if (!theirs || !s->o.node_id || !*s->o.node_id || s->node_id_warned || strcmp(theirs, s->o.node_id) == 0)
                return;
        s->node_id_warned = true;
        log_warn("connection.ack names another node: the controller books this connection under the "
                 "token's node id, not NODE_ID",
                 "nodeId", theirs, "NODE_ID", s->o.node_id, NULL);
}

static void on_connection_ack(session *s, json_t *env) {
        const char *status = msg_str(env, "status");

        check_ack_node_id(s, env);
        if (status && strcmp(status, "success") == 0) {
                loop_timer_disarm(s->t_handshake);
                log_info("connection accepted", "nodeId", msg_str(env, "nodeId") ? msg_str(env, "nodeId") : "",
                         "controllerId", msg_str(env, "controllerId") ? msg_str(env, "controllerId") : "", NULL);
                backoff_reset(&s->bo);
                if (s->o.check_only) {
                        set_state(s, SESSION_REGISTERED, "connection accepted (check only, not registered)");
                        return;
                }
                set_state(s, SESSION_REGISTERING, "registering");
                s->heartbeat_ms = s->o.heartbeat_ms;
                s->metrics_ms = s->o.metrics_ms;
                send_register(s);
        } else {
                json_t *err = json_object_get(env, "error");
                const char *code = msg_str(err, "code"), *m = msg_str(err, "message");
                char why[256];
                snprintf(why, sizeof why, "connection.ack error %s: %s", code ? code : "?", m ? m : "?");
                /* The controller kicks the socket next; retry on the backoff. */
                s->auth_refused = true;
                request_drop(s, why);
        }
}

static void process_pending(session *s, json_t *ack) {
        json_t *data = json_object_get(ack, "data");
        json_t *pending = json_is_object(data) ? json_object_get(data, "pendingCommands") : NULL;
        size_t i;
        json_t *cmd;

        if (!json_is_array(pending) || !s->h.command)
                return;
        json_array_foreach(pending, i, cmd) s->h.command(s->h.userdata, cmd);
}

static void on_register_ack(session *s, json_t *env) {
        long long hb = (long long)s->o.heartbeat_ms, mt = (long long)s->o.metrics_ms;
        char a[32], b[32];

        loop_timer_disarm(s->t_register);
        msg_register_ack_intervals(env, &hb, &mt);
        s->heartbeat_ms = (uint64_t)hb;
        s->metrics_ms = (uint64_t)mt;
        snprintf(a, sizeof a, "%lld", hb);
        snprintf(b, sizeof b, "%lld", mt);
        log_info("registered", "heartbeatInterval", a, "metricsInterval", b, NULL);
        problem_clear(s);
        s->ever_registered = true;
        set_state(s, SESSION_REGISTERED, "registered");
        start_telemetry(s);
        outbox_schedule(s);
        process_pending(s, env);
}

static void registration_failed(session *s, const char *why) {
        problem(s, "registration failed; heartbeats go on and node.register is retried", why);
        if (s->state != SESSION_UNREGISTERED) {
                set_state(s, SESSION_UNREGISTERED, why);
                s->heartbeat_ms = s->o.heartbeat_ms;
                s->metrics_ms = s->o.metrics_ms;
                start_telemetry(s);
                outbox_schedule(s);
        }
        /* Retry node.register on the backoff while staying connected. */
        {
                uint32_t rnd = 0;
                if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != sizeof rnd)
                        rnd = 0x7fffffff;
                loop_timer_arm(s->t_register, backoff_next(&s->bo, rnd));
        }
}

static void on_event(session *s, const char *name, json_t *data) {
        if (!name)
                return;
        if (strcmp(name, "connection.ack") == 0) {
                on_connection_ack(s, data);
        } else if (strcmp(name, "register.ack") == 0) {
                const char *st = msg_str(json_object_get(data, "data"), "status");
                if (st && strcmp(st, "success") != 0)
                        registration_failed(s, "register.ack with status error");
                else
                        on_register_ack(s, data);
        } else if (strcmp(name, "error") == 0) {
                json_t *err = json_object_get(data, "error");
                const char *code = msg_str(err, "code"), *m = msg_str(err, "message");
                char why[300];
                snprintf(why, sizeof why, "%s: %s", code ? code : "error", m ? m : "");
                if (s->state == SESSION_REGISTERING || s->state == SESSION_UNREGISTERED ||
                    (code && strcmp(code, "REGISTRATION_FAILED") == 0))
                        registration_failed(s, why);
                else
                        log_warn("error event from the controller", "error", why, NULL);
        } else if (strcmp(name, "exception") == 0) {
                char *d = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
                log_warn("controller reported an exception handling our message", "detail", d ? d : "", NULL);
                free(d);
        } else if (json_is_object(data) && s->h.command) {
                if (s->state != SESSION_REGISTERED && s->state != SESSION_UNREGISTERED &&
                    s->state != SESSION_REGISTERING)
                        log_warn("command before connection.ack; handling it anyway", "type", name, NULL);
                s->h.command(s->h.userdata, data);
        } else {
                log_warn("ignoring event without an object payload", "event", name, NULL);
        }
}

static void on_sioc(const sioc_event *ev, void *ud) {
        session *s = ud;

        switch (ev->type) {
        case SIOC_OPEN:
        case SIOC_PING:
                loop_timer_arm(s->t_liveness, sioc_liveness_ms(s->io));
                break;
        case SIOC_CONNECTED:
                set_state(s, SESSION_CONNECTED, "waiting for connection.ack");
                break;
        case SIOC_CONNECT_ERROR: {
                char why[256];
                snprintf(why, sizeof why, "controller refused the connection: %s", ev->text);
                s->auth_refused = true;
                request_drop(s, why);
                break;
        }
        case SIOC_EVENT:
                on_event(s, ev->text, ev->data);
                break;
        case SIOC_DISCONNECTED:
                request_drop(s, "controller ended the session (namespace disconnect)");
                break;
        case SIOC_CLOSED: {
                char why[200];
                snprintf(why, sizeof why, "controller closed the WebSocket (status %u%s%s)", ev->code,
                         ev->text && *ev->text ? ", " : "", ev->text ? ev->text : "");
                request_drop(s, why);
                break;
        }
        }
}

static void after_io(session *s) {
        flush_out(s);
        if (s->drop) {
                char why[300];
                util_strlcpy(why, s->drop_reason, sizeof why);
                /* Give the close frame a chance to leave. */
                drop_now(s, why, true);
        }
}

static void on_net(net_conn *c, net_event ev, void *ud) {
        session *s = ud;
        char data[65536];

        switch (ev) {
        case NET_EV_CONNECTED:
                log_debug("transport connected", "peer", net_conn_peer(c), NULL);
                break;
        case NET_EV_READABLE:
                for (;;) {
                        ssize_t n = net_read(c, data, sizeof data);
                        int r;
                        if (n == -EAGAIN || n < 0)
                                break; /* errors arrive as NET_EV_ERROR */
                        if (n == 0)
                                break; /* NET_EV_CLOSED follows */
                        r = sioc_feed(s->io, data, (size_t)n, &s->out, on_sioc, s);
                        if (r < 0) {
                                request_drop(s, sioc_error(s->io));
                                /* Close like the server does: no status. */
                                sioc_close(s->io, &s->out);
                        }
                        if (s->drop)
                                break;
                }
                after_io(s);
                break;
        case NET_EV_WRITABLE:
                if (s->state == SESSION_STOPPING)
                        loop_defer(s->l, stop_poll, s);
                else
                        outbox_schedule(s);
                break;
        case NET_EV_ERROR:
                request_drop(s, net_conn_error(c));
                after_io(s);
                break;
        case NET_EV_CLOSED: {
                int r = sioc_eof(s->io);
                (void)r;
                request_drop(s, sioc_error(s->io));
                after_io(s);
                break;
        }
        }
}

static void attempt(session *s) {
        char err[256] = "";
        char *token;
        sioc_options so = { 0 };
        net_options no = { 0 };
        int r;

        set_state(s, SESSION_CONNECTING, "connecting");
        s->auth_refused = false;
        s->node_id_warned = false;
        token = s->h.token(s->h.userdata, err, sizeof err);
        if (!token) {
                problem(s, "no token", err);
                schedule_reconnect_why(s, err);
                return;
        }
        so.host = s->o.host;
        so.port = s->o.port;
        so.tls = s->o.tls;
        so.nsp = s->o.nsp;
        so.query = s->o.query;
        so.token = token;
        r = sioc_new(&so, &s->out, &s->io);
        explicit_bzero(token, strlen(token));
        free(token);
        if (r < 0) {
                problem(s, "cannot build the WebSocket request", strerror(-r));
                schedule_reconnect(s);
                return;
        }
        no.host = s->o.host;
        no.port = s->o.port;
        no.tls = s->o.tls;
        no.ca_file = s->o.ca_file;
        no.insecure = s->o.tls_insecure;
        no.proxy = s->o.proxy;
        no.connect_timeout_ms = (unsigned)s->o.connect_timeout_ms;
        r = net_conn_new(s->l, &no, on_net, s, &s->conn);
        if (r < 0) {
                problem(s, "cannot start connecting", strerror(-r));
                teardown(s);
                schedule_reconnect(s);
                return;
        }
        flush_out(s);
        loop_timer_arm(s->t_handshake, s->o.connect_timeout_ms);
}

static void on_reconnect_timer(loop_timer *t, void *ud) {
        attempt(ud);
}

static void on_handshake_timer(loop_timer *t, void *ud) {
        session *s = ud;
        drop_now(s, s->state == SESSION_CONNECTED ? "no connection.ack from the controller in time"
                                                  : "connection handshake timed out",
                 true);
}

static void on_liveness_timer(loop_timer *t, void *ud) {
        drop_now(ud, "no ping from the controller within pingInterval + pingTimeout: link is dead", true);
}

static void on_register_timer(loop_timer *t, void *ud) {
        session *s = ud;
        if (s->state == SESSION_REGISTERING)
                registration_failed(s, "no register.ack within the timeout");
        else if (s->state == SESSION_UNREGISTERED)
                send_register(s);
}

static void on_heartbeat_timer(loop_timer *t, void *ud) {
        session *s = ud;
        loop_timer_arm(t, s->heartbeat_ms);
        if (s->h.heartbeat_data)
                emit_data(s, "telemetry.heartbeat", s->h.heartbeat_data(s->h.userdata));
}

static void on_metrics_timer(loop_timer *t, void *ud) {
        session *s = ud;
        loop_timer_arm(t, s->metrics_ms);
        if (s->h.metrics_data)
                emit_data(s, "telemetry.metrics", s->h.metrics_data(s->h.userdata));
}

static void finish_stop(session *s) {
        loop_timer_disarm(s->t_stop);
        teardown(s);
        set_state(s, SESSION_STOPPED, "stopped");
        if (s->stop_done) {
                void (*done)(void *) = s->stop_done;
                s->stop_done = NULL;
                done(s->stop_ud);
        }
}

static void on_stop_timer(loop_timer *t, void *ud) {
        finish_stop(ud);
}

/* Finishes the stop once the leave sequence is out: at once when nothing is
 * pending, else on NET_EV_WRITABLE, a drop, or the stop timer. */
static void stop_poll(void *ud) {
        session *s = ud;
        if (s->state != SESSION_STOPPING)
                return;
        if (!s->conn || net_pending(s->conn) == 0 || !net_connected(s->conn))
                finish_stop(s);
}

void session_stop(session *s, uint64_t timeout_ms, void (*done)(void *ud), void *ud) {
        s->stop_done = done;
        s->stop_ud = ud;
        loop_timer_disarm(s->t_reconnect);
        stop_telemetry(s);
        if (s->io && s->conn) {
                sioc_close(s->io, &s->out);
                flush_out(s);
        }
        set_state(s, SESSION_STOPPING, "shutting down");
        loop_timer_arm(s->t_stop, timeout_ms);
        loop_defer(s->l, stop_poll, s);
}

void session_reconnect(session *s, const char *why) {
        if (s->state == SESSION_STOPPING || s->state == SESSION_STOPPED)
                return;
        if (s->io && s->conn) {
                sioc_close(s->io, &s->out);
                flush_out(s);
        }
        teardown(s);
        log_info("reconnecting", "reason", why, NULL);
        backoff_reset(&s->bo);
        set_state(s, SESSION_IDLE, why);
        loop_timer_arm(s->t_reconnect, 0);
}

int session_new(loop *l, const session_options *opts, const session_hooks *hooks, session **ret) {
        session *s = calloc(1, sizeof *s);
        int r = -ENOMEM;

        if (!s)
                return -ENOMEM;
        s->l = l;
        s->o = *opts;
        s->h = *hooks;
        s->o.host = strdup(opts->host);
        s->o.nsp = strdup(opts->nsp ? opts->nsp : "/");
        s->o.query = opts->query ? strdup(opts->query) : NULL;
        s->o.ca_file = opts->ca_file ? strdup(opts->ca_file) : NULL;
        s->o.proxy = opts->proxy ? strdup(opts->proxy) : NULL;
        s->o.node_id = opts->node_id ? strdup(opts->node_id) : NULL;
        if (!s->o.host || !s->o.nsp || (opts->query && !s->o.query) || (opts->ca_file && !s->o.ca_file) ||
            (opts->proxy && !s->o.proxy) || (opts->node_id && !s->o.node_id))
                goto fail;
        if (!s->o.connect_timeout_ms)
                s->o.connect_timeout_ms = 20000;
        if (!s->o.register_timeout_ms)
                s->o.register_timeout_ms = 10000;
        if (!s->o.heartbeat_ms)
                s->o.heartbeat_ms = 30000;
        if (!s->o.metrics_ms)
                s->o.metrics_ms = 60000;
        s->heartbeat_ms = s->o.heartbeat_ms;
        s->metrics_ms = s->o.metrics_ms;
        backoff_init(&s->bo, s->o.reconnect_ms ? s->o.reconnect_ms : 5000,
                     s->o.reconnect_max_ms ? s->o.reconnect_max_ms : 60000);
        buf_init(&s->out, 64u << 20);
        if ((r = loop_timer_new(l, on_reconnect_timer, s, &s->t_reconnect)) < 0 ||
            (r = loop_timer_new(l, on_handshake_timer, s, &s->t_handshake)) < 0 ||
            (r = loop_timer_new(l, on_liveness_timer, s, &s->t_liveness)) < 0 ||
            (r = loop_timer_new(l, on_register_timer, s, &s->t_register)) < 0 ||
            (r = loop_timer_new(l, on_heartbeat_timer, s, &s->t_heartbeat)) < 0 ||
            (r = loop_timer_new(l, on_metrics_timer, s, &s->t_metrics)) < 0 ||
            (r = loop_timer_new(l, on_stop_timer, s, &s->t_stop)) < 0)
                goto fail;
        s->state = SESSION_IDLE;
        *ret = s;
        return 0;
fail:
        session_free(s);
        return r;
}

session *session_free(session *s) {
        if (!s)
                return NULL;
        teardown(s);
        loop_timer_free(s->t_reconnect);
        loop_timer_free(s->t_handshake);
        loop_timer_free(s->t_liveness);
        loop_timer_free(s->t_register);
        loop_timer_free(s->t_heartbeat);
        loop_timer_free(s->t_metrics);
        loop_timer_free(s->t_stop);
        buf_done(&s->out);
        free((char *)s->o.host);
        free((char *)s->o.nsp);
        free((char *)s->o.query);
        free((char *)s->o.ca_file);
        free((char *)s->o.proxy);
        free((char *)s->o.node_id);
        free(s);
        return NULL;
}

int session_start(session *s) {
        loop_timer_arm(s->t_reconnect, 0);
        return 0;
}

session_state session_get_state(const session *s) {
        return s->state;
}

bool session_is_registered(const session *s) {
        return s->state == SESSION_REGISTERED;
}

uint64_t session_reconnects(const session *s) {
        return s->reconnects;
}

uint64_t session_messages_sent(const session *s) {
        return s->sent;
}

uint64_t session_heartbeat_ms(const session *s) {
        return s->heartbeat_ms;
}

uint64_t session_metrics_ms(const session *s) {
        return s->metrics_ms;
}
