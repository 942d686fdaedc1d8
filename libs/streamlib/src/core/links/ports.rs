//! Typed ports (what processors hold) and their type-erased handles (what the runtime holds).

use std::any::Any;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};

use super::budget::MemoryBudget;
use super::options::{LinkCounters, ResolvedLinkOptions};
use super::ring::LinkInner;
use super::watch::{PortFrames, PortWatch};
use crate::core::error::{Result, StreamError};
use crate::core::frames::{Frame, FrameType};
use crate::core::graph::LinkUniqueId;
use crate::core::metrics::HistogramSnapshot;
use crate::core::runtime::ProcessorSignal;

/// An input port: where a processor reads the frames of the one link connected to it.
///
/// Cloning gives another handle to the same port.
pub struct LinkInput<T: Frame> {
    inner: Arc<InputInner<T>>,
}

impl<T: Frame> Clone for LinkInput<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

pub(crate) struct InputInner<T> {
    name: String,
    description: String,
    /// The connected link. Swapped by the runtime (connect/disconnect) while the processor reads,
    /// so it is an `ArcSwapOption`: a lock-free load on every read.
    link: ArcSwapOption<LinkInner<T>>,
}

impl<T: Frame> LinkInput<T> {
    /// A port named `name`; the macro creates these from the struct's fields.
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(InputInner {
                name: name.into(),
                description: description.into(),
                link: ArcSwapOption::empty(),
            }),
        }
    }

    /// The port's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The next frame per the link's read mode (`latest` or `in_order`), if any is waiting.
    #[inline]
    pub fn read(&self) -> Option<T> {
        self.inner.link.load().as_ref().and_then(|l| l.pop())
    }

    /// The newest waiting frame, dropping (and counting) older ones, whatever the link's mode.
    #[inline]
    pub fn read_latest(&self) -> Option<T> {
        self.inner.link.load().as_ref().and_then(|l| l.pop_latest())
    }

    /// The oldest waiting frame, whatever the link's mode.
    #[inline]
    pub fn read_next(&self) -> Option<T> {
        self.inner.link.load().as_ref().and_then(|l| l.pop_next())
    }

    /// Whether a frame is waiting.
    pub fn has_data(&self) -> bool {
        self.inner
            .link
            .load()
            .as_ref()
            .is_some_and(|l| !l.is_empty())
    }

    /// Whether a link is connected.
    pub fn is_connected(&self) -> bool {
        self.inner.link.load().is_some()
    }

    /// Whether the stream on this input has ended: its writer marked the end and every frame
    /// before the mark has been read. False while nothing is connected.
    pub fn is_ended(&self) -> bool {
        self.inner
            .link
            .load()
            .as_ref()
            .is_some_and(|l| l.is_ended())
    }
}

/// An output port: writes go to every link connected to it (fan-out shares the payload).
///
/// Cloning gives another handle to the same port, e.g. for a device callback thread.
pub struct LinkOutput<T: Frame> {
    inner: Arc<OutputInner<T>>,
}

impl<T: Frame> Clone for LinkOutput<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

pub(crate) struct OutputInner<T> {
    name: String,
    description: String,
    /// The links fed by this port. Replaced as a whole on connect/disconnect (rare) and loaded
    /// lock-free on every write (hot).
    links: ArcSwap<Vec<Arc<LinkInner<T>>>>,
    /// What it writes, for whoever watches (`watch.rs`); nothing while nobody does.
    frames: Arc<PortFrames<T>>,
    /// The stream ended ([`LinkOutput::end`]); a link connected later is ended at once.
    ended: std::sync::atomic::AtomicBool,
    /// The signal of the processor that owns the port (set when its run begins): ending the
    /// port from any thread makes that processor check whether it has ended.
    owner: ArcSwapOption<ProcessorSignal>,
}

