"""mambart: fast Mamba inference on CPUs, without PyTorch.

    import mambart
    model = mambart.load("state-spaces/mamba-130m-hf")
    print(model.generate("Mamba is", max_new_tokens=32, temperature=0))
"""
__version__ = "0.1.0"

from .cache import PromptCache  # noqa: E402
from .model import Model, load  # noqa: E402
from .sampling import SamplingParams  # noqa: E402

__all__ = ["Model", "PromptCache", "SamplingParams", "load", "__version__"]
