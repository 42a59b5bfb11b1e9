//! Decode budget (DESIGN.md section 14): which frames of a camera's stream capture decodes,
//! and how it asks OpenCV's FFmpeg backend for keyframes only.
//!
//! A camera analysed at 1 fps of a 25 fps stream decodes 25 frames to use one. H.264/H.265
//! decoders can skip every frame but the keyframes (FFmpeg's `skip_frame = AVDISCARD_NONKEY`):
//! the other frames' packets are still read and parsed, but not decoded. OpenCV 4.6's FFmpeg
//! backend has no per-capture property for that; it reads the process-wide environment
//! variable `OPENCV_FFMPEG_CAPTURE_OPTIONS` (`key;value|key;value`) into the dictionary of each
//! `open()`, and its `avdiscard` key sets the decoder's `skip_frame` (`nonkey`: keyframes
//! only). So [`open_with`] sets that variable for each capture `open()` and puts the previous
//! value back, under a mutex that every capture `open()` takes: each open sees exactly its own
//! options. The mutex costs no concurrency, since OpenCV 4.6 holds a global lock for the whole
//! of `CvCapture_FFMPEG::open` anyway.
//!
//! That global lock is also why network opens get `fpsprobesize;0`: without it FFmpeg's
//! `avformat_find_stream_info` reads about 20 frames of an RTSP stream to estimate its frame
//! rate (2.2 s for a 10 fps camera, 0.9 s at 25 fps, measured on loopback) while every other
//! camera's open waits; with it an open takes 0.1-0.2 s and the frame rate still comes from
//! the stream's timing. After a server restart, three cameras were back 6.2 / 8.4 / 10.6 s
//! later, one open after the other; 64 would have queued for over two minutes. Other code reading the environment at
//! that moment (ONNX Runtime, OpenCV elsewhere) sees the old or the new value, never a torn
//! one: glibc's `setenv` never frees a string it handed out. (Alternatives looked at: `grab()`
//! without `retrieve()` still decodes in 4.6; OpenCV's demuxer-only mode gives packets but no
//! decoder for the keyframes; the GStreamer backend would change every camera's capture path
//! and its error handling for this one knob.)
//!
//! Keyframes only changes what is analysed: at most one frame per keyframe interval (typically
//! 1-4 s on IP cameras). `auto` therefore chooses it only where nothing is lost: when
//! `max_fps` is at or below the stream's keyframe rate and `frame_skip` is 1. The keyframe
//! interval is measured while the stream plays: decoding everything, from the key flag of the
//! last packet read (`CAP_PROP_LRF_HAS_KEY_FRAME`) and the frames' timestamps; decoding
//! keyframes only, from the timestamps of the keyframes. So `auto` opens a stream decoding
//! everything, and opens it again with keyframes only once it has measured that they suffice
//! (and back, should the stream's keyframes become rarer or `max_fps` rise).

use crate::camera::payload::{CameraParams, DecodeMode};
use std::time::Duration;

/// The environment variable OpenCV's FFmpeg backend reads on each capture `open()`.
pub const CAPTURE_OPTIONS_VAR: &str = "OPENCV_FFMPEG_CAPTURE_OPTIONS";
/// What OpenCV 4.6 uses when the variable is unset (RTSP over TCP first): kept when we set it.
const OPENCV_DEFAULT_OPTIONS: &str = "rtsp_flags;prefer_tcp";
/// `auto` takes keyframes when `max_fps` x interval is at most this: timestamps jitter, and a
/// 1 fps camera on a 1 s GOP must not flip to decoding everything for a 1.01 s measurement.
const AUTO_TOLERANCE: f32 = 1.05;
/// Keyframe intervals averaged into the measurement.
const INTERVALS: u32 = 2;
/// Shorter gaps between two keyframe sightings are not intervals: decoding everything, the
/// same key packet can be seen on two frames (the decoder had a second frame ready); and an
/// all-intra stream, whose every frame is a keyframe, gains nothing from skipping.
const MIN_INTERVAL_MS: f64 = 100.0;

