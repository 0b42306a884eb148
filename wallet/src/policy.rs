//! The wallet's rules as pure functions, no I/O. Every store backend runs a
//! command the same way, inside one transaction:
//!
//! 1. load the records [`needs`] names (locking them, where the engine locks);
//! 2. load (and lock, in the order given) the balances of [`accounts`];
//! 3. [`decide`]: the refusal, or what to write ([`Applied`]);
//! 4. write it, with the idempotency record when the request has a key.
//!
//! So no backend re-implements a rule, and the reference model of the
//! property tests is checked against the same function.

use rand::Rng;

use crate::error::WalletError;
use crate::model::{
    Account, Applied, Balance, BalanceCap, Command, DailyOut, Entry, EntryId, Fen, Grab, Order,
    OrderId, OrderKind, OrderStatus, OutLimits, Packet, PacketId, PacketMode, PacketStatus,
    PinRecord, Place, Reason, Transfer, TransferId, TransferStatus, UserId,
};

/// The records a command reads, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    pub transfer: Option<TransferId>,
    pub packet: Option<PacketId>,
    /// A user's grab of a packet: whether they already grabbed.
    pub grab: Option<(PacketId, UserId)>,
    pub order: Option<OrderId>,
    /// A user's outgoing total on a day.
    pub daily: Option<(UserId, i64)>,
}

/// The records [`needs`] named, as the store found them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    pub transfer: Option<Transfer>,
    pub packet: Option<Packet>,
    pub grab: Option<Grab>,
    pub order: Option<Order>,
    /// None when the user sent nothing that day yet.
    pub daily: Option<DailyOut>,
}

pub fn needs(command: &Command) -> Needs {
    let daily = |user: UserId, limits: &OutLimits| Some((user, limits.day));
    match command {
        Command::OpenPayIn { order } => Needs {
            order: Some(order.id),
            ..Needs::default()
        },
        Command::CreditPayIn { order, .. }
        | Command::FailPayIn { order }
        | Command::SettlePayout { order, .. }
        | Command::ReversePayout { order } => Needs {
            order: Some(*order),
            ..Needs::default()
        },
        Command::Withdraw { order, limits } => Needs {
            order: Some(order.id),
            daily: daily(order.user, limits),
            ..Needs::default()
        },
        Command::SendTransfer { transfer, limits } => Needs {
            transfer: Some(transfer.id),
            daily: daily(transfer.from, limits),
            ..Needs::default()
        },
        Command::AcceptTransfer { id, .. }
        | Command::DeclineTransfer { id, .. }
        | Command::ExpireTransfer { id } => Needs {
            transfer: Some(*id),
            ..Needs::default()
        },
        Command::SendPacket { packet, limits } => Needs {
            packet: Some(packet.id),
            daily: daily(packet.sender, limits),
            ..Needs::default()
        },
        Command::GrabPacket { id, user, .. } => Needs {
            packet: Some(*id),
            grab: Some((*id, *user)),
            ..Needs::default()
        },
        Command::RefundPacket { id } => Needs {
            packet: Some(*id),
            ..Needs::default()
        },
    }
}

/// The accounts whose balances `command` reads and writes, sorted (a
/// backend that locks rows locks them in this order, so two commands never
/// wait for each other in a cycle). Empty when the records say the command
/// will be refused or moves no money.
pub fn accounts(command: &Command, records: &Records) -> Vec<Account> {
    let mut accounts = match command {
        Command::OpenPayIn { .. } | Command::FailPayIn { .. } => vec![],
        Command::CreditPayIn { .. } => records
            .order
            .iter()
            .map(|o| vec![Account::TopUpClearing, Account::Wallet(o.user)])
            .next()
            .unwrap_or_default(),
        Command::SettlePayout { .. } => vec![Account::PayoutClearing, Account::TopUpClearing],
        Command::ReversePayout { .. } => records
            .order
            .iter()
            .map(|o| vec![Account::PayoutClearing, Account::Wallet(o.user)])
            .next()
            .unwrap_or_default(),
        Command::Withdraw { order, .. } => {
            vec![Account::Wallet(order.user), Account::PayoutClearing]
        }
        Command::SendTransfer { transfer, .. } => vec![
            Account::Wallet(transfer.from),
            Account::TransferEscrow(transfer.id),
        ],
        Command::AcceptTransfer { id, .. }
        | Command::DeclineTransfer { id, .. }
        | Command::ExpireTransfer { id } => records
            .transfer
            .iter()
            .map(|t| {
                vec![
                    Account::TransferEscrow(*id),
                    Account::Wallet(t.from),
                    Account::Wallet(t.to),
                ]
            })
            .next()
            .unwrap_or_default(),
        Command::SendPacket { packet, .. } => {
            vec![
                Account::Wallet(packet.sender),
                Account::PacketEscrow(packet.id),
            ]
        }
        Command::GrabPacket { id, user, .. } => {
            vec![Account::PacketEscrow(*id), Account::Wallet(*user)]
        }
        Command::RefundPacket { id } => records
            .packet
            .iter()
            .map(|p| vec![Account::PacketEscrow(*id), Account::Wallet(p.sender)])
            .next()
            .unwrap_or_default(),
    };
    accounts.sort();
    accounts.dedup();
    accounts
}

