# cython: language_level=3, boundscheck=False, wraparound=False
"""Cython bridge to the C kernels in csrc/.

Every entry point checks its buffers (dtype, C-contiguity, exact shapes, writability of outputs),
so that no call from Python can make the C code read or write out of bounds, then releases the
GIL around the C call (not around a one-step call of a few microseconds: see _gil_off). A C status code becomes a Python exception here. Argument normalisation
(dtype promotion, copies, friendly messages) happens above, in fastrnn._validate.
"""

import numpy as np

cimport numpy as cnp
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memset

cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX
    ctypedef struct PyThreadState:
        pass
    PyThreadState *PyEval_SaveThread() noexcept
    void PyEval_RestoreThread(PyThreadState *) noexcept


cnp.import_array()

from fastrnn._cells import CELLS, NONLINEARITIES

_ARCH_IDS = {"generic": FR_ARCH_GENERIC, "avx2": FR_ARCH_AVX2, "avx512": FR_ARCH_AVX512}

ctypedef fused floating:
    float
    double


cdef int _raise(int status, str what) except -1:
    if status == FR_OK:
        return 0
    if status == FR_ERR_NOMEM:
        raise MemoryError(f"{what}: out of memory for kernel scratch")
    if status == FR_ERR_ARCH:
        raise ValueError(f"{what}: SIMD path not supported on this CPU")
    raise ValueError(f"{what}: invalid arguments (status {status})")


# A one-step call under FR_STEP1_TEAM_FLOPS runs on the calling thread for a few microseconds,
# and keeps the GIL meanwhile. Released for so short a call, the GIL goes to another Python
# thread, which then holds it for its own Python while this call's thread waits to return:
# concurrent callers of LSTM(64) one-step calls took 51 us a call against 8.7 serially
# (bench/RESULTS.md, session 10).
cdef inline PyThreadState *_gil_off(bint keep) noexcept:
    """Release the GIL unless ``keep`` (NULL: kept); the statements until _gil_on may touch no
    Python object."""
    return NULL if keep else PyEval_SaveThread()


cdef inline void _gil_on(PyThreadState *ts) noexcept:
    """Take the GIL back after _gil_off (nothing where it was kept)."""
    if ts != NULL:
        PyEval_RestoreThread(ts)


cdef void *_ptr(object a):
    if a is None:
        return NULL
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef _chk(object a, str name, tuple shape, object dtype, bint out, bint optional):
    """Check that `a` is a C-contiguous ndarray of `dtype` and exactly `shape`."""
    if a is None:
        if optional:
            return
        raise ValueError(f"{name} is required")
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {a.dtype}")
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if out and not a.flags.writeable:
        raise ValueError(f"{name} must be writeable")


# ---- fork safety (csrc/fork.c) -----------------------------------------------------------------

_raise(fr_fork_guard_install(), "fork handlers")


def fork_pool_released():
    """Whether the last fork released the forking thread's OpenMP worker pool (or found none),
    so that a forked child may start threads; read in a child, it tells about its own fork."""
    return bool(fr_fork_pool_released())


def team_load():
    """What the recurrence's thread teams have measured of the machine (csrc/team_load.h): the
    cost of waking an idle team (ns), the serial speed (ns per Mflop), the passes in flight now,
    whether the machine counts as contended now (teams halved), the team threads' waits
    for a processor counted so far (ns) and the threads runnable now besides the caller and its
    own workers (-1: the system does not tell), how many teams were taken smaller for
    them so far, and how many workers moved off the caller's processor so far."""
    cdef int64_t wake = 0, speed = 0, waited = 0
    cdef int inflight = 0, contended = 0
    fr_load_stats(&wake, &speed, &inflight, &contended, &waited)
    return {"wake_ns": wake, "ns_per_mflop": speed, "inflight": inflight,
            "contended": bool(contended), "waited_ns": waited,
            "others_runnable": fr_load_others_runnable(), "cuts": fr_load_cuts(),
            "moves": fr_load_moves()}


def force_moves(bint on):
    """The testing knob csrc/team_load.h fr_load_force_moves: every team worker moves off its
    processor for the pass."""
    fr_load_force_moves(on)


def probe_workers(int nt):
    """Run an OpenMP region of nt threads, then count the calling thread's workers that are
    runnable (csrc/team_load.h fr_load_probe_workers; -1: states cannot be read), for the tests."""
    return fr_load_probe_workers(nt)


def probe_move():
    """Move the calling thread off its processor and put its affinity back (csrc/team_load.h
    fr_load_probe_move: 1 moved, 0 not, -1 could not), for the tests."""
    return fr_load_probe_move()


def groups_rule(int nt, int64_t B, int64_t mr, int64_t njb, int64_t wbytes, int cut):
    """The batch groups a pass's team of nt threads takes (csrc/recurrence.h
    fr_rec_batch_groups, as the drivers call it), for the tests."""
    return fr_rec_batch_groups(nt, B, mr, njb, wbytes, cut)


def set_group_tuning(bint on):
    """Turn the measured choice between batch groups and a hidden split on (the default) or off,
    forgetting every choice made (csrc/team_tune.h fr_tune_set), for the tests and benchmarks."""
    fr_tune_set(on)


def tune_pick(uint64_t key, int rule, int alternative, bint explore=True):
    """One pass's pick from the measured choice (csrc/team_tune.h fr_tune_groups), for the tests:
    ``(groups, ticket)``; the ticket goes back with :func:`tune_report`."""
    cdef fr_tune_ticket t
    cdef int g = fr_tune_groups(&t, key, rule, alternative, explore)
    return g, (t.slot, t.alt, t.key)


def tune_report(tuple ticket, double ns_per_step, bint undisturbed=True):
    """A pass's time per step for its ticket (csrc/team_tune.h fr_tune_report), for the tests."""
    cdef fr_tune_ticket t
    t.slot, t.alt, t.key = ticket
    fr_tune_report(&t, ns_per_step, undisturbed)


def tune_decision(uint64_t key):
    """The choice made for key: -1 none yet, 0 the rule's plan, 1 the other (fr_tune_decision)."""
    return fr_tune_decision(key)


def l2_bytes():
    """A core's L2 cache in bytes as the kernels' rules read it (csrc/fastrnn.h fr_l2_bytes)."""
    return fr_l2_bytes()


def free_rule(int want, int ncpu, int running, int own):
    """The rule a team's size takes from the threads runnable beside it (csrc/team_load.h
    fr_load_free_rule), for the tests: processors free for want threads, within [1, want]."""
    return fr_load_free_rule(want, ncpu, running, own)


def shared_rule(int inflight, int64_t t_enter, int64_t shared):
    """Whether a pass has company (csrc/team_load.h fr_load_shared_rule), for the tests."""
    return bool(fr_load_shared_rule(inflight, t_enter, shared))


def warm_rule(int64_t t_enter, int64_t team, int64_t region):
    """Whether a pass entering at t_enter finds the team warm (csrc/team_load.h
    fr_load_warm_rule), for the tests."""
    return bool(fr_load_warm_rule(t_enter, team, region))


def share_rule(int before, int nt, double flops, double serial_ns, bint idle, double wake_ns,
               bint lost):
    """The team a forward that the load cut from `before` to nt threads takes for shared rows
    (csrc/team_load.h fr_load_share_rule; 0: none), for the tests."""
    return fr_load_share_rule(before, nt, flops, serial_ns, idle, wake_ns, lost)


def share_lost_rule(int64_t mine, int64_t n, int64_t busy_ns, int64_t wait_ns):
    """Whether a pass on shared rows lost against one thread, as its thread that ran `mine` of n
    segments in busy_ns and waited wait_ns sees it (csrc/team_load.h fr_load_share_lost_rule),
    for the tests."""
    return bool(fr_load_share_lost_rule(mine, n, busy_ns, wait_ns))


def shared_chunks(int nt, int64_t B, int64_t mr, int64_t wbytes):
    """Chunks of shared rows for nt threads over B rows (csrc/recurrence.h
    fr_rec_shared_chunks; 0: none), for the tests."""
    return fr_rec_shared_chunks(nt, B, mr, wbytes)


def region_end_ns():
    """When the last parallel region of more than one thread outside a pass ended (a GEMM, an
    optimizer or row update; time.monotonic_ns's clock; 0: none yet), for the tests."""
    return fr_load_region_end_ns()


def wait_bucket(int64_t full, int64_t start, int64_t now, int64_t wait_ns):
    """The contention test's rule (csrc/team_load.h fr_load_wait_bucket), for the tests:
    returns (the bucket's new empty time, whether the machine counts as contended)."""
    cdef int64_t f = full
    cdef int mark = fr_load_wait_bucket(&f, start, now, wait_ns)
    return f, bool(mark)


# ---- build and SIMD path -----------------------------------------------------------------------

def _check_env_arch():
    if fr_arch_env_error():
        import os
        name = repr(os.environ.get("FASTRNN_ARCH"))
        msg = ("FASTRNN_ARCH=%s is not a SIMD path this CPU and build can run: "
               "use one of %s or unset FASTRNN_ARCH" % (name, available_arches()))
        raise ImportError(msg)

def build_info():
    """Return a dict describing the build: SIMD path in use and available, OpenMP, compiler."""
    import sysconfig
    return {
        "simd": fr_arch_name(fr_get_arch()).decode(),
        "simd_available": available_arches(),
        "simd_env_error": bool(fr_arch_env_error()),
        "openmp": bool(fr_has_openmp()),
        "max_threads": fr_omp_max_threads(),
        "compiler": sysconfig.get_config_var("CC") or "unknown",
        "precision": lowp_info(),
    }


def available_arches():
    """Return the SIMD paths this CPU and build can run, best last."""
    return [n for n, a in _ARCH_IDS.items()
            if fr_cpu_supports(a) and fr_kernel_for_arch_s(a) != NULL]


def few_rows(x, int64_t min_rows):
    """Whether x is a 3-D (T, B, I) ndarray of one step or of fewer than min_rows rows T*B
    (C-API reads: the float32 prepared path's test of a call that packs nothing)."""
    if type(x) is not np.ndarray or cnp.PyArray_NDIM(<cnp.ndarray>x) != 3:
        return False
    cdef cnp.npy_intp *d = cnp.PyArray_DIMS(<cnp.ndarray>x)
    return d[0] == 1 or d[0] * d[1] < min_rows


def arch_code():
    """The code of the SIMD path in use (changes with set_arch; a cheap check for caches)."""
    return fr_get_arch()


def get_arch():
    """Return the name of the SIMD path in use."""
    return fr_arch_name(fr_get_arch()).decode()


def set_arch(str name):
    """Select the SIMD path ('generic', 'avx2', 'avx512') for all later calls."""
    if name not in _ARCH_IDS:
        raise ValueError(f"arch must be one of {sorted(_ARCH_IDS)}, got {name!r}")
    if fr_set_arch(_ARCH_IDS[name]) != FR_OK:
        raise ValueError(f"SIMD path {name!r} is not supported on this CPU "
                         f"(available: {', '.join(available_arches())})")


def set_batch_groups(int n):
    """Batch groups of the sequence kernels' thread team for later calls: 0 lets each call
    choose (the default); n > 0 forces n groups of rows wherever the team allows (testing and
    tuning)."""
    if fr_set_batch_groups(n) != FR_OK:
        raise ValueError(f"n must be >= 0, got {n}")


def set_shared_rows(int k):
    """Shared rows of the sequence forward for later calls: 0 takes them only where the
    machine's load would cut a team (the default); k > 0 runs every forward that can with k
    chunks of rows that its threads take in turn (testing)."""
    if fr_set_shared_rows(k) != FR_OK:
        raise ValueError(f"k must be >= 0, got {k}")


def shared_passes():
    """Forward passes run with shared rows so far."""
    return fr_shared_passes()


def set_stream_cache_bytes(int64_t n):
    """Training-cache bytes from which later forwards store the cache non-temporally: 0
    restores the default (32 MiB), n > 0 sets it (testing and tuning)."""
    if fr_set_stream_cache_bytes(n) != FR_OK:
        raise ValueError(f"n must be >= 0, got {n}")


