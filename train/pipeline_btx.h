// pipeline_btx.h: Branch-Train-MiX (Sukhbaatar et al. 2024) as one resumable pipeline,
// `monolith pipeline btx --config btx.ini`.
//
// Stages, each in its own folder under `out` (docs/modules.md has the whole file format):
//   seed     a dense model (moe_layers all 0) trained on the mixture of every domain, or
//            taken as is from [seed] init = FILE
//   branch   one copy of the seed per domain, each trained on its own domain alone
//            (folders branch-<domain>)
//   mix      mix.h5: expert d of every layer = branch d's FFN; embeddings, attention, norms
//            and output = the mean over the branches; a fresh router
//   router   the mix trained on the mixture with only the router learning ([router] train,
//            default "router"); [router] steps = 0 leaves it out
//   all      optional ([all] steps > 0): then everything trained on the mixture, from the
//            router stage's output (or the mix's, without a router stage)
// Training stages run the library behind `monolith train` (train/trainer.h) in run
// folders of their own, so each is resumable with the same exactness: a stage whose final
// checkpoint exists is skipped, one with earlier checkpoints is resumed, and mix.h5 is
// written atomically and skipped when present. Killing the pipeline and starting it again
// with the same file continues where it stopped.
//
// The INI file: [train] holds `monolith train` options shared by every stage (tokenizer,
// data = NAME=FILE lines, batch, seq, lr, ...); [seed], [branch], [router], [all] add
// options of their own over it (steps, lr, train, model fields such as moe_layers);
// [pipeline] holds out; [mix] holds top_k and seed.
//
// Branch-train-plug (`monolith pipeline plug`, method BTX_METHOD_PLUG), the same file
// format with [plug] in place of [mix]:
//   seed     as above (dense)
//   branch   each domain's expert starts as the seed's FFN and trains on its own domain with
//            everything else frozen ([branch] train, default "dense"): a run that reads only
//            the seed file and that domain's token set, and writes the module
//            out/modules/<domain>.h5 (provenance: seed_hash = the seed's trunk, data_hash,
//            steps). A module already there (made on another machine with --branch) is
//            taken as is.
//   plug     plug.h5: the seed's trunk, no averaging; expert d = module d; router rows from
//            the domains' mean router inputs ([plug] router_init = mean, or fresh: normal
//            std 0.02; train/router_init.h)
//   router   the router alone on the mixture; all: optional, as above
// A MoE seed (plug): each domain's branch trains one of the seed's experts ([plug] expert_of
// = NAME=E,... ; default domain d -> expert d) with everything else frozen ([branch] train,
// default experts=E) and its module is that expert; the plug stage puts module d into the
// seed either over expert E_d ([plug] into = replace, the default: the rows the branch
// trained come along) or beside the seed's experts ([plug] into = add: n_experts + n_domains,
// top_k unchanged, new router rows below the trained rows' logits on every domain's
// tokens, train/router_init.h). A MoE seed keeps its own top_k.
// [seed] continue = true (both methods): the seed is a training checkpoint taken mid-run,
// and the stages after it continue its learning-rate schedule (from its /train state):
// each branch and the router stage start at the seed run's rate at the seed's step and
// decay by a half cosine to that run's floor over their own steps, no warmup; [all] runs
// at the floor, constant. A section's own lr, lr-floor, schedule or warmup wins.
// btx_config.branch_only runs the seed (or takes it) and that one branch, nothing else.
#ifndef MONOLITH_PIPELINE_BTX_H
#define MONOLITH_PIPELINE_BTX_H

#include "train/options.h"
#include "train/trainer.h"

#include <stdint.h>

#define BTX_MAX_ENTRIES 256
#define BTX_MAX_STAGES (TRAIN_MAX_DOMAINS + 4)

typedef enum { BTX_SEED, BTX_BRANCH, BTX_MIX, BTX_ROUTER, BTX_ALL, BTX_N_SECTIONS } btx_section;
typedef enum { BTX_METHOD_BTX, BTX_METHOD_PLUG } btx_method;

typedef struct {
    int section;  // btx_section, or -1 for [train]
    char key[64], value[TRAIN_PATH_MAX];
    char origin[320];  // "btx.ini:12" for messages
} btx_entry;

typedef struct {
    char path[TRAIN_PATH_MAX];  // the INI file
    char out[TRAIN_PATH_MAX];   // [pipeline] out
    btx_entry e[BTX_MAX_ENTRIES];
    int n;
    int top_k;                  // [mix] top_k (default 2)
    uint64_t mix_seed;          // [mix] seed (default 1)
    int threads;                // every stage's threads when >= 0 (CLI --threads; 0: one per core), else -1
    btx_method method;
    int router_init;            // [plug] router_init: 1 mean (default), 0 fresh
    char branch_only[128];      // plug: run only this domain's branch ("" = everything)
    int continue_seed;          // [seed] continue: the later stages continue the seed's lr schedule
    int top_k_set;              // [plug] / [mix] top_k given
    int router_init_set;        // [plug] router_init given
    // plug from a MoE seed ([plug] expert_of, into; docs/modules.md):
    char expert_of[TRAIN_PATH_MAX];  // "NAME=E,NAME=E,...": the seed expert each domain's branch trains ("": d -> d)
    char expert_of_origin[320];      // "plug.ini:12" of the expert_of line, for messages
    int plug_into_set;          // [plug] into given
    int plug_add;               // [plug] into: 0 replace (module d overwrites expert E_d), 1 add (beside the seed's)
} btx_config;

// Reads and checks the INI file: unknown sections or keys, bad values and a stage whose
// options do not parse are reported (file:line) before any work. Returns 0 or -1.
int btx_load(const char *path, btx_config *c);
// The same for `pipeline plug` ([plug] instead of [mix], with router_init).
int plug_load(const char *path, btx_config *c);

typedef struct {
    char name[160];     // "seed", "branch-code", "mix" (plug: "plug"), "router", "all"
    char ckpt[TRAIN_PATH_MAX + 64];  // its output checkpoint
    const char *status; // "trained", "resumed", "skipped (output exists)", "taken", "mixed", "plugged"
    int64_t steps;
    double seconds;     // wall time spent in this invocation
    int n_domains;
    char domains[TRAIN_MAX_DOMAINS][128];
    double val_loss[TRAIN_MAX_DOMAINS];  // of its output checkpoint, per domain
    int no_eval;        // 1: not evaluated (a plug branch whose module was made elsewhere)
} btx_stage_result;

typedef struct {
    int n;
    btx_stage_result s[BTX_MAX_STAGES];
} btx_summary;

typedef struct {
    // Called when a stage starts: its name, what will happen ("train 200 steps",
    // "resume", "skip: FILE exists"), and its index / the number of stages.
    void (*on_stage)(void *ctx, int index, int n_stages, const char *name, const char *what);
    void *ctx;
    train_hooks train;  // forwarded to every training stage (progress, evals, saves, stop)
} btx_hooks;

// Runs (or continues) the pipeline, filling `sum` (each stage's output evaluated on every
// domain). Returns 0 when complete, 1 when stopped by hooks->train.stop (resumable), -1
// with a one-line message naming the stage at fault.
int btx_run(const btx_config *c, const btx_hooks *h, btx_summary *sum);

#endif
