// hf_tokenizer.c: tokenizer.json <-> a monolith tokenizer (hf_tokenizer.h), with cJSON.
#include "engine/interop/hf_tokenizer.h"

#include "engine/base/error.h"
#include "engine/interop/bpe_vocab.h"
#include "engine/interop/json_io.h"

#include <stdlib.h>
#include <string.h>

#define HF_TOKENIZER_MAX ((size_t)512 << 20)

// GPT-2's pre-split pattern as Hugging Face's ByteLevel pre-tokenizer applies it (and as a
// Split pre-tokenizer spells it), the one data/pretok.h implements.
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static cJSON *byte_level(int use_regex) {
    cJSON *j = cJSON_CreateObject();
    if (j && (!cJSON_AddStringToObject(j, "type", "ByteLevel") || !cJSON_AddFalseToObject(j, "add_prefix_space") ||
              !cJSON_AddTrueToObject(j, "trim_offsets") || !cJSON_AddBoolToObject(j, "use_regex", use_regex))) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

int hf_tokenizer_write(const char *path, const mo_tokenizer_blob *blob) {
    bpe_vocab v;
    if (bpe_vocab_from_blob(blob, &v)) return mo_errorf("%s: %s", path, mo_error());
    cJSON *j = cJSON_CreateObject(), *added = NULL, *model = NULL, *vocab = NULL, *merges = NULL;
    int ok = j && cJSON_AddStringToObject(j, "version", "1.0") && cJSON_AddNullToObject(j, "truncation") &&
             cJSON_AddNullToObject(j, "padding") && (added = cJSON_AddArrayToObject(j, "added_tokens"));
    for (int s = 0; ok && s < blob->n_special; s++) {
        cJSON *a = cJSON_CreateObject();
        ok = a && cJSON_AddItemToArray(added, a) && cJSON_AddNumberToObject(a, "id", (double)blob->special_ids[s]) &&
             cJSON_AddStringToObject(a, "content", blob->special_names[s]) &&
             cJSON_AddFalseToObject(a, "single_word") && cJSON_AddFalseToObject(a, "lstrip") &&
             cJSON_AddFalseToObject(a, "rstrip") && cJSON_AddFalseToObject(a, "normalized") &&
             cJSON_AddTrueToObject(a, "special");
    }
    ok = ok && cJSON_AddNullToObject(j, "normalizer") && cJSON_AddItemToObject(j, "pre_tokenizer", byte_level(1)) &&
         cJSON_AddItemToObject(j, "post_processor", byte_level(1)) && cJSON_AddItemToObject(j, "decoder", byte_level(1)) &&
         (model = cJSON_AddObjectToObject(j, "model")) && cJSON_AddStringToObject(model, "type", "BPE") &&
         cJSON_AddNullToObject(model, "dropout") && cJSON_AddNullToObject(model, "unk_token") &&
         cJSON_AddStringToObject(model, "continuing_subword_prefix", "") &&
         cJSON_AddStringToObject(model, "end_of_word_suffix", "") && cJSON_AddFalseToObject(model, "fuse_unk") &&
         cJSON_AddFalseToObject(model, "byte_fallback") && cJSON_AddTrueToObject(model, "ignore_merges") &&
         (vocab = cJSON_AddObjectToObject(model, "vocab")) && (merges = cJSON_AddArrayToObject(model, "merges"));
    for (int r = 0; ok && r < v.n_ranks; r++) ok = cJSON_AddNumberToObject(vocab, v.tokens[r], r) != NULL;
    for (int s = 0; ok && s < blob->n_special; s++)
        ok = cJSON_AddNumberToObject(vocab, blob->special_names[s], (double)blob->special_ids[s]) != NULL;
    for (int k = 0; ok && k < v.n_merges; k++) ok = cJSON_AddItemToArray(merges, cJSON_CreateString(v.merges[k]));
    int rc = ok ? json_write_file(path, j) : mo_errorf("%s: out of memory", path);
    cJSON_Delete(j);
    bpe_vocab_free(&v);
    return rc;
}

// ---------------------------------------------------------------- read

static int is_null(const cJSON *j) { return !j || cJSON_IsNull(j); }

static const cJSON *get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

// A ByteLevel pre-tokenizer with no prefix space; *regex = its use_regex (default true).
static int byte_level_ok(const cJSON *p, const char *path, const char *where, int *regex) {
    const char *type = NULL;
    int prefix = 0;
    *regex = 1;
    if (json_get_str(p, "type", path, &type) < 0 || json_get_bool(p, "add_prefix_space", path, &prefix) < 0 ||
        json_get_bool(p, "use_regex", path, regex) < 0)
        return -1;
    if (!type || strcmp(type, "ByteLevel")) return 1;
    if (prefix)
        return mo_errorf("%s: %s has add_prefix_space true: monolith does not prepend a space to the text", path, where);
    return 0;
}

// The pre-tokenizer must split text exactly as GPT-2 does.
static int check_pre_tokenizer(const cJSON *p, const char *path) {
    int regex, r;
    if (is_null(p))
        return mo_errorf("%s: pre_tokenizer is null: monolith pre-splits text with GPT-2's pattern (ByteLevel)", path);
    if ((r = byte_level_ok(p, path, "pre_tokenizer", &regex)) < 0) return -1;
    if (!r && regex) return 0;
    const char *type = NULL;
    json_get_str(p, "type", path, &type);
    const cJSON *seq = get(p, "pretokenizers");
    if (type && !strcmp(type, "Sequence") && cJSON_IsArray(seq) && cJSON_GetArraySize(seq) == 2) {
        const cJSON *split = cJSON_GetArrayItem(seq, 0), *pat = get(split, "pattern"), *rx = get(pat, "Regex");
        const char *stype = NULL, *behavior = NULL;
        int invert = 0;
        if (json_get_str(split, "type", path, &stype) < 0 || json_get_str(split, "behavior", path, &behavior) < 0 ||
            json_get_bool(split, "invert", path, &invert) < 0)
            return -1;
        if (stype && !strcmp(stype, "Split") && cJSON_IsString(rx) && behavior && !strcmp(behavior, "Isolated") &&
            !invert) {
            if (strcmp(rx->valuestring, gpt2_pattern))
                return mo_errorf("%s: the pre_tokenizer splits with the pattern \"%.120s\", not GPT-2's: monolith would "
                                 "give other ids",
                                 path, rx->valuestring);
            if ((r = byte_level_ok(cJSON_GetArrayItem(seq, 1), path, "pre_tokenizer's ByteLevel", &regex)) < 0) return -1;
            if (!r && !regex) return 0;
        }
    }
    return mo_errorf("%s: pre_tokenizer is %s, not GPT-2's ByteLevel split: monolith reads byte-level BPE with GPT-2's "
                     "pre-split only",
                     path, type ? type : "(no type)");
}

static int check_model(const cJSON *m, const char *path) {
    const char *type = NULL, *s;
    int fb = 0;
    if (!cJSON_IsObject(m)) return mo_errorf("%s: no \"model\" object", path);
    if (json_get_str(m, "type", path, &type) < 0) return -1;
    if (!type || strcmp(type, "BPE"))
        return mo_errorf("%s: model type is %s: monolith reads byte-level BPE tokenizers only", path,
                         type ? type : "(none)");
    if (json_get_bool(m, "byte_fallback", path, &fb) < 0) return -1;
    if (fb) return mo_errorf("%s: model.byte_fallback is true (a SentencePiece-style BPE): not byte-level BPE", path);
    if (!is_null(get(m, "dropout")) && !(cJSON_IsNumber(get(m, "dropout")) && get(m, "dropout")->valuedouble == 0))
        return mo_errorf("%s: model.dropout is set: monolith's BPE is deterministic", path);
    if (!is_null(get(m, "unk_token")))
        return mo_errorf("%s: model.unk_token is set: byte-level BPE has no unknown token", path);
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        s = NULL;
        if (json_get_str(m, affixes[i], path, &s) < 0) return -1;
        if (s && *s) return mo_errorf("%s: model.%s is \"%s\": not byte-level BPE", path, affixes[i], s);
    }
    return 0;
}

