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
 *
 * ERRORS (err->code / err->reason / message example)
 *   HTTP answer with a Status body: its HTTP status / Status.reason /
 *     Status.message (e.g. 404 NotFound `deployments.apps "web" not found`;
 *     a Status without message gets "field: message" from details.causes).
 *   HTTP error without a Status body (proxy page, "404 page not found"):
 *     the HTTP status / the reason client-go would pick (503
 *     ServiceUnavailable, 504 Timeout, other 5xx InternalError, 4xx by
 *     code, else "") / "Kubernetes API returned HTTP 503
 *     (ServiceUnavailable) for GET /path: <start of the body>".
 *   code 0, transport:
 *     "Unreachable"  refused, DNS failure or no connection within the
 *                    connect timeout: "cannot reach the Kubernetes API at
 *                    https://10.0.0.1:6443: Connection refused"
 *     "Timeout"      connected but no full answer within request_timeout:
 *                    "Kubernetes API request timed out after 30s (GET /p)"
 *     "TLSError"     handshake or certificate verification failed
 *     "ResponseTooLarge"  answer over 64 MiB (K8S_MAX_RESPONSE_BYTES)
 *     "InvalidResponse"   2xx answer whose body is not the JSON expected
 *     "TransportError"    any other libcurl failure (connection reset...)
 *   code 0, "Invalid": the request failed validation before any call:
 *     "invalid deploy request: ports[0].container_port: 70000 is out of
 *     range 1..65535".
 * Every message is valid UTF-8 and fits err->message (cut at a character).
 *
 * REPLIES (data objects; all carry "success": true)
 *   deploy: message "deployment <ns>/<name> applied", deployment {name,
 *     namespace, uid, generation, resource_version}, and with ports
 *     service {name, cluster_ip}. Server-side apply, field manager
 *     "pipeops-agent", force=true. Ports may carry "service_port"
 *     (default: container_port).
 *   delete: message, name, namespace, service_deleted (bool).
 *   scale: message, name, namespace, replicas (new), previous_replicas.
 *   get_resources: PROTOCOL.md 4.4; deployments also carry replicas,
 *     ready_replicas, available_replicas, updated_replicas; services {name,
 *     namespace, labels, type, cluster_ip, ports[{name, port, target_port,
 *     protocol, node_port?}], selector, created_at}; namespaces {name,
 *     status, labels, created_at}; pod containers [{name, image, ready,
 *     restart_count, state}]. With resource_type only that list (plus
 *     success, timestamp and, with a namespace filter, namespace).
 */
#ifndef PIPEOPS_K8S_K8S_H
#define PIPEOPS_K8S_K8S_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct k8s_shared;
struct k8s_client;

struct k8s_settings {
	const char *api_server; /* https://host:port */
	const char *token;	/* used when token_file is NULL */
	const char *token_file;
	const char *ca_file; /* NULL: system bundle */
	bool insecure_skip_verify;
	const char *default_namespace;
	int64_t request_timeout_ms;
	int64_t connect_timeout_ms;
	const char *const *proxy_deny; /* proxy_request path prefixes */
	size_t n_proxy_deny;
	size_t max_log_bytes; /* 0: K8S_DEFAULT_MAX_LOG_BYTES */
};

/* Output of a command logs reply is cut here (truncated: true). */
#define K8S_DEFAULT_MAX_LOG_BYTES ((size_t)1 << 20)
/* Largest body of a non-stream proxy_response (before base64). */
#define K8S_PROXY_MAX_BODY ((size_t)8 << 20)

struct k8s_error {
	int code;	   /* HTTP status; 0 = not from the API */
	char reason[64];   /* Status.reason, e.g. "NotFound"; "" if none */
	char message[512]; /* human-readable; names the field or object */
};

/* Strings in @s are copied (borrowed for the call). Reads token_file once
 * (NULL with a message in @err if it cannot be read). Returns a new object
 * that the caller frees with k8s_shared_free(). */
