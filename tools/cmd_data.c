// cmd_data.c: `monolith data prepare`: text files -> one monolith-tokens file per domain.
//
// One input file is one document. A directory given as input stands for every regular
// file under it (recursively, in byte order of the paths), so a domain can be a folder.
// The train/val split is data/split.h's: by document when there are enough, otherwise
// by bytes (whole documents, then the tail of one cut at a line end), the same for the
// same inputs and --seed; the command says which it did.
#include "tools/commands.h"

#include "data/corpus.h"
#include "data/loader.h"
#include "data/split.h"
#include "data/tokenizer.h"
#include "data/tokenizer_h5.h"
#include "data/tokens.h"
#include "engine/base/error.h"
#include "tools/progress.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *usage =
    "usage: monolith data prepare --tokenizer T --domain NAME [--val-fraction F] [--seed S]\n"
    "                             --input FILE|DIR... -o NAME.h5\n"
    "\n"
    "  Encodes every input file as one document (a directory: every file under it) and writes\n"
    "  a monolith-tokens file: /train/tokens and /val/tokens, each document preceded by\n"
    "  <|endoftext|>. F of it goes to val (default F = 0.05, S = 1): whole documents chosen by\n"
    "  a shuffle seeded with S when that makes at least 4, otherwise F of the bytes (whole\n"
    "  documents, then the tail of one cut at a line end), so one big file splits too.\n"
    "  T is a .tiktoken file or a checkpoint (.h5) that stores its tokenizer.\n";

// Long documents are encoded in segments cut where no token changes (split_safe_cut);
// a document without such lines is cut anyway, so memory stays bounded (only the ids
// right at that cut can differ from a whole-file encode, the bytes never do).
#define SEGMENT ((size_t)8 << 20)  // encode about 8 MB at a time (at most 32 MB): bounded memory

// Maps a file read-only (NULL with *n = 0 for an empty file). Returns 0 or -1.
static int map_file(const char *path, const uint8_t **text, size_t *n) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return mo_errorf("%s: cannot open (%s)", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return mo_errorf("%s: cannot stat", path);
    }
    *n = (size_t)st.st_size;
    *text = *n ? mmap(NULL, *n, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (*n && *text == MAP_FAILED) return mo_errorf("%s: cannot map (%s)", path, strerror(errno));
    return 0;
}

// Prefixes the current error with the path unless it already names it.
static int path_error(const char *path) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", mo_error());
    return strstr(msg, path) ? -1 : mo_errorf("%s: %s", path, msg);
}

// Bytes [off, off + len) of a mapped file of n bytes, clamped to the file.
static size_t piece_end(const split_piece *pc, size_t n) {
    return pc->off + pc->len < n ? (size_t)(pc->off + pc->len) : n;
}

// Streams one (large) piece into the token set segment by segment.
static int encode_piece_streaming(tokenizer *tok, tokset_writer *w, const char *path, const split_piece *pc,
                                  tok_ids *ids) {
    const uint8_t *text;
    size_t size;
    if (map_file(path, &text, &size)) return -1;
    size_t n = piece_end(pc, size);
    int rc = tokset_begin_document(w, pc->val ? TOKSET_VAL : TOKSET_TRAIN);
    for (size_t pos = pc->off; pos < n && !rc;) {
        size_t end = n - pos > SEGMENT ? split_safe_cut(text, pos + SEGMENT, n - pos > 4 * SEGMENT ? pos + 4 * SEGMENT : n)
                                       : n;
        ids->n = 0;
        rc = tok_encode(tok, text + pos, end - pos, 0, ids);
        if (!rc) rc = tokset_append(w, ids->v, ids->n);
        pos = end;
    }
    if (size) munmap((void *)text, size);
    return rc ? path_error(path) : 0;
}

// Encodes one small piece whole into ids (ids->n reset). Returns 0 or -1.
static int encode_piece_whole(tokenizer *tok, const char *path, const split_piece *pc, tok_ids *ids) {
    const uint8_t *text;
    size_t size;
    if (map_file(path, &text, &size)) return -1;
    size_t n = piece_end(pc, size);
    ids->n = 0;
    int rc = n > pc->off ? tok_encode(tok, text + pc->off, n - pc->off, 0, ids) : 0;
    if (size) munmap((void *)text, size);
    return rc ? path_error(path) : 0;
}

// split_cut_fn over the input files: a cut at a line end near pos (data/split.h).
static uint64_t cut_file(void *ctx, size_t doc, uint64_t pos, uint64_t size) {
    const corpus_files *in = ctx;
    const uint8_t *text;
    size_t n;
    if (map_file(in->paths[doc], &text, &n)) return 0;  // no cut: val keeps the whole documents it has
    size_t c = n == size ? split_text_cut(text, n, (size_t)pos) : 0;
    if (n) munmap((void *)text, n);
    return c;
}

#define BATCH_DOCS 256
#define BATCH_BYTES ((uint64_t)64 << 20)

