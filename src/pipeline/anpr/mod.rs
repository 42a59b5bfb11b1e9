//! ANPR: licence plates of the vehicles the detector found (docs/architecture.md, "Events").
//!
//! ```text
//! track -> AnprInput (ANPR_CAP, Block) -> [anpr]
//!   Object(event): plate added if known, then on to events (never dropped, never delayed by jobs)
//!   Job{frame, vehicle tracks}: into a fair queue (round-robin over cameras, vehicles never read
//!     first, JOBS_PER_CAMERA each, oldest shed and counted)
//!   -> vehicle guards -> crop + margin -> plate detector -> plate guards -> crop -> OCR (CTC)
//!   -> normalise -> read threshold -> votes per track -> one Event::Anpr per track -> events
//! ```
//! ANPR works per vehicle *track* (docs/architecture.md, "Events"): the track stage asks for a few reads
//! of each vehicle track on its best frames ([`requests::Requests`], the policy); here the
//! reads of one track are voted (clustered by edit distance, the most confident member of the
//! largest cluster, as Frigate does) and published once, with the `track_id`, as soon as
//! [`VOTES_NEEDED`] reads agree, or when the track ends with whatever reads it got. A track
//! read once is never read again, so a parked car costs nothing after its plate is known.
//! Object events pass through this stage so that they carry the plate (`update` with reason
//! `plate`, and the `end`), which keeps data flowing one way: track -> anpr -> publish.
//! Guards in the spirit of Frigate's LPR: vehicles (car, truck, bus, motorcycle) above a
//! minimum confidence and box area; plates above a minimum score and area; reads above a
//! minimum mean character probability.
//! When the detector finds no vehicle in a frame of an `enable_anpr` camera (a close-up gate
//! camera where the car fills the picture, or shows only its plate), the plate detector searches
//! the whole frame instead, at most once per `FULL_FRAME_INTERVAL` per camera; such reads carry
//! `vehicle_class: "unknown"` and the whole frame as `vehicle_box`.
//! Only cameras with `enable_anpr` send jobs, so no other camera ever runs the plate models.

pub mod dedupe; // once per window per plate and camera
pub mod ocr; // PP-OCRv4 recogniser
pub mod plate; // plate detector
pub mod requests; // which frames of which vehicle tracks are read (the track stage asks)
pub mod text; // CTC decoding, normalisation, region rules, edit distance

use crate::events::{AnprEvent, AnprResult, BoundingBox, Event, EventCommon, Lifecycle, ObjectEvent, ObjectPlate, UpdateReason};
use crate::logging::RateLimit;
use crate::metrics::Metrics;
use crate::pipeline::frame::Frame;
use crate::stage::supervise::{beat, Supervisor, BEAT_EVERY};
use crate::stage::{StageHandle, StageThread, Stop};
use crossbeam_channel::{Receiver, Sender};
use dedupe::{Clock, Dedupe, SystemClock};
use ocr::PlateReader;
use opencv::core::{Mat, Rect};
use opencv::prelude::*;
use plate::PlateDetector;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use text::PlateRules;

/// Inputs waiting between the track stage and ANPR. Policy: `Block`; the stage drains it at
/// once into its fair queue (jobs) or straight on (object events), so it only fills while a
/// plate is being read.
pub const ANPR_CAP: usize = 256;

/// Jobs kept per camera in the fair queue; past it the camera's oldest is dropped (counted in
/// `analytics_anpr_jobs_dropped_total`). At shutdown queued jobs are abandoned (counted too).
pub const JOBS_PER_CAMERA: usize = 4;

/// Agreeing reads (edit distance <= 1) that decide a track's plate.
pub const VOTES_NEEDED: usize = 2;

/// The vehicle classes ANPR looks at.
pub const VEHICLE_CLASSES: [&str; 4] = ["car", "truck", "bus", "motorcycle"];

