/* dotenv: parser for `.env` files in the manner of the npm `dotenv`
 * package, which the original worker used.
 *
 * Accepted, one assignment per line:
 *   KEY=value              key: [A-Za-z0-9_.-]+, blanks around '=' allowed
 *   export KEY=value       "export" + blanks is skipped
 *   # comment              whole-line comment; blank lines are skipped
 *   KEY=value # comment    in unquoted values a '#' starts a comment when it
 *                          follows a blank or opens the value (`KEY=#x` is
 *                          empty); `a#b` keeps the '#'
 *   KEY=  spaced value     unquoted values are trimmed of blanks
 *   KEY=                   empty value
 *   KEY='literal'          single quotes and backticks: taken verbatim up
 *   KEY=`literal`            to the next same quote, may span lines
 *   KEY="a\nb"             double quotes: \n \r \t \\ \" are unescaped,
 *                          other backslashes kept; may span lines
 *   KEY="v" # comment      after a closing quote only blanks and a comment
 * CRLF and CR line ends are read as LF; a UTF-8 BOM is skipped. A later
 * assignment to the same key replaces the earlier value (keeping the
 * first one's position), as with dotenv.
 *
 * Differences from npm dotenv 16, deliberate: the extra escapes \t \\ \"
 * in double quotes (dotenv expands only \n and \r), '#' glued to an
 * unquoted value (`a#b`) is kept (dotenv cuts it), the `KEY: value` form
 * is not accepted, and lines dotenv would silently mangle (unterminated
 * quote, text after a closing quote) are reported as invalid.
 *
 * Invalid lines are skipped and reported by line number (1-based). */
#pragma once

#include <stddef.h>

/* Largest file (or text) accepted, and most distinct keys. */
#define DOTENV_MAX_SIZE (1024u * 1024)
#define DOTENV_MAX_ENTRIES 4096u

typedef struct dotenv_entry {
        char *key;
        char *value;
        unsigned line; /* line where the (last) assignment starts */
} dotenv_entry;

/* Parsed file. Plain data: read the arrays directly. */
typedef struct dotenv {
        dotenv_entry *entries; /* n_entries, in file order */
        size_t n_entries;
        unsigned *invalid_lines; /* n_invalid line numbers of skipped lines */
        size_t n_invalid;
} dotenv;

/* Parses text[0..len). len must be at most DOTENV_MAX_SIZE (else -EFBIG)
 * and assign at most DOTENV_MAX_ENTRIES distinct keys (else -E2BIG); text
 * containing a NUL byte is refused (-EINVAL). Invalid lines are not an
 * error: they are listed in invalid_lines. Returns 0 and fills *ret (caller
 * calls dotenv_done()), or a negative errno with a reason in err (may be
 * NULL). */
int dotenv_parse(const char *text, size_t len, dotenv *ret, char *err, size_t errlen);

/* Reads and parses the file at path. Returns dotenv_parse()'s results, or
 * the negative errno of open/read (-ENOENT when missing, -EFBIG when larger
 * than DOTENV_MAX_SIZE), with a reason naming the path in err. */
int dotenv_load(const char *path, dotenv *ret, char *err, size_t errlen);

/* Returns the value of key, or NULL when the file does not assign it. The
 * pointer is owned by d. */
const char *dotenv_get(const dotenv *d, const char *key);

/* Frees everything and zeroes *d. Accepts NULL. */
void dotenv_done(dotenv *d);
