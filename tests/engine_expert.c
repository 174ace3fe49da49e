// engine_expert.c: expert modules and the checkpoint surgery around them
// (engine/expert_module.h, engine/compose.h):
//   - extract then insert, through module and checkpoint files, gives back a checkpoint
//     whose every dataset and attribute (model, /optim, /train, /experts) is bit-identical;
//   - compose of modules from separately initialized models puts each module's slices
//     and router rows, bit for bit, at its expert index; base tensors are copied (one
//     base) or averaged (several);
//   - an upcycled MoE of identical FFN copies (no noise, norm_topk 1) gives the dense
//     model's logits;
//   - adding then removing an expert gives back the original parameters and logits;
//   - shape-key mismatches are refused naming both files and the field.
#include "engine/base/error.h"
#include "engine/base/h5io.h"
#include "engine/checkpoint.h"
#include "engine/compose.h"
#include "engine/expert_file.h"
#include "engine/expert_module.h"
#include "engine/expert_remap.h"
#include "engine/model.h"
#include "tests/h5same.h"
#include "tests/testutil.h"

#include <math.h>
#include <unistd.h>


static void path_in(char *buf, const char *name) { snprintf(buf, 512, "%s/%s", tu_scratch(), name); }

static void tiny(mo_checkpoint *ck, uint64_t seed, const char *moe_layers) {
    mo_config c;
    ck_assert_int_eq(config_preset(&c, "tiny"), 0);
    if (moe_layers) ck_assert_int_eq(config_set(&c, "moe_layers", moe_layers), 0);
    ck_assert_msg(config_finalize(&c) == 0, "%s", mo_error());
    ck_assert_msg(ckpt_new(ck, &c, seed, "{\"test\": 1}") == 0, "%s", mo_error());
    // A distinct router_bias entry per model, layer and expert, so every surgery below must
    // carry each expert's entry with it.
    for (int l = 0; l < c.n_layers; l++)
        if (c.moe_layers[l])
            for (int e = 0; e < c.n_experts; e++)
                params_at(&ck->table, ck->params, ck->table.layer[l].router_bias)[e] =
                    0.001f * (float)(seed % 97) + 0.01f * (float)(e + 1) + 0.1f * (float)l;
    // A tokenizer blob, so the vocabulary hash takes part.
    mo_tokenizer_blob *t = &ck->tokenizer;
    const char *text = "YQ== 0\nYg== 1\n";
    t->tiktoken_len = strlen(text);
    t->tiktoken = malloc(t->tiktoken_len);
    memcpy(t->tiktoken, text, t->tiktoken_len);
    t->n_special = 1;
    t->special_names = calloc(1, sizeof(char *));
    t->special_names[0] = strdup("<|endoftext|>");
    t->special_ids = calloc(1, sizeof(int64_t));
    t->special_ids[0] = 2;
    t->present = 1;
}

// Logits of a fixed batch.
static float *logits_of(const mo_checkpoint *ck, int B, int T) {
    mo_model m;
    ck_assert_msg(model_alloc(&m, &ck->table, B, T) == 0, "%s", mo_error());
    int *tok = malloc(sizeof(int) * (size_t)B * T);
    mo_rng r;
    mo_rng_seed(&r, 99);
    for (int i = 0; i < B * T; i++) tok[i] = (int)mo_rng_below(&r, (uint64_t)ck->table.cfg.vocab_size);
    ck_assert_int_eq(model_forward(&m, ck->params, tok, NULL), 0);
    size_t n = (size_t)B * T * ck->table.cfg.vocab_size;
    float *out = malloc(n * sizeof *out);
    memcpy(out, m.logits, n * sizeof *out);
    model_free(&m);
    free(tok);
    return out;
}

