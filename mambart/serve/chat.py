"""`mambart chat`: an interactive terminal chat on the model's chat template.

One conversation, one Decoder: the state after each reply is kept, and the
next turn prefills only the tokens its rendering adds after what the state
already holds (the new message and the template's markers). A Mamba's state
is the whole context, so a long conversation never gets slower to answer.
When the rendering stops extending the state (a template that rewrites
earlier turns), the turn is prefilled from scratch.

Commands: /reset, /save FILE, /load FILE (the saved-state format of
`Decoder.save_state`), /exit. Ctrl-C stops the current reply (or a long
prefill, at the next layer) and returns to the prompt; Ctrl-D exits.
"""
from __future__ import annotations

import sys

from ..sampling import SamplingParams
from .template import ChatTemplate, NoTemplate


class Chat:
    def __init__(self, model, template: ChatTemplate, params: SamplingParams, max_tokens: int,
                 system: str | None = None, out=sys.stdout, err=sys.stderr) -> None:
        self.model, self.template, self.params, self.max_tokens = model, template, params, max_tokens
        self.system = system
        self.out, self.err = out, err
        self.reset()

    def reset(self) -> None:
        self.decoder = self.model.decoder(1)
        self.messages: list[dict] = [{"role": "system", "content": self.system}] if self.system else []
        self.prefix_ids: list[int] = []  # tokens of a loaded state, before the messages
        self.prefilled = 0               # tokens the last turn prefilled
        self._fed_end_of_turn = False    # the last reply ended with the template's end-of-turn token
        self._replies = 0                # replies since the start: reply k draws with seed + k

    def load(self, path: str) -> None:
        decoder = self.model.load_state(path)
        if decoder.batch != 1:  # refused before it replaces the conversation's decoder
            raise ValueError(f"{path} holds {decoder.batch} sequences, a chat needs 1")
        self.decoder = decoder
        self.messages = []
        self.prefix_ids = self.decoder.history(0)
        self._replies = 0

    def save(self, path: str) -> None:
        self.decoder.save_state(path)

    def _new_tokens(self) -> list[int] | None:
        """The tokens this turn adds to the state: the template's text after
        the last reply (less the end-of-turn token already fed) and before the
        new reply. The conversation is kept as tokens, never re-encoded: the
        reply's tokens stay exactly as generated. None: start afresh."""
        if not self.messages or self.messages[-1]["role"] != "user":
            return None
        full = self.template.render(self.messages, add_generation_prompt=True)
        before = self.messages[:-1]
        if not before or before[-1]["role"] != "assistant":
            # the first turn (or the first after /load): everything rendered is new
            return self.model.tokenizer.encode(full) if self.decoder.history(0) == self.prefix_ids else None
        if self.decoder.history(0) == self.prefix_ids:
            return None  # the state holds none of the conversation (a prefill was interrupted): all of it again
        prev = self.template.render(before, add_generation_prompt=False)
        if not full.startswith(prev):
            return None  # the template rewrites earlier turns
        tail = self.template.after_reply
        if tail is None or not prev.endswith(before[-1]["content"] + tail):
            return None
        if self._fed_end_of_turn and self.template.end_of_turn_text and tail.startswith(self.template.end_of_turn_text):
            tail = tail[len(self.template.end_of_turn_text):]
        return self.model.tokenizer.encode(tail + full[len(prev):])

    def turn(self, user_text: str, progress=None, announce=None) -> str:
        """Adds a user message, streams the reply to `out`, returns it.
        KeyboardInterrupt stops it: the reply so far is kept (and the state
        holds exactly the tokens fed), so the conversation goes on."""
        self.messages.append({"role": "user", "content": user_text})
        try:
            new = self._new_tokens()
            fresh = not new
            if fresh:
                new = self.model.tokenizer.encode(self.template.render(self.messages, add_generation_prompt=True))
        except ValueError:
            # The template refuses the message, or the tokenizer cannot take it
            # (undecodable bytes from the terminal): without it, the
            # conversation and its state go on as they were.
            self.messages.pop()
            raise
        if fresh:
            self.decoder = self.model.decoder(1)
            self.prefix_ids = []
        self.prefilled = len(new)
        if announce is not None:
            announce(len(new))
        try:
            self.decoder.prefill([new], progress=progress)
        except KeyboardInterrupt:
            # The state covers part of the message: start the next turn afresh.
            self.messages.pop()
            self.decoder = self.model.decoder(1)
            self.prefix_ids = []
            raise
        # With --seed, each reply its own stream (the same one for every reply
        # drew the same numbers turn after turn), and a conversation repeats.
        sampler = self.params.make_sampler(self._replies)
        self._replies += 1
        detok = self.model.tokenizer.stream_decoder(skip_special_tokens=True)
        stop = self.template.stop_ids
        reply = ""
        self._fed_end_of_turn = False
        try:
            for _ in range(self.max_tokens):
                (token,) = self.decoder.sample_rows([sampler]).tolist()
                self.decoder.step([token])  # the end-of-turn token too: the next turn follows it
                if token in stop:
                    self._fed_end_of_turn = token == self.template.end_of_turn_id
                    break
                piece = detok.push(token)
                reply += piece
                self.out.write(piece)
                self.out.flush()
            piece = detok.flush()
            reply += piece
            self.out.write(piece)
        finally:
            self.messages.append({"role": "assistant", "content": reply})
            self.out.write("\n")
            self.out.flush()
        return reply


