//! Wallet: the payment-provider port through which top-ups and withdrawals
//! reach a payment provider, and the sandbox provider that stands in for one.

pub mod provider;
