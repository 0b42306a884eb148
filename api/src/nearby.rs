//! People nearby's API: share where you are (`PUT /v1/me/location`), stop
//! (`DELETE /v1/me/location`), and see who else shares near that place
//! (`GET /v1/nearby`). Answers carry rounded distances, never coordinates.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_with::serde_as;

use crate::U64AsString;

/// `PUT /v1/me/location`: where the caller is, in degrees (WGS 84). The
/// server keeps only the grid cell of about 100 m that it falls in.
#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShareLocation {
    /// -85 to 85 (people nearby covers no farther towards the poles).
    #[cfg_attr(feature = "openapi", schema(minimum = -85, maximum = 85))]
    pub lat: f64,
    /// -180 to 180.
    #[cfg_attr(feature = "openapi", schema(minimum = -180, maximum = 180))]
    pub lon: f64,
}

/// A position is never logged: its `Debug` form holds no coordinate.
impl fmt::Debug for ShareLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareLocation")
            .field("lat", &"[redacted]")
            .field("lon", &"[redacted]")
            .finish()
    }
}

/// What a share answers: when the position stops being found unless it is
/// shared again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LocationShared {
    pub expires_at_ms: i64,
}

/// `GET /v1/nearby` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct NearbyQuery {
    /// Search radius in metres around your shared position (default 5,000;
    /// at most `nearby.max_radius_m`, 20,000).
    #[serde(default)]
    pub radius_m: Option<u32>,
    /// At most this many people (default 20, at most 50).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// Someone nearby: who, and within how many metres of you (rounded up: 100 m
/// steps to 1 km, whole kilometres beyond; at least 100).
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NearbyPerson {
    #[serde_as(as = "U64AsString")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user_id: u64,
    pub display_name: String,
    pub within_m: u32,
}

/// `GET /v1/nearby`: people nearest first, the radius searched, and when
/// your own shared position expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NearbyPeople {
    pub people: Vec<NearbyPerson>,
    pub radius_m: u32,
    pub expires_at_ms: i64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_shared_position_never_prints_its_coordinates() {
        let share = ShareLocation {
            lat: 31.2304,
            lon: 121.4737,
        };
        let printed = format!("{share:?}");
        assert!(
            !printed.contains("31.2") && !printed.contains("121.4"),
            "{printed}"
        );
    }

    #[test]
    fn a_person_s_id_travels_as_a_string() {
        let person = NearbyPerson {
            user_id: u64::MAX,
            display_name: "Ann".into(),
            within_m: 100,
        };
        let json = serde_json::to_value(&person).unwrap();
        assert_eq!(json["user_id"], "18446744073709551615");
    }
}
