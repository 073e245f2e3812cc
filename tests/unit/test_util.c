/* Unit tests for common/util.c: UTF-8 sequences, small file reads. */
#include <stdio.h>
#include <unistd.h>

#include "common/util.h"
#include "tests/unit/check.h"

static void test_utf8_seq_len(void)
{
	static const struct {
		const char *bytes;
		size_t len;
		int want;
	} cases[] = {
	    {"a", 1, 1},
	    {"\xc3\xa9", 2, 2},		/* é */
	    {"\xe2\x82\xac", 3, 3},	/* € */
	    {"\xf0\x9f\x98\x80", 4, 4}, /* emoji */
	    {"\xc3", 1, -1},		/* cut short */
	    {"\xe2\x82", 2, -1},	/* cut short */
	    {"\xc0\xaf", 2, 0},		/* overlong '/' */
	    {"\xe0\x80\xaf", 3, 0},	/* overlong */
	    {"\xed\xa0\x80", 3, 0},	/* surrogate */
	    {"\xf4\x90\x80\x80", 4, 0}, /* above U+10FFFF */
	    {"\xff", 1, 0},		/* never valid */
	    {"\x80", 1, 0},		/* lone continuation */
	    {"\xc3\x28", 2, 0},		/* bad continuation */
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int got = utf8_seq_len((const unsigned char *)cases[i].bytes,
				       cases[i].len);

		if (got != cases[i].want)
			fprintf(stderr, "  case %zu\n", i);
		CHECK_INT(got, cases[i].want);
	}
}

static void test_file_read_trimmed(void)
{
	char path[] = "/tmp/pipeops-util-XXXXXX";
	int fd = mkstemp(path);
	char *s;

	CHECK(fd >= 0);
	CHECK(write(fd, "  tok3n\r\n\n", 10) == 10);
	close(fd);
	s = file_read_trimmed(path, 64);
	CHECK_STR(s, "tok3n");
	free(s);
	s = file_read_trimmed(path, 4); /* larger than allowed */
	CHECK(s == NULL);
	unlink(path);
	CHECK(file_read_trimmed(path, 64) == NULL);
}

static const struct check_case check_cases[] = {
    CHECK_CASE(test_utf8_seq_len),
    CHECK_CASE(test_file_read_trimmed),
};

CHECK_MAIN()
