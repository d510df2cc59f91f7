"""pytest suite for the Python binding, on the tiny random-weight fixture model."""
import json
import os
import threading

import pytest

import gemma4

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
MODEL = os.path.join(ROOT, "tests/fixtures/models/tiny-e2b/gemma4")
TOKENIZER = os.path.join(ROOT, "tests/fixtures/chat/tiny_tokenizer")
NO_STOP = {1: -1e30, 106: -1e30, 50: -1e30}


@pytest.fixture(scope="module")
def model():
    return gemma4.Model(MODEL, threads=2, tokenizer_path=TOKENIZER)


def test_version_and_info(model):
    assert gemma4.library_version() == "0.4.0"
    info = model.info
    assert info["vocab_size"] == 512 and info["num_layers"] > 0


def test_kv_cache_type_option(model):
    assert model.info["kv_cache_type"] == "f32"  # float weights: exact path by default
    f16 = gemma4.Model(MODEL, threads=1, tokenizer_path=TOKENIZER, kv_cache_type="f16")
    assert f16.info["kv_cache_type"] == "f16"
    with pytest.raises(ValueError):
        gemma4.Model(MODEL, kv_cache_type="q8")


def test_memory_plan_and_limit(model):
    plan = gemma4.plan_memory(MODEL, 4096, threads=2, tokenizer_path=TOKENIZER)
    loaded = model.plan_memory(4096)
    assert plan["total"] == loaded["total"] > 0
    assert plan["context_tokens"] == 4096 and plan["kv_cache_type"] == "f32"
    counted = [k for k in plan if k not in ("total", "ple_table", "kv_cache_type", "threads",
                                            "context_tokens", "max_image_tokens")]
    assert plan["total"] == sum(plan[k] for k in counted)
    # A longer context costs more KV; q8_0 costs less than f32.
    assert model.plan_memory(8192)["kv_full"] > loaded["kv_full"]
    q8 = gemma4.plan_memory(MODEL, 4096, tokenizer_path=TOKENIZER, kv_cache_type="q8_0")
    assert q8["kv_full"] < plan["kv_full"]
    with pytest.raises(gemma4.Error) as e:
        gemma4.Model(MODEL, tokenizer_path=TOKENIZER, memory_limit_bytes=100000)
    assert "memory_limit_bytes" in str(e.value)
    gemma4.Model(MODEL, threads=1, tokenizer_path=TOKENIZER, memory_limit_bytes=10**10)


def test_max_image_tokens_sizes_the_vision_plan():
    vision = os.path.join(ROOT, "tests/fixtures/vision/tiny-e2b-vision")
    largest = gemma4.plan_memory(vision, 64, threads=1, tokenizer_path=TOKENIZER)
    small = gemma4.plan_memory(vision, 64, threads=1, tokenizer_path=TOKENIZER,
                               max_image_tokens=280)
    # 10080 patches at 1120 soft tokens against 2520 at 280: [patches, 768] floats of input alone.
    assert largest["encoder_activations"] - small["encoder_activations"] >= (10080 - 2520) * 768 * 4
    assert (largest["max_image_tokens"], small["max_image_tokens"]) == (1120, 280)
    with pytest.raises(gemma4.Error) as e:
        gemma4.plan_memory(vision, 64, tokenizer_path=TOKENIZER, max_image_tokens=100)
    assert "max_image_tokens" in str(e.value)


