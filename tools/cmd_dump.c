// cmd_dump.c: `monolith dump`: one batch through forward and backward into an HDF5 file
// (logits, losses, routing, every gradient; docs/design.md section 11.4), the model-level
// check against PyTorch and between modes.
//
// --micro-batches A splits the batch into A micro-batches of B/A sequences, each through
// forward and backward with loss scale 1/A, exactly as `monolith train --grad-accum A`
// does one step: the losses are the mean of the micro-batches' (summed in their order),
// the logits and routing those of each micro-batch in order. Under mpirun the A
// micro-batches are split over the ranks (rank r takes A/N consecutive ones, as train
// does), the gradients are summed over ranks (train/dist.h), and rank 0 writes the one
// file; with --expert-parallel G the experts are split over groups of G ranks
// (engine/moe_ep.h) and each expert's gradient comes to rank 0 from its owner. So
// `mpirun -np 2 monolith dump --expert-parallel 2` and one process's
// `monolith dump --micro-batches 2` compute the same numbers (tests/mpi_train.sh).
#include "tools/commands.h"

#include "engine/base/error.h"
#include "engine/base/h5io.h"
#include "engine/base/rng.h"
#include "engine/checkpoint.h"
#include "engine/comm.h"
#include "engine/model.h"
#include "engine/params.h"
#include "train/dist.h"
#include "train/freeze.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Reads /tokens [B, T+1] of `path` into inputs and targets [B*T], checking every id
// against the vocabulary. Returns 0 or -1 with a message naming the file.
static int read_tokens(const char *path, int vocab, int max_T, int **inputs, int **targets, int *B, int *T) {
    hid_t f = h5_open(path, NULL, 0);
    if (f < 0) return -1;
    int rank, rc = -1;
    hsize_t dims[H5IO_MAX_RANK];
    int64_t *raw = NULL;
    *inputs = *targets = NULL;
    if (h5_shape(f, "tokens", &rank, dims)) goto out;
    if (rank != 2 || dims[0] < 1 || dims[1] < 2) {
        mo_errorf("%s: /tokens must be integers [B, T+1] with B >= 1 and T >= 1", path);
        goto out;
    }
    if ((int64_t)dims[1] - 1 > max_T) {
        mo_errorf("%s: /tokens holds sequences of %llu tokens, longer than the model's max_seq_len %d", path,
                  (unsigned long long)dims[1] - 1, max_T);
        goto out;
    }
    if (dims[0] * dims[1] > (hsize_t)1 << 28) {
        mo_errorf("%s: /tokens is too large for one batch", path);
        goto out;
    }
    *B = (int)dims[0], *T = (int)dims[1] - 1;
    raw = malloc(dims[0] * dims[1] * sizeof *raw);
    *inputs = malloc((size_t)*B * *T * sizeof(int));
    *targets = malloc((size_t)*B * *T * sizeof(int));
    if (!raw || !*inputs || !*targets) {
        mo_errorf("%s: out of memory", path);
        goto out;
    }
    if (h5_read(f, "tokens", H5T_NATIVE_INT64, raw, 2, dims)) goto out;
    for (int b = 0; b < *B; b++)
        for (int t = 0; t <= *T; t++) {
            int64_t v = raw[(size_t)b * (*T + 1) + t];
            if (v < 0 || v >= vocab) {
                mo_errorf("%s: /tokens[%d, %d] = %lld is outside the model's vocabulary [0, %d)", path, b, t,
                          (long long)v, vocab);
                goto out;
            }
            if (t < *T) (*inputs)[(size_t)b * *T + t] = (int)v;
            if (t > 0) (*targets)[(size_t)b * *T + t - 1] = (int)v;
        }
    rc = 0;
out:
    free(raw);
    if (rc) {
        free(*inputs);
        free(*targets);
        *inputs = *targets = NULL;
    }
    h5_close(f);
    return rc;
}

