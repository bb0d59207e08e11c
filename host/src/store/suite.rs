//! The store's semantics as tests, written once against [`Store`] and run
//! against every backend (`store_suite!` in each backend's tests), so that the
//! backends cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{
    Connection, ConnectionSecrets, ConnectionStatus, ConnectionUpdate, LastAction, ListQuery, Outcome, Position,
    Removal, RunEnd, RunRecord, Scope, Store, StoreError, StoredCredentials, StoredRecord, Tokens, Trigger,
    WebhookFormat,
};
use crate::capabilities::records::validate_batch;
use secrecy::ExposeSecret;

fn scope(connection: &str) -> Scope {
    Scope { connection: connection.into(), model: "Customer".into() }
}

fn save(db: &Store, scope: &Scope, texts: &[&str]) -> super::BatchOutcome {
    let records = validate_batch(&texts.iter().map(|t| t.to_string()).collect::<Vec<_>>()).unwrap();
    db.run_writes().unwrap().records.save(scope, &records).unwrap()
}

fn all(db: &Store, scope: &Scope) -> Vec<StoredRecord> {
    db.records.list(scope, &ListQuery { limit: 10_000, ..Default::default() }).unwrap().records
}

fn find(db: &Store, scope: &Scope, id: &str) -> StoredRecord {
    all(db, scope).into_iter().find(|r| r.id == id).unwrap()
}

fn live(db: &Store, scope: &Scope) -> Vec<String> {
    let mut ids: Vec<String> =
        all(db, scope).into_iter().filter(|r| r.last_action != LastAction::Deleted).map(|r| r.id).collect();
    ids.sort();
    ids
}

