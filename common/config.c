/*
 * config: the INI file of CONFIG.md (see config.h).
 *
 * inih does the splitting, but it reads through our own line reader, which
 * numbers the lines, rejects lines longer than CONFIG_MAX_LINE (inih would
 * truncate them and invent a phantom line from the rest), reports syntax
 * errors and unknown sections itself, and hands inih only lines it can
 * parse; inih's own error return stays as a backstop. The key handler looks
 * the key up in one table and stores the parsed value. Checks that involve
 * several keys, files or the environment run once the whole text is read.
 *
 * Inline comments are handled here, not by inih, so that a quoted value may
 * contain " ;". The inih globals are process-wide: they are set once, and
 * configs are loaded from the main thread only.
 */
#include "common/config.h"

#include "common/log.h"
#include "common/util.h"

#include <ctype.h>
#include <errno.h>
#include <sys/stat.h>

#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>
#include <ini.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define INI_LINE_BUF	8192	      /* ini_max_line; > CONFIG_MAX_LINE */
#define MAX_FILE_BYTES	(1024 * 1024) /* the INI file itself */
#define MAX_TOKEN_BYTES (64 * 1024)   /* a token_file */
#define SHOWN_MAX	60	      /* value characters quoted in messages */

#define SEC_MS	INT64_C(1000)
#define MIN_MS	(60 * SEC_MS)
#define HOUR_MS (60 * MIN_MS)
#define KIB	INT64_C(1024)
#define MIB	(1024 * KIB)
#define GIB	(1024 * MIB)

static const char default_sa_dir[] =
    "/var/run/secrets/kubernetes.io/serviceaccount";
static const char *sa_dir = default_sa_dir;

enum section_id {
	SEC_AGENT,
	SEC_CP,
	SEC_RUNNER,
	SEC_K8S,
	SEC_HEALTH,
	N_SECTIONS
};

static const char *const section_names[N_SECTIONS] = {
    "agent", "control_plane", "runner", "kubernetes", "health",
};

enum key_type {
	T_STR,	      /* char *; empty: NULL */
	T_ID,	      /* char *; [A-Za-z0-9._-], 1..128 */
	T_NAMESPACE,  /* char *; DNS-1123 label */
	T_URL_WS,     /* char *; http/https/ws/wss URL with a host */
	T_URL_HTTP,   /* char *; http/https URL with a host */
	T_URL_PROXY,  /* char *; http:// URL with a host (CONNECT proxy) */
	T_LISTEN,     /* char *; host:port or [v6]:port; empty: NULL (off) */
	T_DURATION,   /* int64_t milliseconds */
	T_SIZE,	      /* size_t bytes */
	T_COUNT,      /* size_t */
	T_INT,	      /* int */
	T_BOOL,	      /* bool */
	T_LABELS,     /* cfg->labels */
	T_PREFIXES,   /* cfg->k8s_proxy_deny */
	T_LOG_LEVEL,  /* cfg->log_level */
	T_LOG_TARGET, /* cfg->log_target, log_file */
};

enum key_flag {
	F_NONEMPTY = 1 << 0, /* empty value is an error */
	F_ABSOLUTE = 1 << 1, /* path must start with '/' */
	F_READABLE = 1 << 2, /* file must be readable now */
	F_SECRET = 1 << 3,   /* never echo the value */
	F_ZERO_OK = 1 << 4,  /* 0 allowed besides min..max */
	F_PEM_CERT = 1 << 5, /* must hold PEM/DER certificates mbedTLS reads */
	F_PEM_KEY = 1 << 6,  /* must hold an unencrypted private key */
};

struct key_def {
	enum section_id sec;
	const char *name;
	enum key_type type;
	size_t off;	  /* offset in struct config */
	int64_t min, max; /* numeric range (ms for durations) */
	unsigned flags;
};

#define OFF(m) offsetof(struct config, m)

/* Keys that [control_plane] and [runner] share; @m is the member. */
/* clang-format off */
#define ENDPOINT_KEYS(sec, m)                                               \
	{ sec, "ca_file", T_STR, OFF(m.ca_file), 0, 0,                      \
	  F_READABLE | F_PEM_CERT },                                         \
	{ sec, "client_cert", T_STR, OFF(m.client_cert), 0, 0,              \
	  F_READABLE | F_PEM_CERT },                                         \
	{ sec, "client_key", T_STR, OFF(m.client_key), 0, 0,                \
	  F_READABLE | F_PEM_KEY },                                          \
	{ sec, "insecure_skip_verify", T_BOOL,                              \
	  OFF(m.insecure_skip_verify), 0, 0, 0 },                           \
	{ sec, "proxy", T_URL_PROXY, OFF(m.proxy), 0, 0, F_SECRET },         \
	{ sec, "connect_timeout", T_DURATION, OFF(m.connect_timeout_ms),    \
	  100, 10 * MIN_MS, 0 },                                            \
	{ sec, "ping_interval", T_DURATION, OFF(m.ping_interval_ms),        \
	  SEC_MS, HOUR_MS, 0 },                                             \
	{ sec, "ping_timeout", T_DURATION, OFF(m.ping_timeout_ms),          \
	  SEC_MS, 2 * HOUR_MS, 0 },                                         \
	{ sec, "reconnect_initial", T_DURATION,                             \
	  OFF(m.reconnect_initial_ms), 100, HOUR_MS, 0 },                   \
	{ sec, "reconnect_max", T_DURATION, OFF(m.reconnect_max_ms),        \
	  SEC_MS, 24 * HOUR_MS, 0 },                                        \
	{ sec, "max_message_bytes", T_SIZE, OFF(m.max_message_bytes),       \
	  KIB, GIB, 0 }

