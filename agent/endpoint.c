/*
 * endpoint: one reader/writer thread pair per WebSocket endpoint.
 *
 * DESIGN
 * reader: owns connecting (ws_connect, cancellable through connect_cancel),
 *   reconnect backoff, keepalive pings and the dead-link deadline, and
 *   reading. Each message is decoded once; malformed or unsupported ones
 *   are answered through from_reader, operations go to a worker ring,
 *   streams and proxy_cancel to the streamer (to_streamer), control
 *   messages and link events to the supervisor. When a ring is full the
 *   message waits in the reader's pending list and the socket is not read
 *   until it drains (TCP pushes back on the peer).
 * writer: drains from_super, from_reader, from_streamer and from_worker[]
 *   into its outbox, then writes while the link is open. Replies stay in
 *   the outbox while the link is down (bounded; when full the writer stops
 *   draining rings, which stalls workers, which stalls readers).
 *   Heartbeats and status (OUT_DROP_WHEN_DOWN) are never queued while
 *   down.
 * The live ws_conn is published by the reader under conn_lock; the writer
 * uses it only under conn_lock and only with calls that never block, so
 * the reader can take it back at any time. Lock order: conn_lock, then the
 * connection's own io_lock (inside ws.c). target_lock is never held with
 * either.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/dedup.h"
#include "agent/metrics.h"
#include "agent/streamer.h"
#include "common/backoff.h"
#include "common/log.h"
#include "common/rand.h"
#include "common/ring.h"
#include "common/tls.h"
#include "common/util.h"
#include "common/ws.h"

#define RING_SIZE 1024
/* Stored replies kept for redelivered requests, per endpoint. */
#define DEDUP_MAX_BYTES (32u << 20)
/* Unsent bytes on a link above which its reader stops reading. */
#define TX_QUEUE_LIMIT (1u << 20)
#define USER_AGENT     "pipeops-agent/" PIPEOPS_VERSION

struct pending {
	struct pending *next;
	struct ring *ring;
	void *item;
	bool is_request; /* else an outmsg */
};

struct reader_ctx {
	struct endpoint *ep;
	struct pending *head, *tail;
	size_t n_pending;
	uint64_t peer_gen;   /* target gen of the link being read */
	char runner_id[128]; /* of that target (runner endpoint) */
};

const char *endpoint_state_name(int state)
{
	static const char *const names[] = {"idle", "connecting", "open",
					    "backoff", "stopped"};

	return state >= 0 && state <= EPS_STOPPED ? names[state] : "?";
}

bool endpoint_is_open(struct endpoint *ep)
{
	return atomic_load(&ep->state) == EPS_OPEN;
}

static void set_state(struct endpoint *ep, enum endpoint_state s)
{
	if (atomic_exchange(&ep->state, (int)s) != (int)s)
		atomic_store(&ep->since_wall_ns, clock_wall_ns());
}

static void set_error(struct endpoint *ep, const char *text)
{
	pthread_mutex_lock(&ep->err_lock);
	snprintf(ep->last_error, sizeof(ep->last_error), "%s", text);
	pthread_mutex_unlock(&ep->err_lock);
}

void endpoint_target_free(struct endpoint_target *t)
{
	if (!t)
		return;
	free(t->url);
	free(t->token);
	free(t->runner_id);
	tls_ctx_free(t->tls);
	config_unref(t->config);
	free(t);
}

/* ---- reader ---------------------------------------------------------- */

static void free_sup_event(void *p)
{
	struct sup_event *ev = p;

	request_free(ev->req);
	free(ev);
}

static void pending_add(struct reader_ctx *rc, struct ring *ring, void *item,
			bool is_request)
{
	struct pending *p = xmalloc(sizeof(*p));

	p->next = NULL;
	p->ring = ring;
	p->item = item;
	p->is_request = is_request;
	if (rc->tail)
		rc->tail->next = p;
	else
		rc->head = p;
	rc->tail = p;
	rc->n_pending++;
	atomic_store(&rc->ep->pending, rc->n_pending);
}

/* Push in order what waits; stop at the first ring that is still full. */
static void pending_flush(struct reader_ctx *rc)
{
	while (rc->head && ring_push(rc->head->ring, rc->head->item)) {
		struct pending *p = rc->head;

		rc->head = p->next;
		if (!rc->head)
			rc->tail = NULL;
		rc->n_pending--;
		free(p);
	}
	atomic_store(&rc->ep->pending, rc->n_pending);
}

static void hand_over(struct reader_ctx *rc, struct ring *ring, void *item,
		      bool is_request)
{
	if (!rc->head && ring_push(ring, item))
		return;
	pending_add(rc, ring, item, is_request);
}

