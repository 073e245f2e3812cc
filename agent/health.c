/*
 * health: /healthz, /readyz and /metrics over libmicrohttpd.
 *
 * DESIGN
 * One extra thread: libmicrohttpd's internal polling thread
 * (MHD_USE_AUTO_INTERNAL_THREAD: epoll on Linux, so descriptor numbers
 * above FD_SETSIZE are fine). It is created by health_start() in main
 * after the signals are blocked, so it inherits the mask, and joined by
 * health_stop() before the agent is torn down. Requests are answered on
 * that thread from a snapshot of atomics (endpoint state, rtt, outbox,
 * in-flight, registered), ring_depth() and the metrics counters: the
 * server takes no agent lock and never blocks another thread. At most
 * HEALTH_MAX_CONNECTIONS clients at a time, each idle for at most
 * HEALTH_IDLE_TIMEOUT_S.
 * The listening socket is opened here (not by libmicrohttpd) so a bind
 * failure is reported with its errno; libmicrohttpd closes it on stop.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "agent/agent.h"
#include "agent/health.h"
#include "agent/metrics.h"
#include "common/log.h"
#include "common/util.h"

#define HEALTH_MAX_CONNECTIONS 32
#define HEALTH_IDLE_TIMEOUT_S  10
#define CT_TEXT		       "text/plain; charset=utf-8"
#define CT_METRICS	       "text/plain; version=0.0.4; charset=utf-8"

struct health {
	struct agent *a;
	struct MHD_Daemon *daemon;
};

bool health_ready(struct agent *a, char *why, size_t len)
{
	char kerr[256];
	size_t n = 0;
	bool ready = true;

	if (len)
		why[0] = '\0';
	if (atomic_load(&a->stopping)) {
		n += (size_t)snprintf(why, len, "agent stopping");
		ready = false;
	}
	if (!atomic_load(&a->registered)) {
		if (n < len)
			n += (size_t)snprintf(why + n, len - n,
					      "%scontrol plane not registered",
					      ready ? "" : "\n");
		ready = false;
	}
	if (!metrics_k8s_reachable(kerr, sizeof(kerr))) {
		if (n < len)
			snprintf(why + n, len - n,
				 "%skubernetes API unreachable: %s",
				 ready ? "" : "\n", kerr);
		ready = false;
	}
	return ready;
}

/* Queue a response with @body (takes ownership; malloc'd). */
static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status,
			     const char *type, char *body, size_t len)
{
	struct MHD_Response *r;
	enum MHD_Result rc;

	r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	rc = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status,
				  const char *text)
{
	char *body = xmalloc(strlen(text) + 2);
	size_t n = (size_t)snprintf(body, strlen(text) + 2, "%s\n", text);

	return reply(conn, status, CT_TEXT, body, n);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
				  const char *url, const char *method,
				  const char *version, const char *upload_data,
				  size_t *upload_data_size, void **req_cls)
{
	struct health *h = cls;

	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)req_cls;
	log_set_thread_name("health");
	if (strcmp(method, MHD_HTTP_METHOD_GET) &&
	    strcmp(method, MHD_HTTP_METHOD_HEAD))
		return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
				  "method not allowed");
	if (!strcmp(url, "/healthz"))
		return reply_text(conn, MHD_HTTP_OK, "ok");
	if (!strcmp(url, "/readyz")) {
		char why[512];

		if (health_ready(h->a, why, sizeof(why)))
			return reply_text(conn, MHD_HTTP_OK, "ok");
		return reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, why);
	}
	if (!strcmp(url, "/metrics")) {
		struct metrics_gauges g;
		size_t len;
		char *text;

		metrics_collect(h->a, &g);
		text = metrics_render(&g, &len);
		return reply(conn, MHD_HTTP_OK, CT_METRICS, text, len);
	}
	return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found");
}

__attribute__((format(printf, 2, 0))) static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[256];
	size_t n;

	(void)cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	log_set_thread_name("health");
	LOG_WARN("health server", "error=\"%s\"", buf);
}

/* "host:port" or "[v6]:port" into its parts; 0 or -EINVAL. */
static int split_listen(const char *addr, char *host, size_t hlen, char *port,
			size_t plen)
{
	const char *sep, *h = addr;
	size_t n;

	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');

		if (!close || close[1] != ':')
			return -EINVAL;
		h = addr + 1;
		n = (size_t)(close - h);
		sep = close + 1;
	} else {
		sep = strrchr(addr, ':');
		if (!sep || strchr(addr, ':') != sep)
			return -EINVAL;
		n = (size_t)(sep - addr);
	}
	if (n >= hlen || !sep[1] || strlen(sep + 1) >= plen)
		return -EINVAL;
	memcpy(host, h, n);
	host[n] = '\0';
	snprintf(port, plen, "%s", sep + 1);
	return 0;
}

/* A bound, listening, non-blocking socket for @addr, or -errno. */
static int open_listener(const char *addr, char *err, size_t errlen)
{
	struct addrinfo hints = {
	    .ai_socktype = SOCK_STREAM,
	    .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	};
	struct addrinfo *res, *ai;
	char host[256], port[16], ebuf[128];
	int fd = -1, e = EINVAL, one = 1, rc;

	if (split_listen(addr, host, sizeof(host), port, sizeof(port)) < 0) {
		snprintf(err, errlen,
			 "[health] listen %s: expected host:port or "
			 "[v6]:port",
			 addr);
		return -EINVAL;
	}
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rc) {
		snprintf(err, errlen, "[health] listen %s: %s", addr,
			 gai_strerror(rc));
		return -EINVAL;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family,
			    ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    ai->ai_protocol);
		if (fd < 0) {
			e = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one,
				   sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, 64) == 0)
			break;
		e = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", addr,
			 errstr(e, ebuf, sizeof(ebuf)));
		return -e;
	}
	return fd;
}

int health_start(struct agent *a, const char *addr, struct health **out,
		 char *err, size_t errlen)
{
	struct health *h;
	int fd;

	*out = NULL;
	fd = open_listener(addr, err, errlen);
	if (fd < 0)
		return fd;
	h = xcalloc(1, sizeof(*h));
	h->a = a;
	h->daemon = MHD_start_daemon(
	    MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
	    on_request, h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
	    MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)HEALTH_MAX_CONNECTIONS,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HEALTH_IDLE_TIMEOUT_S,
	    MHD_OPTION_END);
	if (!h->daemon) {
		/* Not closed here: libmicrohttpd may have closed it already. */
		snprintf(err, errlen, "cannot start the HTTP server on %s",
			 addr);
		free(h);
		return -EIO;
	}
	LOG_INFO("health listener started", "listen=%s", addr);
	*out = h;
	return 0;
}

void health_stop(struct health *h)
{
	if (!h)
		return;
	MHD_stop_daemon(h->daemon);
	free(h);
}
