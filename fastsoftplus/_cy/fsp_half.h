/* float16 <-> float32 conversion for the float16 ufunc loops (computed in float32).
 *
 * Where the compiler has _Float16 (GCC >= 12 on x86-64, GCC/Clang on aarch64) the conversions are
 * plain casts: inside an AVX2/AVX-512 variant they compile to F16C instructions (vcvtph2ps /
 * vcvtps2ph), in the baseline variant to libgcc helpers. Elsewhere (or with -DFSP_NO_FLOAT16) the
 * bit-level functions below are used: exact half -> float, and float -> half rounded to nearest,
 * ties to even, like NumPy's astype(np.float16).
 *
 * FSP_H2F(h) / FSP_F2H(f) take and give an fsp_half, a 2-byte value (read and written with memcpy).
 */
#ifndef FSP_HALF_H
#define FSP_HALF_H

#include <string.h>
#include <numpy/npy_common.h>

#if defined(__FLT16_MANT_DIG__) && !defined(FSP_NO_FLOAT16)

typedef _Float16 fsp_half;
#define FSP_H2F(h) ((float)(h))
#define FSP_F2H(f) ((fsp_half)(f))

#else

typedef npy_uint16 fsp_half;

static inline float fsp_h2f_bits(npy_uint16 h)
{
    npy_uint32 sign = (npy_uint32)(h & 0x8000u) << 16;
    npy_uint32 e = (h >> 10) & 0x1fu, m = h & 0x3ffu, bits;
    float f;
    if (e == 0x1fu) {                       /* inf, NaN (payload kept) */
        bits = sign | 0x7f800000u | (m << 13);
    } else if (e != 0) {                    /* normal: rebias 15 -> 127 */
        bits = sign | ((e + 112u) << 23) | (m << 13);
    } else {                                /* zero or subnormal: m * 2**-24, exact in float */
        f = (float)m * 0x1p-24f;
        memcpy(&bits, &f, 4);
        bits |= sign;
    }
    memcpy(&f, &bits, 4);
    return f;
}

static inline npy_uint16 fsp_f2h_bits(float f)
{
    npy_uint32 x, ax;
    npy_uint16 sign;
    memcpy(&x, &f, 4);
    sign = (npy_uint16)((x >> 16) & 0x8000u);
    ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u)                   /* NaN: quiet, keep the top payload bits */
        return (npy_uint16)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x477ff000u)                  /* >= 65520 rounds to inf (and inf itself) */
        return (npy_uint16)(sign | 0x7c00u);
    if (ax < 0x38800000u) {                 /* below 2**-14: subnormal half or zero */
        float a, r;
        memcpy(&a, &ax, 4);
        /* a * 2**24 < 1024 is exact; adding and subtracting 2**23 rounds it to an integer,
         * to nearest even (no -ffast-math here, so the compiler keeps both operations). */
        r = a * 0x1p24f;
        r = (r + 0x1p23f) - 0x1p23f;
        return (npy_uint16)(sign | (npy_uint16)r);  /* r == 1024 is the smallest normal: right */
    }
    /* normal: rebias 127 -> 15 and round the 13 dropped bits to nearest even; a carry out of
     * the mantissa correctly bumps the exponent. */
    ax -= 0x38000000u;
    ax += 0xfffu + ((ax >> 13) & 1u);
    return (npy_uint16)(sign | (ax >> 13));
}

#define FSP_H2F(h) fsp_h2f_bits(h)
#define FSP_F2H(f) fsp_f2h_bits(f)

#endif
#endif /* FSP_HALF_H */
