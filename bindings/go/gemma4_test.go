package gemma4

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func fixtures() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "tests", "fixtures")
}

func load(t *testing.T) *Model {
	m, err := Load(filepath.Join(fixtures(), "models/tiny-e2b/gemma4"), 2,
		filepath.Join(fixtures(), "chat/tiny_tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var zero = float32(0)
var one = float32(1)

func TestTokenizer(t *testing.T) {
	m := load(t)
	if Version() != "0.4.0" || m.VocabSize() != 512 {
		t.Fatal("version or vocab")
	}
	ids, err := m.Tokenize("<|turn>user\nhello")
	if err != nil || ids[0] != 105 {
		t.Fatal(ids, err)
	}
	text, err := m.Detokenize(ids)
	if err != nil || text != "<|turn>user\nhello" {
		t.Fatal(text, err)
	}
}

func TestStreamingForkRestore(t *testing.T) {
	m := load(t)
	s, err := NewSession(m, "Be brief.", nil)
	if err != nil {
		t.Fatal(err)
	}
	var streamed strings.Builder
	o := Options{MaxTokens: 10, Temperature: &zero, Banned: []int32{1, 106, 50},
		NoRepetitionStop: true,
		OnText: func(thought bool, text string) bool {
			if !thought {
				streamed.WriteString(text)
			}
			return true
		}}
	r, err := s.Send("Hello!", o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Text != streamed.String() || r.GeneratedTokens != 10 || s.NumTurns() != 3 {
		t.Fatalf("reply %+v streamed %q", r, streamed.String())
	}
	// The context: <bos> first, the reply's prompt and generated ids all there.
	ids, err := s.ContextTokenIDs()
	if err != nil || len(ids) == 0 || ids[0] != 2 || len(ids) < r.ReusedTokens+r.PromptTokens {
		t.Fatalf("context ids %v (%v)", ids, err)
	}
	fork, err := s.Fork()
	if err != nil {
		t.Fatal(err)
	}
	state, err := s.Save()
	if err != nil {
		t.Fatal(err)
	}
	restored, err := Restore(m, state, nil)
	if err != nil {
		t.Fatal(err)
	}
	o.OnText = nil
	a, err1 := fork.Send("More", o)
	b, err2 := restored.Send("More", o)
	if err1 != nil || err2 != nil || a.Text != b.Text || b.ReusedTokens == 0 {
		t.Fatal(a, b, err1, err2)
	}
	if _, err := Restore(m, []byte("junk"), nil); err == nil {
		t.Fatal("junk state restored")
	}
}

func TestConstrainedToolCall(t *testing.T) {
	m := load(t)
	tools, err := NewTools()
	if err != nil {
		t.Fatal(err)
	}
	var calls int32
	err = tools.Register("get_weather", "Weather for a city",
		`{"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
		  "required": ["city"]}`,
		func(args string) (string, error) {
			atomic.AddInt32(&calls, 1)
			if !strings.Contains(args, `"city"`) {
				return "", errors.New("missing city")
			}
			return `{"temp": 18}`, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSession(m, "", tools)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Send("Weather?", Options{MaxTokens: 600, Temperature: &one, Seed: 2,
		RequireToolCall: true, MaxToolSteps: 1, MaxCallsPerRound: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.ToolCalls) == 0 || r.ToolCalls[0].Name != "get_weather" ||
		!strings.Contains(r.ToolCalls[0].ArgumentsJSON, `"city":"`) {
		t.Fatalf("%+v", r)
	}
	if len(r.ToolResults) == 0 || r.ToolResults[0] != `{"temp":18}` || atomic.LoadInt32(&calls) == 0 {
		t.Fatalf("%+v", r)
	}
}

func TestCancel(t *testing.T) {
	m := load(t)
	s, _ := NewSession(m, "", nil)
	var started int32
	go func() {
		for atomic.LoadInt32(&started) == 0 {
			time.Sleep(time.Millisecond)
		}
		s.Cancel()
	}()
	_, err := s.Send("Go", Options{MaxTokens: 100000, Temperature: &zero,
		Banned: []int32{1, 106, 50}, NoRepetitionStop: true,
		OnText: func(bool, string) bool { atomic.StoreInt32(&started, 1); return true }})
	if !errors.Is(err, ErrCancelled) {
		t.Fatal(err)
	}
}

func TestErrors(t *testing.T) {
	_, err := Load("/nonexistent/model", 1, "")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/model") {
		t.Fatal(err)
	}
	tools, _ := NewTools()
	if tools.Register("bad name", "", "{}", func(string) (string, error) { return "", nil }) == nil {
		t.Fatal("bad tool name accepted")
	}
}

func visionFixtures() string { return filepath.Join(fixtures(), "vision") }

func TestImagesInATurn(t *testing.T) {
	v := visionFixtures()
	m, err := Load(filepath.Join(v, "tiny-e2b-vision"), 2, filepath.Join(v, "tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := m.Info()
	if err != nil || !info.Vision || info.DefaultImageTokens != 280 {
		t.Fatalf("%+v %v", info, err)
	}
	chat, err := NewSession(m, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	picture := filepath.Join(v, "images", "up_200x150.png")
	data, err := os.ReadFile(picture)
	if err != nil {
		t.Fatal(err)
	}
	reply, err := chat.SendContent([]Part{Text("What is this?"),
		Image{Path: picture, MaxSoftTokens: 70}}, Options{MaxTokens: 2, Temperature: &zero})
	if err != nil {
		t.Fatal(err)
	}
	// 63 soft tokens and the <|image> / <image|> pair are in the prompt.
	if reply.PromptTokens <= 65 {
		t.Fatalf("%+v", reply)
	}
	// The same picture as bytes: same content, so the first turn's cache is reused.
	again, err := chat.SendContent([]Part{Text("And this?"),
		&Image{Data: data, MaxSoftTokens: 70}}, Options{MaxTokens: 2, Temperature: &zero})
	if err != nil || again.ReusedTokens < reply.PromptTokens-12 {
		t.Fatalf("%+v after %+v: %v", again, reply, err)
	}
	gray := Image{RGB: bytes.Repeat([]byte{90}, 6*4*3), Width: 6, Height: 4, MaxSoftTokens: 70}
	r, err := chat.SendContent([]Part{gray, Text("Gray?")}, Options{MaxTokens: 1, Temperature: &zero})
	if err != nil || r.PromptTokens <= 3 {
		t.Fatalf("%+v %v", r, err)
	}
	_, err = chat.SendContent([]Part{Image{Data: []byte("not an image")}}, Options{MaxTokens: 1})
	var e *Error
	if !errors.As(err, &e) || (e.Code != CodeInvalidArgument && e.Code != CodeDataLoss &&
		e.Code != CodeUnimplemented) || e.Message == "" {
		t.Fatal(err)
	}
	_, err = chat.SendContent([]Part{Image{RGB: []byte("123"), Width: 2, Height: 2}},
		Options{MaxTokens: 1})
	if !errors.As(err, &e) || e.Code != CodeInvalidArgument {
		t.Fatal(err)
	}
	_, err = chat.SendContent([]Part{Image{Path: picture, Data: data}}, Options{MaxTokens: 1})
	if !errors.As(err, &e) || e.Code != CodeInvalidArgument {
		t.Fatal(err)
	}
}

func TestTextOnlyModelRefusesImages(t *testing.T) {
	m, err := Load(filepath.Join(fixtures(), "models/tiny-e2b/gemma4_text"), 2,
		filepath.Join(fixtures(), "chat/tiny_tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	if info, err := m.Info(); err != nil || info.Vision {
		t.Fatalf("%+v %v", info, err)
	}
	s, err := NewSession(m, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	picture := filepath.Join(visionFixtures(), "images", "up_200x150.png")
	_, err = s.SendContent([]Part{Image{Path: picture}}, Options{MaxTokens: 1, Temperature: &zero})
	if !errors.Is(err, ErrFailedPrecondition) {
		t.Fatal(err)
	}
}

func audioFixtures() string { return filepath.Join(fixtures(), "audio") }

func TestRecordingsInATurn(t *testing.T) {
	m, err := Load(filepath.Join(audioFixtures(), "tiny-e2b-audio"), 2,
		filepath.Join(visionFixtures(), "tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	if info, err := m.Info(); err != nil || !info.Audio {
		t.Fatalf("%+v %v", info, err)
	}
	chat, err := NewSession(m, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{MaxTokens: 1, Temperature: &zero}
	wav := filepath.Join(audioFixtures(), "wav", "speechlike_27200.wav")
	reply, err := chat.SendContent([]Part{Audio{Path: wav}, Text("Transcribe.")}, opts)
	// 43 soft tokens and the <|audio> / <audio|> pair are in the prompt.
	if err != nil || reply.PromptTokens <= 43+2 {
		t.Fatalf("%+v %v", reply, err)
	}
	// The same recording as bytes: same content, so the first turn's cache is reused.
	data, err := os.ReadFile(wav)
	if err != nil {
		t.Fatal(err)
	}
	again, err := chat.SendContent([]Part{&Audio{Data: data}, Text("Again.")}, opts)
	if err != nil || again.ReusedTokens < reply.PromptTokens-12 {
		t.Fatalf("%+v after %+v: %v", again, reply, err)
	}
	tone := make([]float32, 8000)
	for i := range tone {
		tone[i] = 0.1 * (float32(i%40)/20 - 1)
	}
	r, err := chat.SendContent([]Part{Audio{PCM: tone, SampleRate: 8000}}, opts)
	if err != nil || r.PromptTokens <= 25 {
		t.Fatalf("%+v %v", r, err)
	}
	_, err = chat.SendContent([]Part{Audio{Data: []byte("RIFF....WAVEjunk")}}, opts)
	var e *Error
	if !errors.As(err, &e) || e.Message == "" {
		t.Fatal(err)
	}
	_, err = chat.SendContent([]Part{Audio{}}, opts)
	if !errors.As(err, &e) || e.Code != CodeInvalidArgument {
		t.Fatal(err)
	}
	_, err = chat.SendContent([]Part{Audio{Path: wav, Data: data}}, opts)
	if !errors.As(err, &e) || e.Code != CodeInvalidArgument {
		t.Fatal(err)
	}
}

func TestTextOnlyModelRefusesRecordings(t *testing.T) {
	m, err := Load(filepath.Join(fixtures(), "models/tiny-e2b/gemma4_text"), 2,
		filepath.Join(fixtures(), "chat/tiny_tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	if info, err := m.Info(); err != nil || info.Audio {
		t.Fatalf("%+v %v", info, err)
	}
	s, err := NewSession(m, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	wav := filepath.Join(audioFixtures(), "wav", "speechlike_27200.wav")
	_, err = s.SendContent([]Part{Audio{Path: wav}}, Options{MaxTokens: 1, Temperature: &zero})
	if !errors.Is(err, ErrFailedPrecondition) {
		t.Fatal(err)
	}
}

func loadVideoModel(t *testing.T) *Model {
	v := visionFixtures()
	m, err := Load(filepath.Join(v, "tiny-26b-vision"), 2,
		filepath.Join(v, "tokenizer", "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// videoFrames are the frame files order[i] at i seconds.
func videoFrames(order ...int) []VideoFrame {
	frames := make([]VideoFrame, len(order))
	for i, k := range order {
		path := filepath.Join(visionFixtures(), "video", "frames", fmt.Sprintf("frame_%d.png", k))
		frames[i] = VideoFrame{Image: Image{Path: path}, Seconds: float64(i)}
	}
	return frames
}

// The random test model's free text is bytes that are not UTF-8 (an empty reply); a choice of
// letters makes its greedy pick, which depends on what it saw, visible in the reply text.
const letterSchema = `{"enum": ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m",
	"n", "o", "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z"]}`

func TestVideosInATurn(t *testing.T) {
	m := loadVideoModel(t)
	if info, err := m.Info(); err != nil || !info.Vision {
		t.Fatalf("%+v %v", info, err)
	}
	opts := Options{MaxTokens: 8, Temperature: &zero, JSONSchema: letterSchema}
	sendFresh := func(video Video) *Reply {
		t.Helper()
		s, err := NewSession(m, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		reply, err := s.SendContent([]Part{video, Text("What moves?")}, opts)
		if err != nil {
			t.Fatal(err)
		}
		return reply
	}
	reply := sendFresh(Video{Frames: videoFrames(0, 1, 2)})
	// 3 frames of 63 soft tokens (the default 70 budget), each with its timestamp and the
	// <|image> / <image|> pair.
	if reply.PromptTokens <= 3*65 || len(reply.Text) != 3 || reply.Text[0] != '"' {
		t.Fatalf("%+v", reply)
	}
	// The same frames in a fresh session give the same greedy reply, also as encoded bytes;
	// other frames give other replies.
	again := sendFresh(Video{Frames: videoFrames(0, 1, 2)})
	if again.Text != reply.Text || again.PromptTokens != reply.PromptTokens ||
		again.GeneratedTokens != reply.GeneratedTokens {
		t.Fatalf("%+v then %+v", reply, again)
	}
	asBytes := videoFrames(0, 1, 2)
	for i := range asBytes {
		data, err := os.ReadFile(asBytes[i].Image.Path)
		if err != nil {
			t.Fatal(err)
		}
		asBytes[i].Image = Image{Data: data}
	}
	fromBytes := sendFresh(Video{Frames: asBytes})
	if fromBytes.Text != reply.Text || fromBytes.PromptTokens != reply.PromptTokens {
		t.Fatalf("%+v then %+v", reply, fromBytes)
	}
	var others []string
	for _, order := range [][]int{{2, 1, 0}, {3, 2, 1}, {1, 3, 0}} {
		others = append(others, sendFresh(Video{Frames: videoFrames(order...)}).Text)
	}
	if others[0] == reply.Text && others[1] == reply.Text && others[2] == reply.Text {
		t.Fatalf("other frames, same reply %q: %q", reply.Text, others)
	}
	// A larger per-frame budget puts more soft tokens in the prompt.
	finer := sendFresh(Video{Frames: videoFrames(0, 1, 2), MaxSoftTokensPerFrame: 140})
	if finer.PromptTokens <= reply.PromptTokens+3*40 {
		t.Fatalf("%+v vs %+v", finer, reply)
	}
	// RGB frames, then refusals that leave the conversation as it was.
	chat, err := NewSession(m, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer chat.Close()
	gray := func(level byte, seconds float64) VideoFrame {
		return VideoFrame{Image: Image{RGB: bytes.Repeat([]byte{level}, 8*6*3), Width: 8,
			Height: 6}, Seconds: seconds}
	}
	r, err := chat.SendContent([]Part{&Video{Frames: []VideoFrame{gray(40, 0), gray(200, 1)}}},
		opts)
	if err != nil || r.PromptTokens <= 2*3 {
		t.Fatalf("%+v %v", r, err)
	}
	turns := chat.NumTurns()
	var e *Error
	inOrder := videoFrames(0, 1, 2)
	reversed := []VideoFrame{inOrder[2], inOrder[1], inOrder[0]}
	_, err = chat.SendContent([]Part{Video{Frames: reversed}}, opts)
	if !errors.As(err, &e) || e.Code != CodeInvalidArgument {
		t.Fatal("frames out of time order:", err)
	}
	many := make([]VideoFrame, 33)
	for i := range many {
		many[i] = gray(byte(i), float64(i))
	}
	_, err = chat.SendContent([]Part{Video{Frames: many}}, opts)
	if !errors.As(err, &e) || e.Code != CodeInvalidArgument || !strings.Contains(e.Message, "32") {
		t.Fatal("33 frames:", err)
	}
	if chat.NumTurns() != turns {
		t.Fatalf("%d turns after refusals, %d before", chat.NumTurns(), turns)
	}
}

func TestVideoFilesInATurn(t *testing.T) {
	m := loadVideoModel(t)
	chat, err := NewSession(m, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer chat.Close()
	opts := Options{MaxTokens: 4, Temperature: &zero}
	clip := filepath.Join(visionFixtures(), "video", "testsrc_3.5s.mkv")
	reply, err := chat.SendContent([]Part{Video{Path: clip}, Text("What changes?")}, opts)
	// 0, 1, 2 and 3 s of the 3.5 s clip: four frames' runs.
	if err != nil || reply.PromptTokens <= 4*62 || reply.GeneratedTokens == 0 {
		t.Fatalf("%+v %v", reply, err)
	}
	missing := filepath.Join(visionFixtures(), "video", "missing.mkv")
	_, err = chat.SendContent([]Part{Video{Path: missing}}, opts)
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(e.Message, "missing.mkv") {
		t.Fatal(err)
	}
	_, err = chat.SendContent([]Part{Video{Path: clip, Frames: videoFrames(0)}}, opts)
	if !errors.As(err, &e) || e.Code != CodeInvalidArgument {
		t.Fatal("both a path and frames:", err)
	}
}

func TestBadVideoFramesAreInvalidArguments(t *testing.T) {
	m := loadVideoModel(t)
	s, err := NewSession(m, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	opts := Options{MaxTokens: 1, Temperature: &zero}
	var e *Error
	for _, frame := range []Image{
		{RGB: []byte("123"), Width: 2, Height: 2}, // 3 bytes for 12
		{RGB: make([]byte, 12), Width: 2, Height: 2, MaxSoftTokens: 70},
		{},
	} {
		video := Video{Frames: []VideoFrame{{Image: frame}}}
		_, err = s.SendContent([]Part{video}, opts)
		if !errors.As(err, &e) || e.Code != CodeInvalidArgument ||
			!strings.Contains(e.Message, "video frame 0") {
			t.Fatalf("%+v: %v", frame, err)
		}
	}
	_, err = s.SendContent([]Part{Video{}}, opts)
	if !errors.As(err, &e) || e.Code != CodeInvalidArgument {
		t.Fatal("no frames:", err)
	}
	if s.NumTurns() != 0 {
		t.Fatal(s.NumTurns())
	}
}

func TestTextOnlyModelRefusesVideos(t *testing.T) {
	m, err := Load(filepath.Join(fixtures(), "models/tiny-e2b/gemma4_text"), 2,
		filepath.Join(fixtures(), "chat/tiny_tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSession(m, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{MaxTokens: 1, Temperature: &zero}
	_, err = s.SendContent([]Part{Video{Frames: videoFrames(0, 1, 2)}}, opts)
	if !errors.Is(err, ErrFailedPrecondition) {
		t.Fatal(err)
	}
	clip := filepath.Join(visionFixtures(), "video", "testsrc_3.5s.mkv")
	_, err = s.SendContent([]Part{Video{Path: clip}}, opts)
	if !errors.Is(err, ErrFailedPrecondition) {
		t.Fatal(err)
	}
}

func TestMaxImageTokensSizesTheVisionPlan(t *testing.T) {
	path := filepath.Join(visionFixtures(), "tiny-e2b-vision")
	o := LoadOptions{Threads: 1, TokenizerPath: filepath.Join(fixtures(), "chat/tiny_tokenizer")}
	largest, err := PlanMemory(path, 64, o)
	if err != nil {
		t.Fatal(err)
	}
	small := o
	small.MaxImageTokens = 280
	p, err := PlanMemory(path, 64, small)
	// 10080 patches at 1120 soft tokens against 2520 at 280: [patches, 768] input floats alone.
	if err != nil || largest.EncoderActivations-p.EncoderActivations < (10080-2520)*768*4 ||
		largest.MaxImageTokens != 1120 || p.MaxImageTokens != 280 {
		t.Fatal(largest, p, err)
	}
	bad := o
	bad.MaxImageTokens = 100
	if _, err := PlanMemory(path, 64, bad); !errors.Is(err, &Error{Code: CodeInvalidArgument}) {
		t.Fatal(err)
	}
}

func TestMemoryPlanAndLimit(t *testing.T) {
	path := filepath.Join(fixtures(), "models/tiny-e2b/gemma4")
	o := LoadOptions{Threads: 2, TokenizerPath: filepath.Join(fixtures(), "chat/tiny_tokenizer")}
	plan, err := PlanMemory(path, 4096, o)
	if err != nil || plan.ContextTokens != 4096 || plan.Total == 0 || plan.KVFull == 0 ||
		plan.KVCacheType != "f32" {
		t.Fatal(plan, err)
	}
	m, err := LoadWith(path, o)
	if err != nil {
		t.Fatal(err)
	}
	loaded, _ := m.PlanMemory(4096)
	longer, _ := m.PlanMemory(8192)
	if loaded.Total != plan.Total || longer.KVFull != 2*plan.KVFull {
		t.Fatal(loaded, longer)
	}
	q8 := o
	q8.KVCacheType = "q8_0"
	if p, err := PlanMemory(path, 4096, q8); err != nil || p.KVFull >= plan.KVFull {
		t.Fatal(p, err)
	}
	capped := o
	capped.MemoryLimitBytes = plan.WeightsMapped / 2
	if _, err := LoadWith(path, capped); !errors.Is(err, &Error{Code: CodeResourceExhausted}) {
		t.Fatal("cap not honoured:", err)
	}
	bad := o
	bad.KVCacheType = "q8"
	if _, err := PlanMemory(path, 1, bad); !errors.Is(err, &Error{Code: CodeInvalidArgument}) {
		t.Fatal(err)
	}
}

func TestSpeculativeDecodingKeepsTheReply(t *testing.T) {
	path := filepath.Join(fixtures(), "models/tiny-e2b/gemma4")
	drafting, err := LoadWith(path, LoadOptions{Threads: 2,
		TokenizerPath:  filepath.Join(fixtures(), "chat/tiny_tokenizer"),
		DraftModelPath: filepath.Join(fixtures(), "models/tiny-e2b/assistant"), DraftTokens: 3})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{MaxTokens: 16, Temperature: &zero, NoRepetitionStop: true}
	ps, _ := NewSession(load(t), "", nil)
	plain, err := ps.Send("Hi there, tell me more", opts)
	if err != nil {
		t.Fatal(err)
	}
	ds, _ := NewSession(drafting, "", nil)
	drafted, err := ds.Send("Hi there, tell me more", opts)
	if err != nil {
		t.Fatal(err)
	}
	if drafted.Text != plain.Text || plain.DraftedTokens != 0 || drafted.DraftedTokens == 0 ||
		drafted.AcceptedDraftTokens > drafted.DraftedTokens {
		t.Fatal(plain, drafted)
	}
	plan, err := PlanMemory(path, 256, LoadOptions{
		TokenizerPath:  filepath.Join(fixtures(), "chat/tiny_tokenizer"),
		DraftModelPath: filepath.Join(fixtures(), "models/tiny-e2b/assistant")})
	if err != nil || plan.Drafter == 0 {
		t.Fatal(plan, err)
	}
	none := 0
	opts.DraftTokens = &none
	if off, err := ds.Send("And then?", opts); err != nil || off.DraftedTokens != 0 {
		t.Fatal(off, err)
	}
}