def set_team_threads(int n):
    """Team size of the sequence kernels for later calls: 0 lets the load rules choose (the
    default); n > 0 takes min(n, threads, hidden blocks) whatever the load (testing)."""
    if fr_set_team_threads(n) != FR_OK:
        raise ValueError(f"n must be >= 0, got {n}")


def set_solo_step(int64_t s):
    """For later calls, s > 0 makes every team that can go on alone on its first thread do so
    from step s on (as when another call enters meanwhile); 0 (the default): only then
    (testing)."""
    if fr_set_solo_step(s) != FR_OK:
        raise ValueError(f"s must be >= 0, got {s}")


def solo_passes():
    """Passes whose team went on alone on its first thread so far."""
    return fr_solo_passes()


def step1_passes():
    """Length-1 forwards run on the weights as given (unpacked) so far."""
    return fr_step1_passes()


def prepack_read(str cell, int64_t H, int nthreads, int esize=4):
    """Whether forwards of ``cell`` with H units on nthreads threads may read weights packed
    once (fr_prepack_read): one thread, or weights small enough for batch groups."""
    return bool(fr_prepack_read(CELLS[cell].gates, H, esize, nthreads))


def prepacked_reads():
    """Threads of forwards so far that read weights packed once (prepack) instead of packing."""
    return fr_prepacked_reads()


def step1_team_passes():
    """Length-1 forwards on the weights as given that ran on a team of more than one thread."""
    return fr_step1_team_passes()


def lp_step1_passes():
    """Reduced-precision forwards of one step so far."""
    return fr_lp_step1_passes()


def lp_step1_team_passes():
    """Reduced-precision forwards of one step that ran on a team of more than one thread."""
    return fr_lp_step1_team_passes()


def measured_passes():
    """Passes that measured their team's start and waits for a processor so far."""
    return fr_measured_passes()


def scratch_kept():
    """Bytes of kernel working memory kept for later calls (0 when none)."""
    return fr_scratch_kept()


def scratch_release():
    """Free the kernel working memory kept for later calls."""
    fr_scratch_release()


cdef class _Block:
    """A block of kernel working memory lent to numpy: it exports a writable byte buffer and
    goes back to the kept blocks (csrc/scratch.c) when the last array viewing it dies."""

    cdef char *data
    cdef Py_ssize_t nbytes
    cdef Py_ssize_t shape[1]
    cdef Py_ssize_t strides[1]

    def __cinit__(self, Py_ssize_t nbytes):
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        self.data = <char *>fr_scratch_alloc(<size_t>nbytes if nbytes > 0 else 1)
        if self.data == NULL:
            raise MemoryError(f"out of memory for an array of {nbytes} bytes")
        self.nbytes = nbytes
        self.shape[0] = nbytes
        self.strides[0] = 1

    def __dealloc__(self):
        fr_scratch_free(self.data)  # NULL is ignored

    def __getbuffer__(self, Py_buffer *buf, int flags):
        buf.buf = self.data
        buf.obj = self
        buf.len = self.nbytes
        buf.readonly = 0
        buf.itemsize = 1
        buf.format = "B"
        buf.ndim = 1
        buf.shape = self.shape
        buf.strides = self.strides
        buf.suboffsets = NULL
        buf.internal = NULL

    def __releasebuffer__(self, Py_buffer *buf):
        pass


def kept_empty(tuple shape, dtype):
    """An uninitialised C-contiguous array on a kept block of kernel working memory.

    Same as ``np.empty(shape, dtype)``, except that its memory comes from (and, once the array
    and every view of it are gone, goes back to) the blocks the kernels keep between calls, so
    that a loop of calls reuses warm pages instead of asking the OS for fresh ones. 64-byte
    aligned.
    """
    dt = np.dtype(dtype)
    n = 1
    for d in shape:
        if d < 0:
            raise ValueError(f"negative dimensions are not allowed, got shape {shape}")
        n *= int(d)  # Python ints: no overflow before the check below
    if n * dt.itemsize > PY_SSIZE_T_MAX:
        raise ValueError(f"array of shape {shape} and dtype {dt} is too big")
    return np.frombuffer(_Block(n * dt.itemsize), dtype=dt, count=n).reshape(shape)


def kernel_info():
    """Return the microkernel shape (mr, nr) per dtype for the path in use."""
    cdef const fr_kernel_s *ks = fr_kernel_get_s()
    cdef const fr_kernel_d *kd = fr_kernel_get_d()
    return {"arch": get_arch(), "float32": {"mr": ks.mr, "nr": ks.nr},
            "float64": {"mr": kd.mr, "nr": kd.nr}}


# ---- GEMM and activations (exposed for tests and benchmarks) ------------------------------------

cdef int64_t _row_stride(object a, str name, int typenum, bint out) except -1:
    """Row stride (elements) of a 2-D array of type `typenum` with contiguous rows (C-contiguous
    or a column slice of one), so callers can pass any lda/ldb/ldc. C-API checks only: this sits
    in front of calls that take a microsecond."""
    if not cnp.PyArray_Check(a) or cnp.PyArray_NDIM(<cnp.ndarray>a) != 2:
        raise ValueError(f"{name} must be a 2-D numpy array")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_TYPE(arr) != typenum:
        raise TypeError(f"{name} must have dtype {cnp.PyArray_DescrFromType(typenum)}, "
                        f"got {a.dtype}")
    if out and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{name} must be writeable")
    cdef int64_t isz = cnp.PyArray_ITEMSIZE(arr)
    cdef int64_t rows = cnp.PyArray_DIM(arr, 0), cols = cnp.PyArray_DIM(arr, 1)
    cdef int64_t s0 = cnp.PyArray_STRIDE(arr, 0), s1 = cnp.PyArray_STRIDE(arr, 1)
    if rows > 0 and cols > 1 and s1 != isz:  # (one row too: the kernels read cols elements on)
        raise ValueError(f"{name} must have contiguous rows (unit column stride)")
    if rows <= 1 or cols == 0:
        return max(cols, 1)
    if s0 % isz != 0 or s0 < cols * isz:
        raise ValueError(f"{name} rows must not overlap (row stride >= row length)")
    return s0 // isz


cdef int _float_matrix(object a, str name) except -1:
    """The numpy type number of `a`, a 2-D float32 or float64 array (else an error naming it)."""
    if not cnp.PyArray_Check(a) or cnp.PyArray_NDIM(<cnp.ndarray>a) != 2:
        raise ValueError(f"{name} must be a 2-D numpy array")
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray>a)
    if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
        raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
    return typenum


def gemm(A, B, C=None, *, bint transa=False, bint transb=False, double beta=0.0, int nthreads=1,
         bint bf16=False):
    """C = beta*C + op(A) @ op(B) with our packed GEMM (2-D float32/float64 arrays with contiguous
    rows: C-contiguous, or column slices of such arrays for a larger leading dimension). bf16:
    fr_gemm_bf16 (float32 only: operands rounded to bfloat16 as they are packed)."""
    cdef int typenum = _float_matrix(A, "A")
    if bf16 and typenum != cnp.NPY_FLOAT32:
        raise TypeError("bf16=True takes float32 arrays")
    if not cnp.PyArray_Check(B) or cnp.PyArray_NDIM(<cnp.ndarray>B) != 2:
        raise ValueError("B must be a 2-D numpy array")
    cdef int64_t a0 = cnp.PyArray_DIM(<cnp.ndarray>A, 0), a1 = cnp.PyArray_DIM(<cnp.ndarray>A, 1)
    cdef int64_t b0 = cnp.PyArray_DIM(<cnp.ndarray>B, 0), b1 = cnp.PyArray_DIM(<cnp.ndarray>B, 1)
    cdef int64_t M = a1 if transa else a0
    cdef int64_t K = a0 if transa else a1
    cdef int64_t N = b0 if transb else b1
    cdef int64_t KB = b1 if transb else b0
    if KB != K:
        raise ValueError(f"inner dimensions differ: op(A) is ({M}, {K}), op(B) is ({KB}, {N})")
    if beta != 0.0 and beta != 1.0:
        raise ValueError("beta must be 0 or 1")
    if nthreads < 1:
        raise ValueError("nthreads must be >= 1")
    cdef int64_t lda = _row_stride(A, "A", typenum, False)
    cdef int64_t ldb = _row_stride(B, "B", typenum, False)
    cdef cnp.npy_intp dims[2]
    if C is None:
        if beta != 0.0:
            raise ValueError("beta=1 needs C")
        dims[0] = M
        dims[1] = N
        C = cnp.PyArray_EMPTY(2, dims, typenum, 0)
    elif (not cnp.PyArray_Check(C) or cnp.PyArray_NDIM(<cnp.ndarray>C) != 2
          or cnp.PyArray_DIM(<cnp.ndarray>C, 0) != M or cnp.PyArray_DIM(<cnp.ndarray>C, 1) != N):
        raise ValueError(f"C must be a numpy array of shape {(M, N)}")
    cdef int64_t ldc = _row_stride(C, "C", typenum, True)
    cdef void *pa = cnp.PyArray_DATA(<cnp.ndarray>A)
    cdef void *pb = cnp.PyArray_DATA(<cnp.ndarray>B)
    cdef void *pc = cnp.PyArray_DATA(<cnp.ndarray>C)
    cdef int st
    cdef int ta = transa, tb = transb
    if bf16:
        with nogil:
            st = fr_gemm_bf16(ta, tb, M, N, K, <float *>pa, lda, <float *>pb, ldb, <float>beta,
                              <float *>pc, ldc, nthreads)
    elif typenum == cnp.NPY_FLOAT32:
        with nogil:
            st = fr_gemm_s(ta, tb, M, N, K, <float *>pa, lda, <float *>pb, ldb, <float>beta,
                           <float *>pc, ldc, nthreads)
    else:
        with nogil:
            st = fr_gemm_d(ta, tb, M, N, K, <double *>pa, lda, <double *>pb, ldb, beta,
                           <double *>pc, ldc, nthreads)
    if st != FR_OK:
        _raise(st, "gemm")
    return C


def gemm_pair(A, B1, C1, B2, C2, *, bint transa=False, double beta=0.0, int nthreads=1):
    """C1 = beta*C1 + op(A) @ B1 and C2 = beta*C2 + op(A) @ B2 in one call that packs op(A)
    once (fr_gemm_pair; for tests). Arrays as :func:`gemm`'s, C1 and C2 given."""
    cdef int typenum = _float_matrix(A, "A")
    cdef int64_t a0 = cnp.PyArray_DIM(<cnp.ndarray>A, 0), a1 = cnp.PyArray_DIM(<cnp.ndarray>A, 1)
    cdef int64_t M = a1 if transa else a0
    cdef int64_t K = a0 if transa else a1
    if beta != 0.0 and beta != 1.0:
        raise ValueError("beta must be 0 or 1")
    if nthreads < 1:
        raise ValueError("nthreads must be >= 1")
    cdef int64_t lda = _row_stride(A, "A", typenum, False)
    cdef int64_t N[2]
    cdef int64_t ldb[2]
    cdef int64_t ldc[2]
    cdef void *pb[2]
    cdef void *pc[2]
    for s, (B, C, bn, cn) in enumerate(((B1, C1, "B1", "C1"), (B2, C2, "B2", "C2"))):
        if not cnp.PyArray_Check(B) or cnp.PyArray_NDIM(<cnp.ndarray>B) != 2:
            raise ValueError(f"{bn} must be a 2-D numpy array")
        if cnp.PyArray_DIM(<cnp.ndarray>B, 0) != K:
            raise ValueError(f"{bn} must have {K} rows, got {B.shape[0]}")
        N[s] = cnp.PyArray_DIM(<cnp.ndarray>B, 1)
        if (not cnp.PyArray_Check(C) or cnp.PyArray_NDIM(<cnp.ndarray>C) != 2
                or cnp.PyArray_DIM(<cnp.ndarray>C, 0) != M
                or cnp.PyArray_DIM(<cnp.ndarray>C, 1) != N[s]):
            raise ValueError(f"{cn} must be a numpy array of shape {(M, N[s])}")
        ldb[s] = _row_stride(B, bn, typenum, False)
        ldc[s] = _row_stride(C, cn, typenum, True)
        pb[s] = cnp.PyArray_DATA(<cnp.ndarray>B)
        pc[s] = cnp.PyArray_DATA(<cnp.ndarray>C)
    cdef void *pa = cnp.PyArray_DATA(<cnp.ndarray>A)
    cdef int st
    cdef int ta = transa
    if typenum == cnp.NPY_FLOAT32:
        with nogil:
            st = fr_gemm_pair_s(ta, M, K, <float *>pa, lda, N[0], <float *>pb[0], ldb[0],
                                <float *>pc[0], ldc[0], N[1], <float *>pb[1], ldb[1],
                                <float *>pc[1], ldc[1], <float>beta, nthreads)
    else:
        with nogil:
            st = fr_gemm_pair_d(ta, M, K, <double *>pa, lda, N[0], <double *>pb[0], ldb[0],
                                <double *>pc[0], ldc[0], N[1], <double *>pb[1], ldb[1],
                                <double *>pc[1], ldc[1], beta, nthreads)
    if st != FR_OK:
        _raise(st, "gemm_pair")
    return C1, C2


