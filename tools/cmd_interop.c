// cmd_interop.c: `monolith export FORMAT ...` and `monolith import FORMAT ...`: model files
// of other programs (GGUF for llama.cpp), over the library in interop/.
#include "tools/commands.h"

#include "engine/base/error.h"
#include "engine/checkpoint.h"
#include "interop/gguf.h"
#include "interop/gguf_model.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char export_usage[] =
    "usage: monolith export gguf CKPT.h5 -o FILE.gguf [--type f32|f16|bf16|q8_0]\n"
    "\n"
    "gguf: a GGUF v3 model that llama.cpp runs with the same logits. The architecture is the\n"
    "one that holds the config exactly: llama (every layer MoE, no shared experts,\n"
    "norm_topk 1; or no MoE layer), deepseek (norm_topk 0, dense layers only first, shared\n"
    "experts or none); other configs are refused naming the field. The checkpoint's\n"
    "tokenizer goes in as llama.cpp's byte-level BPE (docs/interop.md).\n"
    "\n"
    "  --type T         matrices as f32 (default), f16, bf16 or q8_0 (norms and routers stay f32;\n"
    "                   q8_0 keeps a matrix whose rows are not a multiple of 32 in f32)\n"
    "  -o, --output F   the file to write\n";

static const char import_usage[] =
    "usage: monolith import gguf FILE.gguf -o CKPT.h5 [--no-tokenizer]\n"
    "\n"
    "gguf: a llama.cpp model of architecture llama (Mixtral-style MoE, or dense) or deepseek\n"
    "(v1) as a monolith checkpoint with its tokenizer; F32, F16, BF16 and Q8_0 tensors are\n"
    "dequantized to float32. Other architectures and tensor types are refused by name.\n"
    "\n"
    "  --no-tokenizer   import the weights of a model whose tokenizer is not byte-level BPE\n"
    "                   with GPT-2's pre-split (e.g. SentencePiece), without a tokenizer\n"
    "  -o, --output F   the checkpoint to write\n";

static int export_gguf(int argc, char **argv) {
    static const struct option lo[] = {
        {"type", required_argument, 0, 't'}, {"output", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'}, {0}};
    const char *out = NULL;
    uint32_t type = GGML_T_F32;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:h", lo, NULL)) != -1) {
        switch (c) {
        case 't':
            if (!strcmp(optarg, "f32")) type = GGML_T_F32;
            else if (!strcmp(optarg, "f16")) type = GGML_T_F16;
            else if (!strcmp(optarg, "bf16")) type = GGML_T_BF16;
            else if (!strcmp(optarg, "q8_0")) type = GGML_T_Q8_0;
            else {
                fprintf(stderr, "monolith: --type takes f32, f16, bf16 or q8_0, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'o': out = optarg; break;
        case 'h': fputs(export_usage, stdout); return 0;
        case ':': fprintf(stderr, "monolith: export gguf: flag %s needs a value\n", argv[optind - 1]); return 2;
        default: fprintf(stderr, "monolith: export gguf: unknown flag '%s'\n%s", argv[optind - 1], export_usage); return 2;
        }
    }
    if (optind + 1 != argc || !out) {
        fprintf(stderr, "monolith: export gguf needs one checkpoint and -o\n%s", export_usage);
        return 2;
    }
    const char *in = argv[optind];
    mo_checkpoint ck;
    if (ckpt_load(in, &ck)) return cmd_fail();
    gguf_export_info info;
    int rc = gguf_export(&ck, type, out, &info);
    ckpt_free(&ck);
    if (rc) {
        mo_errorf("export gguf %s: %s", in, mo_error());
        return cmd_fail();
    }
    printf("%s: architecture %s, %d tensors", out, info.arch, info.n_tensors);
    if (info.shared_padded) printf(", %d zero units padding the shared experts", info.shared_padded);
    if (info.tensors_fallback) printf(", %d tensors kept in F32 (rows not a multiple of 32)", info.tensors_fallback);
    printf("\n");
    return 0;
}

static int import_gguf(int argc, char **argv) {
    static const struct option lo[] = {{"no-tokenizer", no_argument, 0, 'n'},
                                       {"output", required_argument, 0, 'o'},
                                       {"help", no_argument, 0, 'h'},
                                       {0}};
    const char *out = NULL;
    int no_tok = 0;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:h", lo, NULL)) != -1) {
        switch (c) {
        case 'n': no_tok = 1; break;
        case 'o': out = optarg; break;
        case 'h': fputs(import_usage, stdout); return 0;
        case ':': fprintf(stderr, "monolith: import gguf: flag %s needs a value\n", argv[optind - 1]); return 2;
        default: fprintf(stderr, "monolith: import gguf: unknown flag '%s'\n%s", argv[optind - 1], import_usage); return 2;
        }
    }
    if (optind + 1 != argc || !out) {
        fprintf(stderr, "monolith: import gguf needs one GGUF file and -o\n%s", import_usage);
        return 2;
    }
    mo_checkpoint ck;
    if (gguf_import(argv[optind], no_tok, &ck)) return cmd_fail();
    int rc = ckpt_save(out, &ck);
    if (!rc) {
        const mo_config *cf = &ck.table.cfg;
        printf("%s: %d layers (%d MoE), %d experts top-%d, vocabulary %d%s\n", out, cf->n_layers,
               config_n_moe_layers(cf), cf->n_experts, cf->top_k, cf->vocab_size,
               ck.tokenizer.present ? ", with its tokenizer" : ", no tokenizer");
    }
    ckpt_free(&ck);
    return rc ? cmd_fail() : 0;
}

// The formats of each direction; `monolith export FORMAT` runs the FORMAT's function with
// argv starting at FORMAT.
typedef struct {
    const char *name;
    command_fn fn;
} format_cmd;

static const format_cmd exports[] = {{"gguf", export_gguf}};
static const format_cmd imports[] = {{"gguf", import_gguf}};

static int dispatch(const char *verb, const format_cmd *f, int n, const char *usage, int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (int i = 0; i < n; i++)
        if (!strcmp(argv[1], f[i].name)) return f[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "monolith: %s: unknown format '%s'; formats:", verb, argv[1]);
    for (int i = 0; i < n; i++) fprintf(stderr, " %s", f[i].name);
    fprintf(stderr, "\n");
    return 2;
}

int cmd_export(int argc, char **argv) {
    return dispatch("export", exports, (int)(sizeof exports / sizeof *exports), export_usage, argc, argv);
}

int cmd_import(int argc, char **argv) {
    return dispatch("import", imports, (int)(sizeof imports / sizeof *imports), import_usage, argc, argv);
}
