/* cmd_system: the system.* commands (PROTOCOL.md §3.5, §3.7).
 *
 *   system.healthCheck  {nodeStatus, uptimeSeconds (host), timestamp,
 *                        metrics? {cpuUsage, ramUsed, diskUsed, gpuDevices},
 *                        deployments? [{deploymentId, status, uptime}]}
 *   system.query        the node.register data object, plus configuration
 *                       (redacted) and version
 *   system.restart      {restartingAt}; host->request_restart() is called once
 *                       the result is in the outbox
 *   system.update       downloads data.url (hashing as bytes arrive), checks
 *                       data.sha256, runs `<new> --version`, swaps it in for
 *                       the executable (the old one kept as <exe>.previous),
 *                       records kv "update.pending", answers {previousVersion,
 *                       newVersion, restartingAt?} and restarts when
 *                       data.restart (default true).
 *
 * Rollback: main calls cmd_system_check_update() at start. When an update is
 * pending and this process runs the new binary, it must be confirmed with
 * cmd_system_update_confirmed() (the session calls it on register.ack) within
 * confirm_ms; otherwise, or when the new binary already started once without
 * confirming (it crashed), <exe>.previous is restored, kv "update.rolledBack"
 * records why, and host->request_restart(0) re-executes the old binary. */
#pragma once

#include <stdint.h>

#include <jansson.h>

#include "commands/cmd.h"

typedef struct cmd_system_config {
        /* The executable replaced by system.update; NULL: /proc/self/exe. */
        const char *exe_path;
        uint64_t confirm_ms;       /* 0: 300000 */
        uint64_t smoke_timeout_ms; /* `<new> --version`; 0: 10000 */
        uint64_t max_download;     /* bytes; 0: 512 MiB */
        uint64_t download_timeout_ms; /* whole transfer; 0: 600000 */
} cmd_system_config;

/* Registers the four system.* handlers on e (cfg may be NULL). */
int cmd_system_register(cmd_engine *e, const cmd_system_config *cfg);
/* At start: arms the rollback deadline of a pending update, or rolls back at
 * once when the new binary already failed to confirm a start. Returns 0
 * (nothing pending, deadline armed), 1 (a rollback was started: the host's
 * request_restart() was called) or a negative errno. */
int cmd_system_check_update(cmd_engine *e);
/* The new binary is healthy (register.ack received): forget the pending
 * update. */
void cmd_system_update_confirmed(cmd_engine *e);
/* Takes the note of the last rollback ({fromVersion, toVersion, reason, at}):
 * 0 and *ret_note (new reference), or -ENOENT. The note is deleted. */
int cmd_system_take_rollback(cmd_engine *e, json_t **ret_note);
