// cmd_tokenizer.c: `monolith tokenizer train|encode|decode`.
//
//   train   --vocab-size N --input FILES... -o tok.tiktoken
//   encode  --tokenizer T [--input F]... [--allow-special]   ids, space-separated, one line per input
//   decode  --tokenizer T [--input F]                        ids (any white space) -> the exact bytes
//
// T is a .tiktoken file or a checkpoint (.h5) that stores its tokenizer. Without --input,
// encode and decode read stdin (encode: all of stdin is one input, so one line of ids).
#include "tools/commands.h"

#include "data/bpe_train.h"
#include "data/corpus.h"
#include "data/tokenizer.h"
#include "data/tokenizer_h5.h"
#include "engine/base/error.h"
#include "engine/base/file.h"
#include "tools/progress.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage =
    "usage: monolith tokenizer train  --vocab-size N --input FILE|DIR... -o OUT.tiktoken\n"
    "       monolith tokenizer encode --tokenizer T [--input FILE]... [--allow-special]\n"
    "       monolith tokenizer decode --tokenizer T [--input FILE]\n"
    "\n"
    "  train    byte-level BPE on the files (a directory: every file under it), GPT-2 pre-split;\n"
    "           N counts every id, <|endoftext|> included, so a model with --vocab-size N fits\n"
    "  encode   prints the ids of each input (stdin if no --input) space-separated, one line\n"
    "           per input; special-token text is plain text unless --allow-special\n"
    "  decode   reads ids separated by any white space and writes their bytes exactly\n"
    "  T        a .tiktoken file, or a checkpoint (.h5) with a /tokenizer group\n";

// Reads a whole stream into a malloc'd buffer. Returns NULL with mo_error() naming `name`.
static uint8_t *slurp(FILE *f, const char *name, size_t *n) {
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        if (len == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) break;
            buf = nb, cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) {
                free(buf);
                mo_errorf("%s: read error", name);
                return NULL;
            }
            *n = len;
            return buf;
        }
    }
    free(buf);
    mo_errorf("%s: out of memory reading the input", name);
    return NULL;
}

static uint8_t *read_input(const char *path, size_t *n) {
    if (!path || !strcmp(path, "-")) return slurp(stdin, "stdin", n);
    FILE *f = file_open_regular(path);  // a FIFO or device would block or never end: stdin is for streams
    if (!f) {
        mo_errorf("--input %s", mo_error());
        return NULL;
    }
    uint8_t *b = slurp(f, path, n);
    fclose(f);
    return b;
}

// Writes ids as decimal text, space-separated, then a newline; fast for millions of ids.
static int write_ids(const uint32_t *ids, size_t n, FILE *out) {
    char buf[1 << 16];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (k > sizeof buf - 16) {
            if (fwrite(buf, 1, k, out) != k) return -1;
            k = 0;
        }
        if (i) buf[k++] = ' ';
        char tmp[12];
        int t = 0;
        uint32_t v = ids[i];
        do tmp[t++] = (char)('0' + v % 10), v /= 10;
        while (v);
        while (t) buf[k++] = tmp[--t];
    }
    buf[k++] = '\n';
    return fwrite(buf, 1, k, out) == k ? 0 : -1;
}

typedef struct {
    const char *tokenizer, *output;
    const char **inputs;  // as given: files or directories
    int n_inputs;
    long vocab_size;
    int allow_special;
} tok_args;

