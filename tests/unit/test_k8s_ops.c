/*
 * test_k8s_ops: deploy, scale, delete, get_resources and cluster info
 * against the Kubernetes API simulator (tests/sim/k8s_sim.py, HTTPS),
 * which this test starts on a free loopback port and stops at the end.
 * Also: NotFound, Invalid, 401 with a wrong token, TLS verification and an
 * unreachable API server. Run from the repository root.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "k8s/k8s.h"
#include "k8s/k8s_internal.h"
#include "tests/unit/check.h"

/* The simulator runs through k8s_sim_ctl.py, which adds control lines on
 * stdin (faults, token rotation). K8S_SIM in the environment names another
 * script with the same CLI (e.g. tests/sim/k8s_sim.py itself); the fault
 * tests are then skipped. */
#define SIM_SOURCE  "tests/sim/k8s_sim.py"
#define DEFAULT_SIM "tests/unit/k8s_sim_ctl.py"
#define TOKEN	    "sim-token-4f1d"

static pid_t sim_pid;
static int sim_port;
static char tmpdir[] = "/tmp/test-k8s-ops-XXXXXX";
static char certdir[256], ca[300], logpath[300];
static struct k8s_shared *sh;
static struct k8s_client *cl;
static bool skip;
static int ctl_fd = -1; /* the simulator's stdin; -1: no control */
static int ctl_seq;

/* A loopback TCP port that was free a moment ago. */
static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *)&a, sizeof(a));
	getsockname(fd, (struct sockaddr *)&a, &al);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static bool log_has(const char *needle)
{
	char *text = file_read_trimmed(logpath, 1 << 20);
	bool found = text && strstr(text, needle);

	free(text);
	return found;
}

static struct k8s_shared *shared_with(const char *url, const char *token,
				      const char *ca_file)
{
	struct k8s_settings s = {
	    .api_server = url,
	    .token = token,
	    .ca_file = ca_file,
	    .default_namespace = "default",
	    .request_timeout_ms = 10000,
	    .connect_timeout_ms = 3000,
	};
	struct k8s_error err;
	struct k8s_shared *r = k8s_shared_new(&s, &err);

	if (!r)
		fprintf(stderr, "  k8s_shared_new: %s\n", err.message);
	return r;
}

