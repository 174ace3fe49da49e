// json_io.h: JSON files of other programs (Hugging Face's config.json, tokenizer.json,
// model.safetensors.index.json) read and written with cJSON, plus the typed look-ups
// their readers need, each failing with one line that names the file and the key.
#ifndef MONOLITH_JSON_IO_H
#define MONOLITH_JSON_IO_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

// Parses the file at `path` (at most max_bytes long). Returns the tree (cJSON_Delete it),
// or NULL with mo_error() naming the file: missing, too big, not JSON, or (when
// `want_object`) not a JSON object.
cJSON *json_read_file(const char *path, size_t max_bytes, int want_object);

// Writes `j` as cJSON formats it (tab indents, one member a line)
// to `path` atomically (PATH.tmp, fsync, rename). Returns 0, or -1 with mo_error().
int json_write_file(const char *path, const cJSON *j);

// obj[key] as an integer in [lo, hi]. Returns 1 if found and valid, 0 if absent or JSON
// null (*v untouched), -1 with mo_error() naming origin and key if present but not such
// an integer.
int json_get_int(const cJSON *obj, const char *key, int64_t lo, int64_t hi, const char *origin, int64_t *v);
// obj[key] as a finite number: same returns.
int json_get_num(const cJSON *obj, const char *key, const char *origin, double *v);
// obj[key] as a string (points into the tree): same returns.
int json_get_str(const cJSON *obj, const char *key, const char *origin, const char **v);
// obj[key] as a boolean: same returns.
int json_get_bool(const cJSON *obj, const char *key, const char *origin, int *v);

#endif
