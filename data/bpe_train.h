// bpe_train.h: training a byte-level BPE vocabulary on a corpus (monolith tokenizer train).
//
// Ranks 0..255 are the single bytes 0x00..0xff in byte order. Text is pre-split with
// GPT-2's pattern (data/pretok.h), so merges never cross piece boundaries, exactly as
// the encoder sees them (pieces over 256 bytes are counted as 256-byte chunks, so no
// token is longer); unique pieces are counted once (with their multiplicity). Each
// step merges the most frequent adjacent pair; ties go to the pair of lower ids (left id
// first), so the result depends only on the corpus and the sizes. Pair counts are kept
// up to date incrementally: a max-heap of pairs by count (stale entries skipped) and, per
// pair, the list of pieces it occurs in, so a merge only revisits the pieces that contain
// it. If a merge's bytes already exist as a token (two merge paths to the same string),
// the pair is rewritten to that token and no rank is used.
#ifndef MONOLITH_BPE_TRAIN_H
#define MONOLITH_BPE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

typedef struct bpe_trainer bpe_trainer;

// Called now and then during bpe_train_run with the merges done and wanted.
typedef void (*bpe_progress_fn)(void *ctx, int done, int wanted);

bpe_trainer *bpe_trainer_new(void);
void bpe_trainer_free(bpe_trainer *tr);

// Adds text (one document or a whole file) to the piece counts. Returns 0 or -1 with
// mo_error() set (out of memory, PCRE2 failure).
int bpe_trainer_add(bpe_trainer *tr, const uint8_t *text, size_t n);
// Adds the whole content of a file (memory-mapped). Returns -1 naming the file on error.
int bpe_trainer_add_file(bpe_trainer *tr, const char *path);

// Bytes of text added so far, and unique pieces.
uint64_t bpe_trainer_bytes(const bpe_trainer *tr);
size_t bpe_trainer_pieces(const bpe_trainer *tr);

// Learns merges until there are vocab_size - n_specials ranks (vocab_size counts every
// id, special tokens included, so a model made with that vocab_size fits). Stops early
// if no adjacent pair is left (a corpus too small for the size): *n_ranks says how many
// ranks were made. Fails with a one-line error if vocab_size < 256 + n_specials or no
// text was added.
int bpe_train_run(bpe_trainer *tr, int vocab_size, int n_specials, bpe_progress_fn progress, void *ctx,
                  int *n_ranks);

// Writes the learned ranks as a .tiktoken file (atomically). Call after bpe_train_run.
int bpe_trainer_write(const bpe_trainer *tr, const char *path);

#endif
