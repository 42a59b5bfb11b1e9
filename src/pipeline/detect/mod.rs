//! Object detection with YOLOv8 (docs/architecture.md, "Stage graph").
//!
//! ```text
//! frames from motion (DETECT_CAP, try_send; full -> dropped{stage="motion"})
//!   -> [batcher: per-camera queues of DETECT_PER_CAMERA_CAP, newest wins -> dropped{stage="detect"},
//!       a batch is made when a worker is free: round-robin, that worker's share of the live
//!       cameras (up to BATCH_SIZE), or what is queued after BATCH_TIMEOUT_MS]
//!   -> [INFERENCE_WORKERS x: letterbox -> own ort session -> decode + class-aware NMS, down to TRACK_LOW_THRESH]
//!   -> [sequencer: each camera's results back in capture order]
//!   -> Detected{frame, every box} (TRACK_CAP, Block) -> track
//! ```
//! Each inference worker owns a session (`Session::run` takes `&mut self`). Several workers
//! run batches side by side: on a CPU, two sessions of one thread each detect ~10-30 % more
//! frames per second than one session spreading each frame over both cores (measured in the
//! README's performance section), and on a GPU one worker's letterbox and NMS overlap the
//! other's inference. On a CPU the batch is one frame (`BATCH_SIZE` auto: one-thread sessions
//! are slower per frame in batches), and the workers share one more session on every core for
//! a frame of the only live camera while they are all idle, so light load keeps the latency of
//! the whole CPU. A camera's frames can then finish out of order; the sequencer passes them on in
//! order, since the tracker needs that. This stage only
//! detects: the camera's threshold, classes and zones, the events and the ANPR requests are
//! the track stage's business, because the tracker needs the low-score boxes the events leave
//! out (ByteTrack's second association).

pub mod batcher; // RoundRobin: fair per-camera batching
pub mod filter; // a camera's threshold, classes and zones over the detector's boxes

use crate::infer::Yolo;
use crate::logging::RateLimit;
use crate::metrics::{Metrics, Phase, Stage};
use crate::pipeline::frame::Frame;
use crate::stage::supervise::{beat, Supervisor, BEAT_EVERY};
use crate::stage::{StageHandle, StageThread};
use batcher::RoundRobin;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frames between the motion pool and the batcher. Policy: the motion stage `try_send`s and
/// counts a full channel as a drop; the batcher drains it into its per-camera queues at once,
/// so it only fills if the batcher thread is stuck.
pub const DETECT_CAP: usize = 64;

/// Frames waiting per camera inside the batcher. Policy: `DropOldest` (newest wins), counted
/// as `frames_dropped{stage="detect"}`.
pub const DETECT_PER_CAMERA_CAP: usize = 2;

/// A camera that sent a frame within this window counts as live: a batch does not wait for
/// more frames once every live camera has one queued.
pub const LIVE_CAMERA_WINDOW: Duration = Duration::from_secs(2);

/// The lowest score a box is kept at: the tracker's low-score pass uses boxes down to here,
/// far below any camera's event threshold.
pub const TRACK_LOW_THRESH: f32 = 0.1;

/// One detected frame with every box the detector kept (>= [`TRACK_LOW_THRESH`]), in frame
/// pixels, on its way to the track stage.
pub struct Detected {
    pub frame: Frame,
    pub boxes: Vec<crate::infer::RawDetection>,
}

/// Whether the letterbox can take `image`: 8-bit, 3 channels, at least 2x2.
fn usable(image: &opencv::core::Mat) -> bool {
    use opencv::prelude::MatTraitConst;
    !image.empty() && image.typ() == opencv::core::CV_8UC3 && image.cols() >= 2 && image.rows() >= 2
}

/// Batching settings.
#[derive(Debug, Clone)]
pub struct DetectSettings {
    /// `BATCH_SIZE`.
    pub batch_size: usize,
    /// `BATCH_TIMEOUT_MS`.
    pub batch_timeout: Duration,
}

/// A batch handed to an inference worker: each frame with its place in its camera's order.
struct Job {
    frames: Vec<(Frame, Slot)>,
    /// Run on the wide session: one frame of the only live camera, every worker idle.
    wide: bool,
}

