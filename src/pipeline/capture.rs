//! Capture: one OS thread per active camera, reading its stream with OpenCV's FFmpeg backend.
//!
//! ```text
//! stream (RTSP over TCP | HTTP | file) -> [capture] -frame_skip/max_fps-> frames(cap 2, newest wins) -> motion
//! ```
//! `frame_skip` and `max_fps` are applied right after `grab()`, before the frame is converted to
//! BGR (`retrieve()`), so skipped frames cost no conversion or copy; with the camera's `decode`
//! budget (`decode.rs`) a connection may decode keyframes only, so the frames it would skip
//! cost no decoding either. A stream that fails to open,
//! ends, or delivers no frame for `STREAM_STALL_TIMEOUT_S` puts the camera in `reconnecting`;
//! it retries with a short exponential backoff (1, 2, 4, 5, 5, ... s), reset as soon as a
//! connection delivers a frame, so a stream that comes back is analysed again within
//! `STREAM_STALL_TIMEOUT_S` + `BACKOFF_MAX` + the open time however often it dropped before
//! (docs/decode.md has the measurements).
//! Capture never waits for downstream: the hand-over queue drops its oldest frame instead.
//!
//! Files (a path or `file://`) play at their own frame rate like a live camera unless
//! `file_realtime` is false (then as fast as they decode, for benchmarks), and start over at the
//! end when `loop_file` is true; otherwise the end of a file is the end of the stream and the
//! camera reconnects (plays it again) after the backoff.

use super::decode::{self, Decoding, KeyframeClock, KeyframeInterval};
use super::frame::{CameraEnded, Frame, InFlight};
use super::motion::FrameSender;
use crate::camera::runtime::{CameraState, StatusWriter};
use crate::camera::url::SourceKind;
use crate::camera::StreamUrl;
use crate::logging::RateLimit;
use crate::metrics::Stage;
use crate::pipeline::PipelineInputs;
use crate::stage::Stop;
use opencv::core::{Mat, Vector};
use opencv::prelude::*;
use opencv::videoio::{self, VideoCapture};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// First reconnect delay; doubles per failure.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest reconnect delay. Short on purpose: a retry is one TCP connect (or one file check),
/// cheap even for many cameras, while every second of backoff is a second a returned stream
/// stays dark. 5 s keeps the worst case of a stream that returns well inside the bound of
/// DESIGN.md section 14 (`STREAM_STALL_TIMEOUT_S` + 10 s): a dead server is noticed at once (the
/// connection closes) or after the stall timeout (it hangs), then the next retry is at most 5 s
/// away. (It was 30 s, reset only after a minute of good frames: a camera that flapped a few
/// times stayed dark up to 30 s after its stream returned.)
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Longest wait for a stream to open.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often input / processed fps are recomputed.
const RATE_WINDOW: Duration = Duration::from_secs(2);
/// Frames a camera may have converted and not yet handed to an inference worker (in the motion
/// stage or waiting in the batcher). While it has that many, a grabbed frame is dropped before
/// `retrieve()` (no colour conversion, no copy, no motion pass, counted as
/// `frames_dropped{stage="capture"}`): when detection is saturated each camera spends CPU only on
/// about the frames the detector can take. One: a camera's next frame is converted as soon as
/// its last one reaches a worker, so it is ready by the camera's next turn, and a frame never
/// waits behind an older one of its camera (6 cameras on 2 cores, saturated: capture-to-stream
/// p50/p99 494/570 ms with two, 265/327 ms with one, at the same frames/s).
pub const MAX_IN_FLIGHT: usize = 1;

/// Why a connection ended.
enum End {
    /// The worker was told to stop.
    Stopped,
    /// The stream failed, ended or stalled: reconnect.
    Failed(String),
    /// The stream cannot be processed as configured (frame size outside the allowed window):
    /// the camera stays in `error` until its configuration changes.
    Refused(String),
    /// The camera's decode budget now asks for other frames (all / keyframes only): open the
    /// stream again at once, with no backoff and no `reconnecting`.
    Switch,
}

