/* The "cython" backend's loops: ISA variants, run-time dispatch, OpenMP threads, ufunc loops.
 *
 * kernels.h (the lead's scalar kernels) and fsp_variant.h (the loops over them) are compiled
 * three times on x86-64 GCC >= 11, each time under its own `#pragma GCC target`:
 *     "arch=x86-64-v4"  -> names suffixed _avx512  (AVX-512 F/CD/BW/DQ/VL)
 *     "arch=x86-64-v3"  -> names suffixed _avx2    (AVX2, FMA, F16C, BMI2, ...)
 *     (command-line target, i.e. x86-64 baseline) -> names suffixed _baseline
 * and the best variant the CPU supports is chosen at run time (__builtin_cpu_supports), so the
 * module never executes an instruction the CPU lacks. Elsewhere (other compilers/architectures)
 * one portable variant, "baseline", is built.
 *
 * Everything outside the variants (the ufunc entry points, threading, dispatch) is baseline code.
 * Floating-point status: a kernel may raise flags (overflow in a discarded lane, invalid for
 * y <= 0 in the inverse, ...) that NumPy would report as warnings although every result is
 * defined by the API. Each ufunc loop call saves the caller's flags on entry and restores them on
 * exit, so flags set by NumPy itself (e.g. by a cast) still reach the user and ours never do.
 */
#include <math.h>
#include <fenv.h>
#include <string.h>
#include <limits.h>
#include <numpy/npy_common.h>
#include <numpy/ndarraytypes.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "_constants.h"
#include "fsp_loops.h"
#include "fsp_half.h"

typedef void (*fsp_range_fn)(char **args, const npy_intp *steps, npy_intp start, npy_intp end);

typedef struct {
    const char *name;
    fsp_range_fn contig[FSP_NFUNC][FSP_NLOOPS];   /* NULL where there is no contiguous path */
    fsp_range_fn chunk[FSP_NFUNC][FSP_NLOOPS];
} fsp_isa;

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 \
    && !defined(FSP_NO_ISA_VARIANTS)
#define FSP_X86_VARIANTS 1
#else
#define FSP_X86_VARIANTS 0
#endif

/* ---------------------------------------------------------------------------------------------
 * The variants. kernels.h has no include guard; it is included once per variant with FSP_K set.
 */
#if FSP_X86_VARIANTS

#pragma GCC push_options
#pragma GCC target("arch=x86-64-v4")
#define FSP_K(n) n##_avx512
#define FSP_VARIANT_NAME "avx512"
#include "kernels.h"
#include "fsp_variant.h"
#undef FSP_K
#undef FSP_VARIANT_NAME
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("arch=x86-64-v3")
#define FSP_K(n) n##_avx2
#define FSP_VARIANT_NAME "avx2"
#include "kernels.h"
#include "fsp_variant.h"
#undef FSP_K
#undef FSP_VARIANT_NAME
#pragma GCC pop_options

#endif /* FSP_X86_VARIANTS */

#define FSP_K(n) n##_baseline
#define FSP_VARIANT_NAME "baseline"
#include "kernels.h"
#include "fsp_variant.h"
#undef FSP_K
#undef FSP_VARIANT_NAME

/* Best first. */
static const fsp_isa *const fsp_variants[] = {
#if FSP_X86_VARIANTS
    &fsp_isa_table_avx512,
    &fsp_isa_table_avx2,
#endif
    &fsp_isa_table_baseline,
};
#define FSP_NVARIANTS ((int)(sizeof(fsp_variants) / sizeof(fsp_variants[0])))

int fsp_nvariants(void) { return FSP_NVARIANTS; }

const char *fsp_variant_name(int v)
{
    return (v >= 0 && v < FSP_NVARIANTS) ? fsp_variants[v]->name : NULL;
}

