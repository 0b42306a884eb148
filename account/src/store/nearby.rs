//! [`LocalNearbyIndex`]: people nearby in this process's memory, for the
//! one-process tier. Live cells sit in buckets of 0.05° by 0.05° (about
//! 5.5 km north to south), so a search reads only the buckets its circle
//! can reach, and it searches in growing rings ([`rings`]), so where people
//! are many it reads a small circle only. Two queues ordered by time say
//! when a position expires and when a standing may be forgotten; every call
//! first takes off what is due from their fronts, so nothing is ever found
//! expired and nothing scans everything.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use superapp_kit::BoxFuture;

use super::{NearbyIndex, StoreError};
use crate::NearbyError;
use crate::model::{Cell, Hit, NearbyStanding, UserId};
use crate::policy::nearby::{self, EARTH_RADIUS_M, NearbyLimits};

/// A bucket's side, in degrees of latitude and of longitude.
const BUCKET_DEG: f64 = 0.05;
const BUCKET_COLS: i64 = (360.0 / BUCKET_DEG) as i64;

/// A bucket: its row from the South Pole, its column from the antimeridian.
type Bucket = (i64, i64);

fn bucket_row(lat: f64) -> i64 {
    ((lat + 90.0) / BUCKET_DEG).floor() as i64
}

fn bucket_col(lon: f64) -> i64 {
    (((lon + 180.0) / BUCKET_DEG).floor() as i64).rem_euclid(BUCKET_COLS)
}

/// One live position: the cell, and its centre, computed once.
#[derive(Debug, Clone, Copy)]
struct Entry {
    cell: Cell,
    at: (f64, f64),
}

#[derive(Default)]
struct Grid {
    standings: HashMap<UserId, NearbyStanding>,
    /// (when the standing may be forgotten, whose), soonest first.
    forget: BTreeSet<(i64, UserId)>,
    buckets: HashMap<Bucket, HashMap<UserId, Entry>>,
    /// (when the position expires, whose) of every user in `buckets`.
    expiry: BTreeSet<(i64, UserId)>,
}

impl Grid {
    /// Takes off the positions and standings that are due by `now_ms`.
    fn sweep(&mut self, now_ms: i64) {
        while let Some(&(at, user)) = self.expiry.first() {
            if at > now_ms {
                break;
            }
            self.expiry.pop_first();
            self.unplace(user);
        }
        while let Some(&(at, user)) = self.forget.first() {
            if at > now_ms {
                break;
            }
            self.forget.pop_first();
            self.standings.remove(&user);
        }
    }

    /// Takes `user` out of the bucket of their standing's cell.
    fn unplace(&mut self, user: UserId) {
        let Some(cell) = self.standings.get(&user).and_then(|s| s.cell) else {
            return;
        };
        let at = nearby::centre(cell);
        let bucket = (bucket_row(at.0), bucket_col(at.1));
        if let Some(users) = self.buckets.get_mut(&bucket) {
            users.remove(&user);
            if users.is_empty() {
                self.buckets.remove(&bucket);
            }
        }
    }

    fn standing(&self, user: UserId) -> NearbyStanding {
        self.standings.get(&user).cloned().unwrap_or_default()
    }

    /// Replaces `user`'s standing with `next`, and their position with its
    /// live cell, if any.
    fn put(&mut self, user: UserId, next: NearbyStanding, now_ms: i64) {
        if let Some(old) = self.standings.get(&user) {
            self.expiry.remove(&(old.expires_ms, user));
            self.forget.remove(&(nearby::forget_at(old), user));
        }
        self.unplace(user);
        if let Some(cell) = next.live_cell(now_ms) {
            let at = nearby::centre(cell);
            self.buckets
                .entry((bucket_row(at.0), bucket_col(at.1)))
                .or_default()
                .insert(user, Entry { cell, at });
            self.expiry.insert((next.expires_ms, user));
        }
        let forget = nearby::forget_at(&next);
        if forget > now_ms {
            self.forget.insert((forget, user));
            self.standings.insert(user, next);
        } else {
            self.standings.remove(&user);
        }
    }