def ukr(A, Bp, C, *, bint accumulate=False, bint half=False, bint pair=False, bias=None):
    """Call the microkernel of the path in use on one tile (for tests).

    C[i, c] (accumulate ? += : =) sum_k A[i, k] * Bp[k, c] for an (m, K) A with m <= mr, a packed
    (K, nr) panel Bp (C-contiguous) and an (m, nr) C; A and C may be column slices of wider
    arrays (any lda, ldc). half: the kernel's half-width form, with an (m, nr // 2) C (it reads
    Bp's first nr // 2 columns). pair: its two-panel form, with a (2, K, nr) Bp (two adjacent
    panels) and an (m, 2 * nr) C. bias: the bias form (fastrnn.h's ukr_bias, ukr_bias_half),
    C = sum + bias[c] for a C-contiguous bias of C's columns (not with accumulate or pair).
    """
    if not isinstance(A, np.ndarray) or (A.dtype != np.float32 and A.dtype != np.float64):
        raise TypeError("A must be a float32 or float64 numpy array")
    if half and pair:
        raise ValueError("half and pair are exclusive")
    if bias is not None and (accumulate or pair):
        raise ValueError("bias takes neither accumulate nor pair")
    dt = A.dtype
    cdef const fr_kernel_s *ks = fr_kernel_get_s()
    cdef const fr_kernel_d *kd = fr_kernel_get_d()
    cdef int64_t mr = ks.mr if dt == np.float32 else kd.mr
    cdef int64_t nr = ks.nr if dt == np.float32 else kd.nr
    cdef int typenum = cnp.NPY_FLOAT32 if dt == np.float32 else cnp.NPY_FLOAT64
    cdef int64_t lda = _row_stride(A, "A", typenum, False)
    cdef int64_t m = A.shape[0], K = A.shape[1]
    if m < 1 or m > mr:
        raise ValueError(f"A must have 1..{mr} rows, got {m}")
    if pair:
        _chk(Bp, "Bp", (2, K, nr), dt, False, False)
    else:
        _chk(Bp, "Bp", (K, nr), dt, False, False)
    cdef int64_t nc = nr // 2 if half else (2 * nr if pair else nr)
    if not isinstance(C, np.ndarray) or C.shape != (m, nc):
        raise ValueError(f"C must be a numpy array of shape {(m, nc)}")
    cdef int64_t ldc = _row_stride(C, "C", typenum, True)
    cdef void *pa = _ptr(A)
    cdef void *pb = _ptr(Bp)
    cdef void *pc = _ptr(C)
    cdef int acc = accumulate
    cdef fr_ukr_s_fn fs = ks.ukr_half if half else ks.ukr_pair if pair else ks.ukr
    cdef fr_ukr_d_fn fd = kd.ukr_half if half else kd.ukr_pair if pair else kd.ukr
    cdef fr_ukr_bias_s_fn bs = ks.ukr_bias_half if half else ks.ukr_bias
    cdef fr_ukr_bias_d_fn bd = kd.ukr_bias_half if half else kd.ukr_bias
    cdef void *pbias
    if bias is not None:
        _chk(bias, "bias", (nc,), dt, False, False)
        pbias = _ptr(bias)
        if dt == np.float32:
            with nogil:
                bs(m, K, <float *>pa, lda, <float *>pb, <float *>pbias, <float *>pc, ldc)
        else:
            with nogil:
                bd(m, K, <double *>pa, lda, <double *>pb, <double *>pbias, <double *>pc, ldc)
        return C
    if dt == np.float32:
        with nogil:
            fs(m, K, <float *>pa, lda, <float *>pb, <float *>pc, ldc, acc)
    else:
        with nogil:
            fd(m, K, <double *>pa, lda, <double *>pb, <double *>pc, ldc, acc)
    return C


def _act(x, bint is_tanh):
    if not isinstance(x, np.ndarray) or (x.dtype != np.float32 and x.dtype != np.float64):
        raise TypeError("x must be a float32 or float64 numpy array")
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    cdef void *px = _ptr(x)
    cdef void *py = _ptr(y)
    cdef int64_t n = x.size
    if x.dtype == np.float32:
        with nogil:
            if is_tanh:
                fr_tanh_s(<float *>py, <float *>px, n)
            else:
                fr_sigmoid_s(<float *>py, <float *>px, n)
    else:
        with nogil:
            if is_tanh:
                fr_tanh_d(<double *>py, <double *>px, n)
            else:
                fr_sigmoid_d(<double *>py, <double *>px, n)
    return y


def sigmoid(x):
    """Elementwise logistic sigmoid with the vectorised kernel of the path in use."""
    return _act(x, False)


def tanh(x):
    """Elementwise tanh with the vectorised kernel of the path in use."""
    return _act(x, True)


# ---- cells --------------------------------------------------------------------------------------

cdef tuple _input_dims(str cell, object a, str name, str shape, int ndim, object w_hh,
                       int nthreads, int act):
    """Check what every cell call shares: the cell, the input ``a`` (``name``, an ``ndim``-D
    float array), w_hh, nthreads and act; return (dtype, H, G)."""
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}")
    if not isinstance(a, np.ndarray) or a.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D numpy array {shape}")
    if not isinstance(w_hh, np.ndarray) or w_hh.ndim != 2:
        raise ValueError("w_hh must be a 2-D numpy array (G*H, H)")
    dt = a.dtype
    if dt != np.float32 and dt != np.float64:
        raise TypeError(f"{name} must be float32 or float64, got {dt}")
    if nthreads < 1:
        raise ValueError("nthreads must be >= 1")
    if CELLS[cell].nonlinearities and act not in NONLINEARITIES.values():
        raise ValueError("act must be FR_RNN_TANH (0) or FR_RNN_RELU (1)")
    H, G = w_hh.shape[1], CELLS[cell].gates
    if H < 1:
        raise ValueError("hidden size must be >= 1")
    _chk(w_hh, "w_hh", (G * H, H), dt, False, False)
    return dt, H, G


cdef tuple _cell_dims(str cell, object x, object w_ih, object w_hh, int nthreads, int act):
    """Check the arguments every cell call shares; return (dtype, T, B, I, H, G)."""
    dt, H, G = _input_dims(cell, x, "x", "(T, B, I)", 3, w_hh, nthreads, act)
    T, B, I = x.shape[0], x.shape[1], x.shape[2]
    _chk(x, "x", (T, B, I), dt, False, False)
    if w_ih is None and I > 0 and I != G * H:
        raise ValueError(f"w_ih=None (identity: x holds the input projection) needs I = G*H = "
                         f"{G * H}, got I = {I}")
    _chk(w_ih, "w_ih", (G * H, I), dt, False, I > 0)
    return dt, T, B, I, H, G


cdef _chk_lengths(object lengths, int64_t T, int64_t B):
    _chk(lengths, "lengths", (B,), np.int64, False, True)
    if lengths is not None and B > 0 and (lengths.min() < 0 or lengths.max() > T):
        raise ValueError(f"lengths must lie in [0, {T}]")


def scatter_add_rows(dst, src, idx, int nthreads=1):
    """``dst[idx[r]] += src[r]`` for every row r of ``src``, in row order (deterministic).

    ``dst`` (V, n) and ``src`` (R, n) are C-contiguous with one float dtype, ``idx`` (R,)
    C-contiguous int64 with values in [0, V) (else ValueError, nothing written).
    """
    if not isinstance(dst, np.ndarray) or dst.ndim != 2:
        raise ValueError("dst must be a 2-D numpy array (V, n)")
    dt = dst.dtype
    if dt != np.float32 and dt != np.float64:
        raise TypeError(f"dst must be float32 or float64, got {dt}")
    if not isinstance(idx, np.ndarray) or idx.ndim != 1:
        raise ValueError("idx must be a 1-D numpy array (R,)")
    cdef int64_t V = dst.shape[0], n = dst.shape[1], R = idx.shape[0]
    _chk(dst, "dst", (V, n), dt, True, False)
    _chk(src, "src", (R, n), dt, False, False)
    _chk(idx, "idx", (R,), np.int64, False, False)
    if nthreads < 1:
        raise ValueError("nthreads must be >= 1")
    cdef void *pd = _ptr(dst)
    cdef void *ps = _ptr(src)
    cdef const int64_t *pi = <const int64_t *>_ptr(idx)
    cdef int st
    cdef bint f32 = dt == np.float32
    with nogil:
        if f32:
            st = fr_scatter_add_rows_s(<float *>pd, V, n, <float *>ps, pi, R, nthreads)
        else:
            st = fr_scatter_add_rows_d(<double *>pd, V, n, <double *>ps, pi, R, nthreads)
    if st != FR_OK:
        raise ValueError(f"scatter_add_rows: idx must lie in [0, {V})")


def adam_update(w, g, m, v, double c1, double c2, double alpha, double eps, int nthreads=1):
    """One fused Adam step in place on ``w``, ``m``, ``v`` from ``g`` (see fr_adam_update).

    All four arrays C-contiguous, one shape and one float dtype; the scalars are rounded to it.
    """
    if not isinstance(w, np.ndarray):
        raise TypeError(f"w must be a numpy.ndarray, got {type(w).__name__}")
    dt = w.dtype
    if dt != np.float32 and dt != np.float64:
        raise TypeError(f"w must be float32 or float64, got {dt}")
    shape = w.shape
    _chk(w, "w", shape, dt, True, False)
    _chk(g, "g", shape, dt, False, False)
    _chk(m, "m", shape, dt, True, False)
    _chk(v, "v", shape, dt, True, False)
    if nthreads < 1:
        raise ValueError("nthreads must be >= 1")
    cdef int64_t n = w.size
    cdef void *pw = _ptr(w)
    cdef void *pg = _ptr(g)
    cdef void *pm = _ptr(m)
    cdef void *pv = _ptr(v)
    cdef bint f32 = dt == np.float32
    cdef int st
    with nogil:
        if f32:
            st = fr_adam_update_s(<float *>pw, <float *>pg, <float *>pm, <float *>pv, n,
                                  <float>c1, <float>c2, <float>alpha, <float>eps, nthreads)
        else:
            st = fr_adam_update_d(<double *>pw, <double *>pg, <double *>pm, <double *>pv, n,
                                  c1, c2, alpha, eps, nthreads)
    if st != FR_OK:
        _raise(st, "adam_update")


def cell_gates(int code):
    """The gate count G of the C kernels' cell ``code`` (``FR_CELL_*``); ValueError for an unknown
    code."""
    cdef int G = fr_cell_gates(code)
    if G < 0:
        raise ValueError(f"unknown cell code {code}")
    return G


def cache_size(str cell, int64_t T, int64_t B, int64_t H):
    """Number of elements of the training cache of a cell.

    Raises ValueError for a negative size or a count that does not fit in int64 (the C size
    function's -1), naming the sizes.
    """
    cdef int64_t n
    for name, v in (("T", T), ("B", B), ("H", H)):
        if v < 0:
            raise ValueError(f"cache_size: {name} must be >= 0, got {v}")
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}")
    n = fr_cell_cache_size(CELLS[cell].code, T, B, H)
    if n < 0:
        raise ValueError(f"cache_size: the {cell} cache of T={T}, B={B}, H={H} has more "
                         "elements than fit in a 64-bit size")
    return n


