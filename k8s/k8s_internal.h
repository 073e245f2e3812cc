/*
 * k8s_internal: the structs behind the opaque k8s handles and the request
 * core shared by the k8s/ modules. Not for use outside k8s/ (tests
 * excepted).
 *
 * DESIGN
 * struct k8s_shared is read-only after k8s_shared_new() except for the
 * token cache (guarded by token_lock) and the curl share (guarded by
 * share_locks, one mutex per curl_lock_data, taken by libcurl itself).
 * Lock order: token_lock is a leaf; no curl call runs under it.
 * struct k8s_client belongs to one thread at a time.
 */
#ifndef PIPEOPS_K8S_K8S_INTERNAL_H
#define PIPEOPS_K8S_K8S_INTERNAL_H

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "k8s/k8s.h"
#include "k8s/stream.h"

/* Responses larger than this are refused (bounded before allocation). */
#define K8S_MAX_RESPONSE_BYTES ((size_t)64 << 20)
/* Items per list page (limit=). */
#define K8S_LIST_PAGE_LIMIT 500
/* A token file is re-read when the cached token is this old. */
#define K8S_TOKEN_RELOAD_MS 60000
/* Largest token file accepted. */
#define K8S_TOKEN_MAX_BYTES 65536

struct k8s_shared {
	char *api_server; /* no trailing '/' */
	char *token_file; /* NULL: static token */
	char *ca_file;	  /* NULL: system bundle */
	bool insecure_skip_verify;
	char *default_namespace; /* never NULL */
	int64_t request_timeout_ms;
	int64_t connect_timeout_ms;
	int list_page_limit; /* `limit` of list pages; tests lower it */

	char **proxy_deny; /* path prefixes; NULL when none */
	size_t n_proxy_deny;
	size_t max_log_bytes; /* command logs output cap */

	pthread_mutex_t token_lock;
	char *token;		 /* guarded by token_lock; NULL: none */
	int64_t token_loaded_ms; /* guarded by token_lock */

	CURLSH *share;
	pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];

	atomic_bool abort; /* shutdown deadline: end requests in flight */
};

struct k8s_buf {
	char *data; /* NUL-terminated when len > 0 */
	size_t len;
	size_t cap;
	bool overflow; /* more than K8S_MAX_RESPONSE_BYTES came */
};

struct k8s_client {
	struct k8s_shared *sh; /* borrowed; outlives the client */
	CURL *curl;	       /* reused for every request (keep-alive) */
	char errbuf[CURL_ERROR_SIZE];
	struct k8s_buf resp;
	size_t resp_max;      /* this request's limit for resp */
	json_t *resp_headers; /* with keep_headers: selected headers */
};

/* One HTTP request. All pointers are borrowed for the call. */
struct k8s_request {
	const char *method;	  /* GET POST PUT PATCH DELETE */
	const char *path;	  /* "/api/..." with an optional "?query" */
	const char *content_type; /* NULL: no Content-Type header */
	const char *body;	  /* NULL: no body */
	size_t body_len;
	const char *accept;		  /* NULL: application/json */
	const struct curl_slist *headers; /* more "Name: value" lines */
	size_t max_response;		  /* 0: K8S_MAX_RESPONSE_BYTES */
	bool keep_headers;		  /* fill c->resp_headers (see below) */
};

/*
 * A request prepared from a Runner message (proxy_request, command logs)
 * for a worker or the streamer. Everything is owned by the struct; free
 * with k8s_http_clear().
 */
struct k8s_http {
	char method[8];
	char *path;		    /* "/api/...?query", encoded */
	struct curl_slist *headers; /* allowed request headers */
	char *accept;		    /* the Accept value; NULL: default */
	char *content_type;	    /* NULL: none */
	char *body;		    /* NULL: none */
	size_t body_len;
	enum k8s_stream_kind stream;
};

/* Frees what @h holds and zeroes it; NULL is fine. */
void k8s_http_clear(struct k8s_http *h);

/* Base64 of @n bytes at @p: a new NUL-terminated string. */
char *k8s_base64(const void *p, size_t n);

/*
 * proxy_request data (PROTOCOL.md 4.6) -> @out. Applies the path policy
 * and [kubernetes] proxy_deny. Returns 0, or -EPERM (err->code 403,
 * reason Forbidden) for a refused path or header, -EINVAL (400,
 * BadRequest) for a malformed request. @data is borrowed.
 */
int k8s_proxy_prepare(struct k8s_shared *sh, json_t *data, struct k8s_http *out,
		      struct k8s_error *err);

/*
 * command data (PROTOCOL.md 4.5, type "logs") -> the pod log request in
 * @out; @limit_bytes > 0 adds limitBytes. Returns 0, or -EINVAL with @err
 * (code 0, reason Invalid). @data is borrowed.
 */
int k8s_logs_prepare(struct k8s_shared *sh, json_t *data, size_t limit_bytes,
		     struct k8s_http *out, struct k8s_error *err);

/* A copy of the current bearer token (NULL: none), re-read when due. The
 * caller frees it (and should clear it first). */
char *k8s_token_copy(struct k8s_shared *sh);

/*
 * Fills @err for a failed transfer on @h (@errbuf: its CURLOPT_ERRORBUFFER,
 * @overflow: the write callback refused a too large answer) and returns
 * the errno-style code of k8s_client_send(). @method and @path name the
 * request in messages.
 */
int k8s_transport_error(struct k8s_shared *sh, CURL *h, const char *errbuf,
			CURLcode rc, bool overflow, size_t max_bytes,
			const char *method, const char *path,
			struct k8s_error *err);

/*
 * Sends @req and waits for the whole response. With req->keep_headers,
 * c->resp_headers (owned by @c, replaced by the next request) holds the
 * answer's Content-Type, Retry-After, Warning, Location and Audit-Id as
 * {"Name": "value"}. On 401 with a token file the
 * token is re-read and, if it changed, the request is sent once more.
 * Returns 0 when an HTTP response arrived (any status): *status is set and
 * *body and *body_len point into the client's buffer, valid until the next
 * request on @c (always NUL-terminated). Returns a negative errno-style code
 * with @err filled (code 0) on transport failure: -ECONNREFUSED
 * (Unreachable), -ETIMEDOUT (Timeout), -EFBIG (ResponseTooLarge), -EPROTO
 * (TLSError) or -EIO (TransportError).
 */
int k8s_client_send(struct k8s_client *c, const struct k8s_request *req,
		    long *status, const char **body, size_t *body_len,
		    struct k8s_error *err);

/*
 * JSON call: sends @body (borrowed, may be NULL) encoded compactly with
 * @content_type (default application/json when a body is given). On a 2xx
 * answer returns 0 and stores the decoded response in *out (a new
 * reference, never NULL; an empty body gives an empty object) when @out is
 * not NULL, and the status in *status when @status is not NULL. Otherwise
 * returns a negative code with @err filled: -EPROTO for an HTTP error (err
 * from its Status), -EBADMSG for a 2xx body that is not JSON, or the
 * transport codes of k8s_client_send().
 */
int k8s_call(struct k8s_client *c, const char *method, const char *path,
	     const char *content_type, json_t *body, json_t **out, long *status,
	     struct k8s_error *err);

/* The namespace used when a request names none (borrowed from @c). */
const char *k8s_client_default_namespace(const struct k8s_client *c);

/* printf into a new string (free with free()). Never NULL. */
char *k8s_strdup_printf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* Percent-encodes @s for a query value. Returns a new string. */
char *k8s_query_escape(const char *s);

#endif