/// `vehicle_class` of a plate found by the whole-frame search (no vehicle was detected).
pub const FULL_FRAME_CLASS: &str = "unknown";

/// How often at most a camera whose frames show no vehicle gets a whole-frame plate search.
pub const FULL_FRAME_INTERVAL: Duration = Duration::from_secs(1);

/// A vehicle the detector found, in frame pixels.
#[derive(Debug, Clone)]
pub struct Vehicle {
    pub class_name: String,
    pub confidence: f32,
    /// x1, y1, x2, y2.
    pub bbox: [f32; 4],
    /// Its track (`None`: read it as it is, e.g. tests and benches driving the stage directly).
    pub track_id: Option<String>,
}

/// What the track stage sends ANPR.
pub enum AnprInput {
    /// Read these vehicles' plates (or search the whole frame).
    Job(AnprJob),
    /// An object event, to carry the plate and go on to the publisher.
    Object(Box<ObjectEvent>),
    /// A vehicle track ANPR was asked to read has ended without an object event (its camera
    /// does not report objects): decide its plate from the reads it got, then forget it.
    TrackEnded(String),
}

/// A frame with its vehicles, for ANPR.
pub struct AnprJob {
    pub frame: Frame,
    /// Empty: no vehicle was found; the plate detector searches the whole frame.
    pub vehicles: Vec<Vehicle>,
}

/// Thresholds and rules (from configuration).
#[derive(Debug, Clone)]
pub struct AnprSettings {
    /// `ANPR_DEDUPE_WINDOW_S`.
    pub dedupe_window: Duration,
    /// Where the window is also kept across instances: Redis, `REDIS_KEY_PREFIX`, `INSTANCE_ID`
    /// (the service sets it; `None` keeps it in this process only, as the unit tests do).
    pub shared_dedupe: Option<(crate::redis_target::RedisTarget, String, String)>,
    pub rules: PlateRules,
    /// Least vehicle confidence considered (0.3: ANPR looks at vehicles below the camera's
    /// event threshold too, since a plate read confirms them).
    pub min_vehicle_confidence: f32,
    /// Least vehicle box area in pixels (2500, i.e. 50x50: smaller cars have unreadable plates).
    pub min_vehicle_area: f32,
    /// Least plate detector score (`ANPR_MIN_PLATE_SCORE`).
    pub min_plate_score: f32,
    /// Least plate box area in pixels (200, e.g. 40x5: smaller plates cannot be read).
    pub min_plate_area: f32,
    /// Least mean character probability of a read (`ANPR_MIN_READ_CONFIDENCE`).
    pub min_read_confidence: f32,
}

impl AnprSettings {
    /// Keeps the dedupe window in Redis too (the running service; see `dedupe::SharedDedupe`).
    pub fn shared_in_redis(mut self, c: &crate::config::Config) -> Self {
        let target = crate::redis_target::RedisTarget::from_config(c);
        self.shared_dedupe = Some((target, c.redis_key_prefix.clone(), c.instance_id.clone()));
        self
    }

    /// From configuration; the vehicle and plate size guards are fixed (documented) values.
    pub fn from_config(c: &crate::config::Config) -> Self {
        AnprSettings {
            dedupe_window: c.anpr_dedupe_window,
            shared_dedupe: None,
            rules: PlateRules { min_len: c.anpr_min_plate_len, max_len: c.anpr_max_plate_len, format: c.anpr_plate_format.clone() },
            min_vehicle_confidence: 0.3,
            min_vehicle_area: 2500.0,
            min_plate_score: c.anpr_min_plate_score,
            min_plate_area: 200.0,
            min_read_confidence: c.anpr_min_read_confidence,
        }
    }
}

/// The two models ANPR runs.
pub struct AnprModels {
    pub plate: PlateDetector,
    pub reader: PlateReader,
}

