// cmd_expert.c: `monolith expert list|extract|insert|add|remove`: experts as modules
// (engine/expert_module.h).
#include "tools/commands.h"

#include "engine/base/error.h"
#include "engine/base/h5io.h"
#include "engine/checkpoint.h"
#include "engine/expert_file.h"
#include "engine/expert_module.h"
#include "engine/expert_remap.h"
#include "train/freeze.h"
#include "train/options.h"
#include "train/router_init.h"
#include "train/state.h"

#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char expert_usage[] =
    "usage: monolith expert <action> ...\n"
    "\n"
    "  list FILE                                  a checkpoint: index, name, domain, steps, tokens routed,\n"
    "                                             provenance; a module: its provenance and shape key\n"
    "  extract CKPT --expert E -o MOD.h5          expert E (index, name or domain) as a monolith-expert module,\n"
    "                                             with its slices of Adam's m and v if CKPT has /optim\n"
    "  insert CKPT MOD.h5 --slot E -o OUT.h5      overwrite expert E with the module (same shape key)\n"
    "  add CKPT [MOD.h5 | --init copy:E | --init random] -o OUT.h5\n"
    "                                             one more expert in every MoE layer and the router\n"
    "                                             (n_experts + 1, top_k unchanged): the module, a copy of\n"
    "                                             expert E, or a random one (--seed S)\n"
    "  remove CKPT --expert E -o OUT.h5           drop expert E from every MoE layer and the router\n"
    "\n"
    "  --name N, --domain D    (extract, add) set the expert's name and domain\n"
    "  --router-init R         (add) where the new router row starts: below (under the trained rows'\n"
    "                          logits on --data's tokens: it takes no token until trained; the default\n"
    "                          for --init random and modules without router rows), mean (from the new\n"
    "                          domain's mean router input, --data must hold it), fit (above the trained\n"
    "                          rows' logits on the new domain's tokens, below them on the others': a\n"
    "                          regularised logistic fit, for top-k MoEs whose routing is near uniform),\n"
    "                          keep (the module's or the copied expert's row: the default for those),\n"
    "                          random (std 0.02)\n"
    "  --data NAME=FILE.h5     (add, repeat) token sets whose training windows place the row\n"
    "  --seq T                 (add) window length for --data (default: min(max_seq_len, 256))\n"
    "  --batches N             (add) batches of 8 windows sampled per domain for --data (default 8 for\n"
    "                          fit, 2 for below and mean)\n"
    "\n"
    "An expert's name, domain and provenance travel with it (/experts in a checkpoint, root\n"
    "attributes in a module), and so do its steps (\"steps_trained\" in its provenance). insert\n"
    "keeps /optim and /train, so its output can be resumed; add and remove change shapes and\n"
    "write a model checkpoint (train it with --init).\n";

// ---------------------------------------------------------------------------- helpers

// Expert by index, name or domain (first match). Returns the index, or -1 with a message.
static int resolve_expert(const mo_checkpoint *ck, const char *path, const char *s) {
    char *end;
    errno = 0;
    if (!*s) return mo_errorf("--expert is empty: give an index, name or domain (monolith expert list %s)", path);
    long e = strtol(s, &end, 10);
    int n = ck->experts.n ? ck->experts.n : 1;
    if (*s && !*end && !errno) {
        if (e < 0 || e >= n) return mo_errorf("--expert %ld is out of range: %s has experts 0..%d", e, path, n - 1);
        return (int)e;
    }
    for (int i = 0; i < ck->experts.n; i++)
        if (!strcmp(ck->experts.name[i], s)) return i;
    for (int i = 0; i < ck->experts.n; i++)
        if (!strcmp(ck->experts.domain[i], s)) return i;
    return mo_errorf("--expert %s: %s has no expert of that name or domain (monolith expert list %s shows them)", s,
                     path, path);
}

// data_hash: FNV-1a 64 over the bytes of every token set of the run's data lines, in
// order (a file that is gone counts by its path), the lines read from /train options by
// the trainer's own reader. "" for a checkpoint without a run or whose options do not read.
static void data_hash(hid_t f, const char *path, char out[MO_HASH_HEX]) {
    out[0] = 0;
    char *text = train_state_options(f);
    train_opts *o = text ? malloc(sizeof *o) : NULL;
    if (o) {
        char origin[TRAIN_PATH_MAX + 32];
        snprintf(origin, sizeof origin, "%s: /train options", path);
        train_opts_defaults(o);
        if (!train_opts_load_ini_text(o, text, origin)) {
            const char *paths[TRAIN_MAX_DOMAINS];
            for (int i = 0; i < o->n_data; i++) paths[i] = o->data[i].path;
            expert_files_hash(paths, o->n_data, out);
        }
        mo_error_clear();
    }
    free(o);
    free(text);
}

