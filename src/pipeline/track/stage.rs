//! The track stage: detected frames become objects (docs/architecture.md, "Events").
//!
//! ```text
//! detect -> Detected{frame, every box >= 0.1} (TRACK_CAP, Block) -> [track]
//! capture -> CameraEnded{camera, generation} (ENDED_CAP, Block) -> [track]
//!   per camera and worker generation: Tracker::update
//!   -> detection event (camera's threshold, classes, zones; each box with its track_id)
//!        unless frame_detections is false                               -> events (Block)
//!   -> object start / update (zone_enter, zone_leave, stationary, moving, class) / end
//!   -> plate requests for vehicle tracks (anpr::requests, ANPR's policy)
//!        objects and jobs -> anpr (ANPR_CAP, Block), or objects -> events without ANPR
//! ```
//! An object *starts* once its track is confirmed (a few consecutive detected frames) and it is
//! one the camera reports: its class is among `detection_classes`, its best confidence reaches
//! `confidence_threshold`, and with zones it stands in one. It *ends* exactly once: when the
//! tracker has not seen it for `TRACK_LOST_S` of detected frames, when its camera's worker stops
//! (delete, new URL, inactive, shutdown), or, for a camera whose frames stopped reaching the
//! detector for [`QUIET_CAMERA`], `TRACK_LOST_S` after it was last seen. The `end` carries the
//! last sighting's frame number and time.

use super::lifecycle::{ObjectState, Observation};
use super::{EndedTrack, FrameStamp, Track, TrackInput, Tracker, TrackerConfig};
use crate::camera::CameraParams;
use crate::events::{BestSighting, Detection, DetectionEvent, Event, EventCommon, Lifecycle, ModelInfo, ObjectEvent, UpdateReason};
use crate::evidence::image::touches_edge;
use crate::evidence::OverlayBox;
use crate::infer::decode::normalise;
use crate::metrics::Metrics;
use crate::pipeline::anpr::requests::{Requests, VehicleSighting};
use crate::pipeline::anpr::{AnprInput, AnprJob, VEHICLE_CLASSES};
use crate::pipeline::detect::filter::{camera_filter, zones_of};
use crate::pipeline::detect::Detected;
use crate::pipeline::evidence::best::{BestFrame, Quality};
use crate::pipeline::evidence::{Evidence, SnapshotJob, END_WAIT};
use crate::pipeline::frame::CameraEnded;
use crate::stage::supervise::{beat, Supervisor, BEAT_EVERY};
use crate::stage::{StageHandle, StageThread};
use crate::time::rfc3339_millis;
use crossbeam_channel::{select, Receiver, Sender};
use opencv::prelude::MatTraitConst;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Detected frames waiting for the track stage. Policy: `Block`; tracking costs microseconds a
/// frame, so detection never waits on it in practice, and nothing is lost.
pub const TRACK_CAP: usize = 64;
/// Camera-ended notices waiting. Policy: `Block` (a stopping capture thread waits at most for
/// the track stage to take it).
pub const ENDED_CAP: usize = 1024;
/// A camera none of whose frames reached the detector for this long (stream down) has its
/// tracks aged by the clock instead.
pub const QUIET_CAMERA: Duration = Duration::from_secs(10);
/// How long a camera's ended generation is remembered (late frames of a stopped worker arrive
/// within seconds; generation numbers only grow, so forgetting is safe).
const ENDED_MEMORY: Duration = Duration::from_secs(600);
/// Least score of a vehicle box that stops the whole-frame plate search.
const VEHICLE_BOX_MIN: f32 = 0.3;

/// What the stage needs to know.
#[derive(Debug, Clone)]
pub struct TrackSettings {
    /// `TRACK_LOST_S`.
    pub lost_timeout: Duration,
    /// The detector's class names.
    pub class_names: Arc<Vec<String>>,
    /// `model_info` of detection events.
    pub model_info: ModelInfo,
}

