//! Snapshots of the graph for reports and the API ([`RuntimeState`], [`ProcessorInfo`],
//! [`LinkInfo`]), and how [`Graph`] builds them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::store::{Graph, LinkEntry, ProcessorEntry};
use crate::core::error::Result;
use crate::core::frames::FrameType;
use crate::core::graph::{InputLinkPortRef, LinkUniqueId, OutputLinkPortRef, ProcessorUniqueId};
use crate::core::links::{LinkCounters, OverflowPolicy, ReadMode};
use crate::core::metrics::{
    GraphSample, LinkRates, LinkSample, ProcessorRates, ProcessorSample, link_rates,
    processor_rates,
};
use crate::core::processors::Execution;
use crate::core::runtime::{ProcessorStatus, RuntimeStatus};

/// A snapshot of the whole runtime. `seq` is the last event reflected in it.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RuntimeState {
    /// Runtime lifecycle.
    pub status: RuntimeStatus,
    /// Sequence number of the last event published before this snapshot.
    pub seq: u64,
    /// Number of processors.
    pub processor_count: usize,
    /// Number of links.
    pub link_count: usize,
    /// Bytes of frames queued in all links together.
    #[serde(default)]
    pub queued_bytes: u64,
    /// Bytes the links hold reserved in the runtime's memory budget (`--max-queued-mib`): what
    /// they queue, plus headroom in 64 KiB steps.
    #[serde(default)]
    pub reserved_bytes: u64,
    /// Processors in the order they were added.
    pub processors: Vec<ProcessorInfo>,
    /// Links in the order they were created.
    pub links: Vec<LinkInfo>,
}

/// One processor as the API shows it.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProcessorInfo {
    /// Its id.
    pub id: ProcessorUniqueId,
    /// Registered type name.
    pub processor_type: String,
    /// Effective config (defaults filled in).
    pub config: serde_json::Value,
    /// Lifecycle state.
    pub state: ProcessorStatus,
    /// Why it failed, when `state` is `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its stream ended in this run (end of stream): a finite source reached its end, or every
    /// input ended and it finished. It still counts as `running` until the runtime stops.
    #[serde(default)]
    pub ended: bool,
    /// When its `process()` runs.
    pub execution: Execution,
    /// Control-plane processors run whether or not the runtime is started.
    pub control_plane: bool,
    /// Input ports and the link on each.
    pub inputs: Vec<PortInfo>,
    /// Output ports and the links on each.
    pub outputs: Vec<PortInfo>,
    /// Work counters.
    pub counters: ProcessorCounters,
    /// Rates and `process()` percentiles over a recent window.
    #[serde(default)]
    pub rates: ProcessorRates,
    /// Counters the processor itself publishes (frames, checksum, ...).
    pub metrics: std::collections::BTreeMap<String, u64>,
    /// The files its latest run opened, as absolute paths (beneath the media directory under
    /// `streamlib serve`): where a writer's file is, what a source reads.
    #[serde(default)]
    pub files: Vec<String>,
}

/// A port of a processor instance.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PortInfo {
    /// Port name.
    pub name: String,
    /// Frame type carried.
    pub frame_type: FrameType,
    /// What flows through it.
    pub description: String,
    /// Links attached (at most one for an input).
    pub links: Vec<LinkUniqueId>,
}

/// How much a processor has worked.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct ProcessorCounters {
    /// Calls of `process()` since the processor was added.
    pub process_calls: u64,
    /// Errors and panics in setup/process/teardown.
    pub errors: u64,
    /// Time spent inside `process()`, in nanoseconds.
    pub busy_ns: u64,
    /// Restarts begun since it was added (a restart request, a config change that needed
    /// one, a graph apply).
    #[serde(default)]
    pub restarts: u64,
}

