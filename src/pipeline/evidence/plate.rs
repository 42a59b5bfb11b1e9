//! [`PlateWriter`]: the plate crop of an `anpr` event, written by the ANPR thread itself before
//! the event leaves it (a plate crop is a few kilobytes and encodes in well under a
//! millisecond, beside a plate read of tens to hundreds), so the event's `plate_image_key` is
//! always there when the consumer reads the event.

use super::EvidenceSettings;
use crate::evidence::image::encode_jpeg;
use crate::logging::RateLimit;
use crate::metrics::Metrics;
use opencv::core::Mat;
use std::sync::Arc;
use std::time::Duration;

/// JPEG quality of plate crops (small, and read by people: kept sharp).
pub const PLATE_QUALITY: i32 = 92;

/// See the module doc. One per ANPR thread (it holds a connection).
pub struct PlateWriter {
    settings: EvidenceSettings,
    metrics: Arc<Metrics>,
    conn: Option<redis::Connection>,
    log: RateLimit,
}

impl PlateWriter {
    pub fn new(settings: EvidenceSettings, metrics: Arc<Metrics>) -> PlateWriter {
        PlateWriter { settings, metrics, conn: None, log: RateLimit::new(Duration::from_secs(10)) }
    }

    /// Writes `crop` as the plate image of event `event_id` of `camera`; its key, or `None`
    /// when it could not be written (logged, rate-limited).
    pub fn write(&mut self, crop: &Mat, camera_id: &str, event_id: &str) -> Option<String> {
        let key = self.settings.keys.plate(camera_id, event_id);
        match self.try_write(crop, &key) {
            Ok(n) => {
                self.metrics.plate_image_written(n);
                Some(key)
            }
            Err(e) => {
                self.conn = None;
                if let Some(held) = self.log.allow() {
                    log::warn!("evidence: plate crop of {camera_id} not kept ({held} more since last report): {e}");
                }
                None
            }
        }
    }

    fn try_write(&mut self, crop: &Mat, key: &str) -> Result<u64, String> {
        let jpeg = encode_jpeg(crop, PLATE_QUALITY).map_err(|e| e.to_string())?;
        if self.conn.is_none() {
            self.conn = Some(self.settings.target.connect(Duration::from_secs(1)).map_err(|e| e.to_string())?);
        }
        let c = self.conn.as_mut().expect("invariant: set above");
        let n = jpeg.len() as u64;
        redis::cmd("SET").arg(key).arg(jpeg).arg("EX").arg(self.settings.ttl.as_secs().max(1)).query::<()>(c).map_err(|e| e.to_string())?;
        Ok(n)
    }
}
