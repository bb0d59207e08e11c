//! The sync against a fake QuickBooks company and an in-memory store
//! (`crate::testing`): what docs/sync.md promises a user, run natively.
//!
//! Every checkpoint any of these runs saves is also checked by the test
//! platform: it must not be ahead of the store.

use chrono::Duration;
use std::collections::BTreeSet;

use super::*;
use crate::testing::{fault, TestPlatform};

/// Small pages, so that a few dozen customers make several of them.
const PAGE: u32 = 10;

fn assert_store_matches_company(platform: &TestPlatform) {
    let differences = platform.store_differences();
    assert!(differences.is_empty(), "the store is not QuickBooks: {differences:#?}");
}

/// Runs the sync, which must succeed; returns how many listings it began.
fn listings_begun_by_a_run(platform: &mut TestPlatform) -> usize {
    let outcome = platform.run(PAGE);
    outcome.summary();
    outcome.listings_begun().len()
}

/// 3 customers, then 25 sharing one second (a bulk import, more than a
/// page), then 3; returns the 25.
fn company_with_a_large_group(platform: &mut TestPlatform) -> Vec<String> {
    let company = &mut platform.company;
    company.add(3);
    company.advance(Duration::seconds(1));
    let group = company.add(25);
    company.advance(Duration::seconds(1));
    company.add(3);
    company.advance(Duration::seconds(1));
    group
}

#[test]
fn a_group_sharing_one_timestamp_larger_than_a_page_is_read_whole_and_once() {
    let mut platform = TestPlatform::new();
    company_with_a_large_group(&mut platform);

    let outcome = platform.run(PAGE);

    assert_store_matches_company(&platform);
    // Each customer handed to the store once: the group is walked by its
    // offset, not looped over, and the anchor that starts each page is not
    // saved again.
    assert_eq!(outcome.summary().saved, 31);
    // ⌊(N − s) / (s − 1)⌋ + 2 pages for N customers in pages of s
    // (docs/sync.md, "Costs").
    assert_eq!(outcome.summary().requests, 4);
}

#[test]
fn a_customer_of_a_group_edited_between_pages_is_not_lost() {
    let mut platform = TestPlatform::new();
    let group = company_with_a_large_group(&mut platform);
    // Before the second page, edit the group's first member, read on the
    // first page: it leaves the group, every later member shifts down one
    // place, and the offset where the second page starts now skips one.
    let read_already = group[0].clone();
    platform.before_each_request(move |request, company| {
        if request == 2 {
            company.edit(&read_already);
        }
        None
    });

    let outcome = platform.run(PAGE);

    outcome.summary();
    assert_store_matches_company(&platform);
    assert!(
        outcome.logged("changed while paging; reading that group again"),
        "the shift went unnoticed: {:#?}",
        outcome.logs()
    );
}

#[test]
fn a_run_that_fails_at_a_page_resumes_there_not_from_the_start() {
    let mut platform = TestPlatform::new();
    let ids = platform.company.add_one_per_second(50);
    // The third page's request gets no answer (the proxy timed out).
    platform.before_each_request(|request, _| (request == 3).then(|| Err("timeout".into())));

    let failed = platform.run(PAGE);

    assert_eq!(failed.error(), &SyncError::Proxy("timeout".into()));
    // Two pages stored, customers 1 to 19 (a page starts with the last
    // customer of the page before).
    let checkpoint = platform.checkpoint().expect("a checkpoint after each page");
    assert!(!checkpoint.complete);
    let since = platform.company.last_updated(&ids[18]);
    assert_eq!(checkpoint.position.since.as_deref(), Some(since.as_str()));

    let resumed = platform.run(PAGE);

    let first = resumed.queries()[0];
    assert!(first.contains(&format!(">= '{since}'")) && first.contains("STARTPOSITION 1 "), "{first}");
    // Only what the failed run had not stored is read, in four pages, ...
    let rest: BTreeSet<&str> = ids[19..].iter().map(String::as_str).collect();
    assert_eq!(resumed.saved_ids(), rest);
    assert_eq!(resumed.summary().requests, 4);
    // ... into the listing the failed run began, which it now ends.
    assert_eq!(resumed.listings_begun(), Vec::<u64>::new());
    assert_eq!(resumed.listings_ended(), vec![(failed.listings_begun()[0], 0)]);
    assert_store_matches_company(&platform);
}