/// What one connection decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoding {
    All,
    Keyframes,
}

impl Decoding {
    /// As the API shows it (`decoding`).
    pub fn as_mode(self) -> DecodeMode {
        match self {
            Decoding::All => DecodeMode::All,
            Decoding::Keyframes => DecodeMode::Keyframes,
        }
    }
}

/// What a camera's worker knows of its stream's keyframe interval (kept across reconnects).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyframeInterval {
    /// Not measured yet (or an all-intra stream): `auto` decodes everything.
    Unknown,
    Measured(Duration),
}

/// What `params` asks of a connection, given what is known of the stream.
pub fn choose(params: &CameraParams, known: KeyframeInterval, stall_timeout: Duration) -> Decoding {
    match params.decode {
        DecodeMode::All => Decoding::All,
        DecodeMode::Keyframes => Decoding::Keyframes,
        DecodeMode::Auto if params.frame_skip != 1 => Decoding::All,
        DecodeMode::Auto => match known {
            KeyframeInterval::Unknown => Decoding::All,
            // the interval must also stay well inside the stall timeout: grab() waits for the
            // next keyframe, and no frame within the timeout is a dead stream
            KeyframeInterval::Measured(iv) if iv * 2 <= stall_timeout && params.max_fps * iv.as_secs_f32() <= AUTO_TOLERANCE => {
                Decoding::Keyframes
            }
            KeyframeInterval::Measured(_) => Decoding::All,
        },
    }
}

/// Measures the keyframe interval from the timestamps of the keyframes a connection sees.
#[derive(Debug, Default)]
pub struct KeyframeClock {
    last_ms: Option<f64>,
    sum_ms: f64,
    n: u32,
}

impl KeyframeClock {
    /// Adds the timestamp (ms, `CAP_PROP_POS_MSEC`) of a keyframe just seen; returns the
    /// interval once `INTERVALS` of them are measured (then again every `INTERVALS`).
    pub fn keyframe(&mut self, pos_ms: f64) -> Option<Duration> {
        if let Some(last) = self.last_ms {
            if (0.0..MIN_INTERVAL_MS).contains(&(pos_ms - last)) {
                return None;
            }
        }
        let last = self.last_ms.replace(pos_ms);
        let dt = pos_ms - last?;
        // a file that starts over, or a timestamp jump: start measuring again
        if !(MIN_INTERVAL_MS..=600_000.0).contains(&dt) {
            (self.sum_ms, self.n) = (0.0, 0);
            return None;
        }
        self.sum_ms += dt;
        self.n += 1;
        (self.n >= INTERVALS).then(|| {
            let iv = Duration::from_secs_f64(self.sum_ms / self.n as f64 / 1000.0);
            (self.sum_ms, self.n) = (0.0, 0);
            iv
        })
    }
}

/// Serialises capture opens while one of them changes `OPENCV_FFMPEG_CAPTURE_OPTIONS`.
static OPEN_LOCK: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// Runs `open` (a `VideoCapture` open) with the FFmpeg options `decoding` needs, and the fast
/// stream probe for a `network` source.
pub fn open_with<T>(decoding: Decoding, network: bool, open: impl FnOnce() -> T) -> T {
    let _one_at_a_time = OPEN_LOCK.lock();
    if decoding == Decoding::All && !network {
        return open();
    }
    let before = std::env::var_os(CAPTURE_OPTIONS_VAR);
    let base = before.as_ref().map(|v| v.to_string_lossy().into_owned()).unwrap_or_else(|| OPENCV_DEFAULT_OPTIONS.into());
    // restored however `open` ends
    let _restore = Restore(before);
    std::env::set_var(CAPTURE_OPTIONS_VAR, capture_options(&base, decoding, network));
    open()
}

/// The capture options: the user's (or OpenCV's default), after our fast probe (so a user's
/// `fpsprobesize` wins: a later key replaces an earlier one) and before `avdiscard`.
fn capture_options(base: &str, decoding: Decoding, network: bool) -> String {
    let mut parts = Vec::new();
    if network {
        parts.push("fpsprobesize;0");
    }
    if !base.trim().is_empty() {
        parts.push(base);
    }
    if decoding == Decoding::Keyframes {
        parts.push("avdiscard;nonkey");
    }
    parts.join("|")
}

