/* loop: the one event loop of the worker (epoll, CLOCK_MONOTONIC timers in a
 * min-heap, signals through signalfd, child processes through pidfd).
 *
 * Order inside one turn of loop_run_once():
 *   1. expired timers, earliest first (a timer re-armed from its own callback
 *      runs again at the earliest on the next turn);
 *   2. I/O readiness of watched descriptors, signals and child exits;
 *   3. deferred callbacks queued with loop_defer() (used to report errors of
 *      asynchronous operations on a later turn, and to free objects outside
 *      their own callbacks).
 *
 * Nothing here is thread-safe: every call is made from the loop's thread. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct loop loop;
typedef struct loop_io loop_io;
typedef struct loop_timer loop_timer;
typedef struct loop_child loop_child;

enum {
        LOOP_READ = 1u << 0,
        LOOP_WRITE = 1u << 1,
        /* Reported to callbacks only: the peer hung up or the fd is in error. */
        LOOP_ERROR = 1u << 2,
};

typedef void (*loop_io_cb)(loop_io *io, int fd, unsigned events, void *userdata);
typedef void (*loop_timer_cb)(loop_timer *t, void *userdata);
typedef void (*loop_signal_cb)(loop *l, int signo, void *userdata);
/* status is as from waitpid(): test with WIFEXITED() and friends. */
typedef void (*loop_child_cb)(loop_child *c, pid_t pid, int status, void *userdata);
typedef void (*loop_defer_cb)(void *userdata);

/* Creates a loop. Returns 0 and *ret_loop, or a negative errno. */
int loop_new(loop **ret_loop);
/* Frees the loop; all sources must have been removed. Returns NULL. */
loop *loop_free(loop *l);

/* Runs turns until loop_stop() is called. Returns 0, or a negative errno when
 * epoll itself fails. */
int loop_run(loop *l);
/* Runs one turn, waiting at most timeout_ms for events (-1: until the next
 * timer, 0: do not wait). Returns 0 or a negative errno. */
int loop_run_once(loop *l, int timeout_ms);
void loop_stop(loop *l);
bool loop_stopped(const loop *l);

/* Monotonic milliseconds, cached at the start of the turn. */
uint64_t loop_now(const loop *l);
/* Monotonic milliseconds read from the clock now. */
uint64_t loop_now_update(loop *l);

/* I/O: watches fd for events (LOOP_READ | LOOP_WRITE). The fd stays owned by
 * the caller. loop_io_set() changes the event mask (0 pauses the watcher). */
int loop_io_start(loop *l, int fd, unsigned events, loop_io_cb cb, void *userdata,
                  loop_io **ret_io);
int loop_io_set(loop_io *io, unsigned events);
/* Removes the watcher and frees it (safe from inside its callback). Returns NULL. */
loop_io *loop_io_stop(loop_io *io);

/* Timers: one-shot; re-arm with loop_timer_arm(). Created disarmed. */
int loop_timer_new(loop *l, loop_timer_cb cb, void *userdata, loop_timer **ret_timer);
void loop_timer_arm(loop_timer *t, uint64_t delay_ms);
void loop_timer_disarm(loop_timer *t);
bool loop_timer_armed(const loop_timer *t);
/* Disarms and frees (safe from inside its callback). Returns NULL. */
loop_timer *loop_timer_free(loop_timer *t);

/* Signals: blocks signo for the process and delivers it through signalfd.
 * One handler per signal number; cb NULL removes it. */
int loop_signal(loop *l, int signo, loop_signal_cb cb, void *userdata);

/* Child processes: calls cb once when pid exits (the child is reaped).
 * The watcher frees itself after the callback. loop_child_cancel() stops
 * watching without reaping (the caller must then reap). */
int loop_child_watch(loop *l, pid_t pid, loop_child_cb cb, void *userdata,
                     loop_child **ret_child);
void loop_child_cancel(loop_child *c);

/* Runs cb(userdata) at the end of the current (or next) turn. */
int loop_defer(loop *l, loop_defer_cb cb, void *userdata);
