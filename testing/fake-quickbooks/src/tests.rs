//! End-to-end tests through real HTTP (`start()` + a blocking client).

use super::*;
use serde_json::json;
use std::collections::HashMap;

const REALM: &str = "9341456";
const TOKEN: &str = "secret-token";

struct Client {
    base: String,
    agent: ureq::Agent,
    // Keeps the server alive for the test.
    _running: RunningFake,
}

struct Answer {
    status: u16,
    content_type: String,
    retry_after: Option<String>,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    fn customers(&self) -> Vec<Value> {
        self.json()["QueryResponse"]["Customer"].as_array().cloned().unwrap_or_default()
    }
    fn ids(&self) -> Vec<String> {
        self.customers().iter().map(|c| c["Id"].as_str().unwrap().to_owned()).collect()
    }
}

impl Client {
    fn new(fake: &FakeQbo) -> Client {
        let running = fake.start().expect("start");
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Client { base: running.base_url(), agent, _running: running }
    }

    fn send(&self, method: &str, path: &str, params: &[(&str, &str)], json: bool, token: Option<&str>) -> Answer {
        let url = format!("{}{}", self.base, path);
        let mut req = match method {
            "GET" => self.agent.get(&url),
            "DELETE" => self.agent.delete(&url),
            _ => unreachable!(),
        };
        for (k, v) in params {
            req = req.query(*k, *v);
        }
        if json {
            req = req.header("Accept", "application/json");
        }
        if let Some(token) = token {
            req = req.header("Authorization", &format!("Bearer {token}"));
        }
        let mut resp = req.call().expect("HTTP");
        Answer {
            status: resp.status().as_u16(),
            content_type: header(&resp, "content-type"),
            retry_after: resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned()),
            text: resp.body_mut().read_to_string().expect("body"),
        }
    }

    fn query(&self, q: &str) -> Answer {
        self.send(
            "GET",
            &format!("/v3/company/{REALM}/query"),
            &[("query", q), ("minorversion", "75")],
            true,
            Some(TOKEN),
        )
    }

    fn cdc(&self, since: &str) -> Answer {
        self.send(
            "GET",
            &format!("/v3/company/{REALM}/cdc"),
            &[("entities", "Customer"), ("changedSince", since), ("minorversion", "75")],
            true,
            Some(TOKEN),
        )
    }

    fn post(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{}", self.base, path);
        let mut resp = match body {
            Some(b) => self.agent.post(&url).header("Content-Type", "application/json").send(b.to_string()),
            None => self.agent.post(&url).send_empty(),
        }
        .expect("HTTP");
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn header<B>(resp: &ureq::http::Response<B>, name: &str) -> String {
    resp.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

fn fake() -> FakeQbo {
    FakeQbo::new(REALM, TOKEN)
}

fn ts(s: &str) -> DateTime<FixedOffset> {
    parse_timestamp(s).unwrap()
}

fn named(name: &str) -> Value {
    json!({"DisplayName": name})
}

fn assert_fault(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.text);
    let body = answer.json();
    assert_eq!(body["Fault"]["type"], "ValidationFault", "{body}");
    assert_eq!(body["Fault"]["Error"][0]["code"], code, "{body}");
    assert!(body["Fault"]["Error"][0]["Message"].is_string());
    assert!(body["Fault"]["Error"][0]["Detail"].is_string());
    assert!(body["time"].is_string());
}

#[test]
fn round_trip_through_start_with_recorded_customers() {
    let fake = fake();
    let ids = fake.seed_recorded();
    assert_eq!(ids.len(), 33);
    let bill = fake.get("2").unwrap();
    assert_eq!(bill["MetaData"]["LastUpdatedTime"], "2026-05-05T03:08:49-07:00");
    assert_eq!(bill["DisplayName"], "Bill's Windsurf Shop");

    let client = Client::new(&fake);
    assert!(client.base.starts_with("http://127.0.0.1:") && !client.base.ends_with('/'));
    let answer = client.query("SELECT * FROM Customer WHERE DisplayName = 'Bill\\'s Windsurf Shop'");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.content_type, "application/json");
    let body = answer.json();
    assert_eq!(body["QueryResponse"]["Customer"][0], bill);
    assert_eq!(body["QueryResponse"]["startPosition"], 1);
    assert_eq!(body["QueryResponse"]["maxResults"], 1);
    assert_eq!(body["time"], "2026-05-05T05:00:00.000-07:00");

    let records = fake.requests();
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].n, records[0].kind, records[0].status), (1, RequestKind::Query, 200));
    assert!(records[0].query.as_deref().unwrap().contains("Windsurf"));
    assert_eq!((fake.query_requests(), fake.cdc_requests()), (1, 0));
    fake.reset_requests();
    assert!(fake.requests().is_empty());
}

