//! Config changes to a processor: checked and decided on the runtime thread, applied on the
//! processor's own thread between two `process()` calls.
//!
//! The runtime thread merges the request into the config in force (RFC 7396 for a merge),
//! checks the result as a create would (422 naming the field; nothing changes), and sees which
//! top-level fields differ. Then:
//! - nothing differs: answered `unchanged`;
//! - the processor is not running (runtime stopped, processor failed): the config is stored in
//!   the instance, and its next `setup` reads it (`stored`);
//! - every changed field is live (`#[streamlib(live)]`): the new config is posted to the
//!   processor's [`LiveMailbox`] and its thread woken; the thread hands it to
//!   `Processor::reconfigure` before its next `process()` call and answers the request itself
//!   (`live`), so the runtime thread never waits for it;
//! - a changed field is not live: refused with 409 naming the fields, unless the request asks
//!   for a restart, which tears the processor down and sets it up again with its links kept
//!   (`restart.rs`, `restarted`).
//!
//! The mailbox keeps one change: a second one posted before the thread looked replaces the
//! first's config (it was merged onto it) and both requests are answered together. The frame
//! path pays one relaxed atomic load per `process()` call.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use tokio::sync::oneshot;

use super::events::{EventBus, RuntimeEventKind};
use super::stream_runtime::StreamRuntime;
use super::worker::Slot;
use crate::core::error::{Result, StreamError};
use crate::core::graph::ProcessorUniqueId;
use crate::core::processors::PROCESSOR_REGISTRY;
use crate::core::service::command::CommandResult;

/// A request for a new config.
#[derive(Debug, Clone)]
pub enum ConfigChange {
    /// A JSON Merge Patch (RFC 7396) onto the config in force: a member set to `null` goes
    /// back to its default, members not named keep their value.
    Merge(serde_json::Value),
    /// The whole config; fields left out take their defaults.
    Replace(serde_json::Value),
}

/// How a config change took effect.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ConfigApplied {
    /// The running processor took it in place; frames kept flowing.
    Live,
    /// The processor was torn down and set up again with it, its links kept.
    Restarted,
    /// The processor is not running; it takes the config at its next setup.
    Stored,
    /// The config asked for is the one in force.
    Unchanged,
}

/// The answer to a config change.
#[cfg_attr(feature = "api-server", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct ConfigUpdate {
    /// The processor.
    pub processor_id: ProcessorUniqueId,
    /// The config in force now (defaults filled in).
    pub config: serde_json::Value,
    /// The top-level fields whose value changed, in the config's order.
    pub changed: Vec<String>,
    /// How it took effect.
    pub applied: ConfigApplied,
}

/// One request waiting for its change to be applied, with its answer.
pub(crate) struct ChangeWaiter {
    pub(crate) reply: oneshot::Sender<CommandResult>,
    pub(crate) update: Box<ConfigUpdate>,
}

/// A change posted to a processor's thread: the config to apply and who waits for it.
pub(crate) struct PostedChange {
    config: serde_json::Value,
    waiters: Vec<ChangeWaiter>,
}

impl PostedChange {
    /// The config to apply.
    pub(crate) fn config(&self) -> serde_json::Value {
        self.config.clone()
    }

    /// Answers every request: applied `how` (each publishes its `config_changed`), or failed.
    pub(crate) fn answer(self, bus: &EventBus, outcome: Result<ConfigApplied>) {
        for mut waiter in self.waiters {
            let result = match &outcome {
                Ok(how) => {
                    waiter.update.applied = *how;
                    publish_changed(bus, &waiter.update);
                    CommandResult::ConfigUpdated(waiter.update)
                }
                Err(e) => CommandResult::Error(e.clone()),
            };
            // The client may have given up; the change is made all the same.
            let _ = waiter.reply.send(result);
        }
    }
}

