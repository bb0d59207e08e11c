#!/usr/bin/env python3
"""Drives `sync-host run` against the independent QBO fake (qbo_fake.py) and
checks after each scenario that the store equals the fake's truth.

Every behaviour a scenario claims (request counts, waits, resumption, the run
that reconciles, hooks that acted) is an assertion: it adds a problem and the
scenario fails. A note is information only.

Usage: run_scenarios.py [scenario names...]   (default: all)
"""
from __future__ import annotations

import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import customer_model  # noqa: E402
from qbo_fake import (PACIFIC, Clock, FakeQBO, Response, dumps, expected_mapping,  # noqa: E402
                      parse_ts, render_ts)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
# The release build of the README's commands, unless named otherwise.
BIN = os.environ.get("SYNC_HOST", str(ROOT / "target/release/sync-host"))
WASM = os.environ.get("SYNC_WASM", str(ROOT / "target/wasm32-wasip2/release/quickbooks_customers.wasm"))
# Databases, request logs and results go to a directory of their own, never
# into the tree.
OUT = Path(os.environ.get("SPEC_FAKE_OUT") or tempfile.mkdtemp(prefix="spec-fake-"))
WORK = OUT / "work"
LOGS = OUT / "logs"
CACHE = OUT / "cache"
# The recorded sandbox page (the input), and this directory's own mapping of
# it (expected/customers-page.mapped.json, made by customer_model.py from the
# documented rules; never the product's tests/fixtures/*.expected.json).
FIXTURE = customer_model.RECORDED_PAGE
MAPPED = customer_model.MAPPED_PAGE
PAGE_SIZE = 1000
# What the README and docs/sync.md say a throttled run fails with.
THROTTLE_ERROR = ("provider error: HTTP 429, code 3001: ThrottleExceeded "
                  "(The request limit was reached.  Try again later)")
THROTTLE_ADVICE_SECS = 60   # Intuit's advice for a 429 without Retry-After (docs/quickbooks.md)

SUMMER = datetime(2026, 5, 10, 9, 0, 0, tzinfo=PACIFIC)


def pt(y, mo, d, h, mi, s=0, fold=0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=PACIFIC, fold=fold)


# ----------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------

GIVEN = ["Amy", "Bill", "Chloé", "Dmitri", "Eve", "Farah", "Gus", "Hana", "Ivan", "Jo", "Kai", "Léa",
         "Mo", "Nia", "O'Neil", "Pat", "Quinn", "Rosa", "Sam", "Tu"]
FAMILY = ["Lucchini", "Pariente", "Rodriguez", "Dukes", "Müller", "O'Brien", "Nakamura", "Smith",
          "Zhang", "Okafor"]
CITIES = [("Half Moon Bay", "94213"), ("Palo Alto", "94303"), ("Tucson", "85719"), ("Bayshore", "94326"),
          ("Sunnyvale", "94086")]
BALANCES = ["0", "0", "0", "314.28", "78.6", "-261", "1200.5", "954.75", "362.07", "-15"]
ODD_BALANCES = ["1.005", "-12.345", "0.004999", "0.125", "99999999.99"]


def gen_body(i: int, rng: random.Random, parent: int | None = None) -> dict:
    g, f = rng.choice(GIVEN), rng.choice(FAMILY)
    display = f"{g} {f} {i}"
    body = {
        "Taxable": rng.random() < 0.3,
        "Job": parent is not None,
        "BillWithParent": False,
        "CurrencyRef": {"value": "USD", "name": "United States Dollar"},
        "PreferredDeliveryMethod": "Print",
        "IsProject": False,
        "ClientEntityId": "0",
        "domain": "QBO",
        "sparse": False,
        "GivenName": g,
        "FamilyName": f,
        "FullyQualifiedName": display,
        "CompanyName": f"{f} & Co {i}",
        "DisplayName": display,
        "PrintOnCheckName": display,
        "V4IDPseudonym": "%038x" % rng.getrandbits(152),
        "PrimaryPhone": {"FreeFormNumber": f"(415) 555-{rng.randint(0, 9999):04d}"},
        "PrimaryEmailAddr": {"Address": f"{g.lower()}.{i}@example.com"},
    }
    city, postal = rng.choice(CITIES)
    addr = {"Id": str(10000 + i), "Line1": f"{rng.randint(1, 999)} Ocean Dr.", "City": city,
            "CountrySubDivisionCode": "CA", "PostalCode": postal, "Lat": "37.43", "Long": "-122.43"}
    if rng.random() < 0.3:
        addr["Country"] = "USA"
    if rng.random() < 0.05:
        del addr["Id"]
    if rng.random() < 0.05:
        del addr["PostalCode"]
    if rng.random() < 0.9:
        body["BillAddr"] = addr
    if rng.random() < 0.5:
        s = dict(addr)
        s["Id"] = str(20000 + i)
        body["ShipAddr"] = s
    if rng.random() < 0.1:
        del body["GivenName"]
    if rng.random() < 0.1:
        del body["PrimaryEmailAddr"]
    if rng.random() < 0.1:
        del body["PrimaryPhone"]
    if rng.random() < 0.05:
        del body["Taxable"]
    if parent is not None:
        body["ParentRef"] = {"value": str(parent)}
        body["Level"] = 1
        body["FullyQualifiedName"] = f"{parent}:{display}"
    return body


def gen_balance(rng: random.Random) -> str:
    if rng.random() < 0.03:
        return rng.choice(ODD_BALANCES)
    if rng.random() < 0.5:
        return rng.choice(BALANCES)
    return f"{rng.randint(0, 99999)}.{rng.randint(0, 99):02d}"


def load_fixture(fake: FakeQBO) -> dict[int, int]:
    """Loads the recorded page into the fake; returns {id: SyncToken} as loaded."""
    data = json.loads(FIXTURE.read_text())["QueryResponse"]["Customer"]
    texts = json.loads(FIXTURE.read_text(), parse_float=str, parse_int=str)["QueryResponse"]["Customer"]
    comp = fake.company
    for c, t in zip(data, texts):
        bal = t["Balance"]  # Balance text exactly as recorded
        body = {k: v for k, v in c.items()
                if k not in ("Id", "SyncToken", "MetaData", "Active", "Balance", "BalanceWithJobs")}
        cid = comp.add(body, balance=bal, active=c.get("Active", True),
                       created=int(parse_ts(c["MetaData"]["CreateTime"])),
                       updated=int(parse_ts(c["MetaData"]["LastUpdatedTime"])), id=int(c["Id"]))
        comp.rows[cid].sync_token = int(c["SyncToken"])
        # a parent's BalanceWithJobs includes its jobs' (customers 7 and 22): served as recorded,
        # so a sync that read it instead of Balance would be caught
        comp.rows[cid].balance_with_jobs = t["BalanceWithJobs"]
    comp._next_id = max(comp._next_id, 100)
    return {int(c["Id"]): int(c["SyncToken"]) for c in data}


