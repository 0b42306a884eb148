//! Adapters that plug one room's implementation into another room's port.

use std::collections::HashMap;
use std::sync::Arc;

use superapp_account::model as account;
use superapp_account::policy::GroupAdd;
use superapp_account::ports::{AvatarMedia, Departures};
use superapp_account::{Accounts, Profiles, RealNames, Social};
use superapp_chat::model::{self as chat, Addition, Reach, SendVerdict, Span, UserId, View};
use superapp_chat::ports::MediaLibrary;
use superapp_chat::{Chat, ChatError, Directory};
use superapp_kit::BoxFuture;
use superapp_kit::clock::SharedClock;
use superapp_kit::rpc::FenceFloor;
use superapp_media::{Media, MediaId, MediaKind, Sight};
use superapp_proto::ConversationId;
use superapp_proto::v1::Special;
use superapp_wallet::model::{GroupId, Place};
use superapp_wallet::ports::{Chats, GroupFacts, People, Person};

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

/// The social graph's view filters as chat reads them. Users who filter
/// nothing share one empty view, so their pulls and lists build nothing.
fn view_of(filters: &account::ViewFilters) -> Arc<View> {
    static EMPTY: std::sync::OnceLock<Arc<View>> = std::sync::OnceLock::new();
    if filters.is_empty() {
        return EMPTY.get_or_init(Arc::default).clone();
    }
    let mut blocked: HashMap<UserId, Vec<Span>> = HashMap::new();
    for span in &filters.blocks {
        blocked.entry(span.user).or_default().push(Span {
            from_ms: span.from_ms,
            until_ms: span.until_ms.unwrap_or(i64::MAX),
        });
    }
    Arc::new(View {
        blocked,
        hidden: filters.hidden.iter().copied().collect(),
    })
}

/// Chat asks "does this user take part?" (exists, and is not deleted or
/// being deleted); the account room answers, from its memory of users found
/// so lately, which forgets a user at their deletion, so the send path
/// reads no store for people it has seen.
pub struct AccountDirectory {
    accounts: Arc<Accounts>,
    social: Arc<Social>,
    profiles: Arc<Profiles>,
}

impl AccountDirectory {
    pub fn new(accounts: Arc<Accounts>, social: Arc<Social>, profiles: Arc<Profiles>) -> Self {
        Self {
            accounts,
            social,
            profiles,
        }
    }
}

impl Directory for AccountDirectory {
    fn user_exists(&self, user_id: UserId) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(
            async move { (self.accounts.takes_part(user_id).await).map_err(|e| e.to_string()) },
        )
    }

    fn is_deleted(&self, user_id: UserId) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(
            async move { (self.accounts.is_deleted(user_id).await).map_err(|e| e.to_string()) },
        )
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

    fn send_verdict(
        &self,
        sender: UserId,
        recipient: UserId,
    ) -> BoxFuture<'_, Result<SendVerdict, String>> {
        Box::pin(async move {
            let verdict =
                (self.social.send_verdict(sender, recipient).await).map_err(|e| e.to_string())?;
            Ok(SendVerdict {
                reach: match verdict.reach {
                    account::Reach::Delivered => Reach::Delivered,
                    account::Reach::Withheld => Reach::Withheld,
                    account::Reach::Refused => Reach::Refused,
                },
                recipient_hides: verdict.recipient_hides,
                sender_hides: verdict.sender_hides,
            })
        })
    }

    fn view(&self, viewer: UserId) -> BoxFuture<'_, Result<Arc<View>, String>> {
        Box::pin(async move {
            let filters = (self.social.view_filters(viewer).await).map_err(|e| e.to_string())?;
            Ok(view_of(&filters))
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

    fn card(
        &self,
        sender: UserId,
        subject: UserId,
    ) -> BoxFuture<'_, Result<Option<(String, String)>, String>> {
        Box::pin(
            async move { (self.profiles.card(sender, subject).await).map_err(|e| e.to_string()) },
        )
    }
}

