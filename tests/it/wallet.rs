//! The wallet through the real server: top-ups paid at the sandbox
//! provider's checkout and credited by its signed callbacks, withdrawals,
//! transfers and red packets, each named by an idempotency key and paid
//! with the payment PIN; refusals of bad keys, PINs, bodies and callbacks;
//! the live events and the cards in the chat.

use std::time::Duration;

use prost::Message as _;
use serde_json::{Value, json};
use superapp_account::policy::real_name::check_character;
use superapp_client::proto::v1::message_body::Content;
use superapp_client::proto::v1::{
    Message, RedPacketCard, TransferCard, TransferStatus, WalletEvent, event, wallet_event,
};
use superapp_client::wallet::{OrderStatus, RedPacketStatus, TransferStatus as Status};
use superapp_client::{Connection, new_idempotency_key};
use superapp_kit::secret::Secret;

use crate::helpers::{TestApp, User, spawn_app, spawn_app_with};

/// A PIN that is neither one digit six times nor a run.
const PIN: &str = "135790";
/// The key the test servers and the tests' forged callbacks sign with.
const PROVIDER_SECRET: &str = "the sandbox provider's test secret";

/// A request that moves money, as `who`, with `key` as its Idempotency-Key
/// (none when `None`); a null `body` sends none. Its status and body.
async fn pay(
    app: &TestApp,
    who: &User,
    path: &str,
    body: Value,
    key: Option<&str>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}{path}", app.base_url))
        .bearer_auth(&who.tokens.access_token);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    if !body.is_null() {
        request = request.json(&body);
    }
    answer(request).await
}

async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn get(app: &TestApp, who: &User, path: &str) -> (u16, Value) {
    crate::helpers::api(app, who, "GET", path, Value::Null).await
}

async fn balance(app: &TestApp, who: &User) -> i64 {
    let wallet = app.http.wallet(&who.tokens.access_token).await.unwrap();
    wallet.balance_fen
}

async fn set_pin(app: &TestApp, who: &User) {
    let token = &who.tokens.access_token;
    app.http.set_wallet_pin(token, PIN, None).await.unwrap();
}

/// Waits until the order is no longer open; its last state.
async fn settled(app: &TestApp, who: &User, order_id: u64) -> superapp_client::WalletOrder {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let order = app
            .http
            .wallet_order(&who.tokens.access_token, order_id)
            .await
            .unwrap();
        if order.status != OrderStatus::Open {
            return order;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "order {order_id} stayed open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Tops `who`'s wallet up by `fen` at the sandbox's checkout, and waits
/// until the provider's callback has credited it.
async fn top_up(app: &TestApp, who: &User, fen: i64) {
    let token = &who.tokens.access_token;
    let started = app
        .http
        .top_up(token, fen, &new_idempotency_key())
        .await
        .unwrap();
    app.http.sandbox_pay(&started.pay_url, true).await.unwrap();
    let order = settled(app, who, started.order.order_id).await;
    assert_eq!(order.status, OrderStatus::Paid);
}

/// A user with a PIN and `fen` in their wallet.
async fn funded(app: &TestApp, name: &str, fen: i64) -> User {
    let user = app.user(name).await;
    set_pin(app, &user).await;
    top_up(app, &user, fen).await;
    user
}

/// A transfer's body, paid with the right PIN.
fn transfer_to(to: &User, amount_fen: i64) -> Value {
    json!({"to_user": to.id.to_string(), "amount_fen": amount_fen, "memo": "lunch", "pin": PIN})
}

/// `who` grabs a share of the red packet `id`.
async fn grab(app: &TestApp, who: &User, id: u64) -> (u16, Value) {
    let path = format!("/v1/wallet/packets/{id}/grab");
    pay(app, who, &path, Value::Null, Some(&new_idempotency_key())).await
}

/// The first wallet event within a few seconds that `pick` takes.
async fn wallet_event(conn: &Connection, pick: impl Fn(&WalletEvent) -> bool) -> WalletEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = conn.next_event(left).await.expect("a wallet event in time");
        if let Some(event::Kind::Wallet(w)) = event.kind
            && pick(&w)
        {
            return w;
        }
    }
}

