//! Webhooks: a tenant's endpoints notified of stream and job events (DataStream Pro's
//! webhooks), signed per the Standard Webhooks specification. This module holds what needs no
//! I/O: the request shapes and their validation, the URL and address rules against SSRF, the
//! retry schedule and the payload. Signing and sending live in argus-core.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::stream::check_stream_id;
use crate::validation::{body_object, json_type_name, reject_unchangeable, FieldError, ValidationError};

/// Webhooks per tenant: each notification fans out to all of them.
pub const MAX_WEBHOOKS_PER_TENANT: u64 = 25;
pub const MAX_URL_LEN: usize = 2048;
pub const SECRET_PREFIX: &str = "whsec_";
/// Standard Webhooks: secrets of 24 to 64 random bytes.
pub const MIN_SECRET_BYTES: usize = 24;
pub const MAX_SECRET_BYTES: usize = 64;
/// Rotation: the previous secret keeps signing for this long unless the request says otherwise.
pub const DEFAULT_ROTATION_GRACE: Duration = Duration::from_secs(24 * 3600);
pub const MAX_ROTATION_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Waits between attempts: 10 attempts over ~3 days (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h,
/// 20 h, 20 h = 71.6 h), each ±10% jitter so a recovering receiver is not hit by a wave.
pub const RETRY_SCHEDULE_SECONDS: [u64; 9] = [5, 300, 1_800, 7_200, 18_000, 36_000, 50_400, 72_000, 72_000];
/// A `Retry-After` longer than this is capped (the receiver still gets its attempts).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);
/// An endpoint that has failed every attempt for this long is disabled: 2.5 days, shorter than
/// one notification's retry schedule (71.6 h, at least 64.4 h with jitter), so an endpoint that
/// fails every attempt of a single notification is disabled by its last attempts.
pub const DISABLE_AFTER_FAILING: Duration = Duration::from_secs(60 * 3600);

/// What a webhook can subscribe to (`webhook.test` is sent on request, to one webhook).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "stream.processing_error")]
    ProcessingError,
    #[serde(rename = "stream.threshold_exceeded")]
    ThresholdExceeded,
    #[serde(rename = "batch.job.completed")]
    JobCompleted,
    #[serde(rename = "webhook.test")]
    Test,
}

impl EventType {
    pub const SUBSCRIBABLE: [EventType; 3] =
        [EventType::ProcessingError, EventType::ThresholdExceeded, EventType::JobCompleted];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ProcessingError => "stream.processing_error",
            EventType::ThresholdExceeded => "stream.threshold_exceeded",
            EventType::JobCompleted => "batch.job.completed",
            EventType::Test => "webhook.test",
        }
    }

    /// A subscribable type by name.
    pub fn subscribable(name: &str) -> Option<Self> {
        Self::SUBSCRIBABLE.into_iter().find(|t| t.as_str() == name)
    }
}

/// Largest `events_per_minute` threshold (far above any stream's rate).
pub const MAX_EVENTS_PER_MINUTE: u64 = 1_000_000_000_000;

/// Per-webhook thresholds for `stream.threshold_exceeded`, checked per minute of arrivals.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Error records / (stored events + error records) in a minute, 0–1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// p95 of received → stored in a minute, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// Events stored in a minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_per_minute: Option<u64>,
}

impl Thresholds {
    pub fn is_empty(&self) -> bool {
        self.error_rate.is_none() && self.lag_seconds.is_none() && self.events_per_minute.is_none()
    }

