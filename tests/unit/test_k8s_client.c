/*
 * test_k8s_client: the k8s request core against a scripted fake HTTP
 * server on loopback (plain http, which the client allows): the exact
 * requests an operation sends, and how answers and failures map to
 * k8s_error (5xx without Status, timeout, refused, 401 token re-read, 415
 * apply fallback, paging).
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/util.h"
#include "k8s/k8s.h"
#include "k8s/k8s_internal.h"
#include "tests/unit/check.h"

#define MAX_STEPS 16

/* One scripted answer; status 0 means "never answer" (stall). */
struct step {
	int status;
	const char *body;
};

/* One request as the server saw it. */
struct seen {
	char method[16];
	char target[1024];
	char headers[4096];
	char *body;
};

struct fake {
	int lfd;
	int port;
	pthread_t thread;
	struct step steps[MAX_STEPS];
	size_t nsteps;
	struct seen seen[MAX_STEPS];
	size_t nseen; /* written by the server thread; read after
		       * join */
	int connections;
};

static int read_request(int fd, struct seen *s)
{
	char buf[65536];
	size_t len = 0, need;
	char *end, *cl;
	long clen = 0;

	for (;;) {
		ssize_t n;

		buf[len] = '\0';
		end = strstr(buf, "\r\n\r\n");
		if (end)
			break;
		if (len + 1 >= sizeof(buf))
			return -1;
		n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			return -1;
		len += (size_t)n;
	}
	end[2] = '\0'; /* keep the last header's CRLF */
	if (sscanf(buf, "%15s %1023s", s->method, s->target) != 2)
		return -1;
	/* "\nName: value\r\n..." so every line can be matched whole. */
	snprintf(s->headers, sizeof(s->headers), "%s", strchr(buf, '\n'));
	cl = strcasestr(s->headers, "\ncontent-length:");
	if (cl)
		clen = strtol(cl + 16, NULL, 10);
	need = (size_t)(end + 4 - buf) + (size_t)clen;
	while (len < need) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);

		if (n <= 0)
			return -1;
		len += (size_t)n;
	}
	s->body = strndup(end + 4, (size_t)clen);
	return 0;
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;

	while (f->nseen < f->nsteps) {
		int fd = accept(f->lfd, NULL, NULL);

		if (fd < 0)
			break;
		f->connections++;
		while (f->nseen < f->nsteps) {
			struct step *st = &f->steps[f->nseen];
			char head[256];
			size_t blen = strlen(st->body);
			int hl;

			if (read_request(fd, &f->seen[f->nseen]) < 0)
				break;
			f->nseen++;
			if (st->status == 0) {
				/* Stall until the client gives up. */
				char c;

				while (read(fd, &c, 1) > 0)
					;
				break;
			}
			hl = snprintf(head, sizeof(head),
				      "HTTP/1.1 %d X\r\nContent-Type: "
				      "application/json\r\nContent-Length: "
				      "%zu\r\n\r\n",
				      st->status, blen);
			if (write(fd, head, (size_t)hl) != hl ||
			    write(fd, st->body, blen) != (ssize_t)blen)
				break;
		}
		close(fd);
	}
	return NULL;
}

static void fake_start(struct fake *f, const struct step *steps, size_t n)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t al = sizeof(a);

	memset(f, 0, sizeof(*f));
	if (n)
		memcpy(f->steps, steps, n * sizeof(*steps));
	f->nsteps = n;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bind(f->lfd, (struct sockaddr *)&a, sizeof(a));
	listen(f->lfd, 8);
	getsockname(f->lfd, (struct sockaddr *)&a, &al);
	f->port = ntohs(a.sin_port);
	pthread_create(&f->thread, NULL, fake_main, f);
}

static void fake_stop(struct fake *f)
{
	shutdown(f->lfd, SHUT_RDWR);
	pthread_join(f->thread, NULL);
	close(f->lfd);
}

/* After the checks: the recorded bodies. */
static void fake_free(struct fake *f)
{
	for (size_t i = 0; i < f->nseen; i++)
		free(f->seen[i].body);
}