/// The cards of `kind` among a conversation's messages, decoded by `decode`.
fn cards<T>(messages: &[Message], kind: &str, decode: impl Fn(&[u8]) -> T) -> Vec<(T, String)> {
    messages
        .iter()
        .filter_map(|m| {
            let body = m.body.as_ref()?;
            match &body.content {
                Some(Content::Special(s)) if s.r#type == kind => {
                    Some((decode(&s.value), body.fallback.clone()))
                }
                _ => None,
            }
        })
        .collect()
}

fn direct(a: &User, b: &User) -> String {
    format!("d.{}.{}", a.id.min(b.id), a.id.max(b.id))
}

/// A resident identity number the real-name sandbox verifies at once.
fn verifiable_number() -> String {
    let body = "44030519870623002";
    format!("{body}{}", check_character(body).unwrap())
}

#[tokio::test]
async fn a_top_up_paid_at_the_sandbox_is_credited_once_though_its_callback_arrives_three_times() {
    let app = spawn_app_with(|c| c.wallet.sandbox_deliveries = 3).await;
    let ann = app.user("Ann").await;
    let token = &ann.tokens.access_token;
    let live = app.connect(&ann).await;
    let before = app.http.wallet(token).await.unwrap();
    assert_eq!((before.balance_fen, before.pin_set), (0, false));
    assert!(before.unverified_cap_fen.is_some());

    let started = app
        .http
        .top_up(token, 2_500, &new_idempotency_key())
        .await
        .unwrap();
    assert_eq!(started.order.status, OrderStatus::Open);
    assert_eq!(started.order.amount_fen, 2_500);
    assert!(started.pay_url.contains("/v1/wallet/sandbox/pay/"));
    app.http.sandbox_pay(&started.pay_url, true).await.unwrap();

    let order = settled(&app, &ann, started.order.order_id).await;
    assert_eq!(order.status, OrderStatus::Paid);
    let told = wallet_event(&live, |e| e.kind() == wallet_event::Kind::Order).await;
    assert_eq!(
        (told.order_id, told.order_status.as_str()),
        (order.order_id, "paid")
    );
    // Every delivery reaches the server and is answered 200 (the second and
    // third as duplicates); only then is the balance final.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app
        .metric("http_requests_total{route=\"/v1/wallet/callback\",status=\"200\"}")
        .await
        < 3.0
    {
        assert!(tokio::time::Instant::now() < deadline, "three deliveries");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(balance(&app, &ann).await, 2_500);

    let history = app.http.wallet_history(token, None, 0).await.unwrap();
    assert_eq!(history.entries.len(), 1, "{history:?}");
    let entry = &history.entries[0];
    assert_eq!(
        (entry.amount_fen, entry.reference_id),
        (2_500, order.order_id)
    );
    let details = app.http.wallet_entry(token, entry.entry_id).await.unwrap();
    assert_eq!(details.order.unwrap().order_id, order.order_id);

    // A checkout paid twice is refused: the order is closed.
    let again = app.http.sandbox_pay(&started.pay_url, true).await;
    assert!(again.is_err());
    assert_eq!(balance(&app, &ann).await, 2_500);
}

#[tokio::test]
async fn a_top_up_that_fails_at_the_checkout_credits_nothing_and_an_unknown_checkout_is_not_found()
{
    let app = spawn_app().await;
    let ann = app.user("Ann").await;
    let token = &ann.tokens.access_token;
    let started = app
        .http
        .top_up(token, 900, &new_idempotency_key())
        .await
        .unwrap();
    app.http.sandbox_pay(&started.pay_url, false).await.unwrap();
    let order = settled(&app, &ann, started.order.order_id).await;
    assert_eq!(order.status, OrderStatus::Failed);
    assert_eq!(balance(&app, &ann).await, 0);

    let unknown = reqwest::Client::new()
        .post(format!(
            "{}/v1/wallet/sandbox/pay/sbx_nothing",
            app.base_url
        ))
        .json(&json!({"paid": true}));
    let (status, body) = answer(unknown).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("order_not_found"))
    );
    // Another user's order is not found either.
    let bo = app.user("Bo").await;
    let path = format!("/v1/wallet/orders/{}", order.order_id);
    let (status, body) = get(&app, &bo, &path).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("order_not_found"))
    );
}