/// What `command` does given the records and the balances of
/// [`accounts`] (an account missing from `balances` holds 0): the refusal,
/// or the entry (numbered `entry`), balances and records to write.
pub fn decide(
    command: &Command,
    records: &Records,
    balances: &[Balance],
    entry: EntryId,
    now_ms: i64,
) -> Result<Applied, WalletError> {
    let mut ledger = Ledger {
        balances: balances.to_vec(),
        entry,
        now_ms,
        applied: Applied::default(),
    };
    match command {
        Command::OpenPayIn { order } => {
            if records.order.is_some() {
                return Err(WalletError::Invalid {
                    code: "duplicate_order",
                    reason: "the order exists",
                });
            }
            positive(order.amount)?;
            ledger.applied.order = Some(order.clone());
        }
        Command::CreditPayIn { amount, .. } => {
            let mut order = open_order(records, OrderKind::PayIn)?;
            if *amount != order.amount {
                return Err(WalletError::InvalidAmount {
                    reason: "the paid amount is not the order's",
                });
            }
            ledger.post(
                Reason::TopUp,
                Account::TopUpClearing,
                Account::Wallet(order.user),
                order.amount,
                order.id.0,
            )?;
            order.status = OrderStatus::Paid;
            order.updated_ms = now_ms;
            ledger.applied.order = Some(order);
        }
        Command::FailPayIn { .. } => {
            let mut order = open_order(records, OrderKind::PayIn)?;
            order.status = OrderStatus::Failed;
            order.updated_ms = now_ms;
            ledger.applied.order = Some(order);
        }
        Command::Withdraw { order, limits } => {
            if records.order.is_some() {
                return Err(WalletError::Invalid {
                    code: "duplicate_order",
                    reason: "the order exists",
                });
            }
            positive(order.amount)?;
            ledger.outgoing(records, order.user, order.amount, limits)?;
            ledger.post(
                Reason::Withdrawal,
                Account::Wallet(order.user),
                Account::PayoutClearing,
                order.amount,
                order.id.0,
            )?;
            ledger.applied.order = Some(order.clone());
        }
        Command::SettlePayout { amount, .. } => {
            let mut order = open_order(records, OrderKind::Payout)?;
            if *amount != order.amount {
                return Err(WalletError::InvalidAmount {
                    reason: "the paid-out amount is not the order's",
                });
            }
            ledger.post(
                Reason::PayoutSettled,
                Account::PayoutClearing,
                Account::TopUpClearing,
                order.amount,
                order.id.0,
            )?;
            order.status = OrderStatus::Settled;
            order.updated_ms = now_ms;
            ledger.applied.order = Some(order);
        }
        Command::ReversePayout { .. } => {
            let mut order = open_order(records, OrderKind::Payout)?;
            ledger.post(
                Reason::PayoutReversed,
                Account::PayoutClearing,
                Account::Wallet(order.user),
                order.amount,
                order.id.0,
            )?;
            order.status = OrderStatus::Reversed;
            order.updated_ms = now_ms;
            ledger.applied.order = Some(order);
        }
        Command::SendTransfer { transfer, limits } => {
            if records.transfer.is_some() {
                return Err(WalletError::Invalid {
                    code: "duplicate_transfer",
                    reason: "the transfer exists",
                });
            }
            positive(transfer.amount)?;
            if transfer.from == transfer.to {
                return Err(WalletError::ToSelf);
            }
            ledger.outgoing(records, transfer.from, transfer.amount, limits)?;
            ledger.post(
                Reason::TransferSent,
                Account::Wallet(transfer.from),
                Account::TransferEscrow(transfer.id),
                transfer.amount,
                transfer.id.0,
            )?;
            ledger.applied.transfer = Some(Transfer {
                status: TransferStatus::Pending,
                settled_ms: None,
                ..transfer.clone()
            });
        }
        Command::AcceptTransfer { by, cap, .. } => {
            let transfer = pending_transfer(records, Some(*by), now_ms)?;
            ledger.settle_transfer(transfer, TransferStatus::Accepted, *cap)?;
        }
        Command::DeclineTransfer { by, .. } => {
            let transfer = pending_transfer(records, Some(*by), now_ms)?;
            ledger.settle_transfer(transfer, TransferStatus::Declined, None)?;
        }
        Command::ExpireTransfer { .. } => {
            let transfer = records
                .transfer
                .as_ref()
                .ok_or(WalletError::TransferNotFound)?;
            if transfer.status != TransferStatus::Pending {
                return Err(WalletError::NothingToDo {
                    reason: "the transfer is settled",
                });
            }
            if now_ms < transfer.expires_ms {
                return Err(WalletError::NothingToDo {
                    reason: "the transfer has not expired",
                });
            }
            ledger.settle_transfer(transfer, TransferStatus::Expired, None)?;
        }
        Command::SendPacket { packet, limits } => {
            if records.packet.is_some() {
                return Err(WalletError::Invalid {
                    code: "duplicate_packet",
                    reason: "the packet exists",
                });
            }
            check_drawn(packet)?;
            ledger.outgoing(records, packet.sender, packet.amount, limits)?;
            ledger.post(
                Reason::PacketSent,
                Account::Wallet(packet.sender),
                Account::PacketEscrow(packet.id),
                packet.amount,
                packet.id.0,
            )?;
            ledger.applied.packet = Some(Packet {
                claimed: 0,
                claimed_amount: 0,
                status: PacketStatus::Open,
                best: None,
                refunded: 0,
                ..packet.clone()
            });
        }
        Command::GrabPacket { user, cap, .. } => {
            let mut packet = records.packet.clone().ok_or(WalletError::PacketNotFound)?;
            may_grab(&packet, *user)?;
            if records.grab.is_some() {
                return Err(WalletError::AlreadyGrabbed);
            }
            match packet.status {
                PacketStatus::Open if now_ms < packet.expires_ms => {}
                PacketStatus::Finished => return Err(WalletError::PacketFinished),
                _ => return Err(WalletError::PacketExpired),
            }
            let index = packet.claimed;
            let amount = *usize::try_from(index)
                .ok()
                .and_then(|i| packet.shares.get(i))
                .ok_or(WalletError::PacketFinished)?;
            ledger.post(
                Reason::PacketGrabbed,
                Account::PacketEscrow(packet.id),
                Account::Wallet(*user),
                amount,
                packet.id.0,
            )?;
            ledger.within_cap(*user, *cap)?;
            packet.claimed += 1;
            packet.claimed_amount += amount;
            if packet.best.is_none_or(|(_, best)| amount > best) {
                packet.best = Some((*user, amount));
            }
            if packet.claimed == packet.count() {
                packet.status = PacketStatus::Finished;
            }
            ledger.applied.grab = Some(Grab {
                packet: packet.id,
                user: *user,
                amount,
                index,
                at_ms: now_ms,
            });
            ledger.applied.packet = Some(packet);
        }
        Command::RefundPacket { .. } => {
            let mut packet = records.packet.clone().ok_or(WalletError::PacketNotFound)?;
            if packet.status != PacketStatus::Open {
                return Err(WalletError::NothingToDo {
                    reason: "the packet is closed",
                });
            }
            if now_ms < packet.expires_ms {
                return Err(WalletError::NothingToDo {
                    reason: "the packet has not expired",
                });
            }
            let rest = packet.amount - packet.claimed_amount;
            if rest > 0 {
                ledger.post(
                    Reason::PacketRefunded,
                    Account::PacketEscrow(packet.id),
                    Account::Wallet(packet.sender),
                    rest,
                    packet.id.0,
                )?;
            }
            packet.status = PacketStatus::Refunded;
            packet.refunded = rest;
            ledger.applied.packet = Some(packet);
        }
    }
    Ok(ledger.applied)
}