impl<T: Frame> LinkOutput<T> {
    /// A port named `name`; the macro creates these from the struct's fields.
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(OutputInner {
                name: name.into(),
                description: description.into(),
                links: ArcSwap::from_pointee(Vec::new()),
                ended: std::sync::atomic::AtomicBool::new(false),
                owner: ArcSwapOption::empty(),
                frames: Arc::default(),
            }),
        }
    }

    /// The port's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Sends a frame to every connected link. With no link connected the frame is discarded.
    #[inline]
    pub fn write(&self, frame: T) {
        self.inner.frames.offer(&frame);
        let links = self.inner.links.load();
        if let Some((last, rest)) = links.split_last() {
            for link in rest {
                link.push(frame.clone());
            }
            last.push(frame);
        }
    }

    /// Ends the stream on this port: each link's reader gets every frame written so far, then
    /// sees its input ended (and a link connected later is ended at once). Write nothing after
    /// it in this run. Call it from `process()` (the runtime then sees that a source has
    /// ended); the runtime calls it for every output of a processor whose inputs have all ended,
    /// after [`Processor::on_end_of_stream`](crate::core::Processor::on_end_of_stream).
    pub fn end(&self) {
        self.inner.end();
    }

    /// Whether [`LinkOutput::end`] was called in this run.
    pub fn is_ended(&self) -> bool {
        self.inner.is_ended()
    }

    /// Number of links this port feeds.
    pub fn link_count(&self) -> usize {
        self.inner.links.load().len()
    }

    /// Whether any link is connected.
    pub fn is_connected(&self) -> bool {
        self.link_count() > 0
    }
}

/// The ports of one processor instance, as the runtime sees them.
#[doc(hidden)]
#[derive(Default, Clone)]
pub struct PortSet {
    pub(crate) inputs: Vec<Arc<dyn AnyInputPort>>,
    pub(crate) outputs: Vec<Arc<dyn AnyOutputPort>>,
}

impl PortSet {
    pub(crate) fn input(&self, name: &str) -> Option<&Arc<dyn AnyInputPort>> {
        self.inputs.iter().find(|p| p.name() == name)
    }

    pub(crate) fn output(&self, name: &str) -> Option<&Arc<dyn AnyOutputPort>> {
        self.outputs.iter().find(|p| p.name() == name)
    }

    /// Ends the stream on every output: the processor produces nothing more this run.
    pub(crate) fn end_outputs(&self) {
        for output in &self.outputs {
            output.end();
        }
    }
}

/// A struct field that is one or more input ports (`LinkInput<T>` or `Vec<LinkInput<T>>`).
/// The processor macro uses it to find the ports and their frame type.
#[doc(hidden)]
pub trait InputPortField {
    /// The frame type of the port(s).
    const FRAME_TYPE: FrameType;
    /// Adds the port(s) to `set`.
    fn collect(&self, set: &mut PortSet);
}

/// A struct field that is one or more output ports (`LinkOutput<T>` or `Vec<LinkOutput<T>>`).
#[doc(hidden)]
pub trait OutputPortField {
    /// The frame type of the port(s).
    const FRAME_TYPE: FrameType;
    /// Adds the port(s) to `set`.
    fn collect(&self, set: &mut PortSet);
}

impl<T: Frame> InputPortField for LinkInput<T> {
    const FRAME_TYPE: FrameType = T::FRAME_TYPE;
    fn collect(&self, set: &mut PortSet) {
        set.inputs.push(self.inner.clone());
    }
}

impl<T: Frame> InputPortField for Vec<LinkInput<T>> {
    const FRAME_TYPE: FrameType = T::FRAME_TYPE;
    fn collect(&self, set: &mut PortSet) {
        set.inputs.extend(
            self.iter()
                .map(|p| p.inner.clone() as Arc<dyn AnyInputPort>),
        );
    }
}

impl<T: Frame> OutputPortField for LinkOutput<T> {
    const FRAME_TYPE: FrameType = T::FRAME_TYPE;
    fn collect(&self, set: &mut PortSet) {
        set.outputs.push(self.inner.clone());
    }
}

