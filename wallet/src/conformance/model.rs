//! The ledger against a reference model: random sequences of commands
//! (top-ups, withdrawals settled or reversed, transfers accepted, declined
//! or expired, packets grabbed and refunded, with random users, amounts,
//! caps, times and repeated idempotency keys) go to the store and to
//! [`Model`], the rules written again as plainly as they read, with
//! HashMaps and no use of [`crate::policy::decide`]. Every outcome (which
//! refusal, which entry, which balances) and, after every step, every
//! balance must agree; the balances sum to zero and no wallet is below
//! zero.
//!
//! An [`Op`] is decoded from one random `u64`, so a property test shrinks
//! a failing run by shrinking a vector of numbers.

use std::collections::{HashMap, HashSet};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use super::{Ledger, Store, order, transfer};
use crate::error::WalletError;
use crate::model::{
    Account, Applied, Command, Fen, GroupId, OrderId, OrderKind, OutLimits, Packet, PacketId,
    PacketMode, Place, Reason, TransferId, UserId,
};
use crate::policy;

const DAY_MS: i64 = 86_400_000;
const USERS: u64 = 5;

/// The limits of every outgoing command, on the day of `now_ms`: low
/// enough that the runs meet them.
fn limits(now_ms: i64) -> OutLimits {
    OutLimits {
        day: now_ms.div_euclid(DAY_MS),
        per_operation: 3_000,
        daily_amount: 8_000,
        daily_count: 6,
    }
}

/// One step of a run, decoded from a number by [`Op::decode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Opens a pay-in and credits it (two commands).
    TopUp {
        user: u64,
        amount: Fen,
    },
    OpenPayIn {
        user: u64,
        amount: Fen,
    },
    /// Credits the picked order with its amount plus `delta`.
    CreditPayIn {
        pick: u64,
        delta: Fen,
    },
    FailPayIn {
        pick: u64,
    },
    Withdraw {
        user: u64,
        amount: Fen,
        key: Option<u64>,
    },
    Settle {
        pick: u64,
        delta: Fen,
    },
    Reverse {
        pick: u64,
    },
    Send {
        from: u64,
        to: u64,
        amount: Fen,
        life_ms: i64,
        key: Option<u64>,
    },
    /// `by` None: the transfer's recipient.
    Accept {
        pick: u64,
        by: Option<u64>,
        cap: Option<Fen>,
        key: Option<u64>,
    },
    Decline {
        pick: u64,
        by: Option<u64>,
        key: Option<u64>,
    },
    Expire {
        pick: u64,
    },
    SendPacket {
        sender: u64,
        /// 0: a group; 1: one-to-one with `peer`; 2: exclusive to `peer`.
        place: u64,
        peer: u64,
        count: u32,
        amount: Fen,
        equal: bool,
        seed: u64,
        /// Shares that do not sum to the amount.
        corrupt: bool,
        life_ms: i64,
        key: Option<u64>,
    },
    Grab {
        pick: u64,
        user: u64,
        cap: Option<Fen>,
        key: Option<u64>,
    },
    Refund {
        pick: u64,
    },
    Advance {
        ms: i64,
    },
    /// The clock to the expiry of a picked transfer or packet, or a
    /// millisecond before it (never backwards): the edges where "never
    /// early" is decided.
    AdvanceToExpiry {
        pick: u64,
        packet: bool,
        early: bool,
    },
    /// A keyed step again, as a client's retry: the last one the store
    /// took (a replay), or the last one sent (perhaps refused, then
    /// tried afresh).
    Retry {
        taken: bool,
    },
}

/// Mixed-radix digits of a number.
struct Digits(u64);

impl Digits {
    fn take(&mut self, n: u64) -> u64 {
        let v = self.0 % n;
        self.0 /= n;
        v
    }

    fn user(&mut self) -> u64 {
        1 + self.take(USERS)
    }

    fn key(&mut self) -> Option<u64> {
        match self.take(2) {
            0 => None,
            _ => Some(self.take(16)),
        }
    }

