//! The command line: `keygate [--config PATH] <command>`.
//! Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, ConfigError};
use crate::gateway::{Gateway, GatewayError};

#[derive(Debug, Parser)]
#[command(name = "keygate", version, about = "API-key gateway on Pingora")]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, env = config::env::CONFIG, default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy, the admin API and the background workers.
    Serve,
    /// Validate the configuration and print the route table.
    CheckConfig,
}

/// A failure and the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error("{0}")]
    Runtime(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) | CliError::Usage(_) => 2,
            CliError::Gateway(_) | CliError::Runtime(_) => 1,
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keygate: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

pub fn run(cli: Cli) -> Result<(), CliError> {
    let config = Config::load(&cli.config)?;
    match cli.command {
        Command::Serve => serve(config),
        Command::CheckConfig => {
            print!("{}", route_table(&config));
            Ok(())
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("keygate-bg")
        .enable_all()
        .build()
        .map_err(|e| CliError::Runtime(format!("cannot start runtime: {e}")))
}

fn serve(config: Config) -> Result<(), CliError> {
    crate::telemetry::init(&config.log);
    runtime()?.block_on(async move {
        let gateway = Gateway::build(config).await?;
        let running = gateway.start()?;
        tracing::info!(proxy = %running.proxy_addr(), admin = %running.admin_addr(), "keygate is serving");
        let how = signals::first().await;
        tracing::info!(?how, "shutting down");
        tokio::select! {
            _ = running.stop(how) => {}
            _ = signals::first() => {
                tracing::warn!("second signal: exiting now");
                std::process::exit(1);
            }
        }
        tracing::info!("stopped");
        Ok(())
    })
}

mod signals {
    use tokio::signal::unix::{SignalKind, signal};

    use crate::gateway::Stop;

    /// SIGTERM asks for a graceful stop, SIGINT for a fast one.
    pub async fn first() -> Stop {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            // Without handlers the default action (exit) applies; never return.
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => Stop::Graceful,
            _ = int.recv() => Stop::Fast,
        }
    }
}

/// The validated route table as `check-config` prints it.
pub fn route_table(c: &Config) -> String {
    let mut rows = vec![[
        "ROUTE".to_string(),
        "HOST".into(),
        "PATH".into(),
        "METHODS".into(),
        "AUTH".into(),
        "SCOPES".into(),
        "LIMITS".into(),
        "UPSTREAM".into(),
    ]];
    for r in &c.routes {
        let up = &c.upstreams[r.upstream];
        rows.push([
            r.name.clone(),
            r.host.clone().unwrap_or_else(|| "*".into()),
            r.path_prefix.clone(),
            if r.methods.is_empty() {
                "*".into()
            } else {
                r.methods
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            },
            match r.auth {
                config::AuthMode::Required => "required".into(),
                config::AuthMode::Public => "public".into(),
            },
            if r.scopes.is_empty() {
                "-".into()
            } else {
                r.scopes.join(",")
            },
            if r.rate_limits.is_empty() {
                "-".into()
            } else {
                r.rate_limits
                    .iter()
                    .map(|(w, n)| format!("{n}/{w}"))
                    .collect::<Vec<_>>()
                    .join(",")
            },
            format!("{} ({})", up.name, up.servers.join(" ")),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "{} route(s), {} upstream(s); proxy on {}, admin on {}\n",
        c.routes.len(),
        c.upstreams.len(),
        c.gateway.listen,
        c.admin.listen
    ));
    out
}
