#include "prompt/media_batch.h"

#include <algorithm>
#include <new>
#include <string>

namespace gemma4 {

const char* MediaKindName(MediaKind kind) {
  switch (kind) {
    case MediaKind::kImage:
      return "image";
    case MediaKind::kVideo:
      return "video";
    case MediaKind::kAudio:
      return "audio";
  }
  return "?";
}

StatusOr<MediaBatch> MediaBatch::Build(const ModelConfig& config, std::vector<int32_t> ids,
                                       const std::vector<EncodedMedia>& media) {
  MediaBatch b;
  const int64_t n = static_cast<int64_t>(ids.size());
  const int64_t H = config.hidden_size;
  const MediaKind kinds[] = {MediaKind::kImage, MediaKind::kVideo, MediaKind::kAudio};
  auto placeholder = [&](MediaKind k) {
    return k == MediaKind::kImage   ? config.image_token_id
           : k == MediaKind::kVideo ? config.video_token_id
                                    : config.audio_token_id;
  };
  // Kinds with encoder outputs. A kind without any keeps its placeholders as ids, embedded as
  // the pad id (ModelConfig::TextEmbeddingId), as transformers does with placeholders when no
  // media of their kind is passed (a generated one, or a prompt of ids given without files).
  bool filled[3] = {false, false, false};
  try {
    b.embedded_.assign(n, 0);
    b.block_.assign(n, -1);
    // Count placeholders and soft tokens per kind.
    for (int ki = 0; ki < 3; ++ki) {
      const MediaKind k = kinds[ki];
      const int32_t id = placeholder(k);
      const int64_t slots = std::count(ids.begin(), ids.end(), id);
      int64_t rows = 0, items = 0;
      for (const EncodedMedia& m : media) {
        if (m.kind != k) continue;
        if (m.rows < 0 || static_cast<int64_t>(m.embeddings.size()) != m.rows * H) {
          return InvalidArgumentError(
              std::string(MediaKindName(k)) + " " + std::to_string(items + 1) +
              ": soft tokens of width " +
              std::to_string(m.rows > 0 ? static_cast<int64_t>(m.embeddings.size()) / m.rows : 0) +
              " do not match the model's hidden size " + std::to_string(H));
        }
        rows += m.rows;
        ++items;
      }
      filled[ki] = items > 0;
      if (filled[ki] && slots != rows) {
        return InvalidArgumentError("the ids hold " + std::to_string(slots) + " " +
                                    MediaKindName(k) + " placeholder tokens (id " +
                                    std::to_string(id) + "), but the " + std::to_string(items) +
                                    " " + MediaKindName(k) + " input(s) give " +
                                    std::to_string(rows) + " soft tokens");
      }
    }
    // Rows in position order: the next soft token of the position's kind.
    size_t cursor[3] = {0, 0, 0};  // media index per kind
    int64_t row_in_item[3] = {0, 0, 0};
    b.embeddings_.reserve(static_cast<size_t>(std::count_if(ids.begin(), ids.end(),
                                                            [&](int32_t id) {
                                                              return id == config.image_token_id ||
                                                                     id == config.video_token_id ||
                                                                     id == config.audio_token_id;
                                                            })) *
                          H);
    int32_t next_block = 0;
    int64_t run = 0;
    for (int64_t i = 0; i < n; ++i) {
      int ki = -1;
      for (int k = 0; k < 3; ++k) {
        if (filled[k] && ids[i] == placeholder(kinds[k])) ki = k;
      }
      const bool vision = ki == 0 || ki == 1;
      if (vision) {
        const bool continues = i > 0 && b.block_[i - 1] >= 0;
        b.block_[i] = continues ? b.block_[i - 1] : next_block++;
        run = continues ? run + 1 : 1;
        b.longest_block_ = std::max(b.longest_block_, run);
      }
      if (ki < 0) continue;
      while (media[cursor[ki]].kind != kinds[ki] || media[cursor[ki]].rows == row_in_item[ki]) {
        if (media[cursor[ki]].kind == kinds[ki]) row_in_item[ki] = 0;
        ++cursor[ki];
      }
      const float* src = media[cursor[ki]].embeddings.data() + row_in_item[ki] * H;
      b.embeddings_.insert(b.embeddings_.end(), src, src + H);
      ++row_in_item[ki];
      b.embedded_[i] = 1;
      b.any_embedded_ = true;
    }
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError("out of memory assembling a prompt of " + std::to_string(n) +
                                  " positions with media");
  }
  b.ids_ = std::move(ids);
  b.hidden_ = H;
  return b;
}

ForwardInput MediaBatch::input(int64_t begin, int64_t end) const {
  ForwardInput in;
  in.ids = ids_.data() + begin;
  in.n = end - begin;
  if (any_embedded_) {
    const int64_t rows_before = std::count(embedded_.begin(), embedded_.begin() + begin, 1);
    in.embedded = embedded_.data() + begin;
    in.embeddings = embeddings_.data() + rows_before * hidden_;
  }
  if (longest_block_ > 0) in.block = block_.data() + begin;
  return in;
}

int64_t MediaBatch::SplitPoint(int64_t begin, int64_t end) const {
  const int64_t n = static_cast<int64_t>(ids_.size());
  if (end >= n || end <= begin || block_[end - 1] < 0 || block_[end - 1] != block_[end]) {
    return std::min(end, n);
  }
  int64_t start = end - 1;
  while (start > begin && block_[start - 1] == block_[end]) --start;
  if (start > begin) return start;
  while (end < n && block_[end] == block_[begin]) ++end;
  return end;
}

}  // namespace gemma4
