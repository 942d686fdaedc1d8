//! The graph as a document: export, plan, apply (all or nothing), revisions. Content checks:
//! processors an apply does not touch keep their frame numbers continuous through it, and a
//! refused or rolled-back apply leaves the exported document byte-identical.

use crate::common;

use common::*;
use serde_json::{Value, json};
use streamlib::core::*;

/// A running graph: `pattern` (a fast test pattern) -> `recorder` over a link that loses
/// nothing, and `chord` -> `sink` (a counting sink). The recorder's frames are returned.
fn running_graph() -> (RuntimeThread, Recorded) {
    let (recorder, store) = recording_sink();
    let rt = RuntimeThread::start(move |rt| {
        let pattern = rt
            .add_processor(
                PROCESSOR_REGISTRY
                    .create(
                        "TestPatternProcessor",
                        json!({"width": 16, "height": 16, "fps": 400}),
                    )
                    .unwrap()
                    .with_id("pattern"),
            )
            .unwrap();
        let recorder = rt.add_processor(recorder.with_id("recorder")).unwrap();
        rt.connect_with(
            out(&pattern, "video"),
            inp(&recorder, "video"),
            backpressure(),
        )
        .unwrap();
        let chord = rt
            .add_processor(
                PROCESSOR_REGISTRY
                    .create("ChordGeneratorProcessor", json!({"channels": 1}))
                    .unwrap()
                    .with_id("chord"),
            )
            .unwrap();
        let sink = rt
            .add_processor(CountingSinkProcessor::spec(Default::default()).with_id("sink"))
            .unwrap();
        rt.connect(out(&chord, "audio"), inp(&sink, "audio"))
            .unwrap();
    });
    (rt, store)
}

fn export(rt: &RuntimeThread) -> GraphFile {
    block_on(rt.service.get_graph()).unwrap()
}

fn apply(rt: &RuntimeThread, doc: Value, dry_run: bool) -> Result<GraphApplied> {
    let doc: GraphFile = serde_json::from_value(doc).unwrap();
    block_on(rt.service.apply_graph(doc, dry_run, None))
}

fn kinds(applied: &GraphApplied) -> Vec<(PlanActionKind, String)> {
    applied
        .actions
        .iter()
        .map(|a| (a.action, a.target.clone()))
        .collect()
}

/// The exported document as JSON with its revision removed (what a user edits).
fn editable(rt: &RuntimeThread) -> Value {
    let mut doc = serde_json::to_value(export(rt)).unwrap();
    doc.as_object_mut().unwrap().remove("revision");
    doc
}

fn processor_mut<'a>(doc: &'a mut Value, id: &str) -> &'a mut Value {
    doc["processors"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|p| p["id"] == id)
        .unwrap()
}

#[track_caller]
fn assert_continuous(store: &Recorded) {
    let numbers: Vec<u64> = store
        .lock()
        .unwrap()
        .iter()
        .map(|f| f.frame_number)
        .collect();
    let expected: Vec<u64> = (0..numbers.len() as u64).collect();
    assert!(
        numbers == expected,
        "frame numbers skip or repeat: {numbers:?}"
    );
}

#[test]
fn an_export_applied_again_changes_nothing() {
    let (rt, store) = running_graph();
    assert_eventually("frames flow", || store.lock().unwrap().len() > 10);
    let doc = export(&rt);
    assert_eq!(
        doc.processors
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>(),
        ["pattern", "recorder", "chord", "sink"]
    );
    // Effective configs and resolved link options.
    assert_eq!(doc.processors[0].config["fps"], json!(400.0));
    assert_eq!(doc.connections[0].capacity, Some(4));
    assert_eq!(
        doc.connections[0].overflow,
        Some(OverflowPolicy::Backpressure)
    );
    let applied = block_on(rt.service.apply_graph(doc.clone(), false, None)).unwrap();
    assert!(applied.actions.is_empty(), "{:?}", applied.actions);
    assert_eq!(Some(applied.revision), doc.revision);
    assert_eq!(export(&rt), doc);
}

