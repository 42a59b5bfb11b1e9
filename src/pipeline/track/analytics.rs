//! Zone analytics, pure (docs/architecture.md, "Zone analytics"; docs/events.md): per camera,
//! from each sighting of a tracked object (its class and the bottom-centre of its box), decide
//! - which zones it is in, with inertia (`min_frames` consecutive frames inside to enter,
//!   outside to leave, so a box jittering on a zone's edge does not flicker);
//! - line crossings by direction (`lines`): the point must get [`LINE_BAND`] of the frame past
//!   the line on the other side, so wiggling on the line is no crossing; once per crossing;
//! - `loitering` (inside a zone for `loitering_s`, once per stay);
//! - ground speed in a zone with `distances_m` (the 4-point zone mapped onto a rectangle of the
//!   ground by a perspective transform, the average velocity over the last [`SPEED_WINDOW`]
//!   positions) and `speeding` past `speed_limit_kmh` (once per stay);
//! - the camera's [`Counts`]: occupancy now per zone and class, line totals per class.
//!
//! ```text
//! CameraParams (lines, roi_zones) -> Analytics::configure   (on change; objects keep their zones)
//! (track id, class, foot point, capture time, reported) -> Analytics::observe -> Verdict
//! track ended -> Analytics::forget;  API reset -> Analytics::reset (line totals)
//! Analytics::due_counts(now) -> Some(Counts) when changed and >= COUNTS_EVERY since the last
//! ```
//! No threads, clocks or channels: the track stage feeds it; every rule is unit-tested here.
//! Points are normalised image coordinates (x right, y down), as in the payload.

use crate::camera::payload::convex_quad;
use crate::camera::{CameraParams, CountLine, RoiZone};
use crate::events::{Counts, Direction, InOut, LineCrossing};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How far past a line (fraction of the frame, in normalised coordinates) the point must get
/// before it counts as on that side.
pub const LINE_BAND: f32 = 0.02;
/// Positions averaged for `speed_kmh`.
pub const SPEED_WINDOW: usize = 10;
/// Positions needed before a speed is given at all, and before `speeding` is decided.
const SPEED_MIN_POSITIONS: usize = 3;
const SPEEDING_MIN_POSITIONS: usize = 5;
/// At most one `counts` event per camera this often.
pub const COUNTS_EVERY: Duration = Duration::from_secs(1);

/// Something an object did, beyond entering or leaving a zone.
#[derive(Debug, Clone, PartialEq)]
pub enum Happening {
    LineCross(LineCrossing),
    /// In this zone for its `loitering_s`.
    Loitering(String),
    /// Faster than this zone's `speed_limit_kmh`.
    Speeding(String),
}

/// What the analytics say about one sighting.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    /// The zones it is in (with inertia), in the camera's zone order.
    pub zones: Vec<String>,
    /// Ground speed in a calibrated zone it is in.
    pub speed_kmh: Option<f32>,
    pub happened: Vec<Happening>,
}

/// A zone and, with `distances_m`, its image -> ground (metres) homography.
struct ZoneSpec {
    zone: RoiZone,
    ground: Option<[[f64; 3]; 3]>,
}

/// One object's state in one zone.
#[derive(Debug, Default)]
struct InZone {
    /// Counted as inside (inertia passed).
    inside: bool,
    /// Consecutive frames on the other side of `inside` so far.
    streak: u32,
    /// First frame of the current run of frames inside (the stay's start once `inside`).
    run_since: Option<Instant>,
    stay_since: Option<Instant>,
    loitered: bool,
    sped: bool,
    /// Ground positions (metres) of the last frames inside.
    track: VecDeque<(Instant, [f64; 2])>,
}

/// One object's side of one line: the last position at least [`LINE_BAND`] off it.
#[derive(Debug, Clone, Copy)]
struct Side {
    sign: i8,
    at: [f32; 2],
    dist: f32,
}

