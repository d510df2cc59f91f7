// Gemma 4 tokenizer. Three sources, one behaviour (Hugging Face `tokenizers`):
//   tokenizer.json  - BPE with byte fallback: added tokens split first (leftmost-longest), then
//                     normalizer (Replace " " -> "▁"), pre-tokenizer, BPE merges by rank, and the
//                     decoder chain (Replace "▁" -> " ", ByteFallback, Fuse, ...).
//   GGUF vocabulary - the same BPE rebuilt from tokenizer.ggml.{tokens,token_type,merges}.
//   tokenizer.model - libsentencepiece, with control tokens (<bos>, <eos>...) split out first
//                     so "<bos>" in text is one token as in tokenizer.json.
#include "gemma4/tokenizer.h"

#ifdef GEMMA4_HAVE_SENTENCEPIECE
#include <sentencepiece_processor.h>
#else
namespace sentencepiece {
class SentencePieceProcessor {};  // never created in builds without libsentencepiece
}  // namespace sentencepiece
#endif

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <queue>
#include <unordered_map>

#include "base/json.h"
#include "base/utf8.h"
#include "formats/gguf.h"
#include "formats/mapped_file.h"
#include "tokenizer/tokenizer_impl.h"

namespace gemma4 {
namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581 "▁"

std::string ReplaceAll(std::string_view s, std::string_view from, std::string_view to) {
  if (from.empty()) return std::string(s);
  std::string out;
  size_t pos = 0;
  while (true) {
    const size_t hit = s.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s.substr(pos));
  return out;
}

// "<0xAB>" -> 0xAB, or -1.
int ParseByteToken(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  int v = 0;
  for (int k = 3; k < 5; ++k) {
    const char c = t[k];
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return -1;
    }
    v = v * 16 + d;
  }
  return v;
}

