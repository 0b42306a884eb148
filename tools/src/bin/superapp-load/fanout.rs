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
use crate::setup::{Worker, next_line, report, users, wait_for_signal};

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

pub async fn run(server: &str, args: FanoutArgs) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(
        (2..=6_000).contains(&args.members),
        "--members is 2 to 6000"
    );
    println!("registering {} users...", args.members);
    let people = users(server, args.members).await?;
    let (owner, members) = people
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("no users"))?;
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
    let gateways = if args.ws.is_empty() {
        vec![server.to_string()]
    } else {
        args.ws.clone()
    };

    let (tx, mut lines) = mpsc::unbounded_channel();
    let mut workers = Vec::new();
    let per_worker = members.len().div_ceil(args.workers.max(1));
    for (w, chunk) in members.chunks(per_worker).enumerate() {
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
        workers.push(Worker::with_job("fanout-worker", &job, tx.clone())?);
    }
    drop(tx);
    for _ in 0..workers.len() {
        next_line(&mut lines).await?;
    }

    // The owner sends on schedule; each text is its scheduled time.
    let sender = Connection::connect(&gateways[0], &owner.token).await?;
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
    // Time for the last deliveries, then every worker reports.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for w in &mut workers {
        w.tell("stop")?;
    }
    let mut delivery = Latency::default();
    let mut last_us: HashMap<u64, u64> = HashMap::new();
    let mut deliveries = 0;
    let mut last_delivery = first_send_us;
    for _ in 0..workers.len() {
        let line = next_line(&mut lines).await?;
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
    let expected = args.messages * ids.len() as u64;
    let span_secs = (last_delivery.saturating_sub(first_send_us)) as f64 / 1e6;
    let per_sec = deliveries as f64 / span_secs.max(1e-6);
    let (last, each, ack) = (to_last.summary(), delivery.summary(), acks.summary());
    println!("scenario             fanout: one group, every member online");
    println!(
        "group                {} members ({} receiving sessions over {} workers, {} gateway(s))",
        args.members,
        ids.len(),
        workers.len(),
        gateways.len()
    );
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
    Ok(serde_json::json!({
        "scenario": "fanout",
        "members": args.members,
        "messages": args.messages,
        "rate": args.rate,
        "errors": errors,
        "deliveries": deliveries,
        "expected_deliveries": expected,
        "deliveries_per_sec": per_sec,
        "send_to_last_delivery": last,
        "delivery": each,
        "ack": ack,
    }))
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
                        None => None,
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
