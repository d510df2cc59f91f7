// End-to-end tests of the gemma4 command-line tool (tools/cli/gemma4_main.cc): the built binary
// is run through the shell on the tiny fixture checkpoints and its outputs, exit codes and
// messages are checked against the transformers reference (tests/fixtures/models/*).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "base/json.h"
#include "formats/mapped_file.h"
#include "reference_fixture.h"
#include "sanitizers.h"

namespace gemma4 {
namespace {

namespace fs = std::filesystem;

// Same tolerance as golden_test.cc (see the derivation there): the CLI runs the same forward
// pass and writes the float32 logits verbatim.
constexpr float kTolerance = 1e-3f;

using testing::kLayouts;
using testing::kVariants;
using testing::ModelDir;
using Prompt = testing::ReferencePrompt;
using Reference = testing::ReferenceFixture;

Reference LoadReference(const std::string& variant) {
  return testing::LoadReferenceFixture(variant);
}

// Layers of a checkpoint, from its text config.
int NumLayers(const std::string& variant) {
  auto text = ReadFileToString(ModelDir(variant) + "/gemma4_text/config.json");
  EXPECT_TRUE(text.ok());
  if (!text.ok()) return -1;
  auto root = json::Parse(*text, "config.json");
  EXPECT_TRUE(root.ok());
  int64_t n = -1;
  if (root.ok()) root->Find("num_hidden_layers")->GetInt64(&n);
  return static_cast<int>(n);
}

std::string Join(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s;
}

std::string ShellQuote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::vector<char> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string ReadText(const std::string& path) {
  const std::vector<char> bytes = ReadBytes(path);
  return std::string(bytes.begin(), bytes.end());
}

std::vector<float> ReadFloats(const std::string& path) {
  const std::vector<char> bytes = ReadBytes(path);
  EXPECT_EQ(bytes.size() % sizeof(float), 0u) << path;
  std::vector<float> f(bytes.size() / sizeof(float));
  std::memcpy(f.data(), bytes.data(), f.size() * sizeof(float));
  return f;
}

struct Result {
  int exit_code = -1;
  std::string out, err;
};

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "gemma4_cli_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  // Runs the CLI with `args` (each passed as one shell word) and `input` on stdin; captures
  // stdout and stderr.
  Result Run(const std::vector<std::string>& args, const std::string& input = "") {
    std::string cmd = ShellQuote(GEMMA4_CLI_PATH);
    for (const std::string& a : args) cmd += " " + ShellQuote(a);
    const std::string out = Path("stdout.txt"), err = Path("stderr.txt"), in = Path("stdin.txt");
    {
      std::ofstream f(in, std::ios::binary);
      f << input;
    }
    cmd += " >" + ShellQuote(out) + " 2>" + ShellQuote(err) + " <" + ShellQuote(in);
    const int status = std::system(cmd.c_str());
    Result r;
    if (status != -1 && WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
    const std::vector<char> o = ReadBytes(out), e = ReadBytes(err);
    r.out.assign(o.begin(), o.end());
    r.err.assign(e.begin(), e.end());
    return r;
  }

  // Runs `logits` and checks the file against the reference logits of `prompt`.
  void CheckLogits(const std::string& model, const Reference& ref, size_t prompt,
                   const std::vector<std::string>& extra) {
    const Prompt& p = ref.prompts[prompt];
    const std::string out = Path("logits.f32");
    fs::remove(out);
    std::vector<std::string> args = {"logits",    "--model", model, "--ids",
                                     Join(p.ids), "--out",   out};
    args.insert(args.end(), extra.begin(), extra.end());
    const Result r = Run(args);
    std::string what = model + " prompt " + std::to_string(prompt);
    for (const std::string& e : extra) what += " " + e;
    ASSERT_EQ(r.exit_code, 0) << what << "\n" << r.err;
    EXPECT_EQ(r.out, "") << what;
    const std::vector<float> got = ReadFloats(out);
    const std::vector<float> want = ReadFloats(p.logits_file);
    ASSERT_EQ(want.size(), p.ids.size() * ref.vocab) << p.logits_file;
    ASSERT_EQ(got.size(), p.ids.size() * ref.vocab) << what;
    float max_err = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_TRUE(std::isfinite(got[i])) << what << " index " << i;
      max_err = std::max(max_err, std::fabs(got[i] - want[i]));
    }
    EXPECT_LE(max_err, kTolerance) << what;
  }

  // Checks an expected failure: exit code 1, nothing on stdout, a message on stderr that
  // contains `needle`, and no output file left behind.
  void ExpectFailure(const std::vector<std::string>& args, const std::string& needle) {
    const std::string out = Path("logits.f32");
    fs::remove(out);
    const Result r = Run(args);
    std::string what;
    for (const std::string& a : args) what += " " + a;
    EXPECT_EQ(r.exit_code, 1) << what << "\nstderr: " << r.err;
    EXPECT_EQ(r.out, "") << what;
    EXPECT_NE(r.err.find("gemma4 " + args[0] + ": "), std::string::npos) << what << "\n" << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << what << "\nstderr: " << r.err;
    EXPECT_TRUE(!r.err.empty() && r.err.back() == '\n') << what;
    EXPECT_FALSE(fs::exists(out)) << what;
  }

