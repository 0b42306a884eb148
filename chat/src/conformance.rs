//! The behaviour every chat store backend must show, through the traits
//! alone. SQLite runs it in this crate's tests; another backend runs it by
//! enabling the `conformance` feature and calling these functions on a fresh,
//! empty store of its own.
//!
//! - [`chat_store`]: sequencing, idempotency, ranges, the conversation list
//!   and read marks.
//! - [`concurrent_duplicates`]: twenty racing sends of one `client_msg_id`
//!   store one message.
//! - [`unread_counts`]: a conversation's unread count is the messages of
//!   others above the member's read mark, in one-to-one chats and groups.
//! - [`fencing`]: a write under a lower fencing number than the shard has
//!   seen is refused and changes nothing.
//! - [`group_store`]: the group lifecycle, caps under concurrency, mentions.
//! - [`group_limits`]: on a store built with [`LIMITS`], the daily creation
//!   cap and the membership cap, each refusing before anything is written.
//! - [`group_invitations`]: pending invitations into groups: stored, listed,
//!   refreshed, expired, withdrawn, accepted within the group's caps, and
//!   declined.
//! - [`group_rules_match_the_model`]: random operations by random members
//!   (invitations and their answers among them), each answered as an
//!   in-memory model that applies [`crate::policy`] says.
//! - [`member_search_matches_the_model`]: member lists and searches, paged
//!   at random, answer what filtering every member in memory answers.
//! - [`departures`]: a user whose account is erased leaves every group; the
//!   groups they own go to the first admin, else the first member, or are
//!   dissolved when they were alone.
//! - [`views_match_the_model`]: conversation lists and read marks as users
//!   see them through their views (withheld messages, blocks with their
//!   times, hidden friends), against a model filtering every message.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use crate::ChatError;
use crate::model::{
    Appended, Asked, ConversationId, Departure, Fence, GroupId, GroupInfo, GroupInvitation,
    GroupLimits, GroupUpdate, InboxCursor, InboxEntry, JoinRequest, MemberChange, MemberInfo,
    Mentions, NewGroup, NewGroupMessage, NewMessage, Removal, Role, UserId, View,
};
use crate::policy::{self, Admission, INVITATION_TTL_MS, MAX_MEMBERS};
use crate::store::{ChatStorage, ChatStore, GroupStore, StoreError};

fn direct(a: u64, b: u64) -> ConversationId {
    ConversationId::direct(UserId(a), UserId(b)).unwrap()
}

fn message(sender: u64, peer: u64, cmid: &str, t: i64) -> NewMessage {
    NewMessage {
        conversation: direct(sender, peer),
        sender: UserId(sender),
        members: [UserId(sender), UserId(peer)],
        client_msg_id: cmid.into(),
        message_id: t as u64,
        server_time_ms: t,
        body: b"x".to_vec(),
        fence: None,
        withheld: false,
    }
}

/// A page of `user`'s conversation list, for a user whose view filters nothing.
async fn list(
    store: &(impl ChatStore + ?Sized),
    user: UserId,
    cursor: Option<InboxCursor>,
    limit: u32,
) -> Vec<InboxEntry> {
    let page = store.inbox(user, cursor, limit, Arc::default()).await;
    page.unwrap().entries
}

/// A message from `sender` to `peer` in their one-to-one conversation.
pub fn direct_message(sender: u64, peer: u64, cmid: &str, t: i64) -> NewMessage {
    message(sender, peer, cmid, t)
}