/// Where a frame stands in its camera's order: (camera, worker generation) and a sequence
/// number the batcher gave it.
type Slot = ((Arc<str>, u64), u64);

/// A frame handed out with its slot.
type Dispatched = (Frame, Slot);

/// A camera's open slots in order: sequence number and, once known, the result (`Some(None)`:
/// the frame failed and was dropped).
type OpenSlots = VecDeque<(u64, Option<Option<Detected>>)>;

/// Puts results back into each camera's order before the track stage: with several workers a
/// camera's next frame may finish before the one in the other worker, and the tracker needs
/// them in order. Holds only what is in the workers' hands (a batch each) and their results
/// waiting for an earlier frame.
struct Sequencer {
    /// Per camera and generation: the sequence numbers handed out and not yet passed on, in
    /// order, with the result once known (`None`: the frame failed and was dropped).
    open: Mutex<HashMap<(Arc<str>, u64), OpenSlots>>,
    /// Sequence numbers, one counter for every camera: unique, so a camera's entry can go with
    /// its last frame in flight and memory stays bounded by the frames in flight.
    next: std::sync::atomic::AtomicU64,
    detected: Sender<Detected>,
}

impl Sequencer {
    /// The batcher hands `frame` out: its slot in its camera's order.
    fn hand_out(&self, frame: &Frame) -> Slot {
        let key = (frame.camera_id.clone(), frame.generation);
        let seq = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.open.lock().entry(key.clone()).or_default().push_back((seq, None));
        (key, seq)
    }

    /// A worker is done with a frame: pass on, in order, every result now complete.
    fn done(&self, slot: Slot, result: Option<Detected>) {
        let (key, seq) = slot;
        let mut open = self.open.lock();
        let Some(queue) = open.get_mut(&key) else { return };
        if let Some(entry) = queue.iter_mut().find(|(s, r)| *s == seq && r.is_none()) {
            entry.1 = Some(result);
        }
        // Block policy to the track stage (cheap, never waits on anything slow); sending under
        // the lock keeps the order across workers
        while queue.front().is_some_and(|(_, r)| r.is_some()) {
            let (_, r) = queue.pop_front().expect("invariant: front checked");
            if let Some(Some(d)) = r {
                if self.detected.send(d).is_err() {
                    log::debug!("detect: the track stage is gone (shutdown)");
                }
            }
        }
        if queue.is_empty() {
            open.remove(&key);
        }
    }
}

/// Starts the batcher and one inference worker per model instance in `workers` (each owns its
/// session: `Session::run` takes `&mut self`). The stage ends once every sender of `frames` is
/// gone and its queues are empty (the batcher), then once every batch handed out is done (the
/// workers): joining the handle waits for both, in that order.
pub fn spawn(
    workers: Vec<Yolo>,
    settings: DetectSettings,
    frames: Receiver<Frame>,
    detected: Sender<Detected>,
    metrics: Arc<Metrics>,
    supervisor: &Supervisor,
) -> std::io::Result<StageHandle> {
    if workers.is_empty() {
        return Err(std::io::Error::other("no inference worker"));
    }
    let sequencer = Arc::new(Sequencer { open: Mutex::new(HashMap::new()), next: Default::default(), detected });
    // a worker says when it is free; only then is a batch made, and handed over at once
    let n = workers.len();
    let (job_tx, job_rx) = crossbeam_channel::bounded::<Job>(n);
    let (ready_tx, ready_rx) = crossbeam_channel::bounded::<()>(n);
    let mut threads = Vec::with_capacity(n);
    for (i, yolo) in workers.into_iter().enumerate() {
        let mut worker = InferenceWorker {
            yolo,
            sequencer: sequencer.clone(),
            metrics: metrics.clone(),
            error_log: RateLimit::new(Duration::from_secs(10)),
        };
        let (jobs, ready) = (job_rx.clone(), ready_tx.clone());
        threads.push(StageThread::spawn(&format!("detect-infer-{i}"), supervisor, move || worker.run(jobs, ready))?);
    }
    drop((job_rx, ready_tx));
    let batcher = StageThread::spawn("detect", supervisor, move || {
        let mut stage = Batcher { settings, jobs: job_tx, ready: ready_rx, workers: n, sequencer, metrics };
        stage.run(frames)
    })?;
    threads.insert(0, batcher);
    Ok(StageHandle::new("detect", threads))
}

