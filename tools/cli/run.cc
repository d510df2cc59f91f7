// gemma4 run: one prompt, one reply, for scripts. The reply's text goes to stdout as it is
// generated (a newline after it); the thought (with --think), the stop reason and the timing
// go to stderr, so `answer=$(gemma4 run ...)` captures the answer alone.
#include <cstdio>
#include <string>
#include <vector>

#include "formats/mapped_file.h"
#include "gemma4/model.h"
#include "gemma4/session.h"
#include "tools/cli/args.h"
#include "tools/cli/commands.h"
#include "tools/cli/session_args.h"

namespace gemma4::cli {

Status RunOnePrompt(int argc, char** argv) {
  ModelArgs model_args;
  SamplingArgs sampling;
  std::string prompt, prompt_file, system, json_schema, video;
  std::vector<std::string> images, audio;
  int64_t image_budget = 0, video_budget = 0;
  bool think = false;
  ArgParser parser(
      "gemma4 run --model PATH (--prompt TEXT | --prompt-file F) [--system TEXT] [--think]\n"
      "                  [--json-schema F] [-n N] [--temperature T] [--seed S] [--image F ...]\n"
      "                  [--audio F ...] [--video F] [--mmproj F] [--threads N]",
      "Sends one user message through the chat template and prints the model's reply on stdout\n"
      "(streamed, then a newline). With --think the thought goes to stderr, marked [thinking].\n"
      "The stop reason, token counts and timing go to stderr as one line:\n"
      "  gemma4 run: stop: end_of_turn; N prompt tokens in S s, N generated in S s (T tok/s); "
      "greedy\n"
      "Exit status 0 when a reply was produced (whatever the stop reason), 1 on an error.\n");
  AddModelArgs(&parser, &model_args);
  AddMaxTokensArg(&parser, &sampling);
  AddSamplingArgs(&parser, &sampling);
  parser.String({"--prompt", "-p"}, "TEXT", "the user message", &prompt)
      .String({"--prompt-file", "-f"}, "F", "the user message from a file ('-': stdin)",
              &prompt_file)
      .String({"--system"}, "TEXT", "system prompt", &system)
      .Flag({"--think"}, "thinking mode (the thought goes to stderr)", &think)
      .String({"--json-schema"}, "F",
              "the answer is JSON matching this schema (a file, or the schema itself when it "
              "starts with '{')",
              &json_schema)
      .Strings({"--image"}, "F", "image in the message, before the text", &images)
      .Int({"--image-budget"}, "N", "soft tokens per image: 70, 140, 280, 560 or 1120", 70, 1120,
           &image_budget)
      .Strings({"--audio"}, "F", "recording in the message (WAV/FLAC/Ogg/MP3)", &audio)
      .String({"--video"}, "F", "video file in the message, sampled at 1 frame per second", &video)
      .Int({"--video-budget"}, "N", "soft tokens per video frame (default 70)", 70, 1120,
           &video_budget);
  GEMMA4_RETURN_IF_ERROR(parser.Parse(argc, argv));
  if (parser.help_requested()) return parser.PrintHelp();
  if (parser.Given("--prompt") == parser.Given("--prompt-file")) {
    return InvalidArgumentError("give exactly one of --prompt TEXT and --prompt-file F");
  }
  if (parser.Given("--prompt-file")) {
    if (prompt_file == "-") {
      prompt.clear();
      char buf[4096];
      size_t n;
      while ((n = std::fread(buf, 1, sizeof(buf), stdin)) > 0) prompt.append(buf, n);
      if (std::ferror(stdin)) return InvalidArgumentError("--prompt-file -: cannot read stdin");
    } else {
      GEMMA4_ASSIGN_OR_RETURN(prompt, ReadFileToString(prompt_file));
    }
  }
  if (parser.Given("--json-schema") && (json_schema.empty() || json_schema.front() != '{')) {
    GEMMA4_ASSIGN_OR_RETURN(json_schema, ReadFileToString(json_schema));
  }
  if (parser.Given("--image-budget") && images.empty()) {
    return InvalidArgumentError("--image-budget without --image");
  }
  if (parser.Given("--video-budget") && video.empty()) {
    return InvalidArgumentError("--video-budget without --video");
  }
  GEMMA4_ASSIGN_OR_RETURN(auto model, LoadModel(model_args));
  SessionOptions session_options;
  session_options.system_prompt = system;
  GEMMA4_ASSIGN_OR_RETURN(auto session, Session::Create(model, session_options));

  GenerateOptions options;
  options.thinking = think;
  options.max_tokens = static_cast<int>(sampling.max_tokens);
  options.sampler = SamplerFor(model->info(), sampling);
  options.json_schema = json_schema;
  bool in_thought = false;
  options.on_text = [&](StreamKind kind, std::string_view text) {
    if (kind == StreamKind::kThought) {
      if (!in_thought) std::fputs("[thinking] ", stderr);
      in_thought = true;
      std::fwrite(text.data(), 1, text.size(), stderr);
      return true;
    }
    if (in_thought) std::fputc('\n', stderr);
    in_thought = false;
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    return true;
  };
  StatusOr<Reply> reply = InvalidArgumentError("no message");
  if (images.empty() && audio.empty() && video.empty()) {
    reply = session->Send(prompt, options);
  } else {
    // Media first, then the text, as one user turn.
    std::vector<ContentPart> content;
    for (const std::string& path : images) {
      content.push_back(
          ContentPart::FromImage(Image::FromFile(path, static_cast<int>(image_budget))));
    }
    if (!video.empty()) {
      content.push_back(
          ContentPart::FromVideo(Video::FromFile(video, static_cast<int>(video_budget))));
    }
    for (const std::string& path : audio) {
      content.push_back(ContentPart::FromAudio(Audio::FromFile(path)));
    }
    content.push_back(ContentPart::Text(prompt));
    reply = session->Send(content, options);
  }
  if (in_thought) std::fputc('\n', stderr);
  if (!reply.ok()) return reply.status();
  std::fputc('\n', stdout);
  std::fflush(stdout);
  const SamplerOptions sampler = options.sampler.value_or(model->info().default_sampler);
  std::fprintf(stderr,
               "gemma4 run: stop: %s; %d prompt tokens in %.2f s, %d generated in %.2f s "
               "(%.1f tok/s); %s\n",
               StopReasonName(reply->stop_reason), reply->prompt_tokens, reply->prefill_seconds,
               reply->generated_tokens, reply->decode_seconds,
               reply->decode_seconds > 0 ? reply->generated_tokens / reply->decode_seconds : 0.0,
               DescribeSampler(sampler).c_str());
  if (reply->drafted_tokens > 0) {
    std::fprintf(stderr, "gemma4 run: drafting: %d of %d drafts accepted (%.2f)\n",
                 reply->accepted_draft_tokens, reply->drafted_tokens,
                 double(reply->accepted_draft_tokens) / reply->drafted_tokens);
  }
  return OkStatus();
}

}  // namespace gemma4::cli
