/*
 * log: key=value lines to stderr, syslog or a file (see log.h).
 *
 * DESIGN
 * The level and destination are atomics read by every thread. The file
 * descriptor for LOG_DEST_FILE is swapped by log_reopen() (SIGUSR1, on the
 * supervisor thread): the new fd is published with a release store and the
 * old one is closed after a short grace period, so a writer that loaded the
 * old fd just before the swap finishes its single write(2) first.
 */
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level_now = LOG_LVL_INFO;
static atomic_int log_dest_now = LOG_DEST_STDERR;
static atomic_int log_fd = 2;
static char log_path[512];
static _Thread_local char thread_name[16] = "main";

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_parse_level(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (!strcmp(s, level_names[i]))
			return i;
	if (!strcmp(s, "warning"))
		return LOG_LVL_WARN;
	return -1;
}

void log_set_level(enum log_level level)
{
	atomic_store_explicit(&log_level_now, (int)level, memory_order_relaxed);
}

bool log_enabled(enum log_level level)
{
	return (int)level <=
	       atomic_load_explicit(&log_level_now, memory_order_relaxed);
}

void log_set_thread_name(const char *name)
{
	snprintf(thread_name, sizeof(thread_name), "%s", name);
}

static int open_file(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

int log_open(enum log_dest dest, const char *file)
{
	if (dest == LOG_DEST_FILE) {
		int fd = open_file(file);

		if (fd < 0)
			return -errno;
		snprintf(log_path, sizeof(log_path), "%s", file);
		int old = atomic_exchange(&log_fd, fd);

		if (old > 2)
			close(old);
	} else if (dest == LOG_DEST_SYSLOG) {
		openlog("pipeops-agent", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	}
	atomic_store(&log_dest_now, (int)dest);
	return 0;
}

int log_reopen(void)
{
	int fd, old;
	struct timespec grace = {0, 50 * 1000 * 1000};

	if (atomic_load(&log_dest_now) != LOG_DEST_FILE)
		return 0;
	fd = open_file(log_path);
	if (fd < 0)
		return -errno;
	old = atomic_exchange(&log_fd, fd);
	nanosleep(&grace, NULL);
	if (old > 2)
		close(old);
	return 0;
}

/* Append @s with quotes and escapes so a message stays one field. */
static size_t put_quoted(char *buf, size_t pos, size_t cap, const char *s)
{
	if (pos < cap)
		buf[pos++] = '"';
	for (; *s && pos + 2 < cap; s++) {
		if (*s == '"' || *s == '\\') {
			buf[pos++] = '\\';
			buf[pos++] = *s;
		} else if ((unsigned char)*s < 0x20 || *s == 0x7f) {
			buf[pos++] = ' '; /* one event, one line */
		} else {
			buf[pos++] = *s;
		}
	}
	if (pos < cap)
		buf[pos++] = '"';
	return pos;
}

/* Append @s for a field: a value inside "..." in the format gets '"' and
 * '\\' escaped; a bare value that would break the key=value form (space,
 * quote, '=', empty) is written quoted. Control characters become '?', so
 * a value from a peer can neither forge a line nor add fields. */
static size_t put_value(char *buf, size_t pos, size_t cap, const char *s,
			size_t max, bool in_quotes)
{
	bool quote = !in_quotes && (!*s || strpbrk(s, " \"=\\") != NULL);

	if (quote && pos < cap)
		buf[pos++] = '"';
	for (size_t i = 0; s[i] && i < max && pos + 2 < cap; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '"' || ch == '\\') {
			if (in_quotes || quote)
				buf[pos++] = '\\';
			buf[pos++] = (char)ch;
		} else if (ch < 0x20 || ch == 0x7f) {
			buf[pos++] = '?';
		} else {
			buf[pos++] = (char)ch;
		}
	}
	if (quote && pos < cap)
		buf[pos++] = '"';
	return pos;
}

/*
 * vsnprintf for the key=value part, with every %s passed through
 * put_value(). Other conversions (d i u o x X c p with hh h l ll z j t,
 * and a precision on %s) are formatted by snprintf one at a time.
 */
static size_t put_fields(char *buf, size_t pos, size_t cap, const char *fmt,
			 va_list ap)
{
	bool in_quotes = false;

	while (*fmt && pos + 1 < cap) {
		char spec[16], conv;
		size_t n = 0, max = SIZE_MAX;
		int len = 0; /* 0 int, 1 l, 2 ll, 3 z, 4 h/hh, 5 j, 6 t */

		if (*fmt != '%') {
			if (*fmt == '"')
				in_quotes = !in_quotes;
			buf[pos++] = *fmt++;
			continue;
		}
		spec[n++] = *fmt++;
		while (*fmt && strchr("-+ #0123456789.", *fmt) && n < 10) {
			if (*fmt == '.' && fmt[1] >= '0' && fmt[1] <= '9')
				max = strtoul(fmt + 1, NULL, 10);
			spec[n++] = *fmt++;
		}
		while (*fmt && strchr("hlzjt", *fmt) && n < 13) {
			len = *fmt == 'l'   ? (len == 1 ? 2 : 1)
			      : *fmt == 'z' ? 3
			      : *fmt == 'j' ? 5
			      : *fmt == 't' ? 6
					    : 4;
			spec[n++] = *fmt++;
		}
		conv = *fmt ? *fmt++ : '%';
		spec[n++] = conv;
		spec[n] = '\0';
		if (conv == 's') {
			const char *v = va_arg(ap, const char *);

			pos = put_value(buf, pos, cap, v ? v : "(null)", max,
					in_quotes);
			continue;
		}
		if (conv == '%') {
			buf[pos++] = '%';
			continue;
		}
		{
			int w;

/* @spec is one conversion cut from the caller's format, which the
 * compiler checked against the arguments (log.h's format attribute). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
			if (conv == 'p')
				w = snprintf(buf + pos, cap - pos, spec,
					     va_arg(ap, void *));
			else if (conv == 'c')
				w = snprintf(buf + pos, cap - pos, spec,
					     va_arg(ap, int));
			else if (len == 1)
				w = snprintf(buf + pos, cap - pos, spec,
					     va_arg(ap, long));
			else if (len == 2)
				w = snprintf(buf + pos, cap - pos, spec,
					     va_arg(ap, long long));
			else if (len == 3)
				w = snprintf(buf + pos, cap - pos, spec,
					     va_arg(ap, size_t));
			else if (len == 5)
				w = snprintf(buf + pos, cap - pos, spec,
					     va_arg(ap, intmax_t));
			else if (len == 6)
				w = snprintf(buf + pos, cap - pos, spec,
					     va_arg(ap, ptrdiff_t));
			else
				w = snprintf(buf + pos, cap - pos, spec,
					     va_arg(ap, int));
#pragma GCC diagnostic pop
			if (w > 0)
				pos += (size_t)w < cap - pos ? (size_t)w
							     : cap - pos - 1;
		}
	}
	return pos;
}

void log_write(enum log_level level, const char *msg, const char *fmt, ...)
{
	char line[2048];
	size_t pos = 0, cap = sizeof(line) - 2;
	int saved_errno = errno;
	int dest = atomic_load_explicit(&log_dest_now, memory_order_relaxed);
	va_list ap;

	if (dest != LOG_DEST_SYSLOG) {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		pos += strftime(line, cap, "ts=%Y-%m-%dT%H:%M:%S", &tm);
		pos += (size_t)snprintf(line + pos, cap - pos, ".%03ldZ ",
					ts.tv_nsec / 1000000);
	}
	pos += (size_t)snprintf(line + pos, cap - pos,
				"level=%s thread=%s msg=", level_names[level],
				thread_name);
	if (pos > cap)
		pos = cap;
	pos = put_quoted(line, pos, cap, msg);
	if (fmt && *fmt && pos + 1 < cap) {
		line[pos++] = ' ';
		va_start(ap, fmt);
		pos = put_fields(line, pos, cap, fmt, ap);
		va_end(ap);
	}
	if (dest == LOG_DEST_SYSLOG) {
		static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO,
					   LOG_DEBUG};
		line[pos] = '\0';
		syslog(prio[level], "%s", line);
	} else {
		line[pos++] = '\n';
		int fd = atomic_load_explicit(&log_fd, memory_order_acquire);
		ssize_t w = write(fd, line, pos);
		(void)w;
	}
	errno = saved_errno;
}

bool log_limit_pass(struct log_limit *l, const char *text, int64_t every_ms,
		    unsigned *held)
{
	struct timespec ts;
	int64_t now;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	if (!strncmp(l->last, text, sizeof(l->last) - 1) && l->last_ms &&
	    now - l->last_ms < every_ms) {
		l->held++;
		return false;
	}
	*held = l->held;
	l->held = 0;
	l->last_ms = now;
	snprintf(l->last, sizeof(l->last), "%s", text);
	return true;
}