int fsp_variant_supported(int v)
{
    if (v < 0 || v >= FSP_NVARIANTS)
        return 0;
#if FSP_X86_VARIANTS
    __builtin_cpu_init();
    if (v == 0) {
#if __GNUC__ >= 12
        return __builtin_cpu_supports("x86-64-v4") > 0;
#else
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
            && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw")
            && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx2")
            && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
#endif
    }
    if (v == 1) {
#if __GNUC__ >= 12
        return __builtin_cpu_supports("x86-64-v3") > 0;
#else
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
            && __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
#endif
    }
#endif
    return 1;  /* baseline */
}

/* ---------------------------------------------------------------------------------------------
 * Process-wide settings (written rarely, read by every call: plain int loads; a call racing with
 * a change sees the old or the new value, both valid) and per-thread overrides.
 */
#if defined(__GNUC__)
#define FSP_TLS __thread
#elif defined(_MSC_VER)
#define FSP_TLS __declspec(thread)
#else
#define FSP_TLS _Thread_local
#endif

static volatile int fsp_global_variant = FSP_NVARIANTS - 1;   /* baseline until _ext sets it */
static volatile int fsp_num_threads = 1;
static volatile int fsp_serial_only = 0;
static FSP_TLS int fsp_tls_nthreads_v = 0;
static FSP_TLS int fsp_tls_variant_v = -1;
static FSP_TLS int fsp_tls_last_team = 0;   /* threads of this OS thread's last loop call */

int fsp_get_variant(void) { return fsp_global_variant; }

void fsp_set_variant(int v)
{
    if (v >= 0 && v < FSP_NVARIANTS)
        fsp_global_variant = v;
}

void fsp_tls_set(int nthreads, int variant)
{
    fsp_tls_nthreads_v = nthreads;
    fsp_tls_variant_v = (variant >= 0 && variant < FSP_NVARIANTS) ? variant : -1;
}
int fsp_tls_nthreads(void) { return fsp_tls_nthreads_v; }
int fsp_tls_variant(void) { return fsp_tls_variant_v; }
int fsp_last_team_size(void) { return fsp_tls_last_team; }

void fsp_set_num_threads(int n) { fsp_num_threads = n < 1 ? 1 : n; }
int fsp_get_num_threads(void) { return fsp_num_threads; }
void fsp_set_serial_only(int on) { fsp_serial_only = on != 0; }
int fsp_get_serial_only(void) { return fsp_serial_only; }

int fsp_have_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* ---------------------------------------------------------------------------------------------
 * The stall guard. An OpenMP team ends at a barrier where the caller waits for every worker, even
 * one that has not started because the OS runs another process on its core: the call then costs a
 * scheduler time slice, whatever its size. Measured (softplus, 2 threads, median of 30 calls,
 * another process spinning on one of the 2 cores): float32 n = 1e5 7.84 ms against 0.16 ms on one
 * thread, 1e6 6.34 vs 1.88 ms; on the CI machine 13.6-85x the serial time at 32768-262144.
 *
 * So the caller times its own share and its closing wait: a call that waited longer than it
 * computed (and more than FSP_STALL_MIN_S) is a stall, which cost about its wait over a serial
 * call. The threaded calls since the previous stall paid for it if they saved more: a call whose
 * caller computed `work` on a team of nt saved about (nt - 1) * work (its team shared the serial
 * time nt ways; measured 2 threads: 0.5-0.6x the serial time). A stall they paid for changes
 * nothing (an idle VM here has one every ~0.1-0.25 s, after hundreds of calls); one they did not
 * pay for (another process on a core: one every ~30 calls of 1e5 elements) sends the threaded
 * calls of the next holdoff to one thread, the holdoff doubling from FSP_STALL_HOLDOFF_MIN_S to
 * FSP_STALL_HOLDOFF_MAX_S while unpaid stalls follow each other.
 * The first threaded call after a holdoff wakes workers that went to sleep meanwhile, which here
 * takes 0.2-4 ms one time in four: its wait is forgiven. The values shared by Python threads are
 * hints: any interleaving of their reads and writes gives a valid policy.
 */
