"""An independent fake of QuickBooks Online's Customer query and CDC endpoints.

Written only from QuickBooks' documented behaviour (the facts docs/quickbooks.md
states, and the Customer model there), without reading the project's own fake
(testing/fake-quickbooks) or the sync (guest/src), so that the two fakes do not
share a misreading. Standard library only. Controlled in-process (no admin HTTP API): the
scenario runner holds the FakeQBO object and calls its methods directly.
"""
from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from xml.sax.saxutils import escape as xml_escape
from zoneinfo import ZoneInfo

from customer_model import map_customer

PACIFIC = ZoneInfo("America/Los_Angeles")
CDC_WINDOW = 30 * 86400
MAX_RESULTS_LIMIT = 1000
DEFAULT_MAX_RESULTS = 100


# ----------------------------------------------------------------------------
# time
# ----------------------------------------------------------------------------

class Clock:
    """The fake company's clock: real time shifted by an adjustable offset."""

    def __init__(self, start: Optional[datetime] = None):
        self._lock = threading.Lock()
        self._offset = 0.0
        if start is not None:
            self.set(start)

    def now(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def set(self, when: datetime) -> None:
        assert when.tzinfo is not None
        with self._lock:
            self._offset = when.timestamp() - time.time()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds


def render_ts(epoch_seconds: int) -> str:
    """QBO text of a timestamp: Pacific time with DST, one-second resolution."""
    return datetime.fromtimestamp(int(epoch_seconds), PACIFIC).isoformat(timespec="seconds")


def render_ts_ms(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, PACIFIC).isoformat(timespec="milliseconds")


def utc_ms(epoch_seconds: int) -> str:
    return datetime.fromtimestamp(int(epoch_seconds), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


_TS_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?\s*(Z|z|[+-]\d{2}:?\d{2})?$"
)


class BadTimestamp(ValueError):
    pass


def parse_ts(text: str, notes: Optional[list] = None) -> float:
    """Parse a timestamp literal to an instant (epoch seconds, fractional)."""
    m = _TS_RE.match(text.strip())
    if not m:
        raise BadTimestamp(text)
    y, mo, d, hh, mi, ss, frac, off = m.groups()
    hh = int(hh or 0)
    mi = int(mi or 0)
    ss = int(ss or 0)
    micro = int(round(float(frac) * 1_000_000)) if frac else 0
    if micro == 1_000_000:
        micro = 999_999
    if off is None:
        if notes is not None:
            notes.append(f"timestamp without offset: {text!r} (read as US Pacific)")
        tz = PACIFIC
    elif off in ("Z", "z"):
        tz = timezone.utc
    else:
        sign = -1 if off[0] == "-" else 1
        digits = off[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    try:
        dt = datetime(int(y), int(mo), int(d), hh, mi, ss, micro, tzinfo=tz)
    except ValueError as e:
        raise BadTimestamp(text) from e
    return dt.timestamp()


# ----------------------------------------------------------------------------
# the company
# ----------------------------------------------------------------------------

@dataclass
class Row:
    id: int
    body: dict          # QBO fields except Id, SyncToken, MetaData, Active, Balance
    balance: str        # decimal text, rendered as a raw JSON number
    active: bool
    created: int        # epoch seconds
    updated: int        # epoch seconds
    seq: int            # internal table order (an update moves the row to the end)
    sync_token: int = 0
    balance_with_jobs: Optional[str] = None   # decimal text; None: the same as `balance` (no sub-jobs)


@dataclass
class Tombstone:
    id: int
    deleted: int        # epoch seconds
    in_cdc: bool        # False: merged away and never reported by CDC


class Fault(Exception):
    def __init__(self, status: int, code: str, message: str, detail: str, ftype: str = "ValidationFault"):
        super().__init__(f"{status} {code} {message}: {detail}")
        self.status, self.code, self.message, self.detail, self.ftype = status, code, message, detail, ftype


_DEC_MARK = "\u0000DEC:"


class Company:
    def __init__(self, realm: str, clock: Clock):
        self.realm = realm
        self.clock = clock
        self.rows: dict[int, Row] = {}
        self.tombstones: dict[int, Tombstone] = {}
        self._next_id = 1
        self._next_seq = 1
        self.tie_order = "seq"   # how equal sort keys come back: "seq" (table order, an update moves a row last) or "id"
        self.lock = threading.RLock()

    # --- mutations (the runner's "users" of QuickBooks) ---
    def now_s(self) -> int:
        return int(self.clock.now())

    def _seq(self) -> int:
        s = self._next_seq
        self._next_seq += 1
        return s

    def add(self, body: dict, balance: str = "0", active: bool = True,
            created: Optional[int] = None, updated: Optional[int] = None,
            id: Optional[int] = None) -> int:
        with self.lock:
            if id is None:
                id = self._next_id
            assert id not in self.rows and id not in self.tombstones
            self._next_id = max(self._next_id, id + 1)
            now = self.now_s()
            created = now if created is None else created
            updated = created if updated is None else updated
            self.rows[id] = Row(id, dict(body), str(balance), active, created, updated, self._seq())
            return id

    def update(self, id: int, changes: Optional[dict] = None, balance: Optional[str] = None,
               active: Optional[bool] = None, at: Optional[int] = None) -> None:
        with self.lock:
            r = self.rows[id]
            if changes:
                for k, v in changes.items():
                    if v is None:
                        r.body.pop(k, None)
                    else:
                        r.body[k] = v
            if balance is not None:
                r.balance = str(balance)
                r.balance_with_jobs = None
            if active is not None:
                r.active = active
            r.updated = self.now_s() if at is None else at
            r.sync_token += 1
            r.seq = self._seq()

    def archive(self, id: int, at: Optional[int] = None) -> None:
        self.update(id, active=False, at=at)

    def delete_outright(self, id: int, in_cdc: bool = True, at: Optional[int] = None) -> None:
        """A merge: the row disappears from queries; CDC shows a tombstone (unless in_cdc=False)."""
        with self.lock:
            del self.rows[id]
            self.tombstones[id] = Tombstone(id, self.now_s() if at is None else at, in_cdc)

    # --- rendering ---
    def render(self, r: Row) -> dict:
        d: dict[str, Any] = {}
        body = r.body
        for k in ("Taxable", "BillAddr", "ShipAddr", "Job", "BillWithParent", "ParentRef", "Level"):
            if k in body:
                d[k] = body[k]
        d["Balance"] = _DEC_MARK + r.balance
        d["BalanceWithJobs"] = _DEC_MARK + (r.balance if r.balance_with_jobs is None else r.balance_with_jobs)
        for k, v in body.items():
            if k not in d:
                d[k] = v
        d["Id"] = str(r.id)
        d["SyncToken"] = str(r.sync_token)
        d["MetaData"] = {"CreateTime": render_ts(r.created), "LastUpdatedTime": render_ts(r.updated)}
        d["Active"] = r.active
        return d

    # --- the truth, mapped as docs/quickbooks.md's Customer model says (independently of the product) ---
    def expected_records(self) -> dict[str, dict]:
        with self.lock:
            return {str(r.id): expected_mapping(self.render(r)) for r in self.rows.values() if r.active}

    def gone_ids(self) -> set[str]:
        with self.lock:
            return {str(r.id) for r in self.rows.values() if not r.active} | {str(i) for i in self.tombstones}


def dumps(obj: Any) -> str:
    text = json.dumps(obj, ensure_ascii=False)
    return re.sub(r'"\\u0000DEC:([^"]*)"', r"\1", text)


# ----------------------------------------------------------------------------
# The Customer model's mapping (the runner's truth): customer_model.py, this
# directory's own reading of docs/quickbooks.md and the seed's field list.
# ----------------------------------------------------------------------------

def expected_mapping(c: dict) -> dict:
    """A rendered customer (Balance as the fake's exact decimal text) as a Customer record."""
    bal = c.get("Balance")
    if isinstance(bal, str) and bal.startswith(_DEC_MARK):
        c = dict(c, Balance=Decimal(bal[len(_DEC_MARK):]))
    return map_customer(c)


# ----------------------------------------------------------------------------
# the query language subset
# ----------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>'(?:\\.|''|[^'\\])*')
  | (?P<num>-?\d+(?:\.\d+)?)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),*])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
