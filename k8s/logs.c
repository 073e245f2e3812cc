/*
 * logs: the command operation (PROTOCOL.md 4.5), type "logs": pod logs
 * through GET /api/v1/namespaces/<ns>/pods/<name>/log.
 *
 * k8s_logs_prepare() validates the command and builds the request; a
 * worker runs it once (k8s_op_command, output capped at max_log_bytes by
 * asking the API for limitBytes = cap + 1, so a longer log shows as
 * truncated without reading it all), the streamer runs it with follow=true
 * (k8s/stream.c). Thread-safe: works on the caller's data only.
 */
#include "k8s/k8s_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "k8s/status.h"
#include "k8s/validate.h"

static int invalid(struct k8s_error *err, const char *what, const char *v)
{
	char shown[96];

	k8s_copy_utf8(shown, sizeof(shown), v ? v : "", v ? strlen(v) : 0);
	k8s_error_set(err, 0, "Invalid", "invalid logs command: %s%s%s%s", what,
		      v ? " \"" : "", shown, v ? "\"" : "");
	return -EINVAL;
}

/* true, "true", "1", 1: on. */
static bool truthy(json_t *v)
{
	const char *s = json_string_value(v);

	if (json_is_true(v))
		return true;
	if (json_is_integer(v))
		return json_integer_value(v) != 0;
	return s && (!strcmp(s, "true") || !strcmp(s, "1"));
}

/* A whole number from a string or an integer; -1 when absent or "".
 * Returns false when present but not a number >= -1. */
static bool whole_number(json_t *v, long long *out)
{
	const char *s = json_string_value(v);
	char *end;

	*out = -1;
	if (!v || json_is_null(v))
		return true;
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return *out >= -1;
	}
	if (!s)
		return false;
	if (!*s || !strcmp(s, "all"))
		return true;
	errno = 0;
	*out = strtoll(s, &end, 10);
	return !errno && end != s && !*end && *out >= -1;
}

int k8s_logs_prepare(struct k8s_shared *sh, json_t *data, size_t limit_bytes,
		     struct k8s_http *out, struct k8s_error *err)
{
	const char *type = json_string_value(json_object_get(data, "type"));
	json_t *target = json_object_get(data, "target");
	json_t *args = json_object_get(data, "args");
	const char *ttype, *name, *ns, *container;
	long long lines, since;
	char *ens, *ename, *q;
	size_t qlen;

	memset(out, 0, sizeof(*out));
	if (!type || !*type)
		return invalid(err, "missing type", NULL);
	if (strcmp(type, "logs")) {
		char shown[96];

		k8s_copy_utf8(shown, sizeof(shown), type, strlen(type));
		k8s_error_set(err, 0, "Invalid", "unsupported command type: %s",
			      shown);
		return -EINVAL;
	}
	if (!json_is_object(target))
		return invalid(err, "missing target", NULL);
	if (args && !json_is_null(args) && !json_is_object(args))
		return invalid(err, "args must be an object", NULL);
	ttype = json_string_value(json_object_get(target, "type"));
	if (ttype && *ttype && strcmp(ttype, "pod"))
		return invalid(err, "unsupported target.type (only pod)",
			       ttype);
	name = json_string_value(json_object_get(target, "name"));
	if (!name || !*name)
		return invalid(err, "missing target.name", NULL);
	if (!k8s_is_dns1123_subdomain(name))
		return invalid(err, "target.name is not a valid pod name",
			       name);
	ns = json_string_value(json_object_get(target, "namespace"));
	if (!ns || !*ns)
		ns = sh->default_namespace;
	if (!k8s_is_dns1123_label(ns))
		return invalid(err, "target.namespace is not a valid namespace",
			       ns);
	container = json_string_value(json_object_get(target, "container"));
	if (!container || !*container)
		container =
		    json_string_value(json_object_get(args, "container"));
	if (container && *container && !k8s_is_dns1123_label(container))
		return invalid(err, "container is not a valid container name",
			       container);
	if (!whole_number(json_object_get(args, "lines"), &lines))
		return invalid(err, "args.lines must be a whole number", NULL);
	if (!whole_number(json_object_get(args, "since_seconds"), &since) ||
	    since == 0)
		return invalid(err,
			       "args.since_seconds must be a positive whole "
			       "number",
			       NULL);

