/*
 * test_ws_live: ws_connect() and message exchange over real loopback
 * sockets against tests/sim/ws_echo.py (python3-websockets), plain and TLS
 * with the test PKI from tests/lib/certs.sh. The server is started once,
 * binds free ports on 127.0.0.1 and exits when its stdin pipe closes.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/rand.h"
#include "common/tls.h"
#include "common/util.h"
#include "common/ws.h"
#include "tests/unit/check.h"

#define CERT_DIR "build/test-pki"

struct listener {
	const char *name;
	const char *spec;
	int port;
};

static struct listener listeners[] = {
    {"plain", "plain=ws", 0},
    {"tls", "tls=wss", 0},
    {"expired", "expired=wss:expired", 0},
    {"self", "self=wss:self", 0},
    {"wrongname", "wrongname=wss:wrongname", 0},
    {"s401", "s401=status:401", 0},
    {"s429", "s429=status:429", 0},
    {"s302", "s302=status:302", 0},
    {"proxy", "proxy=proxy", 0},
    {"proxyauth", "proxyauth=proxy:agent:s3cret", 0},
};

static pid_t server_pid = -1;
static int server_stdin = -1;
static bool server_ok;
static struct tls_ctx *tls_good, *tls_wrong_ca;

static int port_of(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(listeners); i++)
		if (!strcmp(listeners[i].name, name))
			return listeners[i].port;
	return -1;
}

/* Start ws_echo.py and read its READY lines. */
static bool server_start(void)
{
	int in[2], out[2];
	const char *argv[32];
	size_t n = 0, ready = 0;
	FILE *f;
	char line[128];

	if (system("bash tests/lib/certs.sh " CERT_DIR) != 0)
		return false;
	if (pipe(in) || pipe(out))
		return false;
	argv[n++] = "/usr/bin/python3";
	argv[n++] = "tests/sim/ws_echo.py";
	argv[n++] = "--certs";
	argv[n++] = CERT_DIR;
	argv[n++] = "--lifetime";
	argv[n++] = "60";
	for (size_t i = 0; i < ARRAY_SIZE(listeners); i++)
		argv[n++] = listeners[i].spec;
	argv[n] = NULL;
	server_pid = fork();
	if (server_pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[1]);
		close(out[0]);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	server_stdin = in[1];
	f = fdopen(out[0], "r");
	while (ready < ARRAY_SIZE(listeners) && fgets(line, sizeof(line), f)) {
		char name[32];
		int port;

		if (sscanf(line, "READY %31s %d", name, &port) != 2)
			continue;
		for (size_t i = 0; i < ARRAY_SIZE(listeners); i++) {
			if (!strcmp(listeners[i].name, name)) {
				listeners[i].port = port;
				ready++;
			}
		}
	}
	fclose(f);
	return ready == ARRAY_SIZE(listeners);
}

static void server_stop(void)
{
	if (server_stdin >= 0)
		close(server_stdin);
	if (server_pid > 0)
		waitpid(server_pid, NULL, 0);
	server_pid = -1;
	server_stdin = -1;
}

struct inbox {
	char last[4096];
	int count;
};

static void on_msg(void *ud, const char *data, size_t len)
{
	struct inbox *in = ud;

	CHECK_INT(data[len], 0);
	strfmt(in->last, sizeof(in->last), "%s", data);
	in->count++;
}

/* Read until @want messages arrived, the connection ends or 5 s pass. */
static int read_until(struct ws_conn *c, struct inbox *in, int want)
{
	int64_t deadline = clock_mono_ms() + 5000;
	int ret = 0;

	while (in->count < want && clock_mono_ms() < deadline) {
		struct pollfd p = {ws_conn_fd(c), POLLIN, 0};

		if (ws_conn_want_write(c))
			ws_conn_flush(c);
		if (poll(&p, 1, 100) <= 0)
			continue;
		ret = ws_conn_on_readable(c, on_msg, in);
		if (ret < 0)
			break;
	}
	return ret;
}

