/*
 * pipeops-agent: command line, start-up and tear-down.
 *
 * Everything that must happen once before threads happens here: signals
 * blocked (the supervisor takes them from a signalfd) and SIGPIPE ignored,
 * curl_global_init, json_object_seed, the DRBG, the configuration.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "agent/agent.h"
#include "agent/health.h"
#include "agent/streamer.h"
#include "common/log.h"
#include "common/rand.h"
#include "common/ring.h"
#include "common/util.h"
#include "k8s/k8s.h"

enum { EXIT_CONFIG = 1, EXIT_USAGE = 2, EXIT_RUNTIME = 3 };

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pipeops-agent [-c FILE] [-f] [-t] [-V] [-h]\n"
		"  -c, --config FILE     INI file (default %s)\n"
		"  -f, --foreground      do not daemonize; log to stderr "
		"unless log_target says otherwise\n"
		"  -t, --check-config    parse and validate FILE, print "
		"every error with its line, exit 0 or 1\n"
		"  -V, --version         print the version and exit\n"
		"  -h, --help            print usage and exit\n",
		CONFIG_DEFAULT_PATH);
}

static void print_diags(const struct config_diags *d, const char *path)
{
	for (size_t i = 0; i < d->n; i++) {
		const struct config_diag *g = &d->items[i];

		if (g->line > 0)
			fprintf(stderr, "%s:%d: %s: %s\n", path, g->line,
				g->is_error ? "error" : "warning", g->text);
		else
			fprintf(stderr, "%s: %s: %s\n", path,
				g->is_error ? "error" : "warning", g->text);
	}
}

/* The agent id: from the config, else kept in state_dir/agent-id. */
static void resolve_agent_id(struct agent *a)
{
	char path[600], *id;
	unsigned char raw[8];
	FILE *f;

	if (a->config->id) {
		snprintf(a->agent_id, sizeof(a->agent_id), "%s", a->config->id);
		return;
	}
	snprintf(path, sizeof(path), "%s/agent-id", a->config->state_dir);
	id = file_read_trimmed(path, sizeof(a->agent_id) - 1);
	if (id && *id) {
		snprintf(a->agent_id, sizeof(a->agent_id), "%s", id);
		free(id);
		return;
	}
	free(id);
	rand_bytes(raw, sizeof(raw));
	snprintf(a->agent_id, sizeof(a->agent_id),
		 "agent-%02x%02x%02x%02x%02x%02x%02x%02x", raw[0], raw[1],
		 raw[2], raw[3], raw[4], raw[5], raw[6], raw[7]);
	mkdir(a->config->state_dir, 0750);
	f = fopen(path, "we");
	if (!f || fprintf(f, "%s\n", a->agent_id) < 0) {
		LOG_WARN("cannot keep the agent id; it will change on restart",
			 "path=%s errno=%d", path, errno);
	}
	if (f)
		fclose(f);
}

/* Write end of the start-up pipe in a daemon; -1 otherwise. */
static int ready_fd = -1;

/* Tell the command that started the daemon that start-up succeeded; a
 * daemon that exits before this makes that command exit EXIT_RUNTIME. */
static void daemon_ready(void)
{
	unsigned char ok = 0;

	if (ready_fd < 0)
		return;
	if (write(ready_fd, &ok, 1) != 1)
		LOG_WARN("cannot report start-up to the parent", "errno=%d",
			 errno);
	close(ready_fd);
	ready_fd = -1;
}

/* The first process waits for the daemon's start-up result (one status
 * byte, or EOF when the daemon exited) and exits with it. */
static int daemonize(void)
{
	int p[2], fd;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		unsigned char status;
		ssize_t n;

		close(p[1]);
		do
			n = read(p[0], &status, 1);
		while (n < 0 && errno == EINTR);
		_exit(n == 1 ? status : EXIT_RUNTIME);
	}
	close(p[0]);
	ready_fd = p[1];
	if (setsid() < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0)
		_exit(0);
	umask(027);
	if (chdir("/") < 0)
		return -errno;
	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	return 0;
}

