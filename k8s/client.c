/*
 * client: k8s_shared (settings, token cache, curl share) and k8s_client
 * (one reused CURL easy handle) plus the request core used by the
 * operations.
 *
 * DESIGN
 * Threads: k8s_shared_new() runs in main before workers start; after that
 * every worker uses its own k8s_client and reads k8s_shared. The only
 * mutable shared state is the token cache (token_lock) and the curl share,
 * which libcurl locks through share_lock()/share_unlock() with one mutex
 * per curl_lock_data (libcurl-thread(3), CURLSHOPT_LOCKFUNC(3)).
 * Token: re-read from token_file when older than K8S_TOKEN_RELOAD_MS and
 * after a 401 (then the request is sent once more if the token changed). A
 * failed re-read keeps the old token. The file is read outside the lock;
 * two workers racing to reload both read the same small file, which is
 * harmless. A worker copies the token under the lock before building its
 * request headers.
 * Each request resets the easy handle (curl_easy_reset keeps the live
 * connections, DNS and TLS session caches) and sets every option again, so
 * no option of one request leaks into the next.
 */
#include "k8s/k8s_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "common/util.h"
#include "k8s/status.h"

#ifndef PIPEOPS_VERSION
#define PIPEOPS_VERSION "dev"
#endif

#define DEFAULT_REQUEST_TIMEOUT_MS 30000
#define DEFAULT_CONNECT_TIMEOUT_MS 10000

char *k8s_strdup_printf(const char *fmt, ...)
{
	va_list ap;
	int n;
	char *s;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	s = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}

char *k8s_query_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = xmalloc(n * 3 + 1), *o = out;

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
		    ch == '.' || ch == '~') {
			*o++ = (char)ch;
		} else {
			*o++ = '%';
			*o++ = hex[ch >> 4];
			*o++ = hex[ch & 15];
		}
	}
	*o = '\0';
	return out;
}

/* "30s" or "1500ms" into @buf. */
static const char *duration_text(int64_t ms, char *buf, size_t n)
{
	if (ms % 1000 == 0)
		strfmt(buf, n, "%llds", (long long)(ms / 1000));
	else
		strfmt(buf, n, "%lldms", (long long)ms);
	return buf;
}

/* ---- token cache ---------------------------------------------------- */

/* A token goes into an HTTP header: visible ASCII only. */
static bool token_ok(const char *t)
{
	if (!*t)
		return false;
	for (; *t; t++)
		if ((unsigned char)*t < 0x21 || (unsigned char)*t > 0x7e)
			return false;
	return true;
}

/* Reads @path. Returns a new string, or NULL with the cause in @why. */
static char *token_read(const char *path, char *why, size_t n)
{
	char ebuf[128];
	char *t = file_read_trimmed(path, K8S_TOKEN_MAX_BYTES);

	if (!t) {
		strfmt(why, n, "%s", errstr(errno, ebuf, sizeof(ebuf)));
		return NULL;
	}
	if (!*t) {
		strfmt(why, n, "the file is empty");
		free(t);
		return NULL;
	}
	if (!token_ok(t)) {
		strfmt(why, n,
		       "the token holds characters not allowed in an "
		       "HTTP header");
		free(t);
		return NULL;
	}
	return t;
}

/* Re-reads the token file and installs the result; on failure the old
 * token stays and the failure is logged. */
static void token_reload(struct k8s_shared *sh)
{
	char why[160];
	char *t = token_read(sh->token_file, why, sizeof(why));
	char *old = NULL;

	pthread_mutex_lock(&sh->token_lock);
	sh->token_loaded_ms = clock_mono_ms();
	if (t) {
		old = sh->token;
		sh->token = t;
	}
	pthread_mutex_unlock(&sh->token_lock);
	free(old);
	if (!t)
		LOG_WARN("cannot re-read the Kubernetes token, keeping the "
			 "old one",
			 "file=%s error=\"%s\"", sh->token_file, why);
}

/* A copy of the current token (NULL: none), re-read first when due. The
 * caller frees it. */
static char *token_get(struct k8s_shared *sh)
{
	bool due;
	char *t;

	pthread_mutex_lock(&sh->token_lock);
	due = sh->token_file &&
	      clock_mono_ms() - sh->token_loaded_ms >= K8S_TOKEN_RELOAD_MS;
	pthread_mutex_unlock(&sh->token_lock);
	if (due)
		token_reload(sh);
	pthread_mutex_lock(&sh->token_lock);
	t = xstrdup(sh->token);
	pthread_mutex_unlock(&sh->token_lock);
	return t;
}

