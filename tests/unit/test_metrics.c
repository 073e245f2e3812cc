/*
 * Unit tests for agent/metrics.c (counters, Prometheus text rendering,
 * Kubernetes reachability) and health_ready() of agent/health.c.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/health.h"
#include "agent/metrics.h"
#include "common/ring.h"
#include "common/util.h"
#include "k8s/k8s.h"
#include "tests/unit/check.h"

/* True when @text has @line as a whole line. */
static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; p && *p; p = strchr(p, '\n')) {
		if (*p == '\n')
			p++;
		if (!strncmp(p, line, n) && p[n] == '\n')
			return true;
	}
	return false;
}

#define CHECK_LINE(text, line)                                                 \
	do {                                                                   \
		if (!has_line((text), (line))) {                               \
			check_failures_in_case++;                              \
			fprintf(stderr, "  %s:%d: no line \"%s\"\n", __FILE__, \
				__LINE__, (line));                             \
		}                                                              \
	} while (0)

#define CHECK_NO_LINE(text, line)                                              \
	do {                                                                   \
		if (has_line((text), (line))) {                                \
			check_failures_in_case++;                              \
			fprintf(stderr, "  %s:%d: unexpected line \"%s\"\n",   \
				__FILE__, __LINE__, (line));                   \
		}                                                              \
	} while (0)

/* Gauges with every endpoint idle and nothing queued. */
static void quiet_gauges(struct metrics_gauges *g)
{
	memset(g, 0, sizeof(*g));
	for (int e = 0; e < EP_COUNT; e++) {
		g->ep[e].state = EPS_IDLE;
		g->ep[e].rtt_ms = -1;
	}
}

static char *render(const struct metrics_gauges *g)
{
	size_t len = 0;
	char *text = metrics_render(g, &len);

	CHECK(text != NULL);
	CHECK_INT(len, strlen(text));
	CHECK(len > 0 && text[len - 1] == '\n');
	return text;
}

static void test_messages_by_endpoint_and_type(void)
{
	struct metrics_gauges g;
	char *t;

	metrics_reset();
	for (int i = 0; i < 3; i++)
		metrics_msg_in(EP_RUNNER, "deploy");
	metrics_msg_in(EP_RUNNER, NULL);
	metrics_msg_in(EP_RUNNER, "frobnicate");
	metrics_msg_in(EP_CP, "response");
	for (int i = 0; i < 4; i++)
		metrics_msg_out(EP_RUNNER, "response");
	metrics_msg_out(EP_CP, "register");
	metrics_msg_out(EP_CP, "?");
	quiet_gauges(&g);
	t = render(&g);
	CHECK_LINE(t, "# HELP pipeops_agent_messages_received_total Messages "
		      "received, by endpoint and type.");
	CHECK_LINE(t, "# TYPE pipeops_agent_messages_received_total counter");
	CHECK_LINE(t,
		   "pipeops_agent_messages_received_total{endpoint=\"runner\""
		   ",type=\"deploy\"} 3");
	CHECK_LINE(t,
		   "pipeops_agent_messages_received_total{endpoint=\"runner\""
		   ",type=\"invalid\"} 1");
	CHECK_LINE(t,
		   "pipeops_agent_messages_received_total{endpoint=\"runner\""
		   ",type=\"other\"} 1");
	CHECK_LINE(t, "pipeops_agent_messages_received_total{endpoint="
		      "\"control_plane\",type=\"response\"} 1");
	CHECK_LINE(t, "pipeops_agent_messages_sent_total{endpoint=\"runner\","
		      "type=\"response\"} 4");
	CHECK_LINE(t, "pipeops_agent_messages_sent_total{endpoint="
		      "\"control_plane\",type=\"register\"} 1");
	CHECK_LINE(t, "pipeops_agent_messages_sent_total{endpoint="
		      "\"control_plane\",type=\"other\"} 1");
	/* zero series are left out */
	CHECK_NO_LINE(t, "pipeops_agent_messages_received_total{endpoint="
			 "\"control_plane\",type=\"deploy\"} 0");
	CHECK(!strstr(t, "type=\"frobnicate\""));
	free(t);
}

