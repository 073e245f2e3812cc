/*
 * config: the INI file of CONFIG.md, parsed with inih into an immutable,
 * reference-counted struct.
 *
 * A parse never stops at the first problem: every bad value is recorded as
 * an error with its line, every unknown key or section as a warning, so
 * `pipeops-agent -t` can print them all. Durations are kept in milliseconds,
 * sizes in bytes. Strings are owned by the config (NULL when unset/empty).
 *
 * Thread rules: a config is never mutated after config_load() returns.
 * Readers take a reference with config_ref(); the supervisor swaps in a new
 * one on reload and drops its own reference with config_unref().
 */
#ifndef PIPEOPS_COMMON_CONFIG_H
#define PIPEOPS_COMMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CONFIG_DEFAULT_PATH "/etc/pipeops/agent.ini"

/* Longer lines are an error (never silently truncated). */
#define CONFIG_MAX_LINE 4096

enum log_target_kind { LOG_TARGET_SYSLOG, LOG_TARGET_STDERR, LOG_TARGET_FILE };

struct config_label {
	char *key;
	char *value;
};

/* Connection settings shared by [control_plane] and [runner]. */
struct config_endpoint {
	char *endpoint; /* [control_plane] only; required there */
	char *token;	/* resolved: from token= or read from token_file */
	char *token_file;
	char *ca_file; /* NULL: system bundle */
	char *client_cert;
	char *client_key;
	bool insecure_skip_verify;
	char *proxy;
	int64_t connect_timeout_ms;   /* default 10 s */
	int64_t ping_interval_ms;     /* default 20 s */
	int64_t ping_timeout_ms;      /* default 2 x ping_interval (40 s) */
	int64_t reconnect_initial_ms; /* default 1 s */
	int64_t reconnect_max_ms;     /* default 60 s */
	size_t max_message_bytes;     /* default 16 MiB */
	/* [control_plane] only */
	int64_t heartbeat_interval_ms; /* default 30 s */
	int64_t status_interval_ms;    /* default 60 s, 0 = off */
	int64_t register_timeout_ms;   /* default 30 s */
	/* [runner] only */
	size_t outbox_max_messages; /* default 10000 */
	size_t outbox_max_bytes;    /* default 64 MiB */
	size_t dedup_window;	    /* default 4096 */
	size_t max_streams;	    /* default 1000 */
};

struct config {
	/* [agent] */
	char *id;	    /* NULL: generated, kept in state_dir/agent-id */
	char *name;	    /* default: hostname */
	char *cluster_name; /* required */
	struct config_label *labels;
	size_t n_labels;
	int workers;	 /* default 4, 1..64 */
	char *state_dir; /* default /var/lib/pipeops-agent */
	char *pid_file;	 /* default /run/pipeops-agent.pid */
	int log_level;	 /* enum log_level of log.h; default info */
	enum log_target_kind log_target;
	char *log_file;		     /* for LOG_TARGET_FILE */
	bool log_target_set;	     /* log_target given in the file */
	int64_t shutdown_timeout_ms; /* default 30 s */

	struct config_endpoint control_plane;
	struct config_endpoint runner;

	/* [kubernetes] */
	bool k8s_in_cluster;
	char *k8s_api_server; /* default https://127.0.0.1:6443 */
	char *k8s_token;      /* resolved from token_file */
	char *k8s_token_file;
	char *k8s_ca_file;
	bool k8s_insecure_skip_verify;
	char *k8s_namespace;		/* default "default" */
	int64_t k8s_request_timeout_ms; /* default 30 s */
	int64_t k8s_connect_timeout_ms; /* default 10 s */
	char **k8s_proxy_deny;		/* path prefixes */
	size_t n_k8s_proxy_deny;
	size_t k8s_max_log_bytes; /* command logs output cap; default 1 MiB */

	/* [health] */
	char *health_listen; /* NULL/empty: off; default 127.0.0.1:9464 */

	char *path; /* the file this came from */
};

/* One problem found while loading. */
struct config_diag {
	int line;      /* 0 when not tied to a line */
	bool is_error; /* false: warning */
	char *text;    /* "[section] key: what is wrong" */
};

struct config_diags {
	struct config_diag *items;
	size_t n;
	size_t n_errors;
};

/*
 * Parse and validate @path. On success returns a new config (refcount 1);
 * on any error returns NULL. @diags (may be NULL) receives every error and
 * warning in file order; free it with config_diags_free().
 */
struct config *config_load(const char *path, struct config_diags *diags);

/* Same, from a string in memory (for tests); @name is used in messages. */
struct config *config_load_string(const char *text, const char *name,
				  struct config_diags *diags);

/* Only configs returned by config_load*() may be passed to these. */
struct config *config_ref(struct config *cfg);	    /* returns @cfg */
void config_unref(struct config *cfg);		    /* accepts NULL */
void config_diags_free(struct config_diags *diags); /* accepts NULL */

/*
 * "line 12: [control_plane] ping_interval: ..." (warnings get "warning: "
 * before the text; no "line" part when @d->line is 0) into @buf; returns
 * @buf.
 */
const char *config_diag_format(const struct config_diag *d, char *buf,
			       size_t len);
/* Every diagnostic as "<path>: " + config_diag_format(), one per line. */
void config_diags_print(const struct config_diags *diags, const char *path,
			FILE *out);

/* Value parsers, exported for tests and for other modules. 0 or -EINVAL. */
int config_parse_duration_ms(const char *s, int64_t *out);
int config_parse_size(const char *s, size_t *out);
int config_parse_bool(const char *s, bool *out);

/* True when the two endpoint configs would open the same connection. */
bool config_endpoint_same_link(const struct config_endpoint *a,
			       const struct config_endpoint *b);
/*
 * Tests only: where in_cluster looks for token, ca.crt and namespace
 * (default /var/run/secrets/kubernetes.io/serviceaccount). @dir is
 * borrowed until the next call; NULL restores the default. Main thread.
 */
void config_set_service_account_dir(const char *dir);

#endif
