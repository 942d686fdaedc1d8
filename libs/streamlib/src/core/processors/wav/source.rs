//! `WavSourceProcessor`: plays a WAV file as audio frames.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::wav_error;
use crate::core::context::RuntimeContext;
use crate::core::error::{Result, StreamError};
use crate::core::frames::{AudioFrame, media_clock_ns};
use crate::core::links::LinkOutput;
use crate::core::processors::{ConfigError, ProcessorConfig};
use crate::core::runtime::StopSignal;

/// Config of [`WavSourceProcessor`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WavSourceConfig {
    /// The WAV file to play (PCM 8/16/24/32-bit or 32-bit float). Required.
    pub path: PathBuf,
    /// Samples per channel in each frame (16 to 96000).
    pub frame_size: u32,
    /// Start again from the beginning at the end (timestamps keep increasing).
    #[serde(rename = "loop")]
    pub looping: bool,
    /// Pace frames to real time (true), or send them as fast as downstream takes them (use a
    /// `backpressure` link so none are dropped).
    pub realtime: bool,
}

impl Default for WavSourceConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::new(),
            frame_size: 1024,
            looping: false,
            realtime: true,
        }
    }
}

impl ProcessorConfig for WavSourceConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(ConfigError::new(
                "path",
                "is required: the WAV file to play",
            ));
        }
        ConfigError::check_range("frame_size", self.frame_size, 16, 96_000)
    }
}

/// The open file and where playback is: everything one run has, built in `setup`, dropped in
/// `teardown`.
struct Playing {
    ctx: RuntimeContext,
    stop: StopSignal,
    /// Frames sent so far (across loops).
    frame_number: u64,
    reader: hound::WavReader<BufReader<File>>,
    spec: hound::WavSpec,
    /// Media-clock time of the first sample, set at the first `process` (when the graph
    /// starts), so pacing does not begin during other processors' setup.
    start_ns: Option<u64>,
    /// Samples per channel sent so far (across loops).
    sent: u64,
    ended: bool,
}

/// Reads a WAV file and sends it as audio frames of `frame_size` samples (the last one
/// shorter), as f32 at the file's rate and channel count, paced to real time or as fast as
/// downstream takes them. At the end it emits an `end_of_stream` event and ends its output, so
/// downstream finishes (or it starts over with `loop`). A missing or malformed file fails
/// `setup` with the reason.
#[streamlib::processor(
    execution = Continuous,
    description = "Plays a WAV file as audio frames, paced to real time or as fast as downstream takes them"
)]
pub struct WavSourceProcessor {
    #[streamlib::output(description = "The file's audio, f32 at its own rate and channels")]
    audio: LinkOutput<AudioFrame>,
    #[streamlib::config]
    config: WavSourceConfig,
    /// The run's state, `Some` between `setup` and `teardown`.
    playing: Option<Playing>,
}

/// Reads up to `n` interleaved samples as f32 in [-1, 1].
fn read_samples(
    reader: &mut hound::WavReader<BufReader<File>>,
    spec: hound::WavSpec,
    n: usize,
) -> std::result::Result<Vec<f32>, hound::Error> {
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, _) => reader.samples::<f32>().take(n).collect(),
        (hound::SampleFormat::Int, 16) => reader
            .samples::<i16>()
            .take(n)
            .map(|s| s.map(|v| f32::from(v) / 32_768.0))
            .collect(),
        (hound::SampleFormat::Int, bits) => {
            let scale = 1.0 / (1u64 << (bits.clamp(1, 32) - 1)) as f32;
            reader
                .samples::<i32>()
                .take(n)
                .map(|s| s.map(|v| v as f32 * scale))
                .collect()
        }
    }
}

impl crate::core::Processor for WavSourceProcessor::Processor {
    fn setup(&mut self, ctx: &RuntimeContext) -> Result<()> {
        let shown = self.config.path.display().to_string();
        let file = ctx
            .files()
            .open_read(&self.config.path)
            .map_err(|e| e.for_processor("WavSourceProcessor"))?;
        let reader = hound::WavReader::new(std::io::BufReader::new(file))
            .map_err(|e| wav_error(format!("WavSourceProcessor: cannot read '{shown}'"), e))?;
        let spec = reader.spec();
        if spec.sample_format == hound::SampleFormat::Float && spec.bits_per_sample != 32 {
            return Err(StreamError::processor(format!(
                "WavSourceProcessor: '{shown}' holds {}-bit float samples; only 32-bit float is supported",
                spec.bits_per_sample
            )));
        }
        self.playing = Some(Playing {
            ctx: ctx.clone(),
            stop: ctx.stop_signal(),
            frame_number: 0,
            reader,
            spec,
            start_ns: None,
            sent: 0,
            ended: false,
        });
        Ok(())
    }

    fn process(&mut self) -> Result<()> {
        let Some(playing) = &mut self.playing else {
            return Ok(());
        };
        if playing.ended {
            // Nothing more to send: wait to be stopped without spinning.
            playing.stop.sleep(Duration::from_millis(500));
            return Ok(());
        }
        let rate = playing.spec.sample_rate.max(1);
        let start_ns = *playing.start_ns.get_or_insert_with(media_clock_ns);
        let timestamp = start_ns.saturating_add(
            u64::try_from(u128::from(playing.sent) * 1_000_000_000 / u128::from(rate))
                .unwrap_or(u64::MAX),
        );
        if self.config.realtime {
            let now = media_clock_ns();
            if timestamp > now && !playing.stop.sleep(Duration::from_nanos(timestamp - now)) {
                return Ok(());
            }
        }
        let channels = usize::from(playing.spec.channels.max(1));
        let wanted = self.config.frame_size as usize * channels;
        // A file shorter than its header says (cut off while being written) ends there.
        let samples = match read_samples(&mut playing.reader, playing.spec, wanted) {
            Ok(samples) => samples,
            Err(e) => {
                tracing::warn!(path = %self.config.path.display(), error = %e, "the WAV file ends early");
                Vec::new()
            }
        };
        let whole = samples.len() / channels * channels;
        if whole > 0 {
            let frame = AudioFrame::new(
                rate,
                playing.spec.channels,
                &samples[..whole],
                timestamp,
                playing.frame_number,
            )?;
            self.audio.write(frame);
            playing.frame_number += 1;
            playing.sent += (whole / channels) as u64;
        }
        if samples.len() < wanted {
            if self.config.looping && playing.sent > 0 {
                playing.reader.seek(0).map_err(|e| {
                    wav_error(
                        format!(
                            "WavSourceProcessor: cannot rewind '{}'",
                            self.config.path.display()
                        ),
                        e,
                    )
                })?;
            } else if !playing.ctx.stop_signal().is_stopping() {
                // (Stopped while sending the last frames: the stream did not end.)
                playing.ended = true;
                playing.ctx.emit_event(
                    "end_of_stream",
                    serde_json::json!({
                        "path": self.config.path,
                        "frames": playing.frame_number,
                        "samples_per_channel": playing.sent,
                    }),
                );
                self.audio.end();
            }
        }
        Ok(())
    }

    fn teardown(&mut self) -> Result<()> {
        self.playing = None;
        Ok(())
    }
}
