#include "model/speculative.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>

namespace gemma4 {
namespace {

int32_t Argmax(std::span<const float> x) {
  int32_t best = 0;
  for (size_t i = 1; i < x.size(); ++i) {
    if (x[i] > x[best]) best = static_cast<int32_t>(i);
  }
  return best;
}

// Draws from probs (sum ~1) with one uniform number in [0, 1).
int32_t Draw(const std::vector<float>& probs, double u) {
  double total = 0;
  for (float p : probs) total += p;
  double target = u * total, acc = 0;
  int32_t last = -1;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] <= 0) continue;
    acc += probs[i];
    last = static_cast<int32_t>(i);
    if (acc > target) return last;
  }
  return last;  // rounding: the last token with mass
}

}  // namespace

void TokenDistribution(std::span<const float> logits, const SpeculativeOptions& o,
                       std::vector<float>* probs) {
  const size_t V = logits.size();
  probs->assign(V, 0.0f);
  if (o.temperature <= 0) {
    (*probs)[Argmax(logits)] = 1.0f;
    return;
  }
  // Candidates sorted by logit (descending, lowest id first on ties).
  std::vector<int32_t> ids(V);
  std::iota(ids.begin(), ids.end(), 0);
  size_t keep = V;
  if (o.top_k > 0 && static_cast<size_t>(o.top_k) < V) keep = o.top_k;
  auto by_logit = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  std::partial_sort(ids.begin(), ids.begin() + keep, ids.end(), by_logit);
  ids.resize(keep);
  const double top = logits[ids[0]] / o.temperature;
  std::vector<double> e(keep);
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) {
    e[i] = std::exp(logits[ids[i]] / o.temperature - top);
    sum += e[i];
  }
  size_t n = keep;
  if (o.top_p < 1.0f) {
    double acc = 0;
    for (n = 0; n < keep;) {
      acc += e[n] / sum;
      ++n;
      if (acc >= o.top_p) break;
    }
  }
  double kept = 0;
  for (size_t i = 0; i < n; ++i) kept += e[i];
  for (size_t i = 0; i < n; ++i) (*probs)[ids[i]] = static_cast<float>(e[i] / kept);
}

