"""ctypes declarations of capi/gemma4.h and a Pythonic layer over them."""
import atexit
import ctypes
import ctypes.util
import enum
import json
import os
import queue
import threading
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char_p, c_double, c_float, c_int,
                    c_int32, c_int64, c_size_t, c_uint32, c_uint64, c_void_p)

# ---------------------------------------------------------------------------------------------
# Library


def _load():
    path = os.environ.get("GEMMA4_LIBRARY")
    candidates = [path] if path else ["libgemma4.so.0", "libgemma4.so",
                                      ctypes.util.find_library("gemma4")]
    errors = []
    for c in candidates:
        if not c:
            continue
        try:
            return ctypes.CDLL(c)
        except OSError as e:
            errors.append(str(e))
    raise ImportError("gemma4: cannot load libgemma4.so (set GEMMA4_LIBRARY to its path): " +
                      "; ".join(errors))


_lib = _load()

_PROGRESS = CFUNCTYPE(c_int, c_float, c_void_p)
_ON_TEXT = CFUNCTYPE(c_int, c_int, POINTER(ctypes.c_char), c_size_t, c_void_p)
_ON_TOOL_CALL = CFUNCTYPE(None, c_char_p, c_char_p, c_void_p)
_TOOL_FN = CFUNCTYPE(c_int, c_char_p, c_void_p, c_void_p)


class _ModelOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("threads", c_int32), ("tokenizer_path", c_char_p),
                ("progress", _PROGRESS), ("user_data", c_void_p), ("kv_cache_type", c_int32),
                ("mmproj_path", c_char_p), ("memory_limit_bytes", ctypes.c_uint64),
                ("draft_model_path", c_char_p), ("draft_tokens", c_int32),
                ("max_image_tokens", c_int32)]


class _MemoryPlan(Structure):
    _fields_ = [("struct_size", c_uint32), ("kv_cache_type", c_int32), ("threads", c_int32),
                ("context_tokens", ctypes.c_int64)] + [
                    (name, ctypes.c_uint64) for name in (
                        "weights_repacked", "weights_mapped", "weights_converted", "ple_table",
                        "kv_full", "kv_sliding", "kv_rewind", "scratch", "tokenizer",
                        "encoder_weights", "encoder_activations", "total", "drafter")] + [
                    ("max_image_tokens", c_int32)]


class _ModelInfo(Structure):
    _fields_ = [("struct_size", c_uint32), ("variant", c_char_p), ("vocab_size", c_int32),
                ("num_layers", c_int32), ("hidden_size", c_int32), ("sliding_window", c_int32),
                ("max_context", c_int64), ("num_parameters", c_int64),
                ("weight_bytes", c_uint64), ("threads", c_int32),
                ("large_chat_template", c_int32), ("kv_cache_type", c_char_p),
                ("vision", c_int32), ("default_image_tokens", c_int32), ("audio", c_int32)]


class _SessionOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("system_prompt", c_char_p), ("tools", c_void_p),
                ("max_context", c_int64), ("context_policy", c_int)]


class _SamplerOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("temperature", c_float), ("top_k", c_int32),
                ("top_p", c_float), ("min_p", c_float), ("repetition_penalty", c_float),
                ("frequency_penalty", c_float), ("presence_penalty", c_float),
                ("penalty_last_n", c_int32), ("seed", c_uint64),
                ("logit_bias_ids", POINTER(c_int32)), ("logit_bias_values", POINTER(c_float)),
                ("n_logit_bias", c_size_t)]


class _GenerateOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("max_tokens", c_int32), ("thinking", c_int32),
                ("thinking_budget", c_int32), ("sampler", POINTER(_SamplerOptions)),
                ("execute_tools", c_int32), ("max_tool_steps", c_int32),
                ("constrain_tool_calls", c_int32), ("json_schema", c_char_p),
                ("stop_on_repetition", c_int32), ("on_text", _ON_TEXT),
                ("on_tool_call", _ON_TOOL_CALL), ("user_data", c_void_p),
                ("require_tool_call", c_int32), ("max_calls_per_round", c_int32),
                ("draft_tokens", c_int32)]


