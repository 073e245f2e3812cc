/*
 * supervisor: the main thread once the agent runs.
 *
 * DESIGN
 * Owns the configuration, the timers (heartbeat, register retry), signal
 * handling through a signalfd, and the endpoints' targets. It waits in one
 * poll() on the signalfd and super_wake (the eventfd of both endpoints'
 * to_super rings) with a timeout set by the next timer. Readers tell it
 * when a link comes up or goes down and hand it the Control Plane's
 * control messages (register acknowledgement, runner_assigned,
 * runner_unassigned, get_status). Everything it sends goes through the
 * endpoints' from_super rings.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/streamer.h"
#include "common/log.h"
#include "common/ring.h"
#include "common/tls.h"
#include "common/url.h"
#include "common/util.h"
#include "k8s/k8s.h"

struct supervisor {
	struct agent *a;
	const char *config_path;
	int sigfd;
	char register_id[160];
	int64_t register_sent_ms; /* 0: not waiting for an ack */
	int64_t next_heartbeat_ms;
	bool stop;
	/* runner_status waiting for the CP to acknowledge register: a CP
	 * may ignore messages from an agent it has not registered yet. */
	struct outmsg *held_head, *held_tail;
	size_t n_held;
};

#define MAX_HELD_STATUS 256

/* Build a target for @url and @token with the endpoint settings @ec of
 * @cfg. Returns NULL and fills @err when TLS cannot be set up. */
static struct endpoint_target *target_new(struct config *cfg,
					  const struct config_endpoint *ec,
					  const char *url, const char *token,
					  const char *default_path, char *err,
					  size_t errlen)
{
	struct endpoint_target *t;
	struct ws_url u;

	if (url_parse_ws(url, default_path, &u, err, errlen) < 0)
		return NULL;
	t = xcalloc(1, sizeof(*t));
	t->url = xstrdup(url);
	t->token = xstrdup(token);
	t->cfg = *ec;
	t->config = config_ref(cfg);
	if (u.tls) {
		struct tls_options o = {
		    .ca_file = ec->ca_file,
		    .client_cert = ec->client_cert,
		    .client_key = ec->client_key,
		    .insecure_skip_verify = ec->insecure_skip_verify,
		};

		if (!ec->insecure_skip_verify && is_ip_literal(u.host)) {
			snprintf(err, errlen,
				 "%s: wss:// to an IP address cannot be "
				 "verified (mbedTLS 2.28 checks DNS names "
				 "only); use a host name",
				 url);
			goto out_free;
		}
		t->tls = tls_ctx_new(&o, err, errlen);
		if (!t->tls)
			goto out_free;
	}
	url_free(&u);
	return t;

out_free:
	url_free(&u);
	endpoint_target_free(t);
	return NULL;
}

static void send_cp(struct supervisor *s, json_t *msg, unsigned flags)
{
	struct outmsg *m = outmsg_from_json(msg, flags);

	json_decref(msg);
	endpoint_send_from_super(&s->a->ep[EP_CP], m);
}

static json_t *labels_json(struct agent *a)
{
	struct config *cfg = a->config;
	json_t *l = json_object();

	json_object_set_new(l, "hostname", json_string(a->name));
	json_object_set_new(l, "agent.pipeops.io/version",
			    json_string(PIPEOPS_VERSION));
	for (size_t i = 0; i < cfg->n_labels; i++)
		json_object_set_new(l, cfg->labels[i].key,
				    json_string(cfg->labels[i].value));
	return l;
}

