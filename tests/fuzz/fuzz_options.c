// fuzz_options.c: the parsers of `monolith train` settings: the INI config reader (inih
// + train/options.c), the flag parser (getopt_long over the same table), the --train
// freeze mask, the --data spec, model config overrides, and the pipeline btx INI file.
//
// Input: byte 0 % 6 picks the parser, the rest is the payload.
//   0 INI file: if it loads, writing the options out and reading them back (what --resume
//     does with run.ini) must give the same options.
//   1 flags: NUL-separated arguments after "train".
//   2 --train MASK against the tiny preset: on success the ranges are sorted, disjoint,
//     inside the arena, sum to numel, and train_mask_has agrees with them.
//   3 --data spec: on success the path is non-empty and the weight positive and finite.
//   4 model overrides: NUL-separated name, value pairs over the tiny preset; a config
//     that finalizes must validate and build its parameter table.
//   5 a `monolith pipeline btx --config` file (btx_load: every stage's options checked).
// Every refusal must leave a one-line, non-empty message.
#include "tests/fuzz/fuzz.h"

#include "data/loader.h"
#include "engine/base/error.h"
#include "engine/config.h"
#include "engine/params.h"
#include "train/freeze.h"
#include "train/options.h"
#include "train/pipeline_btx.h"

#include <math.h>

static void check_message(void) {
    const char *msg = mo_error();
    FUZZ_CHECK(msg[0] != 0 && strchr(msg, '\n') == NULL);
}

static char ini_back_path[300];
static void ini_back_cleanup(void) { unlink(ini_back_path); }

static void same_opts(const train_opts *a, const train_opts *b) {
    FUZZ_CHECK(!strcmp(a->preset, b->preset) && !strcmp(a->init, b->init) && !strcmp(a->tokenizer, b->tokenizer));
    FUZZ_CHECK(!strcmp(a->schedule, b->schedule) && !strcmp(a->train, b->train) && !strcmp(a->out, b->out));
    FUZZ_CHECK(a->route_by_domain == b->route_by_domain && a->steps == b->steps && a->batch == b->batch);
    FUZZ_CHECK(a->seq == b->seq && a->grad_accum == b->grad_accum && a->warmup == b->warmup && a->seed == b->seed);
    FUZZ_CHECK(a->eval_every == b->eval_every && a->eval_batches == b->eval_batches);
    FUZZ_CHECK(a->save_every == b->save_every && a->log_every == b->log_every && a->keep == b->keep);
    FUZZ_CHECK(a->threads == b->threads);
    const double da[] = {a->lr, a->lr_floor, a->weight_decay, a->beta1, a->beta2, a->eps, a->clip};
    const double db[] = {b->lr, b->lr_floor, b->weight_decay, b->beta1, b->beta2, b->eps, b->clip};
    FUZZ_CHECK(memcmp(da, db, sizeof da) == 0);  // written with 17 digits: bitwise equal
    FUZZ_CHECK(a->n_data == b->n_data);
    for (int i = 0; i < a->n_data; i++) {
        FUZZ_CHECK(!strcmp(a->data[i].name, b->data[i].name) && !strcmp(a->data[i].path, b->data[i].path));
        FUZZ_CHECK(a->data[i].weight == b->data[i].weight);
    }
    FUZZ_CHECK(a->n_overrides == b->n_overrides);
    for (int i = 0; i < a->n_overrides; i++)
        FUZZ_CHECK(!strcmp(a->overrides[i].name, b->overrides[i].name) &&
                   !strcmp(a->overrides[i].value, b->overrides[i].value));
}

static void ini_mode(const uint8_t *p, size_t n) {
    const char *path = fuzz_write_file(p, n, ".ini");
    if (!path) return;
    static train_opts o, back;
    train_opts_defaults(&o);
    if (train_opts_load_ini(&o, path)) {
        check_message();
        return;
    }
    // Every value, whatever its bytes, is written so that it reads back exactly
    // (train/ini_value.h).
    if (!ini_back_path[0]) {
        snprintf(ini_back_path, sizeof ini_back_path, "%s.back", path);
        atexit(ini_back_cleanup);
    }
    FUZZ_CHECK(train_opts_write_ini(&o, ini_back_path) == 0);
    train_opts_defaults(&back);
    if (train_opts_load_ini(&back, ini_back_path)) {
        fprintf(stderr, "run.ini written from a loaded config does not load back: %s\n", mo_error());
        abort();
    }
    same_opts(&o, &back);
}

