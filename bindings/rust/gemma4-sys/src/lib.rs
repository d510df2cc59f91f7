//! Raw declarations mirroring `capi/gemma4.h`. See that header for the
//! ownership and threading rules; the `gemma4` crate wraps them safely.
#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_double, c_float, c_int, c_void};

pub type gemma4_status = c_int;
pub const GEMMA4_OK: gemma4_status = 0;
pub const GEMMA4_CANCELLED: gemma4_status = 1;
pub const GEMMA4_UNKNOWN: gemma4_status = 2;
pub const GEMMA4_INVALID_ARGUMENT: gemma4_status = 3;
pub const GEMMA4_DEADLINE_EXCEEDED: gemma4_status = 4;
pub const GEMMA4_NOT_FOUND: gemma4_status = 5;
pub const GEMMA4_ALREADY_EXISTS: gemma4_status = 6;
pub const GEMMA4_PERMISSION_DENIED: gemma4_status = 7;
pub const GEMMA4_RESOURCE_EXHAUSTED: gemma4_status = 8;
pub const GEMMA4_FAILED_PRECONDITION: gemma4_status = 9;
pub const GEMMA4_ABORTED: gemma4_status = 10;
pub const GEMMA4_OUT_OF_RANGE: gemma4_status = 11;
pub const GEMMA4_UNIMPLEMENTED: gemma4_status = 12;
pub const GEMMA4_INTERNAL: gemma4_status = 13;
pub const GEMMA4_UNAVAILABLE: gemma4_status = 14;
pub const GEMMA4_DATA_LOSS: gemma4_status = 15;

#[repr(C)]
pub struct gemma4_model {
    _private: [u8; 0],
}
#[repr(C)]
pub struct gemma4_session {
    _private: [u8; 0],
}
#[repr(C)]
pub struct gemma4_tools {
    _private: [u8; 0],
}
#[repr(C)]
pub struct gemma4_reply {
    _private: [u8; 0],
}
#[repr(C)]
pub struct gemma4_tool_result {
    _private: [u8; 0],
}
#[repr(C)]
pub struct gemma4_content {
    _private: [u8; 0],
}

#[repr(C)]
pub struct gemma4_model_options {
    pub struct_size: u32,
    pub threads: i32,
    pub tokenizer_path: *const c_char,
    pub progress: Option<unsafe extern "C" fn(f32, *mut c_void) -> c_int>,
    pub user_data: *mut c_void,
    /// gemma4_kv_cache_type: 0 auto, 1 f32, 2 f16 (since 0.3), 3 q8_0, 4 q4_0 (added after 0.4.0).
    pub kv_cache_type: i32,
    /// A llama.cpp mmproj GGUF holding the vision tower; null = the checkpoint's own (since 0.4).
    pub mmproj_path: *const c_char,
    /// The most bytes the model and one session may keep resident (0 = no cap; after 0.4.0).
    pub memory_limit_bytes: u64,
    /// A Gemma 4 assistant drafter for speculative decoding; null = none (after 0.4.0).
    pub draft_model_path: *const c_char,
    /// Drafted tokens a round, 1..14 (0 = the library's default, 4).
    pub draft_tokens: i32,
    /// The largest image budget sessions encode (70..1120; 0 = 1120), what the memory plan's
    /// vision activations are sized for (after 0.4.0).
    pub max_image_tokens: i32,
}

/// The memory plan (bytes resident), itemized; see gemma4.h. Added after 0.4.0.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct gemma4_memory_plan {
    pub struct_size: u32,
    pub kv_cache_type: i32,
    pub threads: i32,
    pub context_tokens: i64,
    pub weights_repacked: u64,
    pub weights_mapped: u64,
    pub weights_converted: u64,
    pub ple_table: u64,
    pub kv_full: u64,
    pub kv_sliding: u64,
    pub kv_rewind: u64,
    pub scratch: u64,
    pub tokenizer: u64,
    pub encoder_weights: u64,
    pub encoder_activations: u64,
    pub total: u64,
    /// A drafter's weights and buffers, counted in total (after 0.4.0).
    pub drafter: u64,
    /// The image budget the vision activations are sized for: max_image_tokens, 1120 for 0
    /// (after 0.4.0).
    pub max_image_tokens: i32,
}

#[repr(C)]
pub struct gemma4_model_info {
    pub struct_size: u32,
    pub variant: *const c_char,
    pub vocab_size: i32,
    pub num_layers: i32,
    pub hidden_size: i32,
    pub sliding_window: i32,
    pub max_context: i64,
    pub num_parameters: i64,
    pub weight_bytes: u64,
    pub threads: i32,
    pub large_chat_template: i32,
    pub kv_cache_type: *const c_char,
    /// 1: the model takes images (its vision tower is loaded).
    pub vision: i32,
    /// Soft tokens per image unless a request says otherwise.
    pub default_image_tokens: i32,
    /// 1: the model takes recordings (E2B/E4B audio tower) (since 0.4).
    pub audio: i32,
}