/// Sorts frames into per-camera queues and hands batches to the free workers.
struct Batcher {
    settings: DetectSettings,
    jobs: Sender<Job>,
    /// A worker sends `()` here each time it is free for a batch.
    ready: Receiver<()>,
    /// How many inference workers there are.
    workers: usize,
    sequencer: Arc<Sequencer>,
    metrics: Arc<Metrics>,
}

impl Batcher {
    fn run(&mut self, frames: Receiver<Frame>) {
        let mut queues: RoundRobin<Frame> = RoundRobin::new(DETECT_PER_CAMERA_CAP);
        // when each camera last sent a frame: once every live camera has a frame queued, the
        // batch goes without waiting out BATCH_TIMEOUT_MS (one camera alone never waits)
        let mut last_seen: HashMap<Arc<str>, Instant> = HashMap::new();
        let mut push = |q: &mut RoundRobin<Frame>, f: Frame| {
            let camera = f.camera_id.clone();
            let now = Instant::now();
            last_seen.insert(camera.clone(), now);
            if last_seen.len() > 2 * q.cameras_queued() + 16 {
                last_seen.retain(|_, t| now.duration_since(*t) < LIVE_CAMERA_WINDOW);
            }
            let live = last_seen.values().filter(|t| now.duration_since(**t) < LIVE_CAMERA_WINDOW).count();
            if let Some(old) = q.push(&camera, f) {
                old.counters.frame_dropped(Stage::Detect);
            }
            live
        };
        let mut live = 0;
        let mut open = true;
        // workers that said they are free and have not been given a batch yet
        let mut idle = 0usize;
        while open || !queues.is_empty() {
            beat();
            // A batch is made only when a worker is free, from the freshest frames queued then
            // (a batch made earlier would wait, and age, until a worker took it).
            if idle == 0 && !open {
                // input closed: only the queued frames are left; wait for a worker
                match self.ready.recv_timeout(BEAT_EVERY) {
                    Ok(()) => idle += 1,
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                continue;
            }
            if idle == 0 {
                crossbeam_channel::select! {
                    recv(self.ready) -> r => match r {
                        Ok(()) => idle += 1,
                        Err(_) => break, // every worker is gone (shutdown, or they all died)
                    },
                    recv(frames) -> f => match f {
                        Ok(f) => live = push(&mut queues, f),
                        Err(_) => open = false,
                    },
                    default(BEAT_EVERY) => {}
                }
                continue;
            }
            if queues.is_empty() {
                match frames.recv_timeout(BEAT_EVERY) {
                    Ok(f) => live = push(&mut queues, f),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => {
                        open = false;
                        continue;
                    }
                }
            }
            // Each free worker takes its share of the live cameras (up to BATCH_SIZE), so the
            // workers run side by side instead of one taking every camera's frame in a long
            // batch; fill until that share is queued, or the oldest frame has waited
            // BATCH_TIMEOUT_MS.
            let share = live.div_ceil(self.workers).clamp(1, self.settings.batch_size);
            let deadline = Instant::now() + self.settings.batch_timeout;
            while open && queues.cameras_queued() < share {
                match frames.recv_deadline(deadline) {
                    Ok(f) => live = push(&mut queues, f),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => open = false,
                }
            }
            for f in frames.try_iter() {
                live = push(&mut queues, f);
            }
            // workers that came free meanwhile (their `ready` is read only while none is idle)
            idle += self.ready.try_iter().count();
            let batch = queues.take_batch(share);
            self.metrics.set_detect_queue_depth(queues.len());
            if batch.is_empty() {
                continue;
            }
            // one camera alone, every worker idle: this frame may use every core (the wide
            // session), which roughly halves its latency on two cores
            let wide = self.workers > 1 && idle == self.workers && live <= 1 && batch.len() == 1;
            let job = Job {
                wide,
                frames: batch
                    .into_iter()
                    .map(|mut f| {
                        // handed to the detector: its camera may convert the next frame, which
                        // then waits, fresh, for the next free worker
                        f.in_flight = None;
                        let slot = self.sequencer.hand_out(&f);
                        (f, slot)
                    })
                    .collect(),
            };
            idle -= 1;
            // never blocks: the channel holds one batch per worker and only free workers get one
            if let Err(e) = self.jobs.send(job) {
                for (f, slot) in e.into_inner().frames {
                    f.counters.frame_dropped(Stage::Detect);
                    self.sequencer.done(slot, None);
                }
            }
        }
        // what is still queued when every worker is gone cannot be detected: counted as dropped
        for f in queues.take_batch(usize::MAX) {
            f.counters.frame_dropped(Stage::Detect);
        }
        log::debug!("detect: batcher stopped");
    }
}

/// One inference thread with its own model session.
struct InferenceWorker {
    yolo: Yolo,
    sequencer: Arc<Sequencer>,
    metrics: Arc<Metrics>,
    error_log: RateLimit,
}

impl InferenceWorker {
    fn run(&mut self, jobs: Receiver<Job>, ready: Sender<()>) {
        loop {
            beat();
            if ready.send(()).is_err() {
                break; // the batcher is gone (shutdown)
            }
            loop {
                match jobs.recv_timeout(BEAT_EVERY) {
                    Ok(job) => {
                        // a panic must not leave its frames unaccounted for: the sequencer would
                        // hold every later frame of those cameras waiting for them
                        let slots: Vec<Slot> = job.frames.iter().map(|(_, s)| s.clone()).collect();
                        if self.yolo.set_wide(job.wide) {
                            self.metrics.wide_batch();
                        }
                        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.process(job.frames)));
                        if run.is_err() {
                            log::error!("detect: an inference worker panicked on a batch of {}; its frames are dropped", slots.len());
                            for slot in slots {
                                self.sequencer.done(slot, None);
                            }
                        }
                        break;
                    }
                    Err(RecvTimeoutError::Timeout) => beat(),
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        }
    }

