//! The behaviour every [`AccountStore`] backend must show, through the trait
//! alone. SQLite runs it in this crate's tests; another backend runs it by
//! enabling the `conformance` feature and calling these functions on a fresh,
//! empty store of its own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::model::{Rotation, SessionRecord, UserId, UserRecord};
use crate::store::AccountStore;

fn user(id: u64, phone: &str) -> UserRecord {
    UserRecord {
        id: UserId(id),
        phone: phone.into(),
        display_name: "A".into(),
        password_hash: "$argon2id$x".into(),
        created_at_ms: 1,
    }
}

fn session(id: u64, user_id: u64) -> SessionRecord {
    SessionRecord {
        id,
        user_id: UserId(user_id),
        device_name: "phone".into(),
        created_at_ms: 0,
        expires_at_ms: 1_000,
    }
}

pub async fn account_store(store: &dyn AccountStore) {
    assert!(
        store
            .display_names(vec![UserId(1)])
            .await
            .unwrap()
            .is_empty()
    );
    // A phone belongs to one user.
    assert!(store.create_user(user(1, "+8613800000001")).await.unwrap());
    assert!(!store.create_user(user(2, "+8613800000001")).await.unwrap());
    assert_eq!(store.user(UserId(2)).await.unwrap(), None);
    let found = store
        .user_by_phone("+8613800000001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, user(1, "+8613800000001"));
    assert_eq!(
        store
            .display_names(vec![UserId(99), UserId(1)])
            .await
            .unwrap(),
        vec![(UserId(1), "A".to_string())]
    );

    // Refresh tokens rotate once; a spent one revokes the session.
    store
        .create_session(session(10, 1), "h0".into())
        .await
        .unwrap();
    assert_eq!(store.active_session(10, 5).await.unwrap(), Some(UserId(1)));
    assert!(matches!(
        store.rotate_refresh("h0".into(), "h1".into(), 5).await.unwrap(),
        Rotation::Rotated(s) if s.id == 10
    ));
    assert_eq!(
        store
            .rotate_refresh("h0".into(), "h2".into(), 6)
            .await
            .unwrap(),
        Rotation::Reused {
            session_id: 10,
            user_id: UserId(1)
        }
    );
    assert_eq!(store.active_session(10, 7).await.unwrap(), None);
    assert_eq!(
        store
            .rotate_refresh("h1".into(), "h3".into(), 8)
            .await
            .unwrap(),
        Rotation::Invalid
    );
    assert_eq!(
        store
            .rotate_refresh("unknown".into(), "h4".into(), 8)
            .await
            .unwrap(),
        Rotation::Invalid
    );

    // Sessions expire and can be revoked.
    store
        .create_session(session(11, 1), "k0".into())
        .await
        .unwrap();
    assert_eq!(store.active_session(11, 1_000).await.unwrap(), None);
    assert_eq!(
        store
            .rotate_refresh("k0".into(), "k1".into(), 1_000)
            .await
            .unwrap(),
        Rotation::Invalid
    );
    store
        .create_session(session(12, 1), "j0".into())
        .await
        .unwrap();
    store.revoke_session(12, 9).await.unwrap();
    assert_eq!(store.active_session(12, 10).await.unwrap(), None);
}

/// Two refreshes racing with one token: exactly one rotates.
pub async fn concurrent_refreshes(store: &dyn AccountStore) {
    store.create_user(user(1, "+8613800000001")).await.unwrap();
    store
        .create_session(session(10, 1), "h0".into())
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        store.rotate_refresh("h0".into(), "a1".into(), 5),
        store.rotate_refresh("h0".into(), "b1".into(), 5),
    );
    let rotated = [a.unwrap(), b.unwrap()]
        .iter()
        .filter(|r| matches!(r, Rotation::Rotated(_)))
        .count();
    assert_eq!(rotated, 1);
}
