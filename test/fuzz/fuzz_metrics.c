/* The metrics.jsonl reader (cllm_loss_curve_read) on the fuzz input as the
 * file: an error leaves nothing allocated, and accepted points are finite. */
#include <math.h>

#include "cllm/report/plot.h"
#include "fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write(fuzz_scratch_dir(), "metrics.jsonl", data, size);
    cllm_loss_curve c;
    if (cllm_loss_curve_read(path, &c) == CLLM_OK) {
        for (int i = 0; i < c.n_train; i++) FUZZ_ASSERT(isfinite(c.train[i].tokens) && isfinite(c.train[i].loss), "finite train points");
        for (int i = 0; i < c.n_val; i++) FUZZ_ASSERT(isfinite(c.val[i].tokens) && isfinite(c.val[i].loss), "finite val points");
        cllm_loss_curve_free(&c);
    } else {
        FUZZ_ASSERT(c.n_train == 0 && c.n_val == 0 && !c.train && !c.val, "nothing left after an error");
    }
    return 0;
}