/// Where objects go: through ANPR (to carry plates) when it runs, else to the publisher; and
/// where snapshots and latest frames go (the evidence pool; `None` in unit tests).
pub struct Outputs {
    pub events: Sender<Event>,
    pub anpr: Option<Sender<AnprInput>>,
    pub evidence: Option<Evidence>,
}

/// Starts the track thread; it ends (ending every track) once detection has ended.
pub fn spawn(
    settings: TrackSettings,
    detected: Receiver<Detected>,
    ended: Receiver<CameraEnded>,
    out: Outputs,
    metrics: Arc<Metrics>,
    supervisor: &Supervisor,
) -> std::io::Result<StageHandle> {
    let thread = StageThread::spawn("track", supervisor, move || {
        let mut stage = TrackStage::new(settings, out, metrics);
        stage.run(&detected, &ended);
    })?;
    Ok(StageHandle::new("track", vec![thread]))
}

/// One camera worker generation's tracks.
struct CameraTracks {
    generation: u64,
    tracker: Tracker,
    objects: HashMap<u64, ObjectState>,
    requests: Requests,
    /// Track ids are `<camera_id>/<this, in ms since the epoch>-<n>`: unique across cameras,
    /// instances and restarts.
    started_ms: u128,
    /// Frame size of the last frame, for normalising boxes.
    size: (f32, f32),
    params: Arc<CameraParams>,
    last_detected: Instant,
    /// Per started object: its best frame so far (snapshots) and when it started.
    best: HashMap<u64, (BestFrame, Instant)>,
}

/// The stage's state; public so tests can drive it without threads.
pub struct TrackStage {
    settings: TrackSettings,
    out: Outputs,
    metrics: Arc<Metrics>,
    cameras: HashMap<Arc<str>, CameraTracks>,
    /// Per camera: the newest generation known to have ended (its late frames are ignored),
    /// and when; forgotten after [`ENDED_MEMORY`].
    ended: HashMap<Arc<str>, (u64, Instant)>,
}

impl TrackStage {
    pub fn new(settings: TrackSettings, out: Outputs, metrics: Arc<Metrics>) -> Self {
        TrackStage { settings, out, metrics, cameras: HashMap::new(), ended: HashMap::new() }
    }

    fn run(&mut self, detected: &Receiver<Detected>, ended: &Receiver<CameraEnded>) {
        loop {
            beat();
            select! {
                recv(detected) -> d => match d {
                    Ok(d) => self.frame(d),
                    Err(_) => break,
                },
                recv(ended) -> e => {
                    if let Ok(e) = e {
                        self.camera_ended(&e);
                    }
                }
                default(BEAT_EVERY) => {}
            }
            self.tick(Instant::now());
        }
        for e in ended.try_iter() {
            self.camera_ended(&e);
        }
        self.end_everything();
        log::debug!("track: stopped");
    }

    /// Ends every object of every camera (service shutdown).
    pub fn end_everything(&mut self) {
        let ids: Vec<Arc<str>> = self.cameras.keys().cloned().collect();
        for id in ids {
            if let Some(mut cam) = self.cameras.remove(&id) {
                let ended = cam.tracker.end_all();
                self.end_objects(&id, &mut cam, ended);
            }
        }
    }

    /// A camera's worker stopped: its generation's objects end now.
    pub fn camera_ended(&mut self, e: &CameraEnded) {
        let newest = self.ended.entry(e.camera_id.clone()).or_insert((0, Instant::now()));
        *newest = (newest.0.max(e.generation), Instant::now());
        if self.cameras.get(&e.camera_id).is_some_and(|c| c.generation <= e.generation) {
            if let Some(mut cam) = self.cameras.remove(&e.camera_id) {
                let ended = cam.tracker.end_all();
                self.end_objects(&e.camera_id, &mut cam, ended);
            }
        }
    }