def _fn(name, restype, *argtypes):
    f = getattr(_lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


_version_string = _fn("gemma4_version_string", c_char_p)
_last_error = _fn("gemma4_last_error", c_char_p)
_free = _fn("gemma4_free", None, c_void_p)
_model_options_init = _fn("gemma4_model_options_init_sized", None, POINTER(_ModelOptions),
                          c_size_t)
_model_load = _fn("gemma4_model_load", c_int, c_char_p, POINTER(_ModelOptions),
                  POINTER(c_void_p))
_model_free = _fn("gemma4_model_free", None, c_void_p)
_plan_memory = _fn("gemma4_plan_memory", c_int, c_char_p, POINTER(_ModelOptions), ctypes.c_int64,
                   POINTER(_MemoryPlan))
_model_plan_memory = _fn("gemma4_model_plan_memory", c_int, c_void_p, ctypes.c_int64,
                         POINTER(_MemoryPlan))
_model_get_info = _fn("gemma4_model_get_info", c_int, c_void_p, POINTER(_ModelInfo))
_tokenize = _fn("gemma4_tokenize", c_int, c_void_p, c_char_p, c_size_t, c_int, POINTER(c_int32),
                c_size_t, POINTER(c_size_t))
_detokenize = _fn("gemma4_detokenize", c_int, c_void_p, POINTER(c_int32), c_size_t, c_int,
                  c_char_p, c_size_t, POINTER(c_size_t))
_model_logits = _fn("gemma4_model_logits", c_int, c_void_p, POINTER(c_int32), c_size_t,
                    POINTER(c_float), c_size_t)
_tool_result_set = _fn("gemma4_tool_result_set", None, c_void_p, c_char_p, c_size_t)
_tools_create = _fn("gemma4_tools_create", c_int, POINTER(c_void_p))
_tools_free = _fn("gemma4_tools_free", None, c_void_p)
_tools_register = _fn("gemma4_tools_register", c_int, c_void_p, c_char_p, c_char_p, c_char_p,
                      _TOOL_FN, c_void_p)
_session_options_init = _fn("gemma4_session_options_init_sized", None, POINTER(_SessionOptions),
                            c_size_t)
_session_create = _fn("gemma4_session_create", c_int, c_void_p, POINTER(_SessionOptions),
                      POINTER(c_void_p))
_session_free = _fn("gemma4_session_free", None, c_void_p)
_sampler_options_init = _fn("gemma4_sampler_options_init_sized", None, POINTER(_SamplerOptions),
                            c_void_p, c_size_t)
_generate_options_init = _fn("gemma4_generate_options_init_sized", None,
                             POINTER(_GenerateOptions), c_size_t)
_session_send = _fn("gemma4_session_send", c_int, c_void_p, c_char_p, POINTER(_GenerateOptions),
                    POINTER(c_void_p))
_session_cancel = _fn("gemma4_session_cancel", None, c_void_p)
_content_create = _fn("gemma4_content_create", c_int, POINTER(c_void_p))
_content_free = _fn("gemma4_content_free", None, c_void_p)
_content_add_text = _fn("gemma4_content_add_text", c_int, c_void_p, c_char_p, c_size_t)
_content_add_image_file = _fn("gemma4_content_add_image_file", c_int, c_void_p, c_char_p,
                              c_int32)
_content_add_image_bytes = _fn("gemma4_content_add_image_bytes", c_int, c_void_p, c_char_p,
                               c_size_t, c_int32)
_content_add_image_rgb = _fn("gemma4_content_add_image_rgb", c_int, c_void_p, c_char_p, c_int32,
                             c_int32, c_size_t, c_int32)
_content_add_audio_file = _fn("gemma4_content_add_audio_file", c_int, c_void_p, c_char_p)
_content_add_audio_bytes = _fn("gemma4_content_add_audio_bytes", c_int, c_void_p, c_char_p,
                               c_size_t)
_content_add_audio_pcm = _fn("gemma4_content_add_audio_pcm", c_int, c_void_p, POINTER(c_float),
                             c_size_t, c_int32)
_content_begin_video = _fn("gemma4_content_begin_video", c_int, c_void_p, c_int32)
_content_add_video_frame_file = _fn("gemma4_content_add_video_frame_file", c_int, c_void_p,
                                    c_char_p, c_double)
_content_add_video_frame_bytes = _fn("gemma4_content_add_video_frame_bytes", c_int, c_void_p,
                                     c_char_p, c_size_t, c_double)
_content_add_video_frame_rgb = _fn("gemma4_content_add_video_frame_rgb", c_int, c_void_p,
                                   c_char_p, c_int32, c_int32, c_size_t, c_double)
_content_add_video_file = _fn("gemma4_content_add_video_file", c_int, c_void_p, c_char_p,
                              c_int32)
_session_send_content = _fn("gemma4_session_send_content", c_int, c_void_p, c_void_p,
                            POINTER(_GenerateOptions), POINTER(c_void_p))
_session_fork = _fn("gemma4_session_fork", c_int, c_void_p, POINTER(c_void_p))
_session_rewind = _fn("gemma4_session_rewind", c_int, c_void_p, c_size_t)
_session_save = _fn("gemma4_session_save", c_int, c_void_p, POINTER(c_void_p), POINTER(c_size_t))
_session_restore = _fn("gemma4_session_restore", c_int, c_void_p, c_void_p, c_size_t, c_void_p,
                       POINTER(c_void_p))
_session_num_turns = _fn("gemma4_session_num_turns", c_size_t, c_void_p)
_session_get_turn = _fn("gemma4_session_get_turn", c_int, c_void_p, c_size_t, POINTER(c_int),
                        POINTER(c_char_p), POINTER(c_char_p))
_session_context_tokens = _fn("gemma4_session_context_tokens", c_int64, c_void_p)
_session_context_token_ids = _fn("gemma4_session_context_token_ids", c_int, c_void_p,
                                 POINTER(c_int32), c_size_t, POINTER(c_size_t))
_reply_free = _fn("gemma4_reply_free", None, c_void_p)
_reply_text = _fn("gemma4_reply_text", c_char_p, c_void_p)
_reply_thought = _fn("gemma4_reply_thought", c_char_p, c_void_p)
_reply_stop_reason = _fn("gemma4_reply_stop_reason", c_int, c_void_p)
_reply_num_tool_calls = _fn("gemma4_reply_num_tool_calls", c_size_t, c_void_p)
_reply_tool_call_name = _fn("gemma4_reply_tool_call_name", c_char_p, c_void_p, c_size_t)
_reply_tool_call_arguments = _fn("gemma4_reply_tool_call_arguments", c_char_p, c_void_p,
                                 c_size_t)
_reply_num_tool_results = _fn("gemma4_reply_num_tool_results", c_size_t, c_void_p)
_reply_tool_result = _fn("gemma4_reply_tool_result", c_char_p, c_void_p, c_size_t)
_reply_prompt_tokens = _fn("gemma4_reply_prompt_tokens", c_int32, c_void_p)
_reply_reused_tokens = _fn("gemma4_reply_reused_tokens", c_int32, c_void_p)
_reply_generated_tokens = _fn("gemma4_reply_generated_tokens", c_int32, c_void_p)
_reply_decode_seconds = _fn("gemma4_reply_decode_seconds", c_double, c_void_p)
_reply_prefill_seconds = _fn("gemma4_reply_prefill_seconds", c_double, c_void_p)
_reply_drafted_tokens = _fn("gemma4_reply_drafted_tokens", c_int32, c_void_p)
_reply_accepted_draft_tokens = _fn("gemma4_reply_accepted_draft_tokens", c_int32, c_void_p)

_STATUS_NAMES = {1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED",
                 5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED",
                 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION", 10: "ABORTED",
                 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE",
                 15: "DATA_LOSS"}


class Error(Exception):
    """A failure reported by the library: `code` is the status name, the text its message."""

    def __init__(self, status, message):
        self.status = status
        self.code = _STATUS_NAMES.get(status, str(status))
        super().__init__(f"{self.code}: {message}")


def _check(status):
    if status != 0:
        raise Error(status, _last_error().decode("utf-8", "replace"))


def library_version():
    return _version_string().decode()


# ---------------------------------------------------------------------------------------------
# Model

_KV_CACHE_TYPES = {None: 0, "auto": 0, "f32": 1, "f16": 2, "q8_0": 3, "q4_0": 4}
_KV_CACHE_NAMES = {1: "f32", 2: "f16", 3: "q8_0", 4: "q4_0"}


def _make_options(threads, tokenizer_path, kv_cache_type, mmproj_path, memory_limit_bytes,
                  draft_model_path=None, draft_tokens=0, max_image_tokens=0):
    if kv_cache_type not in _KV_CACHE_TYPES:
        raise ValueError("kv_cache_type must be None, 'auto', 'f32', 'f16', 'q8_0' or 'q4_0',"
                         " not %r" % (kv_cache_type,))
    if memory_limit_bytes < 0:
        raise ValueError("memory_limit_bytes must be >= 0 (0: no limit)")
    opts = _ModelOptions()
    _model_options_init(ctypes.byref(opts), ctypes.sizeof(opts))
    opts.threads = threads
    opts.kv_cache_type = _KV_CACHE_TYPES[kv_cache_type]
    opts.memory_limit_bytes = memory_limit_bytes
    if tokenizer_path is not None:
        opts.tokenizer_path = os.fsencode(tokenizer_path)
    if mmproj_path is not None:
        opts.mmproj_path = os.fsencode(mmproj_path)
    if draft_model_path is not None:
        opts.draft_model_path = os.fsencode(draft_model_path)
    opts.draft_tokens = draft_tokens
    opts.max_image_tokens = max_image_tokens
    return opts


def _plan_dict(plan):
    out = {name: getattr(plan, name) for name, _ in _MemoryPlan._fields_[4:]}
    out["kv_cache_type"] = _KV_CACHE_NAMES.get(plan.kv_cache_type, str(plan.kv_cache_type))
    out["threads"] = plan.threads
    out["context_tokens"] = plan.context_tokens
    return out


def plan_memory(path, context_tokens, threads=0, tokenizer_path=None, kv_cache_type=None,
                mmproj_path=None, draft_model_path=None, max_image_tokens=0):
    """The bytes that Model(path, ...) and one session of `context_tokens` will keep resident,
    computed from the files' headers without loading any weight: a dict of the items (weights
    repacked / mapped / converted, KV full / sliding / rewind, scratch, tokenizer, encoder
    weights and activations, a drafter) and their "total" (ple_table is shown but not counted:
    it stays in the page cache), and "max_image_tokens", the image budget the vision activations
    are sized for (the option, or 1120 for 0). max_image_tokens: as Model's."""
    opts = _make_options(threads, tokenizer_path, kv_cache_type, mmproj_path, 0, draft_model_path,
                         max_image_tokens=max_image_tokens)
    plan = _MemoryPlan()
    plan.struct_size = ctypes.sizeof(plan)
    _check(_plan_memory(os.fsencode(path), ctypes.byref(opts), context_tokens, ctypes.byref(plan)))
    return _plan_dict(plan)


class Model:
    """A loaded model (checkpoint directory, .safetensors or .gguf). Share it between sessions
    and threads freely."""

    def __init__(self, path, threads=0, tokenizer_path=None, progress=None, kv_cache_type=None,
                 mmproj_path=None, memory_limit_bytes=0, draft_model_path=None, draft_tokens=0,
                 max_image_tokens=0):
        """kv_cache_type: None or "auto" (f16 for quantized weights, f32 for float ones), "f32",
        "f16", "q8_0" or "q4_0" (llama.cpp's block types; head_dim must be a multiple of 32).
        mmproj_path: a llama.cpp mmproj GGUF with the vision/audio towers of a GGUF model.
        memory_limit_bytes: refuse (Error, RESOURCE_EXHAUSTED) a model, or later a session, whose
        memory plan (plan_memory) exceeds it; 0: no limit.
        draft_model_path: a Gemma 4 assistant drafter (its "-assistant" checkpoint directory or
        GGUF) for speculative decoding: sessions draft draft_tokens tokens a round (1..14; 0: the
        library's default, 4) and verify them in one batched forward; replies are unchanged
        (greedy: token for token; sampled: the same distribution).
        max_image_tokens: the largest image budget in soft tokens (70, 140, 280, 560 or 1120;
        0: 1120) that sessions encode; the memory plan sizes the vision activations for it and
        larger images are refused (Error, INVALID_ARGUMENT)."""
        opts = _make_options(threads, tokenizer_path, kv_cache_type, mmproj_path,
                             memory_limit_bytes, draft_model_path, draft_tokens, max_image_tokens)
        if progress is not None:
            def trampoline(fraction, _user):
                try:
                    return 1 if progress(fraction) is not False else 0
                except Exception:  # never unwind through C
                    return 0
            self._progress = _PROGRESS(trampoline)
            opts.progress = self._progress
        handle = c_void_p()
        _check(_model_load(os.fsencode(path), ctypes.byref(opts), ctypes.byref(handle)))
        self._handle = handle

    def __del__(self):
        if getattr(self, "_handle", None):
            _model_free(self._handle)
            self._handle = None

    def plan_memory(self, context_tokens):
        """The bytes this model and one session of `context_tokens` keep resident, itemized
        (see gemma4.plan_memory)."""
        plan = _MemoryPlan()
        plan.struct_size = ctypes.sizeof(plan)
        _check(_model_plan_memory(self._handle, context_tokens, ctypes.byref(plan)))
        return _plan_dict(plan)

    @property
    def info(self):
        i = _ModelInfo()
        i.struct_size = ctypes.sizeof(i)
        _check(_model_get_info(self._handle, ctypes.byref(i)))
        return {"variant": i.variant.decode(), "vocab_size": i.vocab_size,
                "num_layers": i.num_layers, "hidden_size": i.hidden_size,
                "sliding_window": i.sliding_window, "max_context": i.max_context,
                "num_parameters": i.num_parameters, "weight_bytes": i.weight_bytes,
                "threads": i.threads, "large_chat_template": bool(i.large_chat_template),
                "kv_cache_type": i.kv_cache_type.decode(), "vision": bool(i.vision),
                "default_image_tokens": i.default_image_tokens, "audio": bool(i.audio)}

    def tokenize(self, text, add_special_tokens=False):
        data = text.encode("utf-8")
        n = c_size_t()
        capacity = len(data) + 16
        while True:
            buf = (c_int32 * capacity)()
            status = _tokenize(self._handle, data, len(data), int(add_special_tokens), buf,
                               capacity, ctypes.byref(n))
            if status == 11 and n.value > capacity:  # OUT_OF_RANGE: grow and retry
                capacity = n.value
                continue
            _check(status)
            return list(buf[:n.value])

    def detokenize(self, ids, skip_special_tokens=False):
        arr = (c_int32 * len(ids))(*ids)
        n = c_size_t()
        capacity = 16 * len(ids) + 16
        while True:
            buf = ctypes.create_string_buffer(capacity)
            status = _detokenize(self._handle, arr, len(ids), int(skip_special_tokens), buf,
                                 capacity, ctypes.byref(n))
            if status == 11 and n.value + 1 > capacity:
                capacity = n.value + 1
                continue
            _check(status)
            return buf.raw[:n.value].decode("utf-8")

    def logits(self, ids):
        """Logits of every position: a list of rows (one per id) of vocab_size floats."""
        vocab = self.info["vocab_size"]
        arr = (c_int32 * len(ids))(*ids)
        out = (c_float * (vocab * len(ids)))()
        _check(_model_logits(self._handle, arr, len(ids), out, len(out)))
        return [list(out[r * vocab:(r + 1) * vocab]) for r in range(len(ids))]


# ---------------------------------------------------------------------------------------------
# Media


class Image:
    """An image for a user turn: a file path (PNG, JPEG or WebP), the bytes of such a file, or
    RGB8 pixels (bytes of height * width * 3). max_soft_tokens: 70, 140, 280, 560 or 1120, or 0
    for the model's default."""

    def __init__(self, path=None, data=None, rgb=None, width=0, height=0, max_soft_tokens=0):
        if sum(x is not None for x in (path, data, rgb)) != 1:
            raise ValueError("Image needs exactly one of path, data or rgb")
        if rgb is not None and len(rgb) != width * height * 3:
            raise ValueError("rgb must hold width * height * 3 bytes")
        self.path, self.data, self.rgb = path, data, rgb
        self.width, self.height, self.max_soft_tokens = width, height, max_soft_tokens

    def _add_to(self, content):
        if self.path is not None:
            _check(_content_add_image_file(content, os.fsencode(self.path), self.max_soft_tokens))
        elif self.data is not None:
            data = bytes(self.data)
            _check(_content_add_image_bytes(content, data, len(data), self.max_soft_tokens))
        else:
            rgb = bytes(self.rgb)
            _check(_content_add_image_rgb(content, rgb, self.width, self.height, self.width * 3,
                                          self.max_soft_tokens))


class Video:
    """A video for a user turn (26B-A4B and 31B): frames as (gemma4.Image, seconds) pairs in time
    order, all the same size, at most 32, or a video file (path=...: mp4, webm, mkv, ... through
    FFmpeg, sampled at one frame per second, 32 frames evenly spaced past 32 s);
    max_soft_tokens_per_frame 70 (0), 140, 280, 560 or 1120."""

    def __init__(self, frames=None, max_soft_tokens_per_frame=0, path=None):
        if (frames is None) == (path is None):
            raise ValueError("Video needs exactly one of frames or path")
        self.frames = None if frames is None else list(frames)
        self.path = path
        self.max_soft_tokens_per_frame = max_soft_tokens_per_frame

    def _add_to(self, content):
        if self.path is not None:
            _check(_content_add_video_file(content, os.fsencode(self.path),
                                           self.max_soft_tokens_per_frame))
            return
        _check(_content_begin_video(content, self.max_soft_tokens_per_frame))
        for image, seconds in self.frames:
            if image.path is not None:
                _check(_content_add_video_frame_file(content, os.fsencode(image.path),
                                                     float(seconds)))
            elif image.data is not None:
                data = bytes(image.data)
                _check(_content_add_video_frame_bytes(content, data, len(data), float(seconds)))
            else:
                rgb = bytes(image.rgb)
                _check(_content_add_video_frame_rgb(content, rgb, image.width, image.height,
                                                    image.width * 3, float(seconds)))


class Audio:
    """A recording for a user turn: a file path (WAV, FLAC, Ogg/Vorbis/Opus, MP3), the bytes of
    such a file, or mono float PCM (a sequence of floats in [-1, 1]) at sample_rate Hz. Any rate
    is resampled to 16 kHz; recordings over 30 s are encoded in 30 s pieces."""

    def __init__(self, path=None, data=None, pcm=None, sample_rate=16000):
        if sum(x is not None for x in (path, data, pcm)) != 1:
            raise ValueError("Audio needs exactly one of path, data or pcm")
        self.path, self.data, self.pcm, self.sample_rate = path, data, pcm, sample_rate

    def _add_to(self, content):
        if self.path is not None:
            _check(_content_add_audio_file(content, os.fsencode(self.path)))
        elif self.data is not None:
            data = bytes(self.data)
            _check(_content_add_audio_bytes(content, data, len(data)))
        else:
            samples = (c_float * len(self.pcm))(*self.pcm)
            _check(_content_add_audio_pcm(content, samples, len(self.pcm), self.sample_rate))


# ---------------------------------------------------------------------------------------------
# Tools


class Tools:
    """Python functions the model may call. Arguments arrive as keyword arguments; the return
    value (any JSON-serializable value, or a string) goes back to the model. An exception is
    reported to the model as {"error": message}."""

    def __init__(self):
        handle = c_void_p()
        _check(_tools_create(ctypes.byref(handle)))
        self._handle = handle
        self._callbacks = []  # keep the ctypes trampolines alive

    def __del__(self):
        if getattr(self, "_handle", None):
            _tools_free(self._handle)
            self._handle = None

    def register(self, name, fn, description="", parameters=None):
        def trampoline(arguments_json, result, _user):
            try:
                args = json.loads(arguments_json.decode("utf-8"))
                value = fn(**args) if isinstance(args, dict) else fn(args)
                text = value if isinstance(value, str) else json.dumps(value)
                data = text.encode("utf-8")
                _tool_result_set(result, data, len(data))
                return 0
            except Exception as e:  # reported to the model, never unwinds through C
                data = f"{type(e).__name__}: {e}".encode("utf-8")
                _tool_result_set(result, data, len(data))
                return 2
        cb = _TOOL_FN(trampoline)
        schema = json.dumps(parameters).encode() if parameters is not None else None
        _check(_tools_register(self._handle, name.encode(), description.encode(), schema, cb,
                               None))
        self._callbacks.append(cb)
        return fn

    def tool(self, name=None, description="", parameters=None):
        """Decorator form of register()."""
        def wrap(fn):
            return self.register(name or fn.__name__, fn, description or (fn.__doc__ or ""),
                                 parameters)
        return wrap


# ---------------------------------------------------------------------------------------------
# Sessions


class StopReason(enum.IntEnum):
    END_OF_TURN = 0
    MAX_TOKENS = 1
    CANCELLED = 2
    REPETITION = 3
    TOOL_STEP_LIMIT = 4
    TOOL_CALL = 5
    CONTEXT_FULL = 6


class ToolCall:
    def __init__(self, name, arguments):
        self.name = name
        self.arguments = arguments

    def __repr__(self):
        return f"ToolCall({self.name!r}, {self.arguments!r})"


class Reply:
    def __init__(self, handle):
        self.text = _reply_text(handle).decode("utf-8")
        self.thought = _reply_thought(handle).decode("utf-8")
        self.stop_reason = StopReason(_reply_stop_reason(handle))
        self.tool_calls = [
            ToolCall(_reply_tool_call_name(handle, i).decode(),
                     json.loads(_reply_tool_call_arguments(handle, i).decode("utf-8")))
            for i in range(_reply_num_tool_calls(handle))]
        self.tool_results = [json.loads(_reply_tool_result(handle, i).decode("utf-8"))
                             for i in range(_reply_num_tool_results(handle))]
        self.prompt_tokens = _reply_prompt_tokens(handle)
        self.reused_tokens = _reply_reused_tokens(handle)
        self.generated_tokens = _reply_generated_tokens(handle)
        self.decode_seconds = _reply_decode_seconds(handle)
        self.prefill_seconds = _reply_prefill_seconds(handle)
        self.drafted_tokens = _reply_drafted_tokens(handle)
        self.accepted_draft_tokens = _reply_accepted_draft_tokens(handle)

    def __repr__(self):
        return f"Reply(text={self.text!r}, stop_reason={self.stop_reason.name})"


class _StreamState:
    """One Session.stream() call: its worker thread and whether it was told to stop."""

    def __init__(self, session):
        self.session = session
        self.worker = None
        self.stop = False
        self.result = {}

    def finish(self):
        """Cancels the reply if it is still being generated and waits for the worker."""
        if self.worker is not None and self.worker.is_alive():
            self.stop = True
            self.session.cancel()
        if self.worker is not None:
            self.worker.join()
        with _live_streams_lock:
            _live_streams.discard(self)


# Streams whose worker may still run. A daemon thread still inside the library when the
# interpreter finalizes is torn down mid-call (forced unwinding through C++ frames aborts the
# process: "FATAL: exception not rethrown"), so every stream still alive at exit, e.g. an
# iterator kept after `break`, is cancelled and joined first. atexit handlers run before
# daemon threads are stopped.
_live_streams = set()
_live_streams_lock = threading.Lock()


@atexit.register
def _finish_live_streams():
    with _live_streams_lock:
        states = list(_live_streams)
    for state in states:
        state.finish()


class Session:
    """A conversation. Not thread-safe except cancel(); several sessions may share a Model."""

    def __init__(self, model, system_prompt=None, tools=None, max_context=0,
                 drop_old_turns=False, _handle=None):
        self._model = model
        self._tools = tools
        if _handle is not None:
            self._handle = _handle
            return
        opts = _SessionOptions()
        _session_options_init(ctypes.byref(opts), ctypes.sizeof(opts))
        if system_prompt is not None:
            opts.system_prompt = system_prompt.encode("utf-8")
        if tools is not None:
            opts.tools = tools._handle
        opts.max_context = max_context
        opts.context_policy = 1 if drop_old_turns else 0
        handle = c_void_p()
        _check(_session_create(model._handle, ctypes.byref(opts), ctypes.byref(handle)))
        self._handle = handle

    def __del__(self):
        if getattr(self, "_handle", None):
            _session_free(self._handle)
            self._handle = None

    def _options(self, on_text, max_tokens, thinking, thinking_budget, temperature, top_k,
                 top_p, min_p, seed, json_schema, execute_tools, require_tool_call,
                 max_tool_steps, stop_on_repetition, logit_bias, max_calls_per_round,
                 draft_tokens):
        go = _GenerateOptions()
        _generate_options_init(ctypes.byref(go), ctypes.sizeof(go))
        go.max_tokens = max_tokens
        go.thinking = int(thinking)
        go.thinking_budget = -1 if thinking_budget is None else thinking_budget
        go.execute_tools = int(execute_tools)
        go.require_tool_call = int(require_tool_call)
        go.max_tool_steps = max_tool_steps
        go.max_calls_per_round = max_calls_per_round
        go.draft_tokens = -1 if draft_tokens is None else draft_tokens
        go.stop_on_repetition = int(stop_on_repetition)
        keep = []
        if json_schema is not None:
            schema = json_schema if isinstance(json_schema, str) else json.dumps(json_schema)
            go.json_schema = schema.encode("utf-8")
        if any(v is not None for v in (temperature, top_k, top_p, min_p, seed, logit_bias)):
            s = _SamplerOptions()
            _sampler_options_init(ctypes.byref(s), self._model._handle, ctypes.sizeof(s))
            if temperature is not None:
                s.temperature = temperature
            if top_k is not None:
                s.top_k = top_k
            if top_p is not None:
                s.top_p = top_p
            if min_p is not None:
                s.min_p = min_p
            if seed is not None:
                s.seed = seed
            if logit_bias:
                ids = (c_int32 * len(logit_bias))(*logit_bias.keys())
                vals = (c_float * len(logit_bias))(*logit_bias.values())
                s.logit_bias_ids, s.logit_bias_values = ids, vals
                s.n_logit_bias = len(logit_bias)
                keep += [ids, vals]
            go.sampler = ctypes.pointer(s)
            keep.append(s)
        if on_text is not None:
            cb = _ON_TEXT(on_text)
            go.on_text = cb
            keep.append(cb)
        return go, keep

    def send(self, text, max_tokens=1024, thinking=False, thinking_budget=None, temperature=None,
             top_k=None, top_p=None, min_p=None, seed=None, json_schema=None, execute_tools=True,
             require_tool_call=False, max_tool_steps=8, stop_on_repetition=True,
             logit_bias=None, max_calls_per_round=8, on_text=None, draft_tokens=None):
        """Adds a user turn and returns the model's Reply. `text` is a string, or a list of
        strings, Image and Audio objects in order (a turn with media). on_text(kind, text) streams
        pieces ("thought" or "text"); returning False from it cancels (raises Error
        CANCELLED). draft_tokens: drafted tokens a round for a model with a drafter (None: the
        model's, 0: no drafting this turn)."""
        callback = None
        if on_text is not None:
            def callback(kind, data, length, _user):
                try:
                    piece = ctypes.string_at(data, length).decode("utf-8")
                    return 0 if on_text("thought" if kind == 0 else "text", piece) is False else 1
                except Exception:
                    return 0
        go, keep = self._options(callback, max_tokens, thinking, thinking_budget, temperature,
                                 top_k, top_p, min_p, seed, json_schema, execute_tools,
                                 require_tool_call, max_tool_steps, stop_on_repetition,
                                 logit_bias, max_calls_per_round, draft_tokens)
        reply = c_void_p()
        if isinstance(text, str):
            status = _session_send(self._handle, text.encode("utf-8"), ctypes.byref(go),
                                   ctypes.byref(reply))
        else:
            content = c_void_p()
            _check(_content_create(ctypes.byref(content)))
            try:
                for part in text:
                    if isinstance(part, (Image, Audio, Video)):
                        part._add_to(content)
                    elif isinstance(part, str):
                        data = part.encode("utf-8")
                        _check(_content_add_text(content, data, len(data)))
                    else:
                        raise TypeError("content parts are str, gemma4.Image, gemma4.Audio or "
                                        "gemma4.Video, not %s"
                                        % type(part).__name__)
                status = _session_send_content(self._handle, content, ctypes.byref(go),
                                               ctypes.byref(reply))
            finally:
                _content_free(content)
        del keep
        _check(status)
        try:
            return Reply(reply)
        finally:
            _reply_free(reply)

    def stream(self, text, **options):
        """Iterates (kind, piece) while the reply is generated (on a worker thread). The final
        Reply is in self.last_reply afterwards. Stopping the iteration early cancels: at once
        when the iterator is closed or collected, and at interpreter exit for an iterator kept
        alive after `break` (its worker is cancelled and joined before Python shuts down)."""
        pieces = queue.Queue()
        done = object()
        state = _StreamState(self)

        def on_text(kind, piece):
            pieces.put((kind, piece))
            return not state.stop

        def run():
            try:
                state.result["reply"] = self.send(text, on_text=on_text, **options)
            except Exception as e:
                state.result["error"] = e
            pieces.put(done)

        state.worker = threading.Thread(target=run, daemon=True)
        with _live_streams_lock:
            _live_streams.add(state)
        state.worker.start()
        try:
            while True:
                item = pieces.get()
                if item is done:
                    break
                yield item
        finally:
            state.finish()
        if "error" in state.result and not state.stop:
            raise state.result["error"]
        self.last_reply = state.result.get("reply")

    def cancel(self):
        """Thread-safe: stops a send() running on another thread."""
        _session_cancel(self._handle)

    def fork(self):
        handle = c_void_p()
        _check(_session_fork(self._handle, ctypes.byref(handle)))
        return Session(self._model, tools=self._tools, _handle=handle)

    def rewind(self, num_turns):
        _check(_session_rewind(self._handle, num_turns))

    def save(self):
        data, size = c_void_p(), c_size_t()
        _check(_session_save(self._handle, ctypes.byref(data), ctypes.byref(size)))
        try:
            return ctypes.string_at(data, size.value)
        finally:
            _free(data)

    @classmethod
    def restore(cls, model, state, tools=None):
        handle = c_void_p()
        _check(_session_restore(model._handle, state, len(state),
                                tools._handle if tools is not None else None,
                                ctypes.byref(handle)))
        return cls(model, tools=tools, _handle=handle)

    @property
    def history(self):
        """[(role, text, thought)] with role "system", "user" or "model"."""
        out = []
        for i in range(_session_num_turns(self._handle)):
            role, text, thought = c_int(), c_char_p(), c_char_p()
            _check(_session_get_turn(self._handle, i, ctypes.byref(role), ctypes.byref(text),
                                     ctypes.byref(thought)))
            out.append((("system", "user", "model")[role.value], text.value.decode("utf-8"),
                        thought.value.decode("utf-8")))
        return out

    @property
    def context_tokens(self):
        return _session_context_tokens(self._handle)

    @property
    def context_token_ids(self):
        """The token ids the KV cache holds: exactly what the model has seen (user and tool text
        is always tokenized as text, never as control tokens)."""
        count = c_size_t()
        _check(_session_context_token_ids(self._handle, None, 0, ctypes.byref(count)))
        buf = (c_int32 * count.value)()
        _check(_session_context_token_ids(self._handle, buf, count.value, ctypes.byref(count)))
        return list(buf[:count.value])
