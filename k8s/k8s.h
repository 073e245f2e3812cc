/*
 * k8s: the Kubernetes REST client (libcurl) and the operations of
 * PROTOCOL.md section 4.
 *
 * DESIGN
 * A k8s_shared is created once (in main, before threads) and holds what all
 * workers share: the API server URL, CA, the token cache (re-read from the
 * token file about every minute and after a 401, under its own mutex) and a
 * curl share for DNS and TLS sessions. Each worker then creates its own
 * k8s_client, which owns one CURL easy handle that is reused (keep-alive).
 * A k8s_client is used by one thread at a time; k8s_shared is thread-safe.
 *
 * Operations take the request's decoded `data` object (borrowed) and return
 * the reply's data object (a new reference) with "success": true and the
 * operation's fields, or NULL with @err filled. A failure that came from
 * the API keeps its Status: err->code is the HTTP status and err->reason
 * the Status reason; a failure found before any call (validation) has
 * code 0.
 */
#ifndef PIPEOPS_K8S_K8S_H
#define PIPEOPS_K8S_K8S_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct k8s_shared;
struct k8s_client;

struct k8s_settings {
	const char *api_server;      /* https://host:port */
	const char *token;           /* used when token_file is NULL */
	const char *token_file;
	const char *ca_file;         /* NULL: system bundle */
	bool insecure_skip_verify;
	const char *default_namespace;
	int64_t request_timeout_ms;
	int64_t connect_timeout_ms;
};

struct k8s_error {
	int code;             /* HTTP status; 0 = not from the API */
	char reason[64];      /* Status.reason, e.g. "NotFound"; "" if none */
	char message[512];    /* human-readable; names the field or object */
};

/* Strings in @s are copied. Returns NULL with a message in @err. */
struct k8s_shared *k8s_shared_new(const struct k8s_settings *s,
				  struct k8s_error *err);
void k8s_shared_free(struct k8s_shared *sh);  /* after every client */

struct k8s_client *k8s_client_new(struct k8s_shared *sh);
void k8s_client_free(struct k8s_client *c);

/* PROTOCOL.md 4.1 - 4.4. */
json_t *k8s_op_deploy(struct k8s_client *c, json_t *data,
		      struct k8s_error *err);
json_t *k8s_op_delete(struct k8s_client *c, json_t *data,
		      struct k8s_error *err);
json_t *k8s_op_scale(struct k8s_client *c, json_t *data,
		     struct k8s_error *err);
json_t *k8s_op_get_resources(struct k8s_client *c, json_t *data,
			     struct k8s_error *err);

/* {"version": "v1.32.0", "node_count": 3} for register; NULL on failure. */
json_t *k8s_cluster_info(struct k8s_client *c, struct k8s_error *err);

#endif
