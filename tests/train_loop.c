// train_loop.c: the training loop on the tiny preset with synthetic token sets:
//   - resume is exact: 2N steps in one go, N steps stopped by the stop flag + --resume, and
//     a process killed after step N+2 (-9 style, no save) + --resume from ckpt-N all end
//     with bit-identical parameters and Adam state (same thread count);
//   - a frozen slice is bit-identical after training while the trainable ones moved, and
//     frozen Adam state stays zero;
//   - a bf16 fine-tune holding its frozen weights as bf16 only writes the checkpoints of
//     the one keeping their fp32 values, resumed too;
//   - the NaN/Inf guard stops with a loadable checkpoint of the last good state;
//   - bad options, missing or mismatched data and impossible sizes fail before any work
//     (no run folder contents written);
//   - loss goes down.
#include "data/tokenizer.h"
#include "data/tokens.h"
#include "engine/base/error.h"
#include "kernels/bf16.h"
#include "tests/testutil.h"
#include "train/freeze.h"
#include "train/rundir.h"
#include "train/state.h"
#include "train/trainer.h"

#include <setjmp.h>
#include <sys/stat.h>
#include <unistd.h>

static char tok_path[512], tok2_path[512], set_a[512], set_b[512], set_other[512], set_short[512];

static void path_in(char *buf, const char *name) { snprintf(buf, 512, "%s/%s", tu_scratch(), name); }

// A byte-level tokenizer: the 256 single bytes, in `order` (so two orders = two hashes).
static void write_tokenizer(const char *path, int reversed) {
    uint8_t bytes[256];
    const uint8_t *toks[256];
    size_t lens[256];
    for (int i = 0; i < 256; i++) {
        bytes[i] = (uint8_t)(reversed ? 255 - i : i);
        toks[i] = &bytes[i], lens[i] = 1;
    }
    if (tok_write_tiktoken(path, toks, lens, 256)) ck_abort_msg("%s", mo_error());
}

// A learnable synthetic domain: each token is a fixed function of the previous one most
// of the time, noise otherwise.
static void write_set(const char *path, const char *tok, const char *domain, int mult, int docs, int doc_len,
                      int val_len) {
    tokenizer *t = tok_load(tok);
    ck_assert_msg(t != NULL, "%s", mo_error());
    tokset_writer *w = tokset_create(path, domain, tok_hash(t), tok_vocab_size(t), tok_eot(t), "synthetic");
    ck_assert_msg(w != NULL, "%s", mo_error());
    mo_rng r;
    mo_rng_seed(&r, (uint64_t)mult);
    uint32_t *ids = malloc(sizeof(uint32_t) * (size_t)(doc_len > val_len ? doc_len : val_len));
    for (int d = 0; d <= docs; d++) {
        int split = d == docs ? TOKSET_VAL : TOKSET_TRAIN, n = d == docs ? val_len : doc_len;
        uint32_t x = (uint32_t)mo_rng_below(&r, 64);
        for (int i = 0; i < n; i++) {
            x = mo_rng_uniform(&r) < 0.8 ? (x * (uint32_t)mult + 3) % 64 : (uint32_t)mo_rng_below(&r, 64);
            ids[i] = 32 + x;
        }
        ck_assert_int_eq(tokset_begin_document(w, split), 0);
        ck_assert_int_eq(tokset_append(w, ids, (size_t)n), 0);
    }
    free(ids);
    ck_assert_msg(tokset_finish(w) == 0, "%s", mo_error());
    tok_free(t);
}

static void setup_fixtures(void) {
    path_in(tok_path, "bytes.tiktoken");
    path_in(tok2_path, "reversed.tiktoken");
    path_in(set_a, "a.h5");
    path_in(set_b, "b.h5");
    path_in(set_other, "other.h5");
    path_in(set_short, "short.h5");
    write_tokenizer(tok_path, 0);
    write_tokenizer(tok2_path, 1);
    write_set(set_a, tok_path, "alpha", 5, 20, 600, 400);
    write_set(set_b, tok_path, "beta", 7, 20, 600, 400);
    write_set(set_other, tok2_path, "alpha", 5, 5, 600, 400);
    write_set(set_short, tok_path, "short", 5, 5, 600, 10);  // val split shorter than a window
}

