//! Rate-limit tiers (issue 14): requests per hour and events per hour, per API key or token
//! subject, in fixed one-hour windows. No AWS here: the counters live in `argus_core::ratelimit`.

use serde::Serialize;

/// The window every limit counts in.
pub const WINDOW_SECONDS: u64 = 3_600;

/// Highest limit that can be configured: beyond it a key is `unlimited`.
pub const MAX_LIMIT: u64 = 1_000_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Standard,
    Professional,
    Enterprise,
    /// No counting at all (operators' own tooling, benchmarks). Only the admin CLI grants it.
    Unlimited,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Standard, Tier::Professional, Tier::Enterprise, Tier::Unlimited];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Standard => "standard",
            Tier::Professional => "professional",
            Tier::Enterprise => "enterprise",
            Tier::Unlimited => "unlimited",
        }
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == name.trim())
            .ok_or_else(|| format!("unknown tier '{name}': tiers are standard, professional, enterprise, unlimited"))
    }

    /// DataStream Pro's request tiers, and an events quota 100 times the request quota (a full
    /// bulk call of 1,000 items costs the events of 10 average calls, so bulk stays the cheap
    /// way in without dodging the limit).
    pub fn limits(self) -> Limits {
        match self {
            Tier::Standard => Limits { requests_per_hour: 1_000, events_per_hour: 100_000 },
            Tier::Professional => Limits { requests_per_hour: 10_000, events_per_hour: 1_000_000 },
            Tier::Enterprise => Limits { requests_per_hour: 100_000, events_per_hour: 10_000_000 },
            Tier::Unlimited => Limits { requests_per_hour: u64::MAX, events_per_hour: u64::MAX },
        }
    }
}

/// What one caller may spend per window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Limits {
    pub requests_per_hour: u64,
    pub events_per_hour: u64,
}

impl Limits {
    pub fn unlimited(self) -> bool {
        self.requests_per_hour == u64::MAX && self.events_per_hour == u64::MAX
    }
}

/// Settings stored on a key or a tenant; what is unset falls through (key → tenant → tier).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimitSettings {
    pub tier: Option<Tier>,
    pub requests_per_hour: Option<u64>,
    pub events_per_hour: Option<u64>,
}

impl LimitSettings {
    /// The limits in force: the key's own numbers, else the tenant's, else those of the tier
    /// (the key's, else the tenant's, else `standard`).
    pub fn resolve(key: &LimitSettings, tenant: &LimitSettings) -> (Tier, Limits) {
        let tier = key.tier.or(tenant.tier).unwrap_or(Tier::Standard);
        let defaults = tier.limits();
        let limits = Limits {
            requests_per_hour: key.requests_per_hour.or(tenant.requests_per_hour).unwrap_or(defaults.requests_per_hour),
            events_per_hour: key.events_per_hour.or(tenant.events_per_hour).unwrap_or(defaults.events_per_hour),
        };
        (tier, limits)
    }
}

/// A configured limit: a whole number from 1 to [`MAX_LIMIT`].
pub fn parse_limit(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(format!("'{text}' is not a limit: a whole number from 1 to {MAX_LIMIT}")),
    }
}

/// Which limit a refusal hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitKind {
    Requests,
    Events,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Requests => "requests_per_hour",
            LimitKind::Events => "events_per_hour",
        }
    }
}

/// The fixed window holding `epoch_seconds`: its number and the seconds until it ends (≥ 1).
pub fn window_of(epoch_seconds: u64) -> (u64, u64) {
    let window = epoch_seconds / WINDOW_SECONDS;
    (window, (window + 1) * WINDOW_SECONDS - epoch_seconds)
}

/// Average writes per second we plan per counter item: a quarter of a partition's ~1,000, so
/// bursts several times the average still fit.
pub const PLANNED_WRITES_PER_SECOND: u64 = 250;

/// The counter shards a requests limit needs: one item per 900,000 requests/hour (250 writes/s
/// on average), at most 64. Every tier's default fits one item.
pub fn shards_for(requests_per_hour: u64) -> u64 {
    if requests_per_hour == u64::MAX {
        return 1;
    }
    requests_per_hour.div_ceil(PLANNED_WRITES_PER_SECOND * WINDOW_SECONDS).clamp(1, 64)
}

/// Shard `index`'s part of `limit` split over `shards`: the parts add up to `limit` exactly.
pub fn shard_part(limit: u64, shards: u64, index: u64) -> u64 {
    if limit == u64::MAX {
        return u64::MAX;
    }
    limit / shards + u64::from(index < limit % shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_and_overrides_resolve_key_then_tenant_then_tier() {
        assert_eq!(Tier::parse("professional").unwrap().limits().requests_per_hour, 10_000);
        assert!(Tier::parse("gold").unwrap_err().contains("gold"));
        let none = LimitSettings::default();
        assert_eq!(LimitSettings::resolve(&none, &none), (Tier::Standard, Tier::Standard.limits()));
        let tenant = LimitSettings { tier: Some(Tier::Enterprise), requests_per_hour: Some(5), events_per_hour: None };
        let key = LimitSettings { tier: None, requests_per_hour: None, events_per_hour: Some(7) };
        assert_eq!(
            LimitSettings::resolve(&key, &tenant),
            (Tier::Enterprise, Limits { requests_per_hour: 5, events_per_hour: 7 })
        );
        let key = LimitSettings { tier: Some(Tier::Standard), ..none };
        assert_eq!(LimitSettings::resolve(&key, &tenant).1, Limits { requests_per_hour: 5, events_per_hour: 100_000 });
        assert!(Tier::Unlimited.limits().unlimited());
    }

    #[test]
    fn limits_parse_strictly() {
        assert_eq!(parse_limit("1000"), Ok(1000));
        for bad in ["0", "-1", "1.5", "", "x", "1000000000001"] {
            assert!(parse_limit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn windows_are_fixed_hours() {
        assert_eq!(window_of(0), (0, 3_600));
        assert_eq!(window_of(3_599), (0, 1));
        assert_eq!(window_of(3_600), (1, 3_600));
    }

    #[test]
    fn shards_split_a_limit_exactly() {
        assert_eq!(shards_for(100_000), 1, "enterprise fits one counter item");
        assert_eq!(shards_for(u64::MAX), 1);
        assert_eq!(shards_for(900_000), 1);
        assert_eq!(shards_for(900_001), 2);
        assert_eq!(shards_for(MAX_LIMIT), 64);
        for (limit, shards) in [(10u64, 3u64), (1_000_000, 7), (5, 5), (3, 4)] {
            let total: u64 = (0..shards).map(|i| shard_part(limit, shards, i)).sum();
            assert_eq!(total, limit);
        }
    }
}
