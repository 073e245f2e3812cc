/*
 * streamer: watches, follow logs and raw proxy streams (PROTOCOL.md 4.7)
 * on one thread and one curl multi handle.
 *
 * DESIGN
 * Threads: one streamer thread owns the CURLM, every stream's easy handle
 *   (k8s/stream.h) and every struct stream; no other thread touches them.
 *   It waits in curl_multi_poll() with one extra fd, a->streamer_wake (an
 *   eventfd), and is woken by it or by curl's own sockets and timers.
 * Rings (SPSC, created with the endpoints, never replaced):
 *   ep.to_streamer    reader(ep) -> streamer   stream requests, proxy_cancel
 *   ep.from_streamer  streamer   -> writer(ep) proxy_response chunks/done,
 *                                              proxy_cancel replies
 *   The streamer reads its eventfd (curl_multi_poll reports it), then
 *   drains both to_streamer rings: no wake-up is lost.
 * Ownership: a request popped from to_streamer is the streamer's; a stream
 *   keeps nothing of it but copies (id). An outmsg belongs to the streamer
 *   until a push into from_streamer succeeds; if the ring is full it waits
 *   in the streamer's per-endpoint overflow list (bounded: see below).
 * Output: body bytes of a 2xx answer become proxy_response chunks {stream,
 *   stream_id, chunk, body (base64)}. Watches (K8S_STREAM_LINES) go through
 *   a line assembler, so every chunk ends on '\n'; a line longer than
 *   line_max (3/4 of the endpoint's max_message_bytes, less headroom for
 *   base64 and the envelope) ends the stream with an error. Follow logs
 *   are cut at '\n' when they can be, raw streams pass bytes as they come.
 *   An error answer (non-2xx) is collected (64 KiB at most) and reported
 *   in the done message. Every stream ends with exactly one done message.
 * Pause/unpause (backpressure, never unbounded buffering): the write
 *   callback returns CURL_WRITEFUNC_PAUSE, before taking any bytes, while
 *   the endpoint is congested: its overflow list is not empty or its
 *   writer's outbox holds more than STREAM_OUTBOX_HIGH bytes
 *   (ep.outbox_bytes, an atomic the writer publishes). While any stream is
 *   paused the loop polls every PAUSED_POLL_MS and resumes those whose
 *   endpoint has room, with curl_easy_pause(CONT) from this thread (as
 *   libcurl requires). A paused transfer stops reading its socket, so TCP
 *   pushes back on the API server. Memory per endpoint is then bounded by
 *   STREAM_OUTBOX_HIGH + one chunk per stream.
 * Ends: the API closes the stream (done, no error), a transport failure
 *   (done with error, status_code 502/504), proxy_cancel (done, cancelled:
 *   true; the cancel itself gets a response), the link the request came on
 *   drops (checked every LINK_POLL_MS while streams are open: the
 *   endpoint's link_gen moved on or it is not open; done with error, kept
 *   in the outbox like any reply), or shutdown.
 * Limits: [runner] max_streams (read at start) over all endpoints; more is
 *   refused with "too many open streams (max N)". No total timeout on a
 *   stream; dead connections are found by TCP keepalive and, for watches
 *   with bookmarks, a low-speed limit (k8s/stream.c).
 * Shutdown: streamer_stop() sets stop and signals the eventfd; the thread
 *   ends every stream and answers queued requests with "agent stopping",
 *   pushes the done messages (for at most STOP_FLUSH_MS; the writers are
 *   still running) and exits; the caller joins, then frees the multi.
 */
#include "agent/streamer.h"

#include <errno.h>
#include <mbedtls/base64.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>

#include "agent/agent.h"
#include "common/log.h"
#include "common/ring.h"
#include "common/util.h"
#include "k8s/stream.h"

/* Pause streams of an endpoint whose writer holds more than this. */
#define STREAM_OUTBOX_HIGH ((size_t)2 << 20)
/* Error answers (non-2xx) are kept up to this for the done message. */
#define ERROR_BODY_MAX 65536
/* A line buffer larger than this is freed once empty. */
#define BUF_KEEP       65536
#define PAUSED_POLL_MS 10
#define LINK_POLL_MS   200
#define IDLE_POLL_MS   1000
#define STOP_FLUSH_MS  2000

struct stream {
	struct stream *next, *prev; /* streamer's list */
	struct streamer *sm;
	struct endpoint *ep;
	uint64_t link_gen; /* the link the request came on */
	char *id;	   /* request id = stream_id */
	struct k8s_stream *ks;
	CURL *curl; /* owned by ks */
	enum k8s_stream_kind kind;
	long status; /* HTTP status once the body starts */
	char *buf;   /* line assembler, or the error answer */
	size_t len, cap;
	size_t line_max;
	bool paused;
	char fail[200]; /* set when the write callback aborts */
	uint64_t chunks, bytes;
	int64_t started_ms;
};

