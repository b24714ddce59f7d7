"""safeboard: self-hosted experiment tracking, secure by default."""

__version__ = "0.1.0"

__all__ = ["__version__"]