// The whole batch's outputs, gathered on rank 0 (NULL elsewhere): logits [B*T, V] and, per
// MoE layer, experts and gates [B*T, k] (experts as floats: exact for ids below 2^24).
typedef struct {
    float *logits, *experts, *gates;
    double loss[4];  // ce, aux, z, loss: means over the micro-batches
} dump_out;

static int write_dump(const char *path, const mo_param_table *pt, const dump_out *o, const float *grads, int N,
                      hid_t f) {
    const mo_config *c = &pt->cfg;
    const int k = c->top_k;
    if (h5_set_format(f, "monolith-dump", 1) || h5_attr_set_f64(f, ".", "ce", o->loss[0]) ||
        h5_attr_set_f64(f, ".", "aux", o->loss[1]) || h5_attr_set_f64(f, ".", "z", o->loss[2]) ||
        h5_attr_set_f64(f, ".", "loss", o->loss[3]))
        return -1;
    int64_t *ex = malloc((size_t)N * (k > 0 ? k : 1) * sizeof *ex);
    if (!ex) return mo_errorf("%s: out of memory", path);
    for (int l = 0, j = 0; l < c->n_layers; l++) {
        if (!c->moe_layers[l]) continue;
        const size_t at = (size_t)j++ * N * k;
        for (size_t i = 0; i < (size_t)N * k; i++) ex[i] = (int64_t)o->experts[at + i];
        hsize_t dims[2] = {(hsize_t)N, (hsize_t)k};
        char p[64];
        snprintf(p, sizeof p, "routing/%d/experts", l);
        int rc = h5_write_i64(f, p, ex, 2, dims);
        snprintf(p, sizeof p, "routing/%d/weights", l);
        if (rc || h5_write_f32(f, p, o->gates + at, 2, dims)) {
            free(ex);
            return -1;
        }
    }
    free(ex);
    return ckpt_write_grads(f, "grads", pt, grads);
}

// Shard bounds of `per` floats per micro-batch, A/R micro-batches per rank.
static void rank_bounds(size_t *b, int R, size_t per_rank) {
    for (int r = 0; r <= R; r++) b[r] = (size_t)r * per_rank;
}