static struct ws_conn *open_url(const char *scheme, const char *host,
				const char *name, struct tls_ctx *tls,
				struct ws_connect_error *err)
{
	char url[128];
	struct ws_conn *c;
	struct ws_options o = {
	    .default_path = "/api/v1/agent/ws",
	    .token = "tok-123",
	    .user_agent = "pipeops-agent/test",
	    .tls = tls,
	    .connect_timeout_ms = 5000,
	    .max_message_bytes = 1 << 20,
	};

	strfmt(url, sizeof(url), "%s://%s:%d", scheme, host, port_of(name));
	o.url = url;
	c = ws_connect(&o, -1, err);
	if (!c && getenv("WS_TEST_VERBOSE"))
		fprintf(stderr, "  %s: errnum=%d text=%s\n", url, err->errnum,
			err->text);
	return c;
}

static void test_server_started(void)
{
	CHECK(server_ok);
}

static void test_plain_round_trip(void)
{
	struct ws_connect_error err;
	struct inbox in = {0};
	struct ws_conn *c = open_url("ws", "127.0.0.1", "plain", NULL, &err);

	if (!c) {
		fprintf(stderr, "  connect: %s\n", err.text);
		CHECK(c != NULL);
		return;
	}
	CHECK_INT(ws_conn_send_text(c, "hello", 5), 0);
	CHECK_INT(read_until(c, &in, 1), 0);
	CHECK_STR(in.last, "hello");
	ws_conn_free(c);
}

static void test_plain_headers(void)
{
	struct ws_connect_error err;
	struct inbox in = {0};
	struct ws_conn *c = open_url("http", "localhost", "plain", NULL, &err);

	if (!c) {
		fprintf(stderr, "  connect: %s\n", err.text);
		CHECK(c != NULL);
		return;
	}
	CHECK_INT(ws_conn_send_text(c, "__headers__", 11), 0);
	CHECK_INT(read_until(c, &in, 1), 0);
	CHECK(strstr(in.last, "\"authorization\": \"Bearer tok-123\"") != NULL);
	CHECK(strstr(in.last, "\"user-agent\": \"pipeops-agent/test\"") !=
	      NULL);
	CHECK(strstr(in.last, "\":path\": \"/api/v1/agent/ws\"") != NULL);
	ws_conn_free(c);
}

static void test_tls_round_trip(void)
{
	struct ws_connect_error err;
	struct inbox in = {0};
	struct ws_conn *c = open_url("wss", "localhost", "tls", tls_good, &err);

	if (!c) {
		fprintf(stderr, "  connect: %s\n", err.text);
		CHECK(c != NULL);
		return;
	}
	CHECK_INT(ws_conn_send_text(c, "secure", 6), 0);
	CHECK_INT(read_until(c, &in, 1), 0);
	CHECK_STR(in.last, "secure");
	ws_conn_free(c);
}

/* Connect to a bad-TLS listener; the error text must contain @want. */
static void expect_tls_refused(const char *name, struct tls_ctx *tls,
			       const char *want)
{
	struct ws_connect_error err;
	struct ws_conn *c = open_url("wss", "localhost", name, tls, &err);

	CHECK(c == NULL);
	ws_conn_free(c);
	CHECK_INT(err.errnum, -EPERM);
	CHECK_INT(err.http_status, 0);
	if (!strstr(err.text, want)) {
		fprintf(stderr, "  text \"%s\" lacks \"%s\"\n", err.text, want);
		CHECK(0);
	}
}

static void test_tls_wrong_ca(void)
{
	expect_tls_refused("tls", tls_wrong_ca, "signed by unknown CA");
}

static void test_tls_expired(void)
{
	expect_tls_refused("expired", tls_good, "has expired");
}

static void test_tls_self_signed(void)
{
	expect_tls_refused("self", tls_good, "self-signed certificate");
}

static void test_tls_wrong_name(void)
{
	expect_tls_refused("wrongname", tls_good,
			   "name does not match host localhost");
}

