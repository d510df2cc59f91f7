// gemma4 bench: prompt-processing and generation throughput, measured like llama.cpp's
// llama-bench and reported in its formats (markdown table, or -o json / jsonl / csv with the
// same field names), plus peak RSS and the memory-bandwidth bound of generation.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "base/json.h"
#include "model/forward.h"
#include "model/model.h"
#include "runtime/thread_pool.h"
#include "tools/cli/args.h"
#include "tools/cli/commands.h"

namespace gemma4::cli {
namespace {

struct Options {
  std::string model;
  std::vector<int> threads;
  std::vector<int> n_prompt = {512};
  std::vector<int> n_gen = {128};
  std::vector<int> n_depth = {0};
  std::vector<std::pair<int, int>> prompt_gen;  // -pg: prompt then generation, timed together
  int repetitions = 5;
  std::string output = "md";
  // -ctk / -ctv: f16 (llama-bench's default), f32, q8_0 or q4_0; keys and values share one
  // type here.
  std::string cache_type = "f16";
  int ubatch = static_cast<int>(DefaultMaxChunk());  // -ub: tokens per forward step
  bool profile = false;                              // --profile: time per forward phase, on stderr
};

// llama-bench options for GPU/backend features gemma4 does not have (each option's spellings).
const std::vector<std::vector<std::string>>& IgnoredFlagsWithValue() {
  static const std::vector<std::vector<std::string>> kFlags = {{"-ngl", "--n-gpu-layers"},
                                                               {"-b", "--batch-size"},
                                                               {"-fa", "--flash-attn"},
                                                               {"-mmp", "--mmap"},
                                                               {"-sm", "--split-mode"},
                                                               {"-mg", "--main-gpu"},
                                                               {"-ts", "--tensor-split"},
                                                               {"-nkvo", "--no-kv-offload"},
                                                               {"-embd", "--embeddings"},
                                                               {"--numa"},
                                                               {"-dev", "--device"},
                                                               {"-C", "--cpu-mask"},
                                                               {"--cpu-strict"},
                                                               {"--poll"},
                                                               {"--prio"},
                                                               {"--delay"},
                                                               {"-ot", "--override-tensors"}};
  return kFlags;
}

Status ParseList(const std::string& flag, const std::string& value, int min,
                 std::vector<int>* out) {
  std::vector<int64_t> values;
  if (!ParseIntList(value, min, 1 << 24, &values)) {
    return InvalidArgumentError(flag + " expects comma-separated integers >= " +
                                std::to_string(min) + ", got '" + value + "'");
  }
  out->assign(values.begin(), values.end());
  return OkStatus();
}

// Parses the options; *help is set (and nothing else checked) when --help was asked for.
Status ParseOptions(int argc, char** argv, Options* o, bool* help) {
  std::string cache_type_k = o->cache_type, cache_type_v = o->cache_type;
  auto list = [](std::vector<int>* out, int min) {
    return [out, min](const std::string& flag, const std::string& v) {
      return ParseList(flag, v, min, out);
    };
  };
  auto cache_type = [](std::string* out) {
    return [out](const std::string& flag, const std::string& v) -> Status {
      if (!ParseKvType(v).has_value()) {
        return InvalidArgumentError(flag + " " + v +
                                    ": the KV cache type must be f16, f32, q8_0 or q4_0");
      }
      *out = v;
      return OkStatus();
    };
  };
  auto single = [](int min, int* out) {
    return [min, out](const std::string& flag, const std::string& v) -> Status {
      std::vector<int> one;
      GEMMA4_RETURN_IF_ERROR(ParseList(flag, v, min, &one));
      if (one.size() != 1) return InvalidArgumentError(flag + " takes one number");
      *out = one[0];
      return OkStatus();
    };
  };
  bool ignored_flag = false;
  ArgParser parser(
      "gemma4 bench -m PATH [-t N,..] [-p N,..] [-n N,..] [-d N,..] [-pg P,G] [-r N] [-ub N]\n"
      "                    [-ctk f16|f32|q8_0|q4_0] [-ctv f16|f32|q8_0|q4_0] [-o "
      "md|json|jsonl|csv] [--profile]",
      "Prompt processing (pp) and generation (tg) tokens/s, measured and reported as llama-bench\n"
      "does (same flags, defaults and -o json field names); peak RSS, bytes read per generated\n"
      "token and the bandwidth bound on stderr. llama-bench's GPU/backend options are accepted\n"
      "and ignored.\n");
  parser.String({"-m", "--model"}, "PATH", "the model", &o->model)
      .Value({"-t", "--threads"}, "N,..", "thread counts (default: all cores)",
             list(&o->threads, 1))
      .Value({"-p", "--n-prompt"}, "N,..", "prompt lengths (default 512)", list(&o->n_prompt, 0))
      .Value({"-n", "--n-gen"}, "N,..", "generation lengths (default 128)", list(&o->n_gen, 0))
      .Value({"-d", "--n-depth"}, "N,..", "context depths before the test (default 0)",
             list(&o->n_depth, 0))
      .Value({"-pg"}, "P,G", "prompt then generation, timed together (repeatable)",
             [o](const std::string& flag, const std::string& v) -> Status {
               std::vector<int> pg;
               GEMMA4_RETURN_IF_ERROR(ParseList(flag, v, 0, &pg));
               if (pg.size() != 2) return InvalidArgumentError("-pg expects pp,tg (two integers)");
               o->prompt_gen.emplace_back(pg[0], pg[1]);
               return OkStatus();
             })
      .Value({"-ctk", "--cache-type-k"}, "f16|f32|q8_0|q4_0", "KV cache type (keys; default f16)",
             cache_type(&cache_type_k))
      .Value({"-ctv", "--cache-type-v"}, "f16|f32|q8_0|q4_0",
             "KV cache type (values; must equal -ctk)", cache_type(&cache_type_v))
      .Value({"-ub", "--ubatch-size"}, "N",
             "tokens per forward step (default: the library's, 512 with AMX tiles, else 128)",
             single(1, &o->ubatch))
      .Value({"-r", "--repetitions"}, "N", "repetitions of each test (default 5)",
             single(1, &o->repetitions))
      .Value({"-o", "--output"}, "md|json|jsonl|csv", "output format (default md)",
             [o](const std::string&, const std::string& v) -> Status {
               if (v != "md" && v != "json" && v != "jsonl" && v != "csv") {
                 return InvalidArgumentError("-o must be md, json, jsonl or csv");
               }
               o->output = v;
               return OkStatus();
             })
      .Flag({"--profile"}, "time of each forward phase (stderr)", &o->profile)
      .Flag({"--progress", "-v", "--verbose"}, "accepted for compatibility", &ignored_flag);
  // llama-bench options that select GPU/backend features gemma4 does not have; accepted so
  // that scripts written for llama-bench run unchanged, and reported on stderr.
  for (const std::vector<std::string>& names : IgnoredFlagsWithValue()) {
    parser.Value(names, "X", "ignored (llama-bench GPU/backend option)",
                 [](const std::string& flag, const std::string& v) {
                   std::fprintf(stderr,
                                "gemma4 bench: ignoring %s %s (no GPU/backend options on CPU)\n",
                                flag.c_str(), v.c_str());
                   return OkStatus();
                 });
  }
  GEMMA4_RETURN_IF_ERROR(parser.Parse(argc, argv));
  if (parser.help_requested()) {
    *help = true;
    return parser.PrintHelp();
  }
  if (o->model.empty()) return InvalidArgumentError("-m MODEL is required");
  if (cache_type_k != cache_type_v) {
    return InvalidArgumentError("-ctk " + cache_type_k + " and -ctv " + cache_type_v +
                                " differ: gemma4 stores keys and values in one type");
  }
  o->cache_type = cache_type_k;
  if (o->threads.empty()) {
    o->threads.push_back(static_cast<int>(std::max<long>(1, sysconf(_SC_NPROCESSORS_ONLN))));
  }
  return OkStatus();
}

uint64_t PeakRssBytes() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<uint64_t>(ru.ru_maxrss) * 1024;
}

// Streaming read bandwidth of all threads (best of three passes, bytes per second), measured
// by reading the matrices every generated token reads (LoadedModel::PerTokenMatrices): the
// model's own resident weights, far larger than any cache. Allocating a probe buffer instead would
// add its size to the process's peak RSS as seen from outside (time -v, cgroups).
double MeasureReadBandwidth(const LoadedModel& model, ThreadPool* pool) {
  struct Span {
    const uint64_t* words;
    int64_t count;
  };
  std::vector<Span> spans;
  constexpr int64_t kSpanWords = (1 << 20) / sizeof(uint64_t);
  auto add = [&](const TensorView& t) {
    if (t.data == nullptr || t.nbytes < 64) return;
    const uintptr_t begin = (reinterpret_cast<uintptr_t>(t.data) + 63) & ~uintptr_t{63};
    const uintptr_t end = (reinterpret_cast<uintptr_t>(t.data) + t.nbytes) & ~uintptr_t{63};
    for (uintptr_t p = begin; p < end; p += kSpanWords * sizeof(uint64_t)) {
      const int64_t words = static_cast<int64_t>(
          std::min<uintptr_t>(end - p, kSpanWords * sizeof(uint64_t)) / sizeof(uint64_t));
      spans.push_back({reinterpret_cast<const uint64_t*>(p), words});
    }
  };
  for (const TensorView* t : model.PerTokenMatrices()) add(*t);
  int64_t total_words = 0;
  for (const Span& s : spans) total_words += s.count;
  if (total_words == 0) return 0;
  double best = 0;
  for (int pass = 0; pass < 3; ++pass) {
    std::vector<uint64_t> partial(spans.size(), 0);
    const auto t0 = std::chrono::steady_clock::now();
    pool->ParallelFor(static_cast<int64_t>(spans.size()), 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const uint64_t* p = spans[i].words;
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        // One 64-byte line per step, prefetched 2 KiB ahead as the matmul kernels do: without
        // it one core keeps too few lines in flight, and the probe would report less than the
        // kernels themselves reach.
        for (int64_t j = 0; j + 8 <= spans[i].count; j += 8) {
          __builtin_prefetch(p + j + 256);
          s0 += p[j] + p[j + 4];
          s1 ^= p[j + 1] ^ p[j + 5];
          s2 += p[j + 2] + p[j + 6];
          s3 ^= p[j + 3] ^ p[j + 7];
        }
        partial[i] = s0 + s1 + s2 + s3;
      }
    });
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    uint64_t checksum = 0;
    for (uint64_t v : partial) checksum += v;
    asm volatile("" : : "r"(checksum));  // keeps the reads from being optimized away
    best = std::max(best, static_cast<double>(total_words) * sizeof(uint64_t) / sec);
  }
  return best;
}

