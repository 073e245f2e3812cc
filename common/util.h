/*
 * util: allocation that aborts on OOM, clocks, small string helpers.
 */
#ifndef PIPEOPS_COMMON_UTIL_H
#define PIPEOPS_COMMON_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Never return NULL: log and abort on out-of-memory. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s); /* NULL in, NULL out */
char *xstrndup(const char *s, size_t n);

/* Monotonic milliseconds (CLOCK_MONOTONIC); only for intervals. */
int64_t clock_mono_ms(void);

/* RFC 3339 UTC with nanoseconds ("2026-12-03T15:38:27.123456789Z"). */
void clock_wall_rfc3339(char *buf, size_t len);

/* Wall-clock nanoseconds since the epoch. */
int64_t clock_wall_ns(void);

/* snprintf that always terminates and never overflows; returns @buf. */
char *strfmt(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Read a whole small file (at most @max bytes), trimmed of surrounding
 * white space. Returns a new string or NULL with errno set. */
char *file_read_trimmed(const char *path, size_t max);

/* Length of the valid UTF-8 sequence at @s (@len bytes left): 1..4, 0
 * when invalid (overlong, surrogate, > U+10FFFF, bad byte), -1 when cut
 * short by the end of the buffer. @len must be at least 1. */
int utf8_seq_len(const unsigned char *s, size_t len);

/* Thread-safe strerror. */
const char *errstr(int errnum, char *buf, size_t len);

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