#[test]
fn an_apply_touches_only_what_changed_and_untouched_frames_keep_flowing() {
    let (rt, store) = running_graph();
    assert_eventually("frames flow", || store.lock().unwrap().len() > 20);
    let before = export(&rt);
    let mut doc = editable(&rt);
    // chord: a field that is not live (restart, links kept); sink: removed with its link;
    // a new sink for the chord; pattern: untouched, and its recorder too.
    processor_mut(&mut doc, "chord")["config"]["sample_rate"] = json!(44100);
    processor_mut(&mut doc, "chord")["config"]["amplitude"] = json!(0.5);
    doc["processors"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p["id"] != "sink");
    doc["processors"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "sink2", "type": "CountingSinkProcessor"}));
    doc["connections"] = json!([
        before.connections[0].clone(),
        {"from": "chord.audio", "to": "sink2.audio"}
    ]);

    let planned = apply(&rt, doc.clone(), true).unwrap();
    assert!(planned.dry_run);
    assert_eq!(
        kinds(&planned),
        [
            (
                PlanActionKind::Disconnect,
                "chord.audio -> sink.audio".to_string()
            ),
            (PlanActionKind::Remove, "sink".to_string()),
            (PlanActionKind::Restart, "chord".to_string()),
            (PlanActionKind::Add, "sink2".to_string()),
            (
                PlanActionKind::Connect,
                "chord.audio -> sink2.audio".to_string()
            ),
        ]
    );
    let restart = &planned.actions[2];
    assert_eq!(restart.changed, ["sample_rate", "amplitude"]);
    assert!(restart.reason.contains("sample_rate"), "{}", restart.reason);
    // A dry run changes nothing.
    assert_eq!(export(&rt), before);

    let applied = apply(&rt, doc.clone(), false).unwrap();
    assert!(!applied.dry_run);
    assert_eq!(kinds(&applied), kinds(&planned));
    let after = export(&rt);
    assert_eq!(Some(applied.revision), after.revision);
    assert!(after.revision > before.revision);
    let chord = after.processors.iter().find(|p| p.id == "chord").unwrap();
    assert_eq!(chord.config["sample_rate"], json!(44100));
    // The same document again: nothing to do.
    assert!(apply(&rt, doc, false).unwrap().actions.is_empty());
    assert_eventually("the new sink counts the chord's frames", || {
        block_on(rt.service.get_processor(ProcessorUniqueId::new("sink2")))
            .unwrap()
            .metrics
            .get("audio_frames")
            .copied()
            .unwrap_or(0)
            > 3
    });
    // The pattern and its recorder were not touched: not one frame number skipped.
    let seen = store.lock().unwrap().len();
    assert_eventually("frames still flow", || {
        store.lock().unwrap().len() > seen + 20
    });
    assert_continuous(&store);
    let state = block_on(rt.service.get_state()).unwrap();
    assert_eq!(state.link_count, 2);
}

#[test]
fn a_live_change_in_a_document_is_made_in_place() {
    let (rt, store) = running_graph();
    assert_eventually("frames flow", || store.lock().unwrap().len() > 10);
    let mut doc = editable(&rt);
    processor_mut(&mut doc, "pattern")["config"]["pattern"] = json!("checkerboard");
    let applied = apply(&rt, doc, false).unwrap();
    assert_eq!(
        kinds(&applied),
        [(PlanActionKind::Reconfigure, "pattern".to_string())]
    );
    assert_eq!(applied.actions[0].changed, ["pattern"]);
    let seen = store.lock().unwrap().len();
    assert_eventually("frames still flow", || {
        store.lock().unwrap().len() > seen + 20
    });
    // Reconfigured in place: the source was not restarted, its frame numbers run on.
    assert_continuous(&store);
}

