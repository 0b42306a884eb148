//! The wallet's operations: validate, check the PIN and the limits, ask the
//! other rooms what only they know (who exists, who may message whom, who
//! is in a group), apply the command through the store, then write the
//! card into the chat and tell those concerned live.
//!
//! Every request of a user that moves money carries an idempotency key:
//! its repeat with the same parameters answers the first result, whether
//! the first finished a moment or a crash ago, and writes the chat card
//! again (the chat stores it once by its own key), so a client that lost an
//! answer retries until it has one. The parameters are the client's; ids
//! the server draws are not part of the fingerprint.
//!
//! - [`pin`]: the payment PIN's hashing, tries and lock.
//! - [`cards`]: the cards written into chats and the live events.
//! - [`jobs`]: expiry of transfers and packets, the sweep of old keys.
//! - [`reconcile`]: the reconciliation of the ledger.

mod cards;
mod jobs;
mod pin;
mod reconcile;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use superapp_kit::bus::SharedBus;
use superapp_kit::clock::SharedClock;
use superapp_kit::ids::IdGen;
use superapp_kit::ratelimit::TokenBucket;

pub use crate::provider::CallbackHeaders;
pub use reconcile::{Reconciliation, check as reconcile};

use crate::config::WalletConfig;
use crate::error::WalletError;
use crate::model::{
    Account, Applied, BalanceCap, Command, Entry, EntryId, Fen, Grab, IdemKey, Order, OrderId,
    OrderKind, OrderStatus, OutLimits, Packet, PacketId, PacketMode, PacketStatus, Place, Transfer,
    TransferId, TransferStatus, UserId,
};
use crate::policy;
use crate::ports::{Chats, People, Person};
use crate::provider::sandbox::SandboxProvider;
use crate::provider::{CallbackEvent, PayIn, PaymentProvider, Payout};
use crate::store::{CallbackLog, Request, WalletStore};

/// What the wallet is built from; the binary wires each.
pub struct WalletDeps {
    pub store: Arc<dyn WalletStore>,
    pub provider: Arc<dyn PaymentProvider>,
    /// The same provider when it is the sandbox, whose checkout the edge
    /// serves.
    pub sandbox: Option<Arc<SandboxProvider>>,
    pub people: Arc<dyn People>,
    pub chats: Arc<dyn Chats>,
    pub bus: SharedBus,
    pub clock: SharedClock,
    pub ids: Arc<IdGen>,
    pub config: WalletConfig,
}

pub struct Wallet {
    store: Arc<dyn WalletStore>,
    provider: Arc<dyn PaymentProvider>,
    sandbox: Option<Arc<SandboxProvider>>,
    people: Arc<dyn People>,
    chats: Arc<dyn Chats>,
    bus: SharedBus,
    clock: SharedClock,
    ids: Arc<IdGen>,
    config: WalletConfig,
    pins: pin::Pins,
    /// Each wallet's velocity bucket. In memory: a velocity limit guards
    /// against bursts, not money (the daily limits are in the ledger).
    velocity: Mutex<HashMap<UserId, TokenBucket>>,
    /// Where each packet grabbed lately was sent, with its sender: facts
    /// that never change, asked at every grab, so a hot packet's grabs do
    /// not read it and its grabs for them.
    places: Mutex<HashMap<PacketId, (UserId, Place)>>,
}

/// Packets whose place is remembered at most (all are forgotten at the
/// bound; each costs one read again).
const MAX_PLACES: usize = 100_000;

/// A wallet as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub balance: Fen,
    pub pin_set: bool,
    /// While the PIN is locked after wrong tries.
    pub pin_locked_until_ms: Option<i64>,
    pub real_name_verified: bool,
    /// The limits that apply to the owner today.
    pub limits: OutLimits,
    pub spent_today: Fen,
    pub sent_today: u32,
    /// The most the wallet may hold, without a verified real name.
    pub unverified_cap: Option<Fen>,
}

/// A top-up opened with the provider: pay it at `pay_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopUp {
    pub order: Order,
    pub pay_url: String,
}

/// A red packet to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPacket {
    pub place: Place,
    pub amount: Fen,
    pub count: u32,
    pub mode: PacketMode,
    pub exclusive_to: Option<UserId>,
    pub greeting: String,
}

/// A grab, and the packet after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grabbed {
    pub grab: Grab,
    pub packet: Packet,
}

