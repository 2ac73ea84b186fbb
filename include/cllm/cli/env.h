/* Validation of the environment variables cllm reads, and typed getters.
 *
 * OpenMP runtimes disagree on malformed values (libomp asserts on
 * OMP_NUM_THREADS=abc, libgomp silently falls back), so cllm checks
 * OMP_NUM_THREADS, OMP_SCHEDULE, OMP_PROC_BIND and OMP_PLACES itself before
 * the runtime is first used, and every CLLM_* variable too: an unknown
 * CLLM_* name is an error, because a typo silently ignored is worse.
 *
 * The getters below read the variable each time they are called (cheap, no
 * allocation) and fall back to the default when it is unset. They assume
 * cllm_env_check has accepted the environment; a value it would reject also
 * yields the default. */
#ifndef CLLM_CLI_ENV_H
#define CLLM_CLI_ENV_H

#include "cllm/base/common.h"
#include "cllm/kernels/kernels.h"

/* Checks every variable; on the first bad one returns CLLM_ERR_INPUT with a
 * one-line message naming it. Must run before any OpenMP call. */
cllm_status cllm_env_check(void);

/* The OpenMP part of cllm_env_check for the executable's .preinit_array
 * (see main.c): libgomp reads OMP_* in its constructor, before main, and
 * prints its own complaint; this runs earlier still, so a bad value gives
 * exactly one line ("cllm: ...") and exit status 2. */
void cllm_env_preinit(int argc, char **argv, char **envp);

/* cllm's defaults for the OpenMP runtime: when OMP_SCHEDULE is unset, the
 * workers' schedule(runtime) becomes dynamic,1 whatever the runtime's own
 * default. Call once, right after cllm_env_check succeeded. */
void cllm_env_apply_openmp_defaults(void);

/* The documented CLLM_* variables, NULL-terminated, for `cllm info`. */
extern const char *const cllm_env_documented[];

/* Validates one variable's value as cllm_env_check would (value non-NULL).
 * Unknown CLLM_* names are errors; names cllm does not read are accepted. */
cllm_status cllm_env_validate(const char *name, const char *value);

/* CLLM_SIMD: auto|scalar|omp|avx2|avx512. Default: best the CPU supports. */
cllm_simd cllm_env_simd(void);
/* CLLM_STREAMING: 1|0|on|off. Default 1 (stream the gradient reduction). */
int cllm_env_streaming(void);
/* CLLM_SEGMENTS: 1..64 gradient segments per thread. Default 1. */
int cllm_env_segments(void);
/* CLLM_GRAD_WINDOW: 0..4096 extra gradient buffers; 0 = engine default. */
int cllm_env_grad_window(void);
/* CLLM_PROGRESS: "auto", "line", "plain" or "off". Default "auto". */
const char *cllm_env_progress(void);
/* CLLM_PEAK_GFLOPS: per-core FMA peak for MFU; 0 = measure it. */
double cllm_env_peak_gflops(void);
/* The team shape asked for: CLLM_TEAM=K gives K threads per team and
 * omp_get_max_threads() / K teams (at least one); otherwise a nested
 * OMP_NUM_THREADS=A,B list gives A teams of B threads. Both 0 when neither
 * is set or CLLM_TEAM=auto: the run chooses (cllm_step_team_default). */
void cllm_env_team(int *teams, int *team_threads);
/* COLUMNS: the terminal width a progress line falls back on when the
 * terminal does not say (1..100000); 0 when unset or not a number. */
int cllm_env_columns(void);

/* The job size an MPI launcher announced to this process (Open MPI's
 * OMPI_COMM_WORLD_SIZE, PMI_SIZE from MPICH's Hydra); 0 when started alone. */
int cllm_env_launcher_ranks(void);

#endif
