// kernels_roofline.c: the plain read decode's probe times (roofline_sum_bytes) against a
// sum spelled out byte by byte, at every alignment and tail length, so the probe reads
// exactly the bytes it is given; and roofline_huge_share's answers stay in range.
// No timing here: speed is a benchmark (monolith bench), never a test.
#include "kernels/roofline.h"
#include "tests/testutil.h"

#include <stdlib.h>
#include <sys/mman.h>

// The definition: little-endian 64-bit words of [p, p + 8 * (bytes / 8)), then each byte
// of the tail under 8, all added modulo 2^64.
static uint64_t sum_by_definition(const unsigned char *p, size_t bytes) {
    uint64_t s = 0;
    size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
        uint64_t w = 0;
        for (int k = 7; k >= 0; k--) w = w << 8 | p[i + k];
        s += w;
    }
    for (; i < bytes; i++) s += p[i];
    return s;
}

START_TEST(test_sum_bytes_every_alignment_and_tail) {
    enum { N = 4096 + 64 };
    unsigned char *buf = malloc(N);
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < N; i++) x = x * 6364136223846793005u + 1442695040888963407u, buf[i] = (unsigned char)(x >> 56);
    static const size_t sizes[] = {0, 1, 7, 8, 9, 31, 32, 33, 39, 40, 63, 64, 65, 255, 1000, 4096};
    for (size_t off = 0; off < 8; off++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            const uint64_t got = roofline_sum_bytes(buf + off, sizes[s]);
            const uint64_t want = sum_by_definition(buf + off, sizes[s]);
            ck_assert_msg(got == want, "offset %zu, %zu bytes: %llu, by definition %llu", off, sizes[s],
                          (unsigned long long)got, (unsigned long long)want);
        }
    // One byte changed anywhere in the range changes the sum; outside it, nothing does.
    const uint64_t base = roofline_sum_bytes(buf + 3, 1000);
    buf[3 + 999] ^= 1;
    ck_assert(roofline_sum_bytes(buf + 3, 1000) != base);
    buf[3 + 999] ^= 1;
    buf[3 + 1000] ^= 1, buf[2] ^= 1;
    ck_assert(roofline_sum_bytes(buf + 3, 1000) == base);
    free(buf);
}
END_TEST

START_TEST(test_huge_share_in_range) {
    const int local = 0;
    ck_assert(roofline_huge_share(&local, 0) == -1);
    const size_t bytes = (size_t)8 << 20;
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert(p != MAP_FAILED);
    memset(p, 1, bytes);
    const double share = roofline_huge_share(p, bytes);
    // -1 only where /proc/self/smaps is not readable; else a share of the range.
    ck_assert_msg(share == -1 || (share >= 0 && share <= 1), "share %g", share);
    // A mapping outside every range of smaps' lines: nothing of it is on huge pages.
    munmap(p, bytes);
    const double gone = roofline_huge_share(p, bytes);
    ck_assert_msg(gone == -1 || gone == 0, "unmapped range: share %g", gone);
}
END_TEST

int main(void) {
    Suite *s = suite_create("roofline");
    TCase *tc = tcase_create("roofline");
    tcase_add_test(tc, test_sum_bytes_every_alignment_and_tail);
    tcase_add_test(tc, test_huge_share_in_range);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
