// cmd_train.c: `monolith train` and `monolith eval`.
#include "tools/commands.h"

#include "engine/base/error.h"
#include "engine/comm.h"
#include "kernels/threads.h"
#include "train/evaluate.h"
#include "train/options.h"
#include "train/trainer.h"

#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ---------------------------------------------------------------------------- train

typedef struct {
    int tty;
    int64_t log_every;
    int line_open;  // a progress line without its newline is on the terminal
    int router_ce;  // route-by-domain: show the router cross-entropy
} ui;

static void fmt_time(double s, char *buf, size_t cap) {
    if (!isfinite(s) || s < 0) s = 0;
    long v = (long)(s + 0.5);
    if (v >= 3600) snprintf(buf, cap, "%ldh%02ldm", v / 3600, v / 60 % 60);
    else snprintf(buf, cap, "%ldm%02lds", v / 60, v % 60);
}

static void end_line(ui *u) {
    if (u->line_open) fputc('\n', stderr);
    u->line_open = 0;
}

static void ui_step(void *ctx, const train_progress *p) {
    ui *u = ctx;
    char eta[32], el[32];
    fmt_time(p->eta_s, eta, sizeof eta);
    fmt_time(p->elapsed_s, el, sizeof el);
    // The router term is shown only where it exists (route-by-domain).
    char rce[48] = "";
    if (u->tty) {
        if (u->router_ce) snprintf(rce, sizeof rce, "  router_ce %.3f", p->router_ce);
        fprintf(stderr, "\r\033[Kstep %lld/%lld  loss %.4f  ce %.4f%s  lr %.2e  |g| %.3f  %.0f tok/s  %s elapsed  ETA %s",
                (long long)p->step, (long long)p->total, p->loss, p->ce, rce, p->lr, p->grad_norm, p->tokens_per_s, el,
                eta);
        u->line_open = 1;
    } else if (p->step % u->log_every == 0 || p->step == p->total || p->step == 1) {
        if (u->router_ce) snprintf(rce, sizeof rce, " router_ce %.4f", p->router_ce);
        fprintf(stderr, "step %lld/%lld loss %.4f ce %.4f aux %.4f z %.3f%s lr %.3e grad_norm %.4f tok/s %.0f elapsed %s eta %s\n",
                (long long)p->step, (long long)p->total, p->loss, p->ce, p->aux, p->z, rce, p->lr, p->grad_norm,
                p->tokens_per_s, el, eta);
    }
    fflush(stderr);
}

static void ui_eval(void *ctx, int64_t step, int n, const char *const *names, const double *loss) {
    ui *u = ctx;
    end_line(u);
    fprintf(stderr, "eval step %lld:", (long long)step);
    for (int i = 0; i < n; i++) fprintf(stderr, "  %s %.4f (ppl %.2f)", names[i], loss[i], exp(loss[i]));
    fprintf(stderr, "\n");
}

// A line naming the run's folder on stderr, its control characters shown escaped (cli_show):
// --out is the user's bytes, and a newline or escape in it must not split or recolour the line.
static void say(const char *fmt, const char *s1, const char *s2) {
    size_t cap = 4 * (strlen(s1) + strlen(s2)) + 16;
    char *a = malloc(cap), *b = malloc(cap);
    if (a && b) fprintf(stderr, fmt, cli_show(s1, a, cap), cli_show(s2, b, cap));
    free(a), free(b);
}

static void ui_save(void *ctx, const char *path, int64_t step) {
    ui *u = ctx;
    end_line(u);
    fprintf(stderr, "saved step %lld to ", (long long)step);
    say("%s%s\n", path, "");
}

