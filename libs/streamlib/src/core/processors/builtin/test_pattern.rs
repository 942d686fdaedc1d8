use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::context::RuntimeContext;
use crate::core::error::Result;
use crate::core::frames::{VideoFrame, media_clock_ns};
use crate::core::links::LinkOutput;
use crate::core::processors::{ConfigError, ProcessorConfig};

const DEFAULT_WIDTH: u32 = 640;
const DEFAULT_HEIGHT: u32 = 480;
const DEFAULT_FPS: f64 = 30.0;

/// What a [`TestPatternProcessor`] draws under its moving box and frame counter.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TestPattern {
    /// Seven vertical 75% colour bars: white, yellow, cyan, green, magenta, red, blue.
    #[default]
    Bars,
    /// A horizontal red and vertical green ramp.
    Gradient,
    /// 32-pixel black and white squares.
    Checkerboard,
}

/// Config of [`TestPatternProcessor`]. `fps` and `pattern` are live: a running processor
/// takes them without a restart.
#[streamlib::config]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TestPatternConfig {
    /// Frame width in pixels (16 to 7680).
    pub width: u32,
    /// Frame height in pixels (16 to 4320).
    pub height: u32,
    /// Frames per second, paced to real time (0.1 to 1000).
    #[streamlib(live)]
    pub fps: f64,
    /// Background pattern.
    #[streamlib(live)]
    pub pattern: TestPattern,
}

impl Default for TestPatternConfig {
    fn default() -> Self {
        Self {
            width: DEFAULT_WIDTH,
            height: DEFAULT_HEIGHT,
            fps: DEFAULT_FPS,
            pattern: TestPattern::default(),
        }
    }
}

impl ProcessorConfig for TestPatternConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::check_range("width", self.width, 16, 7680)?;
        ConfigError::check_range("height", self.height, 16, 4320)?;
        if !self.fps.is_finite() {
            return Err(ConfigError::new("fps", "must be a finite number"));
        }
        ConfigError::check_range("fps", self.fps, 0.1, 1000.0)
    }
}

/// Generates RGBA test frames: a background pattern, a white box that moves one step per frame
/// (so motion and dropped frames are visible), and the frame number drawn top-left.
///
/// Public so tests can render the frame a pipeline should have delivered and compare.
pub struct TestPatternRenderer {
    width: u32,
    height: u32,
    background: Vec<u8>,
}

/// 3x5 bitmaps of the digits 0-9, one bit per pixel, row-major from the top-left.
const DIGITS: [u16; 10] = [
    0b111_101_101_101_111,
    0b010_110_010_010_111,
    0b111_001_111_100_111,
    0b111_001_111_001_111,
    0b101_101_111_001_001,
    0b111_100_111_001_111,
    0b111_100_111_101_111,
    0b111_001_001_001_001,
    0b111_101_111_101_111,
    0b111_101_111_001_111,
];

/// The test pattern's 75% colour bars, left to right (RGB): white, yellow, cyan, green,
/// magenta, red, blue. Public so that tests can check what reached a screen or a file.
pub const BAR_COLOURS: [[u8; 3]; 7] = [
    [191, 191, 191],
    [191, 191, 0],
    [0, 191, 191],
    [0, 191, 0],
    [191, 0, 191],
    [191, 0, 0],
    [0, 0, 191],
];

impl TestPatternRenderer {
    /// Prepares the background for `config` once; each frame then costs one copy plus the
    /// overlay. Fails on a config `validate` would reject (e.g. a zero size).
    pub fn new(config: &TestPatternConfig) -> Result<Self> {
        config
            .validate()
            .map_err(|e| e.for_type("TestPatternProcessor"))?;
        let (w, h) = (config.width as usize, config.height as usize);
        let mut background = vec![0u8; w * h * 4];
        for y in 0..h {
            for x in 0..w {
                let rgb = match config.pattern {
                    TestPattern::Bars => BAR_COLOURS[(x * BAR_COLOURS.len() / w).min(6)],
                    TestPattern::Gradient => {
                        [(x * 255 / w.max(1)) as u8, (y * 255 / h.max(1)) as u8, 64]
                    }
                    TestPattern::Checkerboard => {
                        if ((x / 32) + (y / 32)) % 2 == 0 {
                            [255, 255, 255]
                        } else {
                            [0, 0, 0]
                        }
                    }
                };
                let i = (y * w + x) * 4;
                background[i..i + 3].copy_from_slice(&rgb);
                background[i + 3] = 255;
            }
        }
        Ok(Self {
            width: config.width,
            height: config.height,
            background,
        })
    }

    /// The frame with number `frame_number`, stamped `timestamp_ns`.
    pub fn render(&self, frame_number: u64, timestamp_ns: u64) -> Result<VideoFrame> {
        let mut pixels = self.background.clone();
        let (w, h) = (self.width as usize, self.height as usize);

        // The moving box: an eighth of the height, sweeping left to right.
        let size = (h / 8).max(4);
        let travel = w.saturating_sub(size).max(1);
        let x0 = (frame_number as usize * 4) % travel;
        let y0 = h / 2 - size / 2;
        fill_rect(&mut pixels, w, x0, y0, size, size, [255, 255, 255]);

        // The frame number on a black plate, top-left.
        let scale = (h / 60).max(1);
        let text = frame_number.to_string();
        let plate_w = (text.len() * 4 + 1) * scale;
        let plate_h = 7 * scale;
        fill_rect(
            &mut pixels,
            w,
            0,
            0,
            plate_w.min(w),
            plate_h.min(h),
            [0, 0, 0],
        );
        for (n, digit) in text.bytes().enumerate() {
            let bits = DIGITS[usize::from(digit - b'0')];
            for row in 0..5 {
                for col in 0..3 {
                    if bits & (1 << (14 - (row * 3 + col))) != 0 {
                        let x = (1 + n * 4 + col) * scale;
                        let y = (1 + row) * scale;
                        fill_rect(&mut pixels, w, x, y, scale, scale, [255, 255, 255]);
                    }
                }
            }
        }
        VideoFrame::from_rgba(self.width, self.height, pixels, timestamp_ns, frame_number)
    }
}