""", re.X)

FIELDS = {
    "id": "Id",
    "active": "Active",
    "metadata.lastupdatedtime": "MetaData.LastUpdatedTime",
}
KEYWORDS = {"select", "from", "where", "and", "orderby", "startposition", "maxresults", "asc", "desc",
            "in", "count", "true", "false"}


def _parse_error(detail: str) -> Fault:
    return Fault(400, "4000", "Error parsing query", "QueryParserError: " + detail)


def tokenize(q: str) -> list[tuple[str, str]]:
    pos, out = 0, []
    while pos < len(q):
        m = _TOKEN_RE.match(q, pos)
        if not m:
            raise _parse_error(f"Encountered \" {q[pos]!r} \" at line 1, column {pos + 1}.")
        pos = m.end()
        kind = m.lastgroup
        if kind == "ws":
            continue
        out.append((kind, m.group(kind)))
    return out


@dataclass
class Cond:
    field: str
    op: str
    values: list     # parsed Python values
    raw: str


@dataclass
class Query:
    count: bool
    conds: list = field(default_factory=list)
    order: list = field(default_factory=list)   # [(field, desc)]
    start: int = 1
    max: int = DEFAULT_MAX_RESULTS
    notes: list = field(default_factory=list)   # query syntax beyond the documented subset


def _unquote(s: str) -> str:
    body = s[1:-1]
    return re.sub(r"\\(.)|''", lambda m: m.group(1) if m.group(1) is not None else "'", body)


def parse_query(q: str) -> Query:
    toks = tokenize(q)
    i = 0
    notes: list[str] = []

    def peek(k=0):
        return toks[i + k] if i + k < len(toks) else ("eof", "")

    def kw(word):
        t = peek()
        return t[0] == "ident" and t[1].lower() == word

    def expect_kw(word):
        nonlocal i
        if not kw(word):
            raise _parse_error(f"Encountered \"{peek()[1]}\", was expecting \"{word.upper()}\"")
        if peek()[1] != word.upper():
            notes.append(f"keyword in non-upper case: {peek()[1]!r}")
        i += 1

    def expect(kind, val=None):
        nonlocal i
        t = peek()
        if t[0] != kind or (val is not None and t[1] != val):
            raise _parse_error(f"Encountered \"{t[1]}\", was expecting {val or kind}")
        i += 1
        return t[1]

    expect_kw("select")
    count = False
    if peek() == ("punct", "*"):
        i += 1
    elif kw("count"):
        i += 1
        expect("punct", "(")
        expect("punct", "*")
        expect("punct", ")")
        count = True
    else:
        raise _parse_error(f"Encountered \"{peek()[1]}\": only SELECT * or SELECT COUNT(*) are supported here")
    expect_kw("from")
    ent = expect("ident")
    if ent != "Customer":
        if ent.lower() == "customer":
            notes.append(f"entity spelled {ent!r}")
        else:
            raise Fault(400, "4000", "Error parsing query", f"QueryParserError: Invalid entity: {ent}")
    query = Query(count=count, notes=notes)

    def field_name():
        t = peek()
        if t[0] != "ident" or t[1].lower() not in FIELDS:
            raise Fault(400, "4001", "Invalid query",
                        f"QueryValidationError: property '{t[1]}' is not queryable (this fake knows Id, Active, MetaData.LastUpdatedTime)")
        nonlocal i
        i += 1
        if t[1] != FIELDS[t[1].lower()]:
            notes.append(f"field spelled {t[1]!r}")
        return FIELDS[t[1].lower()]

    def literal(fname):
        nonlocal i
        t = peek()
        i += 1
        if t[0] == "str":
            v = _unquote(t[1])
            if fname == "MetaData.LastUpdatedTime":
                try:
                    return parse_ts(v, notes)
                except BadTimestamp:
                    raise Fault(400, "4000", "Error parsing query", f"QueryParserError: invalid date/time {v!r}")
            if fname == "Id":
                if not v.isdigit():
                    notes.append(f"non-numeric Id literal {v!r}")
                    return v
                return int(v)
            if fname == "Active":
                notes.append(f"quoted boolean {t[1]}")
                if v.lower() in ("true", "false"):
                    return v.lower() == "true"
                raise _parse_error(f"bad boolean {t[1]}")
        if t[0] == "ident" and t[1].lower() in ("true", "false"):
            if fname != "Active":
                raise _parse_error(f"boolean for {fname}")
            return t[1].lower() == "true"
        if t[0] == "num":
            if fname == "Id":
                notes.append(f"unquoted Id literal {t[1]}")
                return int(t[1])
            raise _parse_error(f"number for {fname}")
        raise _parse_error(f"Encountered \"{t[1]}\", expecting a literal")

    if kw("where"):
        expect_kw("where")
        while True:
            start_tok = i
            f = field_name()
            t = peek()
            if t[0] == "op":
                op = t[1]
                i += 1
                if op in ("!=", "<>"):
                    raise _parse_error(f"operator {op} is not supported")
                if f == "Active" and op != "=":
                    raise _parse_error(f"operator {op} on Active")
                vals = [literal(f)]
            elif kw("in"):
                i += 1
                op = "IN"
                if f == "MetaData.LastUpdatedTime":
                    notes.append("IN on MetaData.LastUpdatedTime")
                expect("punct", "(")
                vals = [literal(f)]
                while peek() == ("punct", ","):
                    i += 1
                    vals.append(literal(f))
                expect("punct", ")")
            else:
                raise _parse_error(f"Encountered \"{t[1]}\", expecting an operator")
            raw = " ".join(x[1] for x in toks[start_tok:i])
            query.conds.append(Cond(f, op, vals, raw))
            if kw("and"):
                expect_kw("and")
                continue
            if kw("or"):
                raise _parse_error("OR is not supported")
            break

    seen = []
    while peek()[0] != "eof":
        if kw("orderby"):
            expect_kw("orderby")
            seen.append("ORDERBY")
            while True:
                f = field_name()
                desc = False
                if kw("asc"):
                    expect_kw("asc")
                    notes.append("explicit ASC")
                elif kw("desc"):
                    expect_kw("desc")
                    desc = True
                    notes.append("DESC")
                query.order.append((f, desc))
                if peek() == ("punct", ","):
                    i += 1
                    notes.append("several ORDERBY fields")
                    continue
                break
        elif kw("startposition"):
            expect_kw("startposition")
            seen.append("STARTPOSITION")
            query.start = int(expect("num"))
        elif kw("maxresults"):
            expect_kw("maxresults")
            seen.append("MAXRESULTS")
            query.max = int(expect("num"))
        elif kw("order") and peek(1)[0] == "ident" and peek(1)[1].lower() == "by":
            raise _parse_error("Encountered \"ORDER BY\"; QuickBooks spells it ORDERBY")
        else:
            raise _parse_error(f"Encountered \"{peek()[1]}\" at the end of the query")
    if len(set(seen)) != len(seen):
        raise _parse_error("clause repeated")
    if seen and seen != sorted(seen, key=["ORDERBY", "STARTPOSITION", "MAXRESULTS"].index):
        notes.append("clauses in order " + " ".join(seen))
    if query.max > MAX_RESULTS_LIMIT:
        raise Fault(400, "4001", "Invalid query",
                    f"QueryValidationError: value {query.max} is too large. Max allowed value is {MAX_RESULTS_LIMIT}")
    if query.max < 1:
        raise Fault(400, "4001", "Invalid query", f"QueryValidationError: MAXRESULTS {query.max} must be positive")
    if query.start < 1:
        raise Fault(400, "4001", "Invalid query", f"QueryValidationError: STARTPOSITION {query.start} must be at least 1")
    if "MAXRESULTS" not in seen and not count:
        notes.append("no MAXRESULTS (default 100)")
    return query


def _compare(op: str, a, b) -> bool:
    if op == "=":
        return a == b
    if op == "<":
        return a < b
    if op == ">":
        return a > b
    if op == "<=":
        return a <= b
    if op == ">=":
        return a >= b
    raise AssertionError(op)


def _row_value(r: Row, f: str):
    if f == "Id":
        return r.id
    if f == "Active":
        return r.active
    if f == "MetaData.LastUpdatedTime":
        return r.updated
    raise AssertionError(f)


def run_query(company: Company, q: Query) -> tuple[list[Row], int]:
    """Returns (rows of the page, total matching)."""
    rows = list(company.rows.values())
    if not any(c.field == "Active" for c in q.conds):
        rows = [r for r in rows if r.active]
    for c in q.conds:
        def ok(r, c=c):
            v = _row_value(r, c.field)
            if c.op == "IN":
                return any(_eq(v, x) for x in c.values)
            x = c.values[0]
            if isinstance(x, str) and c.field == "Id":
                v = str(v)
            return _compare(c.op, v, x)
        rows = [r for r in rows if ok(r)]
    if company.tie_order == "id":
        rows.sort(key=lambda r: r.id)
    else:
        rows.sort(key=lambda r: r.seq)   # the table's internal order breaks ties
    for f, desc in reversed(q.order):
        rows.sort(key=lambda r, f=f: _row_value(r, f), reverse=desc)
    total = len(rows)
    return rows[q.start - 1: q.start - 1 + q.max], total


def _eq(v, x):
    if isinstance(x, str):
        return str(v) == x
    return v == x


# ----------------------------------------------------------------------------
# HTTP
# ----------------------------------------------------------------------------

def to_xml(tag: str, v: Any) -> str:
    if isinstance(v, dict):
        return f"<{tag}>" + "".join(to_xml(k, x) for k, x in v.items()) + f"</{tag}>"
    if isinstance(v, list):
        return "".join(to_xml(tag, x) for x in v)
    if isinstance(v, bool):
        v = "true" if v else "false"
    if isinstance(v, str) and v.startswith(_DEC_MARK):
        v = v[len(_DEC_MARK):]
    return f"<{tag}>{xml_escape(str(v))}</{tag}>"


@dataclass
class RequestRecord:
    n: int                       # index within the current run window (1-based)
    method: str
    path: str
    raw_query: str
    params: dict
    headers: dict
    kind: str                    # query | cdc | other
    query_text: Optional[str] = None
    parsed: Optional[Query] = None
    status: int = 0
    ids: list = field(default_factory=list)
    note: str = ""
    at: float = 0.0              # wall clock (time.time()) when the request arrived
    mono: float = 0.0            # time.monotonic() when it arrived: for measuring waits


@dataclass
class Response:
    status: int
    body: bytes
    ctype: str
    headers: dict = field(default_factory=dict)


class FakeQBO:
    """The fake QuickBooks, served from a thread. Everything is controlled through this object."""

    def __init__(self, realm: str = "4620816365257778210", token: str = "spec-fake-token",
                 clock: Optional[Clock] = None):
        self.realm = realm
        self.token = token
        self.clock = clock or Clock()
        self.company = Company(realm, self.clock)
        self.log: list[RequestRecord] = []
        self.counter = 0
        # every `time` this fake has answered (QuickBooks' clock), across runs:
        # CDC's changedSince must be one of them (docs/sync.md, Deletions)
        self.served_times: set[str] = set()
        # hooks: called with (fake, record) under the company lock before answering;
        # may return a Response to answer instead.
        self.hooks: list[Callable[["FakeQBO", RequestRecord], Optional[Response]]] = []
        self.throttle_from: Optional[int] = None   # request number from which to throttle
        self.throttle_secs: float = 0
        self._throttle_until: Optional[float] = None
        self.server: Optional[ThreadingHTTPServer] = None
        self.thread: Optional[threading.Thread] = None

    # --- control ---
    def reset_company(self) -> None:
        self.company = Company(self.realm, self.clock)

    def new_window(self) -> None:
        """Start counting requests afresh (one scenario run)."""
        with self.company.lock:
            self.counter = 0
            self.log = []
            self.hooks = []
            self.throttle_from = None
            self._throttle_until = None

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                fake._handle(self, "GET")

            def do_POST(self):
                fake._handle(self, "POST")

            def do_PUT(self):
                fake._handle(self, "PUT")

            def do_DELETE(self):
                fake._handle(self, "DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    # --- answers ---
    def _fault(self, f: Fault, want_json: bool) -> Response:
        now = render_ts_ms(self.clock.now())
        if want_json:
            body = {"Fault": {"Error": [{"Message": f.message, "Detail": f.detail, "code": f.code}],
                              "type": f.ftype}, "time": now}
            return Response(f.status, dumps(body).encode(), "application/json;charset=UTF-8")
        xml = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
               f'<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="{now}">'
               f'<Fault type="{f.ftype}"><Error code="{f.code}"><Message>{xml_escape(f.message)}</Message>'
               f'<Detail>{xml_escape(f.detail)}</Detail></Error></Fault></IntuitResponse>')
        return Response(f.status, xml.encode(), "application/xml;charset=UTF-8")

    def _unauthorized(self) -> Response:
        body = {"fault": {"error": [{"message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                                     "detail": "Token expired: " + "x" * 8, "code": "3200"}],
                          "type": "AUTHENTICATION"}}
        return Response(401, json.dumps(body).encode(), "application/json;charset=UTF-8",
                        {"WWW-Authenticate": 'Bearer realm="Intuit", error="invalid_token"'})

    @staticmethod
    def throttled_xml() -> Response:
        xml = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
               '<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="2026-05-05T05:15:24.356-07:00">'
               '<Fault type="SERVICE"><Error code="3001"><Message>message=ThrottleExceeded; errorCode=003001; '
               'statusCode=429</Message><Detail>The request limit was reached.  Try again later</Detail>'
               '</Error></Fault></IntuitResponse>')
        return Response(429, xml.encode(), "application/xml")

    def _ok(self, payload: dict, want_json: bool) -> Response:
        if payload.get("time"):
            self.served_times.add(payload["time"])
        if want_json:
            return Response(200, dumps(payload).encode(), "application/json;charset=UTF-8")
        inner = "".join(to_xml(k, v) for k, v in payload.items() if k != "time")
        xml = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
               f'<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="{payload.get("time", "")}">'
               f'{inner}</IntuitResponse>')
        return Response(200, xml.encode(), "application/xml;charset=UTF-8")

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        if length:
            h.rfile.read(length)
        url = urllib.parse.urlsplit(h.path)
        params = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        with self.company.lock:
            self.counter += 1
            rec = RequestRecord(self.counter, method, url.path, url.query,
                                {k: v for k, v in params.items()},
                                {k.lower(): v for k, v in h.headers.items() if k.lower() != "authorization"},
                                "other", at=time.time(), mono=time.monotonic())
            self.log.append(rec)
            try:
                resp = self._answer(h, method, url.path, params, rec)
            except Exception as e:  # a bug in the fake: make it loud
                import traceback
                traceback.print_exc()
                rec.note = f"fake crashed: {e!r}"
                resp = Response(500, b'{"fake":"crashed"}', "application/json")
            rec.status = resp.status
        h.send_response(resp.status)
        h.send_header("Content-Type", resp.ctype)
        h.send_header("Content-Length", str(len(resp.body)))
        h.send_header("intuit_tid", f"spec-fake-{rec.n}")
        for k, v in resp.headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(resp.body)

    def _answer(self, h, method, path, params, rec: RequestRecord) -> Response:
        accept = h.headers.get("Accept", "")
        want_json = "application/json" in accept.lower()
        # What the request is, recorded before anything answers it (a throttle, a hook), so that
        # the log tells which request a 429 or an injected failure hit and which one retried it.
        what = re.fullmatch(r"/v3/company/[^/]+/(query|cdc)", path)
        if what:
            rec.kind = what.group(1)
            if rec.kind == "query":
                rec.query_text = (params.get("query") or [None])[0]
        if not want_json:
            rec.note += f" Accept={accept!r} (answered XML);"
        # throttling window
        if self.throttle_from is not None and rec.n >= self.throttle_from:
            now = time.monotonic()
            if self._throttle_until is None:
                self._throttle_until = now + self.throttle_secs
            if now < self._throttle_until:
                rec.note += " throttled;"
                return self.throttled_xml()
        auth = h.headers.get("Authorization", "")
        if auth != f"Bearer {self.token}":
            rec.note += " bad token;"
            return self._unauthorized()
        m = re.fullmatch(r"/v3/company/([^/]+)/(query|cdc)", path)
        if not m:
            rec.note += " unknown path;"
            return self._fault(Fault(404, "404", "Not Found", f"no resource at {path}", "SystemFault"), want_json)
        if urllib.parse.unquote(m.group(1)) != self.realm:
            rec.note += " wrong realm;"
            return self._fault(Fault(403, "3100", "ApplicationAuthorizationFailed",
                                     "realm not authorised", "SECURITY"), want_json)
        if method != "GET":
            rec.note += f" method {method};"
            return self._fault(Fault(405, "405", "Method Not Allowed", method, "SystemFault"), want_json)
        mv = params.get("minorversion")
        if mv != ["75"]:
            rec.note += f" minorversion={mv};"
        rec.kind = m.group(2)
        for hook in list(self.hooks):
            r = hook(self, rec)
            if r is not None:
                rec.note += " hook answered;"
                return r
        try:
            if rec.kind == "query":
                return self._query(params, rec, want_json)
            return self._cdc(params, rec, want_json)
        except Fault as f:
            rec.note += f" fault {f};"
            return self._fault(f, want_json)

    def _query(self, params, rec, want_json) -> Response:
        qs = params.get("query")
        if not qs or len(qs) != 1:
            raise Fault(400, "4000", "Error parsing query", "QueryParserError: no query given")
        rec.query_text = qs[0]
        q = parse_query(qs[0])
        rec.parsed = q
        rows, total = run_query(self.company, q)
        now = render_ts_ms(self.clock.now())
        if q.count:
            return self._ok({"QueryResponse": {"totalCount": total}, "time": now}, want_json)
        rec.ids = [r.id for r in rows]
        if not rows:
            return self._ok({"QueryResponse": {}, "time": now}, want_json)
        return self._ok({"QueryResponse": {"Customer": [self.company.render(r) for r in rows],
                                           "startPosition": q.start, "maxResults": len(rows)},
                         "time": now}, want_json)

    def _cdc(self, params, rec, want_json) -> Response:
        ents = params.get("entities")
        if not ents or "customer" not in [e.strip().lower() for e in ents[0].split(",")]:
            raise Fault(400, "4000", "Invalid Request", f"entities must name Customer, got {ents}")
        cs = params.get("changedSince")
        if not cs:
            raise Fault(400, "4000", "Invalid Request", "changedSince is required")
        notes: list[str] = []
        try:
            since = parse_ts(cs[0], notes)
        except BadTimestamp:
            raise Fault(400, "4000", "Invalid Request", f"changedSince {cs[0]!r} is not a date/time")
        rec.note += "".join(f" {n};" for n in notes)
        now = self.clock.now()
        if since < now - CDC_WINDOW:
            raise Fault(400, "4000", "Invalid Request",
                        "changedSince cannot be more than 30 days in the past")
        live = sorted((r for r in self.company.rows.values() if r.updated >= since),
                      key=lambda r: (r.updated, r.seq if self.company.tie_order == "seq" else r.id))
        dead = sorted((t for t in self.company.tombstones.values() if t.in_cdc and t.deleted >= since),
                      key=lambda t: (t.deleted, t.id))
        objs = [self.company.render(r) for r in live]
        objs += [{"Id": str(t.id), "status": "Deleted", "MetaData": {"LastUpdatedTime": render_ts(t.deleted)}}
                 for t in dead]
        objs = objs[:1000]
        rec.ids = [int(o["Id"]) for o in objs]
        rec.note += f" cdc live={len(live)} dead={len(dead)} answered={len(objs)};"
        stamp = render_ts_ms(now)
        if not objs:
            return self._ok({"CDCResponse": [{"QueryResponse": [{}]}], "time": stamp}, want_json)
        return self._ok({"CDCResponse": [{"QueryResponse": [{"Customer": objs, "startPosition": 1,
                                                              "maxResults": len(objs)}]}],
                         "time": stamp}, want_json)
