//! `FileSourceProcessor`: decodes a media file to RGBA video and f32 audio frames.

use std::path::PathBuf;
use std::time::Duration;

use ffmpeg::format::{Pixel, Sample, sample::Type as SampleType};
use ffmpeg::software::{resampling, scaling};
use ffmpeg::{ChannelLayout, Packet, Rational, codec, decoder, format, frame, media};
use ffmpeg_next as ffmpeg;
use serde::{Deserialize, Serialize};

use super::ffmpeg_util::{self, Scaler};
use crate::core::context::{Counter, RuntimeContext};
use crate::core::error::{Result, StreamError};
use crate::core::frames::{AudioFrame, VideoFrame, media_clock_ns};
use crate::core::links::LinkOutput;
use crate::core::processors::{ConfigError, ProcessorConfig};
use crate::core::runtime::StopSignal;

/// Config of [`FileSourceProcessor`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FileSourceConfig {
    /// The file to play: any container and codec FFmpeg reads (MP4, MKV, WebM, MOV, MP3,
    /// WAV, ...). Required.
    pub path: PathBuf,
    /// Start again from the beginning at the end (timestamps keep increasing).
    #[serde(rename = "loop")]
    pub looping: bool,
    /// Pace frames by their timestamps (true), or decode as fast as downstream takes them
    /// (connect with `backpressure` links so that none are dropped).
    pub realtime: bool,
}

impl Default for FileSourceConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::new(),
            looping: false,
            realtime: true,
        }
    }
}

impl ProcessorConfig for FileSourceConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(ConfigError::new(
                "path",
                "is required: the media file to play",
            ));
        }
        if self.path.to_str().is_none_or(|p| p.contains('\0')) {
            return Err(ConfigError::new(
                "path",
                "must be valid UTF-8 without NUL characters",
            ));
        }
        Ok(())
    }
}

/// The best video stream's decoder and its conversion to RGBA.
struct VideoTrack {
    index: usize,
    time_base: Rational,
    /// One frame's duration (from the stream's frame rate), for where a pass ends.
    frame_ns: u64,
    decoder: decoder::Video,
    scaler: Option<Scaler>,
    frames: Counter,
}

/// The best audio stream's decoder and its conversion to packed f32.
struct AudioTrack {
    index: usize,
    time_base: Rational,
    decoder: decoder::Audio,
    resampler: Option<resampling::Context>,
    frames: Counter,
}

/// The open file and where playback is: everything one run has, built in `setup`, dropped in
/// `teardown`.
struct Playback {
    ctx: RuntimeContext,
    stop: StopSignal,
    /// Frame numbers sent so far, per stream.
    video_number: u64,
    audio_number: u64,
    input: format::context::Input,
    video: Option<VideoTrack>,
    audio: Option<AudioTrack>,
    /// The file's own time of its first frame (the earliest stream start), in ns: both
    /// streams are measured from it, so their offset is kept.
    origin_ns: i128,
    /// Media-clock time of the file's start (moved on by each loop); set at the first
    /// `process`, so pacing starts when the graph does.
    start_ns: Option<u64>,
    /// The end of the latest frame sent in this pass (timestamp + duration), relative to its
    /// start: where the next pass begins.
    reached_ns: u64,
    draining: bool,
    ended: bool,
}

/// Decodes a media file with FFmpeg and sends its best video stream as RGBA frames on
/// `video` and its best audio stream as interleaved f32 frames (the file's rate and channels)
/// on `audio`, stamped by the file's timestamps. Paced to real time, or as fast as downstream
/// takes them. At the end it emits `end_of_stream` and ends its outputs, so downstream finishes
/// (or it starts over with `loop`). A missing,
/// unreadable or corrupt file fails `setup` with FFmpeg's reason; a corrupt packet later is
/// skipped.
#[streamlib::processor(
    execution = Continuous,
    description = "Decodes a media file (anything FFmpeg reads) to RGBA video and f32 audio frames"
)]
pub struct FileSourceProcessor {
    #[streamlib::output(description = "The file's video, RGBA")]
    video: LinkOutput<VideoFrame>,
    #[streamlib::output(description = "The file's audio, interleaved f32 at its own rate")]
    audio: LinkOutput<AudioFrame>,
    #[streamlib::config]
    config: FileSourceConfig,
    /// The run's state, `Some` between `setup` and `teardown`.
    playback: Option<Playback>,
}

