//! The wallet over HTTP: the balance, the payment PIN, top-ups (and the
//! sandbox provider's checkout), withdrawals, transfers, red packets and
//! the ledger's history.
//!
//! Each method that moves money takes an idempotency key: make one with
//! [`new_idempotency_key`] for each new request and use it again, unchanged,
//! in every retry of that request, so a retry after a lost answer is
//! answered with the first result instead of paying twice.

use reqwest::Method;

use crate::error::Result;
use crate::http::{HttpClient, NO_BODY, answer, answer_bytes};

pub use superapp_api::{
    EntryReason, NewRedPacket, OrderKind, OrderStatus, PacketGrab, PacketGrabbed, RedPacket,
    RedPacketDetails, RedPacketMode, RedPacketStatus, TopUpStarted, TransferStatus, WalletEntry,
    WalletEntryDetails, WalletHistory, WalletLimits, WalletOrder, WalletSummary, WalletTransfer,
};

/// The header that names a request that moves money.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// A fresh idempotency key: 32 hex digits, unique per client (see
/// [`crate::new_client_msg_id`]), well within the server's 64 printable
/// ASCII characters.
pub fn new_idempotency_key() -> String {
    crate::ws::new_client_msg_id()
}

impl HttpClient {
    /// `POST` of a request that moves money, named by `key`.
    async fn pay<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        path: &str,
        body: Option<&impl serde::Serialize>,
        key: &str,
    ) -> Result<T> {
        let request = self
            .start(Method::POST, path, Some(token), body)
            .header(IDEMPOTENCY_KEY, key);
        answer(request, path).await
    }

    /// `GET /v1/wallet`: the balance, the PIN's state, today's limits and use.
    pub async fn wallet(&self, token: &str) -> Result<WalletSummary> {
        self.call(Method::GET, "/v1/wallet", Some(token), NO_BODY)
            .await
    }

    /// `PUT /v1/wallet/pin`: sets the payment PIN (6 digits); changing it
    /// needs the `current` one.
    pub async fn set_wallet_pin(
        &self,
        token: &str,
        pin: &str,
        current: Option<&str>,
    ) -> Result<()> {
        let body = superapp_api::SetPin {
            pin: pin.into(),
            current_pin: current.map(str::to_owned),
        };
        let request = self.start(Method::PUT, "/v1/wallet/pin", Some(token), Some(&body));
        answer_bytes(request).await.map(drop)
    }

    /// `POST /v1/wallet/top-ups`: opens a top-up of `amount_fen`, to be paid
    /// at its `pay_url`.
    pub async fn top_up(&self, token: &str, amount_fen: i64, key: &str) -> Result<TopUpStarted> {
        let body = superapp_api::NewTopUp { amount_fen };
        self.pay(token, "/v1/wallet/top-ups", Some(&body), key)
            .await
    }

    /// Pays (or fails) a top-up at the sandbox provider's checkout, its
    /// `pay_url`. The provider then tells the server, which credits the
    /// wallet: watch the order ([`wallet_order`](Self::wallet_order)) until it is `paid`.
    pub async fn sandbox_pay(&self, pay_url: &str, paid: bool) -> Result<()> {
        let body = superapp_api::SandboxPay { paid };
        answer_bytes(self.start_url(Method::POST, pay_url, Some(&body)))
            .await
            .map(drop)
    }

    /// `GET /v1/wallet/orders/{order_id}`: one of the caller's top-ups or
    /// withdrawals.
    pub async fn wallet_order(&self, token: &str, order_id: u64) -> Result<WalletOrder> {
        let path = format!("/v1/wallet/orders/{order_id}");
        self.call(Method::GET, &path, Some(token), NO_BODY).await
    }

    /// `POST /v1/wallet/withdrawals`: `amount_fen` out to the caller's bank
    /// card.
    pub async fn withdraw(
        &self,
        token: &str,
        amount_fen: i64,
        pin: &str,
        key: &str,
    ) -> Result<WalletOrder> {
        let body = superapp_api::NewWithdrawal {
            amount_fen,
            pin: pin.into(),
        };
        self.pay(token, "/v1/wallet/withdrawals", Some(&body), key)
            .await
    }

    /// `POST /v1/wallet/transfers`: `amount_fen` to `to_user`, held until
    /// they accept or decline it.
    pub async fn send_transfer(
        &self,
        token: &str,
        to_user: u64,
        amount_fen: i64,
        memo: &str,
        pin: &str,
        key: &str,
    ) -> Result<WalletTransfer> {
        let body = superapp_api::NewTransfer {
            to_user,
            amount_fen,
            memo: memo.into(),
            pin: pin.into(),
        };
        self.pay(token, "/v1/wallet/transfers", Some(&body), key)
            .await
    }

    /// `GET /v1/wallet/transfers/{transfer_id}`.
    pub async fn wallet_transfer(&self, token: &str, transfer_id: u64) -> Result<WalletTransfer> {
        let path = format!("/v1/wallet/transfers/{transfer_id}");
        self.call(Method::GET, &path, Some(token), NO_BODY).await
    }

    /// `POST /v1/wallet/transfers/{transfer_id}/accept`.
    pub async fn accept_transfer(
        &self,
        token: &str,
        transfer_id: u64,
        key: &str,
    ) -> Result<WalletTransfer> {
        let path = format!("/v1/wallet/transfers/{transfer_id}/accept");
        self.pay(token, &path, NO_BODY, key).await
    }

    /// `POST /v1/wallet/transfers/{transfer_id}/decline`: the money goes
    /// back to the sender.
    pub async fn decline_transfer(
        &self,
        token: &str,
        transfer_id: u64,
        key: &str,
    ) -> Result<WalletTransfer> {
        let path = format!("/v1/wallet/transfers/{transfer_id}/decline");
        self.pay(token, &path, NO_BODY, key).await
    }

    /// `POST /v1/wallet/packets`: a red packet into a group or a one-to-one
    /// chat.
    pub async fn send_red_packet(
        &self,
        token: &str,
        packet: &NewRedPacket,
        key: &str,
    ) -> Result<RedPacket> {
        self.pay(token, "/v1/wallet/packets", Some(packet), key)
            .await
    }

    /// `GET /v1/wallet/packets/{packet_id}`: the packet, its grabs, and its
    /// luckiest grabber once finished.
    pub async fn red_packet(&self, token: &str, packet_id: u64) -> Result<RedPacketDetails> {
        let path = format!("/v1/wallet/packets/{packet_id}");
        self.call(Method::GET, &path, Some(token), NO_BODY).await
    }

    /// `POST /v1/wallet/packets/{packet_id}/grab`: the caller's share.
    pub async fn grab_red_packet(
        &self,
        token: &str,
        packet_id: u64,
        key: &str,
    ) -> Result<PacketGrabbed> {
        let path = format!("/v1/wallet/packets/{packet_id}/grab");
        self.pay(token, &path, NO_BODY, key).await
    }

    /// `GET /v1/wallet/history`: a page of the wallet's entries, newest
    /// first, older than `before` (a page's `next`); `limit` 0 is the
    /// server's default.
    pub async fn wallet_history(
        &self,
        token: &str,
        before: Option<u64>,
        limit: u32,
    ) -> Result<WalletHistory> {
        let mut path = format!("/v1/wallet/history?limit={limit}");
        if let Some(before) = before {
            path.push_str(&format!("&before={before}"));
        }
        self.call(Method::GET, &path, Some(token), NO_BODY).await
    }

    /// `GET /v1/wallet/entries/{entry_id}`: an entry and what it belongs to.
    pub async fn wallet_entry(&self, token: &str, entry_id: u64) -> Result<WalletEntryDetails> {
        let path = format!("/v1/wallet/entries/{entry_id}");
        self.call(Method::GET, &path, Some(token), NO_BODY).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn fresh_idempotency_keys_differ_and_fit_the_servers_rule() {
        let (a, b) = (new_idempotency_key(), new_idempotency_key());
        assert_ne!(a, b);
        for key in [a, b] {
            assert!((1..=64).contains(&key.len()), "{key}");
            assert!(key.bytes().all(|c| c.is_ascii_graphic()), "{key}");
        }
    }
}
