//! Object detection with YOLOv8 (DESIGN.md section 5, detection).
//!
//! So far: the built-in COCO class names, which camera validation already needs.

pub mod classes;
