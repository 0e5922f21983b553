"""Speed and memory of mambart on one model, side by side with transformers.

    python benchmarks/bench.py MODEL_DIR [--threads 2] [--dtypes f32 bf16 q8 q4] [--json results.json]

Measures, in one run so that the ratios share the machine's state:
  - the machine's memory read bandwidth (all threads), hence the decode
    bound: tokens/s <= bandwidth / bytes read per token (the weights, and an
    attention hybrid's KV cache of the context);
  - mambart, for each weight type: load time, prefill tokens/s (prompts of
    128, 512, 2048; the best of up to 3 runs, for transformers too), decode tokens/s (batch 1 and 8), peak RSS, and the
    mean KL divergence of its next-token distributions from f32's over a
    fixed text;
  - transformers (when installed, f32): the same prefill and decode figures.
Each configuration runs in its own process, so peak RSS is its own.
Prints a table with the ratios and writes it as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from probe import build_probe, cpu_name, read_bandwidth


def peak_rss_mb() -> float:
    """This process's peak RSS. (Not getrusage: its maxrss survives exec, so a
    child would inherit the parent's bandwidth buffer.)"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# The fixed text of the KL measurement.
KL_TEXT = (
    "The Mamba architecture replaces attention with a selective state space model: each layer keeps a "
    "fixed-size state that is updated once per token, with parameters that depend on the input. "
    "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n"
    "Inference therefore needs no cache that grows with the text, and decoding one token reads every "
    "weight exactly once, which makes memory bandwidth the limit on a CPU."
)


def bench_mambart(model_dir: str, threads: int, prompt_lengths: list[int], decode_tokens: int,
                  batches: list[int], dtype: str = "f32", logits_out: str | None = None,
                  device: str = "cpu") -> dict:
    import mambart

    t = time.perf_counter()
    model = mambart.load(model_dir, threads=threads, dtype=dtype, device=device)
    out = {"load_s": time.perf_counter() - t, "dtype": dtype}
    if logits_out:
        np.save(logits_out, model.logits(model.tokenizer.encode(KL_TEXT)))
    rng = np.random.default_rng(0)
    V = model.vocab_limit
    out["weight_bytes_per_token"] = model.weight_bytes_per_token
    model.logits(rng.integers(0, V, 16).tolist())  # touch every weight page once
    out["prefill"] = {}
    for n in prompt_lengths:
        ids = rng.integers(0, V, n).tolist()
        out["prefill"][n] = prefill_rate(lambda: model.decoder(1).prefill([ids]), n)
    out["decode"] = {}
    for b in batches:
        dec = greedy_decoder(model, [rng.integers(0, V, 8).tolist() for _ in range(b)])
        out["decode"][b] = decode_rate(dec, decode_tokens)
    out["peak_rss_mb"] = peak_rss_mb()
    if device == "cpu":
        out["decode_b1_of_bound"] = decode_of_bound(model, threads, decode_tokens)
    if len(batches) > 1:
        out["decode_batch_over_b1"] = batch_over_b1(model, batches[-1], decode_tokens)
    return out


def prefill_rate(run, n: int, budget_s: float = 10.0, tries: int = 3) -> float:
    """Tokens/s of the fastest of up to `tries` prefills of n tokens (`run` does one), as many as fit
    in budget_s after the first: a shared machine only ever slows a run down."""
    best, spent = 0.0, 0.0
    for _ in range(tries):
        t = time.perf_counter()
        run()
        dt = time.perf_counter() - t
        best, spent = max(best, n / dt), spent + dt
        if spent > budget_s:
            break
    return best


def greedy_decoder(model, prompts: list[list[int]]):
    """A decoder of len(prompts) rows after their prefill, sampling greedily."""
    import mambart

    dec = model.decoder(len(prompts))
    dec.prefill(prompts)
    dec.set_sampling(mambart.SamplingParams(temperature=0))
    return dec


