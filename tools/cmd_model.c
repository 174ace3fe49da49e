// cmd_model.c: `monolith init`, `monolith inspect` and `monolith dump`: make a model,
// look inside one, and run one batch through forward and backward into an HDF5 dump.
#include "tools/commands.h"

#include "engine/base/error.h"
#include "engine/base/h5io.h"
#include "engine/checkpoint.h"
#include "engine/config.h"
#include "engine/model.h"
#include "engine/params.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------- init

static void init_usage(FILE *out) {
    fprintf(out,
            "usage: monolith init --preset NAME [--seed S] [--<config-field> VALUE]... -o CKPT.h5\n"
            "\n"
            "A randomly initialized checkpoint (normal std 0.02; wo, w2, shared_w2 with std\n"
            "0.02/sqrt(2*n_layers); norms 1).\n"
            "\n"
            "  --preset NAME    tiny, small or bench-S\n"
            "  --seed S         initialization seed (default 1)\n"
            "  -o, --output F   the checkpoint to write\n"
            "\n"
            "Any config field overrides the preset, by its name with dashes:\n");
    for (int i = 0; config_field_flags[i]; i++) fprintf(out, "  --%s VALUE\n", config_field_flags[i]);
    fprintf(out, "(--moe-layers takes one 0/1 per layer, e.g. 1,0; 1 = MoE, 0 = dense)\n");
}

enum { OPT_PRESET = 1000, OPT_SEED, OPT_HELP, OPT_FIELD0 = 2000 };

int cmd_init(int argc, char **argv) {
    struct option opts[64];
    int n = 0;
    opts[n++] = (struct option){"preset", required_argument, 0, OPT_PRESET};
    opts[n++] = (struct option){"seed", required_argument, 0, OPT_SEED};
    opts[n++] = (struct option){"output", required_argument, 0, 'o'};
    opts[n++] = (struct option){"help", no_argument, 0, OPT_HELP};
    for (int i = 0; config_field_flags[i]; i++)
        opts[n++] = (struct option){config_field_flags[i], required_argument, 0, OPT_FIELD0 + i};
    opts[n] = (struct option){0, 0, 0, 0};

    const char *preset = NULL, *out = NULL;
    uint64_t seed = 1;
    config_override ovr[64];
    int n_ovr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        if (ch == OPT_PRESET) {
            preset = optarg;
        } else if (ch == OPT_SEED) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(optarg, &end, 10);
            if (errno || *end || optarg[0] == '-' || !optarg[0]) {
                fprintf(stderr, "monolith: --seed takes a whole number >= 0, not '%s'\n", optarg);
                return 2;
            }
            seed = s;
        } else if (ch == 'o') {
            out = optarg;
        } else if (ch == OPT_HELP || ch == 'h') {
            init_usage(stdout);
            return 0;
        } else if (ch >= OPT_FIELD0 && n_ovr < 64) {
            ovr[n_ovr++] = (config_override){config_field_flags[ch - OPT_FIELD0], optarg};
        } else {
            init_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "monolith: init: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!preset || !out) {
        fprintf(stderr, "monolith: init needs --preset NAME and -o CKPT.h5\n");
        return 2;
    }
    mo_config c;
    if (config_build(&c, preset, ovr, n_ovr)) return cmd_fail();

    char prov[256];
    snprintf(prov, sizeof prov, "{\"created_by\": \"monolith init\", \"preset\": \"%s\", \"seed\": %" PRIu64 "}",
             preset, seed);
    mo_checkpoint ck;
    if (ckpt_new(&ck, &c, seed, prov)) return cmd_fail();
    int rc = ckpt_save(out, &ck);
    if (rc == 0)
        printf("%s: %s, %zu parameters (%zu active per token)\n", out, preset, params_count_total(&ck.table),
               params_count_active(&ck.table));
    ckpt_free(&ck);
    return rc ? cmd_fail() : 0;
}

// ---------------------------------------------------------------------------- inspect

