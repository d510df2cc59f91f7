// A game loop hosting several NPCs that share one model. Each NPC's reply is generated on a
// worker thread that may only produce `kTokensPerFrame` tokens per frame: the frame loop
// grants budgets and draws whatever text has arrived, and never waits for the model.
//   example_npc MODEL [--tokenizer PATH] [--threads N]
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common.h"
#include "gemma4/session.h"

namespace {

constexpr int kTokensPerFrame = 2;
constexpr int kFrames = 40;

struct Npc {
  std::string name;
  std::unique_ptr<gemma4::Session> session;
  std::mutex mu;
  std::condition_variable cv;
  int budget = 0;  // tokens the worker may still generate this frame
  bool done = false;
  std::string said;  // streamed text so far (read by the frame loop)
  std::thread worker;
};

}  // namespace

int main(int argc, char** argv) {
  const examples::Args args =
      examples::Parse(argc, argv, "example_npc MODEL [--tokenizer PATH] [--threads N]");
  auto model = examples::LoadOrDie(args);
  std::vector<std::unique_ptr<Npc>> npcs;
  for (const char* name : {"Blacksmith", "Innkeeper", "Guard"}) {
    auto npc = std::make_unique<Npc>();
    npc->name = name;
    gemma4::SessionOptions so;
    so.system_prompt = std::string("You are the village ") + name + ". One sentence answers.";
    auto s = gemma4::Session::Create(model, so);
    if (!s.ok()) return 1;
    npc->session = std::move(*s);
    npcs.push_back(std::move(npc));
  }
  for (auto& npc_ptr : npcs) {
    Npc* npc = npc_ptr.get();
    npc->worker = std::thread([npc] {
      gemma4::GenerateOptions o;
      o.max_tokens = 48;
      // Called for every generated token: wait for this frame's budget.
      o.on_token = [npc](int32_t) {
        std::unique_lock<std::mutex> lock(npc->mu);
        npc->cv.wait(lock, [npc] { return npc->budget > 0; });
        --npc->budget;
        return true;
      };
      o.on_text = [npc](gemma4::StreamKind kind, std::string_view text) {
        if (kind == gemma4::StreamKind::kText) {
          std::lock_guard<std::mutex> lock(npc->mu);
          npc->said.append(text);
        }
        return true;
      };
      (void)npc->session->Send("A traveller greets you. What do you say?", o);
      std::lock_guard<std::mutex> lock(npc->mu);
      npc->done = true;
    });
  }
  const auto frame_time = std::chrono::milliseconds(16);
  for (int frame = 0; frame < kFrames; ++frame) {
    const auto start = std::chrono::steady_clock::now();
    int finished = 0;
    for (auto& npc : npcs) {
      std::lock_guard<std::mutex> lock(npc->mu);
      npc->budget = kTokensPerFrame;  // grant this frame's tokens (never blocks)
      npc->cv.notify_all();
      finished += npc->done;
    }
    if (frame % 10 == 0 || finished == static_cast<int>(npcs.size())) {
      std::printf("frame %d\n", frame);
      for (auto& npc : npcs) {
        std::lock_guard<std::mutex> lock(npc->mu);
        std::printf("  %-10s: %s%s\n", npc->name.c_str(), npc->said.c_str(),
                    npc->done ? " [done]" : "");
      }
    }
    if (finished == static_cast<int>(npcs.size())) break;
    std::this_thread::sleep_until(start + frame_time);
  }
  // Let unfinished NPCs complete, then join.
  for (auto& npc : npcs) {
    {
      std::lock_guard<std::mutex> lock(npc->mu);
      npc->budget = 1 << 20;
      npc->cv.notify_all();
    }
    npc->worker.join();
  }
  return 0;
}
