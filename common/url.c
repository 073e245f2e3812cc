/* url: WebSocket endpoint URLs (see url.h). */
#include "common/url.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"

bool is_ip_literal(const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;

	if (!host)
		return false;
	return inet_pton(AF_INET, host, &a4) == 1 ||
	       inet_pton(AF_INET6, host, &a6) == 1;
}

void url_free(struct ws_url *u)
{
	if (!u)
		return;
	free(u->host);
	free(u->path);
	free(u->query);
	free(u->target);
	free(u->host_header);
	memset(u, 0, sizeof(*u));
}

/* Parse a decimal port 1..65535 from [s, s+n). */
static int parse_port(const char *s, size_t n, uint16_t *port)
{
	unsigned long v = 0;

	if (n == 0 || n > 5)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v == 0 || v > 65535)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

/* Characters that may not appear in a host name we put on the wire. */
static bool host_chars_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch <= 0x20 || ch >= 0x7f || strchr("/?#@[]\\\"<>", ch))
			return false;
	}
	return true;
}

int url_parse_ws(const char *in, const char *default_path, struct ws_url *out,
		 char *err, size_t errlen)
{
	const char *p, *auth, *auth_end, *host_end, *port_s = NULL;
	const char *path, *path_end, *q;
	size_t port_n = 0, scheme_n;
	char buf[256];

	memset(out, 0, sizeof(*out));
	if (!in || !*in) {
		strfmt(err, errlen, "empty URL");
		return -EINVAL;
	}
	for (p = in; *p; p++) {
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
			strfmt(err, errlen,
			       "URL contains a space or control character");
			return -EINVAL;
		}
	}
	p = strstr(in, "://");
	if (!p) {
		strfmt(err, errlen, "URL \"%.200s\" has no scheme", in);
		return -EINVAL;
	}
	scheme_n = (size_t)(p - in);
	if (scheme_n == 2 && !strncasecmp(in, "ws", 2))
		out->tls = false;
	else if (scheme_n == 3 && !strncasecmp(in, "wss", 3))
		out->tls = true;
	else if (scheme_n == 4 && !strncasecmp(in, "http", 4))
		out->tls = false;
	else if (scheme_n == 5 && !strncasecmp(in, "https", 5))
		out->tls = true;
	else {
		strfmt(err, errlen,
		       "unsupported URL scheme \"%.*s\" (want ws, wss, http "
		       "or https)",
		       (int)(scheme_n > 32 ? 32 : scheme_n), in);
		return -EINVAL;
	}
	auth = p + 3;
	auth_end = auth + strcspn(auth, "/?#");
	if (memchr(auth, '@', (size_t)(auth_end - auth))) {
		strfmt(err, errlen, "user info in URL is not supported");
		return -EINVAL;
	}
	if (*auth == '[') {
		host_end = memchr(auth, ']', (size_t)(auth_end - auth));
		if (!host_end) {
			strfmt(err, errlen, "URL has an unclosed '[' in host");
			return -EINVAL;
		}
		out->host = xstrndup(auth + 1, (size_t)(host_end - auth - 1));
		if (!is_ip_literal(out->host) || !strchr(out->host, ':')) {
			strfmt(err, errlen,
			       "URL host \"[%.100s]\" is not an IPv6 address",
			       out->host);
			goto out_free;
		}
		host_end++;
		if (host_end < auth_end && *host_end != ':') {
			strfmt(err, errlen, "URL has junk after \"]\"");
			goto out_free;
		}
	} else {
		host_end = memchr(auth, ':', (size_t)(auth_end - auth));
		if (!host_end)
			host_end = auth_end;
		if (!host_chars_ok(auth, (size_t)(host_end - auth))) {
			strfmt(err, errlen, "URL host has invalid characters");
			return -EINVAL;
		}
		out->host = xstrndup(auth, (size_t)(host_end - auth));
	}
	if (!out->host[0]) {
		strfmt(err, errlen, "URL \"%.200s\" has no host", in);
		goto out_free;
	}
	if (strlen(out->host) > 200) {
		strfmt(err, errlen, "URL host is too long");
		goto out_free;
	}
	if (host_end < auth_end) { /* ':' port */
		port_s = host_end + 1;
		port_n = (size_t)(auth_end - port_s);
		if (parse_port(port_s, port_n, &out->port) != 0) {
			strfmt(err, errlen, "URL port \"%.*s\" is not 1-65535",
			       (int)(port_n > 16 ? 16 : port_n), port_s);
			goto out_free;
		}
	} else {
		out->port = out->tls ? 443 : 80;
	}
	out->default_port = out->port == (out->tls ? 443 : 80);

	path = auth_end;
	path_end = path + strcspn(path, "?#");
	q = NULL;
	if (*path_end == '?') {
		q = path_end + 1;
		out->query = xstrndup(q, strcspn(q, "#"));
	}
	if (path_end == path || (path_end - path == 1 && *path == '/'))
		out->path =
		    xstrdup(default_path && *default_path ? default_path : "/");
	else
		out->path = xstrndup(path, (size_t)(path_end - path));
	if (out->path[0] != '/') {
		strfmt(err, errlen, "default path \"%.100s\" must start with /",
		       out->path);
		goto out_free;
	}
	if (out->query) {
		size_t a = strlen(out->path), b = strlen(out->query);

		out->target = xmalloc(a + b + 2);
		memcpy(out->target, out->path, a);
		out->target[a] = '?';
		memcpy(out->target + a + 1, out->query, b + 1);
	} else {
		out->target = xstrdup(out->path);
	}
	if (strchr(out->host, ':'))
		strfmt(buf, sizeof(buf), "[%s]", out->host);
	else
		strfmt(buf, sizeof(buf), "%s", out->host);
	if (!out->default_port) {
		size_t n = strlen(buf);

		strfmt(buf + n, sizeof(buf) - n, ":%u", (unsigned)out->port);
	}
	out->host_header = xstrdup(buf);
	return 0;

out_free:
	url_free(out);
	return -EINVAL;
}