/// Publishes `config_changed` for an applied change.
pub(crate) fn publish_changed(bus: &EventBus, update: &ConfigUpdate) {
    bus.publish(RuntimeEventKind::ConfigChanged {
        processor_id: update.processor_id.clone(),
        changed: update.changed.clone(),
        applied: update.applied,
    });
}

/// Where the runtime thread leaves a live change for a processor's thread (module docs).
#[derive(Default)]
pub(crate) struct LiveMailbox {
    /// Something is posted: the one load the processor's loop pays.
    posted: AtomicBool,
    slot: Mutex<MailSlot>,
}

#[derive(Default)]
struct MailSlot {
    /// A thread is running the processor and will look (from the start of its run until it
    /// closes the mailbox on its way out).
    open: bool,
    change: Option<PostedChange>,
}

impl LiveMailbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, MailSlot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Posts `config` for the processor's thread; the waiter is answered once it is applied.
    /// Gives the waiter back if no thread will look (it is ending): the caller applies the
    /// change itself once the thread is joined.
    pub(crate) fn post(
        &self,
        config: serde_json::Value,
        waiter: ChangeWaiter,
    ) -> std::result::Result<(), ChangeWaiter> {
        let mut slot = self.lock();
        if !slot.open {
            return Err(waiter);
        }
        match &mut slot.change {
            // Merged onto the one still waiting: its config replaces it, both are answered.
            Some(change) => {
                change.config = config;
                change.waiters.push(waiter);
            }
            None => {
                slot.change = Some(PostedChange {
                    config,
                    waiters: vec![waiter],
                })
            }
        }
        self.posted.store(true, Ordering::Release);
        Ok(())
    }

    /// A run begins on the calling thread: changes posted from now on are for it.
    pub(crate) fn open(&self) {
        self.lock().open = true;
    }

    /// What is posted, if anything (one atomic load when nothing is).
    #[inline]
    pub(crate) fn take(&self) -> Option<PostedChange> {
        if !self.posted.load(Ordering::Acquire) {
            return None;
        }
        let mut slot = self.lock();
        self.posted.store(false, Ordering::Release);
        slot.change.take()
    }

    /// The run is over: no more posts; returns what was posted and not taken.
    pub(crate) fn close(&self) -> Option<PostedChange> {
        let mut slot = self.lock();
        slot.open = false;
        self.posted.store(false, Ordering::Release);
        slot.change.take()
    }
}

/// `target` with `patch` merged in, per RFC 7396: an object patch sets each of its members
/// (recursively for objects, removing those set to `null`); anything else replaces the whole.
pub(crate) fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(members) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(Default::default());
    }
    if let serde_json::Value::Object(fields) = target {
        for (name, value) in members {
            if value.is_null() {
                fields.remove(name);
            } else {
                merge_patch(
                    fields
                        .entry(name.clone())
                        .or_insert(serde_json::Value::Null),
                    value,
                );
            }
        }
    }
}

/// The top-level fields whose value differs between two effective configs, in `new`'s order
/// (then any only in `old`).
pub(crate) fn changed_fields(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let old = old.as_object().unwrap_or(&empty);
    let new = new.as_object().unwrap_or(&empty);
    let mut changed: Vec<String> = new
        .iter()
        .filter(|(name, value)| old.get(*name) != Some(*value))
        .map(|(name, _)| name.clone())
        .collect();
    changed.extend(old.keys().filter(|k| !new.contains_key(*k)).cloned());
    changed
}

/// What the runtime thread decided to do with a config change.
pub(super) enum Decision {
    /// Answered (or posted to the processor's thread, which answers).
    Done,
    /// Non-live fields change and a restart was asked for: restart with this config, then
    /// answer.
    Restart(ConfigUpdate, oneshot::Sender<CommandResult>),
}