static void test_sim_start(void)
{
	char cmd[512], port[16], ready[128], url[64];
	const char *sim = getenv("K8S_SIM") ? getenv("K8S_SIM") : DEFAULT_SIM;
	int64_t deadline;
	int in[2];

	if (access(getenv("K8S_SIM") ? sim : SIM_SOURCE, R_OK) != 0) {
		printf("SKIP %s is missing: simulator tests skipped\n", sim);
		skip = true;
		return;
	}
	CHECK(mkdtemp(tmpdir) != NULL);
	snprintf(certdir, sizeof(certdir), "%s/pki", tmpdir);
	snprintf(ca, sizeof(ca), "%s/ca.pem", certdir);
	snprintf(logpath, sizeof(logpath), "%s/sim.log", tmpdir);
	snprintf(cmd, sizeof(cmd), "tests/lib/certs.sh %s", certdir);
	CHECK_INT(system(cmd), 0);
	sim_port = free_port();
	snprintf(port, sizeof(port), "%d", sim_port);
	CHECK_INT(pipe2(in, O_CLOEXEC), 0);
	sim_pid = fork();
	if (sim_pid == 0) {
		int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		dup2(in[0], 0);
		dup2(fd, 1);
		dup2(fd, 2);
		execl("/usr/bin/python3", "python3", sim, "--port", port,
		      "--certdir", certdir, "--token", TOKEN, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	if (getenv("K8S_SIM"))
		close(in[1]);
	else
		ctl_fd = in[1];
	snprintf(ready, sizeof(ready), "listening on https://127.0.0.1:%d",
		 sim_port);
	deadline = clock_mono_ms() + 20000;
	while (!log_has(ready)) {
		if (clock_mono_ms() > deadline ||
		    waitpid(sim_pid, NULL, WNOHANG) == sim_pid) {
			char *text = file_read_trimmed(logpath, 4096);

			fprintf(stderr, "  simulator did not start: %s\n",
				text ? text : "");
			free(text);
			check_failures_in_case++;
			skip = true;
			return;
		}
		usleep(50000);
	}
	snprintf(url, sizeof(url), "https://127.0.0.1:%d", sim_port);
	sh = shared_with(url, TOKEN, ca);
	cl = k8s_client_new(sh);
	CHECK(cl != NULL);
}

/* Sends one control line to k8s_sim_ctl.py and waits for its answer.
 * Returns false (and the caller skips) without the control channel. */
static bool sim_ctl(const char *line)
{
	char buf[256], ok[32];
	int64_t deadline = clock_mono_ms() + 5000;
	int n;

	if (ctl_fd < 0)
		return false;
	n = snprintf(buf, sizeof(buf), "%s\n", line);
	CHECK(write(ctl_fd, buf, (size_t)n) == n);
	snprintf(ok, sizeof(ok), "ctl-ok %d", ++ctl_seq);
	while (!log_has(ok)) {
		if (clock_mono_ms() > deadline) {
			fprintf(stderr, "  no answer to \"%s\"\n", line);
			check_failures_in_case++;
			return false;
		}
		usleep(20000);
	}
	return true;
}

/* Runs @op on JSON text; returns the reply (new reference) or NULL. */
static json_t *run(json_t *(*op)(struct k8s_client *, json_t *,
				 struct k8s_error *),
		   const char *req, struct k8s_error *err)
{
	json_t *data = json_loads(req, 0, NULL);
	json_t *reply;

	memset(err, 0, sizeof(*err));
	reply = op(cl, data, err);
	json_decref(data);
	return reply;
}

/* GET @path from the simulator; NULL when it failed (err filled). */
static json_t *get(const char *path, struct k8s_error *err)
{
	json_t *out = NULL;

	if (k8s_call(cl, "GET", path, NULL, NULL, &out, NULL, err) < 0)
		return NULL;
	return out;
}

static const char *nz(const char *s)
{
	return s ? s : "";
}

static const char *sget(json_t *v, const char *a, const char *b)
{
	v = json_object_get(v, a);
	if (b)
		v = json_object_get(v, b);
	return json_string_value(v);
}

static json_int_t iget(json_t *v, const char *a, const char *b)
{
	v = json_object_get(v, a);
	if (b)
		v = json_object_get(v, b);
	return json_integer_value(v);
}

static void check_error(const struct k8s_error *err, int code,
			const char *reason, const char *message)
{
	CHECK_INT(err->code, code);
	CHECK_STR(err->reason, reason);
	CHECK_STR(err->message, message);
}

#define SKIP_IF_NO_SIM()                                                       \
	do {                                                                   \
		if (skip)                                                      \
			return;                                                \
	} while (0)

static const char web_req[] =
    "{\"name\":\"web\",\"image\":\"nginx:1.27\",\"replicas\":2,"
    "\"ports\":[{\"name\":\"http\",\"container_port\":80,\"protocol\":"
    "\"TCP\"}],\"environment\":{\"MODE\":\"prod\",\"A\":\"1\"},"
    "\"resources\":{\"limits\":{\"cpu\":\"500m\",\"memory\":\"256Mi\"},"
    "\"requests\":{\"cpu\":\"100m\",\"memory\":\"128Mi\"}},"
    "\"labels\":{\"tier\":\"front\"},\"annotations\":{\"team\":\"a\"}}";

static char web_uid[64];

static void test_cluster_info(void)
{
	struct k8s_error err;
	json_t *info, *nodes;

	SKIP_IF_NO_SIM();
	info = k8s_cluster_info(cl, &err);
	CHECK(info != NULL);
	if (!info) {
		fprintf(stderr, "  %s\n", err.message);
		return;
	}
	CHECK(!strncmp(nz(sget(info, "version", NULL)), "v1.", 3));
	nodes = get("/api/v1/nodes", &err);
	CHECK_INT(iget(info, "node_count", NULL),
		  json_array_size(json_object_get(nodes, "items")));
	CHECK(iget(info, "node_count", NULL) >= 1);
	json_decref(nodes);
	json_decref(info);
}

static void test_deploy_creates(void)
{
	struct k8s_error err;
	json_t *r, *dep, *svc, *c0;
	char *env;

	SKIP_IF_NO_SIM();
	r = run(k8s_op_deploy, web_req, &err);
	CHECK(r != NULL);
	if (!r) {
		fprintf(stderr, "  %s (%d %s)\n", err.message, err.code,
			err.reason);
		return;
	}
	CHECK(json_is_true(json_object_get(r, "success")));
	CHECK_STR(sget(r, "message", NULL), "deployment default/web applied");
	CHECK_STR(sget(r, "deployment", "name"), "web");
	CHECK_STR(sget(r, "deployment", "namespace"), "default");
	CHECK(strlen(nz(sget(r, "deployment", "uid"))) > 0);
	CHECK_INT(iget(r, "deployment", "generation"), 1);
	CHECK(strlen(nz(sget(r, "deployment", "resource_version"))) > 0);
	CHECK_STR(sget(r, "service", "name"), "web");
	CHECK(strlen(nz(sget(r, "service", "cluster_ip"))) > 0);
	snprintf(web_uid, sizeof(web_uid), "%s",
		 nz(sget(r, "deployment", "uid")));

	dep = get("/apis/apps/v1/namespaces/default/deployments/web", &err);
	CHECK(dep != NULL);
	CHECK_STR(sget(dep, "metadata", "uid"), web_uid);
	CHECK_INT(iget(dep, "spec", "replicas"), 2);
	CHECK_STR(
	    json_string_value(json_object_get(
		json_object_get(json_object_get(dep, "metadata"), "labels"),
		"app")),
	    "web");
	CHECK_STR(
	    json_string_value(json_object_get(
		json_object_get(json_object_get(dep, "metadata"), "labels"),
		"tier")),
	    "front");
	CHECK_STR(json_string_value(json_object_get(
		      json_object_get(json_object_get(dep, "metadata"),
				      "annotations"),
		      "team")),
		  "a");
	CHECK_STR(
	    json_string_value(json_object_get(
		json_object_get(
		    json_object_get(json_object_get(dep, "spec"), "selector"),
		    "matchLabels"),
		"app")),
	    "web");
	c0 = json_array_get(
	    json_object_get(
		json_object_get(
		    json_object_get(json_object_get(dep, "spec"), "template"),
		    "spec"),
		"containers"),
	    0);
	CHECK_STR(sget(c0, "name", NULL), "web");
	CHECK_STR(sget(c0, "image", NULL), "nginx:1.27");
	env = json_dumps(json_object_get(c0, "env"), JSON_COMPACT);
	CHECK_STR(env, "[{\"name\":\"A\",\"value\":\"1\"},{\"name\":\"MODE\","
		       "\"value\":\"prod\"}]");
	free(env);
	CHECK_STR(sget(json_object_get(c0, "resources"), "limits", "cpu"),
		  "500m");
	CHECK_STR(sget(json_object_get(c0, "resources"), "requests", "memory"),
		  "128Mi");
	CHECK_INT(iget(json_array_get(json_object_get(c0, "ports"), 0),
		       "containerPort", NULL),
		  80);
	json_decref(dep);

	svc = get("/api/v1/namespaces/default/services/web", &err);
	CHECK(svc != NULL);
	CHECK_STR(sget(svc, "spec", "type"), "ClusterIP");
	CHECK_STR(sget(svc, "spec", "clusterIP"),
		  sget(r, "service", "cluster_ip"));
	CHECK_INT(
	    iget(json_array_get(
		     json_object_get(json_object_get(svc, "spec"), "ports"), 0),
		 "port", NULL),
	    80);
	CHECK_INT(
	    iget(json_array_get(
		     json_object_get(json_object_get(svc, "spec"), "ports"), 0),
		 "targetPort", NULL),
	    80);
	json_decref(svc);
	json_decref(r);
}

static int count_named(const char *path, const char *name)
{
	struct k8s_error err;
	json_t *list = get(path, &err), *it;
	size_t i;
	int n = 0;

	json_array_foreach(json_object_get(list, "items"), i, it) n +=
	    !strcmp(nz(sget(it, "metadata", "name")), name);
	json_decref(list);
	return n;
}

static void test_redeploy_is_idempotent(void)
{
	struct k8s_error err;
	json_t *r, *r2;
	char *changed;

	SKIP_IF_NO_SIM();
	r = run(k8s_op_deploy, web_req, &err);
	CHECK(r != NULL);
	if (!r)
		return;
	CHECK_STR(sget(r, "deployment", "uid"), web_uid);
	CHECK_INT(iget(r, "deployment", "generation"), 1);
	CHECK_INT(
	    count_named("/apis/apps/v1/namespaces/default/deployments", "web"),
	    1);
	CHECK_INT(count_named("/api/v1/namespaces/default/services", "web"), 1);
	/* A new image is a spec change: same object, next generation. */
	changed = xstrdup(web_req);
	memcpy(strstr(changed, "1.27"), "1.28", 4);
	r2 = run(k8s_op_deploy, changed, &err);
	CHECK(r2 != NULL);
	CHECK_STR(sget(r2, "deployment", "uid"), web_uid);
	CHECK_INT(iget(r2, "deployment", "generation"), 2);
	free(changed);
	json_decref(r2);
	json_decref(r);
}

static void test_deploy_errors_from_api(void)
{
	struct k8s_error err;
	json_t *r;

	SKIP_IF_NO_SIM();
	r = run(k8s_op_deploy,
		"{\"name\":\"web\",\"namespace\":\"nope\","
		"\"image\":\"nginx\"}",
		&err);
	CHECK(r == NULL);
	check_error(&err, 404, "NotFound", "namespaces \"nope\" not found");
	json_decref(r);

	/* A Deployment made by someone else with another selector: apply
	 * would change spec.selector, which is immutable -> 422 Invalid. */
	r = json_loads("{\"apiVersion\":\"apps/v1\",\"kind\":"
		       "\"Deployment\",\"metadata\":{\"name\":\"legacy\"},"
		       "\"spec\":{\"selector\":{\"matchLabels\":{\"run\":"
		       "\"legacy\"}},\"template\":{\"metadata\":{\"labels\":"
		       "{\"run\":\"legacy\"}},\"spec\":{\"containers\":"
		       "[{\"name\":\"c\",\"image\":\"busybox\"}]}}}}",
		       0, NULL);
	CHECK_INT(k8s_call(cl, "POST",
			   "/apis/apps/v1/namespaces/default/deployments", NULL,
			   r, NULL, NULL, &err),
		  0);
	json_decref(r);
	r = run(k8s_op_deploy, "{\"name\":\"legacy\",\"image\":\"busybox\"}",
		&err);
	CHECK(r == NULL);
	CHECK_INT(err.code, 422);
	CHECK_STR(err.reason, "Invalid");
	CHECK(strstr(err.message, "Deployment.apps \"legacy\" is invalid: ") ==
	      err.message);
	CHECK(strstr(err.message, "spec.selector") != NULL);
	CHECK(strstr(err.message, "field is immutable") != NULL);
	if (!strstr(err.message, "field is immutable"))
		fprintf(stderr, "  %s\n", err.message);
	json_decref(r);
	r = run(k8s_op_delete, "{\"name\":\"legacy\"}", &err);
	CHECK(r != NULL);
	json_decref(r);
}

static void test_scale(void)
{
	struct k8s_error err;
	json_t *r, *dep;
	char *dump;

	SKIP_IF_NO_SIM();
	r = run(k8s_op_scale, "{\"name\":\"web\",\"replicas\":5}", &err);
	CHECK(r != NULL);
	if (!r) {
		fprintf(stderr, "  %s\n", err.message);
		return;
	}
	dump = json_dumps(r, JSON_SORT_KEYS | JSON_COMPACT);
	CHECK_STR(dump, "{\"message\":\"deployment default/web scaled to 5\","
			"\"name\":\"web\",\"namespace\":\"default\","
			"\"previous_replicas\":2,\"replicas\":5,"
			"\"success\":true}");
	free(dump);
	dep = get("/apis/apps/v1/namespaces/default/deployments/web", &err);
	CHECK_INT(iget(dep, "spec", "replicas"), 5);
	CHECK_INT(iget(dep, "metadata", "generation"), 3);
	json_decref(dep);
	json_decref(r);

	r = run(k8s_op_scale, "{\"name\":\"web\",\"replicas\":0}", &err);
	CHECK_INT(iget(r, "replicas", NULL), 0);
	json_decref(r);
	r = run(k8s_op_scale, "{\"name\":\"web\",\"replicas\":2}", &err);
	CHECK_INT(iget(r, "replicas", NULL), 2);
	CHECK_INT(iget(r, "previous_replicas", NULL), 0);
	json_decref(r);

	r = run(k8s_op_scale, "{\"name\":\"nope\",\"replicas\":1}", &err);
	CHECK(r == NULL);
	check_error(&err, 404, "NotFound",
		    "deployments.apps \"nope\" not found");
}

static void test_timeout_on_slow_api(void)
{
	struct k8s_shared *slow;
	struct k8s_client *c;
	struct k8s_error err;
	char url[64];
	json_t *data = json_pack("{s:s, s:i}", "name", "web", "replicas", 3);
	int64_t t0;

	SKIP_IF_NO_SIM();
	if (!sim_ctl("fault slow:3 /scale 1"))
		goto out;
	snprintf(url, sizeof(url), "https://127.0.0.1:%d", sim_port);
	slow = shared_with(url, TOKEN, ca);
	slow->request_timeout_ms = 1000;
	c = k8s_client_new(slow);
	t0 = clock_mono_ms();
	CHECK(k8s_op_scale(c, data, &err) == NULL);
	CHECK(clock_mono_ms() - t0 < 2500);
	check_error(&err, 0, "Timeout",
		    "Kubernetes API request timed out after 1s (GET "
		    "/apis/apps/v1/namespaces/default/deployments/web/scale)");
	k8s_client_free(c);
	k8s_shared_free(slow);
	sim_ctl("fault none");
out:
	json_decref(data);
}

static void test_unavailable_and_conflict_faults(void)
{
	struct k8s_error err;
	json_t *r;

	SKIP_IF_NO_SIM();
	if (!sim_ctl("fault 503 /scale 1"))
		return;
	r = run(k8s_op_scale, "{\"name\":\"web\",\"replicas\":3}", &err);
	CHECK(r == NULL);
	CHECK_INT(err.code, 503);
	CHECK_STR(err.reason, "ServiceUnavailable");
	CHECK(err.message[0] != '\0');
	/* Two 409s in a row: scale reads again and succeeds. */
	sim_ctl("fault 409 /scale 2");
	r = run(k8s_op_scale, "{\"name\":\"web\",\"replicas\":3}", &err);
	CHECK(r != NULL);
	if (!r)
		fprintf(stderr, "  %s\n", err.message);
	CHECK_INT(iget(r, "replicas", NULL), 3);
	json_decref(r);
	sim_ctl("fault none");
	r = run(k8s_op_scale, "{\"name\":\"web\",\"replicas\":2}", &err);
	CHECK_INT(iget(r, "replicas", NULL), 2);
	json_decref(r);
}

static void test_token_rotation(void)
{
	char path[300], url[64];
	struct k8s_settings s = {0};
	struct k8s_shared *rot;
	struct k8s_client *c;
	struct k8s_error err;
	json_t *r, *data = json_pack("{s:s}", "resource_type", "nodes");
	FILE *f;

	SKIP_IF_NO_SIM();
	if (ctl_fd < 0)
		goto out;
	snprintf(path, sizeof(path), "%s/token", tmpdir);
	snprintf(url, sizeof(url), "https://127.0.0.1:%d", sim_port);
	f = fopen(path, "w");
	fputs(TOKEN "\n", f);
	fclose(f);
	s.api_server = url;
	s.token_file = path;
	s.ca_file = ca;
	rot = k8s_shared_new(&s, &err);
	c = k8s_client_new(rot);
	r = k8s_op_get_resources(c, data, &err);
	CHECK(r != NULL);
	json_decref(r);
	/* The API server accepts only the new token; the file has it too:
	 * the 401 makes the client re-read the file and retry at once. */
	sim_ctl("token rotated-token-2");
	f = fopen(path, "w");
	fputs("rotated-token-2\n", f);
	fclose(f);
	r = k8s_op_get_resources(c, data, &err);
	CHECK(r != NULL);
	if (!r)
		fprintf(stderr, "  %s\n", err.message);
	json_decref(r);
	/* The shared client still holds the old token: 401 stays. */
	r = run(k8s_op_get_resources, "{\"resource_type\":\"nodes\"}", &err);
	CHECK(r == NULL);
	check_error(&err, 401, "Unauthorized", "Unauthorized");
	sim_ctl("token " TOKEN);
	k8s_client_free(c);
	k8s_shared_free(rot);
out:
	json_decref(data);
}

static json_t *find_named(json_t *list, const char *name)
{
	size_t i;
	json_t *it;

	json_array_foreach(list, i, it) if (!strcmp(nz(sget(it, "name", NULL)),
						    name)) return it;
	return NULL;
}

static void test_get_resources(void)
{
	struct k8s_error err;
	json_t *r, *d, *n, *s, *p;
	size_t i;

	SKIP_IF_NO_SIM();
	r = run(k8s_op_get_resources, "{}", &err);
	CHECK(r != NULL);
	if (!r) {
		fprintf(stderr, "  %s\n", err.message);
		return;
	}
	CHECK(json_is_true(json_object_get(r, "success")));
	CHECK(json_is_string(json_object_get(r, "timestamp")));
	CHECK(json_array_size(json_object_get(r, "nodes")) >= 1);
	n = json_array_get(json_object_get(r, "nodes"), 0);
	CHECK(json_is_string(json_object_get(n, "name")));
	CHECK(json_is_boolean(json_object_get(n, "ready")));
	CHECK(json_is_string(json_object_get(n, "version")));
	CHECK(json_is_string(json_object_get(n, "os")));
	CHECK(json_is_string(json_object_get(n, "arch")));
	CHECK(json_is_object(json_object_get(n, "labels")));
	CHECK(sget(json_object_get(n, "resources"), "allocatable", "cpu"));
	CHECK(sget(json_object_get(n, "resources"), "capacity", "memory"));
	CHECK(find_named(json_object_get(r, "namespaces"), "default"));
	d = find_named(json_object_get(r, "deployments"), "web");
	CHECK(d != NULL);
	CHECK_STR(sget(d, "namespace", NULL), "default");
	CHECK_STR(sget(d, "labels", "tier"), "front");
	CHECK(json_is_boolean(json_object_get(d, "ready")));
	CHECK(json_is_string(json_object_get(d, "created_at")));
	s = find_named(json_object_get(r, "services"), "web");
	CHECK(s != NULL);
	CHECK_STR(sget(s, "type", NULL), "ClusterIP");
	json_array_foreach(json_object_get(r, "pods"), i, p)
	{
		CHECK(json_is_string(json_object_get(p, "name")));
		CHECK(json_is_string(json_object_get(p, "phase")));
		CHECK(json_is_array(json_object_get(p, "containers")));
		CHECK(json_is_integer(json_object_get(p, "restarts")));
		CHECK(json_is_boolean(json_object_get(p, "ready")));
	}
	CHECK_INT(iget(r, "metrics", "pod_count"),
		  json_array_size(json_object_get(r, "pods")));
	CHECK_INT(iget(r, "metrics", "node_count"),
		  json_array_size(json_object_get(r, "nodes")));
	json_decref(r);

	r = run(k8s_op_get_resources,
		"{\"namespace\":\"default\","
		"\"resource_type\":\"deployments\"}",
		&err);
	CHECK(r != NULL);
	CHECK(find_named(json_object_get(r, "deployments"), "web"));
	CHECK(json_object_get(r, "nodes") == NULL);
	CHECK(json_object_get(r, "pods") == NULL);
	CHECK(json_object_get(r, "metrics") == NULL);
	json_decref(r);
}

static void test_lists_are_paged(void)
{
	static const char *const names[] = {"page-a", "page-b", "page-c"};
	struct k8s_error err;
	json_t *r, *first;
	char req[128];

	SKIP_IF_NO_SIM();
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		snprintf(req, sizeof(req),
			 "{\"name\":\"%s\",\"image\":"
			 "\"busybox\",\"replicas\":0}",
			 names[i]);
		r = run(k8s_op_deploy, req, &err);
		CHECK(r != NULL);
		json_decref(r);
	}
	/* The simulator pages like the API server does. */
	first =
	    get("/apis/apps/v1/namespaces/default/deployments?limit=2", &err);
	CHECK_INT(json_array_size(json_object_get(first, "items")), 2);
	CHECK(sget(first, "metadata", "continue") != NULL);
	json_decref(first);

	sh->list_page_limit = 2;
	r = run(k8s_op_get_resources, "{\"resource_type\":\"deployments\"}",
		&err);
	sh->list_page_limit = K8S_LIST_PAGE_LIMIT;
	CHECK(r != NULL);
	CHECK(find_named(json_object_get(r, "deployments"), "web"));
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		CHECK(find_named(json_object_get(r, "deployments"), names[i]));
	/* Every deployment once: pages neither overlap nor repeat. */
	{
		json_t *all = get("/apis/apps/v1/deployments", &err);

		CHECK_INT(json_array_size(json_object_get(r, "deployments")),
			  json_array_size(json_object_get(all, "items")));
		json_decref(all);
	}
	json_decref(r);
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		snprintf(req, sizeof(req), "{\"name\":\"%s\"}", names[i]);
		r = run(k8s_op_delete, req, &err);
		CHECK(r != NULL);
		CHECK(json_is_false(json_object_get(r, "service_deleted")));
		json_decref(r);
	}
}