    fn process(&mut self, batch: Vec<(Frame, Slot)>) {
        // A frame the letterbox cannot take (empty, not 8-bit BGR, tiny) goes alone; the rest
        // of the batch, other cameras' frames, goes on.
        let (batch, unusable): (Vec<Dispatched>, Vec<Dispatched>) = batch.into_iter().partition(|(f, _)| usable(&f.image));
        for (f, slot) in unusable {
            f.counters.frame_dropped(Stage::Detect);
            if let Some(held) = self.error_log.allow() {
                log::warn!(
                    "detect cam={}: frame {} dropped: not an 8-bit BGR picture ({held} more since last report)",
                    f.camera_id,
                    f.frame_number
                );
            }
            self.sequencer.done(slot, None);
        }
        if batch.is_empty() {
            return;
        }
        let conf = vec![TRACK_LOW_THRESH; batch.len()];
        let images: Vec<&opencv::core::Mat> = batch.iter().map(|(f, _)| &f.image).collect();
        let (results, t) = match self.yolo.detect_batch(&images, &conf) {
            Ok(r) => r,
            Err(e) if batch.len() > 1 => {
                // one bad frame must not cost every camera its frame: retry them one by one
                if let Some(held) = self.error_log.allow() {
                    log::warn!("detect: batch of {} failed, retrying frame by frame ({held} more since last report): {e}", batch.len());
                }
                for item in batch {
                    self.process(vec![item]);
                }
                return;
            }
            Err(e) => {
                if let Some(held) = self.error_log.allow() {
                    log::error!("detect: frame of camera {} failed ({held} more since last report): {e}", batch[0].0.camera_id);
                }
                for (f, slot) in batch {
                    f.counters.frame_dropped(Stage::Detect);
                    self.sequencer.done(slot, None);
                }
                return;
            }
        };
        self.metrics.inference_phase(Phase::Preprocess, t.preprocess.as_secs_f64());
        self.metrics.inference_phase(Phase::Inference, t.inference.as_secs_f64());
        self.metrics.inference_phase(Phase::Postprocess, t.postprocess.as_secs_f64());
        self.metrics.batch_size.observe(batch.len() as f64);
        for ((frame, slot), (_lb, boxes)) in batch.into_iter().zip(results) {
            frame.counters.frame_detected();
            self.sequencer.done(slot, Some(Detected { frame, boxes }));
        }
    }
}
