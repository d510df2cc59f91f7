//! Safe wrapper over gemma4's C API: `Model` (Send + Sync, shared through `Arc`), `Session`
//! (Send, one thread at a time; `Canceller` cancels from any thread), `Tools` with Rust
//! closures, `Result<_, Error>` everywhere, and `Drop` for every handle. A user turn holding
//! images, recordings or videos is a list of `Part`s (text, `Image`s, `Audio` and `Video`s)
//! sent with `Session::send_content`.
use gemma4_sys as sys;
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::Arc;

/// A failure reported by the library: its status code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "gemma4 error {}: {}", self.code, self.message)
    }
}
impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Status codes of `Error::code` (`gemma4_status`).
pub mod status {
    use gemma4_sys as sys;
    pub const CANCELLED: i32 = sys::GEMMA4_CANCELLED;
    pub const UNKNOWN: i32 = sys::GEMMA4_UNKNOWN;
    pub const INVALID_ARGUMENT: i32 = sys::GEMMA4_INVALID_ARGUMENT;
    pub const DEADLINE_EXCEEDED: i32 = sys::GEMMA4_DEADLINE_EXCEEDED;
    pub const NOT_FOUND: i32 = sys::GEMMA4_NOT_FOUND;
    pub const ALREADY_EXISTS: i32 = sys::GEMMA4_ALREADY_EXISTS;
    pub const PERMISSION_DENIED: i32 = sys::GEMMA4_PERMISSION_DENIED;
    pub const RESOURCE_EXHAUSTED: i32 = sys::GEMMA4_RESOURCE_EXHAUSTED;
    pub const FAILED_PRECONDITION: i32 = sys::GEMMA4_FAILED_PRECONDITION;
    pub const ABORTED: i32 = sys::GEMMA4_ABORTED;
    pub const OUT_OF_RANGE: i32 = sys::GEMMA4_OUT_OF_RANGE;
    pub const UNIMPLEMENTED: i32 = sys::GEMMA4_UNIMPLEMENTED;
    pub const INTERNAL: i32 = sys::GEMMA4_INTERNAL;
    pub const UNAVAILABLE: i32 = sys::GEMMA4_UNAVAILABLE;
    pub const DATA_LOSS: i32 = sys::GEMMA4_DATA_LOSS;
}

fn last_error(code: i32) -> Error {
    let message = unsafe { CStr::from_ptr(sys::gemma4_last_error()) }
        .to_string_lossy()
        .into_owned();
    Error { code, message }
}

fn check(status: sys::gemma4_status) -> Result<()> {
    if status == sys::GEMMA4_OK {
        Ok(())
    } else {
        Err(last_error(status))
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error {
        code: sys::GEMMA4_INVALID_ARGUMENT,
        message: message.into(),
    }
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| invalid("string contains a NUL byte"))
}

fn path_cstring(path: &Path) -> Result<CString> {
    #[cfg(unix)]
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec();
    #[cfg(not(unix))]
    let bytes = path
        .to_str()
        .ok_or_else(|| invalid(format!("{} is not valid Unicode", path.display())))?
        .as_bytes()
        .to_vec();
    CString::new(bytes).map_err(|_| invalid("path contains a NUL byte"))
}

unsafe fn owned(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

pub fn version() -> String {
    unsafe { owned(sys::gemma4_version_string()) }
}

struct ModelHandle(*mut sys::gemma4_model);
// The C API documents models as immutable and shareable between threads.
unsafe impl Send for ModelHandle {}
unsafe impl Sync for ModelHandle {}
impl Drop for ModelHandle {
    fn drop(&mut self) {
        unsafe { sys::gemma4_model_free(self.0) }
    }
}

/// A loaded model. Cheap to clone (shared).
#[derive(Clone)]
pub struct Model {
    handle: Arc<ModelHandle>,
}

#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub variant: String,
    pub vocab_size: i32,
    pub num_layers: i32,
    pub max_context: i64,
    /// The model takes images (its vision tower is loaded).
    pub vision: bool,
    /// Soft tokens per image when an `Image` leaves `max_soft_tokens` at 0.
    pub default_image_tokens: i32,
    /// The model takes recordings (its audio tower is loaded).
    pub audio: bool,
}

/// How to load a model (`Model::load_with`, `plan_memory`).
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// 0 = one per hardware thread.
    pub threads: i32,
    /// None = beside the weights.
    pub tokenizer_path: Option<String>,
    /// "auto" (None), "f32", "f16", "q8_0" or "q4_0".
    pub kv_cache_type: Option<String>,
    /// A llama.cpp mmproj GGUF with the vision/audio towers of a GGUF model.
    pub mmproj_path: Option<String>,
    /// Refuse a model, or later a session, whose memory plan exceeds it (0 = no limit).
    pub memory_limit_bytes: u64,
    /// A Gemma 4 assistant drafter (its "-assistant" checkpoint directory or GGUF): sessions
    /// draft `draft_tokens` tokens a round (1..14; 0 = the library's default, 4) and verify
    /// them in one batched forward; replies are unchanged.
    pub draft_model_path: Option<String>,
    pub draft_tokens: i32,
    /// The largest image budget in soft tokens (70, 140, 280, 560 or 1120; 0 = 1120) that
    /// sessions encode: the memory plan sizes the vision activations for it and larger images
    /// are refused (INVALID_ARGUMENT).
    pub max_image_tokens: i32,
}