/// One link as the API shows it.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LinkInfo {
    /// Its id.
    pub id: LinkUniqueId,
    /// The output it reads from.
    pub from: OutputLinkPortRef,
    /// The input it writes to.
    pub to: InputLinkPortRef,
    /// Frame type carried.
    pub frame_type: FrameType,
    /// Ring size in frames.
    pub capacity: usize,
    /// Full-ring behaviour.
    pub overflow: OverflowPolicy,
    /// Read behaviour.
    pub read_mode: ReadMode,
    /// Frame counts.
    pub counters: LinkCounters,
    /// Rates and latency percentiles over a recent window.
    #[serde(default)]
    pub rates: LinkRates,
}

/// The result of a successful connect: the new link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub(crate) id: LinkUniqueId,
    pub(crate) from: OutputLinkPortRef,
    pub(crate) to: InputLinkPortRef,
    pub(crate) frame_type: FrameType,
}

impl Link {
    /// The link's id, for `disconnect`.
    pub fn id(&self) -> LinkUniqueId {
        self.id.clone()
    }
    /// The output it reads from.
    pub fn from(&self) -> &OutputLinkPortRef {
        &self.from
    }
    /// The input it writes to.
    pub fn to(&self) -> &InputLinkPortRef {
        &self.to
    }
    /// The frame type it carries.
    pub fn frame_type(&self) -> FrameType {
        self.frame_type
    }
}

/// What rates are computed from: the figures now and the samples kept from the window, oldest
/// first (see `core::metrics`); each processor and link is measured from the oldest that has
/// it.
pub(crate) struct RatesBasis {
    pub(crate) current: Arc<GraphSample>,
    pub(crate) baselines: Vec<Arc<GraphSample>>,
}

impl RatesBasis {
    fn link(&self, id: &LinkUniqueId) -> LinkRates {
        let Some(now) = self.current.links.get(id) else {
            return LinkRates::default();
        };
        // The same link, not an earlier one under the same id.
        let base = self.baselines.iter().find_map(|b| {
            b.links
                .get(id)
                .filter(|l| l.added == now.added)
                .map(|l| (b.at, l))
        });
        link_rates(self.current.at, now, base)
    }

    fn processor(&self, id: &ProcessorUniqueId) -> ProcessorRates {
        let Some(now) = self.current.processors.get(id) else {
            return ProcessorRates::default();
        };
        // The same processor, not an earlier one under the same id (removed and added again,
        // or replaced by a graph apply).
        let base = self.baselines.iter().find_map(|b| {
            b.processors
                .get(id)
                .filter(|p| p.added == now.added)
                .map(|p| (b.at, p))
        });
        processor_rates(self.current.at, now, base)
    }
}

impl Graph {
    /// Every processor's and link's counters and histograms now.
    pub(crate) fn sample(&self, at: Instant) -> GraphSample {
        let processors: HashMap<_, _> = self
            .processors()
            .map(|(id, e)| {
                let sample = ProcessorSample {
                    counters: e.shared.counters(),
                    busy: e.shared.busy_histogram(),
                    added: e.shared.added,
                };
                (id.clone(), sample)
            })
            .collect();
        let links: HashMap<_, _> = self
            .links()
            .map(|(id, l)| {
                let sample = LinkSample {
                    counters: l.link.counters(),
                    age: l.link.age(),
                    added: l.added,
                };
                (id.clone(), sample)
            })
            .collect();
        GraphSample {
            at,
            processors,
            links,
        }
    }

    /// The whole graph as the API shows it; `seq` is the last event it reflects.
    pub(crate) fn snapshot(
        &self,
        status: RuntimeStatus,
        seq: u64,
        rates: &RatesBasis,
    ) -> RuntimeState {
        let links = self.link_infos(rates);
        let link_rates = rates_by_link(&links);
        let processors: Vec<ProcessorInfo> = self
            .processors()
            .map(|(id, e)| self.info_with(id, e, rates, &link_rates))
            .collect();
        RuntimeState {
            status,
            seq,
            processor_count: processors.len(),
            link_count: links.len(),
            queued_bytes: links.iter().map(|l| l.counters.queued_bytes).sum(),
            reserved_bytes: self.reserved_bytes(),
            processors,
            links,
        }
    }

