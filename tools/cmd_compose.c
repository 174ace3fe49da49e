// cmd_compose.c: `monolith compose` (modules + base -> one MoE) and `monolith upcycle`
// (dense -> MoE of FFN copies), over engine/compose.h.
#include "tools/commands.h"

#include "engine/base/error.h"
#include "engine/checkpoint.h"
#include "engine/compose.h"
#include "engine/expert_file.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INPUTS 256

// ---------------------------------------------------------------------------- compose

static const char compose_usage[] =
    "usage: monolith compose --base BASE.h5 [--base B2.h5 ... --average] --expert A.h5 --expert B.h5 ...\n"
    "                        [--router modules|fresh] [--top-k K] [--seed S] -o MOE.h5\n"
    "\n"
    "A MoE checkpoint whose expert j of every MoE layer is the j-th --expert module (a file of\n"
    "monolith expert extract); embeddings, attention, norms, output and any dense layers come\n"
    "from the base, or are the element-wise mean of several bases with --average (BTX's mix).\n"
    "The modules' shape keys must agree with each other and with the base (d_model, n_layers,\n"
    "vocabulary); the output's MoE layers and d_ff are the modules'. A module that records the\n"
    "trunk it was trained in (seed_hash) must go into a base with that trunk.\n"
    "\n"
    "  --base F         the base checkpoint (repeat with --average)\n"
    "  --average        average the non-expert weights of every --base\n"
    "  --expert F       an expert module (repeat; order = expert index)\n"
    "  --router R       modules: each module's router rows (default); fresh: new rows, normal\n"
    "                   std 0.02 (modules extracted from a dense FFN always get fresh rows)\n"
    "  --top-k K        experts per token (default: the base's if it is a MoE, else 2)\n"
    "  --seed S         seed of fresh router rows (default 1)\n"
    "  --any-seed       skip the seed_hash check (modules from other trunks, on purpose)\n"
    "  -o, --output F   the checkpoint to write\n";

// A count flag (--top-k, --n-experts): a whole number from 1 to 65536.
static int parse_count(const char *cmd, const char *flag, const char *s, int *out) {
    long v;
    if (cli_whole(cmd, flag, s, 1, 1 << 16, "a whole number from 1 to 65536", &v)) return -1;
    *out = (int)v;
    return 0;
}

int cmd_compose(int argc, char **argv) {
    static const struct option lo[] = {{"base", required_argument, 0, 'b'},   {"average", no_argument, 0, 'a'},
                                       {"expert", required_argument, 0, 'e'}, {"router", required_argument, 0, 'r'},
                                       {"top-k", required_argument, 0, 'k'},  {"seed", required_argument, 0, 'S'},
                                       {"output", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'},
                                       {"any-seed", no_argument, 0, 'A'},     {0}};
    const char *bases[MAX_INPUTS], *mods[MAX_INPUTS], *out = NULL;
    int nb = 0, nm = 0, average = 0;
    compose_opts o = {.seed = 1};
    uint64_t seed;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:h", lo, NULL)) != -1) {
        switch (c) {
        case 'b':
        case 'e':
            if ((c == 'b' ? nb : nm) == MAX_INPUTS) {
                cli_usage_error("compose", "at most %d of each input", MAX_INPUTS);
                return 2;
            }
            if (c == 'b') bases[nb++] = optarg;
            else mods[nm++] = optarg;
            break;
        case 'a': average = 1; break;
        case 'A': o.any_seed = 1; break;
        case 'r':
            if (strcmp(optarg, "modules") && strcmp(optarg, "fresh")) {
                cli_usage_error("compose", "--router takes modules or fresh, not '%s'", optarg);
                return 2;
            }
            o.fresh_router = !strcmp(optarg, "fresh");
            break;
        case 'k':
            if (parse_count("compose", "--top-k", optarg, &o.top_k)) return 2;
            break;
        case 'S':
            if (cli_seed("compose", "--seed", optarg, &seed)) return 2;
            o.seed = seed;
            break;
        case 'o': out = optarg; break;
        case 'h': fputs(compose_usage, stdout); return 0;
        default: return cli_getopt_error("compose", c, argv);
        }
    }
    if (optind < argc) {
        cli_usage_error("compose", "unexpected argument '%s' (modules go after --expert)", argv[optind]);
        return 2;
    }
    if (!nb || !nm || !out) {
        cli_usage_error("compose", "compose needs --base, at least one --expert and -o");
        return 2;
    }
    if (nb > 1 && !average) {
        cli_usage_error("compose", "%d --base given; add --average to average them, or give one", nb);
        return 2;
    }
    if (cli_output_distinct(out, bases, (size_t)nb) || cli_output_distinct(out, mods, (size_t)nm)) return cmd_fail();
    mo_checkpoint *bk = calloc((size_t)nb, sizeof *bk), outk = {0};
    mo_expert *mx = calloc((size_t)nm, sizeof *mx);
    int rc = 1;
    if (!bk || !mx) {
        mo_errorf("out of memory");
        goto done;
    }
    for (int i = 0; i < nb; i++)
        if (ckpt_load(bases[i], &bk[i])) goto done;
    for (int j = 0; j < nm; j++)
        if (expert_load(mods[j], &mx[j])) goto done;
    if (compose_checkpoint(bk, bases, nb, mx, mods, nm, &o, &outk) || ckpt_save(out, &outk)) goto done;
    printf("%s: %d experts (top_k %d) from %d module%s over %s%s; %zu parameters (%zu active per token)\n", out, nm,
           outk.table.cfg.top_k, nm, nm == 1 ? "" : "s", nb > 1 ? "the average of " : "", nb > 1 ? "the bases" : bases[0],
           params_count_total(&outk.table), params_count_active(&outk.table));
    rc = 0;
done:
    if (rc) cmd_fail();
    for (int i = 0; bk && i < nb; i++) ckpt_free(&bk[i]);
    for (int j = 0; mx && j < nm; j++) expert_free(&mx[j]);
    free(bk), free(mx);
    ckpt_free(&outk);
    return rc;
}

