// Subcommands of the gemma4 tool that live in their own files.
#ifndef GEMMA4_TOOLS_CLI_COMMANDS_H_
#define GEMMA4_TOOLS_CLI_COMMANDS_H_

#include "gemma4/status.h"

namespace gemma4::cli {

// gemma4 bench -m FILE [-t N[,N..]] [-p N[,N..]] [-n N[,N..]] [-r N] [-o md|json|jsonl|csv]
Status RunBench(int argc, char** argv);

}  // namespace gemma4::cli

#endif  // GEMMA4_TOOLS_CLI_COMMANDS_H_
