//! Graph rules: ports, types, one link per input, fan-out, link policies, atomic changes.

use crate::common;

use common::*;
use streamlib::core::*;

#[test]
fn ids_are_readable_and_unique() {
    let mut rt = StreamRuntime::new().unwrap();
    let a = rt
        .add_processor(TestPatternProcessor::spec(Default::default()))
        .unwrap();
    let b = rt
        .add_processor(TestPatternProcessor::spec(Default::default()))
        .unwrap();
    assert_ne!(a, b);
    for id in [&a, &b] {
        let suffix = id
            .as_str()
            .strip_prefix("test-pattern-")
            .expect("prefix from type name");
        assert_eq!(suffix.len(), 6);
    }
    let sink = rt
        .add_processor(CountingSinkProcessor::spec(Default::default()))
        .unwrap();
    let link = rt.connect(out(&a, "video"), inp(&sink, "video")).unwrap();
    assert!(link.id().as_str().starts_with("link-"));
    let chosen = rt
        .add_processor(probe(Default::default()).with_id("my-probe"))
        .unwrap();
    assert_eq!(chosen.as_str(), "my-probe");
    assert_eq!(
        rt.add_processor(probe(Default::default()).with_id("my-probe"))
            .unwrap_err()
            .code(),
        "duplicate_processor_id"
    );
    assert_eq!(
        rt.add_processor(probe(Default::default()).with_id("bad id"))
            .unwrap_err()
            .code(),
        "invalid_id"
    );
}

#[test]
fn connect_errors_name_the_problem_and_change_nothing() {
    let mut rt = StreamRuntime::new().unwrap();
    let src = rt
        .add_processor(TestPatternProcessor::spec(Default::default()))
        .unwrap();
    let chord = rt
        .add_processor(ChordGeneratorProcessor::spec(Default::default()))
        .unwrap();
    let sink = rt
        .add_processor(CountingSinkProcessor::spec(Default::default()))
        .unwrap();
    let before = rt.state();

    let e = rt
        .connect(out(&src, "audio"), inp(&sink, "video"))
        .unwrap_err();
    assert_eq!(e.code(), "port_not_found");
    assert!(e.to_string().contains("its output ports are: video"), "{e}");

    let e = rt
        .connect(out(&src, "video"), inp(&sink, "vidoe"))
        .unwrap_err();
    assert_eq!(e.code(), "port_not_found");
    assert!(e.to_string().contains("video, audio, data"), "{e}");

    let e = rt
        .connect(out(&chord, "audio"), inp(&sink, "video"))
        .unwrap_err();
    assert_eq!(e.code(), "port_type_mismatch");

    let e = rt
        .connect(
            out(&ProcessorUniqueId::new("nope"), "video"),
            inp(&sink, "video"),
        )
        .unwrap_err();
    assert_eq!(e.code(), "processor_not_found");

    let e = rt
        .connect_with(
            out(&src, "video"),
            inp(&sink, "video"),
            LinkOptions::default().with_capacity(0),
        )
        .unwrap_err();
    assert_eq!(e.code(), "invalid_link_options");

    let after = rt.state();
    assert_eq!(after.links, before.links);
    assert_eq!(after.seq, before.seq, "failed operations publish no events");

    let first = rt.connect(out(&src, "video"), inp(&sink, "video")).unwrap();
    let src2 = rt
        .add_processor(TestPatternProcessor::spec(Default::default()))
        .unwrap();
    let e = rt
        .connect(out(&src2, "video"), inp(&sink, "video"))
        .unwrap_err();
    assert_eq!(e.code(), "input_already_connected");
    assert!(e.to_string().contains(first.id().as_str()), "{e}");
    assert_eq!(rt.state().link_count, 1);

    assert_eq!(
        rt.disconnect(&LinkUniqueId::new("link-nope"))
            .unwrap_err()
            .code(),
        "link_not_found"
    );
    rt.disconnect(&first.id()).unwrap();
    rt.connect(out(&src2, "video"), inp(&sink, "video"))
        .expect("input is free again");
}