#[test]
fn plain_select_hides_archived_customers() {
    let fake = fake();
    let a = fake.insert(named("A"));
    let b = fake.insert(named("B"));
    let c = fake.insert(json!({"DisplayName": "C", "Active": false}));
    fake.archive(&b);
    let client = Client::new(&fake);
    assert_eq!(client.query("SELECT * FROM Customer").ids(), vec![a.clone()]);
    // Archiving is an update, so B moved to the end of the internal order.
    assert_eq!(
        client.query("select * from customer where Active in (true, false)").ids(),
        vec![a.clone(), c.clone(), b.clone()]
    );
    assert_eq!(client.query("SELECT * FROM Customer WHERE Active = false ORDERBY Id DESC").ids(), vec![c, b.clone()]);
    fake.reactivate(&b);
    // Re-activation is an update: B moves behind A in the internal order.
    assert_eq!(client.query("SELECT * FROM Customer").ids(), vec![a, b]);
    assert_eq!(client.query("SELECT COUNT(*) FROM Customer").json()["QueryResponse"]["totalCount"], 2);
    assert_eq!(
        client.query("SELECT COUNT(*) FROM Customer WHERE Active IN (true,false)").json()["QueryResponse"]
            ["totalCount"],
        3
    );
}

#[test]
fn ties_keep_internal_order_and_an_update_moves_to_the_end() {
    let fake = fake();
    let t = ts("2026-05-05T04:00:00-07:00");
    let ids: Vec<String> = (0..5).map(|i| fake.insert_with_timestamp(named(&format!("c{i}")), t)).collect();
    let client = Client::new(&fake);
    let q = "SELECT * FROM Customer ORDERBY MetaData.LastUpdatedTime STARTPOSITION 1 MAXRESULTS 2";
    assert_eq!(client.query(q).ids(), ids[0..2]);

    // Edit a member of the tie group within the same second: its sort key is
    // unchanged, but the row moves to the end of the group, shifting offsets.
    fake.set_now(t);
    let updated = fake.update(&ids[0], |c| {
        c.insert("Notes".into(), json!("edited"));
    });
    assert_eq!(updated.unwrap()["SyncToken"], "1");
    let page2 = client.query("SELECT * FROM Customer ORDERBY MetaData.LastUpdatedTime STARTPOSITION 3 MAXRESULTS 2");
    assert_eq!(page2.ids(), vec![ids[3].clone(), ids[4].clone()]);
    let all = client.query("SELECT * FROM Customer ORDERBY MetaData.LastUpdatedTime");
    assert_eq!(all.ids(), vec![ids[1].clone(), ids[2].clone(), ids[3].clone(), ids[4].clone(), ids[0].clone()]);
    // Without ORDERBY: internal order too.
    assert_eq!(fake.internal_order(), all.ids());

    // A later edit gets a later timestamp (to the second) and sorts last.
    fake.advance(Duration::milliseconds(1500));
    let c2 = fake.update(&ids[2], |_| {}).unwrap();
    assert_eq!(c2["MetaData"]["LastUpdatedTime"], "2026-05-05T04:00:01-07:00");
    assert_eq!(c2["MetaData"]["CreateTime"], "2026-05-05T04:00:00-07:00");
    assert_eq!(c2["SyncToken"], "1");
    let desc = client.query("SELECT * FROM Customer ORDERBY MetaData.LastUpdatedTime DESC, Id");
    assert_eq!(desc.ids()[0], ids[2]);
    assert_eq!(desc.ids()[1..], [ids[0].clone(), ids[1].clone(), ids[3].clone(), ids[4].clone()]);
}