// Runs this rank's micro-batches and brings everything to rank 0 (dump_out; gradients
// into `grads`, whole there). Returns 0 or -1.
static int run_micro_batches(const mo_checkpoint *ck, const int *inputs, const int *targets, int B, int T, int A,
                             int ep, mo_rng *noise, float *grads, dump_out *o) {
    const mo_param_table *pt = &ck->table;
    const mo_config *c = &pt->cfg;
    const int R = comm_size(), me = comm_rank(), per = A / R, Bm = B / A, Nm = Bm * T, V = c->vocab_size;
    const int k = c->top_k, n_moe = config_n_moe_layers(c);
    const size_t rowk = (size_t)Nm * k;
    int rc = -1;
    mo_model m = {0};
    train_mask all = {0};
    dist_opt d = {0};
    mo_model_opts mo = {.expert_parallel = ep};
    // This rank's part, [per micro-batches]: logits, then experts and gates per MoE layer.
    float *lg = malloc((size_t)per * Nm * V * sizeof *lg);
    float *ex = malloc((size_t)per * rowk * (n_moe ? n_moe : 1) * sizeof *ex);
    float *gt = malloc((size_t)per * rowk * (n_moe ? n_moe : 1) * sizeof *gt);
    double *terms = calloc((size_t)A * 4, sizeof *terms), *mine = calloc((size_t)per * 4 + 1, sizeof *mine);
    size_t *b = malloc(((size_t)R + 1) * sizeof *b);
    if (!lg || !ex || !gt || !terms || !mine || !b) {
        mo_errorf("out of memory");
        goto out;
    }
    if (model_alloc_opts(&m, pt, Bm, T, &mo) || freeze_parse(pt, "all", &all) || dist_opt_init(&d, pt, &all, 0, ep))
        goto out;
    if (noise) model_set_noise(&m, noise);
    for (int a = 0; a < per; a++) {
        const size_t row0 = (size_t)(me * per + a) * Nm;
        if (model_forward(&m, ck->params, inputs + row0, targets + row0)) goto out;
        memcpy(lg + (size_t)a * Nm * V, m.logits, (size_t)Nm * V * sizeof *lg);  // before backward overwrites them
        for (int l = 0, j = 0; l < c->n_layers; l++) {
            if (!c->moe_layers[l]) continue;
            const size_t at = ((size_t)j++ * per + a) * rowk;
            for (size_t i = 0; i < rowk; i++) ex[at + i] = (float)m.layer[l].r.experts[i];
            memcpy(gt + at, m.layer[l].r.gates, rowk * sizeof *gt);
        }
        double *t = mine + (size_t)a * 4;
        t[0] = m.ce / A, t[1] = m.aux / A, t[2] = m.z / A, t[3] = m.loss / A;
        if (model_backward(&m, ck->params, grads, 1.0f / (float)A)) goto out;
    }
    // Losses summed in micro-batch order; gradients summed over ranks; all of it to rank 0.
    if (comm_allgather_f64(mine, terms, (size_t)per * 4)) goto out;
    for (int a = 0; a < A; a++)
        for (int i = 0; i < 4; i++) o->loss[i] += terms[(size_t)a * 4 + i];
    if (dist_sync_grads(&d, grads) || dist_gather_experts(&d, (float *const[]){grads}, 1)) goto out;
    rank_bounds(b, R, (size_t)per * Nm * V);
    if (comm_gather_f32(lg, o->logits, b, 0)) goto out;
    rank_bounds(b, R, (size_t)per * rowk);
    for (int j = 0; j < n_moe; j++) {
        const size_t whole = (size_t)j * A * rowk, part = (size_t)j * per * rowk;
        if (comm_gather_f32(ex + part, o->experts ? o->experts + whole : NULL, b, 0) ||
            comm_gather_f32(gt + part, o->gates ? o->gates + whole : NULL, b, 0))
            goto out;
    }
    rc = 0;
out:
    free(lg), free(ex), free(gt), free(terms), free(mine), free(b);
    dist_opt_free(&d);
    train_mask_free(&all);
    if (m.arena) model_free(&m);
    return rc;
}

