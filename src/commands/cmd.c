#include "commands/cmd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"

#ifndef AIWM_VERSION
#define AIWM_VERSION "0.0.0"
#endif

#define DEFAULT_MAX_CONCURRENT 4
#define DEFAULT_MAX_QUEUED 1000
#define DEFAULT_RETENTION_MS (7ull * 86400 * 1000)
#define DEFAULT_PRUNE_INTERVAL_MS (86400ull * 1000)

enum { PRIO_HIGH, PRIO_NORMAL, PRIO_LOW, PRIO_N };

enum job_state {
        JOB_NEW,        /* created, not yet queued or started */
        JOB_QUEUED,     /* in e->queue[prio] */
        JOB_STARTING,   /* inside the handler's start/resume */
        JOB_RUNNING,    /* started, waiting for the handler to complete it */
        JOB_CANCELLING, /* inside the handler's cancel hook */
        JOB_DONE,       /* result written (or given up); waiting to be freed */
};

/* The commands of the MessageType enum (§4.1) a controller may send. Types
 * in this list without a handler are "not implemented"; others "unknown". */
static const char *const known_commands[] = {
        "deployment.create", "deployment.stop", "deployment.restart", "deployment.update",
        "deployment.delete", "deployment.query", "model.download", "model.cache",
        "model.delete", "model.list", "job.start", "job.stop", "job.cancel", "job.query",
        "agent.start", "agent.stop", "agent.execute", "agent.query", "container.list",
        "container.inspect", "container.logs", "container.stats", "system.healthCheck",
        "system.restart", "system.update", "system.query",
};

typedef struct handler_entry {
        cmd_handler def; /* def.type points at type */
        char *type;
} handler_entry;

typedef struct job_list {
        cmd_job *head, *tail;
        unsigned n;
} job_list;

struct cmd_job {
        cmd_engine *e;
        const handler_entry *h;
        json_t *env;      /* the command envelope (own reference) */
        json_t *data;     /* own reference; the engine's {} when absent */
        json_t *resource; /* borrowed from env; NULL when absent */
        json_t *metadata; /* borrowed from env; NULL when absent */
        const char *message_id, *type, *resource_id;
        int prio;
        enum job_state state;
        bool resumed;
        loop_timer *timer; /* metadata.timeout */
        uint64_t timeout_s;
        void *userdata;
        job_list *list;
        cmd_job *prev, *next;
};

struct cmd_engine {
        cmd_host host;
        char *node_id;
        char *version;
        unsigned max_concurrent, max_queued;
        uint64_t retention_ms, prune_interval_ms;
        json_t *empty; /* {} for commands without data */
        handler_entry **handlers;
        size_t n_handlers;
        job_list queue[PRIO_N];
        job_list running; /* STARTING, RUNNING and CANCELLING jobs */
        job_list dead;    /* DONE jobs completed from the handler's callbacks */
        loop_timer *pump;
        loop_timer *prune;
        bool started;
};

/* What cmd_engine_receive() learns from an envelope. Pointers borrow from
 * the envelope or the engine. */
typedef struct parsed {
        const char *message_id, *type, *resource_id;
        json_t *resource, *metadata, *data;
        const handler_entry *h;
        int prio;
        uint64_t timeout_s;
} parsed;

/* ---- lists ---- */

static void list_append(job_list *l, cmd_job *j) {
        j->list = l;
        j->next = NULL;
        j->prev = l->tail;
        if (l->tail)
                l->tail->next = j;
        else
                l->head = j;
        l->tail = j;
        l->n++;
}

static void list_remove(cmd_job *j) {
        job_list *l = j->list;

        if (!l)
                return;
        if (j->prev)
                j->prev->next = j->next;
        else
                l->head = j->next;
        if (j->next)
                j->next->prev = j->prev;
        else
                l->tail = j->prev;
        l->n--;
        j->list = NULL;
        j->prev = j->next = NULL;
}

/* ---- envelopes ---- */

/* Sets key on obj, stealing value; a NULL value is an allocation failure. */
static bool set_new(json_t *obj, const char *key, json_t *value) {
        return value && json_object_set_new(obj, key, value) == 0;
}

/* {type, messageId, timestamp, resource?, data, metadata?}; data stolen,
 * resource and metadata referenced. NULL on allocation failure. */
