"""The irules version, written into every artifact header."""

__version__ = "0.1.0"
