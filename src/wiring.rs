//! Adapters that plug one room's implementation into another room's port.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use superapp_account::policy::GroupAdd;
use superapp_account::{Accounts, Social};
use superapp_chat::model::{Addition, UserId};
use superapp_chat::{Chat, Directory};
use superapp_kit::BoxFuture;
use superapp_kit::rpc::FenceFloor;

/// Where the core's request server starts a shard's fencing numbers: above
/// the highest the chat store has accepted, which outlives a Redis restart.
pub fn fence_floor(chat: Arc<Chat>) -> FenceFloor {
    Arc::new(move |shard| {
        let chat = chat.clone();
        Box::pin(async move {
            chat.fence_mark(shard)
                .await
                .inspect_err(|e| tracing::warn!(shard, error = %e, "fence mark unreadable"))
                .ok()
        })
    })
}

/// Most user ids remembered as existing before the memory is started afresh.
const KNOWN_USERS_CAP: usize = 1_000_000;

/// Chat asks "does this user exist?"; the account room answers. Accounts are
/// never deleted, so a "yes" is remembered and the send path skips the store
/// read; a "no" is always asked again (the user may register a moment later).
pub struct AccountDirectory {
    accounts: Arc<Accounts>,
    social: Arc<Social>,
    known: RwLock<HashSet<UserId>>,
}

impl AccountDirectory {
    pub fn new(accounts: Arc<Accounts>, social: Arc<Social>) -> Self {
        Self {
            accounts,
            social,
            known: RwLock::new(HashSet::new()),
        }
    }
}

impl Directory for AccountDirectory {
    fn user_exists(&self, user_id: UserId) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async move {
            if self
                .known
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&user_id)
            {
                return Ok(true);
            }
            let exists = self
                .accounts
                .user_exists(user_id)
                .await
                .map_err(|e| e.to_string())?;
            if exists {
                let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
                if known.len() >= KNOWN_USERS_CAP {
                    known.clear();
                }
                known.insert(user_id);
            }
            Ok(exists)
        })
    }

    fn display_names(
        &self,
        ids: Vec<UserId>,
    ) -> BoxFuture<'_, Result<Vec<(UserId, String)>, String>> {
        Box::pin(async move {
            self.accounts
                .display_names(ids)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn may_message(
        &self,
        sender: UserId,
        recipient: UserId,
    ) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async move {
            (self.social.may_message(sender, recipient).await).map_err(|e| e.to_string())
        })
    }

    fn group_additions(
        &self,
        inviter: UserId,
        invitees: &[UserId],
    ) -> BoxFuture<'_, Result<Vec<Addition>, String>> {
        let invitees = invitees.to_vec();
        Box::pin(async move {
            let decided = (self.social.group_additions(inviter, &invitees).await)
                .map_err(|e| e.to_string())?;
            let additions = decided.into_iter().map(|add| match add {
                GroupAdd::Direct => Addition::Direct,
                GroupAdd::Invite => Addition::Invite,
                GroupAdd::Drop => Addition::Drop,
            });
            Ok(additions.collect())
        })
    }
}
