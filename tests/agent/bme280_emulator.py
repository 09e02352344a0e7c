"""An I2C bus with a BME280 (or a BMP280, or nothing) on it, at register level.

Speaks the busio.I2C interface that adafruit_bus_device.I2CDevice uses (try_lock, unlock,
writeto, readfrom_into, writeto_then_readfrom), so the real Adafruit driver runs against it.
A write's first byte sets the register pointer; the remaining bytes are written from there;
reads continue from the pointer with auto-increment, as on the chip.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

# Calibration from the Bosch BMP280 datasheet's compensation example (section 3.12), plus
# humidity trimming values typical of a real BME280.
DATASHEET_CALIBRATION = {
    "T": (27504, 26435, -1000),
    "P": (36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000),
    "H": (75, 362, 0, 313, 0, 30),
}
DATASHEET_ADC_T = 519888  # -> 25.08 °C in the datasheet example
DATASHEET_ADC_P = 415148  # -> 100653.27 Pa in the datasheet example
ADC_H = 30000


def calibration_registers(cal: dict) -> dict[int, int]:
    regs: dict[int, int] = {}
    block = struct.pack("<HhhHhhhhhhhh", *cal["T"], *cal["P"])
    for i, b in enumerate(block):
        regs[0x88 + i] = b
    h1, h2, h3, h4, h5, h6 = cal["H"]
    regs[0xA1] = h1
    e1, e2 = struct.pack("<h", h2)
    regs[0xE1], regs[0xE2] = e1, e2
    regs[0xE3] = h3
    regs[0xE4] = (h4 >> 4) & 0xFF
    regs[0xE5] = ((h5 & 0x0F) << 4) | (h4 & 0x0F)
    regs[0xE6] = (h5 >> 4) & 0xFF
    regs[0xE7] = h6 & 0xFF
    return regs


@dataclass
class EmulatedBME280:
    chip_id: int = 0x60
    calibration: dict = field(default_factory=lambda: dict(DATASHEET_CALIBRATION))
    adc_t: int = DATASHEET_ADC_T
    adc_p: int = DATASHEET_ADC_P
    adc_h: int = ADC_H
    fail_data_reads: int = 0  # raise OSError on this many reads of the data registers
    measuring_polls: int = 1  # status reports "measuring" this many times per conversion
    regs: dict[int, int] = field(default_factory=dict)
    ctrl_meas_writes: list[int] = field(default_factory=list)
    conversions: int = 0
    resets: int = 0
    _pointer: int = 0
    _busy: int = 0

    def __post_init__(self) -> None:
        self.regs.update(calibration_registers(self.calibration))
        self.regs[0xD0] = self.chip_id
        self.regs.update({0xF2: 0, 0xF3: 0, 0xF4: 0, 0xF5: 0})
        self._load_data()

    def _load_data(self) -> None:
        p, t = self.adc_p << 4, self.adc_t << 4
        self.regs.update(
            {0xF7: p >> 16, 0xF8: (p >> 8) & 0xFF, 0xF9: p & 0xFF,
             0xFA: t >> 16, 0xFB: (t >> 8) & 0xFF, 0xFC: t & 0xFF,
             0xFD: self.adc_h >> 8, 0xFE: self.adc_h & 0xFF}
        )  # fmt: skip

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._pointer = data[0]
        for offset, value in enumerate(data[1:]):
            self._store(self._pointer + offset, value)

    def _store(self, reg: int, value: int) -> None:
        if reg == 0xE0:
            if value == 0xB6:
                self.resets += 1
                self.regs.update({0xF2: 0, 0xF4: 0, 0xF5: 0})
            return
        self.regs[reg] = value
        if reg == 0xF4:
            self.ctrl_meas_writes.append(value)
            if value & 0x03 in (0x01, 0x02):  # forced mode: one conversion, then sleep
                self.conversions += 1
                self._busy = self.measuring_polls
                self._load_data()
                self.regs[0xF4] = value & ~0x03

    def read(self, length: int) -> bytes:
        out = bytearray()
        for i in range(length):
            reg = self._pointer + i
            if 0xF7 <= reg <= 0xFE and self.fail_data_reads:
                self.fail_data_reads -= 1
                raise OSError(121, "Remote I/O error")
            if reg == 0xF3:
                out.append(0x08 if self._busy else 0x00)
                self._busy = max(0, self._busy - 1)
            else:
                out.append(self.regs.get(reg, 0) & 0xFF)
        self._pointer += length
        return bytes(out)


class EmulatedI2CBus:
    """busio.I2C look-alike holding chips by 7-bit address."""

    def __init__(self, devices: dict[int, EmulatedBME280] | None = None) -> None:
        self.devices = devices or {}
        self.locked = False
        self.lock_count = 0

    def try_lock(self) -> bool:
        if self.locked:
            return False
        self.locked = True
        self.lock_count += 1
        return True

    def unlock(self) -> None:
        assert self.locked, "unlock without lock"
        self.locked = False

    def _device(self, address: int) -> EmulatedBME280:
        assert self.locked, "bus used without holding the lock"
        if address not in self.devices:
            raise OSError(121, "Remote I/O error")  # no ACK: what Linux i2c-dev reports
        return self.devices[address]

    def writeto(self, address: int, buffer, *, start: int = 0, end: int | None = None) -> None:
        self._device(address).write(bytes(buffer[start:end]))

    def readfrom_into(self, address: int, buffer, *, start: int = 0, end: int | None = None):
        end = len(buffer) if end is None else end
        buffer[start:end] = self._device(address).read(end - start)

    def writeto_then_readfrom(
        self, address, out_buffer, in_buffer, *, out_start=0, out_end=None, in_start=0,
        in_end=None,
    ) -> None:  # fmt: skip
        self.writeto(address, out_buffer, start=out_start, end=out_end)
        self.readfrom_into(address, in_buffer, start=in_start, end=in_end)

    def deinit(self) -> None:
        pass


# --- Bosch datasheet compensation, integer versions (BME280 datasheet section 4.2.3) -------


def _s32(x: int) -> int:
    return (x + 2**31) % 2**32 - 2**31


def _cdiv(n: int, d: int) -> int:
    """C integer division: truncates toward zero."""
    q = abs(n) // abs(d)
    return q if (n >= 0) == (d >= 0) else -q


def bosch_temperature(adc_t: int, cal: dict) -> tuple[int, int]:
    """(T in 0.01 °C, t_fine), BME280_compensate_T_int32."""
    t1, t2, t3 = cal["T"]
    var1 = (((adc_t >> 3) - (t1 << 1)) * t2) >> 11
    var2 = (((((adc_t >> 4) - t1) * ((adc_t >> 4) - t1)) >> 12) * t3) >> 14
    t_fine = var1 + var2
    return (t_fine * 5 + 128) >> 8, t_fine


def bosch_pressure(adc_p: int, t_fine: int, cal: dict) -> int:
    """Pressure in Pa as Q24.8 (divide by 256), BME280_compensate_P_int64."""
    p1, p2, p3, p4, p5, p6, p7, p8, p9 = cal["P"]
    var1 = t_fine - 128000
    var2 = var1 * var1 * p6
    var2 = var2 + ((var1 * p5) << 17)
    var2 = var2 + (p4 << 35)
    var1 = ((var1 * var1 * p3) >> 8) + ((var1 * p2) << 12)
    var1 = (((1 << 47) + var1) * p1) >> 33
    if var1 == 0:
        return 0
    p = 1048576 - adc_p
    p = _cdiv(((p << 31) - var2) * 3125, var1)
    var1 = (p9 * (p >> 13) * (p >> 13)) >> 25
    var2 = (p8 * p) >> 19
    return ((p + var1 + var2) >> 8) + (p7 << 4)


def bosch_humidity(adc_h: int, t_fine: int, cal: dict) -> int:
    """Humidity in %RH as Q22.10 (divide by 1024), bme280_compensate_H_int32."""
    h1, h2, h3, h4, h5, h6 = cal["H"]
    v = t_fine - 76800
    v = _s32(
        ((((adc_h << 14) - (h4 << 20) - (h5 * v)) + 16384) >> 15)
        * (((((((v * h6) >> 10) * (((v * h3) >> 11) + 32768)) >> 10) + 2097152) * h2 + 8192)
           >> 14)
    )  # fmt: skip
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4)
    v = max(0, min(v, 419430400))
    return v >> 12
