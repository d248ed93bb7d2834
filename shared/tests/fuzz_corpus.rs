//! Replays the fuzz corpora of the targets on `floe-shared` code (see
//! fuzz/): every file goes through the entry point its fuzz target calls,
//! so the seeds and every crasher found so far are checked on each run.

use floe_shared::fuzzing;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn path_segment_corpus() {
    let files = fuzzing::replay_corpus(DIR, "path_segment", fuzzing::path_segment);
    println!("{files} inputs replayed");
}

#[test]
fn token_form_corpus() {
    let files = fuzzing::replay_corpus(DIR, "token_form", fuzzing::token_form);
    println!("{files} inputs replayed");
}

#[test]
fn jwt_corpus() {
    let files = fuzzing::replay_corpus(DIR, "jwt", fuzzing::jwt);
    println!("{files} inputs replayed");
}

/// The JWT corpus holds tokens the fixed key signed, so that mutations of
/// valid tokens are explored: at least one of them must still verify.
#[test]
fn jwt_corpus_holds_valid_tokens() {
    let dir = std::path::Path::new(DIR).join("../fuzz/corpus/jwt");
    let verifier = fuzzing::jwt_signer().verifier();
    let valid = std::fs::read_dir(&dir)
        .expect("the jwt corpus exists")
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path()).ok())
        .filter(|token| verifier.verify(token.trim(), fuzzing::JWT_NOW).is_ok())
        .count();
    assert!(valid >= 3, "only {valid} valid tokens in {}", dir.display());
}

#[test]
fn a_missing_corpus_fails() {
    let missing = std::panic::catch_unwind(|| {
        fuzzing::replay_corpus(DIR, "no_such_target", fuzzing::path_segment)
    });
    assert!(missing.is_err());
}