    fn parse(value: &Value, errors: &mut ValidationError) -> Option<Self> {
        let Value::Object(fields) = value else {
            errors.push(FieldError::new(
                "thresholds",
                "INVALID_TYPE",
                format!("thresholds must be an object, got {}", json_type_name(value)),
            ));
            return None;
        };
        let mut thresholds = Thresholds::default();
        for (name, value) in fields {
            let field = format!("thresholds.{name}");
            let number = value.as_f64().filter(|n| n.is_finite() && *n > 0.0);
            match (name.as_str(), number) {
                ("error_rate", Some(rate)) if rate <= 1.0 => thresholds.error_rate = Some(rate),
                ("error_rate", _) => {
                    errors.push(FieldError::new(field, "OUT_OF_RANGE", "error_rate must be a number in (0, 1]"))
                }
                ("lag_seconds", Some(lag)) if lag <= 86_400.0 => thresholds.lag_seconds = Some(lag),
                ("lag_seconds", _) => {
                    errors.push(FieldError::new(field, "OUT_OF_RANGE", "lag_seconds must be a number in (0, 86400]"))
                }
                ("events_per_minute", _)
                    if whole_number(value).is_some_and(|n| (1..=MAX_EVENTS_PER_MINUTE).contains(&n)) =>
                {
                    thresholds.events_per_minute = whole_number(value)
                }
                ("events_per_minute", _) => errors.push(FieldError::new(
                    field,
                    "OUT_OF_RANGE",
                    format!("events_per_minute must be a whole number from 1 to {MAX_EVENTS_PER_MINUTE}"),
                )),
                _ => errors.push(FieldError::new(
                    field,
                    "UNKNOWN_FIELD",
                    "thresholds are error_rate, lag_seconds and events_per_minute",
                )),
            }
        }
        Some(thresholds)
    }
}

/// A JSON whole number: JSON has one number type, so 5.0 is the whole number 5 (as JSON
/// Schema's `integer` says).
pub fn whole_number(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.is_finite() && f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
            .map(|f| f as u64)
    })
}

/// Which URLs a stack may call. Deployed stacks: `https` to public addresses only. The local
/// stack may also allow plain `http` to loopback, so a receiver on the same machine works.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    pub allow_http_loopback: bool,
}

impl UrlPolicy {
    /// Whether connecting to `ip` is allowed (checked for every resolved address).
    pub fn address_allowed(&self, ip: IpAddr) -> Result<(), &'static str> {
        match forbidden_reason(ip) {
            None => Ok(()),
            Some(_) if self.allow_http_loopback && is_loopback(ip) => Ok(()),
            Some(reason) => Err(reason),
        }
    }
}

/// A webhook URL, checked: scheme, no credentials, a host, and an IP literal host not in a
/// forbidden range. Hostnames are checked again, address by address, at every delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookUrl {
    pub url: String,
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, as sent in the request line.
    pub target: String,
}

impl WebhookUrl {
    pub fn parse(field: &str, raw: &str, policy: &UrlPolicy) -> Result<Self, FieldError> {
        let invalid = |message: String| FieldError::new(field, "INVALID_URL", message);
        if raw.len() > MAX_URL_LEN {
            return Err(invalid(format!("{field} is longer than {MAX_URL_LEN} characters")));
        }
        let url = url::Url::parse(raw).map_err(|e| invalid(format!("{field} is not a URL: {e}")))?;
        let https = match url.scheme() {
            "https" => true,
            "http" if policy.allow_http_loopback => false,
            "http" => return Err(invalid(format!("{field} must use https"))),
            other => return Err(invalid(format!("{field} must use https, not {other}"))),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(format!("{field} must not carry credentials; sign with the webhook secret instead")));
        }
        if url.fragment().is_some() {
            return Err(invalid(format!("{field} must not have a #fragment")));
        }
        let (host, literal) = match url.host() {
            Some(url::Host::Domain(domain)) => (domain.to_ascii_lowercase(), None),
            Some(url::Host::Ipv4(ip)) => (ip.to_string(), Some(IpAddr::V4(ip))),
            Some(url::Host::Ipv6(ip)) => (ip.to_string(), Some(IpAddr::V6(ip))),
            None => return Err(invalid(format!("{field} has no host"))),
        };
        let loopback_name = host == "localhost" || host.ends_with(".localhost");
        if let Some(ip) = literal {
            policy.address_allowed(ip).map_err(|reason| {
                FieldError::new(field, "FORBIDDEN_ADDRESS", format!("{field} points at a {reason} address ({ip})"))
            })?;
        } else if loopback_name && !policy.allow_http_loopback {
            return Err(FieldError::new(field, "FORBIDDEN_ADDRESS", format!("{field} points at loopback ({host})")));
        }
        let is_loopback_host = loopback_name || literal.is_some_and(is_loopback);
        if !https && !is_loopback_host {
            return Err(invalid(format!("{field} must use https (plain http only to loopback on the local stack)")));
        }
        let port = url.port_or_known_default().ok_or_else(|| invalid(format!("{field} has no port")))?;
        let mut target = url.path().to_string();
        if let Some(query) = url.query() {
            target.push('?');
            target.push_str(query);
        }
        Ok(Self { url: url.to_string(), https, host, port, target })
    }
}

