//! Stage threads, one way: every long-lived thread of the service is started by
//! [`StageThread::spawn`] (named, with a heartbeat in the [`supervise::Supervisor`]), a stage
//! hands back one [`StageHandle`] `{ name, joins }`, and a thread that must be told to stop
//! gets a [`Stop`] from the owner's [`StopSender`] (`stop.rs`, mini-redis's `Shutdown`).
//! `Pipeline::shutdown` joins the stages in one place; a panic in a thread is logged with its
//! name and never stops the others' shutdown.
//!
//! Used by `pipeline` (the stages) and `cluster` (its coordinator thread), neither of which
//! imports the other.

mod stop;
pub mod supervise; // heartbeats: dead or stalled stages show in health

pub use stop::{Stop, StopSender};

/// One stage thread, named for `top -H` and logs, with a heartbeat in the service's
/// [`supervise::Supervisor`]. `join` waits for it and logs a panic with the thread's name
/// instead of propagating it, so shutdown goes on with the other stages.
pub struct StageThread(std::thread::JoinHandle<()>);

impl StageThread {
    pub fn spawn(name: &str, supervisor: &supervise::Supervisor, body: impl FnOnce() + Send + 'static) -> std::io::Result<Self> {
        let beat = supervisor.register(name);
        let sup_enter = {
            let beat = beat.clone();
            move || {
                let _ended = supervise::EndGuard(beat.clone());
                supervise::Supervisor::enter_current(&beat);
                body();
            }
        };
        std::thread::Builder::new().name(name.to_string()).spawn(sup_enter).map(StageThread)
    }

    pub fn join(self) {
        let name = self.0.thread().name().unwrap_or("stage").to_string();
        if self.0.join().is_err() {
            log::error!("{name}: thread panicked");
        }
    }
}

/// What every stage's `spawn` returns: its name and its threads. Joining waits for all of them
/// (each panic logged); how a stage is told to end (its [`Stop`], or its input disconnecting)
/// is the stage's own business, written in its module header.
pub struct StageHandle {
    pub name: &'static str,
    joins: Vec<StageThread>,
}

impl StageHandle {
    pub fn new(name: &'static str, joins: Vec<StageThread>) -> StageHandle {
        StageHandle { name, joins }
    }

    /// Waits for every thread of the stage.
    pub fn join(self) {
        log::debug!("shutdown: joining {}", self.name);
        for j in self.joins {
            j.join();
        }
    }
}
