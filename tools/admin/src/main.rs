//! `argus-admin`: manage API keys against the configured table.
//!
//!   argus-admin keys create --tenant acme [--scopes ingest,read] [--tier professional]
//!                           [--requests-per-hour N] [--events-per-hour N]   prints the key once
//!   argus-admin keys list   --tenant acme        ids, scopes, tiers, limits; never secrets
//!   argus-admin keys update --tenant acme --id <key id> [--scopes ingest] [--tier enterprise]
//!                           [--requests-per-hour N|default] [--events-per-hour N|default]
//!   argus-admin keys revoke --tenant acme --id <key id>
//!   argus-admin tenants limits --tenant acme [--tier T] [--requests-per-hour N] [--events-per-hour N]
//!                           what the tenant's keys and tokens fall back to (no flags: shows them)
//!
//!   argus-admin dlq [--max N] [--json]          what is in the dead-letter queue (left there)
//!   argus-admin dlq redrive [--max N]            moves it back to the events queue
//!
//! Table: `ARGUS_TABLE` (default `argus-dev`); events queue: `ARGUS_QUEUE_URL` (its DLQ is read
//! from the queue's redrive policy). Endpoints: `ARGUS_DYNAMODB_ENDPOINT` and
//! `ARGUS_SQS_ENDPOINT` for local emulators; unset means AWS with the usual credential chain
//! and region.

use argus_core::apikeys::{KeyUpdate, Setting};
use argus_core::aws::{lambda_sdk_config, local_sdk_config};
use argus_core::{apikeys, dlq, Backend, Endpoints};
use argus_models::access::Scopes;
use argus_models::limits::{parse_limit, LimitSettings, Tier};

fn has(args: &[String], name: &str) -> bool {
    args.iter().any(|a| a == name)
}

/// A flag given as a value, `default` (cleared), or absent (kept).
fn setting<T>(args: &[String], name: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Setting<T>, String> {
    if !has(args, name) {
        return Ok(Setting::Keep);
    }
    match flag(args, name)? {
        "default" => Ok(Setting::Clear),
        value => parse(value).map(Setting::Set),
    }
}

fn optional<T>(args: &[String], name: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Option<T>, String> {
    if has(args, name) {
        parse(flag(args, name)?).map(Some)
    } else {
        Ok(None)
    }
}

fn limit_settings(args: &[String]) -> Result<LimitSettings, String> {
    Ok(LimitSettings {
        tier: optional(args, "--tier", Tier::parse)?,
        requests_per_hour: optional(args, "--requests-per-hour", parse_limit)?,
        events_per_hour: optional(args, "--events-per-hour", parse_limit)?,
    })
}

/// `tier professional, requests/h 10000 (tier), events/h 5000 (own)`.
fn describe(own: &LimitSettings, tenant: &LimitSettings) -> String {
    let (tier, limits) = LimitSettings::resolve(own, tenant);
    let source = |own: Option<u64>, tenant: Option<u64>| match (own, tenant) {
        (Some(_), _) => "key",
        (None, Some(_)) => "tenant",
        _ => "tier",
    };
    let number = |n: u64| if n == u64::MAX { "unlimited".to_string() } else { n.to_string() };
    format!(
        "tier {} ({}), requests/h {} ({}), events/h {} ({})",
        tier.as_str(),
        if own.tier.is_some() {
            "key"
        } else if tenant.tier.is_some() {
            "tenant"
        } else {
            "default"
        },
        number(limits.requests_per_hour),
        source(own.requests_per_hour, tenant.requests_per_hour),
        number(limits.events_per_hour),
        source(own.events_per_hour, tenant.events_per_hour),
    )
}

const USAGE: &str = "usage:
  argus-admin keys create --tenant <tenant> [--scopes ingest,read,manage] [--tier standard|professional|enterprise|unlimited]
                          [--requests-per-hour N] [--events-per-hour N]
  argus-admin keys list --tenant <tenant>
  argus-admin keys update --tenant <tenant> --id <key id> [--scopes <scopes>] [--tier <tier>|default]
                          [--requests-per-hour N|default] [--events-per-hour N|default]
  argus-admin keys revoke --tenant <tenant> --id <key id>
  argus-admin tenants limits --tenant <tenant> [--tier <tier>] [--requests-per-hour N] [--events-per-hour N]
  argus-admin dlq [--max N] [--json]
  argus-admin dlq redrive [--max N]";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(err) = run(&args).await {
        eprintln!("argus-admin: {err}");
        std::process::exit(2);
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Result<&'a str, String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
        .ok_or_else(|| format!("missing {name}\n{USAGE}"))
}

async fn backend() -> Backend {
    let table = std::env::var("ARGUS_TABLE").unwrap_or_else(|_| "argus-dev".into());
    let queue_url = std::env::var("ARGUS_QUEUE_URL").unwrap_or_default();
    let endpoints = Endpoints {
        dynamodb: std::env::var("ARGUS_DYNAMODB_ENDPOINT").ok(),
        sqs: std::env::var("ARGUS_SQS_ENDPOINT").ok(),
        s3: std::env::var("ARGUS_S3_ENDPOINT").ok(),
    };
    if endpoints.dynamodb.is_some() || endpoints.sqs.is_some() {
        Backend::new(&local_sdk_config(), &endpoints, table, queue_url)
    } else {
        Backend::new(&lambda_sdk_config().await, &Endpoints::default(), table, queue_url)
    }
}

fn optional_number(args: &[String], name: &str) -> Result<Option<usize>, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .map(Some)
            .ok_or_else(|| format!("{name} takes a number\n{USAGE}")),
    }
}

