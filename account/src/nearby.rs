//! People nearby: a user shares where they are, and sees the other people
//! who share within a radius of that place, nearest first, with distances
//! rounded. Opt-in, and short-lived: a position is found for
//! `nearby.ttl_secs` (30 minutes) after it was shared, or until cleared.
//!
//! No position finer than a grid cell of about 100 m is ever kept: a
//! position is snapped to its cell ([`policy::nearby::snap`]) before it
//! reaches the index, distances are measured between cell centres and
//! shown rounded up ([`policy::nearby::shown_distance`]), and no answer
//! carries coordinates. A search is centred on the viewer's own shared
//! cell, so measuring from somewhere else means moving there, and moves
//! are capped per hour. Who is shown is decided by
//! [`policy::nearby::may_see_nearby`] over one read of the candidates'
//! facts: how the viewer stands with each, and whether each account takes
//! part.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use superapp_kit::clock::SharedClock;

use crate::NearbyError;
use crate::config::NearbyConfig;
use crate::model::{Cell, Hit, Invisible, NearbyFacts, NearbyPage, NearbyPerson, UserId};
use crate::policy::nearby as policy;
use crate::store::{AccountStore, NearbyIndex, SocialStore};

/// Candidates fetched beyond a search's count, for those the rules leave out
/// (the viewer among them, at distance 0).
const FETCH_MARGIN: usize = 8;
/// A search fetches at most this many candidates, however many are left out.
pub const MAX_CANDIDATES: usize = 20_000;

/// What a share answers: when the position stops being found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shared {
    pub expires_at_ms: i64,
}

pub struct Nearby {
    index: Arc<dyn NearbyIndex>,
    social: Arc<dyn SocialStore>,
    accounts: Arc<dyn AccountStore>,
    clock: SharedClock,
    config: NearbyConfig,
    /// Invisible mode of a user who has not chosen (`social.invisible`).
    invisible_default: Invisible,
}

impl Nearby {
    pub fn new(
        index: Arc<dyn NearbyIndex>,
        social: Arc<dyn SocialStore>,
        accounts: Arc<dyn AccountStore>,
        clock: SharedClock,
        config: NearbyConfig,
    ) -> Self {
        Self {
            index,
            social,
            accounts,
            clock,
            config,
            invisible_default: Invisible::Off,
        }
    }

    /// Candidates who have not chosen an invisible mode have this one.
    pub fn with_invisible_default(mut self, invisible: Invisible) -> Self {
        self.invisible_default = invisible;
        self
    }

    /// `user` shares the position (`lat`, `lon`), kept as its cell.
    pub async fn share(&self, user: UserId, lat: f64, lon: f64) -> Result<Shared, NearbyError> {
        let cell = policy::check_position(lat, lon)?;
        let now = self.clock.now_ms();
        let standing = self
            .index
            .share(user, cell, now, self.config.limits())
            .await?;
        Ok(Shared {
            expires_at_ms: standing.expires_ms,
        })
    }

    /// `user` stops sharing: nobody finds them any more.
    pub async fn clear(&self, user: UserId) -> Result<(), NearbyError> {
        self.index.clear(user, self.clock.now_ms()).await
    }

    /// The people `viewer` may see within `radius_m` of their own shared
    /// cell (the configured default when None), at most `count` (likewise),
    /// nearest first.
    pub async fn query(
        &self,
        viewer: UserId,
        radius_m: Option<u32>,
        count: Option<u32>,
    ) -> Result<NearbyPage, NearbyError> {
        let config = &self.config;
        let radius_m = policy::radius(radius_m, config.default_radius_m, config.max_radius_m)?;
        let count = policy::result_count(count, config.default_results, config.max_results);
        let now = self.clock.now_ms();
        let standing = self.index.begin_query(viewer, now, config.limits()).await?;
        let centre = standing.live_cell(now).ok_or(NearbyError::NotShared)?;
        let facts = |others: Vec<UserId>| async move {
            let mut facts = self.social.nearby_facts(viewer, others).await?;
            for fact in facts.values_mut() {
                fact.invisible.get_or_insert(self.invisible_default);
            }
            Ok(facts)
        };
        let hits = nearest_visible(
            self.index.as_ref(),
            viewer,
            centre,
            radius_m,
            count as usize,
            now,
            facts,
        )
        .await?;
        let names: HashMap<UserId, String> = self
            .accounts
            .display_names(hits.iter().map(|h| h.user).collect())
            .await?
            .into_iter()
            .collect();
        let people = hits
            .into_iter()
            .map(|hit| NearbyPerson {
                user: hit.user,
                display_name: names.get(&hit.user).cloned().unwrap_or_default(),
                within_m: policy::shown_distance(hit.distance_m),
            })
            .collect();
        Ok(NearbyPage {
            people,
            radius_m,
            expires_at_ms: standing.expires_ms,
        })
    }
}