static void reply_from_reader(struct reader_ctx *rc, json_t *reply)
{
	struct outmsg *m = outmsg_from_json(reply, OUT_REPLY);

	json_decref(reply);
	if (m) {
		m->peer_gen = rc->peer_gen;
		hand_over(rc, rc->ep->from_reader, m, false);
	}
}

/* CP messages the supervisor handles rather than a worker. */
static bool is_control_type(const char *type)
{
	return !strcmp(type, "runner_assigned") ||
	       !strcmp(type, "runner_unassigned") ||
	       !strcmp(type, "get_status") || !strcmp(type, "response");
}

static void on_message(void *ud, const char *text, size_t len)
{
	struct reader_ctx *rc = ud;
	struct endpoint *ep = rc->ep;
	struct request *req;
	char err[256], *id = NULL;

	atomic_fetch_add(&ep->msgs_in, 1);
	if (msg_decode(text, len, ep->id, &req, err, sizeof(err), &id) < 0) {
		metrics_msg_in(ep->id, NULL);
		LOG_WARN("bad message",
			 "endpoint=%s request_id=%.200s error=\"%s\"", ep->name,
			 id ? id : "-", err);
		reply_from_reader(rc, msg_reply_error(id, err, 0, NULL, NULL));
		free(id);
		return;
	}
	metrics_msg_in(ep->id, req->type);
	req->link_gen = atomic_load(&ep->link_gen);
	req->peer_gen = rc->peer_gen;
	req->bytes = len;
	LOG_DEBUG("received", "endpoint=%s type=%s id=%s", ep->name, req->type,
		  req->id);
	if (ep->id == EP_CP && is_control_type(req->type)) {
		struct sup_event *ev = xcalloc(1, sizeof(*ev));

		ev->kind = SUP_EV_MESSAGE;
		ev->ep = ep->id;
		ev->link_gen = req->link_gen;
		ev->req = req;
		hand_over(rc, ep->to_super, ev, false);
		return;
	}
	if (ep->id == EP_RUNNER && !strcmp(req->type, "response")) {
		request_free(req); /* acknowledgements need no answer */
		return;
	}
	if (streamer_handles(req)) {
		/* Streams and proxy_cancel: not deduplicated, not in_flight
		 * (a stream may stay open for hours). */
		hand_over(rc, ep->to_streamer, req, true);
		return;
	}
	if (worker_handles(req->type)) {
		char *stored = NULL;
		size_t stored_len = 0;
		int w;

		switch (dedup_check(ep->dedup, req->id, &stored, &stored_len)) {
		case DEDUP_NEW:
			w = worker_pick(ep->agent, ep->id, req);
			atomic_fetch_add(&ep->in_flight, 1);
			atomic_fetch_add(&ep->in_flight_bytes, req->bytes);
			hand_over(rc, ep->to_worker[w], req, true);
			return;
		case DEDUP_RUNNING:
			LOG_INFO("duplicate request, still running",
				 "endpoint=%s request_id=%s", ep->name,
				 req->id);
			break;
		case DEDUP_DONE: {
			struct outmsg *m = xcalloc(1, sizeof(*m));

			m->text = stored;
			m->len = stored_len;
			m->flags = OUT_REPLY;
			m->peer_gen = rc->peer_gen;
			snprintf(m->type, sizeof(m->type), "response");
			LOG_INFO("duplicate request, reply sent again",
				 "endpoint=%s request_id=%s", ep->name,
				 req->id);
			hand_over(rc, ep->from_reader, m, false);
			break;
		}
		}
		atomic_fetch_add(&ep->duplicates, 1);
		request_free(req);
		return;
	}
	snprintf(err, sizeof(err), "unsupported message type: %s", req->type);
	LOG_WARN("unsupported message", "endpoint=%s request_id=%s type=%s",
		 ep->name, req->id, req->type);
	reply_from_reader(rc, msg_reply_error(req->id, err, 0, NULL, NULL));
	request_free(req);
}

static void notify_super(struct reader_ctx *rc, enum sup_event_kind kind,
			 const char *error)
{
	struct sup_event *ev = xcalloc(1, sizeof(*ev));

	ev->kind = kind;
	ev->ep = rc->ep->id;
	ev->link_gen = atomic_load(&rc->ep->link_gen);
	snprintf(ev->runner_id, sizeof(ev->runner_id), "%s", rc->runner_id);
	ev->attempts = atomic_load(&rc->ep->attempts);
	if (error)
		snprintf(ev->error, sizeof(ev->error), "%s", error);
	hand_over(rc, rc->ep->to_super, ev, false);
}

static struct endpoint_target *target_get(struct endpoint *ep, uint64_t *gen)
{
	struct endpoint_target *t;