static void test_operations_and_histogram(void)
{
	struct metrics_gauges g;
	char *t;
	static const char *const deploy_hist[] = {
	    "# HELP pipeops_agent_operation_duration_seconds Time spent "
	    "executing operations, by type.",
	    "# TYPE pipeops_agent_operation_duration_seconds histogram",
	    "pipeops_agent_operation_duration_seconds_bucket{type=\"deploy\","
	    "le=\"0.005\"} 2",
	    "pipeops_agent_operation_duration_seconds_bucket{type=\"deploy\","
	    "le=\"0.01\"} 3",
	    "pipeops_agent_operation_duration_seconds_bucket{type=\"deploy\","
	    "le=\"0.025\"} 3",
	    "pipeops_agent_operation_duration_seconds_bucket{type=\"deploy\","
	    "le=\"0.05\"} 3",
	    "pipeops_agent_operation_duration_seconds_bucket{type=\"deploy\","
	    "le=\"0.1\"} 3",
	    "pipeops_agent_operation_duration_seconds_bucket{type=\"deploy\","
	    "le=\"0.25\"} 4",
	    "pipeops_agent_operation_duration_seconds_bucket{type=\"deploy\","
	    "le=\"0.5\"} 4",
	    "pipeops_agent_operation_duration_seconds_bucket{type=\"deploy\","
	    "le=\"1\"} 4",
	    "pipeops_agent_operation_duration_seconds_bucket{type=\"deploy\","
	    "le=\"2.5\"} 4",
	    "pipeops_agent_operation_duration_seconds_bucket{type=\"deploy\","
	    "le=\"5\"} 4",
	    "pipeops_agent_operation_duration_seconds_bucket{type=\"deploy\","
	    "le=\"10\"} 4",
	    "pipeops_agent_operation_duration_seconds_bucket{type=\"deploy\","
	    "le=\"30\"} 5",
	    "pipeops_agent_operation_duration_seconds_bucket{type=\"deploy\","
	    "le=\"+Inf\"} 6",
	    "pipeops_agent_operation_duration_seconds_sum{type=\"deploy\"} "
	    "60.266",
	    "pipeops_agent_operation_duration_seconds_count{type=\"deploy\"} 6",
	};
	char want[4096] = "";
	size_t n = 0;

	metrics_reset();
	/* 0 and 5 ms are in le=0.005 (bounds are inclusive); 6 ms is not */
	metrics_op_done("deploy", true, 0);
	metrics_op_done("deploy", true, 5);
	metrics_op_done("deploy", true, 6);
	metrics_op_done("deploy", false, 250);
	metrics_op_done("deploy", false, 30000);
	metrics_op_done("deploy", true, 30005);
	metrics_op_done("scale", true, 12);
	metrics_op_done("scale", false, -4); /* clock step: counted as 0 */
	metrics_op_done("proxy_request", true, 1);
	metrics_op_done("no_such_op", false, 1);
	quiet_gauges(&g);
	g.in_flight = 2;
	t = render(&g);

	for (size_t i = 0; i < ARRAY_SIZE(deploy_hist); i++)
		n += (size_t)snprintf(want + n, sizeof(want) - n, "%s\n",
				      deploy_hist[i]);
	CHECK(strstr(t, want) != NULL);
	CHECK_LINE(t, "# TYPE pipeops_agent_operations_total counter");
	CHECK_LINE(t, "pipeops_agent_operations_total{type=\"deploy\","
		      "outcome=\"success\"} 4");
	CHECK_LINE(t, "pipeops_agent_operations_total{type=\"deploy\","
		      "outcome=\"failure\"} 2");
	CHECK_LINE(t, "pipeops_agent_operations_total{type=\"scale\","
		      "outcome=\"success\"} 1");
	CHECK_LINE(t, "pipeops_agent_operations_total{type=\"scale\","
		      "outcome=\"failure\"} 1");
	/* the four operations of PROTOCOL.md 4.1-4.4 show even at zero */
	CHECK_LINE(t, "pipeops_agent_operations_total{type=\"delete\","
		      "outcome=\"success\"} 0");
	CHECK_LINE(t, "pipeops_agent_operation_duration_seconds_count{type="
		      "\"get_resources\"} 0");
	/* later types only once used */
	CHECK_LINE(t, "pipeops_agent_operations_total{type=\"proxy_request\","
		      "outcome=\"success\"} 1");
	CHECK(!strstr(t, "type=\"command\""));
	CHECK_LINE(t, "pipeops_agent_operations_total{type=\"other\","
		      "outcome=\"failure\"} 1");
	CHECK_LINE(t, "pipeops_agent_operation_duration_seconds_bucket{type="
		      "\"scale\",le=\"0.005\"} 1");
	CHECK_LINE(t, "pipeops_agent_operation_duration_seconds_bucket{type="
		      "\"scale\",le=\"0.025\"} 2");
	CHECK_LINE(t, "pipeops_agent_operation_duration_seconds_sum{type="
		      "\"scale\"} 0.012");
	CHECK_LINE(t, "pipeops_agent_operations_in_flight 2");
	free(t);
}

