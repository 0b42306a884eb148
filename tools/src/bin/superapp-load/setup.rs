//! Users for a benchmark, and worker processes that share its load.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use superapp_client::{HttpClient, PrivacySettings};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadUser {
    pub id: u64,
    pub token: String,
}

/// Names this run's users (`+1555<run><n>`); `--run-id` reuses an earlier
/// run's, skipping their registration.
pub static RUN_ID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// Registers (or reuses) `count` users and logs each in once, a few at a time
/// (argon2id makes each registration and log-in cost the server real work);
/// each takes messages from anyone.
pub async fn users(server: &str, count: usize) -> anyhow::Result<Vec<LoadUser>> {
    let named = RUN_ID.get().is_some();
    let run = *RUN_ID.get_or_init(|| std::process::id() % 10_000);
    // A rerun with --run-id within a few minutes reuses the tokens too: each
    // log-in costs the server an argon2id hash.
    let cache = std::env::temp_dir().join(format!(
        "superapp-load-{}-{run}.json",
        server.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    ));
    if named
        && let Ok(bytes) = std::fs::read(&cache)
        && let Ok((saved_ms, cached)) = serde_json::from_slice::<(u64, Vec<LoadUser>)>(&bytes)
        && cached.len() >= count
        && now_ms().saturating_sub(saved_ms) < 12 * 60 * 1000
        // The server may be a new one at the same address.
        && let Some(first) = cached.first()
        && HttpClient::new(server).me(&first.token).await.is_ok()
    {
        return Ok(cached.into_iter().take(count).collect());
    }
    let users = register_and_log_in(server, run, count).await?;
    if !named {
        return Ok(users);
    }
    // Tokens are secrets, if only of test users: owner-only.
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&cache)?
        .write_all(&serde_json::to_vec(&(now_ms(), &users))?)?;
    Ok(users)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn register_and_log_in(
    server: &str,
    run: u32,
    count: usize,
) -> anyhow::Result<Vec<LoadUser>> {
    let http = HttpClient::new(server);
    let mut users = Vec::with_capacity(count);
    let mut pending = Vec::new();
    for u in 0..count {
        let http = http.clone();
        pending.push(tokio::spawn(async move {
            let phone = format!("+1555{run:04}{u:05}");
            let password = "load generator passphrase";
            // An earlier run may have registered it: log in either way.
            let _ = http.register(&phone, password, &format!("load {u}")).await;
            let tokens = http.login(&phone, password).await?;
            // The load's users message each other and are put in groups
            // without being friends: each takes messages from anyone and
            // lets anyone add them (the server's defaults are friends only).
            let anyone = PrivacySettings {
                who_may_message: Some("anyone".into()),
                who_may_add_me: Some("anyone".into()),
                ..PrivacySettings::default()
            };
            http.set_privacy(&tokens.access_token, &anyone).await?;
            anyhow::Ok(LoadUser {
                id: tokens.user_id,
                token: tokens.access_token,
            })
        }));
        if pending.len() == 8 || u + 1 == count {
            for p in pending.drain(..) {
                users.push(p.await??);
            }
        }
    }
    Ok(users)
}

/// Makes each pair friends: the first asks, the second accepts, 16 pairs at
/// a time; pairs who are friends already (an earlier run's, `--run-id`) are
/// left as they are.
pub async fn befriend(http: &HttpClient, pairs: &[(LoadUser, LoadUser)]) -> anyhow::Result<()> {
    for batch in pairs.chunks(16) {
        let mut pending = Vec::new();
        for (asker, accepter) in batch {
            let (http, asker, accepter) = (http.clone(), asker.clone(), accepter.clone());
            pending.push(tokio::spawn(async move {
                match http.friend_request(&asker.token, accepter.id, "").await {
                    Ok(_) => {}
                    Err(e) if e.code() == Some("already_friends") => return anyhow::Ok(()),
                    Err(e) => return Err(e.into()),
                }
                http.accept_friend(&accepter.token, asker.id).await?;
                anyhow::Ok(())
            }));
        }
        for p in pending {
            p.await??;
        }
    }
    Ok(())
}

/// A worker process running one hidden subcommand of this binary.
pub struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The job it reads, kept until the worker is gone.
    _job: Option<tempfile::NamedTempFile>,
}

impl Worker {
    /// Starts `superapp-load <args>`; every JSON line it prints arrives on `lines`.
    pub fn spawn(
        args: &[String],
        lines: mpsc::UnboundedSender<serde_json::Value>,
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting a worker")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str(&line) {
                    let _ = lines.send(value);
                }
            }
        });
        let stdin = child.stdin.take();
        Ok(Self {
            child,
            stdin,
            _job: None,
        })
    }

    /// Starts the hidden subcommand `<subcommand> --job FILE` with `job` written to FILE.
    pub fn with_job<T: Serialize>(
        subcommand: &str,
        job: &T,
        lines: mpsc::UnboundedSender<serde_json::Value>,
    ) -> anyhow::Result<Self> {
        let file = job_file(job)?;
        let path = file.path().display().to_string();
        let mut worker = Self::spawn(&[subcommand.into(), "--job".into(), path], lines)?;
        worker._job = Some(file);
        Ok(worker)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a line to the worker's standard input.
    pub fn tell(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("worker stdin")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The next line any worker printed; an error when a worker failed, or once
/// every worker is gone.
pub async fn next_line(
    lines: &mut mpsc::UnboundedReceiver<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let line = lines
        .recv()
        .await
        .ok_or_else(|| anyhow::anyhow!("a worker died"))?;
    match line["error"].as_str() {
        Some(e) => anyhow::bail!("a worker failed: {e}"),
        None => Ok(line),
    }
}

/// Writes a job description where a worker can read it.
fn job_file<T: Serialize>(job: &T) -> anyhow::Result<tempfile::NamedTempFile> {
    let mut file = tempfile::NamedTempFile::new()?;
    serde_json::to_writer(&mut file, job)?;
    file.flush()?;
    Ok(file)
}

/// Prints one JSON line for the coordinator.
pub fn report(value: &serde_json::Value) {
    println!("{value}");
    let _ = std::io::stdout().flush();
}

/// Waits for one line on standard input (the coordinator's signal).
pub async fn wait_for_signal() -> String {
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        line.trim().to_string()
    })
    .await
    .unwrap_or_default()
}
