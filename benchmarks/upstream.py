"""The upstream of every benchmark: llmcache's local simulator, in a child process.

Running the simulator in a process of its own (pinned to the server core) keeps its HTTP
handling off the measuring process's core and out of its GIL, as a real upstream would be.
The parent asks for its request count, and sets its delay, one line at a time over the
child's stdin and stdout (``python -m benchmarks.upstream`` is the child).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys

from .servers import pinned

__all__ = ["Upstream"]


class Upstream:
    """The simulator in a child process pinned to ``cpu``.

    :ivar base_url: the OpenAI base URL, ``http://127.0.0.1:<port>/v1``.
    """

    def __init__(self, cpu: int | None) -> None:
        argv = pinned([sys.executable, "-m", "benchmarks.upstream"], cpu)
        self._process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.base_url = self._read()

    def _read(self) -> str:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the simulator process ended")
        return line.strip()

    def _ask(self, command: str) -> str:
        assert self._process.stdin is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        return self._read()

    def count(self) -> int:
        """Return how many requests reached the simulator so far."""
        return int(self._ask("count"))

    def set_delay(self, seconds: float) -> None:
        """Make every answer take ``seconds`` (0: answer at once)."""
        self._ask(f"delay {seconds}")

    def close(self) -> None:
        """Stop the simulator process."""
        if self._process.poll() is None:
            with contextlib.suppress(OSError, RuntimeError):
                self._ask("stop")
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)

    def __enter__(self) -> Upstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve() -> None:
    """Run the simulator; answer ``count``, ``delay S`` and ``stop`` lines on stdin."""
    from llmcache.tools.simulator import Simulator

    with Simulator() as sim:
        print(sim.base_url, flush=True)
        for line in sys.stdin:
            command, _, argument = line.strip().partition(" ")
            if command == "count":
                print(sim.count(), flush=True)
            elif command == "delay":
                sim.delay = float(argument)
                print("ok", flush=True)
            else:
                print("bye", flush=True)
                return


if __name__ == "__main__":
    serve()
