"""mambart: fast Mamba inference on CPUs, without PyTorch."""
__version__ = "0.1.0"
