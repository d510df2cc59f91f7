/* The C API from C99 (compiled with -std=c99 -pedantic -Werror), against libgemma4.so:
 * load, model info, tokenize/detokenize, streamed chat, a constrained tool call, fork,
 * save/restore, cancellation by callback, and errors with messages. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemma4.h"

/* 0.2's init, still exported (the header now reaches the sized one through a macro). */
GEMMA4_API void(gemma4_model_options_init)(gemma4_model_options* options);

static int failures = 0;
#define CHECK(cond)                                                                            \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
              gemma4_last_error());                                                            \
      ++failures;                                                                              \
    }                                                                                          \
  } while (0)

struct stream {
  char text[4096];
  size_t len;
  int calls;
};

static int on_text(gemma4_stream_kind kind, const char* text, size_t len, void* user_data) {
  struct stream* s = (struct stream*)user_data;
  if (kind == GEMMA4_STREAM_TEXT && s->len + len < sizeof(s->text)) {
    memcpy(s->text + s->len, text, len);
    s->len += len;
    s->text[s->len] = '\0';
  }
  ++s->calls;
  return 1;
}

static int stop_at_three(gemma4_stream_kind kind, const char* text, size_t len, void* user_data) {
  int* n = (int*)user_data;
  (void)kind;
  (void)text;
  (void)len;
  return ++*n < 3;
}

static int tool_invocations = 0;
static gemma4_status weather(const char* arguments_json, gemma4_tool_result* result,
                             void* user_data) {
  const char* answer = "{\"temp\": 18}";
  (void)user_data;
  ++tool_invocations;
  if (strstr(arguments_json, "\"city\"") == NULL) {
    gemma4_tool_result_set(result, "missing city", strlen("missing city"));
    return GEMMA4_INVALID_ARGUMENT;
  }
  gemma4_tool_result_set(result, answer, strlen(answer));
  return GEMMA4_OK;
}