int cmd_inspect(int argc, char **argv) {
    if (argc != 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        FILE *o = argc == 2 ? stdout : stderr;
        fprintf(o, "usage: monolith inspect CKPT.h5\n\nConfig, total and active parameter counts, tensor shapes, "
                   "experts and tokenizer of a checkpoint.\n");
        return argc == 2 ? 0 : 2;
    }
    mo_checkpoint ck;
    if (ckpt_load(argv[1], &ck)) return cmd_fail();
    const mo_param_table *pt = &ck.table;
    printf("%s\n\nconfig\n", argv[1]);
    config_print(stdout, &pt->cfg);
    char routing[256];
    config_routing_str(&pt->cfg, routing, sizeof routing);
    printf("\nrouting     %s\n", routing);
    size_t total = params_count_total(pt), active = params_count_active(pt);
    printf("\nparameters  %zu total (%.2fM), %zu active per token (%.2fM)\n\ntensors\n", total, total / 1e6, active,
           active / 1e6);
    for (int i = 0; i < pt->n; i++) {
        char shape[96];
        params_shape_str(pt, i, shape, sizeof shape);
        printf("  %-28s %-20s %zu\n", pt->t[i].name, shape, pt->t[i].numel);
    }
    printf("\nexperts (%d)\n", ck.experts.n);
    for (int e = 0; e < ck.experts.n; e++) {
        char nm[1024], dm[1024], pv[4096];
        printf("  %-3d %-16s domain=%s provenance=%s\n", e, cli_show(ck.experts.name[e], nm, sizeof nm),
               cli_show(ck.experts.domain[e][0] ? ck.experts.domain[e] : "-", dm, sizeof dm),
               cli_show(ck.experts.provenance[e], pv, sizeof pv));
    }
    if (ck.tokenizer.present)
        printf("\ntokenizer   %zu bytes of ranks, %d special tokens\n", ck.tokenizer.tiktoken_len,
               ck.tokenizer.n_special);
    else
        printf("\ntokenizer   none\n");
    ckpt_free(&ck);
    return 0;
}

// ---------------------------------------------------------------------------- dump

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

static int write_dump(const char *path, const mo_model *m, const float *grads, hid_t f) {
    const mo_param_table *pt = m->pt;
    const mo_config *c = &pt->cfg;
    const int N = m->N, k = c->top_k;
    if (h5_set_format(f, "monolith-dump", 1) || h5_attr_set_f64(f, ".", "ce", m->ce) ||
        h5_attr_set_f64(f, ".", "aux", m->aux) || h5_attr_set_f64(f, ".", "z", m->z) ||
        h5_attr_set_f64(f, ".", "loss", m->loss))
        return -1;
    int64_t *ex = malloc((size_t)N * (k > 0 ? k : 1) * sizeof *ex);
    if (!ex) return mo_errorf("%s: out of memory", path);
    for (int l = 0; l < c->n_layers; l++) {
        if (!c->moe_layers[l]) continue;
        const mo_layer_acts *L = &m->layer[l];
        for (size_t i = 0; i < (size_t)N * k; i++) ex[i] = L->r.experts[i];
        hsize_t dims[2] = {(hsize_t)N, (hsize_t)k};
        char p[64];
        snprintf(p, sizeof p, "routing/%d/experts", l);
        int rc = h5_write_i64(f, p, ex, 2, dims);
        snprintf(p, sizeof p, "routing/%d/weights", l);
        if (rc || h5_write_f32(f, p, L->r.gates, 2, dims)) {
            free(ex);
            return -1;
        }
    }
    free(ex);
    return ckpt_write_grads(f, "grads", pt, grads);
}