#[test]
fn a_document_with_problems_is_refused_whole_naming_each_place() {
    let (rt, store) = running_graph();
    assert_eventually("frames flow", || store.lock().unwrap().len() > 5);
    let before = serde_json::to_string(&export(&rt)).unwrap();
    let mut doc = editable(&rt);
    doc["processors"].as_array_mut().unwrap().extend([
        json!({"id": "bad-type", "type": "NoSuchProcessor"}),
        json!({"id": "bad-config", "type": "TestPatternProcessor", "config": {"width": 3}}),
        json!({"id": "chord", "type": "ChordGeneratorProcessor"}),
        json!({"id": "api", "type": "ApiServerProcessor"}),
    ]);
    doc["connections"].as_array_mut().unwrap().extend([
        json!({"from": "pattern.nope", "to": "sink.video"}),
        json!({"from": "chord.audio", "to": "recorder.video"}),
        json!({"from": "pattern.video", "to": "recorder.video"}),
        json!({"from": "ghost.video", "to": "recorder.video"}),
    ]);
    let e = apply(&rt, doc, false).unwrap_err();
    assert_eq!(e.code(), "graph_rejected");
    let StreamError::GraphRejected { problems } = &e else {
        panic!("{e}");
    };
    let places: Vec<&str> = problems.iter().map(|p| p.place.as_str()).collect();
    assert_eq!(
        places,
        [
            "processors[4].type",
            "processors[5].config.width",
            "processors[6].id",
            "processors[7].type",
            "connections[2].from",
            "connections[3]",
            "connections[4].to",
            "connections[5].from",
        ],
        "{e}"
    );
    let message = e.to_string();
    assert!(
        message.contains("unknown processor type 'NoSuchProcessor'"),
        "{message}"
    );
    assert!(message.contains("appears twice"), "{message}");
    assert!(message.contains("its output ports are: video"), "{message}");
    assert!(
        message.contains("already linked by connections[0]"),
        "{message}"
    );
    assert!(
        message.contains("processor 'ghost' is not in the document"),
        "{message}"
    );
    assert_eq!(serde_json::to_string(&export(&rt)).unwrap(), before);
}

#[test]
fn a_setup_that_fails_rolls_everything_back_and_the_export_is_byte_identical() {
    let (rt, store) = running_graph();
    assert_eventually("frames flow", || store.lock().unwrap().len() > 5);
    let revision_before = export(&rt).revision.unwrap();
    let before = serde_json::to_string(&editable(&rt)).unwrap();
    let mut doc = editable(&rt);
    // A restart that succeeds, a new processor that succeeds, and one whose setup fails.
    processor_mut(&mut doc, "chord")["config"]["sample_rate"] = json!(32000);
    doc["processors"].as_array_mut().unwrap().extend([
        json!({"id": "extra", "type": "CountingSinkProcessor"}),
        json!({"id": "broken", "type": "ProbeProcessor", "config": {"fail_setup": true}}),
    ]);
    let e = apply(&rt, doc, false).unwrap_err();
    assert_eq!(e.code(), "graph_rejected");
    let StreamError::GraphRejected { problems } = &e else {
        panic!("{e}");
    };
    assert_eq!(problems.len(), 1, "{e}");
    assert_eq!(problems[0].place, "processors[5] ('broken')");
    assert!(
        problems[0].message.contains("probe told to fail in setup"),
        "{e}"
    );
    // Everything as it was, the chord's config included. The revision has moved on: the
    // chord's new config was visible for a moment (a revision names one state only).
    assert_eq!(serde_json::to_string(&editable(&rt)).unwrap(), before);
    assert!(export(&rt).revision.unwrap() > revision_before);
    let chord = block_on(rt.service.get_processor(ProcessorUniqueId::new("chord"))).unwrap();
    assert_eq!(chord.state, ProcessorStatus::Running);
    let state = block_on(rt.service.get_state()).unwrap();
    assert_eq!(state.processor_count, 4);
    let seen = store.lock().unwrap().len();
    assert_eventually("frames still flow", || {
        store.lock().unwrap().len() > seen + 20
    });
    assert_continuous(&store);
}

#[test]
fn an_apply_against_another_revision_is_refused() {
    let (rt, _store) = running_graph();
    let doc = export(&rt);
    let revision = doc.revision.unwrap();
    // The graph changes: the exported document's revision is stale now.
    block_on(rt.service.remove_processor(ProcessorUniqueId::new("sink"))).unwrap();
    let e = block_on(rt.service.apply_graph(doc.clone(), false, None)).unwrap_err();
    assert_eq!(e.code(), "revision_mismatch");
    assert!(
        e.to_string().contains(&format!("expected {revision}")),
        "{e}"
    );
    // If-Match says the same; the current revision passes.
    let current = export(&rt).revision.unwrap();
    let unversioned = GraphFile {
        revision: None,
        ..doc
    };
    let e = block_on(
        rt.service
            .apply_graph(unversioned.clone(), true, Some(revision)),
    )
    .unwrap_err();
    assert_eq!(e.code(), "revision_mismatch");
    let planned = block_on(rt.service.apply_graph(unversioned, true, Some(current))).unwrap();
    assert_eq!(
        kinds(&planned),
        [
            (PlanActionKind::Add, "sink".to_string()),
            (
                PlanActionKind::Connect,
                "chord.audio -> sink.audio".to_string()
            ),
        ]
    );
}

