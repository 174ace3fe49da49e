// train_state.c: a training checkpoint round-trips (model, m, v, every /train field);
// a model-only checkpoint is refused for resume; the run folder lists only complete
// checkpoints (never a .tmp), prunes to --keep, refuses to start over an existing run,
// and removes the leftovers of an interrupted save; its lock has one holder at a time.
#include "engine/base/error.h"
#include "engine/base/h5io.h"
#include "tests/testutil.h"
#include "train/run_lock.h"
#include "train/rundir.h"
#include "train/state.h"

#include <sys/stat.h>
#include <unistd.h>


static void tiny(mo_checkpoint *ck) {
    mo_config c;
    ck_assert_int_eq(config_preset(&c, "tiny"), 0);
    ck_assert_int_eq(config_finalize(&c), 0);
    ck_assert_msg(ckpt_new(ck, &c, 5, NULL) == 0, "%s", mo_error());
}

START_TEST(test_round_trip) {
    mo_checkpoint ck, back;
    tiny(&ck);
    float *m = params_arena_alloc(&ck.table), *v = params_arena_alloc(&ck.table);
    tu_fill(m, ck.table.numel, 1, 0.1f);
    tu_fill(v, ck.table.numel, 2, 0.1f);
    for (size_t i = 0; i < ck.table.numel; i++) v[i] *= v[i];
    for (int i = 0; i < ck.table.n; i++)  // a moved router_bias round-trips
        if (ck.table.t[i].no_grad) tu_fill(ck.params + ck.table.t[i].offset, ck.table.t[i].numel, 3, 0.1f);
    train_state st = {.step = 7, .tokens_seen = 12345, .rng = {1, 2, 3, UINT64_MAX}, .n_loader = 3,
                      .loader = {9, 8, 7}, .clip = 0.5, .seed = 42};
    st.sched = (lr_schedule){.kind = LR_SCHEDULE_CONSTANT, .lr = 3e-4, .floor_frac = 0.2, .warmup = 2, .total = 10};
    st.opt = adamw_defaults();
    snprintf(st.mask, sizeof st.mask, "experts=1,router");
    char path[256];
    rundir_ckpt_path(tu_scratch(), 7, path, sizeof path);
    ck_assert_msg(train_state_save(path, &ck, m, v, &st, "[train]\nsteps = 10\n") == 0, "%s", mo_error());
    float *m2, *v2;
    train_state st2;
    ck_assert_msg(train_state_load(path, &back, &m2, &v2, &st2) == 0, "%s", mo_error());
    size_t bytes = ck.table.numel * sizeof(float);
    ck_assert(!memcmp(ck.params, back.params, bytes));
    ck_assert(!memcmp(m, m2, bytes));
    ck_assert(!memcmp(v, v2, bytes));
    ck_assert_int_eq(st2.step, 7);
    ck_assert_int_eq(st2.tokens_seen, 12345);
    ck_assert(!memcmp(st.rng, st2.rng, sizeof st.rng));
    ck_assert_int_eq(st2.n_loader, 3);
    ck_assert(st2.loader[2] == 7);
    ck_assert_int_eq(st2.sched.kind, LR_SCHEDULE_CONSTANT);
    ck_assert(st2.sched.lr == 3e-4 && st2.sched.floor_frac == 0.2 && st2.sched.warmup == 2 && st2.sched.total == 10);
    ck_assert(st2.opt.beta2 == st.opt.beta2 && st2.opt.eps == st.opt.eps && st2.clip == 0.5 && st2.seed == 42);
    ck_assert_str_eq(st2.mask, "experts=1,router");
    free(m2), free(v2), ckpt_free(&back);

    // A model-only checkpoint cannot be resumed.
    char plain[256];
    snprintf(plain, sizeof plain, "%s/plain.h5", tu_scratch());
    ck_assert_int_eq(ckpt_save(plain, &ck), 0);
    ck_assert_int_eq(train_state_load(plain, &back, &m2, &v2, &st2), -1);
    ck_assert_ptr_nonnull(strstr(mo_error(), "--init"));
    ck_assert_ptr_null(m2);
    unlink(plain);
    free(m), free(v), ckpt_free(&ck);
}
END_TEST