/// The bytes a model and one session keep resident, itemized (see gemma4.h).
pub type MemoryPlan = sys::gemma4_memory_plan;

/// C strings that must outlive a `gemma4_model_options` pointing into them.
struct OptionStrings {
    tokenizer: Option<CString>,
    mmproj: Option<CString>,
    draft: Option<CString>,
}

fn optional_cstring(s: &Option<String>) -> Result<Option<CString>> {
    match s {
        Some(s) => Ok(Some(cstring(s)?)),
        None => Ok(None),
    }
}

fn model_options(o: &LoadOptions) -> Result<(sys::gemma4_model_options, OptionStrings)> {
    let kv = match o.kv_cache_type.as_deref() {
        None | Some("auto") => 0,
        Some("f32") => 1,
        Some("f16") => 2,
        Some("q8_0") => 3,
        Some("q4_0") => 4,
        Some(other) => {
            return Err(invalid(format!(
                "kv_cache_type must be auto, f32, f16, q8_0 or q4_0, not '{}'",
                other
            )))
        }
    };
    let strings = OptionStrings {
        tokenizer: optional_cstring(&o.tokenizer_path)?,
        mmproj: optional_cstring(&o.mmproj_path)?,
        draft: optional_cstring(&o.draft_model_path)?,
    };
    let mut opts: sys::gemma4_model_options = unsafe { std::mem::zeroed() };
    unsafe { sys::gemma4_model_options_init_sized(&mut opts, std::mem::size_of_val(&opts)) };
    opts.threads = o.threads;
    opts.kv_cache_type = kv;
    opts.memory_limit_bytes = o.memory_limit_bytes;
    opts.draft_tokens = o.draft_tokens;
    opts.max_image_tokens = o.max_image_tokens;
    let ptr_of = |c: &Option<CString>| c.as_ref().map_or(ptr::null(), |c| c.as_ptr());
    opts.tokenizer_path = ptr_of(&strings.tokenizer);
    opts.mmproj_path = ptr_of(&strings.mmproj);
    opts.draft_model_path = ptr_of(&strings.draft);
    Ok((opts, strings))
}

/// The memory plan of `Model::load_with(path, options)` plus one session of `context_tokens`,
/// from the files' headers without loading any weight.
pub fn plan_memory(path: &str, context_tokens: i64, options: &LoadOptions) -> Result<MemoryPlan> {
    let path = cstring(path)?;
    let (opts, _strings) = model_options(options)?;
    let mut plan = MemoryPlan {
        struct_size: std::mem::size_of::<MemoryPlan>() as u32,
        ..Default::default()
    };
    check(unsafe { sys::gemma4_plan_memory(path.as_ptr(), &opts, context_tokens, &mut plan) })?;
    Ok(plan)
}

impl Model {
    pub fn load(path: &str, threads: i32, tokenizer_path: Option<&str>) -> Result<Model> {
        Model::load_with(
            path,
            &LoadOptions {
                threads,
                tokenizer_path: tokenizer_path.map(str::to_string),
                ..Default::default()
            },
        )
    }

    pub fn load_with(path: &str, options: &LoadOptions) -> Result<Model> {
        let path = cstring(path)?;
        let (opts, _strings) = model_options(options)?;
        let mut out = ptr::null_mut();
        check(unsafe { sys::gemma4_model_load(path.as_ptr(), &opts, &mut out) })?;
        Ok(Model {
            handle: Arc::new(ModelHandle(out)),
        })
    }

    /// The bytes this model and one session of `context_tokens` keep resident, itemized.
    pub fn plan_memory(&self, context_tokens: i64) -> Result<MemoryPlan> {
        let mut plan = MemoryPlan {
            struct_size: std::mem::size_of::<MemoryPlan>() as u32,
            ..Default::default()
        };
        check(unsafe { sys::gemma4_model_plan_memory(self.handle.0, context_tokens, &mut plan) })?;
        Ok(plan)
    }

    pub fn info(&self) -> Result<ModelInfo> {
        unsafe {
            let mut i: sys::gemma4_model_info = std::mem::zeroed();
            i.struct_size = std::mem::size_of::<sys::gemma4_model_info>() as u32;
            check(sys::gemma4_model_get_info(self.handle.0, &mut i))?;
            Ok(ModelInfo {
                variant: owned(i.variant),
                vocab_size: i.vocab_size,
                num_layers: i.num_layers,
                max_context: i.max_context,
                vision: i.vision != 0,
                default_image_tokens: i.default_image_tokens,
                audio: i.audio != 0,
            })
        }
    }