/* Write and lock the pid file; the lock lives as long as the process. */
static int write_pid_file(const char *path)
{
	char buf[32];
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	int n;

	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;

		close(fd);
		return e == EWOULDBLOCK ? -EEXIST : -e;
	}
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || write(fd, buf, (size_t)n) != n) {
		int e = errno;

		close(fd);
		return -e;
	}
	return fd;
}

/*
 * Every stream holds one API connection: raise the soft descriptor limit
 * to the hard one, and say so when max_streams still cannot fit (a stream
 * refused for want of a descriptor would look like an unreachable API).
 */
static void raise_fd_limit(const struct config *cfg)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)cfg->runner.max_streams + 128;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
		LOG_WARN("open file limit too low for max_streams",
			 "limit=%llu max_streams=%zu needed=%llu",
			 (unsigned long long)rl.rlim_cur,
			 cfg->runner.max_streams, (unsigned long long)need);
}

static int open_log(const struct config *cfg, bool foreground)
{
	enum log_dest dest = LOG_DEST_SYSLOG;

	if (foreground && !cfg->log_target_set)
		dest = LOG_DEST_STDERR;
	else if (cfg->log_target == LOG_TARGET_STDERR)
		dest = LOG_DEST_STDERR;
	else if (cfg->log_target == LOG_TARGET_FILE)
		dest = LOG_DEST_FILE;
	log_set_level((enum log_level)cfg->log_level);
	return log_open(dest, cfg->log_file);
}

static int agent_init(struct agent *a, struct config *cfg)
{
	struct k8s_settings ks = {
	    .api_server = cfg->k8s_api_server,
	    .token = cfg->k8s_token,
	    .token_file = cfg->k8s_token_file,
	    .ca_file = cfg->k8s_ca_file,
	    .insecure_skip_verify = cfg->k8s_insecure_skip_verify,
	    .default_namespace = cfg->k8s_namespace,
	    .request_timeout_ms = cfg->k8s_request_timeout_ms,
	    .connect_timeout_ms = cfg->k8s_connect_timeout_ms,
	    .proxy_deny = (const char *const *)cfg->k8s_proxy_deny,
	    .n_proxy_deny = cfg->n_k8s_proxy_deny,
	    .max_log_bytes = cfg->k8s_max_log_bytes,
	};
	struct k8s_error kerr;
	char host[128];

	a->config = cfg;
	a->start_mono_ms = clock_mono_ms();
	a->n_workers = cfg->workers;
	a->status_interval_ms = cfg->control_plane.status_interval_ms;
	pthread_mutex_init(&a->cluster_lock, NULL);
	if (cfg->name) {
		snprintf(a->name, sizeof(a->name), "%s", cfg->name);
	} else {
		if (gethostname(host, sizeof(host)) < 0)
			snprintf(host, sizeof(host), "unknown");
		host[sizeof(host) - 1] = '\0';
		snprintf(a->name, sizeof(a->name), "%s", host);
	}
	resolve_agent_id(a);
	msg_set_id_prefix(a->agent_id);
	a->k8s = k8s_shared_new(&ks, &kerr);
	if (!a->k8s) {
		LOG_ERROR("kubernetes client setup failed", "error=\"%s\"",
			  kerr.message);
		return -EINVAL;
	}
	a->super_wake = wakefd_new();
	a->streamer_wake = wakefd_new();
	a->workers = xcalloc((size_t)a->n_workers, sizeof(*a->workers));
	for (int i = 0; i < a->n_workers; i++) {
		a->workers[i].agent = a;
		a->workers[i].index = i;
		a->workers[i].wake = wakefd_new();
	}
	for (int e = 0; e < EP_COUNT; e++)
		if (endpoint_init(&a->ep[e], a, (enum endpoint_id)e) < 0)
			return -EMFILE;
	return 0;
}

