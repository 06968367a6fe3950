"""A faithful local emulator of the Klaviyo REST API, revisions 2023-10-15 and 2026-07-15.

The `revision` header picks the revision (see `revisions.py`); each is served from the
tables generated from its own spec (`specs/`, `gen_spec_tables.py`).

Typical use::

    from klaviyo_emulator import Emulator, EmulatorConfig
    with Emulator(EmulatorConfig(seed=42, events=20_000)) as emu:
        ...  # point a client at emu.base_url with emu.api_key

Or from a shell: `python -m klaviyo_emulator --port 8765` (see `--help`).
"""

from klaviyo_emulator.config import EmulatorConfig
from klaviyo_emulator.emulator import Emulator
from klaviyo_emulator.server import LoggedRequest

__all__ = ["Emulator", "EmulatorConfig", "LoggedRequest"]
