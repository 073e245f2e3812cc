/*
 * worker: the pool that executes operations against the Kubernetes API.
 *
 * DESIGN
 * Worker i consumes ep[e].to_worker[i] for both endpoints (its eventfd is
 * the rings' wake fd) and produces into ep[origin].from_worker[i], so every
 * ring keeps one producer and one consumer. Each worker owns one
 * k8s_client (one reused CURL handle). A full reply ring makes the worker
 * wait (the writer is behind; the reader will stop reading in turn): a
 * reply is never dropped. Worker 0 also refreshes the cluster facts used
 * in register and sends the periodic `status` to the Control Plane.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/dedup.h"
#include "agent/metrics.h"
#include "common/log.h"
#include "common/ring.h"
#include "common/util.h"
#include "k8s/k8s.h"

typedef json_t *(*op_fn)(struct k8s_client *c, json_t *data,
			 struct k8s_error *err);

/* Fields merged into a failure reply (new reference), or NULL. */
typedef json_t *(*fail_fn)(json_t *data, int64_t ms);

enum reply_kind {
	REPLY_RESPONSE,	      /* "response": msg_reply_ok / msg_reply_error */
	REPLY_PROXY_RESPONSE, /* "proxy_response": fn never fails */
};

struct op {
	const char *type;
	op_fn fn;
	enum reply_kind reply;
	fail_fn fail_extra; /* NULL: nothing to add */
	bool id_field;	    /* data.id defaults to the request id */
};

static const struct op ops[] = {
    {"deploy", k8s_op_deploy, REPLY_RESPONSE, NULL, false},
    {"delete", k8s_op_delete, REPLY_RESPONSE, NULL, false},
    {"scale", k8s_op_scale, REPLY_RESPONSE, NULL, false},
    {"get_resources", k8s_op_get_resources, REPLY_RESPONSE, NULL, false},
    {"command", k8s_op_command, REPLY_RESPONSE, k8s_command_failure, true},
    {"proxy_request", k8s_op_proxy, REPLY_PROXY_RESPONSE, NULL, true},
};

/* Reads change nothing: redelivered, they may simply run again. */
static bool is_read(const struct request *req)
{
	const char *method;

	if (!strcmp(req->type, "get_resources") ||
	    !strcmp(req->type, "command"))
		return true;
	if (strcmp(req->type, "proxy_request"))
		return false;
	method = json_string_value(json_object_get(req->data, "method"));
	return !method || !strcasecmp(method, "GET") ||
	       !strcasecmp(method, "HEAD");
}

static const struct op *op_find(const char *type)
{
	for (size_t i = 0; i < ARRAY_SIZE(ops); i++)
		if (!strcmp(ops[i].type, type))
			return &ops[i];
	return NULL;
}

bool worker_handles(const char *type)
{
	return op_find(type) != NULL;
}