// A training-like checkpoint file: model, /optim/m, /optim/v (random, v >= 0 as Adam's is) and a /train group.
static void write_training_ckpt(const char *path, const mo_checkpoint *ck) {
    float *m = params_arena_alloc(&ck->table), *v = params_arena_alloc(&ck->table);
    tu_fill(m, ck->table.numel, 5, 0.1f);
    tu_fill(v, ck->table.numel, 6, 0.01f);
    for (size_t i = 0; i < ck->table.numel; i++) v[i] = fabsf(v[i]);  // a second moment is >= 0
    hid_t f = ckpt_create(path, ck);
    ck_assert_int_ge(f, 0);
    ck_assert_int_eq(ckpt_write_tensors(f, "optim/m", &ck->table, m), 0);
    ck_assert_int_eq(ckpt_write_tensors(f, "optim/v", &ck->table, v), 0);
    ck_assert_int_eq(h5_attr_set_i64(f, "train", "step", 7), 0);
    ck_assert_int_eq(h5_attr_set_str(f, "train", "train_mask", "all"), 0);
    ck_assert_int_eq(h5_finish(f, path), 0);
    free(m), free(v);
}

START_TEST(extract_insert_is_bit_identical) {
    mo_checkpoint ck;
    tiny(&ck, 3, NULL);
    ck_assert_int_eq(ckpt_experts_set(&ck.experts, 2, "math", "math", "{\"steps\": 12, \"data\": \"x\"}"), 0);
    char src[512], mod[512], out[512];
    path_in(src, "train.h5");
    path_in(mod, "e2.h5");
    path_in(out, "back.h5");
    write_training_ckpt(src, &ck);
    ckpt_free(&ck);

    float *m, *v;
    ck_assert_msg(ckpt_load_optim(src, &ck, &m, &v) == 0, "%s", mo_error());
    ck_assert_ptr_nonnull(m);
    mo_expert x, y;
    ck_assert_msg(expert_extract(&ck, m, v, 2, &x) == 0, "%s", mo_error());
    ck_assert_str_eq(x.name, "math");
    ck_assert_int_eq(x.n_moe, 2);
    ck_assert_ptr_nonnull(x.m);
    ck_assert_msg(expert_save(mod, &x) == 0, "%s", mo_error());
    ck_assert_msg(expert_load(mod, &y) == 0, "%s", mo_error());
    ck_assert_int_eq(memcmp(x.w, y.w, x.n_moe * x.layer_numel * sizeof(float)), 0);
    ck_assert_int_eq(memcmp(x.m, y.m, x.n_moe * x.layer_numel * sizeof(float)), 0);
    ck_assert_str_eq(y.provenance, "{\"steps\": 12, \"data\": \"x\"}");
    ck_assert_str_eq(y.parent_hash, x.parent_hash);

    // Wipe the slot (weights, moments, names), then insert the module back.
    const mo_param_table *pt = &ck.table;
    for (int l = 0; l < 2; l++) {
        int ids[4] = {pt->layer[l].w1, pt->layer[l].w3, pt->layer[l].w2, pt->layer[l].router};
        for (int k = 0; k < 4; k++) {
            size_t n = k < 3 ? pt->t[ids[k]].expert_numel : (size_t)pt->cfg.d_model;
            for (float *a[3] = {ck.params, m, v}, **p = a; p < a + 3; p++)
                memset(params_at(pt, *p, ids[k]) + 2 * n, 0, n * sizeof(float));
        }
    }
    ck_assert_int_eq(ckpt_experts_set(&ck.experts, 2, "x", "y", "{}"), 0);
    ck_assert_msg(expert_insert(&ck, m, v, 2, &y, src, mod) == 0, "%s", mo_error());
    ck_assert_msg(ckpt_save_optim(out, &ck, m, v, src) == 0, "%s", mo_error());
    const char *diff = h5same(src, out);
    ck_assert_msg(diff == NULL, "extract + insert changed the checkpoint: %s", diff);

    // The comparison can fail: one bit of one moment.
    m[params_at(pt, m, pt->layer[1].w2) - m + 2 * pt->t[pt->layer[1].w2].expert_numel] += 1e-3f;
    ck_assert_int_eq(ckpt_save_optim(out, &ck, m, v, src), 0);
    ck_assert_ptr_nonnull(h5same(src, out));

    expert_free(&x), expert_free(&y);
    ckpt_free(&ck);
    free(m), free(v);
}
END_TEST

