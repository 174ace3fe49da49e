// lr_schedule.c: warmup then cosine (or constant) learning rate.
#include "train/lr_schedule.h"

#include "engine/base/error.h"

#include <math.h>
#include <string.h>

int lr_schedule_validate(const lr_schedule *s) {
    if (!(s->lr > 0) || !isfinite(s->lr)) return mo_errorf("--lr must be a positive number, not %g", s->lr);
    if (!(s->floor_frac >= 0 && s->floor_frac <= 1))
        return mo_errorf("--lr-floor is a fraction of --lr in [0, 1], not %g", s->floor_frac);
    if (s->total < 1) return mo_errorf("--steps must be at least 1, not %lld", (long long)s->total);
    if (s->warmup < 0 || s->warmup > s->total)
        return mo_errorf("--warmup %lld must be between 0 and --steps %lld", (long long)s->warmup,
                         (long long)s->total);
    return 0;
}

double lr_schedule_at(const lr_schedule *s, int64_t step) {
    if (step < s->warmup) return s->lr * (double)(step + 1) / (double)s->warmup;
    if (s->kind == LR_SCHEDULE_CONSTANT) return s->lr;
    double floor = s->lr * s->floor_frac;
    int64_t span = s->total - s->warmup;
    if (span <= 0 || step >= s->total) return floor;
    double ratio = (double)(step - s->warmup) / (double)span;
    return floor + (s->lr - floor) * 0.5 * (1.0 + cos(M_PI * ratio));
}

int lr_schedule_parse_kind(const char *name, lr_schedule_kind *out) {
    if (!strcmp(name, "cosine")) *out = LR_SCHEDULE_COSINE;
    else if (!strcmp(name, "constant")) *out = LR_SCHEDULE_CONSTANT;
    else return mo_errorf("--schedule: unknown schedule '%s' (use cosine or constant)", name);
    return 0;
}

const char *lr_schedule_kind_name(lr_schedule_kind k) { return k == LR_SCHEDULE_CONSTANT ? "constant" : "cosine"; }