struct out_list {
	struct outmsg *head, *tail;
};

struct streamer {
	struct agent *a;
	CURLM *multi;
	pthread_t thread;
	atomic_bool stop;
	atomic_size_t *open; /* &agent.open_streams (heartbeats) */
	size_t max_streams;
	struct stream *head;	       /* streamer thread only */
	struct out_list out[EP_COUNT]; /* streamer thread only */
};

bool streamer_handles(const struct request *req)
{
	if (!strcmp(req->type, "proxy_cancel"))
		return true;
	return k8s_stream_kind_of(req->type, req->data) != K8S_STREAM_NONE;
}

size_t streamer_open_streams(struct agent *a)
{
	return atomic_load(&a->open_streams);
}

/* ---- output ---------------------------------------------------------- */

static char *base64(const char *p, size_t n)
{
	size_t cap = 4 * ((n + 2) / 3) + 1, olen = 0;
	char *out = xmalloc(cap);

	if (mbedtls_base64_encode((unsigned char *)out, cap, &olen,
				  (const unsigned char *)p, n) != 0)
		olen = 0;
	out[olen] = '\0';
	return out;
}

/* Hand @m to the writer of endpoint @e, keeping the order. */
static void out_push(struct streamer *sm, int e, struct outmsg *m)
{
	struct out_list *l = &sm->out[e];

	if (!m)
		return;
	if (!l->head && ring_push(sm->a->ep[e].from_streamer, m))
		return;
	m->next = NULL;
	if (l->tail)
		l->tail->next = m;
	else
		l->head = m;
	l->tail = m;
}

static void out_flush(struct streamer *sm)
{
	for (int e = 0; e < EP_COUNT; e++) {
		struct out_list *l = &sm->out[e];

		while (l->head &&
		       ring_push(sm->a->ep[e].from_streamer, l->head)) {
			l->head = l->head->next;
			if (!l->head)
				l->tail = NULL;
		}
	}
}

static bool out_empty(struct streamer *sm)
{
	for (int e = 0; e < EP_COUNT; e++)
		if (sm->out[e].head)
			return false;
	return true;
}

static bool congested(struct streamer *sm, struct endpoint *ep)
{
	return sm->out[ep->id].head ||
	       atomic_load(&ep->outbox_bytes) > STREAM_OUTBOX_HIGH;
}

/* Send @msg (stolen) to @ep as a reply. */
static void send_msg(struct streamer *sm, struct endpoint *ep, json_t *msg)
{
	struct outmsg *m = outmsg_from_json(msg, OUT_REPLY);

	json_decref(msg);
	out_push(sm, ep->id, m);
}

/* data {request_id, stream: true, stream_id} for a stream message. */
static json_t *stream_data(const char *id)
{
	json_t *d = json_object();

	json_object_set_new(d, "request_id", json_string(id));
	json_object_set_new(d, "stream", json_true());
	json_object_set_new(d, "stream_id", json_string(id));
	return d;
}

static void emit_chunk(struct stream *st, const char *p, size_t n)
{
	json_t *d = stream_data(st->id);
	char *b64 = base64(p, n);

	json_object_set_new(d, "chunk", json_true());
	json_object_set_new(d, "body", json_string(b64));
	free(b64);
	send_msg(st->sm, st->ep, msg_envelope("proxy_response", st->id, d));
	st->chunks++;
	st->bytes += n;
}

/*
 * The final message of stream @id on @ep: done, status_code when known,
 * error when @error, the error answer's body when @body.
 */
static void emit_done(struct streamer *sm, struct endpoint *ep, const char *id,
		      long status, const char *error, const char *body,
		      size_t body_len, bool cancelled)
{
	json_t *d = stream_data(id), *msg;

	json_object_set_new(d, "done", json_true());
	if (status)
		json_object_set_new(d, "status_code", json_integer(status));
	if (cancelled)
		json_object_set_new(d, "cancelled", json_true());
	if (body && body_len) {
		char *b64 = base64(body, body_len);

		json_object_set_new(d, "body", json_string(b64));
		free(b64);
	}
	if (error)
		json_object_set_new(d, "error", json_string(error));
	msg = msg_envelope("proxy_response", id, d);
	if (error)
		json_object_set_new(msg, "error", json_string(error));
	send_msg(sm, ep, msg);
}

/* ---- the write callback ---------------------------------------------- */

