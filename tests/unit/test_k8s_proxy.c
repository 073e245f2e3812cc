/*
 * test_k8s_proxy: proxy_request and command logs preparation without a
 * server: the path policy, proxy_deny, headers, query encoding, body
 * decoding, stream detection and the logs request (table-driven).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8s/k8s.h"
#include "k8s/k8s_internal.h"
#include "k8s/stream.h"
#include "tests/unit/check.h"

static struct k8s_shared *shared(void)
{
	static const char *const deny[] = {"/api/v1/secrets",
					   "/api/v1/namespaces/kube-system",
					   "/apis/apps/v1/namespaces/prod"};
	struct k8s_settings s = {
	    .api_server = "http://127.0.0.1:1",
	    .token = "t",
	    .default_namespace = "default",
	    .proxy_deny = deny,
	    .n_proxy_deny = 3,
	};
	struct k8s_error err;

	return k8s_shared_new(&s, &err);
}

/* Prepare {"method": m, "path": p, ...extra}; returns the code (0 ok). */
static int prep(struct k8s_shared *sh, const char *json, struct k8s_http *h,
		struct k8s_error *err)
{
	json_error_t jerr;
	json_t *d = json_loads(json, 0, &jerr);
	int ret;

	if (!d) {
		fprintf(stderr, "  bad test json: %s\n", json);
		return -999;
	}
	memset(err, 0, sizeof(*err));
	ret = k8s_proxy_prepare(sh, d, h, err);
	json_decref(d);
	return ret ? err->code : 0;
}

static void test_path_policy(void)
{
	static const struct {
		const char *path;
		int code; /* 0: allowed */
	} cases[] = {
	    {"/api/v1/pods", 0},
	    {"/apis/apps/v1/namespaces/x/deployments/web", 0},
	    {"/version", 0},
	    {"/healthz", 0},
	    {"/readyz", 0},
	    {"/livez", 0},
	    {"/api/v1/namespaces/x/pods/", 0},
	    {"/api/v1/namespaces/x/pods/a%2Db", 0},
	    {"/apis/rbac.authorization.k8s.io/v1/clusterroles/system:x", 0},
	    {"/version/", 403},
	    {"/healthz/etcd", 403},
	    {"/api", 403},
	    {"/metrics", 403},
	    {"/debug/pprof/", 403},
	    {"/logs/", 403},
	    {"api/v1/pods", 403},
	    {"/api/v1/../../metrics", 403},
	    {"/api/v1/./pods", 403},
	    {"/api/v1/pods/..", 403},
	    {"/api/%2e%2e/metrics", 403},
	    {"/api/v1/%2fpods", 403},
	    {"/api/v1/%252e", 403},
	    {"/api/v1/pods%", 403},
	    {"/api/v1/pods%zz", 403},
	    {"/api//v1/pods", 403},
	    {"/api/v1/pods?watch=true", 403},
	    {"/api/v1/pods#x", 403},
	    {"/api/v1/po ds", 403},
	    {"/api/v1/pods\\x", 403},
	    {"/api/v1/pods;x", 403},
	    {"/api/v1/secrets", 403},
	    {"/api/v1/secrets/", 403},
	    {"/api/v1/secret%73", 403},
	    {"/api/v1/secretsx", 0},
	    {"/api/v1/namespaces/kube-system/pods", 403},
	    {"/api/v1/namespaces/kube-systemx/pods", 0},
	    /* the legacy watch form reaches the same objects */
	    {"/api/v1/watch/secrets", 403},
	    {"/api/v1/watch/namespaces/kube-system/pods", 403},
	    {"/api/v1/watch/namespaces/default/pods", 0},
	    {"/apis/apps/v1/watch/namespaces/kube-system/deployments", 0},
	    {"/apis/apps/v1/namespaces/prod/deployments", 403},
	    {"/apis/apps/v1/watch/namespaces/prod/deployments", 403},
	    {"/apis/apps/v1/watch", 0},
	    {"", 400},
	};
	struct k8s_shared *sh = shared();

	CHECK(sh != NULL);
	for (size_t i = 0; sh && i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *d = json_pack("{s:s}", "path", cases[i].path);
		char *text = json_dumps(d, 0);
		struct k8s_http h;
		struct k8s_error err;
		int code = prep(sh, text, &h, &err);

		if (code != cases[i].code)
			fprintf(stderr, "  path \"%s\": %d (%s)\n",
				cases[i].path, code, err.message);
		CHECK_INT(code, cases[i].code);
		if (code == 403)
			CHECK_STR(err.reason, "Forbidden");
		k8s_http_clear(&h);
		free(text);
		json_decref(d);
	}
	k8s_shared_free(sh);
}

