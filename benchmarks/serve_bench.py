"""`mambart serve` under load: throughput and latency with continuous batching,
and multi-turn chat with and without the prefix cache.

    python benchmarks/serve_bench.py [--model DIR] [--threads 2] [--json out.json]

Without --model, a random model of mamba-130m's shape (d_model 768, 24
layers, vocabulary 50280, f32) is made with a small tokenizer and a ChatML
template (needs the [test] extra: torch and transformers make it).

1. Streaming: clients stream 128 tokens each from 256-token prompts (random
   ids, so no prompt is cached) at concurrency 1, 4, 16 and 32, in a closed
   loop (each client sends its next request when one ends; 6 requests
   each, so that the steady part holds several prefills per client), on a server
   with the cache off, so every prompt is prefilled. Client starts
   are spread over one idle prefill each, as independent users arrive, not
   as one burst. Reports aggregate generated tokens/s (every token the
   server generated, from each stream's usage chunk) over the whole run
   and over its steady part, while all the clients are connected (from
   the last one's first request to the first one's end: the server's
   mambart_generated_tokens counter at both; the whole run also holds the
   ramp-up and the tail, with fewer clients), time to first token
   (TTFT) and inter-token latency (ITL), p50 and p99, and TTFT of an idle
   server for the same prompt length. TTFT and ITL are those of the text a
   client sees (chunks are sent when a token completes text; a random
   model's byte tokens often complete a character only with the next).
2. Chat: 8 turns (a system prompt, then short questions, 32-token replies),
   TTFT per turn, on a server without the cache and with it (each turn then
   prefills only its new message).

Each server is a subprocess on a free loopback port, stopped at the end.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def pct(xs, q):
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def stream_request(url: str, body: dict) -> tuple[float, list[float], int]:
    """(TTFT, gaps between text chunks, tokens generated: the usage chunk's
    count) of one streaming completion."""
    t0 = time.perf_counter()
    times = []
    tokens = 0
    with httpx.Client(timeout=600) as c:
        with c.stream("POST", url + "/v1/completions",
                      json={**body, "stream": True, "stream_options": {"include_usage": True}}) as r:
            r.raise_for_status()
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                ch = json.loads(line[6:])
                if ch["choices"] and ch["choices"][0].get("text"):
                    times.append(time.perf_counter())
                elif ch.get("usage"):
                    tokens = ch["usage"]["completion_tokens"]
    gaps = [b - a for a, b in zip(times, times[1:])]
    return (times[0] - t0 if times else float("nan")), gaps, tokens


def generated_tokens(url: str) -> float:
    """The server's count of generated tokens (its /metrics)."""
    for line in httpx.get(url + "/metrics", timeout=60).text.splitlines():
        if line.startswith("mambart_generated_tokens_total "):
            return float(line.split()[1])
    raise RuntimeError("no mambart_generated_tokens_total in /metrics")


def load_test(url: str, model: str, concurrency: int, requests_each: int, prompt_len: int, gen: int,
              stagger: float, vocab: int) -> dict:
    ttfts, gaps, tokens = [], [], [0]
    lock = threading.Lock()
    # The steady window: from the moment the last client sends its first
    # request to the moment the first client is done, all `concurrency` of
    # them are connected; the server's own counter gives the tokens generated
    # in it (the ramp-up and the tail, with fewer clients, fall outside).
    started, finished, window = [0], [0], {}

    def mark(edge: str) -> None:
        window[edge] = (time.perf_counter(), generated_tokens(url))
    rng = np.random.default_rng(1000 + concurrency)  # prompts of their own: no run reuses another's
    prompts = [[rng.integers(1, vocab, prompt_len).tolist() for _ in range(requests_each)]
               for _ in range(concurrency)]

    def client(i):
        time.sleep(i * stagger)
        with lock:
            started[0] += 1
            if started[0] == concurrency:
                mark("start")
        for p in prompts[i]:
            t, g, n = stream_request(url, {"model": model, "prompt": p, "max_tokens": gen, "temperature": 0})
            with lock:
                ttfts.append(t)
                gaps.extend(g)
                tokens[0] += n
        with lock:
            finished[0] += 1
            if finished[0] == 1:
                mark("end")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    (ta, na), (tb, nb) = window["start"], window["end"]
    steady = (nb - na) / (tb - ta) if tb > ta else float("nan")  # none if the first client ended before the last began
    return {"concurrency": concurrency, "requests": concurrency * requests_each, "tokens": tokens[0],
            "wall_s": wall, "tok_s": tokens[0] / wall, "steady_s": tb - ta, "steady_tok_s": steady,
            "ttft_p50": pct(ttfts, 50), "ttft_p99": pct(ttfts, 99),
            "itl_p50": pct(gaps, 50), "itl_p99": pct(gaps, 99)}