static void buf_append(struct stream *st, const char *p, size_t n)
{
	if (st->len + n > st->cap) {
		size_t cap = st->cap ? st->cap : 4096;

		while (cap < st->len + n)
			cap *= 2;
		st->buf = xrealloc(st->buf, cap);
		st->cap = cap;
	}
	memcpy(st->buf + st->len, p, n);
	st->len += n;
}

/* Emit what ends on the last '\n' in the buffer; keep the rest. */
static void emit_lines(struct stream *st)
{
	const char *nl = memrchr(st->buf, '\n', st->len);
	size_t k;

	if (!nl)
		return;
	k = (size_t)(nl - st->buf) + 1;
	emit_chunk(st, st->buf, k);
	memmove(st->buf, st->buf + k, st->len - k);
	st->len -= k;
	if (!st->len && st->cap > BUF_KEEP) {
		/* after a large event: do not keep its buffer */
		free(st->buf);
		st->buf = NULL;
		st->cap = 0;
	}
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *ud)
{
	struct stream *st = ud;
	size_t n = size * nmemb;

	if (!st->status)
		st->status = k8s_stream_status(st->ks);
	if (st->status < 200 || st->status > 299) {
		size_t room = ERROR_BODY_MAX - st->len;

		buf_append(st, p, n < room ? n : room);
		return n;
	}
	if (congested(st->sm, st->ep)) {
		st->paused = true;
		return CURL_WRITEFUNC_PAUSE;
	}
	if (st->kind == K8S_STREAM_RAW) {
		emit_chunk(st, p, n);
		return n;
	}
	buf_append(st, p, n);
	emit_lines(st);
	if (st->len > st->line_max) {
		if (st->kind == K8S_STREAM_LINES) {
			snprintf(st->fail, sizeof(st->fail),
				 "watch event larger than %zu bytes",
				 st->line_max);
			return CURL_WRITEFUNC_ERROR;
		}
		emit_chunk(st, st->buf, st->len); /* a very long log line */
		st->len = 0;
	}
	return n;
}

/* ---- streams --------------------------------------------------------- */

static void stream_unlink_free(struct streamer *sm, struct stream *st)
{
	if (st->prev)
		st->prev->next = st->next;
	else
		sm->head = st->next;
	if (st->next)
		st->next->prev = st->prev;
	k8s_stream_free(st->ks);
	free(st->buf);
	free(st->id);
	free(st);
	atomic_fetch_sub(sm->open, 1);
}

/*
 * End @st: take its handle off the multi, send what the assembler holds
 * and the done message, free it. @error NULL: ended normally.
 */
static void stream_end(struct stream *st, long status, const char *error,
		       bool cancelled)
{
	struct streamer *sm = st->sm;
	bool ok = st->status >= 200 && st->status <= 299;

	if (!status)
		status = k8s_stream_status(st->ks);
	curl_multi_remove_handle(sm->multi, st->curl);
	/* What the assembler holds: a partial log line is passed on, a
	 * partial watch event is not (chunks end on a line boundary). */
	if (ok && st->len && !st->fail[0] && st->kind != K8S_STREAM_LINES) {
		emit_chunk(st, st->buf, st->len);
		st->len = 0;
	}
	emit_done(sm, st->ep, st->id, status, error, ok ? NULL : st->buf,
		  ok ? 0 : st->len, cancelled);
	if (error)
		LOG_WARN("stream ended",
			 "endpoint=%s stream_id=%s "
			 "chunks=%llu bytes=%llu ms=%lld "
			 "error=\"%s\"",
			 st->ep->name, st->id, (unsigned long long)st->chunks,
			 (unsigned long long)st->bytes,
			 (long long)(clock_mono_ms() - st->started_ms), error);
	else
		LOG_INFO("stream ended",
			 "endpoint=%s stream_id=%s chunks=%llu bytes=%llu "
			 "ms=%lld%s",
			 st->ep->name, st->id, (unsigned long long)st->chunks,
			 (unsigned long long)st->bytes,
			 (long long)(clock_mono_ms() - st->started_ms),
			 cancelled ? " cancelled=true" : "");
	stream_unlink_free(sm, st);
}

static struct stream *stream_find(struct streamer *sm, struct endpoint *ep,
				  const char *id)
{
	for (struct stream *st = sm->head; st; st = st->next)
		if (st->ep == ep && !strcmp(st->id, id))
			return st;
	return NULL;
}

