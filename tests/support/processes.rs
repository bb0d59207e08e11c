//! Real processes and clients over loopback: the `sync-host` command line,
//! `sync-host serve`, the records API in-process and over HTTP, and a
//! webhook receiver standing in for the user's application.

#[allow(unused_imports)]
use super::*;

/// The records API on loopback, over a database.
pub struct Api {
    pub base_url: String,
    _runtime: tokio::runtime::Runtime,
}

impl Api {
    pub fn start(db: &str, api_key: Option<String>) -> Self {
        let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let db = store::open(db, OpenMode::MustExist).expect("the database opens");
        let state = sync_host::api::ApiState::new(db, api_key, runtime().metadata().endpoints.clone());
        let listener = tokio.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        tokio.spawn(async move { axum::serve(listener, sync_host::api::router(state)).await });
        Api { base_url, _runtime: tokio }
    }

    /// GET a path; returns status and JSON body.
    pub fn get(&self, path_and_query: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut request = agent.get(&format!("{}{}", self.base_url, path_and_query));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let mut response = request.call().expect("request reaches the api");
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
    }

    /// Every record, following `next_cursor`.
    pub fn all(&self, query: &str, connection: &str) -> Vec<Value> {
        let mut records = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/customers?{query}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (status, body) = self.get(&path, &[("Connection-Id", connection)]);
            assert_eq!(status, 200, "{body}");
            records.extend(body["records"].as_array().unwrap().iter().cloned());
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return records,
            }
        }
    }
}

