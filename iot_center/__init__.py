"""IoT Center server: a Flask app that registers devices and serves their configuration.

`iot_center:create_app()` is the app factory (gunicorn). It is imported lazily so that
`iot_center.local_influxdb` works before the server's dependencies are installed.
"""

from typing import Any

__version__ = "0.1.0"


def create_app(*args: Any, **kwargs: Any) -> Any:
    from iot_center.app import create_app as _create_app

    return _create_app(*args, **kwargs)
