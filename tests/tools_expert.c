// tools_expert.c: experts as modules through the monolith binary, and the BTX pipeline:
//   - fine-tuning expert E (`monolith train --init MOE.h5 --train experts=E`) on a new
//     domain changes no other parameter by a single bit, and E's slices do move;
//   - `expert extract` then `expert insert` on a training checkpoint (with /optim and
//     /train) writes a file whose every dataset and attribute equals the original's;
//   - `expert add` then `expert remove` of the new expert gives back the same file;
//   - a shape-key mismatch is refused naming both files and the field;
//   - `pipeline btx` on tiny: end to end, then stopped in a branch and run again, ends
//     bit-identical to an uninterrupted run, and a finished pipeline skips every stage;
//   - `pipeline plug`: modules carry the seed's trunk hash, their data's hash and steps; the
//     plugged model keeps the seed's trunk bit for bit; a branch run alone from the seed
//     file makes the same module; compose refuses a module on another seed (seed_hash);
//   - `pipeline plug` from a MoE seed: each branch trains one chosen expert; the modules go
//     over those experts or beside the seed's, the rest bit for bit the seed's; [router]
//     steps = 0 leaves the router stage out, [all] then starts from plug.h5;
//   - each expert's steps survive add and remove; a random expert needs data for its row;
//   - train --moments-from continues another checkpoint's Adam moments and step count.
#include "data/tokenizer.h"
#include "data/tokens.h"
#include "engine/base/error.h"
#include "engine/checkpoint.h"
#include "engine/expert_file.h"
#include "engine/expert_module.h"
#include "tests/h5same.h"
#include "tests/testutil.h"
#include "train/pipeline_btx.h"
#include "train/state.h"

#include <cjson/cJSON.h>

#include <sys/wait.h>
#include <unistd.h>

static char tok_path[512], set_a[512], set_b[512], set_c[512];

static void path_in(char *buf, const char *name) { snprintf(buf, 512, "%s/%s", tu_scratch(), name); }

static void write_tokenizer(const char *path) {
    uint8_t bytes[256];
    const uint8_t *toks[256];
    size_t lens[256];
    for (int i = 0; i < 256; i++) bytes[i] = (uint8_t)i, toks[i] = &bytes[i], lens[i] = 1;
    ck_assert_msg(tok_write_tiktoken(path, toks, lens, 256) == 0, "%s", mo_error());
}

// A learnable synthetic domain of 64 token ids from `base`: the next token is
// base + (x * mult + 3) % 64 most of the time.
static void write_set(const char *path, const char *domain, int mult, uint32_t base) {
    tokenizer *t = tok_load(tok_path);
    ck_assert_msg(t != NULL, "%s", mo_error());
    tokset_writer *w = tokset_create(path, domain, tok_hash(t), tok_vocab_size(t), tok_eot(t), "synthetic");
    ck_assert_msg(w != NULL, "%s", mo_error());
    mo_rng r;
    mo_rng_seed(&r, (uint64_t)mult);
    uint32_t ids[400];
    for (int d = 0; d <= 10; d++) {
        int n = d == 10 ? 300 : 400;
        uint32_t x = (uint32_t)mo_rng_below(&r, 64);
        for (int i = 0; i < n; i++) {
            x = mo_rng_uniform(&r) < 0.8 ? (x * (uint32_t)mult + 3) % 64 : (uint32_t)mo_rng_below(&r, 64);
            ids[i] = base + x;
        }
        ck_assert_int_eq(tokset_begin_document(w, d == 10 ? TOKSET_VAL : TOKSET_TRAIN), 0);
        ck_assert_int_eq(tokset_append(w, ids, (size_t)n), 0);
    }
    ck_assert_msg(tokset_finish(w) == 0, "%s", mo_error());
    tok_free(t);
}

static void setup(void) {
    ck_assert_ptr_nonnull(tu_scratch_make("texpert"));
    path_in(tok_path, "bytes.tiktoken");
    path_in(set_a, "alpha.h5");
    path_in(set_b, "beta.h5");
    path_in(set_c, "gamma.h5");
    write_tokenizer(tok_path);
    write_set(set_a, "alpha", 5, 32);
    write_set(set_b, "beta", 7, 128);
    write_set(set_c, "gamma", 11, 192);
}

static void teardown(void) { tu_scratch_remove(); }

// 1 if arena element j of `pt` lies in expert e's slice of a MoE tensor or router row e.
static int in_expert(const mo_param_table *pt, size_t j, int e) {
    for (int i = 0; i < pt->n; i++) {
        const mo_tensor *t = &pt->t[i];
        if (j < t->offset || j >= t->offset + t->numel) continue;
        size_t n = t->kind == PK_ROUTER ? (size_t)t->shape[1] : t->expert_numel;
        if (!n || (t->kind != PK_ROUTER && !t->n_experts)) return 0;
        return (j - t->offset) / n == (size_t)e;
    }
    return 0;
}