#[test]
fn a_resumed_full_pass_whose_listing_was_closed_lists_again_from_the_start() {
    let mut platform = TestPlatform::new();
    let ids = platform.company.add_one_per_second(50);
    platform.before_each_request(|request, _| (request == 3).then(|| Err("timeout".into())));
    platform.run(PAGE).error();
    // Its listing is superseded: what it saw no longer counts. Ending the
    // superseded listing is refused, and ending a new one after reading only
    // the rest would delete customers 1 to 18; either way, this customer,
    // stored by the failed run and merged away since, would stay.
    platform.another_writer_begins_a_listing();
    platform.company.merge_away(&ids[5]);

    let resumed = platform.run(PAGE);

    assert!(resumed.logged("is no longer open"), "{:#?}", resumed.logs());
    assert!(resumed.saved_ids().contains(ids[0].as_str()));
    let listing = resumed.listings_begun();
    assert_eq!(resumed.listings_ended(), vec![(listing[0], 1)]);
    assert!(platform.is_soft_deleted(&ids[5]));
    assert_store_matches_company(&platform);
}

#[test]
fn a_quickbooks_fault_mid_run_is_named_and_the_checkpoint_stays_with_the_store() {
    let mut platform = TestPlatform::new();
    let ids = platform.company.add_one_per_second(30);
    platform.run(PAGE).summary();
    for id in &ids[..25] {
        platform.company.advance(Duration::seconds(1));
        platform.company.edit(id);
    }
    // Request 1 is the incremental pass's first page, 2 is CDC, 3 the second
    // page: QuickBooks fails it, as it still did when the host's retries ran out.
    let message = "An application error has occurred while processing your request";
    platform.before_each_request(move |request, _| {
        (request == 3).then(|| Ok(fault(500, "10000", message, "System Failure Error")))
    });

    let failed = platform.run(PAGE);

    assert!(
        matches!(failed.error(), SyncError::Provider(f) if f.status == 500 && f.code == "10000"),
        "{:?}",
        failed.error()
    );
    assert_eq!(
        failed.error().to_string(),
        format!("QuickBooks answered HTTP 500, code 10000: {message} (System Failure Error)")
    );
    // The stored checkpoint is the one saved after the last page stored, and
    // every customer before it is stored as QuickBooks has it now: the next
    // run, starting there, loses nothing.
    let checkpoint = platform.checkpoint().unwrap();
    assert_eq!(failed.checkpoints().last(), Some(&&checkpoint));
    assert!(!checkpoint.complete);
    assert_eq!(platform.not_current_before(&checkpoint), Vec::<String>::new());
    assert!(!platform.store_differences().is_empty(), "the failed page's edits are not stored yet");

    platform.run(PAGE).summary();

    assert_store_matches_company(&platform);
}

#[test]
fn customers_merged_away_are_deleted_through_cdc_while_it_answers_under_its_maximum() {
    let mut platform = TestPlatform::new();
    let ids = platform.company.add_one_per_second(30);
    platform.run(PAGE).summary();
    platform.company.merge_away(&ids[2]);
    platform.company.merge_away(&ids[3]);
    platform.company.archive(&ids[4]);
    platform.company.edit(&ids[5]);

    let outcome = platform.run(PAGE);

    // One page and one CDC request; no listing.
    assert_eq!(outcome.summary().requests, 2);
    assert_eq!(outcome.cdc_requests(), 1);
    assert_eq!(outcome.listings_begun(), Vec::<u64>::new());
    // The two merged away from CDC's tombstones, the archived one from the page.
    let gone: BTreeSet<&str> = ids[2..5].iter().map(String::as_str).collect();
    assert_eq!(outcome.deleted_ids(), gone);
    for id in &ids[2..5] {
        assert!(platform.is_soft_deleted(id), "customer {id}");
    }
    assert_store_matches_company(&platform);
}

