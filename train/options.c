// options.c: the table of `monolith train` options and its three readers (flags, INI
// file, run.ini) and one writer.
#include "train/options.h"

#include "engine/base/atomic_file.h"
#include "engine/base/error.h"
#include "engine/base/file.h"
#include "engine/config.h"
#include "train/ini_value.h"

#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum { OT_STR, OT_INT, OT_I64, OT_U64, OT_F64, OT_FLAG, OT_DATA } opt_type;

typedef struct {
    const char *name;  // flag name with dashes
    opt_type type;
    size_t off;
    size_t cap;        // OT_STR: buffer size
    int cli_only;      // not read from or written to INI files
    const char *arg, *help;
} opt_def;

#define F(field) offsetof(train_opts, field)
#define S(field) F(field), sizeof(((train_opts *)0)->field)
static const opt_def opts[] = {
    {"config", OT_STR, S(config), 1, "FILE", "INI file of options (flags override it)"},
    {"resume", OT_STR, S(resume), 1, "DIR", "continue the run in DIR from its newest checkpoint"},
    {"preset", OT_STR, S(preset), 0, "NAME", "new model from a preset: tiny, small, bench-S, fine-S"},
    {"init", OT_STR, S(init), 0, "CKPT", "start from this checkpoint's weights (fresh optimizer)"},
    {"moments-from", OT_STR, S(moments_from), 0, "CKPT", "with --init: Adam's m and v, and its step count, from this training checkpoint of the same shapes (continue a run's optimizer state on other weights)"},
    {"tokenizer", OT_STR, S(tokenizer), 0, "FILE", ".tiktoken the token sets were made with (--init: optional)"},
    {"data", OT_DATA, F(data), 0, 0, "NAME=FILE[:W]", "a domain's token set and sampling weight (repeat)"},
    {"route-by-domain", OT_FLAG, F(route_by_domain), 0, 0, 0, "DEMix: each domain's tokens go to its expert (by /experts domain or name, else domain i to expert i)"},
    {"supervise-routing", OT_FLAG, F(supervise_routing), 0, 0, 0, "with --route-by-domain: the domains' experts are only the targets of the router's cross-entropy (--router-ce); every token keeps the router's own top-k"},
    {"router-ce", OT_F64, F(router_ce), 0, 0, "COEF", "with --route-by-domain: weight of the router's cross-entropy against the forced experts (teaches the router the domains; 0: off)"},
    {"steps", OT_I64, F(steps), 0, 0, "N", "optimizer steps of the run"},
    {"batch", OT_INT, F(batch), 0, 0, "B", "sequences per micro-batch"},
    {"seq", OT_INT, F(seq), 0, 0, "T", "tokens per sequence (<= the model's max_seq_len)"},
    {"grad-accum", OT_INT, F(grad_accum), 0, 0, "A", "micro-batches per step (tokens/step = A*B*T)"},
    {"lr", OT_F64, F(lr), 0, 0, "LR", "peak learning rate"},
    {"lr-floor", OT_F64, F(lr_floor), 0, 0, "F", "cosine ends at F * lr"},
    {"schedule", OT_STR, S(schedule), 0, "KIND", "cosine or constant (after warmup)"},
    {"warmup", OT_I64, F(warmup), 0, 0, "N", "steps of linear warmup [min(100, steps/10)]"},
    {"weight-decay", OT_F64, F(weight_decay), 0, 0, "WD", "AdamW decoupled weight decay (not on norms)"},
    {"beta1", OT_F64, F(beta1), 0, 0, "B1", "AdamW beta1"},
    {"beta2", OT_F64, F(beta2), 0, 0, "B2", "AdamW beta2"},
    {"eps", OT_F64, F(eps), 0, 0, "EPS", "AdamW epsilon"},
    {"clip", OT_F64, F(clip), 0, 0, "NORM", "clip the global gradient norm (0: off)"},
    {"train", OT_STR, S(train), 0, "MASK", "what to train, the rest frozen: all, router, experts=3,5, ..."},
    {"seed", OT_U64, F(seed), 0, 0, "S", "seeds initialization and data order"},
    {"eval-every", OT_I64, F(eval_every), 0, 0, "N", "per-domain validation loss every N steps (0: only at the end)"},
    {"eval-batches", OT_I64, F(eval_batches), 0, 0, "N", "validation batches per domain per evaluation"},
    {"save-every", OT_I64, F(save_every), 0, 0, "N", "checkpoint every N steps (0: only at the end)"},
    {"log-every", OT_I64, F(log_every), 0, 0, "N", "plain log line every N steps when not on a terminal"},
    {"keep", OT_INT, F(keep), 0, 0, "K", "keep the newest K checkpoints"},
    {"out", OT_STR, S(out), 0, "DIR", "run folder: checkpoints, metrics.jsonl, run.ini"},
    {"threads", OT_INT, F(threads), 0, 0, "N", "threads (0: one per core; --resume: the run's own unless given) [one per core]"},
    {"precision", OT_STR, S(precision), 0, "P", "GEMM compute: fp32, or bf16 (fp32 master weights and accumulation; needs AVX512_BF16)"},
    {"shard-optimizer", OT_FLAG, F(shard_optimizer), 0, 0, 0, "under mpirun: each rank keeps AdamW's m and v of 1/N of the parameters (ZeRO-1)"},
    {"expert-parallel", OT_INT, F(expert_parallel), 0, 0, "G", "under mpirun: the experts of every MoE layer split over groups of G ranks, tokens sent to them (G divides the ranks and n_experts; 0 or 1: off)"},
    {"recompute", OT_FLAG, F(recompute), 0, 0, 0, "keep only each layer's input and redo its forward in backward (activation memory of about one layer; about one more forward of time)"},
    {"frozen-fp32", OT_FLAG, F(frozen_fp32), 0, 0, 0, "with --precision bf16 and a --train mask: keep the frozen weights' fp32 values in memory too (by default they are kept as bf16 only and copied into checkpoints from the file they were read from)"},
};
#undef F
#undef S
#define N_OPTS ((int)(sizeof opts / sizeof opts[0]))