	/* Names are validated: only [a-z0-9.-], nothing to escape. */
	ens = k8s_query_escape(ns);
	ename = k8s_query_escape(name);
	q = xstrdup("");
	qlen = 0;
	if (container && *container) {
		char *ec = k8s_query_escape(container);
		char *t = k8s_strdup_printf("%s&container=%s", q, ec);

		free(ec);
		free(q);
		q = t;
	}
#define QADD(fmt, ...)                                                         \
	do {                                                                   \
		char *t_ = k8s_strdup_printf("%s&" fmt, q, __VA_ARGS__);       \
		free(q);                                                       \
		q = t_;                                                        \
	} while (0)
	if (truthy(json_object_get(args, "follow"))) {
		QADD("%s", "follow=true");
		out->stream = K8S_STREAM_TEXT;
	}
	if (limit_bytes)
		QADD("limitBytes=%zu", limit_bytes);
	if (truthy(json_object_get(args, "previous")))
		QADD("%s", "previous=true");
	if (since > 0)
		QADD("sinceSeconds=%lld", since);
	if (lines >= 0)
		QADD("tailLines=%lld", lines);
	if (truthy(json_object_get(args, "timestamps")))
		QADD("%s", "timestamps=true");
#undef QADD
	qlen = strlen(q);
	snprintf(out->method, sizeof(out->method), "GET");
	out->path =
	    k8s_strdup_printf("/api/v1/namespaces/%s/pods/%s/log%s%s", ens,
			      ename, qlen ? "?" : "", qlen ? q + 1 : "");
	out->accept = xstrdup("application/json, */*");
	free(q);
	free(ens);
	free(ename);
	return 0;
}

/* @len bytes as a JSON string: invalid UTF-8 becomes U+FFFD, a sequence
 * cut by the end is dropped. New reference. */
static json_t *utf8_string(const char *p, size_t len)
{
	const unsigned char *s = (const unsigned char *)p;
	char *buf = xmalloc(len * 3 + 1);
	size_t o = 0;
	json_t *j;

	for (size_t i = 0; i < len;) {
		int k = utf8_seq_len(s + i, len - i);

		if (k < 0)
			break;
		if (k == 0) {
			memcpy(buf + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
			continue;
		}
		memcpy(buf + o, s + i, (size_t)k);
		o += (size_t)k;
		i += (size_t)k;
	}
	j = json_stringn(buf, o);
	free(buf);
	return j ? j : json_string("");
}

/* Go's time.Duration text at millisecond precision: "12ms", "1.5s". */
static json_t *duration_json(int64_t ms)
{
	char buf[48];
	size_t n;

	if (ms <= 0)
		return json_string("0s");
	if (ms < 1000)
		return json_sprintf("%lldms", (long long)ms);
	snprintf(buf, sizeof(buf), "%lld.%03lld", (long long)(ms / 1000),
		 (long long)(ms % 1000));
	n = strlen(buf);
	while (buf[n - 1] == '0')
		buf[--n] = '\0';
	if (buf[n - 1] == '.')
		buf[--n] = '\0';
	return json_sprintf("%ss", buf);
}

static void set_id(json_t *reply, json_t *data)
{
	json_t *id = json_object_get(data, "id");

	if (json_is_string(id))
		json_object_set(reply, "id", id);
}

json_t *k8s_command_failure(json_t *data, int64_t ms)
{
	json_t *d = json_object();

	set_id(d, data);
	json_object_set_new(d, "output", json_string(""));
	json_object_set_new(d, "exit_code", json_integer(1));
	json_object_set_new(d, "duration", duration_json(ms));
	return d;
}

json_t *k8s_op_command(struct k8s_client *c, json_t *data,
		       struct k8s_error *err)
{
	struct k8s_shared *sh = c->sh;
	struct k8s_http h;
	struct k8s_request req;
	const char *body;
	size_t body_len, max = sh->max_log_bytes;
	long status = 0;
	int64_t t0 = clock_mono_ms();
	json_t *d;
	int ret;

	ret = k8s_logs_prepare(sh, data, max + 1, &h, err);
	if (ret)
		return NULL;
	if (h.stream) {
		/* The reader sends follow logs to the streamer. */
		k8s_http_clear(&h);
		k8s_error_set(err, 0, "InternalError",
			      "follow logs reached a worker");
		return NULL;
	}
	memset(&req, 0, sizeof(req));
	req.method = h.method;
	req.path = h.path;
	req.accept = h.accept;
	ret = k8s_client_send(c, &req, &status, &body, &body_len, err);
	if (ret == 0 && (status < 200 || status > 299)) {
		k8s_status_to_error(status, body, body_len, h.method, h.path,
				    err);
		ret = -EPROTO;
	}
	k8s_http_clear(&h);
	if (ret)
		return NULL;
	d = json_object();
	set_id(d, data);
	json_object_set_new(d, "output",
			    utf8_string(body, body_len > max ? max : body_len));
	json_object_set_new(d, "exit_code", json_integer(0));
	json_object_set_new(d, "duration", duration_json(clock_mono_ms() - t0));
	if (body_len > max)
		json_object_set_new(d, "truncated", json_true());
	return d;
}
