//! The behaviour every [`NearbyIndex`] must show, through the trait alone,
//! and the social store's answer to people nearby's one read
//! ([`SocialStore::nearby_relations`]).
//!
//! - [`nearby_index`]: shares, searches, expiry, clearing, and both caps.
//! - [`concurrent_moves`]: racing moves by one user pass the cap no further
//!   than one at a time would.
//! - [`nearby_matches_the_model`]: random shares, clears, blocks, waits and
//!   searches by random people, against a model with the rules written
//!   again.
//! - [`nearby_facts`]: blocks both ways, friends, and whose accounts take
//!   part, in one read.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use crate::NearbyError;
use crate::model::{Cell, NearbyFacts, Relation, UserId, UserRecord};
use crate::nearby::nearest_visible;
use crate::policy::nearby::{
    self, MOVE_WINDOW_MS, NearbyLimits, QUERY_WINDOW_MS, distance_m, shown_distance, snap,
};
use crate::store::{AccountStore, NearbyIndex, SocialStore};

const NOW: i64 = 1_800_000_000_000;

/// The cell `north` and `east` steps of about 150 m from a corner of a
/// town (Chengdu).
fn town(north: u32, east: u32) -> Cell {
    snap(
        30.6 + f64::from(north) * 0.00135,
        104.0 + f64::from(east) * 0.00156,
    )
}

fn users(hits: &[crate::model::Hit]) -> Vec<u64> {
    hits.iter().map(|h| h.user.0).collect()
}

