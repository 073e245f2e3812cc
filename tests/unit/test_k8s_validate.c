/*
 * test_k8s_validate: the k8s name/label/quantity predicates, Status ->
 * k8s_error, and request validation of the operations (which fails before
 * any call, so the client points at a port nobody listens on).
 */
#include <curl/curl.h>
#include <jansson.h>
#include <string.h>

#include "k8s/k8s.h"
#include "k8s/status.h"
#include "k8s/validate.h"
#include "tests/unit/check.h"

struct pred_case {
	const char *s;
	bool ok;
};

static void run_pred(bool (*fn)(const char *), const struct pred_case *t,
		     size_t n, const char *what)
{
	for (size_t i = 0; i < n; i++) {
		if (fn(t[i].s) != t[i].ok) {
			fprintf(stderr, "  %s(\"%s\") != %d\n", what, t[i].s,
				t[i].ok);
			check_failures_in_case++;
		}
	}
}

#define RUN_PRED(fn, table) run_pred(fn, table, ARRAY_LEN(table), #fn)
#define ARRAY_LEN(a)	    (sizeof(a) / sizeof((a)[0]))

static const char label63[] =
    "a23456789012345678901234567890123456789012345678901234567890123";
static const char label64[] =
    "a234567890123456789012345678901234567890123456789012345678901234";

static void test_dns1123_label(void)
{
	const struct pred_case t[] = {
	    {"web", true},    {"a", true},     {"0", true},
	    {"web-1", true},  {"1web", true},  {label63, true},
	    {label64, false}, {"", false},     {"Web", false},
	    {"web_1", false}, {"-web", false}, {"web-", false},
	    {"web.x", false}, {"we b", false}, {"wéb", false},
	};

	RUN_PRED(k8s_is_dns1123_label, t);
	CHECK_STR(k8s_dns1123_label_problem("team.a"), "must not contain dots");
	CHECK_STR(k8s_dns1123_label_problem(label64),
		  "must be no more than 63 characters");
	CHECK(strstr(k8s_dns1123_label_problem("Web_1"), "RFC 1123 label"));
}

static void test_dns1123_subdomain_and_1035(void)
{
	const struct pred_case sub[] = {
	    {"web", true},     {"web.example.com", true}, {"a.b-c.d", true},
	    {"", false},       {".web", false},		  {"web.", false},
	    {"web..x", false}, {"Web.x", false},
	};
	const struct pred_case l1035[] = {
	    {"web", true}, {"w-1", true},  {"1web", false},
	    {"-w", false}, {"w.x", false}, {"", false},
	};

	RUN_PRED(k8s_is_dns1123_subdomain, sub);
	RUN_PRED(k8s_is_dns1035_label, l1035);
}

static void test_qualified_name_and_label_value(void)
{
	const struct pred_case q[] = {
	    {"app", true},
	    {"tier", true},
	    {"app.kubernetes.io/name", true},
	    {"example.com/My_Key.1", true},
	    {"A", true},
	    {"", false},
	    {"/x", false},
	    {"x/", false},
	    {"a/b/c", false},
	    {"Example.com/x", false},
	    {"_x", false},
	    {"x_", false},
	    {"with space", false},
	    {label64, false},
	};
	const struct pred_case v[] = {
	    {"", true},	     {"front", true},  {"a.b_c-D", true},
	    {label63, true}, {label64, false}, {"-a", false},
	    {"a b", false},  {"a/b", false},
	};

	RUN_PRED(k8s_is_qualified_name, q);
	RUN_PRED(k8s_is_label_value, v);
}

