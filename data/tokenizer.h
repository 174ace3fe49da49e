// tokenizer.h: byte-level BPE in the tiktoken text format (docs/design.md sections 11.7 and 12.1).
//
// A vocabulary is a list of byte strings with ranks 0..R-1 (`base64(bytes) rank` per
// line of a .tiktoken file); special tokens take the ids R, R+1, ... in order (the
// default set is `<|endoftext|>` alone, so GPT-2's is 50256). Encoding pre-splits the
// text with GPT-2's pattern (data/pretok.h), then merges the bytes of each piece by rank
// the way tiktoken does: a piece that is itself a token is that token; otherwise the
// adjacent pair whose concatenation has the lowest rank merges first, leftmost on ties.
// Every byte string encodes (all 256 single bytes must be tokens) and decodes back to
// itself, ill-formed UTF-8 included.
//
// A single pre-split piece longer than TOK_MERGE_WINDOW bytes (a million letters without
// a space, a megabyte of ill-formed bytes) is merged window by window, so memory stays
// bounded (about 100 bytes of scratch per byte of window): the bytes still round-trip
// exactly, only ids at a window edge may differ from a whole-piece merge. Pieces of real
// text are words and runs of spaces, far below it.
//
// A tokenizer is not safe for concurrent encode calls (it keeps scratch space and a
// cache of recent pieces); use one per thread.
#ifndef MONOLITH_TOKENIZER_H
#define MONOLITH_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct tokenizer tokenizer;

// A growable list of token ids (free with tok_ids_free).
typedef struct {
    uint32_t *v;
    size_t n, cap;
} tok_ids;

#define TOK_EOT_NAME "<|endoftext|>"
#define TOK_HASH_HEX 17  // 16 hex digits and the terminator
#define TOK_MERGE_WINDOW ((size_t)1 << 19)

// Loads a .tiktoken file with the default special tokens. Returns NULL with a one-line
// mo_error() for a missing file, bad base64, a bad or duplicate rank, a gap in the ranks,
// a duplicated byte string, or a vocabulary missing one of the 256 single bytes; the
// message names the file and line.
tokenizer *tok_load(const char *path);

// Builds a tokenizer from the exact bytes of a .tiktoken file (as checkpoints store them
// in /tokenizer/tiktoken). `origin` names the source in messages (e.g. "ckpt.h5:/tokenizer").
// `specials` (n_specials names) replaces the default set; NULL keeps the default. If
// `special_ids` is not NULL, each must equal R + its index (docs/design.md section 12.1), else
// the call fails. Returns NULL with mo_error() set on any problem tok_load reports.
tokenizer *tok_from_bytes(const void *data, size_t n, const char *origin, const char *const *specials,
                          const int64_t *special_ids, int n_specials);

void tok_free(tokenizer *t);

// A second tokenizer with the same vocabulary and special tokens (one per thread: encode
// is not thread-safe). Returns NULL with mo_error() set (out of memory).
tokenizer *tok_clone(const tokenizer *t);

// Ranks plus special tokens: the smallest vocab_size a model needs.
int tok_vocab_size(const tokenizer *t);
// Number of ranked (mergeable) byte strings R.
int tok_n_ranks(const tokenizer *t);
int tok_n_specials(const tokenizer *t);
const char *tok_special_name(const tokenizer *t, int i);
// Id of a special token by name, or -1.
int tok_special_id(const tokenizer *t, const char *name);
// Id of <|endoftext|>, or -1 if this tokenizer has none.
int tok_eot(const tokenizer *t);

// FNV-1a 64 over the canonical vocabulary (for each rank in order: its length as 4
// little-endian bytes, then its bytes; then the same for each special token's name), as
// 16 lowercase hex digits. Independent of line order and formatting of the file; the
// token-set attribute `tokenizer_hash` and model checks compare it.
const char *tok_hash(const tokenizer *t);

// The exact .tiktoken bytes this tokenizer was built from (for checkpoints).
const uint8_t *tok_tiktoken_bytes(const tokenizer *t, size_t *n);

// Appends the ids of text[0..n) to `out`. Special-token text is plain text unless
// `allow_special`, in which case each occurrence of a special token's name becomes its
// id. Returns 0, or -1 with mo_error() set (out of memory, PCRE2 failure).
int tok_encode(tokenizer *t, const uint8_t *text, size_t n, int allow_special, tok_ids *out);

// The bytes of token `id` (a special token's name for a special id), or NULL with
// mo_error() set if id >= tok_vocab_size.
const uint8_t *tok_token_bytes(const tokenizer *t, uint32_t id, size_t *len);

// The rank of the byte string p[0..n) in the vocabulary, or -1 if it is not a ranked token
// (special tokens are not ranked).
int tok_rank(const tokenizer *t, const uint8_t *p, size_t n);

// Decodes ids into a malloc'd buffer (*out, *out_len; *out is NUL-terminated for
// convenience, the terminator not counted). Returns 0, or -1 with mo_error() naming the
// first out-of-range id.
int tok_decode(const tokenizer *t, const uint32_t *ids, size_t n, uint8_t **out, size_t *out_len);

// The text of a .tiktoken file whose line i is base64(tokens[i]) and rank i: malloc'd,
// length in *out_len. NULL with mo_error() on out of memory.
uint8_t *tok_tiktoken_text(const uint8_t *const *tokens, const size_t *lens, int n, size_t *out_len);

// Writes a .tiktoken file atomically (PATH.tmp then rename): line i is base64(tokens[i])
// and rank i. Returns 0 or -1 with mo_error() set.
int tok_write_tiktoken(const char *path, const uint8_t *const *tokens, const size_t *lens, int n);

int tok_ids_push(tok_ids *a, uint32_t id);
void tok_ids_free(tok_ids *a);

// For tests: pieces longer than this many bytes merge with the heap algorithm, shorter
// ones with tiktoken's quadratic scan (both give the same ids). Returns the old value.
size_t tok_set_heap_threshold(size_t bytes);

#endif