/// Shares, searches, expiry, clearing and the caps, on a fresh index.
pub async fn nearby_index(index: &dyn NearbyIndex) {
    let limits = NearbyLimits {
        ttl_ms: 1_800_000,
        moves_per_hour: 3,
        queries_per_minute: 2,
    };
    let (ann, bo, cy, di) = (UserId(1), UserId(2), UserId(3), UserId(4));
    let here = town(0, 0);
    assert!(matches!(
        index.begin_query(ann, NOW, limits).await,
        Err(NearbyError::NotShared)
    ));

    // Found from the cell's centre, nearest first, then by id.
    let shared = index.share(ann, here, NOW, limits).await.unwrap();
    assert_eq!(shared.live_cell(NOW), Some(here));
    assert_eq!(shared.expires_ms, NOW + limits.ttl_ms);
    index.share(bo, town(2, 0), NOW, limits).await.unwrap();
    index.share(cy, town(0, 4), NOW, limits).await.unwrap();
    index.share(di, here, NOW, limits).await.unwrap();
    let hits = index.search(here, 1_000, 10, NOW).await.unwrap();
    assert_eq!(users(&hits), vec![1, 4, 2, 3]);
    assert_eq!(hits[0].cell, here);
    assert_eq!(hits[0].distance_m, 0.0);
    assert!((hits[2].distance_m - distance_m(here, town(2, 0))).abs() < 1e-6);
    assert_eq!(
        users(&index.search(here, 1_000, 2, NOW).await.unwrap()),
        vec![1, 4]
    );
    assert!(index.search(here, 1_000, 0, NOW).await.unwrap().is_empty());
    // The radius is measured between centres, inclusively.
    let to_bo = distance_m(here, town(2, 0));
    let inside = index
        .search(here, to_bo.ceil() as u32, 10, NOW)
        .await
        .unwrap();
    assert_eq!(users(&inside), vec![1, 4, 2]);
    let outside = to_bo.ceil() as u32 - 1;
    assert_eq!(
        users(&index.search(here, outside, 10, NOW).await.unwrap()),
        vec![1, 4]
    );
    // Far away, nobody.
    assert!(
        index
            .search(town(500, 500), 5_000, 10, NOW)
            .await
            .unwrap()
            .is_empty()
    );

    // Sharing the same cell again extends, and is not a move.
    let later = NOW + 600_000;
    let again = index.share(ann, here, later, limits).await.unwrap();
    assert_eq!(again.moves, vec![NOW]);
    assert_eq!(again.expires_ms, later + limits.ttl_ms);
    // Two more moves fill the hour's three; the fourth is refused and changes nothing.
    index.share(ann, town(2, 2), later, limits).await.unwrap();
    index.share(ann, here, later + 1, limits).await.unwrap();
    let refused = index.share(ann, town(3, 3), later + 2, limits).await;
    assert!(
        matches!(refused, Err(NearbyError::TooManyMoves { retry_after_ms }) if retry_after_ms == (NOW + MOVE_WINDOW_MS - later - 2) as u64),
        "{refused:?}"
    );
    let hits = index.search(town(3, 3), 100, 10, later + 2).await.unwrap();
    assert!(users(&hits).is_empty());
    assert_eq!(
        users(&index.search(here, 0, 10, later + 2).await.unwrap()),
        vec![1, 4]
    );

    // Queries: two a minute, each counted, centred on the live cell.
    let standing = index.begin_query(ann, later + 3, limits).await.unwrap();
    assert_eq!(standing.live_cell(later + 3), Some(here));
    index.begin_query(ann, later + 4, limits).await.unwrap();
    let refused = index.begin_query(ann, later + 5, limits).await;
    assert!(
        matches!(refused, Err(NearbyError::TooManyQueries { retry_after_ms }) if retry_after_ms == QUERY_WINDOW_MS as u64 - 2),
        "{refused:?}"
    );
    index
        .begin_query(ann, later + 3 + QUERY_WINDOW_MS, limits)
        .await
        .unwrap();

    // Expiry: Bo shared at NOW and is gone at NOW + ttl, for searches and for his own queries.
    let expired = NOW + limits.ttl_ms;
    assert_eq!(
        users(&index.search(here, 1_000, 10, expired - 1).await.unwrap()),
        vec![1, 4, 2, 3]
    );
    assert_eq!(
        users(&index.search(here, 1_000, 10, expired).await.unwrap()),
        vec![1]
    );
    assert!(matches!(
        index.begin_query(bo, expired, limits).await,
        Err(NearbyError::NotShared)
    ));
    // Sharing his old cell again after expiry is a move, and finds him again.
    let back = index.share(bo, town(2, 0), expired, limits).await.unwrap();
    assert_eq!(back.moves, vec![NOW, expired]);
    assert_eq!(
        users(&index.search(here, 1_000, 10, expired).await.unwrap()),
        vec![1, 2]
    );

    // Clearing: gone at once; moves still count.
    index.clear(ann, expired).await.unwrap();
    assert_eq!(
        users(&index.search(here, 1_000, 10, expired).await.unwrap()),
        vec![2]
    );
    assert!(matches!(
        index.begin_query(ann, expired, limits).await,
        Err(NearbyError::NotShared)
    ));
    assert!(matches!(
        index.share(ann, here, expired, limits).await,
        Err(NearbyError::TooManyMoves { .. })
    ));
    // An hour after the moves, Ann may share again; clearing twice is no change.
    index.clear(cy, expired).await.unwrap();
    index.clear(cy, expired).await.unwrap();
    let fresh = NOW + MOVE_WINDOW_MS + 1;
    index.share(ann, here, fresh, limits).await.unwrap();
    assert_eq!(
        users(&index.search(here, 1_000, 10, fresh).await.unwrap()),
        vec![1]
    );
}

/// Eight moves by one user racing each other: exactly the cap's three pass,
/// and the user is found at one of the admitted cells.
pub async fn concurrent_moves(index: &dyn NearbyIndex) {
    let limits = NearbyLimits {
        moves_per_hour: 3,
        ..NearbyLimits::default()
    };
    let user = UserId(77);
    // 300 m apart: no share keeps another's cell.
    let share = |i: u32| index.share(user, town(2 * i, 0), NOW, limits);
    let all = tokio::join!(
        share(0),
        share(1),
        share(2),
        share(3),
        share(4),
        share(5),
        share(6),
        share(7)
    );
    let outcomes = [all.0, all.1, all.2, all.3, all.4, all.5, all.6, all.7];
    let admitted: Vec<Cell> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok().and_then(|s| s.live_cell(NOW)))
        .collect();
    assert_eq!(admitted.len(), 3, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| o.is_ok() || matches!(o, Err(NearbyError::TooManyMoves { .. })))
    );
    let found = index.search(town(0, 0), 5_000, 10, NOW).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(users(&found), vec![77]);
    assert!(admitted.contains(&found[0].cell));
}

