//! ANPR: licence plates of the vehicles the detector found (DESIGN.md section 2, anpr).
//!
//! ```text
//! detect -> AnprJob{frame, vehicles} (ANPR_CAP, try_send; full -> analytics_anpr_jobs_dropped_total)
//!   -> [anpr: vehicle guards -> crop + margin -> plate detector -> plate guards -> crop
//!       -> OCR (CTC) -> normalise -> read threshold -> dedupe] -> Event::Anpr -> events (Block)
//! ```
//! Guards in the spirit of Frigate's LPR: vehicles (car, truck, bus, motorcycle) above a
//! minimum confidence and box area; vehicles whose box has not moved over the last
//! `STATIONARY_FRAMES` frames are skipped (a parked car is read when it arrives, not forever);
//! plates above a minimum score and area; reads above a minimum mean character probability.
//! When the detector finds no vehicle in a frame of an `enable_anpr` camera (a close-up gate
//! camera where the car fills the picture, or shows only its plate), the plate detector searches
//! the whole frame instead, at most once per `FULL_FRAME_INTERVAL` per camera; such reads carry
//! `vehicle_class: "unknown"` and the whole frame as `vehicle_box`.
//! Only cameras with `enable_anpr` send jobs, so no other camera ever runs the plate models.

pub mod dedupe; // once per window per plate and camera
pub mod ocr; // PP-OCRv4 recogniser
pub mod plate; // plate detector
pub mod text; // CTC decoding, normalisation, region rules, edit distance

use crate::events::{AnprEvent, AnprResult, BoundingBox, Event, EventCommon};
use crate::logging::RateLimit;
use crate::metrics::Metrics;
use crate::pipeline::detect::postprocess::iou;
use crate::pipeline::frame::Frame;
use crate::pipeline::supervise::{beat, Supervisor, BEAT_EVERY};
use crate::pipeline::StageThread;
use crossbeam_channel::{Receiver, Sender};
use dedupe::{Clock, Dedupe, SystemClock};
use ocr::PlateReader;
use opencv::core::{Mat, Rect};
use opencv::prelude::*;
use plate::PlateDetector;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use text::PlateRules;

/// ANPR jobs waiting. Policy: detection `try_send`s; a full queue drops the job (counted in
/// `analytics_anpr_jobs_dropped_total`) rather than slowing detection for every camera. At
/// shutdown queued jobs are abandoned (counted the same way).
pub const ANPR_CAP: usize = 8;

/// The vehicle classes ANPR looks at.
pub const VEHICLE_CLASSES: [&str; 4] = ["car", "truck", "bus", "motorcycle"];

