"""The command's progress display for logs (`--progress log`, or `auto` off a terminal).

dlt's `LogCollector` (1.31) makes a poor log: once a second it
prints every counter of the step, one line each (a demo run printed 292 lines); a counter's
rate is its count over the time since *its* first update, so a table whose first batch comes
in one piece shows `Rate: 340656128.00/s`; its `Resources: 0/14` counts dlt resources, not the
18 tables they fill; its CPU figure is always 0 (it measures a fresh `psutil.Process` each
time) and its memory percentage is the whole machine's. `ProgressLog` keeps dlt's counting
(the `update` calls of extract, normalize and load) and writes true figures: one line per
step every `log_period` seconds while the step runs, and when it ends one line for the step
and one per table, with rates over the step's own elapsed time.
"""

import sys
from typing import Any, TextIO

from dlt.common.runtime.collector import LogCollector

try:
    import psutil
except ImportError:  # it is in requirements.txt; without it the lines lack memory and CPU
    psutil = None

# dlt's counters of the step itself (extract: resources, normalize: files, load: jobs, with
# a "Failed" sub-counter); every other counter is a table's rows.
STEP_COUNTERS = ("Resources", "Files", "Jobs")
# Seconds between the lines of a running step: a long backfill logs 6 lines a minute.
LOG_PERIOD_S = 10.0


class ProgressLog(LogCollector):
    """dlt progress collector writing a few true lines per step to a text stream.

    Args:
        log_period: Seconds between the lines of a running step.
        stream: Where to write; None = the current `sys.stdout` at each line.
    """

    def __init__(self, log_period: float = LOG_PERIOD_S, stream: TextIO | None = None) -> None:
        # dlt's own system stats are off (they would warn without psutil and are misleading):
        # this class measures the process itself.
        super().__init__(log_period=log_period, logger=stream or "stdout", dump_system_stats=False)
        self._process = psutil.Process() if psutil else None
        self._step_start = 0.0
        self._failed = False

    def _start(self, step: str) -> None:
        super()._start(step)
        self._step_start = self._clock()
        self.last_log_time = self._step_start  # the first line comes after one period, not at once
        if self._process:
            self._process.cpu_percent()  # starts the CPU measurement of the first period

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        self._failed = exc_type is not None  # the closing line says "failed after", not "done in"
        super().__exit__(exc_type, exc_val, exc_tb)

    def on_log(self) -> None:
        self._write([self._step_line()])

    def _stop(self) -> None:
        lines = [self._step_line("failed after " if self._failed else "done in ")]
        lines += [f"{self.step}: {name} {_rows(count)}" for name, count in sorted(self._tables().items())]
        self._write(lines)
        self.counters = None  # type: ignore[assignment]
        self.counter_info = None  # type: ignore[assignment]
        self.messages = None  # type: ignore[assignment]
        self.last_log_time = None  # type: ignore[assignment]

    def _tables(self) -> dict[str, int]:
        """Rows counted per table in this step."""
        return {
            key: count for key, count in self.counters.items()
            if self.counter_info[key].description.split(" ")[0] not in STEP_COUNTERS
        }

    def _step_line(self, ending: str = "") -> str:
        """`<step>: [ending]12.3 s | Resources 5/14 | 22,413 rows, 1,822/s | RSS 301 MB, CPU 87%`."""
        elapsed = self._clock() - self._step_start
        parts = [f"{ending}{elapsed:.1f} s"]
        for key, count in self.counters.items():
            info = self.counter_info[key]
            if info.description.split(" ")[0] in STEP_COUNTERS:
                message = f" [{self.messages[key]}]" if self.messages.get(key) else ""
                parts.append(f"{info.description} {count}{f'/{info.total}' if info.total else ''}{message}")
        rows = sum(self._tables().values())
        if rows:
            parts.append(f"{_rows(rows)}, {rows / elapsed if elapsed > 0 else 0:,.0f}/s")
        if self._process:  # CPU since the previous line, over all threads (100% = one core busy)
            parts.append(f"RSS {self._process.memory_info().rss / 2**20:,.0f} MB, CPU {self._process.cpu_percent():.0f}%")
        return f"{self.step}: " + " | ".join(parts)

    def _write(self, lines: list[str]) -> None:
        stream = sys.stdout if isinstance(self.logger, str) else self.logger
        stream.write("".join(f"{line}\n" for line in lines))  # type: ignore[union-attr]
        stream.flush()  # type: ignore[union-attr]


def _rows(count: int) -> str:
    return f"{count:,} row{'' if count == 1 else 's'}"