START_TEST(fine_tune_one_expert_and_roundtrips) {
    char *err;
    ck_assert_int_eq(tu_monolith(NULL, NULL, "init --preset tiny --vocab-size 257 --seed 4 -o moe.h5"), 0);
    // Fine-tune expert 2 on a new domain.
    int rc = tu_monolith(NULL, &err, "train --init moe.h5 --tokenizer %s --data gamma=%s --train experts=2 --steps 4 --batch 2 --seq 32 "
                      "--warmup 1 --lr 1e-2 --eval-every 0 --eval-batches 1 --save-every 0 --threads 2 --out ft",
                tok_path, set_c);
    ck_assert_msg(rc == 0, "train failed: %s", err);
    free(err);
    mo_checkpoint before, after;
    char p[512];
    path_in(p, "moe.h5");
    ck_assert_int_eq(ckpt_load(p, &before), 0);
    path_in(p, "ft/ckpt-00000004.h5");
    ck_assert_msg(ckpt_load(p, &after) == 0, "%s", mo_error());
    size_t changed = 0, other_changed = 0;
    for (size_t j = 0; j < before.table.numel; j++) {
        int differs = memcmp(&before.params[j], &after.params[j], sizeof(float)) != 0;
        if (in_expert(&before.table, j, 2)) changed += differs;
        else other_changed += differs;
    }
    ck_assert_msg(other_changed == 0, "fine-tuning expert 2 changed %zu other parameters", other_changed);
    ck_assert_msg(changed > 1000, "expert 2 barely moved (%zu values)", changed);
    ckpt_free(&before), ckpt_free(&after);

    // extract + insert on the training checkpoint: the same file.
    ck_assert_int_eq(tu_monolith(NULL, &err, "expert extract ft/ckpt-00000004.h5 --expert 2 -o e2.h5"), 0);
    free(err);
    ck_assert_int_eq(tu_monolith(NULL, NULL, "expert extract ft/ckpt-00000004.h5 --expert 1 -o e1.h5"), 0);
    // Provenance the module carries: steps in the run that trained it (expert 2 was in the
    // --train mask, expert 1 was not), the data's hash, the parent's hash.
    mo_expert m1, m2;
    path_in(p, "e2.h5");
    ck_assert_msg(expert_load(p, &m2) == 0, "%s", mo_error());
    path_in(p, "e1.h5");
    ck_assert_msg(expert_load(p, &m1) == 0, "%s", mo_error());
    ck_assert_int_eq(m2.steps_trained, 4);
    ck_assert_int_eq(m1.steps_trained, 0);
    ck_assert_int_eq((int)strlen(m2.data_hash), 16);
    ck_assert_str_eq(m1.data_hash, m2.data_hash);
    ck_assert_str_eq(m1.parent_hash, m2.parent_hash);
    ck_assert_ptr_nonnull(m2.m);
    expert_free(&m1), expert_free(&m2);
    // expert list: the tokens each expert got in the run's last evaluation (all of gamma's
    // val slots, k = 2 per token, over the 4 experts).
    char *out;
    ck_assert_int_eq(tu_monolith(&out, NULL, "expert list ft/ckpt-00000004.h5"), 0);
    double routed = 0;
    int rows = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        int idx;
        char name[64], dom[64];
        long long steps;
        double r;
        if (sscanf(line, "%d %63s %63s %lld %lf", &idx, name, dom, &steps, &r) == 5) {
            routed += r, rows++;
            ck_assert_int_eq(steps, idx == 2 ? 4 : 0);
        }
    }
    free(out);
    ck_assert_int_eq(rows, 4);
    ck_assert_double_eq_tol(routed, 2 * 32 * 2, 1e-9);  // 1 eval batch of 2 x 32 tokens, top_k 2 slots, per layer
    rc = tu_monolith(NULL, &err, "expert insert ft/ckpt-00000004.h5 e2.h5 --slot 2 -o back.h5");
    ck_assert_msg(rc == 0, "%s", err);
    free(err);
    char a[512], b[512];
    path_in(a, "ft/ckpt-00000004.h5");
    path_in(b, "back.h5");
    const char *diff = h5same(a, b);
    ck_assert_msg(diff == NULL, "extract + insert changed the checkpoint: %s", diff);
    // ... and the comparison sees a different slot.
    ck_assert_int_eq(tu_monolith(NULL, NULL, "expert insert ft/ckpt-00000004.h5 e2.h5 --slot 1 -o other.h5"), 0);
    path_in(b, "other.h5");
    ck_assert_ptr_nonnull(h5same(a, b));

    // add + remove: the same file.
    ck_assert_int_eq(tu_monolith(NULL, NULL, "expert add moe.h5 --init random --router-init random --seed 3 -o grown.h5"), 0);
    ck_assert_int_eq(tu_monolith(NULL, NULL, "expert remove grown.h5 --expert 4 -o shrunk.h5"), 0);
    path_in(a, "moe.h5");
    path_in(b, "shrunk.h5");
    diff = h5same(a, b);
    ck_assert_msg(diff == NULL, "add + remove changed the checkpoint: %s", diff);
    // A random expert's router row needs data to start below the trained rows.
    rc = tu_monolith(NULL, &err, "expert add moe.h5 --init random -o nodata.h5");
    ck_assert_msg(rc == 1 && strstr(err, "--data") && strstr(err, "--router-init random"), "%s", err);
    free(err);
    // Each expert's steps travel with it: expert 2 of the fine-tune keeps its 4 steps after
    // add (the output has no /train), and after a remove that shifts it to index 1.
    ck_assert_int_eq(tu_monolith(NULL, NULL, "expert add ft/ckpt-00000004.h5 --init random --router-init random -o carried.h5"), 0);
    ck_assert_int_eq(tu_monolith(NULL, NULL, "expert remove carried.h5 --expert 0 -o carried2.h5"), 0);
    const char *carried[2] = {"carried.h5", "carried2.h5"};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(tu_monolith(&out, NULL, "expert list %s", carried[i]), 0);
        rows = 0;
        for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
            int idx;
            char name[64], dom[64];
            long long steps;
            if (sscanf(line, "%d %63s %63s %lld", &idx, name, dom, &steps) == 4) {
                ck_assert_msg(steps == (idx == 2 - i ? 4 : 0), "%s: expert %d has %lld steps", carried[i], idx, steps);
                rows++;
            }
        }
        free(out);
        ck_assert_int_eq(rows, 5 - i);
    }
    // A module goes into a grown model as its new expert.
    ck_assert_int_eq(tu_monolith(NULL, &err, "expert add moe.h5 e2.h5 --name gamma -o with_gamma.h5"), 0);
    free(err);
    path_in(p, "with_gamma.h5");
    ck_assert_int_eq(ckpt_load(p, &after), 0);
    ck_assert_int_eq(after.table.cfg.n_experts, 5);
    ck_assert_str_eq(after.experts.name[4], "gamma");
    // A new domain trained into its new expert alone: --route-by-domain finds the expert
    // by name (gamma is expert 4, not the position of the only --data), nothing else moves.
    rc = tu_monolith(NULL, &err, "train --init with_gamma.h5 --tokenizer %s --data gamma=%s --route-by-domain --train experts=4 "
                  "--steps 3 --batch 2 --seq 32 --warmup 1 --lr 1e-2 --eval-every 0 --eval-batches 1 --threads 2 "
                  "--out ft_gamma",
            tok_path, set_c);
    ck_assert_msg(rc == 0, "%s", err);
    free(err);
    path_in(p, "ft_gamma/ckpt-00000003.h5");
    ck_assert_int_eq(ckpt_load(p, &before), 0);
    changed = other_changed = 0;
    for (size_t j = 0; j < before.table.numel; j++) {
        int differs = memcmp(&before.params[j], &after.params[j], sizeof(float)) != 0;
        if (in_expert(&before.table, j, 4)) changed += differs;
        else other_changed += differs;
    }
    ck_assert_msg(other_changed == 0 && changed > 1000, "route-by-domain fine-tune: %zu other values changed, %zu of "
                  "expert 4", other_changed, changed);
    ck_assert_str_eq(before.experts.domain[4], "gamma");
    ckpt_free(&before);
    ckpt_free(&after);

    // Shape keys: refused naming both files and the field.
    ck_assert_int_eq(tu_monolith(NULL, NULL, "init --preset tiny --vocab-size 257 --d-ff 64 -o narrow.h5"), 0);
    rc = tu_monolith(NULL, &err, "expert insert narrow.h5 e2.h5 --slot 0 -o x.h5");
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "narrow.h5") && strstr(err, "e2.h5") && strstr(err, "d_ff"), "%s", err);
    free(err);
    ck_assert_int_eq(tu_monolith(NULL, NULL, "expert extract narrow.h5 --expert 0 -o narrow_e0.h5"), 0);
    rc = tu_monolith(NULL, &err, "compose --base moe.h5 --expert e2.h5 --expert narrow_e0.h5 -o x.h5");
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "narrow_e0.h5") && strstr(err, "e2.h5") && strstr(err, "d_ff"), "%s", err);
    free(err);
    path_in(p, "x.h5");
    ck_assert_int_ne(access(p, F_OK), 0);
}
END_TEST

