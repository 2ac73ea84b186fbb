#include "cllm/base/cpu.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define CLLM_X86 1
#else
#define CLLM_X86 0
#endif

static cllm_cpu_features features;
static int features_ready;

#if CLLM_X86
/* XGETBV without needing -mxsave: the OS tells which register states it saves
 * on context switch; using YMM/ZMM the OS does not save would corrupt them. */
static unsigned long long read_xcr0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

static void detect(cllm_cpu_features *f) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    f->sse42 = (c >> 20) & 1;
    int osxsave = (c >> 27) & 1;
    int cpu_avx = (c >> 28) & 1;
    int cpu_fma = (c >> 12) & 1;
    unsigned long long xcr0 = osxsave ? read_xcr0() : 0;
    int os_ymm = (xcr0 & 0x6) == 0x6;          /* SSE + AVX state */
    int os_zmm = (xcr0 & 0xe6) == 0xe6;        /* + opmask, ZMM_Hi256, Hi16_ZMM */
    f->avx = cpu_avx && os_ymm;
    f->fma = cpu_fma && os_ymm;
    if ((unsigned int)__get_cpuid_max(0, NULL) >= 7u) {
        __cpuid_count(7, 0, a, b, c, d);
        f->avx2 = ((b >> 5) & 1) && os_ymm;
        f->avx512f = ((b >> 16) & 1) && os_zmm;
        int os_tiles = (xcr0 & 0x60000) == 0x60000; /* XTILECFG + XTILEDATA */
        f->amx_bf16 = ((d >> 24) & 1) && ((d >> 22) & 1) && os_tiles;
        unsigned int max_subleaf = a;
        if (max_subleaf >= 1u) {
            /* Leaf 7 subleaf 1, EAX bit 5: AVX512_BF16. It uses the same
             * ZMM/opmask state as AVX-512F, so the same OS check applies. */
            __cpuid_count(7, 1, a, b, c, d);
            f->avx512bf16 = ((a >> 5) & 1) && f->avx512f;
        }
    }
    unsigned int brand[12];
    if ((unsigned int)__get_cpuid_max(0x80000000u, NULL) >= 0x80000004u) {
        for (unsigned int i = 0; i < 3; i++)
            __get_cpuid(0x80000002 + i, &brand[4 * i], &brand[4 * i + 1], &brand[4 * i + 2], &brand[4 * i + 3]);
        memcpy(f->model, brand, 48);
        f->model[48] = '\0';
        /* Brand strings are padded with leading spaces on some CPUs. */
        size_t lead = strspn(f->model, " ");
        memmove(f->model, f->model + lead, strlen(f->model + lead) + 1);
    }
}
#else
static void detect(cllm_cpu_features *f) { (void)f; }
#endif

const cllm_cpu_features *cllm_cpu(void) {
    if (!features_ready) {
        detect(&features);
        features_ready = 1;
    }
    return &features;
}
