// comm.h: the communicator. Every MPI call of monolith is in engine/comm.c; the trainer,
// the optimizer shards and the benchmarks see only these functions.
//
// One process without a launcher is a world of size 1 and MPI is never initialised:
// comm_init() calls MPI_Init_thread only when the environment says that mpirun (Open
// MPI: OMPI_COMM_WORLD_SIZE), a PMIx launcher (PMIX_RANK) or Slurm's PMI (PMI_SIZE)
// started the process. A plain `monolith train` is then exactly the program it was before
// MPI (no singleton runtime to start, no network probing, nothing for the sanitizers),
// and every collective below is a no-op or a copy on size 1.
//
// Collectives are called from the main thread only (MPI_THREAD_FUNNELED; OpenMP threads
// compute between them). Large arrays go in buckets of COMM_BUCKET floats, so the calls
// never pass an int count past INT_MAX and a reduction needs no second full-size buffer.
// Every function returns 0, or -1 with a one-line message (mo_error) naming the call; the
// CLI then ends the whole job (comm_abort), so no rank waits forever on a failed one.
//
// Statistics (comm_stats): wall time inside MPI calls and the bytes this rank sends under
// the standard algorithms (ring all-reduce 2(N-1)/N x n, reduce-scatter and all-gather
// (N-1)/N x n, all-to-all-v its exact off-rank counts), for `bench train` and
// docs/distributed.md.
#ifndef MONOLITH_COMM_H
#define MONOLITH_COMM_H

#include <stddef.h>
#include <stdint.h>

#define COMM_BUCKET ((size_t)1 << 20)  // floats per collective call (4 MB)

// Starts MPI when launched by mpirun/srun (see above); otherwise size 1. Returns 0 or -1.
int comm_init(int *argc, char ***argv);
// MPI_Finalize when MPI was started. Safe to call always.
void comm_finalize(void);
// Ends every rank of the job now (MPI_Abort) when size > 1; exits the process otherwise.
void comm_abort(int code);

int comm_rank(void);
int comm_size(void);
// 1 when running under MPI (even with one rank), else 0.
int comm_active(void);

// In-place sums over all ranks.
int comm_allreduce_f32(float *buf, size_t n);
int comm_allreduce_f64(double *buf, size_t n);
int comm_allreduce_i64(int64_t *buf, size_t n);
// In-place maximum of one int over all ranks (flags: stop requested, error on some rank).
int comm_allreduce_max_int(int *x);

// Shards: bounds[0..size] with bounds[0] = 0 and bounds[size] = n; rank r owns
// [bounds[r], bounds[r+1]).
// Reduce-scatter in place: afterwards buf[bounds[r] .. bounds[r+1]) on rank r holds the
// sum over ranks; the rest of buf is left as it was.
int comm_reduce_scatter_f32(float *buf, const size_t *bounds);
// All-gather in place: every rank's own shard of buf is copied to every other rank.
int comm_allgather_f32(float *buf, const size_t *bounds);
// Gathers every rank's shard `mine` (bounds[r+1] - bounds[r] floats) into all[n] on
// rank `root` (all may be NULL on the other ranks).
int comm_gather_f32(const float *mine, float *all, const size_t *bounds, int root);
// Every rank's `n` doubles, in rank order, into all[size * n].
int comm_allgather_f64(const double *mine, double *all, size_t n);
// Every rank's `n` 64-bit words, in rank order, into all[size * n].
int comm_allgather_u64(const uint64_t *mine, uint64_t *all, size_t n);

// Expert parallelism (--expert-parallel G): splits the world into groups of G
// consecutive ranks (ranks g*G .. g*G + G - 1), which share the experts of every MoE
// layer, and into peer sets (the ranks at the same place of every group), which hold the
// same experts and sum their gradients. Refused unless G divides the world's size.
// Before (and without) a split the group is the whole world and a rank is its own peer set.
int comm_expert_groups(int G);
int comm_group_rank(void);  // place in the group, 0 .. G-1
int comm_group_size(void);  // G
int comm_peers_size(void);  // size / G: the data-parallel degree of the experts
// In-place sum over this rank's peers (a no-op when size == G).
int comm_allreduce_f32_peers(float *buf, size_t n);

// In-place sum over this rank's expert group.
int comm_allreduce_f64_group(double *buf, size_t n);
// n floats to world rank `to` / from world rank `from` (blocking; messages between two
// ranks arrive in the order sent). Saving an expert-parallel run brings expert slices to rank 0.
int comm_send_f32(const float *buf, size_t n, int to);
int comm_recv_f32(float *buf, size_t n, int from);

// All-to-all-v of floats within the expert group: send[send_off[r] ..+ send_n[r]) goes to
// the group's rank r, which receives it at recv + recv_off[me]. Counts in floats.
int comm_alltoallv_f32(const float *send, const int *send_n, const int *send_off, float *recv, const int *recv_n,
                       const int *recv_off);
// All-to-all of ints within the expert group: n ints to each rank (send[r*n ..]), n from
// each (recv[r*n ..]) (the row counts that precede an all-to-all-v).
int comm_alltoall_int(const int *send, int *recv, int n);

// Broadcast of `bytes` bytes from `root`.
int comm_bcast(void *buf, size_t bytes, int root);
int comm_barrier(void);

typedef struct {
    double seconds;         // wall time inside MPI calls
    double bytes_sent;      // this rank's sent bytes under the standard algorithms (above)
    double bytes_alltoall;  // of those, the rows the expert exchange sent (all-to-all-v)
    int64_t calls;
} comm_stats;

comm_stats comm_get_stats(void);
void comm_reset_stats(void);

#endif
