//! People nearby's types: the grid cell a shared position is snapped to,
//! what the server keeps of each user who shares one, and what a query
//! answers. No I/O. No type here holds a position finer than a cell.

use serde::{Deserialize, Serialize};

use super::{Relation, UserId};

/// One cell of the grid that every shared position is snapped to before
/// anything keeps it ([`crate::policy::nearby::snap`]): about 100 m by
/// 100 m anywhere on Earth. `row` counts from the South Pole, `col` from
/// the antimeridian eastwards, in cells of the row's own width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cell {
    pub row: u32,
    pub col: u32,
}

/// What is kept of one user of people nearby: the cell they share and until
/// when, and when they lately moved and looked, for the caps on both. A
/// backend stores it whole and changes it only as a [`crate::policy::nearby`]
/// function decides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NearbyStanding {
    /// The cell shared; the user is found there while `expires_ms` is ahead.
    pub cell: Option<Cell>,
    pub expires_ms: i64,
    /// When the user moved (shared a cell other than the one they shared
    /// live) within the last hour, oldest first.
    pub moves: Vec<i64>,
    /// When the user looked within the last minute, oldest first.
    pub queries: Vec<i64>,
}

impl NearbyStanding {
    /// The cell the user is found at now, if any: shared and not expired.
    pub fn live_cell(&self, now_ms: i64) -> Option<Cell> {
        self.cell.filter(|_| self.expires_ms > now_ms)
    }
}

/// What decides whether a viewer sees a candidate nearby
/// ([`crate::policy::nearby::may_see_nearby`]), read in one step for every
/// candidate of a search. A candidate the store does not know has the
/// default: not taking part, so not shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NearbyFacts {
    /// How the viewer stands with the candidate: `friends`, `blocks`,
    /// `blocked_by` (requests are not read).
    pub relation: Relation,
    /// The candidate's account takes part
    /// ([`crate::policy::security::takes_part`]): not while its deletion
    /// waits, nor once it is erased.
    pub takes_part: bool,
    /// The candidate's invisible mode, the server's default filled in by
    /// [`crate::Nearby`]; None reads as off.
    pub invisible: Option<super::Invisible>,
}

/// One person an index found near a cell: their cell and the great-circle
/// distance between the two cells' centres, in metres (not rounded: the
/// order of a query's answer; people see it rounded).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub user: UserId,
    pub cell: Cell,
    pub distance_m: f64,
}

/// One person as a query answers them: who, and within how many metres
/// ([`crate::policy::nearby::shown_distance`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NearbyPerson {
    pub user: UserId,
    pub display_name: String,
    pub within_m: u32,
}

/// What a query answers: people nearest first, the radius searched, and
/// when the viewer's own shared position expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NearbyPage {
    pub people: Vec<NearbyPerson>,
    pub radius_m: u32,
    pub expires_at_ms: i64,
}