	pthread_mutex_lock(&ep->target_lock);
	t = ep->target;
	*gen = atomic_load(&ep->target_gen);
	if (t)
		atomic_fetch_add(&t->refs, 1);
	pthread_mutex_unlock(&ep->target_lock);
	return t;
}

static void target_put(struct endpoint_target *t)
{
	if (t && atomic_fetch_sub(&t->refs, 1) == 1)
		endpoint_target_free(t);
}

/* Sleep up to @ms, waking early for stop or a new target. */
static void reader_wait(struct endpoint *ep, int64_t ms, uint64_t gen)
{
	int64_t until = clock_mono_ms() + ms;

	while (!atomic_load(&ep->stop) && atomic_load(&ep->target_gen) == gen) {
		int64_t left = until - clock_mono_ms();
		struct pollfd p = {.fd = ep->reader_wake, .events = POLLIN};

		if (left <= 0)
			return;
		if (poll(&p, 1, (int)(left > 1000 ? 1000 : left)) > 0)
			wakefd_drain(ep->reader_wake);
	}
}

/*
 * Serve one open connection until it ends. Returns why it ended, as text
 * for the log (static or in @why).
 */
/* The writer's outbox is at its limit, or the requests read and not yet
 * answered hold as many bytes as it may (so a peer cannot make us keep
 * ring-depth x max_message_bytes): read no more requests. */
static bool outbox_full(struct endpoint *ep, const struct endpoint_target *t)
{
	size_t max_n =
	    t->cfg.outbox_max_messages ? t->cfg.outbox_max_messages : 10000;
	size_t max_b =
	    t->cfg.outbox_max_bytes ? t->cfg.outbox_max_bytes : 64u << 20;

	return atomic_load(&ep->outbox_len) >= max_n ||
	       atomic_load(&ep->outbox_bytes) >= max_b ||
	       atomic_load(&ep->in_flight_bytes) >= max_b;
}

bool endpoint_idle(struct endpoint *ep)
{
	bool idle = true;

	/* Under conn_lock the writer is never between popping a reply
	 * from a ring and queuing it on the connection (it publishes
	 * outbox_len inside that section), so a reply is always seen. */
	pthread_mutex_lock(&ep->conn_lock);
	if (atomic_load(&ep->pending) || atomic_load(&ep->in_flight) ||
	    atomic_load(&ep->outbox_len) || ring_depth(ep->from_super) ||
	    ring_depth(ep->from_reader) || ring_depth(ep->from_streamer))
		idle = false;
	for (int i = 0; idle && i < ep->agent->n_workers; i++)
		if (ring_depth(ep->from_worker[i]))
			idle = false;
	pthread_mutex_unlock(&ep->conn_lock);
	return idle;
}

void endpoint_request_done(struct endpoint *ep, size_t bytes)
{
	atomic_fetch_sub(&ep->in_flight, 1);
	atomic_fetch_sub(&ep->in_flight_bytes, bytes);
	wakefd_signal(ep->reader_wake);
}

/*
 * The endpoint was given a new target while this link is up: stop reading,
 * let the replies owed to this peer reach it (bounded by @ms), then close.
 */
static void drain_before_switch(struct reader_ctx *rc, struct ws_conn *conn,
				int64_t ms)
{
	struct endpoint *ep = rc->ep;
	int64_t until = clock_mono_ms() + ms;

	while (clock_mono_ms() < until && !atomic_load(&ep->stop) &&
	       (rc->head || !endpoint_idle(ep))) {
		struct pollfd p = {.fd = ep->reader_wake, .events = POLLIN};

		pending_flush(rc);
		wakefd_signal(ep->writer_wake);
		if (poll(&p, 1, 20) > 0)
			wakefd_drain(ep->reader_wake);
	}
	if (!endpoint_idle(ep))
		LOG_WARN("switching endpoint with replies still queued",
			 "endpoint=%s in_flight=%d outbox=%zu", ep->name,
			 atomic_load(&ep->in_flight),
			 atomic_load(&ep->outbox_len));
	ws_conn_close(conn, 1000, "endpoint changed");
	wakefd_signal(ep->writer_wake);
}

/*
 * Serve one open connection until it ends. Returns why it ended, as text
 * for the log (static or in @why).
 */
