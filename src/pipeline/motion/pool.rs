//! The motion pool: MOTION_WORKERS threads, each camera pinned to one.
//!
//! ```text
//! frames(cap FRAMES_PER_CAMERA_CAP per camera, newest wins) -> [motion x MOTION_WORKERS]
//!        -> Event::Motion -> events (Block) -> publish
//!        -> frames (DETECT_CAP, try_send; full = dropped{stage="motion"}) -> detect
//! ```
//! Each camera is pinned to one worker (the least loaded when it attaches), so its background
//! model ([`MotionDetector`]) is only ever touched by one thread and needs no lock. The workers
//! stop when the pool's [`Stop`] fires (frames still queued are discarded).

use super::detector::{MotionDetector, MotionSettings};
use crate::camera::{CameraRuntime, DetectOn};
use crate::events::{Event, EventCommon, MotionEvent};
use crate::logging::RateLimit;
use crate::metrics::Stage;
use crate::pipeline::evidence::Evidence;
use crate::pipeline::frame::Frame;
use crate::stage::supervise::{beat, Supervisor, BEAT_EVERY};
use crate::stage::{StageHandle, StageThread, Stop};
use crossbeam_channel::{bounded, Receiver, Select, Sender, TrySendError};
use opencv::prelude::MatTraitConst;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Frames queued per camera between capture and motion. Policy: `DropOldest` (newest wins),
/// counted as `frames_dropped{stage="capture"}`: a slow motion worker never blocks a camera,
/// and what it processes is as fresh as possible.
pub const FRAMES_PER_CAMERA_CAP: usize = 2;

/// Where frames go after motion: the detection stage (none in tests of motion alone).
pub type MotionOutput = Option<Sender<Frame>>;

/// Control messages to a motion worker (stopping is the pool's [`Stop`]).
enum Control {
    Attach(Arc<CameraRuntime>, Receiver<Frame>),
}

struct WorkerSlot {
    control: Sender<Control>,
    cameras: Arc<AtomicUsize>,
}

/// A handle on the motion pool: cheap to clone; capture threads attach through it.
#[derive(Clone)]
pub struct MotionPool {
    workers: Arc<Vec<WorkerSlot>>,
}

/// A camera's way into the pool: newest wins when the queue is full.
pub struct FrameSender {
    tx: Sender<Frame>,
    /// A receiver clone, used only to evict the oldest queued frame.
    evict: Receiver<Frame>,
}

impl FrameSender {
    /// Queues `frame`; when the queue is full the oldest queued frame is dropped (counted).
    pub fn send_newest(&self, frame: Frame) {
        let counters = frame.counters.clone();
        match self.tx.try_send(frame) {
            Ok(()) => {}
            Err(TrySendError::Full(frame)) => {
                if self.evict.try_recv().is_ok() {
                    counters.frame_dropped(Stage::Capture);
                }
                if self.tx.try_send(frame).is_err() {
                    counters.frame_dropped(Stage::Capture);
                }
            }
            Err(TrySendError::Disconnected(_)) => counters.frame_dropped(Stage::Capture),
        }
    }
}

impl MotionPool {
    /// Starts `n` workers that publish motion events to `events` and hand frames to `next`,
    /// until `stop` fires (frames still queued are discarded); the handle joins them.
    pub fn spawn(
        n: usize,
        settings: MotionSettings,
        events: Sender<Event>,
        next: MotionOutput,
        evidence: Option<Evidence>,
        stop: Stop,
        supervisor: &Supervisor,
    ) -> std::io::Result<(MotionPool, StageHandle)> {
        let mut slots = Vec::with_capacity(n);
        let mut joins = Vec::with_capacity(n);
        for i in 0..n.max(1) {
            let (control, control_rx) = bounded::<Control>(64);
            let cameras = Arc::new(AtomicUsize::new(0));
            let worker = Worker {
                settings: settings.clone(),
                events: events.clone(),
                next: next.clone(),
                evidence: evidence.clone(),
                cameras: cameras.clone(),
                error_log: RateLimit::new(Duration::from_secs(10)),
            };
            let stop = stop.clone();
            joins.push(StageThread::spawn(&format!("motion-{i}"), supervisor, move || worker.run(control_rx, stop))?);
            slots.push(WorkerSlot { control, cameras });
        }
        Ok((MotionPool { workers: Arc::new(slots) }, StageHandle::new("motion", joins)))
    }

    /// Pins a camera to the least-loaded worker and returns the camera's frame sender. The
    /// camera detaches (and its background model is freed) when the sender is dropped.
    pub fn attach(&self, camera: Arc<CameraRuntime>) -> FrameSender {
        let (tx, rx) = bounded(FRAMES_PER_CAMERA_CAP);
        let slot = self.workers.iter().min_by_key(|w| w.cameras.load(Ordering::SeqCst)).expect("invariant: at least one worker");
        slot.cameras.fetch_add(1, Ordering::SeqCst);
        if slot.control.send(Control::Attach(camera, rx.clone())).is_err() {
            slot.cameras.fetch_sub(1, Ordering::SeqCst);
        }
        FrameSender { tx, evict: rx }
    }
}