static void flags_mode(const uint8_t *p, size_t n) {
    char *s = fuzz_cstr(p, n);
    // --config FILE opens FILE: keep the fuzzer away from devices that never end.
    if (strstr(s, "/dev") || strstr(s, "/proc") || strstr(s, "/sys") || memmem(p, n, "/dev", 4)) {
        free(s);
        return;
    }
    char *argv[66];
    int argc = 0;
    argv[argc++] = "train";
    for (size_t i = 0; i < n && argc < 65;) {
        argv[argc++] = s + i;
        i += strlen(s + i) + 1;
    }
    argv[argc] = NULL;
    static train_opts o;
    train_opts_defaults(&o);
    int rc = train_opts_parse(&o, argc, argv);
    FUZZ_CHECK(rc == -1 || rc == 0 || rc == 1);
    if (rc < 0) check_message();
    free(s);
}

static mo_param_table table;

static void mask_mode(const uint8_t *p, size_t n) {
    char *spec = fuzz_cstr(p, n);
    train_mask m = {0};
    if (freeze_parse(&table, spec, &m)) {
        check_message();
        free(spec);
        return;
    }
    size_t sum = 0, prev_end = 0;
    for (size_t i = 0; i < m.n; i++) {
        FUZZ_CHECK(m.r[i].length >= 1 && m.r[i].length <= FREEZE_CHUNK);
        FUZZ_CHECK(m.r[i].offset >= prev_end && m.r[i].offset + m.r[i].length <= table.numel);
        prev_end = m.r[i].offset + m.r[i].length;
        sum += m.r[i].length;
    }
    FUZZ_CHECK(sum == m.numel && m.numel >= 1);
    for (size_t i = 0; i < table.numel; i += 97) {
        int in = 0;
        for (size_t k = 0; k < m.n && !in; k++) in = i >= m.r[k].offset && i < m.r[k].offset + m.r[k].length;
        FUZZ_CHECK(train_mask_has(&m, i) == in);
    }
    train_mask_free(&m);
    free(spec);
}

static void spec_mode(const uint8_t *p, size_t n) {
    char *s = fuzz_cstr(p, n);
    loader_spec spec;
    if (loader_parse_spec(s, &spec)) check_message();
    else FUZZ_CHECK(spec.path[0] && spec.weight > 0 && isfinite(spec.weight));
    free(s);
}

static void config_mode(const uint8_t *p, size_t n) {
    char *s = fuzz_cstr(p, n);
    mo_config c;
    FUZZ_CHECK(config_preset(&c, "tiny") == 0);
    size_t i = 0;
    while (i < n) {
        const char *name = s + i;
        i += strlen(name) + 1;
        const char *value = i < n ? s + i : "";
        i += strlen(value) + 1;
        if (config_set(&c, name, value)) {
            check_message();
            free(s);
            return;
        }
    }
    if (config_finalize(&c)) {
        check_message();
    } else {
        FUZZ_CHECK(config_validate(&c) == 0);
        mo_param_table pt;
        FUZZ_CHECK(params_table_build(&pt, &c) == 0);
        params_table_free(&pt);
    }
    free(s);
}

static void btx_mode(const uint8_t *p, size_t n) {
    const char *path = fuzz_write_file(p, n, ".ini");
    if (!path) return;
    static btx_config c;  // 1 MB: not on the stack
    if (btx_load(path, &c)) {
        check_message();
        return;
    }
    FUZZ_CHECK(c.n >= 0 && c.n <= BTX_MAX_ENTRIES);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    mo_config c;
    if (config_preset(&c, "tiny") || config_finalize(&c) || params_table_build(&table, &c)) {
        fprintf(stderr, "fuzz_options: %s\n", mo_error());
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    switch (data[0] % 6) {
    case 0: ini_mode(data + 1, size - 1); break;
    case 1: flags_mode(data + 1, size - 1); break;
    case 2: mask_mode(data + 1, size - 1); break;
    case 3: spec_mode(data + 1, size - 1); break;
    case 4: config_mode(data + 1, size - 1); break;
    default: btx_mode(data + 1, size - 1); break;
    }
    return 0;
}
