/* util: small helpers shared by every layer: ids, timestamps, strict number
 * parsing, base64, file reading. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Writes a lowercase hyphenated UUID v4 (36 chars + NUL) from getrandom(). */
void util_uuid4(char out[37]);
/* Writes the JavaScript toISOString() form of the current UTC time,
 * e.g. 2026-11-28T02:52:27.169Z (24 chars + NUL). */
void util_iso_now(char out[25]);
/* Same for a given wall-clock time in milliseconds since the epoch. */
void util_iso_ms(int64_t epoch_ms, char out[25]);
int64_t util_wall_ms(void);
uint64_t util_mono_ms(void);
/* Strict decimal parsers: the whole string must be a number in range.
 * Return 0 or -EINVAL / -ERANGE. */
int util_parse_i64(const char *s, int64_t min, int64_t max, int64_t *ret);
int util_parse_u64(const char *s, uint64_t *ret);
/* Base64 (RFC 4648) encode into out (NUL-terminated; out must hold
 * 4*((len+2)/3)+1 bytes). */
void util_base64_encode(const void *data, size_t len, char *out);
/* Base64url or standard base64, padding optional. Returns decoded length
 * (>= 0) or -EINVAL; out must hold len*3/4+3 bytes. */
int util_base64_decode(const char *in, size_t len, unsigned char *out);
/* Reads a whole file (at most max bytes, else -EFBIG) into a NUL-terminated
 * heap string. */
int util_read_file(const char *path, size_t max, char **ret_data, size_t *ret_len);
/* Reads a whole file relative to dir_fd (AT_FDCWD for none). */
int util_read_file_at(int dir_fd, const char *path, size_t max, char **ret_data, size_t *ret_len);
/* True when s starts with prefix. */
bool util_startswith(const char *s, const char *prefix);
/* Copies at most size-1 bytes and NUL-terminates; returns strlen(src). */
size_t util_strlcpy(char *dst, const char *src, size_t size);
/* Trims ASCII whitespace on both ends in place; returns s. */
char *util_strstrip(char *s);