#[tokio::test]
async fn every_request_that_moves_money_needs_a_well_formed_idempotency_key() {
    let app = spawn_app().await;
    let ann = funded(&app, "Ann", 1_000).await;
    let bo = app.user("Bo").await;
    let cases: [(&str, Value); 7] = [
        ("/v1/wallet/top-ups", json!({"amount_fen": 100})),
        (
            "/v1/wallet/withdrawals",
            json!({"amount_fen": 100, "pin": PIN}),
        ),
        ("/v1/wallet/transfers", transfer_to(&bo, 100)),
        ("/v1/wallet/transfers/1/accept", Value::Null),
        ("/v1/wallet/transfers/1/decline", Value::Null),
        (
            "/v1/wallet/packets",
            json!({"to_user": bo.id.to_string(), "amount_fen": 100, "count": 1,
                   "mode": "lucky", "pin": PIN}),
        ),
        ("/v1/wallet/packets/1/grab", Value::Null),
    ];
    let too_long = "k".repeat(65);
    for (path, body) in cases {
        let (status, answer) = pay(&app, &ann, path, body.clone(), None).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (400, Some("missing_idempotency_key")),
            "{path}"
        );
        for bad in ["", too_long.as_str(), "two words"] {
            let (status, answer) = pay(&app, &ann, path, body.clone(), Some(bad)).await;
            assert_eq!(
                (status, answer["code"].as_str()),
                (400, Some("invalid_idempotency_key")),
                "{path} {bad:?}"
            );
        }
    }
    assert_eq!(balance(&app, &ann).await, 1_000);
    let token = &ann.tokens.access_token;
    let history = app.http.wallet_history(token, None, 0).await.unwrap();
    assert_eq!(history.entries.len(), 1, "only the top-up moved money");
}

#[tokio::test]
async fn a_retry_with_the_same_key_answers_the_first_result_and_other_parameters_are_refused() {
    let app = spawn_app().await;
    let ann = funded(&app, "Ann", 1_000).await;
    let bo = app.user("Bo").await;
    let key = new_idempotency_key();
    let path = "/v1/wallet/transfers";
    let (status, first) = pay(&app, &ann, path, transfer_to(&bo, 300), Some(&key)).await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = pay(&app, &ann, path, transfer_to(&bo, 300), Some(&key)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(first, again, "the same answer");
    assert_eq!(balance(&app, &ann).await, 700, "paid once");

    let (status, other) = pay(&app, &ann, path, transfer_to(&bo, 400), Some(&key)).await;
    assert_eq!(
        (status, other["code"].as_str()),
        (409, Some("idempotency_key_reused"))
    );
    // A key is the caller's: another user may use the same one.
    let bo_key_path = format!(
        "/v1/wallet/transfers/{}/accept",
        first["transfer_id"].as_str().unwrap()
    );
    let (status, accepted) = pay(&app, &bo, &bo_key_path, Value::Null, Some(&key)).await;
    assert_eq!(
        (status, accepted["status"].as_str()),
        (200, Some("accepted"))
    );
    assert_eq!(balance(&app, &ann).await, 700);
    assert_eq!(balance(&app, &bo).await, 300);

    // A refused request does not use its key up: after a top-up, its retry pays.
    let key = new_idempotency_key();
    let (status, poor) = pay(&app, &ann, path, transfer_to(&bo, 900), Some(&key)).await;
    assert_eq!(
        (status, poor["code"].as_str()),
        (402, Some("insufficient_funds"))
    );
    top_up(&app, &ann, 500).await;
    let (status, paid) = pay(&app, &ann, path, transfer_to(&bo, 900), Some(&key)).await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(balance(&app, &ann).await, 300);
}

#[tokio::test]
async fn five_wrong_pins_in_a_row_lock_payments_and_a_wrong_pin_never_ends_the_session() {
    let app = spawn_app().await;
    let ann = funded(&app, "Ann", 1_000).await;
    let bo = app.user("Bo").await;
    let wrong =
        |amount| json!({"to_user": bo.id.to_string(), "amount_fen": amount, "pin": "246813"});
    for tries_left in (1..=4).rev() {
        let key = new_idempotency_key();
        let (status, body) = pay(&app, &ann, "/v1/wallet/transfers", wrong(100), Some(&key)).await;
        assert_eq!((status, body["code"].as_str()), (403, Some("wrong_pin")));
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains(&tries_left.to_string()),
            "{body}"
        );
    }
    let key = new_idempotency_key();
    let (status, body) = pay(&app, &ann, "/v1/wallet/transfers", wrong(100), Some(&key)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (423, Some("pin_locked")),
        "{body}"
    );
    assert!(body["retry_after_ms"].as_u64().unwrap() > 0);
    // Locked: the right PIN too is refused until the lock passes.
    let key = new_idempotency_key();
    let (status, body) = pay(
        &app,
        &ann,
        "/v1/wallet/transfers",
        transfer_to(&bo, 100),
        Some(&key),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (423, Some("pin_locked")));
    let wallet = app.http.wallet(&ann.tokens.access_token).await.unwrap();
    assert!(wallet.pin_locked_until_ms.is_some());
    assert_eq!(wallet.balance_fen, 1_000);
    // The session lives on.
    app.http.me(&ann.tokens.access_token).await.unwrap();
}