static void test_delete(void)
{
	struct k8s_error err;
	json_t *r;
	char *dump;

	SKIP_IF_NO_SIM();
	r = run(k8s_op_delete, "{\"name\":\"web\",\"namespace\":\"default\"}",
		&err);
	CHECK(r != NULL);
	dump = json_dumps(r, JSON_SORT_KEYS | JSON_COMPACT);
	CHECK_STR(dump, "{\"message\":\"deployment default/web deleted\","
			"\"name\":\"web\",\"namespace\":\"default\","
			"\"service_deleted\":true,\"success\":true}");
	free(dump);
	json_decref(r);
	CHECK(get("/apis/apps/v1/namespaces/default/deployments/web", &err) ==
	      NULL);
	check_error(&err, 404, "NotFound",
		    "deployments.apps \"web\" not found");
	CHECK(get("/api/v1/namespaces/default/services/web", &err) == NULL);
	check_error(&err, 404, "NotFound", "services \"web\" not found");

	r = run(k8s_op_delete, "{\"name\":\"web\"}", &err);
	CHECK(r == NULL);
	check_error(&err, 404, "NotFound",
		    "deployments.apps \"web\" not found");
}

static void test_wrong_token_is_401(void)
{
	struct k8s_shared *bad;
	struct k8s_client *c;
	struct k8s_error err;
	char url[64];
	json_t *data = json_object();

	SKIP_IF_NO_SIM();
	snprintf(url, sizeof(url), "https://127.0.0.1:%d", sim_port);
	bad = shared_with(url, "wrong-token", ca);
	c = k8s_client_new(bad);
	CHECK(k8s_op_get_resources(c, data, &err) == NULL);
	check_error(&err, 401, "Unauthorized", "Unauthorized");
	k8s_client_free(c);
	k8s_shared_free(bad);
	json_decref(data);
}