static void test_gauges(void)
{
	struct metrics_gauges g;
	char *t;

	metrics_reset();
	metrics_connected(EP_CP);
	metrics_connected(EP_CP);
	metrics_connected(EP_CP);
	metrics_connected(EP_RUNNER);
	quiet_gauges(&g);
	g.uptime_ms = 3723004;
	g.registered = true;
	g.k8s_reachable = true;
	g.ep[EP_CP].state = EPS_OPEN;
	g.ep[EP_CP].rtt_ms = 12;
	g.ep[EP_RUNNER].state = EPS_BACKOFF;
	g.ep[EP_RUNNER].attempts = 4;
	g.ep[EP_RUNNER].worker_queue = 7;
	g.ep[EP_RUNNER].outbox_messages = 3;
	g.ep[EP_RUNNER].outbox_bytes = 1234;
	g.ep[EP_RUNNER].duplicates = 5;
	t = render(&g);
	CHECK_LINE(t, "pipeops_agent_build_info{version=\"" PIPEOPS_VERSION
		      "\"} 1");
	CHECK_LINE(t, "# TYPE pipeops_agent_uptime_seconds gauge");
	CHECK_LINE(t, "pipeops_agent_uptime_seconds 3723.004");
	CHECK_LINE(t, "pipeops_agent_registered 1");
	CHECK_LINE(t, "pipeops_agent_kubernetes_reachable 1");
	CHECK_LINE(t, "# TYPE pipeops_agent_connected gauge");
	CHECK_LINE(t, "pipeops_agent_connected{endpoint=\"control_plane\"} 1");
	CHECK_LINE(t, "pipeops_agent_connected{endpoint=\"runner\"} 0");
	CHECK_LINE(t,
		   "pipeops_agent_connection_state{endpoint=\"control_plane\""
		   ",state=\"open\"} 1");
	CHECK_LINE(t,
		   "pipeops_agent_connection_state{endpoint=\"control_plane\""
		   ",state=\"idle\"} 0");
	CHECK_LINE(t, "pipeops_agent_connection_state{endpoint=\"runner\","
		      "state=\"backoff\"} 1");
	CHECK_LINE(t, "pipeops_agent_connect_failures{endpoint=\"runner\"} 4");
	CHECK_LINE(t, "# TYPE pipeops_agent_reconnects_total counter");
	CHECK_LINE(t, "pipeops_agent_reconnects_total{endpoint="
		      "\"control_plane\"} 2");
	CHECK_LINE(t, "pipeops_agent_reconnects_total{endpoint=\"runner\"} 0");
	CHECK_LINE(t, "pipeops_agent_rtt_seconds{endpoint=\"control_plane\"} "
		      "0.012");
	CHECK(!strstr(t, "pipeops_agent_rtt_seconds{endpoint=\"runner\"}"));
	CHECK_LINE(t,
		   "pipeops_agent_worker_queue_depth{endpoint=\"runner\"} 7");
	CHECK_LINE(t, "pipeops_agent_worker_queue_depth{endpoint="
		      "\"control_plane\"} 0");
	CHECK_LINE(t, "pipeops_agent_outbox_messages{endpoint=\"runner\"} 3");
	CHECK_LINE(t, "pipeops_agent_outbox_bytes{endpoint=\"runner\"} 1234");
	CHECK_LINE(t, "# TYPE pipeops_agent_duplicate_requests_total counter");
	CHECK_LINE(t, "pipeops_agent_duplicate_requests_total{endpoint="
		      "\"runner\"} 5");
	CHECK_LINE(t, "# TYPE pipeops_agent_open_streams gauge");
	CHECK_LINE(t, "pipeops_agent_open_streams 0");
	free(t);
}