/// Fills a rectangle, clipped to the frame.
fn fill_rect(
    pixels: &mut [u8],
    width: usize,
    x0: usize,
    y0: usize,
    w: usize,
    h: usize,
    rgb: [u8; 3],
) {
    let height = pixels.len() / (width * 4);
    for y in y0..(y0 + h).min(height) {
        for x in x0..(x0 + w).min(width) {
            let i = (y * width + x) * 4;
            pixels[i..i + 3].copy_from_slice(&rgb);
            pixels[i + 3] = 255;
        }
    }
}

/// A video source for tests and demos: colour bars with a moving box and the frame number,
/// paced to real time at the configured fps.
#[streamlib::processor(
    execution = Continuous,
    description = "Generates colour bars with a moving box and the frame number, paced to real time"
)]
pub struct TestPatternProcessor {
    #[streamlib::output(description = "RGBA test frames")]
    video: LinkOutput<VideoFrame>,
    #[streamlib::config]
    config: TestPatternConfig,
    renderer: Option<TestPatternRenderer>,
    frame_number: u64,
    /// The timestamp of frame `base_frame`; later frames follow at `period_ns` (both move when
    /// the rate changes, so timestamps stay continuous).
    base_ns: u64,
    base_frame: u64,
    period_ns: u64,
}

impl TestPatternProcessor::Processor {
    fn timestamp(&self, frame_number: u64) -> u64 {
        let since = frame_number.saturating_sub(self.base_frame);
        self.base_ns
            .saturating_add(since.saturating_mul(self.period_ns))
    }

    /// Paces to `fps` from the next frame on.
    fn set_rate(&mut self, ctx: &RuntimeContext, fps: f64) {
        let period = Duration::from_secs_f64(1.0 / fps);
        ctx.set_interval(period);
        self.period_ns = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
    }
}

impl crate::core::Processor for TestPatternProcessor::Processor {
    fn setup(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.set_rate(ctx, self.config.fps);
        self.renderer = Some(TestPatternRenderer::new(&self.config)?);
        self.frame_number = 0;
        self.base_frame = 0;
        self.base_ns = media_clock_ns();
        Ok(())
    }

    fn reconfigure(&mut self, new: &TestPatternConfig, ctx: &RuntimeContext) -> Result<()> {
        if new.pattern != self.config.pattern {
            self.renderer = Some(TestPatternRenderer::new(new)?);
        }
        if new.fps != self.config.fps {
            self.base_ns = self.timestamp(self.frame_number);
            self.base_frame = self.frame_number;
            self.set_rate(ctx, new.fps);
        }
        Ok(())
    }

    fn process(&mut self) -> Result<()> {
        let Some(renderer) = &self.renderer else {
            return Ok(());
        };
        let timestamp = self.timestamp(self.frame_number);
        let frame = renderer.render(self.frame_number, timestamp)?;
        self.video.write(frame);
        self.frame_number += 1;
        Ok(())
    }

    fn teardown(&mut self) -> Result<()> {
        self.renderer = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_box_and_digits_are_drawn() {
        let config = TestPatternConfig {
            width: 140,
            height: 120,
            ..Default::default()
        };
        let r = TestPatternRenderer::new(&config).unwrap();
        let f = r.render(8, 0).unwrap();
        // Bars: sample the middle of each bar near the bottom (below the box).
        for (i, rgb) in BAR_COLOURS.iter().enumerate() {
            let x = (i as u32 * 20) + 10;
            assert_eq!(&f.pixel(x, 110).unwrap()[..3], rgb, "bar {i}");
        }
        // The box at frame 8 starts at x = 32 on the middle row.
        assert_eq!(&f.pixel(33, 60).unwrap()[..3], &[255, 255, 255]);
        // Digit "8": scale 2, its top-left pixel at (2, 2) is lit, the plate around it is black.
        assert_eq!(&f.pixel(2, 2).unwrap()[..3], &[255, 255, 255]);
        assert_eq!(&f.pixel(0, 0).unwrap()[..3], &[0, 0, 0]);
        // Different frames differ (the box moved).
        assert_ne!(r.render(9, 0).unwrap().data, f.data);
    }

    #[test]
    fn the_renderer_refuses_what_validate_refuses() {
        let zero = TestPatternConfig {
            width: 0,
            ..Default::default()
        };
        assert!(TestPatternRenderer::new(&zero).is_err());
    }

    #[test]
    fn rejects_out_of_range_configs() {
        let bad = TestPatternConfig {
            width: 8,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "width");
        let bad = TestPatternConfig {
            fps: f64::NAN,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "fps");
    }
}
