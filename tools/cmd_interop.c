// cmd_interop.c: `monolith export FORMAT ...` and `monolith import FORMAT ...`: model files
// of other programs (GGUF for llama.cpp, Hugging Face folders), over the library in engine/interop/.
#include "tools/commands.h"

#include "engine/base/error.h"
#include "engine/checkpoint.h"
#include "engine/interop/export_routing.h"
#include "engine/interop/gguf.h"
#include "engine/interop/gguf_model.h"
#include "engine/interop/hf_model.h"
#include "engine/interop/hf_tokenizer.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char export_gguf_usage[] =
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

static const char import_gguf_usage[] =
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
                cli_usage_error("export gguf", "--type takes f32, f16, bf16 or q8_0, not '%s'", optarg);
                return 2;
            }
            break;
        case 'o': out = optarg; break;
        case 'h': fputs(export_gguf_usage, stdout); return 0;
        default: return cli_getopt_error("export gguf", c, argv);
        }
    }
    if (optind + 1 != argc || !out) {
        cli_usage_error("export gguf", "export gguf needs one checkpoint and -o");
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
        case 'h': fputs(import_gguf_usage, stdout); return 0;
        default: return cli_getopt_error("import gguf", c, argv);
        }
    }
    if (optind + 1 != argc || !out) {
        cli_usage_error("import gguf", "import gguf needs one GGUF file and -o");
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

static const char export_hf_usage[] =
    "usage: monolith export hf CKPT.h5 DIR [--dtype f32|f16|bf16] [--shard-size BYTES]\n"
    "\n"
    "hf: a Hugging Face Mixtral folder (config.json, model.safetensors or shards with\n"
    "model.safetensors.index.json, tokenizer.json, generation_config.json) that transformers'\n"
    "MixtralForCausalLM loads with the same logits. The config must be Mixtral's: every layer\n"
    "MoE, no shared experts, norm_topk 1 (else refused naming the field). The q/k rows are\n"
    "permuted for HF's rotate-half RoPE (docs/interop.md).\n"
    "\n"
    "  --dtype T         tensors as f32 (default, exact), f16 or bf16 (rounded to nearest even)\n"
    "  --shard-size N    largest safetensors file in bytes (suffix K, M, G: powers of 1000, as\n"
    "                    transformers' max_shard_size); default 5G. A model over it is sharded.\n";

static const char import_hf_usage[] =
    "usage: monolith import hf DIR -o CKPT.h5 [--max-seq-len N] [--no-tokenizer]\n"
    "\n"
    "hf: a Hugging Face folder of model_type mixtral (config.json, model.safetensors or shards\n"
    "with model.safetensors.index.json, tokenizer.json) as a monolith checkpoint with its\n"
    "tokenizer; F32, F16 and BF16 tensors become float32. Other model types, dtypes and\n"
    "tokenizers (not byte-level BPE with GPT-2's pre-split) are refused by name.\n"
    "\n"
    "  --max-seq-len N   the checkpoint's max_seq_len (default: max_position_embeddings, or the\n"
    "                    sliding window when smaller)\n"
    "  --no-tokenizer    import the weights without tokenizer.json (e.g. a SentencePiece model)\n"
    "  -o, --output F    the checkpoint to write\n";

// "5G", "500M", "2000000": bytes (K, M, G, T are powers of 1000). -1 if it does not parse.
static long long parse_size(const char *s) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v > 0)) return -1;
    double mul = 1;
    if (*end) {
        const char *units = "KMGT";
        const char *u = strchr(units, *end == 'k' ? 'K' : *end);
        if (!u || !*u) return -1;
        for (const char *p = units; p <= u; p++) mul *= 1000;
        end++;
        if (*end == 'B') end++;
        if (*end) return -1;
    }
    v *= mul;
    if (v != (double)(long long)v) return -1;  // a fraction of a byte
    return v >= 1 && v < 9e18 ? (long long)v : -1;
}

// mkdir -p: dir and its missing parents. Returns 0, or -1 with errno set.
static int make_dirs(const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s", dir);
    struct stat st;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s) continue;
        char c = *s;
        *s = 0;
        if (mkdir(p, 0777) && !(errno == EEXIST && !stat(p, &st) && S_ISDIR(st.st_mode))) {
            if (errno == EEXIST) errno = ENOTDIR;
            return -1;
        }
        if (!(*s = c)) return 0;
    }
}

