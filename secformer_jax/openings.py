"""The one place a program opens a value: `reveal` (SPU's `spu.experimental.reveal`), which can also record
what it opens, so tests check the values the compiled program really opens rather than a rebuilt copy.

Recording is a trace-time side effect: inside `recording()`, every value opened while a function is traced
is appended to the yielded list (as the traced value); `ProgramBuilder.function(record_openings=True)`
returns them as extra outputs, which are public, and `Simulation.run(..., rings=True)` returns each as the
uint64 ring elements the parties hold (all 64 bits of the opened encoding, `dealing.public_ring`).
"""

from __future__ import annotations

from contextlib import contextmanager

_recorders: list[list] = []


def reveal(x):
    """Open `x` to every computing party (one round). SPU only."""
    from spu.experimental import reveal as spu_reveal

    opened = spu_reveal(x)
    for recorder in _recorders:
        recorder.append(opened)
    return opened


@contextmanager
def recording():
    """Collect the values `reveal` opens while tracing the body."""
    recorder: list = []
    _recorders.append(recorder)
    try:
        yield recorder
    finally:
        _recorders.remove(recorder)
