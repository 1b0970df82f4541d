/* notify: the systemd notification protocol (sd_notify(3)) spoken directly:
 * one datagram to $NOTIFY_SOCKET (path or abstract "@name"). A no-op when the
 * variable is unset, so the worker runs the same outside systemd. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* Sends state (e.g. "READY=1\nSTATUS=registered"). Returns 1 when sent, 0
 * when not under systemd, or a negative errno. */
int notify_send(const char *state);
/* Watchdog interval from $WATCHDOG_USEC (honouring $WATCHDOG_PID), in ms; 0
 * when the watchdog is off. */
uint64_t notify_watchdog_ms(void);
