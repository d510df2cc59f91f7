/* gemma4 C API: the library's stable binary interface (C99, standard headers only).
 *
 * Conventions
 *  - Every function that can fail returns gemma4_status; GEMMA4_OK is 0. The message of the
 *    last failure on the calling thread is gemma4_last_error() (valid until the next call on
 *    that thread). No C++ exception or abort crosses this boundary.
 *  - Handles are opaque. Objects returned through `out` parameters are owned by the caller and
 *    released with the matching *_free function (passing NULL is allowed). Strings returned
 *    by getters (const char*) are owned by the object they came from and stay valid until it
 *    is freed or, for a reply/turn accessor, until the next call on the same session.
 *  - Option structs start with `struct_size` and grow only at their end. Fill them with the
 *    *_init macro: it passes the struct's size as the caller's header declares it to the
 *    *_init_sized function, which writes the defaults into that many bytes and no more, so a
 *    program built against an older header keeps working with a newer library (the library
 *    reads `struct_size` to know which fields the caller has; the rest take their defaults).
 *    Bindings call the *_init_sized functions with their own struct size.
 *  - Callbacks receive the `user_data` given with them. A session is used by one thread at a
 *    time; gemma4_session_cancel may be called from any thread. Models are shared freely.
 */
#ifndef GEMMA4_C_H_
#define GEMMA4_C_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define GEMMA4_API __declspec(dllexport)
#else
#define GEMMA4_API __attribute__((visibility("default")))
#endif

#define GEMMA4_VERSION_MAJOR 0
#define GEMMA4_VERSION_MINOR 4
#define GEMMA4_VERSION_PATCH 0

typedef enum gemma4_status {
  GEMMA4_OK = 0,
  GEMMA4_CANCELLED = 1,
  GEMMA4_UNKNOWN = 2,
  GEMMA4_INVALID_ARGUMENT = 3,
  GEMMA4_DEADLINE_EXCEEDED = 4,
  GEMMA4_NOT_FOUND = 5,
  GEMMA4_ALREADY_EXISTS = 6,
  GEMMA4_PERMISSION_DENIED = 7,
  GEMMA4_RESOURCE_EXHAUSTED = 8,
  GEMMA4_FAILED_PRECONDITION = 9,
  GEMMA4_ABORTED = 10,
  GEMMA4_OUT_OF_RANGE = 11,
  GEMMA4_UNIMPLEMENTED = 12,
  GEMMA4_INTERNAL = 13,
  GEMMA4_UNAVAILABLE = 14,
  GEMMA4_DATA_LOSS = 15
} gemma4_status;

/* ---- Library --------------------------------------------------------------------------- */

GEMMA4_API const char* gemma4_version_string(void); /* "0.4.0" */
GEMMA4_API void gemma4_version(int* major, int* minor, int* patch);
/* Message of the last failure on this thread ("" if none). */
GEMMA4_API const char* gemma4_last_error(void);
GEMMA4_API const char* gemma4_status_name(gemma4_status status);
/* Frees memory returned by gemma4_session_save and gemma4_tokenize_alloc. */
GEMMA4_API void gemma4_free(void* p);

/* ---- Model ------------------------------------------------------------------------------ */

typedef struct gemma4_model gemma4_model;

/* Element type of the KV cache. AUTO: f16 for block-quantized weights (half the cache memory
 * and bandwidth, as llama.cpp's default), f32 for float weights (the exact path). Q8_0 and
 * Q4_0 (added after 0.4.0): llama.cpp's block types, 0.27x and 0.14x of f32; models whose head_dim
 * is not a multiple of 32 refuse them when a session starts. */
typedef enum gemma4_kv_cache_type {
  GEMMA4_KV_CACHE_AUTO = 0,
  GEMMA4_KV_CACHE_F32 = 1,
  GEMMA4_KV_CACHE_F16 = 2,
  GEMMA4_KV_CACHE_Q8_0 = 3,
  GEMMA4_KV_CACHE_Q4_0 = 4
} gemma4_kv_cache_type;