/// Targets of a port: every port it could be linked with, connectable or with the reason it is
/// not (the same rules `connect` applies); a refused connect names what would work.
#[test]
fn a_port_lists_its_targets_and_a_refused_connect_names_the_alternatives() {
    let mut rt = StreamRuntime::new().unwrap();
    let add_as = |rt: &mut StreamRuntime, spec: ProcessorSpec, id: &str| {
        rt.add_processor(spec.with_id(id)).unwrap()
    };
    let src = add_as(
        &mut rt,
        TestPatternProcessor::spec(Default::default()),
        "src",
    );
    let pass = add_as(
        &mut rt,
        SimplePassthroughProcessor::spec(Default::default()),
        "pass",
    );
    let chord = add_as(
        &mut rt,
        ChordGeneratorProcessor::spec(Default::default()),
        "chord",
    );
    let sink = add_as(
        &mut rt,
        CountingSinkProcessor::spec(Default::default()),
        "sink",
    );
    let taken = rt.connect(out(&src, "video"), inp(&sink, "video")).unwrap();
    let summary = |targets: Vec<PortTarget>| -> Vec<(String, String, Option<String>)> {
        targets
            .into_iter()
            .map(|t| {
                assert_eq!(t.connectable, t.reason.is_none(), "{t:?}");
                (t.from, t.to, t.reason)
            })
            .collect()
    };
    let taken_reason = format!(
        "the input is already connected by link '{}' from src.video",
        taken.id()
    );
    assert_eq!(
        summary(rt.port_targets(&src, "video").unwrap()),
        [
            ("src.video".into(), "pass.video".into(), None),
            (
                "src.video".into(),
                "sink.video".into(),
                Some(taken_reason.clone())
            ),
            (
                "src.video".into(),
                "sink.audio".into(),
                Some("frame types differ: video to audio".into())
            ),
            (
                "src.video".into(),
                "sink.data".into(),
                Some("frame types differ: video to data".into())
            ),
        ]
    );
    // The passthrough has an input and an output named `video`: both directions are listed.
    let pass_targets = summary(rt.port_targets(&pass, "video").unwrap());
    let itself = Some("a processor cannot be linked to itself".to_string());
    assert!(pass_targets.contains(&("pass.video".into(), "pass.video".into(), itself)));
    assert!(pass_targets.contains(&("src.video".into(), "pass.video".into(), None)));
    assert!(pass_targets.contains(&(
        "chord.audio".into(),
        "pass.video".into(),
        Some("frame types differ: audio to video".into())
    )));
    assert_eq!(
        pass_targets.len(),
        4 + 2,
        "pass.video to 4 inputs, from 3 outputs, the pair with itself once"
    );
    assert_eq!(
        rt.port_targets(&chord, "nope").unwrap_err().code(),
        "port_not_found"
    );

    // Refused connects say what would work.
    let e = rt
        .connect(out(&src, "video"), inp(&sink, "video"))
        .unwrap_err();
    assert_eq!(e.code(), "input_already_connected");
    assert!(
        e.to_string()
            .ends_with("; src.video can be linked to: pass.video"),
        "{e}"
    );
    let e = rt
        .connect(out(&pass, "video"), inp(&pass, "video"))
        .unwrap_err();
    assert_eq!(e.code(), "self_link");
    assert_eq!(rt.state().link_count, 1, "nothing was linked");
    let e = rt
        .connect(out(&chord, "audio"), inp(&pass, "video"))
        .unwrap_err();
    assert_eq!(e.code(), "port_type_mismatch");
    assert!(
        e.to_string().ends_with(
            "; chord.audio can be linked to: sink.audio; pass.video can take: src.video"
        ),
        "{e}"
    );
}

#[test]
fn fan_out_delivers_the_same_payload_to_every_link() {
    let mut rt = StreamRuntime::new().unwrap();
    let src = rt
        .add_processor(BurstSourceProcessor::spec(BurstConfig {
            count: 5,
            size: 64,
            shared_payload: true,
            ..Default::default()
        }))
        .unwrap();
    let mut stores = Vec::new();
    for _ in 0..3 {
        let (spec, store) = recording_sink();
        let sink = rt.add_processor(spec).unwrap();
        rt.connect_with(
            out(&src, "video"),
            inp(&sink, "video"),
            LinkOptions::default().with_overflow(OverflowPolicy::Backpressure),
        )
        .unwrap();
        stores.push(store);
    }
    rt.start().unwrap();
    assert_eventually("all sinks got 5 frames", || {
        stores.iter().all(|s| s.lock().unwrap().len() == 5)
    });
    rt.stop().unwrap();
    let first = stores[0].lock().unwrap()[0].data.as_ptr();
    for store in &stores {
        for frame in store.lock().unwrap().iter() {
            assert_eq!(
                frame.data.as_ptr(),
                first,
                "every delivered frame shares the source's pixels"
            );
        }
    }
}

#[test]
fn drop_oldest_counts_exactly() {
    let mut rt = StreamRuntime::new().unwrap();
    let src = rt.add_processor(burst_source(1000)).unwrap();
    let sink = rt
        .add_processor(IdleSinkProcessor::spec(Default::default()))
        .unwrap();
    let link = rt
        .connect_with(
            out(&src, "video"),
            inp(&sink, "video"),
            LinkOptions::default().with_capacity(8),
        )
        .unwrap();
    rt.start().unwrap();
    let written = || rt.links()[0].counters.written;
    assert_eventually("source wrote 1000 frames", || written() == 1000);
    let c = rt.links()[0].counters;
    assert_eq!((c.written, c.dropped, c.queued, c.read), (1000, 992, 8, 0));
    rt.stop().unwrap();
    let _ = link;
}

