/* Loss curves: reading a run's metrics.jsonl and drawing runs to a PNG.
 *
 * metrics.jsonl holds one flat JSON object per line, e.g.
 *   {"step":10,"tokens":20480,"loss":3.21,"lr":0.0006,...,"val_loss":3.3}
 * Only "tokens", "loss" and "val_loss" are used; other keys are ignored, and
 * so are lines that carry neither loss. Drawing needs cairo (CLLM_HAVE_CAIRO
 * in cllm/build_config.h); reading does not. */
#ifndef CLLM_REPORT_PLOT_H
#define CLLM_REPORT_PLOT_H

#include "cllm/base/common.h"

typedef struct {
    double tokens, loss;
} cllm_plot_point;

typedef struct {
    cllm_plot_point *train; /* in file order */
    int n_train;
    cllm_plot_point *val;
    int n_val;
} cllm_loss_curve;

/* Reads a metrics.jsonl file. A malformed line is CLLM_ERR_INPUT
 * "<path>:<line>: <what>"; a missing file is CLLM_ERR_INPUT too. Non-finite
 * losses (nan, inf, null) are skipped. On error *out is left empty. */
cllm_status cllm_loss_curve_read(const char *path, cllm_loss_curve *out);
void cllm_loss_curve_free(cllm_loss_curve *c);

/* Default image size of cllm_plot_runs. */
enum { CLLM_PLOT_WIDTH = 1000, CLLM_PLOT_HEIGHT = 600 };

/* Draws train loss (lines) and validation loss (dashed lines with markers)
 * against tokens for each run folder (its metrics.jsonl; a path to a .jsonl
 * file is accepted too), overlaid in different colours with the folder names
 * in the legend, and writes a PNG crash-safely (temp file + rename).
 * Built without cairo: CLLM_ERR_INPUT saying which package to install. */
cllm_status cllm_plot_runs(const char *const *dirs, int n_dirs, const char *png_path, const char *title);

/* As cllm_plot_runs with an explicit size in pixels (each 200..10000). */
cllm_status cllm_plot_runs_sized(const char *const *dirs, int n_dirs, const char *png_path, const char *title,
                                 int width, int height);

#endif
