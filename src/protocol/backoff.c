#include "protocol/backoff.h"

void backoff_init(backoff *b, uint64_t base_ms, uint64_t max_ms) {
        b->base_ms = base_ms ? base_ms : 1;
        b->max_ms = max_ms < b->base_ms ? b->base_ms : max_ms;
        b->attempt = 0;
}

uint64_t backoff_next(backoff *b, uint32_t rnd) {
        uint64_t cap = b->base_ms, floor, d;
        unsigned i;

        for (i = 0; i < b->attempt && cap < b->max_ms; i++)
                cap *= 2;
        if (cap > b->max_ms)
                cap = b->max_ms;
        if (b->attempt < 64)
                b->attempt++;
        floor = b->base_ms / 2;
        if (floor > cap)
                floor = cap;
        /* Full jitter over [floor, cap]. */
        d = floor + (uint64_t)(((double)rnd / 4294967296.0) * (double)(cap - floor + 1));
        return d > cap ? cap : d;
}

void backoff_reset(backoff *b) {
        b->attempt = 0;
}