    /// Cameras whose frames stopped reaching the detector: age their tracks by the clock.
    pub fn tick(&mut self, now: Instant) {
        self.ended.retain(|_, (_, at)| now.saturating_duration_since(*at) < ENDED_MEMORY);
        let quiet: Vec<Arc<str>> = self
            .cameras
            .iter()
            .filter(|(_, c)| now.saturating_duration_since(c.last_detected) >= QUIET_CAMERA)
            .map(|(k, _)| k.clone())
            .collect();
        for id in quiet {
            if let Some(mut cam) = self.cameras.remove(&id) {
                let ended = cam.tracker.expire(now);
                self.end_objects(&id, &mut cam, ended);
                if cam.tracker.tracks().next().is_some() {
                    self.cameras.insert(id, cam);
                }
            }
        }
    }

    /// One detected frame.
    pub fn frame(&mut self, d: Detected) {
        let Detected { frame, boxes } = d;
        let id = frame.camera_id.clone();
        if self.ended.get(&id).is_some_and(|&(g, _)| frame.generation <= g) {
            frame.counters.frame_processed(); // a late frame of a stopped worker
            return;
        }
        let mut cam = match self.cameras.remove(&id) {
            Some(c) if c.generation == frame.generation => c,
            Some(mut old) if old.generation < frame.generation => {
                // a restart whose end notice has not arrived yet: the old generation ends now
                let ended = old.tracker.end_all();
                self.end_objects(&id, &mut old, ended);
                self.new_camera(&frame.params, frame.generation)
            }
            Some(newer) => {
                self.cameras.insert(id, newer);
                frame.counters.frame_processed();
                return;
            }
            None => self.new_camera(&frame.params, frame.generation),
        };
        let (w, h) = (frame.image.cols() as f32, frame.image.rows() as f32);
        cam.size = (w, h);
        cam.params = frame.params.clone();
        cam.last_detected = Instant::now();
        let stamp = FrameStamp::from(&frame);
        let inputs: Vec<TrackInput> = boxes.iter().map(TrackInput::from).collect();
        let out = cam.tracker.update(&inputs, stamp);
        self.end_objects(&id, &mut cam, out.ended);

        let params = frame.params.clone();
        let names = self.settings.class_names.clone();
        if params.enable_object_detection && params.frame_detections {
            let detections: Vec<Detection> = camera_filter(&boxes, w, h, &names, &params)
                .into_iter()
                .map(|(i, mut d)| {
                    d.track_id = out.assigned[i].map(|t| track_id(&id, cam.started_ms, t));
                    d
                })
                .collect();
            if !detections.is_empty() {
                let ev = Event::Detection(DetectionEvent {
                    common: EventCommon::new(&id, frame.captured_at, frame.frame_number, (w as u32, h as u32)),
                    detections,
                    model_info: self.settings.model_info.clone(),
                });
                let _ = self.out.events.send(ev);
            }
        }

        // objects seen in this frame
        let class_changed: Vec<u64> = out.class_changed.iter().map(|c| c.id).collect();
        let seen: Vec<u64> = out.assigned.iter().flatten().copied().collect();
        let mut vehicles = Vec::new();
        let mut snapshots = Vec::new();
        let now = Instant::now();
        for &t in &seen {
            let Some(track) = cam.tracker.track(t) else { continue };
            let track = track.clone();
            let events = self.observe(&id, &mut cam, &track, class_changed.contains(&t));
            for ev in events {
                self.send_object(ev);
            }
            if let (Some(ev), true) = (&self.out.evidence, params.snapshots) {
                if let Some(ev) = self.snapshot_update(ev, &id, &mut cam, &track) {
                    self.send_object(ev);
                }
                if let Some((best, _)) = cam.best.get(&t) {
                    let b = track.last().bbox;
                    let q = Quality {
                        confidence: track.last().confidence,
                        area: (b[2] - b[0]) * (b[3] - b[1]),
                        on_edge: touches_edge(&b, w, h),
                    };
                    if best.wants(&q, now) {
                        snapshots.push((t, b, q));
                    }
                }
            }
            let class_name = names.get(track.class_id()).cloned().unwrap_or_default();
            if VEHICLE_CLASSES.contains(&class_name.as_str()) {
                vehicles.push(VehicleSighting {
                    track_id: track_id(&id, cam.started_ms, t),
                    class_name,
                    confidence: track.last().confidence,
                    bbox: track.last().bbox,
                });
            }
        }
        if let Some(ev) = &self.out.evidence {
            if !snapshots.is_empty() {
                // one copy of the frame for every object of it that gets a snapshot
                if let Ok(image) = frame.image.try_clone() {
                    let image = Arc::new(image);
                    for (t, bbox, q) in snapshots {
                        let job = SnapshotJob {
                            track_id: track_id(&id, cam.started_ms, t),
                            image: image.clone(),
                            bbox,
                            frame_number: frame.frame_number,
                            captured_at: frame.captured_at,
                            quality: q,
                        };
                        if ev.snapshot(job) {
                            if let Some((best, _)) = cam.best.get_mut(&t) {
                                best.accept(q, now);
                            }
                        }
                    }
                }
            }
            if ev.latest_wanted(&id) {
                let boxes = seen
                    .iter()
                    .filter_map(|&t| cam.tracker.track(t).map(|tr| (t, tr)))
                    .map(|(t, tr)| OverlayBox {
                        class_name: names.get(tr.class_id()).cloned().unwrap_or_default(),
                        confidence: tr.last().confidence,
                        track_id: Some(track_id(&id, cam.started_ms, t)),
                        bounding_box: normalise(&tr.last().bbox, w, h),
                    })
                    .collect();
                ev.offer_latest(&frame, Some(boxes));
            }
        }
        self.metrics.frame_to_event_seconds.observe(frame.captured.elapsed().as_secs_f64());
        frame.counters.frame_processed();
        if params.enable_anpr {
            if let Some(anpr) = &self.out.anpr {
                let any_vehicle_box = boxes.iter().any(|b| {
                    b.confidence >= VEHICLE_BOX_MIN && names.get(b.class_id).is_some_and(|n| VEHICLE_CLASSES.contains(&n.as_str()))
                });
                if let Some(vehicles) = cam.requests.pick(&vehicles, any_vehicle_box, stamp.captured) {
                    let _ = anpr.send(AnprInput::Job(AnprJob { frame, vehicles }));
                }
            }
        }
        self.cameras.insert(id, cam);
    }

