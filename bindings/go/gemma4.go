// Package gemma4 runs Gemma 4 models on CPUs through gemma4's C API (cgo).
//
// A Model is safe to share between goroutines; a Session is used by one goroutine at a time,
// except Cancel, which any goroutine may call. Callbacks (streaming text, tools) are Go
// functions passed through runtime/cgo.Handle. A user turn holding images, recordings or
// videos is a list of Parts (Text, Image, Audio and Video) sent with SendContent.
package gemma4

/*
#cgo LDFLAGS: -lgemma4
#include <stdint.h>
#include <stdlib.h>
#include "gemma4.h"

void gemma4go_set_on_text(gemma4_generate_options* o, uintptr_t handle);
gemma4_status gemma4go_register_tool(gemma4_tools* tools, const char* name,
                                     const char* description, const char* schema,
                                     uintptr_t handle);
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"runtime/cgo"
	"unsafe"
)

// Error is a failure reported by the library.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("gemma4: %s (code %d)", e.Message, e.Code) }

// Status codes of Error.Code (gemma4_status).
const (
	CodeCancelled          = 1
	CodeUnknown            = 2
	CodeInvalidArgument    = 3
	CodeDeadlineExceeded   = 4
	CodeNotFound           = 5
	CodeAlreadyExists      = 6
	CodePermissionDenied   = 7
	CodeResourceExhausted  = 8
	CodeFailedPrecondition = 9
	CodeAborted            = 10
	CodeOutOfRange         = 11
	CodeUnimplemented      = 12
	CodeInternal           = 13
	CodeUnavailable        = 14
	CodeDataLoss           = 15
)

// ErrCancelled matches errors from cancelled generations (errors.Is).
var ErrCancelled = &Error{Code: CodeCancelled}

// ErrFailedPrecondition matches errors such as images or videos sent to a model without a
// vision tower, or recordings to one without an audio tower (errors.Is).
var ErrFailedPrecondition = &Error{Code: CodeFailedPrecondition}

func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Message == "" || t.Message == e.Message)
}

func check(status C.gemma4_status) error {
	if status == C.GEMMA4_OK {
		return nil
	}
	return &Error{Code: int(status), Message: C.GoString(C.gemma4_last_error())}
}

// Version is the library's version string.
func Version() string { return C.GoString(C.gemma4_version_string()) }

// Model is a loaded model.
type Model struct{ h *C.gemma4_model }

// Load opens a checkpoint directory or GGUF file. tokenizerPath may be empty.
func Load(path string, threads int, tokenizerPath string) (*Model, error) {
	return LoadWith(path, LoadOptions{Threads: threads, TokenizerPath: tokenizerPath})
}

// LoadOptions says how to load a model (LoadWith, PlanMemory). Zero values are defaults.
type LoadOptions struct {
	Threads       int    // 0: one per hardware thread
	TokenizerPath string // "": beside the weights
	KVCacheType   string // "" or "auto", "f32", "f16", "q8_0", "q4_0"
	MmprojPath    string // a llama.cpp mmproj GGUF with the towers of a GGUF model
	// MemoryLimitBytes refuses (CodeResourceExhausted) a model, or later a session, whose
	// memory plan exceeds it; 0: no limit.
	MemoryLimitBytes uint64
	// DraftModelPath is a Gemma 4 assistant drafter (its "-assistant" checkpoint directory or
	// GGUF): sessions draft DraftTokens tokens a round (1..14; 0: the library's default, 4) and
	// verify them in one batched forward; replies are unchanged.
	DraftModelPath string
	DraftTokens    int
	// MaxImageTokens is the largest image budget in soft tokens (70, 140, 280, 560 or 1120;
	// 0: 1120) that sessions encode: the memory plan sizes the vision activations for it and
	// larger images are refused (CodeInvalidArgument).
	MaxImageTokens int
}

// MemoryPlan is the bytes a model and one session keep resident, itemized (see gemma4.h).
type MemoryPlan struct {
	KVCacheType                                      string
	Threads                                          int
	ContextTokens                                    int64
	WeightsRepacked, WeightsMapped, WeightsConverted uint64
	PLETable                                         uint64 // page cache, not counted
	KVFull, KVSliding, KVRewind, Scratch, Tokenizer  uint64
	EncoderWeights, EncoderActivations, Total        uint64
	Drafter                                          uint64 // a drafter's weights and buffers
	MaxImageTokens                                   int    // image budget the vision activations fit (1120 for 0)
}

var kvCacheTypes = map[string]C.int32_t{"": 0, "auto": 0, "f32": 1, "f16": 2, "q8_0": 3, "q4_0": 4}
var kvCacheNames = map[C.int32_t]string{1: "f32", 2: "f16", 3: "q8_0", 4: "q4_0"}

// withOptions fills the C options from o (C strings live until the callback returns).
func withOptions(o LoadOptions, fn func(*C.gemma4_model_options) C.gemma4_status) error {
	kv, ok := kvCacheTypes[o.KVCacheType]
	if !ok {
		return &Error{Code: CodeInvalidArgument,
			Message: "KVCacheType must be auto, f32, f16, q8_0 or q4_0, not \"" + o.KVCacheType + "\""}
	}
	var opts C.gemma4_model_options
	C.gemma4_model_options_init_sized(&opts, C.size_t(unsafe.Sizeof(opts)))
	opts.threads = C.int32_t(o.Threads)
	opts.kv_cache_type = kv
	opts.memory_limit_bytes = C.uint64_t(o.MemoryLimitBytes)
	opts.draft_tokens = C.int32_t(o.DraftTokens)
	opts.max_image_tokens = C.int32_t(o.MaxImageTokens)
	cstr := func(s string, dst **C.char) {
		if s != "" {
			*dst = C.CString(s)
		}
	}
	cstr(o.TokenizerPath, &opts.tokenizer_path)
	cstr(o.MmprojPath, &opts.mmproj_path)
	cstr(o.DraftModelPath, &opts.draft_model_path)
	defer func() {
		for _, p := range []*C.char{opts.tokenizer_path, opts.mmproj_path, opts.draft_model_path} {
			if p != nil {
				C.free(unsafe.Pointer(p))
			}
		}
	}()
	return check(fn(&opts))
}

// LoadWith opens a checkpoint directory or GGUF file with options.
func LoadWith(path string, o LoadOptions) (*Model, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var h *C.gemma4_model
	err := withOptions(o, func(opts *C.gemma4_model_options) C.gemma4_status {
		return C.gemma4_model_load(cpath, opts, &h)
	})
	if err != nil {
		return nil, err
	}
	m := &Model{h}
	runtime.SetFinalizer(m, (*Model).Close)
	return m, nil
}

func toPlan(p *C.gemma4_memory_plan) MemoryPlan {
	return MemoryPlan{
		KVCacheType: kvCacheNames[p.kv_cache_type], Threads: int(p.threads),
		ContextTokens:   int64(p.context_tokens),
		WeightsRepacked: uint64(p.weights_repacked), WeightsMapped: uint64(p.weights_mapped),
		WeightsConverted: uint64(p.weights_converted), PLETable: uint64(p.ple_table),
		KVFull: uint64(p.kv_full), KVSliding: uint64(p.kv_sliding), KVRewind: uint64(p.kv_rewind),
		Scratch: uint64(p.scratch), Tokenizer: uint64(p.tokenizer),
		EncoderWeights: uint64(p.encoder_weights), EncoderActivations: uint64(p.encoder_activations),
		Total: uint64(p.total), Drafter: uint64(p.drafter),
		MaxImageTokens: int(p.max_image_tokens),
	}
}

// PlanMemory is the memory plan of LoadWith(path, o) plus one session of contextTokens, from
// the files' headers without loading any weight.
func PlanMemory(path string, contextTokens int64, o LoadOptions) (MemoryPlan, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var plan C.gemma4_memory_plan
	plan.struct_size = C.uint32_t(unsafe.Sizeof(plan))
	err := withOptions(o, func(opts *C.gemma4_model_options) C.gemma4_status {
		return C.gemma4_plan_memory(cpath, opts, C.int64_t(contextTokens), &plan)
	})
	if err != nil {
		return MemoryPlan{}, err
	}
	return toPlan(&plan), nil
}

// PlanMemory is the bytes this model and one session of contextTokens keep resident.
func (m *Model) PlanMemory(contextTokens int64) (MemoryPlan, error) {
	var plan C.gemma4_memory_plan
	plan.struct_size = C.uint32_t(unsafe.Sizeof(plan))
	if err := check(C.gemma4_model_plan_memory(m.h, C.int64_t(contextTokens), &plan)); err != nil {
		return MemoryPlan{}, err
	}
	return toPlan(&plan), nil
}

// Close frees the model (sessions keep it alive).
func (m *Model) Close() {
	if m.h != nil {
		C.gemma4_model_free(m.h)
		m.h = nil
	}
}

// VocabSize is the number of token ids.
func (m *Model) VocabSize() int {
	var info C.gemma4_model_info
	info.struct_size = C.uint32_t(unsafe.Sizeof(info))
	C.gemma4_model_get_info(m.h, &info)
	return int(info.vocab_size)
}

// ModelInfo describes a loaded model.
type ModelInfo struct {
	Variant           string
	VocabSize         int
	NumLayers         int
	HiddenSize        int
	SlidingWindow     int
	MaxContext        int64
	NumParameters     int64
	WeightBytes       uint64
	Threads           int
	LargeChatTemplate bool
	KVCacheType       string // "f32", "f16", "q8_0" or "q4_0"
	// Vision: the model takes images (its vision tower is loaded).
	Vision bool
	// DefaultImageTokens: soft tokens per image when an Image leaves MaxSoftTokens at 0.
	DefaultImageTokens int
	// Audio: the model takes recordings (its audio tower is loaded).
	Audio bool
}

// Info describes the model.
func (m *Model) Info() (ModelInfo, error) {
	var info C.gemma4_model_info
	info.struct_size = C.uint32_t(unsafe.Sizeof(info))
	if err := check(C.gemma4_model_get_info(m.h, &info)); err != nil {
		return ModelInfo{}, err
	}
	return ModelInfo{
		Variant:            C.GoString(info.variant),
		VocabSize:          int(info.vocab_size),
		NumLayers:          int(info.num_layers),
		HiddenSize:         int(info.hidden_size),
		SlidingWindow:      int(info.sliding_window),
		MaxContext:         int64(info.max_context),
		NumParameters:      int64(info.num_parameters),
		WeightBytes:        uint64(info.weight_bytes),
		Threads:            int(info.threads),
		LargeChatTemplate:  info.large_chat_template != 0,
		KVCacheType:        C.GoString(info.kv_cache_type),
		Vision:             info.vision != 0,
		DefaultImageTokens: int(info.default_image_tokens),
		Audio:              info.audio != 0,
	}, nil
}

// Tokenize turns text into ids.
func (m *Model) Tokenize(text string) ([]int32, error) {
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	ids := make([]int32, len(text)+16)
	for {
		var n C.size_t
		status := C.gemma4_tokenize(m.h, ctext, C.size_t(len(text)), 0,
			(*C.int32_t)(unsafe.Pointer(&ids[0])), C.size_t(len(ids)), &n)
		if status == C.GEMMA4_OUT_OF_RANGE && int(n) > len(ids) {
			ids = make([]int32, int(n))
			continue
		}
		if err := check(status); err != nil {
			return nil, err
		}
		return ids[:int(n)], nil
	}
}

// Detokenize turns ids into text.
func (m *Model) Detokenize(ids []int32) (string, error) {
	if len(ids) == 0 {
		return "", nil
	}
	buf := make([]byte, 16*len(ids)+16)
	for {
		var n C.size_t
		status := C.gemma4_detokenize(m.h, (*C.int32_t)(unsafe.Pointer(&ids[0])),
			C.size_t(len(ids)), 0, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), &n)
		if status == C.GEMMA4_OUT_OF_RANGE && int(n)+1 > len(buf) {
			buf = make([]byte, int(n)+1)
			continue
		}
		if err := check(status); err != nil {
			return "", err
		}
		return string(buf[:int(n)]), nil
	}
}

// Part is one piece of a user turn: Text, an Image (or *Image), an Audio (or *Audio) or a
// Video (or *Video).
type Part interface{ isPart() }

// Text is the text of a user turn's Part.
type Text string

func (Text) isPart() {}

// Image is a picture in a user turn, from exactly one of Path (a PNG, JPEG or WebP file), Data
// (the bytes of such a file) or RGB (RGB8 pixels row by row, Width*Height*3 bytes).
// MaxSoftTokens is 70, 140, 280, 560 or 1120, or 0 for the model's default. The image is
// decoded and checked when the turn is sent.
type Image struct {
	Path          string
	Data          []byte
	RGB           []byte
	Width, Height int
	MaxSoftTokens int
}

func (Image) isPart() {}

func invalid(format string, args ...any) error {
	return &Error{Code: CodeInvalidArgument, Message: fmt.Sprintf(format, args...)}
}

// checkSource checks that img has exactly one source and, for RGB, width*height*3 bytes.
func (img *Image) checkSource() error {
	sources := 0
	if img.Path != "" {
		sources++
	}
	if img.Data != nil {
		sources++
	}
	if img.RGB != nil {
		sources++
	}
	if sources != 1 {
		return invalid("Image needs exactly one of Path, Data or RGB")
	}
	if img.RGB != nil && (img.Width <= 0 || img.Height <= 0 ||
		len(img.RGB) != img.Width*img.Height*3) {
		return invalid("%dx%d RGB pixels need %d bytes, got %d", img.Width, img.Height,
			img.Width*img.Height*3, len(img.RGB))
	}
	return nil
}

// bytesPointer is the address of data's first byte, or nil for an empty slice.
func bytesPointer(data []byte) unsafe.Pointer {
	if len(data) == 0 {
		return nil
	}
	return unsafe.Pointer(&data[0])
}

func (img *Image) addTo(content *C.gemma4_content) error {
	if err := img.checkSource(); err != nil {
		return err
	}
	budget := C.int32_t(img.MaxSoftTokens)
	switch {
	case img.Path != "":
		cpath := C.CString(img.Path)
		defer C.free(unsafe.Pointer(cpath))
		return check(C.gemma4_content_add_image_file(content, cpath, budget))
	case img.Data != nil:
		return check(C.gemma4_content_add_image_bytes(content, bytesPointer(img.Data),
			C.size_t(len(img.Data)), budget))
	default:
		pixels := (*C.uint8_t)(bytesPointer(img.RGB))
		return check(C.gemma4_content_add_image_rgb(content, pixels, C.int32_t(img.Width),
			C.int32_t(img.Height), C.size_t(img.Width*3), budget))
	}
}

// Video is a video in a user turn, for the Gemma 4 models trained on video: 26B-A4B and 31B.
// It comes from exactly one of Frames (in time order, all the same size) or Path (a video file:
// mp4, webm, mkv, ... decoded by FFmpeg and sampled at one frame per second, evenly spaced
// instead past the frame limit; CodeUnimplemented from a library built without FFmpeg). At
// most 32 frames, the model's frame limit (more is CodeInvalidArgument). Each frame takes
// MaxSoftTokensPerFrame soft tokens (70, 140, 280, 560 or 1120; 0 = the model's default for
// video, 70) and follows its "mm:ss" timestamp in the prompt. A model without a vision tower
// (a text-only checkpoint) fails with ErrFailedPrecondition. The frames are decoded and checked
// when the turn is sent.
type Video struct {
	Frames                []VideoFrame
	Path                  string
	MaxSoftTokensPerFrame int
}

// VideoFrame is one frame of a Video: Image (exactly one of its Path, Data or RGB; its
// MaxSoftTokens stays 0, as the Video's MaxSoftTokensPerFrame applies) shown Seconds after the
// start of the video.
type VideoFrame struct {
	Image   Image
	Seconds float64
}

func (Video) isPart() {}

func (v *Video) addTo(content *C.gemma4_content) error {
	budget := C.int32_t(v.MaxSoftTokensPerFrame)
	if v.Path != "" {
		if v.Frames != nil {
			return invalid("Video needs exactly one of Frames or Path")
		}
		cpath := C.CString(v.Path)
		defer C.free(unsafe.Pointer(cpath))
		return check(C.gemma4_content_add_video_file(content, cpath, budget))
	}
	for i := range v.Frames {
		img := &v.Frames[i].Image
		if err := img.checkSource(); err != nil {
			return invalid("video frame %d: %s", i, err.(*Error).Message)
		}
		if img.MaxSoftTokens != 0 {
			return invalid("video frame %d: set the Video's MaxSoftTokensPerFrame, not the "+
				"frame's MaxSoftTokens", i)
		}
	}
	if err := check(C.gemma4_content_begin_video(content, budget)); err != nil {
		return err
	}
	for i := range v.Frames {
		img, seconds := &v.Frames[i].Image, C.double(v.Frames[i].Seconds)
		var err error
		switch {
		case img.Path != "":
			cpath := C.CString(img.Path)
			err = check(C.gemma4_content_add_video_frame_file(content, cpath, seconds))
			C.free(unsafe.Pointer(cpath))
		case img.Data != nil:
			err = check(C.gemma4_content_add_video_frame_bytes(content, bytesPointer(img.Data),
				C.size_t(len(img.Data)), seconds))
		default:
			pixels := (*C.uint8_t)(bytesPointer(img.RGB))
			err = check(C.gemma4_content_add_video_frame_rgb(content, pixels,
				C.int32_t(img.Width), C.int32_t(img.Height), C.size_t(img.Width*3), seconds))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Audio is a recording in a user turn, from exactly one of Path (a WAV, FLAC, Ogg/Vorbis/Opus
// or MP3 file), Data (the bytes of such a file) or PCM (mono float samples in [-1, 1] at
// SampleRate Hz; 0 means 16000). Any rate and channel count is downmixed and resampled to
// 16 kHz, and recordings over 30 s are encoded in 30 s pieces, in order. The recording is
// decoded and checked when the turn is sent.
type Audio struct {
	Path       string
	Data       []byte
	PCM        []float32
	SampleRate int
}

func (Audio) isPart() {}

func (a *Audio) addTo(content *C.gemma4_content) error {
	sources := 0
	if a.Path != "" {
		sources++
	}
	if a.Data != nil {
		sources++
	}
	if a.PCM != nil {
		sources++
	}
	if sources != 1 {
		return invalid("Audio needs exactly one of Path, Data or PCM")
	}
	switch {
	case a.Path != "":
		cpath := C.CString(a.Path)
		defer C.free(unsafe.Pointer(cpath))
		return check(C.gemma4_content_add_audio_file(content, cpath))
	case a.Data != nil:
		var data unsafe.Pointer
		if len(a.Data) > 0 {
			data = unsafe.Pointer(&a.Data[0])
		}
		return check(C.gemma4_content_add_audio_bytes(content, data, C.size_t(len(a.Data))))
	default:
		rate := a.SampleRate
		if rate == 0 {
			rate = 16000
		}
		if rate < 0 || rate > math.MaxInt32 {
			return invalid("sample rate %d out of range", rate)
		}
		var samples *C.float
		if len(a.PCM) > 0 {
			samples = (*C.float)(unsafe.Pointer(&a.PCM[0]))
		}
		return check(C.gemma4_content_add_audio_pcm(content, samples, C.size_t(len(a.PCM)),
			C.int32_t(rate)))
	}
}

// newContent builds a gemma4_content from parts (free it with gemma4_content_free).
func newContent(parts []Part) (*C.gemma4_content, error) {
	var content *C.gemma4_content
	if err := check(C.gemma4_content_create(&content)); err != nil {
		return nil, err
	}
	for i, part := range parts {
		var err error
		switch p := part.(type) {
		case Text:
			ctext := C.CString(string(p))
			err = check(C.gemma4_content_add_text(content, ctext, C.size_t(len(p))))
			C.free(unsafe.Pointer(ctext))
		case Image:
			err = p.addTo(content)
		case *Image:
			if p == nil {
				err = invalid("part %d is a nil *Image", i)
			} else {
				err = p.addTo(content)
			}
		case Audio:
			err = p.addTo(content)
		case *Audio:
			if p == nil {
				err = invalid("part %d is a nil *Audio", i)
			} else {
				err = p.addTo(content)
			}
		case Video:
			err = p.addTo(content)
		case *Video:
			if p == nil {
				err = invalid("part %d is a nil *Video", i)
			} else {
				err = p.addTo(content)
			}
		default:
			err = invalid("part %d: parts are Text, Image, Audio or Video, not %T", i, part)
		}
		if err != nil {
			C.gemma4_content_free(content)
			return nil, err
		}
	}
	return content, nil
}

// ToolFunc receives the arguments as JSON and returns the result as JSON (or plain text).
// A returned error goes back to the model as {"error": message}.
type ToolFunc func(argumentsJSON string) (string, error)

// Tools is a set of tools the model may call.
type Tools struct {
	h       *C.gemma4_tools
	handles []cgo.Handle
}

// NewTools creates an empty tool set.
func NewTools() (*Tools, error) {
	var h *C.gemma4_tools
	if err := check(C.gemma4_tools_create(&h)); err != nil {
		return nil, err
	}
	t := &Tools{h: h}
	runtime.SetFinalizer(t, (*Tools).Close)
	return t, nil
}

// Register adds a tool; schema is the JSON schema of its arguments object.
func (t *Tools) Register(name, description, schema string, fn ToolFunc) error {
	cname, cdesc, cschema := C.CString(name), C.CString(description), C.CString(schema)
	defer C.free(unsafe.Pointer(cname))
	defer C.free(unsafe.Pointer(cdesc))
	defer C.free(unsafe.Pointer(cschema))
	h := cgo.NewHandle(fn)
	if err := check(C.gemma4go_register_tool(t.h, cname, cdesc, cschema, C.uintptr_t(h))); err != nil {
		h.Delete()
		return err
	}
	t.handles = append(t.handles, h)
	return nil
}

// Close frees the tool set (sessions keep their own copy).
func (t *Tools) Close() {
	if t.h != nil {
		C.gemma4_tools_free(t.h)
		t.h = nil
	}
	for _, h := range t.handles {
		h.Delete()
	}
	t.handles = nil
}

//export goTool
func goTool(args *C.char, result *C.gemma4_tool_result, handle C.uintptr_t) C.int {
	fn := cgo.Handle(handle).Value().(ToolFunc)
	out, err := func() (out string, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("tool panicked: %v", r)
			}
		}()
		return fn(C.GoString(args))
	}()
	status := C.int(0)
	if err != nil {
		out, status = err.Error(), 2
	}
	cout := C.CString(out)
	defer C.free(unsafe.Pointer(cout))
	C.gemma4_tool_result_set(result, cout, C.size_t(len(out)))
	return status
}

// Options of one model turn.
type Options struct {
	MaxTokens        int
	Thinking         bool
	Temperature      *float32 // nil: the model's default
	Seed             uint64
	JSONSchema       string
	RequireToolCall  bool
	MaxToolSteps     int
	MaxCallsPerRound int
	NoRepetitionStop bool
	Banned           []int32 // token ids that may not be generated
	// DraftTokens: drafted tokens a round for a model with a drafter (nil: the model's,
	// 0: no drafting this turn).
	DraftTokens *int
	// OnText streams the reply (thought pieces have thought == true); return false to cancel.
	OnText func(thought bool, text string) bool
}

// ToolCall is a call the model made.
type ToolCall struct{ Name, ArgumentsJSON string }

// Reply is the model's turn.
type Reply struct {
	Text, Thought   string
	StopReason      int
	ToolCalls       []ToolCall
	ToolResults     []string
	PromptTokens    int
	GeneratedTokens int
	ReusedTokens    int
	// Speculative decoding: tokens drafted this turn and how many the model kept.
	DraftedTokens, AcceptedDraftTokens int
}

// Session is a conversation.
type Session struct {
	h     *C.gemma4_session
	model *Model
}

// NewSession starts a conversation; systemPrompt may be empty, tools nil.
func NewSession(m *Model, systemPrompt string, tools *Tools) (*Session, error) {
	var opts C.gemma4_session_options
	C.gemma4_session_options_init_sized(&opts, C.size_t(unsafe.Sizeof(opts)))
	if systemPrompt != "" {
		cs := C.CString(systemPrompt)
		defer C.free(unsafe.Pointer(cs))
		opts.system_prompt = cs
	}
	if tools != nil {
		opts.tools = tools.h
	}
	var h *C.gemma4_session
	if err := check(C.gemma4_session_create(m.h, &opts, &h)); err != nil {
		return nil, err
	}
	s := &Session{h: h, model: m}
	runtime.SetFinalizer(s, (*Session).Close)
	return s, nil
}

//export goOnText
func goOnText(kind C.int, text *C.char, length C.size_t, handle C.uintptr_t) C.int {
	fn := cgo.Handle(handle).Value().(func(bool, string) bool)
	if fn(kind == 0, C.GoStringN(text, C.int(length))) {
		return 1
	}
	return 0
}

// Send adds a user turn and generates the reply.
func (s *Session) Send(text string, o Options) (*Reply, error) {
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	return s.generate(o, func(opts *C.gemma4_generate_options, out **C.gemma4_reply) C.gemma4_status {
		return C.gemma4_session_send(s.h, ctext, opts, out)
	})
}

// SendContent adds a user turn of text, images, recordings and videos, in order, and generates
// the reply. A model without the tower its images, recordings or videos need fails with
// ErrFailedPrecondition.
func (s *Session) SendContent(parts []Part, o Options) (*Reply, error) {
	content, err := newContent(parts)
	if err != nil {
		return nil, err
	}
	defer C.gemma4_content_free(content)
	return s.generate(o, func(opts *C.gemma4_generate_options, out **C.gemma4_reply) C.gemma4_status {
		return C.gemma4_session_send_content(s.h, content, opts, out)
	})
}

// generate fills the generate options from o, runs call with them and reads its reply.
func (s *Session) generate(o Options,
	call func(*C.gemma4_generate_options, **C.gemma4_reply) C.gemma4_status) (*Reply, error) {
	var sampler C.gemma4_sampler_options
	C.gemma4_sampler_options_init_sized(&sampler, s.model.h, C.size_t(unsafe.Sizeof(sampler)))
	if o.Temperature != nil {
		sampler.temperature = C.float(*o.Temperature)
	}
	sampler.seed = C.uint64_t(o.Seed)
	// C memory for the bias arrays: the Go pointer rules forbid passing Go slices inside a
	// struct that C keeps during the call.
	if n := len(o.Banned); n > 0 {
		ids := (*[1 << 20]C.int32_t)(C.malloc(C.size_t(n) * 4))[:n:n]
		vals := (*[1 << 20]C.float)(C.malloc(C.size_t(n) * 4))[:n:n]
		defer C.free(unsafe.Pointer(&ids[0]))
		defer C.free(unsafe.Pointer(&vals[0]))
		for i, id := range o.Banned {
			ids[i], vals[i] = C.int32_t(id), -1e30
		}
		sampler.logit_bias_ids, sampler.logit_bias_values = &ids[0], &vals[0]
		sampler.n_logit_bias = C.size_t(n)
	}
	csampler := (*C.gemma4_sampler_options)(C.malloc(C.size_t(unsafe.Sizeof(sampler))))
	defer C.free(unsafe.Pointer(csampler))
	*csampler = sampler
	var go_ C.gemma4_generate_options
	C.gemma4_generate_options_init_sized(&go_, C.size_t(unsafe.Sizeof(go_)))
	if o.MaxTokens > 0 {
		go_.max_tokens = C.int32_t(o.MaxTokens)
	}
	if o.Thinking {
		go_.thinking = 1
	}
	go_.sampler = csampler
	if o.JSONSchema != "" {
		cs := C.CString(o.JSONSchema)
		defer C.free(unsafe.Pointer(cs))
		go_.json_schema = cs
	}
	if o.RequireToolCall {
		go_.require_tool_call = 1
	}
	if o.MaxToolSteps > 0 {
		go_.max_tool_steps = C.int32_t(o.MaxToolSteps)
	}
	if o.MaxCallsPerRound > 0 {
		go_.max_calls_per_round = C.int32_t(o.MaxCallsPerRound)
	}
	if o.NoRepetitionStop {
		go_.stop_on_repetition = 0
	}
	if o.DraftTokens != nil {
		go_.draft_tokens = C.int32_t(*o.DraftTokens)
	}
	if o.OnText != nil {
		h := cgo.NewHandle(o.OnText)
		defer h.Delete()
		C.gemma4go_set_on_text(&go_, C.uintptr_t(h))
	}
	var reply *C.gemma4_reply
	if err := check(call(&go_, &reply)); err != nil {
		return nil, err
	}
	defer C.gemma4_reply_free(reply)
	r := &Reply{
		Text:                C.GoString(C.gemma4_reply_text(reply)),
		Thought:             C.GoString(C.gemma4_reply_thought(reply)),
		StopReason:          int(C.gemma4_reply_stop_reason(reply)),
		PromptTokens:        int(C.gemma4_reply_prompt_tokens(reply)),
		GeneratedTokens:     int(C.gemma4_reply_generated_tokens(reply)),
		ReusedTokens:        int(C.gemma4_reply_reused_tokens(reply)),
		DraftedTokens:       int(C.gemma4_reply_drafted_tokens(reply)),
		AcceptedDraftTokens: int(C.gemma4_reply_accepted_draft_tokens(reply)),
	}
	for i := C.size_t(0); i < C.gemma4_reply_num_tool_calls(reply); i++ {
		r.ToolCalls = append(r.ToolCalls, ToolCall{
			C.GoString(C.gemma4_reply_tool_call_name(reply, i)),
			C.GoString(C.gemma4_reply_tool_call_arguments(reply, i))})
	}
	for i := C.size_t(0); i < C.gemma4_reply_num_tool_results(reply); i++ {
		r.ToolResults = append(r.ToolResults, C.GoString(C.gemma4_reply_tool_result(reply, i)))
	}
	return r, nil
}

// Cancel stops a Send running in another goroutine (it returns ErrCancelled).
func (s *Session) Cancel() { C.gemma4_session_cancel(s.h) }

// Fork copies the session (history and cache).
func (s *Session) Fork() (*Session, error) {
	var h *C.gemma4_session
	if err := check(C.gemma4_session_fork(s.h, &h)); err != nil {
		return nil, err
	}
	f := &Session{h: h, model: s.model}
	runtime.SetFinalizer(f, (*Session).Close)
	return f, nil
}

// Rewind keeps the first n turns.
func (s *Session) Rewind(n int) error { return check(C.gemma4_session_rewind(s.h, C.size_t(n))) }

// Save serializes the session.
func (s *Session) Save() ([]byte, error) {
	var data unsafe.Pointer
	var size C.size_t
	if err := check(C.gemma4_session_save(s.h, &data, &size)); err != nil {
		return nil, err
	}
	defer C.gemma4_free(data)
	return C.GoBytes(data, C.int(size)), nil
}

// Restore recreates a saved session.
func Restore(m *Model, state []byte, tools *Tools) (*Session, error) {
	if len(state) == 0 {
		return nil, errors.New("gemma4: empty session state")
	}
	cstate := C.CBytes(state)
	defer C.free(cstate)
	var th *C.gemma4_tools
	if tools != nil {
		th = tools.h
	}
	var h *C.gemma4_session
	if err := check(C.gemma4_session_restore(m.h, cstate, C.size_t(len(state)), th, &h)); err != nil {
		return nil, err
	}
	s := &Session{h: h, model: m}
	runtime.SetFinalizer(s, (*Session).Close)
	return s, nil
}

// NumTurns is the number of turns in the history.
func (s *Session) NumTurns() int { return int(C.gemma4_session_num_turns(s.h)) }

// ContextTokenIDs returns the token ids the KV cache holds: exactly what the model has seen
// (text from users and tools is always tokenized as text, never as control tokens).
func (s *Session) ContextTokenIDs() ([]int32, error) {
	var count C.size_t
	if err := check(C.gemma4_session_context_token_ids(s.h, nil, 0, &count)); err != nil {
		return nil, err
	}
	ids := make([]int32, int(count))
	if len(ids) == 0 {
		return ids, nil
	}
	if err := check(C.gemma4_session_context_token_ids(s.h, (*C.int32_t)(unsafe.Pointer(&ids[0])),
		C.size_t(len(ids)), &count)); err != nil {
		return nil, err
	}
	return ids[:int(count)], nil
}

// Close frees the session.
func (s *Session) Close() {
	if s.h != nil {
		C.gemma4_session_free(s.h)
		s.h = nil
	}
}
