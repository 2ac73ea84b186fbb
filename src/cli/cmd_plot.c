/* `cllm plot DIR... -o FILE.png`: overlay the loss curves of runs. */
#include <stdio.h>
#include <string.h>

#include "cllm/base/build_config.h"
#include "cllm/cli/commands.h"
#include "cllm/cli/flags.h"
#include "cllm/report/plot.h"

int cllm_cmd_plot(int argc, char **argv) {
    const char *out = NULL, *title = "loss";
    int width = CLLM_PLOT_WIDTH, height = CLLM_PLOT_HEIGHT;
    const cllm_flag flags[] = {
        {"out", CLLM_FLAG_STRING, &out, "FILE.png", "PNG to write; required", 1, 0, NULL},
        {"title", CLLM_FLAG_STRING, &title, "TEXT", "title above the plot (default: loss)", 1, 0, NULL},
        {"width", CLLM_FLAG_INT, &width, "PX", "image width in pixels (default 1000)", 200, 10000, NULL},
        {"height", CLLM_FLAG_INT, &height, "PX", "image height in pixels (default 600)", 200, 10000, NULL},
    };
    const cllm_command_spec spec = {
        "plot", "DIR... -o FILE.png",
        "Draws train loss (solid) and validation loss (dashed, with markers) against tokens\n"
        "from each run folder's metrics.jsonl, overlaid in different colours and named by folder.\n"
        "Needs cairo at build time (libcairo2-dev).",
        flags, (int)(sizeof flags / sizeof flags[0]), 1, -1};
    char *positional[argc > 0 ? argc : 1]; /* the parser needs one slot per argument */
    int n_runs = 0;
    int rc = cllm_flags_exit_code(cllm_flags_parse(&spec, argc, argv, positional, &n_runs));
    if (rc >= 0) return rc;
    if (!out) {
        fprintf(stderr, "cllm plot: missing -o FILE.png (see cllm plot --help)\n");
        return 2;
    }
    rc = cllm_flags_check_output_file("plot", "-o", out);
    if (rc >= 0) return rc;
    /* A stop request while the plot is drawn: the PNG is not committed (its
     * temporary is removed, an older FILE.png stays as it was), exit 130. */
    cllm_stop_catch(1);
    cllm_status st = cllm_plot_runs_sized((const char *const *)positional, n_runs, out, title, width, height);
    cllm_stop_release();
    if (st != CLLM_OK) {
        fprintf(stderr, "cllm plot: %s\n", cllm_last_error());
        return (int)st;
    }
    return 0;
}
