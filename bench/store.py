#!/usr/bin/env python3
"""Benchmarks of the durable-session store, driving the release binary over stdin/stdout.

Build first:   cargo build --release -p agent-server
Then run:      python3 bench/store.py                (all benchmarks, table on stdout)
               python3 bench/store.py --json         (machine-readable figures)
               python3 bench/store.py list read      (a subset)

Benchmarks:
  turnsize  store size per typical tool-using turn: a stored session runs 1 turn, then N more
            (each: the model asks to run `ls`, the server runs it, the model answers; the recorded
            demo transcripts replayed with AGENT_SERVER_SSE_FIXTURE); the checkpointed file's
            growth divided by N
  startup   spawn -> `initialize` reply and idle RSS with a 10,000-session store in the home,
            and RSS once the store has been opened by a `session/list {stored:true}`
  list      `session/list {stored:true}` first page (50) over that store: the first call (which
            opens the store) and then repeated calls, each timed from request written to reply
            read; also a `search` and a `cwd` filter
  read      `session/read` of a session with 1,000 turns and 20,000 items (and 21,000 history
            items) in that store
  resume    `session/resume` of the same session (then `session/close`, repeated)
  events    a 50,000-delta turn in a stored session vs an ephemeral one (`session/new
            {ephemeral:true}`), alternating, fresh server each: delta events/s and server CPU per
            delta

The 10,000-session store is built quickly from real rows: the server writes a template session
(one tool-using turn) through its own store code, then this script clones its rows with direct
SQL (new ids, times, titles) into a copy of that database, so every row has the shape the
server writes (schema in server/src/store/schema.rs).

Only the Python 3 standard library is used (sqlite3 included). Linux only (reads /proc).
"""

import argparse
import datetime
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as base  # noqa: E402  (the shared Server class, SSE builder and /proc helpers)

REPO = base.REPO
MIB = base.MIB
DEMO = os.path.join(REPO, "fixtures", "demo")

TARGETS = {
    "list_first_page_ms_median": ("<=", 5.0),
    "read_ms_median": ("<=", 100.0),
    "resume_ms_median": ("<=", 100.0),
    "spawn_to_initialize_ms_median": ("<=", 5.0),
    "idle_rss_mib": ("<=", 10.0),
}


class Bench(base.Server):
    """A server child with a request counter and a timed request."""

    def __init__(self, binary, home, env_extra=None, cwd=None):
        super().__init__(binary, home, env_extra, cwd)
        self.next_id = 100

    def call(self, method, params=None):
        self.next_id += 1
        return self.request(self.next_id, method, params)

    def timed(self, method, params):
        """(milliseconds from request written to reply read, result, reply bytes)."""
        self.next_id += 1
        rid = self.next_id
        line = (json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params},
                           separators=(",", ":")) + "\n").encode()
        marker = b'"id":%d' % rid
        start = time.perf_counter()
        self.send_raw(line)
        data = self.read_lines_until(
            lambda buf: buf.endswith(b"\n") and buf.find(marker) >= 0, timeout=120)
        elapsed = (time.perf_counter() - start) * 1000
        reply = None
        for raw in data.splitlines():
            message = json.loads(raw)
            if message.get("id") == rid and "method" not in message:
                reply = message
        if reply is None or "error" in reply:
            raise base.BenchError(f"{method} failed: {reply}")
        return elapsed, reply["result"], len(data)


def db_path(home):
    return os.path.join(home, "sessions", "sessions.db")


def store_bytes(home):
    """Bytes of the database and its WAL."""
    total = 0
    for suffix in ("", "-wal"):
        path = db_path(home) + suffix
        if os.path.exists(path):
            total += os.path.getsize(path)
    return total


def tool_transcripts(turns):
    """AGENT_SERVER_SSE_FIXTURE for `turns` tool-using turns (two model calls each)."""
    pair = [os.path.join(DEMO, "shell_call.sse"), os.path.join(DEMO, "after_shell_call.sse")]
    return ":".join(pair * turns)


def project_dir(tmp):
    project = tempfile.mkdtemp(prefix="project-", dir=tmp)
    with open(os.path.join(project, "Cargo.toml"), "w") as f:
        f.write("[package]\n")
    os.mkdir(os.path.join(project, "src"))
    return project