static train_opts base_opts(const char *out) {
    train_opts o;
    train_opts_defaults(&o);
    snprintf(o.preset, sizeof o.preset, "tiny");
    snprintf(o.tokenizer, sizeof o.tokenizer, "%s", tok_path);
    o.n_data = 2;
    snprintf(o.data[0].name, sizeof o.data[0].name, "alpha");
    snprintf(o.data[0].path, sizeof o.data[0].path, "%s", set_a);
    o.data[0].weight = 1;
    snprintf(o.data[1].name, sizeof o.data[1].name, "beta");
    snprintf(o.data[1].path, sizeof o.data[1].path, "%s", set_b);
    o.data[1].weight = 2;
    o.steps = 12, o.batch = 4, o.seq = 32, o.warmup = 3, o.lr = 3e-3;
    o.eval_every = 5, o.eval_batches = 2, o.save_every = 0, o.threads = 2, o.seed = 11;
    path_in(o.out, out);
    return o;
}

// Loads DIR/ckpt-<step>.h5.
static void load_step(const char *out, int64_t step, mo_checkpoint *ck, float **m, float **v, train_state *st) {
    char rd[512], p[600];
    path_in(rd, out);
    rundir_ckpt_path(rd, step, p, sizeof p);
    ck_assert_msg(train_state_load(p, ck, m, v, st) == 0, "%s", mo_error());
}

static volatile sig_atomic_t stop_flag;
static int64_t stop_at, die_at;
static jmp_buf crash;
static void stop_hook(void *ctx, const train_progress *p) {
    (void)ctx;
    if (p->step == stop_at) stop_flag = 1;
    if (p->step == die_at) longjmp(crash, 1);  // a crash: leave the loop with nothing saved
}

static int run(train_opts *o) {
    trainer *t = trainer_open(o);
    ck_assert_msg(t != NULL, "%s", mo_error());
    train_hooks h = {.on_step = stop_hook, .stop = &stop_flag};
    stop_flag = 0;
    int rc = trainer_run(t, &h);
    ck_assert_msg(rc >= 0, "%s", mo_error());
    trainer_close(t);
    return rc;
}

static int resume(const char *out) {
    train_opts o;
    train_opts_defaults(&o);
    path_in(o.resume, out);
    o.threads = 2;
    stop_at = die_at = -1;
    return run(&o);
}

static void assert_same_final(const char *a, const char *b, int64_t step) {
    mo_checkpoint ca, cb;
    float *ma, *va, *mb, *vb;
    train_state sa, sb;
    load_step(a, step, &ca, &ma, &va, &sa);
    load_step(b, step, &cb, &mb, &vb, &sb);
    size_t bytes = ca.table.numel * sizeof(float);
    ck_assert_msg(!memcmp(ca.params, cb.params, bytes), "%s and %s: parameters differ at step %lld", a, b,
                  (long long)step);
    ck_assert_msg(!memcmp(ma, mb, bytes) && !memcmp(va, vb, bytes), "%s and %s: Adam state differs", a, b);
    ck_assert_int_eq(sa.tokens_seen, sb.tokens_seen);
    ck_assert(!memcmp(sa.loader, sb.loader, sizeof sa.loader));
    ck_assert_msg(!memcmp(sa.rng, sb.rng, sizeof sa.rng), "%s and %s: the noise stream differs", a, b);
    free(ma), free(va), free(mb), free(vb);
    ckpt_free(&ca), ckpt_free(&cb);
}

START_TEST(test_resume_exact) {
    // A: 12 steps in one go.
    train_opts o = base_opts("A");
    stop_at = die_at = -1;
    ck_assert_int_eq(run(&o), 0);
    // B: stopped after step 6 (the SIGINT path: saves at the step boundary), then resumed.
    o = base_opts("B");
    stop_at = 6;
    ck_assert_int_eq(run(&o), 1);
    ck_assert_int_eq(resume("B"), 0);
    assert_same_final("A", "B", 12);
    // C: saves every 6 steps, crashes after step 8 without saving; resumed from 6. (Not a
    // fork + _exit: OpenMP's thread pool does not survive fork. tests/train_kill.sh kills
    // the real process with -9.)
    o = base_opts("C");
    o.save_every = 6;
    stop_at = -1, die_at = 8;
    trainer *volatile t = trainer_open(&o);
    ck_assert_msg(t != NULL, "%s", mo_error());
    if (!setjmp(crash)) {
        train_hooks h = {.on_step = stop_hook, .stop = &stop_flag};
        trainer_run(t, &h);
        ck_abort_msg("the crash at step 8 did not happen");
    }
    trainer_close(t);
    ck_assert_int_eq(resume("C"), 0);
    assert_same_final("A", "C", 12);
}
END_TEST

