// matmul_packed.c: oneDNN matmul primitives (fp32, brgemm) over weights packed once per
// matmul_packed_stale() (see matmul_packed.h).
//
// A shape (form, N, K, threads) owns the packed weights' layout, the reorder that packs a
// weight into it, and one primitive per row count 16, 32, .., MATMUL_PACKED_ROWS and per
// acc (a sum post-op adds into C). "threads" is the team a primitive was made for: 1
// inside a parallel region (oneDNN runs there on the calling thread only), else the
// OpenMP thread count, so a primitive always runs in the context it was made for.
// Primitives use a scratchpad the caller passes (each thread its own), so the threads of
// a grouped product can run the same primitive at once.
#include "kernels/matmul_packed.h"

#include "kernels/matmul.h"

#include <dnnl.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { FORM_NT = 0, FORM_NN = 1, ROW_STEP = 16, N_BUCKETS = MATMUL_PACKED_ROWS / ROW_STEP, UNUSED_STALES = 3 };

typedef struct {
    dnnl_primitive_t prim;
    size_t scratch;  // bytes of its scratchpad
} bucket;

typedef struct shape {
    int form, N, K, nthr, copy;  // copy: the weight packed into s->packed (else read in place)
    dnnl_memory_desc_t plain, packed;  // the weight {K, N}: as the caller holds it, as oneDNN reads it
    dnnl_primitive_t reorder;  // NULL when the weight is read in place
    bucket b[2][N_BUCKETS];  // [acc][rows / 16 - 1], made at first use
    struct shape *next;
} shape;

// One weight's packed copy, in the layout of the shape (and so the form) it was last
// packed for: forward's products read the nt layout, backward's the nn one, so one buffer
// a weight serves both (repacked when the other is asked for) and a step packs each
// weight twice while holding one copy of the weights.
typedef struct entry {
    const float *W;
    const shape *s;  // the layout it holds
    void *buf;
    size_t bytes;
    unsigned long stamp, used;  // the generation it was packed in / last used in
    pthread_mutex_t mu;         // held while packing or reading it
    struct entry *next;
} entry;

enum { TABLE = 4096 };  // hash buckets of the weight entries (chained)

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;  // shapes, the table, the byte count
static dnnl_engine_t engine;
static int avail = -1;
static int mode = -1;  // matmul_packed_mode: set, or decided at the first available()
static shape *shapes;
static entry *table[TABLE];
static unsigned long gen = 1;
static size_t held;

// Per thread: its stream, scratchpad, and the padded rows of a last short chunk.
static _Thread_local dnnl_stream_t t_stream;
static _Thread_local void *t_scratch, *t_pad;
static _Thread_local size_t t_scratch_n, t_pad_n;

static int ok(dnnl_status_t s) { return s == dnnl_success; }

// matmul_packed_fail_after(): primitive calls left before the one that fails; -1: none.
static atomic_int fault_left = -1;

void matmul_packed_fail_after(int calls) { atomic_store(&fault_left, calls); }

// 1 for the call matmul_packed_fail_after() asked to fail (once).
static int fault_now(void) {
    return atomic_load_explicit(&fault_left, memory_order_relaxed) >= 0 && atomic_fetch_sub(&fault_left, 1) == 0;
}

static void *grow(void **p, size_t *have, size_t want) {
    if (*have >= want) return *p;
    void *q = NULL;
    if (posix_memalign(&q, 64, want ? want : 64)) return NULL;
    memset(q, 0, want);  // rows past a short chunk's end are read: finite, never used
    free(*p);
    *p = q, *have = want;
    return q;
}

static dnnl_stream_t stream_here(void) {
    if (!t_stream && !ok(dnnl_stream_create(&t_stream, engine, dnnl_stream_default_flags))) t_stream = NULL;
    return t_stream;
}

