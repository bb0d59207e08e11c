//! The store's semantics as tests, written once against [`Database`] and run
//! against every backend (`store_suite!` in each backend's tests), so that the
//! backends cannot drift apart.

use super::{Database, LastAction, ListQuery, Position, Scope, StoreError, StoredRecord};
use crate::capabilities::records::validate_batch;

fn scope(connection: &str) -> Scope {
    Scope { connection: connection.into(), model: "Customer".into() }
}

fn save(db: &dyn Database, scope: &Scope, texts: &[&str]) -> super::BatchOutcome {
    let records = validate_batch(&texts.iter().map(|t| t.to_string()).collect::<Vec<_>>()).unwrap();
    db.records().unwrap().save(scope, &records).unwrap()
}

fn all(db: &dyn Database, scope: &Scope) -> Vec<StoredRecord> {
    db.records().unwrap().list(scope, &ListQuery { limit: 10_000, ..Default::default() }).unwrap().records
}

fn find(db: &dyn Database, scope: &Scope, id: &str) -> StoredRecord {
    all(db, scope).into_iter().find(|r| r.id == id).unwrap()
}

fn live(db: &dyn Database, scope: &Scope) -> Vec<String> {
    let mut ids: Vec<String> =
        all(db, scope).into_iter().filter(|r| r.last_action != LastAction::Deleted).map(|r| r.id).collect();
    ids.sort();
    ids
}