static const char *run_link(struct reader_ctx *rc, struct ws_conn *conn,
			    const struct endpoint_target *t, uint64_t gen,
			    char *why, size_t whylen)
{
	struct endpoint *ep = rc->ep;
	int64_t now = clock_mono_ms();
	int64_t next_ping = now + atomic_load(&ep->ping_interval_ms);
	int64_t paused_ms = 0;	/* last time reading was held back */
	size_t last_queued = 0; /* unsent bytes at the previous turn */

	for (;;) {
		struct pollfd p[2];
		int64_t deadline, timeout, heard;
		int64_t interval = atomic_load(&ep->ping_interval_ms);
		int64_t dead_after = atomic_load(&ep->ping_timeout_ms);
		/* The peer is not taking what we send (pongs to its pings
		 * included): read no more from it. */
		size_t queued = ws_conn_queued_bytes(conn);
		bool tx_full = queued > TX_QUEUE_LIMIT;
		bool tx_moving = queued < last_queued;
		bool ob_full = outbox_full(ep, t) || tx_full;
		bool want_read =
		    !rc->head && !atomic_load(&ep->stop_reading) && !ob_full;
		int rc_read = 0;

		now = clock_mono_ms();
		/* While busy workers (full ring) or a graceful stop hold
		 * reading back, the peer's frames wait in our socket: that
		 * time is not silence, and must not kill a link we throttle.
		 * A full outbox is different (the peer is not taking our
		 * replies, or the link is gone): the deadline applies. */
		if ((!want_read && !ob_full) || (tx_full && tx_moving))
			paused_ms = now; /* a slow peer still taking data */
		last_queued = queued;
		heard = ws_conn_last_rx_ms(conn);
		if (heard < paused_ms)
			heard = paused_ms;
		deadline = heard + dead_after;
		if (now >= deadline) {
			if (tx_full)
				snprintf(why, whylen,
					 "peer stopped reading: over %u bytes "
					 "unsent for %lldms",
					 TX_QUEUE_LIMIT, (long long)dead_after);
			else
				snprintf(why, whylen,
					 "no frame received for %lldms",
					 (long long)dead_after);
			return why;
		}
		if (next_ping > now + interval)
			next_ping = now + interval; /* interval shortened */
		if (now >= next_ping) {
			ws_conn_ping(conn);
			wakefd_signal(ep->writer_wake);
			next_ping = now + interval;
		}
		timeout = (next_ping < deadline ? next_ping : deadline) - now;
		if ((rc->head || !want_read) && timeout > 5)
			timeout = 5; /* re-check the full ring or outbox soon */
		p[0].fd = ws_conn_fd(conn);
		p[0].events = want_read ? POLLIN : 0;
		p[1].fd = ep->reader_wake;
		p[1].events = POLLIN;
		if (poll(p, 2, (int)timeout) < 0 && errno != EINTR) {
			snprintf(why, whylen, "poll: %d", errno);
			return why;
		}
		if (p[1].revents & POLLIN)
			wakefd_drain(ep->reader_wake);
		if (atomic_load(&ep->stop))
			return "agent stopping";
		if (!want_read && (p[0].revents & (POLLERR | POLLHUP))) {
			/* reset while we were not reading */
			snprintf(why, whylen, "connection lost");
			return why;
		}
		if (atomic_load(&ep->target_gen) != gen) {
			drain_before_switch(rc, conn, 10000);
			return "endpoint changed";
		}
		pending_flush(rc);
		if (want_read && (p[0].revents & (POLLIN | POLLERR | POLLHUP)))
			rc_read = ws_conn_on_readable(conn, on_message, rc);
		if (ws_conn_want_write(conn))
			wakefd_signal(ep->writer_wake);
		atomic_store(&ep->rtt_ms, ws_conn_rtt_ms(conn));
		if (rc_read < 0) {
			char reason[128];
			uint16_t code =
			    ws_conn_close_info(conn, reason, sizeof(reason));

			if (code)
				snprintf(why, whylen,
					 "closed by peer: code %u %s", code,
					 reason);
			else if (rc_read == -EMSGSIZE)
				snprintf(
				    why, whylen,
				    "message larger than max_message_bytes");
			else if (rc_read == -EPROTO)
				snprintf(why, whylen, "protocol error");
			else
				snprintf(why, whylen, "connection lost");
			return why;
		}
	}
}

/* Same runner (or both the CP): ids seen from it stay meaningful. */
static bool same_peer(const char *a, const char *b)
{
	return !strcmp(a ? a : "", b ? b : "");
}

