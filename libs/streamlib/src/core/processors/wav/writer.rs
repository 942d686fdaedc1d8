//! `WavWriterProcessor`: records audio to a WAV file.

use crate::core::files::CappedFile;
use std::io::BufWriter;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::wav_error;
use crate::core::context::{Counter, RuntimeContext};
use crate::core::error::{Result, StreamError};
use crate::core::frames::AudioFrame;
use crate::core::links::LinkInput;
use crate::core::processors::{ConfigError, ProcessorConfig};

/// How samples are stored in the file.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum WavSampleFormat {
    /// 32-bit float: exactly the samples streamlib carries.
    #[default]
    F32,
    /// 16-bit integer (CD quality; what every player reads).
    I16,
    /// 24-bit integer.
    I24,
}

/// Config of [`WavWriterProcessor`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WavWriterConfig {
    /// The file to write (created or replaced). Required.
    pub path: PathBuf,
    /// Sample storage in the file.
    pub sample_format: WavSampleFormat,
}

/// The most sample data a WAV file holds (its sizes are 32-bit), with room for the header.
const WAV_LIMIT_BYTES: u64 = u32::MAX as u64 - 1024;
/// At least the size of the header hound writes before the samples (44 bytes for integer
/// samples, more for float's extensible format).
const WAV_HEADER_BYTES: u64 = 128;

impl WavSampleFormat {
    /// Bytes per sample in the file.
    fn bytes(self) -> u32 {
        match self {
            WavSampleFormat::F32 => 4,
            WavSampleFormat::I16 => 2,
            WavSampleFormat::I24 => 3,
        }
    }
}

impl Default for WavWriterConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::new(),
            sample_format: WavSampleFormat::F32,
        }
    }
}

impl ProcessorConfig for WavWriterConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(ConfigError::new(
                "path",
                "is required: the WAV file to write",
            ));
        }
        Ok(())
    }
}

/// The file being written.
enum Output {
    /// Created, waiting for the first frame to know rate and channels.
    Created(CappedFile),
    Writing {
        writer: hound::WavWriter<BufWriter<CappedFile>>,
        rate: u32,
        channels: u16,
    },
}

/// Writes the audio on its input to a WAV file (f32, 16- or 24-bit), with the rate and channel
/// count of the first frame. The file is created at setup (so a bad path fails at once) and
/// finalised at the end of its input's stream, at stop or at removal, after every queued frame
/// is written; if no audio came, the empty file is removed. A frame in another format
/// is an error (the file keeps what came before).
#[streamlib::processor(
    execution = Reactive,
    description = "Writes its audio input to a WAV file (f32, i16 or i24), finalised at stop"
)]
pub struct WavWriterProcessor {
    #[streamlib::input(description = "Audio to record (one rate and channel count)")]
    audio: LinkInput<AudioFrame>,
    #[streamlib::config]
    config: WavWriterConfig,
    output: Option<Output>,
    samples_written: Option<Counter>,
    bytes_written: u64,
    /// Where this run's file must stop (the file cap, less room to finalise), from setup.
    write_limit: u64,
    /// The file cap, for the message.
    max_file_bytes: u64,
    /// This run's context (for the `file_written` event).
    ctx: Option<RuntimeContext>,
    /// `samples_written` when this run began.
    samples_before: u64,
}

impl WavWriterProcessor::Processor {
    fn shown(&self) -> String {
        self.config.path.display().to_string()
    }

