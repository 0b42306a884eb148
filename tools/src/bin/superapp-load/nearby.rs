//! People nearby among many opted-in positions, in this process: the account
//! room's `Nearby` over a SQLite account store of its own and the index of a
//! tier (in memory, or Redis GEO with `--redis`). Registers the users
//! straight into the store (no password hashing), shares one position each,
//! spread uniformly over a square around Shanghai's centre, then times
//! searches around random sharers: the whole query path (the index, the one
//! read of what the rules ask of the candidates, the display names), and the
//! index's search alone.

use std::sync::Arc;
use std::time::Instant;

use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};
use serde_json::json;
use superapp_account::config::NearbyConfig;
use superapp_account::model::{UserId, UserRecord};
use superapp_account::policy::nearby::{distance_m, snap};
use superapp_account::{
    AccountStore as _, LocalNearbyIndex, Nearby, NearbyIndex, RedisNearbyIndex, SqliteAccountStore,
};
use superapp_client::futures_util::{StreamExt as _, stream};
use superapp_kit::clock::{Clock as _, SystemClock};

use crate::hist::{Latency, ms};

#[derive(clap::Args)]
pub struct NearbyArgs {
    /// Opted-in positions, one user each.
    #[arg(long, default_value_t = 100_000)]
    pub positions: u64,
    /// Searches timed one after another (each by another sharer).
    #[arg(long, default_value_t = 2_000)]
    pub queries: usize,
    /// Searches in flight at once for the throughput run.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Radius of every search, in metres.
    #[arg(long, default_value_t = 5_000)]
    pub radius: u32,
    /// People each search answers at most.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Side of the square the positions are spread over, in km.
    #[arg(long, default_value_t = 30.0)]
    pub spread_km: f64,
    /// Redis for the medium tier's index (`redis://host:port/`); the
    /// in-process index without it. Its people nearby keys are left behind.
    #[arg(long)]
    pub redis: Option<String>,
}

/// People's Square, Shanghai.
const CENTRE: (f64, f64) = (31.2304, 121.4737);

