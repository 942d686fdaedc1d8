//! `Mp4WriterProcessor`: encodes video (H.264) and audio (AAC) into an MP4 file.

use std::collections::VecDeque;
use std::path::PathBuf;

use ffmpeg::format::{Pixel, Sample, sample::Type as SampleType};
use ffmpeg::software::scaling;
use ffmpeg::{ChannelLayout, Dictionary, Packet, Rational, codec, encoder, format, frame};
use ffmpeg_next as ffmpeg;
use serde::{Deserialize, Serialize};

use super::ffmpeg_util::{self, Scaler};
use crate::core::context::{Counter, RuntimeContext};
use crate::core::dsp::{StreamResampler, convert_channels};
use crate::core::error::{Result, StreamError};
use crate::core::frames::{AudioFrame, PixelFormat, VideoFrame};
use crate::core::links::LinkInput;
use crate::core::processors::{ConfigError, ProcessorConfig};

/// Video time base: 90 kHz, the usual MPEG clock, fine enough for any frame timing.
const VIDEO_TIME_BASE: Rational = Rational(1, 90_000);
/// How much (by timestamps) one input may buffer while a connected other has not delivered
/// its first frame; after that the file is written without it.
const MAX_WAIT_NS: u64 = 3_000_000_000;
/// How long (by timestamps) a file with one stream waits for the other input to be connected.
const SINGLE_STREAM_GRACE_NS: u64 = 200_000_000;
/// Bytes of frames held while waiting, at most (4K RGBA is 33 MB a frame).
const MAX_WAIT_BYTES: usize = 512 << 20;
/// Audio further than this from where its timestamps put it is re-aligned (silence inserted,
/// or samples dropped).
const AUDIO_DRIFT_NS: u64 = 40_000_000;
/// Consecutive frames that fail to encode before the writer gives up.
const MAX_CONSECUTIVE_ERRORS: u32 = 50;
/// Sample rates the AAC encoder takes.
const AAC_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// x264 speed/size trade-off.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum X264Preset {
    /// Fastest, largest files.
    Ultrafast,
    /// Very fast.
    Superfast,
    /// Fast, a good default for live recording.
    #[default]
    Veryfast,
    /// Faster.
    Faster,
    /// Fast.
    Fast,
    /// x264's own default.
    Medium,
    /// Smaller files, more CPU.
    Slow,
}

impl X264Preset {
    fn name(self) -> &'static str {
        match self {
            X264Preset::Ultrafast => "ultrafast",
            X264Preset::Superfast => "superfast",
            X264Preset::Veryfast => "veryfast",
            X264Preset::Faster => "faster",
            X264Preset::Fast => "fast",
            X264Preset::Medium => "medium",
            X264Preset::Slow => "slow",
        }
    }
}

/// Config of [`Mp4WriterProcessor`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Mp4WriterConfig {
    /// The MP4 file to write (created or replaced). Required.
    pub path: PathBuf,
    /// Video width (even, 16 to 7680); `null` takes the first frame's (rounded down to even).
    /// Frames of another size are scaled.
    pub width: Option<u32>,
    /// Video height (even, 16 to 4320); `null` takes the first frame's.
    pub height: Option<u32>,
    /// Nominal frame rate, a hint for players and the rate control (1 to 240); the timestamps
    /// themselves come from the frames.
    pub fps: u32,
    /// Video bit rate in bits per second (100k to 100M).
    pub video_bitrate: u32,
    /// Audio bit rate in bits per second (32k to 512k).
    pub audio_bitrate: u32,
    /// x264 preset.
    pub preset: X264Preset,
}

impl Default for Mp4WriterConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::new(),
            width: None,
            height: None,
            fps: 30,
            video_bitrate: 4_000_000,
            audio_bitrate: 128_000,
            preset: X264Preset::Veryfast,
        }
    }
}

impl ProcessorConfig for Mp4WriterConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(ConfigError::new(
                "path",
                "is required: the MP4 file to write",
            ));
        }
        if self.path.to_str().is_none_or(|p| p.contains('\0')) {
            return Err(ConfigError::new(
                "path",
                "must be valid UTF-8 without NUL characters",
            ));
        }
        for (field, value, max) in [("width", self.width, 7680), ("height", self.height, 4320)] {
            if let Some(v) = value {
                ConfigError::check_range(field, v, 16, max)?;
                if v % 2 != 0 {
                    return Err(ConfigError::new(
                        field,
                        format!("must be even (H.264 4:2:0), got {v}"),
                    ));
                }
            }
        }
        ConfigError::check_range("fps", self.fps, 1, 240)?;
        ConfigError::check_range("video_bitrate", self.video_bitrate, 100_000, 100_000_000)?;
        ConfigError::check_range("audio_bitrate", self.audio_bitrate, 32_000, 512_000)
    }
}

