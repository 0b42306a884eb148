//! `superapp-cli wallet ...`, `transfer ...` and `redpacket ...`: the
//! wallet from a terminal or a script. Each command prints one human line,
//! or with `--json` the server's answer as one JSON object (`wallet
//! history --json`: one entry a line). The payment PIN is `--pin`, or, when
//! absent, asked for on the terminal without echo; it never appears in a
//! URL. Each payment is named by a fresh idempotency key that its retries
//! after a dropped connection reuse, so a retry never pays twice.

use std::io::Write as _;
use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};
use superapp_client::wallet::{
    NewRedPacket, OrderStatus, RedPacket, RedPacketMode, WalletEntry, WalletTransfer,
};
use superapp_client::{ClientError, new_idempotency_key};
use tokio::time::Instant;

use super::{App, CliResult, Failure, print_line};

/// How often a money request is tried when the connection fails, or the
/// server asks to retry, before the command gives up.
const ATTEMPTS: u32 = 3;
/// How long `wallet topup` waits for the provider to confirm the payment.
const PAY_WAIT: Duration = Duration::from_secs(30);
const POLL_EVERY: Duration = Duration::from_millis(200);

#[derive(Subcommand)]
pub(super) enum WalletCommand {
    /// Print your balance (with --json: the PIN's state and today's limits too).
    Balance {
        /// Print the server's answer as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Top up from the payment provider: opens the order, pays it at the
    /// provider's checkout (the sandbox's), waits until it is paid and
    /// prints the new balance.
    Topup {
        /// In fen (100 fen = 1 yuan).
        #[arg(long)]
        amount: i64,
        /// Print the server's answer as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The payment PIN (6 digits) that payments need.
    Pin {
        #[command(subcommand)]
        command: PinCommand,
    },
    /// Withdraw to your bank card (needs a verified real name); prints the order.
    Withdraw {
        /// In fen.
        #[arg(long)]
        amount: i64,
        /// The payment PIN; asked for without echo when absent.
        #[arg(long)]
        pin: Option<String>,
        /// Print the server's answer as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print your wallet's entries, newest first, one per line.
    History {
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// One JSON object per entry.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub(super) enum PinCommand {
    /// Set your payment PIN, or change it (then the current one is needed
    /// too); each is asked for without echo when not given.
    Set {
        #[arg(long)]
        pin: Option<String>,
        #[arg(long)]
        current: Option<String>,
        /// Print the server's answer as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// `transfer --to ID --amount FEN`, or one of these.
#[derive(Subcommand)]
pub(super) enum TransferCommand {
    /// Accept a transfer sent to you: the money is yours.
    Accept {
        #[arg(long)]
        id: u64,
        /// Print the server's answer as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Decline a transfer sent to you: it goes back to its sender.
    Decline {
        #[arg(long)]
        id: u64,
        /// Print the server's answer as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print a transfer you sent or were sent.
    Show {
        #[arg(long)]
        id: u64,
        /// Print the server's answer as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// A transfer to send.
pub(super) struct NewTransfer {
    pub to: u64,
    pub amount: i64,
    pub memo: String,
    pub pin: Option<String>,
    pub json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum Mode {
    /// Random shares.
    Lucky,
    /// Equal shares.
    Equal,
    /// One share, for the member named by --for.
    Exclusive,
}

#[derive(Subcommand)]
pub(super) enum RedPacketCommand {
    /// Send a red packet into a group or your chat with a user; prints it.
    Send {
        #[arg(long, conflicts_with = "to", required_unless_present = "to")]
        group: Option<u64>,
        #[arg(long)]
        to: Option<u64>,
        /// The whole amount, in fen.
        #[arg(long)]
        amount: i64,
        /// How many shares.
        #[arg(long)]
        count: u32,
        #[arg(long, value_enum)]
        mode: Mode,
        /// exclusive: the member who may open it.
        #[arg(long = "for")]
        for_user: Option<u64>,
        #[arg(long, default_value = "")]
        greeting: String,
        /// The payment PIN; asked for without echo when absent.
        #[arg(long)]
        pin: Option<String>,
        /// Print the server's answer as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Grab your share of a red packet; prints what you got.
    Grab {
        #[arg(long)]
        id: u64,
        /// Print the server's answer as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print a red packet: what was taken, by whom, and the luckiest.
    Show {
        #[arg(long)]
        id: u64,
        /// Print the server's answer as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

impl App {
    pub(super) async fn wallet(&self, command: WalletCommand) -> CliResult {
        let tokens = self.fresh_tokens().await?;
        let token = tokens.access_token.as_str();
        match command {
            WalletCommand::Balance { json } => {
                let wallet = self.http.wallet(token).await?;
                answer(json, json!(wallet), || {
                    format!("Balance: {}", yuan(wallet.balance_fen))
                })
            }
            WalletCommand::Topup { amount, json } => {
                let key = new_idempotency_key();
                let started = retrying(|| self.http.top_up(token, amount, &key)).await?;
                self.http.sandbox_pay(&started.pay_url, true).await?;
                let order = self.paid(token, started.order.order_id).await?;
                let wallet = self.http.wallet(token).await?;
                answer(
                    json,
                    json!({ "order": order, "balance_fen": wallet.balance_fen }),
                    || {
                        format!(
                            "Topped up {}: balance {}",
                            yuan(order.amount_fen),
                            yuan(wallet.balance_fen)
                        )
                    },
                )
            }
            WalletCommand::Pin {
                command: PinCommand::Set { pin, current, json },
            } => {
                let wallet = self.http.wallet(token).await?;
                let current = match (current, wallet.pin_set) {
                    (Some(current), _) => Some(current),
                    (None, true) => Some(ask("Current payment PIN: ")?),
                    (None, false) => None,
                };
                let pin = match pin {
                    Some(pin) => pin,
                    None => {
                        let pin = ask("New payment PIN (6 digits): ")?;
                        if ask("Once more: ")? != pin {
                            return Err(Failure::new("pin_mismatch", "the two PINs differ"));
                        }
                        pin
                    }
                };
                self.http
                    .set_wallet_pin(token, &pin, current.as_deref())
                    .await?;
                answer(json, json!({ "pin_set": true }), || {
                    "Payment PIN set".to_string()
                })
            }
            WalletCommand::Withdraw { amount, pin, json } => {
                let pin = pin_or_ask(pin)?;
                let key = new_idempotency_key();
                let order = retrying(|| self.http.withdraw(token, amount, &pin, &key)).await?;
                answer(json, json!(order), || {
                    format!(
                        "Withdrawing {}: order {} ({})",
                        yuan(order.amount_fen),
                        order.order_id,
                        name_of(&order.status)
                    )
                })
            }
            WalletCommand::History { limit, json } => {
                let mut before = None;
                let mut left = limit;
                while left > 0 {
                    let page = self
                        .http
                        .wallet_history(token, before, left.min(100))
                        .await?;
                    for entry in &page.entries {
                        if json {
                            print_line(&json!(entry))?;
                        } else {
                            println!("{}", entry_line(entry));
                        }
                    }
                    left = left.saturating_sub(u32::try_from(page.entries.len()).unwrap_or(left));
                    match page.next {
                        Some(next) => before = Some(next),
                        None => break,
                    }
                }
                Ok(())
            }
        }
    }

    /// Waits until the top-up `order_id` is paid; an order that failed, or
    /// is still open after [`PAY_WAIT`], fails the command.
    async fn paid(&self, token: &str, order_id: u64) -> CliResult<superapp_client::WalletOrder> {
        let deadline = Instant::now() + PAY_WAIT;
        loop {
            let order = self.http.wallet_order(token, order_id).await?;
            match order.status {
                OrderStatus::Paid => return Ok(order),
                OrderStatus::Open if Instant::now() < deadline => {
                    tokio::time::sleep(POLL_EVERY).await;
                }
                OrderStatus::Open => {
                    return Err(Failure::new(
                        "timeout",
                        format!("order {order_id} was not paid within {PAY_WAIT:?}"),
                    ));
                }
                status => {
                    return Err(Failure::new(
                        "top_up_failed",
                        format!("order {order_id} is {}", name_of(&status)),
                    ));
                }
            }
        }
    }

    pub(super) async fn send_transfer(&self, transfer: NewTransfer) -> CliResult {
        let tokens = self.fresh_tokens().await?;
        let token = tokens.access_token.as_str();
        let pin = pin_or_ask(transfer.pin)?;
        let key = new_idempotency_key();
        let sent = retrying(|| {
            self.http.send_transfer(
                token,
                transfer.to,
                transfer.amount,
                &transfer.memo,
                &pin,
                &key,
            )
        })
        .await?;
        answer(transfer.json, json!(sent), || {
            format!(
                "Sent {} to {}: transfer {} ({})",
                yuan(sent.amount_fen),
                sent.to_user,
                sent.transfer_id,
                name_of(&sent.status)
            )
        })
    }

    pub(super) async fn transfer(&self, command: TransferCommand) -> CliResult {
        let tokens = self.fresh_tokens().await?;
        let token = tokens.access_token.as_str();
        let key = new_idempotency_key();
        let (transfer, json, done): (WalletTransfer, bool, &str) = match command {
            TransferCommand::Accept { id, json } => (
                retrying(|| self.http.accept_transfer(token, id, &key)).await?,
                json,
                "Accepted transfer",
            ),
            TransferCommand::Decline { id, json } => (
                retrying(|| self.http.decline_transfer(token, id, &key)).await?,
                json,
                "Declined transfer",
            ),
            TransferCommand::Show { id, json } => (
                self.http.wallet_transfer(token, id).await?,
                json,
                "Transfer",
            ),
        };
        answer(json, json!(transfer), || {
            format!(
                "{done} {}: {} from {} to {} ({})",
                transfer.transfer_id,
                yuan(transfer.amount_fen),
                transfer.from_user,
                transfer.to_user,
                name_of(&transfer.status)
            )
        })
    }

    pub(super) async fn red_packet(&self, command: RedPacketCommand) -> CliResult {
        let tokens = self.fresh_tokens().await?;
        let token = tokens.access_token.as_str();
        match command {
            RedPacketCommand::Send {
                group,
                to,
                amount,
                count,
                mode,
                for_user,
                greeting,
                pin,
                json,
            } => {
                let body = NewRedPacket {
                    group_id: group,
                    to_user: to,
                    amount_fen: amount,
                    count,
                    mode: match mode {
                        Mode::Lucky => RedPacketMode::Lucky,
                        Mode::Equal => RedPacketMode::Equal,
                        Mode::Exclusive => RedPacketMode::Exclusive,
                    },
                    exclusive_to: for_user,
                    greeting,
                    pin: pin_or_ask(pin)?,
                };
                let key = new_idempotency_key();
                let packet = retrying(|| self.http.send_red_packet(token, &body, &key)).await?;
                answer(json, json!(packet), || {
                    format!(
                        "Sent red packet {}: {} in {} {} share{}",
                        packet.packet_id,
                        yuan(packet.amount_fen),
                        packet.count,
                        name_of(&packet.mode),
                        if packet.count == 1 { "" } else { "s" }
                    )
                })
            }
            RedPacketCommand::Grab { id, json } => {
                let key = new_idempotency_key();
                let grabbed = retrying(|| self.http.grab_red_packet(token, id, &key)).await?;
                answer(json, json!(grabbed), || {
                    format!(
                        "Grabbed {} from red packet {} ({})",
                        yuan(grabbed.grab.amount_fen),
                        id,
                        taken(&grabbed.packet)
                    )
                })
            }
            RedPacketCommand::Show { id, json } => {
                let details = self.http.red_packet(token, id).await?;
                answer(json, json!(details), || {
                    let p = &details.packet;
                    let luckiest = details
                        .luckiest
                        .map(|u| format!(", luckiest {u}"))
                        .unwrap_or_default();
                    format!(
                        "Red packet {} from {}: {}, {}{luckiest}",
                        p.packet_id,
                        p.sender,
                        yuan(p.amount_fen),
                        taken(p)
                    )
                })
            }
        }
    }
}

/// Prints `value` as one JSON line, or the human line `human` makes.
fn answer(as_json: bool, value: Value, human: impl FnOnce() -> String) -> CliResult {
    if as_json {
        print_line(&value)
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", human())?;
        out.flush()?;
        Ok(())
    }
}

/// Runs a money request, trying it again with the same idempotency key when
/// the connection failed or the server asked to retry: the server applies
/// it once however often it arrives.
async fn retrying<T, F>(mut call: impl FnMut() -> F) -> Result<T, ClientError>
where
    F: Future<Output = Result<T, ClientError>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(err) if attempt < ATTEMPTS && retryable(&err) => {
                let wait = err.retry_after_ms().unwrap_or(200).min(5_000);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                attempt += 1;
            }
            done => return done,
        }
    }
}

fn retryable(err: &ClientError) -> bool {
    match err {
        ClientError::Http(_) => true,
        ClientError::Api { status, .. } => *status == 503,
        _ => false,
    }
}

/// `pin`, or the PIN asked for on the terminal.
fn pin_or_ask(pin: Option<String>) -> CliResult<String> {
    match pin {
        Some(pin) => Ok(pin),
        None => ask("Payment PIN: "),
    }
}

/// Asks on the terminal, without echo.
fn ask(prompt: &str) -> CliResult<String> {
    rpassword::prompt_password(prompt).map_err(|err| {
        Failure::new(
            "no_terminal",
            format!("cannot ask for the PIN ({err}); pass it with --pin"),
        )
    })
}

/// A snake_case status or mode, as the server spells it.
fn name_of(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => name,
        _ => String::new(),
    }
}

/// How much of a packet is taken: "2 of 3 taken, open".
fn taken(packet: &RedPacket) -> String {
    format!(
        "{} of {} taken, {}",
        packet.claimed,
        packet.count,
        name_of(&packet.status)
    )
}

/// Fen as yuan: `¥12.34`, `-¥0.05`.
fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let abs = fen.unsigned_abs();
    format!("{sign}¥{}.{:02}", abs / 100, abs % 100)
}

/// An entry as one line: when (UTC), how much in or out, why, and what for.
fn entry_line(entry: &WalletEntry) -> String {
    let amount = if entry.amount_fen > 0 {
        format!("+{}", yuan(entry.amount_fen))
    } else {
        yuan(entry.amount_fen)
    };
    format!(
        "{}  {amount:>12}  {}  {}",
        utc(entry.at_ms),
        name_of(&entry.reason),
        entry.reference_id
    )
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` in UTC.
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil, for the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fen_print_as_yuan_with_two_decimals() {
        assert_eq!(yuan(1_234), "¥12.34");
        assert_eq!(yuan(5), "¥0.05");
        assert_eq!(yuan(-100), "-¥1.00");
        assert_eq!(yuan(0), "¥0.00");
    }

    #[test]
    fn times_print_as_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc(1_767_225_599_000), "2025-12-31 23:59:59");
    }

    #[test]
    fn only_a_dropped_connection_or_a_busy_server_is_tried_again() {
        let api = |status| ClientError::Api {
            status,
            code: String::new(),
            message: String::new(),
            retry_after_ms: None,
        };
        assert!(retryable(&api(503)));
        assert!(!retryable(&api(402)));
        assert!(!retryable(&api(409)));
        assert!(!retryable(&ClientError::Decode(String::new())));
    }
}
