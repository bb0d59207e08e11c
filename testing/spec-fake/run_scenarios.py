#!/usr/bin/env python3
"""Drives `sync-host run` against the independent QBO fake (qbo_fake.py) and
checks after each scenario that the store equals the fake's truth.

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
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
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
FIXTURE = ROOT / "tests/fixtures/qbo-customers-page.json"
FIXTURE_EXPECTED = ROOT / "tests/fixtures/qbo-customers-page.expected.json"

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


def load_fixture(fake: FakeQBO) -> None:
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
    comp._next_id = max(comp._next_id, 100)


def self_test() -> None:
    """The fake's own checks: mapping of the recorded page, parser, DST order."""
    fake = FakeQBO()
    fake.clock.set(SUMMER)
    load_fixture(fake)
    expected = json.loads(FIXTURE_EXPECTED.read_text())
    data = json.loads(FIXTURE.read_text())["QueryResponse"]["Customer"]
    for c, e in zip(data, expected):
        got = expected_mapping(json.loads(dumps(fake.company.render(fake.company.rows[int(c["Id"])]))))
        assert got == e, (c["Id"], got, e)
        assert json.loads(dumps(fake.company.render(fake.company.rows[int(c["Id"])])))["Balance"] == c["Balance"]
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
        load_fixture(self.fake)

    @property
    def company(self):
        return self.fake.company

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
        cmd = [BIN, "run", "--component", WASM, "--db", str(self.db), "--base-url", self.url,
               "--realm-id", fake.realm, "--cache-dir", str(CACHE)] + (extra or [])
        env = dict(os.environ, QBO_ACCESS_TOKEN=token or fake.token)
        t0 = time.time()
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        el = time.time() - t0
        try:
            summary = json.loads(p.stdout.strip().splitlines()[-1]) if p.stdout.strip() else None
        except json.JSONDecodeError:
            summary = {"unparsable": p.stdout}
        res = {"label": label, "rc": p.returncode, "summary": summary, "stderr": p.stderr.strip()[-3000:],
               "elapsed": round(el, 1), "requests": [describe_req(r) for r in fake.log]}
        self.runs.append(res)
        LOGS.mkdir(exist_ok=True)
        with open(LOGS / f"{self.name}.log", "a") as fh:
            fh.write(f"=== {label}: rc={p.returncode} {el:.1f}s summary={summary}\n")
            if p.stderr.strip():
                fh.write("stderr: " + p.stderr.strip()[-3000:] + "\n")
            for r in res["requests"]:
                fh.write("  " + json.dumps(r, ensure_ascii=False) + "\n")
        print(f"  [{self.name}] {label}: rc={p.returncode} {el:.1f}s {summary} "
              f"{('stderr: ' + p.stderr.strip()[-400:]) if p.returncode else ''}", flush=True)
        for r in fake.log:
            if r.note.strip() and ("Accept" in r.note or "minorversion" in r.note or "fault" in r.note
                                   or "crash" in r.note or "unknown" in r.note or "timestamp without" in r.note):
                self.notes.append(f"{label} req#{r.n}: {r.note.strip()} {r.query_text or r.raw_query}")
            if r.parsed is not None and r.parsed.notes:
                self.notes.append(f"{label} req#{r.n}: undocumented syntax {r.parsed.notes}: {r.query_text}")
        if expect_ok and p.returncode != 0:
            self.problems.append(f"{label}: run failed rc={p.returncode}: {p.stderr.strip()[-500:]}")
        if not expect_ok and p.returncode == 0:
            self.problems.append(f"{label}: run was expected to fail but exited 0: {summary}")
        return res

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
                    self.notes.append(f"unexpected scope {conn}/{model}")
                    continue
                for rid, js, deleted_at, action in con.execute(
                        "SELECT id, json, deleted_at, last_action FROM records WHERE scope = ?", (sid,)):
                    out[rid] = {"json": json.loads(js), "deleted": deleted_at is not None, "action": action}
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
                "notes": sorted(set(self.notes)), "runs": [{k: v for k, v in r.items() if k != "requests"}
                                                           for r in self.runs]}


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


