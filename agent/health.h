/*
 * health: the HTTP listener of [health] listen (libmicrohttpd) serving
 *   /healthz  200 "ok" while the process runs
 *   /readyz   200 "ok" when the control plane acknowledged the
 *             registration and the Kubernetes API is reachable and the
 *             agent is not stopping; else 503 with one reason per line
 *   /metrics  Prometheus text format 0.0.4 (metrics.h)
 * Other paths: 404. Methods other than GET and HEAD: 405.
 *
 * Thread rules: health_start() and health_stop() are called by main only.
 * The server runs in one internal libmicrohttpd thread that only reads the
 * agent's atomics, its ring depths and the metrics counters.
 */
#ifndef PIPEOPS_AGENT_HEALTH_H
#define PIPEOPS_AGENT_HEALTH_H

#include <stdbool.h>
#include <stddef.h>

struct agent;
struct health;

/*
 * Listen on @addr ("host:port" or "[v6]:port"; borrowed for the call)
 * and serve @a (borrowed until health_stop() returns). Returns 0 with a
 * new server in *@out, or a negative errno with @err filled (bind failure,
 * bad address). Signals must already be blocked: the server thread
 * inherits the mask.
 */
int health_start(struct agent *a, const char *addr, struct health **out,
		 char *err, size_t errlen);

/* Stop the thread, close the socket, free @h (NULL is fine). */
void health_stop(struct health *h);

/*
 * Readiness of @a: true, or false with the reasons (one per line, no
 * trailing newline) in @why. Any thread.
 */
bool health_ready(struct agent *a, char *why, size_t len);

#endif