/// The video encoder and what feeds it.
struct VideoOut {
    encoder: encoder::Video,
    stream: usize,
    stream_time_base: Rational,
    width: u32,
    height: u32,
    scaler: Option<Scaler>,
    /// The frame the pixels are copied into for the scaler.
    input: frame::Video,
    last_pts: Option<i64>,
    /// Added to every pts after the input's timestamps jumped backwards.
    pts_shift: i64,
    fps: u32,
    frames: Counter,
}

/// The audio encoder and what feeds it.
struct AudioOut {
    encoder: encoder::Audio,
    stream: usize,
    stream_time_base: Rational,
    rate: u32,
    channels: u16,
    layout: ChannelLayout,
    frame_size: usize,
    /// Interleaved samples waiting for a whole encoder frame.
    fifo: VecDeque<f32>,
    /// Converts input at another rate to `rate`.
    resampler: Option<StreamResampler>,
    /// Samples added to where timestamps put the audio, after the source started over.
    shift: i64,
    next_pts: i64,
    samples: Counter,
}

/// The open file.
struct Muxer {
    output: format::context::Output,
    video: Option<VideoOut>,
    audio: Option<AudioOut>,
    /// Media-clock time that is t = 0 in the file.
    origin_ns: u64,
}

/// Where the file is in one run.
enum Output {
    /// Frames held until the header can be written.
    Waiting(Waiting),
    /// The header is being written from the held frames.
    Opening,
    /// The header is written; frames are encoded as they come (boxed: the encoders' state
    /// is large beside the other variants).
    Muxing(Box<Muxer>),
    /// The file could not be opened: every later frame reports why (the processor fails)
    /// instead of being dropped silently.
    Failed(String),
}

/// Everything one run has: built in `setup`, dropped (the file finalised) in `teardown`.
struct Recording {
    ctx: RuntimeContext,
    /// The file created at setup, until the muxer takes it.
    file: Option<crate::core::files::CappedFile>,
    skipped: Counter,
    /// Frames in a row that could not be encoded.
    consecutive_errors: u32,
    output: Output,
    /// The counters' values when this run began (they add up across runs; a file holds one).
    counted_before: std::collections::BTreeMap<String, u64>,
}

/// Frames held back until both streams are known (the header needs both).
#[derive(Default)]
struct Waiting {
    video: Vec<VideoFrame>,
    audio: Vec<AudioFrame>,
    bytes: usize,
}

impl Waiting {
    /// The span of timestamps held, in nanoseconds.
    fn span_ns(&self) -> u64 {
        let stamps = self
            .video
            .iter()
            .map(|f| f.timestamp_ns)
            .chain(self.audio.iter().map(|f| f.timestamp_ns));
        let (min, max) = stamps.fold((u64::MAX, 0), |(lo, hi), t| (lo.min(t), hi.max(t)));
        max.saturating_sub(min)
    }
}

/// Encodes its `video` input (H.264, libx264) and `audio` input (AAC) into an MP4 file.
/// Only the inputs connected when it starts become streams. Timestamps come from the frames
/// (t = 0 is the earliest first frame). The stream formats come from the first frames (or
/// the config); later frames of another size are scaled and audio of another rate or channel
/// count converted. The file is finalised (its index written) at stop, at removal and when
/// `streamlib serve`/`run` get SIGINT/SIGTERM, after every frame already queued is encoded.
#[streamlib::processor(
    execution = Reactive,
    description = "Encodes video (H.264) and audio (AAC) into an MP4 file, finalised at stop"
)]
pub struct Mp4WriterProcessor {
    #[streamlib::input(description = "Video to encode (RGBA, BGRA or gray)")]
    video: LinkInput<VideoFrame>,
    #[streamlib::input(description = "Audio to encode (any rate; mono or stereo)")]
    audio: LinkInput<AudioFrame>,
    #[streamlib::config]
    config: Mp4WriterConfig,
    /// The run's state, `Some` between `setup` and `teardown`.
    recording: Option<Recording>,
}

