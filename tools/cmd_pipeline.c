// cmd_pipeline.c: `monolith pipeline btx|plug --config FILE.ini` (train/pipeline_btx.h).
#include "tools/commands.h"

#include "engine/base/error.h"
#include "train/pipeline_btx.h"

#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char pipeline_usage[] =
    "usage: monolith pipeline btx --config btx.ini [--threads N]\n"
    "       monolith pipeline plug --config plug.ini [--branch DOMAIN] [--threads N]\n"
    "\n"
    "btx: Branch-Train-MiX: a dense seed (trained on every domain, or [seed] init = FILE), one\n"
    "branch per domain trained on that domain alone, a mix (branch FFNs -> experts, other\n"
    "weights averaged, fresh router), then the router (and optionally everything) trained on\n"
    "the mixture.\n"
    "plug: branch-train-plug: the same seed; each branch trains only its copy of the seed's FFN\n"
    "on its domain and writes a module (out/modules/DOMAIN.h5); the modules are plugged into\n"
    "the seed's trunk (no averaging, router rows from the domains' mean router inputs), then\n"
    "the router (and optionally everything) trains on the mixture.\n"
    "\n"
    "Each stage has its own run folder under [pipeline] out; running the same command again\n"
    "skips finished stages and resumes an interrupted one. docs/modules.md documents every key\n"
    "of the INI file.\n"
    "\n"
    "  --config FILE    the pipeline's INI file\n"
    "  --branch DOMAIN  plug: run only this domain's branch (reads only the seed and its data)\n"
    "  --threads N      threads of every stage (0: one per core; default: the file's)\n";

typedef struct {
    char stage[160];
} ui;

static void ui_stage(void *ctx, int index, int n, const char *name, const char *what) {
    ui *u = ctx;
    snprintf(u->stage, sizeof u->stage, "%s", name);
    fprintf(stderr, "[%d/%d] %s: %s\n", index + 1, n, name, what);
}

static void ui_step(void *ctx, const train_progress *p) {
    ui *u = ctx;
    int64_t every = p->total >= 10 ? p->total / 10 : 1;
    if (p->step % every == 0 || p->step == p->total || p->step == 1)
        fprintf(stderr, "  %s step %lld/%lld loss %.4f lr %.2e %.0f tok/s\n", u->stage, (long long)p->step,
                (long long)p->total, p->loss, p->lr, p->tokens_per_s);
}

static void ui_eval(void *ctx, int64_t step, int n, const char *const *names, const double *loss) {
    ui *u = ctx;
    fprintf(stderr, "  %s eval step %lld:", u->stage, (long long)step);
    for (int i = 0; i < n; i++) fprintf(stderr, " %s %.4f", names[i], loss[i]);
    fprintf(stderr, "\n");
}

static void print_summary(const btx_summary *s, const char *method) {
    if (!s->n) return;
    const btx_stage_result *last = &s->s[s->n - 1];
    printf("\n%s summary (validation loss per domain of each stage's output)\n", method);
    printf("%-20s %-24s %7s %8s", "stage", "status", "steps", "seconds");
    for (int d = 0; d < last->n_domains; d++) printf(" %10.10s", last->domains[d]);
    printf(" %10s\n", "mean");
    for (int i = 0; i < s->n; i++) {
        const btx_stage_result *r = &s->s[i];
        printf("%-20s %-24s %7lld %8.1f", r->name, r->status ? r->status : "-", (long long)r->steps, r->seconds);
        if (r->no_eval) {
            printf(" (not evaluated: no checkpoint here)\n");
            continue;
        }
        double sum = 0;
        for (int d = 0; d < r->n_domains; d++) printf(" %10.4f", r->val_loss[d]), sum += r->val_loss[d];
        printf(" %10.4f\n", r->n_domains ? sum / r->n_domains : NAN);
    }
    printf("%s: %s\n", strncmp(last->name, "branch-", 7) ? "final model" : "last stage", last->ckpt);
}

int cmd_pipeline(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "btx") && strcmp(argv[1], "plug"))) {
        int help = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
        if (!help && argc >= 2)
            return cli_usage_error("pipeline", "unknown pipeline '%s' (there are: btx, plug)", argv[1]);
        if (!help) return cli_usage_error("pipeline", "pipeline needs which one: btx or plug");
        fputs(pipeline_usage, stdout);
        return 0;
    }
    const int is_plug = !strcmp(argv[1], "plug");
    const char *name = argv[1];
    static const struct option lo[] = {{"config", required_argument, 0, 'c'}, {"threads", required_argument, 0, 't'},
                                       {"branch", required_argument, 0, 'b'}, {"help", no_argument, 0, 'h'},
                                       {0}};
    const char *config = NULL, *branch = NULL;
    long threads = -1;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc - 1, argv + 1, ":", lo, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'c': config = optarg; break;
        case 'b':
            if (!is_plug) {
                cli_usage_error("pipeline", "--branch is for pipeline plug (its branches are separate runs)");
                return 2;
            }
            branch = optarg;
            break;
        case 't':
            threads = strtol(optarg, &end, 10);
            if (!*optarg || *end || threads < 0 || threads > 1024) {
                cli_usage_error("pipeline", "--threads takes a whole number from 0 to 1024, not '%s'", optarg);
                return 2;
            }
            break;
        case 'h': fputs(pipeline_usage, stdout); return 0;
        default: return cli_getopt_error("pipeline", c, argv + 1);
        }
    }
    if (!config || optind < argc - 1) {
        cli_usage_error("pipeline", "pipeline %s needs --config FILE and nothing else", name);
        return 2;
    }
    btx_config *cfg = malloc(sizeof *cfg);
    btx_summary *sum = malloc(sizeof *sum);
    if (!cfg || !sum) {
        free(cfg), free(sum);
        mo_errorf("out of memory");
        return cmd_fail();
    }
    int rc = 1;
    if (is_plug ? plug_load(config, cfg) : btx_load(config, cfg)) {
        cmd_fail();
        goto done;
    }
    if (threads >= 0) cfg->threads = (int)threads;
    if (branch) snprintf(cfg->branch_only, sizeof cfg->branch_only, "%s", branch);
    ui u = {{0}};
    btx_hooks h = {.on_stage = ui_stage, .ctx = &u,
                   .train = {.on_step = ui_step, .on_eval = ui_eval, .ctx = &u, .stop = cli_catch_stop()}};
    int r = btx_run(cfg, &h, sum);
    if (r < 0) {
        cmd_fail();
        goto done;
    }
    if (r == 1) {
        fprintf(stderr, "stopped by a signal; run the same command again to continue\n");
        rc = 130;
        goto done;
    }
    print_summary(sum, is_plug ? "plug" : "BTX");
    rc = 0;
done:
    free(cfg), free(sum);
    return rc;
}
