// hf_tokenizer.h: a monolith tokenizer (tiktoken ranks + special tokens) as a Hugging Face
// tokenizer.json and back.
//
// Written as GPT-2's tokenizer.json is: model BPE with vocab (every rank's bytes through
// GPT-2's byte-to-unicode map -> its id) and merges (recovered from the ranks,
// data/bpe_merges.h, "LEFT RIGHT" in the order of the ranks they make), pre-tokenizer and
// decoder ByteLevel (GPT-2's split pattern, the one data/pretok.h uses), the special
// tokens (<|endoftext|> ...) as added tokens with special: true, and ignore_merges: true
// (a piece that is itself a token is that token, tiktoken's rule).
//
// Read back only when it is that kind of tokenizer, else refused naming the field: model
// type BPE without byte_fallback, dropout, unk token, continuing_subword_prefix or
// end_of_word_suffix; no normalizer; pre-tokenizer ByteLevel with GPT-2's pattern (or a
// Split on exactly that pattern followed by ByteLevel without its own regex) and no
// prefix space; every vocab entry written through the byte map; ids 0..R-1 for the
// ranked tokens and R, R+1, ... for the special added tokens; and the merges exactly those
// the ranks give (same pairs, same order), so that encoding by merges and by ranks agree.
#ifndef MONOLITH_HF_TOKENIZER_H
#define MONOLITH_HF_TOKENIZER_H

#include "engine/checkpoint.h"

// Writes `blob` (which must be present) as the tokenizer.json at `path`, atomically.
// Returns 0, or -1 with mo_error().
int hf_tokenizer_write(const char *path, const mo_tokenizer_blob *blob);

// Reads the tokenizer.json at `path` into `blob` (zeroed first; free with
// ckpt_tokenizer_free). Returns 0, or -1 with a one-line mo_error() naming the file and
// the field or token.
int hf_tokenizer_read(const char *path, mo_tokenizer_blob *blob);

#endif
