/*
 * metrics: process-wide counters for /metrics and the Kubernetes
 * reachability used by /readyz.
 *
 * DESIGN
 * Every counter is a C11 atomic in a fixed table (no allocation, no lock):
 * any thread may call the update functions at any time, including before
 * the agent is initialised. Updates are relaxed increments; a scrape reads
 * each counter once, so a scrape taken during an update may see one
 * counter a step ahead of another (histogram _count is computed from the
 * buckets it read, so buckets and _count always agree). The Kubernetes
 * reachability flag is an atomic; its error text is kept under a private
 * mutex (a leaf lock, held only to copy the text).
 *
 * Message and operation types are matched against fixed tables; anything
 * else counts as "other" (and an undecodable message as "invalid").
 */
#ifndef PIPEOPS_AGENT_METRICS_H
#define PIPEOPS_AGENT_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/msg.h"

struct agent;
struct k8s_error;

/* Reader: one message received on @ep; @type NULL: it did not decode. */
void metrics_msg_in(enum endpoint_id ep, const char *type);
/* Writer: one message written to @ep's socket. */
void metrics_msg_out(enum endpoint_id ep, const char *type);
/* Worker: an operation of @type ended (@ok: success) after @ms. */
void metrics_op_done(const char *type, bool ok, int64_t ms);
/* Reader: a connection of @ep was established. */
void metrics_connected(enum endpoint_id ep);

/*
 * The outcome of a Kubernetes API call: @err NULL is a success and marks
 * the API reachable; a failure marks it unreachable only when it says the
 * API could not be reached (reasons Unreachable, Timeout, TLSError,
 * TransportError, or an HTTP 5xx), and reachable when the API answered
 * (HTTP 4xx). Other failures (validation, bad answers) change nothing.
 * @err is borrowed for the call.
 */
void metrics_k8s_outcome(const struct k8s_error *err);
/* True when the last telling call reached the API; when false, copies the
 * error (or "not checked yet") into @error (may be NULL). */
bool metrics_k8s_reachable(char *error, size_t len);

/* What a scrape reads from the agent besides the counters above. */
struct metrics_endpoint_gauges {
	int state;	     /* enum endpoint_state */
	int64_t rtt_ms;	     /* -1: none (not open or no pong yet) */
	int attempts;	     /* failed connects since the last success */
	size_t worker_queue; /* sum of the to_worker ring depths */
	size_t outbox_messages;
	size_t outbox_bytes;
	uint64_t duplicates;
};

struct metrics_gauges {
	struct metrics_endpoint_gauges ep[EP_COUNT];
	int in_flight;
	int64_t uptime_ms;
	bool registered;
	bool k8s_reachable;
	size_t open_streams;
};

/* Read the gauges of @a (borrowed; any thread while @a lives). */
void metrics_collect(struct agent *a, struct metrics_gauges *g);

/*
 * The Prometheus text format 0.0.4 of the counters and @g (borrowed).
 * Returns a new NUL-terminated string the caller frees; *@len its length.
 */
char *metrics_render(const struct metrics_gauges *g, size_t *len);

/* Tests only: every counter back to zero, reachability unknown. */
void metrics_reset(void);

#endif
