//! People nearby's rules as pure functions: what a shared position must be,
//! the grid every position is snapped to before anything keeps it, the
//! distance between two cells and how it is shown, who a viewer may see,
//! and how often a user may move and look. No I/O. Every index backend
//! calls [`share`], [`query`] and [`clear`] inside the one step that
//! changes a user's [`NearbyStanding`].
//!
//! What an attacker can learn from all this is worked out in
//! docs/architecture.md §20.

use std::f64::consts::PI;

use crate::error::NearbyError;
use crate::model::{Cell, Invisible, NearbyFacts, NearbyStanding, Relation, UserId};

/// A cell's side, in metres: no position finer than this is ever kept.
pub const CELL_M: f64 = 100.0;
/// The Earth's mean radius (IUGG), in metres: distances are great-circle
/// distances on a sphere of it.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;
/// People nearby covers latitudes from -85 to 85 degrees: Redis GEO keeps
/// positions within ±85.05° (the range of a Web Mercator map), and every
/// tier answers alike.
pub const MAX_LATITUDE: f64 = 85.0;
/// Distances up to this are shown rounded up to [`FINE_STEP_M`], farther
/// ones to [`COARSE_STEP_M`].
pub const FINE_UP_TO_M: u32 = 1_000;
pub const FINE_STEP_M: u32 = 100;
pub const COARSE_STEP_M: u32 = 1_000;
/// A share whose cell's centre is this close to the centre of the cell
/// shared live keeps the live cell. Every cell that a reading a few metres
/// across the live cell's edge or corner can fall in is this close (at most
/// 100 m apart along each axis, 141 m across), so a user standing on an
/// edge, whose readings fall on either side, does not flip between two
/// cells (which would tell that they stand on the edge, finer than a cell),
/// nor spend moves doing so.
pub const STAY_WITHIN_M: f64 = 150.0;
/// The window of the cap on moves (an hour) and of the cap on queries (a
/// minute).
pub const MOVE_WINDOW_MS: i64 = 3_600_000;
pub const QUERY_WINDOW_MS: i64 = 60_000;

const METRES_PER_DEGREE: f64 = EARTH_RADIUS_M * PI / 180.0;
/// A row's height in degrees of latitude: [`CELL_M`].
const ROW_DEG: f64 = CELL_M / METRES_PER_DEGREE;

/// How long a shared position lasts and how often a user may move and look:
/// what a backend needs to apply [`share`] and [`query`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NearbyLimits {
    /// A shared position is found this long after it was shared.
    pub ttl_ms: i64,
    /// Moves (shares of a cell other than the one shared live) per user in
    /// any hour.
    pub moves_per_hour: u32,
    /// Queries per user in any minute.
    pub queries_per_minute: u32,
}

impl Default for NearbyLimits {
    fn default() -> Self {
        Self {
            ttl_ms: 30 * 60 * 1000,
            moves_per_hour: 10,
            queries_per_minute: 6,
        }
    }
}

// ---- The grid ------------------------------------------------------------

/// Rows from the South Pole to the North Pole; the last is a little lower.
fn rows() -> u32 {
    (180.0 / ROW_DEG).ceil() as u32
}

fn row_centre(row: u32) -> f64 {
    (-90.0 + (f64::from(row) + 0.5) * ROW_DEG).min(90.0)
}

/// Cells in a row: as many as fit with each at least [`CELL_M`] wide at
/// the row's centre, so cells are about square at every latitude.
fn columns(row: u32) -> u32 {
    let fit = 360.0 * row_centre(row).to_radians().cos() / ROW_DEG;
    (fit.floor() as u32).max(1)
}

/// The cell a position falls in. Longitudes wrap (180 is -180).
pub fn snap(lat: f64, lon: f64) -> Cell {
    let row = (((lat + 90.0) / ROW_DEG).floor() as i64).clamp(0, i64::from(rows()) - 1) as u32;
    let n = columns(row);
    let width = 360.0 / f64::from(n);
    let col = (((lon + 180.0) / width).floor() as i64).rem_euclid(i64::from(n)) as u32;
    Cell { row, col }
}

/// A cell's centre, (latitude, longitude) in degrees: the one position the
/// server keeps for everyone who shares from the cell.
pub fn centre(cell: Cell) -> (f64, f64) {
    let width = 360.0 / f64::from(columns(cell.row));
    let lon = -180.0 + (f64::from(cell.col) + 0.5) * width;
    (row_centre(cell.row), lon)
}

