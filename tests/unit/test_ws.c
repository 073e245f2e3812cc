/*
 * test_ws: the RFC 6455 upgrade (request bytes, response parser) and frame
 * decoding of a connection over an in-memory transport double. Every
 * response and every frame script is fed whole and one byte per
 * ws_conn_on_readable() call.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <poll.h>

#include "common/url.h"
#include "common/util.h"
#include "common/ws.h"
#include "common/ws_internal.h"
#include "tests/unit/check.h"

/* ---------------------------------------------------------------------- */
/* In-memory transport double                                              */

struct mem_tr {
	struct ws_transport base;
	const uint8_t *in;
	size_t in_len, in_off;
	bool one_byte;	/* one byte per on_readable(), then -EAGAIN */
	bool gave_byte; /* one_byte: a byte went out since the last reset */
	bool eof;	/* after the input: end of stream, not -EAGAIN */
	uint8_t out[1 << 16];
	size_t out_len;
};

static ssize_t mem_recv(struct ws_transport *t, void *buf, size_t len)
{
	struct mem_tr *m = (struct mem_tr *)t;
	size_t n = m->in_len - m->in_off;

	if (n == 0 && m->eof)
		return 0;
	if (n == 0) {
		t->want = POLLIN;
		return -EAGAIN;
	}
	if (m->one_byte) {
		if (m->gave_byte) {
			t->want = POLLIN;
			return -EAGAIN;
		}
		m->gave_byte = true;
		n = 1;
	}
	if (n > len)
		n = len;
	memcpy(buf, m->in + m->in_off, n);
	m->in_off += n;
	return (ssize_t)n;
}

static ssize_t mem_send(struct ws_transport *t, const void *buf, size_t len,
			bool more)
{
	struct mem_tr *m = (struct mem_tr *)t;

	(void)more;
	if (len > sizeof(m->out) - m->out_len)
		return -ENOBUFS;
	memcpy(m->out + m->out_len, buf, len);
	m->out_len += len;
	return (ssize_t)len;
}

static int mem_flush(struct ws_transport *t)
{
	(void)t;
	return 0;
}

static bool mem_pending(struct ws_transport *t)
{
	(void)t;
	return false;
}

static void mem_free(struct ws_transport *t)
{
	(void)t; /* lives on the test's stack */
}

static const struct ws_transport_ops mem_ops = {
    .recv = mem_recv,
    .send = mem_send,
    .flush = mem_flush,
    .pending = mem_pending,
    .free = mem_free,
};

static void mem_init(struct mem_tr *m, const void *in, size_t len,
		     bool one_byte)
{
	memset(m, 0, sizeof(*m));
	m->base.ops = &mem_ops;
	m->in = in;
	m->in_len = len;
	m->one_byte = one_byte;
}

/* Decode the next client frame from @m->out at *off (must be masked). */
static bool out_frame(struct mem_tr *m, size_t *off, int *opcode,
		      uint8_t *payload, size_t *plen)
{
	const uint8_t *p = m->out + *off;
	size_t left = m->out_len - *off, hl = 2, len;

	if (left < 2 || !(p[1] & 0x80))
		return false;
	len = p[1] & 0x7f;
	if (len == 126) {
		len = (size_t)p[2] << 8 | p[3];
		hl = 4;
	} else if (len == 127) {
		return false; /* not used in these tests */
	}
	if (left < hl + 4 + len)
		return false;
	*opcode = p[0] & 0x0f;
	for (size_t i = 0; i < len; i++)
		payload[i] = p[hl + 4 + i] ^ p[hl + (i & 3)];
	*plen = len;
	*off += hl + 4 + len;
	return true;
}

/* Close code of the first close frame the client sent, 0 if none, -1 if
 * the close had no payload. */
