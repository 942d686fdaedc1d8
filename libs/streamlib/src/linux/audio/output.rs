//! The `AudioOutputProcessor`: plays the audio on its input through a sound device.

use std::time::{Duration, Instant};

use cpal::traits::DeviceTrait;
use cpal::{FromSample, SampleFormat, SizedSample, StreamConfig};
use serde::{Deserialize, Serialize};

use super::alsa_messages;
use super::device::{self, DeviceDirection};
use crate::core::context::{Counter, RuntimeContext};
use crate::core::dsp::{StreamResampler, convert_channels};
use crate::core::error::{Result, StreamError};
use crate::core::frames::AudioFrame;
use crate::core::links::LinkInput;
use crate::core::processors::{ConfigError, ProcessorConfig};
use crate::core::runtime::StopSignal;

/// Frames one `process()` call queues at most (the runtime calls again while frames remain).
const FRAMES_PER_CALL: usize = 16;

/// Config of [`AudioOutputProcessor`]. `volume` is live: a running output takes it without
/// a restart.
#[streamlib::config]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AudioOutputConfig {
    /// Which device plays: `null` for the system default, an id such as `"alsa:null"` or
    /// `"alsa:hw:CARD=0,DEV=0"` (the host prefix may be left out), or a device description.
    pub device: Option<String>,
    /// Sample rate to open the device at, in Hz (8000 to 384000). The nearest rate the device
    /// offers is used; frames at any other rate are resampled to it.
    pub sample_rate: u32,
    /// Channels to open the device with (1 to 32); frames with other counts are converted
    /// (mono is copied to every channel, extra channels are folded in).
    pub channels: u16,
    /// Audio queued between the pipeline and the device, in milliseconds (10 to 2000). More
    /// survives scheduling hiccups; less plays sooner.
    pub buffer_ms: u32,
    /// Gain applied before the device, as a factor (0 to 4; 1 = unchanged, 0 = silent).
    /// Samples past full scale are limited to it. A change is heard once the audio already
    /// queued (at most `buffer_ms`) has played.
    #[streamlib(live)]
    pub volume: f32,
}

impl Default for AudioOutputConfig {
    fn default() -> Self {
        Self {
            device: None,
            sample_rate: 48_000,
            channels: 2,
            buffer_ms: 200,
            volume: 1.0,
        }
    }
}

impl ProcessorConfig for AudioOutputConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        device::validate_format(self.device.as_deref(), self.sample_rate, self.channels)?;
        ConfigError::check_range("buffer_ms", self.buffer_ms, 10, 2_000)?;
        if !(self.volume.is_finite() && (0.0..=4.0).contains(&self.volume)) {
            return Err(ConfigError::new(
                "volume",
                format!("must be between 0 and 4, got {}", self.volume),
            ));
        }
        Ok(())
    }
}

/// Everything one run has, built in `setup` and dropped in `teardown`: the open device, the
/// queue that feeds it, the conversion to its rate, the counters and the stop request.
struct Playback {
    /// Dropping it stops the device.
    _stream: cpal::Stream,
    queue: rtrb::Producer<f32>,
    rate: u32,
    channels: u16,
    /// How long a full queue may block the input before frames are dropped.
    max_wait: Duration,
    /// Converts input of another rate to the device's (made at the first such frame).
    resampler: Option<StreamResampler>,
    counters: OutputCounters,
    stop: StopSignal,
}

/// What the processor counts (also read by the device callback).
#[derive(Clone)]
struct OutputCounters {
    frames_consumed: Counter,
    samples_played: Counter,
    underrun_samples: Counter,
    dropped_samples: Counter,
    device_errors: Counter,
}

/// Plays the audio arriving on its input through a sound device (ALSA). The device is opened
/// at the configured rate and channel count or the nearest it offers; frames in any other
/// format are resampled and remixed to it. A full device queue holds the input back (so an
/// unpaced source plays at the device's pace); without a device, `setup` fails naming the
/// device and the devices there are.
#[streamlib::processor(
    execution = Reactive,
    description = "Plays its audio input through a sound device (ALSA), resampling and remixing to what the device takes"
)]
pub struct AudioOutputProcessor {
    #[streamlib::input(description = "Audio to play (any rate and channel count)")]
    audio: LinkInput<AudioFrame>,
    #[streamlib::config]
    config: AudioOutputConfig,
    /// The run's state, `Some` between `setup` and `teardown`.
    playback: Option<Playback>,
}

impl AudioOutputProcessor::Processor {
    /// Opens the device and starts playing (`setup`, with alsa-lib's messages logged).
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        let unavailable =
            |e: String| StreamError::Unavailable(format!("AudioOutputProcessor: {e}"));
        let counters = OutputCounters {
            frames_consumed: ctx.counter("frames_consumed"),
            samples_played: ctx.counter("samples_played"),
            underrun_samples: ctx.counter("underrun_samples"),
            dropped_samples: ctx.counter("dropped_samples"),
            device_errors: ctx.counter("device_errors"),
        };
        let (prepared, (producer, consumer)) = device::prepare(
            self.config.device.as_deref(),
            DeviceDirection::Output,
            self.config.sample_rate,
            self.config.channels,
            self.config.buffer_ms,
        )
        .map_err(unavailable)?;
        let (dev, config) = (&prepared.device, prepared.config);
        let built = match prepared.sample_format {
            SampleFormat::F32 => build::<f32>(dev, config, consumer, &counters),
            SampleFormat::I32 => build::<i32>(dev, config, consumer, &counters),
            SampleFormat::I24 => build::<cpal::I24>(dev, config, consumer, &counters),
            SampleFormat::I16 => build::<i16>(dev, config, consumer, &counters),
            SampleFormat::U16 => build::<u16>(dev, config, consumer, &counters),
            SampleFormat::U8 => build::<u8>(dev, config, consumer, &counters),
            other => Err(device::unsupported_format(other)),
        };
        let stream =
            device::play(built, &prepared, DeviceDirection::Output).map_err(unavailable)?;
        self.playback = Some(Playback {
            _stream: stream,
            queue: producer,
            rate: config.sample_rate,
            channels: config.channels,
            max_wait: Duration::from_millis(u64::from(self.config.buffer_ms) * 2),
            resampler: None,
            counters,
            stop: ctx.stop_signal(),
        });
        Ok(())
    }
}