typedef struct gemma4_model_options {
  uint32_t struct_size;
  int32_t threads;            /* 0 = one per hardware thread */
  const char* tokenizer_path; /* NULL = beside the weights */
  /* Progress in [0, 1]; return 0 to cancel the load (GEMMA4_CANCELLED). May be NULL. */
  int (*progress)(float fraction, void* user_data);
  void* user_data;
  int32_t kv_cache_type; /* a gemma4_kv_cache_type (0 = AUTO); since 0.3 */
  /* A llama.cpp mmproj GGUF holding the vision tower (for GGUF text models); NULL = the
   * checkpoint's own tower, if any. Since 0.4. */
  const char* mmproj_path;
  /* The most bytes the model and one session may keep resident (0 = no cap), checked
   * against the memory plan before anything is allocated: the load fails with
   * GEMMA4_RESOURCE_EXHAUSTED when the plan at one token exceeds it, gemma4_session_create
   * when the plan at the session's max_context does. Added after 0.4.0. */
  uint64_t memory_limit_bytes;
  /* Speculative decoding: a Gemma 4 assistant drafter for this model (its "-assistant"
   * checkpoint directory or GGUF); NULL = none. Sessions then draft draft_tokens tokens a round
   * (1..14; 0 = the library's default, 4) and verify them in one batched forward of the model:
   * greedy output is unchanged, sampled output keeps its distribution. Added after 0.4.0. */
  const char* draft_model_path;
  int32_t draft_tokens;
  /* The largest image budget in soft tokens (70, 140, 280, 560 or 1120; 0 = 1120) that
   * sessions encode: the memory plan sizes the vision activations for it, and an image or
   * video frame asking for more fails with GEMMA4_INVALID_ARGUMENT. Added after 0.4.0. */
  int32_t max_image_tokens;
} gemma4_model_options;

GEMMA4_API void gemma4_model_options_init_sized(gemma4_model_options* options, size_t size);
#define gemma4_model_options_init(options) \
  gemma4_model_options_init_sized((options), sizeof(*(options)))
/* path: checkpoint directory, .safetensors, or .gguf. options may be NULL. */
GEMMA4_API gemma4_status gemma4_model_load(const char* path, const gemma4_model_options* options,
                                           gemma4_model** out);
/* Sessions keep the model alive; freeing it while sessions exist is allowed. */
GEMMA4_API void gemma4_model_free(gemma4_model* model);

typedef struct gemma4_model_info {
  uint32_t struct_size;
  const char* variant; /* owned by the model */
  int32_t vocab_size;
  int32_t num_layers;
  int32_t hidden_size;
  int32_t sliding_window;
  int64_t max_context;
  int64_t num_parameters;
  uint64_t weight_bytes;
  int32_t threads;
  int32_t large_chat_template;
  /* "f32" or "f16" (owned by the model): f16 for block-quantized weights, f32 for float ones */
  const char* kv_cache_type;
  int32_t vision;               /* 1: the model takes images (its vision tower is loaded) */
  int32_t default_image_tokens; /* soft tokens per image unless a request says otherwise */
  int32_t audio;                /* 1: the model takes recordings (E2B/E4B audio tower) */
} gemma4_model_info;

GEMMA4_API gemma4_status gemma4_model_get_info(const gemma4_model* model, gemma4_model_info* out);

/* The memory plan: bytes a model and one session of context_tokens positions keep resident
 * (what the process's resident set grows by), itemized, from the files' headers without
 * reading a weight. Mapped weight pages count whole (the forward pass reads every matrix it
 * keeps in place); the per-layer-embedding table is read with pread and only reported. Set
 * struct_size (gemma4_memory_plan_init) before the call; fields past it are not written.
 * Added after 0.4.0. */