#[test]
fn cdc_answering_its_maximum_of_1000_objects_starts_a_listing_that_finds_what_it_cut() {
    let mut platform = TestPlatform::new();
    let ids = platform.company.add(1200);
    platform.company.advance(Duration::seconds(1));
    platform.run(MAX_PAGE_SIZE).summary();
    platform.company.advance(Duration::minutes(10));
    for id in &ids[..1000] {
        platform.company.edit(id);
    }
    // CDC lists deletions after the 1000 edits: these three are cut.
    let merged = &ids[1197..];
    for id in merged {
        platform.company.merge_away(id);
    }

    let outcome = platform.run(MAX_PAGE_SIZE);

    outcome.summary();
    assert!(outcome.logged("CDC answered 1000 objects, its maximum"), "{:#?}", outcome.logs());
    let listing = outcome.listings_begun();
    assert_eq!(listing.len(), 1);
    // Ending the listing deleted the three CDC did not tell of.
    assert_eq!(outcome.listings_ended(), vec![(listing[0], 3)]);
    for id in merged {
        assert!(platform.is_soft_deleted(id), "customer {id}");
    }
    assert_store_matches_company(&platform);
}

#[test]
fn a_listing_is_due_once_reconcile_every_has_passed_and_then_not_again_until_it_has() {
    let mut platform = TestPlatform::new();
    platform.company.add_one_per_second(5);
    platform.run(PAGE).summary();

    platform.company.advance(Duration::hours(23));
    let trusted = platform.run(PAGE);
    assert_eq!(trusted.listings_begun(), Vec::<u64>::new());
    assert_eq!(trusted.cdc_requests(), 1, "deletions read from CDC instead");

    // The default is 24 h since the last full listing began.
    platform.company.advance(Duration::hours(1));
    let due = platform.run(PAGE);
    assert_eq!(due.listings_begun().len(), 1);
    assert!(due.logged("more than 24 h ago"), "{:#?}", due.logs());
    assert_eq!(due.listings_ended().len(), 1);

    // Measured from that listing now.
    platform.company.advance(Duration::hours(1));
    assert_eq!(listings_begun_by_a_run(&mut platform), 0);
    assert_store_matches_company(&platform);
}

#[test]
fn reconcile_every_counts_from_the_last_listing_not_from_the_last_run() {
    let mut platform = TestPlatform::new();
    platform.set_config("reconcileEvery", "6h");
    platform.company.add_one_per_second(5);
    platform.run(PAGE).summary();

    platform.company.advance(Duration::hours(4));
    assert_eq!(listings_begun_by_a_run(&mut platform), 0);
    // 4 h after the last run, 8 h after the last listing.
    platform.company.advance(Duration::hours(4));
    let due = platform.run(PAGE);
    assert_eq!(due.listings_begun().len(), 1);
    assert!(due.logged("more than 6 h ago"), "{:#?}", due.logs());
}

#[test]
fn with_reconcile_every_off_only_cdc_s_30_days_start_a_listing() {
    let mut platform = TestPlatform::new();
    platform.set_config("reconcileEvery", "off");
    let ids = platform.company.add_one_per_second(5);
    platform.run(PAGE).summary();

    platform.company.advance(Duration::hours(25));
    assert_eq!(listings_begun_by_a_run(&mut platform), 0, "no daily listing");
    platform.company.advance(Duration::days(28));
    assert_eq!(listings_begun_by_a_run(&mut platform), 0, "CDC still answers");

    // A month without a run: CDC cannot go back that far (the fake refuses
    // it, as QuickBooks does), so only a listing finds the merged customer.
    platform.company.merge_away(&ids[1]);
    platform.company.advance(Duration::days(31));
    let outcome = platform.run(PAGE);

    outcome.summary();
    assert!(outcome.logged("beyond CDC's 30 days"), "{:#?}", outcome.logs());
    assert_eq!(outcome.cdc_requests(), 0);
    assert_eq!(outcome.listings_ended().len(), 1);
    assert_eq!(outcome.listings_ended()[0].1, 1);
    assert_store_matches_company(&platform);
}