bool IsPythonWhitespace(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

std::string StringPattern(const json::Value* pattern) {
  if (pattern == nullptr) return {};
  if (pattern->is_string()) return pattern->as_string();
  if (const json::Value* s = pattern->Find("String"); s != nullptr && s->is_string()) {
    return s->as_string();
  }
  return {};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// TokenizerImpl: construction

Status TokenizerImpl::AddAddedToken(AddedToken token) {
  if (token.content.empty()) return InvalidArgumentError(source_ + ": empty added token");
  if (token.id < 0) return InvalidArgumentError(source_ + ": negative added token id");
  EnsureId(token.id);
  pieces_[token.id] = token.content;
  special_[token.id] = token.special;
  added_ids_[token.content] = token.id;
  added_.push_back(std::move(token));
  return OkStatus();
}

void TokenizerImpl::EnsureId(int32_t id) {
  if (static_cast<size_t>(id) >= pieces_.size()) {
    pieces_.resize(id + 1);
    special_.resize(id + 1, false);
  }
}

void TokenizerImpl::FinishVocab() {
  byte_ids_.fill(-1);
  for (size_t id = 0; id < pieces_.size(); ++id) {
    const int b = ParseByteToken(pieces_[id]);
    if (b >= 0 && byte_ids_[b] < 0) byte_ids_[b] = static_cast<int32_t>(id);
  }
  // Added tokens are matched longest first at each position.
  std::sort(added_.begin(), added_.end(), [](const AddedToken& a, const AddedToken& b) {
    return a.content.size() > b.content.size();
  });
  added_by_first_byte_.assign(256, {});
  for (size_t k = 0; k < added_.size(); ++k) {
    added_by_first_byte_[static_cast<unsigned char>(added_[k].content[0])].push_back(k);
  }
  // A string listed twice is matched as the id it maps to (the last one listed).
  std::vector<bool> preferred(added_.size());
  for (size_t k = 0; k < added_.size(); ++k) {
    preferred[k] = added_ids_.at(added_[k].content) == added_[k].id;
  }
  added_matcher_.Build(added_, preferred);
}

// ---------------------------------------------------------------------------------------------
// AddedTokenMatcher

int32_t TokenizerImpl::AddedTokenMatcher::Child(int32_t node, unsigned char byte) const {
  const auto it = children_.find((static_cast<uint64_t>(node) << 8) | byte);
  return it == children_.end() ? -1 : it->second;
}

void TokenizerImpl::AddedTokenMatcher::Build(const std::vector<AddedToken>& tokens,
                                             const std::vector<bool>& preferred) {
  children_.clear();
  fail_.assign(1, 0);
  token_.assign(1, -1);
  // Trie of the reversed contents; node 0 is the root.
  for (size_t k = 0; k < tokens.size(); ++k) {
    const std::string& content = tokens[k].content;
    int32_t node = 0;
    for (size_t i = content.size(); i-- > 0;) {
      const unsigned char byte = static_cast<unsigned char>(content[i]);
      const uint64_t key = (static_cast<uint64_t>(node) << 8) | byte;
      auto it = children_.find(key);
      if (it == children_.end()) {
        it = children_.emplace(key, static_cast<int32_t>(fail_.size())).first;
        fail_.push_back(0);
        token_.push_back(-1);
      }
      node = it->second;
    }
    if (token_[node] < 0 || preferred[k]) token_[node] = static_cast<int32_t>(k);
  }
  // Failure links breadth first (a node's link is shallower, so it is done before the node).
  std::vector<std::vector<std::pair<unsigned char, int32_t>>> edges(fail_.size());
  for (const auto& [key, child] : children_) {
    edges[key >> 8].emplace_back(static_cast<unsigned char>(key & 0xFF), child);
  }
  best_.assign(fail_.size(), -1);
  std::vector<int32_t> queue{0};
  for (size_t head = 0; head < queue.size(); ++head) {
    const int32_t node = queue[head];
    best_[node] = token_[node] >= 0 ? token_[node] : best_[fail_[node]];
    for (const auto& [byte, child] : edges[node]) {
      int32_t link = 0;
      if (node != 0) {
        for (int32_t f = fail_[node];; f = fail_[f]) {
          if (const int32_t next = Child(f, byte); next >= 0) {
            link = next;
            break;
          }
          if (f == 0) break;
        }
      }
      fail_[child] = link;
      queue.push_back(child);
    }
  }
}

void TokenizerImpl::AddedTokenMatcher::LongestAt(std::string_view text,
                                                 const std::vector<uint8_t>* literal,
                                                 std::vector<int32_t>* longest) const {
  longest->assign(text.size(), -1);
  if (empty()) return;
  int32_t node = 0;
  for (size_t i = text.size(); i-- > 0;) {
    if (literal != nullptr && i < literal->size() && (*literal)[i] != 0) {
      node = 0;  // nothing found may span a flagged byte
      continue;
    }
    const unsigned char byte = static_cast<unsigned char>(text[i]);
    // Each step down the failure chain shortens the match and each byte lengthens it by at
    // most one, so the whole scan is linear in the text.
    while (true) {
      if (const int32_t next = Child(node, byte); next >= 0) {
        node = next;
        break;
      }
      if (node == 0) break;
      node = fail_[node];
    }
    (*longest)[i] = best_[node];
  }
}

Status TokenizerImpl::AddMerge(std::string_view left, std::string_view right, int32_t rank) {
  const auto a = vocab_.find(left);
  const auto b = vocab_.find(right);
  if (a == vocab_.end() || b == vocab_.end()) {
    return InvalidArgumentError(source_ + ": merge " + std::to_string(rank) + " (\"" +
                                std::string(left) + "\", \"" + std::string(right) +
                                "\") uses a piece that is not in the vocabulary");
  }
  const auto merged = vocab_.find(std::string(left) + std::string(right));
  if (merged == vocab_.end()) {
    return InvalidArgumentError(source_ + ": merge " + std::to_string(rank) +
                                " produces a piece that is not in the vocabulary");
  }
  const uint64_t key = (static_cast<uint64_t>(a->second) << 32) | static_cast<uint32_t>(b->second);
  merges_.emplace(key, Merge{rank, merged->second});  // first (lowest rank) wins
  return OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Encoding

bool TokenizerImpl::StartsSpecialToken(unsigned char b) const {
  if (added_by_first_byte_.empty()) return false;
  for (size_t k : added_by_first_byte_[b]) {
    if (added_[k].special) return true;
  }
  return false;
}

void TokenizerImpl::Encode(std::string_view text, bool add_special_tokens,
                           std::vector<int32_t>* out, const std::vector<uint8_t>* literal) const {
  std::vector<int32_t> ids;
  // Split on added tokens: leftmost match, longest at that position (aho-corasick
  // LeftmostLongest in `tokenizers`).
  std::vector<int32_t> longest;
  added_matcher_.LongestAt(text, literal, &longest);
  size_t segment_start = 0;
  size_t i = 0;
  while (i < text.size()) {
    if (longest[i] < 0) {
      ++i;
      continue;
    }
    const AddedToken* hit = &added_[longest[i]];
    size_t seg_end = i;
    if (hit->lstrip) {
      while (seg_end > segment_start && IsPythonWhitespace(text[seg_end - 1])) --seg_end;
    }
    EncodeLiteralAware(text, segment_start, seg_end, literal, &ids);
    ids.push_back(hit->id);
    i += hit->content.size();
    if (hit->rstrip) {
      while (i < text.size() && IsPythonWhitespace(text[i])) ++i;
    }
    segment_start = i;
  }
  EncodeLiteralAware(text, segment_start, text.size(), literal, &ids);
  if (add_special_tokens) {
    for (const PostItem& item : post_single_) {
      if (item.sequence) {
        out->insert(out->end(), ids.begin(), ids.end());
      } else {
        out->push_back(item.id);
      }
    }
  } else {
    out->insert(out->end(), ids.begin(), ids.end());
  }
}

// libsentencepiece matches its user-defined pieces (<|turn>, <|tool_call>, ...) anywhere in the
// text it is given, with no way to switch that off, so a segment is cut before each flagged
// (content) byte that starts one of them and that first byte is encoded on its own: the rest no
// longer spells the piece, and the content stays text. tokenizer.json keeps those pieces as
// added tokens, which the literal mask already covers, so only the SentencePiece path cuts.
void TokenizerImpl::EncodeLiteralAware(std::string_view text, size_t begin, size_t end,
                                       const std::vector<uint8_t>* literal,
                                       std::vector<int32_t>* out) const {
  if (spm_ == nullptr || literal == nullptr || spm_user_special_.empty()) {
    EncodeSegment(text.substr(begin, end - begin), begin == 0, out);
    return;
  }
  size_t start = begin;
  for (size_t i = begin; i < end; ++i) {
    if (i >= literal->size() || (*literal)[i] == 0) continue;
    bool starts_piece = false;
    for (const std::string& piece : spm_user_special_) {
      if (text.substr(i, end - i).starts_with(piece)) {
        starts_piece = true;
        break;
      }
    }
    if (!starts_piece) continue;
    EncodeSegment(text.substr(start, i - start), start == 0, out);
    EncodeSegment(text.substr(i, 1), i == 0, out);
    start = i + 1;
  }
  EncodeSegment(text.substr(start, end - start), start == 0, out);
}

void TokenizerImpl::EncodeSegment(std::string_view text, bool at_start,
                                  std::vector<int32_t>* out) const {
  if (text.empty()) return;
#ifdef GEMMA4_HAVE_SENTENCEPIECE
  if (spm_ != nullptr) {
    std::vector<int> ids;
    if (spm_->Encode(std::string(text), &ids).ok()) {
      out->insert(out->end(), ids.begin(), ids.end());
    }
    return;
  }
#endif
  // Normalizer.
  std::string normalized(text);
  for (const Step& s : normalizers_) {
    if (s.kind == Step::kReplace) {
      normalized = ReplaceAll(normalized, s.pattern, s.content);
    } else if (s.kind == Step::kPrepend) {
      normalized = s.content + normalized;
    }
  }
  // Pre-tokenizer: a list of words (byte ranges of `normalized`).
  std::vector<std::string> words{normalized};
  for (const Step& s : pre_tokenizers_) {
    std::vector<std::string> next;
    for (const std::string& w : words) SplitWord(s, w, at_start, &next);
    words = std::move(next);
  }
  for (const std::string& w : words) EncodeWord(w, out);
}

void TokenizerImpl::SplitWord(const Step& s, const std::string& word, bool at_start,
                              std::vector<std::string>* out) const {
  if (s.kind == Step::kMetaspace) {
    std::string w = ReplaceAll(word, " ", s.content);
    if (s.prepend && (!s.first_only || at_start) &&
        w.compare(0, s.content.size(), s.content) != 0) {
      w = s.content + w;
    }
    if (!s.split) {
      out->push_back(std::move(w));
      return;
    }
    // Split before each replacement character (MergedWithNext).
    size_t start = 0;
    size_t pos = w.find(s.content, 1);
    while (pos != std::string::npos) {
      out->push_back(w.substr(start, pos - start));
      start = pos;
      pos = w.find(s.content, pos + s.content.size());
    }
    out->push_back(w.substr(start));
    return;
  }
  // kSplit with a literal pattern: spans (begin, end, is_match) covering the word, then the
  // behaviour's fold exactly as `tokenizers` (normalizer.rs split) does it.
  struct Span {
    size_t begin, end;
    bool match;
  };
  std::vector<Span> spans;
  size_t prev = 0;
  for (size_t pos = word.find(s.pattern); pos != std::string::npos;
       pos = word.find(s.pattern, pos + s.pattern.size())) {
    if (pos > prev) spans.push_back({prev, pos, false});
    spans.push_back({pos, pos + s.pattern.size(), true});
    prev = pos + s.pattern.size();
  }
  if (prev < word.size()) spans.push_back({prev, word.size(), false});
  std::vector<Span> merged;
  bool previous_match = false;
  switch (s.behavior) {
    case Step::kRemoved:
      for (const Span& sp : spans) {
        if (!sp.match) merged.push_back(sp);
      }
      break;
    case Step::kIsolated:
      merged = spans;
      break;
    case Step::kMergedWithPrevious:
      for (const Span& sp : spans) {
        if (sp.match && !previous_match && !merged.empty()) {
          merged.back().end = sp.end;
        } else {
          merged.push_back(sp);
        }
        previous_match = sp.match;
      }
      break;
    case Step::kMergedWithNext:
      for (size_t k = spans.size(); k-- > 0;) {
        const Span& sp = spans[k];
        if (sp.match && !previous_match && !merged.empty()) {
          merged.back().begin = sp.begin;
        } else {
          merged.push_back(sp);
        }
        previous_match = sp.match;
      }
      std::reverse(merged.begin(), merged.end());
      break;
    case Step::kContiguous:
      for (size_t k = 0; k < spans.size(); ++k) {
        if (k > 0 && spans[k].match == previous_match) {
          merged.back().end = spans[k].end;
        } else {
          merged.push_back(spans[k]);
        }
        previous_match = spans[k].match;
      }
      break;
  }
  for (const Span& sp : merged) {
    if (sp.end > sp.begin) out->push_back(word.substr(sp.begin, sp.end - sp.begin));
  }
}

// BPE over one word, reproducing `tokenizers` (models/bpe/word.rs): symbols start as UTF-8
// characters (unknown ones become <0xXX> byte tokens, or a fused <unk>); the pair with the lowest
// merge rank (leftmost on ties) is merged until none applies.
void TokenizerImpl::EncodeWord(std::string_view word, std::vector<int32_t>* out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    // tokenizers: a word that is itself in the vocabulary is taken whole.
    if (auto it = vocab_.find(word); it != vocab_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  bool last_unk = false;
  for (size_t i = 0; i < word.size();) {
    size_t n = utf8::SequenceLength(static_cast<unsigned char>(word[i]));
    if (i + n > word.size()) n = word.size() - i;
    const std::string_view ch = word.substr(i, n);
    i += n;
    if (auto it = vocab_.find(ch); it != vocab_.end()) {
      symbols.push_back({it->second, 0, 0, true});
      last_unk = false;
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char b : ch) all = all && byte_ids_[b] >= 0;
      if (all) {
        for (unsigned char b : ch) symbols.push_back({byte_ids_[b], 0, 0, true});
        last_unk = false;
        continue;
      }
    }
    if (unk_id_ >= 0) {
      if (fuse_unk_ && last_unk) continue;
      symbols.push_back({unk_id_, 0, 0, true});
      last_unk = true;
    }
  }
  const int32_t count = static_cast<int32_t>(symbols.size());
  for (int32_t k = 0; k < count; ++k) {
    symbols[k].prev = k - 1;
    symbols[k].next = k + 1 < count ? k + 1 : -1;
  }
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t new_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  auto lookup = [&](int32_t a, int32_t b) -> const Merge* {
    const uint64_t key = (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b);
    auto it = merges_.find(key);
    return it == merges_.end() ? nullptr : &it->second;
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  for (int32_t k = 0; k + 1 < count; ++k) {
    if (const Merge* m = lookup(symbols[k].id, symbols[k + 1].id)) {
      queue.push({m->rank, k, m->new_id});
    }
  }
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    const Merge* current = lookup(left.id, right.id);
    if (current == nullptr || current->new_id != top.new_id) continue;  // stale entry
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) {
      if (const Merge* m = lookup(symbols[left.prev].id, left.id)) {
        queue.push({m->rank, left.prev, m->new_id});
      }
    }
    if (left.next >= 0) {
      if (const Merge* m = lookup(left.id, symbols[left.next].id)) {
        queue.push({m->rank, top.pos, m->new_id});
      }
    }
  }
  for (int32_t k = count > 0 ? 0 : -1; k >= 0; k = symbols[k].next) {
    out->push_back(symbols[k].id);
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding

std::string TokenizerImpl::TokenBytes(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= pieces_.size()) return {};
  const std::string& piece = pieces_[id];
  if (const auto added = added_ids_.find(piece); added != added_ids_.end() && added->second == id) {
    return piece;
  }
  if (byte_fallback_decode_) {
    const int b = ParseByteToken(piece);
    if (b >= 0) return std::string(1, static_cast<char>(b));
  }
  std::string s = piece;
  for (const Step& d : decoders_) {
    if (d.kind == Step::kReplace) s = ReplaceAll(s, d.pattern, d.content);
    if (d.kind == Step::kMetaspace) s = ReplaceAll(s, d.content, " ");
  }
  return s;
}

std::string TokenizerImpl::Decode(std::span<const int32_t> ids, bool skip_special) const {
  std::vector<std::string> tokens;
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= pieces_.size()) continue;
    if (skip_special && special_[id]) continue;
    tokens.push_back(pieces_[id]);
  }
  for (const Step& d : decoders_) {
    switch (d.kind) {
      case Step::kReplace:
        for (std::string& t : tokens) t = ReplaceAll(t, d.pattern, d.content);
        break;
      case Step::kByteFallback: {
        std::vector<std::string> next;
        std::string bytes;
        auto flush = [&] {
          if (bytes.empty()) return;
          if (utf8::IsValid(bytes)) {
            next.push_back(bytes);
          } else {
            for (size_t k = 0; k < bytes.size(); ++k) next.push_back("\xEF\xBF\xBD");
          }
          bytes.clear();
        };
        for (std::string& t : tokens) {
          const int b = ParseByteToken(t);
          if (b >= 0) {
            bytes.push_back(static_cast<char>(b));
          } else {
            flush();
            next.push_back(std::move(t));
          }
        }
        flush();
        tokens = std::move(next);
        break;
      }
      case Step::kFuse: {
        std::string all;
        for (const std::string& t : tokens) all += t;
        tokens.assign(1, std::move(all));
        break;
      }
      case Step::kStrip:
        for (std::string& t : tokens) {
          // Strips up to `start` leading and `stop` trailing copies of `content`.
          for (int k = 0; k < d.start && t.compare(0, d.content.size(), d.content) == 0; ++k) {
            t.erase(0, d.content.size());
          }
          for (int k = 0; k < d.stop && t.size() >= d.content.size() &&
                          t.compare(t.size() - d.content.size(), d.content.size(), d.content) == 0;
               ++k) {
            t.erase(t.size() - d.content.size());
          }
        }
        break;
      case Step::kMetaspace:
        for (size_t k = 0; k < tokens.size(); ++k) {
          tokens[k] = ReplaceAll(tokens[k], d.content, " ");
          if (k == 0 && d.prepend && !tokens[k].empty() && tokens[k][0] == ' ') {
            tokens[k].erase(0, 1);
          }
        }
        break;
      default:
        break;
    }
  }
  std::string out;
  for (const std::string& t : tokens) out += t;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Loading: tokenizer.json

namespace {

Status ParseStep(const json::Value& v, const std::string& where, bool decoder,
                 std::vector<TokenizerImpl::Step>* steps) {
  using Step = TokenizerImpl::Step;
  if (v.is_null()) return OkStatus();
  const json::Value* type = v.Find("type");
  if (type == nullptr || !type->is_string()) {
    return InvalidArgumentError(where + ": missing \"type\"");
  }
  const std::string& t = type->as_string();
  if (t == "Sequence") {
    const json::Value* list = v.Find(decoder ? "decoders" : "normalizers");
    if (list == nullptr) list = v.Find("pretokenizers");
    if (list == nullptr || !list->is_array()) {
      return InvalidArgumentError(where + ": Sequence without a list");
    }
    for (size_t k = 0; k < list->as_array().size(); ++k) {
      GEMMA4_RETURN_IF_ERROR(
          ParseStep(list->as_array()[k], where + "[" + std::to_string(k) + "]", decoder, steps));
    }
    return OkStatus();
  }
  Step s;
  if (t == "Replace") {
    s.kind = Step::kReplace;
    const json::Value* pattern = v.Find("pattern");
    s.pattern = StringPattern(pattern);
    if (s.pattern.empty()) {
      return UnimplementedError(where + ": Replace with a regex pattern is not supported");
    }
    const json::Value* content = v.Find("content");
    s.content = content != nullptr ? content->as_string() : "";
  } else if (t == "Prepend") {
    s.kind = Step::kPrepend;
    const json::Value* p = v.Find("prepend");
    s.content = p != nullptr ? p->as_string() : "";
  } else if (t == "NFC" || t == "NFKC" || t == "NFD" || t == "NFKD" || t == "Lowercase") {
    return UnimplementedError(where + ": normalizer " + t +
                              " is not supported (Gemma 4 uses none)");
  } else if (t == "Split") {
    s.kind = Step::kSplit;
    s.pattern = StringPattern(v.Find("pattern"));
    if (s.pattern.empty()) {
      return UnimplementedError(where + ": Split with a regex pattern is not supported");
    }
    const json::Value* inv = v.Find("invert");
    if (inv != nullptr && inv->as_bool()) {
      return UnimplementedError(where + ": inverted Split is not supported");
    }
    const std::string b = v.Find("behavior") != nullptr ? v.Find("behavior")->as_string() : "";
    if (b == "Removed") {
      s.behavior = Step::kRemoved;
    } else if (b == "Isolated") {
      s.behavior = Step::kIsolated;
    } else if (b == "MergedWithPrevious") {
      s.behavior = Step::kMergedWithPrevious;
    } else if (b == "MergedWithNext") {
      s.behavior = Step::kMergedWithNext;
    } else if (b == "Contiguous") {
      s.behavior = Step::kContiguous;
    } else {
      return InvalidArgumentError(where + ": unknown Split behavior \"" + b + "\"");
    }
  } else if (t == "Metaspace") {
    s.kind = Step::kMetaspace;
    const json::Value* r = v.Find("replacement");
    s.content = r != nullptr && r->is_string() ? r->as_string() : std::string(kSpaceMark);
    const json::Value* scheme = v.Find("prepend_scheme");
    const json::Value* add_prefix = v.Find("add_prefix_space");
    s.prepend = scheme != nullptr ? scheme->as_string() != "never"
                                  : (add_prefix == nullptr || add_prefix->as_bool());
    // "first": only the text at the very start of the input (not after an added token).
    s.first_only = scheme != nullptr && scheme->as_string() == "first";
    const json::Value* split = v.Find("split");
    s.split = split == nullptr || split->as_bool();
    if (s.content.empty()) {
      // Splitting on an empty replacement finds it at every position without advancing.
      return InvalidArgumentError(where + ": Metaspace replacement is empty");
    }
  } else if (t == "ByteFallback") {
    s.kind = Step::kByteFallback;
  } else if (t == "Fuse") {
    s.kind = Step::kFuse;
  } else if (t == "Strip") {
    s.kind = Step::kStrip;
    const json::Value* c = v.Find("content");
    s.content = c != nullptr ? c->as_string() : " ";
    if (s.content.empty()) {
      return InvalidArgumentError(where + ": Strip content is empty (nothing to strip)");
    }
    int64_t start = 0, stop = 0;
    if (const json::Value* x = v.Find("start")) x->GetInt64(&start);
    if (const json::Value* x = v.Find("stop")) x->GetInt64(&stop);
    s.start = static_cast<int>(std::clamp<int64_t>(start, 0, 1 << 20));
    s.stop = static_cast<int>(std::clamp<int64_t>(stop, 0, 1 << 20));
  } else {
    return UnimplementedError(where + ": " + t + " is not supported");
  }
  steps->push_back(std::move(s));
  return OkStatus();
}

}  // namespace

StatusOr<std::unique_ptr<TokenizerImpl>> TokenizerImpl::FromHuggingFaceJson(
    std::string_view text, std::string_view source) {
  auto impl = std::make_unique<TokenizerImpl>();
  impl->source_ = std::string(source);
  const std::string& src = impl->source_;
  GEMMA4_ASSIGN_OR_RETURN(json::Value root, json::Parse(text, source));
  const json::Value* model = root.Find("model");
  if (model == nullptr || !model->is_object()) {
    return InvalidArgumentError(src + ": missing \"model\" object");
  }
  const json::Value* mtype = model->Find("type");
  if (mtype != nullptr && mtype->as_string() != "BPE") {
    return UnimplementedError(src + ": model type \"" + mtype->as_string() +
                              "\" is not supported (Gemma 4 uses BPE)");
  }
  const json::Value* vocab = model->Find("vocab");
  if (vocab == nullptr || !vocab->is_object()) {
    return InvalidArgumentError(src + ": missing model.vocab object");
  }
  constexpr int64_t kMaxVocab = 1 << 24;
  for (const auto& [piece, id_value] : vocab->as_object()) {
    int64_t id = 0;
    if (!id_value.GetInt64(&id) || id < 0 || id >= kMaxVocab) {
      return InvalidArgumentError(src + ": model.vocab[\"" + piece +
                                  "\"] is not an id in [0, 2^24)");
    }
    impl->EnsureId(static_cast<int32_t>(id));
    impl->pieces_[id] = piece;
    impl->vocab_[piece] = static_cast<int32_t>(id);
  }
  auto flag = [](const json::Value* v, bool fallback) {
    return v == nullptr || v->is_null() ? fallback : v->as_bool();
  };
  impl->byte_fallback_ = flag(model->Find("byte_fallback"), false);
  impl->fuse_unk_ = flag(model->Find("fuse_unk"), false);
  impl->ignore_merges_ = flag(model->Find("ignore_merges"), false);
  if (const json::Value* unk = model->Find("unk_token"); unk != nullptr && unk->is_string()) {
    auto it = impl->vocab_.find(unk->as_string());
    if (it == impl->vocab_.end()) {
      return InvalidArgumentError(src + ": unk_token \"" + unk->as_string() +
                                  "\" is not in the vocabulary");
    }
    impl->unk_id_ = it->second;
  }
  for (const char* unsupported : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json::Value* v = model->Find(unsupported);
    if (v != nullptr && v->is_string() && !v->as_string().empty()) {
      return UnimplementedError(src + ": model." + unsupported + " is not supported");
    }
  }
  if (const json::Value* merges = model->Find("merges"); merges != nullptr) {
    if (!merges->is_array()) return InvalidArgumentError(src + ": model.merges is not a list");
    int32_t rank = 0;
    for (const json::Value& m : merges->as_array()) {
      std::string left, right;
      if (m.is_string()) {
        const std::string& s = m.as_string();
        const size_t sp = s.find(' ', 1);
        if (sp == std::string::npos) {
          return InvalidArgumentError(src + ": merge " + std::to_string(rank) + " is not \"A B\"");
        }
        left = s.substr(0, sp);
        right = s.substr(sp + 1);
      } else if (m.is_array() && m.as_array().size() == 2 && m.as_array()[0].is_string() &&
                 m.as_array()[1].is_string()) {
        left = m.as_array()[0].as_string();
        right = m.as_array()[1].as_string();
      } else {
        return InvalidArgumentError(src + ": merge " + std::to_string(rank) +
                                    " is neither \"A B\" nor [\"A\", \"B\"]");
      }
      GEMMA4_RETURN_IF_ERROR(impl->AddMerge(left, right, rank));
      ++rank;
    }
  }
  if (const json::Value* added = root.Find("added_tokens"); added != nullptr) {
    if (!added->is_array()) return InvalidArgumentError(src + ": added_tokens is not a list");
    for (size_t k = 0; k < added->as_array().size(); ++k) {
      const json::Value& t = added->as_array()[k];
      int64_t id = 0;
      const json::Value* idv = t.Find("id");
      const json::Value* content = t.Find("content");
      if (idv == nullptr || !idv->GetInt64(&id) || id < 0 || id >= kMaxVocab ||
          content == nullptr || !content->is_string() || content->as_string().empty()) {
        return InvalidArgumentError(src + ": added_tokens[" + std::to_string(k) +
                                    "] needs an id in [0, 2^24) and a non-empty content");
      }
      AddedToken a;
      a.id = static_cast<int32_t>(id);
      a.content = content->as_string();
      a.special = flag(t.Find("special"), false);
      a.lstrip = flag(t.Find("lstrip"), false);
      a.rstrip = flag(t.Find("rstrip"), false);
      GEMMA4_RETURN_IF_ERROR(impl->AddAddedToken(std::move(a)));
    }
  }
  if (const json::Value* n = root.Find("normalizer"); n != nullptr) {
    GEMMA4_RETURN_IF_ERROR(ParseStep(*n, src + ": normalizer", false, &impl->normalizers_));
  }
  if (const json::Value* p = root.Find("pre_tokenizer"); p != nullptr) {
    GEMMA4_RETURN_IF_ERROR(ParseStep(*p, src + ": pre_tokenizer", false, &impl->pre_tokenizers_));
  }
  if (const json::Value* d = root.Find("decoder"); d != nullptr) {
    GEMMA4_RETURN_IF_ERROR(ParseStep(*d, src + ": decoder", true, &impl->decoders_));
  }
  for (const Step& s : impl->normalizers_) {
    if (s.kind != Step::kReplace && s.kind != Step::kPrepend) {
      return UnimplementedError(src + ": unsupported normalizer step");
    }
  }
  // Normalizing and pre-tokenizing may grow the text (Gemma's " " -> "▁" triples a space), but
  // chained steps must not grow it without bound: each replacement or prefix is at most
  // kMaxStepContent bytes, and n bytes become at most growth * n + added bytes with growth at
  // most kMaxTextGrowth.
  constexpr size_t kMaxStepContent = 256;
  constexpr size_t kMaxTextGrowth = 1024;
  size_t growth = 1, added = 0;
  for (const std::vector<Step>* steps : {&impl->normalizers_, &impl->pre_tokenizers_}) {
    for (const Step& s : *steps) {
      if (s.content.size() > kMaxStepContent) {
        return InvalidArgumentError(src + ": a normalizer or pre-tokenizer step inserts " +
                                    std::to_string(s.content.size()) + " bytes (at most " +
                                    std::to_string(kMaxStepContent) + ")");
      }
      if (s.kind == Step::kReplace) {
        const size_t factor =
            std::max<size_t>(1, (s.content.size() + s.pattern.size() - 1) / s.pattern.size());
        growth *= factor;
        added *= factor;
      } else if (s.kind == Step::kMetaspace) {
        const size_t factor = std::max<size_t>(1, s.content.size());  // " " -> replacement
        growth *= factor;
        added = added * factor + (s.prepend ? s.content.size() : 0);
      } else if (s.kind == Step::kPrepend) {
        added += s.content.size();
      }
      if (growth > kMaxTextGrowth || added > kMaxTextGrowth * kMaxStepContent) {
        return InvalidArgumentError(src +
                                    ": the normalizer and pre-tokenizer steps can grow the text "
                                    "more than " +
                                    std::to_string(kMaxTextGrowth) + "-fold");
      }
    }
  }
  for (const Step& s : impl->pre_tokenizers_) {
    if (s.kind != Step::kSplit && s.kind != Step::kMetaspace) {
      return UnimplementedError(src + ": unsupported pre_tokenizer step");
    }
  }
  for (const Step& s : impl->decoders_) {
    if (s.kind == Step::kByteFallback) impl->byte_fallback_decode_ = true;
  }
  // Post-processor: only the single-sequence template matters for Encode.
  impl->post_single_ = {PostItem{true, 0}};
  if (const json::Value* pp = root.Find("post_processor"); pp != nullptr) {
    GEMMA4_RETURN_IF_ERROR(impl->SetPostProcessor(*pp));
  }
  impl->FinishVocab();
  impl->ResolveSpecialIds();
  return impl;
}

// tokenizer.json's post_processor: TemplateProcessing (or one inside a Sequence) gives the
// special tokens added around a single sequence; other processors add none.
Status TokenizerImpl::SetPostProcessor(const json::Value& pp) {
  if (pp.is_null()) return OkStatus();
  const json::Value* type = pp.Find("type");
  if (type != nullptr && type->as_string() == "Sequence") {
    if (const json::Value* list = pp.Find("processors"); list != nullptr && list->is_array()) {
      for (const json::Value& p : list->as_array()) GEMMA4_RETURN_IF_ERROR(SetPostProcessor(p));
    }
    return OkStatus();
  }
  const json::Value* single = pp.Find("single");
  if (type == nullptr || type->as_string() != "TemplateProcessing" || single == nullptr ||
      !single->is_array()) {
    return OkStatus();
  }
  std::vector<PostItem> items;
  for (const json::Value& item : single->as_array()) {
    if (item.Find("Sequence") != nullptr) {
      items.push_back({true, 0});
    } else if (const json::Value* sp = item.Find("SpecialToken"); sp != nullptr) {
      const json::Value* name = sp->Find("id");
      const int32_t id = name != nullptr ? PieceId(name->as_string()) : -1;
      if (id < 0)
        return InvalidArgumentError(source_ + ": post_processor special token is unknown");
      items.push_back({false, id});
    }
  }
  post_single_ = std::move(items);
  return OkStatus();
}

int32_t TokenizerImpl::PieceId(std::string_view piece) const {
  if (auto it = added_ids_.find(piece); it != added_ids_.end()) return it->second;
  if (auto it = vocab_.find(piece); it != vocab_.end()) return it->second;
#ifdef GEMMA4_HAVE_SENTENCEPIECE
  if (spm_ != nullptr) {
    const std::string key(piece);
    const int id = spm_->PieceToId(key);
    if (id >= 0 && spm_->IdToPiece(id) == key) return id;
  }
#endif
  return -1;
}

void TokenizerImpl::ResolveSpecialIds() {
  if (bos_id_ < 0) bos_id_ = PieceId("<bos>");
  if (eos_id_ < 0) eos_id_ = PieceId("<eos>");
  if (pad_id_ < 0) pad_id_ = PieceId("<pad>");
}

// Gemma's decoder chain (tokenizer.json's Replace "▁" -> " ", ByteFallback, Fuse), for the
// sources that do not spell it out.
void TokenizerImpl::AddGemmaDecoders() {
  byte_fallback_decode_ = true;
  Step unreplace;
  unreplace.kind = Step::kReplace;
  unreplace.pattern = std::string(kSpaceMark);
  unreplace.content = " ";
  decoders_.push_back(unreplace);
  Step bf;
  bf.kind = Step::kByteFallback;
  decoders_.push_back(bf);
  Step fuse;
  fuse.kind = Step::kFuse;
  decoders_.push_back(fuse);
}

// ---------------------------------------------------------------------------------------------
// Loading: GGUF vocabulary (llama.cpp's "gemma4" BPE: escape spaces as ▁, byte fallback).

StatusOr<std::unique_ptr<TokenizerImpl>> TokenizerImpl::FromGguf(const gguf::File& file) {
  auto impl = std::make_unique<TokenizerImpl>();
  impl->source_ = file.path();
  const std::string& src = impl->source_;
  const gguf::Value* model = file.Find("tokenizer.ggml.model");
  const gguf::Value* tokens = file.Find("tokenizer.ggml.tokens");
  if (model == nullptr || tokens == nullptr || tokens->type != gguf::ValueType::kArray) {
    return NotFoundError(src + ": no tokenizer.ggml.model / tokenizer.ggml.tokens in the GGUF");
  }
  if (model->s != "gemma4" && model->s != "llama" && model->s != "gpt2") {
    return UnimplementedError(src + ": tokenizer.ggml.model \"" + model->s +
                              "\" is not supported (expected gemma4)");
  }
  const gguf::Value* types = file.Find("tokenizer.ggml.token_type");
  const size_t n = tokens->array.size();
  if (n == 0 || n > (1u << 24)) return InvalidArgumentError(src + ": bad tokenizer.ggml.tokens");
  if (types != nullptr && types->array.size() < n) {
    return InvalidArgumentError(src + ": tokenizer.ggml.token_type shorter than the tokens");
  }
  impl->EnsureId(static_cast<int32_t>(n - 1));
  for (size_t id = 0; id < n; ++id) {
    const std::string& piece = tokens->array[id].s;
    const int64_t type = types != nullptr ? types->array[id].i : 1;
    if (type == 3 || type == 4) {  // CONTROL / USER_DEFINED: matched as whole strings
      if (piece.empty()) continue;
      AddedToken a;
      a.id = static_cast<int32_t>(id);
      a.content = piece;
      a.special = type == 3 || (piece.size() > 2 && piece.front() == '<' && piece.back() == '>');
      GEMMA4_RETURN_IF_ERROR(impl->AddAddedToken(std::move(a)));
      impl->vocab_.emplace(piece, static_cast<int32_t>(id));
      continue;
    }
    impl->pieces_[id] = piece;
    if (type != 5) impl->vocab_.emplace(piece, static_cast<int32_t>(id));  // 5 = UNUSED
  }
  if (const gguf::Value* merges = file.Find("tokenizer.ggml.merges"); merges != nullptr) {
    int32_t rank = 0;
    for (const gguf::Value& m : merges->array) {
      const size_t sp = m.s.find(' ', 1);
      if (sp == std::string::npos) {
        return InvalidArgumentError(src + ": tokenizer.ggml.merges[" + std::to_string(rank) +
                                    "] is not \"A B\"");
      }
      // llama.cpp's converter writes literal spaces inside a part as U+0120.
      const std::string left = ReplaceAll(m.s.substr(0, sp), "\xC4\xA0", " ");
      const std::string right = ReplaceAll(m.s.substr(sp + 1), "\xC4\xA0", " ");
      GEMMA4_RETURN_IF_ERROR(impl->AddMerge(left, right, rank));
      ++rank;
    }
  }
  auto id_key = [&](const char* key) -> int32_t {
    const gguf::Value* v = file.Find(key);
    return v != nullptr && v->IsInteger() && v->i >= 0 && v->i < static_cast<int64_t>(n)
               ? static_cast<int32_t>(v->i)
               : -1;
  };
  impl->bos_id_ = id_key("tokenizer.ggml.bos_token_id");
  impl->eos_id_ = id_key("tokenizer.ggml.eos_token_id");
  impl->pad_id_ = id_key("tokenizer.ggml.padding_token_id");
  impl->unk_id_ = id_key("tokenizer.ggml.unknown_token_id");
  impl->byte_fallback_ = true;
  impl->byte_fallback_decode_ = true;
  impl->fuse_unk_ = true;
  Step replace;
  replace.kind = Step::kReplace;
  replace.pattern = " ";
  replace.content = std::string(kSpaceMark);
  impl->normalizers_.push_back(replace);
  impl->AddGemmaDecoders();
  // tokenizer.ggml.add_bos_token is forced to true by llama.cpp's converter for Gemma 4 while
  // the chat template carries <bos> itself, so it is not applied to Encode().
  impl->post_single_ = {PostItem{true, 0}};
  impl->FinishVocab();
  impl->ResolveSpecialIds();
  return impl;
}

// ---------------------------------------------------------------------------------------------
// Loading: SentencePiece model

StatusOr<std::unique_ptr<TokenizerImpl>> TokenizerImpl::FromSentencePiece(const std::string& path) {
#ifndef GEMMA4_HAVE_SENTENCEPIECE
  return UnimplementedError(path +
                            ": this build has no libsentencepiece (GEMMA4_WITH_SENTENCEPIECE"
                            "=OFF); use the checkpoint's tokenizer.json");
#else
  auto impl = std::make_unique<TokenizerImpl>();
  impl->source_ = path;
  GEMMA4_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  auto spm = std::make_unique<sentencepiece::SentencePieceProcessor>();
  const auto status = spm->LoadFromSerializedProto(bytes);
  if (!status.ok()) {
    return InvalidArgumentError(path + ": not a SentencePiece model: " + status.ToString());
  }
  const int n = spm->GetPieceSize();
  if (n <= 0) return InvalidArgumentError(path + ": empty SentencePiece model");
  impl->EnsureId(n - 1);
  // Pieces Gemma 4 marks special in tokenizer.json; SentencePiece stores most of them as
  // user-defined symbols, which it already keeps whole when encoding.
  static const char* kGemmaSpecial[] = {
      "<mask>",           "<|tool>",          "<tool|>",  "<|tool_call>", "<tool_call|>",
      "<|tool_response>", "<tool_response|>", "<|\"|>",   "<|think|>",    "<|channel>",
      "<channel|>",       "<|turn>",          "<turn|>",  "<|image>",     "<|audio>",
      "<|image|>",        "<|audio|>",        "<image|>", "<audio|>",     "<|video|>"};
  for (int id = 0; id < n; ++id) {
    const std::string& piece = spm->IdToPiece(id);
    impl->pieces_[id] = piece;
    bool special = spm->IsControl(id) || spm->IsUnknown(id);
    for (const char* s : kGemmaSpecial) special = special || piece == s;
    impl->special_[id] = special;
    if (special && !spm->IsControl(id) && !spm->IsUnknown(id) && !piece.empty()) {
      impl->spm_user_special_.push_back(piece);
    }
    if (spm->IsControl(id) && !piece.empty()) {
      // Control pieces (<bos>, <eos>, <pad>) are not matched in text by SentencePiece;
      // tokenizer.json lists them as added tokens, so split them out first.
      AddedToken a;
      a.id = id;
      a.content = piece;
      a.special = true;
      GEMMA4_RETURN_IF_ERROR(impl->AddAddedToken(std::move(a)));
    }
  }
  impl->AddGemmaDecoders();
  impl->spm_ = std::move(spm);
  impl->post_single_ = {PostItem{true, 0}};
  impl->FinishVocab();
  impl->ResolveSpecialIds();
  return impl;
#endif
}

// transformers 5 rebuilds the post-processor from tokenizer_config.json's add_bos_token /
// add_eos_token when they are given, overriding tokenizer.json's own template.
Status TokenizerImpl::ApplyTokenizerConfig(const std::string& tokenizer_path) {
  const std::filesystem::path dir = std::filesystem::path(tokenizer_path).parent_path();
  const std::filesystem::path config = dir / "tokenizer_config.json";
  std::error_code ec;
  // A tokenizer.model next to the checkpoint's tokenizer.json follows that file's rule.
  if (spm_ != nullptr && std::filesystem::is_regular_file(dir / "tokenizer.json", ec)) {
    auto text = ReadFileToString((dir / "tokenizer.json").string());
    if (text.ok()) {
      auto root = json::Parse(*text, (dir / "tokenizer.json").string());
      if (root.ok()) {
        if (const json::Value* pp = root->Find("post_processor"); pp != nullptr) {
          GEMMA4_RETURN_IF_ERROR(SetPostProcessor(*pp));
        }
      }
    }
  }
  if (!std::filesystem::is_regular_file(config, ec)) return OkStatus();
  GEMMA4_ASSIGN_OR_RETURN(std::string text, ReadFileToString(config.string()));
  GEMMA4_ASSIGN_OR_RETURN(json::Value root, json::Parse(text, config.string()));
  const json::Value* add_bos = root.Find("add_bos_token");
  const json::Value* add_eos = root.Find("add_eos_token");
  const bool has_bos = add_bos != nullptr && add_bos->is_bool();
  const bool has_eos = add_eos != nullptr && add_eos->is_bool();
  if (!has_bos && !has_eos) return OkStatus();
  post_single_.clear();
  if (has_bos && add_bos->as_bool() && bos_id_ >= 0) post_single_.push_back({false, bos_id_});
  post_single_.push_back({true, 0});
  if (has_eos && add_eos->as_bool() && eos_id_ >= 0) post_single_.push_back({false, eos_id_});
  return OkStatus();
}

TokenizerImpl::TokenizerImpl() = default;
TokenizerImpl::~TokenizerImpl() = default;

// ---------------------------------------------------------------------------------------------
// Public wrapper

Tokenizer::Tokenizer(std::unique_ptr<TokenizerImpl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

StatusOr<std::shared_ptr<const Tokenizer>> Tokenizer::FromHuggingFaceJson(std::string_view json,
                                                                          std::string_view source) {
  GEMMA4_ASSIGN_OR_RETURN(auto impl, TokenizerImpl::FromHuggingFaceJson(json, source));
  return std::shared_ptr<const Tokenizer>(new Tokenizer(std::move(impl)));
}

StatusOr<std::shared_ptr<const Tokenizer>> Tokenizer::FromSentencePiece(const std::string& path) {
  GEMMA4_ASSIGN_OR_RETURN(auto impl, TokenizerImpl::FromSentencePiece(path));
  return std::shared_ptr<const Tokenizer>(new Tokenizer(std::move(impl)));
}

StatusOr<std::shared_ptr<const Tokenizer>> TokenizerImpl::LoadGguf(const gguf::File& file) {
  GEMMA4_ASSIGN_OR_RETURN(auto impl, FromGguf(file));
  return std::shared_ptr<const Tokenizer>(new Tokenizer(std::move(impl)));
}

StatusOr<std::shared_ptr<const Tokenizer>> Tokenizer::Load(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const fs::path dir(path);
    if (fs::is_regular_file(dir / "tokenizer.json", ec))
      return Load((dir / "tokenizer.json").string());
    if (fs::is_regular_file(dir / "tokenizer.model", ec)) {
      return Load((dir / "tokenizer.model").string());
    }
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (entry.path().extension() == ".gguf") return Load(entry.path().string());
    }
    return NotFoundError(path + ": no tokenizer.json, tokenizer.model or .gguf in this directory");
  }
  if (!fs::is_regular_file(path, ec)) return NotFoundError(path + ": no such file");
  // Sniff the content rather than trusting the extension.
  GEMMA4_ASSIGN_OR_RETURN(auto mapped, MappedFile::Open(path));
  const std::string_view head(reinterpret_cast<const char*>(mapped->data()),
                              std::min<size_t>(mapped->size(), 4));
  if (head == "GGUF") {
    GEMMA4_ASSIGN_OR_RETURN(auto file, gguf::File::Open(path));
    return TokenizerImpl::LoadGguf(*file);
  }
  size_t first = 0;
  const char* data = reinterpret_cast<const char*>(mapped->data());
  while (first < mapped->size() && IsPythonWhitespace(data[first])) ++first;
  std::unique_ptr<TokenizerImpl> impl;
  if (first < mapped->size() && data[first] == '{') {
    GEMMA4_ASSIGN_OR_RETURN(
        impl, TokenizerImpl::FromHuggingFaceJson(std::string_view(data, mapped->size()), path));
  } else {
    GEMMA4_ASSIGN_OR_RETURN(impl, TokenizerImpl::FromSentencePiece(path));
  }
  GEMMA4_RETURN_IF_ERROR(impl->ApplyTokenizerConfig(path));
  return std::shared_ptr<const Tokenizer>(new Tokenizer(std::move(impl)));
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_special_tokens) const {
  std::vector<int32_t> ids;
  impl_->Encode(text, add_special_tokens, &ids);
  return ids;
}

std::string Tokenizer::Decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  return impl_->Decode(ids, skip_special_tokens);
}

