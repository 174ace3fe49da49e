// pipeline_btx.c: the Branch-Train-MiX pipeline over the trainer library.
#include "train/pipeline_btx.h"

#include "engine/base/clock.h"
#include "engine/base/error.h"
#include "engine/base/file.h"
#include "engine/base/h5io.h"
#include "engine/checkpoint.h"
#include "engine/compose.h"
#include "engine/expert_file.h"
#include "engine/expert_module.h"
#include "engine/expert_remap.h"
#include "train/evaluate.h"
#include "train/ini_value.h"
#include "train/router_init.h"
#include "train/rundir.h"
#include "train/state.h"

#include <cjson/cJSON.h>
#include <math.h>

#include <errno.h>
#include <stdarg.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// snprintf that fails (with a message) instead of cutting a path short.
static int fmt(char *buf, size_t cap, const char *f, ...) __attribute__((format(printf, 3, 4)));
static int fmt(char *buf, size_t cap, const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(buf, cap, f, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap) return mo_errorf("path too long: %.80s...", buf);
    return 0;
}

static const char *const section_names[BTX_N_SECTIONS] = {"seed", "branch", "mix", "router", "all"};

// ---------------------------------------------------------------------------- the INI file

typedef struct {
    btx_config *c;
    ini_lines lines;
    int failed;
} ini_ctx;

static char *line_reader(char *str, int num, void *stream) {
    ini_ctx *x = stream;
    return ini_line_read(str, num, &x->lines);  // a long line or NUL byte stops it (ini_lines_check)
}

static int on_ini(void *user, const char *section, const char *name, const char *value) {
    ini_ctx *x = user;
    btx_config *c = x->c;
    char origin[320];
    const char *base = strrchr(c->path, '/') ? strrchr(c->path, '/') + 1 : c->path;
    fmt(origin, sizeof origin, "%s:%d", base, x->lines.line);
    if (x->failed) return 0;
    if (!strcmp(section, "pipeline")) {
        if (!strcmp(name, "out")) {
            snprintf(c->out, sizeof c->out, "%s", value);
            return 1;
        }
        x->failed = 1;
        mo_errorf("%s: unknown key '%s' in [pipeline] (it has: out)", origin, name);
        return 0;
    }
    int sec = -1;
    const int plug = c->method == BTX_METHOD_PLUG;
    if (strcmp(section, "train")) {
        for (int s = 0; s < BTX_N_SECTIONS; s++)
            if (!strcmp(section, s == BTX_MIX && plug ? "plug" : section_names[s])) sec = s;
        if (sec < 0) {
            x->failed = 1;
            mo_errorf("%s: unknown section [%s]; the sections are pipeline, train, seed, branch, %s, router, all",
                      origin, section, plug ? "plug" : "mix");
            return 0;
        }
    }
    if (sec == BTX_MIX) {
        char *end;
        errno = 0;
        if (!strcmp(name, "top_k") || !strcmp(name, "top-k")) {
            long v = strtol(value, &end, 10);
            if (!*value || *end || v < 1 || v > 1 << 16) {
                x->failed = 1;
                mo_errorf("%s: top_k takes a whole number >= 1, not '%s'", origin, value);
                return 0;
            }
            c->top_k = (int)v;
            c->top_k_set = 1;
        } else if (!strcmp(name, "seed")) {
            unsigned long long v = strtoull(value, &end, 10);
            if (!*value || *end || *value == '-') {
                x->failed = 1;
                mo_errorf("%s: seed takes a whole number >= 0, not '%s'", origin, value);
                return 0;
            }
            c->mix_seed = v;
        } else if (plug && (!strcmp(name, "router_init") || !strcmp(name, "router-init"))) {
            if (strcmp(value, "mean") && strcmp(value, "fresh")) {
                x->failed = 1;
                mo_errorf("%s: router_init takes mean (the domains' mean router inputs) or fresh (normal std 0.02), "
                          "not '%s'",
                          origin, value);
                return 0;
            }
            c->router_init = !strcmp(value, "mean");
            c->router_init_set = 1;
        } else if (plug && (!strcmp(name, "expert_of") || !strcmp(name, "expert-of"))) {
            if (strlen(value) >= sizeof c->expert_of) {
                x->failed = 1;
                mo_errorf("%s: expert_of is too long", origin);
                return 0;
            }
            snprintf(c->expert_of, sizeof c->expert_of, "%s", value);
            snprintf(c->expert_of_origin, sizeof c->expert_of_origin, "%s", origin);
        } else if (plug && !strcmp(name, "into")) {
            if (strcmp(value, "replace") && strcmp(value, "add")) {
                x->failed = 1;
                mo_errorf("%s: into takes replace (module d over the seed's expert E_d) or add (beside the seed's "
                          "experts), not '%s'",
                          origin, value);
                return 0;
            }
            c->plug_add = !strcmp(value, "add");
            c->plug_into_set = 1;
        } else {
            x->failed = 1;
            mo_errorf("%s: unknown key '%s' in [%s] (it has: top_k, seed%s)", origin, name, plug ? "plug" : "mix",
                      plug ? ", router_init, expert_of, into" : "");
            return 0;
        }
        return 1;
    }
    if (c->n == BTX_MAX_ENTRIES) {
        x->failed = 1;
        mo_errorf("%s: more than %d entries", origin, BTX_MAX_ENTRIES);
        return 0;
    }
    // Checked now against a scratch set of options, so a typo is reported before any work.
    static train_opts scratch;
    train_opts_defaults(&scratch);
    char key[64];
    snprintf(key, sizeof key, "%s", name);
    if (strcmp(key, "out") == 0 || strcmp(key, "resume") == 0 || strcmp(key, "config") == 0) {
        x->failed = 1;
        mo_errorf("%s: '%s' is set by the pipeline for each stage; use [pipeline] out = DIR for the folder", origin,
                  key);
        return 0;
    }
    if (sec == BTX_SEED && !strcmp(key, "continue")) {
        int yes = !strcmp(value, "true") || !strcmp(value, "yes") || !strcmp(value, "1");
        if (!yes && strcmp(value, "false") && strcmp(value, "no") && strcmp(value, "0")) {
            x->failed = 1;
            mo_errorf("%s: continue takes true or false, not '%s'", origin, value);
            return 0;
        }
        c->continue_seed = yes;
        return 1;
    }
    if (!(sec == BTX_SEED && !strcmp(key, "init")) && train_opts_set(&scratch, key, value, origin)) {
        x->failed = 1;
        return 0;
    }
    btx_entry *e = &c->e[c->n++];
    e->section = sec;
    snprintf(e->key, sizeof e->key, "%s", key);
    snprintf(e->value, sizeof e->value, "%s", value);
    snprintf(e->origin, sizeof e->origin, "%s", origin);
    return 1;
}