#[derive(Debug, Default)]
struct ObjectAnalytics {
    class: String,
    reported: bool,
    /// Seen since the last (re)configuration: the zones of its first sighting count at once
    /// (a confirmed track has already been seen for several frames).
    seen: bool,
    /// Per zone and per line of the camera, by index (cleared on reconfiguration).
    zones: Vec<InZone>,
    lines: Vec<Option<Side>>,
    /// Speed at the last sighting (inside a calibrated zone), for its `end`.
    speed: Option<f32>,
}

/// One camera's zone analytics.
#[derive(Default)]
pub struct Analytics {
    lines: Vec<CountLine>,
    zones: Vec<ZoneSpec>,
    objects: HashMap<u64, ObjectAnalytics>,
    /// line -> class -> in/out since start or reset.
    totals: BTreeMap<String, BTreeMap<String, InOut>>,
    /// What was last published, and when (none yet: the all-zero counts, never).
    published: Option<(Instant, Counts)>,
}

impl Analytics {
    pub fn new(params: &CameraParams) -> Analytics {
        let mut a = Analytics::default();
        a.configure(params);
        a
    }

    /// Whether the camera has anything to analyse (lines or zones).
    pub fn active(&self) -> bool {
        !self.lines.is_empty() || !self.zones.is_empty()
    }

    /// Takes the camera's current lines and zones (cheap when unchanged). On a change, totals
    /// of lines that are gone are dropped, and every object's zones are taken afresh from its
    /// next sighting (no inertia, no spurious leave).
    pub fn configure(&mut self, params: &CameraParams) {
        let same_zones = self.zones.len() == params.roi_zones.len() && self.zones.iter().zip(&params.roi_zones).all(|(a, b)| a.zone == *b);
        if self.lines == params.lines && same_zones {
            return;
        }
        self.lines = params.lines.clone();
        self.zones = params
            .roi_zones
            .iter()
            .map(|z| ZoneSpec { ground: z.distances_m.and_then(|d| ground_homography(&z.points, d)), zone: z.clone() })
            .collect();
        self.totals.retain(|name, _| params.lines.iter().any(|l| &l.name == name));
        for o in self.objects.values_mut() {
            o.seen = false;
            o.zones.clear();
            o.lines.clear();
        }
    }

    /// Zeroes the line totals (`POST .../counts/reset`); occupancy is a state, not a total.
    pub fn reset(&mut self) {
        self.totals.clear();
    }

    /// Forgets an ended track: it leaves every zone's occupancy. Returns its speed at its last
    /// sighting, when that was inside a calibrated zone (its `end` carries it).
    pub fn forget(&mut self, id: u64) -> Option<f32> {
        self.objects.remove(&id).and_then(|o| o.speed)
    }