// ---------------------------------------------------------------------------- BTX

static volatile sig_atomic_t stop_flag;
static char stop_stage[64];
static int64_t stop_step;
typedef struct {
    char stage[160];
} btx_ui;
static void on_stage(void *ctx, int i, int n, const char *name, const char *what) {
    (void)i, (void)n, (void)what;
    snprintf(((btx_ui *)ctx)->stage, 160, "%s", name);
}
static void on_step(void *ctx, const train_progress *p) {
    if (!strcmp(((btx_ui *)ctx)->stage, stop_stage) && p->step == stop_step) stop_flag = 1;
}

static void write_ini(const char *path, const char *out) {
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "[pipeline]\nout = %s\n\n[train]\ntokenizer = %s\ndata = alpha=%s\ndata = beta=%s\nbatch = 2\nseq = 32\n"
            "lr = 1e-2\nwarmup = 1\neval-every = 0\neval-batches = 1\nsave-every = 0\nthreads = 2\n\n"
            "[seed]\npreset = tiny\nvocab_size = 257\nmoe_layers = 0,0\nsteps = 4\n\n[branch]\nsteps = 8\n\n"
            "[mix]\ntop_k = 2\n\n[router]\nsteps = 3\n\n[all]\nsteps = 2\n",
            out, tok_path, set_a, set_b);
    fclose(f);
}

static int run_btx(const char *ini, btx_summary *s) {
    btx_config *c = malloc(sizeof *c);
    ck_assert_msg(btx_load(ini, c) == 0, "%s", mo_error());
    btx_ui ui = {{0}};
    btx_hooks h = {.on_stage = on_stage, .ctx = &ui, .train = {.on_step = on_step, .ctx = &ui, .stop = &stop_flag}};
    stop_flag = 0;
    int rc = btx_run(c, &h, s);
    ck_assert_msg(rc >= 0, "%s", mo_error());
    free(c);
    return rc;
}

START_TEST(btx_end_to_end_and_resumed) {
    btx_summary *s = malloc(sizeof *s);
    char ini_a[512], ini_b[512], out_a[512], out_b[512];
    path_in(ini_a, "a.ini"), path_in(ini_b, "b.ini"), path_in(out_a, "btxA"), path_in(out_b, "btxB");
    write_ini(ini_a, out_a);
    write_ini(ini_b, out_b);
    stop_stage[0] = 0;
    ck_assert_int_eq(run_btx(ini_a, s), 0);
    ck_assert_int_eq(s->n, 6);  // seed, 2 branches, mix, router, all
    ck_assert_str_eq(s->s[1].name, "branch-alpha");
    ck_assert_str_eq(s->s[3].name, "mix");
    for (int i = 0; i < s->n; i++) {
        ck_assert_int_eq(s->s[i].n_domains, 2);
        ck_assert_msg(isfinite(s->s[i].val_loss[0]) && isfinite(s->s[i].val_loss[1]), "stage %s", s->s[i].name);
    }
    // Each branch is better on its own domain than the other branch.
    ck_assert_msg(s->s[1].val_loss[0] < s->s[2].val_loss[0] && s->s[2].val_loss[1] < s->s[1].val_loss[1],
                  "branch losses (alpha, beta): alpha branch %.4f %.4f, beta branch %.4f %.4f", s->s[1].val_loss[0],
                  s->s[1].val_loss[1], s->s[2].val_loss[0], s->s[2].val_loss[1]);
    // The mix holds each branch's FFN as an expert named after its domain.
    mo_checkpoint mix;
    ck_assert_int_eq(ckpt_load(s->s[3].ckpt, &mix), 0);
    ck_assert_int_eq(mix.table.cfg.n_experts, 2);
    ck_assert_str_eq(mix.experts.name[1], "beta");
    ckpt_free(&mix);
    char final_a[sizeof s->s[0].ckpt];
    snprintf(final_a, sizeof final_a, "%s", s->s[s->n - 1].ckpt);

    // Stopped in the middle of branch-beta, then run again: the same final model.
    snprintf(stop_stage, sizeof stop_stage, "branch-beta");
    stop_step = 2;
    ck_assert_int_eq(run_btx(ini_b, s), 1);
    stop_stage[0] = 0;
    ck_assert_int_eq(run_btx(ini_b, s), 0);
    ck_assert_str_eq(s->s[1].status, "skipped (output exists)");
    ck_assert_str_eq(s->s[2].status, "resumed");
    ck_assert_str_eq(s->s[5].status, "trained");
    const char *diff = h5same(final_a, s->s[s->n - 1].ckpt);
    // The files differ in /train options (paths), so compare the models.
    mo_checkpoint ca, cb;
    ck_assert_int_eq(ckpt_load(final_a, &ca), 0);
    ck_assert_int_eq(ckpt_load(s->s[s->n - 1].ckpt, &cb), 0);
    ck_assert_msg(!memcmp(ca.params, cb.params, ca.table.numel * sizeof(float)),
                  "the resumed pipeline ended with other parameters (%s)", diff ? diff : "");
    ckpt_free(&ca), ckpt_free(&cb);
    // A finished pipeline skips everything.
    ck_assert_int_eq(run_btx(ini_b, s), 0);
    for (int i = 0; i < s->n; i++) ck_assert_str_eq(s->s[i].status, "skipped (output exists)");

    // [seed] init = a dense checkpoint is taken as it is; no [all] stage.
    char ini_c[512], out_c[512];
    path_in(ini_c, "c.ini"), path_in(out_c, "btxC");
    FILE *f = fopen(ini_c, "w");
    fprintf(f,
            "[pipeline]\nout = %s\n[train]\ntokenizer = %s\ndata = alpha=%s\ndata = beta=%s\nbatch = 2\nseq = 32\n"
            "warmup = 1\neval-every = 0\neval-batches = 1\nsave-every = 0\nthreads = 2\n[seed]\ninit = %s/seed/ckpt-00000004.h5\n"
            "[branch]\nsteps = 2\n[mix]\ntop_k = 1\n[router]\nsteps = 2\n",
            out_c, tok_path, set_a, set_b, out_a);
    fclose(f);
    ck_assert_int_eq(run_btx(ini_c, s), 0);
    ck_assert_int_eq(s->n, 5);
    ck_assert_str_eq(s->s[0].status, "taken");
    ck_assert_str_eq(s->s[4].name, "router");
    ck_assert_int_eq(ckpt_load(s->s[3].ckpt, &mix), 0);
    ck_assert_int_eq(mix.table.cfg.top_k, 1);
    ckpt_free(&mix);

    // Mistakes in the file are reported with file:line before any work.
    const char *bad[4][2] = {{"[train]\nstpes = 3\n", "bad.ini:2"},
                             {"[pipeline]\nout = x\n[brnach]\nsteps = 1\n", "[brnach]"},
                             {"[train]\ndata = a=x.h5\ndata = b=y.h5\n[router]\nout = z\n", "[pipeline] out"},
                             {"[train]\ndata = a=x.h5\n", "at least two data"}};
    btx_config *cfg = malloc(sizeof *cfg);
    char ini_bad[512];
    path_in(ini_bad, "bad.ini");
    for (int i = 0; i < 4; i++) {
        f = fopen(ini_bad, "w");
        fputs(bad[i][0], f);
        fclose(f);
        ck_assert_int_eq(btx_load(ini_bad, cfg), -1);
        ck_assert_msg(strstr(mo_error(), bad[i][1]) != NULL, "case %d: %s", i, mo_error());
    }
    free(cfg);
    free(s);
}
END_TEST

