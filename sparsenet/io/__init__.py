"""Reading and writing models (no pickle, atomic saves)."""

from .model_file import convert_model, load_model, read_manifest, save_model

__all__ = ["save_model", "load_model", "read_manifest", "convert_model"]
