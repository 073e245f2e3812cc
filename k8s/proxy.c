/*
 * proxy: proxy_request (PROTOCOL.md 4.6) -> one Kubernetes API call.
 *
 * k8s_proxy_prepare() turns the Runner's request into a k8s_http: method,
 * the path after the policy check, the query built from a map, the allowed
 * request headers and the decoded body. Workers use it for one-answer
 * requests (k8s_op_proxy) and the streamer for streams (k8s/stream.c).
 *
 * Path policy (checked before any call, refused with 403):
 *   - only [A-Za-z0-9-._~:@/] and %XX escapes that decode to one of
 *     [A-Za-z0-9-_~:@] (so no encoded '/', '.', '%', '\', '?', '#',
 *     spaces, control or non-ASCII bytes);
 *   - no "." or ".." segment and no empty segment except a trailing '/';
 *   - the path starts with /api/ or /apis/, or is exactly /version,
 *     /healthz, /readyz or /livez;
 *   - the decoded path does not fall under a [kubernetes] proxy_deny
 *     prefix (a prefix matches itself and anything below it, at a segment
 *     boundary; one ending in '/' matches as a plain prefix);
 *   - no Impersonate-* request header.
 * Thread-safe: everything here works on the caller's data.
 */
#include "k8s/k8s_internal.h"

#include <errno.h>
#include <mbedtls/base64.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "common/util.h"
#include "k8s/status.h"
#include "k8s/stream.h"

#define PATH_MAX_LEN   2048
#define QUERY_MAX_LEN  16384
#define HEADER_MAX_LEN 1024

static const char *const allowed_headers[] = {
    "Accept",
    "Content-Type",
    "If-Match",
    "If-None-Match",
};

static const char *const exact_paths[] = {
    "/version",
    "/healthz",
    "/readyz",
    "/livez",
};

void k8s_http_clear(struct k8s_http *h)
{
	if (!h)
		return;
	free(h->path);
	curl_slist_free_all(h->headers);
	free(h->accept);
	free(h->content_type);
	free(h->body);
	memset(h, 0, sizeof(*h));
}

static bool path_char_ok(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
	       ch == '~' || ch == ':' || ch == '@';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int refuse(struct k8s_error *err, const char *path, const char *why)
{
	char shown[96];

	k8s_copy_utf8(shown, sizeof(shown), path, strlen(path));
	k8s_error_set(err, 403, "Forbidden", "proxy path \"%s\" refused: %s",
		      shown, why);
	return -EPERM;
}

static bool deny_matches(const char *prefix, const char *path)
{
	size_t n = strlen(prefix);

	if (!n || strncmp(prefix, path, n))
		return false;
	return prefix[n - 1] == '/' || path[n] == '\0' || path[n] == '/';
}

/*
 * The legacy watch form of @path without its "watch" segment
 * (/api/v1/watch/x -> /api/v1/x, /apis/g/v/watch/x -> /apis/g/v/x), in
 * @out (size > strlen(path)); false when @path has no such segment. A
 * real API server still serves these paths, so proxy_deny must see
 * through them.
 */
static bool unwatched(const char *path, char *out)
{
	int skip = !strncmp(path, "/api/", 5)	 ? 2
		   : !strncmp(path, "/apis/", 6) ? 3
						 : 0;
	const char *p = path;

	if (!skip)
		return false;
	for (int i = 0; i < skip; i++) { /* past /api/v1 or /apis/g/v */
		p = strchr(p + 1, '/');
		if (!p)
			return false;
	}
	if (strncmp(p, "/watch/", 7) && strcmp(p, "/watch"))
		return false;
	memcpy(out, path, (size_t)(p - path));
	snprintf(out + (p - path), strlen(p) + 1, "%s", p + 6);
	return true;
}

/* The policy above; @decoded (size > strlen(path)) gets the decoded path. */
static int path_check(struct k8s_shared *sh, const char *path, char *decoded,
		      struct k8s_error *err)
{
	size_t o = 0, n = strlen(path);
	const char *seg;
	bool allowed = false;

	if (path[0] != '/')
		return refuse(err, path, "it must start with '/'");
	if (n > PATH_MAX_LEN)
		return refuse(err, path, "it is too long");
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)path[i];

		if (ch == '%') {
			int hi = hexval(path[i + 1]);
			int lo = hi >= 0 ? hexval(path[i + 2]) : -1;

			if (hi < 0 || lo < 0)
				return refuse(err, path,
					      "bad percent-encoding");
			ch = (unsigned char)(hi * 16 + lo);
			if (!path_char_ok(ch))
				return refuse(err, path,
					      "encoded character not allowed");
			i += 2;
		} else if (ch == '?' || ch == '#') {
			return refuse(err, path,
				      "it must not hold a query or fragment "
				      "(use the query field)");
		} else if (!path_char_ok(ch) && ch != '/' && ch != '.') {
			return refuse(err, path, "character not allowed");
		}
		decoded[o++] = (char)ch;
	}
	decoded[o] = '\0';
	seg = decoded + 1;
	for (;;) {
		size_t len = strcspn(seg, "/");

		if ((len == 1 && seg[0] == '.') ||
		    (len == 2 && seg[0] == '.' && seg[1] == '.'))
			return refuse(err, path,
				      "\".\" and \"..\" segments "
				      "are not allowed");
		if (len == 0 && seg[0] == '/')
			return refuse(err, path, "empty segment");
		if (!seg[len])
			break;
		seg += len + 1;
	}
	if (!strncmp(decoded, "/api/", 5) || !strncmp(decoded, "/apis/", 6))
		allowed = true;
	for (size_t i = 0; i < ARRAY_SIZE(exact_paths); i++)
		if (!strcmp(decoded, exact_paths[i]))
			allowed = true;
	if (!allowed)
		return refuse(err, path,
			      "only /api/..., /apis/..., /version, /healthz, "
			      "/readyz and /livez may be reached");
	{
		char *plain = xmalloc(n + 1);
		bool has_plain = unwatched(decoded, plain);
		int ret = 0;

		for (size_t i = 0; i < sh->n_proxy_deny && !ret; i++)
			if (deny_matches(sh->proxy_deny[i], decoded) ||
			    (has_plain &&
			     deny_matches(sh->proxy_deny[i], plain)))
				ret = refuse(err, path,
					     "denied by [kubernetes] "
					     "proxy_deny");
		free(plain);
		return ret;
	}
}

