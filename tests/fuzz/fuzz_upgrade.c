/*
 * fuzz_upgrade: libFuzzer harness for ws_upgrade_response(), the parser of
 * the server's answer to our HTTP upgrade request (common/ws.c). The input
 * is everything "read so far"; the key is fixed (RFC 6455's sample key) so
 * that seeds carrying its accept value reach the 101 checks.
 *
 * The input is also fed as growing prefixes cut at each "\n", as the
 * connect loop does when the answer arrives in pieces: a prefix must never
 * be accepted with a header length beyond what was fed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/ws_internal.h"

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="

static void check_one(const char *buf, size_t len)
{
	struct ws_connect_error err;
	size_t hdr_len = 0;
	int ret;

	memset(&err, 0, sizeof(err));
	err.retry_after_ms = -1;
	ret = ws_upgrade_response(buf, len, KEY, &hdr_len, &err);
	if (ret == 0 && (hdr_len == 0 || hdr_len > len))
		abort();
	if (ret < 0 && (memchr(err.text, '\0', sizeof(err.text)) == NULL ||
			err.errnum != ret))
		abort();
	if (ret > 1)
		abort();
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
	/* An exact-size heap copy so ASan sees any read past the end. */
	char *buf = malloc(size ? size : 1);

	memcpy(buf, data, size);
	check_one(buf, size);
	for (size_t i = 0; i < size; i++) {
		if (buf[i] == '\n')
			check_one(buf, i + 1);
	}
	free(buf);
	return 0;
}