static json_t *envelope(const char *type, json_t *data, json_t *resource, json_t *metadata) {
        json_t *o = json_object();
        char id[37], ts[25];
        bool ok;

        util_uuid4(id);
        util_iso_now(ts);
        ok = o && set_new(o, "type", json_string(type)) && set_new(o, "messageId", json_string(id)) &&
             set_new(o, "timestamp", json_string(ts));
        if (ok && resource)
                ok = json_object_set(o, "resource", resource) == 0;
        if (ok)
                ok = set_new(o, "data", data);
        else
                json_decref(data);
        data = NULL;
        if (ok && metadata)
                ok = json_object_set(o, "metadata", metadata) == 0;
        if (!ok) {
                json_decref(o);
                return NULL;
        }
        return o;
}

/* Serialises and releases o. NULL on allocation failure. */
static char *dump_free(json_t *o) {
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

        json_decref(o);
        return s;
}

static char *build_ack(const char *message_id, int estimated_s, json_t *metadata) {
        json_t *d = json_object();

        if (!d || !set_new(d, "originalMessageId", json_string(message_id)) ||
            !set_new(d, "status", json_string("acknowledged")) ||
            !set_new(d, "estimatedDuration", json_integer(estimated_s < 0 ? 0 : estimated_s))) {
                json_decref(d);
                return NULL;
        }
        return dump_free(envelope("command.ack", d, NULL, metadata));
}

/* The command.result envelope. result and error are stolen (either may be
 * NULL). */
static char *build_result(const char *message_id, const char *resource_id, json_t *metadata,
                          json_t *result, json_t *error) {
        json_t *d = json_object();
        bool ok = d && set_new(d, "originalMessageId", json_string(message_id)) &&
                  set_new(d, "deploymentId", json_string(resource_id ? resource_id : "")) &&
                  set_new(d, "status", json_string(error ? "error" : "success"));

        if (ok && result) {
                ok = set_new(d, "result", result);
                result = NULL;
        }
        if (ok && error) {
                ok = set_new(d, "error", error);
                error = NULL;
        }
        json_decref(result);
        json_decref(error);
        if (!ok) {
                json_decref(d);
                return NULL;
        }
        return dump_free(envelope("command.result", d, NULL, metadata));
}

/* IErrorDetails {code, message, details?, retryable}; details stolen. */
static json_t *error_details(const char *code, const char *message, bool retryable,
                             json_t *details) {
        json_t *o = json_object();
        bool ok = o && set_new(o, "code", json_string(code)) &&
                  set_new(o, "message", json_string(message ? message : ""));

        if (ok && details) {
                ok = set_new(o, "details", details);
                details = NULL;
        }
        ok = ok && set_new(o, "retryable", json_boolean(retryable));
        json_decref(details);
        if (!ok) {
                json_decref(o);
                return NULL;
        }
        return o;
}

static char *build_error_result(const char *message_id, const char *resource_id,
                                json_t *metadata, const char *code, const char *message,
                                bool retryable, json_t *details) {
        json_t *err = error_details(code, message, retryable, details);

        return err ? build_result(message_id, resource_id, metadata, NULL, err) : NULL;
}

/* ---- database writes ---- */

typedef struct tx_ops {
        /* New command row (insert_mid != NULL). */
        const char *insert_mid, *insert_type, *insert_payload;
        /* The ack to queue. */
        const char *ack;
        /* Marks finish_mid done with result and queues the result. */
        const char *finish_mid, *result;
} tx_ops;

static void notify(cmd_engine *e) {
        if (e->host.outbox_notify)
                e->host.outbox_notify(e->host.ud);
}

/* Runs ops in one transaction (or inside the caller's, when one is open)
 * and then notifies the host. */
static int write_tx(cmd_engine *e, const tx_ops *ops) {
        db *d = e->host.db;
        bool own = !db_in_transaction(d);
        int64_t now = util_wall_ms();
        int r = 0;

        if (own && (r = db_begin(d)) < 0)
                return r;
        if (ops->insert_mid)
                r = db_cmd_insert(d, ops->insert_mid, ops->insert_type, ops->insert_payload,
                                  DB_CMD_RECEIVED, now);
        if (r == 0 && ops->ack)
                r = db_outbox_push(d, "command.ack", ops->ack, NULL);
        if (r == 0 && ops->finish_mid)
                r = db_cmd_finish(d, ops->finish_mid, ops->result, now);
        if (r == 0 && ops->finish_mid)
                r = db_outbox_push(d, "command.result", ops->result, NULL);
        if (own) {
                if (r == 0)
                        r = db_commit(d);
                else
                        db_rollback(d);
        }
        if (r == 0)
                notify(e);
        return r;
}