static struct k8s_shared *shared_for(int port, const char *token,
				     const char *token_file, int64_t timeout_ms)
{
	char url[64];
	struct k8s_settings s = {
	    .api_server = url,
	    .token = token,
	    .token_file = token_file,
	    .request_timeout_ms = timeout_ms,
	    .connect_timeout_ms = 1000,
	};
	struct k8s_error err;
	struct k8s_shared *sh;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
	sh = k8s_shared_new(&s, &err);
	if (!sh)
		fprintf(stderr, "  k8s_shared_new: %s\n", err.message);
	return sh;
}

static bool has_header(const struct seen *s, const char *line)
{
	char want[512];

	snprintf(want, sizeof(want), "\n%s\r\n", line);
	return strstr(s->headers, want) != NULL;
}

static const char dep_obj[] =
    "{\"kind\":\"Deployment\",\"apiVersion\":\"apps/v1\",\"metadata\":"
    "{\"name\":\"web\",\"namespace\":\"shop\",\"uid\":\"u-1\","
    "\"resourceVersion\":\"101\",\"generation\":1},\"spec\":{}}\n";
static const char svc_obj[] =
    "{\"kind\":\"Service\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":"
    "\"web\",\"namespace\":\"shop\"},\"spec\":{\"clusterIP\":"
    "\"10.96.0.7\"}}";

static void test_deploy_request_shape(void)
{
	const struct step steps[] = {{201, dep_obj}, {201, svc_obj}};
	const char *req = "{\"name\":\"web\",\"namespace\":\"shop\",\"image\":"
			  "\"nginx:1.27\",\"replicas\":2,\"ports\":[{\"name\":"
			  "\"http\",\"container_port\":80,\"protocol\":"
			  "\"TCP\"}],\"environment\":{\"MODE\":\"prod\","
			  "\"A\":\"1\"},\"resources\":{\"limits\":{\"cpu\":"
			  "\"500m\",\"memory\":\"256Mi\"},\"requests\":"
			  "{\"cpu\":1}},\"labels\":{\"tier\":\"front\"},"
			  "\"annotations\":{\"team\":\"a\"}}";
	struct fake f;
	struct k8s_shared *sh;
	struct k8s_client *c;
	struct k8s_error err;
	json_t *data = json_loads(req, 0, NULL), *reply, *body, *want;
	char *dump;

	fake_start(&f, steps, 2);
	sh = shared_for(f.port, "tok-1", NULL, 5000);
	c = k8s_client_new(sh);
	reply = k8s_op_deploy(c, data, &err);
	CHECK(reply != NULL);
	dump = json_dumps(reply, JSON_SORT_KEYS | JSON_COMPACT);
	CHECK_STR(dump, "{\"deployment\":{\"generation\":1,\"name\":\"web\","
			"\"namespace\":\"shop\",\"resource_version\":\"101\","
			"\"uid\":\"u-1\"},\"message\":\"deployment shop/web "
			"applied\",\"service\":{\"cluster_ip\":\"10.96.0.7\","
			"\"name\":\"web\"},\"success\":true}");
	free(dump);
	k8s_client_free(c);
	k8s_shared_free(sh);
	fake_stop(&f);

	CHECK_INT(f.nseen, 2);
	CHECK_INT(f.connections, 1); /* keep-alive */
	CHECK_STR(f.seen[0].method, "PATCH");
	CHECK_STR(f.seen[0].target, "/apis/apps/v1/namespaces/shop/"
				    "deployments/web?fieldManager=pipeops-agent"
				    "&force=true");
	CHECK(has_header(&f.seen[0], "Content-Type: "
				     "application/apply-patch+yaml"));
	CHECK(has_header(&f.seen[0], "Authorization: Bearer tok-1"));
	CHECK(has_header(&f.seen[0], "Accept: application/json"));
	CHECK(has_header(&f.seen[0],
			 "User-Agent: pipeops-agent/" PIPEOPS_VERSION));
	body = json_loads(f.seen[0].body ? f.seen[0].body : "", 0, NULL);
	want = json_loads(
	    "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\","
	    "\"metadata\":{\"name\":\"web\",\"namespace\":\"shop\","
	    "\"labels\":{\"tier\":\"front\",\"app\":\"web\"},"
	    "\"annotations\":{\"team\":\"a\"}},\"spec\":{\"replicas\":2,"
	    "\"selector\":{\"matchLabels\":{\"app\":\"web\"}},"
	    "\"template\":{\"metadata\":{\"labels\":{\"tier\":\"front\","
	    "\"app\":\"web\"}},\"spec\":{\"containers\":[{\"name\":"
	    "\"web\",\"image\":\"nginx:1.27\",\"ports\":[{\"containerPort\""
	    ":80,\"protocol\":\"TCP\",\"name\":\"http\"}],\"env\":["
	    "{\"name\":\"A\",\"value\":\"1\"},{\"name\":\"MODE\","
	    "\"value\":\"prod\"}],\"resources\":{\"limits\":{\"cpu\":"
	    "\"500m\",\"memory\":\"256Mi\"},\"requests\":{\"cpu\":"
	    "\"1\"}}}]}}}}",
	    0, NULL);
	CHECK(body && want && json_equal(body, want));
	if (!body || !want || !json_equal(body, want))
		fprintf(stderr, "  body: %s\n", f.seen[0].body);
	json_decref(body);
	json_decref(want);

	CHECK_STR(f.seen[1].method, "PATCH");
	CHECK_STR(f.seen[1].target, "/api/v1/namespaces/shop/services/web?"
				    "fieldManager=pipeops-agent&force=true");
	body = json_loads(f.seen[1].body ? f.seen[1].body : "", 0, NULL);
	want = json_loads(
	    "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":"
	    "{\"name\":\"web\",\"namespace\":\"shop\",\"labels\":{\"tier\":"
	    "\"front\",\"app\":\"web\"}},\"spec\":{\"type\":\"ClusterIP\","
	    "\"selector\":{\"app\":\"web\"},\"ports\":[{\"port\":80,"
	    "\"targetPort\":80,\"protocol\":\"TCP\",\"name\":\"http\"}]}}",
	    0, NULL);
	CHECK(body && want && json_equal(body, want));
	if (!body || !want || !json_equal(body, want))
		fprintf(stderr, "  body: %s\n", f.seen[1].body);
	json_decref(body);
	json_decref(want);
	json_decref(reply);
	json_decref(data);
	fake_free(&f);
}

