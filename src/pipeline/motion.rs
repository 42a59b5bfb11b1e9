//! Motion: the shared motion pool and the frame-differencing detector.
//!
//! ```text
//! frames(cap FRAMES_PER_CAMERA_CAP per camera, newest wins) -> [motion x MOTION_WORKERS]
//!        -> Event::Motion -> events (Block) -> publish
//!        -> frames (DETECT_CAP, try_send; full = dropped{stage="motion"}) -> detect
//! ```
//! Each camera is pinned to one worker (the least loaded when it attaches), so its background
//! model is only ever touched by one thread and needs no lock.
//!
//! The detector follows the spirit of Frigate's improved motion detector: grayscale, downscale
//! to `height` rows, Gaussian blur, absolute difference against a running-average background,
//! threshold, dilate, external contours with a minimum area.
//!
//! Lighting: before the difference, the background is brought to the frame's lighting by a
//! tone curve ([`ToneCurve`]): for each background brightness level, the median level the same
//! pixels have in the frame. It is applied when most of the scene's pixels moved (a global
//! change: lights switched on, IR cut, the sun out of a cloud, an exposure jump with clipping,
//! a slow ramp at dusk); a moving object only moves the levels it covers. Objects that move are
//! a minority at any level, so they stay motion, also on the very frame the light changes (the
//! aim of Frigate's per-frame contrast normalisation; a per-level median also follows gain,
//! gamma and clipping). A step (a large shift in one frame) then re-seeds the background from
//! the frame, so what no curve explains (colour channels clipping differently) is one event at
//! most, not a burst of shrinking "motion" while a running average crawls after the new light.
//! A frame where most of the scene (zones) still differs after that is a change no curve
//! explains (a camera moved, a partial light): the background is re-seeded and no motion is
//! reported. Only pixels inside the camera's ROI zones count; `affected_area_percentage` is the
//! changed fraction of the zones (or of the whole frame when there are none), `motion_intensity`
//! the mean brightness change of the changed pixels (0..1).

use super::frame::Frame;
use crate::camera::{CameraRuntime, DetectOn, RoiZone};
use crate::events::{BoundingBox, Event, EventCommon, MotionEvent};
use crate::logging::RateLimit;
use crate::metrics::Stage;
use crate::stage::supervise::{beat, Supervisor, BEAT_EVERY};
use crate::stage::{StageHandle, StageThread, Stop};
use crossbeam_channel::{bounded, Receiver, Select, Sender, TrySendError};
use opencv::core::{self, Mat, Point, Scalar, Size, Vector, CV_32F, CV_8U, CV_8UC1};
use opencv::imgproc;
use opencv::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Frames queued per camera between capture and motion. Policy: `DropOldest` (newest wins),
/// counted as `frames_dropped{stage="capture"}`: a slow motion worker never blocks a camera,
/// and what it processes is as fresh as possible.
pub const FRAMES_PER_CAMERA_CAP: usize = 2;

/// Tuning of the detector. The defaults suit 4:3 and 16:9 scenes from 360p to 4K.
#[derive(Debug, Clone)]
pub struct MotionSettings {
    /// Rows of the downscaled frame the detector works on.
    pub height: i32,
    /// Gaussian blur kernel (odd).
    pub blur_kernel: i32,
    /// Per-pixel brightness change (0..255) that counts as changed.
    pub diff_threshold: f64,
    /// Dilation passes (3x3) that join the parts of one moving object.
    pub dilate_iterations: i32,
    /// Smallest contour kept, as a fraction of the downscaled frame (noise, leaves, rain).
    pub min_contour_fraction: f64,
    /// Changed fraction (after the tone curve) above which a frame is a scene change, not
    /// motion: the background is re-seeded.
    pub lighting_change_fraction: f64,
    /// Brightness levels (0..255) a background level must have moved by to count as moved: the
    /// tone curve is applied when most of the scene's pixels moved (a global change); a moving
    /// object, however bright, moves only its own levels.
    pub tone_shift_min: f32,
    /// Mean shift (levels) from which a frame is a lighting step: after its motion is measured
    /// against the remapped background, the background is re-seeded from the frame, so the
    /// little a curve cannot explain (colour channels clipping differently) is not left to crawl.
    pub lighting_step_shift: f32,
    /// Weight of the new frame in the running-average background.
    pub background_alpha: f64,
}

impl Default for MotionSettings {
    fn default() -> Self {
        MotionSettings {
            height: 180,
            blur_kernel: 5,
            diff_threshold: 25.0,
            dilate_iterations: 2,
            min_contour_fraction: 0.0005,
            lighting_change_fraction: 0.6,
            tone_shift_min: 3.0,
            lighting_step_shift: 8.0,
            background_alpha: 0.05,
        }
    }
}