impl AnprModels {
    /// Loads the plate detector and the recogniser from the configured paths.
    pub fn load(c: &crate::config::Config) -> Result<Self, crate::infer::InferenceError> {
        let dylib = c.ort_dylib_path.as_deref();
        Ok(AnprModels {
            plate: PlateDetector::load(&c.anpr_plate_model, &c.device(), dylib)?,
            reader: PlateReader::load(&c.anpr_ocr_model, &c.anpr_ocr_dict, &c.device(), dylib)?,
        })
    }
}

/// Starts the ANPR thread; it ends when every sender of `inputs` is gone. Once `stop` fires
/// (shutdown has begun), jobs still queued are abandoned (counted as dropped), not read: a
/// plate read costs hundreds of milliseconds on a CPU, and shutdown should not wait for them;
/// object events still pass through until the input closes.
pub fn spawn(
    models: AnprModels,
    settings: AnprSettings,
    inputs: Receiver<AnprInput>,
    events: Sender<Event>,
    stop: Stop,
    metrics: Arc<Metrics>,
    supervisor: &Supervisor,
) -> std::io::Result<StageHandle> {
    let thread = StageThread::spawn("anpr", supervisor, move || {
        let mut stage = AnprStage::new(models, settings, SystemClock, metrics.clone());
        let mut queue = FairJobs::default();
        let mut open = true;
        while open || !queue.is_empty() {
            beat();
            // Take what is waiting; wait only when there is no job to work on.
            let first = if queue.is_empty() {
                match inputs.recv_timeout(BEAT_EVERY) {
                    Ok(i) => Some(i),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                        open = false;
                        None
                    }
                }
            } else {
                None
            };
            for input in first.into_iter().chain(inputs.try_iter()) {
                match input {
                    AnprInput::Object(ev) => {
                        for e in stage.object(*ev) {
                            let _ = events.send(e);
                        }
                    }
                    AnprInput::TrackEnded(t) => {
                        for e in stage.track_ended(&t) {
                            let _ = events.send(e);
                        }
                    }
                    AnprInput::Job(job) => {
                        if queue.push(job, |t| stage.reads_of(t)) {
                            metrics.anpr_job_dropped();
                        }
                    }
                }
            }
            if stop.is_stopped() {
                for _ in queue.drain() {
                    metrics.anpr_job_dropped();
                }
                continue;
            }
            if let Some(job) = queue.pop(|t| stage.reads_of(t)) {
                for ev in stage.handle(&job) {
                    let _ = events.send(ev);
                }
            }
        }
        log::debug!("anpr: stopped");
    })?;
    Ok(StageHandle::new("anpr", vec![thread]))
}

/// The fair queue of plate jobs: one small queue per camera, served round-robin, and within a
/// camera the job whose vehicles have been read least goes first. Bounded: `JOBS_PER_CAMERA`
/// per camera, cameras bounded by the registry.
#[derive(Default)]
pub struct FairJobs {
    per_camera: HashMap<Arc<str>, VecDeque<AnprJob>>,
    /// Cameras with jobs, in service order.
    turn: VecDeque<Arc<str>>,
}

impl FairJobs {
    pub fn is_empty(&self) -> bool {
        self.turn.is_empty()
    }

    /// Queues `job`; true when a job had to be dropped to make room (the camera's job whose
    /// vehicles were read most, the oldest among equals).
    pub fn push(&mut self, job: AnprJob, reads: impl Fn(&str) -> usize) -> bool {
        let cam = job.frame.camera_id.clone();
        let q = self.per_camera.entry(cam.clone()).or_default();
        if q.is_empty() {
            self.turn.push_back(cam);
        }
        q.push_back(job);
        if q.len() > JOBS_PER_CAMERA {
            let worst = (0..q.len()).max_by_key(|&i| (job_reads(&q[i], &reads), std::cmp::Reverse(i))).unwrap_or(0);
            q.remove(worst);
            return true;
        }
        false
    }