static int push_one(cmd_engine *e, const char *type, const char *json) {
        int r = db_outbox_push(e->host.db, type, json, NULL);

        if (r == 0)
                notify(e);
        return r;
}

/* ---- handlers ---- */

static const handler_entry *find_handler(const cmd_engine *e, const char *type) {
        size_t i;

        for (i = 0; i < e->n_handlers; i++)
                if (strcmp(e->handlers[i]->type, type) == 0)
                        return e->handlers[i];
        return NULL;
}

static bool is_known_command(const char *type) {
        size_t i;

        for (i = 0; i < sizeof known_commands / sizeof known_commands[0]; i++)
                if (strcmp(known_commands[i], type) == 0)
                        return true;
        return false;
}

int cmd_engine_register(cmd_engine *e, const cmd_handler *h) {
        handler_entry **hs, *he;

        if (!h || !h->type || !h->type[0] || !h->start)
                return -EINVAL;
        if (find_handler(e, h->type))
                return -EEXIST;
        hs = realloc(e->handlers, (e->n_handlers + 1) * sizeof *hs);
        if (!hs)
                return -ENOMEM;
        e->handlers = hs;
        he = calloc(1, sizeof *he);
        if (!he)
                return -ENOMEM;
        he->type = strdup(h->type);
        if (!he->type) {
                free(he);
                return -ENOMEM;
        }
        he->def = *h;
        he->def.type = he->type;
        e->handlers[e->n_handlers++] = he;
        return 0;
}

void *cmd_engine_handler_ctx(const cmd_engine *e, const char *type) {
        const handler_entry *h = find_handler(e, type);

        return h ? h->def.ctx : NULL;
}

/* ---- parsing ---- */

/* A JSON string without embedded NUL of 1..max bytes. */
static const char *short_string(const json_t *v, size_t max) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);

        if (!s || n == 0 || n > max || strlen(s) != n)
                return NULL;
        return s;
}

/* Present and not JSON null. */
static json_t *member(const json_t *obj, const char *key) {
        json_t *v = obj ? json_object_get(obj, key) : NULL;

        return json_is_null(v) ? NULL : v;
}

#define BAD(...)                                        \
        do {                                            \
                if (errlen)                             \
                        snprintf(err, errlen, __VA_ARGS__); \
                return -EBADMSG;                        \
        } while (0)

/* Returns 0 (valid), -EINVAL (to be dropped) or -EBADMSG (to be answered
 * with 2001; p holds what could be read: message_id, metadata, resource_id).
 * err gets the reason. */
static int parse(const cmd_engine *e, const json_t *env, parsed *p, char *err, size_t errlen) {
        json_t *v;
        const char *s;
        int r;

        memset(p, 0, sizeof *p);
        p->prio = PRIO_NORMAL;
        p->resource_id = e->node_id;
        if (!json_is_object(env)) {
                if (errlen)
                        snprintf(err, errlen, "command is not a JSON object");
                return -EINVAL;
        }
        p->message_id = short_string(json_object_get(env, "messageId"), CMD_MAX_MESSAGE_ID);
        if (!p->message_id) {
                if (errlen)
                        snprintf(err, errlen, "command has no messageId (a string of 1 to %d bytes)",
                                 CMD_MAX_MESSAGE_ID);
                return -EINVAL;
        }

        v = member(env, "metadata");
        if (v && !json_is_object(v))
                BAD("metadata must be an object");
        p->metadata = v;

        v = member(env, "resource");
        if (v && !json_is_object(v))
                BAD("resource must be an object");
        p->resource = v;
        v = member(v, "id");
        if (v) {
                s = short_string(v, CMD_MAX_RESOURCE_ID);
                if (!s)
                        BAD("resource.id must be a string of 1 to %d bytes", CMD_MAX_RESOURCE_ID);
                p->resource_id = s;
        }

        v = json_object_get(env, "type");
        if (!json_is_string(v))
                BAD("type must be a string");
        p->type = short_string(v, CMD_MAX_TYPE);
        if (!p->type)
                BAD("unknown command type");

        v = member(p->metadata, "priority");
        if (v) {
                s = json_string_value(v);
                if (s && strcmp(s, "high") == 0)
                        p->prio = PRIO_HIGH;
                else if (s && strcmp(s, "normal") == 0)
                        p->prio = PRIO_NORMAL;
                else if (s && strcmp(s, "low") == 0)
                        p->prio = PRIO_LOW;
                else
                        BAD("metadata.priority must be \"low\", \"normal\" or \"high\"");
        }
        v = member(p->metadata, "timeout");
        if (v) {
                double t = json_number_value(v);
                if (!json_is_number(v) || !(t > 0) || t > CMD_MAX_TIMEOUT_S)
                        BAD("metadata.timeout must be a number of seconds between 1 and %d",
                            CMD_MAX_TIMEOUT_S);
                p->timeout_s = t < 1 ? 1 : (uint64_t)t;
        }

        v = member(env, "data");
        if (v && !json_is_object(v))
                BAD("data must be an object");
        p->data = v ? v : e->empty;

        p->h = find_handler(e, p->type);
        if (!p->h) {
                if (is_known_command(p->type))
                        BAD("%s is not implemented by this worker", p->type);
                BAD("unknown command type %s", p->type);
        }
        if (p->h->def.validate) {
                if (errlen)
                        err[0] = '\0';
                r = p->h->def.validate(p->data, p->resource, err, errlen);
                if (r < 0) {
                        if (errlen && !err[0])
                                snprintf(err, errlen, "data is invalid");
                        return -EBADMSG;
                }
        }
        return 0;
}