pub fn change_tracking_follows_the_records_cache_semantics(db: &dyn Database) {
    let s = scope("c");
    let o = save(db, &s, &[r#"{"id":"1","n":1}"#, r#"{"id":"2","n":2}"#]);
    assert_eq!((o.added, o.updated, o.unchanged), (2, 0, 0));
    let first = all(db, &s);
    assert!(first.iter().all(|r| r.last_action == LastAction::Added && r.first_seen_us == r.last_modified_us));

    let o = save(db, &s, &[r#"{"n":1,"id":"1"}"#, r#"{"id":"2","n":3}"#]);
    assert_eq!((o.added, o.updated, o.unchanged), (0, 1, 1));
    let one = find(db, &s, "1");
    assert_eq!(one.last_modified_us, first.iter().find(|r| r.id == "1").unwrap().last_modified_us, "an identical save changes nothing");
    let two = find(db, &s, "2");
    assert_eq!(two.last_action, LastAction::Updated);

    let o = db.records().unwrap().delete(&s, &["2".into(), "404".into()]).unwrap();
    assert_eq!(o.deleted, 1);
    let o = db.records().unwrap().delete(&s, &["2".into()]).unwrap();
    assert_eq!(o.deleted, 0, "deleting a deleted id does nothing");
    let two = find(db, &s, "2");
    assert_eq!(two.last_action, LastAction::Deleted);
    assert_eq!(two.deleted_us, Some(two.last_modified_us));
    assert!(two.json.contains("\"n\":3"), "the payload is kept");

    let o = save(db, &s, &[r#"{"id":"2","n":3}"#]);
    assert_eq!(o.updated, 1, "a deleted id comes back");
    let two = find(db, &s, "2");
    assert_eq!((two.last_action, two.deleted_us), (LastAction::Updated, None));
}

pub fn timestamps_strictly_increase_so_the_order_is_total(db: &dyn Database) {
    let s = scope("c");
    let texts: Vec<String> = (0..500).map(|i| format!(r#"{{"id":"{i}"}}"#)).collect();
    db.records().unwrap().save(&s, &validate_batch(&texts).unwrap()).unwrap();
    db.records().unwrap().delete(&s, &["3".into(), "4".into()]).unwrap();
    let records = all(db, &s);
    assert!(records.windows(2).all(|w| w[0].last_modified_us < w[1].last_modified_us));
}

pub fn keyset_pages_visit_every_record_once(db: &dyn Database) {
    let s = scope("c");
    let texts: Vec<String> = (0..57).map(|i| format!(r#"{{"id":"{i}"}}"#)).collect();
    db.records().unwrap().save(&s, &validate_batch(&texts).unwrap()).unwrap();
    let mut after = None;
    let mut seen = Vec::new();
    loop {
        let page = db.records().unwrap().list(&s, &ListQuery { after: after.clone(), limit: 10, ..Default::default() }).unwrap();
        seen.extend(page.records.iter().map(|r| r.id.clone()));
        let last = page.records.last().unwrap();
        after = Some(Position { last_modified_us: last.last_modified_us, id: last.id.clone() });
        if !page.has_more {
            break;
        }
    }
    assert_eq!(seen.len(), 57);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 57);
}

pub fn scopes_are_isolated(db: &dyn Database) {
    save(db, &scope("a"), &[r#"{"id":"1"}"#]);
    save(db, &scope("b"), &[r#"{"id":"1","x":1}"#, r#"{"id":"2"}"#]);
    assert_eq!(live(db, &scope("a")), vec!["1"]);
    assert_eq!(live(db, &scope("b")), vec!["1", "2"]);
    let mut records = db.records().unwrap();
    assert!(records.connection_exists("a").unwrap());
    assert!(!records.connection_exists("nobody").unwrap());
}

pub fn ending_a_listing_deletes_only_the_live_records_it_did_not_see(db: &dyn Database) {
    let s = scope("c");
    save(db, &s, &[r#"{"id":"1"}"#, r#"{"id":"2"}"#, r#"{"id":"3"}"#, r#"{"id":"4"}"#]);
    db.records().unwrap().delete(&s, &["4".into()]).unwrap();
    let mut records = db.records().unwrap();
    let listing = records.begin_listing(&s).unwrap();
    assert_eq!(records.current_listing(&s).unwrap(), Some(listing));
    drop(records);
    // 1 saved unchanged, 2 saved changed: both seen; 3 never seen.
    let o = save(db, &s, &[r#"{"id":"1"}"#, r#"{"id":"2","changed":true}"#]);
    assert_eq!((o.unchanged, o.updated), (1, 1));
    let o = db.records().unwrap().end_listing(&s, listing).unwrap();
    assert_eq!(o.deleted, 1);
    assert_eq!(live(db, &s), vec!["1", "2"]);
    assert_eq!(find(db, &s, "3").last_action, LastAction::Deleted);
    assert_eq!(db.records().unwrap().current_listing(&s).unwrap(), None, "the listing is closed");
    assert!(matches!(db.records().unwrap().end_listing(&s, listing), Err(StoreError::NoListing { .. })));
}

pub fn records_saved_during_a_listing_by_any_writer_are_never_deleted_by_it(db: &dyn Database) {
    let s = scope("c");
    save(db, &s, &[r#"{"id":"old"}"#]);
    let listing = db.records().unwrap().begin_listing(&s).unwrap();
    // Another writer of the connection (another handle) adds a record.
    save(db, &s, &[r#"{"id":"new"}"#]);
    db.records().unwrap().keep(&s, listing, &["old".into(), "unknown".into()]).unwrap();
    assert_eq!(db.records().unwrap().end_listing(&s, listing).unwrap().deleted, 0);
    assert_eq!(live(db, &s), vec!["new", "old"]);
}

pub fn a_second_begin_supersedes_the_first_and_ending_the_first_deletes_nothing(db: &dyn Database) {
    let s = scope("c");
    save(db, &s, &[r#"{"id":"1"}"#, r#"{"id":"2"}"#]);
    let first = db.records().unwrap().begin_listing(&s).unwrap();
    save(db, &s, &[r#"{"id":"1"}"#]);
    let second = db.records().unwrap().begin_listing(&s).unwrap();
    assert!(second > first);
    let refused = db.records().unwrap().end_listing(&s, first);
    assert!(matches!(refused, Err(StoreError::NoListing { open: Some(open), .. }) if open == second), "{refused:?}");
    assert_eq!(live(db, &s), vec!["1", "2"], "nothing deleted");
    assert!(matches!(db.records().unwrap().keep(&s, first, &["1".into()]), Err(StoreError::NoListing { .. })));
    // What the first listing saw does not count for the second.
    assert_eq!(db.records().unwrap().end_listing(&s, second).unwrap().deleted, 2);
}

pub fn an_abandoned_listing_deletes_nothing(db: &dyn Database) {
    let s = scope("c");
    save(db, &s, &[r#"{"id":"1"}"#]);
    let listing = db.records().unwrap().begin_listing(&s).unwrap();
    db.records().unwrap().abandon_listing(&s, listing + 1).unwrap();
    assert_eq!(db.records().unwrap().current_listing(&s).unwrap(), Some(listing), "abandoning another does nothing");
    db.records().unwrap().abandon_listing(&s, listing).unwrap();
    assert_eq!(db.records().unwrap().current_listing(&s).unwrap(), None);
    assert!(db.records().unwrap().end_listing(&s, listing).is_err());
    assert_eq!(live(db, &s), vec!["1"]);
    // Asking about a model never written creates nothing.
    let mut records = db.records().unwrap();
    assert!(records.end_listing(&scope("never"), 1).is_err());
    assert!(!records.connection_exists("never").unwrap());
}

pub fn checkpoints_are_replaced_and_read_back(db: &dyn Database) {
    let mut checkpoints = db.checkpoints().unwrap();
    assert_eq!(checkpoints.get("c", "customers").unwrap(), None);
    checkpoints.save("c", "customers", "one").unwrap();
    checkpoints.save("c", "customers", "two").unwrap();
    checkpoints.save("d", "customers", "other").unwrap();
    assert_eq!(db.checkpoints().unwrap().get("c", "customers").unwrap().as_deref(), Some("two"));
    assert!(db.records().unwrap().connection_exists("d").unwrap(), "a checkpoint makes a connection known");
}

pub fn a_run_lock_is_exclusive_until_dropped(db: &dyn Database) {
    let lease = db.try_lock_run("c").unwrap().expect("a free connection locks");
    assert!(db.try_lock_run("c").unwrap().is_none(), "a second run is refused");
    assert!(db.try_lock_run("d").unwrap().is_some(), "other connections are free");
    drop(lease);
    assert!(db.try_lock_run("c").unwrap().is_some(), "the lock is released");
}

/// Generates a `#[test]` per case for a backend; `$open` makes a fresh,
/// empty database.
#[macro_export]
macro_rules! store_suite {
    ($open:expr) => {
        $crate::store_suite!(@cases $open;
            change_tracking_follows_the_records_cache_semantics,
            timestamps_strictly_increase_so_the_order_is_total,
            keyset_pages_visit_every_record_once,
            scopes_are_isolated,
            ending_a_listing_deletes_only_the_live_records_it_did_not_see,
            records_saved_during_a_listing_by_any_writer_are_never_deleted_by_it,
            a_second_begin_supersedes_the_first_and_ending_the_first_deletes_nothing,
            an_abandoned_listing_deletes_nothing,
            checkpoints_are_replaced_and_read_back,
            a_run_lock_is_exclusive_until_dropped,
        );
    };
    (@cases $open:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let db = $open;
                $crate::store::suite::$case(&*db);
            }
        )*
    };
}
