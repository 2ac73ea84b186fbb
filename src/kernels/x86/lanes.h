/* Private to the x86 kernels. */
#ifndef CLLM_KERNELS_X86_LANES_H
#define CLLM_KERNELS_X86_LANES_H

/* Bits of the first n of 16 vector lanes (n <= 0: none, n >= 16: all), the
 * AVX-512 mask of a loop's tail: plain integer code, which the masked loads
 * and stores convert to __mmask16. */
static inline unsigned short cllm_first_lanes16(int n) {
    return n >= 16 ? (unsigned short)0xFFFF : n <= 0 ? (unsigned short)0 : (unsigned short)((1u << n) - 1u);
}

#endif