/* Largest line of a watch for @ep: a chunk must fit one message. */
static size_t line_max_for(struct endpoint *ep)
{
	size_t max_msg = 16u << 20, lm;

	pthread_mutex_lock(&ep->target_lock);
	if (ep->target && ep->target->cfg.max_message_bytes)
		max_msg = ep->target->cfg.max_message_bytes;
	pthread_mutex_unlock(&ep->target_lock);
	/* base64 is 4/3; leave room for one read (16 KiB) and the envelope */
	lm = max_msg / 4 * 3;
	return lm > 32768 + 4096 ? lm - 32768 : 4096;
}

static void on_cancel(struct streamer *sm, struct endpoint *ep,
		      struct request *req)
{
	const char *sid =
	    json_string_value(json_object_get(req->data, "stream_id"));
	struct stream *st = sid ? stream_find(sm, ep, sid) : NULL;
	char err[200];
	json_t *d;

	if (!st) {
		snprintf(err, sizeof(err), "%s%s",
			 sid ? "no open stream: "
			     : "proxy_cancel needs "
			       "stream_id",
			 sid ? sid : "");
		send_msg(sm, ep, msg_reply_error(req->id, err, 0, NULL, NULL));
		return;
	}
	LOG_INFO("stream cancelled", "endpoint=%s stream_id=%s", ep->name, sid);
	d = json_object();
	json_object_set_new(d, "stream_id", json_string(sid));
	json_object_set_new(d, "message", json_string("stream cancelled"));
	stream_end(st, st->status, NULL, true);
	send_msg(sm, ep, msg_reply_ok(req->id, d));
}

static void on_request(struct streamer *sm, struct endpoint *ep,
		       struct request *req)
{
	struct stream *st;
	struct k8s_error err;
	char msg[160];

	if (!strcmp(req->type, "proxy_cancel")) {
		on_cancel(sm, ep, req);
		return;
	}
	if (atomic_load(&sm->stop)) {
		emit_done(sm, ep, req->id, 503, "agent stopping", NULL, 0,
			  false);
		return;
	}
	if (req->link_gen != atomic_load(&ep->link_gen)) {
		emit_done(sm, ep, req->id, 0,
			  "the connection it came on "
			  "dropped",
			  NULL, 0, false);
		return;
	}
	if (stream_find(sm, ep, req->id)) {
		/* A redelivery of a stream that is still open: like any
		 * request still running, its one final reply (the `done` of
		 * the open stream) is all it gets. */
		LOG_INFO("duplicate stream request, already open",
			 "endpoint=%s stream_id=%s", ep->name, req->id);
		return;
	}
	if (atomic_load(sm->open) >= sm->max_streams) {
		snprintf(msg, sizeof(msg), "too many open streams (max %zu)",
			 sm->max_streams);
		LOG_WARN("stream refused",
			 "endpoint=%s stream_id=%s error=\"%s\"", ep->name,
			 req->id, msg);
		emit_done(sm, ep, req->id, 429, msg, NULL, 0, false);
		return;
	}
	st = xcalloc(1, sizeof(*st));
	st->sm = sm;
	st->ep = ep;
	st->link_gen = req->link_gen;
	st->started_ms = clock_mono_ms();
	st->ks = k8s_stream_new(ep->agent->k8s, req->type, req->data, on_data,
				st, &err);
	if (!st->ks) {
		LOG_WARN("stream refused",
			 "endpoint=%s stream_id=%s code=%d "
			 "error=\"%s\"",
			 ep->name, req->id, err.code, err.message);
		emit_done(sm, ep, req->id, err.code ? err.code : 400,
			  err.message, NULL, 0, false);
		free(st);
		return;
	}
	st->id = xstrdup(req->id);
	st->curl = k8s_stream_curl(st->ks);
	st->kind = k8s_stream_kind(st->ks);
	st->line_max = line_max_for(ep);
	if (curl_multi_add_handle(sm->multi, st->curl) != CURLM_OK) {
		emit_done(sm, ep, req->id, 500, "cannot add the stream", NULL,
			  0, false);
		k8s_stream_free(st->ks);
		free(st->id);
		free(st);
		return;
	}
	st->next = sm->head;
	if (sm->head)
		sm->head->prev = st;
	sm->head = st;
	atomic_fetch_add(sm->open, 1);
	LOG_DEBUG("stream opened", "endpoint=%s stream_id=%s request=\"%s\"",
		  ep->name, st->id, k8s_stream_describe(st->ks));
}

static void take_requests(struct streamer *sm)
{
	for (int e = 0; e < EP_COUNT; e++) {
		struct endpoint *ep = &sm->a->ep[e];
		struct request *req;

		while ((req = ring_pop(ep->to_streamer)) != NULL) {
			on_request(sm, ep, req);
			request_free(req);
		}
	}
}

