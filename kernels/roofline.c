// roofline.c: in-run measurement of sgemm (and bf16 GEMM) GFLOP/s and memory bandwidth.
#include "kernels/roofline.h"

#include "kernels/bf16.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

// The best rate of call(ctx), 2 n^3 FLOPs each, over at least 3 calls lasting
// min_seconds in all, after one warm-up call.
static double best_gflops(void (*call)(void *), void *ctx, int n, double min_seconds) {
    call(ctx);  // warm-up
    double best = 0.0, start = now_seconds();
    int reps = 0;
    while (reps < 3 || now_seconds() - start < min_seconds) {
        double t0 = now_seconds();
        call(ctx);
        double dt = now_seconds() - t0;
        double rate = 2.0 * n * (double)n * n / dt * 1e-9;
        if (rate > best) best = rate;
        reps++;
    }
    return best;
}

typedef struct {
    int n;
    const void *a, *b;
    float *c;
} square;

static void sgemm_call(void *p) {
    const square *q = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, q->n, q->n, q->n, 1.0f, q->a, q->n, q->b, q->n, 0.0f, q->c,
                q->n);
}

static void bf16_call(void *p) {
    const square *q = p;
    matmul_bf16_nn(q->c, q->a, q->b, q->n, q->n, q->n, 0);
}

double roofline_sgemm_gflops(int n, double min_seconds) {
    size_t nn = (size_t)n * n;
    float *a = malloc(nn * sizeof *a), *b = malloc(nn * sizeof *b), *c = malloc(nn * sizeof *c);
    double best = 0.0;
    if (a && b && c) {
        for (size_t i = 0; i < nn; i++) a[i] = (float)(i % 7) * 0.1f, b[i] = (float)(i % 5) * 0.1f;
        best = best_gflops(sgemm_call, &(square){n, a, b, c}, n, min_seconds);
    }
    free(a), free(b), free(c);
    return best;
}

double roofline_bf16_gflops(int n, double min_seconds) {
    if (!bf16_supported()) return 0.0;
    size_t nn = (size_t)n * n;
    float *f = malloc(nn * sizeof *f), *c = malloc(nn * sizeof *c);
    mo_bf16 *a = malloc(nn * sizeof *a), *b = malloc(nn * sizeof *b);
    double best = 0.0;
    if (f && c && a && b) {
        for (size_t i = 0; i < nn; i++) f[i] = (float)(i % 7) * 0.1f;
        bf16_from_f32(a, f, nn);
        for (size_t i = 0; i < nn; i++) f[i] = (float)(i % 5) * 0.1f;
        bf16_from_f32(b, f, nn);
        best = best_gflops(bf16_call, &(square){n, a, b, c}, n, min_seconds);
    }
    free(f), free(c), free(a), free(b);
    return best;
}

double roofline_membw_gbs(double min_seconds) {
    const size_t n = (size_t)32 << 20;  // 128 MiB per buffer: far past any L3
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    if (!x || !y) {
        free(x), free(y);
        return 0.0;
    }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) x[i] = 1.0f, y[i] = 0.0f;  // first touch by the same threads
    double best = 0.0, start = now_seconds();
    int reps = 0;
    while (reps < 3 || now_seconds() - start < min_seconds) {
        double t0 = now_seconds();
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) y[i] = 1.0001f * x[i];
        double dt = now_seconds() - t0;
        double rate = 2.0 * n * sizeof(float) / dt * 1e-9;
        if (rate > best) best = rate;
        reps++;
    }
    free(x), free(y);
    return best;
}

uint64_t *roofline_read_buffer(size_t *n) {
    *n = (size_t)32 << 20;
    uint64_t *buf = aligned_alloc((size_t)2 << 20, *n * sizeof *buf);
    if (!buf) return NULL;
    madvise(buf, *n * sizeof *buf, MADV_HUGEPAGE);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < *n; i++) buf[i] = i;  // first touch by the threads that read
    return buf;
}

// One read pass over buf[n]: its rate in GB/s.
static double read_pass(const uint64_t *buf, size_t n) {
    static volatile uint64_t sink;
    double t0 = now_seconds();
    uint64_t total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total)
    for (size_t i = 0; i < n; i += 4) total += buf[i] + buf[i + 1] + buf[i + 2] + buf[i + 3];
    double dt = now_seconds() - t0;
    sink += total;
    return 8.0 * n / dt / 1e9;
}

double roofline_read_gbs(const uint64_t *buf, size_t n, int reps) {
    double best = 0;
    for (int r = 0; r < reps; r++) {
        const double g = read_pass(buf, n);
        best = g > best ? g : best;
    }
    return best;
}

double roofline_read_mean_gbs(const uint64_t *buf, size_t n, double seconds) {
    double start = now_seconds(), dt;
    int passes = 0;
    do read_pass(buf, n), passes++;
    while ((dt = now_seconds() - start) < seconds);
    return 8.0 * n * passes / dt / 1e9;
}

uint64_t roofline_sum_bytes(const void *p, size_t bytes) {
    const unsigned char *b = p;
    const size_t n = bytes / 8;
    uint64_t t0 = 0, t1 = 0, t2 = 0, t3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        uint64_t w[4];
        memcpy(w, b + 8 * i, sizeof w);
        t0 += w[0], t1 += w[1], t2 += w[2], t3 += w[3];
    }
    for (; i < n; i++) {
        uint64_t w;
        memcpy(&w, b + 8 * i, sizeof w);
        t0 += w;
    }
    for (size_t j = 8 * n; j < bytes; j++) t1 += b[j];
    return t0 + t1 + t2 + t3;
}

double roofline_huge_share(const void *p, size_t bytes) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f || !bytes) {
        if (f) fclose(f);
        return -1;
    }
    const uintptr_t lo = (uintptr_t)p, hi = lo + bytes;
    uintptr_t a = 0, b = 0;
    double huge = 0;
    int seen = 0;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        unsigned long x, y, kb;
        if (sscanf(line, "%lx-%lx ", &x, &y) == 2 && line[strspn(line, "0123456789abcdef")] == '-') {
            a = x, b = y;
        } else if (sscanf(line, "AnonHugePages: %lu kB", &kb) == 1 && b > lo && a < hi && b > a) {
            const double overlap = (double)((b < hi ? b : hi) - (a > lo ? a : lo));
            huge += 1024.0 * kb * overlap / (double)(b - a);
            seen = 1;
        }
    }
    fclose(f);
    return seen ? huge / (double)bytes : -1;
}
