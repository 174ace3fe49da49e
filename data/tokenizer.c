// tokenizer.c: loading .tiktoken vocabularies, BPE encoding by rank, decoding, hashing.
#include "data/tokenizer.h"

#include "data/pretok.h"
#include "engine/base/atomic_file.h"
#include "engine/base/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ---------------------------------------------------------------- byte-string hashing

// A fast 64-bit hash of a short byte string (8 bytes per step), for the rank map and the
// piece cache. Not the stable tok_hash (that one is FNV-1a, documented, and never changes).
static inline uint64_t bytes_hash(const uint8_t *p, size_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
        p += 8, n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 32);
}

// ---------------------------------------------------------------- the tokenizer

#define CACHE_SLOTS (1u << 16)    // power of two
#define CACHE_MAX_USED (1u << 15) // wiped when this full (keeps probes short)
#define CACHE_MAX_PIECE 64        // longer pieces are rare and not cached
#define CACHE_KEY_CAP (CACHE_MAX_USED * 16u)
#define CACHE_IDS_CAP (CACHE_MAX_USED * 8u)

typedef struct {
    uint32_t tag;  // high bits of the hash
    int32_t rank;  // -1: empty
    uint32_t off, len;  // the token's bytes in blob, here to save a lookup in off[]
} rank_slot;

typedef struct {
    uint64_t hash;  // 0: empty
    uint32_t key_off, ids_off;
    uint16_t key_len, n_ids;
} cache_slot;

// A small direct-mapped cache of short pieces and their ids, checked before anything
// else: text repeats its common words (Zipf), and this table stays in L2 where the rank
// map (megabytes) does not.
#define HOT_SLOTS 4096  // power of two
#define HOT_KEY 16
#define HOT_IDS 6
typedef struct {
    uint8_t key[HOT_KEY];
    uint8_t len, n_ids;  // len 0: empty
    uint32_t ids[HOT_IDS];
} hot_slot;

typedef struct {
    uint32_t rank;
    size_t start, end;  // the pair is bytes [start, end) of the piece
} heap_entry;

struct tokenizer {
    int n_ranks;
    uint8_t *blob;   // every ranked token's bytes, in rank order
    uint32_t *off;   // token r is blob[off[r] .. off[r+1])
    int n_specials;
    char **specials;
    size_t *special_len;
    int32_t byte_rank[256];
    rank_slot *map;  // open addressing, linear probing
    uint32_t map_mask;
    char hash_hex[TOK_HASH_HEX];
    uint8_t *raw;  // the exact .tiktoken bytes
    size_t raw_len;
    pretok *pre;

    hot_slot *hot;
    cache_slot *cache;
    uint32_t cache_used, cache_key_used, cache_ids_used;
    uint8_t *cache_keys;
    uint32_t *cache_ids;

    // Merge scratch, grown to the longest piece seen so far.
    size_t scratch_cap, heap_cap;
    size_t *starts, *next, *prev;
    uint32_t *ranks;
    uint8_t *alive;
    heap_entry *heap;
};

static size_t heap_threshold = 128;

size_t tok_set_heap_threshold(size_t bytes) {
    size_t old = heap_threshold;
    heap_threshold = bytes;
    return old;
}

// memcmp(a, b, n) == 0 for the short strings of token lookups, without a libc call.
static inline int bytes_eq(const uint8_t *a, const uint8_t *b, size_t n) {
    for (; n >= 8; a += 8, b += 8, n -= 8) {
        uint64_t x, y;
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        if (x != y) return 0;
    }
    while (n--)
        if (*a++ != *b++) return 0;
    return 1;
}

static inline int rank_of(const tokenizer *t, const uint8_t *p, size_t n) {
    uint64_t h = bytes_hash(p, n);
    uint32_t tag = (uint32_t)(h >> 32), i = (uint32_t)h & t->map_mask;
    for (;; i = (i + 1) & t->map_mask) {
        const rank_slot *s = &t->map[i];
        if (s->rank < 0) return -1;
        if (s->tag == tag && s->len == n && bytes_eq(t->blob + s->off, p, n)) return s->rank;
    }
}