/// The camera thread's body. Returns when `stop` fires.
pub fn run(status: StatusWriter, url: StreamUrl, inputs: PipelineInputs, stop: Stop, stall_timeout: Duration) {
    let rt = status.runtime().clone();
    let id = rt.camera_id.clone();
    let frames = inputs.motion.attach(rt.clone());
    // whatever ends this loop, the tracker hears that this generation's tracks are over
    let _ended =
        EndedGuard { tx: inputs.ended.clone(), msg: CameraEnded { camera_id: Arc::from(id.as_str()), generation: status.generation() } };
    let mut backoff = BACKOFF_MIN;
    let mut frame_number = 0u64;
    let mut fail_log = RateLimit::new(Duration::from_secs(30));
    let mut first = true;
    // what this worker knows of the stream's keyframe interval, across reconnects
    let mut keyframes = KeyframeInterval::Unknown;
    let mut switching = false;
    loop {
        if !switching {
            status.set_state(if first { CameraState::Connecting } else { CameraState::Reconnecting });
        }
        first = false;
        let params = rt.params();
        let decoding = decode::choose(&params, keyframes, stall_timeout);
        let captured_before = status.runtime().counters.snapshot().frames_captured;
        let result = match open(&url, stall_timeout, decoding) {
            Ok(cap) => {
                log::info!("capture cam={id}: opened {url}, decoding {}", decoding.as_mode().as_str());
                status.set_state(CameraState::Running);
                status.set_decoding(Some(decoding.as_mode()), None);
                let conn = Connection { decoding, keyframes: &mut keyframes, stall_timeout };
                read_frames(cap, conn, &url, &status, &frames, &stop, &mut frame_number, inputs.max_frame_pixels)
            }
            Err(e) => End::Failed(e),
        };
        status.set_decoding(None, None);
        switching = false;
        match result {
            End::Stopped => break,
            End::Switch => {
                switching = true;
                continue;
            }
            End::Refused(msg) => {
                log::error!("capture cam={id}: {url}: {msg}; the camera stays in error until it is updated");
                status.set_error(CameraState::Error, msg);
                status.set_rates(0.0, 0.0);
                // wait for stop only: retrying would decode the same refused frames again
                stop.wait();
                break;
            }
            End::Failed(msg) => {
                // a connection that delivered frames was a good one: the stream is back, and
                // if it drops again the next try comes soon
                if status.runtime().counters.snapshot().frames_captured > captured_before {
                    backoff = BACKOFF_MIN;
                }
                status.set_error(CameraState::Reconnecting, msg.clone());
                status.set_rates(0.0, 0.0);
                log::debug!("capture cam={id}: retry in {backoff:?}: {msg}");
                if let Some(held) = fail_log.allow() {
                    log::warn!("capture cam={id}: {url} failed, retry in {backoff:?} ({held} more failures since last report): {msg}");
                }
            }
        }
        if stop.wait_timeout(backoff) {
            break;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    log::debug!("capture cam={id}: stopped");
}

impl crate::camera::worker::CaptureLoop for PipelineInputs {
    fn run(&self, status: StatusWriter, url: StreamUrl, stop: Stop) {
        run(status, url, self.clone(), stop, self.stall_timeout)
    }
}

/// Sends [`CameraEnded`] when the capture thread ends, however it ends.
struct EndedGuard {
    tx: crossbeam_channel::Sender<CameraEnded>,
    msg: CameraEnded,
}

impl Drop for EndedGuard {
    fn drop(&mut self) {
        // Block policy (bounded): the track stage drains it at once; if it is gone (shutdown)
        // the send fails and there is nothing left to end.
        let _ = self.tx.send(self.msg.clone());
    }
}

/// Opens the source with FFmpeg (RTSP over TCP is OpenCV's default), the open/read timeouts and
/// the frames `decoding` asks for.
fn open(url: &StreamUrl, stall_timeout: Duration, decoding: Decoding) -> Result<VideoCapture, String> {
    let target = match url.kind() {
        SourceKind::File => url.expose().strip_prefix("file://").unwrap_or(url.expose()).to_string(),
        _ => url.expose().to_string(),
    };
    if url.kind() == SourceKind::File && !std::path::Path::new(&target).is_file() {
        return Err(format!("file not found: {}", url));
    }
    let params = Vector::from_slice(&[
        videoio::CAP_PROP_OPEN_TIMEOUT_MSEC,
        OPEN_TIMEOUT.as_millis() as i32,
        videoio::CAP_PROP_READ_TIMEOUT_MSEC,
        stall_timeout.as_millis().min(i32::MAX as u128) as i32,
    ]);
    // OpenCV/FFmpeg messages may echo the URL: scrub credentials before it goes anywhere
    let network = url.kind() != SourceKind::File;
    let cap = decode::open_with(decoding, network, || VideoCapture::from_file_with_params(&target, videoio::CAP_FFMPEG, &params))
        .map_err(|e| url.scrub(&format!("cannot open: {e}")))?;
    if !cap.is_opened().unwrap_or(false) {
        return Err("cannot open the stream (unreachable, refused, or not a video)".into());
    }
    Ok(cap)
}

/// Paces processed frames to at most `max_fps` per second, on average.
struct Pacer {
    next_due: Option<Instant>,
    /// Admit a frame this fraction of a period early (the average stays exact): keyframes come
    /// about once per period when `auto` chose them, and one a few ms early must not be skipped.
    slack: f64,
}

impl Pacer {
    fn new(slack: f64) -> Pacer {
        Pacer { next_due: None, slack }
    }

    fn admit(&mut self, now: Instant, max_fps: f32) -> bool {
        let period = Duration::from_secs_f64(1.0 / max_fps.max(0.001) as f64);
        match self.next_due {
            Some(due) if now + period.mul_f64(self.slack) < due => false,
            Some(due) => {
                // keep the average exact, but never build up a burst after a pause
                let next = due + period;
                self.next_due = Some(if next + period < now { now + period } else { next });
                true
            }
            None => {
                self.next_due = Some(now + period);
                true
            }
        }
    }
}

/// What one connection decodes, and where it records the keyframe interval it measures.
struct Connection<'a> {
    decoding: Decoding,
    keyframes: &'a mut KeyframeInterval,
    stall_timeout: Duration,
}

/// Reads frames until stop, failure, end, stall or a change of decode budget.
#[allow(clippy::too_many_arguments)]
fn read_frames(
    mut cap: VideoCapture,
    conn: Connection,
    url: &StreamUrl,
    status: &StatusWriter,
    frames: &FrameSender,
    stop: &Stop,
    frame_number: &mut u64,
    max_frame_pixels: u64,
) -> End {
    let rt = status.runtime().clone();
    let counters = rt.counters.clone();
    let camera_id: Arc<str> = Arc::from(rt.camera_id.as_str());
    let generation = status.generation();
    let is_file = url.kind() == SourceKind::File;
    let native_fps = cap.get(videoio::CAP_PROP_FPS).unwrap_or(0.0);
    let frame_period = (native_fps > 0.0 && native_fps < 1000.0).then(|| Duration::from_secs_f64(1.0 / native_fps));
    let keyframes_only = conn.decoding == Decoding::Keyframes;
    let mut play_start = Instant::now();
    let mut played = 0u32;
    // keyframes only: a file plays by its timestamps (POS_MSEC of the first frame played)
    let mut played_from_ms: Option<f64> = None;
    let mut clock = KeyframeClock::default();
    let mut pacer = Pacer::new(if keyframes_only { 0.25 } else { 0.0 });
    let mut rate_at = Instant::now();
    let start = counters.snapshot();
    let (mut rate_captured, mut rate_processed) = (start.frames_captured, start.frames_processed);
    let mut got_frame = false;
    let in_flight = Arc::new(AtomicUsize::new(0));
    loop {
        if stop.is_stopped() {
            return End::Stopped;
        }
        let params = rt.params();
        if decode::choose(&params, *conn.keyframes, conn.stall_timeout) != conn.decoding {
            log::info!("capture cam={}: decode budget changed: opening the stream again", rt.camera_id);
            return End::Switch;
        }
        if is_file && params.file_realtime && !keyframes_only {
            if let Some(p) = frame_period {
                let due = play_start + p * played;
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
        }
        match cap.grab() {
            Ok(true) => {}
            Ok(false) | Err(_) => {
                if is_file && params.loop_file && got_frame {
                    let _ = cap.set(videoio::CAP_PROP_POS_FRAMES, 0.0);
                    play_start = Instant::now();
                    played = 0;
                    played_from_ms = None;
                    got_frame = false;
                    continue;
                }
                return End::Failed(if is_file {
                    "end of file".into()
                } else {
                    "stream ended or stalled (no frame within STREAM_STALL_TIMEOUT_S)".into()
                });
            }
        }
        got_frame = true;
        played += 1;
        // every frame is a keyframe here; otherwise the last packet read says whether it was one
        if keyframes_only || cap.get(videoio::CAP_PROP_LRF_HAS_KEY_FRAME).unwrap_or(0.0) > 0.0 {
            let pos_ms = cap.get(videoio::CAP_PROP_POS_MSEC).unwrap_or(0.0);
            if let Some(iv) = clock.keyframe(pos_ms) {
                *conn.keyframes = KeyframeInterval::Measured(iv);
                status.set_decoding(Some(conn.decoding.as_mode()), Some(iv.as_secs_f32()));
            }
        }
        if keyframes_only {
            let pos_ms = cap.get(videoio::CAP_PROP_POS_MSEC).unwrap_or(0.0);
            if is_file && params.file_realtime {
                // OpenCV 4.6 reports a keyframe whose pts is 0 (the first) or missing (the last,
                // flushed at the end) by its packet's dts, which skipped frames leave wrong: a
                // timestamp that goes back starts the clock again from that frame
                match played_from_ms {
                    Some(from) if pos_ms >= from => {
                        let due = play_start + Duration::from_secs_f64(((pos_ms - from) / 1000.0).min(86_400.0));
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                    }
                    _ => {
                        played_from_ms = Some(pos_ms);
                        play_start = Instant::now();
                    }
                }
            }
        }
        *frame_number += 1;
        counters.frame_captured();
        let now = Instant::now();
        if now.duration_since(rate_at) >= RATE_WINDOW {
            let snap = counters.snapshot();
            let secs = now.duration_since(rate_at).as_secs_f32();
            status.set_rates((snap.frames_captured - rate_captured) as f32 / secs, (snap.frames_processed - rate_processed) as f32 / secs);
            (rate_captured, rate_processed, rate_at) = (snap.frames_captured, snap.frames_processed, now);
        }
        if !frame_number.is_multiple_of(u64::from(params.frame_skip)) || !pacer.admit(now, params.max_fps) {
            counters.frame_skipped();
            continue;
        }
        if in_flight.load(Ordering::Acquire) >= MAX_IN_FLIGHT {
            counters.frame_dropped(Stage::Capture);
            continue;
        }
        let mut image = Mat::default();
        match cap.retrieve(&mut image, 0) {
            Ok(true) if !image.empty() => {}
            _ => {
                counters.frame_skipped();
                continue;
            }
        }
        if let Some(msg) = frame_size_problem(image.cols(), image.rows(), max_frame_pixels) {
            return End::Refused(msg);
        }
        frames.send_newest(Frame {
            camera_id: camera_id.clone(),
            generation,
            params,
            counters: counters.clone(),
            frame_number: *frame_number,
            captured_at: SystemTime::now(),
            captured: now,
            image,
            in_flight: Some(InFlight::take(&in_flight)),
        });
    }
}

/// Smallest frame side the stages accept (the motion detector downscales; YOLO letterboxes).
pub const MIN_FRAME_SIDE: i32 = 32;

/// Why a `w` x `h` frame may not enter the pipeline, if it may not (docs/architecture.md, "The contract in one page").
pub fn frame_size_problem(w: i32, h: i32, max_pixels: u64) -> Option<String> {
    if w < MIN_FRAME_SIDE || h < MIN_FRAME_SIDE {
        return Some(format!("frames of {w}x{h} are smaller than {MIN_FRAME_SIDE}x{MIN_FRAME_SIDE}"));
    }
    let pixels = w as u64 * h as u64;
    (pixels > max_pixels).then(|| format!("frames of {w}x{h} ({pixels} pixels) are larger than MAX_FRAME_PIXELS={max_pixels}"))
}

#[cfg(test)]
mod tests {
    use super::{frame_size_problem, Pacer};

    #[test]
    fn frame_size_window() {
        assert!(frame_size_problem(1920, 1080, 3840 * 2160).is_none());
        assert!(frame_size_problem(3840, 2160, 3840 * 2160).is_none());
        assert!(frame_size_problem(3841, 2160, 3840 * 2160).unwrap().contains("MAX_FRAME_PIXELS"));
        assert!(frame_size_problem(31, 100, 3840 * 2160).unwrap().contains("smaller"));
    }
    use std::time::{Duration, Instant};

    #[test]
    fn pacer_caps_the_average_rate() {
        let mut p = Pacer::new(0.0);
        let t0 = Instant::now();
        // 30 fps input for 10 s, cap 10 fps
        let admitted = (0..300).filter(|i| p.admit(t0 + Duration::from_millis(i * 1000 / 30), 10.0)).count();
        assert!((99..=101).contains(&admitted), "{admitted}");
        // a cap above the input rate admits everything
        let mut p = Pacer::new(0.0);
        let admitted = (0..300).filter(|i| p.admit(t0 + Duration::from_millis(i * 1000 / 30), 60.0)).count();
        assert_eq!(admitted, 300);
    }

    #[test]
    fn pacer_slack_admits_a_keyframe_a_little_early() {
        let t0 = Instant::now();
        // keyframes every 990 ms at max_fps 1: without slack every other one is skipped at first
        let at = |i: u64| t0 + Duration::from_millis(i * 990);
        let mut strict = Pacer::new(0.0);
        let mut slack = Pacer::new(0.25);
        assert!((0..10).filter(|&i| strict.admit(at(i), 1.0)).count() < 10);
        assert_eq!((0..10).filter(|&i| slack.admit(at(i), 1.0)).count(), 10);
        // the average stays capped: keyframes every 500 ms at max_fps 1 admit one in two
        let mut slack = Pacer::new(0.25);
        let admitted = (0..100).filter(|&i| slack.admit(t0 + Duration::from_millis(i * 500), 1.0)).count();
        assert!((50..=51).contains(&admitted), "{admitted}");
    }
}