def chat_ttfts(url: str, model: str, turns: int, reply_tokens: int) -> list[float]:
    system = "You are a helpful assistant for a Python code base. " * 8
    messages = [{"role": "system", "content": system}]
    out = []
    with httpx.Client(timeout=600) as c:
        for k in range(turns):
            messages.append({"role": "user", "content": f"Question {k}: what does the function on line {k} return, "
                                                         f"and why is it written that way?"})
            t0 = time.perf_counter()
            ttft, reply = None, []
            with c.stream("POST", url + "/v1/chat/completions",
                          json={"model": model, "messages": messages, "max_tokens": reply_tokens, "temperature": 0,
                                "stream": True}) as r:
                r.raise_for_status()
                for line in r.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    ch = json.loads(line[6:])
                    piece = ch["choices"][0]["delta"].get("content") if ch["choices"] else None
                    if piece:
                        if ttft is None:
                            ttft = time.perf_counter() - t0
                        reply.append(piece)
            out.append(ttft if ttft is not None else float("nan"))
            messages.append({"role": "assistant", "content": "".join(reply)})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model directory (default: a random 130m-shaped model)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 32])
    p.add_argument("--requests-each", type=int, default=6, help="requests per client at each concurrency")
    p.add_argument("--prompt-len", type=int, default=256)
    p.add_argument("--gen", type=int, default=128)
    p.add_argument("--turns", type=int, default=8)
    p.add_argument("--json")
    args = p.parse_args()

    from probe import cpu_name
    from serve_util import Server, make_chat_model

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(args.model) if args.model else make_chat_model(
            Path(tmp) / "m130", hidden_size=768, num_hidden_layers=24, state_size=16, vocab_size=50280,
            perturb=False)
        cfg = json.loads((model_dir / "config.json").read_text())
        vocab = min(cfg.get("vocab_size", 50280), 50000)
        name = str(model_dir)
        results: dict = {"cpu": cpu_name(), "threads": args.threads, "prompt_len": args.prompt_len, "gen": args.gen,
                         "load": [], "chat": {}}
        # The cache off: every prompt is prefilled, as for new users.
        with Server(model_dir, "--max-batch", "32", "--cache-mb", "0", threads=args.threads, startup_s=300) as s:
            rng = np.random.default_rng(1)
            idle = [stream_request(s.url, {"model": name, "prompt": rng.integers(1, vocab, args.prompt_len).tolist(),
                                           "max_tokens": 2, "temperature": 0})[0] for _ in range(5)]
            results["idle_ttft"] = statistics.median(idle)
            for c in args.concurrency:
                r = load_test(s.url, name, c, args.requests_each, args.prompt_len, args.gen,
                              stagger=results["idle_ttft"], vocab=vocab)
                results["load"].append(r)
                print(f"concurrency {c}: {r['tok_s']:.1f} tok/s ({r['steady_tok_s']:.1f} steady), TTFT p50 {r['ttft_p50']:.3f} p99 "
                      f"{r['ttft_p99']:.3f} s, ITL p50 {r['itl_p50'] * 1e3:.0f} p99 {r['itl_p99'] * 1e3:.0f} ms",
                      file=sys.stderr, flush=True)
        for label, extra in (("no cache", ["--cache-mb", "0"]), ("cache", [])):
            with Server(model_dir, *extra, threads=args.threads, startup_s=300) as s:
                results["chat"][label] = chat_ttfts(s.url, name, args.turns, 32)
            print(f"chat, {label}: " + " ".join(f"{t:.3f}" for t in results["chat"][label]), file=sys.stderr,
                  flush=True)
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(_nan_to_none(results), indent=2))  # NaN is not JSON


def _nan_to_none(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: _nan_to_none(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_nan_to_none(x) for x in v]
    return v


def num(v: float, spec: str) -> str:
    """v formatted, or n/a where a run too short to have it gave NaN (no steady part, no token)."""
    return "n/a" if math.isnan(v) else format(v, spec)


def print_table(r: dict) -> None:
    base = r["load"][0]["steady_tok_s"] if r["load"] else float("nan")
    print(f"\nmambart serve on {r['cpu']}, {r['threads']} threads, {r['gen']} tokens from {r['prompt_len']}-token "
          f"prompts; idle-server TTFT: {num(r['idle_ttft'], '.3f')} s\n")
    print("| clients | tok/s, whole run | tok/s, steady | steady × 1 client | TTFT p50 (s) | TTFT p99 (s) | "
          "p99 / idle | ITL p50 (ms) | ITL p99 (ms) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for x in r["load"]:
        cells = [(x["tok_s"], ".1f"), (x["steady_tok_s"], ".1f"), (x["steady_tok_s"] / base, ".2f"),
                 (x["ttft_p50"], ".3f"), (x["ttft_p99"], ".3f"), (x["ttft_p99"] / r["idle_ttft"], ".2f"),
                 (x["itl_p50"] * 1e3, ".0f"), (x["itl_p99"] * 1e3, ".0f")]
        print(f"| {x['concurrency']} | " + " | ".join(num(v, spec) for v, spec in cells) + " |")
    print("\nChat, time to first token per turn (s):\n")
    labels = list(r["chat"])
    print("| turn | " + " | ".join(labels) + " |")
    print("|---" * (len(labels) + 1) + "|")
    turns = len(next(iter(r["chat"].values()))) if r["chat"] else 0
    for k in range(turns):
        print(f"| {k + 1} | " + " | ".join(num(r["chat"][lab][k], ".3f") for lab in labels) + " |")
    if turns:
        print(f"| turn {turns} / turn 1 | " + " | ".join(num(r["chat"][lab][-1] / r["chat"][lab][0], ".2f") for lab in labels)
              + " |")


if __name__ == "__main__":
    main()
