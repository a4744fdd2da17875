//! The `argus` CLI against the local stack: a 100,000-line import killed halfway and resumed
//! stores every event exactly once; CSV with a column mapping, failures with their line, and
//! `--dry-run` writing nothing.

use std::collections::HashSet;
use std::io::Write;
use std::process::Stdio;

use argus_tests::TestStack;
use serde_json::{json, Value};

fn argus(stack: &TestStack, key: &str, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_argus"));
    command
        .args(args)
        .args(["--url", &stack.base_url, "--api-key", key])
        .env_remove("ARGUS_URL")
        .env_remove("ARGUS_API_KEY")
        .env("ARGUS_CONFIG", "/nonexistent")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

fn scratch() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("argus-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn stored_lines(stack: &TestStack, key: &str) -> Vec<u64> {
    let events = stack.all_pages("/events", key, 1000).await;
    let ids: HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "no id twice");
    let mut lines: Vec<u64> = events.iter().map(|e| e["data"]["line"].as_u64().unwrap()).collect();
    lines.sort_unstable();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_import_killed_halfway_resumes_and_stores_every_event_exactly_once() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    let dir = scratch();
    let path = dir.join("events.ndjson");
    let when = argus_models::time::format(&(chrono::Utc::now() - chrono::Duration::hours(1)));
    let total = 100_000u64;
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for line in 1..=total {
            let event = json!({"session_id": session, "category": "import", "name": "row",
                "timestamp": when, "data": {"line": line}});
            writeln!(file, "{event}").unwrap();
        }
    }
    let path_text = path.to_str().unwrap();
    let checkpoint = dir.join("events.ndjson.argus-checkpoint");
    let args = ["import", path_text, "--batch-size", "2000", "--concurrency", "4"];
    let mut first = argus(&stack, &key, &args).spawn().unwrap();
    // Killed (SIGKILL: no chance to tidy up) once about a third is acknowledged.
    let through = argus_tests::eventually(300, "a third of the import is checkpointed", || async {
        let saved: Value = serde_json::from_str(&std::fs::read_to_string(&checkpoint).ok()?).ok()?;
        let through = saved["through_line"].as_u64()?;
        (through >= total / 3).then_some(through)
    })
    .await;
    first.kill().await.unwrap();
    assert!(through < total, "killed before the end");

    let resumed = argus(&stack, &key, &[&args[..], &["--resume"]].concat()).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&resumed.stdout);
    assert!(resumed.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&resumed.stderr));
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&checkpoint).unwrap()).unwrap();
    assert_eq!(saved["through_line"], total);

    let lines = stored_lines(&stack, &key).await;
    assert_eq!(lines, (1..=total).collect::<Vec<_>>(), "every line stored exactly once");

    // A rerun from scratch (no --resume) sends the same ids: all already there, nothing new.
    let rerun = argus(&stack, &key, &["import", path_text, "--checkpoint", dir.join("other").to_str().unwrap()])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&rerun.stdout);
    assert!(stdout.starts_with(&format!("0 events stored, {total} already there, 0 failed")), "{stdout}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_gzip_and_json_imports_report_failures_by_line_and_dry_runs_write_nothing() {
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let session = stack.session(&key).await;
    let dir = scratch();
    let when = argus_models::time::format(&(chrono::Utc::now() - chrono::Duration::hours(1)));
    let csv = format!(
        "sid,when,evt,kind,line\n{session},{when},signup,web,1\n{session},{when},login,web,2\n{session},not-a-time,login,web,3\n"
    );
    let csv_path = dir.join("rows.csv.gz");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(csv.as_bytes()).unwrap();
    std::fs::write(&csv_path, encoder.finish().unwrap()).unwrap();
    let map = "sid=session_id,when=timestamp,evt=name,kind=category";

    let dry =
        argus(&stack, &key, &["import", csv_path.to_str().unwrap(), "--map", map, "--dry-run"]).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(dry.status.code(), Some(1), "{stdout}");
    assert!(stdout.starts_with("2 events valid, 0 already there, 1 failed"), "{stdout}");
    assert!(stack.all_pages("/events", &key, 100).await.is_empty(), "a dry run writes nothing");

    let failed = dir.join("rows.failed.ndjson");
    let run = argus(
        &stack,
        &key,
        &["import", csv_path.to_str().unwrap(), "--map", map, "--failed", failed.to_str().unwrap()],
    )
    .output()
    .await
    .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let failures: Vec<Value> =
        std::fs::read_to_string(&failed).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(failures.len(), 1);
    // The header is line 1: the third data row is line 4 of the file.
    assert_eq!((failures[0]["line"].as_u64(), failures[0]["status"].as_u64()), (Some(4), Some(400)));
    assert_eq!(failures[0]["event"]["data"]["line"], "3");
    assert_eq!(stored_lines_csv(&stack, &key).await, ["1", "2"]);

    // A JSON array, with a broken element: what comes before it is imported, the rest reported.
    let json_path = dir.join("more.json");
    std::fs::write(
        &json_path,
        format!(r#"[{{"session_id": "{session}", "category": "c", "name": "n", "timestamp": "{when}", "data": {{"line": "9"}}}}, oops]"#),
    )
    .unwrap();
    let run = argus(&stack, &key, &["import", json_path.to_str().unwrap()]).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.starts_with("1 events stored, 0 already there, 1 failed"), "{stdout}");
    std::fs::remove_dir_all(dir).unwrap();
}

async fn stored_lines_csv(stack: &TestStack, key: &str) -> Vec<String> {
    let mut lines: Vec<String> = stack
        .all_pages("/events", key, 100)
        .await
        .iter()
        .map(|e| e["data"]["line"].as_str().unwrap().to_string())
        .collect();
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follows_a_stream_and_status_reports_it() {
    use tokio::io::AsyncBufReadExt;
    let stack = TestStack::start().await;
    let key = stack.key("acme").await;
    let since = argus_models::time::format(&(chrono::Utc::now() - chrono::Duration::minutes(5)));
    let mut tail = argus(&stack, &key, &["events", "tail", "--stream", "web", "--since", &since, "--interval", "1"])
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(tail.stdout.take().unwrap()).lines();
    // The stream does not exist yet when tail starts: it keeps following until it does.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let when = argus_models::time::format(&(chrono::Utc::now() - chrono::Duration::seconds(30)));
    let events: Vec<Value> =
        (0..3).map(|i| json!({"event_type": "click", "timestamp": when, "data": {"i": i}})).collect();
    let (status, answer) = stack.post("/ingest/batch", &key, json!({"stream_id": "web", "events": events})).await;
    assert_eq!((status, answer["succeeded"].as_u64()), (200, Some(3)), "{answer}");
    let mut seen = HashSet::new();
    while seen.len() < 3 {
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
            .await
            .expect("tail prints the events within 30 s")
            .unwrap()
            .expect("a line");
        let event: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(event["event_type"], "click");
        seen.insert(event["event_id"].as_str().unwrap().to_string());
    }
    tail.kill().await.unwrap();

    let status = argus(&stack, &key, &["status", "--stream", "web"]).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{stdout}");
    assert!(stdout.starts_with("web: ") && stdout.contains(" events"), "{stdout}");
}