static int bad_request(struct k8s_error *err, const char *what)
{
	k8s_error_set(err, 400, "BadRequest", "invalid proxy_request: %s",
		      what);
	return -EINVAL;
}

/* A query value as text: string, integer, real or boolean. NULL if none. */
static char *value_text(json_t *v)
{
	if (json_is_string(v))
		return xstrdup(json_string_value(v));
	if (json_is_integer(v))
		return k8s_strdup_printf("%lld",
					 (long long)json_integer_value(v));
	if (json_is_boolean(v))
		return xstrdup(json_is_true(v) ? "true" : "false");
	if (json_is_real(v))
		return k8s_strdup_printf("%g", json_real_value(v));
	return NULL;
}

static int key_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Appends "&k=v" (escaped) to @q (length @qlen). */
static char *query_add(char *q, size_t *qlen, const char *k, const char *v)
{
	char *ek = k8s_query_escape(k), *ev = k8s_query_escape(v);
	size_t add = strlen(ek) + strlen(ev) + 2;

	q = xrealloc(q, *qlen + add + 1);
	snprintf(q + *qlen, add + 1, "%s%s=%s", *qlen ? "&" : "", ek, ev);
	*qlen += strlen(q + *qlen);
	free(ek);
	free(ev);
	return q;
}

/* True for a query flag given as anything but "", "false" or "0". */
static bool flag_value(json_t *v)
{
	char *t;
	bool on;

	if (json_is_array(v))
		v = json_array_get(v, 0);
	t = value_text(v);
	on = t && *t && strcmp(t, "false") && strcmp(t, "0");
	free(t);
	return on;
}

/* {"k": "v" | ["v1", "v2"] | 5 | true} -> "k=v&..." with sorted keys. */
static int query_build(json_t *query, char **out, struct k8s_error *err)
{
	const char **keys;
	const char *k;
	json_t *v;
	size_t n = 0, qlen = 0;
	char *q = NULL;
	int ret = 0;

	*out = NULL;
	if (!query || json_is_null(query))
		return 0;
	if (!json_is_object(query))
		return bad_request(err, "query must be an object");
	keys = xcalloc(json_object_size(query) + 1, sizeof(*keys));
	json_object_foreach(query, k, v) keys[n++] = k;
	qsort(keys, n, sizeof(*keys), key_cmp);
	for (size_t i = 0; i < n && !ret; i++) {
		json_t *val = json_object_get(query, keys[i]);
		size_t m = json_is_array(val) ? json_array_size(val) : 1;

		if (!*keys[i]) {
			ret = bad_request(err, "empty query key");
			break;
		}
		for (size_t j = 0; j < m; j++) {
			json_t *item =
			    json_is_array(val) ? json_array_get(val, j) : val;
			char *t = value_text(item);

			if (!t) {
				ret = bad_request(err,
						  "query values must be "
						  "strings, numbers, booleans "
						  "or lists of them");
				break;
			}
			q = query_add(q, &qlen, keys[i], t);
			free(t);
		}
		if (qlen > QUERY_MAX_LEN)
			ret = bad_request(err, "query too long");
	}
	free(keys);
	if (ret)
		free(q);
	else
		*out = q;
	return ret;
}

