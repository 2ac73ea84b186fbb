/* The plot renderer at 200x200 on the fuzz input as metrics.jsonl: any
 * readable file plots (no endless tick loop, no drawing error) or is refused
 * as bad input, never an internal error. Needs cairo; without it the target
 * only checks that the refusal is bad input. */
#include <stdio.h>

#include "cllm/report/plot.h"
#include "fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *dir = fuzz_scratch_dir();
    const char *metrics = fuzz_write(dir, "metrics.jsonl", data, size);
    char metrics_path[4096];
    snprintf(metrics_path, sizeof metrics_path, "%s", metrics);
    const char *png = fuzz_write(dir, "plot.png", NULL, 0);
    char png_path[4096];
    snprintf(png_path, sizeof png_path, "%s", png);
    const char *runs[] = {metrics_path};
    cllm_status st = cllm_plot_runs_sized(runs, 1, png_path, "fuzz", 200, 200);
    FUZZ_ASSERT(st == CLLM_OK || st == CLLM_ERR_INPUT, cllm_last_error());
    return 0;
}