pub fn change_tracking_follows_the_records_cache_semantics(db: &Store) {
    let s = scope("c");
    let o = save(db, &s, &[r#"{"id":"1","n":1}"#, r#"{"id":"2","n":2}"#]);
    assert_eq!((o.added, o.updated, o.unchanged), (2, 0, 0));
    let first = all(db, &s);
    assert!(first.iter().all(|r| r.last_action == LastAction::Added && r.first_seen_us == r.last_modified_us));

    let o = save(db, &s, &[r#"{"n":1,"id":"1"}"#, r#"{"id":"2","n":3}"#]);
    assert_eq!((o.added, o.updated, o.unchanged), (0, 1, 1));
    let one = find(db, &s, "1");
    assert_eq!(
        one.last_modified_us,
        first.iter().find(|r| r.id == "1").unwrap().last_modified_us,
        "an identical save changes nothing"
    );
    let two = find(db, &s, "2");
    assert_eq!(two.last_action, LastAction::Updated);

    let o = db.run_writes().unwrap().records.delete(&s, &["2".into(), "404".into()]).unwrap();
    assert_eq!(o.deleted, 1);
    let o = db.run_writes().unwrap().records.delete(&s, &["2".into()]).unwrap();
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

pub fn a_batch_mixing_new_changed_unchanged_and_deleted_records_is_saved_in_batch_order(db: &Store) {
    let s = scope("c");
    save(db, &s, &[r#"{"id":"1"}"#, r#"{"id":"2"}"#, r#"{"id":"3"}"#]);
    db.run_writes().unwrap().records.delete(&s, &["3".into()]).unwrap();
    let before = all(db, &s);
    let listing = db.run_writes().unwrap().records.begin_listing(&s).unwrap();
    // New ids before and after stored ones: a backend that tries the batch
    // as new records first meets the stored ids midway.
    let o = save(db, &s, &[r#"{"id":"4"}"#, r#"{"id":"1"}"#, r#"{"id":"2","v":2}"#, r#"{"id":"3"}"#, r#"{"id":"5"}"#]);
    assert_eq!((o.added, o.updated, o.unchanged), (2, 2, 1));
    let after = all(db, &s);
    let order: Vec<&str> = after.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(order, vec!["1", "4", "2", "3", "5"], "the changes in batch order, after the unchanged one");
    assert_eq!(find(db, &s, "1").last_modified_us, before.iter().find(|r| r.id == "1").unwrap().last_modified_us);
    let three = find(db, &s, "3");
    assert_eq!((three.last_action, three.deleted_us), (LastAction::Updated, None), "3 came back");
    assert_eq!(find(db, &s, "4").last_action, LastAction::Added);
    assert_eq!(db.run_writes().unwrap().records.end_listing(&s, listing).unwrap().deleted, 0, "all five were seen");
}

pub fn timestamps_strictly_increase_so_the_order_is_total(db: &Store) {
    let s = scope("c");
    let texts: Vec<String> = (0..500).map(|i| format!(r#"{{"id":"{i}"}}"#)).collect();
    db.run_writes().unwrap().records.save(&s, &validate_batch(&texts).unwrap()).unwrap();
    db.run_writes().unwrap().records.delete(&s, &["3".into(), "4".into()]).unwrap();
    let records = all(db, &s);
    assert!(records.windows(2).all(|w| w[0].last_modified_us < w[1].last_modified_us));
}

pub fn keyset_pages_visit_every_record_once(db: &Store) {
    let s = scope("c");
    let texts: Vec<String> = (0..57).map(|i| format!(r#"{{"id":"{i}"}}"#)).collect();
    db.run_writes().unwrap().records.save(&s, &validate_batch(&texts).unwrap()).unwrap();
    let mut after = None;
    let mut seen = Vec::new();
    loop {
        let page = db.records.list(&s, &ListQuery { after: after.clone(), limit: 10, ..Default::default() }).unwrap();
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

pub fn a_page_can_ask_for_ids_and_actions_together(db: &Store) {
    let s = scope("c");
    save(db, &s, &[r#"{"id":"1"}"#, r#"{"id":"2"}"#, r#"{"id":"3"}"#, r#"{"id":"4"}"#]);
    save(db, &s, &[r#"{"id":"2","v":2}"#]);
    db.run_writes().unwrap().records.delete(&s, &["3".into()]).unwrap();
    let ids = |query: ListQuery| -> Vec<String> {
        db.records.list(&s, &ListQuery { limit: 100, ..query }).unwrap().records.into_iter().map(|r| r.id).collect()
    };
    let wanted = vec!["2".to_string(), "3".to_string(), "4".to_string(), "unknown".to_string()];
    assert_eq!(ids(ListQuery { ids: wanted.clone(), ..Default::default() }), vec!["4", "2", "3"], "in change order");
    let changed = vec![LastAction::Updated, LastAction::Deleted];
    assert_eq!(ids(ListQuery { ids: wanted, actions: changed, ..Default::default() }), vec!["2", "3"], "both filters");
    let page = db.records.list(&s, &ListQuery { ids: vec!["1".into(), "4".into()], limit: 1, ..Default::default() });
    assert!(page.unwrap().has_more, "paging applies to what the filter keeps");
    assert_eq!(db.records.count(&s).unwrap(), 3, "the live records: 3 was deleted");
    assert_eq!(db.records.count(&scope("nobody")).unwrap(), 0);
}

pub fn scopes_are_isolated(db: &Store) {
    save(db, &scope("a"), &[r#"{"id":"1"}"#]);
    save(db, &scope("b"), &[r#"{"id":"1","x":1}"#, r#"{"id":"2"}"#]);
    assert_eq!(live(db, &scope("a")), vec!["1"]);
    assert_eq!(live(db, &scope("b")), vec!["1", "2"]);
    let records = &db.records;
    assert!(records.connection_exists("a").unwrap());
    assert!(!records.connection_exists("nobody").unwrap());
}

pub fn ending_a_listing_deletes_only_the_live_records_it_did_not_see(db: &Store) {
    let s = scope("c");
    save(db, &s, &[r#"{"id":"1"}"#, r#"{"id":"2"}"#, r#"{"id":"3"}"#, r#"{"id":"4"}"#]);
    db.run_writes().unwrap().records.delete(&s, &["4".into()]).unwrap();
    let mut records = db.run_writes().unwrap().records;
    let listing = records.begin_listing(&s).unwrap();
    assert_eq!(records.current_listing(&s).unwrap(), Some(listing));
    drop(records);
    // 1 saved unchanged, 2 saved changed: both seen; 3 never seen.
    let o = save(db, &s, &[r#"{"id":"1"}"#, r#"{"id":"2","changed":true}"#]);
    assert_eq!((o.unchanged, o.updated), (1, 1));
    let o = db.run_writes().unwrap().records.end_listing(&s, listing).unwrap();
    assert_eq!(o.deleted, 1);
    assert_eq!(live(db, &s), vec!["1", "2"]);
    assert_eq!(find(db, &s, "3").last_action, LastAction::Deleted);
    assert_eq!(db.run_writes().unwrap().records.current_listing(&s).unwrap(), None, "the listing is closed");
    assert!(matches!(db.run_writes().unwrap().records.end_listing(&s, listing), Err(StoreError::NoListing { .. })));
}

pub fn records_saved_during_a_listing_by_any_writer_are_never_deleted_by_it(db: &Store) {
    let s = scope("c");
    save(db, &s, &[r#"{"id":"old"}"#]);
    let listing = db.run_writes().unwrap().records.begin_listing(&s).unwrap();
    // Another writer of the connection (another handle) adds a record.
    save(db, &s, &[r#"{"id":"new"}"#]);
    db.run_writes().unwrap().records.keep(&s, listing, &["old".into(), "unknown".into()]).unwrap();
    assert_eq!(db.run_writes().unwrap().records.end_listing(&s, listing).unwrap().deleted, 0);
    assert_eq!(live(db, &s), vec!["new", "old"]);
}

pub fn a_second_begin_supersedes_the_first_and_ending_the_first_deletes_nothing(db: &Store) {
    let s = scope("c");
    save(db, &s, &[r#"{"id":"1"}"#, r#"{"id":"2"}"#]);
    let first = db.run_writes().unwrap().records.begin_listing(&s).unwrap();
    save(db, &s, &[r#"{"id":"1"}"#]);
    let second = db.run_writes().unwrap().records.begin_listing(&s).unwrap();
    assert!(second > first);
    let refused = db.run_writes().unwrap().records.end_listing(&s, first);
    assert!(matches!(refused, Err(StoreError::NoListing { open: Some(open), .. }) if open == second), "{refused:?}");
    assert_eq!(live(db, &s), vec!["1", "2"], "nothing deleted");
    assert!(matches!(
        db.run_writes().unwrap().records.keep(&s, first, &["1".into()]),
        Err(StoreError::NoListing { .. })
    ));
    // What the first listing saw does not count for the second.
    assert_eq!(db.run_writes().unwrap().records.end_listing(&s, second).unwrap().deleted, 2);
}

pub fn an_abandoned_listing_deletes_nothing(db: &Store) {
    let s = scope("c");
    save(db, &s, &[r#"{"id":"1"}"#]);
    let listing = db.run_writes().unwrap().records.begin_listing(&s).unwrap();
    db.run_writes().unwrap().records.abandon_listing(&s, listing + 1).unwrap();
    assert_eq!(
        db.run_writes().unwrap().records.current_listing(&s).unwrap(),
        Some(listing),
        "abandoning another does nothing"
    );
    db.run_writes().unwrap().records.abandon_listing(&s, listing).unwrap();
    assert_eq!(db.run_writes().unwrap().records.current_listing(&s).unwrap(), None);
    assert!(db.run_writes().unwrap().records.end_listing(&s, listing).is_err());
    assert_eq!(live(db, &s), vec!["1"]);
    // Asking about a model never written creates nothing.
    let mut records = db.run_writes().unwrap().records;
    assert!(records.end_listing(&scope("never"), 1).is_err());
    assert!(!db.records.connection_exists("never").unwrap());
}

pub fn checkpoints_are_replaced_and_read_back(db: &Store) {
    let mut checkpoints = db.run_writes().unwrap().checkpoints;
    assert_eq!(checkpoints.get("c", "customers").unwrap(), None);
    checkpoints.save("c", "customers", "one").unwrap();
    checkpoints.save("c", "customers", "two").unwrap();
    checkpoints.save("d", "customers", "other").unwrap();
    assert_eq!(db.run_writes().unwrap().checkpoints.get("c", "customers").unwrap().as_deref(), Some("two"));
    assert!(db.records.connection_exists("d").unwrap(), "a checkpoint makes a connection known");
}

pub fn a_run_lock_is_exclusive_until_dropped(db: &Store) {
    let lease = db.locks.try_lock_run("c").unwrap().expect("a free connection locks");
    assert!(db.locks.try_lock_run("c").unwrap().is_none(), "a second run is refused");
    assert!(db.locks.try_lock_run("d").unwrap().is_some(), "other connections are free");
    drop(lease);
    assert!(db.locks.try_lock_run("c").unwrap().is_some(), "the lock is released");
}

pub fn a_reader_paging_by_cursor_misses_no_write_of_concurrent_writers(db: &Store) {
    let s = scope("c");
    let ids: Vec<String> = (0..200).map(|i| format!("r{i}")).collect();
    let first: Vec<String> = ids.iter().map(|id| format!(r#"{{"id":"{id}","v":0}}"#)).collect();
    db.run_writes().unwrap().records.save(&s, &validate_batch(&first).unwrap()).unwrap();
    let writing = std::sync::atomic::AtomicUsize::new(4);
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    std::thread::scope(|threads| {
        for writer in 0..4u64 {
            let (s, ids, writing) = (&s, &ids, &writing);
            threads.spawn(move || {
                let mut records = db.run_writes().unwrap().records;
                let mut state = writer.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for round in 1..=40u64 {
                    // 10 records of a pseudo-random stretch, each with a new version.
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let start = (state % 190) as usize;
                    let batch: Vec<String> = ids[start..start + 10]
                        .iter()
                        .map(|id| format!(r#"{{"id":"{id}","v":"{writer}.{round}"}}"#))
                        .collect();
                    records.save(s, &validate_batch(&batch).unwrap()).unwrap();
                }
                writing.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        // The reader pages from the start with small pages, following cursors,
        // and keeps going until the writers are done and nothing new comes.
        let records = &db.records;
        let mut after: Option<Position> = None;
        loop {
            let done = writing.load(std::sync::atomic::Ordering::SeqCst) == 0;
            let page = records.list(&s, &ListQuery { after: after.clone(), limit: 7, ..Default::default() }).unwrap();
            for record in &page.records {
                seen.insert(record.id.clone(), record.json.clone());
            }
            if let Some(last) = page.records.last() {
                after = Some(Position { last_modified_us: last.last_modified_us, id: last.id.clone() });
            }
            if page.records.is_empty() && done {
                break;
            }
        }
    });
    let finals: BTreeMap<String, String> = all(db, &s).into_iter().map(|r| (r.id, r.json)).collect();
    assert_eq!(seen.len(), finals.len());
    for (id, json) in &finals {
        assert_eq!(&seen[id], json, "the reader missed the last write of {id}");
    }
}

/// The provider and configuration key the suite's connections use; the
/// store knows no provider, only what a route names.
const PROVIDER: &str = "example";
const ACCOUNT_KEY: &str = "account.id";

/// The route of a notification about `account` of the suite's provider.
fn route(account: &str) -> super::NotificationRoute<'_> {
    super::NotificationRoute { provider: PROVIDER, account_key: ACCOUNT_KEY, account }
}

pub(crate) fn connection(id: &str, account: &str) -> Connection {
    Connection {
        id: id.into(),
        provider: PROVIDER.into(),
        base_url: "https://provider.example".into(),
        config: BTreeMap::from([(ACCOUNT_KEY.to_owned(), account.to_owned())]),
        every: Some(Duration::from_secs(3600)),
        paused: false,
        status: ConnectionStatus::Idle,
        status_message: None,
        failures: 0,
        next_run_at_us: None,
        webhook_url: Some("https://app.example/hooks".into()),
        webhook_format: None,
        integration: None,
        notified_at_us: None,
        created_us: 0,
        updated_us: 0,
    }
}

fn oauth() -> StoredCredentials {
    StoredCredentials::OAuth {
        token_url: "https://tokens.example".into(),
        client_id: "client".into(),
        client_secret: "client-secret".into(),
        refresh_token: "refresh-1".into(),
        access_token: None,
        access_expires_us: None,
        access_issued_us: None,
    }
}

pub fn connections_keep_their_schedule_credentials_and_secrets(db: &Store) {
    let connections = &db.connections;
    let secrets =
        ConnectionSecrets { webhook_secret: Some("hook-secret".into()), verifier_token: Some("verifier".into()) };
    connections.insert(&connection("a", "1"), &oauth(), &secrets).unwrap();
    let nango = Connection {
        integration: Some("qbo-prod".into()),
        webhook_format: Some(WebhookFormat::Nango),
        ..connection("b", "2")
    };
    connections.insert(&nango, &StoredCredentials::AccessToken("token".into()), &Default::default()).unwrap();
    let b = connections.get("b").unwrap().unwrap();
    assert_eq!((b.integration.as_deref(), b.webhook_format), (Some("qbo-prod"), Some(WebhookFormat::Nango)));
    assert_eq!((b.integration_key(), connection("x", "9").integration_key()), ("qbo-prod".into(), PROVIDER.into()));
    assert!(matches!(
        connections.insert(&connection("a", "1"), &oauth(), &Default::default()),
        Err(StoreError::ConnectionExists(_))
    ));
    let a = connections.get("a").unwrap().unwrap();
    assert_eq!(
        (a.config[ACCOUNT_KEY].as_str(), a.provider.as_str(), a.every),
        ("1", PROVIDER, Some(Duration::from_secs(3600)))
    );
    assert_eq!(a.webhook_url.as_deref(), Some("https://app.example/hooks"));
    assert_eq!(connections.list().unwrap().len(), 2);
    let stored = connections.secrets("a").unwrap().expect("its secrets");
    let text = |secret: &Option<secrecy::SecretString>| secret.as_ref().map(|s| s.expose_secret().to_owned());
    assert_eq!(
        (text(&stored.webhook_secret), text(&stored.verifier_token)),
        (text(&secrets.webhook_secret), text(&secrets.verifier_token))
    );
    let tokens: Vec<String> =
        connections.verifier_tokens().unwrap().iter().map(|t| t.expose_secret().to_owned()).collect();
    assert_eq!(tokens, vec!["verifier".to_string()]);

    // A refresh stores the rotated token with the access token.
    connections
        .save_tokens(
            "a",
            &Tokens { access_token: "access".into(), access_expires_us: 99, refresh_token: Some("refresh-2".into()) },
        )
        .unwrap();
    match connections.credentials("a").unwrap() {
        Some(StoredCredentials::OAuth { refresh_token, access_token, access_expires_us, .. }) => {
            assert_eq!(
                (refresh_token.expose_secret(), access_token.as_ref().map(|t| t.expose_secret()), access_expires_us),
                ("refresh-2", Some("access"), Some(99))
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{:?}", connections.credentials("a").unwrap()).contains("refresh-2"), "Debug hides secrets");

    let updated = connections
        .update(
            "a",
            &ConnectionUpdate {
                paused: Some(true),
                every: Some(None),
                status: Some(ConnectionStatus::Failing),
                status_message: Some(Some("why".into())),
                failures: Some(3),
                next_run_at_us: Some(Some(42)),
            },
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            updated.paused,
            updated.every,
            updated.status,
            updated.status_message.as_deref(),
            updated.failures,
            updated.next_run_at_us
        ),
        (true, None, ConnectionStatus::Failing, Some("why"), 3, Some(42))
    );
    assert!(connections.update("nobody", &ConnectionUpdate::default()).unwrap().is_none());
    assert!(connections.remove("a", true).unwrap().connection);
    assert!(!connections.remove("a", true).unwrap().connection);
    assert!(connections.credentials("a").unwrap().is_none());
}

pub fn due_connections_follow_the_schedule_pauses_and_notifications(db: &Store) {
    let connections = &db.connections;
    for (id, realm) in [("new", "1"), ("later", "2"), ("paused", "3"), ("reauth", "4")] {
        connections.insert(&connection(id, realm), &oauth(), &Default::default()).unwrap();
    }
    connections.update("later", &ConnectionUpdate { next_run_at_us: Some(Some(1_000)), ..Default::default() }).unwrap();
    connections.update("paused", &ConnectionUpdate { paused: Some(true), ..Default::default() }).unwrap();
    connections
        .update("reauth", &ConnectionUpdate { status: Some(ConnectionStatus::NeedsReauth), ..Default::default() })
        .unwrap();
    let due = |c: &std::sync::Arc<dyn super::Connections>, now| -> BTreeSet<String> {
        c.due(now, Duration::from_micros(100), 100).unwrap().into_iter().map(|c| c.id).collect()
    };
    assert_eq!(due(connections, 500), BTreeSet::from(["new".to_string()]));
    assert_eq!(due(connections, 1_000), BTreeSet::from(["new".to_string(), "later".to_string()]));
    // A notification makes `later` due once it has been quiet for 100 µs.
    connections.update("new", &ConnectionUpdate { next_run_at_us: Some(Some(10_000)), ..Default::default() }).unwrap();
    assert_eq!(connections.notify(&route("2"), 600, None).unwrap(), vec!["later".to_string()]);
    assert!(connections.notify(&route("999"), 600, None).unwrap().is_empty());
    let elsewhere = super::NotificationRoute { provider: "another", ..route("2") };
    assert!(connections.notify(&elsewhere, 600, None).unwrap().is_empty(), "another provider's account 2 is not ours");
    let other_key = super::NotificationRoute { account_key: "other", ..route("2") };
    assert!(connections.notify(&other_key, 600, None).unwrap().is_empty(), "matched by the key the provider names");
    assert!(due(connections, 650).is_empty());
    assert_eq!(due(connections, 700), BTreeSet::from(["later".to_string()]));
    connections.clear_notification("later", 650).unwrap();
    assert!(due(connections, 700).is_empty(), "the run that started after it covers the notification");

    // A failing connection waits out its backoff, notified or not.
    connections.notify(&route("2"), 800, None).unwrap();
    connections
        .update(
            "later",
            &ConnectionUpdate {
                status: Some(ConnectionStatus::Failing),
                next_run_at_us: Some(Some(5_000)),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(due(connections, 1_000).is_empty(), "notified, but backing off");
    assert_eq!(due(connections, 5_000), BTreeSet::from(["later".to_string()]));

    // A notification runs only the connections of the app that signed it.
    let own = ConnectionSecrets { webhook_secret: None, verifier_token: Some("app-b".into()) };
    connections.insert(&connection("other-app", "2"), &oauth(), &own).unwrap();
    assert_eq!(connections.notify(&route("2"), 900, Some("app-b")).unwrap(), vec!["other-app".to_string()]);
    assert!(connections.notify(&route("2"), 900, Some("app-c")).unwrap().is_empty());
    assert_eq!(
        connections.notify(&route("2"), 900, None).unwrap(),
        vec!["later".to_string()],
        "the server's token: connections without their own"
    );
}

pub fn due_connections_come_soonest_first_up_to_the_limit(db: &Store) {
    let connections = &db.connections;
    // Ahead of the due ones in time: connections that are not due (paused,
    // needing re-authorisation, backing off though notified); a limit
    // counts only due ones.
    for (n, id) in ["a-paused", "b-reauth", "c-failing", "d", "e", "f", "g-later"].iter().enumerate() {
        connections.insert(&connection(id, &n.to_string()), &oauth(), &Default::default()).unwrap();
        let next = if *id == "g-later" { 10_000 } else { 100 + n as i64 };
        connections.update(id, &ConnectionUpdate { next_run_at_us: Some(Some(next)), ..Default::default() }).unwrap();
    }
    connections.update("a-paused", &ConnectionUpdate { paused: Some(true), ..Default::default() }).unwrap();
    let reauth = ConnectionUpdate { status: Some(ConnectionStatus::NeedsReauth), ..Default::default() };
    connections.update("b-reauth", &reauth).unwrap();
    let failing = ConnectionUpdate {
        status: Some(ConnectionStatus::Failing),
        next_run_at_us: Some(Some(20_000)),
        ..Default::default()
    };
    connections.update("c-failing", &failing).unwrap();
    connections.notify(&route("2"), 50, None).unwrap();
    let due = |now, limit| -> Vec<String> {
        connections.due(now, Duration::from_micros(10), limit).unwrap().into_iter().map(|c| c.id).collect()
    };
    assert_eq!(due(1_000, 2), ["d", "e"], "soonest first, the not-due ones skipped before the limit");
    assert_eq!(due(1_000, 100), ["d", "e", "f"]);
    assert_eq!(due(1_000, 0), Vec::<String>::new());
    // A notified connection (not failing) is due once quiet, in its place by next run.
    connections.notify(&route("6"), 50, None).unwrap();
    assert_eq!(due(1_000, 100), ["d", "e", "f", "g-later"]);
    assert_eq!(due(55, 100), Vec::<String>::new(), "notified 5 µs ago: not quiet yet");
    // Never run (no time set): first of all, whatever else is due.
    connections.insert(&connection("h-new", "7"), &oauth(), &Default::default()).unwrap();
    assert_eq!(due(1_000, 2), ["h-new", "d"]);
    assert_eq!(due(1_000, 100), ["h-new", "d", "e", "f", "g-later"]);
    assert_eq!(due(55, 100), ["h-new"]);
}

pub fn run_history_pages_newest_first_and_closes_abandoned_runs(db: &Store) {
    let connections = &db.connections;
    connections.insert(&connection("c", "1"), &oauth(), &Default::default()).unwrap();
    connections.notify(&route("1"), 25, None).unwrap();
    let runs = &db.runs;
    let run = |id: &str, started_us: i64| RunRecord {
        id: id.into(),
        connection: "c".into(),
        trigger: Trigger::Schedule,
        started_us,
        ended_us: None,
        outcome: None,
        summary: None,
        error: None,
        worker: Some("host:1".into()),
    };
    let end =
        |id: &'static str,
         ended_us: i64,
         outcome: Outcome,
         summary: Option<&'static str>,
         error: Option<&'static str>| { RunEnd { id, connection: "c", ended_us, outcome, summary, error } };
    let idle = ConnectionUpdate {
        status: Some(ConnectionStatus::Idle),
        next_run_at_us: Some(Some(1000)),
        ..Default::default()
    };
    assert_eq!(runs.begin(&run("r1", 10)).unwrap(), None, "nothing abandoned");
    let begun = connections.get("c").unwrap().unwrap();
    assert_eq!(begun.status, ConnectionStatus::Running, "beginning marks the connection running");
    assert_eq!(begun.notified_at_us, Some(25), "a notification after the run's start stays");
    runs.end(&end("r1", 15, Outcome::Success, Some(r#"{"added":1}"#), None), &idle).unwrap();
    let ended = connections.get("c").unwrap().unwrap();
    assert_eq!((ended.status, ended.next_run_at_us), (ConnectionStatus::Idle, Some(1000)), "ending sets the schedule");
    assert_eq!(runs.begin(&run("r2", 30)).unwrap(), None);
    assert_eq!(connections.get("c").unwrap().unwrap().notified_at_us, None, "read by the run that began after it");
    runs.end(&end("r2", 35, Outcome::Failure, None, Some("boom")), &idle).unwrap();
    assert_eq!(runs.begin(&run("r3", 40)).unwrap(), None);
    let (page, more) = runs.list("c", None, 2).unwrap();
    assert_eq!(page.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), vec!["r3", "r2"]);
    assert!(more);
    let last = page.last().unwrap();
    let (rest, more) = runs.list("c", Some((last.started_us, last.id.clone())), 2).unwrap();
    assert_eq!(rest.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), vec!["r1"]);
    assert!(!more);
    assert_eq!(rest[0].summary.as_deref(), Some(r#"{"added":1}"#));
    // r3's worker died: the next run closes it and says since when its changes went untold.
    assert_eq!(runs.begin(&run("r4", 99)).unwrap(), Some(40), "r3 never ended");
    let (page, _) = runs.list("c", None, 2).unwrap();
    let r3 = &page[1];
    assert_eq!(
        (r3.id.as_str(), r3.outcome, r3.ended_us, r3.worker.as_deref()),
        ("r3", Some(Outcome::Failure), Some(99), Some("host:1"))
    );
    assert_eq!(r3.error.as_deref(), Some(super::history::ABANDONED));
    assert_eq!(page[0].outcome, None, "r4 goes on");
}

pub fn webhook_deliveries_are_claimed_by_one_worker_at_a_time(db: &Store) {
    let webhooks = &db.deliveries;
    let first =
        webhooks.enqueue("c", Some("r1"), "https://app.example/hooks", r#"{"n":1}"#, WebhookFormat::SyncHost).unwrap();
    let second = webhooks.enqueue("c", None, "https://app.example/hooks", r#"{"n":2}"#, WebhookFormat::Nango).unwrap();
    let now = crate::time::now_us() + 1_000_000;
    let claimed = webhooks.claim_due(now, 60_000_000, 1).unwrap();
    let again = db.deliveries.claim_due(now, 60_000_000, 10).unwrap();
    assert_eq!(claimed.len() + again.len(), 2, "each claimed once");
    assert!(db.deliveries.claim_due(now, 60_000_000, 10).unwrap().is_empty(), "leased");
    webhooks.delivered(first, 1, now).unwrap();
    webhooks.failed(second, 3, "503", None).unwrap();
    let (listed, more) = webhooks.list("c", None, 10).unwrap();
    assert!(!more);
    let statuses: Vec<(i64, &str, u32, WebhookFormat)> =
        listed.iter().map(|d| (d.id, d.status.as_str(), d.attempts, d.format)).collect();
    assert_eq!(
        statuses,
        vec![(second, "given_up", 3, WebhookFormat::Nango), (first, "delivered", 1, WebhookFormat::SyncHost)],
        "each keeps the format it was queued in"
    );
}

pub fn removing_a_connection_gives_up_its_pending_webhooks_and_a_purge_deletes_all_it_stored(db: &Store) {
    let invoices = |connection: &str| Scope { connection: connection.into(), model: "Invoice".into() };
    let mut deliveries = BTreeMap::new();
    for (id, realm) in [("gone", "1"), ("kept", "2")] {
        db.connections.insert(&connection(id, realm), &oauth(), &Default::default()).unwrap();
        save(db, &scope(id), &[r#"{"id":"1"}"#, r#"{"id":"2"}"#]);
        save(db, &invoices(id), &[r#"{"id":"9"}"#]);
        db.run_writes().unwrap().checkpoints.save(id, "customers", "{}").unwrap();
        db.runs
            .begin(&RunRecord {
                id: format!("{id}-run"),
                connection: id.into(),
                trigger: Trigger::Schedule,
                started_us: 10,
                ended_us: None,
                outcome: None,
                summary: None,
                error: None,
                worker: None,
            })
            .unwrap();
        let webhooks = &db.deliveries;
        let delivered = webhooks.enqueue(id, None, "https://app.example/hooks", "{}", WebhookFormat::SyncHost).unwrap();
        webhooks.delivered(delivered, 1, 5).unwrap();
        let pending = webhooks.enqueue(id, None, "https://app.example/hooks", "{}", WebhookFormat::SyncHost).unwrap();
        deliveries.insert(id, (delivered, pending));
    }
    let stored = |id: &str| {
        let (runs, _) = db.runs.list(id, None, 10).unwrap();
        let (webhooks, _) = db.deliveries.list(id, None, 10).unwrap();
        (
            all(db, &scope(id)).len() + all(db, &invoices(id)).len(),
            db.run_writes().unwrap().checkpoints.get(id, "customers").unwrap().is_some(),
            runs.len(),
            webhooks.len(),
        )
    };
    assert_eq!(stored("gone"), (3, true, 1, 2));

    // A plain remove keeps the records and gives up what was not delivered.
    let connections = &db.connections;
    assert_eq!(connections.remove("gone", false).unwrap(), Removal { connection: true, records: 0, purged: false });
    let (listed, _) = db.deliveries.list("gone", None, 10).unwrap();
    let statuses: Vec<(i64, &str, Option<&str>)> =
        listed.iter().map(|d| (d.id, d.status.as_str(), d.last_error.as_deref())).collect();
    let (delivered, pending) = deliveries["gone"];
    assert_eq!(
        statuses,
        vec![(pending, "given_up", Some("the connection was removed")), (delivered, "delivered", None)],
        "its secret is gone: nothing more is sent in its name"
    );
    assert_eq!(stored("gone"), (3, true, 1, 2), "kept without --purge");

    // A purge after that still reaches what it left, and only that.
    assert_eq!(connections.remove("gone", true).unwrap(), Removal { connection: false, records: 3, purged: true });
    assert_eq!(stored("gone"), (0, false, 0, 0));
    assert!(!db.records.connection_exists("gone").unwrap());
    assert_eq!(stored("kept"), (3, true, 1, 2), "another connection's records, checkpoint, runs, webhooks stay");
    assert!(connections.get("kept").unwrap().is_some() && connections.credentials("kept").unwrap().is_some());
    assert_eq!(connections.remove("gone", true).unwrap(), Removal::default(), "nothing left to purge");

    // A connection and all it stored, in one step.
    assert_eq!(connections.remove("kept", true).unwrap(), Removal { connection: true, records: 3, purged: true });
    assert_eq!(stored("kept"), (0, false, 0, 0));
}

/// Generates a `#[test]` per case for a backend; `$open` makes a fresh,
/// empty database, or `None` when the backend is not available here (the
/// test then passes, having said why it skipped).
#[macro_export]
macro_rules! store_suite {
    ($open:expr) => {
        $crate::store_suite!(@cases $open;
            change_tracking_follows_the_records_cache_semantics,
            a_batch_mixing_new_changed_unchanged_and_deleted_records_is_saved_in_batch_order,
            timestamps_strictly_increase_so_the_order_is_total,
            keyset_pages_visit_every_record_once,
            a_page_can_ask_for_ids_and_actions_together,
            scopes_are_isolated,
            ending_a_listing_deletes_only_the_live_records_it_did_not_see,
            records_saved_during_a_listing_by_any_writer_are_never_deleted_by_it,
            a_second_begin_supersedes_the_first_and_ending_the_first_deletes_nothing,
            an_abandoned_listing_deletes_nothing,
            checkpoints_are_replaced_and_read_back,
            a_run_lock_is_exclusive_until_dropped,
            a_reader_paging_by_cursor_misses_no_write_of_concurrent_writers,
            connections_keep_their_schedule_credentials_and_secrets,
            due_connections_follow_the_schedule_pauses_and_notifications,
            due_connections_come_soonest_first_up_to_the_limit,
            run_history_pages_newest_first_and_closes_abandoned_runs,
            webhook_deliveries_are_claimed_by_one_worker_at_a_time,
            removing_a_connection_gives_up_its_pending_webhooks_and_a_purge_deletes_all_it_stored,
        );
    };
    (@cases $open:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let Some(db) = $open else { return };
                $crate::store::suite::$case(&*db);
            }
        )*
    };
}
