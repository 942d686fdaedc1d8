//! The `AudioCaptureProcessor`: records from a sound device.

use std::thread::Thread;
use std::time::{Duration, Instant};

use cpal::traits::DeviceTrait;
use cpal::{SampleFormat, SizedSample, StreamConfig};
use serde::{Deserialize, Serialize};

use super::alsa_messages;
use super::device::{self, DeviceDirection};
use crate::core::context::{Counter, RuntimeContext};
use crate::core::dsp::{StreamResampler, convert_channels};
use crate::core::error::{Result, StreamError};
use crate::core::frames::{AudioFrame, media_clock_ns};
use crate::core::links::LinkOutput;
use crate::core::processors::{ConfigError, ProcessorConfig};

/// How long `process` waits for the device before returning (so stop stays prompt).
const DEVICE_WAIT: Duration = Duration::from_millis(50);

/// A device that delivers more than this many times real time (beyond [`UNPACED_SLACK`] and
/// its queue) is not paced by a clock: ALSA's `null` device, a broken driver. A real device's
/// clock differs from the system's by parts per million, never by 10%.
const UNPACED_RATIO: f64 = 1.1;

/// The audio a device may deliver ahead of real time, besides its queue, before it counts as
/// not paced (the first periods can arrive in a burst).
const UNPACED_SLACK: Duration = Duration::from_millis(500);

/// Config of [`AudioCaptureProcessor`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AudioCaptureConfig {
    /// Which device records: `null` for the system default, an id such as `"alsa:null"` or
    /// `"alsa:hw:CARD=0,DEV=0"` (the host prefix may be left out), or a device description.
    pub device: Option<String>,
    /// Sample rate of the frames produced, in Hz (8000 to 384000). The device is opened at the
    /// nearest rate it offers and resampled when that differs.
    pub sample_rate: u32,
    /// Channels of the frames produced (1 to 32), converted from the device's if needed.
    pub channels: u16,
    /// Samples per channel in each frame (16 to 96000); 480 is 10 ms at 48 kHz.
    pub frame_size: u32,
    /// Audio the device may queue while the pipeline is busy, in milliseconds (10 to 5000);
    /// beyond it the oldest is kept and new samples are dropped (and counted).
    pub buffer_ms: u32,
}

impl Default for AudioCaptureConfig {
    fn default() -> Self {
        Self {
            device: None,
            sample_rate: 48_000,
            channels: 2,
            frame_size: 480,
            buffer_ms: 500,
        }
    }
}

impl ProcessorConfig for AudioCaptureConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        device::validate_format(self.device.as_deref(), self.sample_rate, self.channels)?;
        ConfigError::check_range("frame_size", self.frame_size, 16, 96_000)?;
        ConfigError::check_range("buffer_ms", self.buffer_ms, 10, 5_000)
    }
}

/// The open device and the queue it fills.
struct Recording {
    /// Dropping it stops the device.
    _stream: cpal::Stream,
    queue: rtrb::Consumer<f32>,
    rate: u32,
    channels: u16,
    resampler: Option<StreamResampler>,
    /// Converted samples not yet sent (less than one frame).
    pending: Vec<f32>,
    /// Media-clock time of the first sample, set when the first samples arrive.
    start_ns: Option<u64>,
    /// Samples per channel emitted (plus those the device dropped), at the output rate.
    frames_sent_samples: u64,
    /// Device frames dropped because the queue was full (the callback counts them).
    dropped: Counter,
    dropped_seen: u64,
    /// How fast the device delivers, against the wall clock.
    pace: Pace,
}

