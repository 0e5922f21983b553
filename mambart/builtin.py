"""The built-in model shipped inside the package: a small Mamba-1 for Python code.

Trained by tools/train_builtin.py on the Python standard library's source;
mambart/builtin/TRAINING.json records the corpus, the recipe and the losses.
"""
from pathlib import Path

BUILTIN_NAME = "builtin"
BUILTIN_DIR: Path = Path(__file__).with_name("builtin")
