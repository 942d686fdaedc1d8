//! The frame transport: a bounded ring per link, typed ports at both ends.
//!
//! A [`LinkOutput`] may feed many links (fan-out clones the frame handle, never the payload); a
//! [`LinkInput`] takes one. Writers never allocate: the ring is preallocated and frames are
//! reference counted. A writer wakes its reader directly (no polling).

mod budget;
mod options;
mod ports;
mod ring;
mod watch;

pub use options::{LinkCounters, LinkOptions, MAX_LINK_CAPACITY, OverflowPolicy, ReadMode};
pub use ports::{InputPortField, LinkInput, LinkOutput, OutputPortField, PortSet};
pub use watch::PortWatch;

pub(crate) use budget::MemoryBudget;
pub(crate) use options::ResolvedLinkOptions;
pub(crate) use ports::{AnyInputPort, AnyLink, AnyOutputPort};
