/*
 * stream: one long-lived Kubernetes API request (a watch, follow logs, a
 * proxy_request with "stream": true) as a configured CURL easy handle for
 * a curl multi handle that the caller drives (agent/streamer.c).
 *
 * DESIGN
 * k8s_stream_new() validates and prepares the request exactly as the
 * one-answer paths do (k8s_proxy_prepare, k8s_logs_prepare: same path
 * policy, proxy_deny and header rules), then sets up a new easy handle:
 * HTTP/1.1 (one connection per stream), bearer token from the shared
 * token cache, CA and curl share of the k8s_shared, connect timeout, no
 * total timeout (CURLOPT_TIMEOUT 0), TCP keepalive (idle 30 s, interval
 * 10 s) and, for watches that ask for bookmarks, a low-speed limit of 1
 * byte in K8S_STREAM_STALL_S seconds. Body bytes go to the caller's write
 * callback, which may return CURL_WRITEFUNC_PAUSE.
 * A k8s_stream and its handle belong to one thread at a time (the one
 * that drives the multi handle); k8s_shared is only read (token: under
 * its lock).
 */
#ifndef PIPEOPS_K8S_STREAM_H
#define PIPEOPS_K8S_STREAM_H

#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>

#include "k8s/k8s.h"

/* A watch with allowWatchBookmarks that sends nothing this long is dead
 * (the API server sends a bookmark about every minute). */
#define K8S_STREAM_STALL_S 150

enum k8s_stream_kind {
	K8S_STREAM_NONE = 0, /* not a stream: one answer */
	K8S_STREAM_LINES,    /* watch: chunks end on '\n', a line is capped */
	K8S_STREAM_TEXT,     /* follow logs: chunks end on '\n' when they can */
	K8S_STREAM_RAW,	     /* "stream": true: bytes as they come */
};

struct k8s_stream;

/*
 * Is a request of message type @type with @data (borrowed) a stream?
 * proxy_request with "stream": true, watch=true in its query (any value
 * but "false"/"0"), a /watch/ path, or a pod /log path with follow=true;
 * command of type "logs" with args.follow true. Pure; any thread.
 */
enum k8s_stream_kind k8s_stream_kind_of(const char *type, json_t *data);

/* The proxy_request part of k8s_stream_kind_of(). */
enum k8s_stream_kind k8s_proxy_stream_kind(json_t *data);

/*
 * A new stream for @type/@data (borrowed) whose body bytes go to @wcb with
 * @ud (CURLOPT_WRITEFUNCTION/WRITEDATA). @sh is borrowed and must outlive
 * it. NULL with @err filled when the request is refused (code 403) or
 * malformed (400), as for one-answer requests. Free with k8s_stream_free()
 * after removing its handle from any multi handle.
 */
struct k8s_stream *k8s_stream_new(struct k8s_shared *sh, const char *type,
				  json_t *data, curl_write_callback wcb,
				  void *ud, struct k8s_error *err);

/* The easy handle (owned by @s) to add to a multi handle. */
CURL *k8s_stream_curl(const struct k8s_stream *s);
enum k8s_stream_kind k8s_stream_kind(const struct k8s_stream *s);
/* "GET /api/v1/pods" for logs (no query). Borrowed from @s. */
const char *k8s_stream_describe(const struct k8s_stream *s);
/* The HTTP status of the answer, 0 before its headers arrived. */
long k8s_stream_status(const struct k8s_stream *s);

/*
 * After the transfer ended with @rc (CURLMSG_DONE): 0 when it ended
 * normally with a 2xx answer; else a negative code with @err filled: a
 * transport failure (as k8s_client_send(); a stalled watch is "Timeout")
 * or, for an HTTP error answer, its Status from @body (@len bytes, the
 * error answer the caller collected; may be NULL).
 */
int k8s_stream_result(struct k8s_stream *s, CURLcode rc, const char *body,
		      size_t len, struct k8s_error *err);

void k8s_stream_free(struct k8s_stream *s); /* NULL is fine */

#endif