static void agent_free(struct agent *a)
{
	for (int e = 0; e < EP_COUNT; e++)
		if (a->ep[e].agent)
			endpoint_destroy(&a->ep[e]);
	for (int i = 0; a->workers && i < a->n_workers; i++)
		close(a->workers[i].wake);
	free(a->workers);
	k8s_shared_free(a->k8s);
	json_decref(a->cluster_info);
	pthread_mutex_destroy(&a->cluster_lock);
	close(a->super_wake);
	close(a->streamer_wake);
	config_unref(a->config);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"foreground", no_argument, NULL, 'f'},
	    {"check-config", no_argument, NULL, 't'},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *path = CONFIG_DEFAULT_PATH;
	bool foreground = false, check = false;
	struct config_diags diags = {0};
	struct config *cfg;
	struct agent a;
	struct health *health = NULL;
	sigset_t set;
	char err[300];
	int opt, rc, pid_fd = -1;
	char *pid_path = NULL, *abs_path = NULL;

	while ((opt = getopt_long(argc, argv, "c:ftVh", longopts, NULL)) !=
	       -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'f':
			foreground = true;
			break;
		case 't':
			check = true;
			break;
		case 'V':
			printf("pipeops-agent %s\n", PIPEOPS_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "pipeops-agent: unexpected argument: %s\n",
			argv[optind]);
		usage(stderr);
		return EXIT_USAGE;
	}

	cfg = config_load(path, &diags);
	print_diags(&diags, path);
	config_diags_free(&diags);
	if (check) {
		if (cfg)
			printf("configuration OK\n");
		config_unref(cfg);
		return cfg ? 0 : EXIT_CONFIG;
	}
	if (!cfg)
		return EXIT_CONFIG;
	/* Reloads re-read @path after daemonize() moved to "/". */
	abs_path = realpath(path, NULL);
	if (abs_path)
		path = abs_path;

	if (!foreground && daemonize() < 0) {
		fprintf(stderr, "pipeops-agent: cannot daemonize: %s\n",
			errstr(errno, err, sizeof(err)));
		return EXIT_RUNTIME;
	}
	if (open_log(cfg, foreground) < 0)
		fprintf(stderr, "pipeops-agent: cannot open log %s\n",
			cfg->log_file ? cfg->log_file : "");
	if (cfg->pid_file && !foreground) {
		pid_fd = write_pid_file(cfg->pid_file);
		if (pid_fd < 0) {
			LOG_ERROR(pid_fd == -EEXIST
				      ? "another instance holds the pid file"
				      : "cannot write the pid file",
				  "path=%s", cfg->pid_file);
			config_unref(cfg);
			return EXIT_RUNTIME;
		}
		pid_path = xstrdup(cfg->pid_file);
	}

	/* Once, before any thread. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit(cfg);
	json_object_seed(0);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (rand_init() < 0) {
		LOG_ERROR("cannot seed the random generator", "");
		return EXIT_RUNTIME;
	}

	memset(&a, 0, sizeof(a));
	rc = agent_init(&a, cfg);
	/* Asked for by the operator: failing to listen stops the start. */
	if (rc == 0 && cfg->health_listen &&
	    health_start(&a, cfg->health_listen, &health, err, sizeof(err)) <
		0) {
		LOG_ERROR("cannot start the health listener", "error=\"%s\"",
			  err);
		rc = -EADDRINUSE;
	}
	if (rc == 0)
		rc = workers_start(&a);
	if (rc == 0)
		rc = streamer_start(&a);
	if (rc == 0 && supervisor_start_cp(&a, err, sizeof(err)) < 0) {
		LOG_ERROR("cannot start the control plane connection",
			  "error=\"%s\"", err);
		rc = -EINVAL;
	}
	if (rc == 0) {
		LOG_INFO("started", "version=%s agent_id=%s workers=%d",
			 PIPEOPS_VERSION, a.agent_id, a.n_workers);
		daemon_ready();
		rc = supervisor_run(&a, path);
	} else {
		streamer_stop(&a);
		workers_stop(&a);
	}
	health_stop(health);
	agent_free(&a);
	rand_free();
	curl_global_cleanup();
	if (pid_fd >= 0) {
		unlink(pid_path);
		close(pid_fd);
	}
	free(pid_path);
	free(abs_path);
	LOG_INFO("stopped", "exit=%d", rc == 0 ? 0 : EXIT_RUNTIME);
	return rc == 0 ? 0 : EXIT_RUNTIME;
}