#undef BAD

int cmd_engine_validate(const cmd_engine *e, const json_t *envelope_, char *err, size_t errlen) {
        parsed p;

        return parse(e, envelope_, &p, err, errlen);
}

static int estimated(const parsed *p) {
        return p->h && p->h->def.estimated_duration ? p->h->def.estimated_duration(p->data) : 0;
}

/* ---- jobs ---- */

static void timeout_cb(loop_timer *t, void *userdata);

static cmd_job *job_free(cmd_job *j) {
        if (!j)
                return NULL;
        list_remove(j);
        loop_timer_free(j->timer);
        json_decref(j->data);
        json_decref(j->env);
        free(j);
        return NULL;
}

/* A job for a valid command; timeout_ms is what remains of its deadline. */
static int job_new(cmd_engine *e, json_t *env, const parsed *p, uint64_t timeout_ms,
                   cmd_job **ret_job) {
        cmd_job *j = calloc(1, sizeof *j);
        int r;

        if (!j)
                return -ENOMEM;
        j->e = e;
        j->h = p->h;
        j->env = json_incref(env);
        j->data = json_incref(p->data);
        j->resource = p->resource;
        j->metadata = p->metadata;
        j->message_id = p->message_id;
        j->type = p->type;
        j->resource_id = p->resource_id;
        j->prio = p->prio;
        j->timeout_s = p->timeout_s;
        if (p->timeout_s > 0) {
                r = loop_timer_new(e->host.l, timeout_cb, j, &j->timer);
                if (r < 0) {
                        job_free(j);
                        return r;
                }
                loop_timer_arm(j->timer, timeout_ms);
        }
        *ret_job = j;
        return 0;
}

/* Takes a job out of service once its result is written (or abandoned).
 * Jobs completed inside start/resume are freed by job_run(); others wait in
 * e->dead for the pump, so that a handler's callback never sees its job
 * freed under it. */
static void job_retire(cmd_job *j) {
        cmd_engine *e = j->e;
        enum job_state prev = j->state;

        j->state = JOB_DONE;
        j->timer = loop_timer_free(j->timer);
        list_remove(j);
        if (prev != JOB_STARTING)
                list_append(&e->dead, j);
        if (e->dead.n > 0 || (e->queue[PRIO_HIGH].n + e->queue[PRIO_NORMAL].n + e->queue[PRIO_LOW].n > 0 &&
                              e->running.n < e->max_concurrent))
                loop_timer_arm(e->pump, 0);
}

