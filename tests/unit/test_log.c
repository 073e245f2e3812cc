/* Unit tests for the log module: line format, levels, the limiter. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/log.h"
#include "tests/unit/check.h"

static char path[] = "/tmp/pipeops-test-log-XXXXXX";

static char *slurp(void)
{
	static char buf[8192];
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;

	if (f)
		fclose(f);
	buf[n] = '\0';
	return buf;
}

static void test_line_format_and_levels(void)
{
	int fd = mkstemp(path);
	char *text;

	CHECK(fd >= 0);
	close(fd);
	CHECK_INT(log_open(LOG_DEST_FILE, path), 0);
	log_set_thread_name("tester");
	log_set_level(LOG_LVL_INFO);
	LOG_INFO("linked \"up\"", "endpoint=%s rtt_ms=%d", "runner", 7);
	LOG_DEBUG("hidden", "x=%d", 1);
	LOG_WARN("no fields", "");
	LOG_WARN("peer\nmsg", "type=%s", "x\nts=0 level=error msg=\"FORGED\"");
	text = slurp();
	CHECK(strstr(text, "level=info thread=tester msg=\"linked \\\"up\\\"\" "
			   "endpoint=runner rtt_ms=7\n") != NULL);
	CHECK(strstr(text, "hidden") == NULL);
	CHECK(strstr(text, "level=warn thread=tester msg=\"no fields\"\n") !=
	      NULL);
	CHECK(strncmp(text, "ts=", 3) == 0);
	/* peer text cannot start a line of its own */
	CHECK(strstr(text, "\nts=0") == NULL);
	CHECK(strstr(text,
		     "msg=\"peer msg\" "
		     "type=\"x?ts=0 level=error msg=\\\"FORGED\\\"\"\n") !=
	      NULL);
	CHECK(log_enabled(LOG_LVL_WARN));
	CHECK(!log_enabled(LOG_LVL_DEBUG));
	CHECK_INT(log_parse_level("debug"), LOG_LVL_DEBUG);
	CHECK_INT(log_parse_level("loud"), -1);
	log_open(LOG_DEST_STDERR, NULL);
	unlink(path);
}

static void test_fields_cannot_add_fields(void)
{
	int fd;
	char *text;

	memcpy(path + strlen(path) - 6, "XXXXXX", 6);
	fd = mkstemp(path);
	CHECK(fd >= 0);
	close(fd);
	CHECK_INT(log_open(LOG_DEST_FILE, path), 0);
	log_set_level(LOG_LVL_INFO);
	LOG_INFO("op",
		 "request_id=%s error=\"%s\" n=%d z=%zu ll=%lld u=%u "
		 "x=%.3s pct=100%%",
		 "evil level=error agent_id=root", "say \"hi\" \\o/", -7,
		 (size_t)42, -1234567890123LL, 7u, "abcdef");
	LOG_INFO("plain", "id=%s empty=%s", "ok-1", "");
	text = slurp();
	CHECK(strstr(text, "request_id=\"evil level=error agent_id=root\" "
			   "error=\"say \\\"hi\\\" \\\\o/\" n=-7 z=42 "
			   "ll=-1234567890123 u=7 x=abc pct=100%\n") != NULL);
	CHECK(strstr(text, "id=ok-1 empty=\"\"\n") != NULL);
	log_open(LOG_DEST_STDERR, NULL);
	unlink(path);
}

static void test_limit_holds_repeats(void)
{
	struct log_limit l = {0};
	unsigned held = 99;

	CHECK(log_limit_pass(&l, "refused", 60000, &held));
	CHECK_INT(held, 0);
	CHECK(!log_limit_pass(&l, "refused", 60000, &held));
	CHECK(!log_limit_pass(&l, "refused", 60000, &held));
	/* a different text passes at once and reports what was held */
	CHECK(log_limit_pass(&l, "timeout", 60000, &held));
	CHECK_INT(held, 2);
	/* with a zero period every line passes */
	CHECK(log_limit_pass(&l, "timeout", 0, &held));
	CHECK_INT(held, 0);
}

static const struct check_case check_cases[] = {
    CHECK_CASE(test_line_format_and_levels),
    CHECK_CASE(test_fields_cannot_add_fields),
    CHECK_CASE(test_limit_holds_repeats),
};

CHECK_MAIN()
