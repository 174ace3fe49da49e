// pretok.c: GPT-2's pre-split through PCRE2 (see pretok.h for the pattern and why).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "data/pretok.h"

#include "engine/base/error.h"

#include <pcre2.h>
#include <stdlib.h>

// JavaScript's \s, which gpt-tokenizer's /u regex uses.
#define WS "\\t\\n\\x0b\\f\\r\\p{Zs}\\x{2028}\\x{2029}\\x{feff}"
static const char *const gpt2_pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+";

struct pretok {
    pcre2_code *re;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit_stack;
    int jit;
};

pretok *pretok_new(void) {
    pretok *p = calloc(1, sizeof *p);
    if (!p) {
        mo_errorf("out of memory");
        return NULL;
    }
    int errcode;
    PCRE2_SIZE erroff;
    p->re = pcre2_compile((PCRE2_SPTR)gpt2_pattern, PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &errcode, &erroff, NULL);
    if (!p->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(errcode, msg, sizeof msg);
        mo_errorf("PCRE2 cannot compile the GPT-2 pattern at offset %zu: %s (is libpcre2-8 built with Unicode?)",
                  (size_t)erroff, (char *)msg);
        pretok_free(p);
        return NULL;
    }
    p->md = pcre2_match_data_create_from_pattern(p->re, NULL);
    p->mctx = pcre2_match_context_create(NULL);
    if (!p->md || !p->mctx) {
        mo_errorf("out of memory");
        pretok_free(p);
        return NULL;
    }
    // JIT is a speed-up only: without it (an architecture PCRE2 cannot JIT for) the
    // interpreter gives the same matches.
    p->jit = pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE) == 0;
    if (p->jit) {
        // Long runs (a 200 KB line of letters) must not exhaust the default 32 KB stack.
        p->jit_stack = pcre2_jit_stack_create(64 * 1024, 8 * 1024 * 1024, NULL);
        if (p->jit_stack) pcre2_jit_stack_assign(p->mctx, NULL, p->jit_stack);
    }
    return p;
}

void pretok_free(pretok *p) {
    if (!p) return;
    pcre2_jit_stack_free(p->jit_stack);
    pcre2_match_context_free(p->mctx);
    pcre2_match_data_free(p->md);
    pcre2_code_free(p->re);
    free(p);
}

int pretok_split(pretok *p, const uint8_t *text, size_t n, pretok_fn fn, void *ctx) {
    size_t pos = 0;
    while (pos < n) {
        int rc = p->jit ? pcre2_jit_match(p->re, text, n, pos, 0, p->md, p->mctx)
                        : pcre2_match(p->re, text, n, pos, 0, p->md, p->mctx);
        size_t ms = n, me = n;
        if (rc >= 0) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(p->md);
            ms = ov[0], me = ov[1];
        } else if (rc != PCRE2_ERROR_NOMATCH) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return mo_errorf("PCRE2 failed to pre-split text at byte %zu: %s", pos, (char *)msg);
        }
        if (ms > pos) {  // ill-formed bytes no pattern item matches: one piece
            int r = fn(text + pos, ms - pos, ctx);
            if (r) return r;
        }
        if (me > ms) {
            int r = fn(text + ms, me - ms, ctx);
            if (r) return r;
        }
        if (me <= pos) break;  // cannot happen (no item matches empty); never loop forever
        pos = me;
    }
    return 0;
}