#[tokio::test]
async fn a_pin_is_six_digits_not_a_run_and_changing_it_needs_the_current_one() {
    let app = spawn_app().await;
    let ann = app.user("Ann").await;
    let token = &ann.tokens.access_token;
    let put = |body: Value| crate::helpers::api(&app, &ann, "PUT", "/v1/wallet/pin", body);
    for (pin, code) in [
        ("12345", "invalid_pin"),
        ("12345a", "invalid_pin"),
        ("123456", "weak_pin"),
        ("777777", "weak_pin"),
    ] {
        let (status, body) = put(json!({"pin": pin})).await;
        assert_eq!((status, body["code"].as_str()), (400, Some(code)), "{pin}");
    }
    let bo = app.user("Bo").await;
    let key = new_idempotency_key();
    let (status, body) = pay(
        &app,
        &ann,
        "/v1/wallet/transfers",
        transfer_to(&bo, 1),
        Some(&key),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("pin_not_set")));

    let (status, _) = put(json!({"pin": PIN})).await;
    assert_eq!(status, 204);
    let (status, body) = put(json!({"pin": "246813"})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("current_pin_required"))
    );
    let (status, body) = put(json!({"pin": "246813", "current_pin": "975310"})).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("wrong_pin")));
    app.http
        .set_wallet_pin(token, "246813", Some(PIN))
        .await
        .unwrap();
    assert!(app.http.wallet(token).await.unwrap().pin_set);
}

#[tokio::test]
async fn a_transfer_is_accepted_or_declined_by_its_recipient_alone_and_is_nobody_elses_business() {
    let app = spawn_app().await;
    let ann = funded(&app, "Ann", 1_000).await;
    let (bo, cy) = (app.user("Bo").await, app.user("Cy").await);
    let token = &ann.tokens.access_token;
    let sent = app
        .http
        .send_transfer(token, bo.id, 400, "lunch", PIN, &new_idempotency_key())
        .await
        .unwrap();
    assert_eq!((sent.status, sent.amount_fen), (Status::Pending, 400));
    assert_eq!(balance(&app, &ann).await, 600, "held in escrow");

    let path = format!("/v1/wallet/transfers/{}", sent.transfer_id);
    let (status, body) = get(&app, &cy, &path).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("transfer_not_found"))
    );
    for action in ["accept", "decline"] {
        let key = new_idempotency_key();
        let (status, body) = pay(
            &app,
            &cy,
            &format!("{path}/{action}"),
            Value::Null,
            Some(&key),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("transfer_not_found"))
        );
    }
    // The sender cannot take it for the recipient.
    let key = new_idempotency_key();
    let (status, _) = pay(
        &app,
        &ann,
        &format!("{path}/accept"),
        Value::Null,
        Some(&key),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = get(&app, &bo, "/v1/wallet/transfers/123456789").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("transfer_not_found"))
    );
    let (status, _) = get(&app, &bo, "/v1/wallet/transfers/not-an-id").await;
    assert_eq!(status, 404);

    let accepted = app
        .http
        .accept_transfer(
            &bo.tokens.access_token,
            sent.transfer_id,
            &new_idempotency_key(),
        )
        .await
        .unwrap();
    assert_eq!(accepted.status, Status::Accepted);
    assert!(accepted.settled_ms.is_some());
    assert_eq!(
        (balance(&app, &ann).await, balance(&app, &bo).await),
        (600, 400)
    );
    let key = new_idempotency_key();
    let (status, body) = pay(
        &app,
        &bo,
        &format!("{path}/decline"),
        Value::Null,
        Some(&key),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("transfer_closed"))
    );

    // Declined: the money goes back.
    let second = app
        .http
        .send_transfer(token, bo.id, 250, "", PIN, &new_idempotency_key())
        .await
        .unwrap();
    let declined = app
        .http
        .decline_transfer(
            &bo.tokens.access_token,
            second.transfer_id,
            &new_idempotency_key(),
        )
        .await
        .unwrap();
    assert_eq!(declined.status, Status::Declined);
    assert_eq!(balance(&app, &ann).await, 600);

    // Both sides' histories say it, signed as each saw it.
    let history = app
        .http
        .wallet_history(&bo.tokens.access_token, None, 0)
        .await
        .unwrap();
    let amounts: Vec<i64> = history.entries.iter().map(|e| e.amount_fen).collect();
    assert_eq!(amounts, [400]);
    let history = app.http.wallet_history(token, None, 2).await.unwrap();
    let amounts: Vec<i64> = history.entries.iter().map(|e| e.amount_fen).collect();
    assert_eq!(amounts, [250, -250], "newest first");
    let older = app
        .http
        .wallet_history(token, history.next, 10)
        .await
        .unwrap();
    let amounts: Vec<i64> = older.entries.iter().map(|e| e.amount_fen).collect();
    assert_eq!(amounts, [-400, 1_000]);
    assert!(older.next.is_none());
    // Another wallet's entry is nobody's business.
    let entry = format!("/v1/wallet/entries/{}", older.entries[0].entry_id);
    let (status, body) = get(&app, &cy, &entry).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("entry_not_found"))
    );
}