    /// One sighting of track `id` of class `class`, the bottom-centre of its box at `foot`
    /// (normalised), captured `at`. `reported` says, given the zones it is in now (with
    /// inertia), whether the camera publishes this object: only those are counted and get
    /// happenings.
    pub fn observe(&mut self, id: u64, class: &str, foot: [f32; 2], at: Instant, reported: impl FnOnce(&[String]) -> bool) -> Verdict {
        let o = self.objects.entry(id).or_default();
        if o.class != class {
            o.class = class.to_string();
        }
        let first = !o.seen;
        o.seen = true;
        o.zones.resize_with(self.zones.len(), InZone::default);
        o.lines.resize(self.lines.len(), None);
        let mut v = Verdict::default();
        for (spec, st) in self.zones.iter().zip(o.zones.iter_mut()) {
            let z = &spec.zone;
            let now_in = z.contains(foot[0], foot[1]);
            let need = z.min_frames.unwrap_or(RoiZone::DEFAULT_MIN_FRAMES).max(1);
            if now_in && st.run_since.is_none() {
                st.run_since = Some(at);
            } else if !now_in {
                st.run_since = None;
            }
            if now_in == st.inside {
                st.streak = 0;
            } else {
                st.streak += 1;
                if first || st.streak >= need {
                    st.inside = now_in;
                    st.streak = 0;
                    st.stay_since = if now_in { st.run_since } else { None };
                    st.loitered = false;
                    st.sped = false;
                    st.track.clear();
                }
            }
            if st.inside {
                v.zones.push(z.name.clone());
            }
        }
        o.reported |= reported(&v.zones);
        for (spec, st) in self.zones.iter().zip(o.zones.iter_mut()) {
            let z = &spec.zone;
            if !st.inside {
                continue;
            }
            let now_in = z.contains(foot[0], foot[1]);
            let counted = o.reported && (z.classes.is_empty() || z.classes.iter().any(|c| c == class));
            if let (Some(limit), Some(since), false) = (z.loitering_s, st.stay_since, st.loitered) {
                if counted && at.saturating_duration_since(since).as_secs_f32() >= limit {
                    st.loitered = true;
                    v.happened.push(Happening::Loitering(z.name.clone()));
                }
            }
            if let (Some(h), true) = (&spec.ground, now_in) {
                st.track.push_back((at, apply(h, foot)));
                while st.track.len() > SPEED_WINDOW {
                    st.track.pop_front();
                }
            }
            let Some(kmh) = speed_kmh(&st.track) else { continue };
            v.speed_kmh = v.speed_kmh.or(Some(kmh));
            if let (Some(limit), false) = (z.speed_limit_kmh, st.sped) {
                if counted && st.track.len() >= SPEEDING_MIN_POSITIONS && kmh > limit {
                    st.sped = true;
                    v.happened.push(Happening::Speeding(z.name.clone()));
                }
            }
        }
        for (line, side) in self.lines.iter().zip(o.lines.iter_mut()) {
            if !(line.classes.is_empty() || line.classes.iter().any(|c| c == class)) {
                continue;
            }
            let [p1, p2] = line.points;
            let d = [p2[0] - p1[0], p2[1] - p1[1]];
            let len = (d[0] * d[0] + d[1] * d[1]).sqrt().max(f32::EPSILON);
            // > 0: right of p1 -> p2 as seen on the image (x right, y down)
            let dist = (d[0] * (foot[1] - p1[1]) - d[1] * (foot[0] - p1[0])) / len;
            if dist.abs() < LINE_BAND {
                continue;
            }
            let now = Side { sign: if dist > 0.0 { 1 } else { -1 }, at: foot, dist };
            let before = side.replace(now);
            let Some(before) = before.filter(|b| b.sign != now.sign) else { continue };
            // where the path from the last side to this one meets the line: within the segment?
            let f = before.dist / (before.dist - dist);
            let x = [before.at[0] + (foot[0] - before.at[0]) * f, before.at[1] + (foot[1] - before.at[1]) * f];
            let t = ((x[0] - p1[0]) * d[0] + (x[1] - p1[1]) * d[1]) / (len * len);
            if !(0.0..=1.0).contains(&t) || !o.reported {
                continue;
            }
            let direction = if now.sign > 0 { Direction::In } else { Direction::Out };
            let n = self.totals.entry(line.name.clone()).or_default().entry(class.to_string()).or_default();
            match direction {
                Direction::In => n.into += 1,
                Direction::Out => n.out += 1,
            }
            v.happened.push(Happening::LineCross(LineCrossing { name: line.name.clone(), direction }));
        }
        o.speed = v.speed_kmh;
        v
    }

