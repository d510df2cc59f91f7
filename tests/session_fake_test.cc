// Session bookkeeping without a model: sessions over tests/fake_model.h, whose contexts keep
// the ids they were fed and answer from all of them. Each test checks that the context holds
// exactly the session's ids, that every position beyond the reused prefix ran once, how many
// positions were reused, and that the reply equals a fresh session's over the same history.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "api/session_impl.h"
#include "fake_model.h"
#include "gemma4/session.h"

namespace gemma4 {
namespace {

using fake::FakeContext;
using fake::FakeStats;

GenerateOptions Greedy() {
  GenerateOptions o;
  o.max_tokens = 50;
  o.stop_on_repetition = false;
  return o;
}

// What a session's context holds, as the fake saw it.
const std::vector<int32_t>& ContextIds(const Session& s) {
  return dynamic_cast<const FakeContext&>(SessionAccess::Context(s)).ids();
}

struct Sent {
  Reply reply;
  int64_t forwarded = 0;  // positions the fake ran during the call
};

Sent SendChecked(Session& s, const std::string& text, const FakeStats& stats) {
  const int64_t before = stats.forwarded;
  auto r = s.Send(text, Greedy());
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  Sent out;
  if (!r.ok()) return out;
  out.reply = *r;
  out.forwarded = stats.forwarded - before;
  EXPECT_EQ(ContextIds(s), s.context_token_ids());
  // Every position past the reused prefix ran exactly once.
  EXPECT_EQ(out.forwarded, s.context_tokens() - r->reused_tokens);
  EXPECT_EQ(r->stop_reason, StopReason::kEndOfTurn);
  EXPECT_EQ(r->text.size(), static_cast<size_t>(fake::kReplyLetters));
  return out;
}

// The ids a new session holds after being sent `texts` in order (its last reply in *reply).
std::vector<int32_t> Fresh(const std::vector<std::string>& texts, std::string* reply,
                           const std::string& system = "") {
  auto stats = std::make_shared<FakeStats>();
  auto model = fake::MakeFakeModel(stats);
  SessionOptions options;
  options.system_prompt = system;
  auto s = Session::Create(model, options);
  EXPECT_TRUE(s.ok());
  if (!s.ok()) return {};
  for (const std::string& t : texts) *reply = SendChecked(**s, t, *stats).reply.text;
  return (*s)->context_token_ids();
}

size_t CommonPrefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

TEST(SessionFakeTest, NextTurnReusesTheWholeConversation) {
  auto stats = std::make_shared<FakeStats>();
  auto model = fake::MakeFakeModel(stats);
  ASSERT_NE(model, nullptr);
  auto s = Session::Create(model);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  const Sent first = SendChecked(**s, "Hello there", *stats);
  EXPECT_EQ(first.reply.reused_tokens, 0);
  const int64_t after_first = (*s)->context_tokens();
  const Sent second = SendChecked(**s, "And then?", *stats);
  // The first answer's ids are spliced into the new prompt as the cache holds them: all of the
  // first exchange is reused.
  EXPECT_EQ(second.reply.reused_tokens, after_first);
  std::string fresh_reply;
  EXPECT_EQ((*s)->context_token_ids(), Fresh({"Hello there", "And then?"}, &fresh_reply));
  EXPECT_EQ(second.reply.text, fresh_reply);
  EXPECT_EQ(stats->new_contexts, 1);
}

TEST(SessionFakeTest, RewindTruncatesWithinTheWindow) {
  auto stats = std::make_shared<FakeStats>();
  auto model = fake::MakeFakeModel(stats);
  auto s = Session::Create(model);
  ASSERT_TRUE(s.ok());
  SendChecked(**s, "One", *stats);
  const int64_t after_one = (*s)->context_tokens();
  SendChecked(**s, "Two", *stats);
  ASSERT_TRUE((*s)->Rewind(2).ok());
  const std::vector<int32_t> held = (*s)->context_token_ids();
  const Sent three = SendChecked(**s, "Three", *stats);
  std::string fresh_reply;
  const std::vector<int32_t> fresh = Fresh({"One", "Three"}, &fresh_reply);
  EXPECT_EQ((*s)->context_token_ids(), fresh);
  EXPECT_EQ(three.reply.text, fresh_reply);
  // Everything the dropped turn shares with the new one stays: the first exchange and the
  // start of the next user turn (up to "T" of "Two" / "Three").
  EXPECT_EQ(static_cast<size_t>(three.reply.reused_tokens), CommonPrefix(held, fresh));
  EXPECT_GT(three.reply.reused_tokens, after_one);
  EXPECT_EQ(stats->new_contexts, 1);  // no restart
}

TEST(SessionFakeTest, RewindPastTheWindowReturnsToTheSystemTurn) {
  auto stats = std::make_shared<FakeStats>();
  auto model = fake::MakeFakeModel(stats, /*window=*/4);
  SessionOptions options;
  options.system_prompt = "Be brief";
  auto s = Session::Create(model, options);
  ASSERT_TRUE(s.ok());
  const Sent one = SendChecked(**s, "One two three four", *stats);
  SendChecked(**s, "Five six seven", *stats);
  ASSERT_TRUE((*s)->Rewind(1).ok());  // the system prompt only
  const Sent again = SendChecked(**s, "Eight", *stats);
  // Far past the 4-position window: back to the rewind point the session set at the end of
  // the system turn ("<bos><|turn>system\nBe brief<turn|>\n"), which is reused.
  EXPECT_GT(again.reply.reused_tokens, 4);
  EXPECT_LT(again.reply.reused_tokens, one.reply.prompt_tokens);
  std::string fresh_reply;
  const std::vector<int32_t> fresh = Fresh({"Eight"}, &fresh_reply, "Be brief");
  EXPECT_EQ((*s)->context_token_ids(), fresh);
  EXPECT_EQ(again.reply.text, fresh_reply);
  const int32_t turn_open = 105;
  EXPECT_EQ(fresh[static_cast<size_t>(again.reply.reused_tokens)], turn_open);
  // Without a system turn there is no rewind point: the context starts over.
  auto stats2 = std::make_shared<FakeStats>();
  auto s2 = Session::Create(fake::MakeFakeModel(stats2, /*window=*/4));
  ASSERT_TRUE(s2.ok());
  SendChecked(**s2, "One two three four", *stats2);
  ASSERT_TRUE((*s2)->Rewind(0).ok());
  const Sent restart = SendChecked(**s2, "Eight", *stats2);
  EXPECT_EQ(restart.reply.reused_tokens, 0);
  EXPECT_EQ(stats2->new_contexts, 2);
  EXPECT_EQ((*s2)->context_token_ids(), Fresh({"Eight"}, &fresh_reply));
  EXPECT_EQ(restart.reply.text, fresh_reply);
}

TEST(SessionFakeTest, RestoredAndForkedSessionsContinueWithoutRerunning) {
  auto stats = std::make_shared<FakeStats>();
  auto model = fake::MakeFakeModel(stats);
  auto s = Session::Create(model);
  ASSERT_TRUE(s.ok());
  SendChecked(**s, "Remember this", *stats);
  const int64_t held = (*s)->context_tokens();
  auto saved = (*s)->SaveState();
  ASSERT_TRUE(saved.ok()) << saved.status().ToString();
  auto restored = Session::Restore(model, *saved);
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_EQ(ContextIds(**restored), (*s)->context_token_ids());
  auto fork = (*s)->Fork();
  ASSERT_TRUE(fork.ok());
  EXPECT_EQ(ContextIds(**fork), (*s)->context_token_ids());
  std::string expected;
  const std::vector<int32_t> fresh = Fresh({"Remember this", "What was it?"}, &expected);
  for (Session* copy : {restored->get(), fork->get(), s->get()}) {
    const Sent next = SendChecked(*copy, "What was it?", *stats);
    EXPECT_EQ(next.reply.reused_tokens, held);
    EXPECT_EQ(next.reply.text, expected);
    EXPECT_EQ(copy->context_token_ids(), fresh);
  }
}

}  // namespace
}  // namespace gemma4