// Routing state resumes exactly too: router_bias (moved by bias balancing after every
// step, from every micro-batch's counts) and the router noise's stream, under capacity.
static train_opts routing_opts(const char *out) {
    train_opts o = base_opts(out);
    const char *kv[][2] = {{"router_score", "sigmoid"}, {"balance", "bias"}, {"bias_rate", "0.01"},
                           {"router_noise", "0.5"},     {"capacity_factor", "1.0"}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
        snprintf(o.overrides[o.n_overrides].name, sizeof o.overrides[0].name, "%s", kv[i][0]);
        snprintf(o.overrides[o.n_overrides].value, sizeof o.overrides[0].value, "%s", kv[i][1]);
        o.n_overrides++;
    }
    o.grad_accum = 2;
    return o;
}

START_TEST(test_resume_exact_routing) {
    train_opts o = routing_opts("RA");
    stop_at = die_at = -1;
    ck_assert_int_eq(run(&o), 0);
    o = routing_opts("RB");
    stop_at = 5;
    ck_assert_int_eq(run(&o), 1);
    ck_assert_int_eq(resume("RB"), 0);
    assert_same_final("RA", "RB", 12);
    // The bias moved (12 steps of +-0.01 per expert) and differs between experts.
    mo_checkpoint ck;
    float *m, *v;
    train_state st;
    load_step("RA", 12, &ck, &m, &v, &st);
    const float *b = ck.params + ck.table.t[ck.table.layer[0].router_bias].offset;
    ck_assert_msg(ck.table.cfg.balance == MO_BALANCE_BIAS && ck.table.cfg.router_noise == 0.5, "config not saved");
    int moved = 0;
    for (int e = 0; e < ck.table.cfg.n_experts; e++) moved += fabsf(b[e]) > 0.005f;
    ck_assert_int_gt(moved, 0);
    free(m), free(v);
    ckpt_free(&ck);
}
END_TEST

START_TEST(test_frozen_slice_unchanged) {
    // The starting point, as a checkpoint for --init.
    mo_config c;
    ck_assert_int_eq(config_preset(&c, "tiny"), 0);
    c.vocab_size = 257;
    ck_assert_int_eq(config_finalize(&c), 0);
    mo_checkpoint init;
    ck_assert_int_eq(ckpt_new(&init, &c, 3, NULL), 0);
    char init_path[512];
    path_in(init_path, "init.h5");
    ck_assert_int_eq(ckpt_save(init_path, &init), 0);

    train_opts o = base_opts("F");
    o.preset[0] = 0;
    snprintf(o.init, sizeof o.init, "%s", init_path);
    snprintf(o.train, sizeof o.train, "experts=1@layers=0,norms");
    o.steps = 6;
    stop_at = die_at = -1;
    ck_assert_int_eq(run(&o), 0);

    mo_checkpoint out;
    float *m, *v;
    train_state st;
    load_step("F", 6, &out, &m, &v, &st);
    train_mask mask;
    ck_assert_int_eq(freeze_parse(&out.table, o.train, &mask), 0);
    size_t moved = 0, frozen_changed = 0, frozen_state = 0;
    for (size_t i = 0; i < out.table.numel; i++) {
        int tr = train_mask_has(&mask, i);
        int same = !memcmp(&out.params[i], &init.params[i], sizeof(float));
        if (tr) moved += !same;
        else frozen_changed += !same, frozen_state += m[i] != 0 || v[i] != 0;
    }
    ck_assert_msg(frozen_changed == 0, "%zu frozen parameters changed", frozen_changed);
    ck_assert_msg(frozen_state == 0, "%zu frozen parameters have Adam state", frozen_state);
    ck_assert_msg(moved > mask.numel / 2, "only %zu of %zu trainable parameters moved", moved, mask.numel);
    train_mask_free(&mask);
    free(m), free(v);
    ckpt_free(&out), ckpt_free(&init);
}
END_TEST

