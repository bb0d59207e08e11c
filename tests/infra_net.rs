//! What the network does to `sync-host serve` (issue 21, items 4, 5 and 7;
//! docs/webhooks.md "Delivery", docs/api.md "Slow and idle clients"): a
//! webhook receiver that hangs or trickles, idle and half-sent connections
//! to the API, and thousands of garbage requests. Real processes over
//! loopback; each test ends with the store equal to the fake's truth.

use e2e_tests::*;
use serde_json::Value;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const SECRET: &str = "infra-net-webhook-secret";

fn deliveries(serve: &ServeProcess, id: &str) -> Vec<Value> {
    let (status, body) = serve.api.get(&format!("/connections/{id}/deliveries?limit=1000"), &[]);
    assert_eq!(status, 200, "{body}");
    body["deliveries"].as_array().unwrap().clone()
}

fn finished_runs(serve: &ServeProcess, id: &str) -> usize {
    let (status, body) = serve.api.get(&format!("/connections/{id}/runs?limit=1000"), &[]);
    assert_eq!(status, 200, "{body}");
    body["runs"].as_array().unwrap().iter().filter(|r| !r["outcome"].is_null()).count()
}

fn metric(serve: &ServeProcess, name: &str) -> f64 {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let text =
        agent.get(&format!("{}/metrics", serve.api.base_url)).call().unwrap().body_mut().read_to_string().unwrap();
    text.lines()
        .find(|line| line.starts_with(name) && line[name.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .map(|v| v.parse().unwrap())
        .unwrap_or(0.0)
}

fn address(serve: &ServeProcess) -> String {
    serve.api.base_url.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection (EOF or reset) or `within`
/// passes; returns what it read and whether it was closed.
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let started = Instant::now();
    let mut data = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    while started.elapsed() < within {
        match stream.read(&mut buffer) {
            Ok(0) => return (data, true),
            Ok(n) => data.extend_from_slice(&buffer[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return (data, true),
        }
    }
    (data, false)
}

fn status_of(answer: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(answer.get(..answer.len().min(64))?).ok()?;
    let rest = text.strip_prefix("HTTP/1.1 ").or_else(|| text.strip_prefix("HTTP/1.0 "))?;
    rest.get(..3)?.parse().ok()
}

#[test]
fn a_hung_receiver_delays_no_other_connection_and_a_shutdown_does_not_wait_for_it() {
    let harness = Harness::new(company(150, 10, 0.0));
    let hung = StallingReceiver::start(Stall::Hang);
    let trickling = StallingReceiver::start(Stall::Trickle);
    let healthy = WebhookReceiver::start();
    for (id, url) in [("hung", &hung.url), ("trickling", &trickling.url), ("healthy", &healthy.url)] {
        add_connection(
            &harness.db(),
            id,
            &harness.base_url,
            &["--access-token", TOKEN, "--every", "1h", "--webhook-url", url, "--webhook-secret", SECRET],
        );
    }
    let serve = ServeProcess::start_with(
        &harness.db(),
        &["--schedule", "--webhook-timeout-secs", "15", "--webhook-connect-timeout-secs", "2", "-v"],
        &[],
    );

    // The first runs' webhooks: the two bad receivers accept theirs and keep
    // the attempts hanging.
    wait_until("both bad receivers hold an attempt", Duration::from_secs(60), || {
        hung.open() == 1 && trickling.open() == 1 && trickling.trickled() > 0
    });
    wait_until("the healthy receiver's first webhook", Duration::from_secs(30), || healthy.received().len() == 1);
    // A change upstream and a run of `healthy` asked for now, while both
    // attempts still hang: its webhook is not kept behind them.
    let id = harness.fake.ids()[0].clone();
    harness.fake.advance(chrono::Duration::minutes(5));
    harness.fake.update(&id, |c| {
        c.insert("DisplayName".into(), Value::String("Changed while a receiver hangs".into()));
    });
    let (status, body) = serve.api.request("POST", "/connections/healthy/sync", &[]);
    assert_eq!(status, 202, "{body}");
    wait_until("the healthy receiver's second webhook", Duration::from_secs(30), || healthy.received().len() == 2);
    let second: Value = serde_json::from_str(&healthy.received()[1].1).unwrap();
    assert_eq!((second["updated"].as_u64(), second["success"].as_bool()), (Some(1), Some(true)), "{second}");
    for (id, receiver) in [("hung", &hung), ("trickling", &trickling)] {
        let delivery = deliveries(&serve, id).remove(0);
        assert_eq!(
            (receiver.accepted(), receiver.open(), delivery["attempts"].as_u64()),
            (1, 1, Some(0)),
            "{id}'s first attempt is still in flight: {delivery}"
        );
    }

    // Each bad attempt ends at the total timeout as a failure, to be retried.
    for id in ["hung", "trickling"] {
        wait_until(&format!("{id}'s first attempt to fail"), Duration::from_secs(60), || {
            deliveries(&serve, id)[0]["attempts"].as_u64() >= Some(1)
        });
        let delivery = deliveries(&serve, id).remove(0);
        assert_eq!(delivery["status"], "pending", "{delivery}");
        let error = delivery["last_error"].as_str().unwrap();
        assert!(error.contains("did not answer within 15s"), "{id}: {error}");
    }
    assert!(trickling.trickled() >= 5, "the trickling receiver sent bytes all along");
    assert!(metric(&serve, r#"sync_webhook_deliveries_total{outcome="retried"}"#) >= 2.0);
    assert_eq!(metric(&serve, r#"sync_webhook_deliveries_total{outcome="delivered"}"#), 2.0);
    let log = serve.stderr();
    let warning =
        log.lines().find(|line| line.contains("did not answer within 15s (--webhook-timeout-secs); trying again in"));
    eprintln!("the operator sees: {warning:?}");
    assert!(warning.is_some(), "{log}");
    // Retried on the backoff: the hung receiver gets a second attempt.
    wait_until("the hung receiver's second attempt", Duration::from_secs(30), || hung.accepted() == 2);
    let (ok, _, _) = serve.terminate_within(Duration::from_secs(10));
    assert!(ok);

    // With a timeout of a minute, SIGTERM does not wait for the attempt.
    let serve = ServeProcess::start_with(&harness.db(), &["--schedule", "--webhook-timeout-secs", "60"], &[]);
    wait_until("an attempt in flight again", Duration::from_secs(60), || hung.accepted() == 3 && hung.open() == 1);
    let (ok, took, log) = serve.terminate_within(Duration::from_secs(30));
    eprintln!("SIGTERM with an attempt hanging (timeout 60 s): exited in {took:?}");
    assert!(ok, "{log}");
    assert!(took < Duration::from_secs(5), "SIGTERM waited out the hung attempt: {took:?}\n{log}");
    // Still pending in the store: the cut attempt counts as failed.
    let (kept, _) = harness.database().deliveries.list("hung", None, 10).unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].status, sync_host::store::DeliveryStatus::Pending, "{kept:?}");
    assert!(kept[0].last_error.as_deref().unwrap().starts_with("interrupted: the host shut down"), "{kept:?}");
    assert!(kept[0].attempts >= 3, "{kept:?}");

    // The receivers recover; the next start delivers what they missed.
    hung.set(Stall::Answer);
    trickling.set(Stall::Answer);
    let serve = ServeProcess::start_with(&harness.db(), &["--schedule"], &[]);
    wait_until("the missed webhooks", Duration::from_secs(60), || {
        hung.received().len() == 1 && trickling.received().len() == 1
    });
    for (id, receiver) in [("hung", &hung), ("trickling", &trickling)] {
        let (headers, body) = receiver.received().remove(0);
        assert_eq!(headers.get("x-sync-signature"), Some(&sync_host::service::webhooks::sign(SECRET, body.as_bytes())));
        let webhook: Value = serde_json::from_str(&body).unwrap();
        assert_eq!((webhook["connection_id"].as_str(), webhook["added"].as_u64()), (Some(id), Some(183)));
        wait_until("the delivery recorded", Duration::from_secs(10), || {
            deliveries(&serve, id)[0]["status"] == "delivered"
        });
    }
    assert_eq!(healthy.received().len(), 2, "nothing sent twice to the healthy receiver");
    // The two connections that ran only before the change catch up.
    for id in ["hung", "trickling"] {
        let (status, body) = serve.api.request("POST", &format!("/connections/{id}/sync"), &[]);
        assert_eq!(status, 202, "{body}");
        wait_until(&format!("{id}'s second run"), Duration::from_secs(60), || finished_runs(&serve, id) == 2);
    }
    for id in ["hung", "trickling", "healthy"] {
        harness.connection_as(id).assert_store_matches_upstream();
    }
}

#[test]
fn idle_connections_cannot_exhaust_the_server_and_the_scheduler_keeps_running() {
    let harness = Harness::new(company(100, 10, 0.0));
    add_connection(&harness.db(), "acme", &harness.base_url, &["--access-token", TOKEN, "--every", "2s"]);
    let serve = ServeProcess::start_with(
        &harness.db(),
        &["--schedule", "--max-connections", "20", "--api-idle-timeout-secs", "3", "-v"],
        &[],
    );
    wait_until("the first run", Duration::from_secs(60), || finished_runs(&serve, "acme") >= 1);
    let before = serve.open_files();

    // A hundred connections that never send a byte.
    let mut idle: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(address(&serve)).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let during = serve.open_files();
    eprintln!("{before} descriptors open before, {during} with 100 idle clients");
    assert!(during <= before + 20 + 16, "the cap holds the descriptors: {before} before, {during} with 100 idle");
    // The scheduler does not depend on the listener: runs go on (read from
    // the store, the API being full).
    let store = harness.database();
    let stored_runs = || store.runs.list("acme", None, 1000).unwrap().0.iter().filter(|r| r.outcome.is_some()).count();
    let runs = stored_runs();
    wait_until("two more runs", Duration::from_secs(60), || stored_runs() >= runs + 2);
    // A request made now waits for a free slot, and is answered.
    let (status, body) = serve.api.get("/connections/acme", &[]);
    assert_eq!(status, 200, "{body}");
    // Every idle connection is closed by the server.
    for (n, stream) in idle.iter_mut().enumerate() {
        let (read, closed) = read_until_closed(stream, Duration::from_secs(90));
        assert!(closed && read.is_empty(), "idle connection {n} was not closed (read {read:?})");
    }
    assert!(serve.stderr().contains("20 connections open, the most --max-connections allows"), "{}", serve.stderr());
    let (status, _) = serve.api.get("/customers?limit=1", &[("Connection-Id", "acme")]);
    assert_eq!(status, 200);
    harness.connection_as("acme").assert_store_matches_upstream();
}

#[test]
fn a_low_limit_of_open_files_lowers_the_cap_and_the_host_never_runs_out() {
    let harness = Harness::new(company(100, 10, 0.0));
    add_connection(&harness.db(), "acme", &harness.base_url, &["--access-token", TOKEN, "--every", "2s"]);
    // 256 descriptors in all, and 300 clients that would each hold one.
    let serve =
        ServeProcess::start_with_open_files(&harness.db(), &["--schedule", "--api-idle-timeout-secs", "3", "-v"], 256);
    assert!(
        serve.stderr().contains("--max-connections 1024 lowered to 128: the process may open 256 files"),
        "{}",
        serve.stderr()
    );
    let mut idle: Vec<TcpStream> = (0..300).map(|_| TcpStream::connect(address(&serve)).unwrap()).collect();
    let store = harness.database();
    let stored_runs = || store.runs.list("acme", None, 1000).unwrap().0.iter().filter(|r| r.outcome.is_some()).count();
    let runs = stored_runs();
    let mut most = 0;
    wait_until("two more runs", Duration::from_secs(60), || {
        most = most.max(serve.open_files());
        stored_runs() >= runs + 2
    });
    eprintln!("at most {most} descriptors open with 300 idle clients");
    assert!(most < 256, "{most}");
    let (status, body) = serve.api.get("/connections/acme", &[]);
    assert_eq!(status, 200, "{body}");
    for stream in idle.iter_mut() {
        assert!(read_until_closed(stream, Duration::from_secs(90)).1);
    }
    let log = serve.stderr();
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
    harness.connection_as("acme").assert_store_matches_upstream();
}

#[test]
fn requests_sent_too_slowly_are_cut_off() {
    let harness = Harness::new(company(50, 10, 0.0));
    harness.sync();
    let serve = ServeProcess::start_with(
        &harness.db(),
        &[
            "--api-header-timeout-secs",
            "2",
            "--api-idle-timeout-secs",
            "3",
            "--api-request-timeout-secs",
            "2",
            "--qbo-verifier-token",
            "verifier",
        ],
        &[],
    );
    let connect = || TcpStream::connect(address(&serve)).unwrap();

    // Half a request line, then nothing: closed at the header timeout.
    let mut half = connect();
    half.write_all(b"GET /custo").unwrap();
    let (read, closed) = read_until_closed(&mut half, Duration::from_secs(20));
    assert!(closed && read.is_empty(), "half a request line: {:?}", String::from_utf8_lossy(&read));

    // Headers trickling in, a line every half second: bytes keep coming,
    // the headers never end, and the connection is closed all the same.
    let mut trickle = connect();
    trickle.write_all(b"GET /customers HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = Instant::now();
    let mut cut = false;
    while started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(500));
        if trickle.write_all(b"X-Slow: 1\r\n").is_err() {
            cut = true;
            break;
        }
        let (read, closed) = read_until_closed(&mut trickle, Duration::from_millis(10));
        if closed {
            assert!(read.is_empty(), "{:?}", String::from_utf8_lossy(&read));
            cut = true;
            break;
        }
    }
    assert!(cut, "trickled headers were never cut off");

    // Half a body: 408, and the connection closed.
    let mut body = connect();
    body.write_all(
        b"POST /webhooks/quickbooks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"event",
    )
    .unwrap();
    let (read, closed) = read_until_closed(&mut body, Duration::from_secs(20));
    assert!(closed, "a half-sent body held the connection");
    assert_eq!(status_of(&read), Some(408), "{:?}", String::from_utf8_lossy(&read));

    // A kept-alive connection is answered, then closed once idle.
    let mut kept = connect();
    kept.write_all(b"GET /customers?limit=1 HTTP/1.1\r\nHost: x\r\nConnection-Id: default\r\n\r\n").unwrap();
    let (read, closed) = read_until_closed(&mut kept, Duration::from_secs(20));
    assert!(closed, "an idle kept-alive connection stayed open");
    assert_eq!(status_of(&read), Some(200), "{:?}", String::from_utf8_lossy(&read));

    let (status, _) = serve.api.get("/customers?limit=1", &[]);
    assert_eq!(status, 200);
    harness.assert_store_matches_upstream();
}

/// xorshift64*: a small generator, seeded with a constant so that a failure
/// can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }

    /// From one to `max` random bytes.
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = 1 + self.below(max);
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// From one to `max` characters, printable but mostly not what a URL or
    /// a header expects.
    fn text(&mut self, max: usize) -> String {
        const CHARS: &[u8] = b"abcXYZ019-_.~%+=&?/#;:,'\"<>{}[]|\\^` ";
        let n = 1 + self.below(max);
        (0..n).map(|_| CHARS[self.below(CHARS.len())] as char).collect()
    }
}

/// One garbage request, as raw bytes, and whether to half-close after it
/// (so that the server sees the end of what was sent).
fn garbage_request(rng: &mut Rng, paths: &[String], key: &str) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    // The method.
    let methods =
        ["GET", "GET", "GET", "POST", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS", "TRACE", "get", "FOO"];
    let method: String = match rng.below(20) {
        0 => rng.text(20).replace([' ', '/'], "X"),
        1 => "G".repeat(1 + rng.below(2000)),
        _ => rng.pick(&methods).to_owned(),
    };
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    // The path: a served one, mangled or not, or garbage.
    let mut path = match rng.below(10) {
        0 => format!("/{}", rng.text(40)),
        1 => "/".repeat(1 + rng.below(5)) + &rng.text(10),
        2 => format!(
            "/connections/{}",
            rng.pick(&["acme", "%00", "%ff%fe", "..%2f..", "a%zz", "💥", "x".repeat(3000).as_str()])
        ),
        3 => "*".into(),
        4 => format!("http://{}/customers", rng.text(5)),
        _ => paths[rng.below(paths.len())].clone(),
    };
    if rng.chance(10) {
        path.push_str(rng.pick(&["/", "//", "/..", "/%2e%2e", "/extra", "%", "%2", ";x=1"]));
    }
    // The query string.
    let query = match rng.below(6) {
        0 => String::new(),
        1 => rng.text(60),
        _ => {
            let names = [
                "limit",
                "cursor",
                "modified_after",
                "filter",
                "model",
                "syncs",
                "connection_id",
                "provider_config_key",
                "x",
                "",
                "limit",
            ];
            let values = [
                "0",
                "-1",
                "1",
                "10000",
                "10001",
                "99999999999999999999999",
                "abc",
                "",
                "%ff",
                "%",
                "2026-05-05T10:00:00Z",
                "2026-05-05T10:00:00+02:00",
                "9999-99-99",
                "added,updated",
                "added,,",
                "DELETED",
                "MXwxNzc3OTc1NzI5MTIzNDU2fDU4",
                "MXwtMXw",
                "cjF8MXx4",
                "*",
                "Customer",
                "acme",
                "%00",
                "\u{1}",
            ];
            (0..1 + rng.below(5))
                .map(|_| {
                    let name = rng.pick(&names);
                    if rng.chance(10) {
                        name.to_owned()
                    } else {
                        format!("{name}={}", rng.pick(&values))
                    }
                })
                .collect::<Vec<_>>()
                .join("&")
        }
    };
    out.extend_from_slice(path.as_bytes());
    if !query.is_empty() {
        out.push(b'?');
        out.extend_from_slice(query.replace(' ', "%20").as_bytes());
    }
    if rng.chance(3) {
        out.extend(rng.bytes(3)); // bytes a request line may not have
    }
    let version =
        if rng.chance(90) { " HTTP/1.1" } else { rng.pick(&[" HTTP/1.0", " HTTP/2.0", " HTTP/9", "", " http/1.1"]) };
    out.extend_from_slice(version.as_bytes());
    out.extend_from_slice(b"\r\nHost: localhost\r\nConnection: close\r\n");
    // The headers.
    let header = |out: &mut Vec<u8>, name: &[u8], value: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    let ids = match rng.below(10) {
        0 | 1 => 0,
        2 => 2 + rng.below(2),
        _ => 1,
    };
    for _ in 0..ids {
        let value: Vec<u8> = match rng.below(10) {
            0 | 8 | 9 => b"acme".to_vec(),
            1 => b"".to_vec(),
            2 => rng.bytes(20).into_iter().filter(|b| *b != b'\r' && *b != b'\n').collect(),
            3 => "x".repeat(1 + rng.below(20_000)).into_bytes(),
            4 => b"  acme  ".to_vec(),
            5 => "åcme".as_bytes().to_vec(),
            6 => b"default".to_vec(),
            _ => b"nobody".to_vec(),
        };
        header(&mut out, b"Connection-Id", &value);
    }
    match rng.below(7) {
        0 => {}
        1 => header(&mut out, b"Authorization", format!("Bearer {key}").as_bytes()),
        2 => header(&mut out, b"Authorization", format!("bearer {key}").as_bytes()),
        3 => header(&mut out, b"Authorization", b"Bearer wrong-key"),
        4 => header(&mut out, b"Authorization", b"Basic YTpi"),
        5 => {
            header(&mut out, b"Authorization", format!("Bearer {key}").as_bytes());
            header(&mut out, b"Authorization", b"Bearer second");
        }
        _ => header(&mut out, b"Authorization", &rng.bytes(50).into_iter().filter(|b| *b > 31).collect::<Vec<_>>()),
    }
    if rng.chance(20) {
        let names = [
            "Provider-Config-Key",
            "intuit-signature",
            "Content-Type",
            "Accept",
            "X-Forwarded-For",
            "Expect",
            "Upgrade",
        ];
        let name = rng.pick(&names);
        let value = rng.text(80);
        header(&mut out, name.as_bytes(), value.trim().as_bytes());
    }
    if rng.chance(5) {
        // A header line that is not one: no colon, a bad name, a fold.
        let lines: [&[u8]; 5] =
            [b"NoColonHere", b"Bad Name: x", b" folded: continuation", b":empty-name", b"X-Nul: a\0b"];
        out.extend_from_slice(lines[rng.below(lines.len())]);
        out.extend_from_slice(b"\r\n");
    }
    if rng.chance(2) {
        header(&mut out, b"X-Huge", "h".repeat(200_000).as_bytes());
    }
    // The body, and how it is framed.
    let body: Vec<u8> = match rng.below(9) {
        0..=2 => Vec::new(),
        3 => br#"{"reset": true}"#.to_vec(),
        4 => br#"{"every": "1"#.to_vec(),
        5 => rng.bytes(2000),
        6 => br#"{"syncs": ["customers"], "provider_config_key": "quickbooks", "connection_id": 7}"#.to_vec(),
        7 => br#"[{"id":"1","type":"qbo.customer.updated.v1","intuitaccountid":"9341453050804937"}]"#.to_vec(),
        _ if rng.chance(25) => vec![b'{'; 2_200_000 + rng.below(1000)],
        _ => rng.bytes(100_000),
    };
    let mut half_close = false;
    match rng.below(12) {
        0 => {
            // Chunked, well or badly.
            header(&mut out, b"Transfer-Encoding", b"chunked");
            out.extend_from_slice(b"\r\n");
            if rng.chance(50) {
                out.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
                out.extend_from_slice(&body);
                out.extend_from_slice(b"\r\n0\r\n\r\n");
            } else {
                out.extend_from_slice(b"zz\r\n");
                out.extend_from_slice(&body);
                half_close = true;
            }
        }
        1 => {
            // Says more than it sends.
            header(&mut out, b"Content-Length", format!("{}", body.len() + 10).as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&body);
            half_close = true;
        }
        2 => {
            header(&mut out, b"Content-Length", rng.pick(&["-1", "abc", "1, 2", "99999999999999999999"]).as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&body);
            half_close = true;
        }
        3 => {
            header(&mut out, b"Content-Length", format!("{}", body.len()).as_bytes());
            header(&mut out, b"Transfer-Encoding", b"chunked");
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&body);
            half_close = true;
        }
        4 => {
            // Cut off in the middle of the headers.
            let cut = out.len() / 2;
            out.truncate(cut);
            half_close = true;
        }
        _ => {
            if !body.is_empty() || rng.chance(50) {
                header(&mut out, b"Content-Length", format!("{}", body.len()).as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&body);
        }
    }
    (out, half_close)
}

fn show(request: &[u8]) -> String {
    let shown = String::from_utf8_lossy(&request[..request.len().min(1500)]).into_owned();
    format!("{shown:?}{}", if request.len() > 1500 { format!(" … ({} bytes)", request.len()) } else { String::new() })
}

/// Sends one raw request on its own connection; returns the status of the
/// answer, if one came.
fn send_raw(address: &str, request: &[u8], half_close: bool) -> Result<Option<u16>, String> {
    let mut stream = TcpStream::connect(address).map_err(|e| format!("cannot connect: {e}"))?;
    stream.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    // The server may answer (413, 431, 400) and close before it has read
    // everything: a failed write is not a failure, what was answered is.
    let _ = stream.write_all(request);
    if half_close {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
    let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(20));
    if !closed {
        return Err(format!("no end of the answer in 20 s: {}", show(&answer)));
    }
    Ok(status_of(&answer))
}

#[test]
fn thousands_of_garbage_requests_get_no_server_error_and_memory_stays_flat() {
    const KEY: &str = "garbage-test-api-key";
    const SEED: u64 = 0x5eed_2100_0007;
    const WARM_UP: usize = 500;
    const TOTAL: usize = 4000;
    let harness = Harness::new(company(300, 10, 0.1));
    harness.sync();
    add_connection(&harness.db(), "acme", &harness.base_url, &["--access-token", TOKEN, "--every", "1h"]);
    let mut serve = ServeProcess::start_with(
        &harness.db(),
        &["--api-key", KEY, "--qbo-verifier-token", "garbage-verifier", "--api-request-timeout-secs", "3"],
        &[],
    );
    // Every served path, from the document the server serves.
    let (status, document) = serve.api.get("/openapi.json", &[]);
    assert_eq!(status, 200);
    let paths: Vec<String> = document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .flat_map(|p| [p.replace("{id}", "acme"), p.replace("{id}", "nobody")])
        .collect();
    assert!(paths.len() >= 15, "{paths:?}");
    let address = address(&serve);
    let mut rng = Rng(SEED);
    let mut statuses = std::collections::BTreeMap::<Option<u16>, usize>::new();
    let mut rss_after_warm_up = 0;
    for n in 0..TOTAL {
        let (request, half_close) = garbage_request(&mut rng, &paths, KEY);
        let status = send_raw(&address, &request, half_close)
            .unwrap_or_else(|e| panic!("request {n} (seed {SEED:#x}): {e}\n{}", show(&request)));
        assert!(
            status.is_none_or(|s| s < 500),
            "request {n} (seed {SEED:#x}) was answered {status:?}:\n{}\n{}",
            show(&request),
            serve.stderr()
        );
        *statuses.entry(status).or_default() += 1;
        if n + 1 == WARM_UP {
            rss_after_warm_up = serve.rss_bytes();
        }
    }
    let rss_at_end = serve.rss_bytes();
    eprintln!("answers by status: {statuses:?}; RSS {rss_after_warm_up} after the warm-up, {rss_at_end} at the end");
    assert!(serve.alive(), "serve died: {}", serve.stderr());
    assert!(
        rss_at_end < rss_after_warm_up + 32 * 1024 * 1024,
        "memory grew from {rss_after_warm_up} to {rss_at_end} bytes"
    );
    // Garbage reached the handlers, not only the HTTP parser.
    for reached in [200, 400, 401, 404, 405] {
        assert!(statuses.get(&Some(reached)).is_some_and(|&n| n >= 10), "few {reached}s: {statuses:?}");
    }
    let (status, body) = serve.api.get("/customers?limit=1", &[("Authorization", &format!("Bearer {KEY}"))]);
    assert_eq!(status, 200, "{body}");
    harness.assert_store_matches_upstream();
}