static const struct key_def keys[] = {
	{ SEC_AGENT, "id", T_ID, OFF(id), 0, 0, 0 },
	{ SEC_AGENT, "name", T_STR, OFF(name), 0, 0, 0 },
	{ SEC_AGENT, "cluster_name", T_STR, OFF(cluster_name), 0, 0, 0 },
	{ SEC_AGENT, "labels", T_LABELS, 0, 0, 0, 0 },
	{ SEC_AGENT, "workers", T_INT, OFF(workers), 1, 64, 0 },
	{ SEC_AGENT, "state_dir", T_STR, OFF(state_dir), 0, 0,
	  F_NONEMPTY | F_ABSOLUTE },
	{ SEC_AGENT, "pid_file", T_STR, OFF(pid_file), 0, 0,
	  F_NONEMPTY | F_ABSOLUTE },
	{ SEC_AGENT, "log_level", T_LOG_LEVEL, 0, 0, 0, 0 },
	{ SEC_AGENT, "log_target", T_LOG_TARGET, 0, 0, 0, 0 },
	{ SEC_AGENT, "shutdown_timeout", T_DURATION, OFF(shutdown_timeout_ms),
	  0, HOUR_MS, 0 },

	{ SEC_CP, "endpoint", T_URL_WS, OFF(control_plane.endpoint), 0, 0,
	  F_NONEMPTY },
	{ SEC_CP, "token", T_STR, OFF(control_plane.token), 0, 0, F_SECRET },
	{ SEC_CP, "token_file", T_STR, OFF(control_plane.token_file), 0, 0,
	  0 },
	ENDPOINT_KEYS(SEC_CP, control_plane),
	{ SEC_CP, "heartbeat_interval", T_DURATION,
	  OFF(control_plane.heartbeat_interval_ms), SEC_MS, HOUR_MS, 0 },
	{ SEC_CP, "status_interval", T_DURATION,
	  OFF(control_plane.status_interval_ms), SEC_MS, 24 * HOUR_MS,
	  F_ZERO_OK },
	{ SEC_CP, "register_timeout", T_DURATION,
	  OFF(control_plane.register_timeout_ms), SEC_MS, HOUR_MS, 0 },

	ENDPOINT_KEYS(SEC_RUNNER, runner),
	{ SEC_RUNNER, "outbox_max_messages", T_COUNT,
	  OFF(runner.outbox_max_messages), 1, 1000000, 0 },
	{ SEC_RUNNER, "outbox_max_bytes", T_SIZE,
	  OFF(runner.outbox_max_bytes), MIB, 64 * GIB, 0 },
	{ SEC_RUNNER, "dedup_window", T_COUNT, OFF(runner.dedup_window), 1,
	  1048576, 0 },
	{ SEC_RUNNER, "max_streams", T_COUNT, OFF(runner.max_streams), 1,
	  100000, 0 },

	{ SEC_K8S, "in_cluster", T_BOOL, OFF(k8s_in_cluster), 0, 0, 0 },
	{ SEC_K8S, "api_server", T_URL_HTTP, OFF(k8s_api_server), 0, 0,
	  F_NONEMPTY },
	{ SEC_K8S, "token_file", T_STR, OFF(k8s_token_file), 0, 0, 0 },
	{ SEC_K8S, "ca_file", T_STR, OFF(k8s_ca_file), 0, 0,
	  F_READABLE | F_PEM_CERT },
	{ SEC_K8S, "insecure_skip_verify", T_BOOL,
	  OFF(k8s_insecure_skip_verify), 0, 0, 0 },
	{ SEC_K8S, "namespace", T_NAMESPACE, OFF(k8s_namespace), 0, 0, 0 },
	{ SEC_K8S, "request_timeout", T_DURATION, OFF(k8s_request_timeout_ms),
	  SEC_MS, HOUR_MS, 0 },
	{ SEC_K8S, "connect_timeout", T_DURATION, OFF(k8s_connect_timeout_ms),
	  100, 10 * MIN_MS, 0 },
	{ SEC_K8S, "proxy_deny", T_PREFIXES, 0, 0, 0, 0 },
	{ SEC_K8S, "max_log_bytes", T_SIZE, OFF(k8s_max_log_bytes), KIB,
	  64 * MIB, 0 },

	{ SEC_HEALTH, "listen", T_LISTEN, OFF(health_listen), 0, 0, 0 },
};

/* clang-format on */

#define N_KEYS ARRAY_SIZE(keys)

/* A config and its reference count; only config_load*() make them. */
struct config_box {
	atomic_int refs;
	struct config cfg;
};

struct parse_ctx {
	struct config *cfg;
	struct config_diags d;
	size_t d_cap;
	const char *pos, *end;	      /* reader: the text left */
	int lineno;		      /* reader: the line inih now has */
	int section_line[N_SECTIONS]; /* first header of each section */
	int key_line[N_KEYS];	      /* last line that set each key */
};

/* ---- messages ---- */