static uint32_t fnv1a(const char *s, uint32_t h)
{
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

int worker_pick(struct agent *a, enum endpoint_id ep, struct request *req)
{
	const char *name =
	    json_string_value(json_object_get(req->data, "name"));
	const char *ns =
	    json_string_value(json_object_get(req->data, "namespace"));
	struct endpoint *e = &a->ep[ep];
	int best = 0;
	size_t best_depth = (size_t)-1;

	if (name) {
		uint32_t h = fnv1a(ns ? ns : "", 2166136261u);

		h = fnv1a("/", h);
		return (int)(fnv1a(name, h) % (uint32_t)a->n_workers);
	}
	for (int i = 0; i < a->n_workers; i++) {
		size_t d = ring_depth(e->to_worker[i]);

		if (d < best_depth) {
			best = i;
			best_depth = d;
		}
	}
	return best;
}

/* Hand @msg to the origin's writer; waits while the ring is full. */
static void deliver(struct worker *w, enum endpoint_id origin, struct outmsg *m)
{
	struct ring *r = w->agent->ep[origin].from_worker[w->index];
	int waited_ms = 0;

	while (!ring_push(r, m)) {
		if (waited_ms == 1000)
			LOG_WARN("reply queue full, waiting for the writer",
				 "endpoint=%s", w->agent->ep[origin].name);
		usleep(2000);
		waited_ms += 2;
	}
}

/*
 * proxy_request: the reply is a proxy_response whatever happened; an API
 * answer (404 and 409 included) is not a failure, a refusal or a
 * transport error (data.error) is.
 */
static json_t *proxy_reply(struct request *req, json_t *data,
			   const struct k8s_error *err, bool *failed)
{
	json_t *sc;

	if (!data) {
		data = json_object();
		json_object_set_new(data, "status_code", json_integer(502));
		json_object_set_new(data, "headers", json_object());
		json_object_set_new(data, "body", json_string(""));
		json_object_set_new(data, "error", json_string(err->message));
	}
	*failed = json_object_get(data, "error") != NULL;
	sc = json_object_get(data, "status_code");
	if (*failed && err->code == 0)
		metrics_k8s_outcome(err); /* transport failure */
	else if (!*failed)
		metrics_k8s_outcome(json_integer_value(sc) >= 500 ? err : NULL);
	return msg_proxy_response(req->id, data);
}

static void execute(struct worker *w, struct request *req)
{
	struct agent *a = w->agent;
	const struct op *op = op_find(req->type);
	struct k8s_error err;
	json_t *data, *reply;
	struct outmsg *m;
	int64_t t0 = clock_mono_ms();
	bool failed;

	atomic_fetch_add(&a->in_flight, 1);
	memset(&err, 0, sizeof(err));
	if (atomic_load(&a->abandon)) {
		/* shutdown_timeout ran out: answer without touching the
		 * cluster, so the peer knows to send it again later. */
		data = NULL;
		snprintf(err.reason, sizeof(err.reason), "ShuttingDown");
		snprintf(err.message, sizeof(err.message),
			 "agent is stopping: %s not executed, send it again",
			 req->type);
	} else {
		data = op->fn(w->k8s, req->data, &err);
	}
	if (op->reply == REPLY_PROXY_RESPONSE) {
		reply = proxy_reply(req, data, &err, &failed);
		metrics_op_done(req->type, !failed, clock_mono_ms() - t0);
		atomic_fetch_add(failed ? &a->ops_failed : &a->ops_done, 1);
		LOG_INFO(
		    "operation done",
		    "endpoint=%s request_id=%s type=%s status=%lld ms=%lld",
		    a->ep[req->origin].name, req->id, req->type,
		    (long long)json_integer_value(json_object_get(
			json_object_get(reply, "data"), "status_code")),
		    (long long)(clock_mono_ms() - t0));
		goto out_deliver;
	}
	metrics_op_done(req->type, data != NULL, clock_mono_ms() - t0);
	metrics_k8s_outcome(data ? NULL : &err);
	if (data && op->id_field && !json_object_get(data, "id"))
		json_object_set_new(data, "id", json_string(req->id));
	if (data) {
		reply = msg_reply_ok(req->id, data);
		atomic_fetch_add(&a->ops_done, 1);
		LOG_INFO("operation done",
			 "endpoint=%s request_id=%s type=%s ms=%lld",
			 a->ep[req->origin].name, req->id, req->type,
			 (long long)(clock_mono_ms() - t0));
	} else {
		json_t *extra =
		    op->fail_extra
			? op->fail_extra(req->data, clock_mono_ms() - t0)
			: NULL;

		if (extra && op->id_field && !json_object_get(extra, "id"))
			json_object_set_new(extra, "id", json_string(req->id));
		reply = msg_reply_error(req->id, err.message, err.code,
					err.reason, extra);
		atomic_fetch_add(&a->ops_failed, 1);
		LOG_WARN("operation failed",
			 "endpoint=%s request_id=%s type=%s code=%d "
			 "reason=%s error=\"%s\"",
			 a->ep[req->origin].name, req->id, req->type, err.code,
			 err.reason[0] ? err.reason : "-", err.message);
	}
out_deliver:
	m = outmsg_from_json(reply, OUT_REPLY);
	json_decref(reply);
	if (m) {
		m->peer_gen = req->peer_gen;
		if (is_read(req))
			dedup_forget(a->ep[req->origin].dedup, req->id);
		else
			dedup_complete(a->ep[req->origin].dedup, req->id,
				       m->text, m->len);
		deliver(w, req->origin, m);
	}
	endpoint_request_done(&a->ep[req->origin], req->bytes);
	atomic_fetch_sub(&a->in_flight, 1);
	request_free(req);
}

static void refresh_cluster_info(struct worker *w)
{
	struct k8s_error err;
	json_t *info = k8s_cluster_info(w->k8s, &err);

	static struct log_limit limit; /* worker 0 only */
	unsigned held;

	metrics_k8s_outcome(info ? NULL : &err);
	if (!info) {
		if (log_limit_pass(&limit, err.message, 600000, &held))
			LOG_WARN("cluster info unavailable",
				 "error=\"%s\" repeated=%u", err.message, held);
		return;
	}
	if (limit.last[0]) {
		LOG_INFO("cluster info available again", "");
		memset(&limit, 0, sizeof(limit));
	}
	pthread_mutex_lock(&w->agent->cluster_lock);
	json_decref(w->agent->cluster_info);
	w->agent->cluster_info = info;
	pthread_mutex_unlock(&w->agent->cluster_lock);
}

static void send_status(struct worker *w)
{
	struct agent *a = w->agent;
	struct k8s_error err;
	json_t *data, *msg;
	struct outmsg *m;

	if (!endpoint_is_open(&a->ep[EP_CP]))
		return;
	data = k8s_op_get_resources(w->k8s, NULL, &err);
	if (!data) {
		static struct log_limit limit; /* worker 0 only */
		unsigned held;

		if (log_limit_pass(&limit, err.message, 600000, &held))
			LOG_WARN("cluster status unavailable",
				 "error=\"%s\" repeated=%u", err.message, held);
		return;
	}
	json_object_del(data, "success");
	msg = msg_envelope("status", NULL, data);
	m = outmsg_from_json(msg, OUT_DROP_WHEN_DOWN);
	json_decref(msg);
	if (m)
		deliver(w, EP_CP, m);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct agent *a = w->agent;
	char name[16];
	int64_t last_info = -1, next_status = 0;

	snprintf(name, sizeof(name), "worker-%d", w->index);
	log_set_thread_name(name);
	for (;;) {
		struct pollfd p = {.fd = w->wake, .events = POLLIN};
		bool any = true;
		int64_t now = clock_mono_ms();

		/* Every 60 s; every 10 s while the API is unreachable (also
		 * when an operation found it so), for /readyz. */
		if (w->index == 0 &&
		    (last_info < 0 ||
		     now - last_info >=
			 (metrics_k8s_reachable(NULL, 0) ? 60000 : 10000))) {
			refresh_cluster_info(w);
			last_info = now;
		}
		if (w->index == 0 && a->status_interval_ms > 0 &&
		    now >= next_status) {
			if (next_status)
				send_status(w);
			next_status = now + a->status_interval_ms;
		}
		wakefd_drain(w->wake);
		/* Alternate between endpoints so neither starves the other. */
		while (any) {
			any = false;
			for (int e = 0; e < EP_COUNT; e++) {
				struct request *req =
				    ring_pop(a->ep[e].to_worker[w->index]);

				if (req) {
					execute(w, req);
					any = true;
				}
			}
		}
		if (atomic_load(&a->workers_stop))
			break;
		poll(&p, 1, 1000);
	}
	return NULL;
}

int workers_start(struct agent *a)
{
	for (int i = 0; i < a->n_workers; i++) {
		struct worker *w = &a->workers[i];
		int rc;

		w->k8s = k8s_client_new(a->k8s);
		if (!w->k8s)
			return -ENOMEM;
		rc = pthread_create(&w->thread, NULL, worker_main, w);
		if (rc)
			return -rc;
		w->started = true;
	}
	return 0;
}

void workers_stop(struct agent *a)
{
	atomic_store(&a->workers_stop, true);
	for (int i = 0; i < a->n_workers; i++) {
		struct worker *w = &a->workers[i];

		if (!w->started)
			continue;
		wakefd_signal(w->wake);
		pthread_join(w->thread, NULL);
		w->started = false;
		k8s_client_free(w->k8s);
		w->k8s = NULL;
	}
}