char *k8s_token_copy(struct k8s_shared *sh)
{
	return token_get(sh);
}

static int abort_cb(void *ud, curl_off_t dltotal, curl_off_t dlnow,
		    curl_off_t ultotal, curl_off_t ulnow)
{
	struct k8s_shared *sh = ud;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return atomic_load_explicit(&sh->abort, memory_order_relaxed) ? 1 : 0;
}

void k8s_shared_abort(struct k8s_shared *sh)
{
	if (sh)
		atomic_store(&sh->abort, true);
}

void k8s_shared_reload_token(struct k8s_shared *sh)
{
	if (sh && sh->token_file)
		token_reload(sh);
}

/* After a 401 with token @used: returns a different token to retry with
 * (new string), or NULL when there is none. Another worker may already
 * have installed a new token; otherwise the file is read again. */
static char *token_after_401(struct k8s_shared *sh, const char *used)
{
	char *t = NULL;

	if (!sh->token_file)
		return NULL;
	pthread_mutex_lock(&sh->token_lock);
	if (sh->token && used && strcmp(sh->token, used))
		t = xstrdup(sh->token);
	pthread_mutex_unlock(&sh->token_lock);
	if (t)
		return t;
	token_reload(sh);
	pthread_mutex_lock(&sh->token_lock);
	if (sh->token && (!used || strcmp(sh->token, used)))
		t = xstrdup(sh->token);
	pthread_mutex_unlock(&sh->token_lock);
	return t;
}

/* ---- shared ---------------------------------------------------------- */

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access,
		       void *userp)
{
	struct k8s_shared *sh = userp;

	(void)h;
	(void)access;
	if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&sh->share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *userp)
{
	struct k8s_shared *sh = userp;

	(void)h;
	if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&sh->share_locks[data]);
}

struct k8s_shared *k8s_shared_new(const struct k8s_settings *s,
				  struct k8s_error *err)
{
	struct k8s_shared *sh;
	size_t n;
	char why[160];

