//! `AudioMixerProcessor`: sums N audio inputs with gains, without clipping past full scale.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::sample_clock::SampleClock;
use crate::core::context::{Counter, RuntimeContext};
use crate::core::dsp::{StreamResampler, convert_channels};
use crate::core::error::{Result, StreamError};
use crate::core::frames::AudioFrame;
use crate::core::links::{LinkInput, LinkOutput};
use crate::core::processors::{ConfigError, ProcessorConfig};

/// Config of [`AudioMixerProcessor`]. `gains` and `max_wait_ms` are live: a running mixer
/// takes them without a restart.
#[streamlib::config]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AudioMixerConfig {
    /// Number of inputs, `input_0` … `input_{N-1}` (1 to 32).
    pub inputs: u32,
    /// Gain of each input as a factor (0 to 16; 1 = unchanged). Empty means 1 for all;
    /// otherwise one per input.
    #[streamlib(live)]
    pub gains: Vec<f32>,
    /// Output sample rate in Hz (8000 to 384000); inputs at other rates are resampled.
    pub sample_rate: u32,
    /// Output channels (1 to 32); inputs with other counts are converted.
    pub channels: u16,
    /// Samples per channel in each output frame (16 to 96000).
    pub frame_size: u32,
    /// How long (ms of real time, 10 to 10000) the mix waits for a connected input that has
    /// nothing while others have audio; after that it goes on without it (silence).
    #[streamlib(live)]
    pub max_wait_ms: u32,
}

impl Default for AudioMixerConfig {
    fn default() -> Self {
        Self {
            inputs: 2,
            gains: Vec::new(),
            sample_rate: 48_000,
            channels: 2,
            frame_size: 480,
            max_wait_ms: 200,
        }
    }
}

impl ProcessorConfig for AudioMixerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::check_range("inputs", self.inputs, 1, 32)?;
        if !self.gains.is_empty() && self.gains.len() != self.inputs as usize {
            return Err(ConfigError::new(
                "gains",
                format!(
                    "must be empty or list one gain per input ({}), got {}",
                    self.inputs,
                    self.gains.len()
                ),
            ));
        }
        for (i, g) in self.gains.iter().enumerate() {
            if !(g.is_finite() && (0.0..=16.0).contains(g)) {
                return Err(ConfigError::new(
                    format!("gains[{i}]"),
                    format!("must be between 0 and 16, got {g}"),
                ));
            }
        }
        ConfigError::check_range("sample_rate", self.sample_rate, 8_000, 384_000)?;
        ConfigError::check_range("channels", self.channels, 1, 32)?;
        ConfigError::check_range("frame_size", self.frame_size, 16, 96_000)?;
        ConfigError::check_range("max_wait_ms", self.max_wait_ms, 10, 10_000)
    }
}

/// One input's audio, converted to the output format, waiting to be mixed.
#[derive(Default)]
struct InputQueue {
    samples: VecDeque<f32>,
    resampler: Option<StreamResampler>,
    /// Time of the first sample this input delivered.
    first_ns: Option<u64>,
    /// Whether the first samples have been placed on the mix's time line.
    aligned: bool,
}

impl InputQueue {
    /// Places the queue's first sample at its timestamp relative to `at_ns` (the time of the
    /// next mixed sample): silence in front when it starts later, its head dropped when it
    /// started earlier (at most 10 s either way).
    fn align(&mut self, at_ns: u64, rate: u32, channels: u16) {
        let Some(first) = self.first_ns else { return };
        self.aligned = true;
        let frames = |ns: u64| {
            (u128::from(ns.min(10_000_000_000)) * u128::from(rate) / 1_000_000_000) as usize
        };
        let channels = usize::from(channels);
        if first > at_ns {
            let mut padded =
                VecDeque::with_capacity(frames(first - at_ns) * channels + self.samples.len());
            padded.resize(frames(first - at_ns) * channels, 0.0);
            padded.append(&mut self.samples);
            self.samples = padded;
        } else {
            let drop = (frames(at_ns - first) * channels).min(self.samples.len());
            self.samples.drain(..drop);
        }
    }
}