struct Attached {
    camera: Arc<CameraRuntime>,
    frames: Receiver<Frame>,
    detector: Option<MotionDetector>,
    /// When a frame of this camera last went to detection (`detect_on: motion` keyframes).
    last_detect: Option<std::time::Instant>,
}

/// With `detect_on: motion`, a quiet camera still sends one frame this often to detection.
pub const DETECT_KEYFRAME_INTERVAL: Duration = Duration::from_secs(5);

struct Worker {
    settings: MotionSettings,
    events: Sender<Event>,
    next: MotionOutput,
    /// Latest frames for viewers (frames that do not go on to detection are handed over here).
    evidence: Option<Evidence>,
    cameras: Arc<AtomicUsize>,
    error_log: RateLimit,
}

impl Worker {
    fn run(mut self, control: Receiver<Control>, stop: Stop) {
        let mut cams: Vec<Attached> = Vec::new();
        loop {
            beat();
            // Wait on the control channel, the stop signal and every attached camera at once.
            let (index, msg) = {
                let mut sel = Select::new();
                sel.recv(&control);
                sel.recv(stop.receiver());
                for c in &cams {
                    sel.recv(&c.frames);
                }
                let Ok(op) = sel.select_timeout(BEAT_EVERY) else { continue };
                let i = op.index();
                if i == 0 {
                    match op.recv(&control) {
                        Ok(Control::Attach(camera, frames)) => {
                            cams.push(Attached { camera, frames, detector: None, last_detect: None });
                            continue;
                        }
                        Err(_) => break,
                    }
                }
                if i == 1 {
                    // only ever ready once the signal has fired
                    let _ = op.recv(stop.receiver());
                    break;
                }
                (i - 2, op.recv(&cams[i - 2].frames))
            };
            match msg {
                Ok(frame) => self.process(&mut cams[index], frame),
                Err(_) => {
                    // capture ended: forget the camera and its background model
                    let gone = cams.swap_remove(index);
                    self.cameras.fetch_sub(1, Ordering::SeqCst);
                    log::debug!("motion: camera {} detached", gone.camera.camera_id);
                }
            }
        }
        self.cameras.store(0, Ordering::SeqCst);
    }

    /// A frame that does not reach the track stage is still the camera's latest (drawn with
    /// the newest tracked boxes).
    fn offer_latest(&self, frame: &Frame) {
        if let Some(ev) = self.evidence.as_ref().filter(|e| e.latest_wanted(&frame.camera_id)) {
            ev.offer_latest(frame, None);
        }
    }

    fn process(&mut self, cam: &mut Attached, frame: Frame) {
        let params = frame.params.clone();
        let mut moving = false;
        if params.enable_motion_detection {
            let detector = match &mut cam.detector {
                Some(d) => Ok(d),
                None => MotionDetector::new(self.settings.clone()).map(|d| cam.detector.insert(d)),
            };
            match detector.and_then(|d| d.detect(&frame.image, &params.roi_zones)) {
                Ok(r) if r.area > 0.0 && r.area >= params.motion_threshold => {
                    moving = true;
                    if let Some(ev) = self.evidence.as_ref().filter(|e| e.latest_wanted(&cam.camera.camera_id)) {
                        ev.set_motion(&cam.camera.camera_id, &r.boxes);
                    }
                    log::debug!(
                        "motion cam={} frame={}: area {:.3}, intensity {:.3}, {} box(es)",
                        cam.camera.camera_id,
                        frame.frame_number,
                        r.area,
                        r.intensity,
                        r.boxes.len()
                    );
                    let ev = Event::Motion(MotionEvent {
                        common: EventCommon::new(
                            &cam.camera.camera_id,
                            frame.captured_at,
                            frame.frame_number,
                            (frame.image.cols() as u32, frame.image.rows() as u32),
                        ),
                        motion_intensity: r.intensity,
                        affected_area_percentage: r.area,
                        motion_boxes: r.boxes,
                        zones: r.zones,
                    });
                    // Block policy: the publisher always drains, so this waits only under overload.
                    let _ = self.events.send(ev);
                }
                Ok(_) => {}
                Err(e) => {
                    if let Some(held) = self.error_log.allow() {
                        log::warn!(
                            "motion cam={}: frame {} skipped ({held} more since last report): {e}",
                            cam.camera.camera_id,
                            frame.frame_number
                        );
                    }
                }
            }
        } else {
            // motion off: drop the model so turning it back on starts fresh
            cam.detector = None;
        }
        let wanted = params.enable_object_detection || params.enable_anpr;
        let due = match params.detect_on {
            DetectOn::EveryFrame => true,
            DetectOn::Motion => {
                !params.enable_motion_detection || moving || cam.last_detect.is_none_or(|t| t.elapsed() >= DETECT_KEYFRAME_INTERVAL)
            }
        };
        match &self.next {
            Some(next) if wanted && due => {
                cam.last_detect = Some(std::time::Instant::now());
                // detection counts it as processed (or dropped) when it is done with it
                if let Err(e) = next.try_send(frame) {
                    cam.camera.counters.frame_dropped(Stage::Motion);
                    self.offer_latest(&e.into_inner());
                }
            }
            // this frame's journey ends here
            _ => {
                self.offer_latest(&frame);
                frame.counters.frame_processed()
            }
        }
    }
}