/// Why connecting to `ip` is refused (`None`: a public unicast address).
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "unspecified (0.0.0.0/8)",
        (127, _, _) => "loopback",
        (10, _, _) => "private",
        (172, 16..=31, _) => "private",
        (192, 168, _) => "private",
        (169, 254, _) => "link-local (instance metadata)",
        (100, 64..=127, _) => "shared (carrier-grade NAT)",
        (192, 0, 0) => "IETF protocol assignment",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        (192, 88, 99) => "6to4 relay",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved or broadcast",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    let segments = ip.segments();
    let embedded_v4 = |high: u16, low: u16| Ipv4Addr::new((high >> 8) as u8, high as u8, (low >> 8) as u8, low as u8);
    // Addresses that carry an IPv4 address reach that address: judge it instead.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4).or(None);
    }
    if segments[..6] == [0, 0, 0, 0, 0, 0] {
        // IPv4-compatible (deprecated) ::a.b.c.d
        return forbidden_v4(embedded_v4(segments[6], segments[7])).or(Some("IPv4-compatible"));
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return forbidden_v4(embedded_v4(segments[6], segments[7]));
    }
    if segments[0] == 0x2002 {
        return forbidden_v4(embedded_v4(segments[1], segments[2]));
    }
    Some(match segments[0] {
        s if s & 0xff00 == 0xff00 => "multicast",
        s if s & 0xffc0 == 0xfe80 => "link-local",
        s if s & 0xffc0 == 0xfec0 => "site-local",
        s if s & 0xfe00 == 0xfc00 => "unique local (private)",
        0x2001 if segments[1] == 0 => "Teredo tunnel",
        0x2001 if segments[1] == 0x0db8 => "documentation",
        0x0100 if segments[1..4] == [0, 0, 0] => "discard-only",
        0x0064 if segments[1] == 0xff9b && segments[2] == 1 => "local-use NAT64",
        // Everything outside global unicast: reserved, IPv4-translated (::ffff:0:a.b.c.d) and
        // forms no public receiver has.
        s if s & 0xe000 != 0x2000 => "reserved (outside global unicast 2000::/3)",
        _ => return None,
    })
}

/// Loopback, also as an IPv4-mapped IPv6 address.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// `POST /webhooks`.
#[derive(Clone, Debug, PartialEq)]
pub struct NewWebhook {
    pub url: WebhookUrl,
    pub events: Vec<EventType>,
    pub stream_id: Option<String>,
    /// The caller's own secret, checked; `None`: Argus generates one.
    pub secret: Option<String>,
    pub thresholds: Thresholds,
    pub description: Option<String>,
}

const CREATE_FIELDS: [&str; 6] = ["url", "events", "stream_id", "secret", "thresholds", "description"];
const MAX_DESCRIPTION_LEN: usize = 500;

impl NewWebhook {
    pub fn parse(value: &Value, policy: &UrlPolicy) -> Result<Self, ValidationError> {
        let fields = body_object(value, "a webhook must be a JSON object")?;
        let mut errors = ValidationError::default();
        for key in fields.keys() {
            if !CREATE_FIELDS.contains(&key.as_str()) {
                errors.push(FieldError::new(
                    key.clone(),
                    "UNKNOWN_FIELD",
                    format!("a webhook has {}", CREATE_FIELDS.join(", ")),
                ));
            }
        }
        let url = match fields.get("url") {
            Some(Value::String(raw)) => WebhookUrl::parse("url", raw, policy).map_err(|e| errors.push(e)).ok(),
            Some(other) => {
                errors.push(FieldError::new(
                    "url",
                    "INVALID_TYPE",
                    format!("url must be a string, got {}", json_type_name(other)),
                ));
                None
            }
            None => {
                errors.push(FieldError::new("url", "REQUIRED", "url is required"));
                None
            }
        };
        let events = match fields.get("events") {
            Some(value) => parse_events(value, &mut errors),
            None => {
                errors.push(FieldError::new("events", "REQUIRED", "events is required (the event types to send)"));
                None
            }
        };
        let stream_id = match fields.get("stream_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(raw)) => check_stream_id("stream_id", raw).map_err(|e| errors.push(e)).ok(),
            Some(other) => {
                errors.push(FieldError::new(
                    "stream_id",
                    "INVALID_TYPE",
                    format!("stream_id must be a string, got {}", json_type_name(other)),
                ));
                None
            }
        };
        let secret = match fields.get("secret") {
            None | Some(Value::Null) => None,
            Some(Value::String(raw)) => check_secret("secret", raw).map_err(|e| errors.push(e)).ok(),
            Some(other) => {
                errors.push(FieldError::new(
                    "secret",
                    "INVALID_TYPE",
                    format!("secret must be a string, got {}", json_type_name(other)),
                ));
                None
            }
        };
        let thresholds = fields.get("thresholds").and_then(|t| Thresholds::parse(t, &mut errors)).unwrap_or_default();
        let description = parse_description(fields, &mut errors);
        errors.into_result()?;
        match (url, events) {
            (Some(url), Some(events)) => Ok(Self { url, events, stream_id, secret, thresholds, description }),
            _ => Err(FieldError::new("body", "INVALID", "invalid webhook").into()),
        }
    }
}