#[tokio::test]
async fn a_transfer_and_its_acceptance_arrive_live_and_stay_in_the_chat_as_cards() {
    let app = spawn_app().await;
    let ann = funded(&app, "Ann", 1_000).await;
    let bo = app.user("Bo").await;
    let (ann_live, bo_live) = (app.connect(&ann).await, app.connect(&bo).await);
    let sent = app
        .http
        .send_transfer(
            &ann.tokens.access_token,
            bo.id,
            300,
            "for the tickets",
            PIN,
            &new_idempotency_key(),
        )
        .await
        .unwrap();
    let told = wallet_event(&bo_live, |e| e.kind() == wallet_event::Kind::Transfer).await;
    assert_eq!(
        (told.transfer_id, told.status(), told.amount_fen),
        (sent.transfer_id, TransferStatus::Pending, 300)
    );
    app.http
        .accept_transfer(
            &bo.tokens.access_token,
            sent.transfer_id,
            &new_idempotency_key(),
        )
        .await
        .unwrap();
    let told = wallet_event(&ann_live, |e| {
        e.kind() == wallet_event::Kind::Transfer && e.status() == TransferStatus::Accepted
    })
    .await;
    assert_eq!((told.transfer_id, told.user_id), (sent.transfer_id, bo.id));
    let balance_told = wallet_event(&bo_live, |e| e.kind() == wallet_event::Kind::Balance).await;
    assert_eq!(balance_told.balance_fen, 300);

    let page = ann_live.pull(&direct(&ann, &bo), 0, 100).await.unwrap();
    let cards = cards(&page.messages, "transfer", |v| {
        TransferCard::decode(v).unwrap()
    });
    let statuses: Vec<TransferStatus> = cards.iter().map(|(c, _)| c.status()).collect();
    assert_eq!(
        statuses,
        [TransferStatus::Pending, TransferStatus::Accepted]
    );
    let (card, fallback) = &cards[0];
    assert_eq!(
        (
            card.transfer_id,
            card.from_user,
            card.to_user,
            card.amount_fen,
            card.memo.as_str()
        ),
        (sent.transfer_id, ann.id, bo.id, 300, "for the tickets")
    );
    assert!(fallback.contains("3.00"), "{fallback}");
}