impl crate::core::Processor for AudioOutputProcessor::Processor {
    fn setup(&mut self, ctx: &RuntimeContext) -> Result<()> {
        alsa_messages::quiet(|| self.open(ctx))
    }

    fn reconfigure(&mut self, _new: &AudioOutputConfig, _ctx: &RuntimeContext) -> Result<()> {
        // The volume is applied to every frame as it is queued.
        Ok(())
    }

    fn process(&mut self) -> Result<()> {
        let volume = self.config.volume;
        // A bounded batch per call: between calls the processor takes config changes, and a
        // source faster than real time would otherwise keep it here.
        for _ in 0..FRAMES_PER_CALL {
            let Some(frame) = self.audio.read_next() else {
                break;
            };
            let Some(playback) = &mut self.playback else {
                return Ok(());
            };
            playback.counters.frames_consumed.add(1);
            let mut samples = convert_channels(&frame.samples, frame.channels, playback.channels);
            if frame.sample_rate != playback.rate {
                let resampler = match &mut playback.resampler {
                    Some(r) if r.from_rate() == frame.sample_rate => r,
                    slot => slot.insert(
                        StreamResampler::new(frame.sample_rate, playback.rate, playback.channels)
                            .map_err(|e| {
                            StreamError::processor(format!("AudioOutputProcessor: {e}"))
                        })?,
                    ),
                };
                samples = resampler
                    .process(&samples)
                    .map_err(|e| StreamError::processor(format!("AudioOutputProcessor: {e}")))?
                    .into();
            }
            if volume != 1.0 {
                samples = samples
                    .iter()
                    .map(|s| (s * volume).clamp(-1.0, 1.0))
                    .collect::<Vec<f32>>()
                    .into();
            }
            if playback.queue.is_abandoned() {
                return Err(StreamError::Unavailable(
                    "AudioOutputProcessor: the sound device stopped playing".to_string(),
                ));
            }
            playback.enqueue(&samples);
        }
        Ok(())
    }

    fn teardown(&mut self) -> Result<()> {
        // Play what is still queued (the resampler's tail too) before closing the device.
        if let Some(playback) = &mut self.playback {
            if let Some(Ok(tail)) = playback.resampler.as_mut().map(StreamResampler::flush) {
                let (_, rest) = playback.queue.push_partial_slice(&tail);
                playback
                    .counters
                    .dropped_samples
                    .add((rest.len() / usize::from(playback.channels.max(1))) as u64);
            }
        }
        if let Some(playback) = &self.playback {
            let deadline = Instant::now() + playback.max_wait;
            let capacity = playback.queue.buffer().capacity();
            while playback.queue.slots() < capacity
                && !playback.queue.is_abandoned()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        alsa_messages::quiet(|| self.playback = None);
        Ok(())
    }
}

impl Playback {
    /// Puts `samples` in the device queue, waiting while it is full (the device's pace), but
    /// no longer than `max_wait` in all or past a stop request; what does not fit then is
    /// dropped.
    fn enqueue(&mut self, samples: &[f32]) {
        let deadline = Instant::now() + self.max_wait;
        let mut rest = samples;
        loop {
            let (_, left) = self.queue.push_partial_slice(rest);
            rest = left;
            if rest.is_empty() {
                return;
            }
            if self.stop.is_stopping() || Instant::now() >= deadline {
                self.counters
                    .dropped_samples
                    .add((rest.len() / usize::from(self.channels.max(1))) as u64);
                return;
            }
            // The device drains the queue in periods of a few milliseconds.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Opens the output stream in the device's sample format `T`.
fn build<T>(
    device: &cpal::Device,
    config: StreamConfig,
    mut queue: rtrb::Consumer<f32>,
    counters: &OutputCounters,
) -> std::result::Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + FromSample<f32>,
{
    let channels = usize::from(config.channels.max(1));
    let data_counters = counters.clone();
    let error_counter = counters.device_errors.clone();
    let mut started = false;
    device.build_output_stream::<T, _, _>(
        config,
        move |out: &mut [T], _info: &cpal::OutputCallbackInfo| {
            let available = queue.slots().min(out.len());
            let mut filled = 0;
            if let Ok(chunk) = queue.read_chunk(available) {
                let (first, second) = chunk.as_slices();
                for (slot, sample) in out.iter_mut().zip(first.iter().chain(second)) {
                    *slot = T::from_sample(*sample);
                    filled += 1;
                }
                chunk.commit_all();
            }
            for slot in &mut out[filled..] {
                *slot = T::EQUILIBRIUM;
            }
            data_counters.samples_played.add((filled / channels) as u64);
            // Silence before the first sound is start-up, not an underrun.
            started |= filled > 0;
            if started && filled < out.len() {
                data_counters
                    .underrun_samples
                    .add(((out.len() - filled) / channels) as u64);
            }
        },
        move |e: cpal::Error| {
            error_counter.add(1);
            tracing::warn!(error = %e, "audio output device error");
        },
        None,
    )
}