// ---------------------------------------------------------------------------- plug

static void write_plug_ini(const char *path, const char *out, const char *seed_init, const char *alpha) {
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "[pipeline]\nout = %s\n\n[train]\ntokenizer = %s\ndata = alpha=%s\ndata = beta=%s\nbatch = 2\nseq = 32\n"
            "lr = 1e-2\nwarmup = 1\neval-every = 0\neval-batches = 1\nsave-every = 0\nthreads = 2\n\n",
            out, tok_path, alpha, set_b);
    if (seed_init) fprintf(f, "[seed]\ninit = %s\n\n", seed_init);
    else fprintf(f, "[seed]\npreset = tiny\nvocab_size = 257\nmoe_layers = 0,0\nsteps = 4\n\n");
    fprintf(f, "[branch]\nsteps = 3\n\n[plug]\ntop_k = 1\n\n[router]\nsteps = 2\n");
    fclose(f);
}

static int run_plug(const char *ini, const char *branch_only, btx_summary *s) {
    btx_config *c = malloc(sizeof *c);
    ck_assert_msg(plug_load(ini, c) == 0, "%s", mo_error());
    if (branch_only) snprintf(c->branch_only, sizeof c->branch_only, "%s", branch_only);
    btx_ui ui = {{0}};
    btx_hooks h = {.on_stage = on_stage, .ctx = &ui, .train = {.on_step = on_step, .ctx = &ui, .stop = &stop_flag}};
    stop_flag = 0;
    stop_stage[0] = 0;
    int rc = btx_run(c, &h, s);
    ck_assert_msg(rc >= 0, "%s", mo_error());
    free(c);
    return rc;
}

START_TEST(plug_pipeline_and_provenance) {
    btx_summary *s = malloc(sizeof *s);
    char ini[512], out[512], p[600];
    path_in(ini, "plug.ini"), path_in(out, "plugA");
    write_plug_ini(ini, out, NULL, set_a);
    ck_assert_int_eq(run_plug(ini, NULL, s), 0);
    ck_assert_int_eq(s->n, 5);  // seed, 2 branches, plug, router
    ck_assert_str_eq(s->s[3].name, "plug");
    ck_assert_str_eq(s->s[3].status, "plugged");
    for (int i = 0; i < s->n; i++)
        ck_assert_msg(isfinite(s->s[i].val_loss[0]) && isfinite(s->s[i].val_loss[1]), "stage %s", s->s[i].name);
    // The modules carry the seed's trunk hash, their own data's hash and their steps.
    mo_checkpoint seed, plugged;
    char seed_path[sizeof s->s[0].ckpt], trunk[MO_HASH_HEX], h[MO_HASH_HEX];
    snprintf(seed_path, sizeof seed_path, "%s", s->s[0].ckpt);
    ck_assert_int_eq(ckpt_load(seed_path, &seed), 0);
    expert_trunk_hash(&seed, trunk);
    mo_expert alpha, beta_a, beta_b;
    snprintf(p, sizeof p, "%s/modules/alpha.h5", out);
    ck_assert_msg(expert_load(p, &alpha) == 0, "%s", mo_error());
    ck_assert_str_eq(alpha.seed_hash, trunk);
    ck_assert_int_eq(alpha.steps_trained, 3);
    ck_assert_str_eq(alpha.domain, "alpha");
    const char *files[1] = {set_a};
    expert_files_hash(files, 1, h);
    ck_assert_str_eq(alpha.data_hash, h);
    // The plugged model is the seed's trunk, bit for bit, with module 0 as expert 0.
    ck_assert_int_eq(ckpt_load(s->s[3].ckpt, &plugged), 0);
    expert_trunk_hash(&plugged, h);
    ck_assert_str_eq(h, trunk);
    const mo_param_table *pt = &plugged.table;
    ck_assert_int_eq(pt->cfg.n_experts, 2);
    ck_assert_int_eq(pt->cfg.top_k, 1);
    ck_assert(!memcmp(params_at(pt, plugged.params, pt->layer[1].w1), expert_w1(&alpha, alpha.w, 1),
                      (size_t)pt->cfg.d_ff * pt->cfg.d_model * sizeof(float)));
    ckpt_free(&plugged);
    snprintf(p, sizeof p, "%s/modules/beta.h5", out);
    ck_assert_int_eq(expert_load(p, &beta_a), 0);

    // One branch alone, as on another machine: the seed file and its own data only (the
    // other domain's file does not exist there). The module is the same as the whole
    // pipeline's, and nothing else is made.
    char ini_b[512], out_b[512];
    path_in(ini_b, "plugB.ini"), path_in(out_b, "plugB");
    write_plug_ini(ini_b, out_b, seed_path, "/nonexistent/alpha.h5");
    ck_assert_int_eq(run_plug(ini_b, "beta", s), 0);
    ck_assert_int_eq(s->n, 2);
    snprintf(p, sizeof p, "%s/modules/beta.h5", out_b);
    ck_assert_int_eq(expert_load(p, &beta_b), 0);
    ck_assert(!memcmp(beta_a.w, beta_b.w, (size_t)beta_a.n_moe * beta_a.layer_numel * sizeof(float)));
    ck_assert_str_eq(beta_a.seed_hash, beta_b.seed_hash);
    snprintf(p, sizeof p, "%s/modules/alpha.h5", out_b);
    ck_assert_int_ne(access(p, F_OK), 0);
    snprintf(p, sizeof p, "%s/plug.h5", out_b);
    ck_assert_int_ne(access(p, F_OK), 0);
    expert_free(&alpha), expert_free(&beta_a), expert_free(&beta_b);
    ckpt_free(&seed);

    // compose takes the modules on their seed, refuses them on another one naming seed_hash.
    char *err;
    int rc = tu_monolith(NULL, &err, "compose --base %s --expert plugA/modules/alpha.h5 --expert plugB/modules/beta.h5 -o ok.h5",
                seed_path);
    ck_assert_msg(rc == 0, "%s", err);
    free(err);
    ck_assert_int_eq(tu_monolith(NULL, NULL, "init --preset tiny --vocab-size 257 --moe-layers 0,0 --seed 9 -o other_seed.h5"), 0);
    rc = tu_monolith(NULL, &err, "compose --base other_seed.h5 --expert plugA/modules/alpha.h5 -o bad.h5");
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(err, "seed_hash") && strstr(err, "other_seed.h5") && strstr(err, "alpha.h5"), "%s", err);
    free(err);
    ck_assert_int_eq(tu_monolith(NULL, NULL, "compose --base other_seed.h5 --expert plugA/modules/alpha.h5 --any-seed -o any.h5"), 0);

    // expert list shows a module's provenance.
    char *listed, line[512];
    ck_assert_int_eq(tu_monolith(&listed, NULL, "expert list plugA/modules/alpha.h5"), 0);
    int seen = 0;
    for (char *l = strtok(listed, "\n"); l; l = strtok(NULL, "\n")) {
        seen += !strncmp(l, "seed_hash", 9) && strstr(l, trunk);
        seen += !strncmp(l, "steps_trained 3", 15);
    }
    free(listed);
    ck_assert_int_eq(seen, 2);

    // A new expert's router row placed below the trained rows takes no sampled token of the
    // old domains: gamma added to the plugged-and-routed model.
    ck_assert_int_eq(tu_monolith(&listed, NULL,
                                 "expert add plugA/router/ckpt-00000002.h5 --init random --name gamma --domain gamma "
                                 "--data alpha=%s --data beta=%s --data gamma=%s --seq 32 -o with_gamma_below.h5",
                                 set_a, set_b, set_c),
                     0);
    double share[3] = {-1, -1, -1};
    for (char *l = strtok(listed, "\n"); l; l = strtok(NULL, "\n")) {
        const char *at = strstr(l, "holds expert 2:");
        if (at) ck_assert_int_eq(sscanf(at, "holds expert 2: alpha %lf beta %lf gamma %lf", &share[0], &share[1],
                                        &share[2]), 3);
    }
    free(listed);
    ck_assert_msg(share[0] == 0 && share[1] == 0, "the new expert takes old tokens: alpha %.3f beta %.3f", share[0],
                  share[1]);

    // An [all] stage added to the finished pipeline runs alone (the rest is skipped) and,
    // with no lr/schedule/warmup of its own, continues at [train]'s lr * lr-floor, constant.
    FILE *f = fopen(ini, "a");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "\n[all]\nsteps = 1\n");
    fclose(f);
    ck_assert_int_eq(run_plug(ini, NULL, s), 0);
    ck_assert_int_eq(s->n, 6);
    ck_assert_str_eq(s->s[4].status, "skipped (output exists)");
    snprintf(p, sizeof p, "%s/all/run.ini", out);
    f = fopen(p, "r");
    ck_assert_ptr_nonnull(f);
    double lr = -1;
    int constant = 0, warm0 = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "lr = ", 5)) lr = strtod(line + 5, NULL);
        constant += !strcmp(line, "schedule = constant\n");
        warm0 += !strcmp(line, "warmup = 0\n");
    }
    fclose(f);
    ck_assert_msg(fabs(lr - 1e-3) < 1e-12 && constant == 1 && warm0 == 1, "[all]: lr %g schedule constant %d warmup 0 %d",
                  lr, constant, warm0);
    free(s);
}
END_TEST