StatusOr<std::vector<int32_t>> SpeculativeGenerate(const LoadedModel& target,
                                                   const Drafter* drafter, InferenceState* state,
                                                   std::span<const int32_t> prompt,
                                                   const SpeculativeOptions& o, ThreadPool* pool,
                                                   SpeculativeStats* stats,
                                                   std::function<bool(int32_t)> on_token) {
  const ModelConfig& c = target.config();
  if (prompt.empty()) return InvalidArgumentError("speculative generation needs a prompt");
  if (state->position() != 0) {
    return FailedPreconditionError("speculative generation needs an empty inference state");
  }
  if (o.draft_tokens < 0 || o.max_tokens < 0 || !(o.top_p > 0 && o.top_p <= 1) || o.top_k < 0 ||
      !std::isfinite(o.temperature)) {
    return InvalidArgumentError(
        "speculative options: draft_tokens, max_tokens and top_k must be >= 0, top_p in (0, "
        "1], temperature finite");
  }
  const int k_max = drafter != nullptr ? o.draft_tokens : 0;
  if (k_max + 2 > state->max_chunk()) {
    return InvalidArgumentError("draft_tokens " + std::to_string(k_max) + " exceeds " +
                                std::to_string(state->max_chunk() - 2) +
                                " (the inference state's chunk size - 2)");
  }
  if (drafter != nullptr) GEMMA4_RETURN_IF_ERROR(drafter->CheckCompatible(c));
  SpeculativeStats local;
  SpeculativeStats& st = stats != nullptr ? *stats : local;
  const int64_t V = c.vocab_size, H = c.hidden_size;
  std::mt19937_64 rng(o.seed);
  auto uniform = [&] { return std::generate_canonical<double, 64>(rng); };
  auto is_stop = [&](int32_t id) {
    return std::find(o.stop_ids.begin(), o.stop_ids.end(), id) != o.stop_ids.end();
  };

  std::vector<float> logits, hidden, p, q;
  state->set_hidden_output(&hidden);
  struct ClearHook {
    InferenceState* s;
    ~ClearHook() { s->set_hidden_output(nullptr); }
  } clear_hook{state};
  GEMMA4_RETURN_IF_ERROR(state->Forward(prompt.data(), static_cast<int64_t>(prompt.size()),
                                        LogitsMode::kLast, &logits));
  std::vector<int32_t> out;
  if (o.max_tokens == 0) return out;
  // pending: the next token (final, not yet in the cache) at position P = state->position();
  // h: the target's normed hidden state at P - 1.
  TokenDistribution(logits, o, &p);
  int32_t pending = o.temperature <= 0 ? Argmax(logits) : Draw(p, uniform());
  std::vector<float> h(hidden.end() - H, hidden.end());
  std::vector<int32_t> drafts, batch;
  std::vector<std::vector<float>> draft_q;
  std::vector<float> draft_logits, dh;
  while (true) {
    out.push_back(pending);
    if (on_token && !on_token(pending)) break;
    if (is_stop(pending) || static_cast<int>(out.size()) >= o.max_tokens) break;
    const int64_t P = state->position();
    // The rest of the budget bounds the round: its tokens are the accepted drafts plus one.
    const int k = std::min<int>(k_max, o.max_tokens - static_cast<int>(out.size()) - 1);
    drafts.clear();
    draft_q.clear();
    if (k > 0) {
      // Cache [0, P) is what the drafter reads; `pending` (at P) is not in it yet.
      dh = h;
      int32_t last = pending;
      for (int i = 0; i < k; ++i) {
        GEMMA4_RETURN_IF_ERROR(drafter->Step(target, *state, last, P, &dh, &draft_logits, pool));
        if (o.draft_hook) o.draft_hook(P, i, last, &draft_logits);
        draft_q.emplace_back();
        TokenDistribution(draft_logits, o, &draft_q.back());
        last = o.temperature <= 0 ? Argmax(draft_logits) : Draw(draft_q.back(), uniform());
        drafts.push_back(last);
        if (is_stop(last)) break;  // nothing after a stop token is needed
      }
    }
    // Verify: one forward over [pending, d_1 .. d_n] at positions P .. P + n.
    batch.assign(1, pending);
    batch.insert(batch.end(), drafts.begin(), drafts.end());
    hidden.clear();
    GEMMA4_RETURN_IF_ERROR(state->Forward(batch.data(), static_cast<int64_t>(batch.size()),
                                          drafts.empty() ? LogitsMode::kLast : LogitsMode::kAll,
                                          &logits));
    ++st.target_forwards;
    st.drafted += static_cast<int64_t>(drafts.size());
    // Row i of logits: the target's next-token logits after batch[i].
    size_t n = 0;  // accepted drafts
    int32_t next = -1;
    for (; n < drafts.size(); ++n) {
      std::span<const float> row(logits.data() + n * V, V);
      if (o.temperature <= 0) {
        const int32_t t = Argmax(row);
        if (t != drafts[n]) {
          next = t;
          break;
        }
        continue;
      }
      TokenDistribution(row, o, &p);
      const std::vector<float>& qn = draft_q[n];
      const int32_t d = drafts[n];
      // q(d) > 0: d was drawn from q.
      if (uniform() * qn[d] < p[d]) continue;  // accepted with probability min(1, p/q)
      std::vector<float> residual(V);
      double mass = 0;
      for (int64_t j = 0; j < V; ++j) {
        residual[j] = std::max(0.0f, p[j] - qn[j]);
        mass += residual[j];
      }
      next = mass > 0 ? Draw(residual, uniform()) : Draw(p, uniform());
      break;
    }
    st.accepted += static_cast<int64_t>(n);
    const float* next_hidden = hidden.data() + n * H;
    if (next < 0) {
      // Every draft accepted: the bonus token from the last row.
      std::span<const float> row(logits.data() + n * V, V);
      if (o.temperature <= 0) {
        next = Argmax(row);
      } else {
        TokenDistribution(row, o, &p);
        next = Draw(p, uniform());
      }
    }
    // Keep positions P .. P + n (pending and the accepted drafts); forget the rejected ones.
    if (n < drafts.size()) GEMMA4_RETURN_IF_ERROR(state->Truncate(P + 1 + static_cast<int64_t>(n)));
    h.assign(next_hidden, next_hidden + H);
    bool stopped = false;
    for (size_t i = 0; i < n; ++i) {
      out.push_back(drafts[i]);
      if ((on_token && !on_token(drafts[i])) || is_stop(drafts[i]) ||
          static_cast<int>(out.size()) >= o.max_tokens) {
        stopped = true;
        break;
      }
    }
    if (stopped) break;
    pending = next;
  }
  return out;
}

}  // namespace gemma4
