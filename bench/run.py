#!/usr/bin/env python3
"""Benchmarks for agent-server, driving the release binary over stdin/stdout.

Build first:   cargo build --release -p agent-server
Then run:      python3 bench/run.py                 (all benchmarks, table on stdout)
               python3 bench/run.py startup events  (a subset)
               python3 bench/run.py --json          (machine-readable figures)

Benchmarks:
  startup   spawn-to-`initialize`-reply time over N spawns (fresh --home each) and the idle
            RSS after `initialize`
  pipeline  N `auth/status` requests written at once; requests/s and how many were answered
  events    one turn whose upstream streams N `response.output_text.delta` events; delta
            events/s reaching the client, server CPU per delta, peak RSS, every delta checked
  sessions  N idle sessions (`session/new`); RSS before and after, bytes per session
  instructions  (not in the default set; needs valgrind) instructions executed per streamed
            delta: the server under `valgrind --tool=callgrind` replays turns of 2,000 and
            12,000 deltas; the difference divided by 10,000. Unlike CPU time it does not move
            with other load on the machine.

The upstream for `events` is a generated SSE transcript replayed through
AGENT_SERVER_SSE_FIXTURE (`--upstream fixture`, the default) or a local HTTP server in this
process streaming the same body as fast as it can (`--upstream http`), or both.

Only the Python 3 standard library is used. Linux only (reads /proc).
"""

import argparse
import datetime
import http.server
import json
import os
import platform
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BINARY = os.path.join(REPO, "target", "release", "agent-server")
CLK_TCK = os.sysconf("SC_CLK_TCK")
READ_CHUNK = 1 << 20

# Targets for a 2-core machine and the figures measured for the incumbent
# (codex app-server 0.169) on the same kind of machine.
TARGETS = {
    "spawn_to_initialize_ms_median": ("<", 5.0, 56.0),
    "idle_rss_mib": ("<", 10.0, 88.0),
    "delta_events_per_s": (">=", 150_000.0, 27_000.0),
    "server_cpu_us_per_delta": ("<=", 5.0, 70.0),
    "turn_peak_rss_mib": ("<=", 50.0, 164.0),
}


class BenchError(Exception):
    """A benchmark could not run or the server misbehaved."""


# --------------------------------------------------------------------------- /proc helpers


def proc_status(pid, field):
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM) in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise BenchError(f"{field} missing from /proc/{pid}/status")


