// overnight_kernel_check: checks the patched ggml CPU kernels the trainer depends on against a
// double-precision reference, outside the addon (run by test/native/kernels.test.ts).
//
// OUT_PROD (patch 0002, a blocked GEMM): dst[n, m, i2, i3] = sum_k src0[n, k, i2/dps2, i3/dps3] *
// src1[m, k, i2, i3] for every src0 type the trainer meets (F32, F16, BF16, Q4_0, Q8_0, Q4_K,
// Q6_K), src1 plain or a transposed view (the input gradient dY^T), broadcast over dim 2
// (grouped-query attention), and sizes that leave partial register tiles, column slabs, row
// chunks and depth blocks, on 1, 2 and 3 threads. The reference multiplies the same dequantized
// src0 values, so any difference is the kernel's own: it must stay within float rounding
// (1e-5 of the sum of |terms|).
//
// Prints one line per case ("ok ..." or "FAIL ...") and exits 1 if any case failed.
#include "ggml.h"
#include "ggml-cpu.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

namespace {

uint64_t g_state = 0x9e3779b97f4a7c15ull;
float rnd() {
    g_state ^= g_state << 13;
    g_state ^= g_state >> 7;
    g_state ^= g_state << 17;
    return (float) ((g_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

struct Case {
    ggml_type type;
    int64_t n, k, m;     // dst is [n, m]; the contraction runs over k
    int64_t batch, dps;  // dst slices along dim 2, and dst slices per src0 slice
    bool transposed;     // src1 is transpose(g) of a [k, m] tensor (as dY^T in an input gradient)
};

// the largest |got - ref| / sum|terms| over dst
double check(const Case & c, int n_threads) {
    const int64_t ne02 = c.batch / c.dps;
    ggml_init_params ip = { (size_t) 64 * 1024 * 1024, nullptr, false };
    ggml_context * ctx = ggml_init(ip);
    ggml_tensor * ref0 = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, c.n, c.k, ne02);
    float * r0 = (float *) ref0->data;
    for (int64_t i = 0; i < ggml_nelements(ref0); ++i) r0[i] = rnd();
    ggml_tensor * src0 = ref0;
    if (c.type != GGML_TYPE_F32) {
        src0 = ggml_new_tensor_3d(ctx, c.type, c.n, c.k, ne02);
        const int64_t rows = c.k * ne02;
        ggml_get_type_traits_cpu(c.type)->from_float(r0, src0->data, rows * c.n);
        ggml_get_type_traits(c.type)->to_float(src0->data, r0, rows * c.n);   // the values the kernel sees
    }
    ggml_tensor * src1;
    if (c.transposed) {
        ggml_tensor * g = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, c.k, c.m, c.batch);
        for (int64_t i = 0; i < ggml_nelements(g); ++i) ((float *) g->data)[i] = rnd();
        src1 = ggml_transpose(ctx, g);
    } else {
        src1 = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, c.m, c.k, c.batch);
        for (int64_t i = 0; i < ggml_nelements(src1); ++i) ((float *) src1->data)[i] = rnd();
    }
    ggml_tensor * dst = ggml_out_prod(ctx, src0, src1);
    // poison dst: the kernel must write every element (it has no zeroing pass)
    for (int64_t i = 0; i < ggml_nelements(dst); ++i) ((float *) dst->data)[i] = NAN;
    ggml_cgraph * gf = ggml_new_graph(ctx);
    ggml_build_forward_expand(gf, dst);
    ggml_graph_compute_with_ctx(ctx, gf, n_threads);
    double worst = 0.0;
    for (int64_t b = 0; b < c.batch; ++b) {
        for (int64_t m = 0; m < c.m; ++m) {
            for (int64_t n = 0; n < c.n; ++n) {
                double ref = 0.0, mag = 0.0;
                for (int64_t k = 0; k < c.k; ++k) {
                    const double x = r0[((b / c.dps) * c.k + k) * c.n + n];
                    const double y = *(const float *) ((const char *) src1->data + m * src1->nb[0] + k * src1->nb[1] + b * src1->nb[2]);
                    ref += x * y;
                    mag += std::fabs(x * y);
                }
                const double got = *(const float *) ((const char *) dst->data + n * dst->nb[0] + m * dst->nb[1] + b * dst->nb[2]);
                const double e = std::isfinite(got) ? std::fabs(got - ref) / (mag + 1e-30) : INFINITY;
                if (!(e <= worst)) worst = e;
            }
        }
    }
    ggml_free(ctx);
    return worst;
}

}  // namespace

int main() {
    const Case cases[] = {
        { GGML_TYPE_F32,    1,   1,   1, 1, 1, false },
        { GGML_TYPE_F32,   17,   5,   3, 1, 1, true  },
        { GGML_TYPE_F32,   64, 300,  37, 4, 2, false },   // GQA: two dst slices per src0 slice
        { GGML_TYPE_F32,   33, 129,  13, 3, 3, true  },
        { GGML_TYPE_F32,  300, 257,   7, 2, 1, false },   // two column slabs, three depth blocks
        { GGML_TYPE_F32,   16,  40, 200, 1, 1, false },   // LoRA-B-like: narrow dst rows, many of them
        { GGML_TYPE_F16,   96, 130,  11, 1, 1, true  },
        { GGML_TYPE_BF16,  64,  40,   9, 2, 1, true  },
        { GGML_TYPE_Q4_0, 544, 131,  29, 1, 1, true  },
        { GGML_TYPE_Q8_0,  64,  70,   5, 1, 1, true  },
        { GGML_TYPE_Q4_K, 512, 129,  19, 1, 1, true  },
        { GGML_TYPE_Q6_K, 768,  33,   7, 1, 1, false },
    };
    int failed = 0;
    for (const Case & c : cases) {
        for (int threads = 1; threads <= 3; ++threads) {
            const double e = check(c, threads);
            const bool ok = e <= 1e-5;
            failed += ok ? 0 : 1;
            std::printf("%s out_prod %s n=%lld k=%lld m=%lld batch=%lld dps=%lld transposed=%d threads=%d max_rel_err=%.2e\n",
                        ok ? "ok" : "FAIL", ggml_type_name(c.type), (long long) c.n, (long long) c.k, (long long) c.m,
                        (long long) c.batch, (long long) c.dps, c.transposed ? 1 : 0, threads, e);
        }
    }
    std::printf("%d of %d cases failed\n", failed, (int) (sizeof(cases) / sizeof(cases[0])) * 3);
    return failed ? 1 : 0;
}
