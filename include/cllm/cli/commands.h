/* Entry points of the cllm subcommands. Each takes the arguments after its
 * own name and returns the process exit code (0 ok, 1 internal failure,
 * 2 bad input, 130 interrupted). Each lives in its own src/cli/cmd_*.c. */
#ifndef CLLM_CLI_COMMANDS_H
#define CLLM_CLI_COMMANDS_H

int cllm_cmd_info(int argc, char **argv);
int cllm_cmd_train(int argc, char **argv);
int cllm_cmd_eval(int argc, char **argv);
int cllm_cmd_sample(int argc, char **argv);
int cllm_cmd_export(int argc, char **argv);
int cllm_cmd_tokenizer(int argc, char **argv);
int cllm_cmd_plot(int argc, char **argv);
int cllm_cmd_runs(int argc, char **argv);
int cllm_cmd_bench(int argc, char **argv);

/* `cllm bench` subcommands (src/cli/bench_*.c). */
int cllm_bench_reduce(int argc, char **argv);
int cllm_bench_matmul(int argc, char **argv);
int cllm_bench_peak(int argc, char **argv);
int cllm_bench_step(int argc, char **argv);

#endif
