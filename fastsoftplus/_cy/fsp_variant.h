/* The loops of ONE ISA variant.
 *
 * NO include guard around the loops: fsp_loops.c includes this file once per variant, inside
 * `#pragma GCC target(...)`, right after `#include "kernels.h"`, with FSP_K(name) defined to give
 * the variant's names a suffix (fsp_loop_softplus_f32_avx512, ...) and FSP_VARIANT_NAME set.
 * It defines, for each function F in {softplus, grad, inverse} and S in {f32, f64}:
 *
 *   void fsp_loop_F_S(const T *x, T *y, npy_intp n, T beta, T thr)
 *       the contiguous SIMD loop over the inline kernel FSP_K(fsp_F_S) from kernels.h; x == y
 *       (in place) is allowed: `GCC ivdep` tells the vectorizer that there is no loop-carried
 *       dependence, so no run-time alias check sends the in-place case down the scalar path;
 *       with beta == 1, blocks of PLAIN_BLOCK whose inputs all lie in the plain range run the
 *       plain kernel fsp_F1p_S (FSP_PLAIN_BLOCKS);
 *   void fsp_loopv_F_S(const T *x, const T *beta, const T *thr, T *y, npy_intp n)
 *       the same with per-element beta/threshold;
 *   range functions (fsp_range_fn) over the ufunc arguments, for index range [start, end):
 *   fsp_contig_F_S   x, out contiguous, beta/threshold scalars: one call of fsp_loop;
 *   fsp_chunk_F_S    any strides: blocks of FSP_BLOCK elements gathered into stack buffers,
 *                    computed by fsp_loop (or fsp_loopv), scattered back; never a full copy;
 *   fsp_chunk_F_f16  float16 x/out (float32 beta/threshold), computed by the float32 loops;
 * and the same for backward with (g, x): fsp_loop_backward_S(g, x, y, n, beta, thr), ...
 * Finally a table `fsp_isa FSP_K(fsp_isa_table)` of the range functions.
 */

#ifndef FSP_VARIANT_MACROS
#define FSP_VARIANT_MACROS

#if defined(__clang__)
#define FSP_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define FSP_IVDEP _Pragma("GCC ivdep")
#else
#define FSP_IVDEP
#endif

#if defined(__GNUC__)
#define FSP_ALIGNED __attribute__((aligned(64)))
/* flatten: inline every kernel helper into the loop whatever GCC's size heuristics say (a helper
 * left out of line, e.g. one called from several kernels, is a call the vectorizer cannot cross). */
#define FSP_FLATTEN __attribute__((flatten))
#else
#define FSP_ALIGNED
#define FSP_FLATTEN
#endif

/* Contiguous and aligned: the vectorized loop may read/write it directly. */
#define FSP_IS_CONTIG(ptr, step, T) \
    ((step) == (npy_intp)sizeof(T) && ((npy_uintp)(ptr) % sizeof(T)) == 0)

/* memcpy: correct for any alignment; compiles to one load/store. */
#define FSP_GATHER(T, dst, src, step, m) do {                                  \
        const char *p_ = (src);                                                 \
        for (npy_intp k_ = 0; k_ < (m); k_++)                                   \
            memcpy(&(dst)[k_], p_ + k_ * (step), sizeof(T));                    \
    } while (0)
#define FSP_SCATTER(T, dst, step, src, m) do {                                 \
        char *p_ = (dst);                                                       \
        for (npy_intp k_ = 0; k_ < (m); k_++)                                   \
            memcpy(p_ + k_ * (step), &(src)[k_], sizeof(T));                    \
    } while (0)
#define FSP_GATHER_F16(dst, src, step, m) do {                                 \
        const char *p_ = (src);                                                 \
        for (npy_intp k_ = 0; k_ < (m); k_++) {                                 \
            fsp_half h_;                                                        \
            memcpy(&h_, p_ + k_ * (step), sizeof(h_));                          \
            (dst)[k_] = FSP_H2F(h_);                                            \
        }                                                                       \
    } while (0)
