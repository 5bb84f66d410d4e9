//! `keygate serve` and its signals, `keygate serve --upgrade`, `keygate reload`.
//!
//! - SIGTERM: stop accepting, finish what is in flight, flush usage, exit 0.
//!   SIGINT: the same without waiting. A second signal exits at once.
//! - SIGHUP (or `keygate reload`): re-read the configuration file and apply
//!   what a reload can (see [`crate::gateway::Reloader`]).
//! - SIGUSR2 (sent by `serve --upgrade`): hand the listening sockets to the
//!   new process waiting on `gateway.upgrade_socket`, then stop gracefully.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::CliError;
use crate::config::Config;
use crate::gateway::{BuildOptions, Gateway, Listeners, RunningGateway, Stop};

/// What woke the serve loop.
enum Event {
    Stop(Stop),
    Reload,
    Upgrade,
}

struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
    usr2: Signal,
}

impl Signals {
    fn install() -> Result<Signals, CliError> {
        let s = |k| signal(k).map_err(CliError::Runtime);
        Ok(Signals {
            term: s(SignalKind::terminate())?,
            int: s(SignalKind::interrupt())?,
            hup: s(SignalKind::hangup())?,
            usr2: s(SignalKind::user_defined2())?,
        })
    }

    async fn next(&mut self) -> Event {
        tokio::select! {
            _ = self.term.recv() => Event::Stop(Stop::Graceful),
            _ = self.int.recv() => Event::Stop(Stop::Fast),
            _ = self.hup.recv() => Event::Reload,
            _ = self.usr2.recv() => Event::Upgrade,
        }
    }
}

/// Runs until stopped. With `upgrade`, takes the sockets of the running
/// process (named by the pid file) instead of binding them.
pub fn serve(config: Config, path: PathBuf, upgrade: bool) -> Result<(), CliError> {
    crate::telemetry::init(&config.log);
    // Installed before anything can send us SIGHUP/SIGUSR2 (their default kills).
    super::runtime()?.block_on(async move {
        let mut signals = Signals::install()?;
        let running = if upgrade {
            take_over(config.clone()).await?
        } else {
            Gateway::build(config.clone()).await?.start()?
        };
        let pid_file = PidFile::write(&config.gateway.pid_file);
        let a = running.addrs();
        tracing::info!(proxy = %a.proxy, tls = ?a.tls, admin = %a.admin, "keygate is serving");
        let how = serve_until_stopped(&running, &mut signals, &config, &path).await;
        tracing::info!(?how, "shutting down");
        tokio::select! {
            _ = running.stop(how) => {}
            _ = signals.next() => {
                tracing::warn!("second signal: exiting now");
                std::process::exit(1);
            }
        }
        drop(pid_file);
        tracing::info!("stopped");
        Ok(())
    })
}

async fn serve_until_stopped(
    running: &RunningGateway,
    signals: &mut Signals,
    config: &Config,
    path: &Path,
) -> Stop {
    loop {
        match signals.next().await {
            Event::Stop(how) => return how,
            Event::Reload => match running.reload_file(path) {
                Ok(r) if r.restart_only.is_empty() => tracing::info!("configuration reloaded"),
                Ok(r) => tracing::warn!(
                    ignored = ?r.restart_only,
                    "configuration reloaded; these settings changed but need a restart"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "reload refused; the old configuration keeps serving")
                }
            },
            Event::Upgrade => match running.hand_over(&config.gateway.upgrade_socket) {
                Ok(_) => {
                    tracing::info!("handed the listening sockets to the new process");
                    return Stop::Graceful;
                }
                Err(e) => tracing::error!(error = %e, "upgrade failed; still serving"),
            },
        }
    }
}

/// Builds the new gateway first (keys loaded), then asks the old process
/// for its sockets: the old one keeps serving until the new one is ready.
async fn take_over(config: Config) -> Result<RunningGateway, CliError> {
    let old = PidFile::read(&config.gateway.pid_file)?;
    let gateway = Gateway::build_unbound(config.clone(), BuildOptions::default()).await?;
    let receiving = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || Listeners::receive(&config))
    };
    // The receiver binds the socket first; the old process retries its connect.
    tokio::time::sleep(Duration::from_millis(200)).await;
    send(old, libc::SIGUSR2)?;
    let listeners = receiving.await.map_err(CliError::Receiver)??;
    tracing::info!(from = old, "took over the listening sockets");
    Ok(gateway.start_on(listeners)?)
}

/// `keygate reload`: the file is valid (it was loaded to get here); signal
/// the running gateway named by the pid file.
pub fn reload(config: &Config) -> Result<(), CliError> {
    let pid = PidFile::read(&config.gateway.pid_file)?;
    send(pid, libc::SIGHUP)?;
    println!("configuration is valid; sent SIGHUP to keygate (pid {pid})");
    Ok(())
}

fn send(pid: libc::pid_t, sig: libc::c_int) -> Result<(), CliError> {
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(CliError::Signal {
            pid,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// The pid file: written when serving starts, removed at exit if still ours.
struct PidFile(Option<PathBuf>);

impl PidFile {
    fn write(path: &Path) -> PidFile {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        match std::fs::write(path, format!("{}\n", std::process::id())) {
            Ok(()) => PidFile(Some(path.to_owned())),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the pid file; `keygate reload` will not find this process");
                PidFile(None)
            }
        }
    }

    fn read(path: &Path) -> Result<libc::pid_t, CliError> {
        let text = std::fs::read_to_string(path).map_err(|source| CliError::PidFile {
            path: path.to_owned(),
            source,
        })?;
        text.trim()
            .parse()
            .map_err(|_| CliError::BadPidFile(path.to_owned()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let Some(path) = &self.0 else { return };
        let ours =
            std::fs::read_to_string(path).is_ok_and(|t| t.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(path);
        }
    }
}
