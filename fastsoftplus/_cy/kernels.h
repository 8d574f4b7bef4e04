/* Scalar softplus kernels (PLACEHOLDER: being replaced by the shared branch-free polynomial
 * algorithm).  Final interface:
 *
 *   This header has NO include guard on purpose: it is included once per ISA variant, inside
 *   `#pragma GCC target(...)`, with FSP_K(name) defined to give each variant its own names
 *   (e.g. #define FSP_K(n) n##_avx512).  Every function is static inline, takes scalars of one
 *   precision, and is branch-free so loops over it vectorize:
 *
 *     double FSP_K(fsp_softplus_f64)(double x, double beta, double threshold);
 *     float  FSP_K(fsp_softplus_f32)(float x, float beta, float threshold);
 *     grad_f64/f32(x, beta, threshold), backward_f64/f32(g, x, beta, threshold),
 *     inverse_f64/f32(y, beta, threshold)
 *
 *   threshold is +inf for "no cut-off".
 */
#include <math.h>

#ifndef FSP_K
#define FSP_K(n) n
#endif

static inline double FSP_K(fsp_softplus_f64)(double x, double beta, double thr) {
    double z = x * beta;
    double r = (fmax(z, 0.0) + log1p(exp(-fabs(z)))) / beta;
    return z > thr ? x : r;
}
static inline float FSP_K(fsp_softplus_f32)(float x, float beta, float thr) {
    float z = x * beta;
    double zd = (double)x * (double)beta;
    float r = (float)((fmax(zd, 0.0) + log1p(exp(-fabs(zd)))) / (double)beta);
    return z > thr ? x : r;
}
static inline double FSP_K(fsp_sigmoid_f64)(double z) {
    double t = exp(-fabs(z));
    return z >= 0 ? 1.0 / (1.0 + t) : t / (1.0 + t);
}
static inline double FSP_K(fsp_grad_f64)(double x, double beta, double thr) {
    double z = x * beta;
    return z > thr ? 1.0 : FSP_K(fsp_sigmoid_f64)(z);
}
static inline float FSP_K(fsp_grad_f32)(float x, float beta, float thr) {
    float z = x * beta;
    return z > thr ? 1.0f : (float)FSP_K(fsp_sigmoid_f64)((double)x * (double)beta);
}
static inline double FSP_K(fsp_backward_f64)(double g, double x, double beta, double thr) {
    return g * FSP_K(fsp_grad_f64)(x, beta, thr);
}
static inline float FSP_K(fsp_backward_f32)(float g, float x, float beta, float thr) {
    float z = x * beta;
    return z > thr ? g : (float)((double)g * FSP_K(fsp_sigmoid_f64)((double)x * (double)beta));
}
static inline double FSP_K(fsp_inverse_f64)(double y, double beta, double thr) {
    double z = y * beta;
    double r = z > 0 ? (z + log(-expm1(-z))) / beta : (z == z ? NAN : z);
    return z > thr ? y : r;
}
static inline float FSP_K(fsp_inverse_f32)(float y, float beta, float thr) {
    float z = y * beta;
    double zd = (double)y * (double)beta;
    double r = zd > 0 ? (zd + log(-expm1(-zd))) / (double)beta : (zd == zd ? NAN : zd);
    return z > thr ? y : (float)r;
}
