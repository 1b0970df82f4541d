/* hw_proc: helpers shared by the hardware probes (hw_os, hw_cpu, hw_mem,
 * hw_disk, hw_net): opening a root directory, reading small /proc files with
 * as few system calls as possible, and hand-written scanning of the text.
 *
 * The scanners work on [p, end) ranges that need not be NUL-terminated, so
 * the parsers built on them can be fed arbitrary bytes (tests/fuzz). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Opens root ("/" or a fixture tree) as an O_PATH directory descriptor that
 * the *_at probes resolve their relative paths ("proc/stat") against.
 * Returns 0 or a negative errno. The caller closes *ret_fd. */
int hw_proc_root_open(const char *root, int *ret_fd);

/* Text read by hw_proc_read(): data points either at the caller's buffer or,
 * when the file did not fit, at heap memory owned by the struct (heap). */
typedef struct hw_proc_text {
        char *data;       /* NUL-terminated contents */
        size_t len;       /* bytes read, NUL not counted */
        bool truncated;   /* stopped at the buffer's end before EOF */
        char *heap;       /* non-NULL when spilled to the heap; free with _done */
        size_t heap_size; /* allocated size of heap */
} hw_proc_text;

/* Reads dir_fd/path (O_RDONLY|O_CLOEXEC) until EOF into buf (size bytes, at
 * least 2). When the file is larger and max > size, the contents continue in
 * a heap buffer that grows up to max bytes (then -EFBIG); with max <= size the
 * read stops when buf is full and ret->truncated is set (for files of which
 * only the beginning matters). Returns 0 or a negative errno; ret is written
 * only on success and must be released with hw_proc_text_done(). */
int hw_proc_read(int dir_fd, const char *path, char *buf, size_t size, size_t max, hw_proc_text *ret);
void hw_proc_text_done(hw_proc_text *t);

/* Returns the end of the line starting at p (the '\n' or end). */
const char *hw_proc_eol(const char *p, const char *end);
/* Skips spaces and tabs. */
const char *hw_proc_skip_blank(const char *p, const char *end);
/* Parses decimal digits at *p into *ret and advances *p. False (nothing
 * consumed) when there is no digit or the value overflows. */
bool hw_proc_scan_u64(const char **p, const char *end, uint64_t *ret);
/* Parses hexadecimal digits (no 0x) at *p, at most 16. */
bool hw_proc_scan_hex(const char **p, const char *end, uint64_t *ret);
/* Parses "123", "123.45" or ".5" (no sign, no exponent) into *ret. */
bool hw_proc_scan_decimal(const char **p, const char *end, double *ret);

/* Copies [src, src+n) into dst (size >= 1 bytes) after trimming ASCII
 * whitespace on both ends, replacing bytes that are not valid UTF-8 and
 * control characters by '?', and truncating on a character boundary. */
void hw_proc_copy_text(char *dst, size_t size, const char *src, size_t n);
