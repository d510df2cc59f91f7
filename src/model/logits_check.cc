#include "model/logits_check.h"

#include <cmath>
#include <cstring>
#include <string>

namespace gemma4 {

Status CheckLogitsFinite(std::span<const float> logits, int64_t vocab_size,
                         int64_t first_position) {
  if (vocab_size <= 0) return OkStatus();
  const int64_t rows = static_cast<int64_t>(logits.size()) / vocab_size;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = logits.data() + r * vocab_size;
    // All-ones exponent bits mark NaN and infinity; an OR over the row vectorizes, and the
    // search for the culprit only runs when there is one.
    bool any_bad = false;
    for (int64_t i = 0; i < vocab_size; ++i) {
      uint32_t bits;
      std::memcpy(&bits, row + i, sizeof(bits));
      any_bad |= (bits & 0x7F800000u) == 0x7F800000u;
    }
    if (!any_bad) continue;
    for (int64_t i = 0; i < vocab_size; ++i) {
      if (!std::isfinite(row[i])) {
        return DataLossError("the logits at position " + std::to_string(first_position + r) +
                             " are not finite (token " + std::to_string(i) + ": " +
                             (std::isnan(row[i]) ? "NaN"
                              : row[i] > 0       ? "+inf"
                                                 : "-inf") +
                             "); the weights or the configuration produce NaN or infinity");
      }
    }
  }
  return OkStatus();
}

}  // namespace gemma4
