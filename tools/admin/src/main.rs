//! `argus-admin`: manage API keys against the configured table.
//!
//!   argus-admin keys create --tenant acme [--scopes ingest,read]   prints the new key once
//!   argus-admin keys list   --tenant acme        key ids, scopes and creation times, never secrets
//!   argus-admin keys update --tenant acme --id <key id> --scopes ingest
//!   argus-admin keys revoke --tenant acme --id <key id>
//!
//!   argus-admin dlq [--max N] [--json]          what is in the dead-letter queue (left there)
//!   argus-admin dlq redrive [--max N]            moves it back to the events queue
//!
//! Table: `ARGUS_TABLE` (default `argus-dev`); events queue: `ARGUS_QUEUE_URL` (its DLQ is read
//! from the queue's redrive policy). Endpoints: `ARGUS_DYNAMODB_ENDPOINT` and
//! `ARGUS_SQS_ENDPOINT` for local emulators; unset means AWS with the usual credential chain
//! and region.

use argus_core::aws::{lambda_sdk_config, local_sdk_config};
use argus_core::{apikeys, dlq, Backend, Endpoints};
use argus_models::access::Scopes;

const USAGE: &str = "usage:
  argus-admin keys create --tenant <tenant> [--scopes ingest,read,manage]
  argus-admin keys list --tenant <tenant>
  argus-admin keys update --tenant <tenant> --id <key id> --scopes <scopes>
  argus-admin keys revoke --tenant <tenant> --id <key id>
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
            let key =
                apikeys::create_scoped_key(&backend().await, tenant, None, scopes).await.map_err(|e| e.to_string())?;
            println!("tenant:  {}", key.tenant);
            println!("key id:  {}", key.key_id);
            println!("scopes:  {}", scopes.text());
            println!("api key: {}", key.secret);
            eprintln!("(the key is shown only now: only its SHA-256 hash is stored)");
            Ok(())
        }
        ["keys", "list"] => {
            let tenant = flag(args, "--tenant")?;
            for key in apikeys::list_keys(&backend().await, tenant).await.map_err(|e| e.to_string())? {
                println!("{}  scopes {}  created {}", key.key_id, key.scopes.text(), key.created_at);
            }
            Ok(())
        }
        ["keys", "update"] => {
            let (tenant, id) = (flag(args, "--tenant")?, flag(args, "--id")?);
            let scopes = Scopes::parse(flag(args, "--scopes")?)?;
            apikeys::update_key_scopes(&backend().await, tenant, id, scopes).await.map_err(|e| e.to_string())?;
            println!("{id}: scopes {} (in effect within 60 s: the authorizer's cache)", scopes.text());
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
