/*
 * dedup: remembers the last N request ids of one endpoint so that a
 * request redelivered after a reconnect is never executed twice
 * (PROTOCOL.md 5). A request still running is not started again (its one
 * reply goes out when it finishes); a finished one gets its stored reply
 * again.
 *
 * Thread rules: the endpoint's reader calls dedup_check(), workers call
 * dedup_complete(); one mutex guards the table (short critical sections,
 * no I/O under it).
 */
#ifndef PIPEOPS_AGENT_DEDUP_H
#define PIPEOPS_AGENT_DEDUP_H

#include <stddef.h>

struct dedup;

enum dedup_verdict {
	DEDUP_NEW,     /* recorded as running: execute it */
	DEDUP_RUNNING, /* being executed: do nothing */
	DEDUP_DONE,    /* finished: send *reply again */
};

/* @window ids are remembered; stored replies use at most @max_bytes
 * (older replies are forgotten first). Returns a new table. */
struct dedup *dedup_new(size_t window, size_t max_bytes);
void dedup_free(struct dedup *d); /* accepts NULL */

/* Look up @id. DEDUP_DONE sets *reply to a new copy of the stored reply
 * (the caller frees it) and *len to its length. */
enum dedup_verdict dedup_check(struct dedup *d, const char *id, char **reply,
			       size_t *len);

/* Store the final reply of @id (copied). Does nothing when @id has been
 * forgotten in the meantime. */
void dedup_complete(struct dedup *d, const char *id, const char *text,
		    size_t len);

/* Forget @id once it is done: its reply is not worth keeping (a read,
 * run again if redelivered), and keeping it could push the replies of
 * writes out of the byte budget. */
void dedup_forget(struct dedup *d, const char *id);

/* Forget every id (a new peer whose ids mean other requests). */
void dedup_clear(struct dedup *d);

/* Number of ids remembered (for metrics and tests). */
size_t dedup_size(struct dedup *d);

#endif
