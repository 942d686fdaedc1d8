//! The RFC's service layer: RuntimeService from other threads, errors, and the guarantees that
//! no call hangs (runtime gone, or a call that would wait on its own thread).

use crate::common;

use std::time::Duration;

use common::*;
use streamlib::core::*;

#[test]
fn service_drives_the_runtime_from_another_thread() {
    let mut rt = StreamRuntime::new().unwrap();
    let service = rt.runtime_service();
    let shutdown = rt.shutdown_handle();
    let client = std::thread::spawn(move || {
        // run() returns however the client ends, also if an assertion below panics: the test
        // then fails with the panic instead of hanging.
        let _shutdown_on_exit = ShutdownOnDrop(shutdown);
        block_on(async {
            let src = service
                .add_processor(PROCESSOR_REGISTRY.create(
                    "TestPatternProcessor",
                    serde_json::json!({"width": 32, "height": 32, "fps": 200}),
                )?)
                .await?;
            let sink = service
                .add_processor(CountingSinkProcessor::spec(Default::default()))
                .await?;
            let link = service
                .connect(
                    OutputLinkPortRef::new(src.clone(), "video"),
                    InputLinkPortRef::new(sink.clone(), "video"),
                )
                .await?;
            // Errors come back typed.
            let e = service
                .remove_processor(ProcessorUniqueId::new("ghost"))
                .await
                .unwrap_err();
            assert_eq!(e.code(), "processor_not_found");
            let e = service
                .connect(
                    OutputLinkPortRef::new(src.clone(), "video"),
                    InputLinkPortRef::new(sink.clone(), "video"),
                )
                .await
                .unwrap_err();
            assert_eq!(e.code(), "input_already_connected");
            loop {
                let info = service.get_processor(sink.clone()).await?;
                if info.metrics.get("video_frames").copied().unwrap_or(0) > 5 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            service.stop().await?;
            assert_eq!(service.get_state().await?.status, RuntimeStatus::Stopped);
            service.start().await?;
            assert_eq!(service.get_state().await?.status, RuntimeStatus::Running);
            service.disconnect(link).await?;
            service.remove_processor(src).await?;
            let state = service.get_state().await?;
            assert_eq!((state.processor_count, state.link_count), (1, 0));
            Ok::<_, StreamError>(())
        })
    });
    rt.run().unwrap();
    client.join().unwrap().unwrap();
}

#[test]
fn poll_commands_executes_queued_commands() {
    let mut rt = StreamRuntime::new().unwrap();
    let service = rt.runtime_service();
    let client =
        std::thread::spawn(move || block_on(service.add_processor(probe(Default::default()))));
    assert_eventually("the command was executed", || {
        rt.poll_commands();
        client.is_finished()
    });
    let id = client.join().unwrap().unwrap();
    assert!(rt.processor_info(&id).is_ok());
}

#[test]
fn calls_fail_at_once_when_the_runtime_is_gone() {
    let rt = StreamRuntime::new().unwrap();
    let service = rt.runtime_service();
    // A call already queued when the runtime goes away is answered with an error too.
    let pending = {
        let service = service.clone();
        std::thread::spawn(move || block_on(service.get_state()))
    };
    assert_eventually("the call is queued", || rt.queued_commands() == 1);
    drop(rt);
    assert_eq!(
        pending.join().unwrap().unwrap_err().code(),
        "runtime_unavailable"
    );
    let e = std::thread::spawn(move || block_on(service.start()))
        .join()
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code(), "runtime_unavailable");
}

#[test]
fn a_call_from_the_runtime_thread_is_refused_not_deadlocked() {
    let rt = StreamRuntime::new().unwrap();
    let e = block_on(rt.runtime_service().get_state()).unwrap_err();
    assert_eq!(e.code(), "would_deadlock");
    assert!(e.to_string().contains("runtime's own thread"), "{e}");
}