// Inserts rank r; returns the rank already holding the same bytes, or -1.
static int map_insert(tokenizer *t, int r) {
    const uint8_t *p = t->blob + t->off[r];
    size_t n = t->off[r + 1] - t->off[r];
    uint64_t h = bytes_hash(p, n);
    uint32_t tag = (uint32_t)(h >> 32), i = (uint32_t)h & t->map_mask;
    for (;; i = (i + 1) & t->map_mask) {
        rank_slot *s = &t->map[i];
        if (s->rank < 0) {
            *s = (rank_slot){tag, r, t->off[r], (uint32_t)n};
            return -1;
        }
        if (s->tag == tag) {
            uint32_t a = t->off[s->rank], len = t->off[s->rank + 1] - a;
            if (len == n && memcmp(t->blob + a, p, n) == 0) return s->rank;
        }
    }
}

// ---------------------------------------------------------------- base64

static int b64_value(uint8_t c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

// Strict standard base64 with padding. Writes at most 3*n/4 bytes; returns the count or -1.
static long b64_decode(const uint8_t *s, size_t n, uint8_t *out) {
    if (n == 0 || n % 4) return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            if (s[i + k] == '=' && i + 4 == n && k >= 2) {
                v[k] = 0, pad++;
            } else {
                if (pad) return -1;  // data after '='
                v[k] = b64_value(s[i + k]);
                if (v[k] < 0) return -1;
            }
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (uint8_t)(w >> 16);
        if (pad < 2) out[o++] = (uint8_t)(w >> 8);
        if (pad < 1) out[o++] = (uint8_t)w;
    }
    return (long)o;
}

static size_t b64_encode(const uint8_t *p, size_t n, char *out) {
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        out[o++] = a[w >> 18 & 63];
        out[o++] = a[w >> 12 & 63];
        out[o++] = i + 1 < n ? a[w >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? a[w & 63] : '=';
    }
    return o;
}

// ---------------------------------------------------------------- loading

void tok_free(tokenizer *t) {
    if (!t) return;
    free(t->blob), free(t->off), free(t->map), free(t->raw);
    for (int i = 0; i < t->n_specials; i++) free(t->specials[i]);
    free(t->specials), free(t->special_len);
    pretok_free(t->pre);
    free(t->hot), free(t->cache), free(t->cache_keys), free(t->cache_ids);
    free(t->starts), free(t->next), free(t->prev), free(t->ranks), free(t->alive), free(t->heap);
    free(t);
}

static void fnv1a(uint64_t *h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) *h = (*h ^ b[i]) * 0x100000001b3ull;
}

static void fnv1a_len(uint64_t *h, size_t n) {
    uint8_t le[4] = {(uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24)};
    fnv1a(h, le, 4);
}

static void compute_hash(tokenizer *t) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (int r = 0; r < t->n_ranks; r++) {
        size_t n = t->off[r + 1] - t->off[r];
        fnv1a_len(&h, n);
        fnv1a(&h, t->blob + t->off[r], n);
    }
    for (int i = 0; i < t->n_specials; i++) {
        fnv1a_len(&h, t->special_len[i]);
        fnv1a(&h, t->specials[i], t->special_len[i]);
    }
    snprintf(t->hash_hex, sizeof t->hash_hex, "%016llx", (unsigned long long)h);
}

typedef struct {
    long rank;
    int line;
    uint32_t off, len;  // bytes in the decode buffer
} parsed_line;