// Steps expert e was trained in the run that wrote the checkpoint: /train step when the
// run's --train mask covers expert e's first slice, else 0.
static int64_t steps_trained(hid_t f, const mo_checkpoint *ck, int e) {
    int64_t step = 0;
    char mask[256];
    if (!h5_exists(f, "train") || h5_attr_get_i64(f, "train", "step", &step) ||
        h5_attr_get_str(f, "train", "train_mask", mask, sizeof mask)) {
        mo_error_clear();
        return 0;
    }
    const mo_param_table *pt = &ck->table;
    int w1 = -1;
    for (int l = 0; l < pt->cfg.n_layers && w1 < 0; l++)
        w1 = pt->layer[l].is_moe ? pt->layer[l].w1 : pt->layer[l].ffn_w1;
    train_mask tm;
    if (w1 < 0 || freeze_parse(pt, mask, &tm)) {
        mo_error_clear();
        return 0;
    }
    size_t n = pt->t[w1].expert_numel ? pt->t[w1].expert_numel : 0;
    int has = train_mask_has(&tm, pt->t[w1].offset + (size_t)e * n);
    train_mask_free(&tm);
    return has ? step : 0;
}

// Expert e's own steps: those its provenance carries (from before this checkpoint's run:
// add, remove, compose and plug write them) plus this run's when its mask covers e.
static int64_t expert_steps(hid_t f, const mo_checkpoint *ck, int e) {
    int64_t run = f >= 0 ? steps_trained(f, ck, e) : 0;
    return run + (e < ck->experts.n ? expert_provenance_steps(ck->experts.provenance[e]) : 0);
}

// Tokens routed to each expert in the last evaluation, from the run folder's
// metrics.jsonl next to the checkpoint (the newest "eval" line at or before the
// checkpoint's step): slots summed over domains and MoE layers, divided by the layers.
// Returns 1 when found.
static int routed_tokens(const char *ckpt, int64_t step, int E, double *out) {
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s", ckpt);
    snprintf(path, sizeof path, "%s/metrics.jsonl", dirname(dir));
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char *line = NULL, *best = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        if (!strstr(line, "\"type\": \"eval\"") && !strstr(line, "\"type\":\"eval\"")) continue;
        const char *s = strstr(line, "\"step\"");
        long long st = s ? strtoll(strchr(s, ':') + 1, NULL, 10) : -1;
        if (st <= step || step < 0) {
            free(best);
            best = strdup(line);
        }
    }
    free(line);
    fclose(f);
    if (!best) return 0;
    int found = 0;
    const char *r = strstr(best, "\"routing\"");
    memset(out, 0, (size_t)E * sizeof *out);
    int layers = 0;
    // Every "[a, b, ...]" list after "routing" is one (domain, layer) row of E counts.
    for (const char *p = r ? strchr(r, '[') : NULL; p; p = strchr(p, '[')) {
        p++;
        for (int e = 0; e < E; e++) {
            char *end;
            long long v = strtoll(p, &end, 10);
            if (end == p) break;
            out[e] += (double)v;
            p = end + strspn(end, ", ");
        }
        layers++;
        found = 1;
    }
    // Rows = domains x layers; a token makes k slots per layer: report slots per layer.
    int n_moe = 0;
    const char *q = r ? strchr(r, '{') : NULL;
    if (q && (q = strchr(q + 1, '{'))) {
        const char *close = strchr(q, '}');
        for (const char *p = q; p && p < close; p = strchr(p + 1, '[')) n_moe += *p == '[';
    }
    if (found && n_moe > 0)
        for (int e = 0; e < E; e++) out[e] /= n_moe;  // per layer: a token counts k slots in each
    free(best);
    return found;
}

// ---------------------------------------------------------------------------- actions

