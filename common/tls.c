/*
 * tls: the shared mbedTLS client configuration (see tls.h for DESIGN).
 */
#include "common/tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>

#include "common/log.h"
#include "common/rand.h"
#include "common/util.h"

#define TLS_SESSION_SLOTS 4

struct tls_session_slot {
	char host[256];
	uint16_t port;
	bool used;
	mbedtls_ssl_session session;
};

struct tls_ctx {
	mbedtls_ssl_config conf;
	mbedtls_x509_crt ca;
	mbedtls_x509_crt cert;
	mbedtls_pk_context key;
	bool insecure;
	pthread_mutex_t cache_lock;
	struct tls_session_slot slots[TLS_SESSION_SLOTS]; /* guarded by
							      cache_lock */
	unsigned next_slot;				  /* same */
};

void tls_error_text(int ret, char *buf, size_t len)
{
	char tmp[160];

	mbedtls_strerror(ret, tmp, sizeof(tmp));
	strfmt(buf, len, "%s (-0x%04x)", tmp, (unsigned)(ret < 0 ? -ret : ret));
}

struct tls_ctx *tls_ctx_new(const struct tls_options *o, char *err,
			    size_t errlen)
{
	static const struct tls_options defaults = {0};
	struct tls_ctx *t;
	const char *ca_file;
	char etext[200];
	int ret;

	if (!o)
		o = &defaults;
	if (!rand_drbg()) {
		strfmt(err, errlen, "tls: rand_init() was not called");
		return NULL;
	}
	t = xcalloc(1, sizeof(*t));
	mbedtls_ssl_config_init(&t->conf);
	mbedtls_x509_crt_init(&t->ca);
	mbedtls_x509_crt_init(&t->cert);
	mbedtls_pk_init(&t->key);
	pthread_mutex_init(&t->cache_lock, NULL);
	for (int i = 0; i < TLS_SESSION_SLOTS; i++)
		mbedtls_ssl_session_init(&t->slots[i].session);
	t->insecure = o->insecure_skip_verify;

	ret = mbedtls_ssl_config_defaults(&t->conf, MBEDTLS_SSL_IS_CLIENT,
					  MBEDTLS_SSL_TRANSPORT_STREAM,
					  MBEDTLS_SSL_PRESET_DEFAULT);
	if (ret != 0) {
		tls_error_text(ret, etext, sizeof(etext));
		strfmt(err, errlen, "tls: config defaults: %s", etext);
		goto out_free;
	}
	mbedtls_ssl_conf_min_version(&t->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
				     MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_rng(&t->conf, mbedtls_ctr_drbg_random, rand_drbg());
	mbedtls_ssl_conf_renegotiation(&t->conf,
				       MBEDTLS_SSL_RENEGOTIATION_DISABLED);

	ca_file = o->ca_file && *o->ca_file ? o->ca_file : TLS_SYSTEM_CA_BUNDLE;
	ret = mbedtls_x509_crt_parse_file(&t->ca, ca_file);
	if (ret < 0 && !t->insecure) {
		tls_error_text(ret, etext, sizeof(etext));
		strfmt(err, errlen, "tls: cannot load CA file %s: %s", ca_file,
		       etext);
		goto out_free;
	}
	if (ret > 0)
		LOG_WARN("some CA certificates could not be parsed",
			 "file=%s skipped=%d", ca_file, ret);
	if (ret >= 0)
		mbedtls_ssl_conf_ca_chain(&t->conf, &t->ca, NULL);
	mbedtls_ssl_conf_authmode(&t->conf, t->insecure
						? MBEDTLS_SSL_VERIFY_NONE
						: MBEDTLS_SSL_VERIFY_REQUIRED);

	if (o->client_cert && *o->client_cert) {
		if (!o->client_key || !*o->client_key) {
			strfmt(err, errlen,
			       "tls: client certificate given without a key");
			goto out_free;
		}
		ret = mbedtls_x509_crt_parse_file(&t->cert, o->client_cert);
		if (ret != 0) {
			tls_error_text(ret, etext, sizeof(etext));
			strfmt(err, errlen,
			       "tls: cannot load client certificate %s: %s",
			       o->client_cert, etext);
			goto out_free;
		}
		ret = mbedtls_pk_parse_keyfile(&t->key, o->client_key,
					       o->key_password);
		if (ret != 0) {
			tls_error_text(ret, etext, sizeof(etext));
			strfmt(err, errlen,
			       "tls: cannot load client key %s: %s",
			       o->client_key, etext);
			goto out_free;
		}
		ret = mbedtls_ssl_conf_own_cert(&t->conf, &t->cert, &t->key);
		if (ret != 0) {
			tls_error_text(ret, etext, sizeof(etext));
			strfmt(err, errlen, "tls: client certificate: %s",
			       etext);
			goto out_free;
		}
	}
	if (t->insecure)
		LOG_WARN("TLS certificate verification is disabled",
			 "setting=insecure_skip_verify");
	return t;

out_free:
	tls_ctx_free(t);
	return NULL;
}

void tls_ctx_free(struct tls_ctx *t)
{
	if (!t)
		return;
	for (int i = 0; i < TLS_SESSION_SLOTS; i++)
		mbedtls_ssl_session_free(&t->slots[i].session);
	pthread_mutex_destroy(&t->cache_lock);
	mbedtls_pk_free(&t->key);
	mbedtls_x509_crt_free(&t->cert);
	mbedtls_x509_crt_free(&t->ca);
	mbedtls_ssl_config_free(&t->conf);
	free(t);
}

const mbedtls_ssl_config *tls_ctx_config(const struct tls_ctx *t)
{
	return &t->conf;
}

bool tls_ctx_insecure(const struct tls_ctx *t)
{
	return t->insecure;
}

static struct tls_session_slot *slot_find(struct tls_ctx *t, const char *host,
					  uint16_t port)
{
	for (int i = 0; i < TLS_SESSION_SLOTS; i++) {
		struct tls_session_slot *s = &t->slots[i];

		if (s->used && s->port == port && !strcmp(s->host, host))
			return s;
	}
	return NULL;
}

void tls_session_load(struct tls_ctx *t, const char *host, uint16_t port,
		      mbedtls_ssl_context *ssl)
{
	struct tls_session_slot *s;

	pthread_mutex_lock(&t->cache_lock);
	s = slot_find(t, host, port);
	if (s && mbedtls_ssl_set_session(ssl, &s->session) != 0)
		LOG_DEBUG("TLS session not resumable", "host=%s", host);
	pthread_mutex_unlock(&t->cache_lock);
}

void tls_session_save(struct tls_ctx *t, const char *host, uint16_t port,
		      const mbedtls_ssl_context *ssl)
{
	struct tls_session_slot *s;

	if (strlen(host) >= sizeof(s->host))
		return;
	pthread_mutex_lock(&t->cache_lock);
	s = slot_find(t, host, port);
	if (!s) {
		s = &t->slots[t->next_slot];
		t->next_slot = (t->next_slot + 1) % TLS_SESSION_SLOTS;
	}
	mbedtls_ssl_session_free(&s->session);
	mbedtls_ssl_session_init(&s->session);
	s->used = mbedtls_ssl_get_session(ssl, &s->session) == 0;
	strfmt(s->host, sizeof(s->host), "%s", host);
	s->port = port;
	pthread_mutex_unlock(&t->cache_lock);
}

/* True when @c was issued by itself (subject == issuer). */
static bool is_self_signed(const mbedtls_x509_crt *c)
{
	return c && c->issuer_raw.len == c->subject_raw.len &&
	       !memcmp(c->issuer_raw.p, c->subject_raw.p, c->issuer_raw.len);
}

void tls_verify_text(uint32_t flags, const mbedtls_x509_crt *peer,
		     const char *host, char *buf, size_t len)
{
	char info[256];
	char *nl;

	if (flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED) {
		if (is_self_signed(peer) && (!peer->next))
			strfmt(buf, len,
			       "self-signed certificate for %s (not trusted)",
			       host);
		else
			strfmt(buf, len,
			       "certificate for %s signed by unknown CA", host);
	} else if (flags & MBEDTLS_X509_BADCERT_EXPIRED) {
		strfmt(buf, len, "certificate for %s has expired", host);
	} else if (flags & MBEDTLS_X509_BADCERT_FUTURE) {
		strfmt(buf, len, "certificate for %s is not valid yet", host);
	} else if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) {
		strfmt(buf, len, "certificate name does not match host %s",
		       host);
	} else if (flags & MBEDTLS_X509_BADCERT_REVOKED) {
		strfmt(buf, len, "certificate for %s is revoked", host);
	} else {
		if (mbedtls_x509_crt_verify_info(info, sizeof(info), "",
						 flags) < 0)
			strfmt(info, sizeof(info), "flags 0x%x",
			       (unsigned)flags);
		nl = strchr(info, '\n');
		if (nl)
			*nl = '\0';
		strfmt(buf, len, "certificate for %s rejected: %s", host, info);
	}
}