void train_opts_defaults(train_opts *o) {
    memset(o, 0, sizeof *o);
    o->steps = 1000;
    o->router_ce = 0.1;
    o->batch = 8, o->seq = 128, o->grad_accum = 1;
    o->lr = 1e-3, o->lr_floor = 0.1;
    snprintf(o->schedule, sizeof o->schedule, "cosine");
    o->warmup = TRAIN_WARMUP_AUTO;
    o->weight_decay = 0.1, o->beta1 = 0.9, o->beta2 = 0.95, o->eps = 1e-8, o->clip = 1.0;
    snprintf(o->train, sizeof o->train, "all");
    o->seed = 1;
    o->eval_every = 100, o->eval_batches = 8, o->save_every = 500, o->log_every = 10;
    o->keep = 3;
    o->threads = -1;  // not given: one per core, or on --resume the count the run used
    snprintf(o->out, sizeof o->out, "run");
    snprintf(o->precision, sizeof o->precision, "fp32");
}

int64_t train_opts_warmup(const train_opts *o) {
    if (o->warmup != TRAIN_WARMUP_AUTO) return o->warmup;
    int64_t w = o->steps / 10;
    return w < 0 ? 0 : w > 100 ? 100 : w;
}

// `name` with underscores turned into dashes, into buf.
static const char *dashed(const char *name, char *buf, size_t cap) {
    size_t i = 0;
    for (; name[i] && i + 1 < cap; i++) buf[i] = name[i] == '_' ? '-' : name[i];
    buf[i] = 0;
    return buf;
}

static const opt_def *find_opt(const char *name) {
    char buf[64];
    dashed(name, buf, sizeof buf);
    for (int i = 0; i < N_OPTS; i++)
        if (!strcmp(opts[i].name, buf)) return &opts[i];
    return NULL;
}

