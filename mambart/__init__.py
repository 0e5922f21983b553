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
        from .cache import PromptCache
        from .model import Model, SamplingParams, load  # the class the runtime checks against

        globals().update(Model=Model, PromptCache=PromptCache, SamplingParams=SamplingParams, load=load)
        return globals()[name]
    raise AttributeError(f"module 'mambart' has no attribute {name!r}")