/// The model of the walk: each user's live share and recent moves and
/// queries, and the blocks, with the rules written again.
#[derive(Default)]
struct NearbyModel {
    shared: BTreeMap<u64, (Cell, i64)>,
    moves: BTreeMap<u64, Vec<i64>>,
    queries: BTreeMap<u64, Vec<i64>>,
    blocks: BTreeSet<(u64, u64)>,
}

impl NearbyModel {
    fn live(&self, user: u64, now: i64) -> Option<Cell> {
        (self.shared.get(&user))
            .filter(|&&(_, expires)| expires > now)
            .map(|&(cell, _)| cell)
    }

    fn recent(times: &[i64], now: i64, window: i64) -> usize {
        times.iter().filter(|&&t| t > now - window).count()
    }

    /// Whether the share is admitted; records it if so. A share within
    /// 150 m (centre to centre) of the live cell keeps the live cell.
    fn share(&mut self, user: u64, cell: Cell, now: i64, limits: NearbyLimits) -> bool {
        let kept = match self.live(user, now) {
            Some(live) if distance_m(live, cell) <= 150.0 => live,
            _ => {
                let moves = self.moves.entry(user).or_default();
                if Self::recent(moves, now, MOVE_WINDOW_MS) >= limits.moves_per_hour as usize {
                    return false;
                }
                moves.push(now);
                cell
            }
        };
        self.shared.insert(user, (kept, now + limits.ttl_ms));
        true
    }

    /// The answer to a search, or None when it is refused.
    fn search(
        &mut self,
        viewer: u64,
        radius: u32,
        count: usize,
        now: i64,
        limits: NearbyLimits,
    ) -> Option<Vec<(u64, u32)>> {
        let centre = self.live(viewer, now)?;
        let queries = self.queries.entry(viewer).or_default();
        if Self::recent(queries, now, QUERY_WINDOW_MS) >= limits.queries_per_minute as usize {
            return None;
        }
        queries.push(now);
        let mut found: Vec<(f64, u64)> = (self.shared.keys())
            .filter(|&&u| u != viewer)
            .filter(|&&u| {
                !self.blocks.contains(&(viewer, u)) && !self.blocks.contains(&(u, viewer))
            })
            .filter_map(|&u| Some((distance_m(centre, self.live(u, now)?), u)))
            .filter(|&(d, _)| d <= f64::from(radius))
            .collect();
        found.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        Some(
            (found.into_iter().take(count))
                .map(|(d, u)| (u, shown_distance(d)))
                .collect(),
        )
    }
}