impl StreamRuntime {
    /// Serves a config change (module docs). A restart it needs is left to the caller.
    pub(super) fn change_config(
        &mut self,
        id: &ProcessorUniqueId,
        change: ConfigChange,
        restart: bool,
        reply: oneshot::Sender<CommandResult>,
    ) -> Decision {
        let update = match self.check_change(id, change) {
            Ok(update) => update,
            Err(e) => {
                let _ = reply.send(CommandResult::Error(e));
                return Decision::Done;
            }
        };
        if update.changed.is_empty() {
            let _ = reply.send(CommandResult::ConfigUpdated(Box::new(update)));
            return Decision::Done;
        }
        if self.pending.is_restarting(id) {
            let _ = reply.send(CommandResult::Error(StreamError::Conflict(format!(
                "processor '{id}' is restarting; change its config once the restart is done"
            ))));
            return Decision::Done;
        }
        let run = self.is_running();
        let Some(entry) = self.graph.processor_mut(id) else {
            let _ = reply.send(CommandResult::Error(StreamError::ProcessorNotFound(
                id.to_string(),
            )));
            return Decision::Done;
        };
        if entry.control_plane {
            // Its config holds its own access settings: it is set where it is started.
            let _ = reply.send(CommandResult::Error(StreamError::Conflict(format!(
                "processor '{id}' is a control-plane processor (it serves this API); its config cannot change while streamlib runs"
            ))));
            return Decision::Done;
        }
        // A thread that ended (a failure) is joined first: the processor is not running.
        if matches!(&entry.slot, Slot::Running(w) if w.is_finished()) {
            self.workers.join(entry);
        }
        let running = matches!(entry.slot, Slot::Running(_));
        // Asked to restart, a processor that is not running (it failed) is set up again with
        // the new config, if the runtime runs.
        if restart && !running && run && matches!(entry.slot, Slot::Idle(_)) {
            return Decision::Restart(update, reply);
        }
        if running {
            let live = PROCESSOR_REGISTRY
                .live_fields(entry.type_name)
                .unwrap_or_default();
            let fixed: Vec<&String> = update
                .changed
                .iter()
                .filter(|f| !live.contains(f))
                .collect();
            if !fixed.is_empty() {
                if restart {
                    return Decision::Restart(update, reply);
                }
                let error = StreamError::NotLive {
                    processor: id.to_string(),
                    processor_type: entry.type_name.to_string(),
                    fields: fixed.into_iter().cloned().collect(),
                    live: live.to_vec(),
                };
                let _ = reply.send(CommandResult::Error(error));
                return Decision::Done;
            }
            let waiter = ChangeWaiter {
                reply,
                update: Box::new(ConfigUpdate {
                    applied: ConfigApplied::Live,
                    ..update.clone()
                }),
            };
            match entry.shared.live.post(update.config.clone(), waiter) {
                Ok(()) => {
                    entry.config = update.config;
                    entry.shared.signal.unpark();
                    self.graph.note_config_change();
                    return Decision::Done;
                }
                // Its thread is on its way out: joined (it has nothing left to do), then the
                // config is stored below.
                Err(waiter) => {
                    self.workers.join(entry);
                    return self.store_config(id, *waiter.update, waiter.reply);
                }
            }
        }
        self.store_config(id, update, reply)
    }

    /// Stores a checked config in a processor that is not running and answers `stored`.
    fn store_config(
        &mut self,
        id: &ProcessorUniqueId,
        mut update: ConfigUpdate,
        reply: oneshot::Sender<CommandResult>,
    ) -> Decision {
        let result = match self.graph.processor_mut(id) {
            None => Err(StreamError::ProcessorNotFound(id.to_string())),
            Some(entry) => match &mut entry.slot {
                Slot::Idle(node) => node.replace_config(update.config.clone()).map(|()| {
                    entry.config = update.config.clone();
                }),
                Slot::Running(_) => Err(StreamError::Conflict(format!(
                    "processor '{id}' is running again; send the change again"
                ))),
                Slot::Lost => Err(StreamError::Conflict(format!(
                    "processor '{id}' lost its instance (its thread did not stop in time and was abandoned); remove it and add it again"
                ))),
            },
        };
        let answer = match result {
            Ok(()) => {
                self.graph.note_config_change();
                update.applied = ConfigApplied::Stored;
                publish_changed(self.events(), &update);
                CommandResult::ConfigUpdated(Box::new(update))
            }
            Err(e) => CommandResult::Error(e),
        };
        let _ = reply.send(answer);
        Decision::Done
    }