START_TEST(shape_key_mismatch_names_both_files_and_field) {
    mo_checkpoint a, b;
    tiny(&a, 1, NULL);
    mo_config c = a.table.cfg;
    c.d_ff = 64;
    ck_assert_int_eq(ckpt_new(&b, &c, 2, NULL), 0);
    mo_expert x;
    ck_assert_int_eq(expert_extract(&a, NULL, NULL, 0, &x), 0);
    ck_assert_int_eq(expert_insert(&b, NULL, NULL, 0, &x, "narrow.h5", "wide_expert.h5"), -1);
    ck_assert_msg(strstr(mo_error(), "narrow.h5") && strstr(mo_error(), "wide_expert.h5") && strstr(mo_error(), "d_ff"),
                  "%s", mo_error());
    ckpt_free(&b);

    // Another vocabulary (same size).
    tiny(&b, 2, NULL);
    b.tokenizer.tiktoken[0] = 'Z';
    ck_assert_int_eq(expert_insert(&b, NULL, NULL, 0, &x, "other_vocab.h5", "e.h5"), -1);
    ck_assert_msg(strstr(mo_error(), "vocab_hash") && strstr(mo_error(), "other_vocab.h5"), "%s", mo_error());
    ckpt_free(&b);

    // Another MoE layer pattern.
    tiny(&b, 2, "1,0");
    ck_assert_int_eq(expert_insert(&b, NULL, NULL, 0, &x, "half.h5", "e.h5"), -1);
    ck_assert_msg(strstr(mo_error(), "moe_layers") && strstr(mo_error(), "half.h5"), "%s", mo_error());
    ckpt_free(&b);

    // compose: two modules that disagree.
    mo_expert y;
    tiny(&b, 2, "1,0");
    ck_assert_int_eq(expert_extract(&b, NULL, NULL, 0, &y), 0);
    const char *bn[1] = {"base.h5"}, *mn[2] = {"full.h5", "half.h5"};
    mo_expert mods[2] = {x, y};
    mo_checkpoint out;
    compose_opts o = {.seed = 1};
    ck_assert_int_eq(compose_checkpoint(&a, bn, 1, mods, mn, 2, &o, &out), -1);
    ck_assert_msg(strstr(mo_error(), "full.h5") && strstr(mo_error(), "half.h5") && strstr(mo_error(), "moe_layers"),
                  "%s", mo_error());
    expert_free(&x), expert_free(&y);
    ckpt_free(&a), ckpt_free(&b);
}
END_TEST

