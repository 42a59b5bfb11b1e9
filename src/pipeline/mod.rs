//! The processing pipeline (DESIGN.md section 5): OS-thread stages joined by bounded channels.
//!
//! ```text
//! capture (1 thread / camera) -> motion pool -> detect batcher -> ANPR
//!      \______________ events (cap EVENTS_CAP, Block) ______________/-> publish -> Redis
//! ```
//! Only this module makes channels; each capacity is a `const` whose doc states its policy.

pub mod anpr; // licence plates: plate detector, OCR, dedupe
pub mod capture; // per-camera stream reading, reconnects, frame pacing
pub mod detect; // YOLOv8 object detection
pub mod frame; // Frame: one decoded picture on its way through the stages
pub mod motion; // the motion pool and the frame-differencing detector
pub mod publish; // the Redis Stream publisher thread
pub mod supervise; // stage heartbeats: dead or stalled stages show in health
pub mod track; // per-camera ByteTrack multi-object tracker: detections -> tracks

use crate::events::Event;
use crossbeam_channel::Sender;

/// One stage thread, named for `top -H` and logs, with a heartbeat in the service's
/// [`supervise::Supervisor`]. `join` waits for it and logs a panic with the thread's name
/// instead of propagating it, so shutdown goes on with the other stages.
pub struct StageThread(std::thread::JoinHandle<()>);

impl StageThread {
    pub fn spawn(name: &str, supervisor: &supervise::Supervisor, body: impl FnOnce() + Send + 'static) -> std::io::Result<Self> {
        let beat = supervisor.register(name);
        let sup_enter = {
            let beat = beat.clone();
            move || {
                let _ended = supervise::EndGuard(beat.clone());
                supervise::Supervisor::enter_current(&beat);
                body();
            }
        };
        std::thread::Builder::new().name(name.to_string()).spawn(sup_enter).map(StageThread)
    }

    pub fn join(self) {
        let name = self.0.thread().name().unwrap_or("stage").to_string();
        if self.0.join().is_err() {
            log::error!("{name}: thread panicked");
        }
    }
}

/// Events waiting for the publisher. Policy: `Block`; the publisher drains it into its own
/// bounded buffer even while Redis is down, so producers only block if it cannot keep up at all.
pub const EVENTS_CAP: usize = 4096;

/// What a camera worker needs to hand its output on. Cheap to clone.
#[derive(Clone)]
pub struct PipelineInputs {
    /// Where capture hands frames (each camera attaches once per worker).
    pub motion: motion::MotionPool,
    /// `STREAM_STALL_TIMEOUT_S`.
    pub stall_timeout: std::time::Duration,
    /// `MAX_FRAME_PIXELS`: larger frames put the camera in `error`.
    pub max_frame_pixels: u64,
}

/// Makes the events channel.
pub fn events_channel() -> (Sender<Event>, crossbeam_channel::Receiver<Event>) {
    crossbeam_channel::bounded(EVENTS_CAP)
}
