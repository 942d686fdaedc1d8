//! The media clock: one monotonic time base for every frame timestamp in the process.

use std::sync::LazyLock;
use std::time::Instant;

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Nanoseconds since the process's media clock started (monotonic, shared by all processors).
///
/// Sources stamp frames with it so that timestamps from different processors are comparable.
pub fn media_clock_ns() -> u64 {
    // A u64 of nanoseconds lasts 584 years; saturate rather than wrap if it ever does not.
    u64::try_from(EPOCH.elapsed().as_nanos()).unwrap_or(u64::MAX)
}