/// What the detector saw in one frame.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MotionResult {
    /// Mean brightness change of the changed pixels, 0..1.
    pub intensity: f32,
    /// Changed fraction of the zones (or frame), 0..1.
    pub area: f32,
    /// Moving regions, normalised to the frame.
    pub boxes: Vec<BoundingBox>,
    /// Names of the zones with changed pixels.
    pub zones: Vec<String>,
    /// True when the frame (re)built the background: first frame, size change, scene change.
    pub calibrating: bool,
    /// Mean brightness shift of the scene against the background (levels, 0..255) that the tone
    /// curve compensated in this frame; 0 when the curve was not applied (no global change).
    pub tone_shift: f32,
}

/// How the scene's brightness levels moved between the background and a frame: for each
/// background level, the median frame level of the pixels at that level. Pairs are taken at the
/// same place, so objects that move (a minority of the pixels at any level) do not bend it,
/// while a lighting change (any monotonic remapping of the levels: offset, gain, gamma,
/// clipping) is recovered in full.
pub struct ToneCurve {
    /// Frame level for each background level, monotonic.
    pub map: [f32; 256],
    /// Mean |map(level) - level| over the background's pixels.
    pub shift: f32,
    /// Per background level, how many pixels it has (the weights of `shift` and `moved_fraction`).
    counts: [u32; 256],
}

impl ToneCurve {
    /// Background levels with fewer sampled pixels than this take their value from their
    /// neighbours.
    const MIN_PIXELS: u32 = 8;
    /// Every `SAMPLE`-th pixel of every `SAMPLE`-th row is paired: the curve is a statistic of
    /// the whole scene, and 1 in 4 pixels keeps its cost a fraction of the blur's.
    const SAMPLE: usize = 2;

    /// Fits the curve from `background` (float levels) to `frame` (8-bit), both `width` pixels
    /// a row; `joint` is a reusable 256x256 histogram buffer.
    pub fn fit(background: &[f32], frame: &[u8], width: usize, joint: &mut Vec<u32>) -> ToneCurve {
        joint.clear();
        joint.resize(256 * 256, 0);
        let mut counts = [0u32; 256];
        for (bg_row, frame_row) in background.chunks_exact(width).zip(frame.chunks_exact(width)).step_by(Self::SAMPLE) {
            for (b, f) in bg_row.iter().zip(frame_row).step_by(Self::SAMPLE) {
                let level = b.round().clamp(0.0, 255.0) as usize;
                joint[level * 256 + *f as usize] += 1;
                counts[level] += 1;
            }
        }
        let mut map = [f32::NAN; 256];
        for (level, row) in joint.chunks_exact(256).enumerate() {
            let n = counts[level];
            if n < Self::MIN_PIXELS {
                continue;
            }
            // median, interpolated inside its bin (the bin's pixels spread over [u - 0.5, u + 0.5])
            let half = n as f32 / 2.0;
            let mut below = 0u32;
            for (u, c) in row.iter().enumerate() {
                if *c > 0 && (below + c) as f32 >= half {
                    map[level] = u as f32 - 0.5 + (half - below as f32) / *c as f32;
                    break;
                }
                below += c;
            }
        }
        let known: Vec<usize> = (0..256).filter(|l| !map[*l].is_nan()).collect();
        let (Some(&first), Some(&last)) = (known.first(), known.last()) else {
            return ToneCurve { map: std::array::from_fn(|l| l as f32), shift: 0.0, counts };
        };
        // levels without enough pixels: the offset of the nearest known level beyond the ends,
        // linear between known levels
        for l in 0..first {
            map[l] = l as f32 + map[first] - first as f32;
        }
        for l in last + 1..256 {
            map[l] = l as f32 + map[last] - last as f32;
        }
        for w in known.windows(2) {
            let (a, b) = (w[0], w[1]);
            for l in a + 1..b {
                let t = (l - a) as f32 / (b - a) as f32;
                map[l] = map[a] + t * (map[b] - map[a]);
            }
        }
        let mut prev = f32::MIN;
        for m in map.iter_mut() {
            *m = m.clamp(0.0, 255.0).max(prev);
            prev = *m;
        }
        let total: u32 = counts.iter().sum();
        let moved: f32 = (0..256).map(|l| counts[l] as f32 * (map[l] - l as f32).abs()).sum();
        ToneCurve { map, shift: if total > 0 { moved / total as f32 } else { 0.0 }, counts }
    }

    /// Fraction of the pixels whose level moved by `levels` or more.
    pub fn moved_fraction(&self, levels: f32) -> f32 {
        let total: u32 = self.counts.iter().sum();
        let moved: u32 = (0..256).filter(|l| (self.map[*l] - *l as f32).abs() >= levels).map(|l| self.counts[l]).sum();
        if total > 0 {
            moved as f32 / total as f32
        } else {
            0.0
        }
    }

