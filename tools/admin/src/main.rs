//! `argus-admin`: manage API keys against the configured table.
//!
//!   argus-admin keys create --tenant acme        prints the new key once (store it now)
//!   argus-admin keys list   --tenant acme        key ids and creation times, never secrets
//!   argus-admin keys revoke --tenant acme --id <key id>
//!
//! Table: `ARGUS_TABLE` (default `argus-dev`). Endpoint: `ARGUS_DYNAMODB_ENDPOINT` for a local
//! emulator; unset means AWS with the usual credential chain and region.

use argus_core::aws::{lambda_sdk_config, local_sdk_config};
use argus_core::{apikeys, Backend, Endpoints};

const USAGE: &str = "usage:
  argus-admin keys create --tenant <tenant>
  argus-admin keys list --tenant <tenant>
  argus-admin keys revoke --tenant <tenant> --id <key id>";

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
    match std::env::var("ARGUS_DYNAMODB_ENDPOINT") {
        Ok(endpoint) => {
            let endpoints = Endpoints { dynamodb: Some(endpoint), sqs: None };
            Backend::new(&local_sdk_config(), &endpoints, table, "")
        }
        Err(_) => Backend::new(&lambda_sdk_config().await, &Endpoints::default(), table, ""),
    }
}

async fn run(args: &[String]) -> Result<(), String> {
    let words: Vec<&str> = args.iter().take(2).map(String::as_str).collect();
    match words.as_slice() {
        ["keys", "create"] => {
            let tenant = flag(args, "--tenant")?;
            let key = apikeys::create_key(&backend().await, tenant, None).await.map_err(|e| e.to_string())?;
            println!("tenant:  {}", key.tenant);
            println!("key id:  {}", key.key_id);
            println!("api key: {}", key.secret);
            eprintln!("(the key is shown only now: only its SHA-256 hash is stored)");
            Ok(())
        }
        ["keys", "list"] => {
            let tenant = flag(args, "--tenant")?;
            for key in apikeys::list_keys(&backend().await, tenant).await.map_err(|e| e.to_string())? {
                println!("{}  created {}", key.key_id, key.created_at);
            }
            Ok(())
        }
        ["keys", "revoke"] => {
            let (tenant, id) = (flag(args, "--tenant")?, flag(args, "--id")?);
            apikeys::revoke_key(&backend().await, tenant, id).await.map_err(|e| e.to_string())?;
            println!("revoked {id}");
            Ok(())
        }
        _ => Err(USAGE.to_string()),
    }
}