/// Puts `OPENCV_FFMPEG_CAPTURE_OPTIONS` back as it was.
struct Restore(Option<std::ffi::OsString>);

impl Drop for Restore {
    fn drop(&mut self) {
        match &self.0 {
            Some(v) => std::env::set_var(CAPTURE_OPTIONS_VAR, v),
            None => std::env::remove_var(CAPTURE_OPTIONS_VAR),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(decode: DecodeMode, max_fps: f32) -> CameraParams {
        CameraParams { decode, max_fps, ..Default::default() }
    }
    const STALL: Duration = Duration::from_secs(20);
    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn auto_takes_keyframes_only_when_nothing_is_lost() {
        use KeyframeInterval::*;
        assert_eq!(choose(&p(DecodeMode::All, 1.0), Measured(SEC), STALL), Decoding::All);
        assert_eq!(choose(&p(DecodeMode::Keyframes, 30.0), Unknown, STALL), Decoding::Keyframes);
        // everything until the interval is measured
        assert_eq!(choose(&p(DecodeMode::Auto, 1.0), Unknown, STALL), Decoding::All);
        // at or below the keyframe rate (with jitter), not above
        assert_eq!(choose(&p(DecodeMode::Auto, 1.0), Measured(Duration::from_millis(1030)), STALL), Decoding::Keyframes);
        assert_eq!(choose(&p(DecodeMode::Auto, 0.5), Measured(2 * SEC), STALL), Decoding::Keyframes);
        assert_eq!(choose(&p(DecodeMode::Auto, 2.0), Measured(SEC), STALL), Decoding::All);
        // keyframes too rare for the stall timeout, or frame_skip asked for
        assert_eq!(choose(&p(DecodeMode::Auto, 0.05), Measured(12 * SEC), STALL), Decoding::All);
        let skip = CameraParams { frame_skip: 2, ..p(DecodeMode::Auto, 1.0) };
        assert_eq!(choose(&skip, Measured(SEC), STALL), Decoding::All);
    }

    #[test]
    fn keyframe_clock_averages_and_restarts_on_jumps() {
        let mut c = KeyframeClock::default();
        assert_eq!(c.keyframe(0.0), None);
        assert_eq!(c.keyframe(1000.0), None);
        // the same key packet seen again a frame later is no interval
        assert_eq!(c.keyframe(1040.0), None);
        assert_eq!(c.keyframe(2040.0), Some(Duration::from_millis(1020)));
        // the file starts over: no negative interval
        assert_eq!(c.keyframe(0.0), None);
        assert_eq!(c.keyframe(2000.0), None);
        assert_eq!(c.keyframe(4000.0), Some(2 * SEC));
    }

    #[test]
    fn options_keep_the_users_and_opencvs_defaults() {
        let tcp = "rtsp_flags;prefer_tcp";
        assert_eq!(capture_options(tcp, Decoding::Keyframes, true), "fpsprobesize;0|rtsp_flags;prefer_tcp|avdiscard;nonkey");
        assert_eq!(capture_options(tcp, Decoding::All, true), "fpsprobesize;0|rtsp_flags;prefer_tcp");
        assert_eq!(capture_options("", Decoding::Keyframes, false), "avdiscard;nonkey");
        // restored after the open, also when it was unset
        let var = std::env::var_os(CAPTURE_OPTIONS_VAR);
        let seen = open_with(Decoding::Keyframes, false, || std::env::var(CAPTURE_OPTIONS_VAR).unwrap());
        assert!(seen.ends_with("avdiscard;nonkey"), "{seen}");
        assert_eq!(std::env::var_os(CAPTURE_OPTIONS_VAR), var);
        assert_eq!(open_with(Decoding::All, false, || std::env::var_os(CAPTURE_OPTIONS_VAR)), var);
    }
}