static int export_hf(int argc, char **argv) {
    static const struct option lo[] = {{"dtype", required_argument, 0, 't'},
                                       {"shard-size", required_argument, 0, 's'},
                                       {"help", no_argument, 0, 'h'},
                                       {0}};
    st_dtype dtype = ST_F32;
    long long shard = (long long)HF_DEFAULT_SHARD_SIZE;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
        switch (c) {
        case 't':
            if (!strcmp(optarg, "f32")) dtype = ST_F32;
            else if (!strcmp(optarg, "f16")) dtype = ST_F16;
            else if (!strcmp(optarg, "bf16")) dtype = ST_BF16;
            else {
                cli_usage_error("export hf", "--dtype takes f32, f16 or bf16, not '%s'", optarg);
                return 2;
            }
            break;
        case 's':
            if ((shard = parse_size(optarg)) < 0) {
                cli_usage_error("export hf", "--shard-size takes a byte count like 2000000000, 2G or 500M, not '%s'",
                        optarg);
                return 2;
            }
            break;
        case 'h': fputs(export_hf_usage, stdout); return 0;
        default: return cli_getopt_error("export hf", c, argv);
        }
    }
    if (optind + 2 != argc) {
        cli_usage_error("export hf", "export hf needs a checkpoint and a folder");
        return 2;
    }
    const char *in = argv[optind], *dir = argv[optind + 1];
    mo_checkpoint ck;
    if (ckpt_load(in, &ck)) return cmd_fail();
    if (hf_check_config(&ck.table.cfg) || export_check_routing(&ck.table, ck.params, "Mixtral")) {
        mo_errorf("export hf %s: %s", in, mo_error());
        ckpt_free(&ck);
        return cmd_fail();
    }
    if (make_dirs(dir)) {
        mo_errorf("%s: cannot create the folder: %s", dir, strerror(errno));
        ckpt_free(&ck);
        return cmd_fail();
    }
    hf_export_info info;
    int rc = hf_export_model(&ck, dir, dtype, (uint64_t)shard, &info);
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (!rc && ck.tokenizer.present) rc = hf_tokenizer_write(path, &ck.tokenizer);
    if (rc) {
        mo_errorf("export hf %s: %s", in, mo_error());
        ckpt_free(&ck);
        return cmd_fail();
    }
    printf("%s: mixtral, %d tensors, %.1f MB in ", dir, info.n_tensors, info.bytes / 1e6);
    if (info.n_shards == 1) printf("model.safetensors");
    else printf("%d shards + model.safetensors.index.json", info.n_shards);
    printf(ck.tokenizer.present ? ", tokenizer.json\n" : "; %s has no tokenizer, so no tokenizer.json\n", in);
    ckpt_free(&ck);
    return 0;
}

static int import_hf(int argc, char **argv) {
    static const struct option lo[] = {{"max-seq-len", required_argument, 0, 'm'},
                                       {"no-tokenizer", no_argument, 0, 'n'},
                                       {"output", required_argument, 0, 'o'},
                                       {"help", no_argument, 0, 'h'},
                                       {0}};
    const char *out = NULL;
    int no_tok = 0, max_seq = 0;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:h", lo, NULL)) != -1) {
        switch (c) {
        case 'm': {
            long v;
            if (cli_whole("import hf", "--max-seq-len", optarg, 1, 1 << 24, "a length from 1 to 16777216", &v)) return 2;
            max_seq = (int)v;
            break;
        }
        case 'n': no_tok = 1; break;
        case 'o': out = optarg; break;
        case 'h': fputs(import_hf_usage, stdout); return 0;
        default: return cli_getopt_error("import hf", c, argv);
        }
    }
    if (optind + 1 != argc || !out) {
        cli_usage_error("import hf", "import hf needs one folder and -o");
        return 2;
    }
    const char *dir = argv[optind];
    mo_checkpoint ck;
    if (hf_import_model(dir, max_seq, &ck)) return cmd_fail();
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    int has_json = access(path, F_OK) == 0;
    if (!no_tok && has_json) {
        if (hf_tokenizer_read(path, &ck.tokenizer)) {
            mo_errorf("%s (--no-tokenizer imports the weights alone)", mo_error());
            ckpt_free(&ck);
            return cmd_fail();
        }
        int64_t top = 0;
        for (int i = 0; i < ck.tokenizer.n_special; i++)
            if (ck.tokenizer.special_ids[i] > top) top = ck.tokenizer.special_ids[i];
        if (top >= ck.table.cfg.vocab_size) {
            mo_errorf("%s: token id %lld is outside the model's vocab_size %d", path, (long long)top,
                      ck.table.cfg.vocab_size);
            ckpt_free(&ck);
            return cmd_fail();
        }
    }
    int rc = ckpt_save(out, &ck);
    if (!rc) {
        const mo_config *cf = &ck.table.cfg;
        printf("%s: %d layers, %d experts top-%d, d_model %d, vocabulary %d, max_seq_len %d, %s\n", out, cf->n_layers,
               cf->n_experts, cf->top_k, cf->d_model, cf->vocab_size, cf->max_seq_len,
               ck.tokenizer.present ? "with its tokenizer" : has_json ? "no tokenizer (--no-tokenizer)"
                                                                      : "no tokenizer (the folder has no tokenizer.json)");
    }
    ckpt_free(&ck);
    return rc ? cmd_fail() : 0;
}

// The formats of each direction; `monolith export FORMAT` runs the FORMAT's function with
// argv starting at FORMAT.
typedef struct {
    const char *name;
    command_fn fn;
    const char *usage;
} format_cmd;

static const format_cmd exports[] = {{"gguf", export_gguf, export_gguf_usage}, {"hf", export_hf, export_hf_usage}};
static const format_cmd imports[] = {{"gguf", import_gguf, import_gguf_usage}, {"hf", import_hf, import_hf_usage}};

static int dispatch(const char *verb, const format_cmd *f, int n, int argc, char **argv) {
    if (argc < 2) return cli_usage_error(verb, "%s needs a format: gguf or hf", verb);
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        for (int i = 0; i < n; i++) printf("%s%s", i ? "\n" : "", f[i].usage);
        return 0;
    }
    for (int i = 0; i < n; i++)
        if (!strcmp(argv[1], f[i].name)) return f[i].fn(argc - 1, argv + 1);
    return cli_usage_error(verb, "%s: unknown format '%s'; the formats are gguf and hf", verb, argv[1]);
}

int cmd_export(int argc, char **argv) {
    return dispatch("export", exports, (int)(sizeof exports / sizeof *exports), argc, argv);
}

int cmd_import(int argc, char **argv) {
    return dispatch("import", imports, (int)(sizeof imports / sizeof *imports), argc, argv);
}
