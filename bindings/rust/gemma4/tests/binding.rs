//! The Rust binding on the tiny random-weight fixture model.
use gemma4::{
    status, Audio, Generate, Image, ImageSource, LoadOptions, Model, Part, Session, Tools, Video,
    VideoFrame,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn fixtures() -> String {
    format!("{}/../../../tests/fixtures", env!("CARGO_MANIFEST_DIR"))
}

fn model() -> Model {
    let f = fixtures();
    Model::load(
        &format!("{}/models/tiny-e2b/gemma4", f),
        2,
        Some(&format!("{}/chat/tiny_tokenizer", f)),
    )
    .expect("model loads")
}

#[test]
fn info_and_tokenizer() {
    let m = model();
    assert_eq!(gemma4::version(), "0.4.0");
    assert_eq!(m.info().unwrap().vocab_size, 512);
    let ids = m.tokenize("<|turn>user\nhello").unwrap();
    assert_eq!(ids[0], 105);
    assert_eq!(m.detokenize(&ids).unwrap(), "<|turn>user\nhello");
}

#[test]
fn streaming_chat_fork_and_restore() {
    let m = model();
    let mut s = Session::new(&m, Some("Be brief."), None).unwrap();
    let opts = Generate {
        max_tokens: 10,
        temperature: Some(0.0),
        banned: vec![1, 106, 50],
        stop_on_repetition: false,
        ..Default::default()
    };
    let mut streamed = String::new();
    let r = s
        .send_streaming("Hello!", &opts, |thought, piece| {
            if !thought {
                streamed.push_str(piece);
            }
            true
        })
        .unwrap();
    assert_eq!(r.text, streamed);
    assert_eq!(r.generated_tokens, 10);
    assert_eq!(s.num_turns(), 3);
    // The context: <bos> first, the reply's prompt and generated ids all there.
    let ids = s.context_token_ids().unwrap();
    assert_eq!(ids[0], 2);
    assert!(ids.len() as i64 >= (r.reused_tokens + r.prompt_tokens) as i64);
    let mut fork = s.fork().unwrap();
    let state = s.save().unwrap();
    let mut restored = Session::restore(&m, &state, None).unwrap();
    let a = fork.send("More", &opts).unwrap();
    let b = restored.send("More", &opts).unwrap();
    assert_eq!(a.text, b.text);
    assert!(b.reused_tokens > 0);
    assert!(Session::restore(&m, b"junk", None).is_err());
}

#[test]
fn tool_call_under_constraints() {
    let m = model();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let mut tools = Tools::new().unwrap();
    tools
        .register(
            "get_weather",
            "Weather for a city",
            r#"{"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
                "required": ["city"]}"#,
            move |args| {
                seen.fetch_add(1, Ordering::SeqCst);
                if args.contains("\"city\"") {
                    Ok(r#"{"temp": 18}"#.to_string())
                } else {
                    Err("missing city".to_string())
                }
            },
        )
        .unwrap();
    let mut s = Session::new(&m, None, Some(&tools)).unwrap();
    let opts = Generate {
        max_tokens: 600,
        temperature: Some(1.0),
        seed: 4,
        require_tool_call: true,
        max_tool_steps: 1,
        max_calls_per_round: 1,
        ..Default::default()
    };
    let r = s.send("Weather?", &opts).unwrap();
    assert_eq!(r.tool_calls[0].name, "get_weather");
    assert!(r.tool_calls[0].arguments_json.contains("\"city\":\""));
    assert_eq!(r.tool_results[0], r#"{"temp":18}"#);
    assert!(calls.load(Ordering::SeqCst) >= 1);
}

#[test]
fn cancel_from_another_thread() {
    let m = model();
    let mut s = Session::new(&m, None, None).unwrap();
    let c = s.canceller();
    let opts = Generate {
        max_tokens: 100000,
        temperature: Some(0.0),
        banned: vec![1, 106, 50],
        stop_on_repetition: false,
        ..Default::default()
    };
    let started = Arc::new(AtomicUsize::new(0));
    let flag = started.clone();
    let t = std::thread::spawn(move || {
        while flag.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        c.cancel();
    });
    let r = s.send_streaming("Go", &opts, |_, _| {
        started.store(1, Ordering::SeqCst);
        true
    });
    t.join().unwrap();
    assert_eq!(r.unwrap_err().code, 1);
}

#[test]
fn errors_carry_messages() {
    let e = Model::load("/nonexistent/model", 1, None).err().unwrap();
    assert!(e.message.contains("/nonexistent/model"));
    let mut tools = Tools::new().unwrap();
    assert!(tools
        .register("bad name", "", "{}", |_| Ok(String::new()))
        .is_err());
}

fn vision() -> String {
    format!("{}/vision", fixtures())
}

#[test]
fn images_in_a_turn() {
    let v = vision();
    let m = Model::load(
        &format!("{}/tiny-e2b-vision", v),
        2,
        Some(&format!("{}/tokenizer", v)),
    )
    .expect("vision model loads");
    let info = m.info().unwrap();
    assert!(info.vision);
    assert_eq!(info.default_image_tokens, 280);
    let mut chat = Session::new(&m, None, None).unwrap();
    let picture = format!("{}/images/up_200x150.png", v);
    let data = std::fs::read(&picture).unwrap();
    let opts = |max_tokens| Generate {
        max_tokens,
        temperature: Some(0.0),
        ..Default::default()
    };
    let reply = chat
        .send_content(
            &[
                "What is this?".into(),
                Image::from_path(&picture).max_soft_tokens(70).into(),
            ],
            &opts(2),
        )
        .unwrap();
    // 63 soft tokens and the <|image> / <image|> pair are in the prompt.
    assert!(reply.prompt_tokens > 65, "{:?}", reply);
    // The same picture as bytes: same content, so the first turn's cache is reused.
    let again = chat
        .send_content(
            &[
                Part::Text("And this?".to_string()),
                Part::Image(Image::from_bytes(data).max_soft_tokens(70)),
            ],
            &opts(2),
        )
        .unwrap();
    assert!(
        again.reused_tokens >= reply.prompt_tokens - 12,
        "{:?} after {:?}",
        again,
        reply
    );
    let gray = Image::from_rgb(vec![90u8; 6 * 4 * 3], 6, 4)
        .unwrap()
        .max_soft_tokens(70);
    let r = chat
        .send_content(&[gray.into(), "Gray?".into()], &opts(1))
        .unwrap();
    assert!(r.prompt_tokens > 3);
    let e = chat
        .send_content(&[Image::from_bytes(&b"not an image"[..]).into()], &opts(1))
        .unwrap_err();
    assert!(
        [
            status::INVALID_ARGUMENT,
            status::DATA_LOSS,
            status::UNIMPLEMENTED
        ]
        .contains(&e.code),
        "{}",
        e
    );
    assert!(!e.message.is_empty());
    let e = Image::from_rgb(&b"123"[..], 2, 2).unwrap_err();
    assert_eq!(e.code, status::INVALID_ARGUMENT);
}

#[test]
fn text_only_model_refuses_images() {
    let f = fixtures();
    let m = Model::load(
        &format!("{}/models/tiny-e2b/gemma4_text", f),
        2,
        Some(&format!("{}/chat/tiny_tokenizer", f)),
    )
    .expect("model loads");
    assert!(!m.info().unwrap().vision);
    let mut s = Session::new(&m, None, None).unwrap();
    let picture = Image::from_path(format!("{}/images/up_200x150.png", vision()));
    let opts = Generate {
        max_tokens: 1,
        temperature: Some(0.0),
        ..Default::default()
    };
    let e = s.send_content(&[picture.into()], &opts).unwrap_err();
    assert_eq!(e.code, status::FAILED_PRECONDITION, "{}", e);
}

fn audio() -> String {
    format!("{}/audio", fixtures())
}

#[test]
fn recordings_in_a_turn() {
    let m = Model::load(
        &format!("{}/tiny-e2b-audio", audio()),
        2,
        Some(&format!("{}/tokenizer", vision())),
    )
    .expect("audio model loads");
    assert!(m.info().unwrap().audio);
    let mut chat = Session::new(&m, None, None).unwrap();
    let wav = format!("{}/wav/speechlike_27200.wav", audio());
    let opts = Generate {
        max_tokens: 1,
        temperature: Some(0.0),
        ..Default::default()
    };
    let reply = chat
        .send_content(
            &[Audio::from_path(&wav).into(), "Transcribe.".into()],
            &opts,
        )
        .unwrap();
    // 43 soft tokens and the <|audio> / <audio|> pair are in the prompt.
    assert!(reply.prompt_tokens > 43 + 2, "{:?}", reply);
    // The same recording as bytes: same content, so the first turn's cache is reused.
    let data = std::fs::read(&wav).unwrap();
    let again = chat
        .send_content(
            &[
                Part::Audio(Audio::from_bytes(data)),
                Part::Text("Again.".to_string()),
            ],
            &opts,
        )
        .unwrap();
    assert!(
        again.reused_tokens >= reply.prompt_tokens - 12,
        "{:?} after {:?}",
        again,
        reply
    );
    let tone: Vec<f32> = (0..8000)
        .map(|i| 0.1 * ((i % 40) as f32 / 20.0 - 1.0))
        .collect();
    let r = chat
        .send_content(&[Audio::from_pcm(tone, 8000).into()], &opts)
        .unwrap();
    assert!(r.prompt_tokens > 25, "{:?}", r);
    let e = chat
        .send_content(&[Audio::from_bytes(&b"RIFF....WAVEjunk"[..]).into()], &opts)
        .unwrap_err();
    assert!(!e.message.is_empty(), "{}", e);
}

#[test]
fn text_only_model_refuses_recordings() {
    let f = fixtures();
    let m = Model::load(
        &format!("{}/models/tiny-e2b/gemma4_text", f),
        2,
        Some(&format!("{}/chat/tiny_tokenizer", f)),
    )
    .expect("model loads");
    assert!(!m.info().unwrap().audio);
    let mut s = Session::new(&m, None, None).unwrap();
    let wav = Audio::from_path(format!("{}/wav/speechlike_27200.wav", audio()));
    let opts = Generate {
        max_tokens: 1,
        temperature: Some(0.0),
        ..Default::default()
    };
    let e = s.send_content(&[wav.into()], &opts).unwrap_err();
    assert_eq!(e.code, status::FAILED_PRECONDITION, "{}", e);
}

fn video_model() -> Model {
    Model::load(
        &format!("{}/tiny-26b-vision", vision()),
        2,
        Some(&format!("{}/tokenizer/tokenizer.json", vision())),
    )
    .expect("26B-layout vision model loads")
}

// Frame files `order[i]` at i seconds.
fn video_frames(order: &[usize]) -> Vec<VideoFrame> {
    let frame = |(i, k): (usize, &usize)| {
        let path = format!("{}/video/frames/frame_{}.png", vision(), k);
        VideoFrame::from_path(path, i as f64)
    };
    order.iter().enumerate().map(frame).collect()
}

// The random test model's free text is bytes that are not UTF-8 (an empty reply); a choice of
// letters makes its greedy pick, which depends on what it saw, visible in the reply text.
const LETTER_SCHEMA: &str = r#"{"enum": ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k",
    "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z"]}"#;

