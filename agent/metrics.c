/*
 * metrics: lock-free counters and their Prometheus text rendering.
 *
 * DESIGN
 * Writers: readers (messages in, connects), writers (messages out),
 * workers (operations, Kubernetes reachability). Reader of everything: the
 * health thread, on a scrape. Counters are atomics updated with relaxed
 * increments and read with relaxed loads: each one is exact on its own,
 * and no ordering between them is promised. The reachability error text
 * is the only non-atomic state; k8s_lock guards it (a leaf: nothing else
 * is taken while it is held, no I/O under it).
 */
#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/metrics.h"
#include "agent/streamer.h"
#include "common/ring.h"
#include "common/util.h"
#include "k8s/k8s.h"

#define PFX "pipeops_agent_"

static const char *const ep_names[EP_COUNT] = {"control_plane", "runner"};

/* Message types of PROTOCOL.md, both directions; then the catch-alls. */
/* clang-format off */
static const char *const msg_types[] = {
	"register",       "response",       "heartbeat",     "status",
	"runner_status",  "runner_assigned", "runner_unassigned",
	"get_status",     "deploy",         "delete",        "scale",
	"get_resources",  "command",        "proxy_request", "proxy_response",
	"proxy_cancel",   "invalid",        "other",
};

#define N_MSG_TYPES ARRAY_SIZE(msg_types)
#define MSG_INVALID (N_MSG_TYPES - 2)
#define MSG_OTHER   (N_MSG_TYPES - 1)

/* Operation types; the first N_OPS_ALWAYS are rendered even at zero. */
static const char *const op_types[] = {
	"deploy", "delete", "scale", "get_resources",
	"command", "proxy_request", "other",
};

#define N_OP_TYPES   ARRAY_SIZE(op_types)
#define N_OPS_ALWAYS 4
#define OP_OTHER     (N_OP_TYPES - 1)

/* Latency bucket upper bounds in ms, and as Prometheus "le" values. */
static const int64_t bucket_ms[] = {
	5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
};
static const char *const bucket_le[] = {
	"0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
	"0.5",   "1",    "2.5",   "5",    "10",  "30",
};
/* clang-format on */

#define N_BUCKETS ARRAY_SIZE(bucket_ms)

static_assert(ARRAY_SIZE(bucket_le) == N_BUCKETS, "one le per bucket");

enum { DIR_IN, DIR_OUT };
enum { K8S_UNKNOWN, K8S_UP, K8S_DOWN };

static atomic_uint_fast64_t msgs[2][EP_COUNT][N_MSG_TYPES];
static atomic_uint_fast64_t connects[EP_COUNT];
static atomic_uint_fast64_t ops[N_OP_TYPES][2]; /* [type][ok] */
/* Per type: count per bucket (not cumulative), the last one +Inf. */
static atomic_uint_fast64_t op_buckets[N_OP_TYPES][N_BUCKETS + 1];
static atomic_uint_fast64_t op_sum_ms[N_OP_TYPES];

static atomic_int k8s_state = K8S_UNKNOWN;
static pthread_mutex_t k8s_lock = PTHREAD_MUTEX_INITIALIZER;
static char k8s_error[256]; /* guarded by k8s_lock */

static size_t msg_index(const char *type)
{
	if (!type)
		return MSG_INVALID;
	for (size_t i = 0; i < MSG_INVALID; i++)
		if (!strcmp(msg_types[i], type))
			return i;
	return MSG_OTHER;
}

static size_t op_index(const char *type)
{
	for (size_t i = 0; type && i < OP_OTHER; i++)
		if (!strcmp(op_types[i], type))
			return i;
	return OP_OTHER;
}

