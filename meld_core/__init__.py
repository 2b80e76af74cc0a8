"""MELD node core: signed, metered, queued access to model backends. Knows no screen."""

__version__ = "0.1.0"