    fn cap(&mut self) -> Option<Fen> {
        match self.take(3) {
            0 => Some(self.take(3_000) as Fen),
            _ => None,
        }
    }
}

impl Op {
    /// The step a number stands for; small numbers are simple steps.
    pub fn decode(word: u64) -> Op {
        let mut d = Digits(word);
        match d.take(16) {
            0 | 1 => Op::TopUp {
                user: d.user(),
                amount: 1 + d.take(5_000) as Fen,
            },
            2 => Op::OpenPayIn {
                user: d.user(),
                amount: d.take(3_000) as Fen,
            },
            3 => Op::CreditPayIn {
                pick: d.take(256),
                delta: [0, 0, 0, 1, -1][d.take(5) as usize],
            },
            4 => Op::FailPayIn { pick: d.take(256) },
            5 => Op::Withdraw {
                user: d.user(),
                amount: 1 + d.take(4_000) as Fen,
                key: d.key(),
            },
            6 => match d.take(2) {
                0 => Op::Settle {
                    pick: d.take(256),
                    delta: [0, 0, 0, 1][d.take(4) as usize],
                },
                _ => Op::Reverse { pick: d.take(256) },
            },
            7 | 8 => Op::Send {
                from: d.user(),
                to: d.user(),
                amount: d.take(4_000) as Fen,
                life_ms: 1 + d.take(3 * 3_600_000) as i64,
                key: d.key(),
            },
            9 => Op::Accept {
                pick: d.take(256),
                by: match d.take(4) {
                    0 => Some(d.user()),
                    _ => None,
                },
                cap: d.cap(),
                key: d.key(),
            },
            10 => match d.take(2) {
                0 => Op::Decline {
                    pick: d.take(256),
                    by: match d.take(4) {
                        0 => Some(d.user()),
                        _ => None,
                    },
                    key: d.key(),
                },
                _ => Op::Expire { pick: d.take(256) },
            },
            11 => {
                let place = d.take(3);
                let count = if place == 0 { 1 + d.take(5) as u32 } else { 1 };
                Op::SendPacket {
                    sender: d.user(),
                    place,
                    peer: d.user(),
                    count,
                    amount: Fen::from(count) + d.take(3_000) as Fen,
                    equal: d.take(2) == 0,
                    seed: d.take(1 << 16),
                    corrupt: d.take(16) == 0,
                    life_ms: 1 + d.take(3 * 3_600_000) as i64,
                    key: d.key(),
                }
            }
            12 | 13 => Op::Grab {
                pick: d.take(256),
                user: d.user(),
                cap: d.cap(),
                key: d.key(),
            },
            14 => Op::Refund { pick: d.take(256) },
            _ => match d.take(3) {
                0 => Op::Retry {
                    taken: d.take(4) != 0,
                },
                1 => Op::Advance {
                    ms: d.take(6 * 3_600_000) as i64,
                },
                _ => Op::AdvanceToExpiry {
                    pick: d.take(256),
                    packet: d.take(2) == 0,
                    early: d.take(2) == 0,
                },
            },
        }
    }

    /// The idempotency key a step carries, if it carries one.
    fn key(&self) -> Option<u64> {
        match self {
            Op::Withdraw { key, .. }
            | Op::Send { key, .. }
            | Op::Accept { key, .. }
            | Op::Decline { key, .. }
            | Op::SendPacket { key, .. }
            | Op::Grab { key, .. } => *key,
            _ => None,
        }
    }
}

/// `n` random steps from `seed`.
pub fn random_ops(seed: u64, n: usize) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random()).collect()
}

#[derive(Debug, Clone)]
struct MOrder {
    user: UserId,
    kind: OrderKind,
    amount: Fen,
    /// "open", "paid", "failed", "settled", "reversed".
    status: &'static str,
}

#[derive(Debug, Clone)]
struct MTransfer {
    from: UserId,
    to: UserId,
    amount: Fen,
    /// "pending", "accepted", "declined", "expired".
    status: &'static str,
    expires_ms: i64,
}

