//! *fanout*: one group with every member online; its owner sends at a steady
//! rate, open loop. Each message carries its scheduled send time (wall clock,
//! µs), so every receiving process measures send-to-delivery on the same
//! machine clock. Reports, per message, the time from send to the last
//! member's delivery (p50/p99/max), every delivery's latency, and deliveries
//! per second.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message as _;
use serde::{Deserialize, Serialize};
use superapp_client::futures_util::StreamExt as _;
use superapp_client::proto::v1::{ServerFrame, event, message_body, server_frame};
use superapp_client::tokio_tungstenite::tungstenite::Message as WsMessage;
use superapp_client::{Connection, HttpClient, connect_raw};
use tokio::sync::mpsc;

use crate::hist::{Latency, Recorded, ms};
use crate::setup::{LoadUser, Worker, next_line, report, users, wait_for_signal};

#[derive(clap::Args)]
pub struct FanoutArgs {
    /// Group members, the sender included (at most 6000).
    #[arg(long, default_value_t = 6_000)]
    pub members: usize,
    /// Messages the owner sends.
    #[arg(long, default_value_t = 100)]
    pub messages: u64,
    /// Messages per second.
    #[arg(long, default_value_t = 2.0)]
    pub rate: f64,
    /// Worker processes holding the members' sessions.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Where the members' sessions connect (the Redis tier's gateways,
    /// comma-separated, shared round-robin). Default: the server.
    #[arg(long, value_delimiter = ',')]
    pub ws: Vec<String>,
    /// This many receiving members block another member, who never sends
    /// (the last): every message is still delivered to all, but each of
    /// them is checked against a block set that is not empty. Blocks stay
    /// in the server's data: a rerun with `--run-id` keeps them.
    #[arg(long, default_value_t = 0)]
    pub blockers: usize,
}

#[derive(Serialize, Deserialize)]
pub struct FanoutJob {
    /// (gateway, token) per session.
    sessions: Vec<(String, String)>,
    conversation_id: String,
}

#[derive(Default, Serialize, Deserialize)]
struct FanoutResult {
    deliveries: u64,
    /// Every delivery's latency.
    delivery: Recorded,
    /// Per message seq: the latest delivery in this worker, µs after its send.
    last_us: HashMap<u64, u64>,
    /// Wall-clock µs of this worker's last delivery.
    last_delivery_unix_us: u64,
}

type Socket = superapp_client::tokio_tungstenite::WebSocketStream<
    superapp_client::tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
>;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The benchmark's group: its owner sends, its members receive.
struct Group {
    owner: LoadUser,
    members: Vec<LoadUser>,
    group_id: u64,
    conversation_id: String,
    /// Where the members' sessions connect, and the owner's (the first).
    gateways: Vec<String>,
}

/// What the owner sent.
struct Sent {
    /// Wall-clock µs of the first scheduled send.
    first_send_us: u64,
    acks: Latency,
    errors: u64,
}

/// What every worker received, merged.
struct Received {
    deliveries: u64,
    delivery: Latency,
    /// Per message, send to the last member's delivery.
    to_last: Latency,
    last_delivery_unix_us: u64,
}

pub async fn run(server: &str, args: FanoutArgs) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(
        (2..=6_000).contains(&args.members),
        "--members is 2 to 6000"
    );
    let group = create_group(server, &args).await?;
    let (tx, mut lines) = mpsc::unbounded_channel();
    let mut workers = start_workers(&group, args.workers, tx)?;
    for _ in 0..workers.len() {
        next_line(&mut lines).await?;
    }
    let sent = send_on_schedule(&group, &args).await?;
    // Time for the last deliveries, then every worker reports.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for w in &mut workers {
        w.tell("stop")?;
    }
    let received = collect(workers.len(), &mut lines, sent.first_send_us).await?;
    Ok(print_report(&args, &group, workers.len(), &sent, &received))
}

