// error.c: the per-thread last-error buffer behind mo_errorf().
#include "engine/base/error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[1024];

int mo_errorf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return -1;
}

const char *mo_error(void) { return last_error; }

void mo_error_clear(void) { last_error[0] = '\0'; }