def self_test() -> None:
    """The fake's own checks: mapping of the recorded page, parser, DST order."""
    customer_model.self_check()
    # The mapped page on disk is what the rules give for the recorded page...
    assert MAPPED.read_text() == customer_model.render(customer_model.mapped_page()), (
        f"{MAPPED} is not what customer_model.py's rules give: run it with --write and review the diff")
    expected = json.loads(MAPPED.read_text())
    fake = FakeQBO()
    fake.clock.set(SUMMER)
    load_fixture(fake)
    data = json.loads(FIXTURE.read_text())["QueryResponse"]["Customer"]
    texts = customer_model.read_page(FIXTURE.read_text())
    assert [c["Id"] for c in data] == [e["id"] for e in expected]
    # ...and what the fake serves of it maps to the same records, Balance text intact.
    for c, t, e in zip(data, texts, expected):
        served = dumps(fake.company.render(fake.company.rows[int(c["Id"])]))
        got = customer_model.map_customer(json.loads(served, parse_float=Decimal))
        assert got == e, (c["Id"], got, e)
        assert got == expected_mapping(fake.company.render(fake.company.rows[int(c["Id"])]))
        for k in ("Balance", "BalanceWithJobs"):
            assert json.loads(served, parse_float=Decimal)[k] == t[k], (c["Id"], k)
    assert expected_mapping({"Id": "1", "Balance": "\u0000DEC:1.005", "MetaData": {
        "CreateTime": "2026-01-01T00:00:00-08:00", "LastUpdatedTime": "2026-01-01T00:00:00-08:00"}})["balance_cents"] == 101
    assert expected_mapping({"Id": "1", "Balance": "\u0000DEC:-12.345", "MetaData": {
        "CreateTime": "2026-01-01T00:00:00-08:00", "LastUpdatedTime": "2026-01-01T00:00:00-08:00"}})["balance_cents"] == -1235
    assert render_ts(int(pt(2026, 11, 1, 1, 30).timestamp())) == "2026-11-01T01:30:00-07:00"
    assert render_ts(int(pt(2026, 11, 1, 1, 30, fold=1).timestamp())) == "2026-11-01T01:30:00-08:00"
    assert parse_ts("2026-11-01T01:10:00-08:00") > parse_ts("2026-11-01T01:30:00-07:00")
    from qbo_fake import parse_query, run_query, Fault
    q = parse_query("SELECT * FROM Customer WHERE Active IN (true, false) AND MetaData.LastUpdatedTime >= "
                    "'2026-04-01T00:00:00-07:00' ORDERBY MetaData.LastUpdatedTime DESC, Id ASC STARTPOSITION 2 MAXRESULTS 5")
    rows, total = run_query(fake.company, q)
    assert len(rows) == 5 and rows[0].updated >= rows[1].updated
    for bad in ["SELECT * FROM Customer MAXRESULTS 1001", "SELECT * FROM Customer WHERE Id = '1' OR Id = '2'",
                "SELECT Id FROM Customer", "SELECT * FROM Customer ORDER BY Id"]:
        try:
            parse_query(bad)
        except Fault as f:
            assert f.status == 400
        else:
            raise AssertionError(bad)
    q = parse_query("select count(*) from Customer")
    assert q.count
    assert len(run_query(fake.company, parse_query("SELECT * FROM Customer"))[0]) == sum(
        1 for r in fake.company.rows.values() if r.active)
    print("self-test ok")


# ----------------------------------------------------------------------------
# driving sync-host
# ----------------------------------------------------------------------------

