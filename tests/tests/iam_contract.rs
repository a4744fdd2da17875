//! The IAM contract: every AWS call a function made during the integration suite (recorded by
//! the IAM guard on each function's clients, see `argus_stack::iam`) is allowed by that
//! function's policy in template.yaml, and every grant of those policies was used.
//!
//! It reads what the suite recorded, so `make test` runs it after the suite, on its own
//! (`--run-ignored only`); run alone it has nothing to check and says so.

#[test]
#[ignore = "run by make test after the integration suite, which records the calls"]
fn every_call_is_granted_and_every_grant_is_used() {
    let dir = std::env::var("ARGUS_IAM_RECORD_DIR")
        .expect("ARGUS_IAM_RECORD_DIR is not set: run through `make test`, which records the suite's calls there");
    let calls = argus_stack::iam::read_records(std::path::Path::new(&dir)).unwrap();
    assert!(calls.len() > 10, "only {} calls recorded in {dir}: did the suite run?", calls.len());
    let template = argus_stack::Template::load_repo().unwrap();
    for function in &template.functions {
        let used: Vec<String> = calls
            .iter()
            .filter(|c| c.function == function.logical_id)
            .map(|c| format!("{} {}", c.action, c.resource))
            .collect();
        eprintln!("{}: {}", function.logical_id, used.join(", "));
    }
    let violations = argus_stack::iam::check(&template, &calls);
    assert!(violations.is_empty(), "IAM contract violated:\n  {}", violations.join("\n  "));
}
