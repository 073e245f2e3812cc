/*
 * ring: bounded lock-free single-producer single-consumer queue of pointers.
 *
 * DESIGN
 * Exactly one producer thread and one consumer thread for the ring's whole
 * life. Indices run free (size_t wraps) and are masked on use; capacity is
 * a power of two. Each side loads its own index relaxed and the other
 * side's index with acquire only when its cached copy says full or empty;
 * it publishes its own index with release after writing or reading the
 * slot. head/tail and the caches sit on separate 64-byte lines.
 *
 * Wake-ups: a ring may name the consumer's eventfd. ring_push() writes it
 * after publishing; the consumer reads (resets) the eventfd, then drains.
 * A push the drain missed is followed by a write after the read, so the
 * next poll() returns at once: no wake-up is lost.
 *
 * Pushing transfers ownership of the item to the consumer.
 */
#ifndef PIPEOPS_COMMON_RING_H
#define PIPEOPS_COMMON_RING_H

#include <stdbool.h>
#include <stddef.h>

struct ring;

/* @capacity is rounded up to a power of two (>= 2). @wake_fd is the
 * consumer's eventfd, or -1. Returns a new ring or NULL. */
struct ring *ring_new(size_t capacity, int wake_fd);
void ring_free(struct ring *r); /* items left inside are not freed */

/* Producer only. False when full (the item stays with the caller). */
bool ring_push(struct ring *r, void *item);
/* Producer only: true when a push would fail now. */
bool ring_full(struct ring *r);

/* Consumer only. NULL when empty. */
void *ring_pop(struct ring *r);
/* Consumer only: the next item without removing it, or NULL. */
void *ring_peek(struct ring *r);

/* Either side: an approximate count, for metrics and load balancing. */
size_t ring_depth(const struct ring *r);
size_t ring_capacity(const struct ring *r);

/* Wake-fd helpers (eventfd): create, signal, and reset before draining. */
int wakefd_new(void);
void wakefd_signal(int fd);
void wakefd_drain(int fd);

#endif
