"""anpr-edge: an edge ANPR daemon (frames -> plate detector -> attention OCR -> voting -> MQTT events)."""

__version__ = "0.1.0"