static void test_apply_unsupported_falls_back(void)
{
	const char *s415 = "{\"kind\":\"Status\",\"apiVersion\":\"v1\","
			   "\"metadata\":{},\"status\":\"Failure\",\"message\":"
			   "\"the body of the request was in an unknown "
			   "format\",\"reason\":\"UnsupportedMediaType\","
			   "\"code\":415}";
	const char *s404 = "{\"kind\":\"Status\",\"apiVersion\":\"v1\","
			   "\"metadata\":{},\"status\":\"Failure\",\"message\":"
			   "\"deployments.apps \\\"web\\\" not found\","
			   "\"reason\":\"NotFound\",\"code\":404}";
	const char *s409 = "{\"kind\":\"Status\",\"apiVersion\":\"v1\","
			   "\"metadata\":{},\"status\":\"Failure\",\"message\":"
			   "\"Operation cannot be fulfilled\",\"reason\":"
			   "\"Conflict\",\"code\":409}";
	const struct step steps[] = {
	    {415, s415},    {404, s404},    {201, dep_obj}, /* create */
	    {415, s415},    {200, dep_obj}, {409, s409},    /* update */
	    {200, dep_obj}, {200, dep_obj},
	};
	struct fake f;
	struct k8s_shared *sh;
	struct k8s_client *c;
	struct k8s_error err;
	json_t *data = json_loads("{\"name\":\"web\",\"namespace\":\"shop\","
				  "\"image\":\"nginx\"}",
				  0, NULL);
	json_t *r1, *r2;

	fake_start(&f, steps, ARRAY_SIZE(steps));
	sh = shared_for(f.port, "t", NULL, 5000);
	c = k8s_client_new(sh);
	r1 = k8s_op_deploy(c, data, &err);
	CHECK(r1 != NULL);
	r2 = k8s_op_deploy(c, data, &err);
	CHECK(r2 != NULL);
	k8s_client_free(c);
	k8s_shared_free(sh);
	fake_stop(&f);
	CHECK_INT(f.nseen, 8);
	CHECK_STR(f.seen[1].method, "GET");
	CHECK_STR(f.seen[1].target,
		  "/apis/apps/v1/namespaces/shop/deployments/web");
	CHECK_STR(f.seen[2].method, "POST");
	CHECK_STR(f.seen[2].target, "/apis/apps/v1/namespaces/shop/"
				    "deployments?fieldManager=pipeops-agent");
	CHECK(has_header(&f.seen[2], "Content-Type: application/json"));
	CHECK_STR(f.seen[5].method, "PUT");
	CHECK(strstr(f.seen[5].body, "\"resourceVersion\":\"101\"") != NULL);
	CHECK(strstr(f.seen[5].body, "\"image\":\"nginx\"") != NULL);
	CHECK_STR(f.seen[6].method, "GET");
	CHECK_STR(f.seen[7].method, "PUT");
	json_decref(r1);
	json_decref(r2);
	json_decref(data);
	fake_free(&f);
}

