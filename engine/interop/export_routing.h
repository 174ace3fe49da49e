// export_routing.h: which routers the export formats can express.
//
// llama.cpp's `llama` and `deepseek` (v1) and Hugging Face's Mixtral all route the same
// way: softmax of the router logits, the top_k experts by that softmax, always top_k of
// them, gates the chosen probabilities (renormalized or not: norm_topk picks the
// architecture), nothing scaled. A model that routes otherwise would run as a different
// model in those programs, so export refuses it (docs/design.md 15.1). Capacity dropping
// and router noise are training-time only (inference never drops or adds noise), so they
// export as they are.
#ifndef MONOLITH_EXPORT_ROUTING_H
#define MONOLITH_EXPORT_ROUTING_H

#include "engine/params.h"

// 0 if the model (its config and, for router_bias, its values) routes as softmax top-k,
// else -1 with a one-line mo_error() naming the first field that `target` ("GGUF",
// "Mixtral") cannot express and the fix. A model without MoE layers always passes.
int export_check_routing(const mo_param_table *pt, const float *params, const char *target);

#endif
