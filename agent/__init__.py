"""IoT Center edge agent: reads a BME280 (or a virtual one) and delivers every reading to InfluxDB.

This package never imports Flask or influxdb-client: a Pi installs only what the agent needs.
Its `contract` module is the one definition of what agent and server agree on.
"""

__version__ = "0.1.0"