#[repr(C)]
pub struct gemma4_session_options {
    pub struct_size: u32,
    pub system_prompt: *const c_char,
    pub tools: *const gemma4_tools,
    pub max_context: i64,
    pub context_policy: c_int,
}

#[repr(C)]
pub struct gemma4_sampler_options {
    pub struct_size: u32,
    pub temperature: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    pub repetition_penalty: f32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    pub penalty_last_n: i32,
    pub seed: u64,
    pub logit_bias_ids: *const i32,
    pub logit_bias_values: *const f32,
    pub n_logit_bias: usize,
}

pub type gemma4_on_text = unsafe extern "C" fn(c_int, *const c_char, usize, *mut c_void) -> c_int;
pub type gemma4_on_tool_call = unsafe extern "C" fn(*const c_char, *const c_char, *mut c_void);
pub type gemma4_tool_fn =
    unsafe extern "C" fn(*const c_char, *mut gemma4_tool_result, *mut c_void) -> gemma4_status;

#[repr(C)]
pub struct gemma4_generate_options {
    pub struct_size: u32,
    pub max_tokens: i32,
    pub thinking: i32,
    pub thinking_budget: i32,
    pub sampler: *const gemma4_sampler_options,
    pub execute_tools: i32,
    pub max_tool_steps: i32,
    pub constrain_tool_calls: i32,
    pub json_schema: *const c_char,
    pub stop_on_repetition: i32,
    pub on_text: Option<gemma4_on_text>,
    pub on_tool_call: Option<gemma4_on_tool_call>,
    pub user_data: *mut c_void,
    pub require_tool_call: i32,
    pub max_calls_per_round: i32,
    /// -1 = the model's draft_tokens, 0 = no drafting this turn, 1..14 (after 0.4.0).
    pub draft_tokens: i32,
}