// A module file: its provenance and shape key.
static int list_module(const char *path) {
    mo_expert x;
    if (expert_load(path, &x)) return cmd_fail();
    // Every string read from the file is shown escaped (cli_show): a name could hold terminal escapes.
    char p[4096], nm[1024], dm[1024], sh[512], dh[512], ph[512], vh[512], pv[8192];
    printf("%s: module '%s' (domain %s), %d MoE layer%s, d_model %d, d_ff %d, vocab %d%s\n",
           cli_show(path, p, sizeof p), cli_show(x.name, nm, sizeof nm),
           cli_show(x.domain[0] ? x.domain : "-", dm, sizeof dm), x.n_moe, x.n_moe == 1 ? "" : "s", x.key.d_model,
           x.key.d_ff, x.key.vocab_size, x.m ? ", with optimizer state" : "");
    printf("steps_trained %lld\nseed_hash     %s\ndata_hash     %s\nparent_hash   %s\nvocab_hash    %s\n"
           "router rows   %s\nprovenance    %s\n",
           (long long)x.steps_trained, cli_show(x.seed_hash[0] ? x.seed_hash : "-", sh, sizeof sh),
           cli_show(x.data_hash[0] ? x.data_hash : "-", dh, sizeof dh),
           cli_show(x.parent_hash[0] ? x.parent_hash : "-", ph, sizeof ph),
           cli_show(x.key.vocab_hash[0] ? x.key.vocab_hash : "-", vh, sizeof vh),
           x.has_router ? "yes" : "no (an FFN of a dense model)", cli_show(x.provenance, pv, sizeof pv));
    expert_free(&x);
    return 0;
}

static int do_list(const char *path) {
    hid_t probe = h5_open(path, NULL, 0);
    if (probe >= 0) {
        char format[64] = "";
        int is_module = !h5_attr_get_str(probe, ".", "format", format, sizeof format) &&
                        !strcmp(format, MO_EXPERT_FORMAT);
        h5_close(probe);
        if (is_module) return list_module(path);
    }
    mo_error_clear();
    mo_checkpoint ck;
    if (ckpt_load(path, &ck)) return cmd_fail();
    hid_t f = ckpt_open(path);
    int64_t step = -1;
    if (f >= 0 && h5_exists(f, "train")) h5_attr_get_i64(f, "train", "step", &step);
    const mo_config *c = &ck.table.cfg;
    int E = c->n_experts;
    double *routed = calloc((size_t)E + 1, sizeof *routed);
    int have_routed = routed && E > 0 && routed_tokens(path, step, E, routed);
    char p[4096];
    printf("%s: %d expert%s per MoE layer, top_k %d, %d of %d layers MoE\n", cli_show(path, p, sizeof p), E,
           E == 1 ? "" : "s", c->top_k, config_n_moe_layers(c), c->n_layers);
    printf("%-5s %-16s %-12s %8s %14s  %s\n", "index", "name", "domain", "steps", "tokens_routed", "provenance");
    for (int e = 0; e < ck.experts.n; e++) {
        char routed_s[32] = "-";
        if (have_routed) snprintf(routed_s, sizeof routed_s, "%.1f", routed[e]);
        char nm[1024], dm[1024], pv[4096];
        printf("%-5d %-16s %-12s %8lld %14s  %s\n", e, cli_show(ck.experts.name[e], nm, sizeof nm),
               cli_show(ck.experts.domain[e][0] ? ck.experts.domain[e] : "-", dm, sizeof dm),
               (long long)expert_steps(f, &ck, e), routed_s,
               cli_show(ck.experts.provenance[e], pv, sizeof pv));
    }
    if (have_routed) printf("(tokens_routed: the last evaluation in the run folder's metrics.jsonl, per MoE layer)\n");
    h5_close(f);
    free(routed);
    ckpt_free(&ck);
    return 0;
}

static int do_extract(const char *path, const char *which, const char *name, const char *domain, const char *out) {
    mo_checkpoint ck;
    float *m, *v;
    mo_expert x = {0};
    if (ckpt_load_optim(path, &ck, &m, &v)) return cmd_fail();
    int rc = 1;
    int e = resolve_expert(&ck, path, which);
    if (e < 0 || expert_extract(&ck, m, v, e, &x)) goto done;
    hid_t f = ckpt_open(path);
    if (f >= 0) {
        x.steps_trained = expert_steps(f, &ck, e);
        data_hash(f, path, x.data_hash);
        h5_close(f);
    }
    if (name) free(x.name), x.name = strdup(name);
    if (domain) free(x.domain), x.domain = strdup(domain);
    if (expert_save(out, &x)) goto done;
    char o[4096], nm[1024], dm[1024], p[4096];
    printf("%s: expert %d (%s, domain %s) of %s, %d MoE layer%s%s\n", cli_show(out, o, sizeof o), e,
           cli_show(x.name, nm, sizeof nm), cli_show(x.domain[0] ? x.domain : "-", dm, sizeof dm),
           cli_show(path, p, sizeof p), x.n_moe, x.n_moe == 1 ? "" : "s", x.m ? ", with optimizer state" : "");
    rc = 0;
done:
    if (rc) cmd_fail();
    expert_free(&x);
    ckpt_free(&ck);
    free(m), free(v);
    return rc;
}

