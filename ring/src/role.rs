//! The components a process runs (`--target`), named once for the config, the command line and
//! gossip.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A component of Hearth, or `all` of them in one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything in one process: ingest, storage, queries (replication 1, no gossip).
    All,
    Distributor,
    Ingester,
    Querier,
    QueryFrontend,
    QueryScheduler,
    Compactor,
    /// Pull mode on its own: scrapes the targets of `scrape_configs` (shared with the other
    /// scrapers) and writes what it gets as a distributor does.
    Scraper,
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::All,
        Role::Distributor,
        Role::Ingester,
        Role::Querier,
        Role::QueryFrontend,
        Role::QueryScheduler,
        Role::Compactor,
        Role::Scraper,
    ];

    /// The name in config files, on the command line and in gossip.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Distributor => "distributor",
            Role::Ingester => "ingester",
            Role::Querier => "querier",
            Role::QueryFrontend => "query-frontend",
            Role::QueryScheduler => "query-scheduler",
            Role::Compactor => "compactor",
            Role::Scraper => "scraper",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown target {name:?}: expected one of all, distributor, ingester, querier, query-frontend, query-scheduler, compactor, scraper"
)]
pub struct UnknownRole {
    pub name: String,
}

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == name)
            .ok_or_else(|| UnknownRole {
                name: name.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        let error = "ingestor".parse::<Role>().unwrap_err().to_string();
        assert!(
            error.contains("\"ingestor\"") && error.contains("ingester"),
            "{error}"
        );
    }
}