#[test]
fn paging_with_startposition_and_maxresults() {
    let fake = fake();
    let t = ts("2026-05-04T00:00:00Z");
    let opts = GenerateOptions { shared_timestamp: Some((1500, t)), ..Default::default() };
    let ids = fake.seed_generated(1500, &opts);
    let client = Client::new(&fake);

    let first = client.query("SELECT * FROM Customer");
    assert_eq!(first.customers().len(), 100, "default MAXRESULTS is 100");
    let page =
        client.query("SELECT * FROM Customer ORDERBY MetaData.LastUpdatedTime STARTPOSITION 1001 MAXRESULTS 1000");
    let body = page.json();
    assert_eq!(body["QueryResponse"]["startPosition"], 1001);
    assert_eq!(body["QueryResponse"]["maxResults"], 500);
    assert_eq!(page.ids(), ids[1000..]);
    let empty = client.query("SELECT * FROM Customer STARTPOSITION 1501 MAXRESULTS 10");
    assert_eq!(empty.json(), json!({"QueryResponse": {}, "time": "2026-05-05T05:00:00.000-07:00"}));
    let count =
        client.query("SELECT COUNT(*) FROM Customer WHERE MetaData.LastUpdatedTime = '2026-05-03T17:00:00-07:00'");
    assert_eq!(count.json()["QueryResponse"]["totalCount"], 1500);
    assert_fault(&client.query("SELECT * FROM Customer MAXRESULTS 1001"), 400, "4001");
}

#[test]
fn refusals_are_400_validation_faults() {
    let fake = fake();
    fake.insert(named("x"));
    let client = Client::new(&fake);
    assert_fault(&client.query("SELECT * FROM Customer WHERE Id = '1' OR Id = '2'"), 400, "4000");
    assert_fault(&client.query("SELECT * FROM Customer WHERE Color = 'red'"), 400, "4001");
    assert_fault(&client.query("SELECT * FROM Customer MAXRESULTS 1001"), 400, "4001");
    assert_fault(&client.query("héllo ' wörld"), 400, "4000");
    assert_fault(&client.query(""), 400, "4000");
    let no_query = client.send("GET", &format!("/v3/company/{REALM}/query"), &[], true, Some(TOKEN));
    assert_fault(&no_query, 400, "4000");
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![400; 6]);
}

