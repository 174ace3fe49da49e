// bpe_train.c: incremental byte-pair training over unique pre-split pieces (see bpe_train.h).
#include "data/bpe_train.h"

#include "data/pretok.h"
#include "data/tokenizer.h"
#include "engine/base/error.h"
#include "engine/base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h ^ (h >> 31);
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

// A growable array of anything (elem bytes each).
typedef struct {
    void *v;
    size_t n, cap;
} vec;

static int vec_grow(vec *a, size_t elem, size_t need) {
    if (need <= a->cap) return 0;
    size_t cap = a->cap ? a->cap : 16;
    while (cap < need) cap *= 2;
    void *v = realloc(a->v, cap * elem);
    if (!v) return mo_errorf("out of memory in BPE training (%zu elements)", cap);
    a->v = v, a->cap = cap;
    return 0;
}

typedef struct {
    int64_t count;
    uint64_t sym_off;  // into syms
    uint32_t len;      // current symbols
    uint32_t byte_len;
    uint64_t byte_off;  // into piece_bytes (counting phase)
} word;

typedef struct {
    uint32_t a, b;
    int64_t count;
    uint32_t *occ;  // words where the pair occurred (may hold stale entries)
    uint32_t occ_n, occ_cap;
    uint8_t dirty;
} pair;

typedef struct {
    int64_t count;
    uint32_t pair;
} heap_item;

struct bpe_trainer {
    pretok *pre;
    uint64_t bytes_seen;
    // Counting phase: unique pieces.
    vec words;        // word
    vec piece_bytes;  // uint8_t
    uint32_t *wmap;   // word index + 1, 0 empty
    size_t wmap_cap;
    // Merging phase.
    uint32_t *syms;
    vec pairs;     // pair
    uint32_t *pmap;  // pair index + 1
    size_t pmap_cap, pmap_used;
    vec heap;   // heap_item
    vec dirty;  // uint32_t pair indexes
    vec tok_bytes;  // uint8_t: bytes of every token
    vec tok_off;    // uint64_t: token t is tok_bytes[off[t] .. off[t+1])
    uint32_t *tmap;  // token id + 1 by bytes
    size_t tmap_cap;
    int n_ranks;
};

bpe_trainer *bpe_trainer_new(void) {
    bpe_trainer *tr = calloc(1, sizeof *tr);
    if (!tr) {
        mo_errorf("out of memory");
        return NULL;
    }
    tr->pre = pretok_new();
    tr->wmap_cap = 1 << 16;
    tr->wmap = calloc(tr->wmap_cap, sizeof *tr->wmap);
    if (!tr->pre || !tr->wmap) {
        if (tr->pre) mo_errorf("out of memory");
        bpe_trainer_free(tr);
        return NULL;
    }
    return tr;
}

void bpe_trainer_free(bpe_trainer *tr) {
    if (!tr) return;
    pretok_free(tr->pre);
    free(tr->words.v), free(tr->piece_bytes.v), free(tr->wmap), free(tr->syms);
    pair *P = tr->pairs.v;
    for (size_t i = 0; i < tr->pairs.n; i++) free(P[i].occ);
    free(tr->pairs.v), free(tr->pmap), free(tr->heap.v), free(tr->dirty.v);
    free(tr->tok_bytes.v), free(tr->tok_off.v), free(tr->tmap);
    free(tr);
}

uint64_t bpe_trainer_bytes(const bpe_trainer *tr) { return tr->bytes_seen; }
size_t bpe_trainer_pieces(const bpe_trainer *tr) { return tr->words.n; }

// ---------------------------------------------------------------- counting pieces

static int wmap_rehash(bpe_trainer *tr) {
    size_t cap = tr->wmap_cap * 2;
    uint32_t *m = calloc(cap, sizeof *m);
    if (!m) return mo_errorf("out of memory counting pieces");
    word *W = tr->words.v;
    const uint8_t *B = tr->piece_bytes.v;
    for (size_t w = 0; w < tr->words.n; w++) {
        size_t i = hash_bytes(B + W[w].byte_off, W[w].byte_len) & (cap - 1);
        while (m[i]) i = (i + 1) & (cap - 1);
        m[i] = (uint32_t)w + 1;
    }
    free(tr->wmap);
    tr->wmap = m, tr->wmap_cap = cap;
    return 0;
}