/// Frames a vehicle box must stay put (IoU >= 0.95) to count as stationary.
pub const STATIONARY_FRAMES: usize = 5;

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
    /// From configuration; the vehicle and plate size guards are fixed (documented) values.
    pub fn from_config(c: &crate::config::Config) -> Self {
        AnprSettings {
            dedupe_window: c.anpr_dedupe_window,
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
    pub fn load(c: &crate::config::Config) -> Result<Self, crate::pipeline::detect::session::InferenceError> {
        let dylib = c.ort_dylib_path.as_deref();
        Ok(AnprModels {
            plate: PlateDetector::load(&c.anpr_plate_model, c.inference_device, dylib)?,
            reader: PlateReader::load(&c.anpr_ocr_model, &c.anpr_ocr_dict, c.inference_device, dylib)?,
        })
    }
}

pub struct AnprHandle {
    thread: StageThread,
    stopping: Arc<AtomicBool>,
}

impl AnprHandle {
    /// Shutdown has begun: jobs still queued are abandoned (counted as dropped), not read.
    /// A plate read costs hundreds of milliseconds on a CPU; shutdown should not wait for them.
    pub fn begin_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn join(self) {
        self.thread.join();
    }
}

/// Starts the ANPR thread; it ends when every sender of `jobs` is gone.
pub fn spawn(
    models: AnprModels,
    settings: AnprSettings,
    jobs: Receiver<AnprJob>,
    events: Sender<Event>,
    metrics: Arc<Metrics>,
    supervisor: &Supervisor,
) -> std::io::Result<AnprHandle> {
    let stopping = Arc::new(AtomicBool::new(false));
    let stop = stopping.clone();
    let thread = StageThread::spawn("anpr", supervisor, move || {
        let mut stage = AnprStage::new(models, settings, SystemClock, metrics.clone());
        loop {
            beat();
            let job = match jobs.recv_timeout(BEAT_EVERY) {
                Ok(job) => job,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            };
            if stop.load(Ordering::SeqCst) {
                metrics.anpr_job_dropped();
                continue;
            }
            for ev in stage.process(&job) {
                let _ = events.send(ev);
            }
        }
        log::debug!("anpr: stopped");
    })?;
    Ok(AnprHandle { thread, stopping })
}

/// The ANPR work on one job at a time; public so tests can drive it directly.
pub struct AnprStage<C: Clock> {
    models: AnprModels,
    settings: AnprSettings,
    dedupe: Dedupe<C>,
    /// Per camera: vehicle boxes of its last frames, for the stationary guard.
    history: HashMap<String, (Instant, VecDeque<Vec<[f32; 4]>>)>,
    /// When per-camera memory was last swept of cameras gone quiet (or deleted).
    swept: Instant,
    metrics: Arc<Metrics>,
    error_log: RateLimit,
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
        let dedupe = Dedupe::new(settings.dedupe_window, clock);
        AnprStage {
            models,
            settings,
            dedupe,
            history: HashMap::new(),
            swept: Instant::now(),
            metrics,
            error_log: RateLimit::new(Duration::from_secs(10)),
        }
    }

    /// Reads the plates of one job's vehicles; returns the events to publish.
    pub fn process(&mut self, job: &AnprJob) -> Vec<Event> {
        let cam = &job.frame.camera;
        let params = cam.params();
        let s = self.settings.clone();
        let img = &job.frame.image;
        let (w, h) = (img.cols(), img.rows());
        let candidates: Vec<&Vehicle> = job
            .vehicles
            .iter()
            .filter(|v| VEHICLE_CLASSES.contains(&v.class_name.as_str()) && v.confidence >= s.min_vehicle_confidence)
            .filter(|v| (v.bbox[2] - v.bbox[0]) * (v.bbox[3] - v.bbox[1]) >= s.min_vehicle_area)
            .collect();
        // stationary guard: skip boxes that matched a box in each of the last frames
        self.sweep();
        let (seen, past) = self.history.entry(cam.camera_id.clone()).or_insert_with(|| (Instant::now(), VecDeque::new()));
        *seen = Instant::now();
        let stationary = |b: &[f32; 4]| past.len() >= STATIONARY_FRAMES && past.iter().all(|frame| frame.iter().any(|p| iou(p, b) >= 0.95));
        let mut searches: Vec<Vehicle> = candidates.iter().filter(|v| !stationary(&v.bbox)).map(|v| (*v).clone()).collect();
        past.push_back(candidates.iter().map(|v| v.bbox).collect());
        if past.len() > STATIONARY_FRAMES {
            past.pop_front();
        }
        if job.vehicles.is_empty() {
            // no vehicle found (a close-up gate camera, say): search the whole frame
            searches.push(Vehicle { class_name: FULL_FRAME_CLASS.into(), confidence: 0.0, bbox: [0.0, 0.0, w as f32, h as f32] });
        }
        let mut events = Vec::new();
        for v in &searches {
            cam.counters.plate_searched();
            match self.read_vehicle(img, v, w, h) {
                Ok(Some((plate_box, read))) => {
                    let confidence = text::confidence(&read);
                    if confidence < s.min_read_confidence || !self.dedupe.should_publish(&cam.camera_id, &read.text, confidence) {
                        continue;
                    }
                    let region = params.anpr_region.clone().or_else(|| text::region_of(&read.text).map(str::to_string));
                    // plate texts are personal data: only at DEBUG (the event carries them anyway)
                    log::debug!(
                        "anpr cam={} frame={}: plate {} ({confidence:.2}, region {}) on {}",
                        cam.camera_id,
                        job.frame.frame_number,
                        read.text,
                        region.as_deref().unwrap_or("unknown"),
                        v.class_name
                    );
                    events.push(Event::Anpr(AnprEvent {
                        common: EventCommon::new(&cam.camera_id, job.frame.captured_at, job.frame.frame_number),
                        anpr_result: AnprResult { license_plate: read.text, confidence, region },
                        plate_box: normalised(plate_box, w as f32, h as f32),
                        vehicle_box: normalised(v.bbox, w as f32, h as f32),
                        vehicle_class: v.class_name.clone(),
                        track_id: None,
                    }));
                }
                Ok(None) => {}
                Err(e) => {
                    if let Some(held) = self.error_log.allow() {
                        log::warn!("anpr cam={}: vehicle skipped ({held} more since last report): {e}", cam.camera_id);
                    }
                }
            }
        }
        events
    }

    /// Once a minute, forgets cameras that sent nothing for a minute (deleted ones, mostly), so
    /// per-camera memory is bounded by the cameras active recently.
    fn sweep(&mut self) {
        if self.swept.elapsed() < Duration::from_secs(60) {
            return;
        }
        self.swept = Instant::now();
        self.history.retain(|_, (seen, _)| seen.elapsed() < Duration::from_secs(60));
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