def s0_auth(env: Env):
    """(extra) a wrong token: the run fails with the 401 named."""
    env.add_customers(10, lambda k: env.company.now_s() - 1000 + k)
    res = env.run("wrong token", expect_ok=False, token="something-else")
    if "401" not in res["stderr"] or "3200" not in res["stderr"]:
        env.problems.append(f"401 error line does not name 401/3200: {res['stderr']}")
    env.run("right token")
    env.compare("right token")


def s1_full_incremental_idle(env: Env):
    t0 = big_company(env, 2500, 1500)
    res = env.run("full sync")
    env.compare("full sync")
    q, c = request_stats(res)
    total = len(env.company.rows)
    import math
    if q > math.ceil(total / 1000) + 1:
        env.notes.append(f"full sync of {total} customers took {q} query requests (documented: about ceil(N/1000)+1 at most)")
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
    env.run("incremental")
    env.compare("incremental")
    env.fake.clock.advance(600)
    res = env.run("idle")
    env.compare("idle")
    q, c = request_stats(res)
    s = res["summary"] or {}
    if (q, c) != (1, 1):
        env.notes.append(f"idle incremental took {q} query + {c} CDC requests (documented: one query request plus one CDC)")
    if any(s.get(k) for k in ("added", "updated", "deleted")):
        env.problems.append(f"idle run changed the store: {s}")


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
    for k in range(1, 4):
        env.run(f"after 3 merges + 1200 edits, run {k}")
        probs = env.compare(f"run {k}", record=False)
        if not probs:
            env.notes.append(f"store equal to truth after {k} run(s); victims {victims}")
            break
    else:
        env.compare("3 runs")


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
    for k in range(1, 4):
        env.run(f"35 days later, run {k}")
        probs = env.compare(f"run {k}", record=False)
        if not probs:
            env.notes.append(f"store equal to truth after {k} run(s); victims {victims}")
            break
    else:
        env.compare("3 runs")


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
    if lost:
        env.problems.append(f"the failed listing deleted {len(lost)} records: {sorted(lost)[:10]}")
    else:
        env.notes.append(f"failed listing deleted nothing ({len(before)} live before and after)")
    if not any(r["status"] == status for r in res["requests"]):
        env.problems.append("the injected failure was never reached (listing not started?)")
    env.run("next run")
    env.compare("next run")
    st = env.store()
    for v in victims:
        if str(v) in st and not st[str(v)]["deleted"]:
            env.problems.append(f"silently merged customer {v} still live after the completed listing")
    env.run("idle")
    env.compare("idle")


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
    env.run("first full sync, adding a customer before pages 2..", hooks=[adder(2, added)])
    env.compare("first full sync")
    check_added(env, added, "first full sync")
    env.fake.clock.advance(25 * 3600)      # reconciliation due
    added2: list[int] = []
    env.run("reconciliation, adding a customer before every page", hooks=[adder(1, added2)])
    env.compare("reconciliation")
    check_added(env, added2, "reconciliation")
    env.notes.append(f"added during passes: {added} and {added2}")
    env.fake.clock.advance(60)
    env.run("next run")
    env.compare("next run")
    check_added(env, added + added2, "next run")