// Reads `key = number` from a run folder's run.ini (-1 when absent).
static double run_ini_number(const char *run, const char *key) {
    char p[700], line[512];
    snprintf(p, sizeof p, "%s/%s/run.ini", tu_scratch(), run);
    FILE *f = fopen(p, "r");
    ck_assert_msg(f != NULL, "%s", p);
    double v = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && !strncmp(line + n, " = ", 3)) v = strtod(line + n + 3, NULL);
    fclose(f);
    return v;
}

// [seed] continue = true: a seed taken at step 3 of a 6-step run (lr 1e-2, warmup 1,
// cosine to 0.1 x 1e-2); its branches and router start at that run's rate at step 3 and
// decay to its floor with no warmup, [all] runs at the floor.
START_TEST(plug_continues_the_seeds_schedule) {
    char *err;
    int rc = tu_monolith(NULL, &err, "train --preset tiny --vocab-size 257 --moe-layers 0,0 --tokenizer %s --data alpha=%s "
                      "--data beta=%s --batch 2 --seq 32 --lr 1e-2 --warmup 1 --steps 6 --save-every 3 --keep 5 "
                      "--eval-every 0 --threads 2 --out cont_seed",
                tok_path, set_a, set_b);
    ck_assert_msg(rc == 0, "%s", err);
    free(err);
    char ini[512], out[512], seed[600];
    path_in(ini, "cont.ini"), path_in(out, "cont");
    snprintf(seed, sizeof seed, "%s/cont_seed/ckpt-00000003.h5", tu_scratch());
    write_plug_ini(ini, out, seed, set_a);
    FILE *f = fopen(ini, "a");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "\n[all]\nsteps = 1\n");
    fclose(f);
    // [seed] continue goes into the [seed] section the writer made.
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "sed -i 's/^\\[seed\\]$/[seed]\\ncontinue = true/' %s", ini);
    ck_assert_int_eq(system(cmd), 0);
    btx_summary *s = malloc(sizeof *s);
    ck_assert_int_eq(run_plug(ini, NULL, s), 0);
    ck_assert_int_eq(s->n, 6);
    // The rate of step 3 (0-based) of the seed run, by the formula of lr_schedule.h.
    const double pi = 3.14159265358979323846, floor = 1e-3;
    const double rate = floor + (1e-2 - floor) * 0.5 * (1 + cos(pi * (3 - 1) / (6 - 1)));
    const char *stages[3] = {"cont/branch-alpha", "cont/branch-beta", "cont/router"};
    for (int i = 0; i < 3; i++) {
        ck_assert_msg(fabs(run_ini_number(stages[i], "lr") - rate) < 1e-12, "%s: lr %.9g, want %.9g", stages[i],
                      run_ini_number(stages[i], "lr"), rate);
        ck_assert_msg(fabs(run_ini_number(stages[i], "lr-floor") - floor / rate) < 1e-12, "%s", stages[i]);
        ck_assert_int_eq((int)run_ini_number(stages[i], "warmup"), 0);
    }
    ck_assert_msg(fabs(run_ini_number("cont/all", "lr") - floor) < 1e-12, "[all] lr %g", run_ini_number("cont/all", "lr"));
    ck_assert_int_eq((int)run_ini_number("cont/all", "warmup"), 0);

    // A seed with no training state (monolith init) is refused, naming the file and the key.
    ck_assert_int_eq(tu_monolith(NULL, NULL, "init --preset tiny --vocab-size 257 --moe-layers 0,0 -o cont_bare.h5"), 0);
    char bare[600];
    snprintf(bare, sizeof bare, "%s/cont_bare.h5", tu_scratch());
    path_in(out, "cont_bare");
    write_plug_ini(ini, out, bare, set_a);
    snprintf(cmd, sizeof cmd, "sed -i 's/^\\[seed\\]$/[seed]\\ncontinue = true/' %s", ini);
    ck_assert_int_eq(system(cmd), 0);
    btx_config *c = malloc(sizeof *c);
    ck_assert_int_eq(plug_load(ini, c), 0);
    ck_assert_int_eq(c->continue_seed, 1);
    ck_assert_int_eq(btx_run(c, NULL, s), -1);
    ck_assert_msg(strstr(mo_error(), "[seed] continue") && strstr(mo_error(), "cont_bare.h5"), "%s", mo_error());
    free(c);
    free(s);
}
END_TEST