/// Mixes up to 32 audio inputs into one: each input is converted to the output rate and
/// channel count, multiplied by its gain, and summed sample by sample; the sum is limited to
/// full scale (±1.0; samples that had to be limited are counted in `clipped_samples`). A frame
/// is mixed once every connected input has a frame's worth; an input that falls silent holds
/// the mix back at most `max_wait_ms`, after which it counts as silence. Inputs are placed by
/// their timestamps: one that starts later than the others starts later in the mix.
#[streamlib::processor(
    execution = Reactive,
    description = "Mixes N audio inputs with per-input gains, limited to full scale"
)]
pub struct AudioMixerProcessor {
    #[streamlib::input(name = "input", count = config.inputs, description = "Audio to mix (any rate and channel count)")]
    inputs: Vec<LinkInput<AudioFrame>>,
    #[streamlib::output(description = "The mix, at `sample_rate` with `channels`")]
    audio: LinkOutput<AudioFrame>,
    #[streamlib::config]
    config: AudioMixerConfig,
    queues: Vec<InputQueue>,
    clock: SampleClock,
    frame_number: u64,
    clipped: Option<Counter>,
    /// Stopping: mix whatever is queued.
    finishing: bool,
    /// When mixing last became blocked by an input with nothing queued.
    blocked_since: Option<Instant>,
}

impl AudioMixerProcessor::Processor {
    fn gain(&self, input: usize) -> f32 {
        self.config.gains.get(input).copied().unwrap_or(1.0)
    }

    /// Converts a frame to the output format and queues it for its input.
    fn accept(&mut self, input: usize, frame: &AudioFrame) -> Result<()> {
        let (rate, channels) = (self.config.sample_rate, self.config.channels);
        let Some(queue) = self.queues.get_mut(input) else {
            return Ok(());
        };
        queue.first_ns.get_or_insert(frame.timestamp_ns);
        let mut samples = convert_channels(&frame.samples, frame.channels, channels);
        if frame.sample_rate != rate {
            if queue
                .resampler
                .as_ref()
                .is_none_or(|r| r.from_rate() != frame.sample_rate)
            {
                queue.resampler = Some(
                    StreamResampler::new(frame.sample_rate, rate, channels)
                        .map_err(|e| StreamError::processor(format!("AudioMixerProcessor: {e}")))?,
                );
            }
            if let Some(resampler) = &mut queue.resampler {
                samples = resampler
                    .process(&samples)
                    .map_err(|e| StreamError::processor(format!("AudioMixerProcessor: {e}")))?
                    .into();
            }
        }
        queue.samples.extend(samples.iter().copied());
        Ok(())
    }

    /// Mixes and sends every frame that is ready.
    fn mix_ready(&mut self) -> Result<()> {
        let per_frame = self.config.frame_size as usize * usize::from(self.config.channels);
        let max_wait = Duration::from_millis(u64::from(self.config.max_wait_ms));
        loop {
            let connected: Vec<usize> = (0..self.inputs.len())
                .filter(|i| self.inputs[*i].is_connected())
                .collect();
            let ready = |q: &InputQueue| q.samples.len() >= per_frame;
            // An input whose stream ended is not waited for (its last samples are still mixed).
            let all_ready = connected
                .iter()
                .filter(|i| !self.inputs[**i].is_ended())
                .all(|i| ready(&self.queues[*i]));
            let any_ready = connected.iter().any(|i| ready(&self.queues[*i]));
            if !any_ready {
                // Keep a running wait: a silent input that timed out stays out of the way
                // until it delivers again (then all are ready and the wait is cleared).
                return Ok(());
            }
            // Some input is ready but another has nothing: wait for it, but not longer than
            // `max_wait_ms` of real time (then it counts as silence).
            if all_ready {
                self.blocked_since = None;
            } else if !self.finishing {
                let since = *self.blocked_since.get_or_insert_with(Instant::now);
                if since.elapsed() < max_wait {
                    return Ok(());
                }
            }
            let start = connected
                .iter()
                .filter_map(|i| self.queues[*i].first_ns)
                .min()
                .unwrap_or(0);
            // Nobody is placed on the time line (first mix, or all inputs came back after
            // going away): start it afresh at the earliest input.
            if !connected.iter().any(|i| self.queues[*i].aligned) {
                self.clock.reset();
            }
            self.clock.start_if_idle(start, self.config.sample_rate);
            let now = self.clock.now_ns();
            for &i in &connected {
                if !self.queues[i].aligned {
                    self.queues[i].align(now, self.config.sample_rate, self.config.channels);
                }
            }
            let mut mix = vec![0.0f32; per_frame];
            for &i in &connected {
                let gain = self.gain(i);
                let queue = &mut self.queues[i];
                let take = per_frame.min(queue.samples.len());
                for (slot, sample) in mix.iter_mut().zip(queue.samples.drain(..take)) {
                    *slot += sample * gain;
                }
            }
            let mut clipped = 0u64;
            for sample in &mut mix {
                if sample.abs() > 1.0 {
                    *sample = sample.clamp(-1.0, 1.0);
                    clipped += 1;
                }
            }
            if let (Some(counter), true) = (&self.clipped, clipped > 0) {
                counter.add(clipped);
            }
            let frame = AudioFrame::new(
                self.config.sample_rate,
                self.config.channels,
                mix,
                self.clock.now_ns(),
                self.frame_number,
            )?;
            self.audio.write(frame);
            self.clock.advance(u64::from(self.config.frame_size));
            self.frame_number += 1;
        }
    }
}

