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

// All-to-all-v of floats: send[send_off[r] ..+ send_n[r]) goes to rank r, which receives
// it at recv + recv_off[me]'s place in its own offsets. Counts in floats.
int comm_alltoallv_f32(const float *send, const int *send_n, const int *send_off, float *recv, const int *recv_n,
                       const int *recv_off);
// The same for ints (the counts themselves: comm_alltoall_int sends one int to each rank).
int comm_alltoall_int(const int *send, int *recv);

// Broadcast of `bytes` bytes from `root`.
int comm_bcast(void *buf, size_t bytes, int root);
int comm_barrier(void);

typedef struct {
    double seconds;         // wall time inside MPI calls
    double bytes_sent;      // this rank's sent bytes under the standard algorithms (above)
    int64_t calls;
} comm_stats;

comm_stats comm_get_stats(void);
void comm_reset_stats(void);

#endif
