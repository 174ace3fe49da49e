// expert_hash.c: FNV-1a 64 fingerprints of parameters, tokenizers, trunks and files
// (engine/expert_hash.h).
#include "engine/expert_hash.h"

#include <stdio.h>
#include <string.h>

static void fnv1a(uint64_t *h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) *h = (*h ^ b[i]) * 0x100000001b3ull;
}

static void hex(uint64_t h, char out[MO_HASH_HEX]) { snprintf(out, MO_HASH_HEX, "%016llx", (unsigned long long)h); }

void expert_params_hash(const mo_checkpoint *ck, char out[MO_HASH_HEX]) {
    uint64_t h = 0xcbf29ce484222325ull;
    fnv1a(&h, ck->params, ck->table.numel * sizeof(float));
    hex(h, out);
}

void expert_vocab_hash(const mo_tokenizer_blob *t, char out[MO_HASH_HEX]) {
    if (!t->present) {
        out[0] = 0;
        return;
    }
    uint64_t h = 0xcbf29ce484222325ull;
    fnv1a(&h, t->tiktoken, t->tiktoken_len);
    for (int i = 0; i < t->n_special; i++) {
        fnv1a(&h, t->special_names[i], strlen(t->special_names[i]) + 1);
        fnv1a(&h, &t->special_ids[i], sizeof t->special_ids[i]);
    }
    hex(h, out);
}

void expert_trunk_hash(const mo_checkpoint *ck, char out[MO_HASH_HEX]) {
    const mo_param_table *pt = &ck->table;
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < pt->n; i++) {
        const mo_tensor *t = &pt->t[i];
        // router_bias is router state (docs/design.md 11.5): a dense seed has none.
        int ffn = t->kind == PK_ROUTER || t->kind == PK_ROUTER_BIAS || t->kind == PK_W1 || t->kind == PK_W3 ||
                  t->kind == PK_W2 || t->kind == PK_DENSE_W1 || t->kind == PK_DENSE_W3 || t->kind == PK_DENSE_W2;
        if (ffn) continue;
        fnv1a(&h, t->name, strlen(t->name) + 1);
        fnv1a(&h, ck->params + t->offset, t->numel * sizeof(float));
    }
    hex(h, out);
}

void expert_files_hash(const char *const *paths, int n, char out[MO_HASH_HEX]) {
    out[0] = 0;
    if (n < 1) return;
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < n; i++) {
        FILE *f = fopen(paths[i], "rb");
        if (!f) {
            fnv1a(&h, paths[i], strlen(paths[i]));
            continue;
        }
        char buf[1 << 16];
        size_t got;
        while ((got = fread(buf, 1, sizeof buf, f)) > 0) fnv1a(&h, buf, got);
        fclose(f);
    }
    hex(h, out);
}
