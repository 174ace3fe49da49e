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
// Expert parallelism (comm_expert_groups): the group of G consecutive ranks this rank
// shares experts with, and its peers (the ranks at the same place in the other groups).
// Until a split both are the world and nothing.
static MPI_Comm g_group = MPI_COMM_NULL, g_peers = MPI_COMM_NULL;
static int g_group_rank, g_group_size = 1, g_peers_size = 1;
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

// Every MPI call goes through CALL: timed, counted, and an error becomes a message.
#define CALL(what, expr)                          \
    do {                                          \
        double t0_ = wall();                      \
        int rc_ = (expr);                         \
        g_stats.seconds += wall() - t0_;          \
        g_stats.calls++;                          \
        if (rc_ != MPI_SUCCESS) return fail(what, rc_); \
    } while (0)

// The expert group's and the peers' communicators (the world before comm_expert_groups).
static MPI_Comm group_comm(void) { return g_group != MPI_COMM_NULL ? g_group : MPI_COMM_WORLD; }
static MPI_Comm peers_comm(void) { return g_peers != MPI_COMM_NULL ? g_peers : MPI_COMM_WORLD; }

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
    if (g_group != MPI_COMM_NULL) MPI_Comm_free(&g_group);
    if (g_peers != MPI_COMM_NULL) MPI_Comm_free(&g_peers);
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

int comm_expert_groups(int G) {
    if (G < 1 || g_size % G)
        return mo_errorf("--expert-parallel %d: the %d ranks do not split into groups of %d", G, g_size, G);
    g_group_rank = g_rank % G, g_group_size = G, g_peers_size = g_size / G;
    if (g_size == 1) return 0;
    if (g_group != MPI_COMM_NULL) MPI_Comm_free(&g_group);
    if (g_peers != MPI_COMM_NULL) MPI_Comm_free(&g_peers);
    CALL("MPI_Comm_split (expert groups)", MPI_Comm_split(MPI_COMM_WORLD, g_rank / G, g_rank, &g_group));
    CALL("MPI_Comm_split (expert peers)", MPI_Comm_split(MPI_COMM_WORLD, g_rank % G, g_rank, &g_peers));
    return 0;
}
int comm_group_rank(void) { return g_group_rank; }
int comm_group_size(void) { return g_group_size; }
int comm_peers_size(void) { return g_peers_size; }

comm_stats comm_get_stats(void) { return g_stats; }
void comm_reset_stats(void) { memset(&g_stats, 0, sizeof g_stats); }

// Bytes a rank sends for n bytes of payload: ring all-reduce 2(N-1)/N, one pass (N-1)/N.
static double ring_bytes(double bytes, int passes, int size) { return passes * bytes * (size - 1) / size; }

static int allreduce_on(MPI_Comm comm, int size, void *buf, size_t n, size_t elem, MPI_Datatype type, MPI_Op op,
                        const char *what) {
    if (size == 1) return 0;
    char *p = buf;
    for (size_t i = 0; i < n; i += COMM_BUCKET) {
        size_t k = n - i < COMM_BUCKET ? n - i : COMM_BUCKET;
        CALL(what, MPI_Allreduce(MPI_IN_PLACE, p + i * elem, (int)k, type, op, comm));
    }
    g_stats.bytes_sent += ring_bytes((double)n * elem, 2, size);
    return 0;
}

static int allreduce(void *buf, size_t n, size_t elem, MPI_Datatype type, MPI_Op op, const char *what) {
    return allreduce_on(MPI_COMM_WORLD, g_size, buf, n, elem, type, op, what);
}

int comm_allreduce_f64_group(double *buf, size_t n) {
    return allreduce_on(group_comm(), g_group_size, buf, n, sizeof *buf, MPI_DOUBLE, MPI_SUM,
                        "MPI_Allreduce (double sum in the expert group)");
}

// Point to point, in buckets; tag 0 (sends between two ranks arrive in order).
int comm_send_f32(const float *buf, size_t n, int to) {
    for (size_t i = 0; i < n; i += COMM_BUCKET) {
        size_t k = n - i < COMM_BUCKET ? n - i : COMM_BUCKET;
        CALL("MPI_Send", MPI_Send(buf + i, (int)k, MPI_FLOAT, to, 0, MPI_COMM_WORLD));
    }
    g_stats.bytes_sent += (double)n * sizeof *buf;
    return 0;
}

