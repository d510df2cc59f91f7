// formats/mmproj: which towers a GGUF holds, the metadata key prefix of each layout, the
// Hugging Face -> llama.cpp -> Ollama tensor names and Ollama's packed clamp bounds, on the
// fixtures (llama.cpp's converter, the Ollama blobs) and on small files written here.
#include "formats/mmproj.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "formats/gguf.h"

namespace gemma4::mmproj {
namespace {

const std::string kFixtures = GEMMA4_FIXTURES_DIR;
const std::string kVisionMmproj = kFixtures + "/vision/llama_cpp/tiny-e2b-vision-mmproj-f32.gguf";
const std::string kAudioMmproj = kFixtures + "/audio/llama_cpp/tiny-e2b-audio-mmproj-f32.gguf";
const std::string kTextGguf = kFixtures + "/vision/llama_cpp/tiny-e2b-vision-f32.gguf";
const std::string kOllamaE2b = kFixtures + "/ollama/tiny-e2b-ollama.gguf";
const std::string kOllama26b = kFixtures + "/ollama/tiny-26b-ollama.gguf";

std::unique_ptr<gguf::File> OpenGguf(const std::string& path) {
  auto file = gguf::File::Open(path);
  EXPECT_TRUE(file.ok()) << file.status().ToString();
  return file.ok() ? std::move(file).value() : nullptr;
}

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/gemma4_mmproj_" + std::to_string(::getpid()) + "_" + name;
}

// A small GGUF: `metadata`, then F32 tensors with the given values (shape [n]).
std::string WriteGguf(const std::string& name,
                      const std::vector<std::pair<std::string, gguf::Value>>& metadata,
                      const std::vector<std::pair<std::string, std::vector<float>>>& tensors) {
  gguf::Writer w;
  for (const auto& [key, value] : metadata) w.Set(key, value);
  for (const auto& [tensor, values] : tensors) {
    w.AddTensor(tensor, DType::kF32, {static_cast<int64_t>(values.size())});
  }
  const std::string path = TempPath(name);
  const Status s = w.Write(path, [&](size_t i, std::vector<uint8_t>* bytes) {
    const std::vector<float>& v = tensors[i].second;
    bytes->resize(v.size() * sizeof(float));
    std::memcpy(bytes->data(), v.data(), bytes->size());
    return OkStatus();
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  return path;
}

TEST(Mmproj, VisionNamesAreLlamaCppsAndOllamasTheSame) {
  const std::map<std::string, std::string> want = {
      {"model.embed_vision.embedding_projection.weight", "mm.input_projection.weight"},
      {"model.vision_tower.patch_embedder.input_proj.weight", "v.patch_embd.weight"},
      {"model.vision_tower.patch_embedder.position_embedding_table", "v.position_embd.weight"},
      {"model.vision_tower.std_bias", "v.std_bias"},
      {"model.vision_tower.encoder.layers.7.input_layernorm.weight", "v.blk.7.ln1.weight"},
      {"model.vision_tower.encoder.layers.7.pre_feedforward_layernorm.weight",
       "v.blk.7.ln2.weight"},
      {"model.vision_tower.encoder.layers.0.self_attn.k_norm.weight", "v.blk.0.attn_k_norm.weight"},
      {"model.vision_tower.encoder.layers.2.self_attn.o_proj.linear.weight",
       "v.blk.2.attn_out.weight"},
      {"model.vision_tower.encoder.layers.2.mlp.down_proj.output_max",
       "v.blk.2.ffn_down.output_max"},
      // Not stored by llama.cpp: no name.
      {"model.vision_tower.encoder.layers.2.unknown.weight", ""},
      {"model.audio_tower.layers.0.norm_out.weight", ""},
  };
  for (const auto& [hf, llama] : want) {
    EXPECT_EQ(LlamaCppName(Tower::kVision, hf), llama) << hf;
    EXPECT_EQ(OllamaName(Tower::kVision, llama), llama) << hf;
  }
}

TEST(Mmproj, AudioNamesCrossTheConvNormsAndOllamaRenamesFive) {
  // llama.cpp's converter maps lconv1d.pre_layer_norm to conv_norm and lconv1d.conv_norm to
  // norm_conv (clip.cpp loads them crossed back).
  EXPECT_EQ(LlamaCppName(Tower::kAudio, "model.audio_tower.layers.3.lconv1d.pre_layer_norm.weight"),
            "a.blk.3.conv_norm.weight");
  EXPECT_EQ(LlamaCppName(Tower::kAudio, "model.audio_tower.layers.3.lconv1d.conv_norm.weight"),
            "a.blk.3.norm_conv.weight");
  EXPECT_EQ(LlamaCppName(Tower::kAudio, "model.audio_tower.layers.x.norm_out.weight"), "");
  EXPECT_EQ(LlamaCppName(Tower::kAudio, "model.audio_tower.layers.1.self_attn.q_proj.bias"), "");
  EXPECT_EQ(LlamaCppName(Tower::kAudio, "model.vision_tower.std_bias"), "");
  EXPECT_EQ(LlamaCppName(Tower::kAudio, "model.embed_audio.embedding_projection.weight"),
            "mm.a.input_projection.weight");
  EXPECT_EQ(LlamaCppName(Tower::kAudio, "model.audio_tower.layers.4.self_attn.post.input_min"),
            "a.blk.4.attn_out.input_min");
  // Hugging Face -> llama.cpp -> Ollama for each tensor Ollama names its own way.
  const std::vector<std::pair<std::string, std::string>> renamed = {
      {"model.audio_tower.subsample_conv_projection.input_proj_linear.weight",
       "a.pre_encode.out.weight"},
      {"model.audio_tower.output_proj.weight", "mm.a.fc.weight"},
      {"model.audio_tower.output_proj.bias", "mm.a.fc.bias"},
      {"model.audio_tower.layers.5.norm_pre_attn.weight", "a.blk.5.ln1.weight"},
      {"model.audio_tower.layers.5.norm_post_attn.weight", "a.blk.5.ln2.weight"},
      {"model.audio_tower.layers.5.norm_out.weight", "a.blk.5.layer_pre_norm.weight"},
      {"model.audio_tower.layers.5.self_attn.relative_k_proj.weight", "a.blk.5.linear_pos.weight"},
      // The same in both.
      {"model.audio_tower.layers.5.self_attn.q_proj.linear.weight", "a.blk.5.attn_q.weight"},
      {"model.audio_tower.subsample_conv_projection.layer0.conv.weight", "a.conv1d.0.weight"},
  };
  for (const auto& [hf, ollama] : renamed) {
    EXPECT_EQ(OllamaName(Tower::kAudio, LlamaCppName(Tower::kAudio, hf)), ollama) << hf;
  }
}

TEST(Mmproj, StoredTensorsBelongToTheirTower) {
  const std::vector<std::pair<std::string, int>> names = {
      // 0 vision, 1 audio, -1 the text model's.
      {"v.patch_embd.weight", 0}, {"mm.input_projection.weight", 0},   {"v.clamp_data", 0},
      {"a.conv1d.0.weight", 1},   {"mm.a.input_projection.weight", 1}, {"mm.a.fc.weight", 1},
      {"token_embd.weight", -1},  {"blk.0.attn_q.weight", -1},         {"output_norm.weight", -1},
  };
  for (const auto& [name, want] : names) {
    Tower tower = Tower::kVision;
    const bool found = StoredTower(name, &tower);
    EXPECT_EQ(found ? static_cast<int>(tower) : -1, want) << name;
  }
  // Every tensor of a combined mmproj is one tower's.
  auto file = OpenGguf(kAudioMmproj);
  ASSERT_NE(file, nullptr);
  for (const TensorView& t : file->tensors()) {
    Tower tower;
    EXPECT_TRUE(StoredTower(t.name, &tower)) << t.name;
  }
}

TEST(Mmproj, TowersOfEachLayout) {
  struct Case {
    std::string path;
    bool vision, audio;
    std::string vision_type, audio_type;
  };
  const Case cases[] = {
      {kVisionMmproj, true, false, "gemma4v", ""},
      {kAudioMmproj, true, true, "gemma4v", "gemma4a"},
      {kOllamaE2b, true, true, "gemma4v", "gemma4a"},
      {kOllama26b, true, false, "gemma4v", ""},
      {kTextGguf, false, false, "", ""},
  };
  for (const Case& c : cases) {
    auto file = OpenGguf(c.path);
    ASSERT_NE(file, nullptr);
    EXPECT_EQ(HasTower(*file, Tower::kVision), c.vision) << c.path;
    EXPECT_EQ(HasTower(*file, Tower::kAudio), c.audio) << c.path;
    EXPECT_EQ(ProjectorType(*file, Tower::kVision), c.vision_type) << c.path;
    EXPECT_EQ(ProjectorType(*file, Tower::kAudio), c.audio_type) << c.path;
    const bool ollama = c.path == kOllamaE2b || c.path == kOllama26b;
    EXPECT_EQ(IsOllamaBlob(*file, Tower::kVision), ollama) << c.path;
    EXPECT_EQ(IsOllamaBlob(*file, Tower::kAudio), ollama && c.audio) << c.path;
  }
}

TEST(Mmproj, KeysAndTensorsThroughEachLayout) {
  // llama.cpp: clip.<tower>.* keys, llama.cpp's names.
  auto audio = TowerFile::Open(kAudioMmproj, Tower::kAudio);
  ASSERT_TRUE(audio.ok()) << audio.status().ToString();
  EXPECT_FALSE((*audio)->ollama());
  EXPECT_EQ((*audio)->Key("block_count"), "clip.audio.block_count");
  EXPECT_EQ((*audio)->ProjectionDimKey(), "clip.audio.projection_dim");
  EXPECT_NE((*audio)->gguf().Find((*audio)->Key("block_count")), nullptr);
  EXPECT_NE((*audio)->gguf().Find((*audio)->ProjectionDimKey()), nullptr);
  const TensorView* out = (*audio)->Find("model.audio_tower.output_proj.weight");
  ASSERT_NE(out, nullptr);
  EXPECT_EQ(out->name, "a.pre_encode.out.weight");
  const TensorView* conv_norm =
      (*audio)->Find("model.audio_tower.layers.0.lconv1d.pre_layer_norm.weight");
  ASSERT_NE(conv_norm, nullptr);
  EXPECT_EQ(conv_norm->name, "a.blk.0.conv_norm.weight");
  EXPECT_EQ((*audio)->Find("model.audio_tower.layers.0.no_such.weight"), nullptr);

  // Ollama: gemma4.<tower>.* keys, the text model's width, Ollama's audio names.
  auto blob = TowerFile::Open(kOllamaE2b, Tower::kAudio);
  ASSERT_TRUE(blob.ok()) << blob.status().ToString();
  EXPECT_TRUE((*blob)->ollama());
  EXPECT_EQ((*blob)->Key("block_count"), "gemma4.audio.block_count");
  EXPECT_EQ((*blob)->ProjectionDimKey(), "gemma4.embedding_length");
  EXPECT_NE((*blob)->gguf().Find((*blob)->Key("block_count")), nullptr);
  EXPECT_NE((*blob)->gguf().Find((*blob)->ProjectionDimKey()), nullptr);
  out = (*blob)->Find("model.audio_tower.output_proj.weight");
  ASSERT_NE(out, nullptr);
  EXPECT_EQ(out->name, "mm.a.fc.weight");
  const TensorView* in =
      (*blob)->Find("model.audio_tower.subsample_conv_projection.input_proj_linear.weight");
  ASSERT_NE(in, nullptr);
  EXPECT_EQ(in->name, "a.pre_encode.out.weight");

  auto vision = TowerFile::Open(kOllama26b, Tower::kVision);
  ASSERT_TRUE(vision.ok()) << vision.status().ToString();
  EXPECT_EQ((*vision)->Key("patch_size"), "gemma4.vision.patch_size");
  EXPECT_NE((*vision)->gguf().Find((*vision)->Key("patch_size")), nullptr);
  const TensorView* patch = (*vision)->Find("model.vision_tower.patch_embedder.input_proj.weight");
  ASSERT_NE(patch, nullptr);
  EXPECT_EQ(patch->name, "v.patch_embd.weight");
}

TEST(Mmproj, OpenRefusesFilesWithoutTheTower) {
  auto text = TowerFile::Open(kTextGguf, Tower::kVision);
  EXPECT_EQ(text.status().code(), StatusCode::kNotFound);
  EXPECT_NE(text.status().message().find("no Gemma 4 vision tower"), std::string::npos)
      << text.status().message();
  auto no_audio = TowerFile::Open(kVisionMmproj, Tower::kAudio);
  EXPECT_EQ(no_audio.status().code(), StatusCode::kNotFound);
  EXPECT_NE(no_audio.status().message().find("expected gemma4a"), std::string::npos)
      << no_audio.status().message();
  auto no_vision = TowerFile::Open(kOllama26b, Tower::kAudio);
  EXPECT_EQ(no_vision.status().code(), StatusCode::kNotFound);

  using gguf::Value;
  const std::string unified = WriteGguf("unified.gguf",
                                        {{"general.architecture", Value::String("clip")},
                                         {"clip.vision.projector_type", Value::String("gemma4uv")},
                                         {"clip.audio.projector_type", Value::String("gemma4ua")}},
                                        {{"v.dummy", {0.0f}}});
  EXPECT_EQ(TowerFile::Open(unified, Tower::kVision).status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(TowerFile::Open(unified, Tower::kAudio).status().code(), StatusCode::kUnimplemented);
  std::remove(unified.c_str());

  // The single-modality key: vision prefers its own key, audio the shared one (clip.cpp).
  const std::string legacy = WriteGguf("legacy.gguf",
                                       {{"general.architecture", Value::String("clip")},
                                        {"clip.projector_type", Value::String("gemma4a")},
                                        {"clip.vision.projector_type", Value::String("gemma4v")},
                                        {"clip.has_audio_encoder", Value::Bool(false)}},
                                       {{"v.dummy", {0.0f}}});
  auto file = OpenGguf(legacy);
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(ProjectorType(*file, Tower::kVision), "gemma4v");
  EXPECT_EQ(ProjectorType(*file, Tower::kAudio), "gemma4a");
  EXPECT_TRUE(TowerFile::Open(legacy, Tower::kVision).ok());
  auto disabled = TowerFile::Open(legacy, Tower::kAudio);
  EXPECT_EQ(disabled.status().code(), StatusCode::kNotFound);
  EXPECT_NE(disabled.status().message().find("clip.has_audio_encoder is false"), std::string::npos)
      << disabled.status().message();
  std::remove(legacy.c_str());
}

TEST(Mmproj, OllamaClampDataUnpacksInLayerLinearBoundOrder) {
  constexpr int kLayers = 2;
  std::vector<float> packed((kLayers * 7 + 1) * 4);
  for (size_t i = 0; i < packed.size(); ++i) packed[i] = 0.5f + static_cast<float>(i);
  TensorView t;
  t.name = "v.clamp_data";
  t.dtype = DType::kF32;
  t.shape = {static_cast<int64_t>(packed.size())};
  t.data = reinterpret_cast<const uint8_t*>(packed.data());
  t.nbytes = packed.size() * sizeof(float);
  t.file = "blob.gguf";
  auto views = UnpackOllamaClampData(t, kLayers);
  ASSERT_TRUE(views.ok()) << views.status().ToString();
  ASSERT_EQ(views->size(), size_t{kLayers * 7 * 4});
  auto value = [](const TensorView& v) {
    float f;
    std::memcpy(&f, v.data, sizeof f);
    return f;
  };
  // [layer][q, k, v, out, gate, up, down][input_min, input_max, output_min, output_max].
  EXPECT_EQ((*views)[0].name, "v.blk.0.attn_q.input_min");
  EXPECT_EQ(value((*views)[0]), 0.5f);
  EXPECT_EQ((*views)[7].name, "v.blk.0.attn_k.output_max");
  EXPECT_EQ(value((*views)[7]), 7.5f);
  EXPECT_EQ((*views)[4 * 6 + 2].name, "v.blk.0.ffn_down.output_min");
  EXPECT_EQ(value((*views)[4 * 6 + 2]), 26.5f);
  EXPECT_EQ((*views)[28 + 13].name, "v.blk.1.attn_out.input_max");
  EXPECT_EQ(value((*views)[28 + 13]), 41.5f);
  EXPECT_EQ((*views)[28 + 13].shape, std::vector<int64_t>{1});

  // The projector's 4 floats are part of the size: one short, or another layer count, fails.
  t.shape = {t.shape[0] - 4};
  t.nbytes -= 4 * sizeof(float);
  auto short_one = UnpackOllamaClampData(t, kLayers);
  EXPECT_EQ(short_one.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(short_one.status().message().find("v.clamp_data"), std::string::npos);
  EXPECT_FALSE(UnpackOllamaClampData(t, kLayers + 1).ok());
}

TEST(Mmproj, TowerFileUnpacksClampDataOnlyWithoutStoredBounds) {
  using gguf::Value;
  std::vector<float> packed((1 * 7 + 1) * 4);
  for (size_t i = 0; i < packed.size(); ++i) packed[i] = -3.0f - static_cast<float>(i);
  const std::vector<std::pair<std::string, Value>> meta = {
      {"general.architecture", Value::String("gemma4")},
      {"gemma4.vision.block_count", Value::Int(gguf::ValueType::kUint32, 1)}};
  const std::string q_min = "model.vision_tower.encoder.layers.0.self_attn.q_proj.input_min";
  const std::string up_max = "model.vision_tower.encoder.layers.0.mlp.up_proj.output_max";
  {
    const std::string path =
        WriteGguf("packed.gguf", meta, {{"v.patch_embd.weight", {1.0f}}, {"v.clamp_data", packed}});
    auto file = TowerFile::Open(path, Tower::kVision);
    ASSERT_TRUE(file.ok()) << file.status().ToString();
    EXPECT_TRUE((*file)->ollama());
    EXPECT_EQ((*file)->Find(q_min), nullptr);  // before unpacking
    // The layer count is the caller's (gemma4.vision.block_count): a wrong one is refused.
    EXPECT_EQ((*file)->UnpackClampData(2).code(), StatusCode::kInvalidArgument);
    ASSERT_TRUE((*file)->UnpackClampData(1).ok());
    const TensorView* q = (*file)->Find(q_min);
    ASSERT_NE(q, nullptr);
    float f;
    std::memcpy(&f, q->data, sizeof f);
    EXPECT_EQ(f, -3.0f);
    const TensorView* up = (*file)->Find(up_max);  // [0][up = 5][output_max = 3]
    ASSERT_NE(up, nullptr);
    std::memcpy(&f, up->data, sizeof f);
    EXPECT_EQ(f, -3.0f - 23.0f);
    std::remove(path.c_str());
  }
  {
    // Bounds stored as 1-element tensors win; the packed tensor (here of a wrong size) is not
    // read.
    const std::string path = WriteGguf("stored.gguf", meta,
                                       {{"v.patch_embd.weight", {1.0f}},
                                        {"v.clamp_data", {1.0f, 2.0f}},
                                        {"v.blk.0.attn_q.input_min", {42.0f}}});
    auto file = TowerFile::Open(path, Tower::kVision);
    ASSERT_TRUE(file.ok()) << file.status().ToString();
    ASSERT_TRUE((*file)->UnpackClampData(1).ok());
    const TensorView* q = (*file)->Find(q_min);
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(q->name, "v.blk.0.attn_q.input_min");
    float f;
    std::memcpy(&f, q->data, sizeof f);
    EXPECT_EQ(f, 42.0f);
    EXPECT_EQ((*file)->Find(up_max), nullptr);
    std::remove(path.c_str());
  }
}

}  // namespace
}  // namespace gemma4::mmproj
