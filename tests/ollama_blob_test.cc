// Ollama's one-file Gemma 4 GGUFs (tests/fixtures/ollama, made by
// tools/reference/make_ollama_fixtures.py by Ollama's converter rules): the text model with the
// vision and audio towers inline, gemma4.vision.* / gemma4.audio.* metadata, Ollama's audio
// names, packed vision clip bounds, and MoE experts with gate and up stored apart. Checked
// against transformers 5.17's references of the same checkpoints (tests/fixtures/vision,
// tests/fixtures/audio).
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "audio/audio_encoder.h"
#include "formats/gguf.h"
#include "gemma4/model.h"
#include "gemma4/session.h"
#include "media/audio_file.h"
#include "media/image.h"
#include "media_reference.h"
#include "model/forward.h"
#include "model/model.h"
#include "prompt/media_batch.h"
#include "runtime/thread_pool.h"
#include "vision/image_preprocess.h"
#include "vision/vision_encoder.h"

namespace gemma4 {
namespace {

using testing::FixturePath;
using testing::GreedyContinuation;
using testing::Int;
using testing::Ints;
using testing::MaxAbsDiff;
using testing::ReadF32;

// As tests/vision_test.cc: the LM's 1e-3 plus the tiny models' measured gain (750 per unit)
// times the soft-token error, which the F16 patch embedding Ollama stores raises slightly.
constexpr float kTolerance = 1e-3f;
constexpr float kLogitsPerSoftTokenError = 750.0f;

const json::Value& VisionReference() {
  static const json::Value* root =
      new json::Value(testing::ReadJsonFixture(FixturePath("vision/reference.json")));
  return *root;
}

const json::Value& AudioReference() {
  static const json::Value* root =
      new json::Value(testing::ReadJsonFixture(FixturePath("audio/reference.json")));
  return *root;
}

std::string Blob(const std::string& name) { return FixturePath("ollama/" + name + ".gguf"); }

std::unique_ptr<LoadedModel> LoadBlob(const std::string& name) {
  auto model = LoadedModel::Load(Blob(name));
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  return model.ok() ? std::move(model).value() : nullptr;
}

std::vector<float> EncodeImage(const vision::VisionEncoder& encoder, const std::string& file,
                               int budget, ThreadPool* pool) {
  auto image = media::LoadImageFile(FixturePath("vision/images/" + file));
  EXPECT_TRUE(image.ok()) << image.status().ToString();
  if (!image.ok()) return {};
  auto patches = vision::PreprocessImage(*image, budget, encoder.config());
  EXPECT_TRUE(patches.ok()) << patches.status().ToString();
  if (!patches.ok()) return {};
  std::vector<float> soft;
  Status s = encoder.Encode(*patches, pool, &soft);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return soft;
}

// The 26B-A4B layout (MoE, standardize, bidirectional image blocks) from one Ollama file: the
// text model with split expert gate/up and Ollama's per-expert scale name, the inline vision
// tower, and transformers' logits and greedy ids for prompts with images.
TEST(OllamaBlob, MoeModelWithInlineVisionMatchesTransformers) {
  ThreadPool pool(2);
  auto model = LoadBlob("tiny-26b-ollama");
  ASSERT_NE(model, nullptr);
  ASSERT_TRUE(model->HasGgufTensor("blk.0.ffn_gate_exps.weight"));
  ASSERT_FALSE(model->HasGgufTensor("blk.0.ffn_gate_up_exps.weight"));
  ASSERT_TRUE(model->HasGgufTensor("blk.0.ffn_gate_inp.per_expert_scale"));
  auto encoder = vision::VisionEncoder::Load(*model);
  ASSERT_TRUE(encoder.ok()) << encoder.status().ToString();
  EXPECT_TRUE((*encoder)->config().standardize);
  const json::Value& ref = *VisionReference().Find("models")->Find("tiny-26b-vision");
  const json::Value& images = *VisionReference().Find("images");
  int prompts = 0;
  for (const json::Value& p : ref.Find("prompts")->as_array()) {
    std::vector<EncodedMedia> media;
    float soft_err = 0;
    for (const json::Value& key : p.Find("images")->as_array()) {
      const json::Value& entry = *images.Find(key.as_string());
      EncodedMedia e;
      e.embeddings = EncodeImage(**encoder, entry.Find("file")->as_string(),
                                 static_cast<int>(Int(*entry.Find("budget"))), &pool);
      e.rows = static_cast<int64_t>(e.embeddings.size()) / model->config().hidden_size;
      const std::string soft_file =
          ref.Find("soft")->Find(key.as_string())->Find("file")->as_string();
      soft_err = std::max(
          soft_err,
          MaxAbsDiff(e.embeddings, ReadF32(FixturePath("vision/tiny-26b-vision/" + soft_file))));
      media.push_back(std::move(e));
    }
    EXPECT_LE(soft_err, 3e-5f);
    auto batch = MediaBatch::Build(model->config(), Ints(*p.Find("ids")), media);
    ASSERT_TRUE(batch.ok()) << batch.status().ToString();
    InferenceState state(*model, &pool, std::max<int64_t>(16, batch->longest_block()));
    std::vector<float> logits;
    ASSERT_TRUE(state.Forward(batch->input(), LogitsMode::kAll, &logits).ok());
    const std::vector<float> want =
        ReadF32(FixturePath("vision/tiny-26b-vision/" + p.Find("logits")->as_string()));
    EXPECT_LE(MaxAbsDiff(logits, want), kTolerance + kLogitsPerSoftTokenError * soft_err);
    EXPECT_EQ(GreedyContinuation(&state, logits, model->config().vocab_size,
                                 Ints(*p.Find("greedy")).size()),
              Ints(*p.Find("greedy")));
    ++prompts;
  }
  EXPECT_GT(prompts, 0);
}

// The E2B layout (PLE, clipped linears) from one Ollama file: audio under Ollama's names and
// metadata, vision with its clip bounds; transformers' logits and greedy ids for the prompts
// with a recording and with an image.
TEST(OllamaBlob, E2bWithInlineAudioAndVisionMatchesTransformers) {
  ThreadPool pool(2);
  auto model = LoadBlob("tiny-e2b-ollama");
  ASSERT_NE(model, nullptr);
  auto audio = audio::AudioEncoder::Load(*model);
  ASSERT_TRUE(audio.ok()) << audio.status().ToString();
  auto vision = vision::VisionEncoder::Load(*model);
  ASSERT_TRUE(vision.ok()) << vision.status().ToString();
  EXPECT_TRUE((*vision)->config().use_clipped_linears);
  const int64_t H = model->config().hidden_size;
  const json::Value& ref = *AudioReference().Find("models")->Find("tiny-e2b-audio");
  // Soft tokens of every reference clip (sdpa references; Ollama stores the tower in bf16 as
  // the checkpoint does, so this is the checkpoint's own bound).
  for (const auto& [clip, soft] : ref.Find("soft")->as_object()) {
    auto decoded = media::LoadAudioFile(FixturePath("audio/wav/" + clip + ".wav"));
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    std::vector<std::vector<float>> pieces;
    ASSERT_TRUE(audio::EncodeClip(**audio, decoded->samples.data(),
                                  static_cast<int64_t>(decoded->samples.size()), &pool, &pieces)
                    .ok());
    ASSERT_EQ(pieces.size(), 1u);
    const std::string file = soft.is_string() ? soft.as_string() : soft.Find("file")->as_string();
    EXPECT_LE(MaxAbsDiff(pieces[0], ReadF32(FixturePath("audio/tiny-e2b-audio/" + file))), 1e-5f)
        << clip;
  }
  int prompts = 0;
  for (const json::Value& p : ref.Find("prompts")->as_array()) {
    std::vector<EncodedMedia> media;
    for (const json::Value& clip : p.Find("audio")->as_array()) {
      auto decoded = media::LoadAudioFile(FixturePath("audio/wav/" + clip.as_string() + ".wav"));
      ASSERT_TRUE(decoded.ok());
      std::vector<std::vector<float>> pieces;
      ASSERT_TRUE(audio::EncodeClip(**audio, decoded->samples.data(),
                                    static_cast<int64_t>(decoded->samples.size()), &pool, &pieces)
                      .ok());
      EncodedMedia e;
      e.kind = MediaKind::kAudio;
      e.rows = static_cast<int64_t>(pieces[0].size()) / H;
      e.embeddings = std::move(pieces[0]);
      media.push_back(std::move(e));
    }
    const json::Value* image = p.Find("image");
    const bool with_image = image != nullptr && image->is_string();
    if (with_image) {
      EncodedMedia e;
      e.embeddings = EncodeImage(**vision, image->as_string() + ".png", 70, &pool);
      e.rows = static_cast<int64_t>(e.embeddings.size()) / H;
      media.push_back(std::move(e));
    }
    auto batch = MediaBatch::Build(model->config(), Ints(*p.Find("ids")), media);
    ASSERT_TRUE(batch.ok()) << batch.status().ToString();
    InferenceState state(*model, &pool);
    std::vector<float> logits;
    ASSERT_TRUE(state.Forward(batch->input(), LogitsMode::kAll, &logits).ok());
    const std::vector<float> want =
        ReadF32(FixturePath("audio/tiny-e2b-audio/" + p.Find("logits")->as_string()));
    // Soft-token error: the checkpoint's (1.1e-5 for images, 1e-6 for audio) plus the F16
    // patch embedding's 2.6e-6.
    EXPECT_LE(MaxAbsDiff(logits, want),
              kTolerance + kLogitsPerSoftTokenError * (with_image ? 1.4e-5f : 1e-6f));
    EXPECT_EQ(GreedyContinuation(&state, logits, model->config().vocab_size,
                                 Ints(*p.Find("greedy")).size()),
              Ints(*p.Find("greedy")));
    ++prompts;
  }
  EXPECT_GT(prompts, 0);
}

bool IsVisionClipBound(const std::string& name) {
  if (name.rfind("v.blk.", 0) != 0) return false;
  for (const char* b : {".input_min", ".input_max", ".output_min", ".output_max"}) {
    if (name.ends_with(b)) return true;
  }
  return false;
}

// A copy of a GGUF without the tensors `drop` selects; `edit` may replace a tensor's bytes.
void RewriteGguf(const std::string& from, const std::string& to,
                 const std::function<bool(const std::string&)>& drop,
                 const std::function<void(const std::string&, std::vector<uint8_t>*)>& edit) {
  auto file = gguf::File::Open(from);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  gguf::Writer w;
  for (const auto& [key, value] : (*file)->metadata()) {
    if (key != "general.alignment") w.Set(key, value);
  }
  std::vector<const TensorView*> kept;
  std::vector<std::vector<uint8_t>> bytes;
  for (const TensorView& t : (*file)->tensors()) {
    if (drop(t.name)) continue;
    std::vector<uint8_t> b(t.data, t.data + t.nbytes);
    edit(t.name, &b);
    std::vector<int64_t> shape = t.shape;
    if (b.size() != t.nbytes) shape = {static_cast<int64_t>(b.size() / sizeof(float))};
    w.AddTensor(t.name, t.dtype, shape);
    kept.push_back(&t);
    bytes.push_back(std::move(b));
  }
  Status s = w.Write(to, [&](size_t index, std::vector<uint8_t>* out) {
    *out = bytes[index];
    return OkStatus();
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
}

// Ollama also packs the vision clip bounds into v.clamp_data; a file with only the packed form
// encodes exactly as one with the 1-element tensors.
TEST(OllamaBlob, PackedClipBoundsAloneEncodeIdentically) {
  ThreadPool pool(2);
  auto model = LoadBlob("tiny-e2b-ollama");
  ASSERT_NE(model, nullptr);
  const int hidden = model->config().hidden_size;
  const std::string packed_only = ::testing::TempDir() + "/ollama_packed_bounds.gguf";
  RewriteGguf(Blob("tiny-e2b-ollama"), packed_only, IsVisionClipBound,
              [](const std::string&, std::vector<uint8_t>*) {});
  auto full = vision::VisionEncoder::LoadMmproj(Blob("tiny-e2b-ollama"), hidden);
  ASSERT_TRUE(full.ok()) << full.status().ToString();
  auto packed = vision::VisionEncoder::LoadMmproj(packed_only, hidden);
  ASSERT_TRUE(packed.ok()) << packed.status().ToString();
  EXPECT_TRUE((*packed)->config().use_clipped_linears);
  const std::vector<float> a = EncodeImage(**full, "gray_333x251.png", 70, &pool);
  const std::vector<float> b = EncodeImage(**packed, "gray_333x251.png", 70, &pool);
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a, b);

  // The packed bounds are used, not ignored: scrambling the first layer's q bounds (the first
  // four floats) changes the encoding.
  const std::string scrambled = ::testing::TempDir() + "/ollama_scrambled_bounds.gguf";
  RewriteGguf(Blob("tiny-e2b-ollama"), scrambled, IsVisionClipBound,
              [](const std::string& name, std::vector<uint8_t>* b) {
                if (name != "v.clamp_data") return;
                const float tight[4] = {-0.01f, 0.01f, -0.01f, 0.01f};
                std::memcpy(b->data(), tight, sizeof(tight));
              });
  auto changed = vision::VisionEncoder::LoadMmproj(scrambled, hidden);
  ASSERT_TRUE(changed.ok()) << changed.status().ToString();
  EXPECT_NE(EncodeImage(**changed, "gray_333x251.png", 70, &pool), a);

  // A packed tensor of the wrong size is refused by name.
  const std::string short_packed = ::testing::TempDir() + "/ollama_short_bounds.gguf";
  RewriteGguf(Blob("tiny-e2b-ollama"), short_packed, IsVisionClipBound,
              [](const std::string& name, std::vector<uint8_t>* b) {
                if (name == "v.clamp_data") b->resize(b->size() - 4 * sizeof(float));
              });
  auto bad = vision::VisionEncoder::LoadMmproj(short_packed, hidden);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("v.clamp_data"), std::string::npos)
      << bad.status().ToString();
  std::remove(packed_only.c_str());
  std::remove(scrambled.c_str());
  std::remove(short_packed.c_str());
}

// Through the public API: an Ollama blob needs no mmproj; the session answers an image and a
// recording as the checkpoint does, and a blob whose inline tower is damaged still serves text
// and names the problem when an image is sent.
TEST(OllamaBlob, SessionsUseTheInlineTowers) {
  auto blob = testing::LoadMediaChatModel(Blob("tiny-e2b-ollama"));
  auto ckpt = testing::LoadMediaChatModel(FixturePath("audio/tiny-e2b-audio"));
  ASSERT_NE(blob, nullptr);
  ASSERT_NE(ckpt, nullptr);
  EXPECT_TRUE(blob->info().vision);
  EXPECT_TRUE(blob->info().audio);
  const std::vector<ContentPart> content = {
      ContentPart::Text("Look and listen:"),
      ContentPart::FromImage(Image::FromFile(FixturePath("vision/images/up_200x150.png"))),
      ContentPart::FromAudio(Audio::FromFile(FixturePath("audio/wav/speechlike_27200.wav")))};
  std::vector<std::string> replies;
  for (const auto& model : {blob, ckpt}) {
    auto session = Session::Create(model);
    ASSERT_TRUE(session.ok()) << session.status().ToString();
    auto reply = (*session)->Send(content, testing::GreedyOptions(8));
    ASSERT_TRUE(reply.ok()) << reply.status().ToString();
    EXPECT_EQ(reply->generated_tokens, 8);
    replies.push_back(reply->text);
  }
  EXPECT_EQ(replies[0], replies[1]);

  const std::string damaged = ::testing::TempDir() + "/ollama_damaged_tower.gguf";
  RewriteGguf(
      Blob("tiny-e2b-ollama"), damaged,
      [](const std::string& name) { return IsVisionClipBound(name) || name == "v.std_bias"; },
      [](const std::string& name, std::vector<uint8_t>* b) {
        if (name == "v.clamp_data") b->resize(8);
      });
  auto text_only = testing::LoadMediaChatModel(damaged);
  ASSERT_NE(text_only, nullptr);
  EXPECT_FALSE(text_only->info().vision);
  EXPECT_TRUE(text_only->info().audio);
  auto session = Session::Create(text_only);
  ASSERT_TRUE(session.ok());
  EXPECT_TRUE((*session)->Send("Hello", testing::GreedyOptions(2)).ok());
  auto refused = (*session)->Send(
      {ContentPart::FromImage(Image::FromFile(FixturePath("vision/images/up_200x150.png")))},
      testing::GreedyOptions(2));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("v.clamp_data"), std::string::npos)
      << refused.status().ToString();
  std::remove(damaged.c_str());
}

}  // namespace
}  // namespace gemma4