#[derive(Debug, Clone)]
struct MPacket {
    sender: UserId,
    place: Place,
    exclusive_to: Option<UserId>,
    shares: Vec<Fen>,
    amount: Fen,
    grabbed: HashSet<UserId>,
    taken: Fen,
    best: Option<(UserId, Fen)>,
    /// "open", "finished", "refunded".
    status: &'static str,
    expires_ms: i64,
}

/// A movement the model expects: reason, debit, credit, amount.
type Move = (Reason, Account, Account, Fen);

/// The ledger's rules, written again.
#[derive(Debug, Default)]
pub struct Model {
    balances: HashMap<Account, Fen>,
    orders: HashMap<OrderId, MOrder>,
    transfers: HashMap<TransferId, MTransfer>,
    packets: HashMap<PacketId, MPacket>,
    daily: HashMap<(UserId, i64), (Fen, u32)>,
}

fn invalid_amount() -> WalletError {
    WalletError::InvalidAmount { reason: "" }
}

impl Model {
    fn balance(&self, account: Account) -> Fen {
        self.balances.get(&account).copied().unwrap_or(0)
    }

    /// Refuses a debit that would take a wallet or escrow below zero.
    fn can_pay(&self, from: Account, amount: Fen) -> Result<(), WalletError> {
        if from != Account::TopUpClearing && self.balance(from) < amount {
            return Err(WalletError::InsufficientFunds);
        }
        Ok(())
    }

    fn pay(&mut self, reason: Reason, from: Account, to: Account, amount: Fen) -> Move {
        *self.balances.entry(from).or_default() -= amount;
        *self.balances.entry(to).or_default() += amount;
        (reason, from, to, amount)
    }

    /// The day's totals after `amount` more, or the limit it passes.
    fn day_after(
        &self,
        user: UserId,
        amount: Fen,
        l: &OutLimits,
    ) -> Result<(Fen, u32), WalletError> {
        if amount > l.per_operation {
            return Err(WalletError::OverOperationLimit {
                max: l.per_operation,
            });
        }
        let (sum, count) = self.daily.get(&(user, l.day)).copied().unwrap_or((0, 0));
        if count >= l.daily_count {
            return Err(WalletError::OverDailyCount { max: l.daily_count });
        }
        if sum + amount > l.daily_amount {
            return Err(WalletError::OverDailyLimit {
                max: l.daily_amount,
            });
        }
        Ok((sum + amount, count + 1))
    }

