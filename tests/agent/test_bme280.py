"""The real adafruit_bme280 driver against an emulated chip: values and failure modes."""

from __future__ import annotations

import pytest

from agent.sensors import open_sensor
from agent.sensors.bme280 import (
    BME280Sensor,
    I2CUnavailable,
    ReadFailed,
    SensorNotFound,
    WrongChip,
    classify_bus_error,
)
from tests.agent.bme280_emulator import (
    ADC_H,
    DATASHEET_ADC_P,
    DATASHEET_ADC_T,
    DATASHEET_CALIBRATION,
    EmulatedBME280,
    EmulatedI2CBus,
    bosch_humidity,
    bosch_pressure,
    bosch_temperature,
)


def sensor_on(bus: EmulatedI2CBus, **kw) -> BME280Sensor:
    return BME280Sensor(i2c_factory=lambda: bus, **kw)


def test_independent_formulas_reproduce_the_datasheet_example():
    t, t_fine = bosch_temperature(DATASHEET_ADC_T, DATASHEET_CALIBRATION)
    assert t == 2508  # 25.08 °C
    assert t_fine == 128422
    p = bosch_pressure(DATASHEET_ADC_P, t_fine, DATASHEET_CALIBRATION)
    assert p / 256 == pytest.approx(100653.27, abs=0.1)


def test_driver_compensates_like_the_datasheet():
    chip = EmulatedBME280()
    sensor = sensor_on(EmulatedI2CBus({0x77: chip}))
    reading = sensor.read()

    t, t_fine = bosch_temperature(DATASHEET_ADC_T, DATASHEET_CALIBRATION)
    p = bosch_pressure(DATASHEET_ADC_P, t_fine, DATASHEET_CALIBRATION) / 256 / 100
    h = bosch_humidity(ADC_H, t_fine, DATASHEET_CALIBRATION) / 1024
    assert reading.temperature == pytest.approx(t / 100, abs=0.011)
    assert reading.temperature == pytest.approx(25.08, abs=0.011)
    assert reading.pressure == pytest.approx(p, abs=0.011)
    assert reading.pressure == pytest.approx(1006.53, abs=0.011)
    assert reading.humidity == pytest.approx(h, abs=0.02)
    assert 0 < reading.humidity < 100
    assert sensor.describe() == "BME280 at I2C address 0x77"


def test_weather_monitoring_settings_and_forced_mode():
    chip = EmulatedBME280(measuring_polls=2)
    sensor = sensor_on(EmulatedI2CBus({0x77: chip}))
    sensor.read()
    assert chip.resets == 1
    forced = [v for v in chip.ctrl_meas_writes if v & 0x03 == 0x01]
    assert forced, "every reading must trigger a forced conversion"
    for value in forced:
        assert value >> 5 == 0x01  # osrs_t x1
        assert (value >> 2) & 0x07 == 0x01  # osrs_p x1
    assert chip.regs[0xF2] & 0x07 == 0x01  # osrs_h x1
    assert (chip.regs[0xF5] >> 2) & 0x07 == 0  # IIR filter off
    assert chip.regs[0xF4] & 0x03 == 0  # back to sleep between readings
    assert chip.conversions == 3  # forced mode: one conversion per property


def test_probes_0x77_then_0x76():
    bus = EmulatedI2CBus({0x76: EmulatedBME280()})
    sensor = sensor_on(bus)
    sensor.read()
    assert sensor.address == 0x76


def test_nothing_at_either_address():
    sensor = sensor_on(EmulatedI2CBus({}))
    with pytest.raises(SensorNotFound, match=r"0x77 or 0x76.*i2cdetect"):
        sensor.read()
    assert sensor.consecutive_failures == 1


def test_bmp280_clone_is_named():
    sensor = sensor_on(EmulatedI2CBus({0x76: EmulatedBME280(chip_id=0x58)}))
    with pytest.raises(WrongChip, match=r"BMP280 \(chip id 0x58\).*no humidity"):
        sensor.open()