int cmd_dump(int argc, char **argv) {
    static const struct option opts[] = {{"checkpoint", required_argument, 0, 'c'},
                                         {"tokens", required_argument, 0, 't'},
                                         {"output", required_argument, 0, 'o'},
                                         {"threads", required_argument, 0, 'j'},
                                         {"micro-batches", required_argument, 0, 'a'},
                                         {"expert-parallel", required_argument, 0, 'e'},
                                         {"train", required_argument, 0, 'n'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *usage =
        "usage: monolith dump --checkpoint CKPT.h5 --tokens TOKENS.h5 -o OUT.h5 [--threads N] [--train SEED]\n"
        "                     [--micro-batches A] [--expert-parallel G]\n"
        "\n"
        "One batch (/tokens [B, T+1]: inputs [:, :-1], targets [:, 1:]) through forward and backward:\n"
        "writes /logits [B, T, V], root attrs ce, aux, z, loss, /routing/L/experts and /routing/L/weights\n"
        "[B*T, k] per MoE layer (expert -1: a slot capacity dropped or top-p left unused), and\n"
        "/grads/<path> for every parameter (docs/design.md section 11.4).\n"
        "\n"
        "  --train SEED         a training forward: router_noise > 0 adds noise drawn from monolith's RNG\n"
        "                       seeded with SEED (tests/moe_reference.py's Rng reproduces it); without it,\n"
        "                       as in evaluation and inference, no noise (one process only)\n"
        "  --micro-batches A    the batch as A micro-batches of B/A sequences, as train --grad-accum A\n"
        "                       (default: 1, or the number of ranks under mpirun)\n"
        "  --expert-parallel G  under mpirun: the experts split over groups of G ranks (docs/distributed.md)\n";
    const char *ckpt = NULL, *tok = NULL, *out = NULL;
    int threads = 0, A = 0, ep = 0, train = 0;
    uint64_t noise_seed = 0;
    optind = 1;
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":o:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': ckpt = optarg; break;
        case 't': tok = optarg; break;
        case 'o': out = optarg; break;
        case 'j':
        case 'a':
        case 'e': {
            long n;
            const char *flag = ch == 'j' ? "--threads" : ch == 'a' ? "--micro-batches" : "--expert-parallel";
            if (cli_whole("dump", flag, optarg, 0, 1024, "a whole number from 0 to 1024", &n)) return 2;
            *(ch == 'j' ? &threads : ch == 'a' ? &A : &ep) = (int)n;
            break;
        }
        case 'n': {
            if (cli_seed("dump", "--train (a seed)", optarg, &noise_seed)) return 2;
            train = 1;
            break;
        }
        case 'h': printf("%s", usage); return 0;
        default: return cli_getopt_error("dump", ch, argv);
        }
    }
    if (!ckpt || !tok || !out || optind < argc) {
        return cli_usage_error("dump", "dump needs --checkpoint, --tokens and -o");
    }
    const int R = comm_size();
    if (!A) A = R;
    if (train && R > 1) {
        return cli_usage_error("dump", "dump --train runs in one process (the noise stream is one process's)");
    }
    if (A % R) {
        return cli_usage_error("dump", "dump --micro-batches %d: the %d ranks must split them evenly", A, R);
    }
    const char *ins[] = {ckpt, tok};
    if (cli_output_distinct(out, ins, 2)) return cmd_fail();
    if (cli_threads(threads)) return 1;
    if (ep > 1 && comm_expert_groups(ep)) return cmd_fail();
    mo_checkpoint ck;
    if (ckpt_load(ckpt, &ck)) return cmd_fail();
    int *inputs = NULL, *targets = NULL, B = 0, T = 0, rc = 1;
    float *grads = NULL;
    dump_out o = {0};
    hid_t f = -1;
    const int root = comm_rank() == 0;
    if (read_tokens(tok, ck.table.cfg.vocab_size, ck.table.cfg.max_seq_len, &inputs, &targets, &B, &T)) goto err;
    if (B % A) {
        mo_errorf("%s: %d sequences do not split into --micro-batches %d", tok, B, A);
        goto err;
    }
    const size_t N = (size_t)B * T, rows = N * ck.table.cfg.top_k * config_n_moe_layers(&ck.table.cfg);
    if (!(grads = ep > 1 ? params_arena_alloc_sparse(&ck.table) : params_arena_alloc(&ck.table))) goto err;
    if (root && (!(o.logits = malloc(N * ck.table.cfg.vocab_size * sizeof(float))) ||
                 !(o.experts = malloc((rows + 1) * sizeof(float))) || !(o.gates = malloc((rows + 1) * sizeof(float))))) {
        mo_errorf("out of memory");
        goto err;
    }
    mo_rng noise;
    mo_rng_seed(&noise, noise_seed);
    if (run_micro_batches(&ck, inputs, targets, B, T, A, ep, train ? &noise : NULL, grads, &o)) goto err;
    if (root) {
        f = h5_create(out);
        if (f < 0) goto err;
        hsize_t ldims[3] = {(hsize_t)B, (hsize_t)T, (hsize_t)ck.table.cfg.vocab_size};
        if (h5_write_f32(f, "logits", o.logits, 3, ldims)) goto err;
        if (write_dump(out, &ck.table, &o, grads, (int)N, f)) goto err;
        int fin = h5_finish(f, out);  // (-1 would be exit 255)
        f = -1;
        if (fin) goto err;
        printf("%s: B=%d T=%d  ce %.6f  aux %.6f  z %.6f  loss %.6f\n", out, B, T, o.loss[0], o.loss[1], o.loss[2],
               o.loss[3]);
    }
    rc = 0;
err:
    if (f >= 0) h5_abort(f, out);
    if (rc) cmd_fail();
    free(inputs), free(targets), free(o.logits), free(o.experts), free(o.gates);
    if (grads && ep > 1) params_arena_free_sparse(&ck.table, grads);
    else free(grads);
    ckpt_free(&ck);
    return rc;
}