pub async fn chat_store(store: &dyn ChatStore) {
    // Seq counts up per conversation from 1.
    let a = store.append(message(1, 2, "a", 10)).await.unwrap();
    let b = store.append(message(2, 1, "b", 11)).await.unwrap();
    let c = store.append(message(1, 3, "c", 12)).await.unwrap();
    assert_eq!((a.seq, b.seq, c.seq), (1, 2, 1));
    assert!(!a.duplicate);

    // A repeated client_msg_id returns the first ack and stores nothing.
    let again = store.append(message(1, 2, "a", 99)).await.unwrap();
    assert_eq!(
        (again.seq, again.server_time_ms, again.duplicate),
        (1, 10, true)
    );
    // The same client_msg_id from the other member is another message.
    let theirs = store.append(message(2, 1, "a", 13)).await.unwrap();
    assert_eq!((theirs.seq, theirs.duplicate), (3, false));
    let all = store.messages_after(direct(1, 2), 0, 100).await.unwrap();
    assert_eq!(all.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(all[0].body, b"x");
    assert_eq!(all[0].conversation, direct(1, 2));

    // Ranges are exclusive of after_seq and bounded by limit.
    let page = store.messages_after(direct(1, 2), 1, 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!((page[0].seq, page[0].sender), (2, UserId(2)));
    assert!(
        store
            .messages_after(direct(1, 2), u64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // The inbox lists by last activity with exact unread counts.
    let inbox = list(store, UserId(1), None, 10).await;
    let ids: Vec<_> = inbox.iter().map(|e| e.conversation).collect();
    assert_eq!(ids, [direct(1, 2), direct(1, 3)]);
    assert_eq!(
        (inbox[0].unread, inbox[0].read_seq, inbox[0].peer),
        (2, 1, Some(UserId(2)))
    );
    let next = store
        .inbox(
            UserId(1),
            Some(InboxCursor {
                last_activity_ms: inbox[0].last_activity_ms,
                conversation: inbox[0].conversation,
            }),
            10,
            Arc::default(),
        )
        .await
        .map(|page| page.entries)
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].conversation, direct(1, 3));

    // Read marks move forward only and stop at the last seq.
    assert_eq!(
        store
            .mark_read(UserId(1), direct(1, 2), 50, None)
            .await
            .unwrap(),
        Some(3)
    );
    assert_eq!(
        store
            .mark_read(UserId(1), direct(1, 2), 1, None)
            .await
            .unwrap(),
        Some(3)
    );
    assert_eq!(
        store
            .mark_read(UserId(9), direct(1, 2), 1, None)
            .await
            .unwrap(),
        None
    );
    let inbox = list(store, UserId(2), None, 10).await;
    assert_eq!((inbox[0].peer_read_seq, inbox[0].unread), (3, 0));

    assert_eq!(
        store.members(direct(1, 2)).await.unwrap(),
        vec![UserId(1), UserId(2)]
    );
    assert!(store.members(direct(7, 8)).await.unwrap().is_empty());
}

/// Unread is what others sent above one's read mark: one's own messages
/// never count, and sending marks everything before one's message as read,
/// on every device. A newcomer to a group has nothing unread from before.
pub async fn unread_counts(store: &dyn ChatStorage) {
    let unread = |user: u64| async move {
        let inbox = list(store, UserId(user), None, 10).await;
        inbox
            .iter()
            .map(|e| (e.conversation.to_string(), e.unread))
            .collect::<BTreeMap<_, _>>()
    };
    let d = direct(1, 2).to_string();
    for (i, sender) in [2, 2, 1, 2, 2, 2].into_iter().enumerate() {
        let peer = 3 - sender;
        let cmid = format!("d{i}");
        store
            .append(message(sender, peer, &cmid, 10 + i as i64))
            .await
            .unwrap();
    }
    // 1 read the first two by answering; the last three are unread.
    assert_eq!(unread(1).await[&d], 3);
    assert_eq!(unread(2).await[&d], 0);
    store
        .mark_read(UserId(1), direct(1, 2), 5, None)
        .await
        .unwrap();
    assert_eq!(unread(1).await[&d], 1);

    create(store, 1, users(2..4)).await;
    let g = ConversationId::Group(GroupId(1)).to_string();
    for (i, sender) in [2, 3, 2].into_iter().enumerate() {
        let cmid = format!("g{i}");
        let m = group_message(sender, &cmid, 100 + i as i64, Mentions::default());
        store.append_group(m).await.unwrap();
    }
    assert_eq!(unread(1).await[&g], 3);
    assert_eq!(unread(2).await[&g], 0, "2 sent the last one");
    assert_eq!(unread(3).await[&g], 1, "3's own send is not unread");
    store
        .append_group(group_message(1, "g3", 103, Mentions::default()))
        .await
        .unwrap();
    assert_eq!(unread(1).await[&g], 0, "sending reads what came before");
    assert_eq!(unread(2).await[&g], 1);
    store
        .invite(GroupId(1), UserId(1), users(4..5), Asked::default(), 104)
        .await
        .unwrap();
    assert_eq!(unread(4).await[&g], 0, "a newcomer has no unread past");
    store
        .append_group(group_message(3, "g4", 105, Mentions::default()))
        .await
        .unwrap();
    assert_eq!(unread(4).await[&g], 1);
    store
        .mark_read(UserId(2), ConversationId::Group(GroupId(1)), 4, None)
        .await
        .unwrap();
    assert_eq!(unread(2).await[&g], 1);
}

pub async fn concurrent_duplicates(store: Arc<dyn ChatStorage>) {
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.append(message(1, 2, "same", i)).await })
        })
        .collect();
    let mut acks = Vec::new();
    for t in tasks {
        acks.push(t.await.unwrap().unwrap());
    }
    assert!(
        acks.iter()
            .all(|a| a.seq == 1 && a.message_id == acks[0].message_id)
    );
    assert_eq!(acks.iter().filter(|a| !a.duplicate).count(), 1);
    assert_eq!(
        store
            .messages_after(direct(1, 2), 0, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

fn is_fenced<T: std::fmt::Debug>(outcome: Result<T, StoreError>, shard: u32, high: u64) -> bool {
    matches!(
        outcome,
        Err(StoreError::Fenced { shard: s, high_water, .. }) if s == shard && high_water == high
    )
}

/// Writes carry the writer's fence: an equal or higher number passes and
/// raises the shard's mark, a lower one is refused with nothing written;
/// shards are fenced apart.
pub async fn fencing(store: &dyn ChatStorage) {
    let at = |shard: u32, token: u64| Some(Fence { shard, token });
    let fenced_message = |cmid: &str, t: i64, fence| NewMessage {
        fence,
        ..message(1, 2, cmid, t)
    };
    store
        .append(fenced_message("a", 1, at(3, 5)))
        .await
        .unwrap();
    store
        .append(fenced_message("b", 2, at(3, 5)))
        .await
        .unwrap();
    assert!(is_fenced(
        store.append(fenced_message("c", 3, at(3, 4))).await,
        3,
        5
    ));
    store
        .append(fenced_message("d", 4, at(3, 6)))
        .await
        .unwrap();
    assert!(is_fenced(
        store.append(fenced_message("e", 5, at(3, 5))).await,
        3,
        6
    ));
    // Another shard has a mark of its own.
    store
        .append(fenced_message("f", 6, at(4, 1)))
        .await
        .unwrap();
    let stored: Vec<String> = store
        .messages_after(direct(1, 2), 0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.client_msg_id)
        .collect();
    assert_eq!(stored, ["a", "b", "d", "f"]);
    // Even a repeat of an acknowledged send is refused under a stale fence:
    // the old owner answers nothing any more.
    assert!(is_fenced(
        store.append(fenced_message("a", 7, at(3, 1))).await,
        3,
        6
    ));

    // Read marks and group messages are fenced alike.
    assert!(is_fenced(
        store.mark_read(UserId(2), direct(1, 2), 9, at(3, 2)).await,
        3,
        6
    ));
    assert_eq!(
        store
            .mark_read(UserId(2), direct(1, 2), 9, at(3, 6))
            .await
            .unwrap(),
        Some(4)
    );
    create(store, 1, users(2..4)).await;
    let stale = NewGroupMessage {
        fence: at(3, 2),
        ..group_message(1, "g", 8, Mentions::default())
    };
    assert!(matches!(
        store.append_group(stale).await,
        Err(ChatError::Store(StoreError::Fenced { shard: 3, .. }))
    ));
    let current = NewGroupMessage {
        fence: at(3, 7),
        ..group_message(1, "g", 8, Mentions::default())
    };
    assert_eq!(store.append_group(current).await.unwrap().seq, 1);
    // The marks, where the next lease of a shard must start above.
    assert_eq!(store.fence_mark(3).await.unwrap(), 7);
    assert_eq!(store.fence_mark(4).await.unwrap(), 1);
    assert_eq!(store.fence_mark(5).await.unwrap(), 0);
}

fn users(range: std::ops::Range<u64>) -> Vec<UserId> {
    range.map(UserId).collect()
}

async fn create(store: &dyn GroupStore, owner: u64, members: Vec<UserId>) -> GroupInfo {
    store
        .create_group(NewGroup {
            group: GroupId(1),
            name: "g".into(),
            avatar: String::new(),
            owner: UserId(owner),
            members,
            asked: Asked::default(),
            now_ms: 1,
        })
        .await
        .unwrap()
}

fn group_message(sender: u64, cmid: &str, t: i64, mentions: Mentions) -> NewGroupMessage {
    NewGroupMessage {
        group: GroupId(1),
        sender: UserId(sender),
        client_msg_id: cmid.into(),
        message_id: t as u64,
        server_time_ms: t,
        body: b"x".to_vec(),
        mentions,
        fence: None,
    }
}

/// A group of the owner (1) and members 2..1000, and one message from 5 that
/// mentions two members and a stranger; the backend may then check what it
/// wrote.
pub async fn group_of_1000_and_a_message(store: &dyn ChatStorage) -> Appended {
    create(store, 1, users(2..1_000)).await;
    let mentions = Mentions {
        all: false,
        users: vec![UserId(6), UserId(7), UserId(123_456), UserId(5)],
    };
    let appended = store
        .append_group(group_message(5, "m1", 10, mentions))
        .await
        .unwrap();
    // Mentions of non-members and of oneself are dropped.
    assert_eq!(appended.mentions.users, vec![UserId(6), UserId(7)]);
    appended
}

/// The limits a store given to [`group_limits`] must be built with.
pub const LIMITS: GroupLimits = GroupLimits {
    max_groups_per_user: 3,
    max_groups_created_per_day: 2,
};

fn new_group(id: u64, owner: u64, members: Vec<UserId>, now_ms: i64) -> NewGroup {
    NewGroup {
        group: GroupId(id),
        name: format!("g{id}"),
        avatar: String::new(),
        owner: UserId(owner),
        members,
        asked: Asked::default(),
        now_ms,
    }
}

/// A user creates at most two groups in any 24 hours and is in at most
/// three; a request that would pass either is refused and writes nothing.
pub async fn group_limits(store: &dyn ChatStorage) {
    const DAY: i64 = policy::CREATION_WINDOW_MS;
    let groups_of = |user: u64| async move {
        let mut groups = store.groups_of(UserId(user)).await.unwrap();
        groups.sort();
        groups.into_iter().map(|g| g.0).collect::<Vec<_>>()
    };
    store
        .create_group(new_group(1, 1, users(2..4), 10))
        .await
        .unwrap();
    store
        .create_group(new_group(2, 1, users(2..3), 20))
        .await
        .unwrap();
    match store.create_group(new_group(3, 1, Vec::new(), 30)).await {
        Err(ChatError::TooManyGroupsCreated {
            max: 2,
            retry_after_ms,
        }) => assert_eq!(retry_after_ms, (10 + DAY - 30) as u64),
        other => panic!("a third group in a day: {other:?}"),
    }
    assert_eq!(store.group(GroupId(3)).await.unwrap(), None);
    // Dissolving does not give a creation back; the day passing does.
    store.dissolve(GroupId(2), UserId(1)).await.unwrap();
    assert!(matches!(
        store.create_group(new_group(3, 1, Vec::new(), 40)).await,
        Err(ChatError::TooManyGroupsCreated { .. })
    ));
    store
        .create_group(new_group(3, 1, users(2..3), DAY + 11))
        .await
        .unwrap();
    store
        .create_group(new_group(4, 5, users(2..3), DAY + 12))
        .await
        .unwrap();
    assert_eq!(groups_of(2).await, [1, 3, 4]);

    // 2 is in three groups: an invitation naming 2 adds nobody.
    store
        .create_group(new_group(5, 6, Vec::new(), DAY + 13))
        .await
        .unwrap();
    assert!(matches!(
        store
            .invite(
                GroupId(5),
                UserId(6),
                vec![UserId(7), UserId(2)],
                Asked::default(),
                DAY + 14
            )
            .await,
        Err(ChatError::TooManyGroups { max: 3 })
    ));
    assert_eq!(
        store.group(GroupId(5)).await.unwrap().unwrap().member_count,
        1
    );
    assert!(groups_of(7).await.is_empty());
    // Nor may a group be created with 2 in it, or 2 join by a link.
    assert!(matches!(
        store
            .create_group(new_group(6, 6, users(2..3), DAY + 15))
            .await,
        Err(ChatError::TooManyGroups { .. })
    ));
    assert_eq!(store.group(GroupId(6)).await.unwrap(), None);
    store
        .set_invite_token(GroupId(5), UserId(6), "t5".into(), 2 * DAY)
        .await
        .unwrap();
    assert!(matches!(
        store.join_by_token("t5".into(), UserId(2), DAY + 16).await,
        Err(ChatError::TooManyGroups { .. })
    ));
    // Leaving one makes room, in every way in.
    store
        .remove_member(GroupId(4), UserId(2), UserId(2))
        .await
        .unwrap();
    let (_, joined) = store
        .join_by_token("t5".into(), UserId(2), DAY + 17)
        .await
        .unwrap();
    assert_eq!(joined.added, [UserId(2)]);
    assert_eq!(groups_of(2).await, [1, 3, 5]);
    // A dissolved group no longer counts for its members.
    store.dissolve(GroupId(1), UserId(1)).await.unwrap();
    let joined = store
        .invite(
            GroupId(4),
            UserId(5),
            vec![UserId(2)],
            Asked::default(),
            DAY + 18,
        )
        .await
        .unwrap();
    assert_eq!(joined.added, [UserId(2)]);
    // 2 is in three groups again: an invitation waits, but accepting it is
    // refused, and it stays to be accepted once there is room.
    let invited = NewGroup {
        asked: asking(&[2], &[], DAY + 19 + INVITATION_TTL_MS),
        ..new_group(7, 6, Vec::new(), DAY + 19)
    };
    store.create_group(invited).await.unwrap();
    assert!(matches!(
        store
            .accept_invitation(GroupId(7), UserId(2), DAY + 20)
            .await,
        Err(ChatError::TooManyGroups { max: 3 })
    ));
    assert_eq!(groups_of(2).await, [3, 4, 5]);
    let waiting = store.invitations(UserId(2), DAY + 20).await.unwrap();
    assert_eq!(
        waiting.iter().map(|i| i.group).collect::<Vec<_>>(),
        [GroupId(7)]
    );
    store
        .remove_member(GroupId(3), UserId(2), UserId(2))
        .await
        .unwrap();
    let (_, joined) = store
        .accept_invitation(GroupId(7), UserId(2), DAY + 21)
        .await
        .unwrap();
    assert_eq!(joined.added, [UserId(2)]);
}

/// Those of `users` asked to join, and those of `hidden` answered alike.
fn asking(users: &[u64], hidden: &[u64], expires_ms: i64) -> Asked {
    Asked {
        users: users.iter().copied().map(UserId).collect(),
        hidden: hidden.iter().copied().map(UserId).collect(),
        expires_ms,
    }
}

fn unknown_invitation<T: std::fmt::Debug>(outcome: Result<T, ChatError>) -> bool {
    matches!(outcome, Err(ChatError::UnknownInvitation))
}

/// Pending invitations into a group: stored for those asked and not for
/// those a block hides (who are answered alike); listed for their invitee
/// with the group and the inviter; refreshed rather than repeated; lapsing at
/// their expiry, when the inviter leaves or when the group is dissolved;
/// taken away by joining another way; accepted once, into the group or,
/// where a plain member invited and the group asks for approval, into its
/// approval queue, within the group's cap (a refusal keeps the invitation);
/// declined once; and nobody else's to answer.
pub async fn group_invitations(store: &dyn ChatStorage) {
    const TTL: i64 = INVITATION_TTL_MS;
    let (g, u) = (GroupId(1), UserId);
    let t0 = 1_000;
    store
        .remember_names(vec![(u(2), "Bo".into())])
        .await
        .unwrap();
    let created = NewGroup {
        asked: asking(&[3, 4], &[5], t0 + TTL),
        ..new_group(1, 1, vec![u(2)], t0)
    };
    store.create_group(created).await.unwrap();
    assert_eq!(store.group(g).await.unwrap().unwrap().member_count, 2);
    let listed = store.invitations(u(3), t0).await.unwrap();
    let expected = GroupInvitation {
        group: g,
        group_name: "g1".into(),
        member_count: 2,
        inviter: u(1),
        inviter_name: String::new(),
        invited_ms: t0,
        expires_ms: t0 + TTL,
    };
    assert_eq!(listed, [expected]);
    assert!(store.invitations(u(5), t0).await.unwrap().is_empty());
    assert!(unknown_invitation(
        store.accept_invitation(g, u(5), t0).await
    ));

    // Asked again, by another member, with a member and a repeat among them:
    // one invitation, from the latest inviter; members neither added nor
    // invited; the hidden answered as invited, in one id order with the rest.
    let again = asking(&[3, 2, 9, 3], &[6, 5], t0 + 10 + TTL);
    let joined = store
        .invite(g, u(2), Vec::new(), again, t0 + 10)
        .await
        .unwrap();
    assert_eq!(joined.invited, [u(3), u(5), u(6), u(9)]);
    assert!(joined.added.is_empty() && joined.pending.is_empty());
    let listed = store.invitations(u(3), t0 + 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].inviter,
            listed[0].inviter_name.as_str(),
            listed[0].invited_ms,
            listed[0].expires_ms
        ),
        (u(2), "Bo", t0 + 10, t0 + 10 + TTL)
    );
    assert!(store.invitations(u(6), t0 + 10).await.unwrap().is_empty());

    // 4's lapses at its expiry.
    assert_eq!(
        store.invitations(u(4), t0 + TTL - 1).await.unwrap().len(),
        1
    );
    assert!(store.invitations(u(4), t0 + TTL).await.unwrap().is_empty());
    assert!(unknown_invitation(
        store.accept_invitation(g, u(4), t0 + TTL).await
    ));
    assert!(unknown_invitation(
        store.decline_invitation(g, u(4), t0 + TTL).await
    ));

    // Accepting joins, once; someone not invited has nothing to accept.
    let (inviter, joined) = store.accept_invitation(g, u(3), t0 + 20).await.unwrap();
    assert_eq!(
        (inviter, joined.added, joined.pending),
        (u(2), vec![u(3)], vec![])
    );
    let member = store.member(g, u(3)).await.unwrap().unwrap();
    assert_eq!((member.role, member.joined_ms), (Role::Member, t0 + 20));
    assert_eq!(store.group(g).await.unwrap().unwrap().member_count, 3);
    assert!(store.invitations(u(3), t0 + 20).await.unwrap().is_empty());
    assert!(unknown_invitation(
        store.accept_invitation(g, u(3), t0 + 21).await
    ));
    assert!(unknown_invitation(
        store.accept_invitation(g, u(7), t0 + 21).await
    ));
    assert!(unknown_invitation(
        store.accept_invitation(GroupId(99), u(9), t0 + 21).await
    ));

    // Declining takes it away, once, and joins nothing.
    store.decline_invitation(g, u(9), t0 + 30).await.unwrap();
    assert!(store.invitations(u(9), t0 + 30).await.unwrap().is_empty());
    assert!(unknown_invitation(
        store.decline_invitation(g, u(9), t0 + 31).await
    ));
    assert_eq!(store.member(g, u(9)).await.unwrap(), None);

    // An inviter who leaves withdraws their invitations.
    let by_3 = asking(&[10], &[], t0 + 40 + TTL);
    store
        .invite(g, u(3), Vec::new(), by_3, t0 + 40)
        .await
        .unwrap();
    assert_eq!(store.invitations(u(10), t0 + 40).await.unwrap().len(), 1);
    store.remove_member(g, u(3), u(3)).await.unwrap();
    assert!(store.invitations(u(10), t0 + 41).await.unwrap().is_empty());
    assert!(unknown_invitation(
        store.accept_invitation(g, u(10), t0 + 41).await
    ));

    // Joining by a link takes the invitation away.
    let by_2 = asking(&[11], &[], t0 + 50 + TTL);
    store
        .invite(g, u(2), Vec::new(), by_2, t0 + 50)
        .await
        .unwrap();
    store
        .set_invite_token(g, u(1), "tok".into(), t0 + TTL)
        .await
        .unwrap();
    let (_, by_link) = store
        .join_by_token("tok".into(), u(11), t0 + 51)
        .await
        .unwrap();
    assert_eq!(by_link.added, [u(11)]);
    assert!(store.invitations(u(11), t0 + 51).await.unwrap().is_empty());
    assert!(unknown_invitation(
        store.accept_invitation(g, u(11), t0 + 52).await
    ));

    // Under approval, a plain member's invitation, accepted, waits for an
    // admin; the owner's joins at once.
    let by_2 = asking(&[12], &[], t0 + 60 + TTL);
    store
        .invite(g, u(2), Vec::new(), by_2, t0 + 60)
        .await
        .unwrap();
    let by_1 = asking(&[13], &[], t0 + 60 + TTL);
    store
        .invite(g, u(1), Vec::new(), by_1, t0 + 60)
        .await
        .unwrap();
    let approval = GroupUpdate {
        join_approval: Some(true),
        ..GroupUpdate::default()
    };
    store.update_group(g, u(1), approval).await.unwrap();
    let (_, joined) = store.accept_invitation(g, u(12), t0 + 61).await.unwrap();
    assert_eq!((joined.added, joined.pending), (vec![], vec![u(12)]));
    let waiting = JoinRequest {
        user: u(12),
        inviter: Some(u(2)),
        requested_ms: t0 + 61,
    };
    assert_eq!(store.requests(g, u(1)).await.unwrap(), [waiting]);
    assert!(store.invitations(u(12), t0 + 61).await.unwrap().is_empty());
    let (_, joined) = store.accept_invitation(g, u(13), t0 + 62).await.unwrap();
    assert_eq!(joined.added, [u(13)]);

    // A dissolved group's invitations lapse.
    let by_1 = asking(&[14], &[], t0 + 70 + TTL);
    store
        .invite(g, u(1), Vec::new(), by_1, t0 + 70)
        .await
        .unwrap();
    store.dissolve(g, u(1)).await.unwrap();
    assert!(store.invitations(u(14), t0 + 71).await.unwrap().is_empty());
    assert!(unknown_invitation(
        store.accept_invitation(g, u(14), t0 + 71).await
    ));

    // A full group refuses an acceptance and keeps the invitation.
    let full = GroupId(2);
    let crowd = NewGroup {
        asked: asking(&[40_000, 40_001], &[], t0 + 80 + TTL),
        ..new_group(2, 20, users(30..6_028), t0 + 80)
    };
    store.create_group(crowd).await.unwrap();
    let (_, joined) = store
        .accept_invitation(full, u(40_000), t0 + 81)
        .await
        .unwrap();
    assert_eq!(joined.added, [u(40_000)]);
    assert_eq!(
        store.group(full).await.unwrap().unwrap().member_count,
        MAX_MEMBERS
    );
    assert!(matches!(
        store.accept_invitation(full, u(40_001), t0 + 82).await,
        Err(ChatError::GroupFull { max: MAX_MEMBERS })
    ));
    assert_eq!(store.member(full, u(40_001)).await.unwrap(), None);
    assert_eq!(
        store.invitations(u(40_001), t0 + 82).await.unwrap().len(),
        1
    );
}

