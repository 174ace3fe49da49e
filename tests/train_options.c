// train_options.c: one option table for flags and INI: precedence (defaults < --config <
// flags), model overrides, run.ini round trip (hostile and long values included), and
// one-line errors naming the origin and the right line.
#include "engine/base/error.h"
#include "tests/testutil.h"
#include "train/options.h"

#include <unistd.h>


static const char *write_file(const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tu_scratch(), name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static int parse(train_opts *o, const char *const *args, int n) {
    char *argv[32];
    for (int i = 0; i < n; i++) argv[i] = (char *)args[i];
    argv[n] = NULL;
    train_opts_defaults(o);
    return train_opts_parse(o, n, argv);
}

START_TEST(test_flags) {
    train_opts o;
    const char *a[] = {"train", "--preset", "tiny", "--data", "code=c.h5:2.5", "--data", "math=m.h5",
                       "--steps", "300", "--lr", "3e-4", "--n-experts", "8", "--route-by-domain", "--train",
                       "experts=1,2"};
    ck_assert_msg(parse(&o, a, 16) == 0, "%s", mo_error());
    ck_assert_str_eq(o.preset, "tiny");
    ck_assert_int_eq(o.n_data, 2);
    ck_assert_str_eq(o.data[0].name, "code");
    ck_assert_str_eq(o.data[0].path, "c.h5");
    ck_assert_double_eq(o.data[0].weight, 2.5);
    ck_assert_double_eq(o.data[1].weight, 1.0);
    ck_assert_int_eq(o.steps, 300);
    ck_assert_double_eq(o.lr, 3e-4);
    ck_assert_int_eq(o.route_by_domain, 1);
    ck_assert_str_eq(o.train, "experts=1,2");
    ck_assert_int_eq(o.n_overrides, 1);
    ck_assert_str_eq(o.overrides[0].name, "n_experts");
    ck_assert_str_eq(o.overrides[0].value, "8");
    ck_assert_int_eq(o.batch, 8);  // a default left alone
}
END_TEST

START_TEST(test_config_file_and_precedence) {
    const char *ini = write_file("run.ini", "; a comment\nsteps = 50\nbatch=4\n[train]\nlr = 0.01\n"
                                            "data = a=a.h5\ndata = b=b.h5:3\ngrad_accum = 2\n[model]\n"
                                            "n_experts = 6\nd-model = 32\n");
    train_opts o;
    const char *a[] = {"train", "--steps", "70", "--config", ini, "--d-model", "48"};
    ck_assert_msg(parse(&o, a, 7) == 0, "%s", mo_error());
    ck_assert_int_eq(o.steps, 70);  // flag over file, wherever the flag stands
    ck_assert_int_eq(o.batch, 4);
    ck_assert_int_eq(o.grad_accum, 2);
    ck_assert_double_eq(o.lr, 0.01);
    ck_assert_int_eq(o.n_data, 2);
    ck_assert_double_eq(o.data[1].weight, 3);
    ck_assert_int_eq(o.n_overrides, 2);
    ck_assert_str_eq(o.overrides[1].name, "d_model");
    ck_assert_str_eq(o.overrides[1].value, "48");
    // A --data flag replaces the file's list.
    const char *b[] = {"train", "--config", ini, "--data", "c=c.h5"};
    ck_assert_msg(parse(&o, b, 5) == 0, "%s", mo_error());
    ck_assert_int_eq(o.n_data, 1);
    ck_assert_str_eq(o.data[0].name, "c");
}
END_TEST

START_TEST(test_ini_round_trip) {
    train_opts o, back;
    const char *a[] = {"train", "--init", "x.h5", "--data", "code=/p/c.h5:0.3", "--lr", "0.1", "--clip", "0.7",
                       "--seed", "18446744073709551615", "--aux-coef", "0.02", "--schedule", "constant"};
    ck_assert_msg(parse(&o, a, 15) == 0, "%s", mo_error());
    char path[512];
    snprintf(path, sizeof path, "%s/out.ini", tu_scratch());
    ck_assert_msg(train_opts_write_ini(&o, path) == 0, "%s", mo_error());
    train_opts_defaults(&back);
    ck_assert_msg(train_opts_load_ini(&back, path) == 0, "%s", mo_error());
    ck_assert_msg(!memcmp(&o, &back, sizeof o), "run.ini does not read back to the same options");
    ck_assert_int_eq(access(path, F_OK), 0);
    strcat(path, ".tmp");
    ck_assert_int_ne(access(path, F_OK), 0);
}
END_TEST

// Hostile strings in every string option (and a data path) survive run.ini exactly:
// newlines that would start new keys, inih's comment characters, brackets, '=', blanks at
// either end, quotes, backslashes, control and high bytes, and paths longer than inih's
// 199-byte lines with blanks where the writer splits them.
START_TEST(test_ini_hostile_round_trip) {
    static const char *nasty[] = {"r\nsteps = 9", "a ;b", "a;b # c", "#x", "[model]", "x=y", " lead", "trail ",
                                  "q\"uote\\", "\"", "\\x41", "\x01\x1f\x7f\xff\t\r", "caf\xc3\xa9 \\n", "",
                                  "   ", ";"};
    char longp[TRAIN_PATH_MAX];
    for (int variant = 0; variant < (int)(sizeof nasty / sizeof *nasty) + 3; variant++) {
        train_opts o, back;
        train_opts_defaults(&o);
        const char *v = longp;
        if (variant < (int)(sizeof nasty / sizeof *nasty)) v = nasty[variant];
        else {
            // 4095 bytes: blanks every 7th byte, or all blanks but the ends, or all ';'
            for (int i = 0; i < TRAIN_PATH_MAX - 1; i++)
                longp[i] = variant == 16 ? (i % 7 == 3 ? ' ' : 'a' + i % 26) : variant == 17 ? ' ' : ';';
            longp[0] = longp[TRAIN_PATH_MAX - 2] = '/';
            longp[TRAIN_PATH_MAX - 1] = 0;
        }
        snprintf(o.out, sizeof o.out, "%s", v);
        snprintf(o.init, sizeof o.init, "%s", v);
        snprintf(o.tokenizer, sizeof o.tokenizer, "%s", v);
        snprintf(o.train, sizeof o.train, "%.255s", v);
        snprintf(o.data[0].name, sizeof o.data[0].name, "code");
        snprintf(o.data[0].path, sizeof o.data[0].path, "%.4000s", *v ? v : "x");
        o.data[0].weight = 0.5;
        o.n_data = 1;
        char path[512];
        snprintf(path, sizeof path, "%s/hostile.ini", tu_scratch());
        ck_assert_msg(train_opts_write_ini(&o, path) == 0, "%s", mo_error());
        train_opts_defaults(&back);
        ck_assert_msg(train_opts_load_ini(&back, path) == 0, "variant %d: %s", variant, mo_error());
        ck_assert_msg(!strcmp(o.out, back.out), "variant %d: out '%s' came back as '%s'", variant, o.out, back.out);
        ck_assert_msg(!strcmp(o.data[0].path, back.data[0].path), "variant %d: data path", variant);
        ck_assert_msg(!memcmp(&o, &back, sizeof o), "variant %d: run.ini does not read back the same", variant);
        ck_assert_int_eq(back.steps, o.steps);  // nothing injected
        // No line of the file is longer than inih reads.
        FILE *f = fopen(path, "r");
        char line[4096];
        while (fgets(line, sizeof line, f)) ck_assert_msg(strlen(line) < 199, "a %zu-byte line", strlen(line));
        fclose(f);
    }
}
END_TEST

static void expect_error(const char *const *a, int n, const char *needle) {
    train_opts o;
    ck_assert_msg(parse(&o, a, n) == -1, "expected failure for %s", a[n - 1]);
    ck_assert_msg(strstr(mo_error(), needle), "message '%s' lacks '%s'", mo_error(), needle);
    ck_assert(!strchr(mo_error(), '\n'));
}

START_TEST(test_errors) {
    const char *a1[] = {"train", "--stepz", "3"};
    expect_error(a1, 3, "unknown flag '--stepz'");
    const char *a2[] = {"train", "--steps", "many"};
    expect_error(a2, 3, "--steps: expected a whole number");
    const char *a3[] = {"train", "--data", "=x.h5"};
    expect_error(a3, 3, "--data '=x.h5'");
    const char *a4[] = {"train", "--data", "a=x.h5", "--data", "a=y.h5"};
    expect_error(a4, 5, "given twice");
    const char *a5[] = {"train", "--data", "a=x.h5:-1"};
    expect_error(a5, 3, "weight after ':' must be a positive");
    const char *a10[] = {"train", "--data", "a b=x.h5"};
    expect_error(a10, 3, "domain name 'a b'");
    const char *a6[] = {"train", "--n-experts", "lots"};
    expect_error(a6, 3, "--n-experts");
    const char *a7[] = {"train", "--steps"};
    expect_error(a7, 2, "needs a value");
    const char *a8[] = {"train", "stray"};
    expect_error(a8, 2, "unexpected argument 'stray'");
    const char *a11[] = {"train", "--precision", "fp16"};
    expect_error(a11, 3, "--precision: 'fp16': use fp32 or bf16");
    const char *a9[] = {"train", "--config", "/nonexistent/run.ini"};
    expect_error(a9, 3, "/nonexistent/run.ini: cannot open");
    const char *bad[][2] = {{"b1.ini", "[train]\nstepz = 3\n"},
                            {"b2.ini", "[train]\nsteps = 3\nthis line is not ini\n"},
                            {"b3.ini", "[optimizer]\nlr = 1\n"},
                            {"b4.ini", "[model]\nlr = 1\n"},
                            {"b5.ini", "resume = somewhere\n"},
                            {"b6.ini", "steps = 3\nout = \"abc\nlr = 1\n"},
                            {"b7.ini", "steps = 3\n  9\n"},
                            {"b8.ini", "out = \"a\\qb\"\n"},
                            {"b9.ini", "out = \"a\\x4\"\n"},
                            {"b10.ini", "out = \"ab\" c\n"},
                            {"b11.ini", "steps = 3\nout = \"abc\n"}};
    const char *needles[] = {"b1.ini:2: unknown option 'stepz'", "b2.ini:3", "unknown section", "not a model config",
                             "command-line flag only", "b6.ini:2: the quoted value of 'out' has no closing quote",
                             "b7.ini:2: an indented line continues only a quoted value", "b8.ini:1: unknown escape '\\q'",
                             "b9.ini:1: bad escape", "b10.ini:1: text after the closing quote",
                             "b11.ini:2: the quoted value of 'out' has no closing quote"};
    for (int i = 0; i < 11; i++) {
        const char *p = write_file(bad[i][0], bad[i][1]);
        const char *a[] = {"train", "--config", p};
        expect_error(a, 3, needles[i]);
    }
}
END_TEST

// --warmup's default fits any --steps (min(100, steps/10)); a given value is kept as is
// (the trainer refuses one over --steps).
START_TEST(test_warmup_default) {
    train_opts o;
    const char *a[] = {"train", "--steps", "30"};
    ck_assert_msg(parse(&o, a, 3) == 0, "%s", mo_error());
    ck_assert_int_eq(train_opts_warmup(&o), 3);
    o.steps = 5;
    ck_assert_int_eq(train_opts_warmup(&o), 0);
    o.steps = 1000;
    ck_assert_int_eq(train_opts_warmup(&o), 100);
    o.steps = 50000;
    ck_assert_int_eq(train_opts_warmup(&o), 100);
    const char *b[] = {"train", "--steps", "30", "--warmup", "50"};
    ck_assert_msg(parse(&o, b, 5) == 0, "%s", mo_error());
    ck_assert_int_eq(train_opts_warmup(&o), 50);
}
END_TEST

// A 10 MB line is refused as one line with its own number, not as 50,000 lines of 200.
START_TEST(test_long_line) {
    char path[512];
    snprintf(path, sizeof path, "%s/long.ini", tu_scratch());
    FILE *f = fopen(path, "w");
    fputs("steps = 3\nout = ", f);
    for (int i = 0; i < 10 << 20; i++) fputc('a', f);
    fputs("\nlr = 1\n", f);
    fclose(f);
    const char *a[] = {"train", "--config", path};
    expect_error(a, 3, "long.ini:2: line longer than 199 bytes");
    f = fopen(path, "w");
    fwrite("steps = 3\nout = abc\0def\n", 1, 24, f);
    fclose(f);
    expect_error(a, 3, "long.ini:2: a NUL byte");
}
END_TEST

START_TEST(test_help) {
    train_opts o;
    const char *a[] = {"train", "--help"};
    ck_assert_int_eq(parse(&o, a, 2), 1);
}
END_TEST

int main(void) {
    if (!tu_scratch_make("opts")) return 1;
    Suite *s = suite_create("options");
    TCase *tc = tcase_create("options");
    tcase_add_test(tc, test_flags);
    tcase_add_test(tc, test_config_file_and_precedence);
    tcase_add_test(tc, test_ini_round_trip);
    tcase_add_test(tc, test_ini_hostile_round_trip);
    tcase_add_test(tc, test_long_line);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_warmup_default);
    tcase_add_test(tc, test_help);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