class Env:
    def __init__(self, name: str, clock_start: datetime = SUMMER, seed: int = 1):
        self.name = name
        self.fake = FakeQBO(clock=Clock(clock_start))
        self.url = self.fake.start()
        self.db = WORK / f"{name}.sqlite"
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.db) + suffix)
            if p.exists():
                p.unlink()
        self.rng = random.Random(seed)
        self.runs: list[dict] = []
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.fixture_tokens = load_fixture(self.fake)

    @property
    def company(self):
        return self.fake.company

    def expect(self, ok: bool, what: str) -> bool:
        """An assertion of the scenario: when `ok` is false, `what` is a problem and the scenario fails."""
        if not ok:
            self.problems.append(what)
            print(f"  [{self.name}] FAILED: {what}", flush=True)
        return ok

    def add_customers(self, n: int, ts_fn, archived_frac=0.1, sub_frac=0.05) -> list[int]:
        ids = []
        comp = self.company
        for k in range(n):
            i = comp._next_id
            parent = None
            if ids and self.rng.random() < sub_frac:
                parent = self.rng.choice(ids)
            ts = int(ts_fn(k))
            created = ts - self.rng.randint(0, 86400 * 20)
            cid = comp.add(gen_body(i, self.rng, parent), balance=gen_balance(self.rng),
                           active=self.rng.random() >= archived_frac, created=created, updated=ts)
            ids.append(cid)
        return ids

    def new_customer(self) -> int:
        comp = self.company
        return comp.add(gen_body(comp._next_id, self.rng), balance=gen_balance(self.rng))

    def edit(self, cid: int, at=None, **kw) -> None:
        r = self.company.rows[cid]
        self.company.update(cid, {"DisplayName": r.body.get("DisplayName", "x") + "*",
                                  "GivenName": self.rng.choice(GIVEN)},
                            balance=gen_balance(self.rng), at=at, **kw)

    def run(self, label: str, extra: list[str] | None = None, expect_ok: bool = True,
            hooks=None, throttle=None, timeout=1500, token=None) -> dict:
        fake = self.fake
        fake.new_window()
        if hooks:
            fake.hooks = list(hooks)
        if throttle:
            fake.throttle_from, fake.throttle_secs = throttle
        # -v: the component's log (the reason of a listing, what ending it deleted) goes to stderr.
        cmd = [BIN, "run", "-v", "--component", WASM, "--db", str(self.db), "--base-url", self.url,
               "--realm-id", fake.realm, "--cache-dir", str(CACHE)] + (extra or [])
        env = dict(os.environ, QBO_ACCESS_TOKEN=token or fake.token)
        env.pop("RUST_LOG", None)
        t0 = time.time()
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        el = time.time() - t0
        try:
            summary = json.loads(p.stdout.strip().splitlines()[-1]) if p.stdout.strip() else None
        except json.JSONDecodeError:
            summary = {"unparsable": p.stdout}
        err_lines = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
        res = {"label": label, "rc": p.returncode, "summary": summary, "error": err_lines[-1] if err_lines else "",
               "stderr": p.stderr.strip()[-3000:], "elapsed": round(el, 1),
               "requests": [describe_req(r) for r in fake.log],
               # in memory only: the fake's records of this run's requests, and the whole log
               "raw": list(fake.log), "log": p.stderr}
        self.runs.append(res)
        LOGS.mkdir(exist_ok=True)
        with open(LOGS / f"{self.name}.log", "a") as fh:
            fh.write(f"=== {label}: rc={p.returncode} {el:.1f}s summary={summary}\n")
            if p.stderr.strip():
                fh.write("stderr:\n" + p.stderr.rstrip() + "\n")
            for r in res["requests"]:
                fh.write("  " + json.dumps(r, ensure_ascii=False) + "\n")
        print(f"  [{self.name}] {label}: rc={p.returncode} {el:.1f}s {summary} "
              f"{res['error'] if p.returncode else ''}", flush=True)
        self.check_requests(label, fake.log)
        if expect_ok and p.returncode != 0:
            self.problems.append(f"{label}: run failed rc={p.returncode}: {res['error'] or p.stderr.strip()[-500:]}")
        if not expect_ok and p.returncode == 0:
            self.problems.append(f"{label}: run was expected to fail but exited 0: {summary}")
        return res

    def check_requests(self, label: str, log) -> None:
        """Every request is one the docs describe (docs/sync.md, docs/quickbooks.md): a GET with
        Accept: application/json and minorversion=75 to the query endpoint, with the documented
        query, or to CDC for Customer since a `time` QuickBooks answered; nothing the fake refused."""
        for r in log:
            what = r.query_text or f"{r.path}?{r.raw_query}"
            for tok in (t.strip() for t in r.note.split(";")):
                if tok and not tok.startswith(BENIGN_NOTES):
                    self.problems.append(f"{label} req#{r.n}: {tok}: {what}")
            if r.parsed is not None and r.parsed.notes:
                self.problems.append(f"{label} req#{r.n}: query syntax beyond the documented subset "
                                     f"{r.parsed.notes}: {r.query_text}")
            if r.kind == "query" and r.query_text is not None:
                m = QUERY_RE.fullmatch(" ".join(r.query_text.split()))
                if not m:
                    self.problems.append(f"{label} req#{r.n}: not the documented query: {r.query_text}")
                elif m.group(1) is not None:
                    lit = m.group(1)
                    try:
                        ok = render_ts(int(parse_ts(lit))) == lit and parse_ts(lit) == int(parse_ts(lit))
                    except Exception:
                        ok = False
                    if not ok:
                        self.problems.append(f"{label} req#{r.n}: the lower bound {lit!r} is not QuickBooks' "
                                             f"own text of a LastUpdatedTime")
            if r.kind == "cdc":
                ents, since = r.params.get("entities"), r.params.get("changedSince")
                if ents != ["Customer"] or not since or len(since) != 1:
                    self.problems.append(f"{label} req#{r.n}: not the documented CDC request: {what}")
                elif since[0] not in self.fake.served_times:
                    self.problems.append(f"{label} req#{r.n}: changedSince {since[0]!r} is not a `time` "
                                         f"QuickBooks answered (the previous pass's start)")

    # --- the store ---
    def store(self) -> dict[str, dict]:
        if not self.db.exists():
            return {}
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            scopes = con.execute("SELECT id, connection, model FROM scopes").fetchall()
            out = {}
            for sid, conn, model in scopes:
                if model != "Customer" or conn != "default":
                    self.expect(False, f"a scope the sync does not declare: {conn}/{model}")
                    continue
                for rid, js, deleted_at, action in con.execute(
                        "SELECT id, json, deleted_at, last_action FROM records WHERE scope = ?", (sid,)):
                    out[rid] = {"json": json.loads(js), "deleted": deleted_at is not None, "action": action,
                                "text": js}
            return out
        finally:
            con.close()

    def compare(self, label: str, record: bool = True) -> list[str]:
        truth = self.company.expected_records()
        gone = self.company.gone_ids()
        st = self.store()
        probs = []
        missing = [i for i in truth if i not in st]
        deleted_live = [i for i in truth if i in st and st[i]["deleted"]]
        differ = [i for i in truth if i in st and not st[i]["deleted"] and st[i]["json"] != truth[i]]
        stale = [i for i, v in st.items() if not v["deleted"] and i in gone]
        unknown = [i for i in st if i not in truth and i not in gone]
        if missing:
            probs.append(f"{len(missing)} live customers missing from the store, e.g. {sorted(missing, key=int)[:8]}")
        if deleted_live:
            probs.append(f"{len(deleted_live)} live customers marked deleted, e.g. {sorted(deleted_live, key=int)[:8]}")
        if differ:
            i = differ[0]
            diff = {k: (st[i]['json'].get(k), truth[i].get(k)) for k in set(truth[i]) | set(st[i]['json'])
                    if st[i]['json'].get(k) != truth[i].get(k)}
            probs.append(f"{len(differ)} customers with stale/different fields, e.g. {i}: (store, truth) {diff}")
        if stale:
            probs.append(f"{len(stale)} archived/deleted-upstream customers still live in the store, "
                         f"e.g. {sorted(stale, key=int)[:8]}")
        if unknown:
            probs.append(f"{len(unknown)} store records unknown upstream: {unknown[:8]}")
        # The recorded page, as this directory's own file says it maps (for the customers of it
        # still as recorded), and every record's keys in the order of their names (docs/quickbooks.md).
        mapped = {e["id"]: e for e in json.loads(MAPPED.read_text())}
        off_page = []
        for cid, tok in self.fixture_tokens.items():
            row = self.company.rows.get(cid)
            if row is None or row.sync_token != tok or not row.active:
                continue
            got = st.get(str(cid))
            if got is None or got["deleted"] or got["json"] != mapped[str(cid)]:
                off_page.append((cid, got and got["json"]))
        if off_page:
            cid, got = off_page[0]
            probs.append(f"{len(off_page)} customers of the recorded page not stored as {MAPPED.name} maps them, "
                         f"e.g. {cid}: stored {got}, expected {mapped[str(cid)]}")
        unordered = [i for i, v in st.items() if not keys_in_name_order(v["text"])]
        if unordered:
            probs.append(f"{len(unordered)} stored records whose keys are not in name order, e.g. "
                         f"{st[unordered[0]]['text'][:160]}")
        status = "OK" if not probs else "MISMATCH"
        print(f"  [{self.name}] compare after {label}: {status} (truth {len(truth)} live, {len(gone)} gone; "
              f"store {sum(not v['deleted'] for v in st.values())} live, {sum(v['deleted'] for v in st.values())} deleted)"
              + ("".join("\n      - " + p for p in probs)), flush=True)
        if record:
            self.problems += [f"after {label}: {p}" for p in probs]
        return probs

    def live_ids(self) -> set[str]:
        return {i for i, v in self.store().items() if not v["deleted"]}

    def finish(self) -> dict:
        self.fake.stop()
        return {"name": self.name, "ok": not self.problems, "problems": self.problems,
                "notes": sorted(set(self.notes)),
                "runs": [{k: v for k, v in r.items() if k not in ("requests", "raw", "log")} for r in self.runs]}


