"""The `mambart` command.

    mambart generate [--model ID_OR_PATH] [--prompt TEXT | --prompt-file FILE] [options]
    mambart info [ID_OR_PATH] [--revision REV]
    mambart convert ID_OR_PATH OUT_DIR --dtype T
    mambart serve [--model ID_OR_PATH] [--port 8000] [options]
    mambart chat [--model ID_OR_PATH] [--system TEXT] [options]

Generated text streams to stdout (only the generated text, so scripts can
pipe it); a summary goes to stderr, one `name: ...` line per figure.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Sequence

from . import __version__
from .errors import one_line

MAX_PROMPT_BYTES = 1 << 28  # --prompt-file / stdin: far beyond any context worth prefilling


class _Parser(argparse.ArgumentParser):
    """Argument errors follow the one rule of every error: one line, status 1."""

    def error(self, message: str):
        print(f"mambart: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(1)


def _generate_parser(sub) -> None:
    g = sub.add_parser("generate", help="generate text from a prompt",
                       description="Generate text from a prompt; text on stdout, timings on stderr.")
    g.add_argument("--model", "-m", default="builtin",
                   help="local directory, Hugging Face hub id, or builtin (the default: a small model for "
                        "Python code shipped with mambart)")
    source = g.add_mutually_exclusive_group()
    source.add_argument("--prompt", "-p", default="",
                        help="prompt text, or - to read it from stdin (may be empty with --load-state)")
    source.add_argument("--prompt-file", metavar="FILE", default=None,
                        help="read the prompt from FILE (UTF-8)")
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
    _penalty_args(g)
    g.add_argument("--seed", "-s", type=int, default=None, help="random seed (default: a random one)")
    g.add_argument("--stop", action="append", default=[],
                   help="stop at this string (repeatable); backslash escapes: \\n \\t \\r \\\\ \\xNN \\uNNNN")
    g.add_argument("--threads", type=int, default=None, help="worker threads (default: physical cores)")
    g.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N (a build with CUDA)")
    g.add_argument("--dtype", choices=_weight_types(), default=None,
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
    stop = [unescape(s) for s in args.stop]
    created = _claim_output(args.save_state) if args.save_state else False
    try:
        summary = _generate(args, stop)
    except BaseException:
        if created:  # nothing was written: leave no empty file behind
            os.unlink(args.save_state)
        raise
    # Printed once the state is saved: stderr may be a closed pipe too, and
    # that error must not remove the state just written.
    if summary:
        print("\n".join(summary), file=sys.stderr)
    return 0


def _generate(args: argparse.Namespace, stop: list[str]) -> list[str]:
    """Streams the text; returns the summary lines (none once the reader has gone)."""
    from .tokenizer import decode_text

    if args.prompt_file is not None:
        prompt = decode_text(_read_limited(args.prompt_file), f"--prompt-file {args.prompt_file}")
    elif args.prompt == "-":
        if sys.stdin is None:
            raise ValueError("--prompt -: there is no standard input")
        prompt = decode_text(_read_limited(sys.stdin.buffer), "the prompt from stdin")
    else:
        prompt = args.prompt
    import mambart
    from .progress import PrefillBar

    model = mambart.load(args.model, device=args.device, threads=args.threads, dtype=args.dtype,
                         revision=args.revision, tokenizer=args.tokenizer)
    bar = PrefillBar(sys.stderr) if sys.stderr.isatty() else None
    stream = model.stream(prompt, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                          top_p=args.top_p, min_p=args.min_p, repetition_penalty=args.repetition_penalty,
                          presence_penalty=args.presence_penalty, frequency_penalty=args.frequency_penalty,
                          seed=args.seed, stop=stop, state=args.load_state, progress=bar)
    out = _Output(sys.stdout)
    try:
        for piece in stream:
            # Once the reader is gone (`| head`), stop, unless the state after the
            # whole generation was asked for: then finish it without output.
            if not out.write(piece) and not args.save_state:
                return []
    finally:
        if bar:
            bar.clear()  # Ctrl-C during the prefill
    if out.open and sys.stdout.isatty():
        out.write("\n")
    if args.save_state:
        stream.decoder.save_state(args.save_state)
    return [f"load: {model.load_seconds:.2f} s"] + stream.stats.summary_lines()


class _Output:
    """Text to stdout, flushed per piece; a closed pipe ends the output, not the command."""

    def __init__(self, stream) -> None:
        self.stream, self.open = stream, True

    def write(self, text: str) -> bool:
        if self.open:
            try:
                self.stream.write(text)
                self.stream.flush()
            except BrokenPipeError:
                self.open = False
                # Point stdout at /dev/null so that the flush at exit cannot fail again.
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self.stream.fileno())
                os.close(devnull)
        return self.open


def _claim_output(path: str) -> bool:
    """Check that `path` can be written before any work is done; True if it was created here.

    Opened for appending, so an existing file (perhaps the --load-state one)
    keeps its bytes until the new state replaces them.
    """
    existed = os.path.lexists(path)
    if os.path.isdir(path):
        raise ValueError(f"--save-state {path}: is a directory")
    try:
        open(path, "ab").close()
    except OSError as e:
        raise ValueError(f"--save-state {path}: cannot write ({e.strerror})") from None
    return not existed


def _read_limited(source) -> bytes:
    """All bytes of a path or binary stream, refusing more than MAX_PROMPT_BYTES."""
    if isinstance(source, str):
        with open(source, "rb") as f:
            return _read_limited(f)
    raw = source.read(MAX_PROMPT_BYTES + 1)
    if len(raw) > MAX_PROMPT_BYTES:
        raise ValueError(f"the prompt is over the {MAX_PROMPT_BYTES}-byte limit")
    return raw


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "'": "'", '"': '"',
            "a": "\a", "b": "\b", "f": "\f", "v": "\v"}
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.?)", re.S)


def unescape(text: str) -> str:
    """A --stop value with its backslash escapes (C / Python style) replaced."""
    def one(m: re.Match) -> str:
        code = m.group(1)
        if code[:1] in ("x", "u", "U") and len(code) > 1:
            value = int(code[1:], 16)
            if value > 0x10FFFF:
                raise ValueError(f"--stop {text!r}: \\{code} is not a Unicode character")
            return chr(value)
        if code in _ESCAPES:
            return _ESCAPES[code]
        shown = f"\\{code}" if code else "a trailing \\"
        raise ValueError(f"--stop {text!r}: unknown escape '{shown}' (write \\\\ for a backslash)")

    return _ESCAPE.sub(one, text)


def _penalty_args(parser) -> None:
    parser.add_argument("--presence-penalty", dest="presence_penalty", type=float, default=0.0,
                        help="OpenAI's: lower each generated token's logit by this once; in [-2, 2], 0 = off (default)")
    parser.add_argument("--frequency-penalty", dest="frequency_penalty", type=float, default=0.0,
                        help="OpenAI's: lower each generated token's logit by this per time generated; in [-2, 2], "
                             "0 = off (default)")


def _weight_types() -> tuple[str, ...]:
    from .convert import WEIGHT_TYPES

    return WEIGHT_TYPES


def _convert_parser(sub) -> None:
    c = sub.add_parser("convert", help="write a checkpoint with converted weights",
                       description="Write MODEL with its big matrices in DTYPE to OUT_DIR; it then loads by "
                                   "mmap with no conversion.")
    c.add_argument("model", metavar="MODEL", help="local directory or Hugging Face hub id")
    c.add_argument("out_dir", metavar="OUT_DIR", help="new (or empty) output directory")
    c.add_argument("--dtype", choices=_weight_types(), required=True, help="weight type of the big matrices")
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
    s.add_argument("--dtype", choices=_weight_types(), default=None, help="type of the big matrices (default: as stored)")
    s.add_argument("--threads", type=int, default=None, help="worker threads (default: physical cores)")
    s.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    s.add_argument("--max-batch", type=int, default=16, help="sequences decoded together, 1 to 32 (default 16)")
    s.add_argument("--cache-mb", type=float, default=512, help="prefix-state cache size in MB; 0 = off (default 512)")
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
    _penalty_args(c)
    c.add_argument("--seed", "-s", type=int, default=None, help="random seed (default: a random one)")
    c.add_argument("--threads", type=int, default=None, help="worker threads (default: physical cores)")
    c.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    c.add_argument("--dtype", choices=_weight_types(), default=None, help="type of the big matrices")
    c.add_argument("--load-state", metavar="FILE", default=None, help="continue a conversation saved with /save")


def _run_chat(args: argparse.Namespace) -> int:
    from .serve.chat import run

    return run(args)


COMMANDS = {"generate": (_generate_parser, _run_generate), "info": (_info_parser, _run_info),
            "convert": (_convert_parser, _run_convert), "serve": (_serve_parser, _run_serve),
            "chat": (_chat_parser, _run_chat)}


def main(argv: Sequence[str] | None = None) -> int:
    # A stream closed at start (`2>&-`) is None in Python: every write to it failed,
    # and print(file=None) writes to stdout. Discard what goes there instead; the
    # descriptor /dev/null takes is then not one the state file could get.
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))
    try:
        parser = _Parser(prog="mambart", description="Fast Mamba inference without PyTorch.")
        parser.add_argument("--version", action="version", version=f"mambart {__version__}")
        sub = parser.add_subparsers(dest="command", metavar="COMMAND")
        for make_parser, _ in COMMANDS.values():
            make_parser(sub)
        args, extra = parser.parse_known_args(argv)
        if extra:  # named by the command's own parser, so that the hint names its --help
            (sub.choices[args.command] if args.command else parser).error(
                f"unrecognized arguments: {' '.join(extra)}")
        if args.command is None:
            parser.print_help(sys.stderr)
            return 1
        return COMMANDS[args.command][1](args)
    except BrokenPipeError:  # the reader went away (`| head`): not an error
        return 0
    except KeyboardInterrupt:  # at any point, start-up included: no traceback
        print("", file=sys.stderr)
        return 130
    except MemoryError:
        print("mambart: error: out of memory", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, OSError, TypeError) as e:
        print(f"mambart: error: {one_line(str(e))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
