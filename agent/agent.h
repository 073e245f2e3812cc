/*
 * agent: the process-wide state shared by the supervisor, the endpoint
 * pairs and the workers. Internal to agent/.
 *
 * DESIGN (threads and queues; the full picture is docs/ARCHITECTURE.md)
 *   supervisor (main thread): config, timers, signals, register and
 *     heartbeats, runner assignment. Owns the runner target.
 *   per endpoint: a reader (connect, read, decode, dispatch) and a writer
 *     (drain rings, outbox, write frames).
 *   workers[0..N): execute operations; reply to the origin's writer.
 *   streamer: one thread, one curl multi handle for every stream.
 * Rings (all SPSC, created at start-up and never replaced, so threads may
 * hold pointers to them for the agent's whole life):
 *   ep.to_worker[i]    reader(ep)   -> worker i
 *   ep.from_worker[i]  worker i     -> writer(ep)
 *   ep.from_super      supervisor   -> writer(ep)
 *   ep.from_reader     reader(ep)   -> writer(ep)   (errors it answers)
 *   ep.to_super        reader(ep)   -> supervisor   (events, CP control)
 *   ep.to_streamer     reader(ep)   -> streamer     (streams, proxy_cancel)
 *   ep.from_streamer   streamer     -> writer(ep)   (chunks, done)
 */
#ifndef PIPEOPS_AGENT_AGENT_H
#define PIPEOPS_AGENT_AGENT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "agent/msg.h"
#include "common/config.h"

struct ring;
struct ws_conn;
struct tls_ctx;
struct k8s_shared;
struct k8s_client;
struct agent;
struct dedup;
struct streamer;

enum endpoint_state {
	EPS_IDLE = 0, /* runner not assigned */
	EPS_CONNECTING,
	EPS_OPEN,
	EPS_BACKOFF,
	EPS_STOPPED,
};

/* Events a reader hands to the supervisor through ep.to_super. */
/* UP: link open; DOWN: an open link ended; FAIL: connecting failed (sent
 * once per streak of identical failures); MESSAGE: a CP control message. */
enum sup_event_kind { SUP_EV_UP, SUP_EV_DOWN, SUP_EV_FAIL, SUP_EV_MESSAGE };

struct sup_event {
	enum sup_event_kind kind;
	enum endpoint_id ep;
	uint64_t link_gen;
	struct request *req; /* SUP_EV_MESSAGE: owned */
	char error[256];     /* SUP_EV_DOWN / FAIL: why */
	char runner_id[128]; /* the runner of that link ("" for the CP) */
	int attempts;	     /* failed connects in a row */
};

/* Where and how an endpoint connects; replaced as a whole by the
 * supervisor, read by the reader under ep->target_lock. */
struct endpoint_target {
	atomic_int refs;   /* reader and supervisor */
	uint64_t peer_gen; /* kept for the same runner_id (set_target) */
	char *url;
	char *token;
	char *runner_id;	    /* runner only */
	struct tls_ctx *tls;	    /* NULL for ws:// */
	struct config_endpoint cfg; /* timing and limits (strings borrowed
				      from the config the target holds) */
	struct config *config;	    /* reference kept while the target lives */
};

struct endpoint {
	struct agent *agent;
	enum endpoint_id id;
	const char *name; /* "control_plane" / "runner" */
	const char *default_path;

	pthread_mutex_t target_lock;
	struct endpoint_target *target;	 /* guarded by target_lock */
	atomic_uint_fast64_t target_gen; /* bumped by supervisor on change */
	uint64_t peer_count;		 /* supervisor only: peer_gen source */

	/* Published by the reader for the supervisor and heartbeats. */
	atomic_int state;		   /* enum endpoint_state */
	atomic_int_fast64_t since_wall_ns; /* last state change (wall) */
	atomic_int_fast64_t rtt_ms;	   /* -1: none yet */
	atomic_int attempts;		   /* failed connects since last up */
	atomic_uint_fast64_t link_gen;	   /* increments on every connect */
	atomic_uint_fast64_t msgs_in, msgs_out;
	pthread_mutex_t err_lock;
	char last_error[200]; /* guarded by err_lock */

	/* The live connection: changed by the reader only, under conn_lock;
	 * the writer uses it under conn_lock (calls never block). */
	pthread_mutex_t conn_lock;
	struct ws_conn *conn;
	uint64_t conn_peer_gen; /* target gen of conn; conn_lock */

