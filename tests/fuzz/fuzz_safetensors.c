// fuzz_safetensors.c: the safetensors reader (engine/interop/safetensors.h) and the Hugging Face
// import on top of it (engine/interop/hf_model.h) on arbitrary bytes.
//
// The input is written as model.safetensors into a scratch folder whose config.json is the
// seeds' model (tests/fuzz/make_corpus.sh writes the seeds from it). st_open must either
// accept it with every tensor inside the data, sized by its shape and dtype and no two
// overlapping, or refuse with one line; reading every tensor it accepted must not crash;
// hf_import_model must give a checkpoint of finite weights or one line. Never a crash and
// never an allocation of what the header claims (libFuzzer's malloc limit catches that).
#include "tests/fuzz/fuzz.h"

#include "engine/base/error.h"
#include "engine/interop/hf_model.h"
#include "engine/interop/safetensors.h"

#include <math.h>
#include <sys/stat.h>

// The model of the seeds: tiny's layout at d_model 4, 2 experts (make_corpus.sh).
static const char config_json[] =
    "{\"model_type\": \"mixtral\", \"vocab_size\": 300, \"hidden_size\": 4, \"intermediate_size\": 4,"
    " \"num_hidden_layers\": 1, \"num_attention_heads\": 1, \"num_key_value_heads\": 1, \"head_dim\": 4,"
    " \"num_local_experts\": 2, \"num_experts_per_tok\": 2, \"max_position_embeddings\": 8,"
    " \"rope_theta\": 10000, \"rms_norm_eps\": 1e-05}";

static char dir[300], file[340], cfg[340];

static void cleanup(void) {
    unlink(file);
    unlink(cfg);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    snprintf(dir, sizeof dir, "%s.d", fuzz_scratch_path(".st"));
    snprintf(file, sizeof file, "%s/model.safetensors", dir);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    mkdir(dir, 0700);
    atexit(cleanup);
    FILE *f = fopen(cfg, "w");
    if (!f || fputs(config_json, f) == EOF || fclose(f)) abort();
    return 0;
}

static void check_message(void) {
    const char *msg = mo_error();
    FUZZ_CHECK(msg[0] != 0 && strchr(msg, '\n') == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FILE *out = fopen(file, "wb");
    if (!out) return 0;
    size_t w = size ? fwrite(data, 1, size, out) : 0;
    if (fclose(out) || w != size) return 0;
    st_file sf;
    if (st_open(&sf, file) == 0) {
        uint64_t end = 0;
        for (int i = 0; i < sf.n; i++) {
            const st_tensor *t = &sf.t[i];
            FUZZ_CHECK(t->begin <= t->end && t->end <= sf.data_len);
            FUZZ_CHECK(t->end - t->begin == t->numel * st_dtype_size(t->dtype));
            FUZZ_CHECK(t->begin == t->end || t->begin >= end);  // file order, no overlap
            if (t->end > t->begin) end = t->end;
            FUZZ_CHECK(st_find(&sf, t->name) >= 0);
            float *x = malloc(t->numel ? t->numel * sizeof *x : 1);
            FUZZ_CHECK(x != NULL);
            if (st_read_f32(&sf, i, x)) check_message();
            free(x);
        }
    } else {
        check_message();
    }
    st_close(&sf);
    mo_checkpoint ck;
    if (hf_import_model(dir, 0, &ck) == 0) {
        for (size_t i = 0; i < ck.table.numel; i++) FUZZ_CHECK(isfinite(ck.params[i]));
        ckpt_free(&ck);
    } else {
        check_message();
    }
    return 0;
}
