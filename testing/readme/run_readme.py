#!/usr/bin/env python3
"""Runs README.md's code blocks as pasted, in order, and fails when one does
not do what the text says.

Usage: testing/readme/run_readme.py [--readme README.md] [--require-postgres]
                                    [--no-cargo] [--keep] [--list]

What it runs:

- Every ```sh block, each as a bash script (with `set -eo pipefail`: a
  command that fails fails the block), one after the other in one scratch
  directory, `target/readme-run/` (recreated at each start; removed at the
  end unless the run failed or --keep). It works like the repository's root
  for the README's commands: `target` in it links to the repository's
  `target/`, so `$PWD/target/release/sync-host` and the built component are
  found, and `cargo` (run from it, inside the workspace) builds the
  workspace. Files the blocks make (SQLite databases) stay in it. A block
  sees the files earlier ones made and the variables they exported (as in
  one terminal), and the processes they left running (`... &`).
- The ```js and ```python blocks marked `signature-check <secret>`: each with
  a preamble defining the secret, the body and the header, three times (a
  correct signature: `genuine` must be true; a wrong one and none: false),
  and once more for each webhook an earlier block printed as
  `sha256=<hex> <body>` (the README's receiver), which must verify with
  <secret>.
- Other blocks (json, ini, plain text) are listed as not commands.

Markers: an HTML comment right before a block's fence (invisible in the
rendered README), one directive a line:

    <!-- readme-runner: skip (why) -->          listed as skipped, with why
    <!-- readme-runner: timeout 600
    expect REGEX                                 the output must match (Python re, MULTILINE)
    reject REGEX                                 the output must not match
    postgres                                     needs the PostgreSQL server its postgres:// URL names
    remove-connection ID                         with postgres: removed (--purge) before the block and after the run
    -->
    <!-- readme-runner: signature-check s3cret -->

An `expect` missing when the block ends is waited for up to 10 s more (the
block's background processes write to its output after it ends). A block
without a marker runs with the default timeout (180 s) and is checked by its
exit status only.

Fails (exit 1) at the first block that fails: a non-zero exit (the command's
README line is named), a timeout, a missing `expect` or a matched `reject`,
naming the block, its line in README.md and its output. Every process a
block started is killed when the run ends, however it ends (each block runs
in a session of its own, killed as a group: SIGTERM, then SIGKILL after
10 s). Before anything runs, every loopback port the blocks name must be free.

PostgreSQL: a `postgres` block uses the URL it names, or
$SYNC_HOST_TEST_POSTGRES when that is set and differs (said so when used).
When no server answers there, the block is skipped, saying so; with
--require-postgres (CI) that is a failure.

--no-cargo: for a machine where the build exists and cargo must not run
(another build is going on): `cargo build --release -p sync-host` in a block
is answered by a stub that checks target/release/sync-host exists; any other
cargo command fails. --list: show what would run, run nothing.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRATCH = ROOT / "target" / "readme-run"
SHELLS = {"sh", "bash", "shell"}
SNIPPETS = {"js": "js", "javascript": "js", "mjs": "js", "python": "python", "py": "python"}
DEFAULT_TIMEOUT = 180
EXPECT_GRACE = 10
MARKER_START = "<!-- readme-runner:"
# The README's file name, in messages (set by --readme).
README = "README.md"


class ReadmeError(Exception):
    """The README itself is malformed for the runner (a bad marker)."""


@dataclass
class Block:
    number: int  # 1-based, among all fenced blocks
    line: int  # README line of the opening fence
    lang: str
    text: str
    section: str
    marker_line: int | None = None
    skip: str | None = None
    timeout: int = DEFAULT_TIMEOUT
    expect: list[str] = field(default_factory=list)
    reject: list[str] = field(default_factory=list)
    postgres: bool = False
    remove_connections: list[str] = field(default_factory=list)
    signature_secret: str | None = None

    def name(self) -> str:
        return f"block {self.number} ({README} line {self.line}, ```{self.lang or 'text'} in \"{self.section}\")"

    def kind(self) -> str:
        if self.skip is not None:
            return "skip"
        if self.lang in SHELLS:
            return "shell"
        if self.lang in SNIPPETS:
            return "signature" if self.signature_secret is not None else "unmarked-snippet"
        return "text"


# ----------------------------------------------------------------------------
# reading the README
# ----------------------------------------------------------------------------

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


def parse_marker(lines: list[str], start: int) -> tuple[list[str], int]:
    """The directives of the marker starting at `lines[start]`, and the index
    of its last line."""
    body = lines[start].strip()[len(MARKER_START):]
    end = start
    while "-->" not in body:
        end += 1
        if end >= len(lines):
            raise ReadmeError(f"{README} line {start + 1}: readme-runner marker never closed (-->)")
        body += "\n" + lines[end]
    body, _, after = body.partition("-->")
    if after.strip():
        raise ReadmeError(f"{README} line {end + 1}: text after the readme-runner marker's -->")
    return [d.strip() for d in body.split("\n") if d.strip()], end


def apply_directives(block: Block, directives: list[str], marker_line: int) -> None:
    block.marker_line = marker_line
    for directive in directives:
        word, _, rest = directive.partition(" ")
        rest = rest.strip()
        if word == "skip":
            reason = rest[1:-1] if rest.startswith("(") and rest.endswith(")") else rest
            if not reason:
                raise ReadmeError(f"{README} line {marker_line}: `skip` needs a reason: skip (why)")
            block.skip = reason
        elif word == "timeout":
            if not rest.isdigit() or int(rest) < 1:
                raise ReadmeError(f"{README} line {marker_line}: `timeout` takes a number of seconds, not `{rest}`")
            block.timeout = int(rest)
        elif word in ("expect", "reject"):
            try:
                re.compile(rest, re.MULTILINE)
            except re.error as e:
                raise ReadmeError(f"{README} line {marker_line}: {word} /{rest}/ is not a regular expression: {e}")
            if not rest:
                raise ReadmeError(f"{README} line {marker_line}: `{word}` needs a regular expression")
            getattr(block, word).append(rest)
        elif word == "postgres" and not rest:
            block.postgres = True
        elif word == "remove-connection" and re.fullmatch(r"[A-Za-z0-9._-]{1,100}", rest):
            block.remove_connections.append(rest)
        elif word == "signature-check" and rest:
            block.signature_secret = rest
        else:
            raise ReadmeError(f"{README} line {marker_line}: unknown readme-runner directive `{directive}`")
    if block.remove_connections and not block.postgres:
        raise ReadmeError(f"{README} line {marker_line}: remove-connection goes with postgres")
    if block.signature_secret is not None and block.lang not in SNIPPETS:
        raise ReadmeError(f"{README} line {marker_line}: signature-check is for js and python blocks")


def read_blocks(readme: Path) -> list[Block]:
    lines = readme.read_text(encoding="utf-8").split("\n")
    blocks: list[Block] = []
    section = "(top)"
    pending: tuple[list[str], int] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        if line.strip().startswith(MARKER_START):
            if pending:
                raise ReadmeError(f"{README} line {pending[1]}: readme-runner marker not followed by a code block")
            directives, end = parse_marker(lines, i)
            pending = (directives, i + 1)
            i = end + 1
            continue
        if fence:
            indent, ticks = fence["indent"], fence["fence"]
            info = fence["info"].strip()
            lang = info.split()[0].lower() if info else ""
            body: list[str] = []
            j = i + 1
            closing = re.compile(r"^[ \t]*" + re.escape(ticks[0]) + "{" + str(len(ticks)) + r",}[ \t]*$")
            while j < len(lines) and not closing.match(lines[j]):
                text = lines[j]
                body.append(text[len(indent):] if text.startswith(indent) else text.lstrip(" \t"))
                j += 1
            if j >= len(lines):
                raise ReadmeError(f"{README} line {i + 1}: code block never closed")
            block = Block(number=len(blocks) + 1, line=i + 1, lang=lang, text="\n".join(body) + "\n", section=section)
            if pending:
                apply_directives(block, *pending)
                pending = None
            blocks.append(block)
            i = j + 1
            continue
        if line.strip():
            if pending:
                raise ReadmeError(f"{README} line {pending[1]}: readme-runner marker not followed by a code block")
            heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
            if heading:
                section = heading.group(1)
        i += 1
    if pending:
        raise ReadmeError(f"{README} line {pending[1]}: readme-runner marker not followed by a code block")
    return blocks


# ----------------------------------------------------------------------------
# processes
# ----------------------------------------------------------------------------

class Sessions:
    """The process groups the blocks started; all killed at the end."""

    def __init__(self) -> None:
        self.groups: list[int] = []
        self.leaders: list[subprocess.Popen] = []

    def add(self, leader: subprocess.Popen) -> None:
        self.groups.append(leader.pid)
        self.leaders.append(leader)

    def reap(self) -> None:
        """Our own children (each group's bash) are zombies until reaped,
        and a zombie keeps its group alive."""
        for leader in self.leaders:
            leader.poll()

    @staticmethod
    def alive(pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True

    def kill_all(self) -> None:
        self.reap()
        alive = [g for g in self.groups if self.alive(g)]
        if not alive:
            return
        print(f"readme-runner: stopping what the blocks left running (process groups {', '.join(map(str, alive))})",
              flush=True)
        for pgid in alive:
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(self.alive(g) for g in alive):
            time.sleep(0.1)
            self.reap()
        for pgid in alive:
            if self.alive(pgid):
                print(f"readme-runner: process group {pgid} ignored SIGTERM for 10 s; SIGKILL", flush=True)
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for leader in self.leaders:
            try:
                leader.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


class Interrupted(Exception):
    pass


def on_signal(signum, _frame):
    raise Interrupted(f"interrupted by signal {signum}")


# ----------------------------------------------------------------------------
# running
# ----------------------------------------------------------------------------

PREAMBLE = """set -eo pipefail
trap 'readme_runner_status=$?; echo "readme-runner: the command at {readme} line $((LINENO + {offset})) exited with status $readme_runner_status" >&2' ERR
trap 'env -0 > {env_file}; pwd > {cwd_file}' EXIT
"""
PREAMBLE_LINES = PREAMBLE.count("\n")
# Variables not carried from one block to the next.
NOT_CARRIED = {"PWD", "OLDPWD", "SHLVL", "_"}


def quote(path: Path) -> str:
    return "'" + str(path).replace("'", "'\\''") + "'"


@dataclass
class State:
    env: dict[str, str]
    cwd: Path
    sessions: Sessions
    outputs: list[Path] = field(default_factory=list)
    shown: dict[Path, int] = field(default_factory=dict)


class BlockFailed(Exception):
    def __init__(self, block: Block, why: str):
        super().__init__(why)
        self.block = block
        self.why = why


def indent_output(text: str) -> str:
    if not text:
        return "  | (no output)\n"
    return "".join(f"  | {line}\n" for line in text.rstrip("\n").split("\n"))


def show_output(state: State, out: Path) -> str:
    text = out.read_text(encoding="utf-8", errors="replace")
    start = state.shown.get(out, 0)
    print(indent_output(text[start:]), end="", flush=True)
    state.shown[out] = len(text)
    return text


def run_shell(block: Block, state: State, work: Path) -> None:
    n = block.number
    script = work / f"block-{n}.sh"
    out = work / f"block-{n}.out"
    env_file, cwd_file = work / f"block-{n}.env", work / f"block-{n}.cwd"
    # Script line PREAMBLE_LINES + k is the block's line k, README line block.line + k.
    offset = block.line - PREAMBLE_LINES
    preamble = PREAMBLE.format(readme=README, offset=offset, env_file=quote(env_file), cwd_file=quote(cwd_file))
    script.write_text(preamble + block.text)
    state.outputs.append(out)
    with open(out, "wb") as sink:
        process = subprocess.Popen(["bash", str(script)], cwd=state.cwd, env=state.env, stdin=subprocess.DEVNULL,
                                   stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    state.sessions.add(process)
    started = time.monotonic()
    try:
        status = process.wait(timeout=block.timeout)
    except subprocess.TimeoutExpired:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
                process.wait(timeout=10)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        show_output(state, out)
        raise BlockFailed(block, f"did not end within its timeout of {block.timeout} s (killed)")
    elapsed = time.monotonic() - started
    if status != 0:
        show_output(state, out)
        raise BlockFailed(block, f"exited with status {status} after {elapsed:.1f} s")
    # Carry what an interactive session would: exported variables, the directory.
    if env_file.exists():
        pairs = [item.split("=", 1) for item in env_file.read_bytes().decode("utf-8", "replace").split("\0") if "=" in item]
        state.env = {k: v for k, v in pairs if k not in NOT_CARRIED}
    if cwd_file.exists():
        state.cwd = Path(cwd_file.read_text().strip() or state.cwd)
    text = out.read_text(encoding="utf-8", errors="replace")
    missing = [p for p in block.expect if not re.search(p, text, re.MULTILINE)]
    deadline = time.monotonic() + EXPECT_GRACE
    while missing and time.monotonic() < deadline:
        time.sleep(0.25)
        text = out.read_text(encoding="utf-8", errors="replace")
        missing = [p for p in block.expect if not re.search(p, text, re.MULTILINE)]
    text = show_output(state, out)
    problems = [f"its output does not match /{p}/" for p in missing]
    problems += [f"its output matches /{p}/: `{re.search(p, text, re.MULTILINE).group(0)}`"
                 for p in block.reject if re.search(p, text, re.MULTILINE)]
    if problems:
        raise BlockFailed(block, "; ".join(problems))
    checked = f", {len(block.expect)} expect and {len(block.reject)} reject patterns" if block.expect or block.reject else ""
    print(f"  ok: exit 0 in {elapsed:.1f} s{checked}", flush=True)


def snippet_program(lang: str, snippet: str, secret: str, body: str, header: str | None) -> tuple[list[str], str]:
    """The command and the program that runs `snippet` with the variables
    it reads defined, and prints `genuine`."""
    if lang == "js":
        headers = {} if header is None else {"x-sync-signature": header}
        program = (f"const secret = {json.dumps(secret)};\n"
                   f"const rawBody = Buffer.from({json.dumps(body)}, 'utf8');\n"
                   f"const req = {{ headers: {json.dumps(headers)} }};\n"
                   f"{snippet}\n"
                   "console.log(`genuine=${genuine}`);\n")
        return ["node", "--input-type=module", "-"], program
    program = (f"secret = {secret.encode()!r}\n"
               f"raw_body = {body.encode()!r}\n"
               f"header = {(header or '')!r}\n"
               f"{snippet}\n"
               "print(f'genuine={str(genuine).lower()}')\n")
    return [sys.executable, "-"], program


DELIVERY = re.compile(r"(sha256=[0-9a-f]{64}) (\{.*\})[ \t]*$", re.MULTILINE)


def run_signature_check(block: Block, state: State) -> None:
    lang = SNIPPETS[block.lang]
    secret = block.signature_secret
    body = '{"connection_id": "acme", "sync": "customers", "model": "Customer", "added": 1, "updated": 0, "deleted": 0}'
    good = "sha256=" + hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
    wrong = good[:-1] + ("0" if good[-1] != "0" else "1")
    cases = [("a correct signature", body, good, True), ("a wrong signature", body, wrong, False),
             ("no signature", body, None, False)]
    seen = set()
    for out in state.outputs:
        for signature, delivered in DELIVERY.findall(out.read_text(encoding="utf-8", errors="replace")):
            if (signature, delivered) not in seen and len(seen) < 3:
                seen.add((signature, delivered))
                cases.append((f"a webhook sync-host sent ({delivered[:60]}…)", delivered, signature, True))
    for what, payload, header, expected in cases:
        command, program = snippet_program(lang, block.text, secret, payload, header)
        try:
            done = subprocess.run(command, input=program, capture_output=True, text=True, cwd=state.cwd,
                                  env=state.env, timeout=30)
        except FileNotFoundError:
            raise BlockFailed(block, f"`{command[0]}` is not installed")
        except subprocess.TimeoutExpired:
            raise BlockFailed(block, f"with {what}: did not end within 30 s")
        result = (done.stdout + done.stderr).strip()
        want = f"genuine={str(expected).lower()}"
        if done.returncode != 0 or result.splitlines()[-1:] != [want]:
            print("  the program run:\n" + indent_output(program) + "  its output:\n" + indent_output(result), flush=True)
            raise BlockFailed(block, f"with {what}, expected {want}; got exit {done.returncode}")
        print(f"  ok: {what}: {want}", flush=True)


def postgres_url(block: Block) -> str | None:
    found = re.search(r"postgres(?:ql)?://[^\s'\"]+", block.text)
    return found.group(0) if found else None


def remove_connections(block: Block, url: str, before: bool) -> str | None:
    """Removes the block's README connections (--purge); an error other than
    "no such connection" is returned."""
    binary = ROOT / "target" / "release" / "sync-host"
    for connection in block.remove_connections:
        try:
            done = subprocess.run([str(binary), "connections", "remove", connection, "--db", url, "--purge"],
                                  capture_output=True, text=True, timeout=60, cwd=SCRATCH if SCRATCH.exists() else ROOT)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"`sync-host connections remove {connection}`: {e}"
        said = (done.stdout + done.stderr).strip()
        if done.returncode == 0:
            print(f"readme-runner: {'left from an earlier run, ' if before else ''}{said}", flush=True)
        elif "no connection" not in said:
            return said or f"`sync-host connections remove {connection}` exited {done.returncode}"
    return None


def postgres_answers(url: str) -> str | None:
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port or 5432
    try:
        with socket.create_connection((host, port), timeout=3):
            return None
    except OSError as e:
        return f"no PostgreSQL server answers at {host}:{port} ({e})"


def ports_named(blocks: list[Block]) -> list[int]:
    ports = set()
    for block in blocks:
        if block.kind() != "shell":
            continue
        text = re.sub(r"postgres(?:ql)?://\S+", "", block.text)
        ports.update(int(p) for p in re.findall(r"(?:127\.0\.0\.1|localhost):(\d{2,5})\b", text))
        ports.update(int(p) for p in re.findall(r"\.listen\((\d{2,5})\)", text))
    return sorted(ports)


def port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return False
        except OSError:
            return True


CARGO_STUB = """#!/bin/sh
# readme-runner --no-cargo: the build exists and cargo must not run here.
if [ "$*" != "build --release -p sync-host" ]; then
  echo "readme-runner --no-cargo: refusing \\`cargo $*\\` (only \\`cargo build --release -p sync-host\\` is answered)" >&2
  exit 1
fi
if [ ! -x {binary} ]; then
  echo "readme-runner --no-cargo: {binary} does not exist; build it first" >&2
  exit 1
fi
echo "readme-runner --no-cargo: not running \\`cargo $*\\`; using the existing {binary}" >&2
"""


def prepare_scratch(no_cargo: bool) -> Path:
    if SCRATCH.is_symlink() or SCRATCH.is_file():
        SCRATCH.unlink()
    if SCRATCH.exists():
        link = SCRATCH / "target"
        if link.is_symlink():
            link.unlink()
        shutil.rmtree(SCRATCH)
    SCRATCH.mkdir(parents=True)
    # `$PWD/target/...` in the blocks: the repository's target/ (this
    # directory's parent).
    (SCRATCH / "target").symlink_to("..", target_is_directory=True)
    work = SCRATCH / ".readme-runner"
    work.mkdir()
    if no_cargo:
        bin_dir = work / "bin"
        bin_dir.mkdir()
        stub = bin_dir / "cargo"
        stub.write_text(CARGO_STUB.replace("{binary}", quote(ROOT / "target" / "release" / "sync-host")))
        stub.chmod(0o755)
    return work


def remove_scratch() -> None:
    link = SCRATCH / "target"
    if link.is_symlink():
        link.unlink()
    shutil.rmtree(SCRATCH, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--require-postgres", action="store_true",
                        help="fail, rather than skip, a postgres block when no server answers")
    parser.add_argument("--no-cargo", action="store_true",
                        help="answer `cargo build --release -p sync-host` with a stub (the build exists)")
    parser.add_argument("--keep", action="store_true", help=f"keep {SCRATCH.relative_to(ROOT)}/ after a success too")
    parser.add_argument("--list", action="store_true", help="list the blocks and what would be done; run nothing")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    global README
    README = args.readme.name

    try:
        blocks = read_blocks(args.readme)
    except ReadmeError as e:
        print(f"readme-runner: {e}", file=sys.stderr)
        return 1
    kinds = {"shell": "run (bash)", "signature": "run (signature check)", "text": "not a command"}
    print(f"readme-runner: {len(blocks)} code blocks in {args.readme}")
    for block in blocks:
        kind = block.kind()
        what = {"skip": f"skipped: {block.skip}",
                "unmarked-snippet": "not run: no readme-runner marker (mark it signature-check <secret>, or skip (why))"
                }.get(kind, kinds.get(kind))
        print(f"  {block.name()}: {what}")
    unmarked = [b for b in blocks if b.kind() == "unmarked-snippet"]
    if unmarked:
        print(f"readme-runner: FAIL: {unmarked[0].name()} is a program the runner does not know how to run",
              file=sys.stderr)
        return 1
    if args.list:
        return 0

    taken = [p for p in ports_named(blocks) if port_taken(p)]
    if taken:
        print(f"readme-runner: FAIL: port{'s' if len(taken) > 1 else ''} {', '.join(map(str, taken))} on 127.0.0.1 "
              "already taken before the run; the README's blocks listen there. Stop what listens "
              f"(`ss -ltnp 'sport = :{taken[0]}'` shows it) and run again.", file=sys.stderr)
        return 1

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    work = prepare_scratch(args.no_cargo)
    env = dict(os.environ)
    if args.no_cargo:
        env["PATH"] = f"{work / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    state = State(env=env, cwd=SCRATCH, sessions=Sessions())
    print(f"readme-runner: running in {SCRATCH} (its `target` is {ROOT / 'target'})", flush=True)
    failure: BlockFailed | None = None
    interrupted: str | None = None
    cleanups: list[tuple[Block, str]] = []
    results: list[tuple[Block, str]] = []
    started = time.monotonic()
    current = blocks[0] if blocks else None
    try:
        for block in blocks:
            current = block
            kind = block.kind()
            if kind == "text":
                results.append((block, "not a command"))
                continue
            if kind == "skip":
                print(f"\n== SKIP {block.name()}: {block.skip}", flush=True)
                results.append((block, f"skipped: {block.skip}"))
                continue
            print(f"\n== RUN {block.name()}" + (f", timeout {block.timeout} s" if kind == "shell" else ""), flush=True)
            print(indent_output(block.text).replace("  | ", "  $ "), end="", flush=True)
            if kind == "signature":
                run_signature_check(block, state)
                results.append((block, "passed"))
                continue
            if block.postgres:
                url = postgres_url(block)
                if url is None:
                    raise BlockFailed(block, "marked postgres but names no postgres:// URL")
                wanted = os.environ.get("SYNC_HOST_TEST_POSTGRES")
                if wanted and wanted != url:
                    print(f"readme-runner: using SYNC_HOST_TEST_POSTGRES ({wanted}) for {url}", flush=True)
                    block.text = block.text.replace(url, wanted)
                    url = wanted
                problem = postgres_answers(url) or remove_connections(block, url, before=True)
                if problem:
                    if args.require_postgres:
                        raise BlockFailed(block, f"needs PostgreSQL: {problem}")
                    print(f"== SKIP {block.name()}: needs PostgreSQL: {problem}", flush=True)
                    results.append((block, f"skipped: needs PostgreSQL: {problem}"))
                    continue
                cleanups.append((block, url))
            run_shell(block, state, work)
            results.append((block, "passed"))
    except BlockFailed as e:
        failure = e
        results.append((e.block, f"FAILED: {e.why}"))
    except Interrupted as e:
        interrupted = str(e)
        results.append((current, "interrupted"))
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        # Late output of background processes, then stop them.
        for out in state.outputs:
            text = out.read_text(encoding="utf-8", errors="replace")
            if len(text) > state.shown.get(out, 0):
                print(f"\n-- written to the output of block {out.stem.split('-')[1]} after it ended "
                      "(its background processes):", flush=True)
                show_output(state, out)
        state.sessions.kill_all()
        for block, url in cleanups:
            problem = remove_connections(block, url, before=False)
            if problem:
                print(f"readme-runner: could not remove the README's connection from {url}: {problem}", flush=True)
                if failure is None:
                    failure = BlockFailed(block, f"cleanup: {problem}")

    print(f"\nreadme-runner: summary ({time.monotonic() - started:.0f} s)")
    for block, result in results:
        print(f"  {block.name()}: {result}")
    if interrupted:
        print(f"readme-runner: {interrupted}; everything the blocks started is stopped; "
              f"{SCRATCH} kept", file=sys.stderr)
        return 130
    if failure:
        print(f"readme-runner: FAIL: {failure.block.name()}: {failure.why}. Its commands and output are above; "
              f"its files are in {SCRATCH}.", file=sys.stderr)
        return 1
    if args.keep:
        print(f"readme-runner: kept {SCRATCH}")
    else:
        remove_scratch()
    print("readme-runner: every runnable block did what the README says")
    return 0


if __name__ == "__main__":
    sys.exit(main())