static int set_override(train_opts *o, const char *name, const char *value, const char *origin) {
    mo_config probe;  // check the value parses now, so the error points at its origin
    config_preset(&probe, "tiny");
    if (config_set(&probe, name, value)) return mo_errorf("%s: %s", origin, mo_error());
    char key[64];  // stored as the /config attribute name (underscores)
    snprintf(key, sizeof key, "%s", name);
    for (char *p = key; *p; p++)
        if (*p == '-') *p = '_';
    if (strlen(value) >= sizeof o->overrides[0].value) return mo_errorf("%s: value too long", origin);
    int i = 0;
    while (i < o->n_overrides && strcmp(o->overrides[i].name, key)) i++;
    if (i == TRAIN_MAX_OVERRIDES) return mo_errorf("%s: too many model overrides", origin);
    if (i == o->n_overrides) o->n_overrides++;
    snprintf(o->overrides[i].name, sizeof o->overrides[i].name, "%s", key);
    snprintf(o->overrides[i].value, sizeof o->overrides[i].value, "%s", value);
    return 0;
}

int train_opts_set(train_opts *o, const char *name, const char *value, const char *origin) {
    const opt_def *d = find_opt(name);
    if (!d) {
        if (config_is_field(name)) return set_override(o, name, value, origin);
        return mo_errorf("%s: unknown option '%s' (monolith train --help lists them)", origin, name);
    }
    void *at = (char *)o + d->off;
    char *end;
    errno = 0;
    switch (d->type) {
    case OT_STR:
        if (strlen(value) >= d->cap) return mo_errorf("%s: value too long (at most %zu bytes)", origin, d->cap - 1);
        if (d->off == offsetof(train_opts, precision) && strcmp(value, "fp32") && strcmp(value, "bf16"))
            return mo_errorf("%s: '%s': use fp32 or bf16", origin, value);
        snprintf((char *)at, d->cap, "%s", value);
        return 0;
    case OT_INT: {
        long v = strtol(value, &end, 10);
        if (!*value || *end || errno || v < -1000000000L || v > 1000000000L)
            return mo_errorf("%s: expected a whole number, not '%s'", origin, value);
        if (v < 0 && d->off == offsetof(train_opts, threads))
            return mo_errorf("%s: expected 0 (one per core) or more threads, not '%s'", origin, value);
        *(int *)at = (int)v;
        return 0;
    }
    case OT_I64: {
        long long v = strtoll(value, &end, 10);
        if (!*value || *end || errno) return mo_errorf("%s: expected a whole number, not '%s'", origin, value);
        *(int64_t *)at = v;
        return 0;
    }
    case OT_U64: {
        if (*value == '-') return mo_errorf("%s: expected a non-negative whole number, not '%s'", origin, value);
        unsigned long long v = strtoull(value, &end, 10);
        if (!*value || *end || errno) return mo_errorf("%s: expected a non-negative whole number, not '%s'", origin, value);
        *(uint64_t *)at = v;
        return 0;
    }
    case OT_F64: {
        double v = strtod(value, &end);
        if (!*value || *end || errno || !isfinite(v)) return mo_errorf("%s: expected a number, not '%s'", origin, value);
        *(double *)at = v;
        return 0;
    }
    case OT_FLAG:
        if (!*value || !strcmp(value, "1") || !strcmp(value, "true") || !strcmp(value, "yes")) *(int *)at = 1;
        else if (!strcmp(value, "0") || !strcmp(value, "false") || !strcmp(value, "no")) *(int *)at = 0;
        else return mo_errorf("%s: expected true or false, not '%s'", origin, value);
        return 0;
    case OT_DATA: {
        if (o->n_data == TRAIN_MAX_DOMAINS) return mo_errorf("%s: at most %d domains", origin, TRAIN_MAX_DOMAINS);
        train_data_spec ds;
        if (loader_parse_spec(value, &ds)) {
            if (!strncmp(origin, "--", 2)) return -1;  // its message already names --data
            return mo_errorf("%s: %s", origin, mo_error());
        }
        if (*ds.name && loader_name_check(ds.name, origin)) return -1;  // names become JSON keys and file names
        for (int i = 0; i < o->n_data; i++)
            if (*ds.name && !strcmp(o->data[i].name, ds.name))
                return mo_errorf("%s: domain '%s' is given twice", origin, ds.name);
        o->data[o->n_data++] = ds;
        return 0;
    }
    }
    return 0;
}

