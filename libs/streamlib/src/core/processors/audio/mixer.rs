//! `AudioMixerProcessor`: sums N audio inputs with gains, without clipping past full scale.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::sample_clock::SampleClock;
use crate::core::context::{Counter, RuntimeContext};
use crate::core::dsp::{StreamResampler, convert_channels};
use crate::core::error::{Result, StreamError};
use crate::core::frames::AudioFrame;
use crate::core::links::{LinkInput, LinkOutput};
use crate::core::processors::{ConfigError, ProcessorConfig};

/// Config of [`AudioMixerProcessor`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AudioMixerConfig {
    /// Number of inputs, `input_0` … `input_{N-1}` (1 to 32).
    pub inputs: u32,
    /// Gain of each input as a factor (0 to 16; 1 = unchanged). Empty means 1 for all;
    /// otherwise one per input.
    pub gains: Vec<f32>,
    /// Output sample rate in Hz (8000 to 384000); inputs at other rates are resampled.
    pub sample_rate: u32,
    /// Output channels (1 to 32); inputs with other counts are converted.
    pub channels: u16,
    /// Samples per channel in each output frame (16 to 96000).
    pub frame_size: u32,
    /// How far (ms, 10 to 10000) one input may run ahead of a silent or stalled one before
    /// the mix goes on without it (the missing part counts as silence).
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
}

/// Mixes up to 32 audio inputs into one: each input is converted to the output rate and
/// channel count, multiplied by its gain, and summed sample by sample; the sum is limited to
/// full scale (±1.0; samples that had to be limited are counted in `clipped_samples`). A frame
/// is mixed once every connected input has a frame's worth; an input that falls silent holds
/// the mix back at most `max_wait_ms`, after which it counts as silence.
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
                    .map_err(|e| StreamError::processor(format!("AudioMixerProcessor: {e}")))?;
            }
        }
        queue.samples.extend(samples);
        Ok(())
    }

    /// Mixes and sends every frame that is ready.
    fn mix_ready(&mut self) -> Result<()> {
        let per_frame = self.config.frame_size as usize * usize::from(self.config.channels);
        let max_queued = (u64::from(self.config.sample_rate) * u64::from(self.config.max_wait_ms)
            / 1000) as usize
            * usize::from(self.config.channels);
        loop {
            let connected: Vec<usize> = (0..self.inputs.len())
                .filter(|i| self.inputs[*i].is_connected())
                .collect();
            let ready = |q: &InputQueue| q.samples.len() >= per_frame;
            let all_ready = connected.iter().all(|i| ready(&self.queues[*i]));
            let someone_waited_too_long = connected
                .iter()
                .any(|i| self.queues[*i].samples.len() >= max_queued.max(per_frame));
            let any_ready = connected.iter().any(|i| ready(&self.queues[*i]));
            if !(any_ready && (all_ready || someone_waited_too_long)) {
                return Ok(());
            }
            let start = connected
                .iter()
                .filter_map(|i| self.queues[*i].first_ns)
                .min()
                .unwrap_or(0);
            self.clock.start_if_idle(start, self.config.sample_rate);
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
        Ok(())
    }

    fn process(&mut self) -> Result<()> {
        for i in 0..self.inputs.len() {
            while let Some(frame) = self.inputs[i].read_next() {
                self.accept(i, &frame)?;
            }
        }
        self.mix_ready()
    }
}
