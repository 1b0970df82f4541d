/* log: the one place that writes log lines (stderr). Modules do not log;
 * main.c and the command layer do. Text by default, one JSON object per line
 * with LOG_FORMAT=json. Key/value fields are passed as NULL-terminated pairs
 * of strings: log_info("connected", "url", url, NULL). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef enum log_level {
        LOG_DEBUG = 0,
        LOG_INFO = 1,
        LOG_WARN = 2,
        LOG_ERROR = 3,
} log_level;

typedef enum log_format {
        LOG_FORMAT_TEXT = 0,
        LOG_FORMAT_JSON = 1,
} log_format;

void log_setup(log_level level, log_format format);
void log_set_level(log_level level);
log_level log_get_level(void);
/* Parses "debug"|"info"|"warn"|"warning"|"error". Returns 0 or -EINVAL. */
int log_level_parse(const char *s, log_level *ret_level);
/* Parses "text"|"json". Returns 0 or -EINVAL. */
int log_format_parse(const char *s, log_format *ret_format);
/* Redirects output to fd (default 2). For tests. */
void log_set_fd(int fd);

void log_msg(log_level level, const char *msg, ...) __attribute__((sentinel));
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