// ---------------------------------------------------------------------------- INI

// Debian's inih passes no line numbers to the handler, and takes lines of at most 199
// bytes: the reader hands it one whole line per call, counting them, and stops at a
// longer line or a NUL byte (ini_line_read). It also follows what inih does with an
// indented line (a continuation of the previous key's value once a key has been seen in
// the section), so that on_ini tells continuations from "key = value" lines. It reads a
// file, or text.
typedef struct {
    train_opts *o;
    const char *path;
    ini_lines lines;
    int failed;
    int indented;       // the current line starts with a blank
    int prev_set;       // inih has a previous key in this section (its prev_name)
    ini_value val;      // the value being read (quoted ones may span lines)
    char key[64], section[32];
    int key_line;       // where the value being read started
} ini_ctx;

static char *line_reader(char *str, int num, void *stream) {
    ini_ctx *c = stream;
    if (!ini_line_read(str, num, &c->lines)) return NULL;
    const char *b = str;
    while (*b && strchr(" \t\r\n\f\v", *b)) b++;
    c->indented = b > str;
    if (*b == '[' && !(c->indented && c->prev_set)) c->prev_set = 0;  // a section line
    return str;
}

static int apply(ini_ctx *c, const char *section, const char *name, const char *value, const char *origin) {
    if (!strcmp(section, "model")) {
        if (!config_is_field(name))
            return mo_errorf("%s: '%s' is not a model config field (see monolith train --help)", origin, name);
        return set_override(c->o, name, value, origin);
    }
    if (*section && strcmp(section, "train")) return mo_errorf("%s: unknown section [%s] (use [train] and [model])", origin, section);
    const opt_def *d = find_opt(name);
    if (d && d->cli_only) return mo_errorf("%s: '%s' is a command-line flag only", origin, name);
    return train_opts_set(c->o, name, value, origin);
}

static int on_ini(void *user, const char *section, const char *name, const char *value) {
    ini_ctx *c = user;
    char origin[TRAIN_PATH_MAX + 32];
    snprintf(origin, sizeof origin, "%s:%d", c->path, c->lines.line);
    // For an indented line after a key, inih calls with that key and the whole line.
    int continuation = c->indented && c->prev_set;
    c->prev_set = 1;
    if (!continuation && c->val.open) {
        mo_errorf("%s:%d: the quoted value of '%s' has no closing quote", c->path, c->key_line, c->key);
        goto fail;
    }
    if (!continuation) {
        snprintf(c->key, sizeof c->key, "%s", name);
        snprintf(c->section, sizeof c->section, "%s", section);
        c->key_line = c->lines.line;
    }
    if (ini_value_feed(&c->val, value, continuation)) {
        mo_errorf("%s: %s", origin, mo_error());
        goto fail;
    }
    if (c->val.open) return 1;  // the next line goes on with it
    snprintf(origin, sizeof origin, "%s:%d", c->path, c->key_line);
    if (apply(c, c->section, c->key, c->val.buf, origin)) goto fail;
    return 1;
fail:
    c->failed = 1;
    return 0;
}

