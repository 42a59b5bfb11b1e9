//! The fair queue of plate jobs between the track stage and the plate reader: pure, no threads.

use super::{AnprJob, JOBS_PER_CAMERA};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// The fair queue of plate jobs: one small queue per camera, served round-robin, and within a
/// camera the job whose vehicles have been read least goes first. Bounded: `JOBS_PER_CAMERA`
/// per camera, cameras bounded by the registry.
#[derive(Default)]
pub struct FairJobs {
    per_camera: HashMap<Arc<str>, VecDeque<AnprJob>>,
    /// Cameras with jobs, in service order.
    turn: VecDeque<Arc<str>>,
}

impl FairJobs {
    pub fn is_empty(&self) -> bool {
        self.turn.is_empty()
    }

    /// Queues `job`; true when a job had to be dropped to make room (the camera's job whose
    /// vehicles were read most, the oldest among equals).
    pub fn push(&mut self, job: AnprJob, reads: impl Fn(&str) -> usize) -> bool {
        let cam = job.frame.camera_id.clone();
        let q = self.per_camera.entry(cam.clone()).or_default();
        if q.is_empty() {
            self.turn.push_back(cam);
        }
        q.push_back(job);
        if q.len() > JOBS_PER_CAMERA {
            let worst = (0..q.len()).max_by_key(|&i| (job_reads(&q[i], &reads), std::cmp::Reverse(i))).unwrap_or(0);
            q.remove(worst);
            return true;
        }
        false
    }

    /// The next job: the next camera in turn, its least-read job.
    pub fn pop(&mut self, reads: impl Fn(&str) -> usize) -> Option<AnprJob> {
        let cam = self.turn.pop_front()?;
        let q = self.per_camera.get_mut(&cam)?;
        let best = (0..q.len()).min_by_key(|&i| (job_reads(&q[i], &reads), i)).unwrap_or(0);
        let job = q.remove(best);
        if q.is_empty() {
            self.per_camera.remove(&cam);
        } else {
            self.turn.push_back(cam);
        }
        job
    }

    /// Everything queued (shutdown).
    pub fn drain(&mut self) -> Vec<AnprJob> {
        self.turn.clear();
        self.per_camera.drain().flat_map(|(_, q)| q).collect()
    }
}

/// Least reads among a job's tracked vehicles (0 for whole-frame searches).
fn job_reads(job: &AnprJob, reads: &impl Fn(&str) -> usize) -> usize {
    job.vehicles.iter().filter_map(|v| v.track_id.as_deref()).map(reads).min().unwrap_or(0)
}