static void test_tls_ip_literal_refused(void)
{
	struct ws_connect_error err;
	struct ws_conn *c = open_url("wss", "127.0.0.1", "tls", tls_good, &err);

	CHECK(c == NULL);
	CHECK_INT(err.errnum, -EINVAL);
	CHECK(strstr(err.text, "mbedTLS 2.28") != NULL);
	CHECK(strstr(err.text, "IP address") != NULL);
}

static void test_tls_to_plain_server(void)
{
	struct ws_connect_error err;
	struct ws_conn *c =
	    open_url("wss", "localhost", "plain", tls_good, &err);

	CHECK(c == NULL);
	CHECK_INT(err.errnum, -EPROTO);
	CHECK(strstr(err.text, "TLS handshake") != NULL);
}

static void test_http_401_token_refused(void)
{
	struct ws_connect_error err;
	struct ws_conn *c = open_url("ws", "localhost", "s401", NULL, &err);

	CHECK(c == NULL);
	CHECK_INT(err.http_status, 401);
	CHECK(err.token_refused);
	CHECK_INT(err.errnum, -EACCES);
	CHECK(strstr(err.text, "token refused") != NULL);
	CHECK(strstr(err.text, "tok-123") == NULL);
}

static void test_http_429_retry_after(void)
{
	struct ws_connect_error err;
	struct ws_conn *c = open_url("ws", "localhost", "s429", NULL, &err);

	CHECK(c == NULL);
	CHECK_INT(err.http_status, 429);
	CHECK(!err.token_refused);
	CHECK_INT(err.retry_after_ms, 7000);
}

static void test_http_302_location(void)
{
	struct ws_connect_error err;
	struct ws_conn *c = open_url("ws", "localhost", "s302", NULL, &err);

	CHECK(c == NULL);
	CHECK_INT(err.http_status, 302);
	CHECK(strstr(err.text, "wss://elsewhere.example/ws") != NULL);
}

static void test_connection_refused(void)
{
	struct ws_connect_error err;
	struct ws_options o = {
	    .url = "ws://127.0.0.1:1/x",
	    .connect_timeout_ms = 2000,
	};
	struct ws_conn *c = ws_connect(&o, -1, &err);

	CHECK(c == NULL);
	CHECK_INT(err.errnum, -ECONNREFUSED);
	CHECK_INT(err.http_status, 0);
}

static void test_cancel(void)
{
	struct ws_connect_error err;
	/* 192.0.2.1 (TEST-NET-1) never answers; the cancel fd is already
	 * readable, so connect must return at once. */
	struct ws_options o = {
	    .url = "ws://192.0.2.1:80/x",
	    .connect_timeout_ms = 5000,
	};
	int efd = eventfd(1, EFD_CLOEXEC);
	int64_t t0 = clock_mono_ms();
	struct ws_conn *c = ws_connect(&o, efd, &err);

	CHECK(c == NULL);
	if (getenv("WS_TEST_VERBOSE"))
		fprintf(stderr, "  cancel: %s\n", err.text);
	if (err.errnum != -ENETUNREACH) { /* no route in some sandboxes */
		CHECK_INT(err.errnum, -ECANCELED);
		CHECK(clock_mono_ms() - t0 < 1000);
	}
	close(efd);
}

static void test_peer_close_code(void)
{
	struct ws_connect_error err;
	struct inbox in = {0};
	struct ws_conn *c = open_url("ws", "localhost", "plain", NULL, &err);
	char reason[64];

	if (!c) {
		CHECK(c != NULL);
		return;
	}
	CHECK_INT(ws_conn_send_text(c, "__close__ 4001 bye now", 22), 0);
	CHECK_INT(read_until(c, &in, 1), -ECONNRESET);
	CHECK_INT(ws_conn_close_info(c, reason, sizeof(reason)), 4001);
	CHECK_STR(reason, "bye now");
	ws_conn_free(c);
}

