//! Invokes every function with each of its `events/` fixtures, the way `sam local invoke -e`
//! would, and checks the answer against `events/expected.json`.

use std::collections::BTreeSet;
use std::path::Path;

use argus_stack::template::repo_root;
use argus_tests::TestStack;
use serde_json::Value;

const FIXTURE_KEY: &str = "argus_fixture_key_do_not_use_in_production";

fn json_files(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            json_files(&path, &format!("{prefix}{name}/"), out);
        } else if name.ends_with(".json") && !(prefix.is_empty() && name == "expected.json") {
            out.insert(format!("{prefix}{name}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_invokes_its_function() {
    let stack = TestStack::start().await;
    argus_local::seed_tenant(&stack.backend, "fixtures", Some(FIXTURE_KEY.into())).await.unwrap();
    let fixture_session = uuid::Uuid::parse_str("0190f0a2-5f5e-7c3a-9a1b-2c3d4e5f6a7b").unwrap();
    argus_core::sessions::create_with_id(&stack.backend, "fixtures", fixture_session, Default::default())
        .await
        .unwrap();
    // the_eye's sample (in the processor's fixture) dates from 2021: within 10 years' retention.
    let longest = argus_models::stream::StreamChanges {
        retention_days: Some(argus_models::stream::MAX_RETENTION_DAYS),
        ..Default::default()
    };
    argus_core::streams::update(&stack.backend, "fixtures", "default", &longest).await.unwrap();
    let events = repo_root().join("events");
    let expected: serde_json::Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(events.join("expected.json")).unwrap()).unwrap();

    let mut on_disk = BTreeSet::new();
    json_files(&events, "", &mut on_disk);
    let listed: BTreeSet<String> = expected.keys().cloned().collect();
    assert_eq!(on_disk, listed, "events/expected.json must list exactly the fixtures on disk");

    let functions: BTreeSet<&str> = expected.values().map(|e| e["function"].as_str().unwrap()).collect();
    let mut template_functions: BTreeSet<String> = stack.template.routes.iter().map(|r| r.binary.clone()).collect();
    template_functions.extend(stack.template.sqs_consumers.keys().cloned());
    template_functions.insert("argus-authorizer".into());
    template_functions.extend(stack.template.schedules.keys().cloned());
    for function in &template_functions {
        assert!(functions.contains(function.as_str()), "no fixture for {function}");
    }

    for (file, expect) in &expected {
        let event = std::fs::read_to_string(events.join(file)).unwrap();
        let function = expect["function"].as_str().unwrap();
        // As `sam local invoke` would: the function's own role and its Timeout as the deadline.
        let target = stack.functions.function(function).unwrap();
        let deadline = std::time::Instant::now() + target.timeout();
        let output = argus_api::dispatch::invoke_json(function, &target.backend, &event, Some(deadline))
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        if let Some(expected_failures) = expect.get("batch_item_failures") {
            assert_eq!(&output["batchItemFailures"], expected_failures, "{file}: {output}");
            continue;
        }
        if let Some(fields) = expect.get("output_fields").and_then(Value::as_array) {
            for field in fields {
                assert!(output.get(field.as_str().unwrap()).is_some(), "{file}: no {field} in {output}");
            }
            continue;
        }
        if let Some(context) = expect.get("context") {
            assert_eq!(output["isAuthorized"], true, "{file}: {output}");
            assert_eq!(&output["context"], context, "{file}");
            continue;
        }
        assert_eq!(output["statusCode"], expect["status"], "{file}: {output}");
        let body: Value = serde_json::from_str(output["body"].as_str().unwrap()).unwrap();
        if let Some(code) = expect.get("error") {
            assert_eq!(&body["error"]["code"], code, "{file}: {body}");
        }
        for field in expect.get("fields").and_then(Value::as_array).into_iter().flatten() {
            assert!(body.get(field.as_str().unwrap()).is_some(), "{file}: no {field} in {body}");
        }
    }

    // The SQS fixture's effects: the valid event stored, the invalid one recorded as an error.
    let tenant_key = FIXTURE_KEY;
    let (status, stored) = stack.get("/events/0190f0a2-6000-7000-8000-0000000000a1", tenant_key).await;
    assert_eq!(status, 200, "{stored}");
    let errors = stack.all_pages("/errors", tenant_key, 10).await;
    let codes: Vec<&str> = errors.iter().map(|e| e["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["DATA_EMPTY"], "the poison message names no tenant: it is recorded unrouted");
}