async fn dead_letter_queue(backend: &Backend) -> Result<String, String> {
    if backend.queue_url.is_empty() {
        return Err("set ARGUS_QUEUE_URL to the events queue (the stack's QueueUrl output)".into());
    }
    dlq::dead_letter_queue_url(backend, &backend.queue_url).await.map_err(|e| e.to_string())
}

async fn run(args: &[String]) -> Result<(), String> {
    let words: Vec<&str> = args.iter().take(2).map(String::as_str).collect();
    match words.as_slice() {
        ["keys", "create"] => {
            let tenant = flag(args, "--tenant")?;
            let scopes = match args.iter().any(|a| a == "--scopes") {
                true => Scopes::parse(flag(args, "--scopes")?)?,
                false => Scopes::all(),
            };
            let limits = limit_settings(args)?;
            let backend = backend().await;
            let key =
                apikeys::create_key_with(&backend, tenant, None, scopes, limits).await.map_err(|e| e.to_string())?;
            let tenant_limits = apikeys::tenant_limit_settings(&backend, tenant).await.map_err(|e| e.to_string())?;
            println!("tenant:  {}", key.tenant);
            println!("key id:  {}", key.key_id);
            println!("scopes:  {}", scopes.text());
            println!("limits:  {}", describe(&limits, &tenant_limits));
            println!("api key: {}", key.secret);
            eprintln!("(the key is shown only now: only its SHA-256 hash is stored)");
            Ok(())
        }
        ["keys", "list"] => {
            let tenant = flag(args, "--tenant")?;
            let backend = backend().await;
            let tenant_limits = apikeys::tenant_limit_settings(&backend, tenant).await.map_err(|e| e.to_string())?;
            for key in apikeys::list_keys(&backend, tenant).await.map_err(|e| e.to_string())? {
                println!(
                    "{}  scopes {}  {}  created {}",
                    key.key_id,
                    key.scopes.text(),
                    describe(&key.limits, &tenant_limits),
                    key.created_at
                );
            }
            Ok(())
        }
        ["keys", "update"] => {
            let (tenant, id) = (flag(args, "--tenant")?, flag(args, "--id")?);
            let update = KeyUpdate {
                scopes: optional(args, "--scopes", Scopes::parse)?,
                tier: setting(args, "--tier", Tier::parse)?,
                requests_per_hour: setting(args, "--requests-per-hour", parse_limit)?,
                events_per_hour: setting(args, "--events-per-hour", parse_limit)?,
            };
            apikeys::update_key(&backend().await, tenant, id, update).await.map_err(|e| e.to_string())?;
            println!("{id}: updated (in effect within 15 s: each authorizer instance's cache)");
            Ok(())
        }
        ["tenants", "limits"] => {
            let tenant = flag(args, "--tenant")?;
            let backend = backend().await;
            let settings = limit_settings(args)?;
            if settings != LimitSettings::default() {
                apikeys::set_tenant_limit_settings(&backend, tenant, settings).await.map_err(|e| e.to_string())?;
            }
            let current = apikeys::tenant_limit_settings(&backend, tenant).await.map_err(|e| e.to_string())?;
            println!("{tenant}: keys without their own settings get {}", describe(&LimitSettings::default(), &current));
            Ok(())
        }
        ["keys", "revoke"] => {
            let (tenant, id) = (flag(args, "--tenant")?, flag(args, "--id")?);
            apikeys::revoke_key(&backend().await, tenant, id).await.map_err(|e| e.to_string())?;
            println!("revoked {id}");
            Ok(())
        }
        ["dlq", "redrive"] => {
            let backend = backend().await;
            let dlq_url = dead_letter_queue(&backend).await?;
            let max = optional_number(args, "--max")?;
            let report = dlq::redrive(&backend, &dlq_url, &backend.queue_url, max).await.map_err(|e| e.to_string())?;
            println!("moved {} message(s) back to the events queue ({})", report.moved, report.method);
            if report.left_in_dlq > 0 {
                println!(
                    "{} sent but not deleted from the DLQ: they will be processed twice, harmlessly",
                    report.left_in_dlq
                );
            }
            Ok(())
        }
        ["dlq", ..] => {
            let backend = backend().await;
            let dlq_url = dead_letter_queue(&backend).await?;
            let max = optional_number(args, "--max")?.unwrap_or(100);
            let letters = dlq::list(&backend, &dlq_url, max).await.map_err(|e| e.to_string())?;
            if args.iter().any(|a| a == "--json") {
                for letter in &letters {
                    println!("{}", serde_json::to_string(letter).unwrap_or_default());
                }
                return Ok(());
            }
            let depth = dlq::depth(&backend, &dlq_url).await.map_err(|e| e.to_string())?;
            println!("about {depth} message(s) in {dlq_url}; showing {}", letters.len());
            println!("(receive counts include earlier listings: each look is a receive)");
            for letter in &letters {
                let error = letter
                    .first_error
                    .as_ref()
                    .map(|e| format!("{}: {}", e["code"].as_str().unwrap_or("?"), e["message"].as_str().unwrap_or("")))
                    .unwrap_or_else(|| "no error record".into());
                println!(
                    "{}  {}  tenant {}  event {}  received {}x  {} B  {}",
                    letter.message_id,
                    letter.kind,
                    letter.tenant.as_deref().unwrap_or("-"),
                    letter.event_id.as_deref().unwrap_or("-"),
                    letter.receive_count,
                    letter.bytes,
                    error
                );
            }
            Ok(())
        }
        _ => Err(USAGE.to_string()),
    }
}