fn parse_description(fields: &Map<String, Value>, errors: &mut ValidationError) -> Option<String> {
    match fields.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.chars().count() <= MAX_DESCRIPTION_LEN => Some(text.clone()),
        Some(Value::String(_)) => {
            errors.push(FieldError::new(
                "description",
                "INVALID_LENGTH",
                format!("description is at most {MAX_DESCRIPTION_LEN} characters"),
            ));
            None
        }
        Some(other) => {
            errors.push(FieldError::new(
                "description",
                "INVALID_TYPE",
                format!("description must be a string, got {}", json_type_name(other)),
            ));
            None
        }
    }
}

fn parse_events(value: &Value, errors: &mut ValidationError) -> Option<Vec<EventType>> {
    let Value::Array(items) = value else {
        errors.push(FieldError::new(
            "events",
            "INVALID_TYPE",
            format!("events must be an array of event types, got {}", json_type_name(value)),
        ));
        return None;
    };
    if items.is_empty() {
        errors.push(FieldError::new("events", "EMPTY", "name at least one event type"));
        return None;
    }
    let known: Vec<&str> = EventType::SUBSCRIBABLE.iter().map(|t| t.as_str()).collect();
    let mut events = Vec::new();
    let mut ok = true;
    for (index, item) in items.iter().enumerate() {
        match item.as_str().and_then(EventType::subscribable) {
            Some(event) => {
                if !events.contains(&event) {
                    events.push(event);
                }
            }
            None => {
                ok = false;
                errors.push(FieldError::new(
                    format!("events[{index}]"),
                    "UNKNOWN_EVENT_TYPE",
                    format!("unknown event type {item}; known: {}", known.join(", ")),
                ));
            }
        }
    }
    ok.then(|| {
        events.sort();
        events
    })
}

/// A caller-supplied secret: `whsec_` + base64 of 24 to 64 bytes (Standard Webhooks).
pub fn check_secret(field: &str, raw: &str) -> Result<String, FieldError> {
    let bad = || {
        FieldError::new(
            field,
            "INVALID_SECRET",
            format!(
                "{field} must be '{SECRET_PREFIX}' followed by the base64 of {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} random bytes"
            ),
        )
    };
    let encoded = raw.strip_prefix(SECRET_PREFIX).ok_or_else(bad)?;
    let bytes = decode_base64(encoded).ok_or_else(bad)?;
    if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()) {
        return Err(bad());
    }
    Ok(raw.to_string())
}

/// Standard base64 with canonical padding, as the Standard Webhooks libraries decode secrets
/// (a laxer decoder would accept secrets a receiver's library cannot load).
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// `PATCH /webhooks/{id}`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WebhookChanges {
    pub url: Option<WebhookUrl>,
    pub events: Option<Vec<EventType>>,
    pub enabled: Option<bool>,
    pub thresholds: Option<Thresholds>,
    pub description: Option<Option<String>>,
}

const CHANGEABLE: [&str; 5] = ["url", "events", "enabled", "thresholds", "description"];

