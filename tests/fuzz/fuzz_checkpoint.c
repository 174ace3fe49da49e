// fuzz_checkpoint.c: the HDF5 checkpoint readers on mutated real files: ckpt_load (what
// inspect, generate, dump and train --init use), train_state_load (train --resume),
// tok_open (a checkpoint's /tokenizer) and expert_load (monolith-expert modules: expert
// insert/add, compose).
//
// The input is written to a scratch file and read back. Every call must either succeed
// with a model that matches its own config (finite weights, table of the right size) or
// fail with a one-line message; never crash, never allocate what a corrupt header
// claims (ASan's allocation limit, malloc_limit_mb, turns that into a crash). A crash
// inside libhdf5 itself is not ours to fix: docs/reliability.md lists what is known.
#include "tests/fuzz/fuzz.h"

#include "data/tokenizer_h5.h"
#include "engine/base/error.h"
#include "engine/checkpoint.h"
#include "engine/expert_file.h"
#include "train/state.h"

#include <math.h>

static void check_message(void) {
    const char *msg = mo_error();
    FUZZ_CHECK(msg[0] != 0 && strchr(msg, '\n') == NULL);
}

static void check_model(const mo_checkpoint *ck) {
    FUZZ_CHECK(config_validate(&ck->table.cfg) == 0);
    FUZZ_CHECK(ck->params != NULL && ck->table.n > 0);
    for (size_t i = 0; i < ck->table.numel; i++) FUZZ_CHECK(isfinite(ck->params[i]));
    FUZZ_CHECK(ck->experts.n == ck->table.cfg.n_experts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_file(data, size, ".h5");
    if (!path) return 0;
    mo_checkpoint ck;
    if (ckpt_load(path, &ck) == 0) {
        check_model(&ck);
        ckpt_free(&ck);
    } else {
        check_message();
    }
    float *m = NULL, *v = NULL;
    train_state st;
    if (train_state_load(path, &ck, &m, &v, &st) == 0) {
        check_model(&ck);
        FUZZ_CHECK(m && v && st.n_loader >= 0 && st.n_loader <= TRAIN_LOADER_STATE_MAX);
        ckpt_free(&ck);
        free(m), free(v);
    } else {
        check_message();
    }
    mo_expert x;
    if (expert_load(path, &x) == 0) expert_free(&x);
    else check_message();
    tokenizer *t = tok_open(path);
    if (t) tok_free(t);
    else check_message();
    return 0;
}
