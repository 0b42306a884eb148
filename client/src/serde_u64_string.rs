//! `#[serde(with = "serde_u64_string")]` for u64 ids, which the API writes as
//! JSON strings so JavaScript clients keep all 64 bits. Reading also accepts a
//! plain number, so a server that sends one is not a hard failure.

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};
use std::fmt;

pub fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    deserializer.deserialize_any(U64Visitor)
}

struct U64Visitor;

impl Visitor<'_> for U64Visitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a u64 as a decimal string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        v.parse()
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }
}

/// `#[serde(with = "serde_u64_string::vec")]` for lists of ids.
pub mod vec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(values: &[u64], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(values.iter().map(u64::to_string))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u64>, D::Error> {
        #[derive(Deserialize)]
        struct Id(#[serde(with = "super")] u64);
        Ok(Vec::<Id>::deserialize(deserializer)?
            .into_iter()
            .map(|id| id.0)
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Id {
        #[serde(with = "super")]
        id: u64,
    }

    #[test]
    fn an_id_is_written_as_a_string_with_every_digit() {
        let json = serde_json::to_string(&Id { id: u64::MAX }).unwrap();
        assert_eq!(json, r#"{"id":"18446744073709551615"}"#);
    }

    #[test]
    fn an_id_reads_back_from_a_string() {
        let id: Id = serde_json::from_str(r#"{"id":"123456789012345678"}"#).unwrap();
        assert_eq!(id.id, 123_456_789_012_345_678);
    }

    #[test]
    fn a_plain_number_is_accepted_too() {
        let id: Id = serde_json::from_str(r#"{"id":42}"#).unwrap();
        assert_eq!(id.id, 42);
    }

    #[test]
    fn a_string_that_is_not_a_number_is_rejected() {
        assert!(serde_json::from_str::<Id>(r#"{"id":"12a"}"#).is_err());
        assert!(serde_json::from_str::<Id>(r#"{"id":"-1"}"#).is_err());
        assert!(serde_json::from_str::<Id>(r#"{"id":-1}"#).is_err());
    }
}
