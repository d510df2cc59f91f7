// Saved session states are tamper-evident: a format version, a checksum over the whole blob and
// a fingerprint of the model's weights. A damaged blob (any single bit flip, a truncation), a
// state of another model with the same dimensions, and a format-1 blob are refused with a
// clear error; an intact one restores.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

#include "api/model_impl.h"
#include "api/session_impl.h"
#include "base/hash.h"
#include "base/json.h"
#include "gemma4/model.h"
#include "gemma4/session.h"
#include "tiny_models.h"

namespace gemma4 {
namespace {

namespace fs = std::filesystem;
using testing::LoadTinyModelAt;
const std::string kFixtures = GEMMA4_FIXTURES_DIR;

const std::string kTiny31b = kFixtures + "/models/tiny-31b/gemma4_text";

// Greedy replies of at most `max_tokens` tokens.
GenerateOptions Greedy(int max_tokens) {
  GenerateOptions options;
  options.max_tokens = max_tokens;
  options.sampler = SamplerOptions{};
  options.sampler->temperature = 0;
  return options;
}

// The next turn of a restored session against the session it was saved from: the same reply,
// from the restored cache (the same tokens reused, none recomputed).
void ExpectSameNextTurn(Session& original, Session& restored) {
  auto original_reply = original.Send("And the window?", Greedy(6));
  auto restored_reply = restored.Send("And the window?", Greedy(6));
  ASSERT_TRUE(original_reply.ok() && restored_reply.ok());
  EXPECT_EQ(original_reply->text, restored_reply->text);
  EXPECT_EQ(original_reply->generated_tokens, restored_reply->generated_tokens);
  EXPECT_GT(restored_reply->reused_tokens, 0);
  EXPECT_EQ(original_reply->reused_tokens, restored_reply->reused_tokens);
}

// A fresh session's saved state.
std::string SavedFresh(const std::shared_ptr<const Model>& model) {
  auto fresh = Session::Create(model);
  EXPECT_TRUE(fresh.ok());
  if (!fresh.ok()) return "";
  auto saved = (*fresh)->SaveState();
  EXPECT_TRUE(saved.ok());
  return saved.ok() ? *saved : "";
}

std::string SavedAfterATurn(const std::shared_ptr<const Model>& model) {
  auto session = Session::Create(model);
  EXPECT_TRUE(session.ok());
  if (!session.ok()) return "";
  EXPECT_TRUE((*session)->Send("Hello there", Greedy(3)).ok());
  auto saved = (*session)->SaveState();
  EXPECT_TRUE(saved.ok()) << saved.status().message();
  return saved.ok() ? *saved : "";
}

TEST(SessionStateTest, IntactStateRestores) {
  auto model = LoadTinyModelAt(kTiny31b);
  ASSERT_NE(model, nullptr);
  const std::string saved = SavedAfterATurn(model);
  ASSERT_FALSE(saved.empty());
  EXPECT_EQ(saved.substr(0, 8), "G4SESS02");
  auto restored = Session::Restore(model, saved);
  EXPECT_TRUE(restored.ok()) << restored.status().message();
}

// The sliding-window rings' size depends on the forward step (512 tokens on CPUs with AMX
// tiles, 128 elsewhere or under a memory cap): a state records its step and the restoring
// session adopts it, so a state saved with other steps restores and continues exactly.
TEST(SessionStateTest, StateOfAnotherStepRestoresAndContinues) {
  auto model = LoadTinyModelAt(kTiny31b);
  ASSERT_NE(model, nullptr);
  auto session = Session::Create(model);
  ASSERT_TRUE(session.ok());
  SessionAccess::UseStep(**session, 37);
  ASSERT_TRUE((*session)->Send("Hello there, how are the rings today?", Greedy(3)).ok());
  auto saved = (*session)->SaveState();
  ASSERT_TRUE(saved.ok()) << saved.status().message();
  auto restored = Session::Restore(model, *saved);
  ASSERT_TRUE(restored.ok()) << restored.status().message();
  EXPECT_EQ(SessionAccess::Context(**restored).max_chunk(), 37);
  ExpectSameNextTurn(**session, **restored);
}

TEST(SessionStateTest, EverySingleBitFlipIsRefused) {
  auto model = LoadTinyModelAt(kTiny31b);
  ASSERT_NE(model, nullptr);
  const std::string saved = SavedAfterATurn(model);
  ASSERT_GT(saved.size(), 1000u);
  // Flips spread over the whole blob (header, JSON, KV cache, logits, checksum); format 1
  // accepted every flip in the KV data.
  const size_t kFlips = 1500;
  for (size_t i = 0; i < kFlips; ++i) {
    const size_t at = i * (saved.size() - 1) / (kFlips - 1);
    std::string damaged = saved;
    damaged[at] = static_cast<char>(damaged[at] ^ (1 << (i % 8)));
    auto restored = Session::Restore(model, damaged);
    ASSERT_FALSE(restored.ok()) << "bit " << i % 8 << " of byte " << at << " of " << saved.size();
    if (at >= 8) {  // the magic itself: "not a gemma4 session state"
      EXPECT_EQ(restored.status().code(), StatusCode::kDataLoss) << at;
      EXPECT_NE(restored.status().message().find("checksum mismatch"), std::string::npos)
          << restored.status().message();
    }
  }
  for (size_t cut : {size_t{0}, size_t{9}, saved.size() / 2, saved.size() - 1}) {
    EXPECT_FALSE(Session::Restore(model, saved.substr(0, cut)).ok()) << cut;
  }
}

// A copy of the tiny 31B checkpoint with one weight changed: same dimensions, other weights.
class OtherWeights {
 public:
  OtherWeights() {
    char tmpl[] = "/tmp/gemma4_state_test_XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    fs::copy(kTiny31b, dir_, fs::copy_options::recursive);
    const std::string path = dir_ + "/model.safetensors";
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    uint64_t header_size = 0;
    file.read(reinterpret_cast<char*>(&header_size), 8);
    std::string header(header_size, '\0');
    file.read(header.data(), static_cast<std::streamsize>(header_size));
    auto parsed = json::Parse(header, "header");
    EXPECT_TRUE(parsed.ok());
    const json::Value* tensor = parsed->Find("model.norm.weight");
    if (tensor == nullptr) tensor = parsed->Find("model.language_model.norm.weight");
    EXPECT_NE(tensor, nullptr);
    if (tensor == nullptr) return;
    int64_t begin = 0;
    EXPECT_TRUE(tensor->Find("data_offsets")->as_array()[0].GetInt64(&begin));
    // The final norm's first weight becomes 1.2345 (the fixture is float32).
    EXPECT_EQ(tensor->Find("dtype")->as_string(), "F32");
    file.seekp(static_cast<std::streamoff>(8 + header_size + begin));
    const float value = 1.2345f;
    file.write(reinterpret_cast<const char*>(&value), sizeof(value));
    EXPECT_TRUE(file.good());
  }
  ~OtherWeights() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

TEST(SessionStateTest, StateOfAnotherModelWithTheSameDimensionsIsRefused) {
  auto model = LoadTinyModelAt(kTiny31b);
  ASSERT_NE(model, nullptr);
  OtherWeights other_dir;
  auto other = LoadTinyModelAt(other_dir.dir());
  ASSERT_NE(other, nullptr);
  ASSERT_EQ(other->info().num_parameters, model->info().num_parameters);
  const std::string saved = SavedAfterATurn(model);
  ASSERT_FALSE(saved.empty());
  auto restored = Session::Restore(other, saved);
  ASSERT_FALSE(restored.ok());
  EXPECT_EQ(restored.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(restored.status().message().find("different model"), std::string::npos)
      << restored.status().message();
  // The same files loaded twice are the same model.
  auto again = LoadTinyModelAt(kTiny31b);
  EXPECT_TRUE(Session::Restore(again, saved).ok());
}

TEST(SessionStateTest, FormatOneIsRefusedWithAClearMessage) {
  auto model = LoadTinyModelAt(kTiny31b);
  ASSERT_NE(model, nullptr);
  std::string saved = SavedAfterATurn(model);
  ASSERT_FALSE(saved.empty());
  saved[7] = '1';
  auto restored = Session::Restore(model, saved);
  ASSERT_FALSE(restored.ok());
  EXPECT_NE(restored.status().message().find("format 1"), std::string::npos)
      << restored.status().message();
}

// A saved state holds each sliding-window ring up to the position (KvCache::SavedRingRows), not
// whole: a fresh session's state is the header and the JSON alone (it was 664 KB for tiny-e2b
// at 512-token steps), and one after a short turn holds as many ring rows as tokens.
TEST(SessionStateTest, RingsAreSavedUpToThePosition) {
  auto model = LoadTinyModelAt(kFixtures + "/models/tiny-e2b/gemma4");
  ASSERT_NE(model, nullptr);
  const std::string empty = SavedFresh(model);
  ASSERT_FALSE(empty.empty());
  EXPECT_LT(empty.size(), 1024u);
  EXPECT_NE(empty.find("\"ring_rows\":0"), std::string::npos);
  const std::string turn = SavedAfterATurn(model);
  const size_t at = turn.rfind("\"tokens\":[");  // the session's, after the history's
  ASSERT_NE(at, std::string::npos);
  const int64_t tokens = std::count(turn.begin() + at, turn.begin() + turn.find(']', at), ',') + 1;
  EXPECT_NE(turn.find("\"ring_rows\":" + std::to_string(tokens) + ","), std::string::npos);
  auto restored = Session::Restore(model, turn);
  ASSERT_TRUE(restored.ok()) << restored.status().message();
  auto again = (*restored)->SaveState();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, turn);
}

// States saved before the rings were cut at the position hold whole rings (W - 1 + step rows,
// the slots past the position zero while a ring has not wrapped) and no "ring_rows": such a
// state, rewritten here from a current one, restores, uses its cache and answers as the
// session it was saved from.
TEST(SessionStateTest, StateWithWholeRingsRestores) {
  auto model = LoadTinyModelAt(kFixtures + "/models/tiny-e2b/gemma4");
  ASSERT_NE(model, nullptr);
  auto session = Session::Create(model);
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE((*session)->Send("Hello there", Greedy(3)).ok());
  auto saved = (*session)->SaveState();
  ASSERT_TRUE(saved.ok());
  // magic + fingerprint (16 bytes), JSON size, JSON, KV layers, logits, checksum (8 bytes).
  auto get_u64 = [&](size_t at) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i)
      v |= static_cast<uint64_t>(static_cast<uint8_t>((*saved)[at + i])) << (8 * i);
    return v;
  };
  auto put_u64 = [](uint64_t v, std::string* out) {
    for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  };
  const size_t json_size = get_u64(16);
  std::string json = saved->substr(24, json_size);
  const size_t key = json.find("\"ring_rows\":");
  ASSERT_NE(key, std::string::npos);
  json.erase(key, json.find(',', key) + 1 - key);
  // Layers with their own KV, in order: K then V rows of f32 (this float model's cache type).
  const ModelConfig& config = ModelAccess::Impl(*model).loaded->config();
  const int64_t step = SessionAccess::Context(**session).max_chunk();
  const int64_t position = SessionAccess::Context(**session).position();
  ASSERT_EQ(SessionAccess::Context(**session).kv_type(), KvType::kF32);
  std::string old = saved->substr(0, 16);
  put_u64(json.size(), &old);
  old += json;
  size_t at = 24 + json_size;
  int rings = 0;
  for (const LayerConfig& lc : config.layers) {
    if (lc.kv_shared) continue;
    const int64_t row = int64_t{lc.num_kv_heads} * lc.head_dim * 4;
    const int64_t capacity = KvRingRows(config, step);
    ASSERT_TRUE(!lc.sliding || capacity > position);
    rings += lc.sliding;
    for (int kv = 0; kv < 2; ++kv) {  // K, then V
      old += saved->substr(at, position * row);
      at += position * row;
      if (lc.sliding) old.append((capacity - position) * row, '\0');
    }
  }
  ASSERT_GT(rings, 0);
  old += saved->substr(at, saved->size() - 8 - at);  // the logits
  put_u64(Hash64(old), &old);
  ASSERT_GT(old.size(), saved->size());
  auto restored = Session::Restore(model, old);
  ASSERT_TRUE(restored.ok()) << restored.status().message();
  ExpectSameNextTurn(**session, **restored);
}

// Writes seeds for fuzz/corpus/session_state (the payload between the fingerprint and the
// checksum, as session_state_fuzz.cc expects): GEMMA4_WRITE_STATE_SEEDS=DIR
// session_state_test --gtest_also_run_disabled_tests --gtest_filter=*WriteFuzzSeeds
TEST(SessionStateTest, DISABLED_WriteFuzzSeeds) {
  const char* dir = std::getenv("GEMMA4_WRITE_STATE_SEEDS");
  ASSERT_NE(dir, nullptr);
  auto model = LoadTinyModelAt(kFixtures + "/models/tiny-e2b/gemma4");
  ASSERT_NE(model, nullptr);
  const std::string empty = SavedFresh(model);
  const std::string turn = SavedAfterATurn(model);
  int index = 0;
  for (const std::string& blob : {empty, turn}) {
    std::ofstream out(std::string(dir) + "/seed" + std::to_string(index++),
                      std::ios::binary | std::ios::trunc);
    out << blob.substr(16, blob.size() - 16 - 8);
  }
}

}  // namespace
}  // namespace gemma4
