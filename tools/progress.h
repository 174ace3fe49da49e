// progress.h: a progress line on stderr that suits where stderr goes. On a terminal one
// line rewritten in place ("\r", at most twice a second); into a pipe or a file a plain
// line per update (at most one every 5 seconds), so logs stay readable line by line.
#ifndef MONOLITH_PROGRESS_H
#define MONOLITH_PROGRESS_H

typedef struct {
    int tty;        // stderr is a terminal
    int open;       // a terminal line is shown and not yet ended
    double start;   // now_seconds() at progress_start
    double last;    // time of the last line shown
} progress;

void progress_start(progress *p);
// Seconds since progress_start.
double progress_elapsed(const progress *p);
// Shows the formatted line if `final` or if enough time passed since the last one.
void progress_show(progress *p, int final, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
// Ends a terminal line (a newline after it); nothing otherwise.
void progress_end(progress *p);

#endif
