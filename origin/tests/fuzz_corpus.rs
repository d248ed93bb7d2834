//! Replays the fuzz corpora of the targets on `floe-origin` code (see
//! fuzz/): every file goes through the entry point its fuzz target calls,
//! so the seeds and every crasher found so far are checked on each run.
#![allow(
    clippy::unwrap_used,
    reason = "a test stops at the first unexpected value"
)]

use floe_origin::fuzzing;
use floe_shared::fuzzing::replay_corpus;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn namespace_path_corpus() {
    let files = replay_corpus(DIR, "namespace_path", fuzzing::namespace_path);
    println!("{files} inputs replayed");
}

#[test]
fn commit_request_corpus() {
    let files = replay_corpus(DIR, "commit_request", fuzzing::commit_request);
    println!("{files} inputs replayed");
}

#[test]
fn plan_request_corpus() {
    let files = replay_corpus(DIR, "plan_request", fuzzing::plan_request);
    println!("{files} inputs replayed");
}