/// The great-circle distance between two positions, in metres (haversine).
pub fn distance_between(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (p1, p2) = (a.0.to_radians(), b.0.to_radians());
    let dp = p2 - p1;
    let dl = (b.1 - a.1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// The distance between two cells' centres, in metres.
pub fn distance_m(a: Cell, b: Cell) -> f64 {
    distance_between(centre(a), centre(b))
}

/// A distance as people see it, "within N metres": rounded up to the next
/// 100 m up to a kilometre (at least 100: "within 100 m"), to the next
/// kilometre beyond.
pub fn shown_distance(distance_m: f64) -> u32 {
    let d = distance_m.max(0.0).ceil() as u32;
    if d <= FINE_UP_TO_M {
        d.div_ceil(FINE_STEP_M).max(1) * FINE_STEP_M
    } else {
        d.div_ceil(COARSE_STEP_M) * COARSE_STEP_M
    }
}

// ---- Input ---------------------------------------------------------------

/// A shared position, checked and snapped: latitude -90 to 90 and longitude
/// -180 to 180, finite (`invalid_latitude`, `invalid_longitude`); latitude
/// within ±[`MAX_LATITUDE`] (`location_not_covered`).
pub fn check_position(lat: f64, lon: f64) -> Result<Cell, NearbyError> {
    if !lat.is_finite() || lat.abs() > 90.0 {
        return Err(NearbyError::InvalidLatitude);
    }
    if !lon.is_finite() || lon.abs() > 180.0 {
        return Err(NearbyError::InvalidLongitude);
    }
    if lat.abs() > MAX_LATITUDE {
        return Err(NearbyError::NotCovered);
    }
    Ok(snap(lat, lon))
}

/// The radius a query searches: `default` when it names none (or 0), at
/// most `max` (`invalid_radius`).
pub fn radius(asked: Option<u32>, default: u32, max: u32) -> Result<u32, NearbyError> {
    match asked {
        None | Some(0) => Ok(default),
        Some(r) if r <= max => Ok(r),
        Some(_) => Err(NearbyError::InvalidRadius { max }),
    }
}

/// How many people a query answers at most: `default` when it names none
/// (or 0), else as asked up to `max`.
pub fn result_count(asked: Option<u32>, default: u32, max: u32) -> u32 {
    match asked {
        None | Some(0) => default,
        Some(n) => n.min(max),
    }
}

// ---- Who sees whom -------------------------------------------------------

/// Whether a viewer's nearby list shows a candidate, as `facts` (read for
/// every candidate in one step) say: never themself, never someone whose
/// account does not take part (its deletion asked for, or done), never
/// someone they block, never someone who blocks them. Blocks are not
/// revealed: a blocked pair is simply not near each other.
///
/// A candidate invisible to the viewer ([`crate::policy::discoverable`]:
/// `strangers` and not friends, or `everyone`) is not shown either.
pub fn may_see_nearby(viewer: UserId, candidate: UserId, facts: NearbyFacts) -> bool {
    let relation = facts.relation;
    // The candidate's view of the viewer, which invisible mode is about.
    let theirs = Relation {
        friends: relation.friends,
        blocks: relation.blocked_by,
        blocked_by: relation.blocks,
        ..Relation::default()
    };
    let invisible = facts.invisible.unwrap_or(Invisible::Off);
    viewer != candidate
        && facts.takes_part
        && !relation.blocks
        && !relation.blocked_by
        && crate::policy::discoverable(theirs, invisible)
}

// ---- Sharing and looking -------------------------------------------------

/// `times` without those older than `window_ms` before `now_ms`.
fn recent(times: &[i64], now_ms: i64, window_ms: i64) -> Vec<i64> {
    times
        .iter()
        .copied()
        .filter(|&t| t > now_ms - window_ms)
        .collect()
}

/// Refuses a step when `times` (oldest first, all within the window)
/// already hold `cap`; answers how long until the oldest leaves it.
fn room_in(times: &[i64], cap: u32, now_ms: i64, window_ms: i64) -> Result<(), u64> {
    if times.len() < cap as usize {
        return Ok(());
    }
    let oldest = times.first().copied().unwrap_or(now_ms);
    Err((oldest + window_ms - now_ms).clamp(1, window_ms) as u64)
}

/// The standing of a user who shares `cell` at `now_ms`: found until
/// `now + ttl`. A share of the cell shared live, or of one within
/// [`STAY_WITHIN_M`] of it, keeps the live cell and only extends it; any
/// other share is a move to `cell`, and a user may move `moves_per_hour`
/// times in any hour (`too_many_location_changes` beyond, which changes
/// nothing). So every new place a user is found at, and searches from, is
/// a counted move.
pub fn share(
    standing: &NearbyStanding,
    cell: Cell,
    now_ms: i64,
    limits: NearbyLimits,
) -> Result<NearbyStanding, NearbyError> {
    let mut moves = recent(&standing.moves, now_ms, MOVE_WINDOW_MS);
    let kept = match standing.live_cell(now_ms) {
        Some(live) if distance_m(live, cell) <= STAY_WITHIN_M => live,
        _ => {
            room_in(&moves, limits.moves_per_hour, now_ms, MOVE_WINDOW_MS)
                .map_err(|retry_after_ms| NearbyError::TooManyMoves { retry_after_ms })?;
            moves.push(now_ms);
            cell
        }
    };
    Ok(NearbyStanding {
        cell: Some(kept),
        expires_ms: now_ms.saturating_add(limits.ttl_ms),
        moves,
        queries: recent(&standing.queries, now_ms, QUERY_WINDOW_MS),
    })
}

/// A query by a user standing as `standing`: centred on the cell they share
/// live (`location_not_shared` without one), at most `queries_per_minute`
/// in any minute (`too_many_nearby_queries` beyond). Answers the centre and
/// the standing with this query counted.
pub fn query(
    standing: &NearbyStanding,
    now_ms: i64,
    limits: NearbyLimits,
) -> Result<(Cell, NearbyStanding), NearbyError> {
    let centre = standing.live_cell(now_ms).ok_or(NearbyError::NotShared)?;
    let mut queries = recent(&standing.queries, now_ms, QUERY_WINDOW_MS);
    room_in(&queries, limits.queries_per_minute, now_ms, QUERY_WINDOW_MS)
        .map_err(|retry_after_ms| NearbyError::TooManyQueries { retry_after_ms })?;
    queries.push(now_ms);
    let next = NearbyStanding {
        queries,
        moves: recent(&standing.moves, now_ms, MOVE_WINDOW_MS),
        ..standing.clone()
    };
    Ok((centre, next))
}

/// The standing of a user who stops sharing: found nowhere; their recent
/// moves and queries still count.
pub fn clear(standing: &NearbyStanding, now_ms: i64) -> NearbyStanding {
    NearbyStanding {
        cell: None,
        expires_ms: 0,
        moves: recent(&standing.moves, now_ms, MOVE_WINDOW_MS),
        queries: recent(&standing.queries, now_ms, QUERY_WINDOW_MS),
    }
}

/// When a standing stops mattering: its position has expired and its
/// moves and queries have left their windows. A backend may forget it then.
pub fn forget_at(standing: &NearbyStanding) -> i64 {
    let moved = standing.moves.last().map_or(0, |t| t + MOVE_WINDOW_MS);
    let looked = standing.queries.last().map_or(0, |t| t + QUERY_WINDOW_MS);
    let shared = if standing.cell.is_some() {
        standing.expires_ms
    } else {
        0
    };
    shared.max(moved).max(looked)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const SHANGHAI: (f64, f64) = (31.2304, 121.4737);

    fn cell_at(p: (f64, f64)) -> Cell {
        snap(p.0, p.1)
    }

    /// A point `north_m` and `east_m` metres from `p` (small offsets).
    fn offset(p: (f64, f64), north_m: f64, east_m: f64) -> (f64, f64) {
        let lat = p.0 + north_m / METRES_PER_DEGREE;
        let lon = p.1 + east_m / (METRES_PER_DEGREE * p.0.to_radians().cos());
        (lat, lon)
    }

    #[test]
    fn a_cell_is_about_a_hundred_metres_square_at_every_latitude() {
        for lat in [0.0, 31.2, 45.0, 60.0, 75.0, 84.9, -33.9] {
            let cell = snap(lat, 10.0);
            let c = centre(cell);
            let height = distance_between(c, (row_centre(cell.row + 1), c.1));
            let east = Cell {
                col: cell.col + 1,
                ..cell
            };
            let width = distance_m(cell, east);
            assert!((99.99..=100.01).contains(&height), "{lat}: height {height}");
            assert!((99.99..=100.01).contains(&width), "{lat}: width {width}");
        }
    }

    #[test]
    fn the_antimeridian_wraps_and_the_poles_are_one_cell_wide_or_more() {
        assert_eq!(snap(10.0, 180.0), snap(10.0, -180.0));
        assert_eq!(snap(10.0, 180.0).col, 0);
        assert!(columns(snap(90.0, 0.0).row) >= 1);
        assert_eq!(snap(-90.0, 0.0).row, 0);
        assert_eq!(snap(90.0, 0.0).row, rows() - 1);
    }

    #[test]
    fn positions_are_checked_before_they_are_snapped() {
        assert!(check_position(SHANGHAI.0, SHANGHAI.1).is_ok());
        assert!(check_position(-85.0, -180.0).is_ok());
        use NearbyError::{InvalidLatitude, InvalidLongitude, NotCovered};
        let refusal = |lat, lon| check_position(lat, lon).unwrap_err();
        for lat in [f64::NAN, f64::INFINITY, 90.5, -91.0] {
            assert!(matches!(refusal(lat, 0.0), InvalidLatitude), "{lat}");
        }
        for lon in [f64::NEG_INFINITY, 180.01, f64::NAN] {
            assert!(matches!(refusal(0.0, lon), InvalidLongitude), "{lon}");
        }
        for lat in [85.01, -90.0] {
            assert!(matches!(refusal(lat, 0.0), NotCovered), "{lat}");
        }
    }

    #[test]
    fn distances_are_shown_rounded_up_never_below_a_hundred_metres() {
        for (d, shown) in [
            (0.0, 100),
            (99.0, 100),
            (100.0, 100),
            (100.2, 200),
            (950.0, 1_000),
            (1_000.0, 1_000),
            (1_000.4, 2_000),
            (4_321.0, 5_000),
            (20_000.0, 20_000),
        ] {
            assert_eq!(shown_distance(d), shown, "{d}");
        }
    }

    #[test]
    fn haversine_agrees_with_a_known_distance() {
        // Shanghai to Beijing, about 1,067 km.
        let d = distance_between(SHANGHAI, (39.9042, 116.4074));
        assert!((1_060_000.0..1_075_000.0).contains(&d), "{d}");
        assert_eq!(distance_between(SHANGHAI, SHANGHAI), 0.0);
    }

    #[test]
    fn a_radius_has_a_default_and_a_maximum_and_a_count_is_capped() {
        assert_eq!(radius(None, 5_000, 20_000).unwrap(), 5_000);
        assert_eq!(radius(Some(0), 5_000, 20_000).unwrap(), 5_000);
        assert_eq!(radius(Some(300), 5_000, 20_000).unwrap(), 300);
        assert!(matches!(
            radius(Some(20_001), 5_000, 20_000),
            Err(NearbyError::InvalidRadius { max: 20_000 })
        ));
        assert_eq!(result_count(None, 20, 50), 20);
        assert_eq!(result_count(Some(500), 20, 50), 50);
        assert_eq!(result_count(Some(3), 20, 50), 3);
    }

    #[test]
    fn someone_invisible_is_seen_nearby_by_friends_only_or_by_nobody() {
        let (a, b) = (UserId(1), UserId(2));
        let facts = |friends, invisible| NearbyFacts {
            relation: Relation {
                friends,
                ..Relation::default()
            },
            takes_part: true,
            invisible: Some(invisible),
        };
        assert!(may_see_nearby(a, b, facts(false, Invisible::Off)));
        assert!(!may_see_nearby(a, b, facts(false, Invisible::Strangers)));
        assert!(may_see_nearby(a, b, facts(true, Invisible::Strangers)));
        assert!(!may_see_nearby(a, b, facts(true, Invisible::Everyone)));
    }

    #[test]
    fn nobody_sees_themself_anyone_blocked_either_way_or_a_deleted_account() {
        use crate::model::Relation;
        let (a, b) = (UserId(1), UserId(2));
        let taking_part = |relation| NearbyFacts {
            relation,
            takes_part: true,
            invisible: None,
        };
        assert!(may_see_nearby(a, b, taking_part(Relation::default())));
        let friends = Relation {
            friends: true,
            ..Relation::default()
        };
        assert!(may_see_nearby(a, b, taking_part(friends)));
        assert!(!may_see_nearby(a, a, taking_part(Relation::default())));
        for relation in [
            Relation {
                blocks: true,
                ..Relation::default()
            },
            Relation {
                blocked_by: true,
                ..Relation::default()
            },
        ] {
            assert!(!may_see_nearby(a, b, taking_part(relation)));
        }
        // A deleting or deleted account, or one the store does not know.
        assert!(!may_see_nearby(a, b, NearbyFacts::default()));
        assert!(!may_see_nearby(
            a,
            b,
            NearbyFacts {
                relation: friends,
                takes_part: false,
                invisible: None,
            }
        ));
    }

    #[test]
    fn staying_in_the_cell_is_free_and_moving_is_capped_per_hour() {
        let limits = NearbyLimits {
            moves_per_hour: 2,
            ..NearbyLimits::default()
        };
        let here = cell_at(SHANGHAI);
        let there = cell_at(offset(SHANGHAI, 500.0, 0.0));
        let first = share(&NearbyStanding::default(), here, NOW, limits).unwrap();
        assert_eq!(first.moves, vec![NOW]);
        assert_eq!(first.expires_ms, NOW + limits.ttl_ms);
        // Again from the same cell: extended, not counted.
        let again = share(&first, here, NOW + 60_000, limits).unwrap();
        assert_eq!(again.moves, vec![NOW]);
        assert_eq!(again.expires_ms, NOW + 60_000 + limits.ttl_ms);
        let moved = share(&again, there, NOW + 120_000, limits).unwrap();
        assert_eq!(moved.moves, vec![NOW, NOW + 120_000]);
        let refused = share(&moved, here, NOW + 180_000, limits).unwrap_err();
        assert!(
            matches!(refused, NearbyError::TooManyMoves { retry_after_ms } if retry_after_ms == 3_600_000 - 180_000)
        );
        // The first move leaves the window an hour after it was made.
        assert!(share(&moved, here, NOW + 3_600_001, limits).is_ok());
        // Once expired, even the same cell counts as a move.
        let expired = NOW + 120_000 + limits.ttl_ms;
        assert!(share(&moved, there, expired, limits).is_err());
    }

    #[test]
    fn a_share_next_to_the_live_cell_keeps_it_and_is_not_a_move() {
        let limits = NearbyLimits::default();
        let here = cell_at(SHANGHAI);
        let first = share(&NearbyStanding::default(), here, NOW, limits).unwrap();
        let c = centre(here);
        // A reading just across any edge or corner keeps `here`.
        for (north, east) in [
            (1, 0),
            (-1, 0),
            (0, 1),
            (0, -1),
            (1, 1),
            (1, -1),
            (-1, 1),
            (-1, -1),
        ] {
            let next = cell_at(offset(c, 55.0 * f64::from(north), 55.0 * f64::from(east)));
            assert_ne!(next, here);
            let kept = share(&first, next, NOW + 1, limits).unwrap();
            assert_eq!(
                (kept.cell, kept.moves.len()),
                (Some(here), 1),
                "{north} {east}"
            );
            assert_eq!(kept.expires_ms, NOW + 1 + limits.ttl_ms);
        }
        // Two cells away is a move.
        let away = cell_at(offset(c, 200.0, 0.0));
        let moved = share(&first, away, NOW + 1, limits).unwrap();
        assert_eq!((moved.cell, moved.moves.len()), (Some(away), 2));
    }

    #[test]
    fn a_query_needs_a_live_position_and_is_capped_per_minute() {
        let limits = NearbyLimits {
            queries_per_minute: 2,
            ..NearbyLimits::default()
        };
        let here = cell_at(SHANGHAI);
        assert!(matches!(
            query(&NearbyStanding::default(), NOW, limits),
            Err(NearbyError::NotShared)
        ));
        let shared = share(&NearbyStanding::default(), here, NOW, limits).unwrap();
        let (centre, once) = query(&shared, NOW, limits).unwrap();
        assert_eq!(centre, here);
        let (_, twice) = query(&once, NOW + 1, limits).unwrap();
        let refused = query(&twice, NOW + 2, limits).unwrap_err();
        assert!(
            matches!(refused, NearbyError::TooManyQueries { retry_after_ms } if retry_after_ms == 59_998)
        );
        assert!(query(&twice, NOW + 60_001, limits).is_ok());
        let gone = share(&NearbyStanding::default(), here, NOW, limits).unwrap();
        assert!(matches!(
            query(&gone, NOW + limits.ttl_ms, limits),
            Err(NearbyError::NotShared)
        ));
        let cleared = clear(&shared, NOW + 5);
        assert_eq!(cleared.live_cell(NOW + 5), None);
        assert_eq!(cleared.moves, shared.moves);
        assert_eq!(forget_at(&cleared), NOW + MOVE_WINDOW_MS);
    }

    proptest! {
        /// Every point is within a cell's half-diagonal (plus the width's
        /// slack) of its cell's centre, and a centre snaps to its own cell.
        #[test]
        fn a_position_is_kept_as_its_cell_s_centre_never_far_from_it(
            lat in -85.0f64..85.0,
            lon in -180.0f64..180.0,
        ) {
            let cell = snap(lat, lon);
            let c = centre(cell);
            prop_assert_eq!(snap(c.0, c.1), cell);
            let off = distance_between((lat, lon), c);
            prop_assert!(off <= 75.0, "{} m off", off);
        }

        /// Two readings a few metres apart, on whichever sides of whichever
        /// edges, fall in cells that keep each other: jitter never moves.
        #[test]
        fn readings_metres_apart_fall_in_cells_that_keep_each_other(
            lat in -84.9f64..84.9,
            lon in -179.9f64..179.9,
            north in -3.5f64..3.5,
            east in -3.5f64..3.5,
        ) {
            let (a, b) = (snap(lat, lon), cell_at(offset((lat, lon), north, east)));
            prop_assert!(distance_m(a, b) <= STAY_WITHIN_M, "{} m", distance_m(a, b));
        }

        /// The shown distance is never less than the distance, and never
        /// more than a step above it.
        #[test]
        fn a_shown_distance_is_an_upper_bound_within_a_step(d in 0.0f64..30_000.0) {
            let shown = f64::from(shown_distance(d));
            prop_assert!(shown >= d);
            let step = if d <= f64::from(FINE_UP_TO_M) { FINE_STEP_M } else { COARSE_STEP_M };
            prop_assert!(shown < d.max(f64::from(FINE_STEP_M) - 1.0) + f64::from(step) + 1.0);
        }

        /// Over any sequence of shares, at most `moves_per_hour` changes of
        /// cell are admitted in any hour: the reference is a plain count of
        /// the admitted shares that changed the live cell.
        #[test]
        fn moves_admitted_never_pass_the_cap_in_any_hour(
            steps in proptest::collection::vec((0u32..4, 0i64..900_000), 1..80),
        ) {
            let limits = NearbyLimits { moves_per_hour: 3, ..NearbyLimits::default() };
            let cells: Vec<Cell> = (0..4)
                .map(|i| cell_at(offset(SHANGHAI, 300.0 * f64::from(i), 0.0)))
                .collect();
            let mut standing = NearbyStanding::default();
            let mut now = NOW;
            let mut admitted_moves: Vec<i64> = Vec::new();
            for (which, wait) in steps {
                now += wait;
                let before = standing.live_cell(now);
                match share(&standing, cells[which as usize], now, limits) {
                    Ok(next) => {
                        // The cells are 300 m apart: none keeps another.
                        if before != Some(cells[which as usize]) {
                            admitted_moves.push(now);
                        }
                        prop_assert_eq!(next.cell, Some(cells[which as usize]));
                        standing = next;
                    }
                    Err(NearbyError::TooManyMoves { retry_after_ms }) => {
                        let in_window = admitted_moves.iter().filter(|&&t| t > now - MOVE_WINDOW_MS).count();
                        prop_assert_eq!(in_window, 3);
                        let oldest = admitted_moves.iter().copied().find(|&t| t > now - MOVE_WINDOW_MS).unwrap();
                        prop_assert_eq!(retry_after_ms as i64, oldest + MOVE_WINDOW_MS - now);
                    }
                    Err(e) => prop_assert!(false, "unexpected {e:?}"),
                }
                for &t in &admitted_moves {
                    let in_hour = admitted_moves.iter().filter(|&&u| u >= t && u < t + MOVE_WINDOW_MS).count();
                    prop_assert!(in_hour <= 3);
                }
            }
        }
    }
}
