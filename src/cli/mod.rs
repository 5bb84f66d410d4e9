//! The command line: `keygate [--config PATH] <command>`.
//! Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.

mod audit;
mod check;
mod credits;
mod keys;
mod owners;
mod serve;
mod table;
mod usage;
mod webhooks;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, ConfigError};
use crate::gateway::GatewayError;
use crate::secrets::SecretLoadError;
use crate::service::{ServiceError, Services};
use crate::store::StoreError;

pub use check::route_table;

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
    Serve {
        /// Take the listening sockets over from the running keygate (named by
        /// gateway.pid_file), which then drains and exits: a restart that
        /// drops no connection.
        #[arg(long)]
        upgrade: bool,
    },
    /// Re-read the configuration in the running keygate (as SIGHUP does).
    Reload,
    /// Apply database migrations (idempotent).
    Migrate,
    /// Validate the configuration and print the route table.
    CheckConfig,
    /// Manage API keys.
    #[command(subcommand)]
    Keys(Box<keys::KeysCommand>),
    /// Manage owners: shared limits, metadata, credits, enable/disable.
    #[command(subcommand)]
    Owners(Box<owners::OwnersCommand>),
    /// The audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Usage records.
    #[command(subcommand)]
    Usage(usage::UsageCommand),
    /// The webhook delivery log and redelivery.
    #[command(subcommand)]
    Webhooks(webhooks::WebhooksCommand),
}

/// A failure and the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Bad command-line input; the message says what to type instead.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secret(#[from] SecretLoadError),
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),
    #[error("no running keygate: cannot read the pid file {path}: {source}")]
    PidFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the pid file {0} does not hold a pid")]
    BadPidFile(PathBuf),
    #[error("cannot signal keygate (pid {pid}): {source}")]
    Signal { pid: i32, source: std::io::Error },
    #[error(transparent)]
    Upgrade(#[from] crate::gateway::UpgradeError),
    #[error("upgrade: the socket receiver failed: {0}")]
    Receiver(#[source] tokio::task::JoinError),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) | CliError::Usage(_) => 2,
            CliError::Service(ServiceError::Invalid(_)) => 2,
            _ => 1,
        }
    }
}

/// What a CLI command works with: the services over the configured store.
struct Ctx {
    services: Services,
}

impl Ctx {
    async fn open(config: &Config) -> Result<Ctx, CliError> {
        let secret = crate::secrets::load_hash_secret(&config.store)?;
        let hasher = crate::auth::hash::KeyHasher::new(secret.expose().as_bytes())
            .map_err(SecretLoadError::from)?;
        let stores = crate::store::open(&config.store).await?;
        let clock = crate::clock::Clock::system();
        Ok(Ctx {
            services: Services::new(&stores, hasher, config, clock),
        })
    }
}

fn print_json(v: &impl serde::Serialize) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("keygate: cannot print JSON: {e}"),
    }
}

/// `keygate migrate`: needs no hash secret.
async fn migrate(config: &Config) -> Result<(), CliError> {
    let stores = crate::store::open(&config.store).await?;
    stores.db.migrate().await?;
    println!("migrations applied ({})", stores.db.kind());
    Ok(())
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
        Command::Serve { upgrade } => serve::serve(config, cli.config, upgrade),
        Command::Reload => serve::reload(&config),
        Command::CheckConfig => {
            print!("{}", route_table(&config));
            Ok(())
        }
        Command::Migrate => runtime()?.block_on(migrate(&config)),
        Command::Keys(cmd) => runtime()?.block_on(keys::run(&config, *cmd)),
        Command::Owners(cmd) => runtime()?.block_on(owners::run(&config, *cmd)),
        Command::Audit(cmd) => runtime()?.block_on(audit::run(&config, cmd)),
        Command::Usage(cmd) => runtime()?.block_on(usage::run(&config, cmd)),
        Command::Webhooks(cmd) => runtime()?.block_on(webhooks::run(&config, cmd)),
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("keygate-bg")
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
}
