//! Profiles' types: what users tell about themselves, a change to it, how
//! someone is looked up, and what a viewer is shown. No I/O.

use super::{Privacy, Relation, Standing, UserId};

/// What a user says of their gender; `Unset` until they say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Gender {
    #[default]
    Unset,
    Female,
    Male,
    Other,
}

impl Gender {
    /// The stable snake_case name, as stored and as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unset => "unset",
            Self::Female => "female",
            Self::Male => "male",
            Self::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "unset" => Some(Self::Unset),
            "female" => Some(Self::Female),
            "male" => Some(Self::Male),
            "other" => Some(Self::Other),
            _ => None,
        }
    }
}

/// A user's profile as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRecord {
    pub user_id: UserId,
    pub phone: String,
    pub display_name: String,
    /// An `https` URL, `media:<media id>` of an uploaded picture, or empty
    /// for none.
    pub avatar_url: String,
    pub signature: String,
    /// In the user's own words: a country, a province, a city.
    pub region: String,
    pub gender: Gender,
    /// As its holder wrote it; unique whatever the case of its letters.
    pub handle: Option<String>,
    /// When the handle was last set: the next change waits 30 days from it.
    pub handle_set_ms: Option<i64>,
    pub created_at_ms: i64,
}

/// A change to one's own profile: each part that is `Some` changes, all of
/// them in one write or none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileChange {
    pub display_name: Option<String>,
    /// Empty removes the avatar.
    pub avatar_url: Option<String>,
    pub signature: Option<String>,
    pub region: Option<String>,
    pub gender: Option<Gender>,
    pub handle: Option<String>,
}

impl ProfileChange {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// How a user is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Id(UserId),
    /// A well-formed handle, in any case.
    Handle(String),
    /// A phone number in E.164 form.
    Phone(String),
}

/// What a lookup's answer is decided from: the user's profile, how the user
/// stands with the viewer (the user's side of [`Relation`]), the user's
/// settings as chosen (None: the server's defaults), and where the account
/// stands (deleted, or being deleted, it is found by nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupFacts {
    pub profile: ProfileRecord,
    pub relation: Relation,
    pub privacy: Privacy,
    pub standing: Standing,
}

/// The details of a profile: shown to whom the rules allow, all or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details {
    pub handle: Option<String>,
    pub signature: String,
    pub region: String,
    pub gender: Gender,
}

/// What a viewer is shown of a user: the minimum (id, name, avatar)
/// always; the details and the phone number as
/// [`crate::policy::profile::sight`] allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserView {
    pub user_id: UserId,
    pub display_name: String,
    pub avatar_url: String,
    pub details: Option<Details>,
    pub phone: Option<String>,
}
