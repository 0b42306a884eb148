//! Adapters that plug one room's implementation into another room's port.

use std::sync::Arc;

use superapp_account::Accounts;
use superapp_chat::Directory;
use superapp_kit::BoxFuture;

/// Chat asks "does this user exist?"; the account room answers.
pub struct AccountDirectory {
    accounts: Arc<Accounts>,
}

impl AccountDirectory {
    pub fn new(accounts: Arc<Accounts>) -> Self {
        Self { accounts }
    }
}

impl Directory for AccountDirectory {
    fn user_exists(&self, user_id: u64) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async move {
            self.accounts
                .user_exists(user_id)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