#ifdef _OPENMP
#define FSP_GUARD_NO_STALL_YET 1e300   /* the savings "since the last stall" at the start */
static double fsp_guard_until = 0.0;     /* omp_get_wtime() of the holdoff's end; 0: none pending */
static double fsp_guard_holdoff = FSP_STALL_HOLDOFF_MIN_S;   /* the next unpaid stall's holdoff */
static double fsp_guard_saved = FSP_GUARD_NO_STALL_YET;      /* seconds saved since the last stall */
static long long fsp_guard_stalls = 0, fsp_guard_serial = 0;

/* one threaded call of a team of nt: the caller computed `work` s, then waited `wait` s */
static void fsp_guard_note_at(double work, double wait, int nt, double now)
{
    double h, saved;
    if (!(wait > FSP_STALL_MIN_S && wait > work)) {
#pragma omp atomic update
        fsp_guard_saved += (nt - 1) * work;
        return;
    }
#pragma omp atomic read
    h = fsp_guard_holdoff;
#pragma omp atomic read
    saved = fsp_guard_saved;
    if (saved >= wait) {  /* paid for: keep the threads */
#pragma omp atomic write
        fsp_guard_holdoff = FSP_STALL_HOLDOFF_MIN_S;
    } else {
#pragma omp atomic write
        fsp_guard_until = now + h;
#pragma omp atomic write
        fsp_guard_holdoff = 2.0 * h < FSP_STALL_HOLDOFF_MAX_S ? 2.0 * h : FSP_STALL_HOLDOFF_MAX_S;
    }
#pragma omp atomic write
    fsp_guard_saved = 0.0;
#pragma omp atomic update
    fsp_guard_stalls++;
}

/* 1 if a threaded call starting now must run on one thread (counted); *probe = 1 for the first
 * call after a holdoff (its wait is not judged) */
static int fsp_guard_holds(double now, int *probe)
{
    double until;
    *probe = 0;
#pragma omp atomic read
    until = fsp_guard_until;
    if (until == 0.0)
        return 0;
    /* (a holdoff longer than the longest: the clock went back, as omp_get_wtime may where it is a
     * wall clock (LLVM's libomp; libgomp's is monotonic): over, not stuck) */
    if (now < until && until - now <= FSP_STALL_HOLDOFF_MAX_S) {
#pragma omp atomic update
        fsp_guard_serial++;
        return 1;
    }
#pragma omp atomic write
    fsp_guard_until = 0.0;
    *probe = 1;
    return 0;
}

void fsp_guard_note(double work_s, double wait_s, int nthreads)
{
    fsp_guard_note_at(work_s, wait_s, nthreads, omp_get_wtime());
}

void fsp_guard_stats(long long *stalls, long long *serial_calls, double *holdoff_s, double *left_s,
                     int *pending)
{
    double until, h;
    long long st, se;
#pragma omp atomic read
    st = fsp_guard_stalls;
#pragma omp atomic read
    se = fsp_guard_serial;
#pragma omp atomic read
    h = fsp_guard_holdoff;
#pragma omp atomic read
    until = fsp_guard_until;
    *stalls = st;
    *serial_calls = se;
    *holdoff_s = h;
    *left_s = until - omp_get_wtime();
    *pending = until != 0.0;
}

void fsp_guard_reset(void)
{
#pragma omp atomic write
    fsp_guard_until = 0.0;
#pragma omp atomic write
    fsp_guard_holdoff = FSP_STALL_HOLDOFF_MIN_S;
#pragma omp atomic write
    fsp_guard_saved = FSP_GUARD_NO_STALL_YET;
#pragma omp atomic write
    fsp_guard_stalls = 0;
#pragma omp atomic write
    fsp_guard_serial = 0;
}
#else
void fsp_guard_note(double work_s, double wait_s, int nthreads)
{
    (void)work_s;
    (void)wait_s;
    (void)nthreads;
}
void fsp_guard_stats(long long *stalls, long long *serial_calls, double *holdoff_s, double *left_s,
                     int *pending)
{
    *stalls = 0;
    *serial_calls = 0;
    *holdoff_s = 0.0;
    *left_s = 0.0;
    *pending = 0;
}
void fsp_guard_reset(void) {}
#endif