def run(args) -> int:
    """The `mambart chat` command."""
    import mambart

    params = SamplingParams(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                            repetition_penalty=args.repetition_penalty, presence_penalty=args.presence_penalty,
                            frequency_penalty=args.frequency_penalty, seed=args.seed)
    if args.max_tokens < 1:
        raise ValueError(f"--max-tokens must be >= 1, got {args.max_tokens}")
    model = mambart.load(args.model, device=args.device, threads=args.threads, dtype=args.dtype)
    try:
        template = ChatTemplate.for_model(model.path, model.tokenizer, args.chat_template)
    except NoTemplate as e:
        if args.model == "builtin":  # the default --model
            raise ValueError("the built-in model completes Python code and has no chat template: give --model a "
                             "chat model (or --chat-template FILE)") from None
        raise e from None
    chat = Chat(model, template, params, args.max_tokens, args.system)
    if args.load_state:
        chat.load(args.load_state)
    interactive = sys.stdin.isatty()
    print(f"mambart chat with {args.model}: /reset, /save FILE, /load FILE, /exit; Ctrl-C stops a reply",
          file=sys.stderr, flush=True)
    while True:
        try:
            line = input("> " if interactive else "")
        except EOFError:
            if interactive:
                print("", file=sys.stderr)  # Ctrl-D: the shell's prompt on a line of its own
            return 0
        except KeyboardInterrupt:
            print("", file=sys.stderr)
            continue
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            cmd, _, arg = line.partition(" ")
            arg = arg.strip()
            try:
                if cmd == "/exit":
                    return 0
                elif cmd == "/reset":
                    chat.reset()
                    print("(conversation reset)", file=sys.stderr, flush=True)
                elif cmd in ("/save", "/load"):
                    if not arg:
                        print(f"mambart: error: {cmd} needs a FILE", file=sys.stderr, flush=True)
                    elif cmd == "/save":
                        chat.save(arg)
                        print(f"(saved to {arg})", file=sys.stderr, flush=True)
                    else:
                        chat.load(arg)
                        print(f"(loaded {arg}: {len(chat.prefix_ids)} tokens)", file=sys.stderr, flush=True)
                else:
                    print(f"mambart: error: unknown command {cmd} (/reset, /save FILE, /load FILE, /exit)",
                          file=sys.stderr, flush=True)
            except (ValueError, OSError) as e:
                print(f"mambart: error: {e}", file=sys.stderr, flush=True)
            continue
        try:
            chat.turn(line, progress=_progress(sys.stderr), announce=_announce)
            print(f"(prefilled {chat.prefilled} tokens)", file=sys.stderr, flush=True)
        except KeyboardInterrupt:
            print("\n(stopped)", file=sys.stderr, flush=True)
        except ValueError as e:
            print(f"mambart: error: {e}", file=sys.stderr, flush=True)


def _progress(stream):
    """A prefill progress line on a terminal, nothing otherwise."""
    if not stream.isatty():
        return None

    def show(done: int, total: int) -> None:
        if total >= 2048:
            stream.write(f"\rprefill {done}/{total} tokens")
            if done == total:
                stream.write("\r\033[K")
            stream.flush()
    return show


def _announce(n: int) -> None:
    if n >= 4096:
        print(f"(prefilling {n} tokens; Ctrl-C stops)", file=sys.stderr, flush=True)