static int out_close_code(struct mem_tr *m)
{
	size_t off = 0, len;
	uint8_t pl[256];
	int op;

	while (out_frame(m, &off, &op, pl, &len)) {
		if (op == 8)
			return len >= 2 ? pl[0] << 8 | pl[1] : -1;
	}
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Upgrade                                                                 */

static void test_accept_rfc_sample(void)
{
	char acc[WS_ACCEPT_LEN + 1];

	ws_accept_for_key("dGhlIHNhbXBsZSBub25jZQ==", acc);
	CHECK_STR(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_key_random(void)
{
	char a[WS_KEY_LEN + 1], b[WS_KEY_LEN + 1];

	ws_make_key(a);
	ws_make_key(b);
	CHECK_INT(strlen(a), 24);
	CHECK(strcmp(a, b) != 0);
	CHECK_INT(a[22], '=');
}

static void test_request_bytes(void)
{
	struct ws_url u;
	struct ws_connect_error err;
	char e[128], *req;
	size_t len = 0;

	CHECK_INT(url_parse_ws("https://cp.example:8443/?x=1",
			       "/api/v1/agent/ws", &u, e, sizeof(e)),
		  0);
	req = ws_upgrade_request(&u, "dGhlIHNhbXBsZSBub25jZQ==", "T0K",
				 "pipeops-agent/1.0", &len, &err);
	CHECK_STR(req, "GET /api/v1/agent/ws?x=1 HTTP/1.1\r\n"
		       "Host: cp.example:8443\r\n"
		       "Upgrade: websocket\r\n"
		       "Connection: Upgrade\r\n"
		       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		       "Sec-WebSocket-Version: 13\r\n"
		       "Authorization: Bearer T0K\r\n"
		       "User-Agent: pipeops-agent/1.0\r\n"
		       "\r\n");
	CHECK_INT(len, strlen(req ? req : ""));
	free(req);
	/* header injection through the token is refused */
	req = ws_upgrade_request(&u, "k", "a\r\nX: y", NULL, &len, &err);
	CHECK(req == NULL);
	CHECK_INT(err.errnum, -EINVAL);
	url_free(&u);

	CHECK_INT(url_parse_ws("ws://[::1]:9000", "/r", &u, e, sizeof(e)), 0);
	req = ws_upgrade_request(&u, "k", NULL, NULL, &len, &err);
	CHECK(req && strstr(req, "GET /r HTTP/1.1\r\nHost: [::1]:9000\r\n"));
	CHECK(req && !strstr(req, "Authorization"));
	free(req);
	url_free(&u);
}

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define GOOD_101                                                               \
	"HTTP/1.1 101 Switching Protocols\r\n"                                 \
	"upgrade: WebSocket\r\n"                                               \
	"CONNECTION: keep-alive, Upgrade\r\n"                                  \
	"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"               \
	"\r\n"

struct resp_case {
	const char *name;
	const char *resp;
	int ret;
	int status;
	bool token_refused;
	int64_t retry_ms;
	const char *text_has;
};

/* clang-format off */
static const struct resp_case resp_cases[] = {
	{ "good", GOOD_101 "\x81\x02hi", 0, 0, false, -1, "" },
	{ "wrong accept",
	  "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
	  "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
	  -EPROTO, 0, false, -1, "wrong Sec-WebSocket-Accept" },
	{ "no accept",
	  "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
	  "\r\n",
	  -EPROTO, 0, false, -1, "no Sec-WebSocket-Accept" },
	{ "missing upgrade",
	  "HTTP/1.1 101 OK\r\nConnection: upgrade\r\n"
	  "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
	  -EPROTO, 0, false, -1, "Upgrade: websocket" },
	{ "connection without upgrade",
	  "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: close\r\n"
	  "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
	  -EPROTO, 0, false, -1, "Connection: upgrade" },
	{ "unasked extension",
	  "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
	  "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
	  "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
	  -EPROTO, 0, false, -1, "extension" },
	{ "401",
	  "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n", -EACCES,
	  401, true, -1, "token refused" },
	{ "403", "HTTP/1.1 403 Forbidden\r\n\r\n", -EACCES, 403, true, -1,
	  "HTTP 403 Forbidden" },
	{ "429 retry-after",
	  "HTTP/1.1 429 Too Many Requests\r\nretry-after:  30 \r\n\r\n",
	  -ECONNREFUSED, 429, false, 30000, "retry after 30 s" },
	{ "503 retry-after date in the past",
	  "HTTP/1.1 503 Service Unavailable\r\n"
	  "Retry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n\r\n",
	  -ECONNREFUSED, 503, false, 0, "HTTP 503" },
	{ "500 ignores retry-after",
	  "HTTP/1.1 500 Oops\r\nRetry-After: 5\r\n\r\n", -ECONNREFUSED, 500,
	  false, -1, "HTTP 500 Oops instead of 101" },
	{ "302 location",
	  "HTTP/1.1 302 Found\r\nLocation: https://other.example/ws\r\n\r\n",
	  -ECONNREFUSED, 302, false, -1,
	  "redirect to https://other.example/ws" },
	{ "not http", "SSH-2.0-OpenSSH_9.2\r\n\r\n", -EPROTO, 0, false, -1,
	  "not HTTP" },
	{ "bad header line", "HTTP/1.1 101 OK\r\nno colon here\r\n\r\n",
	  -EPROTO, 0, false, -1, "malformed" },
};
/* clang-format on */

static void run_resp_case(const struct resp_case *rc, bool one_byte)
{
	size_t len = strlen(rc->resp), hdr_len = 0, fed;
	struct ws_connect_error err;
	int ret = 1;

	memset(&err, 0, sizeof(err));
	err.retry_after_ms = -1;
	if (one_byte) {
		for (fed = 1; fed <= len && ret == 1; fed++)
			ret = ws_upgrade_response(rc->resp, fed, KEY, &hdr_len,
						  &err);
	} else {
		ret = ws_upgrade_response(rc->resp, len, KEY, &hdr_len, &err);
	}
	if (ret != rc->ret)
		fprintf(stderr, "  case \"%s\" (%s): text=%s\n", rc->name,
			one_byte ? "1 byte" : "whole", err.text);
	CHECK_INT(ret, rc->ret);
	CHECK_INT(err.http_status, rc->status);
	CHECK_INT(err.token_refused, rc->token_refused);
	CHECK_INT(err.retry_after_ms, rc->retry_ms);
	CHECK(strstr(err.text, rc->text_has) != NULL);
	if (ret == 0) {
		const char *end = strstr(rc->resp, "\r\n\r\n") + 4;

		CHECK_INT(hdr_len, end - rc->resp);
	}
}

static void test_response_cases(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(resp_cases); i++) {
		run_resp_case(&resp_cases[i], false);
		run_resp_case(&resp_cases[i], true);
	}
}

static void test_response_incomplete_and_oversize(void)
{
	struct ws_connect_error err = {0};
	size_t hdr_len = 0, n = WS_MAX_RESPONSE_HEADER + 10;
	char *big = xmalloc(n);

	CHECK_INT(ws_upgrade_response(GOOD_101, strlen(GOOD_101) - 1, KEY,
				      &hdr_len, &err),
		  1);
	memcpy(big, "HTTP/1.1 101 OK\r\n", 17);
	for (size_t i = 17; i < n; i += 8)
		memcpy(big + i, "X-A: b\r\n", i + 8 <= n ? 8 : n - i);
	CHECK_INT(ws_upgrade_response(big, WS_MAX_RESPONSE_HEADER - 1, KEY,
				      &hdr_len, &err),
		  1);
	CHECK_INT(ws_upgrade_response(big, WS_MAX_RESPONSE_HEADER, KEY,
				      &hdr_len, &err),
		  -EMSGSIZE);
	CHECK(strstr(err.text, "larger than") != NULL);
	/* complete, but the headers alone are over the cap */
	memcpy(big + n - 4, "\r\n\r\n", 4);
	CHECK_INT(ws_upgrade_response(big, n, KEY, &hdr_len, &err), -EMSGSIZE);
	free(big);
}

/* ---------------------------------------------------------------------- */
/* Frames                                                                  */

struct got {
	char all[512]; /* messages joined with '|' */
	int count;
};

static void on_msg(void *ud, const char *data, size_t len)
{
	struct got *g = ud;
	size_t n = strlen(g->all);

	CHECK_INT(data[len], 0);
	strfmt(g->all + n, sizeof(g->all) - n, "%s%s", g->count ? "|" : "",
	       data);
	g->count++;
}

static void count_msg(void *ud, const char *data, size_t len)
{
	(void)data;
	(void)len;
	(*(int *)ud)++;
}

/* Feed @in to a fresh connection; returns the last on_readable() result. */
static int feed(struct mem_tr *m, struct ws_conn **cp, const void *in,
		size_t len, bool one_byte, size_t max, struct got *g)
{
	struct ws_conn *c;
	int ret = 0;

	mem_init(m, in, len, one_byte);
	memset(g, 0, sizeof(*g));
	c = ws_conn_new(&m->base, -1, max, NULL, 0);
	do {
		m->gave_byte = false;
		ret = ws_conn_on_readable(c, on_msg, g);
	} while (ret == 0 && m->in_off < m->in_len);
	if (ret == 0) /* one more pass sees the final -EAGAIN */
		ret = ws_conn_on_readable(c, on_msg, g);
	*cp = c;
	return ret;
}

struct frame_case {
	const char *name;
	const char *in;
	size_t len;
	size_t max;	    /* 0: default */
	int ret;	    /* of the last on_readable() */
	const char *msgs;   /* joined with '|' */
	int close_sent;	    /* code of the close we sent, 0 none, -1 empty */
	int close_info;	    /* ws_conn_close_info() */
	const char *reason; /* close reason received */
	int pongs;	    /* pong frames we sent */
};

#define S(x) x, sizeof(x) - 1

/* clang-format off */
static const struct frame_case frame_cases[] = {
	{ "text", S("\x81\x05hello"), 0, 0, "hello", 0, 0, "", 0 },
	{ "two texts", S("\x81\x01" "a\x81\x02" "bc"), 0, 0, "a|bc", 0, 0, "",
	  0 },
	{ "empty text", S("\x81\x00\x81\x01x"), 0, 0, "|x", 0, 0, "", 0 },
	{ "fragmented with ping inside",
	  S("\x01\x03hel\x89\x02hi\x00\x01l\x80\x01o"), 0, 0, "hello", 0, 0,
	  "", 1 },
	{ "16-bit length",
	  "\x81\x7e\x00\x7e"
	  "0123456789012345678901234567890123456789012345678901234567890123"
	  "45678901234567890123456789012345678901234567890123456789012345",
	  4 + 126, 0, 0,
	  "0123456789012345678901234567890123456789012345678901234567890123"
	  "45678901234567890123456789012345678901234567890123456789012345",
	  0, 0, "", 0 },
	{ "ping answered", S("\x89\x03" "abc"), 0, 0, "", 0, 0, "", 1 },
	{ "binary ignored", S("\x82\x03" "abc\x81\x02ok"), 0, 0, "ok", 0, 0, "",
	  0 },
	{ "utf-8 text", S("\x81\x02\xc3\xa9"), 0, 0, "\xc3\xa9", 0, 0, "", 0 },
	{ "server-masked frame",
	  S("\x81\x85\x01\x02\x03\x04" "ignor"), 0, -EPROTO, "", 1002, 0, "",
	  0 },
	{ "bad utf-8", S("\x81\x02\xc3\x28"), 0, -EPROTO, "", 1007, 0, "", 0 },
	{ "truncated utf-8 at end", S("\x81\x01\xc3"), 0, -EPROTO, "", 1007,
	  0, "", 0 },
	{ "oversized", S("\x81\x05hello"), 4, -EMSGSIZE, "", 1009, 0, "", 0 },
	{ "oversized across fragments", S("\x01\x03hel\x80\x02lo"), 4,
	  -EMSGSIZE, "", 1009, 0, "", 0 },
	{ "close with payload", S("\x81\x01x\x88\x05\x03\xe8" "bye"), 0,
	  -ECONNRESET, "x", 1000, 1000, "bye", 0 },
	{ "close without payload", S("\x88\x00"), 0, -ECONNRESET, "", -1, 0,
	  "", 0 },
	{ "close 1012 (wslay hides it)", S("\x88\x02\x03\xf4"), 0,
	  -ECONNRESET, "", 1002, 1012, "", 0 },
	{ "unknown opcode", S("\x83\x00"), 0, -EPROTO, "", 1002, 0, "", 0 },
	{ "continuation without start", S("\x80\x01x"), 0, -EPROTO, "", 1002,
	  0, "", 0 },
};
/* clang-format on */

static void run_frame_case(const struct frame_case *fc, bool one_byte)
{
	struct mem_tr m;
	struct ws_conn *c;
	struct got g;
	char reason[128];
	size_t off = 0, len;
	uint8_t pl[256];
	int ret, op, pongs = 0, fails = check_failures_in_case;

	ret = feed(&m, &c, fc->in, fc->len, one_byte, fc->max, &g);
	CHECK_INT(ret, fc->ret);
	CHECK_STR(g.all, fc->msgs);
	if (ret == 0) { /* pongs wait for the writer */
		if (fc->pongs)
			CHECK(ws_conn_want_write(c));
		CHECK_INT(ws_conn_flush(c), 0);
	}
	CHECK(!ws_conn_want_write(c));
	CHECK_INT(out_close_code(&m), fc->close_sent);
	CHECK_INT(ws_conn_close_info(c, reason, sizeof(reason)),
		  fc->close_info);
	CHECK_STR(reason, fc->reason);
	while (out_frame(&m, &off, &op, pl, &len)) {
		if (op == 0xa) {
			pongs++;
			CHECK(len == 2 || len == 3);
		}
	}
	CHECK_INT(pongs, fc->pongs);
	CHECK_INT(off, m.out_len); /* every byte we sent is a masked frame */
	/* after the end, on_readable() keeps saying so */
	if (ret != 0)
		CHECK_INT(ws_conn_on_readable(c, on_msg, &g), ret);
	if (check_failures_in_case != fails)
		fprintf(stderr, "  ^ frame case \"%s\" (%s)\n", fc->name,
			one_byte ? "1 byte" : "whole");
	ws_conn_free(c);
}

static void test_frame_cases(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(frame_cases); i++) {
		run_frame_case(&frame_cases[i], false);
		run_frame_case(&frame_cases[i], true);
	}
}

static void test_leftover_bytes_first(void)
{
	static const char left[] = "\x81\x03one\x81";
	static const char rest[] = "\x03two";
	struct mem_tr m;
	struct got g = {0};
	struct ws_conn *c;

	mem_init(&m, rest, sizeof(rest) - 1, false);
	c = ws_conn_new(&m.base, -1, 0, left, sizeof(left) - 1);
	CHECK_INT(ws_conn_on_readable(c, on_msg, &g), 0);
	CHECK_STR(g.all, "one|two");
	ws_conn_free(c);
}

static void test_eof_is_reset(void)
{
	struct mem_tr m;
	struct got g = {0};
	struct ws_conn *c;

	mem_init(&m, "\x81\x02hi\x81", 5, false);
	m.eof = true;
	c = ws_conn_new(&m.base, -1, 0, NULL, 0);
	CHECK_INT(ws_conn_on_readable(c, on_msg, &g), -ECONNRESET);
	CHECK_STR(g.all, "hi");
	CHECK_INT(ws_conn_close_info(c, NULL, 0), 0);
	ws_conn_free(c);
}

static void test_send_text_masked(void)
{
	struct mem_tr m;
	struct ws_conn *c;
	uint8_t pl[256];
	size_t off = 0, len = 0;
	int op = 0;

	mem_init(&m, "", 0, false);
	c = ws_conn_new(&m.base, -1, 0, NULL, 0);
	CHECK_INT(ws_conn_send_text(c, "{\"type\":\"x\"}", 12), 0);
	CHECK(!ws_conn_want_write(c));
	CHECK(out_frame(&m, &off, &op, pl, &len));
	CHECK_INT(m.out[0], 0x81);
	CHECK_INT(op, 1);
	CHECK_INT(len, 12);
	CHECK(!memcmp(pl, "{\"type\":\"x\"}", 12));
	CHECK_INT(ws_conn_close(c, 1000, "bye"), 0);
	CHECK_INT(out_close_code(&m), 1000);
	CHECK(ws_conn_send_text(c, "late", 4) < 0);
	ws_conn_free(c);
}

static void test_ping_pong_rtt(void)
{
	struct mem_tr m;
	struct ws_conn *c;
	struct got g = {0};
	uint8_t pl[256], pong[10];
	size_t off = 0, len = 0;
	int op = 0;

	mem_init(&m, "", 0, false);
	c = ws_conn_new(&m.base, -1, 0, NULL, 0);
	CHECK_INT(ws_conn_rtt_ms(c), -1);
	CHECK_INT(ws_conn_ping(c), 0);
	CHECK(out_frame(&m, &off, &op, pl, &len));
	CHECK_INT(op, 9);
	CHECK_INT(len, 8);
	/* echo it back as the server's pong */
	pong[0] = 0x8a;
	pong[1] = 8;
	memcpy(pong + 2, pl, 8);
	m.in = pong;
	m.in_len = sizeof(pong);
	m.in_off = 0;
	CHECK_INT(ws_conn_on_readable(c, on_msg, &g), 0);
	CHECK(ws_conn_rtt_ms(c) >= 0 && ws_conn_rtt_ms(c) < 1000);
	CHECK(clock_mono_ms() - ws_conn_last_rx_ms(c) < 1000);
	CHECK_INT(g.count, 0);
	ws_conn_free(c);
}

/* A flood of input is read in turns of WS_READ_BUDGET bytes. */
static void test_read_budget(void)
{
	size_t n = WS_READ_BUDGET / 64 + 100, len = n * 64;
	uint8_t *in = xmalloc(len);
	struct mem_tr m;
	struct ws_conn *c;
	int count = 0;

	for (size_t i = 0; i < n; i++) {
		in[i * 64] = 0x81;
		in[i * 64 + 1] = 62;
		memset(in + i * 64 + 2, 'a', 62);
	}
	mem_init(&m, in, len, false);
	c = ws_conn_new(&m.base, -1, 0, NULL, 0);
	CHECK_INT(ws_conn_on_readable(c, count_msg, &count), 0);
	CHECK(count > 0 && count < (int)n);
	CHECK_INT(ws_conn_on_readable(c, count_msg, &count), 0);
	CHECK_INT(count, n);
	ws_conn_free(c);
	free(in);
}

static const struct check_case check_cases[] = {
    CHECK_CASE(test_accept_rfc_sample),
    CHECK_CASE(test_key_random),
    CHECK_CASE(test_request_bytes),
    CHECK_CASE(test_response_cases),
    CHECK_CASE(test_response_incomplete_and_oversize),
    CHECK_CASE(test_frame_cases),
    CHECK_CASE(test_leftover_bytes_first),
    CHECK_CASE(test_eof_is_reset),
    CHECK_CASE(test_send_text_masked),
    CHECK_CASE(test_ping_pong_rtt),
    CHECK_CASE(test_read_budget),
};

CHECK_MAIN()