// ---------------------------------------------------------------------------- upcycle

static const char upcycle_usage[] =
    "usage: monolith upcycle DENSE.h5 --n-experts E --top-k K [--noise S] [--seed N] -o MOE.h5\n"
    "\n"
    "Sparse upcycling: every layer of a dense model (moe_layers all 0) becomes a MoE layer of E\n"
    "experts, each a copy of that layer's FFN, with a fresh router (normal std 0.02). With no\n"
    "noise and norm_topk 1 the MoE computes the dense model's function.\n"
    "\n"
    "  --n-experts E    experts per layer\n"
    "  --top-k K        experts per token\n"
    "  --noise S        add normal noise of std S x (the RMS of the copied weight) to each\n"
    "                   expert, so that the copies can drift apart (default 0)\n"
    "  --seed N         seed of the router and the noise (default 1)\n"
    "  -o, --output F   the checkpoint to write\n";

int cmd_upcycle(int argc, char **argv) {
    static const struct option lo[] = {{"n-experts", required_argument, 0, 'E'}, {"top-k", required_argument, 0, 'k'},
                                       {"noise", required_argument, 0, 'n'},     {"seed", required_argument, 0, 'S'},
                                       {"output", required_argument, 0, 'o'},    {"help", no_argument, 0, 'h'},
                                       {0}};
    int E = 0, k = 0;
    double noise = 0;
    uint64_t seed = 1;
    const char *out = NULL;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:h", lo, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'E':
            if (parse_count("upcycle", "--n-experts", optarg, &E)) return 2;
            break;
        case 'k':
            if (parse_count("upcycle", "--top-k", optarg, &k)) return 2;
            break;
        case 'n':
            noise = strtod(optarg, &end);
            if (!*optarg || *end || !(noise >= 0) || !isfinite(noise)) {
                cli_usage_error("upcycle", "--noise takes a number >= 0, not '%s'", optarg);
                return 2;
            }
            break;
        case 'S':
            if (cli_seed("upcycle", "--seed", optarg, &seed)) return 2;
            break;
        case 'o': out = optarg; break;
        case 'h': fputs(upcycle_usage, stdout); return 0;
        default: return cli_getopt_error("upcycle", c, argv);
        }
    }
    if (argc - optind != 1 || !E || !k || !out) {
        cli_usage_error("upcycle", "upcycle needs DENSE.h5, --n-experts, --top-k and -o");
        return 2;
    }
    const char *in = argv[optind];
    if (cli_output_distinct(out, &in, 1)) return cmd_fail();
    mo_checkpoint dense, moe = {0};
    if (ckpt_load(in, &dense)) return cmd_fail();
    int rc = 1;
    if (upcycle_checkpoint(&dense, in, E, k, noise, seed, &moe) || ckpt_save(out, &moe)) goto done;
    printf("%s: %s upcycled to %d experts (top_k %d, noise %g); %zu parameters (%zu active per token)\n", out, in, E, k,
           noise, params_count_total(&moe.table), params_count_active(&moe.table));
    rc = 0;
done:
    if (rc) cmd_fail();
    ckpt_free(&dense);
    ckpt_free(&moe);
    return rc;
}