    /// What `command` does at `now`: the movement, if any, or the refusal
    /// (and then the model is unchanged).
    pub fn apply(&mut self, command: &Command, now: i64) -> Result<Option<Move>, WalletError> {
        match command {
            Command::OpenPayIn { order } => {
                if order.amount <= 0 {
                    return Err(invalid_amount());
                }
                self.orders.insert(
                    order.id,
                    MOrder {
                        user: order.user,
                        kind: OrderKind::PayIn,
                        amount: order.amount,
                        status: "open",
                    },
                );
                Ok(None)
            }
            Command::CreditPayIn { order, amount } => {
                let o = self.open_order(*order, OrderKind::PayIn)?;
                if *amount != o.amount {
                    return Err(invalid_amount());
                }
                let to = Account::Wallet(o.user);
                let m = self.pay(Reason::TopUp, Account::TopUpClearing, to, o.amount);
                self.set_order(*order, "paid");
                Ok(Some(m))
            }
            Command::FailPayIn { order } => {
                self.open_order(*order, OrderKind::PayIn)?;
                self.set_order(*order, "failed");
                Ok(None)
            }
            Command::Withdraw { order, limits } => {
                if order.amount <= 0 {
                    return Err(invalid_amount());
                }
                let day = self.day_after(order.user, order.amount, limits)?;
                let from = Account::Wallet(order.user);
                self.can_pay(from, order.amount)?;
                self.daily.insert((order.user, limits.day), day);
                self.orders.insert(
                    order.id,
                    MOrder {
                        user: order.user,
                        kind: OrderKind::Payout,
                        amount: order.amount,
                        status: "open",
                    },
                );
                Ok(Some(self.pay(
                    Reason::Withdrawal,
                    from,
                    Account::PayoutClearing,
                    order.amount,
                )))
            }
            Command::SettlePayout { order, amount } => {
                let o = self.open_order(*order, OrderKind::Payout)?;
                if *amount != o.amount {
                    return Err(invalid_amount());
                }
                let m = self.pay(
                    Reason::PayoutSettled,
                    Account::PayoutClearing,
                    Account::TopUpClearing,
                    o.amount,
                );
                self.set_order(*order, "settled");
                Ok(Some(m))
            }
            Command::ReversePayout { order } => {
                let o = self.open_order(*order, OrderKind::Payout)?;
                let m = self.pay(
                    Reason::PayoutReversed,
                    Account::PayoutClearing,
                    Account::Wallet(o.user),
                    o.amount,
                );
                self.set_order(*order, "reversed");
                Ok(Some(m))
            }
            Command::SendTransfer { transfer, limits } => {
                if transfer.amount <= 0 {
                    return Err(invalid_amount());
                }
                if transfer.from == transfer.to {
                    return Err(WalletError::ToSelf);
                }
                let day = self.day_after(transfer.from, transfer.amount, limits)?;
                let from = Account::Wallet(transfer.from);
                self.can_pay(from, transfer.amount)?;
                self.daily.insert((transfer.from, limits.day), day);
                self.transfers.insert(
                    transfer.id,
                    MTransfer {
                        from: transfer.from,
                        to: transfer.to,
                        amount: transfer.amount,
                        status: "pending",
                        expires_ms: transfer.expires_ms,
                    },
                );
                Ok(Some(self.pay(
                    Reason::TransferSent,
                    from,
                    Account::TransferEscrow(transfer.id),
                    transfer.amount,
                )))
            }
            Command::AcceptTransfer { id, by, cap } => {
                let t = self.pending_for(*id, *by, now)?;
                let after = self.balance(Account::Wallet(t.to)) + t.amount;
                if cap.is_some_and(|cap| after > cap) {
                    return Err(WalletError::RealNameRequired);
                }
                Ok(Some(self.close_transfer(*id, "accepted")))
            }
            Command::DeclineTransfer { id, by } => {
                self.pending_for(*id, *by, now)?;
                Ok(Some(self.close_transfer(*id, "declined")))
            }
            Command::ExpireTransfer { id } => {
                let t = self
                    .transfers
                    .get(id)
                    .ok_or(WalletError::TransferNotFound)?;
                if t.status != "pending" || now < t.expires_ms {
                    return Err(WalletError::NothingToDo { reason: "" });
                }
                Ok(Some(self.close_transfer(*id, "expired")))
            }
            Command::SendPacket { packet, limits } => {
                let sum: Fen = packet.shares.iter().sum();
                if packet.shares.is_empty()
                    || packet.shares.iter().any(|&s| s < 1)
                    || sum != packet.amount
                {
                    return Err(invalid_amount());
                }
                let day = self.day_after(packet.sender, packet.amount, limits)?;
                let from = Account::Wallet(packet.sender);
                self.can_pay(from, packet.amount)?;
                self.daily.insert((packet.sender, limits.day), day);
                self.packets.insert(
                    packet.id,
                    MPacket {
                        sender: packet.sender,
                        place: packet.place,
                        exclusive_to: packet.exclusive_to,
                        shares: packet.shares.clone(),
                        amount: packet.amount,
                        grabbed: HashSet::new(),
                        taken: 0,
                        best: None,
                        status: "open",
                        expires_ms: packet.expires_ms,
                    },
                );
                Ok(Some(self.pay(
                    Reason::PacketSent,
                    from,
                    Account::PacketEscrow(packet.id),
                    packet.amount,
                )))
            }
            Command::GrabPacket { id, user, cap } => {
                let p = self.packets.get(id).ok_or(WalletError::PacketNotFound)?;
                let not_theirs = match (p.place, p.exclusive_to) {
                    (Place::Direct(peer), _) => peer != *user,
                    (_, Some(only)) => only != *user,
                    _ => false,
                };
                if not_theirs {
                    return Err(WalletError::NotForYou);
                }
                if p.grabbed.contains(user) {
                    return Err(WalletError::AlreadyGrabbed);
                }
                match p.status {
                    "finished" => return Err(WalletError::PacketFinished),
                    "open" if now < p.expires_ms => {}
                    _ => return Err(WalletError::PacketExpired),
                }
                let share = p.shares[p.grabbed.len()];
                let after = self.balance(Account::Wallet(*user)) + share;
                if cap.is_some_and(|cap| after > cap) {
                    return Err(WalletError::RealNameRequired);
                }
                let m = self.pay(
                    Reason::PacketGrabbed,
                    Account::PacketEscrow(*id),
                    Account::Wallet(*user),
                    share,
                );
                let p = self.packets.get_mut(id).expect("found above");
                p.grabbed.insert(*user);
                p.taken += share;
                if p.best.is_none_or(|(_, best)| share > best) {
                    p.best = Some((*user, share));
                }
                if p.grabbed.len() == p.shares.len() {
                    p.status = "finished";
                }
                Ok(Some(m))
            }
            Command::RefundPacket { id } => {
                let p = self.packets.get(id).ok_or(WalletError::PacketNotFound)?;
                if p.status != "open" || now < p.expires_ms {
                    return Err(WalletError::NothingToDo { reason: "" });
                }
                let (rest, sender) = (p.amount - p.taken, p.sender);
                self.packets.get_mut(id).expect("found above").status = "refunded";
                Ok((rest > 0).then(|| {
                    self.pay(
                        Reason::PacketRefunded,
                        Account::PacketEscrow(*id),
                        Account::Wallet(sender),
                        rest,
                    )
                }))
            }
        }
    }