/// Registers the users and puts every one in a group the first one owns.
async fn create_group(server: &str, args: &FanoutArgs) -> anyhow::Result<Group> {
    println!("registering {} users...", args.members);
    let mut people = users(server, args.members).await?.into_iter();
    let owner = people.next().ok_or_else(|| anyhow::anyhow!("no users"))?;
    let members: Vec<LoadUser> = people.collect();
    let ids: Vec<u64> = members.iter().map(|u| u.id).collect();
    // In batches, as a client would: a request body holds at most 64 KiB.
    let http = HttpClient::new(server);
    let group = http
        .create_group(&owner.token, "fanout benchmark", &[])
        .await?;
    for batch in ids.chunks(1_000) {
        http.add_group_members(&owner.token, group.group_id, batch)
            .await?;
    }
    if let Some(blocked) = members.last().filter(|_| args.blockers > 0) {
        println!("{} members block another...", args.blockers);
        let blockers: Vec<&LoadUser> = (members.iter())
            .filter(|m| m.id != blocked.id)
            .take(args.blockers)
            .collect();
        for batch in blockers.chunks(32) {
            let blocks = batch.iter().map(|m| http.block(&m.token, blocked.id));
            superapp_client::futures_util::future::try_join_all(blocks).await?;
        }
    }
    let gateways = if args.ws.is_empty() {
        vec![server.to_string()]
    } else {
        args.ws.clone()
    };
    Ok(Group {
        owner,
        members,
        group_id: group.group_id,
        conversation_id: group.conversation_id,
        gateways,
    })
}

/// Shares the members' sessions among worker processes, round-robin over the
/// gateways.
fn start_workers(
    group: &Group,
    workers: usize,
    tx: mpsc::UnboundedSender<serde_json::Value>,
) -> anyhow::Result<Vec<Worker>> {
    let gateways = &group.gateways;
    let per_worker = group.members.len().div_ceil(workers.max(1));
    let mut started = Vec::new();
    for (w, chunk) in group.members.chunks(per_worker).enumerate() {
        let sessions = chunk
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let gateway = &gateways[(w * per_worker + i) % gateways.len()];
                (gateway.clone(), u.token.clone())
            })
            .collect();
        let job = FanoutJob {
            sessions,
            conversation_id: group.conversation_id.clone(),
        };
        started.push(Worker::with_job("fanout-worker", &job, tx.clone())?);
    }
    Ok(started)
}

/// The measured phase: the owner sends on schedule, open loop.
async fn send_on_schedule(group: &Group, args: &FanoutArgs) -> anyhow::Result<Sent> {
    // Each text is its scheduled time.
    let sender = Connection::connect(&group.gateways[0], &group.owner.token).await?;
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(0.001));
    let started = Instant::now();
    let first_send_us = now_us();
    let mut acks = Latency::default();
    let mut errors = 0u64;
    for i in 0..args.messages {
        let due = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let scheduled_us = first_send_us + due.duration_since(started).as_micros() as u64;
        let sent = Instant::now();
        match sender
            .send_group_text(
                group.group_id,
                &format!("fanout-{}-{i}", std::process::id()),
                &scheduled_us.to_string(),
                &[],
                false,
            )
            .await
        {
            Ok(_) => acks.record(sent.elapsed()),
            Err(_) => errors += 1,
        }
    }
    Ok(Sent {
        first_send_us,
        acks,
        errors,
    })
}

/// Merges every worker's result; a message reached its last member when the
/// latest of the workers' last deliveries did.
async fn collect(
    workers: usize,
    lines: &mut mpsc::UnboundedReceiver<serde_json::Value>,
    first_send_us: u64,
) -> anyhow::Result<Received> {
    let mut delivery = Latency::default();
    let mut last_us: HashMap<u64, u64> = HashMap::new();
    let mut deliveries = 0;
    let mut last_delivery = first_send_us;
    for _ in 0..workers {
        let line = next_line(lines).await?;
        let r: FanoutResult = serde_json::from_value(line)?;
        delivery.merge(&r.delivery);
        deliveries += r.deliveries;
        last_delivery = last_delivery.max(r.last_delivery_unix_us);
        for (seq, us) in r.last_us {
            let slot = last_us.entry(seq).or_default();
            *slot = (*slot).max(us);
        }
    }
    let mut to_last = Latency::default();
    for &us in last_us.values() {
        to_last.record(Duration::from_micros(us));
    }
    Ok(Received {
        deliveries,
        delivery,
        to_last,
        last_delivery_unix_us: last_delivery,
    })
}