    fn new_camera(&self, params: &Arc<CameraParams>, generation: u64) -> CameraTracks {
        // The tracker's first pass, and new tracks, take boxes from the camera's own threshold
        // (ByteTrack starts tracks only from track_thresh + 0.1, which would hold back an object
        // the camera reports at 0.55), and from 0.3 on an ANPR camera: ANPR reads vehicles
        // below the event threshold (a plate confirms them). Objects are still reported only
        // from the camera's threshold.
        let floor = if params.enable_anpr { params.confidence_threshold.min(0.3) } else { params.confidence_threshold };
        let high = floor.clamp(0.15, 0.9);
        let cfg = TrackerConfig {
            high_thresh: high,
            new_track_thresh: high,
            lost_timeout: self.settings.lost_timeout,
            frame_interval: Duration::from_secs_f32(1.0 / params.max_fps.clamp(1.0, 30.0)),
            ..TrackerConfig::default()
        };
        CameraTracks {
            generation,
            tracker: Tracker::new(cfg),
            objects: HashMap::new(),
            requests: Requests::default(),
            started_ms: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis()),
            size: (1.0, 1.0),
            params: params.clone(),
            last_detected: Instant::now(),
            best: HashMap::new(),
        }
    }

    /// Updates one object seen in this frame; returns its lifecycle events (the rules are
    /// `lifecycle.rs`'s: this gathers the sighting and builds the events).
    fn observe(&self, camera_id: &str, cam: &mut CameraTracks, track: &Track, class_changed: bool) -> Vec<ObjectEvent> {
        let (w, h) = cam.size;
        let params = cam.params.clone();
        let class_name = self.settings.class_names.get(track.class_id()).cloned().unwrap_or_default();
        let id = track.id();
        let tid = track_id(camera_id, cam.started_ms, id);
        let st = cam.objects.entry(id).or_insert_with(|| ObjectState::new(tid));
        let last = track.last();
        let zones = zones_of(&last.bbox, w, h, &params);
        // objects are what object detection reports: a camera with it off (ANPR only) is
        // tracked for ANPR's sake but publishes no object events
        let wanted =
            params.enable_object_detection && (params.detection_classes.is_empty() || params.detection_classes.contains(&class_name));
        let reportable =
            wanted && track.best().confidence >= params.confidence_threshold && (params.roi_zones.is_empty() || !zones.is_empty());
        let sighting = Observation { captured: last.stamp.captured, bbox: last.bbox, zones, reportable, class_changed };
        let events: Vec<ObjectEvent> = st
            .observe(&sighting)
            .into_iter()
            .map(|(lifecycle, reason)| object_event(&self.settings, camera_id, cam.size, track, st, lifecycle, reason))
            .collect();
        if st.started {
            cam.best.entry(id).or_insert_with(|| (BestFrame::default(), Instant::now()));
        }
        events.into_iter().map(|ev| self.with_snapshot(ev, &params)).collect()
    }

    /// Ends the objects of `ended` tracks that had started; forgets every one of them.
    fn end_objects(&mut self, camera_id: &str, cam: &mut CameraTracks, ended: Vec<EndedTrack>) {
        for e in ended {
            let id = e.track.id();
            let tid = track_id(camera_id, cam.started_ms, id);
            let asked = cam.requests.forget(&tid);
            match cam.objects.remove(&id) {
                Some(st) if st.started => {
                    let mut ev = object_event(&self.settings, camera_id, cam.size, &e.track, &st, Lifecycle::End, None);
                    cam.best.remove(&id);
                    if let Some(evidence) = &self.out.evidence {
                        // the snapshot named is written; a job still in the pool is waited for
                        let kept = evidence.book.end(&tid, END_WAIT);
                        ev.snapshot = if cam.params.snapshots { kept.map(Box::new) } else { None };
                    }
                    self.send_object(ev);
                }
                _ => {
                    if let (true, Some(anpr)) = (asked, &self.out.anpr) {
                        let _ = anpr.send(AnprInput::TrackEnded(tid));
                    }
                }
            }
        }
    }

    /// The object's written snapshot on an event about to leave (null with `snapshots: false`).
    fn with_snapshot(&self, mut ev: ObjectEvent, params: &CameraParams) -> ObjectEvent {
        if let (Some(evidence), true) = (&self.out.evidence, params.snapshots) {
            ev.snapshot = evidence.book.announce(&ev.track_id).map(Box::new);
        }
        ev
    }

    /// An `update` (reason `snapshot`) when the object's written snapshot is clearly better
    /// than the one announced last, at most every `SNAPSHOT_UPDATE_S`.
    fn snapshot_update(&self, evidence: &Evidence, camera_id: &str, cam: &mut CameraTracks, track: &Track) -> Option<ObjectEvent> {
        let &(_, since) = cam.best.get(&track.id())?;
        let st = cam.objects.get(&track.id())?;
        if !st.started || !evidence.book.update_due(&st.track_id, evidence.settings.update_every, since) {
            return None;
        }
        let ev = object_event(&self.settings, camera_id, cam.size, track, st, Lifecycle::Update, Some(UpdateReason::Snapshot));
        let ev = self.with_snapshot(ev, &cam.params);
        ev.snapshot.is_some().then_some(ev)
    }

    fn send_object(&self, ev: ObjectEvent) {
        match &self.out.anpr {
            Some(anpr) => {
                let _ = anpr.send(AnprInput::Object(Box::new(ev)));
            }
            None => {
                let _ = self.out.events.send(Event::Object(ev));
            }
        }
    }
}