def run_turns(server, session, n, label):
    for i in range(n):
        server.call("session/submit", {"sessionId": session, "text": f"{label} {i}: list the files"})
        while True:
            message = server.read_message(timeout=60)
            if message.get("method") == "session/event" and \
                    message["params"]["event"]["type"] == "turnCompleted":
                status = message["params"]["event"]["status"]
                if status != "completed":
                    raise base.BenchError(f"a turn ended {status}: {message}")
                break


# --------------------------------------------------------------------------- turn size and template


def bench_turnsize(args, tmp):
    """Writes the template home (kept in args.template_home) and measures bytes per turn."""
    home = tempfile.mkdtemp(prefix="template-", dir=tmp)
    project = project_dir(tmp)
    n = args.turns
    env = {"AGENT_SERVER_SSE_FIXTURE": tool_transcripts(n + 1)}
    server = Bench(args.binary, home, env, cwd=project)
    try:
        server.initialize()
        session = server.call("session/new", {"approvalPolicy": "never", "cwd": project})["sessionId"]
        run_turns(server, session, 1, "first")
    finally:
        server.close()
    one = store_bytes(home)
    template = tempfile.mkdtemp(prefix="template-copy-", dir=tmp)
    shutil.copytree(os.path.join(home, "sessions"), os.path.join(template, "sessions"))
    args.template = {"home": template, "session": session}

    server = Bench(args.binary, home, env, cwd=project)
    try:
        server.initialize()
        server.call("session/resume", {"sessionId": session})
        run_turns(server, session, n, "more")
    finally:
        server.close()
    more = store_bytes(home)
    with sqlite3.connect(db_path(home)) as db:
        payload = db.execute(
            "SELECT (SELECT SUM(LENGTH(body)) FROM items) + (SELECT SUM(LENGTH(body)) FROM history)"
            " + (SELECT SUM(LENGTH(input) + IFNULL(LENGTH(usage), 0)) FROM turns)").fetchone()[0]
        rows = db.execute(
            "SELECT (SELECT COUNT(*) FROM items), (SELECT COUNT(*) FROM history)").fetchone()
    db.close()
    return {
        "turns": n + 1,
        "file_bytes_after_1_turn": one,
        "file_bytes_after_all": more,
        "file_bytes_per_turn": (more - one) / n,
        "payload_bytes_per_turn": payload / (n + 1),
        "items_per_turn": rows[0] / (n + 1),
        "history_items_per_turn": rows[1] / (n + 1),
    }


# --------------------------------------------------------------------------- the big store


