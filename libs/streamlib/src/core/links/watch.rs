//! Watching an output port: the frames it writes, copied out (a reference, never the payload)
//! for whoever looks — a snapshot now, previews and taps later — and not at all while nobody
//! does: a port's write checks one counter, and clones a frame only while a [`PortWatch`] is
//! open on it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use tokio::sync::watch;

use crate::core::frames::{AnyFrame, Frame, FrameType};

/// The newest frame an output port wrote while watched (`None` between looks).
pub(crate) struct PortFrames<T> {
    /// Open watches: what every write checks (one load; the channel is touched only above 0).
    watchers: AtomicUsize,
    /// Frames kept so far: each kept frame carries its number, so a watch that falls behind
    /// knows how many it skipped.
    kept: AtomicU64,
    tx: watch::Sender<Option<(u64, T)>>,
}

impl<T: Frame> Default for PortFrames<T> {
    fn default() -> Self {
        Self {
            watchers: AtomicUsize::new(0),
            kept: AtomicU64::new(0),
            tx: watch::Sender::new(None),
        }
    }
}

impl<T: Frame> PortFrames<T> {
    /// Offers a frame the port writes: kept (a handle) only while somebody watches.
    #[inline]
    pub(crate) fn offer(&self, frame: &T) {
        if self.watchers.load(Ordering::Relaxed) > 0 {
            self.keep(frame);
        }
    }

    #[cold]
    fn keep(&self, frame: &T) {
        // Numbered under the channel's lock: a port written from two threads (a device
        // callback's clone) still keeps numbers and frames in order.
        self.tx.send_modify(|kept| {
            let number = self.kept.fetch_add(1, Ordering::Relaxed) + 1;
            *kept = Some((number, frame.clone()));
        });
    }

    /// Starts watching: the next frame written from now on (a new receiver counts what the
    /// channel holds as seen). The watch holds the port weakly: when the port goes (its
    /// processor removed), the channel closes and the watch ends.
    pub(crate) fn watch(self: &Arc<Self>) -> PortWatch {
        self.watchers.fetch_add(1, Ordering::Relaxed);
        PortWatch {
            inner: Box::new(Watcher {
                rx: Some(self.tx.subscribe()),
                last: self.kept.load(Ordering::Relaxed),
                missed: 0,
                frames: Arc::downgrade(self),
            }),
            frame_type: T::FRAME_TYPE,
            port: Arc::as_ptr(self) as usize,
        }
    }
}

/// An open watch on one output port (see the module docs). Dropping it ends the watch.
pub struct PortWatch {
    inner: Box<dyn NextFrame>,
    frame_type: FrameType,
    /// Where the port's frames are kept: the watch holds it (weakly), so no other port can
    /// have this address while the watch lives.
    port: usize,
}

impl std::fmt::Debug for PortWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PortWatch")
    }
}

impl PortWatch {
    /// The kind of frame the port carries.
    pub fn frame_type(&self) -> FrameType {
        self.frame_type
    }

    /// Which output port this watches: two watches with the same value, both open, watch the
    /// same port (an input's watch is its feeding output's).
    pub fn port_identity(&self) -> usize {
        self.port
    }

    /// The next frame the port writes (the newest, if several were written since the last
    /// call); `None` once the port is gone (its processor removed and dropped).
    pub async fn next(&mut self) -> Option<AnyFrame> {
        self.inner.next().await
    }

    /// Frames the port wrote since this watch began that [`next`](Self::next) did not return
    /// (it returns the newest; a caller slower than the port skips the rest).
    pub fn missed(&self) -> u64 {
        self.inner.missed()
    }
}

type NextFuture<'a> = Pin<Box<dyn Future<Output = Option<AnyFrame>> + Send + 'a>>;

trait NextFrame: Send {
    fn next(&mut self) -> NextFuture<'_>;
    fn missed(&self) -> u64;
}

struct Watcher<T> {
    /// Always `Some` until dropped (taken first, so the count below no longer includes it).
    rx: Option<watch::Receiver<Option<(u64, T)>>>,
    /// The number of the last frame returned (or kept before the watch began).
    last: u64,
    missed: u64,
    frames: Weak<PortFrames<T>>,
}

impl<T: Frame> NextFrame for Watcher<T> {
    fn next(&mut self) -> NextFuture<'_> {
        Box::pin(async move {
            let rx = self.rx.as_mut()?;
            loop {
                // Fails once the sender is gone (the port dropped with its processor).
                rx.changed().await.ok()?;
                if let Some((number, frame)) = rx.borrow_and_update().clone() {
                    self.missed += number.saturating_sub(self.last).saturating_sub(1);
                    self.last = self.last.max(number);
                    return Some(frame.into_any());
                }
            }
        })
    }

    fn missed(&self) -> u64 {
        self.missed
    }
}

impl<T> Drop for Watcher<T> {
    fn drop(&mut self) {
        drop(self.rx.take());
        // Nobody watches any more: do not keep the last frame's memory until the next look.
        // (A frame offered in the same moment may stay; one per port at most.)
        if let Some(frames) = self.frames.upgrade() {
            if frames.watchers.fetch_sub(1, Ordering::Relaxed) == 1 {
                frames.tx.send_if_modified(|kept| {
                    kept.take();
                    false
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::frames::DataFrame;

    fn data(n: u64) -> DataFrame {
        DataFrame::new("n", serde_json::json!(n), 0, n)
    }

    #[test]
    fn frames_are_kept_only_while_watched_and_a_watch_sees_what_comes_after_it() {
        let frames = Arc::new(PortFrames::<DataFrame>::default());
        frames.offer(&data(1));
        assert!(
            frames.tx.borrow().is_none(),
            "nobody watching: nothing kept"
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut watch = frames.watch();
            frames.offer(&data(2));
            frames.offer(&data(3));
            match watch.next().await {
                Some(AnyFrame::Data(d)) => assert_eq!(d.frame_number, 3, "the newest"),
                other => panic!("{other:?}"),
            }
            assert_eq!(watch.missed(), 1, "frame 2 was skipped");
            drop(watch);
            assert!(frames.tx.borrow().is_none(), "released after the look");
            // A new watch does not get what an earlier one saw.
            frames.offer(&data(4));
            let mut watch = frames.watch();
            frames.offer(&data(5));
            match watch.next().await {
                Some(AnyFrame::Data(d)) => assert_eq!(d.frame_number, 5),
                other => panic!("{other:?}"),
            }
            // While one watch is open the last frame is kept, but a new watch starts after it;
            // the port going ends every watch.
            let mut second = frames.watch();
            assert!(frames.tx.borrow().is_some());
            drop(frames);
            assert!(second.next().await.is_none(), "the port is gone");
            assert!(watch.next().await.is_none());
        });
    }
}
