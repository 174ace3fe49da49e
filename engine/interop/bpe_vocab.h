// bpe_vocab.h: a monolith tokenizer (tiktoken ranks + special tokens, as a checkpoint's
// /tokenizer stores it) as the text vocabulary other programs keep for byte-level BPE
// (GGUF's tokenizer.ggml.*, Hugging Face's tokenizer.json), and back with the checks that
// make both encode alike.
//
// Text form: ranked token i is its bytes through GPT-2's byte-to-unicode map, id i; the
// merges are "LEFT RIGHT" recovered from the ranks (data/bpe_merges.h), in the order of
// the ranks they make; special tokens keep their names and ids R, R+1, ...
#ifndef MONOLITH_BPE_VOCAB_H
#define MONOLITH_BPE_VOCAB_H

#include "data/tokenizer.h"
#include "engine/checkpoint.h"

#include <stddef.h>

typedef struct {
    tokenizer *tok;
    int n_ranks;     // R
    char **tokens;   // [R] texts in id order
    int n_merges;
    char **merges;   // [n_merges]
} bpe_vocab;

// The text form of `b` (present). Returns 0, or -1 with mo_error() (a vocabulary whose
// ranks no merge list reproduces, out of memory).
int bpe_vocab_from_blob(const mo_tokenizer_blob *b, bpe_vocab *v);
void bpe_vocab_free(bpe_vocab *v);

// Merge k of the other program's list (text and length), for bpe_vocab_to_blob.
typedef const char *(*bpe_merge_fn)(void *ctx, int k, size_t *len);

// The blob of a text vocabulary: `texts[i]` (lens[i] bytes) is ranked token i (i < R),
// special token s is names[s] with id ids[s] (which must be R + s), and the other
// program's merge list has n_merges entries read through merge(ctx, k). Refused with one
// line naming `origin`: a token not written through the byte map, a vocabulary tiktoken
// rules refuse (a missing single byte, a repeated token), or merges that are not exactly
// those the ids imply (then rank BPE and merge BPE would split text differently).
// Returns 0 with `b` filled (zeroed first; ckpt_tokenizer_free), or -1.
int bpe_vocab_to_blob(const char *origin, const char *const *texts, const size_t *lens, int R,
                      const char *const *names, const int64_t *ids, int n_special, int n_merges, bpe_merge_fn merge,
                      void *ctx, mo_tokenizer_blob *b);

#endif
