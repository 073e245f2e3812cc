/*
 * fuzz_msg: libFuzzer harness for msg_decode() (agent/msg.c), the
 * envelope decoder every received text message goes through: JSON, the
 * id/type checks and the three encodings of "data" (object, JSON text,
 * base64 of JSON text).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/msg.h"
#include "common/log.h"

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
	struct request *req = NULL;
	char err[256], *id = NULL;
	/* ws.c hands messages over NUL-terminated at data[len]. */
	char *text = malloc(size + 1);
	int ret;

	memcpy(text, data, size);
	text[size] = '\0';
	ret = msg_decode(text, size, EP_RUNNER, &req, err, sizeof(err), &id);
	if (ret == 0) {
		if (!req || !req->id || !req->type || !req->data ||
		    !json_is_object(req->data) || id)
			abort();
	} else if (req || !memchr(err, '\0', sizeof(err))) {
		abort();
	}
	request_free(req);
	free(id);
	free(text);
	return 0;
}