/* Every sample's metric has # HELP and # TYPE lines before it, once. */
static void test_format_well_formed(void)
{
	struct metrics_gauges g;
	char *t, *line, *save = NULL;
	char typed[64][80];
	int n_typed = 0;

	metrics_reset();
	metrics_msg_in(EP_CP, "response");
	metrics_op_done("scale", true, 3);
	quiet_gauges(&g);
	t = render(&g);
	for (line = strtok_r(t, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char name[80];
		size_t len;
		bool found = false;

		if (!strncmp(line, "# HELP ", 7))
			continue;
		if (!strncmp(line, "# TYPE ", 7)) {
			len = strcspn(line + 7, " ");
			CHECK(n_typed < 64);
			for (int i = 0; i < n_typed; i++)
				CHECK(strncmp(typed[i], line + 7, len) ||
				      typed[i][len]);
			snprintf(typed[n_typed++ % 64], sizeof(typed[0]),
				 "%.*s", (int)len, line + 7);
			continue;
		}
		CHECK(!strncmp(line, "pipeops_agent_", 14));
		len = strcspn(line, "{ ");
		snprintf(name, sizeof(name), "%.*s", (int)len, line);
		for (int i = 0; i < n_typed && !found; i++) {
			size_t tl = strlen(typed[i]);

			found = !strcmp(name, typed[i]) ||
				(!strncmp(name, typed[i], tl) &&
				 (!strcmp(name + tl, "_bucket") ||
				  !strcmp(name + tl, "_sum") ||
				  !strcmp(name + tl, "_count")));
		}
		if (!found)
			fprintf(stderr, "  sample without TYPE: %s\n", line);
		CHECK(found);
	}
	free(t);
}

static void test_k8s_reachability(void)
{
	static const struct {
		int code;
		const char *reason;
		int reachable; /* 1, 0, or -1 = unchanged */
	} cases[] = {
	    {0, "Unreachable", 0},
	    {0, "Timeout", 0},
	    {0, "TLSError", 0},
	    {0, "TransportError", 0},
	    {503, "ServiceUnavailable", 0},
	    {500, "InternalError", 0},
	    {404, "NotFound", 1},
	    {409, "Conflict", 1},
	    {0, "Invalid", -1},
	    {0, "InvalidResponse", -1},
	    {0, "ResponseTooLarge", -1},
	};
	char error[300];

	metrics_reset();
	CHECK(!metrics_k8s_reachable(error, sizeof(error)));
	CHECK_STR(error, "not checked yet");
	metrics_k8s_outcome(NULL);
	CHECK(metrics_k8s_reachable(error, sizeof(error)));
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct k8s_error err = {.code = cases[i].code};

		snprintf(err.reason, sizeof(err.reason), "%s", cases[i].reason);
		snprintf(err.message, sizeof(err.message), "failure %zu", i);
		for (int before = 0; before < 2; before++) {
			struct k8s_error down = {.reason = "Unreachable"};
			bool want;

			metrics_k8s_outcome(before ? NULL : &down);
			metrics_k8s_outcome(&err);
			want = cases[i].reachable < 0 ? before
						      : cases[i].reachable;
			if (metrics_k8s_reachable(error, sizeof(error)) !=
			    want) {
				check_failures_in_case++;
				fprintf(stderr,
					"  case %zu (%d %s) before=%d\n", i,
					cases[i].code, cases[i].reason, before);
			}
		}
	}
	{
		struct k8s_error err = {.code = 0, .reason = "Unreachable"};

		snprintf(err.message, sizeof(err.message),
			 "cannot reach the Kubernetes API at x: refused");
		metrics_k8s_outcome(NULL);
		metrics_k8s_outcome(&err);
		CHECK(!metrics_k8s_reachable(error, sizeof(error)));
		CHECK_STR(error,
			  "cannot reach the Kubernetes API at x: refused");
		CHECK(!metrics_k8s_reachable(NULL, 0));
	}
}

static void test_readiness(void)
{
	static struct agent a; /* zeroed: not registered */
	char why[512];

	metrics_reset();
	CHECK(!health_ready(&a, why, sizeof(why)));
	CHECK_STR(why, "control plane not registered\n"
		       "kubernetes API unreachable: not checked yet");
	atomic_store(&a.registered, true);
	CHECK(!health_ready(&a, why, sizeof(why)));
	CHECK_STR(why, "kubernetes API unreachable: not checked yet");
	metrics_k8s_outcome(NULL);
	CHECK(health_ready(&a, why, sizeof(why)));
	CHECK_STR(why, "");
	atomic_store(&a.registered, false);
	CHECK(!health_ready(&a, why, sizeof(why)));
	CHECK_STR(why, "control plane not registered");
	/* a graceful stop is announced first */
	atomic_store(&a.stopping, true);
	CHECK(!health_ready(&a, why, sizeof(why)));
	CHECK_STR(why, "agent stopping\ncontrol plane not registered");
	atomic_store(&a.stopping, false);
	/* a short buffer is cut, never overrun */
	{
		char small[8];

		CHECK(!health_ready(&a, small, sizeof(small)));
		CHECK_STR(small, "control");
	}
}