static void test_5xx_without_status(void)
{
	const struct step steps[] = {{503, "upstream connect error\n"}};
	struct fake f;
	struct k8s_shared *sh;
	struct k8s_client *c;
	struct k8s_error err;
	json_t *data = json_loads("{\"name\":\"web\",\"replicas\":3}", 0, NULL);

	fake_start(&f, steps, 1);
	sh = shared_for(f.port, "t", NULL, 5000);
	c = k8s_client_new(sh);
	CHECK(k8s_op_scale(c, data, &err) == NULL);
	CHECK_INT(err.code, 503);
	CHECK_STR(err.reason, "ServiceUnavailable");
	CHECK_STR(err.message, "Kubernetes API returned HTTP 503 "
			       "(ServiceUnavailable) for GET /apis/apps/v1/"
			       "namespaces/default/deployments/web/scale: "
			       "upstream connect error");
	k8s_client_free(c);
	k8s_shared_free(sh);
	fake_stop(&f);
	json_decref(data);
	fake_free(&f);
}

static void test_request_timeout(void)
{
	const struct step steps[] = {{0, ""}};
	struct fake f;
	struct k8s_shared *sh;
	struct k8s_client *c;
	struct k8s_error err;
	json_t *data = json_loads("{\"name\":\"web\"}", 0, NULL);
	int64_t t0;

	fake_start(&f, steps, 1);
	sh = shared_for(f.port, "t", NULL, 1000);
	c = k8s_client_new(sh);
	t0 = clock_mono_ms();
	CHECK(k8s_op_delete(c, data, &err) == NULL);
	CHECK(clock_mono_ms() - t0 < 3000);
	CHECK_INT(err.code, 0);
	CHECK_STR(err.reason, "Timeout");
	CHECK_STR(err.message, "Kubernetes API request timed out after 1s "
			       "(DELETE /apis/apps/v1/namespaces/default/"
			       "deployments/web)");
	k8s_client_free(c);
	k8s_shared_free(sh);
	fake_stop(&f);
	json_decref(data);
	fake_free(&f);
}

static void test_connection_refused(void)
{
	struct fake f;
	struct k8s_shared *sh;
	struct k8s_client *c;
	struct k8s_error err;
	char want[128];
	int port;

	/* A port that was just free: nothing listens there. */
	fake_start(&f, NULL, 0);
	port = f.port;
	fake_stop(&f);
	sh = shared_for(port, "t", NULL, 2000);
	c = k8s_client_new(sh);
	CHECK(k8s_cluster_info(c, &err) == NULL);
	CHECK_INT(err.code, 0);
	CHECK_STR(err.reason, "Unreachable");
	snprintf(want, sizeof(want),
		 "cannot reach the Kubernetes API at "
		 "http://127.0.0.1:%d: Connection refused",
		 port);
	CHECK_STR(err.message, want);
	k8s_client_free(c);
	k8s_shared_free(sh);
}