  fs::path dir_;
};

TEST_F(CliTest, LogitsMatchReferenceForEveryVariantAndLayout) {
  for (const char* variant : kVariants) {
    const Reference ref = LoadReference(variant);
    ASSERT_EQ(ref.prompts.size(), 2u) << variant;
    for (const char* layout : kLayouts) {
      CheckLogits(ModelDir(variant) + "/" + layout, ref, 1, {});
      if (HasFatalFailure()) return;
    }
  }
}

TEST_F(CliTest, ChunkedAndThreadedLogitsMatchReference) {
  for (const char* variant : kVariants) {
    const Reference ref = LoadReference(variant);
    ASSERT_EQ(ref.prompts.size(), 2u) << variant;
    const std::string model = ModelDir(variant) + "/gemma4_text";
    CheckLogits(model, ref, 0, {"--chunk", "3", "--threads", "2"});
    if (HasFatalFailure()) return;
  }
  // Each option on its own, and a chunk longer than the prompt.
  const Reference ref = LoadReference("tiny-e4b");
  const std::string model = ModelDir("tiny-e4b") + "/gemma4";
  CheckLogits(model, ref, 0, {"--chunk", "3"});
  CheckLogits(model, ref, 1, {"--threads", "2"});
  CheckLogits(model, ref, 0, {"--threads", "3", "--chunk", "1000"});
}

TEST_F(CliTest, ModelFilePath) {
  const Reference ref = LoadReference("tiny-31b");
  const std::string file = ModelDir("tiny-31b") + "/gemma4_text/model.safetensors";
  CheckLogits(file, ref, 0, {});
  CheckLogits(file, ref, 1, {"--chunk", "7"});
  const Result r =
      Run({"generate", "--model", file, "--ids", Join(ref.prompts[0].ids), "-n", "12", "--greedy"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, Join(ref.prompts[0].greedy) + "\n");
}

TEST_F(CliTest, GenerateGreedyPrintsReferenceIds) {
  for (const char* variant : kVariants) {
    const Reference ref = LoadReference(variant);
    for (size_t i = 0; i < ref.prompts.size(); ++i) {
      const Prompt& p = ref.prompts[i];
      ASSERT_EQ(p.greedy.size(), 12u);
      // Alternate layouts and thread counts over the prompts.
      const std::string model = ModelDir(variant) + "/" + kLayouts[i % 2];
      std::vector<std::string> args = {"generate",  "--model", model, "--ids",
                                       Join(p.ids), "-n",      "12",  "--greedy"};
      if (i == 1) args.insert(args.end(), {"--threads", "2"});
      const Result r = Run(args);
      EXPECT_EQ(r.exit_code, 0) << variant << " " << i << "\n" << r.err;
      EXPECT_EQ(r.out, Join(p.greedy) + "\n") << variant << " prompt " << i;
    }
  }
  // Fewer steps give a prefix of the greedy continuation.
  const Reference ref = LoadReference("tiny-e4b");
  const Result r = Run({"generate", "--model", ModelDir("tiny-e4b") + "/gemma4_text", "--ids",
                        Join(ref.prompts[1].ids), "-n", "3", "--greedy"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const std::vector<int32_t> prefix(ref.prompts[1].greedy.begin(),
                                    ref.prompts[1].greedy.begin() + 3);
  EXPECT_EQ(r.out, Join(prefix) + "\n");
}

TEST_F(CliTest, InfoPrintsLayerTable) {
  const std::regex layer_row(
      R"(^\s*(\d+)\s+(sliding|global)\s+\d+\s+\d+\s+(yes|no)\s+\d+\s+\d+\s+\d+\s*$)");
  for (const char* variant : kVariants) {
    const int layers = NumLayers(variant);
    ASSERT_GT(layers, 0) << variant;
    for (const std::string& model :
         {ModelDir(variant) + "/gemma4", ModelDir(variant) + "/gemma4_text",
          ModelDir(variant) + "/gemma4_text/model.safetensors"}) {
      const Result r = Run({"info", "--model", model});
      ASSERT_EQ(r.exit_code, 0) << model << "\n" << r.err;
      EXPECT_EQ(r.err, "") << model;
      for (const char* key :
           {"variant:", "layout:", "vocab: 512", "parameters:", "mapped bytes:"}) {
        EXPECT_NE(r.out.find(key), std::string::npos) << model << " lacks '" << key << "'\n"
                                                      << r.out;
      }
      std::istringstream lines(r.out);
      std::string line;
      int rows = 0;
      std::smatch m;
      while (std::getline(lines, line)) {
        if (std::regex_match(line, m, layer_row)) {
          EXPECT_EQ(std::stoi(m[1]), rows) << model << ": layer rows out of order";
          ++rows;
        }
      }
      EXPECT_EQ(rows, layers) << model << "\n" << r.out;
      EXPECT_NE(r.out.find("layers: " + std::to_string(layers)), std::string::npos) << r.out;
    }
  }
}

// gemma4 info --draft: the plan gains the drafter's line and its bytes in the total (the
// default output has no drafter line); --kv-type takes the quantized cache types.
TEST_F(CliTest, InfoPlansTheDrafterAndQuantizedCaches) {
  auto plan_value = [](const std::string& out, const std::string& item) -> long long {
    const std::string key = "plan " + item + ": ";
    const size_t at = out.find(key);
    if (at == std::string::npos) return -1;
    return std::stoll(out.substr(at + key.size()));
  };
  const std::string model = ModelDir("tiny-e2b") + "/gemma4_text";
  const Result plain = Run({"info", "--model", model, "--ctx", "256"});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_EQ(plan_value(plain.out, "drafter"), -1) << plain.out;
  for (const char* drafter : {"/assistant", "/assistant.gguf"}) {
    const Result r =
        Run({"info", "--model", model, "--ctx", "256", "--draft", ModelDir("tiny-e2b") + drafter});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const long long drafter_bytes = plan_value(r.out, "drafter");
    EXPECT_GT(drafter_bytes, 0) << r.out;
    EXPECT_EQ(plan_value(r.out, "total"), plan_value(plain.out, "total") + drafter_bytes)
        << drafter << "\n"
        << r.out;
  }
  ExpectFailure({"info", "--model", model, "--draft", Path("no_such_drafter")}, "no_such_drafter");
  const Result f32 = Run({"info", "--model", model, "--ctx", "4096", "--kv-type", "f32"});
  const Result q8 = Run({"info", "--model", model, "--ctx", "4096", "--kv-type", "q8_0"});
  ASSERT_EQ(f32.exit_code, 0) << f32.err;
  ASSERT_EQ(q8.exit_code, 0) << q8.err;
  EXPECT_NE(q8.out.find("kv_type: q8_0"), std::string::npos) << q8.out;
  EXPECT_LT(plan_value(q8.out, "kv full"), plan_value(f32.out, "kv full") / 3) << q8.out;
}

TEST_F(CliTest, BenchJsonSpeaksLlamaBench) {
  // The fields scripts written for llama-bench read, one object per test; llama-bench flags
  // for GPU features are accepted and ignored.
  const Result r = Run({"bench", "--model", ModelDir("tiny-31b") + "/gemma4_text", "-t", "1", "-p",
                        "8", "-n", "2", "-r", "2", "-ngl", "99", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto root = json::Parse(r.out, "bench output");
  ASSERT_TRUE(root.ok()) << root.status().ToString() << "\n" << r.out;
  ASSERT_TRUE(root->is_array());
  ASSERT_EQ(root->as_array().size(), 2u);
  int64_t v = 0;
  for (const json::Value& test : root->as_array()) {
    for (const char* key : {"n_prompt", "n_gen", "n_threads", "avg_ts", "stddev_ts", "avg_ns",
                            "samples_ts", "model_filename", "n_depth"}) {
      EXPECT_NE(test.Find(key), nullptr) << key;
    }
    EXPECT_TRUE(test.Find("n_threads")->GetInt64(&v) && v == 1);
    EXPECT_GT(test.Find("avg_ts")->as_number(), 0);
    EXPECT_EQ(test.Find("samples_ts")->as_array().size(), 2u);
  }
  EXPECT_TRUE(root->as_array()[0].Find("n_prompt")->GetInt64(&v) && v == 8);
  EXPECT_TRUE(root->as_array()[1].Find("n_gen")->GetInt64(&v) && v == 2);
  // llama-bench's defaults: an f16 cache; the ubatch reported is the forward step used.
  EXPECT_EQ(root->as_array()[0].Find("type_k")->as_string(), "f16");
  EXPECT_EQ(root->as_array()[0].Find("type_v")->as_string(), "f16");
  EXPECT_NE(r.err.find("peak RSS"), std::string::npos) << r.err;
  // Generation: its share of the bandwidth bound, from probes taken around each repetition.
  EXPECT_NE(r.err.find("tg2 with 1 threads: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("measured before and after each run"), std::string::npos) << r.err;
  EXPECT_GT(root->as_array()[1].Find("read_bandwidth_bytes_per_s")->as_number(), 0);

  const Result f32 =
      Run({"bench", "--model", ModelDir("tiny-31b") + "/gemma4_text", "-t", "1", "-p", "8", "-n",
           "0", "-r", "1", "-ctk", "f32", "-ctv", "f32", "-ub", "3", "-o", "json"});
  ASSERT_EQ(f32.exit_code, 0) << f32.err;
  root = json::Parse(f32.out, "bench output");
  ASSERT_TRUE(root.ok()) << root.status().ToString();
  EXPECT_EQ(root->as_array()[0].Find("type_k")->as_string(), "f32");
  EXPECT_TRUE(root->as_array()[0].Find("n_ubatch")->GetInt64(&v) && v == 3);
}

// --profile: every forward phase on stderr, for every test, the JSON on stdout unchanged. The
// tiny MoE model runs every phase; the heavy ones must show time.
TEST_F(CliTest, BenchProfileListsEveryPhase) {
  const Result r = Run({"bench", "--model", ModelDir("tiny-26b-a4b") + "/gemma4", "-t", "1", "-p",
                        "8", "-n", "2", "-r", "1", "-o", "json", "--profile"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json::Parse(r.out, "bench output").ok()) << r.out;
  for (const char* test : {"profile of pp8 tg0 d0", "profile of pp0 tg2 d0"}) {
    EXPECT_NE(r.err.find(test), std::string::npos) << r.err;
  }
  for (const char* phase : {"attention q/k/v/o matmuls", "attention core", "MLP matmuls",
                            "MLP activation", "MoE", "norms + residuals", "LM head", "other"}) {
    const size_t at = r.err.find(phase);
    ASSERT_NE(at, std::string::npos) << phase << "\n" << r.err;
    double ms = -1;
    ASSERT_EQ(std::sscanf(r.err.c_str() + at + std::strlen(phase), " %lf", &ms), 1) << phase;
    const std::string name = phase;
    if (name == "MLP matmuls" || name == "MoE" || name == "attention core") {
      EXPECT_GT(ms, 0) << phase;
    } else if (name != "other") {
      EXPECT_GE(ms, 0) << phase;
    }
  }
}

// --kv-type: logits default to the exact f32 cache; f16, q8_0 and q4_0 stay close to it;
// generate and bench accept them.
TEST_F(CliTest, KvCacheTypeOption) {
  const std::string model = ModelDir("tiny-26b-a4b") + "/gemma4";
  const Reference ref = LoadReference("tiny-26b-a4b");
  const Prompt& prompt = ref.prompts[0];
  const std::string ids = Join(prompt.ids);
  const std::vector<float> want = ReadFloats(prompt.logits_file);
  std::map<std::string, float> errors;
  for (const char* type : {"f32", "f16", "auto", "q8_0", "q4_0"}) {
    const std::string out = Path(std::string("kv_") + type + ".f32");
    const Result r =
        Run({"logits", "--model", model, "--ids", ids, "--out", out, "--kv-type", type});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::vector<float> logits = ReadFloats(out);
    ASSERT_EQ(logits.size(), want.size());
    float err = 0;
    for (size_t i = 0; i < logits.size(); ++i) err = std::max(err, std::fabs(logits[i] - want[i]));
    errors[type] = err;
  }
  // f32 (and auto on these float weights): golden_test's 1e-3; f16: its f16 bound; the block
  // types: measured 0.36 (q8_0) and 11.3 (q4_0: far from the top tokens; KL vs the f32 cache
  // stays 6e-4, quant_accuracy_test), bounds about 2x.
  EXPECT_LE(errors["f32"], 1e-3f);
  EXPECT_LE(errors["auto"], 1e-3f);
  EXPECT_LE(errors["f16"], 0.5f);
  EXPECT_LE(errors["q8_0"], 0.75f) << "q8_0";
  EXPECT_LE(errors["q4_0"], 25.0f) << "q4_0";
  EXPECT_GT(errors["q4_0"], errors["f16"]) << "--kv-type q4_0 had no effect";
  std::printf("max |logit - reference|: f16 %g, q8_0 %g, q4_0 %g\n", errors["f16"], errors["q8_0"],
              errors["q4_0"]);
  const Result g =
      Run({"generate", "--model", model, "--ids", ids, "-n", "2", "--greedy", "--kv-type", "f16"});
  EXPECT_EQ(g.exit_code, 0) << g.err;
  const Result q =
      Run({"generate", "--model", model, "--ids", ids, "-n", "2", "--greedy", "--kv-type", "q4_0"});
  EXPECT_EQ(q.exit_code, 0) << q.err;
  ExpectFailure({"generate", "--model", model, "--ids", ids, "--greedy", "--kv-type", "q5_1"},
                "--kv-type");
  ExpectFailure({"bench", "-m", model, "-ctk", "q5_1"}, "-ctk");
  ExpectFailure({"bench", "-m", model, "-ctk", "f32", "-ctv", "f16"}, "differ");
}

// The image contract: `encode` writes the soft tokens and prints their count; `logits` and
// `generate` fill the placeholder runs of --ids with the --image files in order.
TEST_F(CliTest, ImagesThroughEncodeLogitsAndGenerate) {
  const std::string vision = std::string(GEMMA4_FIXTURES_DIR) + "/vision";
  const std::string model = vision + "/tiny-26b-vision";
  const std::string image = vision + "/images/up_200x150.png";
  const std::string out = Path("soft.f32");
  Result r = Run({"encode", "--model", model, "--image", image, "--out", out, "--image-budget",
                  "70", "--threads", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "63\n");
  const std::vector<float> soft = ReadFloats(out);
  const std::vector<float> want = ReadFloats(model + "/soft_up_200x150.f32");
  ASSERT_EQ(soft.size(), want.size());
  float err = 0;
  for (size_t i = 0; i < soft.size(); ++i) err = std::max(err, std::fabs(soft[i] - want[i]));
  EXPECT_LE(err, 1e-3f);
  // Default budget 280: the same picture scaled up to 266 soft tokens.
  r = Run({"encode", "--model", model, "--image", image, "--out", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "266\n");
  // A prompt from the reference: two images, bidirectional blocks (26B layout).
  auto text = ReadFileToString(vision + "/reference.json");
  ASSERT_TRUE(text.ok());
  auto root = json::Parse(*text, "reference.json");
  ASSERT_TRUE(root.ok());
  const json::Value& prompt =
      root->Find("models")->Find("tiny-26b-vision")->Find("prompts")->as_array()[0];
  std::vector<int32_t> ids;
  for (const json::Value& v : prompt.Find("ids")->as_array()) {
    int64_t x = 0;
    v.GetInt64(&x);
    ids.push_back(static_cast<int32_t>(x));
  }
  std::vector<std::string> images;
  for (const json::Value& v : prompt.Find("images")->as_array()) {
    images.push_back("--image");
    images.push_back(vision + "/images/" + v.as_string() + ".png");
  }
  const std::string logits = Path("logits.f32");
  std::vector<std::string> args = {"logits", "--model",        model, "--ids",   Join(ids), "--out",
                                   logits,   "--image-budget", "70",  "--chunk", "7"};
  args.insert(args.end(), images.begin(), images.end());
  r = Run(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadFloats(logits).size(), ids.size() * 512);
  args = {"generate", "--model", model,      "--ids",          Join(ids),
          "-n",       "4",       "--greedy", "--image-budget", "70"};
  args.insert(args.end(), images.begin(), images.end());
  r = Run(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<int32_t> greedy;
  for (const json::Value& v : prompt.Find("greedy")->as_array()) {
    int64_t x = 0;
    v.GetInt64(&x);
    if (greedy.size() < 4) greedy.push_back(static_cast<int32_t>(x));
  }
  EXPECT_EQ(r.out, Join(greedy) + "\n");
  // Errors: counts that differ (both named), a missing file, a text-only model, a bad budget.
  args = {"logits", "--model", model, "--ids", Join(ids), "--out", logits, "--image", image};
  ExpectFailure(args, "give 266 soft tokens");
  ExpectFailure({"logits", "--model", model, "--ids", "2,500,502,501", "--out", logits, "--image",
                 Path("missing.png")},
                "missing.png");
  ExpectFailure({"encode", "--model", ModelDir("tiny-e2b") + "/gemma4_text", "--image", image,
                 "--out", logits},
                "vision_config");
  ExpectFailure(
      {"encode", "--model", model, "--image", image, "--out", logits, "--image-budget", "100"},
      "100");
}

TEST_F(CliTest, ErrorsExitOneWithMessage) {
  const std::string model = ModelDir("tiny-31b") + "/gemma4_text";
  const std::string out = Path("logits.f32");
  ExpectFailure({"logits", "--model", Path("no_such_model"), "--ids", "2,3", "--out", out},
                "no_such_model");
  ExpectFailure({"generate", "--model", Path("no_such_model"), "--ids", "2", "--greedy"},
                "no_such_model");
  ExpectFailure({"info", "--model", Path("no_such_model")}, "no_such_model");
  ExpectFailure({"logits", "--model", model, "--ids", "2,512", "--out", out}, "512");
  ExpectFailure({"generate", "--model", model, "--ids", "2,100000", "--greedy"}, "100000");
  for (const char* ids : {"2,,3", "abc", "-1", "2,3,", "", "2;3", "1.5", "99999999999"}) {
    ExpectFailure({"logits", "--model", model, "--ids", ids, "--out", out}, "--ids");
  }
  ExpectFailure({"generate", "--model", model, "--ids", "abc", "--greedy"}, "--ids");
  ExpectFailure({"logits", "--model", model, "--ids", "2,3"}, "--out");
  ExpectFailure({"logits", "--model", model, "--out", out}, "--ids");
  ExpectFailure({"logits", "--ids", "2,3", "--out", out}, "--model");
  ExpectFailure({"logits", "--model", model, "--ids", "2,3", "--out", out, "--bogus"}, "--bogus");
  ExpectFailure({"logits", "--model", model, "--ids", "2,3", "--out"}, "--out");
  ExpectFailure({"logits", "--model", model, "--ids", "2,3", "--out", out, "--chunk", "0"},
                "--chunk");
  ExpectFailure({"logits", "--model", model, "--ids", "2,3", "--out", out, "--threads", "x"},
                "--threads");
  ExpectFailure(
      {"generate", "--model", model, "--ids", "2,3", "-n", "3", "--greedy", "--seed", "1"},
      "--seed");
  ExpectFailure({"generate", "--model", model, "--ids", "2,3", "--prompt", "hi"}, "--prompt");
  ExpectFailure({"generate", "--model", model, "--ids", "2,3", "-n", "-2", "--greedy"}, "-n");
  ExpectFailure({"info", "--model", model, "--verbose"}, "--verbose");
  ExpectFailure({"logits", "--model", model, "--ids", "2,3", "--out", Path("missing/dir/x.f32")},
                "missing/dir/x.f32");
}

TEST_F(CliTest, UsageErrorsExitTwo) {
  Result r = Run({});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("usage:"), std::string::npos) << r.err;

  r = Run({"frobnicate", "--model", "x"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("unknown command 'frobnicate'"), std::string::npos) << r.err;

  r = Run({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("usage:"), std::string::npos) << r.out;
  EXPECT_EQ(r.err, "");
}

// The tokenize contract: the file's exact bytes, ids comma-separated on one line, identical to
// Hugging Face `tokenizers` for every tokenizer source (cases.json from the reference script).
TEST_F(CliTest, TokenizeMatchesTokenizersForEverySource) {
  for (const std::string fixture : {"tokenizer", "tokenizer_bos"}) {
    const std::string dir = std::string(GEMMA4_FIXTURES_DIR) + "/" + fixture;
    auto text = ReadFileToString(dir + "/cases.json");
    ASSERT_TRUE(text.ok());
    auto cases = json::Parse(*text, "cases.json");
    ASSERT_TRUE(cases.ok());
    int checked = 0;
    for (const json::Value& c : cases->as_array()) {
      if (checked >= 15) break;  // one process per case: a sample keeps the test fast
      const std::string input = Path("input.txt");
      {
        std::ofstream f(input, std::ios::binary);
        f << c.Find("text")->as_string();
      }
      // Default output = tok(text) (the tokenizer's own special tokens, e.g. a <bos>).
      std::string expected;
      for (const json::Value& id : c.Find("ids_default")->as_array()) {
        int64_t v = 0;
        id.GetInt64(&v);
        expected += (expected.empty() ? "" : ",") + std::to_string(v);
      }
      for (const std::string& source : {dir + "/tokenizer.json", dir + "/tokenizer.model", dir}) {
        const Result r = Run({"tokenize", "--tokenizer", source, "--text-file", input});
        ASSERT_EQ(r.exit_code, 0) << r.err;
        EXPECT_EQ(r.out, expected + "\n")
            << source << ": \"" << c.Find("text")->as_string() << "\"";
      }
      ++checked;
    }
    EXPECT_EQ(checked, 15);
  }
  const std::string dir = std::string(GEMMA4_FIXTURES_DIR) + "/tokenizer";
  const Result d = Run({"detokenize", "--tokenizer", dir, "--ids", "538,1058,1139,515"});
  ASSERT_EQ(d.exit_code, 0) << d.err;
  EXPECT_EQ(d.out, "Hello World\n");
  const Result bad = Run({"tokenize", "--tokenizer", Path("missing.json"), "--text", "x"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("missing.json"), std::string::npos) << bad.err;
  const Result both = Run({"tokenize", "--tokenizer", dir});
  EXPECT_EQ(both.exit_code, 1);
}

// Whether a help text names `arg` as a word (followed by a space, a comma or a newline).
bool ListsArgument(const std::string& help, const std::string& arg) {
  for (size_t at = help.find(" " + arg); at != std::string::npos;
       at = help.find(" " + arg, at + 1)) {
    const char next = at + 1 + arg.size() < help.size() ? help[at + 1 + arg.size()] : '\n';
    if (next == ' ' || next == ',' || next == '\n') return true;
  }
  return false;
}

// Every command answers --help (and -h) with its usage on stdout, exit status 0, and lists the
// options of its contract.
TEST_F(CliTest, HelpForEveryCommand) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> commands = {
      {"logits",
       {"--model", "--ids", "--out", "--chunk", "--threads", "--kv-type", "--image",
        "--image-budget", "--frame", "--video", "--video-budget", "--audio", "--mmproj"}},
      {"generate",
       {"--model", "--ids", "--prompt", "-n", "--greedy", "--temperature", "--seed", "--threads",
        "--kv-type", "--image", "--image-budget", "--frame", "--video", "--audio", "--mmproj"}},
      {"encode",
       {"--model", "--image", "--frame", "--video", "--audio", "--out", "--image-budget",
        "--video-budget", "--threads", "--mmproj"}},
      {"tokenize", {"--tokenizer", "--text-file", "--text", "--no-special-tokens"}},
      {"detokenize", {"--tokenizer", "--ids", "--skip-special-tokens"}},
      {"info", {"--model"}},
      {"bench", {"-m", "-t", "-p", "-n", "-d", "-r", "-ub", "-ctk", "-ctv", "-o", "--profile"}},
      {"quantize", {"SRC", "DST", "--type", "--threads", "--mmproj-type", "--mmproj"}},
      {"synth", {"--variant", "--type", "OUT.gguf", "--seed", "--layers", "--mmproj"}},
      {"chat",
       {"--model", "--think", "--system", "--tokenizer", "-t", "-n", "--temperature", "--seed",
        "--kv-type", "--image", "--image-budget", "--audio", "--mmproj"}},
      {"run",
       {"--model", "--prompt", "--prompt-file", "--system", "--think", "--json-schema", "-n",
        "--temperature", "--seed", "--image", "--audio", "--mmproj", "--threads"}},
  };
  for (const auto& [command, flags] : commands) {
    for (const char* help : {"--help", "-h"}) {
      const Result r = Run({command, help});
      EXPECT_EQ(r.exit_code, 0) << command << " " << help << "\n" << r.err;
      EXPECT_EQ(r.err, "") << command;
      EXPECT_EQ(r.out.rfind("usage: gemma4 " + command + " ", 0), 0u) << r.out;
      for (const std::string& flag : flags) {
        EXPECT_TRUE(ListsArgument(r.out, flag))
            << command << " --help does not list " << flag << "\n"
            << r.out;
      }
    }
    // --help wins over the rest of the line, even a bad one.
    const Result r = Run({command, "--bogus", "--help"});
    EXPECT_EQ(r.exit_code, 0) << command << "\n" << r.err;
  }
  // The overview names every command, and how to get one command's help.
  const Result top = Run({"--help"});
  for (const auto& [command, flags] : commands) {
    EXPECT_NE(top.out.find("gemma4 " + command), std::string::npos) << command;
  }
  EXPECT_NE(top.out.find("COMMAND --help"), std::string::npos);
}

// Unknown flags, flags without their value and malformed numbers are errors naming the flag
// (exit status 1), for every command, before any model is loaded.
TEST_F(CliTest, BadFlagsAreErrorsNamingTheFlag) {
  const std::string model = ModelDir("tiny-e2b") + "/gemma4";
  const std::string tokenizer = std::string(GEMMA4_FIXTURES_DIR) + "/chat/tiny_tokenizer";
  for (const char* command : {"logits", "generate", "encode", "tokenize", "detokenize", "info",
                              "bench", "quantize", "synth", "chat", "run"}) {
    ExpectFailure({command, "--no-such-flag"}, "unknown argument '--no-such-flag'");
  }
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"generate", "--model", model, "--ids", "2", "-n", "abc"}, "-n"},
      {{"generate", "--model", model, "--ids", "2", "--temperature", "hot"}, "--temperature"},
      {{"generate", "--model", model, "--ids", "2", "--temperature", "-1"}, "--temperature"},
      {{"generate", "--model", model, "--ids", "2", "--seed", "x"}, "--seed"},
      {{"generate", "--model", model, "--ids", "2", "--seed", "-5"}, "--seed"},
      {{"generate", "--model", model, "--ids", "2", "--image-budget", "12x"}, "--image-budget"},
      {{"generate", "--model", model, "--prompt"}, "--prompt"},
      {{"logits", "--model", model, "--ids", "2", "--out", "x", "--kv-type", "f8"}, "--kv-type"},
      {{"encode", "--model", model, "--image", "x.png", "--out", "x", "--video-budget", "0"},
       "--video-budget"},
      {{"run", "--model", model, "--prompt", "hi", "--seed", "1e3"}, "--seed"},
      {{"run", "--model", model, "--prompt", "hi", "-n", "0"}, "-n"},
      {{"run", "--model", model, "--prompt", "hi", "--threads", "many"}, "--threads"},
      {{"run", "--model", model}, "--prompt"},
      {{"run", "--model", model, "--prompt", "hi", "--prompt-file", "f"}, "--prompt-file"},
      {{"run", "--model", model, "--tokenizer", tokenizer, "--prompt", "hi", "--json-schema",
        Path("missing.json")},
       "missing.json"},
      {{"chat", "--model", model, "--threads", "x"}, "--threads"},
      {{"chat", "--model", model, "--seed", "abc"}, "--seed"},
      {{"chat", "--model", model, "--kv-type", "q4_1"}, "--kv-type"},
      {{"bench", "-m", model, "-r", "x"}, "-r"},
      {{"bench", "-m", model, "-p", "8,,9"}, "-p"},
      {{"synth", "--variant", "e2b", "--type", "q4_0", Path("x.gguf"), "--seed", "abc"}, "--seed"},
      {{"synth", "--variant", "e2b", "--type", "q4_0", Path("x.gguf"), "--seed",
        "99999999999999999999"},
       "--seed"},
      {{"synth", "--variant", "e2b", "--type", "q4_0", Path("x.gguf"), "--layers", "0"},
       "--layers"},
      {{"quantize", model, Path("x.gguf"), "--type", "q4_0", "--threads", "0"}, "--threads"},
      {{"quantize", model, Path("x.gguf"), "extra", "--type", "q4_0"}, "extra"},
      {{"tokenize", "--tokenizer", tokenizer, "--text"}, "--text"},
  };
  for (const auto& [args, flag] : cases) {
    ExpectFailure(args, flag);
    EXPECT_FALSE(fs::exists(Path("x.gguf")));
  }
  // A loader error that is about the tokenizer points at the option that fixes it.
  ExpectFailure({"run", "--model", model, "--prompt", "hi"}, "--tokenizer PATH");
}

std::vector<int32_t> ParseIdLine(const std::string& line) {
  std::vector<int32_t> ids;
  std::stringstream ss(line);
  std::string item;
  while (std::getline(ss, item, ',')) ids.push_back(std::stoi(item));
  return ids;
}

// generate --prompt TEXT: the text tokenized as `tokenize` does, after <bos>; the same tokens
// as --ids give the same continuation. Without --greedy, the model's default decoding (greedy
// for the fixtures: their generation_config has no do_sample) gives the reference ids, and the
// stop reason is on stderr.
TEST_F(CliTest, GenerateFromPromptText) {
  const std::string model = ModelDir("tiny-e2b") + "/gemma4";
  const std::string tokenizer = std::string(GEMMA4_FIXTURES_DIR) + "/chat/tiny_tokenizer";
  const std::string text = "Hello there, <|turn>user";
  const Result tok = Run({"tokenize", "--tokenizer", tokenizer, "--text", text});
  ASSERT_EQ(tok.exit_code, 0) << tok.err;
  std::vector<int32_t> ids = ParseIdLine(tok.out);
  ASSERT_GT(ids.size(), 3u);
  if (ids.front() != 2) ids.insert(ids.begin(), 2);
  const Result from_ids =
      Run({"generate", "--model", model, "--ids", Join(ids), "-n", "6", "--greedy"});
  ASSERT_EQ(from_ids.exit_code, 0) << from_ids.err;
  const Result from_text = Run({"generate", "--model", model, "--tokenizer", tokenizer, "--prompt",
                                text, "-n", "6", "--greedy"});
  ASSERT_EQ(from_text.exit_code, 0) << from_text.err;
  EXPECT_EQ(from_text.out, from_ids.out);
  EXPECT_EQ(ParseIdLine(from_text.out).size(), 6u);
  EXPECT_NE(from_text.err.find("stop: max_tokens after 6 tokens (" + std::to_string(ids.size()) +
                               " prompt tokens); greedy"),
            std::string::npos)
      << from_text.err;
  // Without --tokenizer the tokenizer beside the weights is used: the fixture has none.
  ExpectFailure({"generate", "--model", model, "--prompt", text}, "--tokenizer");

  const Reference ref = LoadReference("tiny-e4b");
  const Result r = Run({"generate", "--model", ModelDir("tiny-e4b") + "/gemma4_text", "--ids",
                        Join(ref.prompts[0].ids), "-n", "12"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, Join(ref.prompts[0].greedy) + "\n");
  EXPECT_NE(r.err.find("greedy"), std::string::npos) << r.err;
}

// --seed and --temperature: the same seed gives the same tokens, different seeds different
// ones; a seed alone samples (the fixtures default to greedy); --greedy takes no seed.
TEST_F(CliTest, SeedSelectsTheSample) {
  const std::string model = ModelDir("tiny-e2b") + "/gemma4";
  const std::string ids = "2,17,33";
  const Result greedy = Run({"generate", "--model", model, "--ids", ids, "-n", "8", "--greedy"});
  ASSERT_EQ(greedy.exit_code, 0) << greedy.err;
  for (const bool with_temperature : {true, false}) {
    std::vector<std::string> outputs;
    for (const char* seed : {"1", "2", "3", "4"}) {
      std::vector<std::string> args = {"generate", "--model", model,    "--ids", ids,
                                       "-n",       "8",       "--seed", seed};
      if (with_temperature) args.insert(args.end(), {"--temperature", "1.0"});
      const Result a = Run(args);
      const Result b = Run(args);
      ASSERT_EQ(a.exit_code, 0) << a.err;
      EXPECT_EQ(a.out, b.out) << "seed " << seed;
      EXPECT_EQ(ParseIdLine(a.out).size(), 8u) << a.out;
      EXPECT_NE(a.err.find(std::string("seed ") + seed), std::string::npos) << a.err;
      outputs.push_back(a.out);
    }
    std::vector<std::string> distinct = outputs;
    std::sort(distinct.begin(), distinct.end());
    distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
    EXPECT_GE(distinct.size(), 3u) << "four seeds gave " << distinct.size() << " outputs";
    EXPECT_NE(std::count(outputs.begin(), outputs.end(), greedy.out), 4);
  }
  // Temperature 0 is greedy whatever the seed.
  const Result cold = Run(
      {"generate", "--model", model, "--ids", ids, "-n", "8", "--seed", "7", "--temperature", "0"});
  ASSERT_EQ(cold.exit_code, 0) << cold.err;
  EXPECT_EQ(cold.out, greedy.out);
  ExpectFailure({"generate", "--model", model, "--ids", ids, "--greedy", "--temperature", "0.7"},
                "--temperature");

  // The same through a session (`gemma4 run`): text on stdout.
  const std::string tokenizer = std::string(GEMMA4_FIXTURES_DIR) + "/chat/tiny_tokenizer";
  std::vector<std::string> texts;
  for (const char* seed : {"1", "2", "3", "4"}) {
    const std::vector<std::string> args = {
        "run", "--model", model,    "--tokenizer", tokenizer,       "--prompt", "Hi",
        "-n",  "12",      "--seed", seed,          "--temperature", "1.5"};
    const Result a = Run(args);
    const Result b = Run(args);
    ASSERT_EQ(a.exit_code, 0) << a.err;
    EXPECT_EQ(a.out, b.out) << "seed " << seed;
    texts.push_back(a.out);
  }
  std::sort(texts.begin(), texts.end());
  EXPECT_GE(std::unique(texts.begin(), texts.end()) - texts.begin(), 2);
}

// gemma4 run: one chat turn, the reply on stdout (a newline after it), the stop reason and the
// counts on stderr; --prompt-file reads the message; --system and --json-schema apply.
// --memory-limit reaches ModelOptions::memory_limit_bytes: a limit below the plan refuses the
// model up front naming the need and the limit; a generous one changes nothing.
TEST_F(CliTest, RunHonoursTheMemoryLimit) {
  const std::vector<std::string> base = {"run",
                                         "--model",
                                         ModelDir("tiny-e2b") + "/gemma4",
                                         "--tokenizer",
                                         std::string(GEMMA4_FIXTURES_DIR) + "/chat/tiny_tokenizer",
                                         "--prompt",
                                         "Hi there",
                                         "-n",
                                         "4"};
  std::vector<std::string> tight = base, generous = base;
  tight.insert(tight.end(), {"--memory-limit", "100000"});
  generous.insert(generous.end(), {"--memory-limit", "10000000000"});
  const Result refused = Run(tight);
  EXPECT_EQ(refused.exit_code, 1) << refused.err;
  EXPECT_NE(refused.err.find("RESOURCE_EXHAUSTED"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("memory_limit_bytes = 100000"), std::string::npos) << refused.err;
  const Result fits = Run(generous), plain = Run(base);
  ASSERT_EQ(fits.exit_code, 0) << fits.err;
  EXPECT_EQ(fits.out, plain.out);
}

// gemma4 info --memory-limit plans the forward steps a session would take under the limit: the
// default ones (512 tokens on CPUs with AMX tiles) where they fit, else 128-token ones (smaller
// plan, exit 0) where those do.
TEST_F(CliTest, InfoPlansTheStepsTheLimitLeaves) {
  const std::vector<std::string> base = {"info", "--model", ModelDir("tiny-e2b") + "/gemma4",
                                         "--ctx", "2048"};
  auto step_and_total = [](const std::string& out) {
    std::smatch step, total;
    EXPECT_TRUE(std::regex_search(out, step, std::regex("  step: ([0-9]+) tokens"))) << out;
    EXPECT_TRUE(std::regex_search(out, total, std::regex("plan total: ([0-9]+)"))) << out;
    return std::pair<long long, long long>{step.empty() ? 0 : std::stoll(step[1]),
                                           total.empty() ? 0 : std::stoll(total[1])};
  };
  const Result plain = Run(base);
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  const auto [default_step, default_total] = step_and_total(plain.out);
  if (default_step == 128) GTEST_SKIP() << "128-token steps are already this CPU's default";
  EXPECT_EQ(default_step, 512);
  std::vector<std::string> capped = base;
  capped.insert(capped.end(), {"--memory-limit", std::to_string(default_total - 1)});
  const Result smaller = Run(capped);
  ASSERT_EQ(smaller.exit_code, 0) << smaller.err;
  const auto [step, total] = step_and_total(smaller.out);
  EXPECT_EQ(step, 128);
  EXPECT_LT(total, default_total);
}

TEST_F(CliTest, RunPrintsOneReply) {
  const std::string model = ModelDir("tiny-e2b") + "/gemma4";
  const std::string tokenizer = std::string(GEMMA4_FIXTURES_DIR) + "/chat/tiny_tokenizer";
  const std::vector<std::string> base = {"run", "--model", model, "--tokenizer", tokenizer};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return Run(args);
  };
  const Result r = with({"--prompt", "Hi there", "-n", "8"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_FALSE(r.out.empty());
  EXPECT_EQ(r.out.back(), '\n');
  EXPECT_NE(r.err.find("gemma4 run: stop: max_tokens; "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("8 generated"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("; greedy"), std::string::npos) << r.err;
  {
    std::ofstream f(Path("prompt.txt"), std::ios::binary);
    f << "Hi there";
  }
  const Result from_file = with({"--prompt-file", Path("prompt.txt"), "-n", "8"});
  ASSERT_EQ(from_file.exit_code, 0) << from_file.err;
  EXPECT_EQ(from_file.out, r.out);
  // A system prompt changes the context: more prompt tokens.
  const Result system = with({"--prompt", "Hi there", "-n", "8", "--system", "Be brief."});
  ASSERT_EQ(system.exit_code, 0) << system.err;
  auto prompt_tokens = [](const std::string& err) {
    const size_t at = err.find("; ", err.find("stop: "));
    return at == std::string::npos ? -1 : std::atoi(err.c_str() + at + 2);
  };
  EXPECT_GT(prompt_tokens(system.err), prompt_tokens(r.err)) << system.err << r.err;
  // An answer constrained to a schema is that JSON, whatever the weights.
  {
    std::ofstream f(Path("schema.json"));
    f << R"({"enum": ["yes", "no"]})";
  }
  const Result json =
      with({"--prompt", "Yes or no?", "-n", "16", "--json-schema", Path("schema.json")});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_TRUE(json.out == "\"yes\"\n" || json.out == "\"no\"\n") << json.out;
  EXPECT_NE(json.err.find("stop: end_of_turn"), std::string::npos) << json.err;
  // Thinking: the thought goes to stderr, never into the captured answer.
  const Result think = with({"--prompt", "Hi", "-n", "12", "--think"});
  ASSERT_EQ(think.exit_code, 0) << think.err;
  EXPECT_EQ(think.out.find("[thinking]"), std::string::npos) << think.out;
  // --prompt-file - reads stdin.
  const Result piped =
      Run({"run", "--model", model, "--tokenizer", tokenizer, "--prompt-file", "-", "-n", "8"},
          "Hi there");
  ASSERT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_EQ(piped.out, r.out);
}

// gemma4 chat reports the stop reason of every reply, and honours --seed without --temperature.
TEST_F(CliTest, ChatShowsStopReasonAndHonoursSeed) {
  const std::string model = ModelDir("tiny-e2b") + "/gemma4";
  const std::string tokenizer = std::string(GEMMA4_FIXTURES_DIR) + "/chat/tiny_tokenizer";
  const Result chat =
      Run({"chat", "--model", model, "--tokenizer", tokenizer, "-n", "4"}, "Hi\nAnd then?\n");
  ASSERT_EQ(chat.exit_code, 0) << chat.err;
  size_t replies = 0;
  for (size_t at = chat.err.find("4 generated"); at != std::string::npos;
       at = chat.err.find("4 generated", at + 1)) {
    ++replies;
    EXPECT_EQ(chat.err.compare(chat.err.find("; ", at), 18, "; stop: max_tokens"), 0) << chat.err;
  }
  EXPECT_EQ(replies, 2u) << chat.err;
  std::vector<std::string> outputs;
  for (const char* seed : {"1", "2", "3", "4"}) {
    const std::vector<std::string> args = {"chat", "--model", model,    "--tokenizer", tokenizer,
                                           "-n",   "12",      "--seed", seed};
    const Result a = Run(args, "Hello!\n");
    const Result b = Run(args, "Hello!\n");
    ASSERT_EQ(a.exit_code, 0) << a.err;
    EXPECT_EQ(a.out, b.out) << "seed " << seed;
    outputs.push_back(a.out);
  }
  std::sort(outputs.begin(), outputs.end());
  EXPECT_GE(std::unique(outputs.begin(), outputs.end()) - outputs.begin(), 2);
}

// The CLI under an address-space limit swept from where its shared libraries first load to
// where a reply fits: every step ends in exit 0 or exit 1 with a message, never a signal (an
// abort from an exception escaping main, a SIGSEGV from an unchecked allocation).
TEST_F(CliTest, AddressSpaceSweepEndsInCleanExits) {
  if (testing::kSanitizedBuild) GTEST_SKIP() << "address-space limits under a sanitizer";
  const std::string model = ModelDir("tiny-e2b") + "/gemma4";
  const std::string tokenizer =
      std::string(GEMMA4_FIXTURES_DIR) + "/chat/tiny_tokenizer/tokenizer.json";
  // Exit status, or -signal when a signal ended it.
  auto run_at = [&](size_t kib) {
    std::string cmd = "ulimit -v " + std::to_string(kib) + " && exec " +
                      ShellQuote(GEMMA4_CLI_PATH) + " run --model " + ShellQuote(model) +
                      " --tokenizer " + ShellQuote(tokenizer) +
                      " --prompt 'Say something long' -n 24 --threads 2 >/dev/null 2>" +
                      ShellQuote(Path("sweep_err.txt"));
    const int status = std::system(cmd.c_str());
    if (status != -1 && WIFEXITED(status)) return WEXITSTATUS(status);
    return status != -1 && WIFSIGNALED(status) ? -WTERMSIG(status) : -1000;
  };
  // The dynamic loader needs its libraries mapped first (exit 127 below that): find that
  // point by bisection, so the sweep covers this machine's library sizes.
  size_t lo = 16 << 10, hi = 4 << 20;  // KiB
  ASSERT_NE(run_at(hi), 127) << "the CLI does not start even with 4 GiB of address space";
  while (hi - lo > 256) {
    const size_t mid = (lo + hi) / 2;
    (run_at(mid) == 127 ? lo : hi) = mid;
  }
  int errors = 0, successes = 0;
  for (size_t kib = hi; kib <= hi + (16 << 10); kib += 256) {
    const int code = run_at(kib);
    if (code == 127) continue;  // the loader, before any code of ours runs
    // A shared library's own constructor failing first, before main: libgomp (libsoxr's
    // OpenMP) exits 1 with "libgomp: Out of memory ..." just above the loader's limit.
    if (code == 1 && ReadText(Path("sweep_err.txt")).find("libgomp: ") != std::string::npos &&
        ReadText(Path("sweep_err.txt")).find("gemma4") == std::string::npos) {
      continue;
    }
    ASSERT_TRUE(code == 0 || code == 1)
        << "limit " << kib << " KiB: exit " << code << ": " << ReadText(Path("sweep_err.txt"));
    if (code == 1) {
      EXPECT_NE(ReadText(Path("sweep_err.txt")).find("gemma4 run: "), std::string::npos);
    }
    (code == 0 ? successes : errors)++;
  }
  std::printf("address-space sweep from %zu KiB: %d clean errors, %d replies\n", hi, errors,
              successes);
  // The sweep crossed the point where the reply fits.
  EXPECT_GT(errors, 0);
  EXPECT_GT(successes, 0);
}

// gemma4 generate --draft: speculative decoding prints the same greedy ids as without it
// (transformers' reference), from the drafter's checkpoint and its GGUF.
TEST_F(CliTest, GenerateWithDrafterPrintsReferenceIds) {
  for (const char* variant : {"tiny-e2b", "tiny-26b-a4b"}) {
    const Reference ref = LoadReference(variant);
    const Prompt& p = ref.prompts[1];
    for (const char* drafter : {"/assistant", "/assistant.gguf"}) {
      const Result r =
          Run({"generate", "--model", ModelDir(variant) + "/gemma4_text", "--ids", Join(p.ids),
               "-n", "12", "--greedy", "--draft", ModelDir(variant) + drafter, "--draft-k", "3"});
      EXPECT_EQ(r.exit_code, 0) << r.err;
      EXPECT_EQ(r.out, Join(p.greedy) + "\n") << variant << drafter;
      EXPECT_NE(r.err.find("drafting k=3"), std::string::npos) << r.err;
    }
  }
  // A drafter for another target is refused, naming the mismatch.
  const Result bad = Run({"generate", "--model", ModelDir("tiny-e2b") + "/gemma4_text", "--ids",
                          "2,5,6", "--draft", ModelDir("tiny-26b-a4b") + "/assistant"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("FAILED_PRECONDITION"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace gemma4