typedef struct gemma4_memory_plan {
  uint32_t struct_size;
  int32_t kv_cache_type; /* a gemma4_kv_cache_type (never AUTO: resolved) */
  int32_t threads;
  int64_t context_tokens;
  uint64_t weights_repacked;  /* anonymous copies made at load for the integer kernels */
  uint64_t weights_mapped;    /* matrices read in place from the file mapping */
  uint64_t weights_converted; /* norms and scales widened to f32 */
  uint64_t ple_table;         /* per-layer-embedding table: page cache, not counted */
  uint64_t kv_full;           /* global layers at context_tokens */
  uint64_t kv_sliding;        /* sliding-window rings */
  uint64_t kv_rewind;         /* ring snapshots a conversation keeps */
  uint64_t scratch;           /* forward-pass buffers, per-thread scores, logits */
  uint64_t tokenizer;
  uint64_t encoder_weights;
  uint64_t encoder_activations;
  uint64_t total; /* every counted item */
  /* A drafter (gemma4_model_options.draft_model_path): weights, norms, token ordering and one
   * step's buffers; counted in total. Added after 0.4.0. */
  uint64_t drafter;
  /* The largest image budget (soft tokens) the vision activations are sized for: the model
   * options' max_image_tokens, or 1120 where that is 0 (with or without a vision tower). Added
   * after 0.4.0. */
  int32_t max_image_tokens;
} gemma4_memory_plan;

#define gemma4_memory_plan_init(plan) ((plan)->struct_size = (uint32_t)sizeof(*(plan)))
/* The plan of gemma4_model_load(path, options) (options may be NULL) plus one session. */
GEMMA4_API gemma4_status gemma4_plan_memory(const char* path, const gemma4_model_options* options,
                                            int64_t context_tokens, gemma4_memory_plan* out);
/* The same for a loaded model (its options, threads and towers). */
GEMMA4_API gemma4_status gemma4_model_plan_memory(const gemma4_model* model, int64_t context_tokens,
                                                  gemma4_memory_plan* out);

/* Text -> ids. Writes at most `capacity` ids and sets *n_ids to the full count; returns
 * GEMMA4_OUT_OF_RANGE (with *n_ids set) when the buffer is too small. add_special_tokens
 * applies the tokenizer's own rule (Gemma 4 adds nothing). */
GEMMA4_API gemma4_status gemma4_tokenize(const gemma4_model* model, const char* text,
                                         size_t text_len, int add_special_tokens, int32_t* ids,
                                         size_t capacity, size_t* n_ids);
/* Ids -> UTF-8 text, NUL-terminated; same buffer protocol (*text_len excludes the NUL). An id
 * outside [0, vocab_size) is GEMMA4_INVALID_ARGUMENT naming it (nothing is written). */
GEMMA4_API gemma4_status gemma4_detokenize(const gemma4_model* model, const int32_t* ids,
                                           size_t n_ids, int skip_special_tokens, char* text,
                                           size_t capacity, size_t* text_len);
/* Logits of every position of `ids` from an empty context: n_ids * vocab_size floats. */
GEMMA4_API gemma4_status gemma4_model_logits(const gemma4_model* model, const int32_t* ids,
                                             size_t n_ids, float* logits, size_t capacity);

/* ---- Tools ------------------------------------------------------------------------------ */

typedef struct gemma4_tools gemma4_tools;

/* Called with the arguments as a JSON object. Write the result (JSON, or plain text) with
 * gemma4_tool_result_set and return GEMMA4_OK, or return an error status after
 * gemma4_tool_result_set with the message (sent to the model as {"error": message}). */
typedef struct gemma4_tool_result gemma4_tool_result;
typedef gemma4_status (*gemma4_tool_fn)(const char* arguments_json, gemma4_tool_result* result,
                                        void* user_data);
GEMMA4_API void gemma4_tool_result_set(gemma4_tool_result* result, const char* text, size_t len);

GEMMA4_API gemma4_status gemma4_tools_create(gemma4_tools** out);
GEMMA4_API void gemma4_tools_free(gemma4_tools* tools);
/* parameters_schema_json: JSON schema of the arguments object (NULL or "" = none). */
GEMMA4_API gemma4_status gemma4_tools_register(gemma4_tools* tools, const char* name,
                                               const char* description,
                                               const char* parameters_schema_json,
                                               gemma4_tool_fn fn, void* user_data);

