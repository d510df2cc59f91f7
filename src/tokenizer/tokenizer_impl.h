// Internal state of gemma4::Tokenizer (see include/gemma4/tokenizer.h).
#ifndef GEMMA4_SRC_TOKENIZER_TOKENIZER_IMPL_H_
#define GEMMA4_SRC_TOKENIZER_TOKENIZER_IMPL_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gemma4/status.h"
#include "gemma4/tokenizer.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace gemma4 {

// String -> id maps looked up by std::string_view without building a std::string per lookup
// (C++20 heterogeneous lookup: a transparent hash and std::equal_to<>).
struct StringViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringIdMap = std::unordered_map<std::string, int32_t, StringViewHash, std::equal_to<>>;
namespace json {
class Value;
}
namespace gguf {
class File;
}

class TokenizerImpl {
 public:
  // One normalizer, pre-tokenizer or decoder step of tokenizer.json.
  struct Step {
    enum Kind { kReplace, kPrepend, kSplit, kMetaspace, kByteFallback, kFuse, kStrip };
    enum Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
    Kind kind = kReplace;
    Behavior behavior = kIsolated;
    std::string pattern;
    std::string content;
    bool prepend = false;     // Metaspace
    bool split = true;        // Metaspace
    bool first_only = false;  // Metaspace prepend_scheme "first"
    int start = 0;            // Strip
    int stop = 0;             // Strip
  };
  struct AddedToken {
    int32_t id = -1;
    std::string content;
    bool special = false;
    bool lstrip = false;
    bool rstrip = false;
  };
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  struct PostItem {
    bool sequence;  // the encoded text itself, else the special token `id`
    int32_t id;
  };

  // Finds added tokens in text, leftmost-longest as `tokenizers` does, in time linear in the
  // text whatever the tokens: an Aho-Corasick automaton over the reversed tokens, run once over
  // the reversed text, gives the longest token that starts at each position. (Trying every
  // token at every position cost 18 s for 1 MB of "<" with 6000 tokens starting with "<".)
  class AddedTokenMatcher {
   public:
    // `tokens[k].content` must be non-empty; among equal contents, `preferred(k)` picks one.
    void Build(const std::vector<AddedToken>& tokens, const std::vector<bool>& preferred);
    bool empty() const { return best_.size() <= 1; }
    // (*longest)[i] = index of the longest token starting at text[i], or -1. `literal`: null,
    // or one flag per byte of `text`; no token found contains a flagged byte.
    void LongestAt(std::string_view text, const std::vector<uint8_t>* literal,
                   std::vector<int32_t>* longest) const;

   private:
    int32_t Child(int32_t node, unsigned char byte) const;
    std::unordered_map<uint64_t, int32_t> children_;  // node << 8 | byte -> node
    std::vector<int32_t> fail_;   // node -> longest proper suffix that is also a node
    std::vector<int32_t> token_;  // node -> token whose reversed content ends here, or -1
    std::vector<int32_t> best_;   // node -> longest token among node and its suffix chain
  };

  TokenizerImpl();
  ~TokenizerImpl();

  static StatusOr<std::unique_ptr<TokenizerImpl>> FromHuggingFaceJson(std::string_view text,
                                                                      std::string_view source);
  static StatusOr<std::unique_ptr<TokenizerImpl>> FromSentencePiece(const std::string& path);
  static StatusOr<std::unique_ptr<TokenizerImpl>> FromGguf(const gguf::File& file);
  // The tokenizer stored in a GGUF file's metadata.
  static StatusOr<std::shared_ptr<const Tokenizer>> LoadGguf(const gguf::File& file);

  // Applies add_bos_token / add_eos_token from a tokenizer_config.json beside `tokenizer_path`.
  Status ApplyTokenizerConfig(const std::string& tokenizer_path);
  Status SetPostProcessor(const json::Value& post_processor);

  // `literal`: null, or one flag per byte of `text`; an added token is matched only where none
  // of its bytes is flagged (conversation content is text, never control tokens).
  void Encode(std::string_view text, bool add_special_tokens, std::vector<int32_t>* out,
              const std::vector<uint8_t>* literal = nullptr) const;
  // Whether some special added token (e.g. "<|turn>") starts with byte `b`.
  bool StartsSpecialToken(unsigned char b) const;
  std::string Decode(std::span<const int32_t> ids, bool skip_special) const;
  std::string TokenBytes(int32_t id) const;
  int32_t PieceId(std::string_view piece) const;

  const std::vector<std::string>& pieces() const { return pieces_; }
  bool is_special(int32_t id) const { return special_[id]; }
  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }
  int32_t pad_id() const { return pad_id_; }

 private:
  void EnsureId(int32_t id);
  Status AddAddedToken(AddedToken token);
  Status AddMerge(std::string_view left, std::string_view right, int32_t rank);
  void FinishVocab();
  void AddGemmaDecoders();
  void ResolveSpecialIds();
  // EncodeSegment over text[begin, end) that keeps flagged bytes from spelling a SentencePiece
  // user-defined special piece.
  void EncodeLiteralAware(std::string_view text, size_t begin, size_t end,
                          const std::vector<uint8_t>* literal, std::vector<int32_t>* out) const;
  void EncodeSegment(std::string_view text, bool at_start, std::vector<int32_t>* out) const;
  void SplitWord(const Step& s, const std::string& word, bool at_start,
                 std::vector<std::string>* out) const;
  void EncodeWord(std::string_view word, std::vector<int32_t>* out) const;

  std::string source_;
  std::vector<std::string> pieces_;  // id -> vocabulary string
  std::vector<bool> special_;
  StringIdMap vocab_;              // model vocabulary
  StringIdMap added_ids_;          // added tokens
  std::vector<AddedToken> added_;  // longest first
  std::vector<std::vector<size_t>> added_by_first_byte_;
  AddedTokenMatcher added_matcher_;             // over added_
  std::unordered_map<uint64_t, Merge> merges_;  // (left id << 32 | right id) -> merge
  std::array<int32_t, 256> byte_ids_{};
  bool byte_fallback_ = false;
  bool byte_fallback_decode_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  int32_t unk_id_ = -1;
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  int32_t pad_id_ = -1;
  std::vector<Step> normalizers_;
  std::vector<Step> pre_tokenizers_;
  std::vector<Step> decoders_;
  std::vector<PostItem> post_single_;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> spm_;
  // Special pieces libsentencepiece may produce from any text (user-defined symbols; control
  // pieces are never matched in text).
  std::vector<std::string> spm_user_special_;
};

// The library's way inside a Tokenizer (the public header declares it a friend and nothing
// more): content-aware encoding for prompts (Encode with literal flags, StartsSpecialToken).
class TokenizerAccess {
 public:
  static const TokenizerImpl& Impl(const Tokenizer& tokenizer) { return *tokenizer.impl_; }
};

}  // namespace gemma4

#endif  // GEMMA4_SRC_TOKENIZER_TOKENIZER_IMPL_H_