    pub fn tokenize(&self, text: &str) -> Result<Vec<i32>> {
        let mut ids = vec![0i32; text.len() + 16];
        let mut n = 0usize;
        loop {
            let status = unsafe {
                sys::gemma4_tokenize(
                    self.handle.0,
                    text.as_ptr() as *const c_char,
                    text.len(),
                    0,
                    ids.as_mut_ptr(),
                    ids.len(),
                    &mut n,
                )
            };
            if status == sys::GEMMA4_OUT_OF_RANGE && n > ids.len() {
                ids.resize(n, 0);
                continue;
            }
            check(status)?;
            ids.truncate(n);
            return Ok(ids);
        }
    }

    pub fn detokenize(&self, ids: &[i32]) -> Result<String> {
        let mut buf = vec![0u8; ids.len() * 16 + 16];
        let mut n = 0usize;
        loop {
            let status = unsafe {
                sys::gemma4_detokenize(
                    self.handle.0,
                    ids.as_ptr(),
                    ids.len(),
                    0,
                    buf.as_mut_ptr() as *mut c_char,
                    buf.len(),
                    &mut n,
                )
            };
            if status == sys::GEMMA4_OUT_OF_RANGE && n + 1 > buf.len() {
                buf.resize(n + 1, 0);
                continue;
            }
            check(status)?;
            buf.truncate(n);
            return Ok(String::from_utf8_lossy(&buf).into_owned());
        }
    }
}

/// Where an image's pixels come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// A PNG, JPEG or WebP file.
    Path(PathBuf),
    /// The bytes of a PNG, JPEG or WebP file.
    Encoded(Vec<u8>),
    /// RGB8 pixels, row by row: `width * height * 3` bytes.
    Rgb {
        pixels: Vec<u8>,
        width: u32,
        height: u32,
    },
}

/// An image for a user turn. `max_soft_tokens` (70, 140, 280, 560 or 1120; 0 = the model's
/// default) bounds the soft tokens it takes in the context. The image is decoded and checked
/// when the turn is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub source: ImageSource,
    pub max_soft_tokens: i32,
}

impl Image {
    /// An image file (PNG, JPEG or WebP), read when the turn is sent.
    pub fn from_path(path: impl AsRef<Path>) -> Image {
        Image {
            source: ImageSource::Path(path.as_ref().to_path_buf()),
            max_soft_tokens: 0,
        }
    }

    /// The bytes of a PNG, JPEG or WebP file.
    pub fn from_bytes(data: impl Into<Vec<u8>>) -> Image {
        Image {
            source: ImageSource::Encoded(data.into()),
            max_soft_tokens: 0,
        }
    }

    /// RGB8 pixels, row by row; fails unless there are `width * height * 3` bytes.
    pub fn from_rgb(pixels: impl Into<Vec<u8>>, width: u32, height: u32) -> Result<Image> {
        let pixels = pixels.into();
        let expected = (width as u64) * (height as u64) * 3;
        if pixels.len() as u64 != expected {
            return Err(invalid(format!(
                "{}x{} RGB pixels need {} bytes, got {}",
                width,
                height,
                expected,
                pixels.len()
            )));
        }
        Ok(Image {
            source: ImageSource::Rgb {
                pixels,
                width,
                height,
            },
            max_soft_tokens: 0,
        })
    }

    /// Sets the soft-token budget (70, 140, 280, 560 or 1120; 0 = the model's default).
    pub fn max_soft_tokens(mut self, max_soft_tokens: i32) -> Image {
        self.max_soft_tokens = max_soft_tokens;
        self
    }

    fn add_to(&self, content: *mut sys::gemma4_content) -> Result<()> {
        let budget = self.max_soft_tokens;
        match &self.source {
            ImageSource::Path(path) => {
                let path = path_cstring(path)?;
                check(unsafe { sys::gemma4_content_add_image_file(content, path.as_ptr(), budget) })
            }
            ImageSource::Encoded(data) => check(unsafe {
                sys::gemma4_content_add_image_bytes(
                    content,
                    data.as_ptr() as *const c_void,
                    data.len(),
                    budget,
                )
            }),
            ImageSource::Rgb {
                pixels,
                width,
                height,
            } => {
                let side = |v: u32| {
                    i32::try_from(v).map_err(|_| invalid(format!("image side {} too large", v)))
                };
                let (w, h) = (side(*width)?, side(*height)?);
                if pixels.len() as u64 != (*width as u64) * (*height as u64) * 3 {
                    return Err(invalid("RGB pixels must hold width * height * 3 bytes"));
                }
                check(unsafe {
                    sys::gemma4_content_add_image_rgb(
                        content,
                        pixels.as_ptr(),
                        w,
                        h,
                        *width as usize * 3,
                        budget,
                    )
                })
            }
        }
    }
}

