#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The service with the SQLite store, the sandbox provider, and test
//! doubles of the account and chat rooms (the binary's integration tests
//! run the real ones).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use prost::Message as _;
use superapp_kit::BoxFuture;
use superapp_kit::bus::{Bus, BusMessage, InProcessBus};
use superapp_kit::clock::{Clock, ManualClock};
use superapp_kit::ids::IdGen;
use superapp_proto::v1::{BusEnvelope, Special, TransferCard, bus_envelope, event};

use super::*;
use crate::model::GroupId;
use crate::ports::GroupFacts;
use crate::provider::sandbox::{SandboxConfig, encode_event};
use crate::store::SqliteWalletStore;

const START_MS: i64 = 1_800_000_000_000;
const PIN: &str = "246810";

#[derive(Default)]
struct Town {
    people: HashMap<UserId, Person>,
    /// (from, to): `to` takes nothing from `from`.
    refusals: HashSet<(UserId, UserId)>,
    groups: HashMap<GroupId, Vec<UserId>>,
    muted: HashSet<UserId>,
    /// Cards posted, by key: (sender, place, type).
    posts: Vec<(String, UserId, Place, Special)>,
}

#[derive(Clone, Default)]
struct Doubles(Arc<Mutex<Town>>);

impl People for Doubles {
    fn person(&self, user: UserId) -> BoxFuture<'_, Result<Option<Person>, String>> {
        let found = self.0.lock().unwrap().people.get(&user).cloned();
        Box::pin(async move { Ok(found) })
    }
}

impl Chats for Doubles {
    fn may_message(&self, from: UserId, to: UserId) -> BoxFuture<'_, Result<bool, String>> {
        let refused = self.0.lock().unwrap().refusals.contains(&(from, to));
        Box::pin(async move { Ok(!refused) })
    }

    fn group(
        &self,
        group: GroupId,
        user: UserId,
    ) -> BoxFuture<'_, Result<Option<GroupFacts>, String>> {
        let town = self.0.lock().unwrap();
        let facts = town.groups.get(&group).map(|members| GroupFacts {
            members: members.len() as u32,
            is_member: members.contains(&user),
            may_post: members.contains(&user) && !town.muted.contains(&user),
        });
        Box::pin(async move { Ok(facts) })
    }

    fn post(
        &self,
        sender: UserId,
        place: Place,
        special: Special,
        _fallback: String,
        key: String,
    ) -> BoxFuture<'_, Result<(), String>> {
        let mut town = self.0.lock().unwrap();
        // The chat stores one message per key.
        if !town.posts.iter().any(|(k, ..)| *k == key) {
            town.posts.push((key, sender, place, special));
        }
        Box::pin(async { Ok(()) })
    }
}

struct World {
    wallet: Arc<Wallet>,
    clock: Arc<ManualClock>,
    town: Doubles,
    sandbox: Arc<SandboxProvider>,
    bus: Arc<InProcessBus>,
    _dir: tempfile::TempDir,
}

fn world() -> World {
    world_with(WalletConfig::default())
}

fn world_with(mut config: WalletConfig) -> World {
    config.velocity_burst = 1_000;
    config.velocity_per_sec = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteWalletStore::open(&dir.path().join("wallet.db")).unwrap());
    let clock = Arc::new(ManualClock::new(START_MS));
    let sandbox = Arc::new(
        SandboxProvider::new(
            SandboxConfig::new(
                b"test secret".to_vec(),
                "http://127.0.0.1:9/v1/wallet/callback",
            ),
            clock.clone(),
        )
        .unwrap(),
    );
    let town = Doubles::default();
    {
        let mut t = town.0.lock().unwrap();
        for user in 1..=50 {
            t.people.insert(
                UserId(user),
                Person {
                    // Old enough for the ordinary limits.
                    created_ms: START_MS - 30 * 86_400_000,
                    real_name_verified: true,
                    display_name: format!("user {user}"),
                },
            );
        }
    }
    let bus = Arc::new(InProcessBus::default());
    let wallet = Arc::new(Wallet::new(WalletDeps {
        store,
        provider: sandbox.clone(),
        sandbox: Some(sandbox.clone()),
        people: Arc::new(town.clone()),
        chats: Arc::new(town.clone()),
        bus: bus.clone(),
        clock: clock.clone(),
        ids: Arc::new(IdGen::new(1, clock.clone())),
        config,
    }));
    World {
        wallet,
        clock,
        town,
        sandbox,
        bus,
        _dir: dir,
    }
}