// 1 if expert e of MoE layer l (its w1, w3, w2 slices and router row) is the same, bit for
// bit, in checkpoints a (expert ea) and b (expert eb).
static int same_expert(const mo_checkpoint *a, int ea, const mo_checkpoint *b, int eb, int l) {
    const mo_param_table *pa = &a->table, *pb = &b->table;
    const size_t fn = (size_t)pa->cfg.d_ff * pa->cfg.d_model, d = (size_t)pa->cfg.d_model;
    const size_t w[3][2] = {{pa->layer[l].w1, pb->layer[l].w1}, {pa->layer[l].w3, pb->layer[l].w3},
                            {pa->layer[l].w2, pb->layer[l].w2}};
    for (int i = 0; i < 3; i++)
        if (memcmp(params_at(pa, a->params, w[i][0]) + ea * fn, params_at(pb, b->params, w[i][1]) + eb * fn,
                   fn * sizeof(float)))
            return 0;
    return !memcmp(params_at(pa, a->params, pa->layer[l].router) + ea * d,
                   params_at(pb, b->params, pb->layer[l].router) + eb * d, d * sizeof(float));
}

// Writes a plug INI over a MoE seed: [plug] lines `plug_lines`, 3-step branches, 2-step router.
static void write_moe_plug_ini(const char *path, const char *out, const char *seed, const char *plug_lines) {
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "[pipeline]\nout = %s\n\n[train]\ntokenizer = %s\ndata = alpha=%s\ndata = beta=%s\nbatch = 2\nseq = 32\n"
            "lr = 1e-2\nwarmup = 1\neval-every = 0\neval-batches = 1\nsave-every = 0\nthreads = 2\n\n"
            "[seed]\ninit = %s\n\n[branch]\nsteps = 3\n\n[plug]\n%s\n\n[router]\nsteps = 2\n",
            out, tok_path, set_a, set_b, seed, plug_lines);
    fclose(f);
}

