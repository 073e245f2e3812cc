/* rand: process-wide entropy + CTR_DRBG (see rand.h for the thread rules). */
#include "common/rand.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

#include <mbedtls/entropy.h>

#include "common/log.h"

static mbedtls_entropy_context rand_entropy;
static mbedtls_ctr_drbg_context rand_ctr;
static bool rand_ready; /* written by main before/after threads only */

int rand_init(void)
{
	static const unsigned char pers[] = "pipeops-agent";
	int ret;

	if (rand_ready)
		return 0;
	mbedtls_entropy_init(&rand_entropy);
	mbedtls_ctr_drbg_init(&rand_ctr);
	ret = mbedtls_ctr_drbg_seed(&rand_ctr, mbedtls_entropy_func,
				    &rand_entropy, pers, sizeof(pers) - 1);
	if (ret != 0) {
		LOG_ERROR("DRBG seed failed", "mbedtls_err=-0x%04x",
			  (unsigned)-ret);
		mbedtls_ctr_drbg_free(&rand_ctr);
		mbedtls_entropy_free(&rand_entropy);
		return -EIO;
	}
	rand_ready = true;
	return 0;
}

void rand_free(void)
{
	if (!rand_ready)
		return;
	mbedtls_ctr_drbg_free(&rand_ctr);
	mbedtls_entropy_free(&rand_entropy);
	rand_ready = false;
}

/* getrandom(2) until @len bytes are filled; aborts if the kernel fails. */
static void rand_kernel(unsigned char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = getrandom(p, len, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr,
				"level=error msg=\"getrandom failed\"\n");
			abort();
		}
		p += n;
		len -= (size_t)n;
	}
}

void rand_bytes(void *buf, size_t len)
{
	unsigned char *p = buf;

	if (!rand_ready) {
		rand_kernel(p, len);
		return;
	}
	while (len > 0) {
		size_t n = len < MBEDTLS_CTR_DRBG_MAX_REQUEST
			       ? len
			       : MBEDTLS_CTR_DRBG_MAX_REQUEST;

		if (mbedtls_ctr_drbg_random(&rand_ctr, p, n) != 0) {
			rand_kernel(p, len);
			return;
		}
		p += n;
		len -= n;
	}
}

mbedtls_ctr_drbg_context *rand_drbg(void)
{
	return rand_ready ? &rand_ctr : NULL;
}
