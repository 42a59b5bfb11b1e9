//! Motion: the frame-differencing detector (`detector.rs`, pure of threads) and the pool of
//! worker threads that runs it for every camera (`pool.rs`, the stage).

pub mod detector; // MotionDetector: background model, tone curve, zones
pub mod pool; // MotionPool: the worker threads, per-camera queues, hand-off to detect

pub use detector::{MotionDetector, MotionResult, MotionSettings, ToneCurve};
pub use pool::{FrameSender, MotionOutput, MotionPool, DETECT_KEYFRAME_INTERVAL, FRAMES_PER_CAMERA_CAP};
