//! A test double of chat's [`Directory`] port (the account room's side),
//! shared by the tests of the service and of calls.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use superapp_kit::BoxFuture;

use crate::Directory;
use crate::model::{SendVerdict, UserId, View};

/// The social graph as chat sees it: everyone exists; one verdict for every
/// send; views as the test sets them; a card may be shared of oneself and
/// of the friends listed.
#[derive(Default)]
pub struct Graph {
    pub verdict: Mutex<Option<SendVerdict>>,
    pub views: Mutex<HashMap<UserId, Arc<View>>>,
    /// (sender, subject): the sender may share the subject's card.
    pub shareable: Mutex<HashSet<(UserId, UserId)>>,
}

impl Directory for Graph {
    fn user_exists(&self, _: UserId) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async { Ok(true) })
    }

    fn display_names(
        &self,
        users: Vec<UserId>,
    ) -> BoxFuture<'_, Result<Vec<(UserId, String)>, String>> {
        let named = users.into_iter().map(|u| (u, u.to_string())).collect();
        Box::pin(async move { Ok(named) })
    }

    fn send_verdict(&self, _: UserId, _: UserId) -> BoxFuture<'_, Result<SendVerdict, String>> {
        let verdict = self
            .verdict
            .lock()
            .unwrap()
            .unwrap_or(SendVerdict::DELIVERED);
        Box::pin(async move { Ok(verdict) })
    }

    fn view(&self, viewer: UserId) -> BoxFuture<'_, Result<Arc<View>, String>> {
        let view = self.views.lock().unwrap().get(&viewer).cloned();
        Box::pin(async move { Ok(view.unwrap_or_default()) })
    }

    fn card(
        &self,
        sender: UserId,
        subject: UserId,
    ) -> BoxFuture<'_, Result<Option<(String, String)>, String>> {
        let may = sender == subject || self.shareable.lock().unwrap().contains(&(sender, subject));
        let card = may.then(|| {
            (
                format!("User {}", subject.0),
                format!("https://a.example/{}.png", subject.0),
            )
        });
        Box::pin(async move { Ok(card) })
    }
}