# The arguments of one call of a cell entry (fr_cell_*), its arrays as untyped pointers: a def
# function fills it once, and a helper fused over the dtype (typed by its ``tag``) makes the one
# call of the entry of that dtype.
cdef struct _CellCall:
    int cell
    void *y
    void *h_n
    void *c_n
    void *cache
    void *x
    void *h0
    void *c0
    void *w_ih
    void *w_hh
    void *b_ih
    void *b_hh
    void *dx
    void *dh0
    void *dc0
    void *dw_ih
    void *dw_hh
    void *db_ih
    void *db_hh
    void *dy
    void *dh_n
    void *dc_n
    const int64_t *ids
    const int64_t *lengths
    const void *packed  # NULL, or prepack's buffer of packed_bytes (the forward only)
    int64_t packed_bytes
    int64_t rows, steps, batch, inputs, hidden  # V, T, B, I, H (the macro I of complex.h)
    int act, reverse, nthreads


cdef _CellCall _cell_call(str cell, int64_t V, int64_t T, int64_t B, int64_t I, int64_t H, int act,
                          bint reverse, int nthreads, dict arrays):
    """One call of a cell entry: the cell's code, the sizes, and the data of the arrays named as
    the entry's arguments (NULL for one not given or None, and for the cell-state arrays of a
    cell without one). The arrays have been checked."""
    g = arrays.get
    cdef bint has_c = CELLS[cell].has_cell_state
    cdef _CellCall a
    a.cell = CELLS[cell].code
    a.y, a.h_n, a.cache, a.x = _ptr(g("y")), _ptr(g("h_n")), _ptr(g("cache")), _ptr(g("x"))
    a.h0, a.w_ih, a.w_hh = _ptr(g("h0")), _ptr(g("w_ih")), _ptr(g("w_hh"))
    a.b_ih, a.b_hh, a.dx, a.dh0 = _ptr(g("b_ih")), _ptr(g("b_hh")), _ptr(g("dx")), _ptr(g("dh0"))
    a.dw_ih, a.dw_hh = _ptr(g("dw_ih")), _ptr(g("dw_hh"))
    a.db_ih, a.db_hh = _ptr(g("db_ih")), _ptr(g("db_hh"))
    a.dy, a.dh_n = _ptr(g("dy")), _ptr(g("dh_n"))
    a.c_n = _ptr(g("c_n")) if has_c else NULL
    a.c0 = _ptr(g("c0")) if has_c else NULL
    a.dc0 = _ptr(g("dc0")) if has_c else NULL
    a.dc_n = _ptr(g("dc_n")) if has_c else NULL
    a.ids = <const int64_t *>_ptr(g("ids"))
    a.lengths = <const int64_t *>_ptr(g("lengths"))
    a.packed = NULL
    a.packed_bytes = 0
    a.rows, a.steps, a.batch, a.inputs, a.hidden = V, T, B, I, H
    a.act, a.reverse, a.nthreads = act, reverse, nthreads
    return a


cdef int _forward(const _CellCall *a, floating *tag) noexcept nogil:
    cdef int (*entry)(int, floating *, floating *, floating *, floating *, const floating *,
                      const floating *, const floating *, const floating *, const floating *,
                      const floating *, const floating *, const int64_t *, int64_t, int64_t,
                      int64_t, int64_t, int, int, int) noexcept nogil
    cdef int (*packed_entry)(int, floating *, floating *, floating *, floating *,
                             const floating *, const floating *, const floating *,
                             const floating *, const floating *, const floating *,
                             const floating *, const int64_t *, int64_t, int64_t, int64_t,
                             int64_t, int, int, int, const void *, int64_t) noexcept nogil
    if floating is float:
        entry = fr_cell_forward_s
        packed_entry = fr_cell_forward_prepacked_s
    else:
        entry = fr_cell_forward_d
        packed_entry = fr_cell_forward_prepacked_d
    if a.packed != NULL:
        return packed_entry(a.cell, <floating *>a.y, <floating *>a.h_n, <floating *>a.c_n,
                            <floating *>a.cache, <const floating *>a.x, <const floating *>a.h0,
                            <const floating *>a.c0, <const floating *>a.w_ih,
                            <const floating *>a.w_hh, <const floating *>a.b_ih,
                            <const floating *>a.b_hh, a.lengths, a.steps, a.batch, a.inputs,
                            a.hidden, a.act, a.reverse, a.nthreads, a.packed, a.packed_bytes)
    return entry(a.cell, <floating *>a.y, <floating *>a.h_n, <floating *>a.c_n,
                 <floating *>a.cache, <const floating *>a.x, <const floating *>a.h0,
                 <const floating *>a.c0, <const floating *>a.w_ih, <const floating *>a.w_hh,
                 <const floating *>a.b_ih, <const floating *>a.b_hh, a.lengths, a.steps,
                 a.batch, a.inputs, a.hidden, a.act, a.reverse, a.nthreads)


cdef int _forward_rows(const _CellCall *a, floating *tag) noexcept nogil:
    cdef int (*entry)(int, floating *, floating *, floating *, floating *, const floating *,
                      int64_t, const int64_t *, const floating *, const floating *,
                      const floating *, const floating *, const floating *, const int64_t *,
                      int64_t, int64_t, int64_t, int, int, int) noexcept nogil
    if floating is float:
        entry = fr_cell_forward_rows_s
    else:
        entry = fr_cell_forward_rows_d
    return entry(a.cell, <floating *>a.y, <floating *>a.h_n, <floating *>a.c_n,
                 <floating *>a.cache, <const floating *>a.x, a.rows, a.ids, <const floating *>a.h0,
                 <const floating *>a.c0, <const floating *>a.w_hh, <const floating *>a.b_ih,
                 <const floating *>a.b_hh, a.lengths, a.steps, a.batch, a.hidden, a.act, a.reverse,
                 a.nthreads)


cdef int _backward(const _CellCall *a, floating *tag) noexcept nogil:
    cdef int (*entry)(int, floating *, floating *, floating *, floating *, floating *, floating *,
                      floating *, const floating *, const floating *, const floating *,
                      const floating *, const floating *, const floating *, const floating *,
                      const int64_t *, int64_t, int64_t, int64_t, int64_t, int, int,
                      int) noexcept nogil
    if floating is float:
        entry = fr_cell_backward_s
    else:
        entry = fr_cell_backward_d
    return entry(a.cell, <floating *>a.dx, <floating *>a.dh0, <floating *>a.dc0,
                 <floating *>a.dw_ih, <floating *>a.dw_hh, <floating *>a.db_ih,
                 <floating *>a.db_hh, <const floating *>a.cache, <const floating *>a.x,
                 <const floating *>a.w_ih, <const floating *>a.w_hh, <const floating *>a.dy,
                 <const floating *>a.dh_n, <const floating *>a.dc_n, a.lengths, a.steps,
                 a.batch, a.inputs, a.hidden, a.act, a.reverse, a.nthreads)


cdef _chk_forward_rest(str cell, object dt, int64_t T, int64_t B, int64_t H, int64_t G, y, h_n,
                       c_n, cache, h0, c0, b_ih, b_hh, lengths):
    """The forward's checks beyond the input and w_hh: biases, states, outputs, cache, lengths."""
    _chk(b_ih, "b_ih", (G * H,), dt, False, True)
    _chk(b_hh, "b_hh", (G * H,), dt, False, True)
    _chk(h0, "h0", (B, H), dt, False, True)
    _chk(y, "y", (T, B, H), dt, True, False)
    _chk(h_n, "h_n", (B, H), dt, True, False)
    if CELLS[cell].has_cell_state:
        _chk(c0, "c0", (B, H), dt, False, True)
        _chk(c_n, "c_n", (B, H), dt, True, False)
    _chk(cache, "cache", (cache_size(cell, T, B, H),), dt, True, True)
    _chk_lengths(lengths, T, B)


def prepack(str cell, w_ih, w_hh, b_ih, b_hh):
    """The weights packed once for :func:`cell_forward`'s ``packed`` (fr_cell_prepack_*): a
    page-aligned uint8 array made for this machine's SIMD path in use.

    C-contiguous float32 or float64 arrays of one dtype (w_ih None: the identity input); sizes
    checked here.
    """
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {tuple(CELLS)}, got {cell!r}")
    cdef int code = CELLS[cell].code
    cdef int64_t G = CELLS[cell].gates
    if not isinstance(w_hh, np.ndarray) or w_hh.ndim != 2:
        raise ValueError("w_hh must be a 2-D numpy array")
    dt = w_hh.dtype
    if dt != np.float32 and dt != np.float64:
        raise TypeError(f"w_hh must be float32 or float64, got {dt}")
    cdef int64_t H = w_hh.shape[1]
    _chk(w_hh, "w_hh", (G * H, H), dt, False, False)
    cdef int64_t I = 0
    if w_ih is not None:
        if not isinstance(w_ih, np.ndarray) or w_ih.ndim != 2:
            raise ValueError("w_ih must be a 2-D numpy array")
        I = w_ih.shape[1]
        _chk(w_ih, "w_ih", (G * H, I), dt, False, False)
    _chk(b_ih, "b_ih", (G * H,), dt, False, True)
    _chk(b_hh, "b_hh", (G * H,), dt, False, True)
    cdef bint f32 = dt == np.float32
    cdef int64_t n = fr_cell_prepack_bytes_s(code, I, H) if f32 else \
        fr_cell_prepack_bytes_d(code, I, H)
    if n < 0:
        raise ValueError(f"{cell}: sizes I={I}, H={H} out of range for packing")
    packed = _aligned_bytes(n, 4096)
    cdef void *pp = _ptr(packed)
    cdef void *p1 = _ptr(w_ih)
    cdef void *p2 = _ptr(w_hh)
    cdef void *p3 = _ptr(b_ih)
    cdef void *p4 = _ptr(b_hh)
    cdef int st
    with nogil:
        if f32:
            st = fr_cell_prepack_s(pp, code, <const float *>p1, <const float *>p2,
                                   <const float *>p3, <const float *>p4, I, H)
        else:
            st = fr_cell_prepack_d(pp, code, <const double *>p1, <const double *>p2,
                                   <const double *>p3, <const double *>p4, I, H)
    _raise(st, "prepack")
    return packed


cdef int _set_packed(_CellCall *a, packed) except -1:
    """a's packed buffer: None (none), or a 1-D C-contiguous uint8 array (prepack's; the C entry
    checks its header and does not read one made for another call)."""
    if packed is None:
        return 0
    cdef cnp.ndarray arr
    if type(packed) is np.ndarray:
        arr = <cnp.ndarray>packed
        if (cnp.PyArray_TYPE(arr) == cnp.NPY_UINT8 and cnp.PyArray_NDIM(arr) == 1
                and cnp.PyArray_IS_C_CONTIGUOUS(arr)):
            a.packed = cnp.PyArray_DATA(arr)
            a.packed_bytes = cnp.PyArray_DIMS(arr)[0]
            return 0
    raise TypeError("packed must be prepack's uint8 array")


def cell_forward(str cell, y, h_n, c_n, cache, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths,
                 int act, bint reverse, int nthreads, packed=None):
    """Run a cell over a whole sequence, writing y, h_n (and c_n for LSTM), and cache if given.

    All arrays must be C-contiguous with x's dtype (lengths int64); optional ones may be None.
    packed: None, or :func:`prepack`'s buffer of these weights (the same results, less packing).
    """
    cdef int64_t T, B, I, H, G
    dt, T, B, I, H, G = _cell_dims(cell, x, w_ih, w_hh, nthreads, act)
    _chk_forward_rest(cell, dt, T, B, H, G, y, h_n, c_n, cache, h0, c0, b_ih, b_hh, lengths)
    cdef _CellCall a = _cell_call(cell, 0, T, B, I, H, act, reverse, nthreads, dict(
        y=y, h_n=h_n, c_n=c_n, cache=cache, x=x, h0=h0, c0=c0, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih,
        b_hh=b_hh, lengths=lengths))
    _set_packed(&a, packed)
    cdef bint f32 = dt == np.float32
    cdef int st
    with nogil:
        st = _forward(&a, <float *>NULL) if f32 else _forward(&a, <double *>NULL)
    _raise(st, f"{cell}_forward")


