//! How many commands the service layer sent the runtime, of which kind, how they ended and how
//! long each took from being sent to being answered (queueing on the runtime thread included).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::{DurationHistogram, HistogramSnapshot};

/// Every kind of command, as `RuntimeCommand::name` spells it (the `command` label).
pub(crate) const COMMAND_KINDS: [&str; 17] = [
    "add_processor",
    "remove_processor",
    "connect",
    "disconnect",
    "start",
    "stop",
    "get_state",
    "get_processor",
    "port_targets",
    "update_config",
    "restart_processor",
    "get_graph",
    "get_graph_for_file",
    "apply_graph",
    "set_positions",
    "get_metrics",
    "watch_port",
];

/// How a command ended, for the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommandOutcome {
    /// Answered with a result.
    Ok,
    /// Answered with an error (or the runtime was gone).
    Error,
    /// The caller stopped waiting first (a request timed out, a client went away).
    Abandoned,
}

impl CommandOutcome {
    /// Every outcome, in label order.
    pub(crate) const ALL: [CommandOutcome; 3] = [Self::Ok, Self::Error, Self::Abandoned];

    /// The `result` label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Abandoned => "abandoned",
        }
    }
}

#[derive(Default)]
struct KindStats {
    ended: [AtomicU64; 3],
    latency: DurationHistogram,
}

/// Counts and latencies of commands by kind (shared by every clone of a runtime's service).
pub(crate) struct CommandStats {
    kinds: Vec<KindStats>,
}

impl Default for CommandStats {
    fn default() -> Self {
        Self {
            kinds: COMMAND_KINDS.iter().map(|_| KindStats::default()).collect(),
        }
    }
}

impl CommandStats {
    /// Starts timing a command of kind `name`; the returned timer records it when it ends,
    /// as abandoned if it is dropped first.
    pub(crate) fn start(&self, name: &'static str) -> CommandTimer<'_> {
        let kind = COMMAND_KINDS.iter().position(|k| *k == name);
        debug_assert!(
            kind.is_some(),
            "command kind {name} is missing from COMMAND_KINDS"
        );
        CommandTimer {
            stats: self,
            kind,
            started: Instant::now(),
            done: false,
        }
    }

    /// Per kind: commands ended by outcome, and the latency histogram.
    pub(crate) fn snapshot(&self) -> Vec<(&'static str, [u64; 3], HistogramSnapshot)> {
        COMMAND_KINDS
            .iter()
            .zip(&self.kinds)
            .map(|(name, k)| {
                let ended = std::array::from_fn(|i| k.ended[i].load(Ordering::Relaxed));
                (*name, ended, k.latency.snapshot())
            })
            .collect()
    }
}

/// Times one command (see [`CommandStats::start`]).
pub(crate) struct CommandTimer<'a> {
    stats: &'a CommandStats,
    kind: Option<usize>,
    started: Instant,
    done: bool,
}

impl CommandTimer<'_> {
    /// Records the command as ended with `outcome`.
    pub(crate) fn finish(mut self, outcome: CommandOutcome) {
        self.record(outcome);
    }

    fn record(&mut self, outcome: CommandOutcome) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let Some(k) = self.kind.and_then(|k| self.stats.kinds.get(k)) else {
            return;
        };
        let slot = CommandOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        k.ended[slot].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        k.latency.record(ns);
    }
}

impl Drop for CommandTimer<'_> {
    fn drop(&mut self) {
        self.record(CommandOutcome::Abandoned);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_counted_by_kind_and_outcome() {
        let stats = CommandStats::default();
        stats.start("connect").finish(CommandOutcome::Ok);
        stats.start("connect").finish(CommandOutcome::Error);
        drop(stats.start("get_state"));
        let snap = stats.snapshot();
        let of = |name: &str| snap.iter().find(|(n, ..)| *n == name).unwrap().clone();
        assert_eq!(of("connect").1, [1, 1, 0]);
        assert_eq!(of("connect").2.count(), 2);
        assert_eq!(of("get_state").1, [0, 0, 1]);
        assert_eq!(of("apply_graph").1, [0, 0, 0]);
    }
}