/* End the streams whose link dropped. */
static void check_links(struct streamer *sm)
{
	struct stream *st = sm->head, *next;

	for (; st; st = next) {
		struct endpoint *ep = st->ep;
		char why[96];

		next = st->next;
		if (atomic_load(&ep->link_gen) == st->link_gen &&
		    endpoint_is_open(ep))
			continue;
		snprintf(why, sizeof(why), "%s connection lost", ep->name);
		stream_end(st, st->status, why, false);
	}
}

static void resume(struct streamer *sm)
{
	for (struct stream *st = sm->head; st; st = st->next) {
		if (!st->paused || congested(sm, st->ep))
			continue;
		st->paused = false;
		curl_easy_pause(st->curl, CURLPAUSE_CONT);
	}
}

static bool any_paused(struct streamer *sm)
{
	for (struct stream *st = sm->head; st; st = st->next)
		if (st->paused)
			return true;
	return false;
}

/* Streams curl finished. */
static void reap(struct streamer *sm)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(sm->multi, &left)) != NULL) {
		struct stream *st;
		struct k8s_error err;
		char *priv = NULL;
		long status;
		int ret;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
		st = (struct stream *)priv;
		if (!st)
			continue;
		status = k8s_stream_status(st->ks);
		if (st->fail[0]) {
			stream_end(st, status, st->fail, false);
			continue;
		}
		ret = k8s_stream_result(st->ks, msg->data.result, st->buf,
					st->len, &err);
		if (!status)
			status = ret == -ETIMEDOUT ? 504 : ret ? 502 : 0;
		stream_end(st, status, ret ? err.message : NULL, false);
	}
}

static void end_all(struct streamer *sm, const char *why)
{
	while (sm->head)
		stream_end(sm->head, sm->head->status, why, false);
}

static void *streamer_main(void *arg)
{
	struct streamer *sm = arg;
	struct agent *a = sm->a;
	int64_t stop_deadline = 0;

	log_set_thread_name("streamer");
	for (;;) {
		struct curl_waitfd wfd = {.fd = a->streamer_wake,
					  .events = CURL_WAIT_POLLIN};
		int running = 0, timeout = IDLE_POLL_MS;

		take_requests(sm);
		if (atomic_load(&sm->stop)) {
			if (!stop_deadline)
				stop_deadline = clock_mono_ms() + STOP_FLUSH_MS;
			end_all(sm, "agent stopping");
		}
		check_links(sm);
		out_flush(sm);
		resume(sm);
		curl_multi_perform(sm->multi, &running);
		reap(sm);
		out_flush(sm);
		if (stop_deadline &&
		    (out_empty(sm) || clock_mono_ms() > stop_deadline))
			break;
		if (any_paused(sm) || !out_empty(sm) || stop_deadline)
			timeout = PAUSED_POLL_MS;
		else if (sm->head)
			timeout = LINK_POLL_MS;
		wfd.revents = 0;
		curl_multi_poll(sm->multi, &wfd, 1, timeout, NULL);
		if (wfd.revents)
			wakefd_drain(a->streamer_wake);
	}
	return NULL;
}

int streamer_start(struct agent *a)
{
	struct streamer *sm = xcalloc(1, sizeof(*sm));
	int rc;

	sm->a = a;
	sm->max_streams = a->config->runner.max_streams
			      ? a->config->runner.max_streams
			      : 1000;
	sm->multi = curl_multi_init();
	if (!sm->multi) {
		free(sm);
		return -ENOMEM;
	}
	/* One connection per stream (HTTP/1.1); do not cap them. */
	curl_multi_setopt(sm->multi, CURLMOPT_MAXCONNECTS,
			  (long)sm->max_streams);
	atomic_init(&sm->stop, false);
	sm->open = &a->open_streams;
	rc = pthread_create(&sm->thread, NULL, streamer_main, sm);
	if (rc) {
		curl_multi_cleanup(sm->multi);
		free(sm);
		return -rc;
	}
	a->streamer = sm;
	return 0;
}

void streamer_stop(struct agent *a)
{
	struct streamer *sm = a->streamer;

	if (!sm)
		return;
	atomic_store(&sm->stop, true);
	wakefd_signal(a->streamer_wake);
	pthread_join(sm->thread, NULL);
	/* What the writers could not take in time. */
	for (int e = 0; e < EP_COUNT; e++) {
		while (sm->out[e].head) {
			struct outmsg *m = sm->out[e].head;

			sm->out[e].head = m->next;
			outmsg_free(m);
		}
	}
	curl_multi_cleanup(sm->multi);
	a->streamer = NULL;
	free(sm);
}
