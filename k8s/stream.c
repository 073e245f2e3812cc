/*
 * stream: long-lived API requests as configured easy handles (see
 * stream.h for the contract and the thread rules).
 */
#include "k8s/k8s_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "k8s/status.h"
#include "k8s/stream.h"

#ifndef PIPEOPS_VERSION
#define PIPEOPS_VERSION "dev"
#endif

struct k8s_stream {
	struct k8s_shared *sh; /* borrowed */
	CURL *curl;
	struct curl_slist *hdrs; /* set on curl; freed after it */
	char *url;
	char *what; /* "GET /path" for messages */
	struct k8s_http http;
	char errbuf[CURL_ERROR_SIZE];
};

enum k8s_stream_kind k8s_stream_kind_of(const char *type, json_t *data)
{
	json_t *args;
	json_t *f;

	if (!strcmp(type, "proxy_request"))
		return k8s_proxy_stream_kind(data);
	if (strcmp(type, "command"))
		return K8S_STREAM_NONE;
	if (!json_is_string(json_object_get(data, "type")) ||
	    strcmp(json_string_value(json_object_get(data, "type")), "logs"))
		return K8S_STREAM_NONE;
	args = json_object_get(data, "args");
	f = json_object_get(args, "follow");
	if (json_is_true(f) ||
	    (json_is_integer(f) && json_integer_value(f) != 0) ||
	    (json_is_string(f) && (!strcmp(json_string_value(f), "true") ||
				   !strcmp(json_string_value(f), "1"))))
		return K8S_STREAM_TEXT;
	return K8S_STREAM_NONE;
}

static bool wants_bookmarks(const char *path)
{
	const char *q = strchr(path, '?');

	return q && (strstr(q, "allowWatchBookmarks=true") ||
		     strstr(q, "allowWatchBookmarks=1"));
}

struct k8s_stream *k8s_stream_new(struct k8s_shared *sh, const char *type,
				  json_t *data, curl_write_callback wcb,
				  void *ud, struct k8s_error *err)
{
	struct k8s_stream *s = xcalloc(1, sizeof(*s));
	char *line, *token;
	CURL *h;
	int ret;

	s->sh = sh;
	memset(err, 0, sizeof(*err));
	if (!strcmp(type, "command"))
		ret = k8s_logs_prepare(sh, data, 0, &s->http, err);
	else
		ret = k8s_proxy_prepare(sh, data, &s->http, err);
	if (ret)
		goto out_free;
	if (!s->http.stream) {
		k8s_error_set(err, 400, "BadRequest",
			      "the request is not a stream");
		goto out_free;
	}
	s->curl = curl_easy_init();
	if (!s->curl) {
		k8s_error_set(err, 0, "InternalError", "curl_easy_init failed");
		goto out_free;
	}
	h = s->curl;
	s->url = k8s_strdup_printf("%s%s", sh->api_server, s->http.path);
	s->what =
	    k8s_strdup_printf("%s %.*s", s->http.method,
			      (int)strcspn(s->http.path, "?"), s->http.path);

	line = k8s_strdup_printf(
	    "Accept: %s", s->http.accept ? s->http.accept : "application/json");
	s->hdrs = curl_slist_append(s->hdrs, line);
	free(line);
	for (const struct curl_slist *l = s->http.headers; l; l = l->next)
		s->hdrs = curl_slist_append(s->hdrs, l->data);
	token = k8s_token_copy(sh);
	if (token) {
		line = k8s_strdup_printf("Authorization: Bearer %s", token);
		s->hdrs = curl_slist_append(s->hdrs, line);
		memset(line, 0, strlen(line));
		free(line);
		memset(token, 0, strlen(token));
		free(token);
	}

	curl_easy_setopt(h, CURLOPT_SHARE, sh->share);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, s->errbuf);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(h, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)sh->connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 0L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 30L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 10L);
	if (s->http.stream == K8S_STREAM_LINES &&
	    wants_bookmarks(s->http.path)) {
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME,
				 (long)K8S_STREAM_STALL_S);
	}
	curl_easy_setopt(h, CURLOPT_USERAGENT,
			 "pipeops-agent/" PIPEOPS_VERSION);
	if (sh->insecure_skip_verify) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	} else if (sh->ca_file) {
		curl_easy_setopt(h, CURLOPT_CAINFO, sh->ca_file);
	}
	curl_easy_setopt(h, CURLOPT_URL, s->url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, s->hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, wcb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, ud);
	curl_easy_setopt(h, CURLOPT_PRIVATE, ud);
	return s;

out_free:
	k8s_stream_free(s);
	return NULL;
}

CURL *k8s_stream_curl(const struct k8s_stream *s)
{
	return s->curl;
}

enum k8s_stream_kind k8s_stream_kind(const struct k8s_stream *s)
{
	return s->http.stream;
}

const char *k8s_stream_describe(const struct k8s_stream *s)
{
	return s->what;
}

long k8s_stream_status(const struct k8s_stream *s)
{
	long status = 0;

	curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
	return status;
}

int k8s_stream_result(struct k8s_stream *s, CURLcode rc, const char *body,
		      size_t len, struct k8s_error *err)
{
	long status = k8s_stream_status(s);
	curl_off_t pretransfer = 0;

	memset(err, 0, sizeof(*err));
	if (rc == CURLE_OPERATION_TIMEDOUT) {
		curl_easy_getinfo(s->curl, CURLINFO_PRETRANSFER_TIME_T,
				  &pretransfer);
		if (pretransfer > 0) {
			k8s_error_set(err, 0, "Timeout",
				      "stream stalled: no data from the "
				      "Kubernetes API for %ds (%s)",
				      K8S_STREAM_STALL_S, s->what);
			return -ETIMEDOUT;
		}
	}
	if (rc != CURLE_OK)
		return k8s_transport_error(s->sh, s->curl, s->errbuf, rc, false,
					   0, s->http.method, s->http.path,
					   err);
	if (status < 200 || status > 299) {
		k8s_status_to_error(status, body ? body : "", body ? len : 0,
				    s->http.method, s->http.path, err);
		return -EPROTO;
	}
	return 0;
}

void k8s_stream_free(struct k8s_stream *s)
{
	if (!s)
		return;
	if (s->curl)
		curl_easy_cleanup(s->curl);
	curl_slist_free_all(s->hdrs);
	free(s->url);
	free(s->what);
	k8s_http_clear(&s->http);
	free(s);
}
