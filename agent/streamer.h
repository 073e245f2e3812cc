/*
 * streamer: the thread that serves every long-lived Kubernetes stream
 * (watches, follow logs, proxy_request with "stream": true) on one curl
 * multi handle (PROTOCOL.md 4.7). Design notes in streamer.c.
 */
#ifndef PIPEOPS_AGENT_STREAMER_H
#define PIPEOPS_AGENT_STREAMER_H

#include <stdbool.h>
#include <stddef.h>

struct agent;
struct request;

/* Reader: does @req (borrowed) go to the streamer? Stream requests and
 * proxy_cancel. Pure; any thread. */
bool streamer_handles(const struct request *req);

/*
 * Start the thread (main, after the workers, before any endpoint reads).
 * Uses a->streamer_wake (created with the endpoints' rings) and reads
 * a->config once for [runner] max_streams. 0, or a negative errno.
 */
int streamer_start(struct agent *a);

/*
 * End every stream (each gets its final done message, with error "agent
 * stopping"), hand what is left to the writers (for at most 2 s) and join
 * the thread. Call after the readers stopped reading and before the
 * endpoints stop. Safe when not started; called once.
 */
void streamer_stop(struct agent *a);

/* Streams open now (any thread; 0 when not started). */
size_t streamer_open_streams(struct agent *a);

#endif
