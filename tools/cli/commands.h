// Subcommands of the gemma4 tool that live in their own files. Each parses its arguments with
// cli::ArgParser (tools/cli/args.h) and answers --help.
#ifndef GEMMA4_TOOLS_CLI_COMMANDS_H_
#define GEMMA4_TOOLS_CLI_COMMANDS_H_

#include "gemma4/status.h"

namespace gemma4::cli {

// gemma4 bench -m FILE [-t N[,N..]] [-p N[,N..]] [-n N[,N..]] [-r N] [-o md|json|jsonl|csv]
Status RunBench(int argc, char** argv);
// gemma4 quantize SRC DST --type q4_0|q4_k_m|q8_0|bf16|f16|f32 [--threads N]
Status RunQuantize(int argc, char** argv);
// gemma4 synth --variant e2b|e4b|26b-a4b|31b --type TYPE OUT.gguf [--seed N] [--threads N]
Status RunSynth(int argc, char** argv);
// gemma4 chat --model PATH [--think] [--system TEXT] [--tokenizer PATH] [-t N] [-n N]
Status RunChat(int argc, char** argv);
// gemma4 run --model PATH (--prompt TEXT | --prompt-file F) [--system TEXT] [--think] ...
Status RunOnePrompt(int argc, char** argv);

}  // namespace gemma4::cli

#endif  // GEMMA4_TOOLS_CLI_COMMANDS_H_
