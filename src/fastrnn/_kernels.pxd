# Declarations of the C kernels: everything comes from csrc/fastrnn.h and csrc/scratch.h,
# nothing is declared twice.
from libc.stdint cimport int64_t, uint64_t

cdef extern from "fastrnn.h" nogil:
    const double FR_STEP1_TEAM_FLOPS
    enum:
        FR_OK
        FR_ERR_ARG
        FR_ERR_NOMEM
        FR_ERR_ARCH
        FR_ARCH_GENERIC
        FR_ARCH_AVX2
        FR_ARCH_AVX512
        FR_ARCH_COUNT
        FR_RNN_TANH
        FR_RNN_RELU

    ctypedef void (*fr_ukr_s_fn)(int64_t m, int64_t K, const float *A, int64_t lda,
                                 const float *Bp, float *C, int64_t ldc, int accumulate)
    ctypedef void (*fr_ukr_d_fn)(int64_t m, int64_t K, const double *A, int64_t lda,
                                 const double *Bp, double *C, int64_t ldc, int accumulate)
    ctypedef void (*fr_ukr_bias_s_fn)(int64_t m, int64_t K, const float *A, int64_t lda,
                                      const float *Bp, const float *bias, float *C, int64_t ldc)
    ctypedef void (*fr_ukr_bias_d_fn)(int64_t m, int64_t K, const double *A, int64_t lda,
                                      const double *Bp, const double *bias, double *C,
                                      int64_t ldc)
    ctypedef struct fr_kernel_s:
        int mr
        int nr
        fr_ukr_s_fn ukr
        fr_ukr_s_fn ukr_half
        fr_ukr_s_fn ukr_pair
        fr_ukr_bias_s_fn ukr_bias
        fr_ukr_bias_s_fn ukr_bias_half
    ctypedef struct fr_kernel_d:
        int mr
        int nr
        fr_ukr_d_fn ukr
        fr_ukr_d_fn ukr_half
        fr_ukr_d_fn ukr_pair
        fr_ukr_bias_d_fn ukr_bias
        fr_ukr_bias_d_fn ukr_bias_half

    int fr_cpu_supports(int arch)
    int fr_best_arch()
    int fr_get_arch()
    int fr_arch_env_error()
    int fr_set_arch(int arch)
    const char *fr_arch_name(int arch)
    int fr_has_openmp()
    int fr_set_batch_groups(int n)
    int fr_set_shared_rows(int k)
    int64_t fr_shared_passes()
    int fr_set_stream_cache_bytes(int64_t n)
    int fr_set_team_threads(int n)
    int fr_set_solo_step(int64_t s)
    int64_t fr_solo_passes()
    int64_t fr_measured_passes()
    int64_t fr_step1_passes()
    int64_t fr_prepacked_reads()
    int fr_prepack_read(int G, int64_t H, int64_t esize, int nthreads)
    int64_t fr_step1_team_passes()
    int64_t fr_lp_step1_passes()
    int64_t fr_lp_step1_team_passes()
    int fr_omp_max_threads()
    int fr_fork_guard_install()
    int fr_fork_pool_released()
    const fr_kernel_s *fr_kernel_get_s()
    const fr_kernel_d *fr_kernel_get_d()
    const fr_kernel_s *fr_kernel_for_arch_s(int arch)

    int fr_scatter_add_rows_s(float *dst, int64_t V, int64_t n, const float *src,
                              const int64_t *idx, int64_t R, int nthreads)
    int fr_scatter_add_rows_d(double *dst, int64_t V, int64_t n, const double *src,
                              const int64_t *idx, int64_t R, int nthreads)
    int fr_adam_update_s(float *w, const float *g, float *m, float *v, int64_t n, float c1,
                         float c2, float alpha, float eps, int nthreads)
    int fr_adam_update_d(double *w, const double *g, double *m, double *v, int64_t n, double c1,
                         double c2, double alpha, double eps, int nthreads)
    int fr_gemm_s(int transa, int transb, int64_t M, int64_t N, int64_t K, const float *A,
                  int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                  int nthreads)
    int fr_gemm_bf16(int transa, int transb, int64_t M, int64_t N, int64_t K, const float *A,
                     int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                     int nthreads)
    int fr_gemm_d(int transa, int transb, int64_t M, int64_t N, int64_t K, const double *A,
                  int64_t lda, const double *B, int64_t ldb, double beta, double *C, int64_t ldc,
                  int nthreads)
    int fr_gemm_pair_s(int transa, int64_t M, int64_t K, const float *A, int64_t lda, int64_t N1,
                       const float *B1, int64_t ldb1, float *C1, int64_t ldc1, int64_t N2,
                       const float *B2, int64_t ldb2, float *C2, int64_t ldc2, float beta,
                       int nthreads)
    int fr_gemm_pair_d(int transa, int64_t M, int64_t K, const double *A, int64_t lda,
                       int64_t N1, const double *B1, int64_t ldb1, double *C1, int64_t ldc1,
                       int64_t N2, const double *B2, int64_t ldb2, double *C2, int64_t ldc2,
                       double beta, int nthreads)
    void fr_sigmoid_s(float *y, const float *x, int64_t n)
    void fr_sigmoid_d(double *y, const double *x, int64_t n)
    void fr_tanh_s(float *y, const float *x, int64_t n)
    void fr_tanh_d(double *y, const double *x, int64_t n)

    int fr_cell_gates(int cell)
    int64_t fr_cell_cache_size(int cell, int64_t T, int64_t B, int64_t H)
    int fr_cell_forward_s(int cell, float *y, float *h_n, float *c_n, float *cache,
                          const float *x, const float *h0, const float *c0, const float *w_ih,
                          const float *w_hh, const float *b_ih, const float *b_hh,
                          const int64_t *lengths, int64_t T, int64_t B, int64_t I, int64_t H,
                          int act, int reverse, int nthreads)
    int fr_cell_forward_d(int cell, double *y, double *h_n, double *c_n, double *cache,
                          const double *x, const double *h0, const double *c0,
                          const double *w_ih, const double *w_hh, const double *b_ih,
                          const double *b_hh, const int64_t *lengths, int64_t T, int64_t B,
                          int64_t I, int64_t H, int act, int reverse, int nthreads)
    int64_t fr_cell_prepack_bytes_s(int cell, int64_t I, int64_t H)
    int64_t fr_cell_prepack_bytes_d(int cell, int64_t I, int64_t H)
    int fr_cell_prepack_s(void *packed, int cell, const float *w_ih, const float *w_hh,
                          const float *b_ih, const float *b_hh, int64_t I, int64_t H)
    int fr_cell_prepack_d(void *packed, int cell, const double *w_ih, const double *w_hh,
                          const double *b_ih, const double *b_hh, int64_t I, int64_t H)
    int fr_cell_forward_prepacked_s(int cell, float *y, float *h_n, float *c_n, float *cache,
                                    const float *x, const float *h0, const float *c0,
                                    const float *w_ih, const float *w_hh, const float *b_ih,
                                    const float *b_hh, const int64_t *lengths, int64_t T,
                                    int64_t B, int64_t I, int64_t H, int act, int reverse,
                                    int nthreads, const void *packed, int64_t bytes)
    int fr_cell_forward_prepacked_d(int cell, double *y, double *h_n, double *c_n,
                                    double *cache, const double *x, const double *h0,
                                    const double *c0, const double *w_ih, const double *w_hh,
                                    const double *b_ih, const double *b_hh,
                                    const int64_t *lengths, int64_t T, int64_t B, int64_t I,
                                    int64_t H, int act, int reverse, int nthreads,
                                    const void *packed, int64_t bytes)
    int fr_cell_backward_s(int cell, float *dx, float *dh0, float *dc0, float *dw_ih,
                           float *dw_hh, float *db_ih, float *db_hh, const float *cache,
                           const float *x, const float *w_ih, const float *w_hh, const float *dy,
                           const float *dh_n, const float *dc_n, const int64_t *lengths,
                           int64_t T, int64_t B, int64_t I, int64_t H, int act, int reverse,
                           int nthreads)
    int fr_cell_backward_d(int cell, double *dx, double *dh0, double *dc0, double *dw_ih,
                           double *dw_hh, double *db_ih, double *db_hh, const double *cache,
                           const double *x, const double *w_ih, const double *w_hh,
                           const double *dy, const double *dh_n, const double *dc_n,
                           const int64_t *lengths, int64_t T, int64_t B, int64_t I, int64_t H,
                           int act, int reverse, int nthreads)
    int64_t fr_lstmp_cache_size(int64_t T, int64_t B, int64_t H, int64_t P)
    int fr_lstmp_forward_s(float *y, float *h_n, float *c_n, float *cache, const float *x,
                           const float *h0, const float *c0, const float *w_ih,
                           const float *w_hh, const float *w_hr, const float *b_ih,
                           const float *b_hh, const int64_t *lengths, int64_t T, int64_t B,
                           int64_t I, int64_t H, int64_t P, int reverse, int nthreads)
    int fr_lstmp_forward_d(double *y, double *h_n, double *c_n, double *cache, const double *x,
                           const double *h0, const double *c0, const double *w_ih,
                           const double *w_hh, const double *w_hr, const double *b_ih,
                           const double *b_hh, const int64_t *lengths, int64_t T, int64_t B,
                           int64_t I, int64_t H, int64_t P, int reverse, int nthreads)
    int fr_lstmp_backward_s(float *dx, float *dh0, float *dc0, float *dw_ih, float *dw_hh,
                            float *dw_hr, float *db_ih, float *db_hh, const float *cache,
                            const float *x, const float *w_ih, const float *w_hh,
                            const float *w_hr, const float *dy, const float *dh_n,
                            const float *dc_n, const int64_t *lengths, int64_t T, int64_t B,
                            int64_t I, int64_t H, int64_t P, int reverse, int nthreads)
    int fr_lstmp_backward_d(double *dx, double *dh0, double *dc0, double *dw_ih, double *dw_hh,
                            double *dw_hr, double *db_ih, double *db_hh, const double *cache,
                            const double *x, const double *w_ih, const double *w_hh,
                            const double *w_hr, const double *dy, const double *dh_n,
                            const double *dc_n, const int64_t *lengths, int64_t T, int64_t B,
                            int64_t I, int64_t H, int64_t P, int reverse, int nthreads)
    int fr_cell_forward_rows_s(int cell, float *y, float *h_n, float *c_n, float *cache,
                               const float *table, int64_t V, const int64_t *ids,
                               const float *h0, const float *c0, const float *w_hh,
                               const float *b_ih, const float *b_hh, const int64_t *lengths,
                               int64_t T, int64_t B, int64_t H, int act, int reverse,
                               int nthreads)
    int fr_cell_forward_rows_d(int cell, double *y, double *h_n, double *c_n, double *cache,
                               const double *table, int64_t V, const int64_t *ids,
                               const double *h0, const double *c0, const double *w_hh,
                               const double *b_ih, const double *b_hh, const int64_t *lengths,
                               int64_t T, int64_t B, int64_t H, int act, int reverse,
                               int nthreads)

    enum:
        FR_CELL_RNN
        FR_CELL_LSTM
        FR_CELL_GRU
        FR_ACT_LINEAR
        FR_ACT_RELU
        FR_ACT_TANH
        FR_ACT_SIGMOID
        FR_ACT_SOFTMAX

    int64_t fr_step_packed_size_s(int cell, int64_t I, int64_t H)
    int64_t fr_step_packed_size_d(int cell, int64_t I, int64_t H)
    int64_t fr_step_work_size_s(int cell, int64_t B, int64_t H)
    int64_t fr_step_work_size_d(int cell, int64_t B, int64_t H)
    int fr_step_pack_s(float *packed, int cell, const float *w_ih, const float *w_hh,
                       const float *b_ih, const float *b_hh, int64_t I, int64_t H)
    int fr_step_pack_d(double *packed, int cell, const double *w_ih, const double *w_hh,
                       const double *b_ih, const double *b_hh, int64_t I, int64_t H)
    int fr_step_s(float *h, float *c, float *work, const float *packed, int cell, int act,
                  const float *x, int64_t B, int64_t I, int64_t H)
    int fr_step_d(double *h, double *c, double *work, const double *packed, int cell, int act,
                  const double *x, int64_t B, int64_t I, int64_t H)
    int64_t fr_dense_packed_size_s(int64_t I, int64_t O)
    int64_t fr_dense_packed_size_d(int64_t I, int64_t O)
    void fr_dense_pack_s(float *packed, const float *kernel, const float *bias, int64_t I,
                         int64_t O)
    void fr_dense_pack_d(double *packed, const double *kernel, const double *bias, int64_t I,
                         int64_t O)
    int fr_dense_step_s(float *y, float *work, const float *packed, int act, const float *x,
                        int64_t B, int64_t I, int64_t O)
    int fr_dense_step_d(double *y, double *work, const double *packed, int act, const double *x,
                        int64_t B, int64_t I, int64_t O)
    int64_t fr_dense_work_size()

    enum:
        FR_PREC_F32
        FR_PREC_BF16
        FR_PREC_INT8
        FR_CPU_AVX512_BF16
        FR_CPU_AVX512_VNNI
        FR_CPU_AVX_VNNI
    int fr_cpu_has_lowp(int feature)
    const char *fr_lowp_path(int prec)
    int fr_lp_set_amx(int on)
    int fr_lp_set_small_rows(int rows)
    const char *fr_lowp_rows_path(int prec, int64_t rows, double row_macs)
    int fr_lp_set_vnni(int on)
    int64_t fr_lp_packed_bytes(int cell, int prec, int identity, int64_t I, int64_t H)
    int fr_lp_pack(void *packed, int cell, int prec, const float *w_ih, const float *w_hh,
                   const float *b_ih, const float *b_hh, int64_t I, int64_t H)
    int fr_lp_forward(const void *packed, int64_t bytes, float *y, float *h_n, float *c_n,
                      float *cache, float *hq, const float *x, const float *h0,
                      const float *c0, const int64_t *lengths, int64_t T, int64_t B, int64_t I,
                      int64_t H, int act, int reverse, int nthreads)
    int fr_cell_backward_hq_s(int cell, float *dx, float *dh0, float *dc0, float *dw_ih,
                              float *dw_hh, float *db_ih, float *db_hh, const float *cache,
                              const float *hq, const float *x, const float *w_ih,
                              const float *w_hh, const float *dy, const float *dh_n,
                              const float *dc_n, const int64_t *lengths, int64_t T, int64_t B,
                              int64_t I, int64_t H, int act, int reverse, int nthreads)
    void fr_round_bf16(float *dst, const float *src, int64_t n)
    uint64_t fr_checksum(const void *p, int64_t n)