    /// The next job: the next camera in turn, its least-read job.
    pub fn pop(&mut self, reads: impl Fn(&str) -> usize) -> Option<AnprJob> {
        let cam = self.turn.pop_front()?;
        let q = self.per_camera.get_mut(&cam)?;
        let best = (0..q.len()).min_by_key(|&i| (job_reads(&q[i], &reads), i)).unwrap_or(0);
        let job = q.remove(best);
        if q.is_empty() {
            self.per_camera.remove(&cam);
        } else {
            self.turn.push_back(cam);
        }
        job
    }

    /// Everything queued (shutdown).
    pub fn drain(&mut self) -> Vec<AnprJob> {
        self.turn.clear();
        self.per_camera.drain().flat_map(|(_, q)| q).collect()
    }
}

/// Least reads among a job's tracked vehicles (0 for whole-frame searches).
fn job_reads(job: &AnprJob, reads: &impl Fn(&str) -> usize) -> usize {
    job.vehicles.iter().filter_map(|v| v.track_id.as_deref()).map(reads).min().unwrap_or(0)
}

/// One read of a track's plate.
struct Vote {
    text: String,
    confidence: f32,
    region: Option<String>,
    camera_id: Arc<str>,
    frame_number: u64,
    captured_at: std::time::SystemTime,
    frame_size: (u32, u32),
    plate_box: BoundingBox,
    vehicle_box: BoundingBox,
    vehicle_class: String,
}

/// What ANPR knows of one vehicle track.
#[derive(Default)]
struct TrackPlate {
    votes: Vec<Vote>,
    /// The plate decided (published once), if any.
    decided: Option<ObjectPlate>,
    /// Reads tried (with or without a result).
    reads: usize,
    /// The last object event seen for the track (for the `plate` update).
    last_object: Option<ObjectEvent>,
    touched: Option<Instant>,
    /// The track has ended: jobs of it still queued are skipped (the entry stays as a
    /// tombstone until the sweep, so a late job cannot start a second vote).
    ended: bool,
}

/// The ANPR work on one job at a time; public so tests can drive it directly.
pub struct AnprStage<C: Clock> {
    models: AnprModels,
    settings: AnprSettings,
    dedupe: Dedupe<C>,
    /// Per vehicle track: votes, the decided plate, the last object event. An entry goes when
    /// its track's `end` passes; entries of tracks whose end never came here (jobs that
    /// outlived their track) are swept after a minute.
    tracks: HashMap<String, TrackPlate>,
    /// When memory was last swept.
    swept: Instant,
    metrics: Arc<Metrics>,
    error_log: RateLimit,
}

impl TrackPlate {
    /// What is left of an ended track: enough to skip its late jobs.
    fn tombstone() -> Self {
        TrackPlate { ended: true, touched: Some(Instant::now()), ..Default::default() }
    }

    fn end(&mut self) {
        self.ended = true;
        self.votes.clear();
        self.last_object = None;
        self.touched = Some(Instant::now());
    }
}

/// Indices of the largest group of votes that agree (edit distance <= 1 to the group's most
/// confident member), the more confident group on a tie.
fn largest_cluster(votes: &[Vote]) -> Vec<usize> {
    let mut best: (Vec<usize>, f32) = (Vec::new(), f32::MIN);
    for v in votes {
        let members: Vec<usize> = (0..votes.len()).filter(|&j| text::edit_distance(&v.text, &votes[j].text) <= 1).collect();
        let top = members.iter().map(|&j| votes[j].confidence).fold(f32::MIN, f32::max);
        if members.len() > best.0.len() || (members.len() == best.0.len() && top > best.1) {
            best = (members, top);
        }
    }
    best.0
}