struct Result {
  int threads = 0;
  int n_prompt = 0;
  int n_gen = 0;
  int n_depth = 0;
  std::vector<double> samples_ns;
  // Generation-only tests: the read bandwidth (bytes/s, this test's threads) measured right
  // before the first repetition and after each one, so each repetition's bound comes from the
  // memory conditions around it (on a shared machine the neighbours' load moves both).
  std::vector<double> bandwidth_probes;
  ForwardProfile profile;  // summed over the repetitions (--profile)
  double mean_bandwidth() const {
    double s = 0;
    for (double x : bandwidth_probes) s += x;
    return bandwidth_probes.empty() ? 0 : s / bandwidth_probes.size();
  }
  // Mean over repetitions of tok/s divided by the bound of the probes on either side.
  double bound_share(double bytes_per_token) const {
    const auto ts = samples_ts();
    if (bandwidth_probes.size() != ts.size() + 1 || bytes_per_token <= 0) return 0;
    double s = 0;
    for (size_t i = 0; i < ts.size(); ++i) {
      const double bandwidth = 0.5 * (bandwidth_probes[i] + bandwidth_probes[i + 1]);
      s += ts[i] * bytes_per_token / bandwidth;
    }
    return s / ts.size();
  }
  double avg_ns() const {
    double s = 0;
    for (double x : samples_ns) s += x;
    return s / samples_ns.size();
  }
  double stddev_ns() const { return Stddev(samples_ns); }
  std::vector<double> samples_ts() const {
    std::vector<double> ts;
    const int n = n_prompt + n_gen;
    for (double x : samples_ns) ts.push_back(1e9 * n / x);
    return ts;
  }
  double avg_ts() const {
    const auto ts = samples_ts();
    double s = 0;
    for (double x : ts) s += x;
    return s / ts.size();
  }
  double stddev_ts() const { return Stddev(samples_ts()); }
  static double Stddev(const std::vector<double>& v) {
    if (v.size() < 2) return 0;
    double mean = 0;
    for (double x : v) mean += x;
    mean /= v.size();
    double ss = 0;
    for (double x : v) ss += (x - mean) * (x - mean);
    return std::sqrt(ss / (v.size() - 1));
  }
};

