//! Finding a sound device and a stream configuration it accepts.

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{SampleFormat, SupportedStreamConfig, SupportedStreamConfigRange};

/// Whether a device plays or records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceDirection {
    /// Plays sound.
    Output,
    /// Records sound.
    Input,
}

impl DeviceDirection {
    fn noun(self) -> &'static str {
        match self {
            DeviceDirection::Output => "output",
            DeviceDirection::Input => "input",
        }
    }
}

/// Sample formats the streams convert to and from f32, best first.
pub(crate) const FORMATS: [SampleFormat; 6] = [
    SampleFormat::F32,
    SampleFormat::I32,
    SampleFormat::I24,
    SampleFormat::I16,
    SampleFormat::U16,
    SampleFormat::U8,
];

/// Checks the settings both device processors share: the device name (not empty), the
/// sample rate (8000 to 384000 Hz) and the channel count (1 to 32).
pub(crate) fn validate_format(
    device: Option<&str>,
    sample_rate: u32,
    channels: u16,
) -> Result<(), crate::core::processors::ConfigError> {
    use crate::core::processors::ConfigError;
    if device == Some("") {
        return Err(ConfigError::new(
            "device",
            "must be null (the default device) or a device id; got an empty string",
        ));
    }
    ConfigError::check_range("sample_rate", sample_rate, 8_000, 384_000)?;
    ConfigError::check_range("channels", channels, 1, 32)
}

/// The ids (`alsa:null`, `alsa:default`, `alsa:hw:CARD=0,DEV=0`…) of the devices that can
/// play (or record), on every sound system cpal offers here, as a `device` setting accepts
/// them.
pub fn list_devices(direction: DeviceDirection) -> Vec<String> {
    super::alsa_messages::quiet(|| device_ids(direction))
}

fn device_ids(direction: DeviceDirection) -> Vec<String> {
    let mut ids = Vec::new();
    for host_id in cpal::available_hosts() {
        let Ok(host) = cpal::host_from_id(host_id) else {
            continue;
        };
        let devices = match direction {
            DeviceDirection::Output => host.output_devices().map(|d| d.collect::<Vec<_>>()),
            DeviceDirection::Input => host.input_devices().map(|d| d.collect::<Vec<_>>()),
        };
        ids.extend(
            devices
                .unwrap_or_default()
                .iter()
                .filter_map(|d| d.id().ok().map(|id| id.to_string())),
        );
    }
    ids
}

/// The device `name` selects: `None` for the system default, else an id as
/// [`list_devices`] gives it (`alsa:null`), an ALSA name without the host (`null`,
/// `hw:0,0`), or a device's description.
pub(crate) fn find(name: Option<&str>, direction: DeviceDirection) -> Result<cpal::Device, String> {
    let host = cpal::default_host();
    let noun = direction.noun();
    let Some(name) = name else {
        let device = match direction {
            DeviceDirection::Output => host.default_output_device(),
            DeviceDirection::Input => host.default_input_device(),
        };
        return device.ok_or_else(|| {
            format!(
                "no sound {noun} device: the system has no default {noun} device ({})",
                known(direction)
            )
        });
    };
    // An id names its sound system (`alsa:`…): look there, whatever the default is.
    let by_id = |id: &str| {
        let id = id.parse::<cpal::DeviceId>().ok()?;
        cpal::host_from_id(id.host()).ok()?.device_by_id(&id)
    };
    if let Some(device) = by_id(name).or_else(|| by_id(&format!("alsa:{name}"))) {
        return Ok(device);
    }
    let devices = match direction {
        DeviceDirection::Output => host.output_devices().map(|d| d.collect::<Vec<_>>()),
        DeviceDirection::Input => host.input_devices().map(|d| d.collect::<Vec<_>>()),
    }
    .unwrap_or_default();
    devices
        .into_iter()
        .find(|d| d.description().is_ok_and(|desc| desc.name() == name))
        .ok_or_else(|| {
            format!(
                "sound {noun} device '{name}' not found ({})",
                known(direction)
            )
        })
}

/// "devices: a, b" or "no devices", for error messages.
fn known(direction: DeviceDirection) -> String {
    let ids = list_devices(direction);
    if ids.is_empty() {
        format!(
            "this machine has no sound {} devices at all",
            direction.noun()
        )
    } else {
        format!("{} devices: {}", direction.noun(), ids.join(", "))
    }
}

/// Why a device could not be opened, naming the devices there are when it is missing.
pub(crate) fn open_failed(shown: &str, direction: DeviceDirection, e: &cpal::Error) -> String {
    let noun = direction.noun();
    match e.kind() {
        cpal::ErrorKind::DeviceNotAvailable | cpal::ErrorKind::HostUnavailable => format!(
            "sound {noun} device '{shown}' is not available (no sound card or sound server behind it); {}",
            known(direction)
        ),
        cpal::ErrorKind::DeviceBusy => {
            format!("sound {noun} device '{shown}' is busy: another program is using it")
        }
        cpal::ErrorKind::PermissionDenied => format!(
            "sound {noun} device '{shown}': permission denied (add the user to the 'audio' group)"
        ),
        _ => format!("sound {noun} device '{shown}' cannot be opened: {e}"),
    }
}