static void copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    ck_assert(a && b);
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) ck_assert_uint_eq(fwrite(buf, 1, n, b), n);
    fclose(a), fclose(b);
}

// A bf16 fine-tune keeps its frozen GEMM weights as bf16 only (and, resumed, only the
// trained moments): its checkpoints are bit for bit those of --frozen-fp32, which keeps
// every fp32 weight (the frozen values copied from the file they were read from), stopped
// and resumed too, with --keep 1 pruning the file read at the resume; a source file
// replaced during the run is refused at the save, which writes nothing.
START_TEST(test_bf16_frozen_held) {
    if (!bf16_supported()) return;  // --precision bf16 refuses here
    train_opts o = base_opts("HS");  // the starting point: every tensor trained a little
    o.steps = 2, o.warmup = 1, o.save_every = 1, o.keep = 2;
    stop_at = die_at = -1;
    ck_assert_int_eq(run(&o), 0);
    char rd[512], seed[600], seed1[600], copy[512];
    path_in(rd, "HS");
    rundir_ckpt_path(rd, 2, seed, sizeof seed);
    rundir_ckpt_path(rd, 1, seed1, sizeof seed1);

    train_opts f = base_opts("HA");
    f.preset[0] = 0;
    snprintf(f.init, sizeof f.init, "%s", seed);
    snprintf(f.precision, sizeof f.precision, "bf16");
    snprintf(f.train, sizeof f.train, "experts=1,norms");
    f.steps = 8, f.frozen_fp32 = 1;
    ck_assert_int_eq(run(&f), 0);
    train_opts g = f;  // held
    path_in(g.out, "HB");
    g.frozen_fp32 = 0;
    ck_assert_int_eq(run(&g), 0);
    assert_same_final("HA", "HB", 8);
    path_in(g.out, "HC");  // stopped after step 4, resumed; saves every 2, keeps 1
    g.save_every = 2, g.keep = 1, stop_at = 4;
    ck_assert_int_eq(run(&g), 1);
    ck_assert_int_eq(resume("HC"), 0);
    assert_same_final("HA", "HC", 8);

    path_in(copy, "seed_copy.h5");
    copy_file(seed, copy);
    path_in(g.out, "HD");
    snprintf(g.init, sizeof g.init, "%s", copy);
    g.save_every = 0, stop_at = -1;
    trainer *t = trainer_open(&g);
    ck_assert_msg(t != NULL, "%s", mo_error());
    ck_assert_msg(strstr(trainer_summary(t), "bf16 only"), "%s", trainer_summary(t));
    copy_file(seed1, copy);  // other frozen values in the file the saves copy them from
    ck_assert_int_eq(trainer_run(t, NULL), -1);
    ck_assert_msg(strstr(mo_error(), "no longer holds") != NULL, "%s", mo_error());
    trainer_close(t);
    int64_t *steps;
    int n;
    path_in(rd, "HD");
    ck_assert_int_eq(rundir_steps(rd, &steps, &n), 0);
    ck_assert_int_eq(n, 0);
    free(steps);
}
END_TEST

START_TEST(test_nan_guard) {
    train_opts o = base_opts("N");
    setenv("MONOLITH_FAULT_NAN_STEP", "4", 1);
    trainer *t = trainer_open(&o);
    ck_assert_msg(t != NULL, "%s", mo_error());
    int rc = trainer_run(t, NULL);
    unsetenv("MONOLITH_FAULT_NAN_STEP");
    ck_assert_int_eq(rc, -1);
    const char *e = mo_error();
    ck_assert_msg(strstr(e, "step 4") && strstr(e, "NaN") && strstr(e, "last good state (step 3)"), "message: %s", e);
    trainer_close(t);
    mo_checkpoint ck;
    float *m, *v;
    train_state st;
    load_step("N", 3, &ck, &m, &v, &st);  // loads: every value finite
    ck_assert_int_eq(st.step, 3);
    free(m), free(v);
    ckpt_free(&ck);
}
END_TEST

static double seen_loss, seen_norm;
static void capture_hook(void *ctx, const train_progress *p) {
    (void)ctx;
    seen_loss = p->loss, seen_norm = p->grad_norm;
}