// One measurement: pp (n_prompt tokens in one batch) and/or tg (n_gen single-token steps),
// after the untimed context of `depth` (null: none), with random token ids as llama-bench uses.
// profile (may be null) times the measured part only.
StatusOr<double> RunOnce(const LoadedModel& model, ThreadPool* pool, const Options& o, int n_prompt,
                         int n_gen, const InferenceState* depth, std::mt19937* rng,
                         ForwardProfile* profile = nullptr) {
  std::uniform_int_distribution<int32_t> tok(0, model.config().vocab_size - 1);
  InferenceState state(model, pool, o.ubatch, *ParseKvType(o.cache_type));
  std::vector<float> logits;
  if (depth != nullptr) GEMMA4_RETURN_IF_ERROR(state.CopyStateFrom(*depth));
  state.set_profile(profile);
  const auto t0 = std::chrono::steady_clock::now();
  if (n_prompt > 0) {
    std::vector<int32_t> ids(n_prompt);
    for (auto& id : ids) id = tok(*rng);
    GEMMA4_RETURN_IF_ERROR(state.Forward(ids.data(), n_prompt, LogitsMode::kLast, &logits));
  }
  for (int i = 0; i < n_gen; ++i) {
    const int32_t id = tok(*rng);
    GEMMA4_RETURN_IF_ERROR(state.Forward(&id, 1, LogitsMode::kLast, &logits));
  }
  return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
}