/* ---------------------------------------------------------------------------------------------
 * Threads: [0, n) in chunks that the team's threads claim one at a time (OpenMP's dynamic
 * schedule), FSP_CHUNKS_PER_THREAD per thread when n allows chunks of at least
 * FSP_PARALLEL_GRAIN elements. With one range per thread (a static split) a thread that the OS
 * runs late, because another process holds its core, holds up the whole call for its entire
 * range; with chunks the threads that do run take over its share. Measured (float64 softplus,
 * 2 threads, another process spinning on one of the 2 cores, median of 14 calls / serial time):
 * float64 1e7 0.78x the serial time, against 1.05x with the static split.
 */
#define FSP_SPLIT_ALIGN 64   /* chunk boundaries on multiples of 64 elements: whole cache lines */
#define FSP_CHUNKS_PER_THREAD 8

static void fsp_run(fsp_range_fn fn, char **args, const npy_intp *steps, npy_intp n,
                    int nthreads)
{
#ifdef _OPENMP
    if (nthreads > 1 && n >= FSP_PARALLEL_MIN_N && !fsp_serial_only) {
        npy_intp cap = n / FSP_PARALLEL_GRAIN;
        int nt = nthreads;
        if (nt > FSP_MAX_THREADS)
            nt = FSP_MAX_THREADS;
        if ((npy_intp)nt > cap)
            nt = (int)cap;
        double t0 = nt > 1 ? omp_get_wtime() : 0.0, t_done = t0;
        int probe = 0;
        if (nt > 1 && fsp_guard_holds(t0, &probe))
            nt = 1;
        if (nt > 1) {
            npy_intp nchunks = (npy_intp)nt * FSP_CHUNKS_PER_THREAD, chunk;
            if (nchunks > cap)
                nchunks = cap;
            chunk = (n + nchunks - 1) / nchunks;
            chunk = (chunk + FSP_SPLIT_ALIGN - 1) / FSP_SPLIT_ALIGN * FSP_SPLIT_ALIGN;
            nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel num_threads(nt)
            {
                const npy_intp t = omp_get_thread_num(), tn = omp_get_num_threads();
                npy_intp c;
#pragma omp for schedule(dynamic, 1) nowait
                for (c = 0; c < nchunks; c++) {
                    npy_intp s = c * chunk, e = s + chunk < n ? s + chunk : n;
                    fn(args, steps, s, e);
                }
                if (t != 0) {  /* a worker's flags are never read, but leave its state clean */
                    feclearexcept(FE_ALL_EXCEPT);
                } else {
                    fsp_tls_last_team = (int)tn;
                    t_done = omp_get_wtime();  /* the caller ran out of chunks */
                }
            }
            {
                double t_end = omp_get_wtime();
                if (!probe)
                    fsp_guard_note_at(t_done - t0, t_end - t_done, nt, t_end);
            }
            return;
        }
    }
#else
    (void)nthreads;
#endif
    fsp_tls_last_team = 1;
    fn(args, steps, 0, n);
}

/* ---------------------------------------------------------------------------------------------
 * The ufunc inner loops. `nin` data inputs + beta + threshold, one output; loop l: 0 float16,
 * 1 float32, 2 float64.
 *   - beta/threshold broadcast (step 0) and x/out contiguous: the SIMD loop, threaded for large n;
 *   - any other layout: the chunked strided path (threaded too, unless out has step 0);
 *   - per-element beta/threshold: the chunked path gathers them as well (fsp_loopv).
 */
