/* msg: envelopes of the AIWM protocol (PROTOCOL.md §3.1). Every message the
 * worker sends is {type, messageId (UUID v4), timestamp (ISO-8601 ms Z),
 * data?, resource?, metadata?}; the Socket.IO event name equals type. */
#pragma once

#include <jansson.h>

/* Returns a new envelope object {type, messageId, timestamp} plus data when
 * data is not NULL (the reference to data is stolen). NULL on allocation
 * failure. */
json_t *msg_envelope(const char *type, json_t *data);

/* Returns the string member key of obj, or NULL when absent or not a string. */
const char *msg_str(const json_t *obj, const char *key);

/* Reads controllerInfo intervals from a register.ack envelope. Missing, zero
 * or invalid values leave *ret_* unchanged. */
void msg_register_ack_intervals(const json_t *ack, long long *ret_heartbeat_ms,
                                long long *ret_metrics_ms);