fn ff_error(path: &std::path::Path, what: &str, e: impl std::fmt::Display) -> StreamError {
    StreamError::processor(format!(
        "Mp4WriterProcessor: {what} '{}': {e}",
        path.display()
    ))
}

/// The ffmpeg pixel format of a frame's pixels.
fn pixel_of(format: PixelFormat) -> Pixel {
    match format {
        PixelFormat::Rgba8 => Pixel::RGBA,
        PixelFormat::Bgra8 => Pixel::BGRA,
        PixelFormat::Gray8 => Pixel::GRAY8,
    }
}

impl Mp4WriterProcessor::Processor {
    /// Opens the file and encoders for the frames seen so far and writes the header.
    fn open(
        &mut self,
        first_video: Option<&VideoFrame>,
        first_audio: Option<&AudioFrame>,
    ) -> Result<Muxer> {
        let path = self.config.path.clone();
        let file = self
            .recording
            .as_mut()
            .and_then(|r| r.file.take())
            .ok_or_else(|| {
                StreamError::processor("Mp4WriterProcessor: the file was not created at setup")
            })?;
        let io = format::context::StreamIo::from_write_seek(file)
            .map_err(|e| ff_error(&path, "cannot create", e))?;
        let mut output = format::output_to_stream(io, path.to_str(), Some("mp4"))
            .map_err(|e| ff_error(&path, "cannot create", e))?;
        let global_header = output
            .format()
            .flags()
            .contains(format::Flags::GLOBAL_HEADER);
        let ctx = self.recording.as_ref().map(|r| r.ctx.clone());
        let counter = |name: &str| ctx.as_ref().map(|c| c.counter(name)).unwrap_or_default();

        let video = match first_video {
            Some(frame) => {
                let width = self.config.width.unwrap_or(frame.width & !1).max(2);
                let height = self.config.height.unwrap_or(frame.height & !1).max(2);
                let codec = encoder::find(codec::Id::H264).ok_or_else(|| {
                    ff_error(
                        &path,
                        "no H.264 encoder (libx264) for",
                        "FFmpeg was built without it",
                    )
                })?;
                let mut context = codec::context::Context::new_with_codec(codec);
                // As many encoder threads as the machine has cores (FFmpeg's own default).
                context.set_threading(ffmpeg::threading::Config::kind(
                    ffmpeg::threading::Type::Frame,
                ));
                let mut settings = context
                    .encoder()
                    .video()
                    .map_err(|e| ff_error(&path, "cannot set up H.264 for", e))?;
                settings.set_width(width);
                settings.set_height(height);
                settings.set_format(Pixel::YUV420P);
                settings.set_time_base(VIDEO_TIME_BASE);
                settings.set_frame_rate(Some(Rational(self.config.fps as i32, 1)));
                settings.set_bit_rate(self.config.video_bitrate as usize);
                settings.set_gop(self.config.fps * 2);
                if global_header {
                    settings.set_flags(codec::Flags::GLOBAL_HEADER);
                }
                let mut options = Dictionary::new();
                options.set("preset", self.config.preset.name());
                let encoder = settings
                    .open_with(options)
                    .map_err(|e| ff_error(&path, "cannot open the H.264 encoder for", e))?;
                let mut stream = output
                    .add_stream(codec)
                    .map_err(|e| ff_error(&path, "cannot add a video stream to", e))?;
                stream.set_parameters(&encoder);
                stream.set_time_base(VIDEO_TIME_BASE);
                Some(VideoOut {
                    stream: stream.index(),
                    encoder,
                    stream_time_base: VIDEO_TIME_BASE,
                    width,
                    height,
                    scaler: None,
                    input: frame::Video::empty(),
                    last_pts: None,
                    pts_shift: 0,
                    fps: self.config.fps,
                    frames: counter("video_frames"),
                })
            }
            None => None,
        };
        let audio = match first_audio {
            Some(frame) => {
                // The nearest rate AAC takes; other input is resampled to it.
                let rate = AAC_RATES
                    .into_iter()
                    .min_by_key(|r| r.abs_diff(frame.sample_rate))
                    .unwrap_or(48_000);
                let channels = frame.channels.clamp(1, 2);
                let layout = if channels == 1 {
                    ChannelLayout::MONO
                } else {
                    ChannelLayout::STEREO
                };
                let codec = encoder::find(codec::Id::AAC).ok_or_else(|| {
                    ff_error(&path, "no AAC encoder for", "FFmpeg was built without it")
                })?;
                let mut settings = codec::context::Context::new_with_codec(codec)
                    .encoder()
                    .audio()
                    .map_err(|e| ff_error(&path, "cannot set up AAC for", e))?;
                settings.set_rate(rate as i32);
                settings.set_channel_layout(layout);
                settings.set_format(Sample::F32(SampleType::Planar));
                settings.set_bit_rate(self.config.audio_bitrate as usize);
                settings.set_time_base(Rational(1, rate as i32));
                if global_header {
                    settings.set_flags(codec::Flags::GLOBAL_HEADER);
                }
                let encoder = settings
                    .open_as(codec)
                    .map_err(|e| ff_error(&path, "cannot open the AAC encoder for", e))?;
                let mut stream = output
                    .add_stream(codec)
                    .map_err(|e| ff_error(&path, "cannot add an audio stream to", e))?;
                stream.set_parameters(&encoder);
                stream.set_time_base(Rational(1, rate as i32));
                let frame_size = (encoder.frame_size() as usize).max(1);
                Some(AudioOut {
                    stream: stream.index(),
                    encoder,
                    stream_time_base: Rational(1, rate as i32),
                    rate,
                    channels,
                    layout,
                    frame_size,
                    fifo: VecDeque::new(),
                    resampler: None,
                    shift: 0,
                    next_pts: 0,
                    samples: counter("audio_samples"),
                })
            }
            None => None,
        };
        output
            .write_header()
            .map_err(|e| ff_error(&path, "cannot write the header of", e))?;
        // The muxer may change the stream time bases in the header: use what it chose.
        let mut muxer = Muxer {
            origin_ns: [
                first_video.map(|f| f.timestamp_ns),
                first_audio.map(|f| f.timestamp_ns),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(0),
            video,
            audio,
            output,
        };
        if let Some(v) = &mut muxer.video {
            if let Some(stream) = muxer.output.stream(v.stream) {
                v.stream_time_base = stream.time_base();
            }
        }
        if let Some(a) = &mut muxer.audio {
            if let Some(stream) = muxer.output.stream(a.stream) {
                a.stream_time_base = stream.time_base();
            }
            // Audio that starts after t = 0 starts that much later in the file.
            if let Some(first) = first_audio {
                let offset = first.timestamp_ns.saturating_sub(muxer.origin_ns);
                a.next_pts = (u128::from(offset) * u128::from(a.rate) / 1_000_000_000) as i64;
            }
        }
        tracing::info!(path = %path.display(), video = muxer.video.is_some(), audio = muxer.audio.is_some(), "MP4 file opened");
        Ok(muxer)
    }

    /// Buffers frames until the header can be written, then writes everything held.
    fn take_video(&mut self, frame: VideoFrame) -> Result<()> {
        match self.recording.as_mut().map(|r| &mut r.output) {
            Some(Output::Muxing(muxer)) => return write_video(muxer, &self.config.path, &frame),
            Some(Output::Waiting(waiting)) => {
                waiting.bytes += frame.data.len();
                waiting.video.push(frame);
            }
            _ => {}
        }
        self.start_when_ready(false)
    }

    fn take_audio(&mut self, frame: AudioFrame) -> Result<()> {
        match self.recording.as_mut().map(|r| &mut r.output) {
            Some(Output::Muxing(muxer)) => return write_audio(muxer, &self.config.path, &frame),
            Some(Output::Waiting(waiting)) => {
                waiting.bytes += frame.samples.len() * 4;
                waiting.audio.push(frame);
            }
            _ => {}
        }
        self.start_when_ready(false)
    }

    /// Moves the run to `output` (nothing to do between runs).
    fn set_output(&mut self, output: Output) {
        if let Some(recording) = &mut self.recording {
            recording.output = output;
        }
    }

    /// Opens the file once every connected input has a first frame (or one has waited
    /// [`MAX_WAIT_NS`] of timestamps or held [`MAX_WAIT_BYTES`], or `now`), then writes the held
    /// frames. Inputs connected after the file is open do not become streams.
    fn start_when_ready(&mut self, now: bool) -> Result<()> {
        let Some(Recording {
            output: Output::Waiting(waiting),
            ..
        }) = &self.recording
        else {
            return Ok(());
        };
        let have_video = !waiting.video.is_empty();
        let have_audio = !waiting.audio.is_empty();
        // An input not connected yet may be about to be (a graph applied to a running
        // runtime connects its links one by one): a single stream waits a moment first.
        let both = have_video && have_audio;
        let complete = (have_video || !self.video.is_connected())
            && (have_audio || !self.audio.is_connected())
            && (both || waiting.span_ns() >= SINGLE_STREAM_GRACE_NS);
        let waited_too_long = waiting.span_ns() >= MAX_WAIT_NS || waiting.bytes >= MAX_WAIT_BYTES;
        if !(have_video || have_audio) || !(complete || waited_too_long || now) {
            return Ok(());
        }
        let Some(recording) = &mut self.recording else {
            return Ok(());
        };
        let Output::Waiting(waiting) = std::mem::replace(&mut recording.output, Output::Opening)
        else {
            return Ok(());
        };
        if !complete {
            tracing::warn!(path = %self.config.path.display(), video = have_video, audio = have_audio, "writing the MP4 without the stream that never delivered");
        }
        let muxer = match self.open(waiting.video.first(), waiting.audio.first()) {
            Ok(muxer) => muxer,
            Err(e) => {
                // Not a bad frame: the file cannot be written at all.
                self.set_output(Output::Failed(e.to_string()));
                return Err(e);
            }
        };
        let path = self.config.path.clone();
        // Stored before the held frames are written, so teardown finalises the file whatever
        // happens while they are.
        self.set_output(Output::Muxing(Box::new(muxer)));
        let Some(Recording {
            output: Output::Muxing(muxer),
            ..
        }) = &mut self.recording
        else {
            return Ok(());
        };
        // In timestamp order across the two streams, as they will be interleaved.
        let (mut v, mut a) = (
            waiting.video.iter().peekable(),
            waiting.audio.iter().peekable(),
        );
        loop {
            let video_first = match (v.peek(), a.peek()) {
                (Some(fv), Some(fa)) => fv.timestamp_ns <= fa.timestamp_ns,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let result = if video_first {
                v.next().map_or(Ok(()), |f| write_video(muxer, &path, f))
            } else {
                a.next().map_or(Ok(()), |f| write_audio(muxer, &path, f))
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "skipping a frame the MP4 writer could not encode");
            }
        }
        Ok(())
    }

    /// Handles one frame's outcome: a frame that cannot be encoded is skipped and counted;
    /// too many in a row fail the writer (the file is still finalised at teardown).
    fn outcome(&mut self, result: Result<()>) -> Result<()> {
        let Some(recording) = &mut self.recording else {
            return result;
        };
        if let Output::Failed(why) = &recording.output {
            return Err(StreamError::processor(why.clone()));
        }
        match result {
            Ok(()) => {
                recording.consecutive_errors = 0;
                Ok(())
            }
            Err(e) => {
                recording.consecutive_errors += 1;
                recording.skipped.add(1);
                if recording.consecutive_errors >= MAX_CONSECUTIVE_ERRORS {
                    return Err(e);
                }
                tracing::warn!(error = %e, "skipping a frame the MP4 writer could not encode");
                Ok(())
            }
        }
    }
}

/// Encodes one video frame.
fn write_video(muxer: &mut Muxer, path: &std::path::Path, frame: &VideoFrame) -> Result<()> {
    let Some(v) = &mut muxer.video else {
        return Ok(());
    };
    if frame.width == 0 || frame.height == 0 {
        return Err(ff_error(
            path,
            "skipped an empty video frame for",
            "0 pixels",
        ));
    }
    let offset = frame.timestamp_ns.saturating_sub(muxer.origin_ns);
    let mut pts = (u128::from(offset) * 90_000 / 1_000_000_000) as i64 + v.pts_shift;
    let frame_ticks = i64::from(90_000 / v.fps.max(1));
    if let Some(last) = v.last_pts {
        if pts < last - 90_000 {
            // The source started over (timestamps jumped back by more than a second):
            // continue one frame after the last one instead of squeezing frames together.
            v.pts_shift += last + frame_ticks - pts;
            pts = last + frame_ticks;
        }
        pts = pts.max(last + 1); // Strictly increasing, as the encoder requires.
    }
    v.last_pts = Some(pts);
    let source = pixel_of(frame.format);
    let stale = v.scaler.as_ref().is_none_or(|s| {
        let input = s.0.input();
        (input.format, input.width, input.height) != (source, frame.width, frame.height)
    });
    if stale {
        let context = scaling::Context::get(
            source,
            frame.width,
            frame.height,
            Pixel::YUV420P,
            v.width,
            v.height,
            // Same size: a pure colour conversion, where the fast path loses nothing.
            if (frame.width, frame.height) == (v.width, v.height) {
                scaling::Flags::FAST_BILINEAR
            } else {
                scaling::Flags::BILINEAR
            },
        )
        .map_err(|e| ff_error(path, "cannot convert video for", e))?;
        v.scaler = Some(Scaler(context));
        // The scaler's input, reused for every frame of this size (only the scaler reads it).
        v.input = frame::Video::new(source, frame.width, frame.height);
    }
    let input = &mut v.input;
    let stride = input.stride(0);
    let row = frame.width as usize * frame.format.bytes_per_pixel();
    {
        let data = input.data_mut(0);
        for y in 0..frame.height {
            let (Some(src), Some(dst)) = (
                frame.row(y),
                data.get_mut(y as usize * stride..y as usize * stride + row),
            ) else {
                break;
            };
            dst.copy_from_slice(src);
        }
    }
    let mut yuv = frame::Video::new(Pixel::YUV420P, v.width, v.height);
    if let Some(scaler) = &mut v.scaler {
        scaler
            .0
            .run(input, &mut yuv)
            .map_err(|e| ff_error(path, "cannot convert video for", e))?;
    }
    yuv.set_pts(Some(pts));
    v.encoder
        .send_frame(&yuv)
        .map_err(|e| ff_error(path, "cannot encode video for", e))?;
    v.frames.add(1);
    drain_video_packets(muxer, path)
}

fn drain_video_packets(muxer: &mut Muxer, path: &std::path::Path) -> Result<()> {
    let Some(v) = &mut muxer.video else {
        return Ok(());
    };
    let mut packet = Packet::empty();
    while v.encoder.receive_packet(&mut packet).is_ok() {
        packet.set_stream(v.stream);
        // Each frame lasts one nominal frame period (the last one's sets the file's end).
        packet.set_duration(i64::from(90_000 / v.fps.max(1)));
        packet.rescale_ts(VIDEO_TIME_BASE, v.stream_time_base);
        packet
            .write_interleaved(&mut muxer.output)
            .map_err(|e| ff_error(path, "cannot write video to", e))?;
    }
    Ok(())
}

/// Queues one audio frame and encodes every whole encoder frame.
fn write_audio(muxer: &mut Muxer, path: &std::path::Path, frame: &AudioFrame) -> Result<()> {
    let Some(a) = &mut muxer.audio else {
        return Ok(());
    };
    let mut samples = convert_channels(&frame.samples, frame.channels, a.channels);
    if frame.sample_rate == a.rate {
        // Back at the stream's rate: the old resampler's tail first, then no resampling.
        if let Some(mut resampler) = a.resampler.take() {
            let tail = resampler
                .flush()
                .map_err(|e| ff_error(path, "cannot resample audio for", e))?;
            a.fifo.extend(tail);
        }
    } else {
        if a.resampler
            .as_ref()
            .is_none_or(|r| r.from_rate() != frame.sample_rate)
        {
            a.resampler = Some(
                StreamResampler::new(frame.sample_rate, a.rate, a.channels)
                    .map_err(|e| ff_error(path, "cannot resample audio for", e))?,
            );
        }
        if let Some(resampler) = &mut a.resampler {
            samples = resampler
                .process(&samples)
                .map_err(|e| ff_error(path, "cannot resample audio for", e))?
                .into();
        }
    }
    // Keep the audio where its timestamps put it: fill gaps (dropped frames, a paused source)
    // with silence, drop what overlaps. (Not while resampling: the resampler's own latency
    // would read as drift.)
    let channels = usize::from(a.channels);
    let expected = (u128::from(frame.timestamp_ns.saturating_sub(muxer.origin_ns))
        * u128::from(a.rate)
        / 1_000_000_000) as i64
        + a.shift;
    let position = a.next_pts + (a.fifo.len() / channels) as i64;
    let tolerance = (u128::from(AUDIO_DRIFT_NS) * u128::from(a.rate) / 1_000_000_000) as i64;
    let drift = expected - position;
    let second = i64::from(a.rate);
    let mut skip = 0;
    if a.resampler.is_some() || drift.abs() <= tolerance {
        // On time (or resampling, whose own latency would read as drift).
    } else if drift > 0 && drift <= 60 * second {
        // A gap (dropped frames, a paused source): silence, as long as the gap.
        a.fifo
            .extend(std::iter::repeat_n(0.0, drift as usize * channels));
    } else if drift < 0 && -drift < second {
        // Overlap: drop what was already written.
        skip = ((-drift) as usize * channels).min(samples.len());
    } else {
        // A jump of over a minute forward or a second back: the source started over.
        // Continue where the audio is, as video does.
        a.shift -= drift;
    }
    let samples = &samples[skip..];
    a.samples.add((samples.len() / channels) as u64);
    a.fifo.extend(samples);
    let whole_frames = a.fifo.len() / (a.frame_size * usize::from(a.channels));
    for _ in 0..whole_frames {
        encode_audio_frame(muxer, path, None)?;
    }
    Ok(())
}

/// Encodes one encoder frame from the queue (`last`: the final, shorter one).
fn encode_audio_frame(
    muxer: &mut Muxer,
    path: &std::path::Path,
    last: Option<usize>,
) -> Result<()> {
    let Some(a) = &mut muxer.audio else {
        return Ok(());
    };
    let channels = usize::from(a.channels);
    let n = last.unwrap_or(a.frame_size);
    let mut encoded = frame::Audio::new(Sample::F32(SampleType::Planar), n, a.layout);
    encoded.set_rate(a.rate);
    for c in 0..channels {
        let plane = encoded.plane_mut::<f32>(c);
        for (i, slot) in plane.iter_mut().enumerate().take(n) {
            *slot = a.fifo.get(i * channels + c).copied().unwrap_or(0.0);
        }
    }
    let used = (n * channels).min(a.fifo.len());
    a.fifo.drain(..used);
    encoded.set_pts(Some(a.next_pts));
    a.next_pts += n as i64;
    a.encoder
        .send_frame(&encoded)
        .map_err(|e| ff_error(path, "cannot encode audio for", e))?;
    drain_audio_packets(muxer, path)
}

fn drain_audio_packets(muxer: &mut Muxer, path: &std::path::Path) -> Result<()> {
    let Some(a) = &mut muxer.audio else {
        return Ok(());
    };
    let mut packet = Packet::empty();
    while a.encoder.receive_packet(&mut packet).is_ok() {
        packet.set_stream(a.stream);
        packet.rescale_ts(Rational(1, a.rate as i32), a.stream_time_base);
        packet
            .write_interleaved(&mut muxer.output)
            .map_err(|e| ff_error(path, "cannot write audio to", e))?;
    }
    Ok(())
}

/// Flushes the encoders and writes the index (moov): the file is complete afterwards. Every
/// step is attempted even if an earlier one failed; the first error is returned.
fn finish(mut muxer: Muxer, path: &std::path::Path) -> Result<()> {
    let mut first_error: Option<StreamError> = None;
    let mut note = |r: Result<()>| {
        if let Err(e) = r {
            tracing::warn!(error = %e, "while finalising the MP4");
            first_error.get_or_insert(e);
        }
    };
    if let Some(a) = &mut muxer.audio {
        if let Some(resampler) = &mut a.resampler {
            match resampler.flush() {
                Ok(tail) => {
                    a.samples.add((tail.len() / usize::from(a.channels)) as u64);
                    a.fifo.extend(tail);
                }
                Err(e) => note(Err(ff_error(path, "cannot resample audio for", e))),
            }
        }
    }
    while let Some(a) = &muxer.audio {
        let pending = a.fifo.len() / usize::from(a.channels);
        if pending == 0 {
            break;
        }
        let n = pending.min(a.frame_size);
        let last = (n < a.frame_size).then_some(n);
        if let Err(e) = encode_audio_frame(&mut muxer, path, last) {
            note(Err(e));
            break;
        }
    }
    if let Some(v) = &mut muxer.video {
        note(
            v.encoder
                .send_eof()
                .map_err(|e| ff_error(path, "cannot finish video for", e)),
        );
    }
    note(drain_video_packets(&mut muxer, path));
    if let Some(a) = &mut muxer.audio {
        note(
            a.encoder
                .send_eof()
                .map_err(|e| ff_error(path, "cannot finish audio for", e)),
        );
    }
    note(drain_audio_packets(&mut muxer, path));
    note(
        muxer
            .output
            .write_trailer()
            .map_err(|e| ff_error(path, "cannot finish", e)),
    );
    match first_error {
        None => {
            tracing::info!(path = %path.display(), "MP4 file finalised");
            Ok(())
        }
        Some(e) => Err(e),
    }
}

impl crate::core::Processor for Mp4WriterProcessor::Processor {
    fn setup(&mut self, ctx: &RuntimeContext) -> Result<()> {
        ffmpeg_util::init();
        // Created now, so a path that cannot be written fails here, not at the first frame.
        let file = ctx
            .files()
            .create(&self.config.path)
            .map_err(|e| e.for_processor("Mp4WriterProcessor"))?;
        self.recording = Some(Recording {
            ctx: ctx.clone(),
            file: Some(file),
            skipped: ctx.counter("skipped_frames"),
            consecutive_errors: 0,
            output: Output::Waiting(Waiting::default()),
            counted_before: ctx.metrics(),
        });
        Ok(())
    }