tokenizer *tok_from_bytes(const void *data, size_t n, const char *origin, const char *const *specials,
                          const int64_t *special_ids, int n_specials) {
    static const char *const default_specials[] = {TOK_EOT_NAME};
    if (!specials) specials = default_specials, n_specials = 1, special_ids = NULL;
    const uint8_t *s = data;
    parsed_line *lines = NULL;
    uint8_t *dec = NULL;
    int32_t *by_rank = NULL;
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) goto oom;
    t->raw = malloc(n ? n : 1);
    if (!t->raw) goto oom;
    memcpy(t->raw, s, n);
    t->raw_len = n;

    // Pass 1: parse every line into (rank, bytes).
    size_t max_lines = 1;
    for (size_t i = 0; i < n; i++) max_lines += s[i] == '\n';
    lines = malloc(max_lines * sizeof *lines);
    dec = malloc(n / 4 * 3 + 4);
    if (!lines || !dec) goto oom;
    int count = 0, line_no = 0;
    size_t dec_used = 0;
    for (size_t i = 0; i < n;) {
        size_t e = i;
        while (e < n && s[e] != '\n') e++;
        size_t end = e;
        line_no++;
        if (end > i && s[end - 1] == '\r') end--;
        if (end > i) {
            size_t sp = i;
            while (sp < end && s[sp] != ' ') sp++;
            if (sp == end || sp == i) {
                mo_errorf("%s:%d: expected 'base64 rank', got no space-separated rank", origin, line_no);
                goto err;
            }
            long len = b64_decode(s + i, sp - i, dec + dec_used);
            if (len <= 0) {
                mo_errorf("%s:%d: bad base64 '%.*s'", origin, line_no, (int)(sp - i < 40 ? sp - i : 40),
                          (const char *)s + i);
                goto err;
            }
            long rank = 0;
            size_t k = sp + 1;
            if (k == end) {
                mo_errorf("%s:%d: missing rank after the base64 token", origin, line_no);
                goto err;
            }
            for (; k < end; k++) {
                if (s[k] < '0' || s[k] > '9' || rank > 100000000) {
                    mo_errorf("%s:%d: bad rank '%.*s' (a whole number below 100000000 expected)", origin, line_no,
                              (int)(end - sp - 1 < 40 ? end - sp - 1 : 40), (const char *)s + sp + 1);
                    goto err;
                }
                rank = rank * 10 + (s[k] - '0');
            }
            if (dec_used + (size_t)len > UINT32_MAX) {
                mo_errorf("%s:%d: the vocabulary holds more than 4 GB of token bytes", origin, line_no);
                goto err;
            }
            lines[count++] = (parsed_line){rank, line_no, (uint32_t)dec_used, (uint32_t)len};
            dec_used += (size_t)len;
        }
        i = e + 1;
    }
    if (count == 0) {
        mo_errorf("%s: no tokens (an empty .tiktoken file)", origin);
        goto err;
    }

    // Pass 2: ranks must be exactly 0..count-1.
    by_rank = malloc((size_t)count * sizeof *by_rank);
    if (!by_rank) goto oom;
    for (int i = 0; i < count; i++) by_rank[i] = -1;
    for (int i = 0; i < count; i++) {
        long r = lines[i].rank;
        if (r >= count) {
            mo_errorf("%s:%d: rank %ld leaves a gap (the file has %d tokens, so ranks must be 0..%d)", origin,
                      lines[i].line, r, count, count - 1);
            goto err;
        }
        if (by_rank[r] >= 0) {
            mo_errorf("%s:%d: duplicate rank %ld (also on line %d)", origin, lines[i].line, r,
                      lines[by_rank[r]].line);
            goto err;
        }
        by_rank[r] = i;
    }
    t->n_ranks = count;
    t->blob = malloc(dec_used ? dec_used : 1);
    t->off = malloc(((size_t)count + 1) * sizeof *t->off);
    if (!t->blob || !t->off) goto oom;
    uint32_t o = 0;
    for (int r = 0; r < count; r++) {
        const parsed_line *L = &lines[by_rank[r]];
        t->off[r] = o;
        memcpy(t->blob + o, dec + L->off, L->len);
        o += L->len;
    }
    t->off[count] = o;

    uint32_t cap = 1;
    while (cap < 2u * (uint32_t)count) cap <<= 1;
    t->map = malloc(cap * sizeof *t->map);
    if (!t->map) goto oom;
    for (uint32_t i = 0; i < cap; i++) t->map[i] = (rank_slot){0, -1, 0, 0};
    t->map_mask = cap - 1;
    for (int r = 0; r < count; r++) {
        int dup = map_insert(t, r);
        if (dup >= 0) {
            mo_errorf("%s:%d: the same bytes as rank %d (line %d): each token must be unique", origin,
                      lines[by_rank[r]].line, dup, lines[by_rank[dup]].line);
            goto err;
        }
    }
    for (int b = 0; b < 256; b++) {
        uint8_t byte = (uint8_t)b;
        t->byte_rank[b] = rank_of(t, &byte, 1);
        if (t->byte_rank[b] < 0) {
            mo_errorf("%s: byte 0x%02x is not a token, so some text could not be encoded (a byte-level "
                      "vocabulary has all 256 single bytes)", origin, b);
            goto err;
        }
    }

    // Special tokens.
    if (n_specials < 0 || n_specials > 1024) {
        mo_errorf("%s: %d special tokens (0..1024 supported)", origin, n_specials);
        goto err;
    }
    t->specials = calloc((size_t)n_specials + 1, sizeof *t->specials);
    t->special_len = calloc((size_t)n_specials + 1, sizeof *t->special_len);
    if (!t->specials || !t->special_len) goto oom;
    for (int i = 0; i < n_specials; i++) {
        if (!specials[i] || !specials[i][0]) {
            mo_errorf("%s: special token %d has an empty name", origin, i);
            goto err;
        }
        if (special_ids && special_ids[i] != (int64_t)count + i) {
            mo_errorf("%s: special token %s has id %lld, expected %d (special tokens follow the last rank in order)",
                      origin, specials[i], (long long)special_ids[i], count + i);
            goto err;
        }
        t->specials[i] = strdup(specials[i]);
        if (!t->specials[i]) goto oom;
        t->special_len[i] = strlen(specials[i]);
        t->n_specials = i + 1;
        for (int j = 0; j < i; j++)
            if (!strcmp(t->specials[j], t->specials[i])) {
                mo_errorf("%s: special token %s is listed twice", origin, specials[i]);
                goto err;
            }
    }
    compute_hash(t);

    t->pre = pretok_new();
    if (!t->pre) goto err;
    t->hot = calloc(HOT_SLOTS, sizeof *t->hot);
    t->cache = calloc(CACHE_SLOTS, sizeof *t->cache);
    t->cache_keys = malloc(CACHE_KEY_CAP);
    t->cache_ids = malloc(CACHE_IDS_CAP * sizeof *t->cache_ids);
    if (!t->hot || !t->cache || !t->cache_keys || !t->cache_ids) goto oom;
    free(lines), free(dec), free(by_rank);
    return t;