#[test]
fn a_synchronous_call_from_setup_is_refused_not_deadlocked() {
    let mut rt = StreamRuntime::new().unwrap();
    let p = rt
        .add_processor(probe(ProbeConfig {
            call_service_in_setup: true,
            ..Default::default()
        }))
        .unwrap();
    rt.start().unwrap();
    let info = rt.processor_info(&p).unwrap();
    assert_eq!(info.state, ProcessorStatus::Failed);
    let error = info.error.unwrap();
    assert!(
        error.contains("would deadlock") && error.contains("during setup/teardown"),
        "{error}"
    );
    rt.stop().unwrap();
}

#[test]
fn a_slow_setup_does_not_hold_up_other_requests() {
    let rt = RuntimeThread::start(|_| {});
    let service = rt.service.clone();
    block_on(async {
        let slow = add_in_background(&service, gated_config("slow-setup"), "slow");
        // Give the create time to reach the runtime and start its setup.
        tokio::time::sleep(Duration::from_millis(50)).await;
        // 100 other requests are answered while that setup still runs (the gate is closed).
        others_are_answered(&service, 100, Duration::from_secs(20)).await;
        assert!(!slow.is_finished(), "the slow setup is still running");
        let state = service.get_state().await.unwrap();
        assert!(
            state.processors.iter().all(|p| p.id.as_str() != "slow"),
            "a processor in setup is not in the graph yet"
        );
        // Its id is reserved meanwhile.
        let e = service
            .add_processor(probe(ProbeConfig::default()).with_id("slow"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "duplicate_processor_id");
        open_gate("slow-setup");
        let id = slow.await.unwrap().unwrap();
        assert_eq!(id.as_str(), "slow");
        let info = service.get_processor(id).await.unwrap();
        assert_eq!(info.state, ProcessorStatus::Running);
    });
}

#[test]
fn a_setup_that_overruns_is_abandoned_and_reported() {
    let limits = RuntimeLimits {
        setup_timeout_ms: 300,
        max_processors: 3,
        ..Default::default()
    };
    let rt = RuntimeThread::with_limits(limits, |_| {});
    let service = rt.service.clone();
    block_on(async {
        let e = service
            .add_processor(probe(gated_config("never-in-time")).with_id("stuck"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "processor_failed", "{e}");
        assert!(
            e.to_string().contains("did not finish within 300 ms")
                && e.to_string().contains("--setup-timeout-ms"),
            "{e}"
        );
        assert!(service.get_state().await.unwrap().processors.is_empty());
        // The stuck thread counts against the processor limit until it ends.
        for _ in 0..2 {
            service
                .add_processor(CountingSinkProcessor::spec(Default::default()))
                .await
                .unwrap();
        }
        let e = service
            .add_processor(CountingSinkProcessor::spec(Default::default()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "limit_reached", "{e}");
        assert!(e.to_string().contains("--max-processors, now 3"), "{e}");
        // Once its setup returns, the thread ends (it was told to stop) and is reclaimed.
        open_gate("never-in-time");
        let mut added = None;
        for _ in 0..200 {
            match service
                .add_processor(CountingSinkProcessor::spec(Default::default()))
                .await
            {
                Ok(id) => {
                    added = Some(id);
                    break;
                }
                Err(e) => assert_eq!(e.code(), "limit_reached"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(added.is_some(), "the abandoned thread was never reclaimed");
        assert_eq!(service.get_state().await.unwrap().processors.len(), 3);
    });
}

/// A probe whose setup waits for the gate `gate` (`open_gate`).
fn gated_config(gate: &str) -> ProbeConfig {
    ProbeConfig {
        setup_gate: Some(gate.into()),
        ..Default::default()
    }
}

/// [`gated_config`] as a processor with the id `id`.
fn gated(gate: &str, id: &str) -> ProcessorSpec {
    probe(gated_config(gate)).with_id(id)
}

/// `service.start()` in the background.
fn start_in_background(
    service: &RuntimeService,
) -> tokio::task::JoinHandle<streamlib::core::Result<()>> {
    let service = service.clone();
    tokio::spawn(async move { service.start().await })
}

/// Adds a probe with `config` under `id` in the background.
fn add_in_background(
    service: &RuntimeService,
    config: ProbeConfig,
    id: &str,
) -> tokio::task::JoinHandle<streamlib::core::Result<ProcessorUniqueId>> {
    let service = service.clone();
    let spec = probe(config).with_id(id);
    tokio::spawn(async move { service.add_processor(spec).await })
}

/// Sends `n` reads and creates and checks each is answered within `patience` while something
/// else is parked on the runtime thread.
async fn others_are_answered(service: &RuntimeService, n: usize, patience: Duration) {
    let mut others = Vec::new();
    for i in 0..n {
        let service = service.clone();
        others.push(tokio::spawn(async move {
            if i % 2 == 0 {
                service.get_state().await.map(|_| ())
            } else {
                service
                    .add_processor(CountingSinkProcessor::spec(Default::default()))
                    .await
                    .map(|_| ())
            }
        }));
    }
    for other in others {
        tokio::time::timeout(patience, other)
            .await
            .expect("a request waited for another processor's thread")
            .unwrap()
            .unwrap();
    }
}

#[test]
fn a_slow_start_does_not_hold_up_other_requests() {
    let rt = RuntimeThread::start(|rt| {
        rt.add_processor(gated("slow-start", "slow")).unwrap();
        rt.add_processor(probe(ProbeConfig::default()).with_id("quick"))
            .unwrap();
    });
    let service = rt.service.clone();
    block_on(async {
        let mut events = service.subscribe_events();
        // `run()` began the start; a start request joins it and waits for the slow setup.
        let start = start_in_background(&service);
        others_are_answered(&service, 100, Duration::from_secs(20)).await;
        assert!(!start.is_finished(), "the start waits for the slow setup");
        let state = service.get_state().await.unwrap();
        let quick = state.processors.iter().find(|p| p.id.as_str() == "quick");
        assert_eq!(
            quick.map(|p| p.state),
            Some(ProcessorStatus::Pending),
            "nothing is released before every setup reported"
        );
        open_gate("slow-start");
        start.await.unwrap().unwrap();
        for id in ["slow", "quick"] {
            let info = service.get_processor(ProcessorUniqueId::new(id)).await;
            assert_eq!(info.unwrap().state, ProcessorStatus::Running, "{id}");
        }
        let started = loop {
            match events.recv().await.unwrap().kind {
                RuntimeEventKind::RuntimeStarted => break true,
                _ => continue,
            }
        };
        assert!(started);
    });
}

/// A processor's state in `state`.
fn status_of(state: &RuntimeState, id: &str) -> Option<ProcessorStatus> {
    state
        .processors
        .iter()
        .find(|p| p.id.as_str() == id)
        .map(|p| p.state)
}

#[test]
fn a_stop_during_a_start_waits_for_it_without_holding_up_other_requests() {
    let rt = RuntimeThread::start(|rt| {
        rt.add_processor(gated("start-then-stop", "slow")).unwrap();
    });
    let service = rt.service.clone();
    block_on(async {
        let start = start_in_background(&service);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let stop = tokio::spawn({
            let service = service.clone();
            async move { service.stop().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Starts after the stop are served after it, in order.
        let restarts: Vec<_> = (0..2).map(|_| start_in_background(&service)).collect();
        others_are_answered(&service, 40, Duration::from_secs(20)).await;
        assert!(!start.is_finished() && !stop.is_finished());
        assert!(restarts.iter().all(|r| !r.is_finished()));
        open_gate("start-then-stop");
        let patience = Duration::from_secs(10);
        tokio::time::timeout(patience, start)
            .await
            .expect("the start was answered")
            .unwrap()
            .unwrap();
        tokio::time::timeout(patience, stop)
            .await
            .expect("the stop was answered")
            .unwrap()
            .unwrap();
        for restart in restarts {
            tokio::time::timeout(patience, restart)
                .await
                .expect("the restart was answered")
                .unwrap()
                .unwrap();
        }
        let state = service.get_state().await.unwrap();
        assert_eq!(
            state.status,
            RuntimeStatus::Running,
            "the last command was a start"
        );
        assert_eq!(status_of(&state, "slow"), Some(ProcessorStatus::Running));
        let info = service.get_processor(ProcessorUniqueId::new("slow")).await;
        let metrics = info.unwrap().metrics;
        assert_eq!(metrics.get("setups").copied(), Some(2), "{metrics:?}");
        assert_eq!(metrics.get("teardowns").copied(), Some(1), "{metrics:?}");
    });
}

#[test]
fn a_processor_removed_and_added_again_during_a_start_is_the_new_one() {
    let rt = RuntimeThread::start(|rt| {
        rt.add_processor(gated("remove-during-start", "slow"))
            .unwrap();
        rt.add_processor(probe(ProbeConfig::default()).with_id("quick"))
            .unwrap();
    });
    let service = rt.service.clone();
    block_on(async {
        let start = start_in_background(&service);
        // "quick" is set up and waits to be released with "slow"; remove it and add a new one
        // under its id, which fails at once: the start must not revive it.
        let quick = ProcessorUniqueId::new("quick");
        for _ in 0..200 {
            if service
                .get_processor(quick.clone())
                .await
                .unwrap()
                .metrics
                .get("setups")
                == Some(&1)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        service.remove_processor(quick.clone()).await.unwrap();
        let e = service
            .add_processor(
                probe(ProbeConfig {
                    fail_setup: true,
                    ..Default::default()
                })
                .with_id("quick"),
            )
            .await
            .unwrap_err();
        assert_eq!(e.code(), "processor_failed", "{e}");
        let mut events = service.subscribe_events();
        let added = service
            .add_processor(probe(ProbeConfig::default()).with_id("quick"))
            .await
            .unwrap();
        assert_eq!(
            service.get_processor(added.clone()).await.unwrap().state,
            ProcessorStatus::Running,
            "added while starting: runs at once"
        );
        open_gate("remove-during-start");
        start.await.unwrap().unwrap();
        let info = service.get_processor(added).await.unwrap();
        assert_eq!(info.state, ProcessorStatus::Running);
        assert_eq!(info.metrics.get("setups").copied(), Some(1), "set up once");
        // Released once, when it was added; the start released only "slow".
        let mut running = Vec::new();
        while let Ok(event) = events.try_recv() {
            if let RuntimeEventKind::ProcessorStateChanged {
                processor_id,
                state: ProcessorStatus::Running,
            } = event.kind
            {
                running.push(processor_id.to_string());
            }
        }
        assert_eq!(running, ["quick", "slow"]);
    });
}

#[test]
fn a_create_whose_setup_ends_after_a_stop_is_added_stopped_and_runs_at_the_next_start() {
    let rt = RuntimeThread::start(|_| {});
    let service = rt.service.clone();
    block_on(async {
        service.start().await.unwrap();
        let create = add_in_background(&service, gated_config("create-then-stop"), "late");
        tokio::time::sleep(Duration::from_millis(50)).await;
        service.stop().await.unwrap();
        open_gate("create-then-stop");
        let id = create.await.unwrap().unwrap();
        let info = service.get_processor(id.clone()).await.unwrap();
        assert_eq!(info.state, ProcessorStatus::Stopped);
        service.start().await.unwrap();
        let info = service.get_processor(id).await.unwrap();
        assert_eq!(info.state, ProcessorStatus::Running);
        assert_eq!(info.metrics.get("setups").copied(), Some(2));
    });
}

#[test]
fn a_slow_teardown_does_not_hold_up_other_requests() {
    let rt = RuntimeThread::start(|rt| {
        for (id, gate) in [("slow", "slow-teardown"), ("stuck", "never-torn-down")] {
            rt.add_processor(
                probe(ProbeConfig {
                    teardown_gate: Some(gate.into()),
                    ..Default::default()
                })
                .with_id(id),
            )
            .unwrap();
        }
    });
    let service = rt.service.clone();
    block_on(async {
        service.start().await.unwrap();
        let mut events = service.subscribe_events();
        let remove = |id: &'static str| {
            let service = service.clone();
            tokio::spawn(async move {
                let asked = std::time::Instant::now();
                let result = service.remove_processor(ProcessorUniqueId::new(id)).await;
                (result, asked.elapsed())
            })
        };
        let slow = remove("slow");
        let stuck = remove("stuck");
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Under the 5 s a removal may take: a removal holding the runtime would show.
        others_are_answered(&service, 100, Duration::from_secs(4)).await;
        assert!(!slow.is_finished(), "the removal waits for the teardown");
        let state = service.get_state().await.unwrap();
        assert!(
            state.processors.iter().all(|p| p.id.as_str() != "slow"),
            "a processor being removed has left the graph"
        );
        // Its id stays reserved until its thread has ended.
        let e = service
            .add_processor(probe(ProbeConfig::default()).with_id("slow"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "duplicate_processor_id");
        // Announced only once its thread has ended.
        while let Ok(event) = events.try_recv() {
            if let RuntimeEventKind::ProcessorRemoved { processor_id } = event.kind {
                assert_ne!(
                    processor_id.as_str(),
                    "slow",
                    "announced before its thread ended"
                );
            }
        }
        open_gate("slow-teardown");
        let (result, _) = slow.await.unwrap();
        result.unwrap();
        loop {
            if let RuntimeEventKind::ProcessorRemoved { processor_id } =
                events.recv().await.unwrap().kind
            {
                assert_eq!(
                    processor_id.as_str(),
                    "slow",
                    "announced once its thread ended"
                );
                break;
            }
        }
        service
            .add_processor(probe(ProbeConfig::default()).with_id("slow"))
            .await
            .unwrap();
        // A teardown that never ends is abandoned after the stop timeout; the removal is
        // answered then, and nothing else waited for it.
        let (result, waited) = stuck.await.unwrap();
        result.unwrap();
        assert!(
            waited >= streamlib::core::runtime::STOP_TIMEOUT - Duration::from_millis(100),
            "{waited:?}"
        );
    });
    open_gate("never-torn-down");
}

#[test]
fn deferred_starts_and_stops_are_served_in_order_by_poll_commands_and_after_a_direct_stop() {
    let mut rt = StreamRuntime::new().unwrap();
    rt.add_processor(gated("poll-deferred", "slow")).unwrap();
    let service = rt.runtime_service();
    let client = std::thread::spawn(move || {
        block_on(async {
            let start = service.start();
            let stop = service.stop();
            let restart = service.start();
            let stop_again = service.stop();
            let (a, b, c, d) = tokio::join!(start, stop, restart, stop_again);
            (a.is_ok(), b.is_ok(), c.is_ok(), d.is_ok())
        })
    });
    // All four reach the runtime; the first start waits for the setup, the rest for it.
    let until = std::time::Instant::now() + Duration::from_millis(300);
    while std::time::Instant::now() < until {
        rt.poll_commands();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!client.is_finished());
    assert!(rt.has_parked_requests());
    // The app stops the runtime itself: the start completes first, then the deferred commands
    // are still served, in order, by the next polls.
    open_gate("poll-deferred");
    rt.stop().unwrap();
    assert_eventually("the deferred commands were answered", || {
        rt.poll_commands();
        client.is_finished()
    });
    assert_eq!(client.join().unwrap(), (true, true, true, true));
    assert_eq!(
        rt.status(),
        RuntimeStatus::Stopped,
        "the last command was a stop"
    );
    assert!(!rt.has_parked_requests());
}

#[test]
fn a_create_that_tears_down_after_a_stop_runs_if_the_runtime_started_again_meanwhile() {
    let rt = RuntimeThread::start(|_| {});
    let service = rt.service.clone();
    block_on(async {
        let create = add_in_background(
            &service,
            ProbeConfig {
                setup_gate: Some("restart-setup".into()),
                teardown_gate: Some("restart-teardown".into()),
                ..Default::default()
            },
            "late",
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        service.stop().await.unwrap();
        // Its setup ends after the stop: it tears down (held by its gate) ...
        open_gate("restart-setup");
        tokio::time::sleep(Duration::from_millis(50)).await;
        // ... while the runtime starts again.
        service.start().await.unwrap();
        open_gate("restart-teardown");
        let id = tokio::time::timeout(Duration::from_secs(20), create)
            .await
            .expect("the create was answered")
            .unwrap()
            .unwrap();
        let info = service.get_processor(id).await.unwrap();
        assert_eq!(
            info.state,
            ProcessorStatus::Running,
            "set up again, and running"
        );
        assert_eq!(info.metrics.get("setups").copied(), Some(2));
    });
}