# Notes of the fake's that are not a misuse by the sync: what a scenario made it do.
BENIGN_NOTES = ("throttled", "bad token", "hook answered", "cdc live=")

# The query of docs/sync.md ("Passes"), whitespace aside.
QUERY_RE = re.compile(r"SELECT \* FROM Customer WHERE Active IN \(true, false\)"
                      r"(?: AND MetaData\.LastUpdatedTime >= '([^']*)')?"
                      r" ORDERBY MetaData\.LastUpdatedTime STARTPOSITION ([1-9][0-9]*) MAXRESULTS 1000")


_ORDER_CHECKED: dict[str, bool] = {}


def keys_in_name_order(text: str) -> bool:
    """docs/quickbooks.md: the keys of a stored Customer are written in the order of their names."""
    if text in _ORDER_CHECKED:
        return _ORDER_CHECKED[text]
    ok = True

    def hook(pairs):
        nonlocal ok
        keys = [k for k, _ in pairs]
        ok = ok and keys == sorted(keys)
        return dict(pairs)
    json.loads(text, object_pairs_hook=hook)
    _ORDER_CHECKED[text] = ok
    return ok


SHAPES: dict[str, int] = {}


def shape(q: str) -> str:
    q = re.sub(r"'(?:\\.|''|[^'\\])*'", "'<ts>'", q)
    return re.sub(r"\b\d+\b", "<n>", q)


def describe_req(r) -> dict:
    if r.query_text:
        k = shape(r.query_text)
        SHAPES[k] = SHAPES.get(k, 0) + 1
    elif r.kind == "cdc":
        k = "CDC " + shape(r.raw_query)
        SHAPES[k] = SHAPES.get(k, 0) + 1
    d = {"n": r.n, "status": r.status, "kind": r.kind, "t": round(r.at % 10000, 2)}
    if r.query_text:
        d["query"] = r.query_text
    elif r.kind != "query":
        d["path"] = r.path + "?" + r.raw_query
    if r.ids:
        d["ids"] = len(r.ids)
        d["first_last"] = [r.ids[0], r.ids[-1]]
    if r.note.strip():
        d["note"] = r.note.strip()
    return d


def request_stats(res: dict) -> tuple[int, int]:
    q = sum(1 for r in res["requests"] if r["kind"] == "query")
    c = sum(1 for r in res["requests"] if r["kind"] == "cdc")
    return q, c


def queries(res: dict) -> list:
    return [r for r in res["raw"] if r.kind == "query"]


def since_of(r) -> float | None:
    """The instant of a query's `LastUpdatedTime >=` bound; None for a pass from the beginning."""
    m = QUERY_RE.fullmatch(" ".join((r.query_text or "").split()))
    return parse_ts(m.group(1)) if m and m.group(1) is not None else None


def start_of(r) -> int | None:
    m = QUERY_RE.fullmatch(" ".join((r.query_text or "").split()))
    return int(m.group(2)) if m else None


def full_pass_pages(n: int) -> int:
    """docs/sync.md: a full pass of N ≥ 1000 customers takes ⌊(N − 1000) / 999⌋ + 2 pages
    (each page after the first repeats one record; a last full page is followed by a short one);
    below 1000, one page."""
    return 1 if n < PAGE_SIZE else (n - PAGE_SIZE) // (PAGE_SIZE - 1) + 2


# (a log line may end with the run's fields, ` connection="…" run="…"`: not part of the reason)
LISTING_RE = re.compile(r"full sync of all customers, active and archived, as listing (\S+): "
                        r"(.*?)(?: connection=\"[^\"\n]*\" run=\"[^\"\n]*\")?$", re.M)
LISTING_END_RE = re.compile(r"listing (\S+) complete: (\d+) customers no longer in QuickBooks deleted")


def listings(res: dict) -> tuple[list[str], list[int]]:
    """From the run's log (-v), as docs/sync.md words it: the reasons of the listings it began,
    and how many customers each listing it completed deleted."""
    return ([m.group(2) for m in LISTING_RE.finditer(res["log"])],
            [int(m.group(2)) for m in LISTING_END_RE.finditer(res["log"])])


def expect_idle(env: Env, res: dict, label: str) -> None:
    """docs/sync.md: an incremental run with nothing changed takes two requests, one page and one
    CDC request, and changes nothing."""
    q, c = request_stats(res)
    env.expect((q, c) == (1, 1), f"{label}: {q} query + {c} CDC requests; an idle incremental run is "
                                 f"one query and one CDC request")
    s = res["summary"] or {}
    env.expect(not any(s.get(k) for k in ("added", "updated", "deleted")), f"{label}: changed the store: {s}")


def check_resumed(env: Env, failed: dict, nxt: dict, label: str) -> None:
    """docs/sync.md (Checkpoints, Resuming): the run after a failure resumes the pass at the checkpoint
    of its last stored page (since = that page's last LastUpdatedTime, starting one record early at its
    last customer, the anchor) and re-reads none of the pages already stored."""
    fq = queries(failed)
    begins = [i for i, r in enumerate(fq) if since_of(r) is None]
    if not env.expect(bool(begins), f"{label}: the failed run began no pass from the beginning"):
        return
    stored = [r for r in fq[begins[-1]:] if r.status == 200 and r.ids]
    if not env.expect(bool(stored), f"{label}: the failed run stored no page of its pass"):
        return
    anchor = stored[-1].ids[-1]
    row = env.company.rows[anchor]
    nq = queries(nxt)
    if not env.expect(bool(nq), f"{label}: no query"):
        return
    first = nq[0]
    env.expect(since_of(first) == row.updated,
               f"{label}: did not resume at the last stored page: its first query is {first.query_text!r}, "
               f"the checkpoint is at {render_ts(row.updated)} (customer {anchor})")
    env.expect(bool(first.ids) and first.ids[0] == anchor,
               f"{label}: the resumed page does not start at the anchor {anchor} (got "
               f"{first.ids[:1]})")
    reread = ({i for r in nq for i in r.ids} & {i for r in stored for i in r.ids}) - {anchor}
    env.expect(not reread, f"{label}: re-read {len(reread)} customers of pages already stored, "
                           f"e.g. {sorted(reread)[:8]}")
    n = len(env.company.rows)
    env.expect(len(nq) == full_pass_pages(n) - len(stored),
               f"{label}: {len(nq)} queries; the pass has {full_pass_pages(n)} pages of which "
               f"{len(stored)} were stored, so {full_pass_pages(n) - len(stored)} remain")
    env.expect(request_stats(nxt)[1] == 0, f"{label}: a resumed full pass reads no CDC")


