"""The package's version, at the bottom of the layers: provenance records it with every run."""

__version__ = "0.1.0"
