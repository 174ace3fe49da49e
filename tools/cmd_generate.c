// cmd_generate.c: `monolith generate`: text from a checkpoint and a prompt, streamed
// token by token, with the tokenizer stored in the checkpoint.
#include "tools/commands.h"

#include "data/tokenizer.h"
#include "engine/base/clock.h"
#include "engine/base/error.h"
#include "engine/base/file.h"
#include "engine/checkpoint.h"
#include "infer/infer.h"
#include "infer/sample.h"

#include <errno.h>
#include <float.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: monolith generate --checkpoint CKPT.h5 [--prompt TEXT | --prompt-file FILE] [flags]\n"
    "\n"
    "Generates text, streaming each token as it is produced, until <|endoftext|> or --max-tokens.\n"
    "Without a prompt, generation starts from <|endoftext|> (unconditional samples).\n"
    "\n"
    "  --checkpoint FILE         model and tokenizer (its /tokenizer group)\n"
    "  --prompt TEXT             the text to continue\n"
    "  --prompt-file FILE        the same, read from a file\n"
    "  --allow-special           special-token text in the prompt (<|endoftext|>) becomes its token\n"
    "  --max-tokens N            stop after N generated tokens (default 128)\n"
    "  --temperature T           0 = greedy (always the most likely token); default 0.8\n"
    "  --top-k K                 sample among the K most likely tokens; 0 = all (default 40)\n"
    "  --top-p P                 sample among the most likely tokens holding P of the probability\n"
    "                            (nucleus); 1 = all, 0 = greedy (default 0.95)\n"
    "  --repetition-penalty R    divide the logits of tokens already present by R (default 1 = off)\n"
    "  --seed S                  the same seed gives the same text (default 0)\n"
    "  --show-routing            one line per generated token with the experts each MoE layer chose\n"
    "                            and their gates, instead of the plain text\n"
    "  --experts-only 2,5        route only to these experts (probabilities renormalized over them)\n"
    "  --weights f32|int8        weights of the matrix products: the checkpoint's float32 (default) or\n"
    "                            8-bit copies quantized at load (blocks of 32, ~3.5x less to read per token)\n"
    "  --precision fp32|bf16     arithmetic of the prompt's products: fp32 (default) or bf16 inputs with\n"
    "                            fp32 sums (about 2x faster prefill; needs AVX512_BF16), and the KV cache\n"
    "                            in bf16 (half its memory and of what each new token reads from it)\n"
    "  --threads N               threads (default: one per core)\n";

typedef struct {
    const char *checkpoint, *prompt, *prompt_file;
    int allow_special, max_tokens, show_routing, threads;
    infer_weights weights;
    mo_precision precision;
    int experts[1024], n_experts;
    sample_params sp;
} gen_opts;

// Strict number parsing: the whole argument, finite, in range; one-line errors naming
// the flag.
static int parse_int(const char *flag, const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return mo_errorf("%s '%s': expected a whole number in %ld..%ld", flag, s, lo, hi);
    *out = (int)v;
    return 0;
}

static int parse_float(const char *flag, const char *s, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end) return mo_errorf("%s '%s': expected a number", flag, s);
    // Said here with the text given: as a float it would be 0 or Inf, and the range
    // check after it would report that instead of what was typed.
    if (isfinite(v) && (fabs(v) > FLT_MAX || (v != 0 && fabs(v) < FLT_MIN)))
        return mo_errorf("%s '%s': out of range (a 32-bit float holds about 1.2e-38 to 3.4e38)", flag, s);
    *out = (float)v;
    return 0;
}

static int parse_experts(const char *s, gen_opts *o) {
    o->n_experts = 0;
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 0 || v > 1 << 20 || (*end && *end != ','))
            return mo_errorf("--experts-only '%s': expected a comma list of expert numbers, e.g. 2,5", s);
        if (o->n_experts == (int)(sizeof o->experts / sizeof o->experts[0]))
            return mo_errorf("--experts-only: too many experts listed");
        o->experts[o->n_experts++] = (int)v;
        if (!*end) return 0;
        p = end + 1;
    }
}

