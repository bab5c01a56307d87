//! Shows that the gap-free contract test detects a store that skips events: the same test body, run against a store
//! whose positions come from a plain identity column, must fail with "subscriber missed".

use std::sync::Arc;

use crate::store_contract::{assert_subscriber_sees_exactly_the_committed_events, chaos_hook};
use crate::support::{Backend, Scratch, naive_store::NaiveStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[should_panic(expected = "subscriber missed")]
async fn gap_free_contract_against_naive_identity_column_reader_detects_skipped_events() {
    let scratch = Scratch::new(Backend::Postgres).await;
    let (hook, counter) = chaos_hook();
    let store = NaiveStore::connect(&scratch.database_url().expect("postgres"), 16, hook).await;
    assert_subscriber_sees_exactly_the_committed_events(Arc::new(store), &counter).await;
}