/// The `count` nearest people around `centre` that `viewer` may see
/// ([`policy::may_see_nearby`]), nearest first. `facts` answers, in one
/// read, what the rule asks of the candidates of a round; when the rules
/// leave too many out, the next round fetches four times as many, up to
/// [`MAX_CANDIDATES`].
pub async fn nearest_visible<F, Fut>(
    index: &dyn NearbyIndex,
    viewer: UserId,
    centre: Cell,
    radius_m: u32,
    count: usize,
    now_ms: i64,
    facts: F,
) -> Result<Vec<Hit>, NearbyError>
where
    F: Fn(Vec<UserId>) -> Fut,
    Fut: Future<Output = Result<HashMap<UserId, NearbyFacts>, NearbyError>>,
{
    let mut fetch = count.saturating_add(FETCH_MARGIN).min(MAX_CANDIDATES);
    loop {
        let hits = index
            .search(centre, radius_m, fetch, now_ms)
            .await
            .map_err(NearbyError::Index)?;
        let exhausted = hits.len() < fetch;
        let others: Vec<UserId> = hits
            .iter()
            .map(|h| h.user)
            .filter(|&u| u != viewer)
            .collect();
        let facts = facts(others).await?;
        let visible: Vec<Hit> = hits
            .into_iter()
            .filter(|h| {
                let facts = facts.get(&h.user).copied().unwrap_or_default();
                policy::may_see_nearby(viewer, h.user, facts)
            })
            .take(count)
            .collect();
        if visible.len() >= count || exhausted || fetch >= MAX_CANDIDATES {
            return Ok(visible);
        }
        fetch = fetch.saturating_mul(4).min(MAX_CANDIDATES);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;
    use crate::policy::nearby::{NearbyLimits, snap};
    use crate::store::LocalNearbyIndex;

    const NOW: i64 = 1_800_000_000_000;

    /// One step over a small town: a share, a clear, a block either way, an
    /// unblock, a friendship made or ended, an invisible mode chosen, an
    /// account's deletion asked for or withdrawn, time passing, or a search
    /// (checked against the model).
    #[derive(Debug, Clone)]
    enum Step {
        Share(u64, u32, u32),
        Clear(u64),
        Block(u64, u64),
        Unblock(u64, u64),
        Friends(u64, u64, bool),
        Invisible(u64, Invisible),
        Deleting(u64),
        Restored(u64),
        Wait(i64),
        Search(u64, u32, usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        let user = 1u64..=12;
        prop_oneof![
            4 => (user.clone(), 0u32..12, 0u32..12).prop_map(|(u, n, e)| Step::Share(u, n, e)),
            1 => user.clone().prop_map(Step::Clear),
            1 => (user.clone(), user.clone()).prop_map(|(a, b)| Step::Block(a, b)),
            1 => (user.clone(), user.clone()).prop_map(|(a, b)| Step::Unblock(a, b)),
            1 => (user.clone(), user.clone(), any::<bool>()).prop_map(|(a, b, f)| Step::Friends(a, b, f)),
            1 => (user.clone(), prop_oneof![
                Just(Invisible::Off),
                Just(Invisible::Strangers),
                Just(Invisible::Everyone),
            ])
                .prop_map(|(u, level)| Step::Invisible(u, level)),
            1 => user.clone().prop_map(Step::Deleting),
            1 => user.clone().prop_map(Step::Restored),
            2 => (0i64..1_200_000).prop_map(Step::Wait),
            4 => (user, prop_oneof![Just(150u32), Just(600), Just(2_000)], 1usize..6)
                .prop_map(|(u, r, c)| Step::Search(u, r, c)),
        ]
    }

    /// The reference: everyone's last admitted share, the blocks, the
    /// friendships, the invisible modes, and the accounts whose deletion
    /// waits; a search is everyone unexpired, not the viewer, not deleting,
    /// not blocked either way, not invisible to the viewer (`strangers` to
    /// a non-friend, `everyone` to all), within the radius of the viewer's
    /// cell, nearest (then lowest id) first, cut at the count. Written
    /// without the index.
    #[derive(Default)]
    struct Model {
        shared: BTreeMap<u64, (Cell, i64)>,
        blocks: BTreeSet<(u64, u64)>,
        friends: BTreeSet<(u64, u64)>,
        invisible: BTreeMap<u64, Invisible>,
        deleting: BTreeSet<u64>,
    }

    impl Model {
        fn search(&self, viewer: u64, radius: u32, count: usize, now: i64) -> Vec<(u64, u32)> {
            let Some(&(centre, expires)) = self.shared.get(&viewer) else {
                return Vec::new();
            };
            if expires <= now {
                return Vec::new();
            }
            let mut found: Vec<(f64, u64)> = self
                .shared
                .iter()
                .filter(|&(&u, &(_, e))| u != viewer && e > now && !self.deleting.contains(&u))
                .filter(|&(&u, _)| {
                    !self.blocks.contains(&(viewer, u)) && !self.blocks.contains(&(u, viewer))
                })
                .filter(|&(&u, _)| match self.invisible.get(&u) {
                    None | Some(Invisible::Off) => true,
                    Some(Invisible::Strangers) => self.friends.contains(&(viewer, u)),
                    Some(Invisible::Everyone) => false,
                })
                .map(|(&u, &(cell, _))| (policy::distance_m(centre, cell), u))
                .filter(|&(d, _)| d <= f64::from(radius))
                .collect();
            found.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            found
                .into_iter()
                .take(count)
                .map(|(d, u)| (u, policy::shown_distance(d)))
                .collect()
        }
    }

    /// The cell `north` and `east` steps of about 150 m from a corner of
    /// Shanghai.
    fn town(north: u32, east: u32) -> Cell {
        snap(
            31.2 + f64::from(north) * 0.00135,
            121.4 + f64::from(east) * 0.00158,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Over random shares, clears, blocks, friendships, invisible modes
        /// and waits, every search answers exactly what the model does:
        /// nobody expired, blocked either way, invisible to the viewer or
        /// out of range, and the nearest of the rest.
        #[test]
        fn nearby_never_shows_what_a_rule_forbids(steps in proptest::collection::vec(step(), 1..120)) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            runtime.block_on(async {
                let index = LocalNearbyIndex::new();
                // Caps high enough that the walk is about who is seen; the
                // caps have tests of their own.
                let limits = NearbyLimits { moves_per_hour: 1_000, queries_per_minute: 1_000, ..NearbyLimits::default() };
                let mut model = Model::default();
                let mut now = NOW;
                for step in steps {
                    match step {
                        Step::Share(u, n, e) => {
                            let cell = town(n, e);
                            let standing = index.share(UserId(u), cell, now, limits).await.unwrap();
                            // A share next to the live cell keeps it.
                            let kept = match model.shared.get(&u) {
                                Some(&(live, expires))
                                    if expires > now && policy::distance_m(live, cell) <= 150.0 => live,
                                _ => cell,
                            };
                            model.shared.insert(u, (kept, now + limits.ttl_ms));
                            prop_assert_eq!(standing.live_cell(now), Some(kept));
                            prop_assert_eq!(standing.expires_ms, now + limits.ttl_ms);
                        }
                        Step::Clear(u) => {
                            index.clear(UserId(u), now).await.unwrap();
                            model.shared.remove(&u);
                        }
                        Step::Block(a, b) => {
                            model.blocks.insert((a, b));
                        }
                        Step::Unblock(a, b) => {
                            model.blocks.remove(&(a, b));
                        }
                        Step::Friends(a, b, true) => {
                            model.friends.insert((a, b));
                            model.friends.insert((b, a));
                        }
                        Step::Friends(a, b, false) => {
                            model.friends.remove(&(a, b));
                            model.friends.remove(&(b, a));
                        }
                        Step::Invisible(u, level) => {
                            model.invisible.insert(u, level);
                        }
                        Step::Deleting(u) => {
                            model.deleting.insert(u);
                        }
                        Step::Restored(u) => {
                            model.deleting.remove(&u);
                        }
                        Step::Wait(ms) => now += ms,
                        Step::Search(viewer, radius, count) => {
                            let expected = model.search(viewer, radius, count, now);
                            let centre = match index.begin_query(UserId(viewer), now, limits).await {
                                Ok(standing) => standing.live_cell(now).unwrap(),
                                Err(NearbyError::NotShared) => {
                                    prop_assert!(expected.is_empty());
                                    continue;
                                }
                                Err(e) => panic!("{e:?}"),
                            };
                            let (blocks, deleting) = (&model.blocks, &model.deleting);
                            let (friends, invisible) = (&model.friends, &model.invisible);
                            let facts = |others: Vec<UserId>| async move {
                                Ok::<_, NearbyError>(
                                    others
                                        .into_iter()
                                        .map(|o| {
                                            let relation = crate::model::Relation {
                                                blocks: blocks.contains(&(viewer, o.0)),
                                                blocked_by: blocks.contains(&(o.0, viewer)),
                                                friends: friends.contains(&(viewer, o.0)),
                                                ..Default::default()
                                            };
                                            let takes_part = !deleting.contains(&o.0);
                                            let invisible = invisible.get(&o.0).copied();
                                            (o, NearbyFacts { relation, takes_part, invisible })
                                        })
                                        .collect::<HashMap<_, _>>(),
                                )
                            };
                            let hits = nearest_visible(&index, UserId(viewer), centre, radius, count, now, facts)
                                .await
                                .unwrap();
                            let answered: Vec<(u64, u32)> = hits
                                .iter()
                                .map(|h| (h.user.0, policy::shown_distance(h.distance_m)))
                                .collect();
                            prop_assert_eq!(answered, expected);
                        }
                    }
                }
                Ok(())
            })?;
        }
    }
}
