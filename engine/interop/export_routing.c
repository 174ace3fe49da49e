// export_routing.c: refuses the routers an export format cannot express (export_routing.h).
#include "engine/interop/export_routing.h"

#include "engine/base/error.h"

int export_check_routing(const mo_param_table *pt, const float *params, const char *target) {
    const mo_config *c = &pt->cfg;
    if (!config_n_moe_layers(c)) return 0;
    const char *keep = "keep the model as a monolith checkpoint (generate and eval run it)";
    if (c->router_score != MO_SCORE_SOFTMAX)
        return mo_errorf("router_score sigmoid: %s has softmax router scores only; %s, or train one with "
                         "router_score softmax",
                         target, keep);
    if (c->router_top_p > 0)
        return mo_errorf("router_top_p %g: %s runs top_k experts for every token (no top-p); %s, or train one "
                         "with router_top_p 0",
                         c->router_top_p, target, keep);
    if (c->routed_scale != 1.0)
        return mo_errorf("routed_scale %g: %s has no gate scale; %s, or train one with routed_scale 1",
                         c->routed_scale, target, keep);
    for (int l = 0; l < c->n_layers; l++) {
        int b = pt->layer[l].router_bias;
        if (!c->moe_layers[l] || b < 0) continue;
        const float *v = params + pt->t[b].offset;
        for (int e = 0; e < c->n_experts; e++)
            if (v[e] != 0.0f)
                return mo_errorf("%s: expert %d's entry is %g, and %s has no selection bias (it picks experts by "
                                 "the scores alone); %s, or train with balance aux",
                                 pt->t[b].name, e, (double)v[e], target, keep);
    }
    return 0;
}