/// One frame of a `Video`: its picture (a file, the bytes of one, or RGB8 pixels) and its time
/// in seconds from the start of the video. The frames of a video are all the same size.
#[derive(Debug, Clone)]
pub struct VideoFrame {
    pub image: ImageSource,
    pub seconds: f64,
}

// Times compare bit by bit, so that equality is an equivalence (and `Part` stays `Eq`).
impl PartialEq for VideoFrame {
    fn eq(&self, other: &VideoFrame) -> bool {
        self.image == other.image && self.seconds.to_bits() == other.seconds.to_bits()
    }
}
impl Eq for VideoFrame {}

impl VideoFrame {
    /// A PNG, JPEG or WebP file shown at `seconds`, read when the turn is sent.
    pub fn from_path(path: impl AsRef<Path>, seconds: f64) -> VideoFrame {
        VideoFrame {
            image: ImageSource::Path(path.as_ref().to_path_buf()),
            seconds,
        }
    }

    /// The bytes of a PNG, JPEG or WebP file shown at `seconds`.
    pub fn from_bytes(data: impl Into<Vec<u8>>, seconds: f64) -> VideoFrame {
        VideoFrame {
            image: ImageSource::Encoded(data.into()),
            seconds,
        }
    }

    /// RGB8 pixels, row by row, shown at `seconds`; fails with `status::INVALID_ARGUMENT`
    /// unless there are `width * height * 3` bytes.
    pub fn from_rgb(
        pixels: impl Into<Vec<u8>>,
        width: u32,
        height: u32,
        seconds: f64,
    ) -> Result<VideoFrame> {
        let image = Image::from_rgb(pixels, width, height)?;
        Ok(VideoFrame {
            image: image.source,
            seconds,
        })
    }

    fn add_to(&self, content: *mut sys::gemma4_content) -> Result<()> {
        let seconds = self.seconds;
        match &self.image {
            ImageSource::Path(path) => {
                let path = path_cstring(path)?;
                check(unsafe {
                    sys::gemma4_content_add_video_frame_file(content, path.as_ptr(), seconds)
                })
            }
            ImageSource::Encoded(data) => check(unsafe {
                sys::gemma4_content_add_video_frame_bytes(
                    content,
                    data.as_ptr() as *const c_void,
                    data.len(),
                    seconds,
                )
            }),
            ImageSource::Rgb {
                pixels,
                width,
                height,
            } => {
                let side = |v: u32| {
                    i32::try_from(v).map_err(|_| invalid(format!("frame side {} too large", v)))
                };
                let (w, h) = (side(*width)?, side(*height)?);
                let expected = (*width as u64) * (*height as u64) * 3;
                if pixels.len() as u64 != expected {
                    return Err(invalid(format!(
                        "video frame at {} s: {}x{} RGB pixels need {} bytes, got {}",
                        seconds,
                        width,
                        height,
                        expected,
                        pixels.len()
                    )));
                }
                check(unsafe {
                    sys::gemma4_content_add_video_frame_rgb(
                        content,
                        pixels.as_ptr(),
                        w,
                        h,
                        *width as usize * 3,
                        seconds,
                    )
                })
            }
        }
    }
}

/// Where a video's frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoSource {
    /// Frames in time order, all the same size.
    Frames(Vec<VideoFrame>),
    /// A video file (mp4, webm, mkv, ... decoded by FFmpeg), sampled at one frame per second,
    /// evenly spaced instead when that would exceed the frame limit (32).
    Path(PathBuf),
}

/// A video for a user turn, for the Gemma 4 models trained on video: 26B-A4B and 31B. A model
/// without its vision tower (a text-only checkpoint) fails with `status::FAILED_PRECONDITION`.
/// At most 32 frames (the model's frame limit; more is `status::INVALID_ARGUMENT`). Each frame
/// takes `max_soft_tokens_per_frame` soft tokens (70, 140, 280, 560 or 1120; 0 = the model's
/// default for video, 70) and follows its "mm:ss" timestamp in the prompt. The frames are
/// decoded and checked when the turn is sent; a video file needs a library built with FFmpeg
/// (`status::UNIMPLEMENTED` otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Video {
    pub source: VideoSource,
    pub max_soft_tokens_per_frame: i32,
}

impl Video {
    /// A video of the given frames, in time order.
    pub fn from_frames(frames: impl IntoIterator<Item = VideoFrame>) -> Video {
        Video {
            source: VideoSource::Frames(frames.into_iter().collect()),
            max_soft_tokens_per_frame: 0,
        }
    }