static void test_401_rereads_token_file(void)
{
	const char *s401 = "{\"kind\":\"Status\",\"apiVersion\":\"v1\","
			   "\"metadata\":{},\"status\":\"Failure\",\"message\":"
			   "\"Unauthorized\",\"reason\":\"Unauthorized\","
			   "\"code\":401}";
	const char *ver = "{\"major\":\"1\",\"minor\":\"32\",\"gitVersion\":"
			  "\"v1.32.4\"}";
	const char *nodes = "{\"kind\":\"NodeList\",\"apiVersion\":\"v1\","
			    "\"metadata\":{\"resourceVersion\":\"5\"},"
			    "\"items\":[{\"metadata\":{\"name\":\"n1\"}}]}";
	const struct step steps[] = {
	    {401, s401}, /* old token, file unchanged */
	    {401, s401},
	    {200, ver},
	    {200, nodes},
	};
	char path[] = "/tmp/k8s-token-XXXXXX";
	int fd = mkstemp(path);
	struct fake f;
	struct k8s_shared *sh;
	struct k8s_client *c;
	struct k8s_error err;
	json_t *info;
	char *dump;

	CHECK(write(fd, "old-token\n", 10) == 10);
	close(fd);
	fake_start(&f, steps, ARRAY_SIZE(steps));
	sh = shared_for(f.port, NULL, path, 5000);
	c = k8s_client_new(sh);
	/* Same token in the file: no second attempt, the 401 stands. */
	CHECK(k8s_cluster_info(c, &err) == NULL);
	CHECK_INT(err.code, 401);
	CHECK_STR(err.reason, "Unauthorized");
	CHECK_STR(err.message, "Unauthorized");
	/* Rotated file: the 401 makes the client read it and retry. */
	fd = open(path, O_WRONLY | O_TRUNC);
	CHECK(write(fd, "  new-token \n", 13) == 13);
	close(fd);
	info = k8s_cluster_info(c, &err);
	CHECK(info != NULL);
	dump = json_dumps(info, JSON_SORT_KEYS | JSON_COMPACT);
	CHECK_STR(dump, "{\"node_count\":1,\"version\":\"v1.32.4\"}");
	free(dump);
	json_decref(info);
	/* An unreadable file later keeps the token (checked on reload). */
	unlink(path);
	k8s_client_free(c);
	k8s_shared_free(sh);
	fake_stop(&f);
	CHECK_INT(f.nseen, 4);
	CHECK(has_header(&f.seen[0], "Authorization: Bearer old-token"));
	CHECK(has_header(&f.seen[1], "Authorization: Bearer old-token"));
	CHECK(has_header(&f.seen[2], "Authorization: Bearer new-token"));
	CHECK(has_header(&f.seen[3], "Authorization: Bearer new-token"));
	CHECK_STR(f.seen[3].target, "/api/v1/nodes?limit=500");
	fake_free(&f);
}

static void test_paging_and_shape(void)
{
	const char *p1 =
	    "{\"kind\":\"DeploymentList\",\"metadata\":{\"resourceVersion\""
	    ":\"9\",\"continue\":\"eyJ2Ijoi+/=\"},\"items\":[{\"metadata\":"
	    "{\"name\":\"a\",\"namespace\":\"shop\",\"generation\":2,"
	    "\"creationTimestamp\":\"2025-05-01T10:00:00Z\",\"labels\":"
	    "{\"app\":\"a\"}},\"spec\":{\"replicas\":2},\"status\":"
	    "{\"observedGeneration\":2,\"replicas\":2,\"readyReplicas\":2,"
	    "\"availableReplicas\":2,\"updatedReplicas\":2}}]}";
	const char *p2 =
	    "{\"kind\":\"DeploymentList\",\"metadata\":{\"resourceVersion\""
	    ":\"9\"},\"items\":[{\"metadata\":{\"name\":\"b\",\"namespace\""
	    ":\"shop\",\"generation\":1,\"creationTimestamp\":"
	    "\"2025-05-01T10:00:01Z\"},\"spec\":{\"replicas\":1},"
	    "\"status\":{}}]}";
	const struct step steps[] = {{200, p1}, {200, p2}};
	struct fake f;
	struct k8s_shared *sh;
	struct k8s_client *c;
	struct k8s_error err;
	json_t *data = json_loads("{\"namespace\":\"shop\",\"resource_type\":"
				  "\"deployments\"}",
				  0, NULL);
	json_t *reply;
	char *dump;

	fake_start(&f, steps, 2);
	sh = shared_for(f.port, "t", NULL, 5000);
	c = k8s_client_new(sh);
	reply = k8s_op_get_resources(c, data, &err);
	CHECK(reply != NULL);
	json_object_del(reply, "timestamp");
	dump = json_dumps(reply, JSON_SORT_KEYS | JSON_COMPACT);
	CHECK_STR(
	    dump,
	    "{\"deployments\":[{\"available_replicas\":2,\"created_at\":"
	    "\"2025-05-01T10:00:00Z\",\"labels\":{\"app\":\"a\"},\"name\":"
	    "\"a\",\"namespace\":\"shop\",\"ready\":true,"
	    "\"ready_replicas\":2,\"replicas\":2,\"updated_replicas\":2},"
	    "{\"available_replicas\":0,\"created_at\":"
	    "\"2025-05-01T10:00:01Z\",\"labels\":{},\"name\":\"b\","
	    "\"namespace\":\"shop\",\"ready\":false,\"ready_replicas\":0,"
	    "\"replicas\":1,\"updated_replicas\":0}],\"namespace\":"
	    "\"shop\",\"success\":true}");
	free(dump);
	k8s_client_free(c);
	k8s_shared_free(sh);
	fake_stop(&f);
	CHECK_STR(f.seen[0].target,
		  "/apis/apps/v1/namespaces/shop/deployments?limit=500");
	CHECK_STR(f.seen[1].target, "/apis/apps/v1/namespaces/shop/"
				    "deployments?limit=500&continue="
				    "eyJ2Ijoi%2B%2F%3D");
	json_decref(reply);
	json_decref(data);
	fake_free(&f);
}

