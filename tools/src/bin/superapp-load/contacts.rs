//! *contacts*: one user with N friends syncs their contact list, as a new
//! device does (the whole list from version 0, page by page) and as a device
//! that was away does (the changes after the version it holds, here one
//! remark). Reports each sync's latency and the whole list's size on the wire.

use std::time::Instant;

use superapp_client::HttpClient;

use crate::hist::Latency;
use crate::setup::{LoadUser, befriend, users};

#[derive(clap::Args)]
pub struct ContactsArgs {
    /// The user's friends (at most `social.max_friends`, 5,000 by default).
    #[arg(long, default_value_t = 5_000)]
    pub friends: usize,
    /// Syncs of each kind to time.
    #[arg(long, default_value_t = 50)]
    pub rounds: u32,
    /// Changes per page (the server's maximum is 1,000).
    #[arg(long, default_value_t = 1_000)]
    pub page: u32,
}

pub async fn run(server: &str, args: ContactsArgs) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(args.friends >= 1, "--friends is at least 1");
    anyhow::ensure!(args.rounds >= 1, "--rounds is at least 1");
    println!("registering {} users...", args.friends + 1);
    let mut people = users(server, args.friends + 1).await?.into_iter();
    let hub = people.next().ok_or_else(|| anyhow::anyhow!("no users"))?;
    let others: Vec<LoadUser> = people.collect();
    let http = HttpClient::new(server);
    println!("making {} friends...", others.len());
    // Every other user asks the hub, and the hub accepts.
    let asks: Vec<(LoadUser, LoadUser)> = others.iter().map(|o| (o.clone(), hub.clone())).collect();
    befriend(&http, &asks).await?;

    // A new device: every page from version 0.
    let mut full = Latency::default();
    let mut listed = 0;
    let mut bytes = 0;
    let mut version = 0;
    for _ in 0..args.rounds {
        let started = Instant::now();
        let (count, size, at) = whole_list(&http, &hub, args.page).await?;
        full.record(started.elapsed());
        (listed, bytes, version) = (count, size, at);
    }
    anyhow::ensure!(
        listed == others.len(),
        "the list has {listed} friends, not {}",
        others.len()
    );

    // A device that was away: one remark changed since the version it holds.
    let mut since = Latency::default();
    let friend = others[0].id;
    for round in 0..args.rounds {
        let remark = serde_json::json!({ "remark": format!("r{round}") });
        let path = format!("/v1/contacts/{friend}");
        let (status, _) = http
            .request_json("PATCH", &path, Some(&hub.token), Some(&remark))
            .await?;
        anyhow::ensure!(status == 200, "setting a remark answered {status}");
        let started = Instant::now();
        let page = http.contacts(&hub.token, version, args.page).await?;
        since.record(started.elapsed());
        anyhow::ensure!(
            page.changes.len() == 1 && !page.more,
            "{} changes after one remark",
            page.changes.len()
        );
        version = page.version;
    }

    let (full, since) = (full.summary(), since.summary());
    println!(
        "contacts: {listed} friends, {bytes} bytes in pages of {}; whole list p50 {:.2} ms p99 {:.2} ms; one change p50 {:.2} ms p99 {:.2} ms",
        args.page,
        full.p50_us as f64 / 1e3,
        full.p99_us as f64 / 1e3,
        since.p50_us as f64 / 1e3,
        since.p99_us as f64 / 1e3,
    );
    Ok(serde_json::json!({
        "scenario": "contacts",
        "friends": listed,
        "page": args.page,
        "rounds": args.rounds,
        "whole_list_bytes": bytes,
        "whole_list": full,
        "one_change": since,
    }))
}

/// Reads the hub's whole list from version 0; answers the friends listed,
/// the bytes of JSON read and the version to hold.
async fn whole_list(
    http: &HttpClient,
    hub: &LoadUser,
    page: u32,
) -> anyhow::Result<(usize, usize, u64)> {
    let (mut listed, mut bytes, mut since) = (0, 0, 0);
    loop {
        let path = format!("/v1/contacts?since={since}&limit={page}");
        let (status, body) = http
            .request_json("GET", &path, Some(&hub.token), None)
            .await?;
        anyhow::ensure!(status == 200, "the contact list answered {status}");
        bytes += body.to_string().len();
        let page: superapp_client::ContactPage = serde_json::from_value(body)?;
        listed += page.changes.iter().filter(|c| !c.removed).count();
        match page.changes.last() {
            Some(last) if page.more => since = last.version,
            _ => return Ok((listed, bytes, page.version)),
        }
    }
}
