"""One live status line per job, read from the jobs' MMEngine log files.

:class:`ProgressBoard` is what ``make demo`` shows while its trainings write
their full logs to files: each job's line says its phase and, while it
trains, the last logged epoch or iteration, loss and MMEngine's ETA. On a
terminal the lines are redrawn in place; elsewhere (CI logs, pipes) a line
is printed each time a job's status changes.
"""
import re
import sys
import threading
from typing import Dict, Optional, TextIO

# MMEngine's LoggerHook lines: "Epoch(train)  [3][25/75]  ... eta: 0:09:52
# ... loss: 2.2435 ..." and "Iter(train) [ 450/1500]  ... loss: 0.41 ..."
_TRAIN = re.compile(
    r'Epoch\(train\)\s*\[(?P<epoch>\d+)\]\s*\[\s*(?P<it>\d+)/(?P<its>\d+)\]'
    r'|Iter\(train\)\s*\[\s*(?P<iter>\d+)/(?P<iters>\d+)\]')
_ETA = re.compile(r'\beta: (\S+)')
_LOSS = re.compile(r'\sloss: (\S+)')


def train_status(line: str, max_epochs: Optional[int] = None
                 ) -> Optional[str]:
    """``'epoch 3/18 iter 25/75  loss 2.2435  ETA 0:09:52'`` for an MMEngine
    training log line (``max_epochs`` completes the epoch count), else None.
    """
    m = _TRAIN.search(line)
    if m is None:
        return None
    if m['epoch']:
        of = f'/{max_epochs}' if max_epochs else ''
        parts = [f"epoch {m['epoch']}{of} iter {m['it']}/{m['its']}"]
    else:
        parts = [f"iter {m['iter']}/{m['iters']}"]
    for label, pattern in (('loss', _LOSS), ('ETA', _ETA)):
        value = pattern.search(line, m.end())
        if value:
            parts.append(f'{label} {value[1]}')
    return '  '.join(parts)


def last_train_status(log_path: str, max_epochs: Optional[int] = None
                      ) -> Optional[str]:
    """:func:`train_status` of the last training line in ``log_path``."""
    try:
        with open(log_path, errors='replace') as f:
            lines = f.readlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        status = train_status(line, max_epochs)
        if status:
            return status
    return None


class ProgressBoard:
    """Status lines of named jobs; :meth:`watch` follows a training log."""

    def __init__(self, names, stream: TextIO = None, poll_s: float = 2.0):
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()
        self.poll_s = poll_s
        self.width = max(len(n) for n in names)
        self.lines: Dict[str, str] = {n: 'waiting' for n in names}
        self._watched: Dict[str, tuple] = {}
        self._lock = threading.Lock()
        self._drawn = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self):
        self._draw()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._refresh()

    def set(self, name: str, text: str) -> None:
        """Show ``text`` as job ``name``'s status (stops following a log,
        after showing its last line)."""
        with self._lock:
            self._follow(name)
            self._watched.pop(name, None)
            self._update(name, text)

    def watch(self, name: str, phase: str, log_path: str,
              max_epochs: Optional[int] = None) -> None:
        """Show ``phase`` and the last training line of ``log_path``."""
        with self._lock:
            self._watched[name] = (phase, log_path, max_epochs)
            self._update(name, phase)

    def _update(self, name: str, text: str) -> None:
        if self.lines[name] == text:
            return
        self.lines[name] = text
        if self.live:
            self._draw()
        else:
            self._print(name)

    def _print(self, name: str) -> None:
        self.stream.write(f'{name:<{self.width}}  {self.lines[name]}\n')
        self.stream.flush()

    def _draw(self) -> None:
        if not self.live:
            return
        # back to the first line of the board, then rewrite every line
        up = f'\x1b[{self._drawn}F' if self._drawn else ''
        body = ''.join(f'\x1b[2K{n:<{self.width}}  {t}\n'
                       for n, t in self.lines.items())
        self.stream.write(up + body)
        self.stream.flush()
        self._drawn = len(self.lines)

    def _follow(self, name: str) -> None:
        if name in self._watched:
            phase, path, max_epochs = self._watched[name]
            status = last_train_status(path, max_epochs)
            if status:
                self._update(name, f'{phase}  {status}')

    def _refresh(self) -> None:
        with self._lock:
            for name in list(self._watched):
                self._follow(name)

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._refresh()