cdef extern from "team_load.h" nogil:
    void fr_load_stats(int64_t *wake_ns, int64_t *ns_per_mflop, int *inflight, int *contended,
                       int64_t *waited_ns)
    int fr_load_others_runnable()
    int64_t fr_load_cuts()
    int64_t fr_load_moves()
    void fr_load_force_moves(int on)
    int fr_load_probe_workers(int nt)
    int fr_load_probe_move()
    int fr_load_free_rule(int want, int ncpu, int running, int own)
    int fr_load_shared_rule(int inflight, int64_t t_enter, int64_t shared)
    int fr_load_warm_rule(int64_t t_enter, int64_t team, int64_t region)
    int fr_load_share_rule(int before, int nt, double flops, double serial_ns, int idle,
                           double wake_ns, int lost)
    int fr_load_share_lost_rule(int64_t mine, int64_t n, int64_t busy_ns, int64_t wait_ns)
    int64_t fr_load_region_end_ns()
    int fr_load_wait_bucket(int64_t *full, int64_t start, int64_t now, int64_t wait_ns)

cdef extern from "recurrence.h" nogil:
    int fr_rec_batch_groups(int nt, int64_t B, int64_t mr, int64_t njb, int64_t wbytes, int cut)
    int fr_rec_shared_chunks(int nt, int64_t B, int64_t mr, int64_t wbytes)

cdef extern from "fastrnn.h" nogil:
    int64_t fr_l2_bytes()

cdef extern from "team_tune.h" nogil:
    ctypedef struct fr_tune_ticket:
        int slot
        int alt
        uint64_t key
    int fr_tune_groups(fr_tune_ticket *t, uint64_t key, int rule, int alternative, int explore)
    void fr_tune_report(const fr_tune_ticket *t, double ns_per_step, int undisturbed)
    void fr_tune_set(int on)
    int fr_tune_decision(uint64_t key)

cdef extern from "scratch.h" nogil:
    void *fr_scratch_alloc(size_t nbytes)
    void fr_scratch_free(void *p)
    size_t fr_scratch_kept()
    void fr_scratch_release()