fn error(path: &std::path::Path, what: &str, e: impl std::fmt::Display) -> StreamError {
    StreamError::processor(format!(
        "FileSourceProcessor: {what} '{}': {e}",
        path.display()
    ))
}

/// Demuxers a file in the media directory may use (`format_whitelist`): the ones that read
/// only the file itself.
const SELF_CONTAINED_FORMATS: &str =
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,flv,mpegts,wav,mp3,flac,ogg,aac,ivf,h264,hevc";

/// A `protocol_whitelist` that matches no FFmpeg protocol.
const NO_PROTOCOL: &str = "none";

/// `pts` in `time_base`, as nanoseconds of the file's clock.
fn pts_ns(pts: i64, time_base: Rational) -> i128 {
    i128::from(pts) * i128::from(time_base.numerator()) * 1_000_000_000
        / i128::from(time_base.denominator().max(1))
}

/// Nanoseconds from the file's origin to `pts` (0 before it).
fn relative_ns(pts: i64, time_base: Rational, origin_ns: i128) -> u64 {
    u64::try_from((pts_ns(pts, time_base) - origin_ns).max(0)).unwrap_or(u64::MAX)
}

/// Audio may leave this long before its time, so that pacing in file order does not hold
/// video back behind audio muxed ahead of it.
const AUDIO_LEAD_NS: u64 = 100_000_000;
/// A timestamp further ahead than this is a discontinuity (a corrupt jump), not a wait.
const MAX_WAIT_AHEAD_NS: u64 = 10_000_000_000;

