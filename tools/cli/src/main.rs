//! `argus`: the command line for people who move events in bulk.
//!
//!   argus import FILE|- [--format ndjson|json|csv] [--map col=field,...] [--datastream STREAM]
//!                [--concurrency N] [--batch-size N] [--resume] [--checkpoint PATH]
//!                [--failed PATH] [--dry-run]
//!   argus events tail --stream S [--since RFC3339] [--interval SECONDS]
//!   argus status [--stream S]
//!   argus limits
//!
//! Where and who, first found wins: `--url`/`--api-key`, then `ARGUS_URL`/`ARGUS_API_KEY`, then
//! the config file (`ARGUS_CONFIG`, default `~/.config/argus/config`): `url = …` and
//! `api_key = …` lines, optionally under `[profile]` headings chosen with `--profile`.

mod api;
mod import;
mod input;

use std::path::PathBuf;
use std::time::Duration;

const USAGE: &str = "usage:
  argus import FILE|- [--format ndjson|json|csv] [--map col=field,...] [--datastream STREAM]
               [--concurrency N] [--batch-size N] [--resume] [--checkpoint PATH] [--failed PATH] [--dry-run]
  argus events tail --stream STREAM [--since RFC3339] [--interval SECONDS]
  argus status [--stream STREAM]
  argus limits
options everywhere: --url URL --api-key KEY --profile NAME (else ARGUS_URL, ARGUS_API_KEY, ~/.config/argus/config)";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("argus: {err}");
            std::process::exit(2);
        }
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
}

fn has(args: &[String], name: &str) -> bool {
    args.iter().any(|a| a == name)
}

fn number(args: &[String], name: &str) -> Result<Option<usize>, String> {
    match flag(args, name) {
        None if has(args, name) => Err(format!("{name} takes a number")),
        None => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| format!("{name} takes a number, not '{text}'")),
    }
}

/// `key = value` lines of the config file, from the `[profile]` section when one is named.
fn config_file(profile: Option<&str>) -> Vec<(String, String)> {
    let path = std::env::var_os("ARGUS_CONFIG").map(PathBuf::from).or_else(|| {
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config").join("argus").join("config"))
    });
    let Some(text) = path.and_then(|p| std::fs::read_to_string(p).ok()) else {
        return Vec::new();
    };
    let mut section = String::new();
    let wanted = profile.unwrap_or("");
    let mut pairs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_string();
            continue;
        }
        if section == wanted || (section == "default" && wanted.is_empty()) {
            if let Some((key, value)) = line.split_once('=') {
                pairs.push((key.trim().to_string(), value.trim().trim_matches('"').to_string()));
            }
        }
    }
    pairs
}

fn target(args: &[String]) -> Result<api::Target, String> {
    let file = config_file(flag(args, "--profile"));
    let from_file = |key: &str| file.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let pick = |flag_name: &str, env: &str, key: &str| {
        flag(args, flag_name)
            .map(str::to_string)
            .or_else(|| std::env::var(env).ok().filter(|v| !v.is_empty()))
            .or_else(|| from_file(key))
    };
    let url = pick("--url", "ARGUS_URL", "url").ok_or("no API URL: --url, ARGUS_URL or the config file's url")?;
    let api_key = pick("--api-key", "ARGUS_API_KEY", "api_key")
        .ok_or("no API key: --api-key, ARGUS_API_KEY or the config file's api_key")?;
    Ok(api::Target { url, api_key })
}