    fn open_order(&self, id: OrderId, kind: OrderKind) -> Result<MOrder, WalletError> {
        let o = self
            .orders
            .get(&id)
            .filter(|o| o.kind == kind)
            .ok_or(WalletError::OrderNotFound)?;
        if o.status != "open" {
            return Err(WalletError::OrderClosed { status: o.status });
        }
        Ok(o.clone())
    }

    fn set_order(&mut self, id: OrderId, status: &'static str) {
        if let Some(o) = self.orders.get_mut(&id) {
            o.status = status;
        }
    }

    /// The transfer `by` may accept or decline now.
    fn pending_for(&self, id: TransferId, by: UserId, now: i64) -> Result<MTransfer, WalletError> {
        let t = self
            .transfers
            .get(&id)
            .filter(|t| t.to == by)
            .ok_or(WalletError::TransferNotFound)?;
        let status = match t.status {
            "pending" if now >= t.expires_ms => "expired",
            other => other,
        };
        if status != "pending" {
            return Err(WalletError::TransferClosed {
                status: transfer_status(status),
            });
        }
        Ok(t.clone())
    }

    fn close_transfer(&mut self, id: TransferId, status: &'static str) -> Move {
        let t = self.transfers.get_mut(&id).expect("checked by the caller");
        t.status = status;
        let (reason, to) = match status {
            "accepted" => (Reason::TransferAccepted, t.to),
            "declined" => (Reason::TransferDeclined, t.from),
            _ => (Reason::TransferExpired, t.from),
        };
        let amount = t.amount;
        self.pay(
            reason,
            Account::TransferEscrow(id),
            Account::Wallet(to),
            amount,
        )
    }
}

fn transfer_status(s: &str) -> crate::model::TransferStatus {
    use crate::model::TransferStatus as T;
    match s {
        "accepted" => T::Accepted,
        "declined" => T::Declined,
        "expired" => T::Expired,
        _ => T::Pending,
    }
}

/// Whether two refusals are the same outcome: the same code, and the same
/// status or limit where the refusal names one.
fn same(a: &WalletError, b: &WalletError) -> bool {
    use WalletError as E;
    a.code() == b.code()
        && match (a, b) {
            (E::TransferClosed { status: x }, E::TransferClosed { status: y }) => x == y,
            (E::OrderClosed { status: x }, E::OrderClosed { status: y }) => x == y,
            (E::OverOperationLimit { max: x }, E::OverOperationLimit { max: y })
            | (E::OverDailyLimit { max: x }, E::OverDailyLimit { max: y }) => x == y,
            (E::OverDailyCount { max: x }, E::OverDailyCount { max: y }) => x == y,
            _ => true,
        }
}

