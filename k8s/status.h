/*
 * status: Kubernetes Status bodies and transport failures -> k8s_error.
 *
 * Every message put into a k8s_error is valid UTF-8 (truncation never cuts
 * a character and bytes of a non-JSON body are reduced to printable ASCII),
 * so callers can hand it to json_string() unchecked.
 */
#ifndef PIPEOPS_K8S_STATUS_H
#define PIPEOPS_K8S_STATUS_H

#include <stddef.h>

#include "k8s/k8s.h"

/* Fills @err with @code, @reason (NULL: "") and a printf message. */
void k8s_error_set(struct k8s_error *err, int code, const char *reason,
		   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/*
 * Fills @err from an HTTP error answer (@http_status >= 300). A Status body
 * (kind "Status") gives its reason and message (a missing message is built
 * from details.causes); any other body gives the reason client-go would
 * pick for @http_status and a message naming @method, @path and the start
 * of the body. err->code is @http_status. All pointers are borrowed; @body
 * need not be NUL-terminated.
 */
void k8s_status_to_error(long http_status, const char *body, size_t len,
			 const char *method, const char *path,
			 struct k8s_error *err);

/* Reason for an HTTP status without a Status body ("" when none fits):
 * 400 BadRequest, 401 Unauthorized, 403 Forbidden, 404 NotFound, 405
 * MethodNotAllowed, 406 NotAcceptable, 409 Conflict, 410 Gone, 413
 * RequestEntityTooLarge, 415 UnsupportedMediaType, 422 Invalid, 429
 * TooManyRequests, 503 ServiceUnavailable, 504 Timeout, other 5xx
 * InternalError. Returns a static string. */
const char *k8s_reason_for_http(long http_status);

/* Copies @src into @dst (size @n >= 1), cutting at a UTF-8 character
 * boundary and replacing invalid sequences with '?'. */
void k8s_copy_utf8(char *dst, size_t n, const char *src, size_t len);

#endif