pub async fn group_store(store: Arc<dyn ChatStorage>) {
    concurrent_joins_at_the_cap_never_overshoot(store.clone()).await;
    lifecycle(store.as_ref()).await;
}

async fn concurrent_joins_at_the_cap_never_overshoot(store: Arc<dyn ChatStorage>) {
    // Too big at creation: refused, and nothing is left behind.
    let refused = store
        .create_group(NewGroup {
            group: GroupId(1),
            name: "g".into(),
            avatar: String::new(),
            owner: UserId(1),
            members: users(2..6_002),
            asked: Asked::default(),
            now_ms: 1,
        })
        .await;
    assert!(matches!(refused, Err(ChatError::GroupFull { .. })));
    assert_eq!(store.group(GroupId(1)).await.unwrap(), None);
    assert!(store.groups_of(UserId(1)).await.unwrap().is_empty());

    // The owner and 5,989 members: room for ten more.
    let group = create(store.as_ref(), 1, users(2..5_991)).await;
    assert_eq!(group.member_count, 5_990);
    let tasks: Vec<_> = (0..40u64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .invite(
                        GroupId(1),
                        UserId(1),
                        vec![UserId(100_000 + i)],
                        Asked::default(),
                        2,
                    )
                    .await
            })
        })
        .collect();
    let mut added = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(joined) => added += joined.added.len(),
            Err(ChatError::GroupFull { max }) => assert_eq!(max, MAX_MEMBERS),
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(added, 10);
    let group = store.group(GroupId(1)).await.unwrap().unwrap();
    assert_eq!(group.member_count, MAX_MEMBERS);
    assert_eq!(
        members(store.as_ref(), GroupId(1)).await.len(),
        MAX_MEMBERS as usize
    );
    // The 6001st is refused and changes nothing.
    assert!(matches!(
        store
            .invite(
                GroupId(1),
                UserId(1),
                vec![UserId(999_999)],
                Asked::default(),
                3
            )
            .await,
        Err(ChatError::GroupFull { .. })
    ));
    assert_eq!(
        store.group(GroupId(1)).await.unwrap().unwrap().member_count,
        MAX_MEMBERS
    );
    let gone = store.dissolve(GroupId(1), UserId(1)).await.unwrap();
    assert_eq!(gone.len(), MAX_MEMBERS as usize);
    assert_eq!(store.group(GroupId(1)).await.unwrap(), None);
}