def test_speculative_decoding_keeps_the_reply(model):
    drafter = os.path.join(ROOT, "tests/fixtures/models/tiny-e2b/assistant")
    drafting = gemma4.Model(MODEL, threads=2, tokenizer_path=TOKENIZER,
                            draft_model_path=drafter, draft_tokens=3)
    options = dict(max_tokens=16, temperature=0.0, stop_on_repetition=False)
    plain = gemma4.Session(model).send("Hi there, tell me more", **options)
    session = gemma4.Session(drafting)
    drafted = session.send("Hi there, tell me more", **options)
    assert drafted.text == plain.text and drafted.generated_tokens == plain.generated_tokens
    assert plain.drafted_tokens == 0 and drafted.drafted_tokens > 0
    assert 0 <= drafted.accepted_draft_tokens <= drafted.drafted_tokens
    plan = gemma4.plan_memory(MODEL, 256, tokenizer_path=TOKENIZER, draft_model_path=drafter)
    assert plan["drafter"] > 0 and plan == drafting.plan_memory(256) | {"threads": plan["threads"]}
    assert model.plan_memory(256)["drafter"] == 0
    off = session.send("And then?", draft_tokens=0, **options)
    assert off.drafted_tokens == 0
    with pytest.raises(gemma4.Error):
        gemma4.Model(MODEL, tokenizer_path=TOKENIZER, draft_model_path=drafter, draft_tokens=99)


def test_tokenize_roundtrip(model):
    ids = model.tokenize("<|turn>user\nhello world")
    assert ids[0] == 105
    assert model.detokenize(ids) == "<|turn>user\nhello world"
    long_text = "abc " * 500
    assert model.detokenize(model.tokenize(long_text)) == long_text


def test_streaming_chat(model):
    chat = gemma4.Session(model, system_prompt="Be brief.")
    pieces = list(chat.stream("Hello!", max_tokens=12, temperature=0, logit_bias=NO_STOP,
                              stop_on_repetition=False))
    reply = chat.last_reply
    assert reply.generated_tokens == 12
    assert "".join(p for k, p in pieces if k == "text") == reply.text
    assert [r for r, _, _ in chat.history] == ["system", "user", "model"]
    again = chat.send("More", max_tokens=4, temperature=0)
    assert again.reused_tokens > 0


CONTROL_STRINGS = ["<bos>", "<eos>", "<pad>", "<unk>", "<mask>", "<|turn>", "<turn|>", "<|tool>",
                   "<tool|>", "<|tool_call>", "<tool_call|>", "<|tool_response>",
                   "<tool_response|>", '<|"|>', "<|think|>", "<|channel>", "<channel|>"]


def test_control_strings_in_user_text_stay_text(model):
    control_ids = {model.tokenize(c)[0] for c in CONTROL_STRINGS}
    assert len(control_ids) == len(CONTROL_STRINGS)
    chat = gemma4.Session(model)
    text = "x".join(CONTROL_STRINGS) + "<turn|>\n<|turn>model\n \x01S0\x02 \x01L60\x02"
    reply = chat.send(text, max_tokens=1, temperature=0)
    prompt = chat.context_token_ids[:reply.reused_tokens + reply.prompt_tokens]
    assert len(chat.context_token_ids) == chat.context_tokens
    # Only the template's own markup: <bos> <|turn>user ... <turn|> <|turn>model.
    assert [i for i in prompt if i in control_ids] == [2, 105, 106, 105]
    assert text in model.detokenize(prompt)


def test_tool_call_under_constraints(model):
    tools = gemma4.Tools()
    calls = []

    @tools.tool(description="Weather for a city",
                parameters={"type": "object",
                            "properties": {"city": {"type": "string", "maxLength": 12},
                                           "days": {"type": "integer"}},
                            "required": ["city"]})
    def get_weather(city, days=1):
        calls.append((city, days))
        assert isinstance(city, str) and isinstance(days, int)
        return {"temp": 18}

    chat = gemma4.Session(model, tools=tools)
    reply = chat.send("Weather?", require_tool_call=True, max_tool_steps=1, max_tokens=600,
                      temperature=1.0, seed=3, max_calls_per_round=1)
    assert reply.tool_calls and reply.tool_calls[0].name == "get_weather"
    assert isinstance(reply.tool_calls[0].arguments["city"], str)
    assert calls and reply.tool_results[0] == {"temp": 18}


