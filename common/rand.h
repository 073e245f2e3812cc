/*
 * rand: the process-wide mbedTLS entropy source and CTR_DRBG.
 *
 * DESIGN
 * One DRBG for the whole process, seeded by rand_init() in main() before any
 * thread starts and freed by rand_free() after every thread has joined.
 * mbedTLS is built with MBEDTLS_THREADING_C (Debian), so
 * mbedtls_ctr_drbg_random() takes the DRBG's own mutex: rand_bytes() and the
 * TLS handshakes of both connections may draw from it concurrently. Nothing
 * here reseeds or reconfigures the DRBG after rand_init().
 */
#ifndef PIPEOPS_COMMON_RAND_H
#define PIPEOPS_COMMON_RAND_H

#include <stddef.h>

#include <mbedtls/ctr_drbg.h>

/* Seed the DRBG. Main thread, once, before threads. 0 or -EIO. */
int rand_init(void);

/* Free the DRBG and entropy context. Main thread, after threads. */
void rand_free(void);

/*
 * Fill @buf with @len unpredictable bytes. Thread-safe. Before rand_init()
 * (or if the DRBG fails) it falls back to getrandom(2); it never returns
 * predictable bytes and aborts only if the kernel cannot provide any.
 */
void rand_bytes(void *buf, size_t len);

/* The seeded DRBG for mbedtls_ssl_conf_rng(conf, mbedtls_ctr_drbg_random,
 * rand_drbg()); NULL before rand_init(). Borrowed until rand_free(). */
mbedtls_ctr_drbg_context *rand_drbg(void);

#endif
