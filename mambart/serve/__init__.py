"""`mambart serve`: an OpenAI-compatible HTTP server with continuous batching
and a prefix-state cache (the [serve] extra: starlette, uvicorn, jinja2,
prometheus_client).

    scheduler.py  one thread owns the model; requests join and leave each step
    ../cache.py   the prefix-state cache (also usable from the Python API)
    template.py   chat templates in a jinja2 sandbox
    schemas.py    OpenAI request bodies checked; OpenAI's error shape
    app.py        the Starlette app over the scheduler
    metrics.py    Prometheus metrics
"""
from __future__ import annotations

import sys

GRACE_SECONDS = 30.0


def build(model, *, model_name: str, max_batch: int = 16, cache_mb: float = 512,
          max_queue: int = 256, api_key: str | None = None, chat_template: str | None = None, limits=None):
    """The ASGI app and its scheduler for a loaded model."""
    from ..cache import PromptCache
    from .app import App, ServerConfig
    from .metrics import Metrics
    from .scheduler import Scheduler
    from .schemas import Limits
    from .template import ChatTemplate, NoTemplate

    try:
        template, template_error = ChatTemplate.for_model(model.path, model.tokenizer, chat_template), None
    except NoTemplate as e:
        template, template_error = None, str(e)
    cache = PromptCache(int(cache_mb * (1 << 20))) if cache_mb > 0 else None
    metrics = Metrics()
    scheduler = Scheduler(model, max_batch=max_batch, cache=cache, max_queue=max_queue, observer=metrics)
    metrics.attach(scheduler)
    app = App(model, scheduler, ServerConfig(model_name, api_key, limits or Limits()), template, template_error,
              metrics)
    return app, scheduler


def run(args) -> int:
    """The `mambart serve` command (argparse namespace from cli.py)."""
    try:
        import uvicorn
    except ImportError:
        raise ValueError("mambart serve needs the serve extra: pip install '.[serve]' in mambart's source tree "
                         "(starlette, uvicorn, jinja2, prometheus-client)") from None
    import os

    import mambart

    from .schemas import Limits

    # The tokenizer runs beside the model (app.py tokenizes in a thread): its
    # own thread pool would only take cores from the model's threads.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    if args.chat_template is not None:
        with open(args.chat_template, encoding="utf-8"):
            pass  # a missing file is a clear error before the model loads
    model = mambart.load(args.model, device=args.device, threads=args.threads, dtype=args.dtype)
    app, scheduler = build(model, model_name=args.model, max_batch=args.max_batch, cache_mb=args.cache_mb,
                           max_queue=args.max_queue, api_key=args.api_key,
                           chat_template=args.chat_template,
                           limits=Limits(max_prompt_tokens=args.max_prompt_tokens, max_tokens=args.max_tokens))
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=GRACE_SECONDS, lifespan="off")
    server = uvicorn.Server(config)
    print(f"mambart: serving {args.model} on http://{args.host}:{args.port} (max batch {args.max_batch}, "
          f"cache {args.cache_mb:g} MB)", file=sys.stderr, flush=True)
    # uvicorn handles SIGINT/SIGTERM while it runs: it stops accepting, lets
    # open requests finish (up to GRACE_SECONDS), then returns and raises the
    # signal again under the handlers it found. For SIGTERM that is this
    # no-op, so a drained server exits 0; SIGINT ends as KeyboardInterrupt (130).
    import signal

    signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        server.run()
    finally:
        scheduler.close(grace=0)
    print("mambart: server stopped", file=sys.stderr, flush=True)
    return 0