// Runs inih over c's file or text. Returns 0, or -1 naming the file (or origin) and line.
static int parse_ini(ini_ctx *c) {
    int rc = ini_parse_stream(line_reader, c, on_ini, c);
    const char *path = c->path;
    if (c->failed || ini_lines_check(&c->lines, path)) return -1;
    if (rc > 0) return mo_errorf("%s:%d: not INI syntax (expected 'key = value' or '[section]')", path, rc);
    if (rc < 0) return mo_errorf("%s: cannot read the config file", path);
    if (c->val.open) return mo_errorf("%s:%d: the quoted value of '%s' has no closing quote", path, c->key_line, c->key);
    return 0;
}

static int load(train_opts *o, const char *path, FILE *f, const char *text) {
    ini_ctx *c = calloc(1, sizeof *c);  // holds a 16 KB value buffer
    if (!c) return mo_errorf("out of memory");
    *c = (ini_ctx){.o = o, .path = path, .lines = {.f = f, .text = text}};
    int rc = parse_ini(c);
    free(c);
    return rc;
}

int train_opts_load_ini(train_opts *o, const char *path) {
    FILE *f = file_open_regular(path);
    if (!f) return mo_errorf("the config file %s", mo_error());
    int rc = load(o, path, f, NULL);
    fclose(f);
    return rc;
}

int train_opts_load_ini_text(train_opts *o, const char *text, const char *origin) {
    return load(o, origin, NULL, text);
}

void train_opts_write(const train_opts *o, FILE *f) {
    fprintf(f, "# written by monolith train; read back by --resume and usable as --config\n[train]\n");
    for (int i = 0; i < N_OPTS; i++) {
        const opt_def *d = &opts[i];
        const void *at = (const char *)o + d->off;
        if (d->cli_only) continue;
        switch (d->type) {
        case OT_STR:  // empty values too: "train =" must not come back as the default "all"
            ini_value_write(f, d->name, (const char *)at);
            break;
        case OT_INT:  // threads -1 is "not given": left out, it reads back as such
            if (d->off != offsetof(train_opts, threads) || *(const int *)at >= 0)
                fprintf(f, "%s = %d\n", d->name, *(const int *)at);
            break;
        case OT_FLAG: fprintf(f, "%s = %s\n", d->name, *(const int *)at ? "true" : "false"); break;
        case OT_I64: fprintf(f, "%s = %lld\n", d->name, (long long)*(const int64_t *)at); break;
        case OT_U64: fprintf(f, "%s = %llu\n", d->name, (unsigned long long)*(const uint64_t *)at); break;
        case OT_F64: fprintf(f, "%s = %.17g\n", d->name, *(const double *)at); break;
        case OT_DATA:
            for (int k = 0; k < o->n_data; k++) {
                char spec[TRAIN_PATH_MAX + 128];
                snprintf(spec, sizeof spec, "%s%s%s:%.17g", o->data[k].name, *o->data[k].name ? "=" : "",
                         o->data[k].path, o->data[k].weight);
                ini_value_write(f, "data", spec);
            }
            break;
        }
    }
    if (o->n_overrides) fprintf(f, "\n[model]\n");
    for (int k = 0; k < o->n_overrides; k++) ini_value_write(f, o->overrides[k].name, o->overrides[k].value);
}

int train_opts_write_ini(const train_opts *o, const char *path) {
    atomic_file a;
    FILE *f = atomic_open(&a, path, "w");
    if (!f) return -1;
    train_opts_write(o, f);
    return atomic_commit(&a, 0);
}

// ---------------------------------------------------------------------------- flags