def proc_cpu_seconds(pid):
    """utime + stime of a process (all its threads, live and exited) in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        text = stat.read()
    # The command name may contain spaces; fields resume after the closing parenthesis.
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLK_TCK


def proc_threads_runtime_ns(pid):
    """Sum of on-CPU nanoseconds of the live threads (/proc/<pid>/task/*/schedstat)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as schedstat:
                total += int(schedstat.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


# --------------------------------------------------------------------------- server process


class Server:
    """One agent-server child with a raw, buffered reader over its stdout."""

    def __init__(self, binary, home, env_extra=None, cwd=None, wrapper=(), args=()):
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OPENAI_", "AGENT_SERVER_", "RUST_LOG"))
        }
        env.update(env_extra or {})
        self.stderr_path = os.path.join(home, "stderr.log")
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [*wrapper, binary, "--home", home, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            cwd=cwd or home,
            bufsize=0,
        )
        self.pid = self.proc.pid
        self.stdin_fd = self.proc.stdin.fileno()
        self.stdout_fd = self.proc.stdout.fileno()
        self.buf = bytearray()

    def send(self, message):
        self.send_raw((json.dumps(message, separators=(",", ":")) + "\n").encode())

    def send_raw(self, data):
        view = memoryview(data)
        while view:
            written = os.write(self.stdin_fd, view)
            view = view[written:]

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BenchError(f"timed out waiting for the server; stderr: {self.stderr_tail()}")
        ready, _, _ = select.select([self.stdout_fd], [], [], remaining)
        if not ready:
            return 0
        chunk = os.read(self.stdout_fd, READ_CHUNK)
        if not chunk:
            raise BenchError(f"the server closed stdout; stderr: {self.stderr_tail()}")
        self.buf += chunk
        return len(chunk)

    def read_message(self, timeout=30.0):
        """The next message line, parsed."""
        deadline = time.monotonic() + timeout
        while True:
            end = self.buf.find(b"\n")
            if end >= 0:
                line = bytes(self.buf[:end])
                del self.buf[: end + 1]
                if line.strip():
                    return json.loads(line)
                continue
            self._fill(deadline)

    def read_reply(self, request_id, timeout=30.0):
        """Reads messages until the reply to `request_id`; notifications in between are dropped."""
        while True:
            message = self.read_message(timeout)
            if message.get("id") == request_id and "method" not in message:
                return message

    def read_lines_until(self, done, timeout=120.0):
        """Reads raw output until `done(buffer)` holds; returns the raw bytes (buffer emptied).

        The buffer is only scanned, never parsed, while the clock runs, so the client is not
        the bottleneck; parse the returned bytes afterwards.
        """
        deadline = time.monotonic() + timeout
        while not done(self.buf):
            self._fill(deadline)
        data = bytes(self.buf)
        self.buf.clear()
        return data

    def request(self, request_id, method, params=None):
        message = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        reply = self.read_reply(request_id)
        if "error" in reply:
            raise BenchError(f"{method} failed: {reply['error']}")
        return reply["result"]

    def initialize(self):
        return self.request(
            0,
            "initialize",
            {
                "protocolVersion": 1,
                "clientInfo": {"name": "bench", "version": "1"},
                "capabilities": {"approvals": False},
            },
        )

    def rss(self):
        return proc_status(self.pid, "VmRSS")

    def hwm(self):
        return proc_status(self.pid, "VmHWM")

    def stderr_tail(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read()[-2000:].decode(errors="replace")
        except OSError:
            return ""

    def close(self):
        """Closes stdin (the server exits 0 on EOF) and reaps the process."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self._stderr.close()
        return self.proc.returncode


def percentile(values, p):
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, -(-len(ordered) * p // 100) - 1))
    return ordered[int(index)]


MIB = 1024 * 1024


# --------------------------------------------------------------------------- 1a. startup


def bench_startup(args, tmp):
    times_ms, rss = [], []
    for n in range(args.spawns):
        home = tempfile.mkdtemp(prefix=f"spawn{n}-", dir=tmp)
        start = time.perf_counter()
        server = Server(args.binary, home)
        server.send(
            {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {"protocolVersion": 1, "clientInfo": {"name": "bench", "version": "1"}},
            }
        )
        reply = server.read_reply(0)
        elapsed = time.perf_counter() - start
        if "result" not in reply:
            raise BenchError(f"initialize failed: {reply}")
        times_ms.append(elapsed * 1000)
        # Let start-up work that follows the reply (if any) settle before sampling RSS.
        time.sleep(args.settle)
        rss.append(server.rss())
        code = server.close()
        if code != 0:
            raise BenchError(f"the server exited {code} on stdin EOF")
    # The harness's own share: the same spawn, write and read with `cat` echoing the line back,
    # and the cost of exec'ing the binary at all (`--version` exits before any runtime starts).
    line = b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":1}}\n'
    cat_ms, version_ms = [], []
    for _ in range(args.spawns):
        start = time.perf_counter()
        cat = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        cat.stdin.write(line)
        cat.stdout.readline()
        cat_ms.append((time.perf_counter() - start) * 1000)
        cat.stdin.close()
        cat.wait()
        cat.stdout.close()
        start = time.perf_counter()
        subprocess.run([args.binary, "--version"], stdout=subprocess.DEVNULL, check=True)
        version_ms.append((time.perf_counter() - start) * 1000)
    return {
        "spawns": args.spawns,
        "baseline_cat_echo_ms_median": statistics.median(cat_ms),
        "baseline_version_exit_ms_median": statistics.median(version_ms),
        "spawn_to_initialize_ms_median": statistics.median(times_ms),
        "spawn_to_initialize_ms_p95": percentile(times_ms, 95),
        "spawn_to_initialize_ms_min": min(times_ms),
        "spawn_to_initialize_ms_max": max(times_ms),
        "idle_rss_mib": statistics.median(rss) / MIB,
        "idle_rss_mib_max": max(rss) / MIB,
    }


# --------------------------------------------------------------------------- 1b. pipeline


def bench_pipeline(args, tmp):
    home = tempfile.mkdtemp(prefix="pipeline-", dir=tmp)
    server = Server(args.binary, home)
    try:
        server.initialize()
        count = args.requests
        payload = b"".join(
            b'{"jsonrpc":"2.0","id":%d,"method":"auth/status","params":{}}\n' % (n + 1)
            for n in range(count)
        )
        writer_error = []

        def write():
            try:
                server.send_raw(payload)
            except OSError as err:
                writer_error.append(err)

        rss_before = server.rss()
        start = time.perf_counter()
        writer = threading.Thread(target=write)
        writer.start()
        data = server.read_lines_until(lambda buf: buf.count(b"\n") >= count, timeout=300)
        elapsed = time.perf_counter() - start
        writer.join()
        if writer_error:
            raise BenchError(f"writing requests failed: {writer_error[0]}")
        hwm = server.hwm()
        answered, errored, other = 0, 0, 0
        ids = set()
        error_kinds = {}
        for line in data.splitlines():
            if not line.strip():
                continue
            message = json.loads(line)
            if "method" in message:
                other += 1
                continue
            ids.add(message.get("id"))
            if "result" in message:
                answered += 1
            else:
                errored += 1
                kind = (message.get("error", {}).get("data") or {}).get("kind", "?")
                error_kinds[kind] = error_kinds.get(kind, 0) + 1
        missing = count - len(ids & set(range(1, count + 1)))
    finally:
        server.close()
    return {
        "requests": count,
        "answered_with_result": answered,
        "answered_with_error": errored,
        "error_kinds": error_kinds,
        "missing_ids": missing,
        "notifications": other,
        "seconds": elapsed,
        "requests_per_s": count / elapsed,
        "rss_before_mib": rss_before / MIB,
        "peak_rss_mib": hwm / MIB,
    }


# --------------------------------------------------------------------------- 2. events


def sse_frame(event):
    return "event: %s\ndata: %s\n\n" % (
        event["type"],
        json.dumps(event, separators=(",", ":")),
    )


def build_sse(deltas):
    """A Responses SSE body with one message item made of `deltas` text deltas.

    Returns (body bytes, expected text). Shape follows the fixture text_answer.sse:
    created, output_item.added (message), N output_text.delta, output_item.done, completed.
    """
    pieces = [f" tok{n}" for n in range(deltas)]
    text = "".join(pieces)
    response = {
        "id": "resp_bench",
        "object": "response",
        "created_at": 1760000000,
        "status": "in_progress",
        "model": "gpt-5-codex",
        "output": [],
        "usage": None,
    }
    seq = 0
    frames = [sse_frame({"type": "response.created", "sequence_number": seq, "response": response})]
    seq += 1
    frames.append(
        sse_frame(
            {
                "type": "response.output_item.added",
                "sequence_number": seq,
                "output_index": 0,
                "item": {
                    "id": "msg_1",
                    "type": "message",
                    "status": "in_progress",
                    "role": "assistant",
                    "content": [],
                },
            }
        )
    )
    for piece in pieces:
        seq += 1
        frames.append(
            'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
            '"sequence_number":%d,"item_id":"msg_1","output_index":0,"content_index":0,'
            '"delta":%s,"logprobs":[]}\n\n' % (seq, json.dumps(piece))
        )
    message = {
        "id": "msg_1",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}],
    }
    seq += 1
    frames.append(
        sse_frame(
            {
                "type": "response.output_item.done",
                "sequence_number": seq,
                "output_index": 0,
                "item": message,
            }
        )
    )
    seq += 1
    done = dict(response, status="completed", output=[message])
    done["usage"] = {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": deltas,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 100 + deltas,
    }
    frames.append(sse_frame({"type": "response.completed", "sequence_number": seq, "response": done}))
    return "".join(frames).encode(), text


class Upstream:
    """A local HTTP server answering every POST with the SSE body, written as fast as it can."""

    def __init__(self, body):
        outer = self
        self.requests = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def one_turn(args, tmp, env_extra, deltas, expected_text, label, session_params=None):
    home = tempfile.mkdtemp(prefix=f"events-{label}-", dir=tmp)
    server = Server(args.binary, home, env_extra)
    try:
        server.initialize()
        session = server.request(
            1, "session/new", session_params or {"approvalPolicy": "never", "sandbox": "readOnly"}
        )
        rss_idle = server.rss()
        cpu_before = proc_cpu_seconds(server.pid)
        sched_before = proc_threads_runtime_ns(server.pid)
        start = time.perf_counter()
        server.send(
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "session/submit",
                "params": {"sessionId": session["sessionId"], "text": "stream please"},
            }
        )
        data = server.read_lines_until(
            lambda buf: buf.find(b'"turnCompleted"', max(0, len(buf) - READ_CHUNK - 64)) >= 0
            and buf.endswith(b"\n"),
            timeout=600,
        )
        elapsed = time.perf_counter() - start
        cpu_after = proc_cpu_seconds(server.pid)
        sched_after = proc_threads_runtime_ns(server.pid)
        hwm = server.hwm()
        rss_after = server.rss()
    finally:
        code = server.close()
    received, text, status, first_error = 0, [], None, None
    seqs = []
    for line in data.splitlines():
        if not line.strip():
            continue
        message = json.loads(line)
        if message.get("method") != "session/event":
            if "error" in message and first_error is None:
                first_error = message["error"]
            continue
        params = message["params"]
        seqs.append(params["seq"])
        event = params["event"]
        if event["type"] == "agentMessageDelta":
            received += 1
            text.append(event["delta"])
        elif event["type"] == "turnCompleted":
            status = event["status"]
            if event.get("error"):
                first_error = event["error"]
    if status != "completed":
        raise BenchError(f"turn ended {status}: {first_error}; stderr: {server.stderr_tail()}")
    in_order = seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else False
    cpu = cpu_after - cpu_before
    return {
        "deltas_expected": deltas,
        "deltas_received": received,
        "text_matches": "".join(text) == expected_text,
        "seq_in_order": in_order,
        "exit_code": code,
        "seconds": elapsed,
        "delta_events_per_s": received / elapsed,
        "server_cpu_s": cpu,
        "server_cpu_us_per_delta": cpu * 1e6 / max(received, 1),
        "server_cpu_us_per_delta_schedstat": (sched_after - sched_before) / 1e3 / max(received, 1),
        "rss_idle_mib": rss_idle / MIB,
        "rss_after_mib": rss_after / MIB,
        "turn_peak_rss_mib": hwm / MIB,
    }


def bench_events(args, tmp):
    body, text = build_sse(args.deltas)
    results = {"deltas": args.deltas, "sse_bytes": len(body), "rounds": args.rounds}
    modes = ["fixture", "http"] if args.upstream == "both" else [args.upstream]
    for mode in modes:
        upstream = None
        if mode == "fixture":
            path = os.path.join(tmp, "bench.sse")
            with open(path, "wb") as f:
                f.write(body)
            env = {"AGENT_SERVER_SSE_FIXTURE": path}
        else:
            upstream = Upstream(body)
            env = {
                "OPENAI_BASE_URL": f"http://127.0.0.1:{upstream.port}/v1",
                "OPENAI_API_KEY": "x",
            }
        try:
            rounds = [one_turn(args, tmp, env, args.deltas, text, mode) for _ in range(args.rounds)]
        finally:
            if upstream:
                upstream.close()
        # Report the median round by throughput; keep all rounds for the JSON output.
        ordered = sorted(rounds, key=lambda r: r["delta_events_per_s"])
        summary = dict(ordered[len(ordered) // 2])
        summary["all_delivered"] = all(
            r["deltas_received"] == args.deltas and r["text_matches"] and r["seq_in_order"]
            for r in rounds
        )
        summary["delta_events_per_s_all"] = [round(r["delta_events_per_s"]) for r in rounds]
        summary["server_cpu_us_per_delta_all"] = [
            round(r["server_cpu_us_per_delta"], 2) for r in rounds
        ]
        summary["turn_peak_rss_mib_max"] = max(r["turn_peak_rss_mib"] for r in rounds)
        results[mode] = summary
    return results


# --------------------------------------------------------------------------- 2b. instructions


def callgrind_turn(args, tmp, deltas):
    """Instructions the server executes (all threads) for one replayed turn of `deltas` deltas:
    start-up, initialize, session/new, the turn, and the exit on EOF."""
    body, _ = build_sse(deltas)
    path = os.path.join(tmp, f"callgrind-{deltas}.sse")
    with open(path, "wb") as f:
        f.write(body)
    home = tempfile.mkdtemp(prefix=f"callgrind-{deltas}-", dir=tmp)
    out = os.path.join(home, "callgrind.out")
    wrapper = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}")
    server = Server(args.binary, home, {"AGENT_SERVER_SSE_FIXTURE": path}, wrapper=wrapper)
    try:
        server.initialize()
        session = server.request(1, "session/new", {"approvalPolicy": "never", "sandbox": "readOnly"})
        server.send(
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "session/submit",
                "params": {"sessionId": session["sessionId"], "text": "stream please"},
            }
        )
        data = server.read_lines_until(
            lambda buf: b'"turnCompleted"' in buf and buf.endswith(b"\n"), timeout=600
        )
    finally:
        code = server.close()
    if b'"status":"completed"' not in data.split(b'"turnCompleted"', 1)[1]:
        raise BenchError(f"the replayed turn did not complete; stderr: {server.stderr_tail()}")
    if code != 0:
        raise BenchError(f"the server under valgrind exited {code}; stderr: {server.stderr_tail()}")
    with open(out) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise BenchError(f"no instruction total in {out}")


def bench_instructions(args, tmp):
    if shutil.which("valgrind") is None:
        raise BenchError("the instructions benchmark needs valgrind (apt-get install valgrind)")
    small, large = 2_000, 12_000
    counts = {n: callgrind_turn(args, tmp, n) for n in (small, large)}
    return {
        "deltas": [small, large],
        "instructions": [counts[small], counts[large]],
        "instructions_per_delta": (counts[large] - counts[small]) / (large - small),
    }


# --------------------------------------------------------------------------- 3. sessions


def bench_sessions(args, tmp):
    body, _ = build_sse(1)
    path = os.path.join(tmp, "sessions.sse")
    with open(path, "wb") as f:
        f.write(body)
    home = tempfile.mkdtemp(prefix="sessions-", dir=tmp)
    server = Server(args.binary, home, {"AGENT_SERVER_SSE_FIXTURE": path})
    try:
        server.initialize()
        # One session first, so one-time costs (config, provider, client) are not counted per session.
        server.request(1, "session/new", {})
        time.sleep(args.settle)
        rss_before = server.rss()
        count = args.sessions
        payload = b"".join(
            b'{"jsonrpc":"2.0","id":%d,"method":"session/new","params":{}}\n' % (n + 10)
            for n in range(count)
        )
        start = time.perf_counter()
        writer = threading.Thread(target=server.send_raw, args=(payload,))
        writer.start()
        data = server.read_lines_until(lambda buf: buf.count(b"\n") >= count, timeout=300)
        elapsed = time.perf_counter() - start
        writer.join()
        created = sum(1 for line in data.splitlines() if b'"result"' in line)
        time.sleep(args.settle)
        rss_after = server.rss()
        listed = len(server.request(2, "session/list", {})["sessions"])
    finally:
        server.close()
    return {
        "sessions": count,
        "created": created,
        "listed": listed,
        "create_per_s": count / elapsed,
        "rss_before_mib": rss_before / MIB,
        "rss_after_mib": rss_after / MIB,
        "per_session_kib": (rss_after - rss_before) / count / 1024,
    }


# --------------------------------------------------------------------------- report


def machine():
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        info["commit"] = subprocess.run(
            ["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return info


def verdict(key, value):
    if key not in TARGETS:
        return "", "", ""
    op, target, incumbent = TARGETS[key]
    ok = value < target if op == "<" else value >= target if op == ">=" else value <= target
    return f"{op} {target:g}", f"{incumbent:g}", "ok" if ok else "MISSED"


def print_table(results):
    rows = []

    def row(name, key, value, fmt):
        target, incumbent, status = verdict(key, value)
        rows.append((name, fmt.format(value), target, incumbent, status))

    if "startup" in results:
        s = results["startup"]
        row(f"spawn -> initialize reply, median of {s['spawns']} (ms)",
            "spawn_to_initialize_ms_median", s["spawn_to_initialize_ms_median"], "{:.2f}")
        row("spawn -> initialize reply, p95 (ms)", "", s["spawn_to_initialize_ms_p95"], "{:.2f}")
        row("  baseline: spawn `cat`, echo one line (ms)", "", s["baseline_cat_echo_ms_median"], "{:.2f}")
        row("  baseline: `agent-server --version` to exit (ms)", "",
            s["baseline_version_exit_ms_median"], "{:.2f}")
        row("idle RSS after initialize, median (MiB)", "idle_rss_mib", s["idle_rss_mib"], "{:.2f}")
    if "pipeline" in results:
        p = results["pipeline"]
        row(f"pipelined auth/status x{p['requests']} (requests/s)", "", p["requests_per_s"], "{:,.0f}")
        row("  answered with result / error / missing", "",
            0, f"{p['answered_with_result']} / {p['answered_with_error']} / {p['missing_ids']}")
        row("  peak RSS during the burst (MiB)", "", p["peak_rss_mib"], "{:.2f}")
    if "events" in results:
        e = results["events"]
        for mode in ("fixture", "http"):
            if mode not in e:
                continue
            m = e[mode]
            tag = f"[{mode}]"
            row(f"{tag} delta events/s ({e['deltas']:,} deltas, median of {e['rounds']})",
                "delta_events_per_s", m["delta_events_per_s"], "{:,.0f}")
            row(f"{tag} server CPU per delta (us, utime+stime)",
                "server_cpu_us_per_delta", m["server_cpu_us_per_delta"], "{:.2f}")
            row(f"{tag} peak RSS during the turn (MiB, VmHWM)",
                "turn_peak_rss_mib", m["turn_peak_rss_mib"], "{:.2f}")
            row(f"{tag} every delta delivered, text equal, seq in order", "",
                0, "yes" if m["all_delivered"] else "NO")
    if "sessions" in results:
        s = results["sessions"]
        row(f"RSS before / after {s['sessions']:,} idle sessions (MiB)", "", 0,
            f"{s['rss_before_mib']:.2f} / {s['rss_after_mib']:.2f}")
        row("  per idle session (KiB)", "", s["per_session_kib"], "{:.1f}")
        row("  sessions created / listed", "", 0, f"{s['created']} / {s['listed']}")
    if "instructions" in results:
        i = results["instructions"]
        row("instructions per delta (callgrind, 12,000 - 2,000 deltas)", "",
            i["instructions_per_delta"], "{:,.0f}")

    headers = ("measure", "value", "target", "incumbent", "")
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(5)]
    line = "  ".join("{:<%d}" % w if i == 0 else "{:>%d}" % w for i, w in enumerate(widths))
    print(line.format(*headers))
    print(line.format(*("-" * w for w in widths)))
    for r in rows:
        print(line.format(*r))


BENCHES = {
    "startup": bench_startup,
    "pipeline": bench_pipeline,
    "events": bench_events,
    "sessions": bench_sessions,
    "instructions": bench_instructions,
}
# Run when no benchmark is named; `instructions` needs valgrind and is asked for by name.
DEFAULT_BENCHES = ["startup", "pipeline", "events", "sessions"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benches", nargs="*", metavar="BENCH",
                        help="benchmarks to run: %s (default: all but instructions)" % ", ".join(BENCHES))
    parser.add_argument("--binary", default=DEFAULT_BINARY, help="agent-server binary (default: target/release/agent-server)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    parser.add_argument("--spawns", type=int, default=50, help="startup: number of spawns (default 50)")
    parser.add_argument("--requests", type=int, default=10_000, help="pipeline: number of requests (default 10000)")
    parser.add_argument("--deltas", type=int, default=50_000, help="events: text deltas in the turn (default 50000)")
    parser.add_argument("--rounds", type=int, default=5, help="events: turns per upstream, one fresh server each (default 5)")
    parser.add_argument("--upstream", choices=["fixture", "http", "both"], default="both",
                        help="events: SSE from AGENT_SERVER_SSE_FIXTURE, a local HTTP server, or both (default both)")
    parser.add_argument("--sessions", type=int, default=1000, help="sessions: number of idle sessions (default 1000)")
    parser.add_argument("--settle", type=float, default=0.1, help="seconds to wait before sampling idle RSS (default 0.1)")
    args = parser.parse_args()
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"{args.binary} not found; build it with: cargo build --release -p agent-server")

    unknown = [name for name in args.benches if name not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHES)}")
    selected = args.benches or DEFAULT_BENCHES
    results = {"machine": machine()}
    tmp = tempfile.mkdtemp(prefix="agent-server-bench-")
    try:
        for name in selected:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            results[name] = BENCHES[name](args, tmp)
    except BenchError as err:
        sys.exit(f"benchmark failed: {err}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["machine"]["loadavg_at_end"] = os.getloadavg()

    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
    else:
        m = results["machine"]
        print(f"{m['date']}  nproc={m['nproc']}  cpu={m.get('cpu', '?')}  commit={m.get('commit', '?')}  "
              f"load={m['loadavg_at_start'][0]:.2f}->{m['loadavg_at_end'][0]:.2f}")
        print()
        print_table(results)


if __name__ == "__main__":
    main()