/// The working state of one [`decide`].
struct Ledger {
    balances: Vec<Balance>,
    entry: EntryId,
    now_ms: i64,
    applied: Applied,
}

impl Ledger {
    fn balance(&self, account: Account) -> Fen {
        self.balances
            .iter()
            .find(|b| b.account == account)
            .map_or(0, |b| b.balance)
    }

    fn set(&mut self, account: Account, balance: Fen) {
        match self.balances.iter_mut().find(|b| b.account == account) {
            Some(b) => b.balance = balance,
            None => self.balances.push(Balance { account, balance }),
        }
        match self
            .applied
            .balances
            .iter_mut()
            .find(|b| b.account == account)
        {
            Some(b) => b.balance = balance,
            None => self.applied.balances.push(Balance { account, balance }),
        }
    }

    /// Writes the command's one entry: `amount` from `debit` to `credit`.
    /// Refused when the debit would take a non-system account below zero.
    fn post(
        &mut self,
        reason: Reason,
        debit: Account,
        credit: Account,
        amount: Fen,
        reference: u64,
    ) -> Result<(), WalletError> {
        positive(amount)?;
        let from = self
            .balance(debit)
            .checked_sub(amount)
            .ok_or(WalletError::InvalidAmount {
                reason: "out of range",
            })?;
        if from < 0 && !debit.may_go_negative() {
            return Err(WalletError::InsufficientFunds);
        }
        let to = self
            .balance(credit)
            .checked_add(amount)
            .ok_or(WalletError::InvalidAmount {
                reason: "out of range",
            })?;
        self.set(debit, from);
        self.set(credit, to);
        self.applied.entry = Some(Entry {
            id: self.entry,
            at_ms: self.now_ms,
            reason,
            debit,
            credit,
            amount,
            reference,
        });
        Ok(())
    }