# ----------------------------------------------------------------------------
# scenarios
# ----------------------------------------------------------------------------

def big_company(env: Env, n: int = 2500, group: int = 1500, archived=0.1) -> int:
    """n customers; `group` of them share one LastUpdatedTime T0 (three days ago). Returns T0."""
    now = env.company.now_s()
    t0 = now - 3 * 86400
    before = (n - group) // 2
    after = n - group - before
    env.add_customers(before, lambda k: t0 - 86400 * 5 + k * 37, archived)
    # the group is written in shuffled id order
    env.add_customers(group, lambda k: t0, archived)
    env.add_customers(after, lambda k: t0 + 60 + k * 29, archived)
    return t0


def expect_full_sync(env: Env, res: dict, n: int, label: str) -> None:
    """A first sync: one full pass of ⌊(N − 1000) / 999⌋ + 2 pages (one below 1000), no CDC, every
    live customer added."""
    q, c = request_stats(res)
    env.expect((q, c) == (full_pass_pages(n), 0),
               f"{label}: {q} query + {c} CDC requests for {n} customers (active and archived); "
               f"docs/sync.md: a full pass takes {full_pass_pages(n)} pages, and a first sync reads no CDC")
    live = len(env.company.expected_records())
    added = (res["summary"] or {}).get("added")
    env.expect(added == live, f"{label}: the summary counts {added} added; {live} customers are live")


def s0_auth(env: Env):
    """(extra) a wrong token: the run fails with the 401 named."""
    env.add_customers(10, lambda k: env.company.now_s() - 1000 + k)
    res = env.run("wrong token", expect_ok=False, token="something-else")
    env.expect("401" in res["error"] and "3200" in res["error"],
               f"401 error line does not name 401/3200: {res['error']!r}")
    env.expect([r["status"] for r in res["requests"]] == [401],
               f"a 401 is not retried (only 429, 5xx, timeouts and failed connections are): "
               f"{[r['status'] for r in res['requests']]}")
    n = len(env.company.rows)
    res = env.run("right token")
    env.compare("right token")
    expect_full_sync(env, res, n, "right token")


def s1_full_incremental_idle(env: Env):
    t0 = big_company(env, 2500, 1500)
    n = len(env.company.rows)
    res = env.run("full sync")
    env.compare("full sync")
    expect_full_sync(env, res, n, "full sync")
    env.fake.clock.advance(3600)
    ids = [i for i in env.company.rows if i >= 100]
    rng = env.rng
    group_ids = [i for i in ids if env.company.rows[i].updated == t0]
    for cid in rng.sample(group_ids, 25) + rng.sample(ids, 25):
        if cid in env.company.rows:
            env.edit(cid)
    live = [i for i in env.company.rows if env.company.rows[i].active]
    for cid in rng.sample(live, 20):
        env.company.archive(cid)
    dead = [i for i in env.company.rows if not env.company.rows[i].active]
    for cid in rng.sample(dead, 5):
        env.company.update(cid, active=True)
    for _ in range(30):
        env.new_customer()
    env.fake.clock.advance(5)
    res = env.run("incremental")
    env.compare("incremental")
    # Some 100 changes: one page (shorter than 1000, so the pass ends there), then CDC.
    q, c = request_stats(res)
    env.expect((q, c) == (1, 1), f"incremental of about 100 changes: {q} query + {c} CDC requests; "
                                 f"docs/sync.md: one page, then CDC after the first page")
    env.expect(since_of(queries(res)[0]) is not None if q else False,
               "the incremental run did not start at the checkpoint's timestamp")
    env.fake.clock.advance(600)
    res = env.run("idle")
    env.compare("idle")
    expect_idle(env, res, "idle")


def expect_reconciled_now(env: Env, res: dict, n: int, reason: str, deleted: int, after_cdc: bool) -> None:
    """The run reconciled: after the incremental page that found it due (and, for a cut CDC answer,
    the CDC request), one full pass from the beginning, inside a listing whose end deleted `deleted`."""
    qs = queries(res)
    env.expect(bool(qs) and since_of(qs[0]) is not None,
               "the run did not start with an incremental page from the checkpoint")
    full = qs[1:]
    env.expect(len(full) == full_pass_pages(n) and bool(full) and since_of(full[0]) is None,
               f"after the first page, {len(full)} queries (the first {full[0].query_text if full else None!r}); "
               f"a full pass from the beginning of {n} customers takes {full_pass_pages(n)}")
    cdc = [r for r in res["raw"] if r.kind == "cdc"]
    if after_cdc:
        env.expect(len(cdc) == 1 and len(cdc[0].ids) == 1000 and qs[0].n < cdc[0].n < (full[0].n if full else 0),
                   f"expected one CDC request answering 1000 objects between the first page and the full pass: "
                   f"{[(r.n, len(r.ids)) for r in cdc]}")
    else:
        env.expect(not cdc, f"{len(cdc)} CDC requests; none should be made (changedSince would be refused)")
    reasons, ends = listings(res)
    env.expect(len(reasons) == 1 and reason in reasons[0],
               f"the listing's reason in the log: {reasons}; expected one with {reason!r}")
    env.expect(ends == [deleted], f"listings completed (customers deleted): {ends}; expected [{deleted}]")


def s2_cdc_cut(env: Env):
    env.add_customers(1500, lambda k: env.company.now_s() - 86400 * 10 + k * 60)
    env.run("full sync")
    env.compare("full sync")
    env.fake.clock.advance(3600)
    live = [i for i in env.company.rows if i >= 100 and env.company.rows[i].active]
    victims = env.rng.sample(live, 3)
    for v in victims:
        env.company.delete_outright(v)
    env.fake.clock.advance(60)
    others = [i for i in env.company.rows if i >= 100]
    for k, cid in enumerate(env.rng.sample(others, 1200)):
        if k % 100 == 0:
            env.fake.clock.advance(1)
        env.edit(cid)
    env.fake.clock.advance(5)
    n = len(env.company.rows)
    # The first run after them reconciles: the store equals the truth after it, not eventually.
    res = env.run("after 3 merges + 1200 edits")
    env.compare("the first run after them")
    expect_reconciled_now(env, res, n, "CDC answered 1000 objects, its maximum", deleted=len(victims),
                          after_cdc=True)
    env.notes.append(f"merged away: {victims}")
    env.fake.clock.advance(60)
    res = env.run("idle")
    env.compare("idle")
    expect_idle(env, res, "idle after the reconciliation")