impl FileSourceProcessor::Processor {
    /// Opens the file and its decoders.
    fn open(&self, ctx: &RuntimeContext) -> Result<Playback> {
        let path = &self.config.path;
        let file = ctx
            .files()
            .open_read(path)
            .map_err(|e| e.for_processor("FileSourceProcessor"))?;
        let io = format::context::StreamIo::from_read_seek(file)
            .map_err(|e| error(path, "cannot open", e))?;
        let mut options = ffmpeg::Dictionary::new();
        if ctx.files().media_dir().is_some() {
            // Containers that hold their media themselves: playlists and concat lists (HLS,
            // DASH, concat, image sequences) would open further files by name, around the
            // media directory.
            options.set("format_whitelist", SELF_CONTAINED_FORMATS);
            // And should one of those still try to open another resource (a MOV external
            // data reference, say), no protocol is allowed: our `StreamIo` is the only input.
            options.set("protocol_whitelist", NO_PROTOCOL);
        }
        let input = format::input_from_stream(io, path.to_str(), Some(options))
            .map_err(|e| error(path, "cannot open", e))?;
        let open_decoder = |stream: format::stream::Stream| -> std::result::Result<
            codec::decoder::Decoder,
            ffmpeg::Error,
        > {
            let mut context = codec::context::Context::from_parameters(stream.parameters())?;
            // Frame threads, as many as cores (FFmpeg's own default).
            context.set_threading(ffmpeg::threading::Config::kind(ffmpeg::threading::Type::Frame));
            let mut decoder = context.decoder();
            decoder.set_packet_time_base(stream.time_base());
            Ok(decoder)
        };
        let start_of = |stream: &format::stream::Stream| {
            let start = stream.start_time();
            pts_ns(
                if start == ffmpeg::ffi::AV_NOPTS_VALUE {
                    0
                } else {
                    start
                },
                stream.time_base(),
            )
        };
        let mut origin_ns: Option<i128> = None;
        let video = match input.streams().best(media::Type::Video) {
            Some(stream) => Some(VideoTrack {
                index: stream.index(),
                time_base: stream.time_base(),
                frame_ns: {
                    origin_ns = Some(start_of(&stream));
                    let rate = stream.avg_frame_rate();
                    let rate = if rate.numerator() > 0 && rate.denominator() > 0 {
                        rate
                    } else {
                        stream.rate()
                    };
                    if rate.numerator() > 0 && rate.denominator() > 0 {
                        (1_000_000_000 * i64::from(rate.denominator())
                            / i64::from(rate.numerator()))
                        .max(1) as u64
                    } else {
                        33_333_333
                    }
                },
                decoder: open_decoder(stream)
                    .and_then(|d| d.video())
                    .map_err(|e| error(path, "cannot decode the video of", e))?,
                scaler: None,
                frames: ctx.counter("video_frames"),
            }),
            None => None,
        };
        if let Some(stream) = input.streams().best(media::Type::Audio) {
            let start = start_of(&stream);
            origin_ns = Some(origin_ns.map_or(start, |o| o.min(start)));
        }
        let audio = match input.streams().best(media::Type::Audio) {
            Some(stream) => Some(AudioTrack {
                index: stream.index(),
                time_base: stream.time_base(),
                decoder: open_decoder(stream)
                    .and_then(|d| d.audio())
                    .map_err(|e| error(path, "cannot decode the audio of", e))?,
                resampler: None,
                frames: ctx.counter("audio_frames"),
            }),
            None => None,
        };
        if video.is_none() && audio.is_none() {
            return Err(error(
                path,
                "found no video or audio stream in",
                "nothing to play",
            ));
        }
        Ok(Playback {
            ctx: ctx.clone(),
            stop: ctx.stop_signal(),
            video_number: 0,
            audio_number: 0,
            input,
            video,
            audio,
            origin_ns: origin_ns.unwrap_or(0),
            start_ns: None,
            reached_ns: 0,
            draining: false,
            ended: false,
        })
    }

    /// The media-clock time of a frame `offset` into the pass. When pacing, an offset
    /// implausibly far ahead of now is a discontinuity (a corrupt jump): the start moves back
    /// so that this frame is due now, rather than the source sleeping for it.
    fn timestamp_of(&mut self, offset: u64) -> u64 {
        let realtime = self.config.realtime;
        let Some(start) = self.playback.as_mut().and_then(|p| p.start_ns.as_mut()) else {
            return offset;
        };
        let timestamp = start.saturating_add(offset);
        let now = media_clock_ns();
        if realtime && timestamp > now.saturating_add(MAX_WAIT_AHEAD_NS) {
            *start = start.saturating_sub(timestamp - now);
            return now;
        }
        timestamp
    }

    /// Waits until `timestamp` on the media clock when pacing; false if stopped meanwhile.
    fn pace(&self, timestamp: u64) -> bool {
        if !self.config.realtime {
            return true;
        }
        let now = media_clock_ns();
        match &self.playback {
            Some(playback) if timestamp > now => {
                playback.stop.sleep(Duration::from_nanos(timestamp - now))
            }
            _ => true,
        }
    }