	if (!s->api_server || (strncmp(s->api_server, "https://", 8) &&
			       strncmp(s->api_server, "http://", 7))) {
		k8s_error_set(err, 0, "Invalid",
			      "Kubernetes api_server \"%s\" must be an "
			      "https:// or http:// URL",
			      s->api_server ? s->api_server : "");
		return NULL;
	}
	sh = xcalloc(1, sizeof(*sh));
	sh->api_server = xstrdup(s->api_server);
	n = strlen(sh->api_server);
	while (n > 0 && sh->api_server[n - 1] == '/')
		sh->api_server[--n] = '\0';
	sh->token_file =
	    s->token_file && *s->token_file ? xstrdup(s->token_file) : NULL;
	sh->ca_file = s->ca_file && *s->ca_file ? xstrdup(s->ca_file) : NULL;
	sh->insecure_skip_verify = s->insecure_skip_verify;
	sh->default_namespace = xstrdup(
	    s->default_namespace && *s->default_namespace ? s->default_namespace
							  : "default");
	sh->request_timeout_ms = s->request_timeout_ms > 0
				     ? s->request_timeout_ms
				     : DEFAULT_REQUEST_TIMEOUT_MS;
	sh->connect_timeout_ms = s->connect_timeout_ms > 0
				     ? s->connect_timeout_ms
				     : DEFAULT_CONNECT_TIMEOUT_MS;
	sh->list_page_limit = K8S_LIST_PAGE_LIMIT;
	sh->max_log_bytes =
	    s->max_log_bytes ? s->max_log_bytes : K8S_DEFAULT_MAX_LOG_BYTES;
	if (s->n_proxy_deny) {
		sh->proxy_deny = xcalloc(s->n_proxy_deny, sizeof(char *));
		for (size_t i = 0; i < s->n_proxy_deny; i++)
			sh->proxy_deny[i] = xstrdup(s->proxy_deny[i]);
		sh->n_proxy_deny = s->n_proxy_deny;
	}
	pthread_mutex_init(&sh->token_lock, NULL);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&sh->share_locks[i], NULL);

	if (sh->token_file) {
		sh->token = token_read(sh->token_file, why, sizeof(why));
		if (!sh->token) {
			k8s_error_set(err, 0, "Invalid",
				      "cannot read the Kubernetes token file "
				      "%s: %s",
				      sh->token_file, why);
			goto out_free;
		}
		sh->token_loaded_ms = clock_mono_ms();
	} else if (s->token && *s->token) {
		if (!token_ok(s->token)) {
			k8s_error_set(err, 0, "Invalid",
				      "the Kubernetes token holds characters "
				      "not allowed in an HTTP header");
			goto out_free;
		}
		sh->token = xstrdup(s->token);
	}

	sh->share = curl_share_init();
	if (!sh->share) {
		k8s_error_set(err, 0, "InternalError",
			      "curl_share_init failed");
		goto out_free;
	}
	curl_share_setopt(sh->share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(sh->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(sh->share, CURLSHOPT_USERDATA, sh);
	curl_share_setopt(sh->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(sh->share, CURLSHOPT_SHARE,
			  CURL_LOCK_DATA_SSL_SESSION);
	return sh;

out_free:
	k8s_shared_free(sh);
	return NULL;
}

void k8s_shared_free(struct k8s_shared *sh)
{
	if (!sh)
		return;
	if (sh->share)
		curl_share_cleanup(sh->share);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&sh->share_locks[i]);
	pthread_mutex_destroy(&sh->token_lock);
	free(sh->token);
	free(sh->api_server);
	free(sh->token_file);
	free(sh->ca_file);
	free(sh->default_namespace);
	for (size_t i = 0; i < sh->n_proxy_deny; i++)
		free(sh->proxy_deny[i]);
	free(sh->proxy_deny);
	free(sh);
}

/* ---- client ---------------------------------------------------------- */

struct k8s_client *k8s_client_new(struct k8s_shared *sh)
{
	struct k8s_client *c = xcalloc(1, sizeof(*c));

	c->sh = sh;
	c->curl = curl_easy_init();
	if (!c->curl) {
		LOG_ERROR("curl_easy_init failed", "%s", "");
		free(c);
		return NULL;
	}
	return c;
}

void k8s_client_free(struct k8s_client *c)
{
	if (!c)
		return;
	curl_easy_cleanup(c->curl);
	free(c->resp.data);
	json_decref(c->resp_headers);
	free(c);
}

const char *k8s_client_default_namespace(const struct k8s_client *c)
{
	return c->sh->default_namespace;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userp)
{
	struct k8s_client *c = userp;
	struct k8s_buf *b = &c->resp;
	size_t n = size * nmemb;

	if (n > c->resp_max - b->len) {
		b->overflow = true;
		return CURL_WRITEFUNC_ERROR;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 16384;

		while (cap < b->len + n + 1)
			cap *= 2;
		b->data = xrealloc(b->data, cap);
		b->cap = cap;
	}
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

/* Answer headers kept for proxy_response (see k8s_client_send). */
static const char *const kept_headers[] = {
    "Content-Type", "Retry-After", "Warning", "Location", "Audit-Id",
};

/* Header lines of the answer: a status line starts over (401 retry,
 * 100 Continue); selected headers are kept in c->resp_headers. */
static size_t header_cb(char *p, size_t size, size_t nmemb, void *userp)
{
	struct k8s_client *c = userp;
	size_t n = size * nmemb, name_len, vlen;
	const char *colon, *v;

	if (n >= 5 && !memcmp(p, "HTTP/", 5)) {
		json_object_clear(c->resp_headers);
		return n;
	}
	colon = memchr(p, ':', n);
	if (!colon)
		return n;
	name_len = (size_t)(colon - p);
	v = colon + 1;
	vlen = n - name_len - 1;
	while (vlen && (*v == ' ' || *v == '\t')) {
		v++;
		vlen--;
	}
	while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' ||
			v[vlen - 1] == ' '))
		vlen--;
	for (size_t i = 0; i < ARRAY_SIZE(kept_headers); i++) {
		char val[1024];

		if (strlen(kept_headers[i]) != name_len ||
		    strncasecmp(kept_headers[i], p, name_len))
			continue;
		k8s_copy_utf8(val, sizeof(val), v, vlen);
		if (json_object_get(c->resp_headers, kept_headers[i])) {
			/* Repeated (Warning): join as HTTP allows. */
			char *j = k8s_strdup_printf(
			    "%s, %s",
			    json_string_value(json_object_get(c->resp_headers,
							      kept_headers[i])),
			    val);

			json_object_set_new(c->resp_headers, kept_headers[i],
					    json_string(j));
			free(j);
		} else {
			json_object_set_new(c->resp_headers, kept_headers[i],
					    json_string(val));
		}
	}
	return n;
}