int cmd_train(int argc, char **argv) {
    train_opts o;
    train_opts_defaults(&o);
    int rc = train_opts_parse(&o, argc, argv);
    if (rc == 1) {
        train_opts_usage(stdout);
        return 0;
    }
    if (rc) {
        fprintf(stderr, "monolith: %s\n", mo_error());
        return 2;
    }
    if (*o.resume) {
        // A resumed run continues with the settings it started with.
        train_opts d;
        train_opts_defaults(&d);
        snprintf(d.resume, sizeof d.resume, "%s", o.resume);
        d.threads = o.threads;
        if (memcmp(&d, &o, sizeof d)) {
            fprintf(stderr, "monolith: --resume continues a run with its own settings (DIR/run.ini); only --threads "
                            "may be given with it\n");
            return 2;
        }
    }
    trainer *t = trainer_open(&o);
    if (!t) return cmd_fail();
    const int quiet = comm_rank() != 0;  // under mpirun rank 0 reports; errors come from every rank
    if (!quiet && *trainer_note(t)) say("%s%s\n", trainer_note(t), "");
    if (!quiet) say("%s%s\n", trainer_summary(t), "");

    ui u = {.tty = isatty(STDERR_FILENO), .log_every = o.log_every > 0 ? o.log_every : 10,
            .router_ce = trainer_route_by_domain(t)};
    train_hooks h = {.on_step = ui_step, .on_eval = ui_eval, .on_save = ui_save, .ctx = &u, .stop = cli_catch_stop()};
    rc = trainer_run(t, &h);
    end_line(&u);
    if (rc < 0) {
        cmd_fail();
        trainer_close(t);
        return 1;
    }
    if (quiet) {
    } else if (rc == 1) {
        say("stopped by a signal; continue with: monolith train --resume %s%s\n", trainer_out(t), "");
    } else {
        say("done: %s/latest.h5, metrics in %s/metrics.jsonl\n", trainer_out(t), trainer_out(t));
    }
    trainer_close(t);
    return rc == 1 ? 130 : 0;
}

// ---------------------------------------------------------------------------- eval

static const char eval_usage[] =
    "usage: monolith eval --checkpoint CKPT --data NAME=FILE.h5 [--data ...] [flags]\n"
    "  per-domain validation loss and perplexity, and the domain x expert routing matrix\n\n"
    "  --checkpoint CKPT    the model (a checkpoint of monolith train or init)\n"
    "  --data NAME=FILE     a token set (repeat); its val split is scored\n"
    "  --batch B            sequences per forward [8]\n"
    "  --seq T              tokens per sequence [the --seq the checkpoint was trained with;\n"
    "                       without /train: the model's max_seq_len, at most 256]\n"
    "  --batches N          batches per domain, 0 = the whole val split [16]\n"
    "  --route-by-domain    each domain's tokens go to its expert (by /experts domain or name, else by position)\n"
    "  --threads N          threads (0: one per core) [0]\n"
    "  --json               one JSON object on stdout instead of tables\n";

static int parse_int_flag(const char *flag, const char *v, long lo, long hi, long *out) {
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) {
        cli_usage_error("eval", "%s takes a whole number from %ld to %ld, not '%s'", flag, lo, hi, v);
        return -1;
    }
    *out = x;
    return 0;
}

static void print_json(const eval_opts *o, const eval_report *r) {
    printf("{\"checkpoint\": \"%s\", \"seq\": %d, \"val\": {", o->checkpoint, r->seq);
    for (int d = 0; d < r->n_domains; d++)
        printf("%s\"%s\": {\"loss\": %.6f, \"ppl\": %.4f, \"tokens\": %lld}", d ? ", " : "", r->names[d], r->loss[d],
               exp(r->loss[d]), (long long)r->tokens[d]);
    printf("}, \"moe_layers\": [");
    for (int l = 0; l < r->n_moe; l++) printf("%s%d", l ? ", " : "", r->moe_layer[l]);
    printf("], \"routing_share\": {");
    for (int d = 0; d < r->n_domains; d++) {
        printf("%s\"%s\": {", d ? ", " : "", r->names[d]);
        for (int l = 0; l <= r->n_moe && r->n_moe; l++) {
            if (l < r->n_moe) printf("%s\"%d\": [", l ? ", " : "", r->moe_layer[l]);
            else printf(", \"mean\": [");
            for (int e = 0; e < r->n_experts; e++) printf("%s%.4f", e ? ", " : "", eval_routing_share(r, d, l, e));
            printf("]");
        }
        printf("}");
    }
    printf("}");
    // Per domain and MoE layer: the share of chosen slots capacity dropped, and the chosen
    // slots per token (top_k; fewer under top-p).
    for (int pass = 0; pass < 2 && r->n_moe; pass++) {
        printf(", \"%s\": {", pass ? "experts_per_token" : "dropped");
        for (int d = 0; d < r->n_domains; d++) {
            printf("%s\"%s\": {", d ? ", " : "", r->names[d]);
            for (int l = 0; l < r->n_moe; l++) {
                const int64_t *x = r->drops + ((size_t)d * r->n_moe + l) * 2;
                double v = pass ? (r->tokens[d] ? (double)x[0] / (double)r->tokens[d] : 0)
                                : (x[0] ? (double)x[1] / (double)x[0] : 0);
                printf("%s\"%d\": %.6f", l ? ", " : "", r->moe_layer[l], v);
            }
            printf("}");
        }
        printf("}");
    }
    printf("}\n");
}

