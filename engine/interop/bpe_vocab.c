// bpe_vocab.c: tiktoken vocabularies as byte-mapped text vocabularies and back (bpe_vocab.h).
#include "engine/interop/bpe_vocab.h"

#include "data/bpe_merges.h"
#include "engine/base/error.h"

#include <stdlib.h>
#include <string.h>

int bpe_vocab_from_blob(const mo_tokenizer_blob *b, bpe_vocab *v) {
    memset(v, 0, sizeof *v);
    v->tok = tok_from_bytes(b->tiktoken, b->tiktoken_len, "checkpoint /tokenizer",
                            (const char *const *)b->special_names, b->special_ids, b->n_special);
    if (!v->tok) return -1;
    int R = v->n_ranks = tok_n_ranks(v->tok);
    bpe_merge *bm = calloc((size_t)R, sizeof *bm);
    v->tokens = calloc((size_t)R, sizeof *v->tokens);
    v->merges = calloc((size_t)R, sizeof *v->merges);
    if (!bm || !v->tokens || !v->merges) {
        free(bm);
        bpe_vocab_free(v);
        return mo_errorf("out of memory for a vocabulary of %d tokens", R);
    }
    int rc = bpe_merges_recover(v->tok, bm) < 0 ? -1 : 0;
    for (int r = 0; !rc && r < R; r++) {
        size_t len;
        const uint8_t *p = tok_token_bytes(v->tok, (uint32_t)r, &len);
        if (!(v->tokens[r] = bpe_bytes_to_text(p, len, NULL))) rc = -1;
        else if (bm[r].left >= 0 && !(v->merges[v->n_merges++] = bpe_merge_text(v->tok, bm[r]))) rc = -1;
    }
    free(bm);
    if (rc) bpe_vocab_free(v);
    return rc;
}

void bpe_vocab_free(bpe_vocab *v) {
    for (int r = 0; v->tokens && r < v->n_ranks; r++) free(v->tokens[r]);
    for (int k = 0; v->merges && k < v->n_merges; k++) free(v->merges[k]);
    free(v->tokens);
    free(v->merges);
    tok_free(v->tok);
    memset(v, 0, sizeof *v);
}

int bpe_vocab_to_blob(const char *origin, const char *const *texts, const size_t *lens, int R,
                      const char *const *names, const int64_t *ids, int n_special, int n_merges, bpe_merge_fn merge,
                      void *ctx, mo_tokenizer_blob *b) {
    memset(b, 0, sizeof *b);
    int rc = -1;
    uint8_t **bytes = calloc((size_t)R + 1, sizeof *bytes);
    size_t *blens = calloc((size_t)R + 1, sizeof *blens);
    bpe_merge *bm = calloc((size_t)R + 1, sizeof *bm);
    b->special_names = calloc((size_t)n_special + 1, sizeof *b->special_names);
    b->special_ids = calloc((size_t)n_special + 1, sizeof *b->special_ids);
    tokenizer *tok = NULL;
    if (!bytes || !blens || !bm || !b->special_names || !b->special_ids) {
        mo_errorf("%s: out of memory for a vocabulary of %d tokens", origin, R);
        goto done;
    }
    for (int i = 0; i < R; i++)
        if (bpe_text_to_bytes(texts[i], lens[i], &bytes[i], &blens[i])) {
            mo_errorf("%s: token %d is not byte-level BPE text (GPT-2's byte map): %s", origin, i, mo_error());
            goto done;
        }
    for (int s = 0; s < n_special; s++) {
        if (!(b->special_names[s] = strdup(names[s]))) {
            mo_errorf("%s: out of memory", origin);
            goto done;
        }
        b->special_ids[s] = ids[s];
        b->n_special = s + 1;
    }
    b->tiktoken = tok_tiktoken_text((const uint8_t *const *)bytes, blens, R, &b->tiktoken_len);
    if (!b->tiktoken) goto done;
    tok = tok_from_bytes(b->tiktoken, b->tiktoken_len, origin, (const char *const *)b->special_names,
                         b->special_ids, n_special);
    if (!tok) goto done;
    int nm = bpe_merges_recover(tok, bm);
    if (nm < 0) goto done;
    if (nm != n_merges) {
        mo_errorf("%s: %d merges, but the token ids imply %d", origin, n_merges, nm);
        goto done;
    }
    for (int r = 0, k = 0; r < R; r++) {
        if (bm[r].left < 0) continue;
        char *want = bpe_merge_text(tok, bm[r]);
        size_t len;
        const char *have = merge(ctx, k, &len);
        int same = want && have && strlen(want) == len && !memcmp(want, have, len);
        if (!same && want)
            mo_errorf("%s: merge %d is \"%.*s\" but the token ids imply \"%s\" (merges not in id order: monolith's "
                      "rank BPE would split text differently)",
                      origin, k, have ? (int)(len > 200 ? 200 : len) : 6, have ? have : "(none)", want);
        free(want);
        if (!same) goto done;
        k++;
    }
    b->present = 1;
    rc = 0;
done:
    for (int i = 0; bytes && i < R; i++) free(bytes[i]);
    free(bytes), free(blens), free(bm);
    tok_free(tok);
    if (rc) ckpt_tokenizer_free(b);
    return rc;
}