static void diag_add(struct parse_ctx *ctx, int line, bool is_error,
		     const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void diag_add(struct parse_ctx *ctx, int line, bool is_error,
		     const char *fmt, ...)
{
	struct config_diag *dg;
	va_list ap;
	char *text;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	text = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(text, (size_t)n + 1, fmt, ap);
	va_end(ap);

	if (ctx->d.n == ctx->d_cap) {
		ctx->d_cap = ctx->d_cap ? 2 * ctx->d_cap : 8;
		ctx->d.items =
		    xrealloc(ctx->d.items, ctx->d_cap * sizeof(*ctx->d.items));
	}
	dg = &ctx->d.items[ctx->d.n++];
	dg->line = line;
	dg->is_error = is_error;
	dg->text = text;
	if (is_error)
		ctx->d.n_errors++;
}

/* @v quoted for a message: at most SHOWN_MAX characters, printable. */
static const char *shown(const char *v, char *buf, size_t len)
{
	size_t i, n = strlen(v);
	size_t max = len > 6 ? len - 6 : 0;
	size_t o = 0;

	if (max > SHOWN_MAX)
		max = SHOWN_MAX;
	buf[o++] = '"';
	for (i = 0; i < n && i < max; i++) {
		unsigned char c = (unsigned char)v[i];

		buf[o++] = isprint(c) ? (char)c : '?';
	}
	if (i < n) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

/* Like shown(), without the quotes: for key and section names. */
static const char *bare(const char *v, char *buf, size_t len)
{
	size_t n = strlen(shown(v, buf, len));

	memmove(buf, buf + 1, n - 2);
	buf[n - 2] = '\0';
	return buf;
}

/* "1h", "90s", "500ms": the largest unit that divides @ms. */
static const char *fmt_duration(int64_t ms, char *buf, size_t len)
{
	if (ms && ms % HOUR_MS == 0)
		return strfmt(buf, len, "%" PRId64 "h", ms / HOUR_MS);
	if (ms && ms % MIN_MS == 0)
		return strfmt(buf, len, "%" PRId64 "m", ms / MIN_MS);
	if (ms % SEC_MS == 0)
		return strfmt(buf, len, "%" PRId64 "s", ms / SEC_MS);
	return strfmt(buf, len, "%" PRId64 "ms", ms);
}

static const char *fmt_size(int64_t n, char *buf, size_t len)
{
	if (n && n % GIB == 0)
		return strfmt(buf, len, "%" PRId64 "G", n / GIB);
	if (n && n % MIB == 0)
		return strfmt(buf, len, "%" PRId64 "M", n / MIB);
	if (n && n % KIB == 0)
		return strfmt(buf, len, "%" PRId64 "K", n / KIB);
	return strfmt(buf, len, "%" PRId64, n);
}

/* ---- value parsers ---- */

/* Leading decimal digits of @s into @out; @rest gets what follows. */
static int parse_digits(const char *s, uint64_t *out, const char **rest)
{
	uint64_t v = 0;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	for (; isdigit((unsigned char)*s); s++) {
		uint64_t digit = (uint64_t)(*s - '0');

		if (v > (UINT64_MAX - digit) / 10)
			return -EINVAL;
		v = v * 10 + digit;
	}
	*out = v;
	*rest = s;
	return 0;
}

int config_parse_duration_ms(const char *s, int64_t *out)
{
	const char *unit;
	uint64_t v, mult;

	if (!s || parse_digits(s, &v, &unit))
		return -EINVAL;
	if (!strcmp(unit, "ms"))
		mult = 1;
	else if (!*unit || !strcmp(unit, "s"))
		mult = 1000;
	else if (!strcmp(unit, "m"))
		mult = 60 * 1000;
	else if (!strcmp(unit, "h"))
		mult = 3600 * 1000;
	else
		return -EINVAL;
	if (v > (uint64_t)INT64_MAX / mult)
		return -EINVAL;
	*out = (int64_t)(v * mult);
	return 0;
}

int config_parse_size(const char *s, size_t *out)
{
	const char *unit;
	uint64_t v, mult;

	if (!s || parse_digits(s, &v, &unit))
		return -EINVAL;
	if (!*unit)
		mult = 1;
	else if (!strcmp(unit, "K") || !strcmp(unit, "k"))
		mult = 1024;
	else if (!strcmp(unit, "M") || !strcmp(unit, "m"))
		mult = 1024 * 1024;
	else if (!strcmp(unit, "G") || !strcmp(unit, "g"))
		mult = 1024 * 1024 * 1024;
	else
		return -EINVAL;
	if (v > (uint64_t)SIZE_MAX / mult)
		return -EINVAL;
	*out = (size_t)(v * mult);
	return 0;
}

int config_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};

	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (!strcasecmp(s, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcasecmp(s, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

static bool has_space(const char *s)
{
	for (; *s; s++)
		if (isspace((unsigned char)*s))
			return true;
	return false;
}

/*
 * True when @v is scheme://[userinfo@]host[:port][/...] with a scheme from
 * @schemes (NULL-terminated) and a non-empty host. Full parsing is the URL
 * module's job.
 */
static bool url_ok(const char *v, const char *const *schemes)
{
	const char *sep = strstr(v, "://");
	const char *auth, *auth_end, *host, *at;
	bool scheme_ok = false;

	if (!sep || has_space(v))
		return false;
	for (; *schemes; schemes++)
		if (strlen(*schemes) == (size_t)(sep - v) &&
		    !strncasecmp(v, *schemes, (size_t)(sep - v)))
			scheme_ok = true;
	if (!scheme_ok)
		return false;
	auth = sep + 3;
	auth_end = auth + strcspn(auth, "/?#");
	host = auth;
	for (at = auth; at < auth_end; at++)
		if (*at == '@')
			host = at + 1;
	if (host == auth_end || *host == ':')
		return false;
	if (*host == '[') {
		const char *close =
		    memchr(host, ']', (size_t)(auth_end - host));

		if (!close || close == host + 1)
			return false;
		if (close + 1 != auth_end && close[1] != ':')
			return false;
	}
	return true;
}

static bool port_ok(const char *p)
{
	uint64_t v;
	const char *rest;

	return !parse_digits(p, &v, &rest) && !*rest && v >= 1 && v <= 65535;
}

/* host:port or [v6]:port, host not empty. */
static bool listen_ok(const char *v)
{
	const char *colon;

	if (has_space(v))
		return false;
	if (*v == '[') {
		const char *close = strchr(v, ']');

		return close && close > v + 1 && close[1] == ':' &&
		       port_ok(close + 2);
	}
	colon = strchr(v, ':');
	return colon && colon > v && !strchr(colon + 1, ':') &&
	       port_ok(colon + 1);
}

static bool id_ok(const char *v)
{
	size_t n = strlen(v);

	if (n < 1 || n > 128)
		return false;
	for (; *v; v++)
		if (!isalnum((unsigned char)*v) && !strchr("._-", *v))
			return false;
	return true;
}

/* DNS-1123 label: [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63. */
static bool namespace_ok(const char *v)
{
	size_t n = strlen(v);

	if (n < 1 || n > 63 || v[0] == '-' || v[n - 1] == '-')
		return false;
	for (; *v; v++)
		if (!(*v >= 'a' && *v <= 'z') && !isdigit((unsigned char)*v) &&
		    *v != '-')
			return false;
	return true;
}

static bool label_key_ok(const char *k)
{
	if (!*k || strlen(k) > 253)
		return false;
	for (; *k; k++)
		if (!isalnum((unsigned char)*k) && !strchr("._/-", *k))
			return false;
	return true;
}

/* A new string: @s[0..n) without surrounding white space. */
static char *dup_trimmed(const char *s, size_t n)
{
	while (n && isspace((unsigned char)*s)) {
		s++;
		n--;
	}
	while (n && isspace((unsigned char)s[n - 1]))
		n--;
	return xstrndup(s, n);
}

static void labels_free(struct config_label *l, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(l[i].key);
		free(l[i].value);
	}
	free(l);
}

static void strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* "k=v, k2=v2" into cfg->labels; on error the old list stays. */
static void set_labels(struct parse_ctx *ctx, const struct key_def *def,
		       int line, const char *v)
{
	struct config_label *l = NULL;
	size_t n = 0;
	const char *p = v;
	char buf[SHOWN_MAX + 8];

	while (*v) {
		size_t len = strcspn(p, ",");
		char *item = dup_trimmed(p, len);
		char *eq = strchr(item, '=');
		char *key;

		if (!*item || !eq) {
			diag_add(ctx, line, true,
				 "[%s] %s: %s is not key=value "
				 "(e.g. team=a, env=prod)",
				 section_names[def->sec], def->name,
				 shown(item, buf, sizeof(buf)));
			free(item);
			goto out_free;
		}
		key = dup_trimmed(item, (size_t)(eq - item));
		if (!label_key_ok(key)) {
			diag_add(ctx, line, true,
				 "[%s] %s: %s is not a valid label key "
				 "(letters, digits, '.', '_', '/', '-')",
				 section_names[def->sec], def->name,
				 shown(key, buf, sizeof(buf)));
			free(key);
			free(item);
			goto out_free;
		}
		for (size_t i = 0; i < n; i++) {
			if (!strcmp(l[i].key, key)) {
				diag_add(ctx, line, true,
					 "[%s] %s: label %s given twice",
					 section_names[def->sec], def->name,
					 shown(key, buf, sizeof(buf)));
				free(key);
				free(item);
				goto out_free;
			}
		}
		l = xrealloc(l, (n + 1) * sizeof(*l));
		l[n].key = key;
		l[n].value = dup_trimmed(eq + 1, strlen(eq + 1));
		n++;
		free(item);
		if (!p[len])
			break;
		p += len + 1;
	}
	labels_free(ctx->cfg->labels, ctx->cfg->n_labels);
	ctx->cfg->labels = l;
	ctx->cfg->n_labels = n;
	return;

out_free:
	labels_free(l, n);
}

/* "/api/v1/secrets, /apis/x" into cfg->k8s_proxy_deny. */
static void set_prefixes(struct parse_ctx *ctx, const struct key_def *def,
			 int line, const char *v)
{
	char **list = NULL;
	size_t n = 0;
	const char *p = v;
	char buf[SHOWN_MAX + 8];

	while (*v) {
		size_t len = strcspn(p, ",");
		char *item = dup_trimmed(p, len);

		if (item[0] != '/' || has_space(item)) {
			diag_add(ctx, line, true,
				 "[%s] %s: %s is not a path prefix "
				 "(e.g. /api/v1/secrets)",
				 section_names[def->sec], def->name,
				 shown(item, buf, sizeof(buf)));
			free(item);
			strv_free(list, n);
			return;
		}
		list = xrealloc(list, (n + 1) * sizeof(*list));
		list[n++] = item;
		if (!p[len])
			break;
		p += len + 1;
	}
	strv_free(ctx->cfg->k8s_proxy_deny, ctx->cfg->n_k8s_proxy_deny);
	ctx->cfg->k8s_proxy_deny = list;
	ctx->cfg->n_k8s_proxy_deny = n;
}

static void set_log_target(struct parse_ctx *ctx, const struct key_def *def,
			   int line, const char *v)
{
	struct config *cfg = ctx->cfg;
	char buf[SHOWN_MAX + 8];

	if (!strcmp(v, "syslog")) {
		cfg->log_target = LOG_TARGET_SYSLOG;
	} else if (!strcmp(v, "stderr")) {
		cfg->log_target = LOG_TARGET_STDERR;
	} else if (!strncmp(v, "file:", 5) && v[5] == '/') {
		cfg->log_target = LOG_TARGET_FILE;
		free(cfg->log_file);
		cfg->log_file = xstrdup(v + 5);
	} else {
		diag_add(ctx, line, true,
			 "[%s] %s: %s is not syslog, stderr or file:/path",
			 section_names[def->sec], def->name,
			 shown(v, buf, sizeof(buf)));
		return;
	}
	if (cfg->log_target != LOG_TARGET_FILE) {
		free(cfg->log_file);
		cfg->log_file = NULL;
	}
	cfg->log_target_set = true;
}

static void *field(struct config *cfg, const struct key_def *def)
{
	return (char *)cfg + def->off;
}

/* A numeric value outside def->min..max: the error, in the key's units. */
static void range_error(struct parse_ctx *ctx, const struct key_def *def,
			int line, const char *v)
{
	char lo[32], hi[32], buf[SHOWN_MAX + 8];
	const char *(*fmt)(int64_t, char *, size_t) = NULL;

	if (def->type == T_DURATION)
		fmt = fmt_duration;
	else if (def->type == T_SIZE)
		fmt = fmt_size;
	if (fmt) {
		fmt(def->min, lo, sizeof(lo));
		fmt(def->max, hi, sizeof(hi));
	} else {
		strfmt(lo, sizeof(lo), "%" PRId64, def->min);
		strfmt(hi, sizeof(hi), "%" PRId64, def->max);
	}
	diag_add(ctx, line, true, "[%s] %s: %s is out of range (%s%s..%s)",
		 section_names[def->sec], def->name, shown(v, buf, sizeof(buf)),
		 def->flags & F_ZERO_OK ? "0 or " : "", lo, hi);
}

static bool in_range(const struct key_def *def, int64_t v)
{
	if (v == 0 && (def->flags & F_ZERO_OK))
		return true;
	return v >= def->min && v <= def->max;
}

/* Store string value @v (NULL: empty) after the checks of its type. */

/*
 * Can mbedTLS load @path as certificates (or, with @key, a private key)?
 * Checked at load time so that `-t` and a reload catch a bad file, instead
 * of every later connection failing.
 */
static bool pem_loads(const char *path, bool key, char *why, size_t len)
{
	int rc;

	if (key) {
		mbedtls_pk_context pk;

		mbedtls_pk_init(&pk);
		rc = mbedtls_pk_parse_keyfile(&pk, path, NULL);
		mbedtls_pk_free(&pk);
	} else {
		mbedtls_x509_crt crt;

		mbedtls_x509_crt_init(&crt);
		rc = mbedtls_x509_crt_parse_file(&crt, path);
		/* A bundle may hold a few certificates mbedTLS cannot
		 * parse (rc > 0); it must hold at least one it can. */
		if (rc > 0 && crt.version == 0)
			rc = -1;
		mbedtls_x509_crt_free(&crt);
	}
	if (rc >= 0)
		return true;
	if (rc == -1)
		snprintf(why, len, "no certificate in it could be parsed");
	else {
		char text[96];

		mbedtls_strerror(rc, text, sizeof(text));
		snprintf(why, len, "not a usable %s (%s)",
			 key ? "unencrypted private key" : "certificate file",
			 text);
	}
	return false;
}
static void set_string(struct parse_ctx *ctx, const struct key_def *def,
		       int line, char *v)
{
	char **slot = field(ctx->cfg, def);
	const char *sec = section_names[def->sec];
	char buf[SHOWN_MAX + 8];
	char errbuf[128];
	const char *what = NULL;
	struct stat st;
	static const char *const ws_schemes[] = {"http", "https", "ws", "wss",
						 NULL};
	static const char *const http_schemes[] = {"http", "https", NULL};
	static const char *const proxy_schemes[] = {"http", NULL};

	if (!v) {
		if (def->flags & F_NONEMPTY || def->type == T_NAMESPACE) {
			diag_add(ctx, line, true, "[%s] %s: must not be empty",
				 sec, def->name);
			return;
		}
		free(*slot);
		*slot = NULL;
		return;
	}
	switch (def->type) {
	case T_ID:
		if (!id_ok(v))
			what = "is not an id (1..128 of letters, digits, "
			       "'.', '_', '-')";
		break;
	case T_NAMESPACE:
		if (!namespace_ok(v))
			what = "is not a namespace name (lower-case letters, "
			       "digits and '-', at most 63)";
		break;
	case T_URL_WS:
		if (!url_ok(v, ws_schemes))
			what = "is not a URL with scheme http, https, ws or "
			       "wss and a host";
		break;
	case T_URL_HTTP:
		if (!url_ok(v, http_schemes))
			what = "is not a URL with scheme http or https and a "
			       "host";
		break;
	case T_URL_PROXY:
		/* The agent speaks plain HTTP CONNECT to its proxy. */
		if (!url_ok(v, proxy_schemes))
			what =
			    "is not an http:// proxy URL with a host (TLS to "
			    "the proxy itself is not supported)";
		break;
	case T_LISTEN:
		if (!listen_ok(v))
			what = "is not host:port (e.g. 127.0.0.1:9464, "
			       "[::1]:9464)";
		break;
	default:
		break;
	}
	if (what) {
		if (def->flags & F_SECRET)
			diag_add(ctx, line, true, "[%s] %s: value %s", sec,
				 def->name, what);
		else
			diag_add(ctx, line, true, "[%s] %s: %s %s", sec,
				 def->name, shown(v, buf, sizeof(buf)), what);
		free(v);
		return;
	}
	if ((def->flags & F_ABSOLUTE) && v[0] != '/') {
		diag_add(ctx, line, true, "[%s] %s: %s is not an absolute path",
			 sec, def->name, shown(v, buf, sizeof(buf)));
		free(v);
		return;
	}
	if ((def->flags & F_READABLE) && access(v, R_OK)) {
		diag_add(ctx, line, true, "[%s] %s: cannot read %s: %s", sec,
			 def->name, shown(v, buf, sizeof(buf)),
			 errstr(errno, errbuf, sizeof(errbuf)));
		free(v);
		return;
	}
	if ((def->flags & F_READABLE) && stat(v, &st) == 0 &&
	    S_ISDIR(st.st_mode)) {
		diag_add(ctx, line, true,
			 "[%s] %s: %s: is a directory, not a file", sec,
			 def->name, shown(v, buf, sizeof(buf)));
		free(v);
		return;
	}
	if ((def->flags & (F_PEM_CERT | F_PEM_KEY)) &&
	    !pem_loads(v, def->flags & F_PEM_KEY, errbuf, sizeof(errbuf))) {
		diag_add(ctx, line, true, "[%s] %s: %s: %s", sec, def->name,
			 shown(v, buf, sizeof(buf)), errbuf);
		free(v);
		return;
	}
	free(*slot);
	*slot = v;
}

/* Parse @v (owned, NULL: empty) for @def and store it in the config. */
static void set_value(struct parse_ctx *ctx, const struct key_def *def,
		      int line, char *v)
{
	const char *sec = section_names[def->sec];
	const char *s = v ? v : "";
	char buf[SHOWN_MAX + 8];
	int64_t ms;
	size_t size;
	uint64_t u;
	const char *rest;
	bool b;
	int level;

	switch (def->type) {
	case T_STR:
	case T_ID:
	case T_NAMESPACE:
	case T_URL_WS:
	case T_URL_HTTP:
	case T_URL_PROXY:
	case T_LISTEN:
		set_string(ctx, def, line, v);
		return;
	case T_DURATION:
		if (config_parse_duration_ms(s, &ms))
			diag_add(ctx, line, true,
				 "[%s] %s: %s is not a duration "
				 "(e.g. 20s, 500ms, 1m)",
				 sec, def->name, shown(s, buf, sizeof(buf)));
		else if (!in_range(def, ms))
			range_error(ctx, def, line, s);
		else
			*(int64_t *)field(ctx->cfg, def) = ms;
		break;
	case T_SIZE:
		if (config_parse_size(s, &size))
			diag_add(ctx, line, true,
				 "[%s] %s: %s is not a size "
				 "(e.g. 16M, 512K, 1048576)",
				 sec, def->name, shown(s, buf, sizeof(buf)));
		else if (size > INT64_MAX || !in_range(def, (int64_t)size))
			range_error(ctx, def, line, s);
		else
			*(size_t *)field(ctx->cfg, def) = size;
		break;
	case T_COUNT:
	case T_INT:
		if (parse_digits(s, &u, &rest) || *rest)
			diag_add(ctx, line, true,
				 "[%s] %s: %s is not a whole number", sec,
				 def->name, shown(s, buf, sizeof(buf)));
		else if (u > INT64_MAX || !in_range(def, (int64_t)u))
			range_error(ctx, def, line, s);
		else if (def->type == T_INT)
			*(int *)field(ctx->cfg, def) = (int)u;
		else
			*(size_t *)field(ctx->cfg, def) = (size_t)u;
		break;
	case T_BOOL:
		if (config_parse_bool(s, &b))
			diag_add(ctx, line, true,
				 "[%s] %s: %s is not a boolean (true/false, "
				 "yes/no, on/off, 1/0)",
				 sec, def->name, shown(s, buf, sizeof(buf)));
		else
			*(bool *)field(ctx->cfg, def) = b;
		break;
	case T_LABELS:
		set_labels(ctx, def, line, s);
		break;
	case T_PREFIXES:
		set_prefixes(ctx, def, line, s);
		break;
	case T_LOG_LEVEL:
		level = log_parse_level(s);
		if (level < 0)
			diag_add(ctx, line, true,
				 "[%s] %s: %s is not error, warn, info or "
				 "debug",
				 sec, def->name, shown(s, buf, sizeof(buf)));
		else
			ctx->cfg->log_level = level;
		break;
	case T_LOG_TARGET:
		set_log_target(ctx, def, line, s);
		break;
	}
	free(v);
}

/* ---- lines and keys ---- */

static int section_find(const char *name, size_t len)
{
	for (int i = 0; i < N_SECTIONS; i++)
		if (strlen(section_names[i]) == len &&
		    !strncasecmp(name, section_names[i], len))
			return i;
	return -1;
}

static int key_find(int sec, const char *name)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if ((int)keys[i].sec == sec && !strcasecmp(keys[i].name, name))
			return (int)i;
	return -1;
}

/*
 * The value as written: surrounding "" removed, or else an inline comment
 * (a ';' at the start or after white space) cut off. NULL for an empty
 * value, or on an error (reported; *@bad set).
 */
static char *unquote(struct parse_ctx *ctx, const struct key_def *def, int line,
		     const char *raw, bool *bad)
{
	const char *sec = section_names[def->sec];
	const char *p, *close;
	size_t n;

	*bad = false;
	if (raw[0] == '"') {
		close = strchr(raw + 1, '"');
		if (!close) {
			diag_add(ctx, line, true,
				 "[%s] %s: missing closing quote", sec,
				 def->name);
			*bad = true;
			return NULL;
		}
		for (p = close + 1; isspace((unsigned char)*p); p++)
			;
		if (*p && !(*p == ';' && p > close + 1)) {
			diag_add(ctx, line, true,
				 "[%s] %s: text after the closing quote", sec,
				 def->name);
			*bad = true;
			return NULL;
		}
		n = (size_t)(close - raw - 1);
		return n ? xstrndup(raw + 1, n) : NULL;
	}
	for (p = raw; *p; p++)
		if (*p == ';' && (p == raw || isspace((unsigned char)p[-1])))
			break;
	while (p > raw && isspace((unsigned char)p[-1]))
		p--;
	n = (size_t)(p - raw);
	return n ? xstrndup(raw, n) : NULL;
}

static int on_key(void *user, const char *section, const char *name,
		  const char *raw)
{
	struct parse_ctx *ctx = user;
	int line = ctx->lineno;
	int sec = section_find(section, strlen(section));
	int idx;
	const struct key_def *def;
	char buf[SHOWN_MAX + 8];
	char *v;
	bool bad;

	if (!*section) {
		diag_add(ctx, line, false,
			 "%s: key outside any section (ignored)",
			 bare(name, buf, sizeof(buf)));
		return 1;
	}
	if (sec < 0)
		return 1; /* warned at the section header */
	idx = key_find(sec, name);
	if (idx < 0) {
		diag_add(ctx, line, false, "[%s] %s: unknown key (ignored)",
			 section_names[sec], bare(name, buf, sizeof(buf)));
		return 1;
	}
	def = &keys[idx];
	if (ctx->key_line[idx])
		diag_add(ctx, line, false,
			 "[%s] %s: set again (first on line %d); the last "
			 "value wins",
			 section_names[sec], def->name, ctx->key_line[idx]);
	ctx->key_line[idx] = line;
	v = unquote(ctx, def, line, raw, &bad);
	if (!bad)
		set_value(ctx, def, line, v);
	return 1;
}

/*
 * Check a line the way inih will split it (inline comments off, multiline
 * off). Returns false after reporting a line inih would reject.
 */
static bool check_line(struct parse_ctx *ctx, const char *line)
{
	const char *s = line;
	const char *end;
	char buf[SHOWN_MAX + 8];

	if (ctx->lineno == 1 && !strncmp(s, "\xEF\xBB\xBF", 3))
		s += 3;
	while (isspace((unsigned char)*s))
		s++;
	if (!*s || *s == ';' || *s == '#')
		return true;
	if (*s == '[') {
		int sec;
		char *name;

		end = strchr(s + 1, ']');
		if (!end) {
			diag_add(ctx, ctx->lineno, true,
				 "section header without ']'");
			return false;
		}
		sec = section_find(s + 1, (size_t)(end - s - 1));
		if (sec < 0) {
			name = xstrndup(s + 1, (size_t)(end - s - 1));
			diag_add(ctx, ctx->lineno, false,
				 "[%s]: unknown section (its keys are "
				 "ignored)",
				 bare(name, buf, sizeof(buf)));
			free(name);
		} else if (!ctx->section_line[sec]) {
			ctx->section_line[sec] = ctx->lineno;
		}
		return true;
	}
	end = s + strcspn(s, "=:");
	if (!*end) {
		diag_add(ctx, ctx->lineno, true,
			 "syntax error: expected key = value, [section] or "
			 "a ; comment");
		return false;
	}
	if (end == s) {
		diag_add(ctx, ctx->lineno, true,
			 "syntax error: no key name before '%c'", *end);
		return false;
	}
	return true;
}

/* inih's reader: one line of the text, checked; rejected lines go blank. */
static char *read_line(char *out, int num, void *stream)
{
	struct parse_ctx *ctx = stream;
	const char *p = ctx->pos;
	const char *nl;
	size_t len, limit;

	if (p >= ctx->end || num < 3)
		return NULL;
	nl = memchr(p, '\n', (size_t)(ctx->end - p));
	len = nl ? (size_t)(nl - p) : (size_t)(ctx->end - p);
	ctx->pos = nl ? nl + 1 : ctx->end;
	ctx->lineno++;

	limit = (size_t)num - 2;
	if (limit > CONFIG_MAX_LINE)
		limit = CONFIG_MAX_LINE;
	if (len > limit) {
		diag_add(ctx, ctx->lineno, true,
			 "line is longer than %zu characters", limit);
		memcpy(out, "\n", 2);
		return out;
	}
	memcpy(out, p, len);
	out[len] = '\n';
	out[len + 1] = '\0';
	if (!check_line(ctx, out))
		memcpy(out, "\n", 2);
	return out;
}

/* ---- whole-file checks ---- */

static int line_of(const struct parse_ctx *ctx, enum section_id sec,
		   const char *name)
{
	int idx = key_find((int)sec, name);

	return idx < 0 ? 0 : ctx->key_line[idx];
}

/* The line to blame for a missing key: the key, its section, or 0. */
static int blame_line(const struct parse_ctx *ctx, enum section_id sec,
		      const char *name)
{
	int line = line_of(ctx, sec, name);

	return line ? line : ctx->section_line[sec];
}

static int max_int(int a, int b)
{
	return a > b ? a : b;
}

/* Read a token file into a new string, or report the problem. */
/* Read a token file. @warn_mode: warn when group or others can read it
 * (not for the service-account token, which Kubernetes mounts that way). */
static char *read_token(struct parse_ctx *ctx, int line, const char *what,
			const char *path, bool warn_mode)
{
	char buf[SHOWN_MAX + 8], errbuf[128];
	char *tok = file_read_trimmed(path, MAX_TOKEN_BYTES);
	struct stat st;

	if (!tok) {
		int e = errno;

		diag_add(ctx, line, true, "%s: cannot read %s: %s", what,
			 shown(path, buf, sizeof(buf)),
			 e == EFBIG ? "larger than 64 KiB"
				    : errstr(e, errbuf, sizeof(errbuf)));
		return NULL;
	}
	if (!*tok) {
		diag_add(ctx, line, true, "%s: %s is empty", what,
			 shown(path, buf, sizeof(buf)));
		free(tok);
		return NULL;
	}
	if (warn_mode && stat(path, &st) == 0 &&
	    (st.st_mode & (S_IRGRP | S_IROTH)))
		diag_add(ctx, line, false,
			 "%s: %s is readable by group or others (mode %04o); "
			 "a token file should be chmod 600",
			 what, shown(path, buf, sizeof(buf)),
			 (unsigned)(st.st_mode & 07777));
	return tok;
}

static void check_endpoint(struct parse_ctx *ctx, enum section_id sec,
			   struct config_endpoint *ep)
{
	const char *name = section_names[sec];
	char a[32], b[32];
	int li = line_of(ctx, sec, "reconnect_initial");
	int lm = line_of(ctx, sec, "reconnect_max");

	if (!line_of(ctx, sec, "ping_timeout"))
		ep->ping_timeout_ms = 2 * ep->ping_interval_ms;
	else if (ep->ping_timeout_ms <= ep->ping_interval_ms)
		/* The link would be declared dead before the next ping. */
		diag_add(ctx,
			 max_int(line_of(ctx, sec, "ping_timeout"),
				 line_of(ctx, sec, "ping_interval")),
			 true,
			 "[%s] ping_timeout (%s) must be longer than "
			 "ping_interval (%s)",
			 name, fmt_duration(ep->ping_timeout_ms, a, sizeof(a)),
			 fmt_duration(ep->ping_interval_ms, b, sizeof(b)));
	if (ep->reconnect_initial_ms > ep->reconnect_max_ms)
		diag_add(ctx, max_int(li, lm), true,
			 "[%s] reconnect_initial (%s) is greater than "
			 "reconnect_max (%s)",
			 name,
			 fmt_duration(ep->reconnect_initial_ms, a, sizeof(a)),
			 fmt_duration(ep->reconnect_max_ms, b, sizeof(b)));
	if (!ep->client_cert != !ep->client_key)
		diag_add(ctx,
			 max_int(line_of(ctx, sec, "client_cert"),
				 line_of(ctx, sec, "client_key")),
			 true,
			 "[%s] client_cert and client_key must be set together",
			 name);
}

static void check_control_plane(struct parse_ctx *ctx)
{
	struct config_endpoint *cp = &ctx->cfg->control_plane;
	int line = line_of(ctx, SEC_CP, "token_file");

	/* A bad endpoint line has its own error already. */
	if (!cp->endpoint && !line_of(ctx, SEC_CP, "endpoint"))
		diag_add(ctx, ctx->section_line[SEC_CP], true,
			 "[control_plane] endpoint is required");
	if (cp->token && cp->token_file) {
		diag_add(ctx, max_int(line, line_of(ctx, SEC_CP, "token")),
			 true,
			 "[control_plane] token and token_file are both set; "
			 "use one");
	} else if (cp->token_file) {
		cp->token = read_token(ctx, line, "[control_plane] token_file",
				       cp->token_file, true);
	} else if (!cp->token) {
		line = max_int(line, line_of(ctx, SEC_CP, "token"));
		diag_add(ctx, line ? line : ctx->section_line[SEC_CP], true,
			 "[control_plane] token_file or token is required");
	}
	check_endpoint(ctx, SEC_CP, cp);
}

static void check_runner(struct parse_ctx *ctx)
{
	struct config_endpoint *r = &ctx->cfg->runner;
	char a[32], b[32];

	check_endpoint(ctx, SEC_RUNNER, r);
	if (r->outbox_max_bytes < r->max_message_bytes)
		diag_add(ctx,
			 max_int(line_of(ctx, SEC_RUNNER, "outbox_max_bytes"),
				 line_of(ctx, SEC_RUNNER, "max_message_bytes")),
			 true,
			 "[runner] outbox_max_bytes (%s) is smaller than "
			 "max_message_bytes (%s)",
			 fmt_size((int64_t)r->outbox_max_bytes, a, sizeof(a)),
			 fmt_size((int64_t)r->max_message_bytes, b, sizeof(b)));
}

static char *sa_path(const char *file)
{
	size_t n = strlen(sa_dir) + strlen(file) + 2;
	char *p = xmalloc(n);

	strfmt(p, n, "%s/%s", sa_dir, file);
	return p;
}

/* in_cluster: API server from the environment, service account files. */
static void apply_in_cluster(struct parse_ctx *ctx)
{
	struct config *cfg = ctx->cfg;
	int line = line_of(ctx, SEC_K8S, "in_cluster");
	char buf[SHOWN_MAX + 8], errbuf[128];

	if (!line_of(ctx, SEC_K8S, "api_server")) {
		const char *host = getenv("KUBERNETES_SERVICE_HOST");
		const char *port = getenv("KUBERNETES_SERVICE_PORT");
		bool v6;
		size_t n;

		if (!host || !*host || !port || !*port) {
			diag_add(ctx, line, true,
				 "[kubernetes] in_cluster: "
				 "KUBERNETES_SERVICE_HOST and "
				 "KUBERNETES_SERVICE_PORT are not set "
				 "(not running in a pod?)");
		} else if (!port_ok(port) || has_space(host)) {
			diag_add(ctx, line, true,
				 "[kubernetes] in_cluster: "
				 "KUBERNETES_SERVICE_HOST/PORT %s:%s are not "
				 "a host and port",
				 host, shown(port, buf, sizeof(buf)));
		} else {
			v6 = strchr(host, ':') && host[0] != '[';
			n = strlen(host) + strlen(port) + 16;
			free(cfg->k8s_api_server);
			cfg->k8s_api_server = xmalloc(n);
			strfmt(cfg->k8s_api_server, n, "https://%s%s%s:%s",
			       v6 ? "[" : "", host, v6 ? "]" : "", port);
		}
	}
	if (!cfg->k8s_token_file)
		cfg->k8s_token_file = sa_path("token");
	if (!cfg->k8s_ca_file) {
		cfg->k8s_ca_file = sa_path("ca.crt");
		if (access(cfg->k8s_ca_file, R_OK))
			diag_add(ctx, line, true,
				 "[kubernetes] in_cluster: cannot read %s: %s",
				 shown(cfg->k8s_ca_file, buf, sizeof(buf)),
				 errstr(errno, errbuf, sizeof(errbuf)));
	}
	if (!line_of(ctx, SEC_K8S, "namespace")) {
		char *path = sa_path("namespace");
		char *ns = file_read_trimmed(path, 256);

		if (ns && namespace_ok(ns)) {
			free(cfg->k8s_namespace);
			cfg->k8s_namespace = ns;
			ns = NULL;
		} else {
			diag_add(ctx, line, false,
				 "[kubernetes] in_cluster: no namespace in "
				 "%s; using %s",
				 shown(path, buf, sizeof(buf)),
				 cfg->k8s_namespace);
		}
		free(ns);
		free(path);
	}
}

static void check_kubernetes(struct parse_ctx *ctx)
{
	struct config *cfg = ctx->cfg;
	int line = line_of(ctx, SEC_K8S, "token_file");
	bool own_file = cfg->k8s_token_file != NULL;

	if (cfg->k8s_in_cluster) {
		if (!cfg->k8s_token_file)
			line = line_of(ctx, SEC_K8S, "in_cluster");
		apply_in_cluster(ctx);
	}
	if (!cfg->k8s_api_server)
		cfg->k8s_api_server = xstrdup("https://127.0.0.1:6443");
	if (cfg->k8s_token_file)
		cfg->k8s_token =
		    read_token(ctx, line, "[kubernetes] token_file",
			       cfg->k8s_token_file, own_file);
}

static void check_all(struct parse_ctx *ctx)
{
	struct config *cfg = ctx->cfg;

	if (!cfg->cluster_name)
		diag_add(ctx, blame_line(ctx, SEC_AGENT, "cluster_name"), true,
			 "[agent] cluster_name is required");
	if (!cfg->name) {
		char host[256];

		if (gethostname(host, sizeof(host)) || !host[0])
			strfmt(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		cfg->name = xstrdup(host);
	}
	check_control_plane(ctx);
	check_runner(ctx);
	check_kubernetes(ctx);
}

/* ---- construction ---- */

static void endpoint_defaults(struct config_endpoint *ep)
{
	ep->connect_timeout_ms = 10 * SEC_MS;
	ep->ping_interval_ms = 20 * SEC_MS;
	ep->ping_timeout_ms = 40 * SEC_MS;
	ep->reconnect_initial_ms = 1 * SEC_MS;
	ep->reconnect_max_ms = 60 * SEC_MS;
	ep->max_message_bytes = 16 * 1024 * 1024;
	ep->heartbeat_interval_ms = 30 * SEC_MS;
	ep->status_interval_ms = 60 * SEC_MS;
	ep->register_timeout_ms = 30 * SEC_MS;
	ep->outbox_max_messages = 10000;
	ep->outbox_max_bytes = 64 * 1024 * 1024;
	ep->dedup_window = 4096;
	ep->max_streams = 1000;
}

static struct config *config_new(const char *name)
{
	struct config_box *box = xcalloc(1, sizeof(*box));
	struct config *cfg = &box->cfg;

	atomic_init(&box->refs, 1);
	cfg->workers = 4;
	cfg->state_dir = xstrdup("/var/lib/pipeops-agent");
	cfg->pid_file = xstrdup("/run/pipeops-agent.pid");
	cfg->log_level = LOG_LVL_INFO;
	cfg->log_target = LOG_TARGET_SYSLOG;
	cfg->shutdown_timeout_ms = 30 * SEC_MS;
	endpoint_defaults(&cfg->control_plane);
	endpoint_defaults(&cfg->runner);
	cfg->k8s_namespace = xstrdup("default");
	cfg->k8s_request_timeout_ms = 30 * SEC_MS;
	cfg->k8s_connect_timeout_ms = 10 * SEC_MS;
	cfg->k8s_max_log_bytes = 1024 * 1024;
	cfg->health_listen = xstrdup("127.0.0.1:9464");
	cfg->path = xstrdup(name);
	return cfg;
}

static void endpoint_free(struct config_endpoint *ep)
{
	free(ep->endpoint);
	free(ep->token);
	free(ep->token_file);
	free(ep->ca_file);
	free(ep->client_cert);
	free(ep->client_key);
	free(ep->proxy);
}

static void config_free(struct config *cfg)
{
	endpoint_free(&cfg->control_plane);
	endpoint_free(&cfg->runner);
	free(cfg->id);
	free(cfg->name);
	free(cfg->cluster_name);
	labels_free(cfg->labels, cfg->n_labels);
	free(cfg->state_dir);
	free(cfg->pid_file);
	free(cfg->log_file);
	free(cfg->k8s_api_server);
	free(cfg->k8s_token);
	free(cfg->k8s_token_file);
	free(cfg->k8s_ca_file);
	free(cfg->k8s_namespace);
	strv_free(cfg->k8s_proxy_deny, cfg->n_k8s_proxy_deny);
	free(cfg->health_listen);
	free(cfg->path);
	free((char *)cfg - offsetof(struct config_box, cfg));
}

static void ini_setup(void)
{
	ini_max_line = INI_LINE_BUF;
	ini_allow_multiline = 0;
	ini_allow_inline_comments = 0;
	ini_allow_bom = 1;
	ini_use_stack = 1;
	ini_allow_no_value = 0;
	ini_stop_on_first_error = 0;
}

/* Stable sort by line, diagnostics without a line last. */
static void diags_sort(struct config_diags *d)
{
	for (size_t i = 1; i < d->n; i++) {
		struct config_diag x = d->items[i];
		unsigned kx = x.line ? (unsigned)x.line : UINT_MAX;
		size_t j = i;

		while (j > 0) {
			int lj = d->items[j - 1].line;

			if ((lj ? (unsigned)lj : UINT_MAX) <= kx)
				break;
			d->items[j] = d->items[j - 1];
			j--;
		}
		d->items[j] = x;
	}
}

/* Hand the collected diagnostics to the caller, or free them. */
static void diags_out(struct parse_ctx *ctx, struct config_diags *out)
{
	diags_sort(&ctx->d);
	if (out)
		*out = ctx->d;
	else
		config_diags_free(&ctx->d);
}

static struct config *load_text(const char *text, size_t len, const char *name,
				struct config_diags *diags)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct parse_ctx ctx;
	int rc;

	pthread_once(&once, ini_setup);
	memset(&ctx, 0, sizeof(ctx));
	ctx.cfg = config_new(name);
	ctx.pos = text;
	ctx.end = text + len;

	rc = ini_parse_stream(read_line, &ctx, on_key, &ctx);
	if (rc > 0) {
		bool known = false;

		for (size_t i = 0; i < ctx.d.n; i++)
			if (ctx.d.items[i].line == rc &&
			    ctx.d.items[i].is_error)
				known = true;
		if (!known)
			diag_add(&ctx, rc, true, "syntax error");
	} else if (rc < 0) {
		diag_add(&ctx, 0, true, "%s: cannot parse (inih error %d)",
			 name, rc);
	}
	check_all(&ctx);

	if (ctx.d.n_errors) {
		config_free(ctx.cfg);
		ctx.cfg = NULL;
	}
	diags_out(&ctx, diags);
	return ctx.cfg;
}

struct config *config_load_string(const char *text, const char *name,
				  struct config_diags *diags)
{
	if (diags)
		memset(diags, 0, sizeof(*diags));
	return load_text(text, strlen(text), name ? name : "(string)", diags);
}

/* The line of @buf that holds offset @at. */
static int line_at(const char *buf, size_t at)
{
	int line = 1;

	for (size_t i = 0; i < at; i++)
		if (buf[i] == '\n')
			line++;
	return line;
}

struct config *config_load(const char *path, struct config_diags *diags)
{
	struct parse_ctx ctx;
	struct config *cfg = NULL;
	char errbuf[128];
	char *buf = NULL;
	const char *nul;
	size_t len = 0, cap = 0, got;
	FILE *f;

	if (diags)
		memset(diags, 0, sizeof(*diags));
	if (!path)
		path = CONFIG_DEFAULT_PATH;
	memset(&ctx, 0, sizeof(ctx));
	f = fopen(path, "re");
	if (!f) {
		diag_add(&ctx, 0, true, "cannot open %s: %s", path,
			 errstr(errno, errbuf, sizeof(errbuf)));
		goto out_diags;
	}
	do {
		if (len == cap) {
			cap = cap ? 2 * cap : 16384;
			buf = xrealloc(buf, cap + 1);
		}
		got = fread(buf + len, 1, cap - len, f);
		len += got;
	} while (got && len <= MAX_FILE_BYTES);
	if (ferror(f)) {
		diag_add(&ctx, 0, true, "cannot read %s: %s", path,
			 errstr(errno, errbuf, sizeof(errbuf)));
		goto out_close;
	}
	if (len > MAX_FILE_BYTES) {
		diag_add(&ctx, 0, true, "%s is larger than %d bytes", path,
			 MAX_FILE_BYTES);
		goto out_close;
	}
	nul = memchr(buf, '\0', len);
	if (nul) {
		diag_add(&ctx, line_at(buf, (size_t)(nul - buf)), true,
			 "the file contains a NUL byte");
		goto out_close;
	}
	fclose(f);
	cfg = load_text(buf, len, path, diags);
	free(buf);
	return cfg;

out_close:
	fclose(f);
	free(buf);
out_diags:
	diags_out(&ctx, diags);
	return NULL;
}

struct config *config_ref(struct config *cfg)
{
	struct config_box *box;

	if (!cfg)
		return NULL;
	box = (struct config_box *)((char *)cfg -
				    offsetof(struct config_box, cfg));
	atomic_fetch_add_explicit(&box->refs, 1, memory_order_relaxed);
	return cfg;
}

void config_unref(struct config *cfg)
{
	struct config_box *box;

	if (!cfg)
		return;
	box = (struct config_box *)((char *)cfg -
				    offsetof(struct config_box, cfg));
	if (atomic_fetch_sub_explicit(&box->refs, 1, memory_order_acq_rel) == 1)
		config_free(cfg);
}

void config_diags_free(struct config_diags *diags)
{
	if (!diags)
		return;
	for (size_t i = 0; i < diags->n; i++)
		free(diags->items[i].text);
	free(diags->items);
	memset(diags, 0, sizeof(*diags));
}

const char *config_diag_format(const struct config_diag *d, char *buf,
			       size_t len)
{
	const char *kind = d->is_error ? "" : "warning: ";

	if (d->line > 0)
		return strfmt(buf, len, "line %d: %s%s", d->line, kind,
			      d->text);
	return strfmt(buf, len, "%s%s", kind, d->text);
}

void config_diags_print(const struct config_diags *diags, const char *path,
			FILE *out)
{
	for (size_t i = 0; i < diags->n; i++) {
		const struct config_diag *d = &diags->items[i];

		if (d->line > 0)
			fprintf(out, "%s: line %d: %s%s\n", path, d->line,
				d->is_error ? "" : "warning: ", d->text);
		else
			fprintf(out, "%s: %s%s\n", path,
				d->is_error ? "" : "warning: ", d->text);
	}
}

static bool str_eq(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return !strcmp(a, b);
}

bool config_endpoint_same_link(const struct config_endpoint *a,
			       const struct config_endpoint *b)
{
	return str_eq(a->endpoint, b->endpoint) && str_eq(a->token, b->token) &&
	       str_eq(a->ca_file, b->ca_file) &&
	       str_eq(a->client_cert, b->client_cert) &&
	       str_eq(a->client_key, b->client_key) &&
	       a->insecure_skip_verify == b->insecure_skip_verify &&
	       str_eq(a->proxy, b->proxy);
}

void config_set_service_account_dir(const char *dir)
{
	sa_dir = dir ? dir : default_sa_dir;
}
