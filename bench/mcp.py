#!/usr/bin/env python3
"""MCP benchmarks for agent-server, driving the release binary over stdin/stdout against our own
MCP test server (tests/mcp-servers/fault-server.mjs, installed by scripts/install-test-deps).

Build first:   cargo build --release -p agent-server
Then run:      python3 bench/mcp.py             (all three, table on stdout)
               python3 bench/mcp.py --json      (machine-readable figures)

Benchmarks:
  call      per-call overhead of an MCP tool call through the server: one turn whose (replayed)
            model response asks for N calls of the MCP server's `echo` tool, run one after
            another; the time from one call's `itemCompleted` to the next one's is one whole
            call through the server. The MCP server's own time is the round trip of the same
            `tools/call` sent to the same server directly over its stdio. Overhead = median
            cycle through the server - median direct round trip.
  startup   spawn-to-`initialize`-reply time with three configured MCP servers (which start in
            the background), over N spawns; interleaved with the same binary without servers and
            with three configured servers that are idle processes (`sleep`), which separates
            the server's own work per server from the servers' CPU use. With the three MCP
            servers each run also waits for the first one's `ready` (spawn-to-ready: when the
            servers really start), and the run ends by counting test-server processes left
            behind (none should be)
  rss       the server's idle RSS with 0 and with K connected stdio MCP servers (all `ready`);
            growth per server (the MCP servers' own processes are not counted)

Only the Python 3 standard library is used. Linux only (reads /proc).
"""

import argparse
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BINARY = os.path.join(REPO, "target", "release", "agent-server")
FAULT_SERVER = os.path.join(REPO, "tests", "mcp-servers", "fault-server.mjs")

TARGETS = {
    "mcp_call_overhead_ms_median": ("<=", 1.0),
    "spawn_to_initialize_ms_median_3_mcp": ("<=", 5.0),
    "leftover_mcp_processes_after_startup": ("<=", 0),
}


class BenchError(Exception):
    """A benchmark could not run or the server misbehaved."""


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise BenchError(f"VmRSS missing from /proc/{pid}/status")


class Lines:
    """Reads newline-delimited JSON from a pipe with a deadline, stamping each arrival."""

    def __init__(self, stream):
        self.fd = stream.fileno()
        self.buffer = b""

    def next(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError("timed out waiting for a message")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, 1 << 20)
                if not chunk:
                    raise BenchError("the process closed its stdout")
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return time.perf_counter(), json.loads(line)


def send(proc, message):
    proc.stdin.write((json.dumps(message) + "\n").encode())
    proc.stdin.flush()


def node_server_toml(name, extra_args=()):
    args = ", ".join(json.dumps(a) for a in [FAULT_SERVER, *extra_args])
    return f'[mcp_servers.{name}]\ncommand = "node"\nargs = [{args}]\n'


def spawn_server(binary, home, env_extra=None):
    env = {"PATH": os.environ.get("PATH", ""), "HOME": home, "OPENAI_API_KEY": "bench"}
    env.update(env_extra or {})
    return subprocess.Popen(
        [binary, "--home", home],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )


def finish(proc):
    try:
        proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- call overhead