    /// Checks an outgoing `amount` of `user` against `limits` and counts it
    /// in their day.
    fn outgoing(
        &mut self,
        records: &Records,
        user: UserId,
        amount: Fen,
        limits: &OutLimits,
    ) -> Result<(), WalletError> {
        if amount > limits.per_operation {
            return Err(WalletError::OverOperationLimit {
                max: limits.per_operation,
            });
        }
        let mut daily = records
            .daily
            .filter(|d| d.user == user && d.day == limits.day)
            .unwrap_or(DailyOut {
                user,
                day: limits.day,
                amount: 0,
                count: 0,
            });
        if daily.count >= limits.daily_count {
            return Err(WalletError::OverDailyCount {
                max: limits.daily_count,
            });
        }
        if daily.amount.saturating_add(amount) > limits.daily_amount {
            return Err(WalletError::OverDailyLimit {
                max: limits.daily_amount,
            });
        }
        daily.amount += amount;
        daily.count += 1;
        self.applied.daily = Some(daily);
        Ok(())
    }

    /// Refuses a credit that left `user`'s wallet above their cap.
    fn within_cap(&self, user: UserId, cap: BalanceCap) -> Result<(), WalletError> {
        match cap {
            Some(cap) if self.balance(Account::Wallet(user)) > cap => {
                Err(WalletError::RealNameRequired)
            }
            _ => Ok(()),
        }
    }

    fn settle_transfer(
        &mut self,
        transfer: &Transfer,
        status: TransferStatus,
        cap: BalanceCap,
    ) -> Result<(), WalletError> {
        let (reason, to) = match status {
            TransferStatus::Accepted => (Reason::TransferAccepted, transfer.to),
            TransferStatus::Declined => (Reason::TransferDeclined, transfer.from),
            TransferStatus::Expired | TransferStatus::Pending => {
                (Reason::TransferExpired, transfer.from)
            }
        };
        self.post(
            reason,
            Account::TransferEscrow(transfer.id),
            Account::Wallet(to),
            transfer.amount,
            transfer.id.0,
        )?;
        self.within_cap(to, cap)?;
        self.applied.transfer = Some(Transfer {
            status,
            settled_ms: Some(self.now_ms),
            ..transfer.clone()
        });
        Ok(())
    }
}