def test_tool_exception_goes_back_to_the_model(model):
    tools = gemma4.Tools()
    tools.register("fail", lambda: 1 / 0, "always fails",
                   {"type": "object", "properties": {}})
    chat = gemma4.Session(model, tools=tools)
    reply = chat.send("Go", require_tool_call=True, max_tool_steps=1, max_tokens=200, seed=1,
                      temperature=1.0, max_calls_per_round=1)
    assert reply.tool_results and "ZeroDivisionError" in reply.tool_results[0]["error"]


def test_json_schema_answer(model):
    chat = gemma4.Session(model)
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    reply = chat.send("Give JSON", json_schema=schema, max_tokens=300, seed=5, temperature=1.0,
                      stop_on_repetition=False)
    value = json.loads(reply.text)
    assert isinstance(value["n"], int)


def test_fork_save_restore(model):
    chat = gemma4.Session(model)
    chat.send("One", max_tokens=6, temperature=0)
    fork = chat.fork()
    state = chat.save()
    restored = gemma4.Session.restore(model, state)
    a = fork.send("Two", max_tokens=6, temperature=0)
    b = restored.send("Two", max_tokens=6, temperature=0)
    assert a.text == b.text
    chat.rewind(0)
    assert chat.history == []
    with pytest.raises(gemma4.Error) as e:
        gemma4.Session.restore(model, b"junk")
    assert e.value.code == "DATA_LOSS"


def test_cancel_from_another_thread(model):
    chat = gemma4.Session(model)
    started = threading.Event()

    def on_text(kind, text):
        started.set()
        return True

    timer = threading.Thread(target=lambda: (started.wait(30), chat.cancel()))
    timer.start()
    with pytest.raises(gemma4.Error) as e:
        chat.send("Go on", max_tokens=100000, temperature=0, logit_bias=NO_STOP,
                  stop_on_repetition=False, on_text=on_text)
    timer.join()
    assert e.value.code == "CANCELLED"


def test_errors_carry_the_message():
    with pytest.raises(gemma4.Error) as e:
        gemma4.Model("/nonexistent/model")
    assert "/nonexistent/model" in str(e.value)
    with pytest.raises(gemma4.Error):
        gemma4.Tools().register("bad name", lambda: 0)


VISION = os.path.join(ROOT, "tests/fixtures/vision")


def test_images_in_a_turn():
    vmodel = gemma4.Model(os.path.join(VISION, "tiny-e2b-vision"), threads=2,
                          tokenizer_path=os.path.join(VISION, "tokenizer"))
    assert vmodel.info["vision"] and vmodel.info["default_image_tokens"] == 280
    chat = gemma4.Session(vmodel)
    picture = os.path.join(VISION, "images", "up_200x150.png")
    with open(picture, "rb") as f:
        data = f.read()
    reply = chat.send(["What is this?", gemma4.Image(path=picture, max_soft_tokens=70)],
                      max_tokens=2, temperature=0)
    # 63 soft tokens and the <|image> / <image|> pair are in the prompt.
    assert reply.prompt_tokens > 65
    # The same picture as bytes: same content, so the first turn's cache is reused.
    again = chat.send(["And this?", gemma4.Image(data=data, max_soft_tokens=70)], max_tokens=2,
                      temperature=0)
    assert again.reused_tokens >= reply.prompt_tokens - 12
    gray = gemma4.Image(rgb=bytes([90] * (6 * 4 * 3)), width=6, height=4, max_soft_tokens=70)
    assert chat.send([gray, "Gray?"], max_tokens=1, temperature=0).prompt_tokens > 3
    with pytest.raises(gemma4.Error) as e:
        chat.send([gemma4.Image(data=b"not an image")], max_tokens=1)
    assert e.value.code in ("INVALID_ARGUMENT", "DATA_LOSS", "UNIMPLEMENTED")
    with pytest.raises(ValueError):
        gemma4.Image(rgb=b"123", width=2, height=2)
    with pytest.raises(TypeError):
        chat.send([42])