	int reader_wake;	   /* eventfd: retarget, stop, space */
	int connect_cancel;	   /* eventfd: retarget, stop only */
	int writer_wake;	   /* eventfd: rings, want_write */
	struct ring **to_worker;   /* [n_workers] */
	struct ring **from_worker; /* [n_workers] */
	struct ring *from_super;
	struct ring *from_reader;
	struct ring *to_super;
	struct ring *to_streamer;   /* reader -> streamer */
	struct ring *from_streamer; /* streamer -> writer */

	struct dedup *dedup;		 /* request ids seen (thread-safe) */
	atomic_uint_fast64_t duplicates; /* redelivered requests not re-run */

	atomic_size_t pending;	       /* reader's pending list length */
	atomic_int in_flight;	       /* handed to workers, not answered */
	atomic_size_t in_flight_bytes; /* their size as received */
	/* Timing, updated at once on reload (ms). */
	atomic_int_fast64_t ping_interval_ms, ping_timeout_ms;

	atomic_bool stop_reading; /* graceful stop: read no more */
	atomic_bool stop;	  /* threads exit */
	atomic_size_t outbox_len; /* writer's queue length */
	atomic_size_t outbox_bytes;

	pthread_t reader, writer;
	bool threads_started;
};

struct worker {
	struct agent *agent;
	int index;
	int wake; /* eventfd */
	struct k8s_client *k8s;
	pthread_t thread;
	bool started;
};

struct agent {
	struct config *config; /* supervisor's; swapped on reload */
	char agent_id[96];
	char name[128];
	int n_workers;
	struct worker *workers;
	struct endpoint ep[EP_COUNT];
	struct k8s_shared *k8s;
	int super_wake;		    /* eventfd: to_super rings */
	int streamer_wake;	    /* eventfd: to_streamer rings */
	struct streamer *streamer;  /* main/supervisor thread only */
	atomic_size_t open_streams; /* written by the streamer */
	int64_t start_mono_ms;
	atomic_bool stopping;
	atomic_bool workers_stop;
	atomic_bool abandon;	    /* stop timed out: execute nothing */
	int64_t status_interval_ms; /* set before workers start */

	/* operation counters (workers) */
	atomic_int in_flight;
	atomic_uint_fast64_t ops_done, ops_failed;

	/* cluster facts for register, refreshed by worker 0 */
	pthread_mutex_t cluster_lock;
	json_t *cluster_info;	/* guarded by cluster_lock */
	atomic_bool registered; /* written by the supervisor; read by
				 * the health thread */
};

/* endpoint.c */
int endpoint_init(struct endpoint *ep, struct agent *a, enum endpoint_id id);
int endpoint_start(struct endpoint *ep);
/* Supervisor: replace the target (takes ownership of @t; NULL: idle). */
void endpoint_set_target(struct endpoint *ep, struct endpoint_target *t);
void endpoint_target_free(struct endpoint_target *t);
/* Supervisor: hand a message to the writer (takes ownership of @m). */
bool endpoint_send_from_super(struct endpoint *ep, struct outmsg *m);
void endpoint_stop_reading(struct endpoint *ep);
/* Supervisor: apply new ping timing to the live link at once. */
void endpoint_set_timing(struct endpoint *ep,
			 const struct config_endpoint *cfg);
/* Nothing received is unanswered and nothing is waiting to be sent. */
bool endpoint_idle(struct endpoint *ep);
/* Worker: a request from @ep was answered (its reply is queued). */
void endpoint_request_done(struct endpoint *ep, size_t bytes);
/* Stop threads: close with @code, flush for at most @flush_ms. */
void endpoint_stop(struct endpoint *ep, int64_t flush_ms);
void endpoint_destroy(struct endpoint *ep);
const char *endpoint_state_name(int state);
bool endpoint_is_open(struct endpoint *ep);

/* worker.c */
int workers_start(struct agent *a);
void workers_stop(struct agent *a);
/* Pick the worker for @req (same namespace/name -> same worker). */
int worker_pick(struct agent *a, enum endpoint_id ep, struct request *req);
/* Reader: is @type an operation that workers execute? */
bool worker_handles(const char *type);

/* supervisor.c */
/* Start the Control Plane pair; 0, or negative with @err filled. */
int supervisor_start_cp(struct agent *a, char *err, size_t errlen);
/* Run until SIGTERM/SIGINT, then stop gracefully. 0 or negative errno. */
int supervisor_run(struct agent *a, const char *config_path);
/* SIGHUP: load the file again; a bad file keeps the running config. */
void supervisor_reload(struct agent *a, const char *config_path);

#endif