async fn lifecycle(store: &dyn ChatStorage) {
    let g = GroupId(2);
    let u = UserId;
    store
        .create_group(NewGroup {
            group: g,
            name: "walkers".into(),
            avatar: "a".into(),
            owner: u(10),
            members: vec![u(11), u(12), u(11)],
            asked: Asked::default(),
            now_ms: 5,
        })
        .await
        .unwrap();
    let info = store.group(g).await.unwrap().unwrap();
    assert_eq!(
        (info.member_count, info.owner, info.last_seq),
        (3, u(10), 0)
    );
    assert_eq!(store.groups_of(u(11)).await.unwrap(), vec![g]);
    let page = store.members_page(g, Some(u(10)), 1, String::new()).await;
    let page: Vec<UserId> = page.unwrap().iter().map(|(m, _)| m.user).collect();
    assert_eq!(page, [u(11)]);

    // A member who joins later sees from the current seq on.
    store
        .append_group(NewGroupMessage {
            group: g,
            ..group_message(10, "hello", 6, Mentions::default())
        })
        .await
        .unwrap();
    let joined = store
        .invite(g, u(11), vec![u(13)], Asked::default(), 7)
        .await
        .unwrap();
    assert_eq!(joined.added, vec![u(13)]);
    let late = store.member(g, u(13)).await.unwrap().unwrap();
    assert_eq!((late.joined_seq, late.role), (1, Role::Member));

    // Approval: a member's invitation waits; an admin decides.
    let approval = GroupUpdate {
        join_approval: Some(true),
        ..GroupUpdate::default()
    };
    assert!(matches!(
        store.update_group(g, u(11), approval.clone()).await,
        Err(ChatError::NotAllowed)
    ));
    store.update_group(g, u(10), approval).await.unwrap();
    let waiting = store
        .invite(g, u(11), vec![u(14), u(15)], Asked::default(), 8)
        .await
        .unwrap();
    assert_eq!(waiting.pending, vec![u(14), u(15)]);
    assert!(matches!(
        store.requests(g, u(11)).await,
        Err(ChatError::NotAllowed)
    ));
    let requests = store.requests(g, u(10)).await.unwrap();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].inviter, Some(u(11)));
    assert!(
        store
            .decide_request(g, u(10), u(14), true, 9)
            .await
            .unwrap()
    );
    assert!(
        !store
            .decide_request(g, u(10), u(15), false, 9)
            .await
            .unwrap()
    );
    assert!(matches!(
        store.decide_request(g, u(10), u(15), true, 9).await,
        Err(ChatError::UnknownRequest)
    ));

    // Invitation links: joins wait for approval here; expired tokens fail.
    store
        .set_invite_token(g, u(10), "tok".into(), 100)
        .await
        .unwrap();
    let (found, by_link) = store.join_by_token("tok".into(), u(16), 50).await.unwrap();
    assert_eq!((found, by_link.pending), (g, vec![u(16)]));
    assert_eq!(store.requests(g, u(10)).await.unwrap()[0].inviter, None);
    assert!(matches!(
        store.join_by_token("tok".into(), u(17), 100).await,
        Err(ChatError::InvalidInvite)
    ));
    assert!(matches!(
        store.join_by_token("nope".into(), u(17), 1).await,
        Err(ChatError::InvalidInvite)
    ));

    // Roles, transfer, mutes, removal and leaving.
    store
        .update_member(g, u(10), u(11), promote())
        .await
        .unwrap();
    assert!(matches!(
        store.remove_member(g, u(12), u(11)).await,
        Err(ChatError::NotAllowed)
    ));
    store
        .update_member(g, u(11), u(12), mute(1_000))
        .await
        .unwrap();
    assert!(matches!(
        store
            .append_group(NewGroupMessage {
                group: g,
                ..group_message(12, "muted", 500, Mentions::default())
            })
            .await,
        Err(ChatError::Muted { until_ms: 1_000 })
    ));
    store.transfer_owner(g, u(10), u(11)).await.unwrap();
    assert_eq!(store.group(g).await.unwrap().unwrap().owner, u(11));
    assert_eq!(
        store.member(g, u(10)).await.unwrap().unwrap().role,
        Role::Admin
    );
    assert!(matches!(
        store.remove_member(g, u(11), u(11)).await,
        Err(ChatError::OwnerMustTransfer)
    ));
    assert_eq!(
        store.remove_member(g, u(11), u(12)).await.unwrap(),
        Removal::Removed
    );
    assert_eq!(
        store.remove_member(g, u(13), u(13)).await.unwrap(),
        Removal::Left
    );
    assert!(matches!(
        store.remove_member(g, u(13), u(14)).await,
        Err(ChatError::NotMember)
    ));
    store
        .update_member(g, u(14), u(14), nickname("fourteen"))
        .await
        .unwrap();
    assert_eq!(
        store.member(g, u(14)).await.unwrap().unwrap().nickname,
        "fourteen"
    );
    let members: Vec<UserId> = members(store, g).await.iter().map(|m| m.user).collect();
    assert_eq!(members, vec![u(10), u(11), u(14)]);
    assert_eq!(store.group(g).await.unwrap().unwrap().member_count, 3);

    // Dissolving: only the owner; then nothing of it answers.
    assert!(matches!(
        store.dissolve(g, u(10)).await,
        Err(ChatError::NotAllowed)
    ));
    let gone = store.dissolve(g, u(11)).await.unwrap();
    assert_eq!(gone.len(), 3);
    assert!(matches!(
        store
            .invite(g, u(11), vec![u(20)], Asked::default(), 10)
            .await,
        Err(ChatError::UnknownGroup)
    ));
    assert!(store.groups_of(u(14)).await.unwrap().is_empty());
}