cdef inline bint _ready(object a, int typenum, int ndim, int64_t d0, int64_t d1,
                        int64_t d2) noexcept:
    """Whether ``a`` is an ndarray (not a subclass) of typenum in the machine's byte order,
    aligned, C-contiguous and exactly of the ndim sizes d0, d1, d2 (those past ndim unused):
    C-API reads, no Python objects made."""
    if type(a) is not np.ndarray:
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_TYPE(arr) != typenum or cnp.PyArray_NDIM(arr) != ndim:
        return False
    if not cnp.PyArray_IS_C_CONTIGUOUS(arr) or not cnp.PyArray_ISBEHAVED_RO(arr):
        return False
    cdef cnp.npy_intp *d = cnp.PyArray_DIMS(arr)
    return d[0] == d0 and (ndim < 2 or d[1] == d1) and (ndim < 3 or d[2] == d2)


def forward_ready(str cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, int act, bint reverse,
                  int nthreads, packed=None):
    """The inference forward of arrays that are already as the kernels take them: (y, h_n, c_n),
    or None where any argument is not (then nothing ran; the caller takes the validating path,
    fastrnn._validate.prepare, whose messages say what is wrong).

    Ready means: x a (T, B, I) float32 or float64 ndarray with T, B, I >= 1; w_ih (G*H, I),
    w_hh (G*H, H) with H >= 1, b_ih and b_hh (G*H,) or None, h0 (and the LSTM's c0) (B, H) or
    None, all C-contiguous, aligned ndarrays (no subclass) of x's dtype in the machine's byte
    order; a cell of the table, c0 None
    for a cell without a cell state, act valid for the cell, nthreads >= 1. A state given as
    None starts at zeros, as prepare makes it (an array of zeros, not a NULL pointer: the same
    sums, NaN and infinity included).
    """
    spec = CELLS.get(cell)
    if spec is None or type(x) is not np.ndarray or type(w_hh) is not np.ndarray or nthreads < 1:
        return None
    if spec.nonlinearities and act != FR_RNN_TANH and act != FR_RNN_RELU:
        return None
    cdef bint has_c = spec.has_cell_state
    if c0 is not None and not has_c:
        return None
    cdef cnp.ndarray xa = <cnp.ndarray>x, wa = <cnp.ndarray>w_hh
    cdef int tn = cnp.PyArray_TYPE(xa)
    if (tn != cnp.NPY_FLOAT32 and tn != cnp.NPY_FLOAT64) or cnp.PyArray_NDIM(xa) != 3 or \
            cnp.PyArray_NDIM(wa) != 2:
        return None
    cdef int64_t T = cnp.PyArray_DIMS(xa)[0], B = cnp.PyArray_DIMS(xa)[1]
    cdef int64_t I = cnp.PyArray_DIMS(xa)[2], H = cnp.PyArray_DIMS(wa)[1]
    cdef int64_t G = spec.gates
    if T < 1 or B < 1 or I < 1 or H < 1 or w_ih is None:
        return None
    if not (_ready(x, tn, 3, T, B, I) and _ready(w_hh, tn, 2, G * H, H, 0)
            and _ready(w_ih, tn, 2, G * H, I, 0)
            and (b_ih is None or _ready(b_ih, tn, 1, G * H, 0, 0))
            and (b_hh is None or _ready(b_hh, tn, 1, G * H, 0, 0))
            and (h0 is None or _ready(h0, tn, 2, B, H, 0))
            and (c0 is None or _ready(c0, tn, 2, B, H, 0))):
        return None
    dt = xa.dtype
    if h0 is None:
        h0 = np.zeros((B, H), dt)
    if has_c and c0 is None:
        c0 = np.zeros((B, H), dt)
    y = np.empty((T, B, H), dt)
    h_n = np.empty((B, H), dt)
    c_n = np.empty((B, H), dt) if has_c else None
    cdef _CellCall a
    memset(&a, 0, sizeof(a))
    a.cell = spec.code
    a.y, a.h_n, a.c_n, a.x = _ptr(y), _ptr(h_n), _ptr(c_n), _ptr(x)
    a.h0, a.c0, a.w_ih, a.w_hh = _ptr(h0), _ptr(c0), _ptr(w_ih), _ptr(w_hh)
    a.b_ih, a.b_hh = _ptr(b_ih), _ptr(b_hh)
    a.steps, a.batch, a.inputs, a.hidden = T, B, I, H
    a.act, a.reverse, a.nthreads = act, reverse, nthreads
    _set_packed(&a, packed)
    cdef int st
    cdef PyThreadState *ts = _gil_off(T == 1 and 2.0 * B * (I + H) * G * H < FR_STEP1_TEAM_FLOPS)
    st = _forward(&a, <float *>NULL) if tn == cnp.NPY_FLOAT32 else _forward(&a, <double *>NULL)
    _gil_on(ts)
    _raise(st, f"{cell}_forward")
    return y, h_n, c_n


def cell_forward_rows(str cell, y, h_n, c_n, cache, table, ids, h0, c0, w_hh, b_ih, b_hh,
                      lengths, int act, bint reverse, int nthreads):
    """cell_forward with w_ih None and x = table[ids], without materialising x.

    ``table`` (V, G*H) holds projected inputs (no biases), ``ids`` (T, B) int64 in [0, V) picks
    the row of every step and batch entry; the other arguments are cell_forward's. The backward
    is cell_backward with w_ih None and x None.
    """
    cdef int64_t T, B, V, H, G
    dt, H, G = _input_dims(cell, table, "table", "(V, G*H)", 2, w_hh, nthreads, act)
    if not isinstance(ids, np.ndarray) or ids.ndim != 2:
        raise ValueError("ids must be a 2-D numpy array (T, B)")
    T, B, V = ids.shape[0], ids.shape[1], table.shape[0]
    _chk(table, "table", (V, G * H), dt, False, False)
    _chk(ids, "ids", (T, B), np.int64, False, False)
    _chk_forward_rest(cell, dt, T, B, H, G, y, h_n, c_n, cache, h0, c0, b_ih, b_hh, lengths)
    # the table takes x's place, as in the C entry
    cdef _CellCall a = _cell_call(cell, V, T, B, G * H, H, act, reverse, nthreads, dict(
        y=y, h_n=h_n, c_n=c_n, cache=cache, x=table, ids=ids, h0=h0, c0=c0, w_hh=w_hh, b_ih=b_ih,
        b_hh=b_hh, lengths=lengths))
    cdef bint f32 = dt == np.float32
    cdef int st
    with nogil:
        st = _forward_rows(&a, <float *>NULL) if f32 else _forward_rows(&a, <double *>NULL)
    if st == FR_ERR_ARG:
        raise ValueError(f"{cell}_forward_rows: ids must lie in [0, {V})")
    _raise(st, f"{cell}_forward_rows")


def cell_backward(str cell, dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, cache, x, w_ih, w_hh,
                  dy, dh_n, dc_n, lengths, int act, bint reverse, int nthreads, hq=None):
    """Backpropagate through a whole sequence using the cache of cell_forward.

    Writes dx, dh0 (and dc0 for LSTM), dw_ih and dw_hh; accumulates into db_ih, db_hh (+=).
    With w_ih None (projected input) x is not read and may be None (sizes then come from dx).
    dx None (only with w_ih given): the input's gradient is not computed.
    """
    cdef int64_t T, B, I, H, G
    if x is None and w_ih is not None:
        raise ValueError("x is needed unless w_ih is None (projected input)")
    if dx is None and w_ih is None:
        raise ValueError("dx is required when w_ih is None (it receives the input "
                         "pre-activation gradients)")
    dt, T, B, I, H, G = _cell_dims(cell, dx if x is None else x, w_ih, w_hh, nthreads, act)
    _chk(cache, "cache", (cache_size(cell, T, B, H),), dt, False, False)
    _chk(dy, "dy", (T, B, H), dt, False, True)
    _chk(dh_n, "dh_n", (B, H), dt, False, True)
    _chk(dx, "dx", (T, B, I), dt, True, True)
    _chk(dh0, "dh0", (B, H), dt, True, False)
    _chk(dw_ih, "dw_ih", (G * H, I), dt, True, w_ih is None)
    _chk(dw_hh, "dw_hh", (G * H, H), dt, True, False)
    _chk(db_ih, "db_ih", (G * H,), dt, True, True)
    _chk(db_hh, "db_hh", (G * H,), dt, True, True)
    if CELLS[cell].has_cell_state:
        _chk(dc_n, "dc_n", (B, H), dt, False, True)
        _chk(dc0, "dc0", (B, H), dt, True, False)
    _chk_lengths(lengths, T, B)
    cdef _CellCall a = _cell_call(cell, 0, T, B, I, H, act, reverse, nthreads, dict(
        dx=dx, dh0=dh0, dc0=dc0, dw_ih=dw_ih, dw_hh=dw_hh, db_ih=db_ih, db_hh=db_hh, cache=cache,
        x=x, w_ih=w_ih, w_hh=w_hh, dy=dy, dh_n=dh_n, dc_n=dc_n, lengths=lengths))
    cdef bint f32 = dt == np.float32
    cdef int st
    cdef const float *phq
    if hq is not None:  # a bf16 forward's rounded states for dw_hh
        if not f32:
            raise TypeError("hq needs float32 arrays")
        _chk(hq, "hq", (T, B, H), dt, False, False)
        phq = <const float *>_ptr(hq)
        with nogil:
            st = fr_cell_backward_hq_s(a.cell, <float *>a.dx, <float *>a.dh0, <float *>a.dc0,
                                       <float *>a.dw_ih, <float *>a.dw_hh, <float *>a.db_ih,
                                       <float *>a.db_hh, <const float *>a.cache,
                                       phq, <const float *>a.x,
                                       <const float *>a.w_ih, <const float *>a.w_hh,
                                       <const float *>a.dy, <const float *>a.dh_n,
                                       <const float *>a.dc_n, a.lengths, a.steps, a.batch,
                                       a.inputs, a.hidden, a.act, a.reverse, a.nthreads)
        _raise(st, f"{cell}_backward")
        return
    with nogil:
        st = _backward(&a, <float *>NULL) if f32 else _backward(&a, <double *>NULL)
    _raise(st, f"{cell}_backward")


# ---- the LSTM with a projection (csrc/lstm_proj.c) ---------------------------------------------

def lstmp_cache_size(int64_t T, int64_t B, int64_t H, int64_t P):
    """Elements of the training cache of an LSTM with projection (ValueError on overflow)."""
    cdef int64_t n = fr_lstmp_cache_size(T, B, H, P)
    if n < 0:
        raise ValueError(f"lstmp_cache_size: invalid or too large T={T}, B={B}, H={H}, P={P}")
    return n


cdef tuple _lstmp_dims(x, w_ih, w_hh, w_hr, int nthreads):
    """Check x, w_ih, w_hh (4H, P), w_hr (P, H); return (dtype, T, B, I, H, P)."""
    if not isinstance(x, np.ndarray) or x.ndim != 3:
        raise ValueError("x must be a 3-D numpy array (T, B, I)")
    if not isinstance(w_hr, np.ndarray) or w_hr.ndim != 2:
        raise ValueError("w_hr must be a 2-D numpy array (P, H)")
    dt = x.dtype
    if dt != np.float32 and dt != np.float64:
        raise TypeError(f"x must be float32 or float64, got {dt}")
    if nthreads < 1:
        raise ValueError("nthreads must be >= 1")
    P, H = w_hr.shape[0], w_hr.shape[1]
    if H < 1 or P < 1:
        raise ValueError("w_hr must have shape (P, H) with P, H >= 1")
    T, B, I = x.shape[0], x.shape[1], x.shape[2]
    _chk(x, "x", (T, B, I), dt, False, False)
    _chk(w_hr, "w_hr", (P, H), dt, False, False)
    _chk(w_hh, "w_hh", (4 * H, P), dt, False, False)
    _chk(w_ih, "w_ih", (4 * H, I), dt, False, False)
    return dt, T, B, I, H, P