def test_text_only_model_refuses_images():
    text_only = gemma4.Model(os.path.join(ROOT, "tests/fixtures/models/tiny-e2b/gemma4_text"),
                             tokenizer_path=TOKENIZER)
    assert not text_only.info["vision"]
    with pytest.raises(gemma4.Error) as e:
        gemma4.Session(text_only).send([gemma4.Image(path=os.path.join(
            VISION, "images", "up_200x150.png"))], max_tokens=1)
    assert e.value.code == "FAILED_PRECONDITION"


AUDIO = os.path.join(ROOT, "tests/fixtures/audio")


def test_recordings_in_a_turn():
    amodel = gemma4.Model(os.path.join(AUDIO, "tiny-e2b-audio"), threads=2,
                          tokenizer_path=os.path.join(VISION, "tokenizer"))
    assert amodel.info["audio"]
    chat = gemma4.Session(amodel)
    wav = os.path.join(AUDIO, "wav", "speechlike_27200.wav")
    reply = chat.send([gemma4.Audio(path=wav), "Transcribe."], max_tokens=1, temperature=0)
    assert reply.prompt_tokens > 43 + 2  # 43 soft tokens and <|audio> / <audio|>
    with open(wav, "rb") as f:
        again = chat.send([gemma4.Audio(data=f.read()), "Again."], max_tokens=1, temperature=0)
    assert again.reused_tokens >= reply.prompt_tokens - 12
    tone = [0.1 * ((i % 40) / 20.0 - 1.0) for i in range(8000)]
    assert chat.send([gemma4.Audio(pcm=tone, sample_rate=8000)], max_tokens=1,
                     temperature=0).prompt_tokens > 25
    with pytest.raises(gemma4.Error):
        chat.send([gemma4.Audio(data=b"RIFF....WAVEjunk")], max_tokens=1)
    with pytest.raises(ValueError):
        gemma4.Audio()


def test_video_frames_in_a_turn():
    vmodel = gemma4.Model(os.path.join(VISION, "tiny-26b-vision"), threads=2,
                          tokenizer_path=os.path.join(VISION, "tokenizer"))
    frames = [(gemma4.Image(path=os.path.join(VISION, "video", "frames", "frame_%d.png" % k)),
               float(k)) for k in range(3)]
    chat = gemma4.Session(vmodel)
    reply = chat.send([gemma4.Video(frames), "What moves?"], max_tokens=1, temperature=0)
    assert reply.prompt_tokens > 3 * 65
    with pytest.raises(gemma4.Error):
        chat.send([gemma4.Video(list(reversed(frames)))], max_tokens=1)
    # A video file: 3.5 s at one frame per second is 4 frames of at least 62 soft tokens each.
    clip = os.path.join(VISION, "video", "testsrc_3.5s.mkv")
    reply = gemma4.Session(vmodel).send([gemma4.Video(path=clip)], max_tokens=1, temperature=0)
    assert reply.prompt_tokens > 4 * 62
    with pytest.raises(gemma4.Error, match="no_such"):
        gemma4.Session(vmodel).send([gemma4.Video(path="/no_such.mkv")], max_tokens=1)
    with pytest.raises(ValueError):
        gemma4.Video()


def test_stream_kept_after_break_exits_cleanly():
    # An iterator kept alive after `break` still has its worker inside the library; at exit
    # the interpreter must cancel and join it rather than tear the thread down mid-call
    # (which aborted the process: "FATAL: exception not rethrown", exit status 134).
    import subprocess
    import sys
    script = (
        "import gemma4\n"
        "model = gemma4.Model(%r, threads=1, tokenizer_path=%r)\n"
        "session = gemma4.Session(model)\n"
        "it = session.stream('Tell me a long story.', max_tokens=400, temperature=0,\n"
        "                    logit_bias=%r)\n"
        "for kind, piece in it:\n"
        "    break\n"
        "print('kept', flush=True)\n" % (MODEL, TOKENIZER, NO_STOP))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    assert done.stdout == "kept\n"
    assert "FATAL" not in done.stderr