static void print_tables(const eval_report *r) {
    printf("windows of %d tokens (%s)\n", r->seq, r->seq_from);
    printf("%-16s %10s %9s %10s\n", "domain", "tokens", "loss", "ppl");
    for (int d = 0; d < r->n_domains; d++)
        printf("%-16s %10lld %9.4f %10.2f\n", r->names[d], (long long)r->tokens[d], r->loss[d], exp(r->loss[d]));
    if (!r->n_moe) return;
    printf("\n%-16s", "dropped / k used");
    for (int l = 0; l < r->n_moe; l++) printf("   layer %-6d", r->moe_layer[l]);
    printf("\n");
    for (int d = 0; d < r->n_domains; d++) {
        printf("%-16s", r->names[d]);
        for (int l = 0; l < r->n_moe; l++) {
            const int64_t *x = r->drops + ((size_t)d * r->n_moe + l) * 2;
            printf("  %5.3f / %4.2f", x[0] ? (double)x[1] / (double)x[0] : 0.0,
                   r->tokens[d] ? (double)x[0] / (double)r->tokens[d] : 0.0);
        }
        printf("\n");
    }
    for (int l = 0; l <= r->n_moe; l++) {
        if (l < r->n_moe) printf("\nrouting share, layer %d (rows: domain, columns: expert; each row sums to 1)\n", r->moe_layer[l]);
        else printf("\nrouting share averaged over the %d MoE layers\n", r->n_moe);
        printf("%-16s", "");
        for (int e = 0; e < r->n_experts; e++) printf(" %6s%d", "e", e);
        printf("\n");
        for (int d = 0; d < r->n_domains; d++) {
            printf("%-16s", r->names[d]);
            for (int e = 0; e < r->n_experts; e++) printf(" %7.3f", eval_routing_share(r, d, l, e));
            printf("\n");
        }
    }
}

int cmd_eval(int argc, char **argv) {
    static const struct option lo[] = {{"checkpoint", required_argument, 0, 'c'}, {"data", required_argument, 0, 'd'},
                                       {"batch", required_argument, 0, 'b'},      {"seq", required_argument, 0, 's'},
                                       {"batches", required_argument, 0, 'n'},    {"threads", required_argument, 0, 't'},
                                       {"route-by-domain", no_argument, 0, 'r'},  {"json", no_argument, 0, 'j'},
                                       {"help", no_argument, 0, 'h'},             {0}};
    static loader_spec specs[LOADER_MAX_DOMAINS];
    eval_opts o = {.batch = 8, .max_batches = 16, .data = specs};
    long threads = 0, v;
    int json = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
        switch (c) {
        case 'c': o.checkpoint = optarg; break;
        case 'd':
            if (o.n_data == LOADER_MAX_DOMAINS) {
                cli_usage_error("eval", "at most %d --data", LOADER_MAX_DOMAINS);
                return 2;
            }
            if (loader_parse_spec(optarg, &specs[o.n_data++])) {
                cli_usage_error("eval", "%s", mo_error());
                return 2;
            }
            break;
        case 'b':
            if (parse_int_flag("--batch", optarg, 1, 1 << 20, &v)) return 2;
            o.batch = (int)v;
            break;
        case 's':
            if (parse_int_flag("--seq", optarg, 1, 1 << 20, &v)) return 2;
            o.seq = (int)v;
            break;
        case 'n':
            if (parse_int_flag("--batches", optarg, 0, 1L << 40, &v)) return 2;
            o.max_batches = v;
            break;
        case 't':
            if (parse_int_flag("--threads", optarg, 0, 1024, &threads)) return 2;
            break;
        case 'r': o.route_by_domain = 1; break;
        case 'j': json = 1; break;
        case 'h': printf("%s", eval_usage); return 0;
        default: return cli_getopt_error("eval", c, argv);
        }
    }
    if (optind < argc) {
        cli_usage_error("eval", "unexpected argument '%s'", argv[optind]);
        return 2;
    }
    if (!o.checkpoint) {
        cli_usage_error("eval", "give --checkpoint CKPT");
        return 2;
    }
    if (cli_threads((int)threads)) return 1;
    eval_report r;
    if (eval_checkpoint(&o, &r)) return cmd_fail();
    if (json) print_json(&o, &r);
    else print_tables(&r);
    eval_report_free(&r);
    return 0;
}
