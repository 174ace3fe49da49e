// lr_schedule.h: the learning rate of each step: linear warmup, then cosine decay to a
// floor (or constant).
//
// For step s (0-based: the s-th update of the run, s < total):
//   s < warmup:   lr * (s + 1) / warmup                     (the first step is not zero)
//   cosine:       floor + (lr - floor) * 0.5 * (1 + cos(pi * (s - warmup) / (total - warmup)))
//   constant:     lr
// with floor = lr * floor_frac. The cosine reaches the floor at s = total.
#ifndef MONOLITH_LR_SCHEDULE_H
#define MONOLITH_LR_SCHEDULE_H

#include <stdint.h>

typedef enum { LR_SCHEDULE_COSINE = 0, LR_SCHEDULE_CONSTANT = 1 } lr_schedule_kind;

typedef struct {
    lr_schedule_kind kind;
    double lr;          // peak learning rate
    double floor_frac;  // the cosine's end as a fraction of lr, in [0, 1]
    int64_t warmup;     // steps of linear warmup (0: none)
    int64_t total;      // steps of the whole run
} lr_schedule;

// Checks the fields: lr > 0 and finite, floor_frac in [0, 1], 0 <= warmup <= total,
// total >= 1. Returns 0, or -1 with a message naming the flag (--lr, --lr-floor,
// --warmup, --steps).
int lr_schedule_validate(const lr_schedule *s);

// The learning rate of step `step` (0-based); steps past `total` get the floor
// (cosine) or lr (constant).
double lr_schedule_at(const lr_schedule *s, int64_t step);

// Parses "cosine" or "constant". Returns 0, or -1 naming --schedule and the choices.
int lr_schedule_parse_kind(const char *name, lr_schedule_kind *out);
// "cosine" or "constant".
const char *lr_schedule_kind_name(lr_schedule_kind k);

#endif