/// Whether the device keeps to real time, and what is kept of it when it does not.
struct Pace {
    /// The device as messages name it.
    device: String,
    /// When the device started recording (samples it delivered before this thread first
    /// read, queued or dropped, count from here).
    started: Instant,
    /// Device samples per channel received, dropped ones included.
    received: u64,
    /// Device samples per channel on the sample clock (kept, or dropped while paced).
    clocked: u64,
    /// The device was found delivering faster than real time: from then on only real time's
    /// worth is kept, and the samples read beyond it counted in `unpaced_samples`.
    unpaced: bool,
    /// Device samples per channel read and discarded for running ahead of real time (those
    /// a full queue dropped are in `dropped_samples`).
    discarded: Counter,
}

impl Pace {
    /// How many of `arrived` device samples per channel (just read; `dropped` more were lost
    /// to a full queue) to keep. Finds out when the device runs ahead of real time, and from
    /// then on keeps at most the wall clock's worth since it started. Returns the count to
    /// keep and whether the device was found unpaced just now.
    fn keep(&mut self, arrived: u64, dropped: u64, rate: u32, buffer: Duration) -> (u64, bool) {
        self.received += arrived + dropped;
        let elapsed = self.started.elapsed();
        let real_time = (elapsed.as_secs_f64() * f64::from(rate)) as u64;
        let mut found = false;
        if !self.unpaced {
            let tolerated = elapsed.mul_f64(UNPACED_RATIO) + buffer + UNPACED_SLACK;
            if samples_duration(self.received, rate) > tolerated {
                self.unpaced = true;
                found = true;
            }
        }
        if !self.unpaced {
            self.clocked += arrived + dropped;
            return (arrived, found);
        }
        let kept = arrived.min(real_time.saturating_sub(self.clocked));
        self.clocked += kept;
        self.discarded.add(arrived - kept);
        (kept, found)
    }
}

/// Sleeps for its duration when dropped (at the end of the scope that made it). A sleep, not a
/// park: the device callback unparks this thread on every call while the queue is full.
struct SleepOnDrop(Duration);

impl Drop for SleepOnDrop {
    fn drop(&mut self) {
        std::thread::sleep(self.0);
    }
}

/// How long `samples` per channel last at `rate` Hz.
fn samples_duration(samples: u64, rate: u32) -> Duration {
    Duration::from_secs_f64(samples as f64 / f64::from(rate.max(1)))
}

/// Records from a sound device (ALSA) and emits fixed-size audio frames at the configured rate
/// and channel count, converting from whatever the device offers. Timestamps follow the
/// device's sample clock from the first sample. A device that delivers faster than real time
/// (not paced by a clock, like ALSA's `null` device) is reported once (`capture_unpaced`) and
/// kept to real time's worth (samples read beyond it counted in `unpaced_samples`). Without a device,
/// `setup` fails naming the device and the devices there are.
#[streamlib::processor(
    execution = Continuous,
    description = "Records from a sound device (ALSA) as fixed-size audio frames, resampled and remixed to the configured format"
)]
pub struct AudioCaptureProcessor {
    #[streamlib::output(
        description = "Recorded audio, `frame_size` samples per channel per frame"
    )]
    audio: LinkOutput<AudioFrame>,
    #[streamlib::config]
    config: AudioCaptureConfig,
    recording: Option<Recording>,
    frame_number: u64,
    /// This run's context (for the `capture_unpaced` event).
    ctx: Option<RuntimeContext>,
}

