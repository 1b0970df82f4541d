/* bench-docker: the Docker client's cost per API call (src/docker over
 * core/http on the loop), against the engine at $DOCKER_SOCKET:
 *   N sequential GET /containers/{id}/json (inspect) and N GET
 *   /containers/json?all=1 (list), each started when the previous answered,
 * printed as microseconds per call. bench/bench-deploy.sh runs it next to
 * curl --unix-socket doing the same calls in one process (the baseline)
 * and prints the BENCH lines; run alone without $DOCKER_SOCKET and
 * $BENCH_CONTAINER it only says so.
 *
 * Usage: bench-docker [calls]   (default 500) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/loop.h"
#include "docker/docker.h"

typedef struct run {
        docker *dk;
        loop *l;
        const char *id;
        long left, failed;
        bool list;
} run;

static double now_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void next(run *r);

static void done(docker_op *op, const docker_reply *rep, void *ud) {
        run *r = ud;
        (void)op;
        if (rep->err < 0)
                r->failed++;
        if (--r->left > 0)
                next(r);
        else
                loop_stop(r->l);
}

static void next(run *r) {
        docker_list_options lo = { .all = true };
        int e = r->list ? docker_container_list(r->dk, &lo, done, r, NULL)
                        : docker_container_inspect(r->dk, r->id, done, r, NULL);
        if (e < 0) {
                r->failed++;
                loop_stop(r->l);
        }
}

static double measure(run *r, long n, bool list) {
        double t0;
        r->left = n;
        r->list = list;
        t0 = now_us();
        next(r);
        loop_run(r->l);
        return (now_us() - t0) / (double)n;
}

int main(int argc, char **argv) {
        const char *sock = getenv("DOCKER_SOCKET"), *id = getenv("BENCH_CONTAINER");
        long n = argc > 1 ? atol(argv[1]) : 500;
        docker_options o = { 0 };
        run r = { 0 };
        double inspect_us, list_us;

        if (!sock || !id) {
                printf("bench-docker: skipped (needs DOCKER_SOCKET and BENCH_CONTAINER; bench/bench-deploy.sh sets them)\n");
                return 0;
        }
        o.socket = sock;
        if (n < 1 || loop_new(&r.l) < 0 || docker_new(r.l, &o, &r.dk) < 0)
                return 1;
        r.id = id;
        measure(&r, 20, false); /* warm: negotiation, connection */
        inspect_us = measure(&r, n, false);
        list_us = measure(&r, n, true);
        printf("inspect_us %.1f\nlist_us %.1f\nfailed %ld\n", inspect_us, list_us, r.failed);
        r.dk = docker_free(r.dk);
        loop_run_once(r.l, 0);
        loop_free(r.l);
        return r.failed ? 1 : 0;
}
