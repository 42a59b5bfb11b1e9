//! Start-up: configuration, logging, the service, then wait for SIGINT/SIGTERM and shut down
//! cleanly (exit 0). Start-up errors print one line naming the variable and exit 1.

use analytics_service::config::Config;
use analytics_service::service::Service;

fn main() {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("analytics-service: configuration error: {e}");
            std::process::exit(1);
        }
    };
    analytics_service::logging::init(config.log_level);
    if let Err(e) = run(config) {
        log::error!("start-up failed: {e:#}");
        eprintln!("analytics-service: {e:#}");
        std::process::exit(1);
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    let (sig_tx, sig_rx) = crossbeam_channel::bounded::<()>(1);
    ctrlc::set_handler(move || {
        let _ = sig_tx.try_send(());
    })?;
    log::info!(
        "analytics-service {} starting: API {}:{}, Redis {}:{} db {} stream '{}'",
        env!("CARGO_PKG_VERSION"),
        config.api_host,
        config.api_port,
        config.redis_host,
        config.redis_port,
        config.redis_db,
        config.redis_stream
    );
    let service = Service::start(config)?;
    // Wait for a signal, watching the API: a process whose accept loop died would look alive
    // to a container runtime while nobody can reach it, so exit non-zero and be restarted.
    loop {
        match sig_rx.recv_timeout(std::time::Duration::from_secs(1)) {
            Ok(()) | Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) if !service.api_alive() => {
                log::error!("api: the accept loop has stopped; exiting so that the service is restarted");
                service.shutdown();
                std::process::exit(2);
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
        }
    }
    log::info!("signal received, shutting down");
    service.shutdown();
    Ok(())
}