#[test]
fn an_apply_to_an_empty_runtime_builds_the_graph_and_an_empty_document_removes_it() {
    let rt = RuntimeThread::start(|_| {});
    let doc = json!({
        "processors": [
            {"id": "src", "type": "TestPatternProcessor", "config": {"width": 32, "height": 32}},
            {"id": "sink", "type": "CountingSinkProcessor"}
        ],
        "connections": [{"from": "src.video", "to": "sink.video"}]
    });
    let applied = apply(&rt, doc, false).unwrap();
    assert_eq!(applied.actions.len(), 3);
    assert_eventually("frames arrive", || {
        block_on(rt.service.get_processor(ProcessorUniqueId::new("sink")))
            .unwrap()
            .metrics
            .get("video_frames")
            .copied()
            .unwrap_or(0)
            > 3
    });
    let applied = apply(&rt, json!({}), false).unwrap();
    assert_eq!(
        kinds(&applied),
        [
            (
                PlanActionKind::Disconnect,
                "src.video -> sink.video".to_string()
            ),
            (PlanActionKind::Remove, "src".to_string()),
            (PlanActionKind::Remove, "sink".to_string()),
        ]
    );
    assert_eq!(block_on(rt.service.get_state()).unwrap().processor_count, 0);
}

#[test]
fn an_apply_that_removes_a_writer_answers_once_its_file_is_complete() {
    let rt = RuntimeThread::start(|_| {});
    let name = format!("apply-removes-writer-{}.wav", std::process::id());
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("api-media")
        .join(&name);
    let doc = json!({
        "processors": [
            {"id": "tone", "type": "ChordGeneratorProcessor", "config": {"channels": 1}},
            {"id": "wav", "type": "WavWriterProcessor", "config": {"path": name, "sample_format": "i16"}}
        ],
        "connections": [{"from": "tone.audio", "to": "wav.audio"}]
    });
    apply(&rt, doc, false).unwrap();
    assert_eventually("the writer has samples", || {
        std::fs::metadata(&path).is_ok_and(|m| m.len() > 10_000)
    });
    let applied = apply(&rt, json!({}), false).unwrap();
    assert_eq!(applied.actions.len(), 3);
    // Answered after the writer's teardown: the RIFF and data sizes in the header are final.
    let bytes = std::fs::read(&path).unwrap();
    let riff = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    assert_eq!(
        riff + 8,
        bytes.len(),
        "the header's RIFF size is the file's"
    );
    let data = bytes.windows(4).position(|w| w == b"data").unwrap();
    let data_len = u32::from_le_bytes(bytes[data + 4..data + 8].try_into().unwrap()) as usize;
    assert_eq!(data + 8 + data_len, bytes.len());
    assert!(data_len > 10_000);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn an_apply_waits_for_the_teardown_of_what_it_removes() {
    let rt = RuntimeThread::start(|_| {});
    let doc = json!({"processors": [
        {"id": "slow", "type": "ProbeProcessor", "config": {"teardown_gate": "apply-waits-for-teardown"}}
    ]});
    apply(&rt, doc, false).unwrap();
    let service = rt.service.clone();
    let removing = std::thread::spawn(move || {
        let empty: GraphFile = serde_json::from_value(json!({})).unwrap();
        block_on(service.apply_graph(empty, false, None))
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        !removing.is_finished(),
        "answered before the teardown ended"
    );
    // Reads are served meanwhile; the processor is already out of the graph.
    assert_eq!(export(&rt).processors.len(), 0);
    open_gate("apply-waits-for-teardown");
    let applied = removing.join().unwrap().unwrap();
    assert_eq!(
        kinds(&applied),
        [(PlanActionKind::Remove, "slow".to_string())]
    );
}

#[test]
fn a_new_source_is_released_once_its_links_are_made_so_no_frame_is_lost() {
    let rt = RuntimeThread::start(|_| {});
    // A source that writes 500 frames at once when released, as fast as its link takes them.
    let doc = json!({
        "processors": [
            {"id": "burst", "type": "BurstSourceProcessor", "config": {"count": 500}},
            {"id": "sink", "type": "CountingSinkProcessor"}
        ],
        "connections": [{"from": "burst.video", "to": "sink.video", "overflow": "backpressure"}]
    });
    apply(&rt, doc, false).unwrap();
    assert_eventually("every frame arrives", || {
        block_on(rt.service.get_processor(ProcessorUniqueId::new("sink")))
            .unwrap()
            .metrics
            .get("video_frames")
            .copied()
            .unwrap_or(0)
            == 500
    });
}

#[test]
fn an_apply_waits_for_a_restart_in_progress_and_plans_against_its_result() {
    let (rt, store) = running_graph();
    assert_eventually("frames flow", || store.lock().unwrap().len() > 5);
    let doc = editable(&rt);
    // A restart with a new config, then at once an apply of the document as it was before:
    // the apply waits for the restart and then puts the old config back (a plan made before
    // the restart stored its config would have found nothing to do).
    let service = rt.service.clone();
    let restart = std::thread::spawn(move || {
        block_on(service.update_config(
            ProcessorUniqueId::new("chord"),
            ConfigChange::Merge(json!({"sample_rate": 32000})),
            true,
        ))
    });
    let applied = apply(&rt, doc.clone(), false).unwrap();
    restart.join().unwrap().unwrap();
    if applied.actions.is_empty() {
        // The apply ran before the restart began: then the restart came after, and the
        // graph has its config. Either order is consistent.
        assert_eq!(
            processor_mut(&mut editable(&rt), "chord")["config"]["sample_rate"],
            json!(32000)
        );
    } else {
        assert_eq!(
            kinds(&applied),
            [(PlanActionKind::Restart, "chord".to_string())]
        );
        assert_eq!(editable(&rt), doc);
    }
}

#[test]
fn positions_are_part_of_the_document_and_touch_nothing_that_runs() {
    let (rt, store) = running_graph();
    let at = |x: f64, y: f64| Some(UiPosition { x, y });
    // Placed through the service: a new revision, one event, in the export.
    let mut events = rt.service.subscribe_events();
    let before = export(&rt).revision.unwrap();
    let changes = [
        ("pattern".to_string(), at(10.0, 20.0)),
        ("sink".to_string(), at(-5.5, 300.0)),
    ];
    let revision = block_on(rt.service.set_positions(changes.into_iter().collect())).unwrap();
    assert_eq!(revision, before + 1);
    let moved = loop {
        let event = block_on(events.recv()).unwrap();
        if let RuntimeEventKind::LayoutChanged { processors } = event.kind {
            break processors;
        }
    };
    assert_eq!(moved, ["pattern", "sink"].map(ProcessorUniqueId::from));
    let doc = export(&rt);
    assert_eq!(
        doc.ui.as_ref().unwrap().positions["pattern"],
        UiPosition { x: 10.0, y: 20.0 }
    );
    assert_eq!(doc.ui.as_ref().unwrap().positions.len(), 2);
    // The same positions again: nothing moved, no new revision.
    let same = [("pattern".to_string(), at(10.0, 20.0))];
    assert_eq!(
        block_on(rt.service.set_positions(same.into_iter().collect())).unwrap(),
        revision
    );
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(event.kind, RuntimeEventKind::LayoutChanged { .. }),
            "nothing moved, yet {event:?}"
        );
    }
    // All or nothing: an unknown processor, or a position out of range, changes nothing.
    let unknown = [
        ("pattern".to_string(), at(0.0, 0.0)),
        ("nobody".to_string(), at(0.0, 0.0)),
    ];
    let e = block_on(rt.service.set_positions(unknown.into_iter().collect())).unwrap_err();
    assert_eq!(e.code(), "processor_not_found");
    let far = [("pattern".to_string(), at(1e300, 0.0))];
    let e = block_on(rt.service.set_positions(far.into_iter().collect())).unwrap_err();
    match e {
        StreamError::GraphRejected { problems } => {
            assert_eq!(problems[0].place, "positions.pattern", "{problems:?}")
        }
        other => panic!("expected graph_rejected, got {other}"),
    }
    assert_eq!(export(&rt), doc);
    // Applied back: nothing to do. A document without `ui` leaves the drawing alone.
    let mut text = serde_json::to_value(&doc).unwrap();
    text.as_object_mut().unwrap().remove("revision");
    assert!(apply(&rt, text.clone(), false).unwrap().actions.is_empty());
    text.as_object_mut().unwrap().remove("ui");
    assert!(apply(&rt, text.clone(), false).unwrap().actions.is_empty());
    assert_eq!(export(&rt).ui, doc.ui);
    // A document that draws elsewhere: only a layout action, and frames keep flowing.
    text["ui"] =
        json!({"positions": {"pattern": {"x": 1.0, "y": 2.0}, "recorder": {"x": 3.0, "y": 4.0}}});
    let applied = apply(&rt, text.clone(), true).unwrap();
    assert_eq!(
        kinds(&applied),
        [(PlanActionKind::Layout, "ui".to_string())]
    );
    assert_eq!(applied.actions[0].changed, ["pattern", "recorder", "sink"]);
    let recorded = store.lock().unwrap().len();
    apply(&rt, text.clone(), false).unwrap();
    assert!(
        eventually(|| store.lock().unwrap().len() > recorded + 10),
        "frames stopped after the layout change"
    );
    let after = export(&rt);
    assert_eq!(
        after.ui.as_ref().unwrap().positions.len(),
        2,
        "{:?}",
        after.ui
    );
    assert_eq!(
        after.ui.as_ref().unwrap().positions["recorder"],
        UiPosition { x: 3.0, y: 4.0 }
    );
    assert!(after.revision > doc.revision);
    // A position naming no processor of the document is a problem at its place.
    let mut ghost = text.clone();
    ghost["ui"]["positions"]["ghost"] = json!({"x": 0.0, "y": 0.0});
    match apply(&rt, ghost, true).unwrap_err() {
        StreamError::GraphRejected { problems } => {
            assert_eq!(problems[0].place, "ui.positions.ghost", "{problems:?}")
        }
        other => panic!("expected graph_rejected, got {other}"),
    }
    // An empty `ui` unplaces everything (it is not the same as no `ui`); a `ui` that is not an
    // object is no document.
    let mut empty = text.clone();
    empty["ui"] = json!({});
    let applied = apply(&rt, empty, true).unwrap();
    assert_eq!(applied.actions[0].changed, ["pattern", "recorder"]);
    // Objects only, where serde would also take their values in an array; refused at the place.
    for (text, place) in [
        (r#"{"ui": []}"#, "ui"),
        (r#"{"ui": {"positions": {"a": [1, 2]}}}"#, "ui.positions.a"),
        (
            r#"{"processors": [["src", "TestPatternProcessor"]]}"#,
            "processors[0]",
        ),
        (
            r#"{"connections": [["a.video", "b.video"]]}"#,
            "connections[0]",
        ),
    ] {
        let e = GraphFile::from_json(text).unwrap_err().to_string();
        assert!(
            e.contains(place) && e.contains("expected an object"),
            "{text}: {e}"
        );
    }
    // A processor replaced (its type changes) by a document without `ui` keeps its place.
    let mut replace = editable(&rt);
    replace.as_object_mut().unwrap().remove("ui");
    *processor_mut(&mut replace, "recorder") =
        json!({"id": "recorder", "type": "CountingSinkProcessor"});
    let applied = apply(&rt, replace, false).unwrap();
    assert!(
        kinds(&applied).contains(&(PlanActionKind::Add, "recorder".to_string())),
        "{applied:?}"
    );
    assert!(
        !applied
            .actions
            .iter()
            .any(|a| a.action == PlanActionKind::Layout),
        "{applied:?}"
    );
    assert_eq!(
        export(&rt).ui.unwrap().positions["recorder"],
        UiPosition { x: 3.0, y: 4.0 }
    );
    // A processor removed takes its position with it.
    block_on(
        rt.service
            .remove_processor(ProcessorUniqueId::from("recorder")),
    )
    .unwrap();
    assert!(
        !export(&rt)
            .ui
            .is_some_and(|ui| ui.positions.contains_key("recorder"))
    );
    assert_continuous(&store);
}