    /// Remaps float levels through the curve (linear between levels).
    pub fn apply(&self, levels: &mut [f32]) {
        for x in levels {
            let v = x.clamp(0.0, 255.0);
            let i = (v.floor() as usize).min(254);
            let t = v - i as f32;
            *x = self.map[i] + t * (self.map[i + 1] - self.map[i]);
        }
    }
}

/// Zone masks at one downscaled size, rebuilt when the zones or the size change.
struct ZoneMasks {
    zones: Vec<RoiZone>,
    size: Size,
    /// Union of all zones (255 inside).
    union: Mat,
    union_area: i32,
    each: Vec<Mat>,
}

/// One camera's motion detector: owns the background model and scratch buffers.
pub struct MotionDetector {
    settings: MotionSettings,
    background: Option<Mat>,
    zone_masks: Option<ZoneMasks>,
    gray: Mat,
    small: Mat,
    blurred: Mat,
    background_u8: Mat,
    diff: Mat,
    mask: Mat,
    dilated: Mat,
    kernel: Mat,
    /// Scratch for the tone curve's joint histogram (256 x 256).
    joint: Vec<u32>,
}

impl MotionDetector {
    pub fn new(settings: MotionSettings) -> opencv::Result<Self> {
        let kernel = imgproc::get_structuring_element(imgproc::MORPH_RECT, Size::new(3, 3), Point::new(-1, -1))?;
        Ok(MotionDetector {
            settings,
            background: None,
            zone_masks: None,
            gray: Mat::default(),
            small: Mat::default(),
            blurred: Mat::default(),
            background_u8: Mat::default(),
            diff: Mat::default(),
            mask: Mat::default(),
            dilated: Mat::default(),
            kernel,
            joint: Vec::new(),
        })
    }