static void *reader_main(void *arg)
{
	struct endpoint *ep = arg;
	struct reader_ctx rc = {.ep = ep};
	struct backoff bo;
	char last_logged[200] = "";
	uint64_t bo_gen = UINT64_MAX; /* the target bo was set up for */

	log_set_thread_name(ep->id == EP_CP ? "cp-reader" : "runner-reader");
	backoff_init(&bo, 1000, 60000);
	while (!atomic_load(&ep->stop)) {
		uint64_t gen;
		struct endpoint_target *t;

		/* Wake-ups sent before this snapshot are answered by it. */
		wakefd_drain(ep->reader_wake);
		wakefd_drain(ep->connect_cancel);
		t = target_get(ep, &gen);
		struct ws_options opt;
		struct ws_connect_error cerr;
		struct ws_conn *conn;
		char why[256];
		const char *reason;

		pending_flush(&rc);
		if (!t) {
			set_state(ep, EPS_IDLE);
			reader_wait(ep, 1000, gen);
			continue;
		}
		/* A new target starts a new backoff; failed attempts at the
		 * same one must make it grow. */
		if (gen != bo_gen) {
			backoff_init(&bo, t->cfg.reconnect_initial_ms,
				     t->cfg.reconnect_max_ms);
			/* A different peer: its request ids are its own. */
			if (bo_gen && !same_peer(rc.runner_id, t->runner_id))
				dedup_clear(ep->dedup);
			bo_gen = gen;
			rc.peer_gen = t->peer_gen;
			snprintf(rc.runner_id, sizeof(rc.runner_id), "%s",
				 t->runner_id ? t->runner_id : "");
			last_logged[0] = '\0';
		}
		set_state(ep, EPS_CONNECTING);
		memset(&opt, 0, sizeof(opt));
		opt.url = t->url;
		opt.default_path = ep->default_path;
		opt.token = t->token;
		opt.user_agent = USER_AGENT;
		opt.tls = t->tls;
		opt.proxy = t->cfg.proxy;
		opt.connect_timeout_ms = t->cfg.connect_timeout_ms;
		opt.max_message_bytes = t->cfg.max_message_bytes;
		memset(&cerr, 0, sizeof(cerr));
		cerr.retry_after_ms = -1;
		/* Not reader_wake: every finished request signals that, and
		 * must not abort a handshake (only a new target or stop do). */
		conn = ws_connect(&opt, ep->connect_cancel, &cerr);
		if (!conn) {
			uint32_t r32;
			int64_t delay;

			/* A cancel with the same target is the late signal of
			 * the set_target this attempt already serves: retry
			 * (at most once per set_target, so no spin). */
			if (atomic_load(&ep->stop) ||
			    atomic_load(&ep->target_gen) != gen ||
			    cerr.errnum == -ECANCELED) {
				target_put(t);
				continue;
			}
			atomic_fetch_add(&ep->attempts, 1);
			set_error(ep, cerr.text);
			rand_bytes(&r32, sizeof(r32));
			delay = backoff_at_least(backoff_next(&bo, r32),
						 cerr.retry_after_ms);
			/* Log state changes, not every attempt. */
			if (strcmp(last_logged, cerr.text)) {
				LOG_WARN(cerr.token_refused ? "token refused"
							    : "connect failed",
					 "endpoint=%s url=%s error=\"%s\" "
					 "retry_in_ms=%lld",
					 ep->name, t->url, cerr.text,
					 (long long)delay);
				snprintf(last_logged, sizeof(last_logged), "%s",
					 cerr.text);
				notify_super(&rc, SUP_EV_FAIL, cerr.text);
				wakefd_signal(ep->agent->super_wake);
			}
			set_state(ep, EPS_BACKOFF);
			reader_wait(ep, delay, gen);
			target_put(t);
			continue;
		}
		last_logged[0] = '\0';
		pthread_mutex_lock(&ep->conn_lock);
		ep->conn = conn;
		ep->conn_peer_gen = t->peer_gen;
		pthread_mutex_unlock(&ep->conn_lock);
		atomic_fetch_add(&ep->link_gen, 1);
		metrics_connected(ep->id);
		atomic_store(&ep->attempts, 0);
		set_error(ep, "");
		atomic_store(&ep->rtt_ms, -1);
		set_state(ep, EPS_OPEN);
		backoff_up(&bo, clock_mono_ms());
		LOG_INFO("connected", "endpoint=%s url=%s", ep->name, t->url);
		notify_super(&rc, SUP_EV_UP, NULL);
		wakefd_signal(ep->writer_wake);
		wakefd_signal(ep->agent->super_wake);

		reason = run_link(&rc, conn, t, gen, why, sizeof(why));

		set_state(ep, atomic_load(&ep->stop) ? EPS_STOPPED
						     : EPS_CONNECTING);
		if (atomic_load(&ep->stop))
			ws_conn_close(conn, 1001, "agent stopping");
		/* Give the writer a moment to send a queued close frame. */
		wakefd_signal(ep->writer_wake);
		for (int i = 0; i < 20 && ws_conn_want_write(conn); i++)
			usleep(10000);
		pthread_mutex_lock(&ep->conn_lock);
		ep->conn = NULL;
		pthread_mutex_unlock(&ep->conn_lock);
		ws_conn_free(conn);
		backoff_down(&bo, clock_mono_ms());
		set_error(ep, reason);
		if (atomic_load(&ep->stop))
			LOG_INFO("disconnected", "endpoint=%s reason=\"%s\"",
				 ep->name, reason);
		else
			LOG_WARN("disconnected", "endpoint=%s reason=\"%s\"",
				 ep->name, reason);
		notify_super(&rc, SUP_EV_DOWN, reason);
		wakefd_signal(ep->agent->super_wake);
		/* A peer that drops every agent at once (a restart) must not
		 * get them all back in the same instant: wait a jittered
		 * backoff delay first (it grows if the link keeps flapping).
		 * A new target or a stop skips the wait. */
		if (!atomic_load(&ep->stop) &&
		    atomic_load(&ep->target_gen) == gen) {
			uint32_t r32;

			rand_bytes(&r32, sizeof(r32));
			set_state(ep, EPS_BACKOFF);
			reader_wait(ep, backoff_next(&bo, r32), gen);
		}
		target_put(t);
	}
	/* Requests still waiting are answered by nobody: drop them. */
	while (rc.head) {
		struct pending *p = rc.head;

		rc.head = p->next;
		if (p->is_request)
			request_free(p->item);
		else if (p->ring == ep->to_super)
			free_sup_event(p->item);
		else
			outmsg_free(p->item);
		free(p);
	}
	set_state(ep, EPS_STOPPED);
	return NULL;
}