def s3_cdc_35_days(env: Env):
    env.add_customers(1500, lambda k: env.company.now_s() - 86400 * 10 + k * 60)
    env.run("full sync")
    env.compare("full sync")
    env.fake.clock.advance(3600)
    live = [i for i in env.company.rows if i >= 100 and env.company.rows[i].active]
    victims = env.rng.sample(live, 3)
    for v in victims:
        env.company.delete_outright(v)
    env.fake.clock.advance(35 * 86400)
    n = len(env.company.rows)
    res = env.run("35 days later")
    env.compare("the first run 35 days later")
    expect_reconciled_now(env, res, n, "beyond CDC's 30 days", deleted=len(victims), after_cdc=False)
    env.notes.append(f"merged away: {victims}")
    env.fake.clock.advance(60)
    res = env.run("idle")
    env.compare("idle")
    expect_idle(env, res, "idle after the reconciliation")


def fail_after(n_ok_queries: int, status: int):
    def hook(fake: FakeQBO, rec):
        done = sum(1 for r in fake.log if r.kind == "query" and r.status == 200)
        if rec.kind == "query" and done >= n_ok_queries:
            if status == 503:
                return Response(503, b"<html><body>503 Service Unavailable</body></html>", "text/html")
            body = {"Fault": {"Error": [{"Message": "An application error has occurred while processing your request",
                                         "Detail": "System Failure Error: something broke", "code": "10000"}],
                              "type": "SystemFault"}, "time": "2026-05-05T05:15:24.356-07:00"}
            return Response(500, json.dumps(body).encode(), "application/json")
        return None
    return hook


def s4_interrupted_listing(env: Env, status: int = 503, ok_queries: int = 2):
    big_company(env, 2500, 1500)
    env.run("full sync")
    env.compare("full sync")
    env.fake.clock.advance(600)
    live = [i for i in env.company.rows if i >= 100 and env.company.rows[i].active]
    victims = env.rng.sample(live, 3)
    for v in victims:
        env.company.delete_outright(v, in_cdc=False)       # merged, never reported by CDC
    for cid in env.rng.sample(live, 10):
        if cid in env.company.rows:
            env.edit(cid)
    env.fake.clock.advance(25 * 3600)                      # the daily reconciliation is due
    before = env.live_ids()
    res = env.run(f"listing with HTTP {status} after {ok_queries} good pages", expect_ok=False,
                  hooks=[fail_after(ok_queries, status)], extra=["--retry-budget-secs", "5"])
    after = env.live_ids()
    lost = before - after
    env.expect(not lost, f"the failed listing deleted {len(lost)} records: {sorted(lost)[:10]}")
    env.expect(any(r["status"] == status for r in res["requests"]),
               "the injected failure was never reached (listing not started?)")
    reasons, ends = listings(res)
    env.expect(len(reasons) == 1 and "more than 24 h ago" in reasons[0],
               f"the failed run's listing reason: {reasons}; expected the daily one")
    env.expect(ends == [], f"the failed run completed a listing: {ends}")
    env.expect(str(status) in res["error"], f"the error does not name HTTP {status}: {res['error']!r}")
    before = env.live_ids()
    nxt = env.run("next run")
    env.compare("next run")
    check_resumed(env, res, nxt, "next run")
    # It deletes exactly the merged-away customers, and only when the listing completes.
    deleted = before - env.live_ids()
    env.expect(deleted == {str(v) for v in victims},
               f"the completed listing deleted {sorted(deleted, key=int)}; the merged-away customers are "
               f"{sorted(victims)}")
    env.expect(listings(nxt) == ([], [len(victims)]),
               f"the next run's listings (begun, completed): {listings(nxt)}; expected it to go on with the "
               f"open listing and complete it deleting {len(victims)}")
    env.run("idle")
    env.compare("idle")
    expect_idle(env, env.runs[-1], "idle")


def s4b(env: Env):
    s4_interrupted_listing(env, status=500, ok_queries=3)


def adder(min_query_index: int, added: list):
    def hook(fake: FakeQBO, rec):
        nq = sum(1 for r in fake.log if r.kind == "query")   # includes this one
        if rec.kind == "query" and nq >= min_query_index:
            c = fake.company
            i = c._next_id
            cid = c.add(gen_body(i, random.Random(i)), balance="42.42")
            added.append(cid)
        return None
    return hook


def check_added(env: Env, added: list, label: str):
    st = env.store()
    for cid in added:
        r = st.get(str(cid))
        if r is None:
            env.problems.append(f"{label}: customer {cid} added during the pass is not in the store")
        elif r["deleted"] or r["action"] != "ADDED":
            env.problems.append(f"{label}: customer {cid} added during the pass was deleted at some point "
                                f"(deleted={r['deleted']}, last_action={r['action']})")


def s5_added_during_pass(env: Env):
    big_company(env, 2500, 1500)
    added: list[int] = []
    res = env.run("first full sync, adding a customer before pages 2..", hooks=[adder(2, added)])
    env.compare("first full sync")
    q = len(queries(res))
    env.expect(q >= 3 and len(added) == q - 1,
               f"the hook added {len(added)} customers over {q} queries; it acts before every query but the "
               f"first, so expected {q - 1} (and a pass of at least 3 pages)")
    check_added(env, added, "first full sync")
    env.fake.clock.advance(25 * 3600)      # reconciliation due
    added2: list[int] = []
    res = env.run("reconciliation, adding a customer before every page", hooks=[adder(1, added2)])
    env.compare("reconciliation")
    q = len(queries(res))
    env.expect(q >= 3 and len(added2) == q,
               f"the hook added {len(added2)} customers over {q} queries; expected one before every query")
    reasons, ends = listings(res)
    env.expect(len(reasons) == 1 and "more than 24 h ago" in reasons[0] and ends == [0],
               f"the reconciliation's listings (reasons, deleted): {reasons}, {ends}; expected the daily one, "
               f"deleting nothing")
    check_added(env, added2, "reconciliation")
    env.notes.append(f"added during passes: {added} and {added2}")
    env.fake.clock.advance(60)
    env.run("next run")
    env.compare("next run")
    check_added(env, added + added2, "next run")


def s6_throttle(env: Env):
    big_company(env, 2500, 1500)
    n = len(env.company.rows)
    res = env.run("full sync, XML 429s for 20 s from request 3", throttle=(3, 20))
    env.compare("throttled full sync")
    raw = res["raw"]
    thr = [r for r in raw if r.status == 429]
    # One XML 429 without Retry-After; the host waits Intuit's 60 s (more than the 20 s of throttling),
    # so the retry of that same request succeeds.
    env.expect(len(thr) == 1 and thr[0].n == 3,
               f"throttled answers at requests {[r.n for r in thr]}; expected one, at request 3")
    if thr:
        nxt = next((r for r in raw if r.n == thr[0].n + 1), None)
        env.expect(nxt is not None and nxt.query_text == thr[0].query_text and nxt.status == 200,
                   f"the request after the 429 is not its retry: {nxt and nxt.query_text!r}")
        if nxt is not None:
            gap = nxt.mono - thr[0].mono
            env.expect(gap >= THROTTLE_ADVICE_SECS,
                       f"the host retried {gap:.1f} s after a 429 without Retry-After; Intuit's advice is "
                       f"{THROTTLE_ADVICE_SECS} s")
            env.notes.append(f"retried {gap:.1f} s after the 429")
    q, c = request_stats(res)
    env.expect((q, c) == (full_pass_pages(n) + 1, 0),
               f"{q} query + {c} CDC requests; expected the {full_pass_pages(n)} pages and one retry")
    env.notes.append(f"retries reported {res['summary'] and res['summary'].get('retries')}")
    env.fake.clock.advance(600)
    res = env.run("idle")
    env.compare("idle")
    expect_idle(env, res, "idle")


