//! Which runtime, if any, the current thread works for, so the service can refuse calls that
//! would wait on the calling thread itself.

use std::cell::RefCell;

use crate::core::graph::ProcessorUniqueId;

/// What the current thread is doing for a runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// The thread that owns the `StreamRuntime` and executes its commands.
    Main,
    /// A processor thread inside `setup` or `teardown`, which the runtime thread waits for.
    Lifecycle(ProcessorUniqueId),
    /// A processor thread inside `process`.
    Process(ProcessorUniqueId),
}

thread_local! {
    static ROLE: RefCell<Option<(u64, Role)>> = const { RefCell::new(None) };
}

/// Sets the current thread's role for `runtime_id`.
pub(crate) fn set(runtime_id: u64, role: Role) {
    ROLE.with(|r| *r.borrow_mut() = Some((runtime_id, role)));
}

/// The current thread's role for `runtime_id`, if it has one.
pub(crate) fn current(runtime_id: u64) -> Option<Role> {
    ROLE.with(|r| match &*r.borrow() {
        Some((id, role)) if *id == runtime_id => Some(role.clone()),
        _ => None,
    })
}

/// Clears the role if it belongs to `runtime_id`.
pub(crate) fn clear(runtime_id: u64) {
    ROLE.with(|r| {
        let mut r = r.borrow_mut();
        if r.as_ref().is_some_and(|(id, _)| *id == runtime_id) {
            *r = None;
        }
    });
}