/// The stream configuration for `supported`, asking the device to work in periods of about
/// `period_ms` when it says which sizes it allows (left to the device otherwise). A device
/// left to itself may choose periods longer than the queue between it and the pipeline.
pub(crate) fn stream_config(
    supported: &SupportedStreamConfig,
    period_ms: u32,
) -> cpal::StreamConfig {
    let mut config = supported.config();
    let wanted = (u64::from(config.sample_rate) * u64::from(period_ms) / 1000).max(16) as u32;
    if let cpal::SupportedBufferSize::Range { min, max } = supported.buffer_size() {
        if min <= max {
            config.buffer_size = cpal::BufferSize::Fixed(wanted.clamp(*min, *max));
        }
    }
    config
}

/// A device chosen and configured for a stream.
pub(crate) struct Prepared {
    pub(crate) device: cpal::Device,
    /// The device's id, for messages.
    pub(crate) shown: String,
    pub(crate) sample_format: SampleFormat,
    pub(crate) config: cpal::StreamConfig,
}

/// The lock-free queue between a device callback and the processor's thread.
pub(crate) type Queue = (rtrb::Producer<f32>, rtrb::Consumer<f32>);

/// Finds the device `name` selects, picks the configuration nearest to `rate` and
/// `channels`, asks for periods of a quarter of `buffer_ms` (so the queue always bridges
/// one), and makes a queue of `buffer_ms`.
pub(crate) fn prepare(
    name: Option<&str>,
    direction: DeviceDirection,
    rate: u32,
    channels: u16,
    buffer_ms: u32,
) -> Result<(Prepared, Queue), String> {
    let device = find(name, direction)?;
    let shown = describe(&device);
    let supported = choose_config(&device, direction, rate, channels)?;
    let config = stream_config(&supported, (buffer_ms / 4).max(5));
    let capacity = (u64::from(config.sample_rate) * u64::from(buffer_ms) / 1000).max(64) as usize
        * usize::from(config.channels);
    let prepared = Prepared {
        device,
        shown,
        sample_format: supported.sample_format(),
        config,
    };
    Ok((prepared, rtrb::RingBuffer::<f32>::new(capacity)))
}

/// Starts a built stream, or says why it could not be built or started.
pub(crate) fn play(
    built: Result<cpal::Stream, cpal::Error>,
    prepared: &Prepared,
    direction: DeviceDirection,
) -> Result<cpal::Stream, String> {
    let shown = &prepared.shown;
    let noun = direction.noun();
    let stream = built.map_err(|e| open_failed(shown, direction, &e))?;
    stream
        .play()
        .map_err(|e| format!("sound {noun} device '{shown}' cannot start: {e}"))?;
    tracing::info!(
        device = %shown,
        rate = prepared.config.sample_rate,
        channels = prepared.config.channels,
        format = %prepared.sample_format,
        direction = noun,
        "sound device opened"
    );
    Ok(stream)
}

/// The error for a sample format the streams do not convert (`choose_config` only picks
/// formats from [`FORMATS`], so it is not reached in practice).
pub(crate) fn unsupported_format(format: SampleFormat) -> cpal::Error {
    cpal::Error::with_message(
        cpal::ErrorKind::UnsupportedConfig,
        format!("sample format {format}"),
    )
}

/// A name for `device` in messages.
pub(crate) fn describe(device: &cpal::Device) -> String {
    device
        .id()
        .map(|id| id.to_string())
        .unwrap_or_else(|_| device.to_string())
}

/// The configuration closest to `rate` Hz and `channels`: a matching channel count first,
/// then the rate (clamped to what the device offers), then the best sample format.
pub(crate) fn choose_config(
    device: &cpal::Device,
    direction: DeviceDirection,
    rate: u32,
    channels: u16,
) -> Result<SupportedStreamConfig, String> {
    let shown = describe(device);
    let noun = direction.noun();
    let ranges: Vec<SupportedStreamConfigRange> = match direction {
        DeviceDirection::Output => device.supported_output_configs().map(|r| r.collect()),
        DeviceDirection::Input => device.supported_input_configs().map(|r| r.collect()),
    }
    .map_err(|e| open_failed(&shown, direction, &e))?;
    let best = ranges
        .iter()
        .filter_map(|range| {
            let format_rank = FORMATS.iter().position(|f| *f == range.sample_format())?;
            let chosen_rate = rate.clamp(range.min_sample_rate(), range.max_sample_rate());
            let score = (
                range.channels() != channels,
                range.channels().abs_diff(channels),
                chosen_rate.abs_diff(rate),
                format_rank,
            );
            Some((score, range, chosen_rate))
        })
        .min_by_key(|(score, _, _)| *score);
    match best {
        Some((_, range, chosen_rate)) => range
            .try_with_sample_rate(chosen_rate)
            .ok_or_else(|| format!("sound {noun} device '{shown}' refused {chosen_rate} Hz")),
        None if ranges.is_empty() => Err(format!(
            "sound {noun} device '{shown}' offers no stream configuration"
        )),
        None => Err(format!(
            "sound {noun} device '{shown}' offers no sample format streamlib converts (it offers {}; streamlib converts f32, i32, i24, i16, u16, u8)",
            ranges
                .iter()
                .map(|r| r.sample_format().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}