impl WebhookChanges {
    pub fn parse(value: &Value, policy: &UrlPolicy) -> Result<Self, ValidationError> {
        let fields = body_object(value, "expected a JSON object")?;
        let mut errors = ValidationError::default();
        reject_unchangeable(fields, &CHANGEABLE, &mut errors);
        if fields.is_empty() {
            errors.push(FieldError::new("body", "EMPTY_PATCH", "name at least one field to change"));
        }
        let mut changes = WebhookChanges::default();
        match fields.get("url") {
            None => {}
            Some(Value::String(raw)) => {
                changes.url = WebhookUrl::parse("url", raw, policy).map_err(|e| errors.push(e)).ok()
            }
            Some(other) => errors.push(FieldError::new(
                "url",
                "INVALID_TYPE",
                format!("url must be a string, got {}", json_type_name(other)),
            )),
        }
        if let Some(value) = fields.get("events") {
            changes.events = parse_events(value, &mut errors);
        }
        match fields.get("enabled") {
            None => {}
            Some(Value::Bool(enabled)) => changes.enabled = Some(*enabled),
            Some(other) => errors.push(FieldError::new(
                "enabled",
                "INVALID_TYPE",
                format!("enabled must be true or false, got {}", json_type_name(other)),
            )),
        }
        if let Some(value) = fields.get("thresholds") {
            changes.thresholds = Thresholds::parse(value, &mut errors);
        }
        if fields.contains_key("description") {
            changes.description = Some(parse_description(fields, &mut errors));
        }
        errors.into_result()?;
        Ok(changes)
    }
}

/// The wait before attempt `attempts_made + 1` (`None`: no attempts left). A `Retry-After` the
/// receiver sent lengthens the schedule's wait, never shortens it (a `Retry-After: 0` during a
/// blip must not spend ten attempts in ten seconds); capped at [`MAX_RETRY_AFTER`]. `jitter`
/// in [0, 1) spreads the schedule's wait ±10%.
pub fn next_delay(
    schedule: &[Duration],
    attempts_made: usize,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Option<Duration> {
    let base = schedule.get(attempts_made.checked_sub(1)?)?.mul_f64(0.9 + 0.2 * jitter.clamp(0.0, 1.0));
    Some(match retry_after {
        Some(asked) => asked.min(MAX_RETRY_AFTER).max(base),
        None => base,
    })
}

/// The default schedule as durations.
pub fn default_schedule() -> Vec<Duration> {
    RETRY_SCHEDULE_SECONDS.iter().map(|s| Duration::from_secs(*s)).collect()
}

/// `Retry-After`: delta-seconds or an HTTP date (RFC 9110), relative to `now`.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let millis = (at.with_timezone(&chrono::Utc) - now).num_milliseconds().max(0);
    Some(Duration::from_millis(millis as u64))
}

