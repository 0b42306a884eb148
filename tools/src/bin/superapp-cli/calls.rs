//! `superapp-cli call ...`: place, answer, decline and hang up calls, each
//! printing the server's answer and then (invite, accept) the call's events
//! as JSON lines until the call ends for this user. Signaling only: the
//! CLI carries no media.

use clap::Subcommand;
use serde_json::{Value, json};
use superapp_client::Connection;
use superapp_client::calls::CallActionKind;
use superapp_client::proto::v1::call_event::State;
use superapp_client::proto::v1::{CallAck, CallEvent, CallSignal, call_signal, event::Kind};
use tokio::time::Instant;

use super::{App, CliResult, PING_EVERY, parse_seconds, print_line};

#[derive(Subcommand)]
pub(super) enum CallCommand {
    /// Call a user; prints the answer (with `call_id`), then the call's events, one JSON object a line, until it ends.
    Invite {
        /// The user to call.
        user: u64,
        /// A video call (a voice call otherwise).
        #[arg(long)]
        video: bool,
        /// Stop following (and exit 0) after this many seconds; the call goes on.
        #[arg(long)]
        timeout: Option<f64>,
    },
    /// Answer a call on this device; prints the answer, then the call's events until it ends.
    Accept {
        call_id: u64,
        #[arg(long)]
        timeout: Option<f64>,
    },
    /// Decline a call ringing for you; prints the answer.
    Decline { call_id: u64 },
    /// Hang up, or cancel before an answer, from any of your devices; prints the answer.
    Hangup { call_id: u64 },
    /// Print credentials for the server's TURN server.
    Turn,
}

impl App {
    pub(super) async fn call(&self, command: CallCommand) -> CliResult {
        let (ack, conn, timeout) = match command {
            CallCommand::Turn => {
                let tokens = self.fresh_tokens().await?;
                let turn = self.http.turn_credentials(&tokens.access_token).await?;
                return print_line(&json!({
                    "username": turn.username,
                    "credential": turn.credential,
                    "ttl_secs": turn.ttl_secs,
                    "uris": turn.uris,
                }));
            }
            CallCommand::Invite {
                user,
                video,
                timeout,
            } => {
                let conn = self.connect().await?;
                (conn.call_user(user, video).await?, conn, timeout)
            }
            CallCommand::Accept { call_id, timeout } => {
                let conn = self.connect().await?;
                let ack = conn.call_action(call_id, CallActionKind::Accept).await?;
                (ack, conn, timeout)
            }
            CallCommand::Decline { call_id } => {
                let conn = self.connect().await?;
                let ack = conn.call_action(call_id, CallActionKind::Decline).await?;
                conn.close().await;
                return print_line(&ack_json(&ack));
            }
            CallCommand::Hangup { call_id } => {
                let conn = self.connect().await?;
                let ack = conn.call_action(call_id, CallActionKind::Hangup).await?;
                conn.close().await;
                return print_line(&ack_json(&ack));
            }
        };
        print_line(&ack_json(&ack))?;
        let deadline = match timeout {
            Some(secs) => Some(Instant::now() + parse_seconds(secs)?),
            None => None,
        };
        let me = self.fresh_tokens().await?.user_id;
        if !over(ack.state(), 0) {
            follow(&conn, ack.call_id, me, deadline).await?;
        }
        conn.close().await;
        Ok(())
    }
}

/// Prints the call's events and signals until it ends for `me`, the
/// deadline passes, or the connection closes.
async fn follow(conn: &Connection, call_id: u64, me: u64, deadline: Option<Instant>) -> CliResult {
    let mut last_ping = Instant::now();
    loop {
        let mut wait = PING_EVERY.saturating_sub(last_ping.elapsed());
        if let Some(deadline) = deadline {
            if Instant::now() >= deadline {
                return Ok(());
            }
            wait = wait.min(deadline.saturating_duration_since(Instant::now()));
        }
        let Some(event) = conn.next_event(wait).await else {
            if conn.is_closed() {
                return Ok(());
            }
            if last_ping.elapsed() >= PING_EVERY {
                last_ping = Instant::now();
                conn.ping().await?;
            }
            continue;
        };
        match event.kind {
            Some(Kind::Call(e)) if e.call_id == call_id => {
                print_line(&event_json(&e))?;
                // Another's leaving a group call ends it only for them.
                if over(e.state(), e.group_id) && (e.state() != State::Left || e.user == me) {
                    return Ok(());
                }
            }
            Some(Kind::CallSignal(s)) if s.call_id == call_id => print_line(&signal_json(&s))?,
            _ => {}
        }
    }
}

/// Whether a state ends the call (`group` 0: one-to-one).
fn over(state: State, group: u64) -> bool {
    match state {
        State::Ended | State::Cancelled | State::Busy | State::AnsweredElsewhere => true,
        State::Declined | State::Missed => group == 0,
        State::Left => true,
        _ => false,
    }
}

fn state_name(state: State) -> String {
    state.as_str_name().to_ascii_lowercase()
}

fn ack_json(ack: &CallAck) -> Value {
    json!({ "call_id": ack.call_id.to_string(), "state": state_name(ack.state()) })
}

fn event_json(e: &CallEvent) -> Value {
    let ids = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>();
    json!({
        "call_id": e.call_id.to_string(),
        "state": state_name(e.state()),
        "user": e.user.to_string(),
        "caller": e.caller.to_string(),
        "video": e.video,
        "group_id": (e.group_id != 0).then(|| e.group_id.to_string()),
        "invited": ids(&e.invited),
        "joined": ids(&e.joined),
        "at_ms": e.at_ms,
    })
}

fn signal_json(s: &CallSignal) -> Value {
    let signal = match &s.payload {
        Some(call_signal::Payload::Sdp(sdp)) => json!({ "sdp_type": sdp.r#type, "sdp": sdp.sdp }),
        Some(call_signal::Payload::Ice(ice)) => json!({
            "candidate": ice.candidate,
            "sdp_mid": ice.sdp_mid,
            "sdp_m_line_index": ice.sdp_m_line_index,
        }),
        None => Value::Null,
    };
    json!({
        "call_id": s.call_id.to_string(),
        "signal_from": s.from_user.to_string(),
        "signal": signal,
    })
}