def lstmp_forward(y, h_n, c_n, cache, x, h0, c0, w_ih, w_hh, w_hr, b_ih, b_hh, lengths,
                  bint reverse, int nthreads):
    """The LSTM with projection over a whole sequence: y (T, B, P), h_n (B, P), c_n (B, H)
    and the cache (lstmp_cache_size elements) when given."""
    cdef int64_t T, B, I, H, P
    dt, T, B, I, H, P = _lstmp_dims(x, w_ih, w_hh, w_hr, nthreads)
    _chk(b_ih, "b_ih", (4 * H,), dt, False, True)
    _chk(b_hh, "b_hh", (4 * H,), dt, False, True)
    _chk(h0, "h0", (B, P), dt, False, True)
    _chk(c0, "c0", (B, H), dt, False, True)
    _chk(y, "y", (T, B, P), dt, True, False)
    _chk(h_n, "h_n", (B, P), dt, True, False)
    _chk(c_n, "c_n", (B, H), dt, True, False)
    _chk(cache, "cache", (lstmp_cache_size(T, B, H, P),), dt, True, True)
    _chk_lengths(lengths, T, B)
    cdef void *py = _ptr(y)
    cdef void *phn = _ptr(h_n)
    cdef void *pcn = _ptr(c_n)
    cdef void *pc = _ptr(cache)
    cdef void *px = _ptr(x)
    cdef void *ph0 = _ptr(h0)
    cdef void *pc0 = _ptr(c0)
    cdef void *pwi = _ptr(w_ih)
    cdef void *pwh = _ptr(w_hh)
    cdef void *pwr = _ptr(w_hr)
    cdef void *pbi = _ptr(b_ih)
    cdef void *pbh = _ptr(b_hh)
    cdef const int64_t *pl = <const int64_t *>_ptr(lengths)
    cdef bint f32 = dt == np.float32
    cdef int st
    with nogil:
        if f32:
            st = fr_lstmp_forward_s(<float *>py, <float *>phn, <float *>pcn, <float *>pc,
                                    <const float *>px, <const float *>ph0, <const float *>pc0,
                                    <const float *>pwi, <const float *>pwh, <const float *>pwr,
                                    <const float *>pbi, <const float *>pbh, pl, T, B, I, H, P,
                                    reverse, nthreads)
        else:
            st = fr_lstmp_forward_d(<double *>py, <double *>phn, <double *>pcn, <double *>pc,
                                    <const double *>px, <const double *>ph0,
                                    <const double *>pc0, <const double *>pwi,
                                    <const double *>pwh, <const double *>pwr,
                                    <const double *>pbi, <const double *>pbh, pl, T, B, I, H,
                                    P, reverse, nthreads)
    _raise(st, "lstm_forward (projection)")


def lstmp_backward(dx, dh0, dc0, dw_ih, dw_hh, dw_hr, db_ih, db_hh, cache, x, w_ih, w_hh, w_hr,
                   dy, dh_n, dc_n, lengths, bint reverse, int nthreads):
    """Backward of lstmp_forward from its cache: writes dx (None: not computed), dh0 (B, P),
    dc0 (B, H); accumulates dw_ih, dw_hh, dw_hr, db_ih, db_hh (+=)."""
    cdef int64_t T, B, I, H, P
    dt, T, B, I, H, P = _lstmp_dims(x, w_ih, w_hh, w_hr, nthreads)
    _chk(cache, "cache", (lstmp_cache_size(T, B, H, P),), dt, False, False)
    _chk(dy, "dy", (T, B, P), dt, False, True)
    _chk(dh_n, "dh_n", (B, P), dt, False, True)
    _chk(dc_n, "dc_n", (B, H), dt, False, True)
    _chk(dx, "dx", (T, B, I), dt, True, True)
    _chk(dh0, "dh0", (B, P), dt, True, False)
    _chk(dc0, "dc0", (B, H), dt, True, False)
    _chk(dw_ih, "dw_ih", (4 * H, I), dt, True, False)
    _chk(dw_hh, "dw_hh", (4 * H, P), dt, True, False)
    _chk(dw_hr, "dw_hr", (P, H), dt, True, False)
    _chk(db_ih, "db_ih", (4 * H,), dt, True, True)
    _chk(db_hh, "db_hh", (4 * H,), dt, True, True)
    _chk_lengths(lengths, T, B)
    cdef void *pdx = _ptr(dx)
    cdef void *pdh0 = _ptr(dh0)
    cdef void *pdc0 = _ptr(dc0)
    cdef void *pdwi = _ptr(dw_ih)
    cdef void *pdwh = _ptr(dw_hh)
    cdef void *pdwr = _ptr(dw_hr)
    cdef void *pdbi = _ptr(db_ih)
    cdef void *pdbh = _ptr(db_hh)
    cdef void *pc = _ptr(cache)
    cdef void *px = _ptr(x)
    cdef void *pwi = _ptr(w_ih)
    cdef void *pwh = _ptr(w_hh)
    cdef void *pwr = _ptr(w_hr)
    cdef void *pdy = _ptr(dy)
    cdef void *pdhn = _ptr(dh_n)
    cdef void *pdcn = _ptr(dc_n)
    cdef const int64_t *pl = <const int64_t *>_ptr(lengths)
    cdef bint f32 = dt == np.float32
    cdef int st
    with nogil:
        if f32:
            st = fr_lstmp_backward_s(<float *>pdx, <float *>pdh0, <float *>pdc0, <float *>pdwi,
                                     <float *>pdwh, <float *>pdwr, <float *>pdbi, <float *>pdbh,
                                     <const float *>pc, <const float *>px, <const float *>pwi,
                                     <const float *>pwh, <const float *>pwr,
                                     <const float *>pdy, <const float *>pdhn,
                                     <const float *>pdcn, pl, T, B, I, H, P, reverse, nthreads)
        else:
            st = fr_lstmp_backward_d(<double *>pdx, <double *>pdh0, <double *>pdc0,
                                     <double *>pdwi, <double *>pdwh, <double *>pdwr,
                                     <double *>pdbi, <double *>pdbh, <const double *>pc,
                                     <const double *>px, <const double *>pwi,
                                     <const double *>pwh, <const double *>pwr,
                                     <const double *>pdy, <const double *>pdhn,
                                     <const double *>pdcn, pl, T, B, I, H, P, reverse,
                                     nthreads)
    _raise(st, "lstm_backward (projection)")


# ---- reduced precision (csrc/lowp.c) -----------------------------------------------------------

_PRECS = {"bfloat16": FR_PREC_BF16, "int8": FR_PREC_INT8}


def lowp_info():
    """CPU features and the kernels each reduced precision runs on now."""
    return {
        "avx512_bf16": bool(fr_cpu_has_lowp(FR_CPU_AVX512_BF16)),
        "avx512_vnni": bool(fr_cpu_has_lowp(FR_CPU_AVX512_VNNI)),
        "avx_vnni": bool(fr_cpu_has_lowp(FR_CPU_AVX_VNNI)),
        "bfloat16": fr_lowp_path(FR_PREC_BF16).decode(),
        "int8": fr_lowp_path(FR_PREC_INT8).decode(),
    }


def lp_set_amx(bint on):
    """Let bfloat16 use AMX where the CPU and OS allow (the default) or not (testing, tuning)."""
    fr_lp_set_amx(on)


def lp_set_small_rows(int rows):
    """Run a product with at most rows rows on the AVX-512 kernels in place of AMX (rows < 0: the
    measured rule, 1 row and for bf16 little work a row; 0: AMX everywhere); testing, tuning."""
    fr_lp_set_small_rows(rows)


def lowp_rows_path(str precision, int64_t rows, double row_macs=0.0):
    """The kernels a product of precision with rows rows, each of row_macs multiply-adds over its
    call, runs on now."""
    return fr_lowp_rows_path(_PRECS[precision], rows, row_macs).decode()


def lp_set_vnni(bint on):
    """Let int8 use VNNI where the CPU has it (the default) or not (testing)."""
    fr_lp_set_vnni(on)


cdef object _aligned_bytes(int64_t n, size_t align=64):
    """An uninitialised uint8 array of n bytes whose data is align-byte aligned (packed
    weights: 64, a cache line; 4096, a page)."""
    raw = np.empty(n + <int64_t>align, np.uint8)
    # unsigned: this module divides with C semantics (cdivision), where a negative remainder
    # would slice an empty array out of raw's end
    cdef size_t addr = <size_t>cnp.PyArray_DATA(raw)
    cdef Py_ssize_t off = <Py_ssize_t>((align - addr % align) % align)
    packed = raw[off:off + n]
    if packed.shape[0] != n:
        raise AssertionError("aligned buffer of the wrong size")
    return packed


def lp_pack(str cell, str precision, w_ih, w_hh, b_ih, b_hh):
    """The weights packed for fr_lp_forward: a 64-byte aligned uint8 array.

    Float32 C-contiguous arrays (w_ih None: the identity, I = G*H); sizes checked here.
    """
    cdef int code = CELLS[cell].code
    cdef int prec = _PRECS[precision]
    cdef int64_t G = CELLS[cell].gates
    _chk(w_hh, "w_hh", (w_hh.shape[0], w_hh.shape[1]) if w_hh.ndim == 2 else (-1, -1),
         np.float32, False, False)
    cdef int64_t H = w_hh.shape[1]
    _chk(w_hh, "w_hh", (G * H, H), np.float32, False, False)
    cdef int64_t I = G * H
    if w_ih is not None:
        if w_ih.ndim != 2:
            raise ValueError("w_ih must be 2-D")
        I = w_ih.shape[1]
        _chk(w_ih, "w_ih", (G * H, I), np.float32, False, False)
    _chk(b_ih, "b_ih", (G * H,), np.float32, False, True)
    _chk(b_hh, "b_hh", (G * H,), np.float32, False, True)
    cdef int64_t n = fr_lp_packed_bytes(code, prec, w_ih is None and I > 0, I, H)
    if n < 0:
        raise ValueError(f"{cell} {precision}: sizes I={I}, H={H} out of range (int8 takes I "
                         f"and H up to 65536, bfloat16 H up to 2**24)")
    packed = _aligned_bytes(n)
    cdef int st
    cdef void *pp = _ptr(packed)
    cdef const float *p1 = <const float *>_ptr(w_ih)
    cdef const float *p2 = <const float *>_ptr(w_hh)
    cdef const float *p3 = <const float *>_ptr(b_ih)
    cdef const float *p4 = <const float *>_ptr(b_hh)
    with nogil:
        st = fr_lp_pack(pp, code, prec, p1, p2, p3, p4, I, H)
    _raise(st, "lp_pack")
    return packed


cdef int _lp_run(packed, int64_t nbytes, y, h_n, c_n, cache, hq, x, h0, c0, lengths, int64_t T,
                 int64_t B, int64_t I, int64_t H, int act, bint reverse, int nthreads,
                 bint keep_gil):
    """fr_lp_forward on checked arrays (None: NULL), without the GIL unless keep_gil (a
    one-step call on the calling thread alone, see _gil_off); its status."""
    cdef void *pk = _ptr(packed)
    cdef float *py = <float *>_ptr(y)
    cdef float *phn = <float *>_ptr(h_n)
    cdef float *pcn = <float *>_ptr(c_n)
    cdef float *pca = <float *>_ptr(cache)
    cdef float *phq = <float *>_ptr(hq)
    cdef const float *px = <const float *>_ptr(x)
    cdef const float *ph0 = <const float *>_ptr(h0)
    cdef const float *pc0 = <const float *>_ptr(c0)
    cdef const int64_t *pl = <const int64_t *>_ptr(lengths)
    cdef PyThreadState *ts = _gil_off(keep_gil)
    cdef int st = fr_lp_forward(pk, nbytes, py, phn, pcn, pca, phq, px, ph0, pc0, pl, T, B, I, H,
                                act, reverse, nthreads)
    _gil_on(ts)
    return st