#[tokio::test]
async fn a_group_red_packet_is_grabbed_once_each_live_and_its_shares_sum_to_its_amount() {
    let app = spawn_app().await;
    let ann = funded(&app, "Ann", 1_000).await;
    let (bo, cy, dan) = (
        app.user("Bo").await,
        app.user("Cy").await,
        app.user("Dan").await,
    );
    let group = app
        .http
        .create_group(&ann.tokens.access_token, "Hikers", &[bo.id, cy.id])
        .await
        .unwrap();
    let cy_live = app.connect(&cy).await;
    let body = json!({"group_id": group.group_id.to_string(), "amount_fen": 500, "count": 2,
                      "mode": "lucky", "greeting": "Sunday!", "pin": PIN});
    let (status, packet) = pay(
        &app,
        &ann,
        "/v1/wallet/packets",
        body,
        Some(&new_idempotency_key()),
    )
    .await;
    assert_eq!(status, 200, "{packet}");
    assert_eq!(
        (packet["status"].as_str(), packet["claimed"].as_u64()),
        (Some("open"), Some(0))
    );
    assert!(packet.get("shares").is_none(), "the shares are never shown");
    let id: u64 = packet["packet_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(balance(&app, &ann).await, 500);

    let (status, bo_got) = grab(&app, &bo, id).await;
    assert_eq!(status, 200, "{bo_got}");
    let told = wallet_event(&cy_live, |e| e.kind() == wallet_event::Kind::PacketGrabbed).await;
    assert_eq!((told.packet_id, told.user_id), (id, bo.id));
    let (status, again) = grab(&app, &bo, id).await;
    assert_eq!(
        (status, again["code"].as_str()),
        (409, Some("already_grabbed"))
    );
    let (status, outsider) = grab(&app, &dan, id).await;
    assert_eq!(
        (status, outsider["code"].as_str()),
        (404, Some("packet_not_found"))
    );
    let (status, body) = get(&app, &dan, &format!("/v1/wallet/packets/{id}")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("packet_not_found"))
    );

    let (status, cy_got) = grab(&app, &cy, id).await;
    assert_eq!(status, 200, "{cy_got}");
    assert_eq!(cy_got["packet"]["status"], "finished");
    wallet_event(&cy_live, |e| e.kind() == wallet_event::Kind::PacketFinished).await;
    let (status, late) = grab(&app, &ann, id).await;
    assert_eq!(
        (status, late["code"].as_str()),
        (409, Some("packet_finished"))
    );

    let shown = app
        .http
        .red_packet(&ann.tokens.access_token, id)
        .await
        .unwrap();
    assert_eq!(shown.packet.status, RedPacketStatus::Finished);
    let sum: i64 = shown.grabs.iter().map(|g| g.amount_fen).sum();
    assert_eq!(sum, 500);
    let best = shown.grabs.iter().max_by_key(|g| g.amount_fen).unwrap();
    assert!(shown.luckiest.is_some());
    assert_eq!(
        shown
            .grabs
            .iter()
            .find(|g| Some(g.user_id) == shown.luckiest)
            .unwrap()
            .amount_fen,
        best.amount_fen
    );
    assert_eq!(balance(&app, &bo).await + balance(&app, &cy).await, 500);

    let page = cy_live
        .pull(&format!("g.{}", group.group_id), 0, 100)
        .await
        .unwrap();
    let cards = cards(&page.messages, "red_packet", |v| {
        RedPacketCard::decode(v).unwrap()
    });
    assert_eq!(cards.len(), 1);
    let (card, fallback) = &cards[0];
    assert_eq!((card.packet_id, card.amount_fen, card.count), (id, 500, 2));
    assert_eq!(fallback, "[Red packet] Sunday!");
}

#[tokio::test]
async fn a_one_to_one_red_packet_is_for_the_peer_alone() {
    let app = spawn_app().await;
    let ann = funded(&app, "Ann", 1_000).await;
    let (bo, cy) = (app.user("Bo").await, app.user("Cy").await);
    let packet = app
        .http
        .send_red_packet(
            &ann.tokens.access_token,
            &superapp_client::NewRedPacket {
                group_id: None,
                to_user: Some(bo.id),
                amount_fen: 88,
                count: 1,
                mode: superapp_client::RedPacketMode::Lucky,
                exclusive_to: None,
                greeting: String::new(),
                pin: PIN.into(),
            },
            &new_idempotency_key(),
        )
        .await
        .unwrap();
    let path = format!("/v1/wallet/packets/{}/grab", packet.packet_id);
    let (status, body) = pay(&app, &ann, &path, Value::Null, Some(&new_idempotency_key())).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("not_for_you")));
    let (status, _) = pay(&app, &cy, &path, Value::Null, Some(&new_idempotency_key())).await;
    assert_eq!(status, 404);
    let got = app
        .http
        .grab_red_packet(
            &bo.tokens.access_token,
            packet.packet_id,
            &new_idempotency_key(),
        )
        .await
        .unwrap();
    assert_eq!(got.grab.amount_fen, 88);
    assert_eq!(balance(&app, &bo).await, 88);
}