impl AudioCaptureProcessor::Processor {
    /// Opens the device and starts recording (`setup`, with alsa-lib's messages logged).
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        let unavailable =
            |e: String| StreamError::Unavailable(format!("AudioCaptureProcessor: {e}"));
        let (prepared, (producer, consumer)) = device::prepare(
            self.config.device.as_deref(),
            DeviceDirection::Input,
            self.config.sample_rate,
            self.config.channels,
            self.config.buffer_ms,
        )
        .map_err(unavailable)?;
        let (dev, config) = (&prepared.device, prepared.config);
        let dropped = ctx.counter("dropped_samples");
        let feed = Feed {
            queue: producer,
            reader: std::thread::current(),
            wake_at: self.config.frame_size as usize * usize::from(config.channels),
            dropped: dropped.clone(),
            channels: usize::from(config.channels.max(1)),
        };
        let errors = ctx.counter("device_errors");
        let built = match prepared.sample_format {
            SampleFormat::F32 => build::<f32>(dev, config, feed, errors),
            SampleFormat::I32 => build::<i32>(dev, config, feed, errors),
            SampleFormat::I24 => build::<cpal::I24>(dev, config, feed, errors),
            SampleFormat::I16 => build::<i16>(dev, config, feed, errors),
            SampleFormat::U16 => build::<u16>(dev, config, feed, errors),
            SampleFormat::U8 => build::<u8>(dev, config, feed, errors),
            other => Err(device::unsupported_format(other)),
        };
        let stream = device::play(built, &prepared, DeviceDirection::Input).map_err(unavailable)?;
        let resampler = if config.sample_rate == self.config.sample_rate {
            None
        } else {
            Some(
                StreamResampler::new(
                    config.sample_rate,
                    self.config.sample_rate,
                    self.config.channels,
                )
                .map_err(|e| StreamError::processor(format!("AudioCaptureProcessor: {e}")))?,
            )
        };
        self.recording = Some(Recording {
            _stream: stream,
            queue: consumer,
            rate: config.sample_rate,
            channels: config.channels,
            resampler,
            pending: Vec::new(),
            start_ns: None,
            frames_sent_samples: 0,
            dropped_seen: dropped.get(),
            dropped,
            pace: Pace {
                device: prepared.shown.clone(),
                started: Instant::now(),
                received: 0,
                clocked: 0,
                unpaced: false,
                discarded: ctx.counter("unpaced_samples"),
            },
        });
        self.frame_number = 0;
        self.ctx = Some(ctx.clone());
        Ok(())
    }
}

impl crate::core::Processor for AudioCaptureProcessor::Processor {
    fn setup(&mut self, ctx: &RuntimeContext) -> Result<()> {
        alsa_messages::quiet(|| self.open(ctx))
    }