/* Writes the job's result (result and error stolen) and retires the job. */
static int job_complete(cmd_job *j, json_t *result, json_t *error) {
        tx_ops ops = { 0 };
        const char *outcome = error ? "error" : "success";
        char *json;
        int r;

        json = build_result(j->message_id, j->resource_id, j->metadata, result, error);
        if (!json) {
                r = -ENOMEM;
        } else {
                ops.finish_mid = j->message_id;
                ops.result = json;
                r = write_tx(j->e, &ops);
        }
        if (r < 0)
                log_error("command result not stored; it will be reported as interrupted "
                          "at the next start",
                          "type", j->type, "messageId", j->message_id, "error",
                          r == -ENOMEM ? "out of memory" : db_errmsg(j->e->host.db), NULL);
        else if (j->e->host.command_done)
                j->e->host.command_done(j->e->host.ud, j->type, outcome);
        free(json);
        job_retire(j);
        return r;
}

static int job_complete_error(cmd_job *j, const char *code, const char *message,
                              bool retryable, json_t *details) {
        json_t *err = error_details(code, message, retryable, details);

        if (!err) {
                log_error("command result not stored: out of memory", "messageId", j->message_id,
                          NULL);
                job_retire(j);
                return -ENOMEM;
        }
        return job_complete(j, NULL, err);
}

static void job_run(cmd_job *j) {
        cmd_engine *e = j->e;
        int r;

        j->state = JOB_STARTING;
        list_append(&e->running, j);
        r = j->resumed ? j->h->def.resume(j) : j->h->def.start(j);
        if (j->state == JOB_STARTING && r < 0) {
                char msg[160];
                snprintf(msg, sizeof msg, "%s could not start: %s", j->type, strerror(-r));
                log_warn("command could not start", "type", j->type, "messageId", j->message_id,
                         "error", strerror(-r), NULL);
                job_complete_error(j, CMD_E_INTERNAL, msg, true, NULL);
        }
        if (j->state == JOB_STARTING) {
                j->state = JOB_RUNNING;
                r = db_cmd_set_state(e->host.db, j->message_id, DB_CMD_RUNNING);
                if (r < 0)
                        log_warn("command state not stored", "messageId", j->message_id, "error",
                                 db_errmsg(e->host.db), NULL);
        } else if (j->state == JOB_DONE) {
                job_free(j);
        }
}

static unsigned queued(const cmd_engine *e) {
        return e->queue[PRIO_HIGH].n + e->queue[PRIO_NORMAL].n + e->queue[PRIO_LOW].n;
}

static void enqueue(cmd_engine *e, cmd_job *j) {
        j->state = JOB_QUEUED;
        list_append(&e->queue[j->prio], j);
        if (e->running.n < e->max_concurrent)
                loop_timer_arm(e->pump, 0);
}

/* Frees retired jobs and starts queued ones while slots are free. */
static void pump(cmd_engine *e) {
        while (e->dead.head)
                job_free(e->dead.head);
        while (e->running.n < e->max_concurrent) {
                cmd_job *j = NULL;
                int p;
                for (p = 0; p < PRIO_N && !j; p++)
                        j = e->queue[p].head;
                if (!j)
                        break;
                list_remove(j);
                job_run(j);
        }
}

static void pump_cb(loop_timer *t, void *userdata) {
        pump(userdata);
}

static void timeout_cb(loop_timer *t, void *userdata) {
        cmd_job *j = userdata;
        char msg[96];

        snprintf(msg, sizeof msg, "%s timed out after %llu s", j->type,
                 (unsigned long long)j->timeout_s);
        if (j->state == JOB_QUEUED) {
                list_remove(j);
        } else if (j->state == JOB_RUNNING) {
                j->state = JOB_CANCELLING;
                if (j->h->def.cancel)
                        j->h->def.cancel(j);
        } else {
                return;
        }
        log_warn("command timed out", "type", j->type, "messageId", j->message_id, NULL);
        job_complete_error(j, CMD_E_TIMEOUT, msg, true, NULL);
}

/* ---- public job API ---- */

const char *cmd_job_type(const cmd_job *job) {
        return job->type;
}

const char *cmd_job_message_id(const cmd_job *job) {
        return job->message_id;
}

const char *cmd_job_resource_id(const cmd_job *job) {
        return job->resource_id;
}

const json_t *cmd_job_resource(const cmd_job *job) {
        return job->resource;
}

const json_t *cmd_job_data(const cmd_job *job) {
        return job->data;
}

const json_t *cmd_job_metadata(const cmd_job *job) {
        return job->metadata;
}

bool cmd_job_resumed(const cmd_job *job) {
        return job->resumed;
}

cmd_engine *cmd_job_engine(const cmd_job *job) {
        return job->e;
}

void *cmd_job_ctx(const cmd_job *job) {
        return job->h->def.ctx;
}

