// comm.c: every MPI call of monolith (engine/comm.h says why in one file, and when MPI
// is started at all).
#include "engine/comm.h"

#include "engine/base/error.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_active, g_rank, g_size = 1;
static comm_stats g_stats;
static float *g_stage;  // COMM_BUCKET floats: packing for reduce-scatter and all-gather

static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Launched by a process manager that MPI_Init can join (Open MPI's mpirun, PMIx, Slurm PMI).
static int launched(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_SIZE");
}

static int fail(const char *call, int rc) {
    char s[MPI_MAX_ERROR_STRING];
    int n = 0;
    MPI_Error_string(rc, s, &n);
    return mo_errorf("rank %d of %d: %s failed: %.*s", g_rank, g_size, call, n, s);
}

#define CALL(what, expr)                          \
    do {                                          \
        double t0_ = wall();                      \
        int rc_ = (expr);                         \
        g_stats.seconds += wall() - t0_;          \
        g_stats.calls++;                          \
        if (rc_ != MPI_SUCCESS) return fail(what, rc_); \
    } while (0)

int comm_init(int *argc, char ***argv) {
    if (g_active || !launched()) return 0;
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return mo_errorf("MPI_Init_thread failed (launched by mpirun/srun, but MPI could not start)");
    g_active = 1;
    // Errors come back as return codes (and become one-line messages), not an abort inside MPI.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    g_stage = malloc(COMM_BUCKET * sizeof *g_stage);
    if (!g_stage) return mo_errorf("out of memory for the communication buffer");
    return 0;
}

void comm_finalize(void) {
    if (!g_active) return;
    MPI_Finalize();
    free(g_stage);
    g_stage = NULL;
    g_active = 0;
}

void comm_abort(int code) {
    if (g_active && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

int comm_rank(void) { return g_rank; }
int comm_size(void) { return g_size; }
int comm_active(void) { return g_active; }

comm_stats comm_get_stats(void) { return g_stats; }
void comm_reset_stats(void) { memset(&g_stats, 0, sizeof g_stats); }

// Bytes a rank sends for n bytes of payload: ring all-reduce 2(N-1)/N, one pass (N-1)/N.
static double ring_bytes(double bytes, int passes) { return passes * bytes * (g_size - 1) / g_size; }

static int allreduce(void *buf, size_t n, size_t elem, MPI_Datatype type, MPI_Op op, const char *what) {
    if (g_size == 1) return 0;
    char *p = buf;
    for (size_t i = 0; i < n; i += COMM_BUCKET) {
        size_t k = n - i < COMM_BUCKET ? n - i : COMM_BUCKET;
        CALL(what, MPI_Allreduce(MPI_IN_PLACE, p + i * elem, (int)k, type, op, MPI_COMM_WORLD));
    }
    g_stats.bytes_sent += ring_bytes((double)n * elem, 2);
    return 0;
}

int comm_allreduce_f32(float *buf, size_t n) {
    return allreduce(buf, n, sizeof *buf, MPI_FLOAT, MPI_SUM, "MPI_Allreduce (float sum)");
}
int comm_allreduce_f64(double *buf, size_t n) {
    return allreduce(buf, n, sizeof *buf, MPI_DOUBLE, MPI_SUM, "MPI_Allreduce (double sum)");
}
int comm_allreduce_i64(int64_t *buf, size_t n) {
    return allreduce(buf, n, sizeof *buf, MPI_INT64_T, MPI_SUM, "MPI_Allreduce (int64 sum)");
}
int comm_allreduce_max_int(int *x) { return allreduce(x, 1, sizeof *x, MPI_INT, MPI_MAX, "MPI_Allreduce (max)"); }

// Shard-wise collectives go chunk by chunk: chunk c of a call is the c-th piece of
// `per` floats of every rank's shard, packed in rank order into g_stage.
static size_t shard_len(const size_t *b, int r) { return b[r + 1] - b[r]; }

static size_t piece(const size_t *b, int r, size_t at, size_t per) {
    size_t len = shard_len(b, r);
    return at >= len ? 0 : len - at < per ? len - at : per;
}

static size_t longest_shard(const size_t *b) {
    size_t longest = 0;
    for (int r = 0; r < g_size; r++) longest = shard_len(b, r) > longest ? shard_len(b, r) : longest;
    return longest;
}

// Counts and packed offsets of the pieces at `at` of every shard.
static void pieces(const size_t *b, size_t at, size_t per, int *counts, int *displs) {
    int o = 0;
    for (int r = 0; r < g_size; r++) counts[r] = (int)piece(b, r, at, per), displs[r] = o, o += counts[r];
}

int comm_reduce_scatter_f32(float *buf, const size_t *bounds) {
    if (g_size == 1) return 0;
    const size_t per = COMM_BUCKET / (size_t)g_size;
    const size_t longest = longest_shard(bounds);
    int counts[g_size], displs[g_size];
    for (size_t at = 0; at < longest; at += per) {
        pieces(bounds, at, per, counts, displs);
        for (int r = 0; r < g_size; r++)
            if (counts[r]) memcpy(g_stage + displs[r], buf + bounds[r] + at, (size_t)counts[r] * sizeof *buf);
        float *mine = buf + bounds[g_rank] + at;  // a zero count never touches it
        CALL("MPI_Reduce_scatter", MPI_Reduce_scatter(g_stage, mine, counts, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
    }
    g_stats.bytes_sent += ring_bytes((double)bounds[g_size] * sizeof *buf, 1);
    return 0;
}

int comm_allgather_f32(float *buf, const size_t *bounds) {
    if (g_size == 1) return 0;
    const size_t per = COMM_BUCKET / (size_t)g_size;
    const size_t longest = longest_shard(bounds);
    int counts[g_size], displs[g_size];
    for (size_t at = 0; at < longest; at += per) {
        pieces(bounds, at, per, counts, displs);
        CALL("MPI_Allgatherv", MPI_Allgatherv(buf + bounds[g_rank] + at, counts[g_rank], MPI_FLOAT, g_stage, counts,
                                              displs, MPI_FLOAT, MPI_COMM_WORLD));
        for (int r = 0; r < g_size; r++)
            if (r != g_rank && counts[r])
                memcpy(buf + bounds[r] + at, g_stage + displs[r], (size_t)counts[r] * sizeof *buf);
    }
    g_stats.bytes_sent += ring_bytes((double)bounds[g_size] * sizeof *buf, 1);
    return 0;
}

int comm_gather_f32(const float *mine, float *all, const size_t *bounds, int root) {
    if (g_size == 1) {
        if (all != mine) memcpy(all, mine, bounds[1] * sizeof *all);
        return 0;
    }
    const size_t per = COMM_BUCKET / (size_t)g_size;
    const size_t longest = longest_shard(bounds);
    int counts[g_size], displs[g_size];
    for (size_t at = 0; at < longest; at += per) {
        pieces(bounds, at, per, counts, displs);
        CALL("MPI_Gatherv", MPI_Gatherv(mine + at, counts[g_rank], MPI_FLOAT, g_stage, counts, displs, MPI_FLOAT,
                                        root, MPI_COMM_WORLD));
        if (g_rank == root)
            for (int r = 0; r < g_size; r++)
                if (counts[r]) memcpy(all + bounds[r] + at, g_stage + displs[r], (size_t)counts[r] * sizeof *all);
    }
    if (g_rank != root) g_stats.bytes_sent += (double)shard_len(bounds, g_rank) * sizeof *mine;
    return 0;
}

static int allgather(const void *mine, void *all, size_t n, size_t elem, MPI_Datatype type, const char *what) {
    if (g_size == 1) {
        memcpy(all, mine, n * elem);
        return 0;
    }
    if (n * (size_t)g_size > COMM_BUCKET) return mo_errorf("%s: %zu values per rank is too many for one call", what, n);
    CALL(what, MPI_Allgather(mine, (int)n, type, all, (int)n, type, MPI_COMM_WORLD));
    g_stats.bytes_sent += (double)n * elem * (g_size - 1);
    return 0;
}

int comm_allgather_f64(const double *mine, double *all, size_t n) {
    return allgather(mine, all, n, sizeof *mine, MPI_DOUBLE, "MPI_Allgather (double)");
}
int comm_allgather_u64(const uint64_t *mine, uint64_t *all, size_t n) {
    return allgather(mine, all, n, sizeof *mine, MPI_UINT64_T, "MPI_Allgather (uint64)");
}

int comm_alltoallv_f32(const float *send, const int *send_n, const int *send_off, float *recv, const int *recv_n,
                       const int *recv_off) {
    if (g_size == 1) {
        if (send_n[0]) memcpy(recv + recv_off[0], send + send_off[0], (size_t)send_n[0] * sizeof *send);
        return 0;
    }
    CALL("MPI_Alltoallv", MPI_Alltoallv(send, send_n, send_off, MPI_FLOAT, recv, recv_n, recv_off, MPI_FLOAT,
                                        MPI_COMM_WORLD));
    for (int r = 0; r < g_size; r++)
        if (r != g_rank) g_stats.bytes_sent += (double)send_n[r] * sizeof *send;
    return 0;
}

int comm_alltoall_int(const int *send, int *recv) {
    if (g_size == 1) {
        recv[0] = send[0];
        return 0;
    }
    CALL("MPI_Alltoall", MPI_Alltoall(send, 1, MPI_INT, recv, 1, MPI_INT, MPI_COMM_WORLD));
    g_stats.bytes_sent += (double)sizeof(int) * (g_size - 1);
    return 0;
}

int comm_bcast(void *buf, size_t bytes, int root) {
    if (g_size == 1) return 0;
    char *p = buf;
    const size_t chunk = COMM_BUCKET * sizeof(float);
    for (size_t i = 0; i < bytes; i += chunk) {
        size_t k = bytes - i < chunk ? bytes - i : chunk;
        CALL("MPI_Bcast", MPI_Bcast(p + i, (int)k, MPI_BYTE, root, MPI_COMM_WORLD));
    }
    if (g_rank == root) g_stats.bytes_sent += (double)bytes;
    return 0;
}

int comm_barrier(void) {
    if (g_size == 1) return 0;
    CALL("MPI_Barrier", MPI_Barrier(MPI_COMM_WORLD));
    return 0;
}