// A MoE seed (tiny: 4 experts, top-2): each branch trains one chosen expert of the seed; the
// plug stage puts module d over that expert (into = replace: every other expert and router
// row the seed's, bit for bit) or beside the seed's experts (into = add: 6 experts, top-2,
// the old four untouched, the new rows below them so the plugged model's losses are the
// seed's); a lone branch makes the same module; bad expert_of / into / top_k are refused
// naming the field.
START_TEST(plug_from_a_moe_seed) {
    char *err;
    int rc = tu_monolith(NULL, &err, "train --preset tiny --vocab-size 257 --tokenizer %s --data alpha=%s --data beta=%s "
                         "--batch 2 --seq 32 --lr 1e-2 --warmup 1 --steps 4 --save-every 0 --eval-every 0 --threads 2 "
                         "--out moe_seed",
                         tok_path, set_a, set_b);
    ck_assert_msg(rc == 0, "%s", err);
    free(err);
    char seed_path[600], ini[512], out[512], p[1800];
    snprintf(seed_path, sizeof seed_path, "%s/moe_seed/ckpt-00000004.h5", tu_scratch());
    btx_summary *s = malloc(sizeof *s);
    path_in(ini, "moe_rep.ini"), path_in(out, "moe_rep");
    write_moe_plug_ini(ini, out, seed_path, "expert_of = alpha=2, beta=0");
    ck_assert_int_eq(run_plug(ini, NULL, s), 0);
    ck_assert_int_eq(s->n, 5);  // seed, 2 branches, plug, router
    mo_checkpoint seed, plugged;
    ck_assert_int_eq(ckpt_load(seed_path, &seed), 0);
    mo_expert alpha, beta;
    snprintf(p, sizeof p, "%s/modules/alpha.h5", out);
    ck_assert_msg(expert_load(p, &alpha) == 0, "%s", mo_error());
    ck_assert_msg(strstr(alpha.provenance, "\"seed_expert\":2"), "%s", alpha.provenance);
    snprintf(p, sizeof p, "%s/modules/beta.h5", out);
    ck_assert_int_eq(expert_load(p, &beta), 0);
    // replace: experts 2 and 0 are the modules (w1 of layer 1 compared), 1 and 3 the seed's.
    ck_assert_int_eq(ckpt_load(s->s[3].ckpt, &plugged), 0);
    const mo_param_table *pt = &plugged.table;
    const size_t fn = (size_t)pt->cfg.d_ff * pt->cfg.d_model;
    ck_assert_int_eq(pt->cfg.n_experts, 4);
    ck_assert_int_eq(pt->cfg.top_k, 2);
    ck_assert(!memcmp(params_at(pt, plugged.params, pt->layer[1].w1) + 2 * fn, expert_w1(&alpha, alpha.w, 1),
                      fn * sizeof(float)));
    ck_assert(!memcmp(params_at(pt, plugged.params, pt->layer[1].w1), expert_w1(&beta, beta.w, 1), fn * sizeof(float)));
    ck_assert(memcmp(params_at(pt, plugged.params, pt->layer[1].w1), params_at(&seed.table, seed.params, pt->layer[1].w1),
                     fn * sizeof(float)));  // the branch moved it
    char h[MO_HASH_HEX], trunk[MO_HASH_HEX];
    expert_trunk_hash(&seed, trunk), expert_trunk_hash(&plugged, h);
    ck_assert_str_eq(h, trunk);
    for (int l = 0; l < 2; l++) ck_assert(same_expert(&seed, 1, &plugged, 1, l) && same_expert(&seed, 3, &plugged, 3, l));
    ckpt_free(&plugged);

    // A third domain added with --router-init fit: its row takes gamma's sampled tokens and
    // stays off alpha's and beta's (at most 5% per layer, else the layer leaves the expert
    // out with router_bias -1); the old rows and experts are the plugged model's.
    char *listed;
    rc = tu_monolith(&listed, &err, "expert add moe_rep/router/ckpt-00000002.h5 --init random --name gamma --domain gamma "
                     "--router-init fit --data alpha=%s --data beta=%s --data gamma=%s --seq 32 --batches 4 -o fit3.h5",
                     set_a, set_b, set_c);
    ck_assert_msg(rc == 0, "%s", err);
    free(err);
    double fshare[3] = {-1, -1, -1};
    const char *at = strstr(listed, "holds expert 4:");
    ck_assert_msg(at && sscanf(at, "holds expert 4: alpha %lf beta %lf gamma %lf", &fshare[0], &fshare[1], &fshare[2]) == 3,
                  "%s", listed);
    // (here layer 0, whose input is the token embedding, is left out; layer 1 takes about
    // half of gamma's tokens, a share of 0.24 over the two layers)
    ck_assert_msg(fshare[0] <= 0.05 && fshare[1] <= 0.05 && fshare[2] >= 0.2, "fit: alpha %.3f beta %.3f gamma %.3f",
                  fshare[0], fshare[1], fshare[2]);
    const char *off = strstr(listed, "(router_bias -1): layer");
    mo_checkpoint fit3;
    snprintf(p, sizeof p, "%s/fit3.h5", tu_scratch());
    ck_assert_int_eq(ckpt_load(p, &fit3), 0);
    for (int l = 0; l < 2; l++) {
        const float *b = params_at(&fit3.table, fit3.params, fit3.table.layer[l].router_bias);
        char tag[16];
        snprintf(tag, sizeof tag, " %d\n", l);
        const int listed_off = off && strstr(off, tag) != NULL;
        ck_assert_msg(b[4] == (listed_off ? -1.0f : 0.0f), "layer %d: bias %g, listed as left out %d", l, b[4], listed_off);
        for (int e = 0; e < 4; e++) ck_assert(b[e] == 0);
    }
    free(listed);
    ckpt_free(&fit3);

    // add: the same modules (taken from the replace run's folder) beside the seed's four.
    char ini_add[512], out_add[512];
    path_in(ini_add, "moe_add.ini"), path_in(out_add, "moe_add");
    write_moe_plug_ini(ini_add, out_add, seed_path, "expert_of = alpha=2, beta=0\ninto = add");
    snprintf(p, sizeof p, "mkdir -p %s/modules && cp %s/modules/*.h5 %s/modules/", out_add, out, out_add);
    ck_assert_int_eq(system(p), 0);
    ck_assert_int_eq(run_plug(ini_add, NULL, s), 0);
    ck_assert_int_eq(ckpt_load(s->s[3].ckpt, &plugged), 0);
    ck_assert_int_eq(pt->cfg.n_experts, 6);
    ck_assert_int_eq(pt->cfg.top_k, 2);
    for (int l = 0; l < 2; l++)
        for (int e = 0; e < 4; e++) ck_assert(same_expert(&seed, e, &plugged, e, l));
    ck_assert(!memcmp(params_at(pt, plugged.params, pt->layer[1].w1) + 4 * fn, expert_w1(&alpha, alpha.w, 1),
                      fn * sizeof(float)));
    ck_assert_str_eq(plugged.experts.domain[5], "beta");
    ckpt_free(&plugged);
    // The new rows start below the trained ones: they take (almost) no validation token of
    // either domain (the rows are placed on training windows; a row drawn at random would
    // enter about half the tokens' top-2).
    char *json;
    ck_assert_int_eq(tu_monolith(&json, NULL, "eval --checkpoint moe_add/plug.h5 --data alpha=%s --data beta=%s --batch 2 "
                                 "--seq 32 --batches 1 --json", set_a, set_b), 0);
    cJSON *j = cJSON_Parse(json), *share = cJSON_GetObjectItem(j, "routing_share");
    ck_assert_ptr_nonnull(share);
    for (int d = 0; d < 2; d++) {
        cJSON *mean = cJSON_GetObjectItem(cJSON_GetObjectItem(share, d ? "beta" : "alpha"), "mean");
        ck_assert_int_eq(cJSON_GetArraySize(mean), 6);
        for (int e = 4; e < 6; e++)
            ck_assert_msg(cJSON_GetArrayItem(mean, e)->valuedouble < 0.05, "domain %d: new expert %d takes %.3f", d, e,
                          cJSON_GetArrayItem(mean, e)->valuedouble);
    }
    cJSON_Delete(j);
    free(json);

    // [router] steps = 0 with [all]: no router stage; the all stage starts from plug.h5 and
    // moves the trunk too.
    char ini_all[512], out_all[512], cmd[2800];
    path_in(ini_all, "moe_all.ini"), path_in(out_all, "moe_all");
    write_moe_plug_ini(ini_all, out_all, seed_path, "expert_of = alpha=2, beta=0");
    snprintf(cmd, sizeof cmd,
             "sed -i '$ s/^steps = 2$/steps = 0/' %s && printf '\\n[all]\\nsteps = 1\\n' >> %s && mkdir -p %s/modules "
             "&& cp %s/modules/*.h5 %s/modules/",
             ini_all, ini_all, out_all, out, out_all);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_int_eq(run_plug(ini_all, NULL, s), 0);
    ck_assert_int_eq(s->n, 5);  // seed, 2 branches (modules taken), plug, all
    ck_assert_str_eq(s->s[4].name, "all");
    snprintf(p, sizeof p, "%s/router", out_all);
    ck_assert_int_ne(access(p, F_OK), 0);
    snprintf(p, sizeof p, "grep -qx 'init = %s/plug.h5' %s/all/run.ini", out_all, out_all);
    ck_assert_msg(system(p) == 0, "%s", p);
    ck_assert_int_eq(ckpt_load(s->s[4].ckpt, &plugged), 0);
    expert_trunk_hash(&plugged, h);
    ck_assert_str_ne(h, trunk);
    ckpt_free(&plugged);

    // A lone branch from the seed file alone makes the same module.
    char ini_b[512], out_b[512];
    path_in(ini_b, "moe_b.ini"), path_in(out_b, "moe_b");
    write_moe_plug_ini(ini_b, out_b, seed_path, "expert_of = alpha=2, beta=0");
    ck_assert_int_eq(run_plug(ini_b, "beta", s), 0);
    mo_expert beta_b;
    snprintf(p, sizeof p, "%s/modules/beta.h5", out_b);
    ck_assert_int_eq(expert_load(p, &beta_b), 0);
    ck_assert(!memcmp(beta.w, beta_b.w, (size_t)beta.n_moe * beta.layer_numel * sizeof(float)));
    expert_free(&alpha), expert_free(&beta), expert_free(&beta_b);
    ckpt_free(&seed);

    // Refusals, each naming its field.
    char dense_path[600];
    ck_assert_int_eq(tu_monolith(NULL, NULL, "init --preset tiny --vocab-size 257 --moe-layers 0,0 -o moe_dense.h5"), 0);
    snprintf(dense_path, sizeof dense_path, "%s/moe_dense.h5", tu_scratch());
    const char *bad[][3] = {
        {"expert_of = alpha=4, beta=0", "seed", "expert_of: alpha=4 is not an expert"},
        {"expert_of = alpha=1, beta=1", "seed", "both replace expert 1"},
        {"expert_of = alpha=1", "seed", "no expert for domain beta"},
        {"expert_of = gamma=1, beta=0", "seed", "'gamma' is no domain"},
        {"top_k = 1", "seed", "top_k = 1"},
        {"expert_of = alpha=0, beta=1", "dense", "[plug] expert_of: the seed"},
        {"into = add", "dense", "[plug] into: the seed"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        path_in(out, "moe_bad");
        write_moe_plug_ini(ini, out, strcmp(bad[i][1], "seed") ? dense_path : seed_path, bad[i][0]);
        btx_config *c = malloc(sizeof *c);
        ck_assert_msg(plug_load(ini, c) == 0, "case %zu: %s", i, mo_error());
        ck_assert_int_eq(btx_run(c, NULL, s), -1);
        ck_assert_msg(strstr(mo_error(), bad[i][2]) && !strchr(mo_error(), '\n'), "case %zu: %s", i, mo_error());
        free(c);
    }
    path_in(out, "moe_bad");
    write_moe_plug_ini(ini, out, seed_path, "into = beside");
    btx_config *c = malloc(sizeof *c);
    ck_assert_int_eq(plug_load(ini, c), -1);
    ck_assert_msg(strstr(mo_error(), "into takes replace"), "%s", mo_error());
    free(c);
    free(s);
}
END_TEST

// train --moments-from: a run from checkpoint A's weights with A's Adam moments takes one
// step exactly as A's optimizer would (m = b1 m_A + (1 - b1) g, v likewise, the bias
// correction at A's step + 1), where g is the gradient a fresh run from A's weights sees on
// the same batch (its m is (1 - b1) g); the step count is kept (/train adam_step0);
// moments of another shape and a run without --init are refused.
START_TEST(moments_from_continue_adam) {
    const char *f = "--batch 2 --seq 32 --lr 1e-3 --schedule constant --warmup 0 --eval-every 0 --threads 2 --seed 5";
    char *err;
    int rc = tu_monolith(NULL, &err, "train --preset tiny --vocab-size 257 --tokenizer %s --data alpha=%s %s --steps 3 "
                         "--out mf_a", tok_path, set_a, f);
    ck_assert_msg(rc == 0, "%s", err);
    free(err);
    rc = tu_monolith(NULL, &err, "train --init mf_a/ckpt-00000003.h5 --moments-from mf_a/ckpt-00000003.h5 --data "
                     "alpha=%s %s --steps 1 --out mf_b", set_a, f);
    ck_assert_msg(rc == 0, "%s", err);
    free(err);
    ck_assert_int_eq(tu_monolith(NULL, NULL, "train --init mf_a/ckpt-00000003.h5 --data alpha=%s %s --steps 1 --out mf_c",
                                 set_a, f), 0);
    char p[3][600];
    const char *run[3] = {"mf_a/ckpt-00000003.h5", "mf_b/ckpt-00000001.h5", "mf_c/ckpt-00000001.h5"};
    mo_checkpoint ck[3];
    float *m[3], *v[3];
    for (int i = 0; i < 3; i++) {
        snprintf(p[i], sizeof p[i], "%s/%s", tu_scratch(), run[i]);
        ck_assert_msg(ckpt_load_optim(p[i], &ck[i], &m[i], &v[i]) == 0, "%s", mo_error());
    }
    const mo_param_table *pt = &ck[0].table;
    double mmax = 0, vmax = 0, dm = 0, dv = 0;
    for (size_t j = 0; j < pt->numel; j++) {
        mmax = fmax(mmax, fabs(m[1][j])), vmax = fmax(vmax, v[1][j]);
        dm = fmax(dm, fabs(m[1][j] - (0.9 * m[0][j] + m[2][j])));
        dv = fmax(dv, fabs(v[1][j] - (0.95 * v[0][j] + v[2][j])));
    }
    ck_assert_msg(mmax > 0 && dm <= 1e-6 * mmax && dv <= 1e-6 * vmax, "m %g of %g, v %g of %g", dm, mmax, dv, vmax);
    // wq of layer 0 (decayed): the step at Adam's step 4, not 1.
    const int wq = pt->layer[0].wq;
    const float *pa = params_at(pt, ck[0].params, wq), *pb = params_at(pt, ck[1].params, wq);
    const float *mb = params_at(pt, m[1], wq), *vb = params_at(pt, v[1], wq);
    double worst = 0, step = 0;
    for (size_t j = 0; j < pt->t[wq].numel; j++) {
        double want = pa[j] * (1 - 1e-3 * 0.1) -
                      1e-3 / (1 - pow(0.9, 4)) * mb[j] / (sqrt(vb[j]) / sqrt(1 - pow(0.95, 4)) + 1e-8);
        worst = fmax(worst, fabs(pb[j] - want)), step = fmax(step, fabs(pb[j] - pa[j]));
    }
    ck_assert_msg(step > 0 && worst <= 1e-4 * step, "wq: off by %g of a step of %g", worst, step);
    for (int i = 0; i < 3; i++) ckpt_free(&ck[i]), free(m[i]), free(v[i]);
    mo_checkpoint sc;
    float *sm, *sv;
    train_state st;
    ck_assert_int_eq(train_state_load(p[1], &sc, &sm, &sv, &st), 0);
    ck_assert_int_eq((int)st.adam_step0, 3);
    ckpt_free(&sc), free(sm), free(sv);

    ck_assert_int_eq(tu_monolith(NULL, NULL, "train --preset tiny --vocab-size 257 --moe-layers 0,0 --tokenizer %s "
                                 "--data alpha=%s %s --steps 1 --out mf_dense", tok_path, set_a, f), 0);
    ck_assert_int_ne(tu_monolith(NULL, &err, "train --init mf_a/ckpt-00000003.h5 --moments-from "
                                 "mf_dense/ckpt-00000001.h5 --data alpha=%s %s --steps 1 --out mf_bad", set_a, f), 0);
    ck_assert_msg(strstr(err, "--moments-from") && strstr(err, "shapes"), "%s", err);
    free(err);
    ck_assert_int_ne(tu_monolith(NULL, &err, "train --preset tiny --vocab-size 257 --tokenizer %s --moments-from "
                                 "mf_a/ckpt-00000003.h5 --data alpha=%s %s --steps 1 --out mf_bad2", tok_path, set_a, f), 0);
    ck_assert_msg(strstr(err, "needs --init"), "%s", err);
    free(err);
}
END_TEST

int main(void) {
    Suite *s = suite_create("tools_expert");
    TCase *tc = tcase_create("cli");
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, fine_tune_one_expert_and_roundtrips);
    tcase_add_test(tc, btx_end_to_end_and_resumed);
    tcase_add_test(tc, plug_pipeline_and_provenance);
    tcase_add_test(tc, plug_continues_the_seeds_schedule);
    tcase_add_test(tc, plug_from_a_moe_seed);
    tcase_add_test(tc, moments_from_continue_adam);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_NOFORK);  // OpenMP's thread pool does not survive fork
}