static int do_insert(const char *path, const char *mod, int slot, const char *out) {
    mo_checkpoint ck;
    float *m, *v;
    mo_expert x = {0};
    if (ckpt_load_optim(path, &ck, &m, &v)) return cmd_fail();
    int rc = 1;
    if (expert_load(mod, &x) || expert_insert(&ck, m, v, slot, &x, path, mod) ||
        ckpt_save_optim(out, &ck, m, v, m ? path : NULL))
        goto done;
    char nm[1024];
    printf("%s: %s with expert %d replaced by %s (%s)%s\n", out, path, slot, mod, cli_show(x.name, nm, sizeof nm),
           m ? (x.m ? ", optimizer state from the module" : ", optimizer state of the slot reset") : "");
    rc = 0;
done:
    if (rc) cmd_fail();
    expert_free(&x);
    ckpt_free(&ck);
    free(m), free(v);
    return rc;
}

// Rewrites the provenance of dst's experts so each carries its own steps from `src`
// (map[j]: the source index of dst's expert j, -1 for a new one).
static int carry_steps(const char *src_path, const mo_checkpoint *src, mo_checkpoint *dst, const int *map, int E_new) {
    hid_t f = ckpt_open(src_path);
    int rc = 0;
    for (int j = 0; j < E_new && !rc; j++) {
        if (map[j] < 0 || map[j] >= src->experts.n) continue;
        int64_t steps = expert_steps(f, src, map[j]);
        if (steps == expert_provenance_steps(src->experts.provenance[map[j]])) continue;  // nothing new to carry
        char *prov = expert_provenance_with_steps(src->experts.provenance[map[j]], steps);
        rc = prov ? ckpt_experts_set(&dst->experts, j, NULL, NULL, prov) : mo_errorf("out of memory");
        free(prov);
    }
    if (f >= 0) h5_close(f);
    mo_error_clear();
    return rc;
}

typedef struct {
    const char *init;         // --init: copy:E or random, or NULL (a module)
    const char *router_init;  // --router-init, or NULL (the default for the source)
    const loader_spec *data;
    int n_data, seq, batches;
    uint64_t seed;
    const char *name, *domain;
} add_opts;