/* Sets every option for one request on the (reset) handle. */
static void setup_handle(struct k8s_client *c, const struct k8s_request *req,
			 const char *url, struct curl_slist *hdrs)
{
	struct k8s_shared *sh = c->sh;
	CURL *h = c->curl;

	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_SHARE, sh->share);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)sh->connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)sh->request_timeout_ms);
	curl_easy_setopt(h, CURLOPT_USERAGENT,
			 "pipeops-agent/" PIPEOPS_VERSION);
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
	/* Called about once a second even while idle: lets a shutdown
	 * deadline end a request stuck on a hung API server. */
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, abort_cb);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, sh);
	if (req->keep_headers) {
		curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
		curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
	}
	if (sh->insecure_skip_verify) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	} else if (sh->ca_file) {
		curl_easy_setopt(h, CURLOPT_CAINFO, sh->ca_file);
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	if (req->body) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)req->body_len);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
	}
	if (strcmp(req->method, "GET") && strcmp(req->method, "POST"))
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
	else if (!strcmp(req->method, "POST") && !req->body)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
}

/* Headers for one request; @token may be NULL. */
static struct curl_slist *build_headers(const struct k8s_request *req,
					const char *token)
{
	struct curl_slist *l = NULL;
	char *line;

	line = k8s_strdup_printf(
	    "Accept: %s", req->accept ? req->accept : "application/json");
	l = curl_slist_append(l, line);
	free(line);
	/* No "Expect: 100-continue" round trip for large bodies. */
	l = curl_slist_append(l, "Expect:");
	for (const struct curl_slist *h = req->headers; h; h = h->next)
		l = curl_slist_append(l, h->data);
	if (req->content_type) {
		line = k8s_strdup_printf("Content-Type: %s", req->content_type);
		l = curl_slist_append(l, line);
		free(line);
	}
	if (token) {
		line = k8s_strdup_printf("Authorization: Bearer %s", token);
		l = curl_slist_append(l, line);
		/* The token must not linger in freed heap memory. */
		memset(line, 0, strlen(line));
		free(line);
	}
	return l;
}

int k8s_transport_error(struct k8s_shared *sh, CURL *h, const char *errbuf,
			CURLcode rc, bool overflow, size_t max_bytes,
			const char *method, const char *path,
			struct k8s_error *err)
{
	const char *detail = errbuf[0] ? errbuf : curl_easy_strerror(rc);
	char ebuf[128], dbuf[32];
	long oserr = 0;
	curl_off_t pretransfer = 0;
	int plen = (int)strcspn(path, "?");

	curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &oserr);
	curl_easy_getinfo(h, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
	switch (rc) {
	case CURLE_ABORTED_BY_CALLBACK:
		k8s_error_set(err, 0, "ShuttingDown",
			      "agent is stopping: %s %.*s was aborted after "
			      "shutdown_timeout (it may or may not have been "
			      "applied)",
			      method, plen, path);
		return -ECANCELED;
	case CURLE_WRITE_ERROR:
		if (!overflow)
			break;
		if (max_bytes >= ((size_t)1 << 20))
			k8s_error_set(err, 0, "ResponseTooLarge",
				      "the Kubernetes API answer to %s %.*s is "
				      "larger than %zu MiB",
				      method, plen, path, max_bytes >> 20);
		else
			k8s_error_set(err, 0, "ResponseTooLarge",
				      "the Kubernetes API answer to %s %.*s is "
				      "larger than %zu bytes",
				      method, plen, path, max_bytes);
		return -EFBIG;
	case CURLE_OPERATION_TIMEDOUT:
		if (pretransfer > 0) {
			k8s_error_set(err, 0, "Timeout",
				      "Kubernetes API request timed out after "
				      "%s (%s %.*s)",
				      duration_text(sh->request_timeout_ms,
						    dbuf, sizeof(dbuf)),
				      method, plen, path);
			return -ETIMEDOUT;
		}
		k8s_error_set(err, 0, "Unreachable",
			      "cannot reach the Kubernetes API at %s: "
			      "connection timed out after %s",
			      sh->api_server,
			      duration_text(sh->connect_timeout_ms <
						    sh->request_timeout_ms
						? sh->connect_timeout_ms
						: sh->request_timeout_ms,
					    dbuf, sizeof(dbuf)));
		return -ECONNREFUSED;
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		if (oserr && rc == CURLE_COULDNT_CONNECT)
			detail = errstr((int)oserr, ebuf, sizeof(ebuf));
		k8s_error_set(err, 0, "Unreachable",
			      "cannot reach the Kubernetes API at %s: %s",
			      sh->api_server, detail);
		return -ECONNREFUSED;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ENGINE_INITFAILED:
		k8s_error_set(err, 0, "TLSError",
			      "TLS with the Kubernetes API at %s failed: %s",
			      sh->api_server, detail);
		return -EPROTO;
	default:
		break;
	}
	k8s_error_set(err, 0, "TransportError",
		      "request to the Kubernetes API at %s failed (%s %.*s): "
		      "%s",
		      sh->api_server, method, plen, path, detail);
	return -EIO;
}