std::string CpuInfo() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown";
}

std::string JsonObject(const Options& o, const LoadedModel& model, const Result& r, uint64_t rss,
                       double bytes_per_token, double bandwidth) {
  auto num_array = [](const std::vector<double>& v, bool integral) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) {
      char buf[64];
      std::snprintf(buf, sizeof(buf), integral ? "%.0f" : "%.6f", v[i]);
      s += (i ? ", " : "") + std::string(buf);
    }
    return s + "]";
  };
  auto str = [](const std::string& s) {
    std::string out;
    json::AppendQuoted(s, &out);
    return out;
  };
  char buf[4096];
  std::time_t now = std::time(nullptr);
  char when[64];
  std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  std::snprintf(
      buf, sizeof(buf),
      "{\"build_commit\": \"gemma4\", \"build_number\": 0, \"cpu_info\": %s, \"gpu_info\": "
      "\"\", \"backends\": \"CPU\", \"model_filename\": %s, \"model_type\": %s, "
      "\"model_size\": %llu, \"model_n_params\": %lld, \"n_batch\": 512, \"n_ubatch\": %d, "
      "\"n_threads\": %d, \"type_k\": \"%s\", \"type_v\": \"%s\", \"n_gpu_layers\": 0, "
      "\"n_prompt\": %d, \"n_gen\": %d, \"n_depth\": %d, \"test_time\": \"%s\", "
      "\"avg_ns\": %.0f, \"stddev_ns\": %.0f, \"avg_ts\": %.6f, \"stddev_ts\": %.6f, "
      "\"samples_ns\": %s, \"samples_ts\": %s, \"peak_rss_bytes\": %llu, "
      "\"bytes_per_token\": %.0f, \"read_bandwidth_bytes_per_s\": %.0f}",
      str(CpuInfo()).c_str(), str(o.model).c_str(), str(model.config().variant).c_str(),
      static_cast<unsigned long long>(model.weight_bytes()),
      static_cast<long long>(model.num_parameters()), o.ubatch, r.threads, o.cache_type.c_str(),
      o.cache_type.c_str(), r.n_prompt, r.n_gen, r.n_depth, when, r.avg_ns(), r.stddev_ns(),
      r.avg_ts(), r.stddev_ts(), num_array(r.samples_ns, true).c_str(),
      num_array(r.samples_ts(), false).c_str(), static_cast<unsigned long long>(rss),
      bytes_per_token, bandwidth);
  return buf;
}

}  // namespace