extern "C" {
    pub fn gemma4_version_string() -> *const c_char;
    pub fn gemma4_last_error() -> *const c_char;
    pub fn gemma4_free(p: *mut c_void);
    pub fn gemma4_model_options_init_sized(options: *mut gemma4_model_options, size: usize);
    pub fn gemma4_plan_memory(
        path: *const c_char,
        options: *const gemma4_model_options,
        context_tokens: i64,
        out: *mut gemma4_memory_plan,
    ) -> gemma4_status;
    pub fn gemma4_model_plan_memory(
        model: *const gemma4_model,
        context_tokens: i64,
        out: *mut gemma4_memory_plan,
    ) -> gemma4_status;
    pub fn gemma4_reply_drafted_tokens(reply: *const gemma4_reply) -> i32;
    pub fn gemma4_reply_accepted_draft_tokens(reply: *const gemma4_reply) -> i32;
    pub fn gemma4_model_load(
        path: *const c_char,
        options: *const gemma4_model_options,
        out: *mut *mut gemma4_model,
    ) -> gemma4_status;
    pub fn gemma4_model_free(model: *mut gemma4_model);
    pub fn gemma4_model_get_info(
        model: *const gemma4_model,
        out: *mut gemma4_model_info,
    ) -> gemma4_status;
    pub fn gemma4_tokenize(
        model: *const gemma4_model,
        text: *const c_char,
        text_len: usize,
        add_special_tokens: c_int,
        ids: *mut i32,
        capacity: usize,
        n_ids: *mut usize,
    ) -> gemma4_status;
    pub fn gemma4_detokenize(
        model: *const gemma4_model,
        ids: *const i32,
        n_ids: usize,
        skip_special_tokens: c_int,
        text: *mut c_char,
        capacity: usize,
        text_len: *mut usize,
    ) -> gemma4_status;
    pub fn gemma4_tool_result_set(result: *mut gemma4_tool_result, text: *const c_char, len: usize);
    pub fn gemma4_tools_create(out: *mut *mut gemma4_tools) -> gemma4_status;
    pub fn gemma4_tools_free(tools: *mut gemma4_tools);
    pub fn gemma4_tools_register(
        tools: *mut gemma4_tools,
        name: *const c_char,
        description: *const c_char,
        parameters_schema_json: *const c_char,
        f: gemma4_tool_fn,
        user_data: *mut c_void,
    ) -> gemma4_status;
    pub fn gemma4_session_options_init_sized(options: *mut gemma4_session_options, size: usize);
    pub fn gemma4_session_create(
        model: *mut gemma4_model,
        options: *const gemma4_session_options,
        out: *mut *mut gemma4_session,
    ) -> gemma4_status;
    pub fn gemma4_session_free(session: *mut gemma4_session);
    pub fn gemma4_sampler_options_init_sized(
        options: *mut gemma4_sampler_options,
        model: *const gemma4_model,
        size: usize,
    );
    pub fn gemma4_generate_options_init_sized(options: *mut gemma4_generate_options, size: usize);
    pub fn gemma4_session_send(
        session: *mut gemma4_session,
        user_text: *const c_char,
        options: *const gemma4_generate_options,
        out: *mut *mut gemma4_reply,
    ) -> gemma4_status;
    pub fn gemma4_content_create(out: *mut *mut gemma4_content) -> gemma4_status;
    pub fn gemma4_content_free(content: *mut gemma4_content);
    pub fn gemma4_content_add_text(
        content: *mut gemma4_content,
        text: *const c_char,
        len: usize,
    ) -> gemma4_status;
    pub fn gemma4_content_add_image_file(
        content: *mut gemma4_content,
        path: *const c_char,
        max_soft_tokens: i32,
    ) -> gemma4_status;
    pub fn gemma4_content_add_image_bytes(
        content: *mut gemma4_content,
        data: *const c_void,
        size: usize,
        max_soft_tokens: i32,
    ) -> gemma4_status;
    pub fn gemma4_content_add_image_rgb(
        content: *mut gemma4_content,
        pixels: *const u8,
        width: i32,
        height: i32,
        stride: usize,
        max_soft_tokens: i32,
    ) -> gemma4_status;
    pub fn gemma4_content_begin_video(
        content: *mut gemma4_content,
        max_soft_tokens_per_frame: i32,
    ) -> gemma4_status;
    pub fn gemma4_content_add_video_file(
        content: *mut gemma4_content,
        path: *const c_char,
        max_soft_tokens_per_frame: i32,
    ) -> gemma4_status;
    pub fn gemma4_content_add_video_frame_file(
        content: *mut gemma4_content,
        path: *const c_char,
        seconds: c_double,
    ) -> gemma4_status;
    pub fn gemma4_content_add_video_frame_bytes(
        content: *mut gemma4_content,
        data: *const c_void,
        size: usize,
        seconds: c_double,
    ) -> gemma4_status;
    pub fn gemma4_content_add_video_frame_rgb(
        content: *mut gemma4_content,
        pixels: *const u8,
        width: i32,
        height: i32,
        stride: usize,
        seconds: c_double,
    ) -> gemma4_status;
    pub fn gemma4_content_add_audio_file(
        content: *mut gemma4_content,
        path: *const c_char,
    ) -> gemma4_status;
    pub fn gemma4_content_add_audio_bytes(
        content: *mut gemma4_content,
        data: *const c_void,
        size: usize,
    ) -> gemma4_status;
    pub fn gemma4_content_add_audio_pcm(
        content: *mut gemma4_content,
        samples: *const c_float,
        n_samples: usize,
        sample_rate: i32,
    ) -> gemma4_status;
    pub fn gemma4_session_send_content(
        session: *mut gemma4_session,
        content: *const gemma4_content,
        options: *const gemma4_generate_options,
        out: *mut *mut gemma4_reply,
    ) -> gemma4_status;
    pub fn gemma4_session_cancel(session: *mut gemma4_session);
    pub fn gemma4_session_fork(
        session: *const gemma4_session,
        out: *mut *mut gemma4_session,
    ) -> gemma4_status;
    pub fn gemma4_session_rewind(session: *mut gemma4_session, num_turns: usize) -> gemma4_status;
    pub fn gemma4_session_save(
        session: *const gemma4_session,
        data: *mut *mut c_void,
        size: *mut usize,
    ) -> gemma4_status;
    pub fn gemma4_session_restore(
        model: *mut gemma4_model,
        data: *const c_void,
        size: usize,
        tools: *const gemma4_tools,
        out: *mut *mut gemma4_session,
    ) -> gemma4_status;
    pub fn gemma4_session_num_turns(session: *const gemma4_session) -> usize;
    pub fn gemma4_session_context_token_ids(
        session: *const gemma4_session,
        ids: *mut i32,
        capacity: usize,
        count: *mut usize,
    ) -> gemma4_status;
    pub fn gemma4_reply_free(reply: *mut gemma4_reply);
    pub fn gemma4_reply_text(reply: *const gemma4_reply) -> *const c_char;
    pub fn gemma4_reply_thought(reply: *const gemma4_reply) -> *const c_char;
    pub fn gemma4_reply_stop_reason(reply: *const gemma4_reply) -> c_int;
    pub fn gemma4_reply_num_tool_calls(reply: *const gemma4_reply) -> usize;
    pub fn gemma4_reply_tool_call_name(reply: *const gemma4_reply, index: usize) -> *const c_char;
    pub fn gemma4_reply_tool_call_arguments(
        reply: *const gemma4_reply,
        index: usize,
    ) -> *const c_char;
    pub fn gemma4_reply_num_tool_results(reply: *const gemma4_reply) -> usize;
    pub fn gemma4_reply_tool_result(reply: *const gemma4_reply, index: usize) -> *const c_char;
    pub fn gemma4_reply_prompt_tokens(reply: *const gemma4_reply) -> i32;
    pub fn gemma4_reply_generated_tokens(reply: *const gemma4_reply) -> i32;
    pub fn gemma4_reply_reused_tokens(reply: *const gemma4_reply) -> i32;
    pub fn gemma4_reply_decode_seconds(reply: *const gemma4_reply) -> c_double;
}