/// A run in progress: the store, the model, and what the picks choose from.
struct Run {
    l: Ledger,
    model: Model,
    now: i64,
    orders: Vec<OrderId>,
    transfers: Vec<TransferId>,
    packets: Vec<PacketId>,
    /// First results of keyed requests, by (user, key): the fingerprint
    /// and what the store answered.
    keys: HashMap<(u64, String), (String, Applied)>,
    last_keyed: Option<Op>,
    /// The last keyed step the store took.
    last_taken: Option<Op>,
    /// Outcomes seen, by code ("ok" for a success): the run's coverage.
    seen: HashMap<&'static str, u32>,
}

fn pick<T: Copy>(list: &[T], pick: u64, missing: T) -> T {
    if list.is_empty() {
        missing
    } else {
        list[(pick as usize) % list.len()]
    }
}

impl Run {
    /// The commands of `op` (one, or two for a top-up), minting new ids.
    /// Picks choose among the orders, transfers and packets the store
    /// took, or name one that does not exist while there are none.
    fn commands(&self, op: &Op) -> Vec<(Command, Option<u64>)> {
        let now = self.now;
        let id = self.l.id();
        let missing_order = OrderId(7);
        match *op {
            Op::TopUp { user, amount } => {
                vec![
                    (
                        Command::OpenPayIn {
                            order: order(id, user, OrderKind::PayIn, amount, now),
                        },
                        None,
                    ),
                    (
                        Command::CreditPayIn {
                            order: OrderId(id),
                            amount,
                        },
                        None,
                    ),
                ]
            }
            Op::OpenPayIn { user, amount } => {
                vec![(
                    Command::OpenPayIn {
                        order: order(id, user, OrderKind::PayIn, amount, now),
                    },
                    None,
                )]
            }
            Op::CreditPayIn { pick: p, delta } => {
                let o = pick(&self.orders, p, missing_order);
                let amount = self.model.orders.get(&o).map_or(1, |o| o.amount) + delta;
                vec![(Command::CreditPayIn { order: o, amount }, None)]
            }
            Op::FailPayIn { pick: p } => vec![(
                Command::FailPayIn {
                    order: pick(&self.orders, p, missing_order),
                },
                None,
            )],
            Op::Withdraw { user, amount, .. } => {
                vec![(
                    Command::Withdraw {
                        order: order(id, user, OrderKind::Payout, amount, now),
                        limits: limits(now),
                    },
                    Some(user),
                )]
            }
            Op::Settle { pick: p, delta } => {
                let o = pick(&self.orders, p, missing_order);
                let amount = self.model.orders.get(&o).map_or(1, |o| o.amount) + delta;
                vec![(Command::SettlePayout { order: o, amount }, None)]
            }
            Op::Reverse { pick: p } => vec![(
                Command::ReversePayout {
                    order: pick(&self.orders, p, missing_order),
                },
                None,
            )],
            Op::Send {
                from,
                to,
                amount,
                life_ms,
                ..
            } => {
                vec![(
                    Command::SendTransfer {
                        transfer: transfer(id, from, to, amount, now, now + life_ms),
                        limits: limits(now),
                    },
                    Some(from),
                )]
            }
            Op::Accept {
                pick: p, by, cap, ..
            } => {
                let t = pick(&self.transfers, p, TransferId(7));
                let by = self.by(t, by);
                vec![(
                    Command::AcceptTransfer {
                        id: t,
                        by: UserId(by),
                        cap,
                    },
                    Some(by),
                )]
            }
            Op::Decline { pick: p, by, .. } => {
                let t = pick(&self.transfers, p, TransferId(7));
                let by = self.by(t, by);
                vec![(
                    Command::DeclineTransfer {
                        id: t,
                        by: UserId(by),
                    },
                    Some(by),
                )]
            }
            Op::Expire { pick: p } => vec![(
                Command::ExpireTransfer {
                    id: pick(&self.transfers, p, TransferId(7)),
                },
                None,
            )],
            Op::SendPacket {
                sender,
                place,
                peer,
                count,
                amount,
                equal,
                seed,
                corrupt,
                life_ms,
                ..
            } => {
                let mode = match (place, equal) {
                    (2, _) => PacketMode::Exclusive,
                    (_, true) => PacketMode::Equal,
                    _ => PacketMode::Lucky,
                };
                let mut shares = policy::split(
                    amount,
                    count,
                    mode,
                    amount,
                    &mut StdRng::seed_from_u64(seed),
                );
                if corrupt {
                    shares[0] += 1;
                }
                let packet = Packet {
                    place: match place {
                        1 => Place::Direct(UserId(peer)),
                        _ => Place::Group(GroupId(3)),
                    },
                    mode,
                    exclusive_to: (place == 2).then_some(UserId(peer)),
                    amount,
                    ..super::packet(
                        id,
                        sender,
                        Place::Group(GroupId(3)),
                        shares,
                        now,
                        now + life_ms,
                    )
                };
                vec![(
                    Command::SendPacket {
                        packet,
                        limits: limits(now),
                    },
                    Some(sender),
                )]
            }
            Op::Grab {
                pick: p, user, cap, ..
            } => vec![(
                Command::GrabPacket {
                    id: pick(&self.packets, p, PacketId(7)),
                    user: UserId(user),
                    cap,
                },
                Some(user),
            )],
            Op::Refund { pick: p } => vec![(
                Command::RefundPacket {
                    id: pick(&self.packets, p, PacketId(7)),
                },
                None,
            )],
            Op::Advance { .. } | Op::AdvanceToExpiry { .. } | Op::Retry { .. } => vec![],
        }
    }

