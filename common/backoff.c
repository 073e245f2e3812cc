/* backoff: exponential reconnect delays with jitter (see backoff.h). */
#include "common/backoff.h"

void backoff_init(struct backoff *b, int64_t initial_ms, int64_t max_ms)
{
	b->initial_ms = initial_ms > 0 ? initial_ms : 1;
	b->max_ms = max_ms >= b->initial_ms ? max_ms : b->initial_ms;
	b->current_ms = b->initial_ms;
	b->up_since_ms = 0;
}

int64_t backoff_next(struct backoff *b, uint32_t random32)
{
	/* Jitter: a delay in [bound/2, bound], so many agents spread out but
	 * none retries sooner than half the bound. */
	int64_t bound = b->current_ms;
	int64_t half = bound / 2;
	int64_t delay = half + (int64_t)(random32 % (uint64_t)(half + 1));

	b->current_ms = bound * 2 > b->max_ms ? b->max_ms : bound * 2;
	return delay;
}

void backoff_up(struct backoff *b, int64_t now_ms)
{
	b->up_since_ms = now_ms;
}

void backoff_down(struct backoff *b, int64_t now_ms)
{
	int64_t stable = 2 * b->max_ms;

	if (stable > 60000)
		stable = 60000;
	if (stable < 10000)
		stable = 10000;
	if (b->up_since_ms && now_ms - b->up_since_ms >= stable)
		b->current_ms = b->initial_ms;
	b->up_since_ms = 0;
}

int64_t backoff_at_least(int64_t delay_ms, int64_t retry_after_ms)
{
	return retry_after_ms > delay_ms ? retry_after_ms : delay_ms;
}