    /// One processor as the API shows it.
    pub(crate) fn processor_info(
        &self,
        id: &ProcessorUniqueId,
        rates: &RatesBasis,
    ) -> Result<ProcessorInfo> {
        let entry = self.processor(id)?;
        let links = self.link_infos(rates);
        Ok(self.info_with(id, entry, rates, &rates_by_link(&links)))
    }

    /// Every link as the API shows it.
    pub(crate) fn link_infos(&self, rates: &RatesBasis) -> Vec<LinkInfo> {
        self.links()
            .map(|(id, l)| {
                let counters = rates.current.links.get(id).map(|s| s.counters);
                link_info(id, l, rates.link(id), counters)
            })
            .collect()
    }

    /// One processor as the API shows it; its frame rates are its links' (`links`).
    fn info_with(
        &self,
        id: &ProcessorUniqueId,
        e: &ProcessorEntry,
        rates: &RatesBasis,
        links: &HashMap<&LinkUniqueId, &LinkRates>,
    ) -> ProcessorInfo {
        let (state, error) = e.shared.state();
        let inputs: Vec<PortInfo> = e
            .ports
            .inputs
            .iter()
            .map(|p| PortInfo {
                name: p.name().to_string(),
                frame_type: p.frame_type(),
                description: p.description().to_string(),
                links: p.connected_link().into_iter().collect(),
            })
            .collect();
        let outputs: Vec<PortInfo> = e
            .ports
            .outputs
            .iter()
            .map(|p| PortInfo {
                name: p.name().to_string(),
                frame_type: p.frame_type(),
                description: p.description().to_string(),
                links: self.links_from(id, p.name()),
            })
            .collect();
        let rate_of = |link: &LinkUniqueId, f: fn(&LinkRates) -> f64| {
            links.get(link).map_or(0.0, |rates| f(rates))
        };
        let mut processor_rates = rates.processor(id);
        // (Folds from +0.0: an empty f64 sum is -0.0, which JSON would show as such.)
        processor_rates.frames_in_per_s = inputs
            .iter()
            .flat_map(|p| &p.links)
            .map(|l| rate_of(l, |r| r.read_per_s))
            .fold(0.0, |a, b| a + b);
        // An output writes each frame to all its links: count it once per port.
        processor_rates.frames_out_per_s = outputs
            .iter()
            .map(|p| {
                p.links
                    .iter()
                    .map(|l| rate_of(l, |r| r.written_per_s))
                    .fold(0.0, f64::max)
            })
            .fold(0.0, |a, b| a + b);
        ProcessorInfo {
            id: id.clone(),
            processor_type: e.type_name.to_string(),
            config: e.config.clone(),
            state,
            error,
            ended: e.shared.is_ended(),
            execution: e.execution,
            control_plane: e.control_plane,
            inputs,
            outputs,
            counters: rates
                .current
                .processors
                .get(id)
                .map_or_else(|| e.shared.counters(), |s| s.counters),
            rates: processor_rates,
            metrics: e.shared.metrics(),
            files: e.shared.files.list(),
        }
    }
}

/// Each link's rates by its id (a processor's frame rates are its links').
fn rates_by_link(links: &[LinkInfo]) -> HashMap<&LinkUniqueId, &LinkRates> {
    links.iter().map(|l| (&l.id, &l.rates)).collect()
}

/// One link as the API shows it; its counters those of the sample its rates come from, when
/// there is one (so the two agree).
fn link_info(
    id: &LinkUniqueId,
    l: &LinkEntry,
    rates: LinkRates,
    counters: Option<LinkCounters>,
) -> LinkInfo {
    let options = l.link.options();
    LinkInfo {
        id: id.clone(),
        from: l.from.clone(),
        to: l.to.clone(),
        frame_type: l.frame_type,
        capacity: options.capacity,
        overflow: options.overflow,
        read_mode: options.read_mode,
        counters: counters.unwrap_or_else(|| l.link.counters()),
        rates,
    }
}
