/*
 * fuzz_frames: libFuzzer harness for the inbound side of a connection
 * (common/ws.c over wslay): the input bytes arrive from the server through
 * an in-memory transport (ws_internal.h), are decoded into frames and
 * messages, and every complete text message goes on through msg_decode()
 * as the agent's reader does.
 *
 * Input layout: the low 4 bits of byte 0 choose how the stream is cut
 * (0: whole, 1: one byte per read turn, else read sizes from a small PRNG
 * seeded with byte 0); its high 4 bits x 3 bytes of the stream arrive as
 * "leftover" (read together with the upgrade answer, fed to wslay first);
 * byte 1 chooses max_message_bytes (64 B .. 64 KiB); the rest is the
 * server's byte stream. Output (pongs, close replies) goes to a sink.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/msg.h"
#include "common/log.h"
#include "common/ws.h"
#include "common/ws_internal.h"

struct fz_tr {
	struct ws_transport base;
	const uint8_t *in;
	size_t in_len, in_off;
	uint32_t mode, rng;
	size_t turn_left; /* bytes this read turn may still deliver */
	size_t out_total;
};

static size_t next_chunk(struct fz_tr *f)
{
	if (f->mode == 0)
		return SIZE_MAX;
	if (f->mode == 1)
		return 1;
	f->rng = f->rng * 1103515245u + 12345u;
	return 1 + (f->rng >> 16) % 300;
}

static ssize_t fz_recv(struct ws_transport *t, void *buf, size_t len)
{
	struct fz_tr *f = (struct fz_tr *)t;
	size_t n = f->in_len - f->in_off;

	if (n == 0 || f->turn_left == 0) {
		t->want = POLLIN;
		return -EAGAIN;
	}
	if (n > f->turn_left)
		n = f->turn_left;
	if (n > len)
		n = len;
	memcpy(buf, f->in + f->in_off, n);
	f->in_off += n;
	f->turn_left -= n;
	return (ssize_t)n;
}

static ssize_t fz_send(struct ws_transport *t, const void *buf, size_t len,
		       bool more)
{
	struct fz_tr *f = (struct fz_tr *)t;

	(void)buf;
	(void)more;
	f->out_total += len;
	return (ssize_t)len;
}

static int fz_flush(struct ws_transport *t)
{
	(void)t;
	return 0;
}

static bool fz_pending(struct ws_transport *t)
{
	(void)t;
	return false;
}

static void fz_free(struct ws_transport *t)
{
	(void)t; /* on the harness's stack */
}

static const struct ws_transport_ops fz_ops = {
    .recv = fz_recv,
    .send = fz_send,
    .flush = fz_flush,
    .pending = fz_pending,
    .free = fz_free,
};

static void on_msg(void *ud, const char *data, size_t len)
{
	struct request *req = NULL;
	char err[256], *id = NULL;

	(void)ud;
	if (data[len] != '\0')
		abort(); /* ws.h promises NUL termination */
	if (msg_decode(data, len, EP_RUNNER, &req, err, sizeof(err), &id) == 0)
		request_free(req);
	free(id);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_set_level(LOG_LVL_ERROR);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_tr f;
	struct ws_conn *c;
	size_t max_msg, pre;
	int ret = 0;

	if (size < 2)
		return 0;
	memset(&f, 0, sizeof(f));
	f.base.ops = &fz_ops;
	f.mode = data[0] & 0x0f;
	f.rng = data[0];
	max_msg = (size_t)64 << (data[1] % 11); /* 64 B .. 64 KiB */
	pre = (size_t)(data[0] >> 4) * 3;
	if (pre > size - 2)
		pre = size - 2;
	f.in = data + 2 + pre;
	f.in_len = size - 2 - pre;
	c = ws_conn_new(&f.base, -1, max_msg, data + 2, pre);
	/* Bounded: every turn either consumes input or ends the loop. */
	for (int turns = 0; turns < 100000; turns++) {
		size_t before = f.in_off;

		f.turn_left = next_chunk(&f);
		ret = ws_conn_on_readable(c, on_msg, NULL);
		if (ws_conn_want_write(c) && ws_conn_flush(c) < 0)
			break;
		if (ret < 0 || (f.in_off == before && turns > 0))
			break;
	}
	(void)ws_conn_ping(c);
	(void)ws_conn_send_text(c, "{}", 2);
	(void)ws_conn_close(c, 1000, "fuzz");
	(void)ws_conn_flush(c);
	ws_conn_free(c);
	return 0;
}