/// A group of 200 with random display names (some not kept, as for members
/// added before names were kept) and nicknames, searched with random
/// queries in random page sizes: the pages, put together, are the members
/// a plain in-memory filter finds (case-insensitive substring of nickname
/// or name), plus every member without a kept name, with their kept names.
pub async fn member_search_matches_the_model(store: &dyn ChatStorage, seed: u64) {
    const NAMES: [&str; 10] = [
        "Ann",
        "ANNA",
        "Éve",
        "éveline",
        "李雷",
        "韩梅梅",
        "Bob",
        "bobby",
        "Zoë",
        "o'Neil",
    ];
    let mut rng = StdRng::seed_from_u64(seed);
    let group = GroupId(77);
    let people: Vec<UserId> = (2..=200).map(UserId).collect();
    store
        .create_group(NewGroup {
            group,
            name: "search".into(),
            avatar: String::new(),
            owner: UserId(1),
            members: people.clone(),
            asked: Asked::default(),
            now_ms: 1,
        })
        .await
        .unwrap();
    // user -> (nickname, kept name)
    let mut model: BTreeMap<UserId, (String, Option<String>)> = BTreeMap::new();
    let mut kept = Vec::new();
    for user in std::iter::once(UserId(1)).chain(people) {
        let name = rng
            .random_bool(0.9)
            .then(|| format!("{} {}", NAMES[rng.random_range(0..10)], user.0));
        let nickname = match rng.random_range(0..4) {
            0 => NAMES[rng.random_range(0..10)].to_uppercase(),
            _ => String::new(),
        };
        if !nickname.is_empty() {
            let change = MemberChange {
                nickname: Some(nickname.clone()),
                ..MemberChange::default()
            };
            store
                .update_member(group, user, user, change)
                .await
                .unwrap();
        }
        kept.extend(name.clone().map(|n| (user, n)));
        model.insert(user, (nickname, name));
    }
    store.remember_names(kept).await.unwrap();
    let unnamed: Vec<UserId> = (model.iter())
        .filter(|(_, (_, name))| name.is_none())
        .map(|(user, _)| *user)
        .collect();
    assert_eq!(store.unnamed_members(group).await.unwrap(), unnamed);

    for round in 0..40 {
        let raw = match rng.random_range(0..5) {
            0 => String::new(),
            1 => "zz".into(),
            _ => {
                let name: Vec<char> = NAMES[rng.random_range(0..10)].chars().collect();
                let from = rng.random_range(0..name.len());
                let to = rng.random_range(from + 1..=name.len());
                let part: String = name[from..to].iter().collect();
                if rng.random_bool(0.5) {
                    part.to_uppercase()
                } else {
                    part
                }
            }
        };
        let query = policy::member_query(&raw).unwrap();
        let expected: Vec<(UserId, Option<String>)> = (model.iter())
            .filter(|(_, (nickname, name))| match name {
                None => true,
                Some(name) => {
                    nickname.to_lowercase().contains(&query) || name.to_lowercase().contains(&query)
                }
            })
            .map(|(user, (_, name))| (*user, name.clone()))
            .collect();
        let limit = rng.random_range(1..40);
        let (mut got, mut after) = (Vec::new(), None);
        loop {
            let page = store.members_page(group, after, limit, query.clone());
            let page = page.await.unwrap();
            after = page.last().map(|(m, _)| m.user);
            let last = page.len() < limit as usize;
            got.extend(page.into_iter().map(|(m, name)| (m.user, name)));
            if last {
                break;
            }
        }
        assert_eq!(got, expected, "round {round}: {raw:?} in pages of {limit}");
    }

    // A kept name is replaced by a newer one.
    store
        .remember_names(vec![(UserId(1), "Renamed".into())])
        .await
        .unwrap();
    let page = store.members_page(group, None, 1, "renamed".into()).await;
    assert_eq!(page.unwrap()[0].1.as_deref(), Some("Renamed"));
}

/// Every member of the group, by user id.
async fn members(store: &dyn GroupStore, group: GroupId) -> Vec<MemberInfo> {
    let page = store.members_page(group, None, MAX_MEMBERS, String::new());
    page.await.unwrap().into_iter().map(|(m, _)| m).collect()
}

fn promote() -> MemberChange {
    MemberChange {
        admin: Some(true),
        ..MemberChange::default()
    }
}

fn mute(until_ms: i64) -> MemberChange {
    MemberChange {
        muted_until_ms: Some(until_ms),
        ..MemberChange::default()
    }
}

fn nickname(nickname: &str) -> MemberChange {
    MemberChange {
        nickname: Some(nickname.into()),
        ..MemberChange::default()
    }
}

/// One operation of the random walk.
#[derive(Debug, Clone)]
enum Op {
    Invite(UserId, Vec<UserId>),
    Decide(UserId, UserId, bool),
    Remove(UserId, UserId),
    SetRole(UserId, UserId, bool),
    Transfer(UserId, UserId),
    Mute(UserId, UserId, i64),
    /// Several parts of a membership at once: all or nothing.
    Change(UserId, UserId, MemberChange),
    Settings(UserId, GroupUpdate),
    Send(UserId, bool),
    /// A member asks people to join (the social graph said they must be asked).
    Ask(UserId, Vec<UserId>),
    AcceptInvitation(UserId),
    DeclineInvitation(UserId),
}

/// The group as the model keeps it.
#[derive(Debug, Clone)]
struct Model {
    group: GroupInfo,
    members: BTreeMap<UserId, MemberInfo>,
    pending: BTreeSet<UserId>,
    /// Invitee -> the latest inviter.
    invitations: BTreeMap<UserId, UserId>,
}

impl Model {
    fn member(&self, user: UserId) -> Option<&MemberInfo> {
        self.members.get(&user)
    }

    fn actor(&self, user: UserId) -> Result<MemberInfo, ChatError> {
        self.members.get(&user).cloned().ok_or(ChatError::NotMember)
    }

    fn admins(&self) -> u32 {
        self.members
            .values()
            .filter(|m| m.role == Role::Admin)
            .count() as u32
    }

    fn add(&mut self, user: UserId, now: i64) {
        self.pending.remove(&user);
        self.invitations.remove(&user);
        self.members.insert(
            user,
            MemberInfo {
                user,
                role: Role::Member,
                nickname: String::new(),
                joined_ms: now,
                muted_until_ms: 0,
                joined_seq: self.group.last_seq,
                last_sent_ms: 0,
            },
        );
        self.group.member_count = self.members.len() as u32;
    }

    fn set_role(&mut self, user: UserId, role: Role) {
        if let Some(m) = self.members.get_mut(&user) {
            m.role = role;
        }
    }