/// The body every notification carries: DataStream's four fields.
pub fn payload(event: EventType, timestamp: &str, stream_id: Option<&str>, data: Value) -> Value {
    json!({"event": event.as_str(), "timestamp": timestamp, "stream_id": stream_id, "data": data})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forbidden_ranges() {
        for blocked in [
            "0.0.0.0",
            "127.0.0.1",
            "127.255.255.254",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "2001::1",
            "2001:db8::1",
            "fec0::1",
            "::ffff:0:7f00:1",
            "::ffff:0:a9fe:a9fe",
            "100::1",
            "400::1",
            "4000::1",
        ] {
            assert!(forbidden_reason(v4(blocked)).is_some(), "{blocked} must be refused");
        }
        for allowed in ["8.8.8.8", "172.32.0.1", "100.128.0.1", "93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert_eq!(forbidden_reason(v4(allowed)), None, "{allowed} is public");
        }
        let local = UrlPolicy { allow_http_loopback: true };
        assert!(local.address_allowed(v4("127.0.0.1")).is_ok());
        assert!(local.address_allowed(v4("::1")).is_ok());
        assert!(local.address_allowed(v4("10.0.0.1")).is_err(), "the local stack still refuses private ranges");
        assert!(UrlPolicy::default().address_allowed(v4("127.0.0.1")).is_err());
    }

    #[test]
    fn urls() {
        let strict = UrlPolicy::default();
        let local = UrlPolicy { allow_http_loopback: true };
        let url = WebhookUrl::parse("url", "https://hooks.example.com/in?x=1", &strict).unwrap();
        assert_eq!(
            (url.https, url.host.as_str(), url.port, url.target.as_str()),
            (true, "hooks.example.com", 443, "/in?x=1")
        );
        for (raw, code) in [
            ("http://hooks.example.com/", "INVALID_URL"),
            ("ftp://hooks.example.com/", "INVALID_URL"),
            ("https://user:pw@hooks.example.com/", "INVALID_URL"),
            ("https://hooks.example.com/#x", "INVALID_URL"),
            ("not a url", "INVALID_URL"),
            ("https://169.254.169.254/latest/meta-data", "FORBIDDEN_ADDRESS"),
            ("https://[::ffff:127.0.0.1]/", "FORBIDDEN_ADDRESS"),
            ("https://10.0.0.8/", "FORBIDDEN_ADDRESS"),
            ("https://localhost/", "FORBIDDEN_ADDRESS"),
            ("https://0x7f000001/", "FORBIDDEN_ADDRESS"),
            ("http://127.0.0.1:8080/", "INVALID_URL"),
        ] {
            assert_eq!(WebhookUrl::parse("url", raw, &strict).unwrap_err().code, code, "{raw}");
        }
        assert!(WebhookUrl::parse("url", "http://127.0.0.1:8080/hook", &local).is_ok());
        assert!(WebhookUrl::parse("url", "http://localhost:8080/hook", &local).is_ok());
        assert_eq!(WebhookUrl::parse("url", "http://example.com/", &local).unwrap_err().code, "INVALID_URL");
        assert_eq!(WebhookUrl::parse("url", "http://10.0.0.1/", &local).unwrap_err().code, "FORBIDDEN_ADDRESS");
    }

    #[test]
    fn creation_body() {
        let policy = UrlPolicy::default();
        let ok = NewWebhook::parse(
            &json!({"url": "https://a.example/h", "events": ["stream.processing_error", "batch.job.completed"], "stream_id": "s1"}),
            &policy,
        )
        .unwrap();
        assert_eq!(ok.events, vec![EventType::ProcessingError, EventType::JobCompleted]);
        let err =
            NewWebhook::parse(&json!({"url": 3, "events": ["nope"], "secret": "abc", "x": 1}), &policy).unwrap_err();
        let codes: Vec<&str> = err.errors.iter().map(|e| e.code).collect();
        assert_eq!(codes, ["UNKNOWN_FIELD", "INVALID_TYPE", "UNKNOWN_EVENT_TYPE", "INVALID_SECRET"]);
        assert_eq!(err.errors[2].field, "events[0]");
        assert!(NewWebhook::parse(&json!({"url": "https://a.example/", "events": []}), &policy).is_err());
        let secret = format!("whsec_{}", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert!(check_secret("secret", &secret).is_ok());
        assert!(check_secret("secret", "whsec_c2hvcnQ=").is_err());
    }

    #[test]
    fn retry_schedule() {
        let schedule = default_schedule();
        let total: u64 = RETRY_SCHEDULE_SECONDS.iter().sum();
        assert!((2.5 * 86_400.0..3.5 * 86_400.0).contains(&(total as f64)), "about three days: {total}");
        // One notification failing every attempt disables its endpoint, whatever the jitter.
        assert!(DISABLE_AFTER_FAILING.as_secs_f64() < total as f64 * 0.9, "{total}");
        assert_eq!(next_delay(&schedule, 1, None, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(next_delay(&schedule, 1, Some(Duration::from_secs(120)), 0.5), Some(Duration::from_secs(120)));
        assert_eq!(
            next_delay(&schedule, 2, Some(Duration::ZERO), 0.5),
            Some(Duration::from_secs(300)),
            "never shorter"
        );
        assert_eq!(next_delay(&schedule, 9, Some(Duration::from_secs(10 * 86_400)), 0.5), Some(MAX_RETRY_AFTER));
        assert_eq!(next_delay(&schedule, 10, None, 0.5), None);
        assert_eq!(next_delay(&schedule, 0, None, 0.5), None);
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after(" 30 ", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now), Some(Duration::from_secs(60)));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn base64_decoding() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert!(decode_base64("aGVsbG8").is_none(), "padding required");
        assert!(decode_base64("aGVsbG9=").is_none(), "non-canonical trailing bits");
        assert!(decode_base64("aGVsbG8==").is_none());
        assert!(decode_base64("a$b").is_none());
        // 33 characters (1 mod 4): no secret.
        assert!(check_secret("s", &format!("whsec_{}", "A".repeat(33))).is_err());
    }
}
