/* msg: envelope decoding and encoding (see msg.h). */
#include "agent/msg.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <mbedtls/base64.h>

#include "common/util.h"

static char id_prefix[96] = "agent";
static int64_t boot_ns;
static atomic_uint_fast64_t id_counter;

void msg_set_id_prefix(const char *agent_id)
{
	snprintf(id_prefix, sizeof(id_prefix), "%s", agent_id);
	boot_ns = clock_wall_ns();
}

void msg_new_id(char *buf, size_t len)
{
	uint64_t n =
	    atomic_fetch_add_explicit(&id_counter, 1, memory_order_relaxed) + 1;

	snprintf(buf, len, "%s-%lld-%llu", id_prefix, (long long)boot_ns,
		 (unsigned long long)n);
}

/*
 * PROTOCOL.md 2: data is an object, or a string holding JSON text, or a
 * string holding base64 of JSON text. Missing or null data is {}.
 * Returns a new reference or NULL.
 */
static json_t *decode_data(json_t *data, char *err, size_t errlen)
{
	const char *s;
	size_t n, out_len = 0;
	unsigned char *raw;
	json_t *obj;
	json_error_t jerr;

	if (!data || json_is_null(data))
		return json_object();
	if (json_is_object(data))
		return json_incref(data);
	if (!json_is_string(data)) {
		snprintf(err, errlen, "data must be an object or a string");
		return NULL;
	}
	s = json_string_value(data);
	n = json_string_length(data);
	if (n == 0)
		return json_object();
	obj = json_loadb(s, n, 0, &jerr);
	if (obj) {
		if (json_is_object(obj))
			return obj;
		json_decref(obj);
		snprintf(err, errlen,
			 "data string does not hold a JSON object");
		return NULL;
	}
	/* Not JSON text: try base64 of JSON text. */
	raw = xmalloc(n);
	if (mbedtls_base64_decode(raw, n, &out_len, (const unsigned char *)s,
				  n) != 0) {
		free(raw);
		snprintf(err, errlen,
			 "data string is neither JSON nor base64 JSON");
		return NULL;
	}
	obj = json_loadb((const char *)raw, out_len, 0, &jerr);
	free(raw);
	if (!obj || !json_is_object(obj)) {
		json_decref(obj);
		snprintf(err, errlen,
			 "data base64 does not decode to a JSON object");
		return NULL;
	}
	return obj;
}

int msg_decode(const char *text, size_t len, enum endpoint_id origin,
	       struct request **out, char *err, size_t errlen, char **id_out)
{
	json_error_t jerr;
	json_t *root, *id, *type, *data;
	struct request *r;

	*out = NULL;
	*id_out = NULL;
	root = json_loadb(text, len, 0, &jerr);
	if (!root) {
		json_t *loose;
		json_error_t lerr;

		snprintf(err, errlen, "malformed message: invalid JSON: %s",
			 jerr.text);
		/* Valid JSON that jansson refuses (an integer beyond 64 bits,
		 * a \u0000): parse it loosely only to find the id, so the
		 * sender can match the error to its request. */
		loose = json_loadb(
		    text, len, JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, &lerr);
		id = json_object_get(loose, "id");
		if (json_is_string(id) && json_string_length(id) > 0)
			*id_out = xstrndup(json_string_value(id),
					   json_string_length(id));
		json_decref(loose);
		return -EINVAL;
	}
	if (!json_is_object(root)) {
		snprintf(err, errlen, "malformed message: not a JSON object");
		goto out_free_root;
	}
	id = json_object_get(root, "id");
	if (!json_is_string(id) || json_string_length(id) == 0) {
		snprintf(err, errlen, "malformed message: missing \"id\"");
		goto out_free_root;
	}
	type = json_object_get(root, "type");
	if (!json_is_string(type) || json_string_length(type) == 0) {
		snprintf(err, errlen, "malformed message: missing \"type\"");
		goto out_answerable;
	}
	data = decode_data(json_object_get(root, "data"), err, errlen);
	if (!data)
		goto out_answerable;
	r = xcalloc(1, sizeof(*r));
	r->root = root;
	r->id = json_string_value(id);
	r->type = json_string_value(type);
	r->data = data;
	r->origin = origin;
	r->received_ms = clock_mono_ms();
	*out = r;
	return 0;

out_answerable:
	*id_out = xstrndup(json_string_value(id), json_string_length(id));
out_free_root:
	json_decref(root);
	return -EINVAL;
}

void request_free(struct request *r)
{
	if (!r)
		return;
	json_decref(r->data);
	json_decref(r->root);
	free(r);
}

json_t *msg_envelope(const char *type, const char *request_id, json_t *data)
{
	char id[160], ts[48];
	json_t *m = json_object();

	msg_new_id(id, sizeof(id));
	clock_wall_rfc3339(ts, sizeof(ts));
	json_object_set_new(m, "id", json_string(id));
	json_object_set_new(m, "type", json_string(type));
	json_object_set_new(m, "timestamp", json_string(ts));
	if (request_id)
		json_object_set_new(m, "request_id", json_string(request_id));
	json_object_set_new(m, "data", data ? data : json_object());
	return m;
}

json_t *msg_reply_ok(const char *request_id, json_t *data)
{
	if (!data)
		data = json_object();
	json_object_set_new(data, "success", json_true());
	json_object_set_new(data, "request_id", json_string(request_id));
	return msg_envelope("response", request_id, data);
}

json_t *msg_reply_error(const char *request_id, const char *error, int code,
			const char *reason, json_t *extra)
{
	json_t *data = extra ? extra : json_object();
	json_t *m;

	json_object_set_new(data, "success", json_false());
	json_object_set_new(data, "error", json_string(error));
	if (request_id)
		json_object_set_new(data, "request_id",
				    json_string(request_id));
	if (code)
		json_object_set_new(data, "code", json_integer(code));
	if (reason && *reason)
		json_object_set_new(data, "reason", json_string(reason));
	m = msg_envelope("response", request_id, data);
	json_object_set_new(m, "error", json_string(error));
	return m;
}

json_t *msg_proxy_response(const char *request_id, json_t *data)
{
	json_t *m, *error;

	if (!json_object_get(data, "id"))
		json_object_set_new(data, "id", json_string(request_id));
	json_object_set_new(data, "request_id", json_string(request_id));
	error = json_object_get(data, "error");
	m = msg_envelope("proxy_response", request_id, data);
	if (json_is_string(error))
		json_object_set(m, "error", error);
	return m;
}

struct outmsg *outmsg_from_json(json_t *msg, unsigned flags)
{
	struct outmsg *m;
	char *text = json_dumps(msg, JSON_COMPACT);
	const char *type = json_string_value(json_object_get(msg, "type"));

	if (!text)
		return NULL;
	m = xcalloc(1, sizeof(*m));
	m->text = text;
	m->len = strlen(text);
	m->flags = flags;
	snprintf(m->type, sizeof(m->type), "%s", type ? type : "?");
	return m;
}

void outmsg_free(struct outmsg *m)
{
	if (!m)
		return;
	free(m->text);
	free(m);
}
