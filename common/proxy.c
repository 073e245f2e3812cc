/* proxy: the HTTP proxy from the environment (see proxy.h). */
#include "common/proxy.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The first of @lower, @upper that is set and not empty. */
static const char *env_pick(const char *lower, const char *upper,
			    const char **which)
{
	const char *v = getenv(lower);

	if (v && *v) {
		*which = lower;
		return v;
	}
	v = getenv(upper);
	if (v && *v) {
		*which = upper;
		return v;
	}
	*which = NULL;
	return NULL;
}

/* Parse an address with an optional "/bits"; family or 0 when not one. */
static int parse_addr(const char *s, unsigned char addr[16], int *bits)
{
	char buf[64];
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	int fam = 0, max;

	if (n == 0 || n >= sizeof(buf))
		return 0;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (inet_pton(AF_INET, buf, addr) == 1)
		fam = AF_INET;
	else if (inet_pton(AF_INET6, buf, addr) == 1)
		fam = AF_INET6;
	else
		return 0;
	max = fam == AF_INET ? 32 : 128;
	*bits = max;
	if (slash) {
		char *end;
		long b = strtol(slash + 1, &end, 10);

		if (end == slash + 1 || *end || b < 0 || b > max)
			return 0;
		*bits = (int)b;
	}
	return fam;
}

static bool prefix_equal(const unsigned char *a, const unsigned char *b,
			 int bits)
{
	int whole = bits / 8, rest = bits % 8;

	if (memcmp(a, b, (size_t)whole) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((a[whole] ^ b[whole]) & (0xff << (8 - rest))) == 0;
}

/* Does the single entry [e, e+n) match? */
static bool entry_match(const char *e, size_t n, const char *host, size_t hlen,
			uint16_t port)
{
	char ent[300];
	const char *name;
	char *colon;
	unsigned char ea[16], ha[16];
	int efam, hfam, ebits, hbits;
	long want_port = 0;

	if (n == 0 || n >= sizeof(ent))
		return false;
	memcpy(ent, e, n);
	ent[n] = '\0';
	if (!strcmp(ent, "*"))
		return true;
	name = ent;
	if (ent[0] == '[') { /* [v6] or [v6]:port */
		char *rb = strchr(ent, ']');

		if (!rb)
			return false;
		*rb = '\0';
		name = ent + 1;
		if (rb[1] == ':') {
			char *end;

			want_port = strtol(rb + 2, &end, 10);
			if (end == rb + 2 || *end)
				return false;
		} else if (rb[1]) {
			return false;
		}
	} else if ((colon = strchr(ent, ':')) && !strchr(colon + 1, ':')) {
		/* name:port or v4:port (one colon: not a bare IPv6) */
		char *end;

		*colon = '\0';
		want_port = strtol(colon + 1, &end, 10);
		if (end == colon + 1 || *end)
			return false;
	}
	if (want_port && want_port != port)
		return false;

	efam = parse_addr(name, ea, &ebits);
	if (efam) {
		char hb[64];

		if (hlen >= sizeof(hb))
			return false;
		memcpy(hb, host, hlen);
		hb[hlen] = '\0';
		hfam = parse_addr(hb, ha, &hbits);
		return hfam == efam && prefix_equal(ea, ha, ebits);
	}
	while (*name == '.')
		name++;
	n = strlen(name);
	while (n > 0 && name[n - 1] == '.')
		n--;
	if (n == 0 || n > hlen)
		return false;
	if (strncasecmp(host + hlen - n, name, n) != 0)
		return false;
	return hlen == n || host[hlen - n - 1] == '.';
}

bool proxy_no_proxy_match(const char *no_proxy, const char *host, uint16_t port)
{
	size_t hlen;
	const char *p = no_proxy;

	if (!no_proxy || !host)
		return false;
	hlen = strlen(host);
	while (hlen > 0 && host[hlen - 1] == '.')
		hlen--;
	while (*p) {
		size_t n;

		p += strspn(p, ", \t\r\n");
		n = strcspn(p, ", \t\r\n");
		if (n && entry_match(p, n, host, hlen, port))
			return true;
		p += n;
	}
	return false;
}

const char *proxy_from_env(bool tls, const char *host, uint16_t port,
			   const char **source)
{
	const char *which, *np_which, *url, *np;

	url = tls ? env_pick("https_proxy", "HTTPS_PROXY", &which)
		  : env_pick("http_proxy", "HTTP_PROXY", &which);
	if (source)
		*source = which;
	if (!url)
		return NULL;
	np = env_pick("no_proxy", "NO_PROXY", &np_which);
	if (np && proxy_no_proxy_match(np, host, port)) {
		if (source)
			*source = np_which;
		return NULL;
	}
	return url;
}
