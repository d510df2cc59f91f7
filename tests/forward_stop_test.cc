// InferenceState's rewind reach: a forward step stopped between layers (ForwardInput::stop,
// how Session::Cancel reaches a prompt) keeps the position after the last whole step and
// gives the same bits afterwards, and rewind_floor() holds every Truncate to positions whose
// sliding-window rows are still in the rings (a step overwrites rows a whole ring back, whether
// it finishes or not), with rewind points restoring what a stopped step overwrote.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/forward.h"
#include "model/model.h"
#include "reference_fixture.h"

namespace gemma4 {
namespace {

// tiny-e2b: 10 layers (6 with their own KV, sliding window 8 on 8 of them). Steps of 6: the
// rings hold 8 - 1 + 6 = 13 rows, so a 6-token step at p overwrites positions p - 13 .. p - 8.
constexpr int64_t kStep = 6;

class ForwardStopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = LoadedModel::Load(testing::ModelDir("tiny-e2b") + "/gemma4");
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    model_ = std::move(model).value();
    ASSERT_EQ(model_->config().sliding_window, 8);
    for (int i = 0; i < 40; ++i) ids_.push_back((i * 37 + 11) % 200 + 10);
  }

  // Runs ids [begin, end) in Forward calls of at most kStep tokens; the logits of every position.
  std::vector<float> Run(InferenceState& state, int64_t begin, int64_t end,
                         std::function<bool()> stop = {}) {
    std::vector<float> all, part;
    for (int64_t at = begin; at < end; at += kStep) {
      ForwardInput input;
      input.ids = ids_.data() + at;
      input.n = std::min(kStep, end - at);
      input.stop = stop;
      last_ = state.Forward(input, LogitsMode::kAll, &part);
      if (!last_.ok()) break;
      all.insert(all.end(), part.begin(), part.end());
    }
    return all;
  }

  // A stop that answers true at its `n`-th question (1-based): before layer (n - 1) % 10 of
  // the call's step.
  static std::function<bool()> StopAt(int n) {
    auto asked = std::make_shared<int>(0);
    return [asked, n] { return ++*asked >= n; };
  }

  // `state` saved (AppendState) and restored into *restored (a fresh state), as a session's
  // saved state is; `bytes` gets the saved bytes.
  void SaveAndRestore(const InferenceState& state, InferenceState* restored, std::string* bytes) {
    bytes->clear();
    state.AppendState(bytes);
    size_t offset = 0;
    ASSERT_TRUE(restored
                    ->RestoreState(state.position(), state.rewind_floor(), state.saved_ring_rows(),
                                   *bytes, &offset)
                    .ok());
    EXPECT_EQ(offset, bytes->size());
  }

  std::unique_ptr<LoadedModel> model_;
  std::vector<int32_t> ids_;
  Status last_;
};

TEST_F(ForwardStopTest, StoppedStepKeepsThePositionAndTheNextStepsBits) {
  InferenceState reference(*model_, nullptr, kStep);
  Run(reference, 0, 18);
  const std::vector<float> want = Run(reference, 18, 30);
  ASSERT_TRUE(last_.ok()) << last_.ToString();

  InferenceState state(*model_, nullptr, kStep);
  Run(state, 0, 18);
  EXPECT_EQ(state.rewind_floor(), 12);
  // Stopped before layer 0: nothing written, nothing lost.
  Run(state, 18, 24, StopAt(1));
  EXPECT_EQ(last_.code(), StatusCode::kCancelled) << last_.ToString();
  EXPECT_EQ(state.position(), 18);
  EXPECT_EQ(state.rewind_floor(), 12);
  // Stopped before layer 4, after layers 0-3 wrote positions 18..23 over 5..10.
  Run(state, 18, 24, StopAt(5));
  EXPECT_EQ(last_.code(), StatusCode::kCancelled) << last_.ToString();
  EXPECT_NE(last_.message().find("before layer 4 of 10"), std::string::npos) << last_.message();
  EXPECT_EQ(state.position(), 18);
  EXPECT_EQ(state.rewind_floor(), 18);
  EXPECT_TRUE(state.CanTruncateTo(18));
  EXPECT_FALSE(state.CanTruncateTo(17));  // its window needs position 10
  // The positions the step needs (11..17) are intact: the same bits as never stopped.
  EXPECT_EQ(Run(state, 18, 30), want);
  ASSERT_TRUE(last_.ok()) << last_.ToString();
}

