// error.c: the per-thread last-error buffer behind mo_errorf().
#include "engine/base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <string.h>

static _Thread_local char last_error[1024];

int mo_errorf(const char *fmt, ...) {
    // Formatted into a copy first: callers often pass mo_error() itself as an argument
    // ("%s: %s", origin, mo_error()), and vsnprintf must not read the buffer it writes.
    char buf[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    // One line whatever the arguments held (a flag value or a file's bytes may contain
    // newlines or terminal escapes): control characters become '?'.
    for (char *p = buf; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    memcpy(last_error, buf, sizeof buf);
    return -1;
}

const char *mo_error(void) { return last_error; }

void mo_error_clear(void) { last_error[0] = '\0'; }
