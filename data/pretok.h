// pretok.h: GPT-2's pre-split of text into pieces, before byte-pair merging.
//
// The pattern is GPT-2's (tiktoken r50k_base, gpt-tokenizer's R50K_TOKEN_SPLIT_REGEX):
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// compiled with PCRE2 (PCRE2_UTF | PCRE2_UCP, JIT). `\s` is spelled out as JavaScript's
// class (tab, LF, VT, FF, CR, \p{Zs}, U+2028, U+2029, U+FEFF) so the split equals
// gpt-tokenizer's on every valid UTF-8 text (PCRE2's own \s differs on U+FEFF and U+0085).
//
// Input is bytes, not necessarily valid UTF-8. The pattern is compiled with
// PCRE2_MATCH_INVALID_UTF: an ill-formed byte sequence never matches any pattern item, so
// matches stop at it, and the run of bytes between two matches (only ever ill-formed
// bytes) becomes a piece of its own. The pieces therefore always cover the input exactly,
// in order, and byte-level BPE encodes any of them.
#ifndef MONOLITH_PRETOK_H
#define MONOLITH_PRETOK_H

#include <stddef.h>
#include <stdint.h>

typedef struct pretok pretok;

// Compiles the pattern. Returns NULL with mo_error() set if PCRE2 refuses it (a PCRE2
// built without Unicode support). One pretok per thread: matching uses its match data.
pretok *pretok_new(void);
void pretok_free(pretok *p);

// Called once per piece, in order; a non-zero return stops the split and is returned.
typedef int (*pretok_fn)(const uint8_t *piece, size_t len, void *ctx);

// Splits text[0..n) and calls fn on every piece. Returns 0, fn's first non-zero return,
// or -1 with mo_error() set if PCRE2 fails (out of memory or JIT stack).
int pretok_split(pretok *p, const uint8_t *text, size_t n, pretok_fn fn, void *ctx);

#endif
