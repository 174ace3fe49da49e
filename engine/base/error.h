// error.h: one-line error messages for library code.
//
// Library functions never print and never exit. On failure they record one line with
// mo_errorf() and return -1 (or NULL); the CLI prints mo_error() and exits non-zero.
// The message names the file or flag at fault and, where there is one, the fix.
#ifndef MONOLITH_ERROR_H
#define MONOLITH_ERROR_H

#if defined(__GNUC__)
#define MO_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MO_PRINTF(a, b)
#endif

// Records a message (printf-style) for this thread and returns -1, so a failing call
// site reads `return mo_errorf("%s: not a monolith checkpoint", path);`.
int mo_errorf(const char *fmt, ...) MO_PRINTF(1, 2);

// The last message recorded on this thread, or "" if none.
const char *mo_error(void);

void mo_error_clear(void);

#endif