#[test]
fn videos_in_a_turn() {
    let m = video_model();
    assert!(m.info().unwrap().vision);
    let opts = Generate {
        max_tokens: 8,
        temperature: Some(0.0),
        json_schema: Some(LETTER_SCHEMA),
        ..Default::default()
    };
    let turn = |video: Video| vec![video.into(), Part::from("What moves?")];
    let mut chat = Session::new(&m, None, None).unwrap();
    let reply = chat
        .send_content(&turn(Video::from_frames(video_frames(&[0, 1, 2]))), &opts)
        .unwrap();
    // 3 frames of 63 soft tokens (the default 70 budget), each with its timestamp and the
    // <|image> / <image|> pair.
    assert!(reply.prompt_tokens > 3 * 65, "{:?}", reply);
    assert!(
        reply.text.len() == 3 && reply.text.starts_with('"'),
        "{:?}",
        reply
    );
    // The same frames in a fresh session give the same greedy reply, also as encoded bytes;
    // other frames give other replies.
    let send_fresh = |video: Video| {
        let mut fresh = Session::new(&m, None, None).unwrap();
        fresh.send_content(&turn(video), &opts).unwrap()
    };
    let again = send_fresh(Video::from_frames(video_frames(&[0, 1, 2])));
    assert_eq!(
        (&again.text, again.prompt_tokens, again.generated_tokens),
        (&reply.text, reply.prompt_tokens, reply.generated_tokens)
    );
    let as_bytes = video_frames(&[0, 1, 2])
        .into_iter()
        .map(|frame| match frame.image {
            ImageSource::Path(path) => {
                VideoFrame::from_bytes(std::fs::read(path).unwrap(), frame.seconds)
            }
            _ => unreachable!(),
        });
    let from_bytes = send_fresh(Video::from_frames(as_bytes));
    assert_eq!(
        (&from_bytes.text, from_bytes.prompt_tokens),
        (&reply.text, reply.prompt_tokens)
    );
    let others: Vec<String> = [[2, 1, 0], [3, 2, 1], [1, 3, 0]]
        .iter()
        .map(|order| send_fresh(Video::from_frames(video_frames(order))).text)
        .collect();
    assert!(
        others.iter().any(|text| *text != reply.text),
        "{:?} vs {:?}",
        others,
        reply
    );
    // A larger per-frame budget puts more soft tokens in the prompt.
    let finer =
        send_fresh(Video::from_frames(video_frames(&[0, 1, 2])).max_soft_tokens_per_frame(140));
    assert!(
        finer.prompt_tokens > reply.prompt_tokens + 3 * 40,
        "{:?} vs {:?}",
        finer,
        reply
    );
    // RGB frames.
    let gray = |level: u8, seconds| VideoFrame::from_rgb(vec![level; 8 * 6 * 3], 8, 6, seconds);
    let r = chat
        .send_content(
            &[Video::from_frames([gray(40, 0.0).unwrap(), gray(200, 1.0).unwrap()]).into()],
            &opts,
        )
        .unwrap();
    assert!(r.prompt_tokens > 2 * 3, "{:?}", r);
    // Frames out of time order are refused.
    let mut reversed = video_frames(&[0, 1, 2]);
    reversed.reverse();
    let e = chat
        .send_content(&[Video::from_frames(reversed).into()], &opts)
        .unwrap_err();
    assert_eq!(e.code, status::INVALID_ARGUMENT, "{}", e);
    // At most 32 frames.
    let many = (0..33).map(|k| gray(k as u8, k as f64).unwrap());
    let e = chat
        .send_content(&[Video::from_frames(many).into()], &opts)
        .unwrap_err();
    assert_eq!(e.code, status::INVALID_ARGUMENT, "{}", e);
    assert!(e.message.contains("32"), "{}", e);
}