static void test_binary_ignored_and_ping(void)
{
	struct ws_connect_error err;
	struct inbox in = {0};
	struct ws_conn *c = open_url("wss", "localhost", "tls", tls_good, &err);

	if (!c) {
		CHECK(c != NULL);
		return;
	}
	CHECK_INT(ws_conn_rtt_ms(c), -1);
	CHECK_INT(ws_conn_send_text(c, "__binary__", 10), 0);
	CHECK_INT(read_until(c, &in, 1), 0);
	CHECK_STR(in.last, "after-binary");
	CHECK_INT(ws_conn_send_text(c, "__ping__", 8), 0);
	CHECK_INT(read_until(c, &in, 2), 0); /* our pong went out */
	CHECK_STR(in.last, "pinged");
	CHECK_INT(ws_conn_ping(c), 0);
	for (int i = 0; i < 50 && ws_conn_rtt_ms(c) < 0; i++) {
		struct pollfd p = {ws_conn_fd(c), POLLIN, 0};

		if (poll(&p, 1, 100) > 0)
			CHECK_INT(ws_conn_on_readable(c, on_msg, &in), 0);
	}
	CHECK(ws_conn_rtt_ms(c) >= 0);
	CHECK(clock_mono_ms() - ws_conn_last_rx_ms(c) < 1000);
	CHECK_INT(ws_conn_close(c, 1000, "done"), 0);
	CHECK_INT(read_until(c, &in, 99), -ECONNRESET);
	CHECK_INT(ws_conn_close_info(c, NULL, 0), 1000);
	ws_conn_free(c);
}

static void test_large_message(void)
{
	struct ws_connect_error err;
	struct inbox in = {0};
	struct ws_conn *c = open_url("wss", "localhost", "tls", tls_good, &err);
	size_t n = 300 * 1000;
	char *big = xmalloc(n);
	int64_t deadline = clock_mono_ms() + 5000;

	if (!c) {
		CHECK(c != NULL);
		free(big);
		return;
	}
	memset(big, 'x', n);
	big[n - 1] = 'y';
	CHECK_INT(ws_conn_send_text(c, big, n), 0);
	while (ws_conn_flush(c) == 1 && clock_mono_ms() < deadline) {
		struct pollfd p = {ws_conn_fd(c), POLLOUT | POLLIN, 0};

		poll(&p, 1, 100);
		if (p.revents & POLLIN)
			CHECK_INT(ws_conn_on_readable(c, on_msg, &in), 0);
	}
	CHECK_INT(read_until(c, &in, 1), 0);
	CHECK_INT(in.count, 1);
	ws_conn_free(c);
	free(big);
}

/*
 * The agent's shape: a reader thread (poll POLLIN, on_readable, wake the
 * writer when want_write) and a writer thread (send, flush, poll POLLOUT)
 * on one TLS connection, with pings from the writer. Echoes must come back
 * complete and in order.
 */
#define DUPLEX_MSGS 2000

struct duplex {
	struct ws_conn *c;
	int wake_fd; /* reader -> writer */
	int next;    /* reader: next expected sequence number */
	bool bad;    /* reader: out of order or corrupt */
	int rret;    /* reader: final on_readable() result */
	int wret;    /* writer: first error */
};

static void duplex_msg(void *ud, const char *data, size_t len)
{
	struct duplex *d = ud;
	char want[32];

	strfmt(want, sizeof(want), "msg-%06d-", d->next);
	if (len < 600 || strncmp(data, want, strlen(want)) != 0 ||
	    data[len - 1] != '$')
		d->bad = true;
	d->next++;
}

static void *duplex_reader(void *arg)
{
	struct duplex *d = arg;
	int64_t deadline = clock_mono_ms() + 20000;
	uint64_t one = 1;

	while (d->next < DUPLEX_MSGS && clock_mono_ms() < deadline) {
		struct pollfd p = {ws_conn_fd(d->c), POLLIN, 0};

		if (poll(&p, 1, 100) <= 0)
			continue;
		d->rret = ws_conn_on_readable(d->c, duplex_msg, d);
		if (d->rret < 0)
			break;
		if (ws_conn_want_write(d->c) &&
		    write(d->wake_fd, &one, sizeof(one)) < 0)
			break;
	}
	return NULL;
}

