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
//! reads of one track are voted (clustered by edit distance as Frigate does, then the largest
//! cluster character by character, weighted by each character's probability: `vote.rs`) and
//! published once, with the `track_id`, as soon as [`VOTES_NEEDED`] reads say exactly the
//! voted text, or once the track has had all its reads, or when it ends with whatever reads it
//! got (reads that differ by a character ask for more reads rather than a guess). A track
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
pub mod queue; // FairJobs: the per-camera fair job queue
pub mod requests; // which frames of which vehicle tracks are read (the track stage asks)
pub mod stage; // AnprStage and the thread: guards, crops, reads, votes, events
pub mod text; // CTC decoding, normalisation, region rules, edit distance
pub(crate) mod vote; // which reads of a track agree

pub use queue::FairJobs;
pub use stage::{spawn, AnprStage};

use crate::events::ObjectEvent;
use crate::pipeline::frame::Frame;
use ocr::PlateReader;
use plate::PlateDetector;
use std::time::Duration;
use text::PlateRules;

/// Inputs waiting between the track stage and ANPR. Policy: `Block`; the stage drains it at
/// once into its fair queue (jobs) or straight on (object events), so it only fills while a
/// plate is being read.
pub const ANPR_CAP: usize = 256;

/// Jobs kept per camera in the fair queue; past it the camera's oldest is dropped (counted in
/// `analytics_anpr_jobs_dropped_total`). At shutdown queued jobs are abandoned (counted too).
pub const JOBS_PER_CAMERA: usize = 4;

/// Reads of a track that say exactly its voted plate (`vote::consensus`) and so decide it
/// before the track ends; reads that agree only within one character ask for more reads.
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
    /// A vehicle track about to be read that the camera does not report (its class, confidence
    /// or zones do not pass the camera's filter, or object detection is off): its object as it
    /// would `start` now. Sent before the job that reads it. If its plate is read, ANPR
    /// publishes this `start` before the `anpr` event: a track whose plate is read is a
    /// reported object (docs/architecture.md, "Events"), and then it ends exactly once too.
    Unreported(Box<ObjectEvent>),
    /// A vehicle track ANPR was asked to read has ended without an object event of the track
    /// stage (its camera does not report it): its `end` as it would be. ANPR decides its plate
    /// from the reads it got, publishes the `end` if it published the object's `start`, then
    /// forgets it.
    TrackEnded(Box<ObjectEvent>),
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
    /// Where each event's plate crop is written (`plate_image_key`); `None`: not kept (tests
    /// driving the stage directly).
    pub plate_images: Option<crate::pipeline::evidence::EvidenceSettings>,
}

impl AnprSettings {
    /// Keeps the dedupe window in Redis too (the running service; see `dedupe::SharedDedupe`).
    pub fn shared_in_redis(mut self, c: &crate::config::Config) -> Self {
        let target = crate::redis_target::RedisTarget::from_config(c);
        self.shared_dedupe = Some((target, c.redis_key_prefix.clone(), c.instance_id.clone()));
        self
    }

    /// Writes each event's plate crop to Redis (the running service).
    pub fn with_plate_images(mut self, e: crate::pipeline::evidence::EvidenceSettings) -> Self {
        self.plate_images = Some(e);
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
            plate_images: None,
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
            plate: PlateDetector::load_with_precision(&c.anpr_plate_model, c.anpr_plate_precision, &c.device(), dylib)?,
            reader: PlateReader::load(&c.anpr_ocr_model, &c.anpr_ocr_dict, &c.device(), dylib)?,
        })
    }
}