/* One attempt with @token; 0 with *status, or a transport error. */
static int send_once(struct k8s_client *c, const struct k8s_request *req,
		     const char *url, const char *token, long *status,
		     struct k8s_error *err)
{
	struct curl_slist *hdrs = build_headers(req, token);
	CURLcode rc;
	int ret = 0;

	c->resp.len = 0;
	c->resp.overflow = false;
	c->resp_max =
	    req->max_response ? req->max_response : K8S_MAX_RESPONSE_BYTES;
	if (req->keep_headers && !c->resp_headers)
		c->resp_headers = json_object();
	json_object_clear(c->resp_headers);
	if (c->resp.data)
		c->resp.data[0] = '\0';
	c->errbuf[0] = '\0';
	setup_handle(c, req, url, hdrs);
	rc = curl_easy_perform(c->curl);
	if (rc != CURLE_OK) {
		ret = k8s_transport_error(c->sh, c->curl, c->errbuf, rc,
					  c->resp.overflow, c->resp_max,
					  req->method, req->path, err);
		goto out_free_headers;
	}
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, status);
out_free_headers:
	/* Drop the handle's pointer to the list before freeing it. */
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hdrs);
	return ret;
}

int k8s_client_send(struct k8s_client *c, const struct k8s_request *req,
		    long *status, const char **body, size_t *body_len,
		    struct k8s_error *err)
{
	char *url = k8s_strdup_printf("%s%s", c->sh->api_server, req->path);
	char *token = token_get(c->sh);
	char *fresh;
	int64_t t0 = clock_mono_ms();
	int ret;

	*status = 0;
	ret = send_once(c, req, url, token, status, err);
	if (ret == 0 && *status == 401) {
		fresh = token_after_401(c->sh, token);
		if (fresh) {
			LOG_INFO("Kubernetes API answered 401, retrying with "
				 "the re-read token",
				 "method=%s", req->method);
			free(token);
			token = fresh;
			ret = send_once(c, req, url, token, status, err);
		}
	}
	LOG_DEBUG("k8s request",
		  "method=%s path=\"%s\" status=%ld rc=%d "
		  "ms=%lld",
		  req->method, req->path, *status, ret,
		  (long long)(clock_mono_ms() - t0));
	*body = c->resp.data ? c->resp.data : "";
	*body_len = c->resp.len;
	free(url);
	free(token);
	return ret;
}

int k8s_call(struct k8s_client *c, const char *method, const char *path,
	     const char *content_type, json_t *body, json_t **out, long *status,
	     struct k8s_error *err)
{
	struct k8s_request req = {.method = method, .path = path};
	char *text = NULL;
	const char *resp;
	size_t resp_len;
	long st = 0;
	json_t *doc;
	json_error_t jerr;
	int ret;
	int plen = (int)strcspn(path, "?");

	if (out)
		*out = NULL;
	if (body) {
		text = json_dumps(body, JSON_COMPACT);
		if (!text) {
			k8s_error_set(err, 0, "InternalError",
				      "cannot encode the request body for "
				      "%s %.*s",
				      method, plen, path);
			return -EINVAL;
		}
		req.body = text;
		req.body_len = strlen(text);
		req.content_type =
		    content_type ? content_type : "application/json";
	}
	ret = k8s_client_send(c, &req, &st, &resp, &resp_len, err);
	if (status)
		*status = st;
	if (ret < 0)
		goto out_free_text;
	if (st < 200 || st > 299) {
		k8s_status_to_error(st, resp, resp_len, method, path, err);
		ret = -EPROTO;
		goto out_free_text;
	}
	if (!out)
		goto out_free_text;
	if (resp_len == 0) {
		*out = json_object();
		goto out_free_text;
	}
	doc = json_loadb(resp, resp_len, 0, &jerr);
	if (!doc) {
		k8s_error_set(err, 0, "InvalidResponse",
			      "the Kubernetes API answered %s %.*s with HTTP "
			      "%ld but the body is not JSON: %s",
			      method, plen, path, st, jerr.text);
		ret = -EBADMSG;
		goto out_free_text;
	}
	*out = doc;
out_free_text:
	free(text);
	return ret;
}
