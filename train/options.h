// options.h: every setting of `monolith train`, from one table that serves the command
// line (getopt_long), the INI config file (--config run.ini, read with inih) and the
// run.ini a run writes into its folder (so --resume reads back exactly what it ran with).
//
// Precedence: defaults, then the --config file, then the flags. In the INI file the keys
// are the flag names (dashes or underscores) in a [train] section (or before any
// section); `data` may repeat. Model overrides go in a [model] section with /config
// attribute names (n_experts = 8), or as flags (--n-experts 8). A --data flag replaces
// the file's data list rather than adding to it.
#ifndef MONOLITH_TRAIN_OPTIONS_H
#define MONOLITH_TRAIN_OPTIONS_H

#include "data/loader.h"

#include <stdint.h>
#include <stdio.h>

#define TRAIN_MAX_DOMAINS 16
#define TRAIN_MAX_OVERRIDES 32
#define TRAIN_PATH_MAX 4096

// One --data NAME=FILE[:WEIGHT] (data/loader.h; NAME may be left out: the file's domain).
typedef loader_spec train_data_spec;

typedef struct {
    char name[64], value[256];
} train_override;

typedef struct {
    char config[TRAIN_PATH_MAX];  // --config: the INI file read (CLI only)
    char resume[TRAIN_PATH_MAX];  // --resume DIR (CLI only)
    // The model.
    char preset[32];
    char init[TRAIN_PATH_MAX];
    char moments_from[TRAIN_PATH_MAX];  // with init: Adam's m, v and step count from this training checkpoint
    train_override overrides[TRAIN_MAX_OVERRIDES];
    int n_overrides;
    char tokenizer[TRAIN_PATH_MAX];
    // Data.
    train_data_spec data[TRAIN_MAX_DOMAINS];
    int n_data;
    int route_by_domain;
    int supervise_routing;  // route-by-domain: the experts are router_ce's targets only (routing stays top-k)
    double router_ce;  // route-by-domain: weight of the router's cross-entropy against the forced experts
    // Steps and batches.
    int64_t steps;
    int batch, seq, grad_accum;
    // Optimizer and schedule.
    double lr, lr_floor;
    char schedule[16];
    int64_t warmup;
    double weight_decay, beta1, beta2, eps, clip;
    char train[256];  // --train mask (train/freeze.h)
    uint64_t seed;
    // Evaluation, checkpoints, output.
    int64_t eval_every, eval_batches, save_every, log_every;
    int keep;
    char out[TRAIN_PATH_MAX];
    int threads;
    char precision[8];  // fp32 or bf16 (engine/model.h model_set_precision)
    int shard_optimizer;  // under mpirun: AdamW's m and v sharded over the ranks (train/dist.h)
    int recompute;      // activation checkpointing per layer (engine/model.h mo_model_opts)
    int frozen_fp32;    // bf16 fine-tune: keep the frozen weights' fp32 copy too (train/trainer_open.c held_load)
    int expert_parallel;  // under mpirun: experts split over groups of this many ranks (engine/moe_ep.h; <= 1: off)
} train_opts;

void train_opts_defaults(train_opts *o);

// --warmup's default: "fit the run", resolved by train_opts_warmup() once --steps is known.
#define TRAIN_WARMUP_AUTO INT64_MIN
// The warmup a run uses: o->warmup if given, else min(100, steps / 10), so that any
// --steps works with the default (an explicit value is kept, and refused later if it
// exceeds --steps).
int64_t train_opts_warmup(const train_opts *o);

// Sets option `name` (dashes or underscores) from text; a /config field name becomes a
// model override. `origin` names where the value came from in messages ("--steps",
// "run.ini:12"). Returns 0, or -1 with a one-line message (unknown name, bad value).
int train_opts_set(train_opts *o, const char *name, const char *value, const char *origin);

// Reads an INI file into `o`. Returns 0, or -1 naming the file and line.
int train_opts_load_ini(train_opts *o, const char *path);
// The same from INI text (a checkpoint's /train options); `origin` names it in messages.
int train_opts_load_ini_text(train_opts *o, const char *text, const char *origin);

// Parses `monolith train` flags (argv[0] is "train"): the --config file first, then the
// other flags over it. Returns 0, 1 when --help was asked, or -1 with a message.
int train_opts_parse(train_opts *o, int argc, char **argv);

// Writes every option (but config and resume) as an INI file that train_opts_load_ini
// reads back to the same values (reals with 17 digits). Atomic (PATH.tmp, rename).
int train_opts_write_ini(const train_opts *o, const char *path);
// The same text to an open stream.
void train_opts_write(const train_opts *o, FILE *f);

// The flag list with defaults and help, for --help.
void train_opts_usage(FILE *out);

#endif