#define FSP_SCATTER_F16(dst, step, src, m) do {                                \
        char *p_ = (dst);                                                       \
        for (npy_intp k_ = 0; k_ < (m); k_++) {                                 \
            fsp_half h_ = FSP_F2H((src)[k_]);                                   \
            memcpy(p_ + k_ * (step), &h_, sizeof(h_));                          \
        }                                                                       \
    } while (0)
#define FSP_MIN_BLOCK(rest) ((rest) < FSP_BLOCK ? (rest) : (npy_intp)FSP_BLOCK)

/* 1 if every x[i] lies in (lo, hi), 0 if any does not or is NaN: one vector compare and OR
 * per vector, no early exit (which would keep the loop scalar). */
#define FSP_DEFINE_WITHIN(T, S)                                                                \
static inline int FSP_K(fsp_within_##S)(const T *x, npy_intp m, T lo, T hi)                   \
{                                                                                              \
    int out = 0;                                                                               \
    for (npy_intp i = 0; i < m; i++)                                                           \
        out |= !(x[i] > lo && x[i] < hi);                                                      \
    return !out;                                                                               \
}

/* Blocks of PLAIN_BLOCK (_constants.py): a block whose every x lies in the plain range
 * (PLAIN_MIN_S, min(IDENTITY_ABOVE, thr)) runs the plain kernel fsp_F1p_S, any other the full
 * one (the same bits either way); BODY(K) is the loop body for the kernel named K.
 * FSP_C_PLAIN_FUSED_S (_constants.py, C_PLAIN_FUSED_*): the plain loop tests the range as it
 * goes. Where the output overlaps no input (SEPARATE), a block goes straight into it when the
 * block before passed (and the first block does), and a failing block is then computed again by
 * the full kernel: the plain results on out-of-range x are overwritten, never used. Otherwise (in
 * place, after a failing block, or without FUSED) a scan decides first, so data mostly outside
 * the range is not computed twice. */
#define FSP_PLAIN_MIN_f32 FSP_PLAIN_MIN_F32
#define FSP_PLAIN_MIN_f64 FSP_PLAIN_MIN_F64
#define FSP_PLAIN_FUSED_f32 FSP_C_PLAIN_FUSED_F32
#define FSP_PLAIN_FUSED_f64 FSP_C_PLAIN_FUSED_F64
#define FSP_PLAIN_BLOCKS(S, T, xs, n, thr, F1P, F1, BODY, SEPARATE)                            \
    do {                                                                                       \
        const T lo_ = (T)FSP_PLAIN_MIN_##S;                                                    \
        const T hi_ = (thr) < (T)FSP_IDENTITY_ABOVE ? (thr) : (T)FSP_IDENTITY_ABOVE;           \
        const int separate_ = FSP_PLAIN_FUSED_##S && (SEPARATE);                               \
        int fused_ = separate_;                                                                \
        for (npy_intp i0 = 0; i0 < (n); i0 += FSP_PLAIN_BLOCK) {                               \
            const npy_intp end_ = (n) - i0 < FSP_PLAIN_BLOCK ? (n) : i0 + FSP_PLAIN_BLOCK;     \
            int out_ = 1;                                                                      \
            if (fused_ || FSP_K(fsp_within_##S)((xs) + i0, end_ - i0, lo_, hi_)) {             \
                out_ = 0;                                                                      \
                FSP_IVDEP                                                                      \
                for (npy_intp i = i0; i < end_; i++) {                                         \
                    if (FSP_PLAIN_FUSED_##S) /* a constant: without it, no test in the loop */ \
                        out_ |= !((xs)[i] > lo_ && (xs)[i] < hi_);                             \
                    BODY(F1P);                                                                 \
                }                                                                              \
            }                                                                                  \
            if (out_) {                                                                        \
                FSP_IVDEP                                                                      \
                for (npy_intp i = i0; i < end_; i++)                                           \
                    BODY(F1);                                                                  \
            }                                                                                  \
            fused_ = separate_ && !out_;                                                       \
        }                                                                                      \
    } while (0)
/* 1 if the n elements of T at a and at b share no byte */
#define FSP_DISJOINT(a, b, n, T)                                                               \
    ((npy_uintp)(a) + (npy_uintp)(n) * sizeof(T) <= (npy_uintp)(b) ||                          \
     (npy_uintp)(b) + (npy_uintp)(n) * sizeof(T) <= (npy_uintp)(a))
#define FSP_UNARY_BODY(K) y[i] = FSP_K(K)(x[i], thr)
#define FSP_BINARY_BODY(K) y[i] = FSP_K(K)(g[i], x[i], thr)

/* ---- y = F(x; beta, thr): args x, beta, thr, out -------------------------------------- */
/* PLAIN: 1 where F has a plain variant (the scan pays off), 0 where not */
#define FSP_DEFINE_UNARY(F, T, S, PLAIN)                                                       \
static FSP_FLATTEN void FSP_K(fsp_loop_##F##_##S)(const T *x, T *y, npy_intp n, T beta, T thr)            \
{                                                                                              \
    if (beta == (T)1 && (PLAIN)) {                                                             \
        FSP_PLAIN_BLOCKS(S, T, x, n, thr, fsp_##F##1p_##S, fsp_##F##1_##S, FSP_UNARY_BODY,     \
                         FSP_DISJOINT(x, y, n, T));                                            \
        return;                                                                                \
    }                                                                                          \
    if (beta == (T)1) { /* the common case: beta*x and /beta fold away (no vector division) */ \
        FSP_IVDEP                                                                              \
        for (npy_intp i = 0; i < n; i++)                                                       \
            y[i] = FSP_K(fsp_##F##1_##S)(x[i], thr);                                          \
        return;                                                                                \
    }                                                                                          \
    FSP_IVDEP                                                                                  \
    for (npy_intp i = 0; i < n; i++)                                                           \
        y[i] = FSP_K(fsp_##F##_##S)(x[i], beta, thr);                                         \
}                                                                                              \
static FSP_FLATTEN void FSP_K(fsp_loopv_##F##_##S)(const T *x, const T *beta, const T *thr, T *y,          \
                                        npy_intp n)                                            \
{                                                                                              \
    FSP_IVDEP                                                                                  \
    for (npy_intp i = 0; i < n; i++)                                                           \
        y[i] = FSP_K(fsp_##F##v_##S)(x[i], beta[i], thr[i]);                                  \
}                                                                                              \
static void FSP_K(fsp_contig_##F##_##S)(char **args, const npy_intp *steps,                    \
                                         npy_intp start, npy_intp end)                         \
{                                                                                              \
    (void)steps;                                                                               \
    FSP_K(fsp_loop_##F##_##S)((const T *)args[0] + start, (T *)args[3] + start, end - start,   \
                              *(const T *)args[1], *(const T *)args[2]);                       \
}                                                                                              \
static void FSP_K(fsp_chunk_##F##_##S)(char **args, const npy_intp *steps,                     \
                                        npy_intp start, npy_intp end)                          \
{                                                                                              \
    const npy_intp sx = steps[0], sb = steps[1], st = steps[2], so = steps[3];                 \
    const int scalar_params = (sb == 0 && st == 0);                                           \
    T beta, thr;                                                                               \
    FSP_ALIGNED T bx[FSP_BLOCK];                                                               \
    FSP_ALIGNED T bb[FSP_BLOCK];                                                               \
    FSP_ALIGNED T bt[FSP_BLOCK];                                                               \
    FSP_ALIGNED T by[FSP_BLOCK];                                                               \
    memcpy(&beta, args[1], sizeof(T));                                                         \
    memcpy(&thr, args[2], sizeof(T));                                                          \
    for (npy_intp i0 = start; i0 < end; i0 += FSP_BLOCK) {                                     \
        const npy_intp m = FSP_MIN_BLOCK(end - i0);                                            \
        char *px = args[0] + i0 * sx, *po = args[3] + i0 * so;                                 \
        const T *xin = (const T *)px;                                                          \
        T *yout = FSP_IS_CONTIG(po, so, T) ? (T *)po : by;                                     \
        if (!FSP_IS_CONTIG(px, sx, T)) {                                                       \
            FSP_GATHER(T, bx, px, sx, m);                                                      \
            xin = bx;                                                                          \
        }                                                                                      \
        if (scalar_params) {                                                                   \
            FSP_K(fsp_loop_##F##_##S)(xin, yout, m, beta, thr);                                \
        } else {                                                                               \
            FSP_GATHER(T, bb, args[1] + i0 * sb, sb, m);                                       \
            FSP_GATHER(T, bt, args[2] + i0 * st, st, m);                                       \
            FSP_K(fsp_loopv_##F##_##S)(xin, bb, bt, yout, m);                                  \
        }                                                                                      \
        if (yout == by)                                                                        \
            FSP_SCATTER(T, po, so, by, m);                                                     \
    }                                                                                          \
}

#define FSP_DEFINE_UNARY_F16(F)                                                                \
static void FSP_K(fsp_chunk_##F##_f16)(char **args, const npy_intp *steps,                     \
                                        npy_intp start, npy_intp end)                          \
{                                                                                              \
    const npy_intp sx = steps[0], sb = steps[1], st = steps[2], so = steps[3];                 \
    const int scalar_params = (sb == 0 && st == 0);                                            \
    float beta, thr;                                                                           \
    FSP_ALIGNED float bx[FSP_BLOCK];                                                           \
    FSP_ALIGNED float bb[FSP_BLOCK];                                                           \
    FSP_ALIGNED float bt[FSP_BLOCK];                                                           \
    memcpy(&beta, args[1], sizeof(float));                                                     \
    memcpy(&thr, args[2], sizeof(float));                                                      \
    for (npy_intp i0 = start; i0 < end; i0 += FSP_BLOCK) {                                     \
        const npy_intp m = FSP_MIN_BLOCK(end - i0);                                            \
        FSP_GATHER_F16(bx, args[0] + i0 * sx, sx, m);                                          \
        if (scalar_params) {                                                                   \
            FSP_K(fsp_loop_##F##_f32)(bx, bx, m, beta, thr);                                   \
        } else {                                                                               \
            FSP_GATHER(float, bb, args[1] + i0 * sb, sb, m);                                   \
            FSP_GATHER(float, bt, args[2] + i0 * st, st, m);                                   \
            FSP_K(fsp_loopv_##F##_f32)(bx, bb, bt, bx, m);                                     \
        }                                                                                      \
        FSP_SCATTER_F16(args[3] + i0 * so, so, bx, m);                                         \
    }                                                                                          \
}

/* ---- y = g * grad(x; beta, thr): args g, x, beta, thr, out ------------------------------ */
#define FSP_DEFINE_BINARY(F, T, S, PLAIN)                                                      \
static FSP_FLATTEN void FSP_K(fsp_loop_##F##_##S)(const T *g, const T *x, T *y, npy_intp n,               \
                                       T beta, T thr)                                          \
{                                                                                              \
    if (beta == (T)1 && (PLAIN)) {                                                             \
        FSP_PLAIN_BLOCKS(S, T, x, n, thr, fsp_##F##1p_##S, fsp_##F##1_##S, FSP_BINARY_BODY,    \
                         FSP_DISJOINT(x, y, n, T) && FSP_DISJOINT(g, y, n, T));                \
        return;                                                                                \
    }                                                                                          \
    if (beta == (T)1) {                                                                        \
        FSP_IVDEP                                                                              \
        for (npy_intp i = 0; i < n; i++)                                                       \
            y[i] = FSP_K(fsp_##F##1_##S)(g[i], x[i], thr);                                    \
        return;                                                                                \
    }                                                                                          \
    FSP_IVDEP                                                                                  \
    for (npy_intp i = 0; i < n; i++)                                                           \
        y[i] = FSP_K(fsp_##F##_##S)(g[i], x[i], beta, thr);                                   \
}                                                                                              \
static FSP_FLATTEN void FSP_K(fsp_loopv_##F##_##S)(const T *g, const T *x, const T *beta, const T *thr,    \
                                        T *y, npy_intp n)                                      \
{                                                                                              \
    FSP_IVDEP                                                                                  \
    for (npy_intp i = 0; i < n; i++)                                                           \
        y[i] = FSP_K(fsp_##F##v_##S)(g[i], x[i], beta[i], thr[i]);                            \
}                                                                                              \
static void FSP_K(fsp_contig_##F##_##S)(char **args, const npy_intp *steps,                    \
                                         npy_intp start, npy_intp end)                         \
{                                                                                              \
    (void)steps;                                                                               \
    FSP_K(fsp_loop_##F##_##S)((const T *)args[0] + start, (const T *)args[1] + start,          \
                              (T *)args[4] + start, end - start,                               \
                              *(const T *)args[2], *(const T *)args[3]);                       \
}                                                                                              \
static void FSP_K(fsp_chunk_##F##_##S)(char **args, const npy_intp *steps,                     \
                                        npy_intp start, npy_intp end)                          \
{                                                                                              \
    const npy_intp sg = steps[0], sx = steps[1], sb = steps[2], st = steps[3], so = steps[4];  \
    const int scalar_params = (sb == 0 && st == 0);                                            \
    T beta, thr;                                                                               \
    FSP_ALIGNED T bg[FSP_BLOCK];                                                               \
    FSP_ALIGNED T bx[FSP_BLOCK];                                                               \
    FSP_ALIGNED T bb[FSP_BLOCK];                                                               \
    FSP_ALIGNED T bt[FSP_BLOCK];                                                               \
    FSP_ALIGNED T by[FSP_BLOCK];                                                               \
    memcpy(&beta, args[2], sizeof(T));                                                         \
    memcpy(&thr, args[3], sizeof(T));                                                          \
    for (npy_intp i0 = start; i0 < end; i0 += FSP_BLOCK) {                                     \
        const npy_intp m = FSP_MIN_BLOCK(end - i0);                                            \
        char *pg = args[0] + i0 * sg, *px = args[1] + i0 * sx, *po = args[4] + i0 * so;       \
        const T *gin = (const T *)pg, *xin = (const T *)px;                                    \
        T *yout = FSP_IS_CONTIG(po, so, T) ? (T *)po : by;                                     \
        if (!FSP_IS_CONTIG(pg, sg, T)) {                                                       \
            FSP_GATHER(T, bg, pg, sg, m);                                                      \
            gin = bg;                                                                          \
        }                                                                                      \
        if (!FSP_IS_CONTIG(px, sx, T)) {                                                       \
            FSP_GATHER(T, bx, px, sx, m);                                                      \
            xin = bx;                                                                          \
        }                                                                                      \
        if (scalar_params) {                                                                   \
            FSP_K(fsp_loop_##F##_##S)(gin, xin, yout, m, beta, thr);                           \
        } else {                                                                               \
            FSP_GATHER(T, bb, args[2] + i0 * sb, sb, m);                                       \
            FSP_GATHER(T, bt, args[3] + i0 * st, st, m);                                       \
            FSP_K(fsp_loopv_##F##_##S)(gin, xin, bb, bt, yout, m);                             \
        }                                                                                      \
        if (yout == by)                                                                        \
            FSP_SCATTER(T, po, so, by, m);                                                     \
    }                                                                                          \
}

#define FSP_DEFINE_BINARY_F16(F)                                                               \
static void FSP_K(fsp_chunk_##F##_f16)(char **args, const npy_intp *steps,                     \
                                        npy_intp start, npy_intp end)                          \
{                                                                                              \
    const npy_intp sg = steps[0], sx = steps[1], sb = steps[2], st = steps[3], so = steps[4];  \
    const int scalar_params = (sb == 0 && st == 0);                                            \
    float beta, thr;                                                                           \
    FSP_ALIGNED float bg[FSP_BLOCK];                                                           \
    FSP_ALIGNED float bx[FSP_BLOCK];                                                           \
    FSP_ALIGNED float bb[FSP_BLOCK];                                                           \
    FSP_ALIGNED float bt[FSP_BLOCK];                                                           \
    memcpy(&beta, args[2], sizeof(float));                                                     \
    memcpy(&thr, args[3], sizeof(float));                                                      \
    for (npy_intp i0 = start; i0 < end; i0 += FSP_BLOCK) {                                     \
        const npy_intp m = FSP_MIN_BLOCK(end - i0);                                            \
        FSP_GATHER_F16(bg, args[0] + i0 * sg, sg, m);                                          \
        FSP_GATHER_F16(bx, args[1] + i0 * sx, sx, m);                                          \
        if (scalar_params) {                                                                   \
            FSP_K(fsp_loop_##F##_f32)(bg, bx, bx, m, beta, thr);                               \
        } else {                                                                               \
            FSP_GATHER(float, bb, args[2] + i0 * sb, sb, m);                                   \
            FSP_GATHER(float, bt, args[3] + i0 * st, st, m);                                   \
            FSP_K(fsp_loopv_##F##_f32)(bg, bx, bb, bt, bx, m);                                 \
        }                                                                                      \
        FSP_SCATTER_F16(args[4] + i0 * so, so, bx, m);                                         \
    }                                                                                          \
}

#endif /* FSP_VARIANT_MACROS */

/* ---- this variant's instances (expanded with the current FSP_K) ------------------------- */
FSP_DEFINE_WITHIN(float, f32)
FSP_DEFINE_WITHIN(double, f64)
FSP_DEFINE_UNARY(softplus, float, f32, FSP_HAS_PLAIN_F32)
FSP_DEFINE_UNARY(softplus, double, f64, 1)
FSP_DEFINE_UNARY_F16(softplus)
FSP_DEFINE_UNARY(grad, float, f32, FSP_HAS_PLAIN_F32)
FSP_DEFINE_UNARY(grad, double, f64, 1)
FSP_DEFINE_UNARY_F16(grad)
FSP_DEFINE_BINARY(backward, float, f32, FSP_HAS_PLAIN_F32)
FSP_DEFINE_BINARY(backward, double, f64, 1)
FSP_DEFINE_BINARY_F16(backward)
FSP_DEFINE_UNARY(inverse, float, f32, 0)
FSP_DEFINE_UNARY(inverse, double, f64, 0)
FSP_DEFINE_UNARY_F16(inverse)

/* Indexed [function][loop]: loop 0 float16 (no contiguous fast path: it always converts through
 * float32 blocks), 1 float32, 2 float64. */
static const fsp_isa FSP_K(fsp_isa_table) = {
    FSP_VARIANT_NAME,
    {
        {NULL, FSP_K(fsp_contig_softplus_f32), FSP_K(fsp_contig_softplus_f64)},
        {NULL, FSP_K(fsp_contig_grad_f32), FSP_K(fsp_contig_grad_f64)},
        {NULL, FSP_K(fsp_contig_backward_f32), FSP_K(fsp_contig_backward_f64)},
        {NULL, FSP_K(fsp_contig_inverse_f32), FSP_K(fsp_contig_inverse_f64)},
    },
    {
        {FSP_K(fsp_chunk_softplus_f16), FSP_K(fsp_chunk_softplus_f32),
         FSP_K(fsp_chunk_softplus_f64)},
        {FSP_K(fsp_chunk_grad_f16), FSP_K(fsp_chunk_grad_f32), FSP_K(fsp_chunk_grad_f64)},
        {FSP_K(fsp_chunk_backward_f16), FSP_K(fsp_chunk_backward_f32),
         FSP_K(fsp_chunk_backward_f64)},
        {FSP_K(fsp_chunk_inverse_f16), FSP_K(fsp_chunk_inverse_f32),
         FSP_K(fsp_chunk_inverse_f64)},
    },
};