fn positive(amount: Fen) -> Result<(), WalletError> {
    if amount > 0 {
        Ok(())
    } else {
        Err(WalletError::InvalidAmount {
            reason: "an amount is at least 1 fen",
        })
    }
}

fn open_order(records: &Records, kind: OrderKind) -> Result<Order, WalletError> {
    let order = records
        .order
        .clone()
        .filter(|o| o.kind == kind)
        .ok_or(WalletError::OrderNotFound)?;
    if order.status != OrderStatus::Open {
        return Err(WalletError::OrderClosed {
            status: order.status.as_str(),
        });
    }
    Ok(order)
}

/// The pending transfer the records hold, if `by` (when given) is its
/// recipient and it has not expired. Someone else's transfer is answered
/// as missing.
fn pending_transfer(
    records: &Records,
    by: Option<UserId>,
    now_ms: i64,
) -> Result<&Transfer, WalletError> {
    let transfer = records
        .transfer
        .as_ref()
        .filter(|t| by.is_none_or(|by| by == t.to))
        .ok_or(WalletError::TransferNotFound)?;
    if transfer.status != TransferStatus::Pending {
        return Err(WalletError::TransferClosed {
            status: transfer.status,
        });
    }
    if now_ms >= transfer.expires_ms {
        return Err(WalletError::TransferClosed {
            status: TransferStatus::Expired,
        });
    }
    Ok(transfer)
}

/// Whether `user` may open `packet` at all (before shares and time).
pub fn may_grab(packet: &Packet, user: UserId) -> Result<(), WalletError> {
    match (packet.place, packet.exclusive_to) {
        (Place::Direct(peer), _) if peer != user => Err(WalletError::NotForYou),
        (_, Some(only)) if only != user => Err(WalletError::NotForYou),
        _ => Ok(()),
    }
}

/// A drawn packet's invariants: at least one share, each at least 1 fen,
/// summing to the amount.
fn check_drawn(packet: &Packet) -> Result<(), WalletError> {
    let sum = packet.shares.iter().try_fold(0i64, |sum, &share| {
        (share >= 1).then(|| sum.checked_add(share)).flatten()
    });
    if packet.shares.is_empty() || sum != Some(packet.amount) {
        return Err(WalletError::InvalidAmount {
            reason: "the shares do not sum to the amount",
        });
    }
    Ok(())
}

/// Limits on red packets, from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketLimits {
    /// Largest amount of one packet.
    pub per_packet: Fen,
    /// Largest share.
    pub per_share: Fen,
    /// Most shares of one packet.
    pub max_count: u32,
}

/// Checks a packet about to be drawn: `count` shares of `amount` in `mode`,
/// in a place of `members` members (the group's count; 2 for a one-to-one
/// chat).
pub fn check_packet(
    amount: Fen,
    count: u32,
    mode: PacketMode,
    place: Place,
    members: u32,
    limits: &PacketLimits,
) -> Result<(), WalletError> {
    let invalid = |reason| WalletError::Invalid {
        code: "invalid_packet",
        reason,
    };
    positive(amount)?;
    if count == 0 {
        return Err(invalid("a packet has at least one share"));
    }
    if matches!(place, Place::Direct(_)) || mode == PacketMode::Exclusive {
        if count != 1 {
            return Err(invalid(
                "a one-to-one or exclusive packet has exactly one share",
            ));
        }
    } else if count > limits.max_count {
        return Err(WalletError::Invalid {
            code: "too_many_shares",
            reason: "more shares than a packet may have",
        });
    } else if count > members {
        return Err(WalletError::Invalid {
            code: "too_many_shares",
            reason: "more shares than the group has members",
        });
    }
    if amount > limits.per_packet {
        return Err(WalletError::OverOperationLimit {
            max: limits.per_packet,
        });
    }
    if amount < Fen::from(count) {
        return Err(WalletError::InvalidAmount {
            reason: "every share is at least 1 fen",
        });
    }
    // The largest equal share is the mean rounded up; lucky shares are
    // drawn within the cap, which is possible while the amount fits `count`
    // capped shares, that is while the mean rounded up is within it too.
    let mean_up = (amount + Fen::from(count) - 1) / Fen::from(count);
    if mean_up > limits.per_share {
        return Err(WalletError::Invalid {
            code: "over_share_limit",
            reason: "a share would pass the per-share limit",
        });
    }
    Ok(())
}

