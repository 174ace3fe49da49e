// progress.c: progress lines for a terminal or a log (see progress.h).
#include "tools/progress.h"

#include "engine/base/clock.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

void progress_start(progress *p) {
    p->tty = isatty(STDERR_FILENO);
    p->open = 0;
    p->start = now_seconds();
    p->last = -1e9;
}

double progress_elapsed(const progress *p) { return now_seconds() - p->start; }

void progress_show(progress *p, int final, const char *fmt, ...) {
    double now = now_seconds();
    if (!final && now - p->last < (p->tty ? 0.5 : 5.0)) return;
    p->last = now;
    if (p->tty) fputs("\r\033[K", stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (p->tty) p->open = 1;
    else fputc('\n', stderr);
    fflush(stderr);
}

void progress_end(progress *p) {
    if (p->open) fputc('\n', stderr);
    p->open = 0;
}