/* ---- writer ---------------------------------------------------------- */

struct outbox {
	struct outmsg *head, *tail;
	size_t n, bytes;
};

static void outbox_push(struct outbox *ob, struct outmsg *m)
{
	m->next = NULL;
	if (ob->tail)
		ob->tail->next = m;
	else
		ob->head = m;
	ob->tail = m;
	ob->n++;
	ob->bytes += m->len;
}

static struct outmsg *outbox_pop(struct outbox *ob)
{
	struct outmsg *m = ob->head;

	if (!m)
		return NULL;
	ob->head = m->next;
	if (!ob->head)
		ob->tail = NULL;
	ob->n--;
	ob->bytes -= m->len;
	return m;
}

/* Drop what must not wait for a link (heartbeats, status). */
static void outbox_drop_volatile(struct outbox *ob)
{
	struct outbox keep = {0};
	struct outmsg *m;

	while ((m = outbox_pop(ob)) != NULL) {
		if (m->flags & OUT_DROP_WHEN_DOWN)
			outmsg_free(m);
		else
			outbox_push(&keep, m);
	}
	*ob = keep;
}

static void writer_limits(struct endpoint *ep, size_t *max_n, size_t *max_b)
{
	pthread_mutex_lock(&ep->target_lock);
	if (ep->target && ep->target->cfg.outbox_max_messages) {
		*max_n = ep->target->cfg.outbox_max_messages;
		*max_b = ep->target->cfg.outbox_max_bytes;
	} else {
		*max_n = 10000;
		*max_b = 64u << 20;
	}
	pthread_mutex_unlock(&ep->target_lock);
}

/* Move ring items into the outbox while it has room. */
static void writer_drain(struct endpoint *ep, struct outbox *ob, bool open)
{
	size_t max_n, max_b;
	int n_rings = ep->agent->n_workers + 3;

	writer_limits(ep, &max_n, &max_b);
	for (int i = 0; i < n_rings; i++) {
		struct ring *r = i == 0	  ? ep->from_super
				 : i == 1 ? ep->from_reader
				 : i == 2 ? ep->from_streamer
					  : ep->from_worker[i - 3];
		struct outmsg *m;

		while (ob->n < max_n && ob->bytes < max_b &&
		       (m = ring_pop(r)) != NULL) {
			if (!open && (m->flags & OUT_DROP_WHEN_DOWN))
				outmsg_free(m);
			else
				outbox_push(ob, m);
		}
	}
}