/// Draws a packet's shares, in the order they are handed out.
///
/// - Equal: `amount / count` each, the first `amount % count` one fen more.
/// - Lucky (WeChat's rule): each share is drawn uniformly between 1 fen and
///   twice the mean of what is left, narrowed so that what is left can
///   still be shared (each later share at least 1 fen and at most
///   `per_share`); the last share takes the rest.
/// - Exclusive: one share of the whole amount.
///
/// `amount` and `count` must have passed [`check_packet`].
pub fn split(
    amount: Fen,
    count: u32,
    mode: PacketMode,
    per_share: Fen,
    rng: &mut impl Rng,
) -> Vec<Fen> {
    let n = Fen::from(count.max(1));
    match mode {
        PacketMode::Exclusive => vec![amount],
        PacketMode::Equal => (0..n)
            .map(|i| amount / n + Fen::from(i < amount % n))
            .collect(),
        PacketMode::Lucky => {
            let mut shares = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
            let mut rest = amount;
            for left in (1..=n).rev() {
                if left == 1 {
                    shares.push(rest);
                    break;
                }
                let after = left - 1;
                let low = 1.max(rest - after * per_share);
                let high = (2 * rest / left).min(per_share).min(rest - after);
                let share = if high > low {
                    rng.random_range(low..=high)
                } else {
                    low
                };
                shares.push(share);
                rest -= share;
            }
            shares
        }
    }
}

/// Wrong tries of a payment PIN before it locks.
pub const PIN_TRIES: u32 = 5;

/// Whether a 6-digit PIN is well-formed.
pub fn pin_well_formed(pin: &str) -> bool {
    pin.len() == 6 && pin.bytes().all(|b| b.is_ascii_digit())
}

/// Whether a new PIN is too easy to guess: one digit six times, or a run
/// up or down (123456, 987654), as payment apps refuse.
pub fn pin_weak(pin: &str) -> bool {
    let digits = pin.as_bytes();
    let steps = digits.windows(2).map(|w| i16::from(w[1]) - i16::from(w[0]));
    let steps: Vec<i16> = steps.collect();
    [0, 1, -1]
        .iter()
        .any(|&step| steps.iter().all(|&s| s == step))
}

/// The record once a try is counted, before it is checked: refused while
/// locked; the fifth try in a row since the last right one locks the PIN
/// for `lock_ms` (lifted again if that try is right).
pub fn pin_reserve(
    record: &PinRecord,
    now_ms: i64,
    lock_ms: i64,
) -> Result<PinRecord, WalletError> {
    pin_open(record, now_ms)?;
    let failures = if record.failures >= PIN_TRIES {
        // A lock that ended starts a new count.
        1
    } else {
        record.failures + 1
    };
    Ok(PinRecord {
        failures,
        locked_until_ms: if failures >= PIN_TRIES {
            now_ms + lock_ms
        } else {
            record.locked_until_ms
        },
        updated_ms: now_ms,
        ..record.clone()
    })
}

/// Refuses a try while the PIN is locked.
pub fn pin_open(record: &PinRecord, now_ms: i64) -> Result<(), WalletError> {
    if now_ms < record.locked_until_ms {
        Err(WalletError::PinLocked {
            until_ms: record.locked_until_ms,
        })
    } else {
        Ok(())
    }
}

/// Tries left after `record`'s count.
pub fn pin_tries_left(record: &PinRecord) -> u32 {
    PIN_TRIES.saturating_sub(record.failures)
}

/// Longest idempotency key.
pub const MAX_KEY_BYTES: usize = 64;

/// An idempotency key is 1 to 64 printable ASCII characters.
pub fn key_well_formed(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_BYTES && key.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests;
