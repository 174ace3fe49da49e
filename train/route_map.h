// route_map.h: which expert takes each domain's tokens under route-by-domain (DEMix,
// `monolith train --route-by-domain`, `monolith eval --route-by-domain`).
//
// Domain d goes to the expert whose /experts domain is d's name; failing that, the expert
// whose name is d's name; failing that, expert d. So a model whose experts carry domain
// names (a DEMix run, a BTX mix, an `expert add --domain new`) routes by name whatever
// the order of the --data flags, and a fresh model routes domain i to expert i.
#ifndef MONOLITH_ROUTE_MAP_H
#define MONOLITH_ROUTE_MAP_H

#include "engine/checkpoint.h"

// Fills expert_of[n_domains]. Returns 0, or -1 with a message when a domain falls on an
// index that is not an expert, or two domains fall on one expert.
int route_map(const mo_experts_meta *ex, int n_experts, int n_domains, const char *const *names, int *expert_of);

#endif
