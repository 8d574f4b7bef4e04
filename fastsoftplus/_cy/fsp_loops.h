/* Interface of fsp_loops.c to the Cython module _ext.pyx: ufunc loops, ISA variants, threads.
 *
 * Function indices: 0 softplus, 1 softplus_grad, 2 softplus_backward, 3 softplus_inverse.
 * Loop order in each ufunc: "eff->e", "eee->e", "fff->f", "ddd->d" (backward: one more input).
 */
#ifndef FSP_LOOPS_H
#define FSP_LOOPS_H

#include <numpy/npy_common.h>
#include "_constants.h"

/* The tuning constants below are defaults: a constant of the same name without the FSP_ prefix in
 * fastsoftplus/_constants.py (e.g. PARALLEL_MIN_N = 65536) reaches _constants.h as FSP_<NAME>
 * and takes precedence, so the one source of truth can live there. */

/* Elements per block of the strided path: each block is gathered into a stack buffer, computed by
 * the contiguous SIMD loop, and scattered. 256 keeps the buffers (up to 4 x 2 KiB for float64)
 * in L1 and small enough for any thread stack; larger blocks gain nothing measurable. */
#ifndef FSP_BLOCK
#define FSP_BLOCK 256
#endif

/* No OpenMP below FSP_PARALLEL_MIN_N elements per ufunc inner-loop call: defined in
 * _constants.py (PARALLEL_MIN_N), which the dispatcher shares. */
#ifndef FSP_PARALLEL_MIN_N
#error "FSP_PARALLEL_MIN_N comes from the generated _constants.h"
#endif

/* Each thread gets at least this many elements (fewer threads than requested otherwise). */
#ifndef FSP_PARALLEL_GRAIN
#define FSP_PARALLEL_GRAIN 16384
#endif

/* Upper bound on the threads of one parallel region, whatever set_num_threads says: libgomp
 * aborts the process when it cannot create a thread, so absurd counts are cut here. */
#ifndef FSP_MAX_THREADS
#define FSP_MAX_THREADS 256
#endif

/* The stall guard of the OpenMP calls (fsp_loops.c, before fsp_run): a threaded call whose caller
 * waited at the team's closing barrier longer than it computed, and longer than FSP_STALL_MIN_S
 * seconds, is a stall (a worker the OS did not run in time); unless the threaded calls since the
 * previous stall saved more time than it cost, the threaded calls of the next holdoff,
 * FSP_STALL_HOLDOFF_MIN_S doubling up to FSP_STALL_HOLDOFF_MAX_S while unpaid stalls follow each
 * other, run on one thread. Stalls measured here last 4-8 ms (a scheduler time slice); an idle
 * team's closing wait is at most one chunk (<= 1/16 of the call); 2 s between probes keeps the
 * cost of a persistent stall under 0.5%. */
#ifndef FSP_STALL_MIN_S
#define FSP_STALL_MIN_S 250e-6
#endif
#ifndef FSP_STALL_HOLDOFF_MIN_S
#define FSP_STALL_HOLDOFF_MIN_S 0.05
#endif
#ifndef FSP_STALL_HOLDOFF_MAX_S
#define FSP_STALL_HOLDOFF_MAX_S 2.0
#endif

#define FSP_NFUNC 4
#define FSP_NLOOPS 3          /* computing types: float16 (via float32), float32, float64 */
#define FSP_NUFUNC_LOOPS 4    /* registered loops: eff->e, eee->e, fff->f, ddd->d (4 inputs
                                 for backward) */

typedef void (*fsp_ufunc_loop_fn)(char **args, npy_intp const *dims, npy_intp const *steps,
                                  void *data);

/* Arrays for PyUFunc_FromFuncAndData (static storage). */
fsp_ufunc_loop_fn *fsp_ufunc_funcs(int func);
void **fsp_ufunc_data(int func);
char *fsp_ufunc_types(int func);
int fsp_ufunc_nin(int func);

/* ISA variants compiled in, best first (x86-64 GCC: "avx512", "avx2", "baseline"; else only
 * "baseline"). */
int fsp_nvariants(void);
const char *fsp_variant_name(int v);
int fsp_variant_supported(int v);   /* 1 if this CPU (and OS) can run variant v */
int fsp_get_variant(void);          /* process-wide variant used by the ufuncs */
void fsp_set_variant(int v);

/* Per-OS-thread overrides for one call (fastsoftplus._cython.run): nthreads <= 0 and variant < 0
 * mean "use the process-wide value". */
void fsp_tls_set(int nthreads, int variant);
int fsp_tls_nthreads(void);
int fsp_tls_variant(void);
int fsp_last_team_size(void);       /* threads used by this OS thread's last inner-loop call */

void fsp_set_num_threads(int n);
int fsp_get_num_threads(void);
void fsp_set_serial_only(int on);   /* set in a forked child: libgomp must not be entered */
int fsp_get_serial_only(void);
int fsp_have_openmp(void);

/* The stall guard (see FSP_STALL_MIN_S): fsp_guard_note records one threaded call (the caller's
 * compute time and closing wait, seconds, its team size) as fsp_run does; fsp_guard_stats reads
 * the counters (stalls seen, calls run on one thread because of them), the next unpaid stall's
 * holdoff, the seconds left of the current one (<= 0: none) and whether one is pending (set and
 * not yet probed). Without OpenMP they do nothing / report zeros. */
void fsp_guard_note(double work_s, double wait_s, int nthreads);
void fsp_guard_stats(long long *stalls, long long *serial_calls, double *holdoff_s, double *left_s,
                     int *pending);
void fsp_guard_reset(void);

#endif /* FSP_LOOPS_H */
