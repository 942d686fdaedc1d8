//! PROCESSOR_REGISTRY: the registered built-ins, default configs, and error messages.

use streamlib::core::*;

#[test]
fn built_in_types_are_registered() {
    let mut names = PROCESSOR_REGISTRY.type_names();
    names.retain(|n| *n != "ApiServerProcessor");
    let mut expected = vec![
        "AudioChannelConverterProcessor",
        "AudioLevelsProcessor",
        "AudioMixerProcessor",
        "AudioResamplerProcessor",
        "BufferRechunkerProcessor",
        "ChordGeneratorProcessor",
        "CountingSinkProcessor",
        "SimplePassthroughProcessor",
        "TestPatternProcessor",
        "VideoScaleProcessor",
        "WavSourceProcessor",
        "WavWriterProcessor",
    ];
    if cfg!(feature = "ffmpeg") {
        expected.extend(["FileSourceProcessor", "Mp4WriterProcessor"]);
    }
    // Device processors register when their feature is built (on Linux).
    if cfg!(all(target_os = "linux", feature = "camera")) {
        expected.push("CameraProcessor");
    }
    if cfg!(all(target_os = "linux", feature = "display")) {
        expected.push("DisplayProcessor");
    }
    if cfg!(all(target_os = "linux", feature = "audio-devices")) {
        expected.extend(["AudioCaptureProcessor", "AudioOutputProcessor"]);
    }
    expected.sort_unstable();
    assert_eq!(names, expected);
}

#[test]
fn every_type_builds_from_null_and_empty_configs() {
    // File processors need a path; everything else has a default for every setting.
    const NEED_A_PATH: [&str; 4] = [
        "FileSourceProcessor",
        "Mp4WriterProcessor",
        "WavSourceProcessor",
        "WavWriterProcessor",
    ];
    let mut rt = StreamRuntime::new().unwrap();
    for name in PROCESSOR_REGISTRY.type_names() {
        for config in [serde_json::Value::Null, serde_json::json!({})] {
            let created = PROCESSOR_REGISTRY.create(name, config);
            if NEED_A_PATH.contains(&name) {
                let e = created.err().map(|e| e.to_string()).unwrap_or_default();
                assert!(e.contains("field 'path': is required"), "{name}: {e}");
                continue;
            }
            let spec = created.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(spec.type_name(), name);
            if name != "ApiServerProcessor" {
                rt.add_processor(spec)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
    }
}

#[test]
fn unknown_types_list_the_known_ones() {
    let e = PROCESSOR_REGISTRY
        .create("CameraProcesor", serde_json::Value::Null)
        .unwrap_err();
    assert_eq!(e.code(), "unknown_processor_type");
    let msg = e.to_string();
    assert!(
        msg.contains("CameraProcesor")
            && msg.contains("known types: ")
            && msg.contains("SimplePassthroughProcessor, TestPatternProcessor"),
        "{msg}"
    );
}

#[track_caller]
fn config_error(type_name: &str, config: serde_json::Value) -> (Option<String>, String) {
    match PROCESSOR_REGISTRY.create(type_name, config).unwrap_err() {
        StreamError::InvalidConfig {
            field,
            message,
            processor_type,
        } => {
            assert_eq!(processor_type, type_name);
            (field, message)
        }
        other => panic!("expected invalid_config, got {other:?}"),
    }
}

#[test]
fn bad_configs_name_the_field_and_the_expectation() {
    let (field, message) =
        config_error("TestPatternProcessor", serde_json::json!({"width": "wide"}));
    assert_eq!(field.as_deref(), Some("width"));
    assert!(message.contains("expected u32"), "{message}");

    let (_, message) = config_error("TestPatternProcessor", serde_json::json!({"widht": 10}));
    assert!(
        message.contains("unknown field `widht`") && message.contains("`width`"),
        "{message}"
    );

    let (field, _) = config_error(
        "ChordGeneratorProcessor",
        serde_json::json!({"frequencies": [440, "x"]}),
    );
    assert_eq!(field.as_deref(), Some("frequencies[1]"));

    let (field, message) = config_error("TestPatternProcessor", serde_json::json!({"width": 4}));
    assert_eq!(field.as_deref(), Some("width"));
    assert!(message.contains("between 16 and 7680"), "{message}");

    let (field, message) = config_error("TestPatternProcessor", serde_json::json!([1, 2]));
    assert_eq!(field, None);
    assert!(message.contains("must be a JSON object"), "{message}");

    let (_, message) = config_error("SimplePassthroughProcessor", serde_json::json!({"x": 1}));
    assert!(message.contains("unknown field `x`"), "{message}");
}

#[test]
fn descriptors_carry_ports_and_a_documented_schema() {
    let d = PROCESSOR_REGISTRY
        .descriptor("TestPatternProcessor")
        .unwrap();
    assert_eq!(d.execution, Execution::Continuous { interval_ms: None });
    assert!(d.inputs.is_empty());
    assert_eq!(
        (d.outputs[0].name.as_str(), d.outputs[0].frame_type),
        ("video", FrameType::Video)
    );
    let width = &d.config_schema["properties"]["width"];
    assert!(
        width["description"]
            .as_str()
            .unwrap()
            .contains("Frame width"),
        "{width}"
    );
    assert_eq!(d.config_schema["properties"]["fps"]["default"], 30.0);

    let d = PROCESSOR_REGISTRY
        .descriptor("SimplePassthroughProcessor")
        .unwrap();
    assert_eq!(d.execution, Execution::Reactive);
    assert_eq!(
        d.config_schema["additionalProperties"], false,
        "no config: only {{}} is accepted"
    );
}
