//! The one stop signal of every thread that must be told to stop (mini-redis's `Shutdown`, on
//! crossbeam): the owner holds a [`StopSender`]; each thread holds a [`Stop`] made from it.
//! Firing the signal, or dropping it, disconnects a channel that nothing is ever sent on, so
//! every [`Stop`] sees it at once, in a `select!` (through [`Stop::receiver`]), a poll
//! ([`Stop::is_stopped`]) or a wait ([`Stop::wait_timeout`]). Stages that only transform their
//! input do not take one: they end when their input disconnects, and so does the next one.

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::Duration;

/// The owner's side. Dropping it stops too, so a panic on the owner's side never leaves a
/// thread running for ever.
#[derive(Debug)]
pub struct StopSender {
    tx: Option<Sender<()>>,
    rx: Receiver<()>,
}

/// A thread's side: cheap to clone, one per thread.
#[derive(Debug, Clone)]
pub struct Stop {
    rx: Receiver<()>,
}

impl StopSender {
    pub fn new() -> StopSender {
        let (tx, rx) = bounded(0);
        StopSender { tx: Some(tx), rx }
    }

    /// A [`Stop`] for one more thread.
    pub fn subscribe(&self) -> Stop {
        Stop { rx: self.rx.clone() }
    }

    /// Stops every [`Stop`] made from this signal (idempotent).
    pub fn fire(&mut self) {
        self.tx.take();
    }
}

impl Default for StopSender {
    fn default() -> Self {
        StopSender::new()
    }
}

impl Stop {
    /// Whether the signal has fired.
    pub fn is_stopped(&self) -> bool {
        self.rx.try_recv() == Err(TryRecvError::Disconnected)
    }

    /// Waits up to `d` for the signal; true if it fired.
    pub fn wait_timeout(&self, d: Duration) -> bool {
        self.rx.recv_timeout(d) == Err(RecvTimeoutError::Disconnected)
    }

    /// Waits for the signal.
    pub fn wait(&self) {
        let _ = self.rx.recv();
    }

    /// For `select!`: ready (with an error) once the signal has fired, never before.
    pub fn receiver(&self) -> &Receiver<()> {
        &self.rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subscriber sees one firing; dropping the signal fires it too.
    #[test]
    fn fires_for_every_subscriber() {
        let mut s = StopSender::new();
        let (a, b) = (s.subscribe(), s.subscribe());
        assert!(!a.is_stopped() && !b.wait_timeout(Duration::from_millis(1)));
        s.fire();
        assert!(a.is_stopped() && b.wait_timeout(Duration::from_secs(1)));
        let s2 = StopSender::new();
        let c = s2.subscribe();
        drop(s2);
        assert!(c.is_stopped());
    }
}
