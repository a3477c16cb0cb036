"""An example unbacked plug-in package: a source, a rule and a renderer (see the README)."""

__version__ = "0.1.0"