static void test_env_and_port_names(void)
{
	const struct pred_case env[] = {
	    {"MODE", true}, {"_X", true}, {"a.b-c", true}, {"X1", true},
	    {"1X", false},  {"", false},  {"A=B", false},  {"A B", false},
	};
	const struct pred_case port[] = {
	    {"http", true},
	    {"h2c", true},
	    {"web-80", true},
	    {"80", false},
	    {"HTTP", false},
	    {"-http", false},
	    {"http-", false},
	    {"a--b", false},
	    {"", false},
	    {"abcdefghijklmnop", false}, /* 16 */
	    {"abcdefghijklmno", true},	 /* 15 */
	};

	RUN_PRED(k8s_is_env_var_name, env);
	RUN_PRED(k8s_is_port_name, port);
}

static void test_quantity(void)
{
	const struct pred_case t[] = {
	    {"500m", true}, {"1", true},      {"0.5", true},   {".5", true},
	    {"1.", true},   {"128Mi", true},  {"1Gi", true},   {"2G", true},
	    {"1k", true},   {"1e3", true},    {"1E-3", true},  {"1E", true},
	    {"1Ei", true},  {"100n", true},   {"5u", true},    {"+1", true},
	    {"-1", true},   {"", false},      {"m", false},    {"1K", false},
	    {"1mi", false}, {"1.2.3", false}, {"1 Gi", false}, {"abc", false},
	    {"1e", false},  {"1Mb", false},   {".", false},    {"1e3Mi", false},
	};
	const struct pred_case r[] = {
	    {"cpu", true},
	    {"memory", true},
	    {"ephemeral-storage", true},
	    {"hugepages-2Mi", true},
	    {"nvidia.com/gpu", true},
	    {"gpu", false},
	    {"hugepages-", false},
	    {"CPU", false},
	};

	RUN_PRED(k8s_is_quantity, t);
	RUN_PRED(k8s_is_resource_name, r);
}

static void test_status_not_found(void)
{
	const char *body =
	    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},"
	    "\"status\":\"Failure\",\"message\":\"deployments.apps "
	    "\\\"web\\\" not found\",\"reason\":\"NotFound\",\"details\":"
	    "{\"name\":\"web\",\"group\":\"apps\",\"kind\":"
	    "\"deployments\"},\"code\":404}\n";
	struct k8s_error err;

	k8s_status_to_error(404, body, strlen(body), "GET",
			    "/apis/apps/v1/namespaces/x/deployments/web", &err);
	CHECK_INT(err.code, 404);
	CHECK_STR(err.reason, "NotFound");
	CHECK_STR(err.message, "deployments.apps \"web\" not found");
}

static void test_status_unauthorized_and_conflict(void)
{
	const char *u = "{\"kind\":\"Status\",\"apiVersion\":\"v1\","
			"\"metadata\":{},\"status\":\"Failure\",\"message\":"
			"\"Unauthorized\",\"reason\":\"Unauthorized\","
			"\"code\":401}";
	const char *c = "{\n  \"kind\": \"Status\",\n  \"apiVersion\": \"v1\","
			"\n  \"metadata\": {},\n  \"status\": \"Failure\",\n"
			"  \"message\": \"Operation cannot be fulfilled on "
			"deployments.apps \\\"web\\\": the object has been "
			"modified; please apply your changes to the latest "
			"version and try again\",\n  \"reason\": \"Conflict\","
			"\n  \"code\": 409\n}\n";
	struct k8s_error err;

	k8s_status_to_error(401, u, strlen(u), "GET", "/api", &err);
	CHECK_INT(err.code, 401);
	CHECK_STR(err.reason, "Unauthorized");
	CHECK_STR(err.message, "Unauthorized");
	/* Pretty-printed bodies (User-Agent curl/...) parse the same. */
	k8s_status_to_error(409, c, strlen(c), "PUT", "/x", &err);
	CHECK_INT(err.code, 409);
	CHECK_STR(err.reason, "Conflict");
	CHECK(!strncmp(err.message,
		       "Operation cannot be fulfilled on "
		       "deployments.apps \"web\": the object has been "
		       "modified",
		       80));
}