oom:
    mo_errorf("%s: out of memory loading the tokenizer", origin);
err:
    free(lines), free(dec), free(by_rank);
    tok_free(t);
    return NULL;
}

#define TOK_FILE_MAX (256 << 20)  // o200k's .tiktoken is 3.6 MB

tokenizer *tok_load(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        mo_errorf("%s: cannot open tokenizer (%s)", path, strerror(errno));
        return NULL;
    }
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            if (cap >= TOK_FILE_MAX) {  // an endless stream, or not a vocabulary
                free(buf), fclose(f);
                mo_errorf("%s: more than %d MB; not a tokenizer file", path, TOK_FILE_MAX >> 20);
                return NULL;
            }
            cap = cap ? cap * 2 : 1 << 20;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) {
                free(buf), fclose(f);
                mo_errorf("%s: out of memory", path);
                return NULL;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        mo_errorf("%s: read error", path);
        return NULL;
    }
    tokenizer *t = tok_from_bytes(buf, n, path, NULL, NULL, 0);
    free(buf);
    return t;
}

tokenizer *tok_clone(const tokenizer *t) {
    return tok_from_bytes(t->raw, t->raw_len, "tokenizer copy", (const char *const *)t->specials, NULL,
                          t->n_specials);
}

int tok_vocab_size(const tokenizer *t) { return t->n_ranks + t->n_specials; }
int tok_n_ranks(const tokenizer *t) { return t->n_ranks; }
int tok_n_specials(const tokenizer *t) { return t->n_specials; }
const char *tok_special_name(const tokenizer *t, int i) {
    return i >= 0 && i < t->n_specials ? t->specials[i] : NULL;
}
int tok_special_id(const tokenizer *t, const char *name) {
    for (int i = 0; i < t->n_specials; i++)
        if (!strcmp(t->specials[i], name)) return t->n_ranks + i;
    return -1;
}
int tok_eot(const tokenizer *t) { return tok_special_id(t, TOK_EOT_NAME); }
const char *tok_hash(const tokenizer *t) { return t->hash_hex; }
const uint8_t *tok_tiktoken_bytes(const tokenizer *t, size_t *n) {
    *n = t->raw_len;
    return t->raw;
}

