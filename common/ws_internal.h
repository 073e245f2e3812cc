/*
 * ws_internal: the pieces of ws.c that unit tests drive directly: the
 * transport vtable (plain socket, TLS, or an in-memory double), the HTTP
 * upgrade request builder and response parser, and building a connection
 * over an already upgraded transport. Not for the agent's use.
 */
#ifndef PIPEOPS_COMMON_WS_INTERNAL_H
#define PIPEOPS_COMMON_WS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/url.h"
#include "common/ws.h"

#define WS_KEY_LEN	       24 /* base64 of 16 bytes */
#define WS_ACCEPT_LEN	       28 /* base64 of a SHA-1 */
#define WS_MAX_RESPONSE_HEADER (16 * 1024)
#define WS_DEFAULT_MAX_MESSAGE (16u * 1024 * 1024)
/* Bytes one ws_conn_on_readable() reads before it lets the writer have the
 * lock again (it goes on while the transport holds buffered input). */
#define WS_READ_BUDGET (1024 * 1024)

struct ws_transport;

/*
 * A byte stream under a connection. Called only with the connection's
 * io_lock held (or before the connection exists); never blocks.
 * -EAGAIN means "would block" and sets t->want to POLLIN or POLLOUT.
 */
struct ws_transport_ops {
	/* > 0: bytes read; 0: end of stream; -EAGAIN; other -errno. */
	ssize_t (*recv)(struct ws_transport *t, void *buf, size_t len);
	/* > 0: bytes accepted (maybe buffered); -EAGAIN; other -errno.
	 * @more: more bytes of the same frame follow at once. */
	ssize_t (*send)(struct ws_transport *t, const void *buf, size_t len,
			bool more);
	/* Push out bytes the transport buffered: 0, -EAGAIN or -errno. */
	int (*flush)(struct ws_transport *t);
	/* True while buffered output remains. */
	bool (*pending)(struct ws_transport *t);
	/* True when input is buffered inside the transport (poll() on the
	 * socket would not see it). NULL: never. */
	bool (*buffered)(struct ws_transport *t);
	/* Free the transport (not the socket, which the connection owns). */
	void (*free)(struct ws_transport *t);
};

struct ws_transport {
	const struct ws_transport_ops *ops;
	short want;    /* POLLIN or POLLOUT after -EAGAIN */
	char err[160]; /* detail of the last hard error, "" if none */
};

/* A new random Sec-WebSocket-Key (rand_bytes), NUL-terminated. */
void ws_make_key(char key[WS_KEY_LEN + 1]);

/* base64(SHA1(key + GUID)), NUL-terminated. */
void ws_accept_for_key(const char *key, char accept[WS_ACCEPT_LEN + 1]);

/*
 * The upgrade request for @u. @token and @user_agent may be NULL. Returns a
 * new string (length in *len), or NULL when a header value contains a
 * control character (err filled).
 */
char *ws_upgrade_request(const struct ws_url *u, const char *key,
			 const char *token, const char *user_agent, size_t *len,
			 struct ws_connect_error *err);

/*
 * Parse the upgrade response in @buf[0..len) (everything read so far) for
 * the request that sent @key. Returns:
 *   1   the headers are not complete yet: read more and call again;
 *   0   a valid 101: *hdr_len is the header size, bytes after it belong to
 *       the WebSocket stream;
 *   < 0 failure with @err filled: -EACCES (401/403, token refused),
 *       -ECONNREFUSED (any other non-101), -EPROTO (bad 101 or not HTTP),
 *       -EMSGSIZE (headers over WS_MAX_RESPONSE_HEADER).
 */
int ws_upgrade_response(const char *buf, size_t len, const char *key,
			size_t *hdr_len, struct ws_connect_error *err);

/*
 * A connection over an upgraded transport. Takes ownership of @t and @fd
 * (-1: none, as in tests). @leftover (copied) is fed to wslay before any
 * transport read. @max_message_bytes 0 means WS_DEFAULT_MAX_MESSAGE.
 */
struct ws_conn *ws_conn_new(struct ws_transport *t, int fd,
			    size_t max_message_bytes, const void *leftover,
			    size_t leftover_len);

#endif