static void send_register(struct supervisor *s)
{
	struct agent *a = s->a;
	char ts[48];
	json_t *data = json_object(), *caps, *cluster, *msg;

	clock_wall_rfc3339(ts, sizeof(ts));
	json_object_set_new(data, "id", json_string(a->agent_id));
	json_object_set_new(data, "name", json_string(a->name));
	json_object_set_new(data, "cluster_name",
			    json_string(a->config->cluster_name));
	json_object_set_new(data, "version", json_string(PIPEOPS_VERSION));
	json_object_set_new(data, "status", json_string("registering"));
	json_object_set_new(data, "last_seen", json_string(ts));
	json_object_set_new(data, "control_plane_url",
			    json_string(a->config->control_plane.endpoint));
	json_object_set_new(data, "labels", labels_json(a));
	caps = json_array();
	for (const char *const *c =
		 (const char *const[]){"deploy", "delete", "scale",
				       "get_resources", "command",
				       "proxy_request", NULL};
	     *c; c++)
		json_array_append_new(caps, json_string(*c));
	json_object_set_new(data, "capabilities", caps);
	cluster = json_object();
	json_object_set_new(cluster, "name",
			    json_string(a->config->cluster_name));
	pthread_mutex_lock(&a->cluster_lock);
	if (a->cluster_info)
		json_object_update(cluster, a->cluster_info);
	pthread_mutex_unlock(&a->cluster_lock);
	json_object_set_new(data, "cluster", cluster);
	msg = msg_envelope("register", NULL, data);
	snprintf(s->register_id, sizeof(s->register_id), "%s",
		 json_string_value(json_object_get(msg, "id")));
	s->register_sent_ms = clock_mono_ms();
	a->registered = false;
	LOG_INFO("registering", "endpoint=control_plane id=%s", s->register_id);
	send_cp(s, msg, OUT_DROP_WHEN_DOWN);
}