/* metrics_collect reads the agent's atomics and ring depths. */
static void test_collect(void)
{
	static struct agent a;
	struct metrics_gauges g;
	int items[3];

	a.n_workers = 2;
	for (int e = 0; e < EP_COUNT; e++) {
		a.ep[e].to_worker = calloc(2, sizeof(struct ring *));
		for (int i = 0; i < 2; i++)
			a.ep[e].to_worker[i] = ring_new(8, -1);
		atomic_store(&a.ep[e].state, EPS_IDLE);
		atomic_store(&a.ep[e].rtt_ms, -1);
	}
	ring_push(a.ep[EP_RUNNER].to_worker[0], &items[0]);
	ring_push(a.ep[EP_RUNNER].to_worker[1], &items[1]);
	ring_push(a.ep[EP_RUNNER].to_worker[1], &items[2]);
	atomic_store(&a.ep[EP_CP].state, EPS_OPEN);
	atomic_store(&a.ep[EP_CP].rtt_ms, 9);
	atomic_store(&a.ep[EP_RUNNER].rtt_ms, 15); /* not open: not shown */
	atomic_store(&a.ep[EP_RUNNER].outbox_len, 2);
	atomic_store(&a.ep[EP_RUNNER].outbox_bytes, 99);
	atomic_store(&a.ep[EP_RUNNER].duplicates, 1);
	atomic_store(&a.ep[EP_RUNNER].attempts, 3);
	atomic_store(&a.in_flight, 1);
	atomic_store(&a.registered, true);
	a.start_mono_ms = clock_mono_ms() - 5000;
	metrics_reset();
	metrics_k8s_outcome(NULL);

	metrics_collect(&a, &g);
	CHECK_INT(g.ep[EP_CP].state, EPS_OPEN);
	CHECK_INT(g.ep[EP_CP].rtt_ms, 9);
	CHECK_INT(g.ep[EP_RUNNER].rtt_ms, -1);
	CHECK_INT(g.ep[EP_CP].worker_queue, 0);
	CHECK_INT(g.ep[EP_RUNNER].worker_queue, 3);
	CHECK_INT(g.ep[EP_RUNNER].outbox_messages, 2);
	CHECK_INT(g.ep[EP_RUNNER].outbox_bytes, 99);
	CHECK_INT(g.ep[EP_RUNNER].duplicates, 1);
	CHECK_INT(g.ep[EP_RUNNER].attempts, 3);
	CHECK_INT(g.in_flight, 1);
	CHECK(g.registered);
	CHECK(g.k8s_reachable);
	CHECK(g.uptime_ms >= 5000 && g.uptime_ms < 60000);
	CHECK_INT(g.open_streams, 0);
	for (int e = 0; e < EP_COUNT; e++) {
		for (int i = 0; i < 2; i++)
			ring_free(a.ep[e].to_worker[i]);
		free(a.ep[e].to_worker);
	}
}

/* Counters are exact under concurrent updates (run under tsan too). */
struct hammer {
	enum endpoint_id ep;
	int n;
};

static void *hammer_main(void *arg)
{
	const struct hammer *h = arg;

	for (int i = 0; i < h->n; i++) {
		metrics_msg_in(h->ep, "scale");
		metrics_op_done("scale", i % 2 == 0, 1);
	}
	return NULL;
}

static void test_concurrent_updates(void)
{
	struct hammer h[4] = {{EP_CP, 20000},
			      {EP_RUNNER, 20000},
			      {EP_RUNNER, 20000},
			      {EP_CP, 20000}};
	pthread_t t[4];
	struct metrics_gauges g;
	char *text;

	metrics_reset();
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, hammer_main, &h[i]);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	quiet_gauges(&g);
	text = render(&g);
	CHECK_LINE(text, "pipeops_agent_messages_received_total{endpoint="
			 "\"runner\",type=\"scale\"} 40000");
	CHECK_LINE(text, "pipeops_agent_messages_received_total{endpoint="
			 "\"control_plane\",type=\"scale\"} 40000");
	CHECK_LINE(text, "pipeops_agent_operations_total{type=\"scale\","
			 "outcome=\"success\"} 40000");
	CHECK_LINE(text, "pipeops_agent_operation_duration_seconds_count{type="
			 "\"scale\"} 80000");
	CHECK_LINE(text, "pipeops_agent_operation_duration_seconds_sum{type="
			 "\"scale\"} 80.000");
	free(text);
}

static const struct check_case check_cases[] = {
    CHECK_CASE(test_messages_by_endpoint_and_type),
    CHECK_CASE(test_operations_and_histogram),
    CHECK_CASE(test_gauges),
    CHECK_CASE(test_format_well_formed),
    CHECK_CASE(test_k8s_reachability),
    CHECK_CASE(test_readiness),
    CHECK_CASE(test_collect),
    CHECK_CASE(test_concurrent_updates),
};

CHECK_MAIN()
