use crate::core::error::Result;
use crate::core::frames::VideoFrame;
use crate::core::links::{LinkInput, LinkOutput};

/// Forwards every video frame unchanged (same payload, no copy). The unit of a processing
/// chain, and what the link benchmarks measure.
#[streamlib::processor(
    execution = Reactive,
    description = "Forwards video frames unchanged (zero-copy)"
)]
pub struct SimplePassthroughProcessor {
    #[streamlib::input(description = "Frames to forward")]
    video: LinkInput<VideoFrame>,
    #[streamlib::output(name = "video", description = "The same frames, in the same order")]
    video_out: LinkOutput<VideoFrame>,
}

impl crate::core::Processor for SimplePassthroughProcessor::Processor {
    fn process(&mut self) -> Result<()> {
        while let Some(frame) = self.video.read() {
            self.video_out.write(frame);
        }
        Ok(())
    }
}
