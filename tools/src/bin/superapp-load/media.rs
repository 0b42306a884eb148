//! *media*: how fast a large file goes up and comes back down, against `cp`
//! of the same file on the same disk (alone, and followed by `sync` of the
//! copy, since the server makes an upload durable before it answers), and
//! how much memory the server holds while many uploads run at once. Uploads go by tus in chunks (the SDK's
//! default, 8 MiB); downloads by a signed link. Run the server with its data
//! dir on the disk `--dir` is on, so both sides write to the same device.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::RngCore as _;
use superapp_client::{HttpClient, LinkRequest, Upload};

use crate::procfs;
use crate::setup::users;

#[derive(clap::Args)]
pub struct MediaArgs {
    /// The large file's size, in MiB.
    #[arg(long, default_value_t = 100)]
    pub size_mib: u64,
    /// Times each transfer is repeated (the best and the median are reported).
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Uploads running at once for the memory reading.
    #[arg(long, default_value_t = 20)]
    pub concurrent: usize,
    /// Each concurrent upload's size, in MiB.
    #[arg(long, default_value_t = 50)]
    pub concurrent_mib: u64,
    /// Bytes per PATCH, in MiB.
    #[arg(long, default_value_t = 8)]
    pub chunk_mib: usize,
    /// The server's process id, for its memory (VmRSS, sampled every 20 ms).
    #[arg(long)]
    pub server_pid: u32,
    /// Where the test files go: on the disk that holds the server's data dir.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

const MIB: u64 = 1024 * 1024;

pub async fn run(server: &str, args: MediaArgs) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(
        args.size_mib >= 1 && args.rounds >= 1,
        "sizes and rounds are at least 1"
    );
    let scratch = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let http = HttpClient::new(server);
    println!("registering {} users...", args.concurrent + 1);
    let people = users(server, args.concurrent + 1).await?;
    let me = &people[0];
    let upload = Upload {
        kind: "file",
        name: Some("large.bin"),
        chunk: args.chunk_mib.max(1) * MIB as usize,
        ..Upload::default()
    };

    let mut cp = Vec::new();
    let mut cp_sync = Vec::new();
    let mut up = Vec::new();
    let mut down = Vec::new();
    for round in 0..args.rounds {
        // Fresh random content each round: an object already stored would be
        // deduplicated, not written.
        let source = scratch.path().join(format!("source-{round}"));
        random_file(&source, args.size_mib * MIB)?;
        let copy = scratch.path().join(format!("copy-{round}"));
        let started = Instant::now();
        let status = tokio::process::Command::new("cp")
            .arg(&source)
            .arg(&copy)
            .status()
            .await?;
        anyhow::ensure!(status.success(), "cp failed");
        cp.push(started.elapsed());
        let synced = scratch.path().join(format!("synced-{round}"));
        let started = Instant::now();
        for (program, args) in [("cp", vec![&source, &synced]), ("sync", vec![&synced])] {
            let status = tokio::process::Command::new(program)
                .args(args)
                .status()
                .await?;
            anyhow::ensure!(status.success(), "{program} failed");
        }
        cp_sync.push(started.elapsed());

        let started = Instant::now();
        let media = http.upload_file(&me.token, &source, &upload).await?;
        up.push(started.elapsed());

        let fetched = scratch.path().join(format!("fetched-{round}"));
        let started = Instant::now();
        let link = http
            .media_link(&me.token, &media.media_id, &LinkRequest::default())
            .await?;
        let bytes = http.download(&link.url, &fetched).await?;
        down.push(started.elapsed());
        anyhow::ensure!(bytes == args.size_mib * MIB, "downloaded {bytes} bytes");
        for path in [source, copy, synced, fetched] {
            std::fs::remove_file(path)?;
        }
    }

    println!(
        "{} uploads of {} MiB at once...",
        args.concurrent, args.concurrent_mib
    );
    let memory = concurrent_uploads(&http, &people[1..], &args, scratch.path(), &upload).await?;

