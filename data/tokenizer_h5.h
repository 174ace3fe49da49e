// tokenizer_h5.h: a tokenizer from a .tiktoken file or from the /tokenizer group of an
// HDF5 file (a checkpoint: /tokenizer/tiktoken, special_names, special_ids; docs/design.md section 11.2).
#ifndef MONOLITH_TOKENIZER_H5_H
#define MONOLITH_TOKENIZER_H5_H

#include "data/tokenizer.h"

// Opens PATH as a checkpoint's /tokenizer if it is an HDF5 file, else as a .tiktoken
// file. Returns NULL with a one-line mo_error() naming the file (no /tokenizer group,
// bad special ids, and everything tok_load reports).
tokenizer *tok_open(const char *path);

#endif
