"""mambart: fast Mamba inference on CPUs, without PyTorch.

    import mambart
    model = mambart.load("state-spaces/mamba-130m-hf")
    print(model.generate("Mamba is", max_new_tokens=32, temperature=0))
"""
__version__ = "0.1.0"

__all__ = ["Model", "PromptCache", "SamplingParams", "load", "__version__"]


def __getattr__(name: str):
    # The runtime (the C++ core, numpy, tokenizers) is imported on first use,
    # so that `mambart --help` is quick and a Ctrl-C while it loads reaches
    # the command's handler rather than an import statement. All the names
    # are bound at once, as an eager import would bind them.
    if name in ("Model", "PromptCache", "SamplingParams", "load"):
        _check_core()
        from .cache import PromptCache
        from .model import Model, SamplingParams, load  # the class the runtime checks against

        globals().update(Model=Model, PromptCache=PromptCache, SamplingParams=SamplingParams, load=load)
        return globals()[name]
    raise AttributeError(f"module 'mambart' has no attribute {name!r}")


def _check_core() -> None:
    """A clone's unbuilt mambart/ shadows the installed package when Python runs
    from the clone's root (sys.path starts with the current directory): say so."""
    try:
        from . import _core  # noqa: F401
    except ImportError as e:
        import os

        here = os.path.dirname(os.path.abspath(__file__))
        if not os.path.isfile(os.path.join(here, os.pardir, "pyproject.toml")):
            raise
        raise ImportError(f"mambart's C++ core is not built in {here}, a source tree, which Python imported "
                          f"instead of the installed mambart because it runs from {os.path.dirname(here)}: run from "
                          "another directory, or build the core in place (README, Development)") from e
