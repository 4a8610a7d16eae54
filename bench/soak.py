#!/usr/bin/env python3
"""Soak: many concurrent sessions running many tool-using turns against a faulty local upstream.

Build first:   cargo build --release -p agent-server
Then run:      python3 bench/soak.py                       (100 sessions x 50 turns)
               python3 bench/soak.py --sessions 20 --turns 10 --stored
Steady state:  python3 bench/soak.py --turns 250 --session-turns 50
               (five rounds of 100 sessions x 50 turns; the first round is the warm-up)

Each turn is two model calls: the first streams a `shell` function call (`echo soak-N`), which
the server runs (approval policy `never`), the second streams the final answer. The upstream, a
local HTTP server in this process, injects faults on a fixed share of requests: HTTP 500 with
`retry-after-ms: 1`, 429 with the same, and a stream aborted mid-body (the server retries it).

Checked for every session: each event is delivered once and in order (`seq` = previous + 1),
every turn ends with exactly one `turnCompleted`, and every turn completes. Reported: turns/s,
faults injected, and the server's RSS, open fds and threads sampled over time; "growth" compares
the last sample with the one taken when 20 % of the turns were done (after warm-up).

`--stored` runs the sessions durable (the default of a 1.1 server); without it every session is
created with `"ephemeral": true`. `--session-turns K` closes each session (`session/close`) after
K turns and goes on in a new one, so the history the server holds stays bounded: RSS that still
grows then is not the workload. The "hist" column is that history as the server last sent it
upstream: the sum, over the sessions still open, of their latest request body. Only the Python 3
standard library is used. Linux only.
"""

import argparse
import http.server
import json
import os
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BINARY = os.path.join(REPO, "target", "release", "agent-server")


