"""Progress bars for the commands' long phases (see augment.model.Phase)."""

from __future__ import annotations

import sys
from collections.abc import Callable

from augment.model import Phase


def phase_bars(show: bool) -> Phase | None:
    """A progress bar on stderr for each long phase (drawn once it has lasted a second)."""
    if not show:
        return None

    def phase(name: str, total: int) -> Callable[[int], None]:
        # No monitor thread: worker processes may be forked later (see executor.start_method).
        from tqdm import tqdm

        tqdm.monitor_interval = 0
        bar = tqdm(total=total, desc=name, unit="file", file=sys.stderr, delay=1.0, leave=False)
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            bar.update(n)
            if done >= total:
                bar.close()

        return advance

    return phase
