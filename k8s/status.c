/* status: Kubernetes Status bodies and HTTP failures -> k8s_error. */
#include "k8s/status.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"

/* Bytes of a non-Status body quoted in a message. */
#define SNIPPET_MAX 160

void k8s_copy_utf8(char *dst, size_t n, const char *src, size_t len)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t i = 0, o = 0;

	while (i < len && s[i]) {
		int k = utf8_seq_len(s + i, len - i);

		if (k <= 0) {
			if (o + 1 >= n)
				break;
			dst[o++] = '?';
			i++;
			continue;
		}
		if (o + k >= n)
			break;
		memcpy(dst + o, s + i, k);
		o += k;
		i += k;
	}
	dst[o] = '\0';
}

void k8s_error_set(struct k8s_error *err, int code, const char *reason,
		   const char *fmt, ...)
{
	/* Larger than the message, so that a cut inside a character happens
	 * in k8s_copy_utf8 (which drops it), not in vsnprintf. */
	char tmp[2 * sizeof(err->message)];
	va_list ap;

	err->code = code;
	snprintf(err->reason, sizeof(err->reason), "%s", reason ? reason : "");
	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	k8s_copy_utf8(err->message, sizeof(err->message), tmp, strlen(tmp));
}

const char *k8s_reason_for_http(long http_status)
{
	switch (http_status) {
	case 400:
		return "BadRequest";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "NotFound";
	case 405:
		return "MethodNotAllowed";
	case 406:
		return "NotAcceptable";
	case 409:
		return "Conflict";
	case 410:
		return "Gone";
	case 413:
		return "RequestEntityTooLarge";
	case 415:
		return "UnsupportedMediaType";
	case 422:
		return "Invalid";
	case 429:
		return "TooManyRequests";
	case 503:
		return "ServiceUnavailable";
	case 504:
		return "Timeout";
	default:
		break;
	}
	return http_status >= 500 ? "InternalError" : "";
}

/* Printable ASCII copy of the start of a non-JSON body, one line. */
static void body_snippet(char *dst, size_t n, const char *body, size_t len)
{
	size_t o = 0;
	bool space = false;

	for (size_t i = 0; i < len && o + 4 < n; i++) {
		unsigned char ch = (unsigned char)body[i];

		if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
			space = o > 0;
			continue;
		}
		if (space)
			dst[o++] = ' ';
		space = false;
		dst[o++] = ch > 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	if (o + 4 >= n && len > 0)
		memcpy(dst + o, "...", 3), o += 3;
	dst[o] = '\0';
}

/* "field: message, field: message" from details.causes into @dst. */
static void causes_text(char *dst, size_t n, json_t *status)
{
	json_t *causes =
	    json_object_get(json_object_get(status, "details"), "causes");
	size_t i, o = 0;
	json_t *c;

	dst[0] = '\0';
	json_array_foreach(causes, i, c)
	{
		const char *f = json_string_value(json_object_get(c, "field"));
		const char *m =
		    json_string_value(json_object_get(c, "message"));
		int w;

		if (!m)
			continue;
		w = snprintf(dst + o, n - o, "%s%s%s%s", o ? ", " : "",
			     f ? f : "", f ? ": " : "", m);
		if (w < 0 || (size_t)w >= n - o)
			break;
		o += (size_t)w;
	}
}

void k8s_status_to_error(long http_status, const char *body, size_t len,
			 const char *method, const char *path,
			 struct k8s_error *err)
{
	json_t *st = NULL;
	const char *reason, *msg, *kind;
	int plen = (int)strcspn(path, "?");
	char snippet[SNIPPET_MAX + 4];
	int code = (int)http_status;

	if (len > 0)
		st = json_loadb(body, len, 0, NULL);
	kind = json_string_value(json_object_get(st, "kind"));
	if (kind && !strcmp(kind, "Status")) {
		reason = json_string_value(json_object_get(st, "reason"));
		if (!reason || !*reason)
			reason = k8s_reason_for_http(http_status);
		msg = json_string_value(json_object_get(st, "message"));
		if (msg && *msg) {
			k8s_error_set(err, code, reason, "%s", msg);
		} else {
			char causes[sizeof(err->message)];

			causes_text(causes, sizeof(causes), st);
			if (causes[0])
				k8s_error_set(err, code, reason, "%s", causes);
			else
				k8s_error_set(err, code, reason,
					      "Kubernetes API returned HTTP "
					      "%d (%s) for %s %.*s",
					      code,
					      *reason ? reason : "no reason",
					      method, plen, path);
		}
		goto out;
	}
	reason = k8s_reason_for_http(http_status);
	body_snippet(snippet, sizeof(snippet), body ? body : "", len);
	k8s_error_set(err, code, reason,
		      "Kubernetes API returned HTTP %d%s%s%s for %s %.*s%s%s",
		      code, *reason ? " (" : "", reason, *reason ? ")" : "",
		      method, plen, path, snippet[0] ? ": " : "", snippet);
out:
	json_decref(st);
}