// One step of --grad-accum 2 --batch 2 sees the same 4 windows as --batch 4 (the loader
// draws rows in the same order): same loss, same gradient up to summation order.
START_TEST(test_grad_accum_matches_big_batch) {
    double loss[2], norm[2];
    for (int i = 0; i < 2; i++) {
        train_opts o = base_opts(i ? "G2" : "G1");
        o.steps = 1, o.warmup = 0, o.clip = 0;
        o.batch = i ? 2 : 4, o.grad_accum = i ? 2 : 1;
        trainer *t = trainer_open(&o);
        ck_assert_msg(t != NULL, "%s", mo_error());
        train_hooks h = {.on_step = capture_hook};
        ck_assert_int_eq(trainer_run(t, &h), 0);
        trainer_close(t);
        loss[i] = seen_loss, norm[i] = seen_norm;
    }
    ck_assert_msg(fabs(loss[0] - loss[1]) < 1e-5 * loss[0], "loss %.8f vs %.8f", loss[0], loss[1]);
    ck_assert_msg(fabs(norm[0] - norm[1]) < 1e-4 * norm[0], "grad norm %.8f vs %.8f", norm[0], norm[1]);
}
END_TEST

// --route-by-domain: every evaluated token of domain d goes to expert d alone, and the
// checkpoint names each expert's domain.
START_TEST(test_route_by_domain) {
    train_opts o = base_opts("R");
    o.steps = 2, o.warmup = 1, o.route_by_domain = 1;
    stop_at = die_at = -1;
    ck_assert_int_eq(run(&o), 0);
    char p[600];
    snprintf(p, sizeof p, "%s/R/metrics.jsonl", tu_scratch());
    FILE *f = fopen(p, "r");
    ck_assert_ptr_nonnull(f);
    char line[8192], last[8192] = "";
    long to_beta = 0;
    while (fgets(line, sizeof line, f)) {
        snprintf(last, sizeof last, "%s", line);
        const char *e = strstr(line, "\"expert_tokens\": {\"0\": [");
        if (!e) continue;
        // Training rows: one slot per token, to expert 0 (alpha) or 1 (beta), never 2 or 3.
        long c[4];
        ck_assert_int_eq(sscanf(e + strlen("\"expert_tokens\": {\"0\": ["), "%ld, %ld, %ld, %ld", &c[0], &c[1], &c[2],
                                &c[3]), 4);
        ck_assert_msg(c[2] == 0 && c[3] == 0 && c[0] + c[1] == 4 * 32, "%s", line);
        to_beta += c[1];
    }
    fclose(f);
    ck_assert_msg(to_beta > 0, "no training token of beta went to expert 1");
    // 2 eval batches of 4 rows x 32 tokens per domain, one slot each, both MoE layers.
    ck_assert_msg(strstr(last, "\"alpha\": {\"0\": [256, 0, 0, 0], \"1\": [256, 0, 0, 0]}"), "%s", last);
    ck_assert_msg(strstr(last, "\"beta\": {\"0\": [0, 256, 0, 0], \"1\": [0, 256, 0, 0]}"), "%s", last);
    mo_checkpoint ck;
    float *m, *v;
    train_state st;
    load_step("R", 2, &ck, &m, &v, &st);
    ck_assert_str_eq(ck.experts.domain[0], "alpha");
    ck_assert_str_eq(ck.experts.domain[1], "beta");
    free(m), free(v);
    ckpt_free(&ck);
}
END_TEST

START_TEST(test_loss_goes_down) {
    train_opts o = base_opts("L");
    o.steps = 60, o.eval_every = 0, o.lr = 1e-2;
    o.n_data = 1;
    stop_at = die_at = -1;
    ck_assert_int_eq(run(&o), 0);
    // The final evaluation is the last line of metrics.jsonl; the data's noise floor is far
    // below the uniform 64-way entropy log(64) = 4.16 that the model must first reach.
    char p[600];
    snprintf(p, sizeof p, "%s/L/metrics.jsonl", tu_scratch());
    FILE *f = fopen(p, "r");
    ck_assert_ptr_nonnull(f);
    char line[4096], last[4096] = "";
    double first_loss = -1;
    while (fgets(line, sizeof line, f)) {
        const char *s = strstr(line, "\"loss\": ");
        if (first_loss < 0 && s) first_loss = atof(s + 8);
        snprintf(last, sizeof last, "%s", line);
    }
    fclose(f);
    const char *s = strstr(last, "\"alpha\": {\"loss\": ");
    ck_assert_msg(s != NULL, "no eval line: %s", last);
    double val = atof(s + strlen("\"alpha\": {\"loss\": "));
    ck_assert_msg(first_loss > 5.0 && val < 3.5, "loss %.3f -> val %.3f", first_loss, val);
}
END_TEST

