/* Unit tests for the SPSC ring, including a two-thread stress run. */
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include "common/ring.h"
#include "tests/unit/check.h"

static void test_capacity_rounds_up(void)
{
	struct ring *r = ring_new(5, -1);

	CHECK(r != NULL);
	CHECK_INT(ring_capacity(r), 8);
	ring_free(r);
}

static void test_fifo_and_full(void)
{
	struct ring *r = ring_new(4, -1);
	uintptr_t i;

	for (i = 1; i <= 4; i++)
		CHECK(ring_push(r, (void *)i));
	CHECK(!ring_push(r, (void *)5));
	CHECK(ring_full(r));
	CHECK_INT(ring_depth(r), 4);
	CHECK_INT((uintptr_t)ring_peek(r), 1);
	for (i = 1; i <= 4; i++)
		CHECK_INT((uintptr_t)ring_pop(r), i);
	CHECK(ring_pop(r) == NULL);
	CHECK_INT(ring_depth(r), 0);
	/* wrap around many times */
	for (i = 1; i <= 1000; i++) {
		CHECK(ring_push(r, (void *)i));
		CHECK_INT((uintptr_t)ring_pop(r), i);
	}
	ring_free(r);
}

static void test_wakefd_signalled_on_push(void)
{
	int fd = wakefd_new();
	struct ring *r = ring_new(2, fd);
	struct pollfd p = {.fd = fd, .events = POLLIN};

	CHECK_INT(poll(&p, 1, 0), 0);
	CHECK(ring_push(r, (void *)1));
	CHECK_INT(poll(&p, 1, 0), 1);
	wakefd_drain(fd);
	CHECK_INT(poll(&p, 1, 0), 0);
	ring_free(r);
	close(fd);
}

#define STRESS_ITEMS 4000000u

struct stress {
	struct ring *r;
	int wake_fd;  /* consumer's */
	int space_fd; /* producer's: consumer signals after draining */
};

static void *stress_producer(void *arg)
{
	struct stress *s = arg;
	struct pollfd p = {.fd = s->space_fd, .events = POLLIN};

	for (uintptr_t i = 1; i <= STRESS_ITEMS; i++) {
		while (!ring_push(s->r, (void *)i)) {
			wakefd_drain(s->space_fd);
			if (ring_full(s->r))
				poll(&p, 1, 10);
		}
	}
	return NULL;
}

static void test_two_thread_stress(void)
{
	struct stress s;
	pthread_t th;
	uintptr_t expect = 1, popped = 0;
	struct pollfd p;
	bool in_order = true;

	s.wake_fd = wakefd_new();
	s.space_fd = wakefd_new();
	s.r = ring_new(1024, s.wake_fd);
	p.fd = s.wake_fd;
	p.events = POLLIN;
	CHECK_INT(pthread_create(&th, NULL, stress_producer, &s), 0);
	while (popped < STRESS_ITEMS) {
		void *item;
		size_t got = 0;

		poll(&p, 1, 1000);
		wakefd_drain(s.wake_fd);
		while ((item = ring_pop(s.r)) != NULL) {
			if ((uintptr_t)item != expect)
				in_order = false;
			expect = (uintptr_t)item + 1;
			popped++;
			got++;
		}
		if (got)
			wakefd_signal(s.space_fd);
	}
	pthread_join(th, NULL);
	CHECK(in_order);
	CHECK_INT(popped, STRESS_ITEMS);
	CHECK(ring_pop(s.r) == NULL);
	ring_free(s.r);
	close(s.wake_fd);
	close(s.space_fd);
}

static const struct check_case check_cases[] = {
    CHECK_CASE(test_capacity_rounds_up),
    CHECK_CASE(test_fifo_and_full),
    CHECK_CASE(test_wakefd_signalled_on_push),
    CHECK_CASE(test_two_thread_stress),
};

CHECK_MAIN()
