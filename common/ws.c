/*
 * ws: one client WebSocket connection (see ws.h for the API).
 *
 * DESIGN
 * Threads: ws_connect() runs on the endpoint's reader thread before the
 * connection is shared. Afterwards exactly two threads use a connection:
 * the reader (ws_conn_on_readable) and the writer (send/flush/ping/close).
 * Any thread may read last_rx_ms and rtt_ms (atomics).
 *
 * Locking: c->io_lock guards the transport (and so the mbedtls_ssl_context)
 * and the wslay context, plus every field marked "guarded by io_lock".
 * Every wslay_event_* and mbedtls_ssl_* call runs under it. The socket is
 * non-blocking; nobody waits while holding the lock (poll() happens in the
 * callers, outside). wslay's callbacks run inside wslay_event_recv/send and
 * therefore under the lock; they only copy bytes and never block. Text
 * messages are copied into c->inbox under the lock and handed to the user
 * callback after it is released, so the callback may call
 * ws_conn_send_text() (same lock, not recursive: it must not be held then).
 * The only lock taken inside io_lock is tls_ctx's session-cache lock.
 *
 * Transport: a small vtable (plain socket, TLS, or a test double). The TLS
 * transport keeps one record's worth of output in its own buffer so that a
 * write that returned WANT_WRITE is retried with the same pointer and
 * length, as mbedTLS requires, whatever wslay does next; want_write and
 * flush account for that buffer.
 *
 * Shutdown: the owner stops both threads, then ws_conn_free() (best-effort
 * close_notify, no waiting).
 */
#include "common/ws.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/base64.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/sha1.h>
#include <mbedtls/ssl.h>
#include <wslay/wslay.h>

#include "common/log.h"
#include "common/proxy.h"
#include "common/rand.h"
#include "common/tls.h"
#include "common/url.h"
#include "common/util.h"
#include "common/ws_internal.h"

#define WS_GUID			      "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_TLS_OUT_CAP		      16384 /* one TLS record of plaintext */
#define WS_DEFAULT_CONNECT_TIMEOUT_MS 10000

struct ws_msg {
	char *data; /* owned, NUL-terminated */
	size_t len;
};

struct ws_conn {
	pthread_mutex_t io_lock;
	int fd;			    /* owned; -1 in tests */
	struct ws_transport *tr;    /* guarded by io_lock */
	wslay_event_context_ptr ev; /* guarded by io_lock */
	uint8_t *pre;		    /* guarded by io_lock: bytes read with the
				       upgrade response, fed to wslay first */
	size_t pre_len, pre_off;    /* guarded by io_lock */
	struct ws_msg *inbox;	    /* guarded by io_lock: complete texts */
	size_t inbox_n, inbox_cap;  /* guarded by io_lock */
	int io_err;		/* guarded by io_lock: last transport error */
	size_t rx_budget;	/* guarded by io_lock: see WS_READ_BUDGET */
	int final_err;		/* guarded by io_lock: sticky end state */
	bool in_close_frame;	/* guarded by io_lock */
	bool close_seen;	/* guarded by io_lock: peer sent a close */
	uint8_t close_buf[125]; /* guarded by io_lock */
	size_t close_len;	/* guarded by io_lock */
	uint16_t close_code;	/* guarded by io_lock */
	char close_reason[124]; /* guarded by io_lock */
	atomic_int_least64_t last_rx_ms; /* atomic: any thread reads */
	atomic_int_least64_t rtt_ms;	 /* atomic: -1 before first pong */
};

/* ---------------------------------------------------------------------- */
/* Plain socket transport                                                  */

struct ws_plain {
	struct ws_transport base;
	int fd; /* borrowed from the connection */
};

static ssize_t plain_recv(struct ws_transport *t, void *buf, size_t len)
{
	struct ws_plain *p = (struct ws_plain *)t;
	ssize_t n;

	for (;;) {
		n = recv(p->fd, buf, len, 0);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			t->want = POLLIN;
			return -EAGAIN;
		}
		return -errno;
	}
}

static ssize_t plain_send(struct ws_transport *t, const void *buf, size_t len,
			  bool more)
{
	struct ws_plain *p = (struct ws_plain *)t;
	ssize_t n;

	for (;;) {
		n = send(p->fd, buf, len, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			t->want = POLLOUT;
			return -EAGAIN;
		}
		return -errno;
	}
}

static int plain_flush(struct ws_transport *t)
{
	(void)t;
	return 0;
}

static bool plain_pending(struct ws_transport *t)
{
	(void)t;
	return false;
}

static void plain_free(struct ws_transport *t)
{
	free(t);
}

static const struct ws_transport_ops plain_ops = {
    .recv = plain_recv,
    .send = plain_send,
    .flush = plain_flush,
    .pending = plain_pending,
    .free = plain_free,
};

static struct ws_transport *plain_new(int fd)
{
	struct ws_plain *p = xcalloc(1, sizeof(*p));

	p->base.ops = &plain_ops;
	p->fd = fd;
	return &p->base;
}

/* ---------------------------------------------------------------------- */
/* TLS transport (mbedTLS over our own bio: send() with MSG_NOSIGNAL)      */

struct ws_tls {
	struct ws_transport base;
	int fd;	       /* borrowed from the connection */
	int sys_errno; /* errno of the last failed bio call */
	mbedtls_ssl_context ssl;
	bool leaf_self_signed;	     /* set by the verify callback */
	uint8_t out[WS_TLS_OUT_CAP]; /* plaintext accepted, not yet written */
	size_t out_off, out_len;
	bool in_write; /* mbedtls_ssl_write(out+off, len-off) must be
			  retried with the same arguments */
};

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
	struct ws_tls *t = ctx;
	ssize_t n;

	for (;;) {
		n = send(t->fd, buf, len, MSG_NOSIGNAL);
		if (n >= 0)
			return (int)n;
		if (errno == EINTR)
			continue;
		t->sys_errno = errno;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return MBEDTLS_ERR_SSL_WANT_WRITE;
		if (errno == EPIPE || errno == ECONNRESET)
			return MBEDTLS_ERR_NET_CONN_RESET;
		return MBEDTLS_ERR_NET_SEND_FAILED;
	}
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
	struct ws_tls *t = ctx;
	ssize_t n;

	for (;;) {
		n = recv(t->fd, buf, len, 0);
		if (n >= 0)
			return (int)n;
		if (errno == EINTR)
			continue;
		t->sys_errno = errno;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return MBEDTLS_ERR_SSL_WANT_READ;
		if (errno == EPIPE || errno == ECONNRESET)
			return MBEDTLS_ERR_NET_CONN_RESET;
		return MBEDTLS_ERR_NET_RECV_FAILED;
	}
}

/* Map a failed mbedtls_ssl_* return to -EAGAIN (with want) or -errno. */
static int tls_map_err(struct ws_tls *t, int ret)
{
	if (ret == MBEDTLS_ERR_SSL_WANT_READ) {
		t->base.want = POLLIN;
		return -EAGAIN;
	}
	if (ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
		t->base.want = POLLOUT;
		return -EAGAIN;
	}
	if (ret == MBEDTLS_ERR_NET_CONN_RESET)
		return -ECONNRESET;
	tls_error_text(ret, t->base.err, sizeof(t->base.err));
	if (ret == MBEDTLS_ERR_NET_SEND_FAILED ||
	    ret == MBEDTLS_ERR_NET_RECV_FAILED)
		return t->sys_errno ? -t->sys_errno : -EIO;
	return -EPROTO;
}

