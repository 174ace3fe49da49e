// loader.h: batches of token windows from one or more token sets (domains), mixed by weight.
//
// Training batches: each of the B rows picks a domain with probability proportional to
// its weight, then a window of T+1 consecutive tokens at a uniformly random offset of that
// domain's train split (inputs are the first T, targets the last T). Every row draws
// exactly two numbers from the loader's mo_rng, so the whole sampling state is the rng
// state plus a batch counter (loader_state): saving it in a checkpoint and restoring it
// makes a resumed run draw exactly the batches it would have drawn.
//
// Validation: a deterministic pass over each domain's val split in non-overlapping
// windows (window i covers tokens [i*T, i*T + T + 1)), the same every time.
//
// Reading: each split is loaded whole into memory in its stored width (2 bytes a token
// for vocabularies up to 65536), every id checked against vocab_size once, up to a cap on
// the total (default 1 GiB, about 500M tokens). Random windows all over a split would cost
// an HDF5 hyperslab read (a chunk decode) per row otherwise; past the cap, split the corpus
// into several token sets or raise loader_opts.max_bytes.
//
// Every token set must carry the same tokenizer hash (the model's when one is given):
// a set prepared with another tokenizer is refused with a message naming both hashes.
#ifndef MONOLITH_LOADER_H
#define MONOLITH_LOADER_H

#include <stddef.h>
#include <stdint.h>

#define LOADER_MAX_DOMAINS 64

// One --data argument: `name=path.h5[:weight]` or `path.h5[:weight]` (the name is then
// the file's domain attribute). weight defaults to 1.
typedef struct {
    char name[128];  // "" until loader_open fills it from the file
    char path[4096];
    double weight;
} loader_spec;

// Domain names (JSON keys in metrics, expert names, file names): 1 to LOADER_NAME_MAX
// letters, digits, '.', '_' and '-'. Returns 0, or -1 with "<origin>: domain name ...".
#define LOADER_NAME_MAX 63
int loader_name_check(const char *name, const char *origin);

// Parses a spec. Returns 0, or -1 with a one-line error (empty path, bad weight).
int loader_parse_spec(const char *spec, loader_spec *out);

typedef struct {
    int batch, seq_len;          // B rows of T+1 tokens
    uint64_t seed;
    const char *expected_hash;   // the model's tokenizer hash; NULL: the first set's
    const char *expected_from;   // where expected_hash comes from, for messages
    int64_t vocab_size;          // the model's; 0: not checked. Sets need vocab_size <= it.
    uint64_t max_bytes;          // in-memory cap over all splits; 0: 1 GiB
} loader_opts;

typedef struct {
    uint64_t rng[4];
    uint64_t batches;  // training batches drawn so far
} loader_state;

typedef struct loader loader;

// Opens and checks every set. Returns NULL with a one-line mo_error() naming the file at
// fault: missing or corrupt file, wrong tokenizer hash, vocab too large for the model,
// a train split shorter than T+1 tokens, duplicate domain names, memory cap exceeded.
loader *loader_open(const loader_spec *specs, int n_specs, const loader_opts *o);
void loader_free(loader *l);

int loader_n_domains(const loader *l);
const char *loader_domain(const loader *l, int d);
// The tokenizer hash all sets share.
const char *loader_tokenizer_hash(const loader *l);
uint64_t loader_train_tokens(const loader *l, int d);

// Fills tokens[B * (T+1)] (row-major) and domains[B] (the domain index of each row; may
// be NULL) with the next training batch. Never fails.
void loader_next(loader *l, int *tokens, int *domains);

// Advances past `batches` training batches exactly as that many loader_next calls would
// (same draws), without copying tokens: a data-parallel rank skips the micro-batches of
// the global batch that other ranks train on, so every rank's stream stays the one
// stream of a single process (train/dist.h).
void loader_skip(loader *l, uint64_t batches);

// Continues hash h (engine/base/hash.h) over what the loader serves: every domain's
// name, weight and train and val tokens, and the tokenizer hash.
uint64_t loader_hash(const loader *l, uint64_t h);

void loader_get_state(const loader *l, loader_state *s);
void loader_set_state(loader *l, const loader_state *s);

// Number of validation windows of domain d (0 if its val split is shorter than T+1).
uint64_t loader_val_windows(const loader *l, int d);
// Fills up to B rows of tokens[B * (T+1)] with val windows first, first+1, ... of domain
// d. Returns the number of rows filled (0 past the end).
int loader_val_batch(const loader *l, int d, uint64_t first, int *tokens);

#endif