static void *duplex_writer(void *arg)
{
	struct duplex *d = arg;
	char msg[700];
	uint64_t v;

	memset(msg, 'z', sizeof(msg));
	for (int i = 0; i < DUPLEX_MSGS && d->wret == 0; i++) {
		size_t n = 600 + (size_t)(i % 97);
		int64_t deadline = clock_mono_ms() + 5000;
		int ret;

		memcpy(msg, "msg-", 4);
		strfmt(msg + 4, 16, "%06d-", i);
		msg[11] = 'z';
		msg[n - 1] = '$';
		d->wret = ws_conn_send_text(d->c, msg, n);
		msg[n - 1] = 'z';
		if (i % 100 == 0 && d->wret == 0)
			d->wret = ws_conn_ping(d->c);
		for (;;) {
			struct pollfd p[2] = {
			    {ws_conn_fd(d->c), POLLOUT, 0},
			    {d->wake_fd, POLLIN, 0},
			};

			ret = ws_conn_flush(d->c);
			if (ret != 1 || clock_mono_ms() > deadline)
				break;
			poll(p, 2, 100);
			if (p[1].revents && read(d->wake_fd, &v, 8) < 0)
				break;
		}
		if (ret < 0)
			d->wret = ret;
	}
	return NULL;
}

static void test_two_threads_tls(void)
{
	struct ws_connect_error err;
	struct duplex d = {0};
	pthread_t rt, wt;

	d.c = open_url("wss", "localhost", "tls", tls_good, &err);
	if (!d.c) {
		CHECK(d.c != NULL);
		return;
	}
	d.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	pthread_create(&rt, NULL, duplex_reader, &d);
	pthread_create(&wt, NULL, duplex_writer, &d);
	pthread_join(wt, NULL);
	pthread_join(rt, NULL);
	CHECK_INT(d.wret, 0);
	CHECK_INT(d.rret, 0);
	CHECK_INT(d.next, DUPLEX_MSGS);
	CHECK(!d.bad);
	CHECK(ws_conn_rtt_ms(d.c) >= 0);
	close(d.wake_fd);
	ws_conn_free(d.c);
}

/* Through an HTTP CONNECT proxy: @proxy_url, to the TLS echo listener. */
static struct ws_conn *open_via(const char *proxy_url,
				struct ws_connect_error *err)
{
	char url[64];
	struct ws_options o = {
	    .default_path = "/ws",
	    .tls = tls_good,
	    .proxy = proxy_url,
	    .connect_timeout_ms = 5000,
	};

	strfmt(url, sizeof(url), "wss://localhost:%d", port_of("tls"));
	o.url = url;
	return ws_connect(&o, -1, err);
}

static void test_proxy_connect(void)
{
	struct ws_connect_error err;
	struct inbox in = {0};
	char px[96];
	struct ws_conn *c;

	strfmt(px, sizeof(px), "http://127.0.0.1:%d", port_of("proxy"));
	c = open_via(px, &err);
	if (!c) {
		fprintf(stderr, "  proxy: %s\n", err.text);
		CHECK(c != NULL);
		return;
	}
	CHECK_INT(ws_conn_send_text(c, "via proxy", 9), 0);
	CHECK_INT(read_until(c, &in, 1), 0);
	CHECK_STR(in.last, "via proxy");
	ws_conn_free(c);
}

static void test_proxy_auth(void)
{
	struct ws_connect_error err;
	char px[96];
	struct ws_conn *c;

	strfmt(px, sizeof(px), "http://agent:s3cret@127.0.0.1:%d/",
	       port_of("proxyauth"));
	c = open_via(px, &err);
	if (!c)
		fprintf(stderr, "  proxy auth: %s\n", err.text);
	CHECK(c != NULL);
	ws_conn_free(c);

	strfmt(px, sizeof(px), "http://127.0.0.1:%d", port_of("proxyauth"));
	c = open_via(px, &err);
	CHECK(c == NULL);
	CHECK_INT(err.errnum, -ECONNREFUSED);
	CHECK(strstr(err.text, "HTTP 407") != NULL);
	ws_conn_free(c);
}