// Returns 0 to go on, 1 after --help, -1 on a bad flag (message recorded or printed).
static int parse_opts(int argc, char **argv, gen_opts *o) {
    enum { O_CKPT = 256, O_PROMPT, O_PFILE, O_SPECIAL, O_MAXTOK, O_TEMP, O_TOPK, O_TOPP, O_REP, O_SEED, O_ROUTING,
           O_ONLY, O_THREADS, O_WEIGHTS, O_PRECISION, O_HELP };
    static const struct option longopts[] = {{"checkpoint", required_argument, 0, O_CKPT},
                                             {"prompt", required_argument, 0, O_PROMPT},
                                             {"prompt-file", required_argument, 0, O_PFILE},
                                             {"allow-special", no_argument, 0, O_SPECIAL},
                                             {"max-tokens", required_argument, 0, O_MAXTOK},
                                             {"temperature", required_argument, 0, O_TEMP},
                                             {"top-k", required_argument, 0, O_TOPK},
                                             {"top-p", required_argument, 0, O_TOPP},
                                             {"repetition-penalty", required_argument, 0, O_REP},
                                             {"seed", required_argument, 0, O_SEED},
                                             {"show-routing", no_argument, 0, O_ROUTING},
                                             {"experts-only", required_argument, 0, O_ONLY},
                                             {"threads", required_argument, 0, O_THREADS},
                                             {"weights", required_argument, 0, O_WEIGHTS},
                                             {"precision", required_argument, 0, O_PRECISION},
                                             {"help", no_argument, 0, O_HELP},
                                             {0}};
    memset(o, 0, sizeof *o);
    o->max_tokens = 128;
    o->sp = sample_params_default();
    o->sp.temperature = 0.8f, o->sp.top_k = 40, o->sp.top_p = 0.95f;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case O_CKPT: o->checkpoint = optarg; break;
        case O_PROMPT: o->prompt = optarg; break;
        case O_PFILE: o->prompt_file = optarg; break;
        case O_SPECIAL: o->allow_special = 1; break;
        case O_MAXTOK: rc = parse_int("--max-tokens", optarg, 0, 1 << 30, &o->max_tokens); break;
        case O_TEMP: rc = parse_float("--temperature", optarg, &o->sp.temperature); break;
        case O_TOPK: rc = parse_int("--top-k", optarg, -(1L << 30), 1 << 30, &o->sp.top_k); break;
        case O_TOPP: rc = parse_float("--top-p", optarg, &o->sp.top_p); break;
        case O_REP: rc = parse_float("--repetition-penalty", optarg, &o->sp.repetition_penalty); break;
        case O_SEED: {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end || optarg[0] == '-')
                rc = mo_errorf("--seed '%s': expected a whole number >= 0", optarg);
            o->sp.seed = v;
            break;
        }
        case O_ROUTING: o->show_routing = 1; break;
        case O_ONLY: rc = parse_experts(optarg, o); break;
        case O_THREADS: rc = parse_int("--threads", optarg, 0, 1024, &o->threads); break;
        case O_WEIGHTS:
            if (!strcmp(optarg, "f32") || !strcmp(optarg, "int8"))
                o->weights = !strcmp(optarg, "int8") ? INFER_WEIGHTS_INT8 : INFER_WEIGHTS_F32;
            else
                rc = mo_errorf("--weights '%s': use f32 or int8", optarg);
            break;
        case O_PRECISION: rc = model_precision_parse(optarg, "--precision", &o->precision); break;
        case O_HELP: printf("%s", usage); return 1;
        default:
            if (c == ':')
                rc = mo_errorf("%s needs a value; see monolith generate --help", argv[optind - 1]);
            else
                rc = mo_errorf("unknown flag '%s'; see monolith generate --help", argv[optind - 1]);
        }
        if (rc) return -1;
    }
    if (optind < argc) return mo_errorf("unexpected argument '%s'; see monolith generate --help", argv[optind]);
    if (!o->checkpoint) return mo_errorf("--checkpoint is required: the model to generate with");
    if (o->prompt && o->prompt_file) return mo_errorf("--prompt and --prompt-file: give one of them, not both");
    return sample_params_check(&o->sp);
}

#define PROMPT_FILE_MAX (64 << 20)  // over 10 million tokens of text: far past any context that runs

static char *read_file(const char *path, size_t *n) {
    FILE *f = file_open_regular(path);
    if (!f) {
        mo_errorf("--prompt-file %s", mo_error());
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap) break;
        if (cap >= PROMPT_FILE_MAX) {
            free(buf), fclose(f);
            mo_errorf("--prompt-file %s: more than %d MB, longer than any model's context", path, PROMPT_FILE_MAX >> 20);
            return NULL;
        }
        char *nb = realloc(buf, cap *= 2);
        if (!nb) free(buf);
        buf = nb;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        mo_errorf("--prompt-file %s: %s", path, buf ? "read error" : "out of memory");
        return NULL;
    }
    *n = len;
    return buf;
}