    /// The buckets a circle of `radius_m` around `at` can reach.
    fn reach(at: (f64, f64), radius_m: u32) -> Vec<Bucket> {
        // Angular radius, with a hair of slack for rounding.
        let theta = f64::from(radius_m) / EARTH_RADIUS_M + 1e-9;
        let dlat = theta.to_degrees();
        let rows = bucket_row((at.0 - dlat).max(-90.0))..=bucket_row((at.0 + dlat).min(90.0));
        // A cap of angular radius theta around latitude phi spans at most
        // asin(sin theta / cos phi) of longitude either way, unless it holds
        // a pole.
        let cos_lat = at.0.to_radians().cos();
        let dlon = if theta.sin() >= cos_lat || at.0.abs() + dlat >= 90.0 {
            180.0
        } else {
            (theta.sin() / cos_lat).asin().to_degrees()
        };
        let (first, last) = (
            ((at.1 - dlon + 180.0) / BUCKET_DEG).floor() as i64,
            ((at.1 + dlon + 180.0) / BUCKET_DEG).floor() as i64,
        );
        let cols: Vec<i64> = if last - first + 1 >= BUCKET_COLS {
            (0..BUCKET_COLS).collect()
        } else {
            (first..=last).map(|c| c.rem_euclid(BUCKET_COLS)).collect()
        };
        rows.flat_map(|row| cols.iter().map(move |&col| (row, col)))
            .collect()
    }

    fn search(&self, centre: Cell, radius_m: u32, count: usize) -> Vec<Hit> {
        let at = nearby::centre(centre);
        let limit = f64::from(radius_m);
        let mut hits: Vec<Hit> = Self::reach(at, radius_m)
            .into_iter()
            .filter_map(|bucket| self.buckets.get(&bucket))
            .flat_map(|users| users.iter())
            .filter_map(|(&user, entry)| {
                let distance_m = nearby::distance_between(at, entry.at);
                (distance_m <= limit).then_some(Hit {
                    user,
                    cell: entry.cell,
                    distance_m,
                })
            })
            .collect();
        nearest_first(&mut hits, count);
        hits
    }
}

/// The radii a search of `radius_m` tries in turn, each four times the last,
/// ending at `radius_m`: when the circle of one already holds `count`
/// people, they are the nearest `count` of the whole radius, since everyone
/// outside it is farther than everyone inside. Where people are many, a
/// search reads a small circle; where they are few, the rounds are cheap.
pub(crate) fn rings(radius_m: u32) -> impl Iterator<Item = u32> {
    [500, 2_000, 8_000]
        .into_iter()
        .filter(move |&r| r < radius_m)
        .chain(std::iter::once(radius_m))
}

/// Keeps the `count` nearest of `hits`, ordered by distance, then user id.
pub(crate) fn nearest_first(hits: &mut Vec<Hit>, count: usize) {
    let order = |a: &Hit, b: &Hit| {
        a.distance_m
            .total_cmp(&b.distance_m)
            .then(a.user.cmp(&b.user))
    };
    if hits.len() > count {
        if count == 0 {
            hits.clear();
            return;
        }
        hits.select_nth_unstable_by(count - 1, order);
        hits.truncate(count);
    }
    hits.sort_unstable_by(order);
}

/// People nearby in this process's memory.
#[derive(Default)]
pub struct LocalNearbyIndex {
    grid: Mutex<Grid>,
}

impl LocalNearbyIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// The grid, swept of what is due by `now_ms`.
    fn grid(&self, now_ms: i64) -> MutexGuard<'_, Grid> {
        let mut grid = self.grid.lock().unwrap_or_else(|p| p.into_inner());
        grid.sweep(now_ms);
        grid
    }

    /// Standings held: users with a live position or a recent move or query.
    pub fn standings(&self, now_ms: i64) -> usize {
        self.grid(now_ms).standings.len()
    }
}

