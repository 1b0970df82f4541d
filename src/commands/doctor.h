/* doctor: `aiwm-worker check`. Tries each dependency in turn and prints one
 * line each: "OK", "WARN" or "FAIL", what was found, and for a failure how to
 * fix it. Never prints the token. Returns 0 when nothing failed, 1 otherwise
 * (WARN does not fail: a CPU-only machine has no GPU to report). */
#pragma once

#include <stdio.h>

#include "core/config.h"
#include "core/loop.h"

int doctor_run(const config *cfg, loop *l, FILE *out);
