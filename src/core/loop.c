#include "core/loop.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Kinds of epoll registrations; all start with this tag so the dispatcher
 * can tell them apart from the epoll data pointer. */
enum src_kind { SRC_IO, SRC_SIGNAL, SRC_CHILD };

struct loop_io {
        enum src_kind kind;
        loop *l;
        int fd;
        unsigned events;
        bool dead;
        bool registered;
        loop_io_cb cb;
        void *userdata;
        loop_io *next_dead;
};

struct loop_timer {
        loop *l;
        uint64_t deadline;
        uint64_t seq;       /* tie-breaker: arm order */
        size_t heap_idx;    /* SIZE_MAX when not in the heap */
        bool dead;
        loop_timer_cb cb;
        void *userdata;
        loop_timer *next_dead;
};

struct loop_child {
        enum src_kind kind;
        loop *l;
        pid_t pid;
        int pidfd;
        bool dead;
        loop_child_cb cb;
        void *userdata;
        loop_child *next_dead;
};

struct signal_src {
        enum src_kind kind;
};

typedef struct defer_item {
        loop_defer_cb cb;
        void *userdata;
} defer_item;

struct loop {
        int epfd;
        bool stop;
        uint64_t now;
        uint64_t timer_seq;

        loop_timer **heap;
        size_t heap_len, heap_cap;

        int sigfd;
        sigset_t sigmask;
        struct signal_src sigsrc;
        loop_signal_cb sig_cb[65];
        void *sig_ud[65];

        defer_item *defer;
        size_t defer_len, defer_cap;

        loop_io *dead_io;
        loop_timer *dead_timers;
        loop_child *dead_children;
};

static uint64_t mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int loop_new(loop **ret_loop) {
        loop *l = calloc(1, sizeof *l);
        if (!l)
                return -ENOMEM;
        l->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (l->epfd < 0) {
                int r = -errno;
                free(l);
                return r;
        }
        l->sigfd = -1;
        l->sigsrc.kind = SRC_SIGNAL;
        sigemptyset(&l->sigmask);
        l->now = mono_ms();
        *ret_loop = l;
        return 0;
}

static void reap_dead(loop *l) {
        while (l->dead_io) {
                loop_io *io = l->dead_io;
                l->dead_io = io->next_dead;
                free(io);
        }
        while (l->dead_timers) {
                loop_timer *t = l->dead_timers;
                l->dead_timers = t->next_dead;
                free(t);
        }
        while (l->dead_children) {
                loop_child *c = l->dead_children;
                l->dead_children = c->next_dead;
                free(c);
        }
}

loop *loop_free(loop *l) {
        if (!l)
                return NULL;
        reap_dead(l);
        if (l->sigfd >= 0) {
                sigprocmask(SIG_UNBLOCK, &l->sigmask, NULL);
                close(l->sigfd);
        }
        free(l->heap);
        free(l->defer);
        close(l->epfd);
        free(l);
        return NULL;
}

uint64_t loop_now(const loop *l) {
        return l->now;
}

uint64_t loop_now_update(loop *l) {
        l->now = mono_ms();
        return l->now;
}

void loop_stop(loop *l) {
        l->stop = true;
}

bool loop_stopped(const loop *l) {
        return l->stop;
}

/* ---- timers: binary min-heap ordered by (deadline, seq) ---- */

static bool timer_less(const loop_timer *a, const loop_timer *b) {
        if (a->deadline != b->deadline)
                return a->deadline < b->deadline;
        return a->seq < b->seq;
}

static void heap_swap(loop *l, size_t i, size_t j) {
        loop_timer *t = l->heap[i];
        l->heap[i] = l->heap[j];
        l->heap[j] = t;
        l->heap[i]->heap_idx = i;
        l->heap[j]->heap_idx = j;
}

static void heap_up(loop *l, size_t i) {
        while (i > 0) {
                size_t p = (i - 1) / 2;
                if (!timer_less(l->heap[i], l->heap[p]))
                        break;
                heap_swap(l, i, p);
                i = p;
        }
}

static void heap_down(loop *l, size_t i) {
        for (;;) {
                size_t a = 2 * i + 1, b = a + 1, m = i;
                if (a < l->heap_len && timer_less(l->heap[a], l->heap[m]))
                        m = a;
                if (b < l->heap_len && timer_less(l->heap[b], l->heap[m]))
                        m = b;
                if (m == i)
                        break;
                heap_swap(l, i, m);
                i = m;
        }
}

static void heap_remove(loop *l, loop_timer *t) {
        size_t i = t->heap_idx;
        if (i == SIZE_MAX)
                return;
        l->heap_len--;
        if (i != l->heap_len) {
                l->heap[i] = l->heap[l->heap_len];
                l->heap[i]->heap_idx = i;
                heap_down(l, i);
                heap_up(l, i);
        }
        t->heap_idx = SIZE_MAX;
}

