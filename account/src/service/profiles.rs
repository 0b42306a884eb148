//! Profiles and discovery: a user's own profile (display name, avatar,
//! signature, region, gender, a handle set at most once in 30 days), and
//! what others find of them: lookups by id, handle or phone number, and
//! contact matching by hashed numbers.
//!
//! What any answer shows of a user is decided by
//! [`policy::sight`] alone, from how the user stands with the viewer and
//! the user's phone visibility and invisible mode. An answer that the rules
//! forbid (a number hidden by its visibility, a user who blocks the asker
//! or is invisible to them) is the answer for nobody: `UnknownUser`, or no
//! entry in a match, so it reveals nothing. An account deleted, or being
//! deleted, is found by nothing, and by id answers `UserDeleted`. Lookups
//! by handle or phone are
//! limited per user per hour; contact matching per request and in distinct
//! hashes per day, the latter kept in the store.

use std::collections::HashSet;
use std::sync::Arc;

use superapp_kit::clock::SharedClock;
use superapp_kit::store::StoreError;

use crate::ProfileError;
use crate::config::SocialConfig;
use crate::contact_salt::ContactSalt;
use crate::model::{Lookup, LookupFacts, ProfileChange, ProfileRecord, UserId, UserView};
use crate::policy::profile::{self as policy, LOOKUP_WINDOW_MS, Sight};
use crate::policy::security::takes_part;
use crate::ports::AvatarMedia;
use crate::social::Settings;
use crate::store::ProfileStore;
use crate::throttle::Throttle;

/// Users read per page while the index of phone hashes is built.
const INDEX_PAGE: u32 = 1_000;

pub struct Profiles {
    store: Arc<dyn ProfileStore>,
    salt: ContactSalt,
    clock: SharedClock,
    config: SocialConfig,
    /// Lookups by handle or phone per user within the last hour
    /// (`social.lookups_per_hour`), in the memory of the one process that
    /// serves the API.
    lookups: Throttle,
    /// The media room, for avatars that are uploaded pictures; None: an
    /// avatar is a URL only.
    media: Option<Arc<dyn AvatarMedia>>,
}

impl Profiles {
    pub fn new(
        store: Arc<dyn ProfileStore>,
        salt: ContactSalt,
        clock: SharedClock,
        config: SocialConfig,
    ) -> Self {
        Self {
            media: None,
            lookups: Throttle::new(config.lookups_per_hour, LOOKUP_WINDOW_MS),
            store,
            salt,
            clock,
            config,
        }
    }

    /// Profiles whose avatars may be pictures uploaded to `media`.
    pub fn with_media(self, media: Arc<dyn AvatarMedia>) -> Self {
        Self {
            media: Some(media),
            ..self
        }
    }

    /// Builds the index of phone hashes that contact matching reads, unless
    /// it is complete for this salt already: on the first start after an
    /// upgrade, and after the salt changed. Registration keeps it from then
    /// on. Run before the API is served; answers how many users it indexed.
    pub async fn index_phones(&self) -> Result<u64, ProfileError> {
        let fingerprint = self.salt.fingerprint();
        if self.store.phone_index_salt().await?.as_deref() == Some(fingerprint.as_str()) {
            return Ok(0);
        }
        self.store.clear_phone_index().await?;
        let (mut after, mut indexed) = (UserId(0), 0);
        loop {
            let page = self.store.phones_after(after, INDEX_PAGE).await?;
            let Some(&(last, _)) = page.last() else {
                break;
            };
            after = last;
            indexed += page.len() as u64;
            let entries = page
                .into_iter()
                .map(|(user, phone)| (self.salt.hash(&phone), user))
                .collect();
            self.store.index_phones(entries).await?;
        }
        self.store.set_phone_index_salt(fingerprint).await?;
        Ok(indexed)
    }

    /// The salt clients hash numbers with, in hex.
    pub fn contact_salt(&self) -> String {
        self.salt.hex()
    }

    /// Contact matching's limits: hashes per request, distinct hashes per day.
    pub fn match_limits(&self) -> (u32, u32) {
        (
            self.config.contact_match_hashes_per_request,
            self.config.contact_match_hashes_per_day,
        )
    }