    fn process(&mut self) -> Result<()> {
        // Alternate between the inputs so that a slow encoder does not starve either.
        loop {
            let mut any = false;
            for _ in 0..4 {
                let Some(frame) = self.video.read_next() else {
                    break;
                };
                let result = self.take_video(frame);
                self.outcome(result)?;
                any = true;
            }
            for _ in 0..16 {
                let Some(frame) = self.audio.read_next() else {
                    break;
                };
                let result = self.take_audio(frame);
                self.outcome(result)?;
                any = true;
            }
            if !any {
                return Ok(());
            }
        }
    }

    fn on_end_of_stream(&mut self) -> Result<()> {
        // Every input has ended: the file is completed now, playable at once.
        let Some(recording) = &self.recording else {
            return Ok(());
        };
        let (ctx, before) = (recording.ctx.clone(), recording.counted_before.clone());
        let muxing = matches!(recording.output, Output::Muxing(_));
        let result = self.complete();
        let metrics = ctx.metrics();
        let this_run = |name: &str| {
            let now = metrics.get(name).copied().unwrap_or(0);
            now.saturating_sub(before.get(name).copied().unwrap_or(0))
        };
        let video_frames = this_run("video_frames");
        let audio_samples = this_run("audio_samples");
        if !muxing && video_frames + audio_samples == 0 {
            // Nothing came: the empty file was removed (`file_removed` said so).
            return result;
        }
        ctx.emit_event(
            "file_written",
            serde_json::json!({
                "path": ctx.files().location(&self.config.path),
                "video_frames": video_frames,
                "audio_samples": audio_samples,
                // A file with no frame at all is not a playable MP4.
                "complete": result.is_ok() && (muxing || video_frames + audio_samples > 0),
            }),
        );
        result
    }