    let mb_per_s = |d: &Duration| (args.size_mib * MIB) as f64 / 1e6 / d.as_secs_f64();
    let (cp, cp_sync) = (summary(&cp), summary(&cp_sync));
    let (up, down) = (summary(&up), summary(&down));
    let ratio = |of: &(Duration, Duration), to: &(Duration, Duration)| {
        to.1.as_secs_f64() / of.1.as_secs_f64()
    };
    println!(
        "media: {} MiB file, medians; cp {:.0} MB/s, cp + sync {:.0} MB/s; upload {:.0} MB/s ({:.2} of cp, {:.2} of cp + sync); download {:.0} MB/s ({:.2} of cp)",
        args.size_mib,
        mb_per_s(&cp.1),
        mb_per_s(&cp_sync.1),
        mb_per_s(&up.1),
        ratio(&up, &cp),
        ratio(&up, &cp_sync),
        mb_per_s(&down.1),
        ratio(&down, &cp),
    );
    println!(
        "memory: VmRSS {} MiB before, peak {} MiB during {} uploads of {} MiB ({} MiB held)",
        memory.before_kib / 1024,
        memory.peak_kib / 1024,
        args.concurrent,
        args.concurrent_mib,
        memory.peak_kib.saturating_sub(memory.before_kib) / 1024,
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(serde_json::json!({
        "size_mib": args.size_mib,
        "rounds": args.rounds,
        "chunk_mib": args.chunk_mib,
        "cp_ms": { "best": ms(cp.0), "median": ms(cp.1) },
        "upload_ms": { "best": ms(up.0), "median": ms(up.1) },
        "download_ms": { "best": ms(down.0), "median": ms(down.1) },
        "cp_sync_ms": { "best": ms(cp_sync.0), "median": ms(cp_sync.1) },
        "upload_over_cp": ratio(&up, &cp),
        "upload_over_cp_sync": ratio(&up, &cp_sync),
        "download_over_cp": ratio(&down, &cp),
        "concurrent": args.concurrent,
        "concurrent_mib": args.concurrent_mib,
        "rss_before_kib": memory.before_kib,
        "rss_peak_kib": memory.peak_kib,
    }))
}

struct Memory {
    before_kib: u64,
    peak_kib: u64,
}

/// One upload per user, all at once, with the server's resident memory
/// sampled until the last finishes.
async fn concurrent_uploads(
    http: &HttpClient,
    people: &[crate::setup::LoadUser],
    args: &MediaArgs,
    dir: &Path,
    upload: &Upload<'static>,
) -> anyhow::Result<Memory> {
    let mut sources = Vec::new();
    for n in 0..people.len() {
        let path = dir.join(format!("concurrent-{n}"));
        random_file(&path, args.concurrent_mib * MIB)?;
        sources.push(path);
    }
    let before_kib = procfs::rss_kib(args.server_pid)?;
    let pid = args.server_pid;
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let sampler = tokio::spawn(async move {
        let mut peak = 0;
        loop {
            if let Ok(rss) = procfs::rss_kib(pid) {
                peak = peak.max(rss);
            }
            tokio::select! {
                _ = &mut stopped => return peak,
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    });
    let uploads = people.iter().zip(&sources).map(|(person, source)| {
        let (http, upload) = (http.clone(), upload.clone());
        let (token, source) = (person.token.clone(), source.clone());
        tokio::spawn(async move { http.upload_file(&token, &source, &upload).await })
    });
    let uploads: Vec<_> = uploads.collect();
    for task in uploads {
        task.await??;
    }
    let _ = stop.send(());
    let peak_kib = sampler.await?;
    for path in sources {
        std::fs::remove_file(path)?;
    }
    Ok(Memory {
        before_kib,
        peak_kib,
    })
}

fn random_file(path: &Path, size: u64) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut block = vec![0; MIB as usize];
    let mut rng = rand::rng();
    let mut left = size;
    while left > 0 {
        let n = left.min(MIB) as usize;
        rng.fill_bytes(&mut block[..n]);
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    Ok(())
}

/// The best and the median.
fn summary(times: &[Duration]) -> (Duration, Duration) {
    let mut sorted = times.to_vec();
    sorted.sort();
    (sorted[0], sorted[sorted.len() / 2])
}