/// `<camera_id>/<tracker start ms>-<n>`.
fn track_id(camera_id: &str, started_ms: u128, n: u64) -> String {
    format!("{camera_id}/{started_ms}-{n}")
}

fn object_event(
    settings: &TrackSettings,
    camera_id: &str,
    (w, h): (f32, f32),
    track: &Track,
    st: &ObjectState,
    lifecycle: Lifecycle,
    update_reason: Option<UpdateReason>,
) -> ObjectEvent {
    let (first, last, best) = (track.first(), track.last(), track.best());
    ObjectEvent {
        common: EventCommon::new(camera_id, last.stamp.captured_at, last.stamp.frame_number, (w as u32, h as u32)),
        track_id: st.track_id.clone(),
        lifecycle,
        class_name: settings.class_names.get(track.class_id()).cloned().unwrap_or_default(),
        confidence: best.confidence,
        bounding_box: normalise(&last.bbox, w, h),
        best: BestSighting {
            frame_number: best.stamp.frame_number,
            timestamp: rfc3339_millis(best.stamp.captured_at),
            confidence: best.confidence,
            bounding_box: normalise(&best.bbox, w, h),
        },
        first_seen: rfc3339_millis(first.stamp.captured_at),
        last_seen: rfc3339_millis(last.stamp.captured_at),
        duration_s: track.duration().as_secs_f64(),
        zones: st.zones.clone(),
        entered_zones: st.entered.clone(),
        stationary: st.stationary,
        license_plate: None,
        update_reason,
        snapshot: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::RoiZone;
    use crate::infer::RawDetection;
    use crate::metrics::CameraCounters;
    use crate::pipeline::frame::Frame;
    use crossbeam_channel::Receiver;
    use opencv::core::{Mat, Scalar, CV_8UC3};

    fn stage() -> (TrackStage, Receiver<Event>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let names = Arc::new(crate::coco::COCO_CLASSES.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let settings = TrackSettings {
            lost_timeout: Duration::from_secs(3),
            class_names: names,
            model_info: ModelInfo {
                model_type: "test".into(),
                model: "test.onnx".into(),
                version: "test".into(),
                runtime: "test".into(),
                precision: "fp32".into(),
            },
        };
        (TrackStage::new(settings, Outputs { events: tx, anpr: None, evidence: None }, Metrics::new()), rx)
    }

    fn frame(cam: &str, generation: u64, n: u64, params: &CameraParams, t0: Instant) -> Frame {
        let image = Mat::new_rows_cols_with_default(480, 640, CV_8UC3, Scalar::all(0.0)).unwrap();
        let mut f = Frame::now(cam, params.clone(), Arc::new(CameraCounters::default()), n, image);
        f.generation = generation;
        f.captured = t0 + Duration::from_millis(100 * n);
        f
    }

    fn person(x: f32) -> RawDetection {
        RawDetection { class_id: 0, confidence: 0.9, bbox: [x, 100.0, x + 50.0, 300.0] }
    }

    fn objects(rx: &Receiver<Event>) -> Vec<ObjectEvent> {
        rx.try_iter().filter_map(|e| if let Event::Object(o) = e { Some(o) } else { None }).collect()
    }

    #[test]
    fn an_object_starts_once_confirmed_and_ends_when_its_camera_stops() {
        let (mut st, rx) = stage();
        let p = CameraParams::default();
        let t0 = Instant::now();
        for n in 1..=5 {
            st.frame(Detected { frame: frame("c", 1, n, &p, t0), boxes: vec![person(100.0 + n as f32)] });
        }
        let evs: Vec<Event> = rx.try_iter().collect();
        let starts: Vec<&ObjectEvent> = evs
            .iter()
            .filter_map(|e| if let Event::Object(o) = e { Some(o) } else { None })
            .filter(|o| o.lifecycle == Lifecycle::Start)
            .collect();
        assert_eq!(starts.len(), 1);
        assert!(starts[0].track_id.starts_with("c/"), "{}", starts[0].track_id);
        // detection events: the first frames' boxes have no track yet, later ones the object's id
        let dets: Vec<&DetectionEvent> = evs.iter().filter_map(|e| if let Event::Detection(d) = e { Some(d) } else { None }).collect();
        assert_eq!(dets.len(), 5);
        assert_eq!(dets[0].detections[0].track_id, None);
        assert_eq!(dets[4].detections[0].track_id.as_deref(), Some(starts[0].track_id.as_str()));
        st.camera_ended(&CameraEnded { camera_id: Arc::from("c"), generation: 1 });
        let ends = objects(&rx);
        assert_eq!(ends.len(), 1);
        assert_eq!((ends[0].lifecycle, &ends[0].track_id), (Lifecycle::End, &starts[0].track_id));
        // a late frame of the stopped worker starts nothing; a new worker (generation) does
        st.frame(Detected { frame: frame("c", 1, 6, &p, t0), boxes: vec![person(106.0)] });
        st.end_everything();
        assert!(objects(&rx).is_empty());
    }

    #[test]
    fn a_restart_ends_the_old_generation_and_shutdown_ends_everything() {
        let (mut st, rx) = stage();
        let p = CameraParams { frame_detections: false, ..Default::default() };
        let t0 = Instant::now();
        for n in 1..=4 {
            st.frame(Detected { frame: frame("c", 1, n, &p, t0), boxes: vec![person(100.0)] });
        }
        // the new worker's frames arrive before the old one's end notice
        for n in 5..=8 {
            st.frame(Detected { frame: frame("c", 2, n, &p, t0), boxes: vec![person(100.0)] });
        }
        st.camera_ended(&CameraEnded { camera_id: Arc::from("c"), generation: 1 });
        st.end_everything();
        let evs: Vec<Event> = rx.try_iter().collect();
        assert!(evs.iter().all(|e| matches!(e, Event::Object(_))), "frame_detections: false publishes no detection events");
        let objs: Vec<&ObjectEvent> = evs.iter().filter_map(|e| if let Event::Object(o) = e { Some(o) } else { None }).collect();
        let starts: Vec<&String> = objs.iter().filter(|o| o.lifecycle == Lifecycle::Start).map(|o| &o.track_id).collect();
        let ends: Vec<&String> = objs.iter().filter(|o| o.lifecycle == Lifecycle::End).map(|o| &o.track_id).collect();
        assert_eq!(starts.len(), 2, "{objs:?}");
        assert_eq!(starts, ends, "each started object ends exactly once");
    }

    #[test]
    fn zones_and_classes_decide_what_is_reported() {
        let (mut st, rx) = stage();
        let zone = RoiZone { name: "left".into(), points: vec![[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]] };
        let p = CameraParams { roi_zones: vec![zone], detection_classes: vec!["person".into()], ..Default::default() };
        let t0 = Instant::now();
        // a person walking from the right half into the left zone, and a car that is never reported
        for n in 1..=20u64 {
            let x = 600.0 - 20.0 * n as f32;
            let car = RawDetection { class_id: 2, confidence: 0.9, bbox: [10.0, 350.0, 200.0, 450.0] };
            st.frame(Detected { frame: frame("z", 1, n, &p, t0), boxes: vec![person(x), car] });
        }
        st.end_everything();
        let objs = objects(&rx);
        assert!(objs.iter().all(|o| o.class_name == "person"), "{objs:?}");
        let start = objs.iter().find(|o| o.lifecycle == Lifecycle::Start).expect("the person starts once inside the zone");
        assert_eq!(start.zones, ["left"]);
        let end = objs.iter().find(|o| o.lifecycle == Lifecycle::End).unwrap();
        assert_eq!(end.entered_zones, ["left"]);
        assert_eq!(objs.len(), 2, "no per-frame updates: {objs:?}");
    }

    #[test]
    fn a_standing_object_becomes_stationary_once() {
        let (mut st, rx) = stage();
        let p = CameraParams::default();
        let t0 = Instant::now();
        for n in 1..=80 {
            st.frame(Detected { frame: frame("s", 1, n, &p, t0), boxes: vec![person(100.0 + (n % 2) as f32)] });
        }
        let objs = objects(&rx);
        let updates: Vec<_> = objs.iter().filter(|o| o.lifecycle == Lifecycle::Update).collect();
        assert_eq!(updates.len(), 1, "{objs:?}");
        assert_eq!(updates[0].update_reason, Some(UpdateReason::Stationary));
        assert!(updates[0].stationary);
    }
}