    /// Occupancy now and line totals. Every zone and line is listed; a class stays listed (at
    /// 0) once it has been published, so a consumer sees the count fall to 0.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for (i, spec) in self.zones.iter().enumerate() {
            let z = &spec.zone;
            let mut by_class: BTreeMap<String, u64> = self
                .published
                .as_ref()
                .and_then(|(_, p)| p.zones.get(&z.name))
                .map(|m| m.keys().map(|k| (k.clone(), 0)).collect())
                .unwrap_or_default();
            for o in self.objects.values() {
                let counted = o.reported && (z.classes.is_empty() || z.classes.contains(&o.class));
                if counted && o.zones.get(i).is_some_and(|s| s.inside) {
                    *by_class.entry(o.class.clone()).or_default() += 1;
                }
            }
            c.zones.insert(z.name.clone(), by_class);
        }
        for l in &self.lines {
            c.lines.insert(l.name.clone(), self.totals.get(&l.name).cloned().unwrap_or_default());
        }
        c
    }

    /// The counts to publish now: when they differ from the last published (at first: from
    /// all zeros) and the last was at least [`COUNTS_EVERY`] ago (or `force`, e.g. the camera
    /// stops). None for a camera without lines and zones.
    pub fn due_counts(&mut self, now: Instant, force: bool) -> Option<Counts> {
        if !self.active() {
            return None;
        }
        let c = self.counts();
        match &self.published {
            Some((_, p)) if *p == c => return None,
            Some((t, _)) if !force && now.saturating_duration_since(*t) < COUNTS_EVERY => return None,
            None if c == self.zero() => return None,
            _ => {}
        }
        self.published = Some((now, c.clone()));
        Some(c)
    }

    /// The all-zero counts of the camera's zones and lines.
    fn zero(&self) -> Counts {
        Counts {
            zones: self.zones.iter().map(|z| (z.zone.name.clone(), BTreeMap::new())).collect(),
            lines: self.lines.iter().map(|l| (l.name.clone(), BTreeMap::new())).collect(),
        }
    }
}

/// Average ground speed over the window: displacement from its first to its last position
/// over the time between them.
fn speed_kmh(track: &VecDeque<(Instant, [f64; 2])>) -> Option<f32> {
    if track.len() < SPEED_MIN_POSITIONS {
        return None;
    }
    let ((t0, a), (t1, b)) = (track.front()?, track.back()?);
    let dt = t1.saturating_duration_since(*t0).as_secs_f64();
    (dt > 0.0).then(|| ((b[0] - a[0]).hypot(b[1] - a[1]) / dt * 3.6) as f32)
}

/// The homography taking a 4-point zone (p1..p4, normalised image coordinates) onto a
/// rectangle of the ground in metres: p1 -> (0, 0), p2 -> (w, 0), p3 -> (w, l), p4 -> (0, l),
/// with w the mean of the sides p1p2 and p3p4 and l the mean of p2p3 and p4p1 (a zone drawn on
/// a rectangular patch of road or floor). None unless 4 points in convex order.
pub fn ground_homography(points: &[[f32; 2]], distances_m: [f32; 4]) -> Option<[[f64; 3]; 3]> {
    use opencv::core::{Mat, Point2f, Vector, DECOMP_LU};
    use opencv::prelude::MatTraitConst;
    if points.len() != 4 || !convex_quad(points) {
        return None;
    }
    let [a, b, c, d] = distances_m;
    let (w, l) = ((a + c) / 2.0, (b + d) / 2.0);
    let src: Vector<Point2f> = points.iter().map(|p| Point2f::new(p[0], p[1])).collect();
    let dst: Vector<Point2f> = [(0.0, 0.0), (w, 0.0), (w, l), (0.0, l)].iter().map(|&(x, y)| Point2f::new(x, y)).collect();
    let m: Mat = opencv::imgproc::get_perspective_transform(&src, &dst, DECOMP_LU).ok()?;
    let mut h = [[0f64; 3]; 3];
    for (r, row) in h.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = *m.at_2d::<f64>(r as i32, c as i32).ok()?;
        }
    }
    h.iter().flatten().all(|v| v.is_finite()).then_some(h)
}