    /// A video file (mp4, webm, mkv, ...), read and sampled at one frame per second when the
    /// turn is sent.
    pub fn from_path(path: impl AsRef<Path>) -> Video {
        Video {
            source: VideoSource::Path(path.as_ref().to_path_buf()),
            max_soft_tokens_per_frame: 0,
        }
    }

    /// Sets the soft tokens per frame (70, 140, 280, 560 or 1120; 0 = the model's default, 70).
    pub fn max_soft_tokens_per_frame(mut self, max_soft_tokens_per_frame: i32) -> Video {
        self.max_soft_tokens_per_frame = max_soft_tokens_per_frame;
        self
    }

    fn add_to(&self, content: *mut sys::gemma4_content) -> Result<()> {
        let budget = self.max_soft_tokens_per_frame;
        match &self.source {
            VideoSource::Path(path) => {
                let path = path_cstring(path)?;
                check(unsafe { sys::gemma4_content_add_video_file(content, path.as_ptr(), budget) })
            }
            VideoSource::Frames(frames) => {
                check(unsafe { sys::gemma4_content_begin_video(content, budget) })?;
                frames.iter().try_for_each(|frame| frame.add_to(content))
            }
        }
    }
}

/// Where a recording comes from.
#[derive(Debug, Clone)]
pub enum AudioSource {
    /// A WAV, FLAC, Ogg (Vorbis or Opus) or MP3 file.
    Path(PathBuf),
    /// The bytes of a WAV, FLAC, Ogg (Vorbis or Opus) or MP3 file.
    Encoded(Vec<u8>),
    /// Mono float samples (in [-1, 1]) at `sample_rate` Hz.
    Pcm { samples: Vec<f32>, sample_rate: u32 },
}

// Samples compare bit by bit, so that equality is an equivalence (and `Part` stays `Eq`).
impl PartialEq for AudioSource {
    fn eq(&self, other: &AudioSource) -> bool {
        match (self, other) {
            (AudioSource::Path(a), AudioSource::Path(b)) => a == b,
            (AudioSource::Encoded(a), AudioSource::Encoded(b)) => a == b,
            (
                AudioSource::Pcm {
                    samples: a,
                    sample_rate: ra,
                },
                AudioSource::Pcm {
                    samples: b,
                    sample_rate: rb,
                },
            ) => {
                ra == rb
                    && a.len() == b.len()
                    && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            _ => false,
        }
    }
}
impl Eq for AudioSource {}

/// A recording for a user turn. Any sample rate and channel count is downmixed and resampled
/// to 16 kHz, and recordings over 30 s are encoded in 30 s pieces, in order. The recording is
/// decoded and checked when the turn is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audio {
    pub source: AudioSource,
}

impl Audio {
    /// A recording file (WAV, FLAC, Ogg/Vorbis/Opus or MP3), read when the turn is sent.
    pub fn from_path(path: impl AsRef<Path>) -> Audio {
        Audio {
            source: AudioSource::Path(path.as_ref().to_path_buf()),
        }
    }

    /// The bytes of a WAV, FLAC, Ogg/Vorbis/Opus or MP3 file.
    pub fn from_bytes(data: impl Into<Vec<u8>>) -> Audio {
        Audio {
            source: AudioSource::Encoded(data.into()),
        }
    }

    /// Mono float samples (in [-1, 1]) at `sample_rate` Hz.
    pub fn from_pcm(samples: impl Into<Vec<f32>>, sample_rate: u32) -> Audio {
        Audio {
            source: AudioSource::Pcm {
                samples: samples.into(),
                sample_rate,
            },
        }
    }

    fn add_to(&self, content: *mut sys::gemma4_content) -> Result<()> {
        match &self.source {
            AudioSource::Path(path) => {
                let path = path_cstring(path)?;
                check(unsafe { sys::gemma4_content_add_audio_file(content, path.as_ptr()) })
            }
            AudioSource::Encoded(data) => check(unsafe {
                sys::gemma4_content_add_audio_bytes(
                    content,
                    data.as_ptr() as *const c_void,
                    data.len(),
                )
            }),
            AudioSource::Pcm {
                samples,
                sample_rate,
            } => {
                let rate = i32::try_from(*sample_rate)
                    .map_err(|_| invalid(format!("sample rate {} too large", sample_rate)))?;
                check(unsafe {
                    sys::gemma4_content_add_audio_pcm(
                        content,
                        samples.as_ptr(),
                        samples.len(),
                        rate,
                    )
                })
            }
        }
    }
}

/// One piece of a user turn: text, an image, a recording or a video, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Image(Image),
    Audio(Audio),
    Video(Video),
}