static void test_status_invalid_escapes_and_causes(void)
{
	/* Go escapes < > & as \u003c...; no message: built from causes. */
	const char *b = "{\"kind\":\"Status\",\"apiVersion\":\"v1\","
			"\"metadata\":{},\"status\":\"Failure\",\"reason\":"
			"\"Invalid\",\"details\":{\"name\":\"web\",\"kind\":"
			"\"Deployment\",\"causes\":[{\"reason\":"
			"\"FieldValueInvalid\",\"message\":\"Invalid value: "
			"\\\"\\u003cnone\\u003e\\\"\",\"field\":"
			"\"spec.x\"},{\"reason\":\"FieldValueRequired\","
			"\"message\":\"Required value\",\"field\":"
			"\"spec.y\"}]},\"code\":422}";
	struct k8s_error err;

	k8s_status_to_error(422, b, strlen(b), "POST", "/x", &err);
	CHECK_INT(err.code, 422);
	CHECK_STR(err.reason, "Invalid");
	CHECK_STR(err.message, "spec.x: Invalid value: \"<none>\", spec.y: "
			       "Required value");
}

static void test_status_without_status_body(void)
{
	struct k8s_error err;
	const char *html = "<html>\r\n<body>upstream\x01 busy</body></html>";

	k8s_status_to_error(503, html, strlen(html), "GET",
			    "/api/v1/nodes?limit=500", &err);
	CHECK_INT(err.code, 503);
	CHECK_STR(err.reason, "ServiceUnavailable");
	CHECK_STR(err.message, "Kubernetes API returned HTTP 503 "
			       "(ServiceUnavailable) for GET /api/v1/nodes: "
			       "<html> <body>upstream? busy</body></html>");
	k8s_status_to_error(500, "", 0, "PUT", "/x", &err);
	CHECK_STR(err.reason, "InternalError");
	CHECK_STR(err.message, "Kubernetes API returned HTTP 500 "
			       "(InternalError) for PUT /x");
	k8s_status_to_error(502, "{\"a\":1}", 7, "GET", "/y", &err);
	CHECK_INT(err.code, 502);
	CHECK_STR(err.reason, "InternalError");
	k8s_status_to_error(504, "x", 1, "GET", "/y", &err);
	CHECK_STR(err.reason, "Timeout");
	k8s_status_to_error(404, "404 page not found\n", 19, "GET", "/nope",
			    &err);
	CHECK_INT(err.code, 404);
	CHECK_STR(err.reason, "NotFound");
	CHECK_STR(err.message, "Kubernetes API returned HTTP 404 (NotFound) "
			       "for GET /nope: 404 page not found");
	k8s_status_to_error(418, "", 0, "GET", "/t", &err);
	CHECK_STR(err.reason, "");
	CHECK_STR(err.message, "Kubernetes API returned HTTP 418 for GET /t");
}

static void test_utf8_truncation(void)
{
	char big[2000];
	struct k8s_error err;
	json_t *s;

	/* 3-byte characters: a cut must not split one. */
	for (size_t i = 0; i + 3 < sizeof(big); i += 3)
		memcpy(big + i, "\xe2\x82\xac", 3);
	big[sizeof(big) - 2] = '\0';
	k8s_error_set(&err, 0, NULL, "%s", big);
	CHECK(strlen(err.message) < sizeof(err.message));
	CHECK_INT(strlen(err.message) % 3, 0);
	s = json_string(err.message);
	CHECK(s != NULL);
	json_decref(s);
	/* Invalid UTF-8 becomes '?'. */
	k8s_error_set(&err, 0, "X", "a\xff\xc3-b");
	CHECK_STR(err.message, "a?"
			       "?-b");
	CHECK_STR(err.reason, "X");
}

/* ---- request validation -------------------------------------------- */

static struct k8s_shared *sh;
static struct k8s_client *cl;

