/*
 * check.h: the smallest test harness that does the job.
 *
 * A test file defines `static void test_x(void)` functions and lists them in
 * `static const struct check_case check_cases[]` with CHECK_CASE(test_x), then
 * ends with CHECK_MAIN(). Each case passes when none of its CHECK*s fail.
 * The program prints one line per case and closes with "N passed, N failed";
 * the exit status is non-zero when anything failed.
 */
#ifndef PIPEOPS_TESTS_CHECK_H
#define PIPEOPS_TESTS_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct check_case {
	const char *name;
	void (*fn)(void);
};

static int check_failures_in_case;

#define CHECK_CASE(fn)                                                         \
	{                                                                      \
#fn, fn                                                        \
	}

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			check_failures_in_case++;                              \
			fprintf(stderr, "  %s:%d: CHECK(%s) failed\n",         \
				__FILE__, __LINE__, #cond);                    \
		}                                                              \
	} while (0)

#define CHECK_INT(a, b)                                                        \
	do {                                                                   \
		long long check_a_ = (long long)(a);                           \
		long long check_b_ = (long long)(b);                           \
		if (check_a_ != check_b_) {                                    \
			check_failures_in_case++;                              \
			fprintf(stderr,                                        \
				"  %s:%d: %s == %lld, expected %lld\n",        \
				__FILE__, __LINE__, #a, check_a_, check_b_);   \
		}                                                              \
	} while (0)

#define CHECK_STR(a, b)                                                        \
	do {                                                                   \
		const char *check_a_ = (a);                                    \
		const char *check_b_ = (b);                                    \
		if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_)) {    \
			check_failures_in_case++;                              \
			fprintf(stderr,                                        \
				"  %s:%d: %s == \"%s\", expected \"%s\"\n",    \
				__FILE__, __LINE__, #a,                        \
				check_a_ ? check_a_ : "(null)",                \
				check_b_ ? check_b_ : "(null)");               \
		}                                                              \
	} while (0)

#define CHECK_MAIN()                                                           \
	int main(void)                                                         \
	{                                                                      \
		int passed = 0, failed = 0;                                    \
		size_t n = sizeof(check_cases) / sizeof(check_cases[0]);       \
		for (size_t i = 0; i < n; i++) {                               \
			check_failures_in_case = 0;                            \
			check_cases[i].fn();                                   \
			if (check_failures_in_case) {                          \
				failed++;                                      \
				printf("FAIL %s\n", check_cases[i].name);      \
			} else {                                               \
				passed++;                                      \
				printf("ok   %s\n", check_cases[i].name);      \
			}                                                      \
			fflush(stdout);                                        \
		}                                                              \
		printf("%d passed, %d failed\n", passed, failed);              \
		return failed ? 1 : 0;                                         \
	}

#endif
