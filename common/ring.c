/* ring: bounded lock-free SPSC queue (DESIGN in ring.h). */
#include "common/ring.h"

#include <assert.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/util.h"

#define CACHE_LINE 64

struct ring {
	/* consumer line */
	alignas(CACHE_LINE) atomic_size_t head; /* release: consumer */
	size_t tail_cache;			/* consumer only */
	/* producer line */
	alignas(CACHE_LINE) atomic_size_t tail; /* release: producer */
	size_t head_cache;			/* producer only */
	/* read-only after ring_new */
	alignas(CACHE_LINE) size_t mask;
	int wake_fd;
	void **slots;
};

static_assert(sizeof(struct ring) % CACHE_LINE == 0, "ring is line-sized");

struct ring *ring_new(size_t capacity, int wake_fd)
{
	struct ring *r;
	size_t cap = 2;

	while (cap < capacity)
		cap <<= 1;
	r = aligned_alloc(CACHE_LINE, sizeof(*r));
	if (!r)
		return NULL;
	memset(r, 0, sizeof(*r));
	atomic_init(&r->head, 0);
	atomic_init(&r->tail, 0);
	r->mask = cap - 1;
	r->wake_fd = wake_fd;
	r->slots = xcalloc(cap, sizeof(void *));
	return r;
}

void ring_free(struct ring *r)
{
	if (!r)
		return;
	free(r->slots);
	free(r);
}

bool ring_full(struct ring *r)
{
	size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);

	if (tail - r->head_cache <= r->mask)
		return false;
	r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
	return tail - r->head_cache > r->mask;
}

bool ring_push(struct ring *r, void *item)
{
	size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);

	assert(item);
	if (ring_full(r))
		return false;
	r->slots[tail & r->mask] = item;
	atomic_store_explicit(&r->tail, tail + 1, memory_order_release);
	if (r->wake_fd >= 0)
		wakefd_signal(r->wake_fd);
	return true;
}

void *ring_peek(struct ring *r)
{
	size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);

	if (head == r->tail_cache) {
		r->tail_cache =
		    atomic_load_explicit(&r->tail, memory_order_acquire);
		if (head == r->tail_cache)
			return NULL;
	}
	return r->slots[head & r->mask];
}

void *ring_pop(struct ring *r)
{
	size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
	void *item = ring_peek(r);

	if (!item)
		return NULL;
	r->slots[head & r->mask] = NULL;
	atomic_store_explicit(&r->head, head + 1, memory_order_release);
	return item;
}

size_t ring_depth(const struct ring *r)
{
	size_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
	size_t head = atomic_load_explicit(&r->head, memory_order_acquire);

	return tail - head <= r->mask + 1 ? tail - head : 0;
}

size_t ring_capacity(const struct ring *r)
{
	return r->mask + 1;
}

int wakefd_new(void)
{
	return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

void wakefd_signal(int fd)
{
	uint64_t one = 1;
	ssize_t n = write(fd, &one, sizeof(one));

	(void)n; /* EAGAIN only at counter overflow: already readable */
}

void wakefd_drain(int fd)
{
	uint64_t v;
	ssize_t n = read(fd, &v, sizeof(v));

	(void)n; /* EAGAIN: nothing was pending */
}