START_TEST(compose_puts_modules_at_their_index) {
    // Modules from three separately initialized models (seeds), as if from separate runs.
    mo_checkpoint src[3], base, out;
    mo_expert mods[3];
    char paths[3][512];
    const char *mn[3];
    for (int i = 0; i < 3; i++) {
        tiny(&src[i], 100 + (uint64_t)i, NULL);
        mo_expert x;
        ck_assert_int_eq(expert_extract(&src[i], NULL, NULL, i, &x), 0);
        snprintf(paths[i], sizeof paths[i], "%s/mod%d.h5", tu_scratch(), i);
        ck_assert_int_eq(expert_save(paths[i], &x), 0);
        expert_free(&x);
        ck_assert_msg(expert_load(paths[i], &mods[i]) == 0, "%s", mo_error());
        mn[i] = paths[i];
    }
    tiny(&base, 7, NULL);
    const char *bn[1] = {"base.h5"};
    compose_opts o = {.seed = 1};
    // Each module records another model's trunk: refused, naming the field, unless asked.
    ck_assert_int_eq(compose_checkpoint(&base, bn, 1, mods, mn, 3, &o, &out), -1);
    ck_assert_msg(strstr(mo_error(), "seed_hash") && strstr(mo_error(), "base.h5") && strstr(mo_error(), mn[0]), "%s",
                  mo_error());
    o.any_seed = 1;
    ck_assert_msg(compose_checkpoint(&base, bn, 1, mods, mn, 3, &o, &out) == 0, "%s", mo_error());
    const mo_param_table *pt = &out.table;
    ck_assert_int_eq(pt->cfg.n_experts, 3);
    ck_assert_int_eq(pt->cfg.top_k, 2);
    for (int l = 0; l < 2; l++) {
        const mo_layer_ids *L = &pt->layer[l];
        for (int e = 0; e < 3; e++) {
            const mo_param_table *sp = &src[e].table;
            size_t fd = pt->t[L->w1].expert_numel, d = (size_t)pt->cfg.d_model;
            // The module of expert e came from expert e of model e.
            ck_assert_int_eq(memcmp(params_at(pt, out.params, L->w1) + e * fd,
                                    params_at(sp, src[e].params, sp->layer[l].w1) + e * fd, fd * 4), 0);
            ck_assert_int_eq(memcmp(params_at(pt, out.params, L->w3) + e * fd,
                                    params_at(sp, src[e].params, sp->layer[l].w3) + e * fd, fd * 4), 0);
            ck_assert_int_eq(memcmp(params_at(pt, out.params, L->w2) + e * fd,
                                    params_at(sp, src[e].params, sp->layer[l].w2) + e * fd, fd * 4), 0);
            ck_assert_int_eq(memcmp(params_at(pt, out.params, L->router) + e * d,
                                    params_at(sp, src[e].params, sp->layer[l].router) + e * d, d * 4), 0);
            ck_assert_float_eq(params_at(pt, out.params, L->router_bias)[e],
                               params_at(sp, src[e].params, sp->layer[l].router_bias)[e]);
        }
        ck_assert_int_eq(memcmp(params_at(pt, out.params, L->wq), params_at(&base.table, base.params, base.table.layer[l].wq),
                                pt->t[L->wq].numel * 4), 0);
    }
    ck_assert_str_eq(out.experts.name[1], "expert1");
    char want[256];
    snprintf(want, sizeof want, "{\"module\": \"%s\", \"parent_hash\": \"%s\"", mn[1], mods[1].parent_hash);
    ck_assert_msg(strncmp(out.experts.provenance[1], want, strlen(want)) == 0, "%s", out.experts.provenance[1]);
    ck_assert_ptr_nonnull(strstr(out.experts.provenance[1], "\"provenance\": {\"test\": 1}}"));
    ckpt_free(&out);

    // --average: non-expert tensors are the mean of the bases.
    mo_checkpoint two[2];
    tiny(&two[0], 8, NULL);
    tiny(&two[1], 9, NULL);
    const char *bn2[2] = {"b0.h5", "b1.h5"};
    ck_assert_int_eq(compose_checkpoint(two, bn2, 2, mods, mn, 3, &o, &out), 0);
    int id = out.table.tok_embeddings;
    for (size_t j = 0; j < out.table.t[id].numel; j += 97) {
        float want = (float)(((double)params_at(&two[0].table, two[0].params, id)[j] +
                              (double)params_at(&two[1].table, two[1].params, id)[j]) / 2);
        ck_assert_float_eq(params_at(&out.table, out.params, id)[j], want);
    }
    ckpt_free(&out);
    ckpt_free(&two[0]), ckpt_free(&two[1]);
    for (int i = 0; i < 3; i++) expert_free(&mods[i]), ckpt_free(&src[i]);
    ckpt_free(&base);
}
END_TEST