#[tokio::test]
async fn malformed_oversize_and_contradictory_bodies_are_refused_and_move_nothing() {
    let app = spawn_app().await;
    let ann = funded(&app, "Ann", 1_000).await;
    let bo = app.user("Bo").await;
    let raw = |path: &str, content_type: &str, body: String| {
        reqwest::Client::new()
            .post(format!("{}{path}", app.base_url))
            .bearer_auth(&ann.tokens.access_token)
            .header("idempotency-key", new_idempotency_key())
            .header("content-type", content_type.to_string())
            .body(body)
    };
    let (status, body) = answer(raw("/v1/wallet/transfers", "application/json", "{".into())).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_json")));
    let (status, body) = answer(raw("/v1/wallet/transfers", "text/plain", "{}".into())).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    let memo = "x".repeat(100 * 1024);
    let huge = json!({"to_user": bo.id.to_string(), "amount_fen": 1, "memo": memo, "pin": PIN});
    let (status, body) = answer(raw(
        "/v1/wallet/transfers",
        "application/json",
        huge.to_string(),
    ))
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("body_too_large"))
    );
    let unknown = json!({"to_user": bo.id.to_string(), "amount_fen": 1, "pin": PIN, "fee_fen": 1});
    let (status, body) = answer(raw(
        "/v1/wallet/transfers",
        "application/json",
        unknown.to_string(),
    ))
    .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_json")));

    let cases = [
        (
            "/v1/wallet/transfers",
            transfer_to(&bo, 0),
            "invalid_amount",
        ),
        (
            "/v1/wallet/transfers",
            transfer_to(&bo, -5),
            "invalid_amount",
        ),
        ("/v1/wallet/transfers", transfer_to(&ann, 5), "to_self"),
        (
            "/v1/wallet/transfers",
            json!({"to_user": bo.id.to_string(), "amount_fen": 5, "memo": "a\u{7}b", "pin": PIN}),
            "invalid_memo",
        ),
        (
            "/v1/wallet/packets",
            json!({"group_id": "1", "to_user": bo.id.to_string(), "amount_fen": 5, "count": 1,
                   "mode": "lucky", "pin": PIN}),
            "invalid_place",
        ),
        (
            "/v1/wallet/packets",
            json!({"amount_fen": 5, "count": 1, "mode": "lucky", "pin": PIN}),
            "invalid_place",
        ),
        (
            "/v1/wallet/packets",
            json!({"to_user": bo.id.to_string(), "amount_fen": 5, "count": 2, "mode": "equal",
                   "pin": PIN}),
            "invalid_packet",
        ),
    ];
    for (path, body, code) in cases {
        let (status, answer) = pay(&app, &ann, path, body, Some(&new_idempotency_key())).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (400, Some(code)),
            "{answer}"
        );
    }
    let (status, body) = get(&app, &ann, "/v1/wallet/history?limit=x").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_query"))
    );
    assert_eq!(balance(&app, &ann).await, 1_000);
}

