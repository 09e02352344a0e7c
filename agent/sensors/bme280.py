"""A real BME280 over I2C through Adafruit's driver, with failures named for what they are.

Hardware libraries (`board`, `adafruit_bme280`) are imported only when a sensor is opened, so
the agent installs and runs on a laptop. Settings suit weather monitoring (Bosch datasheet
section 3.5.1): forced mode, one conversion per reading, oversampling x1 for temperature,
pressure and humidity, IIR filter off. In forced mode each property read triggers its own
conversion, so one reading costs three conversions of about 8 ms each.

A read that fails or gives values outside the sensor's range publishes nothing; after
`reinit_after` failures in a row the driver is dropped and the sensor probed again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from agent.sensors.reading import OutOfRange, Reading

log = logging.getLogger(__name__)

DEFAULT_ADDRESSES = (0x77, 0x76)
I2C_DEVICE = Path("/dev/i2c-1")
BMP280_CHIP_IDS = {0x56, 0x57, 0x58}
ENABLE_I2C_HINT = (
    "enable I2C with `sudo raspi-config nonint do_i2c 0` (or dtparam=i2c_arm=on in "
    "/boot/firmware/config.txt) and reboot"
)
WIRING_HINT = (
    "check the wiring (VIN to 3.3V, GND, SDA to GPIO2/pin 3, SCL to GPIO3/pin 5) "
    "and look with `i2cdetect -y 1`"
)


class SensorError(Exception):
    """The sensor could not be opened or read; `kind` names the failure for status output."""

    kind = "sensor_error"


class I2CUnavailable(SensorError):
    """No usable I2C bus: I2C disabled, not a Raspberry Pi, or Blinka missing."""

    kind = "i2c_unavailable"


class SensorNotFound(SensorError):
    """Nothing answers at any probed address."""

    kind = "sensor_not_found"


class WrongChip(SensorError):
    """Something answers but it is not a BME280 (usually a BMP280 sold as one)."""

    kind = "wrong_chip"


class ReadFailed(SensorError):
    """The sensor was there but a read failed or gave impossible values."""

    kind = "read_failed"


def is_raspberry_pi(model_path: Path = Path("/proc/device-tree/model")) -> bool:
    try:
        return "raspberry pi" in model_path.read_text(errors="replace").lower()
    except OSError:
        return False


def classify_bus_error(exc: BaseException, device: Path = I2C_DEVICE) -> I2CUnavailable:
    """Turn whatever `import board; board.I2C()` raised into a message a person can act on."""
    text = str(exc)
    if isinstance(exc, RuntimeError) and "I2C" in text and "not found" in text:
        return I2CUnavailable(f"I2C is not enabled ({text.strip()}): {ENABLE_I2C_HINT}")
    if is_raspberry_pi() and not device.exists():
        return I2CUnavailable(f"I2C is not enabled ({device} does not exist): {ENABLE_I2C_HINT}")
    if isinstance(exc, ImportError):
        return I2CUnavailable(
            f"the hardware libraries are not installed ({text}): pip install 'iot-center[pi]'"
        )
    if isinstance(exc, (NotImplementedError, AttributeError)):
        return I2CUnavailable(
            "this machine has no I2C bus that Adafruit Blinka supports (not a Raspberry Pi?): "
            f"{type(exc).__name__}: {text}"
        )
    if isinstance(exc, (PermissionError, OSError)):
        return I2CUnavailable(
            f"cannot open the I2C bus ({exc}): is the agent's user in the 'i2c' group?"
        )
    return I2CUnavailable(f"cannot open the I2C bus: {type(exc).__name__}: {text}")


def board_i2c() -> object:
    """The Pi's I2C bus through Blinka; every failure becomes I2CUnavailable."""
    try:
        import board

        return board.I2C()
    except Exception as exc:  # board raises many types depending on the platform
        raise classify_bus_error(exc) from exc


def _driver():
    from adafruit_bme280 import basic

    return basic