static void *writer_main(void *arg)
{
	struct endpoint *ep = arg;
	struct outbox ob = {0};
	bool flush_pending = false, was_open = false;
	struct ws_conn *last = NULL;
	int64_t stop_deadline = 0;
	struct log_limit stale = {0};

	log_set_thread_name(ep->id == EP_CP ? "cp-writer" : "runner-writer");
	for (;;) {
		struct pollfd p[2];
		int nfds = 1, fd = -1;
		struct ws_conn *c;
		bool open;
		size_t sent_before = atomic_load(&ep->msgs_out);
		size_t queued_before = ob.n;

		pthread_mutex_lock(&ep->conn_lock);
		c = ep->conn;
		open = c && atomic_load(&ep->state) == EPS_OPEN;
		if (c != last) {
			flush_pending = false;
			last = c;
		}
		if (was_open && !open)
			outbox_drop_volatile(&ob);
		was_open = open;
		writer_drain(ep, &ob, open);
		if (c) {
			int rc = 0;

			if (flush_pending || ws_conn_want_write(c))
				rc = ws_conn_flush(c);
			flush_pending = rc == 1;
			while (open && rc == 0 && ob.head) {
				struct outmsg *m = ob.head;

				/* A reply owed to a previous peer (the runner
				 * was replaced) never goes to this one. */
				if (m->peer_gen &&
				    m->peer_gen != ep->conn_peer_gen) {
					unsigned held;

					if (log_limit_pass(&stale, "stale",
							   10000, &held))
						LOG_WARN(
						    "replies for a previous "
						    "peer dropped",
						    "endpoint=%s count=%u",
						    ep->name, held + 1);
					outmsg_free(outbox_pop(&ob));
					continue;
				}
				if (ws_conn_send_text(c, m->text, m->len) < 0)
					break;
				LOG_DEBUG("sent",
					  "endpoint=%s type=%s bytes=%zu",
					  ep->name, m->type, m->len);
				metrics_msg_out(ep->id, m->type);
				outmsg_free(outbox_pop(&ob));
				atomic_fetch_add(&ep->msgs_out, 1);
				rc = ws_conn_flush(c);
				flush_pending = rc == 1;
			}
			fd = ws_conn_fd(c);
		}
		atomic_store(&ep->outbox_len, ob.n); /* see endpoint_idle */
		atomic_store(&ep->outbox_bytes, ob.bytes);
		pthread_mutex_unlock(&ep->conn_lock);

		if (atomic_load(&ep->stop)) {
			if (!stop_deadline)
				stop_deadline = clock_mono_ms() + 2000;
			if (!flush_pending || clock_mono_ms() > stop_deadline)
				break;
		}
		p[0].fd = ep->writer_wake;
		p[0].events = POLLIN;
		if (flush_pending && fd >= 0) {
			p[1].fd = fd;
			p[1].events = POLLOUT;
			nfds = 2;
		}
		/* Something moved and there is room to go on: another pass
		 * at once (rings may hold more than one outbox-full). */
		bool moved = atomic_load(&ep->msgs_out) != sent_before ||
			     ob.n != queued_before;
		int wait_ms = stop_deadline ? 10 : 1000;

		if (moved && !flush_pending && (open || !ob.n))
			wait_ms = 0;
		if (poll(p, (nfds_t)nfds, wait_ms) > 0 &&
		    (p[0].revents & POLLIN))
			wakefd_drain(ep->writer_wake);
	}
	if (ob.n)
		LOG_WARN("stopping with replies not delivered",
			 "endpoint=%s messages=%zu bytes=%zu", ep->name, ob.n,
			 ob.bytes);
	while (ob.head)
		outmsg_free(outbox_pop(&ob));
	return NULL;
}

/* ---- lifecycle ------------------------------------------------------- */

int endpoint_init(struct endpoint *ep, struct agent *a, enum endpoint_id id)
{
	int n = a->n_workers;

	memset(ep, 0, sizeof(*ep));
	ep->agent = a;
	ep->id = id;
	ep->name = id == EP_CP ? "control_plane" : "runner";
	ep->default_path =
	    id == EP_CP ? "/api/v1/agent/ws" : "/api/v1/runner/ws";
	pthread_mutex_init(&ep->target_lock, NULL);
	pthread_mutex_init(&ep->conn_lock, NULL);
	pthread_mutex_init(&ep->err_lock, NULL);
	atomic_init(&ep->state, EPS_IDLE);
	atomic_init(&ep->rtt_ms, -1);
	atomic_init(&ep->ping_interval_ms, 20000);
	atomic_init(&ep->ping_timeout_ms, 40000);
	atomic_init(&ep->since_wall_ns, clock_wall_ns());
	ep->reader_wake = wakefd_new();
	ep->writer_wake = wakefd_new();
	ep->connect_cancel = wakefd_new();
	if (ep->reader_wake < 0 || ep->writer_wake < 0 ||
	    ep->connect_cancel < 0)
		return -errno;
	ep->to_worker = xcalloc((size_t)n, sizeof(*ep->to_worker));
	ep->from_worker = xcalloc((size_t)n, sizeof(*ep->from_worker));
	for (int i = 0; i < n; i++) {
		ep->to_worker[i] = ring_new(RING_SIZE, a->workers[i].wake);
		ep->from_worker[i] = ring_new(RING_SIZE, ep->writer_wake);
	}
	ep->from_super = ring_new(RING_SIZE, ep->writer_wake);
	ep->from_reader = ring_new(RING_SIZE, ep->writer_wake);
	ep->to_super = ring_new(RING_SIZE, a->super_wake);
	ep->to_streamer = ring_new(RING_SIZE, a->streamer_wake);
	ep->from_streamer = ring_new(RING_SIZE, ep->writer_wake);
	ep->dedup = dedup_new(a->config->runner.dedup_window
				  ? a->config->runner.dedup_window
				  : 4096,
			      DEDUP_MAX_BYTES);
	return 0;
}