def stamp(ms):
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def build_store(args, tmp):
    """A home with `args.sessions` one-turn sessions and one session of `args.big_turns` turns
    holding `args.big_items` items, cloned from the template rows. Returns (home, big id)."""
    if not getattr(args, "template", None):
        once = argparse.Namespace(**dict(vars(args), turns=1))
        bench_turnsize(once, tmp)
        args.template = once.template
    home = tempfile.mkdtemp(prefix="store-", dir=tmp)
    os.mkdir(os.path.join(home, "sessions"), 0o700)
    shutil.copyfile(db_path(args.template["home"]), db_path(home))
    os.chmod(db_path(home), 0o600)
    src = args.template["session"]
    start = time.perf_counter()
    db = sqlite3.connect(db_path(home))
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    turn_id, = db.execute("SELECT turn_id FROM turns WHERE session_id = ?", (src,)).fetchone()
    items = [r[0] for r in db.execute(
        "SELECT body FROM items WHERE session_id = ? ORDER BY rowid", (src,))]
    history = db.execute(
        "SELECT turn_id, body FROM history WHERE session_id = ? ORDER BY rowid", (src,)).fetchall()
    now_ms = int(time.time() * 1000) - 10 * 24 * 3600 * 1000
    cwds = [f"/home/user/project{n}" for n in range(20)]
    ids = [str(uuid.uuid4()) for _ in range(args.sessions)]
    with db:
        for n, sid in enumerate(ids):
            ms = now_ms + n * 1000
            db.execute(
                """INSERT INTO sessions (id, created_at, updated_at, updated_ms, cwd, title,
                       title_lower, user_text, archived, settings, turn_count, running, last_seq,
                       context)
                   SELECT ?, ?, ?, ?, ?, ?, ?, user_text || ?, 0, settings, 1, 0, last_seq, context
                   FROM sessions WHERE id = ?""",
                (sid, stamp(ms), stamp(ms), ms, cwds[n % len(cwds)], f"Task {n}: list the files",
                 f"task {n}: list the files", f"\ntask {n}", src))
            db.execute(
                """INSERT INTO turns SELECT ?, ?, status, input, usage, error, ?, ?
                   FROM turns WHERE session_id = ?""",
                (sid, str(uuid.uuid4()), stamp(ms - 500), stamp(ms), src))
            db.executemany("INSERT INTO items (session_id, turn_id, body) VALUES (?, ?, ?)",
                           [(sid, turn_id, body) for body in items])
            db.executemany("INSERT INTO history (session_id, turn_id, body) VALUES (?, ?, ?)",
                           [(sid, t, body) for t, body in history])
    # The big one: the template turn repeated; items and history blocks cycled to size.
    big = str(uuid.uuid4())
    turns = args.big_turns
    per_turn = args.big_items // turns
    ms = now_ms + args.sessions * 1000 - 1500  # in the middle of the list, not the newest
    user, rest = history[0], history[1:]
    with db:
        db.execute(
            """INSERT INTO sessions (id, created_at, updated_at, updated_ms, cwd, title,
                   title_lower, user_text, archived, settings, turn_count, running, last_seq,
                   context)
               SELECT ?, ?, ?, ?, cwd, 'A long conversation', 'a long conversation', user_text,
                   0, settings, ?, 0, ?, context FROM sessions WHERE id = ?""",
            (big, stamp(ms), stamp(ms), ms, turns, turns * 40, src))
        for t in range(turns):
            tid = str(uuid.uuid4())
            db.execute(
                """INSERT INTO turns SELECT ?, ?, status, input, usage, error, started_at,
                       completed_at FROM turns WHERE session_id = ?""", (big, tid, src))
            db.executemany("INSERT INTO items (session_id, turn_id, body) VALUES (?, ?, ?)",
                           [(big, tid, items[k % len(items)]) for k in range(per_turn)])
            block = [user] + [rest[k % len(rest)] for k in range(per_turn)]
            db.executemany("INSERT INTO history (session_id, turn_id, body) VALUES (?, ?, ?)",
                           [(big, tid, body) for _, body in block])
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    counts = db.execute(
        "SELECT (SELECT COUNT(*) FROM sessions), (SELECT COUNT(*) FROM items WHERE session_id = ?),"
        " (SELECT COUNT(*) FROM history WHERE session_id = ?),"
        " (SELECT COUNT(*) FROM turns WHERE session_id = ?)", (big, big, big)).fetchone()
    db.close()
    args.store = {
        "home": home,
        "big": big,
        "sessions": counts[0],
        "big_items": counts[1],
        "big_history": counts[2],
        "big_turns": counts[3],
        "bytes": store_bytes(home),
        "build_s": time.perf_counter() - start,
    }
    return args.store


def store_home(args, tmp):
    return args.store if getattr(args, "store", None) else build_store(args, tmp)


def store_info(store):
    return {k: v for k, v in store.items() if k not in ("home", "big")}


# --------------------------------------------------------------------------- startup


def bench_startup(args, tmp):
    store = store_home(args, tmp)
    home = store["home"]
    times, rss, opened = [], [], []
    for _ in range(args.spawns):
        start = time.perf_counter()
        server = Bench(args.binary, home)
        server.send({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                     "params": {"protocolVersion": 1, "clientInfo": {"name": "bench", "version": "1"}}})
        reply = server.read_reply(0)
        times.append((time.perf_counter() - start) * 1000)
        if "result" not in reply:
            raise base.BenchError(f"initialize failed: {reply}")
        time.sleep(args.settle)
        rss.append(server.rss())
        server.call("session/list", {"stored": True})
        time.sleep(args.settle)
        opened.append(server.rss())
        server.close()
    return {
        "store": store_info(store),
        "spawn_to_initialize_ms_median": statistics.median(times),
        "spawn_to_initialize_ms_p95": base.percentile(times, 95),
        "idle_rss_mib": statistics.median(rss) / MIB,
        "rss_after_store_opened_mib": statistics.median(opened) / MIB,
    }


