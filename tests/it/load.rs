//! Smoke runs of every `superapp-load` scenario with tiny numbers, so the
//! benchmarks cannot rot. They assert that each runs and reports, never timings.

use std::path::PathBuf;
use std::process::Command;

use crate::helpers::spawn_app;

fn load_path() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_superapp")).with_file_name("superapp-load");
    assert!(
        path.exists(),
        "run the tests with `cargo test --workspace` so superapp-load is built"
    );
    path
}

async fn run_load(base: &str, args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("result.json");
    let mut command = Command::new(load_path());
    command
        .args(["--server", base, "--json"])
        .arg(&json)
        .args(args);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "superapp-load {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_benchmark_scenario_runs_end_to_end() {
    let app = spawn_app().await;
    // The server runs inside this test process.
    let pid = std::process::id().to_string();

    let idle = run_load(
        &app.base_url,
        &[
            "idle",
            "--sessions",
            "20",
            "--users",
            "2",
            "--hold",
            "1",
            "--server-pid",
            &pid,
        ],
    )
    .await;
    assert_eq!(idle["sessions"], 20);
    assert!(idle["bytes_per_session"].is_number());

    let direct = run_load(
        &app.base_url,
        &[
            "direct",
            "--pairs",
            "2",
            "--rate",
            "40",
            "--duration",
            "1",
            "--workers",
            "1",
            "--relay",
        ],
    )
    .await;
    assert!(
        direct["sqlite_baseline"]["batched_rows_per_sec"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    for target in ["server", "relay"] {
        let run = &direct[target][0];
        assert!(run["scheduled"].as_u64().unwrap() > 0, "{direct}");
        assert!(run["ack"]["count"].as_u64().unwrap() > 0, "{direct}");
        assert!(run["delivery"]["count"].as_u64().unwrap() > 0, "{direct}");
    }

    let storm = run_load(
        &app.base_url,
        &[
            "storm",
            "--sessions",
            "10",
            "--users",
            "3",
            "--workers",
            "1",
            "--jitter-ms",
            "100",
            "--server-pid",
            &pid,
        ],
    )
    .await;
    assert_eq!(storm["resynced"], 10);

    let fanout = run_load(
        &app.base_url,
        &[
            "fanout",
            "--members",
            "5",
            "--messages",
            "3",
            "--rate",
            "20",
            "--workers",
            "1",
        ],
    )
    .await;
    assert_eq!(fanout["deliveries"], 12, "{fanout}");
    assert_eq!(fanout["send_to_last_delivery"]["count"], 3, "{fanout}");

    let baseline = run_load(
        &app.base_url,
        &["sqlite-baseline", "--rows", "2000", "--single-rows", "20"],
    )
    .await;
    assert!(baseline["batched_rows_per_sec"].as_f64().unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wallet_benchmark_runs_end_to_end_and_its_grabs_are_exact() {
    // The limits opened up as the benchmark's server command opens them.
    let app = crate::helpers::spawn_app_with(|c| {
        c.gateway.user_rate_per_sec = 100_000;
        c.wallet.velocity_burst = 1_000_000;
        c.wallet.velocity_per_sec = 1_000_000;
        c.wallet.daily_out_count = 1_000_000;
        c.wallet.unverified_balance_fen = 100_000_000;
    })
    .await;
    let pid = std::process::id().to_string();
    let wallet = run_load(
        &app.base_url,
        &[
            "wallet",
            "--users",
            "20",
            "--rates",
            "20,40",
            "--secs",
            "1",
            "--group",
            "10",
            "--duplicates",
            "4",
            "--packets",
            "3",
            "--shares",
            "4",
            "--ceiling-clients",
            "4",
            "--ceiling-secs",
            "1",
            "--server-pid",
            &pid,
        ],
    )
    .await;
    let ceiling = &wallet["ceiling"][0];
    assert_eq!(ceiling["store"], "sqlite", "{wallet}");
    assert!(ceiling["transfers"].as_u64().unwrap() > 0, "{wallet}");
    assert_eq!(ceiling["books_sound"], true, "{wallet}");
    for (run, rate) in wallet["transfers"].as_array().unwrap().iter().zip([20, 40]) {
        assert_eq!(run["target_rate"], rate, "{wallet}");
        assert_eq!(run["offered"], rate, "{wallet}");
        assert_eq!(run["ok"], rate, "{wallet}");
        assert_eq!(run["latency"]["count"], rate, "{wallet}");
    }
    let hot = &wallet["hot_packet"];
    assert_eq!(hot["exact"], true, "{wallet}");
    assert_eq!(hot["grabs"], 10, "{wallet}");
    assert_eq!(hot["requests"], 14, "{wallet}");
    // The two duplicates with a new key are refused; the two repeating
    // their key are answered their share again.
    assert_eq!(hot["refusals"]["already_grabbed"], 2, "{wallet}");
    let many = &wallet["many_packets"];
    assert_eq!(many["exact"], true, "{wallet}");
    assert_eq!(many["grabs"], 12, "{wallet}");
    assert!(many["refusals"].as_object().unwrap().is_empty(), "{wallet}");
}