    /// Who acts on transfer `t`: `by`, or its recipient.
    fn by(&self, t: TransferId, by: Option<u64>) -> u64 {
        by.unwrap_or_else(|| self.model.transfers.get(&t).map_or(1, |t| t.to.0))
    }

    async fn step(&mut self, op: &Op, index: usize) {
        let op = match op {
            Op::Advance { ms } => {
                self.now += ms;
                return;
            }
            &Op::AdvanceToExpiry {
                pick: p,
                packet,
                early,
            } => {
                let expiry = if packet {
                    let id = pick(&self.packets, p, PacketId(7));
                    self.model.packets.get(&id).map(|p| p.expires_ms)
                } else {
                    let id = pick(&self.transfers, p, TransferId(7));
                    self.model.transfers.get(&id).map(|t| t.expires_ms)
                };
                if let Some(expiry) = expiry {
                    self.now = self.now.max(expiry - i64::from(early));
                }
                return;
            }
            Op::Retry { taken } => {
                let last = if *taken {
                    &self.last_taken
                } else {
                    &self.last_keyed
                };
                match last.clone() {
                    Some(op) => op,
                    None => return,
                }
            }
            op => op.clone(),
        };
        let fingerprint = format!("{op:?}");
        let key = op.key();
        if key.is_some() {
            self.last_keyed = Some(op.clone());
        }
        for (command, user) in self.commands(&op) {
            let keyed = key.zip(user).map(|(k, u)| (u, format!("k{k}")));
            let result = match &keyed {
                Some((user, k)) => {
                    self.l
                        .keyed(command.clone(), *user, k, &fingerprint, self.now)
                        .await
                }
                None => self.l.run(command.clone(), self.now).await,
            };
            let context = || format!("step {index}: {op:?} at {}: {command:?}", self.now);
            if let Some(first) = keyed.as_ref().and_then(|k| self.keys.get(k)) {
                let (fp, applied) = first;
                if *fp == fingerprint {
                    let replay =
                        result.unwrap_or_else(|e| panic!("{}: a replay failed: {e:?}", context()));
                    assert!(replay.replayed, "{}", context());
                    assert_eq!(
                        Applied {
                            replayed: false,
                            ..replay
                        },
                        *applied,
                        "{}",
                        context()
                    );
                    *self.seen.entry("replayed").or_default() += 1;
                } else {
                    assert!(
                        matches!(result, Err(WalletError::IdempotencyKeyReused)),
                        "{}: {result:?}",
                        context()
                    );
                    *self.seen.entry("idempotency_key_reused").or_default() += 1;
                }
                continue;
            }
            let expected = self.model.apply(&command, self.now);
            match (expected, result) {
                (Ok(movement), Ok(applied)) => {
                    let entry = applied
                        .entry
                        .as_ref()
                        .map(|e| (e.reason, e.debit, e.credit, e.amount));
                    assert_eq!(entry, movement, "{}", context());
                    for b in &applied.balances {
                        assert_eq!(
                            b.balance,
                            self.model.balance(b.account),
                            "{}: {}",
                            context(),
                            b.account
                        );
                    }
                    match &command {
                        Command::OpenPayIn { order } | Command::Withdraw { order, .. } => {
                            self.orders.push(order.id);
                        }
                        Command::SendTransfer { transfer, .. } => self.transfers.push(transfer.id),
                        Command::SendPacket { packet, .. } => self.packets.push(packet.id),
                        _ => {}
                    }
                    if let Some(k) = keyed {
                        self.last_taken = Some(op.clone());
                        self.keys.insert(k, (fingerprint.clone(), applied));
                    }
                    *self.seen.entry("ok").or_default() += 1;
                }
                (Err(want), Err(got)) => {
                    assert!(
                        same(&want, &got),
                        "{}: expected {want:?}, got {got:?}",
                        context()
                    );
                    *self.seen.entry(want.code()).or_default() += 1;
                }
                (want, got) => panic!("{}: expected {want:?}, got {got:?}", context()),
            }
        }
        self.check_balances(index).await;
    }