static void fsp_ufunc_loop(int func, int loop, int nin, char **args, const npy_intp *dims,
                           const npy_intp *steps)
{
    static const npy_intp esize[FSP_NLOOPS] = {2, 4, 8};
    const npy_intp n = dims[0], es = esize[loop];
    const int ndata = nin - 2;
    const int tv = fsp_tls_variant_v, tn = fsp_tls_nthreads_v;
    const fsp_isa *isa = fsp_variants[tv >= 0 ? tv : fsp_global_variant];
    const int nthreads = tn > 0 ? tn : fsp_num_threads;
    fexcept_t saved;
    int contig;

    if (n <= 0)
        return;
    contig = isa->contig[func][loop] != NULL && steps[ndata] == 0 && steps[ndata + 1] == 0;
    for (int i = 0; contig && i < ndata; i++)
        contig = steps[i] == es && (npy_uintp)args[i] % (npy_uintp)es == 0;
    contig = contig && steps[nin] == es && (npy_uintp)args[nin] % (npy_uintp)es == 0;

    fegetexceptflag(&saved, FE_ALL_EXCEPT);
    if (contig)
        fsp_run(isa->contig[func][loop], args, steps, n, nthreads);
    else  /* an output of step 0 (n writes to one element) must stay serial and ordered */
        fsp_run(isa->chunk[func][loop], args, steps, n, steps[nin] == 0 ? 1 : nthreads);
    fesetexceptflag(&saved, FE_ALL_EXCEPT);
}

/* The "eee->e" / "eeee->e" loops (chosen for dtype=np.float16 or all-float16 operands): beta and
 * threshold arrive as float16 and are converted to float32 (exactly), then the "eff->e" path runs.
 * Per-element float16 beta/threshold go block by block (serial: a rare case). */
static void fsp_ufunc_loop_all_half(int func, int nin, char **args, const npy_intp *dims,
                                    const npy_intp *steps)
{
    const int ndata = nin - 2;
    const npy_intp n = dims[0];
    char *a[5];
    npy_intp s[5];
    FSP_ALIGNED float pb[FSP_BLOCK];
    FSP_ALIGNED float pt[FSP_BLOCK];
    for (int i = 0; i <= nin; i++) {
        a[i] = args[i];
        s[i] = steps[i];
    }
    a[ndata] = (char *)pb;
    a[ndata + 1] = (char *)pt;
    if (steps[ndata] == 0 && steps[ndata + 1] == 0) {
        FSP_GATHER_F16(pb, args[ndata], 0, 1);
        FSP_GATHER_F16(pt, args[ndata + 1], 0, 1);
        s[ndata] = s[ndata + 1] = 0;
        fsp_ufunc_loop(func, 0, nin, a, dims, s);
        return;
    }
    s[ndata] = s[ndata + 1] = (npy_intp)sizeof(float);
    for (npy_intp i0 = 0; i0 < n; i0 += FSP_BLOCK) {
        npy_intp m = FSP_MIN_BLOCK(n - i0);
        FSP_GATHER_F16(pb, args[ndata] + i0 * steps[ndata], steps[ndata], m);
        FSP_GATHER_F16(pt, args[ndata + 1] + i0 * steps[ndata + 1], steps[ndata + 1], m);
        for (int i = 0; i < ndata; i++)
            a[i] = args[i] + i0 * steps[i];
        a[nin] = args[nin] + i0 * steps[nin];
        fsp_ufunc_loop(func, 0, nin, a, &m, s);
    }
}

#define FSP_UFUNC_LOOP(F, fi, L, li, nin)                                                   \
static void fsp_ufunc_##F##_##L(char **args, npy_intp const *dims, npy_intp const *steps,  \
                                void *data)                                                 \
{                                                                                           \
    (void)data;                                                                             \
    fsp_ufunc_loop(fi, li, nin, args, dims, steps);                                         \
}
#define FSP_UFUNC_LOOP_ALL_HALF(F, fi, nin)                                                 \
static void fsp_ufunc_##F##_all_half(char **args, npy_intp const *dims,                     \
                                     npy_intp const *steps, void *data)                     \
{                                                                                           \
    (void)data;                                                                             \
    fsp_ufunc_loop_all_half(fi, nin, args, dims, steps);                                    \
}