static void setup(void)
{
	struct k8s_settings s = {
	    .api_server = "https://127.0.0.1:1",
	    .token = "t",
	    .default_namespace = "apps",
	    .request_timeout_ms = 2000,
	    .connect_timeout_ms = 1000,
	};
	struct k8s_error err;

	if (!sh) {
		sh = k8s_shared_new(&s, &err);
		cl = k8s_client_new(sh);
	}
}

/* Runs @op on the JSON text @req and expects a validation failure whose
 * message is @msg. */
static void expect_invalid(json_t *(*op)(struct k8s_client *, json_t *,
					 struct k8s_error *),
			   const char *req, const char *msg)
{
	json_error_t jerr;
	json_t *data = json_loads(req, 0, &jerr);
	struct k8s_error err = {.code = -1};
	json_t *reply;

	setup();
	if (!data) {
		fprintf(stderr, "  bad test JSON %s: %s\n", req, jerr.text);
		check_failures_in_case++;
		return;
	}
	reply = op(cl, data, &err);
	CHECK(reply == NULL);
	CHECK_INT(err.code, 0);
	CHECK_STR(err.reason, "Invalid");
	if (strcmp(err.message, msg)) {
		fprintf(stderr,
			"  request %s\n    got      %s\n    expected "
			"%s\n",
			req, err.message, msg);
		check_failures_in_case++;
	}
	json_decref(reply);
	json_decref(data);
}

#define DEP(extra) "{\"name\":\"web\",\"image\":\"nginx:1.27\"" extra "}"