impl World {
    /// Credits `amount` to `user` through a paid top-up, as the provider's
    /// callback does.
    async fn fund(&self, user: u64, amount: Fen) {
        let key = format!("fund-{user}-{}", self.clock.now_ms());
        let top_up = self
            .wallet
            .top_up(UserId(user), amount, &key)
            .await
            .unwrap();
        let (headers, body) = self.paid(&top_up.order, amount, &key);
        self.wallet.callback(&headers, &body).await.unwrap();
    }

    /// A callback nonce as providers make them (16 to 64 characters).
    fn nonce(tag: &str) -> String {
        format!("nonce-{tag:0>16}")
    }

    fn paid(&self, order: &Order, amount: Fen, tag: &str) -> (CallbackHeaders, Vec<u8>) {
        let nonce = Self::nonce(tag);
        let nonce = nonce.as_str();
        let event = CallbackEvent::PayInPaid {
            order_id: order.id.0,
            provider_ref: order.provider_ref.clone(),
            amount_fen: amount,
        };
        self.sandbox
            .signed_request(&encode_event(&event), self.clock.now_ms(), nonce)
    }

    async fn pin(&self, user: u64) {
        self.wallet.set_pin(UserId(user), None, PIN).await.unwrap();
    }

    async fn balance(&self, user: u64) -> Fen {
        self.wallet.summary(UserId(user)).await.unwrap().balance
    }