def lp_forward(str cell, packed, y, h_n, c_n, cache, hq, x, h0, c0, lengths, int act,
               bint reverse, int nthreads):
    """Whole-sequence reduced-precision forward on packed weights (lp_pack); float32 arrays."""
    if not isinstance(x, np.ndarray) or x.ndim != 3:
        raise ValueError("x must be a 3-D array")
    cdef int64_t T = x.shape[0], B = x.shape[1], I = x.shape[2]
    cdef int64_t G = CELLS[cell].gates
    if not isinstance(packed, np.ndarray) or packed.dtype != np.uint8 or packed.ndim != 1:
        raise TypeError("packed must come from lp_pack")
    if not packed.flags.c_contiguous:
        raise ValueError("packed must be lp_pack's whole array (aligned, not a slice of it)")
    if CELLS[cell].nonlinearities and act != FR_RNN_TANH and act != FR_RNN_RELU:
        raise ValueError("act must be FR_RNN_TANH (0) or FR_RNN_RELU (1)")
    cdef int64_t nbytes = packed.shape[0]
    cdef int64_t H = h_n.shape[1]
    _chk(x, "x", (T, B, I), np.float32, False, False)
    _chk_forward_rest(cell, np.dtype(np.float32), T, B, H, G, y, h_n, c_n, cache, h0, c0, None,
                      None, lengths)
    _chk(hq, "hq", (T, B, H), np.float32, True, True)
    if nthreads < 1:
        raise ValueError("nthreads must be >= 1")
    cdef int st = _lp_run(packed, nbytes, y, h_n, c_n, cache, hq, x, h0, c0, lengths, T, B, I, H,
                          act, reverse, nthreads, False)
    if st == FR_ERR_ARG:  # the arrays are checked above: the packed buffer is not lp_pack's
        raise ValueError(f"{cell}_forward (reduced precision): packed must be lp_pack's whole "
                         "array for these sizes (aligned, not a slice of it, header untouched)")
    _raise(st, f"{cell}_forward (reduced precision)")


def lp_forward_ready(str cell, packed, x, h0, c0, int64_t H, int act, bint reverse,
                     int nthreads):
    """lp_forward's inference of arrays already as the kernels take them, on packed weights
    (lp_pack's, for cell with x's input size and H units): (y, h_n, c_n), or None where any
    argument is not (then nothing ran): x a (T, B, I) float32 ndarray with T, B, I >= 1, h0
    (and the LSTM's c0) (B, H) or None (zeros), as forward_ready takes them."""
    spec = CELLS.get(cell)
    if spec is None or type(x) is not np.ndarray or nthreads < 1 or H < 1:
        return None
    if spec.nonlinearities and act != FR_RNN_TANH and act != FR_RNN_RELU:
        return None
    if type(packed) is not np.ndarray or not _ready(packed, cnp.NPY_UINT8, 1,
                                                      cnp.PyArray_DIMS(<cnp.ndarray>packed)[0],
                                                      0, 0):
        return None
    cdef bint has_c = spec.has_cell_state
    if c0 is not None and not has_c:
        return None
    cdef cnp.ndarray xa = <cnp.ndarray>x
    if cnp.PyArray_NDIM(xa) != 3:
        return None
    cdef int64_t T = cnp.PyArray_DIMS(xa)[0], B = cnp.PyArray_DIMS(xa)[1]
    cdef int64_t I = cnp.PyArray_DIMS(xa)[2]
    if T < 1 or B < 1 or I < 1:
        return None
    if not (_ready(x, cnp.NPY_FLOAT32, 3, T, B, I)
            and (h0 is None or _ready(h0, cnp.NPY_FLOAT32, 2, B, H, 0))
            and (c0 is None or _ready(c0, cnp.NPY_FLOAT32, 2, B, H, 0))):
        return None
    if h0 is None:
        h0 = np.zeros((B, H), np.float32)
    if has_c and c0 is None:
        c0 = np.zeros((B, H), np.float32)
    y = np.empty((T, B, H), np.float32)
    h_n = np.empty((B, H), np.float32)
    c_n = np.empty((B, H), np.float32) if has_c else None
    cdef int st = _lp_run(packed, cnp.PyArray_DIMS(<cnp.ndarray>packed)[0], y, h_n, c_n, None,
                          None, x, h0, c0, None, T, B, I, H, act, reverse, nthreads,
                          T == 1 and 2.0 * B * (I + H) * spec.gates * H < FR_STEP1_TEAM_FLOPS)
    if st == FR_ERR_ARG:  # not lp_pack's buffer for these sizes
        return None
    _raise(st, f"{cell}_forward (reduced precision)")
    return y, h_n, c_n


def round_bf16(src):
    """A new float32 array: src (float32, C-contiguous) rounded to bfloat16."""
    _chk(src, "src", src.shape, np.float32, False, False)
    out = np.empty_like(src)
    cdef float *po = <float *>_ptr(out)
    cdef const float *ps = <const float *>_ptr(src)
    cdef int64_t n = cnp.PyArray_SIZE(src)
    with nogil:
        fr_round_bf16(po, ps, n)
    return out


cdef inline tuple _array_key(object a):
    return (<size_t>cnp.PyArray_DATA(<cnp.ndarray>a), a.shape, a.strides,
            cnp.PyArray_TYPE(<cnp.ndarray>a))


def array_key(a):
    """Which array ``a`` (an ndarray) is: (data pointer, shape, strides, dtype number), built
    without the dict of ``__array_interface__`` (the prepared-weights check runs it per call)."""
    if not isinstance(a, np.ndarray):
        raise TypeError("array_key needs an ndarray")
    return _array_key(a)


def keys_match(arrays, keys):
    """Whether each entry of ``arrays`` (a tuple) is the array its entry of ``keys`` (a tuple of
    the same length) describes: None for None, else an ndarray whose :func:`array_key` equals
    it. Any other object gives False. One call in place of building and comparing the keys
    (the prepared-weights check of every call)."""
    cdef Py_ssize_t i, n = len(arrays)
    if n != len(keys):
        return False
    for i in range(n):
        o = arrays[i]
        k = keys[i]
        if o is None or k is None:
            if o is not k:
                return False
        elif type(o) is not np.ndarray or _array_key(o) != k:
            return False
    return True


def checksum(a):
    """fr_checksum of a C-contiguous array's bytes."""
    if not isinstance(a, np.ndarray) or not a.flags.c_contiguous:
        raise TypeError("checksum needs a C-contiguous ndarray")
    cdef int64_t n = a.nbytes
    cdef const void *p = _ptr(a)
    cdef uint64_t c
    with nogil:
        c = fr_checksum(p, n)
    return c


_check_env_arch()


# ---- streaming: one timestep through a stack of layers ---------------------------------------

from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

_DENSE_ACT = {"linear": FR_ACT_LINEAR, "relu": FR_ACT_RELU, "tanh": FR_ACT_TANH,
              "sigmoid": FR_ACT_SIGMOID, "softmax": FR_ACT_SOFTMAX}
DENSE_ACTIVATIONS = tuple(_DENSE_ACT)

cdef enum:
    _K_CELL = 0
    _K_DENSE = 1
    _K_EMBED = 2

cdef struct _layer:
    int kind
    int cell       # FR_CELL_* for cells
    int act        # RNN non-linearity or dense activation
    int64_t nin    # input width (vocabulary size for an embedding)
    int64_t nout   # output width
    void *packed   # packed weights (embedding: the table)
    int64_t packed_bytes  # their size (the reduced-precision cells' lp_pack buffer)
    void *h        # state (B, O)
    void *c        # LSTM cell state (B, O)
    void *out      # output of this step (B, O): h for cells
    int prec       # cells: FR_PREC_F32, or a reduced precision (packed by lp_pack)
    void *ybuf     # reduced-precision cells: the step's output rows (B, O)