pub async fn run(args: NearbyArgs) -> anyhow::Result<serde_json::Value> {
    let temp = tempfile::tempdir()?;
    let store = Arc::new(SqliteAccountStore::open(
        &temp.path().join("account.db"),
        None,
    )?);
    let (index, tier): (Arc<dyn NearbyIndex>, &str) = match &args.redis {
        Some(url) => (Arc::new(RedisNearbyIndex::connect(url).await?), "redis"),
        None => (Arc::new(LocalNearbyIndex::new()), "embedded"),
    };
    let config = NearbyConfig {
        max_radius_m: 50_000,
        max_results: 200,
        queries_per_minute: 1_000,
        ..NearbyConfig::default()
    };
    let nearby = Arc::new(Nearby::new(
        index.clone(),
        store.clone(),
        store.clone(),
        Arc::new(SystemClock),
        config,
    ));
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    // Fresh ids every run, so a Redis used before holds no standing of theirs.
    let base: u64 = rng.random_range(1..1u64 << 40) << 20 ^ SystemClock.now_ms() as u64;
    let ids: Vec<UserId> = (0..args.positions).map(|i| UserId(base + i)).collect();
    let metres_per_degree = 111_195.08;
    let half_lat = args.spread_km * 500.0 / metres_per_degree;
    let half_lon = half_lat / CENTRE.0.to_radians().cos();
    let places: Vec<(f64, f64)> = ids
        .iter()
        .map(|_| {
            (
                CENTRE.0 + rng.random_range(-half_lat..half_lat),
                CENTRE.1 + rng.random_range(-half_lon..half_lon),
            )
        })
        .collect();

    let started = Instant::now();
    let registered = stream::iter(ids.iter().copied())
        .map(|id| {
            let store = store.clone();
            async move {
                store
                    .create_user(
                        UserRecord {
                            id,
                            phone: format!("+1{:014}", id.0 % 100_000_000_000_000),
                            display_name: format!("P{}", id.0 - base),
                            password_hash: "-".into(),
                            created_at_ms: 0,
                        },
                        // A unique stand-in for the number's contact hash.
                        format!("{:064x}", id.0),
                    )
                    .await
            }
        })
        .buffer_unordered(512)
        .collect::<Vec<_>>()
        .await;
    for outcome in registered {
        anyhow::ensure!(outcome?, "a phone number was taken");
    }
    let register_secs = started.elapsed().as_secs_f64();

    let rss_before = crate::procfs::rss_kib(std::process::id())?;
    let started = Instant::now();
    let shared = stream::iter(ids.iter().copied().zip(places.iter().copied()))
        .map(|(id, (lat, lon))| {
            let nearby = nearby.clone();
            async move { nearby.share(id, lat, lon).await }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    for outcome in shared {
        outcome?;
    }
    let share_secs = started.elapsed().as_secs_f64();
    let rss_after = crate::procfs::rss_kib(std::process::id())?;

    // The viewers, each searching once, in a random order.
    let mut viewers: Vec<usize> = (0..ids.len()).collect();
    viewers.shuffle(&mut rng);
    let queries = args.queries.min(viewers.len() / 2);
    let (timed, concurrent) = viewers.split_at(queries);

    // How many positions a search's circle holds, counted apart from the
    // index on a sample.
    let cells: Vec<_> = places.iter().map(|&(lat, lon)| snap(lat, lon)).collect();
    let sample = timed.len().clamp(1, 20);
    let within = timed
        .iter()
        .take(sample)
        .map(|&v| {
            (cells.iter())
                .filter(|&&c| distance_m(cells[v], c) <= f64::from(args.radius))
                .count()
        })
        .sum::<usize>()
        / sample;

    let mut index_only = Latency::default();
    let mut whole = Latency::default();
    let mut answered = 0usize;
    for &v in timed {
        let cell = snap(places[v].0, places[v].1);
        let started = Instant::now();
        index
            .search(
                cell,
                args.radius,
                args.limit as usize + 8,
                SystemClock.now_ms(),
            )
            .await?;
        index_only.record(started.elapsed());
        let started = Instant::now();
        let page = nearby
            .query(ids[v], Some(args.radius), Some(args.limit))
            .await?;
        whole.record(started.elapsed());
        answered += page.people.len();
    }

    let concurrent: Vec<UserId> = concurrent
        .iter()
        .take(queries * 2)
        .map(|&v| ids[v])
        .collect();
    let started = Instant::now();
    let outcomes = stream::iter(concurrent.iter().copied())
        .map(|viewer| {
            let nearby = nearby.clone();
            let (radius, limit) = (args.radius, args.limit);
            async move { nearby.query(viewer, Some(radius), Some(limit)).await }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    for outcome in outcomes {
        outcome?;
    }
    let per_sec = concurrent.len() as f64 / started.elapsed().as_secs_f64();

    let (index_only, whole) = (index_only.summary(), whole.summary());
    println!("scenario            people nearby ({tier})");
    println!(
        "positions           {} over {} km x {} km ({} users registered in {register_secs:.1} s)",
        args.positions, args.spread_km, args.spread_km, args.positions
    );
    println!(
        "shares              {:.0}/s (64 at once){}",
        args.positions as f64 / share_secs,
        match tier {
            "embedded" => format!(
                ", index memory {:.0} bytes a position",
                (rss_after.saturating_sub(rss_before) as f64 * 1024.0) / args.positions as f64
            ),
            _ => String::new(),
        }
    );
    println!(
        "search              radius {} m, at most {} people; {within} positions within the radius on average, {:.1} answered",
        args.radius,
        args.limit,
        answered as f64 / queries.max(1) as f64
    );
    println!(
        "index search        p50 {}  p99 {}  max {}  ({} one at a time)",
        ms(index_only.p50_us),
        ms(index_only.p99_us),
        ms(index_only.max_us),
        index_only.count
    );
    println!(
        "whole query         p50 {}  p99 {}  max {}  ({} one at a time)",
        ms(whole.p50_us),
        ms(whole.p99_us),
        ms(whole.max_us),
        whole.count
    );
    println!(
        "throughput          {per_sec:.0} queries/s ({} in flight, {} queries)",
        args.concurrency,
        concurrent.len()
    );
    Ok(json!({
        "scenario": "nearby",
        "tier": tier,
        "positions": args.positions,
        "spread_km": args.spread_km,
        "radius_m": args.radius,
        "limit": args.limit,
        "within_radius": within,
        "shares_per_sec": args.positions as f64 / share_secs,
        "rss_growth_kib": rss_after.saturating_sub(rss_before),
        "index_search": index_only,
        "whole_query": whole,
        "queries_per_sec": per_sec,
        "concurrency": args.concurrency,
    }))
}