def sse(events):
    out = []
    for n, event in enumerate(events):
        event.setdefault("sequence_number", n)
        out.append(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n")
    return "".join(out)


def calls_transcript(n):
    usage = {"input_tokens": 1, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 1,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 2}
    events = [{"type": "response.created", "response": {"id": "resp_1", "status": "in_progress", "output": []}}]
    for i in range(n):
        events.append({
            "type": "response.output_item.done", "output_index": i,
            "item": {"id": f"fc_{i}", "type": "function_call", "status": "completed",
                     "call_id": f"call_{i}", "name": "mcp__fault__echo",
                     "arguments": json.dumps({"message": f"m{i}"})},
        })
    events.append({"type": "response.completed", "response": {"id": "resp_1", "status": "completed", "usage": usage}})
    final = [
        {"type": "response.created", "response": {"id": "resp_2", "status": "in_progress", "output": []}},
        {"type": "response.output_item.done", "output_index": 0,
         "item": {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
                  "content": [{"type": "output_text", "text": "done", "annotations": []}]}},
        {"type": "response.completed", "response": {"id": "resp_2", "status": "completed", "usage": usage}},
    ]
    return sse(events), sse(final)


def direct_round_trips(n):
    """Round trips of `tools/call echo` sent straight to the MCP server, in seconds."""
    proc = subprocess.Popen(["node", FAULT_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    lines = Lines(proc.stdout)
    try:
        send(proc, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}})
        lines.next()
        send(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        times = []
        for i in range(n):
            start = time.perf_counter()
            send(proc, {"jsonrpc": "2.0", "id": i + 1, "method": "tools/call",
                        "params": {"name": "echo", "arguments": {"message": f"m{i}"}}})
            while True:
                stamp, message = lines.next()
                if message.get("id") == i + 1:
                    break
            times.append(stamp - start)
        return times
    finally:
        proc.kill()
        proc.wait()


def through_server_cycles(args, tmp):
    """Times between consecutive `itemCompleted` of the MCP calls of one turn, in seconds."""
    home = tempfile.mkdtemp(dir=tmp)
    with open(os.path.join(home, "config.toml"), "w") as config:
        config.write(node_server_toml("fault"))
    calls, final = calls_transcript(args.calls)
    first, second = os.path.join(home, "calls.sse"), os.path.join(home, "final.sse")
    with open(first, "w") as f:
        f.write(calls)
    with open(second, "w") as f:
        f.write(final)
    proc = spawn_server(args.binary, home, {"AGENT_SERVER_SSE_FIXTURE": f"{first}:{second}"})
    lines = Lines(proc.stdout)
    try:
        send(proc, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}})
        send(proc, {"jsonrpc": "2.0", "id": 2, "method": "session/submit",
                    "params": {"text": "call"}})
        completed = []
        while True:
            stamp, message = lines.next()
            if message.get("method") != "session/event":
                continue
            event = message["params"]["event"]
            if event["type"] == "itemCompleted" and event["item"]["type"] == "mcpToolCall":
                if event["item"]["status"] != "completed":
                    raise BenchError(f"an MCP call failed: {event['item']}")
                completed.append(stamp)
            if event["type"] == "turnCompleted":
                if event["status"] != "completed":
                    raise BenchError(f"the turn did not complete: {event}")
                break
        if len(completed) != args.calls:
            raise BenchError(f"{len(completed)} of {args.calls} calls completed")
        return [b - a for a, b in zip(completed, completed[1:])]
    finally:
        finish(proc)


def bench_call(args, tmp):
    # Warm the MCP server's code paths (and the page cache) once before measuring either way.
    direct_round_trips(50)
    direct = direct_round_trips(args.calls)
    cycles = through_server_cycles(args, tmp)
    direct_ms = statistics.median(direct) * 1000
    cycle_ms = statistics.median(cycles) * 1000
    return {
        "mcp_calls": args.calls,
        "mcp_direct_round_trip_ms_median": round(direct_ms, 3),
        "mcp_call_through_server_ms_median": round(cycle_ms, 3),
        "mcp_call_overhead_ms_median": round(cycle_ms - direct_ms, 3),
    }


# --------------------------------------------------------------------------- startup


STARTUP_CONFIGS = {
    # No MCP server: the plain start-up of the same binary in the same minute.
    "0_mcp": "",
    # Three configured servers that are processes doing nothing (`sleep`, which never answers
    # initialize): the server's own work for three servers (config, spawn, pipes, tasks) without
    # their CPU use.
    "3_idle_processes": "".join(
        f'[mcp_servers.idle{i}]\ncommand = "sleep"\nargs = ["60"]\n' for i in range(3)
    ),
    # Three Node.js MCP servers (`ok`, `garbage`, `hang-init` modes of the test server): the
    # server's work plus three Node.js start-ups competing for the cores.
    "3_mcp": node_server_toml("one")
    + node_server_toml("two", ["--mode", "garbage"])
    + node_server_toml("three", ["--mode", "hang-init"]),
}


def spawn_to_initialize(args, tmp, config_text, ready_name=None):
    """Seconds from spawn to the `initialize` reply, and (with `ready_name`) to that MCP
    server's `ready` status."""
    home = tempfile.mkdtemp(dir=tmp)
    with open(os.path.join(home, "config.toml"), "w") as config:
        config.write(config_text)
    start = time.perf_counter()
    proc = spawn_server(args.binary, home)
    try:
        lines = Lines(proc.stdout)
        send(proc, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}})
        replied = None
        while replied is None:
            stamp, message = lines.next()
            if message.get("id") == 1:
                replied = stamp - start
        while ready_name is not None:
            stamp, message = lines.next()
            params = message.get("params") or {}
            if message.get("method") == "mcp/serverStatus" and params.get("name") == ready_name:
                if params.get("status") == "failed":
                    raise BenchError(f"the MCP server failed: {params}")
                if params.get("status") == "ready":
                    return replied, stamp - start
        return replied, None
    finally:
        finish(proc)
        shutil.rmtree(home, ignore_errors=True)