/* ---- Sessions ----------------------------------------------------------------------------- */

typedef struct gemma4_session gemma4_session;

typedef enum gemma4_context_policy {
  GEMMA4_CONTEXT_ERROR = 0,
  GEMMA4_CONTEXT_DROP_OLD_TURNS = 1
} gemma4_context_policy;

typedef struct gemma4_session_options {
  uint32_t struct_size;
  const char* system_prompt; /* may be NULL */
  const gemma4_tools* tools; /* may be NULL; copied at creation */
  int64_t max_context;       /* 0 = the model's */
  gemma4_context_policy context_policy;
} gemma4_session_options;

GEMMA4_API void gemma4_session_options_init_sized(gemma4_session_options* options, size_t size);
#define gemma4_session_options_init(options) \
  gemma4_session_options_init_sized((options), sizeof(*(options)))
GEMMA4_API gemma4_status gemma4_session_create(gemma4_model* model,
                                               const gemma4_session_options* options,
                                               gemma4_session** out);
GEMMA4_API void gemma4_session_free(gemma4_session* session);

typedef struct gemma4_sampler_options {
  uint32_t struct_size;
  float temperature; /* <= 0: greedy */
  int32_t top_k;
  float top_p;
  float min_p;
  float repetition_penalty;
  float frequency_penalty;
  float presence_penalty;
  int32_t penalty_last_n;
  uint64_t seed;
  const int32_t* logit_bias_ids; /* n_logit_bias entries */
  const float* logit_bias_values;
  size_t n_logit_bias;
} gemma4_sampler_options;

/* Fills the model's generation_config defaults (model may be NULL: neutral defaults). */
GEMMA4_API void gemma4_sampler_options_init_sized(gemma4_sampler_options* options,
                                                  const gemma4_model* model, size_t size);
#define gemma4_sampler_options_init(options, model) \
  gemma4_sampler_options_init_sized((options), (model), sizeof(*(options)))

typedef enum gemma4_stream_kind {
  GEMMA4_STREAM_THOUGHT = 0,
  GEMMA4_STREAM_TEXT = 1
} gemma4_stream_kind;

typedef enum gemma4_stop_reason {
  GEMMA4_STOP_END_OF_TURN = 0,
  GEMMA4_STOP_MAX_TOKENS = 1,
  GEMMA4_STOP_CANCELLED = 2,
  GEMMA4_STOP_REPETITION = 3,
  GEMMA4_STOP_TOOL_STEP_LIMIT = 4,
  GEMMA4_STOP_TOOL_CALL = 5,
  GEMMA4_STOP_CONTEXT_FULL = 6
} gemma4_stop_reason;

typedef struct gemma4_generate_options {
  uint32_t struct_size;
  int32_t max_tokens;
  int32_t thinking;                      /* 0/1 */
  int32_t thinking_budget;               /* -1 = none */
  const gemma4_sampler_options* sampler; /* NULL = the model's defaults */
  int32_t execute_tools;                 /* 1: run registered tools and continue */
  int32_t max_tool_steps;
  int32_t constrain_tool_calls;
  const char* json_schema; /* NULL or "": free text */
  int32_t stop_on_repetition;
  /* Streaming text (never split inside a UTF-8 character); return 0 to cancel. */
  int (*on_text)(gemma4_stream_kind kind, const char* text, size_t len, void* user_data);
  /* Each tool call as it is parsed (before it runs). */
  void (*on_tool_call)(const char* name, const char* arguments_json, void* user_data);
  void* user_data;
  int32_t require_tool_call;   /* 1: the turn starts with a tool call */
  int32_t max_calls_per_round; /* parallel calls before a round must end (default 8) */
  /* Drafted tokens a round when the model has a drafter: -1 (default) = the model's
   * draft_tokens, 0 = no drafting for this turn, 1..14. Added after 0.4.0. */
  int32_t draft_tokens;
} gemma4_generate_options;