int train_opts_parse(train_opts *o, int argc, char **argv) {
    // getopt_long's table: our options, then every model config field as --<field>.
    int n_fields = 0;
    while (config_field_flags[n_fields]) n_fields++;
    struct option *lo = calloc((size_t)(N_OPTS + n_fields + 2), sizeof *lo);
    if (!lo) return mo_errorf("out of memory");
    for (int i = 0; i < N_OPTS; i++)
        lo[i] = (struct option){opts[i].name, opts[i].type == OT_FLAG ? no_argument : required_argument, 0, 1000 + i};
    for (int i = 0; i < n_fields; i++)
        lo[N_OPTS + i] = (struct option){config_field_flags[i], required_argument, 0, 3000 + i};
    lo[N_OPTS + n_fields] = (struct option){"help", no_argument, 0, 'h'};

    int rc = 0, pass, c, idx;
    opterr = 0;
    // Pass 0 reads only --config (and --help); pass 1 applies every flag over the file.
    for (pass = 0; pass < 2 && rc == 0; pass++) {
        optind = 1;
        int data_from_cli = 0;
        while ((c = getopt_long(argc, argv, ":", lo, &idx)) != -1) {
            char origin[96];
            if (c == 'h') {
                rc = 1;
                break;
            }
            if (c == '?' || c == ':') {
                const char *bad = argv[optind - 1];
                if (c == ':') rc = mo_errorf("flag %s needs a value (monolith train --help)", bad);
                else
                    rc = mo_errorf("unknown flag '%s' (monolith train --help lists them)", bad);
                break;
            }
            if (c >= 3000) {
                if (pass == 1) {
                    snprintf(origin, sizeof origin, "--%s", config_field_flags[c - 3000]);
                    rc = set_override(o, config_field_flags[c - 3000], optarg, origin);
                }
            } else {
                const opt_def *d = &opts[c - 1000];
                snprintf(origin, sizeof origin, "--%s", d->name);
                if (pass == 0 && !strcmp(d->name, "config")) {
                    rc = train_opts_set(o, d->name, optarg, origin);
                    if (!rc) rc = train_opts_load_ini(o, o->config);
                } else if (pass == 1 && strcmp(d->name, "config")) {
                    if (d->type == OT_DATA && !data_from_cli) o->n_data = 0, data_from_cli = 1;
                    rc = train_opts_set(o, d->name, d->type == OT_FLAG ? "1" : optarg, origin);
                }
            }
            if (rc) break;
        }
        if (rc == 0 && optind < argc) rc = mo_errorf("unexpected argument '%s' (flags start with --)", argv[optind]);
    }
    free(lo);
    return rc;
}

void train_opts_usage(FILE *out) {
    train_opts d;
    train_opts_defaults(&d);
    fprintf(out, "usage: monolith train (--preset NAME | --init CKPT) --data NAME=FILE[:W] ... [flags]\n"
                 "       monolith train --resume DIR [--threads N]\n\nflags (default in brackets):\n");
    for (int i = 0; i < N_OPTS; i++) {
        const opt_def *o = &opts[i];
        char left[64], def[64] = "";
        snprintf(left, sizeof left, "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        const void *at = (const char *)&d + o->off;
        switch (o->type) {
        case OT_STR:
            if (*(const char *)at) snprintf(def, sizeof def, " [%s]", (const char *)at);
            break;
        case OT_INT:
            if (*(const int *)at >= 0) snprintf(def, sizeof def, " [%d]", *(const int *)at);
            break;
        case OT_I64:  // TRAIN_WARMUP_AUTO: the help text says the default
            if (*(const int64_t *)at != TRAIN_WARMUP_AUTO) snprintf(def, sizeof def, " [%lld]", (long long)*(const int64_t *)at);
            break;
        case OT_U64: snprintf(def, sizeof def, " [%llu]", (unsigned long long)*(const uint64_t *)at); break;
        case OT_F64: snprintf(def, sizeof def, " [%g]", *(const double *)at); break;
        default: break;
        }
        fprintf(out, "  %-22s %s%s\n", left, o->help, def);
    }
    fprintf(out, "  --<config field> V     model override, e.g. --n-experts 8, --aux-coef 0.02; fields:\n   ");
    int col = 3;
    for (int i = 0; config_field_flags[i]; i++) {
        int w = (int)strlen(config_field_flags[i]) + 1;
        if (col + w > 90) fprintf(out, "\n   "), col = 3;
        fprintf(out, " %s", config_field_flags[i]);
        col += w;
    }
    fprintf(out, "\n");
}