/// Grows `b` by `margin` of its size on each side, clipped to `w` x `h`, as an OpenCV rect.
fn crop_rect(b: [f32; 4], margin: f32, w: i32, h: i32) -> Option<Rect> {
    let (bw, bh) = (b[2] - b[0], b[3] - b[1]);
    let x1 = (b[0] - bw * margin).floor().max(0.0) as i32;
    let y1 = (b[1] - bh * margin).floor().max(0.0) as i32;
    let x2 = ((b[2] + bw * margin).ceil() as i32).min(w);
    let y2 = ((b[3] + bh * margin).ceil() as i32).min(h);
    (x2 - x1 >= 2 && y2 - y1 >= 2).then(|| Rect::new(x1, y1, x2 - x1, y2 - y1))
}

fn normalised(b: [f32; 4], w: f32, h: f32) -> BoundingBox {
    BoundingBox { x: b[0] / w, y: b[1] / h, width: (b[2] - b[0]) / w, height: (b[3] - b[1]) / h }
}

impl<C: Clock> AnprStage<C> {
    pub fn new(models: AnprModels, settings: AnprSettings, clock: C, metrics: Arc<Metrics>) -> Self {
        let mut dedupe = Dedupe::new(settings.dedupe_window, clock);
        if let Some(shared) = &settings.shared_dedupe {
            dedupe = dedupe.with_shared(dedupe::SharedDedupe::new(shared.0.clone(), &shared.1, &shared.2));
        }
        AnprStage {
            models,
            settings,
            dedupe,
            tracks: HashMap::new(),
            swept: Instant::now(),
            metrics,
            error_log: RateLimit::new(Duration::from_secs(10)),
        }
    }

    /// Reads the plates of one job's vehicles; returns the events to publish.
    pub fn process(&mut self, job: &AnprJob) -> Vec<Event> {
        let cam_id = job.frame.camera_id.clone();
        let counters = job.frame.counters.clone();
        let params = job.frame.params.clone();
        let s = self.settings.clone();
        let img = &job.frame.image;
        let (w, h) = (img.cols(), img.rows());
        let candidates: Vec<&Vehicle> = job
            .vehicles
            .iter()
            .filter(|v| VEHICLE_CLASSES.contains(&v.class_name.as_str()) && v.confidence >= s.min_vehicle_confidence)
            .filter(|v| (v.bbox[2] - v.bbox[0]) * (v.bbox[3] - v.bbox[1]) >= s.min_vehicle_area)
            .collect();
        self.sweep();
        let mut searches: Vec<Vehicle> = candidates.into_iter().cloned().collect();
        if job.vehicles.is_empty() {
            // no vehicle found (a close-up gate camera, say): search the whole frame
            searches.push(Vehicle {
                class_name: FULL_FRAME_CLASS.into(),
                confidence: 0.0,
                bbox: [0.0, 0.0, w as f32, h as f32],
                track_id: None,
            });
        }
        let mut events = Vec::new();
        for v in &searches {
            if let Some(t) = &v.track_id {
                let entry = self.tracks.entry(t.clone()).or_default();
                entry.touched = Some(Instant::now());
                if entry.decided.is_some() || entry.ended {
                    continue; // read already, or gone: never again
                }
                entry.reads += 1;
            }
            counters.plate_searched();
            match self.read_vehicle(img, v, w, h) {
                Ok(Some((plate_box, read))) => {
                    let confidence = text::confidence(&read);
                    if confidence < s.min_read_confidence {
                        continue;
                    }
                    let region = params.anpr_region.clone().or_else(|| text::region_of(&read.text).map(str::to_string));
                    if let Some(t) = &v.track_id {
                        let vote = Vote {
                            text: read.text.clone(),
                            confidence,
                            region,
                            camera_id: cam_id.clone(),
                            frame_number: job.frame.frame_number,
                            captured_at: job.frame.captured_at,
                            frame_size: (w as u32, h as u32),
                            plate_box: normalised(plate_box, w as f32, h as f32),
                            vehicle_box: normalised(v.bbox, w as f32, h as f32),
                            vehicle_class: v.class_name.clone(),
                        };
                        let entry = self.tracks.entry(t.clone()).or_default();
                        entry.votes.push(vote);
                        if largest_cluster(&entry.votes).len() >= VOTES_NEEDED {
                            events.extend(self.decide(t));
                        }
                        continue;
                    }
                    if !self.dedupe.should_publish(&cam_id, &read.text, confidence) {
                        continue;
                    }
                    // plate texts are personal data: only at DEBUG (the event carries them anyway)
                    log::debug!(
                        "anpr cam={} frame={}: plate {} ({confidence:.2}, region {}) on {}",
                        cam_id,
                        job.frame.frame_number,
                        read.text,
                        region.as_deref().unwrap_or("unknown"),
                        v.class_name
                    );
                    events.push(Event::Anpr(AnprEvent {
                        common: EventCommon::new(&cam_id, job.frame.captured_at, job.frame.frame_number, (w as u32, h as u32)),
                        anpr_result: AnprResult::new(read.text, confidence, region),
                        plate_box: normalised(plate_box, w as f32, h as f32),
                        vehicle_box: normalised(v.bbox, w as f32, h as f32),
                        vehicle_class: v.class_name.clone(),
                        track_id: None,
                    }));
                }
                Ok(None) => {}
                Err(e) => {
                    if let Some(held) = self.error_log.allow() {
                        log::warn!("anpr cam={cam_id}: vehicle skipped ({held} more since last report): {e}");
                    }
                }
            }
        }
        events
    }