/* No proxy configured: HTTPS_PROXY (scheme-less, as curl takes it), then
 * NO_PROXY sending the host direct; https:// proxies are refused. */
static void test_proxy_from_env(void)
{
	struct ws_connect_error err;
	char px[96];
	struct ws_conn *c;

	/* A proxy that is not there: reaching it proves the env is used. */
	setenv("HTTPS_PROXY", "127.0.0.1:1", 1);
	unsetenv("https_proxy");
	unsetenv("NO_PROXY");
	unsetenv("no_proxy");
	c = open_via(NULL, &err);
	CHECK(c == NULL);
	CHECK(strstr(err.text, "127.0.0.1 port 1") != NULL);

	strfmt(px, sizeof(px), "127.0.0.1:%d", port_of("proxy"));
	setenv("HTTPS_PROXY", px, 1);
	c = open_via(NULL, &err);
	if (!c)
		fprintf(stderr, "  env proxy: %s\n", err.text);
	CHECK(c != NULL);
	ws_conn_free(c);

	setenv("HTTPS_PROXY", "127.0.0.1:1", 1);
	setenv("NO_PROXY", "example.com,localhost", 1);
	c = open_via(NULL, &err);
	if (!c)
		fprintf(stderr, "  NO_PROXY: %s\n", err.text);
	CHECK(c != NULL);
	ws_conn_free(c);
	unsetenv("NO_PROXY");

	setenv("HTTPS_PROXY", "https://user:pw-secret@127.0.0.1:3128", 1);
	c = open_via(NULL, &err);
	CHECK(c == NULL);
	CHECK_INT(err.errnum, -EINVAL);
	CHECK(strstr(err.text, "HTTPS_PROXY") != NULL);
	CHECK(strstr(err.text, "must be http://") != NULL);
	CHECK(strstr(err.text, "pw-secret") == NULL);
	unsetenv("HTTPS_PROXY");
}

static const struct check_case check_cases[] = {
    CHECK_CASE(test_server_started),
    CHECK_CASE(test_plain_round_trip),
    CHECK_CASE(test_plain_headers),
    CHECK_CASE(test_tls_round_trip),
    CHECK_CASE(test_tls_wrong_ca),
    CHECK_CASE(test_tls_expired),
    CHECK_CASE(test_tls_self_signed),
    CHECK_CASE(test_tls_wrong_name),
    CHECK_CASE(test_tls_ip_literal_refused),
    CHECK_CASE(test_tls_to_plain_server),
    CHECK_CASE(test_http_401_token_refused),
    CHECK_CASE(test_http_429_retry_after),
    CHECK_CASE(test_http_302_location),
    CHECK_CASE(test_connection_refused),
    CHECK_CASE(test_cancel),
    CHECK_CASE(test_peer_close_code),
    CHECK_CASE(test_binary_ignored_and_ping),
    CHECK_CASE(test_large_message),
    CHECK_CASE(test_two_threads_tls),
    CHECK_CASE(test_proxy_connect),
    CHECK_CASE(test_proxy_auth),
    CHECK_CASE(test_proxy_from_env),
};

static void setup(void) __attribute__((constructor));
static void teardown(void) __attribute__((destructor));

static void setup(void)
{
	struct tls_options good = {.ca_file = CERT_DIR "/ca.pem"};
	struct tls_options wrong = {.ca_file = CERT_DIR "/self.pem"};
	char err[256];

	signal(SIGPIPE, SIG_IGN);
	rand_init();
	server_ok = server_start();
	tls_good = tls_ctx_new(&good, err, sizeof(err));
	if (!tls_good)
		fprintf(stderr, "tls_ctx_new: %s\n", err);
	tls_wrong_ca = tls_ctx_new(&wrong, err, sizeof(err));
}

static void teardown(void)
{
	server_stop();
	tls_ctx_free(tls_good);
	tls_ctx_free(tls_wrong_ca);
	rand_free();
}

CHECK_MAIN()
