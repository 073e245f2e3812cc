/*
 * test_proxy: NO_PROXY matching and the choice of proxy from the
 * environment (common/proxy.c), table-driven.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/proxy.h"
#include "tests/unit/check.h"

static void test_no_proxy_table(void)
{
	static const struct {
		const char *list, *host;
		unsigned port;
		bool match;
	} t[] = {
	    {NULL, "example.com", 443, false},
	    {"", "example.com", 443, false},
	    {"*", "anything.example", 443, true},
	    {"example.com", "example.com", 443, true},
	    {"example.com", "EXAMPLE.com", 443, true},
	    {"example.com", "cp.example.com", 443, true},
	    {"example.com", "badexample.com", 443, false},
	    {".example.com", "example.com", 443, true},
	    {".example.com", "a.b.example.com", 443, true},
	    {"example.com.", "cp.example.com.", 443, true},
	    {"cp.example.com", "example.com", 443, false},
	    {"a.com, b.com ,c.com", "x.c.com", 443, true},
	    {"a.com b.com\tc.com", "b.com", 443, true},
	    {",,a.com,,", "a.com", 443, true},
	    {"example.com:8443", "example.com", 8443, true},
	    {"example.com:8443", "example.com", 443, false},
	    {"example.com:x", "example.com", 443, false},
	    {"localhost", "127.0.0.1", 443, false},
	    {"127.0.0.1", "127.0.0.1", 80, true},
	    {"127.0.0.1", "127.0.0.2", 80, false},
	    {"127.0.0.1:80", "127.0.0.1", 80, true},
	    {"127.0.0.1:80", "127.0.0.1", 81, false},
	    {"10.0.0.0/8", "10.200.3.4", 443, true},
	    {"10.0.0.0/8", "11.0.0.1", 443, false},
	    {"10.0.0.0/8", "ten.example", 443, false},
	    {"192.168.1.128/25", "192.168.1.200", 443, true},
	    {"192.168.1.128/25", "192.168.1.100", 443, false},
	    {"0.0.0.0/0", "8.8.8.8", 443, true},
	    {"10.0.0.0/33", "10.0.0.1", 443, false},
	    {"::1", "::1", 443, true},
	    {"::1", "::2", 443, false},
	    {"[::1]", "::1", 443, true},
	    {"[::1]:8080", "::1", 8080, true},
	    {"[::1]:8080", "::1", 8081, false},
	    {"fd00::/8", "fd12::5", 443, true},
	    {"fd00::/8", "fe80::1", 443, false},
	    {"fd00::/8", "10.0.0.1", 443, false},
	    {"[::1", "::1", 443, false},
	    {"[::1]:x", "::1", 443, false},
	    {"[::1]x", "::1", 443, false},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		bool got = proxy_no_proxy_match(t[i].list, t[i].host,
						(uint16_t)t[i].port);

		if (got != t[i].match)
			fprintf(stderr, "  case %zu: \"%s\" vs %s:%u\n", i,
				t[i].list ? t[i].list : "(null)", t[i].host,
				t[i].port);
		CHECK_INT(got, t[i].match);
	}
}

static void clear_env(void)
{
	static const char *const vars[] = {"http_proxy",  "HTTP_PROXY",
					   "https_proxy", "HTTPS_PROXY",
					   "no_proxy",	  "NO_PROXY"};

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
}

static void test_from_env(void)
{
	const char *src = "x";

	clear_env();
	CHECK(proxy_from_env(true, "cp.example", 443, &src) == NULL);
	CHECK(src == NULL);

	setenv("HTTPS_PROXY", "http://upper:3128", 1);
	CHECK_STR(proxy_from_env(true, "cp.example", 443, &src),
		  "http://upper:3128");
	CHECK_STR(src, "HTTPS_PROXY");
	/* ws:// uses http_proxy, not HTTPS_PROXY */
	CHECK(proxy_from_env(false, "cp.example", 80, &src) == NULL);

	setenv("https_proxy", "http://lower:3128", 1);
	CHECK_STR(proxy_from_env(true, "cp.example", 443, &src),
		  "http://lower:3128");
	CHECK_STR(src, "https_proxy");
	setenv("https_proxy", "", 1); /* empty counts as unset */
	CHECK_STR(proxy_from_env(true, "cp.example", 443, &src),
		  "http://upper:3128");

	setenv("HTTP_PROXY", "http://plain:8080", 1);
	CHECK_STR(proxy_from_env(false, "cp.example", 80, &src),
		  "http://plain:8080");
	CHECK_STR(src, "HTTP_PROXY");

	setenv("NO_PROXY", "example", 1);
	CHECK(proxy_from_env(true, "cp.example", 443, &src) == NULL);
	CHECK_STR(src, "NO_PROXY");
	CHECK(proxy_from_env(true, "cp.other", 443, &src) != NULL);
	setenv("no_proxy", "other", 1); /* lower case wins */
	CHECK(proxy_from_env(true, "cp.example", 443, &src) != NULL);
	CHECK(proxy_from_env(true, "cp.other", 443, &src) == NULL);
	CHECK_STR(src, "no_proxy");
	clear_env();
}

static const struct check_case check_cases[] = {
    CHECK_CASE(test_no_proxy_table),
    CHECK_CASE(test_from_env),
};

CHECK_MAIN()