int comm_recv_f32(float *buf, size_t n, int from) {
    for (size_t i = 0; i < n; i += COMM_BUCKET) {
        size_t k = n - i < COMM_BUCKET ? n - i : COMM_BUCKET;
        CALL("MPI_Recv", MPI_Recv(buf + i, (int)k, MPI_FLOAT, from, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    }
    return 0;
}

int comm_allreduce_f32_peers(float *buf, size_t n) {
    return allreduce_on(peers_comm(), g_peers_size, buf, n, sizeof *buf,
                        MPI_FLOAT, MPI_SUM, "MPI_Allreduce (expert gradients over groups)");
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

// One chunk of a shard-wise collective: the pieces at `at` of every shard have counts[r]
// floats, packed at displs[r] in g_stage.
typedef int (*chunk_fn)(void *ctx, size_t at, const int *counts, const int *displs);

// Runs `fn` for every chunk of the shards `bounds`: the loop every shard-wise collective
// shares (at most COMM_BUCKET floats packed per call).
static int each_chunk(const size_t *b, chunk_fn fn, void *ctx) {
    const size_t per = COMM_BUCKET / (size_t)g_size;
    size_t longest = 0;
    for (int r = 0; r < g_size; r++) longest = shard_len(b, r) > longest ? shard_len(b, r) : longest;
    int counts[g_size], displs[g_size];
    for (size_t at = 0; at < longest; at += per) {
        int o = 0;
        for (int r = 0; r < g_size; r++) counts[r] = (int)piece(b, r, at, per), displs[r] = o, o += counts[r];
        if (fn(ctx, at, counts, displs)) return -1;
    }
    return 0;
}

typedef struct {
    float *buf;          // the whole arena (reduce-scatter, all-gather) or the root's `all` (gather)
    const float *mine;   // gather: this rank's shard
    const size_t *bounds;
    int root;
} shard_call;

static int reduce_scatter_chunk(void *ctx, size_t at, const int *counts, const int *displs) {
    shard_call *c = ctx;
    for (int r = 0; r < g_size; r++)
        if (counts[r]) memcpy(g_stage + displs[r], c->buf + c->bounds[r] + at, (size_t)counts[r] * sizeof *g_stage);
    float *mine = c->buf + c->bounds[g_rank] + at;  // a zero count never touches it
    CALL("MPI_Reduce_scatter", MPI_Reduce_scatter(g_stage, mine, counts, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
    return 0;
}

static int allgather_chunk(void *ctx, size_t at, const int *counts, const int *displs) {
    shard_call *c = ctx;
    CALL("MPI_Allgatherv", MPI_Allgatherv(c->buf + c->bounds[g_rank] + at, counts[g_rank], MPI_FLOAT, g_stage, counts,
                                          displs, MPI_FLOAT, MPI_COMM_WORLD));
    for (int r = 0; r < g_size; r++)
        if (r != g_rank && counts[r])
            memcpy(c->buf + c->bounds[r] + at, g_stage + displs[r], (size_t)counts[r] * sizeof *g_stage);
    return 0;
}

static int gather_chunk(void *ctx, size_t at, const int *counts, const int *displs) {
    shard_call *c = ctx;
    CALL("MPI_Gatherv", MPI_Gatherv(c->mine + at, counts[g_rank], MPI_FLOAT, g_stage, counts, displs, MPI_FLOAT,
                                    c->root, MPI_COMM_WORLD));
    if (g_rank == c->root)
        for (int r = 0; r < g_size; r++)
            if (counts[r]) memcpy(c->buf + c->bounds[r] + at, g_stage + displs[r], (size_t)counts[r] * sizeof *g_stage);
    return 0;
}

int comm_reduce_scatter_f32(float *buf, const size_t *bounds) {
    if (g_size == 1) return 0;
    if (each_chunk(bounds, reduce_scatter_chunk, &(shard_call){.buf = buf, .bounds = bounds})) return -1;
    g_stats.bytes_sent += ring_bytes((double)bounds[g_size] * sizeof *buf, 1, g_size);
    return 0;
}

int comm_allgather_f32(float *buf, const size_t *bounds) {
    if (g_size == 1) return 0;
    if (each_chunk(bounds, allgather_chunk, &(shard_call){.buf = buf, .bounds = bounds})) return -1;
    g_stats.bytes_sent += ring_bytes((double)bounds[g_size] * sizeof *buf, 1, g_size);
    return 0;
}

int comm_gather_f32(const float *mine, float *all, const size_t *bounds, int root) {
    if (g_size == 1) {
        if (all != mine) memcpy(all, mine, bounds[1] * sizeof *all);
        return 0;
    }
    if (each_chunk(bounds, gather_chunk, &(shard_call){.buf = all, .mine = mine, .bounds = bounds, .root = root}))
        return -1;
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
    if (g_group_size == 1) {
        if (send_n[0]) memcpy(recv + recv_off[0], send + send_off[0], (size_t)send_n[0] * sizeof *send);
        return 0;
    }
    CALL("MPI_Alltoallv", MPI_Alltoallv(send, send_n, send_off, MPI_FLOAT, recv, recv_n, recv_off, MPI_FLOAT,
                                        group_comm()));
    for (int r = 0; r < g_group_size; r++)
        if (r != g_group_rank) {
            g_stats.bytes_sent += (double)send_n[r] * sizeof *send;
            g_stats.bytes_alltoall += (double)send_n[r] * sizeof *send;
        }
    return 0;
}

int comm_alltoall_int(const int *send, int *recv, int n) {
    if (g_group_size == 1) {
        memcpy(recv, send, (size_t)n * sizeof *send);
        return 0;
    }
    CALL("MPI_Alltoall", MPI_Alltoall(send, n, MPI_INT, recv, n, MPI_INT, group_comm()));
    g_stats.bytes_sent += (double)sizeof(int) * n * (g_group_size - 1);
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