static int load(const char *path, btx_method method, btx_config *c) {
    memset(c, 0, sizeof *c);
    c->method = method;
    c->router_init = 1;
    snprintf(c->path, sizeof c->path, "%s", path);
    snprintf(c->out, sizeof c->out, "%s", method == BTX_METHOD_PLUG ? "plug" : "btx");
    c->top_k = 2;
    c->mix_seed = 1;
    c->threads = -1;
    ini_ctx x = {.c = c};
    x.lines.f = file_open_regular(path);
    if (!x.lines.f) return mo_errorf("--config %s", mo_error());
    int rc = ini_parse_stream(line_reader, &x, on_ini, &x);
    if (!x.failed && ini_lines_check(&x.lines, path)) x.failed = 1;
    fclose(x.lines.f);
    if (x.failed) return -1;
    if (rc > 0) return mo_errorf("%s:%d: not INI syntax (expected 'key = value' or '[section]')", path, rc);
    if (rc < 0) return mo_errorf("%s: cannot read", path);
    int n_data = 0;
    for (int i = 0; i < c->n; i++) n_data += c->e[i].section == -1 && !strcmp(c->e[i].key, "data");
    if (n_data < 2)
        return mo_errorf("%s: [train] needs at least two data = NAME=FILE.h5 lines, one per domain (a branch per "
                         "domain)",
                         path);
    return 0;
}

int btx_load(const char *path, btx_config *c) { return load(path, BTX_METHOD_BTX, c); }
int plug_load(const char *path, btx_config *c) { return load(path, BTX_METHOD_PLUG, c); }

// ---------------------------------------------------------------------------- stages

// The options of a training stage: defaults, then [train], then [section]. A data line in
// [section] replaces [train]'s list.
static int stage_opts(const btx_config *c, int sec, train_opts *o) {
    train_opts_defaults(o);
    int sec_has_data = 0;
    for (int i = 0; i < c->n; i++) sec_has_data |= c->e[i].section == sec && !strcmp(c->e[i].key, "data");
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < c->n; i++) {
            const btx_entry *e = &c->e[i];
            if (e->section != (pass ? sec : -1)) continue;
            if (!pass && sec_has_data && !strcmp(e->key, "data")) continue;
            if (pass && sec == BTX_SEED && !strcmp(e->key, "init")) continue;
            if (train_opts_set(o, e->key, e->value, e->origin)) return -1;
        }
    }
    if (c->threads >= 0) o->threads = c->threads;
    return 0;
}