void cmd_job_set_userdata(cmd_job *job, void *userdata) {
        job->userdata = userdata;
}

void *cmd_job_get_userdata(const cmd_job *job) {
        return job->userdata;
}

static bool job_live(const cmd_job *job) {
        return job && (job->state == JOB_STARTING || job->state == JOB_RUNNING);
}

int cmd_job_succeed(cmd_job *job, json_t *result) {
        if (!job_live(job)) {
                json_decref(result);
                return -ESTALE;
        }
        return job_complete(job, result, NULL);
}

int cmd_job_fail(cmd_job *job, const char *code, const char *message, bool retryable,
                 json_t *details) {
        if (!job_live(job)) {
                json_decref(details);
                return -ESTALE;
        }
        return job_complete_error(job, code ? code : CMD_E_INTERNAL, message, retryable, details);
}

static int emit(cmd_engine *e, const char *type, json_t *resource, json_t *data,
                json_t *metadata) {
        char *json = dump_free(envelope(type, data, resource, metadata));
        int r;

        if (!json)
                return -ENOMEM;
        r = push_one(e, type, json);
        free(json);
        return r;
}

int cmd_job_emit(cmd_job *job, const char *type, json_t *data) {
        if (!job_live(job) || !type) {
                json_decref(data);
                return job_live(job) ? -EINVAL : -ESTALE;
        }
        if (!data)
                return -ENOMEM;
        return emit(job->e, type, job->resource, data, job->metadata);
}

int cmd_engine_emit(cmd_engine *e, const char *type, json_t *resource, json_t *data) {
        int r;

        if (!type || !data) {
                json_decref(resource);
                json_decref(data);
                return !type ? -EINVAL : -ENOMEM;
        }
        r = emit(e, type, resource, data, NULL);
        json_decref(resource);
        return r;
}

/* ---- receive ---- */

/* A messageId seen before: re-send what the controller may have missed.
 * Returns 1 when it was a duplicate, 0 when new, or a negative errno. */
static int handle_duplicate(cmd_engine *e, const parsed *p, char *err, size_t errlen) {
        db_cmd_state state;
        char *stored = NULL, *ack = NULL;
        int r;

        r = db_cmd_get(e->host.db, p->message_id, &state, &stored);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                goto out_dberr;
        if (state == DB_CMD_DONE && stored) {
                r = push_one(e, "command.result", stored);
        } else {
                ack = build_ack(p->message_id, estimated(p), p->metadata);
                r = ack ? push_one(e, "command.ack", ack) : -ENOMEM;
        }
        if (r < 0)
                goto out_dberr;
        r = 1;
        goto out;
out_dberr:
        if (errlen)
                snprintf(err, errlen, "command %s: %s", p->message_id,
                         r == -ENOMEM ? "out of memory" : db_errmsg(e->host.db));
out:
        free(stored);
        free(ack);
        return r;
}