// ---------------------------------------------------------------- id lists

int tok_ids_push(tok_ids *a, uint32_t id) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 1024;
        uint32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return mo_errorf("out of memory growing a token list to %zu ids", cap);
        a->v = v, a->cap = cap;
    }
    a->v[a->n++] = id;
    return 0;
}

void tok_ids_free(tok_ids *a) {
    free(a->v);
    *a = (tok_ids){0};
}

static int ids_reserve(tok_ids *a, size_t more) {
    if (a->n + more <= a->cap) return 0;
    size_t cap = a->cap ? a->cap : 1024;
    while (cap < a->n + more) cap *= 2;
    uint32_t *v = realloc(a->v, cap * sizeof *v);
    if (!v) return mo_errorf("out of memory growing a token list to %zu ids", cap);
    a->v = v, a->cap = cap;
    return 0;
}

// ---------------------------------------------------------------- merging

static int scratch_reserve(tokenizer *t, size_t n) {
    if (n + 1 <= t->scratch_cap) return 0;
    size_t cap = t->scratch_cap ? t->scratch_cap : 256;
    while (cap < n + 1) cap *= 2;
    size_t *a = realloc(t->starts, cap * sizeof *a);
    if (a) t->starts = a;
    size_t *b = realloc(t->next, cap * sizeof *b);
    if (b) t->next = b;
    size_t *c = realloc(t->prev, cap * sizeof *c);
    if (c) t->prev = c;
    uint32_t *d = realloc(t->ranks, cap * sizeof *d);
    if (d) t->ranks = d;
    uint8_t *e = realloc(t->alive, cap);
    if (e) t->alive = e;
    if (!a || !b || !c || !d || !e) return mo_errorf("out of memory encoding a %zu-byte piece", n);
    t->scratch_cap = cap;
    return 0;
}

#define NO_RANK UINT32_MAX

static inline uint32_t pair_rank(const tokenizer *t, const uint8_t *p, size_t a, size_t b) {
    int r = rank_of(t, p + a, b - a);
    return r < 0 ? NO_RANK : (uint32_t)r;
}

// tiktoken's merge: scan for the lowest-ranked adjacent pair, merge it, repeat. Quadratic
// in the piece length but with tiny constants; used for short pieces. Parts end in
// t->starts[0..*n_parts] (n_parts + 1 boundaries).
static size_t merge_scan(tokenizer *t, const uint8_t *p, size_t n) {
    size_t *st = t->starts;
    uint32_t *rk = t->ranks;
    size_t m = n + 1;  // boundaries
    for (size_t i = 0; i < m; i++) {
        st[i] = i;
        rk[i] = i + 2 < m ? pair_rank(t, p, i, i + 2) : NO_RANK;
    }
    for (;;) {
        uint32_t best = NO_RANK;
        size_t bi = 0;
        for (size_t i = 0; i + 2 < m; i++)
            if (rk[i] < best) best = rk[i], bi = i;
        if (best == NO_RANK) break;
        // Remove boundary bi+1: parts bi and bi+1 become one.
        memmove(st + bi + 1, st + bi + 2, (m - bi - 2) * sizeof *st);
        memmove(rk + bi + 1, rk + bi + 2, (m - bi - 2) * sizeof *rk);
        m--;
        rk[bi] = bi + 2 < m ? pair_rank(t, p, st[bi], st[bi + 2]) : NO_RANK;
        if (bi > 0) rk[bi - 1] = pair_rank(t, p, st[bi - 1], st[bi + 1]);
    }
    return m - 1;
}

