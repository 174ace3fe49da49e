// commands.h: the subcommand table. One line per subcommand; each family lives in its
// own tools/cmd_*.c file and receives argv starting at its own name.
#ifndef MONOLITH_COMMANDS_H
#define MONOLITH_COMMANDS_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

typedef int (*command_fn)(int argc, char **argv);

typedef struct {
    const char *name;
    command_fn fn;
    const char *help;  // one line for `monolith help`
} command;

// Shared by every command: prints "monolith: <mo_error()>" and returns 1.
int cmd_fail(void);

// Sets the thread count of a command's --threads N (<= 0: one per core): more than the
// cores this process may use is lowered to them with a note on stderr, and a count whose
// OpenBLAS buffers do not fit under ulimit -v is refused (kernels/threads.h). Returns 0,
// or -1 after printing the one-line error.
int cli_threads(int n);

// `s` made safe to print on a terminal: control bytes and DEL as \xHH, a backslash as
// \\ (a name read from a file could otherwise move the cursor, recolour or retitle the
// terminal). Into buf; returns buf.
const char *cli_show(const char *s, char *buf, size_t cap);

// A usage error (a missing or unknown flag, a bad value): one line on stderr,
// "monolith: MSG; see 'monolith CMD --help'" (control characters in MSG shown as '?',
// as mo_errorf does), never the whole usage text. Returns 2, the usage-error exit code.
int cli_usage_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

// A flag's whole-number value: all of s, from lo to hi, into *out. Returns 0, or the
// usage error "FLAG takes WHAT, not 'S'" (2).
int cli_whole(const char *cmd, const char *flag, const char *s, long lo, long hi, const char *what, long *out);

// A seed: all of s a whole number >= 0 that fits 64 bits, into *out. Returns 0, or the
// usage error "FLAG takes a whole number >= 0, not 'S'" (2).
int cli_seed(const char *cmd, const char *flag, const char *s, uint64_t *out);

// The same for getopt_long's '?' (unknown flag) or ':' (flag without its value; the
// optstring must start with ':' and opterr be 0 so that getopt prints nothing itself).
int cli_getopt_error(const char *cmd, int c, char **argv);

// -o OUT may not be one of the n inputs (the same file, by device and inode): writing it
// (OUT.tmp, then a rename) would replace what is being read, or what was to be kept. Nor
// may it be a device, FIFO or folder (file_check_output), checked here before the work.
// Returns 0, or -1 with a one-line message (mo_error).
int cli_output_distinct(const char *out, const char *const *inputs, size_t n);

// From now on SIGINT and SIGTERM set the returned flag instead of ending the process: a
// run polls it (train_hooks.stop) and stops at the next step boundary after saving.
const volatile sig_atomic_t *cli_catch_stop(void);

#define MONOLITH_COMMANDS(X) \
    X(bench, "throughput of kernels, training and inference against this machine's sgemm and memory rates") \
    X(generate, "text from a checkpoint and a prompt: sampling, streaming, per-token expert routing")       \
    X(init, "a randomly initialized checkpoint from a preset and config overrides")                         \
    X(inspect, "config, total and active parameters, tensor shapes and experts of a checkpoint") \
    X(dump, "logits, losses, routing and every gradient of one batch, to HDF5")                    \
    X(tokenizer, "train a byte-level BPE vocabulary; encode text to ids and decode ids to bytes")  \
    X(data, "prepare: text files -> a token data set (val split by document, or by bytes when few)")\
    X(train, "train a model on token sets: AdamW, freeze masks, checkpoints with exact --resume")  \
    X(eval, "per-domain validation loss and perplexity, domain x expert routing matrix")           \
    X(expert, "experts as modules: list, extract, insert, add, remove")                            \
    X(compose, "experts from several module files + a base (or averaged bases) -> one MoE")       \
    X(upcycle, "a dense checkpoint -> a MoE whose experts are copies of its FFN")                  \
    X(pipeline, "btx, plug: dense seed -> branch per domain -> mix or plug the branches -> router/all") \
    X(export, "a checkpoint as a model file of another program: gguf (llama.cpp), hf (Hugging Face)")  \
    X(import, "a model file of another program as a checkpoint: gguf (llama.cpp), hf (Hugging Face)")

#define X(name, help) int cmd_##name(int argc, char **argv);
MONOLITH_COMMANDS(X)
#undef X

#endif
