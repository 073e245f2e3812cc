/*
 * backoff: reconnect delays, exponential with full jitter between
 * initial and max, reset only after the link stayed up for a while.
 * One per endpoint, used by its reader thread only.
 */
#ifndef PIPEOPS_COMMON_BACKOFF_H
#define PIPEOPS_COMMON_BACKOFF_H

#include <stdint.h>

struct backoff {
	int64_t initial_ms;
	int64_t max_ms;
	int64_t current_ms;  /* upper bound of the next delay */
	int64_t up_since_ms; /* monotonic; 0 = not up */
};

void backoff_init(struct backoff *b, int64_t initial_ms, int64_t max_ms);
/* The delay before the next attempt; grows the bound. @random32 is a
 * random number (tests pass fixed values). */
int64_t backoff_next(struct backoff *b, uint32_t random32);
/* Link came up at @now_ms. */
void backoff_up(struct backoff *b, int64_t now_ms);
/* Link went down at @now_ms: the bound resets only if it was up for at
 * least the stable period (max(10 s, 2 x max_ms capped at 60 s)). */
void backoff_down(struct backoff *b, int64_t now_ms);
/* Honour a server's Retry-After: the next delay is at least @ms. */
int64_t backoff_at_least(int64_t delay_ms, int64_t retry_after_ms);

#endif