    /// Applies `op` at `now` as the rules say; answers the outcome.
    fn apply(&mut self, op: &Op, now: i64) -> Result<(), ChatError> {
        match op {
            Op::Invite(actor, users) => {
                let inviter = self.actor(*actor)?;
                match policy::admission(&self.group, Some(&inviter)) {
                    Admission::Pending => {
                        for u in users {
                            if !self.members.contains_key(u) {
                                self.pending.insert(*u);
                            }
                        }
                    }
                    Admission::Direct => {
                        let fresh: BTreeSet<_> = users
                            .iter()
                            .filter(|u| !self.members.contains_key(u))
                            .copied()
                            .collect();
                        policy::room_for(self.group.member_count, fresh.len())?;
                        for u in fresh {
                            self.add(u, now);
                        }
                    }
                }
                Ok(())
            }
            Op::Decide(actor, user, approve) => {
                policy::may_administer(&self.actor(*actor)?)?;
                if !self.pending.contains(user) {
                    return Err(ChatError::UnknownRequest);
                }
                if *approve {
                    policy::room_for(self.group.member_count, 1)?;
                    self.add(*user, now);
                } else {
                    self.pending.remove(user);
                }
                Ok(())
            }
            Op::Remove(actor, user) => {
                let acting = self.actor(*actor)?;
                policy::removal(&acting, self.member(*user))?;
                self.members.remove(user);
                self.group.member_count = self.members.len() as u32;
                Ok(())
            }
            Op::SetRole(actor, user, admin) => {
                let acting = self.actor(*actor)?;
                let role = policy::new_role(&acting, self.member(*user), *admin, self.admins())?;
                self.set_role(*user, role);
                Ok(())
            }
            Op::Transfer(actor, user) => {
                let acting = self.actor(*actor)?;
                let former = policy::transfer(&acting, self.member(*user), self.admins())?;
                self.set_role(*user, Role::Owner);
                self.set_role(*actor, former);
                self.group.owner = *user;
                Ok(())
            }
            Op::Mute(actor, user, until) => {
                let acting = self.actor(*actor)?;
                policy::may_mute(&acting, self.member(*user))?;
                if let Some(m) = self.members.get_mut(user) {
                    m.muted_until_ms = (*until).max(0);
                }
                Ok(())
            }
            Op::Change(actor, user, change) => {
                // The parts one after another, on a copy kept only if all pass.
                let mut next = self.clone();
                if let Some(admin) = change.admin {
                    next.apply(&Op::SetRole(*actor, *user, admin), now)?;
                }
                if let Some(until) = change.muted_until_ms {
                    next.apply(&Op::Mute(*actor, *user, until), now)?;
                }
                next.actor(*actor)?;
                let target = next.members.get_mut(user).ok_or(ChatError::UnknownMember)?;
                if let Some(nickname) = &change.nickname {
                    if actor != user {
                        return Err(ChatError::NotAllowed);
                    }
                    policy::check_nickname(nickname)?;
                    target.nickname = nickname.clone();
                }
                *self = next;
                Ok(())
            }
            Op::Settings(actor, update) => {
                policy::may_administer(&self.actor(*actor)?)?;
                if let Some(v) = update.mute_all {
                    self.group.mute_all = v;
                }
                if let Some(v) = update.slow_mode_secs {
                    self.group.slow_mode_secs = v;
                }
                if let Some(v) = update.join_approval {
                    self.group.join_approval = v;
                }
                Ok(())
            }
            Op::Send(sender, all) => {
                let acting = self.actor(*sender)?;
                policy::may_send(&self.group, &acting, *all, now)?;
                self.group.last_seq += 1;
                if let Some(m) = self.members.get_mut(sender) {
                    m.last_sent_ms = now;
                }
                Ok(())
            }
            Op::Ask(actor, users) => {
                self.actor(*actor)?;
                for u in users {
                    if !self.members.contains_key(u) {
                        self.invitations.insert(*u, *actor);
                    }
                }
                Ok(())
            }
            Op::AcceptInvitation(user) => {
                let inviter = *self
                    .invitations
                    .get(user)
                    .ok_or(ChatError::UnknownInvitation)?;
                match policy::invitation_admission(&self.group, self.member(inviter))? {
                    Admission::Pending => {
                        self.pending.insert(*user);
                    }
                    Admission::Direct => {
                        policy::room_for(self.group.member_count, 1)?;
                        self.add(*user, now);
                    }
                }
                self.invitations.remove(user);
                Ok(())
            }
            Op::DeclineInvitation(user) => match self.invitations.remove(user) {
                Some(_) => Ok(()),
                None => Err(ChatError::UnknownInvitation),
            },
        }
    }

    /// Who invited `user`, while the invitation stands (its inviter is still
    /// a member).
    fn invitation(&self, user: UserId) -> Option<UserId> {
        (self.invitations.get(&user).copied()).filter(|inviter| self.members.contains_key(inviter))
    }
}

fn random_op(rng: &mut StdRng, people: u64) -> Op {
    let mut someone = || UserId(rng.random_range(1..=people));
    let (a, b) = (someone(), someone());
    match rng.random_range(0..12) {
        9 => {
            let n = rng.random_range(1..3);
            Op::Ask(
                a,
                (0..n)
                    .map(|_| UserId(rng.random_range(1..=people)))
                    .collect(),
            )
        }
        10 => Op::AcceptInvitation(a),
        11 => Op::DeclineInvitation(a),
        0 => {
            let n = rng.random_range(1..4);
            Op::Invite(
                a,
                (0..n)
                    .map(|_| UserId(rng.random_range(1..=people)))
                    .collect(),
            )
        }
        1 => Op::Decide(a, b, rng.random_bool(0.7)),
        2 => Op::Remove(a, b),
        3 => Op::SetRole(a, b, rng.random_bool(0.6)),
        4 => Op::Transfer(a, b),
        5 => Op::Mute(a, b, rng.random_range(-1..3) * 1_000),
        6 => Op::Settings(
            a,
            GroupUpdate {
                mute_all: rng.random_bool(0.3).then(|| rng.random_bool(0.3)),
                slow_mode_secs: rng.random_bool(0.3).then(|| rng.random_range(0..3)),
                join_approval: rng.random_bool(0.3).then(|| rng.random_bool(0.5)),
                ..GroupUpdate::default()
            },
        ),
        7 => Op::Change(
            a,
            b,
            MemberChange {
                admin: rng.random_bool(0.5).then(|| rng.random_bool(0.6)),
                muted_until_ms: rng
                    .random_bool(0.5)
                    .then(|| rng.random_range(-1..3) * 1_000),
                nickname: rng
                    .random_bool(0.5)
                    .then(|| ["", "Ann", &"x".repeat(33)][rng.random_range(0..3)].to_string()),
            },
        ),
        _ => Op::Send(a, rng.random_bool(0.2)),
    }
}

fn same_outcome(store: &Result<(), ChatError>, model: &Result<(), ChatError>) -> bool {
    match (store, model) {
        (Ok(()), Ok(())) => true,
        (Err(s), Err(m)) => std::mem::discriminant(s) == std::mem::discriminant(m),
        _ => false,
    }
}

/// Several random walks of operations by random people (members or not) on
/// fresh groups: after every step the store's answer has the kind the model's
/// has, and at the end the members, their roles and mutes, the owner and the
/// count agree.
pub async fn group_rules_match_the_model(store: Arc<dyn ChatStorage>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for walk in 0..8u64 {
        let group = GroupId(1_000 + walk);
        let people = 9;
        let mut now = 1_000i64;
        let info = store
            .create_group(NewGroup {
                group,
                name: "walk".into(),
                avatar: String::new(),
                owner: UserId(1),
                members: vec![UserId(2), UserId(3)],
                asked: Asked::default(),
                now_ms: now,
            })
            .await
            .unwrap();
        let mut model = Model {
            members: members(store.as_ref(), group)
                .await
                .into_iter()
                .map(|m| (m.user, m))
                .collect(),
            group: info,
            pending: BTreeSet::new(),
            invitations: BTreeMap::new(),
        };
        for step in 0..150 {
            now += rng.random_range(0..1_500);
            let op = random_op(&mut rng, people);
            let expected = model.apply(&op, now);
            let got = run(store.as_ref(), group, &op, now, step).await;
            assert!(
                same_outcome(&got, &expected),
                "walk {walk} step {step}: {op:?} answered {got:?}, the model says {expected:?}"
            );
        }
        let stored: BTreeMap<UserId, (Role, i64, String)> = members(store.as_ref(), group)
            .await
            .into_iter()
            .map(|m| (m.user, (m.role, m.muted_until_ms, m.nickname)))
            .collect();
        let modelled: BTreeMap<UserId, (Role, i64, String)> = model
            .members
            .values()
            .map(|m| (m.user, (m.role, m.muted_until_ms, m.nickname.clone())))
            .collect();
        assert_eq!(stored, modelled, "walk {walk}");
        for person in (1..=people).map(UserId) {
            let listed = store.invitations(person, now).await.unwrap();
            let inviter = (listed.iter())
                .find(|i| i.group == group)
                .map(|i| i.inviter);
            assert_eq!(
                inviter,
                model.invitation(person),
                "walk {walk}: {person:?}'s invitation"
            );
        }
        let info = store.group(group).await.unwrap().unwrap();
        assert_eq!(
            (info.owner, info.member_count, info.last_seq),
            (
                model.group.owner,
                model.group.member_count,
                model.group.last_seq
            ),
            "walk {walk}"
        );
    }
}