struct k8s_shared *k8s_shared_new(const struct k8s_settings *s,
				  struct k8s_error *err);
/* After every client of @sh is freed; NULL is fine. */
void k8s_shared_free(struct k8s_shared *sh);

/* Shutdown deadline: requests in flight end within about a second with
 * reason "ShuttingDown", and later ones at once. Thread-safe. */
void k8s_shared_abort(struct k8s_shared *sh);

/* Read the token file again now (SIGHUP); a failed read keeps the old
 * token and is logged. Thread-safe; does nothing without a token file. */
void k8s_shared_reload_token(struct k8s_shared *sh);

/* A client for one thread at a time; @sh is borrowed and must outlive it.
 * Returns NULL if curl cannot make a handle. Free with k8s_client_free()
 * (NULL is fine). */
struct k8s_client *k8s_client_new(struct k8s_shared *sh);
void k8s_client_free(struct k8s_client *c);

/* PROTOCOL.md 4.1 - 4.4. @data is borrowed (NULL is taken as {} by
 * get_resources); the reply is a new reference owned by the caller, or
 * NULL with @err filled. Blocking: at most a few API calls, each bounded
 * by request_timeout_ms. */
json_t *k8s_op_deploy(struct k8s_client *c, json_t *data,
		      struct k8s_error *err);
json_t *k8s_op_delete(struct k8s_client *c, json_t *data,
		      struct k8s_error *err);
json_t *k8s_op_scale(struct k8s_client *c, json_t *data, struct k8s_error *err);
json_t *k8s_op_get_resources(struct k8s_client *c, json_t *data,
			     struct k8s_error *err);

/*
 * PROTOCOL.md 4.5 command, type "logs" (not follow: that is a stream, see
 * k8s/stream.h): GET .../pods/<name>/log with tailLines (args.lines, a
 * string or a number), container (target.container or args.container),
 * previous, timestamps and sinceSeconds (args.since_seconds). The reply
 * data is {id, output, exit_code: 0, duration, truncated?}: output holds
 * at most max_log_bytes (the first bytes the API sent, as limitBytes does;
 * invalid UTF-8 replaced by U+FFFD) and truncated is true when more came.
 * id is data.id when given. Other command types fail with "unsupported
 * command type: <type>" (code 0, reason Invalid). On failure the caller
 * may merge k8s_command_failure() into the error reply.
 */
json_t *k8s_op_command(struct k8s_client *c, json_t *data,
		       struct k8s_error *err);

/* {id, output: "", exit_code: 1, duration} for a failed command reply;
 * @data borrowed, @ms the time it took. New reference. */
json_t *k8s_command_failure(json_t *data, int64_t ms);

/*
 * PROTOCOL.md 4.6 proxy_request without streaming. Never NULL: the reply
 * data (new reference) is {status_code, headers, body (base64), error?}.
 *   The API answered (any status, 404 and 409 included): its status_code,
 *     headers (Content-Type, Retry-After, Warning, Location, Audit-Id when
 *     present) and body; no error.
 *   Refused before any call: 403 (path outside /api/, /apis/, /version,
 *     /healthz, /readyz, /livez; "..", "." or empty segments; encoded
 *     '/', '.', '%', '\' or control characters; a proxy_deny prefix; an
 *     Impersonate-* header) or 400 (malformed request), with error.
 *   Transport failure: 504 for Timeout, 502 for everything else
 *     (Unreachable, TLSError, TransportError, ResponseTooLarge over
 *     K8S_PROXY_MAX_BODY), with error.
 * @err is filled too when the data carries an error (for logs/metrics).
 */
json_t *k8s_op_proxy(struct k8s_client *c, json_t *data, struct k8s_error *err);

/* {"version": "v1.32.0", "node_count": 3} for register: a new reference,
 * or NULL with @err filled. */
json_t *k8s_cluster_info(struct k8s_client *c, struct k8s_error *err);

#endif