// Encodes pieces [first, end) in parallel, one tokenizer per thread, then writes them in
// input order, so the file never depends on the thread count. Returns 0 or -1.
static int encode_batch(tokenizer **toks, tokset_writer *w, char *const *paths, const split_piece *pcs, size_t first,
                        size_t end, tok_ids *ids, char (*errs)[512]) {
    int failed = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(| : failed)
    for (size_t i = first; i < end; i++) {
        size_t b = i - first;
        if (encode_piece_whole(toks[omp_get_thread_num()], paths[pcs[i].doc], &pcs[i], &ids[b])) {
            snprintf(errs[b], 512, "%s", mo_error());
            failed = 1;
        } else {
            errs[b][0] = 0;
        }
    }
    for (size_t i = first; i < end; i++) {
        size_t b = i - first;
        if (failed && errs[b][0]) return mo_errorf("%s", errs[b]);
        if (tokset_begin_document(w, pcs[i].val ? TOKSET_VAL : TOKSET_TRAIN) || tokset_append(w, ids[b].v, ids[b].n))
            return -1;
    }
    return 0;
}

// One line saying how the split was made.
static void print_split(const split_plan *sp, const corpus_files *in, double frac) {
    size_t n = in->n;
    double kb = (double)sp->val_bytes / 1e3, share = 100.0 * (double)sp->val_bytes / (double)sp->total_bytes;
    if (sp->val_bytes == 0) {
        printf("val split: empty (%s)\n", frac > 0 ? "the corpus is too small for any" : "--val-fraction 0");
    } else if (sp->by_document) {
        printf("val split: %zu of %zu documents, whole (%.1f KB, %.1f%% of the bytes)\n", sp->n_val_docs, n, kb, share);
    } else {
        printf("val split: %.1f KB (%.1f%% of the bytes): ", kb, share);
        if (sp->n_val_docs) printf("%zu of %zu documents whole%s", sp->n_val_docs, n, sp->cut_doc != SIZE_MAX ? " and " : "");
        if (sp->cut_doc != SIZE_MAX)
            printf("the last %.1f KB of %s (cut at a line end; its head stays in train)",
                   (double)sp->cut_tail / 1e3, in->paths[sp->cut_doc]);
        printf(", since %zu document%s %s too few to split by document\n", n, n == 1 ? "" : "s", n == 1 ? "is" : "are");
    }
}