impl From<&str> for Part {
    fn from(text: &str) -> Part {
        Part::Text(text.to_string())
    }
}
impl From<String> for Part {
    fn from(text: String) -> Part {
        Part::Text(text)
    }
}
impl From<Image> for Part {
    fn from(image: Image) -> Part {
        Part::Image(image)
    }
}
impl From<Audio> for Part {
    fn from(audio: Audio) -> Part {
        Part::Audio(audio)
    }
}
impl From<Video> for Part {
    fn from(video: Video) -> Part {
        Part::Video(video)
    }
}

/// A `gemma4_content` built from parts, freed on drop.
struct Content(*mut sys::gemma4_content);

impl Content {
    fn new(parts: &[Part]) -> Result<Content> {
        let mut h = ptr::null_mut();
        check(unsafe { sys::gemma4_content_create(&mut h) })?;
        let content = Content(h);
        for part in parts {
            match part {
                Part::Text(text) => check(unsafe {
                    sys::gemma4_content_add_text(h, text.as_ptr() as *const c_char, text.len())
                })?,
                Part::Image(image) => image.add_to(h)?,
                Part::Audio(audio) => audio.add_to(h)?,
                Part::Video(video) => video.add_to(h)?,
            }
        }
        Ok(content)
    }
}

impl Drop for Content {
    fn drop(&mut self) {
        unsafe { sys::gemma4_content_free(self.0) }
    }
}

type ToolClosure = Box<dyn Fn(&str) -> std::result::Result<String, String> + Send + Sync>;

/// Tools the model may call: closures receiving the arguments as JSON text and returning the
/// result as JSON (or plain) text, or an error message sent back to the model.
pub struct Tools {
    handle: *mut sys::gemma4_tools,
    closures: Vec<Box<ToolClosure>>,
}
unsafe impl Send for Tools {}

unsafe extern "C" fn tool_trampoline(
    args: *const c_char,
    result: *mut sys::gemma4_tool_result,
    user: *mut c_void,
) -> sys::gemma4_status {
    let f = &*(user as *const ToolClosure);
    let args = CStr::from_ptr(args).to_string_lossy();
    // A panic must not unwind into C.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&args)));
    let (text, status) = match outcome {
        Ok(Ok(t)) => (t, sys::GEMMA4_OK),
        Ok(Err(e)) => (e, 2),
        Err(_) => ("the tool panicked".to_string(), 2),
    };
    sys::gemma4_tool_result_set(result, text.as_ptr() as *const c_char, text.len());
    status
}

impl Tools {
    pub fn new() -> Result<Tools> {
        let mut h = ptr::null_mut();
        check(unsafe { sys::gemma4_tools_create(&mut h) })?;
        Ok(Tools {
            handle: h,
            closures: Vec::new(),
        })
    }

    /// `parameters`: the JSON schema of the arguments object.
    pub fn register<F>(
        &mut self,
        name: &str,
        description: &str,
        parameters: &str,
        f: F,
    ) -> Result<()>
    where
        F: Fn(&str) -> std::result::Result<String, String> + Send + Sync + 'static,
    {
        let name = cstring(name)?;
        let description = cstring(description)?;
        let parameters = cstring(parameters)?;
        let boxed: Box<ToolClosure> = Box::new(Box::new(f));
        let user = &*boxed as *const ToolClosure as *mut c_void;
        check(unsafe {
            sys::gemma4_tools_register(
                self.handle,
                name.as_ptr(),
                description.as_ptr(),
                parameters.as_ptr(),
                tool_trampoline,
                user,
            )
        })?;
        self.closures.push(boxed);
        Ok(())
    }
}

impl Drop for Tools {
    fn drop(&mut self) {
        unsafe { sys::gemma4_tools_free(self.handle) }
    }
}

/// Options of one model turn.
pub struct Generate<'a> {
    pub max_tokens: i32,
    pub thinking: bool,
    pub temperature: Option<f32>,
    pub seed: u64,
    pub json_schema: Option<&'a str>,
    pub require_tool_call: bool,
    pub max_tool_steps: i32,
    pub max_calls_per_round: i32,
    pub stop_on_repetition: bool,
    /// Banned token ids (e.g. to keep a random test model from ending its turn).
    pub banned: Vec<i32>,
    /// Drafted tokens a round for a model with a drafter: None = the model's, Some(0) = no
    /// drafting this turn.
    pub draft_tokens: Option<i32>,
}