GEMMA4_API void gemma4_generate_options_init_sized(gemma4_generate_options* options, size_t size);
#define gemma4_generate_options_init(options) \
  gemma4_generate_options_init_sized((options), sizeof(*(options)))

typedef struct gemma4_reply gemma4_reply;

/* Adds a user turn and generates the model's turn. *out receives the reply (free it). */
GEMMA4_API gemma4_status gemma4_session_send(gemma4_session* session, const char* user_text,
                                             const gemma4_generate_options* options,
                                             gemma4_reply** out);
/* A user turn of text and images, in order, built part by part and then sent with
 * gemma4_session_send_content (the content is copied; free it any time after). Images come as
 * a file path, the bytes of a PNG, JPEG or WebP file, or RGB8 pixels (3 bytes a pixel, rows
 * `stride` bytes apart). max_soft_tokens: 70, 140, 280, 560 or 1120, or 0 for the model's
 * default. Each image is decoded and checked when the turn is sent. */
typedef struct gemma4_content gemma4_content;
GEMMA4_API gemma4_status gemma4_content_create(gemma4_content** out);
GEMMA4_API void gemma4_content_free(gemma4_content* content);
GEMMA4_API gemma4_status gemma4_content_add_text(gemma4_content* content, const char* text,
                                                 size_t len);
GEMMA4_API gemma4_status gemma4_content_add_image_file(gemma4_content* content, const char* path,
                                                       int32_t max_soft_tokens);
GEMMA4_API gemma4_status gemma4_content_add_image_bytes(gemma4_content* content, const void* data,
                                                        size_t size, int32_t max_soft_tokens);
GEMMA4_API gemma4_status gemma4_content_add_image_rgb(gemma4_content* content,
                                                      const uint8_t* pixels, int32_t width,
                                                      int32_t height, size_t stride,
                                                      int32_t max_soft_tokens);
/* Video (26B-A4B and 31B): begin a video part, then add its frames in time order, each with
 * its timestamp in seconds and the same size (a file, the bytes of one, or RGB8 pixels).
 * max_soft_tokens_per_frame: 70 (0), 140, 280, 560 or 1120. At most 32 frames. */
GEMMA4_API gemma4_status gemma4_content_begin_video(gemma4_content* content,
                                                    int32_t max_soft_tokens_per_frame);
/* A whole video file (mp4, webm, mkv, ... through FFmpeg), sampled at one frame per second
 * (evenly spaced past 32 frames). GEMMA4_UNIMPLEMENTED in builds without FFmpeg. */
GEMMA4_API gemma4_status gemma4_content_add_video_file(gemma4_content* content, const char* path,
                                                       int32_t max_soft_tokens_per_frame);
GEMMA4_API gemma4_status gemma4_content_add_video_frame_file(gemma4_content* content,
                                                             const char* path, double seconds);
GEMMA4_API gemma4_status gemma4_content_add_video_frame_bytes(gemma4_content* content,
                                                              const void* data, size_t size,
                                                              double seconds);
GEMMA4_API gemma4_status gemma4_content_add_video_frame_rgb(gemma4_content* content,
                                                            const uint8_t* pixels, int32_t width,
                                                            int32_t height, size_t stride,
                                                            double seconds);
/* Recordings: a file (WAV, FLAC, Ogg/Vorbis/Opus, MP3), the bytes of one, or mono float PCM at
 * sample_rate Hz; any rate and channel count is downmixed and resampled to 16 kHz, and
 * recordings over 30 s are encoded in 30 s pieces, in order. */
GEMMA4_API gemma4_status gemma4_content_add_audio_file(gemma4_content* content, const char* path);
GEMMA4_API gemma4_status gemma4_content_add_audio_bytes(gemma4_content* content, const void* data,
                                                        size_t size);
GEMMA4_API gemma4_status gemma4_content_add_audio_pcm(gemma4_content* content, const float* samples,
                                                      size_t n_samples, int32_t sample_rate);
/* Like gemma4_session_send with a turn holding images or recordings
 * (GEMMA4_FAILED_PRECONDITION for a model without the tower they need). */