class BME280Sensor:
    """The agent-facing sensor interface (kind, describe, read, close) over the real chip."""

    kind = "bme280"

    def __init__(
        self,
        addresses: Sequence[int] = DEFAULT_ADDRESSES,
        i2c_factory: Callable[[], object] = board_i2c,
        reinit_after: int = 3,
    ) -> None:
        self.addresses = tuple(addresses)
        self._i2c_factory = i2c_factory
        self.reinit_after = reinit_after
        self._dev = None
        self._i2c: object | None = None
        self.address: int | None = None
        self.consecutive_failures = 0
        self.last_error: SensorError | None = None

    def describe(self) -> str:
        if self.address is None:
            return "BME280 (not found yet)"
        return f"BME280 at I2C address {self.address:#04x}"

    @property
    def is_open(self) -> bool:
        return self._dev is not None

    def open(self) -> None:
        """Probe each address in turn and configure the first BME280 found."""
        if self._i2c is None:
            self._i2c = self._i2c_factory()
        basic = _driver()
        wrong: WrongChip | None = None
        for address in self.addresses:
            try:
                dev = basic.Adafruit_BME280_I2C(self._i2c, address=address)
            except ValueError as exc:
                if "No I2C device" in str(exc):
                    continue
                raise ReadFailed(f"probing I2C address {address:#04x}: {exc}") from exc
            except RuntimeError as exc:
                wrong = _wrong_chip(address, exc)
                continue
            except OSError as exc:
                raise ReadFailed(
                    f"I2C error while probing address {address:#04x}: {exc}; {WIRING_HINT}"
                ) from exc
            _configure(dev, basic)
            self._dev, self.address = dev, address
            log.info("found a BME280 at I2C address %#04x", address)
            return
        if wrong is not None:
            raise wrong
        shown = " or ".join(f"{a:#04x}" for a in self.addresses)
        raise SensorNotFound(f"no device answers at I2C address {shown}: {WIRING_HINT}")

    def read(self) -> Reading:
        """One reading; raise a SensorError (counted by the caller) instead of a bad value."""
        try:
            if self._dev is None:
                self.open()
            dev = self._dev
            try:
                reading = Reading(
                    temperature=round(float(dev.temperature), 2),
                    humidity=round(float(dev.humidity), 2),
                    pressure=round(float(dev.pressure), 2),
                ).check()
            except OSError as exc:
                raise ReadFailed(
                    f"reading the BME280 at {self.address:#04x} failed: {exc}; {WIRING_HINT}"
                ) from exc
            except OutOfRange as exc:
                raise ReadFailed(f"the BME280 gave an impossible value ({exc})") from exc
            except ArithmeticError as exc:
                raise ReadFailed(f"the BME280's calibration data is unusable ({exc})") from exc
        except SensorError as exc:
            self._failed(exc)
            raise
        self.consecutive_failures = 0
        self.last_error = None
        return reading

    def _failed(self, exc: SensorError) -> None:
        self.consecutive_failures += 1
        self.last_error = exc
        if self._dev is not None and self.consecutive_failures >= self.reinit_after:
            log.warning(
                "%d BME280 reads failed in a row; re-initialising the sensor",
                self.consecutive_failures,
            )
            self._dev = None
        if isinstance(exc, I2CUnavailable):
            self._i2c = None  # maybe I2C gets enabled; ask Blinka again next time

    def close(self) -> None:
        self._dev = None
        deinit = getattr(self._i2c, "deinit", None)
        if callable(deinit):
            try:
                deinit()
            except Exception as exc:  # closing must not raise
                log.debug("I2C deinit failed: %s", exc)
        self._i2c = None


def _wrong_chip(address: int, exc: RuntimeError) -> WrongChip:
    text = str(exc)
    chip = None
    if "Chip ID" in text:
        try:
            chip = int(text.rsplit("Chip ID", 1)[1].strip().split()[0], 0)
        except (ValueError, IndexError):
            chip = None
    if chip in BMP280_CHIP_IDS:
        return WrongChip(
            f"the chip at I2C address {address:#04x} is a BMP280 (chip id {chip:#04x}): it "
            "measures temperature and pressure but no humidity, and is often sold as a BME280; "
            "fit a real BME280 (chip id 0x60)"
        )
    shown = f"chip id {chip:#04x}" if chip is not None else text
    return WrongChip(
        f"the device at I2C address {address:#04x} is not a BME280 ({shown}; expected 0x60)"
    )


def _configure(dev, basic) -> None:
    """Weather monitoring: x1 oversampling everywhere, filter off, sleep between readings."""
    dev.overscan_humidity = basic.OVERSCAN_X1
    dev.overscan_temperature = basic.OVERSCAN_X1
    dev.overscan_pressure = basic.OVERSCAN_X1
    dev._iir_filter = basic.IIR_FILTER_DISABLE  # basic driver has no public setter
    dev.mode = basic.MODE_SLEEP  # writes ctrl_hum and ctrl_meas; reads force a conversion
    dev._write_config()