static int nthr_here(void) { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

static int md2(dnnl_memory_desc_t *md, int r, int c, dnnl_format_tag_t tag) {
    dnnl_dims_t d = {r, c};
    return ok(dnnl_memory_desc_init_by_tag(md, 2, d, dnnl_f32, tag));
}

// The primitive for `rows` rows of shape s, with the weights in `wmd` (s->packed, or
// format any for the first one, which decides s->packed). NULL on failure.
static dnnl_primitive_desc_t make_pd(const shape *s, int rows, int acc, const dnnl_memory_desc_t *wmd) {
    dnnl_memory_desc_t src, dst;
    if (!md2(&src, rows, s->K, dnnl_ab) || !md2(&dst, rows, s->N, dnnl_ab)) return NULL;
    dnnl_matmul_desc_t d;
    if (!ok(dnnl_matmul_desc_init(&d, &src, wmd, NULL, &dst))) return NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    int good = ok(dnnl_primitive_attr_create(&attr)) &&
               ok(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    if (good && acc)
        good = ok(dnnl_post_ops_create(&po)) && ok(dnnl_post_ops_append_sum(po, 1.0f)) &&
               ok(dnnl_primitive_attr_set_post_ops(attr, po));
    if (good && !ok(dnnl_primitive_desc_create(&pd, &d, attr, engine, NULL))) pd = NULL;
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    const char *impl = NULL;
    // Only the brgemm kernels, the ones measured (docs/benchmarks.md): oneDNN's others here
    // run on its own gemm, which packs like BLAS.
    if (pd && (!ok(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl)) || !impl ||
               !strstr(impl, "brg"))) {
        dnnl_primitive_desc_destroy(pd);
        pd = NULL;
    }
    return pd;
}

static int make_bucket(shape *s, int acc, int k) {
    bucket *b = &s->b[acc][k];
    dnnl_primitive_desc_t pd = make_pd(s, (k + 1) * ROW_STEP, acc, &s->packed);
    if (!pd) return -1;
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    b->scratch = sp ? dnnl_memory_desc_get_size(sp) : 0;
    int r = ok(dnnl_primitive_create(&b->prim, pd)) ? 0 : -1;
    if (r) b->prim = NULL;
    dnnl_primitive_desc_destroy(pd);
    return r;
}

// The shape (form, N, K) for the calling context's threads, made at first use. Under mu.
static shape *shape_get(int form, int N, int K) {
    const int copy = mode == MATMUL_PACKED_COPY;
    const int nthr = nthr_here();
    for (shape *s = shapes; s; s = s->next)
        if (s->form == form && s->N == N && s->K == K && s->nthr == nthr && s->copy == copy) return s;
    shape *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->form = form, s->N = N, s->K = K, s->nthr = nthr, s->copy = copy;
    dnnl_memory_desc_t any;
    dnnl_primitive_desc_t pd = NULL, rpd = NULL;
    // W [N, K] (nt) is {K, N} column-major to oneDNN ("ba"); W [K, N] (nn) row-major ("ab").
    int good = md2(&s->plain, K, N, form == FORM_NT ? dnnl_ba : dnnl_ab) && md2(&any, K, N, dnnl_format_tag_any) &&
               (pd = make_pd(s, MATMUL_PACKED_ROWS, 0, copy ? &any : &s->plain)) != NULL;
    if (good && !copy) s->packed = s->plain;  // the primitives read W as the caller holds it
    else if (good) {
        s->packed = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        good = ok(dnnl_reorder_primitive_desc_create(&rpd, &s->plain, engine, &s->packed, engine, NULL)) &&
               ok(dnnl_primitive_create(&s->reorder, rpd));
    }
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (!good) {
        free(s);
        return NULL;
    }
    s->next = shapes, shapes = s;
    return s;
}

// MONOLITH_PACKED: 0 off, copy, anything else in place. Unset: by the CPU, as measured
// in docs/benchmarks.md ("fp32 training on Emerald Rapids"): the packed copies on AMD
// (Zen 4: fp32 training at 0.85-0.86 of the sgemm on BLAS, 0.89-0.94 with the copies, on
// quiet runs), BLAS on Intel (Emerald Rapids: 2-3% less CPU a step than in place, 4% less
// than the copies).
static int mode_default(void) {
    const char *env = getenv("MONOLITH_PACKED");
    if (env)
        return !strcmp(env, "0") ? MATMUL_PACKED_OFF : !strcmp(env, "copy") ? MATMUL_PACKED_COPY : MATMUL_PACKED_IN_PLACE;
    __builtin_cpu_init();
    return __builtin_cpu_is("amd") ? MATMUL_PACKED_COPY : MATMUL_PACKED_OFF;
}

int matmul_packed_available(void) {
    pthread_mutex_lock(&mu);
    if (avail < 0) {
        if (mode < 0) mode = mode_default();
        avail = 0;
        if (mode != MATMUL_PACKED_OFF && (engine || ok(dnnl_engine_create(&engine, dnnl_cpu, 0)))) {
            // A probe shape: oneDNN picks its brgemm kernels on this CPU, or we do not use it.
            int save = avail;
            avail = 1;
            if (!shape_get(FORM_NT, 64, 64)) avail = save;
        }
    }
    const int a = avail;
    pthread_mutex_unlock(&mu);
    return a;
}

static void entry_free(entry *e) {
    free(e->buf);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

void matmul_packed_stale(void) {
    pthread_mutex_lock(&mu);
    gen++;
    for (int h = 0; h < TABLE; h++)
        for (entry **p = &table[h]; *p;) {
            entry *e = *p;
            if (e->used + UNUSED_STALES < gen) {
                *p = e->next, held -= e->bytes;
                entry_free(e);
            } else p = &e->next;
        }
    pthread_mutex_unlock(&mu);
}

void matmul_packed_set_mode(int m) {
    pthread_mutex_lock(&mu);
    mode = m;
    avail = m == MATMUL_PACKED_OFF ? 0 : -1;  // probed again at the next available()
    pthread_mutex_unlock(&mu);
}

size_t matmul_packed_bytes(void) {
    pthread_mutex_lock(&mu);
    size_t b = held;
    pthread_mutex_unlock(&mu);
    return b;
}

void matmul_packed_release(void) {
    pthread_mutex_lock(&mu);
    for (int h = 0; h < TABLE; h++) {
        while (table[h]) {
            entry *e = table[h];
            table[h] = e->next;
            entry_free(e);
        }
    }
    held = 0;
    while (shapes) {
        shape *s = shapes;
        shapes = s->next;
        for (int a = 0; a < 2; a++)
            for (int k = 0; k < N_BUCKETS; k++)
                if (s->b[a][k].prim) dnnl_primitive_destroy(s->b[a][k].prim);
        if (s->reorder) dnnl_primitive_destroy(s->reorder);
        free(s);
    }
    pthread_mutex_unlock(&mu);
}

// W's copy packed for shape s (packed now if the weights may have changed since, or it
// holds the other form's layout), returned with e->mu held; NULL on failure.
static entry *entry_get(shape *s, const float *W) {
    const size_t h = ((uintptr_t)W >> 6) % TABLE;
    pthread_mutex_lock(&mu);
    entry *e = table[h];
    while (e && e->W != W) e = e->next;
    if (!e && (e = calloc(1, sizeof *e)) != NULL) {
        e->W = W;
        pthread_mutex_init(&e->mu, NULL);
        e->next = table[h], table[h] = e;
    }
    const unsigned long now = gen;
    if (e) e->used = now;
    pthread_mutex_unlock(&mu);
    if (!e) return NULL;
    pthread_mutex_lock(&e->mu);
    if (e->stamp == now && e->s == s) return e;
    const size_t need = dnnl_memory_desc_get_size(&s->packed);
    if (need > e->bytes) {
        void *b = NULL;
        if (posix_memalign(&b, 64, need)) {
            pthread_mutex_unlock(&e->mu);
            return NULL;
        }
        free(e->buf);
        pthread_mutex_lock(&mu);
        held += need - e->bytes;
        pthread_mutex_unlock(&mu);
        e->buf = b, e->bytes = need;
    }
    e->s = NULL;  // until the reorder below succeeds
    dnnl_memory_t src = NULL, dst = NULL;
    dnnl_stream_t st = stream_here();
    int good = st && ok(dnnl_memory_create(&src, &s->plain, engine, (void *)W)) &&
               ok(dnnl_memory_create(&dst, &s->packed, engine, e->buf));
    if (good) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
        good = ok(dnnl_primitive_execute(s->reorder, st, 2, args)) && ok(dnnl_stream_wait(st));
    }
    if (src) dnnl_memory_destroy(src);
    if (dst) dnnl_memory_destroy(dst);
    if (!good) {
        pthread_mutex_unlock(&e->mu);
        return NULL;
    }
    e->s = s, e->stamp = now;
    return e;
}

// The primitive for `rows` rows (a multiple of 16, at most MATMUL_PACKED_ROWS) made, and
// this thread's scratchpad big enough for it.
static int ready(shape *s, int rows, int acc) {
    const int k = rows / ROW_STEP - 1;
    bucket *b = &s->b[acc][k];
    if (!b->prim) {
        pthread_mutex_lock(&mu);
        int r = b->prim ? 0 : make_bucket(s, acc, k);
        pthread_mutex_unlock(&mu);
        if (r) return -1;
    }
    return stream_here() && (!b->scratch || grow(&t_scratch, &t_scratch_n, b->scratch)) ? 0 : -1;
}

// One primitive call: rows (ready()) of A into C. What fails here (making the memory
// objects, oneDNN's checks of the arguments) fails before the kernels write C: C's rows
// are done or untouched.
static int run(shape *s, void *wbuf, float *C, const float *A, int rows, int acc) {
    if (fault_now()) return -1;
    const bucket *b = &s->b[acc][rows / ROW_STEP - 1];
    dnnl_stream_t st = t_stream;
    void *scratch = t_scratch;
    dnnl_memory_desc_t smd, dmd, pmd;
    dnnl_memory_t src = NULL, dst = NULL, wei = NULL, pad = NULL;
    int good = md2(&smd, rows, s->K, dnnl_ab) && md2(&dmd, rows, s->N, dnnl_ab) &&
               ok(dnnl_memory_create(&src, &smd, engine, (void *)A)) && ok(dnnl_memory_create(&dst, &dmd, engine, C)) &&
               ok(dnnl_memory_create(&wei, &s->packed, engine, wbuf));
    if (good && b->scratch) {
        dnnl_dims_t d = {(dnnl_dim_t)b->scratch};
        good = ok(dnnl_memory_desc_init_by_tag(&pmd, 1, d, dnnl_u8, dnnl_a)) &&
               ok(dnnl_memory_create(&pad, &pmd, engine, scratch));
    }
    if (good) {
        dnnl_exec_arg_t args[4] = {
            {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}, {DNNL_ARG_SCRATCHPAD, pad}};
        good = ok(dnnl_primitive_execute(b->prim, st, pad ? 4 : 3, args)) && ok(dnnl_stream_wait(st));
    }
    if (src) dnnl_memory_destroy(src);
    if (dst) dnnl_memory_destroy(dst);
    if (wei) dnnl_memory_destroy(wei);
    if (pad) dnnl_memory_destroy(pad);
    return good ? 0 : -1;
}

// The product's rows done: M, or on failure the rows before the failed call (their result
// in C, the rows after untouched), so the caller finishes exactly the rest.
static int product(int form, float *C, const float *A, const float *W, int M, int N, int K, int acc) {
    if (M <= 0) return 0;
    if (N <= 0) return M;
    if (K <= 0) {
        if (!acc) memset(C, 0, (size_t)M * (size_t)N * sizeof *C);
        return M;
    }
    if (matmul_packed_available() != 1) return 0;
    pthread_mutex_lock(&mu);
    shape *s = shape_get(form, N, K);
    pthread_mutex_unlock(&mu);
    if (!s) return 0;
    // Whole chunks, then the rest's multiple of 16 rows in place, then the last 1..15 rows
    // through a padded copy of 16 rows ([16, K] of A, then [16, N] of C). The primitives,
    // scratchpads and packed weight are made first: only a primitive call can fail after.
    const int whole = M / MATMUL_PACKED_ROWS, rest = M % MATMUL_PACKED_ROWS / ROW_STEP * ROW_STEP;
    const size_t tail = (size_t)(M % ROW_STEP);
    if ((whole && ready(s, MATMUL_PACKED_ROWS, acc)) || (rest && ready(s, rest, acc)) ||
        (tail && (ready(s, ROW_STEP, acc) || !grow(&t_pad, &t_pad_n, (size_t)ROW_STEP * (K + N) * sizeof(float)))))
        return 0;
    // The packed copy (held locked until the product is done), or W itself.
    entry *e = NULL;
    if (s->copy && !(e = entry_get(s, W))) return 0;
    void *wbuf = e ? e->buf : (void *)W;
    int m = 0;
    while (M - m >= ROW_STEP) {
        const int rows = M - m >= MATMUL_PACKED_ROWS ? MATMUL_PACKED_ROWS : rest;
        if (run(s, wbuf, C + (size_t)m * N, A + (size_t)m * K, rows, acc)) break;
        m += rows;
    }
    if (m == M - (int)tail && tail) {
        float *pa = t_pad, *pc = pa + (size_t)ROW_STEP * K;
        memcpy(pa, A + (size_t)m * K, tail * K * sizeof *pa);
        if (acc) memcpy(pc, C + (size_t)m * N, tail * N * sizeof *pc);
        if (run(s, wbuf, pc, pa, ROW_STEP, acc) == 0) {
            memcpy(C + (size_t)m * N, pc, tail * N * sizeof *pc);
            m = M;
        }
    }
    if (e) pthread_mutex_unlock(&e->mu);
    return m;
}

int matmul_packed_nt(float *C, const float *A, const float *W, int M, int N, int K, int acc) {
    return product(FORM_NT, C, A, W, M, N, K, acc);
}

int matmul_packed_nn(float *C, const float *A, const float *W, int M, int N, int K, int acc) {
    return product(FORM_NN, C, A, W, M, N, K, acc);
}

// BLAS finishes what oneDNN did not: all of it, or the rows after a failed call.
void matmul_weight_nt(int packed, float *C, const float *A, const float *W, int M, int N, int K, int acc) {
    const int done = packed ? product(FORM_NT, C, A, W, M, N, K, acc) : 0;
    if (done < M) matmul_nt(C + (size_t)done * N, A + (size_t)done * K, W, M - done, N, K, acc);
}

void matmul_weight_nn(int packed, float *C, const float *A, const float *W, int M, int N, int K, int acc) {
    const int done = packed ? product(FORM_NN, C, A, W, M, N, K, acc) : 0;
    if (done < M) matmul_nn(C + (size_t)done * N, A + (size_t)done * K, W, M - done, N, K, acc);
}
