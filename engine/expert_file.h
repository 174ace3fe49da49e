// expert_file.h: one expert as a file of its own (docs/design.md section 11.5, format
// "monolith-expert").
//
// File layout (h5py reads it as is):
//   /                          attrs: format = "monolith-expert", format_version = 1, created_by,
//                                     name, domain, provenance (the checkpoint's /experts strings,
//                                     verbatim), data_hash, parent_hash, seed_hash (optional: ""
//                                     when absent), steps_trained, has_router,
//                                     and the shape key (engine/expert_key.h): d_model, d_ff,
//                                     n_layers, vocab_size, vocab_hash, moe_layers (int64
//                                     [n_layers], 1 where the module has a slice)
//   /layers/L/w1, w3           [d_ff, d]   L = the model's layer index, every MoE layer
//   /layers/L/w2               [d, d_ff]
//   /layers/L/router_row       [d]         (zeros when has_router = 0: extracted from a dense FFN)
//   /layers/L/router_bias      [1]         the expert's entry of router_bias (absent in a module
//                                          written before it: read as 0)
//   /optim/m/layers/L/...      the same five per layer: the expert's slices of Adam's m and v,
//   /optim/v/layers/L/...      present when it was extracted from a training checkpoint
#ifndef MONOLITH_EXPERT_FILE_H
#define MONOLITH_EXPERT_FILE_H

#include "engine/expert_module.h"

#define MO_EXPERT_FORMAT "monolith-expert"
#define MO_EXPERT_VERSION 1

// Writes module x to PATH atomically. Returns 0 or -1.
int expert_save(const char *path, const mo_expert *x);
// Reads a module, checking the format, the attributes and every dataset's shape against
// its own key, and refusing NaN/Inf. Returns 0, or -1 naming the file and what is wrong.
int expert_load(const char *path, mo_expert *x);

#endif
