"""emorec: facial emotion recognition, from mixed datasets to a served model."""
__version__ = "0.1.0"