#[test]
fn video_files_in_a_turn() {
    let m = video_model();
    let clip = format!("{}/video/testsrc_3.5s.mkv", vision());
    let opts = Generate {
        max_tokens: 4,
        temperature: Some(0.0),
        ..Default::default()
    };
    let mut chat = Session::new(&m, None, None).unwrap();
    let reply = chat
        .send_content(
            &[Video::from_path(&clip).into(), "What changes?".into()],
            &opts,
        )
        .unwrap();
    // 0, 1, 2 and 3 s of the 3.5 s clip: four frames' runs.
    assert!(reply.prompt_tokens > 4 * 62, "{:?}", reply);
    assert!(reply.generated_tokens > 0, "{:?}", reply);
    let e = chat
        .send_content(
            &[Video::from_path(format!("{}/video/missing.mkv", vision())).into()],
            &opts,
        )
        .unwrap_err();
    assert!(e.message.contains("missing.mkv"), "{}", e);
}

#[test]
fn bad_video_frames_are_invalid_arguments() {
    let e = VideoFrame::from_rgb(&b"123"[..], 2, 2, 0.0).unwrap_err();
    assert_eq!(e.code, status::INVALID_ARGUMENT);
    // A frame built by hand with the wrong pixel count is refused when the turn is built.
    let m = video_model();
    let mut s = Session::new(&m, None, None).unwrap();
    let frame = VideoFrame {
        image: ImageSource::Rgb {
            pixels: vec![0u8; 2 * 2 * 3 - 1],
            width: 2,
            height: 2,
        },
        seconds: 0.0,
    };
    let e = s
        .send_content(&[Video::from_frames([frame]).into()], &Generate::default())
        .unwrap_err();
    assert_eq!(e.code, status::INVALID_ARGUMENT, "{}", e);
    assert_eq!(s.num_turns(), 0);
}