def sse(events):
    out = []
    for n, event in enumerate(events):
        event.setdefault("sequence_number", n)
        out.append(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n")
    return "".join(out).encode()


def usage():
    return {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 10,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 110,
    }


def tool_call_body(n):
    args = json.dumps({"command": ["echo", f"soak-{n}"]})
    return sse(
        [
            {"type": "response.created", "response": {"id": f"r{n}", "status": "in_progress", "output": []}},
            {"type": "response.output_item.added", "output_index": 0,
             "item": {"id": f"fc{n}", "type": "function_call", "status": "in_progress", "call_id": f"call_{n}",
                      "name": "shell", "arguments": ""}},
            {"type": "response.function_call_arguments.delta", "item_id": f"fc{n}", "output_index": 0, "delta": args},
            {"type": "response.output_item.done", "output_index": 0,
             "item": {"id": f"fc{n}", "type": "function_call", "status": "completed", "call_id": f"call_{n}",
                      "name": "shell", "arguments": args}},
            {"type": "response.completed", "response": {"id": f"r{n}", "status": "completed", "usage": usage()}},
        ]
    )


def answer_body(n):
    words = [f"word{i} " for i in range(20)]
    events = [{"type": "response.created", "response": {"id": f"a{n}", "status": "in_progress", "output": []}}]
    events += [
        {"type": "response.output_text.delta", "item_id": f"m{n}", "output_index": 0, "content_index": 0, "delta": w}
        for w in words
    ]
    events.append(
        {"type": "response.output_item.done", "output_index": 0,
         "item": {"id": f"m{n}", "type": "message", "status": "completed", "role": "assistant",
                  "content": [{"type": "output_text", "text": "".join(words), "annotations": []}]}}
    )
    events.append({"type": "response.completed", "response": {"id": f"a{n}", "status": "completed", "usage": usage()}})
    return sse(events)


class Upstream(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fault_every):
        super().__init__(("127.0.0.1", 0), Handler)
        self.fault_every = fault_every
        self.lock = threading.Lock()
        self.count = 0
        self.faults = {"500": 0, "429": 0, "abort": 0}
        # Latest request body size per open conversation (keyed by its first prompt).
        self.history = {}

    def history_bytes(self):
        with self.lock:
            return sum(self.history.values())

    def forget(self, key):
        with self.lock:
            self.history.pop(key, None)


def first_prompt(items):
    """The conversation's first soak prompt (`session I turn T`), which names it."""
    for item in items:
        content = item.get("content")
        if isinstance(content, list):
            for part in content:
                text = part.get("text", "") if isinstance(part, dict) else ""
                if text.startswith("session "):
                    return text
    return ""


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        server = self.server
        with server.lock:
            server.count += 1
            n = server.count
        # The turn's second request ends with the command's output; every other one asks anew.
        items = body.get("input", [])
        with server.lock:
            server.history[first_prompt(items)] = length
        has_output = bool(items) and items[-1].get("type") == "function_call_output"
        payload = answer_body(n) if has_output else tool_call_body(n)
        fault = None
        if server.fault_every and n % server.fault_every == 0:
            fault = ("500", "429", "abort")[(n // server.fault_every) % 3]
            with server.lock:
                server.faults[fault] += 1
        if fault in ("500", "429"):
            text = json.dumps({"error": {"type": "server_error", "code": "server_error", "message": "injected"}})
            self.send_response(int(fault))
            self.send_header("content-type", "application/json")
            self.send_header("retry-after-ms", "1")
            self.send_header("content-length", str(len(text)))
            self.send_header("connection", "close")
            self.end_headers()
            self.wfile.write(text.encode())
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        if fault == "abort":
            # Announce the whole body, send half, close: the client sees a broken stream.
            self.send_header("content-length", str(len(payload)))
            self.send_header("connection", "close")
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])
            self.close_connection = True
            return
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def proc_sample(pid):
    rss = threads = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds, threads


class Soak:
    def __init__(self, args, upstream, home):
        upstream_uri = f"http://127.0.0.1:{upstream.server_address[1]}"
        self.upstream = upstream
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI")}
        env.update({"OPENAI_API_KEY": "soak", "OPENAI_BASE_URL": f"{upstream_uri}/v1", "RUST_LOG": "error"})
        self.proc = subprocess.Popen(
            [args.binary, "--home", home, "-c", 'approval_policy="never"',
             "-c", "model_providers.openai.request_max_retries=4",
             "-c", "model_providers.openai.stream_max_retries=4"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=home,
        )
        self.args = args
        self.lock = threading.Lock()
        self.write_lock = threading.Lock()
        self.next_id = 0
        self.replies = {}
        self.reply_ready = threading.Condition(self.lock)
        self.last_seq = {}
        self.completions = {}
        self.turn_of_session = {}
        self.turn_done = {}
        self.problems = []
        self.turns_done = 0
        self.events = 0
        threading.Thread(target=self.read_loop, daemon=True).start()

    def send(self, message):
        data = (json.dumps(message) + "\n").encode()
        with self.write_lock:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def request(self, method, params):
        with self.lock:
            self.next_id += 1
            rid = self.next_id
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        with self.lock:
            while rid not in self.replies:
                if not self.reply_ready.wait(timeout=60):
                    raise RuntimeError(f"no reply to {method}")
            return self.replies.pop(rid)

    def read_loop(self):
        for line in self.proc.stdout:
            message = json.loads(line)
            if "id" in message and "method" not in message:
                with self.lock:
                    self.replies[message["id"]] = message
                    self.reply_ready.notify_all()
                continue
            if message.get("method") != "session/event":
                continue
            params = message["params"]
            session, seq, kind = params["sessionId"], params["seq"], params["event"]["type"]
            with self.lock:
                self.events += 1
                last = self.last_seq.get(session, 0)
                if seq != last + 1:
                    self.problems.append(f"session {session}: seq {seq} after {last}")
                self.last_seq[session] = seq
                if kind == "turnCompleted":
                    turn = params["turnId"]
                    self.completions[turn] = self.completions.get(turn, 0) + 1
                    if self.completions[turn] > 1:
                        self.problems.append(f"turn {turn}: a second turnCompleted")
                    if params["event"]["status"] != "completed":
                        self.problems.append(f"turn {turn}: {params['event']['status']} {params['event'].get('error')}")
                    self.turns_done += 1
                    event = self.turn_done.get(turn)
                    if event:
                        event.set()

    def open_session(self):
        params = {} if self.args.stored else {"ephemeral": True}
        reply = self.request("session/new", params)
        if "result" not in reply:
            raise RuntimeError(f"session/new failed: {reply}")
        return reply["result"]["sessionId"]

    def run_session(self, index):
        session = self.open_session()
        first = f"session {index} turn 0"
        for turn in range(self.args.turns):
            if self.args.session_turns and turn and turn % self.args.session_turns == 0:
                reply = self.request("session/close", {"sessionId": session})
                if "result" not in reply:
                    with self.lock:
                        self.problems.append(f"session/close failed: {reply}")
                self.upstream.forget(first)
                session = self.open_session()
                first = f"session {index} turn {turn}"
            done = threading.Event()
            reply = self.request("session/submit", {"sessionId": session, "text": f"session {index} turn {turn}"})
            turn_id = reply["result"]["turnId"]
            with self.lock:
                self.turn_done[turn_id] = done
                if self.completions.get(turn_id):
                    done.set()
            if not done.wait(timeout=120):
                with self.lock:
                    self.problems.append(f"turn {turn_id} never completed")
                return
            with self.lock:
                del self.turn_done[turn_id]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=DEFAULT_BINARY)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--fault-every", type=int, default=25, help="inject a fault every N requests (0: none)")
    parser.add_argument("--stored", action="store_true", help="durable sessions instead of ephemeral ones")
    parser.add_argument("--session-turns", type=int, default=0,
                        help="close each session after this many turns and go on in a new one (0: never)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.binary = os.path.abspath(args.binary)
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} is missing: cargo build --release -p agent-server")

    upstream = Upstream(args.fault_every)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    home = tempfile.mkdtemp(prefix="soak-")
    soak = Soak(args, upstream, home)
    init = soak.request("initialize", {"clientInfo": {"name": "soak"}})
    assert "result" in init, init
    total = args.sessions * args.turns
    samples = []
    start = time.monotonic()
    workers = [threading.Thread(target=soak.run_session, args=(i,), daemon=True) for i in range(args.sessions)]
    for w in workers:
        w.start()
    while any(w.is_alive() for w in workers):
        with soak.lock:
            done = soak.turns_done
        samples.append((time.monotonic() - start, done) + proc_sample(soak.proc.pid) + (upstream.history_bytes(),))
        time.sleep(1)
    elapsed = time.monotonic() - start
    samples.append((elapsed, soak.turns_done) + proc_sample(soak.proc.pid) + (upstream.history_bytes(),))
    soak.proc.stdin.close()
    soak.proc.wait(timeout=30)
    upstream.shutdown()
    shutil.rmtree(home, ignore_errors=True)

    warm = next((s for s in samples if s[1] >= total * 0.2), samples[0])
    last = samples[-1]
    peak_rss = max(s[2] for s in samples)
    figures = {
        "sessions": args.sessions,
        "turns_per_session": args.turns,
        "mode": "stored" if args.stored else "ephemeral",
        "session_turns": args.session_turns or args.turns,
        "turns_completed": soak.turns_done,
        "events": soak.events,
        "seconds": round(elapsed, 1),
        "turns_per_s": round(soak.turns_done / elapsed, 1),
        "requests": upstream.count,
        "faults": upstream.faults,
        "rss_mib_after_warmup": round(warm[2] / 2**20, 1),
        "rss_mib_end": round(last[2] / 2**20, 1),
        "rss_mib_peak": round(peak_rss / 2**20, 1),
        "history_mib_after_warmup": round(warm[5] / 2**20, 2),
        "history_mib_end": round(last[5] / 2**20, 2),
        "fds_after_warmup": warm[3],
        "fds_end": last[3],
        "threads_after_warmup": warm[4],
        "threads_end": last[4],
        "problems": soak.problems[:20],
        "exit_status": soak.proc.returncode,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"{'t (s)':>7} {'turns':>6} {'RSS MiB':>8} {'hist MiB':>8} {'fds':>5} {'threads':>7}")
        step = max(1, len(samples) // 15)
        for s in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
            print(f"{s[0]:7.1f} {s[1]:6d} {s[2] / 2**20:8.1f} {s[5] / 2**20:8.2f} {s[3]:5d} {s[4]:7d}")
        for key, value in figures.items():
            print(f"{key}: {value}")
    ok = not soak.problems and soak.turns_done == total and soak.proc.returncode == 0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
