/*
 * url: WebSocket endpoint URLs (PROTOCOL.md section 1).
 *
 *   http://  -> ws://     https:// -> wss://     ws:// and wss:// as given
 *
 * Any other scheme is an error naming it. A URL with no path or only "/"
 * gets the caller's default path; a query string is kept; a fragment is
 * dropped (never sent). Ports default to 80 (ws) and 443 (wss). IPv6
 * literals are written in brackets ("ws://[::1]:8080/x"). User info
 * ("user:pass@") is refused: credentials travel in headers only.
 */
#ifndef PIPEOPS_COMMON_URL_H
#define PIPEOPS_COMMON_URL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ws_url {
	bool tls;	   /* wss */
	char *host;	   /* owned; IPv6 without brackets, never empty */
	uint16_t port;	   /* explicit or 80/443 */
	bool default_port; /* port is the scheme's default */
	char *path;	   /* owned; starts with '/' */
	char *query;	   /* owned; text after '?', NULL when there is none */
	char *target;	   /* owned; request target: path, or path?query */
	char *host_header; /* owned; "host", "host:port", "[v6]:port" */
};

/*
 * Parse @in. @default_path (starting with '/', may be NULL for "/") is used
 * when the URL has no path or only "/". On success returns 0 and fills @out
 * (free with url_free()). On failure returns -EINVAL, leaves @out zeroed and
 * writes one line to @err (which names the bad value).
 */
int url_parse_ws(const char *in, const char *default_path, struct ws_url *out,
		 char *err, size_t errlen);

/* Free the strings owned by @u and zero it. Accepts NULL. */
void url_free(struct ws_url *u);

/* True when @host is an IPv4 or IPv6 address (without brackets). */
bool is_ip_literal(const char *host);

#endif