static ssize_t tls_recv(struct ws_transport *tr, void *buf, size_t len)
{
	struct ws_tls *t = (struct ws_tls *)tr;
	int ret = mbedtls_ssl_read(&t->ssl, buf, len);

	if (ret > 0)
		return ret;
	if (ret == 0 || ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
		return 0;
	return tls_map_err(t, ret);
}

static int tls_flush(struct ws_transport *tr)
{
	struct ws_tls *t = (struct ws_tls *)tr;
	int ret;

	while (t->out_off < t->out_len) {
		ret = mbedtls_ssl_write(&t->ssl, t->out + t->out_off,
					t->out_len - t->out_off);
		if (ret < 0) {
			t->in_write = true;
			return tls_map_err(t, ret);
		}
		t->in_write = false;
		t->out_off += (size_t)ret;
	}
	t->in_write = false;
	t->out_off = t->out_len = 0;
	return 0;
}

static ssize_t tls_send(struct ws_transport *tr, const void *buf, size_t len,
			bool more)
{
	struct ws_tls *t = (struct ws_tls *)tr;
	size_t room, n;
	int ret;

	if (t->in_write) {
		ret = tls_flush(tr);
		if (ret < 0)
			return ret;
	}
	room = sizeof(t->out) - t->out_len;
	if (room == 0) {
		ret = tls_flush(tr);
		if (ret < 0)
			return ret;
		room = sizeof(t->out);
	}
	n = len < room ? len : room;
	memcpy(t->out + t->out_len, buf, n);
	t->out_len += n;
	/* A frame header announced as "more": wait for its payload so both
	 * go out in one record. */
	if (more && t->out_len < sizeof(t->out))
		return (ssize_t)n;
	ret = tls_flush(tr);
	if (ret < 0 && ret != -EAGAIN)
		return ret;
	return (ssize_t)n;
}

static bool tls_pending(struct ws_transport *tr)
{
	struct ws_tls *t = (struct ws_tls *)tr;

	return t->out_len > t->out_off;
}

static bool tls_buffered(struct ws_transport *tr)
{
	struct ws_tls *t = (struct ws_tls *)tr;

	return mbedtls_ssl_get_bytes_avail(&t->ssl) > 0 ||
	       mbedtls_ssl_check_pending(&t->ssl);
}

static void tls_free(struct ws_transport *tr)
{
	struct ws_tls *t = (struct ws_tls *)tr;

	/* Best effort, never waits: the socket is non-blocking. */
	(void)mbedtls_ssl_close_notify(&t->ssl);
	mbedtls_ssl_free(&t->ssl);
	free(t);
}

static const struct ws_transport_ops tls_ops = {
    .recv = tls_recv,
    .send = tls_send,
    .flush = tls_flush,
    .pending = tls_pending,
    .buffered = tls_buffered,
    .free = tls_free,
};

/* Records whether the leaf the server sent is self-signed. */
static int tls_verify_cb(void *ud, mbedtls_x509_crt *crt, int depth,
			 uint32_t *flags)
{
	struct ws_tls *t = ud;

	(void)flags;
	if (depth == 0)
		t->leaf_self_signed =
		    crt->issuer_raw.len == crt->subject_raw.len &&
		    !memcmp(crt->issuer_raw.p, crt->subject_raw.p,
			    crt->issuer_raw.len);
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Helpers for ws_connect                                                  */

static void set_err(struct ws_connect_error *err, int errnum, const char *fmt,
		    ...) __attribute__((format(printf, 3, 4)));
static void copy_printable(char *dst, size_t cap, const char *s, size_t n);

static void set_err(struct ws_connect_error *err, int errnum, const char *fmt,
		    ...)
{
	va_list ap;

	err->errnum = errnum;
	va_start(ap, fmt);
	vsnprintf(err->text, sizeof(err->text), fmt, ap);
	va_end(ap);
}

/*
 * Wait until @fd has @events, @cancel_fd is readable (-ECANCELED) or the
 * monotonic @deadline passes (-ETIMEDOUT). 0 when @fd is ready.
 */
static int wait_io(int fd, short events, int cancel_fd, int64_t deadline)
{
	for (;;) {
		struct pollfd p[2] = {{fd, events, 0}, {cancel_fd, POLLIN, 0}};
		int64_t left = deadline - clock_mono_ms();
		int r;

		if (left <= 0)
			return -ETIMEDOUT;
		r = poll(p, cancel_fd >= 0 ? 2 : 1,
			 left > INT_MAX ? INT_MAX : (int)left);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -ETIMEDOUT;
		if (cancel_fd >= 0 && p[1].revents)
			return -ECANCELED;
		if (p[0].revents)
			return 0;
	}
}

/* Describe a wait failure for the connect step @what. */
static void wait_err(struct ws_connect_error *err, int ret, const char *what,
		     int64_t timeout_ms)
{
	char eb[64];

	if (ret == -ECANCELED)
		set_err(err, ret, "cancelled during %s", what);
	else if (ret == -ETIMEDOUT)
		set_err(err, ret, "timed out after %lld ms during %s",
			(long long)timeout_ms, what);
	else
		set_err(err, ret, "%s: poll: %s", what,
			errstr(ret, eb, sizeof(eb)));
}

/* Split "host:port" of a proxy URL; see ws_connect(). */
struct ws_proxy {
	char *host;
	uint16_t port;
	char *auth_b64; /* base64 of "user:pass", NULL when none */
};

static void proxy_free(struct ws_proxy *p)
{
	free(p->host);
	free(p->auth_b64);
	memset(p, 0, sizeof(*p));
}

/* Parse http://[user:pass@]host:port (a trailing "/" is allowed). */
static int proxy_parse(const char *in, struct ws_proxy *out,
		       struct ws_connect_error *err)
{
	const char *auth, *at, *hp, *end, *colon;
	unsigned long port = 0;

	memset(out, 0, sizeof(*out));
	if (strncasecmp(in, "http://", 7) == 0) {
		auth = in + 7;
	} else if (!strstr(in, "://")) {
		auth = in; /* "host:port", as curl takes it from the env */
	} else {
		set_err(err, -EINVAL,
			"proxy URL must be http:// (TLS to the proxy and "
			"other schemes are not supported)");
		return -EINVAL;
	}
	end = auth + strcspn(auth, "/?#");
	at = memchr(auth, '@', (size_t)(end - auth));
	hp = at ? at + 1 : auth;
	if (*hp == '[') {
		colon = memchr(hp, ']', (size_t)(end - hp));
		if (!colon || colon[1] != ':')
			goto bad;
		out->host = xstrndup(hp + 1, (size_t)(colon - hp - 1));
		colon++;
	} else {
		colon = memchr(hp, ':', (size_t)(end - hp));
		if (!colon)
			goto bad;
		out->host = xstrndup(hp, (size_t)(colon - hp));
	}
	if (!out->host[0] || colon + 1 >= end || end - colon > 6)
		goto bad;
	for (const char *q = colon + 1; q < end; q++) {
		if (*q < '0' || *q > '9')
			goto bad;
		port = port * 10 + (unsigned long)(*q - '0');
	}
	if (port == 0 || port > 65535)
		goto bad;
	out->port = (uint16_t)port;
	if (at) {
		size_t n = (size_t)(at - auth), olen = 0;

		out->auth_b64 = xmalloc(4 * ((n + 2) / 3) + 1);
		mbedtls_base64_encode((unsigned char *)out->auth_b64,
				      4 * ((n + 2) / 3) + 1, &olen,
				      (const unsigned char *)auth, n);
		out->auth_b64[olen] = '\0';
	}
	return 0;
bad:
	proxy_free(out);
	set_err(err, -EINVAL, "proxy URL is not http://[user:pass@]host:port");
	return -EINVAL;
}

/*
 * One name lookup on a short-lived detached thread of ours, so that the
 * connect deadline and the cancel fd bound DNS too. (glibc's
 * getaddrinfo_a() would do the same, but its helper threads are created
 * inside libc where ThreadSanitizer cannot see them, which crashes `make
 * tsan`.) The thread writes r->efd when done. A lookup the waiter gives up
 * on keeps running in the background: the waiter and the thread each hold
 * a reference, and the last one frees it.
 */
struct dns_req {
	struct addrinfo hints;
	struct addrinfo *result; /* written by the thread before efd */
	int error;		 /* EAI_* or 0; likewise */
	atomic_bool done;	 /* release: thread; acquire: waiter */
	atomic_int refs;
	int efd; /* eventfd, written on completion */
	char port[8];
	char host[];
};

static void dns_req_put(struct dns_req *r)
{
	if (atomic_fetch_sub(&r->refs, 1) != 1)
		return;
	if (r->result)
		freeaddrinfo(r->result);
	close(r->efd);
	free(r);
}

static void *dns_thread(void *arg)
{
	struct dns_req *r = arg;
	uint64_t one = 1;

	r->error = getaddrinfo(r->host, r->port, &r->hints, &r->result);
	/* Publish result/error (TSan does not see eventfd as a fence). */
	atomic_store_explicit(&r->done, true, memory_order_release);
	if (write(r->efd, &one, sizeof(one)) < 0) {
		/* cannot happen for an eventfd below its maximum */
	}
	dns_req_put(r);
	return NULL;
}

/*
 * Resolve @host:@port before @deadline. 0 with *@res (freeaddrinfo);
 * -EHOSTUNREACH with the getaddrinfo() code in *@gai (glibc's EAI_* codes
 * are negative and would collide with errno values); or -ETIMEDOUT /
 * -ECANCELED / -errno.
 */
static int resolve(const char *host, uint16_t port, int cancel_fd,
		   int64_t deadline, struct addrinfo **res, int *gai)
{
	struct addrinfo hints;
	pthread_attr_t attr;
	pthread_t th;
	struct dns_req *r;
	char portstr[8];
	size_t hl = strlen(host);
	int ret;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	strfmt(portstr, sizeof(portstr), "%u", (unsigned)port);
	*res = NULL;
	*gai = 0;
	if (is_ip_literal(host)) {
		hints.ai_flags |= AI_NUMERICHOST;
		*gai = getaddrinfo(host, portstr, &hints, res);
		return *gai ? -EHOSTUNREACH : 0;
	}
	r = xcalloc(1, sizeof(*r) + hl + 1);
	memcpy(r->host, host, hl + 1);
	memcpy(r->port, portstr, sizeof(portstr));
	r->hints = hints;
	r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->efd < 0) {
		free(r);
		*gai = getaddrinfo(host, portstr, &hints, res);
		return *gai ? -EHOSTUNREACH : 0;
	}
	atomic_init(&r->refs, 2);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	ret = pthread_create(&th, &attr, dns_thread, r);
	pthread_attr_destroy(&attr);
	if (ret != 0) {
		atomic_store(&r->refs, 1); /* no thread: look up here */
		dns_req_put(r);
		*gai = getaddrinfo(host, portstr, &hints, res);
		return *gai ? -EHOSTUNREACH : 0;
	}
	ret = wait_io(r->efd, POLLIN, cancel_fd, deadline);
	if (ret == 0 && !atomic_load_explicit(&r->done, memory_order_acquire))
		ret = -EAGAIN; /* cannot happen: efd is written after done */
	if (ret < 0) {
		dns_req_put(r); /* the thread frees it when it is done */
		return ret;
	}
	*gai = r->error;
	if (*gai == 0) {
		*res = r->result;
		r->result = NULL;
	}
	dns_req_put(r);
	return *gai ? -EHOSTUNREACH : 0;
}

/*
 * Resolve @host and connect to the first address that answers, each
 * attempt getting a share of the time left. Returns a connected
 * non-blocking socket or a negative errno with @err filled.
 */
static int tcp_connect(const char *host, uint16_t port, int cancel_fd,
		       int64_t deadline, int64_t timeout_ms,
		       struct ws_connect_error *err)
{
	struct addrinfo *res = NULL, *ai;
	char eb[64];
	int fd = -1, ret, gai, n_addr = 0, last = -ECONNREFUSED, one = 1;

	ret = resolve(host, port, cancel_fd, deadline, &res, &gai);
	if (ret == -ECANCELED || ret == -ETIMEDOUT) {
		wait_err(err, ret, "DNS lookup", timeout_ms);
		return ret;
	}
	if (ret == -EHOSTUNREACH) {
		set_err(err, -EHOSTUNREACH, "resolve %.100s: %s", host,
			gai_strerror(gai));
		return -EHOSTUNREACH;
	}
	if (ret < 0) {
		set_err(err, -EHOSTUNREACH, "resolve %.100s: %s", host,
			errstr(ret, eb, sizeof(eb)));
		return -EHOSTUNREACH;
	}
	for (ai = res; ai; ai = ai->ai_next)
		n_addr++;
	for (ai = res; ai; ai = ai->ai_next, n_addr--) {
		int64_t now = clock_mono_ms();
		int64_t share = (deadline - now) / (n_addr > 0 ? n_addr : 1);
		int64_t until = n_addr > 1 ? now + share : deadline;
		int soerr = 0;
		socklen_t sl = sizeof(soerr);

		fd = socket(ai->ai_family,
			    ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0) {
			last = -errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno != EINPROGRESS) {
			last = -errno;
			goto next;
		}
		ret = wait_io(fd, POLLOUT, cancel_fd, until);
		if (ret == -ECANCELED || (ret == -ETIMEDOUT && !ai->ai_next)) {
			close(fd);
			freeaddrinfo(res);
			wait_err(err, ret, "TCP connect", timeout_ms);
			return ret;
		}
		if (ret < 0) {
			last = ret;
			goto next;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
			soerr = errno;
		if (soerr == 0)
			break;
		last = -soerr;
	next:
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		set_err(err, last, "connect to %.100s port %u: %s", host,
			(unsigned)port, errstr(last, eb, sizeof(eb)));
		return last;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* Send all of @buf over @t before @deadline. */
static int send_all(struct ws_transport *t, int fd, const char *buf, size_t len,
		    int cancel_fd, int64_t deadline)
{
	size_t off = 0;
	ssize_t n;
	int ret;

	while (off < len || t->ops->pending(t)) {
		if (off < len)
			n = t->ops->send(t, buf + off, len - off, false);
		else
			n = t->ops->flush(t);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n == 0)
			continue;
		if (n != -EAGAIN)
			return (int)n;
		ret = wait_io(fd, t->want, cancel_fd, deadline);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/*
 * Talk HTTP CONNECT to a proxy on @fd so that the stream reaches
 * @u->host:@u->port. Plain text (http:// proxies only).
 */
static int proxy_connect(int fd, const struct ws_proxy *px,
			 const struct ws_url *u, int cancel_fd,
			 int64_t deadline, int64_t timeout_ms,
			 struct ws_connect_error *err)
{
	struct ws_transport *t = plain_new(fd);
	char req[768], resp[4096], eb[64], hostport[280];
	size_t len = 0;
	int ret, status = 0;

	if (strchr(u->host, ':'))
		strfmt(hostport, sizeof(hostport), "[%s]:%u", u->host,
		       (unsigned)u->port);
	else
		strfmt(hostport, sizeof(hostport), "%s:%u", u->host,
		       (unsigned)u->port);
	strfmt(req, sizeof(req),
	       "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s%s%s\r\n", hostport,
	       hostport, px->auth_b64 ? "Proxy-Authorization: Basic " : "",
	       px->auth_b64 ? px->auth_b64 : "", px->auth_b64 ? "\r\n" : "");
	ret = send_all(t, fd, req, strlen(req), cancel_fd, deadline);
	if (ret < 0)
		goto out_fail;
	/* Read byte by byte: nothing after the proxy's headers may be
	 * consumed, it belongs to TLS or the upgrade. */
	while (len < sizeof(resp) - 1) {
		ssize_t n = t->ops->recv(t, resp + len, 1);

		if (n == -EAGAIN) {
			ret = wait_io(fd, POLLIN, cancel_fd, deadline);
			if (ret < 0)
				goto out_fail;
			continue;
		}
		if (n <= 0) {
			ret = n == 0 ? -ECONNRESET : (int)n;
			goto out_fail;
		}
		len++;
		if (len >= 4 && !memcmp(resp + len - 4, "\r\n\r\n", 4))
			break;
	}
	resp[len] = '\0';
	if (sscanf(resp, "HTTP/1.%*1[01] %3d", &status) != 1 || status < 200 ||
	    status > 299) {
		char reason[64] = "";
		size_t rl = strcspn(resp, "\r\n");

		if (rl > 12)
			copy_printable(reason, sizeof(reason), resp + 12,
				       rl - 12);
		if (status == 0)
			set_err(err, -EPROTO,
				"proxy answered CONNECT %s with something "
				"that is not HTTP",
				hostport);
		else
			set_err(err, -ECONNREFUSED,
				"proxy refused CONNECT %s: HTTP %d%s%s%s",
				hostport, status, reason[0] ? " " : "", reason,
				status == 407 ? " (proxy credentials missing "
						"or refused)"
					      : "");
		t->ops->free(t);
		return err->errnum;
	}
	t->ops->free(t);
	return 0;

out_fail:
	t->ops->free(t);
	if (ret == -ECANCELED || ret == -ETIMEDOUT)
		wait_err(err, ret, "proxy CONNECT", timeout_ms);
	else
		set_err(err, ret, "proxy CONNECT %s: %s", hostport,
			errstr(ret, eb, sizeof(eb)));
	return ret;
}

/* Set up TLS on @fd and run the handshake. Returns the transport or NULL. */
static struct ws_transport *tls_handshake(int fd, struct tls_ctx *tls,
					  const struct ws_url *u, int cancel_fd,
					  int64_t deadline, int64_t timeout_ms,
					  struct ws_connect_error *err)
{
	struct ws_tls *t = xcalloc(1, sizeof(*t));
	char etext[160], vtext[200];
	uint32_t flags;
	int ret;

	t->base.ops = &tls_ops;
	t->fd = fd;
	mbedtls_ssl_init(&t->ssl);
	ret = mbedtls_ssl_setup(&t->ssl, tls_ctx_config(tls));
	if (ret == 0)
		/* Always: without it 2.28.3 skips the name check. */
		ret = mbedtls_ssl_set_hostname(&t->ssl, u->host);
	if (ret != 0) {
		tls_error_text(ret, etext, sizeof(etext));
		set_err(err, -EPROTO, "TLS setup: %s", etext);
		goto out_free;
	}
	mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
	mbedtls_ssl_set_verify(&t->ssl, tls_verify_cb, t);
	tls_session_load(tls, u->host, u->port, &t->ssl);
	for (;;) {
		ret = mbedtls_ssl_handshake(&t->ssl);
		if (ret == 0)
			break;
		if (ret == MBEDTLS_ERR_SSL_WANT_READ ||
		    ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
			ret = wait_io(
			    fd,
			    ret == MBEDTLS_ERR_SSL_WANT_READ ? POLLIN : POLLOUT,
			    cancel_fd, deadline);
			if (ret < 0) {
				wait_err(err, ret, "TLS handshake", timeout_ms);
				goto out_free;
			}
			continue;
		}
		flags = mbedtls_ssl_get_verify_result(&t->ssl);
		if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && flags != 0 &&
		    flags != (uint32_t)-1) {
			if ((flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED) &&
			    t->leaf_self_signed)
				strfmt(vtext, sizeof(vtext),
				       "self-signed certificate for %s (not "
				       "trusted)",
				       u->host);
			else
				tls_verify_text(flags, NULL, u->host, vtext,
						sizeof(vtext));
			set_err(err, -EPERM, "TLS: %s", vtext);
		} else {
			tls_error_text(ret, etext, sizeof(etext));
			set_err(err, -EPROTO,
				"TLS handshake with %.100s failed: %s", u->host,
				etext);
		}
		goto out_free;
	}
	if (!tls_ctx_insecure(tls))
		tls_session_save(tls, u->host, u->port, &t->ssl);
	return &t->base;

out_free:
	mbedtls_ssl_free(&t->ssl);
	free(t);
	return NULL;
}

/* ---------------------------------------------------------------------- */
/* HTTP upgrade                                                            */

void ws_make_key(char key[WS_KEY_LEN + 1])
{
	unsigned char raw[16];
	size_t olen = 0;

	rand_bytes(raw, sizeof(raw));
	mbedtls_base64_encode((unsigned char *)key, WS_KEY_LEN + 1, &olen, raw,
			      sizeof(raw));
	key[olen] = '\0';
}

void ws_accept_for_key(const char *key, char accept[WS_ACCEPT_LEN + 1])
{
	char cat[128];
	unsigned char sha[20];
	size_t olen = 0;

	strfmt(cat, sizeof(cat), "%s%s", key, WS_GUID);
	mbedtls_sha1_ret((const unsigned char *)cat, strlen(cat), sha);
	mbedtls_base64_encode((unsigned char *)accept, WS_ACCEPT_LEN + 1, &olen,
			      sha, sizeof(sha));
	accept[olen] = '\0';
}

/* True when @s has no control characters (header injection). */
static bool header_value_ok(const char *s)
{
	for (; *s; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	}
	return true;
}

char *ws_upgrade_request(const struct ws_url *u, const char *key,
			 const char *token, const char *user_agent, size_t *len,
			 struct ws_connect_error *err)
{
#define UPGRADE_FMT                                                            \
	"GET %s HTTP/1.1\r\n"                                                  \
	"Host: %s\r\n"                                                         \
	"Upgrade: websocket\r\n"                                               \
	"Connection: Upgrade\r\n"                                              \
	"Sec-WebSocket-Key: %s\r\n"                                            \
	"Sec-WebSocket-Version: 13\r\n"                                        \
	"%s%s%s"                                                               \
	"%s%s%s"                                                               \
	"\r\n"
	bool tok = token && *token, ua = user_agent && *user_agent;
	char *out;
	int n;

	if ((tok && !header_value_ok(token)) ||
	    (ua && !header_value_ok(user_agent))) {
		set_err(err, -EINVAL,
			"token or user agent contains a control character");
		return NULL;
	}
	n = snprintf(NULL, 0, UPGRADE_FMT, u->target, u->host_header, key,
		     tok ? "Authorization: Bearer " : "", tok ? token : "",
		     tok ? "\r\n" : "", ua ? "User-Agent: " : "",
		     ua ? user_agent : "", ua ? "\r\n" : "");
	out = xmalloc((size_t)n + 1);
	snprintf(out, (size_t)n + 1, UPGRADE_FMT, u->target, u->host_header,
		 key, tok ? "Authorization: Bearer " : "", tok ? token : "",
		 tok ? "\r\n" : "", ua ? "User-Agent: " : "",
		 ua ? user_agent : "", ua ? "\r\n" : "");
#undef UPGRADE_FMT
	*len = (size_t)n;
	return out;
}

/* Copy [s, s+n) into @dst as printable ASCII, trimmed. */
static void copy_printable(char *dst, size_t cap, const char *s, size_t n)
{
	size_t j = 0;

	while (n > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		n--;
	}
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	for (size_t i = 0; i < n && j + 1 < cap; i++)
		dst[j++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (cap)
		dst[j] = '\0';
}

/* True when the comma-separated list @v (length n) has token @tok. */
static bool has_token(const char *v, size_t n, const char *tok)
{
	size_t tl = strlen(tok);
	size_t i = 0;

	while (i < n) {
		size_t s, e;

		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		s = i;
		while (i < n && v[i] != ',')
			i++;
		e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e - s == tl && !strncasecmp(v + s, tok, tl))
			return true;
	}
	return false;
}

/* Retry-After: delta-seconds or an HTTP-date; ms from now, or -1. */
static int64_t parse_retry_after(const char *v)
{
	struct tm tm;
	const char *end;
	int64_t secs = 0;
	time_t when;

	if (*v >= '0' && *v <= '9') {
		for (; *v >= '0' && *v <= '9'; v++) {
			secs = secs * 10 + (*v - '0');
			if (secs > 7 * 86400)
				secs = 7 * 86400;
		}
		return *v ? -1 : secs * 1000;
	}
	memset(&tm, 0, sizeof(tm));
	end = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	if (!end || *end)
		return -1;
	when = timegm(&tm);
	secs = (int64_t)when - (int64_t)time(NULL);
	if (secs < 0)
		secs = 0;
	if (secs > 7 * 86400)
		secs = 7 * 86400;
	return secs * 1000;
}

int ws_upgrade_response(const char *buf, size_t len, const char *key,
			size_t *hdr_len, struct ws_connect_error *err)
{
	const char *end, *line, *eol, *stop;
	char accept[WS_ACCEPT_LEN + 1], reason[64], location[160] = "";
	char retry[40] = "";
	bool up_ok = false, conn_ok = false, acc_seen = false, acc_ok = true;
	bool ext = false;
	int status, hlen;

	end = memmem(buf, len, "\r\n\r\n", 4);
	if (!end || (size_t)(end - buf) + 4 > WS_MAX_RESPONSE_HEADER) {
		if (!end && len < WS_MAX_RESPONSE_HEADER)
			return 1;
		set_err(err, -EMSGSIZE,
			"upgrade response headers larger than %d bytes",
			WS_MAX_RESPONSE_HEADER);
		return -EMSGSIZE;
	}
	hlen = (int)(end - buf) + 4;
	*hdr_len = (size_t)hlen;
	stop = end + 2; /* the last header line ends at end + 2 */

	/* Status line: HTTP/1.x SP 3DIGIT [SP reason] */
	eol = memmem(buf, (size_t)(stop - buf), "\r\n", 2);
	if (eol - buf < 12 || memcmp(buf, "HTTP/1.", 7) != 0 ||
	    (buf[7] != '0' && buf[7] != '1') || buf[8] != ' ' || buf[9] < '1' ||
	    buf[9] > '5' || buf[10] < '0' || buf[10] > '9' || buf[11] < '0' ||
	    buf[11] > '9' || (eol - buf > 12 && buf[12] != ' ')) {
		set_err(err, -EPROTO, "upgrade answer is not HTTP/1.1");
		return -EPROTO;
	}
	status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
	copy_printable(reason, sizeof(reason), buf + 12,
		       eol - buf > 12 ? (size_t)(eol - buf - 12) : 0);

	for (line = eol + 2; line < stop; line = eol + 2) {
		const char *colon, *v;
		size_t nlen, vlen;

		eol = memmem(line, (size_t)(stop - line), "\r\n", 2);
		colon = memchr(line, ':', (size_t)(eol - line));
		if (!colon || colon == line) {
			set_err(err, -EPROTO,
				"malformed header line in upgrade answer "
				"(HTTP %d)",
				status);
			return -EPROTO;
		}
		nlen = (size_t)(colon - line);
		v = colon + 1;
		while (v < eol && (*v == ' ' || *v == '\t'))
			v++;
		vlen = (size_t)(eol - v);
		while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
			vlen--;
#define HDR_IS(name)                                                           \
	(nlen == sizeof(name) - 1 && !strncasecmp(line, name, nlen))
		if (HDR_IS("upgrade")) {
			up_ok = up_ok ||
				(vlen == 9 && !strncasecmp(v, "websocket", 9));
		} else if (HDR_IS("connection")) {
			conn_ok = conn_ok || has_token(v, vlen, "upgrade");
		} else if (HDR_IS("sec-websocket-accept")) {
			ws_accept_for_key(key, accept);
			acc_seen = true;
			acc_ok = acc_ok && vlen == WS_ACCEPT_LEN &&
				 !memcmp(v, accept, WS_ACCEPT_LEN);
		} else if (HDR_IS("sec-websocket-extensions") ||
			   HDR_IS("sec-websocket-protocol")) {
			ext = ext || vlen > 0;
		} else if (HDR_IS("location")) {
			copy_printable(location, sizeof(location), v, vlen);
		} else if (HDR_IS("retry-after")) {
			copy_printable(retry, sizeof(retry), v, vlen);
		}
#undef HDR_IS
	}

	if (status != 101) {
		err->http_status = status;
		err->retry_after_ms = -1;
		if (status == 401 || status == 403) {
			err->token_refused = true;
			set_err(err, -EACCES, "HTTP %d %s: token refused",
				status, reason);
			return -EACCES;
		}
		if ((status == 429 || status == 503) && retry[0])
			err->retry_after_ms = parse_retry_after(retry);
		if (status >= 300 && status < 400)
			set_err(err, -ECONNREFUSED,
				"HTTP %d %s: redirect to %s (not followed)",
				status, reason,
				location[0] ? location : "(no Location)");
		else if (err->retry_after_ms >= 0)
			set_err(err, -ECONNREFUSED,
				"HTTP %d %s (retry after %lld s)", status,
				reason,
				(long long)(err->retry_after_ms / 1000));
		else
			set_err(err, -ECONNREFUSED, "HTTP %d %s instead of 101",
				status, reason);
		return -ECONNREFUSED;
	}
	if (!up_ok || !conn_ok) {
		set_err(err, -EPROTO, "101 answer without \"%s\"",
			!up_ok ? "Upgrade: websocket" : "Connection: upgrade");
		return -EPROTO;
	}
	if (!acc_seen || !acc_ok) {
		set_err(err, -EPROTO, "101 answer with %s Sec-WebSocket-Accept",
			acc_seen ? "a wrong" : "no");
		return -EPROTO;
	}
	if (ext) {
		set_err(err, -EPROTO,
			"101 answer with an extension or subprotocol we did "
			"not ask for");
		return -EPROTO;
	}
	return 0;
}

/* Send the upgrade request and read the answer; *pre gets leftover bytes. */
static int ws_upgrade(struct ws_transport *t, int fd,
		      const struct ws_options *opt, const struct ws_url *u,
		      int cancel_fd, int64_t deadline, int64_t timeout_ms,
		      char **pre, size_t *pre_len, struct ws_connect_error *err)
{
	char key[WS_KEY_LEN + 1], eb[64];
	char *req, *buf = NULL;
	size_t req_len = 0, len = 0, hdr_len = 0;
	int ret;

	ws_make_key(key);
	req = ws_upgrade_request(u, key, opt->token, opt->user_agent, &req_len,
				 err);
	if (!req)
		return -EINVAL;
	ret = send_all(t, fd, req, req_len, cancel_fd, deadline);
	free(req);
	if (ret < 0)
		goto out_io;
	buf = xmalloc(WS_MAX_RESPONSE_HEADER + 1);
	for (;;) {
		ssize_t n =
		    t->ops->recv(t, buf + len, WS_MAX_RESPONSE_HEADER - len);

		if (n == -EAGAIN) {
			ret = wait_io(fd, t->want, cancel_fd, deadline);
			if (ret < 0)
				goto out_io;
			continue;
		}
		if (n <= 0) {
			ret = n == 0 ? -ECONNRESET : (int)n;
			goto out_io;
		}
		len += (size_t)n;
		ret = ws_upgrade_response(buf, len, key, &hdr_len, err);
		if (ret < 0)
			goto out_free;
		if (ret == 0)
			break;
	}
	/* Bytes after the headers belong to wslay; so does anything mbedTLS
	 * decrypted but we did not read yet (poll() would not report it). */
	len -= hdr_len;
	memmove(buf, buf + hdr_len, len);
	while (t->ops->buffered && t->ops->buffered(t)) {
		ssize_t n;

		buf = xrealloc(buf, len + 4096);
		n = t->ops->recv(t, buf + len, 4096);
		if (n <= 0)
			break; /* the connection's first read reports it */
		len += (size_t)n;
	}
	*pre_len = len;
	*pre = buf;
	return 0;

out_io:
	if (ret == -ECANCELED || ret == -ETIMEDOUT)
		wait_err(err, ret, "WebSocket upgrade", timeout_ms);
	else if (ret == -ECONNRESET)
		set_err(err, ret, "connection closed during WebSocket upgrade");
	else
		set_err(err, ret, "WebSocket upgrade: %s%s%s",
			errstr(ret, eb, sizeof(eb)), t->err[0] ? ": " : "",
			t->err);
out_free:
	free(buf);
	return ret;
}

struct ws_conn *ws_connect(const struct ws_options *opt, int cancel_fd,
			   struct ws_connect_error *err)
{
	struct ws_url u;
	struct ws_proxy px = {0};
	struct ws_transport *t = NULL;
	struct ws_conn *c = NULL;
	char uerr[200], *pre = NULL;
	const char *proxy = opt->proxy, *proxy_src = "proxy";
	size_t pre_len = 0;
	int64_t timeout_ms, deadline;
	int fd = -1, ret;

	memset(err, 0, sizeof(*err));
	err->retry_after_ms = -1;
	if (url_parse_ws(opt->url, opt->default_path, &u, uerr, sizeof(uerr)) !=
	    0) {
		set_err(err, -EINVAL, "%s", uerr);
		goto out;
	}
	if (u.tls && !opt->tls) {
		set_err(err, -EINVAL, "wss:// URL but no TLS settings");
		goto out_url;
	}
	if (u.tls && is_ip_literal(u.host) && !tls_ctx_insecure(opt->tls)) {
		set_err(err, -EINVAL,
			"wss:// to IP address %.60s cannot be verified: "
			"mbedTLS 2.28 checks DNS names only, use a host name",
			u.host);
		goto out_url;
	}
	/* No proxy configured: the environment decides (see proxy.h). */
	if (!proxy || !*proxy) {
		proxy = proxy_from_env(u.tls, u.host, u.port, &proxy_src);
		if (proxy_src && !proxy)
			LOG_DEBUG("proxy bypassed", "host=%s source=%s", u.host,
				  proxy_src);
	}
	if (proxy && *proxy) {
		if (proxy_parse(proxy, &px, err)) {
			char why[sizeof(err->text)];

			strfmt(why, sizeof(why), "%s", err->text);
			set_err(err, -EINVAL, "%s: %s", proxy_src, why);
			goto out_url;
		}
		LOG_DEBUG("using proxy", "host=%s proxy=%s:%u source=%s",
			  u.host, px.host, (unsigned)px.port, proxy_src);
	}
	timeout_ms = opt->connect_timeout_ms > 0
			 ? opt->connect_timeout_ms
			 : WS_DEFAULT_CONNECT_TIMEOUT_MS;
	deadline = clock_mono_ms() + timeout_ms;

	if (px.host) {
		fd = tcp_connect(px.host, px.port, cancel_fd, deadline,
				 timeout_ms, err);
		if (fd >= 0 && proxy_connect(fd, &px, &u, cancel_fd, deadline,
					     timeout_ms, err) != 0)
			goto out_close;
	} else {
		fd = tcp_connect(u.host, u.port, cancel_fd, deadline,
				 timeout_ms, err);
	}
	if (fd < 0)
		goto out_url;
	if (u.tls) {
		t = tls_handshake(fd, opt->tls, &u, cancel_fd, deadline,
				  timeout_ms, err);
		if (!t)
			goto out_close;
		/* Every connection, not only at start-up: an operator must
		 * not miss that this link is unauthenticated. */
		if (tls_ctx_insecure(opt->tls))
			LOG_WARN("TLS certificate not verified",
				 "host=%s port=%u setting=insecure_skip_verify",
				 u.host, (unsigned)u.port);
	} else {
		t = plain_new(fd);
	}
	ret = ws_upgrade(t, fd, opt, &u, cancel_fd, deadline, timeout_ms, &pre,
			 &pre_len, err);
	if (ret != 0)
		goto out_transport;
	c = ws_conn_new(t, fd, opt->max_message_bytes, pre, pre_len);
	free(pre);
	LOG_DEBUG("websocket connected", "host=%s port=%u tls=%d", u.host,
		  (unsigned)u.port, (int)u.tls);
	goto out_url;

out_transport:
	t->ops->free(t);
out_close:
	close(fd);
out_url:
	proxy_free(&px);
	url_free(&u);
out:
	if (!c)
		errno = err->errnum < 0 ? -err->errnum : EIO;
	return c;
}

/* ---------------------------------------------------------------------- */
/* wslay callbacks (all run under io_lock)                                 */

static ssize_t cb_recv(wslay_event_context_ptr ev, uint8_t *buf, size_t len,
		       int flags, void *ud)
{
	struct ws_conn *c = ud;
	ssize_t n;

	(void)flags;
	if (c->pre_off < c->pre_len) {
		n = (ssize_t)(c->pre_len - c->pre_off < len
				  ? c->pre_len - c->pre_off
				  : len);
		memcpy(buf, c->pre + c->pre_off, (size_t)n);
		c->pre_off += (size_t)n;
		return n;
	}
	if (c->rx_budget == 0 &&
	    !(c->tr->ops->buffered && c->tr->ops->buffered(c->tr))) {
		/* Enough for one turn; the socket still polls readable. */
		wslay_event_set_error(ev, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	n = c->tr->ops->recv(c->tr, buf, len);
	if (n > 0) {
		c->rx_budget -=
		    (size_t)n < c->rx_budget ? (size_t)n : c->rx_budget;
		return n;
	}
	if (n == -EAGAIN) {
		wslay_event_set_error(ev, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	c->io_err = n == 0 ? -ECONNRESET : (int)n;
	wslay_event_set_error(ev, WSLAY_ERR_CALLBACK_FAILURE);
	return -1;
}

static ssize_t cb_send(wslay_event_context_ptr ev, const uint8_t *data,
		       size_t len, int flags, void *ud)
{
	struct ws_conn *c = ud;
	ssize_t n;

	n = c->tr->ops->send(c->tr, data, len, (flags & WSLAY_MSG_MORE) != 0);
	if (n > 0)
		return n;
	if (n == -EAGAIN || n == 0) {
		wslay_event_set_error(ev, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	c->io_err = (int)n;
	wslay_event_set_error(ev, WSLAY_ERR_CALLBACK_FAILURE);
	return -1;
}

static int cb_genmask(wslay_event_context_ptr ev, uint8_t *buf, size_t len,
		      void *ud)
{
	(void)ev;
	(void)ud;
	rand_bytes(buf, len);
	return 0;
}

static void cb_frame_start(wslay_event_context_ptr ev,
			   const struct wslay_event_on_frame_recv_start_arg *a,
			   void *ud)
{
	struct ws_conn *c = ud;

	(void)ev;
	atomic_store(&c->last_rx_ms, clock_mono_ms());
	c->in_close_frame = a->opcode == WSLAY_CONNECTION_CLOSE;
	if (c->in_close_frame) {
		c->close_seen = true;
		c->close_len = 0;
	}
}

static void cb_frame_chunk(wslay_event_context_ptr ev,
			   const struct wslay_event_on_frame_recv_chunk_arg *a,
			   void *ud)
{
	struct ws_conn *c = ud;
	size_t n;

	(void)ev;
	if (!c->in_close_frame)
		return;
	n = sizeof(c->close_buf) - c->close_len;
	if (n > a->data_length)
		n = a->data_length;
	memcpy(c->close_buf + c->close_len, a->data, n);
	c->close_len += n;
}

/*
 * End of a frame: a close frame's code and reason are recorded here rather
 * than from wslay, which hides codes it does not know (1012, 1013).
 */
static void cb_frame_end(wslay_event_context_ptr ev, void *ud)
{
	struct ws_conn *c = ud;

	(void)ev;
	if (!c->in_close_frame)
		return;
	c->in_close_frame = false;
	if (c->close_len >= 2) {
		c->close_code =
		    (uint16_t)(c->close_buf[0] << 8 | c->close_buf[1]);
		copy_printable(c->close_reason, sizeof(c->close_reason),
			       (const char *)c->close_buf + 2,
			       c->close_len - 2);
	}
}

static void cb_msg(wslay_event_context_ptr ev,
		   const struct wslay_event_on_msg_recv_arg *a, void *ud)
{
	struct ws_conn *c = ud;
	struct ws_msg *m;

	(void)ev;
	if (a->opcode == WSLAY_TEXT_FRAME) {
		if (c->inbox_n == c->inbox_cap) {
			c->inbox_cap = c->inbox_cap ? c->inbox_cap * 2 : 8;
			c->inbox = xrealloc(c->inbox,
					    c->inbox_cap * sizeof(*c->inbox));
		}
		m = &c->inbox[c->inbox_n++];
		m->data = xmalloc(a->msg_length + 1);
		if (a->msg_length)
			memcpy(m->data, a->msg, a->msg_length);
		m->data[a->msg_length] = '\0';
		m->len = a->msg_length;
	} else if (a->opcode == WSLAY_BINARY_FRAME) {
		LOG_WARN("binary WebSocket message ignored", "bytes=%zu",
			 a->msg_length);
	} else if (a->opcode == WSLAY_PONG && a->msg_length == 8) {
		int64_t sent = 0, now = clock_mono_ms();

		for (int i = 0; i < 8; i++)
			sent = (int64_t)((uint64_t)sent << 8 | a->msg[i]);
		if (sent > 0 && sent <= now)
			atomic_store(&c->rtt_ms, now - sent);
	}
}

/* ---------------------------------------------------------------------- */
/* Connection                                                              */

struct ws_conn *ws_conn_new(struct ws_transport *t, int fd,
			    size_t max_message_bytes, const void *leftover,
			    size_t leftover_len)
{
	static const struct wslay_event_callbacks cbs = {
	    .recv_callback = cb_recv,
	    .send_callback = cb_send,
	    .genmask_callback = cb_genmask,
	    .on_frame_recv_start_callback = cb_frame_start,
	    .on_frame_recv_chunk_callback = cb_frame_chunk,
	    .on_frame_recv_end_callback = cb_frame_end,
	    .on_msg_recv_callback = cb_msg,
	};
	struct ws_conn *c = xcalloc(1, sizeof(*c));

	pthread_mutex_init(&c->io_lock, NULL);
	c->fd = fd;
	c->tr = t;
	atomic_init(&c->last_rx_ms, clock_mono_ms());
	atomic_init(&c->rtt_ms, -1);
	if (wslay_event_context_client_init(&c->ev, &cbs, c) != 0) {
		LOG_ERROR("out of memory", "what=wslay_context");
		abort();
	}
	wslay_event_config_set_max_recv_msg_length(
	    c->ev,
	    max_message_bytes ? max_message_bytes : WS_DEFAULT_MAX_MESSAGE);
	if (leftover_len) {
		c->pre = xmalloc(leftover_len);
		memcpy(c->pre, leftover, leftover_len);
		c->pre_len = leftover_len;
	}
	return c;
}

int ws_conn_fd(const struct ws_conn *c)
{
	return c->fd;
}

/*
 * Under io_lock: push queued frames and buffered transport bytes.
 * 0: nothing left; 1: wait for the socket (t->want); < 0: broken.
 */
static int pump_out(struct ws_conn *c)
{
	int ret;

	if (c->tr->ops->pending(c->tr)) {
		ret = c->tr->ops->flush(c->tr);
		if (ret == -EAGAIN)
			return 1;
		if (ret < 0) {
			c->io_err = ret;
			return ret;
		}
	}
	if (wslay_event_want_write(c->ev) && wslay_event_send(c->ev) != 0)
		return c->io_err ? c->io_err : -EPIPE;
	if (c->tr->ops->pending(c->tr)) {
		ret = c->tr->ops->flush(c->tr);
		if (ret < 0 && ret != -EAGAIN) {
			c->io_err = ret;
			return ret;
		}
	}
	return wslay_event_want_write(c->ev) || c->tr->ops->pending(c->tr) ? 1
									   : 0;
}

/* Under io_lock, reading has stopped: why. Sends the close if it can. */
static int finish_reason(struct ws_conn *c)
{
	uint16_t sent;

	(void)pump_out(c); /* the close reply or our error close */
	if (c->close_seen || wslay_event_get_close_received(c->ev))
		return -ECONNRESET;
	sent = wslay_event_get_status_code_sent(c->ev);
	if (sent == WSLAY_CODE_MESSAGE_TOO_BIG)
		return -EMSGSIZE;
	return -EPROTO;
}

int ws_conn_on_readable(struct ws_conn *c, ws_message_cb cb, void *ud)
{
	struct ws_msg *msgs;
	size_t n;
	int ret = 0, rv;

	pthread_mutex_lock(&c->io_lock);
	if (c->final_err) {
		ret = c->final_err;
	} else {
		c->rx_budget = WS_READ_BUDGET;
		rv = wslay_event_recv(c->ev);
		if (rv == WSLAY_ERR_CALLBACK_FAILURE)
			ret = c->io_err ? c->io_err : -ECONNRESET;
		else if (rv == WSLAY_ERR_NOMEM)
			ret = -ENOMEM;
		else if (rv != 0)
			ret = -EPROTO;
		else if (!wslay_event_get_read_enabled(c->ev))
			ret = finish_reason(c);
		if (ret != 0) {
			if (ret == -ECONNRESET && c->close_seen &&
			    !c->close_code)
				c->close_code = 0;
			c->final_err = ret;
		}
	}
	msgs = c->inbox;
	n = c->inbox_n;
	c->inbox = NULL;
	c->inbox_n = c->inbox_cap = 0;
	pthread_mutex_unlock(&c->io_lock);

	for (size_t i = 0; i < n; i++) {
		if (cb)
			cb(ud, msgs[i].data, msgs[i].len);
		free(msgs[i].data);
	}
	free(msgs);
	return ret;
}

bool ws_conn_want_write(struct ws_conn *c)
{
	bool w;

	pthread_mutex_lock(&c->io_lock);
	w = wslay_event_want_write(c->ev) || c->tr->ops->pending(c->tr);
	pthread_mutex_unlock(&c->io_lock);
	return w;
}

size_t ws_conn_queued_bytes(struct ws_conn *c)
{
	size_t n;

	pthread_mutex_lock(&c->io_lock);
	/* Messages wslay holds (pongs and closes included) plus the
	 * transport's unsent bytes (a TLS record) count as one. */
	n = wslay_event_get_queued_msg_length(c->ev) +
	    (c->tr->ops->pending(c->tr) ? 1 : 0);
	pthread_mutex_unlock(&c->io_lock);
	return n;
}

/* Under io_lock: queue one message of @opcode (copied). */
static int queue_locked(struct ws_conn *c, uint8_t opcode, const void *data,
			size_t len)
{
	struct wslay_event_msg m = {opcode, data, len};
	int rv = wslay_event_queue_msg(c->ev, &m);

	if (rv == 0)
		return 0;
	if (rv == WSLAY_ERR_NO_MORE_MSG)
		return c->io_err ? c->io_err : -EPIPE;
	if (rv == WSLAY_ERR_NOMEM)
		return -ENOMEM;
	return -EINVAL;
}

int ws_conn_send_text(struct ws_conn *c, const char *data, size_t len)
{
	int ret;

	pthread_mutex_lock(&c->io_lock);
	ret = queue_locked(c, WSLAY_TEXT_FRAME, data, len);
	if (ret == 0)
		ret = pump_out(c);
	pthread_mutex_unlock(&c->io_lock);
	return ret < 0 ? ret : 0;
}

int ws_conn_flush(struct ws_conn *c)
{
	int ret;

	pthread_mutex_lock(&c->io_lock);
	ret = pump_out(c);
	pthread_mutex_unlock(&c->io_lock);
	return ret;
}

int ws_conn_ping(struct ws_conn *c)
{
	uint8_t p[8];
	uint64_t now = (uint64_t)clock_mono_ms();
	int ret;

	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)(now & 0xff);
		now >>= 8;
	}
	pthread_mutex_lock(&c->io_lock);
	ret = queue_locked(c, WSLAY_PING, p, sizeof(p));
	if (ret == 0)
		ret = pump_out(c);
	pthread_mutex_unlock(&c->io_lock);
	return ret < 0 ? ret : 0;
}

int ws_conn_close(struct ws_conn *c, uint16_t code, const char *reason)
{
	size_t rlen = reason ? strlen(reason) : 0;
	int rv, ret;

	if (rlen > 123)
		rlen = 123;
	if (code == 0)
		rlen = 0;
	pthread_mutex_lock(&c->io_lock);
	rv =
	    wslay_event_queue_close(c->ev, code, (const uint8_t *)reason, rlen);
	if (rv == WSLAY_ERR_NO_MORE_MSG)
		ret = 0; /* already closing */
	else if (rv != 0)
		ret = -EINVAL;
	else
		ret = pump_out(c);
	pthread_mutex_unlock(&c->io_lock);
	return ret < 0 ? ret : 0;
}

int64_t ws_conn_last_rx_ms(struct ws_conn *c)
{
	return atomic_load(&c->last_rx_ms);
}

int64_t ws_conn_rtt_ms(struct ws_conn *c)
{
	return atomic_load(&c->rtt_ms);
}

uint16_t ws_conn_close_info(struct ws_conn *c, char *reason, size_t len)
{
	uint16_t code;

	pthread_mutex_lock(&c->io_lock);
	code = c->close_code;
	if (reason && len)
		strfmt(reason, len, "%s", c->close_reason);
	pthread_mutex_unlock(&c->io_lock);
	return code;
}

void ws_conn_free(struct ws_conn *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->io_lock);
	wslay_event_context_free(c->ev);
	c->tr->ops->free(c->tr);
	for (size_t i = 0; i < c->inbox_n; i++)
		free(c->inbox[i].data);
	free(c->inbox);
	free(c->pre);
	pthread_mutex_unlock(&c->io_lock);
	pthread_mutex_destroy(&c->io_lock);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}
