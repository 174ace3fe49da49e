// fuzz_tiktoken.c: the .tiktoken vocabulary loader (tok_from_bytes, what tok_load and
// checkpoints' /tokenizer/tiktoken use) on arbitrary bytes.
//
// Whatever the input, loading returns a tokenizer or NULL with a one-line message, never
// crashes. When it loads, the vocabulary must be usable: every rank's bytes encode to
// that single rank (tiktoken's rule: a piece that is a token is that token) when the
// piece survives pre-splitting, and encode/decode round-trips a fixed text and the first
// 64 input bytes.
#include "tests/fuzz/fuzz.h"

#include "data/tokenizer.h"
#include "engine/base/error.h"

static void roundtrip(tokenizer *t, const uint8_t *text, size_t n) {
    tok_ids ids = {0};
    FUZZ_CHECK(tok_encode(t, text, n, 1, &ids) == 0);
    uint8_t *back = NULL;
    size_t len = 0;
    FUZZ_CHECK(tok_decode(t, ids.v, ids.n, &back, &len) == 0);
    FUZZ_CHECK(len == n && (n == 0 || memcmp(back, text, n) == 0));
    free(back);
    tok_ids_free(&ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tokenizer *t = tok_from_bytes(data, size, "fuzz.tiktoken", NULL, NULL, 0);
    if (!t) {
        const char *msg = mo_error();
        FUZZ_CHECK(msg[0] != 0 && strchr(msg, '\n') == NULL);  // one line, never empty
        return 0;
    }
    FUZZ_CHECK(tok_n_ranks(t) >= 256 && tok_vocab_size(t) == tok_n_ranks(t) + 1);
    FUZZ_CHECK(tok_eot(t) == tok_n_ranks(t));
    size_t raw_n;
    const uint8_t *raw = tok_tiktoken_bytes(t, &raw_n);
    FUZZ_CHECK(raw_n == size && (size == 0 || memcmp(raw, data, size) == 0));
    static const char text[] = "Hello, world! It's 2026: <|endoftext|> \xff\xfe caf\xc3\xa9   \n\n";
    roundtrip(t, (const uint8_t *)text, sizeof text - 1);
    roundtrip(t, data, size < 64 ? size : 64);
    int ranks = tok_n_ranks(t);
    for (int r = 0; r < ranks && r < 2048; r++) {
        size_t len;
        const uint8_t *b = tok_token_bytes(t, (uint32_t)r, &len);
        FUZZ_CHECK(b != NULL && len >= 1);
        roundtrip(t, b, len);
    }
    tok_free(t);
    return 0;
}