    /// Sends every frame the video decoder has ready.
    fn drain_video(&mut self) -> Result<()> {
        let path = self.config.path.clone();
        loop {
            let Some(playback) = &mut self.playback else {
                return Ok(());
            };
            let Some(track) = &mut playback.video else {
                return Ok(());
            };
            let mut decoded = frame::Video::empty();
            if track.decoder.receive_frame(&mut decoded).is_err() {
                return Ok(()); // Needs more input, or drained.
            }
            let (w, h) = (decoded.width(), decoded.height());
            let stale = track.scaler.as_ref().is_none_or(|s| {
                let input = s.0.input();
                (input.format, input.width, input.height) != (decoded.format(), w, h)
            });
            if stale {
                let context = scaling::Context::get(
                    decoded.format(),
                    w,
                    h,
                    Pixel::RGBA,
                    w,
                    h,
                    // No resizing: a colour conversion, which takes the fast path.
                    scaling::Flags::FAST_BILINEAR,
                )
                .map_err(|e| error(&path, "cannot convert the video of", e))?;
                track.scaler = Some(Scaler(context));
            }
            let mut rgba = frame::Video::empty();
            if let Some(scaler) = &mut track.scaler {
                scaler
                    .0
                    .run(&decoded, &mut rgba)
                    .map_err(|e| error(&path, "cannot convert the video of", e))?;
            }
            let row = w as usize * 4;
            let stride = rgba.stride(0);
            let data = rgba.data(0);
            let mut pixels = Vec::with_capacity(row * h as usize);
            for y in 0..h as usize {
                if let Some(line) = data.get(y * stride..y * stride + row) {
                    pixels.extend_from_slice(line);
                }
            }
            let offset = decoded
                .timestamp()
                .or(decoded.pts())
                .map_or(playback.reached_ns, |pts| {
                    relative_ns(pts, track.time_base, playback.origin_ns)
                });
            playback.reached_ns = playback
                .reached_ns
                .max(offset.saturating_add(track.frame_ns));
            let frames = track.frames.clone();
            let number = playback.video_number;
            let timestamp = self.timestamp_of(offset);
            let frame = VideoFrame::from_rgba(w, h, pixels, timestamp, number)?;
            if !self.pace(timestamp) {
                return Ok(());
            }
            if let Some(playback) = &mut self.playback {
                playback.video_number += 1;
            }
            frames.add(1);
            self.video.write(frame);
        }
    }

    /// Sends every frame the audio decoder has ready.
    fn drain_audio(&mut self) -> Result<()> {
        let path = self.config.path.clone();
        loop {
            let Some(playback) = &mut self.playback else {
                return Ok(());
            };
            let Some(track) = &mut playback.audio else {
                return Ok(());
            };
            let mut decoded = frame::Audio::empty();
            if track.decoder.receive_frame(&mut decoded).is_err() {
                return Ok(());
            }
            if decoded.samples() == 0 {
                continue;
            }
            let channels = decoded.channels().max(1);
            if decoded.channel_layout().is_empty() {
                decoded.set_channel_layout(ChannelLayout::default(i32::from(channels)));
            }
            let stale = track.resampler.as_ref().is_none_or(|r| {
                let input = r.input();
                (input.format, input.channel_layout, input.rate)
                    != (decoded.format(), decoded.channel_layout(), decoded.rate())
            });
            if stale {
                let context = resampling::Context::get(
                    decoded.format(),
                    decoded.channel_layout(),
                    decoded.rate(),
                    Sample::F32(SampleType::Packed),
                    decoded.channel_layout(),
                    decoded.rate(),
                )
                .map_err(|e| error(&path, "cannot convert the audio of", e))?;
                track.resampler = Some(context);
            }
            let mut packed = frame::Audio::new(
                Sample::F32(SampleType::Packed),
                decoded.samples() + 32,
                decoded.channel_layout(),
            );
            if let Some(resampler) = &mut track.resampler {
                resampler
                    .run(&decoded, &mut packed)
                    .map_err(|e| error(&path, "cannot convert the audio of", e))?;
            }
            let samples = packed.plane::<f32>(0);
            let whole = samples.len() / usize::from(channels) * usize::from(channels);
            if whole == 0 {
                continue;
            }
            let offset = decoded
                .timestamp()
                .or(decoded.pts())
                .map_or(playback.reached_ns, |pts| {
                    relative_ns(pts, track.time_base, playback.origin_ns)
                });
            let duration_ns = (whole / usize::from(channels)) as u64 * 1_000_000_000
                / u64::from(decoded.rate().max(1));
            playback.reached_ns = playback.reached_ns.max(offset.saturating_add(duration_ns));
            let frames = track.frames.clone();
            let rate = decoded.rate().max(1);
            let number = playback.audio_number;
            let timestamp = self.timestamp_of(offset);
            let frame = AudioFrame::new(rate, channels, &samples[..whole], timestamp, number)?;
            if !self.pace(timestamp.saturating_sub(AUDIO_LEAD_NS)) {
                return Ok(());
            }
            if let Some(playback) = &mut self.playback {
                playback.audio_number += 1;
            }
            frames.add(1);
            self.audio.write(frame);
        }
    }