    /// `user`'s own profile, all of it.
    pub async fn mine(&self, user: UserId) -> Result<ProfileRecord, ProfileError> {
        self.store
            .profile(user)
            .await?
            .ok_or(ProfileError::UnknownUser)
    }

    /// Changes `user`'s profile: every part given is checked first, and
    /// then all of them change in one write, or none (a handle taken or
    /// changed within 30 days refuses the whole). A handle refused as taken
    /// costs a lookup, as finding its holder would.
    pub async fn update(
        &self,
        user: UserId,
        mut change: ProfileChange,
    ) -> Result<ProfileRecord, ProfileError> {
        if let Some(name) = &change.display_name {
            let name =
                crate::policy::normalize_display_name(name).map_err(|_| ProfileError::Invalid {
                    code: "invalid_display_name",
                    reason: "display names are 1 to 64 characters without control characters",
                })?;
            change.display_name = Some(name);
        }
        let avatar = change.avatar_url.as_deref().map(|url| {
            policy::check_avatar_url(url).map(|()| policy::avatar_media(url).map(str::to_owned))
        });
        let avatar = avatar.transpose()?;
        if let Some(Some(id)) = &avatar {
            let media = self.media.as_ref().ok_or(ProfileError::AvatarRefused)?;
            let usable = (media.usable_image(user, id.clone()).await)
                .map_err(|e| ProfileError::Store(StoreError::backend("media", e)))?;
            if !usable {
                return Err(ProfileError::AvatarRefused);
            }
        }
        if let Some(signature) = &change.signature {
            policy::check_signature(signature)?;
        }
        if let Some(region) = &change.region {
            policy::check_region(region)?;
        }
        let key = user.0.to_string();
        let now = self.clock.now_ms();
        if let Some(handle) = &change.handle {
            policy::check_handle(handle)?;
            self.take_lookup(&key, now)?;
        }
        let updated = self.store.update_profile(user, change.clone(), now).await;
        if change.handle.is_some() && !matches!(updated, Err(ProfileError::HandleTaken)) {
            self.lookups.give_back(&key);
        }
        if let (Ok(_), Some(avatar), Some(media)) = (&updated, avatar, &self.media) {
            // The profile is stored; a reference missed here costs at most
            // an avatar collected after the media room's grace period (a
            // day), which its owner uploads again: not a refusal of what is
            // already written.
            if let Err(error) = media.reference(user, avatar).await {
                tracing::warn!(user = user.0, %error, "the avatar's media reference not recorded");
            }
        }
        updated
    }

