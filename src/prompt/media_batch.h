// Token ids plus encoder outputs -> one forward input. The ids already hold the placeholder
// runs exactly as transformers' processor writes them (<|image> + <|image|> x n + <image|>,
// and likewise for video frames and audio); every placeholder position of a kind takes the
// next soft token of that kind, in order of appearance (transformers' masked_scatter), and
// each maximal run of image or video placeholders is one bidirectional block (used by models
// with bidirectional_vision; transformers' get_block_sequence_ids_for_mask).
#ifndef GEMMA4_SRC_PROMPT_MEDIA_BATCH_H_
#define GEMMA4_SRC_PROMPT_MEDIA_BATCH_H_

#include <cstdint>
#include <vector>

#include "gemma4/status.h"
#include "model/config.h"
#include "model/forward.h"

namespace gemma4 {

enum class MediaKind { kImage, kVideo, kAudio };
const char* MediaKindName(MediaKind kind);

// One encoded media item: soft tokens [rows, hidden].
struct EncodedMedia {
  MediaKind kind = MediaKind::kImage;
  int64_t rows = 0;
  std::vector<float> embeddings;
};

class MediaBatch {
 public:
  // ids: the prompt; media: encoded items of any kinds, each kind in its order of appearance.
  // Errors name the kind and both counts when the placeholders and the soft tokens of a kind
  // with media differ. Placeholders of a kind without media stay ids (embedded as the pad id
  // by a multimodal checkpoint, as transformers does; no bidirectional block).
  static StatusOr<MediaBatch> Build(const ModelConfig& config, std::vector<int32_t> ids,
                                    const std::vector<EncodedMedia>& media);

  ForwardInput input() const { return input(0, static_cast<int64_t>(ids_.size())); }
  // Positions [begin, end) as one forward call's input.
  ForwardInput input(int64_t begin, int64_t end) const;
  // The end of a forward call that starts at `begin` and wants to stop at `end`: moved back to
  // the start of a bidirectional block it would cut, or past the block's end when the block
  // starts at `begin`.
  int64_t SplitPoint(int64_t begin, int64_t end) const;
  const std::vector<int32_t>& ids() const { return ids_; }
  // Longest bidirectional block (0 when none): an inference state needs max_chunk >= this.
  int64_t longest_block() const { return longest_block_; }

 private:
  std::vector<int32_t> ids_;
  std::vector<uint8_t> embedded_;
  std::vector<float> embeddings_;  // rows in position order
  std::vector<int32_t> block_;     // -1 or the block id of each position
  int64_t longest_block_ = 0;
  int64_t hidden_ = 0;
  bool any_embedded_ = false;
};

}  // namespace gemma4

#endif  // GEMMA4_SRC_PROMPT_MEDIA_BATCH_H_
