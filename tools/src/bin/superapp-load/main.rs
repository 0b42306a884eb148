//! `superapp-load`: the load generator and benchmark suite, built on the client
//! SDK and the real protocol. Each scenario is one command that prints a table
//! for people and, with `--json FILE`, writes the result for tools. Load is split
//! over worker processes (this binary again, with a hidden subcommand), because a
//! process here holds at most about 20,000 descriptors.
//!
//! - [`idle`]: memory and CPU per idle authenticated session.
//! - [`direct`]: one-to-one rate and latency, open loop, against the server and a relay.
//! - [`fanout`]: one big group, every member online: send to last delivery.
//! - [`contacts`]: a contact list of thousands of friends, synced whole and by changes.
//! - [`storm`]: a reconnect storm and its resync time.
//! - [`baseline`]: raw SQLite insert rates, the storage ceiling.
//! - [`relay`]: the bare WebSocket relay (the network-stack ceiling).
//! - [`media`]: a large file up and down against `cp`; memory during many uploads.
//! - [`nearby`]: people nearby among many opted-in positions, embedded or on Redis.
//! - [`wallet`]: transfers per second and latency, red-packet grabs on one hot packet and
//!   across many, each exact, beside the raw rate of the same store.
//! - [`hist`], [`procfs`], [`setup`]: histograms, /proc readings, users and workers.

mod baseline;
mod contacts;
mod direct;
mod fanout;
mod hist;
mod idle;
mod media;
mod nearby;
mod procfs;
mod relay;
mod setup;
mod storm;
mod wallet;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Load generator and benchmarks for superapp")]
struct Cli {
    /// Base URL of the server.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Write the result as JSON to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Reuse the users of an earlier run with this id (0 to 9999; default: a
    /// fresh id), to skip registering them again.
    #[arg(long, global = true)]
    run_id: Option<u32>,
    #[command(subcommand)]
    command: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// N idle authenticated sessions: server memory per session, heartbeat CPU.
    Idle(idle::IdleArgs),
    /// M pairs chatting one-to-one at a rate: throughput and latency percentiles.
    Direct(direct::DirectArgs),
    /// One group with every member online: send-to-last-delivery and deliveries per second.
    Fanout(fanout::FanoutArgs),
    /// One user with N friends syncs the contact list: whole, and one change.
    Contacts(contacts::ContactsArgs),
    /// N sessions dropped at once reconnect with jitter: time to resync, peak memory.
    Storm(storm::StormArgs),
    /// Raw SQLite insert rates in the server's durability mode.
    SqliteBaseline(baseline::BaselineArgs),
    /// A large file uploaded and downloaded, against `cp`; server memory during concurrent uploads.
    Media(media::MediaArgs),
    /// People nearby among many opted-in positions: share rate, search latency and throughput.
    Nearby(nearby::NearbyArgs),
    /// Wallet transfers at rates (latency, errors) and red-packet grabs, hot and spread, checked
    /// exact; beside the store's raw rate.
    Wallet(wallet::WalletArgs),
    /// Run the bare relay (started by `direct --relay`).
    Relay {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
    #[command(hide = true)]
    IdleWorker {
        #[arg(long)]
        job: PathBuf,
    },
    #[command(hide = true)]
    DirectWorker {
        #[arg(long)]
        job: PathBuf,
    },
    #[command(hide = true)]
    FanoutWorker {
        #[arg(long)]
        job: PathBuf,
    },
    #[command(hide = true)]
    StormWorker {
        #[arg(long)]
        job: PathBuf,
    },
}

fn read_job<T: serde::de::DeserializeOwned>(path: &PathBuf) -> anyhow::Result<T> {
    Ok(serde_json::from_slice(&std::fs::read(path)?)?)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(id) = cli.run_id {
        let _ = setup::RUN_ID.set(id % 10_000);
    }
    // A fanout worker only reads: one thread per worker process spends less of
    // the CPU it shares with the server than a work-stealing pool would.
    let runtime = match cli.command {
        Scenario::FanoutWorker { .. } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        _ => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
    };
    let server = cli.server.clone();
    let result = runtime.block_on(async move {
        match cli.command {
            Scenario::Idle(args) => idle::run(&server, args).await.map(Some),
            Scenario::Direct(args) => direct::run(&server, args).await.map(Some),
            Scenario::Storm(args) => storm::run(&server, args).await.map(Some),
            Scenario::Fanout(args) => fanout::run(&server, args).await.map(Some),
            Scenario::Contacts(args) => contacts::run(&server, args).await.map(Some),
            Scenario::SqliteBaseline(args) => baseline::run(args).map(Some),
            Scenario::Nearby(args) => nearby::run(args).await.map(Some),
            Scenario::Media(args) => media::run(&server, args).await.map(Some),
            Scenario::Wallet(args) => wallet::run(&server, args).await.map(Some),
            Scenario::Relay { listen } => relay::serve(listen).await.map(|()| None),
            Scenario::IdleWorker { job } => idle::worker(read_job(&job)?).await.map(|()| None),
            Scenario::DirectWorker { job } => direct::worker(read_job(&job)?).await.map(|()| None),
            Scenario::FanoutWorker { job } => fanout::worker(read_job(&job)?).await.map(|()| None),
            Scenario::StormWorker { job } => storm::worker(read_job(&job)?).await.map(|()| None),
        }
    })?;
    if let (Some(path), Some(result)) = (cli.json, result) {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)?;
    }
    Ok(())
}