    /// The checked new config and what changes, nothing applied yet.
    pub(super) fn check_change(
        &self,
        id: &ProcessorUniqueId,
        change: ConfigChange,
    ) -> Result<ConfigUpdate> {
        let entry = self.graph.processor(id)?;
        let requested = match change {
            ConfigChange::Merge(patch) if !patch.is_object() => {
                return Err(StreamError::InvalidConfig {
                    processor_type: entry.type_name.to_string(),
                    field: None,
                    message: format!(
                        "a merge patch of a config must be a JSON object (RFC 7396: anything else would replace the whole config), got {}",
                        crate::core::processors::json_kind(&patch)
                    ),
                });
            }
            ConfigChange::Merge(patch) => {
                let mut config = entry.config.clone();
                merge_patch(&mut config, &patch);
                config
            }
            ConfigChange::Replace(config) => config,
        };
        let config = PROCESSOR_REGISTRY.check_config(entry.type_name, requested)?;
        let changed = changed_fields(&entry.config, &config);
        let live = PROCESSOR_REGISTRY.live_fields(entry.type_name)?;
        if changed.iter().any(|f| !live.contains(f)) {
            keeps_ports(id, entry, &config)?;
        }
        Ok(ConfigUpdate {
            processor_id: id.clone(),
            config,
            changed,
            applied: ConfigApplied::Unchanged,
        })
    }
}

/// Refuses a config under which the processor would have other ports than it has (a port list
/// whose length comes from the config): its links hang on those ports.
fn keeps_ports(
    id: &ProcessorUniqueId,
    entry: &crate::core::graph::ProcessorEntry,
    config: &serde_json::Value,
) -> Result<()> {
    let names = |ports: &crate::core::links::PortSet| {
        let inputs: Vec<String> = ports.inputs.iter().map(|p| p.name().to_string()).collect();
        let outputs: Vec<String> = ports.outputs.iter().map(|p| p.name().to_string()).collect();
        (inputs, outputs)
    };
    let spec = PROCESSOR_REGISTRY.create(entry.type_name, config.clone())?;
    let (now_in, now_out) = names(&entry.ports);
    let (new_in, new_out) = names(&spec.node.ports());
    if now_in == new_in && now_out == new_out {
        return Ok(());
    }
    let list = |v: &[String]| {
        if v.is_empty() {
            "(none)".to_string()
        } else {
            v.join(", ")
        }
    };
    Err(StreamError::Conflict(format!(
        "the new config changes the ports of processor '{id}' (inputs {} -> {}; outputs {} -> {}); a config change keeps the processor and its links, so its ports cannot change: remove it and add it again with this config",
        list(&now_in),
        list(&new_in),
        list(&now_out),
        list(&new_out)
    )))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_merge_patch_follows_rfc_7396() {
        // The examples of RFC 7396, section 3 (a selection).
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (target, patch, expected) in cases {
            let mut result = target.clone();
            merge_patch(&mut result, &patch);
            assert_eq!(result, expected, "{target} + {patch}");
        }
    }

    #[test]
    fn changed_fields_are_the_top_level_ones_that_differ() {
        let old = json!({"a": 1, "b": [1, 2], "c": {"x": 1}});
        let new = json!({"a": 1, "b": [1, 3], "c": {"x": 1}, "d": true});
        assert_eq!(changed_fields(&old, &new), ["b", "d"]);
        assert!(changed_fields(&old, &old).is_empty());
    }
}