static int do_add(const char *path, const char *mod, const add_opts *ao, const char *out) {
    mo_checkpoint ck, nk = {0};
    mo_expert x = {0};
    if (ckpt_load(path, &ck)) return cmd_fail();
    int rc = 1, E = ck.table.cfg.n_experts, copy = -1;
    int *map = calloc((size_t)E + 1, sizeof *map);
    unsigned char *is_new = calloc((size_t)E + 1, 1);
    if (!map || !is_new) {
        mo_errorf("out of memory");
        goto done;
    }
    const char *init = ao->init;
    if (init && !strncmp(init, "copy:", 5)) {
        copy = resolve_expert(&ck, path, init + 5);
        if (copy < 0) goto done;
    } else if (init && strcmp(init, "random")) {
        mo_errorf("--init %s: use copy:E (a copy of expert E) or random", init);
        goto done;
    }
    if (mod && expert_load(mod, &x)) goto done;
    if (mod && expert_seed_check(&x, mod, &ck, &path, 1)) goto done;
    // Where the new row starts: a module's or a copy's own row by default, else below the
    // trained rows (a random row near 0 would beat them and take tokens of every domain).
    const char *ri = ao->router_init ? ao->router_init : (copy >= 0 || (mod && x.has_router)) ? "keep" : "below";
    router_init_mode mode = ROUTER_INIT_BELOW;
    int fit = strcmp(ri, "keep") && strcmp(ri, "random");
    if (fit && router_init_parse(ri, "--router-init", &mode)) {
        mo_errorf("--router-init %s: use below, mean, fit, keep or random", ri);
        goto done;
    }
    if (!strcmp(ri, "keep") && !(copy >= 0 || (mod && x.has_router))) {
        mo_errorf("--router-init keep: the new expert has no router row to keep (use below, mean, fit or random)");
        goto done;
    }
    if (fit && !ao->n_data) {
        mo_errorf("expert add: the new router row starts %s, which needs --data NAME=FILE.h5 (the old domains' "
                  "token sets, and the new domain's for mean); or --router-init random for a row drawn at random "
                  "(it takes tokens from every domain at once)",
                  mode == ROUTER_INIT_BELOW ? "below the trained rows' logits"
                  : mode == ROUTER_INIT_MEAN ? "at the new domain's mean router input"
                                             : "fitted to the domains' tokens");
        goto done;
    }
    for (int j = 0; j < E; j++) map[j] = j;
    map[E] = copy;
    if (expert_remap(&ck, NULL, NULL, map, E + 1, &nk, NULL, NULL) || carry_steps(path, &ck, &nk, map, E + 1)) goto done;
    char prov[512];
    if (mod) {
        if (expert_insert(&nk, NULL, NULL, E, &x, path, mod)) goto done;
        char *p = expert_provenance_with_steps(x.provenance, x.steps_trained);
        int bad = !p || ckpt_experts_set(&nk.experts, E, NULL, NULL, p);
        free(p);
        if (bad) goto done;
    } else if (copy >= 0) {
        snprintf(prov, sizeof prov, "{\"copy_of\": %d, \"copied_from\": \"%s\"}", copy, ck.experts.name[copy]);
        char nm[160];
        snprintf(nm, sizeof nm, "%s-copy", ck.experts.name[copy]);
        if (ckpt_experts_set(&nk.experts, E, nm, NULL, prov)) goto done;
    } else {
        expert_init_random(&nk, E, ao->seed);
        snprintf(prov, sizeof prov, "{\"init\": \"random\", \"seed\": %llu}", (unsigned long long)ao->seed);
        if (ckpt_experts_set(&nk.experts, E, NULL, "", prov)) goto done;
    }
    if ((ao->name || ao->domain) && ckpt_experts_set(&nk.experts, E, ao->name, ao->domain, NULL)) goto done;
    router_init_report rep = {0};
    if (fit) {
        is_new[E] = 1;
        router_init_opts ro = {.mode = mode, .data = ao->data, .n_data = ao->n_data, .seq = ao->seq,
                               .batches = ao->batches, .seed = ao->seed};
        if (router_init_rows(&nk, out, is_new, &ro, &rep)) goto done;
    }
    if (ckpt_save(out, &nk)) goto done;
    char nm[1024];
    printf("%s: %s plus expert %d (%s, from %s); %d experts, top_k %d; router row: %s\n", out, path, E,
           cli_show(nk.experts.name[E], nm, sizeof nm), mod ? mod : copy >= 0 ? "a copy" : "random init", E + 1, nk.table.cfg.top_k, ri);
    if (fit) {
        printf("share of sampled tokens whose top-%d holds expert %d:", nk.table.cfg.top_k, E);
        for (int d = 0; d < rep.n_domains; d++) printf(" %s %.3f", rep.names[d], rep.new_share[d]);
        printf("\n");
        if (rep.n_off) {
            printf("left out where its row does not keep off the other domains (router_bias -1): layer");
            for (int i = 0; i < rep.n_off && i < ROUTER_INIT_MAX_OFF; i++) printf(" %d", rep.off_layer[i]);
            printf("\n");
        }
    }
    rc = 0;
done:
    if (rc) cmd_fail();
    free(map), free(is_new);
    expert_free(&x);
    ckpt_free(&ck);
    ckpt_free(&nk);
    return rc;
}

static int do_remove(const char *path, const char *which, const char *out) {
    mo_checkpoint ck, nk = {0};
    if (ckpt_load(path, &ck)) return cmd_fail();
    int rc = 1, E = ck.table.cfg.n_experts;
    int *map = calloc((size_t)E + 1, sizeof *map);
    int e = resolve_expert(&ck, path, which);
    if (!map || e < 0) goto done;
    for (int j = 0, k = 0; j < E; j++)
        if (j != e) map[k++] = j;
    if (expert_remap(&ck, NULL, NULL, map, E - 1, &nk, NULL, NULL) || carry_steps(path, &ck, &nk, map, E - 1) ||
        ckpt_save(out, &nk))
        goto done;
    char nm[1024];
    printf("%s: %s without expert %d (%s); %d experts, top_k %d\n", out, path, e,
           cli_show(ck.experts.name[e], nm, sizeof nm), E - 1,
           nk.table.cfg.top_k);
    rc = 0;
done:
    if (rc) cmd_fail();
    free(map);
    ckpt_free(&ck);
    ckpt_free(&nk);
    return rc;
}

// ---------------------------------------------------------------------------- dispatch

