"""IoT Center server: a Flask app that registers devices and serves their configuration."""

__version__ = "0.1.0"