/// Runs the `sync-host` binary; returns exit success, stdout and stderr.
pub fn sync_host_cli(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<(bool, String, String)> {
    let output = Command::new(host_binary())
        .args(args)
        .env_remove("QBO_ACCESS_TOKEN")
        .env_remove("QBO_CLIENT_ID")
        .env_remove("QBO_CLIENT_SECRET")
        .env_remove("QBO_REFRESH_TOKEN")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .output()
        .context("sync-host runs")?;
    Ok((
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// `sync-host serve` as a child process on a free loopback port; killed on
/// drop. Everything it prints on stderr is kept, to look for secrets.
pub struct ServeProcess {
    child: std::process::Child,
    pub api: ApiClient,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl ServeProcess {
    pub fn start(db: &str, api_key: Option<&str>) -> Self {
        let mut args = Vec::new();
        if let Some(key) = api_key {
            args.extend(["--api-key", key]);
        }
        Self::start_with(db, &args, &[])
    }

    /// `serve --db <db> --listen 127.0.0.1:0 --component <guest> <args>`.
    pub fn start_with(db: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(Command::new(host_binary()), db, args, env)
    }

    /// Like [`Self::start_with`], with the limit of open files (soft and
    /// hard) set to `open_files`, as `ulimit -n` does.
    pub fn start_with_open_files(db: &str, args: &[&str], open_files: u32) -> Self {
        let mut command = Command::new("sh");
        command.args(["-c", &format!("ulimit -n {open_files} && exec \"$0\" \"$@\"")]).arg(host_binary());
        Self::spawn(command, db, args, &[])
    }

    fn spawn(mut command: Command, db: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        use std::io::BufRead as _;
        let mut child = command
            .args(["serve", "--db", db, "--listen", "127.0.0.1:0", "--component"])
            .arg(guest_wasm())
            .args(args)
            .env_remove("SYNC_HOST_API_KEY")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("sync-host serve starts");
        let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let kept = lines.clone();
        let reader = std::thread::spawn(move || {
            let mut address_tx = Some(address_tx);
            for line in stderr.lines().map_while(Result::ok) {
                if let Some(address) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                    if let Some(tx) = address_tx.take() {
                        let _ = tx.send(address.to_owned());
                    }
                }
                kept.lock().unwrap().push(line);
            }
        });
        let base_url = address_rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("serve printed no address: {:?}", lines.lock().unwrap()));
        ServeProcess { child, api: ApiClient { base_url }, stderr: lines, reader: Some(reader) }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its resident memory (VmRSS in /proc/<pid>/status), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc/<pid>/status");
        let kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .expect("VmRSS");
        kib * 1024
    }

    /// The file descriptors it has open (entries of /proc/<pid>/fd).
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map(|d| d.count()).unwrap_or(0)
    }

    /// Sends SIGTERM and waits at most `within` for the process to exit;
    /// returns whether it exited successfully, how long it took and what it
    /// printed, or panics (after killing it) if it is still running.
    pub fn terminate_within(mut self, within: std::time::Duration) -> (bool, std::time::Duration, String) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill -TERM");
        let started = std::time::Instant::now();
        loop {
            if let Some(exited) = self.child.try_wait().unwrap() {
                let took = started.elapsed();
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return (exited.success(), took, self.stderr());
            }
            if started.elapsed() > within {
                let _ = self.child.kill();
                panic!("serve was still running {within:?} after SIGTERM: {}", self.stderr());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Kills it with SIGKILL, as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it
    /// exited successfully and everything it printed.
    pub fn terminate(mut self) -> (bool, String) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill -TERM");
        let exited = self.child.wait().unwrap();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        (exited.success(), self.stderr())
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sync-host connections add <id> --db <db> --base-url <fake> --realm-id
/// <realm>` plus `args` (credentials, `--every`, …).
pub fn add_connection(db: &str, id: &str, base_url: &str, args: &[&str]) {
    let wasm = guest_wasm().to_str().unwrap().to_owned();
    let mut all =
        vec!["connections", "add", id, "--db", db, "--base-url", base_url, "--realm-id", REALM, "--component", &wasm];
    all.extend_from_slice(args);
    let (ok, stdout, stderr) = sync_host_cli(&all, &[]).unwrap();
    assert!(ok, "connections add failed: {stdout}{stderr}");
}

/// Polls `check` every 50 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: std::time::Duration, mut check: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "timed out after {timeout:?} waiting until {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A blocking client of the records API.
pub struct ApiClient {
    pub base_url: String,
}

impl ApiClient {
    /// Sends a request; returns status, headers and the body (JSON if it parses).
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut builder = ureq::http::Request::builder().method(method).uri(format!("{}{}", self.base_url, path));
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let mut response = agent.run(builder.body(Vec::<u8>::new()).unwrap()).expect("request reaches the api");
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        self.request("GET", path, headers)
    }

    /// Sends a request with a JSON body.
    pub fn send_json(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &Value) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base_url, path))
            .header("Content-Type", "application/json");
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let mut response =
            agent.run(builder.body(body.to_string().into_bytes()).unwrap()).expect("request reaches the api");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

/// A webhook as the receiver got it: its `X-Sync-Signature`, and its body.
/// A webhook as received: its headers (names in lower case) and its raw body.
type Received = (std::collections::BTreeMap<String, String>, String);

/// A stand-in for the user's application: records every webhook it gets and
/// answers with the status set (204 by default).
pub struct WebhookReceiver {
    pub url: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    status: std::sync::Arc<std::sync::atomic::AtomicU16>,
    _runtime: tokio::runtime::Runtime,
}

impl WebhookReceiver {
    pub fn start() -> Self {
        use std::sync::atomic::{AtomicU16, Ordering};
        type Shared = (std::sync::Arc<std::sync::Mutex<Vec<Received>>>, std::sync::Arc<AtomicU16>);
        let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let status = std::sync::Arc::new(AtomicU16::new(204));
        let listener = tokio.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route(
                "/hooks",
                axum::routing::post(
                    |axum::extract::State((received, status)): axum::extract::State<Shared>,
                     headers: axum::http::HeaderMap,
                     body: String| async move {
                        let code = status.load(Ordering::SeqCst);
                        if code < 300 {
                            let headers = headers
                                .iter()
                                .filter_map(|(name, value)| {
                                    Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
                                })
                                .collect();
                            received.lock().unwrap().push((headers, body));
                        }
                        axum::http::StatusCode::from_u16(code).unwrap()
                    },
                ),
            )
            .with_state((received.clone(), status.clone()));
        tokio.spawn(async move { axum::serve(listener, app).await });
        WebhookReceiver { url, received, status, _runtime: tokio }
    }

    /// Answers with `status` from now on (a 5xx or 4xx: nothing is recorded).
    pub fn answer(&self, status: u16) {
        self.status.store(status, std::sync::atomic::Ordering::SeqCst);
    }

    /// (`X-Sync-Signature`, body) of each webhook accepted so far.
    pub fn received(&self) -> Vec<(Option<String>, String)> {
        let received = self.received.lock().unwrap();
        received.iter().map(|(headers, body)| (headers.get("x-sync-signature").cloned(), body.clone())).collect()
    }

    /// (headers, raw body) of each webhook accepted so far.
    pub fn received_with_headers(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// How a [`StallingReceiver`] treats the webhooks it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// Reads the request and never answers, holding the connection open.
    Hang,
    /// Reads the request and sends an answer one byte a second, never ending it.
    Trickle,
    /// Answers 204 and keeps the webhook, like [`WebhookReceiver`].
    Answer,
}

/// A receiver on raw TCP that accepts and then misbehaves as told: a
/// receiver that hangs, or trickles, or (after being told) answers.
pub struct StallingReceiver {
    pub url: String,
    mode: std::sync::Arc<std::sync::Mutex<Stall>>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    open: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    trickled: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl StallingReceiver {
    pub fn start(mode: Stall) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let receiver = StallingReceiver {
            url,
            mode: Arc::new(Mutex::new(mode)),
            accepted: Arc::new(AtomicUsize::new(0)),
            open: Arc::new(AtomicUsize::new(0)),
            trickled: Arc::new(AtomicUsize::new(0)),
            received: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (mode, accepted, open, trickled, received, stop) = (
            receiver.mode.clone(),
            receiver.accepted.clone(),
            receiver.open.clone(),
            receiver.trickled.clone(),
            receiver.received.clone(),
            receiver.stop.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                accepted.fetch_add(1, Ordering::SeqCst);
                open.fetch_add(1, Ordering::SeqCst);
                let (mode, open, trickled, received, stop) =
                    (mode.clone(), open.clone(), trickled.clone(), received.clone(), stop.clone());
                std::thread::spawn(move || {
                    Self::serve_one(stream, &mode, &trickled, &received, &stop);
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        receiver
    }

    fn serve_one(
        mut stream: std::net::TcpStream,
        mode: &std::sync::Mutex<Stall>,
        trickled: &std::sync::atomic::AtomicUsize,
        received: &std::sync::Mutex<Vec<Received>>,
        stop: &std::sync::atomic::AtomicBool,
    ) {
        use std::io::{Read as _, Write as _};
        use std::sync::atomic::Ordering;
        let Some((headers, body)) = read_http_request(&mut stream) else { return };
        let mode = *mode.lock().unwrap();
        match mode {
            Stall::Answer => {
                received.lock().unwrap().push((headers, body));
                let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
            }
            Stall::Hang => {
                // Until the client gives up (EOF) or the test ends.
                stream.set_read_timeout(Some(std::time::Duration::from_millis(100))).unwrap();
                let mut buffer = [0u8; 256];
                while !stop.load(Ordering::SeqCst) {
                    match stream.read(&mut buffer) {
                        Ok(0) => return,
                        Ok(_) => {}
                        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                        }
                        Err(_) => return,
                    }
                }
            }
            Stall::Trickle => {
                // A status line and headers that never end, a byte a second.
                let answer = b"HTTP/1.1 204 No Content\r\nX-Slow: ";
                for byte in answer.iter().copied().chain(std::iter::repeat(b'z')) {
                    if stop.load(Ordering::SeqCst) || stream.write_all(&[byte]).is_err() {
                        return;
                    }
                    trickled.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            }
        }
    }

    /// From now on, treats new connections so.
    pub fn set(&self, mode: Stall) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Connections accepted so far (one per delivery attempt).
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Connections it holds open now (attempts still waiting for it).
    pub fn open(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Bytes of never-ending answers sent so far.
    pub fn trickled(&self) -> usize {
        self.trickled.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// (headers, raw body) of each webhook answered so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for StallingReceiver {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Reads one HTTP/1.1 request (headers and a `Content-Length` body) from
/// `stream`: header names in lower case, and the body.
pub fn read_http_request(stream: &mut std::net::TcpStream) -> Option<Received> {
    use std::io::Read as _;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).ok()?;
    let mut data = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut buffer).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buffer[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let headers: std::collections::BTreeMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect();
    let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while data.len() < head_end + length {
        let n = stream.read(&mut buffer).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buffer[..n]);
    }
    Some((headers, String::from_utf8_lossy(&data[head_end..head_end + length]).into_owned()))
}