    /// A job as the running stage handles it ([`process`](Self::process) plus the sweep).
    pub fn handle(&mut self, job: &AnprJob) -> Vec<Event> {
        self.process(job)
    }

    /// Reads tried so far on track `track_id` (the fair queue serves unread vehicles first).
    pub fn reads_of(&self, track_id: &str) -> usize {
        self.tracks.get(track_id).map_or(0, |t| if t.decided.is_some() || t.ended { usize::MAX / 2 } else { t.reads })
    }

    /// Decides track `t`'s plate from its votes (the most confident read of the largest
    /// cluster) and publishes it once: the `anpr` event, and an object `update` (reason
    /// `plate`) when the object has started. The window dedupe (ANPR_DEDUPE_WINDOW_S) still
    /// applies across tracks (a vehicle whose track was split is not read out twice).
    fn decide(&mut self, t: &str) -> Vec<Event> {
        let Some(entry) = self.tracks.get_mut(t) else { return Vec::new() };
        if entry.decided.is_some() || entry.votes.is_empty() {
            return Vec::new();
        }
        let cluster = largest_cluster(&entry.votes);
        let Some(best_i) = cluster.into_iter().max_by(|&a, &b| entry.votes[a].confidence.total_cmp(&entry.votes[b].confidence)) else {
            return Vec::new();
        };
        let best = entry.votes.swap_remove(best_i);
        let plate = ObjectPlate { text: best.text.clone(), confidence: best.confidence, region: best.region.clone() };
        entry.decided = Some(plate.clone());
        let mut out = Vec::new();
        if self.dedupe.should_publish(&best.camera_id, &best.text, best.confidence) {
            log::debug!(
                "anpr cam={} track {t}: plate {} ({:.2}) from {} read(s)",
                best.camera_id,
                best.text,
                best.confidence,
                entry.votes.len()
            );
            out.push(Event::Anpr(AnprEvent {
                common: EventCommon::new(&best.camera_id, best.captured_at, best.frame_number, best.frame_size),
                anpr_result: AnprResult::new(best.text.clone(), best.confidence, best.region.clone()),
                plate_box: best.plate_box,
                vehicle_box: best.vehicle_box,
                vehicle_class: best.vehicle_class,
                track_id: Some(t.to_string()),
            }));
        }
        entry.votes.clear();
        if let Some(mut ev) = entry.last_object.clone() {
            ev.common = EventCommon::new(&ev.common.camera_id, best.captured_at, best.frame_number, best.frame_size);
            ev.lifecycle = Lifecycle::Update;
            ev.update_reason = Some(UpdateReason::Plate);
            ev.license_plate = Some(plate);
            entry.last_object = Some(ev.clone());
            out.push(Event::Object(ev));
        }
        out
    }