def leftover_mcp_processes():
    """Processes still running our MCP test server (none should outlive its agent server)."""
    count = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                count += FAULT_SERVER.encode() in cmdline.read()
        except OSError:
            pass
    return count


def bench_startup(args, tmp):
    """The three configurations interleaved, so they share whatever else the machine does."""
    times = {name: [] for name in STARTUP_CONFIGS}
    ready = []
    for _ in range(args.spawns):
        for name, config_text in STARTUP_CONFIGS.items():
            # With the Node.js servers, also how soon the first one is ready: what a client
            # sees of when the servers start.
            replied, first_ready = spawn_to_initialize(
                args, tmp, config_text, "one" if name == "3_mcp" else None
            )
            times[name].append(replied)
            if first_ready is not None:
                ready.append(first_ready)
    results = {"spawns": args.spawns}
    for name, values in times.items():
        results[f"spawn_to_initialize_ms_median_{name}"] = round(statistics.median(values) * 1000, 3)
        results[f"spawn_to_initialize_ms_max_{name}"] = round(max(values) * 1000, 3)
    results["spawn_to_first_mcp_ready_ms_median_3_mcp"] = round(statistics.median(ready) * 1000, 3)
    results["leftover_mcp_processes_after_startup"] = leftover_mcp_processes()
    return results


# --------------------------------------------------------------------------- idle RSS


def idle_rss(args, tmp, servers):
    home = tempfile.mkdtemp(dir=tmp)
    with open(os.path.join(home, "config.toml"), "w") as config:
        for i in range(servers):
            config.write(node_server_toml(f"s{i}"))
    proc = spawn_server(args.binary, home)
    lines = Lines(proc.stdout)
    try:
        send(proc, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}})
        ready = 0
        while ready < servers:
            _, message = lines.next(timeout=60)
            if message.get("method") == "mcp/serverStatus":
                status = message["params"]["status"]
                if status == "failed":
                    raise BenchError(f"an MCP server failed: {message['params']}")
                ready += status == "ready"
        # One call of the list per server, so every connection has done some work, then settle.
        send(proc, {"jsonrpc": "2.0", "id": 2, "method": "mcp/list", "params": {}})
        while lines.next()[1].get("id") != 2:
            pass
        time.sleep(args.settle)
        return rss_bytes(proc.pid)
    finally:
        finish(proc)


def bench_rss(args, tmp):
    base = statistics.median(idle_rss(args, tmp, 0) for _ in range(3))
    loaded = statistics.median(idle_rss(args, tmp, args.servers) for _ in range(3))
    return {
        "idle_rss_mib_0_mcp": round(base / 2**20, 2),
        f"idle_rss_mib_{args.servers}_mcp": round(loaded / 2**20, 2),
        "idle_rss_kib_per_stdio_mcp_server": round((loaded - base) / args.servers / 1024, 1),
    }


# --------------------------------------------------------------------------- main


BENCHES = {"call": bench_call, "startup": bench_startup, "rss": bench_rss}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benches", nargs="*", metavar="BENCH", help=f"any of {', '.join(BENCHES)} (default: all)")
    parser.add_argument("--binary", default=DEFAULT_BINARY, help="agent-server binary (default: target/release/agent-server)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--calls", type=int, default=500, help="call: MCP calls in the turn (default 500)")
    parser.add_argument("--spawns", type=int, default=30, help="startup: number of spawns (default 30)")
    parser.add_argument("--servers", type=int, default=10, help="rss: connected stdio servers (default 10)")
    parser.add_argument("--settle", type=float, default=0.5, help="rss: seconds before sampling (default 0.5)")
    args = parser.parse_args()
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"no binary at {args.binary}; run `cargo build --release -p agent-server` first")
    if not os.path.exists(os.path.join(REPO, "tests", "mcp-servers", "node_modules")):
        sys.exit("the MCP test server is not installed; run scripts/install-test-deps first")
    results = {}
    with tempfile.TemporaryDirectory(prefix="agent-server-mcp-bench-") as tmp:
        for name in args.benches or list(BENCHES):
            if name not in BENCHES:
                sys.exit(f"unknown benchmark {name}; choose from {', '.join(BENCHES)}")
            try:
                results.update(BENCHES[name](args, tmp))
            except BenchError as err:
                sys.exit(f"{name}: {err}")
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for key, value in results.items():
        target = TARGETS.get(key)
        verdict = ""
        if target:
            op, limit = target
            ok = value <= limit if op == "<=" else value >= limit
            verdict = f"  (target {op} {limit}: {'met' if ok else 'MISSED'})"
        print(f"{key:48} {value}{verdict}")


if __name__ == "__main__":
    main()