def test_unknown_chip_is_not_called_a_bmp280():
    sensor = sensor_on(EmulatedI2CBus({0x77: EmulatedBME280(chip_id=0x61)}))
    with pytest.raises(WrongChip, match=r"not a BME280 \(chip id 0x61"):
        sensor.open()


def test_read_error_is_counted_and_sensor_reinitialised_after_repeated_failures():
    chip = EmulatedBME280(fail_data_reads=10**6)
    bus = EmulatedI2CBus({0x77: chip})
    sensor = sensor_on(bus, reinit_after=3)
    for attempt in range(1, 4):
        with pytest.raises(ReadFailed, match=r"Remote I/O error"):
            sensor.read()
        assert sensor.consecutive_failures == attempt
    assert not sensor.is_open  # dropped after 3 failures; the next read probes again
    chip.fail_data_reads = 0
    resets_before = chip.resets
    assert sensor.read().temperature == pytest.approx(25.08, abs=0.011)
    assert chip.resets == resets_before + 1  # re-initialised
    assert sensor.consecutive_failures == 0


def test_out_of_range_read_publishes_nothing():
    # A raw value of 0 for temperature: the driver computes something absurd (-142 °C).
    sensor = sensor_on(EmulatedI2CBus({0x77: EmulatedBME280(adc_t=0)}))
    with pytest.raises(ReadFailed, match="impossible value"):
        sensor.read()


@pytest.mark.parametrize(
    ("exc", "expect"),
    [
        (RuntimeError("I2C Bus #1 not found (check dtoverlay)"), "I2C is not enabled"),
        (NotImplementedError("Board not supported"), "not a Raspberry Pi"),
        (AttributeError("module 'board' has no attribute 'I2C'"), "not a Raspberry Pi"),
        (ImportError("No module named 'board'"), "pip install"),
        (PermissionError(13, "Permission denied"), "'i2c' group"),
    ],
)
def test_bus_failures_are_classified(exc, expect, monkeypatch):
    monkeypatch.setattr("agent.sensors.bme280.is_raspberry_pi", lambda: False)
    err = classify_bus_error(exc)
    assert isinstance(err, I2CUnavailable)
    assert expect in str(err)


def test_missing_dev_i2c_on_a_pi_says_enable_i2c(monkeypatch, tmp_path):
    monkeypatch.setattr("agent.sensors.bme280.is_raspberry_pi", lambda: True)
    err = classify_bus_error(OSError(2, "No such file"), device=tmp_path / "i2c-1")
    assert "I2C is not enabled" in str(err) and "raspi-config" in str(err)


def _no_bus():
    raise I2CUnavailable("I2C is not enabled")


def test_open_sensor_falls_back_to_virtual_on_a_laptop():
    sensor = open_sensor("dev1", i2c_factory=_no_bus, on_pi=lambda: False)
    assert sensor.kind == "virtual"


def test_open_sensor_does_not_fake_air_on_a_pi():
    sensor = open_sensor("dev1", i2c_factory=_no_bus, on_pi=lambda: True)
    assert sensor.kind == "bme280"
    with pytest.raises(I2CUnavailable):
        sensor.read()


def test_open_sensor_fallback_never_and_virtual():
    assert open_sensor("d", fallback="never", i2c_factory=_no_bus, on_pi=lambda: False).kind == (
        "bme280"
    )
    assert open_sensor("d", fallback="virtual", i2c_factory=_no_bus, on_pi=lambda: True).kind == (
        "virtual"
    )
    assert open_sensor("d", sensor="virtual").kind == "virtual"


def test_open_sensor_uses_real_chip_when_present():
    bus = EmulatedI2CBus({0x77: EmulatedBME280()})
    sensor = open_sensor("d", i2c_factory=lambda: bus, on_pi=lambda: False)
    assert sensor.kind == "bme280"
    assert sensor.read().pressure == pytest.approx(1006.53, abs=0.011)