    fn process(&mut self) -> Result<()> {
        let Some(rec) = &mut self.recording else {
            return Ok(());
        };
        let whole = rec.queue.slots() / usize::from(rec.channels) * usize::from(rec.channels);
        if whole == 0 {
            if rec.queue.is_abandoned() {
                return Err(StreamError::Unavailable(
                    "AudioCaptureProcessor: the sound device stopped delivering".to_string(),
                ));
            }
            // The device callback wakes this thread when a frame's worth has arrived.
            std::thread::park_timeout(DEVICE_WAIT);
            return Ok(());
        }
        let dropped_total = rec.dropped.get();
        let dropped = dropped_total.saturating_sub(rec.dropped_seen);
        rec.dropped_seen = dropped_total;
        let mut raw = vec![0.0f32; whole];
        let (read, _) = rec.queue.pop_partial_slice(&mut raw);
        let read = read.len();
        raw.truncate(read);
        let channels = usize::from(rec.channels);
        let buffer = Duration::from_millis(u64::from(self.config.buffer_ms));
        let (kept, found) = rec
            .pace
            .keep((read / channels) as u64, dropped, rec.rate, buffer);
        if found {
            tracing::warn!(
                device = %rec.pace.device,
                "the sound device delivers audio faster than real time (it is not paced by a \
                 clock, like ALSA's null device): keeping real time's worth, the rest is counted \
                 in unpaced_samples"
            );
            if let Some(ctx) = &self.ctx {
                ctx.emit_event(
                    "capture_unpaced",
                    serde_json::json!({
                        "device": rec.pace.device,
                        "received_seconds": rec.pace.received as f64 / f64::from(rec.rate),
                        "elapsed_seconds": rec.pace.started.elapsed().as_secs_f64(),
                    }),
                );
            }
        }
        raw.truncate(kept as usize * channels);
        // Ahead of real time (an unpaced device): after sending what real time allows, wait
        // about a frame's time instead of spinning on samples to discard.
        let ahead = kept < (read / channels) as u64;
        let frame = samples_duration(u64::from(self.config.frame_size), self.config.sample_rate);
        let _wait = ahead.then(|| SleepOnDrop(frame.min(DEVICE_WAIT)));
        // Samples a paced device dropped (queue full) still took time: keep the clock in step.
        if dropped > 0 && !rec.pace.unpaced && rec.start_ns.is_some() {
            let lost =
                u128::from(dropped) * u128::from(self.config.sample_rate) / u128::from(rec.rate);
            rec.frames_sent_samples += u64::try_from(lost).unwrap_or(0);
        }
        if raw.is_empty() {
            return Ok(());
        }
        if rec.start_ns.is_none() {
            // The first samples were recorded over the time they take to play.
            let queued_ns = (raw.len() / channels) as u64 * 1_000_000_000 / u64::from(rec.rate);
            rec.start_ns = Some(media_clock_ns().saturating_sub(queued_ns));
        }
        let mut samples = convert_channels(&raw, rec.channels, self.config.channels);
        if let Some(resampler) = &mut rec.resampler {
            samples = resampler
                .process(&samples)
                .map_err(|e| StreamError::processor(format!("AudioCaptureProcessor: {e}")))?
                .into();
        }
        rec.pending.extend_from_slice(&samples);
        let per_frame = self.config.frame_size as usize * usize::from(self.config.channels);
        let mut sent = 0;
        while rec.pending.len() - sent >= per_frame {
            let offset_ns = u128::from(rec.frames_sent_samples) * 1_000_000_000
                / u128::from(self.config.sample_rate);
            let offset_ns = u64::try_from(offset_ns).unwrap_or(u64::MAX);
            let frame = AudioFrame::new(
                self.config.sample_rate,
                self.config.channels,
                &rec.pending[sent..sent + per_frame],
                rec.start_ns.unwrap_or(0).saturating_add(offset_ns),
                self.frame_number,
            )?;
            self.audio.write(frame);
            self.frame_number += 1;
            rec.frames_sent_samples += u64::from(self.config.frame_size);
            sent += per_frame;
        }
        rec.pending.drain(..sent);
        Ok(())
    }

    fn teardown(&mut self) -> Result<()> {
        alsa_messages::quiet(|| self.recording = None);
        Ok(())
    }
}

/// What the device callback owns: the queue's writing end and whom to wake.
struct Feed {
    queue: rtrb::Producer<f32>,
    reader: Thread,
    /// Queued samples at which the reader is woken (one frame's worth).
    wake_at: usize,
    dropped: Counter,
    channels: usize,
}

/// Opens the input stream in the device's sample format `T`.
fn build<T>(
    device: &cpal::Device,
    config: StreamConfig,
    mut feed: Feed,
    errors: Counter,
) -> std::result::Result<cpal::Stream, cpal::Error>
where
    T: SizedSample,
    f32: cpal::FromSample<T>,
{
    device.build_input_stream::<T, _, _>(
        config,
        move |data: &[T], _info: &cpal::InputCallbackInfo| {
            // Whole frames only, so a full queue never shifts the channels.
            let fits = feed.queue.slots().min(data.len()) / feed.channels * feed.channels;
            if let Ok(chunk) = feed.queue.write_chunk_uninit(fits) {
                chunk.fill_from_iter(data[..fits].iter().map(|s| s.to_sample::<f32>()));
            }
            let dropped = (data.len() - fits) / feed.channels;
            if dropped > 0 {
                feed.dropped.add(dropped as u64);
            }
            if feed.queue.buffer().capacity() - feed.queue.slots() >= feed.wake_at {
                feed.reader.unpark();
            }
        },
        move |e: cpal::Error| {
            errors.add(1);
            tracing::warn!(error = %e, "audio capture device error");
        },
        None,
    )
}
