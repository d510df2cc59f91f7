// The finite check on the forward pass's logits. It is the public gemma4::CheckLogitsFinite
// (declared for users in include/gemma4/sampler.h); defined here, beside the forward that
// calls it, so the model layer does not reach up into decode/ for it.
#ifndef GEMMA4_SRC_MODEL_LOGITS_CHECK_H_
#define GEMMA4_SRC_MODEL_LOGITS_CHECK_H_

#include <cstdint>
#include <span>

#include "gemma4/status.h"

namespace gemma4 {

// Checks rows of `vocab_size` logits for NaN and infinity. The DataLoss error names the
// position of the first bad row (first_position + row) and the token.
Status CheckLogitsFinite(std::span<const float> logits, int64_t vocab_size, int64_t first_position);

}  // namespace gemma4

#endif  // GEMMA4_SRC_MODEL_LOGITS_CHECK_H_