cdef class Stream:
    """Advance a stack of layers one timestep at a time, with weights packed once.

    Parameters
    ----------
    layers : list of tuple
        ``("rnn"|"lstm"|"gru", w_ih, w_hh, b_ih, b_hh, act)`` with PyTorch-layout weights
        (``act`` "tanh"/"relu" for RNN, ignored otherwise), ``("dense", kernel, bias, act)``
        with Keras-layout kernel (I, O) and act in DENSE_ACTIVATIONS, or
        ``("embedding", table)`` (first layer only; inputs are then token ids).
    batch_size : int
    dtype : numpy dtype, float32 or float64
    precision : {"float32", "bfloat16", "bf16", "int8"}
        The recurrent layers' compute precision (reduced ones need float32; Dense layers stay
        float32); a reduced-precision step is the whole-sequence op with T = 1.
    """

    cdef _layer *L
    cdef int n
    cdef int64_t B
    cdef int64_t nr
    cdef int f32
    cdef int embed_first
    cdef int64_t in_width
    cdef object keep        # arrays that own the memory the C structs point to
    cdef object work_arr
    cdef void *work
    cdef readonly object dtype
    cdef object _states     # list of (h, c or None) arrays per recurrent layer
    cdef object last_out    # the last layer's output buffer (B, O)
    cdef readonly str precision
    cdef double step_flops  # a step's flops, all layers (the GIL rule of step)

    def __cinit__(self):
        self.L = NULL

    def __dealloc__(self):
        free(self.L)

    def __init__(self, list layers, int64_t batch_size, dtype, precision="float32"):
        from fastrnn._validate import check_precision
        dt = np.dtype(dtype)
        if dt != np.float32 and dt != np.float64:
            raise TypeError(f"dtype must be float32 or float64, got {dt}")
        self.precision = check_precision(precision)
        if self.precision != "float32" and dt != np.float32:
            raise TypeError(f"precision={self.precision!r} needs dtype float32, got {dt}")
        cdef int prec = _PRECS.get(self.precision, FR_PREC_F32)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not layers:
            raise ValueError("a stream needs at least one layer")
        self.dtype = dt
        self.f32 = dt == np.float32
        self.B = batch_size
        self.n = len(layers)
        self.L = <_layer *>malloc(self.n * sizeof(_layer))
        if self.L == NULL:
            raise MemoryError()
        self.keep = []
        self._states = []
        self.nr = fr_kernel_get_s().nr if self.f32 else fr_kernel_get_d().nr
        self.embed_first = 0
        cdef int64_t work = fr_dense_work_size()
        cdef int64_t prev = -1
        cdef int i
        cdef int64_t I, O, sz
        for i, spec in enumerate(layers):
            # (indexing below is unchecked: boundscheck is off in this module)
            if not isinstance(spec, (tuple, list)) or len(spec) == 0:
                raise ValueError(f"layer {i}: a layer spec must be a non-empty tuple, "
                                 f"got {spec!r}")
            kind = spec[0]
            if kind == "embedding":
                if i != 0:
                    raise ValueError("an embedding can only be the first layer of a stream")
                if len(spec) != 2:
                    raise ValueError(f"layer {i}: an embedding spec is ('embedding', table), "
                                     f"got {len(spec)} items")
                table = np.ascontiguousarray(spec[1], dtype=dt)
                if table.ndim != 2:
                    raise ValueError("embedding table must be 2-D (V, D)")
                self.keep.append(table)
                self.L[i].kind = _K_EMBED
                self.L[i].prec = FR_PREC_F32
                self.L[i].nin = table.shape[0]
                self.L[i].nout = table.shape[1]
                self.L[i].packed = _ptr(table)
                self.L[i].h = NULL
                self.L[i].c = NULL
                out = np.zeros((self.B, table.shape[1]), dtype=dt)
                self.keep.append(out)
                self.L[i].out = _ptr(out)
                self.embed_first = 1
            elif kind in CELLS:
                _, w_ih, w_hh, b_ih, b_hh, act = spec
                cell = CELLS[kind].code
                w_ih = np.ascontiguousarray(w_ih, dtype=dt)
                w_hh = np.ascontiguousarray(w_hh, dtype=dt)
                G = CELLS[kind].gates
                if w_hh.ndim != 2 or w_ih.ndim != 2 or w_hh.shape[0] != G * w_hh.shape[1] \
                        or w_ih.shape[0] != w_hh.shape[0]:
                    raise ValueError(f"layer {i}: {kind} weights have inconsistent shapes "
                                     f"{w_ih.shape}, {w_hh.shape}")
                O = w_hh.shape[1]
                I = w_ih.shape[1]
                b_ih = None if b_ih is None else np.ascontiguousarray(b_ih, dtype=dt)
                b_hh = None if b_hh is None else np.ascontiguousarray(b_hh, dtype=dt)
                for b, nm in ((b_ih, "b_ih"), (b_hh, "b_hh")):
                    if b is not None and b.shape != (G * O,):
                        raise ValueError(f"layer {i}: {nm} must have shape ({G * O},)")
                self.L[i].kind = _K_CELL
                self.L[i].cell = cell
                self.L[i].act = 1 if act == "relu" else 0
                self.L[i].nin = I
                self.L[i].nout = O
                self.L[i].prec = prec
                self.L[i].ybuf = NULL
                if prec != FR_PREC_F32:
                    packed = lp_pack(kind, self.precision, w_ih, w_hh, b_ih, b_hh)
                    ybuf = np.zeros((self.B, O), dtype=dt)
                    self.keep.append(ybuf)
                    self.L[i].ybuf = _ptr(ybuf)
                    st = FR_OK
                    sz = 0
                else:
                    sz = fr_step_packed_size_s(cell, I, O) if self.f32 else \
                        fr_step_packed_size_d(cell, I, O)
                    packed = np.empty(sz, dtype=dt)
                if prec != FR_PREC_F32:
                    pass
                elif self.f32:
                    st = fr_step_pack_s(<float *>_ptr(packed), cell, <float *>_ptr(w_ih),
                                        <float *>_ptr(w_hh), <float *>_ptr(b_ih),
                                        <float *>_ptr(b_hh), I, O)
                else:
                    st = fr_step_pack_d(<double *>_ptr(packed), cell, <double *>_ptr(w_ih),
                                        <double *>_ptr(w_hh), <double *>_ptr(b_ih),
                                        <double *>_ptr(b_hh), I, O)
                _raise(st, "stream pack")
                h = np.zeros((self.B, O), dtype=dt)
                c = np.zeros((self.B, O), dtype=dt) if CELLS[kind].has_cell_state else None
                out = h
                self.keep += [packed, h, c]
                self._states.append((h, c))
                self.L[i].packed = _ptr(packed)
                self.L[i].packed_bytes = packed.nbytes
                self.L[i].h = _ptr(h)
                self.L[i].c = _ptr(c)
                self.L[i].out = _ptr(h)
                sz = fr_step_work_size_s(cell, self.B, O) if self.f32 else \
                    fr_step_work_size_d(cell, self.B, O)
                work = max(work, sz)
                self.step_flops += 2.0 * self.B * (I + O) * G * O
            elif kind == "dense":
                _, kernel, bias, act = spec
                if act not in _DENSE_ACT:
                    raise ValueError(f"layer {i}: dense activation must be one of "
                                     f"{DENSE_ACTIVATIONS}, got {act!r}")
                kernel = np.ascontiguousarray(kernel, dtype=dt)
                if kernel.ndim != 2:
                    raise ValueError(f"layer {i}: dense kernel must be 2-D (I, O)")
                I = kernel.shape[0]
                O = kernel.shape[1]
                bias = None if bias is None else np.ascontiguousarray(bias, dtype=dt)
                if bias is not None and bias.shape != (O,):
                    raise ValueError(f"layer {i}: dense bias must have shape ({O},)")
                sz = fr_dense_packed_size_s(I, O) if self.f32 else fr_dense_packed_size_d(I, O)
                packed = np.empty(sz, dtype=dt)
                if self.f32:
                    fr_dense_pack_s(<float *>_ptr(packed), <float *>_ptr(kernel),
                                    <float *>_ptr(bias), I, O)
                else:
                    fr_dense_pack_d(<double *>_ptr(packed), <double *>_ptr(kernel),
                                    <double *>_ptr(bias), I, O)
                out = np.zeros((self.B, O), dtype=dt)
                self.keep += [packed, out]
                self.L[i].kind = _K_DENSE
                self.step_flops += 2.0 * self.B * I * O
                self.L[i].prec = FR_PREC_F32
                self.L[i].act = _DENSE_ACT[act]
                self.L[i].nin = I
                self.L[i].nout = O
                self.L[i].packed = _ptr(packed)
                self.L[i].h = NULL
                self.L[i].c = NULL
                self.L[i].out = _ptr(out)
            else:
                raise ValueError(f"layer {i}: unknown layer kind {kind!r}")
            if prev >= 0 and self.L[i].kind != _K_EMBED and self.L[i].nin != prev:
                raise ValueError(f"layer {i} expects {self.L[i].nin} inputs but layer {i - 1} "
                                 f"gives {prev}")
            prev = self.L[i].nout
        self.in_width = self.L[0].nin
        self.work_arr = np.empty(work, dtype=dt)
        self.work = _ptr(self.work_arr)
        self.last_out = out if self.L[self.n - 1].kind != _K_CELL else self._states[len(self._states) - 1][0]

    @property
    def batch_size(self):
        return self.B

    @property
    def input_width(self):
        """Features per step (or the vocabulary size when the first layer is an embedding)."""
        return self.in_width

    @property
    def takes_ids(self):
        """True when inputs are token ids (the first layer is an embedding)."""
        return bool(self.embed_first)

    def states(self):
        """The live state arrays: a list of (h, c or None) per recurrent layer."""
        return list(self._states)

    def reset(self):
        """Zero every recurrent state."""
        for h, c in self._states:
            h[...] = 0
            if c is not None:
                c[...] = 0

    cdef int _check_arch(self) except -1:
        cdef int64_t nr = fr_kernel_get_s().nr if self.f32 else fr_kernel_get_d().nr
        if nr != self.nr:
            raise RuntimeError("the SIMD path changed since this stream was opened: open a new "
                               "stream")
        return 0

    cdef object _ids(self, x, tuple shape):
        """Token ids as a C-contiguous int64 array of `shape`, each in [0, V)."""
        ids = np.asarray(x)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"x must hold integer token ids, got dtype {ids.dtype}")
        last = shape[len(shape) - 1]
        if ids.size != int(np.prod(shape)) or (ids.ndim > 1 and ids.shape[ids.ndim - 1] != last):
            raise ValueError(f"x must hold token ids of shape {shape}, got shape {ids.shape}")
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(shape)
        V = self.L[0].nin
        if ids.size:
            lo, hi = ids.min(), ids.max()
            if lo < 0 or hi >= V:
                bad = lo if lo < 0 else hi
                raise ValueError(f"token id {bad} out of range [0, {V})")
        return ids

    cdef object _as_input(self, x, int64_t steps=1):
        """Validate `steps` steps of input; return a C-contiguous array the kernels can read."""
        cdef int64_t B = self.B
        cdef cnp.ndarray ids
        cdef int64_t k, v, V
        if self.embed_first:
            return self._ids(x, (B,))
        xin = x
        if not (isinstance(xin, np.ndarray) and (<cnp.ndarray>xin).dtype is self.dtype
                and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>xin)):
            xin = np.asarray(xin)
            if xin.dtype != self.dtype:
                if xin.dtype.kind not in "fiu" or (xin.dtype.kind == "f" and
                                                   xin.dtype.itemsize > self.dtype.itemsize):
                    raise TypeError(f"x must be {self.dtype} (or losslessly convertible), "
                                    f"got {xin.dtype}")
                xin = xin.astype(self.dtype)
            xin = np.ascontiguousarray(xin)
        if cnp.PyArray_SIZE(<cnp.ndarray>xin) != steps * B * self.in_width:
            raise ValueError(f"x must have shape ({B}, {self.in_width}), got {xin.shape}")
        return xin

    def step(self, x):
        """Advance one timestep; return the last layer's output, shape (B, O).

        ``x`` is (B, I) features (or (B,) token ids when the first layer is an embedding).
        """
        self._check_arch()
        xin = self._as_input(x)
        cdef const void *px = _ptr(xin)
        cdef PyThreadState *ts = _gil_off(self.step_flops < FR_STEP1_TEAM_FLOPS)
        cdef int st = self._run(px)
        _gil_on(ts)
        _raise(st, "stream step")
        return self.last_out.copy()

    def run(self, xs):
        """Advance len(xs) timesteps; xs is (T, B, I) (or (T, B) token ids); returns (T, B, O)."""
        self._check_arch()
        cdef int64_t T, t, B = self.B
        cdef int64_t O = self.L[self.n - 1].nout
        cdef int64_t step_in
        cdef Py_ssize_t esz = 4 if self.f32 else 8
        xs = np.asarray(xs)
        if self.embed_first:
            if xs.ndim != 2:
                raise ValueError(f"xs must be (T, {B}) token ids, got shape {xs.shape}")
            xin = self._ids(xs, (xs.shape[0], B))
            step_in = B
            esz = 8
        else:
            if xs.ndim != 3 or xs.shape[1] != B or xs.shape[2] != self.in_width:
                raise ValueError(f"xs must have shape (T, {B}, {self.in_width}), got {xs.shape}")
            xin = self._as_input(xs, xs.shape[0]) if xs.shape[0] else xs
            step_in = B * self.in_width
        T = xs.shape[0]
        out = np.empty((T, B, O), dtype=self.dtype)
        if T == 0:
            return out
        cdef const char *px = <const char *>_ptr(xin)
        cdef char *po = <char *>_ptr(out)
        cdef char *plast = <char *>_ptr(self.last_out)
        cdef int st = FR_OK
        cdef Py_ssize_t osz = 4 if self.f32 else 8
        with nogil:
            for t in range(T):
                st = self._run(px + t * step_in * esz)
                if st != FR_OK:
                    break
                memcpy(po + t * B * O * osz, plast, B * O * osz)
        _raise(st, "stream run")
        return out

    cdef int _run(self, const void *px) noexcept nogil:
        cdef int i, st = FR_OK
        cdef const void *inp = px
        cdef int64_t k, D
        for i in range(self.n):  # noqa
            if self.L[i].kind == _K_EMBED:
                D = self.L[i].nout
                for k in range(self.B):
                    if self.f32:
                        memcpy(<float *>self.L[i].out + k * D,
                               <float *>self.L[i].packed + (<int64_t *>px)[k] * D,
                               D * sizeof(float))
                    else:
                        memcpy(<double *>self.L[i].out + k * D,
                               <double *>self.L[i].packed + (<int64_t *>px)[k] * D,
                               D * sizeof(double))
            elif self.L[i].kind == _K_CELL and self.L[i].prec != FR_PREC_F32:
                st = fr_lp_forward(self.L[i].packed, self.L[i].packed_bytes,
                                   <float *>self.L[i].ybuf,
                                   <float *>self.L[i].h, <float *>self.L[i].c, NULL, NULL,
                                   <const float *>inp, <const float *>self.L[i].h,
                                   <const float *>self.L[i].c, NULL, 1, self.B, self.L[i].nin,
                                   self.L[i].nout, self.L[i].act, 0, 1)
            elif self.L[i].kind == _K_CELL:
                if self.f32:
                    st = fr_step_s(<float *>self.L[i].h, <float *>self.L[i].c, <float *>self.work,
                                   <float *>self.L[i].packed, self.L[i].cell, self.L[i].act,
                                   <float *>inp, self.B, self.L[i].nin, self.L[i].nout)
                else:
                    st = fr_step_d(<double *>self.L[i].h, <double *>self.L[i].c,
                                   <double *>self.work, <double *>self.L[i].packed,
                                   self.L[i].cell, self.L[i].act, <double *>inp, self.B,
                                   self.L[i].nin, self.L[i].nout)
            else:
                if self.f32:
                    st = fr_dense_step_s(<float *>self.L[i].out, <float *>self.work,
                                         <float *>self.L[i].packed, self.L[i].act, <float *>inp,
                                         self.B, self.L[i].nin, self.L[i].nout)
                else:
                    st = fr_dense_step_d(<double *>self.L[i].out, <double *>self.work,
                                         <double *>self.L[i].packed, self.L[i].act,
                                         <double *>inp, self.B, self.L[i].nin, self.L[i].nout)
            if st != FR_OK:
                return st
            inp = self.L[i].out
        return st
