"""A `relais` command run as a real subprocess, its output collected in the background."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

RELAIS = str(Path(sys.executable).with_name("relais"))


class RelaisProcess:
    """`relais <args>` in its own session; `output` is what it has printed so far."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [RELAIS, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)