# --------------------------------------------------------------------------- list, read, resume


def timings(values):
    return {"median": statistics.median(values), "p95": base.percentile(values, 95),
            "min": min(values), "max": max(values)}


def bench_list(args, tmp):
    store = store_home(args, tmp)
    server = Bench(args.binary, store["home"])
    try:
        server.initialize()
        first, page, _ = server.timed("session/list", {"stored": True})
        if len(page["sessions"]) != 50 or not page["nextCursor"]:
            raise base.BenchError(f"a first page of {len(page['sessions'])} sessions")
        warm = [server.timed("session/list", {"stored": True})[0] for _ in range(args.repeat)]
        second = [server.timed("session/list", {"stored": True, "cursor": page["nextCursor"]})[0]
                  for _ in range(args.repeat)]
        cwd = [server.timed("session/list", {"stored": True, "cwd": "/home/user/project7"})[0]
               for _ in range(args.repeat)]
        search_ms, found, _ = server.timed("session/list", {"stored": True, "search": "task 9999"})
        search = [server.timed("session/list", {"stored": True, "search": "task 9999"})[0]
                  for _ in range(args.repeat)]
        # Paging through the whole store, 500 a page.
        start = time.perf_counter()
        cursor, listed = None, 0
        while True:
            params = {"stored": True, "limit": 500}
            if cursor:
                params["cursor"] = cursor
            result = server.call("session/list", params)
            listed += len(result["sessions"])
            cursor = result["nextCursor"]
            if not cursor:
                break
        all_pages = (time.perf_counter() - start) * 1000
    finally:
        server.close()
    return {
        "store": store_info(store),
        "list_first_call_ms": first,
        "list_first_page_ms_median": statistics.median(warm),
        "list_first_page_ms": timings(warm),
        "list_second_page_ms": timings(second),
        "list_cwd_filter_ms": timings(cwd),
        "list_search_ms": timings(search),
        "search_found": [s["title"] for s in found["sessions"]],
        "list_everything_500_a_page_ms": all_pages,
        "listed": listed,
    }


def bench_read(args, tmp):
    store = store_home(args, tmp)
    server = Bench(args.binary, store["home"])
    try:
        server.initialize()
        server.call("session/list", {"stored": True, "limit": 1})  # open the store first
        runs, size, turns = [], 0, 0
        cpu = base.proc_cpu_seconds(server.pid)
        for _ in range(args.repeat):
            ms, result, size = server.timed("session/read", {"sessionId": store["big"]})
            turns = len(result["turns"])
            items = sum(len(t["items"]) for t in result["turns"])
            runs.append(ms)
        cpu = (base.proc_cpu_seconds(server.pid) - cpu) * 1000 / args.repeat
        without = [server.timed("session/read", {"sessionId": store["big"], "turns": False})[0]
                   for _ in range(args.repeat)]
    finally:
        server.close()
    return {
        "turns": turns,
        "items": items,
        "reply_bytes": size,
        "read_ms_median": statistics.median(runs),
        "read_server_cpu_ms": cpu,
        "read_ms": timings(runs),
        "read_without_turns_ms": timings(without),
    }


def bench_resume(args, tmp):
    store = store_home(args, tmp)
    server = Bench(args.binary, store["home"])
    try:
        server.initialize()
        server.call("session/list", {"stored": True, "limit": 1})  # open the store first
        runs, rss, cpu = [], [], 0.0
        for _ in range(args.repeat):
            before = base.proc_cpu_seconds(server.pid)
            ms, result, size = server.timed("session/resume", {"sessionId": store["big"]})
            cpu += base.proc_cpu_seconds(server.pid) - before
            runs.append(ms)
            rss.append(server.rss())
            server.call("session/close", {"sessionId": store["big"]})
        turns = len(result["turns"])
    finally:
        server.close()
    return {
        "turns": turns,
        "reply_bytes": size,
        "resume_ms_median": statistics.median(runs),
        "resume_server_cpu_ms": cpu * 1000 / args.repeat,
        "resume_ms": timings(runs),
        "rss_with_it_loaded_mib": max(rss) / MIB,
    }