async fn run(args: &[String]) -> Result<i32, String> {
    let command: Vec<&str> = args.iter().take(2).map(String::as_str).collect();
    match command.as_slice() {
        ["import", source, ..] => {
            let path = (*source != "-").then(|| PathBuf::from(source));
            let format = match flag(args, "--format") {
                Some(name) => input::Format::parse(name)?,
                None => path
                    .as_ref()
                    .and_then(|p| p.to_str())
                    .and_then(input::Format::from_name)
                    .unwrap_or(input::Format::Ndjson),
            };
            let base = path.clone().unwrap_or_else(|| PathBuf::from("stdin"));
            let with_suffix = |suffix: &str| {
                let mut name = base.clone().into_os_string();
                name.push(suffix);
                PathBuf::from(name)
            };
            let options = import::ImportOptions {
                format,
                columns: input::ColumnMap::parse(flag(args, "--map").unwrap_or(""))?,
                dialect: match flag(args, "--datastream") {
                    Some(stream) => import::Dialect::DataStream { stream: stream.to_string() },
                    None => import::Dialect::Argus,
                },
                concurrency: number(args, "--concurrency")?.unwrap_or(4).clamp(1, 64),
                batch_items: number(args, "--batch-size")?,
                resume: has(args, "--resume"),
                checkpoint: flag(args, "--checkpoint")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| with_suffix(".argus-checkpoint")),
                failed: flag(args, "--failed").map(PathBuf::from).unwrap_or_else(|| with_suffix(".failed.ndjson")),
                dry_run: has(args, "--dry-run"),
                path,
            };
            let failed_path = options.failed.clone();
            let dry_run = options.dry_run;
            let api = api::Api::new(target(args)?)?;
            let summary = import::run(&api, options).await?;
            let seconds = summary.elapsed.as_secs_f64().max(0.001);
            let verb = if dry_run { "valid" } else { "stored" };
            println!(
                "{} events {verb}, {} already there, {} failed in {:.1} s ({:.0} events/s, {} HTTP calls)",
                summary.stored,
                summary.duplicates,
                summary.failed,
                seconds,
                (summary.stored + summary.duplicates) as f64 / seconds,
                summary.calls
            );
            if summary.failed > 0 {
                println!("failed items, with their line and error: {}", failed_path.display());
                return Ok(1);
            }
            Ok(0)
        }
        ["events", "tail"] => {
            let stream = flag(args, "--stream").ok_or(format!("events tail needs --stream\n{USAGE}"))?;
            let interval = Duration::from_secs(number(args, "--interval")?.unwrap_or(2).max(1) as u64);
            let since = flag(args, "--since")
                .map(str::to_string)
                .unwrap_or_else(|| (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339());
            tail(&api::Api::new(target(args)?)?, stream, since, interval).await
        }
        ["status", ..] => {
            let api = api::Api::new(target(args)?)?;
            let streams: Vec<String> = match flag(args, "--stream") {
                Some(stream) => vec![stream.to_string()],
                None => {
                    let listed = api.get("/streams?limit=100").await.map_err(|e| e.to_string())?;
                    listed["items"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s["stream_id"].as_str().map(str::to_string))
                        .collect()
                }
            };
            for stream in streams {
                let status = api.get(&format!("/streams/{stream}/status")).await.map_err(|e| e.to_string())?;
                println!(
                    "{stream}: {} · {} events · {} events/s · lag p95 {} s · errors {} (last hour {}) · last event {}",
                    status["status"].as_str().unwrap_or("?"),
                    status["events_processed"],
                    status["processing_rate"],
                    status["lag_seconds"],
                    status["errors"]["total"],
                    status["errors"]["last_hour"],
                    status["last_event_timestamp"].as_str().unwrap_or("-"),
                );
            }
            Ok(0)
        }
        ["limits", ..] => {
            let limits = api::Api::new(target(args)?)?.get("/limits").await.map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string_pretty(&limits).unwrap_or_default());
            Ok(0)
        }
        _ => Err(USAGE.to_string()),
    }
}

/// Follows a stream: events from `since` on, printed as NDJSON as they arrive, by their event
/// timestamp (an event stamped earlier than the newest one printed is not shown).
async fn tail(api: &api::Api, stream: &str, since: String, interval: Duration) -> Result<i32, String> {
    let mut from = since;
    let mut printed_at_from: std::collections::HashSet<String> = std::collections::HashSet::new();
    loop {
        let mut cursor: Option<String> = None;
        let mut page_events = Vec::new();
        loop {
            let mut path = format!("/query/events?stream_id={stream}&start_time={}&limit=1000", encode(&from));
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={}", encode(cursor)));
            }
            let page = match api.get(&path).await {
                Ok(page) => page,
                // Credentials refused: nothing to follow.
                Err(err) if err.status.is_some_and(|s| s == 401 || s == 403) => return Err(err.to_string()),
                // A stream no event named yet (404), or a passing failure: keep following.
                Err(err) => {
                    if err.status != Some(404) {
                        eprintln!("argus: {err}; trying again");
                    }
                    break;
                }
            };
            page_events.extend(page["events"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(next) if page["has_more"] == true => cursor = Some(next.to_string()),
                _ => break,
            }
        }
        // Newest first from the API: print oldest first.
        page_events.sort_by(|a, b| a["timestamp"].as_str().cmp(&b["timestamp"].as_str()));
        for event in page_events {
            let (Some(id), Some(timestamp)) = (event["event_id"].as_str(), event["timestamp"].as_str()) else {
                continue;
            };
            if timestamp < from.as_str() || (timestamp == from && printed_at_from.contains(id)) {
                continue;
            }
            if timestamp > from.as_str() {
                from = timestamp.to_string();
                printed_at_from.clear();
            }
            printed_at_from.insert(id.to_string());
            println!("{event}");
        }
        tokio::time::sleep(interval).await;
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}
