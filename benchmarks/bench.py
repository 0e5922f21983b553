"""Speed and memory of mambart on one model, side by side with transformers.

    python benchmarks/bench.py MODEL_DIR [--threads 2] [--json results.json]

Measures, in one run so that the ratios share the machine's state:
  - the machine's memory read bandwidth (all threads), hence the decode
    bound: tokens/s <= bandwidth / weight bytes read per token;
  - mambart: load time, prefill tokens/s (prompts of 128, 512, 2048),
    decode tokens/s (batch 1 and 8), peak RSS;
  - transformers (when installed): the same prefill and decode figures.
Each configuration runs in its own process, so peak RSS is its own.
Prints a table with the ratios and writes it as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np


def read_bandwidth(threads: int, nbytes: int = 1 << 30, repeats: int = 5) -> float:
    """GB/s reading a buffer larger than any cache with `threads` threads (numpy releases the GIL)."""
    a = np.ones(nbytes // 4, dtype=np.float32)
    parts = np.array_split(a, threads)
    best = 0.0
    for _ in range(repeats):
        workers = [threading.Thread(target=p.max) for p in parts]
        t = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = max(best, a.nbytes / (time.perf_counter() - t) / 1e9)
    return best


def peak_rss_mb() -> float:
    """This process's peak RSS. (Not getrusage: its maxrss survives exec, so a
    child would inherit the parent's bandwidth buffer.)"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def bench_mambart(model_dir: str, threads: int, prompt_lengths: list[int], decode_tokens: int,
                  batches: list[int], device: str = "cpu") -> dict:
    import mambart

    t = time.perf_counter()
    model = mambart.load(model_dir, threads=threads, device=device)
    out = {"load_s": time.perf_counter() - t}
    rng = np.random.default_rng(0)
    V = model.vocab_limit
    out["weight_bytes_per_token"] = model.weight_bytes_per_token
    model.logits(rng.integers(0, V, 16).tolist())  # touch every weight page once
    out["prefill"] = {}
    for n in prompt_lengths:
        ids = rng.integers(0, V, n).tolist()
        dec = model.decoder(1)
        t = time.perf_counter()
        dec.prefill([ids])
        out["prefill"][n] = n / (time.perf_counter() - t)
    out["decode"] = {}
    for b in batches:
        dec = model.decoder(b)
        dec.prefill([rng.integers(0, V, 8).tolist() for _ in range(b)])
        dec.set_sampling(mambart.SamplingParams(temperature=0))
        t = time.perf_counter()
        for _ in range(decode_tokens):
            dec.step(dec.sample())
        out["decode"][b] = b * decode_tokens / (time.perf_counter() - t)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def bench_transformers(model_dir: str, threads: int, prompt_lengths: list[int], decode_tokens: int,
                       batches: list[int]) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    t = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    out = {"load_s": time.perf_counter() - t, "prefill": {}, "decode": {}}
    V = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model(torch.randint(0, V, (1, 16), generator=g))
        for n in prompt_lengths:
            ids = torch.randint(0, V, (1, n), generator=g)
            t = time.perf_counter()
            model(ids)
            out["prefill"][n] = n / (time.perf_counter() - t)
        for b in batches:
            ids = torch.randint(0, V, (b, 8), generator=g)
            t = time.perf_counter()
            model(ids)
            prefill_s = time.perf_counter() - t
            t = time.perf_counter()
            model.generate(ids, max_new_tokens=decode_tokens, min_new_tokens=decode_tokens, do_sample=False,
                           pad_token_id=0)
            out["decode"][b] = b * decode_tokens / max(time.perf_counter() - t - prefill_s, 1e-9)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def run_isolated(kind: str, args: argparse.Namespace) -> dict | None:
    """Runs one configuration in a fresh process; None if it cannot run (e.g. no transformers)."""
    cmd = [sys.executable, __file__, args.model, "--threads", str(args.threads), "--decode-tokens",
           str(args.decode_tokens), "--prompt-lengths", *map(str, args.prompt_lengths), "--batches",
           *map(str, args.batches), "--only", kind, "--device", args.device]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"{kind}: failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}",
              file=sys.stderr)
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="model directory (or hub id)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--prompt-lengths", type=int, nargs="+", default=[128, 512, 2048])
    p.add_argument("--decode-tokens", type=int, default=128)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--json", help="write the results here")
    p.add_argument("--device", default="cpu", help="cpu, or cuda (e.g. with --batches 1 64 --no-transformers)")
    p.add_argument("--no-transformers", action="store_true")
    p.add_argument("--only", choices=["mambart", "transformers"], help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.only:
        sizes = (args.model, args.threads, args.prompt_lengths, args.decode_tokens, args.batches)
        print(json.dumps(bench_mambart(*sizes, args.device) if args.only == "mambart" else bench_transformers(*sizes)))
        return

    results = {"model": args.model, "threads": args.threads}
    results["bandwidth_gbs"] = read_bandwidth(args.threads)
    results["mambart"] = run_isolated("mambart", args)
    results["transformers"] = None if args.no_transformers else run_isolated("transformers", args)
    print_table(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


def print_table(r: dict) -> None:
    m, hf = r["mambart"], r["transformers"]
    bw = r["bandwidth_gbs"]
    print(f"memory read bandwidth: {bw:.1f} GB/s ({r['threads']} threads)")
    if not m:
        return
    bound = bw * 1e9 / m["weight_bytes_per_token"]
    print(f"weights read per token: {m['weight_bytes_per_token'] / 1e6:.0f} MB -> decode bound {bound:.1f} tok/s")
    print(f"{'':24} {'mambart':>10} {'transformers':>13} {'ratio':>7} {'of bound':>9}")
    print(f"{'load (s)':24} {m['load_s']:10.2f} {hf['load_s'] if hf else float('nan'):13.2f}")
    for n, v in m["prefill"].items():
        h = hf["prefill"].get(n) if hf else None
        print(f"{'prefill ' + str(n) + ' (tok/s)':24} {v:10.1f} {h or float('nan'):13.1f} "
              f"{v / h if h else float('nan'):7.2f}")
    for b, v in m["decode"].items():
        h = hf["decode"].get(b) if hf else None
        of_bound = f"{v / bound:9.0%}" if str(b) == "1" else ""
        print(f"{'decode batch ' + str(b) + ' (tok/s)':24} {v:10.1f} {h or float('nan'):13.1f} "
              f"{v / h if h else float('nan'):7.2f} {of_bound}")
    print(f"{'peak RSS (MB)':24} {m['peak_rss_mb']:10.0f} {hf['peak_rss_mb'] if hf else float('nan'):13.0f}")


if __name__ == "__main__":
    main()