# --------------------------------------------------------------------------- events


def bench_events(args, tmp):
    body, text = base.build_sse(args.deltas)
    path = os.path.join(tmp, "store-events.sse")
    with open(path, "wb") as f:
        f.write(body)
    env = {"AGENT_SERVER_SSE_FIXTURE": path}
    modes = {
        "stored": {"approvalPolicy": "never", "sandbox": "readOnly"},
        "ephemeral": {"approvalPolicy": "never", "sandbox": "readOnly", "ephemeral": True},
    }
    rounds = {mode: [] for mode in modes}
    for _ in range(args.rounds):
        for mode, params in modes.items():
            result = base.one_turn(args, tmp, env, args.deltas, text, mode, session_params=params)
            if not (result["deltas_received"] == args.deltas and result["text_matches"]
                    and result["seq_in_order"]):
                raise base.BenchError(f"{mode}: deltas lost or out of order: {result}")
            rounds[mode].append(result)
    out = {"deltas": args.deltas, "rounds": args.rounds}
    for mode, results in rounds.items():
        out[mode] = {
            "delta_events_per_s": statistics.median(r["delta_events_per_s"] for r in results),
            "server_cpu_us_per_delta": statistics.median(r["server_cpu_us_per_delta"] for r in results),
            "delta_events_per_s_all": [round(r["delta_events_per_s"]) for r in results],
            "server_cpu_us_per_delta_all": [round(r["server_cpu_us_per_delta"], 2) for r in results],
        }
    s, e = out["stored"], out["ephemeral"]
    out["stored_vs_ephemeral_events_per_s"] = s["delta_events_per_s"] / e["delta_events_per_s"]
    out["stored_vs_ephemeral_cpu_per_delta"] = (
        s["server_cpu_us_per_delta"] / e["server_cpu_us_per_delta"])
    return out


# --------------------------------------------------------------------------- report

BENCHES = {
    "turnsize": bench_turnsize,
    "startup": bench_startup,
    "list": bench_list,
    "read": bench_read,
    "resume": bench_resume,
    "events": bench_events,
}