    fn write(&mut self, frame: &AudioFrame) -> Result<()> {
        let shown = self.shown();
        let format = self.config.sample_format;
        let output = match self.output.take() {
            Some(Output::Created(file)) => {
                let (bits, sample_format) = match format {
                    WavSampleFormat::F32 => (32, hound::SampleFormat::Float),
                    WavSampleFormat::I16 => (16, hound::SampleFormat::Int),
                    WavSampleFormat::I24 => (24, hound::SampleFormat::Int),
                };
                let spec = hound::WavSpec {
                    channels: frame.channels,
                    sample_rate: frame.sample_rate,
                    bits_per_sample: bits,
                    sample_format,
                };
                let writer = hound::WavWriter::new(BufWriter::new(file), spec).map_err(|e| {
                    wav_error(format!("WavWriterProcessor: cannot write '{shown}'"), e)
                })?;
                Output::Writing {
                    writer,
                    rate: frame.sample_rate,
                    channels: frame.channels,
                }
            }
            Some(other) => other,
            None => return Ok(()),
        };
        let Output::Writing {
            mut writer,
            rate,
            channels,
        } = output
        else {
            return Ok(());
        };
        if (rate, channels) != (frame.sample_rate, frame.channels) {
            self.output = Some(Output::Writing {
                writer,
                rate,
                channels,
            });
            return Err(StreamError::processor(format!(
                "WavWriterProcessor: '{shown}' is {rate} Hz {channels} ch, a frame came at {} Hz {} ch (put an AudioResamplerProcessor or AudioChannelConverterProcessor in front)",
                frame.sample_rate, frame.channels
            )));
        }
        // A WAV file's sizes are 32-bit: stop cleanly before 4 GiB rather than corrupt it.
        let bytes = frame.samples.len() as u64 * u64::from(format.bytes());
        if self.bytes_written + bytes > WAV_LIMIT_BYTES {
            self.output = Some(Output::Writing {
                writer,
                rate,
                channels,
            });
            return Err(StreamError::processor(format!(
                "WavWriterProcessor: '{shown}' reached the 4 GiB limit of the WAV format; it is finalised with what came before (use Mp4WriterProcessor, or several files, for longer recordings)"
            )));
        }
        // The server's cap on written files: stop at a frame boundary before the file would be
        // refused mid-frame (the header counts too), so it can be finalised.
        if WAV_HEADER_BYTES + self.bytes_written + bytes > self.write_limit {
            self.output = Some(Output::Writing {
                writer,
                rate,
                channels,
            });
            return Err(StreamError::processor(format!(
                "WavWriterProcessor: '{shown}' reached the per-file cap of {} bytes (--max-file-mib); it is finalised with what came before",
                self.max_file_bytes
            )));
        }
        self.bytes_written += bytes;
        let result = frame.samples.iter().try_for_each(|&s| match format {
            WavSampleFormat::F32 => writer.write_sample(s),
            WavSampleFormat::I16 => {
                writer.write_sample((s * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16)
            }
            WavSampleFormat::I24 => writer
                .write_sample((s * 8_388_608.0).round().clamp(-8_388_608.0, 8_388_607.0) as i32),
        });
        self.output = Some(Output::Writing {
            writer,
            rate,
            channels,
        });
        result.map_err(|e| wav_error(format!("WavWriterProcessor: cannot write '{shown}'"), e))?;
        if let Some(counter) = &self.samples_written {
            counter.add(frame.samples_per_channel() as u64);
        }
        Ok(())
    }
}

impl crate::core::Processor for WavWriterProcessor::Processor {
    fn setup(&mut self, ctx: &RuntimeContext) -> Result<()> {
        let file = ctx
            .files()
            .create(&self.config.path)
            .map_err(|e| e.for_processor("WavWriterProcessor"))?;
        self.output = Some(Output::Created(file));
        self.ctx = Some(ctx.clone());
        self.write_limit = ctx.files().write_limit();
        self.max_file_bytes = ctx.files().max_file_bytes();
        let samples = ctx.counter("samples_written");
        // The counter adds up across runs; this run's file holds what comes from now on.
        self.samples_before = samples.get();
        self.samples_written = Some(samples);
        Ok(())
    }

    fn process(&mut self) -> Result<()> {
        while let Some(frame) = self.audio.read_next() {
            self.write(&frame)?;
        }
        Ok(())
    }

    fn on_end_of_stream(&mut self) -> Result<()> {
        // The input has ended: the file is complete now.
        let written = matches!(self.output, Some(Output::Writing { .. }));
        let result = self.complete();
        if !written {
            // Nothing came: the empty file was removed (`file_removed` said so).
            return result;
        }
        if let Some(ctx) = &self.ctx {
            ctx.emit_event(
                "file_written",
                serde_json::json!({
                    "path": ctx.files().location(&self.config.path),
                    "samples_per_channel": self
                        .samples_written
                        .as_ref()
                        .map_or(0, |c| c.get().saturating_sub(self.samples_before)),
                    "complete": result.is_ok(),
                }),
            );
        }
        result
    }

    fn teardown(&mut self) -> Result<()> {
        // The runtime has already let this writer empty its input (stop drains upstream
        // first); the file is finalised with everything written (unless the end of the stream
        // already did).
        self.complete()
    }
}

impl WavWriterProcessor::Processor {
    /// Finalises the file with everything written (once; later calls do nothing).
    fn complete(&mut self) -> Result<()> {
        let finished = match self.output.take() {
            Some(Output::Writing { writer, .. }) => writer.finalize().map_err(|e| {
                wav_error(
                    format!("WavWriterProcessor: cannot finish '{}'", self.shown()),
                    e,
                )
            }),
            // No audio came: no header with a made-up format; the empty file goes (if it is
            // still the one created), and an event says so.
            Some(Output::Created(file)) => {
                if let Some(ctx) = &self.ctx {
                    if ctx.files().remove_if_empty(&self.config.path, &file) {
                        ctx.emit_event(
                            "file_removed",
                            serde_json::json!({
                                "path": ctx.files().location(&self.config.path),
                                "reason": "no audio arrived, so the empty file was removed",
                            }),
                        );
                    }
                }
                Ok(())
            }
            None => Ok(()),
        };
        self.bytes_written = 0;
        finished
    }
}