// Merge k as "LEFT RIGHT": the string form, or the [left, right] form of newer files
// (joined into scratch).
typedef struct {
    const cJSON **item;
    char *scratch;
    size_t cap;
} merge_ctx;

static const char *merge_at(void *vctx, int k, size_t *len) {
    merge_ctx *c = vctx;
    const cJSON *m = c->item[k];
    if (cJSON_IsString(m)) {
        *len = strlen(m->valuestring);
        return m->valuestring;
    }
    const cJSON *a = cJSON_GetArrayItem(m, 0), *b = cJSON_GetArrayItem(m, 1);
    if (!cJSON_IsArray(m) || cJSON_GetArraySize(m) != 2 || !cJSON_IsString(a) || !cJSON_IsString(b)) return NULL;
    size_t la = strlen(a->valuestring), lb = strlen(b->valuestring);
    if (la + lb + 2 > c->cap) {
        char *p = realloc(c->scratch, la + lb + 2);
        if (!p) return NULL;
        c->scratch = p, c->cap = la + lb + 2;
    }
    memcpy(c->scratch, a->valuestring, la);
    c->scratch[la] = ' ';
    memcpy(c->scratch + la + 1, b->valuestring, lb + 1);
    *len = la + lb + 1;
    return c->scratch;
}

int hf_tokenizer_read(const char *path, mo_tokenizer_blob *blob) {
    memset(blob, 0, sizeof *blob);
    cJSON *j = json_read_file(path, HF_TOKENIZER_MAX, 1);
    if (!j) return -1;
    int rc = -1, R = 0, ns = 0, n_vocab = 0, n_added = 0, nm = 0;
    const char **texts = NULL, **names = NULL;
    size_t *lens = NULL;
    int64_t *ids = NULL;
    merge_ctx mc = {0};
    const cJSON *model = get(j, "model"), *vocab = get(model, "vocab"), *merges = get(model, "merges");
    const cJSON *added = get(j, "added_tokens"), *e;
    if (!is_null(get(j, "normalizer"))) {
        mo_errorf("%s: a normalizer is set: monolith encodes the text's bytes as they are", path);
        goto out;
    }
    if (check_model(model, path) || check_pre_tokenizer(get(j, "pre_tokenizer"), path)) goto out;
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges)) {
        mo_errorf("%s: model.vocab must be an object and model.merges a list", path);
        goto out;
    }
    if (!is_null(added) && !cJSON_IsArray(added)) {
        mo_errorf("%s: added_tokens must be a list", path);
        goto out;
    }
    n_vocab = cJSON_GetArraySize(vocab);
    n_added = is_null(added) ? 0 : cJSON_GetArraySize(added);
    nm = cJSON_GetArraySize(merges);
    texts = calloc((size_t)n_vocab + 1, sizeof *texts);
    lens = calloc((size_t)n_vocab + 1, sizeof *lens);
    names = calloc((size_t)n_added + 1, sizeof *names);
    ids = calloc((size_t)n_added + 1, sizeof *ids);
    mc.item = calloc((size_t)nm + 1, sizeof *mc.item);
    if (!texts || !lens || !names || !ids || !mc.item) {
        mo_errorf("%s: out of memory", path);
        goto out;
    }
    // Special tokens: every added token, each special, with ids in increasing order.
    cJSON_ArrayForEach(e, added) {
        int64_t id;
        const char *content = NULL;
        int special = 0;
        if (json_get_int(e, "id", 0, 1 << 30, path, &id) != 1 || json_get_str(e, "content", path, &content) != 1 ||
            json_get_bool(e, "special", path, &special) < 0) {
            mo_errorf("%s: added_tokens entry %d needs an integer id and a content string", path, ns);
            goto out;
        }
        if (!special) {
            mo_errorf("%s: added token \"%.80s\" (id %lld) is not special: monolith has only special added tokens", path,
                      content, (long long)id);
            goto out;
        }
        if (ns && id <= ids[ns - 1]) {
            mo_errorf("%s: added tokens must come in increasing id order (\"%.80s\" has id %lld)", path, content,
                      (long long)id);
            goto out;
        }
        names[ns] = content;
        ids[ns++] = id;
    }
    // Ranked tokens: the vocab minus the special tokens, ids 0..R-1.
    R = n_vocab;
    cJSON_ArrayForEach(e, vocab) {
        int64_t id = cJSON_IsNumber(e) ? (int64_t)e->valuedouble : -1;
        int s = 0;
        while (s < ns && ids[s] != id) s++;
        if (s < ns) R--;
    }
    cJSON_ArrayForEach(e, vocab) {
        if (!cJSON_IsNumber(e) || e->valuedouble != (double)(int64_t)e->valuedouble) {
            mo_errorf("%s: vocab entry \"%.80s\" has no integer id", path, e->string);
            goto out;
        }
        int64_t id = (int64_t)e->valuedouble;
        int s = 0;
        while (s < ns && ids[s] != id) s++;
        if (s < ns) {
            if (strcmp(names[s], e->string)) {
                mo_errorf("%s: vocab entry \"%.80s\" has id %lld, which is the special token \"%.80s\"", path, e->string,
                          (long long)id, names[s]);
                goto out;
            }
            continue;
        }
        if (id < 0 || id >= R || texts[id]) {
            mo_errorf("%s: vocab entry \"%.80s\" has id %lld: monolith needs the %d ranked tokens at ids 0..%d, each once, "
                      "and special tokens after them",
                      path, e->string, (long long)id, R, R - 1);
            goto out;
        }
        texts[id] = e->string;
        lens[id] = strlen(e->string);
    }
    for (int s = 0; s < ns; s++)
        if (ids[s] != R + s) {
            mo_errorf("%s: special token \"%.80s\" has id %lld: monolith numbers special tokens right after the %d "
                      "ranked tokens (%d here)",
                      path, names[s], (long long)ids[s], R, R + s);
            goto out;
        }
    int k = 0;
    cJSON_ArrayForEach(e, merges) mc.item[k++] = e;
    rc = bpe_vocab_to_blob(path, texts, lens, R, names, ids, ns, nm, merge_at, &mc, blob);
out:
    free(texts), free(lens), free(names), free(ids), free(mc.item), free(mc.scratch);
    cJSON_Delete(j);
    return rc;
}
