// config.h: the model configuration, every attribute of a checkpoint's /config group
// (docs/design.md section 2), its presets, overrides by name and validation.
//
// Lifecycle: config_preset() (or config_read() from a checkpoint), any number of
// config_set() overrides, then config_finalize(), which fills the values left automatic
// (head_dim, moe_layers, d_ff_dense, d_ff_shared) and validates; config_build() is the
// three in one call. Everything downstream (parameter table, model, checkpoint) takes a
// finalized config.
//
// Field names are the /config attribute names (`n_experts`); config_set() also takes
// them with dashes (`n-experts`), the spelling of the CLI flags `--n-experts 16`.
#ifndef MONOLITH_CONFIG_H
#define MONOLITH_CONFIG_H

#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>

#define MO_MAX_LAYERS 256

typedef struct {
    int vocab_size;
    int d_model;
    int n_layers;
    int n_heads;
    int n_kv_heads;        // divides n_heads (GQA); = n_heads is plain multi-head attention
    int head_dim;          // 0 before finalize: d_model / n_heads
    int n_experts;         // E, routed experts per MoE layer
    int top_k;             // k, experts per token
    int d_ff;              // hidden width of one routed expert
    int n_shared_experts;  // always-on experts per MoE layer, stored as one [n*d_ff_shared, d] block
    int d_ff_shared;       // hidden width of one shared expert; 0 before finalize: d_ff
    int moe_layers[MO_MAX_LAYERS];  // 1 = MoE, 0 = dense, per layer
    int n_moe_layers_given;         // entries of moe_layers set; 0 before finalize: every layer MoE
    int d_ff_dense;        // hidden width of the dense layers' FFN; 0 before finalize: d_ff
    int max_seq_len;       // longest sequence (RoPE tables, attention buffers)
    double rope_theta;
    double norm_eps;
    int norm_topk;         // 1: gates renormalized over the chosen k; 0: raw probabilities
    double aux_coef;       // weight of the Switch load-balance loss
    double z_coef;         // weight of the router z-loss
    // Routing variants (docs/design.md, "Routing"). Absent from a checkpoint written before
    // they existed: config_read gives these defaults, which are the routing of that time.
    int router_score;        // MO_SCORE_SOFTMAX (default) or MO_SCORE_SIGMOID: s = score(l)
    double routed_scale;     // gates times this (default 1)
    int balance;             // MO_BALANCE_AUX (default: Switch loss) or MO_BALANCE_BIAS (aux-loss-free)
    double bias_rate;        // bias balancing: b_e += bias_rate * sign(mean c - c_e) per step (default 1e-3)
    double capacity_factor;  // 0 (default): dropless; else at most ceil(cf N k / E) slots per expert
    double router_noise;     // training only: l + router_noise * N(0, 1) (default 0)
    double router_top_p;     // 0 (default): top-k; else experts by descending p until their sum reaches it
} mo_config;

enum { MO_SCORE_SOFTMAX = 0, MO_SCORE_SIGMOID = 1 };
enum { MO_BALANCE_AUX = 0, MO_BALANCE_BIAS = 1 };

// Zeroes `c` and sets the fields that have a default (rope_theta, norm_eps, norm_topk,
// aux_coef, z_coef and the routing fields), for a config built field by field.
void config_defaults(mo_config *c);

// Fills `c` with preset `name` ("tiny", "small", "bench-S", "fine-S"). Automatic values stay 0
// until config_finalize(). Returns 0, or -1 naming the presets for an unknown name.
int config_preset(mo_config *c, const char *name);
// The preset names, NULL-terminated, for help texts.
extern const char *const config_preset_names[];

// Sets one field from text: `name` is an attribute name with dashes or underscores,
// `value` an integer, a real, or for moe_layers a comma list of 0/1 ("1,0,1").
// Returns 0, or -1 with a message naming the field when the name is unknown or the value
// does not parse (range checks are config_finalize's).
int config_set(mo_config *c, const char *name, const char *value);
// 1 if `name` (dashes or underscores) is a config field, else 0: lets a CLI route
// `--<field>` flags to config_set().
int config_is_field(const char *name);
// The field names with dashes, NULL-terminated, for help texts.
extern const char *const config_field_flags[];

// Fills automatic values, then validates. Returns 0, or -1 with a one-line message that
// names the offending field and why (e.g. "n_kv_heads 3 does not divide n_heads 4").
int config_finalize(mo_config *c);
// Validates a config as read from a file (no automatic values filled): same checks.
int config_validate(const mo_config *c);

// One override by field name (dashes or underscores), as config_set takes it.
typedef struct {
    const char *name, *value;
} config_override;

// The whole lifecycle in one call: preset `preset` (NULL: start from *c as it is, e.g. a
// checkpoint's config), then the n overrides in order (a later one wins), then
// config_finalize. Returns 0, or -1 with a one-line message (an override's names its
// flag: "--n-experts: ...").
int config_build(mo_config *c, const char *preset, const config_override *ov, int n);

// Number of MoE layers (moe_layers[l] == 1).
int config_n_moe_layers(const mo_config *c);

// Writes every field as attributes of group `group` of `loc` (int64 scalars, float64
// reals, moe_layers an int64 array of length n_layers). Returns 0 or -1.
int config_write(hid_t loc, const char *group, const mo_config *c);
// Reads and validates the attributes of `group`. Every attribute must be present.
// Returns 0, or -1 naming the file and the missing or bad attribute.
int config_read(hid_t loc, const char *group, mo_config *c);

// One line per field, "name value", for `monolith inspect`.
void config_print(FILE *out, const mo_config *c);
// The routing in words, e.g. "sigmoid top-2 (bias balancing, rate 0.001), capacity 1.25",
// for `monolith inspect` and run summaries.
void config_routing_str(const mo_config *c, char *buf, size_t cap);

#endif