// Pieces are counted in chunks of at most this many bytes. A merge scans every word
// that holds its pair, so one 100 KB piece (a base64 blob, a run of '=') would be
// rescanned by nearly every merge; in chunks only the chunks holding the pair are. No
// learned token is longer than this, which costs nothing: such tokens never recur.
#define TRAIN_MAX_PIECE 256

// Counts one piece (at most TRAIN_MAX_PIECE bytes).
static int count_one(bpe_trainer *tr, const uint8_t *p, size_t n) {
    size_t mask = tr->wmap_cap - 1, i = hash_bytes(p, n) & mask;
    word *W = tr->words.v;
    const uint8_t *B = tr->piece_bytes.v;
    for (; tr->wmap[i]; i = (i + 1) & mask) {
        word *w = &W[tr->wmap[i] - 1];
        if (w->byte_len == n && memcmp(B + w->byte_off, p, n) == 0) {
            w->count++;
            return 0;
        }
    }
    if (tr->words.n >= UINT32_MAX - 1) return mo_errorf("more than 4 billion unique pieces: train on less text");
    if (vec_grow(&tr->words, sizeof(word), tr->words.n + 1) ||
        vec_grow(&tr->piece_bytes, 1, tr->piece_bytes.n + n))
        return -1;
    W = tr->words.v;
    W[tr->words.n] = (word){1, 0, 0, (uint32_t)n, tr->piece_bytes.n};
    memcpy((uint8_t *)tr->piece_bytes.v + tr->piece_bytes.n, p, n);
    tr->piece_bytes.n += n;
    tr->wmap[i] = (uint32_t)++tr->words.n;
    if (tr->words.n * 2 > tr->wmap_cap) return wmap_rehash(tr);
    return 0;
}

static int count_piece(const uint8_t *p, size_t n, void *ctx) {
    bpe_trainer *tr = ctx;
    for (size_t o = 0; o < n; o += TRAIN_MAX_PIECE) {
        int rc = count_one(tr, p + o, n - o < TRAIN_MAX_PIECE ? n - o : TRAIN_MAX_PIECE);
        if (rc) return rc;
    }
    return 0;
}

int bpe_trainer_add(bpe_trainer *tr, const uint8_t *text, size_t n) {
    tr->bytes_seen += n;
    return pretok_split(tr->pre, text, n, count_piece, tr);
}

int bpe_trainer_add_file(bpe_trainer *tr, const char *path) {
    size_t n;
    int fd = file_open_regular_fd(path, &n);
    if (fd < 0) return -1;
    if (n == 0) {
        close(fd);
        return 0;
    }
    void *m = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return mo_errorf("%s: cannot map (%s)", path, strerror(errno));
    madvise(m, n, MADV_SEQUENTIAL);
    int rc = bpe_trainer_add(tr, m, n);
    munmap(m, n);
    if (rc) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", mo_error());
        return mo_errorf("%s: %s", path, msg);
    }
    return 0;
}

// ---------------------------------------------------------------- tokens

static int token_find(const bpe_trainer *tr, const uint8_t *p, size_t n) {
    const uint64_t *off = tr->tok_off.v;
    const uint8_t *B = tr->tok_bytes.v;
    size_t mask = tr->tmap_cap - 1;
    for (size_t i = hash_bytes(p, n) & mask; tr->tmap[i]; i = (i + 1) & mask) {
        uint32_t t = tr->tmap[i] - 1;
        if (off[t + 1] - off[t] == n && memcmp(B + off[t], p, n) == 0) return (int)t;
    }
    return -1;
}

// Appends a token (its bytes already appended to tok_bytes) and indexes it.
static int token_commit(bpe_trainer *tr) {
    uint64_t *off = tr->tok_off.v;
    uint32_t t = (uint32_t)tr->tok_off.n - 2;
    const uint8_t *B = tr->tok_bytes.v;
    size_t mask = tr->tmap_cap - 1, i = hash_bytes(B + off[t], off[t + 1] - off[t]) & mask;
    while (tr->tmap[i]) i = (i + 1) & mask;
    tr->tmap[i] = t + 1;
    tr->n_ranks = (int)t + 1;
    return 0;
}

