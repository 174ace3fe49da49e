// bpe_merges.h: what byte-level BPE looks like outside tiktoken (GGUF's `gpt2` tokenizer,
// Hugging Face's tokenizer.json): a merge list instead of ranks, and tokens written as text
// through GPT-2's byte-to-unicode map.
//
// The merge list is recovered from the ranks: for each token of two or more bytes, rank r,
// replay BPE on its bytes allowing only merges into ranks below r (lowest rank first,
// leftmost on ties, as data/tokenizer.c encodes); what is left is two tokens a, b and the
// merge is "a b". Listing the merges in the order of the ranks they make gives a merge
// list under which merge-priority BPE produces the same ids as rank BPE (GPT-2's r50k_base
// gives back GPT-2's own merges, in their order: tests/data_bpe_merges.c).
//
// GPT-2's byte-to-unicode map sends each byte to one code point: the printable bytes
// '!'..'~', 0xA1..0xAC and 0xAE..0xFF to themselves, the other 68 bytes (in byte order) to
// U+0100, U+0101, ... U+0143 (so a space is 'Ġ' U+0120 and a newline 'Ċ' U+010A).
#ifndef MONOLITH_BPE_MERGES_H
#define MONOLITH_BPE_MERGES_H

#include "data/tokenizer.h"

#include <stddef.h>
#include <stdint.h>

// The code point GPT-2's map gives byte b.
uint32_t bpe_byte_to_codepoint(uint8_t b);
// The byte whose code point is cp, or -1 if cp is not in the map's image.
int bpe_codepoint_to_byte(uint32_t cp);

// The UTF-8 text of p[0..n)'s code points: malloc'd, NUL-terminated, its length in
// *text_len (without the NUL). NULL with mo_error() on out of memory.
char *bpe_bytes_to_text(const uint8_t *p, size_t n, size_t *text_len);
// The bytes of a text written through the map: malloc'd (at least one byte allocated),
// length in *n. Returns 0, or -1 with mo_error() naming the offset for ill-formed UTF-8
// or a code point outside the map.
int bpe_text_to_bytes(const char *text, size_t text_len, uint8_t **out, size_t *n);

// The merge making rank r: the ranks of its left and right parts, or -1, -1 for a
// single byte.
typedef struct {
    int32_t left, right;
} bpe_merge;

// Fills merges[r] for every rank r < tok_n_ranks(t). Returns the number of merges (ranks
// of two or more bytes), or -1 with mo_error() naming the first token that replaying BPE
// with lower ranks does not bring down to two parts (a vocabulary whose ranks no merge
// list reproduces; never the case for tokenizers trained by BPE, GPT-2's included).
int bpe_merges_recover(const tokenizer *t, bpe_merge *merges);

// The merge-list line of a merge, "LEFT RIGHT" with both parts through the map:
// malloc'd, NUL-terminated. NULL with mo_error() on out of memory or a bad rank.
char *bpe_merge_text(const tokenizer *t, bpe_merge m);

#endif