    /// An object event on its way to the publisher: it carries the track's plate when known;
    /// an `end` first decides the plate from whatever reads the track got, then forgets it.
    pub fn object(&mut self, mut ev: ObjectEvent) -> Vec<Event> {
        self.sweep();
        let mut out = Vec::new();
        let t = ev.track_id.clone();
        if ev.lifecycle == Lifecycle::End {
            out.extend(self.decide(&t));
            if let Some(entry) = self.tracks.get_mut(&t) {
                ev.license_plate = entry.decided.clone();
                entry.end();
            } else if VEHICLE_CLASSES.contains(&ev.class_name.as_str()) {
                // jobs of it may still be queued
                self.tracks.insert(t, TrackPlate::tombstone());
            }
        } else if let Some(entry) = self.tracks.get_mut(&t) {
            ev.license_plate = entry.decided.clone();
            entry.last_object = Some(ev.clone());
            entry.touched = Some(Instant::now());
        } else if VEHICLE_CLASSES.contains(&ev.class_name.as_str()) {
            self.tracks.insert(t, TrackPlate { last_object: Some(ev.clone()), touched: Some(Instant::now()), ..Default::default() });
        }
        out.push(Event::Object(ev));
        out
    }

    /// A vehicle track ended without an object event: its plate is decided now, then forgotten.
    pub fn track_ended(&mut self, t: &str) -> Vec<Event> {
        self.sweep();
        let out = self.decide(t);
        match self.tracks.get_mut(t) {
            Some(entry) => entry.end(),
            None => {
                self.tracks.insert(t.to_string(), TrackPlate::tombstone());
            }
        }
        out
    }

    /// Once a minute, forgets tracks untouched for a minute (their end never came this way), so
    /// memory is bounded by the vehicles seen recently.
    fn sweep(&mut self) {
        if self.swept.elapsed() < Duration::from_secs(60) {
            return;
        }
        self.swept = Instant::now();
        self.tracks.retain(|_, t| t.touched.is_some_and(|at| at.elapsed() < Duration::from_secs(60)));
        self.dedupe.sweep();
    }

    /// Plate box (frame pixels) and normalised read of one vehicle, or `None` when a guard says no.
    fn read_vehicle(&mut self, img: &Mat, v: &Vehicle, w: i32, h: i32) -> Result<Option<([f32; 4], text::Read)>, String> {
        let s = &self.settings;
        let Some(vr) = crop_rect(v.bbox, 0.1, w, h) else { return Ok(None) };
        let crop = Mat::roi(img, vr).and_then(|m| m.try_clone()).map_err(|e| e.to_string())?;
        let t = Instant::now();
        let found = self.models.plate.detect(&crop, s.min_plate_score).map_err(|e| e.to_string())?;
        let Some(plate) = found else {
            self.metrics.anpr_seconds.observe(t.elapsed().as_secs_f64());
            return Ok(None);
        };
        let pb = [plate.bbox[0] + vr.x as f32, plate.bbox[1] + vr.y as f32, plate.bbox[2] + vr.x as f32, plate.bbox[3] + vr.y as f32];
        if (pb[2] - pb[0]) * (pb[3] - pb[1]) < s.min_plate_area {
            return Ok(None);
        }
        let Some(pr) = crop_rect(pb, 0.05, w, h) else { return Ok(None) };
        let plate_img = Mat::roi(img, pr).and_then(|m| m.try_clone()).map_err(|e| e.to_string())?;
        let raw = self.models.reader.read(&plate_img).map_err(|e| e.to_string())?;
        self.metrics.anpr_seconds.observe(t.elapsed().as_secs_f64());
        Ok(text::normalise(&raw, &s.rules).map(|r| (pb, r)))
    }
}
