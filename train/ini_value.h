// ini_value.h: INI values that read back exactly, through Debian's inih.
//
// inih has no quoting, reads lines of at most 199 bytes, strips a value's outer
// whitespace, ends it at " ;" (an inline comment), and takes an indented line as the
// continuation of the previous key. So a path holding a newline, " ;", "#" or 300 bytes
// would come back from run.ini as something else (another key, a cut value). Values are
// written plain when inih returns them unchanged, else quoted:
//
//   out = "runs/a\nsteps = 9\x3b x"        escapes \\ \" \n \r \t \xHH (';' '#' as \x3b \x23)
//   data = "code=/a/very/long/path/...      a long value goes on over indented lines
//     .../code.h5:1"                        (each piece starts and ends with no blank)
//
// and the reader (ini_value_feed, called from the inih handler) undoes it. A value in a
// hand-written config that starts with '"' is read the same way.
#ifndef MONOLITH_INI_VALUE_H
#define MONOLITH_INI_VALUE_H

#include <stddef.h>
#include <stdio.h>

#define INI_VALUE_MAX 16384  // longest decoded value (paths are at most 4095 bytes)

// Writes "key = value\n" (more lines for a long value). Returns 0, or -1 on a write error.
int ini_value_write(FILE *f, const char *key, const char *value);

// A value being read: a quoted one may go on over continuation lines.
typedef struct {
    char buf[INI_VALUE_MAX + 1];
    size_t len;
    int open;  // a quoted value whose closing quote has not come yet
} ini_value;

// Feeds the text inih gave the handler for one line: the value of a "key = value" line
// (continuation = 0), or an indented continuation line (1). Returns 0 with the value in
// v->buf once it is complete (v->open == 0), 0 with v->open set while a quoted value
// goes on, or -1 with a message (bad escape, text after the closing quote, too long).
int ini_value_feed(ini_value *v, const char *text, int continuation);

// Lines for inih's ini_parse_stream, strictly: inih cuts a line at 199 bytes (the rest
// becomes more lines) and stops a line at a NUL byte, silently. ini_line_read gives inih
// one line of at most num - 1 bytes from a file (f) or a string (text), counting lines;
// a longer line or a NUL byte ends the stream there, and ini_lines_check reports it.
typedef struct {
    FILE *f;           // read from f, or else from text
    const char *text;  // what is left of the text
    int line;          // lines read so far (the current one's number)
    int bad;           // 1: a line longer than inih's buffer, 2: a NUL byte
} ini_lines;

// For ini_parse_stream's reader: str (num bytes) gets the next line; NULL at the end.
char *ini_line_read(char *str, int num, ini_lines *r);

// 0, or -1 with "PATH:LINE: line longer than 199 bytes (...)" or "...: a NUL byte".
int ini_lines_check(const ini_lines *r, const char *path);

#endif
