/* test_url: table-driven cases for url_parse_ws() and is_ip_literal(). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/url.h"
#include "common/util.h"
#include "tests/unit/check.h"

#define DEF "/api/v1/agent/ws"

struct url_case {
	const char *in;
	int ret;
	bool tls;
	const char *host;
	int port;
	const char *path;
	const char *query; /* NULL: none */
	const char *target;
	const char *host_header;
	const char *err_has; /* for failures */
};

/* clang-format off */
static const struct url_case cases[] = {
	/* scheme mapping */
	{ "http://cp.example", 0, false, "cp.example", 80, DEF, NULL, DEF,
	  "cp.example", NULL },
	{ "https://cp.example", 0, true, "cp.example", 443, DEF, NULL, DEF,
	  "cp.example", NULL },
	{ "ws://cp.example/", 0, false, "cp.example", 80, DEF, NULL, DEF,
	  "cp.example", NULL },
	{ "wss://cp.example/", 0, true, "cp.example", 443, DEF, NULL, DEF,
	  "cp.example", NULL },
	{ "HTTPS://CP.example", 0, true, "CP.example", 443, DEF, NULL, DEF,
	  "CP.example", NULL },
	/* explicit path kept, query kept, fragment dropped */
	{ "wss://r1.example/custom/ws", 0, true, "r1.example", 443,
	  "/custom/ws", NULL, "/custom/ws", "r1.example", NULL },
	{ "wss://r1.example/?token=x&y=1", 0, true, "r1.example", 443, DEF,
	  "token=x&y=1", DEF "?token=x&y=1", "r1.example", NULL },
	{ "ws://h?q", 0, false, "h", 80, DEF, "q", DEF "?q", "h", NULL },
	{ "ws://h/p?", 0, false, "h", 80, "/p", "", "/p?", "h", NULL },
	{ "ws://h/p#frag", 0, false, "h", 80, "/p", NULL, "/p", "h", NULL },
	/* ports */
	{ "wss://cp.example:8443/x", 0, true, "cp.example", 8443, "/x", NULL,
	  "/x", "cp.example:8443", NULL },
	{ "ws://cp.example:443", 0, false, "cp.example", 443, DEF, NULL, DEF,
	  "cp.example:443", NULL },
	{ "wss://cp.example:443", 0, true, "cp.example", 443, DEF, NULL, DEF,
	  "cp.example", NULL },
	{ "ws://127.0.0.1:65535", 0, false, "127.0.0.1", 65535, DEF, NULL,
	  DEF, "127.0.0.1:65535", NULL },
	/* IPv6 */
	{ "ws://[::1]:8080/ws", 0, false, "::1", 8080, "/ws", NULL, "/ws",
	  "[::1]:8080", NULL },
	{ "wss://[2001:db8::5]", 0, true, "2001:db8::5", 443, DEF, NULL, DEF,
	  "[2001:db8::5]", NULL },
	/* errors */
	{ "ftp://cp.example", -EINVAL, false, NULL, 0, NULL, NULL, NULL, NULL,
	  "\"ftp\"" },
	{ "grpc://x", -EINVAL, false, NULL, 0, NULL, NULL, NULL, NULL,
	  "unsupported URL scheme \"grpc\"" },
	{ "cp.example/ws", -EINVAL, false, NULL, 0, NULL, NULL, NULL, NULL,
	  "no scheme" },
	{ "", -EINVAL, false, NULL, 0, NULL, NULL, NULL, NULL, "empty" },
	{ "wss://", -EINVAL, false, NULL, 0, NULL, NULL, NULL, NULL,
	  "no host" },
	{ "wss:///path", -EINVAL, false, NULL, 0, NULL, NULL, NULL, NULL,
	  "no host" },
	{ "wss://:443/", -EINVAL, false, NULL, 0, NULL, NULL, NULL, NULL,
	  "no host" },
	{ "ws://h:0", -EINVAL, false, NULL, 0, NULL, NULL, NULL, NULL,
	  "port" },
	{ "ws://h:65536", -EINVAL, false, NULL, 0, NULL, NULL, NULL, NULL,
	  "port" },
	{ "ws://h:", -EINVAL, false, NULL, 0, NULL, NULL, NULL, NULL,
	  "port" },
	{ "ws://h:8x", -EINVAL, false, NULL, 0, NULL, NULL, NULL, NULL,
	  "port" },
	{ "ws://[::1", -EINVAL, false, NULL, 0, NULL, NULL, NULL, NULL,
	  "unclosed" },
	{ "ws://[nothex]:1", -EINVAL, false, NULL, 0, NULL, NULL, NULL, NULL,
	  "IPv6" },
	{ "ws://user:pw@h/", -EINVAL, false, NULL, 0, NULL, NULL, NULL, NULL,
	  "user info" },
	{ "ws://h /x", -EINVAL, false, NULL, 0, NULL, NULL, NULL, NULL,
	  "space" },
};
/* clang-format on */

static void test_table(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const struct url_case *c = &cases[i];
		struct ws_url u;
		char err[256] = "";
		int fails = check_failures_in_case;
		int ret = url_parse_ws(c->in, DEF, &u, err, sizeof(err));

		CHECK_INT(ret, c->ret);
		if (ret == 0 && c->ret == 0) {
			CHECK_INT(u.tls, c->tls);
			CHECK_STR(u.host, c->host);
			CHECK_INT(u.port, c->port);
			CHECK_STR(u.path, c->path);
			if (c->query)
				CHECK_STR(u.query, c->query);
			else
				CHECK(u.query == NULL);
			CHECK_STR(u.target, c->target);
			CHECK_STR(u.host_header, c->host_header);
		} else if (ret != 0) {
			CHECK(strstr(err, c->err_has) != NULL);
			CHECK(u.host == NULL && u.path == NULL);
		}
		if (check_failures_in_case != fails)
			fprintf(stderr, "  ^ case \"%s\": err=%s\n", c->in,
				err);
		url_free(&u);
	}
}

static void test_default_path_null(void)
{
	struct ws_url u;
	char err[64];

	CHECK_INT(url_parse_ws("ws://h", NULL, &u, err, sizeof(err)), 0);
	CHECK_STR(u.path, "/");
	url_free(&u);
	CHECK_INT(
	    url_parse_ws("ws://h", "/api/v1/runner/ws", &u, err, sizeof(err)),
	    0);
	CHECK_STR(u.path, "/api/v1/runner/ws");
	url_free(&u);
	url_free(NULL);
}

static void test_ip_literal(void)
{
	CHECK(is_ip_literal("127.0.0.1"));
	CHECK(is_ip_literal("::1"));
	CHECK(is_ip_literal("2001:db8::5"));
	CHECK(!is_ip_literal("localhost"));
	CHECK(!is_ip_literal("10.0.0.1.example"));
	CHECK(!is_ip_literal("[::1]"));
	CHECK(!is_ip_literal(""));
	CHECK(!is_ip_literal(NULL));
}

static const struct check_case check_cases[] = {
    CHECK_CASE(test_table),
    CHECK_CASE(test_default_path_null),
    CHECK_CASE(test_ip_literal),
};

CHECK_MAIN()