#[test]
fn text_only_model_refuses_videos() {
    let f = fixtures();
    let m = Model::load(
        &format!("{}/models/tiny-e2b/gemma4_text", f),
        2,
        Some(&format!("{}/chat/tiny_tokenizer", f)),
    )
    .expect("model loads");
    assert!(!m.info().unwrap().vision);
    let mut s = Session::new(&m, None, None).unwrap();
    let opts = Generate {
        max_tokens: 1,
        temperature: Some(0.0),
        ..Default::default()
    };
    let e = s
        .send_content(
            &[Video::from_frames(video_frames(&[0, 1, 2])).into()],
            &opts,
        )
        .unwrap_err();
    assert_eq!(e.code, status::FAILED_PRECONDITION, "{}", e);
    let clip = format!("{}/video/testsrc_3.5s.mkv", vision());
    let e = s
        .send_content(&[Video::from_path(clip).into()], &opts)
        .unwrap_err();
    assert_eq!(e.code, status::FAILED_PRECONDITION, "{}", e);
}

#[test]
fn max_image_tokens_sizes_the_vision_plan() {
    let path = format!("{}/tiny-e2b-vision", vision());
    let options = LoadOptions {
        threads: 1,
        tokenizer_path: Some(format!("{}/chat/tiny_tokenizer", fixtures())),
        ..Default::default()
    };
    let largest = gemma4::plan_memory(&path, 64, &options).unwrap();
    let small = LoadOptions {
        max_image_tokens: 280,
        ..options.clone()
    };
    let small = gemma4::plan_memory(&path, 64, &small).unwrap();
    // 10080 patches at 1120 soft tokens against 2520 at 280: [patches, 768] input floats alone.
    assert!(largest.encoder_activations - small.encoder_activations >= (10080 - 2520) * 768 * 4);
    assert_eq!((largest.max_image_tokens, small.max_image_tokens), (1120, 280));
    let bad = LoadOptions {
        max_image_tokens: 100,
        ..options
    };
    let err = gemma4::plan_memory(&path, 64, &bad).err().expect("refused");
    assert_eq!(err.code, status::INVALID_ARGUMENT);
}