impl<T: Frame> OutputPortField for Vec<LinkOutput<T>> {
    const FRAME_TYPE: FrameType = T::FRAME_TYPE;
    fn collect(&self, set: &mut PortSet) {
        set.outputs.extend(
            self.iter()
                .map(|p| p.inner.clone() as Arc<dyn AnyOutputPort>),
        );
    }
}

/// An input port with its frame type erased.
pub(crate) trait AnyInputPort: Send + Sync {
    fn name(&self) -> &str;
    fn description(&self) -> &str;
    fn frame_type(&self) -> FrameType;
    fn connected_link(&self) -> Option<LinkUniqueId>;
    fn has_data(&self) -> bool;
    /// Whether a link is connected and its stream has ended (see [`LinkInput::is_ended`]).
    fn is_ended(&self) -> bool;
    /// Whether the connected link's writer has marked the end (frames may still be queued).
    fn end_marked(&self) -> bool;
    fn is_connected(&self) -> bool;
    /// Frames read through this port's current link (for "did process() make progress").
    fn read_count(&self) -> u64;
    fn set_reader_running(&self, running: bool);
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// An output port with its frame type erased.
pub(crate) trait AnyOutputPort: Send + Sync {
    fn name(&self) -> &str;
    fn description(&self) -> &str;
    fn frame_type(&self) -> FrameType;
    /// Creates a link from this port to `input` and makes it live. The caller has checked the
    /// frame types and that `input` is free.
    fn link_to(
        self: Arc<Self>,
        id: LinkUniqueId,
        input: Arc<dyn AnyInputPort>,
        reader: Arc<ProcessorSignal>,
        options: &ResolvedLinkOptions,
        budget: Arc<MemoryBudget>,
        reader_running: bool,
    ) -> Result<Arc<dyn AnyLink>>;
    /// The frame type's default capacity and read mode.
    fn defaults(&self) -> (usize, super::ReadMode);
    /// The writing processor's thread ended: its links give back the memory reserved beyond
    /// what they queue.
    fn writer_done(&self);
    /// Starts watching the frames it writes (`watch.rs`).
    fn watch(&self) -> PortWatch;
    /// Ends the stream on the port (see [`LinkOutput::end`]).
    fn end(&self);
    fn is_ended(&self) -> bool;
    /// A new run of the owning processor (`owner` its signal): clears the end.
    fn begin_run(&self, owner: Arc<ProcessorSignal>);
}

/// A live link with its frame type erased.
pub(crate) trait AnyLink: Send + Sync {
    fn counters(&self) -> LinkCounters;
    /// Ages of the sampled frames when read (see `ring.rs`).
    fn age(&self) -> HistogramSnapshot;
    fn options(&self) -> ResolvedLinkOptions;
    fn is_empty(&self) -> bool;
    fn set_reader_running(&self, running: bool);
    /// Unhooks the link from both ports and releases any waiting writer.
    fn detach(&self);
}

impl<T: Frame> AnyInputPort for InputInner<T> {
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        &self.description
    }
    fn frame_type(&self) -> FrameType {
        T::FRAME_TYPE
    }
    fn connected_link(&self) -> Option<LinkUniqueId> {
        self.link.load().as_ref().map(|l| l.id.clone())
    }
    fn has_data(&self) -> bool {
        self.link.load().as_ref().is_some_and(|l| !l.is_empty())
    }
    fn is_ended(&self) -> bool {
        self.link.load().as_ref().is_some_and(|l| l.is_ended())
    }
    fn end_marked(&self) -> bool {
        self.link.load().as_ref().is_some_and(|l| l.end_marked())
    }
    fn is_connected(&self) -> bool {
        self.link.load().is_some()
    }
    fn read_count(&self) -> u64 {
        self.link.load().as_ref().map_or(0, |l| l.read_count())
    }
    fn set_reader_running(&self, running: bool) {
        if let Some(link) = &*self.link.load() {
            link.set_reader_running(running);
        }
    }
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

impl<T: Frame> AnyOutputPort for OutputInner<T> {
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        &self.description
    }
    fn frame_type(&self) -> FrameType {
        T::FRAME_TYPE
    }
    fn defaults(&self) -> (usize, super::ReadMode) {
        (T::DEFAULT_CAPACITY, T::DEFAULT_READ_MODE)
    }
    fn writer_done(&self) {
        for link in self.links.load().iter() {
            link.writer_done();
        }
    }
    fn watch(&self) -> PortWatch {
        self.frames.watch()
    }
    fn end(&self) {
        let owner = self.owner.load();
        // A processor being stopped has not reached the end of its stream.
        if owner.as_ref().is_some_and(|o| o.is_stopping()) {
            return;
        }
        // The flag first: a link connected meanwhile either is in the list loaded below or
        // sees the flag when it is connected (`link_to`).
        self.ended.store(true, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.load().iter() {
            link.end();
        }
        if let Some(owner) = &*owner {
            owner.note_end();
        }
    }
    fn is_ended(&self) -> bool {
        self.ended.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn begin_run(&self, owner: Arc<ProcessorSignal>) {
        self.owner.store(Some(owner));
        self.ended.store(false, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.load().iter() {
            link.reset_end();
        }
    }

    fn link_to(
        self: Arc<Self>,
        id: LinkUniqueId,
        input: Arc<dyn AnyInputPort>,
        reader: Arc<ProcessorSignal>,
        options: &ResolvedLinkOptions,
        budget: Arc<MemoryBudget>,
        reader_running: bool,
    ) -> Result<Arc<dyn AnyLink>> {
        let input_type = input.frame_type();
        let input: Arc<InputInner<T>> =
            input
                .into_any()
                .downcast()
                .map_err(|_| StreamError::PortTypeMismatch {
                    from: self.name.clone(),
                    to: "input".to_string(),
                    from_type: T::FRAME_TYPE,
                    to_type: input_type,
                    alternatives: String::new(),
                })?;
        let link = Arc::new(LinkInner::new(id, *options, budget, reader, reader_running));
        input.link.store(Some(link.clone()));
        self.links.rcu(|links| {
            let mut next = Vec::with_capacity(links.len() + 1);
            next.extend(links.iter().cloned());
            next.push(link.clone());
            next
        });
        // Connected after its writer ended the stream: ended at once.
        if self.ended.load(std::sync::atomic::Ordering::SeqCst) {
            link.end();
        }
        Ok(Arc::new(LinkBinding {
            link,
            output: self,
            input,
        }))
    }
}

/// A live link together with the two ports it joins, so it can unhook itself.
struct LinkBinding<T> {
    link: Arc<LinkInner<T>>,
    output: Arc<OutputInner<T>>,
    input: Arc<InputInner<T>>,
}

impl<T: Frame> AnyLink for LinkBinding<T> {
    fn counters(&self) -> LinkCounters {
        self.link.counters()
    }
    fn age(&self) -> HistogramSnapshot {
        self.link.age()
    }
    fn options(&self) -> ResolvedLinkOptions {
        self.link.options
    }
    fn is_empty(&self) -> bool {
        self.link.is_empty()
    }
    fn set_reader_running(&self, running: bool) {
        self.link.set_reader_running(running);
    }
    fn detach(&self) {
        self.output.links.rcu(|links| {
            links
                .iter()
                .filter(|l| !Arc::ptr_eq(l, &self.link))
                .cloned()
                .collect::<Vec<_>>()
        });
        let current = self.input.link.load_full();
        if current.as_ref().is_some_and(|l| Arc::ptr_eq(l, &self.link)) {
            self.input.link.store(None);
        }
        self.link.close();
    }
}
