//! `superapp`: parses the command line, loads the configuration, builds the
//! application and runs it until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use superapp::Application;
use superapp::config::{Config, Role};
use superapp_kit::secret::Secret;

#[derive(Parser)]
#[command(version, about = "Self-hostable backend for a WeChat-style super-app")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default command).
    Serve(ServeArgs),
    /// Print a configuration file with every key at its default.
    ConfigExample,
    /// Print the public key that verifies this core's access tokens: the value
    /// of a gateway's auth.token_public_key.
    TokenPublicKey(KeyArgs),
    /// The wallet's maintenance commands.
    #[command(subcommand)]
    Wallet(WalletCommand),
}

#[derive(Subcommand)]
enum WalletCommand {
    /// Check the ledger: the sum over all accounts is zero, every balance
    /// matches its entries, no wallet is below zero, every provider order
    /// has the entries it should. Exits 1 on any mismatch.
    Reconcile(KeyArgs),
}

#[derive(clap::Args)]
struct KeyArgs {
    /// The core's TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The core's data directory (where token.key and wallet.db are);
    /// overrides server.data_dir.
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    /// A TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen address; overrides server.listen. Port 0 picks a free port.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory; overrides server.data_dir.
    #[arg(long)]
    data: Option<PathBuf>,
    /// What this process runs: all (default), gateway or core; overrides server.role.
    #[arg(long, value_parser = parse_role)]
    role: Option<Role>,
    /// Redis URL (redis://host:port/); overrides redis.url.
    #[arg(long)]
    redis: Option<String>,
}

fn parse_role(s: &str) -> Result<Role, String> {
    match s {
        "all" => Ok(Role::All),
        "gateway" => Ok(Role::Gateway),
        "core" => Ok(Role::Core),
        other => Err(format!("unknown role {other:?}: all, gateway or core")),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::ConfigExample) => {
            print!("{}", Config::example_toml());
            return Ok(());
        }
        Some(Command::TokenPublicKey(args)) => {
            let mut config = Config::load(args.config.as_deref())?;
            if let Some(data) = args.data {
                config.server.data_dir = data;
            }
            println!("{}", superapp::token_public_key(&config)?);
            return Ok(());
        }
        Some(Command::Wallet(WalletCommand::Reconcile(args))) => {
            let mut config = Config::load(args.config.as_deref())?;
            if let Some(data) = args.data {
                config.server.data_dir = data;
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            let report = runtime.block_on(superapp::reconcile_wallet(&config))?;
            println!(
                "{} accounts, {} orders; wallets hold {} fen; all accounts sum to {} fen",
                report.accounts, report.orders, report.wallets, report.total
            );
            for mismatch in &report.mismatches {
                println!("MISMATCH {mismatch}");
            }
            if !report.is_clean() {
                std::process::exit(1);
            }
            println!("the ledger reconciles");
            return Ok(());
        }
        Some(Command::Serve(args)) => args,
        None => ServeArgs::default(),
    };
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(data) = args.data {
        config.server.data_dir = data;
    }
    if let Some(role) = args.role {
        config.server.role = role;
    }
    if let Some(url) = args.redis {
        config.redis.url = Some(Secret::new(url));
    }
    config.validate()?;
    superapp::telemetry::init(&config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "starting superapp");
    let app = Application::build(config).await?;
    let shutdown = app.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        shutdown.cancel();
    });
    app.run().await
}

/// SIGTERM or Ctrl-C, handled here and nowhere else.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
