// hash.c: FNV-1a over 64-bit words (engine/base/hash.h).
#include "engine/base/hash.h"

#include <stdio.h>
#include <string.h>

#define PRIME 0x100000001b3ULL

uint64_t mo_hash(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h = (h ^ w) * PRIME;
    }
    for (; i < n; i++) h = (h ^ b[i]) * PRIME;
    return h;
}

uint64_t mo_hash_file(uint64_t h, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return ~0ULL;
    unsigned char buf[1 << 16];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0) h = mo_hash(h, buf, k);
    int bad = ferror(f);
    fclose(f);
    return bad ? ~0ULL : h;
}