static void test_scale_conflict_retried(void)
{
	const char *scale = "{\"kind\":\"Scale\",\"apiVersion\":"
			    "\"autoscaling/v1\",\"metadata\":{\"name\":\"web\","
			    "\"namespace\":\"default\",\"resourceVersion\":"
			    "\"7\"},\"spec\":{\"replicas\":2},\"status\":"
			    "{\"replicas\":2,\"selector\":\"app=web\"}}";
	const char *scaled0 = "{\"kind\":\"Scale\",\"apiVersion\":"
			      "\"autoscaling/v1\",\"metadata\":{\"name\":"
			      "\"web\",\"resourceVersion\":\"9\"},\"spec\":{},"
			      "\"status\":{\"replicas\":2}}";
	const char *s409 = "{\"kind\":\"Status\",\"apiVersion\":\"v1\","
			   "\"metadata\":{},\"status\":\"Failure\",\"message\":"
			   "\"Operation cannot be fulfilled\",\"reason\":"
			   "\"Conflict\",\"code\":409}";
	const struct step steps[] = {
	    {200, scale},
	    {409, s409},
	    {200, scale},
	    {200, scaled0},
	};
	struct fake f;
	struct k8s_shared *sh;
	struct k8s_client *c;
	struct k8s_error err;
	json_t *data = json_loads("{\"name\":\"web\",\"replicas\":0}", 0, NULL);
	json_t *reply;
	char *dump;

	fake_start(&f, steps, ARRAY_SIZE(steps));
	sh = shared_for(f.port, "t", NULL, 5000);
	c = k8s_client_new(sh);
	reply = k8s_op_scale(c, data, &err);
	CHECK(reply != NULL);
	dump = json_dumps(reply, JSON_SORT_KEYS | JSON_COMPACT);
	CHECK_STR(dump, "{\"message\":\"deployment default/web scaled to 0\","
			"\"name\":\"web\",\"namespace\":\"default\","
			"\"previous_replicas\":2,\"replicas\":0,"
			"\"success\":true}");
	free(dump);
	k8s_client_free(c);
	k8s_shared_free(sh);
	fake_stop(&f);
	CHECK_INT(f.nseen, 4);
	CHECK_STR(f.seen[1].method, "PUT");
	CHECK(strstr(f.seen[1].body, "\"resourceVersion\":\"7\"") != NULL);
	CHECK(strstr(f.seen[1].body, "\"spec\":{\"replicas\":0}") != NULL);
	json_decref(reply);
	json_decref(data);
	fake_free(&f);
}

static void test_teardown(void)
{
	curl_global_cleanup();
}

static const struct check_case check_cases[] = {
    CHECK_CASE(test_deploy_request_shape),
    CHECK_CASE(test_apply_unsupported_falls_back),
    CHECK_CASE(test_5xx_without_status),
    CHECK_CASE(test_request_timeout),
    CHECK_CASE(test_connection_refused),
    CHECK_CASE(test_401_rereads_token_file),
    CHECK_CASE(test_paging_and_shape),
    CHECK_CASE(test_scale_conflict_retried),
    CHECK_CASE(test_teardown),
};

CHECK_MAIN()