def s7_fall_back(env: Env):
    """Full and incremental syncs across the November 2026 fall-back."""
    # records updated before the fall-back, at 01:30-07:00 (600 of them in that one second)
    early = int(pt(2026, 10, 31, 12, 0).timestamp())
    env.add_customers(800, lambda k: early + k * 40)
    t_a = int(pt(2026, 11, 1, 1, 30, 0, fold=0).timestamp())          # 01:30:00-07:00
    env.add_customers(600, lambda k: t_a)
    env.add_customers(200, lambda k: t_a + 1 + k * 8)                # 01:30:01-07:00 .. 01:56-07:00
    # and after it: 01:00-08:00 .. 01:20-08:00, textually earlier than 01:30-07:00
    t_b = int(pt(2026, 11, 1, 1, 10, 0, fold=1).timestamp())          # 01:10:00-08:00
    env.add_customers(300, lambda k: t_b - 600 + k * 2)              # 01:00-08:00 .. 01:09:58-08:00
    env.add_customers(500, lambda k: t_b)
    env.fake.clock.set(pt(2026, 11, 1, 1, 25, 0, fold=1))            # 01:25-08:00
    n = len(env.company.rows)
    res = env.run("full sync across the fall-back")
    env.compare("full sync across the fall-back")
    expect_full_sync(env, res, n, "full sync across the fall-back")

    # fresh company for the incremental: synced at 01:31-07:00, changes at 01:10-08:00
    env2 = Env(env.name + "-incr", clock_start=pt(2026, 11, 1, 1, 0, fold=0), seed=7)
    try:
        env2.add_customers(1500, lambda k: early - 86400 + k * 50)
        env2.fake.clock.set(pt(2026, 11, 1, 1, 30, fold=0))
        ids = [i for i in env2.company.rows if i >= 100]
        for cid in env2.rng.sample(ids, 700):
            env2.edit(cid, at=t_a)                                      # 01:30:00-07:00
        env2.fake.clock.set(pt(2026, 11, 1, 1, 31, fold=0))
        n = len(env2.company.rows)
        res = env2.run("full sync at 01:31-07:00")
        env2.compare("full sync at 01:31-07:00")
        expect_full_sync(env2, res, n, "full sync at 01:31-07:00")
        env2.fake.clock.set(pt(2026, 11, 1, 1, 10, fold=1))             # 01:10-08:00, 39 min later
        ids = [i for i in env2.company.rows if i >= 100]
        for cid in env2.rng.sample(ids, 50):
            env2.edit(cid)
        live = [i for i in env2.company.rows if env2.company.rows[i].active and i >= 100]
        for cid in env2.rng.sample(live, 5):
            env2.company.archive(cid)
        live = [i for i in env2.company.rows if env2.company.rows[i].active and i >= 100]
        for cid in env2.rng.sample(live, 2):
            env2.company.delete_outright(cid)
        for _ in range(10):
            env2.new_customer()
        env2.fake.clock.set(pt(2026, 11, 1, 1, 12, fold=1))
        res = env2.run("incremental at 01:12-08:00")
        env2.compare("incremental at 01:12-08:00")
        # 01:10-08:00 sorts before the checkpoint's 01:30-07:00 as text, after it as an instant:
        # an incremental from the checkpoint, one page (some 70 changes) and CDC, nothing from the start.
        env2.expect(request_stats(res) == (1, 1) and since_of(queries(res)[0]) is not None,
                    f"incremental at 01:12-08:00: {request_stats(res)} (query, CDC) requests; expected one page "
                    f"from the checkpoint and one CDC request")
        env2.fake.clock.set(pt(2026, 11, 1, 1, 40, fold=1))
        for cid in env2.rng.sample([i for i in env2.company.rows if i >= 100], 5):
            env2.edit(cid)
        env2.fake.clock.set(pt(2026, 11, 1, 1, 41, fold=1))
        env2.run("incremental at 01:41-08:00")
        env2.compare("incremental at 01:41-08:00")
        env2.fake.clock.advance(300)
        res = env2.run("idle")
        env2.compare("idle")
        expect_idle(env2, res, "idle after the fall-back")
    finally:
        r = env2.finish()
        env.problems += [f"[incr] {p}" for p in r["problems"]]
        env.notes += [f"[incr] {n}" for n in r["notes"]]
        env.runs += [dict(x, label="[incr] " + x["label"]) for x in r["runs"]]
    # and an incremental on the first company too
    env.fake.clock.set(pt(2026, 11, 1, 1, 50, fold=1))
    for cid in env.rng.sample([i for i in env.company.rows if i >= 100], 20):
        env.edit(cid)
    env.fake.clock.set(pt(2026, 11, 1, 1, 51, fold=1))
    env.run("incremental at 01:51-08:00")
    env.compare("incremental at 01:51-08:00")