/* Allowed headers into @out; Impersonate-* refused; others dropped. */
static int headers_take(json_t *headers, struct k8s_http *out,
			struct k8s_error *err)
{
	const char *k;
	json_t *v;

	if (!headers || json_is_null(headers))
		return 0;
	if (!json_is_object(headers))
		return bad_request(err, "headers must be an object");
	json_object_foreach(headers, k, v)
	{
		const char *canon = NULL;
		const char *val;
		char *line;

		if (!strncasecmp(k, "Impersonate-", 12)) {
			char shown[64];

			k8s_copy_utf8(shown, sizeof(shown), k, strlen(k));
			k8s_error_set(err, 403, "Forbidden",
				      "proxy header \"%s\" refused: "
				      "impersonation is not allowed",
				      shown);
			return -EPERM;
		}
		for (size_t i = 0; i < ARRAY_SIZE(allowed_headers); i++)
			if (!strcasecmp(k, allowed_headers[i]))
				canon = allowed_headers[i];
		if (!canon) {
			LOG_DEBUG("proxy header dropped", "name=\"%.64s\"", k);
			continue;
		}
		if (json_is_array(v))
			v = json_array_get(v, 0);
		val = json_string_value(v);
		if (!val || strlen(val) > HEADER_MAX_LEN ||
		    strpbrk(val, "\r\n"))
			return bad_request(err,
					   "header values must be strings of "
					   "one line");
		if (!strcmp(canon, "Accept")) {
			free(out->accept);
			out->accept = xstrdup(val);
		} else if (!strcmp(canon, "Content-Type")) {
			free(out->content_type);
			out->content_type = xstrdup(val);
		} else {
			line = k8s_strdup_printf("%s: %s", canon, val);
			out->headers = curl_slist_append(out->headers, line);
			free(line);
		}
	}
	return 0;
}

static int body_take(json_t *body, struct k8s_http *out, struct k8s_error *err)
{
	const char *s;
	size_t n, olen = 0;

	if (!body || json_is_null(body))
		return 0;
	if (json_is_object(body) || json_is_array(body)) {
		out->body = json_dumps(body, JSON_COMPACT);
		out->body_len = out->body ? strlen(out->body) : 0;
		return out->body ? 0 : bad_request(err, "body not encodable");
	}
	if (!json_is_string(body))
		return bad_request(err, "body must be a base64 string");
	s = json_string_value(body);
	n = json_string_length(body);
	if (!n)
		return 0;
	out->body = xmalloc(n);
	if (mbedtls_base64_decode((unsigned char *)out->body, n, &olen,
				  (const unsigned char *)s, n) != 0)
		return bad_request(err, "body is not valid base64");
	out->body_len = olen;
	return 0;
}

/* Is the last path segment "log" (pod logs)? */
static bool is_log_path(const char *path)
{
	size_t n = strlen(path);

	return n >= 4 && !strcmp(path + n - 4, "/log");
}

/* A watch through the old /api/v1/watch/... or /apis/g/v/watch/... path. */
static bool is_watch_path(const char *path)
{
	const char *p = NULL;

	if (!strncmp(path, "/api/", 5))
		p = strchr(path + 5, '/');
	else if (!strncmp(path, "/apis/", 6) && strchr(path + 6, '/'))
		p = strchr(strchr(path + 6, '/') + 1, '/');
	return p && !strncmp(p, "/watch/", 7);
}

enum k8s_stream_kind k8s_proxy_stream_kind(json_t *data)
{
	json_t *q = json_object_get(data, "query");
	const char *path = json_string_value(json_object_get(data, "path"));
	json_t *stream = json_object_get(data, "stream");

	if (!path)
		return K8S_STREAM_NONE;
	if (json_is_object(q) && flag_value(json_object_get(q, "watch")))
		return K8S_STREAM_LINES;
	if (is_watch_path(path))
		return K8S_STREAM_LINES;
	if (is_log_path(path) && json_is_object(q) &&
	    flag_value(json_object_get(q, "follow")))
		return K8S_STREAM_TEXT;
	if (json_is_true(stream))
		return K8S_STREAM_RAW;
	return K8S_STREAM_NONE;
}

