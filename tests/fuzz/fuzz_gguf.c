// fuzz_gguf.c: the GGUF reader on mutated real files: gguf_parse on the bytes (the
// container: counts, lengths, offsets) and gguf_import from a scratch file (what
// `monolith import gguf` runs: keys, shapes, tensor types, the tokenizer).
//
// Every call must either succeed with something consistent or fail with a one-line
// message; never crash, never allocate what a corrupt header claims (a header may claim
// 2^40 tensors: ASan's allocation limit turns a huge allocation into a crash).
#include "tests/fuzz/fuzz.h"

#include "data/tokenizer.h"
#include "engine/base/error.h"
#include "engine/interop/gguf.h"
#include "engine/interop/gguf_model.h"

#include <math.h>

static void check_message(void) {
    const char *msg = mo_error();
    FUZZ_CHECK(msg[0] != 0 && strchr(msg, '\n') == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file g;
    if (gguf_parse(&g, data, size, "fuzz.gguf") == 0) {
        for (uint64_t i = 0; i < g.n_tensors; i++) {
            const gguf_tensor *t = &g.t[i];
            if (!t->data) continue;
            FUZZ_CHECK(t->data >= data && t->nbytes <= size && (size_t)(t->data - data) <= size - t->nbytes);
        }
        for (uint64_t i = 0; i < g.n_kv; i++) {
            const gguf_kv *kv = &g.kv[i];
            if (kv->type != GGUF_VT_ARRAY || kv->arr_type != GGUF_VT_STRING) continue;
            for (uint64_t k = 0; k < kv->n; k++) {
                uint64_t len;
                const char *s = gguf_arr_str(kv, k, &len);
                FUZZ_CHECK((const uint8_t *)s >= data && len <= size && (size_t)((const uint8_t *)s - data) <= size - len);
            }
        }
        gguf_close(&g);
    } else {
        check_message();
    }
    const char *path = fuzz_write_file(data, size, ".gguf");
    if (!path) return 0;
    mo_checkpoint ck;
    if (gguf_import(path, 0, &ck) == 0) {
        FUZZ_CHECK(config_validate(&ck.table.cfg) == 0);
        for (size_t i = 0; i < ck.table.numel; i++) FUZZ_CHECK(isfinite(ck.params[i]));
        FUZZ_CHECK(ck.tokenizer.present);
        tokenizer *t = tok_from_bytes(ck.tokenizer.tiktoken, ck.tokenizer.tiktoken_len, "fuzz",
                                      (const char *const *)ck.tokenizer.special_names, ck.tokenizer.special_ids,
                                      ck.tokenizer.n_special);
        FUZZ_CHECK(t != NULL && tok_vocab_size(t) <= ck.table.cfg.vocab_size);
        tok_free(t);
        ckpt_free(&ck);
    } else {
        check_message();
    }
    return 0;
}
