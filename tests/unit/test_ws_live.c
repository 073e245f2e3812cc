/*
 * test_ws_live: ws_connect() and message exchange over real loopback
 * sockets against tests/sim/ws_echo.py (python3-websockets), plain and TLS
 * with the test PKI from tests/lib/certs.sh. The server is started once,
 * binds free ports on 127.0.0.1 and exits when its stdin pipe closes.
 */
#include <errno.h>
#include <poll.h>
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
	{ "plain", "plain=ws", 0 },
	{ "tls", "tls=wss", 0 },
	{ "expired", "expired=wss:expired", 0 },
	{ "self", "self=wss:self", 0 },
	{ "wrongname", "wrongname=wss:wrongname", 0 },
	{ "s401", "s401=status:401", 0 },
	{ "s429", "s429=status:429", 0 },
	{ "s302", "s302=status:302", 0 },
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
		struct pollfd p = { ws_conn_fd(c), POLLIN, 0 };

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
	return ws_connect(&o, -1, err);
}

static void test_server_started(void)
{
	CHECK(server_ok);
}

static void test_plain_round_trip(void)
{
	struct ws_connect_error err;
	struct inbox in = { 0 };
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
	struct inbox in = { 0 };
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
	struct inbox in = { 0 };
	struct ws_conn *c =
		open_url("wss", "localhost", "tls", tls_good, &err);

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

static const struct check_case check_cases[] = {
	CHECK_CASE(test_server_started),
	CHECK_CASE(test_plain_round_trip),
	CHECK_CASE(test_plain_headers),
	CHECK_CASE(test_tls_round_trip),
};

static void setup(void) __attribute__((constructor));
static void teardown(void) __attribute__((destructor));

static void setup(void)
{
	struct tls_options good = { .ca_file = CERT_DIR "/ca.pem" };
	struct tls_options wrong = { .ca_file = CERT_DIR "/self.pem" };
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