    fn teardown(&mut self) -> Result<()> {
        // The runtime has already let this writer empty its inputs (stop drains upstream
        // first; removal detaches the links): only the frames held for the header remain.
        // (Nothing left to do if the end of stream completed the file.)
        self.complete()
    }
}

impl Mp4WriterProcessor::Processor {
    /// Writes what is held and finalises the file (once; later calls do nothing).
    fn complete(&mut self) -> Result<()> {
        if self.recording.is_none() {
            return Ok(());
        }
        let started = self.start_when_ready(true);
        let Some(recording) = self.recording.take() else {
            return started;
        };
        let finished = match recording.output {
            Output::Muxing(muxer) => finish(*muxer, &self.config.path),
            // No frame ever came: the file created at setup is empty and would not play, so it
            // goes (if it is still the one created).
            _ => {
                if let Some(file) = &recording.file {
                    if recording
                        .ctx
                        .files()
                        .remove_if_empty(&self.config.path, file)
                    {
                        recording.ctx.emit_event(
                            "file_removed",
                            serde_json::json!({
                                "path": recording.ctx.files().location(&self.config.path),
                                "reason": "no frame arrived, so the empty file was removed",
                            }),
                        );
                    }
                }
                Ok(())
            }
        };
        started.and(finished)
    }
}
