/* Unit tests for common/config: value parsers, the INI table, files. */
#include "common/config.h"
#include "common/log.h"
#include "tests/unit/check.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

/* Five lines that make a valid file; snippets appended start at line 6. */
#define BASE                                                                   \
	"[agent]\n"                                                            \
	"cluster_name = prod-eu\n"                                             \
	"[control_plane]\n"                                                    \
	"endpoint = wss://cp.example.com/agent\n"                              \
	"token = s3cret\n"

static char tmpdir[] = "/tmp/test_config.XXXXXX";

/* A file in tmpdir with @text; returns a static path (one per @name). */
/* A throw-away self-signed EC certificate and its key, so that the loader's
 * "can mbedTLS read it" check has something real to read. */
static const char test_cert_pem[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBdDCCARugAwIBAgIUARDEHhlK8v/mcirH/s4+ZRFQSVcwCgYIKoZIzj0EAwIw\n"
    "DzENMAsGA1UEAwwEdGVzdDAgFw0yNjEyMDMxNzQxNTFaGA8yMTI2MTEwOTE3NDE1\n"
    "MVowDzENMAsGA1UEAwwEdGVzdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABPbG\n"
    "oIRBjaQeA3VCzzDaP9HXH0JZBFSuQHi4aGFxJTASBmkLROuRWxTc8v/8a0m6ysaM\n"
    "OvFU4XCqp7svR6fXXeujUzBRMB0GA1UdDgQWBBQwmw8+9pp3EF3WodtOrvg1TrFu\n"
    "yTAfBgNVHSMEGDAWgBQwmw8+9pp3EF3WodtOrvg1TrFuyTAPBgNVHRMBAf8EBTAD\n"
    "AQH/MAoGCCqGSM49BAMCA0cAMEQCIE1+o89pycrKvGu2tYqm8qVlGjJsSBVfkw+q\n"
    "yB2UJZnwAiBgxP79XexqaQbObYp03FfcJEM5VpTFAR/u4OVH348Vnw==\n"
    "-----END CERTIFICATE-----\n";
static const char test_key_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgLBF8CT+U0GiQAqhs\n"
    "EPb30fpTAsn9+XdinnfjI7pVGD2hRANCAAT2xqCEQY2kHgN1Qs8w2j/R1x9CWQRU\n"
    "rkB4uGhhcSUwEgZpC0TrkVsU3PL//GtJusrGjDrxVOFwqqe7L0en113r\n"
    "-----END PRIVATE KEY-----\n";

static const char *write_tmp(const char *name, const char *text)
{
	static char paths[8][256];
	static int next;
	char *path = paths[next++ % 8];
	FILE *f;

	snprintf(path, 256, "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	if (!f) {
		perror(path);
		exit(2);
	}
	fputs(text, f);
	fclose(f);
	chmod(path, 0600); /* token files are expected private */
	return path;
}

/* The first diagnostic whose text contains @frag, or NULL. */
static const struct config_diag *find_diag(const struct config_diags *d,
					   const char *frag)
{
	for (size_t i = 0; i < d->n; i++)
		if (strstr(d->items[i].text, frag))
			return &d->items[i];
	return NULL;
}

static void dump_diags(const struct config_diags *d)
{
	config_diags_print(d, "  diag", stderr);
}

/* ---- value parsers ---- */

static void test_parse_duration(void)
{
	static const struct {
		const char *in;
		int rc;
		int64_t ms;
	} cases[] = {
	    {"0", 0, 0},
	    {"20", 0, 20000},
	    {"20s", 0, 20000},
	    {"500ms", 0, 500},
	    {"1m", 0, 60000},
	    {"2h", 0, 7200000},
	    {"0ms", 0, 0},
	    {"", -EINVAL, 0},
	    {"abc", -EINVAL, 0},
	    {"-1s", -EINVAL, 0},
	    {"+1s", -EINVAL, 0},
	    {" 1s", -EINVAL, 0},
	    {"1 s", -EINVAL, 0},
	    {"1.5s", -EINVAL, 0},
	    {"1d", -EINVAL, 0},
	    {"1S", -EINVAL, 0},
	    {"1sec", -EINVAL, 0},
	    {"s", -EINVAL, 0},
	    {"99999999999999999999", -EINVAL, 0},
	    {"9999999999999999h", -EINVAL, 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t ms = -7;
		int rc = config_parse_duration_ms(cases[i].in, &ms);

		if (rc != cases[i].rc)
			fprintf(stderr, "  input \"%s\"\n", cases[i].in);
		CHECK_INT(rc, cases[i].rc);
		CHECK_INT(ms, cases[i].rc ? -7 : cases[i].ms);
	}
	CHECK_INT(config_parse_duration_ms(NULL, &(int64_t){0}), -EINVAL);
}

static void test_parse_size(void)
{
	static const struct {
		const char *in;
		int rc;
		size_t n;
	} cases[] = {
	    {"0", 0, 0},
	    {"1024", 0, 1024},
	    {"1K", 0, 1024},
	    {"1k", 0, 1024},
	    {"16M", 0, 16777216},
	    {"2G", 0, 2147483648u},
	    {"", -EINVAL, 0},
	    {"M", -EINVAL, 0},
	    {"16MB", -EINVAL, 0},
	    {"1T", -EINVAL, 0},
	    {"-1", -EINVAL, 0},
	    {"1 K", -EINVAL, 0},
	    {"1.5M", -EINVAL, 0},
	    {"18446744073709551616", -EINVAL, 0},
	    {"17179869184G", -EINVAL, 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = 7;
		int rc = config_parse_size(cases[i].in, &n);

		if (rc != cases[i].rc)
			fprintf(stderr, "  input \"%s\"\n", cases[i].in);
		CHECK_INT(rc, cases[i].rc);
		CHECK_INT(n, cases[i].rc ? 7 : cases[i].n);
	}
}

static void test_parse_bool(void)
{
	static const char *const yes[] = {"true", "yes",  "on",
					  "1",	  "TRUE", "Yes"};
	static const char *const no[] = {"false", "no", "off", "0", "Off"};
	static const char *const bad[] = {"", "2", "y", "enabled", "true "};
	bool b;

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		b = false;
		CHECK_INT(config_parse_bool(yes[i], &b), 0);
		CHECK(b);
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		b = true;
		CHECK_INT(config_parse_bool(no[i], &b), 0);
		CHECK(!b);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_INT(config_parse_bool(bad[i], &b), -EINVAL);
}

/* ---- whole files ---- */

static void test_defaults(void)
{
	struct config_diags d;
	struct config *c = config_load_string(BASE, "mem", &d);
	const struct config_endpoint *cp, *r;

	CHECK(c != NULL);
	CHECK_INT(d.n, 0);
	if (!c) {
		dump_diags(&d);
		config_diags_free(&d);
		return;
	}
	cp = &c->control_plane;
	r = &c->runner;
	CHECK(c->id == NULL);
	CHECK(c->name != NULL && c->name[0]); /* hostname */
	CHECK_STR(c->cluster_name, "prod-eu");
	CHECK_INT(c->n_labels, 0);
	CHECK_INT(c->workers, 4);
	CHECK_STR(c->state_dir, "/var/lib/pipeops-agent");
	CHECK_STR(c->pid_file, "/run/pipeops-agent.pid");
	CHECK_INT(c->log_level, LOG_LVL_INFO);
	CHECK_INT(c->log_target, LOG_TARGET_SYSLOG);
	CHECK(!c->log_target_set);
	CHECK(c->log_file == NULL);
	CHECK_INT(c->shutdown_timeout_ms, 30000);

	CHECK_STR(cp->endpoint, "wss://cp.example.com/agent");
	CHECK_STR(cp->token, "s3cret");
	CHECK(cp->token_file == NULL);
	CHECK(cp->ca_file == NULL && cp->client_cert == NULL);
	CHECK(cp->client_key == NULL && cp->proxy == NULL);
	CHECK(!cp->insecure_skip_verify);
	CHECK_INT(cp->connect_timeout_ms, 10000);
	CHECK_INT(cp->ping_interval_ms, 20000);
	CHECK_INT(cp->ping_timeout_ms, 40000);
	CHECK_INT(cp->reconnect_initial_ms, 1000);
	CHECK_INT(cp->reconnect_max_ms, 60000);
	CHECK_INT(cp->max_message_bytes, 16 * 1024 * 1024);
	CHECK_INT(cp->heartbeat_interval_ms, 30000);
	CHECK_INT(cp->status_interval_ms, 60000);
	CHECK_INT(cp->register_timeout_ms, 30000);

	CHECK(r->endpoint == NULL && r->token == NULL);
	CHECK_INT(r->connect_timeout_ms, 10000);
	CHECK_INT(r->ping_interval_ms, 20000);
	CHECK_INT(r->ping_timeout_ms, 40000);
	CHECK_INT(r->reconnect_initial_ms, 1000);
	CHECK_INT(r->reconnect_max_ms, 60000);
	CHECK_INT(r->max_message_bytes, 16 * 1024 * 1024);
	CHECK_INT(r->outbox_max_messages, 10000);
	CHECK_INT(r->outbox_max_bytes, 64 * 1024 * 1024);
	CHECK_INT(r->dedup_window, 4096);
	CHECK_INT(r->max_streams, 1000);

	CHECK(!c->k8s_in_cluster);
	CHECK_STR(c->k8s_api_server, "https://127.0.0.1:6443");
	CHECK(c->k8s_token == NULL && c->k8s_token_file == NULL);
	CHECK(c->k8s_ca_file == NULL);
	CHECK(!c->k8s_insecure_skip_verify);
	CHECK_STR(c->k8s_namespace, "default");
	CHECK_INT(c->k8s_request_timeout_ms, 30000);
	CHECK_INT(c->k8s_connect_timeout_ms, 10000);
	CHECK_INT(c->n_k8s_proxy_deny, 0);
	CHECK_INT(c->k8s_max_log_bytes, 1024 * 1024);
	CHECK_STR(c->health_listen, "127.0.0.1:9464");
	CHECK_STR(c->path, "mem");
	config_unref(c);
	config_diags_free(&d);
}

static void test_all_keys(void)
{
	const char *ca = write_tmp("ca.pem", test_cert_pem);
	const char *crt = write_tmp("crt.pem", test_cert_pem);
	const char *key = write_tmp("key.pem", test_key_pem);
	char text[4096];
	struct config_diags d;
	struct config *c;

	snprintf(
	    text, sizeof(text),
	    "; a comment\n"
	    "# another\n"
	    "[agent]\n"
	    "id = agent-01.x_y\n"
	    "name = \"node a\"\n"
	    "cluster_name = prod-eu\n"
	    "labels = team=a, env = prod ,tier=\n"
	    "workers = 64\n"
	    "state_dir = /tmp/state\n"
	    "pid_file = /tmp/agent.pid\n"
	    "log_level = debug\n"
	    "log_target = file:/var/log/a.log\n"
	    "shutdown_timeout = 1m\n"
	    "[control_plane]\n"
	    "endpoint = https://user@cp.example.com:8443/x\n"
	    "token = tok\n"
	    "ca_file = %s\n"
	    "client_cert = %s\n"
	    "client_key = %s\n"
	    "insecure_skip_verify = yes\n"
	    "proxy = http://u:p@proxy:3128\n"
	    "connect_timeout = 500ms\n"
	    "ping_interval = 5s\n"
	    "ping_timeout = 7s\n"
	    "reconnect_initial = 2s\n"
	    "reconnect_max = 2m\n"
	    "max_message_bytes = 1K\n"
	    "heartbeat_interval = 10s\n"
	    "status_interval = 0\n"
	    "register_timeout = 1h\n"
	    "[runner]\n"
	    "insecure_skip_verify = on\n"
	    "proxy = http://proxy\n"
	    "connect_timeout = 3\n"
	    "ping_interval = 1m\n"
	    "reconnect_initial = 100ms\n"
	    "reconnect_max = 1s\n"
	    "max_message_bytes = 1G\n"
	    "outbox_max_messages = 5\n"
	    "outbox_max_bytes = 2G\n"
	    "dedup_window = 16\n"
	    "max_streams = 7\n"
	    "[kubernetes]\n"
	    "in_cluster = false\n"
	    "api_server = http://[::1]:8080\n"
	    "ca_file = %s\n"
	    "insecure_skip_verify = 1\n"
	    "namespace = pipeops-system\n"
	    "request_timeout = 2m\n"
	    "connect_timeout = 2s\n"
	    "proxy_deny = /api/v1/secrets, /apis/rbac.authorization.k8s.io\n"
	    "max_log_bytes = 256K\n"
	    "[health]\n"
	    "listen = [::1]:9000\n",
	    ca, crt, key, ca);
	c = config_load_string(text, "all", &d);
	CHECK(c != NULL);
	CHECK_INT(d.n, 0);
	if (!c) {
		dump_diags(&d);
		config_diags_free(&d);
		return;
	}
	CHECK_STR(c->id, "agent-01.x_y");
	CHECK_STR(c->name, "node a");
	CHECK_INT(c->n_labels, 3);
	if (c->n_labels == 3) {
		CHECK_STR(c->labels[0].key, "team");
		CHECK_STR(c->labels[0].value, "a");
		CHECK_STR(c->labels[1].key, "env");
		CHECK_STR(c->labels[1].value, "prod");
		CHECK_STR(c->labels[2].key, "tier");
		CHECK_STR(c->labels[2].value, "");
	}
	CHECK_INT(c->workers, 64);
	CHECK_STR(c->state_dir, "/tmp/state");
	CHECK_STR(c->pid_file, "/tmp/agent.pid");
	CHECK_INT(c->log_level, LOG_LVL_DEBUG);
	CHECK_INT(c->log_target, LOG_TARGET_FILE);
	CHECK(c->log_target_set);
	CHECK_STR(c->log_file, "/var/log/a.log");
	CHECK_INT(c->shutdown_timeout_ms, 60000);

	CHECK_STR(c->control_plane.endpoint,
		  "https://user@cp.example.com:8443/x");
	CHECK_STR(c->control_plane.ca_file, ca);
	CHECK_STR(c->control_plane.client_cert, crt);
	CHECK_STR(c->control_plane.client_key, key);
	CHECK(c->control_plane.insecure_skip_verify);
	CHECK_STR(c->control_plane.proxy, "http://u:p@proxy:3128");
	CHECK_INT(c->control_plane.connect_timeout_ms, 500);
	CHECK_INT(c->control_plane.ping_interval_ms, 5000);
	CHECK_INT(c->control_plane.ping_timeout_ms, 7000);
	CHECK_INT(c->control_plane.reconnect_initial_ms, 2000);
	CHECK_INT(c->control_plane.reconnect_max_ms, 120000);
	CHECK_INT(c->control_plane.max_message_bytes, 1024);
	CHECK_INT(c->control_plane.heartbeat_interval_ms, 10000);
	CHECK_INT(c->control_plane.status_interval_ms, 0);
	CHECK_INT(c->control_plane.register_timeout_ms, 3600000);

	CHECK(c->runner.insecure_skip_verify);
	CHECK_STR(c->runner.proxy, "http://proxy");
	CHECK_INT(c->runner.connect_timeout_ms, 3000);
	CHECK_INT(c->runner.ping_interval_ms, 60000);
	CHECK_INT(c->runner.ping_timeout_ms, 120000); /* 2 x ping_interval */
	CHECK_INT(c->runner.reconnect_initial_ms, 100);
	CHECK_INT(c->runner.reconnect_max_ms, 1000);
	CHECK_INT(c->runner.max_message_bytes, 1024 * 1024 * 1024);
	CHECK_INT(c->runner.outbox_max_messages, 5);
	CHECK_INT(c->runner.outbox_max_bytes, 2048LL * 1024 * 1024);
	CHECK_INT(c->runner.dedup_window, 16);
	CHECK_INT(c->runner.max_streams, 7);

	CHECK(!c->k8s_in_cluster);
	CHECK_STR(c->k8s_api_server, "http://[::1]:8080");
	CHECK_STR(c->k8s_ca_file, ca);
	CHECK(c->k8s_insecure_skip_verify);
	CHECK_STR(c->k8s_namespace, "pipeops-system");
	CHECK_INT(c->k8s_request_timeout_ms, 120000);
	CHECK_INT(c->k8s_connect_timeout_ms, 2000);
	CHECK_INT(c->k8s_max_log_bytes, 256 * 1024);
	CHECK_INT(c->n_k8s_proxy_deny, 2);
	if (c->n_k8s_proxy_deny == 2) {
		CHECK_STR(c->k8s_proxy_deny[0], "/api/v1/secrets");
		CHECK_STR(c->k8s_proxy_deny[1],
			  "/apis/rbac.authorization.k8s.io");
	}
	CHECK_STR(c->health_listen, "[::1]:9000");
	config_unref(c);
	config_diags_free(&d);
}

/*
 * The table: BASE plus a snippet. @frag must be in a diagnostic on @line of
 * kind @is_error; @ok says whether the config loads (warnings only).
 */
struct snippet_case {
	const char *text;
	bool ok;
	int line;
	bool is_error;
	const char *frag;
};

static const struct snippet_case snippet_cases[] = {
    /* durations */
    {"ping_interval = abc\n", false, 6, true,
     "[control_plane] ping_interval: \"abc\" is not a duration "
     "(e.g. 20s, 500ms, 1m)"},
    {"ping_interval = 500ms\n", false, 6, true,
     "[control_plane] ping_interval: \"500ms\" is out of range "
     "(1s..1h)"},
    {"ping_interval = 1s\n", true, 0, false, NULL},
    {"ping_timeout = 0\n", false, 6, true, "ping_timeout: \"0\" is out"},
    {"connect_timeout = 50ms\n", false, 6, true,
     "connect_timeout: \"50ms\" is out of range (100ms..10m)"},
    {"status_interval = 0\n", true, 0, false, NULL},
    {"status_interval = 500ms\n", false, 6, true,
     "status_interval: \"500ms\" is out of range (0 or 1s..24h)"},
    {"heartbeat_interval =\n", false, 6, true,
     "heartbeat_interval: \"\" is not a duration"},
    {"reconnect_initial = 2m\nreconnect_max = 1m\n", false, 7, true,
     "[control_plane] reconnect_initial (2m) is greater than "
     "reconnect_max (1m)"},
    {"reconnect_initial = 2m\n", false, 6, true,
     "reconnect_initial (2m) is greater than reconnect_max (1m)"},
    {"[runner]\nreconnect_max = 500ms\n", false, 7, true,
     "[runner] reconnect_max: \"500ms\" is out of range (1s..24h)"},
    {"[agent]\nshutdown_timeout = 0\n", true, 0, false, NULL},
    {"[agent]\nshutdown_timeout = 2h\n", false, 7, true,
     "[agent] shutdown_timeout: \"2h\" is out of range (0s..1h)"},
    {"[kubernetes]\nrequest_timeout = 1x\n", false, 7, true,
     "[kubernetes] request_timeout: \"1x\" is not a duration"},
    {"[kubernetes]\nconnect_timeout = 11m\n", false, 7, true,
     "[kubernetes] connect_timeout: \"11m\" is out of range"},
    /* sizes and counts */
    {"max_message_bytes = 512\n", false, 6, true,
     "max_message_bytes: \"512\" is out of range (1K..1G)"},
    {"max_message_bytes = 2G\n", false, 6, true,
     "max_message_bytes: \"2G\" is out of range (1K..1G)"},
    {"max_message_bytes = lots\n", false, 6, true,
     "max_message_bytes: \"lots\" is not a size (e.g. 16M, 512K, "
     "1048576)"},
    {"[runner]\nmax_message_bytes = 128M\n", false, 7, true,
     "[runner] outbox_max_bytes (64M) is smaller than "
     "max_message_bytes (128M)"},
    {"[runner]\noutbox_max_messages = 0\n", false, 7, true,
     "[runner] outbox_max_messages: \"0\" is out of range (1..1000000)"},
    {"[runner]\ndedup_window = 1e3\n", false, 7, true,
     "[runner] dedup_window: \"1e3\" is not a whole number"},
    {"[runner]\nmax_streams = -1\n", false, 7, true,
     "max_streams: \"-1\" is not a whole number"},
    {"[agent]\nworkers = 0\n", false, 7, true,
     "[agent] workers: \"0\" is out of range (1..64)"},
    {"[agent]\nworkers = 65\n", false, 7, true,
     "[agent] workers: \"65\" is out of range (1..64)"},
    {"[agent]\nworkers = 99999999999999999999999\n", false, 7, true,
     "workers: \"99999999999999999999999\" is not a whole number"},
    /* booleans */
    {"insecure_skip_verify = maybe\n", false, 6, true,
     "[control_plane] insecure_skip_verify: \"maybe\" is not a boolean "
     "(true/false, yes/no, on/off, 1/0)"},
    /* endpoint */
    {"endpoint = ftp://cp\n", false, 6, true,
     "[control_plane] endpoint: \"ftp://cp\" is not a URL with scheme "
     "http, https, ws or wss and a host"},
    {"endpoint = https://\n", false, 6, true,
     "endpoint: \"https://\" is not a URL"},
    {"endpoint = cp.example.com\n", false, 6, true,
     "endpoint: \"cp.example.com\" is not a URL"},
    {"endpoint = wss://:443/x\n", false, 6, true, "is not a URL"},
    {"endpoint = wss://user@/x\n", false, 6, true, "is not a URL"},
    {"endpoint = wss://[]:443\n", false, 6, true, "is not a URL"},
    {"endpoint = wss://cp x\n", false, 6, true, "is not a URL"},
    {"endpoint = WS://[fd00::1]:80/a?b\n", true, 6, false,
     "[control_plane] endpoint: set again (first on line 4)"},
    {"endpoint = http://cp\n", true, 6, false, "set again"},
    {"endpoint =\n", false, 6, true,
     "[control_plane] endpoint: must not be empty"},
    /* proxy, api_server, listen */
    {"proxy = socks5://p:1080\n", false, 6, true,
     "[control_plane] proxy: value is not an http:// proxy URL"},
    {"proxy = https://p:3128\n", false, 6, true,
     "[control_plane] proxy: value is not an http:// proxy URL"},
    {"[kubernetes]\napi_server = k8s:6443\n", false, 7, true,
     "[kubernetes] api_server: \"k8s:6443\" is not a URL with scheme "
     "http or https and a host"},
    {"[health]\nlisten = 9464\n", false, 7, true,
     "[health] listen: \"9464\" is not host:port"},
    {"[health]\nlisten = :9464\n", false, 7, true, "is not host:port"},
    {"[health]\nlisten = h:0\n", false, 7, true, "is not host:port"},
    {"[health]\nlisten = h:65536\n", false, 7, true, "is not host:port"},
    {"[health]\nlisten = ::1:80\n", false, 7, true, "is not host:port"},
    {"[health]\nlisten = 0.0.0.0:80\n", true, 0, false, NULL},
    /* agent strings */
    {"[agent]\nlog_level = verbose\n", false, 7, true,
     "[agent] log_level: \"verbose\" is not error, warn, info or debug"},
    {"[agent]\nlog_target = journal\n", false, 7, true,
     "[agent] log_target: \"journal\" is not syslog, stderr or "
     "file:/path"},
    {"[agent]\nlog_target = file:\n", false, 7, true,
     "is not syslog, stderr or file:/path"},
    {"[agent]\nlog_target = file:rel.log\n", false, 7, true,
     "is not syslog, stderr or file:/path"},
    {"[agent]\nstate_dir = var/lib\n", false, 7, true,
     "[agent] state_dir: \"var/lib\" is not an absolute path"},
    {"[agent]\npid_file = \"\"\n", false, 7, true,
     "[agent] pid_file: must not be empty"},
    {"[agent]\nid = has space\n", false, 7, true,
     "[agent] id: \"has space\" is not an id"},
    {"[agent]\nlabels = team\n", false, 7, true,
     "[agent] labels: \"team\" is not key=value"},
    {"[agent]\nlabels = a=b,\n", false, 7, true,
     "[agent] labels: \"\" is not key=value"},
    {"[agent]\nlabels = =b\n", false, 7, true,
     "[agent] labels: \"\" is not a valid label key"},
    {"[agent]\nlabels = a b=c\n", false, 7, true,
     "\"a b\" is not a valid label key"},
    {"[agent]\nlabels = a=1, a=2\n", false, 7, true,
     "[agent] labels: label \"a\" given twice"},
    {"[agent]\nlabels = \"\"\n", true, 0, false, NULL},
    {"[agent]\ncluster_name =\n", false, 7, true,
     "[agent] cluster_name is required"},
    /* kubernetes strings */
    {"[kubernetes]\nnamespace = Bad_NS\n", false, 7, true,
     "[kubernetes] namespace: \"Bad_NS\" is not a namespace name"},
    {"[kubernetes]\nnamespace =\n", false, 7, true,
     "[kubernetes] namespace: must not be empty"},
    {"[kubernetes]\nproxy_deny = api/v1\n", false, 7, true,
     "[kubernetes] proxy_deny: \"api/v1\" is not a path prefix"},
    {"[kubernetes]\nproxy_deny = /a,,/b\n", false, 7, true,
     "proxy_deny: \"\" is not a path prefix"},
    {"[kubernetes]\nca_file = /nonexistent/ca.pem\n", false, 7, true,
     "[kubernetes] ca_file: cannot read \"/nonexistent/ca.pem\": "
     "No such file or directory"},
    {"[kubernetes]\ntoken_file = /nonexistent/tok\n", false, 7, true,
     "[kubernetes] token_file: cannot read \"/nonexistent/tok\": "
     "No such file or directory"},
    /* TLS pair */
    {"client_cert = /dev/null\n", false, 6, true,
     "[control_plane] client_cert: \"/dev/null\": not a usable "
     "certificate file"},
    {"[runner]\nclient_key = /dev/null\n", false, 7, true,
     "[runner] client_key: \"/dev/null\": not a usable unencrypted "
     "private key"},
    {"ping_interval = 30s\nping_timeout = 3s\n", false, 7, true,
     "[control_plane] ping_timeout (3s) must be longer than "
     "ping_interval (30s)"},
    {"ca_file = /tmp\n", false, 6, true,
     "[control_plane] ca_file: \"/tmp\": is a directory, not a file"},
    /* tokens */
    {"token_file = /nonexistent/token\n", false, 6, true,
     "[control_plane] token and token_file are both set; use one"},
    /* quoting and comments */
    {"ping_interval = \"30s\"\n", true, 0, false, NULL},
    {"ping_interval = 30s ; comment\n", true, 0, false, NULL},
    {"ping_interval = \"30s\" ; comment\n", true, 0, false, NULL},
    {"ping_interval = \"30s\n", false, 6, true,
     "[control_plane] ping_interval: missing closing quote"},
    {"ping_interval = \"30s\"x\n", false, 6, true,
     "[control_plane] ping_interval: text after the closing quote"},
    {"ping_interval = \"30s\";x\n", false, 6, true,
     "text after the closing quote"},
    {"ping_interval = ; nothing\n", false, 6, true,
     "ping_interval: \"\" is not a duration"},
    /* warnings: unknown, duplicate, outside a section */
    {"colour = blue\n", true, 6, false,
     "[control_plane] colour: unknown key (ignored)"},
    {"[extra]\nfoo = 1\n", true, 6, false,
     "[extra]: unknown section (its keys are ignored)"},
    {"ping_interval = 10s\nping_interval = 30s\n", true, 7, false,
     "[control_plane] ping_interval: set again (first on line 6); the "
     "last value wins"},
    {"ping_interval = abc\nping_interval = 30s\n", false, 6, true,
     "is not a duration"},
    {"[AGENT]\nWorkers = 8\n", true, 0, false, NULL},
    /* syntax */
    {"just words\n", false, 6, true,
     "syntax error: expected key = value, [section] or a ; comment"},
    {"[agent\n", false, 6, true, "section header without ']'"},
    {"= value\n", false, 6, true, "syntax error: no key name before '='"},
    {"  ping_interval = 30s\n", true, 0, false, NULL}, /* no multiline */
    {"\n\n\n; c\n# c\n\nbad line\n", false, 12, true, "syntax error"},
};

static void test_snippets(void)
{
	char text[8192];

	for (size_t i = 0; i < sizeof(snippet_cases) / sizeof(snippet_cases[0]);
	     i++) {
		const struct snippet_case *tc = &snippet_cases[i];
		int before = check_failures_in_case;
		struct config_diags d;
		struct config *c;
		const struct config_diag *dg;

		snprintf(text, sizeof(text), "%s%s", BASE, tc->text);
		c = config_load_string(text, "snippet", &d);
		CHECK_INT(c != NULL, tc->ok);
		if (c)
			CHECK_INT(d.n_errors, 0);
		else
			CHECK(d.n_errors > 0);
		if (tc->frag) {
			dg = find_diag(&d, tc->frag);
			CHECK(dg != NULL);
			if (dg) {
				CHECK_INT(dg->line, tc->line);
				CHECK_INT(dg->is_error, tc->is_error);
			}
		} else {
			CHECK_INT(d.n, 0);
		}
		if (check_failures_in_case != before) {
			fprintf(stderr, "  case %zu: %s", i, tc->text);
			dump_diags(&d);
		}
		config_unref(c);
		config_diags_free(&d);
	}
}

static void test_quoted_strings(void)
{
	struct config_diags d;
	struct config *c =
	    config_load_string("[agent]\n"
			       "cluster_name = \"prod ; eu\"\n"
			       "name = \"\"\n"
			       "labels = \"a=b, c=d\"\n"
			       "[control_plane]\n"
			       "endpoint = \"wss://cp\"   ; comment\n"
			       "token = \"x;y ; z\"\n"
			       "[runner]\n"
			       "ping_interval = 1m;not a comment\n",
			       "q", &d);

	/* "1m;not a comment": no white space before ';', so no comment. */
	CHECK(c == NULL);
	CHECK(find_diag(&d, "\"1m;not a comment\" is not a duration"));
	CHECK_INT(d.n_errors, 1);
	config_diags_free(&d);

	c = config_load_string("[agent]\n"
			       "cluster_name = \"prod ; eu\"\n"
			       "name = \"\"\n"
			       "labels = \"a=b, c=d\"\n"
			       "[control_plane]\n"
			       "endpoint = \"wss://cp\"   ; comment\n"
			       "token = \"x;y ; z\"\n",
			       "q", &d);
	CHECK(c != NULL);
	if (c) {
		CHECK_STR(c->cluster_name, "prod ; eu");
		CHECK(c->name && c->name[0]); /* empty: hostname */
		CHECK_INT(c->n_labels, 2);
		CHECK_STR(c->control_plane.endpoint, "wss://cp");
		CHECK_STR(c->control_plane.token, "x;y ; z");
	}
	config_unref(c);
	config_diags_free(&d);
}

/* Every problem is reported, in line order, not just the first. */
static void test_all_errors_reported(void)
{
	struct config_diags d;
	struct config *c = config_load_string("[agent]\n"
					      "workers = many\n"
					      "oops\n"
					      "[nope]\n"
					      "[control_plane]\n"
					      "ping_interval = x\n"
					      "also bad\n"
					      "size = 1\n",
					      "m", &d);
	static const struct {
		int line;
		bool is_error;
		const char *frag;
	} want[] = {
	    {1, true, "[agent] cluster_name is required"},
	    {2, true, "workers: \"many\" is not a whole number"},
	    {3, true, "syntax error"},
	    {4, false, "unknown section"},
	    {5, true, "[control_plane] endpoint is required"},
	    {5, true, "token_file or token is required"},
	    {6, true, "ping_interval: \"x\" is not a duration"},
	    {7, true, "syntax error"},
	    {8, false, "[control_plane] size: unknown key"},
	};

	CHECK(c == NULL);
	CHECK_INT(d.n, sizeof(want) / sizeof(want[0]));
	CHECK_INT(d.n_errors, 7);
	for (size_t i = 0; i < d.n && i < sizeof(want) / sizeof(want[0]); i++) {
		CHECK_INT(d.items[i].line, want[i].line);
		CHECK_INT(d.items[i].is_error, want[i].is_error);
		CHECK(strstr(d.items[i].text, want[i].frag) != NULL);
	}
	if (check_failures_in_case)
		dump_diags(&d);
	config_diags_free(&d);

	/* Nothing at all: the required keys, with no line. */
	c = config_load_string("", "empty", &d);
	CHECK(c == NULL);
	CHECK_INT(d.n, 3);
	for (size_t i = 0; i < d.n; i++)
		CHECK_INT(d.items[i].line, 0);
	CHECK(find_diag(&d, "[agent] cluster_name is required"));
	config_diags_free(&d);

	/* A bad endpoint is one error, not also "required". */
	c = config_load_string("[agent]\ncluster_name = x\n[control_plane]\n"
			       "endpoint = ftp://x\ntoken = t\n",
			       "ep", &d);
	CHECK(c == NULL);
	CHECK_INT(d.n, 1);
	if (d.n)
		CHECK_INT(d.items[0].line, 4);
	config_diags_free(&d);

	/* NULL diags: still no leak. */
	CHECK(config_load_string("x", "nul", NULL) == NULL);
}

static void test_key_outside_section(void)
{
	struct config_diags d;
	struct config *c = config_load_string("workers = 3\n" BASE, "o", &d);

	CHECK(c != NULL);
	CHECK_INT(d.n, 1);
	if (d.n) {
		CHECK_INT(d.items[0].line, 1);
		CHECK(!d.items[0].is_error);
		CHECK_STR(d.items[0].text,
			  "workers: key outside any section (ignored)");
	}
	if (c)
		CHECK_INT(c->workers, 4);
	config_unref(c);
	config_diags_free(&d);
}

/* An over-long line is an error on its own line; later lines keep theirs. */
static void test_long_line(void)
{
	size_t n = CONFIG_MAX_LINE + 500;
	char *text = malloc(n + 256);
	struct config_diags d;
	struct config *c;
	size_t o;

	o = (size_t)snprintf(text, 256, "%s[agent]\nname = ", BASE);
	memset(text + o, 'x', n);
	o += n;
	snprintf(text + o, 256, "\nworkers = zero\n");
	c = config_load_string(text, "long", &d);
	CHECK(c == NULL);
	CHECK_INT(d.n, 2);
	if (d.n == 2) {
		CHECK_INT(d.items[0].line, 7);
		CHECK(strstr(d.items[0].text, "line is longer than 4096"));
		CHECK_INT(d.items[1].line, 8);
		CHECK(strstr(d.items[1].text, "workers: \"zero\""));
	}
	config_diags_free(&d);

	/* Exactly at the limit is fine, and kept whole. */
	o = (size_t)snprintf(text, 256, "%s[agent]\nname = ", BASE);
	memset(text + o, 'y', CONFIG_MAX_LINE - 7);
	o += CONFIG_MAX_LINE - 7;
	text[o] = '\0';
	c = config_load_string(text, "long", &d);
	CHECK(c != NULL);
	if (c)
		CHECK_INT(strlen(c->name), CONFIG_MAX_LINE - 7);
	config_unref(c);
	config_diags_free(&d);
	free(text);
}

static void test_bom_crlf(void)
{
	struct config_diags d;
	struct config *c = config_load_string(
	    "\xEF\xBB\xBF[agent]\r\ncluster_name = c\r\nworkers = 2\r\n"
	    "[control_plane]\r\nendpoint = ws://h\r\ntoken = t\r\n",
	    "bom", &d);

	CHECK(c != NULL);
	CHECK_INT(d.n, 0);
	if (c) {
		CHECK_STR(c->cluster_name, "c");
		CHECK_INT(c->workers, 2);
		CHECK_STR(c->control_plane.token, "t");
	}
	config_unref(c);
	config_diags_free(&d);
}

static void test_ping_timeout_default(void)
{
	struct config_diags d;
	struct config *c = config_load_string(BASE "ping_interval = 7s\n"
						   "[runner]\n"
						   "ping_interval = 1s\n"
						   "ping_timeout = 5s\n",
					      "p", &d);

	CHECK(c != NULL);
	if (c) {
		CHECK_INT(c->control_plane.ping_timeout_ms, 14000);
		CHECK_INT(c->runner.ping_timeout_ms, 5000);
	}
	config_unref(c);
	config_diags_free(&d);
}

static void test_tls_pair_must_be_complete(void)
{
	const char *crt = write_tmp("pair.pem", test_cert_pem);
	char text[512];
	struct config_diags d;
	struct config *c;

	snprintf(text, sizeof(text),
		 "[agent]\ncluster_name = c\n[control_plane]\n"
		 "endpoint = wss://cp\ntoken = t\nclient_cert = %s\n",
		 crt);
	c = config_load_string(text, "t", &d);
	CHECK(c == NULL);
	CHECK(find_diag(&d, "[control_plane] client_cert and client_key "
			    "must be set together") != NULL);
	config_diags_free(&d);
}

static void test_token_file_permissions_warned(void)
{
	const char *tok = write_tmp("open-token", "abc\n");
	char text[512];
	struct config_diags d;
	struct config *c;

	chmod(tok, 0644);
	snprintf(text, sizeof(text),
		 "[agent]\ncluster_name = c\n[control_plane]\n"
		 "endpoint = wss://cp\ntoken_file = %s\n",
		 tok);
	c = config_load_string(text, "t", &d);
	CHECK(c != NULL); /* a warning, not an error */
	CHECK_INT(d.n, 1);
	CHECK_INT(d.n_errors, 0);
	if (d.n) {
		CHECK_INT(d.items[0].line, 5);
		CHECK(!d.items[0].is_error);
		CHECK(strstr(d.items[0].text, "readable by group or others "
					      "(mode 0644)") != NULL);
	}
	config_unref(c);
	config_diags_free(&d);
	chmod(tok, 0600);
	c = config_load_string(text, "t", &d);
	CHECK(c != NULL);
	CHECK_INT(d.n, 0);
	config_unref(c);
	config_diags_free(&d);
}

static void test_token_file(void)
{
	const char *tok = write_tmp("token", "\n  abc.def-ghi \n\n");
	const char *empty = write_tmp("empty", " \n");
	char text[1024];
	struct config_diags d;
	struct config *c;

	snprintf(text, sizeof(text),
		 "[agent]\ncluster_name = c\n[control_plane]\n"
		 "endpoint = wss://cp\ntoken_file = %s\n"
		 "[kubernetes]\ntoken_file = \"%s\"\n",
		 tok, tok);
	c = config_load_string(text, "t", &d);
	CHECK(c != NULL);
	CHECK_INT(d.n, 0);
	if (c) {
		CHECK_STR(c->control_plane.token_file, tok);
		CHECK_STR(c->control_plane.token, "abc.def-ghi");
		CHECK_STR(c->k8s_token_file, tok);
		CHECK_STR(c->k8s_token, "abc.def-ghi");
	}
	config_unref(c);
	config_diags_free(&d);

	snprintf(text, sizeof(text),
		 "[agent]\ncluster_name = c\n[control_plane]\n"
		 "endpoint = wss://cp\ntoken_file = %s\n",
		 empty);
	c = config_load_string(text, "t", &d);
	CHECK(c == NULL);
	CHECK_INT(d.n, 1);
	if (d.n) {
		CHECK_INT(d.items[0].line, 5);
		CHECK(strstr(d.items[0].text,
			     "[control_plane] token_file: \"") != NULL);
		CHECK(strstr(d.items[0].text, "\" is empty") != NULL);
	}
	config_diags_free(&d);

	c = config_load_string("[agent]\ncluster_name = c\n[control_plane]\n"
			       "endpoint = wss://cp\n"
			       "token_file = /nonexistent/dir/token\n",
			       "t", &d);
	CHECK(c == NULL);
	CHECK_INT(d.n, 1);
	if (d.n) {
		CHECK_INT(d.items[0].line, 5);
		CHECK_STR(d.items[0].text,
			  "[control_plane] token_file: cannot read "
			  "\"/nonexistent/dir/token\": No such file or "
			  "directory");
	}
	config_diags_free(&d);

	/* Neither token nor token_file (token = "" counts as unset). */
	c = config_load_string("[agent]\ncluster_name = c\n[control_plane]\n"
			       "endpoint = wss://cp\ntoken = \"\"\n",
			       "t", &d);
	CHECK(c == NULL);
	CHECK_INT(d.n, 1);
	if (d.n) {
		CHECK_INT(d.items[0].line, 5);
		CHECK_STR(d.items[0].text,
			  "[control_plane] token_file or token is required");
	}
	config_diags_free(&d);
}

static void make_sa_dir(const char *dir, bool with_ns)
{
	char path[512];
	FILE *f;

	mkdir(dir, 0700);
	snprintf(path, sizeof(path), "%s/token", dir);
	f = fopen(path, "w");
	fputs("sa-token\n", f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/ca.crt", dir);
	f = fopen(path, "w");
	fputs("CA\n", f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/namespace", dir);
	if (with_ns) {
		f = fopen(path, "w");
		fputs("team-ns\n", f);
		fclose(f);
	} else {
		unlink(path);
	}
}

static void test_in_cluster(void)
{
	char sa[300], path[400];
	struct config_diags d;
	struct config *c;
	const char *text = BASE "[kubernetes]\nin_cluster = true\n";

	snprintf(sa, sizeof(sa), "%s/sa", tmpdir);
	make_sa_dir(sa, true);
	config_set_service_account_dir(sa);

	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	c = config_load_string(text, "ic", &d);
	CHECK(c != NULL);
	CHECK_INT(d.n, 0);
	if (c) {
		CHECK(c->k8s_in_cluster);
		CHECK_STR(c->k8s_api_server, "https://10.96.0.1:443");
		snprintf(path, sizeof(path), "%s/token", sa);
		CHECK_STR(c->k8s_token_file, path);
		CHECK_STR(c->k8s_token, "sa-token");
		snprintf(path, sizeof(path), "%s/ca.crt", sa);
		CHECK_STR(c->k8s_ca_file, path);
		CHECK_STR(c->k8s_namespace, "team-ns");
	}
	config_unref(c);
	config_diags_free(&d);

	/* IPv6 service address gets brackets. */
	setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "6443", 1);
	c = config_load_string(text, "ic", &d);
	CHECK(c != NULL);
	if (c)
		CHECK_STR(c->k8s_api_server, "https://[fd00:10:96::1]:6443");
	config_unref(c);
	config_diags_free(&d);

	/* Explicit keys win over the in-cluster defaults. */
	snprintf(path, sizeof(path), "%s/ca.crt", sa);
	{
		char t2[1024];

		snprintf(t2, sizeof(t2),
			 BASE "[kubernetes]\nin_cluster = yes\n"
			      "api_server = https://k8s.internal\n"
			      "namespace = mine\n"
			      "token_file = %s/token\n",
			 sa);
		c = config_load_string(t2, "ic", &d);
	}
	CHECK(c != NULL);
	if (c) {
		CHECK_STR(c->k8s_api_server, "https://k8s.internal");
		CHECK_STR(c->k8s_namespace, "mine");
		CHECK_STR(c->k8s_ca_file, path);
		CHECK_STR(c->k8s_token, "sa-token");
	}
	config_unref(c);
	config_diags_free(&d);

	/* No namespace file: a warning, "default" stays. */
	make_sa_dir(sa, false);
	c = config_load_string(text, "ic", &d);
	CHECK(c != NULL);
	CHECK_INT(d.n, 1);
	if (d.n) {
		CHECK_INT(d.items[0].line, 7);
		CHECK(!d.items[0].is_error);
		CHECK(strstr(d.items[0].text, "no namespace in"));
	}
	if (c)
		CHECK_STR(c->k8s_namespace, "default");
	config_unref(c);
	config_diags_free(&d);

	/* Not in a pod: the environment is missing. */
	unsetenv("KUBERNETES_SERVICE_HOST");
	c = config_load_string(text, "ic", &d);
	CHECK(c == NULL);
	CHECK(d.n >= 1);
	if (d.n) {
		CHECK_INT(d.items[0].line, 7);
		CHECK(d.items[0].is_error);
		CHECK(strstr(d.items[0].text,
			     "[kubernetes] in_cluster: KUBERNETES_SERVICE_HOST "
			     "and KUBERNETES_SERVICE_PORT are not set"));
	}
	config_diags_free(&d);

	setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "https", 1);
	c = config_load_string(text, "ic", &d);
	CHECK(c == NULL);
	CHECK(find_diag(&d, "are not a host and port") != NULL);
	config_diags_free(&d);

	/* No service account files at all. */
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	config_set_service_account_dir("/nonexistent/sa");
	c = config_load_string(text, "ic", &d);
	CHECK(c == NULL);
	CHECK(find_diag(&d, "[kubernetes] in_cluster: cannot read "
			    "\"/nonexistent/sa/ca.crt\"") != NULL);
	CHECK(find_diag(&d, "[kubernetes] token_file: cannot read "
			    "\"/nonexistent/sa/token\"") != NULL);
	config_diags_free(&d);

	config_set_service_account_dir(NULL);
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
}

static void test_load_file(void)
{
	const char *p = write_tmp("agent.ini", BASE "[agent]\nworkers = 9\n");
	struct config_diags d;
	struct config *c = config_load(p, &d);

	CHECK(c != NULL);
	CHECK_INT(d.n, 0);
	if (c) {
		CHECK_STR(c->path, p);
		CHECK_INT(c->workers, 9);
	}
	config_unref(c);
	config_diags_free(&d);

	c = config_load("/nonexistent/agent.ini", &d);
	CHECK(c == NULL);
	CHECK_INT(d.n, 1);
	CHECK_INT(d.n_errors, 1);
	if (d.n) {
		CHECK_INT(d.items[0].line, 0);
		CHECK_STR(d.items[0].text,
			  "cannot open /nonexistent/agent.ini: "
			  "No such file or directory");
	}
	config_diags_free(&d);

	c = config_load(tmpdir, &d); /* a directory */
	CHECK(c == NULL);
	CHECK_INT(d.n, 1);
	if (d.n)
		CHECK(strstr(d.items[0].text, "Is a directory") != NULL);
	config_diags_free(&d);
	CHECK(config_load("/nonexistent/agent.ini", NULL) == NULL);
}

static void test_load_file_nul(void)
{
	char path[300];
	struct config_diags d;
	FILE *f;

	snprintf(path, sizeof(path), "%s/nul.ini", tmpdir);
	f = fopen(path, "w");
	fwrite("[agent]\nname = a\0b\n", 1, 19, f);
	fclose(f);
	CHECK(config_load(path, &d) == NULL);
	CHECK_INT(d.n, 1);
	if (d.n) {
		CHECK_INT(d.items[0].line, 2);
		CHECK(strstr(d.items[0].text, "NUL byte") != NULL);
	}
	config_diags_free(&d);
}

/* The shipped sample: no unknown keys, and valid once a token exists. */
static void test_sample_file(void)
{
	FILE *f = fopen("etc/pipeops-agent.ini", "r");
	struct config_diags d;
	struct config *c;
	char *text, *at;
	size_t n;

	if (!f) {
		fprintf(stderr, "  (etc/pipeops-agent.ini not found; run "
				"from the repository root)\n");
		CHECK(f != NULL);
		return;
	}
	text = calloc(1, 256 * 1024);
	n = fread(text, 1, 256 * 1024 - 1, f);
	fclose(f);
	text[n] = '\0';
	c = config_load_string(text, "sample", &d);
	/* Only the token file of the example is missing on this machine. */
	for (size_t i = 0; i < d.n; i++) {
		if (strstr(d.items[i].text, "[control_plane] token_file:"))
			continue;
		fprintf(stderr, "  sample: line %d: %s\n", d.items[i].line,
			d.items[i].text);
		CHECK(0);
	}
	config_unref(c);
	config_diags_free(&d);

	/* Point token_file at a real file: the sample then loads clean. */
	at = strstr(text, "token_file = /etc/pipeops/token");
	CHECK(at != NULL);
	if (at) {
		const char *tok = write_tmp("sample-token", "tok\n");
		size_t len = strlen("token_file = /etc/pipeops/token");
		char *t2 = malloc(n + 512);

		snprintf(t2, n + 512, "%.*stoken_file = %s%s", (int)(at - text),
			 text, tok, at + len);
		c = config_load_string(t2, "sample", &d);
		CHECK(c != NULL);
		CHECK_INT(d.n, 0);
		if (d.n)
			dump_diags(&d);
		if (c) {
			CHECK_STR(c->control_plane.token, "tok");
			CHECK_INT(c->workers, 4);
			CHECK_INT(c->control_plane.ping_timeout_ms, 40000);
		}
		config_unref(c);
		config_diags_free(&d);
		free(t2);
	}
	free(text);
}

static void test_ref_unref(void)
{
	struct config *c = config_load_string(BASE, "r", NULL);

	CHECK(c != NULL);
	if (!c)
		return;
	CHECK(config_ref(c) == c);
	CHECK(config_ref(c) == c);
	config_unref(c);
	config_unref(c);
	CHECK_STR(c->cluster_name, "prod-eu"); /* one reference left */
	config_unref(c);
	config_unref(NULL);
	CHECK(config_ref(NULL) == NULL);
	config_diags_free(NULL);
}

static void test_diag_format(void)
{
	struct config_diag e = {12, true, "[control_plane] x: bad"};
	struct config_diag w = {3, false, "[agent] y: unknown key"};
	struct config_diag z = {0, true, "[agent] cluster_name is required"};
	char buf[128];

	CHECK_STR(config_diag_format(&e, buf, sizeof(buf)),
		  "line 12: [control_plane] x: bad");
	CHECK_STR(config_diag_format(&w, buf, sizeof(buf)),
		  "line 3: warning: [agent] y: unknown key");
	CHECK_STR(config_diag_format(&z, buf, sizeof(buf)),
		  "[agent] cluster_name is required");
	CHECK_STR(config_diag_format(&e, buf, 8), "line 12");
}

static void test_same_link(void)
{
	struct config *a = config_load_string(BASE, "a", NULL);
	struct config *b = config_load_string(
	    BASE "ping_interval = 5s\nconnect_timeout = 1s\n", "b", NULL);
	struct config *c =
	    config_load_string(BASE "insecure_skip_verify = 1\n", "c", NULL);
	struct config *e = config_load_string(
	    "[agent]\ncluster_name = x\n[control_plane]\n"
	    "endpoint = wss://cp.example.com/agent\ntoken = other\n",
	    "e", NULL);

	CHECK(a && b && c && e);
	if (a && b && c && e) {
		CHECK(config_endpoint_same_link(&a->control_plane,
						&a->control_plane));
		CHECK(config_endpoint_same_link(&a->control_plane,
						&b->control_plane));
		CHECK(!config_endpoint_same_link(&a->control_plane,
						 &c->control_plane));
		CHECK(!config_endpoint_same_link(&a->control_plane,
						 &e->control_plane));
		CHECK(
		    !config_endpoint_same_link(&a->control_plane, &a->runner));
		CHECK(config_endpoint_same_link(&a->runner, &e->runner));
	}
	config_unref(a);
	config_unref(b);
	config_unref(c);
	config_unref(e);
}

static void test_setup(void)
{
	CHECK(mkdtemp(tmpdir) != NULL);
}

static void test_teardown(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	CHECK_INT(system(cmd), 0);
}

static const struct check_case check_cases[] = {
    CHECK_CASE(test_setup),
    CHECK_CASE(test_parse_duration),
    CHECK_CASE(test_parse_size),
    CHECK_CASE(test_parse_bool),
    CHECK_CASE(test_defaults),
    CHECK_CASE(test_all_keys),
    CHECK_CASE(test_snippets),
    CHECK_CASE(test_quoted_strings),
    CHECK_CASE(test_all_errors_reported),
    CHECK_CASE(test_key_outside_section),
    CHECK_CASE(test_long_line),
    CHECK_CASE(test_bom_crlf),
    CHECK_CASE(test_ping_timeout_default),
    CHECK_CASE(test_token_file),
    CHECK_CASE(test_token_file_permissions_warned),
    CHECK_CASE(test_tls_pair_must_be_complete),
    CHECK_CASE(test_in_cluster),
    CHECK_CASE(test_load_file),
    CHECK_CASE(test_load_file_nul),
    CHECK_CASE(test_sample_file),
    CHECK_CASE(test_ref_unref),
    CHECK_CASE(test_diag_format),
    CHECK_CASE(test_same_link),
    CHECK_CASE(test_teardown),
};

CHECK_MAIN()
