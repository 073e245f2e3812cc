/*
 * dedup: a FIFO of the last @window request ids with a chained hash index
 * (see dedup.h). Entries live in a circular array in arrival order; adding
 * to a full array evicts the oldest entry from its hash chain.
 */
#include "agent/dedup.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct entry {
	char *id;    /* NULL: slot unused */
	char *reply; /* NULL while running (or when forgotten) */
	size_t reply_len;
	bool done;
	struct entry *chain; /* next in the hash bucket */
};

struct dedup {
	pthread_mutex_t lock;
	struct entry *slots; /* [window], circular, oldest at next */
	size_t window, next, used;
	struct entry **buckets;
	size_t n_buckets;
	size_t max_bytes, bytes;
};

static uint64_t hash_id(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	return h;
}

struct dedup *dedup_new(size_t window, size_t max_bytes)
{
	struct dedup *d = xcalloc(1, sizeof(*d));

	if (window < 1)
		window = 1;
	pthread_mutex_init(&d->lock, NULL);
	d->window = window;
	d->slots = xcalloc(window, sizeof(*d->slots));
	d->n_buckets = 2 * window;
	d->buckets = xcalloc(d->n_buckets, sizeof(*d->buckets));
	d->max_bytes = max_bytes;
	return d;
}

static void drop_reply(struct dedup *d, struct entry *e)
{
	if (!e->reply)
		return;
	d->bytes -= e->reply_len;
	free(e->reply);
	e->reply = NULL;
	e->reply_len = 0;
}

void dedup_free(struct dedup *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->window; i++) {
		free(d->slots[i].id);
		free(d->slots[i].reply);
	}
	free(d->slots);
	free(d->buckets);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

static struct entry **find_link(struct dedup *d, const char *id)
{
	struct entry **link = &d->buckets[hash_id(id) % d->n_buckets];

	while (*link && strcmp((*link)->id, id))
		link = &(*link)->chain;
	return link;
}

static void evict(struct dedup *d, struct entry *e)
{
	struct entry **link = find_link(d, e->id);

	if (*link == e)
		*link = e->chain;
	drop_reply(d, e);
	free(e->id);
	memset(e, 0, sizeof(*e));
	d->used--;
}

enum dedup_verdict dedup_check(struct dedup *d, const char *id, char **reply,
			       size_t *len)
{
	enum dedup_verdict v = DEDUP_NEW;
	struct entry *e;

	pthread_mutex_lock(&d->lock);
	e = *find_link(d, id);
	if (e && !e->done) {
		v = DEDUP_RUNNING;
	} else if (e && e->reply) {
		*reply = xstrndup(e->reply, e->reply_len);
		*len = e->reply_len;
		v = DEDUP_DONE;
	} else if (e) {
		/* Done, but its reply was forgotten to bound memory: it
		 * runs again (reads are idempotent; the few large replies
		 * are reads). */
		evict(d, e);
		e = NULL;
	}
	if (v == DEDUP_NEW) {
		struct entry **link;

		e = &d->slots[d->next];
		if (e->id)
			evict(d, e);
		d->next = (d->next + 1) % d->window;
		e->id = xstrdup(id);
		link = &d->buckets[hash_id(id) % d->n_buckets];
		e->chain = *link;
		*link = e;
		d->used++;
	}
	pthread_mutex_unlock(&d->lock);
	return v;
}

void dedup_complete(struct dedup *d, const char *id, const char *text,
		    size_t len)
{
	struct entry *e;

	pthread_mutex_lock(&d->lock);
	e = *find_link(d, id);
	if (e && !e->done) {
		e->done = true;
		if (len <= d->max_bytes) {
			e->reply = xstrndup(text, len);
			e->reply_len = len;
			d->bytes += len;
		}
		/* Forget the oldest stored replies until under budget; the
		 * oldest slot is the one `next` will reuse. */
		for (size_t n = 0; d->bytes > d->max_bytes && n < d->window;
		     n++) {
			struct entry *o = &d->slots[(d->next + n) % d->window];

			if (o != e)
				drop_reply(d, o);
		}
	}
	pthread_mutex_unlock(&d->lock);
}

void dedup_forget(struct dedup *d, const char *id)
{
	struct entry *e;

	pthread_mutex_lock(&d->lock);
	e = *find_link(d, id);
	if (e)
		evict(d, e);
	pthread_mutex_unlock(&d->lock);
}

void dedup_clear(struct dedup *d)
{
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->window; i++)
		if (d->slots[i].id)
			evict(d, &d->slots[i]);
	d->next = 0;
	pthread_mutex_unlock(&d->lock);
}

size_t dedup_size(struct dedup *d)
{
	size_t n;

	pthread_mutex_lock(&d->lock);
	n = d->used;
	pthread_mutex_unlock(&d->lock);
	return n;
}