static void test_query_headers_body(void)
{
	struct k8s_shared *sh = shared();
	struct k8s_http h;
	struct k8s_error err;
	const struct curl_slist *l;

	CHECK_INT(prep(sh,
		       "{\"method\":\"post\",\"path\":\"/api/v1/namespaces/x/"
		       "configmaps\",\"query\":{\"labelSelector\":[\"app=a b\","
		       "\"tier in (x,y)\"],\"limit\":5,\"dryRun\":\"All\"},"
		       "\"headers\":{\"accept\":\"application/yaml\","
		       "\"If-Match\":\"abc\",\"X-Other\":\"dropped\","
		       "\"Authorization\":\"Bearer evil\"},"
		       "\"body\":\"eyJhIjoxfQ==\"}",
		       &h, &err),
		  0);
	CHECK_STR(h.method, "POST");
	CHECK_STR(h.path, "/api/v1/namespaces/x/configmaps?dryRun=All&"
			  "labelSelector=app%3Da%20b&labelSelector=tier%20in%"
			  "20%28x%2Cy%29&limit=5");
	CHECK_STR(h.accept, "application/yaml");
	CHECK_STR(h.content_type, "application/json");
	CHECK_INT(h.body_len, 7);
	CHECK(h.body && !memcmp(h.body, "{\"a\":1}", 7));
	l = h.headers;
	CHECK(l && !strcmp(l->data, "If-Match: abc") && !l->next);
	CHECK_INT(h.stream, K8S_STREAM_NONE);
	k8s_http_clear(&h);

	CHECK_INT(prep(sh,
		       "{\"path\":\"/api/v1/pods\",\"headers\":"
		       "{\"impersonate-user\":\"admin\"}}",
		       &h, &err),
		  403);
	CHECK(strstr(err.message, "impersonate-user") != NULL);
	CHECK_INT(prep(sh,
		       "{\"path\":\"/api/v1/pods\",\"headers\":"
		       "{\"Impersonate-Group\":\"system:masters\"}}",
		       &h, &err),
		  403);
	CHECK_INT(prep(sh,
		       "{\"path\":\"/api/v1/pods\",\"headers\":"
		       "{\"Accept\":\"a\\r\\nX-Evil: 1\"}}",
		       &h, &err),
		  400);
	CHECK_INT(
	    prep(sh, "{\"path\":\"/api/v1/pods\",\"body\":\"!!!\"}", &h, &err),
	    400);
	CHECK_INT(prep(sh, "{\"path\":\"/api/v1/pods\",\"method\":\"TRACE\"}",
		       &h, &err),
		  400);
	CHECK_INT(
	    prep(sh, "{\"path\":\"/api/v1/pods\",\"query\":[1]}", &h, &err),
	    400);
	CHECK_INT(prep(sh,
		       "{\"path\":\"/api/v1/pods\",\"query\":{\"watch\":\"1\"},"
		       "\"method\":\"DELETE\"}",
		       &h, &err),
		  400);
	k8s_shared_free(sh);
}

