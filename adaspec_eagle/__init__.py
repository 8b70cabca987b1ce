"""EAGLE-style draft heads trained with AdaSPEC's selective loss, export and speed benchmark."""

__version__ = "0.1.0"