START_TEST(upcycled_copies_give_dense_logits) {
    mo_checkpoint dense, moe;
    tiny(&dense, 21, "0,0");
    ck_assert_int_eq(dense.table.cfg.norm_topk, 1);
    ck_assert_msg(upcycle_checkpoint(&dense, "dense.h5", 4, 2, 0.0, 5, &moe) == 0, "%s", mo_error());
    ck_assert_int_eq(config_n_moe_layers(&moe.table.cfg), 2);
    float *a = logits_of(&dense, 2, 16), *b = logits_of(&moe, 2, 16);
    size_t n = (size_t)2 * 16 * dense.table.cfg.vocab_size;
    double err = tu_rel_err(b, a, n);
    ck_assert_msg(err < 1e-6, "upcycled logits differ from the dense model's: rel err %g", err);
    free(b);
    ckpt_free(&moe);
    // With noise the experts differ, and so do the logits (the test above can fail).
    ck_assert_int_eq(upcycle_checkpoint(&dense, "dense.h5", 4, 2, 0.5, 5, &moe), 0);
    b = logits_of(&moe, 2, 16);
    ck_assert_msg(tu_rel_err(b, a, n) > 1e-4, "noise did not change the logits");
    free(a), free(b);
    ckpt_free(&moe);
    // A model with MoE layers is refused.
    mo_checkpoint m2;
    tiny(&m2, 1, NULL);
    ck_assert_int_eq(upcycle_checkpoint(&m2, "moe.h5", 4, 2, 0, 1, &moe), -1);
    ck_assert_ptr_nonnull(strstr(mo_error(), "moe.h5"));
    ckpt_free(&m2);
    ckpt_free(&dense);
}
END_TEST

START_TEST(add_then_remove_gives_back_the_model) {
    mo_checkpoint ck, grown, back;
    tiny(&ck, 31, NULL);
    int map[5] = {0, 1, 2, 3, -1};
    ck_assert_msg(expert_remap(&ck, NULL, NULL, map, 5, &grown, NULL, NULL) == 0, "%s", mo_error());
    expert_init_random(&grown, 4, 77);
    ck_assert_int_eq(grown.table.cfg.n_experts, 5);
    ck_assert_int_eq(grown.table.cfg.top_k, 2);
    float *a = logits_of(&ck, 2, 16), *g = logits_of(&grown, 2, 16);
    size_t n = (size_t)2 * 16 * ck.table.cfg.vocab_size;
    ck_assert_msg(tu_rel_err(g, a, n) > 1e-5, "the new expert changed nothing (the check below could not fail)");
    int keep[4] = {0, 1, 2, 3};
    ck_assert_int_eq(expert_remap(&grown, NULL, NULL, keep, 4, &back, NULL, NULL), 0);
    ck_assert_int_eq(back.table.numel, ck.table.numel);
    ck_assert_int_eq(memcmp(back.params, ck.params, ck.table.numel * sizeof(float)), 0);
    float *b = logits_of(&back, 2, 16);
    ck_assert_int_eq(memcmp(a, b, n * sizeof(float)), 0);
    for (int e = 0; e < 4; e++) ck_assert_str_eq(back.experts.provenance[e], ck.experts.provenance[e]);
    free(a), free(b), free(g);
    ckpt_free(&back);

    // Removing below top_k is refused; moments follow their experts.
    const float *gb = params_at(&grown.table, grown.params, grown.table.layer[1].router_bias);
    for (int e = 0; e < 4; e++)
        ck_assert_float_eq(gb[e], params_at(&ck.table, ck.params, ck.table.layer[1].router_bias)[e]);
    ck_assert_float_eq(gb[4], 0.0f);  // the added expert starts unbiased
    int one[1] = {3};
    ck_assert_int_eq(expert_remap(&grown, NULL, NULL, one, 1, &back, NULL, NULL), -1);
    ck_assert_ptr_nonnull(strstr(mo_error(), "top_k"));
    float *m = params_arena_alloc(&ck.table), *v = params_arena_alloc(&ck.table), *m2, *v2;
    tu_fill(m, ck.table.numel, 1, 1), tu_fill(v, ck.table.numel, 2, 1);
    int rev[4] = {3, 2, 1, 0};
    ck_assert_int_eq(expert_remap(&ck, m, v, rev, 4, &back, &m2, &v2), 0);
    const mo_param_table *pt = &ck.table;
    size_t fd = pt->t[pt->layer[1].w3].expert_numel;
    ck_assert_int_eq(memcmp(params_at(pt, m2, pt->layer[1].w3), params_at(pt, m, pt->layer[1].w3) + 3 * fd, fd * 4), 0);
    ck_assert_int_eq(memcmp(params_at(pt, v2, pt->layer[1].w3) + 3 * fd, params_at(pt, v, pt->layer[1].w3), fd * 4), 0);
    free(m), free(v), free(m2), free(v2);
    ckpt_free(&back);
    ckpt_free(&grown);
    ckpt_free(&ck);
}
END_TEST