int loop_timer_new(loop *l, loop_timer_cb cb, void *userdata, loop_timer **ret_timer) {
        loop_timer *t;

        if (l->heap_len == l->heap_cap) {
                size_t ncap = l->heap_cap ? l->heap_cap * 2 : 16;
                loop_timer **h = realloc(l->heap, ncap * sizeof *h);
                if (!h)
                        return -ENOMEM;
                l->heap = h;
                l->heap_cap = ncap;
        }
        t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        t->l = l;
        t->cb = cb;
        t->userdata = userdata;
        t->heap_idx = SIZE_MAX;
        *ret_timer = t;
        return 0;
}

void loop_timer_arm(loop_timer *t, uint64_t delay_ms) {
        loop *l = t->l;

        if (t->dead)
                return;
        heap_remove(l, t);
        /* The heap capacity was reserved for every live timer in
         * loop_timer_new(), except when many timers were created and
         * never armed: grow here if needed. */
        if (l->heap_len == l->heap_cap) {
                size_t ncap = l->heap_cap ? l->heap_cap * 2 : 16;
                loop_timer **h = realloc(l->heap, ncap * sizeof *h);
                if (!h)
                        return;
                l->heap = h;
                l->heap_cap = ncap;
        }
        t->deadline = l->now + delay_ms;
        t->seq = ++l->timer_seq;
        t->heap_idx = l->heap_len;
        l->heap[l->heap_len++] = t;
        heap_up(l, t->heap_idx);
}

void loop_timer_disarm(loop_timer *t) {
        heap_remove(t->l, t);
}

bool loop_timer_armed(const loop_timer *t) {
        return t->heap_idx != SIZE_MAX;
}

loop_timer *loop_timer_free(loop_timer *t) {
        if (!t || t->dead)
                return NULL;
        heap_remove(t->l, t);
        t->dead = true;
        t->next_dead = t->l->dead_timers;
        t->l->dead_timers = t;
        return NULL;
}

static void run_timers(loop *l) {
        /* Only timers armed before this pass started may fire in it, so a timer
         * re-armed with delay 0 from its callback cannot starve I/O. */
        uint64_t seq_limit = l->timer_seq;

        while (l->heap_len > 0) {
                loop_timer *t = l->heap[0];
                if (t->deadline > l->now || t->seq > seq_limit)
                        break;
                heap_remove(l, t);
                t->cb(t, t->userdata);
        }
}

/* ---- I/O ---- */

static uint32_t to_epoll(unsigned events) {
        uint32_t e = 0;
        if (events & LOOP_READ)
                e |= EPOLLIN | EPOLLRDHUP;
        if (events & LOOP_WRITE)
                e |= EPOLLOUT;
        return e;
}

int loop_io_start(loop *l, int fd, unsigned events, loop_io_cb cb, void *userdata,
                  loop_io **ret_io) {
        struct epoll_event ev = { 0 };
        loop_io *io = calloc(1, sizeof *io);

        if (!io)
                return -ENOMEM;
        io->kind = SRC_IO;
        io->l = l;
        io->fd = fd;
        io->events = events;
        io->cb = cb;
        io->userdata = userdata;
        ev.events = to_epoll(events);
        ev.data.ptr = io;
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                int r = -errno;
                free(io);
                return r;
        }
        io->registered = true;
        *ret_io = io;
        return 0;
}