static inline int heap_less(const heap_entry *a, const heap_entry *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->start < b->start);
}

static void heap_push(heap_entry *h, size_t *n, heap_entry e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_less(&e, &h[parent])) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = e;
}

static heap_entry heap_pop(heap_entry *h, size_t *n) {
    heap_entry top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

// The same merge order with a min-heap of (rank, start) over a linked list of parts,
// O(n log n): for long pieces (a line of 100k letters is one piece). Stale heap entries
// are skipped by checking that the pair they name still exists.
static int merge_heap(tokenizer *t, const uint8_t *p, size_t n, size_t *n_parts) {
    size_t need = 3 * n + 1;  // n-1 initial pairs, at most 2 per merge
    if (need > t->heap_cap) {
        heap_entry *h = realloc(t->heap, need * sizeof *h);
        if (!h) return mo_errorf("out of memory encoding a %zu-byte piece", n);
        t->heap = h, t->heap_cap = need;
    }
    size_t *next = t->next, *prev = t->prev, hn = 0;
    uint8_t *alive = t->alive;
    for (size_t i = 0; i < n; i++) {
        next[i] = i + 1, prev[i] = i ? i - 1 : SIZE_MAX, alive[i] = 1;
        if (i + 1 < n) {
            uint32_t r = pair_rank(t, p, i, i + 2);
            if (r != NO_RANK) heap_push(t->heap, &hn, (heap_entry){r, i, i + 2});
        }
    }
    size_t parts = n;
    while (hn) {
        heap_entry e = heap_pop(t->heap, &hn);
        if (!alive[e.start]) continue;
        size_t mid = next[e.start];
        if (mid >= n || next[mid] != e.end) continue;
        alive[mid] = 0;
        next[e.start] = e.end;
        if (e.end < n) prev[e.end] = e.start;
        parts--;
        if (prev[e.start] != SIZE_MAX) {
            size_t a = prev[e.start];
            uint32_t r = pair_rank(t, p, a, e.end);
            if (r != NO_RANK) heap_push(t->heap, &hn, (heap_entry){r, a, e.end});
        }
        if (e.end < n) {
            uint32_t r = pair_rank(t, p, e.start, next[e.end]);
            if (r != NO_RANK) heap_push(t->heap, &hn, (heap_entry){r, e.start, next[e.end]});
        }
    }
    // Boundaries into t->starts, as merge_scan leaves them.
    size_t k = 0;
    for (size_t i = 0; i < n; i = next[i]) t->starts[k++] = i;
    t->starts[k] = n;
    *n_parts = parts;
    return 0;
}

static const uint32_t *cache_get(const tokenizer *t, const uint8_t *p, size_t n, uint64_t h, size_t *n_ids) {
    for (uint32_t i = (uint32_t)h & (CACHE_SLOTS - 1);; i = (i + 1) & (CACHE_SLOTS - 1)) {
        const cache_slot *s = &t->cache[i];
        if (!s->hash) return NULL;
        if (s->hash == h && s->key_len == n && memcmp(t->cache_keys + s->key_off, p, n) == 0) {
            *n_ids = s->n_ids;
            return t->cache_ids + s->ids_off;
        }
    }
}

static void cache_put(tokenizer *t, const uint8_t *p, size_t n, uint64_t h, const uint32_t *ids, size_t k) {
    if (t->cache_used >= CACHE_MAX_USED || t->cache_key_used + n > CACHE_KEY_CAP ||
        t->cache_ids_used + k > CACHE_IDS_CAP) {
        memset(t->cache, 0, CACHE_SLOTS * sizeof *t->cache);
        t->cache_used = t->cache_key_used = t->cache_ids_used = 0;
    }
    uint32_t i = (uint32_t)h & (CACHE_SLOTS - 1);
    while (t->cache[i].hash) i = (i + 1) & (CACHE_SLOTS - 1);
    memcpy(t->cache_keys + t->cache_key_used, p, n);
    memcpy(t->cache_ids + t->cache_ids_used, ids, k * sizeof *ids);
    t->cache[i] = (cache_slot){h, t->cache_key_used, t->cache_ids_used, (uint16_t)n, (uint16_t)k};
    t->cache_key_used += (uint32_t)n;
    t->cache_ids_used += (uint32_t)k;
    t->cache_used++;
}

// Appends the ids of one pre-split piece (no hot-cache lookup).
static int encode_piece_slow(tokenizer *t, const uint8_t *p, size_t n, tok_ids *out) {
    int whole = rank_of(t, p, n);
    if (whole >= 0) return tok_ids_push(out, (uint32_t)whole);
    uint64_t h = 0;
    if (n <= CACHE_MAX_PIECE) {
        h = bytes_hash(p, n) | 1;  // never 0, the empty mark
        size_t k;
        const uint32_t *ids = cache_get(t, p, n, h, &k);
        if (ids) {
            if (ids_reserve(out, k)) return -1;
            memcpy(out->v + out->n, ids, k * sizeof *ids);
            out->n += k;
            return 0;
        }
    }
    if (n > TOK_MERGE_WINDOW) {  // see tokenizer.h: merged window by window
        for (size_t o = 0; o < n; o += TOK_MERGE_WINDOW)
            if (encode_piece_slow(t, p + o, n - o < TOK_MERGE_WINDOW ? n - o : TOK_MERGE_WINDOW, out)) return -1;
        return 0;
    }
    if (scratch_reserve(t, n)) return -1;
    size_t parts = 0;
    if (n > heap_threshold) {
        if (merge_heap(t, p, n, &parts)) return -1;
    } else {
        parts = merge_scan(t, p, n);
    }
    if (ids_reserve(out, parts)) return -1;
    uint32_t *dst = out->v + out->n;
    for (size_t i = 0; i < parts; i++) {
        int r = rank_of(t, p + t->starts[i], t->starts[i + 1] - t->starts[i]);
        dst[i] = (uint32_t)r;  // every part is a token: merges only make tokens
    }
    out->n += parts;
    if (h) cache_put(t, p, n, h, dst, parts);
    return 0;
}

// Appends the ids of one pre-split piece.
static int encode_piece(tokenizer *t, const uint8_t *p, size_t n, tok_ids *out) {
    if (n == 1) return tok_ids_push(out, (uint32_t)t->byte_rank[p[0]]);
    if (n > HOT_KEY) return encode_piece_slow(t, p, n, out);
    hot_slot *e = &t->hot[(bytes_hash(p, n) >> 40) & (HOT_SLOTS - 1)];
    if (e->len == n && bytes_eq(e->key, p, n)) {
        if (ids_reserve(out, e->n_ids)) return -1;
        for (int i = 0; i < e->n_ids; i++) out->v[out->n++] = e->ids[i];
        return 0;
    }
    size_t before = out->n;
    if (encode_piece_slow(t, p, n, out)) return -1;
    size_t k = out->n - before;
    if (k <= HOT_IDS) {
        memcpy(e->key, p, n);
        e->len = (uint8_t)n, e->n_ids = (uint8_t)k;
        memcpy(e->ids, out->v + before, k * sizeof *e->ids);
    }
    return 0;
}

typedef struct {
    tokenizer *t;
    tok_ids *out;
} encode_ctx;

static int encode_cb(const uint8_t *piece, size_t len, void *ctx) {
    encode_ctx *c = ctx;
    return encode_piece(c->t, piece, len, c->out);
}

int tok_encode(tokenizer *t, const uint8_t *text, size_t n, int allow_special, tok_ids *out) {
    encode_ctx c = {t, out};
    if (!allow_special || t->n_specials == 0) return pretok_split(t->pre, text, n, encode_cb, &c);
    // Split at special-token text: the earliest occurrence, the first listed on a tie.
    // next[i] caches where special i occurs next (n: nowhere), so each is searched once
    // per occurrence rather than once per split.
    size_t stack_next[8], *next = t->n_specials <= 8 ? stack_next : malloc((size_t)t->n_specials * sizeof *next);
    if (!next) return mo_errorf("out of memory");
    for (int i = 0; i < t->n_specials; i++) next[i] = SIZE_MAX;  // not searched yet
    size_t pos = 0;
    int rc = 0;
    while (pos < n && !rc) {
        size_t best = n;
        int which = -1;
        for (int i = 0; i < t->n_specials; i++) {
            if (next[i] == SIZE_MAX || (next[i] < pos && next[i] != n)) {
                const uint8_t *hit = memmem(text + pos, n - pos, t->specials[i], t->special_len[i]);
                next[i] = hit ? (size_t)(hit - text) : n;
            }
            if (next[i] < best) best = next[i], which = i;
        }
        if (best > pos) rc = pretok_split(t->pre, text + pos, best - pos, encode_cb, &c);
        if (rc || which < 0) break;
        rc = tok_ids_push(out, (uint32_t)(t->n_ranks + which));
        pos = best + t->special_len[which];
    }
    if (next != stack_next) free(next);
    return rc;
}

// ---------------------------------------------------------------- decoding

const uint8_t *tok_token_bytes(const tokenizer *t, uint32_t id, size_t *len) {
    if (id < (uint32_t)t->n_ranks) {
        *len = t->off[id + 1] - t->off[id];
        return t->blob + t->off[id];
    }
    if (id < (uint32_t)(t->n_ranks + t->n_specials)) {
        *len = t->special_len[id - t->n_ranks];
        return (const uint8_t *)t->specials[id - t->n_ranks];
    }
    mo_errorf("token id %u is out of range (this tokenizer has %d ids)", id, tok_vocab_size(t));
    return NULL;
}

int tok_rank(const tokenizer *t, const uint8_t *p, size_t n) { return rank_of(t, p, n); }

int tok_decode(const tokenizer *t, const uint32_t *ids, size_t n, uint8_t **out, size_t *out_len) {
    size_t total = 0, len;
    for (size_t i = 0; i < n; i++) {
        if (!tok_token_bytes(t, ids[i], &len)) return -1;
        total += len;
    }
    uint8_t *buf = malloc(total + 1);
    if (!buf) return mo_errorf("out of memory decoding %zu ids", n);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *b = tok_token_bytes(t, ids[i], &len);
        memcpy(buf + o, b, len);
        o += len;
    }
    buf[o] = 0;
    *out = buf;
    *out_len = o;
    return 0;
}

// ---------------------------------------------------------------- writing

uint8_t *tok_tiktoken_text(const uint8_t *const *tokens, const size_t *lens, int n, size_t *out_len) {
    size_t total = 1;
    for (int r = 0; r < n; r++) total += (lens[r] + 2) / 3 * 4 + 16;  // base64, " rank\n"
    char *out = malloc(total);
    if (!out) {
        mo_errorf("out of memory for a %d-token vocabulary", n);
        return NULL;
    }
    size_t k = 0;
    for (int r = 0; r < n; r++) {
        k += b64_encode(tokens[r], lens[r], out + k);
        k += (size_t)snprintf(out + k, total - k, " %d\n", r);
    }
    *out_len = k;
    return (uint8_t *)out;
}

int tok_write_tiktoken(const char *path, const uint8_t *const *tokens, const size_t *lens, int n) {
    size_t len;
    uint8_t *text = tok_tiktoken_text(tokens, lens, n, &len);
    if (!text) return -1;
    atomic_file a;
    FILE *f = atomic_open(&a, path, "wb");
    if (!f) {
        free(text);
        return -1;
    }
    int bad = fwrite(text, 1, len, f) != len;
    free(text);
    return atomic_commit(&a, bad);
}
