/* backoff: reconnection delays, exponential with full jitter (AWS style):
 * attempt n waits uniform(0, min(max, base * 2^n)], never below base/2 so a
 * flapping controller is not hammered, and never above max. */
#pragma once

#include <stdint.h>

typedef struct backoff {
        uint64_t base_ms;
        uint64_t max_ms;
        unsigned attempt;
} backoff;

void backoff_init(backoff *b, uint64_t base_ms, uint64_t max_ms);
/* Delay before the next attempt; advances the attempt counter. rnd is a
 * uniform random 32-bit value (tests pass fixed ones). */
uint64_t backoff_next(backoff *b, uint32_t rnd);
/* Back to attempt 0 (after a connection that got registered). */
void backoff_reset(backoff *b);