// The checkpoint's tokenizer, or NULL with a message.
static tokenizer *checkpoint_tokenizer(const char *path, const mo_checkpoint *ck) {
    const mo_tokenizer_blob *b = &ck->tokenizer;
    if (!b->present) {
        mo_errorf("%s has no /tokenizer, so its token ids cannot become text; train it with --tokenizer FILE "
                  "(the .tiktoken its data sets were made with)",
                  path);
        return NULL;
    }
    char origin[1100];
    snprintf(origin, sizeof origin, "%s:/tokenizer", path);
    tokenizer *t = tok_from_bytes(b->tiktoken, b->tiktoken_len, origin, (const char *const *)b->special_names,
                                  b->special_ids, b->n_special);
    if (!t) return NULL;
    if (tok_vocab_size(t) > ck->table.cfg.vocab_size) {
        mo_errorf("%s: the tokenizer has %d tokens but the model's vocab_size is %d", path, tok_vocab_size(t),
                  ck->table.cfg.vocab_size);
        tok_free(t);
        return NULL;
    }
    return t;
}

// Length of the well-formed UTF-8 sequence of 2-4 bytes at s[0..n), or 0.
static size_t utf8_seq(const uint8_t *s, size_t n) {
    size_t len = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
    if (!len || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    return len;
}

// A token's bytes as a quoted string for --show-routing lines: well-formed UTF-8 as is,
// quotes, backslashes and control characters escaped, stray bytes (a token may hold
// part of a character) as \xNN.
static void print_quoted(FILE *out, const uint8_t *s, size_t n) {
    fputc('"', out);
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = s[i];
        size_t u = ch >= 0x80 ? utf8_seq(s + i, n - i) : 0;
        if (u) {
            fwrite(s + i, 1, u, out);
            i += u - 1;
        } else if (ch == '"' || ch == '\\') {
            fprintf(out, "\\%c", ch);
        } else if (ch == '\n') {
            fputs("\\n", out);
        } else if (ch == '\t') {
            fputs("\\t", out);
        } else if (ch < 0x20 || ch >= 0x7f) {
            fprintf(out, "\\x%02x", ch);
        } else {
            fputc(ch, out);
        }
    }
    fputc('"', out);
}

// One --show-routing line: index, token text, then per layer the experts and gates of
// the last decode step (the step that fed this token), or a note if it was not fed.
static void print_routing(FILE *out, const infer_ctx *s, const mo_config *c, int index, const uint8_t *text,
                          size_t n, int fed) {
    fprintf(out, "%4d ", index);
    print_quoted(out, text, n);
    if (!fed) {
        fputs("  (not fed: the context is full)\n", out);
        return;
    }
    for (int l = 0; l < c->n_layers; l++) {
        const int *ex;
        const float *g;
        int k = infer_routing(s, 0, l, &ex, &g);
        fprintf(out, "%s L%d", l ? " |" : "  ", l);
        if (!k) fputs(" dense", out);
        for (int j = 0; j < k; j++) fprintf(out, " %d:%.2f", ex[j], g[j]);
    }
    fputc('\n', out);
}

