#!/usr/bin/env python3
"""Runs schemathesis against the OpenAPI document `sync-host serve` serves,
and fails when it finds a server error, an answer the document does not
describe (status, content type, headers, body schema), a request the
document rules out that the server accepts, or a route the document and
the router disagree on.

Usage: testing/schemathesis/run.py [--max-examples N] [--seed N] [--keep]

What it does, with the build of `cargo build --release -p sync-host` and
the built component (target/wasm32-wasip2/release/quickbooks_customers.wasm):

- installs schemathesis (SCHEMATHESIS, pinned below) from PyPI into
  target/schemathesis/venv unless that version is there already;
- in a scratch directory (target/schemathesis/run, recreated; removed at
  the end unless the run failed or --keep), starts the bundled fake
  QuickBooks on 127.0.0.1:9300, and makes a database with records of the
  connection `default` (`sync-host run`, ad hoc), a connection `acme`
  (synced, with a webhook queued to a URL where nothing listens, so its
  deliveries fail and are retried) and a connection `down` whose provider
  does not answer (its run failed);
- starts `sync-host serve --schedule` on 127.0.0.1:9310 over it, with an
  API key, a verifier token and a webhook secret (random, never printed;
  handed over in the environment, not the command line);
- runs `schemathesis run http://127.0.0.1:9310/openapi.json` with every
  check but positive_data_acceptance (the API's cursors are opaque: a
  string of the right type is still not a cursor the API returned, and
  `empty` needs `reset`, which the document says in words only), with the
  API key, and hooks.py signing half of the provider notifications;
- checks that the server is still up and printed no secret and no panic;
- stops the server and the fake (SIGTERM, then SIGKILL after 10 s).

Ports 9300, 9310 and 9399 (where nothing listens) must be free; none of
them is one the README's blocks use.
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SYNC_HOST = ROOT / "target" / "release" / "sync-host"
COMPONENT = ROOT / "target" / "wasm32-wasip2" / "release" / "quickbooks_customers.wasm"
WORK = ROOT / "target" / "schemathesis"
SCHEMATHESIS = "4.32.5"
FAKE_PORT, SERVE_PORT, NOBODY_PORT = 9300, 9310, 9399
REALM = "9341453050804937"
# The fake's own token: not a secret (`sync-host fake-qbo --help`).
FAKE_TOKEN = "demo-access-token"


class Failed(Exception):
    pass


def log(message: str) -> None:
    print(f"schemathesis run: {message}", flush=True)


def install() -> Path:
    venv = WORK / "venv"
    tool = venv / "bin" / "schemathesis"
    if tool.exists():
        version = subprocess.run([str(tool), "--version"], capture_output=True, text=True).stdout
        if version.strip().endswith(SCHEMATHESIS):
            return tool
    log(f"installing schemathesis {SCHEMATHESIS} into {venv.relative_to(ROOT)}")
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         f"schemathesis=={SCHEMATHESIS}"],
        check=True,
    )
    return tool


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def wait_for(url: str, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except Exception:
            time.sleep(0.2)
    raise Failed(f"{what} did not answer at {url} within {timeout:.0f} s")


class Processes:
    """The processes started here, each in a session of its own, stopped
    (by their ids) however the run ends."""

    def __init__(self) -> None:
        self.started: list[tuple[str, subprocess.Popen, Path]] = []

    def start(self, name: str, args: list[str], env: dict[str, str], log_file: Path) -> subprocess.Popen:
        out = open(log_file, "w")
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.started.append((name, process, log_file))
        return process

    def stop_all(self) -> None:
        for _, process, _ in reversed(self.started):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for _, process, _ in reversed(self.started):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def cli(args: list[str], env: dict[str, str], expect_success: bool = True) -> str:
    result = subprocess.run([str(SYNC_HOST), *args], capture_output=True, text=True, env=env)
    if result.returncode != 0 and expect_success:
        raise Failed(f"sync-host {args[0]} failed:\n{result.stdout}{result.stderr}")
    return result.stdout + result.stderr


def run(arguments: argparse.Namespace) -> None:
    for path in (SYNC_HOST, COMPONENT):
        if not path.exists():
            raise Failed(f"{path.relative_to(ROOT)} is missing: build it first (cargo build --release ...)")
    busy = [p for p in (FAKE_PORT, SERVE_PORT, NOBODY_PORT) if not port_free(p)]
    if busy:
        raise Failed(f"ports in use: {busy}")
    tool = install()
    scratch = WORK / "run"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    db = str(scratch / "st.sqlite")
    api_key, verifier, webhook_secret = (secrets.token_hex(16) for _ in range(3))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNC_HOST_", "QBO_"))}
    env["RUST_BACKTRACE"] = "1"
    fake_url = f"http://127.0.0.1:{FAKE_PORT}"
    base_url = f"http://127.0.0.1:{SERVE_PORT}"
    processes = Processes()
    failed = True
    try:
        processes.start(
            "fake-qbo",
            [str(SYNC_HOST), "fake-qbo", "--listen", f"127.0.0.1:{FAKE_PORT}", "--customers", "200"],
            env,
            scratch / "fake-qbo.log",
        )
        wait_for(f"{fake_url}/_fake/clock", "the fake QuickBooks")
        token = {**env, "QBO_ACCESS_TOKEN": FAKE_TOKEN}
        cli(["run", "--db", db, "--base-url", fake_url, "--realm-id", REALM], token)
        secret = "@" + secret_file(scratch, webhook_secret)
        nobody = f"http://127.0.0.1:{NOBODY_PORT}"
        cli(["connections", "add", "acme", "--db", db, "--base-url", fake_url, "--realm-id", REALM, "--every", "1h",
             "--webhook-url", f"{nobody}/", "--webhook-secret", secret], token)
        cli(["run", "--db", db, "--connection", "acme"], env)
        cli(["connections", "add", "down", "--db", db, "--base-url", nobody, "--realm-id", REALM, "--every", "1h"],
            token)
        cli(["run", "--db", db, "--connection", "down", "--retry-budget-secs", "1"], env, expect_success=False)

        serve_env = {**env, "SYNC_HOST_API_KEY": api_key, "QBO_VERIFIER_TOKEN": verifier}
        serve = processes.start(
            "serve",
            [str(SYNC_HOST), "serve", "--db", db, "--listen", f"127.0.0.1:{SERVE_PORT}", "--schedule",
             "--webhook-retry-base-secs", "1", "--webhook-max-attempts", "3"],
            serve_env,
            scratch / "serve.log",
        )
        wait_for(f"{base_url}/openapi.json", "sync-host serve")

        started = time.monotonic()
        st_env = {**env, "SCHEMATHESIS_HOOKS": "hooks", "PYTHONPATH": str(HERE), "SYNC_HOST_ST_VERIFIER": verifier}
        command = [
            str(tool), "run", f"{base_url}/openapi.json",
            "--checks", "all", "--exclude-checks", "positive_data_acceptance",
            "--header", f"Authorization: Bearer {api_key}",
            "--max-examples", str(arguments.max_examples),
            "--seed", str(arguments.seed),
            "--request-timeout", "10",
            "--no-color",
        ]
        log(f"schemathesis run {base_url}/openapi.json (seed {arguments.seed}, {arguments.max_examples} examples)")
        result = subprocess.run(command, env=st_env, cwd=scratch)
        log(f"schemathesis took {time.monotonic() - started:.0f} s")

        verified = notifications_verified(base_url, api_key)
        log(f"signed notifications that verified: {verified}")
        if result.returncode == 0 and verified == 0:
            raise Failed("no signed notification verified: hooks.py's signatures are not what the server checks")
        if serve.poll() is not None:
            raise Failed(f"sync-host serve exited ({serve.returncode}):\n{(scratch / 'serve.log').read_text()}")
        served_log = (scratch / "serve.log").read_text()
        for secret in (api_key, verifier, webhook_secret):
            if secret in served_log:
                raise Failed("a secret is in serve's log")
        if "panicked" in served_log:
            raise Failed(f"sync-host serve panicked:\n{served_log}")
        if result.returncode != 0:
            raise Failed(f"schemathesis found failures (exit {result.returncode}); serve's log: {scratch}/serve.log")
        failed = False
    finally:
        processes.stop_all()
        if failed or arguments.keep:
            log(f"kept {scratch.relative_to(ROOT)}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def notifications_verified(base_url: str, api_key: str) -> int:
    """Notifications accepted or ignored (so verified) since serve started."""
    request = urllib.request.Request(f"{base_url}/metrics", headers={"Authorization": f"Bearer {api_key}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    total = 0
    for line in text.splitlines():
        if line.startswith("sync_provider_notifications_total{") and 'result="rejected"' not in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def secret_file(directory: Path, secret: str) -> str:
    path = directory / "webhook-secret"
    path.write_text(secret)
    path.chmod(0o600)
    return str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=100, help="test cases per operation and phase")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SCHEMATHESIS_SEED", "20261202")))
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    arguments = parser.parse_args()
    try:
        run(arguments)
    except Failed as failure:
        print(f"FAIL: {failure}", file=sys.stderr)
        return 1
    log("no failures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