def editor(t0: int, acted: dict, rounds: int = 2):
    """Before query pages 2..rounds+1: edit customers of the T0 group already read (the first,
    the middle and the anchor, the last read) and archive one more. Counts what it did in `acted`."""
    acted.setdefault("fired", 0)
    acted.setdefault("edited", [])
    acted.setdefault("archived", [])

    def hook(fake: FakeQBO, rec):
        if rec.kind != "query":
            return None
        prev = [r for r in fake.log if r.kind == "query" and r.status == 200 and r.ids]
        if not prev or len(prev) > rounds:
            return None
        comp = fake.company
        last_ids = prev[-1].ids
        grp = [i for i in last_ids if i in comp.rows and comp.rows[i].updated == t0]
        if not grp:
            return None
        acted["fired"] += 1
        picks = {grp[0], grp[len(grp) // 2], grp[-1]}          # first, middle, and the anchor (last read)
        for cid in picks:
            r = comp.rows[cid]
            comp.update(cid, {"DisplayName": r.body.get("DisplayName", "") + " (edited mid-sync)"})
            acted["edited"].append(cid)
        # and archive one read earlier in the group
        more = [i for i in last_ids if i in comp.rows and comp.rows[i].updated == t0 and comp.rows[i].active]
        if more:
            comp.archive(more[0])
            acted["archived"].append(more[0])
        return None
    return hook


def expect_editor_acted(env: Env, acted: dict, rounds: int, res: dict, t0: int) -> None:
    """The hook acted before each of the pages it was meant to, and the sync saw the group shift:
    after the anchor moved, it re-read the group from its start (docs/sync.md, the anchor check)."""
    env.expect(acted["fired"] == rounds and len(acted["edited"]) == 3 * rounds
               and len(acted["archived"]) == rounds,
               f"the editing hook acted {acted['fired']} times ({len(acted['edited'])} edited, "
               f"{len(acted['archived'])} archived); expected {rounds} times, 3 edits and 1 archive each")
    qs = queries(res)
    inside = [i for i, r in enumerate(qs) if since_of(r) == t0 and (start_of(r) or 0) > 1]
    rereads = [r for r in qs[inside[0] + 1:] if since_of(r) == t0 and start_of(r) == 1] if inside else []
    env.expect(len(rereads) >= 1,
               f"no re-read of the group at {render_ts(t0)} from its start (STARTPOSITION 1) after "
               f"its members were edited between pages")
    env.notes.append(f"group re-read {len(rereads)} times")


def s8_edits_between_pages(env: Env):
    t0 = big_company(env, 2500, 1500, archived=0.05)
    acted: dict = {}
    res = env.run("full sync with edits of already-read group members", hooks=[editor(t0, acted)])
    env.notes.append(f"edited mid-sync: {acted['edited']}, archived {acted['archived']}")
    env.compare("full sync with edits")
    expect_editor_acted(env, acted, 2, res, t0)
    env.fake.clock.advance(120)
    env.run("incremental")
    env.compare("incremental")


def s8b_edits_tie_by_id(env: Env):
    """As s8, with ties returned in Id order instead of table order."""
    env.company.tie_order = "id"
    s8_edits_between_pages(env)


def s9_huge_group(env: Env):
    """3,500 customers share one second; edits to read members, unread members and the anchor between pages."""
    now = env.company.now_s()
    t0 = now - 86400
    env.add_customers(300, lambda k: t0 - 3000 + k * 7, 0.1)
    env.add_customers(3500, lambda k: t0, 0.1)
    env.add_customers(300, lambda k: t0 + 10 + k * 7, 0.1)
    acted: dict = {"unread": []}
    base = editor(t0, acted, rounds=4)

    def hook(fake, rec):
        base(fake, rec)
        comp = fake.company
        prev = [r for r in fake.log if r.kind == "query" and r.status == 200 and r.ids]
        if rec.kind == "query" and 1 <= len(prev) <= 4:
            read = {i for r in prev for i in r.ids}
            unread = [i for i, r in comp.rows.items() if r.updated == t0 and i not in read]
            for cid in unread[:2]:
                comp.update(cid, {"DisplayName": "unread edited"})
                acted["unread"].append(cid)
        return None
    res = env.run("full sync of a 3,500-member group with edits", hooks=[hook])
    env.notes.append(f"edited mid-sync: {len(acted['edited'])} read, {len(acted['unread'])} unread, "
                     f"{len(acted['archived'])} archived")
    env.compare("full sync")
    expect_editor_acted(env, acted, 4, res, t0)
    env.expect(len(acted["unread"]) == 2 * 4,
               f"the hook edited {len(acted['unread'])} unread group members; expected 2 before each of pages 2-5")
    env.fake.clock.advance(60)
    env.run("incremental")
    env.compare("incremental")


def s6b_throttle_beyond_budget(env: Env):
    """(extra) throttled longer than the retry budget: a clear 3001 error, then the next run resumes."""
    big_company(env, 2500, 1500)
    res = env.run("full sync, 429s for 30 s from request 2, budget 5 s", throttle=(2, 30), expect_ok=False,
                  extra=["--retry-budget-secs", "5"])
    env.expect(THROTTLE_ERROR in res["error"],
               f"the error is not the documented {THROTTLE_ERROR!r}: {res['error']!r}")
    env.expect("<" not in res["error"], f"raw XML in the error: {res['error']!r}")
    # A retry whose wait (Intuit's 60 s) would end past the 5 s budget is not made (docs/architecture.md).
    env.expect([r.status for r in res["raw"]] == [200, 429],
               f"statuses {[r.status for r in res['raw']]}; expected the first page, then one 429 not retried")
    time.sleep(1)
    nxt = env.run("next run")
    env.compare("next run")
    check_resumed(env, res, nxt, "next run")


SCENARIOS = {
    "s0_auth": s0_auth,
    "s1_full_incremental_idle": s1_full_incremental_idle,
    "s2_cdc_cut": s2_cdc_cut,
    "s3_cdc_35_days": s3_cdc_35_days,
    "s4_interrupted_listing_503": s4_interrupted_listing,
    "s4b_interrupted_listing_500": s4b,
    "s5_added_during_pass": s5_added_during_pass,
    "s6_throttle": s6_throttle,
    "s7_fall_back": s7_fall_back,
    "s8_edits_between_pages": s8_edits_between_pages,
    "s8b_edits_tie_by_id": s8b_edits_tie_by_id,
    "s9_huge_group": s9_huge_group,
    "s6b_throttle_beyond_budget": s6b_throttle_beyond_budget,
}


def main(argv):
    for path in (BIN, WASM):
        if not Path(path).exists():
            print(f"missing {path}: run the README's first command first (cargo demo builds both)", file=sys.stderr)
            return 2
    print(f"sync-host {BIN}, component {WASM}; databases and request logs in {OUT}", flush=True)
    self_test()
    WORK.mkdir(exist_ok=True)
    LOGS.mkdir(exist_ok=True)
    names = argv or list(SCENARIOS)
    results = []
    for name in names:
        (LOGS / f"{name}.log").unlink(missing_ok=True)
        (LOGS / f"{name}-incr.log").unlink(missing_ok=True)
        print(f"== {name}", flush=True)
        start = datetime(2026, 11, 1, 0, 40, tzinfo=PACIFIC) if name.startswith("s7") else SUMMER
        env = Env(name, clock_start=start)
        try:
            SCENARIOS[name](env)
        except Exception:
            env.problems.append("runner crashed: " + traceback.format_exc())
        r = env.finish()
        results.append(r)
        print(f"== {name}: {'PASS' if r['ok'] else 'FAIL'}", flush=True)
        for p in r["problems"]:
            print("   problem:", p)
        for n in r["notes"]:
            print("   note:", n)
    print("== distinct requests the sync sent (literals elided):")
    for k, v in sorted(SHAPES.items()):
        print(f"   {v:5d}  {k}")
    out = OUT / "results.json"
    prev = json.loads(out.read_text()) if out.exists() else {}
    prev.update({r["name"]: r for r in results})
    out.write_text(json.dumps(prev, indent=1, ensure_ascii=False))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