int cmd_engine_receive(cmd_engine *e, json_t *env, char *err, size_t errlen) {
        char msg[256], *payload = NULL, *ack = NULL, *result = NULL;
        const char *code = NULL;
        tx_ops ops = { 0 };
        cmd_job *job = NULL;
        parsed p;
        int r, v;

        if (!e->started) {
                if (errlen)
                        snprintf(err, errlen, "command engine not started");
                return -EAGAIN;
        }
        v = parse(e, env, &p, msg, sizeof msg);
        if (v == -EINVAL) {
                if (errlen)
                        snprintf(err, errlen, "%s", msg);
                return -EINVAL;
        }
        r = handle_duplicate(e, &p, err, errlen);
        if (r != 0)
                return r < 0 ? r : 0;

        payload = json_dumps(env, JSON_COMPACT);
        if (!payload) {
                r = -ENOMEM;
                goto out_err;
        }
        if (v == 0 && strlen(payload) > CMD_MAX_PAYLOAD) {
                /* Keep only what identifies the command. */
                free(payload);
                payload = dump_free(json_pack("{s:s, s:s}", "type", p.type, "messageId", p.message_id));
                snprintf(msg, sizeof msg, "command is larger than %d bytes", CMD_MAX_PAYLOAD);
                v = -EBADMSG;
        }
        if (v == 0) {
                bool runs_now = p.h->def.quick ||
                                (queued(e) == 0 && e->running.n < e->max_concurrent);
                if (!runs_now && queued(e) >= e->max_queued) {
                        code = CMD_E_RESOURCE_EXHAUSTED;
                        snprintf(msg, sizeof msg, "too many commands waiting (%u)", e->max_queued);
                } else if (job_new(e, env, &p, p.timeout_s * 1000, &job) < 0) {
                        code = CMD_E_INTERNAL;
                        snprintf(msg, sizeof msg, "out of memory");
                }
        } else {
                code = CMD_E_COMMAND_INVALID;
        }
        ack = build_ack(p.message_id, code ? 0 : estimated(&p), p.metadata);
        if (code)
                result = build_error_result(p.message_id, p.resource_id, p.metadata, code, msg,
                                            strcmp(code, CMD_E_COMMAND_INVALID) != 0, NULL);
        if (!payload || !ack || (code && !result)) {
                r = -ENOMEM;
                goto out_err;
        }
        ops.insert_mid = p.message_id;
        ops.insert_type = p.type ? p.type : "";
        ops.insert_payload = payload;
        ops.ack = ack;
        if (code) {
                ops.finish_mid = p.message_id;
                ops.result = result;
        }
        r = write_tx(e, &ops);
        if (r < 0) {
                if (errlen)
                        snprintf(err, errlen, "command %s not recorded: %s", p.message_id,
                                 db_errmsg(e->host.db));
                goto out;
        }
        if (code && errlen)
                snprintf(err, errlen, "%s", msg);
        if (code && e->host.command_done)
                e->host.command_done(e->host.ud, p.type ? p.type : "", "invalid");
        if (job) {
                if (job->h->def.quick || (queued(e) == 0 && e->running.n < e->max_concurrent))
                        job_run(job);
                else
                        enqueue(e, job);
                job = NULL;
        }
        goto out;
out_err:
        if (errlen)
                snprintf(err, errlen, "command %s: out of memory", p.message_id);
out:
        job_free(job);
        free(payload);
        free(ack);
        free(result);
        return r;
}

/* ---- engine ---- */

static void prune(cmd_engine *e) {
        int64_t removed = 0;
        int r = db_prune(e->host.db, util_wall_ms() - (int64_t)e->retention_ms, &removed);

        if (r < 0)
                log_warn("pruning the state database failed", "error", db_errmsg(e->host.db), NULL);
        else if (removed > 0)
                log_debug("pruned the state database", NULL);
}

static void prune_cb(loop_timer *t, void *userdata) {
        cmd_engine *e = userdata;

        prune(e);
        loop_timer_arm(t, e->prune_interval_ms);
}

int cmd_engine_new(const cmd_host *host, const cmd_config *cfg, cmd_engine **ret_engine) {
        cmd_engine *e;
        int r;

        if (!host || !host->l || !host->db)
                return -EINVAL;
        e = calloc(1, sizeof *e);
        if (!e)
                return -ENOMEM;
        e->host = *host;
        e->max_concurrent = cfg && cfg->max_concurrent ? cfg->max_concurrent : DEFAULT_MAX_CONCURRENT;
        e->max_queued = cfg && cfg->max_queued ? cfg->max_queued : DEFAULT_MAX_QUEUED;
        e->retention_ms = cfg && cfg->retention_ms ? cfg->retention_ms : DEFAULT_RETENTION_MS;
        e->prune_interval_ms =
                cfg && cfg->prune_interval_ms ? cfg->prune_interval_ms : DEFAULT_PRUNE_INTERVAL_MS;
        e->node_id = strdup(host->node_id ? host->node_id : "");
        e->version = strdup(cfg && cfg->version ? cfg->version : AIWM_VERSION);
        e->empty = json_object();
        if (!e->node_id || !e->version || !e->empty) {
                r = -ENOMEM;
                goto fail;
        }
        e->host.node_id = e->node_id;
        r = loop_timer_new(host->l, pump_cb, e, &e->pump);
        if (r < 0)
                goto fail;
        r = loop_timer_new(host->l, prune_cb, e, &e->prune);
        if (r < 0)
                goto fail;
        *ret_engine = e;
        return 0;
fail:
        cmd_engine_free(e);
        return r;
}