impl<'a> Default for Generate<'a> {
    fn default() -> Self {
        Generate {
            max_tokens: 1024,
            thinking: false,
            temperature: None,
            seed: 0,
            json_schema: None,
            require_tool_call: false,
            max_tool_steps: 8,
            max_calls_per_round: 8,
            stop_on_repetition: true,
            banned: Vec::new(),
            draft_tokens: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ToolCall {
    pub name: String,
    pub arguments_json: String,
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub text: String,
    pub thought: String,
    pub stop_reason: i32,
    pub tool_calls: Vec<ToolCall>,
    pub tool_results: Vec<String>,
    pub prompt_tokens: i32,
    pub generated_tokens: i32,
    pub reused_tokens: i32,
    /// Speculative decoding: tokens drafted this turn and how many the model kept.
    pub drafted_tokens: i32,
    pub accepted_draft_tokens: i32,
}

/// Cancels a session's running `send` from another thread.
#[derive(Clone)]
pub struct Canceller {
    session: *mut sys::gemma4_session,
    _alive: Arc<()>,
}
unsafe impl Send for Canceller {}
unsafe impl Sync for Canceller {}
impl Canceller {
    pub fn cancel(&self) {
        // gemma4_session_cancel is thread-safe; the Arc keeps the session's memory valid only
        // while the Session exists, so callers must not outlive it (documented).
        unsafe { sys::gemma4_session_cancel(self.session) }
    }
}

pub struct Session {
    handle: *mut sys::gemma4_session,
    _model: Model,
    alive: Arc<()>,
}
// One thread at a time may use a session; moving it between threads is fine.
unsafe impl Send for Session {}

type TextCallback<'a> = dyn FnMut(bool, &str) -> bool + 'a;

unsafe extern "C" fn text_trampoline(
    kind: c_int,
    text: *const c_char,
    len: usize,
    user: *mut c_void,
) -> c_int {
    let f = &mut *(user as *mut &mut TextCallback);
    let bytes = std::slice::from_raw_parts(text as *const u8, len);
    let piece = String::from_utf8_lossy(bytes);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(kind == 0, &piece))) {
        Ok(true) => 1,
        _ => 0,
    }
}

impl Session {
    pub fn new(
        model: &Model,
        system_prompt: Option<&str>,
        tools: Option<&Tools>,
    ) -> Result<Session> {
        let system = match system_prompt {
            Some(s) => Some(cstring(s)?),
            None => None,
        };
        unsafe {
            let mut opts: sys::gemma4_session_options = std::mem::zeroed();
            sys::gemma4_session_options_init_sized(&mut opts, std::mem::size_of_val(&opts));
            opts.system_prompt = system.as_ref().map_or(ptr::null(), |s| s.as_ptr());
            opts.tools = tools.map_or(ptr::null(), |t| t.handle as *const _);
            let mut out = ptr::null_mut();
            check(sys::gemma4_session_create(model.handle.0, &opts, &mut out))?;
            Ok(Session {
                handle: out,
                _model: model.clone(),
                alive: Arc::new(()),
            })
        }
    }

    pub fn canceller(&self) -> Canceller {
        Canceller {
            session: self.handle,
            _alive: self.alive.clone(),
        }
    }

    /// Sends a user turn; `on_text(is_thought, piece)` streams the reply (return false to
    /// cancel).
    pub fn send_streaming(
        &mut self,
        text: &str,
        options: &Generate,
        on_text: impl FnMut(bool, &str) -> bool,
    ) -> Result<Reply> {
        let text = cstring(text)?;
        self.generate(options, on_text, |session, go, reply| unsafe {
            sys::gemma4_session_send(session, text.as_ptr(), go, reply)
        })
    }

    pub fn send(&mut self, text: &str, options: &Generate) -> Result<Reply> {
        self.send_streaming(text, options, |_, _| true)
    }

    /// Sends a user turn of text, images, recordings and videos, in order; streams like
    /// `send_streaming`. Fails with `status::FAILED_PRECONDITION` on a model without the tower
    /// its images, recordings or videos need.
    pub fn send_content_streaming(
        &mut self,
        parts: &[Part],
        options: &Generate,
        on_text: impl FnMut(bool, &str) -> bool,
    ) -> Result<Reply> {
        let content = Content::new(parts)?;
        self.generate(options, on_text, |session, go, reply| unsafe {
            sys::gemma4_session_send_content(session, content.0, go, reply)
        })
    }

    /// Sends a user turn of text, images, recordings and videos, in order.
    pub fn send_content(&mut self, parts: &[Part], options: &Generate) -> Result<Reply> {
        self.send_content_streaming(parts, options, |_, _| true)
    }