    /// Compares `frame` (BGR or grayscale, 8-bit) with the background and updates it.
    pub fn detect(&mut self, frame: &Mat, zones: &[RoiZone]) -> opencv::Result<MotionResult> {
        let s = self.settings.clone();
        let (fw, fh) = (frame.cols(), frame.rows());
        if fw <= 0 || fh <= 0 {
            return Err(opencv::Error::new(core::StsBadArg, "empty frame".to_string()));
        }
        if frame.channels() == 3 {
            imgproc::cvt_color(frame, &mut self.gray, imgproc::COLOR_BGR2GRAY, 0)?;
        } else {
            frame.copy_to(&mut self.gray)?;
        }
        let h = s.height.min(fh);
        let w = ((fw as f64 * h as f64 / fh as f64).round() as i32).max(1);
        let size = Size::new(w, h);
        imgproc::resize(&self.gray, &mut self.small, size, 0.0, 0.0, imgproc::INTER_AREA)?;
        let k = s.blur_kernel;
        imgproc::gaussian_blur(&self.small, &mut self.blurred, Size::new(k, k), 0.0, 0.0, core::BORDER_DEFAULT)?;

        let recalibrate = |bg: &mut Option<Mat>, blurred: &Mat| -> opencv::Result<MotionResult> {
            let mut f = Mat::default();
            blurred.convert_to(&mut f, CV_32F, 1.0, 0.0)?;
            *bg = Some(f);
            Ok(MotionResult { calibrating: true, ..Default::default() })
        };
        let same_size = self.background.as_ref().is_some_and(|b| b.size().ok() == Some(size));
        if !same_size {
            // first frame, or the stream changed resolution: start a new background
            return recalibrate(&mut self.background, &self.blurred);
        }
        self.ensure_zone_masks(zones, size)?;
        let bg = self.background.as_mut().expect("invariant: same_size implies a background");
        // Lighting: bring the background to the frame's tone first (module doc); what still
        // differs after that moved.
        let curve = ToneCurve::fit(bg.data_typed::<f32>()?, self.blurred.data_bytes()?, w as usize, &mut self.joint);
        let tone_shift = if curve.moved_fraction(s.tone_shift_min) >= 0.5 {
            curve.apply(bg.data_typed_mut::<f32>()?);
            curve.shift
        } else {
            0.0
        };
        bg.convert_to(&mut self.background_u8, CV_8U, 1.0, 0.0)?;
        core::absdiff(&self.blurred, &self.background_u8, &mut self.diff)?;
        imgproc::threshold(&self.diff, &mut self.mask, s.diff_threshold, 255.0, imgproc::THRESH_BINARY)?;
        let (region_area, zm) = match &self.zone_masks {
            Some(zm) if !zm.zones.is_empty() => {
                let mut inside = Mat::default();
                core::bitwise_and(&self.mask, &zm.union, &mut inside, &core::no_array())?;
                self.mask = inside;
                (zm.union_area.max(1), Some(zm))
            }
            _ => (w * h, None),
        };
        let raw_changed = core::count_non_zero(&self.mask)?;
        if raw_changed as f64 / region_area as f64 > s.lighting_change_fraction {
            return recalibrate(&mut self.background, &self.blurred);
        }
        imgproc::dilate(
            &self.mask,
            &mut self.dilated,
            &self.kernel,
            Point::new(-1, -1),
            s.dilate_iterations,
            core::BORDER_CONSTANT,
            Scalar::all(0.0),
        )?;
        let mut contours: Vector<Vector<Point>> = Vector::new();
        imgproc::find_contours(&self.dilated, &mut contours, imgproc::RETR_EXTERNAL, imgproc::CHAIN_APPROX_SIMPLE, Point::new(0, 0))?;
        let min_area = (s.min_contour_fraction * (w * h) as f64).max(4.0);
        let mut kept: Vector<Vector<Point>> = Vector::new();
        let mut boxes = Vec::new();
        for c in contours.iter() {
            if imgproc::contour_area(&c, false)? >= min_area {
                let r = imgproc::bounding_rect(&c)?;
                boxes.push(BoundingBox {
                    x: r.x as f32 / w as f32,
                    y: r.y as f32 / h as f32,
                    width: r.width as f32 / w as f32,
                    height: r.height as f32 / h as f32,
                });
                kept.push(c);
            }
        }
        let mut result = MotionResult { tone_shift, ..Default::default() };
        if !kept.is_empty() {
            let mut moving = Mat::zeros(h, w, CV_8UC1)?.to_mat()?;
            imgproc::draw_contours(
                &mut moving,
                &kept,
                -1,
                Scalar::all(255.0),
                imgproc::FILLED,
                imgproc::LINE_8,
                &core::no_array(),
                i32::MAX,
                Point::new(0, 0),
            )?;
            if let Some(zm) = zm {
                let mut inside = Mat::default();
                core::bitwise_and(&moving, &zm.union, &mut inside, &core::no_array())?;
                moving = inside;
                for (zone, m) in zm.zones.iter().zip(&zm.each) {
                    let mut hit = Mat::default();
                    core::bitwise_and(&moving, m, &mut hit, &core::no_array())?;
                    if core::count_non_zero(&hit)? > 0 {
                        result.zones.push(zone.name.clone());
                    }
                }
            }
            let changed = core::count_non_zero(&moving)?;
            result.area = (changed as f64 / region_area as f64).min(1.0) as f32;
            result.intensity = (core::mean(&self.diff, &moving)?[0] / 255.0).clamp(0.0, 1.0) as f32;
            result.boxes = boxes;
        }
        if tone_shift >= s.lighting_step_shift {
            // a lighting step: re-seed rather than crawl (see `lighting_step_shift`)
            self.blurred.convert_to(bg, CV_32F, 1.0, 0.0)?;
        } else {
            imgproc::accumulate_weighted(&self.blurred, bg, s.background_alpha, &core::no_array())?;
        }
        Ok(result)
    }

    fn ensure_zone_masks(&mut self, zones: &[RoiZone], size: Size) -> opencv::Result<()> {
        if self.zone_masks.as_ref().is_some_and(|z| z.size == size && z.zones == zones) {
            return Ok(());
        }
        let mut union = Mat::zeros(size.height, size.width, CV_8UC1)?.to_mat()?;
        let mut each = Vec::with_capacity(zones.len());
        for z in zones {
            let pts: Vector<Point> = z
                .points
                .iter()
                .map(|[x, y]| Point::new((x * size.width as f32).round() as i32, (y * size.height as f32).round() as i32))
                .collect();
            let polys: Vector<Vector<Point>> = Vector::from_iter([pts]);
            let mut m = Mat::zeros(size.height, size.width, CV_8UC1)?.to_mat()?;
            imgproc::fill_poly(&mut m, &polys, Scalar::all(255.0), imgproc::LINE_8, 0, Point::new(0, 0))?;
            imgproc::fill_poly(&mut union, &polys, Scalar::all(255.0), imgproc::LINE_8, 0, Point::new(0, 0))?;
            each.push(m);
        }
        let union_area = core::count_non_zero(&union)?;
        self.zone_masks = Some(ZoneMasks { zones: zones.to_vec(), size, union, union_area, each });
        Ok(())
    }
}

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
                if next.try_send(frame).is_err() {
                    cam.camera.counters.frame_dropped(Stage::Motion);
                }
            }
            // this frame's journey ends here
            _ => frame.counters.frame_processed(),
        }
    }
}
