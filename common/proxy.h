/*
 * proxy: which HTTP proxy a WebSocket connection uses when the
 * configuration names none (`proxy =` empty): the environment, read the
 * way curl reads it.
 *
 *   wss:// (and https://)  https_proxy, then HTTPS_PROXY
 *   ws://  (and http://)   http_proxy, then HTTP_PROXY
 *   no_proxy, then NO_PROXY: hosts that are reached directly
 *
 * NO_PROXY is a list separated by commas and/or white space:
 *   *                  every host goes direct
 *   example.com        that host and every host under it (a.example.com),
 *   .example.com       the same (a leading dot is ignored); not
 *                      badexample.com
 *   host:8443          the same, only for port 8443
 *   10.0.0.1 / ::1     that address ([::1]:8443 with a port)
 *   10.0.0.0/8, fd00::/8  addresses in that CIDR range
 * Names are compared without case and never resolved: "localhost" does not
 * match 127.0.0.1.
 */
#ifndef PIPEOPS_COMMON_PROXY_H
#define PIPEOPS_COMMON_PROXY_H

#include <stdbool.h>
#include <stdint.h>

/*
 * The proxy URL for a connection to @host:@port (@tls: wss), or NULL for a
 * direct connection. The result is borrowed from the environment (valid
 * while nobody calls setenv). *@source, when not NULL, gets the name of
 * the variable the URL came from ("https_proxy", ...), or of the NO_PROXY
 * variable that sent the host direct, or NULL.
 */
const char *proxy_from_env(bool tls, const char *host, uint16_t port,
			   const char **source);

/* True when @host:@port matches the NO_PROXY list @no_proxy (may be NULL:
 * false). @host is a name or an address without brackets. */
bool proxy_no_proxy_match(const char *no_proxy, const char *host,
			  uint16_t port);

#endif
