// hash.h: a 64-bit content hash (FNV-1a over 64-bit words, then the tail bytes), for
// fingerprints that compare files across processes (train/trainer_open.c: every rank of a
// distributed run must hold the same data, config, tokenizer and binary). Not for
// security; stable across runs and machines of the same byte order.
#ifndef MONOLITH_HASH_H
#define MONOLITH_HASH_H

#include <stddef.h>
#include <stdint.h>

#define MO_HASH_INIT 0xcbf29ce484222325ULL

// Continues hash h over n bytes at p.
uint64_t mo_hash(uint64_t h, const void *p, size_t n);
// Continues hash h over the bytes of the file at path; -1 (all ones) if it cannot be read.
uint64_t mo_hash_file(uint64_t h, const char *path);

#endif