static void test_deploy_validation(void)
{
	static const struct {
		const char *req, *msg;
	} t[] = {
	    {"{}", "invalid deploy request: name: required"},
	    {"{\"name\":5}", "invalid deploy request: name: must be a "
			     "string"},
	    {"{\"name\":\"Web_1\",\"image\":\"x\"}",
	     "invalid deploy request: name: invalid value \"Web_1\": a "
	     "lowercase RFC 1123 label must consist of lower case "
	     "alphanumeric characters or '-', and must start and end "
	     "with an alphanumeric character (e.g. 'my-name',  or "
	     "'123-abc')"},
	    {"{\"name\":\"web.v2\",\"image\":\"x\"}",
	     "invalid deploy request: name: invalid value \"web.v2\": "
	     "must not contain dots"},
	    {"{\"name\":\"web\"}", "invalid deploy request: image: "
				   "required"},
	    {"{\"name\":\"web\",\"image\":\"\"}",
	     "invalid deploy request: image: required"},
	    {DEP(",\"image\":\"a b\""),
	     "invalid deploy request: image: must be a string without "
	     "spaces or control characters"},
	    {DEP(",\"namespace\":\"Shop\""),
	     "invalid deploy request: namespace: invalid value \"Shop\": "
	     "a lowercase RFC 1123 label must consist of lower case "
	     "alphanumeric characters or '-', and must start and end "
	     "with an alphanumeric character (e.g. 'my-name',  or "
	     "'123-abc')"},
	    {DEP(",\"replicas\":-1"),
	     "invalid deploy request: replicas: -1 must be greater than "
	     "or equal to 0"},
	    {DEP(",\"replicas\":\"2\""),
	     "invalid deploy request: replicas: must be an integer"},
	    {DEP(",\"replicas\":1.5"),
	     "invalid deploy request: replicas: 1.5 is not an integer"},
	    {DEP(",\"replicas\":3000000000"),
	     "invalid deploy request: replicas: 3000000000 is out of "
	     "range 0..2147483647"},
	    {DEP(",\"ports\":[{\"container_port\":70000}]"),
	     "invalid deploy request: ports[0].container_port: 70000 is "
	     "out of range 1..65535"},
	    {DEP(",\"ports\":[{\"container_port\":80},{\"name\":\"x\"}]"),
	     "invalid deploy request: ports[1].container_port: required"},
	    {DEP(",\"ports\":[{\"container_port\":0}]"),
	     "invalid deploy request: ports[0].container_port: 0 is out "
	     "of range 1..65535"},
	    {DEP(",\"ports\":{\"container_port\":80}"),
	     "invalid deploy request: ports: must be an array"},
	    {DEP(",\"ports\":[{\"container_port\":80,\"protocol\":"
		 "\"ICMP\"}]"),
	     "invalid deploy request: ports[0].protocol: unsupported "
	     "value \"ICMP\": supported values: TCP, UDP, SCTP"},
	    {DEP(",\"ports\":[{\"container_port\":80,\"name\":\"HTTP\"}]"),
	     "invalid deploy request: ports[0].name: invalid value "
	     "\"HTTP\": must be at most 15 lower case letters, digits or "
	     "'-', with at least one letter"},
	    {DEP(",\"ports\":[{\"container_port\":80},"
		 "{\"container_port\":80}]"),
	     "invalid deploy request: ports[1]: duplicate container_port "
	     "80/TCP"},
	    {DEP(",\"ports\":[{\"container_port\":80,\"service_port\":"
		 "99999}]"),
	     "invalid deploy request: ports[0].service_port: 99999 is "
	     "out of range 1..65535"},
	    {"{\"name\":\"1web\",\"image\":\"x\",\"ports\":"
	     "[{\"container_port\":80}]}",
	     "invalid deploy request: name: invalid value \"1web\": a "
	     "Service is created for the ports, and a Service name must "
	     "start with a letter"},
	    {DEP(",\"environment\":{\"1BAD\":\"x\"}"),
	     "invalid deploy request: environment: invalid key \"1BAD\": "
	     "an environment variable name must consist of alphabetic "
	     "characters, digits, '_', '-', or '.', and must not start "
	     "with a digit"},
	    {DEP(",\"environment\":{\"MODE\":1}"),
	     "invalid deploy request: environment.MODE: value must be a "
	     "string"},
	    {DEP(",\"environment\":[\"A=B\"]"),
	     "invalid deploy request: environment: must be an object of "
	     "strings"},
	    {DEP(",\"resources\":{\"limits\":{\"cpu\":\"5x\"}}"),
	     "invalid deploy request: resources.limits.cpu: invalid "
	     "quantity \"5x\" (expected e.g. \"500m\", \"2\", \"128Mi\", "
	     "\"1G\")"},
	    {DEP(",\"resources\":{\"requests\":{\"memory\":\"-1Mi\"}}"),
	     "invalid deploy request: resources.requests.memory: -1Mi "
	     "must be greater than or equal to 0"},
	    {DEP(",\"resources\":{\"limit\":{}}"),
	     "invalid deploy request: resources.limit: unsupported key: "
	     "supported keys: limits, requests"},
	    {DEP(",\"resources\":{\"limits\":{\"gpu\":\"1\"}}"),
	     "invalid deploy request: resources.limits.gpu: unknown "
	     "resource name: use cpu, memory, ephemeral-storage, "
	     "hugepages-<size> or a domain-prefixed name"},
	    {DEP(",\"resources\":{\"limits\":{\"cpu\":true}}"),
	     "invalid deploy request: resources.limits.cpu: must be a "
	     "quantity string such as \"500m\" or \"128Mi\""},
	    {DEP(",\"labels\":{\"bad key\":\"x\"}"),
	     "invalid deploy request: labels: invalid key \"bad key\": "
	     "must be [prefix/]name with name at most 63 alphanumerics, "
	     "'-', '_' or '.'"},
	    {DEP(",\"labels\":{\"tier\":\"front end\"}"),
	     "invalid deploy request: labels.tier: invalid value "
	     "\"front end\": must be empty or at most 63 alphanumerics, "
	     "'-', '_' or '.', starting and ending with an "
	     "alphanumeric"},
	    {DEP(",\"labels\":{\"app\":\"other\"}"),
	     "invalid deploy request: labels.app: must be \"web\" or "
	     "absent: the selector is app=<name>"},
	    {DEP(",\"annotations\":{\"team\":7}"),
	     "invalid deploy request: annotations.team: value must be a "
	     "string"},
	};

	for (size_t i = 0; i < ARRAY_LEN(t); i++)
		expect_invalid(k8s_op_deploy, t[i].req, t[i].msg);
	expect_invalid(k8s_op_deploy, "[]",
		       "invalid deploy request: data must be a JSON object");
}