    /// The end of one pass: start over, or report the end.
    fn end_of_pass(&mut self) -> Result<()> {
        let path = self.config.path.clone();
        let Some(playback) = &mut self.playback else {
            return Ok(());
        };
        if self.config.looping && playback.reached_ns > 0 {
            playback
                .input
                .seek(0, ..)
                .map_err(|e| error(&path, "cannot rewind", e))?;
            if let Some(track) = &mut playback.video {
                track.decoder.flush();
            }
            if let Some(track) = &mut playback.audio {
                track.decoder.flush();
            }
            // The next pass starts where this one's last frame ended.
            playback.start_ns = playback
                .start_ns
                .map(|start| start.saturating_add(playback.reached_ns));
            playback.reached_ns = 0;
            playback.draining = false;
            return Ok(());
        }
        playback.ended = true;
        // Stopped while draining: the stream did not end.
        if playback.stop.is_stopping() {
            return Ok(());
        }
        playback.ctx.emit_event(
            "end_of_stream",
            serde_json::json!({
                "path": path,
                "video_frames": playback.video_number,
                "audio_frames": playback.audio_number,
            }),
        );
        // Downstream gets every frame, then the end of the stream.
        self.video.end();
        self.audio.end();
        Ok(())
    }
}

impl crate::core::Processor for FileSourceProcessor::Processor {
    fn setup(&mut self, ctx: &RuntimeContext) -> Result<()> {
        ffmpeg_util::init();
        self.playback = Some(self.open(ctx)?);
        Ok(())
    }

    fn process(&mut self) -> Result<()> {
        let Some(playback) = &mut self.playback else {
            return Ok(());
        };
        playback.start_ns.get_or_insert_with(media_clock_ns);
        if playback.ended {
            playback.stop.sleep(Duration::from_millis(500));
            return Ok(());
        }
        if playback.draining {
            self.drain_video()?;
            self.drain_audio()?;
            return self.end_of_pass();
        }
        let mut packet = Packet::empty();
        match packet.read(&mut playback.input) {
            Ok(()) => {
                let stream = packet.stream();
                // A corrupt packet is skipped: the decoder resynchronises on the next one.
                if let Some(track) = playback.video.as_mut().filter(|t| t.index == stream) {
                    if let Err(e) = track.decoder.send_packet(&packet) {
                        tracing::debug!(error = %e, "skipping a video packet");
                    }
                    return self.drain_video();
                }
                if let Some(track) = playback.audio.as_mut().filter(|t| t.index == stream) {
                    if let Err(e) = track.decoder.send_packet(&packet) {
                        tracing::debug!(error = %e, "skipping an audio packet");
                    }
                    return self.drain_audio();
                }
                Ok(())
            }
            Err(ffmpeg::Error::Eof) => {
                if let Some(track) = &mut playback.video {
                    let _ = track.decoder.send_eof();
                }
                if let Some(track) = &mut playback.audio {
                    let _ = track.decoder.send_eof();
                }
                playback.draining = true;
                Ok(())
            }
            Err(ffmpeg::Error::InvalidData) => Ok(()),
            Err(e) => Err(error(&self.config.path, "cannot read", e)),
        }
    }

    fn teardown(&mut self) -> Result<()> {
        self.playback = None;
        Ok(())
    }
}