static int prepare(int argc, char **argv) {
    static const struct option longopts[] = {{"tokenizer", required_argument, 0, 't'},
                                             {"domain", required_argument, 0, 'd'},
                                             {"val-fraction", required_argument, 0, 'f'},
                                             {"seed", required_argument, 0, 's'},
                                             {"input", required_argument, 0, 'i'},
                                             {"output", required_argument, 0, 'o'},
                                             {"help", no_argument, 0, 'h'},
                                             {0}};
    const char *tok_path = NULL, *domain = NULL, *out = NULL;
    double frac = 0.05;
    uint64_t seed = 1;
    corpus_files inputs = {0};
    const char **raw = calloc((size_t)argc + 1, sizeof *raw);
    int n_raw = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":o:", longopts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 't': tok_path = optarg; break;
        case 'd': domain = optarg; break;
        case 'o': out = optarg; break;
        case 'i': raw[n_raw++] = optarg; break;
        case 'f':
            frac = strtod(optarg, &end);
            if (*end || !optarg[0] || !(frac >= 0 && frac < 1)) {
                cli_usage_error("data prepare", "--val-fraction takes a number in [0, 1) such as 0.05, not '%s'", optarg);
                free(raw);
                return 2;
            }
            break;
        case 's':
            if (cli_seed("data prepare", "--seed", optarg, &seed)) {
                free(raw);
                return 2;
            }
            break;
        case 'h': printf("%s", usage); free(raw); return 0;
        default: free(raw); return cli_getopt_error("data prepare", c, argv);
        }
    }
    while (optind < argc) raw[n_raw++] = argv[optind++];  // --input a b c
    const char *missing = !tok_path ? "--tokenizer T" : !domain ? "--domain NAME" : !out ? "-o NAME.h5"
                          : !n_raw  ? "--input FILE..." : NULL;
    if (missing) {
        cli_usage_error("data prepare", "data prepare needs %s", missing);
        free(raw);
        return 2;
    }
    int rc = loader_name_check(domain, "--domain");
    if (!rc) rc = corpus_list(raw, n_raw, &inputs);
    free(raw);
    if (!rc && inputs.n == 0) rc = mo_errorf("the inputs hold no text (every file is empty): nothing to prepare");
    if (!rc) rc = cli_output_distinct(out, (const char *const *)inputs.paths, inputs.n);
    if (!rc) rc = cli_output_distinct(out, &tok_path, 1);
    tokenizer *tok = rc ? NULL : tok_open(tok_path);
    if (!rc && !tok) rc = -1;
    if (!rc && tok_eot(tok) < 0)
        rc = mo_errorf("%s: the tokenizer has no <|endoftext|> token to separate documents", tok_path);
    if (rc) {
        tok_free(tok);
        corpus_files_free(&inputs);
        return cmd_fail();
    }

    size_t n = inputs.n;
    uint64_t *sizes = calloc(n, sizeof *sizes);
    split_plan sp = {0};
    if (!sizes) rc = mo_errorf("out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        struct stat st;
        sizes[i] = stat(inputs.paths[i], &st) == 0 ? (uint64_t)st.st_size : 0;
    }
    if (!rc) rc = split_make(sizes, n, frac, seed, cut_file, &inputs, &sp);
    free(sizes);
    if (rc) {
        tok_free(tok), corpus_files_free(&inputs);
        return cmd_fail();
    }

    size_t src_len = 1;
    for (size_t i = 0; i < n; i++) src_len += strlen(inputs.paths[i]) + 1;
    char *sources = malloc(src_len);
    size_t k = 0;
    for (size_t i = 0; sources && i < n; i++) k += (size_t)sprintf(sources + k, "%s%s", i ? "\n" : "", inputs.paths[i]);
    if (sources) sources[k] = 0;

    tokset_writer *w = sources ? tokset_create(out, domain, tok_hash(tok), tok_vocab_size(tok), tok_eot(tok), sources)
                               : NULL;
    free(sources);
    if (!w) rc = -1;
    // One tokenizer per thread; documents up to SEGMENT bytes are encoded in parallel
    // batches, larger ones stream alone.
    int nth = omp_get_max_threads();
    tokenizer **toks = calloc((size_t)nth, sizeof *toks);
    tok_ids *ids = calloc(BATCH_DOCS, sizeof *ids);
    char(*errs)[512] = calloc(BATCH_DOCS, sizeof *errs);
    if (!toks || !ids || !errs) rc = mo_errorf("out of memory");
    if (toks) toks[0] = tok;
    for (int i = 1; i < nth && !rc; i++)
        if (!(toks[i] = tok_clone(tok))) rc = -1;
    progress pr;
    progress_start(&pr);
    uint64_t bytes = 0;
    const split_piece *pc = sp.p;
    for (size_t i = 0; i < sp.n && !rc;) {
        size_t j = i;
        uint64_t batch_bytes = 0;
        while (j < sp.n && j - i < BATCH_DOCS && pc[j].len <= SEGMENT && batch_bytes + pc[j].len <= BATCH_BYTES)
            batch_bytes += pc[j++].len;
        if (j > i) {
            rc = encode_batch(toks, w, inputs.paths, pc, i, j, ids, errs);
        } else {  // a large piece
            rc = encode_piece_streaming(tok, w, inputs.paths[pc[i].doc], &pc[i], &ids[0]);
            j = i + 1;
        }
        for (size_t k2 = i; k2 < j; k2++) bytes += pc[k2].len;
        i = j;
        double dt = progress_elapsed(&pr);
        progress_show(&pr, i == sp.n, "data prepare %s: %zu/%zu documents, %.1f MB, %.1f MB/s", domain,
                      pc[i - 1].doc + 1, n, (double)bytes / 1e6, (double)bytes / 1e6 / (dt > 1e-9 ? dt : 1e-9));
    }
    progress_end(&pr);
    for (int i = 1; toks && i < nth; i++) tok_free(toks[i]);
    for (int b = 0; ids && b < BATCH_DOCS; b++) tok_ids_free(&ids[b]);
    free(toks), free(ids), free(errs);
    uint64_t tr = w ? tokset_written(w, TOKSET_TRAIN) : 0, va = w ? tokset_written(w, TOKSET_VAL) : 0;
    uint64_t dtr = w ? tokset_documents(w, TOKSET_TRAIN) : 0, dva = w ? tokset_documents(w, TOKSET_VAL) : 0;
    if (rc) {
        tokset_abort(w);
    } else {
        rc = tokset_finish(w);
    }
    if (!rc) print_split(&sp, &inputs, frac);
    if (!rc)
        printf("%s: domain %s, train %llu tokens (%llu documents), val %llu tokens (%llu documents), "
               "vocab %d, tokenizer %s\n", out, domain, (unsigned long long)tr, (unsigned long long)dtr,
               (unsigned long long)va, (unsigned long long)dva, tok_vocab_size(tok), tok_hash(tok));
    split_plan_free(&sp);
    tok_free(tok);
    corpus_files_free(&inputs);
    return rc ? cmd_fail() : 0;
}

int cmd_data(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "prepare")) return prepare(argc - 1, argv + 1);
    int help = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"));
    if (!help) {
        if (argc < 2) return cli_usage_error("data", "data needs an action: prepare");
        return cli_usage_error("data", "unknown data action '%s' (there is: prepare)", argv[1]);
    }
    printf("%s", usage);
    return 0;
}