def print_table(results):
    def row(name, value, key=None):
        verdict = ""
        if key in TARGETS:
            op, target = TARGETS[key]
            ok = value <= target if op == "<=" else value >= target
            verdict = f"{op} {target:g}  {'ok' if ok else 'MISSED'}"
        shown = f"{value:,.2f}" if isinstance(value, float) else str(value)
        print(f"{name:<62} {shown:>14}  {verdict}")

    if "turnsize" in results:
        r = results["turnsize"]
        row("store bytes per tool-using turn (file growth, checkpointed)", r["file_bytes_per_turn"])
        row("  row payload bytes per turn (items, history, input, usage)", r["payload_bytes_per_turn"])
        row("  items / history items per turn", f"{r['items_per_turn']:.1f} / {r['history_items_per_turn']:.1f}")
    store = None
    for name in ("startup", "list"):
        if name in results:
            store = results[name]["store"]
    if store:
        row("store: sessions / big session turns / items / history",
            f"{store['sessions']} / {store['big_turns']} / {store['big_items']} / {store['big_history']}")
        row("store: file MiB / built in s", f"{store['bytes'] / MIB:.1f} / {store['build_s']:.1f}")
    if "startup" in results:
        r = results["startup"]
        row("spawn -> initialize reply with that store, median (ms)", r["spawn_to_initialize_ms_median"],
            "spawn_to_initialize_ms_median")
        row("  p95 (ms)", r["spawn_to_initialize_ms_p95"])
        row("idle RSS after initialize (MiB)", r["idle_rss_mib"], "idle_rss_mib")
        row("  RSS after the store is opened (MiB)", r["rss_after_store_opened_mib"])
    if "list" in results:
        r = results["list"]
        row("session/list {stored} first page, first call (opens store) (ms)", r["list_first_call_ms"])
        row("session/list {stored} first page of 50, median (ms)", r["list_first_page_ms_median"],
            "list_first_page_ms_median")
        row("  p95 (ms)", r["list_first_page_ms"]["p95"])
        row("  second page, median (ms)", r["list_second_page_ms"]["median"])
        row("  cwd filter, median (ms)", r["list_cwd_filter_ms"]["median"])
        row("  search (substring over every title and user text), median (ms)", r["list_search_ms"]["median"])
        row("  every session, 500 a page (ms)", r["list_everything_500_a_page_ms"])
    if "read" in results:
        r = results["read"]
        row(f"session/read of {r['turns']} turns / {r['items']} items, median (ms)", r["read_ms_median"],
            "read_ms_median")
        row("  p95 (ms)", r["read_ms"]["p95"])
        row("  server CPU per read (ms, utime+stime)", r["read_server_cpu_ms"])
        row("  reply MiB", r["reply_bytes"] / MIB)
        row("  turns:false, median (ms)", r["read_without_turns_ms"]["median"])
    if "resume" in results:
        r = results["resume"]
        row("session/resume of the same, median (ms)", r["resume_ms_median"], "resume_ms_median")
        row("  p95 (ms)", r["resume_ms"]["p95"])
        row("  server CPU per resume (ms, utime+stime)", r["resume_server_cpu_ms"])
        row("  RSS with it loaded (MiB)", r["rss_with_it_loaded_mib"])
    if "events" in results:
        r = results["events"]
        for mode in ("stored", "ephemeral"):
            row(f"[{mode}] delta events/s, {r['deltas']:,} deltas, median", r[mode]["delta_events_per_s"])
            row(f"[{mode}] server CPU per delta (us)", r[mode]["server_cpu_us_per_delta"])
        row("stored / ephemeral events/s (target >= 0.90)", r["stored_vs_ephemeral_events_per_s"])
        row("stored / ephemeral CPU per delta (target <= 1.10)", r["stored_vs_ephemeral_cpu_per_delta"])


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benches", nargs="*", metavar="BENCH",
                        help="benchmarks to run: %s (default: all)" % ", ".join(BENCHES))
    parser.add_argument("--binary", default=base.DEFAULT_BINARY)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--turns", type=int, default=20, help="turnsize: turns measured (default 20)")
    parser.add_argument("--sessions", type=int, default=10_000, help="sessions in the store (default 10000)")
    parser.add_argument("--big-turns", type=int, default=1000, help="turns of the big session (default 1000)")
    parser.add_argument("--big-items", type=int, default=20_000, help="items of the big session (default 20000)")
    parser.add_argument("--spawns", type=int, default=30, help="startup: spawns (default 30)")
    parser.add_argument("--repeat", type=int, default=30, help="list/read/resume: repetitions (default 30)")
    parser.add_argument("--deltas", type=int, default=50_000, help="events: deltas in the turn (default 50000)")
    parser.add_argument("--rounds", type=int, default=5, help="events: rounds per mode (default 5)")
    parser.add_argument("--settle", type=float, default=0.1, help="seconds before sampling RSS")
    args = parser.parse_args()
    args.binary = os.path.abspath(args.binary)
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"{args.binary} not found; build it with: cargo build --release -p agent-server")
    unknown = [name for name in args.benches if name not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHES)}")
    selected = args.benches or list(BENCHES)
    results = {"machine": base.machine()}
    tmp = tempfile.mkdtemp(prefix="agent-server-store-bench-")
    try:
        for name in selected:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            results[name] = BENCHES[name](args, tmp)
    except base.BenchError as err:
        sys.exit(f"benchmark failed: {err}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["machine"]["loadavg_at_end"] = os.getloadavg()
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
    else:
        m = results["machine"]
        print(f"{m['date']}  nproc={m['nproc']}  commit={m.get('commit', '?')}  "
              f"load={m['loadavg_at_start'][0]:.2f}->{m['loadavg_at_end'][0]:.2f}")
        print()
        print_table(results)


if __name__ == "__main__":
    main()