int cmd_expert(int argc, char **argv) {
    if (argc < 2) return cli_usage_error("expert", "expert needs an action: list, extract, insert, add or remove");
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(expert_usage, stdout);
        return 0;
    }
    const char *action = argv[1];
    static const struct option lo[] = {{"expert", required_argument, 0, 'e'}, {"slot", required_argument, 0, 's'},
                                       {"init", required_argument, 0, 'i'},   {"seed", required_argument, 0, 'S'},
                                       {"name", required_argument, 0, 'n'},   {"domain", required_argument, 0, 'd'},
                                       {"output", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'},
                                       {"router-init", required_argument, 0, 'R'},
                                       {"data", required_argument, 0, 'D'},   {"seq", required_argument, 0, 'T'},
                                       {"batches", required_argument, 0, 'B'}, {0}};
    const char *which = NULL, *init = NULL, *name = NULL, *domain = NULL, *out = NULL, *router_init = NULL;
    static loader_spec data[LOADER_MAX_DOMAINS];
    int n_data = 0;
    long seq = 0, batches = 0;
    long slot = -1;
    uint64_t seed = 1;
    optind = 1;
    opterr = 0;
    int c;
    // argv[1] is the action: parse from it on so getopt sees the flags after it.
    while ((c = getopt_long(argc - 1, argv + 1, ":o:", lo, NULL)) != -1) {
        switch (c) {
        case 'e': which = optarg; break;
        case 's':
            if (cli_whole("expert", "--slot", optarg, 0, 1 << 20, "an expert index >= 0", &slot)) return 2;
            break;
        case 'i': init = optarg; break;
        case 'S':
            if (cli_seed("expert", "--seed", optarg, &seed)) return 2;
            break;
        case 'n': name = optarg; break;
        case 'R': router_init = optarg; break;
        case 'D':
            if (n_data == LOADER_MAX_DOMAINS) {
                cli_usage_error("expert", "expert %s: at most %d --data", action, LOADER_MAX_DOMAINS);
                return 2;
            }
            if (loader_parse_spec(optarg, &data[n_data])) {
                cli_usage_error("expert", "--data %s: %s", optarg, mo_error());
                return 2;
            }
            n_data++;
            break;
        case 'T':
            if (cli_whole("expert", "--seq", optarg, 1, 1 << 20, "a whole number >= 1", &seq)) return 2;
            break;
        case 'B':
            if (cli_whole("expert", "--batches", optarg, 1, 1 << 16, "a whole number >= 1", &batches)) return 2;
            break;
        case 'd': domain = optarg; break;
        case 'o': out = optarg; break;
        case 'h': fputs(expert_usage, stdout); return 0;
        default: return cli_getopt_error("expert", c, argv + 1);
        }
    }
    char **pos = argv + 1 + optind;
    int npos = argc - 1 - optind;
#define NEED(cond, msg)                                                        \
    if (!(cond)) {                                                             \
        cli_usage_error("expert", "expert %s: %s", action, msg); \
        return 2;                                                              \
    }
    if (out && cli_output_distinct(out, (const char *const *)pos, (size_t)npos)) return cmd_fail();
    if (!strcmp(action, "list")) {
        NEED(npos == 1, "give one checkpoint: monolith expert list CKPT");
        return do_list(pos[0]);
    }
    if (!strcmp(action, "extract")) {
        NEED(npos == 1 && which && out, "give CKPT --expert E -o MOD.h5");
        return do_extract(pos[0], which, name, domain, out);
    }
    if (!strcmp(action, "insert")) {
        NEED(npos == 2 && slot >= 0 && out, "give CKPT MOD.h5 --slot E -o OUT.h5");
        return do_insert(pos[0], pos[1], (int)slot, out);
    }
    if (!strcmp(action, "add")) {
        NEED((npos == 2) + !!init == 1 && npos >= 1 && out,
             "give CKPT and one of MOD.h5, --init copy:E or --init random, and -o OUT.h5");
        add_opts ao = {.init = init, .router_init = router_init, .data = data, .n_data = n_data, .seq = (int)seq,
                       .batches = (int)batches, .seed = seed, .name = name, .domain = domain};
        return do_add(pos[0], npos == 2 ? pos[1] : NULL, &ao, out);
    }
    if (!strcmp(action, "remove")) {
        NEED(npos == 1 && which && out, "give CKPT --expert E -o OUT.h5");
        return do_remove(pos[0], which, out);
    }
#undef NEED
    cli_usage_error("expert", "unknown expert action '%s'; use list, extract, insert, add or remove", action);
    return 2;
}
