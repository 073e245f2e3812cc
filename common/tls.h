/*
 * tls: the shared client TLS configuration (mbedTLS 2.28) for wss://.
 *
 * DESIGN
 * One tls_ctx is built in main() before threads start and is then only read
 * (mbedtls_ssl_setup() takes the config const): both connections share it,
 * each with its own mbedtls_ssl_context. The one mutable part is the small
 * session cache for resumption, guarded by its own mutex (taken with no
 * other lock held except a connection's io_lock, never the other way round).
 * The DRBG comes from rand.h, so rand_init() must have succeeded first.
 *
 * Settings: TLS 1.2 minimum (1.3 is not built into Debian's 2.28), the CA
 * file or the system bundle, optional client certificate, verification
 * required unless insecure_skip_verify. mbedTLS 2.28 matches DNS names only
 * (never IP SANs): ws.c refuses wss:// to an IP literal unless
 * insecure_skip_verify.
 */
#ifndef PIPEOPS_COMMON_TLS_H
#define PIPEOPS_COMMON_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#define TLS_SYSTEM_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"

struct tls_options {
	const char *ca_file;	   /* PEM bundle; NULL or "": system bundle */
	const char *client_cert;   /* PEM, for mutual TLS; NULL: none */
	const char *client_key;	   /* PEM key of client_cert */
	const char *key_password;  /* NULL: key is not encrypted */
	bool insecure_skip_verify; /* no certificate or name checks */
};

struct tls_ctx; /* opaque */

/*
 * Build a configuration. The files are read now (borrowed strings); @o may
 * be NULL (system bundle, verification on, no client certificate).
 * Returns a new context, or NULL with one line in @err.
 */
struct tls_ctx *tls_ctx_new(const struct tls_options *o, char *err,
			    size_t errlen);

/* Free; all connections using it must be gone. Accepts NULL. */
void tls_ctx_free(struct tls_ctx *t);

/* The config for mbedtls_ssl_setup(); borrowed until tls_ctx_free(). */
const mbedtls_ssl_config *tls_ctx_config(const struct tls_ctx *t);

/* True when certificate verification is off. */
bool tls_ctx_insecure(const struct tls_ctx *t);

/*
 * Session resumption: before the handshake, tls_session_load() offers the
 * last session saved for host:port; after a verified handshake,
 * tls_session_save() keeps it. Both are best effort and thread-safe.
 */
void tls_session_load(struct tls_ctx *t, const char *host, uint16_t port,
		      mbedtls_ssl_context *ssl);
void tls_session_save(struct tls_ctx *t, const char *host, uint16_t port,
		      const mbedtls_ssl_context *ssl);

/*
 * One clear line for a failed certificate verification: "certificate
 * signed by unknown CA", "self-signed certificate", "certificate has
 * expired", "certificate name does not match <host>", ...
 * @flags from mbedtls_ssl_get_verify_result(); @peer may be NULL.
 */
void tls_verify_text(uint32_t flags, const mbedtls_x509_crt *peer,
		     const char *host, char *buf, size_t len);

/* mbedTLS error code as text ("SSL - ... (-0x7780)"). */
void tls_error_text(int ret, char *buf, size_t len);

#endif