int k8s_proxy_prepare(struct k8s_shared *sh, json_t *data, struct k8s_http *out,
		      struct k8s_error *err)
{
	json_t *jm = json_object_get(data, "method");
	const char *path = json_string_value(json_object_get(data, "path"));
	static const char *const methods[] = {"GET", "POST", "PUT", "PATCH",
					      "DELETE"};
	char *decoded, *query = NULL;
	int ret;

	memset(out, 0, sizeof(*out));
	snprintf(out->method, sizeof(out->method), "GET");
	if (jm && !json_is_null(jm)) {
		const char *m = json_string_value(jm);
		bool ok = false;

		for (size_t i = 0; m && i < ARRAY_SIZE(methods); i++) {
			if (!strcasecmp(m, methods[i])) {
				snprintf(out->method, sizeof(out->method), "%s",
					 methods[i]);
				ok = true;
			}
		}
		if (!ok)
			return bad_request(err,
					   "method must be GET, POST, PUT, "
					   "PATCH or DELETE");
	}
	if (!path || !*path)
		return bad_request(err, "missing path");
	decoded = xmalloc(strlen(path) + 1);
	ret = path_check(sh, path, decoded, err);
	free(decoded);
	if (ret)
		return ret;
	ret = headers_take(json_object_get(data, "headers"), out, err);
	if (!ret)
		ret = query_build(json_object_get(data, "query"), &query, err);
	if (!ret)
		ret = body_take(json_object_get(data, "body"), out, err);
	if (ret)
		goto out_clear;
	out->stream = k8s_proxy_stream_kind(data);
	if (out->stream && strcmp(out->method, "GET")) {
		ret = bad_request(err, "streams use GET");
		goto out_clear;
	}
	if (out->body && !out->content_type)
		out->content_type = xstrdup("application/json");
	out->path =
	    query ? k8s_strdup_printf("%s?%s", path, query) : xstrdup(path);
	free(query);
	return 0;

out_clear:
	free(query);
	k8s_http_clear(out);
	return ret;
}

char *k8s_base64(const void *p, size_t n)
{
	size_t cap = 4 * ((n + 2) / 3) + 1, olen = 0;
	char *out = xmalloc(cap);

	if (mbedtls_base64_encode((unsigned char *)out, cap, &olen, p, n) != 0)
		olen = 0;
	out[olen] = '\0';
	return out;
}

/* The reply data for a failure found by the agent (no API answer). */
static json_t *proxy_error_data(int status, const char *message)
{
	json_t *d = json_object();

	json_object_set_new(d, "status_code", json_integer(status));
	json_object_set_new(d, "headers", json_object());
	json_object_set_new(d, "body", json_string(""));
	json_object_set_new(d, "error", json_string(message));
	return d;
}

json_t *k8s_op_proxy(struct k8s_client *c, json_t *data, struct k8s_error *err)
{
	struct k8s_http h;
	struct k8s_request req;
	const char *body;
	size_t body_len;
	long status = 0;
	json_t *d, *id = json_object_get(data, "id");
	char *b64;
	int ret;

	memset(err, 0, sizeof(*err));
	ret = k8s_proxy_prepare(c->sh, data, &h, err);
	if (ret) {
		d = proxy_error_data(err->code, err->message);
		goto out_id;
	}
	if (h.stream) {
		/* The reader sends streams to the streamer; not reached. */
		k8s_http_clear(&h);
		k8s_error_set(err, 500, "InternalError",
			      "stream request reached a worker");
		d = proxy_error_data(500, err->message);
		goto out_id;
	}
	memset(&req, 0, sizeof(req));
	req.method = h.method;
	req.path = h.path;
	req.content_type = h.content_type;
	req.body = h.body;
	req.body_len = h.body_len;
	req.accept = h.accept;
	req.headers = h.headers;
	req.max_response = K8S_PROXY_MAX_BODY;
	req.keep_headers = true;
	ret = k8s_client_send(c, &req, &status, &body, &body_len, err);
	k8s_http_clear(&h);
	if (ret < 0) {
		d = proxy_error_data(ret == -ETIMEDOUT ? 504 : 502,
				     err->message);
		goto out_id;
	}
	d = json_object();
	json_object_set_new(d, "status_code", json_integer(status));
	json_object_set_new(d, "headers",
			    c->resp_headers ? json_deep_copy(c->resp_headers)
					    : json_object());
	b64 = k8s_base64(body, body_len);
	json_object_set_new(d, "body", json_string(b64));
	free(b64);
	if (status >= 300)
		k8s_status_to_error(
		    status, body, body_len, "proxy",
		    json_string_value(json_object_get(data, "path")), err);
out_id:
	if (json_is_string(id))
		json_object_set(d, "id", id);
	return d;
}