static void inc(atomic_uint_fast64_t *c, uint_fast64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint64_t get(atomic_uint_fast64_t *c)
{
	return (uint64_t)atomic_load_explicit(c, memory_order_relaxed);
}

static bool ep_valid(enum endpoint_id ep)
{
	return (int)ep >= 0 && ep < EP_COUNT;
}

void metrics_msg_in(enum endpoint_id ep, const char *type)
{
	if (ep_valid(ep))
		inc(&msgs[DIR_IN][ep][msg_index(type)], 1);
}

void metrics_msg_out(enum endpoint_id ep, const char *type)
{
	if (ep_valid(ep))
		inc(&msgs[DIR_OUT][ep][msg_index(type)], 1);
}

void metrics_connected(enum endpoint_id ep)
{
	if (ep_valid(ep))
		inc(&connects[ep], 1);
}

void metrics_op_done(const char *type, bool ok, int64_t ms)
{
	size_t t = op_index(type), b = 0;

	if (ms < 0)
		ms = 0;
	while (b < N_BUCKETS && ms > bucket_ms[b])
		b++;
	inc(&ops[t][ok ? 1 : 0], 1);
	inc(&op_buckets[t][b], 1);
	inc(&op_sum_ms[t], (uint_fast64_t)ms);
}

static void k8s_set(int state, const char *error)
{
	if (error) {
		pthread_mutex_lock(&k8s_lock);
		snprintf(k8s_error, sizeof(k8s_error), "%s", error);
		pthread_mutex_unlock(&k8s_lock);
	}
	atomic_store(&k8s_state, state);
}

void metrics_k8s_outcome(const struct k8s_error *err)
{
	static const char *const down_reasons[] = {
	    "Unreachable",
	    "Timeout",
	    "TLSError",
	    "TransportError",
	};

	if (!err) {
		k8s_set(K8S_UP, NULL);
		return;
	}
	if (err->code >= 500) {
		k8s_set(K8S_DOWN, err->message);
		return;
	}
	if (err->code >= 400) {
		k8s_set(K8S_UP, NULL);
		return;
	}
	for (size_t i = 0; err->code == 0 && i < ARRAY_SIZE(down_reasons); i++)
		if (!strcmp(err->reason, down_reasons[i])) {
			k8s_set(K8S_DOWN, err->message);
			return;
		}
}

bool metrics_k8s_reachable(char *error, size_t len)
{
	int state = atomic_load(&k8s_state);

	if (state == K8S_UP)
		return true;
	if (error && len) {
		if (state == K8S_UNKNOWN) {
			snprintf(error, len, "not checked yet");
		} else {
			pthread_mutex_lock(&k8s_lock);
			snprintf(error, len, "%s", k8s_error);
			pthread_mutex_unlock(&k8s_lock);
		}
	}
	return false;
}

void metrics_reset(void)
{
	memset(msgs, 0, sizeof(msgs));
	memset(connects, 0, sizeof(connects));
	memset(ops, 0, sizeof(ops));
	memset(op_buckets, 0, sizeof(op_buckets));
	memset(op_sum_ms, 0, sizeof(op_sum_ms));
	atomic_store(&k8s_state, K8S_UNKNOWN);
	pthread_mutex_lock(&k8s_lock);
	k8s_error[0] = '\0';
	pthread_mutex_unlock(&k8s_lock);
}

void metrics_collect(struct agent *a, struct metrics_gauges *g)
{
	memset(g, 0, sizeof(*g));
	for (int e = 0; e < EP_COUNT; e++) {
		struct endpoint *ep = &a->ep[e];
		struct metrics_endpoint_gauges *eg = &g->ep[e];

		eg->state = atomic_load(&ep->state);
		eg->rtt_ms =
		    eg->state == EPS_OPEN ? atomic_load(&ep->rtt_ms) : -1;
		eg->attempts = atomic_load(&ep->attempts);
		for (int i = 0; ep->to_worker && i < a->n_workers; i++)
			eg->worker_queue += ring_depth(ep->to_worker[i]);
		eg->outbox_messages = atomic_load(&ep->outbox_len);
		eg->outbox_bytes = atomic_load(&ep->outbox_bytes);
		eg->duplicates = (uint64_t)atomic_load(&ep->duplicates);
	}
	g->in_flight = atomic_load(&a->in_flight);
	g->uptime_ms = clock_mono_ms() - a->start_mono_ms;
	g->registered = atomic_load(&a->registered);
	g->k8s_reachable = metrics_k8s_reachable(NULL, 0);
	g->open_streams = streamer_open_streams(a);
}

/* ---- rendering ------------------------------------------------------- */

static void header(FILE *f, const char *name, const char *type,
		   const char *help)
{
	fprintf(f, "# HELP " PFX "%s %s\n# TYPE " PFX "%s %s\n", name, help,
		name, type);
}

/* "12.345" for 12345 ms (exact: no floating point). */
static void print_ms_as_s(FILE *f, int64_t ms)
{
	if (ms < 0) {
		fputc('-', f);
		ms = -ms;
	}
	fprintf(f, "%lld.%03lld", (long long)(ms / 1000),
		(long long)(ms % 1000));
}

/* One gauge line per endpoint with an unsigned value. */
static void per_endpoint(FILE *f, const char *name, const char *type,
			 const char *help, const uint64_t v[EP_COUNT])
{
	header(f, name, type, help);
	for (int e = 0; e < EP_COUNT; e++)
		fprintf(f, PFX "%s{endpoint=\"%s\"} %llu\n", name, ep_names[e],
			(unsigned long long)v[e]);
}

static void render_connections(FILE *f, const struct metrics_gauges *g)
{
	uint64_t v[EP_COUNT];

	for (int e = 0; e < EP_COUNT; e++)
		v[e] = g->ep[e].state == EPS_OPEN;
	per_endpoint(f, "connected", "gauge",
		     "1 while the endpoint's WebSocket link is open.", v);
	header(f, "connection_state", "gauge",
	       "1 for the endpoint's current connection state.");
	for (int e = 0; e < EP_COUNT; e++)
		for (int s = EPS_IDLE; s <= EPS_STOPPED; s++)
			fprintf(f,
				PFX "connection_state{endpoint=\"%s\","
				    "state=\"%s\"} %d\n",
				ep_names[e], endpoint_state_name(s),
				g->ep[e].state == s);
	for (int e = 0; e < EP_COUNT; e++)
		v[e] =
		    (uint64_t)(g->ep[e].attempts > 0 ? g->ep[e].attempts : 0);
	per_endpoint(f, "connect_failures", "gauge",
		     "Failed connection attempts since the last successful "
		     "connect.",
		     v);
	for (int e = 0; e < EP_COUNT; e++) {
		uint64_t n = get(&connects[e]);

		v[e] = n > 0 ? n - 1 : 0;
	}
	per_endpoint(f, "reconnects_total", "counter",
		     "Connections established after the endpoint's first one.",
		     v);
	header(f, "rtt_seconds", "gauge",
	       "Round trip of the last WebSocket ping (open links with a "
	       "pong only).");
	for (int e = 0; e < EP_COUNT; e++) {
		if (g->ep[e].rtt_ms < 0)
			continue;
		fprintf(f, PFX "rtt_seconds{endpoint=\"%s\"} ", ep_names[e]);
		print_ms_as_s(f, g->ep[e].rtt_ms);
		fputc('\n', f);
	}
}

static void render_messages(FILE *f, int dir, const char *name,
			    const char *help)
{
	header(f, name, "counter", help);
	for (int e = 0; e < EP_COUNT; e++)
		for (size_t t = 0; t < N_MSG_TYPES; t++) {
			uint64_t n = get(&msgs[dir][e][t]);

			if (n)
				fprintf(f,
					PFX "%s{endpoint=\"%s\",type=\"%s\"} "
					    "%llu\n",
					name, ep_names[e], msg_types[t],
					(unsigned long long)n);
		}
}

static bool op_shown(size_t t)
{
	return t < N_OPS_ALWAYS || get(&ops[t][0]) || get(&ops[t][1]);
}

static void render_operations(FILE *f, const struct metrics_gauges *g)
{
	header(f, "operations_total", "counter",
	       "Operations executed, by type and outcome.");
	for (size_t t = 0; t < N_OP_TYPES; t++) {
		if (!op_shown(t))
			continue;
		fprintf(f,
			PFX "operations_total{type=\"%s\",outcome=\"success\"}"
			    " %llu\n",
			op_types[t], (unsigned long long)get(&ops[t][1]));
		fprintf(f,
			PFX "operations_total{type=\"%s\",outcome=\"failure\"}"
			    " %llu\n",
			op_types[t], (unsigned long long)get(&ops[t][0]));
	}
	header(f, "operation_duration_seconds", "histogram",
	       "Time spent executing operations, by type.");
	for (size_t t = 0; t < N_OP_TYPES; t++) {
		uint64_t cum = 0;

		if (!op_shown(t))
			continue;
		for (size_t b = 0; b <= N_BUCKETS; b++) {
			cum += get(&op_buckets[t][b]);
			fprintf(f,
				PFX "operation_duration_seconds_bucket{"
				    "type=\"%s\",le=\"%s\"} %llu\n",
				op_types[t],
				b < N_BUCKETS ? bucket_le[b] : "+Inf",
				(unsigned long long)cum);
		}
		fprintf(f, PFX "operation_duration_seconds_sum{type=\"%s\"} ",
			op_types[t]);
		print_ms_as_s(f, (int64_t)get(&op_sum_ms[t]));
		fprintf(f,
			"\n" PFX "operation_duration_seconds_count{type=\"%s\"}"
			" %llu\n",
			op_types[t], (unsigned long long)cum);
	}
	header(f, "operations_in_flight", "gauge",
	       "Operations being executed now.");
	fprintf(f, PFX "operations_in_flight %d\n", g->in_flight);
}

static void render_queues(FILE *f, const struct metrics_gauges *g)
{
	uint64_t v[EP_COUNT];

	for (int e = 0; e < EP_COUNT; e++)
		v[e] = g->ep[e].worker_queue;
	per_endpoint(f, "worker_queue_depth", "gauge",
		     "Requests from the endpoint waiting in worker rings.", v);
	for (int e = 0; e < EP_COUNT; e++)
		v[e] = g->ep[e].outbox_messages;
	per_endpoint(f, "outbox_messages", "gauge",
		     "Messages in the endpoint writer's outbox.", v);
	for (int e = 0; e < EP_COUNT; e++)
		v[e] = g->ep[e].outbox_bytes;
	per_endpoint(f, "outbox_bytes", "gauge",
		     "Bytes in the endpoint writer's outbox.", v);
	for (int e = 0; e < EP_COUNT; e++)
		v[e] = g->ep[e].duplicates;
	per_endpoint(f, "duplicate_requests_total", "counter",
		     "Redelivered requests answered without running them "
		     "again.",
		     v);
}

char *metrics_render(const struct metrics_gauges *g, size_t *len)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);

	if (!f)
		abort(); /* out of memory: as xmalloc does */
	header(f, "build_info", "gauge", "Always 1; the agent's version.");
	fprintf(f, PFX "build_info{version=\"%s\"} 1\n", PIPEOPS_VERSION);
	header(f, "uptime_seconds", "gauge",
	       "Seconds since the agent started.");
	fprintf(f, PFX "uptime_seconds ");
	print_ms_as_s(f, g->uptime_ms);
	fputc('\n', f);
	header(f, "registered", "gauge",
	       "1 when the control plane acknowledged the registration on the "
	       "current link.");
	fprintf(f, PFX "registered %d\n", g->registered);
	header(f, "kubernetes_reachable", "gauge",
	       "1 when the last telling Kubernetes API call reached the API.");
	fprintf(f, PFX "kubernetes_reachable %d\n", g->k8s_reachable);
	render_connections(f, g);
	render_messages(f, DIR_IN, "messages_received_total",
			"Messages received, by endpoint and type.");
	render_messages(
	    f, DIR_OUT, "messages_sent_total",
	    "Messages written to the socket, by endpoint and type.");
	render_operations(f, g);
	render_queues(f, g);
	header(f, "open_streams", "gauge",
	       "Open streams (watches, log follows).");
	fprintf(f, PFX "open_streams %zu\n", g->open_streams);
	if (fclose(f) != 0)
		abort();
	if (len)
		*len = n;
	return buf;
}