GEMMA4_API gemma4_status gemma4_session_send_content(gemma4_session* session,
                                                     const gemma4_content* content,
                                                     const gemma4_generate_options* options,
                                                     gemma4_reply** out);
/* Continues after GEMMA4_STOP_TOOL_CALL with one result per call (JSON text each). */
GEMMA4_API gemma4_status gemma4_session_submit_tool_results(
    gemma4_session* session, size_t n_results, const char* const* names,
    const char* const* results_json, const gemma4_generate_options* options, gemma4_reply** out);
/* Thread-safe: the running send returns GEMMA4_CANCELLED. */
GEMMA4_API void gemma4_session_cancel(gemma4_session* session);
GEMMA4_API gemma4_status gemma4_session_fork(const gemma4_session* session, gemma4_session** out);
/* Keeps the first num_turns turns (a system prompt counts as one). */
GEMMA4_API gemma4_status gemma4_session_rewind(gemma4_session* session, size_t num_turns);
/* Serialized state: *data is allocated by the library; release it with gemma4_free. */
GEMMA4_API gemma4_status gemma4_session_save(const gemma4_session* session, void** data,
                                             size_t* size);
GEMMA4_API gemma4_status gemma4_session_restore(gemma4_model* model, const void* data, size_t size,
                                                const gemma4_tools* tools, gemma4_session** out);
GEMMA4_API size_t gemma4_session_num_turns(const gemma4_session* session);
/* role: 0 system, 1 user, 2 model. Strings are owned by the session. */
GEMMA4_API gemma4_status gemma4_session_get_turn(const gemma4_session* session, size_t index,
                                                 int* role, const char** text,
                                                 const char** thought);
GEMMA4_API int64_t gemma4_session_context_tokens(const gemma4_session* session);
/* The token ids the session's KV cache holds, in order: exactly what the model has seen (text
 * from users, system prompts, tools and tool results is always tokenized as text, never as
 * control tokens). Copies min(capacity, total) ids to `ids` (may be null when capacity is 0)
 * and sets *count to the total; call with capacity 0 first to size the buffer. */
GEMMA4_API gemma4_status gemma4_session_context_token_ids(const gemma4_session* session,
                                                          int32_t* ids, size_t capacity,
                                                          size_t* count);

GEMMA4_API void gemma4_reply_free(gemma4_reply* reply);
GEMMA4_API const char* gemma4_reply_text(const gemma4_reply* reply);
GEMMA4_API const char* gemma4_reply_thought(const gemma4_reply* reply);
GEMMA4_API gemma4_stop_reason gemma4_reply_stop_reason(const gemma4_reply* reply);
GEMMA4_API size_t gemma4_reply_num_tool_calls(const gemma4_reply* reply);
GEMMA4_API const char* gemma4_reply_tool_call_name(const gemma4_reply* reply, size_t index);
GEMMA4_API const char* gemma4_reply_tool_call_arguments(const gemma4_reply* reply, size_t index);
GEMMA4_API size_t gemma4_reply_num_tool_results(const gemma4_reply* reply);
GEMMA4_API const char* gemma4_reply_tool_result(const gemma4_reply* reply, size_t index);
/* Token counts and timings of the reply. */
GEMMA4_API int32_t gemma4_reply_prompt_tokens(const gemma4_reply* reply);
GEMMA4_API int32_t gemma4_reply_reused_tokens(const gemma4_reply* reply);
GEMMA4_API int32_t gemma4_reply_generated_tokens(const gemma4_reply* reply);
GEMMA4_API double gemma4_reply_decode_seconds(const gemma4_reply* reply);
GEMMA4_API double gemma4_reply_prefill_seconds(const gemma4_reply* reply);
/* Speculative decoding: tokens the drafter proposed in this turn and how many of them the
 * model kept (both 0 without a drafter). Added after 0.4.0. */
GEMMA4_API int32_t gemma4_reply_drafted_tokens(const gemma4_reply* reply);
GEMMA4_API int32_t gemma4_reply_accepted_draft_tokens(const gemma4_reply* reply);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* GEMMA4_C_H_ */
