#!/usr/bin/env python3
"""Benchmarks for the ACP profile, `agent-server acp`, driving the release binary over stdio.

Build first:   cargo build --release -p agent-server
Then run:      python3 bench/acp.py                  (both benchmarks, table on stdout)
               python3 bench/acp.py startup          (one of them)
               python3 bench/acp.py --json           (machine-readable figures)

Benchmarks:
  startup   spawn-to-`initialize`-reply time of `agent-server acp` over N spawns (fresh --home
            each)
  chunks    one `session/prompt` whose upstream streams N `response.output_text.delta` events;
            `agent_message_chunk` updates/s reaching the client (wall time from writing the
            prompt to reading its answer), server CPU per update, peak RSS, every chunk checked

The upstream is the generated transcript of `bench/run.py events`, replayed through
AGENT_SERVER_SSE_FIXTURE (`--upstream fixture`, the default) or served by a local HTTP server in
this process (`--upstream http`), or both. Python 3 standard library only; Linux only.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the shared helpers of bench/run.py)

TARGETS = {
    "acp_spawn_to_initialize_ms_median": ("<=", 5.0),
    "chunks_per_s": (">=", 150_000.0),
}


class AcpServer(run.Server):
    """`agent-server acp` with the raw reader of bench/run.py."""

    def __init__(self, binary, home, env_extra=None):
        super().__init__(binary, home, env_extra, args=("acp",))

    def initialize(self):
        return self.request(
            0,
            "initialize",
            {"protocolVersion": 1, "clientCapabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
        )


def bench_startup(args, tmp):
    times_ms = []
    for n in range(args.spawns):
        home = tempfile.mkdtemp(prefix=f"acp-spawn{n}-", dir=tmp)
        start = time.perf_counter()
        server = AcpServer(args.binary, home)
        server.send({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                     "params": {"protocolVersion": 1, "clientCapabilities": {}}})
        reply = server.read_reply(0)
        times_ms.append((time.perf_counter() - start) * 1000)
        if "result" not in reply:
            raise run.BenchError(f"initialize failed: {reply}")
        code = server.close()
        if code != 0:
            raise run.BenchError(f"agent-server acp exited {code} on stdin EOF")
    return {
        "spawns": args.spawns,
        "acp_spawn_to_initialize_ms_median": statistics.median(times_ms),
        "acp_spawn_to_initialize_ms_p95": run.percentile(times_ms, 95),
        "acp_spawn_to_initialize_ms_min": min(times_ms),
    }


def one_prompt(args, tmp, env, expected_text, label):
    home = tempfile.mkdtemp(prefix=f"acp-chunks-{label}-", dir=tmp)
    # Full access: the bench measures streaming, not approvals.
    with open(os.path.join(home, "config.toml"), "w") as f:
        f.write('approval_policy = "never"\nsandbox = "dangerFullAccess"\n')
    server = AcpServer(args.binary, home, env)
    try:
        server.initialize()
        session = server.request(1, "session/new", {"cwd": home, "mcpServers": []})
        cpu_before = run.proc_cpu_seconds(server.pid)
        start = time.perf_counter()
        server.send({"jsonrpc": "2.0", "id": 2, "method": "session/prompt",
                     "params": {"sessionId": session["sessionId"],
                                "prompt": [{"type": "text", "text": "stream please"}]}})
        marker = b'"id":2,'
        data = server.read_lines_until(
            lambda buf: buf.find(marker, max(0, len(buf) - run.READ_CHUNK - 64)) >= 0 and buf.endswith(b"\n"),
            timeout=600,
        )
        elapsed = time.perf_counter() - start
        cpu = run.proc_cpu_seconds(server.pid) - cpu_before
        hwm = server.hwm()
    finally:
        code = server.close()
    received, text, answer = 0, [], None
    for line in data.splitlines():
        if not line.strip():
            continue
        message = json.loads(line)
        if message.get("method") == "session/update":
            update = message["params"]["update"]
            if update["sessionUpdate"] == "agent_message_chunk":
                received += 1
                text.append(update["content"]["text"])
        elif message.get("id") == 2:
            answer = message
    if not answer or answer.get("result") != {"stopReason": "end_turn"}:
        raise run.BenchError(f"the prompt answered {answer}; stderr: {server.stderr_tail()}")
    return {
        "chunks_received": received,
        "text_matches": "".join(text) == expected_text,
        "exit_code": code,
        "seconds": elapsed,
        "chunks_per_s": received / elapsed,
        "server_cpu_us_per_chunk": cpu * 1e6 / max(received, 1),
        "turn_peak_rss_mib": hwm / run.MIB,
    }


def bench_chunks(args, tmp):
    body, text = run.build_sse(args.deltas)
    results = {"deltas": args.deltas, "rounds": args.rounds}
    modes = ["fixture", "http"] if args.upstream == "both" else [args.upstream]
    for mode in modes:
        upstream = None
        if mode == "fixture":
            path = os.path.join(tmp, "acp-bench.sse")
            with open(path, "wb") as f:
                f.write(body)
            env = {"AGENT_SERVER_SSE_FIXTURE": path}
        else:
            upstream = run.Upstream(body)
            env = {"OPENAI_BASE_URL": f"http://127.0.0.1:{upstream.port}/v1", "OPENAI_API_KEY": "x"}
        try:
            rounds = [one_prompt(args, tmp, env, text, mode) for _ in range(args.rounds)]
        finally:
            if upstream:
                upstream.close()
        ordered = sorted(rounds, key=lambda r: r["chunks_per_s"])
        summary = dict(ordered[len(ordered) // 2])
        summary["all_delivered"] = all(r["chunks_received"] == args.deltas and r["text_matches"] for r in rounds)
        summary["chunks_per_s_all"] = [round(r["chunks_per_s"]) for r in rounds]
        results[mode] = summary
    return results


def verdict(key, value):
    if key not in TARGETS:
        return ""
    op, target = TARGETS[key]
    ok = value <= target if op == "<=" else value >= target
    return f"{op} {target:g}  {'ok' if ok else 'MISSED'}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benches", nargs="*", metavar="BENCH", help="startup, chunks (default: both)")
    parser.add_argument("--binary", default=run.DEFAULT_BINARY)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--spawns", type=int, default=50)
    parser.add_argument("--deltas", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--upstream", choices=["fixture", "http", "both"], default="both")
    args = parser.parse_args()
    # The servers run in their temporary homes: a relative path must not depend on that.
    args.binary = os.path.abspath(args.binary)
    benches = args.benches or ["startup", "chunks"]
    tmp = tempfile.mkdtemp(prefix="acp-bench-")
    results = {}
    try:
        if "startup" in benches:
            results["startup"] = bench_startup(args, tmp)
        if "chunks" in benches:
            results["chunks"] = bench_chunks(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    rows = []
    if "startup" in results:
        s = results["startup"]
        rows.append(("spawn -> initialize reply, median of %d (ms)" % s["spawns"], "acp_spawn_to_initialize_ms_median",
                     s["acp_spawn_to_initialize_ms_median"], "%.2f"))
        rows.append(("spawn -> initialize reply, p95 (ms)", "", s["acp_spawn_to_initialize_ms_p95"], "%.2f"))
    for mode in ("fixture", "http"):
        c = results.get("chunks", {}).get(mode)
        if not c:
            continue
        rows.append((f"[{mode}] agent_message_chunk/s ({results['chunks']['deltas']:,}, median of {results['chunks']['rounds']})",
                     "chunks_per_s", c["chunks_per_s"], "%.0f"))
        rows.append((f"[{mode}] server CPU per chunk (us)", "", c["server_cpu_us_per_chunk"], "%.2f"))
        rows.append((f"[{mode}] peak RSS during the prompt (MiB)", "", c["turn_peak_rss_mib"], "%.2f"))
        rows.append((f"[{mode}] every chunk delivered, text equal", "", "yes" if c["all_delivered"] else "NO", "%s"))
    for name, key, value, fmt in rows:
        shown = fmt % value
        print(f"{name:<58} {shown:>12}  {verdict(key, value) if key else ''}")


if __name__ == "__main__":
    main()