    /// The media id of `owner`'s avatar when it is an uploaded picture and
    /// `viewer` is shown it: the avatar is part of the minimum anyone who
    /// finds `owner` by id sees; None otherwise (no such user, deleted, or a
    /// URL avatar).
    pub async fn avatar_media(
        &self,
        viewer: UserId,
        owner: UserId,
    ) -> Result<Option<String>, ProfileError> {
        match self.by_id(viewer, owner).await {
            Ok(view) => Ok(policy::avatar_media(&view.avatar_url).map(str::to_owned)),
            Err(ProfileError::UnknownUser | ProfileError::UserDeleted) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// What `viewer` sees of the user with id `user`: at least the minimum
    /// (id, name, avatar), the rest as [`policy::sight`] allows.
    /// An account deleted, or being deleted, is `UserDeleted`, as it is to
    /// every other operation that names it by id.
    pub async fn by_id(&self, viewer: UserId, user: UserId) -> Result<UserView, ProfileError> {
        let facts = self.store.lookup(viewer, Lookup::Id(user)).await?;
        let facts = facts.ok_or(ProfileError::UnknownUser)?;
        if !takes_part(facts.standing) {
            return Err(ProfileError::UserDeleted);
        }
        Ok(policy::view(&facts.profile, self.sight(viewer, &facts)))
    }

    /// The name and avatar URL of `subject`'s contact card, as `sender`
    /// sees them, when `sender` may share it
    /// ([`crate::policy::may_share_card`]); None when they may not, or
    /// `subject` is nobody or does not take part (deleted, or being
    /// deleted), alike.
    pub async fn card(
        &self,
        sender: UserId,
        subject: UserId,
    ) -> Result<Option<(String, String)>, ProfileError> {
        let Some(facts) = self.store.lookup(sender, Lookup::Id(subject)).await? else {
            return Ok(None);
        };
        if !takes_part(facts.standing)
            || !crate::policy::may_share_card(sender, subject, facts.relation)
        {
            return Ok(None);
        }
        let view = policy::view(&facts.profile, self.sight(sender, &facts));
        Ok(Some((view.display_name, view.avatar_url)))
    }

    /// The user who holds `handle` (whatever its case), if `viewer` may find
    /// them by it; `UnknownUser` otherwise, as for a handle nobody holds.
    pub async fn by_handle(&self, viewer: UserId, handle: &str) -> Result<UserView, ProfileError> {
        policy::check_handle(handle)?;
        self.take_lookup(&viewer.0.to_string(), self.clock.now_ms())?;
        let key = Lookup::Handle(handle.to_string());
        self.find(viewer, key, |sight| sight.findable).await
    }

    /// The user whose number `phone` is, if `viewer` may find them by it;
    /// `UnknownUser` otherwise, as for a number nobody registered.
    pub async fn by_phone(&self, viewer: UserId, phone: &str) -> Result<UserView, ProfileError> {
        let phone =
            crate::policy::normalize_phone(phone).map_err(|_| ProfileError::InvalidPhone)?;
        self.take_lookup(&viewer.0.to_string(), self.clock.now_ms())?;
        let key = Lookup::Phone(phone);
        self.find(viewer, key, |sight| sight.findable_by_phone)
            .await
    }

    /// Contact matching: of the users whose contact hashes are among
    /// `hashes`, those `viewer` may find by phone, each with the hash that
    /// found them, in the order asked. At most
    /// `social.contact_match_hashes_per_request` hashes (`too_many_hashes`),
    /// and at most `social.contact_match_hashes_per_day` distinct ones in
    /// any 24 hours (`TooManyMatches`). The viewer's own number finds nobody.
    pub async fn match_contacts(
        &self,
        viewer: UserId,
        hashes: &[String],
    ) -> Result<Vec<(String, UserView)>, ProfileError> {
        if hashes.len() > self.config.contact_match_hashes_per_request as usize {
            return Err(ProfileError::Invalid {
                code: "too_many_hashes",
                reason: "more hashes than social.contact_match_hashes_per_request allows in one request",
            });
        }
        let mut seen = HashSet::new();
        let mut distinct = Vec::with_capacity(hashes.len());
        for hash in hashes {
            let hash = policy::contact_hash(hash)?;
            if seen.insert(hash.clone()) {
                distinct.push(hash);
            }
        }
        if distinct.is_empty() {
            return Ok(Vec::new());
        }
        let found = self
            .store
            .match_phone_hashes(
                viewer,
                distinct,
                self.config.contact_match_hashes_per_day,
                self.clock.now_ms(),
            )
            .await?;
        Ok(found
            .into_iter()
            .filter(|(_, facts)| facts.profile.user_id != viewer && takes_part(facts.standing))
            .filter_map(|(hash, facts)| {
                let sight = self.sight(viewer, &facts);
                sight
                    .findable_by_phone
                    .then(|| (hash, policy::view(&facts.profile, sight)))
            })
            .collect())
    }

    async fn find(
        &self,
        viewer: UserId,
        key: Lookup,
        found_by: impl Fn(Sight) -> bool,
    ) -> Result<UserView, ProfileError> {
        let facts = self.store.lookup(viewer, key).await?;
        let facts = facts.ok_or(ProfileError::UnknownUser)?;
        let sight = self.sight(viewer, &facts);
        if !takes_part(facts.standing) || !found_by(sight) {
            return Err(ProfileError::UnknownUser);
        }
        Ok(policy::view(&facts.profile, sight))
    }

    fn sight(&self, viewer: UserId, facts: &LookupFacts) -> Sight {
        let settings = Settings::of(facts.privacy, &self.config);
        policy::sight(
            facts.profile.user_id,
            viewer,
            facts.relation,
            settings.phone_visibility,
            settings.invisible,
        )
    }

    /// Counts a lookup of `key`'s, or refuses it past the hour's limit.
    fn take_lookup(&self, key: &str, now_ms: i64) -> Result<(), ProfileError> {
        match self.lookups.check_and_record(key, now_ms) {
            None => Ok(()),
            Some(retry_after_ms) => Err(ProfileError::TooManyLookups { retry_after_ms }),
        }
    }
}
