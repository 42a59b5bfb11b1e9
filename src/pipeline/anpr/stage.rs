//! The ANPR stage: the thread ([`spawn`]) and the work on one job ([`AnprStage`]): vehicle
//! guards, crop, plate detector, OCR, per-track votes (`vote.rs`), window dedupe, events.

use super::dedupe::{self, Clock, Dedupe, SystemClock};
use super::queue::FairJobs;
use super::requests::MAX_READS_PER_TRACK;
use super::text;
use super::vote::{consensus, largest_cluster, Vote};
use super::{AnprInput, AnprJob, AnprModels, AnprSettings, Vehicle, FULL_FRAME_CLASS, VEHICLE_CLASSES, VOTES_NEEDED};
use crate::events::{AnprEvent, AnprResult, BoundingBox, Event, EventCommon, Lifecycle, ObjectEvent, ObjectPlate, UpdateReason};
use crate::logging::RateLimit;
use crate::metrics::Metrics;
use crate::pipeline::evidence::PlateWriter;
use crate::stage::supervise::{beat, Supervisor, BEAT_EVERY};
use crate::stage::{StageHandle, StageThread, Stop};
use crossbeam_channel::{Receiver, Sender};
use opencv::core::{Mat, Rect};
use opencv::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
                    AnprInput::Unreported(ev) => stage.unreported(*ev),
                    AnprInput::TrackEnded(ev) => {
                        for e in stage.track_ended(*ev) {
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

/// What ANPR knows of one vehicle track.
#[derive(Default)]
struct TrackPlate {
    votes: Vec<Vote>,
    /// The plate decided (published once), if any.
    decided: Option<ObjectPlate>,
    /// Reads tried (with or without a result).
    reads: usize,
    /// The last object event seen for the track (for the `plate` update); `None` while the
    /// object has not started.
    last_object: Option<ObjectEvent>,
    /// The track's object as it would start, while the camera does not report it
    /// (`AnprInput::Unreported`): published as its `start` when its plate is.
    unreported: Option<ObjectEvent>,
    /// Its `start` was published here (a read plate made it a reported object): the track
    /// stage's own `start`, should it come, is not published again, and the `end` comes here
    /// through `track_ended` unless the track stage started it.
    started_here: bool,
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
    /// outlived their track) are swept after a minute, except objects started here, which
    /// wait for their end.
    tracks: HashMap<String, TrackPlate>,
    /// When memory was last swept.
    swept: Instant,
    metrics: Arc<Metrics>,
    error_log: RateLimit,
    /// Writes each event's plate crop to Redis (`plate_image_key`); `None`: not kept (tests).
    pub plates: Option<PlateWriter>,
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
        self.unreported = None;
        self.touched = Some(Instant::now());
    }
}

/// Whether a track's reads settle its plate before the track ends: [`VOTES_NEEDED`] reads say
/// exactly what the character-by-character vote says, or the track has had all the reads the
/// track stage asks for ([`MAX_READS_PER_TRACK`]). Reads that agree only within one character
/// (`I` against `1`) ask for more reads rather than a guess.
fn settled(votes: &[Vote], reads: usize) -> bool {
    let cluster = largest_cluster(votes);
    let Some((text, _)) = consensus(votes, &cluster) else { return false };
    cluster.iter().filter(|&&i| votes[i].text == text).count() >= VOTES_NEEDED || reads >= MAX_READS_PER_TRACK as usize
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
        let plates = settings.plate_images.clone().map(|e| PlateWriter::new(e, metrics.clone()));
        AnprStage {
            models,
            settings,
            dedupe,
            tracks: HashMap::new(),
            swept: Instant::now(),
            metrics,
            error_log: RateLimit::new(Duration::from_secs(10)),
            plates,
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
                Ok(Some((plate_box, read, plate_crop))) => {
                    let confidence = text::confidence(&read);
                    if confidence < s.min_read_confidence {
                        continue;
                    }
                    if let Some(t) = &v.track_id {
                        let vote = Vote {
                            text: read.text.clone(),
                            char_probs: read.char_probs.clone(),
                            confidence,
                            region: params.anpr_region.clone(),
                            camera_id: cam_id.clone(),
                            frame_number: job.frame.frame_number,
                            captured_at: job.frame.captured_at,
                            frame_size: (w as u32, h as u32),
                            plate_box: normalised(plate_box, w as f32, h as f32),
                            vehicle_box: normalised(v.bbox, w as f32, h as f32),
                            vehicle_class: v.class_name.clone(),
                            plate_crop: Some(plate_crop),
                        };
                        let entry = self.tracks.entry(t.clone()).or_default();
                        entry.votes.push(vote);
                        if settled(&entry.votes, entry.reads) {
                            events.extend(self.decide(t));
                        }
                        continue;
                    }
                    let region = params.anpr_region.clone().or_else(|| text::region_of(&read.text).map(str::to_string));
                    if !self.dedupe.should_publish(&cam_id, &read.text) {
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
                    let common = EventCommon::new(&cam_id, job.frame.captured_at, job.frame.frame_number, (w as u32, h as u32));
                    let plate_image_key = self.plates.as_mut().and_then(|p| p.write(&plate_crop, &cam_id, &common.event_id));
                    events.push(Event::Anpr(AnprEvent {
                        common,
                        anpr_result: AnprResult::new(read.text, confidence, region),
                        plate_box: normalised(plate_box, w as f32, h as f32),
                        vehicle_box: normalised(v.bbox, w as f32, h as f32),
                        vehicle_class: v.class_name.clone(),
                        track_id: None,
                        plate_image_key,
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
    /// cluster) and publishes it once: the object's `start` if the camera had not reported it
    /// (see [`unreported`](Self::unreported)), the `anpr` event, and an object `update`
    /// (reason `plate`). The window dedupe (ANPR_DEDUPE_WINDOW_S) still
    /// applies across tracks (a vehicle whose track was split is not read out twice).
    fn decide(&mut self, t: &str) -> Vec<Event> {
        let Some(entry) = self.tracks.get_mut(t) else { return Vec::new() };
        if entry.decided.is_some() || entry.votes.is_empty() {
            return Vec::new();
        }
        let cluster = largest_cluster(&entry.votes);
        let Some((text, confidence)) = consensus(&entry.votes, &cluster) else { return Vec::new() };
        // the frame and boxes of the most confident read of the voted text (of the cluster if none reads it)
        let rank = |i: usize| (entry.votes[i].text == text, entry.votes[i].confidence);
        let Some(best_i) = cluster.into_iter().max_by(|&a, &b| {
            let (ra, rb) = (rank(a), rank(b));
            ra.0.cmp(&rb.0).then(ra.1.total_cmp(&rb.1))
        }) else {
            return Vec::new();
        };
        let best = entry.votes.swap_remove(best_i);
        let region = best.region.clone().or_else(|| text::region_of(&text).map(str::to_string));
        let plate = ObjectPlate { text: text.clone(), confidence, region: region.clone() };
        entry.decided = Some(plate.clone());
        let mut out = Vec::new();
        if self.dedupe.should_publish(&best.camera_id, &text) {
            // a track whose plate is read is a reported object: its `start` goes first
            if entry.last_object.is_none() {
                if let Some(mut start) = entry.unreported.take() {
                    start.lifecycle = Lifecycle::Start;
                    start.update_reason = None;
                    start.license_plate = None;
                    entry.last_object = Some(start.clone());
                    entry.started_here = true;
                    out.push(Event::Object(start));
                }
            }
            log::debug!("anpr cam={} track {t}: plate {} ({:.2}) from {} read(s)", best.camera_id, text, confidence, entry.votes.len() + 1);
            let common = EventCommon::new(&best.camera_id, best.captured_at, best.frame_number, best.frame_size);
            let plate_image_key = match (self.plates.as_mut(), &best.plate_crop) {
                (Some(p), Some(crop)) => p.write(crop, &best.camera_id, &common.event_id),
                _ => None,
            };
            out.push(Event::Anpr(AnprEvent {
                common,
                anpr_result: AnprResult::new(text.clone(), confidence, region),
                plate_box: best.plate_box,
                vehicle_box: best.vehicle_box,
                vehicle_class: best.vehicle_class,
                track_id: Some(t.to_string()),
                plate_image_key,
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
            entry.unreported = None;
            entry.touched = Some(Instant::now());
            if ev.lifecycle == Lifecycle::Start && entry.started_here {
                // started here already, when its plate was read: the same object, not news
                entry.last_object = Some(ev);
                return out;
            }
            entry.last_object = Some(ev.clone());
        } else if VEHICLE_CLASSES.contains(&ev.class_name.as_str()) {
            self.tracks.insert(t, TrackPlate { last_object: Some(ev.clone()), touched: Some(Instant::now()), ..Default::default() });
        }
        out.push(Event::Object(ev));
        out
    }

    /// A vehicle track the camera does not report, about to be read: `ev` is its object as it
    /// would start now. Kept (the latest) until its plate is read, which makes it a reported
    /// object: then `ev` is published as its `start`, before the `anpr` event.
    pub fn unreported(&mut self, ev: ObjectEvent) {
        let entry = self.tracks.entry(ev.track_id.clone()).or_default();
        entry.touched = Some(Instant::now());
        if !entry.ended && entry.last_object.is_none() {
            entry.unreported = Some(ev);
        }
    }

    /// A vehicle track ended that the track stage never reported (`end`: its `end` as it would
    /// be): its plate is decided now; if that (or an earlier read) made it a reported object,
    /// its `end` is published, with the plate. Then it is forgotten.
    pub fn track_ended(&mut self, mut end: ObjectEvent) -> Vec<Event> {
        self.sweep();
        let t = end.track_id.clone();
        let mut out = self.decide(&t);
        match self.tracks.get_mut(&t) {
            Some(entry) => {
                if entry.started_here && !entry.ended {
                    end.lifecycle = Lifecycle::End;
                    end.update_reason = None;
                    end.license_plate = entry.decided.clone();
                    out.push(Event::Object(end));
                }
                entry.end();
            }
            None => {
                self.tracks.insert(t, TrackPlate::tombstone());
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
        // an object started here stays until its end comes (its track is live: it ends for sure)
        self.tracks.retain(|_, t| (t.started_here && !t.ended) || t.touched.is_some_and(|at| at.elapsed() < Duration::from_secs(60)));
        self.dedupe.sweep();
    }

    /// Plate box (frame pixels) and normalised read of one vehicle, or `None` when a guard says no.
    /// The plate box, the read and the plate crop (what OCR read, for the event's plate image).
    #[allow(clippy::type_complexity)]
    fn read_vehicle(&mut self, img: &Mat, v: &Vehicle, w: i32, h: i32) -> Result<Option<([f32; 4], text::Read, Mat)>, String> {
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
        Ok(text::normalise(&raw, &s.rules).map(|r| (pb, r, plate_img)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(text: &str) -> Vote {
        super::super::vote::test_vote(text, 0.9)
    }

    /// Two reads one character apart (`I` and `1`) do not settle a plate: more reads are asked
    /// for; two that say the voted text exactly do; so does a track that had all its reads.
    #[test]
    fn reads_that_disagree_ask_for_more() {
        assert!(!settled(&[vote("WSQI021")], 1));
        assert!(!settled(&[vote("WSQI021"), vote("WSQ1021")], 2), "one character apart: read again");
        assert!(settled(&[vote("WSQI021"), vote("WSQ1021"), vote("WSQI021")], 3));
        assert!(settled(&[vote("WSQI021"), vote("WSQ1021")], MAX_READS_PER_TRACK as usize), "no reads left");
        assert!(!settled(&[], MAX_READS_PER_TRACK as usize));
    }
}