// Parses the flags after the action. Returns 0, 1 for --help (printed), -1 on a bad flag.
static int parse(int argc, char **argv, tok_args *a) {
    static const struct option longopts[] = {{"tokenizer", required_argument, 0, 't'},
                                             {"input", required_argument, 0, 'i'},
                                             {"output", required_argument, 0, 'o'},
                                             {"vocab-size", required_argument, 0, 'v'},
                                             {"allow-special", no_argument, 0, 's'},
                                             {"help", no_argument, 0, 'h'},
                                             {0}};
    memset(a, 0, sizeof *a);
    a->inputs = calloc((size_t)argc + 1, sizeof *a->inputs);
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:", longopts, NULL)) != -1) {
        switch (c) {
        case 't': a->tokenizer = optarg; break;
        case 'i': a->inputs[a->n_inputs++] = optarg; break;
        case 'o': a->output = optarg; break;
        case 's': a->allow_special = 1; break;
        case 'v': {
            char *end;
            errno = 0;
            a->vocab_size = strtol(optarg, &end, 10);
            if (*end || errno || a->vocab_size <= 0 || a->vocab_size > 10000000) {
                cli_usage_error("tokenizer", "--vocab-size takes a whole number such as 4096, not '%s'", optarg);
                return -1;
            }
            break;
        }
        case 'h': printf("%s", usage); return 1;
        default: cli_getopt_error("tokenizer", c, argv); return -1;
        }
    }
    // Files after --input FILE are more inputs (--input a b c), as docs/design.md section 14 shows.
    while (optind < argc) a->inputs[a->n_inputs++] = argv[optind++];
    return 0;
}

// ctx: the progress of the merges (tools/progress.h).
static void progress_merges(void *ctx, int done, int wanted) {
    progress *p = ctx;
    progress_show(p, done == wanted, "tokenizer train: merges %d/%d  %.1f s", done, wanted, progress_elapsed(p));
}

static int do_train(tok_args *a) {
    if (!a->vocab_size) {
        cli_usage_error("tokenizer", "tokenizer train needs --vocab-size N");
        return 2;
    }
    if (!a->output) {
        cli_usage_error("tokenizer", "tokenizer train needs -o OUT.tiktoken");
        return 2;
    }
    if (!a->n_inputs) {
        cli_usage_error("tokenizer", "tokenizer train needs --input FILE...");
        return 2;
    }
    if (a->vocab_size < 257) {
        mo_errorf("--vocab-size %ld is too small: a byte-level vocabulary needs the 256 single bytes plus 1 "
                  "special token, so at least 257", a->vocab_size);
        return cmd_fail();
    }
    corpus_files files = {0};
    if (corpus_list(a->inputs, a->n_inputs, &files)) {
        corpus_files_free(&files);
        return cmd_fail();
    }
    if (cli_output_distinct(a->output, (const char *const *)files.paths, files.n)) {
        corpus_files_free(&files);
        return cmd_fail();
    }
    bpe_trainer *tr = bpe_trainer_new();
    if (!tr) {
        corpus_files_free(&files);
        return cmd_fail();
    }
    progress pr;
    progress_start(&pr);
    for (size_t i = 0; i < files.n; i++) {
        if (bpe_trainer_add_file(tr, files.paths[i])) {
            bpe_trainer_free(tr);
            corpus_files_free(&files);
            return cmd_fail();
        }
        progress_show(&pr, i + 1 == files.n, "tokenizer train: read %zu/%zu files, %.1f MB, %zu unique pieces  %.1f s",
                      i + 1, files.n, (double)bpe_trainer_bytes(tr) / 1e6, bpe_trainer_pieces(tr),
                      progress_elapsed(&pr));
    }
    corpus_files_free(&files);
    progress_end(&pr);
    double t_read = progress_elapsed(&pr);
    int n_ranks = 0;
    progress pm;
    progress_start(&pm);
    int rc = bpe_train_run(tr, (int)a->vocab_size, 1, progress_merges, &pm, &n_ranks);
    progress_end(&pm);
    if (rc || bpe_trainer_write(tr, a->output)) {
        bpe_trainer_free(tr);
        return cmd_fail();
    }
    fprintf(stderr, "tokenizer train: %d ranks + <|endoftext|> = vocab size %d -> %s (%.1f s in all)\n", n_ranks,
            n_ranks + 1, a->output, t_read + progress_elapsed(&pm));
    if (n_ranks + 1 < a->vocab_size)
        fprintf(stderr, "tokenizer train: note: the corpus ran out of pairs to merge before --vocab-size %ld\n",
                a->vocab_size);
    bpe_trainer_free(tr);
    return 0;
}