// ---------------------------------------------------------------- pairs

static int pmap_rehash(bpe_trainer *tr) {
    size_t cap = tr->pmap_cap ? tr->pmap_cap * 2 : 1 << 16;
    uint32_t *m = calloc(cap, sizeof *m);
    if (!m) return mo_errorf("out of memory counting pairs");
    const pair *P = tr->pairs.v;
    for (size_t k = 0; k < tr->pairs.n; k++) {
        size_t i = mix64((uint64_t)P[k].a << 32 | P[k].b) & (cap - 1);
        while (m[i]) i = (i + 1) & (cap - 1);
        m[i] = (uint32_t)k + 1;
    }
    free(tr->pmap);
    tr->pmap = m, tr->pmap_cap = cap;
    return 0;
}

// The index of pair (a, b), created with count 0 if new; -1 on out of memory.
static long pair_get(bpe_trainer *tr, uint32_t a, uint32_t b) {
    if ((tr->pairs.n + 1) * 2 > tr->pmap_cap && pmap_rehash(tr)) return -1;
    size_t mask = tr->pmap_cap - 1, i = mix64((uint64_t)a << 32 | b) & mask;
    pair *P = tr->pairs.v;
    for (; tr->pmap[i]; i = (i + 1) & mask) {
        pair *p = &P[tr->pmap[i] - 1];
        if (p->a == a && p->b == b) return (long)tr->pmap[i] - 1;
    }
    if (vec_grow(&tr->pairs, sizeof(pair), tr->pairs.n + 1)) return -1;
    P = tr->pairs.v;
    P[tr->pairs.n] = (pair){.a = a, .b = b};
    tr->pmap[i] = (uint32_t)++tr->pairs.n;
    return (long)tr->pairs.n - 1;
}

// Adds delta to the count of (a, b); with word w >= 0, records that w holds the pair.
static int pair_add(bpe_trainer *tr, uint32_t a, uint32_t b, int64_t delta, long w) {
    long k = pair_get(tr, a, b);
    if (k < 0) return -1;
    pair *p = &((pair *)tr->pairs.v)[k];
    p->count += delta;
    if (w >= 0 && (p->occ_n == 0 || p->occ[p->occ_n - 1] != (uint32_t)w)) {
        if (p->occ_n == p->occ_cap) {
            uint32_t cap = p->occ_cap ? p->occ_cap * 2 : 4;
            uint32_t *o = realloc(p->occ, cap * sizeof *o);
            if (!o) return mo_errorf("out of memory indexing pairs");
            p->occ = o, p->occ_cap = cap;
        }
        p->occ[p->occ_n++] = (uint32_t)w;
    }
    if (!p->dirty) {
        if (vec_grow(&tr->dirty, sizeof(uint32_t), tr->dirty.n + 1)) return -1;
        ((uint32_t *)tr->dirty.v)[tr->dirty.n++] = (uint32_t)k;
        p->dirty = 1;
    }
    return 0;
}

// Max-heap order: higher count first, then lower (a, b).
static int heap_before(const bpe_trainer *tr, const heap_item *x, const heap_item *y) {
    if (x->count != y->count) return x->count > y->count;
    const pair *P = tr->pairs.v;
    const pair *p = &P[x->pair], *q = &P[y->pair];
    return p->a != q->a ? p->a < q->a : p->b < q->b;
}

static int heap_push(bpe_trainer *tr, heap_item it) {
    if (vec_grow(&tr->heap, sizeof(heap_item), tr->heap.n + 1)) return -1;
    heap_item *h = tr->heap.v;
    size_t i = tr->heap.n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!heap_before(tr, &it, &h[up])) break;
        h[i] = h[up];
        i = up;
    }
    h[i] = it;
    return 0;
}