    /// Fills the generate options, runs `call` with them and reads its reply.
    fn generate(
        &mut self,
        options: &Generate,
        mut on_text: impl FnMut(bool, &str) -> bool,
        call: impl FnOnce(
            *mut sys::gemma4_session,
            *const sys::gemma4_generate_options,
            *mut *mut sys::gemma4_reply,
        ) -> sys::gemma4_status,
    ) -> Result<Reply> {
        let schema = match options.json_schema {
            Some(s) => Some(cstring(s)?),
            None => None,
        };
        let ban_values: Vec<f32> = options.banned.iter().map(|_| -1e30f32).collect();
        unsafe {
            let mut sampler: sys::gemma4_sampler_options = std::mem::zeroed();
            sys::gemma4_sampler_options_init_sized(
                &mut sampler,
                self._model.handle.0,
                std::mem::size_of_val(&sampler),
            );
            if let Some(t) = options.temperature {
                sampler.temperature = t;
            }
            sampler.seed = options.seed;
            sampler.logit_bias_ids = options.banned.as_ptr();
            sampler.logit_bias_values = ban_values.as_ptr();
            sampler.n_logit_bias = options.banned.len();
            let mut go: sys::gemma4_generate_options = std::mem::zeroed();
            sys::gemma4_generate_options_init_sized(&mut go, std::mem::size_of_val(&go));
            go.max_tokens = options.max_tokens;
            go.thinking = options.thinking as i32;
            go.sampler = &sampler;
            go.json_schema = schema.as_ref().map_or(ptr::null(), |s| s.as_ptr());
            go.require_tool_call = options.require_tool_call as i32;
            go.max_tool_steps = options.max_tool_steps;
            go.max_calls_per_round = options.max_calls_per_round;
            go.stop_on_repetition = options.stop_on_repetition as i32;
            go.draft_tokens = options.draft_tokens.unwrap_or(-1);
            let mut callback: &mut TextCallback = &mut on_text;
            go.on_text = Some(text_trampoline);
            go.user_data = &mut callback as *mut &mut TextCallback as *mut c_void;
            let mut reply = ptr::null_mut();
            check(call(self.handle, &go, &mut reply))?;
            let r = read_reply(reply);
            sys::gemma4_reply_free(reply);
            Ok(r)
        }
    }

    pub fn fork(&self) -> Result<Session> {
        let mut out = ptr::null_mut();
        check(unsafe { sys::gemma4_session_fork(self.handle, &mut out) })?;
        Ok(Session {
            handle: out,
            _model: self._model.clone(),
            alive: Arc::new(()),
        })
    }

    pub fn rewind(&mut self, num_turns: usize) -> Result<()> {
        check(unsafe { sys::gemma4_session_rewind(self.handle, num_turns) })
    }

    pub fn save(&self) -> Result<Vec<u8>> {
        unsafe {
            let mut data = ptr::null_mut();
            let mut size = 0usize;
            check(sys::gemma4_session_save(self.handle, &mut data, &mut size))?;
            let v = std::slice::from_raw_parts(data as *const u8, size).to_vec();
            sys::gemma4_free(data);
            Ok(v)
        }
    }

    pub fn restore(model: &Model, state: &[u8], tools: Option<&Tools>) -> Result<Session> {
        let mut out = ptr::null_mut();
        check(unsafe {
            sys::gemma4_session_restore(
                model.handle.0,
                state.as_ptr() as *const c_void,
                state.len(),
                tools.map_or(ptr::null(), |t| t.handle as *const _),
                &mut out,
            )
        })?;
        Ok(Session {
            handle: out,
            _model: model.clone(),
            alive: Arc::new(()),
        })
    }

    pub fn num_turns(&self) -> usize {
        unsafe { sys::gemma4_session_num_turns(self.handle) }
    }

    /// The token ids the KV cache holds: exactly what the model has seen (text from users and
    /// tools is always tokenized as text, never as control tokens).
    pub fn context_token_ids(&self) -> Result<Vec<i32>> {
        let mut count = 0usize;
        check(unsafe {
            sys::gemma4_session_context_token_ids(self.handle, ptr::null_mut(), 0, &mut count)
        })?;
        let mut ids = vec![0i32; count];
        check(unsafe {
            sys::gemma4_session_context_token_ids(
                self.handle,
                ids.as_mut_ptr(),
                ids.len(),
                &mut count,
            )
        })?;
        ids.truncate(count);
        Ok(ids)
    }
}

unsafe fn read_reply(r: *const sys::gemma4_reply) -> Reply {
    let calls = (0..sys::gemma4_reply_num_tool_calls(r))
        .map(|i| ToolCall {
            name: owned(sys::gemma4_reply_tool_call_name(r, i)),
            arguments_json: owned(sys::gemma4_reply_tool_call_arguments(r, i)),
        })
        .collect();
    let results = (0..sys::gemma4_reply_num_tool_results(r))
        .map(|i| owned(sys::gemma4_reply_tool_result(r, i)))
        .collect();
    Reply {
        text: owned(sys::gemma4_reply_text(r)),
        thought: owned(sys::gemma4_reply_thought(r)),
        stop_reason: sys::gemma4_reply_stop_reason(r),
        tool_calls: calls,
        tool_results: results,
        prompt_tokens: sys::gemma4_reply_prompt_tokens(r),
        generated_tokens: sys::gemma4_reply_generated_tokens(r),
        reused_tokens: sys::gemma4_reply_reused_tokens(r),
        drafted_tokens: sys::gemma4_reply_drafted_tokens(r),
        accepted_draft_tokens: sys::gemma4_reply_accepted_draft_tokens(r),
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        unsafe { sys::gemma4_session_free(self.handle) }
    }
}
