// route_map.c: domain -> expert for route-by-domain.
#include "train/route_map.h"

#include "engine/base/error.h"

#include <string.h>

static int find(char *const *list, int n, const char *s) {
    for (int e = 0; list && e < n; e++)
        if (list[e] && *list[e] && !strcmp(list[e], s)) return e;
    return -1;
}

int route_map(const mo_experts_meta *ex, int n_experts, int n_domains, const char *const *names, int *expert_of) {
    int n = ex->n < n_experts ? ex->n : n_experts;
    for (int d = 0; d < n_domains; d++) {
        int e = find(ex->domain, n, names[d]);
        if (e < 0) e = find(ex->name, n, names[d]);
        if (e < 0) e = d;
        if (e >= n_experts)
            return mo_errorf("--route-by-domain: no expert is named or has the domain '%s', and expert %d (its "
                             "position) does not exist (the model has %d); name one with monolith expert add --domain",
                             names[d], d, n_experts);
        for (int j = 0; j < d; j++)
            if (expert_of[j] == e)
                return mo_errorf("--route-by-domain: domains '%s' and '%s' both go to expert %d; give the experts "
                                 "distinct domains",
                                 names[j], names[d], e);
        expert_of[d] = e;
    }
    return 0;
}