Status RunBench(int argc, char** argv) {
  Options o;
  bool help = false;
  GEMMA4_RETURN_IF_ERROR(ParseOptions(argc, argv, &o, &help));
  if (help) return OkStatus();
  std::unique_ptr<LoadedModel> model;
  {
    ThreadPool load_pool(*std::max_element(o.threads.begin(), o.threads.end()));
    GEMMA4_ASSIGN_OR_RETURN(model, LoadedModel::Load(o.model, nullptr, &load_pool));
  }
  std::vector<Result> results;
  std::mt19937 rng(1234);
  for (int threads : o.threads) {
    ThreadPool pool(threads);
    std::vector<std::pair<int, int>> tests;
    for (int p : o.n_prompt) {
      if (p > 0) tests.emplace_back(p, 0);
    }
    for (int n : o.n_gen) {
      if (n > 0) tests.emplace_back(0, n);
    }
    for (const auto& pg : o.prompt_gen) tests.push_back(pg);
    for (int depth : o.n_depth) {
      // The depth's context is computed once (untimed) and copied into every run: a 32K
      // context costs minutes of prefill on two threads, the copy a fraction of a second.
      std::unique_ptr<InferenceState> context;
      if (depth > 0) {
        context =
            std::make_unique<InferenceState>(*model, &pool, o.ubatch, *ParseKvType(o.cache_type));
        std::uniform_int_distribution<int32_t> tok(0, model->config().vocab_size - 1);
        std::vector<int32_t> ids(depth);
        for (auto& id : ids) id = tok(rng);
        GEMMA4_RETURN_IF_ERROR(context->Forward(ids.data(), depth, LogitsMode::kNone, nullptr));
      }
      for (const auto& [p, n] : tests) {
        Result r;
        r.threads = threads;
        r.n_prompt = p;
        r.n_gen = n;
        r.n_depth = depth;
        GEMMA4_RETURN_IF_ERROR(
            RunOnce(*model, &pool, o, std::min(p, 32), std::min(n, 4), nullptr, &rng)
                .status());  // warm-up
        const bool generation_only = p == 0 && n > 0;
        if (generation_only) r.bandwidth_probes.push_back(MeasureReadBandwidth(*model, &pool));
        for (int rep = 0; rep < o.repetitions; ++rep) {
          GEMMA4_ASSIGN_OR_RETURN(double ns, RunOnce(*model, &pool, o, p, n, context.get(), &rng,
                                                     o.profile ? &r.profile : nullptr));
          r.samples_ns.push_back(ns);
          if (generation_only) r.bandwidth_probes.push_back(MeasureReadBandwidth(*model, &pool));
        }
        results.push_back(std::move(r));
      }
    }
  }
  // Peak RSS of the runs (the bandwidth probe below allocates nothing).
  const uint64_t rss = PeakRssBytes();
  double bandwidth = 0;
  {
    ThreadPool pool(*std::max_element(o.threads.begin(), o.threads.end()));
    bandwidth = MeasureReadBandwidth(*model, &pool);
  }
  const double bytes_per_token = static_cast<double>(model->DecodeBytesPerToken());
  if (o.output == "json" || o.output == "jsonl") {
    if (o.output == "json") std::printf("[\n");
    for (size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      const std::string obj =
          JsonObject(o, *model, r, rss, bytes_per_token,
                     r.bandwidth_probes.empty() ? bandwidth : r.mean_bandwidth());
      if (o.output == "json") {
        std::printf("  %s%s\n", obj.c_str(), i + 1 < results.size() ? "," : "");
      } else {
        std::printf("%s\n", obj.c_str());
      }
    }
    if (o.output == "json") std::printf("]\n");
  } else if (o.output == "csv") {
    std::printf(
        "model_filename,model_type,model_size,model_n_params,n_threads,n_prompt,n_gen,"
        "n_depth,avg_ns,stddev_ns,avg_ts,stddev_ts\n");
    for (const Result& r : results) {
      std::printf("\"%s\",\"%s\",%llu,%lld,%d,%d,%d,%d,%.0f,%.0f,%.6f,%.6f\n", o.model.c_str(),
                  model->config().variant.c_str(),
                  static_cast<unsigned long long>(model->weight_bytes()),
                  static_cast<long long>(model->num_parameters()), r.threads, r.n_prompt, r.n_gen,
                  r.n_depth, r.avg_ns(), r.stddev_ns(), r.avg_ts(), r.stddev_ts());
    }
  } else {
    std::printf("| model | size | params | backend | threads | test | t/s |\n");
    std::printf("| --- | ---: | ---: | --- | ---: | ---: | ---: |\n");
    for (const Result& r : results) {
      // llama-bench's test names: pp512, tg128, pp512+tg128, and "@ d4096" for depth.
      std::string test = r.n_prompt > 0 && r.n_gen > 0
                             ? "pp" + std::to_string(r.n_prompt) + "+tg" + std::to_string(r.n_gen)
                         : r.n_prompt > 0 ? "pp" + std::to_string(r.n_prompt)
                                          : "tg" + std::to_string(r.n_gen);
      if (r.n_depth > 0) test += " @ d" + std::to_string(r.n_depth);
      std::printf("| %s | %.2f GiB | %.2f B | CPU | %d | %s | %.2f ± %.2f |\n",
                  model->config().variant.c_str(), model->weight_bytes() / double(1ull << 30),
                  model->num_parameters() / 1e9, r.threads, test.c_str(), r.avg_ts(),
                  r.stddev_ts());
    }
  }
  std::fprintf(stderr, "peak RSS: %.1f MiB\n", rss / double(1 << 20));
  std::fprintf(
      stderr,
      "generation reads %.1f MiB per token; measured read bandwidth (%d threads) %.1f GB/s; "
      "bandwidth bound %.2f tok/s\n",
      bytes_per_token / double(1 << 20), *std::max_element(o.threads.begin(), o.threads.end()),
      bandwidth / 1e9, bytes_per_token > 0 ? bandwidth / bytes_per_token : 0.0);
  if (o.profile) {
    for (const Result& r : results) {
      const double total = r.avg_ns() * 1e-9 * r.samples_ns.size();
      std::fprintf(stderr,
                   "profile of pp%d tg%d d%d, %d threads (wall ms per run, share; CPU ms of all "
                   "threads per run, share):\n",
                   r.n_prompt, r.n_gen, r.n_depth, r.threads);
      double phases = 0, cpu_total = 0;
      const double runs = static_cast<double>(r.samples_ns.size());
      for (int ph = 0; ph < ForwardProfile::kPhases; ++ph) cpu_total += r.profile.cpu_seconds[ph];
      for (int ph = 0; ph < ForwardProfile::kPhases; ++ph) {
        const double sec = r.profile.seconds[ph], cpu = r.profile.cpu_seconds[ph];
        phases += sec;
        std::fprintf(stderr, "  %-30s %10.3f %5.1f%% %10.3f %5.1f%%\n", ForwardProfile::Name(ph),
                     1e3 * sec / runs, 100 * sec / total, 1e3 * cpu / runs,
                     cpu_total > 0 ? 100 * cpu / cpu_total : 0.0);
      }
      std::fprintf(stderr, "  %-30s %10.3f %5.1f%%\n", "other", 1e3 * (total - phases) / runs,
                   100 * (total - phases) / total);
    }
  }
  for (const Result& r : results) {
    if (r.n_prompt == 0 && r.n_gen > 0 && bytes_per_token > 0 && !r.bandwidth_probes.empty()) {
      const auto [lo, hi] =
          std::minmax_element(r.bandwidth_probes.begin(), r.bandwidth_probes.end());
      std::fprintf(stderr,
                   "tg%d with %d threads: %.2f tok/s = %.0f%% of the bandwidth bound (read "
                   "bandwidth %.1f-%.1f GB/s, measured before and after each run; each run "
                   "against the mean of its two)\n",
                   r.n_gen, r.threads, r.avg_ts(), 100.0 * r.bound_share(bytes_per_token),
                   *lo / 1e9, *hi / 1e9);
    }
  }
  return OkStatus();
}

}  // namespace gemma4::cli