// A module written before router_bias existed (no /layers/L/router_bias) loads with 0.
START_TEST(module_without_bias_loads_zero) {
    mo_checkpoint ck;
    tiny(&ck, 41, NULL);
    mo_expert x, y;
    ck_assert_int_eq(expert_extract(&ck, NULL, NULL, 2, &x), 0);
    ck_assert_float_eq(*expert_router_bias(&x, x.w, 1), params_at(&ck.table, ck.params, ck.table.layer[1].router_bias)[2]);
    char p[512];
    path_in(p, "nobias.h5");
    ck_assert_int_eq(expert_save(p, &x), 0);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert(f >= 0);
    ck_assert(H5Ldelete(f, "layers/0/router_bias", H5P_DEFAULT) >= 0 && H5Ldelete(f, "layers/1/router_bias", H5P_DEFAULT) >= 0);
    H5Fclose(f);
    ck_assert_msg(expert_load(p, &y) == 0, "%s", mo_error());
    ck_assert_float_eq(*expert_router_bias(&y, y.w, 0), 0.0f);
    ck_assert_float_eq(*expert_router_bias(&y, y.w, 1), 0.0f);
    ck_assert_int_eq(memcmp(expert_router(&y, y.w, 1), expert_router(&x, x.w, 1), sizeof(float) * 64), 0);
    expert_free(&x), expert_free(&y);
    ckpt_free(&ck);
}
END_TEST

START_TEST(module_file_checks) {
    mo_checkpoint ck;
    tiny(&ck, 1, NULL);
    mo_expert x, y;
    ck_assert_int_eq(expert_extract(&ck, NULL, NULL, 9, &x), -1);
    ck_assert_ptr_nonnull(strstr(mo_error(), "0..3"));
    ck_assert_int_eq(expert_extract(&ck, NULL, NULL, 1, &x), 0);
    char p[512];
    path_in(p, "nan.h5");
    x.w[5] = NAN;
    ck_assert_int_eq(expert_save(p, &x), 0);
    ck_assert_int_eq(expert_load(p, &y), -1);
    ck_assert_msg(strstr(mo_error(), "NaN") && strstr(mo_error(), "nan.h5"), "%s", mo_error());
    // A checkpoint is not a module.
    char c[512];
    path_in(c, "ck.h5");
    ck_assert_int_eq(ckpt_save(c, &ck), 0);
    ck_assert_int_eq(expert_load(c, &y), -1);
    ck_assert_ptr_nonnull(strstr(mo_error(), "monolith-expert"));
    expert_free(&x);
    ckpt_free(&ck);
}
END_TEST

static void setup(void) { ck_assert_ptr_nonnull(tu_scratch_make("expert")); }
static void teardown(void) { tu_scratch_remove(); }

int main(void) {
    Suite *s = suite_create("expert");
    TCase *tc = tcase_create("core");
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, extract_insert_is_bit_identical);
    tcase_add_test(tc, shape_key_mismatch_names_both_files_and_field);
    tcase_add_test(tc, compose_puts_modules_at_their_index);
    tcase_add_test(tc, upcycled_copies_give_dense_logits);
    tcase_add_test(tc, add_then_remove_gives_back_the_model);
    tcase_add_test(tc, module_file_checks);
    tcase_add_test(tc, module_without_bias_loads_zero);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