StatusOr<std::string> Tokenizer::DecodeChecked(std::span<const int32_t> ids,
                                               bool skip_special_tokens) const {
  const int32_t n = vocab_size();
  for (size_t k = 0; k < ids.size(); ++k) {
    if (ids[k] < 0 || ids[k] >= n) {
      return InvalidArgumentError("ids[" + std::to_string(k) + "] = " + std::to_string(ids[k]) +
                                  " is outside the vocabulary (" + std::to_string(n) + " ids)");
    }
  }
  return impl_->Decode(ids, skip_special_tokens);
}

std::string Tokenizer::TokenBytes(int32_t id) const { return impl_->TokenBytes(id); }

std::string Tokenizer::TokenString(int32_t id) const {
  return id >= 0 && id < vocab_size() ? impl_->pieces()[id] : std::string();
}

int32_t Tokenizer::TokenId(std::string_view token) const { return impl_->PieceId(token); }

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && impl_->is_special(id);
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->pieces().size()); }
int32_t Tokenizer::bos_id() const { return impl_->bos_id(); }
int32_t Tokenizer::eos_id() const { return impl_->eos_id(); }
int32_t Tokenizer::pad_id() const { return impl_->pad_id(); }

// ---------------------------------------------------------------------------------------------
// StreamingDetokenizer