int endpoint_start(struct endpoint *ep)
{
	int rc;

	if (ep->threads_started)
		return 0;
	rc = pthread_create(&ep->writer, NULL, writer_main, ep);
	if (rc)
		return -rc;
	rc = pthread_create(&ep->reader, NULL, reader_main, ep);
	if (rc) {
		atomic_store(&ep->stop, true);
		wakefd_signal(ep->writer_wake);
		pthread_join(ep->writer, NULL);
		return -rc;
	}
	ep->threads_started = true;
	return 0;
}

void endpoint_set_target(struct endpoint *ep, struct endpoint_target *t)
{
	struct endpoint_target *old;

	if (t) {
		atomic_init(&t->refs, 1);
		endpoint_set_timing(ep, &t->cfg);
	}
	pthread_mutex_lock(&ep->target_lock);
	old = ep->target;
	/* Replies are owed to a peer, not to a connection: a new target for
	 * the same runner (new token or endpoint) keeps them deliverable. */
	if (t)
		t->peer_gen = old && same_peer(old->runner_id, t->runner_id)
				  ? old->peer_gen
				  : ++ep->peer_count;
	ep->target = t;
	atomic_fetch_add(&ep->target_gen, 1);
	pthread_mutex_unlock(&ep->target_lock);
	/* Attempts and the last error describe the current target only. */
	atomic_store(&ep->attempts, 0);
	set_error(ep, "");
	target_put(old);
	/* connect_cancel first: a reader woken by reader_wake then drains
	 * it before its next attempt, instead of cancelling that one. */
	wakefd_signal(ep->connect_cancel);
	wakefd_signal(ep->reader_wake);
}

void endpoint_set_timing(struct endpoint *ep, const struct config_endpoint *cfg)
{
	atomic_store(&ep->ping_interval_ms, cfg->ping_interval_ms);
	atomic_store(&ep->ping_timeout_ms, cfg->ping_timeout_ms);
	wakefd_signal(ep->reader_wake);
}

bool endpoint_send_from_super(struct endpoint *ep, struct outmsg *m)
{
	if (!m)
		return false;
	if (!ring_push(ep->from_super, m)) {
		LOG_WARN("writer queue full, message dropped",
			 "endpoint=%s type=%s", ep->name, m->type);
		outmsg_free(m);
		return false;
	}
	return true;
}

void endpoint_stop_reading(struct endpoint *ep)
{
	atomic_store(&ep->stop_reading, true);
	wakefd_signal(ep->reader_wake);
}

void endpoint_stop(struct endpoint *ep, int64_t flush_ms)
{
	int64_t until = clock_mono_ms() + flush_ms;

	if (!ep->threads_started)
		return;
	/* Let the writer send what is queued while the link is up. */
	while (clock_mono_ms() < until && endpoint_is_open(ep) &&
	       !endpoint_idle(ep)) {
		wakefd_signal(ep->writer_wake);
		usleep(10000);
	}
	atomic_store(&ep->stop, true);
	wakefd_signal(ep->connect_cancel);
	wakefd_signal(ep->reader_wake);
	pthread_join(ep->reader, NULL);
	wakefd_signal(ep->writer_wake);
	pthread_join(ep->writer, NULL);
	ep->threads_started = false;
}

static void ring_free_items(struct ring *r, void (*fn)(void *))
{
	void *item;

	if (!r)
		return;
	while ((item = ring_pop(r)) != NULL)
		fn(item);
	ring_free(r);
}

static void free_request(void *p)
{
	request_free(p);
}
static void free_outmsg(void *p)
{
	outmsg_free(p);
}

void endpoint_destroy(struct endpoint *ep)
{
	for (int i = 0; i < ep->agent->n_workers; i++) {
		ring_free_items(ep->to_worker[i], free_request);
		ring_free_items(ep->from_worker[i], free_outmsg);
	}
	free(ep->to_worker);
	free(ep->from_worker);
	ring_free_items(ep->from_super, free_outmsg);
	ring_free_items(ep->from_reader, free_outmsg);
	ring_free_items(ep->to_super, free_sup_event);
	ring_free_items(ep->to_streamer, free_request);
	ring_free_items(ep->from_streamer, free_outmsg);
	endpoint_target_free(ep->target);
	dedup_free(ep->dedup);
	close(ep->reader_wake);
	close(ep->writer_wake);
	close(ep->connect_cancel);
	pthread_mutex_destroy(&ep->target_lock);
	pthread_mutex_destroy(&ep->conn_lock);
	pthread_mutex_destroy(&ep->err_lock);
}
