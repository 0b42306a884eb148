//! The reconciliation of the ledger: every check an auditor would make,
//! answered as a list of mismatches (empty when the books are right).

use std::collections::HashMap;

use super::{Wallet, yuan};
use crate::error::WalletError;
use crate::model::{Account, Fen, OrderKind, OrderStatus, Reason};
use crate::store::Audit;

/// What the reconciliation found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reconciliation {
    pub accounts: usize,
    pub orders: usize,
    /// The sum of every account's balance: zero in a sound ledger.
    pub total: Fen,
    /// What the wallets hold together.
    pub wallets: Fen,
    /// Each mismatch, in words; none in a sound ledger.
    pub mismatches: Vec<String>,
}

impl Reconciliation {
    pub fn is_clean(&self) -> bool {
        self.mismatches.is_empty()
    }
}

impl Wallet {
    /// Reconciles the ledger as it stands ([`check`]).
    pub async fn reconcile(&self) -> Result<Reconciliation, WalletError> {
        Ok(check(&self.store.audit().await?))
    }
}

/// Checks the double-entry sum, every balance against its journal, no
/// wallet or escrow below zero, and every provider order against its
/// entries.
pub fn check(audit: &Audit) -> Reconciliation {
    let mut report = Reconciliation {
        accounts: audit.accounts.len(),
        orders: audit.orders.len(),
        ..Reconciliation::default()
    };
    for (account, stored, journal) in &audit.accounts {
        report.total += stored;
        if matches!(account, Account::Wallet(_)) {
            report.wallets += stored;
        }
        if stored != journal {
            report.mismatches.push(format!(
                "{account}: balance {} but its entries sum to {}",
                yuan(*stored),
                yuan(*journal)
            ));
        }
        if *stored < 0 && !account.may_go_negative() {
            report
                .mismatches
                .push(format!("{account}: below zero ({})", yuan(*stored)));
        }
    }
    if report.total != 0 {
        report.mismatches.push(format!(
            "the balances sum to {}, not zero",
            yuan(report.total)
        ));
    }
    for id in &audit.malformed_entries {
        report.mismatches.push(format!(
            "entry {id}: unknown account or amount not above zero"
        ));
    }
    for (order, sums) in &audit.orders {
        let found: HashMap<Reason, Fen> = sums.iter().copied().collect();
        let amount = order.amount;
        let expected: &[(Reason, Fen)] = match (order.kind, order.status) {
            (OrderKind::PayIn, OrderStatus::Paid) => &[(Reason::TopUp, amount)],
            (OrderKind::PayIn, _) => &[],
            (OrderKind::Payout, OrderStatus::Settled) => &[
                (Reason::Withdrawal, amount),
                (Reason::PayoutSettled, amount),
            ],
            (OrderKind::Payout, OrderStatus::Reversed) => &[
                (Reason::Withdrawal, amount),
                (Reason::PayoutReversed, amount),
            ],
            (OrderKind::Payout, _) => &[(Reason::Withdrawal, amount)],
        };
        let wanted: HashMap<Reason, Fen> = expected.iter().copied().collect();
        if found != wanted {
            report.mismatches.push(format!(
                "order {} ({:?}, {}): entries {:?}, expected {:?}",
                order.id,
                order.kind,
                order.status.as_str(),
                sums,
                expected
            ));
        }
    }
    report
}