StreamingDetokenizer::StreamingDetokenizer(std::shared_ptr<const Tokenizer> tokenizer,
                                           bool skip_special_tokens)
    : tokenizer_(std::move(tokenizer)), skip_special_tokens_(skip_special_tokens) {}

namespace {
// Moves the longest prefix of `pending` that is complete UTF-8 into the result; bytes that can
// never become valid are replaced by U+FFFD. A truncated final character stays pending.
std::string TakeComplete(std::string* pending) {
  std::string out;
  size_t i = 0;
  while (i < pending->size()) {
    const utf8::Decoded d = utf8::DecodeAt(*pending, i);
    if (d.ok()) {
      out.append(*pending, i, d.length);
      i += d.length;
    } else if (d.status == utf8::DecodeStatus::kTruncated) {
      break;
    } else {
      out += utf8::kReplacementCharacter;
      ++i;
    }
  }
  pending->erase(0, i);
  return out;
}
}  // namespace

std::string StreamingDetokenizer::Push(int32_t id) {
  if (tokenizer_ == nullptr || id < 0 || id >= tokenizer_->vocab_size()) return {};
  if (skip_special_tokens_ && tokenizer_->IsSpecial(id)) return {};
  pending_ += tokenizer_->TokenBytes(id);
  at_start_ = false;
  return TakeComplete(&pending_);
}

std::string StreamingDetokenizer::Flush() {
  std::string out = TakeComplete(&pending_);
  for (size_t k = 0; k < pending_.size(); ++k) out += "\xEF\xBF\xBD";
  pending_.clear();
  return out;
}

void StreamingDetokenizer::Reset() {
  pending_.clear();
  at_start_ = true;
}

}  // namespace gemma4