    /// Every balance the store holds is the model's, each is the sum of its
    /// entries, they sum to zero, and no wallet or escrow is below zero.
    async fn check_balances(&self, index: usize) {
        let audit = self.l.store.audit().await.unwrap();
        assert!(audit.malformed_entries.is_empty(), "step {index}");
        let mut total = 0i128;
        let mut seen = HashSet::new();
        for &(account, stored, sum) in &audit.accounts {
            assert_eq!(stored, sum, "step {index}: {account}");
            assert_eq!(
                stored,
                self.model.balance(account),
                "step {index}: {account}"
            );
            assert!(
                stored >= 0 || account == Account::TopUpClearing,
                "step {index}: {account}"
            );
            total += i128::from(stored);
            seen.insert(account);
        }
        assert_eq!(total, 0, "step {index}");
        for (account, &balance) in &self.model.balances {
            assert!(
                balance == 0 || seen.contains(account),
                "step {index}: {account} missing"
            );
        }
    }
}

/// Runs the steps the numbers of `ops` stand for ([`Op::decode`]) against
/// the store and the model, and answers how often each outcome came.
pub async fn run_ops(store: Store, ops: &[u64]) -> HashMap<&'static str, u32> {
    let mut run = Run {
        l: Ledger::new(store),
        model: Model::default(),
        now: 0,
        orders: Vec::new(),
        transfers: Vec::new(),
        packets: Vec::new(),
        keys: HashMap::new(),
        last_keyed: None,
        last_taken: None,
        seen: HashMap::new(),
    };
    for (index, &word) in ops.iter().enumerate() {
        run.step(&Op::decode(word), index).await;
    }
    run.seen
}

/// [`run_ops`] on `steps` random steps from `seed`, asserting that the run
/// met the outcomes that matter (successes, replays, refusals of funds).
pub async fn ledger_matches_the_model(store: Store, seed: u64, steps: usize) {
    let seen = run_ops(store, &random_ops(seed, steps)).await;
    println!("model run of {steps} steps from seed {seed:#x}: outcomes {seen:?}");
    for outcome in ["ok", "insufficient_funds", "nothing_to_do"] {
        assert!(seen.contains_key(outcome), "{outcome} never came: {seen:?}");
    }
}