#[test]
fn backpressure_delivers_every_frame_in_order() {
    let mut rt = StreamRuntime::new().unwrap();
    let src = rt.add_processor(burst_source(20_000)).unwrap();
    let mid = rt
        .add_processor(SimplePassthroughProcessor::spec(Default::default()))
        .unwrap();
    let (spec, store) = recording_sink();
    let sink = rt.add_processor(spec).unwrap();
    let bp = LinkOptions::default()
        .with_overflow(OverflowPolicy::Backpressure)
        .with_capacity(4);
    rt.connect_with(out(&src, "video"), inp(&mid, "video"), bp)
        .unwrap();
    rt.connect_with(out(&mid, "video"), inp(&sink, "video"), bp)
        .unwrap();
    rt.start().unwrap();
    assert_eventually("20000 frames delivered", || {
        store.lock().unwrap().len() == 20_000
    });
    rt.stop().unwrap();
    let frames = store.lock().unwrap();
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.frame_number, i as u64);
        assert_eq!(&f.data[..8], &(i as u64).to_le_bytes());
    }
    for l in rt.links() {
        assert_eq!(
            (l.counters.written, l.counters.read, l.counters.dropped),
            (20_000, 20_000, 0),
            "{}",
            l.id
        );
    }
}

#[test]
fn ports_can_be_declared_from_config() {
    let mut rt = StreamRuntime::new().unwrap();
    let sum = rt
        .add_processor(
            PROCESSOR_REGISTRY
                .create("SumProcessor", serde_json::json!({"inputs": 3}))
                .unwrap(),
        )
        .unwrap();
    let info = rt.processor_info(&sum).unwrap();
    let names: Vec<_> = info.inputs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["input_0", "input_1", "input_2"]);
    let d = PROCESSOR_REGISTRY.descriptor("SumProcessor").unwrap();
    assert_eq!(d.inputs[0].name, "input");
    assert_eq!(d.inputs[0].count_from.as_deref(), Some("config.inputs"));

    let frames = |v: f32| vec![AudioFrame::new(48_000, 1, vec![v; 4], 0, 0).unwrap()];
    let mut sources = Vec::new();
    for (i, v) in [0.25f32, 0.5, 1.0].into_iter().enumerate() {
        let s = rt.add_processor(audio_script(frames(v))).unwrap();
        rt.connect(out(&s, "audio"), inp(&sum, &format!("input_{i}")))
            .unwrap();
        sources.push(s);
    }
    let (recorder, recorded) = audio_recorder();
    let recorder = rt.add_processor(recorder).unwrap();
    rt.connect(out(&sum, "audio"), inp(&recorder, "audio"))
        .unwrap();
    rt.start().unwrap();
    assert_eventually("the sum was produced", || {
        !recorded.lock().unwrap().is_empty()
    });
    rt.stop().unwrap();
    // Every input was read: 0.25 + 0.5 + 1.0, in each of the frame's samples.
    let frames = recorded.lock().unwrap();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].samples.to_vec(), vec![1.75f32; 4]);
    assert_eq!(
        rt.connect(out(&sources[0], "audio"), inp(&sum, "input_3"))
            .unwrap_err()
            .code(),
        "port_not_found"
    );
}

#[test]
fn apply_graph_is_all_or_nothing() {
    let mut rt = StreamRuntime::new().unwrap();
    let good = GraphFile::from_json(
        r#"{"processors":[{"id":"src","type":"TestPatternProcessor","config":{"width":64,"height":48}},
                          {"id":"sink","type":"CountingSinkProcessor"}],
            "connections":[{"from":"src.video","to":"sink.video","capacity":2}]}"#,
    )
    .unwrap();
    rt.apply_graph(&good).unwrap();
    assert_eq!(rt.state().links[0].capacity, 2);

    let mut rt = StreamRuntime::new().unwrap();
    let bad_link = GraphFile::from_json(
        r#"{"processors":[{"id":"src","type":"TestPatternProcessor"},{"id":"sink","type":"CountingSinkProcessor"}],
            "connections":[{"from":"src.video","to":"sink.video"},{"from":"src.video","to":"sink.audio"}]}"#,
    )
    .unwrap();
    let e = rt.apply_graph(&bad_link).unwrap_err();
    assert!(e.to_string().contains("connections[1]"), "{e}");
    let s = rt.state();
    assert_eq!((s.processor_count, s.link_count), (0, 0), "rolled back");

    let bad_type = GraphFile::from_json(
        r#"{"processors":[{"id":"a","type":"TestPatternProcessor"},{"id":"b","type":"Nope"}]}"#,
    )
    .unwrap();
    let e = rt.apply_graph(&bad_type).unwrap_err();
    assert!(
        e.to_string().contains("processors[1] ('b')")
            && e.to_string().contains("TestPatternProcessor"),
        "{e}"
    );
    assert_eq!(rt.state().processor_count, 0);
}