fn apply(h: &[[f64; 3]; 3], p: [f32; 2]) -> [f64; 2] {
    let (x, y) = (p[0] as f64, p[1] as f64);
    let w = h[2][0] * x + h[2][1] * y + h[2][2];
    [(h[0][0] * x + h[0][1] * y + h[0][2]) / w, (h[1][0] * x + h[1][1] * y + h[1][2]) / w]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &str, p1: [f32; 2], p2: [f32; 2]) -> CountLine {
        CountLine { name: name.into(), points: [p1, p2], classes: vec![] }
    }

    fn zone(name: &str, points: &[[f32; 2]]) -> RoiZone {
        RoiZone { name: name.into(), points: points.to_vec(), ..Default::default() }
    }

    fn crossings(v: &Verdict) -> Vec<(String, Direction)> {
        v.happened.iter().filter_map(|h| if let Happening::LineCross(c) = h { Some((c.name.clone(), c.direction)) } else { None }).collect()
    }

    /// Walks track `id` along `xs` (y fixed) at 10 fps from `t0 + start_ms`; returns every verdict.
    fn walk(a: &mut Analytics, id: u64, xs: &[f32], y: f32, t0: Instant, start_ms: u64) -> Vec<Verdict> {
        xs.iter()
            .enumerate()
            .map(|(i, &x)| a.observe(id, "person", [x, y], t0 + Duration::from_millis(start_ms + 100 * i as u64), |_| true))
            .collect()
    }

    /// A line drawn bottom to top: left-to-right on screen is `in`, right-to-left `out`;
    /// jitter on the line (within the 2% band, or back and forth across it inside the band)
    /// counts nothing; a pause on the line then going on counts once.
    #[test]
    fn line_crossing_directions_and_jitter() {
        let params = CameraParams { lines: vec![line("door", [0.5, 1.0], [0.5, 0.0])], ..Default::default() };
        let mut a = Analytics::new(&params);
        let t0 = Instant::now();
        // left to right with a wiggle on the line (0.49..0.51 inside the band)
        let xs = [0.3, 0.4, 0.47, 0.49, 0.51, 0.49, 0.505, 0.495, 0.51, 0.49, 0.6, 0.7];
        let said: Vec<_> = walk(&mut a, 1, &xs, 0.5, t0, 0).iter().flat_map(crossings).collect();
        assert_eq!(said, [("door".to_string(), Direction::In)]);
        // right to left
        let said: Vec<_> = walk(&mut a, 2, &[0.8, 0.6, 0.5, 0.4, 0.2], 0.5, t0, 0).iter().flat_map(crossings).collect();
        assert_eq!(said, [("door".to_string(), Direction::Out)]);
        // standing on the line, then back where it came from: nothing
        let said: Vec<_> = walk(&mut a, 3, &[0.3, 0.45, 0.5, 0.515, 0.5, 0.485, 0.3], 0.5, t0, 0).iter().flat_map(crossings).collect();
        assert!(said.is_empty(), "{said:?}");
        // first seen on the far side only: no crossing (it never was on the other side)
        assert!(walk(&mut a, 4, &[0.7, 0.8], 0.5, t0, 0).iter().all(|v| v.happened.is_empty()));
        let c = a.counts();
        assert_eq!(c.lines["door"]["person"], InOut { into: 1, out: 1 });
        // a wiggle more than the band each way is a real crossing each time
        let said: Vec<_> = walk(&mut a, 5, &[0.4, 0.6, 0.4, 0.6], 0.5, t0, 0).iter().flat_map(crossings).collect();
        assert_eq!(said.len(), 3);
        a.reset();
        assert_eq!(a.counts().lines["door"], BTreeMap::new());
    }

    /// Passing beside the segment (beyond its ends) is no crossing; classes filter.
    #[test]
    fn line_segment_extent_and_classes() {
        let mut l = line("gate", [0.5, 0.4], [0.5, 0.6]);
        l.classes = vec!["car".into()];
        let mut a = Analytics::new(&CameraParams { lines: vec![l], ..Default::default() });
        let t0 = Instant::now();
        // a car crossing x = 0.5 at y = 0.9 (below the segment): nothing
        for (i, x) in [0.3, 0.45, 0.55, 0.7].iter().enumerate() {
            assert!(a.observe(1, "car", [*x, 0.9], t0 + Duration::from_millis(100 * i as u64), |_| true).happened.is_empty());
        }
        // a person through it: not counted; a car through it: `out` (the segment points down,
        // so its right-hand side on screen is the left)
        for (i, x) in [0.3, 0.7].iter().enumerate() {
            assert!(a.observe(2, "person", [*x, 0.5], t0 + Duration::from_millis(100 * i as u64), |_| true).happened.is_empty());
        }
        let said: Vec<_> = [0.3, 0.7]
            .iter()
            .enumerate()
            .flat_map(|(i, x)| crossings(&a.observe(3, "car", [*x, 0.5], t0 + Duration::from_millis(100 * i as u64), |_| true)))
            .collect();
        assert_eq!(said, [("gate".to_string(), Direction::Out)]);
        // an object the camera does not report changes no total
        for (i, x) in [0.7, 0.3].iter().enumerate() {
            assert!(a.observe(4, "car", [*x, 0.5], t0 + Duration::from_millis(100 * i as u64), |_| false).happened.is_empty());
        }
        assert_eq!(a.counts().lines["gate"]["car"], InOut { into: 0, out: 1 });
    }

    /// Inertia: a zone counts as entered after `min_frames` frames inside, left after as many
    /// outside; a one-frame flicker changes nothing; an object first seen inside is inside.
    #[test]
    fn zone_inertia() {
        let mut z = zone("bay", &[[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]);
        z.min_frames = Some(3);
        let mut a = Analytics::new(&CameraParams { roi_zones: vec![z], ..Default::default() });
        let t0 = Instant::now();
        let zones: Vec<usize> =
            walk(&mut a, 1, &[0.4, 0.6, 0.4, 0.6, 0.6, 0.6, 0.4, 0.6, 0.4, 0.4, 0.4], 0.5, t0, 0).iter().map(|v| v.zones.len()).collect();
        assert_eq!(zones, [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0]);
        assert_eq!(walk(&mut a, 2, &[0.7], 0.5, t0, 0)[0].zones, ["bay"]);
    }

    /// Loitering once per stay at `loitering_s`; a quick pass says nothing; a new stay may
    /// loiter again.
    #[test]
    fn loitering_once_per_stay() {
        let mut z = zone("gate", &[[0.4, 0.0], [0.6, 0.0], [0.6, 1.0], [0.4, 1.0]]);
        z.loitering_s = Some(2.0);
        z.min_frames = Some(1);
        let mut a = Analytics::new(&CameraParams { roi_zones: vec![z], ..Default::default() });
        let t0 = Instant::now();
        let mut xs = vec![0.3];
        xs.extend(std::iter::repeat_n(0.5, 50)); // 5 s inside
        xs.push(0.8);
        let at: Vec<usize> = walk(&mut a, 1, &xs, 0.5, t0, 0)
            .iter()
            .enumerate()
            .filter(|(_, v)| v.happened == [Happening::Loitering("gate".into())])
            .map(|(i, _)| i)
            .collect();
        assert_eq!(at, [21], "entered at frame 1, 2 s later is frame 21");
        // a quick pass: nothing
        assert!(walk(&mut a, 2, &[0.3, 0.45, 0.5, 0.55, 0.7], 0.5, t0, 0).iter().all(|v| v.happened.is_empty()));
        // leave and come back: a second stay
        let mut xs = vec![0.5; 25];
        xs.extend([0.8, 0.8]);
        xs.extend([0.5; 25]);
        assert_eq!(walk(&mut a, 3, &xs, 0.5, t0, 0).iter().filter(|v| !v.happened.is_empty()).count(), 2);
    }

    /// Speed by the perspective transform: a trapezoid seen in perspective that is a 10 m x
    /// 40 m rectangle on the road; moving at constant ground speed gives that speed anywhere in
    /// it; `speeding` once, only past the limit.
    #[test]
    fn speed_through_a_perspective_zone() {
        let pts = [[0.3, 0.2], [0.7, 0.2], [0.9, 0.9], [0.1, 0.9]];
        let h = ground_homography(&pts, [10.0, 40.0, 10.0, 40.0]).unwrap();
        // invert by sampling: find image points of ground positions along the road's length
        let inv = invert(&h);
        let mut z = zone("road", &pts);
        z.distances_m = Some([10.0, 40.0, 10.0, 40.0]);
        z.speed_limit_kmh = Some(50.0);
        z.min_frames = Some(1);
        let mut a = Analytics::new(&CameraParams { roi_zones: vec![z], ..Default::default() });
        let t0 = Instant::now();
        let drive = |a: &mut Analytics, id: u64, kmh: f64| {
            let v = kmh / 3.6;
            let mut out = Vec::new();
            for i in 0..15 {
                let y = 2.0 + v * 0.1 * i as f64; // metres along the 40 m road, 10 fps
                let p = apply(&inv, [5.0, y as f32]);
                out.push(a.observe(id, "car", [p[0] as f32, p[1] as f32], t0 + Duration::from_millis(100 * i), |_| true));
            }
            out
        };
        let fast = drive(&mut a, 1, 72.0);
        let last = fast.last().unwrap().speed_kmh.unwrap();
        assert!((last - 72.0).abs() < 0.5, "{last}");
        assert_eq!(fast.iter().filter(|v| v.happened == [Happening::Speeding("road".into())]).count(), 1);
        let slow = drive(&mut a, 2, 30.0);
        assert!((slow.last().unwrap().speed_kmh.unwrap() - 30.0).abs() < 0.5);
        assert!(slow.iter().all(|v| v.happened.is_empty()));
        assert!(ground_homography(&[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [1.0; 4]).is_none(), "crossed sides");
    }

    /// Occupancy counts only reported objects of the zone's classes; counts are due on a
    /// change, at most once a second, and a class stays listed at 0 after it leaves.
    #[test]
    fn occupancy_and_counts_rate() {
        let mut z = zone("park", &[[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]);
        z.classes = vec!["car".into()];
        let mut a = Analytics::new(&CameraParams { roi_zones: vec![z], ..Default::default() });
        let t0 = Instant::now();
        assert_eq!(a.due_counts(t0, false), None, "all zero: nothing to say");
        a.observe(1, "car", [0.2, 0.5], t0, |_| true);
        a.observe(2, "car", [0.3, 0.5], t0, |_| true);
        a.observe(3, "person", [0.3, 0.5], t0, |_| true);
        a.observe(4, "car", [0.3, 0.6], t0, |_| false);
        let c = a.due_counts(t0, false).unwrap();
        assert_eq!(c.zones["park"], BTreeMap::from([("car".to_string(), 2)]));
        a.forget(1);
        assert_eq!(a.due_counts(t0 + Duration::from_millis(500), false), None, "not within a second");
        assert_eq!(a.due_counts(t0 + Duration::from_millis(1000), false).unwrap().zones["park"]["car"], 1);
        a.forget(2);
        assert_eq!(a.due_counts(t0 + Duration::from_millis(1100), true).unwrap().zones["park"]["car"], 0);
        assert_eq!(a.due_counts(t0 + Duration::from_millis(3000), false), None, "unchanged");
    }

    fn invert(h: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
        let m = |r: usize, c: usize| h[r % 3][c % 3];
        let mut inv = [[0.0; 3]; 3];
        for (r, row) in inv.iter_mut().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = m(c + 1, r + 1) * m(c + 2, r + 2) - m(c + 1, r + 2) * m(c + 2, r + 1);
            }
        }
        inv
    }
}
