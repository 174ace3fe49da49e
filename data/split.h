// split.h: which bytes of a domain's documents go to the val split (`monolith data prepare`).
//
// By document when there are enough of them: round(F n) of the n documents (at least one
// when F > 0 and n >= 2, never all), the first of a shuffle seeded with `seed`, whenever
// that makes at least SPLIT_MIN_VAL_DOCS documents. A val split of fewer, whole documents
// is too small or too arbitrary (one short file of twenty), so otherwise the split is by
// bytes: val gets round(F x the corpus's bytes), taken in the same shuffled order, whole
// documents while they fit, then the tail of the next document, cut at a line end near
// the point where F is reached (its head stays in train, both as documents of their own).
// One big file thus gives a val split of its last F bytes.
//
// The plan is a list of pieces in input order: a document whole, or the head and the
// tail of the cut document. The same sizes, F and seed always give the same plan.
#ifndef MONOLITH_SPLIT_H
#define MONOLITH_SPLIT_H

#include <stddef.h>
#include <stdint.h>

#define SPLIT_MIN_VAL_DOCS 4

typedef struct {
    size_t doc;          // index into the documents
    uint64_t off, len;   // bytes [off, off + len) of it
    int val;             // 1: val split, 0: train
} split_piece;

typedef struct {
    split_piece *p;
    size_t n;
    int by_document;     // 1: whole documents only (the first rule above)
    size_t n_val_docs;   // documents wholly in val
    size_t cut_doc;      // the document cut in two, or SIZE_MAX
    uint64_t cut_tail;   // bytes of its tail in val
    uint64_t val_bytes, total_bytes;
} split_plan;

// Where to cut document `doc` of size `size` so that its tail is about `size - pos` bytes:
// returns a position in (0, size). The CLI looks at the text (split_text_cut); tests may
// return pos.
typedef uint64_t (*split_cut_fn)(void *ctx, size_t doc, uint64_t pos, uint64_t size);

// Plans the split of n documents of the given sizes (bytes, each > 0). Returns 0, or -1
// with a message (out of memory). Free with split_plan_free.
int split_make(const uint64_t *sizes, size_t n, double frac, uint64_t seed, split_cut_fn cut, void *ctx,
               split_plan *out);
void split_plan_free(split_plan *s);

// A cut point of text t[0, n) that changes no token: just before a '\n' that follows a
// printable ASCII byte (no GPT-2 pre-split piece crosses it). The first in [from, limit),
// or limit if there is none.
size_t split_safe_cut(const uint8_t *t, size_t from, size_t limit);

// The cut for a val tail of about n - pos bytes: the first safe cut in [pos, pos + (n -
// pos) / 2), else pos moved back to the start of a UTF-8 character. In (0, n) when 0 < pos < n.
size_t split_text_cut(const uint8_t *t, size_t n, size_t pos);

#endif