/// The callback for `event` at `timestamp_ms` with `nonce`, signed as a
/// server given [`PROVIDER_SECRET`] expects: its headers and body.
fn signed(event: &Value, timestamp_ms: i64, nonce: &str) -> (Vec<(&'static str, String)>, Vec<u8>) {
    let body = event.to_string().into_bytes();
    let timestamp = timestamp_ms.to_string();
    let signature = superapp_wallet::provider::signature::sign(
        PROVIDER_SECRET.as_bytes(),
        &timestamp,
        nonce,
        &body,
    );
    let headers = vec![
        ("sandbox-timestamp", timestamp),
        ("sandbox-nonce", nonce.to_string()),
        ("sandbox-signature", signature),
    ];
    (headers, body)
}

async fn deliver(app: &TestApp, headers: &[(&'static str, String)], body: &[u8]) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/v1/wallet/callback", app.base_url))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    answer(request).await
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn callbacks_with_a_bad_signature_an_old_timestamp_a_replayed_nonce_or_a_wrong_amount_are_refused()
 {
    let app = spawn_app_with(|c| {
        c.wallet.provider_secret = Some(Secret::new(PROVIDER_SECRET.to_string()));
    })
    .await;
    let ann = app.user("Ann").await;
    let started = app
        .http
        .top_up(&ann.tokens.access_token, 700, &new_idempotency_key())
        .await
        .unwrap();
    let paid = |amount: i64| {
        json!({"event": "pay_in.paid", "order_id": started.order.order_id.to_string(),
               "provider_ref": started.order.provider_ref, "amount_fen": amount})
    };
    let nonce = |n: u32| format!("test-nonce-{n:08}");

    let (mut headers, body) = signed(&paid(700), now_ms(), &nonce(1));
    headers[2].1 = headers[2].1.replace(|c: char| c.is_ascii_digit(), "a");
    let (status, answer) = deliver(&app, &headers, &body).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("bad_signature"))
    );
    // Signed, but not this body.
    let (headers, _) = signed(&paid(700), now_ms(), &nonce(2));
    let (status, answer) = deliver(&app, &headers, &paid(70_000).to_string().into_bytes()).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("bad_signature"))
    );

    let (headers, body) = signed(&paid(700), now_ms() - 3_600_000, &nonce(3));
    let (status, answer) = deliver(&app, &headers, &body).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("stale_callback"))
    );

    let (headers, body) = signed(&json!({"event": "pay_in.refunded"}), now_ms(), &nonce(4));
    let (status, answer) = deliver(&app, &headers, &body).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("malformed_callback"))
    );

    let (headers, body) = signed(&paid(701), now_ms(), &nonce(5));
    let (status, answer) = deliver(&app, &headers, &body).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("amount_mismatch"))
    );
    assert_eq!(balance(&app, &ann).await, 0);

    let (headers, body) = signed(&paid(700), now_ms(), &nonce(6));
    let (status, answer) = deliver(&app, &headers, &body).await;
    assert_eq!(
        (status, answer["received"].as_bool()),
        (200, Some(true)),
        "{answer}"
    );
    let (status, answer) = deliver(&app, &headers, &body).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("replayed_nonce"))
    );
    // The same notice again with a fresh nonce, as a provider delivers
    // twice: answered as applied, credited once.
    let (headers, body) = signed(&paid(700), now_ms(), &nonce(7));
    let (status, _) = deliver(&app, &headers, &body).await;
    assert_eq!(status, 200);
    assert_eq!(balance(&app, &ann).await, 700);
    let order = app
        .http
        .wallet_order(&ann.tokens.access_token, started.order.order_id)
        .await
        .unwrap();
    assert_eq!(order.status, OrderStatus::Paid);

    let unknown = json!({"event": "pay_in.paid", "order_id": "12345", "provider_ref": "sbx_x",
                         "amount_fen": 700});
    let (headers, body) = signed(&unknown, now_ms(), &nonce(8));
    let (status, answer) = deliver(&app, &headers, &body).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("unknown_order"))
    );
}

#[tokio::test]
async fn a_withdrawal_needs_a_verified_real_name_and_is_settled_or_reversed_by_the_provider() {
    let app = spawn_app_with(|c| c.wallet.sandbox_payout_delay_ms = 50).await;
    let ann = funded(&app, "Ann", 1_000).await;
    let token = &ann.tokens.access_token;
    let body = |amount: i64| json!({"amount_fen": amount, "pin": PIN});
    let (status, refused) = pay(
        &app,
        &ann,
        "/v1/wallet/withdrawals",
        body(300),
        Some(&new_idempotency_key()),
    )
    .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (403, Some("real_name_required"))
    );

    let verified = app
        .http
        .submit_real_name(token, "阿依古丽·买买提", &verifiable_number())
        .await
        .unwrap();
    assert_eq!(verified.status, superapp_client::RealNameStatus::Verified);
    let order = app
        .http
        .withdraw(token, 300, PIN, &new_idempotency_key())
        .await
        .unwrap();
    assert_eq!(balance(&app, &ann).await, 700, "out at once");
    assert_eq!(
        settled(&app, &ann, order.order_id).await.status,
        OrderStatus::Settled
    );
    assert_eq!(balance(&app, &ann).await, 700);

    // The sandbox fails every amount ending in 13 fen: the money comes back.
    let failing = app
        .http
        .withdraw(token, 113, PIN, &new_idempotency_key())
        .await
        .unwrap();
    assert_eq!(
        settled(&app, &ann, failing.order_id).await.status,
        OrderStatus::Reversed
    );
    assert_eq!(balance(&app, &ann).await, 700);
    let (status, poor) = pay(
        &app,
        &ann,
        "/v1/wallet/withdrawals",
        body(5_000),
        Some(&new_idempotency_key()),
    )
    .await;
    assert_eq!(
        (status, poor["code"].as_str()),
        (402, Some("insufficient_funds"))
    );
}
