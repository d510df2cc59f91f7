// Gemma 4 tokenizer: loads tokenizer.json (Hugging Face BPE with byte fallback), tokenizer.model
// (SentencePiece) or the vocabulary stored in a GGUF file, and encodes/decodes exactly like
// Hugging Face `tokenizers`. Special tokens (turn, tool, thinking, image/audio markers) are
// single tokens. Standard library only.
#ifndef GEMMA4_TOKENIZER_H_
#define GEMMA4_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gemma4/status.h"

namespace gemma4 {

class TokenizerImpl;
class TokenizerAccess;  // the library's way in (src/tokenizer/tokenizer_impl.h)

class Tokenizer {
 public:
  // PATH may be a tokenizer.json, a tokenizer.model, a .gguf file, or a directory holding
  // tokenizer.json (preferred) or tokenizer.model.
  static StatusOr<std::shared_ptr<const Tokenizer>> Load(const std::string& path);
  static StatusOr<std::shared_ptr<const Tokenizer>> FromHuggingFaceJson(std::string_view json,
                                                                        std::string_view source);
  static StatusOr<std::shared_ptr<const Tokenizer>> FromSentencePiece(const std::string& path);

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Text -> ids. Special-token strings in `text` (e.g. "<|turn>") become their single ids.
  // With add_special_tokens, the tokenizer's own rule applies (tokenizer.json post-processor,
  // tokenizer_config.json add_bos_token); Gemma 4 chat prompts carry <bos> in the text instead.
  std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens = false) const;
  // Ids -> text, like `tokenizers` decode. Ids out of range are skipped (DecodeChecked
  // refuses them).
  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;
  // Decode() for ids from outside (the C ABI, the CLI): an id outside [0, vocab_size()) is
  // InvalidArgument naming its index and value, never silently dropped.
  StatusOr<std::string> DecodeChecked(std::span<const int32_t> ids,
                                      bool skip_special_tokens = false) const;

  // The bytes one token contributes to decoded text (byte-fallback tokens give one raw byte,
  // "▁" becomes a space). Concatenating these and repairing invalid UTF-8 gives Decode().
  std::string TokenBytes(int32_t id) const;
  // The token's vocabulary string (e.g. "▁the", "<0x0A>", "<|turn>"), empty if out of range.
  std::string TokenString(int32_t id) const;
  // The id of a vocabulary or added token string, or -1.
  int32_t TokenId(std::string_view token) const;
  bool IsSpecial(int32_t id) const;
  // Number of ids (highest id + 1).
  int32_t vocab_size() const;

  int32_t bos_id() const;
  int32_t eos_id() const;
  int32_t pad_id() const;

  friend class TokenizerAccess;

 private:
  explicit Tokenizer(std::unique_ptr<TokenizerImpl> impl);
  std::unique_ptr<TokenizerImpl> impl_;
  friend class TokenizerImpl;
};

// Turns a stream of token ids into text that never splits a UTF-8 character: bytes of an
// incomplete character are held back until the character completes. Invalid sequences become
// U+FFFD, as in Decode().
class StreamingDetokenizer {
 public:
  explicit StreamingDetokenizer(std::shared_ptr<const Tokenizer> tokenizer,
                                bool skip_special_tokens = false);
  // Returns the complete characters that `id` finishes (possibly empty).
  std::string Push(int32_t id);
  // Returns whatever is held back, repaired (call at the end of a stream).
  std::string Flush();
  void Reset();

 private:
  std::shared_ptr<const Tokenizer> tokenizer_;
  bool skip_special_tokens_;
  bool at_start_ = true;
  std::string pending_;
};

}  // namespace gemma4

#endif  // GEMMA4_TOKENIZER_H_