cmd_engine *cmd_engine_free(cmd_engine *e) {
        size_t i, k;
        int p;

        if (!e)
                return NULL;
        e->pump = loop_timer_free(e->pump);
        e->prune = loop_timer_free(e->prune);
        while (e->running.head) {
                cmd_job *j = e->running.head;
                j->state = JOB_CANCELLING;
                if (j->h->def.cancel)
                        j->h->def.cancel(j);
                job_free(j);
        }
        for (p = 0; p < PRIO_N; p++)
                while (e->queue[p].head)
                        job_free(e->queue[p].head);
        while (e->dead.head)
                job_free(e->dead.head);
        for (i = 0; i < e->n_handlers; i++) {
                handler_entry *h = e->handlers[i];
                bool freed = false;
                /* Several handlers may share one context: free it once. */
                for (k = 0; k < i && h->def.ctx_free; k++)
                        if (e->handlers[k]->def.ctx == h->def.ctx &&
                            e->handlers[k]->def.ctx_free == h->def.ctx_free)
                                freed = true;
                if (h->def.ctx_free && !freed)
                        h->def.ctx_free(h->def.ctx);
        }
        for (i = 0; i < e->n_handlers; i++) {
                free(e->handlers[i]->type);
                free(e->handlers[i]);
        }
        free(e->handlers);
        json_decref(e->empty);
        free(e->node_id);
        free(e->version);
        free(e);
        return NULL;
}

/* One command a previous process left unfinished. */
static int recover_one(cmd_engine *e, const db_cmd_row *row) {
        json_t *env = json_loads(row->payload, 0, NULL);
        const char *code = CMD_E_INTERNAL, *message = "interrupted by restart";
        char *result = NULL;
        tx_ops ops = { 0 };
        cmd_job *job = NULL;
        bool timed_out = false;
        parsed p;
        int r;

        memset(&p, 0, sizeof p);
        p.resource_id = e->node_id;
        r = env ? parse(e, env, &p, NULL, 0) : -EINVAL;
        if (r == 0 && p.h->def.resume) {
                uint64_t remaining = 0;
                if (p.timeout_s > 0) {
                        int64_t elapsed = util_wall_ms() - row->received_at;
                        int64_t left = (int64_t)p.timeout_s * 1000 - (elapsed > 0 ? elapsed : 0);
                        remaining = left > 0 ? (uint64_t)left : 0;
                        if (left <= 0) {
                                timed_out = true;
                                code = CMD_E_TIMEOUT;
                                message = "timed out while the worker was restarting";
                        }
                }
                if (!timed_out) {
                        r = job_new(e, env, &p, remaining, &job);
                        if (r == 0) {
                                job->resumed = true;
                                job->state = JOB_QUEUED;
                                list_append(&e->queue[job->prio], job);
                                goto out;
                        }
                        message = "interrupted by restart; could not resume";
                }
        }
        /* parse() fills resource_id and metadata as far as it got. */
        result = build_error_result(row->message_id, p.resource_id, p.metadata, code, message, true,
                                    NULL);
        if (!result) {
                r = -ENOMEM;
                goto out;
        }
        ops.finish_mid = row->message_id;
        ops.result = result;
        r = write_tx(e, &ops);
out:
        free(result);
        json_decref(env);
        return r;
}

int cmd_engine_start(cmd_engine *e, char *err, size_t errlen) {
        db_cmd_row *rows = NULL;
        size_t n = 0, i;
        int r;

        if (e->started)
                return -EALREADY;
        r = db_cmd_unfinished(e->host.db, &rows, &n);
        if (r < 0) {
                if (errlen)
                        snprintf(err, errlen, "cannot read unfinished commands: %s",
                                 db_errmsg(e->host.db));
                return r;
        }
        for (i = 0; i < n; i++) {
                r = recover_one(e, &rows[i]);
                if (r < 0) {
                        if (errlen)
                                snprintf(err, errlen, "cannot finish command %s: %s",
                                         rows[i].message_id, db_errmsg(e->host.db));
                        goto out;
                }
        }
        prune(e);
        loop_timer_arm(e->prune, e->prune_interval_ms);
        e->started = true;
        pump(e);
        r = 0;
out:
        db_cmd_rows_free(rows, n);
        return r;
}

const cmd_host *cmd_engine_host(const cmd_engine *e) {
        return &e->host;
}

const char *cmd_engine_version(const cmd_engine *e) {
        return e->version;
}

unsigned cmd_engine_running(const cmd_engine *e) {
        return e->running.n;
}

unsigned cmd_engine_queued(const cmd_engine *e) {
        return queued(e);
}