/// A random walk of 600 steps over ten people in a small town: shares,
/// clears, blocks, unblocks, waits and searches. Every share and search is
/// admitted or refused as the model says, and every search answers exactly
/// the model's people and shown distances, nearest first.
pub async fn nearby_matches_the_model(index: &dyn NearbyIndex, seed: u64) {
    let limits = NearbyLimits {
        ttl_ms: 1_800_000,
        moves_per_hour: 4,
        queries_per_minute: 3,
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = NearbyModel::default();
    let mut now = NOW;
    for step in 0..600 {
        let (a, b) = (rng.random_range(1..=10u64), rng.random_range(1..=10u64));
        match rng.random_range(0..12) {
            0..=3 => {
                let cell = town(rng.random_range(0..10), rng.random_range(0..10));
                let got = index.share(UserId(a), cell, now, limits).await;
                let expected = model.share(a, cell, now, limits);
                assert_eq!(got.is_ok(), expected, "step {step}: share by {a}: {got:?}");
                if let Err(e) = got {
                    assert!(matches!(e, NearbyError::TooManyMoves { .. }), "{e:?}");
                }
            }
            4 => {
                index.clear(UserId(a), now).await.unwrap();
                model.shared.remove(&a);
            }
            5 => {
                model.blocks.insert((a, b));
            }
            6 => {
                model.blocks.remove(&(a, b));
            }
            7 | 8 => now += rng.random_range(0..600_000),
            _ => {
                let radius = [150, 400, 1_000, 3_000][rng.random_range(0..4)];
                let count = rng.random_range(1..8);
                let expected = model.search(a, radius, count, now, limits);
                let got = index.begin_query(UserId(a), now, limits).await;
                let Ok(standing) = got else {
                    assert!(
                        expected.is_none(),
                        "step {step}: {got:?}, the model answers"
                    );
                    continue;
                };
                let expected = expected.unwrap_or_else(|| panic!("step {step}: admitted"));
                let centre = standing.live_cell(now).unwrap();
                let blocks = &model.blocks;
                let facts = |others: Vec<UserId>| async move {
                    Ok::<HashMap<UserId, NearbyFacts>, NearbyError>(
                        others
                            .into_iter()
                            .map(|o| {
                                let relation = Relation {
                                    blocks: blocks.contains(&(a, o.0)),
                                    blocked_by: blocks.contains(&(o.0, a)),
                                    ..Relation::default()
                                };
                                let takes_part = true;
                                (
                                    o,
                                    NearbyFacts {
                                        relation,
                                        takes_part,
                                        invisible: None,
                                    },
                                )
                            })
                            .collect(),
                    )
                };
                let hits = nearest_visible(index, UserId(a), centre, radius, count, now, facts)
                    .await
                    .unwrap();
                let answered: Vec<(u64, u32)> = hits
                    .iter()
                    .map(|h| (h.user.0, nearby::shown_distance(h.distance_m)))
                    .collect();
                assert_eq!(answered, expected, "step {step}: search by {a}");
            }
        }
    }
}

fn user(id: u64) -> UserRecord {
    UserRecord {
        id: UserId(id),
        phone: format!("+1555100{id:04}"),
        display_name: format!("U{id}"),
        password_hash: "$argon2id$x".into(),
        created_at_ms: 1,
    }
}

/// What people nearby asks of candidates, in one read: blocks both ways,
/// friends, and whether each account takes part; answered for every
/// candidate that exists, and for nobody else.
pub async fn nearby_facts(store: &(impl AccountStore + SocialStore)) {
    for id in 1..=6 {
        assert!(
            store
                .create_user(user(id), format!("{id:064x}"))
                .await
                .unwrap()
        );
    }
    let (me, a, b, c, d, e) = (
        UserId(1),
        UserId(2),
        UserId(3),
        UserId(4),
        UserId(5),
        UserId(6),
    );
    store.block(me, a, 1).await.unwrap();
    store.block(b, me, 1).await.unwrap();
    store.block(c, d, 1).await.unwrap();
    let limits = crate::policy::SocialLimits::default();
    let sent = crate::model::FriendRequest {
        from: d,
        to: me,
        greeting: String::new(),
        sent_ms: 1,
    };
    store.send_request(sent, limits).await.unwrap();
    store.accept(me, d, 2, limits).await.unwrap();
    // E asks for their account's deletion: they no longer take part.
    store.request_deletion(e, 10, 1_000_000).await.unwrap();
    let facts = store
        .nearby_facts(me, vec![a, b, c, d, e, UserId(99)])
        .await
        .unwrap();
    let taking_part = |relation| NearbyFacts {
        relation,
        takes_part: true,
        invisible: None,
    };
    let expected: HashMap<UserId, NearbyFacts> = [
        (
            a,
            taking_part(Relation {
                blocks: true,
                ..Relation::default()
            }),
        ),
        (
            b,
            taking_part(Relation {
                blocked_by: true,
                ..Relation::default()
            }),
        ),
        (c, taking_part(Relation::default())),
        (
            d,
            taking_part(Relation {
                friends: true,
                ..Relation::default()
            }),
        ),
        (e, NearbyFacts::default()),
    ]
    .into_iter()
    .collect();
    assert_eq!(facts, expected);
    assert!(store.nearby_facts(me, Vec::new()).await.unwrap().is_empty());
    // Withdrawn, the deletion leaves E taking part again.
    store.cancel_deletion(e, 20).await.unwrap();
    let facts = store.nearby_facts(me, vec![e]).await.unwrap();
    assert!(facts[&e].takes_part);
}