def decode_rate(dec, steps: int) -> float:
    """Tokens/s of `steps` sample-and-step rounds, all rows."""
    t = time.perf_counter()
    for _ in range(steps):
        dec.step(dec.sample())
    return dec.batch * steps / (time.perf_counter() - t)


def batch_over_b1(model, batch: int, tokens: int, rounds: int = 5) -> float:
    """Decode tokens/s at `batch` over batch 1, the median of rounds that time
    both back to back, so that the ratio shares the machine's state."""
    one, many = greedy_decoder(model, [[1, 2, 3, 4]]), greedy_decoder(model, [[1, 2, 3, 4]] * batch)
    ratios = [decode_rate(many, max(1, tokens // batch)) / decode_rate(one, tokens) for _ in range(rounds)]
    return float(np.median(ratios))


def kv_bytes_per_context_token(model) -> int:
    """Bytes of KV cache a decode step reads per token of context (attention hybrids; 0 otherwise)."""
    from mambart.info import _state_sizes

    return _state_sizes(model.config).get("state_bytes_per_token", 0)


def decode_of_bound(model, threads: int, tokens: int, rounds: int = 5) -> float:
    """Batch-1 decode speed as a fraction of the bandwidth bound, measured so
    that both figures share the machine's state: each round decodes between
    two bandwidth probes and counts against the better of them; the median
    round is reported. A step reads every weight once and, in an attention
    hybrid, the KV cache of its context (the round's mean context here).
    (Run after the peak RSS is read: the probe's buffer would count in it.)"""
    probe = build_probe()
    dec = greedy_decoder(model, [[1, 2, 3, 4]])
    per_context = kv_bytes_per_context_token(model)
    ratios = []
    for _ in range(rounds):
        before = read_bandwidth(probe, threads, repeat=3)
        context = dec._core.context()[0] + (tokens + 1) / 2
        rate = decode_rate(dec, tokens)
        bandwidth = max(before, read_bandwidth(probe, threads, repeat=3))
        ratios.append(rate * (model.weight_bytes_per_token + per_context * context) / (bandwidth * 1e9))
    return float(np.median(ratios))


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
            out["prefill"][n] = prefill_rate(lambda: model(ids), n)
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


def run_isolated(kind: str, args: argparse.Namespace, dtype: str = "f32", logits_out: str | None = None) -> dict | None:
    """Runs one configuration in a fresh process; None if it cannot run (e.g. no transformers)."""
    cmd = [sys.executable, __file__, args.model, "--threads", str(args.threads), "--decode-tokens",
           str(args.decode_tokens), "--prompt-lengths", *map(str, args.prompt_lengths), "--batches",
           *map(str, args.batches), "--only", kind, "--dtypes", dtype, "--device", args.device]
    if logits_out:
        cmd += ["--logits-out", logits_out]
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
    p.add_argument("--dtypes", nargs="+", default=["f32", "bf16", "f16", "q8", "q4"],
                   choices=["f32", "bf16", "f16", "q8", "q4"], help="mambart weight types to measure (f32 runs too: the KL reference)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--device", default="cpu", help="cpu, or cuda (e.g. with --batches 1 64 --no-transformers)")
    p.add_argument("--no-transformers", action="store_true")
    p.add_argument("--only", choices=["mambart", "transformers"], help=argparse.SUPPRESS)
    p.add_argument("--logits-out", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.only == "mambart":
        print(json.dumps(bench_mambart(args.model, args.threads, args.prompt_lengths, args.decode_tokens,
                                       args.batches, args.dtypes[0], args.logits_out, args.device)))
        return
    if args.only == "transformers":
        from mambart.hub import resolve  # "builtin" or a hub id: the directory transformers reads

        print(json.dumps(bench_transformers(str(resolve(args.model)), args.threads, args.prompt_lengths, args.decode_tokens,
                                            args.batches)))
        return

    import tempfile

    results = {"model": args.model, "threads": args.threads, "cpu": cpu_name()}
    results["bandwidth_gbs"] = read_bandwidth(build_probe(), args.threads)
    results["mambart"] = {}
    with tempfile.TemporaryDirectory() as tmp:
        dtypes = ["f32"] + [d for d in args.dtypes if d != "f32"]  # f32 first: the KL reference
        for dtype in dtypes:
            r = run_isolated("mambart", args, dtype, os.path.join(tmp, f"{dtype}.npy"))
            if r is None:
                continue
            r["kl_vs_f32"] = mean_kl(np.load(os.path.join(tmp, "f32.npy")), np.load(os.path.join(tmp, f"{dtype}.npy")))
            results["mambart"][dtype] = r
    results["transformers"] = None if args.no_transformers else run_isolated("transformers", args)
    print_table(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


def mean_kl(ref: np.ndarray, got: np.ndarray) -> float:
    """Mean over positions of KL(softmax(ref) || softmax(got))."""
    def log_softmax(x):
        x = x.astype(np.float64) - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))
    p, q = log_softmax(ref), log_softmax(got)
    return float((np.exp(p) * (p - q)).sum(-1).mean())


def print_table(r: dict) -> None:
    """One column per mambart weight type, then transformers; ratios against transformers and the bound."""
    runs, hf = r["mambart"], r["transformers"]
    bw = r["bandwidth_gbs"]
    print(f"cpu: {r.get('cpu', '?')}")
    print(f"memory read bandwidth: {bw:.1f} GB/s ({r['threads']} threads); it drifts on a shared machine, so\n"
          "'decode b1 / bound' is the median of rounds each measured between two probes")
    if not runs:
        return
    cols = list(runs)

    def row(label, values, fmt):
        print(f"{label:26}" + "".join(f"{fmt.format(v) if v == v else '-':>10}" for v in values))

    row("", cols + (["hf f32"] if hf else []), "{}")
    row("weights/token (MB)", [runs[c]["weight_bytes_per_token"] / 1e6 for c in cols], "{:.0f}")
    bounds = {c: bw * 1e9 / runs[c]["weight_bytes_per_token"] for c in cols}
    row("decode bound (tok/s)", [bounds[c] for c in cols], "{:.1f}")
    row("load (s)", [runs[c]["load_s"] for c in cols] + ([hf["load_s"]] if hf else []), "{:.2f}")
    for n in runs[cols[0]]["prefill"]:
        row(f"prefill {n} (tok/s)", [runs[c]["prefill"][n] for c in cols] + ([hf["prefill"][n]] if hf else []),
            "{:.1f}")
    for b in runs[cols[0]]["decode"]:
        row(f"decode batch {b} (tok/s)", [runs[c]["decode"][b] for c in cols] + ([hf["decode"][b]] if hf else []),
            "{:.1f}")
    b1 = next(iter(runs[cols[0]]["decode"]))
    row("decode b1 / bound", [runs[c].get("decode_b1_of_bound", float("nan")) for c in cols], "{:.0%}")
    b_last = list(runs[cols[0]]["decode"])[-1]
    if b_last != b1:  # median of back-to-back rounds (bench_mambart)
        row(f"decode b{b_last} / b{b1}", [runs[c].get("decode_batch_over_b1", float("nan")) for c in cols], "{:.2f}x")
    if hf:
        for n in runs[cols[0]]["prefill"]:
            row(f"prefill {n} / hf", [runs[c]["prefill"][n] / hf["prefill"][n] for c in cols], "{:.2f}x")
        for b in runs[cols[0]]["decode"]:
            row(f"decode b{b} / hf", [runs[c]["decode"][b] / hf["decode"][b] for c in cols], "{:.2f}x")
    row("peak RSS (MB)", [runs[c]["peak_rss_mb"] for c in cols] + ([hf["peak_rss_mb"]] if hf else []), "{:.0f}")
    row("KL vs f32", [runs[c]["kl_vs_f32"] for c in cols], "{:.2e}")


if __name__ == "__main__":
    main()