static void test_tls_verification(void)
{
	struct k8s_shared *bad;
	struct k8s_client *c;
	struct k8s_error err;
	char url[64];

	SKIP_IF_NO_SIM();
	/* The system bundle does not know the test CA. */
	snprintf(url, sizeof(url), "https://127.0.0.1:%d", sim_port);
	bad = shared_with(url, TOKEN, NULL);
	c = k8s_client_new(bad);
	CHECK(k8s_cluster_info(c, &err) == NULL);
	CHECK_INT(err.code, 0);
	CHECK_STR(err.reason, "TLSError");
	CHECK(strstr(err.message, "TLS with the Kubernetes API at "
				  "https://127.0.0.1:") == err.message);
	k8s_client_free(c);
	k8s_shared_free(bad);
}

static void test_unreachable(void)
{
	struct k8s_shared *bad;
	struct k8s_client *c;
	struct k8s_error err;
	char url[64], want[160];
	json_t *r,
	    *data = json_pack("{s:s, s:i}", "name", "web", "replicas", 1);

	snprintf(url, sizeof(url), "https://127.0.0.1:%d", free_port());
	bad = shared_with(url, TOKEN, ca[0] ? ca : NULL);
	c = k8s_client_new(bad);
	r = k8s_op_scale(c, data, &err);
	CHECK(r == NULL);
	json_decref(data);
	snprintf(want, sizeof(want),
		 "cannot reach the Kubernetes API at %s: "
		 "Connection refused",
		 url);
	check_error(&err, 0, "Unreachable", want);
	k8s_client_free(c);
	k8s_shared_free(bad);
}

