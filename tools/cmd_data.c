// cmd_data.c: `monolith data prepare`: text files -> one monolith-tokens file per domain.
//
// One input file is one document. A directory given as input stands for every regular
// file under it (recursively, in byte order of the paths), so a domain can be a folder.
// Documents go to val or train whole: round(F * n) of the n non-empty documents (at
// least one when F > 0 and n >= 2, never all of them) chosen by a shuffle seeded with
// --seed, so the same inputs and seed always give the same split.
#include "tools/commands.h"

#include "data/corpus.h"
#include "data/tokenizer.h"
#include "data/tokenizer_h5.h"
#include "data/tokens.h"
#include "engine/base/error.h"
#include "engine/base/rng.h"

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
#include <time.h>
#include <unistd.h>

static const char *usage =
    "usage: monolith data prepare --tokenizer T --domain NAME [--val-fraction F] [--seed S]\n"
    "                             --input FILE|DIR... -o NAME.h5\n"
    "\n"
    "  Encodes every input file as one document (a directory: every file under it) and writes\n"
    "  a monolith-tokens file: /train/tokens and /val/tokens, each document preceded by\n"
    "  <|endoftext|>, split into train/val by document (default F = 0.05, S = 1).\n"
    "  T is a .tiktoken file or a checkpoint (.h5) that stores its tokenizer.\n";

// Where to cut a long document so that encoding the parts separately gives the same ids
// as encoding it whole: just before a '\n' that follows a printable ASCII byte. No
// pre-split piece crosses such a point (the piece before it ends at the '\n', and the
// pattern has no look-behind). Searches [from, limit); returns limit if there is none
// there (a document without such lines: cut anyway, so memory stays bounded; only the
// ids right at that cut can differ from a whole-file encode, the bytes never do).
static size_t safe_cut(const uint8_t *t, size_t from, size_t limit) {
    for (size_t i = from ? from : 1; i < limit; i++)
        if (t[i] == '\n' && t[i - 1] > 0x20 && t[i - 1] < 0x7f) return i;
    return limit;
}

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

// Streams one (large) document into the token set segment by segment.
static int encode_file_streaming(tokenizer *tok, tokset_writer *w, const char *path, int split, tok_ids *ids) {
    const uint8_t *text;
    size_t n;
    if (map_file(path, &text, &n)) return -1;
    int rc = tokset_begin_document(w, split);
    for (size_t pos = 0; pos < n && !rc;) {
        size_t end = n - pos > SEGMENT ? safe_cut(text, pos + SEGMENT, n - pos > 4 * SEGMENT ? pos + 4 * SEGMENT : n) : n;
        ids->n = 0;
        rc = tok_encode(tok, text + pos, end - pos, 0, ids);
        if (!rc) rc = tokset_append(w, ids->v, ids->n);
        pos = end;
    }
    if (n) munmap((void *)text, n);
    return rc ? path_error(path) : 0;
}

// Encodes one small document whole into ids (ids->n reset). Returns 0 or -1.
static int encode_file_whole(tokenizer *tok, const char *path, tok_ids *ids) {
    const uint8_t *text;
    size_t n;
    if (map_file(path, &text, &n)) return -1;
    ids->n = 0;
    int rc = n ? tok_encode(tok, text, n, 0, ids) : 0;
    if (n) munmap((void *)text, n);
    return rc ? path_error(path) : 0;
}

#define BATCH_DOCS 256
#define BATCH_BYTES ((uint64_t)64 << 20)

