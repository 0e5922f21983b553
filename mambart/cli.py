"""The `mambart` command.

    mambart generate --model ID_OR_PATH --prompt TEXT [options]
    mambart info ID_OR_PATH [--revision REV]
    mambart serve --model ID_OR_PATH [--port 8000] [options]
    mambart chat --model ID_OR_PATH [--system TEXT] [options]

Generated text streams to stdout (only the generated text, so scripts can
pipe it); a summary goes to stderr, one `name: ...` line per figure.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import __version__
from .convert import WEIGHT_TYPES
from .progress import PrefillBar


def _generate_parser(sub) -> None:
    g = sub.add_parser("generate", help="generate text from a prompt",
                       description="Generate text from a prompt; text on stdout, timings on stderr.")
    g.add_argument("--model", "-m", default="builtin",
                   help="local directory, Hugging Face hub id, or builtin (the default: a small model for "
                        "Python code shipped with mambart)")
    g.add_argument("--prompt", "-p", default="",
                   help="prompt text, or - to read it from stdin (may be empty with --load-state)")
    g.add_argument("--max-new-tokens", "--genlen", "-n", dest="max_new_tokens", type=int, default=128,
                   help="tokens to generate (default 128)")
    g.add_argument("--temperature", "-t", type=float, default=1.0,
                   help="sampling temperature; 0 = greedy (default 1.0)")
    g.add_argument("--top-k", "--topk", dest="top_k", type=int, default=0,
                   help="keep the k most likely tokens; 0 = off (default)")
    g.add_argument("--top-p", "--topp", dest="top_p", type=float, default=1.0,
                   help="nucleus sampling mass in (0, 1]; 1 = off (default)")
    g.add_argument("--min-p", "--minp", dest="min_p", type=float, default=0.0,
                   help="drop tokens below min_p x the top probability; 0 = off (default)")
    g.add_argument("--repetition-penalty", dest="repetition_penalty", type=float, default=1.0,
                   help="CTRL-style penalty on tokens already seen; 1 = off (default)")
    g.add_argument("--seed", "-s", type=int, default=None, help="random seed (default: a random one)")
    g.add_argument("--stop", action="append", default=[], help="stop at this string (repeatable)")
    g.add_argument("--threads", type=int, default=None, help="worker threads (default: physical cores)")
    g.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N (a build with CUDA)")
    g.add_argument("--dtype", choices=WEIGHT_TYPES, default=None,
                   help="type of the big matrices, converted at load (default: as stored)")
    g.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    g.add_argument("--tokenizer", default=None,
                   help="tokenizer directory, tokenizer.json or hub id (default: the model's own, "
                        "else EleutherAI/gpt-neox-20b)")
    g.add_argument("--save-state", metavar="FILE", default=None,
                   help="write the state after the prompt and the generated text to FILE")
    g.add_argument("--load-state", metavar="FILE", default=None,
                   help="continue from a state saved with --save-state (its random stream included)")


def _info_parser(sub) -> None:
    i = sub.add_parser("info", help="describe a model: family, sizes, parameters, files",
                       description="Describe a model from its config and checkpoint headers "
                                   "(no tensor data is read).")
    i.add_argument("model", metavar="MODEL", nargs="?", default="builtin",
                   help="local directory, Hugging Face hub id, or builtin (the default)")
    i.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")


def _run_info(args: argparse.Namespace) -> int:
    from .info import describe, format_info

    print(format_info(describe(args.model, revision=args.revision)))
    return 0


def _run_generate(args: argparse.Namespace) -> int:
    import mambart

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    model = mambart.load(args.model, device=args.device, threads=args.threads, dtype=args.dtype,
                         revision=args.revision, tokenizer=args.tokenizer)
    bar = PrefillBar(sys.stderr) if sys.stderr.isatty() else None
    stream = model.stream(prompt, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                          top_p=args.top_p, min_p=args.min_p, repetition_penalty=args.repetition_penalty,
                          seed=args.seed, stop=args.stop, state=args.load_state, progress=bar)
    try:
        for piece in stream:
            sys.stdout.write(piece)
            sys.stdout.flush()
    finally:
        if bar:
            bar.clear()  # Ctrl-C during the prefill
    if sys.stdout.isatty():
        sys.stdout.write("\n")
    sys.stdout.flush()
    if args.save_state:
        stream.decoder.save_state(args.save_state)
    lines = [f"load: {model.load_seconds:.2f} s"] + stream.stats.summary_lines()
    print("\n".join(lines), file=sys.stderr)
    return 0


def _convert_parser(sub) -> None:
    c = sub.add_parser("convert", help="write a checkpoint with converted weights",
                       description="Write MODEL with its big matrices in DTYPE to OUT_DIR; it then loads by "
                                   "mmap with no conversion.")
    c.add_argument("model", metavar="MODEL", help="local directory or Hugging Face hub id")
    c.add_argument("out_dir", metavar="OUT_DIR", help="new (or empty) output directory")
    c.add_argument("--dtype", choices=WEIGHT_TYPES, required=True, help="weight type of the big matrices")
    c.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    c.add_argument("--tokenizer", default=None, help="tokenizer to copy (default: the model's own)")


def _run_convert(args: argparse.Namespace) -> int:
    from .convert import convert

    out = convert(args.model, args.out_dir, args.dtype, revision=args.revision, tokenizer=args.tokenizer)
    print(f"wrote {out} ({args.dtype})", file=sys.stderr)
    return 0


def _serve_parser(sub) -> None:
    s = sub.add_parser("serve", help="an OpenAI-compatible HTTP server (needs the [serve] extra)",
                       description="Serve a model over OpenAI's HTTP API (/v1/completions, /v1/chat/completions, "
                                   "/v1/models, /health, /metrics) with continuous batching and a prefix cache.")
    s.add_argument("--model", "-m", default="builtin", help="local directory, hub id, or builtin (default)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.add_argument("--dtype", choices=WEIGHT_TYPES, default=None, help="type of the big matrices (default: as stored)")
    s.add_argument("--threads", type=int, default=None, help="worker threads (default: physical cores)")
    s.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    s.add_argument("--max-batch", type=int, default=16, help="sequences decoded together, 1 to 32 (default 16)")
    s.add_argument("--cache-mb", type=float, default=512, help="prefix-state cache size in MB; 0 = off (default 512)")
    s.add_argument("--cache-mode", choices=["exact", "approx"], default="exact",
                   help="exact (default): only hits that give bit-identical results; approx: also continue from "
                        "the end of earlier prompts and completions (a chat turn prefills only its new message)")
    s.add_argument("--max-queue", type=int, default=256, help="requests waiting beyond which 503 (default 256)")
    s.add_argument("--max-prompt-tokens", type=int, default=32768, help="longest prompt accepted (default 32768)")
    s.add_argument("--max-tokens", type=int, default=4096, help="largest max_tokens accepted (default 4096)")
    s.add_argument("--api-key", default=None, help="require Authorization: Bearer KEY")
    s.add_argument("--chat-template", metavar="FILE", default=None,
                   help="a jinja2 chat template (default: the model's tokenizer_config.json chat_template)")


def _run_serve(args: argparse.Namespace) -> int:
    from .serve import run

    return run(args)


def _chat_parser(sub) -> None:
    c = sub.add_parser("chat", help="an interactive chat in the terminal (needs the [serve] extra)",
                       description="Chat with a model on its chat template. Each turn continues the saved state "
                                   "and prefills only the new message. /reset, /save FILE, /load FILE, /exit; "
                                   "Ctrl-C stops a reply.")
    c.add_argument("--model", "-m", default="builtin", help="local directory, hub id, or builtin (default)")
    c.add_argument("--system", default=None, help="a system message to start the conversation with")
    c.add_argument("--chat-template", metavar="FILE", default=None,
                   help="a jinja2 chat template (default: the model's tokenizer_config.json chat_template)")
    c.add_argument("--max-tokens", type=int, default=512, help="longest reply in tokens (default 512)")
    c.add_argument("--temperature", "-t", type=float, default=0.7, help="sampling temperature (default 0.7)")
    c.add_argument("--top-k", dest="top_k", type=int, default=0, help="0 = off (default)")
    c.add_argument("--top-p", dest="top_p", type=float, default=1.0, help="1 = off (default)")
    c.add_argument("--min-p", dest="min_p", type=float, default=0.0, help="0 = off (default)")
    c.add_argument("--repetition-penalty", dest="repetition_penalty", type=float, default=1.0, help="1 = off")
    c.add_argument("--seed", "-s", type=int, default=None, help="random seed (default: a random one)")
    c.add_argument("--threads", type=int, default=None, help="worker threads (default: physical cores)")
    c.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    c.add_argument("--dtype", choices=WEIGHT_TYPES, default=None, help="type of the big matrices")
    c.add_argument("--load-state", metavar="FILE", default=None, help="continue a conversation saved with /save")


def _run_chat(args: argparse.Namespace) -> int:
    from .serve.chat import run

    return run(args)


COMMANDS = {"generate": (_generate_parser, _run_generate), "info": (_info_parser, _run_info),
            "convert": (_convert_parser, _run_convert), "serve": (_serve_parser, _run_serve),
            "chat": (_chat_parser, _run_chat)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mambart", description="Fast Mamba inference without PyTorch.")
    parser.add_argument("--version", action="version", version=f"mambart {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for make_parser, _ in COMMANDS.values():
        make_parser(sub)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return COMMANDS[args.command][1](args)
    except BrokenPipeError:  # the reader went away (`| head`): not an error
        return 0
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, OSError, TypeError) as e:
        print(f"mambart: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