static void test_sim_stop(void)
{
	char cmd[400];

	k8s_client_free(cl);
	k8s_shared_free(sh);
	cl = NULL;
	sh = NULL;
	if (ctl_fd >= 0)
		close(ctl_fd);
	ctl_fd = -1;
	if (sim_pid > 0) {
		kill(sim_pid, SIGTERM);
		waitpid(sim_pid, NULL, 0);
		sim_pid = 0;
	}
	if (tmpdir[strlen(tmpdir) - 1] != 'X') {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
		CHECK_INT(system(cmd), 0);
	}
	curl_global_cleanup();
}

static const struct check_case check_cases[] = {
    CHECK_CASE(test_sim_start),
    CHECK_CASE(test_cluster_info),
    CHECK_CASE(test_deploy_creates),
    CHECK_CASE(test_redeploy_is_idempotent),
    CHECK_CASE(test_deploy_errors_from_api),
    CHECK_CASE(test_scale),
    CHECK_CASE(test_timeout_on_slow_api),
    CHECK_CASE(test_unavailable_and_conflict_faults),
    CHECK_CASE(test_token_rotation),
    CHECK_CASE(test_get_resources),
    CHECK_CASE(test_lists_are_paged),
    CHECK_CASE(test_delete),
    CHECK_CASE(test_wrong_token_is_401),
    CHECK_CASE(test_tls_verification),
    CHECK_CASE(test_unreachable),
    CHECK_CASE(test_sim_stop),
};

CHECK_MAIN()