impl NearbyIndex for LocalNearbyIndex {
    fn share(
        &self,
        user: UserId,
        cell: Cell,
        now_ms: i64,
        limits: NearbyLimits,
    ) -> BoxFuture<'_, Result<NearbyStanding, NearbyError>> {
        let shared = {
            let mut grid = self.grid(now_ms);
            nearby::share(&grid.standing(user), cell, now_ms, limits).inspect(|next| {
                grid.put(user, next.clone(), now_ms);
            })
        };
        Box::pin(async move { shared })
    }

    fn begin_query(
        &self,
        user: UserId,
        now_ms: i64,
        limits: NearbyLimits,
    ) -> BoxFuture<'_, Result<NearbyStanding, NearbyError>> {
        let counted = {
            let mut grid = self.grid(now_ms);
            nearby::query(&grid.standing(user), now_ms, limits).map(|(_, next)| {
                grid.put(user, next.clone(), now_ms);
                next
            })
        };
        Box::pin(async move { counted })
    }

    fn clear(&self, user: UserId, now_ms: i64) -> BoxFuture<'_, Result<(), NearbyError>> {
        {
            let mut grid = self.grid(now_ms);
            let next = nearby::clear(&grid.standing(user), now_ms);
            grid.put(user, next, now_ms);
        }
        Box::pin(async { Ok(()) })
    }

    fn search(
        &self,
        centre: Cell,
        radius_m: u32,
        count: usize,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<Hit>, StoreError>> {
        let grid = self.grid(now_ms);
        let mut hits = Vec::new();
        for ring in rings(radius_m) {
            hits = grid.search(centre, ring, count);
            if hits.len() >= count {
                break;
            }
        }
        drop(grid);
        Box::pin(async move { Ok(hits) })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::policy::nearby::snap;

    const NOW: i64 = 1_800_000_000_000;

    #[tokio::test]
    async fn a_search_near_the_antimeridian_finds_people_on_both_sides() {
        let index = LocalNearbyIndex::new();
        let limits = NearbyLimits::default();
        let west = snap(10.0, 179.99);
        let east = snap(10.0, -179.99);
        index.share(UserId(1), west, NOW, limits).await.unwrap();
        index.share(UserId(2), east, NOW, limits).await.unwrap();
        let hits = index.search(west, 5_000, 10, NOW).await.unwrap();
        let users: Vec<u64> = hits.iter().map(|h| h.user.0).collect();
        assert_eq!(users, vec![1, 2]);
        assert!((2_000.0..2_300.0).contains(&hits[1].distance_m));
    }

    #[tokio::test]
    async fn a_search_at_the_edge_of_the_covered_latitudes_reaches_every_bucket_it_must() {
        let index = LocalNearbyIndex::new();
        let limits = NearbyLimits::default();
        let here = snap(84.99, 0.0);
        // 19 km away along the parallel: several degrees of longitude.
        let far = snap(84.99, 1.95);
        index.share(UserId(1), here, NOW, limits).await.unwrap();
        index.share(UserId(2), far, NOW, limits).await.unwrap();
        let hits = index.search(here, 20_000, 10, NOW).await.unwrap();
        assert_eq!(hits.len(), 2, "{hits:?}");
    }

    #[tokio::test]
    async fn expired_positions_and_stale_standings_leave_without_a_scan() {
        let index = LocalNearbyIndex::new();
        let limits = NearbyLimits::default();
        let here = snap(31.23, 121.47);
        for user in 1..=100 {
            index.share(UserId(user), here, NOW, limits).await.unwrap();
        }
        assert_eq!(index.search(here, 100, 500, NOW).await.unwrap().len(), 100);
        let expired = NOW + limits.ttl_ms;
        assert!(
            index
                .search(here, 100, 500, expired)
                .await
                .unwrap()
                .is_empty()
        );
        {
            let grid = index.grid(expired);
            assert!(grid.buckets.is_empty() && grid.expiry.is_empty());
        }
        // Their moves still count for an hour; then nothing is left.
        assert_eq!(index.standings(expired), 100);
        assert_eq!(index.standings(NOW + nearby::MOVE_WINDOW_MS), 0);
    }

    #[tokio::test]
    async fn the_local_index_meets_the_nearby_contract() {
        crate::conformance::nearby::nearby_index(&LocalNearbyIndex::new()).await;
    }

    #[tokio::test]
    async fn racing_moves_on_the_local_index_pass_the_cap_no_further() {
        crate::conformance::nearby::concurrent_moves(&LocalNearbyIndex::new()).await;
    }

    #[tokio::test]
    async fn the_local_index_answers_as_the_model_over_a_random_walk() {
        for seed in [1, 2, 3] {
            crate::conformance::nearby::nearby_matches_the_model(&LocalNearbyIndex::new(), seed)
                .await;
        }
    }
}