TEST_F(ForwardStopTest, RewindPointBelowAStoppedStepRestoresItsRings) {
  InferenceState reference(*model_, nullptr, kStep);
  Run(reference, 0, 14);
  const std::vector<float> want = Run(reference, 14, 30);

  InferenceState state(*model_, nullptr, kStep);
  Run(state, 0, 14);
  ASSERT_TRUE(state.SetRewindPoint(0).ok());
  Run(state, 14, 17);
  EXPECT_EQ(state.rewind_floor(), 11);
  // Stopped before layer 9 (the 8 before it wrote): positions 17..22 overwrote 4..9, which
  // position 14's window (7..13) reads.
  Run(state, 17, 23, StopAt(10));
  EXPECT_EQ(last_.code(), StatusCode::kCancelled);
  EXPECT_EQ(state.position(), 17);
  EXPECT_EQ(state.rewind_floor(), 17);
  EXPECT_FALSE(state.CanTruncateTo(15));
  EXPECT_FALSE(state.Truncate(15).ok());
  ASSERT_TRUE(state.CanTruncateTo(14));  // the rewind point
  ASSERT_TRUE(state.Truncate(14).ok());
  EXPECT_EQ(state.rewind_floor(), 8);  // the point's own
  EXPECT_EQ(Run(state, 14, 30), want);
}

TEST_F(ForwardStopTest, TruncatesDoNotReachBackFurtherThanTheRings) {
  InferenceState reference(*model_, nullptr, kStep);
  Run(reference, 0, 14);
  const std::vector<float> want = Run(reference, 14, 30);

  InferenceState state(*model_, nullptr, kStep);
  Run(state, 0, 20);  // steps end at 6, 12, 18, 20: the rings hold positions 7..19
  EXPECT_EQ(state.rewind_floor(), 14);
  ASSERT_TRUE(state.Truncate(16).ok());
  // 10 is within one step of 16, but its window (3..9) lost positions 3..6 to 16..19 on the
  // way to 20.
  EXPECT_FALSE(state.CanTruncateTo(10));
  ASSERT_TRUE(state.Truncate(14).ok());
  EXPECT_EQ(Run(state, 14, 30), want);

  // Copies and saved states keep the floor.
  InferenceState copy(*model_, nullptr, kStep);
  ASSERT_TRUE(copy.CopyStateFrom(state).ok());
  EXPECT_EQ(copy.rewind_floor(), state.rewind_floor());
  std::string bytes;
  InferenceState restored(*model_, nullptr, kStep);
  SaveAndRestore(state, &restored, &bytes);
  EXPECT_EQ(restored.rewind_floor(), state.rewind_floor());
  EXPECT_FALSE(restored.CanTruncateTo(state.rewind_floor() - 1));
}

// A saved state holds each ring's slots up to the position (KvCache::SavedRingRows): all of a
// ring's rows once it has wrapped, only positions [0, end) before. A state restored from
// those rows continues with the bits of the state it was saved from: at a position the ring has
// not reached, after a rewind point took it back below the ring's length, and after a Truncate
// from past the ring's length to a position under it (its first slots then hold later
// positions, which nothing reads).
TEST_F(ForwardStopTest, SavedRingsStopAtThePositionAndRestoreExactly) {
  constexpr int64_t kRing = 8 - 1 + kStep;
  auto save_restore_continue = [&](InferenceState& state, int64_t want_rows) {
    SCOPED_TRACE("position " + std::to_string(state.position()));
    EXPECT_EQ(state.saved_ring_rows(), want_rows);
    std::string bytes;
    InferenceState restored(*model_, nullptr, kStep);
    SaveAndRestore(state, &restored, &bytes);
    // Another row count than the saved one (and than a whole ring) is refused.
    InferenceState refused(*model_, nullptr, kStep);
    size_t offset = 0;
    if (want_rows > 0 && want_rows < kRing) {
      EXPECT_EQ(
          refused
              .RestoreState(state.position(), state.rewind_floor(), want_rows - 1, bytes, &offset)
              .code(),
          StatusCode::kDataLoss);
    }
    const int64_t at = state.position();
    EXPECT_EQ(Run(restored, at, 30), Run(state, at, 30));
    ASSERT_TRUE(last_.ok()) << last_.ToString();
  };
  {
    InferenceState fresh(*model_, nullptr, kStep);
    save_restore_continue(fresh, 0);
  }
  {
    InferenceState state(*model_, nullptr, kStep);
    Run(state, 0, 10);
    save_restore_continue(state, 10);
  }
  {
    InferenceState state(*model_, nullptr, kStep);
    Run(state, 0, 20);
    save_restore_continue(state, kRing);
  }
  {
    InferenceState state(*model_, nullptr, kStep);
    Run(state, 0, 9);
    ASSERT_TRUE(state.SetRewindPoint(0).ok());
    Run(state, 9, 27);
    ASSERT_TRUE(state.Truncate(9).ok());
    save_restore_continue(state, 9);
  }
  {
    InferenceState state(*model_, nullptr, kStep);
    Run(state, 0, 12);
    Run(state, 12, 18);  // positions 13..17 in slots 0..4
    ASSERT_TRUE(state.Truncate(12).ok());
    save_restore_continue(state, 12);
  }
}

}  // namespace
}  // namespace gemma4
