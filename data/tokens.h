// tokens.h: the token data set file (`format = "monolith-tokens"`, docs/design.md section 11.6).
//
//   /train/tokens, /val/tokens   1-D, uint16 when vocab_size <= 65536 else uint32, chunked
//   root attrs: format, format_version, created_by, domain, tokenizer_hash, vocab_size,
//               sources, eot_id, n_documents_train, n_documents_val
//
// Every document is preceded by the end-of-text token (so tokens[0] is eot_id and a
// window that starts at a document boundary sees where the document begins), and each
// document lies wholly in train or in val: the split is by document, never by offset.
//
// Writing streams: each split keeps one chunk in memory and appends full chunks to an
// extendible dataset, so memory stays bounded however much text goes in. The file is
// written as PATH.tmp and renamed by tokset_finish (h5io), never left half-written.
#ifndef MONOLITH_TOKENS_H
#define MONOLITH_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#define TOKSET_FORMAT "monolith-tokens"
#define TOKSET_VERSION 1
#define TOKSET_TRAIN 0
#define TOKSET_VAL 1

typedef struct tokset_writer tokset_writer;

// Creates PATH.tmp. `sources` is free text naming where the documents came from (long
// lists are cut to 16 KB). Returns NULL with mo_error() set.
tokset_writer *tokset_create(const char *path, const char *domain, const char *tokenizer_hash, int64_t vocab_size,
                             int64_t eot_id, const char *sources);
// Starts a document in `split` (TOKSET_TRAIN or TOKSET_VAL): writes the eot token.
int tokset_begin_document(tokset_writer *w, int split);
// Appends ids to the current document. Fails on an id >= vocab_size.
int tokset_append(tokset_writer *w, const uint32_t *ids, size_t n);
// Token counts so far (eot tokens included) and documents per split.
uint64_t tokset_written(const tokset_writer *w, int split);
uint64_t tokset_documents(const tokset_writer *w, int split);
// Flushes, writes the attributes and renames PATH.tmp to PATH. Frees w either way.
// Fails (and removes PATH.tmp) if the train split is empty.
int tokset_finish(tokset_writer *w);
// Removes PATH.tmp and frees w.
void tokset_abort(tokset_writer *w);

// What a token set holds, checked on open.
typedef struct {
    char domain[256];
    char tokenizer_hash[64];
    int64_t vocab_size, eot_id;
    uint64_t n_tokens[2];     // per split
    uint64_t n_documents[2];  // per split
    int width;                // bytes per stored token: 2 or 4
} tokset_info;

// Reads and checks the attributes and shapes of PATH: format, the attrs above present,
// both splits 1-D of an unsigned integer type wide enough for vocab_size. Returns 0 or
// -1 with a one-line mo_error() naming the file and what is wrong.
int tokset_info_read(const char *path, tokset_info *info);

// A whole split in memory, in the file's width (2 or 4 bytes per token).
typedef struct {
    void *data;
    uint64_t n;
    int width;
} tokset_split;

static inline uint32_t tokset_at(const tokset_split *s, uint64_t i) {
    return s->width == 2 ? ((const uint16_t *)s->data)[i] : ((const uint32_t *)s->data)[i];
}

// Loads split TOKSET_TRAIN or TOKSET_VAL of PATH (after tokset_info_read), checking
// every id < info->vocab_size. Refuses splits over max_bytes (the caller's memory cap)
// with a message saying so. Returns 0 or -1.
int tokset_load_split(const char *path, const tokset_info *info, int split, uint64_t max_bytes, tokset_split *out);
void tokset_split_free(tokset_split *s);

#endif