async fn run(
    store: &dyn ChatStorage,
    group: GroupId,
    op: &Op,
    now: i64,
    step: usize,
) -> Result<(), ChatError> {
    match op.clone() {
        Op::Invite(actor, users) => store
            .invite(group, actor, users, Asked::default(), now)
            .await
            .map(drop),
        Op::Ask(actor, users) => {
            let asked = Asked {
                users,
                hidden: Vec::new(),
                expires_ms: now + INVITATION_TTL_MS,
            };
            store
                .invite(group, actor, Vec::new(), asked, now)
                .await
                .map(drop)
        }
        Op::AcceptInvitation(user) => store.accept_invitation(group, user, now).await.map(drop),
        Op::DeclineInvitation(user) => store.decline_invitation(group, user, now).await,
        Op::Decide(actor, user, approve) => store
            .decide_request(group, actor, user, approve, now)
            .await
            .map(drop),
        Op::Remove(actor, user) => store.remove_member(group, actor, user).await.map(drop),
        Op::SetRole(actor, user, admin) => store
            .update_member(
                group,
                actor,
                user,
                MemberChange {
                    admin: Some(admin),
                    ..MemberChange::default()
                },
            )
            .await
            .map(drop),
        Op::Transfer(actor, user) => store.transfer_owner(group, actor, user).await,
        Op::Mute(actor, user, until) => store
            .update_member(group, actor, user, mute(until))
            .await
            .map(drop),
        Op::Change(actor, user, change) => store
            .update_member(group, actor, user, change)
            .await
            .map(drop),
        Op::Settings(actor, update) => store.update_group(group, actor, update).await.map(drop),
        Op::Send(sender, all) => store
            .append_group(NewGroupMessage {
                group,
                sender,
                client_msg_id: format!("walk-{step}"),
                message_id: step as u64,
                server_time_ms: now,
                body: b"x".to_vec(),
                mentions: Mentions {
                    all,
                    users: Vec::new(),
                },
                fence: None,
            })
            .await
            .map(drop),
    }
}

/// A user (1) whose account is erased leaves every group in one write: the
/// group they own with an admin goes to the admin, though a member joined
/// before; the one with members only goes to the member who joined first;
/// the one they were alone in is dissolved; the one they are a member of
/// loses them; a join request of theirs, the invitations waiting for them
/// or sent by them, and the name kept for them go.
/// Again, it does nothing.
pub async fn departures(store: &dyn ChatStorage) {
    let u = UserId;
    let (with_admin, as_member, alone, members_only, approving) = (
        GroupId(21),
        GroupId(22),
        GroupId(23),
        GroupId(24),
        GroupId(25),
    );
    store
        .create_group(new_group(21, 1, vec![u(3)], 5))
        .await
        .unwrap();
    store
        .invite(with_admin, u(1), vec![u(2)], Asked::default(), 6)
        .await
        .unwrap();
    store
        .update_member(with_admin, u(1), u(2), promote())
        .await
        .unwrap();
    store
        .create_group(new_group(22, 4, vec![u(1)], 5))
        .await
        .unwrap();
    store
        .create_group(new_group(23, 1, vec![], 5))
        .await
        .unwrap();
    store
        .create_group(new_group(24, 1, vec![u(5)], 5))
        .await
        .unwrap();
    store
        .invite(members_only, u(1), vec![u(9)], Asked::default(), 3)
        .await
        .unwrap();
    store
        .create_group(new_group(25, 8, vec![u(7)], 5))
        .await
        .unwrap();
    let approval = GroupUpdate {
        join_approval: Some(true),
        ..GroupUpdate::default()
    };
    store.update_group(approving, u(8), approval).await.unwrap();
    let asked = store
        .invite(approving, u(7), vec![u(1)], Asked::default(), 6)
        .await
        .unwrap();
    assert_eq!(asked.pending, vec![u(1)]);
    store
        .remember_names(vec![(u(1), "Ann".into())])
        .await
        .unwrap();
    // An invitation waiting for them, and one they sent.
    let invited = |users: Vec<UserId>| Asked {
        users,
        hidden: Vec::new(),
        expires_ms: 1_000,
    };
    store
        .create_group(new_group(26, 5, vec![], 5))
        .await
        .unwrap();
    store
        .invite(GroupId(26), u(5), Vec::new(), invited(vec![u(1)]), 7)
        .await
        .unwrap();
    store
        .invite(with_admin, u(1), Vec::new(), invited(vec![u(6)]), 7)
        .await
        .unwrap();
    assert_eq!(store.invitations(u(1), 8).await.unwrap().len(), 1);

    let mut departed = store.depart(u(1)).await.unwrap();
    departed.sort_by_key(|d| d.group);
    let gone = |group, new_owner, dissolved| Departure {
        group,
        new_owner,
        dissolved,
    };
    assert_eq!(
        departed,
        vec![
            gone(with_admin, Some(u(2)), false),
            gone(as_member, None, false),
            gone(alone, None, true),
            gone(members_only, Some(u(9)), false),
        ]
    );
    let owner_of = |group| async move {
        let info = store.group(group).await.unwrap().unwrap();
        let owner = store.member(group, info.owner).await.unwrap().unwrap();
        assert_eq!(owner.role, Role::Owner);
        (info.owner, info.member_count)
    };
    assert_eq!(owner_of(with_admin).await, (u(2), 2));
    assert_eq!(owner_of(as_member).await, (u(4), 1));
    assert_eq!(owner_of(members_only).await, (u(9), 2));
    assert_eq!(store.group(alone).await.unwrap(), None);
    assert!(store.groups_of(u(1)).await.unwrap().is_empty());
    for group in [with_admin, as_member, members_only] {
        assert_eq!(store.member(group, u(1)).await.unwrap(), None);
    }
    assert!(store.requests(approving, u(8)).await.unwrap().is_empty());
    assert!(store.invitations(u(1), 8).await.unwrap().is_empty());
    assert!(store.invitations(u(6), 8).await.unwrap().is_empty());
    assert!(store.depart(u(1)).await.unwrap().is_empty());
    // The name kept for them is gone: added again (as a new account's id
    // never would be), they are listed without one.
    store
        .invite(as_member, u(4), vec![u(1)], Asked::default(), 9)
        .await
        .unwrap();
    let page = store.members_page(as_member, None, 10, String::new()).await;
    let kept: Vec<(UserId, Option<String>)> = (page.unwrap().into_iter())
        .map(|(m, name)| (m.user, name))
        .collect();
    assert!(kept.contains(&(u(1), None)), "{kept:?}");
}

// ---- Views: what a user's own list and read marks leave out -----------------

/// A message as the views model keeps it.
#[derive(Debug, Clone)]
struct Modelled {
    seq: u64,
    sender: UserId,
    sent_ms: i64,
    hidden_from: Option<UserId>,
    mentions: Mentions,
}

/// Conversations as the views model keeps them: their messages, their last
/// activity, and each member's read mark (and, in the group, joined seq).
#[derive(Debug, Default)]
struct ViewsModel {
    messages: BTreeMap<ConversationId, Vec<Modelled>>,
    activity: BTreeMap<ConversationId, i64>,
    marks: BTreeMap<(ConversationId, UserId), u64>,
}

impl ViewsModel {
    /// Whether `viewer` sees `m`, written again plainly: not withheld from
    /// them; in the group, not sent while they blocked its sender.
    fn sees(viewer: UserId, view: &View, group: bool, m: &Modelled) -> bool {
        let blocked = group
            && view.blocked.get(&m.sender).is_some_and(|spans| {
                spans
                    .iter()
                    .any(|s| s.from_ms <= m.sent_ms && m.sent_ms < s.until_ms)
            });
        m.hidden_from != Some(viewer) && !blocked
    }