static json_t *time_json(int64_t wall_ns)
{
	char buf[48];
	time_t sec = (time_t)(wall_ns / 1000000000);
	struct tm tm;

	gmtime_r(&sec, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_string(buf);
}

static json_t *rtt_json(struct endpoint *ep)
{
	int64_t rtt = atomic_load(&ep->rtt_ms);

	return rtt >= 0 && endpoint_is_open(ep) ? json_integer(rtt)
						: json_null();
}

/* 3.2 heartbeat (also the body of get_status). New reference. */
static json_t *agent_status(struct agent *a)
{
	struct endpoint *cp = &a->ep[EP_CP], *rn = &a->ep[EP_RUNNER];
	json_t *d = json_object(), *conns = json_object(), *c = json_object();
	json_t *r = json_object(), *ops = json_object();
	char err[200];

	json_object_set_new(d, "agent_id", json_string(a->agent_id));
	json_object_set_new(d, "cluster_name",
			    json_string(a->config->cluster_name));
	json_object_set_new(d, "status", json_string("connected"));
	json_object_set_new(conns, "control_plane",
			    json_boolean(endpoint_is_open(cp)));
	json_object_set_new(conns, "runner",
			    json_boolean(endpoint_is_open(rn)));
	json_object_set_new(d, "connections", conns);
	json_object_set_new(c, "since",
			    time_json(atomic_load(&cp->since_wall_ns)));
	json_object_set_new(c, "rtt_ms", rtt_json(cp));
	json_object_set_new(d, "control_plane", c);

	pthread_mutex_lock(&rn->target_lock);
	if (rn->target) {
		json_object_set_new(r, "id",
				    json_string(rn->target->runner_id));
		json_object_set_new(r, "endpoint",
				    json_string(rn->target->url));
	} else {
		json_object_set_new(r, "id", json_null());
		json_object_set_new(r, "endpoint", json_null());
	}
	pthread_mutex_unlock(&rn->target_lock);
	json_object_set_new(r, "connected", json_boolean(endpoint_is_open(rn)));
	json_object_set_new(
	    r, "state",
	    json_string(endpoint_state_name(atomic_load(&rn->state))));
	json_object_set_new(r, "since",
			    time_json(atomic_load(&rn->since_wall_ns)));
	json_object_set_new(r, "attempts",
			    json_integer(atomic_load(&rn->attempts)));
	json_object_set_new(r, "rtt_ms", rtt_json(rn));
	pthread_mutex_lock(&rn->err_lock);
	snprintf(err, sizeof(err), "%s", rn->last_error);
	pthread_mutex_unlock(&rn->err_lock);
	json_object_set_new(r, "last_error",
			    err[0] ? json_string(err) : json_null());
	json_object_set_new(d, "runner", r);
	json_object_set_new(
	    d, "uptime_seconds",
	    json_integer((clock_mono_ms() - a->start_mono_ms) / 1000));
	json_object_set_new(ops, "in_flight",
			    json_integer(atomic_load(&a->in_flight)));
	json_object_set_new(
	    ops, "done", json_integer((json_int_t)atomic_load(&a->ops_done)));
	json_object_set_new(
	    ops, "failed",
	    json_integer((json_int_t)atomic_load(&a->ops_failed)));
	json_object_set_new(ops, "streams",
			    json_integer((json_int_t)streamer_open_streams(a)));
	json_object_set_new(d, "operations", ops);
	return d;
}

/* get_status extension: queue depths per endpoint. New reference. */
static json_t *queue_depths(struct agent *a)
{
	json_t *q = json_object();

	for (int e = 0; e < EP_COUNT; e++) {
		struct endpoint *ep = &a->ep[e];
		json_t *o = json_object();
		size_t to_workers = 0, replies = 0;

		for (int i = 0; i < a->n_workers; i++) {
			to_workers += ring_depth(ep->to_worker[i]);
			replies += ring_depth(ep->from_worker[i]);
		}
		json_object_set_new(
		    o, "reader_pending",
		    json_integer((json_int_t)atomic_load(&ep->pending)));
		json_object_set_new(o, "worker_queue",
				    json_integer((json_int_t)to_workers));
		json_object_set_new(o, "in_flight",
				    json_integer(atomic_load(&ep->in_flight)));
		json_object_set_new(o, "reply_queue",
				    json_integer((json_int_t)replies));
		json_object_set_new(
		    o, "outbox_messages",
		    json_integer((json_int_t)atomic_load(&ep->outbox_len)));
		json_object_set_new(
		    o, "outbox_bytes",
		    json_integer((json_int_t)atomic_load(&ep->outbox_bytes)));
		json_object_set_new(q, ep->name, o);
	}
	return q;
}

static void send_heartbeat(struct supervisor *s)
{
	send_cp(s, msg_envelope("heartbeat", NULL, agent_status(s->a)),
		OUT_DROP_WHEN_DOWN);
}

/* runner_status for one link event, naming the runner of that link (not
 * whichever runner is assigned by the time the event is handled). */
static void send_runner_status(struct supervisor *s, const struct sup_event *ev)
{
	struct endpoint *rn = &s->a->ep[EP_RUNNER];
	json_t *d = json_object();

	json_object_set_new(d, "runner_id",
			    ev->runner_id[0] ? json_string(ev->runner_id)
					     : json_null());
	json_object_set_new(d, "connected",
			    json_boolean(ev->kind == SUP_EV_UP));
	if (ev->kind != SUP_EV_UP && ev->error[0])
		json_object_set_new(d, "error", json_string(ev->error));
	json_object_set_new(d, "attempts", json_integer(ev->attempts));
	json_object_set_new(d, "since",
			    time_json(atomic_load(&rn->since_wall_ns)));
	/* Kept while the CP is down or not registered: sent after the
	 * next register acknowledgement, in order. */
	json_t *msg = msg_envelope("runner_status", NULL, d);
	struct outmsg *m = outmsg_from_json(msg, OUT_REPLY);

	json_decref(msg);
	if (!m)
		return;
	if (s->a->registered && !s->held_head) {
		endpoint_send_from_super(&s->a->ep[EP_CP], m);
		return;
	}
	if (s->n_held == MAX_HELD_STATUS) {
		struct outmsg *old = s->held_head;

		s->held_head = old->next;
		s->n_held--;
		outmsg_free(old);
		LOG_WARN("too many runner_status messages held, oldest "
			 "dropped",
			 "held=%d", MAX_HELD_STATUS);
	}
	m->next = NULL;
	if (s->held_tail)
		s->held_tail->next = m;
	else
		s->held_head = m;
	s->held_tail = m;
	s->n_held++;
}

/* After the register acknowledgement: what was held, in order. */
static void release_held(struct supervisor *s)
{
	while (s->held_head) {
		struct outmsg *m = s->held_head;

		s->held_head = m->next;
		m->next = NULL;
		endpoint_send_from_super(&s->a->ep[EP_CP], m);
	}
	s->held_tail = NULL;
	s->n_held = 0;
}

static void reply_cp(struct supervisor *s, json_t *reply)
{
	send_cp(s, reply, OUT_REPLY);
}

/* The runner endpoint already has exactly this target. */
static bool same_assignment(struct endpoint *rn, const char *url,
			    const char *token, const char *runner_id)
{
	bool same;

	pthread_mutex_lock(&rn->target_lock);
	same = rn->target && !strcmp(rn->target->url, url) &&
	       !strcmp(rn->target->token, token) &&
	       !strcmp(rn->target->runner_id ? rn->target->runner_id : "",
		       runner_id ? runner_id : "");
	pthread_mutex_unlock(&rn->target_lock);
	return same;
}

static void on_runner_assigned(struct supervisor *s, struct request *req)
{
	struct agent *a = s->a;
	const char *endpoint =
	    json_string_value(json_object_get(req->data, "runner_endpoint"));
	const char *token =
	    json_string_value(json_object_get(req->data, "runner_token"));
	const char *runner_id =
	    json_string_value(json_object_get(req->data, "runner_id"));
	struct endpoint_target *t;
	char err[300];
	json_t *data;

	if (!endpoint || !*endpoint || !token || !*token) {
		LOG_WARN("runner assignment refused",
			 "request_id=%s error=\"missing runner_endpoint or "
			 "runner_token\"",
			 req->id);
		reply_cp(
		    s, msg_reply_error(req->id,
				       "runner_assigned needs runner_endpoint "
				       "and runner_token",
				       0, NULL, NULL));
		return;
	}
	if (same_assignment(&a->ep[EP_RUNNER], endpoint, token, runner_id)) {
		/* A repeated assignment (the CP re-sending it) keeps the
		 * link and everything owed on it. */
		data = json_object();
		json_object_set_new(data, "message",
				    json_string("runner already assigned"));
		json_object_set_new(data, "runner_id",
				    json_string(runner_id ? runner_id : ""));
		reply_cp(s, msg_reply_ok(req->id, data));
		return;
	}
	t = target_new(a->config, &a->config->runner, endpoint, token,
		       a->ep[EP_RUNNER].default_path, err, sizeof(err));
	if (!t) {
		LOG_WARN("runner assignment refused",
			 "request_id=%s error=\"%s\"", req->id, err);
		reply_cp(s, msg_reply_error(req->id, err, 0, NULL, NULL));
		return;
	}
	t->runner_id = xstrdup(runner_id ? runner_id : "");
	LOG_INFO("runner assigned", "runner_id=%s endpoint=%s",
		 runner_id ? runner_id : "-", endpoint);
	endpoint_set_target(&a->ep[EP_RUNNER], t);
	if (endpoint_start(&a->ep[EP_RUNNER]) < 0)
		LOG_ERROR("cannot start runner threads", "");
	data = json_object();
	json_object_set_new(data, "message",
			    json_string("runner assigned, establishing "
					"connection"));
	json_object_set_new(data, "runner_id",
			    json_string(runner_id ? runner_id : ""));
	reply_cp(s, msg_reply_ok(req->id, data));
}

static void on_runner_unassigned(struct supervisor *s, struct request *req)
{
	struct endpoint *rn = &s->a->ep[EP_RUNNER];
	const char *runner_id =
	    json_string_value(json_object_get(req->data, "runner_id"));
	bool other;
	json_t *data;

	/* PROTOCOL 3: close *that* runner's connection. A stale message
	 * naming another runner must not drop the current one. */
	pthread_mutex_lock(&rn->target_lock);
	other = runner_id && *runner_id &&
		(!rn->target || !rn->target->runner_id ||
		 strcmp(rn->target->runner_id, runner_id));
	pthread_mutex_unlock(&rn->target_lock);
	if (other) {
		char err[300];

		snprintf(err, sizeof(err), "runner %s is not assigned",
			 runner_id);
		LOG_WARN("runner_unassigned ignored",
			 "request_id=%s runner_id=%s error=\"%s\"", req->id,
			 runner_id, err);
		reply_cp(s, msg_reply_error(req->id, err, 0, NULL, NULL));
		return;
	}
	data = json_object();
	LOG_INFO("runner unassigned", "request_id=%s", req->id);
	endpoint_set_target(rn, NULL);
	json_object_set_new(data, "message", json_string("runner unassigned"));
	reply_cp(s, msg_reply_ok(req->id, data));
}

static void on_cp_message(struct supervisor *s, struct request *req)
{
	if (!strcmp(req->type, "response")) {
		const char *rid =
		    json_string_value(json_object_get(req->root, "request_id"));

		if (!rid)
			rid = json_string_value(
			    json_object_get(req->data, "request_id"));
		if (rid && !strcmp(rid, s->register_id)) {
			json_t *ok = json_object_get(req->data, "success");

			if (ok && json_is_false(ok)) {
				LOG_WARN("registration refused", "error=\"%s\"",
					 json_string_value(json_object_get(
					     req->root, "error"))
					     ?: "-");
				return; /* retried after register_timeout */
			}
			s->a->registered = true;
			s->register_sent_ms = 0;
			LOG_INFO("registered", "endpoint=control_plane");
			send_heartbeat(s);
			release_held(s);
		}
	} else if (!strcmp(req->type, "runner_assigned")) {
		on_runner_assigned(s, req);
	} else if (!strcmp(req->type, "runner_unassigned")) {
		on_runner_unassigned(s, req);
	} else if (!strcmp(req->type, "get_status")) {
		json_t *st = agent_status(s->a);

		json_object_set_new(st, "queues", queue_depths(s->a));
		reply_cp(s, msg_reply_ok(req->id, st));
	}
}

static void on_event(struct supervisor *s, struct sup_event *ev)
{
	struct agent *a = s->a;

	if (ev->kind == SUP_EV_MESSAGE) {
		on_cp_message(s, ev->req);
	} else if (ev->ep == EP_CP && ev->kind == SUP_EV_UP) {
		send_register(s);
		s->next_heartbeat_ms =
		    clock_mono_ms() +
		    a->config->control_plane.heartbeat_interval_ms;
	} else if (ev->ep == EP_CP) {
		if (ev->kind == SUP_EV_DOWN) {
			a->registered = false;
			s->register_sent_ms = 0;
		}
	} else {
		send_runner_status(s, ev);
	}
	request_free(ev->req);
	free(ev);
}

static void handle_signal(struct supervisor *s)
{
	struct signalfd_siginfo si;

	while (read(s->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			LOG_INFO("stopping", "signal=%u", si.ssi_signo);
			s->stop = true;
			break;
		case SIGHUP:
			LOG_INFO("reload requested", "");
			supervisor_reload(s->a, s->config_path);
			break;
		case SIGUSR1:
			log_reopen();
			break;
		default:
			break;
		}
	}
}

static void timers(struct supervisor *s, int64_t now)
{
	struct agent *a = s->a;
	const struct config_endpoint *cp = &a->config->control_plane;

	if (!endpoint_is_open(&a->ep[EP_CP]))
		return;
	if (s->register_sent_ms &&
	    now - s->register_sent_ms >= cp->register_timeout_ms) {
		LOG_WARN("no registration acknowledgement, registering again",
			 "timeout_ms=%lld", (long long)cp->register_timeout_ms);
		send_register(s);
	}
	/* Heartbeats follow registration (the seed's order). */
	if (a->registered && now >= s->next_heartbeat_ms) {
		send_heartbeat(s);
		s->next_heartbeat_ms = now + cp->heartbeat_interval_ms;
	}
}

/* Wait for in-flight operations, then stop everything in order. */
static void graceful_stop(struct supervisor *s)
{
	struct agent *a = s->a;
	int64_t until = clock_mono_ms() + a->config->shutdown_timeout_ms;
	bool idle = false;

	atomic_store(&a->stopping, true);
	for (int e = 0; e < EP_COUNT; e++)
		endpoint_stop_reading(&a->ep[e]);
	while (!idle && clock_mono_ms() < until) {
		/* Every request read is executed and its reply queued. */
		idle = true;
		for (int e = 0; e < EP_COUNT && idle; e++)
			idle = !atomic_load(&a->ep[e].pending) &&
			       !atomic_load(&a->ep[e].in_flight);
		if (!idle)
			usleep(10000);
	}
	if (!idle) {
		LOG_WARN("shutdown timeout: requests in flight are aborted, "
			 "those not started are answered without being "
			 "executed",
			 "in_flight=%d", atomic_load(&a->in_flight));
		atomic_store(&a->abandon, true);
		k8s_shared_abort(a->k8s);
	}
	/* Streams end with a done message the writers still send. */
	streamer_stop(a);
	workers_stop(a);
	for (int e = EP_COUNT - 1; e >= 0; e--) {
		int64_t left = until - clock_mono_ms();

		endpoint_stop(&a->ep[e], left > 1000 ? left : 1000);
	}
}

int supervisor_start_cp(struct agent *a, char *err, size_t errlen)
{
	struct config *cfg = a->config;
	struct endpoint_target *t;

	t = target_new(cfg, &cfg->control_plane, cfg->control_plane.endpoint,
		       cfg->control_plane.token, a->ep[EP_CP].default_path, err,
		       errlen);
	if (!t)
		return -EINVAL;
	endpoint_set_target(&a->ep[EP_CP], t);
	return endpoint_start(&a->ep[EP_CP]) < 0 ? -EAGAIN : 0;
}

int supervisor_run(struct agent *a, const char *config_path)
{
	struct supervisor s = {.a = a, .config_path = config_path};
	sigset_t set;

	log_set_thread_name("supervisor");
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	s.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (s.sigfd < 0)
		return -errno;
	while (!s.stop) {
		struct pollfd p[2] = {{.fd = s.sigfd, .events = POLLIN},
				      {.fd = a->super_wake, .events = POLLIN}};
		int64_t now = clock_mono_ms(), timeout = 1000;

		if (endpoint_is_open(&a->ep[EP_CP]) && s.next_heartbeat_ms) {
			timeout = s.next_heartbeat_ms - now;
			if (timeout < 0)
				timeout = 0;
			if (timeout > 1000)
				timeout = 1000;
		}
		poll(p, 2, (int)timeout);
		if (p[0].revents & POLLIN)
			handle_signal(&s);
		wakefd_drain(a->super_wake);
		for (int e = 0; e < EP_COUNT; e++) {
			struct sup_event *ev;

			while ((ev = ring_pop(a->ep[e].to_super)) != NULL)
				on_event(&s, ev);
		}
		timers(&s, clock_mono_ms());
	}
	graceful_stop(&s);
	while (s.held_head) {
		struct outmsg *m = s.held_head;

		s.held_head = m->next;
		outmsg_free(m);
	}
	close(s.sigfd);
	return 0;
}

/* Print each diagnostic of a load to the log. */
static void log_diags(const struct config_diags *d)
{
	for (size_t i = 0; i < d->n; i++) {
		if (d->items[i].is_error)
			LOG_ERROR("configuration error", "line=%d error=\"%s\"",
				  d->items[i].line, d->items[i].text);
		else
			LOG_WARN("configuration warning",
				 "line=%d warning=\"%s\"", d->items[i].line,
				 d->items[i].text);
	}
}

/* Restart the CP link only when what the link is made of changed; apply
 * timing at once either way. */
static void reload_control_plane(struct agent *a, struct config *old,
				 struct config *cfg)
{
	struct endpoint_target *t;
	char err[300];

	if (config_endpoint_same_link(&old->control_plane,
				      &cfg->control_plane)) {
		endpoint_set_timing(&a->ep[EP_CP], &cfg->control_plane);
		return;
	}
	t = target_new(cfg, &cfg->control_plane, cfg->control_plane.endpoint,
		       cfg->control_plane.token, a->ep[EP_CP].default_path, err,
		       sizeof(err));
	if (!t) {
		LOG_ERROR("new control plane settings unusable, keeping the "
			  "current link",
			  "error=\"%s\"", err);
		return;
	}
	LOG_INFO("control plane settings changed, reconnecting", "url=%s",
		 cfg->control_plane.endpoint);
	endpoint_set_target(&a->ep[EP_CP], t);
}

/* The Runner's URL and token come from runner_assigned; [runner] holds its
 * TLS and timing. Rebuild the target when TLS or the proxy changed. */
static void reload_runner(struct agent *a, struct config *old,
			  struct config *cfg)
{
	struct endpoint *rn = &a->ep[EP_RUNNER];
	struct endpoint_target *cur, *t;
	struct config_endpoint was = old->runner, now = cfg->runner;
	char err[300], *url = NULL, *token = NULL, *runner_id = NULL;

	/* [runner] has no endpoint or token of its own: compare the rest. */
	was.endpoint = now.endpoint = NULL;
	was.token = now.token = NULL;
	if (config_endpoint_same_link(&was, &now)) {
		endpoint_set_timing(rn, &cfg->runner);
		return;
	}
	/* Copy what the new target keeps; build it outside the lock (it
	 * reads certificate files). */
	pthread_mutex_lock(&rn->target_lock);
	cur = rn->target;
	if (cur) {
		url = xstrdup(cur->url);
		token = xstrdup(cur->token);
		runner_id = xstrdup(cur->runner_id);
	}
	pthread_mutex_unlock(&rn->target_lock);
	if (!url)
		return; /* no runner assigned: used at the next assignment */
	t = target_new(cfg, &cfg->runner, url, token, rn->default_path, err,
		       sizeof(err));
	if (t) {
		t->runner_id = runner_id;
		runner_id = NULL;
		LOG_INFO("runner TLS or proxy settings changed, reconnecting",
			 "");
		endpoint_set_target(rn, t);
	} else {
		LOG_ERROR("new runner settings unusable, keeping the current "
			  "link",
			  "error=\"%s\"", err);
	}
	free(url);
	free(token);
	free(runner_id);
}

static bool strv_equal(char *const *a, size_t na, char *const *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (strcmp(a[i], b[i]))
			return false;
	return true;
}

static bool str_differs(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") != 0;
}

/* Settings a running agent cannot change: say so for each one that did,
 * instead of a silent "reloaded" (docs/CONFIGURATION.md lists them). */
static void warn_restart_only(const struct config *o, const struct config *n)
{
	const struct {
		bool changed;
		const char *key;
	} keys[] = {
	    {o->workers != n->workers, "[agent] workers"},
	    {str_differs(o->state_dir, n->state_dir), "[agent] state_dir"},
	    {str_differs(o->pid_file, n->pid_file), "[agent] pid_file"},
	    {o->log_target != n->log_target ||
		 str_differs(o->log_file, n->log_file),
	     "[agent] log_target"},
	    {str_differs(o->health_listen, n->health_listen),
	     "[health] listen"},
	    {o->runner.max_streams != n->runner.max_streams,
	     "[runner] max_streams"},
	    {o->k8s_in_cluster != n->k8s_in_cluster, "[kubernetes] in_cluster"},
	    {str_differs(o->k8s_api_server, n->k8s_api_server),
	     "[kubernetes] api_server"},
	    {str_differs(o->k8s_token_file, n->k8s_token_file),
	     "[kubernetes] token_file"},
	    {str_differs(o->k8s_ca_file, n->k8s_ca_file),
	     "[kubernetes] ca_file"},
	    {o->k8s_insecure_skip_verify != n->k8s_insecure_skip_verify,
	     "[kubernetes] insecure_skip_verify"},
	    {str_differs(o->k8s_namespace, n->k8s_namespace),
	     "[kubernetes] namespace"},
	    {o->k8s_request_timeout_ms != n->k8s_request_timeout_ms,
	     "[kubernetes] request_timeout"},
	    {o->k8s_connect_timeout_ms != n->k8s_connect_timeout_ms,
	     "[kubernetes] connect_timeout"},
	    {o->k8s_max_log_bytes != n->k8s_max_log_bytes,
	     "[kubernetes] max_log_bytes"},
	    {!strv_equal(o->k8s_proxy_deny, o->n_k8s_proxy_deny,
			 n->k8s_proxy_deny, n->n_k8s_proxy_deny),
	     "[kubernetes] proxy_deny"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		if (keys[i].changed)
			LOG_WARN("setting changed; it takes effect after a "
				 "restart",
				 "key=\"%s\"", keys[i].key);
}

void supervisor_reload(struct agent *a, const char *config_path)
{
	struct config_diags diags = {0};
	struct config *cfg = config_load(config_path, &diags), *old;

	log_diags(&diags);
	config_diags_free(&diags);
	if (!cfg) {
		LOG_ERROR("reload refused, keeping the running configuration",
			  "path=%s", config_path);
		return;
	}
	old = a->config;
	log_set_level((enum log_level)cfg->log_level);
	a->config = cfg;
	warn_restart_only(old, cfg);
	reload_control_plane(a, old, cfg);
	reload_runner(a, old, cfg);
	/* token files are re-read on reload (the CP's by config_load) */
	k8s_shared_reload_token(a->k8s);
	LOG_INFO("configuration reloaded", "path=%s", config_path);
	config_unref(old);
}
