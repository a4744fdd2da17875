//! What an API key may do: its scopes (issue 14). A route needs one scope, declared once in
//! the router's table (`argus_api::routes::ROUTES`).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Create sessions and events, single and bulk, and batch jobs. What a mobile or browser
    /// app embeds: it reads and changes nothing.
    Ingest,
    /// Every GET and the query routes.
    Read,
    /// Update, delete and restore events; stream settings; webhooks.
    Manage,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Ingest, Scope::Read, Scope::Manage];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Manage => "manage",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// No key at all (health).
    Public,
    Scope(Scope),
    /// Any key; what it does is checked further in (`POST /batch` checks each sub-request).
    AnyScope,
}

/// A set of scopes, written `ingest,read` (sorted, no duplicates).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

impl Scopes {
    pub fn all() -> Self {
        Self::of(&Scope::ALL)
    }

    pub fn of(scopes: &[Scope]) -> Self {
        Self(scopes.iter().fold(0, |bits, s| bits | (1 << *s as u8)))
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & (1 << scope as u8) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn list(self) -> Vec<Scope> {
        Scope::ALL.into_iter().filter(|s| self.contains(*s)).collect()
    }

    /// `ingest,read`; parsing it back gives the same set.
    pub fn text(self) -> String {
        self.list().iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
    }

    /// Parses `ingest,read` (spaces allowed). Unknown names and an empty list are errors.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut scopes = Vec::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            scopes.push(
                Scope::parse(name).ok_or_else(|| format!("unknown scope '{name}': scopes are ingest, read, manage"))?,
            );
        }
        if scopes.is_empty() {
            return Err("name at least one scope (ingest, read, manage)".into());
        }
        Ok(Self::of(&scopes))
    }

    pub fn allows(self, need: Need) -> Result<(), Scope> {
        match need {
            Need::Public | Need::AnyScope => Ok(()),
            Need::Scope(scope) if self.contains(scope) => Ok(()),
            Need::Scope(scope) => Err(scope),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_sets() {
        let set = Scopes::parse(" read, ingest ,read").unwrap();
        assert_eq!(set.text(), "ingest,read");
        assert_eq!(Scopes::parse(&set.text()).unwrap(), set);
        assert!(set.contains(Scope::Ingest) && !set.contains(Scope::Manage));
        assert_eq!(set.allows(Need::Scope(Scope::Manage)), Err(Scope::Manage));
        assert_eq!(set.allows(Need::AnyScope), Ok(()));
        assert_eq!(Scopes::all().text(), "ingest,read,manage");
        assert!(Scopes::parse("").is_err());
        assert!(Scopes::parse("admin").unwrap_err().contains("admin"));
    }
}
