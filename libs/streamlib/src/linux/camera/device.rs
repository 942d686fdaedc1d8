//! Finding a V4L2 capture device and agreeing on a format with it.

use std::io;
use std::path::{Path, PathBuf};

use v4l::capability::Flags;
use v4l::framesize::FrameSizeEnum;
use v4l::video::Capture;
use v4l::{Device, Format, FourCC};

/// The pixel formats this crate converts, in V4L2's names.
pub(crate) const YUYV: FourCC = FourCC { repr: *b"YUYV" };
/// Motion-JPEG.
pub(crate) const MJPG: FourCC = FourCC { repr: *b"MJPG" };

/// An opened capture device and what it is.
pub(crate) struct OpenedCamera {
    pub(crate) device: Device,
    pub(crate) path: PathBuf,
    pub(crate) card: String,
}

/// Opens the camera `device_id` names: a path (`/dev/video2`), an index (`2`), or the card
/// name the driver reports (`Integrated Camera`); `None` takes the first capture device.
pub(crate) fn open(device_id: Option<&str>) -> Result<OpenedCamera, String> {
    match device_id {
        None => {
            let nodes = video_nodes();
            for path in &nodes {
                if let Ok(camera) = open_path(path) {
                    return Ok(camera);
                }
            }
            Err(if nodes.is_empty() {
                "no camera found: there is no /dev/video* device (connect a camera, or check that \
                 its driver is loaded)"
                    .to_string()
            } else {
                format!(
                    "no camera found: none of {} is a video capture device this process may open",
                    list(&nodes)
                )
            })
        }
        Some(id) if id.starts_with('/') => open_path(Path::new(id)),
        Some(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => {
            open_path(&PathBuf::from(format!("/dev/video{id}")))
        }
        Some(name) => {
            let nodes = video_nodes();
            for path in &nodes {
                if let Ok(camera) = open_path(path) {
                    if camera.card == name {
                        return Ok(camera);
                    }
                }
            }
            Err(format!(
                "camera '{name}' not found: no video capture device has that name{}",
                if nodes.is_empty() {
                    " (there is no /dev/video* device)".to_string()
                } else {
                    format!(" (devices: {})", list(&nodes))
                }
            ))
        }
    }
}

/// `/dev/video*` nodes in numeric order.
fn video_nodes() -> Vec<PathBuf> {
    let mut nodes: Vec<PathBuf> = v4l::context::enum_devices()
        .into_iter()
        .map(|node| node.path().to_path_buf())
        .collect();
    nodes.sort_by_key(|p| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let digits: String = name.chars().filter(char::is_ascii_digit).collect();
        (digits.parse::<u64>().unwrap_or(u64::MAX), name.to_string())
    });
    nodes
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Opens `path` and checks that it captures video.
fn open_path(path: &Path) -> Result<OpenedCamera, String> {
    let shown = path.display();
    let device = Device::with_path(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => format!("camera '{shown}' not found: no such device"),
        io::ErrorKind::PermissionDenied => {
            format!("camera '{shown}': permission denied (add the user to the 'video' group)")
        }
        _ => format!("camera '{shown}' cannot be opened: {e}"),
    })?;
    let caps = device
        .query_caps()
        .map_err(|e| format!("camera '{shown}' is not a V4L2 device: {e}"))?;
    if !caps.capabilities.contains(Flags::VIDEO_CAPTURE) {
        return Err(format!(
            "'{shown}' ({}, driver {}) is not a video capture device",
            caps.card, caps.driver
        ));
    }
    if !caps.capabilities.contains(Flags::STREAMING) {
        return Err(format!(
            "camera '{shown}' ({}) does not support streaming I/O",
            caps.card
        ));
    }
    Ok(OpenedCamera {
        device,
        path: path.to_path_buf(),
        card: caps.card,
    })
}

/// Chooses a format the device offers and this crate converts, as close to `width`×`height`
/// as the device allows, and sets it. Returns what the driver agreed to.
pub(crate) fn negotiate(camera: &OpenedCamera, width: u32, height: u32) -> Result<Format, String> {
    let shown = camera.path.display();
    let offered = camera.device.enum_formats().map_err(|e| {
        format!(
            "camera '{shown}' ({}): cannot list formats: {e}",
            camera.card
        )
    })?;
    let has = |fourcc: FourCC| offered.iter().any(|d| d.fourcc == fourcc);
    // Motion-JPEG saves USB bandwidth above VGA; YUYV needs no decoding below it.
    let preference = if u64::from(width) * u64::from(height) > 640 * 480 {
        [MJPG, YUYV]
    } else {
        [YUYV, MJPG]
    };
    let Some(fourcc) = preference.into_iter().find(|f| has(*f)) else {
        let names: Vec<String> = offered.iter().map(|d| d.fourcc.to_string()).collect();
        return Err(format!(
            "camera '{shown}' ({}) offers no format streamlib converts: it offers [{}], streamlib \
             reads YUYV and MJPG",
            camera.card,
            names.join(", ")
        ));
    };
    let (w, h) = closest_size(&camera.device, fourcc, width, height);
    let agreed = camera
        .device
        .set_format(&Format::new(w, h, fourcc))
        .map_err(|e| busy_or(e, camera, "cannot set the format"))?;
    if agreed.fourcc != fourcc {
        return Err(format!(
            "camera '{shown}' ({}) refused format {fourcc} and chose {} instead",
            camera.card, agreed.fourcc
        ));
    }
    Ok(agreed)
}

/// The offered frame size nearest to the request (by area difference), or the request itself
/// when the driver does not list sizes.
fn closest_size(device: &Device, fourcc: FourCC, width: u32, height: u32) -> (u32, u32) {
    let Ok(sizes) = device.enum_framesizes(fourcc) else {
        return (width, height);
    };
    let target = i64::from(width) * i64::from(height);
    sizes
        .into_iter()
        .flat_map(|s| match s.size {
            FrameSizeEnum::Discrete(d) => vec![(d.width, d.height)],
            FrameSizeEnum::Stepwise(s) => vec![(
                width.max(s.min_width).min(s.max_width.max(s.min_width)),
                height.max(s.min_height).min(s.max_height.max(s.min_height)),
            )],
        })
        .min_by_key(|(w, h)| {
            let area = i64::from(*w) * i64::from(*h);
            (
                (area - target).abs(),
                i64::from(*w).abs_diff(i64::from(width)),
            )
        })
        .unwrap_or((width, height))
}

/// Describes an I/O error of `camera`, calling out a device in use by another program.
pub(crate) fn busy_or(e: io::Error, camera: &OpenedCamera, doing: &str) -> String {
    if e.kind() == io::ErrorKind::ResourceBusy {
        format!(
            "camera '{}' ({}) is busy: another program is using it",
            camera.path.display(),
            camera.card
        )
    } else {
        format!(
            "camera '{}' ({}): {doing}: {e}",
            camera.path.display(),
            camera.card
        )
    }
}