// Encodes documents [first, end) in parallel, one tokenizer per thread, then writes them
// in input order, so the file never depends on the thread count. Returns 0 or -1.
static int encode_batch(tokenizer **toks, tokset_writer *w, char *const *paths, const uint8_t *is_val, size_t first,
                        size_t end, tok_ids *ids, char (*errs)[512]) {
    int failed = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(| : failed)
    for (size_t i = first; i < end; i++) {
        size_t b = i - first;
        if (encode_file_whole(toks[omp_get_thread_num()], paths[i], &ids[b])) {
            snprintf(errs[b], 512, "%s", mo_error());
            failed = 1;
        } else {
            errs[b][0] = 0;
        }
    }
    for (size_t i = first; i < end; i++) {
        size_t b = i - first;
        if (failed && errs[b][0]) return mo_errorf("%s", errs[b]);
        if (tokset_begin_document(w, is_val[i] ? TOKSET_VAL : TOKSET_TRAIN) || tokset_append(w, ids[b].v, ids[b].n))
            return -1;
    }
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
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
    unsigned long long seed = 1;
    corpus_files inputs = {0};
    const char **raw = calloc((size_t)argc + 1, sizeof *raw);
    int n_raw = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:", longopts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 't': tok_path = optarg; break;
        case 'd': domain = optarg; break;
        case 'o': out = optarg; break;
        case 'i': raw[n_raw++] = optarg; break;
        case 'f':
            frac = strtod(optarg, &end);
            if (*end || !(frac >= 0 && frac < 1)) {
                fprintf(stderr, "monolith: --val-fraction takes a number in [0, 1) such as 0.05, not '%s'\n", optarg);
                free(raw);
                return 2;
            }
            break;
        case 's':
            errno = 0;
            seed = strtoull(optarg, &end, 10);
            if (*end || errno) {
                fprintf(stderr, "monolith: --seed takes a whole number, not '%s'\n", optarg);
                free(raw);
                return 2;
            }
            break;
        case 'h': printf("%s", usage); free(raw); return 0;
        default: fprintf(stderr, "%s", usage); free(raw); return 2;
        }
    }
    while (optind < argc) raw[n_raw++] = argv[optind++];  // --input a b c
    const char *missing = !tok_path ? "--tokenizer T" : !domain ? "--domain NAME" : !out ? "-o NAME.h5"
                          : !n_raw  ? "--input FILE..." : NULL;
    if (missing) {
        fprintf(stderr, "monolith: data prepare needs %s\n%s", missing, usage);
        free(raw);
        return 2;
    }
    int rc = 0;
    rc = corpus_list(raw, n_raw, &inputs);
    free(raw);
    if (!rc && inputs.n == 0) rc = mo_errorf("the inputs hold no text (every file is empty): nothing to prepare");
    tokenizer *tok = rc ? NULL : tok_open(tok_path);
    if (!rc && !tok) rc = -1;
    if (!rc && tok_eot(tok) < 0)
        rc = mo_errorf("%s: the tokenizer has no <|endoftext|> token to separate documents", tok_path);
    if (rc) {
        tok_free(tok);
        corpus_files_free(&inputs);
        return cmd_fail();
    }

    // Which documents go to val: a seeded shuffle, the first n_val of it.
    size_t n = inputs.n, n_val = (size_t)llround(frac * (double)n);
    if (frac > 0 && n >= 2 && n_val == 0) n_val = 1;
    if (n_val >= n) n_val = n - 1;
    if (frac > 0 && n_val == 0)
        fprintf(stderr, "data prepare: note: one document only, so the val split is empty (one file is one "
                        "document: cut big files into several to get a val split)\n");
    uint8_t *is_val = calloc(n, 1);
    size_t *perm = malloc(n * sizeof *perm);
    if (!is_val || !perm) {
        free(is_val), free(perm), tok_free(tok), corpus_files_free(&inputs);
        mo_errorf("out of memory");
        return cmd_fail();
    }
    mo_rng r;
    mo_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) perm[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)mo_rng_below(&r, i);
        size_t t = perm[i - 1];
        perm[i - 1] = perm[j], perm[j] = t;
    }
    for (size_t i = 0; i < n_val; i++) is_val[perm[i]] = 1;
    free(perm);

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
    uint64_t *sizes = calloc(n, sizeof *sizes);
    if (!toks || !ids || !errs || !sizes) rc = mo_errorf("out of memory");
    if (toks) toks[0] = tok;
    for (int i = 1; i < nth && !rc; i++)
        if (!(toks[i] = tok_clone(tok))) rc = -1;
    for (size_t i = 0; i < n && !rc; i++) {
        struct stat st;
        sizes[i] = stat(inputs.paths[i], &st) == 0 ? (uint64_t)st.st_size : 0;
    }
    double t0 = now_s(), last = t0;
    uint64_t bytes = 0;
    for (size_t i = 0; i < n && !rc;) {
        size_t j = i;
        uint64_t batch_bytes = 0;
        while (j < n && j - i < BATCH_DOCS && sizes[j] <= SEGMENT && batch_bytes + sizes[j] <= BATCH_BYTES)
            batch_bytes += sizes[j++];
        if (j > i) {
            rc = encode_batch(toks, w, inputs.paths, is_val, i, j, ids, errs);
        } else {  // a large document
            rc = encode_file_streaming(tok, w, inputs.paths[i], is_val[i] ? TOKSET_VAL : TOKSET_TRAIN, &ids[0]);
            j = i + 1;
        }
        for (size_t k2 = i; k2 < j; k2++) bytes += sizes[k2];
        i = j;
        double t = now_s();
        if (t - last > 0.5 || i == n) {
            fprintf(stderr, "\rdata prepare %s: %zu/%zu documents, %.1f MB, %.1f MB/s", domain, i, n,
                    (double)bytes / 1e6, (double)bytes / 1e6 / (t - t0 > 1e-9 ? t - t0 : 1e-9));
            last = t;
        }
    }
    fprintf(stderr, "\n");
    for (int i = 1; toks && i < nth; i++) tok_free(toks[i]);
    for (int b = 0; ids && b < BATCH_DOCS; b++) tok_ids_free(&ids[b]);
    free(toks), free(ids), free(errs), free(sizes);
    uint64_t tr = w ? tokset_written(w, TOKSET_TRAIN) : 0, va = w ? tokset_written(w, TOKSET_VAL) : 0;
    uint64_t dtr = w ? tokset_documents(w, TOKSET_TRAIN) : 0, dva = w ? tokset_documents(w, TOKSET_VAL) : 0;
    if (rc) {
        tokset_abort(w);
    } else {
        rc = tokset_finish(w);
    }
    if (!rc)
        printf("%s: domain %s, train %llu tokens (%llu documents), val %llu tokens (%llu documents), "
               "vocab %d, tokenizer %s\n", out, domain, (unsigned long long)tr, (unsigned long long)dtr,
               (unsigned long long)va, (unsigned long long)dva, tok_vocab_size(tok), tok_hash(tok));
    free(is_val);
    tok_free(tok);
    corpus_files_free(&inputs);
    return rc ? cmd_fail() : 0;
}

int cmd_data(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "prepare")) return prepare(argc - 1, argv + 1);
    int help = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"));
    if (argc >= 2 && !help) fprintf(stderr, "monolith: unknown data action '%s'\n", argv[1]);
    fprintf(help ? stdout : stderr, "%s", usage);
    return help ? 0 : 2;
}