    fn posts_of(&self, kind: &str) -> Vec<(String, UserId, Place, Special)> {
        let town = self.town.0.lock().unwrap();
        town.posts
            .iter()
            .filter(|(_, _, _, s)| s.r#type == kind)
            .cloned()
            .collect()
    }

    fn group(&self, id: u64, members: &[u64]) -> GroupId {
        let group = GroupId(id);
        self.town
            .0
            .lock()
            .unwrap()
            .groups
            .insert(group, members.iter().copied().map(UserId).collect());
        group
    }

    async fn assert_clean(&self) {
        let report = self.wallet.reconcile().await.unwrap();
        assert!(report.is_clean(), "{:?}", report.mismatches);
        assert_eq!(report.total, 0);
    }
}

#[tokio::test]
async fn a_transfer_waits_in_escrow_until_its_recipient_accepts_and_both_sides_see_cards() {
    let w = world();
    w.fund(1, 10_000).await;
    w.pin(1).await;
    let (_sub, mut events) = w.bus.subscriber(64);
    _sub.subscribe("u.2");
    let t = w
        .wallet
        .send_transfer(UserId(1), UserId(2), 2_500, "lunch".into(), PIN, "t-1")
        .await
        .unwrap();
    assert_eq!(t.status, TransferStatus::Pending);
    assert_eq!(w.balance(1).await, 7_500);
    assert_eq!(w.balance(2).await, 0);

    let accepted = w
        .wallet
        .accept_transfer(UserId(2), t.id, "a-1")
        .await
        .unwrap();
    assert_eq!(accepted.status, TransferStatus::Accepted);
    assert_eq!(w.balance(2).await, 2_500);

    let cards = w.posts_of("transfer");
    assert_eq!(cards.len(), 2, "one card when sent, one when accepted");
    let last = TransferCard::decode(cards[1].3.value.as_slice()).unwrap();
    assert_eq!(
        cards[1].1,
        UserId(2),
        "the acceptance is the recipient's message"
    );
    assert_eq!(
        last.status,
        superapp_proto::v1::TransferStatus::Accepted as i32
    );
    let mut statuses = vec![];
    while let Ok(BusMessage::Message { payload, .. }) = events.try_recv() {
        let envelope = BusEnvelope::decode(payload).unwrap();
        if let Some(bus_envelope::Kind::Event(e)) = envelope.kind
            && let Some(event::Kind::Wallet(wallet)) = e.kind
            && wallet.kind == superapp_proto::v1::wallet_event::Kind::Transfer as i32
        {
            statuses.push(wallet.status);
        }
    }
    assert_eq!(statuses.len(), 2, "the recipient saw both changes live");
    w.assert_clean().await;
}

#[tokio::test]
async fn a_retried_transfer_is_applied_once_and_its_card_written_once() {
    let w = world();
    w.fund(1, 10_000).await;
    w.pin(1).await;
    let first = w
        .wallet
        .send_transfer(UserId(1), UserId(2), 1_000, String::new(), PIN, "same")
        .await
        .unwrap();
    let again = w
        .wallet
        .send_transfer(UserId(1), UserId(2), 1_000, String::new(), PIN, "same")
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(w.balance(1).await, 9_000);
    assert_eq!(w.posts_of("transfer").len(), 1);
    let other = w
        .wallet
        .send_transfer(UserId(1), UserId(2), 2_000, String::new(), PIN, "same")
        .await;
    assert!(matches!(other, Err(WalletError::IdempotencyKeyReused)));
}

#[tokio::test]
async fn someone_who_refuses_the_sender_gets_no_transfer_and_others_cannot_touch_it() {
    let w = world();
    w.fund(1, 10_000).await;
    w.pin(1).await;
    w.town
        .0
        .lock()
        .unwrap()
        .refusals
        .insert((UserId(1), UserId(3)));
    let refused = w
        .wallet
        .send_transfer(UserId(1), UserId(3), 100, String::new(), PIN, "r")
        .await;
    assert!(matches!(refused, Err(WalletError::RecipientRefuses)));
    let t = w
        .wallet
        .send_transfer(UserId(1), UserId(2), 100, String::new(), PIN, "ok")
        .await
        .unwrap();
    for stranger in [3, 4] {
        assert!(matches!(
            w.wallet.accept_transfer(UserId(stranger), t.id, "x").await,
            Err(WalletError::TransferNotFound)
        ));
        assert!(matches!(
            w.wallet.transfer(UserId(stranger), t.id).await,
            Err(WalletError::TransferNotFound)
        ));
    }
    assert!(matches!(
        w.wallet.accept_transfer(UserId(1), t.id, "x").await,
        Err(WalletError::TransferNotFound)
    ));
}

#[tokio::test]
async fn five_wrong_pins_lock_payments_and_concurrent_guesses_cannot_pass_the_lock() {
    let w = world();
    w.fund(1, 10_000).await;
    w.pin(1).await;
    let guesses: Vec<_> = (0..20)
        .map(|i| {
            let wallet = w.wallet.clone();
            tokio::spawn(async move {
                wallet
                    .send_transfer(
                        UserId(1),
                        UserId(2),
                        100,
                        String::new(),
                        &format!("{:06}", 100_000 + i * 7),
                        &format!("g{i}"),
                    )
                    .await
            })
        })
        .collect();
    let mut wrong = 0;
    let mut locked = 0;
    for guess in guesses {
        match guess.await.unwrap() {
            Err(WalletError::WrongPin { .. }) => wrong += 1,
            Err(WalletError::PinLocked { .. }) => locked += 1,
            other => panic!("a wrong PIN answered {other:?}"),
        }
    }
    println!("20 concurrent wrong PINs: {wrong} checked, {locked} refused as locked");
    assert!(
        wrong <= 4,
        "at most four wrong tries are told they were wrong"
    );
    assert_eq!(wrong + locked, 20);
    // Even the right PIN waits for the lock to end.
    let right = w
        .wallet
        .send_transfer(UserId(1), UserId(2), 100, String::new(), PIN, "right")
        .await;
    assert!(matches!(right, Err(WalletError::PinLocked { .. })));
    w.clock
        .advance_ms(i64::try_from(WalletConfig::default().pin_lock_secs).unwrap() * 1000);
    w.wallet
        .send_transfer(UserId(1), UserId(2), 100, String::new(), PIN, "right-later")
        .await
        .unwrap();
    assert_eq!(w.balance(1).await, 9_900);
}

#[tokio::test]
async fn a_pin_is_six_digits_not_too_simple_and_changed_only_with_the_current_one() {
    let w = world();
    for bad in ["12345", "1234567", "12a456"] {
        assert!(matches!(
            w.wallet.set_pin(UserId(1), None, bad).await,
            Err(WalletError::InvalidPin)
        ));
    }
    for weak in ["111111", "123456", "987654"] {
        assert!(matches!(
            w.wallet.set_pin(UserId(1), None, weak).await,
            Err(WalletError::Invalid {
                code: "weak_pin",
                ..
            })
        ));
    }
    w.pin(1).await;
    assert!(matches!(
        w.wallet.set_pin(UserId(1), None, "135790").await,
        Err(WalletError::Invalid {
            code: "current_pin_required",
            ..
        })
    ));
    assert!(matches!(
        w.wallet.set_pin(UserId(1), Some("135791"), "135790").await,
        Err(WalletError::WrongPin { tries_left: 4 })
    ));
    w.wallet
        .set_pin(UserId(1), Some(PIN), "135790")
        .await
        .unwrap();
    w.fund(1, 1_000).await;
    let old = w
        .wallet
        .send_transfer(UserId(1), UserId(2), 100, String::new(), PIN, "old")
        .await;
    assert!(matches!(old, Err(WalletError::WrongPin { .. })), "{old:?}");
}

#[tokio::test]
async fn a_paid_top_up_is_credited_once_however_often_its_callback_arrives() {
    let w = world();
    let top_up = w.wallet.top_up(UserId(5), 3_000, "top").await.unwrap();
    assert!(top_up.pay_url.contains(&top_up.order.provider_ref));
    for delivery in 0..3 {
        let (headers, body) = w.paid(&top_up.order, 3_000, &format!("nonce-{delivery}"));
        w.wallet.callback(&headers, &body).await.unwrap();
    }
    assert_eq!(w.balance(5).await, 3_000);
    let order = w.wallet.order(UserId(5), top_up.order.id).await.unwrap();
    assert_eq!(order.status, OrderStatus::Paid);
    w.assert_clean().await;
}

#[tokio::test]
async fn callbacks_with_a_bad_signature_an_old_stamp_a_replayed_nonce_or_a_wrong_amount_are_refused()
 {
    let w = world();
    let top_up = w.wallet.top_up(UserId(5), 3_000, "top").await.unwrap();
    let code = |r: Result<(), WalletError>| match r {
        Err(WalletError::CallbackRefused { code }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let (mut headers, body) = w.paid(&top_up.order, 3_000, "n1");
    headers.signature = headers.signature.replace(|c: char| c.is_ascii_digit(), "a");
    assert_eq!(
        code(w.wallet.callback(&headers, &body).await),
        "bad_signature"
    );

    let event = CallbackEvent::PayInPaid {
        order_id: top_up.order.id.0,
        provider_ref: top_up.order.provider_ref.clone(),
        amount_fen: 3_000,
    };
    let old = w.clock.now_ms() - 3_600_000;
    let (headers, body) = w
        .sandbox
        .signed_request(&encode_event(&event), old, &World::nonce("n2"));
    assert_eq!(
        code(w.wallet.callback(&headers, &body).await),
        "stale_callback"
    );

    let (headers, body) = w.paid(&top_up.order, 30_000, "n3");
    assert_eq!(
        code(w.wallet.callback(&headers, &body).await),
        "amount_mismatch"
    );

    let (headers, body) = w.paid(&top_up.order, 3_000, "n4");
    w.wallet.callback(&headers, &body).await.unwrap();
    assert_eq!(
        code(w.wallet.callback(&headers, &body).await),
        "replayed_nonce"
    );
    assert_eq!(w.balance(5).await, 3_000);
    w.assert_clean().await;
}

#[tokio::test]
async fn a_withdrawal_needs_a_verified_name_and_settles_or_comes_back() {
    let w = world();
    w.fund(1, 10_000).await;
    w.pin(1).await;
    w.town
        .0
        .lock()
        .unwrap()
        .people
        .get_mut(&UserId(1))
        .unwrap()
        .real_name_verified = false;
    assert!(matches!(
        w.wallet.withdraw(UserId(1), 1_000, PIN, "w0").await,
        Err(WalletError::RealNameRequired)
    ));
    w.town
        .0
        .lock()
        .unwrap()
        .people
        .get_mut(&UserId(1))
        .unwrap()
        .real_name_verified = true;
    let settled = w
        .wallet
        .withdraw(UserId(1), 1_000, PIN, "w1")
        .await
        .unwrap();
    let failing = w
        .wallet
        .withdraw(UserId(1), 2_013, PIN, "w2")
        .await
        .unwrap();
    assert_eq!(w.balance(1).await, 10_000 - 1_000 - 2_013);
    for (order, event) in [
        (
            &settled,
            CallbackEvent::PayoutSettled {
                order_id: settled.id.0,
                provider_ref: settled.provider_ref.clone(),
                amount_fen: 1_000,
            },
        ),
        (
            &failing,
            CallbackEvent::PayoutFailed {
                order_id: failing.id.0,
                provider_ref: failing.provider_ref.clone(),
            },
        ),
    ] {
        let (headers, body) = w.sandbox.signed_request(
            &encode_event(&event),
            w.clock.now_ms(),
            &World::nonce(&format!("p{}", order.id)),
        );
        w.wallet.callback(&headers, &body).await.unwrap();
    }
    assert_eq!(w.balance(1).await, 9_000, "the failed payout came back");
    w.assert_clean().await;
}

#[tokio::test]
async fn a_group_packet_is_grabbed_once_per_member_and_its_luckiest_named() {
    let w = world();
    w.fund(1, 10_000).await;
    w.pin(1).await;
    let group = w.group(7, &[1, 2, 3, 4, 5]);
    let packet = w
        .wallet
        .send_packet(
            UserId(1),
            NewPacket {
                place: Place::Group(group),
                amount: 1_000,
                count: 3,
                mode: PacketMode::Lucky,
                exclusive_to: None,
                greeting: "happy new year".into(),
            },
            PIN,
            "p",
        )
        .await
        .unwrap();
    assert_eq!(w.posts_of("red_packet").len(), 1);
    assert!(matches!(
        w.wallet.grab(UserId(9), packet.id, "g9").await,
        Err(WalletError::PacketNotFound)
    ));
    let mut got = 0;
    for user in [2, 3, 1] {
        got += w
            .wallet
            .grab(UserId(user), packet.id, &format!("g{user}"))
            .await
            .unwrap()
            .grab
            .amount;
    }
    assert_eq!(got, 1_000);
    assert!(matches!(
        w.wallet.grab(UserId(2), packet.id, "g2-again").await,
        Err(WalletError::AlreadyGrabbed)
    ));
    assert!(matches!(
        w.wallet.grab(UserId(4), packet.id, "g4").await,
        Err(WalletError::PacketFinished)
    ));
    let view = w.wallet.packet(UserId(5), packet.id).await.unwrap();
    let most = view.grabs.iter().map(|g| g.amount).max().unwrap();
    let luckiest = view.luckiest.unwrap();
    assert_eq!(
        view.grabs
            .iter()
            .find(|g| g.user == luckiest)
            .unwrap()
            .amount,
        most
    );
    w.assert_clean().await;
}

#[tokio::test]
async fn packets_are_refused_beyond_the_group_the_limits_or_a_mute() {
    let w = world();
    w.fund(1, 100_000).await;
    w.pin(1).await;
    let group = w.group(7, &[1, 2, 3]);
    let send = |count, amount, mode, exclusive_to, key: &'static str| {
        let wallet = w.wallet.clone();
        async move {
            wallet
                .send_packet(
                    UserId(1),
                    NewPacket {
                        place: Place::Group(group),
                        amount,
                        count,
                        mode,
                        exclusive_to,
                        greeting: String::new(),
                    },
                    PIN,
                    key,
                )
                .await
        }
    };
    let code = |r: Result<Packet, WalletError>| r.map(|_| ()).map_err(|e| e.code());
    assert_eq!(
        code(send(4, 400, PacketMode::Lucky, None, "a").await),
        Err("too_many_shares")
    );
    assert_eq!(
        code(send(2, 1, PacketMode::Equal, None, "b").await),
        Err("invalid_amount")
    );
    assert_eq!(
        code(send(2, 20_001, PacketMode::Equal, None, "c").await),
        Err("over_operation_limit")
    );
    assert_eq!(
        code(send(1, 100, PacketMode::Exclusive, Some(UserId(9)), "d").await),
        Err("invalid_packet")
    );
    assert_eq!(
        code(send(1, 100, PacketMode::Exclusive, Some(UserId(2)), "e").await),
        Ok(())
    );
    w.town.0.lock().unwrap().muted.insert(UserId(1));
    assert_eq!(
        code(send(2, 100, PacketMode::Equal, None, "f").await),
        Err("muted")
    );
}

#[tokio::test]
async fn an_exclusive_packet_opens_for_its_member_only() {
    let w = world();
    w.fund(1, 10_000).await;
    w.pin(1).await;
    let group = w.group(7, &[1, 2, 3]);
    let packet = w
        .wallet
        .send_packet(
            UserId(1),
            NewPacket {
                place: Place::Group(group),
                amount: 500,
                count: 1,
                mode: PacketMode::Exclusive,
                exclusive_to: Some(UserId(3)),
                greeting: String::new(),
            },
            PIN,
            "x",
        )
        .await
        .unwrap();
    assert!(matches!(
        w.wallet.grab(UserId(2), packet.id, "2").await,
        Err(WalletError::NotForYou)
    ));
    assert_eq!(
        w.wallet
            .grab(UserId(3), packet.id, "3")
            .await
            .unwrap()
            .grab
            .amount,
        500
    );
}

/// Expiry on paused time: nothing goes back a moment early; at expiry the
/// rest goes back exactly once though grabs race the expiry and several
/// expiry passes (as on several nodes) run at once.
#[tokio::test(start_paused = true)]
async fn expiry_returns_the_rest_exactly_once_never_early_with_grabs_and_passes_racing() {
    let w = world();
    w.fund(1, 100_000).await;
    w.pin(1).await;
    let members: Vec<u64> = (1..=40).collect();
    let group = w.group(7, &members);
    let packet = w
        .wallet
        .send_packet(
            UserId(1),
            NewPacket {
                place: Place::Group(group),
                amount: 10_000,
                count: 30,
                mode: PacketMode::Lucky,
                exclusive_to: None,
                greeting: String::new(),
            },
            PIN,
            "p",
        )
        .await
        .unwrap();
    let transfer = w
        .wallet
        .send_transfer(UserId(1), UserId(2), 700, String::new(), PIN, "t")
        .await
        .unwrap();
    for user in 2..=11 {
        w.wallet.grab(UserId(user), packet.id, "g").await.unwrap();
    }
    let lifetime = packet.expires_ms - w.clock.now_ms();
    w.clock.advance_ms(lifetime - 1);
    tokio::time::advance(std::time::Duration::from_millis(
        u64::try_from(lifetime - 1).unwrap(),
    ))
    .await;
    assert_eq!(w.wallet.expire_due().await.unwrap(), 0, "never early");
    w.clock.advance_ms(1);
    let mut racers = tokio::task::JoinSet::new();
    for pass in 0..6 {
        let wallet = w.wallet.clone();
        racers.spawn(async move { (pass, wallet.expire_due().await.map(|n| n as i64)) });
    }
    for user in 12..=25u64 {
        let wallet = w.wallet.clone();
        racers.spawn(async move {
            let grabbed = wallet.grab(UserId(user), packet.id, "late").await;
            (
                -1,
                grabbed.map(|g| g.grab.amount).or_else(|e| match e {
                    WalletError::PacketExpired => Ok(0),
                    other => Err(other),
                }),
            )
        });
    }
    let mut settled = 0;
    while let Some(joined) = racers.join_next().await {
        let (pass, result) = joined.unwrap();
        if pass >= 0 {
            settled += result.unwrap();
        } else {
            assert_eq!(result.unwrap(), 0, "a grab at expiry is refused");
        }
    }
    assert_eq!(
        settled, 2,
        "one packet refund and one transfer return, once each"
    );
    let view = w.wallet.packet(UserId(1), packet.id).await.unwrap();
    assert_eq!(view.packet.status, PacketStatus::Refunded);
    assert_eq!(
        view.packet.refunded + view.grabs.iter().map(|g| g.amount).sum::<Fen>(),
        10_000
    );
    assert_eq!(
        w.wallet
            .transfer(UserId(1), transfer.id)
            .await
            .unwrap()
            .status,
        TransferStatus::Expired
    );
    assert_eq!(
        w.balance(1).await,
        100_000 - 10_000 + view.packet.refunded,
        "the transfer came back whole and the packet's rest once"
    );
    w.assert_clean().await;
}

#[tokio::test]
async fn history_pages_newest_first_and_an_entry_shows_what_it_belongs_to() {
    let w = world();
    w.fund(1, 10_000).await;
    w.pin(1).await;
    for i in 0..5 {
        w.clock.advance_ms(1);
        w.wallet
            .send_transfer(
                UserId(1),
                UserId(2),
                100 + i,
                String::new(),
                PIN,
                &format!("k{i}"),
            )
            .await
            .unwrap();
    }
    let first = w.wallet.history(UserId(1), None, 4).await.unwrap();
    assert_eq!(first.len(), 4);
    assert!(first.windows(2).all(|p| p[0].id > p[1].id));
    let rest = w
        .wallet
        .history(UserId(1), Some(first[3].id), 4)
        .await
        .unwrap();
    assert_eq!(rest.len(), 2, "the fifth transfer and the top-up");
    assert_eq!(rest[1].reason, crate::model::Reason::TopUp);
    let detail = w.wallet.entry(UserId(1), first[0].id).await.unwrap();
    assert_eq!(detail.transfer.unwrap().amount, 104);
    assert!(matches!(
        w.wallet.entry(UserId(3), first[0].id).await,
        Err(WalletError::EntryNotFound)
    ));
}

#[tokio::test]
async fn without_a_verified_name_a_wallet_holds_at_most_its_cap() {
    let w = world_with(WalletConfig {
        unverified_balance_fen: 5_000,
        ..WalletConfig::default()
    });
    w.town
        .0
        .lock()
        .unwrap()
        .people
        .get_mut(&UserId(2))
        .unwrap()
        .real_name_verified = false;
    assert!(matches!(
        w.wallet.top_up(UserId(2), 6_000, "big").await,
        Err(WalletError::RealNameRequired)
    ));
    w.fund(2, 4_000).await;
    w.fund(1, 10_000).await;
    w.pin(1).await;
    let t = w
        .wallet
        .send_transfer(UserId(1), UserId(2), 2_000, String::new(), PIN, "t")
        .await
        .unwrap();
    assert!(matches!(
        w.wallet.accept_transfer(UserId(2), t.id, "a").await,
        Err(WalletError::RealNameRequired)
    ));
    w.wallet
        .decline_transfer(UserId(2), t.id, "d")
        .await
        .unwrap();
    assert_eq!(w.balance(1).await, 10_000);
}

#[tokio::test]
async fn reconciliation_finds_a_balance_changed_behind_the_ledgers_back() {
    let w = world();
    w.fund(1, 10_000).await;
    w.assert_clean().await;
    let path = w._dir.path().join("wallet.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let changed = conn
        .execute(
            "UPDATE accounts SET balance = balance + 1 WHERE account = 'w:1'",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    let report = w.wallet.reconcile().await.unwrap();
    assert!(!report.is_clean());
    assert!(
        report.mismatches.iter().any(|m| m.contains("w:1")),
        "{:?}",
        report.mismatches
    );
}