static void test_stream_kind(void)
{
	static const struct {
		const char *type, *json;
		enum k8s_stream_kind kind;
	} cases[] = {
	    {"proxy_request", "{\"path\":\"/api/v1/pods\"}", K8S_STREAM_NONE},
	    {"proxy_request",
	     "{\"path\":\"/api/v1/pods\",\"query\":{\"watch\":\"true\"}}",
	     K8S_STREAM_LINES},
	    {"proxy_request",
	     "{\"path\":\"/api/v1/pods\",\"query\":{\"watch\":[\"1\"]}}",
	     K8S_STREAM_LINES},
	    {"proxy_request",
	     "{\"path\":\"/api/v1/pods\",\"query\":{\"watch\":\"false\"}}",
	     K8S_STREAM_NONE},
	    {"proxy_request",
	     "{\"path\":\"/api/v1/pods\",\"query\":{\"watch\":true}}",
	     K8S_STREAM_LINES},
	    {"proxy_request", "{\"path\":\"/api/v1/watch/pods\"}",
	     K8S_STREAM_LINES},
	    {"proxy_request",
	     "{\"path\":\"/apis/apps/v1/watch/namespaces/x/deployments\"}",
	     K8S_STREAM_LINES},
	    {"proxy_request",
	     "{\"path\":\"/api/v1/namespaces/x/pods/p/log\","
	     "\"query\":{\"follow\":\"true\"}}",
	     K8S_STREAM_TEXT},
	    {"proxy_request", "{\"path\":\"/api/v1/namespaces/x/pods/p/log\"}",
	     K8S_STREAM_NONE},
	    {"proxy_request", "{\"path\":\"/api/v1/pods\",\"stream\":true}",
	     K8S_STREAM_RAW},
	    {"command", "{\"type\":\"logs\",\"args\":{\"follow\":true}}",
	     K8S_STREAM_TEXT},
	    {"command", "{\"type\":\"logs\",\"args\":{\"follow\":\"true\"}}",
	     K8S_STREAM_TEXT},
	    {"command", "{\"type\":\"logs\",\"args\":{\"lines\":\"5\"}}",
	     K8S_STREAM_NONE},
	    {"command", "{\"type\":\"exec\",\"args\":{\"follow\":true}}",
	     K8S_STREAM_NONE},
	    {"deploy", "{\"stream\":true}", K8S_STREAM_NONE},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *d = json_loads(cases[i].json, 0, NULL);

		CHECK(d != NULL);
		if (k8s_stream_kind_of(cases[i].type, d) != cases[i].kind)
			fprintf(stderr, "  case %zu: %s\n", i, cases[i].json);
		CHECK_INT(k8s_stream_kind_of(cases[i].type, d), cases[i].kind);
		json_decref(d);
	}
}

static void test_logs_prepare(void)
{
	static const struct {
		const char *json;
		const char *path;  /* NULL: error */
		const char *error; /* substring */
	} cases[] = {
	    {"{\"type\":\"logs\",\"target\":{\"type\":\"pod\",\"name\":\"w-1\","
	     "\"namespace\":\"shop\",\"container\":\"web\"},"
	     "\"args\":{\"lines\":\"100\"}}",
	     "/api/v1/namespaces/shop/pods/w-1/log?container=web&"
	     "limitBytes=11&tailLines=100",
	     NULL},
	    {"{\"type\":\"logs\",\"target\":{\"name\":\"p\"},"
	     "\"args\":{\"lines\":7,\"follow\":true,\"timestamps\":true}}",
	     "/api/v1/namespaces/default/pods/p/log?follow=true&"
	     "limitBytes=11&tailLines=7&timestamps=true",
	     NULL},
	    {"{\"type\":\"logs\",\"target\":{\"name\":\"p\"},"
	     "\"args\":{\"container\":\"c\",\"since_seconds\":\"60\","
	     "\"previous\":true}}",
	     "/api/v1/namespaces/default/pods/p/log?container=c&"
	     "limitBytes=11&previous=true&sinceSeconds=60",
	     NULL},
	    {"{\"type\":\"exec\",\"target\":{\"name\":\"p\"}}", NULL,
	     "unsupported command type: exec"},
	    {"{\"target\":{\"name\":\"p\"}}", NULL, "missing type"},
	    {"{\"type\":\"logs\"}", NULL, "missing target"},
	    {"{\"type\":\"logs\",\"target\":{\"type\":\"deployment\","
	     "\"name\":\"p\"}}",
	     NULL, "only pod"},
	    {"{\"type\":\"logs\",\"target\":{\"name\":\"../x\"}}", NULL,
	     "not a valid pod name"},
	    {"{\"type\":\"logs\",\"target\":{\"name\":\"p\"},"
	     "\"args\":{\"lines\":\"ten\"}}",
	     NULL, "whole number"},
	};
	struct k8s_shared *sh = shared();

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *d = json_loads(cases[i].json, 0, NULL);
		struct k8s_http h;
		struct k8s_error err;
		int ret;

		memset(&err, 0, sizeof(err));
		ret = k8s_logs_prepare(sh, d, 11, &h, &err);
		if (cases[i].path) {
			CHECK_INT(ret, 0);
			CHECK_STR(h.path, cases[i].path);
		} else {
			CHECK(ret < 0);
			if (!strstr(err.message, cases[i].error))
				fprintf(stderr, "  case %zu: %s\n", i,
					err.message);
			CHECK(strstr(err.message, cases[i].error) != NULL);
		}
		k8s_http_clear(&h);
		json_decref(d);
	}
	k8s_shared_free(sh);
}

static const struct check_case check_cases[] = {
    CHECK_CASE(test_path_policy),
    CHECK_CASE(test_query_headers_body),
    CHECK_CASE(test_stream_kind),
    CHECK_CASE(test_logs_prepare),
};

CHECK_MAIN()
