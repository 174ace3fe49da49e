// bpe_merges.c: merge lists recovered from ranks, and GPT-2's byte-to-unicode map.
#include "data/bpe_merges.h"

#include "engine/base/error.h"

#include <stdlib.h>
#include <string.h>

// Printable bytes keep their code point; the rest take U+0100 + their index among the rest.
static int byte_is_printable(int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; }

uint32_t bpe_byte_to_codepoint(uint8_t b) {
    if (byte_is_printable(b)) return b;
    uint32_t n = 0;
    for (int c = 0; c < b; c++) n += !byte_is_printable(c);
    return 0x100 + n;
}

int bpe_codepoint_to_byte(uint32_t cp) {
    if (cp < 0x100) return byte_is_printable((int)cp) ? (int)cp : -1;
    uint32_t n = 0;
    for (int c = 0; c < 256; c++)
        if (!byte_is_printable(c) && n++ == cp - 0x100) return c;
    return -1;
}

char *bpe_bytes_to_text(const uint8_t *p, size_t n, size_t *text_len) {
    char *s = malloc(2 * n + 1);  // every code point is below U+0800: at most 2 UTF-8 bytes
    if (!s) {
        mo_errorf("out of memory for a %zu-byte token", n);
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = bpe_byte_to_codepoint(p[i]);
        if (cp < 0x80) {
            s[k++] = (char)cp;
        } else {
            s[k++] = (char)(0xC0 | (cp >> 6));
            s[k++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    s[k] = 0;
    if (text_len) *text_len = k;
    return s;
}

int bpe_text_to_bytes(const char *text, size_t text_len, uint8_t **out, size_t *n) {
    const uint8_t *s = (const uint8_t *)text;
    uint8_t *b = malloc(text_len + 1);
    if (!b) return mo_errorf("out of memory for a %zu-byte token", text_len);
    size_t k = 0;
    for (size_t i = 0; i < text_len;) {
        uint32_t cp;
        if (s[i] < 0x80) {
            cp = s[i++];
        } else if ((s[i] & 0xE0) == 0xC0 && i + 1 < text_len && (s[i + 1] & 0xC0) == 0x80 && s[i] >= 0xC2) {
            cp = ((uint32_t)(s[i] & 0x1F) << 6) | (s[i + 1] & 0x3F);
            i += 2;
        } else {
            free(b);
            return mo_errorf("byte %zu of token text is not a code point of GPT-2's byte map (code points up to "
                             "U+0143, 1 or 2 UTF-8 bytes)",
                             i);
        }
        int byte = bpe_codepoint_to_byte(cp);
        if (byte < 0) {
            free(b);
            return mo_errorf("U+%04X at byte %zu of token text is not in GPT-2's byte-to-unicode map", cp, i);
        }
        b[k++] = (uint8_t)byte;
    }
    *out = b;
    *n = k;
    return 0;
}

// Replays rank BPE on token r's bytes with merges into ranks < r only; on success the
// parts are the two tokens of r's merge.
static int replay(const tokenizer *t, int r, const uint8_t *p, size_t n, size_t *start, bpe_merge *m) {
    size_t parts = n;
    for (size_t i = 0; i <= n; i++) start[i] = i;  // part i is p[start[i] .. start[i+1])
    for (;;) {
        int best = -1;
        size_t at = 0;
        for (size_t i = 0; i + 1 < parts; i++) {
            int rk = tok_rank(t, p + start[i], start[i + 2] - start[i]);
            if (rk >= 0 && rk < r && (best < 0 || rk < best)) best = rk, at = i;
        }
        if (best < 0) break;
        memmove(start + at + 1, start + at + 2, (parts - at - 1) * sizeof *start);
        parts--;
    }
    if (parts != 2)
        return mo_errorf("token %d (%zu bytes) is not the merge of two lower-ranked tokens: replaying BPE with "
                         "lower ranks leaves %zu parts",
                         r, n, parts);
    m->left = tok_rank(t, p, start[1]);
    m->right = tok_rank(t, p + start[1], n - start[1]);
    return 0;
}

int bpe_merges_recover(const tokenizer *t, bpe_merge *merges) {
    int R = tok_n_ranks(t), n_merges = 0;
    size_t cap = 0, *start = NULL;
    for (int r = 0; r < R; r++) {
        size_t n;
        const uint8_t *p = tok_token_bytes(t, (uint32_t)r, &n);
        merges[r].left = merges[r].right = -1;
        if (n < 2) continue;
        if (n + 1 > cap) {
            free(start);
            cap = 2 * (n + 1);
            start = malloc(cap * sizeof *start);
            if (!start) return mo_errorf("out of memory recovering merges");
        }
        if (replay(t, r, p, n, start, &merges[r]) != 0) {
            free(start);
            return -1;
        }
        n_merges++;
    }
    free(start);
    return n_merges;
}

char *bpe_merge_text(const tokenizer *t, bpe_merge m) {
    size_t na, nb, la, lb;
    const uint8_t *a = m.left >= 0 ? tok_token_bytes(t, (uint32_t)m.left, &na) : NULL;
    const uint8_t *b = m.right >= 0 ? tok_token_bytes(t, (uint32_t)m.right, &nb) : NULL;
    if (!a || !b) {
        mo_errorf("merge (%d, %d) names no token", m.left, m.right);
        return NULL;
    }
    char *ta = bpe_bytes_to_text(a, na, &la), *tb = ta ? bpe_bytes_to_text(b, nb, &lb) : NULL;
    char *s = tb ? malloc(la + lb + 2) : NULL;
    if (s) {
        memcpy(s, ta, la);
        s[la] = ' ';
        memcpy(s + la + 1, tb, lb + 1);
    } else if (tb) {
        mo_errorf("out of memory for a merge");
    }
    free(ta), free(tb);
    return s;
}
