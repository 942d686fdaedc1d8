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
        let result = block_on(async {
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
        });
        shutdown.request();
        result
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
    std::thread::sleep(Duration::from_millis(20));
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