static heap_item heap_pop(bpe_trainer *tr) {
    heap_item *h = tr->heap.v;
    heap_item top = h[0], last = h[--tr->heap.n];
    size_t n = tr->heap.n, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_before(tr, &h[c + 1], &h[c])) c++;
        if (!heap_before(tr, &h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (n) h[i] = last;
    return top;
}

// Pushes the new counts of every pair touched since the last flush.
static int flush_dirty(bpe_trainer *tr) {
    pair *P = tr->pairs.v;
    const uint32_t *d = tr->dirty.v;
    for (size_t i = 0; i < tr->dirty.n; i++) {
        pair *p = &P[d[i]];
        p->dirty = 0;
        if (p->count > 0 && heap_push(tr, (heap_item){p->count, d[i]})) return -1;
        P = tr->pairs.v;
    }
    tr->dirty.n = 0;
    return 0;
}

// Rewrites every occurrence of (a, b) into `nt` in the words that hold it, keeping all
// pair counts exact. Only the neighbours of each occurrence change: with x before and y
// after, (x, a) and (b, y) lose the word's count and (x, nt), (nt, y) gain it. Walking
// left to right with the output written in place, x is the last symbol written, which
// is nt itself when two occurrences touch ("a b a b"), so chains come out right.
static int apply_merge(bpe_trainer *tr, uint32_t pk, uint32_t nt) {
    pair *P = tr->pairs.v;
    uint32_t a = P[pk].a, b = P[pk].b;
    uint32_t *occ = P[pk].occ, n_occ = P[pk].occ_n;
    P[pk].occ = NULL, P[pk].occ_n = P[pk].occ_cap = 0;  // (a, b) disappears everywhere
    word *W = tr->words.v;
    int rc = 0;
    for (uint32_t k = 0; k < n_occ && !rc; k++) {
        uint32_t w = occ[k];
        uint32_t *s = tr->syms + W[w].sym_off, len = W[w].len;
        int64_t c = W[w].count;
        uint32_t i = 0, j = 0;
        while (i + 1 < len && !(s[i] == a && s[i + 1] == b)) i++;  // the first occurrence, if any
        if (i + 1 >= len) continue;  // a stale entry: an earlier merge already took it
        j = i;
        while (i < len && !rc) {
            if (i + 1 < len && s[i] == a && s[i + 1] == b) {
                rc = pair_add(tr, a, b, -c, -1);
                if (!rc && j > 0) {
                    rc = pair_add(tr, s[j - 1], a, -c, -1);
                    if (!rc) rc = pair_add(tr, s[j - 1], nt, c, (long)w);
                }
                if (!rc && i + 2 < len) {
                    rc = pair_add(tr, b, s[i + 2], -c, -1);
                    if (!rc) rc = pair_add(tr, nt, s[i + 2], c, (long)w);
                }
                s[j++] = nt, i += 2;
            } else {
                s[j++] = s[i++];
            }
        }
        W[w].len = j;
    }
    free(occ);
    return rc ? rc : flush_dirty(tr);
}

int bpe_train_run(bpe_trainer *tr, int vocab_size, int n_specials, bpe_progress_fn progress, void *ctx,
                  int *n_ranks) {
    int want = vocab_size - n_specials;
    if (want < 256)
        return mo_errorf("--vocab-size %d is too small: a byte-level vocabulary needs the 256 single bytes plus %d "
                         "special token%s, so at least %d", vocab_size, n_specials, n_specials == 1 ? "" : "s",
                         256 + n_specials);
    if (tr->words.n == 0) return mo_errorf("no text to train on (the input files are empty)");
    if (tr->syms) return mo_errorf("bpe_train_run called twice on one trainer");

    // Tokens 0..255: the bytes.
    tr->tmap_cap = 1;
    while (tr->tmap_cap < 2 * (size_t)want) tr->tmap_cap <<= 1;
    tr->tmap = calloc(tr->tmap_cap, sizeof *tr->tmap);
    if (!tr->tmap || vec_grow(&tr->tok_off, sizeof(uint64_t), (size_t)want + 1) ||
        vec_grow(&tr->tok_bytes, 1, 256))
        return mo_errorf("out of memory");
    ((uint64_t *)tr->tok_off.v)[tr->tok_off.n++] = 0;
    for (int b = 0; b < 256; b++) {
        ((uint8_t *)tr->tok_bytes.v)[tr->tok_bytes.n++] = (uint8_t)b;
        ((uint64_t *)tr->tok_off.v)[tr->tok_off.n++] = tr->tok_bytes.n;
        token_commit(tr);
    }

    // Symbols: every piece as its bytes; then the initial pair counts.
    word *W = tr->words.v;
    const uint8_t *B = tr->piece_bytes.v;
    tr->syms = malloc((tr->piece_bytes.n ? tr->piece_bytes.n : 1) * sizeof *tr->syms);
    if (!tr->syms) return mo_errorf("out of memory");
    uint64_t o = 0;
    for (size_t w = 0; w < tr->words.n; w++) {
        W[w].sym_off = o;
        W[w].len = W[w].byte_len;
        for (uint32_t i = 0; i < W[w].byte_len; i++) tr->syms[o + i] = B[W[w].byte_off + i];
        o += W[w].byte_len;
    }
    free(tr->piece_bytes.v);
    tr->piece_bytes = (vec){0};
    free(tr->wmap);
    tr->wmap = NULL;
    for (size_t w = 0; w < tr->words.n; w++) {
        const uint32_t *s = tr->syms + W[w].sym_off;
        for (uint32_t i = 0; i + 1 < W[w].len; i++)
            if (pair_add(tr, s[i], s[i + 1], W[w].count, (long)w)) return -1;
    }
    if (flush_dirty(tr)) return -1;

    int done = 256, report_every = (want - 256) / 100 + 1;
    while (done < want && tr->heap.n) {
        heap_item it = heap_pop(tr);
        pair *p = &((pair *)tr->pairs.v)[it.pair];
        if (it.count != p->count || p->count <= 0) continue;  // stale
        const uint64_t *off = tr->tok_off.v;
        size_t la = off[p->a + 1] - off[p->a], lb = off[p->b + 1] - off[p->b];
        if (vec_grow(&tr->tok_bytes, 1, tr->tok_bytes.n + la + lb) ||
            vec_grow(&tr->tok_off, sizeof(uint64_t), tr->tok_off.n + 1))
            return -1;
        uint8_t *TB = tr->tok_bytes.v;
        off = tr->tok_off.v;
        memcpy(TB + tr->tok_bytes.n, TB + off[p->a], la);
        memcpy(TB + tr->tok_bytes.n + la, TB + off[p->b], lb);
        int existing = token_find(tr, TB + tr->tok_bytes.n, la + lb);
        uint32_t nt;
        if (existing >= 0) {
            nt = (uint32_t)existing;  // same bytes reached another way: reuse, no new rank
        } else {
            tr->tok_bytes.n += la + lb;
            ((uint64_t *)tr->tok_off.v)[tr->tok_off.n++] = tr->tok_bytes.n;
            token_commit(tr);
            nt = (uint32_t)done++;
        }
        if (apply_merge(tr, it.pair, nt)) return -1;
        if (progress && done < want && done % report_every == 0) progress(ctx, done - 256, want - 256);
    }
    if (progress) progress(ctx, done - 256, want - 256);  // the last count, once
    *n_ranks = done;
    return 0;
}

int bpe_trainer_write(const bpe_trainer *tr, const char *path) {
    if (tr->n_ranks < 256) return mo_errorf("%s: nothing trained yet", path);
    const uint8_t **toks = malloc((size_t)tr->n_ranks * sizeof *toks);
    size_t *lens = malloc((size_t)tr->n_ranks * sizeof *lens);
    if (!toks || !lens) {
        free(toks), free(lens);
        return mo_errorf("out of memory");
    }
    const uint64_t *off = tr->tok_off.v;
    const uint8_t *B = tr->tok_bytes.v;
    for (int t = 0; t < tr->n_ranks; t++) toks[t] = B + off[t], lens[t] = off[t + 1] - off[t];
    int rc = tok_write_tiktoken(path, toks, lens, tr->n_ranks);
    free(toks), free(lens);
    return rc;
}