static void test_scale_delete_get_validation(void)
{
	expect_invalid(k8s_op_scale, "{\"name\":\"web\"}",
		       "invalid scale request: replicas: required");
	expect_invalid(k8s_op_scale, "{\"name\":\"web\",\"replicas\":-2}",
		       "invalid scale request: replicas: -2 must be greater "
		       "than or equal to 0");
	expect_invalid(k8s_op_scale, "{\"replicas\":2}",
		       "invalid scale request: name: required");
	expect_invalid(k8s_op_delete, "{\"name\":\"a/b\"}",
		       "invalid delete request: name: invalid value \"a/b\": "
		       "a lowercase RFC 1123 subdomain must consist of lower "
		       "case alphanumeric characters, '-' or '.', and must "
		       "start and end with an alphanumeric character");
	expect_invalid(k8s_op_delete, "{\"name\":\"web\",\"namespace\":7}",
		       "invalid delete request: namespace: must be a string");
	expect_invalid(k8s_op_get_resources, "{\"resource_type\":\"secrets\"}",
		       "invalid get_resources request: resource_type: "
		       "unsupported value \"secrets\": supported values: "
		       "nodes, namespaces, deployments, services, pods");
	expect_invalid(k8s_op_get_resources, "{\"namespace\":\"A\"}",
		       "invalid get_resources request: namespace: invalid "
		       "value \"A\": a lowercase RFC 1123 label must consist "
		       "of lower case alphanumeric characters or '-', and "
		       "must start and end with an alphanumeric character "
		       "(e.g. 'my-name',  or '123-abc')");
}

static void test_shared_settings(void)
{
	struct k8s_settings s = {.api_server = "ftp://x"};
	struct k8s_error err;
	struct k8s_shared *bad;

	bad = k8s_shared_new(&s, &err);
	CHECK(bad == NULL);
	CHECK_STR(err.message, "Kubernetes api_server \"ftp://x\" must be an "
			       "https:// or http:// URL");
	s.api_server = "https://127.0.0.1:6443";
	s.token_file = "/nonexistent/token";
	bad = k8s_shared_new(&s, &err);
	CHECK(bad == NULL);
	CHECK_STR(err.message, "cannot read the Kubernetes token file "
			       "/nonexistent/token: No such file or directory");
	s.token_file = NULL;
	s.token = "a\nb";
	bad = k8s_shared_new(&s, &err);
	CHECK(bad == NULL);
	k8s_shared_free(NULL);
	k8s_client_free(NULL);
}

static void test_teardown(void)
{
	k8s_client_free(cl);
	k8s_shared_free(sh);
	cl = NULL;
	sh = NULL;
	curl_global_cleanup();
}

static const struct check_case check_cases[] = {
    CHECK_CASE(test_dns1123_label),
    CHECK_CASE(test_dns1123_subdomain_and_1035),
    CHECK_CASE(test_qualified_name_and_label_value),
    CHECK_CASE(test_env_and_port_names),
    CHECK_CASE(test_quantity),
    CHECK_CASE(test_status_not_found),
    CHECK_CASE(test_status_unauthorized_and_conflict),
    CHECK_CASE(test_status_invalid_escapes_and_causes),
    CHECK_CASE(test_status_without_status_body),
    CHECK_CASE(test_utf8_truncation),
    CHECK_CASE(test_deploy_validation),
    CHECK_CASE(test_scale_delete_get_validation),
    CHECK_CASE(test_shared_settings),
    CHECK_CASE(test_teardown),
};

CHECK_MAIN()