FSP_UFUNC_LOOP(softplus, 0, f16, 0, 3)
FSP_UFUNC_LOOP(softplus, 0, f32, 1, 3)
FSP_UFUNC_LOOP(softplus, 0, f64, 2, 3)
FSP_UFUNC_LOOP_ALL_HALF(softplus, 0, 3)
FSP_UFUNC_LOOP(grad, 1, f16, 0, 3)
FSP_UFUNC_LOOP(grad, 1, f32, 1, 3)
FSP_UFUNC_LOOP(grad, 1, f64, 2, 3)
FSP_UFUNC_LOOP_ALL_HALF(grad, 1, 3)
FSP_UFUNC_LOOP(backward, 2, f16, 0, 4)
FSP_UFUNC_LOOP(backward, 2, f32, 1, 4)
FSP_UFUNC_LOOP(backward, 2, f64, 2, 4)
FSP_UFUNC_LOOP_ALL_HALF(backward, 2, 4)
FSP_UFUNC_LOOP(inverse, 3, f16, 0, 3)
FSP_UFUNC_LOOP(inverse, 3, f32, 1, 3)
FSP_UFUNC_LOOP(inverse, 3, f64, 2, 3)
FSP_UFUNC_LOOP_ALL_HALF(inverse, 3, 3)

/* Loop order matters for NumPy's type resolution (first loop the inputs cast to safely):
 * "eff->e" before "eee->e", so float16 x with Python-float beta = 0.1 keeps beta in float32. */
static fsp_ufunc_loop_fn fsp_funcs_table[FSP_NFUNC][FSP_NUFUNC_LOOPS] = {
    {fsp_ufunc_softplus_f16, fsp_ufunc_softplus_all_half, fsp_ufunc_softplus_f32,
     fsp_ufunc_softplus_f64},
    {fsp_ufunc_grad_f16, fsp_ufunc_grad_all_half, fsp_ufunc_grad_f32, fsp_ufunc_grad_f64},
    {fsp_ufunc_backward_f16, fsp_ufunc_backward_all_half, fsp_ufunc_backward_f32,
     fsp_ufunc_backward_f64},
    {fsp_ufunc_inverse_f16, fsp_ufunc_inverse_all_half, fsp_ufunc_inverse_f32,
     fsp_ufunc_inverse_f64},
};
static void *fsp_data_table[FSP_NFUNC][FSP_NUFUNC_LOOPS];   /* all NULL */

/* float16 loops take float32 beta/threshold ("eff->e"): the result equals the API's "compute in
 * float32, round to float16". */
#define E NPY_HALF
#define F NPY_FLOAT
#define D NPY_DOUBLE
static char fsp_types_table[FSP_NFUNC][FSP_NUFUNC_LOOPS * 5] = {
    {E, F, F, E, /**/ E, E, E, E, /**/ F, F, F, F, /**/ D, D, D, D},
    {E, F, F, E, /**/ E, E, E, E, /**/ F, F, F, F, /**/ D, D, D, D},
    {E, E, F, F, E, /**/ E, E, E, E, E, /**/ F, F, F, F, F, /**/ D, D, D, D, D},
    {E, F, F, E, /**/ E, E, E, E, /**/ F, F, F, F, /**/ D, D, D, D},
};
#undef E
#undef F
#undef D
static const int fsp_nin_table[FSP_NFUNC] = {3, 3, 4, 3};

fsp_ufunc_loop_fn *fsp_ufunc_funcs(int func) { return fsp_funcs_table[func]; }
void **fsp_ufunc_data(int func) { return fsp_data_table[func]; }
char *fsp_ufunc_types(int func) { return fsp_types_table[func]; }
int fsp_ufunc_nin(int func) { return fsp_nin_table[func]; }