// Each bad setup fails in trainer_open with a message containing `needle`, and leaves no
// run in its --out folder.
static void expect_setup_error(train_opts *o, const char *needle) {
    trainer *t = trainer_open(o);
    ck_assert_msg(t == NULL, "expected failure: %s", needle);
    ck_assert_msg(strstr(mo_error(), needle), "message '%s' lacks '%s'", mo_error(), needle);
    ck_assert(!strchr(mo_error(), '\n'));
    char p[TRAIN_PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/run.ini", o->out);
    if (strcmp(needle, "already holds a run")) ck_assert_msg(access(p, F_OK) != 0, "%s written for a failed setup", p);
}

START_TEST(test_setup_errors) {
    train_opts o;
    o = base_opts("E"), snprintf(o.data[1].path, sizeof o.data[1].path, "%s/missing.h5", tu_scratch());
    expect_setup_error(&o, "missing.h5");
    o = base_opts("E"), snprintf(o.data[1].path, sizeof o.data[1].path, "%s", set_other);
    expect_setup_error(&o, "another tokenizer");
    o = base_opts("E"), snprintf(o.tokenizer, sizeof o.tokenizer, "%s", tok2_path);
    expect_setup_error(&o, "another tokenizer");
    o = base_opts("E"), snprintf(o.data[1].path, sizeof o.data[1].path, "%s", set_short);
    expect_setup_error(&o, "val split");
    o = base_opts("E"), o.seq = 1000;
    expect_setup_error(&o, "max_seq_len");
    o = base_opts("E"), o.batch = 0;
    expect_setup_error(&o, "--batch");
    o = base_opts("E"), o.batch = 1 << 20, o.seq = 256;
    expect_setup_error(&o, "--batch");
    o = base_opts("E"), o.warmup = 100;
    expect_setup_error(&o, "--warmup");
    o = base_opts("E"), snprintf(o.train, sizeof o.train, "experts=9");
    expect_setup_error(&o, "expert 9");
    o = base_opts("E"), snprintf(o.init, sizeof o.init, "x.h5");
    expect_setup_error(&o, "exactly one of --preset");
    o = base_opts("E"), o.tokenizer[0] = 0;
    expect_setup_error(&o, "--tokenizer");
    o = base_opts("E"), o.route_by_domain = 1, o.overrides[0] = (train_override){"n_experts", "1"}, o.n_overrides = 1;
    snprintf(o.overrides[1].name, 64, "top_k"), snprintf(o.overrides[1].value, 256, "1"), o.n_overrides = 2;
    expect_setup_error(&o, "--route-by-domain");
    o = base_opts("E"), o.n_overrides = 1, o.overrides[0] = (train_override){"n_heads", "3"};
    expect_setup_error(&o, "n_heads");
    o = base_opts("A");  // the resume test's folder holds a run
    expect_setup_error(&o, "already holds a run");
    train_opts_defaults(&o);
    path_in(o.resume, "nowhere");
    expect_setup_error(&o, "no run.ini");
}
END_TEST

int main(void) {
    if (!tu_scratch_make("loop")) return 1;
    Suite *s = suite_create("train_loop");
    TCase *tc = tcase_create("loop");
    tcase_set_timeout(tc, 600);
    tcase_add_unchecked_fixture(tc, setup_fixtures, NULL);
    tcase_add_test(tc, test_resume_exact);
    tcase_add_test(tc, test_resume_exact_routing);
    tcase_add_test(tc, test_frozen_slice_unchanged);
    tcase_add_test(tc, test_bf16_frozen_held);
    tcase_add_test(tc, test_nan_guard);
    tcase_add_test(tc, test_grad_accum_matches_big_batch);
    tcase_add_test(tc, test_route_by_domain);
    tcase_add_test(tc, test_loss_goes_down);
    tcase_add_test(tc, test_setup_errors);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_NOFORK);  // the tests share the fixtures; the resume test forks itself
}