static const char *seed_init(const btx_config *c) {
    for (int i = 0; i < c->n; i++)
        if (c->e[i].section == BTX_SEED && !strcmp(c->e[i].key, "init")) return c->e[i].value;
    return NULL;
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

// Trains (or resumes, or skips) one stage in `dir`; its final checkpoint goes to `final`.
static int run_stage(train_opts *o, const char *dir, const btx_hooks *h, int index, int n_stages,
                     const char *name, btx_stage_result *r) {
    snprintf(o->out, sizeof o->out, "%s", dir);
    rundir_ckpt_path(dir, o->steps, r->ckpt, sizeof r->ckpt);
    snprintf(r->name, sizeof r->name, "%s", name);
    r->steps = o->steps;
    char what[TRAIN_PATH_MAX + 128];
    if (file_exists(r->ckpt)) {
        r->status = "skipped (output exists)";
        snprintf(what, sizeof what, "skip: %s exists", r->ckpt);
        if (h && h->on_stage) h->on_stage(h->ctx, index, n_stages, name, what);
        return 0;
    }
    int64_t *steps = NULL;
    int n = 0;
    char ini[TRAIN_PATH_MAX + 16];
    snprintf(ini, sizeof ini, "%s/run.ini", dir);
    if (file_exists(dir) && rundir_steps(dir, &steps, &n)) return -1;
    free(steps);
    train_opts run = *o;
    if (n > 0 && file_exists(ini)) {
        train_opts_defaults(&run);
        snprintf(run.resume, sizeof run.resume, "%s", dir);
        run.threads = o->threads;
        r->status = "resumed";
        snprintf(what, sizeof what, "resume %s", dir);
    } else {
        // A folder with a run.ini but no checkpoint was stopped before its first save:
        // start it again.
        if (file_exists(ini)) unlink(ini);
        char metrics[TRAIN_PATH_MAX + 32];
        snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", dir);
        unlink(metrics);
        r->status = "trained";
        snprintf(what, sizeof what, "train %lld steps (--train %s) in %s", (long long)o->steps, o->train, dir);
    }
    if (h && h->on_stage) h->on_stage(h->ctx, index, n_stages, name, what);
    double t0 = now_seconds();
    trainer *t = trainer_open(&run);
    if (!t) return mo_errorf("stage %s: %s", name, mo_error());
    int rc = trainer_run(t, h ? &h->train : NULL);
    trainer_close(t);
    r->seconds = now_seconds() - t0;
    if (rc < 0) return mo_errorf("stage %s: %s", name, mo_error());
    return rc;  // 1: stopped
}

// Names a stage that writes one file and reports it skipped when the file exists (1).
static int made_already(const char *path, const char *name, const btx_hooks *h, int index, int n_stages,
                        btx_stage_result *r) {
    snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(r->ckpt, sizeof r->ckpt, "%s", path);
    if (!file_exists(path)) return 0;
    char what[TRAIN_PATH_MAX + 128];
    r->status = "skipped (output exists)";
    snprintf(what, sizeof what, "skip: %s exists", path);
    if (h && h->on_stage) h->on_stage(h->ctx, index, n_stages, name, what);
    return 1;
}

// Mixes the branches into dir/mix.h5.
static int mix(const btx_config *c, const train_opts *common, btx_stage_result *branches, int nb, const char *path,
               const btx_hooks *h, int index, int n_stages, btx_stage_result *r) {
    if (made_already(path, "mix", h, index, n_stages, r)) return 0;
    char what[TRAIN_PATH_MAX + 128];
    snprintf(what, sizeof what, "%d branch FFNs -> experts, other weights averaged, fresh router, top_k %d", nb,
             c->top_k);
    if (h && h->on_stage) h->on_stage(h->ctx, index, n_stages, "mix", what);
    double t0 = now_seconds();
    mo_checkpoint *bk = calloc((size_t)nb, sizeof *bk), out = {0};
    mo_expert *mods = calloc((size_t)nb, sizeof *mods);
    const char **names = calloc((size_t)nb, sizeof *names);
    int rc = -1;
    if (!bk || !mods || !names) {
        mo_errorf("out of memory");
        goto done;
    }
    for (int i = 0; i < nb; i++) {
        names[i] = branches[i].ckpt;
        if (ckpt_load(branches[i].ckpt, &bk[i])) goto done;
        if (config_n_moe_layers(&bk[i].table.cfg)) {
            mo_errorf("stage mix: %s has MoE layers; BTX branches from a dense seed: set moe_layers = 0,...,0 in [seed] "
                      "(or [seed] init = a dense checkpoint)",
                      branches[i].ckpt);
            goto done;
        }
        if (expert_extract(&bk[i], NULL, NULL, 0, &mods[i])) goto done;
        const char *dom = common->data[i].name;
        char prov[TRAIN_PATH_MAX + 256];
        snprintf(prov, sizeof prov, "{\"btx_branch\": \"%s\", \"steps\": %lld, \"domain\": \"%s\"}", branches[i].ckpt,
                 (long long)branches[i].steps, dom);
        free(mods[i].name), free(mods[i].domain), free(mods[i].provenance);
        mods[i].name = strdup(dom), mods[i].domain = strdup(dom), mods[i].provenance = strdup(prov);
        mods[i].steps_trained = branches[i].steps;
        if (!mods[i].name || !mods[i].domain || !mods[i].provenance) {
            mo_errorf("out of memory");
            goto done;
        }
    }
    compose_opts co = {.fresh_router = 1, .top_k = c->top_k, .seed = c->mix_seed};
    if (compose_checkpoint(bk, names, nb, mods, names, nb, &co, &out) || ckpt_save(path, &out)) {
        mo_errorf("stage mix: %s", mo_error());
        goto done;
    }
    r->status = "mixed";
    rc = 0;
done:
    r->seconds = now_seconds() - t0;
    for (int i = 0; bk && i < nb; i++) ckpt_free(&bk[i]);
    for (int i = 0; mods && i < nb; i++) expert_free(&mods[i]);
    free(bk), free(mods), free(names);
    ckpt_free(&out);
    return rc;
}

// ---------------------------------------------------------------------------- plug

// Writes the module of a plug branch: the FFN of the branch's final checkpoint (of a MoE
// seed: its expert `expert`, else expert < 0), named after its domain, with the seed's
// trunk hash, the hash of the domain's token set and the steps. Refuses a branch whose
// trunk moved (it trained more than its FFN).
static int branch_module(const char *ckpt, const char *seed, const loader_spec *data, int64_t steps, int expert,
                         const char *mod_path) {
    mo_checkpoint bk = {0}, sk = {0};
    mo_expert x = {0};
    char seed_trunk[MO_HASH_HEX];
    int rc = -1;
    if (ckpt_load(seed, &sk)) return -1;
    expert_trunk_hash(&sk, seed_trunk);
    ckpt_free(&sk);
    if (ckpt_load(ckpt, &bk) || expert_extract(&bk, NULL, NULL, expert < 0 ? 0 : expert, &x)) goto done;
    if (strcmp(x.seed_hash, seed_trunk)) {
        mo_errorf("%s: its trunk (embeddings, attention, norms) is no longer the seed's %s (seed_hash %s vs %s): a plug "
                  "branch trains only its FFN; set [branch] train = dense (or use pipeline btx)",
                  ckpt, seed, x.seed_hash, seed_trunk);
        goto done;
    }
    const char *paths[1] = {data->path};
    expert_files_hash(paths, 1, x.data_hash);
    x.steps_trained = steps;
    cJSON *j = cJSON_CreateObject();
    char *prov = NULL;
    if (j && cJSON_AddStringToObject(j, "plug_branch", data->name) && cJSON_AddStringToObject(j, "seed", seed) &&
        cJSON_AddStringToObject(j, "seed_hash", x.seed_hash) && cJSON_AddStringToObject(j, "data", data->path) &&
        cJSON_AddStringToObject(j, "data_hash", x.data_hash) &&
        cJSON_AddNumberToObject(j, "steps_trained", (double)steps) &&
        (expert < 0 || cJSON_AddNumberToObject(j, "seed_expert", expert)))
        prov = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    free(x.name), free(x.domain), free(x.provenance);
    x.name = strdup(data->name), x.domain = strdup(data->name), x.provenance = prov;
    if (!x.name || !x.domain || !x.provenance) {
        mo_errorf("out of memory");
        goto done;
    }
    rc = expert_save(mod_path, &x);
done:
    expert_free(&x);
    ckpt_free(&bk);
    return rc;
}

// What the plug stages need to know of the seed: whether it is a MoE, and then which of
// its experts each domain's branch trains.
typedef struct {
    int moe;  // the seed has MoE layers
    int n_experts, top_k;
    int expert_of[TRAIN_MAX_DOMAINS];  // the seed expert domain d's branch trains (moe only)
} plug_seed;

// Reads the seed's config and checks [plug] expert_of / into / top_k / router_init against
// it (each refusal names the field). expert_of is "NAME=E,NAME=E,..." with every domain of
// [train]; without it domain d trains expert d.
static int plug_seed_load(const btx_config *c, const train_opts *common, const char *seed, plug_seed *ps) {
    memset(ps, 0, sizeof *ps);
    hid_t f = ckpt_open(seed);
    if (f < 0) return mo_errorf("stage seed: %s", mo_error());
    mo_checkpoint ck = {0};
    int rc = ckpt_load_meta_from(f, &ck);
    h5_close(f);
    if (rc) return mo_errorf("stage seed: %s", mo_error());
    ps->moe = config_n_moe_layers(&ck.table.cfg) > 0;
    ps->n_experts = ck.table.cfg.n_experts, ps->top_k = ck.table.cfg.top_k;
    ckpt_free(&ck);
    const char *at = *c->expert_of_origin ? c->expert_of_origin : c->path;
    if (!ps->moe) {
        if (*c->expert_of || c->plug_into_set)
            return mo_errorf("%s: [plug] %s: the seed %s has no MoE layers, so its branches start from its FFN; remove "
                             "expert_of and into (or give [seed] init = a MoE checkpoint)",
                             at, *c->expert_of ? "expert_of" : "into", seed);
        return 0;
    }
    if (c->top_k_set && c->top_k != ps->top_k)
        return mo_errorf("%s: [plug] top_k = %d: a MoE seed keeps its own top_k (%d in %s); remove top_k", c->path,
                         c->top_k, ps->top_k, seed);
    if (c->router_init_set)
        return mo_errorf("%s: [plug] router_init: with a MoE seed the plugged rows are the branches' (into = replace) "
                         "or start below the trained rows (into = add); remove router_init",
                         c->path);
    const int nd = common->n_data, E = ps->n_experts;
    for (int d = 0; d < nd; d++) ps->expert_of[d] = *c->expert_of ? -1 : d;
    if (!*c->expert_of && nd > E)
        return mo_errorf("%s: [plug] expert_of: %d domains and the seed %s has %d experts; give expert_of = "
                         "NAME=E,... (which expert each domain's branch starts from)",
                         at, nd, seed, E);
    char buf[sizeof c->expert_of], *save = NULL;
    snprintf(buf, sizeof buf, "%s", c->expert_of);
    for (char *item = strtok_r(buf, ",", &save); *c->expert_of && item; item = strtok_r(NULL, ",", &save)) {
        while (*item == ' ' || *item == '\t') item++;
        char *eq = strchr(item, '='), *end;
        if (!eq) return mo_errorf("%s: [plug] expert_of: '%s' is not NAME=E", at, item);
        *eq = 0;
        for (char *t = eq; t > item && (t[-1] == ' ' || t[-1] == '\t');) *--t = 0;
        int d = -1;
        for (int i = 0; i < nd; i++)
            if (!strcmp(common->data[i].name, item)) d = i;
        if (d < 0) return mo_errorf("%s: [plug] expert_of: '%s' is no domain of [train]'s data lines", at, item);
        errno = 0;
        long e = strtol(eq + 1, &end, 10);
        while (*end == ' ' || *end == '\t') end++;
        if (errno || end == eq + 1 || *end || e < 0 || e >= E)
            return mo_errorf("%s: [plug] expert_of: %s=%s is not an expert of the seed %s (0 to %d)", at, item, eq + 1,
                             seed, E - 1);
        if (ps->expert_of[d] >= 0) return mo_errorf("%s: [plug] expert_of: %s is given twice", at, item);
        ps->expert_of[d] = (int)e;
    }
    for (int d = 0; d < nd; d++) {
        if (ps->expert_of[d] < 0)
            return mo_errorf("%s: [plug] expert_of: no expert for domain %s (give every domain of [train])", at,
                             common->data[d].name);
        for (int j = 0; j < d && !c->plug_add; j++)
            if (ps->expert_of[j] == ps->expert_of[d])
                return mo_errorf("%s: [plug] expert_of: %s and %s both replace expert %d (into = replace needs one "
                                 "expert per domain; into = add allows it)",
                                 at, common->data[j].name, common->data[d].name, ps->expert_of[d]);
    }
    return 0;
}

// Plugs the modules into a MoE seed (plug_seed.moe): the seed's trunk, router and other
// experts; module d over expert expert_of[d] (into = replace, with the router rows its branch
// trained) or as expert E + d (into = add; its router rows below the trained rows' logits on
// every domain's sampled tokens, so the plugged model computes the seed's function there
// until the router stage lifts them). Fills `out`.
static int plug_moe(const btx_config *c, const train_opts *common, const plug_seed *ps, mo_checkpoint *sk,
                    const char *seed, mo_expert *x, const char *const *names, int nd, const char *path,
                    mo_checkpoint *out) {
    const int E = ps->n_experts, E_new = c->plug_add ? E + nd : E;
    int *map = calloc((size_t)E_new, sizeof *map);
    unsigned char *is_new = calloc((size_t)E_new, 1);
    int rc = -1;
    if (!map || !is_new) {
        mo_errorf("out of memory");
        goto done;
    }
    for (int j = 0; j < E_new; j++) map[j] = j < E ? j : -1;
    if (expert_remap(sk, NULL, NULL, map, E_new, out, NULL, NULL)) goto done;
    for (int d = 0; d < nd; d++) {
        const int slot = c->plug_add ? E + d : ps->expert_of[d];
        if (expert_seed_check(&x[d], names[d], sk, &seed, 1) || expert_insert(out, NULL, NULL, slot, &x[d], path, names[d]))
            goto done;
        is_new[slot] = (unsigned char)c->plug_add;
    }
    if (c->plug_add) {
        router_init_opts ro = {.mode = ROUTER_INIT_BELOW, .data = common->data, .n_data = common->n_data,
                               .batch = common->batch, .seq = common->seq, .batches = 2, .seed = c->mix_seed,
                               .every_domain_old = 1};
        router_init_report rep;
        if (router_init_rows(out, path, is_new, &ro, &rep)) goto done;
    }
    rc = 0;
done:
    free(map), free(is_new);
    return rc;
}

// Plugs the modules into the seed: the seed's trunk, module d as expert d, router rows
// from the domains' mean router inputs (or fresh). Writes `path`.
static int plug(const btx_config *c, const train_opts *common, const plug_seed *ps, const char *seed,
                char (*mods)[TRAIN_PATH_MAX + 64], int nd, const char *path, const btx_hooks *h, int index,
                int n_stages, btx_stage_result *r) {
    if (made_already(path, "plug", h, index, n_stages, r)) return 0;
    char what[TRAIN_PATH_MAX + 128];
    if (ps->moe)
        snprintf(what, sizeof what, "%d modules %s the seed's %d experts, top_k %d", nd,
                 c->plug_add ? "beside" : "over", ps->n_experts, ps->top_k);
    else
        snprintf(what, sizeof what, "%d modules into the seed's trunk, router rows %s, top_k %d", nd,
                 c->router_init ? "from the domains' mean router inputs" : "fresh", c->top_k);
    if (h && h->on_stage) h->on_stage(h->ctx, index, n_stages, "plug", what);
    double t0 = now_seconds();
    mo_checkpoint sk = {0}, out = {0};
    mo_expert *x = calloc((size_t)nd, sizeof *x);
    const char **names = calloc((size_t)nd, sizeof *names);
    unsigned char *is_new = calloc((size_t)nd, 1);
    int rc = -1;
    if (!x || !names || !is_new) {
        mo_errorf("out of memory");
        goto done;
    }
    if (ckpt_load(seed, &sk)) goto done;
    for (int i = 0; i < nd; i++) {
        names[i] = mods[i];
        is_new[i] = 1;
        if (expert_load(mods[i], &x[i])) goto done;
    }
    if (ps->moe) {
        if (plug_moe(c, common, ps, &sk, seed, x, names, nd, path, &out) || ckpt_save(path, &out)) goto done;
        r->status = "plugged";
        rc = 0;
        goto done;
    }
    compose_opts co = {.fresh_router = 1, .top_k = c->top_k, .seed = c->mix_seed};
    if (compose_checkpoint(&sk, &seed, 1, x, names, nd, &co, &out)) goto done;
    if (c->router_init) {
        router_init_opts ro = {.mode = ROUTER_INIT_MEAN, .data = common->data, .n_data = common->n_data,
                               .batch = common->batch, .seq = common->seq, .batches = 2, .seed = c->mix_seed};
        router_init_report rep;
        if (router_init_rows(&out, path, is_new, &ro, &rep)) goto done;
    }
    if (ckpt_save(path, &out)) goto done;
    r->status = "plugged";
    rc = 0;
done:
    if (rc) mo_errorf("stage plug: %s", mo_error());
    r->seconds = now_seconds() - t0;
    for (int i = 0; x && i < nd; i++) expert_free(&x[i]);
    free(x), free(names), free(is_new);
    ckpt_free(&sk), ckpt_free(&out);
    return rc;
}

// Validation loss of each stage's output on every domain.
static int evaluate_all(const train_opts *common, btx_summary *s) {
    for (int i = 0; i < s->n; i++) {
        btx_stage_result *r = &s->s[i];
        if (r->no_eval) continue;
        eval_opts eo = {.checkpoint = r->ckpt, .data = common->data, .n_data = common->n_data, .batch = common->batch,
                        .seq = common->seq, .max_batches = common->eval_batches};
        eval_report rep;
        if (eval_checkpoint(&eo, &rep)) return mo_errorf("summary: evaluating %s: %s", r->ckpt, mo_error());
        r->n_domains = rep.n_domains;
        for (int d = 0; d < rep.n_domains && d < TRAIN_MAX_DOMAINS; d++) {
            snprintf(r->domains[d], sizeof r->domains[d], "%s", rep.names[d]);
            r->val_loss[d] = rep.loss[d];
        }
        eval_report_free(&rep);
    }
    return 0;
}

static int section_sets(const btx_config *c, int sec, const char *key) {
    for (int i = 0; i < c->n; i++)
        if (c->e[i].section == sec && !strcmp(c->e[i].key, key)) return 1;
    return 0;
}

// Plug's [all] stage starts from a trunk and experts that are trained: restarting at the
// peak rate (warmup, fresh Adam) undoes part of that (docs/experiments.md: 0.18 nats worse
// than the continued rate after 20 steps), so unless [all] says otherwise it continues
// where the seed's schedule ended: `floor` (lr * lr_floor of [train], or under [seed]
// continue the seed run's own floor), constant, no warmup.
static void all_continues(const btx_config *c, double floor, train_opts *o) {
    if (!section_sets(c, BTX_ALL, "lr")) o->lr = floor;
    if (!section_sets(c, BTX_ALL, "schedule")) snprintf(o->schedule, sizeof o->schedule, "constant");
    if (!section_sets(c, BTX_ALL, "warmup")) o->warmup = 0;
}

// [seed] continue: the seed run's learning rate at the seed's step (the rate its next
// step would have had) and the floor its cosine ends at, from the seed's /train state.
typedef struct {
    double rate, floor;
    int64_t step, total;
} seed_schedule;

static int seed_schedule_load(const char *seed, seed_schedule *out) {
    mo_checkpoint ck = {0};
    float *m = NULL, *v = NULL;
    train_state st;
    int rc = train_state_load(seed, &ck, &m, &v, &st);
    ckpt_free(&ck);
    free(m), free(v);
    if (rc)
        return mo_errorf("[seed] continue = true needs the seed's learning-rate schedule, from a checkpoint written by "
                         "monolith train: %s",
                         mo_error());
    out->rate = lr_schedule_at(&st.sched, st.step);
    out->floor = st.sched.kind == LR_SCHEDULE_COSINE ? st.sched.lr * st.sched.floor_frac : st.sched.lr;
    out->step = st.step, out->total = st.sched.total;
    return 0;
}

// A branch or router stage under [seed] continue: from the seed's rate down to its floor
// by a half cosine over the stage's own steps (lr_schedule.h with lr = rate, lr_floor =
// floor / rate, no warmup), each field unless the section sets it.
static void stage_continues(const btx_config *c, int sec, const seed_schedule *ss, train_opts *o) {
    if (!section_sets(c, sec, "lr")) o->lr = ss->rate;
    if (!section_sets(c, sec, "lr-floor") && !section_sets(c, sec, "lr_floor"))
        o->lr_floor = ss->floor < o->lr ? ss->floor / o->lr : 1;
    if (!section_sets(c, sec, "schedule")) snprintf(o->schedule, sizeof o->schedule, "cosine");
    if (!section_sets(c, sec, "warmup")) o->warmup = 0;
}

static int make_dir(const char *p) {
    if (mkdir(p, 0777) && errno != EEXIST) return mo_errorf("%s: cannot create (%s)", p, strerror(errno));
    return 0;
}

int btx_run(const btx_config *c, const btx_hooks *h, btx_summary *sum) {
    memset(sum, 0, sizeof *sum);
    train_opts common, o;
    if (stage_opts(c, -2, &common)) return -1;  // [train] alone
    int nd = common.n_data;
    for (int i = 0; i < nd; i++)
        if (!*common.data[i].name)
            return mo_errorf("%s: data = %s: give each domain a name (data = NAME=FILE.h5); branches and experts are "
                             "named after it",
                             c->path, common.data[i].path);
    int64_t all_steps = 0;
    if (stage_opts(c, BTX_ALL, &o)) return -1;
    all_steps = section_sets(c, BTX_ALL, "steps") ? o.steps : 0;
    // [router] steps = 0: no router stage ([all], if any, starts from the mix or plug).
    if (stage_opts(c, BTX_ROUTER, &o)) return -1;
    const int no_router = section_sets(c, BTX_ROUTER, "steps") && o.steps == 0;
    const int plugm = c->method == BTX_METHOD_PLUG;
    int only = -1;
    if (c->branch_only[0]) {
        for (int i = 0; i < nd; i++)
            if (!strcmp(common.data[i].name, c->branch_only)) only = i;
        if (only < 0 || !plugm)
            return mo_errorf("--branch %s: %s", c->branch_only,
                             plugm ? "no data = line of [train] has that domain name" : "only pipeline plug has it");
    }
    const int n_stages = only >= 0 ? 2 : 1 + nd + 1 + !no_router + (all_steps > 0);
    if (make_dir(c->out)) return -1;
    char dir[TRAIN_PATH_MAX + 64];
    int k = 0, rc;

    // seed
    btx_stage_result *seed = &sum->s[k];
    const char *init = seed_init(c);
    if (init) {
        snprintf(seed->name, sizeof seed->name, "seed");
        snprintf(seed->ckpt, sizeof seed->ckpt, "%s", init);
        seed->status = "taken";
        if (!file_exists(init)) return mo_errorf("stage seed: [seed] init = %s: no such file", init);
        char what[TRAIN_PATH_MAX + 32];
        snprintf(what, sizeof what, "take %s", init);
        if (h && h->on_stage) h->on_stage(h->ctx, k, n_stages, "seed", what);
    } else {
        if (stage_opts(c, BTX_SEED, &o)) return -1;
        snprintf(dir, sizeof dir, "%s/seed", c->out);
        if (only >= 0) {
            // A lone branch (another machine) needs the seed made already.
            rundir_ckpt_path(dir, o.steps, seed->ckpt, sizeof seed->ckpt);
            if (!file_exists(seed->ckpt))
                return mo_errorf("--branch %s needs the seed: %s does not exist; give [seed] init = SEED.h5 (the seed "
                                 "file copied to this machine) or run the whole pipeline first",
                                 c->branch_only, seed->ckpt);
        }
        if ((rc = run_stage(&o, dir, h, k, n_stages, "seed", seed))) return rc;
    }
    sum->n = ++k;
    seed_schedule ss = {0};
    if (c->continue_seed && seed_schedule_load(seed->ckpt, &ss)) return -1;
    plug_seed ps = {0};
    if (plugm && plug_seed_load(c, &common, seed->ckpt, &ps)) return -1;

    // branches
    int first_branch = k;
    static char mods[TRAIN_MAX_DOMAINS][TRAIN_PATH_MAX + 64];
    if (plugm) {
        if (fmt(dir, sizeof dir, "%s/modules", c->out) || make_dir(dir)) return -1;
    }
    for (int d = 0; d < nd; d++) {
        if (only >= 0 && d != only) continue;
        if (stage_opts(c, BTX_BRANCH, &o)) return -1;
        if (c->continue_seed) stage_continues(c, BTX_BRANCH, &ss, &o);
        if (fmt(o.init, sizeof o.init, "%s", seed->ckpt)) return -1;
        *o.preset = 0;
        o.n_overrides = 0;  // the seed fixes the model
        o.data[0] = common.data[d];
        o.data[0].weight = 1;
        o.n_data = 1;
        char name[160];
        snprintf(name, sizeof name, "branch-%s", common.data[d].name);
        if (fmt(dir, sizeof dir, "%s/%s", c->out, name)) return -1;
        if (plugm) {
            // The seed's FFN (dense) or its expert expert_of[d] trains; everything else is frozen.
            if (!section_sets(c, BTX_BRANCH, "train")) {
                if (ps.moe) snprintf(o.train, sizeof o.train, "experts=%d", ps.expert_of[d]);
                else snprintf(o.train, sizeof o.train, "dense");
            }
            if (fmt(mods[d], sizeof mods[d], "%s/modules/%s.h5", c->out, common.data[d].name)) return -1;
            btx_stage_result *r = &sum->s[k];
            if (file_exists(mods[d])) {
                // Made by this pipeline before, or by a --branch run elsewhere and copied here.
                snprintf(r->name, sizeof r->name, "%s", name);
                rundir_ckpt_path(dir, o.steps, r->ckpt, sizeof r->ckpt);
                r->steps = o.steps;
                r->status = "taken (module exists)";
                r->no_eval = !file_exists(r->ckpt);
                char what[TRAIN_PATH_MAX + 96];
                snprintf(what, sizeof what, "take %.4000s", mods[d]);
                if (h && h->on_stage) h->on_stage(h->ctx, k, n_stages, name, what);
            } else {
                if ((rc = run_stage(&o, dir, h, k, n_stages, name, r))) return rc;
                if (branch_module(r->ckpt, seed->ckpt, &common.data[d], o.steps, ps.moe ? ps.expert_of[d] : -1, mods[d]))
                    return mo_errorf("stage %s: %s", name, mo_error());
            }
        } else if ((rc = run_stage(&o, dir, h, k, n_stages, name, &sum->s[k]))) {
            return rc;
        }
        sum->n = ++k;
    }
    if (only >= 0) {
        // A lone branch reads no other domain's data, not even to evaluate.
        common.data[0] = common.data[only];
        common.n_data = 1;
        return evaluate_all(&common, sum);
    }

    // mix, or plug
    char mix_path[TRAIN_PATH_MAX + 16];
    snprintf(mix_path, sizeof mix_path, "%s/%s.h5", c->out, plugm ? "plug" : "mix");
    if (plugm ? plug(c, &common, &ps, seed->ckpt, mods, nd, mix_path, h, k, n_stages, &sum->s[k])
              : mix(c, &common, &sum->s[first_branch], nd, mix_path, h, k, n_stages, &sum->s[k]))
        return -1;
    sum->n = ++k;

    // router (unless [router] steps = 0), then optionally all
    for (int sec = BTX_ROUTER; sec <= BTX_ALL; sec++) {
        if (sec == BTX_ALL && all_steps <= 0) break;
        if (sec == BTX_ROUTER && no_router) continue;
        if (stage_opts(c, sec, &o)) return -1;
        if (!section_sets(c, sec, "train")) snprintf(o.train, sizeof o.train, "%s", sec == BTX_ROUTER ? "router" : "all");
        if (sec == BTX_ROUTER && c->continue_seed) stage_continues(c, BTX_ROUTER, &ss, &o);
        if (sec == BTX_ALL && (plugm || c->continue_seed))
            all_continues(c, c->continue_seed ? ss.floor : common.lr * common.lr_floor, &o);
        if (fmt(o.init, sizeof o.init, "%s", sum->s[k - 1].ckpt)) return -1;
        *o.preset = 0;
        o.n_overrides = 0;
        snprintf(dir, sizeof dir, "%s/%s", c->out, section_names[sec]);
        if ((rc = run_stage(&o, dir, h, k, n_stages, section_names[sec], &sum->s[k]))) return rc;
        sum->n = ++k;
    }
    return evaluate_all(&common, sum);
}