/// Prints the table and returns the JSON result.
fn print_report(
    args: &FanoutArgs,
    group: &Group,
    workers: usize,
    sent: &Sent,
    received: &Received,
) -> serde_json::Value {
    let (errors, deliveries) = (sent.errors, received.deliveries);
    let expected = args.messages * group.members.len() as u64;
    let span_secs = (received
        .last_delivery_unix_us
        .saturating_sub(sent.first_send_us)) as f64
        / 1e6;
    let per_sec = deliveries as f64 / span_secs.max(1e-6);
    let (last, each, ack) = (
        received.to_last.summary(),
        received.delivery.summary(),
        sent.acks.summary(),
    );
    println!("scenario             fanout: one group, every member online");
    println!(
        "group                {} members ({} receiving sessions over {} workers, {} gateway(s))",
        args.members,
        group.members.len(),
        workers,
        group.gateways.len()
    );
    if args.blockers > 0 {
        println!(
            "blocks               {} members block another (who never sends)",
            args.blockers
        );
    }
    println!(
        "sent                 {} messages at {} per second ({errors} errors)",
        args.messages, args.rate
    );
    println!(
        "delivered            {deliveries} of {expected} ({per_sec:.0} deliveries/s over the run)"
    );
    println!(
        "send to last member  p50 {}  p99 {}  max {}",
        ms(last.p50_us),
        ms(last.p99_us),
        ms(last.max_us)
    );
    println!(
        "each delivery        p50 {}  p99 {}  p99.9 {}",
        ms(each.p50_us),
        ms(each.p99_us),
        ms(each.p999_us)
    );
    println!(
        "send to ack          p50 {}  p99 {}",
        ms(ack.p50_us),
        ms(ack.p99_us)
    );
    serde_json::json!({
        "scenario": "fanout",
        "members": args.members,
        "messages": args.messages,
        "rate": args.rate,
        "blockers": args.blockers,
        "errors": errors,
        "deliveries": deliveries,
        "expected_deliveries": expected,
        "deliveries_per_sec": per_sec,
        "send_to_last_delivery": last,
        "delivery": each,
        "ack": ack,
    })
}

pub async fn worker(job: FanoutJob) -> anyhow::Result<()> {
    let (tx, mut deliveries) = mpsc::unbounded_channel::<(u64, u64, u64)>();
    let mut sockets = Vec::with_capacity(job.sessions.len());
    for chunk in job.sessions.chunks(64) {
        let opened = chunk.iter().map(|(gateway, token)| {
            let (gateway, token) = (gateway.clone(), token.clone());
            tokio::spawn(async move { connect_retrying(&gateway, &token).await })
        });
        for task in opened.collect::<Vec<_>>() {
            sockets.push(task.await??);
        }
    }
    // Group membership reaches each gateway with the session's start; wait
    // for it before the sending begins.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // One task per socket reads and decodes frames itself, without the SDK's
    // driver task and queues in between, so the load generator spends as
    // little of the shared CPU per delivery as it can.
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            let (tx, conversation) = (tx.clone(), job.conversation_id.clone());
            tokio::spawn(async move {
                while let Some(Ok(frame)) = socket.next().await {
                    let WsMessage::Binary(data) = frame else {
                        continue;
                    };
                    let received = now_us();
                    let Ok(ServerFrame {
                        kind: Some(server_frame::Kind::Event(e)),
                    }) = ServerFrame::decode(data)
                    else {
                        continue;
                    };
                    let Some(event::Kind::Message(m)) = e.kind else {
                        continue;
                    };
                    let sent: Option<u64> = match m.body.and_then(|b| b.content) {
                        Some(message_body::Content::Text(t)) => t.parse().ok(),
                        _ => None,
                    };
                    if let (true, Some(sent)) = (m.conversation_id == conversation, sent) {
                        let _ = tx.send((m.seq, sent, received));
                    }
                }
            })
        })
        .collect();
    drop(tx);
    report(&serde_json::json!({ "ready": readers.len() }));
    let collect = async {
        let mut result = FanoutResult::default();
        let mut latency = Latency::default();
        while let Some((seq, sent, received)) = deliveries.recv().await {
            let us = received.saturating_sub(sent);
            latency.record(Duration::from_micros(us));
            result.deliveries += 1;
            let slot = result.last_us.entry(seq).or_default();
            *slot = (*slot).max(us);
            result.last_delivery_unix_us = result.last_delivery_unix_us.max(received);
        }
        result.delivery = latency.export();
        result
    };
    // Deliveries are timed as they arrive and queue here until the end.
    wait_for_signal().await;
    for reader in &readers {
        reader.abort();
    }
    let result = collect.await;
    report(&serde_json::to_value(&result)?);
    Ok(())
}

async fn connect_retrying(gateway: &str, token: &str) -> anyhow::Result<Socket> {
    let mut backoff = Duration::from_millis(50);
    for _ in 0..20 {
        match connect_raw(gateway, Some(token), None).await {
            Ok(socket) => return Ok(socket),
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
    Ok(connect_raw(gateway, Some(token), None).await?)
}