impl crate::core::Processor for AudioMixerProcessor::Processor {
    fn setup(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.queues = (0..self.inputs.len())
            .map(|_| InputQueue::default())
            .collect();
        self.clock.reset();
        self.frame_number = 0;
        self.clipped = Some(ctx.counter("clipped_samples"));
        self.blocked_since = None;
        self.finishing = false;
        Ok(())
    }

    fn reconfigure(&mut self, _new: &AudioMixerConfig, _ctx: &RuntimeContext) -> Result<()> {
        // Gains and the wait are read for every frame mixed.
        Ok(())
    }

    fn process(&mut self) -> Result<()> {
        // Read each input only while its queue has room, mixing in between: an input that
        // is refilled as fast as it is read cannot grow the queue without bound.
        let per_frame = self.config.frame_size as usize * usize::from(self.config.channels);
        let room = (u64::from(self.config.sample_rate) * u64::from(self.config.max_wait_ms) / 1000)
            as usize
            * usize::from(self.config.channels)
            + per_frame;
        loop {
            let mut read_any = false;
            for i in 0..self.inputs.len() {
                if !self.inputs[i].is_connected() {
                    // Gone: forget its audio, so a later connection starts clean.
                    if let Some(queue) = self.queues.get_mut(i) {
                        *queue = InputQueue::default();
                    }
                    continue;
                }
                while self.queues.get(i).is_some_and(|q| q.samples.len() < room) {
                    let Some(frame) = self.inputs[i].read_next() else {
                        break;
                    };
                    self.accept(i, &frame)?;
                    read_any = true;
                }
            }
            self.mix_ready()?;
            if !read_any {
                return Ok(());
            }
        }
    }

    fn on_end_of_stream(&mut self) -> Result<()> {
        // Every input has ended: mix out what is left; the runtime then ends the output.
        self.mix_out()
    }

    fn teardown(&mut self) -> Result<()> {
        self.mix_out()
    }
}

impl AudioMixerProcessor::Processor {
    /// Mixes out what is queued (and the resamplers' tails), the last frame padded.
    fn mix_out(&mut self) -> Result<()> {
        // What is queued (and the resamplers' tails) is mixed out, the last frame padded.
        for queue in &mut self.queues {
            if let Some(resampler) = &mut queue.resampler {
                if let Ok(tail) = resampler.flush() {
                    queue.samples.extend(tail);
                }
            }
        }
        let per_frame = self.config.frame_size as usize * usize::from(self.config.channels);
        let longest = self
            .queues
            .iter()
            .map(|q| q.samples.len())
            .max()
            .unwrap_or(0);
        self.finishing = true;
        if longest > 0 {
            let padded = longest.div_ceil(per_frame) * per_frame;
            for queue in &mut self.queues {
                if queue.first_ns.is_some() {
                    queue.samples.resize(padded, 0.0);
                }
            }
            self.mix_ready()?;
        }
        self.queues.clear();
        self.finishing = false;
        Ok(())
    }
}