int loop_io_set(loop_io *io, unsigned events) {
        struct epoll_event ev = { 0 };

        if (io->dead)
                return -ESTALE;
        if (io->events == events)
                return 0;
        ev.events = to_epoll(events);
        ev.data.ptr = io;
        if (epoll_ctl(io->l->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
                return -errno;
        io->events = events;
        return 0;
}

loop_io *loop_io_stop(loop_io *io) {
        if (!io || io->dead)
                return NULL;
        if (io->registered)
                epoll_ctl(io->l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
        io->dead = true;
        io->next_dead = io->l->dead_io;
        io->l->dead_io = io;
        return NULL;
}

/* ---- signals ---- */

int loop_signal(loop *l, int signo, loop_signal_cb cb, void *userdata) {
        struct epoll_event ev = { 0 };
        sigset_t one;
        int fd;

        if (signo <= 0 || signo > 64)
                return -EINVAL;
        if (!cb) {
                l->sig_cb[signo] = NULL;
                return 0;
        }
        sigemptyset(&one);
        sigaddset(&one, signo);
        if (sigprocmask(SIG_BLOCK, &one, NULL) < 0)
                return -errno;
        sigaddset(&l->sigmask, signo);
        fd = signalfd(l->sigfd, &l->sigmask, SFD_NONBLOCK | SFD_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (l->sigfd < 0) {
                ev.events = EPOLLIN;
                ev.data.ptr = &l->sigsrc;
                if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                        int r = -errno;
                        close(fd);
                        return r;
                }
                l->sigfd = fd;
        }
        l->sig_cb[signo] = cb;
        l->sig_ud[signo] = userdata;
        return 0;
}

static void dispatch_signals(loop *l) {
        struct signalfd_siginfo si;

        for (;;) {
                ssize_t n = read(l->sigfd, &si, sizeof si);
                if (n != (ssize_t)sizeof si)
                        break;
                if (si.ssi_signo > 0 && si.ssi_signo <= 64 && l->sig_cb[si.ssi_signo])
                        l->sig_cb[si.ssi_signo](l, (int)si.ssi_signo, l->sig_ud[si.ssi_signo]);
        }
}

/* ---- children ---- */

int loop_child_watch(loop *l, pid_t pid, loop_child_cb cb, void *userdata,
                     loop_child **ret_child) {
        struct epoll_event ev = { 0 };
        loop_child *c;
        int fd, r;

        fd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (fd < 0)
                return -errno;
        c = calloc(1, sizeof *c);
        if (!c) {
                close(fd);
                return -ENOMEM;
        }
        c->kind = SRC_CHILD;
        c->l = l;
        c->pid = pid;
        c->pidfd = fd;
        c->cb = cb;
        c->userdata = userdata;
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                r = -errno;
                close(fd);
                free(c);
                return r;
        }
        if (ret_child)
                *ret_child = c;
        return 0;
}

static void child_release(loop_child *c) {
        epoll_ctl(c->l->epfd, EPOLL_CTL_DEL, c->pidfd, NULL);
        close(c->pidfd);
        c->dead = true;
        c->next_dead = c->l->dead_children;
        c->l->dead_children = c;
}

void loop_child_cancel(loop_child *c) {
        if (!c || c->dead)
                return;
        child_release(c);
}

static void dispatch_child(loop_child *c) {
        int status = 0;
        pid_t r;

        do
                r = waitpid(c->pid, &status, WNOHANG);
        while (r < 0 && errno == EINTR);
        if (r == 0)
                return; /* spurious */
        if (r < 0)
                status = 0x7f00; /* already reaped elsewhere: report exit 127 */
        child_release(c);
        c->cb(c, c->pid, status, c->userdata);
}

/* ---- deferred callbacks ---- */

int loop_defer(loop *l, loop_defer_cb cb, void *userdata) {
        if (l->defer_len == l->defer_cap) {
                size_t ncap = l->defer_cap ? l->defer_cap * 2 : 16;
                defer_item *d = realloc(l->defer, ncap * sizeof *d);
                if (!d)
                        return -ENOMEM;
                l->defer = d;
                l->defer_cap = ncap;
        }
        l->defer[l->defer_len].cb = cb;
        l->defer[l->defer_len].userdata = userdata;
        l->defer_len++;
        return 0;
}

static void run_deferred(loop *l) {
        /* Items queued while running go to the next turn. */
        size_t n = l->defer_len, i;
        defer_item stackbuf[32], *items = stackbuf;

        if (n == 0)
                return;
        if (n > 32) {
                items = malloc(n * sizeof *items);
                if (!items) {
                        /* Run them in place; newly queued ones run this turn too. */
                        for (i = 0; i < l->defer_len; i++)
                                l->defer[i].cb(l->defer[i].userdata);
                        l->defer_len = 0;
                        return;
                }
        }
        memcpy(items, l->defer, n * sizeof *items);
        memmove(l->defer, l->defer + n, (l->defer_len - n) * sizeof *items);
        l->defer_len -= n;
        for (i = 0; i < n; i++)
                items[i].cb(items[i].userdata);
        if (items != stackbuf)
                free(items);
}

/* ---- the turn ---- */

int loop_run_once(loop *l, int timeout_ms) {
        struct epoll_event evs[64];
        int n, i, wait_ms = timeout_ms;

        l->now = mono_ms();
        run_timers(l);

        if (l->defer_len > 0 || l->stop) {
                wait_ms = 0;
        } else if (l->heap_len > 0) {
                uint64_t d = l->heap[0]->deadline;
                int until = d > l->now ? (int)(d - l->now > 86400000 ? 86400000 : d - l->now) : 0;
                if (wait_ms < 0 || until < wait_ms)
                        wait_ms = until;
        }
        n = epoll_wait(l->epfd, evs, 64, wait_ms);
        if (n < 0 && errno != EINTR)
                return -errno;
        l->now = mono_ms();
        for (i = 0; i < n; i++) {
                enum src_kind kind = *(enum src_kind *)evs[i].data.ptr;
                if (kind == SRC_SIGNAL) {
                        dispatch_signals(l);
                } else if (kind == SRC_CHILD) {
                        loop_child *c = evs[i].data.ptr;
                        if (!c->dead)
                                dispatch_child(c);
                } else {
                        loop_io *io = evs[i].data.ptr;
                        unsigned ev = 0;
                        if (io->dead)
                                continue;
                        if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))
                                ev |= LOOP_READ;
                        if (evs[i].events & EPOLLOUT)
                                ev |= LOOP_WRITE;
                        if (evs[i].events & (EPOLLERR | EPOLLHUP))
                                ev |= LOOP_ERROR;
                        ev &= io->events | LOOP_ERROR;
                        if (ev)
                                io->cb(io, io->fd, ev, io->userdata);
                }
        }
        run_deferred(l);
        reap_dead(l);
        return 0;
}

int loop_run(loop *l) {
        l->stop = false;
        while (!l->stop) {
                int r = loop_run_once(l, -1);
                if (r < 0)
                        return r;
        }
        return 0;
}