def s6_throttle(env: Env):
    big_company(env, 2500, 1500)
    res = env.run("full sync, XML 429s for 20 s from request 3", throttle=(3, 20))
    env.compare("throttled full sync")
    reqs = res["requests"]
    thr = [r for r in reqs if r["status"] == 429]
    if thr:
        last = thr[-1]
        nxt = next((r for r in reqs if r["n"] > last["n"]), None)
        first_t = thr[0]["t"]
        gaps = [round(b["t"] - a["t"], 1) for a, b in zip(reqs, reqs[1:])]
        env.notes.append(f"{len(thr)} throttled answers; gaps between requests (s): {gaps}; "
                         f"retries reported {res['summary'] and res['summary'].get('retries')}")
    else:
        env.problems.append("no request was throttled")
    env.fake.clock.advance(600)
    env.run("idle")
    env.compare("idle")


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
    env.run("full sync across the fall-back")
    env.compare("full sync across the fall-back")

    # fresh company for the incremental: synced at 01:31-07:00, changes at 01:10-08:00
    env2 = Env(env.name + "-incr", clock_start=pt(2026, 11, 1, 1, 0, fold=0), seed=7)
    try:
        env2.add_customers(1500, lambda k: early - 86400 + k * 50)
        env2.fake.clock.set(pt(2026, 11, 1, 1, 30, fold=0))
        ids = [i for i in env2.company.rows if i >= 100]
        for cid in env2.rng.sample(ids, 700):
            env2.edit(cid, at=t_a)                                      # 01:30:00-07:00
        env2.fake.clock.set(pt(2026, 11, 1, 1, 31, fold=0))
        env2.run("full sync at 01:31-07:00")
        env2.compare("full sync at 01:31-07:00")
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
        env2.run("incremental at 01:12-08:00")
        env2.compare("incremental at 01:12-08:00")
        env2.fake.clock.set(pt(2026, 11, 1, 1, 40, fold=1))
        for cid in env2.rng.sample([i for i in env2.company.rows if i >= 100], 5):
            env2.edit(cid)
        env2.fake.clock.set(pt(2026, 11, 1, 1, 41, fold=1))
        env2.run("incremental at 01:41-08:00")
        env2.compare("incremental at 01:41-08:00")
        env2.fake.clock.advance(300)
        res = env2.run("idle")
        env2.compare("idle")
        if res["summary"] and any(res["summary"].get(k) for k in ("added", "updated", "deleted")):
            env2.problems.append(f"idle run after fall-back changed the store: {res['summary']}")
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


def editor(t0: int, edited: list, rounds: int = 2):
    """Before query pages 2..rounds+1: edit customers of the T0 group already read."""
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
        picks = {grp[0], grp[len(grp) // 2], grp[-1]}          # first, middle, and the anchor (last read)
        for cid in picks:
            r = comp.rows[cid]
            comp.update(cid, {"DisplayName": r.body.get("DisplayName", "") + " (edited mid-sync)"})
            edited.append(cid)
        # and archive one read earlier in the group
        more = [i for i in last_ids if i in comp.rows and comp.rows[i].updated == t0 and comp.rows[i].active]
        if more:
            comp.archive(more[0])
            edited.append(more[0])
        return None
    return hook


def s8_edits_between_pages(env: Env):
    t0 = big_company(env, 2500, 1500, archived=0.05)
    edited: list[int] = []
    res = env.run("full sync with edits of already-read group members", hooks=[editor(t0, edited)])
    env.notes.append(f"edited mid-sync: {edited}")
    env.compare("full sync with edits")
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
    edited: list[int] = []
    base = editor(t0, edited, rounds=4)

    def hook(fake, rec):
        base(fake, rec)
        comp = fake.company
        prev = [r for r in fake.log if r.kind == "query" and r.status == 200 and r.ids]
        if rec.kind == "query" and 1 <= len(prev) <= 4:
            read = {i for r in prev for i in r.ids}
            unread = [i for i, r in comp.rows.items() if r.updated == t0 and i not in read]
            for cid in unread[:2]:
                comp.update(cid, {"DisplayName": "unread edited"})
                edited.append(cid)
        return None
    env.run("full sync of a 3,500-member group with edits", hooks=[hook])
    env.notes.append(f"edited mid-sync: {len(edited)} customers")
    env.compare("full sync")
    env.fake.clock.advance(60)
    env.run("incremental")
    env.compare("incremental")


def s6b_throttle_beyond_budget(env: Env):
    """(extra) throttled longer than the retry budget: a clear 3001 error, then the next run resumes."""
    big_company(env, 2500, 1500)
    res = env.run("full sync, 429s for 30 s from request 2, budget 5 s", throttle=(2, 30), expect_ok=False,
                  extra=["--retry-budget-secs", "5"])
    if "3001" not in res["stderr"] or "ThrottleExceeded" not in res["stderr"]:
        env.problems.append(f"throttle error line lacks code 3001/ThrottleExceeded: {res['stderr']}")
    if "<" in res["stderr"]:
        env.problems.append(f"raw XML in the error: {res['stderr']}")
    time.sleep(1)
    res = env.run("next run")
    env.compare("next run")
    q = [r for r in res["requests"] if r["kind"] == "query"]
    if q and "STARTPOSITION 1 " in q[0].get("query", "") and ">=" not in q[0].get("query", ""):
        env.notes.append("next run restarted from the beginning instead of resuming")


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