static void touch(const char *name) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tu_scratch(), name);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
}

static int exists(const char *name) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tu_scratch(), name);
    return access(p, F_OK) == 0;
}

START_TEST(test_rundir) {
    char sub[512];
    snprintf(sub, sizeof sub, "%s/run", tu_scratch());
    ck_assert_msg(rundir_create(sub) == 0, "%s", mo_error());  // creates it
    rundir_state st;
    ck_assert_int_eq(rundir_state_of(sub, &st), 0);
    ck_assert_int_eq(st, RUNDIR_EMPTY);
    ck_assert_int_eq(rmdir(sub), 0);
    touch("ckpt-00000010.h5");
    touch("ckpt-00000030.h5");
    touch("ckpt-00000020.h5");
    touch("ckpt-00000040.h5.tmp");  // a save killed half way
    touch("run.ini.tmp");
    touch("ckpt-0000x050.h5");
    touch("notes.txt");
    int64_t *steps;
    int n;
    ck_assert_int_eq(rundir_steps(tu_scratch(), &steps, &n), 0);
    ck_assert_int_eq(n, 4);  // 7 (from the round trip), 10, 20, 30: not the .tmp, not the bad name
    ck_assert(steps[0] == 7 && steps[1] == 10 && steps[2] == 20 && steps[3] == 30);
    free(steps);
    ck_assert_int_eq(rundir_state_of(tu_scratch(), &st), 0);
    ck_assert_int_eq(st, RUNDIR_CHECKPOINTED);
    ck_assert_int_eq(rundir_clean_tmp(tu_scratch()), 0);  // the leftovers of dead writers go, nothing else
    ck_assert(!exists("ckpt-00000040.h5.tmp") && !exists("run.ini.tmp"));
    ck_assert(exists("notes.txt") && exists("ckpt-00000010.h5"));
    ck_assert_int_eq(rundir_prune(tu_scratch(), 2), 0);
    ck_assert(!exists("ckpt-00000007.h5") && !exists("ckpt-00000010.h5"));
    ck_assert(exists("ckpt-00000020.h5") && exists("ckpt-00000030.h5"));
    ck_assert_int_eq(rundir_link_latest(tu_scratch(), 30), 0);
    char target[64] = {0}, link[512];
    snprintf(link, sizeof link, "%s/latest.h5", tu_scratch());
    ck_assert(readlink(link, target, sizeof target - 1) > 0);
    ck_assert_str_eq(target, "ckpt-00000030.h5");
    snprintf(sub, sizeof sub, "%s/none", tu_scratch());
    ck_assert_int_eq(rundir_state_of(sub, &st), -1);  // a folder that is not there
}
END_TEST

// flock locks belong to an open file, so a second open in this process conflicts like
// another process would (tests/reliability_lock.sh runs two real processes).
START_TEST(test_run_lock) {
    char sub[512];
    snprintf(sub, sizeof sub, "%s/locked", tu_scratch());
    ck_assert_int_eq(rundir_create(sub), 0);
    run_lock a, b;
    ck_assert_msg(run_lock_acquire(sub, &a) == 0, "%s", mo_error());
    ck_assert_int_eq(run_lock_acquire(sub, &b), -1);
    ck_assert_int_eq(b.fd, -1);
    char pid[64];
    snprintf(pid, sizeof pid, "(pid %ld)", (long)getpid());
    ck_assert_msg(strstr(mo_error(), "in use by another monolith process") && strstr(mo_error(), pid), "%s",
                  mo_error());
    run_lock_release(&a);
    run_lock_release(&a);  // twice is harmless
    ck_assert_msg(run_lock_acquire(sub, &b) == 0, "%s", mo_error());
    run_lock_release(&b);
    snprintf(sub, sizeof sub, "%s/not-there", tu_scratch());
    ck_assert_int_eq(run_lock_acquire(sub, &a), -1);
    ck_assert_ptr_nonnull(strstr(mo_error(), "run.lock"));
}
END_TEST

int main(void) {
    if (!tu_scratch_make("state")) return 1;
    Suite *s = suite_create("state");
    TCase *tc = tcase_create("state");
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_rundir);
    tcase_add_test(tc, test_run_lock);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_NOFORK);  // the two tests share the folder, in order
}
