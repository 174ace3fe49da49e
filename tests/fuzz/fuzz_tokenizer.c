// fuzz_tokenizer.c: encode and decode with a small trained vocabulary (vocab.tiktoken,
// 511 ranks + <|endoftext|>).
//
// Input: byte 0 picks the mode, the rest is the payload.
//   even: payload is text. encode (with --allow-special when bit 1 is set), every id must
//         be in range, and decode must give back exactly the payload (byte-level BPE is
//         lossless on any bytes, ill-formed UTF-8 included).
//   odd:  payload is little-endian uint32 ids. decode must succeed exactly when every id
//         is below the vocabulary size, and its length must be the sum of the tokens'.
#include "tests/fuzz/fuzz.h"

#include "data/tokenizer.h"
#include "engine/base/error.h"

static tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    tok = tok_load(MONOLITH_SOURCE_DIR "/tests/fuzz/vocab.tiktoken");
    if (!tok) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", mo_error());
        abort();
    }
    return 0;
}

static void text_mode(const uint8_t *text, size_t n, int allow_special) {
    tok_ids ids = {0};
    FUZZ_CHECK(tok_encode(tok, text, n, allow_special, &ids) == 0);
    uint32_t vocab = (uint32_t)tok_vocab_size(tok), eot = (uint32_t)tok_eot(tok);
    for (size_t i = 0; i < ids.n; i++) {
        FUZZ_CHECK(ids.v[i] < vocab);
        if (!allow_special) FUZZ_CHECK(ids.v[i] != eot);  // special text is plain text
    }
    uint8_t *back = NULL;
    size_t len = 0;
    FUZZ_CHECK(tok_decode(tok, ids.v, ids.n, &back, &len) == 0);
    FUZZ_CHECK(len == n && (n == 0 || memcmp(back, text, n) == 0));
    FUZZ_CHECK(back[len] == 0);
    free(back);
    tok_ids_free(&ids);
}

static void ids_mode(const uint8_t *p, size_t n) {
    size_t k = n / 4;
    uint32_t *ids = malloc((k ? k : 1) * sizeof *ids);
    if (!ids) abort();
    int all_valid = 1;
    size_t want = 0;
    for (size_t i = 0; i < k; i++) {
        ids[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
                 (uint32_t)p[4 * i + 3] << 24;
        // Keep most ids in range so decoding is exercised, not only the refusal.
        if (!(p[4 * i + 3] & 0x80)) ids[i] %= (uint32_t)tok_vocab_size(tok);
        size_t len;
        if (tok_token_bytes(tok, ids[i], &len)) want += len;
        else all_valid = 0;
    }
    uint8_t *out = NULL;
    size_t len = 0;
    int rc = tok_decode(tok, ids, k, &out, &len);
    FUZZ_CHECK((rc == 0) == all_valid);
    if (rc == 0) FUZZ_CHECK(len == want);
    free(out);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (data[0] & 1) ids_mode(data + 1, size - 1);
    else text_mode(data + 1, size - 1, (data[0] >> 1) & 1);
    return 0;
}
