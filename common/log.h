/*
 * log: one line per event, key=value, to stderr, syslog or a file.
 *
 *   LOG_INFO("connected", "endpoint=%s rtt_ms=%d", name, rtt);
 * prints
 *   ts=... level=info thread=cp-reader msg="connected" endpoint=cp rtt_ms=3
 *
 * The level check is a relaxed atomic load, so a disabled level costs one
 * compare. Each line is written with one write(2) (atomic for lines under
 * PIPE_BUF on pipes, and whole on regular files opened O_APPEND).
 * Tokens must never be passed to the log.
 */
#ifndef PIPEOPS_COMMON_LOG_H
#define PIPEOPS_COMMON_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

enum log_dest { LOG_DEST_STDERR, LOG_DEST_SYSLOG, LOG_DEST_FILE };

/* 0 or negative errno (file could not be opened; stderr stays in use). */
int log_open(enum log_dest dest, const char *file);
void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);
int log_reopen(void);			    /* SIGUSR1: reopen the log file */
void log_set_thread_name(const char *name); /* per thread, <= 15 chars */
int log_parse_level(const char *s);	    /* level or -1 */

/*
 * Repeated-failure limiter, owned by one thread. A line whose text equals
 * the previous one passes at most once per @every_ms; *@held gets the
 * number of identical lines held back since the last one that passed, for
 * the caller to report ("repeated=N"). A different text always passes.
 */
struct log_limit {
	char last[200];
	int64_t last_ms;
	unsigned held;
};
bool log_limit_pass(struct log_limit *l, const char *text, int64_t every_ms,
		    unsigned *held);

void log_write(enum log_level level, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define LOG_AT(lvl, msg, ...)                                                  \
	do {                                                                   \
		if (log_enabled(lvl))                                          \
			log_write(lvl, msg, __VA_ARGS__);                      \
	} while (0)
/* The format carries the key=value fields; pass "" when there are none. */
#define LOG_ERROR(msg, ...) LOG_AT(LOG_LVL_ERROR, msg, __VA_ARGS__)
#define LOG_WARN(msg, ...)  LOG_AT(LOG_LVL_WARN, msg, __VA_ARGS__)
#define LOG_INFO(msg, ...)  LOG_AT(LOG_LVL_INFO, msg, __VA_ARGS__)
#define LOG_DEBUG(msg, ...) LOG_AT(LOG_LVL_DEBUG, msg, __VA_ARGS__)

#endif