static int do_encode(tok_args *a, tokenizer *t) {
    int n = a->n_inputs ? a->n_inputs : 1;
    for (int i = 0; i < n; i++) {
        const char *path = a->n_inputs ? a->inputs[i] : NULL;
        size_t len;
        uint8_t *text = read_input(path, &len);
        if (!text) return cmd_fail();
        tok_ids ids = {0};
        int rc = tok_encode(t, text, len, a->allow_special, &ids);
        free(text);
        if (rc == 0 && write_ids(ids.v, ids.n, stdout)) rc = mo_errorf("stdout: write failed");
        tok_ids_free(&ids);
        if (rc) return cmd_fail();
    }
    return fflush(stdout) == 0 ? 0 : (mo_errorf("stdout: write failed"), cmd_fail());
}

static int do_decode(tok_args *a, tokenizer *t) {
    if (a->n_inputs > 1) {
        cli_usage_error("tokenizer", "tokenizer decode reads one --input (or stdin)");
        return 2;
    }
    const char *path = a->n_inputs ? a->inputs[0] : NULL;
    const char *name = path ? path : "stdin";
    size_t len;
    uint8_t *text = read_input(path, &len);
    if (!text) return cmd_fail();
    tok_ids ids = {0};
    int rc = 0;
    size_t i = 0, line = 1;
    while (i < len && !rc) {
        if (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n') {
            line += text[i++] == '\n';
            continue;
        }
        uint64_t v = 0;
        size_t st = i;
        while (i < len && text[i] >= '0' && text[i] <= '9' && v <= UINT32_MAX) v = v * 10 + (text[i++] - '0');
        int bad = i == st || (i < len && !strchr(" \t\r\n", text[i])) || v > UINT32_MAX;
        if (bad) {
            rc = mo_errorf("%s:%zu: '%.*s' is not a token id (decode reads whole numbers separated by spaces)", name,
                           line, (int)(i - st + 1 < 20 ? i - st + 1 : 20), (const char *)text + st);
        } else if (v >= (uint64_t)tok_vocab_size(t)) {
            rc = mo_errorf("%s:%zu: token id %llu is out of range for %s (vocab size %d)", name, line,
                           (unsigned long long)v, a->tokenizer, tok_vocab_size(t));
        } else {
            rc = tok_ids_push(&ids, (uint32_t)v);
        }
    }
    free(text);
    uint8_t *out = NULL;
    size_t out_len = 0;
    if (!rc) rc = tok_decode(t, ids.v, ids.n, &out, &out_len);
    if (!rc && (fwrite(out, 1, out_len, stdout) != out_len || fflush(stdout) != 0))
        rc = mo_errorf("stdout: write failed");
    free(out);
    tok_ids_free(&ids);
    return rc ? cmd_fail() : 0;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc < 2) return cli_usage_error("tokenizer", "tokenizer needs an action: train, encode or decode");
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        printf("%s", usage);
        return 0;
    }
    const char *action = argv[1];
    tok_args a;
    int rc = parse(argc - 1, argv + 1, &a);
    if (rc) {
        free(a.inputs);
        return rc > 0 ? 0 : 2;
    }
    if (!strcmp(action, "train")) {
        rc = do_train(&a);
    } else if (!strcmp(action, "encode") || !strcmp(action, "decode")) {
        if (!a.tokenizer) {
            cli_usage_error("tokenizer", "tokenizer %s needs --tokenizer T (a .tiktoken file or a checkpoint)", action);
            rc = 2;
        } else {
            tokenizer *t = tok_open(a.tokenizer);
            if (!t) {
                rc = cmd_fail();
            } else {
                rc = !strcmp(action, "encode") ? do_encode(&a, t) : do_decode(&a, t);
                tok_free(t);
            }
        }
    } else {
        cli_usage_error("tokenizer", "unknown tokenizer action '%s' (there are: train, encode, decode)", action);
        rc = 2;
    }
    free(a.inputs);
    return rc;
}
