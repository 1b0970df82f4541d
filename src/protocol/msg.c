#include "protocol/msg.h"

#include "core/util.h"

json_t *msg_envelope(const char *type, json_t *data) {
        char id[37], ts[25];
        json_t *o = json_object();

        if (!o) {
                json_decref(data);
                return NULL;
        }
        util_uuid4(id);
        util_iso_now(ts);
        json_object_set_new(o, "type", json_string(type));
        json_object_set_new(o, "messageId", json_string(id));
        json_object_set_new(o, "timestamp", json_string(ts));
        if (data)
                json_object_set_new(o, "data", data);
        return o;
}

const char *msg_str(const json_t *obj, const char *key) {
        const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
        return json_is_string(v) ? json_string_value(v) : NULL;
}

static void interval(const json_t *info, const char *key, long long *ret) {
        const json_t *v = json_object_get(info, key);
        if (json_is_integer(v) && json_integer_value(v) > 0)
                *ret = json_integer_value(v);
        else if (json_is_real(v) && json_real_value(v) >= 1 && json_real_value(v) < 1e12)
                *ret = (long long)json_real_value(v);
}

void msg_register_ack_intervals(const json_t *ack, long long *ret_heartbeat_ms,
                                long long *ret_metrics_ms) {
        const json_t *data = json_object_get(ack, "data");
        const json_t *info = json_is_object(data) ? json_object_get(data, "controllerInfo") : NULL;

        if (!json_is_object(info))
                return;
        interval(info, "heartbeatInterval", ret_heartbeat_ms);
        interval(info, "metricsInterval", ret_metrics_ms);
}