/// The account room erases an account only once the other rooms have let
/// go of its user: chat takes them out of every group (handing on the
/// groups they own).
pub struct ChatDepartures {
    chat: Arc<Chat>,
}

impl ChatDepartures {
    pub fn new(chat: Arc<Chat>) -> Self {
        Self { chat }
    }
}

impl Departures for ChatDepartures {
    fn depart(&self, user: UserId) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { (self.chat.depart(user).await).map_err(|e| e.to_string()) })
    }
}

/// Chat's media port, answered by the media room: which of the objects a
/// message names its sender may use, and what the message now references
/// (so the object is not collected).
pub struct ChatMedia {
    media: Arc<Media>,
}

impl ChatMedia {
    pub fn new(media: Arc<Media>) -> Self {
        ChatMedia { media }
    }
}

impl MediaLibrary for ChatMedia {
    fn usable(
        &self,
        user: UserId,
        ids: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<Option<chat::MediaFacts>>, String>> {
        Box::pin(async move {
            // Chat checked each id's form; one that still does not parse is
            // simply not usable.
            let parsed: Vec<Option<MediaId>> = ids.iter().map(|id| id.parse().ok()).collect();
            let known: Vec<MediaId> = parsed.iter().flatten().cloned().collect();
            let mut facts = self
                .media
                .usable(user, &known)
                .await
                .map_err(|e| e.to_string())?
                .into_iter();
            Ok(parsed
                .iter()
                .map(|id| id.as_ref().and_then(|_| facts.next().flatten()))
                .map(|found| found.map(chat_facts))
                .collect())
        })
    }

    fn attach(&self, ids: Vec<String>, referrer: String) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let ids: Vec<MediaId> = ids.iter().filter_map(|id| id.parse().ok()).collect();
            self.media
                .attach(&ids, &referrer)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

fn chat_facts(facts: superapp_media::Facts) -> chat::MediaFacts {
    chat::MediaFacts {
        kind: match facts.kind {
            MediaKind::Image => chat::MediaKind::Image,
            MediaKind::Voice => chat::MediaKind::Voice,
            MediaKind::Video => chat::MediaKind::Video,
            MediaKind::File => chat::MediaKind::File,
        },
        size: facts.size,
        width: facts.width,
        height: facts.height,
    }
}

/// The media room's sight of what references media: a message, answered
/// by chat for a viewer who may see it, and a profile's avatar, answered by
/// profiles. Chat and profiles are built after the media room (they take
/// it as a port), so the sight is given them once all exist; until then it
/// sees nothing.
#[derive(Default)]
pub struct RoomSight {
    chat: std::sync::OnceLock<Arc<Chat>>,
    profiles: std::sync::OnceLock<Arc<Profiles>>,
}

impl RoomSight {
    pub fn see_through(&self, chat: Arc<Chat>, profiles: Arc<Profiles>) {
        let _ = self.chat.set(chat);
        let _ = self.profiles.set(profiles);
    }
}

impl Sight for RoomSight {
    fn profile_media(
        &self,
        viewer: UserId,
        owner: UserId,
    ) -> BoxFuture<'_, Result<Option<String>, String>> {
        Box::pin(async move {
            let Some(profiles) = self.profiles.get() else {
                return Ok(None);
            };
            (profiles.avatar_media(viewer, owner).await).map_err(|e| e.to_string())
        })
    }

    fn message_media(
        &self,
        viewer: UserId,
        conversation_id: &str,
        seq: u64,
    ) -> BoxFuture<'_, Result<Option<Vec<(String, Option<String>)>>, String>> {
        let conversation_id = conversation_id.to_owned();
        Box::pin(async move {
            let Some(chat) = self.chat.get() else {
                return Ok(None);
            };
            chat.message_media(viewer, &conversation_id, seq)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Profiles' media port, answered by the media room: an avatar is a picture
/// its owner may use, and the media room keeps the one each profile
/// references (referrer `p:<user id>`).
pub struct ProfileMedia {
    media: Arc<Media>,
}

impl ProfileMedia {
    pub fn new(media: Arc<Media>) -> Self {
        ProfileMedia { media }
    }
}

impl AvatarMedia for ProfileMedia {
    fn usable_image(&self, user: UserId, id: String) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async move {
            let Ok(id) = id.parse::<MediaId>() else {
                return Ok(false);
            };
            let facts = (self.media.usable(user, &[id]).await).map_err(|e| e.to_string())?;
            Ok(matches!(facts.first(), Some(Some(f)) if f.kind == MediaKind::Image))
        })
    }

    fn reference(&self, user: UserId, id: Option<String>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let referrer = format!("p:{}", user.0);
            self.media
                .detach(&referrer)
                .await
                .map_err(|e| e.to_string())?;
            let ids: Vec<MediaId> = id.iter().filter_map(|id| id.parse().ok()).collect();
            self.media
                .attach(&ids, &referrer)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// The wallet asks the account room who a user is: whether they take part,
/// when their account was made, whether their real name is verified.
pub struct WalletPeople {
    accounts: Arc<Accounts>,
    real_names: Arc<RealNames>,
}

impl WalletPeople {
    pub fn new(accounts: Arc<Accounts>, real_names: Arc<RealNames>) -> Self {
        Self {
            accounts,
            real_names,
        }
    }
}

impl People for WalletPeople {
    fn person(&self, user: UserId) -> BoxFuture<'_, Result<Option<Person>, String>> {
        Box::pin(async move {
            if !(self.accounts.takes_part(user).await).map_err(|e| e.to_string())? {
                return Ok(None);
            }
            let profile = (self.accounts.profile(user).await).map_err(|e| e.to_string())?;
            let verified = (self.real_names.is_verified(user).await).map_err(|e| e.to_string())?;
            Ok(Some(Person {
                created_ms: profile.created_at_ms,
                real_name_verified: verified,
                display_name: profile.display_name,
            }))
        })
    }
}

/// The wallet asks chat (and the social graph behind it) who may message
/// whom and who is in a group, and writes its cards into conversations.
pub struct WalletChats {
    social: Arc<Social>,
    chat: Arc<Chat>,
    clock: SharedClock,
}

impl WalletChats {
    pub fn new(social: Arc<Social>, chat: Arc<Chat>, clock: SharedClock) -> Self {
        Self {
            social,
            chat,
            clock,
        }
    }
}

impl Chats for WalletChats {
    fn may_message(&self, from: UserId, to: UserId) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async move {
            let verdict = (self.social.send_verdict(from, to).await).map_err(|e| e.to_string())?;
            Ok(verdict.reach != account::Reach::Refused)
        })
    }

    fn group(
        &self,
        group: GroupId,
        user: UserId,
    ) -> BoxFuture<'_, Result<Option<GroupFacts>, String>> {
        Box::pin(async move {
            match self.chat.group(group, user).await {
                Ok((info, member)) => Ok(Some(GroupFacts {
                    members: info.member_count,
                    is_member: true,
                    may_post: superapp_chat::policy::may_send(
                        &info,
                        &member,
                        false,
                        self.clock.now_ms(),
                    )
                    .is_ok(),
                })),
                Err(ChatError::NotMember) => Ok(Some(GroupFacts {
                    members: 0,
                    is_member: false,
                    may_post: false,
                })),
                Err(ChatError::UnknownGroup) => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    fn post(
        &self,
        sender: UserId,
        place: Place,
        special: Special,
        fallback: String,
        key: String,
    ) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let posted = match place {
                Place::Direct(peer) => {
                    let conversation = ConversationId::direct(sender, peer)
                        .ok_or("a one-to-one chat has two sides")?;
                    self.chat
                        .append_special(sender, conversation, special, fallback, &key)
                        .await
                }
                Place::Group(group) => {
                    self.chat
                        .append_group_special(sender, group, special, fallback, &key)
                        .await
                }
            };
            posted.map(|_| ()).map_err(|e| e.to_string())
        })
    }
}
