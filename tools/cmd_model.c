// cmd_model.c: `monolith init` and `monolith inspect`: make a model and look inside one
// (`monolith dump` is tools/cmd_dump.c).
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
            "  --preset NAME    tiny, small, bench-S or fine-S\n"
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
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":o:h", opts, NULL)) != -1) {
        if (ch == OPT_PRESET) {
            preset = optarg;
        } else if (ch == OPT_SEED) {
            if (cli_seed("init", "--seed", optarg, &seed)) return 2;
        } else if (ch == 'o') {
            out = optarg;
        } else if (ch == OPT_HELP || ch == 'h') {
            init_usage(stdout);
            return 0;
        } else if (ch >= OPT_FIELD0 && n_ovr < 64) {
            ovr[n_ovr++] = (config_override){config_field_flags[ch - OPT_FIELD0], optarg};
        } else {
            return cli_getopt_error("init", ch, argv);
        }
    }
    if (optind < argc) {
        cli_usage_error("init", "unexpected argument '%s'", argv[optind]);
        return 2;
    }
    if (!preset || !out) {
        cli_usage_error("init", "init needs --preset NAME and -o CKPT.h5");
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
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: monolith inspect CKPT.h5\n\nConfig, total and active parameter counts, tensor shapes, "
               "experts and tokenizer of a checkpoint.\n");
        return 0;
    }
    if (argc != 2) return cli_usage_error("inspect", "inspect takes one checkpoint: monolith inspect CKPT.h5");
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
