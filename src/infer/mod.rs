//! Shared inference: ONNX Runtime sessions and the choice of execution provider, the letterbox,
//! YOLO decoding, NMS and box geometry. Used alike by the detect stage (YOLOv8), ANPR (plate
//! detector and OCR) and tracking (IoU); none of it knows about stages, cameras or channels.
//!
//! - `session.rs`: the only file that uses `ort`: the runtime library, [`Device`] -> provider,
//!   [`ModelSession`] (tensor names and shapes checked at load), I/O binding.
//! - `letterbox.rs`: [`Letterbox`], the fit of a frame into the model input, and the pixel copy.
//! - `decode.rs`: pure decode of `[4 + C, N]`, class-aware NMS, IoU, boxes back to the frame.
//! - `precision.rs`: [`PrecisionSetting`] -> the float or the INT8 model (CPU with VNNI), a
//!   testable choice, and [`precision::load_chosen`], which both detectors load through.
//! - `yolo.rs`: [`Yolo`], the YOLOv8 detector: a session, what is read from the model, one
//!   preallocated batch tensor.
//!
//! No global state: the device (and TensorRT's options with it) is passed to every load.
//! Imports nothing of the crate but `events` (box and model types) and `coco` (class names).

pub mod decode; // decode, NMS, IoU, un-letterbox, normalise
pub mod letterbox; // Letterbox: fit, copy into the batch tensor, map back
pub mod precision; // YOLO_PRECISION / ANPR_PLATE_PRECISION: float or the INT8 sibling
pub mod session; // the only file that uses ort
pub mod yolo; // the YOLOv8 model: shapes, names, batch tensor

pub use decode::{iou, RawDetection};
pub use letterbox::Letterbox;
pub use precision::{CpuFeatures, Precision, PrecisionSetting};
pub use session::{Device, InferenceError, ModelSession, Provider, TensorRtOptions};
pub use yolo::{Yolo, YoloInfo};