int cmd_dump(int argc, char **argv) {
    static const struct option opts[] = {{"checkpoint", required_argument, 0, 'c'},
                                         {"tokens", required_argument, 0, 't'},
                                         {"output", required_argument, 0, 'o'},
                                         {"threads", required_argument, 0, 'j'},
                                         {"train", required_argument, 0, 'n'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *usage =
        "usage: monolith dump --checkpoint CKPT.h5 --tokens TOKENS.h5 -o OUT.h5 [--threads N] [--train SEED]\n"
        "\n"
        "One batch (/tokens [B, T+1]: inputs [:, :-1], targets [:, 1:]) through forward and backward:\n"
        "writes /logits [B, T, V], root attrs ce, aux, z, loss, /routing/L/experts and /routing/L/weights\n"
        "[B*T, k] per MoE layer (expert -1: a slot capacity dropped or top-p left unused), and\n"
        "/grads/<path> for every parameter (docs/design.md section 11.4).\n"
        "\n"
        "  --train SEED  a training forward: router_noise > 0 adds noise drawn from monolith's RNG\n"
        "                seeded with SEED (tests/moe_reference.py's Rng reproduces it); without it,\n"
        "                as in evaluation and inference, no noise\n";
    const char *ckpt = NULL, *tok = NULL, *out = NULL;
    int threads = 0, train = 0;
    uint64_t noise_seed = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': ckpt = optarg; break;
        case 't': tok = optarg; break;
        case 'o': out = optarg; break;
        case 'j': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end || !optarg[0] || n < 0 || n > 1024) {
                fprintf(stderr, "monolith: --threads takes a whole number (0 = one per core), not '%s'\n", optarg);
                return 2;
            }
            threads = (int)n;
            break;
        }
        case 'n': {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (*end || !optarg[0] || optarg[0] == '-' || errno) {
                fprintf(stderr, "monolith: --train takes a seed (a whole number >= 0), not '%s'\n", optarg);
                return 2;
            }
            train = 1, noise_seed = v;
            break;
        }
        case 'h': printf("%s", usage); return 0;
        default: fprintf(stderr, "%s", usage); return 2;
        }
    }
    if (!ckpt || !tok || !out || optind < argc) {
        fprintf(stderr, "monolith: dump needs --checkpoint, --tokens and -o\n%s", usage);
        return 2;
    }
    const char *ins[] = {ckpt, tok};
    if (cli_output_distinct(out, ins, 2)) return cmd_fail();
    if (cli_threads(threads)) return 1;
    mo_checkpoint ck;
    if (ckpt_load(ckpt, &ck)) return cmd_fail();
    int *inputs = NULL, *targets = NULL, B = 0, T = 0, rc = 1;
    mo_model m = {0};
    float *grads = NULL;
    hid_t f = -1;
    if (read_tokens(tok, ck.table.cfg.vocab_size, ck.table.cfg.max_seq_len, &inputs, &targets, &B, &T)) goto err;
    if (model_alloc(&m, &ck.table, B, T)) goto err;
    if (!(grads = params_arena_alloc(&ck.table))) goto err;
    mo_rng noise;
    mo_rng_seed(&noise, noise_seed);
    if (train) model_set_noise(&m, &noise);
    if (model_forward(&m, ck.params, inputs, targets)) goto err;
    f = h5_create(out);
    if (f < 0) goto err;
    // Logits before backward, which turns them into their gradient.
    hsize_t ldims[3] = {(hsize_t)B, (hsize_t)T, (hsize_t)ck.table.cfg.vocab_size};
    if (h5_write_f32(f, "logits", m.logits, 3, ldims)) goto err;
    if (model_backward(&m, ck.params, grads, 1.0f)) goto err;
    if (write_dump(out, &m, grads, f)) goto err;
    rc = h5_finish(f, out);
    f = -1;
    if (rc) goto err;
    printf("%s: B=%d T=%d  ce %.6f  aux %.6f  z %.6f  loss %.6f\n", out, B, T, m.ce, m.aux, m.z, m.loss);
    rc = 0;
err:
    if (f >= 0) h5_abort(f, out);
    if (rc) cmd_fail();
    free(inputs);
    free(targets);
    free(grads);
    model_free(&m);
    ckpt_free(&ck);
    return rc;
}