/// A packet with its grabs, as those who may see it see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketView {
    pub packet: Packet,
    pub grabs: Vec<Grab>,
    /// Once every share was taken: who got the most (the earliest among
    /// equals).
    pub luckiest: Option<UserId>,
}

/// A journal entry with what it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryDetail {
    pub entry: Entry,
    pub transfer: Option<Transfer>,
    pub packet: Option<Packet>,
    pub order: Option<Order>,
}

/// Longest transfer memo and packet greeting, in characters.
pub const MAX_NOTE_CHARS: usize = 100;
/// Most history entries per page.
pub const MAX_PAGE: u32 = 100;

impl Wallet {
    pub fn new(deps: WalletDeps) -> Self {
        Self {
            pins: pin::Pins::new(deps.config.pin_lock_secs),
            store: deps.store,
            provider: deps.provider,
            sandbox: deps.sandbox,
            people: deps.people,
            chats: deps.chats,
            bus: deps.bus,
            clock: deps.clock,
            ids: deps.ids,
            config: deps.config,
            velocity: Mutex::new(HashMap::new()),
            places: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &WalletConfig {
        &self.config
    }

    pub async fn summary(&self, user: UserId) -> Result<Summary, WalletError> {
        let person = self.person(user).await?;
        let now = self.clock.now_ms();
        let limits = self.config.out_limits(person.created_ms, now);
        let balance = self.store.balance(Account::Wallet(user)).await?;
        let pin = self.store.pin(user).await?;
        let daily = self.store.daily(user, limits.day).await?;
        Ok(Summary {
            balance,
            pin_set: pin.is_some(),
            pin_locked_until_ms: pin.map(|p| p.locked_until_ms).filter(|&until| until > now),
            real_name_verified: person.real_name_verified,
            limits,
            spent_today: daily.map_or(0, |d| d.amount),
            sent_today: daily.map_or(0, |d| d.count),
            unverified_cap: self.cap(&person),
        })
    }

    /// Sets the payment PIN; `current` is required (and checked, as a
    /// payment's PIN is) once one is set.
    pub async fn set_pin(
        &self,
        user: UserId,
        current: Option<&str>,
        new_pin: &str,
    ) -> Result<(), WalletError> {
        self.person(user).await?;
        if !policy::pin_well_formed(new_pin) {
            return Err(WalletError::InvalidPin);
        }
        if policy::pin_weak(new_pin) {
            return Err(WalletError::Invalid {
                code: "weak_pin",
                reason: "a PIN of one digit, or a run like 123456, is too easy to guess",
            });
        }
        if self.store.pin(user).await?.is_some() {
            let current = current.ok_or(WalletError::Invalid {
                code: "current_pin_required",
                reason: "give the current PIN to change it",
            })?;
            self.check_pin(user, current).await?;
        }
        self.pins
            .set(&*self.store, user, new_pin, self.clock.now_ms())
            .await
    }

    pub async fn top_up(&self, user: UserId, amount: Fen, key: &str) -> Result<TopUp, WalletError> {
        let key = self.key(user, key, &format!("top_up\n{amount}"))?;
        let person = self.person(user).await?;
        if let Some(cap) = self.cap(&person) {
            let balance = self.store.balance(Account::Wallet(user)).await?;
            if balance.saturating_add(amount) > cap {
                return Err(WalletError::RealNameRequired);
            }
        }
        let now = self.clock.now_ms();
        let order = Order {
            id: OrderId(self.ids.next()),
            user,
            kind: OrderKind::PayIn,
            amount,
            status: OrderStatus::Open,
            provider: self.provider.name().to_string(),
            provider_ref: String::new(),
            created_ms: now,
            updated_ms: now,
        };
        let applied = self.apply(Command::OpenPayIn { order }, Some(key)).await?;
        let mut order = applied.order.ok_or_else(missing)?;
        // The provider answers the same for the same order id, so a retry
        // that reaches here again gets the same checkout.
        let start = self
            .provider
            .open_pay_in(PayIn {
                order_id: order.id.0,
                user,
                amount_fen: order.amount,
            })
            .await
            .map_err(|e| WalletError::ProviderUnavailable(e.to_string()))?;
        if order.provider_ref != start.provider_ref {
            self.store
                .set_provider_ref(order.id, order.provider.clone(), start.provider_ref.clone())
                .await?;
            order.provider_ref = start.provider_ref;
        }
        Ok(TopUp {
            order,
            pay_url: start.pay_url,
        })
    }

    /// A withdrawal to the user's bank card: needs a verified real name.
    /// The money leaves the wallet for payout clearing at once; the
    /// provider's callback settles or reverses it. When the provider cannot
    /// be reached, the order stays open with its money in clearing, and a
    /// retry with the same key asks the provider again.
    pub async fn withdraw(
        &self,
        user: UserId,
        amount: Fen,
        pin: &str,
        key: &str,
    ) -> Result<Order, WalletError> {
        let key = self.key(user, key, &format!("withdraw\n{amount}"))?;
        let person = self.person(user).await?;
        if !person.real_name_verified {
            return Err(WalletError::RealNameRequired);
        }
        self.check_pin(user, pin).await?;
        self.take_velocity(user)?;
        let now = self.clock.now_ms();
        let order = Order {
            id: OrderId(self.ids.next()),
            user,
            kind: OrderKind::Payout,
            amount,
            status: OrderStatus::Open,
            provider: self.provider.name().to_string(),
            provider_ref: String::new(),
            created_ms: now,
            updated_ms: now,
        };
        let limits = self.config.out_limits(person.created_ms, now);
        let applied = self
            .apply(Command::Withdraw { order, limits }, Some(key))
            .await?;
        let order = applied.order.clone().ok_or_else(missing)?;
        self.tell_balances(&applied);
        // Asked of the provider only while the order is open and the
        // provider has no reference for it yet (a replay of a withdrawal
        // the provider settled meanwhile must not pay out again).
        let current = self.store.order(order.id).await?.ok_or_else(missing)?;
        if current.status != OrderStatus::Open || !current.provider_ref.is_empty() {
            return Ok(current);
        }
        let provider_ref = self
            .provider
            .open_payout(Payout {
                order_id: order.id.0,
                user,
                amount_fen: order.amount,
            })
            .await
            .map_err(|e| WalletError::ProviderUnavailable(e.to_string()))?;
        self.store
            .set_provider_ref(order.id, current.provider.clone(), provider_ref.clone())
            .await?;
        Ok(Order {
            provider_ref,
            ..current
        })
    }

    /// The order, if it is `user`'s.
    pub async fn order(&self, user: UserId, id: OrderId) -> Result<Order, WalletError> {
        self.store
            .order(id)
            .await?
            .filter(|o| o.user == user)
            .ok_or(WalletError::OrderNotFound)
    }

    /// The provider's header names: (timestamp, nonce, signature).
    pub fn callback_header_names(&self) -> [&'static str; 3] {
        self.provider.header_names()
    }

    /// A provider's callback. Verified (signature, age), then its nonce is
    /// spent, then its event applied: a paid pay-in is credited once
    /// however often its callback arrives (a repeat is answered Ok so the
    /// provider stops), and an amount that is not the order's is refused.
    /// Every callback is logged with what became of it.
    pub async fn callback(
        &self,
        headers: &CallbackHeaders,
        body: &[u8],
    ) -> Result<(), WalletError> {
        let now = self.clock.now_ms();
        let digest = hex(&Sha256::digest(body));
        let log = |nonce: &str, verdict: &str, order: Option<OrderId>| CallbackLog {
            received_ms: now,
            nonce: nonce.to_string(),
            verdict: verdict.to_string(),
            order,
            body_sha256: digest.clone(),
        };
        let callback = match self.provider.verify(headers, body, now) {
            Ok(callback) => callback,
            Err(refusal) => {
                let code = refusal.code();
                tracing::warn!(code, "a provider callback was refused");
                self.store
                    .log_callback(log(&headers.nonce, code, None))
                    .await?;
                return Err(WalletError::CallbackRefused { code });
            }
        };
        if !self
            .store
            .remember_nonce(callback.nonce.clone(), now)
            .await?
        {
            tracing::warn!("a provider callback's nonce was replayed");
            self.store
                .log_callback(log(&callback.nonce, "replayed_nonce", None))
                .await?;
            return Err(WalletError::CallbackRefused {
                code: "replayed_nonce",
            });
        }
        let (order, command, status) = match callback.event {
            CallbackEvent::PayInPaid {
                order_id,
                amount_fen,
                ..
            } => (
                OrderId(order_id),
                Command::CreditPayIn {
                    order: OrderId(order_id),
                    amount: amount_fen,
                },
                "paid",
            ),
            CallbackEvent::PayInFailed { order_id, .. } => (
                OrderId(order_id),
                Command::FailPayIn {
                    order: OrderId(order_id),
                },
                "failed",
            ),
            CallbackEvent::PayoutSettled {
                order_id,
                amount_fen,
                ..
            } => (
                OrderId(order_id),
                Command::SettlePayout {
                    order: OrderId(order_id),
                    amount: amount_fen,
                },
                "settled",
            ),
            CallbackEvent::PayoutFailed { order_id, .. } => (
                OrderId(order_id),
                Command::ReversePayout {
                    order: OrderId(order_id),
                },
                "reversed",
            ),
        };
        let verdict = match self.apply(command, None).await {
            Ok(applied) => {
                if let Some(o) = &applied.order {
                    self.cards().order(o.user, o.id, status);
                }
                self.tell_balances(&applied);
                Ok("applied")
            }
            // The provider delivers again until it hears success.
            Err(WalletError::OrderClosed { status: closed }) if closed == status => Ok("duplicate"),
            Err(WalletError::InvalidAmount { .. }) => Err("amount_mismatch"),
            Err(WalletError::OrderNotFound) => Err("unknown_order"),
            Err(WalletError::OrderClosed { .. }) => Err("order_closed"),
            Err(other) => return Err(other),
        };
        let code = match verdict {
            Ok(code) | Err(code) => code,
        };
        if verdict.is_err() {
            tracing::warn!(code, order = %order, "a provider callback was refused");
        }
        self.store
            .log_callback(log(&callback.nonce, code, Some(order)))
            .await?;
        verdict
            .map(|_| ())
            .map_err(|code| WalletError::CallbackRefused { code })
    }

    /// The sandbox provider's checkout: the payer paid, or failed to.
    pub async fn sandbox_pay(&self, provider_ref: &str, paid: bool) -> Result<(), WalletError> {
        let sandbox = self.sandbox.as_ref().ok_or(WalletError::OrderNotFound)?;
        sandbox
            .complete(provider_ref, paid)
            .await
            .map_err(|_| WalletError::OrderNotFound)
    }

    /// Sends `amount` to `to` in their one-to-one chat: the money waits in
    /// the transfer's escrow until `to` accepts or declines it, or it
    /// expires and returns.
    pub async fn send_transfer(
        &self,
        from: UserId,
        to: UserId,
        amount: Fen,
        memo: String,
        pin: &str,
        key: &str,
    ) -> Result<Transfer, WalletError> {
        note(&memo, "invalid_memo")?;
        let key = self.key(from, key, &format!("transfer\n{to}\n{amount}\n{memo}"))?;
        if from == to {
            return Err(WalletError::ToSelf);
        }
        let sender = self.person(from).await?;
        self.people
            .person(to)
            .await
            .map_err(WalletError::Dependency)?
            .ok_or(WalletError::UnknownUser)?;
        if !self
            .chats
            .may_message(from, to)
            .await
            .map_err(WalletError::Dependency)?
        {
            return Err(WalletError::RecipientRefuses);
        }
        self.check_pin(from, pin).await?;
        self.take_velocity(from)?;
        let now = self.clock.now_ms();
        let transfer = Transfer {
            id: TransferId(self.ids.next()),
            from,
            to,
            amount,
            memo,
            status: TransferStatus::Pending,
            created_ms: now,
            expires_ms: now + self.expiry_ms(),
            settled_ms: None,
        };
        let limits = self.config.out_limits(sender.created_ms, now);
        let applied = self
            .apply(Command::SendTransfer { transfer, limits }, Some(key))
            .await?;
        let transfer = applied.transfer.clone().ok_or_else(missing)?;
        self.tell_balances(&applied);
        self.cards().transfer(&transfer, from).await?;
        Ok(transfer)
    }

    pub async fn accept_transfer(
        &self,
        user: UserId,
        id: TransferId,
        key: &str,
    ) -> Result<Transfer, WalletError> {
        let key = self.key(user, key, &format!("accept\n{id}"))?;
        let person = self.person(user).await?;
        let cap = self.cap(&person);
        let command = Command::AcceptTransfer { id, by: user, cap };
        self.settle_transfer(user, command, key).await
    }

    pub async fn decline_transfer(
        &self,
        user: UserId,
        id: TransferId,
        key: &str,
    ) -> Result<Transfer, WalletError> {
        let key = self.key(user, key, &format!("decline\n{id}"))?;
        self.person(user).await?;
        let command = Command::DeclineTransfer { id, by: user };
        self.settle_transfer(user, command, key).await
    }

    async fn settle_transfer(
        &self,
        user: UserId,
        command: Command,
        key: IdemKey,
    ) -> Result<Transfer, WalletError> {
        let applied = self.apply(command, Some(key)).await?;
        let transfer = applied.transfer.clone().ok_or_else(missing)?;
        self.tell_balances(&applied);
        self.cards().transfer(&transfer, user).await?;
        Ok(transfer)
    }

    /// The transfer, if `user` is one of its two sides.
    pub async fn transfer(&self, user: UserId, id: TransferId) -> Result<Transfer, WalletError> {
        self.store
            .transfer(id)
            .await?
            .filter(|t| t.from == user || t.to == user)
            .ok_or(WalletError::TransferNotFound)
    }

    /// Sends a red packet into a one-to-one chat (one share, for the peer)
    /// or a group (up to its member count of shares).
    pub async fn send_packet(
        &self,
        sender: UserId,
        packet: NewPacket,
        pin: &str,
        key: &str,
    ) -> Result<Packet, WalletError> {
        note(&packet.greeting, "invalid_greeting")?;
        let key = self.key(
            sender,
            key,
            &format!(
                "packet\n{:?}\n{}\n{}\n{}\n{:?}\n{}",
                packet.place,
                packet.amount,
                packet.count,
                packet.mode.as_str(),
                packet.exclusive_to,
                packet.greeting
            ),
        )?;
        let person = self.person(sender).await?;
        let members = self.packet_place(sender, &packet).await?;
        policy::check_packet(
            packet.amount,
            packet.count,
            packet.mode,
            packet.place,
            members,
            &self.config.packet_limits(),
        )?;
        self.check_pin(sender, pin).await?;
        self.take_velocity(sender)?;
        let now = self.clock.now_ms();
        let shares = policy::split(
            packet.amount,
            packet.count,
            packet.mode,
            self.config.share_max_fen,
            &mut rand::rng(),
        );
        let drawn = Packet {
            id: PacketId(self.ids.next()),
            sender,
            place: packet.place,
            mode: packet.mode,
            amount: packet.amount,
            shares,
            exclusive_to: packet.exclusive_to,
            greeting: packet.greeting,
            created_ms: now,
            expires_ms: now + self.expiry_ms(),
            claimed: 0,
            claimed_amount: 0,
            status: PacketStatus::Open,
            best: None,
            refunded: 0,
        };
        let limits = self.config.out_limits(person.created_ms, now);
        let applied = self
            .apply(
                Command::SendPacket {
                    packet: drawn,
                    limits,
                },
                Some(key),
            )
            .await?;
        let packet = applied.packet.clone().ok_or_else(missing)?;
        self.tell_balances(&applied);
        self.cards().packet(&packet).await?;
        Ok(packet)
    }

    /// Checks where a packet goes, answering how many members are there.
    async fn packet_place(&self, sender: UserId, packet: &NewPacket) -> Result<u32, WalletError> {
        match packet.place {
            Place::Direct(peer) => {
                if peer == sender {
                    return Err(WalletError::ToSelf);
                }
                if packet.exclusive_to.is_some() || packet.mode == PacketMode::Exclusive {
                    return Err(WalletError::Invalid {
                        code: "invalid_packet",
                        reason: "exclusive packets are for groups",
                    });
                }
                self.people
                    .person(peer)
                    .await
                    .map_err(WalletError::Dependency)?
                    .ok_or(WalletError::UnknownUser)?;
                if !self
                    .chats
                    .may_message(sender, peer)
                    .await
                    .map_err(WalletError::Dependency)?
                {
                    return Err(WalletError::RecipientRefuses);
                }
                Ok(2)
            }
            Place::Group(group) => {
                let facts = self
                    .chats
                    .group(group, sender)
                    .await
                    .map_err(WalletError::Dependency)?
                    .filter(|g| g.is_member)
                    .ok_or(WalletError::NotAMember)?;
                if !facts.may_post {
                    return Err(WalletError::Invalid {
                        code: "muted",
                        reason: "you may not post in this group now",
                    });
                }
                match (packet.mode, packet.exclusive_to) {
                    (PacketMode::Exclusive, Some(only)) if only != sender => {
                        let member = self
                            .chats
                            .group(group, only)
                            .await
                            .map_err(WalletError::Dependency)?
                            .is_some_and(|g| g.is_member);
                        if !member {
                            return Err(WalletError::Invalid {
                                code: "invalid_packet",
                                reason: "an exclusive packet is for another member of the group",
                            });
                        }
                    }
                    (PacketMode::Exclusive, _) => {
                        return Err(WalletError::Invalid {
                            code: "invalid_packet",
                            reason: "an exclusive packet is for another member of the group",
                        });
                    }
                    (_, Some(_)) => {
                        return Err(WalletError::Invalid {
                            code: "invalid_packet",
                            reason: "only an exclusive packet names its member",
                        });
                    }
                    (_, None) => {}
                }
                Ok(facts.members)
            }
        }
    }

    /// Opens the packet: the next share goes to `user`'s wallet.
    pub async fn grab(
        &self,
        user: UserId,
        id: PacketId,
        key: &str,
    ) -> Result<Grabbed, WalletError> {
        let key = self.key(user, key, &format!("grab\n{id}"))?;
        let person = self.person(user).await?;
        let (sender, place) = self.place_of(id).await?;
        self.may_see(user, sender, place).await?;
        let cap = self.cap(&person);
        let applied = self
            .apply(Command::GrabPacket { id, user, cap }, Some(key))
            .await?;
        let grab = applied.grab.clone().ok_or_else(missing)?;
        let packet = applied.packet.clone().ok_or_else(missing)?;
        self.tell_balances(&applied);
        if !applied.replayed {
            self.cards().grabbed(&packet, &grab);
        }
        Ok(Grabbed { grab, packet })
    }

    /// The packet and its grabs, for its sender, its grabbers and those
    /// who may open it.
    pub async fn packet(&self, user: UserId, id: PacketId) -> Result<PacketView, WalletError> {
        let (packet, grabs) = self
            .store
            .packet(id)
            .await?
            .ok_or(WalletError::PacketNotFound)?;
        if packet.sender != user && !grabs.iter().any(|g| g.user == user) {
            self.may_see(user, packet.sender, packet.place).await?;
        }
        let luckiest = (packet.status == PacketStatus::Finished && packet.count() > 1)
            .then_some(packet.best.map(|(who, _)| who))
            .flatten();
        Ok(PacketView {
            packet,
            grabs,
            luckiest,
        })
    }

    /// Whether `user` is where the packet was sent: the peer of a
    /// one-to-one packet (or its sender), a member of its group. Anyone
    /// else is answered as if there were no such packet.
    async fn may_see(&self, user: UserId, sender: UserId, place: Place) -> Result<(), WalletError> {
        let present = match place {
            Place::Direct(peer) => user == peer || user == sender,
            Place::Group(group) => self
                .chats
                .group(group, user)
                .await
                .map_err(WalletError::Dependency)?
                .is_some_and(|g| g.is_member),
        };
        present.then_some(()).ok_or(WalletError::PacketNotFound)
    }

    /// The packet's sender and place, from memory when it was asked lately.
    async fn place_of(&self, id: PacketId) -> Result<(UserId, Place), WalletError> {
        let known = self.lock_places().get(&id).copied();
        if let Some(known) = known {
            return Ok(known);
        }
        let (packet, _) = self
            .store
            .packet(id)
            .await?
            .ok_or(WalletError::PacketNotFound)?;
        let mut places = self.lock_places();
        if places.len() >= MAX_PLACES {
            places.clear();
        }
        places.insert(id, (packet.sender, packet.place));
        Ok((packet.sender, packet.place))
    }

    fn lock_places(&self) -> std::sync::MutexGuard<'_, HashMap<PacketId, (UserId, Place)>> {
        self.places.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The user's wallet history, newest first; `before` pages on.
    pub async fn history(
        &self,
        user: UserId,
        before: Option<EntryId>,
        limit: u32,
    ) -> Result<Vec<Entry>, WalletError> {
        self.store
            .history(Account::Wallet(user), before, limit.clamp(1, MAX_PAGE))
            .await
    }

    /// One entry of the user's wallet with what it belongs to.
    pub async fn entry(&self, user: UserId, id: EntryId) -> Result<EntryDetail, WalletError> {
        let wallet = Account::Wallet(user);
        let entry = self
            .store
            .entry(id)
            .await?
            .filter(|e| e.debit == wallet || e.credit == wallet)
            .ok_or(WalletError::EntryNotFound)?;
        let mut detail = EntryDetail {
            entry: entry.clone(),
            transfer: None,
            packet: None,
            order: None,
        };
        use crate::model::Reason as R;
        match entry.reason {
            R::TransferSent | R::TransferAccepted | R::TransferDeclined | R::TransferExpired => {
                detail.transfer = self.store.transfer(TransferId(entry.reference)).await?;
            }
            R::PacketSent | R::PacketGrabbed | R::PacketRefunded => {
                detail.packet = self
                    .store
                    .packet(PacketId(entry.reference))
                    .await?
                    .map(|(p, _)| p);
            }
            R::TopUp | R::Withdrawal | R::PayoutSettled | R::PayoutReversed => {
                detail.order = self.store.order(OrderId(entry.reference)).await?;
            }
        }
        Ok(detail)
    }

    async fn apply(&self, command: Command, key: Option<IdemKey>) -> Result<Applied, WalletError> {
        self.store
            .apply(Request {
                command,
                entry: EntryId(self.ids.next()),
                key,
                now_ms: self.clock.now_ms(),
            })
            .await
    }

    /// The user, who must exist and take part.
    async fn person(&self, user: UserId) -> Result<Person, WalletError> {
        self.people
            .person(user)
            .await
            .map_err(WalletError::Dependency)?
            .ok_or(WalletError::UnknownUser)
    }

    fn cap(&self, person: &Person) -> BalanceCap {
        (!person.real_name_verified).then_some(self.config.unverified_balance_fen)
    }

    /// The idempotency key of `user`'s request, fingerprinted by the
    /// request's own parameters.
    fn key(&self, user: UserId, key: &str, parameters: &str) -> Result<IdemKey, WalletError> {
        if !policy::key_well_formed(key) {
            return Err(WalletError::InvalidIdempotencyKey);
        }
        Ok(IdemKey {
            user,
            key: key.to_string(),
            fingerprint: hex(&Sha256::digest(parameters.as_bytes())),
        })
    }

    async fn check_pin(&self, user: UserId, pin: &str) -> Result<(), WalletError> {
        self.pins
            .check(&*self.store, user, pin, self.clock.now_ms())
            .await
    }

    fn take_velocity(&self, user: UserId) -> Result<(), WalletError> {
        let mut buckets = self.velocity.lock().unwrap_or_else(|p| p.into_inner());
        // Buckets of idle wallets are full again: forgetting them all at a
        // bound loses nothing but a moment's memory of a burst.
        if buckets.len() >= 1_000_000 {
            buckets.clear();
        }
        buckets
            .entry(user)
            .or_insert_with(|| {
                TokenBucket::new(self.config.velocity_per_sec, self.config.velocity_burst)
            })
            .take()
            .map_err(|retry_after_ms| WalletError::TooFast { retry_after_ms })
    }

    fn expiry_ms(&self) -> i64 {
        i64::try_from(self.config.expiry_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// Tells each wallet owner whose balance `applied` changed.
    fn tell_balances(&self, applied: &Applied) {
        if applied.replayed {
            return;
        }
        for balance in &applied.balances {
            if let Some(owner) = balance.account.owner() {
                self.cards().balance(owner, balance.balance);
            }
        }
    }

    fn cards(&self) -> cards::Cards<'_> {
        cards::Cards {
            bus: &*self.bus,
            chats: &*self.chats,
        }
    }
}

/// A memo or greeting: at most [`MAX_NOTE_CHARS`], no control characters.
fn note(text: &str, code: &'static str) -> Result<(), WalletError> {
    if text.chars().count() > MAX_NOTE_CHARS || text.chars().any(char::is_control) {
        return Err(WalletError::Invalid {
            code,
            reason: "at most 100 characters, none of them control characters",
        });
    }
    Ok(())
}

/// A store answered a command without the record it writes: a backend bug.
fn missing() -> WalletError {
    WalletError::Dependency("the store's answer lacks the record it wrote".into())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `amount` fen as yuan for people: "12.34".
pub fn yuan(amount: Fen) -> String {
    let sign = if amount < 0 { "-" } else { "" };
    let amount = amount.unsigned_abs();
    format!("{sign}{}.{:02}", amount / 100, amount % 100)
}
