"""``[device]`` tables (and the ``--device`` flag): the microcontroller a TFLite artifact must fit, as a named
profile or custom numbers.

A profile's RAM and flash are the chip's on-board SRAM and flash as its maker states them; what the board's
firmware (an RTOS, a radio stack, the application) takes of them comes off first, so give custom numbers
(``ram_kb``, ``flash_kb``, over a profile or alone) for what is left to the model. TFLite Micro's own code and
objects are counted as stated overheads: ``runtime_flash_kb`` (default 64 KiB: the interpreter core, which
TFLite Micro's documentation puts at 16 KiB on a Cortex-M3, plus an allowance for the kernels a model
registers) and ``runtime_ram_kb`` (default 4 KiB: the interpreter and op-resolver objects, which live outside
the tensor arena). Both can be set.

    [device]
    profile = "nano33ble"        # or: name = "my-board", ram_kb = 192, flash_kb = 768
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from dnnkit.config.tables import TableReader
from dnnkit.errors import SpecError

RUNTIME_FLASH_KB = 64.0
RUNTIME_RAM_KB = 4.0


@dataclass(frozen=True)
class Device:
    """A microcontroller budget: the RAM and flash a model (with TFLite Micro) may use."""

    name: str
    ram_kb: float
    flash_kb: float
    runtime_flash_kb: float = RUNTIME_FLASH_KB
    runtime_ram_kb: float = RUNTIME_RAM_KB
    description: str = ""


PROFILES: dict[str, Device] = {d.name: d for d in (
    Device("cortex-m4", 256, 1024, description="a Cortex-M4F microcontroller with 256 KiB SRAM and 1 MiB flash "
                                               "(e.g. Nordic nRF52840)"),
    Device("nano33ble", 256, 1024, description="Arduino Nano 33 BLE (Sense): nRF52840, Cortex-M4F at 64 MHz, "
                                               "256 KiB SRAM, 1 MiB flash"),
    Device("cortex-m7", 320, 1024, description="STM32F746G-DISCO: Cortex-M7 at 216 MHz, 320 KiB SRAM, 1 MiB "
                                               "flash"),
    Device("esp32-s3", 512, 8192, description="ESP32-S3-DevKitC-1-N8: Xtensa LX7 at 240 MHz, 512 KiB internal "
                                              "SRAM, 8 MiB flash (no PSRAM)"),
    Device("rp2040", 264, 2048, description="Raspberry Pi Pico: RP2040, Cortex-M0+ at 133 MHz, 264 KiB SRAM, "
                                            "2 MiB flash"),
)}

KEYS = ("profile", "name", "ram_kb", "flash_kb", "runtime_flash_kb", "runtime_ram_kb")


def read_device(t: TableReader) -> Device:
    """A ``[device]`` table: ``profile`` (one of :data:`PROFILES`) and/or custom ``name``, ``ram_kb``,
    ``flash_kb``, ``runtime_flash_kb``, ``runtime_ram_kb`` (custom numbers override the profile's).

    Raises:
        SpecError: unknown keys, an unknown profile, a size that is not a positive number, or neither a
            profile nor both sizes; naming the field.
    """
    base = PROFILES[t.choice("profile", tuple(PROFILES))] if t.has("profile") else None
    if base is None and not (t.has("ram_kb") and t.has("flash_kb")):
        missing = "ram_kb" if not t.has("ram_kb") else "flash_kb"
        t.fail(missing, "nothing", f"a number of KiB (or a profile: one of {', '.join(PROFILES)})")
    sizes = {k: t.number(k, getattr(base, k) if base else None, low=0.0, low_open=True)
             for k in ("ram_kb", "flash_kb")}
    overheads = {k: t.number(k, getattr(base, k) if base else default, low=0.0)
                 for k, default in (("runtime_flash_kb", RUNTIME_FLASH_KB), ("runtime_ram_kb", RUNTIME_RAM_KB))}
    name = t.string("name", base.name if base else "custom")
    t.done(KEYS)
    if base is None:
        return Device(name=name, **sizes, **overheads, description="custom numbers")
    custom = any(t.has(k) for k in ("ram_kb", "flash_kb", "runtime_flash_kb", "runtime_ram_kb"))
    return replace(base, name=name, **sizes, **overheads,
                   description=base.description + (" (with custom numbers)" if custom else ""))


def device_from(value: str | dict[str, Any] | Device | None, origin: str = "--device") -> Device | None:
    """The ``--device`` flag's value: a profile name, or ``key=value`` pairs separated by commas
    (``ram_kb=192,flash_kb=768`` or ``profile=cortex-m4,ram_kb=200``); a dict is read as a ``[device]`` table.

    Raises:
        SpecError: as :func:`read_device`, or a pair without ``=``.
    """
    if value is None or isinstance(value, Device):
        return value
    if isinstance(value, str):
        text = value.strip()
        if "=" not in text:
            if text not in PROFILES:
                raise SpecError(f"{origin}: device.profile: expected one of {', '.join(PROFILES)} "
                                f"(or key=value pairs such as ram_kb=192,flash_kb=768), got {value!r}")
            return PROFILES[text]
        table: dict[str, Any] = {}
        for pair in text.split(","):
            key, sep, raw = pair.partition("=")
            if not sep or not key.strip():
                raise SpecError(f"{origin}: device: expected key=value pairs separated by commas, got {pair.strip()!r}")
            key, raw = key.strip(), raw.strip()
            table[key] = raw if key in ("profile", "name") else _number(raw)
        value = table
    return read_device(TableReader(value, "device", origin))


def _number(raw: str) -> Any:
    try:
        return float(raw)
    except ValueError:
        return raw  # the reader names it as not a number