int cmd_generate(int argc, char **argv) {
    gen_opts o;
    int prc = parse_opts(argc, argv, &o);
    if (prc > 0) return 0;
    if (prc < 0) {
        fprintf(stderr, "monolith: %s\n", mo_error());
        return 2;
    }
    if (cli_threads(o.threads)) return 1;

    int rc = 1;
    mo_checkpoint ck;
    tokenizer *tok = NULL;
    infer_ctx *s = NULL;
    sampler smp = {0};
    tok_ids ids = {0};
    char *text = NULL;
    int *hist = NULL;
    float *logits = NULL;
    if (ckpt_load(o.checkpoint, &ck)) return cmd_fail();
    const mo_config *c = &ck.table.cfg;
    if (!(tok = checkpoint_tokenizer(o.checkpoint, &ck))) goto out;

    size_t text_n = 0;
    if (o.prompt_file && !(text = read_file(o.prompt_file, &text_n))) goto out;
    const char *prompt = o.prompt_file ? text : o.prompt;
    if (o.prompt_file == NULL && o.prompt) text_n = strlen(o.prompt);
    if (prompt && tok_encode(tok, (const uint8_t *)prompt, text_n, o.allow_special, &ids)) goto out;
    const int eot = tok_eot(tok);
    if (ids.n == 0) {
        if (eot < 0) {
            mo_errorf("the prompt is empty and the tokenizer has no <|endoftext|> to start from; give --prompt");
            goto out;
        }
        if (tok_ids_push(&ids, (uint32_t)eot)) goto out;
    }
    const int n_prompt = (int)ids.n;
    if (n_prompt > c->max_seq_len) {
        mo_errorf("prompt of %d tokens is longer than the model's max_seq_len %d; shorten it", n_prompt,
                  c->max_seq_len);
        goto out;
    }
    // The context holds the prompt and every generated token but the last.
    long want = (long)n_prompt + o.max_tokens;
    int ctx = want < c->max_seq_len ? (int)want : c->max_seq_len;
    const int V = c->vocab_size, V_tok = tok_vocab_size(tok);
    if (!(s = infer_new(&ck.table, ck.params, 1, ctx))) goto out;
    if (infer_set_weights(s, o.weights) || infer_set_precision(s, o.precision)) goto out;
    if (o.n_experts && infer_restrict_experts(s, o.experts, o.n_experts)) goto out;
    if (sampler_init(&smp, &o.sp, V)) goto out;
    hist = malloc(((size_t)ctx + 1) * sizeof *hist);  // at most ctx tokens are fed, plus the last one
    logits = malloc((size_t)V * sizeof *logits);
    if (!hist || !logits) {
        mo_errorf("out of memory");
        goto out;
    }
    for (int i = 0; i < n_prompt; i++) hist[i] = (int)ids.v[i];

    double t0 = now_seconds();
    if (infer_prefill(s, 0, 1, n_prompt, hist, logits)) goto out;
    double t1 = now_seconds();
    int n_gen = 0, n_decoded = 0, full = 0;
    for (; n_gen < o.max_tokens; n_gen++) {
        // Ids the model has but the tokenizer lacks are never sampled.
        for (int v = 0; v < V_tok; v++)
            if (!isfinite(logits[v])) {  // sampling from them would pick a token at random or the first
                mo_errorf("%s: the logit of token %d is %s at position %d: the model's activations overflow (its "
                          "weights are finite but too large?); this checkpoint cannot generate",
                          o.checkpoint, v, isnan(logits[v]) ? "NaN" : "Inf", n_prompt + n_gen);
                goto out;
            }
        for (int v = V_tok; v < V; v++) logits[v] = -INFINITY;
        int t = sampler_next(&smp, logits, hist, n_prompt + n_gen);
        if (t == eot) break;
        hist[n_prompt + n_gen] = t;
        // Feed the token back: needed for the next one, and it yields its routing.
        int fed = 0;
        if (n_gen + 1 < o.max_tokens || o.show_routing) {
            if (infer_seq_len(s, 0) < infer_max_seq(s)) {
                if (infer_decode(s, 1, NULL, &t, logits)) goto out;
                fed = 1, n_decoded++;
            } else {
                full = 1;
            }
        }
        size_t len;
        const uint8_t *bytes = tok_token_bytes(tok, (uint32_t)t, &len);
        if (!bytes) goto out;
        if (o.show_routing)
            print_routing(stdout, s, c, n_gen, bytes, len, fed);
        else
            fwrite(bytes, 1, len, stdout);
        fflush(stdout);
        if (full) {
            n_gen++;
            break;
        }
    }
    double t2 = now_seconds();
    if (!o.show_routing) fputc('\n', stdout);
    fflush(stdout);  // the text before the statistics on stderr
    if (full)
        fprintf(stderr, "monolith: stopped: the context is full (%d positions, the model's max_seq_len)\n",
                infer_max_seq(s));
    fprintf(stderr, "monolith: prompt %d tokens in %.3f s (%.0f tok/s); %d tokens generated in %.3f s (%.1f tok/s)\n",
            n_prompt, t1 - t0, n_prompt / fmax(t1 - t0, 1e-9), n_gen, t2 - t1,
            n_decoded ? n_decoded / fmax(t2 - t1, 1e-9) : 0.0);
    rc = 0;
out:
    if (rc) cmd_fail();
    free(logits);
    free(hist);
    free(text);
    tok_ids_free(&ids);
    sampler_free(&smp);
    infer_free(s);
    tok_free(tok);
    ckpt_free(&ck);
    return rc;
}
