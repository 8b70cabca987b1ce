"""AdaSPEC: selective knowledge distillation for speculative-decoding drafters."""

__version__ = "0.1.0"