#[test]
fn xml_without_accept_json() {
    let fake = fake();
    fake.insert(json!({"DisplayName": "Tom & Jerry's"}));
    let client = Client::new(&fake);
    let answer = client.send(
        "GET",
        &format!("/v3/company/{REALM}/query"),
        &[("query", "SELECT * FROM Customer")],
        false,
        Some(TOKEN),
    );
    assert_eq!(answer.status, 200);
    assert_eq!(answer.content_type, "application/xml");
    assert!(
        answer.text.contains(
            r#"<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="2026-05-05T05:00:00.000-07:00">"#
        ),
        "{}",
        answer.text
    );
    assert!(answer.text.contains("<DisplayName>Tom &amp; Jerry&apos;s</DisplayName>"), "{}", answer.text);
    assert!(answer.text.contains(r#"<Customer domain="QBO" sparse="false">"#), "{}", answer.text);
    let fault = client.send("GET", &format!("/v3/company/{REALM}/query"), &[("query", "SELECT")], false, Some(TOKEN));
    assert_eq!((fault.status, fault.content_type.as_str()), (400, "application/xml"));
    assert!(fault.text.contains(r#"<Fault type="ValidationFault"><Error code="4000""#), "{}", fault.text);
}

#[test]
fn unauthorized_and_unknown_realm() {
    let fake = fake();
    let client = Client::new(&fake);
    let path = format!("/v3/company/{REALM}/query");
    for token in [None, Some("wrong")] {
        let answer = client.send("GET", &path, &[("query", "SELECT * FROM Customer")], true, token);
        assert_eq!(answer.status, 401);
        let body = answer.json();
        assert_eq!(body["fault"]["type"], "AUTHENTICATION");
        assert_eq!(body["fault"]["error"][0]["code"], "3200");
        assert_eq!(
            body["fault"]["error"][0]["message"],
            "message=AuthenticationFailed; errorCode=003200; statusCode=401"
        );
        assert!(body["fault"]["error"][0]["detail"].is_string());
    }
    let other = client.send("GET", "/v3/company/123/query", &[("query", "SELECT * FROM Customer")], true, Some(TOKEN));
    assert_eq!(other.status, 403);
    assert_eq!(other.json()["Fault"]["Error"][0]["code"], "3100");
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![401, 401, 403]);
}

#[test]
fn hooks_inject_answers_and_edit_data_between_pages() {
    let fake = fake();
    let t = ts("2026-05-05T04:00:00-07:00");
    let ids: Vec<String> = (0..4).map(|i| fake.insert_with_timestamp(named(&format!("c{i}")), t)).collect();
    let edit_id = ids[0].clone();
    let hook_edit_id = edit_id.clone();
    fake.on_request(move |req, fake| match (req.kind, req.n) {
        (RequestKind::Query, 1) => Some(Injected::throttle(7)),
        (RequestKind::Query, 3) => {
            fake.update(&hook_edit_id, |c| {
                c.insert("DisplayName".into(), json!("edited"));
            });
            None
        }
        (RequestKind::Query, 5) => Some(Injected::unavailable()),
        (RequestKind::Query, 6) => Some(Injected::truncated_json()),
        (RequestKind::Query, 7) => Some(Injected::fault("4000", "Error parsing query", "injected")),
        _ => None,
    });
    let client = Client::new(&fake);
    let q = |start: u32| {
        format!("SELECT * FROM Customer ORDERBY MetaData.LastUpdatedTime STARTPOSITION {start} MAXRESULTS 2")
    };

    let throttled = client.query(&q(1));
    assert_eq!(throttled.status, 429);
    assert_eq!(throttled.retry_after.as_deref(), Some("7"));
    let body = throttled.json();
    assert_eq!(body["fault"]["error"][0]["code"], "3001");
    assert_eq!(body["fault"]["error"][0]["message"], "message=ThrottleExceeded; errorCode=003001; statusCode=429");

    assert_eq!(client.query(&q(1)).ids(), ids[0..2]);
    // The hook edits ids[0] right before page 2 is answered: it gets a newer
    // timestamp and moves to the end, so offset 3 now skips ids[2] entirely.
    let page2 = client.query(&q(3));
    assert_eq!(page2.ids(), vec![ids[3].clone(), edit_id.clone()]);
    assert_eq!(page2.customers()[1]["DisplayName"], "edited");
    assert_eq!(page2.customers()[1]["MetaData"]["LastUpdatedTime"], "2026-05-05T05:00:00-07:00");
    assert_eq!(client.query(&q(5)).json()["QueryResponse"], json!({}));

    assert_eq!(client.query(&q(1)).status, 503);
    let truncated = client.query(&q(1));
    assert_eq!(truncated.status, 200);
    assert!(serde_json::from_str::<Value>(&truncated.text).is_err());
    assert!(truncated.text.starts_with('{'));
    assert_fault(&client.query(&q(1)), 400, "4000");

    fake.clear_hooks();
    assert_eq!(client.query(&q(1)).status, 200);
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 200, 200, 200, 503, 200, 400, 200]);
}

#[test]
fn panicking_hook_answers_500_and_server_survives() {
    let fake = fake();
    fake.on_request(|req, _| if req.n == 1 { panic!("boom") } else { None });
    let client = Client::new(&fake);
    assert_eq!(client.query("SELECT * FROM Customer").status, 500);
    assert_eq!(client.query("SELECT * FROM Customer").status, 200);
}

#[test]
fn cdc_reports_changes_archives_and_tombstones() {
    let fake = fake();
    let old = fake.insert_with_timestamp(named("old"), ts("2026-04-01T00:00:00-07:00"));
    let kept = fake.insert_with_timestamp(named("kept"), ts("2026-04-01T00:00:00-07:00"));
    let gone = fake.insert_with_timestamp(named("gone"), ts("2026-04-01T00:00:00-07:00"));
    fake.advance(Duration::seconds(10));
    fake.archive(&old);
    fake.advance(Duration::seconds(10));
    assert!(fake.delete_outright(&gone));
    assert!(!fake.delete_outright(&gone));
    assert!(fake.get(&gone).is_none());
    assert_eq!(fake.all_customers().len(), 2);

    let client = Client::new(&fake);
    let answer = client.cdc("2026-05-05T05:00:00-07:00");
    assert_eq!(answer.status, 200);
    let body = answer.json();
    let block = &body["CDCResponse"][0]["QueryResponse"][0];
    assert_eq!(block["totalCount"], 2);
    assert_eq!(block["Customer"][0]["Id"], old);
    assert_eq!(block["Customer"][0]["Active"], false);
    assert_eq!(
        block["Customer"][1],
        json!({"Id": gone, "domain": "QBO", "status": "Deleted", "MetaData": {"LastUpdatedTime": "2026-05-05T05:00:20-07:00"}})
    );
    let later = client.cdc("2026-05-05T05:00:21-07:00").json();
    assert_eq!(later["CDCResponse"], json!([{"QueryResponse": [{}]}]));
    let everything = client.cdc("2026-04-06").json();
    assert_eq!(everything["CDCResponse"][0]["QueryResponse"][0]["totalCount"], 2);
    let z = client.cdc("2026-04-05T12:00:21Z").json();
    assert_eq!(z["CDCResponse"][0]["QueryResponse"][0]["Customer"].as_array().unwrap().len(), 2);
    let _ = kept;

    assert_fault(&client.cdc("2026-04-04T04:59:59-07:00"), 400, "4001");
    assert_fault(&client.cdc("last tuesday"), 400, "4001");
    assert_eq!(fake.cdc_requests(), 6);
    // The deleted customer never shows in a query again.
    let all = client.query("SELECT * FROM Customer WHERE Active IN (true, false)");
    assert!(!all.ids().contains(&gone));
}

#[test]
fn read_by_id_and_unknown_paths() {
    let fake = fake();
    let id = fake.insert(json!({"DisplayName": "x", "Active": false}));
    let client = Client::new(&fake);
    let read = client.send("GET", &format!("/v3/company/{REALM}/customer/{id}"), &[], true, Some(TOKEN));
    assert_eq!(read.json()["Customer"]["Id"], id.as_str());
    let missing = client.send("GET", &format!("/v3/company/{REALM}/customer/999"), &[], true, Some(TOKEN));
    assert_fault(&missing, 400, "610");
    let unknown = client.send("GET", "/v3/nonsense/%ff%00", &[("x", "%")], true, Some(TOKEN));
    assert_eq!(unknown.status, 404);
    let deleted = client.send("DELETE", &format!("/v3/company/{REALM}/customer/{id}"), &[], true, Some(TOKEN));
    assert_eq!(deleted.status, 400);
    assert_eq!(fake.requests().iter().filter(|r| r.kind == RequestKind::Other).count(), 4);
}

#[test]
fn admin_api_round_trip() {
    let fake = fake();
    let client = Client::new(&fake);
    let (status, created) =
        client.post("/_fake/customers", Some(json!({"DisplayName": "Node's customer", "Balance": 78.6})));
    assert_eq!(status, 200);
    let id = created["Id"].as_str().unwrap().to_owned();
    assert_eq!(created["SyncToken"], "0");
    assert_eq!(created["Active"], true);

    let (_, now) = client.post("/_fake/clock/advance?seconds=61", None);
    assert_eq!(now["now"], "2026-05-05T05:01:01-07:00");
    let (_, merged) = client.post(&format!("/_fake/customers/{id}"), Some(json!({"Balance": -0.5, "SyncToken": "99"})));
    assert_eq!((merged["Balance"].clone(), merged["SyncToken"].clone()), (json!(-0.5), json!("1")));
    assert_eq!(merged["MetaData"]["LastUpdatedTime"], "2026-05-05T05:01:01-07:00");
    let (_, archived) = client.post(&format!("/_fake/customers/{id}/archive"), None);
    assert_eq!(archived["Active"], false);
    let (_, back) = client.post(&format!("/_fake/customers/{id}/reactivate"), None);
    assert_eq!((back["Active"].clone(), back["SyncToken"].clone()), (json!(true), json!("3")));
    assert_eq!(client.post("/_fake/customers/404/archive", None).0, 404);
    assert_eq!(client.post("/_fake/customers", Some(json!([1]))).0, 400);

    let (_, seeded) = client.post("/_fake/seed/generated?n=10&archived_fraction=0.5", None);
    assert_eq!(seeded.as_array().unwrap().len(), 10);
    let all = client.send("GET", "/_fake/customers", &[], true, None).json();
    assert_eq!(all.as_array().unwrap().len(), 11);

    let (status, _) =
        client.post("/_fake/inject", Some(json!({"respond": "throttle", "kind": "query", "retry_after": 3})));
    assert_eq!(status, 204);
    let throttled = client.query("SELECT * FROM Customer");
    assert_eq!((throttled.status, throttled.retry_after.as_deref()), (429, Some("3")));
    assert_eq!(client.query("SELECT COUNT(*) FROM Customer").json()["QueryResponse"]["totalCount"], 6);

    let deleted = client.send("DELETE", &format!("/_fake/customers/{id}"), &[], true, None);
    assert_eq!(deleted.status, 200);
    assert_eq!(fake.deleted_ids(), vec![id]);
    let log = client.send("GET", "/_fake/requests", &[], true, None).json();
    assert_eq!(log.as_array().unwrap().len(), 2, "admin requests are not logged");
    assert_eq!(log[0]["kind"], "query");
    assert_eq!(log[0]["status"], 429);
}

#[test]
fn insert_fills_in_qbo_fields_and_keeps_given_ones() {
    let fake = fake();
    let a = fake.insert(json!({"DisplayName": "a"}));
    assert_eq!(a, "1");
    let c = fake.get(&a).unwrap();
    assert_eq!(c["MetaData"]["CreateTime"], "2026-05-05T05:00:00-07:00");
    assert_eq!(
        (c["SyncToken"].clone(), c["domain"].clone(), c["sparse"].clone()),
        (json!("0"), json!("QBO"), json!(false))
    );
    let b = fake.insert(json!({"Id": "40", "MetaData": {"CreateTime": "2026-03-31T23:49:28Z"}}));
    assert_eq!(b, "40");
    let c = fake.get(&b).unwrap();
    assert_eq!(c["MetaData"]["CreateTime"], "2026-03-31T16:49:28-07:00");
    assert_eq!(c["MetaData"]["LastUpdatedTime"], "2026-03-31T16:49:28-07:00");
    assert_eq!(fake.insert(json!({})), "41");
    assert_eq!(
        fake.all_customers().iter().map(|c| c["Id"].as_str().unwrap().to_owned()).collect::<Vec<_>>(),
        ["1", "40", "41"]
    );
    fake.set_now(ts("2026-06-01T00:00:00.999Z"));
    assert_eq!(fake.update("1", |_| {}).unwrap()["MetaData"]["LastUpdatedTime"], "2026-05-31T17:00:00-07:00");
    assert!(fake.update("999", |_| {}).is_none());
}

#[test]
fn a_panicking_edit_leaves_data_intact_and_the_fake_usable() {
    let fake = fake();
    let id = fake.insert(named("safe"));
    let clone = fake.clone();
    let id2 = id.clone();
    let outcome = std::thread::spawn(move || {
        clone.update(&id2, |_| panic!("edit failed"));
    })
    .join();
    assert!(outcome.is_err());
    assert_eq!(fake.get(&id).unwrap()["SyncToken"], "0");
    assert_eq!(fake.archive(&id).unwrap()["SyncToken"], "1");
}

#[test]
fn serve_in_an_existing_runtime() {
    let fake = fake();
    fake.insert(named("embedded"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = runtime.spawn(fake.clone().serve(listener));
    let url = format!("http://{addr}/v3/company/{REALM}/query");
    let text = runtime.block_on(async move {
        tokio::task::spawn_blocking(move || {
            ureq::get(&url)
                .query("query", "SELECT * FROM Customer")
                .header("Accept", "application/json")
                .header("Authorization", &format!("Bearer {TOKEN}"))
                .call()
                .unwrap()
                .body_mut()
                .read_to_string()
                .unwrap()
        })
        .await
        .unwrap()
    });
    assert!(text.contains("embedded"));
    server.abort();
}

/// Accepts one HTTP request on a plain socket and answers 202; returns the
/// request's headers (lower-cased names) and body.
fn receive_one_request(listener: std::net::TcpListener) -> (HashMap<String, String>, String) {
    use std::io::{BufRead, BufReader, Read, Write};
    let (stream, _) = listener.accept().unwrap();
    let mut reader = BufReader::new(stream);
    let mut headers = HashMap::new();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap(); // request line
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':').unwrap();
        headers.insert(name.to_ascii_lowercase(), value.trim().to_owned());
    }
    let length: usize = headers["content-length"].parse().unwrap();
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    reader.get_mut().write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    (headers, String::from_utf8(body).unwrap())
}

#[test]
fn admin_notify_sends_a_signed_notification() {
    let fake = fake();
    let client = Client::new(&fake);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/webhooks/quickbooks", listener.local_addr().unwrap());
    let receiver = std::thread::spawn(move || receive_one_request(listener));

    let (status, answer) =
        client.post(&format!("/_fake/notify?url={url}&verifier=the-verifier&ids=5,7&operation=delete"), None);
    assert_eq!((status, answer), (200, json!({"status": 202})));
    let (headers, body) = receiver.join().unwrap();
    assert_eq!(headers["intuit-signature"], intuit_signature("the-verifier", body.as_bytes()));
    let events: Value = serde_json::from_str(&body).unwrap();
    let summary: Vec<(Value, Value)> =
        events.as_array().unwrap().iter().map(|e| (e["intuitentityid"].clone(), e["type"].clone())).collect();
    assert_eq!(
        summary,
        vec![(json!("5"), json!("qbo.customer.deleted.v1")), (json!("7"), json!("qbo.customer.deleted.v1")),]
    );

    assert_eq!(client.post("/_fake/notify?url=x&verifier=v", None).0, 400, "ids missing");
    assert_eq!(client.post(&format!("/_fake/notify?url={url}&verifier=v&ids=1&operation=rename"), None).0, 400);
    // Nobody listens any more: the fake says it could not deliver.
    assert_eq!(client.post(&format!("/_fake/notify?url={url}&verifier=v&ids=1"), None).0, 502);
}
