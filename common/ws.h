/*
 * ws: one client WebSocket connection (TCP, optional TLS with mbedTLS,
 * RFC 6455 upgrade done here, framing by wslay's event API).
 *
 * DESIGN
 * A connection is used by exactly two threads, the endpoint's reader and
 * writer. wslay and mbedTLS contexts are not safe for concurrent use, so
 * every wslay_event_* and mbedtls_ssl_* call on a connection runs under the
 * connection's io_lock; the socket is non-blocking and both threads wait in
 * poll() outside the lock. Callbacks never block.
 *   - reader: poll(fd, POLLIN) -> ws_conn_on_readable() -> messages out.
 *   - writer: ws_conn_send_text() / ws_conn_flush(); polls POLLOUT while
 *     ws_conn_flush() returns 1.
 * After ws_conn_on_readable() the reader checks ws_conn_want_write() and
 * wakes the writer when it is true (pongs, close replies).
 *
 * Errors are negative errno values; a text buffer gets the details.
 */
#ifndef PIPEOPS_COMMON_WS_H
#define PIPEOPS_COMMON_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ws_conn; /* opaque */
struct tls_ctx; /* common/tls.h */

struct ws_options {
	const char *url; /* ws:// wss:// http:// https:// (see url.h) */
	const char *default_path; /* used when the URL has no path or "/" */
	const char *token;	/* Authorization: Bearer <token>; NULL: none */
	const char *user_agent; /* "pipeops-agent/<version>" */
	struct tls_ctx *tls;	/* borrowed, for wss://; NULL: ws:// only */
	const char *proxy;	/* http://[user:pass@]host:port or NULL */
	int64_t connect_timeout_ms; /* TCP + TLS + upgrade together */
	size_t max_message_bytes;   /* larger messages close with 1009 */
};

/* Why a connect failed; filled by ws_connect(). */
struct ws_connect_error {
	int http_status;	/* non-101 answer, else 0 */
	int64_t retry_after_ms; /* Retry-After of a 429/503, else -1 */
	bool token_refused;	/* 401 or 403 */
	char text[256];		/* one line for the log, never the token */
	/*
	 * Negative errno (also left in errno, positive): -EINVAL bad URL or
	 * settings, -ECANCELED, -ETIMEDOUT, -ECONNREFUSED (TCP refused, or a
	 * non-101 HTTP answer), -EACCES (401/403), -EPERM (certificate
	 * rejected), -EPROTO (TLS or upgrade failure), -EHOSTUNREACH (name
	 * did not resolve), other socket errors as they come.
	 */
	int errnum;
};

/*
 * Open a connection. Blocks up to connect_timeout_ms; returns early with
 * -ECANCELED when @cancel_fd (an eventfd, or -1) becomes readable.
 * Returns a new connection, or NULL with @err filled.
 */
struct ws_conn *ws_connect(const struct ws_options *opt, int cancel_fd,
			   struct ws_connect_error *err);

/* The socket, for poll(). Valid until ws_conn_free(). */
int ws_conn_fd(const struct ws_conn *c);

/*
 * Called for each complete text message; @data is borrowed for the call
 * only, NUL-terminated at data[len]. Runs on the reader thread, outside the
 * io_lock.
 */
typedef void (*ws_message_cb)(void *ud, const char *data, size_t len);

/*
 * Reader: the socket is readable. Receives and decodes every frame that is
 * available, answers pings, handles close. Calls @cb for each text message.
 * Returns 0 while the connection is usable, or a negative errno when it is
 * finished (-ECONNRESET: peer closed or reset; -EPROTO: protocol error;
 * -EMSGSIZE: message too large, 1009 sent). ws_conn_close_info() then says
 * what was received.
 */
int ws_conn_on_readable(struct ws_conn *c, ws_message_cb cb, void *ud);

/* True when frames are queued that ws_conn_flush() must send. */
bool ws_conn_want_write(struct ws_conn *c);

/*
 * Bytes queued for sending and not yet written (messages, and the pongs
 * and close frames wslay queues by itself). A reader stops reading while
 * this is large, so a peer that floods pings but never reads our answers
 * cannot make us buffer without bound.
 */
size_t ws_conn_queued_bytes(struct ws_conn *c);

/*
 * Writer: queue one text message (copied) and try to send it. Returns 0, or
 * a negative errno when the connection is no longer writable.
 */
int ws_conn_send_text(struct ws_conn *c, const char *data, size_t len);

/* Writer: send what is queued. 0: all sent; 1: more left, wait for POLLOUT;
 * negative errno: connection broken. */
int ws_conn_flush(struct ws_conn *c);

/* Queue a ping carrying the send time; its pong updates the RTT. */
int ws_conn_ping(struct ws_conn *c);

/* Queue a close frame (code 0: no payload). */
int ws_conn_close(struct ws_conn *c, uint16_t code, const char *reason);

/* Monotonic ms of the last frame received (any kind). */
int64_t ws_conn_last_rx_ms(struct ws_conn *c);

/* Round trip of the last answered ping in ms, or -1 before the first pong. */
int64_t ws_conn_rtt_ms(struct ws_conn *c);

/* Close code and reason the peer sent (0 when none); reason may be "". */
uint16_t ws_conn_close_info(struct ws_conn *c, char *reason, size_t len);

/* Close the socket and free everything. Accepts NULL. */
void ws_conn_free(struct ws_conn *c);

#endif
