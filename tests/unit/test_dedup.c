/* Unit tests for the request-id dedup table (agent/dedup.c). */
#include <pthread.h>
#include <stdio.h>

#include "agent/dedup.h"
#include "tests/unit/check.h"

static void test_new_running_done(void)
{
	struct dedup *d = dedup_new(4, 1 << 20);
	char *reply = NULL;
	size_t len = 0;

	CHECK_INT(dedup_check(d, "a", &reply, &len), DEDUP_NEW);
	CHECK_INT(dedup_check(d, "a", &reply, &len), DEDUP_RUNNING);
	dedup_complete(d, "a", "{\"r\":1}", 7);
	CHECK_INT(dedup_check(d, "a", &reply, &len), DEDUP_DONE);
	CHECK_STR(reply, "{\"r\":1}");
	CHECK_INT(len, 7);
	free(reply);
	/* a second complete does not replace the stored reply */
	dedup_complete(d, "a", "{\"r\":2}", 7);
	CHECK_INT(dedup_check(d, "a", &reply, &len), DEDUP_DONE);
	CHECK_STR(reply, "{\"r\":1}");
	free(reply);
	dedup_free(d);
}

static void test_window_evicts_oldest(void)
{
	struct dedup *d = dedup_new(3, 1 << 20);
	char *reply = NULL;
	size_t len;
	char id[8];

	for (int i = 0; i < 3; i++) {
		snprintf(id, sizeof(id), "id%d", i);
		CHECK_INT(dedup_check(d, id, &reply, &len), DEDUP_NEW);
		dedup_complete(d, id, "x", 1);
	}
	CHECK_INT(dedup_size(d), 3);
	CHECK_INT(dedup_check(d, "id3", &reply, &len), DEDUP_NEW);
	CHECK_INT(dedup_size(d), 3);
	/* id0 fell out of the window: new again */
	CHECK_INT(dedup_check(d, "id0", &reply, &len), DEDUP_NEW);
	/* id2 is still remembered */
	CHECK_INT(dedup_check(d, "id2", &reply, &len), DEDUP_DONE);
	free(reply);
	dedup_free(d);
}

static void test_byte_budget_forgets_old_replies(void)
{
	struct dedup *d = dedup_new(8, 10);
	char *reply = NULL;
	size_t len;

	CHECK_INT(dedup_check(d, "a", &reply, &len), DEDUP_NEW);
	dedup_complete(d, "a", "123456", 6);
	CHECK_INT(dedup_check(d, "b", &reply, &len), DEDUP_NEW);
	dedup_complete(d, "b", "abcdef", 6);
	/* a's reply was forgotten to stay under 10 bytes: runs again */
	CHECK_INT(dedup_check(d, "a", &reply, &len), DEDUP_NEW);
	CHECK_INT(dedup_check(d, "b", &reply, &len), DEDUP_DONE);
	CHECK_STR(reply, "abcdef");
	free(reply);
	/* a reply larger than the budget is never stored */
	CHECK_INT(dedup_check(d, "c", &reply, &len), DEDUP_NEW);
	dedup_complete(d, "c", "0123456789abc", 13);
	CHECK_INT(dedup_check(d, "c", &reply, &len), DEDUP_NEW);
	dedup_free(d);
}

static void test_many_ids_collide_safely(void)
{
	struct dedup *d = dedup_new(64, 1 << 20);
	char id[16], *reply = NULL;
	size_t len;
	int fresh = 0;

	for (int round = 0; round < 3; round++)
		for (int i = 0; i < 1000; i++) {
			snprintf(id, sizeof(id), "r%d", i);
			if (dedup_check(d, id, &reply, &len) == DEDUP_NEW) {
				fresh++;
				dedup_complete(d, id, id, strlen(id));
			} else {
				free(reply);
			}
		}
	CHECK_INT(fresh, 3000); /* window 64 < 1000: each round is new */
	CHECK_INT(dedup_size(d), 64);
	dedup_free(d);
}

static void test_clear_forgets_everything(void)
{
	struct dedup *d = dedup_new(4, 1 << 20);
	char *reply = NULL;
	size_t len;

	CHECK_INT(dedup_check(d, "a", &reply, &len), DEDUP_NEW);
	dedup_complete(d, "a", "x", 1);
	CHECK_INT(dedup_check(d, "b", &reply, &len), DEDUP_NEW);
	dedup_clear(d);
	CHECK_INT(dedup_size(d), 0);
	CHECK_INT(dedup_check(d, "a", &reply, &len), DEDUP_NEW);
	CHECK_INT(dedup_check(d, "b", &reply, &len), DEDUP_NEW);
	dedup_free(d);
}

static void test_forget_one(void)
{
	struct dedup *d = dedup_new(4, 1 << 20);
	char *reply = NULL;
	size_t len;

	CHECK_INT(dedup_check(d, "read", &reply, &len), DEDUP_NEW);
	CHECK_INT(dedup_check(d, "write", &reply, &len), DEDUP_NEW);
	dedup_complete(d, "write", "w", 1);
	dedup_forget(d, "read");
	CHECK_INT(dedup_size(d), 1);
	CHECK_INT(dedup_check(d, "read", &reply, &len), DEDUP_NEW);
	CHECK_INT(dedup_check(d, "write", &reply, &len), DEDUP_DONE);
	free(reply);
	dedup_forget(d, "unknown"); /* harmless */
	dedup_free(d);
}

static const struct check_case check_cases[] = {
    CHECK_CASE(test_forget_one),
    CHECK_CASE(test_clear_forgets_everything),
    CHECK_CASE(test_new_running_done),
    CHECK_CASE(test_window_evicts_oldest),
    CHECK_CASE(test_byte_budget_forgets_old_replies),
    CHECK_CASE(test_many_ids_collide_safely),
};

CHECK_MAIN()