#[test]
fn memory_plan_and_limit() {
    let f = fixtures();
    let path = format!("{}/models/tiny-e2b/gemma4", f);
    let options = LoadOptions {
        threads: 2,
        tokenizer_path: Some(format!("{}/chat/tiny_tokenizer", f)),
        ..Default::default()
    };
    let plan = gemma4::plan_memory(&path, 4096, &options).unwrap();
    assert_eq!(plan.context_tokens, 4096);
    assert!(plan.total > 0 && plan.kv_full > 0);
    let m = Model::load_with(&path, &options).unwrap();
    assert_eq!(m.plan_memory(4096).unwrap().total, plan.total);
    assert_eq!(m.plan_memory(8192).unwrap().kv_full, 2 * plan.kv_full);
    let q8 = LoadOptions {
        kv_cache_type: Some("q8_0".into()),
        ..options.clone()
    };
    assert!(gemma4::plan_memory(&path, 4096, &q8).unwrap().kv_full < plan.kv_full);
    let capped = LoadOptions {
        memory_limit_bytes: plan.weights_mapped / 2,
        ..options.clone()
    };
    let err = Model::load_with(&path, &capped).err().expect("refused");
    assert_eq!(err.code, status::RESOURCE_EXHAUSTED);
    let bad = LoadOptions {
        kv_cache_type: Some("q8".into()),
        ..options
    };
    assert_eq!(
        gemma4::plan_memory(&path, 1, &bad).err().unwrap().code,
        status::INVALID_ARGUMENT
    );
}

#[test]
fn speculative_decoding_keeps_the_reply() {
    let f = fixtures();
    let path = format!("{}/models/tiny-e2b/gemma4", f);
    let drafting = Model::load_with(
        &path,
        &LoadOptions {
            threads: 2,
            tokenizer_path: Some(format!("{}/chat/tiny_tokenizer", f)),
            draft_model_path: Some(format!("{}/models/tiny-e2b/assistant", f)),
            draft_tokens: 3,
            ..Default::default()
        },
    )
    .unwrap();
    let plan = gemma4::plan_memory(
        &path,
        256,
        &LoadOptions {
            tokenizer_path: Some(format!("{}/chat/tiny_tokenizer", f)),
            draft_model_path: Some(format!("{}/models/tiny-e2b/assistant", f)),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(plan.drafter > 0);
    assert_eq!(drafting.plan_memory(256).unwrap().drafter, plan.drafter);
    let opts = Generate {
        max_tokens: 16,
        temperature: Some(0.0),
        stop_on_repetition: false,
        ..Default::default()
    };
    let plain = Session::new(&model(), None, None)
        .unwrap()
        .send("Hi there, tell me more", &opts)
        .unwrap();
    let mut s = Session::new(&drafting, None, None).unwrap();
    let drafted = s.send("Hi there, tell me more", &opts).unwrap();
    assert_eq!(drafted.text, plain.text);
    assert_eq!(plain.drafted_tokens, 0);
    assert!(drafted.drafted_tokens > 0);
    assert!(drafted.accepted_draft_tokens <= drafted.drafted_tokens);
    let off = Generate {
        draft_tokens: Some(0),
        ..opts
    };
    assert_eq!(s.send("And then?", &off).unwrap().drafted_tokens, 0);
}
