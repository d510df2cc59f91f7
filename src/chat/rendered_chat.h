// A rendered chat prompt as segments in order, so that whoever tokenizes it knows which text
// the template wrote (markup: control tokens in it are control tokens) and which came from the
// conversation (content: text whatever it spells), where media placeholders stand and where a
// caller splices token ids it already has. Text() is the prompt as transformers renders it.
#ifndef GEMMA4_SRC_CHAT_RENDERED_CHAT_H_
#define GEMMA4_SRC_CHAT_RENDERED_CHAT_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gemma4::chat {

struct Segment {
  enum class Kind {
    kMarkup,   // written by the template (turn markers, tool syntax, numbers printed)
    kContent,  // from the conversation: message text, names, strings of arguments, results
               // and declarations
    kImage,    // a media item's placeholder; `text` is its token as the template writes it
    kAudio,
    kVideo,
    kSplice,  // a message part {"type": "token_ids", "index": N}: the caller's ids go here
  };
  Kind kind = Kind::kMarkup;
  std::string text;   // empty for kSplice
  size_t splice = 0;  // kSplice: the part's index
};

class RenderedChat {
 public:
  void Markup(std::string_view text) { Append(Segment::Kind::kMarkup, text); }
  void Content(std::string_view text) { Append(Segment::Kind::kContent, text); }
  // `kind` is kImage, kAudio or kVideo; `placeholder` its token's text ("<|image|>").
  void Media(Segment::Kind kind, std::string_view placeholder) {
    segments_.push_back({kind, std::string(placeholder), 0});
  }
  void Splice(size_t index) { segments_.push_back({Segment::Kind::kSplice, std::string(), index}); }
  // Appends `other`'s segments.
  void Append(const RenderedChat& other) {
    for (const Segment& s : other.segments_) {
      if (s.kind == Segment::Kind::kMarkup || s.kind == Segment::Kind::kContent) {
        Append(s.kind, s.text);
      } else {
        segments_.push_back(s);
      }
    }
  }

  const std::vector<Segment>& segments() const { return segments_; }
  // The prompt as one string (splices write nothing).
  std::string Text() const {
    std::string out;
    for (const Segment& s : segments_) out += s.text;
    return out;
  }

 private:
  // Adjacent text of one kind is one segment.
  void Append(Segment::Kind kind, std::string_view text) {
    if (text.empty()) return;
    if (!segments_.empty() && segments_.back().kind == kind) {
      segments_.back().text += text;
    } else {
      segments_.push_back({kind, std::string(text), 0});
    }
  }

  std::vector<Segment> segments_;
};

}  // namespace gemma4::chat

#endif  // GEMMA4_SRC_CHAT_RENDERED_CHAT_H_