    /// The last message of `conversation` that `viewer` sees after `after`.
    fn last_seen(
        &self,
        viewer: UserId,
        view: &View,
        conversation: ConversationId,
        after: u64,
    ) -> Option<&Modelled> {
        let group = conversation.group().is_some();
        self.messages[&conversation]
            .iter()
            .rfind(|m| m.seq > after && Self::sees(viewer, view, group, m))
    }

    /// What `viewer`'s list should say, most recent activity first.
    fn list(&self, viewer: UserId, view: &View, people: &[UserId]) -> Vec<InboxEntry> {
        let mut entries = Vec::new();
        for (&conversation, messages) in &self.messages {
            let Some(&read) = self.marks.get(&(conversation, viewer)) else {
                continue;
            };
            let group = conversation.group().is_some();
            let peer = conversation.peer_of(viewer);
            if peer.is_some_and(|p| view.hidden.contains(&p)) || (!group && messages.is_empty()) {
                continue;
            }
            // Everyone is in the group from its creation, before any message.
            let joined = 0;
            let activity = self.activity[&conversation];
            let (last_seq, last_ms) = match self.last_seen(viewer, view, conversation, joined) {
                Some(m) => (m.seq, m.sent_ms),
                None if group => (joined, activity),
                None => continue,
            };
            let unseen = messages.iter().filter(|m| {
                m.seq > read && m.sender != viewer && Self::sees(viewer, view, group, m)
            });
            let unread = unseen.clone().count() as u64;
            let mentioned = unseen.clone().any(|m| m.mentions.mentions(viewer));
            let peer_read_seq = peer.map_or(0, |p| self.marks[&(conversation, p)]);
            entries.push(InboxEntry {
                conversation,
                peer,
                last_seq,
                read_seq: read.min(last_seq),
                peer_read_seq,
                unread,
                last_activity_ms: last_ms,
                group: group.then(|| crate::model::GroupSummary {
                    group: GroupId(1),
                    name: "g".into(),
                    member_count: people.len() as u32,
                }),
                mentioned,
            });
        }
        // Ordered by the conversation's own activity, shared by its members.
        entries.sort_by_key(|e| {
            std::cmp::Reverse((self.activity[&e.conversation], e.conversation.to_string()))
        });
        entries
    }

    /// Where `viewer`'s read mark of `conversation` stops: the last message
    /// of a one-to-one conversation not withheld from them; the last of the group.
    fn read_cap(&self, viewer: UserId, conversation: ConversationId) -> u64 {
        let messages = &self.messages[&conversation];
        match conversation.group() {
            Some(_) => messages.last().map_or(0, |m| m.seq),
            None => (messages.iter())
                .rfind(|m| m.hidden_from != Some(viewer))
                .map_or(0, |m| m.seq),
        }
    }
}

/// A view of random blocks (some still on, some ended) over times up to
/// `horizon`, and random hidden peers.
fn random_view(rng: &mut StdRng, me: UserId, people: &[UserId], horizon: i64) -> View {
    let mut view = View::default();
    for &other in people.iter().filter(|&&p| p != me) {
        if rng.random_bool(0.4) {
            let mut spans = Vec::new();
            for _ in 0..rng.random_range(1..=2) {
                let from_ms = rng.random_range(0..horizon);
                let until_ms = match rng.random_bool(0.5) {
                    true => i64::MAX,
                    false => rng.random_range(from_ms..=horizon),
                };
                spans.push(crate::model::Span { from_ms, until_ms });
            }
            view.blocked.insert(other, spans);
        }
        if rng.random_bool(0.25) {
            view.hidden.insert(other);
        }
    }
    view
}

/// Random one-to-one messages (some withheld from their recipient), group
/// messages with mentions, and read marks among five users in one group;
/// then, for views drawn at random (blocks with their times, hidden peers),
/// every user's conversation list, read whole and in pages of two, says
/// what a model that filters every message in memory says: which
/// conversations are listed, in which order, with which last message,
/// unread count and mention; and read marks stop where the model says.
pub async fn views_match_the_model(store: &dyn ChatStorage, seed: u64) {
    let people = users(1..6);
    create(store, 1, users(2..6)).await;
    let group = ConversationId::Group(GroupId(1));
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = ViewsModel::default();
    model.messages.insert(group, Vec::new());
    model.activity.insert(group, 1);
    for &p in &people {
        model.marks.insert((group, p), 0);
    }
    let mut t = 10;
    for step in 0..300 {
        t += 1;
        let sender = people[rng.random_range(0..people.len())];
        let cmid = format!("m{step}");
        match rng.random_range(0..10) {
            0..=3 => {
                let peer = loop {
                    let p = people[rng.random_range(0..people.len())];
                    if p != sender {
                        break p;
                    }
                };
                let withheld = rng.random_bool(0.4);
                let conversation = ConversationId::direct(sender, peer).unwrap();
                let appended = store
                    .append(NewMessage {
                        withheld,
                        ..message(sender.0, peer.0, &cmid, t)
                    })
                    .await
                    .unwrap();
                let messages = model.messages.entry(conversation).or_default();
                assert_eq!(appended.seq, messages.len() as u64 + 1);
                messages.push(Modelled {
                    seq: appended.seq,
                    sender,
                    sent_ms: t,
                    hidden_from: withheld.then_some(peer),
                    mentions: Mentions::default(),
                });
                model.activity.insert(conversation, t);
                model.marks.entry((conversation, peer)).or_insert(0);
                model.marks.insert((conversation, sender), appended.seq);
            }
            4..=7 => {
                let mentions = Mentions {
                    all: sender == UserId(1) && rng.random_bool(0.2),
                    users: match rng.random_bool(0.3) {
                        true => vec![people[rng.random_range(0..people.len())]],
                        false => Vec::new(),
                    },
                };
                let appended = store
                    .append_group(group_message(sender.0, &cmid, t, mentions))
                    .await
                    .unwrap();
                model.messages.get_mut(&group).unwrap().push(Modelled {
                    seq: appended.seq,
                    sender,
                    sent_ms: t,
                    hidden_from: None,
                    mentions: appended.mentions,
                });
                model.activity.insert(group, t);
                model.marks.insert((group, sender), appended.seq);
            }
            _ => {
                let conversations: Vec<ConversationId> = (model.marks.keys())
                    .filter(|(_, u)| *u == sender)
                    .map(|(c, _)| *c)
                    .collect();
                let conversation = conversations[rng.random_range(0..conversations.len())];
                let last = model.messages[&conversation].len() as u64;
                let seq = rng.random_range(0..=last + 1);
                let cap = model.read_cap(sender, conversation);
                let mark = model.marks.get_mut(&(conversation, sender)).unwrap();
                *mark = (*mark).max(seq.min(cap));
                let expected = *mark;
                let got = store.mark_read(sender, conversation, seq, None).await;
                assert_eq!(
                    got.unwrap(),
                    Some(expected),
                    "step {step}: {sender:?} marks {conversation} read at {seq}"
                );
            }
        }
    }
    // Lists that a view changed, so the check is not vacuous.
    let mut changed = 0;
    for round in 0..6 {
        for &viewer in &people {
            let view = match round {
                0 => View::default(),
                _ => random_view(&mut rng, viewer, &people, t),
            };
            let expected = model.list(viewer, &view, &people);
            if expected != model.list(viewer, &View::default(), &people) {
                changed += 1;
            }
            let view = Arc::new(view);
            let whole = store.inbox(viewer, None, 100, view.clone()).await.unwrap();
            assert_eq!(whole.next, None);
            assert_eq!(
                whole.entries, expected,
                "round {round}: the list of {viewer:?} through {view:?}"
            );
            let mut paged = Vec::new();
            let mut cursor = None;
            loop {
                let page = store.inbox(viewer, cursor, 2, view.clone()).await.unwrap();
                assert!(page.entries.len() <= 2);
                paged.extend(page.entries);
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            assert_eq!(paged, expected, "round {round}: {viewer:?}'s list in pages");
        }
    }
    assert!(changed > 10, "views changed only {changed} lists");
    // Pulls read every message with whom it was withheld from.
    for (&conversation, messages) in &model.messages {
        let stored = store.messages_after(conversation, 0, 1_000).await.unwrap();
        let withheld: Vec<_> = stored.iter().map(|m| m.hidden_from).collect();
        let modelled: Vec<_> = messages.iter().map(|m| m.hidden_from).collect();
        assert_eq!(withheld, modelled, "{conversation}");
    }
}