int main(int argc, char** argv) {
  const char* fixtures = argc > 1 ? argv[1] : "tests/fixtures";
  char model_path[1024], tokenizer_path[1024];
  gemma4_model_options mo;
  gemma4_model* model = NULL;
  gemma4_model_info info;
  gemma4_session_options so;
  gemma4_session* session = NULL;
  gemma4_session* fork = NULL;
  gemma4_session* restored = NULL;
  gemma4_session* bad = NULL;
  gemma4_generate_options go;
  gemma4_sampler_options sampler;
  gemma4_reply* reply = NULL;
  gemma4_reply* reply2 = NULL;
  gemma4_tools* tools = NULL;
  struct stream s;
  int32_t ids[64];
  size_t n_ids = 0, len = 0, size = 0;
  char text[256];
  void* state = NULL;
  int major = -1, minor = -1, patch = -1, stops = 0;
  const int32_t banned[3] = {1, 106, 50};
  const float ban[3] = {-1e30f, -1e30f, -1e30f};
  gemma4_status st;

  gemma4_version(&major, &minor, &patch);
  CHECK(major == GEMMA4_VERSION_MAJOR && minor == GEMMA4_VERSION_MINOR);
  CHECK(strcmp(gemma4_version_string(), "0.4.0") == 0);

  /* Errors: a bad path fails with a message naming it. */
  st = gemma4_model_load("/nonexistent/model", NULL, &model);
  CHECK(st != GEMMA4_OK && model == NULL);
  CHECK(strstr(gemma4_last_error(), "/nonexistent/model") != NULL);
  CHECK(gemma4_model_load(NULL, NULL, &model) == GEMMA4_INVALID_ARGUMENT);

  snprintf(model_path, sizeof(model_path), "%s/models/tiny-e2b/gemma4", fixtures);
  snprintf(tokenizer_path, sizeof(tokenizer_path), "%s/chat/tiny_tokenizer", fixtures);
  gemma4_model_options_init(&mo);
  mo.threads = 2;
  mo.tokenizer_path = tokenizer_path;
  st = gemma4_model_load(model_path, &mo, &model);
  CHECK(st == GEMMA4_OK);
  if (st != GEMMA4_OK) return 1;
  info.struct_size = sizeof(info);
  CHECK(gemma4_model_get_info(model, &info) == GEMMA4_OK);
  CHECK(info.vocab_size == 512 && info.num_layers > 0 && info.large_chat_template == 0);
  CHECK(strcmp(info.kv_cache_type, "f32") == 0); /* float weights: the exact cache */

  /* The memory plan, from the headers and from the loaded model; a cap below it refuses. */
  {
    gemma4_memory_plan plan, loaded_plan, longer;
    gemma4_model* capped = NULL;
    gemma4_model_options capped_options;
    gemma4_memory_plan_init(&plan);
    gemma4_memory_plan_init(&loaded_plan);
    gemma4_memory_plan_init(&longer);
    CHECK(gemma4_plan_memory(model_path, &mo, 256, &plan) == GEMMA4_OK);
    CHECK(gemma4_model_plan_memory(model, 256, &loaded_plan) == GEMMA4_OK);
    CHECK(gemma4_model_plan_memory(model, 512, &longer) == GEMMA4_OK);
    CHECK(plan.struct_size == sizeof(plan) && plan.context_tokens == 256);
    CHECK(plan.kv_cache_type == GEMMA4_KV_CACHE_F32 && plan.threads == 2);
    CHECK(plan.weights_mapped > 0 && plan.kv_full > 0 && plan.total == loaded_plan.total);
    CHECK(longer.kv_full == 2 * plan.kv_full);
    CHECK(plan.max_image_tokens == 1120); /* max_image_tokens 0: the largest budget */
    {
      /* An explicit budget is reported back; the plan is otherwise that of the options. */
      gemma4_model_options budget_options = mo;
      gemma4_memory_plan budget_plan;
      gemma4_memory_plan_init(&budget_plan);
      budget_options.max_image_tokens = 280;
      CHECK(gemma4_plan_memory(model_path, &budget_options, 256, &budget_plan) == GEMMA4_OK);
      CHECK(budget_plan.max_image_tokens == 280 && budget_plan.kv_full == plan.kv_full);
    }
    CHECK(gemma4_plan_memory(NULL, NULL, 1, &plan) == GEMMA4_INVALID_ARGUMENT);
    capped_options = mo;
    capped_options.memory_limit_bytes = plan.weights_mapped / 2;
    CHECK(gemma4_model_load(model_path, &capped_options, &capped) == GEMMA4_RESOURCE_EXHAUSTED);
    CHECK(capped == NULL && strstr(gemma4_last_error(), "memory_limit_bytes") != NULL);
  }

  /* Option structs: the sized init writes no byte beyond the size it is given (a program built
   * against an older, shorter struct), and 0.2's exported init writes only 0.2's fields. */
  {
    unsigned char buf[sizeof(gemma4_model_options) + 16];
    const size_t old_size = offsetof(gemma4_model_options, kv_cache_type);
    size_t i;
    memset(buf, 0xAB, sizeof(buf));
    gemma4_model_options_init_sized((gemma4_model_options*)(void*)buf, old_size);
    CHECK(((gemma4_model_options*)(void*)buf)->struct_size == old_size);
    for (i = old_size; i < sizeof(buf); ++i) CHECK(buf[i] == 0xAB);
    memset(buf, 0xAB, sizeof(buf));
    (gemma4_model_options_init)((gemma4_model_options*)(void*)buf);
    CHECK(((gemma4_model_options*)(void*)buf)->struct_size == old_size);
    for (i = old_size; i < sizeof(buf); ++i) CHECK(buf[i] == 0xAB);
    memset(buf, 0xAB, sizeof(buf));
    gemma4_model_options_init_sized((gemma4_model_options*)(void*)buf, sizeof(buf));
    CHECK(((gemma4_model_options*)(void*)buf)->struct_size == sizeof(gemma4_model_options));
    CHECK(((gemma4_model_options*)(void*)buf)->kv_cache_type == GEMMA4_KV_CACHE_AUTO);
    CHECK(buf[sizeof(gemma4_model_options)] == 0xAB);
  }
  {
    /* The KV cache type is chosen at load; a value outside the enum is refused by name. */
    gemma4_model* f16_model = NULL;
    gemma4_model_info f16_info;
    gemma4_model_options f16_options;
    gemma4_model_options_init(&f16_options);
    f16_options.threads = 1;
    f16_options.tokenizer_path = tokenizer_path;
    f16_options.kv_cache_type = GEMMA4_KV_CACHE_F16;
    CHECK(gemma4_model_load(model_path, &f16_options, &f16_model) == GEMMA4_OK);
    f16_info.struct_size = sizeof(f16_info);
    CHECK(f16_model != NULL && gemma4_model_get_info(f16_model, &f16_info) == GEMMA4_OK &&
          strcmp(f16_info.kv_cache_type, "f16") == 0);
    gemma4_model_free(f16_model);
    f16_model = NULL;
    f16_options.kv_cache_type = 7;
    CHECK(gemma4_model_load(model_path, &f16_options, &f16_model) == GEMMA4_INVALID_ARGUMENT);
    CHECK(f16_model == NULL && strstr(gemma4_last_error(), "kv_cache_type 7") != NULL);
  }

  CHECK(gemma4_tokenize(model, "<|turn>user", 11, 0, ids, 64, &n_ids) == GEMMA4_OK);
  CHECK(n_ids >= 2 && ids[0] == 105);
  CHECK(gemma4_tokenize(model, "hello world", 11, 0, ids, 1, &n_ids) == GEMMA4_OUT_OF_RANGE);
  CHECK(n_ids > 1);
  CHECK(gemma4_tokenize(model, "hello world", 11, 0, ids, 64, &n_ids) == GEMMA4_OK);
  CHECK(gemma4_detokenize(model, ids, n_ids, 0, text, sizeof(text), &len) == GEMMA4_OK);
  CHECK(strcmp(text, "hello world") == 0 && len == 11);
  {
    /* Ids outside the vocabulary are refused (they were silently dropped), as the CLI does. */
    const int32_t bad_ids[3] = {105, 1 << 30, 106};
    const int32_t negative_ids[2] = {105, -1};
    CHECK(gemma4_detokenize(model, bad_ids, 3, 0, text, sizeof(text), &len) ==
          GEMMA4_INVALID_ARGUMENT);
    CHECK(strstr(gemma4_last_error(), "ids[1] = 1073741824 is outside the vocabulary") != NULL);
    CHECK(gemma4_detokenize(model, negative_ids, 2, 0, text, sizeof(text), &len) ==
          GEMMA4_INVALID_ARGUMENT);
    CHECK(strstr(gemma4_last_error(), "ids[1] = -1") != NULL);
  }

  /* Streamed chat, greedy. */
  gemma4_session_options_init(&so);
  so.system_prompt = "Be brief.";
  CHECK(gemma4_session_create(model, &so, &session) == GEMMA4_OK);
  gemma4_sampler_options_init(&sampler, model);
  sampler.temperature = 0;
  gemma4_generate_options_init(&go);
  go.max_tokens = 8;
  go.sampler = &sampler;
  go.stop_on_repetition = 0;
  memset(&s, 0, sizeof(s));
  go.on_text = on_text;
  go.user_data = &s;
  CHECK(gemma4_session_send(session, "Hello!", &go, &reply) == GEMMA4_OK);
  CHECK(reply != NULL);
  CHECK(strcmp(gemma4_reply_text(reply), s.text) == 0);
  CHECK(gemma4_reply_generated_tokens(reply) >= 1 && gemma4_reply_generated_tokens(reply) <= 8);
  CHECK(gemma4_session_num_turns(session) == 3);
  {
    /* The context's ids: the total first, then a copy (here cut short at 4 ids). */
    size_t count = 0, again = 0;
    int32_t first[4] = {-1, -1, -1, -1};
    CHECK(gemma4_session_context_token_ids(session, NULL, 0, &count) == GEMMA4_OK);
    CHECK((int64_t)count == gemma4_session_context_tokens(session) && count > 4);
    CHECK(gemma4_session_context_token_ids(session, first, 4, &again) == GEMMA4_OK);
    CHECK(again == count && first[0] == 2); /* <bos> */
    CHECK(gemma4_session_context_token_ids(session, NULL, 4, &count) == GEMMA4_INVALID_ARGUMENT);
    CHECK(gemma4_session_context_token_ids(NULL, NULL, 0, &count) == GEMMA4_INVALID_ARGUMENT);
  }

  /* Fork and save/restore continue identically. */
  CHECK(gemma4_session_fork(session, &fork) == GEMMA4_OK);
  CHECK(gemma4_session_save(session, &state, &size) == GEMMA4_OK && size > 0);
  CHECK(gemma4_session_restore(model, state, size, NULL, &restored) == GEMMA4_OK);
  go.on_text = NULL;
  gemma4_reply_free(reply);
  reply = NULL;
  CHECK(gemma4_session_send(fork, "More", &go, &reply) == GEMMA4_OK);
  CHECK(gemma4_session_send(restored, "More", &go, &reply2) == GEMMA4_OK);
  CHECK(reply && reply2 && strcmp(gemma4_reply_text(reply), gemma4_reply_text(reply2)) == 0);
  CHECK(gemma4_reply_reused_tokens(reply2) > 0);
  gemma4_reply_free(reply);
  gemma4_reply_free(reply2);
  reply = reply2 = NULL;
  CHECK(gemma4_session_restore(model, "garbage", 7, NULL, &bad) == GEMMA4_DATA_LOSS);
  CHECK(bad == NULL);

  /* Cancellation from the streaming callback (stop tokens banned so the turn runs on). */
  sampler.logit_bias_ids = banned;
  sampler.logit_bias_values = ban;
  sampler.n_logit_bias = 3;
  go.max_tokens = 100;
  go.on_text = stop_at_three;
  go.user_data = &stops;
  st = gemma4_session_send(session, "Talk", &go, &reply);
  CHECK(st == GEMMA4_CANCELLED && reply == NULL);
  CHECK(stops == 3);

  /* A constrained tool call on the random model: always a valid call. */
  CHECK(gemma4_tools_create(&tools) == GEMMA4_OK);
  CHECK(gemma4_tools_register(tools, "get_weather", "Weather for a city",
                              "{\"type\": \"object\", \"properties\": {\"city\": {\"type\": "
                              "\"string\", \"maxLength\": 12}}, \"required\": [\"city\"]}",
                              weather, NULL) == GEMMA4_OK);
  CHECK(gemma4_tools_register(tools, "bad name!", "", NULL, weather, NULL) ==
        GEMMA4_INVALID_ARGUMENT);
  gemma4_session_free(session);
  session = NULL;
  so.tools = tools;
  CHECK(gemma4_session_create(model, &so, &session) == GEMMA4_OK);
  gemma4_generate_options_init(&go);
  sampler.temperature = 1.0f;
  sampler.seed = 7;
  sampler.n_logit_bias = 0;
  go.sampler = &sampler;
  go.require_tool_call = 1;
  go.max_tool_steps = 1;
  go.max_calls_per_round = 1;
  go.max_tokens = 1000;
  CHECK(gemma4_session_send(session, "Weather in Paris?", &go, &reply) == GEMMA4_OK);
  CHECK(reply != NULL && gemma4_reply_num_tool_calls(reply) >= 1);
  if (reply != NULL && gemma4_reply_num_tool_calls(reply) >= 1) {
    CHECK(strcmp(gemma4_reply_tool_call_name(reply, 0), "get_weather") == 0);
    CHECK(strstr(gemma4_reply_tool_call_arguments(reply, 0), "\"city\":\"") != NULL);
    CHECK(gemma4_reply_num_tool_results(reply) >= 1);
    CHECK(tool_invocations >= 1);
  }
  gemma4_reply_free(reply);

  /* Images: a turn of text and an image file, then raw pixels; bad images are errors. */
  {
    gemma4_model* vmodel = NULL;
    gemma4_model* tmodel = NULL;
    gemma4_session* vsession = NULL;
    gemma4_session* tsession = NULL;
    gemma4_content* content = NULL;
    gemma4_reply* vreply = NULL;
    gemma4_model_info vinfo;
    char vpath[1024], vtok[1024], image[1024], tpath[1024];
    uint8_t pixels[4 * 5 * 3];
    const char junk[] = "\x89PNG not really";
    snprintf(vpath, sizeof(vpath), "%s/vision/tiny-e2b-vision", fixtures);
    snprintf(vtok, sizeof(vtok), "%s/vision/tokenizer", fixtures);
    snprintf(image, sizeof(image), "%s/vision/images/up_200x150.png", fixtures);
    snprintf(tpath, sizeof(tpath), "%s/models/tiny-e2b/gemma4_text", fixtures);
    mo.tokenizer_path = vtok;
    CHECK(gemma4_model_load(vpath, &mo, &vmodel) == GEMMA4_OK);
    vinfo.struct_size = sizeof(vinfo);
    CHECK(vmodel != NULL && gemma4_model_get_info(vmodel, &vinfo) == GEMMA4_OK);
    CHECK(vinfo.vision == 1 && vinfo.default_image_tokens == 280);
    CHECK(gemma4_session_create(vmodel, NULL, &vsession) == GEMMA4_OK);
    CHECK(gemma4_content_create(&content) == GEMMA4_OK);
    CHECK(gemma4_content_add_text(content, "Describe", 8) == GEMMA4_OK);
    CHECK(gemma4_content_add_image_file(content, image, 70) == GEMMA4_OK);
    CHECK(gemma4_content_add_image_rgb(content, pixels, 0, 5, 12, 0) == GEMMA4_INVALID_ARGUMENT);
    CHECK(gemma4_content_add_image_rgb(content, pixels, 4, 5, 11, 0) == GEMMA4_INVALID_ARGUMENT);
    memset(pixels, 128, sizeof(pixels));
    CHECK(gemma4_content_add_image_rgb(content, pixels, 4, 5, 12, 70) == GEMMA4_OK);
    gemma4_generate_options_init(&go);
    go.max_tokens = 2;
    CHECK(gemma4_session_send_content(vsession, content, &go, &vreply) == GEMMA4_OK);
    /* 63 soft tokens for the picture, 1 for the 4x5 pixels (48x48 after resizing), and the
     * <|image> / <image|> pairs. */
    CHECK(vreply != NULL && gemma4_reply_prompt_tokens(vreply) > 63 + 1 + 4);
    gemma4_reply_free(vreply);
    vreply = NULL;
    gemma4_content_free(content);
    content = NULL;
    CHECK(gemma4_content_create(&content) == GEMMA4_OK);
    CHECK(gemma4_content_add_image_bytes(content, junk, sizeof(junk) - 1, 0) == GEMMA4_OK);
    CHECK(gemma4_session_send_content(vsession, content, &go, &vreply) != GEMMA4_OK);
    CHECK(vreply == NULL && strlen(gemma4_last_error()) > 0);
    /* A video: frames with timestamps, on the 26B layout. */
    {
      gemma4_model* v26 = NULL;
      gemma4_session* vs = NULL;
      char v26path[1024], frame[1024];
      int k;
      snprintf(v26path, sizeof(v26path), "%s/vision/tiny-26b-vision", fixtures);
      CHECK(gemma4_model_load(v26path, &mo, &v26) == GEMMA4_OK);
      CHECK(gemma4_session_create(v26, NULL, &vs) == GEMMA4_OK);
      gemma4_content_free(content);
      CHECK(gemma4_content_create(&content) == GEMMA4_OK);
      CHECK(gemma4_content_add_video_frame_file(content, image, 0.0) ==
            GEMMA4_FAILED_PRECONDITION); /* no video begun */
      CHECK(gemma4_content_begin_video(content, 0) == GEMMA4_OK);
      for (k = 0; k < 3; ++k) {
        snprintf(frame, sizeof(frame), "%s/vision/video/frames/frame_%d.png", fixtures, k);
        CHECK(gemma4_content_add_video_frame_file(content, frame, (double)k) == GEMMA4_OK);
      }
      CHECK(gemma4_content_add_text(content, "What moves?", 11) == GEMMA4_OK);
      CHECK(gemma4_session_send_content(vs, content, &go, &vreply) == GEMMA4_OK);
      CHECK(vreply != NULL && gemma4_reply_prompt_tokens(vreply) > 3 * 65);
      gemma4_reply_free(vreply);
      vreply = NULL;
      gemma4_session_free(vs);
      gemma4_model_free(v26);
    }
    /* A text-only checkpoint refuses images. */
    CHECK(gemma4_model_load(tpath, &mo, &tmodel) == GEMMA4_OK);
    CHECK(gemma4_session_create(tmodel, NULL, &tsession) == GEMMA4_OK);
    gemma4_content_free(content);
    CHECK(gemma4_content_create(&content) == GEMMA4_OK);
    CHECK(gemma4_content_add_image_file(content, image, 0) == GEMMA4_OK);
    CHECK(gemma4_session_send_content(tsession, content, &go, &vreply) ==
          GEMMA4_FAILED_PRECONDITION);
    CHECK(strstr(gemma4_last_error(), "vision") != NULL);
    gemma4_content_free(content);
    content = NULL;
    /* Recordings on the tiny E2B with an audio tower: a WAV file and raw PCM. */
    {
      gemma4_model* amodel = NULL;
      gemma4_session* asession = NULL;
      gemma4_model_info ainfo;
      char apath[1024], wav[1024];
      float pcm[8000];
      size_t k;
      snprintf(apath, sizeof(apath), "%s/audio/tiny-e2b-audio", fixtures);
      snprintf(wav, sizeof(wav), "%s/audio/wav/speechlike_27200.wav", fixtures);
      CHECK(gemma4_model_load(apath, &mo, &amodel) == GEMMA4_OK);
      ainfo.struct_size = sizeof(ainfo);
      CHECK(amodel != NULL && gemma4_model_get_info(amodel, &ainfo) == GEMMA4_OK);
      CHECK(ainfo.audio == 1 && ainfo.vision == 1);
      CHECK(gemma4_session_create(amodel, NULL, &asession) == GEMMA4_OK);
      CHECK(gemma4_content_create(&content) == GEMMA4_OK);
      CHECK(gemma4_content_add_audio_file(content, wav) == GEMMA4_OK);
      CHECK(gemma4_content_add_text(content, "Transcribe.", 11) == GEMMA4_OK);
      for (k = 0; k < 8000; ++k) pcm[k] = (float)(k % 50) / 100.0f - 0.25f;
      CHECK(gemma4_content_add_audio_pcm(content, pcm, 8000, 8000) == GEMMA4_OK);
      CHECK(gemma4_content_add_audio_pcm(content, pcm, 8000, 0) == GEMMA4_INVALID_ARGUMENT);
      CHECK(gemma4_session_send_content(asession, content, &go, &vreply) == GEMMA4_OK);
      /* 43 soft tokens for the 1.7 s WAV, 25 for 1 s of 8 kHz PCM, two pairs of markers. */
      CHECK(vreply != NULL && gemma4_reply_prompt_tokens(vreply) > 43 + 25 + 4);
      gemma4_reply_free(vreply);
      vreply = NULL;
      gemma4_content_free(content);
      content = NULL;
      /* A model without an audio tower refuses recordings. */
      CHECK(gemma4_content_create(&content) == GEMMA4_OK);
      CHECK(gemma4_content_add_audio_file(content, wav) == GEMMA4_OK);
      CHECK(gemma4_session_send_content(tsession, content, &go, &vreply) ==
            GEMMA4_FAILED_PRECONDITION);
      CHECK(strstr(gemma4_last_error(), "audio") != NULL);
      gemma4_content_free(content);
      gemma4_session_free(asession);
      gemma4_model_free(amodel);
    }
    gemma4_session_free(tsession);
    gemma4_session_free(vsession);
    gemma4_model_free(tmodel);
    gemma4_model_free(vmodel);
  }

  /* Speculative decoding through the C API: a model loaded with the tiny assistant drafter
   * gives the same greedy reply as the plain model, drafts tokens, and draft_tokens = 0 in the
   * generate options turns drafting off for a turn. */
  {
    char draft_path[1024], draft_target[1024], draft_tokenizer[1024];
    gemma4_model_options dmo;
    gemma4_model* dmodel = NULL;
    gemma4_session *plain_session = NULL, *draft_session = NULL;
    gemma4_reply *plain_reply = NULL, *draft_reply = NULL, *off_reply = NULL;
    gemma4_generate_options dgo;
    gemma4_sampler_options greedy;
    snprintf(draft_path, sizeof(draft_path), "%s/models/tiny-e2b/assistant", fixtures);
    snprintf(draft_target, sizeof(draft_target), "%s/models/tiny-e2b/gemma4", fixtures);
    snprintf(draft_tokenizer, sizeof(draft_tokenizer), "%s/chat/tiny_tokenizer", fixtures);
    gemma4_model_options_init(&dmo);
    dmo.threads = 2;
    dmo.tokenizer_path = draft_tokenizer;
    dmo.draft_model_path = draft_path;
    dmo.draft_tokens = 3;
    CHECK(gemma4_model_load(draft_target, &dmo, &dmodel) == GEMMA4_OK);
    {
      gemma4_memory_plan with, without;
      gemma4_model_options plain = dmo;
      gemma4_memory_plan_init(&with);
      gemma4_memory_plan_init(&without);
      plain.draft_model_path = NULL;
      CHECK(gemma4_plan_memory(draft_target, &dmo, 256, &with) == GEMMA4_OK);
      CHECK(gemma4_plan_memory(draft_target, &plain, 256, &without) == GEMMA4_OK);
      CHECK(with.drafter > 0 && without.drafter == 0);
      CHECK(with.total == without.total + with.drafter);
    }
    dmo.draft_tokens = 99; /* outside 1..14: refused, naming the field */
    {
      gemma4_model* refused = NULL;
      CHECK(gemma4_model_load(draft_target, &dmo, &refused) == GEMMA4_INVALID_ARGUMENT);
      CHECK(refused == NULL && strstr(gemma4_last_error(), "draft_tokens") != NULL);
    }
    gemma4_generate_options_init(&dgo);
    CHECK(dgo.draft_tokens == -1);
    gemma4_sampler_options_init(&greedy, model);
    greedy.temperature = 0.0f;
    dgo.sampler = &greedy;
    dgo.max_tokens = 16;
    dgo.stop_on_repetition = 0;
    if (dmodel != NULL) {
      CHECK(gemma4_session_create(model, NULL, &plain_session) == GEMMA4_OK);
      CHECK(gemma4_session_create(dmodel, NULL, &draft_session) == GEMMA4_OK);
      CHECK(gemma4_session_send(plain_session, "Hi there, tell me more", &dgo, &plain_reply) ==
            GEMMA4_OK);
      CHECK(gemma4_session_send(draft_session, "Hi there, tell me more", &dgo, &draft_reply) ==
            GEMMA4_OK);
      if (plain_reply != NULL && draft_reply != NULL) {
        CHECK(strcmp(gemma4_reply_text(plain_reply), gemma4_reply_text(draft_reply)) == 0);
        CHECK(gemma4_reply_generated_tokens(plain_reply) ==
              gemma4_reply_generated_tokens(draft_reply));
        CHECK(gemma4_reply_drafted_tokens(plain_reply) == 0);
        CHECK(gemma4_reply_drafted_tokens(draft_reply) > 0);
        CHECK(gemma4_reply_accepted_draft_tokens(draft_reply) >= 0 &&
              gemma4_reply_accepted_draft_tokens(draft_reply) <=
                  gemma4_reply_drafted_tokens(draft_reply));
      }
      dgo.draft_tokens = 0;
      CHECK(gemma4_session_send(draft_session, "And then?", &dgo, &off_reply) == GEMMA4_OK);
      CHECK(off_reply != NULL && gemma4_reply_drafted_tokens(off_reply) == 0);
      CHECK(gemma4_reply_drafted_tokens(NULL) == 0);
    }
    gemma4_reply_free(plain_reply);
    gemma4_reply_free(draft_reply);
    gemma4_reply_free(off_reply);
    gemma4_session_free(plain_session);
    gemma4_session_free(draft_session);
    gemma4_model_free(dmodel);
  }

  gemma4_free(state);
  gemma4_session_free(restored);
  gemma4_session_free(fork);
  gemma4_session_free(session);
  gemma4_tools_free(tools);
  gemma4_model_free(model);
  if (failures == 0) printf("capi_test: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
